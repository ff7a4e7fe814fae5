//! Storage: one embedded RocksDB per node, one atomic write batch per block (SPEC §11).
//!
//! Column families:
//!
//! | family | key | value |
//! | --- | --- | --- |
//! | `state` | state key | value |
//! | `blocks` | block hash | Borsh [`Block`] |
//! | `heights` | height (u64 BE) | block hash |
//! | `receipts` | height (u64 BE) | SCALE `(Vec<Receipt>, Vec<Event>)`: receipts and block events |
//! | `tx_index` | transaction hash | SCALE `(height u64, index u32)` |
//! | `modules` | code hash ‖ engine hash | compiled module (see the executor) |
//! | `meta` | `head`, `lthash`, `genesis`, `genesis_code`, `safety`, `failover_base_ms` | the head, the LtHash accumulator, the genesis config and blob, the validator's vote record, the chain's failover unit |
//! | `pending` | block hash | Borsh [`Block`]: executed blocks above the last irreversible one |
//! | `certificates` | height (u64 BE) | Borsh `Vec<SignedVote>`: the precommits that made the block at that height irreversible (sent along with synced blocks) |
//!
//! The state family holds the state of the last irreversible block, and `head` names that
//! block: a block's effects are written when consensus finalizes it, in one batch that also
//! drops it from `pending`. Blocks above it live in memory, executed on overlays, and are kept
//! in `pending` so a restarted node executes them again instead of asking peers.
//!
//! The LtHash accumulator is written in the same batch as the state it summarises, so the
//! stored root always matches the stored state, whatever moment the process dies at.

#![forbid(unsafe_code)]

pub mod cache;
pub mod lthash;
pub mod overlay;

use lthash::LtHash;
use overlay::Changes;
use parity_scale_codec::{Decode, Encode};
use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};
use std::path::Path;
use vexidus_executor::ModuleStore;
use vexidus_runtime_api::block::Event;
use vexidus_runtime_api::{Block, GenesisConfig, Hash, Receipt};

const CF_STATE: &str = "state";
const CF_BLOCKS: &str = "blocks";
const CF_HEIGHTS: &str = "heights";
const CF_RECEIPTS: &str = "receipts";
const CF_TX_INDEX: &str = "tx_index";
const CF_MODULES: &str = "modules";
const CF_META: &str = "meta";
const CF_PENDING: &str = "pending";
const CF_CERTIFICATES: &str = "certificates";
const ALL_CFS: [&str; 9] = [
    CF_STATE,
    CF_BLOCKS,
    CF_HEIGHTS,
    CF_RECEIPTS,
    CF_TX_INDEX,
    CF_MODULES,
    CF_META,
    CF_PENDING,
    CF_CERTIFICATES,
];

const META_HEAD: &[u8] = b"head";
const META_LTHASH: &[u8] = b"lthash";
const META_GENESIS: &[u8] = b"genesis";
const META_GENESIS_CODE: &[u8] = b"genesis_code";
const META_SAFETY: &[u8] = b"safety";
const META_FAILOVER: &[u8] = b"failover_base_ms";

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// RocksDB failed.
    #[error("database error: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A stored value does not decode: the database is damaged.
    #[error("corrupted database: {0}")]
    Corrupt(String),
}

/// A stored key-value pair.
pub type KeyValue = (Box<[u8]>, Box<[u8]>);

/// Storage result.
pub type Result<T> = std::result::Result<T, StorageError>;

/// Read access to the committed state, as overlays and the executor need it.
pub trait StateBackend: Sync {
    /// Reads a value.
    fn get(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, String>;
    /// The next key strictly after `key`.
    fn next_key(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, String>;
}

/// The head of the stored chain.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct HeadInfo {
    /// Height.
    pub height: u64,
    /// Block hash.
    pub hash: Hash,
    /// State root after it.
    pub state_root: Hash,
}

/// Everything one block writes, committed atomically.
pub struct BlockCommit<'a> {
    /// The block.
    pub block: &'a Block,
    /// Its hash.
    pub hash: Hash,
    /// Receipts in transaction order.
    pub receipts: &'a [Receipt],
    /// Block-level events.
    pub events: &'a [Event],
    /// Transaction hashes in order.
    pub tx_hashes: &'a [Hash],
    /// State changes.
    pub changes: &'a Changes,
    /// The accumulator after the changes.
    pub lthash: &'a LtHash,
    /// The genesis configuration and runtime blob, for the genesis block only.
    pub genesis: Option<(&'a GenesisConfig, &'a [u8])>,
}

/// The node's database.
pub struct Db {
    db: DB,
    sync_writes: bool,
    /// Reads of the `state` family go through it; `commit_block` keeps it up to date.
    state_cache: cache::StateCache,
}

/// Hot entries of the state cache: with as many cold ones, some 40-80 MiB at ~150 bytes an
/// entry (an account's key and value and the maps' overhead).
const STATE_CACHE_ENTRIES: usize = 256 * 1024;

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.db.path()).finish()
    }
}

/// The state family's options. Point reads dominate it: every transaction reads its accounts
/// and the parameters (at admission and in the block), and the state root reads each changed
/// key's old value; many read keys that exist nowhere yet (a transfer's new recipient) or are
/// not in the memtable. Whole-key Bloom filters in the memtable and in the tables send those
/// past the memtable's skip list and the tables' blocks, and a block cache keeps the tables'
/// index, filter and data blocks in memory. Iteration (`next_key`) is unaffected.
fn state_options() -> Options {
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    table.set_whole_key_filtering(true);
    table.set_block_cache(&rocksdb::Cache::new_lru_cache(128 << 20));
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    let mut opts = Options::default();
    opts.set_block_based_table_factory(&table);
    // A tenth of the memtable's bytes would be over 100 bits a key (entries are ~150 bytes)
    // and miss the caches on every read, slowing the reads that find their key; a hundredth of
    // a 64 MiB memtable is ~12 bits a key, 640 KiB.
    opts.set_memtable_prefix_bloom_ratio(0.01);
    opts.set_memtable_whole_key_filtering(true);
    opts
}

fn height_key(h: u64) -> [u8; 8] {
    h.to_be_bytes()
}

impl Db {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_open_files(512);
        let cfs = ALL_CFS.iter().map(|n| {
            let family = if *n == CF_STATE {
                state_options()
            } else {
                Options::default()
            };
            ColumnFamilyDescriptor::new(*n, family)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        Ok(Self {
            db,
            sync_writes: true,
            state_cache: cache::StateCache::new(STATE_CACHE_ENTRIES),
        })
    }

    /// Turns fsync per block off (tests and throwaway databases).
    pub fn set_sync_writes(&mut self, sync: bool) {
        self.sync_writes = sync;
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family is created on open")
    }

    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    fn decode<T: Decode>(bytes: &[u8], what: &str) -> Result<T> {
        T::decode(&mut &bytes[..]).map_err(|e| StorageError::Corrupt(format!("{what}: {e}")))
    }

    /// The stored head, `None` for an empty database.
    pub fn head(&self) -> Result<Option<HeadInfo>> {
        self.get_cf(CF_META, META_HEAD)?
            .map(|b| Self::decode(&b, "head"))
            .transpose()
    }

    /// The stored LtHash accumulator.
    pub fn lthash(&self) -> Result<LtHash> {
        match self.get_cf(CF_META, META_LTHASH)? {
            Some(b) => {
                LtHash::from_bytes(&b).ok_or_else(|| StorageError::Corrupt("lthash length".into()))
            }
            None => Ok(LtHash::default()),
        }
    }

    /// The genesis configuration the chain started from.
    pub fn genesis(&self) -> Result<Option<GenesisConfig>> {
        self.get_cf(CF_META, META_GENESIS)?
            .map(|b| Self::decode(&b, "genesis"))
            .transpose()
    }

    /// The runtime blob the chain started with.
    pub fn genesis_code(&self) -> Result<Option<Vec<u8>>> {
        self.get_cf(CF_META, META_GENESIS_CODE)
    }

    /// A block by hash.
    pub fn block(&self, hash: &Hash) -> Result<Option<Block>> {
        self.get_cf(CF_BLOCKS, hash)?
            .map(|b| {
                borsh::from_slice(&b).map_err(|e| StorageError::Corrupt(format!("block: {e}")))
            })
            .transpose()
    }

    /// The hash of the block at `height`.
    pub fn hash_at(&self, height: u64) -> Result<Option<Hash>> {
        Ok(self
            .get_cf(CF_HEIGHTS, &height_key(height))?
            .and_then(|b| b.try_into().ok()))
    }

    /// The block at `height`.
    pub fn block_at(&self, height: u64) -> Result<Option<Block>> {
        match self.hash_at(height)? {
            Some(h) => self.block(&h),
            None => Ok(None),
        }
    }

    /// The receipts of the block at `height`.
    pub fn receipts(&self, height: u64) -> Result<Option<Vec<Receipt>>> {
        Ok(self.outcome(height)?.map(|(r, _)| r))
    }

    /// The block-level events (outside transactions) of the block at `height`.
    pub fn block_events(&self, height: u64) -> Result<Option<Vec<Event>>> {
        Ok(self.outcome(height)?.map(|(_, e)| e))
    }

    fn outcome(&self, height: u64) -> Result<Option<(Vec<Receipt>, Vec<Event>)>> {
        self.get_cf(CF_RECEIPTS, &height_key(height))?
            .map(|b| Self::decode(&b, "receipts"))
            .transpose()
    }

    /// Where a transaction was included: (height, index).
    pub fn tx_location(&self, tx_hash: &Hash) -> Result<Option<(u64, u32)>> {
        self.get_cf(CF_TX_INDEX, tx_hash)?
            .map(|b| Self::decode(&b, "tx index"))
            .transpose()
    }

    /// Every state pair, in key order (for audits; reads the whole state).
    pub fn state_pairs(&self) -> impl Iterator<Item = Result<KeyValue>> + '_ {
        self.db
            .iterator_cf(self.cf(CF_STATE), IteratorMode::Start)
            .map(|r| r.map_err(StorageError::from))
    }

    /// Recomputes the LtHash of the whole stored state from scratch.
    pub fn recompute_lthash(&self) -> Result<LtHash> {
        let mut acc = LtHash::default();
        for pair in self.state_pairs() {
            let (k, v) = pair?;
            acc.insert(&k, &v);
        }
        Ok(acc)
    }

    /// The accumulator after applying `changes` to the stored state.
    pub fn updated_lthash(&self, base: &LtHash, changes: &mut Changes) -> Result<LtHash> {
        updated_lthash(base, self, changes)
    }

    /// Keeps an executed block that is not irreversible yet, for re-execution after a restart
    /// (synced: a block this validator produced is on disk before it is published).
    pub fn put_pending(&self, hash: &Hash, block: &Block) -> Result<()> {
        let bytes = borsh::to_vec(block).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync_writes);
        self.db.put_cf_opt(self.cf(CF_PENDING), hash, bytes, &wo)?;
        Ok(())
    }

    /// Forgets pending blocks (a fork that lost to the last irreversible block).
    pub fn delete_pending(&self, hashes: &[Hash]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for h in hashes {
            batch.delete_cf(self.cf(CF_PENDING), h);
        }
        self.db.write(batch)?;
        Ok(())
    }

    /// Every kept pending block, in height order.
    pub fn pending_blocks(&self) -> Result<Vec<Block>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_PENDING), IteratorMode::Start)
        {
            let (_, v) = item?;
            out.push(
                borsh::from_slice::<Block>(&v)
                    .map_err(|e| StorageError::Corrupt(format!("pending block: {e}")))?,
            );
        }
        out.sort_by_key(|b| b.header.height);
        Ok(out)
    }

    /// Stores the finality certificate of the block at `height`.
    pub fn put_certificate(&self, height: u64, bytes: &[u8]) -> Result<()> {
        self.db
            .put_cf(self.cf(CF_CERTIFICATES), height_key(height), bytes)?;
        Ok(())
    }

    /// The highest stored certificate at a height in `from..=to`: (height, bytes).
    pub fn certificate_in(&self, from: u64, to: u64) -> Result<Option<(u64, Vec<u8>)>> {
        let key = height_key(to);
        let mut it = self.db.iterator_cf(
            self.cf(CF_CERTIFICATES),
            IteratorMode::From(&key, Direction::Reverse),
        );
        match it.next() {
            Some(item) => {
                let (k, v) = item?;
                let h = u64::from_be_bytes(
                    k.as_ref()
                        .try_into()
                        .map_err(|_| StorageError::Corrupt("certificate key".into()))?,
                );
                Ok((h >= from).then(|| (h, v.into_vec())))
            }
            None => Ok(None),
        }
    }

    /// The chain's failover unit (ms), recorded when the chain was started here.
    pub fn failover_base_ms(&self) -> Result<Option<u64>> {
        Ok(self
            .get_cf(CF_META, META_FAILOVER)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_le_bytes))
    }

    /// Records the chain's failover unit (ms), durably.
    pub fn put_failover_base_ms(&self, ms: u64) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync_writes);
        self.db
            .put_cf_opt(self.cf(CF_META), META_FAILOVER, ms.to_le_bytes(), &wo)?;
        Ok(())
    }

    /// The validator's vote record (consensus safety state), as the host encoded it.
    pub fn safety(&self) -> Result<Option<Vec<u8>>> {
        self.get_cf(CF_META, META_SAFETY)
    }

    /// Stores the vote record durably (fsync) before a vote leaves the process.
    pub fn put_safety(&self, bytes: &[u8]) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync_writes);
        self.db
            .put_cf_opt(self.cf(CF_META), META_SAFETY, bytes, &wo)?;
        Ok(())
    }

    /// Writes a whole block in one atomic batch.
    pub fn commit_block(&self, c: BlockCommit<'_>) -> Result<()> {
        let mut batch = WriteBatch::default();
        let state = self.cf(CF_STATE);
        for (k, v) in c.changes {
            match v {
                Some(v) => batch.put_cf(state, k, v),
                None => batch.delete_cf(state, k),
            }
        }
        let height = c.block.header.height;
        let block_bytes =
            borsh::to_vec(c.block).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        batch.put_cf(self.cf(CF_BLOCKS), c.hash, block_bytes);
        batch.delete_cf(self.cf(CF_PENDING), c.hash);
        batch.put_cf(self.cf(CF_HEIGHTS), height_key(height), c.hash);
        batch.put_cf(
            self.cf(CF_RECEIPTS),
            height_key(height),
            (c.receipts, c.events).encode(),
        );
        for (i, h) in c.tx_hashes.iter().enumerate() {
            batch.put_cf(self.cf(CF_TX_INDEX), h, (height, i as u32).encode());
        }
        let meta = self.cf(CF_META);
        batch.put_cf(meta, META_LTHASH, c.lthash.to_bytes());
        let head = HeadInfo {
            height,
            hash: c.hash,
            state_root: c.block.header.state_root,
        };
        batch.put_cf(meta, META_HEAD, head.encode());
        if let Some((g, code)) = c.genesis {
            batch.put_cf(meta, META_GENESIS, g.encode());
            batch.put_cf(meta, META_GENESIS_CODE, code);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync_writes);
        self.state_cache
            .commit(c.changes, || self.db.write_opt(batch, &wo))?;
        Ok(())
    }

    /// A [`ModuleStore`] view of the `modules` family.
    pub fn module_store(self: &std::sync::Arc<Self>) -> std::sync::Arc<dyn ModuleStore> {
        std::sync::Arc::new(DbModules(self.clone()))
    }
}

impl StateBackend for Db {
    fn get(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, String> {
        self.state_cache
            .get(key, || self.get_cf(CF_STATE, key))
            .map_err(|e| e.to_string())
    }

    fn next_key(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, String> {
        let mut it = self.db.iterator_cf(
            self.cf(CF_STATE),
            IteratorMode::From(key, Direction::Forward),
        );
        for item in &mut it {
            let (k, _) = item.map_err(|e| e.to_string())?;
            if &*k != key {
                return Ok(Some(k.into_vec()));
            }
        }
        Ok(None)
    }
}

/// The accumulator after applying `changes` to the state `backend` reads. Changes that change
/// nothing (a key written and deleted again within the block, or a value rewritten unchanged)
/// are dropped from `changes`, so they never reach the database as writes or tombstones.
pub fn updated_lthash(
    base: &LtHash,
    backend: &dyn StateBackend,
    changes: &mut Changes,
) -> Result<LtHash> {
    use rayon::prelude::*;
    // Each change is hashed on its own (a blake3 XOF of 2 KiB per old and new value): chunks of
    // them run on all cores and their sums add up, in any order, to the same accumulator.
    let entries: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = changes.iter().collect();
    let parts: Vec<(LtHash, Vec<Vec<u8>>)> = entries
        .par_chunks(256)
        .map(|chunk| -> Result<(LtHash, Vec<Vec<u8>>)> {
            let mut removed = LtHash::default();
            let mut added = LtHash::default();
            let mut unchanged = Vec::new();
            for (k, new) in chunk {
                let old = backend.get(k).map_err(StorageError::Corrupt)?;
                if old.as_deref() == new.as_deref() {
                    unchanged.push((*k).clone());
                    continue;
                }
                if let Some(old) = old {
                    removed.insert(k, &old);
                }
                if let Some(new) = new {
                    added.insert(k, new);
                }
            }
            added.unmerge(&removed);
            Ok((added, unchanged))
        })
        .collect::<Result<_>>()?;
    let mut acc = base.clone();
    for (delta, unchanged) in parts {
        acc.merge(&delta);
        for k in unchanged {
            changes.remove(&k);
        }
    }
    Ok(acc)
}

/// The state of a block above the last irreversible one: the changes of each block between
/// them, newest first, over the database.
///
/// The layers are borrowed, not merged: the pool checks every incoming transaction against the
/// head's state, and with blocks waiting for finality a merged copy per check cloned every
/// pending block's changes (a full block's are tens of thousands of keys) for each transaction.
pub struct Layered<'a> {
    db: &'a dyn StateBackend,
    layers: Vec<&'a Changes>,
}

impl<'a> Layered<'a> {
    /// `layers` (newest first) over `db`.
    pub fn new(db: &'a dyn StateBackend, layers: Vec<&'a Changes>) -> Self {
        Self { db, layers }
    }
}

/// The first key after `key` in `layers` (newest first) over `db`: each layer is a block's
/// changes over the state below it, so the first key of a layer's view is the smaller of the
/// first key below that the layer did not delete and the layer's first key it did not delete.
fn layered_next_key(
    db: &dyn StateBackend,
    layers: &[&Changes],
    key: &[u8],
) -> std::result::Result<Option<Vec<u8>>, String> {
    let Some((top, below)) = layers.split_first() else {
        return db.next_key(key);
    };
    let mut cursor = key.to_vec();
    let from_below = loop {
        match layered_next_key(db, below, &cursor)? {
            Some(k) if matches!(top.get(&k), Some(None)) => cursor = k,
            other => break other,
        }
    };
    let from_top = top
        .range::<[u8], _>((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded))
        .find(|(_, v)| v.is_some())
        .map(|(k, _)| k.clone());
    Ok([from_below, from_top].into_iter().flatten().min())
}

impl StateBackend for Layered<'_> {
    fn get(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, String> {
        match self.layers.iter().find_map(|layer| layer.get(key)) {
            Some(v) => Ok(v.clone()),
            None => self.db.get(key),
        }
    }

    fn next_key(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, String> {
        layered_next_key(self.db, &self.layers, key)
    }
}

struct DbModules(std::sync::Arc<Db>);

impl ModuleStore for DbModules {
    fn load(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get_cf(CF_MODULES, key).ok().flatten()
    }
    fn store(&self, key: &[u8], bytes: &[u8]) {
        if let Err(e) = self.0.db.put_cf(self.0.cf(CF_MODULES), key, bytes) {
            tracing::warn!("cannot cache compiled module: {e}");
        }
    }
}

/// A state backend over an in-memory map: for tests of the layers above storage, where a
/// database would only add set-up.
pub struct MapBackend(pub std::collections::BTreeMap<Vec<u8>, Vec<u8>>);

impl StateBackend for MapBackend {
    fn get(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, String> {
        Ok(self.0.get(key).cloned())
    }
    fn next_key(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, String> {
        Ok(self
            .0
            .range::<[u8], _>((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded))
            .next()
            .map(|(k, _)| k.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte `i` of a fixed pseudo-random stream.
    fn byte(seed: u32, i: u32) -> u8 {
        blake3::hash(&[seed.to_le_bytes(), i.to_le_bytes()].concat()).as_bytes()[0]
    }

    #[test]
    fn layers_read_as_their_changes_applied_in_order() {
        for seed in 0..20u32 {
            // Keys 0..48 as one byte (and a few two-byte keys between them); each layer sets or
            // deletes about a third of them, deleted keys included (a layer deletes what the one
            // below set, sets what it deleted, deletes what the database never had).
            let keys: Vec<Vec<u8>> = (0..48u8).flat_map(|k| [vec![k], vec![k, 7]]).collect();
            let db = MapBackend(
                keys.iter()
                    .enumerate()
                    .filter(|(i, _)| byte(seed, *i as u32).is_multiple_of(2))
                    .map(|(_, k)| (k.clone(), b"db".to_vec()))
                    .collect(),
            );
            let layers: Vec<Changes> = (0..4u32)
                .map(|layer| {
                    keys.iter()
                        .enumerate()
                        .filter_map(|(i, k)| {
                            let r = byte(seed, 1000 * (layer + 1) + i as u32);
                            match r % 6 {
                                0 | 1 => Some((k.clone(), None)),
                                2 => Some((k.clone(), Some(vec![layer as u8]))),
                                _ => None,
                            }
                        })
                        .collect()
                })
                .collect();
            // The model: the database with every layer applied, oldest first.
            let mut applied = db.0.clone();
            for layer in &layers {
                for (k, v) in layer {
                    match v {
                        Some(v) => applied.insert(k.clone(), v.clone()),
                        None => applied.remove(k),
                    };
                }
            }
            let model = MapBackend(applied);
            let newest_first: Vec<&Changes> = layers.iter().rev().collect();
            let layered = Layered::new(&db, newest_first);
            let probes = keys.iter().cloned().chain([vec![], vec![255], vec![3, 0]]);
            for key in probes {
                assert_eq!(
                    layered.get(&key),
                    model.get(&key),
                    "get {key:?}, seed {seed}"
                );
                assert_eq!(
                    layered.next_key(&key),
                    model.next_key(&key),
                    "next_key after {key:?}, seed {seed}"
                );
            }
        }
    }
}
