//! A write cache over an [`Env`] that makes a transaction's operations all-or-nothing.
//!
//! Operations write into the overlay; [`Overlay::commit`] flushes the writes to the underlying
//! environment in key order (so the host sees them deterministically), and dropping the overlay
//! discards them. Additions to block totals are held and flushed (or dropped) the same way.

use super::Env;
use alloc::{collections::BTreeMap, vec::Vec};
use core::ops::Bound;

/// Pending writes over an environment.
pub struct Overlay<'a, E: Env> {
    inner: &'a mut E,
    changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    totals: BTreeMap<Vec<u8>, u128>,
}

impl<'a, E: Env> Overlay<'a, E> {
    /// An empty overlay over `inner`.
    pub fn new(inner: &'a mut E) -> Self {
        Self {
            inner,
            changes: BTreeMap::new(),
            totals: BTreeMap::new(),
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
        for (name, amount) in self.totals {
            self.inner.add_to_block_total(&name, amount);
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
    fn ed25519_verify(&self, message: &[u8], signature: &[u8; 64], key: &[u8; 32]) -> bool {
        self.inner.ed25519_verify(message, signature, key)
    }

    fn log(&self, level: u32, message: &str) {
        self.inner.log(level, message)
    }

    fn check_runtime(&self, code: &[u8]) -> Result<crate::RuntimeVersion, alloc::string::String> {
        self.inner.check_runtime(code)
    }

    fn add_to_block_total(&mut self, name: &[u8], amount: u128) {
        let total = self.totals.entry(name.to_vec()).or_default();
        *total = total.saturating_add(amount);
    }

    fn block_total(&mut self, name: &[u8]) -> u128 {
        let pending = self.totals.get(name).copied().unwrap_or(0);
        self.inner.block_total(name).saturating_add(pending)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::vec;

    #[derive(Default)]
    struct MapEnv(BTreeMap<Vec<u8>, Vec<u8>>, BTreeMap<Vec<u8>, u128>);
    impl Env for MapEnv {
        fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
            self.0.get(key).cloned()
        }
        fn set(&mut self, key: &[u8], value: &[u8]) {
            self.0.insert(key.to_vec(), value.to_vec());
        }
        fn remove(&mut self, key: &[u8]) {
            self.0.remove(key);
        }
        fn next_key(&mut self, key: &[u8]) -> Option<Vec<u8>> {
            self.0
                .range::<[u8], _>((Bound::Excluded(key), Bound::Unbounded))
                .next()
                .map(|(k, _)| k.clone())
        }
        fn blake3(&self, _: &[u8]) -> [u8; 32] {
            [0; 32]
        }
        fn ed25519_verify(&self, _: &[u8], _: &[u8; 64], _: &[u8; 32]) -> bool {
            false
        }
        fn log(&self, _: u32, _: &str) {}
        fn check_runtime(&self, _: &[u8]) -> Result<crate::RuntimeVersion, alloc::string::String> {
            Err("not in this test".into())
        }
        fn add_to_block_total(&mut self, name: &[u8], amount: u128) {
            *self.1.entry(name.to_vec()).or_default() += amount;
        }
        fn block_total(&mut self, name: &[u8]) -> u128 {
            self.1.get(name).copied().unwrap_or(0)
        }
    }

    #[test]
    fn writes_are_invisible_below_until_commit_and_iteration_merges() {
        let mut env = MapEnv::default();
        env.set(b"a", b"1");
        env.set(b"c", b"3");
        {
            let mut o = Overlay::new(&mut env);
            o.set(b"b", b"2");
            o.remove(b"c");
            assert_eq!(o.next_key(b"a"), Some(b"b".to_vec()));
            assert_eq!(o.next_key(b"b"), None);
            assert_eq!(o.get(b"c"), None);
            // dropped: discarded
        }
        assert_eq!(env.get(b"c"), Some(b"3".to_vec()));
        assert_eq!(env.get(b"b"), None);
        let mut o = Overlay::new(&mut env);
        o.set(b"b", b"2");
        o.remove(b"a");
        o.commit();
        assert_eq!(
            env.0.keys().cloned().collect::<Vec<_>>(),
            vec![b"b".to_vec(), b"c".to_vec()]
        );
    }

    #[test]
    fn block_totals_are_held_like_writes() {
        let mut env = MapEnv::default();
        env.add_to_block_total(b"fees", 5);
        {
            let mut o = Overlay::new(&mut env);
            o.add_to_block_total(b"fees", 7);
            o.add_to_block_total(b"fees", u128::MAX);
            assert_eq!(o.block_total(b"fees"), u128::MAX);
            // dropped: discarded
        }
        assert_eq!(env.block_total(b"fees"), 5);
        let mut o = Overlay::new(&mut env);
        o.add_to_block_total(b"fees", 7);
        o.add_to_block_total(b"other", 1);
        assert_eq!(o.block_total(b"fees"), 12);
        o.commit();
        assert_eq!(env.block_total(b"fees"), 12);
        assert_eq!(env.block_total(b"other"), 1);
    }
}
