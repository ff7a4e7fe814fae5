//! The chain: genesis, block production, block import, forks and reads of head state.
//!
//! Production and import share one execution path (`Chain::execute`); the only difference is
//! what happens to a transaction the runtime refuses: production leaves it out of the block,
//! import refuses the whole block.
//!
//! Blocks above the last irreversible block form a tree: each is executed on an overlay that
//! layers the changes of its ancestors above the database ([`Layered`]), and is kept in memory
//! (and in the `pending` column family, for restarts). [`Chain::finalize`] writes a block and
//! its ancestors to the database, each in one atomic batch together with its state root, and
//! drops the forks it excludes. The head — the block consensus's fork choice names — is what
//! queries and the pool read.

pub mod sigcheck;
pub mod stm;

use parity_scale_codec::{Decode, Encode};
use std::collections::BTreeMap;
use std::sync::Arc;
use vexidus_executor::Externalities;
use vexidus_executor::{ExecError, Executor, Prototype};
use vexidus_runtime_api::abi::{
    self, ApplyArgs, BeginBlockOutcome, BlockContext, EndBlockOutcome, InvalidTransaction,
    MigrateArgs, PendingMigration, Query, QueryResponse, UpgradeHalt, ValidTransaction,
    ValidateArgs,
};
use vexidus_runtime_api::block::Event;
use vexidus_runtime_api::queries::{self, TypedQuery};
use vexidus_runtime_api::signing::{self, Keypair};
use vexidus_runtime_api::{
    Block, GenesisConfig, Hash, Header, PublicKey, Receipt, Signature, SignedTransaction,
};
use vexidus_storage::lthash::LtHash;
use vexidus_storage::overlay::{Changes, StateOverlay};
use vexidus_storage::{BlockCommit, Db, HeadInfo, Layered, StateBackend, StorageError};

/// Chain errors.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The runtime failed outside a single transaction.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The runtime refused to build genesis, or the stored chain is another one.
    #[error("genesis: {0}")]
    Genesis(String),
    /// An imported block is invalid.
    #[error("invalid block at height {height}: {reason}")]
    InvalidBlock {
        /// Its height.
        height: u64,
        /// What is wrong.
        reason: String,
    },
    /// An approved binary upgrade this binary does not implement is due: nothing was committed.
    #[error("binary upgrade `{}` is due at height {} and this binary does not implement it", .0.name, .0.height)]
    UpgradeHalt(Box<UpgradeHalt>),
    /// The runtime answered with an error.
    #[error("runtime error: {0}")]
    Runtime(String),
    /// The runtime answered a query with another query's answer (it broke the ABI).
    #[error(transparent)]
    WrongAnswer(#[from] vexidus_runtime_api::queries::WrongAnswer),
    /// A block's parent is neither the last irreversible block nor a block above it.
    #[error("unknown parent {}", hex::encode(.0))]
    UnknownParent(Hash),
}

/// Chain result.
pub type Result<T> = std::result::Result<T, ChainError>;

/// A block the chain produced or imported, with what came out of it.
#[derive(Debug, Clone)]
pub struct ExecutedBlock {
    /// The block.
    pub block: Block,
    /// Its hash.
    pub hash: Hash,
    /// One receipt per transaction.
    pub receipts: Vec<Receipt>,
    /// Events emitted outside transactions (begin and end of block).
    pub events: Vec<Event>,
    /// Transactions left out during production, with the reason.
    pub rejected: Vec<(Hash, String)>,
    /// Fuel the runtime used for the block (migration, begin, transactions, end): the same
    /// on every node, whether its transactions ran one after another or on Block-STM.
    pub fuel: u64,
}

/// What executing a block gave.
struct Execution {
    included: Vec<SignedTransaction>,
    receipts: Vec<Receipt>,
    rejected: Vec<(Hash, String)>,
    events: Vec<Event>,
    /// Fuel the runtime used for the whole block.
    fuel: u64,
    /// The same block run with a pending runtime, when one was given.
    shadow: Option<ShadowReport>,
}

/// How running a block's hooks and transactions ended. Lives for one call, on the stack.
#[allow(clippy::large_enum_variant)]
enum Run {
    /// Executed.
    Done(Execution),
    /// `vex_begin_block` halts the chain for a binary upgrade; nothing else ran.
    Halt(Box<UpgradeHalt>),
}

/// Whether refused transactions are dropped (production) or fail the block (import).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Produce,
    Import,
    Shadow,
}

/// An executed block above the last irreversible block.
struct Pending {
    executed: ExecutedBlock,
    tx_hashes: Vec<Hash>,
    /// Its own changes (not its ancestors').
    changes: Changes,
    /// The accumulator after it.
    lthash: LtHash,
    /// The runtime its state names, which executes its children.
    runtime: Arc<Prototype>,
}

/// The state after a block, as execution of a child needs it.
struct Base<'a> {
    hash: Hash,
    height: u64,
    /// The changes of each block from this one down to the one above the last irreversible
    /// block (newest first), borrowed from the pending blocks.
    layers: Vec<&'a Changes>,
    lthash: LtHash,
    runtime: Arc<Prototype>,
}

/// The chain state machine over one database.
pub struct Chain {
    db: Arc<Db>,
    executor: Arc<Executor>,
    /// The last irreversible block: the one the database's state is at.
    finalized: HeadInfo,
    /// The accumulator of the database's state.
    lthash: LtHash,
    /// The runtime the database's state names.
    runtime: Arc<Prototype>,
    pending: BTreeMap<Hash, Pending>,
    /// The canonical head (the finalized block or a pending one).
    head: HeadInfo,
    genesis: GenesisConfig,
    implemented_upgrades: Vec<String>,
    /// Workers for a block's transactions: 1 executes them one after another, more runs
    /// Block-STM (`stm`); the outcome is the same either way.
    execution: crate::stm::Workers,
    /// What Block-STM did in the last block it executed (tests and benchmarks read it).
    last_stm_stats: std::sync::Mutex<Option<crate::stm::Stats>>,
}

/// A block executed on its parent but not kept yet ([`Chain::keep_built`]).
pub struct Built {
    executed: ExecutedBlock,
    tx_hashes: Vec<Hash>,
    changes: Changes,
    lthash: LtHash,
    parent_runtime: Arc<Prototype>,
    shadow: Option<ShadowReport>,
}

impl Built {
    /// The block as executed.
    pub fn executed(&self) -> &ExecutedBlock {
        &self.executed
    }

    /// The shadow run of the block with the pending runtime, when one was given.
    pub fn shadow_report(&self) -> Option<&ShadowReport> {
        self.shadow.as_ref()
    }
}

/// What executing a block on its parent came to ([`Chain::build_on`], [`Chain::check_block`]).
pub enum BlockOutcome {
    /// Valid and executed, to be kept with [`Chain::keep_built`].
    Executed(Box<Built>),
    /// Kept already (executed once, not again).
    Known(Box<ExecutedBlock>),
    /// The runtime's `vex_begin_block` for this height says the chain halts here for a binary
    /// upgrade this binary does not implement: nothing was executed.
    Halt(Box<UpgradeHalt>),
}

/// What running one block with a pending runtime on a throwaway copy of state showed.
#[derive(Debug, Clone)]
pub struct ShadowReport {
    /// Height of the block.
    pub height: u64,
    /// The pending runtime's code hash.
    pub code_hash: Hash,
    /// Why it failed (a trap, fuel, a refused transaction the live runtime included), if it did.
    pub error: Option<String>,
    /// Fuel the live runtime used for the block.
    pub live_fuel: u64,
    /// Fuel the pending runtime used.
    pub shadow_fuel: u64,
    /// Wall time of the live execution.
    pub live_time: std::time::Duration,
    /// Wall time of the shadow execution.
    pub shadow_time: std::time::Duration,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("head", &self.head)
            .field("runtime", &self.runtime)
            .finish()
    }
}

/// blake3 over the concatenated transaction hashes.
pub fn transactions_root(hashes: &[Hash]) -> Hash {
    let mut h = blake3::Hasher::new();
    for x in hashes {
        h.update(x);
    }
    *h.finalize().as_bytes()
}

/// blake3 over the SCALE-encoded receipts and block-level events.
pub fn receipts_root(receipts: &[Receipt], events: &[Event]) -> Hash {
    use parity_scale_codec::Encode;
    *blake3::hash(&(receipts, events).encode()).as_bytes()
}

impl Chain {
    /// Opens the chain stored in `db`, building genesis from `genesis` and `genesis_code` when the
    /// database is empty. A database holding another chain is refused.
    pub fn open(
        db: Arc<Db>,
        executor: Arc<Executor>,
        genesis: &GenesisConfig,
        genesis_code: &[u8],
        implemented_upgrades: Vec<String>,
    ) -> Result<Self> {
        let runtime = match db.head()? {
            None => Self::build_genesis(&db, &executor, genesis, genesis_code)?,
            Some(_) => {
                let stored = db.genesis()?.ok_or_else(|| {
                    ChainError::Genesis("database has blocks but no genesis".into())
                })?;
                if stored != *genesis {
                    return Err(ChainError::Genesis(format!(
                        "the data directory holds chain {:?}, not the requested genesis of chain {:?}; use another --data-dir",
                        stored.chain_id, genesis.chain_id
                    )));
                }
                let code = vexidus_storage::StateBackend::get(&*db, abi::CODE_KEY)
                    .map_err(|e| ChainError::Storage(StorageError::Corrupt(e)))?
                    .ok_or_else(|| ChainError::Genesis("no runtime under :code".into()))?;
                executor.prototype(&code)?
            }
        };
        let head = db
            .head()?
            .ok_or_else(|| ChainError::Genesis("genesis was not stored".into()))?;
        let lthash = db.lthash()?;
        let mut chain = Self {
            db,
            executor,
            finalized: head.clone(),
            head,
            lthash,
            runtime,
            pending: BTreeMap::new(),
            genesis: genesis.clone(),
            implemented_upgrades,
            execution: crate::stm::Workers::new(crate::stm::default_threads()),
            last_stm_stats: Default::default(),
        };
        chain.reexecute_pending()?;
        Ok(chain)
    }

    /// Executes again the blocks above the last irreversible block that the database kept,
    /// parents first, and makes the highest the head. A kept block that no longer executes
    /// (its fork lost while the node was down) is dropped.
    fn reexecute_pending(&mut self) -> Result<()> {
        let kept = self.db.pending_blocks()?;
        if kept.is_empty() {
            return Ok(());
        }
        let mut dropped = Vec::new();
        for block in kept {
            let hash = signing::header_hash(&block.header);
            match self.execute_block(block) {
                Ok(_) => {}
                Err(e @ (ChainError::Storage(_) | ChainError::UpgradeHalt(_))) => return Err(e),
                Err(e) => {
                    tracing::warn!(hash = %hex::encode(hash), "dropping a kept block: {e}");
                    dropped.push(hash);
                }
            }
        }
        self.db.delete_pending(&dropped)?;
        if let Some(best) = self.pending.values().max_by_key(|p| {
            (
                p.executed.block.header.height,
                std::cmp::Reverse(p.executed.hash),
            )
        }) {
            let hash = best.executed.hash;
            self.set_head(&hash)?;
        }
        tracing::info!(
            blocks = self.pending.len(),
            head = self.head.height,
            "re-executed the blocks above the last irreversible block"
        );
        Ok(())
    }

    /// Opens the chain already stored in `db`, with the genesis it records.
    pub fn open_existing(
        db: Arc<Db>,
        executor: Arc<Executor>,
        implemented_upgrades: Vec<String>,
    ) -> Result<Self> {
        let genesis = db
            .genesis()?
            .ok_or_else(|| ChainError::Genesis("the database holds no chain".into()))?;
        Self::open(db, executor, &genesis, &[], implemented_upgrades)
    }

    fn build_genesis(
        db: &Db,
        executor: &Executor,
        genesis: &GenesisConfig,
        code: &[u8],
    ) -> Result<Arc<Prototype>> {
        let runtime = executor.prototype(code)?;
        let mut overlay = StateOverlay::new(db);
        vexidus_executor::Externalities::set(&mut overlay, abi::CODE_KEY, code);
        let built: std::result::Result<(), String> = executor.call(
            &runtime,
            abi::GENESIS_BUILD,
            genesis,
            &mut overlay,
            executor.fuel.genesis,
        )?;
        built.map_err(ChainError::Genesis)?;
        let mut changes = overlay.into_changes();
        let lthash = db.updated_lthash(&LtHash::default(), &mut changes)?;
        let header = Header {
            parent_hash: [0; 32],
            height: 0,
            timestamp_ms: 0,
            proposer: PublicKey::default(),
            state_root: lthash.root(),
            transactions_root: transactions_root(&[]),
            receipts_root: receipts_root(&[], &[]),
        };
        let block = Block {
            header,
            transactions: vec![],
            signature: Signature::default(),
        };
        let hash = signing::header_hash(&block.header);
        db.commit_block(BlockCommit {
            block: &block,
            hash,
            receipts: &[],
            events: &[],
            tx_hashes: &[],
            changes: &changes,
            lthash: &lthash,
            genesis: Some((genesis, code)),
        })?;
        tracing::info!(chain_id = %genesis.chain_id, state_root = %hex::encode(block.header.state_root), "built genesis");
        Ok(runtime)
    }

    /// The canonical head.
    pub fn head(&self) -> &HeadInfo {
        &self.head
    }

    /// The last irreversible block: the database's state is at it.
    pub fn finalized(&self) -> &HeadInfo {
        &self.finalized
    }

    /// The database.
    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// The executor.
    pub fn executor(&self) -> &Arc<Executor> {
        &self.executor
    }

    /// The runtime that executes the block after the head (the head state's `:code`).
    pub fn runtime(&self) -> &Arc<Prototype> {
        self.pending
            .get(&self.head.hash)
            .map(|p| &p.runtime)
            .unwrap_or(&self.runtime)
    }

    /// The genesis configuration.
    pub fn genesis(&self) -> &GenesisConfig {
        &self.genesis
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.genesis.chain_id
    }

    /// The in-memory LtHash accumulator of the last irreversible block's state (the stored one).
    pub fn lthash(&self) -> &LtHash {
        &self.lthash
    }

    /// Whether a block is known: irreversible, or executed above the last irreversible block.
    pub fn knows(&self, hash: &Hash) -> bool {
        *hash == self.finalized.hash
            || self.pending.contains_key(hash)
            || matches!(self.db.block(hash), Ok(Some(_)))
    }

    /// A block above the last irreversible block, executed.
    pub fn pending_block(&self, hash: &Hash) -> Option<&ExecutedBlock> {
        self.pending.get(hash).map(|p| &p.executed)
    }

    /// Hashes of the blocks executed above the last irreversible block, in height order.
    pub fn pending_hashes(&self) -> Vec<Hash> {
        let mut v: Vec<(u64, Hash)> = self
            .pending
            .values()
            .map(|p| (p.executed.block.header.height, p.executed.hash))
            .collect();
        v.sort();
        v.into_iter().map(|(_, h)| h).collect()
    }

    /// The canonical blocks above the last irreversible block, head first.
    fn canonical_pending(&self) -> Vec<&Pending> {
        let mut out = Vec::new();
        let mut at = self.head.hash;
        while let Some(p) = self.pending.get(&at) {
            out.push(p);
            at = p.executed.block.header.parent_hash;
        }
        out
    }

    /// The transactions a head switch to `new_head` takes out of the canonical chain: those of
    /// the current head's blocks above the last irreversible block that are not ancestors of
    /// `new_head`, less any `new_head`'s branch includes too. Nothing when `new_head` extends
    /// the current head (the usual case; nothing is copied then).
    pub fn retracted_by(&self, new_head: &Hash) -> Vec<SignedTransaction> {
        let mut new_branch = std::collections::HashSet::new();
        let mut at = *new_head;
        while let Some(p) = self.pending.get(&at) {
            if at == self.head.hash {
                return Vec::new();
            }
            new_branch.insert(at);
            at = p.executed.block.header.parent_hash;
        }
        let old: Vec<&Pending> = self
            .canonical_pending()
            .into_iter()
            .filter(|p| !new_branch.contains(&p.executed.hash))
            .collect();
        if old.is_empty() {
            return Vec::new();
        }
        let kept: std::collections::HashSet<Hash> = new_branch
            .iter()
            .filter_map(|h| self.pending.get(h))
            .flat_map(|p| p.tx_hashes.iter().copied())
            .collect();
        // Oldest block first, so a sender's transactions go back in nonce order.
        old.iter()
            .rev()
            .flat_map(|p| p.executed.block.transactions.iter().zip(&p.tx_hashes))
            .filter(|(_, h)| !kept.contains(*h))
            .map(|(tx, _)| tx.clone())
            .collect()
    }

    /// The canonical block at `height` (irreversible or not).
    pub fn block_at(&self, height: u64) -> Result<Option<Block>> {
        if height <= self.finalized.height {
            return Ok(self.db.block_at(height)?);
        }
        Ok(self
            .canonical_pending()
            .into_iter()
            .find(|p| p.executed.block.header.height == height)
            .map(|p| p.executed.block.clone()))
    }

    /// A block by hash (irreversible or not).
    pub fn block(&self, hash: &Hash) -> Result<Option<Block>> {
        if let Some(p) = self.pending.get(hash) {
            return Ok(Some(p.executed.block.clone()));
        }
        Ok(self.db.block(hash)?)
    }

    /// Receipts and block events of the canonical block at `height`.
    pub fn outcome_at(&self, height: u64) -> Result<Option<(Vec<Receipt>, Vec<Event>)>> {
        if height <= self.finalized.height {
            return Ok(self.db.receipts(height)?.zip(self.db.block_events(height)?));
        }
        Ok(self
            .canonical_pending()
            .into_iter()
            .find(|p| p.executed.block.header.height == height)
            .map(|p| (p.executed.receipts.clone(), p.executed.events.clone())))
    }

    /// Where a transaction is on the canonical chain: (height, index).
    pub fn tx_location(&self, tx_hash: &Hash) -> Result<Option<(u64, u32)>> {
        if let Some(found) = self.db.tx_location(tx_hash)? {
            return Ok(Some(found));
        }
        Ok(self.canonical_pending().into_iter().find_map(|p| {
            p.tx_hashes
                .iter()
                .position(|h| h == tx_hash)
                .map(|i| (p.executed.block.header.height, i as u32))
        }))
    }

    /// The state after block `at` (the last irreversible one or one above it).
    fn base(&self, at: &Hash) -> Result<Base<'_>> {
        if *at == self.finalized.hash {
            return Ok(Base {
                hash: *at,
                height: self.finalized.height,
                layers: Vec::new(),
                lthash: self.lthash.clone(),
                runtime: self.runtime.clone(),
            });
        }
        let top = self.pending.get(at).ok_or(ChainError::UnknownParent(*at))?;
        let mut path = vec![top];
        let mut parent = top.executed.block.header.parent_hash;
        while parent != self.finalized.hash {
            let p = self
                .pending
                .get(&parent)
                .ok_or(ChainError::UnknownParent(parent))?;
            path.push(p);
            parent = p.executed.block.header.parent_hash;
        }
        Ok(Base {
            hash: *at,
            height: top.executed.block.header.height,
            layers: path.iter().map(|p| &p.changes).collect(),
            lthash: top.lthash.clone(),
            runtime: top.runtime.clone(),
        })
    }

    /// Asks the runtime a read-only question about the head state.
    pub fn query<Q: TypedQuery>(&self, q: Q) -> Result<Q::Answer> {
        self.query_at(&self.head.hash.clone(), q)
    }

    /// Asks the runtime a read-only question about the state after block `at`.
    pub fn query_at<Q: TypedQuery>(&self, at: &Hash, q: Q) -> Result<Q::Answer> {
        queries::ask(&q, |q| self.wire_query(at, q))
    }

    fn wire_query(&self, at: &Hash, q: Query) -> Result<QueryResponse> {
        let base = self.base(at)?;
        let layered = Layered::new(&*self.db, base.layers);
        let mut overlay = StateOverlay::new(&layered);
        let r: std::result::Result<QueryResponse, String> = self.executor.call(
            &base.runtime,
            abi::QUERY,
            &q,
            &mut overlay,
            self.executor.fuel.query,
        )?;
        r.map_err(ChainError::Runtime)
    }

    /// Reads a raw state key at the head.
    pub fn state_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let base = self.base(&self.head.hash)?;
        Layered::new(&*self.db, base.layers)
            .get(key)
            .map_err(storage_err)
    }

    /// Checks a transaction against the head state for the pool (signature already verified).
    pub fn validate_transaction(
        &self,
        tx: &SignedTransaction,
    ) -> Result<std::result::Result<ValidTransaction, InvalidTransaction>> {
        let base = self.base(&self.head.hash)?;
        let layered = Layered::new(&*self.db, base.layers);
        let mut overlay = StateOverlay::new(&layered);
        let args = ValidateArgs {
            height: self.head.height + 1,
            transaction: tx.clone(),
        };
        Ok(self.executor.call(
            &base.runtime,
            abi::VALIDATE_TRANSACTION,
            &args,
            &mut overlay,
            self.executor.fuel.transaction,
        )?)
    }

    /// Hashes of the transactions in the canonical blocks above the last irreversible block.
    pub fn canonical_tx_hashes(&self) -> Vec<Hash> {
        self.canonical_pending()
            .into_iter()
            .flat_map(|p| p.tx_hashes.iter().copied())
            .collect()
    }

    /// The binary upgrade halt the block after the head would meet, if any: `vex_begin_block`
    /// for the next height on a throwaway copy of the head state. Lets a node that is not due
    /// to produce halt at the same height as the one that is.
    pub fn halt_due(&self) -> Result<Option<UpgradeHalt>> {
        let base = self.base(&self.head.hash)?;
        let layered = Layered::new(&*self.db, base.layers);
        let mut overlay = StateOverlay::new(&layered);
        let ctx = self.context(base.height + 1, base.hash, PublicKey::default());
        let (runtime, _) = self.migrate_if_pending(&base.runtime, &mut overlay, ctx.height)?;
        let begin: std::result::Result<BeginBlockOutcome, String> = self.executor.call(
            &runtime,
            abi::BEGIN_BLOCK,
            &ctx,
            &mut overlay,
            self.executor.fuel.block,
        )?;
        Ok(begin.ok().and_then(|b| b.halt_for_upgrade))
    }

    /// Makes `hash` (the last irreversible block or a block above it) the head.
    pub fn set_head(&mut self, hash: &Hash) -> Result<()> {
        if *hash == self.finalized.hash {
            self.head = self.finalized.clone();
            return Ok(());
        }
        let p = self
            .pending
            .get(hash)
            .ok_or(ChainError::UnknownParent(*hash))?;
        self.head = HeadInfo {
            height: p.executed.block.header.height,
            hash: *hash,
            state_root: p.executed.block.header.state_root,
        };
        Ok(())
    }

    /// Builds, signs and commits the next block on the head from `candidates`, leaving out the
    /// ones the runtime refuses (one validator: every block is irreversible at once).
    pub fn produce_block(
        &mut self,
        candidates: Vec<SignedTransaction>,
        key: &Keypair,
        timestamp_ms: u64,
    ) -> Result<ExecutedBlock> {
        self.produce_block_with(candidates, key, timestamp_ms, Changes::new())
    }

    /// [`Self::produce_block`] with `pre_state` written into the block's state before
    /// `begin_block`. Only the in-process harness uses this (to swap a runtime blob without
    /// governance); such a block cannot be re-imported by another node.
    pub fn produce_block_with(
        &mut self,
        candidates: Vec<SignedTransaction>,
        key: &Keypair,
        timestamp_ms: u64,
        pre_state: Changes,
    ) -> Result<ExecutedBlock> {
        let parent = self.head.hash;
        let built =
            halt_as_error(self.build(&parent, candidates, key, timestamp_ms, pre_state, None)?)?;
        let produced = self.keep_built(built)?;
        self.set_head(&produced.hash)?;
        self.finalize(&produced.hash)?;
        Ok(produced)
    }

    /// Builds and signs a block on `parent` from `candidates`, leaving out the ones the runtime
    /// refuses, and keeps it above the last irreversible block (not the head yet).
    pub fn produce_on(
        &mut self,
        parent: &Hash,
        candidates: Vec<SignedTransaction>,
        key: &Keypair,
        timestamp_ms: u64,
    ) -> Result<ExecutedBlock> {
        let built = halt_as_error(self.build_on(parent, candidates, key, timestamp_ms, None)?)?;
        self.keep_built(built)
    }

    /// [`Self::produce_on`]'s building and executing, which reads the chain only: a node runs
    /// it under shared access (admission and queries go on meanwhile) and keeps the result with
    /// [`Self::keep_built`]. With a `shadow` runtime (a pending upgrade), the block is also run
    /// with it on a throwaway copy of state, and [`Built::shadow_report`] says how that went.
    /// Never [`BlockOutcome::Known`].
    pub fn build_on(
        &self,
        parent: &Hash,
        candidates: Vec<SignedTransaction>,
        key: &Keypair,
        timestamp_ms: u64,
        shadow: Option<&Arc<Prototype>>,
    ) -> Result<BlockOutcome> {
        self.build(
            parent,
            candidates,
            key,
            timestamp_ms,
            Changes::new(),
            shadow,
        )
    }

    fn build(
        &self,
        parent: &Hash,
        candidates: Vec<SignedTransaction>,
        key: &Keypair,
        timestamp_ms: u64,
        pre_state: Changes,
        shadow: Option<&Arc<Prototype>>,
    ) -> Result<BlockOutcome> {
        let base = self.base(parent)?;
        let height = base.height + 1;
        let ctx = self.context(height, *parent, key.public());
        let db = self.db.clone();
        let layered = Layered::new(&*db, base.layers);
        let mut overlay = StateOverlay::new(&layered);
        for (k, v) in &pre_state {
            match v {
                Some(v) => vexidus_executor::Externalities::set(&mut overlay, k, v),
                None => vexidus_executor::Externalities::remove(&mut overlay, k),
            }
        }
        overlay.commit_transaction();
        let Execution {
            included: txs,
            receipts,
            rejected,
            events,
            fuel,
            shadow,
        } = match self.execute_and_shadow(
            &base.runtime,
            &layered,
            &mut overlay,
            &ctx,
            candidates,
            Mode::Produce,
            shadow,
        )? {
            Run::Done(x) => x,
            Run::Halt(halt) => return Ok(BlockOutcome::Halt(halt)),
        };
        let mut changes = overlay.into_changes();
        let lthash = vexidus_storage::updated_lthash(&base.lthash, &layered, &mut changes)?;
        let tx_hashes: Vec<Hash> = txs.iter().map(signing::transaction_hash).collect();
        let header = Header {
            parent_hash: *parent,
            height,
            timestamp_ms,
            proposer: key.public(),
            state_root: lthash.root(),
            transactions_root: transactions_root(&tx_hashes),
            receipts_root: receipts_root(&receipts, &events),
        };
        let hash = signing::header_hash(&header);
        let signature = key.sign(signing::BLOCK_DOMAIN, self.chain_id(), &hash);
        let block = Block {
            header,
            transactions: txs,
            signature,
        };
        Ok(BlockOutcome::Executed(Box::new(Built {
            executed: ExecutedBlock {
                block,
                hash,
                receipts,
                rejected,
                events,
                fuel,
            },
            tx_hashes,
            changes,
            lthash,
            parent_runtime: base.runtime,
            shadow,
        })))
    }

    /// Verifies, re-executes and commits a block built elsewhere (or replayed from storage) on
    /// the head: the linear path of one validator and of replays.
    pub fn import_block(&mut self, block: Block) -> Result<ExecutedBlock> {
        let height = block.header.height;
        if block.header.parent_hash != self.head.hash {
            return Err(ChainError::InvalidBlock {
                height,
                reason: format!(
                    "parent {} is not the head {}",
                    hex::encode(block.header.parent_hash),
                    hex::encode(self.head.hash)
                ),
            });
        }
        let imported = self.execute_block(block)?;
        self.set_head(&imported.hash)?;
        self.finalize(&imported.hash)?;
        Ok(imported)
    }

    /// Verifies and executes a block built elsewhere on its parent (the last irreversible
    /// block or one above it) and keeps it above the last irreversible block. The head does
    /// not move: fork choice is consensus's.
    pub fn execute_block(&mut self, block: Block) -> Result<ExecutedBlock> {
        match self.check_block(block, None)? {
            BlockOutcome::Known(executed) => Ok(*executed),
            BlockOutcome::Executed(built) => self.keep_built(*built),
            BlockOutcome::Halt(halt) => Err(ChainError::UpgradeHalt(halt)),
        }
    }

    /// [`Self::execute_block`]'s checks and execution, which read the chain only: a node runs
    /// them under shared access and keeps the result with [`Self::keep_built`]. A `shadow`
    /// runtime runs the block too, as in [`Self::build_on`].
    pub fn check_block(
        &self,
        block: Block,
        shadow: Option<&Arc<Prototype>>,
    ) -> Result<BlockOutcome> {
        let height = block.header.height;
        let invalid = |reason: String| ChainError::InvalidBlock { height, reason };
        let hash = signing::header_hash(&block.header);
        if height <= self.finalized.height {
            return Err(invalid(format!(
                "at or below the last irreversible block {}",
                self.finalized.height
            )));
        }
        if let Some(p) = self.pending.get(&hash) {
            return Ok(BlockOutcome::Known(Box::new(p.executed.clone())));
        }
        let base = self.base(&block.header.parent_hash)?;
        if height != base.height + 1 {
            return Err(invalid(format!(
                "its parent is at height {}, expected {}",
                base.height,
                height - 1
            )));
        }
        if !signing::verify(
            &block.header.proposer,
            signing::BLOCK_DOMAIN,
            self.chain_id(),
            &hash,
            &block.signature,
        ) {
            return Err(invalid("bad proposer signature".into()));
        }
        let proposer_address = block.header.proposer.address();
        match self.query_at(&base.hash, queries::Validator(proposer_address))? {
            Some(v) if !v.is_jailed_at(height) => {}
            _ => {
                return Err(invalid(format!(
                    "proposer {proposer_address} is not an active validator"
                )));
            }
        }
        // Every signature of an imported block is checked, in batches on all cores; the
        // verdicts are exactly the one-by-one verdicts (`sigcheck`).
        if let Some(i) = crate::sigcheck::first_invalid(&block.transactions) {
            return Err(invalid(format!("transaction {i} has a bad signature")));
        }
        let tx_hashes: Vec<Hash> = block
            .transactions
            .iter()
            .map(signing::transaction_hash)
            .collect();
        if transactions_root(&tx_hashes) != block.header.transactions_root {
            return Err(invalid("transactions root mismatch".into()));
        }
        let ctx = self.context(height, base.hash, block.header.proposer);
        let db = self.db.clone();
        let layered = Layered::new(&*db, base.layers);
        let mut overlay = StateOverlay::new(&layered);
        let Execution {
            receipts,
            events,
            fuel,
            shadow,
            ..
        } = match self.execute_and_shadow(
            &base.runtime,
            &layered,
            &mut overlay,
            &ctx,
            block.transactions.clone(),
            Mode::Import,
            shadow,
        )? {
            Run::Done(x) => x,
            Run::Halt(halt) => return Ok(BlockOutcome::Halt(halt)),
        };
        let mut changes = overlay.into_changes();
        let lthash = vexidus_storage::updated_lthash(&base.lthash, &layered, &mut changes)?;
        if lthash.root() != block.header.state_root {
            return Err(invalid(format!(
                "state root mismatch: block says {}, execution gives {}",
                hex::encode(block.header.state_root),
                hex::encode(lthash.root())
            )));
        }
        if receipts_root(&receipts, &events) != block.header.receipts_root {
            return Err(invalid("receipts root mismatch".into()));
        }
        Ok(BlockOutcome::Executed(Box::new(Built {
            executed: ExecutedBlock {
                block,
                hash,
                receipts,
                rejected: vec![],
                events,
                fuel,
            },
            tx_hashes,
            changes,
            lthash,
            parent_runtime: base.runtime,
            shadow,
        })))
    }

    /// Keeps a block [`Self::build_on`] or [`Self::check_block`] executed above the last
    /// irreversible block (memory and `pending`). The chain may
    /// have moved since (under shared access nothing stops another block being kept or made
    /// irreversible): a block already kept is returned as it is, and one whose parent is no
    /// longer above the last irreversible block is refused.
    pub fn keep_built(&mut self, built: Built) -> Result<ExecutedBlock> {
        let Built {
            executed,
            tx_hashes,
            changes,
            lthash,
            parent_runtime,
            ..
        } = built;
        if let Some(p) = self.pending.get(&executed.hash) {
            return Ok(p.executed.clone());
        }
        let parent = executed.block.header.parent_hash;
        if parent != self.finalized.hash && !self.pending.contains_key(&parent) {
            return Err(ChainError::UnknownParent(parent));
        }
        self.keep(executed, tx_hashes, changes, lthash, parent_runtime)
    }

    /// Keeps an executed block above the last irreversible block (memory and `pending`).
    fn keep(
        &mut self,
        executed: ExecutedBlock,
        tx_hashes: Vec<Hash>,
        changes: Changes,
        lthash: LtHash,
        parent_runtime: Arc<Prototype>,
    ) -> Result<ExecutedBlock> {
        let runtime = match changes.get(abi::CODE_KEY) {
            Some(Some(code)) => {
                let r = self.executor.prototype(code)?;
                tracing::info!(height = executed.block.header.height, version = ?r.version, "runtime switched");
                r
            }
            _ => parent_runtime,
        };
        self.db.put_pending(&executed.hash, &executed.block)?;
        self.pending.insert(
            executed.hash,
            Pending {
                executed: executed.clone(),
                tx_hashes,
                changes,
                lthash,
                runtime,
            },
        );
        Ok(executed)
    }

    /// Makes `hash` and its ancestors irreversible: writes each to the database in height
    /// order, one atomic batch per block, and drops every block that does not descend from
    /// it. Returns the blocks written.
    pub fn finalize(&mut self, hash: &Hash) -> Result<Vec<ExecutedBlock>> {
        if *hash == self.finalized.hash {
            return Ok(vec![]);
        }
        let mut path = Vec::new();
        let mut at = *hash;
        while at != self.finalized.hash {
            let p = self.pending.get(&at).ok_or(ChainError::UnknownParent(at))?;
            path.push(at);
            at = p.executed.block.header.parent_hash;
        }
        let mut written = Vec::with_capacity(path.len());
        for h in path.into_iter().rev() {
            let p = self.pending.remove(&h).expect("on the path just walked");
            self.db.commit_block(BlockCommit {
                block: &p.executed.block,
                hash: h,
                receipts: &p.executed.receipts,
                events: &p.executed.events,
                tx_hashes: &p.tx_hashes,
                changes: &p.changes,
                lthash: &p.lthash,
                genesis: None,
            })?;
            self.finalized = HeadInfo {
                height: p.executed.block.header.height,
                hash: h,
                state_root: p.executed.block.header.state_root,
            };
            self.lthash = p.lthash;
            self.runtime = p.runtime;
            written.push(p.executed);
        }
        // Forks the new root excludes: everything not descending from it.
        let mut dropped = Vec::new();
        loop {
            let gone: Vec<Hash> = self
                .pending
                .iter()
                .filter(|(_, p)| {
                    let parent = p.executed.block.header.parent_hash;
                    parent != self.finalized.hash && !self.pending.contains_key(&parent)
                })
                .map(|(h, _)| *h)
                .collect();
            if gone.is_empty() {
                break;
            }
            for h in gone {
                self.pending.remove(&h);
                dropped.push(h);
            }
        }
        if !dropped.is_empty() {
            self.db.delete_pending(&dropped)?;
        }
        if !self.pending.contains_key(&self.head.hash) {
            self.head = self.finalized.clone();
        }
        Ok(written)
    }

    fn context(&self, height: u64, parent_hash: Hash, proposer: PublicKey) -> BlockContext {
        BlockContext {
            height,
            parent_hash,
            proposer,
            implemented_upgrades: self.implemented_upgrades.clone(),
        }
    }

    /// Runs the migration of a runtime upgrade enacted in the previous block, if one is pending,
    /// and returns the runtime that executes this block: the new one, or — when the migration
    /// traps or fails — the previous one, restored under `:code` with the abort recorded for its
    /// `vex_begin_block` (SPEC §4). Every node takes the same branch: it depends only on state and
    /// on the deterministic outcome of the call.
    fn migrate_if_pending(
        &self,
        runtime: &Arc<Prototype>,
        overlay: &mut StateOverlay<'_>,
        height: u64,
    ) -> Result<(Arc<Prototype>, u64)> {
        let Some(marker) = overlay
            .get(abi::PENDING_MIGRATION_KEY)
            .map_err(storage_err)?
        else {
            return Ok((runtime.clone(), 0));
        };
        let mut used = 0;
        let fuel = self.executor.fuel.block;
        let outcome = match PendingMigration::decode(&mut &marker[..]) {
            Ok(pending) => {
                let args = MigrateArgs {
                    from: pending.from,
                    height,
                };
                let r: std::result::Result<(std::result::Result<(), String>, u64), ExecError> =
                    self.executor
                        .call_metered(runtime, abi::MIGRATE, &args, overlay, fuel);
                match r {
                    Ok((Ok(()), f)) => {
                        used = f;
                        Ok(())
                    }
                    Ok((Err(reason), f)) => {
                        used = f;
                        Err((pending.name, format!("migration failed: {reason}")))
                    }
                    Err(e @ (ExecError::Storage { .. } | ExecError::Instantiate(_))) => {
                        return Err(e.into());
                    }
                    Err(e) => Err((pending.name, e.to_string())),
                }
            }
            Err(e) => Err((String::new(), format!("unreadable migration marker: {e}"))),
        };
        match outcome {
            Ok(()) => {
                overlay.commit_transaction();
                overlay.remove(abi::PENDING_MIGRATION_KEY);
                overlay.commit_transaction();
                tracing::info!(version = ?runtime.version, "runtime migration succeeded");
                Ok((runtime.clone(), used))
            }
            Err((name, reason)) => {
                overlay.discard_transaction();
                let previous = overlay
                    .get(abi::PREVIOUS_CODE_KEY)
                    .map_err(storage_err)?
                    .ok_or_else(|| {
                        ChainError::Runtime(
                            "a migration failed and no previous runtime is stored".into(),
                        )
                    })?;
                overlay.set(abi::CODE_KEY, &previous);
                overlay.remove(abi::PENDING_MIGRATION_KEY);
                overlay.set(
                    abi::UPGRADE_ABORTED_KEY,
                    &(name.clone(), reason.clone()).encode(),
                );
                overlay.commit_transaction();
                tracing::warn!(plan = %name, %reason, "runtime upgrade aborted; the previous runtime is restored");
                Ok((self.executor.prototype(&previous)?, used))
            }
        }
    }

    /// Pending migration → begin_block → transactions → end_block, on `overlay`.
    fn execute(
        &self,
        runtime: &Arc<Prototype>,
        overlay: &mut StateOverlay<'_>,
        ctx: &BlockContext,
        candidates: Vec<SignedTransaction>,
        mode: Mode,
    ) -> Result<Run> {
        let (runtime, migration_fuel) = self.migrate_if_pending(runtime, overlay, ctx.height)?;
        Ok(
            match self.execute_with(&runtime, overlay, ctx, candidates, mode)? {
                Run::Done(mut x) => {
                    x.fuel = x.fuel.saturating_add(migration_fuel);
                    Run::Done(x)
                }
                halt => halt,
            },
        )
    }

    /// Executes with the live runtime and, with a `shadow` runtime (a pending upgrade), runs
    /// the same block with it on a throwaway overlay and reports how that went.
    #[allow(clippy::too_many_arguments)]
    fn execute_and_shadow(
        &self,
        runtime: &Arc<Prototype>,
        backend: &dyn StateBackend,
        overlay: &mut StateOverlay<'_>,
        ctx: &BlockContext,
        candidates: Vec<SignedTransaction>,
        mode: Mode,
        shadow: Option<&Arc<Prototype>>,
    ) -> Result<Run> {
        let started = std::time::Instant::now();
        let mut executed = match self.execute(runtime, overlay, ctx, candidates, mode)? {
            Run::Done(x) => x,
            halt => return Ok(halt),
        };
        let live_time = started.elapsed();
        executed.shadow = shadow.map(|shadow| {
            let mut throwaway = StateOverlay::new(backend);
            let started = std::time::Instant::now();
            let r = self.execute_with(
                shadow,
                &mut throwaway,
                ctx,
                executed.included.clone(),
                Mode::Shadow,
            );
            let (error, shadow_fuel) = match r {
                Ok(Run::Halt(_)) => (None, 0),
                Err(e) => (Some(e.to_string()), 0),
                Ok(Run::Done(x)) => (
                    x.rejected.first().map(|(_, why)| {
                        format!("refused a transaction the live runtime included: {why}")
                    }),
                    x.fuel,
                ),
            };
            ShadowReport {
                height: ctx.height,
                code_hash: shadow.code_hash,
                error,
                live_fuel: executed.fuel,
                shadow_fuel,
                live_time,
                shadow_time: started.elapsed(),
            }
        });
        Ok(Run::Done(executed))
    }

    /// How many workers execute a block's transactions (1: one after another; more: Block-STM).
    /// Blocks come out the same either way; this only changes how fast.
    pub fn set_execution_threads(&mut self, threads: usize) {
        self.execution.threads = threads.max(1);
    }

    /// How many consecutive transactions a Block-STM worker takes at a time (`None`: sized to
    /// the block, [`crate::stm::Workers::run_for`]). Blocks come out the same either way.
    pub fn set_execution_run(&mut self, run: Option<usize>) {
        self.execution.run = run;
    }

    /// What Block-STM did in the last block it executed, taken (None if no block ran on it
    /// since the last call).
    pub fn take_stm_stats(&self) -> Option<crate::stm::Stats> {
        self.last_stm_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// begin_block → transactions → end_block with `runtime`, on `overlay`.
    fn execute_with(
        &self,
        runtime: &Arc<Prototype>,
        overlay: &mut StateOverlay<'_>,
        ctx: &BlockContext,
        candidates: Vec<SignedTransaction>,
        mode: Mode,
    ) -> Result<Run> {
        let fuel = self.executor.fuel;
        let mut events = Vec::new();
        let (begin, begin_fuel): (std::result::Result<BeginBlockOutcome, String>, u64) = self
            .executor
            .call_metered(runtime, abi::BEGIN_BLOCK, ctx, overlay, fuel.block)?;
        let begin = begin.map_err(ChainError::Runtime)?;
        // The one place a binary-upgrade halt is decided: the runtime's answer for this height.
        if let Some(halt) = begin.halt_for_upgrade {
            return Ok(Run::Halt(Box::new(halt)));
        }
        events.extend(begin.events);
        overlay.commit_transaction();

        let calls: Vec<ApplyArgs> = candidates
            .into_iter()
            .map(|transaction| ApplyArgs {
                height: ctx.height,
                proposer: ctx.proposer,
                transaction,
            })
            .collect();
        let outcomes = if self.execution.threads > 1 && calls.len() > 1 {
            let (outcomes, stats) = crate::stm::execute(
                &self.executor,
                runtime,
                overlay,
                &calls,
                fuel.transaction,
                self.execution,
                mode == Mode::Import,
            )?;
            if mode != Mode::Shadow {
                *self
                    .last_stm_stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(stats);
            }
            outcomes
        } else {
            crate::stm::execute_sequentially(
                &self.executor,
                runtime,
                overlay,
                &calls,
                fuel.transaction,
                mode == Mode::Import,
            )?
        };
        let mut included = Vec::with_capacity(calls.len());
        let mut receipts = Vec::with_capacity(calls.len());
        let mut rejected = Vec::new();
        let transactions_fuel: u64 = outcomes.iter().map(|o| o.fuel).sum();
        for (i, (args, outcome)) in calls.into_iter().zip(outcomes).enumerate() {
            match outcome.result {
                Ok(receipt) => {
                    included.push(args.transaction);
                    receipts.push(receipt);
                }
                Err(reason) if mode == Mode::Import => {
                    return Err(ChainError::InvalidBlock {
                        height: ctx.height,
                        reason: format!("transaction {i}: {reason}"),
                    });
                }
                Err(reason) => {
                    rejected.push((signing::transaction_hash(&args.transaction), reason))
                }
            }
        }

        overlay.set_totals_readable(true);
        let end = self
            .executor
            .call_metered::<_, std::result::Result<EndBlockOutcome, String>>(
                runtime,
                abi::END_BLOCK,
                ctx,
                overlay,
                fuel.block,
            );
        overlay.set_totals_readable(false);
        let (end, end_fuel) = end?;
        // The runtime refusing a block at its end (over the block budget) makes a peer's block
        // invalid; in production it means the candidates were chosen wrongly.
        let end = end.map_err(|reason| match mode {
            Mode::Import => ChainError::InvalidBlock {
                height: ctx.height,
                reason: format!("refused at the end of the block: {reason}"),
            },
            _ => ChainError::Runtime(reason),
        })?;
        events.extend(end.events);
        overlay.commit_transaction();
        Ok(Run::Done(Execution {
            included,
            receipts,
            rejected,
            events,
            fuel: begin_fuel
                .saturating_add(transactions_fuel)
                .saturating_add(end_fuel),
            shadow: None,
        }))
    }
}

/// A built block, or the halt as an error (for the single-node entry points that have no
/// other way to say it).
fn halt_as_error(outcome: BlockOutcome) -> Result<Built> {
    match outcome {
        BlockOutcome::Executed(built) => Ok(*built),
        BlockOutcome::Halt(halt) => Err(ChainError::UpgradeHalt(halt)),
        BlockOutcome::Known(executed) => Err(ChainError::Runtime(format!(
            "block {} was built already",
            hex::encode(executed.hash)
        ))),
    }
}

fn storage_err(e: String) -> ChainError {
    ChainError::Storage(StorageError::Corrupt(e))
}
