//! Benchmark: end-to-end throughput and inclusion latency of a node fed pre-signed transfers
//! over JSON-RPC, the load generator on the same machine.
//!
//! A single-validator chain (the dev validator key) whose genesis funds `--accounts` accounts
//! runs as a real `vexidus-node` process on loopback, on RocksDB in a temporary directory. The
//! generator signs every transfer before the clock starts (sender `j mod accounts`, nonce
//! `j / accounts`, each to its own recipient), then:
//!
//! 1. **saturation**: submits batches through `vex_submitTransactions` whenever fewer than
//!    `--window` of its transfers wait for inclusion, for `--seconds`: the committed transfers
//!    per second in the steady part (after a 2 s ramp) are the node's sustained throughput;
//! 2. **half load**: submits at half that rate, paced, for `--seconds`: inclusion latency
//!    without queueing.
//!
//! It follows the chain with `vex_getBlock(height, false)` (hashes only); a transfer's inclusion
//! latency is its block's timestamp minus the moment its batch was sent. The baseline, measured
//! in the same run before the node starts, is the node's signature verifier on this machine
//! (`sigcheck::verify_all`, batches on every core): no node can commit transfers faster than it
//! verifies their signatures, so throughput is reported as a fraction of that limit.
//!
//! ```sh
//! cargo build --release --bins
//! target/release/bench-load [--accounts 60000] [--seconds 15] [--batch 1000] [--window 40000]
//!     [--connections 2] [--block-time 0.5] [--max-block-txs 20000] [--node-log PATH]
//! ```

#![forbid(unsafe_code)]

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vexidus_bench::bench_key;
use vexidus_cli::RpcClient;
use vexidus_runtime_api::genesis_file::GenesisFile;
use vexidus_runtime_api::signing::{Keypair, dev_seed, transaction_hash};
use vexidus_runtime_api::transaction::{Operation, Transaction};
use vexidus_runtime_api::{Address, NANO_PER_VXS, SignedTransaction};
use vexidus_tests::Node;
use vexidus_tests::flags;

/// End to end over JSON-RPC: pre-signed transfers against a real node, committed transfers per
/// second and inclusion latency, against the node's own signature verifier.
#[derive(clap::Parser)]
#[command(name = "bench-load")]
struct Args {
    /// Funded accounts, each sending in turn.
    #[arg(long, value_name = "N", default_value_t = 60_000)]
    accounts: usize,
    /// HTTP connections submitting batches.
    #[arg(long, value_name = "N", default_value_t = 2)]
    connections: usize,
    /// Seconds per phase.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 15.0,
        allow_negative_numbers = true
    )]
    seconds: f64,
    /// Transfers per `vex_submitTransactions` call.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    batch: usize,
    /// Saturation keeps at most this many transfers waiting.
    #[arg(long, value_name = "N", default_value_t = 40_000)]
    window: usize,
    /// The node's block time, in seconds.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 0.5,
        allow_negative_numbers = true
    )]
    block_time: f64,
    /// Most transfers in one block.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    max_block_txs: u32,
    /// Where to copy the node's log when done (the node's data directory is temporary).
    #[arg(long, value_name = "PATH")]
    node_log: Option<std::path::PathBuf>,
}

/// The flags after the program's name; `None` for `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Args>> {
    let Some(a) = flags::parse::<Args>(args)? else {
        return Ok(None);
    };
    ensure!(
        a.accounts > 0 && a.batch > 0 && a.connections > 0,
        "--accounts, --batch and --connections must be at least 1"
    );
    ensure!(
        a.window >= a.batch,
        "--window ({}) must be at least --batch ({})",
        a.window,
        a.batch
    );
    ensure!(
        a.batch <= vexidus_node::rpc::MAX_BATCH_TRANSACTIONS,
        "--batch {} is more than a request may carry ({})",
        a.batch,
        vexidus_node::rpc::MAX_BATCH_TRANSACTIONS
    );
    ensure!(
        a.seconds > 0.0 && a.block_time > 0.0,
        "--seconds and --block-time must be positive"
    );
    Ok(Some(a))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A pre-signed transfer: its hash (as the node prints it) and its wire form.
struct Prepared {
    hash: String,
    hex: String,
}

fn sign_all(
    chain_id: &str,
    accounts: usize,
    count: usize,
) -> (Vec<Prepared>, Vec<SignedTransaction>) {
    let keys: Vec<Keypair> = (0..accounts).map(bench_key).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = count.div_ceil(threads);
    let mut sample = Vec::new();
    let parts: Vec<Vec<(Prepared, Option<SignedTransaction>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let keys = &keys;
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(count))
                        .map(|j| {
                            let key = &keys[j % accounts];
                            let tx = key.sign_transaction(Transaction {
                                chain_id: chain_id.into(),
                                sender: key.public(),
                                nonce: (j / accounts) as u64,
                                max_gas: 21_000,
                                valid_until: u64::MAX,
                                operations: vec![Operation::Transfer {
                                    to: Address(
                                        *blake3::hash(&(j as u64).to_le_bytes()).as_bytes(),
                                    ),
                                    amount: 1_000,
                                }],
                            });
                            let prepared = Prepared {
                                hash: format!("0x{}", hex::encode(transaction_hash(&tx))),
                                hex: format!(
                                    "0x{}",
                                    hex::encode(borsh::to_vec(&tx).expect("encodes"))
                                ),
                            };
                            (prepared, (j < 20_000).then_some(tx))
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("signer"))
            .collect()
    });
    let mut prepared = Vec::with_capacity(count);
    for part in parts {
        for (p, tx) in part {
            prepared.push(p);
            sample.extend(tx);
        }
    }
    (prepared, sample)
}

/// CPU seconds (user + system) a process has used, from `/proc`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

struct Phase {
    name: &'static str,
    offered: Option<f64>,
    committed_per_s: f64,
    included: usize,
    refused: usize,
    p50_ms: u64,
    p99_ms: u64,
    node_cores: f64,
    generator_cores: f64,
}

/// Submits `txs` (from `next`) for `seconds`, closed-loop under `window` or paced at `rate`,
/// and follows the chain until they are all included (or 20 s pass).
fn phase(
    name: &'static str,
    node: &Node,
    txs: &[Prepared],
    next: &mut usize,
    args: &Args,
    rate: Option<f64>,
) -> Result<Phase> {
    let client = node.client();
    let start_height = client.call("vex_getStatus", json!([]))?["height"]
        .as_u64()
        .context("status height")?;
    let submitted: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let included = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // (block timestamp, our transfers in it), and (submit time, latency) per transfer.
    type Seen = (Vec<(u64, usize)>, Vec<(u64, u64)>);
    let follower = {
        let (submitted, included, stop) = (submitted.clone(), included.clone(), stop.clone());
        let client = RpcClient::new(&node.url);
        std::thread::spawn(move || -> Result<Seen> {
            let (mut blocks, mut latencies) = (Vec::new(), Vec::new());
            let mut height = start_height + 1;
            let mut drain_deadline = None;
            loop {
                if stop.load(Ordering::SeqCst) {
                    let deadline =
                        *drain_deadline.get_or_insert(Instant::now() + Duration::from_secs(20));
                    if submitted.lock().expect("lock").is_empty() || Instant::now() > deadline {
                        return Ok((blocks, latencies));
                    }
                }
                let b = client.call("vex_getBlock", json!([height, false]))?;
                if b.is_null() {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                let ts = b["timestamp_ms"].as_u64().context("timestamp")?;
                let mut ours = 0;
                let mut pending = submitted.lock().expect("lock");
                for h in b["transactions"].as_array().context("hashes")? {
                    if let Some(at) = h.as_str().and_then(|h| pending.remove(h)) {
                        latencies.push((at, ts.saturating_sub(at)));
                        ours += 1;
                    }
                }
                drop(pending);
                included.fetch_add(ours, Ordering::SeqCst);
                blocks.push((ts, ours));
                height += 1;
            }
        })
    };

    let node_cpu_before = node.pid().and_then(cpu_seconds);
    let own_cpu_before = cpu_seconds(std::process::id());
    let t0 = Instant::now();
    let t0_ms = now_ms();
    let duration = Duration::from_secs_f64(args.seconds);
    // `--connections` submitters take batches in order from one cursor, each over its own
    // HTTP connection, so the node's batch verification and admission overlap.
    let cursor = AtomicUsize::new(*next);
    let sent = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let first_refusal: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..args.connections)
            .map(|_| {
                let (cursor, sent, refused, first_refusal) =
                    (&cursor, &sent, &refused, &first_refusal);
                let (submitted, included) = (&submitted, &included);
                let client = RpcClient::new(&node.url);
                scope.spawn(move || -> Result<()> {
                    while t0.elapsed() < duration {
                        if let Some(r) = rate {
                            let due = t0
                                + Duration::from_secs_f64(sent.load(Ordering::SeqCst) as f64 / r);
                            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                        } else {
                            while sent.load(Ordering::SeqCst) - included.load(Ordering::SeqCst)
                                > args.window.saturating_sub(args.batch)
                                && t0.elapsed() < duration
                            {
                                std::thread::sleep(Duration::from_millis(2));
                            }
                        }
                        // The deadline is checked before a batch is taken: a batch taken and
                        // not sent would leave its senders' nonces out, and the next phase's
                        // transfers of those senders would be refused as future nonces.
                        if t0.elapsed() >= duration {
                            break;
                        }
                        let start = cursor.fetch_add(args.batch, Ordering::SeqCst);
                        if start >= txs.len() {
                            break;
                        }
                        let batch = &txs[start..(start + args.batch).min(txs.len())];
                        sent.fetch_add(batch.len(), Ordering::SeqCst);
                        let at = now_ms();
                        {
                            let mut pending = submitted.lock().expect("lock");
                            for t in batch {
                                pending.insert(t.hash.clone(), at);
                            }
                        }
                        let hexes: Vec<&str> = batch.iter().map(|t| t.hex.as_str()).collect();
                        let results = client.call("vex_submitTransactions", json!([hexes]))?;
                        for (t, r) in batch.iter().zip(results.as_array().context("results")?) {
                            if let Some(e) = r.get("error") {
                                refused.fetch_add(1, Ordering::SeqCst);
                                first_refusal
                                    .lock()
                                    .expect("lock")
                                    .get_or_insert_with(|| e.to_string());
                                submitted.lock().expect("lock").remove(&t.hash);
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("submitter panicked"))??;
        }
        Ok(())
    })?;
    *next = cursor.load(Ordering::SeqCst).min(txs.len());
    let refused = refused.into_inner();
    let first_refusal = first_refusal.into_inner().expect("lock");
    let submit_seconds = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let (blocks, mut latencies) = follower
        .join()
        .map_err(|_| anyhow::anyhow!("follower panicked"))??;
    let wall = t0.elapsed().as_secs_f64();
    let node_cores = match (node_cpu_before, node.pid().and_then(cpu_seconds)) {
        (Some(a), Some(b)) => (b - a) / wall,
        _ => f64::NAN,
    };
    let generator_cores = match (own_cpu_before, cpu_seconds(std::process::id())) {
        (Some(a), Some(b)) => (b - a) / wall,
        _ => f64::NAN,
    };
    if let Some(e) = first_refusal {
        eprintln!("  {refused} transfers refused at submission; the first: {e}");
    }
    // Steady state: blocks stamped between 2 s after the start and the end of submission.
    let from = t0_ms + 2_000;
    let to = t0_ms + (submit_seconds * 1e3) as u64;
    let steady: Vec<&(u64, usize)> = blocks
        .iter()
        .filter(|(ts, _)| (from..=to).contains(ts))
        .collect();
    let committed_per_s = match (steady.first(), steady.last()) {
        (Some(first), Some(last)) if last.0 > first.0 => {
            steady[1..].iter().map(|(_, n)| n).sum::<usize>() as f64
                / ((last.0 - first.0) as f64 / 1e3)
        }
        _ => 0.0,
    };
    latencies.retain(|(at, _)| *at >= from);
    let mut l: Vec<u64> = latencies.iter().map(|(_, l)| *l).collect();
    l.sort_unstable();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Ok(Phase {
        name,
        offered: rate,
        committed_per_s,
        included: included.load(Ordering::SeqCst),
        refused,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        node_cores,
        generator_cores,
    })
}

fn main() -> Result<()> {
    let args = flags::or_exit::<Args, _>(parse_args(std::env::args().skip(1)));
    let dir = tempfile::tempdir()?;
    let mut genesis = vexidus_genesis::dev_genesis();
    genesis.block_time_ms = (args.block_time * 1e3) as u64;
    genesis.parameters.max_txs_per_block = args.max_block_txs;
    genesis.balances.extend(
        (0..args.accounts).map(|i| (bench_key(i).public().address(), 1_000 * NANO_PER_VXS)),
    );
    let genesis_path = dir.path().join("genesis.json");
    std::fs::write(
        &genesis_path,
        serde_json::to_vec(&GenesisFile::from_config(&genesis))?,
    )?;
    let key_path = dir.path().join("validator.key");
    std::fs::write(&key_path, hex::encode(dev_seed()))?;

    // Enough transfers for a saturated phase at up to 60k/s and a paced one.
    let count = (60_000.0 * args.seconds * 1.6) as usize;
    let started = Instant::now();
    let (txs, sample) = sign_all(&genesis.chain_id, args.accounts, count);
    println!(
        "signed {count} transfers in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The baseline: the node's verifier on this machine, in this run.
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let verdicts = vexidus_chain::sigcheck::verify_all(&sample);
        best = best.min(t.elapsed().as_secs_f64());
        ensure!(
            verdicts.iter().all(|ok| *ok),
            "a pre-signed transfer does not verify"
        );
    }
    let limit = sample.len() as f64 / best;

    let data = dir.path().join("data");
    let node = Node::start(
        &[
            "--genesis".into(),
            genesis_path.display().to_string(),
            "--validator-key".into(),
            key_path.display().to_string(),
            "--data-dir".into(),
            data.display().to_string(),
            "--rpc-addr".into(),
            "127.0.0.1:0".into(),
            "--rpc-rate-limit".into(),
            "1000000".into(),
            "--pool-capacity".into(),
            (args.window * 2).to_string(),
        ],
        &data,
    )?;
    let mut next = 0;
    let saturated = phase(
        "saturation (closed loop)",
        &node,
        &txs,
        &mut next,
        &args,
        None,
    )?;
    let half = phase(
        "half load (paced)",
        &node,
        &txs,
        &mut next,
        &args,
        Some((saturated.committed_per_s / 2.0).max(100.0)),
    )?;

    println!(
        "end to end: {} accounts, {:.1} s blocks (at most {} transfers each), batches of {} on {} connections, window {}, {:.0} s per phase",
        args.accounts,
        args.block_time,
        args.max_block_txs,
        args.batch,
        args.connections,
        args.window,
        args.seconds
    );
    println!(
        "  {:<26} {:>14} {:>14} {:>10} {:>8} {:>8} {:>8} {:>10} {:>10}",
        "phase",
        "offered /s",
        "committed /s",
        "× limit",
        "p50 ms",
        "p99 ms",
        "refused",
        "node cores",
        "gen cores"
    );
    println!(
        "  {:<26} {:>14} {:>14.0} {:>10.2} {:>8} {:>8} {:>8} {:>10} {:>10}",
        "signature limit (baseline)", "-", limit, 1.0, "-", "-", "-", "-", "-"
    );
    for p in [&saturated, &half] {
        println!(
            "  {:<26} {:>14} {:>14.0} {:>10.2} {:>8} {:>8} {:>8} {:>10.2} {:>10.2}",
            p.name,
            p.offered.map_or("max".to_string(), |r| format!("{r:.0}")),
            p.committed_per_s,
            p.committed_per_s / limit,
            p.p50_ms,
            p.p99_ms,
            p.refused,
            p.node_cores,
            p.generator_cores,
        );
        ensure!(p.included > 0, "{}: nothing was included", p.name);
    }
    let final_status: Value = node.client().call("vex_getStatus", json!([]))?;
    println!("  node at height {}", final_status["height"]);
    if let Some(to) = &args.node_log {
        std::fs::copy(node.log_path(), to)
            .with_context(|| format!("copy the node's log to {}", to.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    fn error(args: &[&str]) -> String {
        match parse(args) {
            Ok(_) => panic!("{args:?} parsed"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn flags_parse_and_bad_ones_say_what_is_wrong() -> Result<()> {
        let a = parse(&[
            "--accounts",
            "100",
            "--seconds",
            "2.5",
            "--node-log",
            "/tmp/n.log",
        ])?
        .context("not --help")?;
        assert_eq!(a.accounts, 100);
        assert_eq!(a.seconds, 2.5);
        assert_eq!(a.batch, 1_000, "an unset flag keeps its default");
        assert_eq!(
            a.node_log.as_deref(),
            Some(std::path::Path::new("/tmp/n.log"))
        );
        assert!(parse(&["--help"])?.is_none());
        assert!(parse(&["--seconds", "1", "-h"])?.is_none());

        assert_eq!(error(&["--bogus"]), "unexpected argument '--bogus' found");
        assert_eq!(
            error(&["--accounts"]),
            "a value is required for '--accounts <N>' but none was supplied"
        );
        assert_eq!(
            error(&["--accounts", "many"]),
            "invalid value 'many' for '--accounts <N>': invalid digit found in string"
        );
        assert!(error(&["--batch", "2000", "--window", "1000"]).contains("--window (1000)"));
        assert!(error(&["--seconds", "0"]).contains("must be positive"));
        Ok(())
    }
}
