//! Signing domains and Ed25519 helpers (host and CLI side).
//!
//! Every signature is over `blake3(DOMAIN || len(chain_id) as u32 LE || chain_id || payload)`.
//! The chain id is length-prefixed so no (chain id, payload) pair can be read as another. A
//! signature of one kind never verifies as another because the domains differ.
//!
//! Verification follows ZIP-215 (`ed25519-consensus`), so every node reaches the same verdict for
//! every input, whether it verifies one by one or in batches. Signing uses `ed25519-dalek`.

use crate::block::Header;
use crate::primitives::{Hash, PublicKey, Signature};
use crate::transaction::{SignedTransaction, Transaction};

pub use crate::domains::*;

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

    /// Signs a transaction body.
    pub fn sign_transaction(&self, tx: Transaction) -> SignedTransaction {
        let body = borsh::to_vec(&tx).expect("a transaction always encodes");
        let signature = self.sign(TX_DOMAIN, &tx.chain_id, &body);
        SignedTransaction {
            transaction: tx,
            signature,
        }
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

/// Verifies a transaction's signature against its own chain id.
pub fn verify_transaction(tx: &SignedTransaction) -> bool {
    let body = borsh::to_vec(&tx.transaction).expect("a transaction always encodes");
    verify(
        &tx.transaction.sender,
        TX_DOMAIN,
        &tx.transaction.chain_id,
        &body,
        &tx.signature,
    )
}

/// The hash of a signed transaction: blake3 of its Borsh encoding.
pub fn transaction_hash(tx: &SignedTransaction) -> Hash {
    *blake3::hash(&borsh::to_vec(tx).expect("a transaction always encodes")).as_bytes()
}

/// The hash of a header: blake3 of its Borsh encoding.
pub fn header_hash(header: &Header) -> Hash {
    *blake3::hash(&borsh::to_vec(header).expect("a header always encodes")).as_bytes()
}

/// The well-known development seed: `blake3("vexidus/dev/alice")`. `--dev` funds its account
/// and makes it validator and upgrade authority. Never use it on a real network.
pub fn dev_seed() -> [u8; 32] {
    *blake3::hash(b"vexidus/dev/alice").as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Address;
    use crate::transaction::Operation;

    #[test]
    fn the_runtime_builds_the_same_signing_message() {
        for (d, c, p) in [
            (TX_DOMAIN, "", &b""[..]),
            (VOTE_DOMAIN, "chain", &b"payload"[..]),
        ] {
            assert_eq!(
                signing_message(d, c, p),
                crate::domains::signing_message_with(|b| *blake3::hash(b).as_bytes(), d, c, p)
            );
        }
    }

    #[test]
    fn domains_separate_signatures() {
        let k = Keypair::from_seed([9; 32]);
        let sig = k.sign(TX_DOMAIN, "c", b"payload");
        assert!(verify(&k.public(), TX_DOMAIN, "c", b"payload", &sig));
        for d in [BLOCK_DOMAIN, VOTE_DOMAIN, BINARY_DOMAIN, PEER_DOMAIN] {
            assert!(!verify(&k.public(), d, "c", b"payload", &sig));
        }
        assert!(!verify(&k.public(), TX_DOMAIN, "other", b"payload", &sig));
        // The length prefix keeps ("ab", "c…") and ("a", "bc…") apart.
        assert_ne!(
            signing_message(TX_DOMAIN, "ab", b"c"),
            signing_message(TX_DOMAIN, "a", b"bc")
        );
    }

    #[test]
    fn transaction_signature_round_trip() {
        let k = Keypair::from_seed(dev_seed());
        let tx = Transaction {
            chain_id: "dev".into(),
            sender: k.public(),
            nonce: 0,
            max_gas: 21_000,
            valid_until: 10,
            operations: vec![Operation::Transfer {
                to: Address([1; 32]),
                amount: 1,
            }],
        };
        let mut signed = k.sign_transaction(tx);
        assert!(verify_transaction(&signed));
        signed.transaction.nonce = 1;
        assert!(!verify_transaction(&signed));
    }
}
