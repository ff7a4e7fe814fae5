//! Who is due to produce each block (SPEC §10), shared by the runtime (which keeps the
//! missed-block record on chain) and the node's consensus (which decides when to produce): leader
//! slots of [`SLOT_BLOCKS`] blocks, a stake-weighted draw without replacement per slot, a backup
//! that took over keeping the slot, and leader skip.
//!
//! The draw is driven by `seed = blake3(slot as u64 LE ‖ "leader_selection_v1")`; pick `i` reads
//! 128 bits from `blake3(seed ‖ i as u32 LE)` and walks the cumulative stake of the validators not
//! yet picked, in address order. `blake3` is passed in so the runtime can use its host function.

use crate::primitives::Address;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;

/// Blocks per leader slot.
pub const SLOT_BLOCKS: u64 = 5;
/// Consecutive misses that take a validator out of the rotation.
pub const MISSES_TO_SKIP: u32 = 3;
/// Consecutive blocks that bring it back.
pub const PRODUCED_TO_RETURN: u32 = 2;
/// Every this many slots is a probation slot: skipped validators keep their drawn places in it,
/// so one that is back online gets to produce the two consecutive blocks that return it to the
/// rotation. While it stays offline, this costs one failover wait per probation slot it leads.
pub const PROBATION_EVERY: u64 = 4;

/// Whether skipped validators keep their drawn places in `slot`.
pub const fn is_probation_slot(slot: u64) -> bool {
    slot.is_multiple_of(PROBATION_EVERY)
}

/// The slot of a height.
pub const fn slot_of(height: u64) -> u64 {
    height / SLOT_BLOCKS
}

/// The stake-weighted order of `slot` over `members` (address, stake), leader first.
pub fn draw(
    slot: u64,
    members: &[(Address, u128)],
    blake3: impl Fn(&[u8]) -> [u8; 32],
) -> Vec<Address> {
    let mut input = Vec::with_capacity(27);
    input.extend_from_slice(&slot.to_le_bytes());
    input.extend_from_slice(b"leader_selection_v1");
    let seed = blake3(&input);
    let mut remaining: Vec<(Address, u128)> =
        members.iter().filter(|(_, s)| *s > 0).copied().collect();
    remaining.sort_by_key(|(a, _)| *a);
    let mut order = Vec::with_capacity(remaining.len());
    let mut pick: u32 = 0;
    while !remaining.is_empty() {
        let total: u128 = remaining.iter().map(|(_, s)| *s).sum();
        let mut buf = [0u8; 36];
        buf[..32].copy_from_slice(&seed);
        buf[32..].copy_from_slice(&pick.to_le_bytes());
        let digest = blake3(&buf);
        let mut r = u128::from_le_bytes(digest[..16].try_into().unwrap_or([0; 16])) % total;
        let mut index = remaining.len() - 1;
        for (i, (_, stake)) in remaining.iter().enumerate() {
            if r < *stake {
                index = i;
                break;
            }
            r -= stake;
        }
        order.push(remaining.remove(index).0);
        pick += 1;
    }
    order
}

/// `order` (the draw of `slot`) with leader skip applied: skipped validators move behind the
/// others. Not applied when it would skip everyone, in an upgrade grace period, nor in a
/// probation slot ([`PROBATION_EVERY`]).
pub fn rotation(
    slot: u64,
    order: Vec<Address>,
    skipped: &BTreeSet<Address>,
    in_grace: bool,
) -> Vec<Address> {
    if in_grace || is_probation_slot(slot) || order.iter().all(|a| skipped.contains(a)) {
        return order;
    }
    let (mut kept, behind): (Vec<Address>, Vec<Address>) =
        order.into_iter().partition(|a| !skipped.contains(a));
    kept.extend(behind);
    kept
}

/// The producers of `height`, in failover order: the rotation of its slot, except that a
/// backup which produced the parent in the same slot keeps the slot.
pub fn producers(
    height: u64,
    parent: Option<(u64, Address)>,
    members: &[(Address, u128)],
    skipped: &BTreeSet<Address>,
    in_grace: bool,
    blake3: impl Fn(&[u8]) -> [u8; 32],
) -> Vec<Address> {
    let slot = slot_of(height);
    let mut order = rotation(slot, draw(slot, members, blake3), skipped, in_grace);
    if let Some((parent_height, parent_proposer)) = parent
        && slot_of(parent_height) == slot_of(height)
        && order.first() != Some(&parent_proposer)
        && let Some(pos) = order.iter().position(|a| *a == parent_proposer)
    {
        let owner = order.remove(pos);
        order.insert(0, owner);
    }
    order
}

/// Where a missed-block record lives: chain state in the runtime, memory per fork in the node's
/// consensus. [`record_block`] is the one rule over it.
pub trait MissedBlockRecord {
    /// The previous block's (height, proposer, consecutive blocks by that proposer).
    fn last(&mut self) -> Option<(u64, Address, u32)>;
    /// Sets it.
    fn set_last(&mut self, last: (u64, Address, u32));
    /// A validator's (consecutive misses, all misses).
    fn missed(&mut self, who: &Address) -> (u32, u64);
    /// Sets them.
    fn set_missed(&mut self, who: &Address, missed: (u32, u64));
    /// Validators out of the rotation.
    fn skipped(&mut self) -> BTreeSet<Address>;
    /// Sets them.
    fn set_skipped(&mut self, skipped: BTreeSet<Address>);
    /// blake3, for the draw.
    fn blake3(&self, bytes: &[u8]) -> [u8; 32];
}

/// Records block `height` produced by `proposer` over `members`: the validator that was due and
/// did not produce is charged a miss (none in a grace period); three consecutive misses take it
/// out of the rotation, two consecutive blocks bring a validator back.
pub fn record_block(
    rec: &mut impl MissedBlockRecord,
    height: u64,
    proposer: Address,
    members: &[(Address, u128)],
    in_grace: bool,
) {
    let last = rec.last();
    let mut skipped = rec.skipped();
    let before = skipped.clone();
    let due = producers(
        height,
        last.map(|(h, p, _)| (h, p)),
        members,
        &skipped,
        in_grace,
        |b| rec.blake3(b),
    );
    let streak = match last {
        Some((h, p, n)) if p == proposer && h + 1 == height => n + 1,
        _ => 1,
    };
    rec.set_last((height, proposer, streak));
    let (_, total) = rec.missed(&proposer);
    rec.set_missed(&proposer, (0, total));
    if streak >= PRODUCED_TO_RETURN {
        skipped.remove(&proposer);
    }
    if !in_grace
        && let Some(leader) = due.first().copied()
        && leader != proposer
    {
        let (streak, total) = rec.missed(&leader);
        rec.set_missed(&leader, (streak + 1, total + 1));
        if streak + 1 >= MISSES_TO_SKIP {
            skipped.insert(leader);
        }
    }
    if skipped != before {
        rec.set_skipped(skipped);
    }
}

/// How long backup `position` (1 = first backup) waits past the block's due time: 5 + 3 ×
/// (position − 1) units of `base_ms` (1 s in production).
pub fn failover_delay_ms(position: usize, base_ms: u64) -> u64 {
    if position == 0 {
        return 0;
    }
    base_ms * (5 + 3 * (position as u64 - 1))
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    fn b3(b: &[u8]) -> [u8; 32] {
        *blake3::hash(b).as_bytes()
    }

    fn set(stakes: &[u128]) -> Vec<(Address, u128)> {
        stakes
            .iter()
            .enumerate()
            .map(|(i, s)| (Address([i as u8 + 1; 32]), *s))
            .collect()
    }

    #[test]
    fn the_draw_is_a_stake_weighted_permutation() {
        let s = set(&[70, 20, 10]);
        let mut leader_counts = [0u32; 3];
        for slot in 0..3000 {
            let order = draw(slot, &s, b3);
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, s.iter().map(|(a, _)| *a).collect::<Vec<_>>());
            leader_counts[(order[0].0[0] - 1) as usize] += 1;
        }
        assert!(
            (2000..2200).contains(&leader_counts[0]),
            "{leader_counts:?}"
        );
        assert!((520..680).contains(&leader_counts[1]), "{leader_counts:?}");
        assert!((230..370).contains(&leader_counts[2]), "{leader_counts:?}");
    }

    #[test]
    fn the_draw_is_pinned() {
        // A change to the draw changes who leads on every node: never silent.
        let firsts = |slot| -> Vec<u8> {
            draw(slot, &set(&[5, 3, 1, 1]), b3)
                .iter()
                .map(|a| a.0[0])
                .collect()
        };
        assert_eq!(firsts(7), [1, 2, 4, 3]);
        assert_eq!(firsts(8), [4, 3, 1, 2]);
    }

    #[test]
    fn skip_moves_validators_back_but_never_everyone_not_in_grace_nor_probation() {
        let order = draw(3, &set(&[1, 1, 1]), b3);
        let skipped: BTreeSet<Address> = [order[0]].into();
        assert_eq!(
            rotation(3, order.clone(), &skipped, false).last(),
            Some(&order[0])
        );
        assert_eq!(rotation(3, order.clone(), &skipped, true), order);
        assert_eq!(rotation(4, order.clone(), &skipped, false), order);
        let all: BTreeSet<Address> = order.iter().copied().collect();
        assert_eq!(rotation(3, order.clone(), &all, false), order);
    }

    #[test]
    fn a_backup_keeps_the_slot_it_took_over() {
        let s = set(&[1, 1, 1]);
        let order = draw(slot_of(10), &s, b3);
        let backup = order[2];
        let p = producers(11, Some((10, backup)), &s, &BTreeSet::new(), false, b3);
        assert_eq!(p[0], backup);
        // A new slot starts from its own draw.
        let p = producers(15, Some((14, backup)), &s, &BTreeSet::new(), false, b3);
        assert_eq!(p, draw(slot_of(15), &s, b3));
    }

    #[test]
    fn failover_waits_grow_by_position() {
        assert_eq!(failover_delay_ms(0, 1000), 0);
        assert_eq!(failover_delay_ms(1, 1000), 5000);
        assert_eq!(failover_delay_ms(2, 1000), 8000);
        assert_eq!(failover_delay_ms(3, 10), 110);
    }
}
