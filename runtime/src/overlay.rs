//! A write cache over an [`Env`] that makes a transaction's operations all-or-nothing.
//!
//! Operations write into the overlay; [`Overlay::commit`] flushes the writes to the underlying
//! environment in key order (so the host sees them deterministically), and dropping the overlay
//! discards them.

use crate::env::Env;
use alloc::{collections::BTreeMap, vec::Vec};
use core::ops::Bound;

/// Pending writes over an environment.
pub struct Overlay<'a, E: Env> {
    inner: &'a mut E,
    changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a, E: Env> Overlay<'a, E> {
    /// An empty overlay over `inner`.
    pub fn new(inner: &'a mut E) -> Self {
        Self {
            inner,
            changes: BTreeMap::new(),
        }
    }

    /// Writes every pending change through to the underlying environment.
    pub fn commit(self) {
        for (k, v) in self.changes {
            match v {
                Some(v) => self.inner.set(&k, &v),
                None => self.inner.remove(&k),
            }
        }
    }
}

impl<E: Env> Env for Overlay<'_, E> {
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        match self.changes.get(key) {
            Some(v) => v.clone(),
            None => self.inner.get(key),
        }
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.changes.insert(key.to_vec(), Some(value.to_vec()));
    }

    fn remove(&mut self, key: &[u8]) {
        self.changes.insert(key.to_vec(), None);
    }

    fn next_key(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        // Merge the next live key of the cache with the next key underneath that the cache has
        // not deleted.
        let mut cursor = key.to_vec();
        let below = loop {
            match self.inner.next_key(&cursor) {
                Some(k) if matches!(self.changes.get(&k), Some(None)) => cursor = k,
                other => break other,
            }
        };
        let cached = self
            .changes
            .range::<[u8], _>((Bound::Excluded(key), Bound::Unbounded))
            .find(|(_, v)| v.is_some())
            .map(|(k, _)| k.clone());
        match (below, cached) {
            (Some(a), Some(b)) => Some(if a <= b { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    fn blake3(&self, data: &[u8]) -> [u8; 32] {
        self.inner.blake3(data)
    }

    fn log(&self, level: u32, message: &str) {
        self.inner.log(level, message)
    }
}
