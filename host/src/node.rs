//! The node service: shared state, block production on a timer, RPC, orderly shutdown.

use crate::chain::{Chain, ChainError, ExecutedBlock};
use crate::executor::Executor;
use crate::pool::{BlockBudget, Pool, TxError};
use crate::readiness::Readiness;
use crate::rpc::{self, RpcConfig};
use crate::storage::Db;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;
use tokio::sync::broadcast;
use vexidus_runtime_api::abi::UpgradeHalt;
use vexidus_runtime_api::abi::{Query, QueryResponse};
use vexidus_runtime_api::signing::{self, Keypair};
use vexidus_runtime_api::state::PlanStatus;
use vexidus_runtime_api::{GenesisConfig, Hash};

/// Everything the node needs to start.
pub struct NodeConfig {
    /// Data directory; the database lives in `<data_dir>/db`.
    pub data_dir: PathBuf,
    /// The chain to start or continue. `None`: continue the chain stored in the data directory.
    pub genesis: Option<GenesisConfig>,
    /// The runtime blob a new chain starts on (see [`crate::genesis_runtime`]).
    pub genesis_runtime: &'static [u8],
    /// The validator key; without one the node produces no blocks.
    pub validator_key: Option<Keypair>,
    /// RPC settings.
    pub rpc: RpcConfig,
    /// Upgrade names this binary implements.
    pub implemented_upgrades: Vec<String>,
    /// The pool's budgets.
    pub pool: crate::pool::PoolLimits,
    /// Vote to approve every upgrade plan with the validator key (`--auto-vote-seed`).
    pub auto_vote_seed: bool,
    /// The peer-to-peer network, if enabled.
    pub p2p: Option<P2pSettings>,
    /// Consensus timing and test faults.
    pub consensus: crate::driver::ConsensusSettings,
    /// The failover unit of a new chain, from its genesis file (`None`: the chain's recorded
    /// one, or SPEC §10's 1000 ms for a new chain). Block validity depends on it, so a chain
    /// keeps the one it started with.
    pub failover_base_ms: Option<u64>,
}

/// Peer-to-peer settings (`--p2p-addr`, `--bootnodes`).
#[derive(Clone, Debug)]
pub struct P2pSettings {
    /// Where to listen (QUIC), e.g. `/ip4/0.0.0.0/udp/30333/quic-v1`.
    pub listen: libp2p::Multiaddr,
    /// Peers to dial at start.
    pub bootnodes: Vec<libp2p::Multiaddr>,
    /// Accept gossiped blocks only from peers that proved a validator key.
    pub enforce_validator_allowlist: bool,
    /// Most connections at once (`--max-peers`).
    pub max_peers: u32,
    /// Most inbound connections from one IP address (`--max-peers-per-ip`).
    pub max_peers_per_ip: u32,
}

/// The node's libp2p identity, kept in `<data_dir>/p2p-key` (created at first start) so the
/// peer id — the `/p2p/…` part of its bootnode address — survives restarts and upgrades.
pub fn p2p_keypair(data_dir: &std::path::Path) -> anyhow::Result<libp2p::identity::Keypair> {
    let path = data_dir.join("p2p-key");
    let secret: [u8; 32] = match std::fs::read(&path) {
        Ok(bytes) => bytes.try_into().map_err(|_| {
            anyhow::anyhow!(
                "{} is not a 32-byte key; delete it to make a new one",
                path.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Readable by the node's user only, and durable before it is used: a peer id that
            // changed after a crash would no longer match the bootnode addresses others hold.
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let fresh = fresh_secret()?;
            let tmp = data_dir.join(".p2p-key.tmp");
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", tmp.display()))?;
            f.write_all(&fresh)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(data_dir)?.sync_all()?;
            fresh
        }
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    };
    libp2p::identity::Keypair::ed25519_from_bytes(secret)
        .map_err(|e| anyhow::anyhow!("p2p key: {e}"))
}

fn fresh_secret() -> anyhow::Result<[u8; 32]> {
    let ed = libp2p::identity::Keypair::generate_ed25519()
        .try_into_ed25519()
        .map_err(|e| anyhow::anyhow!("p2p key: {e}"))?;
    ed.secret()
        .as_ref()
        .try_into()
        .map_err(|_| anyhow::anyhow!("p2p key: unexpected secret length"))
}

/// State shared by the producer and the RPC handlers.
pub struct NodeState {
    chain: RwLock<Chain>,
    pool: Mutex<Pool>,
    /// New heads, as JSON, for subscriptions.
    pub heads: broadcast::Sender<Value>,
    /// Newly irreversible blocks (`{hash, height}`), in height order, for subscriptions.
    pub finalized: broadcast::Sender<Value>,
    /// Connected peers (the network task keeps it current).
    pub peers: std::sync::atomic::AtomicUsize,
    /// The network as `vex_getPeers` shows it: connected peers and bans (the network task
    /// keeps it current, once a second).
    pub network: Mutex<Value>,
    /// The validators due to produce next: the next block's producer and the next slot's
    /// leader (the consensus driver keeps it current). Transactions go to them.
    pub leaders: Mutex<Vec<vexidus_runtime_api::Address>>,
    /// Where transactions submitted here go to be forwarded to the leaders (when on a network).
    pub forward:
        Mutex<Option<tokio::sync::mpsc::UnboundedSender<vexidus_runtime_api::SignedTransaction>>>,
    validator: Option<String>,
    readiness: Mutex<Readiness>,
    auto_vote: Option<Keypair>,
    voted: Mutex<std::collections::HashSet<String>>,
}

impl NodeState {
    /// Wraps a chain.
    pub fn new(chain: Chain, pool: crate::pool::PoolLimits, validator: Option<&Keypair>) -> Self {
        Self {
            chain: RwLock::new(chain),
            pool: Mutex::new(Pool::with_limits(pool)),
            heads: broadcast::channel(256).0,
            finalized: broadcast::channel(256).0,
            peers: std::sync::atomic::AtomicUsize::new(0),
            network: Mutex::new(json!({ "connected": [], "banned": [] })),
            leaders: Mutex::new(Vec::new()),
            forward: Mutex::new(None),
            validator: validator.map(|k| k.public().to_string()),
            readiness: Mutex::new(Readiness::default()),
            auto_vote: None,
            voted: Mutex::new(std::collections::HashSet::new()),
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
    pub fn readiness_json(&self) -> Value {
        self.lock_readiness().to_json()
    }

    /// After each block: start compiling a newly scheduled runtime in the background, forget a
    /// plan that is gone, and cast the automatic vote.
    pub fn after_block(self: &Arc<Self>) {
        let plan = match self.read_chain().query(Query::UpgradePlan) {
            Ok(QueryResponse::UpgradePlan(p)) => p,
            _ => return,
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
            let code = match state.read_chain().query(Query::PlanCode) {
                Ok(QueryResponse::PlanCode(Some(code))) => code,
                other => {
                    let mut r = state.lock_readiness();
                    r.compiling = false;
                    r.compile_error = Some(format!("cannot read the plan's code: {other:?}"));
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

    /// Ingress: checks a Borsh-encoded signed transaction and pools it.
    pub fn submit(&self, bytes: &[u8]) -> Result<Hash, TxError> {
        self.submit_typed(bytes, None)
    }

    /// Ingress for the typed write methods: every operation must have discriminant `only`.
    pub fn submit_typed(
        &self,
        bytes: &[u8],
        only: Option<(u8, &'static str)>,
    ) -> Result<Hash, TxError> {
        let tx = crate::pool::decode(bytes)?;
        if let Some((disc, name)) = only
            && let Some(op) = tx
                .transaction
                .operations
                .iter()
                .find(|op| op.discriminant() != disc)
        {
            return Err(TxError::WrongOperation {
                expected: name,
                found: op.name(),
            });
        }
        let admitted = {
            let chain = self.read_chain();
            self.lock_pool().admit_decoded(&chain, tx.clone())
        }?;
        if let Some(forward) = &*self.forward.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = forward.send(tx);
        }
        Ok(admitted)
    }

    /// Ingress for a batch (`vex_submitTransactions`): the signatures are checked together in
    /// batches on all cores, then each transaction is admitted in order; one result per entry.
    pub fn submit_batch(
        &self,
        txs: Vec<Result<vexidus_runtime_api::SignedTransaction, TxError>>,
    ) -> Vec<Result<Hash, TxError>> {
        let decoded: Vec<&vexidus_runtime_api::SignedTransaction> =
            txs.iter().filter_map(|t| t.as_ref().ok()).collect();
        let mut verdicts = crate::sigcheck::verify_all(&decoded).into_iter();
        drop(decoded);
        // Admitted transactions are kept for forwarding only on a network.
        let forward = self
            .forward
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let with_verdicts: Vec<_> = txs
            .into_iter()
            .map(|t| t.map(|tx| (tx, verdicts.next().unwrap_or(false))))
            .collect();
        let mut admitted = Vec::new();
        let results: Vec<Result<Hash, TxError>> = {
            let chain = self.read_chain();
            // The runtime's checks, on all cores and before the pool is locked: the pool is only
            // held for its own bookkeeping, so block production's `ready` and other batches
            // wait for little.
            let checked: Vec<Result<crate::pool::Checked, TxError>> = {
                use rayon::prelude::*;
                with_verdicts
                    .into_par_iter()
                    .map(|t| t.and_then(|(tx, ok)| crate::pool::check(&chain, tx, ok)))
                    .collect()
            };
            let mut pool = self.lock_pool();
            checked
                .into_iter()
                .map(|c| {
                    let c = c?;
                    let tx = forward.is_some().then(|| c.transaction().clone());
                    let r = pool.admit_valid(&chain, c);
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

    /// A transaction another node forwarded (not forwarded again).
    pub fn admit_forwarded(
        &self,
        tx: vexidus_runtime_api::SignedTransaction,
    ) -> Result<Hash, TxError> {
        let chain = self.read_chain();
        self.lock_pool().admit_decoded(&chain, tx)
    }

    /// Whether a transaction is waiting in the pool.
    pub fn is_pending(&self, hash: &Hash) -> bool {
        self.lock_pool().contains(hash)
    }

    /// `vex_getStatus`.
    pub fn status_json(&self) -> Value {
        let (pending, pending_bytes) = {
            let pool = self.lock_pool();
            (pool.len(), pool.bytes())
        };
        let chain = self.read_chain();
        let head = chain.head();
        let rt = chain.runtime();
        json!({
            "chain_id": chain.chain_id(),
            "height": head.height,
            "finalized_height": chain.finalized().height,
            "finalized_hash": rpc::hex0x(chain.finalized().hash),
            "head_hash": rpc::hex0x(head.hash),
            "state_root": rpc::hex0x(head.state_root),
            "peers": self.peers.load(std::sync::atomic::Ordering::Relaxed),
            "pending_transactions": pending,
            "pending_bytes": pending_bytes,
            "validator": self.validator,
            "block_time_ms": chain.genesis().block_time_ms,
            "governance_mode": chain.genesis().governance.mode.as_str(),
            "upgrade_authority": chain.genesis().governance.upgrade_authority.to_string(),
            "upgrade_grace_until": match chain.query(Query::GraceUntil) {
                Ok(QueryResponse::GraceUntil(g)) => Some(g),
                _ => None,
            },
            "runtime": rpc::version_json(&rt.version, &rt.code_hash),
        })
    }

    /// Builds a block on `parent` from the pool (not the head until consensus says so).
    pub fn produce_on(
        &self,
        parent: &Hash,
        key: &Keypair,
        timestamp_ms: u64,
        with_transactions: bool,
    ) -> Result<ExecutedBlock, ChainError> {
        let budget = match self.read_chain().query_at(parent, Query::Parameters)? {
            QueryResponse::Parameters(p) => BlockBudget::of(&p),
            _ => BlockBudget {
                transactions: 0,
                bytes: 0,
            },
        };
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
        self.write_chain().set_shadow(shadow);
        // Executing needs shared access only, so admission and queries go on meanwhile; only
        // keeping the block takes the chain for itself.
        let built = self
            .read_chain()
            .build_on(parent, candidates, key, timestamp_ms)?;
        let (produced, report) = {
            let mut chain = self.write_chain();
            let produced = chain.keep_built(built)?;
            (produced, chain.take_shadow_report())
        };
        if let Some(report) = report {
            self.lock_readiness().record(&report);
        }
        self.lock_pool().prune(&[], &produced.rejected);
        Ok(produced)
    }

    /// Verifies and executes a block from a peer on its parent's state.
    pub fn execute(&self, block: vexidus_runtime_api::Block) -> Result<ExecutedBlock, ChainError> {
        let shadow = self.lock_readiness().compiled.clone();
        self.write_chain().set_shadow(shadow);
        // As in `produce_on`: checked and executed under shared access, kept under exclusive.
        let checked = self.read_chain().check_block(block)?;
        let (imported, report) = {
            let mut chain = self.write_chain();
            let imported = match checked {
                crate::chain::Checked::Known(executed) => *executed,
                crate::chain::Checked::Executed(built) => chain.keep_built(*built)?,
            };
            (imported, chain.take_shadow_report())
        };
        if let Some(report) = report {
            self.lock_readiness().record(&report);
        }
        Ok(imported)
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
                rpc::header_json(&block, hash),
                chain.canonical_tx_hashes(),
                retracted,
            )
        };
        {
            let chain = self.read_chain();
            let mut pool = self.lock_pool();
            pool.prune(&included, &[]);
            if !retracted.is_empty() {
                let back = retracted
                    .into_iter()
                    .map(|tx| pool.admit_decoded(&chain, tx))
                    .filter(Result::is_ok)
                    .count();
                tracing::info!(head = %rpc::hex0x(*hash), back, "head moved to another branch; its left-out transactions are back in the pool");
            }
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
            let _ = self.finalized.send(serde_json::json!({
                "hash": rpc::hex0x(b.hash),
                "height": b.block.header.height,
            }));
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
    /// pool holds) and pools the transaction.
    fn submit_own(
        &self,
        key: &Keypair,
        max_gas: u64,
        operations: Vec<vexidus_runtime_api::Operation>,
    ) -> Result<Hash, TxError> {
        let chain = self.read_chain();
        let me = key.public().address();
        let nonce = match chain.query(Query::Account(me))? {
            QueryResponse::Account(a) => a.nonce,
            other => {
                return Err(TxError::Node(ChainError::Runtime(format!(
                    "unexpected answer to an account query: {other:?}"
                ))));
            }
        };
        let mut pool = self.lock_pool();
        let tx = vexidus_runtime_api::Transaction {
            chain_id: chain.chain_id().into(),
            sender: key.public(),
            nonce: nonce + pool.pending_of(&me),
            max_gas,
            valid_until: chain.head().height + 100,
            operations,
        };
        pool.admit_decoded(&chain, key.sign_transaction(tx))
    }

    fn write_chain(&self) -> std::sync::RwLockWriteGuard<'_, Chain> {
        self.chain.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Opens the database and chain of a data directory.
pub fn open_chain(
    data_dir: &std::path::Path,
    genesis: Option<(&GenesisConfig, &[u8])>,
    implemented_upgrades: Vec<String>,
) -> anyhow::Result<Chain> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", data_dir.display()))?;
    let db = Arc::new(
        Db::open(&data_dir.join("db"))
            .map_err(|e| anyhow::anyhow!("cannot open database in {}: {e}", data_dir.display()))?,
    );
    let executor = Arc::new(Executor::new(Some(db.module_store())));
    let chain = match genesis {
        Some((g, code)) => Chain::open(db, executor, g, code, implemented_upgrades)?,
        None => Chain::open_existing(db, executor, implemented_upgrades).map_err(|e| {
            anyhow::anyhow!(
                "{e}: {} holds no chain; start with --dev or --genesis FILE",
                data_dir.display()
            )
        })?,
    };
    Ok(chain)
}

/// How the node stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeExit {
    /// Asked to stop.
    Stopped,
    /// Halted for a binary upgrade this binary does not implement; `upgrade-info.json` is at
    /// the path. The process should exit with [`vexidus_upgrade_contract::EXIT_CODE`].
    UpgradeHalt(PathBuf),
}

/// Writes `upgrade-info.json` for `halt` into `data_dir` (atomically; see
/// [`vexidus_upgrade_contract::write`]).
pub fn write_upgrade_info(
    data_dir: &std::path::Path,
    halt: &UpgradeHalt,
) -> std::io::Result<PathBuf> {
    vexidus_upgrade_contract::write(
        data_dir,
        &vexidus_upgrade_contract::RawUpgradeInfo::from(halt),
    )
}

/// The chain's failover unit: the one recorded in its database, else `requested` (from the
/// genesis file) or the SPEC's default, recorded now. A genesis file naming another unit than
/// the chain started with is refused.
fn chain_failover_base_ms(state: &NodeState, requested: Option<u64>) -> anyhow::Result<u64> {
    let db = state.read_chain().db().clone();
    match (db.failover_base_ms()?, requested) {
        (Some(kept), Some(asked)) if kept != asked => anyhow::bail!(
            "the chain in this data directory was started with a failover unit of {kept} ms; \
             the genesis file says {asked} ms"
        ),
        (Some(kept), _) => Ok(kept),
        (None, asked) => {
            let ms = asked.unwrap_or(vexidus_runtime_api::genesis_file::DEFAULT_FAILOVER_BASE_MS);
            db.put_failover_base_ms(ms)?;
            Ok(ms)
        }
    }
}

/// Runs the node until `shutdown` resolves or a binary upgrade halts it.
pub async fn run(
    config: NodeConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<NodeExit> {
    let chain = open_chain(
        &config.data_dir,
        config.genesis.as_ref().map(|g| (g, config.genesis_runtime)),
        config.implemented_upgrades.clone(),
    )?;
    let block_time = Duration::from_millis(chain.genesis().block_time_ms);
    let head = chain.head().clone();
    let is_validator = match &config.validator_key {
        Some(k) => matches!(
            chain.query(Query::Validator(k.public().address()))?,
            QueryResponse::Validator(Some(_))
        ),
        None => false,
    };
    tracing::info!(chain_id = %chain.chain_id(), height = head.height, runtime = ?chain.runtime().version, "chain opened");
    match crate::stm::pinned_cores() {
        Some(cpus) => tracing::info!(
            ?cpus,
            "Block-STM workers pinned one to a CPU (VEXIDUS_PIN_WORKERS=0 turns it off)"
        ),
        None => tracing::info!(
            threads = crate::stm::default_threads(),
            "Block-STM workers not pinned to CPUs"
        ),
    }
    let mut node_state = NodeState::new(chain, config.pool, config.validator_key.as_ref());
    if let (true, Some(key)) = (config.auto_vote_seed, &config.validator_key) {
        node_state = node_state.with_auto_vote(Keypair::from_seed(key.seed()));
    }
    let state = Arc::new(node_state);
    state.after_block();
    let (addr, rpc_handle) = rpc::start(config.rpc.clone(), state.clone()).await?;
    tracing::info!("JSON-RPC listening on http://{addr} (HTTP and WebSocket)");
    println!("vexidus-node: RPC on http://{addr}");

    let (inputs, input_rx) = crate::driver::input_queue();
    let (outbound, outbound_rx) = tokio::sync::mpsc::unbounded_channel();
    let network_task = match &config.p2p {
        None => None,
        Some(p2p) => {
            let network =
                vexidus_network::service::start(vexidus_network::service::NetworkConfig {
                    keypair: p2p_keypair(&config.data_dir)?,
                    listen: p2p.listen.clone(),
                    bootnodes: p2p.bootnodes.clone(),
                    max_messages_per_second: 1_000,
                    request_timeout: Duration::from_secs(10),
                    heartbeat: Duration::from_millis(500),
                    enforce_validator_allowlist: p2p.enforce_validator_allowlist,
                    max_peers: p2p.max_peers,
                    max_peers_per_ip: p2p.max_peers_per_ip,
                })
                .await?;
            for addr in &network.listen_addrs {
                let full = addr
                    .clone()
                    .with(libp2p::multiaddr::Protocol::P2p(network.peer_id));
                tracing::info!(%full, "peer-to-peer listening");
                println!("vexidus-node: P2P on {full}");
            }
            Some(tokio::spawn(crate::p2p::run(
                state.clone(),
                network,
                inputs.clone(),
                outbound_rx,
                config
                    .validator_key
                    .as_ref()
                    .map(|k| Keypair::from_seed(k.seed())),
                p2p.bootnodes.clone(),
            )))
        }
    };
    let _keep_inputs_open = inputs;

    match (&config.validator_key, is_validator) {
        (Some(key), true) => {
            tracing::info!(validator = %key.public(), block_time_ms = block_time.as_millis() as u64, "validating")
        }
        (Some(key), false) => {
            tracing::warn!(key = %key.public(), "the validator key is not a registered validator; following only")
        }
        (None, _) => {}
    }
    let mut consensus = config.consensus.clone();
    consensus.failover_base_ms = chain_failover_base_ms(&state, config.failover_base_ms)?;
    let driver = crate::driver::Driver::new(
        state.clone(),
        config
            .validator_key
            .as_ref()
            .map(|k| Keypair::from_seed(k.seed())),
        consensus,
        config.p2p.as_ref().map(|_| outbound),
    )?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (driver_done, mut driver_result) = tokio::sync::oneshot::channel();
    let driver_thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("consensus".into())
            .spawn(move || {
                let _ = driver_done.send(driver.run(input_rx, stop));
            })?
    };

    let network_done = async {
        match network_task {
            Some(t) => {
                let _ = t.await;
            }
            None => std::future::pending().await,
        }
    };
    let outcome: anyhow::Result<Option<UpgradeHalt>> = tokio::select! {
        // The driver's outcome first: a halt must never be reported as anything else.
        biased;
        _ = shutdown => Ok(None),
        r = &mut driver_result => match r {
            Ok(Ok(halt @ Some(_))) => Ok(halt),
            Ok(Ok(None)) => Err(anyhow::anyhow!("the consensus driver stopped")),
            Ok(Err(e)) => Err(anyhow::Error::from(e)),
            Err(_) => Err(anyhow::anyhow!("the consensus driver failed")),
        },
        _ = network_done => Err(anyhow::anyhow!("the network task stopped")),
    };
    tracing::info!("shutting down");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = tokio::task::spawn_blocking(move || driver_thread.join()).await;
    let _ = rpc_handle.stop();
    // Wait for an in-flight block to finish committing before the database closes.
    drop(state.chain.write());
    match outcome? {
        None => Ok(NodeExit::Stopped),
        Some(halt) => {
            let path = write_upgrade_info(&config.data_dir, &halt)?;
            tracing::warn!(
                plan = %halt.name,
                height = halt.height,
                info = %path.display(),
                "halting for binary upgrade: block {} was not executed; exiting with code {}",
                halt.height,
                vexidus_upgrade_contract::EXIT_CODE
            );
            Ok(NodeExit::UpgradeHalt(path))
        }
    }
}
