//! `vexidus-node`: the Vexidus validator daemon. `main` only parses flags, sets up logging and
//! maps errors to exit codes; the work lives in the `vexidus_node` library.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use vexidus_node::node::{self, NodeConfig};
use vexidus_node::rpc::RpcConfig;
use vexidus_runtime_api::signing::{Keypair, dev_seed};

#[derive(Parser, Debug)]
#[command(name = "vexidus-node", version, long_version = long_version(), about = "The Vexidus validator node")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Start (or continue) a single-validator development chain: the well-known dev key is the
    /// validator and upgrade authority, dev accounts are funded, blocks every second.
    #[arg(long)]
    dev: bool,
    /// Data directory (database, upgrade-info.json).
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// Genesis file (JSON) of the chain to start.
    #[arg(long, conflicts_with = "dev")]
    genesis: Option<PathBuf>,
    /// Key file of this node's validator key.
    #[arg(long)]
    validator_key: Option<PathBuf>,
    /// JSON-RPC listen address (HTTP and WebSocket).
    #[arg(long, default_value = "127.0.0.1:9933")]
    rpc_addr: SocketAddr,
    /// Block time in seconds for a new --dev chain (a genesis setting; fractions allowed).
    #[arg(long, requires = "dev")]
    block_time: Option<f64>,
    /// JSON-RPC requests per second allowed per client IP.
    #[arg(long, default_value_t = 100)]
    rpc_rate_limit: u32,
    /// Largest JSON-RPC request body in bytes. The default carries the largest transaction a
    /// block may hold (7 MiB) as hex with room for the JSON around it.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    rpc_max_request_bytes: u32,
    /// Most calls in one JSON-RPC batch; a longer batch is refused before its calls are parsed.
    #[arg(long, default_value_t = 100)]
    rpc_max_batch_len: u32,
    /// Approve every upgrade plan open for votes with the validator key (automated testnets).
    #[arg(long)]
    auto_vote_seed: bool,
    /// Most pending transactions kept in the pool.
    #[arg(long, default_value_t = 100_000)]
    pool_capacity: usize,
    /// Most bytes of pending transactions kept in the pool (encoded); when full, the sender
    /// holding the most loses its highest nonces to make room for others.
    #[arg(long, default_value_t = 128 << 20)]
    pool_max_bytes: usize,
    /// Most pending transactions of one sender.
    #[arg(long, default_value_t = 256)]
    pool_max_per_sender: usize,
    /// Peer-to-peer listen address (QUIC multiaddr), e.g. /ip4/0.0.0.0/udp/30333/quic-v1.
    /// Without it the node does not join a network.
    #[arg(long, value_name = "MULTIADDR")]
    p2p_addr: Option<libp2p::Multiaddr>,
    /// Peers to dial at start, comma-separated multiaddrs ending in `/p2p/<peer id>`.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "MULTIADDR,…",
        requires = "p2p_addr"
    )]
    bootnodes: Vec<libp2p::Multiaddr>,
    /// Accept gossiped blocks only from peers that proved a registered validator key.
    #[arg(long, requires = "p2p_addr")]
    enforce_validator_allowlist: bool,
    /// Most peer connections at once, inbound and outbound.
    #[arg(long, default_value_t = vexidus_network::service::DEFAULT_MAX_PEERS, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_peers: u32,
    /// Most inbound peer connections from one IP address.
    #[arg(long, default_value_t = vexidus_network::service::DEFAULT_MAX_PEERS_PER_IP, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_peers_per_ip: u32,
    /// How often, in milliseconds, a validator re-sends its votes above the last irreversible
    /// block (votes lost to a partition or restart are made good).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    vote_rebroadcast_ms: u64,
    /// TEST ONLY: misbehave on purpose (`double-sign`: produce two blocks per height;
    /// `skip-failover-delay`: produce as a backup without waiting for the failover delay).
    #[arg(long, hide = true, value_parser = ["double-sign", "skip-failover-delay"])]
    test_fault: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Re-executes every stored block from genesis into an empty database and checks that every
    /// state root comes out the same (the determinism audit).
    Replay {
        /// Data directory of the chain to replay (the node must not be running on it).
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Empty directory to replay into.
        #[arg(long)]
        into: PathBuf,
    },
    /// Recomputes the state root from every stored key-value pair and compares it with the
    /// stored accumulator and the last irreversible block (the state the database holds).
    CheckState {
        /// Data directory.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
}

#[global_allocator]
static ALLOCATOR: vexidus_node::allocator::MiMalloc = vexidus_node::allocator::MiMalloc;

fn long_version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let upgrades = vexidus_node::implemented_upgrades();
        format!(
            "{}\ngenesis runtime: 0x{}\nsource digest: {}\nimplemented upgrades: {}",
            env!("CARGO_PKG_VERSION"),
            hex::encode(blake3::hash(vexidus_genesis::GENESIS_RUNTIME).as_bytes()),
            env!("VEXIDUS_SOURCE_DIGEST"),
            if upgrades.is_empty() {
                "none".to_string()
            } else {
                upgrades.join(",")
            }
        )
    })
}

fn main() {
    vexidus_node::allocator::keep_freed_memory_between_blocks();
    let cli = Cli::parse();
    vexidus_node::logging::init();
    let result = match cli.command {
        Some(Command::Replay {
            ref data_dir,
            ref into,
        }) => replay(data_dir, into),
        Some(Command::CheckState { ref data_dir }) => check_state(data_dir),
        None => run(cli),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut failover_base_ms = None;
    let mut genesis_runtime = vexidus_genesis::GENESIS_RUNTIME;
    let genesis = if cli.dev {
        let mut g = vexidus_genesis::dev_genesis();
        if let Some(secs) = cli.block_time {
            if !(secs > 0.0 && secs <= 3600.0) {
                bail!("--block-time must be between 0 and 3600 seconds, got {secs}");
            }
            g.block_time_ms = (secs * 1000.0).round().max(1.0) as u64;
        }
        Some(g)
    } else if let Some(path) = &cli.genesis {
        let file = vexidus_genesis::GenesisFile::read(path).map_err(anyhow::Error::msg)?;
        failover_base_ms = Some(file.failover_base_ms);
        genesis_runtime = vexidus_genesis::genesis_runtime(file.runtime_spec_version)
            .map_err(|e| anyhow::anyhow!("genesis file {}: {e}", path.display()))?;
        // Today's parameter bounds apply to a new chain; an existing one is compared with the
        // genesis it stored (its parameters may predate a runtime upgrade that narrowed them).
        let existing = cli.data_dir.join("db").join("CURRENT").exists();
        let config = if existing {
            file.into_config_as_started()
        } else {
            file.into_config()
        };
        Some(config.map_err(|e| anyhow::anyhow!("genesis file {}: {e}", path.display()))?)
    } else {
        None
    };
    let validator_key = match (&cli.validator_key, cli.dev) {
        (Some(path), _) => Some(vexidus_runtime_api::key_file::read(path)?),
        (None, true) => Some(Keypair::from_seed(dev_seed())),
        (None, false) => None,
    };
    let config = NodeConfig {
        data_dir: cli.data_dir,
        genesis,
        genesis_runtime,
        validator_key,
        rpc: RpcConfig {
            addr: cli.rpc_addr,
            rate_limit: cli.rpc_rate_limit,
            max_request_bytes: cli.rpc_max_request_bytes,
            max_batch_len: cli.rpc_max_batch_len,
        },
        implemented_upgrades: vexidus_node::implemented_upgrades(),
        pool: vexidus_pool::PoolLimits {
            max_transactions: cli.pool_capacity,
            max_bytes: cli.pool_max_bytes,
            max_per_sender: cli.pool_max_per_sender,
            check_funds: true,
        },
        auto_vote_seed: cli.auto_vote_seed,
        p2p: cli.p2p_addr.map(|listen| vexidus_node::node::P2pSettings {
            listen,
            bootnodes: cli.bootnodes,
            enforce_validator_allowlist: cli.enforce_validator_allowlist,
            max_peers: cli.max_peers,
            max_peers_per_ip: cli.max_peers_per_ip,
        }),
        consensus: vexidus_node::driver::ConsensusSettings {
            failover_base_ms: vexidus_runtime_api::genesis_file::DEFAULT_FAILOVER_BASE_MS,
            rebroadcast_ms: cli.vote_rebroadcast_ms,
            fault: cli.test_fault.as_deref().map(|f| match f {
                "skip-failover-delay" => vexidus_node::driver::Fault::SkipFailoverDelay,
                _ => vexidus_node::driver::Fault::DoubleSign,
            }),
        },
        failover_base_ms,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(node::run(config, shutdown_signal()))? {
        node::NodeExit::Stopped => Ok(()),
        node::NodeExit::UpgradeHalt(info) => {
            eprintln!(
                "vexidus-node: halted for a binary upgrade; {} describes it. Exiting with code {}.",
                info.display(),
                vexidus_upgrade_contract::EXIT_CODE
            );
            // Drop the runtime (and with it the database) before exiting.
            drop(runtime);
            std::process::exit(vexidus_upgrade_contract::EXIT_CODE);
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn replay(data_dir: &Path, into: &Path) -> anyhow::Result<()> {
    let source = node::open_chain(data_dir, None, Vec::new())?;
    if into.exists() && std::fs::read_dir(into)?.next().is_some() {
        bail!(
            "{} is not empty; replay needs an empty directory",
            into.display()
        );
    }
    let src_db = source.db().clone();
    let genesis = source.genesis().clone();
    let code = src_db
        .genesis_code()?
        .context("the source database has no genesis runtime")?;
    std::fs::create_dir_all(into)?;
    let mut db = vexidus_storage::Db::open(&into.join("db"))?;
    db.set_sync_writes(false);
    let db = std::sync::Arc::new(db);
    let executor = std::sync::Arc::new(vexidus_executor::Executor::new(Some(db.module_store())));
    let mut target = vexidus_chain::Chain::open(db, executor, &genesis, &code, Vec::new())?;
    if target.head().hash != src_db.hash_at(0)?.context("source has no genesis block")? {
        bail!(
            "genesis block differs: state root {} vs stored",
            hex::encode(target.head().state_root)
        );
    }
    // The stored chain: the blocks up to the last irreversible one.
    let head = source.finalized().height;
    let started = std::time::Instant::now();
    for h in 1..=head {
        let block = src_db
            .block_at(h)?
            .with_context(|| format!("block {h} missing from the source"))?;
        let expected = block.header.state_root;
        let executed = target
            .import_block(block)
            .with_context(|| format!("replaying block {h}"))?;
        if executed.block.header.state_root != expected {
            bail!("state root differs at height {h}");
        }
    }
    println!(
        "replayed {head} blocks in {:.2}s: every state root matches; head {} state root 0x{}",
        started.elapsed().as_secs_f64(),
        head,
        hex::encode(target.head().state_root)
    );
    Ok(())
}

fn check_state(data_dir: &Path) -> anyhow::Result<()> {
    let chain = node::open_chain(data_dir, None, Vec::new())?;
    let db = chain.db();
    let stored = db.lthash()?;
    let recomputed = db.recompute_lthash()?;
    // The database holds the state of the last irreversible block.
    let head = chain.finalized();
    let header_root = db
        .block(&head.hash)?
        .context("head block missing")?
        .header
        .state_root;
    let report = serde_json::json!({
        "height": head.height,
        "head_state_root": format!("0x{}", hex::encode(head.state_root)),
        "header_state_root": format!("0x{}", hex::encode(header_root)),
        "stored_accumulator_root": format!("0x{}", hex::encode(stored.root())),
        "recomputed_root": format!("0x{}", hex::encode(recomputed.root())),
    });
    println!("{report}");
    if stored != recomputed
        || head.state_root != recomputed.root()
        || header_root != head.state_root
    {
        bail!("state root mismatch: the stored state does not match its root");
    }
    Ok(())
}
