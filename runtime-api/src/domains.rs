//! Signing domains: every signature is over `blake3(DOMAIN ‖ len(chain_id) as u32 LE ‖ chain_id
//! ‖ payload)`, so a signature of one kind never verifies as another. No `std` needed: the
//! runtime checks double-sign evidence with the same domains.

/// Domain of transaction signatures.
pub const TX_DOMAIN: &[u8] = b"vexidus/tx/v1";
/// Domain of block signatures.
pub const BLOCK_DOMAIN: &[u8] = b"vexidus/block/v1";
/// Domain of consensus votes.
pub const VOTE_DOMAIN: &[u8] = b"vexidus/vote/v1";
/// Domain of upgrade-binary signatures.
pub const BINARY_DOMAIN: &[u8] = b"vexidus/binary/v1";
/// Domain of peer-id proofs.
pub const PEER_DOMAIN: &[u8] = b"vexidus/peer/v1";

/// The 32-byte message signed for `payload` of kind `domain` on `chain_id`, hashed with `blake3`
/// (the runtime passes its host function).
pub fn signing_message_with(
    blake3: impl Fn(&[u8]) -> [u8; 32],
    domain: &[u8],
    chain_id: &str,
    payload: &[u8],
) -> [u8; 32] {
    let mut bytes =
        alloc::vec::Vec::with_capacity(domain.len() + 4 + chain_id.len() + payload.len());
    bytes.extend_from_slice(domain);
    bytes.extend_from_slice(&(chain_id.len() as u32).to_le_bytes());
    bytes.extend_from_slice(chain_id.as_bytes());
    bytes.extend_from_slice(payload);
    blake3(&bytes)
}
