//! The missed-block record on chain (SPEC §10): in every block the runtime works out who was
//! due to produce it (`runtime_api::schedule`, the rule consensus uses) and, when someone else
//! produced it, counts a miss for the one who was due. Three consecutive misses take a validator
//! out of the rotation until it produces two consecutive blocks. Nothing is counted and nobody is
//! skipped in an upgrade grace period. It touches no rewards or stake.

use crate::env::Env;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use vexidus_governance::upgrade;
use vexidus_runtime_api::Address;
use vexidus_runtime_api::abi::ConsensusView;
use vexidus_runtime_api::guest::{read, write};
use vexidus_runtime_api::schedule::{MissedBlockRecord, record_block};

/// The last block's (height, proposer, consecutive blocks by that proposer).
pub const LAST: &[u8] = b"live/last";
/// Validators out of the rotation, sorted.
pub const SKIPPED: &[u8] = b"live/skip";
/// Prefix of per-validator records: `live/miss/` ‖ address → SCALE (streak u32, total u64).
pub const MISSED_PREFIX: &[u8] = b"live/miss/";

fn missed_key(who: &Address) -> Vec<u8> {
    [MISSED_PREFIX, &who.0[..]].concat()
}

/// (consecutive misses, all misses) of a validator.
pub fn missed(env: &mut impl Env, who: &Address) -> (u32, u64) {
    read(env, &missed_key(who)).unwrap_or((0, 0))
}

/// Validators out of the rotation.
pub fn skipped(env: &mut impl Env) -> Vec<Address> {
    read(env, SKIPPED).unwrap_or_default()
}

/// Whether `height` lies in an upgrade grace period.
pub fn in_grace(env: &mut impl Env, height: u64) -> bool {
    height < upgrade::grace_until(env)
}

/// The record in chain state.
struct StateRecord<'e, E: Env>(&'e mut E);

impl<E: Env> MissedBlockRecord for StateRecord<'_, E> {
    fn last(&mut self) -> Option<(u64, Address, u32)> {
        read(self.0, LAST)
    }
    fn set_last(&mut self, last: (u64, Address, u32)) {
        write(self.0, LAST, &last);
    }
    fn missed(&mut self, who: &Address) -> (u32, u64) {
        missed(self.0, who)
    }
    fn set_missed(&mut self, who: &Address, m: (u32, u64)) {
        write(self.0, &missed_key(who), &m);
    }
    fn skipped(&mut self) -> BTreeSet<Address> {
        skipped(self.0).into_iter().collect()
    }
    fn set_skipped(&mut self, s: BTreeSet<Address>) {
        write(self.0, SKIPPED, &s.into_iter().collect::<Vec<_>>());
    }
    fn blake3(&self, bytes: &[u8]) -> [u8; 32] {
        self.0.blake3(bytes)
    }
}

/// The whole record and the active set for the block at `at_height` ([`Query::Consensus`]).
///
/// [`Query::Consensus`]: vexidus_runtime_api::abi::Query::Consensus
pub fn consensus_view(env: &mut impl Env, at_height: u64) -> ConsensusView {
    let active = crate::staking::active_set(env, at_height);
    let mut missed = Vec::new();
    let mut cursor = MISSED_PREFIX.to_vec();
    while let Some(k) = env.next_key(&cursor) {
        if !k.starts_with(MISSED_PREFIX) {
            break;
        }
        if let (Ok(raw), Some(m)) = (
            <[u8; 32]>::try_from(&k[MISSED_PREFIX.len()..]),
            read::<(u32, u64)>(env, &k),
        ) {
            missed.push((Address(raw), m));
        }
        cursor = k;
    }
    ConsensusView {
        active,
        last: read(env, LAST),
        missed,
        skipped: skipped(env),
        grace_until: upgrade::grace_until(env),
    }
}

/// Records block `height` produced by `proposer` (`runtime_api::schedule::record_block`).
pub fn record(env: &mut impl Env, height: u64, proposer: Address) {
    let members = crate::staking::active_set(env, height);
    if members.is_empty() {
        return;
    }
    let grace = in_grace(env, height);
    record_block(&mut StateRecord(env), height, proposer, &members, grace);
}
