//! Many validators end to end: `vexidus localnet` starts real node processes on loopback that
//! run HyperSync over libp2p (QUIC). Four validators with unequal stake agree on every
//! irreversible block; one is killed and the rest keep producing and finalizing within the
//! failover bound, skipping it; restarted, it syncs, rejoins and produces again.

use anyhow::{Context, Result};
use serde_json::json;
use std::time::{Duration, Instant};
use vexidus_tests::localnet::Localnet;

const BLOCK_MS: u64 = 500;
const FAILOVER_BASE_MS: u64 = 200;
const ALL: [usize; 4] = [0, 1, 2, 3];

fn finalized(s: &serde_json::Value) -> u64 {
    s["finalized_height"].as_u64().unwrap_or(0)
}

#[test]
fn four_validators_finalize_survive_a_crash_and_take_it_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut net = Localnet::start(
        &dir.path().join("net"),
        &[
            "--validators",
            "4",
            "--block-time",
            "0.5",
            "--failover-base-ms",
            &FAILOVER_BASE_MS.to_string(),
            "--rpc-port",
            "21000",
            "--p2p-port",
            "41000",
            "--node-arg=--rpc-rate-limit=100000",
        ],
    )?;
    let stakes: Vec<u128> = net.nodes[1]
        .rpc
        .call("vex_getValidators", json!([]))?
        .as_array()
        .context("validators")?
        .iter()
        .map(|v| v["total_stake"].as_u64().unwrap_or(0) as u128)
        .collect();
    assert_eq!(stakes.len(), 4);
    assert!(
        stakes
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == 4,
        "unequal stakes: {stakes:?}"
    );

    // Finality on every node, and how far it lags the head.
    net.wait_until(&ALL, Duration::from_secs(60), "finality past 10", |s| {
        finalized(s) >= 10
    })?;
    let mut worst_lag = 0;
    let sampled = Instant::now();
    while sampled.elapsed() < Duration::from_secs(5) {
        for n in &net.nodes {
            let s = n.status().context("status")?;
            let lag = s["height"].as_u64().unwrap_or(0) - finalized(&s);
            worst_lag = worst_lag.max(lag);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("finality lag with 4 validators: at most {worst_lag} blocks behind the head");
    assert!(worst_lag <= 3, "finality lags by {worst_lag} blocks");
    let common = net.min_finalized(&ALL);
    net.assert_same_blocks(&ALL, 1..=common)?;

    // Kill the validator with the most stake (it leads the most slots).
    let victim = 0;
    let live = [1, 2, 3];
    net.kill_node(victim)?;
    let killed_at = net.nodes[1].status().context("status")?["height"]
        .as_u64()
        .unwrap_or(0);
    // Its slots fail over to backups until three misses take it out of the rotation.
    let started = Instant::now();
    let skipped_at = loop {
        let record = net.nodes[1].validator(&net.nodes[victim].address)?;
        if record["skipped"] == true {
            assert!(
                record["missed_blocks"].as_u64().unwrap_or(0) >= 3,
                "{record}"
            );
            break net.nodes[1].status().context("status")?["height"]
                .as_u64()
                .unwrap_or(0);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(180),
            "the dead validator was never skipped: {record}\n{}",
            net.logs(20)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    net.wait_until(
        &live,
        Duration::from_secs(60),
        "finality 20 blocks on",
        |s| finalized(s) >= skipped_at + 20,
    )?;
    let until = net.min_finalized(&live);
    let mut worst = (0u64, 0u64);
    let mut previous = None;
    for h in killed_at..=until {
        let b = net.nodes[1].rpc.call("vex_getBlock", json!([h]))?;
        let ts = b["timestamp_ms"].as_u64().context("timestamp")?;
        if let Some(p) = previous {
            let gap = ts.saturating_sub(p);
            if gap > worst.0 {
                worst = (gap, h);
            }
        }
        previous = Some(ts);
    }
    let bound = BLOCK_MS + 5 * FAILOVER_BASE_MS;
    println!(
        "one validator down: worst block interval {} ms (at height {}), failover bound {bound} ms",
        worst.0, worst.1
    );
    // The bound plus what producing and gossiping a block takes on a loaded 2-core machine.
    assert!(
        worst.0 <= bound + 400,
        "worst interval {} ms at height {}",
        worst.0,
        worst.1
    );
    assert!(
        worst.0 > BLOCK_MS + 4 * FAILOVER_BASE_MS,
        "a backup took over at least once, so some interval shows the failover wait"
    );
    net.assert_same_blocks(&live, killed_at..=until)?;

    // Back: it syncs, agrees, and produces again (a probation slot lets it show it is up).
    net.restart_node(victim)?;
    let restarted_at = net.nodes[1].status().context("status")?["height"]
        .as_u64()
        .unwrap_or(0);
    net.wait_until(
        &[victim],
        Duration::from_secs(60),
        "the restarted node to sync",
        |s| finalized(s) >= restarted_at,
    )?;
    let started = Instant::now();
    let mut scanned = restarted_at;
    let mut found = None;
    let produced_again = loop {
        let head = net.nodes[1].status().context("status")?["height"]
            .as_u64()
            .unwrap_or(0);
        while found.is_none() && scanned < head {
            scanned += 1;
            let b = net.nodes[1].rpc.call("vex_getBlock", json!([scanned]))?;
            if b["proposer"] == net.nodes[victim].public_key.as_str() {
                found = Some(scanned);
            }
        }
        if let Some(h) = found {
            let record = net.nodes[1].validator(&net.nodes[victim].address)?;
            if record["skipped"] == false {
                break h;
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(240),
            "the restarted validator never produced and returned to the rotation\n{}",
            net.logs(20)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    println!(
        "restarted validator produced again at height {produced_again} ({} s after its restart)",
        started.elapsed().as_secs()
    );
    net.wait_until(
        &ALL,
        Duration::from_secs(60),
        "finality past its block",
        |s| finalized(s) >= produced_again,
    )?;
    let common = net.min_finalized(&ALL);
    net.assert_same_blocks(&ALL, 1..=common)?;
    net.stop();
    Ok(())
}
