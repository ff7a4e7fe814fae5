//! What the node's tasks share: the chain behind a lock, the pool, the subscription channels and
//! what the network and consensus tasks keep current for RPC.

use crate::readiness::Readiness;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use tokio::sync::broadcast;
use vexidus_chain::{BlockOutcome, Chain, ChainError, ExecutedBlock};
use vexidus_pool::{BlockBudget, Pool, TxError};
use vexidus_rpc_api::hex::hex0x;
use vexidus_rpc_api::{
    FinalizedBlock, H256, HeaderView, PeersView, ReadinessView, RuntimeInfo, Status,
};
use vexidus_runtime_api::abi::UpgradeHalt;
use vexidus_runtime_api::queries;
use vexidus_runtime_api::signing::{self, Keypair};
use vexidus_runtime_api::state::PlanStatus;
use vexidus_runtime_api::{Hash, SignedTransaction};

/// State shared by the producer and the RPC handlers.
pub struct NodeState {
    chain: RwLock<Chain>,
    pool: Mutex<Pool>,
    /// New heads, for subscriptions.
    pub heads: broadcast::Sender<HeaderView>,
    /// Newly irreversible blocks, in height order, for subscriptions.
    pub finalized: broadcast::Sender<FinalizedBlock>,
    /// Connected peers (the network task keeps it current).
    pub peers: std::sync::atomic::AtomicUsize,
    /// The network as `vex_getPeers` shows it: connected peers and bans (the network task
    /// keeps it current, once a second).
    pub network: Mutex<PeersView>,
    /// The validators due to produce next: the next block's producer and the next slot's
    /// leader (the consensus driver keeps it current). Transactions go to them.
    pub leaders: Mutex<Vec<vexidus_runtime_api::Address>>,
    /// Where transactions submitted here go to be forwarded to the leaders (when on a network).
    pub forward:
        Mutex<Option<tokio::sync::mpsc::UnboundedSender<vexidus_runtime_api::SignedTransaction>>>,
    validator: Option<vexidus_runtime_api::PublicKey>,
    readiness: Mutex<Readiness>,
    auto_vote: Option<Keypair>,
    voted: Mutex<std::collections::HashSet<String>>,
    /// Held while the node signs and admits one of its own transactions.
    own: Mutex<()>,
}

/// What producing or importing a block came to.
#[derive(Debug)]
pub enum Applied {
    /// Executed and kept above the last irreversible block (or kept already).
    Block(ExecutedBlock),
    /// The chain halts at this height for a binary upgrade this binary does not implement
    /// (the runtime's answer): nothing was executed.
    Halt(UpgradeHalt),
}

impl Applied {
    /// The block, or the halt as [`ChainError::UpgradeHalt`].
    pub fn block(self) -> Result<ExecutedBlock, ChainError> {
        match self {
            Applied::Block(b) => Ok(b),
            Applied::Halt(h) => Err(ChainError::UpgradeHalt(Box::new(h))),
        }
    }
}

/// Where a transaction came from. It decides only what happens once it is admitted: what was
/// submitted here goes on to the next leaders; what a peer forwarded, or what the node made or
/// took back from a branch the head left, stays here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Submitted to this node over RPC.
    Rpc,
    /// Forwarded by another node.
    Peer,
    /// The node's own (votes, evidence), or from a branch the head left.
    Node,
}

impl NodeState {
    /// Wraps a chain.
    pub fn new(chain: Chain, pool: vexidus_pool::PoolLimits, validator: Option<&Keypair>) -> Self {
        Self {
            chain: RwLock::new(chain),
            pool: Mutex::new(Pool::with_limits(pool)),
            heads: broadcast::channel(256).0,
            finalized: broadcast::channel(256).0,
            peers: std::sync::atomic::AtomicUsize::new(0),
            network: Mutex::new(PeersView::default()),
            leaders: Mutex::new(Vec::new()),
            forward: Mutex::new(None),
            validator: validator.map(|k| k.public()),
            readiness: Mutex::new(Readiness::default()),
            auto_vote: None,
            voted: Mutex::new(std::collections::HashSet::new()),
            own: Mutex::new(()),
        }
    }

    /// Votes to approve every upgrade plan open for votes, with `key` (`--auto-vote-seed`).
    pub fn with_auto_vote(mut self, key: Keypair) -> Self {
        self.auto_vote = Some(key);
        self
    }

    fn lock_readiness(&self) -> std::sync::MutexGuard<'_, Readiness> {
        self.readiness.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `vex_getUpgradeReadiness`.
    pub fn readiness(&self) -> Option<ReadinessView> {
        self.lock_readiness().view()
    }

    /// After each block: start compiling a newly scheduled runtime in the background, forget a
    /// plan that is gone, and cast the automatic vote.
    pub fn after_block(self: &Arc<Self>) {
        let Ok(plan) = self.read_chain().query(queries::UpgradePlan) else {
            return;
        };
        let Some(view) = plan else {
            let mut r = self.lock_readiness();
            if r.plan.is_some() {
                *r = Readiness::default();
            }
            return;
        };
        self.auto_vote(&view);
        let (Some(code_hash), true) = (
            view.plan.code_hash,
            matches!(view.plan.status, PlanStatus::Voting | PlanStatus::Approved),
        ) else {
            return;
        };
        let mut r = self.lock_readiness();
        r.track(&view.plan.name, code_hash);
        if r.compiled.is_some() || r.compiling || r.compile_error.is_some() {
            return;
        }
        r.compiling = true;
        drop(r);
        let state = self.clone();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let code = match state.read_chain().query(queries::PlanCode) {
                Ok(Some(code)) => code,
                other => {
                    let why = match other {
                        Ok(_) => "the plan carries no code".to_string(),
                        Err(e) => e.to_string(),
                    };
                    let mut r = state.lock_readiness();
                    r.compiling = false;
                    r.compile_error = Some(format!("cannot read the plan's code: {why}"));
                    return;
                }
            };
            let executor = state.read_chain().executor().clone();
            let result = executor.prototype(&code);
            let mut r = state.lock_readiness();
            r.compiling = false;
            if r.code_hash != Some(code_hash) {
                return; // the plan changed meanwhile
            }
            match result {
                Ok(p) => {
                    tracing::info!(plan = ?r.plan, ms = started.elapsed().as_millis() as u64, "pending runtime compiled in the background");
                    r.compile_ms = Some(started.elapsed().as_millis() as u64);
                    r.compiled = Some(p);
                }
                Err(e) => r.compile_error = Some(e.to_string()),
            }
        });
    }

    fn auto_vote(&self, view: &vexidus_runtime_api::abi::PlanView) {
        let Some(key) = &self.auto_vote else { return };
        let me = key.public().address();
        let plan = &view.plan;
        if plan.status != PlanStatus::Voting
            || plan.votes.iter().any(|(a, _)| *a == me)
            || !plan.snapshot.iter().any(|(a, _)| *a == me)
        {
            return;
        }
        let mut voted = self.voted.lock().unwrap_or_else(|p| p.into_inner());
        if !voted.insert(plan.name.clone()) {
            return;
        }
        let vote = vexidus_runtime_api::Operation::VoteUpgrade {
            name: plan.name.clone(),
            approve: true,
        };
        match self.submit_own(key, 40_000, vec![vote]) {
            Ok(_) => tracing::info!(plan = %plan.name, "auto-vote: approving"),
            Err(e) => tracing::warn!(plan = %plan.name, "auto-vote failed: {e}"),
        }
    }

    /// Read access to the chain.
    pub fn read_chain(&self) -> RwLockReadGuard<'_, Chain> {
        self.chain.read().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ingress, the one way into the pool: one result per entry, in order (an entry that did
    /// not decode stays refused). A transaction already pending is refused before anything is
    /// checked; signatures are checked together in batches on all cores, except those this node
    /// verified before; the runtime's checks run at the head, on all cores, under the chain's
    /// read lock; only then is the pool locked, for its own bookkeeping (duplicates, nonce
    /// order, budgets), so block production and other batches wait for little. Admitted
    /// transactions of [`Origin::Rpc`] go on to the next leaders.
    pub fn admit(
        &self,
        txs: Vec<Result<SignedTransaction, TxError>>,
        origin: Origin,
    ) -> Vec<Result<Hash, TxError>> {
        use rayon::prelude::*;
        // Hashing (a Borsh encoding and blake3 each) runs on all cores; the pool is locked only
        // to look the hashes up.
        let hashed: Vec<Result<(SignedTransaction, Hash), TxError>> = txs
            .into_par_iter()
            .map(|t| {
                t.map(|tx| {
                    let hash = signing::transaction_hash(&tx);
                    (tx, hash)
                })
            })
            .collect();
        let hashed: Vec<Result<(SignedTransaction, Hash, bool), TxError>> = {
            let pool = self.lock_pool();
            hashed
                .into_iter()
                .map(|t| {
                    let (tx, hash) = t?;
                    let verified = pool.seen(&hash)?;
                    Ok((tx, hash, verified))
                })
                .collect()
        };
        let unverified: Vec<&SignedTransaction> = hashed
            .iter()
            .filter_map(|t| t.as_ref().ok())
            .filter(|(_, _, verified)| !verified)
            .map(|(tx, _, _)| tx)
            .collect();
        let mut verdicts = vexidus_chain::sigcheck::verify_all(&unverified).into_iter();
        drop(unverified);
        let with_verdicts: Vec<_> = hashed
            .into_iter()
            .map(|t| {
                t.map(|(tx, hash, verified)| {
                    let ok = verified || verdicts.next().unwrap_or(false);
                    (tx, hash, ok)
                })
            })
            .collect();
        let forward = match origin {
            Origin::Rpc => self
                .forward
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            Origin::Peer | Origin::Node => None,
        };
        let mut admitted = Vec::new();
        let results = {
            let chain = self.read_chain();
            let checked: Vec<Result<vexidus_pool::Checked, TxError>> = with_verdicts
                .into_par_iter()
                .map(|t| t.and_then(|(tx, hash, ok)| vexidus_pool::check(&*chain, tx, hash, ok)))
                .collect();
            let mut pool = self.lock_pool();
            checked
                .into_iter()
                .map(|c| {
                    let c = c?;
                    let tx = forward.is_some().then(|| c.transaction().clone());
                    let r = pool.admit_valid(&*chain, c);
                    if let (Ok(_), Some(tx)) = (&r, tx) {
                        admitted.push(tx);
                    }
                    r
                })
                .collect()
        };
        if let Some(forward) = forward {
            for tx in admitted {
                let _ = forward.send(tx);
            }
        }
        results
    }

    /// Whether a transaction is waiting in the pool.
    pub fn is_pending(&self, hash: &Hash) -> bool {
        self.lock_pool().contains(hash)
    }

    /// `vex_getStatus`.
    pub fn status(&self) -> Result<Status, ChainError> {
        let (pending, pending_bytes) = {
            let pool = self.lock_pool();
            (pool.len(), pool.bytes())
        };
        let chain = self.read_chain();
        let head = chain.head();
        let rt = chain.runtime();
        let genesis = chain.genesis();
        Ok(Status {
            chain_id: chain.chain_id().into(),
            height: head.height,
            finalized_height: chain.finalized().height,
            finalized_hash: H256(chain.finalized().hash),
            head_hash: H256(head.hash),
            state_root: H256(head.state_root),
            peers: self.peers.load(std::sync::atomic::Ordering::Relaxed) as u64,
            pending_transactions: pending as u64,
            pending_bytes: pending_bytes as u64,
            validator: self.validator,
            block_time_ms: genesis.block_time_ms,
            governance_mode: genesis.governance.mode,
            upgrade_authority: genesis.governance.upgrade_authority,
            upgrade_grace_until: chain.query(queries::GraceUntil).ok(),
            runtime: RuntimeInfo::new(&rt.version, &rt.code_hash),
        })
    }

    /// Builds a block on `parent` from the pool (not the head until consensus says so).
    pub fn produce_on(
        &self,
        parent: &Hash,
        key: &Keypair,
        timestamp_ms: u64,
        with_transactions: bool,
    ) -> Result<Applied, ChainError> {
        let budget = BlockBudget::of(&self.read_chain().query_at(parent, queries::Parameters)?);
        let candidates = if with_transactions {
            let mut pool = self.lock_pool();
            let evicted = pool.evict_oversized(budget);
            if evicted > 0 {
                tracing::info!(
                    evicted,
                    max_block_bytes = budget.bytes,
                    "dropped pending transactions no block may carry"
                );
            }
            pool.ready(budget)
        } else {
            Vec::new()
        };
        let shadow = self.lock_readiness().compiled.clone();
        // Executing needs shared access only, so admission and queries go on meanwhile; only
        // keeping the block takes the chain for itself.
        let outcome =
            self.read_chain()
                .build_on(parent, candidates, key, timestamp_ms, shadow.as_ref())?;
        let produced = match self.keep(outcome)? {
            Applied::Block(b) => b,
            halt => return Ok(halt),
        };
        self.lock_pool().prune(&[], &produced.rejected);
        Ok(Applied::Block(produced))
    }

    /// Keeps what [`Self::produce_on`] or [`Self::execute`] executed, recording its shadow run.
    fn keep(&self, outcome: BlockOutcome) -> Result<Applied, ChainError> {
        let built = match outcome {
            BlockOutcome::Executed(built) => built,
            BlockOutcome::Known(executed) => return Ok(Applied::Block(*executed)),
            BlockOutcome::Halt(halt) => return Ok(Applied::Halt(*halt)),
        };
        if let Some(report) = built.shadow_report() {
            self.lock_readiness().record(report);
        }
        Ok(Applied::Block(self.write_chain().keep_built(*built)?))
    }

    /// Verifies and executes a block from a peer on its parent's state.
    pub fn execute(&self, block: vexidus_runtime_api::Block) -> Result<Applied, ChainError> {
        let shadow = self.lock_readiness().compiled.clone();
        // As in `produce_on`: checked and executed under shared access, kept under exclusive.
        let outcome = self.read_chain().check_block(block, shadow.as_ref())?;
        self.keep(outcome)
    }

    /// Consensus moved the head: queries follow it, the pool drops what the canonical chain
    /// includes and takes back what a switch to another branch left out (checked again against
    /// the new head: a transaction the new branch made stale stays out), subscribers hear of
    /// it.
    pub fn set_head(self: &Arc<Self>, hash: &Hash) -> Result<(), ChainError> {
        let (header, included, retracted) = {
            let mut chain = self.write_chain();
            let retracted = chain.retracted_by(hash);
            chain.set_head(hash)?;
            let block = chain.block(hash)?.ok_or(ChainError::UnknownParent(*hash))?;
            (
                HeaderView::new(&block, hash),
                chain.canonical_tx_hashes(),
                retracted,
            )
        };
        self.lock_pool().prune(&included, &[]);
        if !retracted.is_empty() {
            let back = self
                .admit(retracted.into_iter().map(Ok).collect(), Origin::Node)
                .into_iter()
                .filter(Result::is_ok)
                .count();
            tracing::info!(head = %hex0x(hash), back, "head moved to another branch; its left-out transactions are back in the pool");
        }
        let _ = self.heads.send(header);
        self.after_block();
        Ok(())
    }

    /// Consensus made `hash` irreversible: its branch is written to the database.
    pub fn finalize(&self, hash: &Hash) -> Result<(), ChainError> {
        let written = self.write_chain().finalize(hash)?;
        for b in &written {
            let hashes: Vec<Hash> = b
                .block
                .transactions
                .iter()
                .map(signing::transaction_hash)
                .collect();
            self.lock_pool().prune(&hashes, &[]);
            let _ = self.finalized.send(FinalizedBlock {
                hash: H256(b.hash),
                height: b.block.header.height,
            });
        }
        Ok(())
    }

    /// Puts double-sign evidence on chain: a `ReportDoubleSign` transaction signed by `key`.
    pub fn submit_evidence(
        &self,
        key: &Keypair,
        evidence: vexidus_runtime_api::vote::DoubleSignEvidence,
    ) -> Result<Hash, TxError> {
        let report = vexidus_runtime_api::Operation::ReportDoubleSign {
            evidence: Box::new(evidence),
        };
        self.submit_own(key, 100_000, vec![report])
    }

    /// Signs `operations` with the node's own `key` (the next free nonce, counting what the
    /// pool holds) and admits the transaction. One at a time, so two of the node's own
    /// transactions never take the same nonce.
    fn submit_own(
        &self,
        key: &Keypair,
        max_gas: u64,
        operations: Vec<vexidus_runtime_api::Operation>,
    ) -> Result<Hash, TxError> {
        let _one_at_a_time = self.own.lock().unwrap_or_else(|p| p.into_inner());
        let tx = {
            let chain = self.read_chain();
            let me = key.public().address();
            let nonce = chain.query(queries::Account(me))?.nonce;
            vexidus_runtime_api::Transaction {
                chain_id: chain.chain_id().into(),
                sender: key.public(),
                nonce: nonce + self.lock_pool().pending_of(&me),
                max_gas,
                valid_until: chain.head().height + 100,
                operations,
            }
        };
        let mut results = self.admit(vec![Ok(key.sign_transaction(tx))], Origin::Node);
        results.pop().expect("one result for one transaction")
    }

    /// Returns once no block is being executed or committed (it takes the chain's write lock
    /// and lets it go): after this, closing the database loses nothing in flight.
    pub fn wait_for_commit(&self) {
        drop(self.write_chain());
    }

    fn write_chain(&self) -> std::sync::RwLockWriteGuard<'_, Chain> {
        self.chain.write().unwrap_or_else(|p| p.into_inner())
    }
}
