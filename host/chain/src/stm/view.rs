//! Storage as one incarnation of a run sees it: its own writes over the run's earlier
//! transactions', over the multi-version memory.

use super::common::{InlineKey, RunIndex};
use super::memory::{Lookup, MvMemory, Origin, Read};
use std::collections::BTreeMap;
use std::ops::Bound;
use vexidus_executor::Externalities;
use vexidus_storage::overlay::{Additions, Changes};

/// Storage as one incarnation of a run sees it: the transaction's own writes over those of the
/// run's transactions before it, over the multi-version memory (the runs below).
pub(super) struct View<'m, 'a> {
    pub(super) mv: &'m MvMemory<'a>,
    pub(super) run: RunIndex,
    /// What this incarnation read from the multi-version memory, by key: where it came from and
    /// the value. A key read again gives the same value without going back to the shared
    /// memory (whose locks and nodes the other workers keep writing): the incarnation sees one
    /// snapshot per key, and validation checks where the first read came from, which decides
    /// both.
    pub(super) seen: BTreeMap<InlineKey, (Origin, Option<Vec<u8>>)>,
    /// The results of `next_key` below the run's writes, in order.
    pub(super) next_keys: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// What the run's included transactions so far wrote.
    pub(super) run_writes: Changes,
    /// What they added to the block totals: nothing reads them before the block ends, so they
    /// are neither read nor validated, only summed at the end.
    pub(super) run_totals: Additions,
    /// The transaction being executed: its writes and additions, until it is included or
    /// refused.
    pub(super) writes: Changes,
    pub(super) totals: Additions,
    pub(super) blocked_on: Option<RunIndex>,
}

impl<'m, 'a> View<'m, 'a> {
    pub(super) fn new(mv: &'m MvMemory<'a>, run: RunIndex) -> Self {
        Self {
            mv,
            run,
            seen: BTreeMap::new(),
            next_keys: Vec::new(),
            run_writes: Changes::new(),
            run_totals: Additions::new(),
            writes: Changes::new(),
            totals: Additions::new(),
            blocked_on: None,
        }
    }
}

impl View<'_, '_> {
    /// The transaction is included: its writes and additions join the run's.
    pub(super) fn commit_transaction(&mut self) {
        // One by one: `BTreeMap::append` rebuilds the whole run's map each time.
        for (key, value) in std::mem::take(&mut self.writes) {
            self.run_writes.insert(key, value);
        }
        self.run_totals.append(&mut self.totals);
    }

    /// The transaction is refused: its writes and additions are dropped.
    pub(super) fn discard_transaction(&mut self) {
        self.writes.clear();
        self.totals.clear();
    }

    /// What the transaction and the run before it wrote to `key`, if anything (`Some(None)`:
    /// deleted).
    pub(super) fn local(&self, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.writes.get(key).or_else(|| self.run_writes.get(key))
    }

    /// The reads to validate (the keys move; the values are not needed), the writes and the
    /// additions to totals.
    pub(super) fn into_parts(self) -> (Vec<Read>, Changes, Additions) {
        let reads = self
            .seen
            .into_iter()
            .map(|(key, (origin, _))| Read::Get(key, origin))
            .chain(
                self.next_keys
                    .into_iter()
                    .map(|(from, next)| Read::NextKey(from, next)),
            )
            .collect();
        (reads, self.run_writes, self.run_totals)
    }

    pub(super) fn blocked(&mut self, writer: RunIndex) -> String {
        self.blocked_on = Some(writer);
        format!("run {} waits for run {writer}", self.run)
    }

    /// The next key below the run's writes, recorded.
    pub(super) fn shared_next_key(&mut self, from: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match self.mv.next_key(from, self.run)? {
            Ok(next) => {
                self.next_keys.push((from.to_vec(), next.clone()));
                Ok(next)
            }
            Err(writer) => Err(self.blocked(writer)),
        }
    }
}

impl Externalities for View<'_, '_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        if let Some(v) = self
            .local(key)
            .or_else(|| self.seen.get(key).map(|(_, v)| v))
        {
            return Ok(v.clone());
        }
        match self.mv.get(key, self.run)? {
            Lookup::Found(origin, value) => {
                self.seen
                    .insert(InlineKey::from_slice(key), (origin, value.clone()));
                Ok(value)
            }
            Lookup::Blocked(writer) => Err(self.blocked(writer)),
        }
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
    }

    fn remove(&mut self, key: &[u8]) {
        self.writes.insert(key.to_vec(), None);
    }

    fn next_key(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let mut cursor = key.to_vec();
        let below = loop {
            match self.shared_next_key(&cursor)? {
                Some(k) if matches!(self.local(&k), Some(None)) => cursor = k,
                other => break other,
            }
        };
        let after = (Bound::Excluded(key), Bound::Unbounded);
        // The first key the transaction set, and the first the run set that the transaction
        // has not deleted.
        let own = self
            .writes
            .range::<[u8], _>(after)
            .find(|(_, v)| v.is_some())
            .map(|(k, _)| k);
        let run = self
            .run_writes
            .range::<[u8], _>(after)
            .find(|(k, v)| v.is_some() && !matches!(self.writes.get(*k), Some(None)))
            .map(|(k, _)| k);
        let local = [own, run].into_iter().flatten().min().cloned();
        Ok([below, local].into_iter().flatten().min())
    }

    fn add_to_total(&mut self, name: &[u8], amount: u128) -> Result<(), String> {
        self.totals.push((name.into(), amount));
        Ok(())
    }

    // `total`: the trait's refusal (a transaction never reads a block total).
}
