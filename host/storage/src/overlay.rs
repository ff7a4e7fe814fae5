//! Overlays over the database state: a block's changes, and above them the changes of the
//! transaction being applied, so a transaction the node refuses leaves nothing behind. The
//! block's totals (the ABI's sums that are not state) are layered the same way.

use crate::StateBackend;
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::ops::Bound;
use vexidus_executor::Externalities;

/// A change set: `None` marks a deletion.
pub type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Block totals by name.
pub type Totals = BTreeMap<Vec<u8>, u128>;

/// One call's additions to block totals, in order, not yet summed: names that fit stay inline,
/// so the usual call (two additions, to the fees' two totals) allocates nothing; they are summed
/// into a [`Totals`] when the call is committed.
pub type Additions = SmallVec<[(SmallVec<[u8; 24]>, u128); 2]>;

/// Transaction overlay → block overlay → backend.
pub struct StateOverlay<'a> {
    backend: &'a dyn StateBackend,
    block: Changes,
    tx: Changes,
    block_totals: Totals,
    tx_totals: Additions,
    totals_readable: bool,
}

/// Adds `amount` to the total `name` in `totals` (saturating: an unsigned sum reaches the
/// maximum in any order or not at all, so the result does not depend on the order of adding).
pub fn add_total(totals: &mut Totals, name: &[u8], amount: u128) {
    match totals.get_mut(name) {
        Some(total) => *total = total.saturating_add(amount),
        None => {
            totals.insert(name.to_vec(), amount);
        }
    }
}

impl<'a> StateOverlay<'a> {
    /// An empty overlay over `backend`.
    pub fn new(backend: &'a dyn StateBackend) -> Self {
        Self {
            backend,
            block: Changes::new(),
            tx: Changes::new(),
            block_totals: Totals::new(),
            tx_totals: Additions::new(),
            totals_readable: false,
        }
    }

    /// Folds the pending transaction's changes (and additions to totals) into the block's.
    pub fn commit_transaction(&mut self) {
        let tx = std::mem::take(&mut self.tx);
        self.block.extend(tx);
        for (name, amount) in std::mem::take(&mut self.tx_totals) {
            add_total(&mut self.block_totals, &name, amount);
        }
    }

    /// Adds totals summed elsewhere (parallel execution) to the block's.
    pub fn commit_totals(&mut self, totals: Totals) {
        for (name, amount) in totals {
            add_total(&mut self.block_totals, &name, amount);
        }
    }

    /// Lets calls read the block's totals (`end_block`) or stops them again.
    pub fn set_totals_readable(&mut self, readable: bool) {
        self.totals_readable = readable;
    }

    /// Folds changes made elsewhere (parallel execution) into the block's, over what is there.
    pub fn commit_changes(&mut self, mut changes: Changes) {
        self.commit_transaction();
        if self.block.len() <= changes.len() / 16 {
            // The block's few earlier changes (`begin_block`'s) go under the new ones one by
            // one: merging would rebuild the whole map, comparing every key, on one thread.
            let earlier = std::mem::replace(&mut self.block, changes);
            for (key, value) in earlier {
                self.block.entry(key).or_insert(value);
            }
        } else {
            // A linear merge of two sorted maps.
            self.block.append(&mut changes);
        }
    }

    /// Drops the pending transaction's changes and additions to totals.
    pub fn discard_transaction(&mut self) {
        self.tx.clear();
        self.tx_totals.clear();
    }

    /// The block's changes (the pending transaction must have been committed or discarded).
    pub fn into_changes(mut self) -> Changes {
        self.commit_transaction();
        self.block
    }

    /// The block's changes so far, without the pending transaction.
    pub fn block_changes(&self) -> &Changes {
        &self.block
    }

    fn change(&self, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.tx.get(key).or_else(|| self.block.get(key))
    }

    /// Reads a value (shared access: parallel execution reads the block's state from many
    /// threads at once).
    pub fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match self.change(key) {
            Some(v) => Ok(v.clone()),
            None => self.backend.get(key),
        }
    }

    /// The next key strictly after `key` (shared access).
    pub fn read_next_key(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let mut cursor = key.to_vec();
        let from_backend = loop {
            match self.backend.next_key(&cursor)? {
                Some(k) if matches!(self.change(&k), Some(None)) => cursor = k,
                other => break other,
            }
        };
        let range = (Bound::Excluded(key), Bound::Unbounded);
        let from_block = self
            .block
            .range::<[u8], _>(range)
            .find(|(k, v)| v.is_some() && !matches!(self.tx.get(*k), Some(None)))
            .map(|(k, _)| k.clone());
        let from_tx = self
            .tx
            .range::<[u8], _>(range)
            .find(|(_, v)| v.is_some())
            .map(|(k, _)| k.clone());
        Ok([from_backend, from_block, from_tx]
            .into_iter()
            .flatten()
            .min())
    }
}

impl Externalities for StateOverlay<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.read(key)
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.tx.insert(key.to_vec(), Some(value.to_vec()));
    }

    fn remove(&mut self, key: &[u8]) {
        self.tx.insert(key.to_vec(), None);
    }

    fn next_key(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.read_next_key(key)
    }

    fn add_to_total(&mut self, name: &[u8], amount: u128) -> Result<(), String> {
        self.tx_totals.push((name.into(), amount));
        Ok(())
    }

    fn total(&mut self, name: &[u8]) -> Result<u128, String> {
        if !self.totals_readable {
            return Err(vexidus_executor::TOTALS_IN_END_BLOCK_ONLY.into());
        }
        let block = self.block_totals.get(name).copied().unwrap_or(0);
        Ok(self
            .tx_totals
            .iter()
            .filter(|(n, _)| n.as_slice() == name)
            .fold(block, |sum, (_, amount)| sum.saturating_add(*amount)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::MapBackend;

    #[test]
    fn committed_changes_go_over_the_blocks_earlier_ones() {
        let backend = MapBackend(BTreeMap::new());
        // Few earlier changes (inserted one by one) and as many as the new ones (merged).
        for earlier in [2u8, 200] {
            let mut o = StateOverlay::new(&backend);
            for i in 0..earlier {
                o.set(&[i], b"earlier");
            }
            o.commit_transaction();
            o.set(&[0], b"pending");
            o.remove(&[1]);
            let changes: Changes = (1..=200u8)
                .map(|i| (vec![i], Some(b"new".to_vec())))
                .collect();
            o.commit_changes(changes);
            let got = o.into_changes();
            assert_eq!(got.len(), 201);
            assert_eq!(got[&vec![0]], Some(b"pending".to_vec()));
            assert!(
                got.range(vec![1]..)
                    .all(|(_, v)| v.as_deref() == Some(b"new"))
            );
        }
    }

    #[test]
    fn totals_are_layered_like_changes_and_read_in_end_block_only() {
        let backend = MapBackend(BTreeMap::new());
        let mut o = StateOverlay::new(&backend);
        o.add_to_total(b"fees", 3).expect("adds");
        o.commit_transaction();
        o.add_to_total(b"fees", 100).expect("adds");
        o.discard_transaction();
        o.add_to_total(b"fees", 4).expect("adds");
        o.add_to_total(b"other", u128::MAX).expect("adds");
        o.add_to_total(b"other", 1).expect("adds");
        assert_eq!(
            o.total(b"fees"),
            Err(vexidus_executor::TOTALS_IN_END_BLOCK_ONLY.into())
        );
        o.commit_transaction();
        o.commit_totals([(b"fees".to_vec(), 10)].into());
        o.set_totals_readable(true);
        o.add_to_total(b"fees", 1000).expect("adds");
        // The pending call's own additions count too.
        assert_eq!(o.total(b"fees"), Ok(1017));
        assert_eq!(o.total(b"other"), Ok(u128::MAX));
        assert_eq!(o.total(b"none"), Ok(0));
        o.set_totals_readable(false);
        assert!(o.total(b"fees").is_err());
    }

    #[test]
    fn layers_merge_for_reads_and_iteration() {
        let backend = MapBackend(
            [
                (b"a".to_vec(), b"1".to_vec()),
                (b"c".to_vec(), b"3".to_vec()),
            ]
            .into(),
        );
        let mut o = StateOverlay::new(&backend);
        o.set(b"b", b"2");
        o.remove(b"c");
        o.commit_transaction();
        o.set(b"d", b"4");
        o.remove(b"b");
        assert_eq!(o.next_key(b"a").expect("ok"), Some(b"d".to_vec()));
        o.discard_transaction();
        assert_eq!(o.next_key(b"a").expect("ok"), Some(b"b".to_vec()));
        assert_eq!(o.next_key(b"b").expect("ok"), None);
        assert_eq!(o.get(b"c").expect("ok"), None);
        assert_eq!(o.get(b"a").expect("ok"), Some(b"1".to_vec()));
        let changes = o.into_changes();
        assert_eq!(changes.len(), 2);
    }
}
