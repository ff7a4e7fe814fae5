//! `vexidus localnet`: a network of validators on loopback for development and tests.
//!
//! The first run writes `<home>/genesis.json`, one validator key per node
//! (`<home>/node<i>/validator.key`, unequal stakes) and `<home>/localnet.json` (ports, keys);
//! later runs with the same home continue that network. Each node gets its own data directory,
//! RPC port and QUIC port, and dials all the others. With `--supervised` each node runs under
//! `vexvisor` (home `<home>/node<i>`: binaries in `vexvisor/`, data in `data/`), so binary
//! upgrades go through as in production.
//! Ctrl-C (or SIGTERM) stops every node and waits for them.

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use vexidus_runtime_api::NANO_PER_VXS;
use vexidus_runtime_api::genesis_file::{BalanceEntry, GenesisFile, ValidatorEntry};
use vexidus_runtime_api::signing::Keypair;

/// `vexidus localnet` flags.
#[derive(Args, Debug)]
pub struct LocalnetArgs {
    /// Number of validators (1 to 16).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub validators: u16,
    /// Directory of the network: genesis, keys, data directories, logs.
    #[arg(long)]
    pub home: PathBuf,
    /// Run each node under `vexvisor` (binary upgrades are carried out and rolled back).
    #[arg(long)]
    pub supervised: bool,
    /// Block time in seconds of a new network.
    #[arg(long, default_value_t = 1.0)]
    pub block_time: f64,
    /// Stakes in VXS of a new network, comma-separated, one per validator (default: unequal,
    /// (2N − i) × 10 000 for validator i, so no single validator holds a third).
    #[arg(long, value_delimiter = ',')]
    pub stakes: Vec<u64>,
    /// Grace period after an upgrade, in blocks (a new network; default: the parameter's).
    #[arg(long)]
    pub upgrade_grace: Option<u64>,
    /// Least lead of an upgrade's target height, in blocks (a new network).
    #[arg(long)]
    pub upgrade_min_lead: Option<u64>,
    /// First RPC port; node i listens on this + i.
    #[arg(long, default_value_t = 9933)]
    pub rpc_port: u16,
    /// First QUIC port; node i listens on this + i.
    #[arg(long, default_value_t = 30333)]
    pub p2p_port: u16,
    /// Failover unit in milliseconds, written into the genesis file (SPEC: 1000).
    #[arg(long, default_value_t = 1_000)]
    pub failover_base_ms: u64,
    /// The node binary (default: `vexidus-node` next to this executable).
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// The supervisor binary (default: `vexvisor` next to this executable).
    #[arg(long)]
    pub vexvisor_bin: Option<PathBuf>,
    /// Extra flag for every node (repeatable), e.g. `--node-arg=--auto-vote-seed`.
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    pub node_args: Vec<String>,
    /// Extra flag for node I only, as `I:FLAG` (repeatable), e.g. `1:--test-fault=double-sign`.
    #[arg(long = "node-arg-for", allow_hyphen_values = true)]
    pub node_args_for: Vec<String>,
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// One node of the network.
struct Node {
    index: usize,
    key: Keypair,
    dir: PathBuf,
    rpc: String,
    p2p: String,
}

/// Creates the network's files unless they exist; returns its nodes.
fn prepare(a: &LocalnetArgs) -> Result<Vec<Node>> {
    let n = usize::from(a.validators);
    std::fs::create_dir_all(&a.home)
        .with_context(|| format!("cannot create {}", a.home.display()))?;
    let genesis_path = a.home.join("genesis.json");
    let mut nodes = Vec::with_capacity(n);
    let fresh = !genesis_path.exists();
    for i in 0..n {
        let dir = a.home.join(format!("node{i}"));
        std::fs::create_dir_all(&dir)?;
        let key_path = dir.join("validator.key");
        let key = if key_path.exists() {
            vexidus_runtime_api::key_file::read(&key_path)?
        } else {
            ensure!(
                fresh,
                "{} exists but {} does not: this home holds a network of fewer validators",
                genesis_path.display(),
                key_path.display()
            );
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
            let key = Keypair::from_seed(seed);
            vexidus_runtime_api::key_file::write(&key_path, &key, false)?;
            key
        };
        let rpc_port = a.rpc_port.checked_add(i as u16).context("RPC port range")?;
        let p2p_port = a.p2p_port.checked_add(i as u16).context("P2P port range")?;
        nodes.push(Node {
            index: i,
            key,
            dir,
            rpc: format!("127.0.0.1:{rpc_port}"),
            p2p: format!("/ip4/127.0.0.1/udp/{p2p_port}/quic-v1"),
        });
    }
    if fresh {
        ensure!(
            a.stakes.is_empty() || a.stakes.len() == n,
            "--stakes lists {} stakes for {n} validators",
            a.stakes.len()
        );
        if !(a.block_time > 0.0 && a.block_time <= 3600.0) {
            bail!(
                "--block-time must be between 0 and 3600 seconds, got {}",
                a.block_time
            );
        }
        let stake_of = |i: usize| -> u128 {
            let vxs = a
                .stakes
                .get(i)
                .copied()
                .unwrap_or(((2 * n - i) * 10_000) as u64);
            u128::from(vxs) * NANO_PER_VXS
        };
        let mut parameters = vexidus_runtime_api::Parameters::default();
        if let Some(g) = a.upgrade_grace {
            parameters.upgrade_grace_blocks = g;
        }
        if let Some(l) = a.upgrade_min_lead {
            parameters.upgrade_min_lead_blocks = l;
        }
        let file = GenesisFile {
            chain_id: "vexidus-localnet".into(),
            block_time_ms: (a.block_time * 1000.0).round().max(1.0) as u64,
            balances: nodes
                .iter()
                .map(|nd| BalanceEntry {
                    address: nd.key.public().address().to_string(),
                    amount: 1_000_000 * NANO_PER_VXS,
                })
                .collect(),
            validators: nodes
                .iter()
                .map(|nd| ValidatorEntry {
                    public_key: nd.key.public().to_string(),
                    stake: stake_of(nd.index),
                    commission_bps: 500,
                })
                .collect(),
            governance_mode: "seed-authority".into(),
            upgrade_authority: nodes[0].key.public().to_string(),
            parameters,
            failover_base_ms: a.failover_base_ms,
            runtime_spec_version: None,
        };
        file.clone()
            .into_config()
            .map_err(|e| anyhow::anyhow!("genesis: {e}"))?;
        std::fs::write(
            &genesis_path,
            format!("{}\n", serde_json::to_string_pretty(&file)?),
        )?;
    }
    let description = json!({
        "genesis": genesis_path.display().to_string(),
        "nodes": nodes.iter().map(|nd| json!({
            "index": nd.index,
            "rpc": format!("http://{}", nd.rpc),
            "p2p": nd.p2p,
            "public_key": nd.key.public().to_string(),
            "address": nd.key.public().address().to_string(),
            "key_file": nd.dir.join("validator.key").display().to_string(),
            "data_dir": nd.dir.join("data").display().to_string(),
            "log": nd.dir.join("node.log").display().to_string(),
        })).collect::<Vec<Value>>(),
    });
    std::fs::write(
        a.home.join("localnet.json"),
        format!("{}\n", serde_json::to_string_pretty(&description)?),
    )?;
    Ok(nodes)
}

/// The node flags of node `nd`.
fn node_flags(a: &LocalnetArgs, nodes: &[Node], nd: &Node) -> Result<Vec<String>> {
    let mut flags = vec![
        "--genesis".into(),
        a.home.join("genesis.json").display().to_string(),
        "--data-dir".into(),
        nd.dir.join("data").display().to_string(),
        "--validator-key".into(),
        nd.dir.join("validator.key").display().to_string(),
        "--rpc-addr".into(),
        nd.rpc.clone(),
        "--p2p-addr".into(),
        nd.p2p.clone(),
    ];
    let others: Vec<&str> = nodes
        .iter()
        .filter(|o| o.index != nd.index)
        .map(|o| o.p2p.as_str())
        .collect();
    if !others.is_empty() {
        flags.push("--bootnodes".into());
        flags.push(others.join(","));
    }
    flags.extend(a.node_args.iter().cloned());
    for f in &a.node_args_for {
        let (i, flag) = f
            .split_once(':')
            .with_context(|| format!("--node-arg-for {f:?}: expected I:FLAG"))?;
        let i: usize = i
            .parse()
            .with_context(|| format!("--node-arg-for {f:?}: node index"))?;
        ensure!(
            i < nodes.len(),
            "--node-arg-for {f:?}: there are {} nodes",
            nodes.len()
        );
        if i == nd.index {
            flags.push(flag.to_string());
        }
    }
    Ok(flags)
}

fn spawn(a: &LocalnetArgs, nodes: &[Node], nd: &Node) -> Result<Child> {
    let node_bin = a
        .node_bin
        .clone()
        .unwrap_or_else(|| sibling("vexidus-node"));
    let flags = node_flags(a, nodes, nd)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(nd.dir.join("node.log"))?;
    let mut cmd = if a.supervised {
        let vexvisor = a
            .vexvisor_bin
            .clone()
            .unwrap_or_else(|| sibling("vexvisor"));
        // The node directory is the supervisor's home: the binaries under `vexvisor/`, the
        // node's data in `data/`.
        let home = nd.dir.clone();
        if !home.join("vexvisor/current/vexidus-node").exists() {
            let out = Command::new(&vexvisor)
                .args(["init", "--home"])
                .arg(&home)
                .arg("--binary")
                .arg(&node_bin)
                .output()
                .with_context(|| format!("cannot run {}", vexvisor.display()))?;
            ensure!(
                out.status.success(),
                "vexvisor init for node {}: {}",
                nd.index,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut c = Command::new(&vexvisor);
        c.args(["run", "--home"]).arg(&home).arg("--").args(&flags);
        c
    } else {
        let mut c = Command::new(&node_bin);
        c.args(&flags);
        c
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // Nodes must not outlive a localnet that is killed outright.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let argv: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start node {}", nd.index))?;
    // How to start this node again by hand (or from a test), and which process it is.
    std::fs::write(
        nd.dir.join("command.json"),
        serde_json::to_string_pretty(&argv)?,
    )?;
    std::fs::write(nd.dir.join("pid"), child.id().to_string())?;
    Ok(child)
}

/// Runs the network until Ctrl-C or SIGTERM.
pub fn run(a: LocalnetArgs) -> Result<()> {
    let nodes = prepare(&a)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("signal handler")?;
    }
    let (lines, rx) = mpsc::channel::<(usize, String)>();
    let mut children = Vec::new();
    for nd in &nodes {
        let mut child = spawn(&a, &nodes, nd)?;
        let stdout = child.stdout.take().context("stdout")?;
        let tx = lines.clone();
        let i = nd.index;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send((i, line));
            }
        });
        children.push(child);
    }
    println!(
        "localnet: {} validators in {}{}",
        nodes.len(),
        a.home.display(),
        if a.supervised {
            " (each under vexvisor)"
        } else {
            ""
        }
    );
    for nd in &nodes {
        println!(
            "node {}: rpc http://{}  p2p {}  validator {}  log {}",
            nd.index,
            nd.rpc,
            nd.p2p,
            nd.key.public(),
            nd.dir.join("node.log").display()
        );
    }
    let started = Instant::now();
    let mut exited = vec![false; children.len()];
    while !stop.load(Ordering::SeqCst) {
        while let Ok((i, line)) = rx.try_recv() {
            println!("node {i}: {line}");
        }
        for (i, c) in children.iter_mut().enumerate() {
            if !exited[i]
                && let Ok(Some(status)) = c.try_wait()
            {
                exited[i] = true;
                println!("node {i}: exited ({status}); see its log");
            }
        }
        if exited.iter().all(|e| *e) && started.elapsed() > Duration::from_secs(1) {
            bail!("every node exited");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("localnet: stopping {} nodes", children.len());
    for c in &children {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    for (i, c) in children.iter_mut().enumerate() {
        let status = c.wait()?;
        println!("node {i}: stopped ({status})");
    }
    Ok(())
}

/// The node directory of node `i` in a localnet home (for tests and scripts).
pub fn node_dir(home: &Path, i: usize) -> PathBuf {
    home.join(format!("node{i}"))
}
