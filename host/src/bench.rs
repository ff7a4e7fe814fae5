//! Benchmarks behind `vexidus-node bench …` (run them on a release build:
//! `cargo run --release --bin vexidus-node -- bench signatures`). Each prints its baseline,
//! measured in the same run, and the ratio against it; `docs/performance.md` keeps the results.

use crate::sigcheck;
use std::time::{Duration, Instant};
use vexidus_runtime_api::SignedTransaction;
use vexidus_runtime_api::signing::{self, Keypair};
use vexidus_runtime_api::transaction::{Operation, Transaction};
use vexidus_runtime_api::{Address, NANO_PER_VXS};

/// `count` transfers from distinct keys, signed.
pub fn signed_transfers(count: usize, chain_id: &str) -> Vec<SignedTransaction> {
    (0..count)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            seed[8] = 0xbe;
            let key = Keypair::from_seed(seed);
            key.sign_transaction(Transaction {
                chain_id: chain_id.into(),
                sender: key.public(),
                nonce: 0,
                max_gas: 21_000,
                valid_until: 1_000_000,
                operations: vec![Operation::Transfer {
                    to: Address([7; 32]),
                    amount: NANO_PER_VXS,
                }],
            })
        })
        .collect()
}

/// The best (shortest) of `runs` timings of `f`.
fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = None;
    let mut out = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let r = f();
        let t = started.elapsed();
        if best.is_none_or(|b| t < b) {
            best = Some(t);
        }
        out = Some(r);
    }
    (best.unwrap_or_default(), out.expect("ran at least once"))
}

/// One line of a benchmark table.
pub struct Line {
    /// What was measured.
    pub name: String,
    /// Time for the whole workload.
    pub time: Duration,
    /// Items in the workload.
    pub items: usize,
}

impl Line {
    /// Items per second.
    pub fn per_second(&self) -> f64 {
        self.items as f64 / self.time.as_secs_f64().max(1e-12)
    }
}

/// Prints `lines` with their ratio to the first (the baseline).
pub fn print_table(title: &str, lines: &[Line]) {
    println!("{title}");
    let base = lines.first().map(Line::per_second).unwrap_or(1.0);
    for l in lines {
        println!(
            "  {:<44} {:>10.1} ms  {:>12.0} /s  {:>6.2}×",
            l.name,
            l.time.as_secs_f64() * 1e3,
            l.per_second(),
            l.per_second() / base
        );
    }
}

/// Signature verification: one by one on one thread (the baseline), batched on one thread,
/// and the node's verifier (batched, all cores). Checks that all three give the same verdicts.
pub fn signatures(count: usize, runs: usize) -> anyhow::Result<Vec<Line>> {
    let txs = signed_transfers(count, "bench");
    let (single_time, single) = best_of(runs, || {
        txs.iter()
            .map(signing::verify_transaction)
            .collect::<Vec<bool>>()
    });
    let (batch1_time, batch1) = best_of(runs, || sigcheck::verify_all_one_thread(&txs));
    let (par_time, par) = best_of(runs, || sigcheck::verify_all(&txs));
    anyhow::ensure!(
        single == batch1 && single == par,
        "verdicts differ between the verifiers"
    );
    anyhow::ensure!(single.iter().all(|ok| *ok), "a benchmark signature failed");
    let threads = rayon::current_num_threads();
    Ok(vec![
        Line {
            name: "one by one, 1 thread (baseline)".into(),
            time: single_time,
            items: count,
        },
        Line {
            name: format!("batches of {}, 1 thread", sigcheck::chunk_size(count)),
            time: batch1_time,
            items: count,
        },
        Line {
            name: format!("node verifier: batches, {threads} threads"),
            time: par_time,
            items: count,
        },
    ])
}
