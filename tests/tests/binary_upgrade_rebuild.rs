//! A binary upgrade carried out by hand: the node halts with 42 at the target height, and the same
//! node rebuilt with `VEXIDUS_EXTRA_UPGRADES=e2e-binary-upgrade` (by `scripts/test`) continues
//! from the target height on the same data directory, with the grace period started.

use anyhow::{Context, Result};
use serde_json::json;
use std::process::Command;
use std::time::Duration;
use vexidus_tests::{Node, bin, cli_json, upgrade_binary};

#[test]
fn the_rebuilt_binary_continues_from_the_target_height() -> Result<()> {
    let upgraded = upgrade_binary();
    let version = Command::new(&upgraded).arg("--version").output()?;
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    assert!(
        version.contains("implemented upgrades: e2e-binary-upgrade"),
        "{version}"
    );

    let plain = Command::new(bin("vexidus-node"))
        .arg("--version")
        .output()?;
    let plain = String::from_utf8_lossy(&plain.stdout).to_string();
    assert!(
        plain.contains("implemented upgrades: none"),
        "the ordinary vexidus-node implements extra upgrades; rebuild it without VEXIDUS_EXTRA_UPGRADES: {plain}"
    );

    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut node = Node::start_dev(&data, 0.2, &[])?;
    let key = dir.path().join("dev.key");
    let k = key.to_str().unwrap_or_default();
    let dev = cli_json(&node.url, &["keys", "dev", "--out", k])?;
    let target = node.height()? + 12;
    cli_json(
        &node.url,
        &[
            "upgrade",
            "schedule",
            "--key",
            k,
            "--from",
            dev["public_key"].as_str().unwrap_or_default(),
            "--name",
            "e2e-binary-upgrade",
            "--height",
            &target.to_string(),
            "--binary-url",
            "file:///unused",
            "--checksum",
            &"11".repeat(32),
        ],
    )?;
    assert_eq!(
        node.wait_exit(Duration::from_secs(60)),
        Some(42),
        "{}",
        node.log_tail()
    );
    drop(node);

    // The rebuilt binary, same flags, same data directory.
    let log = std::fs::File::create(dir.path().join("upgraded.log"))?;
    let mut child = Command::new(&upgraded)
        .args([
            "--dev",
            "--block-time",
            "0.2",
            "--rpc-addr",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap_or_default(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()?;
    let result = (|| -> Result<()> {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("vexidus-node: RPC on ")
            .context("rpc line")?
            .to_string();
        let client = vexidus_cli::RpcClient::new(&url);
        let started = std::time::Instant::now();
        while client.status()?["height"].as_u64().unwrap_or(0) < target + 2 {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the upgraded node did not continue"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let block = client.call("vex_getBlock", json!([target]))?;
        let events = block["events"].as_array().context("events")?;
        assert!(
            events
                .iter()
                .any(|e| e["type"] == "UpgradeExecuted" && e["name"] == "e2e-binary-upgrade"),
            "{block}"
        );
        assert!(client.call("vex_getUpgradePlan", json!([]))?.is_null());
        // The dev chain's grace period is 10 blocks from the upgrade.
        assert_eq!(
            client.status()?["upgrade_grace_until"].as_u64(),
            Some(target + 10)
        );
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
