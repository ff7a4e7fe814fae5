//! The validator set: who is active at a height.

use crate::env::Env;
use crate::storage;
use alloc::vec::Vec;
use vexidus_runtime_api::Address;

/// Most validators in the active set (SPEC §10).
pub const MAX_VALIDATORS: usize = 100;

/// The active set at `height`: the top [`MAX_VALIDATORS`] unjailed validators by stake, with
/// their stake, sorted by address.
pub fn active_set(env: &mut impl Env, height: u64) -> Vec<(Address, u128)> {
    let mut vs: Vec<(Address, u128)> = storage::validators(env)
        .into_iter()
        .filter(|v| !v.is_jailed_at(height) && v.total_stake() > 0)
        .map(|v| (v.address, v.total_stake()))
        .collect();
    vs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    vs.truncate(MAX_VALIDATORS);
    vs.sort_by_key(|a| a.0);
    vs
}
