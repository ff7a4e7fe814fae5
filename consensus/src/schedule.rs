//! Who produces which block: the shared rule of `vexidus_runtime_api::schedule` (the runtime
//! keeps the missed-block record with the same functions), over a [`ValidatorSet`].

use crate::types::ValidatorSet;
use std::collections::BTreeSet;
use vexidus_runtime_api::Address;
pub use vexidus_runtime_api::schedule::{
    MISSES_TO_SKIP, PRODUCED_TO_RETURN, SLOT_BLOCKS, failover_delay_ms, slot_of,
};

fn blake3(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

fn members(set: &ValidatorSet) -> Vec<(Address, u128)> {
    set.members.iter().map(|(a, s)| (*a, *s)).collect()
}

/// The stake-weighted order of `slot`: the leader first, then the backups in failover order.
pub fn draw(slot: u64, set: &ValidatorSet) -> Vec<Address> {
    vexidus_runtime_api::schedule::draw(slot, &members(set), blake3)
}

/// The producers of `height` on top of a parent at `parent` (height, proposer), in failover
/// order, with leader skip applied unless in a grace period.
pub fn producers(
    height: u64,
    parent: (u64, Address),
    set: &ValidatorSet,
    skipped: &BTreeSet<Address>,
    in_grace: bool,
) -> Vec<Address> {
    vexidus_runtime_api::schedule::producers(
        height,
        Some(parent),
        &members(set),
        skipped,
        in_grace,
        blake3,
    )
}
