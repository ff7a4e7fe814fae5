//! Upgrades end to end with the real binaries: a runtime upgrade through the CLI hot-swaps the
//! runtime of a running dev chain, and a binary upgrade halts the node with exit code 42 and a
//! complete `upgrade-info.json`, again on every restart.

use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;
use vexidus_tests::{Node, bin, cli, cli_json, node_command, runtimes};

fn block_time_ms(node: &Node, h: u64) -> Result<u64> {
    node.client().call("vex_getBlock", json!([h]))?["timestamp_ms"]
        .as_u64()
        .context("timestamp")
}

#[test]
fn runtime_upgrade_hot_swaps_without_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut node = Node::start_dev(&dir.path().join("data"), 0.5, &[])?;
    let pid = node.pid();
    let key = dir.path().join("dev.key");
    let wasm = dir.path().join("runtime-v2.wasm");
    std::fs::write(&wasm, runtimes::NEXT_EXAMPLE)?;
    cli_json(
        &node.url,
        &["keys", "dev", "--out", key.to_str().unwrap_or_default()],
    )?;

    let target = node.height()? + 12;
    let receipt = cli_json(
        &node.url,
        &[
            "upgrade",
            "runtime",
            "--key",
            key.to_str().unwrap_or_default(),
            "--name",
            "rt-v2",
            "--height",
            &target.to_string(),
            "--wasm",
            wasm.to_str().unwrap_or_default(),
        ],
    )?;
    assert_eq!(receipt["receipt"]["success"], true, "{receipt}");
    let plan = cli_json(&node.url, &["upgrade", "plan"])?;
    assert_eq!(plan["name"], "rt-v2");
    assert_eq!(plan["status"], "approved");
    assert_eq!(
        plan["target"]["code_hash"],
        format!("0x{}", blake3::hash(runtimes::NEXT_EXAMPLE).to_hex())
    );

    let before = node.client().call("vex_getRuntimeVersion", json!([]))?;
    assert_eq!(before["spec_version"], 2);
    node.wait_height(target + 3, Duration::from_secs(60))?;
    let after = node.client().call("vex_getRuntimeVersion", json!([]))?;
    assert_eq!(after["spec_version"], 3, "{after}");
    assert_eq!(node.pid(), pid);
    assert!(node.is_running());

    // The RuntimeUpgraded event is in block H+1.
    let b = node.client().call("vex_getBlock", json!([target + 1]))?;
    assert!(
        b["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["type"] == "RuntimeUpgraded")),
        "{b}"
    );
    // The changed behaviour, through RPC: the proposer now gets 70% of a fee.
    let other = dir.path().join("other.key");
    let other_addr = cli_json(
        &node.url,
        &[
            "keys",
            "generate",
            "--out",
            other.to_str().unwrap_or_default(),
        ],
    )?["address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let sent = cli_json(
        &node.url,
        &[
            "tx",
            "transfer",
            "--key",
            key.to_str().unwrap_or_default(),
            "--to",
            &other_addr,
            "--amount",
            "1",
        ],
    )?;
    let fee_paid = sent["receipt"]["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["type"] == "FeePaid").cloned())
        .context("FeePaid")?;
    assert_eq!(
        fee_paid["to_proposer"].as_u64(),
        fee_paid["fee"].as_u64().map(|f| f * 70 / 100),
        "{fee_paid}"
    );

    // No block interval around the switch exceeds 1.5 × the block time.
    let mut worst = 0;
    for h in target - 3..=target + 3 {
        worst = worst.max(block_time_ms(&node, h + 1)? - block_time_ms(&node, h)?);
    }
    println!("worst block interval around the switch: {worst} ms (block time 500 ms)");
    assert!(
        worst <= 750,
        "a block interval of {worst} ms around the switch"
    );
    Ok(())
}

#[test]
fn binary_upgrade_halts_with_42_and_halts_again_on_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut node = Node::start_dev(&data, 0.2, &[])?;
    let key = dir.path().join("dev.key");
    let dev = cli_json(
        &node.url,
        &["keys", "dev", "--out", key.to_str().unwrap_or_default()],
    )?;
    let pubkey = dev["public_key"].as_str().unwrap_or_default().to_string();
    let address = dev["address"].as_str().unwrap_or_default().to_string();
    let target = node.height()? + 12;
    let checksum = "ab".repeat(32);
    let base = |from: &str| -> Vec<String> {
        [
            "upgrade",
            "schedule",
            "--key",
            key.to_str().unwrap_or_default(),
            "--from",
            from,
            "--name",
            "bin-v2",
            "--height",
            &target.to_string(),
            "--binary-url",
            "https://example.invalid/vexidus-node",
            "--checksum",
            &checksum,
            "--info-url",
            "https://example.invalid/notes",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // --from with the address instead of the public key is recognised and refused.
    let args = base(&address);
    let out = cli(
        &node.url,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--from takes the upgrade authority's public key, not its address"),
        "{err}"
    );

    let args = base(&pubkey);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--output", "json"]);
    let out = cli(&node.url, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let code = node
        .wait_exit(Duration::from_secs(60))
        .context("the node did not stop at the upgrade height")?;
    assert_eq!(code, 42, "log:\n{}", node.log_tail());
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("upgrade-info.json"))?)?;
    assert_eq!(info["name"], "bin-v2");
    assert_eq!(info["height"].as_u64(), Some(target));
    assert_eq!(info["binary_url"], "https://example.invalid/vexidus-node");
    assert_eq!(info["sha256"], checksum);
    assert_eq!(info["signature"], Value::Null);
    assert_eq!(info["authority"], pubkey.as_str());
    assert_eq!(info["info_url"], "https://example.invalid/notes");
    assert_eq!(info["chain_id"], "vexidus-dev");
    assert!(!data.join(".upgrade-info.json.tmp").exists());

    let state = |data: &std::path::Path| -> Result<Value> {
        let out = node_command(&[
            "check-state",
            "--data-dir",
            data.to_str().unwrap_or_default(),
        ]);
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    assert_eq!(
        state(&data)?["height"].as_u64(),
        Some(target - 1),
        "nothing committed for the target height"
    );

    // Restarted, the same binary halts again at once without producing a block.
    let out = Command::new(bin("vexidus-node"))
        .args([
            "--dev",
            "--block-time",
            "0.2",
            "--rpc-addr",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap_or_default(),
        ])
        .output()?;
    assert_eq!(
        out.status.code(),
        Some(42),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("halted for a binary upgrade"));
    assert_eq!(state(&data)?["height"].as_u64(), Some(target - 1));
    Ok(())
}

fn readiness(node: &Node) -> Result<Value> {
    Ok(node.client().call("vex_getUpgradeReadiness", json!([]))?)
}

fn wait_readiness(node: &Node, pred: impl Fn(&Value) -> bool) -> Result<Value> {
    let started = std::time::Instant::now();
    loop {
        let r = readiness(node)?;
        if pred(&r) {
            return Ok(r);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "readiness never got there: {r}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn pending_runtimes_compile_in_the_background_and_shadow_run_every_block() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start_dev(&dir.path().join("data"), 0.2, &[])?;
    let key = dir.path().join("dev.key");
    let k = key.to_str().unwrap_or_default();
    cli_json(&node.url, &["keys", "dev", "--out", k])?;
    assert_eq!(readiness(&node)?, Value::Null);

    // A good blob: compiled, run on every block, never trapping.
    let good = dir.path().join("v2.wasm");
    std::fs::write(&good, runtimes::NEXT_EXAMPLE)?;
    let far = (node.height()? + 500).to_string();
    cli_json(
        &node.url,
        &[
            "upgrade",
            "runtime",
            "--key",
            k,
            "--name",
            "good",
            "--height",
            &far,
            "--wasm",
            good.to_str().unwrap_or_default(),
        ],
    )?;
    let r = wait_readiness(&node, |r| r["blocks_run"].as_u64() >= Some(3))?;
    assert_eq!(r["plan"], "good");
    assert_eq!(r["compiled"], true);
    assert_eq!(r["traps"], 0, "{r}");
    assert!(
        r["fuel_shadow"].as_u64() > Some(0) && r["time_ratio"].as_f64().is_some(),
        "{r}"
    );
    let later = wait_readiness(&node, |x| {
        x["blocks_run"].as_u64() > r["blocks_run"].as_u64()
    })?;
    println!("readiness of a good blob: {later}");

    // Cancelled: nothing is pending any more.
    cli_json(
        &node.url,
        &["upgrade", "cancel", "--key", k, "--name", "good"],
    )?;
    wait_readiness(&node, |r| r.is_null())?;

    // A blob that traps in every block: every shadow-run block counts as a trap.
    let bad = dir.path().join("trap.wasm");
    std::fs::write(&bad, runtimes::NEXT_TRAP)?;
    let far = (node.height()? + 500).to_string();
    cli_json(
        &node.url,
        &[
            "upgrade",
            "runtime",
            "--key",
            k,
            "--name",
            "trap",
            "--height",
            &far,
            "--wasm",
            bad.to_str().unwrap_or_default(),
        ],
    )?;
    let r = wait_readiness(&node, |r| {
        r["plan"] == "trap" && r["blocks_run"].as_u64() >= Some(3)
    })?;
    assert_eq!(r["traps"], r["blocks_run"], "{r}");
    assert!(
        r["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("next-trap")),
        "{r}"
    );
    // The live chain is unharmed.
    let h = node.height()?;
    node.wait_height(h + 2, Duration::from_secs(20))?;
    Ok(())
}

#[test]
fn genesis_new_full_mode_and_auto_vote_seed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("validator.key");
    let k = key.to_str().unwrap_or_default();
    let v = cli_json("http://unused", &["keys", "generate", "--out", k])?;
    let pk = v["public_key"].as_str().unwrap_or_default().to_string();
    let addr = v["address"].as_str().unwrap_or_default().to_string();
    let genesis = dir.path().join("genesis.json");
    let g = genesis.to_str().unwrap_or_default();

    let out = cli(
        "http://unused",
        &[
            "genesis",
            "new",
            "--out",
            g,
            "--validator",
            &pk,
            "--upgrade-quorum",
            "50",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("parameters.quorum_percent = 50 is out of bounds: allowed 51 to 100")
    );
    cli_json(
        "http://unused",
        &[
            "genesis",
            "new",
            "--out",
            g,
            "--chain-id",
            "rehearsal",
            "--validator",
            &format!("{pk}:5000"),
            "--balance",
            &format!("{addr}:1000"),
            "--governance-mode",
            "full",
            "--voting-period",
            "100",
            "--upgrade-min-lead",
            "10",
            "--block-time",
            "0.2",
        ],
    )?;
    let args: Vec<String> = [
        "--genesis",
        g,
        "--validator-key",
        k,
        "--auto-vote-seed",
        "--rpc-addr",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().join("data").to_str().unwrap_or_default(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let node = Node::start(&args, &dir.path().join("data"))?;
    let status = node.status()?;
    assert_eq!(status["chain_id"], "rehearsal");
    assert_eq!(status["block_time_ms"], 200);
    node.wait_height(2, Duration::from_secs(20))?;

    let target = (node.height()? + 30).to_string();
    let sched = cli_json(
        &node.url,
        &[
            "upgrade",
            "schedule",
            "--key",
            k,
            "--from",
            &pk,
            "--name",
            "rehearsal-1",
            "--height",
            &target,
            "--binary-url",
            "file:///nonexistent",
            "--checksum",
            &"00".repeat(32),
        ],
    )?;
    assert!(
        sched["receipt"]["events"]
            .as_array()
            .is_some_and(|e| !e.iter().any(|e| e["type"] == "UpgradeApproved"))
    );
    // The node votes by itself; as the only validator its vote carries the quorum.
    let started = std::time::Instant::now();
    loop {
        let plan = cli_json(&node.url, &["upgrade", "plan"])?;
        if plan["status"] == "approved" {
            assert_eq!(plan["tally"]["votes"], 1);
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(20),
            "never approved: {plan}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

#[test]
fn a_failing_migration_is_rolled_back_and_the_chain_goes_on() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut node = Node::start_dev(&dir.path().join("data"), 0.3, &[])?;
    let pid = node.pid();
    let key = dir.path().join("dev.key");
    let k = key.to_str().unwrap_or_default();
    cli_json(&node.url, &["keys", "dev", "--out", k])?;
    let wasm = dir.path().join("bad.wasm");
    std::fs::write(&wasm, runtimes::NEXT_BAD_MIGRATION)?;
    let target = node.height()? + 12;
    cli_json(
        &node.url,
        &[
            "upgrade",
            "runtime",
            "--key",
            k,
            "--name",
            "bad-mig",
            "--height",
            &target.to_string(),
            "--wasm",
            wasm.to_str().unwrap_or_default(),
        ],
    )?;
    node.wait_height(target + 3, Duration::from_secs(60))?;
    let b = node.client().call("vex_getBlock", json!([target + 1]))?;
    let aborted = b["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["type"] == "UpgradeAborted").cloned())
        .context("UpgradeAborted")?;
    assert!(
        aborted["reason"]
            .as_str()
            .is_some_and(|r| r.contains("next-bad-migration")),
        "{aborted}"
    );
    assert_eq!(
        node.client().call("vex_getRuntimeVersion", json!([]))?["spec_version"],
        2
    );
    assert_eq!(node.pid(), pid);
    assert!(node.is_running());
    Ok(())
}
