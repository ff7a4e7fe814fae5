//! The node service: opens the chain, starts RPC, the network and the consensus driver around
//! the shared [`NodeState`], and stops them in order.

use crate::rpc::{self, RpcConfig};
use crate::state::NodeState;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use vexidus_chain::Chain;
use vexidus_executor::Executor;
use vexidus_runtime_api::GenesisConfig;
use vexidus_runtime_api::abi::UpgradeHalt;
use vexidus_runtime_api::queries;
use vexidus_runtime_api::signing::Keypair;
use vexidus_storage::Db;

/// Everything the node needs to start.
pub struct NodeConfig {
    /// Data directory; the database lives in `<data_dir>/db`.
    pub data_dir: PathBuf,
    /// The chain to start or continue. `None`: continue the chain stored in the data directory.
    pub genesis: Option<GenesisConfig>,
    /// The runtime blob a new chain starts on (see [`vexidus_genesis::genesis_runtime`]).
    pub genesis_runtime: &'static [u8],
    /// The validator key; without one the node produces no blocks.
    pub validator_key: Option<Keypair>,
    /// RPC settings.
    pub rpc: RpcConfig,
    /// Upgrade names this binary implements.
    pub implemented_upgrades: Vec<String>,
    /// The pool's budgets.
    pub pool: vexidus_pool::PoolLimits,
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
        Some(k) => chain
            .query(queries::Validator(k.public().address()))?
            .is_some(),
        None => false,
    };
    tracing::info!(chain_id = %chain.chain_id(), height = head.height, runtime = ?chain.runtime().version, "chain opened");
    match vexidus_chain::stm::pinned_cores() {
        Some(cpus) => tracing::info!(
            ?cpus,
            "Block-STM workers pinned one to a CPU (VEXIDUS_PIN_WORKERS=0 turns it off)"
        ),
        None => tracing::info!(
            threads = vexidus_chain::stm::default_threads(),
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
    state.wait_for_commit();
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
