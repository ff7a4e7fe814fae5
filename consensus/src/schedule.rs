//! Who produces which block: leader slots of [`SLOT_BLOCKS`] blocks, a stake-weighted draw
//! without replacement per slot (SPEC §10), failover by position, and leader skip.

use crate::types::ValidatorSet;
use std::collections::BTreeSet;
use vexidus_runtime_api::Address;

/// Blocks per leader slot.
pub const SLOT_BLOCKS: u64 = 5;

/// The slot of a height.
pub const fn slot_of(height: u64) -> u64 {
    height / SLOT_BLOCKS
}

/// The stake-weighted order of slot `slot`: the leader first, then the backups in failover
/// order. Validators are taken from the set sorted by address; each pick draws 128 bits from
/// the blake3 XOF of `slot as u64 LE ‖ "leader_selection_v1"` and walks the cumulative stake of
/// those not yet picked.
pub fn draw(slot: u64, set: &ValidatorSet) -> Vec<Address> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&slot.to_le_bytes());
    hasher.update(b"leader_selection_v1");
    let mut xof = hasher.finalize_xof();
    let mut remaining: Vec<(Address, u128)> = set
        .members
        .iter()
        .filter(|(_, s)| **s > 0)
        .map(|(a, s)| (*a, *s))
        .collect();
    let mut order = Vec::with_capacity(remaining.len());
    while !remaining.is_empty() {
        let total: u128 = remaining.iter().map(|(_, s)| *s).sum();
        let mut bytes = [0u8; 16];
        xof.fill(&mut bytes);
        let mut r = u128::from_le_bytes(bytes) % total;
        let mut index = remaining.len() - 1;
        for (i, (_, stake)) in remaining.iter().enumerate() {
            if r < *stake {
                index = i;
                break;
            }
            r -= stake;
        }
        order.push(remaining.remove(index).0);
    }
    order
}

/// The draw of `slot` with leader skip applied: validators in `skipped` move behind the others
/// (they stay reachable as late backups, which is how they produce their way back in). Not
/// applied when it would skip everyone, nor during an upgrade grace period.
pub fn rotation(
    slot: u64,
    set: &ValidatorSet,
    skipped: &BTreeSet<Address>,
    in_grace: bool,
) -> Vec<Address> {
    let order = draw(slot, set);
    if in_grace || order.iter().all(|a| skipped.contains(a)) {
        return order;
    }
    let (mut kept, behind): (Vec<Address>, Vec<Address>) =
        order.into_iter().partition(|a| !skipped.contains(a));
    kept.extend(behind);
    kept
}

/// How long backup `position` (1 = first backup) waits past the block's due time before it
/// produces: 5 + 3 × (position − 1) units of `base_ms` (1 s in production).
pub fn failover_delay_ms(position: usize, base_ms: u64) -> u64 {
    if position == 0 {
        return 0;
    }
    base_ms * (5 + 3 * (position as u64 - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(stakes: &[u128]) -> ValidatorSet {
        ValidatorSet::new(
            stakes
                .iter()
                .enumerate()
                .map(|(i, s)| (Address([i as u8 + 1; 32]), *s)),
        )
    }

    #[test]
    fn the_draw_is_a_stake_weighted_permutation() {
        let s = set(&[70, 20, 10]);
        let mut leader_counts = [0u32; 3];
        for slot in 0..3000 {
            let order = draw(slot, &s);
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, s.members.keys().copied().collect::<Vec<_>>());
            leader_counts[(order[0].0[0] - 1) as usize] += 1;
        }
        // 70/20/10 within a few percent over 3000 slots.
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
        let order = draw(7, &set(&[5, 3, 1, 1]));
        let firsts: Vec<u8> = order.iter().map(|a| a.0[0]).collect();
        assert_eq!(firsts, PINNED_SLOT_7);
        let order = draw(8, &set(&[5, 3, 1, 1]));
        let firsts: Vec<u8> = order.iter().map(|a| a.0[0]).collect();
        assert_eq!(firsts, PINNED_SLOT_8);
    }
    const PINNED_SLOT_8: [u8; 4] = [2, 1, 4, 3];
    const PINNED_SLOT_7: [u8; 4] = [1, 2, 3, 4];

    #[test]
    fn skip_moves_validators_back_but_never_everyone_and_not_in_grace() {
        let s = set(&[1, 1, 1]);
        let order = draw(3, &s);
        let skipped: BTreeSet<Address> = [order[0]].into();
        let r = rotation(3, &s, &skipped, false);
        assert_eq!(r.last(), Some(&order[0]));
        assert_eq!(rotation(3, &s, &skipped, true), order);
        let all: BTreeSet<Address> = order.iter().copied().collect();
        assert_eq!(rotation(3, &s, &all, false), order);
    }

    #[test]
    fn failover_waits_grow_by_position() {
        assert_eq!(failover_delay_ms(0, 1000), 0);
        assert_eq!(failover_delay_ms(1, 1000), 5000);
        assert_eq!(failover_delay_ms(2, 1000), 8000);
        assert_eq!(failover_delay_ms(3, 10), 110);
    }
}
