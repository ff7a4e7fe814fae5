//! Signing domains and Ed25519 helpers (host and CLI side).
//!
//! Every signature is over `blake3(DOMAIN || len(chain_id) as u32 LE || chain_id || payload)`.
//! The chain id is length-prefixed so no (chain id, payload) pair can be read as another. A
//! signature of one kind never verifies as another because the domains differ.
//!
//! Verification follows ZIP-215 (`ed25519-consensus`), so every node reaches the same verdict for
//! every input, whether it verifies one by one or in batches. Signing uses `ed25519-dalek`.

use crate::header::Header;
use crate::primitives::Hash;
use crate::transaction::{SignedTransaction, Transaction};

pub use crate::domains::*;
pub use crate::keys::{Keypair, dev_seed, signing_message, verify};

impl Keypair {
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
