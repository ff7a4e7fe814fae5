//! Ed25519 keys, signatures over a domain and chain id, and their ZIP-215 verification: what
//! every signed kind ([`crate::signing`] for transactions and headers, [`crate::vote`]) builds on.

use crate::primitives::{Hash, PublicKey, Signature};

/// The 32-byte message that is signed for `payload` of kind `domain` on `chain_id`.
/// Streams into the hasher (no copy of the payload); [`crate::domains::signing_message_with`]
/// builds the same bytes for the runtime, and a test holds the two together.
pub fn signing_message(domain: &[u8], chain_id: &str, payload: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(domain);
    h.update(&(chain_id.len() as u32).to_le_bytes());
    h.update(chain_id.as_bytes());
    h.update(payload);
    *h.finalize().as_bytes()
}

/// A keypair from a 32-byte secret seed.
pub struct Keypair {
    signing: ed25519_dalek::SigningKey,
}

impl Keypair {
    /// Builds the keypair of `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// Parses a key file's contents: the 32-byte seed as 64 hex characters, optional `0x`,
    /// surrounding whitespace ignored.
    pub fn from_seed_hex(text: &str) -> Result<Self, crate::primitives::HexError> {
        let key = crate::PublicKey::from_hex(text)?; // same shape: 32 bytes of hex
        Ok(Self::from_seed(key.0))
    }

    /// The key file form of the seed: 64 lowercase hex characters.
    pub fn seed_hex(&self) -> String {
        hex::encode(self.seed())
    }

    /// The secret seed.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// Signs `payload` of kind `domain` on `chain_id`.
    pub fn sign(&self, domain: &[u8], chain_id: &str, payload: &[u8]) -> Signature {
        use ed25519_dalek::Signer;
        Signature(
            self.signing
                .sign(&signing_message(domain, chain_id, payload))
                .to_bytes(),
        )
    }
}

/// Verifies a signature with ZIP-215 rules.
pub fn verify(
    public: &PublicKey,
    domain: &[u8],
    chain_id: &str,
    payload: &[u8],
    signature: &Signature,
) -> bool {
    let Ok(vk) = ed25519_consensus::VerificationKey::try_from(public.0) else {
        return false;
    };
    let sig = ed25519_consensus::Signature::from(signature.0);
    vk.verify(&sig, &signing_message(domain, chain_id, payload))
        .is_ok()
}

/// The well-known development seed: `blake3("vexidus/dev/alice")`. `--dev` funds its account
/// and makes it validator and upgrade authority. Never use it on a real network.
pub fn dev_seed() -> [u8; 32] {
    *blake3::hash(b"vexidus/dev/alice").as_bytes()
}
