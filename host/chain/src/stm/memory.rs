//! The multi-version memory: for every key, the value each run's latest incarnation wrote,
//! in a part per worker of hashed shards, with each part's table of lowest writers.

use super::common::{Incarnation, InlineKey, RunIndex, TxOutcome, lock, read_lock, write_lock};
use hashbrown::HashTable;
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Mutex, RwLock};
use vexidus_storage::overlay::{Additions, Changes, StateOverlay};

/// A key's first eight bytes, big-endian and zero-padded: it orders like the key, and most
/// comparisons between two keys end there, without following the keys' pointers (comparing
/// keys that live in separate allocations is cache-miss bound).
pub(super) fn head(key: &[u8]) -> u64 {
    let mut head = [0u8; 8];
    let n = key.len().min(8);
    head[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(head)
}

/// A value some incarnation wrote, or the mark of an aborted incarnation's write (with that
/// incarnation, so that a later incarnation's write wins over it; see [`MvMemory::record`]).
#[derive(Clone)]
pub(super) enum Cell {
    Written(Incarnation, Option<Vec<u8>>),
    Estimate(Incarnation),
}

impl Cell {
    pub(super) fn incarnation(&self) -> Incarnation {
        match self {
            Cell::Written(inc, _) | Cell::Estimate(inc) => *inc,
        }
    }
}

/// Where a read found its value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Origin {
    /// The block's state before its transactions.
    Base,
    /// The write of this run's incarnation.
    Version(RunIndex, Incarnation),
}

/// One read an incarnation made below its own writes. A key read is an [`InlineKey`], for the
/// reason [`Last`]'s written keys are.
pub(super) enum Read {
    Get(InlineKey, Origin),
    NextKey(Vec<u8>, Option<Vec<u8>>),
}

/// The result of a read in the multi-version memory.
pub(super) enum Lookup {
    Found(Origin, Option<Vec<u8>>),
    /// The value is an estimate of this (aborted) run's write.
    Blocked(RunIndex),
}

/// Versions of one key in one worker's part: the cell each run's last incarnation left
/// there, sorted by index. Mostly one entry (a block's keys are mostly written once), kept
/// inline: no allocation to record it and none to free; appended near the end (execution runs
/// roughly in index order).
#[derive(Default)]
pub(super) struct Versions(pub(super) SmallVec<[(RunIndex, Cell); 1]>);

impl Versions {
    /// The cell run `run` reads: the highest lower writer's.
    pub(super) fn visible(&self, run: RunIndex) -> Option<(RunIndex, &Cell)> {
        let below = self.0.partition_point(|(w, _)| *w < run);
        below.checked_sub(1).map(|i| (self.0[i].0, &self.0[i].1))
    }

    pub(super) fn slot(&mut self, run: RunIndex) -> Result<usize, usize> {
        self.0.binary_search_by_key(&run, |(w, _)| *w)
    }

    pub(super) fn insert(&mut self, run: RunIndex, cell: Cell) {
        match self.slot(run) {
            Ok(i) => self.0[i].1 = cell,
            Err(i) => self.0.insert(i, (run, cell)),
        }
    }

    pub(super) fn remove(&mut self, run: RunIndex) {
        if let Ok(i) = self.slot(run) {
            self.0.remove(i);
        }
    }

    pub(super) fn get_mut(&mut self, run: RunIndex) -> Option<&mut Cell> {
        self.slot(run).ok().map(|i| &mut self.0[i].1)
    }

    /// The last writer and its cell, taken out when all is done.
    pub(super) fn take_last(&mut self) -> Option<(RunIndex, Cell)> {
        self.0.pop()
    }
}

/// Which of two cells of one key a reader sees: the higher writer's, and of two cells of one
/// writer (in two parts, while `record` moves a run's writes), the later incarnation's.
pub(super) fn rank(writer: RunIndex, cell: &Cell) -> (RunIndex, Incarnation) {
    (writer, cell.incarnation())
}

/// Shards of one worker's part, so a worker's reads and its own writes seldom wait for one
/// another. `next_key` merges them.
pub(super) const SHARDS: usize = 16;

/// One shard, alone on its cache lines (two workers hammering locks that share a line would
/// serialise on it).
#[repr(align(128))]
pub(super) struct Shard(pub(super) RwLock<ShardMap>);

/// One key's versions in a shard, with the key: the one the run's writes came with, moved in
/// (not copied) and moved on into the block's changes at the end, so a key written once costs
/// no allocation here. Finding it follows the key's pointer only when the whole hash matches
/// (the index keeps it), so a key not in the shard almost never does.
pub(super) struct Entry {
    /// The key's first eight bytes ([`head`]), for the final sort and merge.
    pub(super) head: u64,
    pub(super) key: Vec<u8>,
    pub(super) versions: Versions,
}

/// One shard's keys: an entry per key, in the order they were first written, found through a
/// hash index. Order is kept only where it is needed:
///
/// - `next_key` builds an ordered index of the shard the first time it looks into it in a
///   block, and every new key goes into that index from then on (a block of transfers never
///   calls it, so never pays for it);
/// - the final gathering sorts each shard's entries once ([`ShardMap::into_sorted`]).
///
/// Why not an ordered tree: recording a run's writes would search it for every key, three or
/// four levels of nodes of up to eleven 48-byte keys each, on cache misses after a run's wasm
/// calls have cycled the caches, the hottest part of Block-STM's own CPU. The index finds a
/// key with one probe of its slots and one entry, which halves Block-STM's own CPU against a
/// tree.
#[derive(Default)]
pub(super) struct ShardMap {
    pub(super) entries: Vec<Entry>,
    /// `(index_hash, position in entries)` of every key: the hash is kept so that growing the
    /// index reads no entry.
    pub(super) index: HashTable<(u64, usize)>,
    /// The keys in order, with their position in `entries`, once `next_key` has looked here.
    pub(super) ordered: Option<BTreeMap<Vec<u8>, usize>>,
}

/// A key's hash as a shard's index uses it. The hash's low bits picked the shard
/// ([`shard_of`]), so they are the same for every key in it; the index takes a bucket from the
/// low bits and a tag from the top seven, which the rotation both fills with other bits.
pub(super) fn index_hash(hash: u64) -> u64 {
    hash.rotate_left(32)
}

impl ShardMap {
    pub(super) fn position(&self, hash: u64, key: &[u8]) -> Option<usize> {
        let h = index_hash(hash);
        self.index
            .find(h, is_key(&self.entries, h, key))
            .map(|&(_, i)| i)
    }

    pub(super) fn get(&self, hash: u64, key: &[u8]) -> Option<&Versions> {
        self.position(hash, key).map(|i| &self.entries[i].versions)
    }

    pub(super) fn get_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut Versions> {
        let i = self.position(hash, key)?;
        Some(&mut self.entries[i].versions)
    }

    /// The versions of `key` (of hash `hash`), a new entry without any if it has none.
    pub(super) fn entry(&mut self, hash: u64, key: Vec<u8>) -> &mut Versions {
        let h = index_hash(hash);
        let entries = &self.entries;
        let i = match self.index.entry(h, is_key(entries, h, &key), |&(eh, _)| eh) {
            hashbrown::hash_table::Entry::Occupied(o) => o.get().1,
            hashbrown::hash_table::Entry::Vacant(v) => {
                let i = self.entries.len();
                v.insert((h, i));
                if let Some(ordered) = &mut self.ordered {
                    ordered.insert(key.clone(), i);
                }
                self.entries.push(Entry {
                    head: head(&key),
                    key,
                    versions: Versions::default(),
                });
                i
            }
        };
        &mut self.entries[i].versions
    }

    /// Builds the ordered index, unless it is built.
    pub(super) fn build_ordered(&mut self) {
        if self.ordered.is_none() {
            let ordered = self
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| (e.key.clone(), i))
                .collect();
            self.ordered = Some(ordered);
        }
    }

    /// The first key after `after`, in key order, for which `f` of its versions gives
    /// something, and what it gives. Needs the ordered index ([`ordered_shard`] builds it):
    /// without it the answer would silently skip this shard's keys, so that is a panic.
    pub(super) fn first_after<R>(
        &self,
        after: &[u8],
        f: impl Fn(&Versions) -> Option<R>,
    ) -> Option<(&Vec<u8>, R)> {
        self.ordered
            .as_ref()
            .expect("next_key looked into a shard whose order was not built")
            .range::<[u8], _>((Bound::Excluded(after), Bound::Unbounded))
            .find_map(|(k, &i)| f(&self.entries[i].versions).map(|r| (k, r)))
    }

    /// The entries in key order. What is sorted is each entry's first eight bytes and
    /// position (most comparisons end at the eight bytes, without following a key's pointer);
    /// the entries are then moved once into that order (sorting the 80-byte entries themselves
    /// moved each a dozen times).
    pub(super) fn into_sorted(self) -> Vec<Entry> {
        let mut entries = self.entries;
        let mut order: Vec<(u64, usize)> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.head, i))
            .collect();
        order.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| entries[a.1].key.cmp(&entries[b.1].key))
        });
        order
            .into_iter()
            .map(|(head, i)| {
                let e = &mut entries[i];
                Entry {
                    head,
                    key: std::mem::take(&mut e.key),
                    versions: std::mem::take(&mut e.versions),
                }
            })
            .collect()
    }
}

/// Whether an index slot `(hash, position)` holds `key` (of index hash `h`): the whole hash
/// first, so the key behind the position is read only when it almost surely matches.
pub(super) fn is_key<'e>(
    entries: &'e [Entry],
    h: u64,
    key: &'e [u8],
) -> impl Fn(&(u64, usize)) -> bool + 'e {
    move |&(eh, i)| eh == h && entries[i].key == key
}

/// A read guard of a shard whose ordered index is built (built first, under the write lock, if
/// it is not; it stays built for the rest of the block).
pub(super) fn ordered_shard(shard: &RwLock<ShardMap>) -> std::sync::RwLockReadGuard<'_, ShardMap> {
    loop {
        let guard = read_lock(shard);
        if guard.ordered.is_some() {
            return guard;
        }
        drop(guard);
        write_lock(shard).build_ordered();
    }
}

/// What one worker's executions recorded: their versions, in shards, and the lowest writer of
/// each key among them.
///
/// Each worker writes only its own part, so the shards' lock words and tree nodes stay in its
/// core's cache: with one shared set of shards, both workers inserted into the same trees and
/// each insert missed on lines the other core had just written (perf: recording the writes
/// took about 1.4 µs a transaction, most of it waiting for those lines). Readers look into
/// every part whose lowest writers say it may hold a write below them, which in a block that
/// seldom conflicts is almost never another worker's.
pub(super) struct Part {
    pub(super) shards: Vec<Shard>,
    pub(super) lowest_writers: LowestWriters,
}

pub(super) struct MvMemory<'a> {
    pub(super) base: &'a StateOverlay<'a>,
    pub(super) parts: Vec<Part>,
    /// What each run's last incarnation left.
    pub(super) last: Vec<LastSlot>,
}

/// What one incarnation of a run did.
pub(super) struct Ran {
    /// Its reads below the run (what its transactions read of one another is not among them).
    pub(super) reads: Vec<Read>,
    /// Its included transactions' writes, each key's last.
    pub(super) writes: Changes,
    /// Its included transactions' additions to the block totals.
    pub(super) totals: Additions,
    /// Each transaction's outcome, in order.
    pub(super) outcomes: Vec<TxOutcome>,
}

/// What a run's last incarnation left: the part it recorded into, the keys it wrote, its
/// reads, its additions to the block totals and its transactions' outcomes.
///
/// The written keys are [`InlineKey`]s: a `Vec` per key was an allocation per write when
/// recording and, since a run's `Last` is freed on whichever thread
/// drops the block's memory, a cross-thread free per write at the end of the block.
#[derive(Default)]
pub(super) struct Last {
    pub(super) part: usize,
    pub(super) writes: Vec<InlineKey>,
    pub(super) reads: Vec<Read>,
    pub(super) totals: Additions,
    pub(super) outcomes: Vec<TxOutcome>,
}

/// One run's [`Last`], under one lock, alone on its cache line: neighbouring runs run on
/// different workers, and with separate arrays of locks packed two or three to a line (writes,
/// reads, outcomes) each record took three locks whose lines the other core had just written.
#[repr(align(64))]
#[derive(Default)]
pub(super) struct LastSlot(pub(super) Mutex<Last>);

/// What a key holds for one run, as `next_key` needs it.
#[derive(Clone, Copy)]
pub(super) enum Presence {
    Exists,
    Deleted,
    Estimate(RunIndex),
}

/// A key's hash, eight bytes at a time: it picks the key's shard, its place in the shard's
/// index and its buckets of lowest writers. Only speed depends on it (a shard's index compares
/// the keys themselves and the buckets only say "maybe"), so crafted keys can slow down nothing
/// but their own lookups and those of their shard.
pub(super) fn key_hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (key.len() as u64).wrapping_mul(K);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("eight bytes"));
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^ (h >> 32)
}

pub(super) fn shard_of(hash: u64) -> usize {
    (hash % SHARDS as u64) as usize
}

/// The lowest run that may have written each key into one part: a table of buckets, each
/// holding the lowest index of a run whose write hashed there (two buckets per key, in one
/// cache line). A key both of whose buckets hold only writers at or above `run` was written
/// into this part by no run below `run`, so `run` does not look for it there: the parameters
/// and chain id no one writes, an account only higher runs wrote, and, when validating a run,
/// the keys it wrote itself (a Bloom filter of written keys, the
/// predecessor, sent those to the shards). Buckets only ever move down (to a lower writer), so
/// a stale bucket errs on the side of a shard lookup. A bucket is lowered before the key goes
/// into its shard, and a reader that missed a concurrent update is no different from one that
/// read just before it: the validation, which runs after the writer's execution finished (and
/// so sees its buckets), catches the stale read.
pub(super) struct LowestWriters {
    /// `n - writer` of the lowest writer seen (0: none), so a zeroed table is empty and
    /// lowering a bucket is a `fetch_max`.
    pub(super) buckets: Vec<AtomicU32>,
    /// Buckets minus one (a power of two).
    pub(super) mask: u64,
    pub(super) n: usize,
}

impl LowestWriters {
    /// A table for one of `parts` parts of a block of `n` runs and `txs` transactions: about
    /// four buckets per written key at three keys a transaction (a reader near the end of the
    /// block looks into a shard for about one key in seven needlessly), at least 16 Ki buckets.
    /// Small enough to stay in the allocator's reused pages: a table of megabytes came fresh
    /// from the kernel for every block, and zeroing its pages cost more than the lookups it
    /// saved.
    pub(super) fn new(n: usize, txs: usize, parts: usize) -> Self {
        let buckets = (txs.saturating_mul(12) / parts.max(1))
            .clamp(1 << 14, 1 << 26)
            .next_power_of_two();
        Self {
            buckets: (0..buckets).map(|_| AtomicU32::new(0)).collect(),
            mask: buckets as u64 - 1,
            n,
        }
    }

    /// The key's two buckets: one from the hash's low bits, the other in the same 64-byte line.
    pub(super) fn buckets(&self, hash: u64) -> [&AtomicU32; 2] {
        let first = hash & self.mask;
        let mut second = (first & !15) | ((hash >> 40) & 15);
        if second == first {
            second ^= 1;
        }
        [
            &self.buckets[first as usize],
            &self.buckets[second as usize],
        ]
    }

    pub(super) fn insert(&self, hash: u64, writer: RunIndex) {
        let mark = (self.n - writer) as u32;
        for b in self.buckets(hash) {
            // Most keys are new; a bucket that already holds a lower writer needs no write.
            if b.load(SeqCst) < mark {
                b.fetch_max(mark, SeqCst);
            }
        }
    }

    /// Whether a run below `run` may have written the key.
    pub(super) fn may_have_writer_below(&self, hash: u64, run: RunIndex) -> bool {
        let below = (self.n - run) as u32;
        self.buckets(hash).iter().all(|b| b.load(SeqCst) > below)
    }
}

impl<'a> MvMemory<'a> {
    /// The memory of a block of `n` runs and `txs` transactions, in `parts` parts.
    pub(super) fn new(base: &'a StateOverlay<'a>, n: usize, txs: usize, parts: usize) -> Self {
        Self {
            base,
            parts: (0..parts.max(1))
                .map(|_| Part {
                    shards: (0..SHARDS)
                        .map(|_| Shard(RwLock::new(ShardMap::default())))
                        .collect(),
                    lowest_writers: LowestWriters::new(n, txs, parts),
                })
                .collect(),
            last: (0..n).map(|_| LastSlot::default()).collect(),
        }
    }

    pub(super) fn shard(&self, part: usize, hash: u64) -> &RwLock<ShardMap> {
        &self.parts[part].shards[shard_of(hash)].0
    }

    /// `f` of the cell of `key` that run `run` reads, with its writer: of every part
    /// that may hold a write below `run`, the best-ranked visible cell.
    pub(super) fn visible<R>(
        &self,
        key: &[u8],
        run: RunIndex,
        f: impl Fn(RunIndex, &Cell) -> R,
    ) -> Option<R> {
        let hash = key_hash(key);
        let mut best: Option<((RunIndex, Incarnation), R)> = None;
        for part in &self.parts {
            if !part.lowest_writers.may_have_writer_below(hash, run) {
                continue;
            }
            let shard = read_lock(&part.shards[shard_of(hash)].0);
            if let Some((writer, cell)) = shard.get(hash, key).and_then(|v| v.visible(run))
                && best.as_ref().is_none_or(|(r, _)| rank(writer, cell) > *r)
            {
                best = Some((rank(writer, cell), f(writer, cell)));
            }
        }
        best.map(|(_, r)| r)
    }

    /// The value of `key` as run `run` sees it.
    pub(super) fn get(&self, key: &[u8], run: RunIndex) -> Result<Lookup, String> {
        let found = self.visible(key, run, |writer, cell| match cell {
            Cell::Written(inc, value) => {
                Lookup::Found(Origin::Version(writer, *inc), value.clone())
            }
            Cell::Estimate(_) => Lookup::Blocked(writer),
        });
        match found {
            Some(lookup) => Ok(lookup),
            None => Ok(Lookup::Found(Origin::Base, self.base.read(key)?)),
        }
    }

    /// Where run `run` would read `key` from now (no value: validation compares origins,
    /// and a read of the block's state cannot have changed).
    pub(super) fn origin(&self, key: &[u8], run: RunIndex) -> Result<Origin, RunIndex> {
        match self.visible(key, run, |writer, cell| match cell {
            Cell::Written(inc, _) => Ok(Origin::Version(writer, *inc)),
            Cell::Estimate(_) => Err(writer),
        }) {
            Some(origin) => origin,
            None => Ok(Origin::Base),
        }
    }

    /// The first key after `after` that a run below `run` wrote, and what it holds.
    pub(super) fn next_written(&self, after: &[u8], run: RunIndex) -> Option<(Vec<u8>, Presence)> {
        // The first visible key of every shard of every part; a key in several parts is the
        // first in each of them when it is the first overall, so its best cell is among these.
        let mut best: Option<(Vec<u8>, (RunIndex, Incarnation), Presence)> = None;
        for shard in self.parts.iter().flat_map(|p| &p.shards) {
            let shard = ordered_shard(&shard.0);
            let found = shard.first_after(after, |versions| {
                versions.visible(run).map(|(writer, cell)| {
                    let presence = match cell {
                        Cell::Written(_, Some(_)) => Presence::Exists,
                        Cell::Written(_, None) => Presence::Deleted,
                        Cell::Estimate(_) => Presence::Estimate(writer),
                    };
                    (rank(writer, cell), presence)
                })
            });
            if let Some((k, (r, presence))) = found
                && best.as_ref().is_none_or(|(b, br, _)| {
                    k.as_slice() < b.as_slice() || (k.as_slice() == b.as_slice() && r > *br)
                })
            {
                best = Some((k.to_vec(), r, presence));
            }
        }
        best.map(|(k, _, presence)| (k, presence))
    }

    /// The first key after `from` that exists as run `run` sees the state, or the
    /// run whose estimate decides it.
    pub(super) fn next_key(
        &self,
        from: &[u8],
        run: RunIndex,
    ) -> Result<Result<Option<Vec<u8>>, RunIndex>, String> {
        let mut in_base = self.base.read_next_key(from)?;
        let mut cursor = from.to_vec();
        loop {
            let Some((k, presence)) = self.next_written(&cursor, run) else {
                return Ok(Ok(in_base));
            };
            if in_base.as_ref().is_some_and(|b| *b < k) {
                return Ok(Ok(in_base));
            }
            match presence {
                Presence::Estimate(writer) => return Ok(Err(writer)),
                Presence::Exists => return Ok(Ok(Some(k))),
                Presence::Deleted => {
                    // Deleted below `run`: skip it in both sources.
                    if in_base.as_ref() == Some(&k) {
                        in_base = self.base.read_next_key(&k)?;
                    }
                    cursor = k;
                }
            }
        }
    }

    /// Stores what incarnation `inc`, which worker `part` ran, did; says whether it wrote a key
    /// the previous incarnation did not (then runs above must be validated again), and
    /// whether it wrote a key another run this worker ran wrote too (see
    /// [`Shared::too_contended`]).
    ///
    /// The previous incarnation's cells (estimates, once it was aborted) stay until the new
    /// ones are in: a reader in between sees the estimate and waits, as it must. When the
    /// previous incarnation ran on another worker, its cells are in another part; the new ones
    /// go into this worker's part first and the old ones are removed after, and for the moment
    /// both are there a reader takes the later incarnation's ([`rank`]).
    pub(super) fn record(
        &self,
        run: RunIndex,
        inc: Incarnation,
        part: usize,
        ran: Ran,
    ) -> (bool, bool) {
        let Ran {
            reads,
            writes,
            totals,
            outcomes,
        } = ran;
        let mut last = lock(&self.last[run].0);
        let previous_part = std::mem::replace(&mut last.part, part);
        let previous = std::mem::replace(
            &mut last.writes,
            writes.keys().map(|k| InlineKey::from_slice(k)).collect(),
        );
        let wrote_new_key = writes.keys().any(|k| {
            previous
                .binary_search_by(|p| p.as_slice().cmp(k.as_slice()))
                .is_err()
        });
        let stale: Vec<InlineKey> = previous
            .into_iter()
            .filter(|k| previous_part != part || !writes.contains_key(k.as_slice()))
            .collect();
        let own = &self.parts[part];
        let mut shared_key = false;
        for (k, v) in writes {
            let hash = key_hash(&k);
            own.lowest_writers.insert(hash, run);
            let mut shard = write_lock(&own.shards[shard_of(hash)].0);
            let versions = shard.entry(hash, k);
            versions.insert(run, Cell::Written(inc, v));
            shared_key |= versions.0.len() > 1;
        }
        for k in stale {
            let hash = key_hash(&k);
            if let Some(versions) = write_lock(self.shard(previous_part, hash)).get_mut(hash, &k) {
                versions.remove(run);
            }
        }
        last.reads = reads;
        last.totals = totals;
        last.outcomes = outcomes;
        (wrote_new_key, shared_key)
    }

    /// Whether every read of `run`'s last incarnation would read the same now.
    pub(super) fn validate(&self, run: RunIndex) -> Result<bool, String> {
        let last = lock(&self.last[run].0);
        for read in &last.reads {
            let same = match read {
                Read::Get(key, origin) => self.origin(key, run) == Ok(*origin),
                Read::NextKey(from, result) => {
                    matches!(self.next_key(from, run)?, Ok(now) if now == *result)
                }
            };
            if !same {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub(super) fn convert_writes_to_estimates(&self, run: RunIndex) {
        let last = lock(&self.last[run].0);
        for k in &last.writes {
            let hash = key_hash(k);
            if let Some(cell) = write_lock(self.shard(last.part, hash))
                .get_mut(hash, k)
                .and_then(|v| v.get_mut(run))
            {
                *cell = Cell::Estimate(cell.incarnation());
            }
        }
    }
}
