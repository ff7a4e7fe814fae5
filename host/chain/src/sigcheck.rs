//! Transaction signatures, checked in batches on all cores.
//!
//! Block validity must not depend on how a node groups signatures (ARCHITECTURE.md, "Parallel
//! execution and signature batches"), so every verdict here is the one-by-one verdict of
//! [`signing::verify_transaction`]:
//!
//! - `ed25519-consensus` verifies a batch with the cofactored equation of ZIP-215, the same rule
//!   its single verification applies: a batch of signatures that each verify always passes.
//! - A batch that fails is checked again one by one, so the node knows exactly which signatures
//!   are bad and a bad one never condemns its neighbours.
//! - The batch's random coefficients come from the operating system: a forger cannot aim at
//!   coefficients it cannot predict, so a bad signature passes a batch with probability about
//!   2⁻¹²⁸.
//!
//! Work is split into chunks of [`chunk_size`] over rayon's pool (one thread per core): hashing
//! the signing messages and the batch equations both run in parallel.

use ed25519_consensus::{Signature, VerificationKeyBytes, batch};
use rayon::prelude::*;
use std::borrow::Borrow;
use vexidus_runtime_api::SignedTransaction;
use vexidus_runtime_api::signing::{self, TX_DOMAIN};

/// What one signature check needs: the key, the signature and the 32-byte signing message.
struct Prepared {
    key: VerificationKeyBytes,
    signature: Signature,
    message: [u8; 32],
}

fn prepare(tx: &SignedTransaction) -> Prepared {
    let body = borsh::to_vec(&tx.transaction).expect("a transaction always encodes");
    Prepared {
        key: VerificationKeyBytes::from(tx.transaction.sender.0),
        signature: Signature::from(tx.signature.0),
        message: signing::signing_message(TX_DOMAIN, &tx.transaction.chain_id, &body),
    }
}

fn single(p: &Prepared) -> bool {
    ed25519_consensus::VerificationKey::try_from(p.key)
        .is_ok_and(|vk| vk.verify(&p.signature, &p.message).is_ok())
}

fn verify_chunk(items: &[Prepared]) -> Vec<bool> {
    let mut verifier = batch::Verifier::new();
    for p in items {
        verifier.queue((p.key, p.signature, &p.message[..]));
    }
    if verifier.verify(rand_core::OsRng).is_ok() {
        vec![true; items.len()]
    } else {
        items.iter().map(single).collect()
    }
}

/// Signatures per batch for `n` signatures: every core gets a few batches (so one slow batch
/// does not hold the rest up), and batches stay between 32 and 512 signatures (below, the
/// shared multiscalar multiplication gains little; above, a bad signature costs a long
/// one-by-one pass).
pub fn chunk_size(n: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    n.div_ceil(threads * 4).clamp(32, 512)
}

/// Whether each transaction's signature verifies, in order: exactly
/// `txs.iter().map(signing::verify_transaction)`, computed in batches on all cores. Takes
/// transactions or references to them (a batch of submissions verifies the ones that decoded
/// without copying them out).
pub fn verify_all<T: Borrow<SignedTransaction> + Sync>(txs: &[T]) -> Vec<bool> {
    let prepared: Vec<Prepared> = txs.par_iter().map(|tx| prepare(tx.borrow())).collect();
    prepared
        .par_chunks(chunk_size(txs.len()))
        .flat_map_iter(verify_chunk)
        .collect()
}

/// [`verify_all`] on the calling thread only (the benchmark's batching-without-threads line).
pub fn verify_all_one_thread(txs: &[SignedTransaction]) -> Vec<bool> {
    let prepared: Vec<Prepared> = txs.iter().map(prepare).collect();
    prepared
        .chunks(chunk_size(txs.len()))
        .flat_map(verify_chunk)
        .collect()
}

/// The index of the first transaction whose signature does not verify.
pub fn first_invalid(txs: &[SignedTransaction]) -> Option<usize> {
    verify_all(txs).iter().position(|ok| !ok)
}

/// Transaction hashes whose signatures this node has already verified, so a transaction that
/// comes back (resubmitted, forwarded by another node) is not verified twice. Bounded: the
/// oldest entries are forgotten first.
#[derive(Debug)]
pub struct VerifiedCache {
    set: std::collections::HashSet<vexidus_runtime_api::Hash>,
    order: std::collections::VecDeque<vexidus_runtime_api::Hash>,
    capacity: usize,
}

impl VerifiedCache {
    /// A cache of at most `capacity` hashes.
    pub fn new(capacity: usize) -> Self {
        Self {
            set: Default::default(),
            order: Default::default(),
            capacity: capacity.max(1),
        }
    }

    /// Whether `hash` was verified here.
    pub fn contains(&self, hash: &vexidus_runtime_api::Hash) -> bool {
        self.set.contains(hash)
    }

    /// Remembers a verified hash.
    pub fn insert(&mut self, hash: vexidus_runtime_api::Hash) {
        if !self.set.insert(hash) {
            return;
        }
        self.order.push_back(hash);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vexidus_runtime_api::signing::Keypair;
    use vexidus_runtime_api::transaction::{Operation, Transaction};
    use vexidus_runtime_api::{Address, PublicKey};

    fn tx(seed: u8, nonce: u64) -> SignedTransaction {
        Keypair::from_seed([seed; 32]).sign_transaction(Transaction {
            chain_id: "c".into(),
            sender: Keypair::from_seed([seed; 32]).public(),
            nonce,
            max_gas: 21_000,
            valid_until: 10,
            operations: vec![Operation::Transfer {
                to: Address([9; 32]),
                amount: 1,
            }],
        })
    }

    /// A deterministic stream of adversarial variations of valid transactions.
    fn mixture(n: usize, seed: u64) -> Vec<SignedTransaction> {
        let mut x = seed;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|i| {
                let mut t = tx((i % 200) as u8, i as u64);
                match next() % 10 {
                    // A flipped bit in the signature.
                    0 => t.signature.0[(next() % 64) as usize] ^= 1 << (next() % 8),
                    // Signed by someone else.
                    1 => t.signature = tx(201, i as u64).signature,
                    // A key that is not a curve point (decompression fails).
                    2 => t.transaction.sender = PublicKey([0xff; 32]),
                    // The identity as key and an all-identity signature: ZIP-215 accepts it
                    // for any message, singly and in batches alike.
                    3 => {
                        let mut id = [0u8; 32];
                        id[0] = 1;
                        t.transaction.sender = PublicKey(id);
                        let mut sig = [0u8; 64];
                        sig[0] = 1;
                        t.signature.0 = sig;
                    }
                    // A non-canonical s (s + l): refused by both.
                    4 => {
                        t.signature.0[63] |= 0xf0;
                    }
                    _ => {}
                }
                t
            })
            .collect()
    }

    #[test]
    fn batches_agree_with_one_by_one_verification_on_every_input() {
        for (n, seed) in [(1, 1), (31, 2), (33, 3), (500, 4), (2_000, 5), (3_000, 6)] {
            let txs = mixture(n, seed);
            let single: Vec<bool> = txs.iter().map(signing::verify_transaction).collect();
            if n >= 10 {
                assert!(single.iter().any(|ok| *ok) && single.iter().any(|ok| !ok));
            }
            assert_eq!(verify_all(&txs), single, "{n} signatures, seed {seed}");
            assert_eq!(verify_all_one_thread(&txs), single, "{n} one thread");
            assert_eq!(first_invalid(&txs), single.iter().position(|ok| !ok));
        }
    }

    #[test]
    fn the_identity_signature_is_accepted_alike() {
        let mut t = tx(1, 0);
        let mut id = [0u8; 32];
        id[0] = 1;
        t.transaction.sender = PublicKey(id);
        let mut sig = [0u8; 64];
        sig[0] = 1;
        t.signature.0 = sig;
        let single = signing::verify_transaction(&t);
        assert_eq!(verify_all(&[t.clone()]), vec![single]);
        let many = vec![t; 100];
        assert_eq!(verify_all(&many), vec![single; 100]);
    }

    #[test]
    fn the_cache_forgets_the_oldest() {
        let mut c = VerifiedCache::new(2);
        c.insert([1; 32]);
        c.insert([2; 32]);
        c.insert([2; 32]);
        c.insert([3; 32]);
        assert!(!c.contains(&[1; 32]) && c.contains(&[2; 32]) && c.contains(&[3; 32]));
    }
}
