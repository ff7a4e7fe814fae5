//! A cache of the `state` family's values, and of keys it does not hold, in front of RocksDB.
//!
//! Under load most reads find a key the last few blocks wrote, so it sits in RocksDB's memtable,
//! a skip list of every write since the last flush (hundreds of thousands of entries): each read
//! followed a chain of cache misses down it, and such reads were a fifth of a loaded node's CPU
//! (execution's reads of accounts, admission's, the state root's old values). A hash map answers
//! them in one probe.
//!
//! The cache holds exactly what the database holds: a read that misses stores what it read, and a
//! block's commit updates every cached key it writes, after the write. A read that raced a commit
//! could store a value the commit just replaced; a generation counter, odd while a commit is in
//! progress and advanced at its start and end, lets a miss store its value only if no commit
//! began since it read the counter (checked under the shard's lock, which the commit's update of
//! that key also takes). Only speed depends on the cache: consensus reads the same values with or
//! without it.
//!
//! Bounded by entries, two generations per shard (an approximate LRU): new entries go into the
//! hot map; when it is full it becomes the cold one (the old cold map is dropped); a hit in the
//! cold map moves the entry back into the hot one.

use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// Shards: enough that the threads of one node (execution workers, admission, the state root)
/// rarely wait on one another's lock.
const SHARDS: usize = 64;

/// A value, or `None` for a key the database does not hold.
type Entry = Option<Vec<u8>>;

/// Entries with their key's hash, computed once per lookup (it also picks the shard).
type Map = HashTable<(u64, Vec<u8>, Entry)>;

#[derive(Default)]
struct Shard {
    hot: Map,
    cold: Map,
}

impl Shard {
    fn get(&mut self, hash: u64, key: &[u8], capacity: usize) -> Option<Entry> {
        let same = |e: &(u64, Vec<u8>, Entry)| e.0 == hash && e.1 == key;
        if let Some((_, _, v)) = self.hot.find(hash, same) {
            return Some(v.clone());
        }
        let (entry, _) = self.cold.find_entry(hash, same).ok()?.remove();
        let value = entry.2.clone();
        self.insert(entry, capacity);
        Some(value)
    }

    fn insert(&mut self, entry: (u64, Vec<u8>, Entry), capacity: usize) {
        if self.hot.len() >= capacity {
            self.cold = std::mem::take(&mut self.hot);
        }
        let hash = entry.0;
        let found = self.hot.find_mut(hash, |e| e.0 == hash && e.1 == entry.1);
        match found {
            Some(e) => e.2 = entry.2,
            None => {
                self.hot.insert_unique(hash, entry, |e| e.0);
            }
        }
    }

    /// Replaces the value of a cached key (a key not cached stays uncached), in both maps: a
    /// key read back into the hot map while an older copy still sits in the cold one has both.
    fn update(&mut self, hash: u64, key: &[u8], value: &Entry) {
        let same = |e: &(u64, Vec<u8>, Entry)| e.0 == hash && e.1 == key;
        for map in [&mut self.hot, &mut self.cold] {
            if let Some(e) = map.find_mut(hash, same) {
                e.2.clone_from(value);
            }
        }
    }
}

/// The cache.
pub struct StateCache {
    shards: Box<[Mutex<Shard>]>,
    /// Entries a shard's hot map holds before it becomes the cold one.
    shard_capacity: usize,
    /// Odd while a commit is writing.
    generation: AtomicU64,
    hasher: DefaultHashBuilder,
}

impl StateCache {
    /// A cache of up to about `entries` hot entries (and as many cold ones).
    pub fn new(entries: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_capacity: (entries / SHARDS).max(1),
            generation: AtomicU64::new(0),
            // Seeded per process: keys are partly chosen by users, and a fixed seed would let
            // them pick keys that all land in one bucket.
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// The shard of the key with `hash`, locked.
    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[(hash >> 58) as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key`: cached, or read with `load` (and cached unless a commit began since).
    pub fn get<E>(&self, key: &[u8], load: impl FnOnce() -> Result<Entry, E>) -> Result<Entry, E> {
        let hash = self.hasher.hash_one(key);
        if let Some(v) = self.shard(hash).get(hash, key, self.shard_capacity) {
            return Ok(v);
        }
        let generation = self.generation.load(SeqCst);
        let value = load()?;
        if generation.is_multiple_of(2) {
            let mut shard = self.shard(hash);
            if self.generation.load(SeqCst) == generation {
                shard.insert((hash, key.to_vec(), value.clone()), self.shard_capacity);
            }
        }
        Ok(value)
    }

    /// Runs `write` (the commit of `changes` to the database) and then brings the cached keys
    /// among `changes` up to date; if `write` fails, nothing was written and the cache stays.
    pub fn commit<'c, R, E>(
        &self,
        changes: impl IntoIterator<Item = (&'c Vec<u8>, &'c Entry)>,
        write: impl FnOnce() -> Result<R, E>,
    ) -> Result<R, E> {
        /// Ends the commit's generation however the commit ends (even a panic).
        struct Even<'a>(&'a AtomicU64);
        impl Drop for Even<'_> {
            fn drop(&mut self) {
                self.0.fetch_add(1, SeqCst);
            }
        }
        self.generation.fetch_add(1, SeqCst);
        let _even = Even(&self.generation);
        let r = write()?;
        for (key, value) in changes {
            let hash = self.hasher.hash_one(key.as_slice());
            self.shard(hash).update(hash, key, value);
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    type Db = BTreeMap<Vec<u8>, Vec<u8>>;

    fn read(cache: &StateCache, db: &Db, key: &[u8]) -> Entry {
        cache
            .get(key, || Ok::<_, ()>(db.get(key).cloned()))
            .expect("reads")
    }

    #[test]
    fn reads_what_the_database_holds_through_commits() {
        let cache = StateCache::new(SHARDS * 4);
        let mut db = Db::new();
        db.insert(b"a".to_vec(), b"1".to_vec());
        assert_eq!(read(&cache, &db, b"a"), Some(b"1".to_vec()));
        assert_eq!(read(&cache, &db, b"gone"), None);
        // Cached now: a read does not reach the database.
        let hit = cache.get(b"a", || Err("read the database"));
        assert_eq!(hit, Ok(Some(b"1".to_vec())));
        let changes: BTreeMap<Vec<u8>, Entry> = [
            (b"a".to_vec(), None),
            (b"gone".to_vec(), Some(b"2".to_vec())),
            (b"new".to_vec(), Some(b"3".to_vec())),
        ]
        .into();
        cache
            .commit(&changes, || {
                for (k, v) in &changes {
                    match v {
                        Some(v) => db.insert(k.clone(), v.clone()),
                        None => db.remove(k),
                    };
                }
                Ok::<_, ()>(())
            })
            .expect("commits");
        assert_eq!(read(&cache, &db, b"a"), None);
        assert_eq!(read(&cache, &db, b"gone"), Some(b"2".to_vec()));
        assert_eq!(read(&cache, &db, b"new"), Some(b"3".to_vec()));
        // A failed write leaves the cache as the database: unchanged.
        let failed: BTreeMap<Vec<u8>, Entry> = [(b"new".to_vec(), None)].into();
        assert_eq!(
            cache.commit(&failed, || Err::<(), _>("disk full")),
            Err("disk full")
        );
        assert_eq!(read(&cache, &db, b"new"), Some(b"3".to_vec()));
    }

    #[test]
    fn a_read_that_overlaps_a_commit_caches_nothing() {
        let cache = StateCache::new(SHARDS * 4);
        let old = Some(b"old".to_vec());
        // The read loads the old value; a commit of a new one starts and ends meanwhile.
        let got = cache.get(b"k", || {
            let none: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
            cache.commit(&none, || Ok::<_, ()>(())).expect("commits");
            Ok::<_, ()>(old.clone())
        });
        assert_eq!(got, Ok(old));
        // Not cached: the next read goes to the database again.
        assert_eq!(
            cache.get(b"k", || Ok::<_, ()>(Some(b"new".to_vec()))),
            Ok(Some(b"new".to_vec()))
        );
    }

    #[test]
    fn stays_bounded_and_keeps_what_is_used() {
        let cache = StateCache::new(SHARDS);
        let db: Db = (0..10_000u32)
            .map(|i| (i.to_be_bytes().to_vec(), vec![1]))
            .collect();
        for i in 0..10_000u32 {
            read(&cache, &db, &i.to_be_bytes());
            // Key 0 is read all along, so it stays.
            read(&cache, &db, &0u32.to_be_bytes());
        }
        let held: usize = cache
            .shards
            .iter()
            .map(|s| {
                let s = s.lock().expect("not poisoned");
                s.hot.len() + s.cold.len()
            })
            .sum();
        assert!(held <= 2 * SHARDS, "{held} entries held");
        assert_eq!(
            cache.get(&0u32.to_be_bytes(), || Err("evicted")),
            Ok(Some(vec![1]))
        );
    }
}
