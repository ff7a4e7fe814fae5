//! Benchmark: what a runtime upgrade costs.
//!
//! 1. **Compile**: the v2 runtime blob compiled cold (a fresh executor, no module cache) — the
//!    baseline — against loading it from the on-disk module cache (RocksDB `modules`).
//! 2. **Switch**: on an in-process chain (real wasm, real RocksDB), a runtime upgrade is
//!    scheduled and the new blob compiled ahead, as the node does in the background once a plan
//!    is scheduled; the production time of the block that switches (it writes the blob under
//!    `:code`, and the node picks up the pre-compiled module) and of the next one (the
//!    migration, then the new runtime) against the median of the ten ordinary blocks before —
//!    the baseline, same content (one transfer each).
//! 3. **Restart**: a dev node process stopped and started again on its data directory, from
//!    spawn to its first new block (the runtime comes from the module cache), against a fresh
//!    dev chain's start on an empty directory (genesis, compile) — the baseline.
//!
//! ```sh
//! cargo build --release --bins
//! target/release/bench-upgrade-costs [--runs 5]
//! ```

#![forbid(unsafe_code)]

use anyhow::{Result, bail, ensure};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vexidus_executor::Executor;
use vexidus_harness::Harness;
use vexidus_runtime_api::transaction::{Operation, UpgradeTarget};
use vexidus_storage::Db;
use vexidus_tests::flags;
use vexidus_tests::{Node, runtimes};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Cold compile vs loading from the module cache, best of `runs` each.
fn compile(runs: usize) -> Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let db = Arc::new(Db::open(dir.path())?);
    let (mut cold, mut cached) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..runs {
        let t = Instant::now();
        Executor::new(None).prototype(runtimes::NEXT_EXAMPLE)?;
        cold = cold.min(ms(t.elapsed()));
    }
    // The first executor with the store compiles and stores; later ones load.
    Executor::new(Some(db.module_store())).prototype(runtimes::NEXT_EXAMPLE)?;
    for _ in 0..runs {
        let t = Instant::now();
        Executor::new(Some(db.module_store())).prototype(runtimes::NEXT_EXAMPLE)?;
        cached = cached.min(ms(t.elapsed()));
    }
    Ok((cold, cached))
}

/// Production times: (median ordinary block, block H that switches, block H+1 that migrates).
fn switch() -> Result<(f64, f64, f64)> {
    let mut h = Harness::dev();
    let authority = Harness::dev_key();
    let bob = Harness::account_key("bob");
    let target = h.height() + 30;
    let r = h.execute(
        &authority,
        vec![Operation::ScheduleUpgrade {
            name: "bench-v2".into(),
            height: target,
            info_url: String::new(),
            target: UpgradeTarget::Runtime {
                code: runtimes::NEXT_EXAMPLE.to_vec(),
            },
        }],
    )?;
    ensure!(r.success, "scheduling failed: {:?}", r.error);
    // What the node does in the background once a plan is scheduled.
    h.chain().executor().prototype(runtimes::NEXT_EXAMPLE)?;
    let timed = |h: &mut Harness| -> Result<f64> {
        let tx = h.sign(
            &bob,
            vec![Operation::Transfer {
                to: authority.public().address(),
                amount: 1,
            }],
        );
        h.submit(tx)?;
        let t = Instant::now();
        let b = h.produce_block()?;
        let took = ms(t.elapsed());
        ensure!(b.receipts.len() == 1, "the transfer was left out");
        Ok(took)
    };
    while h.height() < target - 11 {
        timed(&mut h)?;
    }
    let mut ordinary = Vec::new();
    while h.height() < target - 1 {
        ordinary.push(timed(&mut h)?);
    }
    ensure!(h.runtime_version().spec_version == 2, "switched early");
    let at_h = timed(&mut h)?;
    ensure!(
        h.runtime_version().spec_version == 3,
        "block H did not switch the runtime"
    );
    let at_h1 = timed(&mut h)?;
    Ok((median(ordinary), at_h, at_h1))
}

/// Spawn to first new block: a restart on the same directory, and a fresh chain's start.
fn restart() -> Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let t = Instant::now();
    let mut node = Node::start_dev(&data, 0.5, &[])?;
    node.wait_height(1, Duration::from_secs(30))?;
    let fresh = ms(t.elapsed());
    node.wait_height(3, Duration::from_secs(30))?;
    let stopped_at = node.height()?;
    if node.stop() != Some(0) {
        bail!("the node did not stop cleanly");
    }
    let t = Instant::now();
    let node = Node::start_dev(&data, 0.5, &[])?;
    node.wait_height(stopped_at + 1, Duration::from_secs(30))?;
    let restarted = ms(t.elapsed());
    Ok((fresh, restarted))
}

/// Compile, switch and restart costs of a runtime upgrade.
#[derive(clap::Parser)]
#[command(name = "bench-upgrade-costs")]
struct Args {
    /// Runs: best of them for compile and load, medians for the switch and the restart.
    #[arg(long, value_name = "N", default_value_t = 5)]
    runs: usize,
}

/// `--runs`, or `None` for `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<usize>> {
    let Some(Args { runs }) = flags::parse::<Args>(args)? else {
        return Ok(None);
    };
    ensure!(runs > 0, "--runs must be at least 1");
    Ok(Some(runs))
}

fn main() -> Result<()> {
    let runs = flags::or_exit::<Args, _>(parse_args(std::env::args().skip(1)));
    let (cold, cached) = compile(runs)?;
    println!(
        "runtime blob ({} bytes), best of {runs}",
        runtimes::NEXT_EXAMPLE.len()
    );
    println!(
        "  {:<52} {:>9.1} ms  1.00×",
        "cold compile (baseline)", cold
    );
    println!(
        "  {:<52} {:>9.1} ms  {:.2}× ({:.0}× faster)",
        "load from the on-disk module cache",
        cached,
        cached / cold,
        cold / cached
    );

    let samples: Vec<(f64, f64, f64)> = (0..runs).map(|_| switch()).collect::<Result<_>>()?;
    let base = median(samples.iter().map(|s| s.0).collect());
    let h = median(samples.iter().map(|s| s.1).collect());
    let h1 = median(samples.iter().map(|s| s.2).collect());
    println!(
        "runtime upgrade switch, pre-compiled module, block with one transfer, median of {runs} chains"
    );
    println!(
        "  {:<52} {:>9.2} ms  1.00×",
        "ordinary block (baseline)", base
    );
    println!(
        "  {:<52} {:>9.2} ms  {:.2}×  (+{:.2} ms)",
        "block H (writes the blob, switches the runtime)",
        h,
        h / base,
        h - base
    );
    println!(
        "  {:<52} {:>9.2} ms  {:.2}×  (+{:.2} ms)",
        "block H+1 (migration, first block of the new runtime)",
        h1,
        h1 / base,
        h1 - base
    );

    let restarts: Vec<(f64, f64)> = (0..runs.min(3)).map(|_| restart()).collect::<Result<_>>()?;
    let fresh = median(restarts.iter().map(|r| r.0).collect());
    let again = median(restarts.iter().map(|r| r.1).collect());
    println!(
        "dev node process (0.5 s blocks), spawn to first new block, median of {}",
        restarts.len()
    );
    println!(
        "  {:<52} {:>9.1} ms  1.00×",
        "fresh chain: genesis, compile (baseline)", fresh
    );
    println!(
        "  {:<52} {:>9.1} ms  {:.2}×",
        "restart with the on-disk module cache",
        again,
        again / fresh
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<usize>> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn flags_parse_and_bad_ones_say_what_is_wrong() -> Result<()> {
        assert_eq!(parse(&[])?, Some(5));
        assert_eq!(parse(&["--runs", "3"])?, Some(3));
        assert_eq!(parse(&["--runs", "3", "--help"])?, None);
        let error = |args: &[&str]| format!("{:#}", parse(args).expect_err("refused"));
        assert_eq!(
            error(&["--runs"]),
            "a value is required for '--runs <N>' but none was supplied"
        );
        assert_eq!(
            error(&["--runs", "x"]),
            "invalid value 'x' for '--runs <N>': invalid digit found in string"
        );
        assert_eq!(error(&["--runs", "0"]), "--runs must be at least 1");
        assert_eq!(error(&["--fast"]), "unexpected argument '--fast' found");
        Ok(())
    }
}
