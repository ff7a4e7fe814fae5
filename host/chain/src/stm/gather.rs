//! The block's changes out of the multi-version memory once the workers are done: every
//! shard sorted, the key space cut into ranges, each range merged, on all cores.

use super::common::{Change, Incarnation, RunIndex};
use super::memory::{Cell, Entry, Shard, ShardMap, rank};
use super::threads::pool;

/// The next key of one piece of a shard, in a range's merge: the heap holds one per piece,
/// smallest key on top (`BinaryHeap` is a max-heap, so the order is reversed).
pub(super) struct Next {
    pub(super) head: u64,
    pub(super) key: Vec<u8>,
    pub(super) piece: usize,
}

impl Ord for Next {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.head, &other.key).cmp(&(self.head, &self.key))
    }
}

impl PartialOrd for Next {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Next {
    fn eq(&self, other: &Self) -> bool {
        self.head == other.head && self.key == other.key
    }
}

impl Eq for Next {}

/// One shard's piece of a key range, being merged: the entries left (in key order; the merge
/// takes their keys and last cells out), and the last cell of the key it has in the merge's heap.
pub(super) struct Source<'e> {
    pub(super) rest: std::slice::IterMut<'e, Entry>,
    pub(super) cell: Option<(RunIndex, Cell)>,
}

impl Source<'_> {
    /// Moves on to the piece's next key that has a cell (a transaction that ran again without
    /// writing a key leaves it without one), keeps the cell and gives the key's heap entry.
    pub(super) fn advance(&mut self, piece: usize) -> Option<Next> {
        let (head, key, cell) = self.rest.find_map(|entry| {
            let cell = entry.versions.take_last()?;
            Some((entry.head, std::mem::take(&mut entry.key), cell))
        })?;
        self.cell = Some(cell);
        Some(Next { head, key, piece })
    }
}

/// Merges one key range's pieces of every shard (each sorted) into the range's changes: each
/// key's best-ranked last cell ([`rank`]; a key written on several workers is in several
/// parts), in key order, without the keys whose best cell is an estimate (which holds no value).
pub(super) fn merge_range(pieces: Vec<&mut [Entry]>) -> Vec<Change> {
    use std::collections::binary_heap::{BinaryHeap, PeekMut};
    let mut changes = Vec::with_capacity(pieces.iter().map(|p| p.len()).sum());
    let mut sources: Vec<Source> = pieces
        .into_iter()
        .map(|piece| Source {
            rest: piece.iter_mut(),
            cell: None,
        })
        .collect();
    let mut heap: BinaryHeap<Next> = sources
        .iter_mut()
        .enumerate()
        .filter_map(|(piece, source)| source.advance(piece))
        .collect();
    // The key being merged, its best cell so far and that cell's rank.
    let mut best: Option<(Next, Cell, (RunIndex, Incarnation))> = None;
    while let Some(mut top) = heap.peek_mut() {
        let source = &mut sources[top.piece];
        let (writer, cell) = source
            .cell
            .take()
            .expect("a key in the heap has its cell kept");
        let entry = match source.advance(top.piece) {
            Some(next) => std::mem::replace(&mut *top, next),
            None => PeekMut::pop(top),
        };
        let ranked = rank(writer, &cell);
        match &mut best {
            Some((key, kept, r)) if *key == entry => {
                if ranked > *r {
                    (*kept, *r) = (cell, ranked);
                }
            }
            _ => {
                if let Some((key, Cell::Written(_, value), _)) = best.replace((entry, cell, ranked))
                {
                    changes.push((key.key, value));
                }
            }
        }
    }
    if let Some((key, Cell::Written(_, value), _)) = best {
        changes.push((key.key, value));
    }
    changes
}

/// The block's changes out of the multi-version memory (every part's shards), in key ranges
/// that follow one another: each key's last writer's value, in key order. This runs after the
/// workers finish, so it is on all cores: each shard's entries are sorted by key (the shards in
/// parallel), the key space is cut into ranges at keys sampled from the longest shard (hashing
/// spreads every range over all shards alike), each shard's sorted entries are split at the cuts
/// (a binary search each), and each range merges its piece of every shard, keeping of a key
/// written on several workers (so in several parts) the best-ranked cell.
pub(super) fn final_ranges(parts: Vec<Vec<Shard>>) -> Vec<Vec<Change>> {
    use rayon::prelude::*;
    let maps: Vec<ShardMap> = parts
        .into_iter()
        .flatten()
        .map(|shard| shard.0.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect();
    pool().install(|| {
        let mut sorted: Vec<Vec<Entry>> = maps.into_par_iter().map(ShardMap::into_sorted).collect();
        let total: usize = sorted.iter().map(Vec::len).sum();
        let ranges = (4 * pool().current_num_threads()).clamp(1, total / 1024 + 1);
        let cuts: Vec<Vec<u8>> = sorted
            .iter()
            .max_by_key(|s| s.len())
            .map_or_else(Vec::new, |s| {
                let step = s.len() / ranges;
                s.iter()
                    .skip(step)
                    .step_by(step.max(1))
                    .take(ranges - 1)
                    .map(|e| e.key.clone())
                    .collect()
            });
        // Each shard in pieces, one per range: `pieces[range][shard]`.
        let mut pieces: Vec<Vec<&mut [Entry]>> = (0..=cuts.len())
            .map(|_| Vec::with_capacity(sorted.len()))
            .collect();
        for shard in &mut sorted {
            let mut rest: &mut [Entry] = shard;
            for (range, cut) in cuts.iter().enumerate() {
                let at = rest.partition_point(|e| e.key < *cut);
                let (piece, after) = std::mem::take(&mut rest).split_at_mut(at);
                pieces[range].push(piece);
                rest = after;
            }
            pieces[cuts.len()].push(rest);
        }
        let changes: Vec<Vec<Change>> = pieces.into_par_iter().map(merge_range).collect();
        // What the merge left of the entries (the versions of keys several runs wrote) is
        // freed off the block's path.
        pool().spawn(move || drop(sorted));
        changes
    })
}

#[cfg(test)]
mod tests {
    use super::super::common::write_lock;
    use super::super::memory::{SHARDS, key_hash, shard_of};
    use super::*;
    use std::sync::RwLock;
    use vexidus_storage::overlay::Changes;

    /// Key `i` of the merge test: a spread of shapes that stress the range cuts, which fall on
    /// eight-byte prefixes: many keys sharing their first eight bytes, keys shorter than eight
    /// bytes, keys that are prefixes of other keys, and keys that differ only in byte 8.
    fn key(i: u32) -> Vec<u8> {
        let h = blake3::hash(&i.to_le_bytes());
        let r = h.as_bytes();
        match i % 5 {
            0 => [b"acct/".as_slice(), &r[..32]].concat(),
            1 => [b"samehead".as_slice(), &r[..(r[0] % 4) as usize]].concat(),
            2 => r[..1 + (r[1] % 7) as usize].to_vec(),
            3 => [b"fees/".as_slice(), &r[..3]].concat(),
            _ => [b"acct/".as_slice(), &r[..3], &[r[4] % 2]].concat(),
        }
    }

    /// The pool's threads are pinned one to a core exactly when the process may run on as
    /// many CPUs as the pool has threads (and pinning is not turned off); otherwise each keeps
    /// the CPUs the process may use.

    #[test]
    fn final_changes_hold_each_keys_last_write_once() {
        const PARTS: usize = 3;
        let parts: Vec<Vec<Shard>> = (0..PARTS)
            .map(|_| {
                (0..SHARDS)
                    .map(|_| Shard(RwLock::new(ShardMap::default())))
                    .collect()
            })
            .collect();
        let put = |part: usize, k: &[u8], writer: RunIndex, cell: Cell| {
            let hash = key_hash(k);
            write_lock(&parts[part][shard_of(hash)].0)
                .entry(hash, k.to_vec())
                .insert(writer, cell);
        };
        let mut expected = Changes::new();
        let mut in_two_parts = 0;
        for i in 0..6_000u32 {
            let k = key(i);
            let value = (i % 7 != 0).then(|| i.to_le_bytes().to_vec());
            // Later writers of a key come later (the key shapes repeat), each on some worker;
            // the highest writer's value is the change, whichever part holds it.
            let writer = 2 * i as RunIndex;
            let part = blake3::hash(&i.to_be_bytes()).as_bytes()[0] as usize % PARTS;
            if i % 11 == 0 {
                // Caught between parts (`record` moving a re-executed transaction): the
                // previous incarnation's estimate in one part, the new write in another.
                put((part + 1) % PARTS, &k, writer, Cell::Estimate(0));
                put(part, &k, writer, Cell::Written(1, value.clone()));
                in_two_parts += 1;
            } else {
                put(part, &k, writer, Cell::Written(0, value.clone()));
            }
            expected.insert(k, value);
        }
        // A key whose last writer left only an estimate has no final value, even with an older
        // write in another part.
        let stray = b"estimate".to_vec();
        put(0, &stray, 1, Cell::Written(0, Some(b"old".to_vec())));
        put(1, &stray, 3, Cell::Estimate(0));
        // A key whose only writer ran again without writing it: no cells left, no change.
        let emptied = b"emptied".to_vec();
        put(2, &emptied, 5, Cell::Written(0, Some(b"gone".to_vec())));
        let hash = key_hash(&emptied);
        write_lock(&parts[2][shard_of(hash)].0)
            .get_mut(hash, &emptied)
            .expect("just put")
            .remove(5);
        assert!(expected.len() > 3_000, "the keys overlap too much");
        assert!(in_two_parts > 500);
        let flat: Vec<Change> = final_ranges(parts).into_iter().flatten().collect();
        assert!(
            flat.windows(2).all(|w| w[0].0 < w[1].0),
            "the ranges' changes do not follow one another in key order"
        );
        let got: Changes = flat.into_iter().collect();
        assert_eq!(got.len(), expected.len());
        assert!(
            got == expected,
            "the merged changes differ from each key's last write"
        );
    }
}
