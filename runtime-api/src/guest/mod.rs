//! The guest side of the ABI: how runtime code (the runtime and its pallets) sees storage and
//! hashing. Inside WebAssembly the runtime implements [`Env`] over the host functions; natively,
//! any implementation works.

mod overlay;

pub use overlay::Overlay;

use alloc::vec::Vec;
use parity_scale_codec::{Decode, Encode};

/// Storage and hashing as runtime logic uses them.
pub trait Env {
    /// Reads a value.
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>>;
    /// Writes a value.
    fn set(&mut self, key: &[u8], value: &[u8]);
    /// Deletes a value.
    fn remove(&mut self, key: &[u8]);
    /// The next key strictly after `key`, in byte order.
    fn next_key(&mut self, key: &[u8]) -> Option<Vec<u8>>;
    /// blake3 of `data`.
    fn blake3(&self, data: &[u8]) -> [u8; 32];
    /// Whether `signature` by `key` over `message` is valid (ZIP-215, the host's rule).
    fn ed25519_verify(&self, message: &[u8], signature: &[u8; 64], key: &[u8; 32]) -> bool;
    /// Emits a log line (not part of consensus).
    fn log(&self, level: u32, message: &str);
    /// Runs the host's static checks of a runtime blob (SPEC §5 minus the size and spec
    /// comparisons, which need chain state) and returns the version it declares.
    fn check_runtime(&self, code: &[u8]) -> Result<crate::RuntimeVersion, alloc::string::String>;
    /// Adds `amount` to this block's total `name` (saturating; see
    /// [the ABI](crate::abi#block-totals)). Not state: it lasts until the end of the block.
    fn add_to_block_total(&mut self, name: &[u8], amount: u128);
    /// What this block added to the total `name`. In `end_block` only: anywhere else the
    /// host stops the call.
    fn block_total(&mut self, name: &[u8]) -> u128;
}

/// Reads and decodes a value. A value that does not decode is treated as absent: no correct
/// runtime writes one, and trapping on it would stop the chain.
pub fn read<T: Decode>(env: &mut (impl Env + ?Sized), key: &[u8]) -> Option<T> {
    env.get(key).and_then(|v| T::decode(&mut &v[..]).ok())
}

/// Encodes and writes a value.
pub fn write<T: Encode>(env: &mut (impl Env + ?Sized), key: &[u8], value: &T) {
    env.set(key, &value.encode());
}

/// Every key starting with `prefix`, in order.
pub fn keys_with_prefix(env: &mut (impl Env + ?Sized), prefix: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cursor = prefix.to_vec();
    if env.get(prefix).is_some() {
        out.push(prefix.to_vec());
    }
    while let Some(k) = env.next_key(&cursor) {
        if !k.starts_with(prefix) {
            break;
        }
        cursor = k.clone();
        out.push(k);
    }
    out
}

/// Whether `signature` by `key` signs `payload` of kind `domain` on `chain_id` (the rule of
/// `signing::verify`, computed with the host's blake3 and ed25519).
pub fn verify_signed(
    env: &(impl Env + ?Sized),
    key: &crate::PublicKey,
    domain: &[u8],
    chain_id: &str,
    payload: &[u8],
    signature: &crate::Signature,
) -> bool {
    let message =
        crate::domains::signing_message_with(|b| env.blake3(b), domain, chain_id, payload);
    env.ed25519_verify(&message, &signature.0, &key.0)
}
