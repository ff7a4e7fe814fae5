//! An in-process chain for runtime authors' tests.
//!
//! It is the real thing, not a re-implementation: the real wasmtime executor running the real
//! blob, the real RocksDB storage code (in a temporary directory) with the real LtHash root, and
//! the real ingress checks of the pool. Only the clock and the network are missing: blocks are
//! produced when the test says so.
//!
//! ```no_run
//! use vexidus_harness::Harness;
//! use vexidus_runtime_api::transaction::Operation;
//!
//! let mut h = Harness::dev();
//! let alice = Harness::dev_key();
//! let bob = Harness::account_key("bob").public().address();
//! let receipt = h.execute(&alice, vec![Operation::Transfer { to: bob, amount: 5 }]).expect("included");
//! assert!(receipt.success);
//! ```

#![forbid(unsafe_code)]

use std::sync::Arc;
use vexidus_chain::{Chain, ChainError, ExecutedBlock};
use vexidus_executor::{ExecError, Executor};
use vexidus_pool::{Pool, TxError};
use vexidus_runtime_api::abi;
use vexidus_runtime_api::block::Event;
use vexidus_runtime_api::queries::{self, TypedQuery};
use vexidus_runtime_api::signing::{Keypair, dev_seed};
use vexidus_runtime_api::transaction::{Operation, Transaction};
use vexidus_runtime_api::{
    AccountInfo, Address, GenesisConfig, Hash, Parameters, Receipt, SignedTransaction,
    ValidatorInfo,
};
use vexidus_storage::Db;
use vexidus_storage::overlay::Changes;

/// Harness errors.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A transaction was refused at ingress.
    #[error(transparent)]
    Tx(#[from] TxError),
    /// A transaction was left out of the block.
    #[error("transaction left out of the block: {0}")]
    Rejected(String),
    /// A blob failed its checks.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The temporary directory or database could not be created.
    #[error("setup: {0}")]
    Setup(String),
}

/// Harness result.
pub type Result<T> = std::result::Result<T, HarnessError>;

/// An in-process single-validator chain.
pub struct Harness {
    chain: Chain,
    pool: Pool,
    proposer: Keypair,
    timestamp_ms: u64,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A chain from `genesis` running `code`, with `proposer` producing every block.
    pub fn new(genesis: GenesisConfig, code: &[u8], proposer: Keypair) -> Result<Self> {
        Self::with_upgrades(genesis, code, proposer, Vec::new())
    }

    /// [`Self::new`] for a binary that implements the binary-upgrade names `implemented`.
    pub fn with_upgrades(
        genesis: GenesisConfig,
        code: &[u8],
        proposer: Keypair,
        implemented: Vec<String>,
    ) -> Result<Self> {
        let dir = tempfile::tempdir().map_err(|e| HarnessError::Setup(e.to_string()))?;
        let mut db = Db::open(dir.path()).map_err(|e| HarnessError::Setup(e.to_string()))?;
        db.set_sync_writes(false);
        let db = Arc::new(db);
        let executor = Arc::new(Executor::new(Some(db.module_store())));
        let chain = Chain::open(db, executor, &genesis, code, implemented)?;
        Ok(Self {
            chain,
            pool: Pool::new(1_000_000),
            proposer,
            timestamp_ms: 0,
            _dir: dir,
        })
    }

    /// The development chain of `vexidus-node --dev` with the node's genesis runtime.
    pub fn dev() -> Self {
        Self::new(
            vexidus_genesis::dev_genesis(),
            vexidus_genesis::GENESIS_RUNTIME,
            Self::dev_key(),
        )
        .expect("the dev chain builds from the embedded runtime")
    }

    /// The well-known development key (validator, upgrade authority, funded).
    pub fn dev_key() -> Keypair {
        Keypair::from_seed(dev_seed())
    }

    /// A funded development account: `bob`, `charlie` or `dave` (any name gives a key).
    pub fn account_key(name: &str) -> Keypair {
        Keypair::from_seed(vexidus_genesis::dev_account_seed(name))
    }

    /// The chain underneath.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The chain underneath, to produce or import blocks directly.
    pub fn chain_mut(&mut self) -> &mut Chain {
        &mut self.chain
    }

    /// How many workers execute each block's transactions (1: one after another; more:
    /// Block-STM). The node uses one per core.
    pub fn set_execution_threads(&mut self, threads: usize) {
        self.chain.set_execution_threads(threads);
    }

    /// How many consecutive transactions a Block-STM worker takes at a time (`None`: sized to
    /// the block). Blocks come out the same either way.
    pub fn set_execution_run(&mut self, run: Option<usize>) {
        self.chain.set_execution_run(run);
    }

    /// Current height.
    pub fn height(&self) -> u64 {
        self.chain.head().height
    }

    /// A signed transaction from `key` with its next nonce (counting pending ones), `max_gas`
    /// exactly the operations' gas, valid for 100 blocks.
    pub fn sign(&self, key: &Keypair, operations: Vec<Operation>) -> SignedTransaction {
        let sender = key.public().address();
        let pending = self
            .pool
            .all()
            .iter()
            .filter(|t| t.transaction.sender == key.public())
            .count() as u64;
        let tx = Transaction {
            chain_id: self.chain.chain_id().into(),
            sender: key.public(),
            nonce: self.account(&sender).nonce + pending,
            max_gas: 0,
            valid_until: self.height() + 100,
            operations,
        };
        let tx = Transaction {
            max_gas: tx.intrinsic_gas(),
            ..tx
        };
        key.sign_transaction(tx)
    }

    /// Submits a transaction through the real ingress checks.
    pub fn submit(&mut self, tx: SignedTransaction) -> Result<Hash> {
        Ok(self.pool.admit_decoded(&self.chain, tx)?)
    }

    /// Whether the pool still holds the transaction `hash`.
    pub fn is_pending(&self, hash: &Hash) -> bool {
        self.pool.contains(hash)
    }

    /// Produces the next block from every pending transaction.
    pub fn produce_block(&mut self) -> Result<ExecutedBlock> {
        self.produce_block_with(Changes::new())
    }

    fn produce_block_with(&mut self, pre_state: Changes) -> Result<ExecutedBlock> {
        self.timestamp_ms += 1_000;
        let budget = vexidus_pool::BlockBudget::of(&self.parameters());
        self.pool.evict_oversized(budget);
        let txs = self.pool.ready(budget);
        let block =
            self.chain
                .produce_block_with(txs, &self.proposer, self.timestamp_ms, pre_state)?;
        let hashes: Vec<Hash> = block
            .block
            .transactions
            .iter()
            .map(vexidus_runtime_api::signing::transaction_hash)
            .collect();
        self.pool.prune(&hashes, &block.rejected);
        Ok(block)
    }

    /// Produces empty blocks until the head is at `height`.
    pub fn advance_to(&mut self, height: u64) -> Result<()> {
        while self.height() < height {
            self.produce_block()?;
        }
        Ok(())
    }

    /// Signs, submits and includes one transaction in a new block; returns its receipt.
    pub fn execute(&mut self, key: &Keypair, operations: Vec<Operation>) -> Result<Receipt> {
        let tx = self.sign(key, operations);
        self.include(tx)
    }

    /// Submits `tx`, produces a block and returns the transaction's receipt.
    pub fn include(&mut self, tx: SignedTransaction) -> Result<Receipt> {
        let hash = self.submit(tx)?;
        let block = self.produce_block()?;
        if let Some((_, reason)) = block.rejected.iter().find(|(h, _)| *h == hash) {
            return Err(HarnessError::Rejected(reason.clone()));
        }
        let index = block
            .block
            .transactions
            .iter()
            .position(|t| vexidus_runtime_api::signing::transaction_hash(t) == hash)
            .ok_or_else(|| HarnessError::Rejected("not in the block".into()))?;
        Ok(block.receipts[index].clone())
    }

    /// Asks the runtime a question about head state (a typed query of
    /// `vexidus_runtime_api::queries`, or a raw `Query`).
    pub fn query<Q: TypedQuery>(&self, q: Q) -> Result<Q::Answer> {
        Ok(self.chain.query(q)?)
    }

    /// An account at head.
    pub fn account(&self, who: &Address) -> AccountInfo {
        self.chain
            .query(queries::Account(*who))
            .unwrap_or_else(|e| panic!("account query failed: {e}"))
    }

    /// Every validator at head.
    pub fn validators(&self) -> Vec<ValidatorInfo> {
        self.chain
            .query(queries::Validators)
            .unwrap_or_else(|e| panic!("validators query failed: {e}"))
    }

    /// Protocol parameters at head.
    pub fn parameters(&self) -> Parameters {
        self.chain
            .query(queries::Parameters)
            .unwrap_or_else(|e| panic!("parameters query failed: {e}"))
    }

    /// The treasury's address.
    pub fn treasury(&self) -> Address {
        self.chain
            .query(queries::Treasury)
            .unwrap_or_else(|e| panic!("treasury query failed: {e}"))
    }

    /// Receipts of the block at `height`.
    pub fn receipts(&self, height: u64) -> Vec<Receipt> {
        self.chain
            .db()
            .receipts(height)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Every event of the block at `height`, in order.
    pub fn events(&self, height: u64) -> Vec<Event> {
        self.receipts(height)
            .into_iter()
            .flat_map(|r| r.events)
            .collect()
    }

    /// Block-level events (outside transactions) of the block at `height`.
    pub fn block_events(&self, height: u64) -> Vec<Event> {
        self.chain
            .db()
            .block_events(height)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// The version of the runtime that executes the next block.
    pub fn runtime_version(&self) -> vexidus_runtime_api::RuntimeVersion {
        self.chain.runtime().version.clone()
    }

    /// Writes raw state in the next block, outside any transaction (test-only, like
    /// [`Self::swap_runtime`]): for situations no operation can create yet, such as a jailed
    /// validator.
    pub fn force_state(
        &mut self,
        changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<ExecutedBlock> {
        self.produce_block_with(changes.into_iter().collect())
    }

    /// Raw state read at head.
    pub fn storage(&self, key: &[u8]) -> Option<Vec<u8>> {
        vexidus_storage::StateBackend::get(&**self.chain.db(), key)
            .ok()
            .flatten()
    }

    /// Replaces the runtime blob directly (no governance): the next block writes `code` under
    /// `:code` and the block after runs it. The blob must pass the host's static checks.
    pub fn swap_runtime(&mut self, code: &[u8]) -> Result<ExecutedBlock> {
        Executor::check_blob(code, usize::MAX).map_err(ExecError::from)?;
        let mut pre = Changes::new();
        pre.insert(abi::CODE_KEY.to_vec(), Some(code.to_vec()));
        self.produce_block_with(pre)
    }
}
