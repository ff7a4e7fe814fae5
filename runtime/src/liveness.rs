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
use vexidus_runtime_api::guest::{read, write};
use vexidus_runtime_api::schedule::{MISSES_TO_SKIP, PRODUCED_TO_RETURN, producers};

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

/// Records block `height` produced by `proposer`.
pub fn record(env: &mut impl Env, height: u64, proposer: Address) {
    let members = crate::dispatch::active_set(env, height);
    if members.is_empty() {
        return;
    }
    let grace = in_grace(env, height);
    let last: Option<(u64, Address, u32)> = read(env, LAST);
    let mut skipped: BTreeSet<Address> = skipped(env).into_iter().collect();
    let before = skipped.clone();
    let due = {
        let e = &*env;
        producers(
            height,
            last.map(|(h, p, _)| (h, p)),
            &members,
            &skipped,
            grace,
            |b| e.blake3(b),
        )
    };
    let streak = match last {
        Some((h, p, n)) if p == proposer && h + 1 == height => n + 1,
        _ => 1,
    };
    write(env, LAST, &(height, proposer, streak));
    let (_, total) = missed(env, &proposer);
    write(env, &missed_key(&proposer), &(0u32, total));
    if streak >= PRODUCED_TO_RETURN {
        skipped.remove(&proposer);
    }
    if !grace
        && let Some(leader) = due.first().copied()
        && leader != proposer
    {
        let (streak, total) = missed(env, &leader);
        let streak = streak + 1;
        write(env, &missed_key(&leader), &(streak, total + 1));
        if streak >= MISSES_TO_SKIP {
            skipped.insert(leader);
        }
    }
    if skipped != before {
        write(env, SKIPPED, &skipped.into_iter().collect::<Vec<_>>());
    }
}
