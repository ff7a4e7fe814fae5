//! Upgrades on a network of four validators, each under its own `vexvisor`
//! (`vexidus localnet --supervised`): a runtime upgrade hot-swaps on every node at one height;
//! a binary upgrade halts every node at the same height, every supervisor swaps in the
//! rehearsal build and restarts it, and finality goes on — with nobody skipped or charged a
//! miss during the grace period. Then, past block 500, a node that starts from genesis syncs
//! the whole chain (across both upgrades) to identical blocks and state roots.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vexidus_tests::localnet::Localnet;
use vexidus_tests::supervised::{UPGRADE_NAME, schedule_binary_upgrade};
use vexidus_tests::{FileServer, cli_json, runtimes, upgrade_binary};

const ALL: [usize; 4] = [0, 1, 2, 3];
const GRACE: u64 = 80;
const SYNC_FROM_GENESIS_AFTER: u64 = 500;

fn finalized(s: &Value) -> u64 {
    s["finalized_height"].as_u64().unwrap_or(0)
}

fn height(s: &Value) -> u64 {
    s["height"].as_u64().unwrap_or(0)
}

/// Missed-block counters and skip flags of every validator, as node `i` sees them.
fn liveness(net: &Localnet, i: usize) -> Result<Vec<(String, u64, bool)>> {
    let all = net.nodes[i].rpc.call("vex_getValidators", json!([]))?;
    Ok(all
        .as_array()
        .context("validators")?
        .iter()
        .map(|v| {
            (
                v["address"].as_str().unwrap_or_default().to_string(),
                v["missed_blocks"].as_u64().unwrap_or(0),
                v["skipped"].as_bool().unwrap_or(true),
            )
        })
        .collect())
}

#[test]
fn runtime_and_binary_upgrades_on_four_supervised_validators_then_a_late_node_syncs() -> Result<()>
{
    let upgraded = upgrade_binary();
    let mut dir = tempfile::tempdir()?;
    // VEXIDUS_KEEP_TEST_DIR=1 keeps the network's files (keys, data, logs) for a post-mortem.
    dir.disable_cleanup(std::env::var_os("VEXIDUS_KEEP_TEST_DIR").is_some());
    println!("network files in {}", dir.path().display());
    let net = Localnet::start(
        &dir.path().join("net"),
        &[
            "--validators",
            "4",
            "--supervised",
            "--block-time",
            "0.3",
            "--failover-base-ms",
            "200",
            "--upgrade-min-lead",
            "10",
            "--upgrade-grace",
            &GRACE.to_string(),
            "--rpc-port",
            "21200",
            "--p2p-port",
            "41200",
            "--node-arg=--rpc-rate-limit=100000",
        ],
    )?;
    let rpc0 = net.nodes[0].rpc.url().to_string();
    let key = net.nodes[0].dir.join("validator.key");
    let k = key.to_str().context("key path")?;
    net.wait_until(&ALL, Duration::from_secs(60), "finality past 5", |s| {
        finalized(s) >= 5
    })?;

    // A runtime upgrade, by the upgrade authority (validator 0).
    let wasm = dir.path().join("runtime-v2.wasm");
    std::fs::write(&wasm, runtimes::NEXT_EXAMPLE)?;
    let runtime_height = height(&net.nodes[0].status().context("status")?) + 20;
    let receipt = cli_json(
        &rpc0,
        &[
            "upgrade",
            "runtime",
            "--key",
            k,
            "--name",
            "rt-v2",
            "--height",
            &runtime_height.to_string(),
            "--wasm",
            wasm.to_str().context("path")?,
        ],
    )?;
    assert_eq!(receipt["receipt"]["success"], true, "{receipt}");
    net.wait_until(
        &ALL,
        Duration::from_secs(90),
        "finality past the runtime upgrade",
        |s| finalized(s) >= runtime_height + 3 && s["runtime"]["spec_version"] == 3,
    )?;
    net.assert_same_blocks(&ALL, 1..=runtime_height + 3)?;
    println!("runtime upgrade: spec_version 3 on all four nodes from height {runtime_height}");

    // A binary upgrade to the rehearsal build, served over HTTP; every supervisor carries it.
    let server = FileServer::start(&upgraded, "vexidus-node")?;
    let plan = schedule_binary_upgrade(&net.nodes[0].rpc, &key, &upgraded, &server.url, 20)?;
    let target = plan.height;
    // The record just before the switch (the nodes halt before executing the target block).
    let started = Instant::now();
    let before = loop {
        let s = net.nodes[1].status().context("node 1 stopped early")?;
        if height(&s) >= target - 2 {
            break liveness(&net, 1)?;
        }
        ensure!(started.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(50));
    };
    // All four go down and come back on the new binary.
    net.wait_until(
        &ALL,
        Duration::from_secs(120),
        "the upgraded network",
        |s| height(s) >= target + 2 && finalized(s) >= target,
    )?;
    let block = net.nodes[2].rpc.call("vex_getBlock", json!([target]))?;
    assert!(
        block["events"].to_string().contains("UpgradeExecuted"),
        "{block}"
    );
    assert_eq!(
        server.hits(),
        4,
        "each supervisor downloaded the binary once"
    );
    for (i, n) in net.nodes.iter().enumerate() {
        let v = n.rpc.call("vex_getStatus", json!([]))?;
        assert_eq!(v["upgrade_grace_until"], target + GRACE, "node {i}: {v}");
        let version = Command::new(
            n.dir
                .join("vexvisor/current/vexidus-node")
                .to_str()
                .context("path")?,
        )
        .arg("--version")
        .output()?;
        assert!(
            String::from_utf8_lossy(&version.stdout).contains(UPGRADE_NAME),
            "node {i} runs the upgraded build"
        );
    }
    // Each node halted with 42 and was upgraded; none crashed on the way.
    for (i, n) in net.nodes.iter().enumerate() {
        let log = std::fs::read_to_string(n.dir.join("node.log"))?;
        assert!(
            !log.contains("event=node_failed"),
            "node {i} failed during the upgrade:\n{}",
            n.log_tail(40)
        );
        assert!(log.contains("event=node_halted"), "node {i} never halted");
    }
    // During the grace period nobody is skipped or charged a miss, whoever was slow to return.
    let during = liveness(&net, 1)?;
    assert!(
        height(&net.nodes[1].status().context("status")?) < target + GRACE,
        "still in the grace period when read"
    );
    for ((addr, missed_before, _), (_, missed_now, skipped)) in before.iter().zip(&during) {
        assert_eq!(missed_now, missed_before, "{addr} charged in grace");
        assert!(!skipped, "{addr} skipped in grace");
    }
    net.wait_until(
        &ALL,
        Duration::from_secs(60),
        "finality after the grace period",
        |s| finalized(s) >= target + GRACE + 5,
    )?;
    net.assert_same_blocks(&ALL, target - 2..=target + GRACE + 5)?;
    println!(
        "binary upgrade at {target}: all four back, finality at {}",
        net.min_finalized(&ALL)
    );

    // Past block 500, a fifth node (no key) starts from genesis with the current release and
    // syncs everything: both upgrades, to the same blocks and state roots.
    net.wait_until(&ALL, Duration::from_secs(400), "block 500", |s| {
        finalized(s) >= SYNC_FROM_GENESIS_AFTER
    })?;
    let late_dir = dir.path().join("late");
    std::fs::create_dir_all(&late_dir)?;
    let log = std::fs::File::create(late_dir.join("node.log"))?;
    let bootnodes: Vec<String> = (0..4)
        .map(|i| format!("/ip4/127.0.0.1/udp/{}/quic-v1", 41200 + i))
        .collect();
    let mut late = Command::new(&upgraded)
        .args([
            "--genesis",
            net.home.join("genesis.json").to_str().context("path")?,
            "--data-dir",
            late_dir.join("data").to_str().context("path")?,
            "--rpc-addr",
            "127.0.0.1:21299",
            "--p2p-addr",
            "/ip4/127.0.0.1/udp/41299/quic-v1",
            "--bootnodes",
            &bootnodes.join(","),
            "--rpc-rate-limit",
            "100000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let late_rpc = vexidus_cli::RpcClient::new("http://127.0.0.1:21299");
    let started = Instant::now();
    let result = (|| -> Result<()> {
        loop {
            if let Ok(s) = late_rpc.status()
                && finalized(&s) >= SYNC_FROM_GENESIS_AFTER
            {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(180),
                "the late node did not sync: {:?}\n{}",
                late_rpc.status().ok(),
                std::fs::read_to_string(late_dir.join("node.log"))
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        println!(
            "a node started after block {SYNC_FROM_GENESIS_AFTER} synced it in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        for h in 1..=SYNC_FROM_GENESIS_AFTER {
            let theirs = net.nodes[3].rpc.call("vex_getBlock", json!([h]))?;
            let mine = late_rpc.call("vex_getBlock", json!([h]))?;
            assert_eq!(mine["hash"], theirs["hash"], "height {h}");
            assert_eq!(mine["state_root"], theirs["state_root"], "height {h}");
        }
        let version = late_rpc.call("vex_getRuntimeVersion", json!([]))?;
        assert_eq!(version["spec_version"], 3);
        Ok(())
    })();
    let _ = late.kill();
    let _ = late.wait();
    result?;
    net.assert_no_bans()?;
    Ok(())
}
