//! End to end with the real node: a dev chain under the real `vexvisor` schedules a signed
//! binary upgrade; the upgrade binary is a second real build of `vexidus-node` (made by
//! `scripts/test` with `VEXIDUS_EXTRA_UPGRADES=e2e-binary-upgrade`) served over HTTP on
//! loopback. The chain halts at the height, the supervisor downloads, verifies and swaps, and
//! the chain continues past the height with its state intact. `vexidus upgrade prepare` stages
//! the same binary into a second home, and `vexidus upgrade rollback` puts the old one back.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};
use vexidus_cli::RpcClient;
use vexidus_tests::supervised::{
    SupervisedChain, UPGRADE_NAME as NAME, follow_until_halt, measure_downtime,
    schedule_binary_upgrade, wait_height,
};
use vexidus_tests::{FileServer, bin, cli_json, upgrade_binary};

fn balance(client: &RpcClient, address: &str) -> Result<Value> {
    Ok(client.call("vex_getAccount", json!([address]))?["balance"].clone())
}

#[test]
fn a_dev_chain_under_vexvisor_carries_a_binary_upgrade() -> Result<()> {
    let upgraded = upgrade_binary();
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    let key = dir.path().join("dev.key");
    let k = key.to_str().context("path")?;
    let dev = Command::new(bin("vexidus"))
        .args(["keys", "dev", "--out", k, "--output", "json"])
        .output()?;
    let dev: Value = serde_json::from_slice(&dev.stdout)?;
    let authority = dev["public_key"]
        .as_str()
        .context("public key")?
        .to_string();

    // The dev key is the upgrade authority; the supervisor insists on its signature.
    let sup = SupervisedChain::start(
        &home,
        0.5,
        &[
            "--require-signed-upgrades",
            "--upgrade-authority",
            &authority,
        ],
    )?;
    let old_digest = sup.status()?["current"]["sha256"]
        .as_str()
        .context("digest")?
        .to_string();
    let before = sup.next_node(Duration::from_secs(60))?;
    wait_height(&before, 2, Duration::from_secs(30))?;
    let url = before.url().to_string();

    // Some state that must survive: a transfer to a fresh address.
    let to = format!("0x{}", "5a".repeat(32));
    cli_json(
        &url,
        &["tx", "transfer", "--key", k, "--to", &to, "--amount", "7"],
    )?;
    let balance_before = balance(&before, &to)?;
    ensure!(
        balance_before != json!(0) && !balance_before.is_null(),
        "{balance_before}"
    );

    // A second real build, signed by the authority, served over HTTP.
    let server = FileServer::start(&upgraded, "vexidus-node")?;
    let plan = schedule_binary_upgrade(&before, &key, &upgraded, &server.url, 14)?;
    let (target, sha) = (plan.height, plan.sha256);

    // Another validator prepares ahead of the height: fetched, verified, staged.
    let other_home = dir.path().join("other-home");
    let prepared = cli_json(
        &url,
        &[
            "upgrade",
            "prepare",
            "--home",
            other_home.to_str().context("path")?,
            "--require-signed-upgrades",
            "--upgrade-authority",
            &authority,
        ],
    )?;
    assert_eq!(prepared["name"], NAME);
    assert_eq!(prepared["sha256"], sha.as_str());
    let staged = other_home
        .join("vexvisor/upgrades")
        .join(NAME)
        .join("vexidus-node");
    ensure!(staged.exists(), "prepare staged nothing: {prepared}");
    assert_eq!(server.hits(), 1);

    // The old node halts before the target height; the supervisor downloads, verifies,
    // swaps and restarts.
    let (last_height, last_seen) = follow_until_halt(&before);
    assert_eq!(
        last_height,
        target - 1,
        "the old binary stops before the target height"
    );
    let after = sup.next_node(Duration::from_secs(180))?;
    let downtime = measure_downtime(&after, target, last_seen)?;
    println!(
        "binary upgrade downtime (download path): {} ms between blocks {} and {target} \
         (block timestamps); {} ms wall clock",
        downtime.block_gap.as_millis(),
        target - 1,
        downtime.wall.as_millis()
    );
    wait_height(&after, target + 3, Duration::from_secs(60))?;
    let block_at = after.call("vex_getBlock", json!([target]))?;
    let events = block_at["events"].as_array().context("events")?;
    ensure!(
        events
            .iter()
            .any(|e| e["type"] == "UpgradeExecuted" && e["name"] == NAME),
        "{block_at}"
    );
    assert_eq!(
        balance(&after, &to)?,
        balance_before,
        "state intact across the swap"
    );
    assert_eq!(server.hits(), 2, "the supervisor downloaded once");

    let status = sup.status()?;
    assert_eq!(status["current"]["sha256"], sha.as_str(), "{status}");
    assert_eq!(status["applied"], json!([NAME]));
    let backups = status["backups"].as_array().context("backups")?;
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0]["sha256"], old_digest.as_str());
    let sup_log = std::fs::read_to_string(&sup.log)?;
    for event in [
        "event=download_done",
        "event=binary_staged",
        "event=binary_installed",
    ] {
        ensure!(
            sup_log.contains(event),
            "{event} missing:\n{}",
            sup.log_tail()
        );
    }

    // The operator stops it: SIGTERM is forwarded, the node exits, nothing restarts.
    let mut sup = sup;
    Command::new("kill")
        .args(["-TERM", &sup.child.id().to_string()])
        .status()?;
    let started = Instant::now();
    let code = loop {
        if let Some(s) = sup.child.try_wait()? {
            break s.code();
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("vexvisor did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
    ensure!(
        after.status().is_err(),
        "the node stopped with its supervisor"
    );

    // `vexidus upgrade rollback` puts the pre-upgrade binary back into current/.
    let rolled = cli_json(
        &url,
        &[
            "upgrade",
            "rollback",
            "--home",
            home.to_str().context("path")?,
            "--yes",
            "--pick",
            "1",
        ],
    )?;
    assert_eq!(rolled["sha256"], old_digest.as_str());
    Ok(())
}
