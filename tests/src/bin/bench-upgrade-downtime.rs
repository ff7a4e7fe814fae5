//! Benchmark: the downtime of a binary upgrade carried by `vexvisor` on a dev chain, with the
//! binary pre-staged (`vexidus upgrade prepare`) and with the supervisor downloading it.
//!
//! Downtime is the gap between the timestamps of the last block before the halt and the first
//! block after; the baseline, measured in the same run, is the chain's ordinary block interval
//! just before the halt. Needs the rehearsal build `scripts/test` makes
//! (`<target>/upgrade-node/vexidus-node`).
//!
//! ```sh
//! cargo run -p vexidus-tests --bin bench-upgrade-downtime -- [--runs 3] [--block-time 0.5] [--trace]
//! ```

#![forbid(unsafe_code)]

use anyhow::{Context, Result, ensure};
use serde_json::json;
use std::process::Command;
use std::time::Duration;
use vexidus_cli::RpcClient;
use vexidus_tests::flags;
use vexidus_tests::supervised::{
    SupervisedChain, follow_until_halt, measure_downtime, schedule_binary_upgrade,
};
use vexidus_tests::{FileServer, bin, cli_json, upgrade_binary};

struct Sample {
    /// vexvisor's own event lines of the run, for `--trace`.
    events: Vec<String>,
    gap_ms: f64,
    wall_ms: f64,
    interval_ms: f64,
}

fn one_run(prestaged: bool, block_time: f64) -> Result<Sample> {
    let upgraded = upgrade_binary();
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    let key = dir.path().join("dev.key");
    let out = Command::new(bin("vexidus"))
        .args(["keys", "dev", "--out"])
        .arg(&key)
        .output()?;
    ensure!(out.status.success(), "keys dev failed");
    let sup = SupervisedChain::start(&home, block_time, &[])?;
    let before = sup.next_node(Duration::from_secs(60))?;
    vexidus_tests::supervised::wait_height(&before, 2, Duration::from_secs(30))?;
    let server = FileServer::start(&upgraded, "vexidus-node")?;
    let plan = schedule_binary_upgrade(&before, &key, &upgraded, &server.url, 12)?;
    if prestaged {
        cli_json(
            before.url(),
            &[
                "upgrade",
                "prepare",
                "--home",
                home.to_str().context("path")?,
            ],
        )?;
    }
    let (last, seen) = follow_until_halt(&before);
    ensure!(
        last + 1 == plan.height,
        "halted at {last}, plan at {}",
        plan.height
    );
    let after = sup.next_node(Duration::from_secs(120))?;
    let d = measure_downtime(&after, plan.height, seen)?;
    let expected_hits = 1;
    ensure!(
        server.hits() == expected_hits,
        "{} downloads; expected {expected_hits}",
        server.hits()
    );
    let interval_ms = median_interval(&after, plan.height - 6, plan.height - 1)?;
    let events = std::fs::read_to_string(&sup.log)?
        .lines()
        .filter(|l| l.starts_with("vexvisor:"))
        .map(str::to_string)
        .collect();
    Ok(Sample {
        events,
        gap_ms: d.block_gap.as_secs_f64() * 1000.0,
        wall_ms: d.wall.as_secs_f64() * 1000.0,
        interval_ms,
    })
}

/// The median gap between consecutive block timestamps in `from..=to`.
fn median_interval(client: &RpcClient, from: u64, to: u64) -> Result<f64> {
    let mut ts = Vec::new();
    for h in from..=to {
        ts.push(
            client.call("vex_getBlock", json!([h]))?["timestamp_ms"]
                .as_u64()
                .context("timestamp")?,
        );
    }
    let mut gaps: Vec<f64> = ts.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    gaps.sort_by(f64::total_cmp);
    Ok(gaps[gaps.len() / 2])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Binary-upgrade downtime under vexvisor: the gap between the last block before the halt and
/// the first after, pre-staged and downloaded.
#[derive(clap::Parser)]
#[command(name = "bench-upgrade-downtime")]
struct Args {
    /// Runs per path.
    #[arg(long, value_name = "N", default_value_t = 3)]
    runs: usize,
    /// The dev chain's block time, in seconds.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 0.5,
        allow_negative_numbers = true
    )]
    block_time: f64,
    /// Print vexvisor's own event lines of each path's last run.
    #[arg(long)]
    trace: bool,
}

/// The flags after the program's name; `None` for `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Args>> {
    let Some(a) = flags::parse::<Args>(args)? else {
        return Ok(None);
    };
    ensure!(a.runs > 0, "--runs must be at least 1");
    ensure!(
        a.block_time.is_finite() && a.block_time > 0.0,
        "--block-time must be positive"
    );
    Ok(Some(a))
}

fn main() -> Result<()> {
    let Args {
        runs,
        block_time,
        trace,
    } = flags::or_exit::<Args, _>(parse_args(std::env::args().skip(1)));
    println!(
        "binary-upgrade downtime under vexvisor: dev chain, {block_time} s blocks, debug builds, {runs} run(s) per path"
    );
    println!(
        "{:<12} {:>12} {:>12} {:>14} {:>18} {:>18} {:>16}",
        "path",
        "gap p50 ms",
        "gap max ms",
        "wall p50 ms",
        "interval p50 ms",
        "gap - interval ms",
        "gap / interval"
    );
    for (label, prestaged) in [("pre-staged", true), ("download", false)] {
        let mut samples = Vec::new();
        for _ in 0..runs {
            samples.push(one_run(prestaged, block_time)?);
        }
        let gap = median(samples.iter().map(|s| s.gap_ms).collect());
        let max = samples.iter().map(|s| s.gap_ms).fold(0.0, f64::max);
        let wall = median(samples.iter().map(|s| s.wall_ms).collect());
        let interval = median(samples.iter().map(|s| s.interval_ms).collect());
        println!(
            "{label:<12} {gap:>12.0} {max:>12.0} {wall:>14.0} {interval:>18.0} {:>18.0} {:>15.2}x",
            gap - interval,
            gap / interval
        );
        if trace && let Some(last) = samples.last() {
            for e in &last.events {
                println!("    {e}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn flags_parse_and_bad_ones_say_what_is_wrong() -> Result<()> {
        let a = parse(&["--trace", "--block-time", "0.25"])?.context("not --help")?;
        assert!(a.trace);
        assert_eq!(a.block_time, 0.25);
        assert_eq!(a.runs, 3, "an unset flag keeps its default");
        assert!(parse(&["-h"])?.is_none());
        let error = |args: &[&str]| match parse(args) {
            Ok(_) => panic!("{args:?} parsed"),
            Err(e) => format!("{e:#}"),
        };
        assert_eq!(error(&["--runs", "0"]), "--runs must be at least 1");
        assert_eq!(
            error(&["--block-time"]),
            "a value is required for '--block-time <SECS>' but none was supplied"
        );
        assert_eq!(
            error(&["--block-time", "soon"]),
            "invalid value 'soon' for '--block-time <SECS>': invalid float literal"
        );
        assert_eq!(
            error(&["--block-time", "-1"]),
            "--block-time must be positive"
        );
        assert_eq!(error(&["--traces"]), "unexpected argument '--traces' found");
        Ok(())
    }
}
