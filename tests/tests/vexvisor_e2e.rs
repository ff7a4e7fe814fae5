//! End to end with the real node: a dev chain under the real `vexvisor` schedules a signed
//! binary upgrade; the upgrade binary is a second real build of `vexidus-node` (made by
//! `scripts/test` with `VEXIDUS_EXTRA_UPGRADES=e2e-binary-upgrade`) served over HTTP on
//! loopback. The chain halts at the height, the supervisor downloads, verifies and swaps, and
//! the chain continues past the height with its state intact. `vexidus upgrade prepare` stages
//! the same binary into a second home, and `vexidus upgrade rollback` puts the old one back.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use vexidus_cli::RpcClient;
use vexidus_tests::{FileServer, bin, cli_json, upgrade_binary};

const NAME: &str = "e2e-binary-upgrade";

/// `vexvisor run` with the node's stdout read line by line: each `RPC on` line is sent on.
struct Supervised {
    child: Child,
    urls: mpsc::Receiver<String>,
    log: std::path::PathBuf,
}

impl Supervised {
    fn next_url(&self, timeout: Duration) -> Result<String> {
        self.urls.recv_timeout(timeout).with_context(|| {
            format!(
                "no node came up; vexvisor log:\n{}",
                tail(&std::fs::read_to_string(&self.log).unwrap_or_default())
            )
        })
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

fn wait_height(client: &RpcClient, height: u64, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        if let Ok(s) = client.status()
            && s["height"].as_u64().unwrap_or(0) >= height
        {
            return Ok(());
        }
        ensure!(started.elapsed() < timeout, "height {height} not reached");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn balance(client: &RpcClient, address: &str) -> Result<Value> {
    Ok(client.call("vex_getAccount", json!([address]))?["balance"].clone())
}

#[test]
fn a_dev_chain_under_vexvisor_carries_a_binary_upgrade() -> Result<()> {
    let upgraded = upgrade_binary();
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    let out = Command::new(bin("vexvisor"))
        .args(["init", "--home"])
        .arg(&home)
        .arg("--binary")
        .arg(bin("vexidus-node"))
        .output()?;
    ensure!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let old_digest = {
        let v: Value = serde_json::from_slice(
            &Command::new(bin("vexvisor"))
                .args(["status", "--json", "--home"])
                .arg(&home)
                .output()?
                .stdout,
        )?;
        v["current"]["sha256"]
            .as_str()
            .context("digest")?
            .to_string()
    };

    // The dev key is the upgrade authority; the supervisor insists on its signature.
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

    let log = dir.path().join("vexvisor.log");
    let mut child = Command::new(bin("vexvisor"))
        .args(["run", "--home"])
        .arg(&home)
        .args([
            "--require-signed-upgrades",
            "--upgrade-authority",
            &authority,
            "--",
            "--dev",
            "--rpc-addr",
            "127.0.0.1:0",
            "--block-time",
            "0.5",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .env("VEXIDUS_LOG", "info")
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, urls) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("vexidus-node: RPC on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let sup = Supervised { child, urls, log };
    let before = RpcClient::new(&sup.next_url(Duration::from_secs(60))?);
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

    // The upgrade binary, its digest and the authority's signature, via the real CLI.
    let signed = cli_json(
        &url,
        &[
            "upgrade",
            "sign",
            "--binary",
            upgraded.to_str().context("path")?,
            "--key",
            k,
        ],
    )?;
    let sha = signed["sha256"].as_str().context("sha256")?.to_string();
    let sig = signed["signature"]
        .as_str()
        .context("signature")?
        .to_string();
    let server = FileServer::start(&upgraded, "vexidus-node")?;
    let target = before.status()?["height"].as_u64().context("height")? + 14;
    cli_json(
        &url,
        &[
            "upgrade",
            "schedule",
            "--key",
            k,
            "--from",
            &authority,
            "--name",
            NAME,
            "--height",
            &target.to_string(),
            "--binary-url",
            &server.url,
            "--checksum",
            &sha,
            "--signature",
            &sig,
        ],
    )?;

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

    // Follow the old node to its halt: the last block it made, and when.
    let mut last_before = (0u64, Instant::now());
    while let Ok(s) = before.status() {
        let h = s["height"].as_u64().unwrap_or(0);
        if h > last_before.0 {
            last_before = (h, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        last_before.0,
        target - 1,
        "the old binary stops before the target height"
    );

    // The supervisor downloads, verifies, swaps and restarts.
    let after = RpcClient::new(&sup.next_url(Duration::from_secs(180))?);
    wait_height(&after, target, Duration::from_secs(60))?;
    let first_after = Instant::now();
    wait_height(&after, target + 3, Duration::from_secs(60))?;
    let block_before = after.call("vex_getBlock", json!([target - 1]))?;
    let block_at = after.call("vex_getBlock", json!([target]))?;
    let block_gap_ms = block_at["timestamp_ms"].as_u64().unwrap_or(0)
        - block_before["timestamp_ms"].as_u64().unwrap_or(0);
    println!(
        "binary upgrade downtime: {block_gap_ms} ms between block {} and block {target} \
         (block timestamps); {} ms wall clock from the last block seen to the first after",
        target - 1,
        first_after.duration_since(last_before.1).as_millis()
    );
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

    let status: Value = serde_json::from_slice(
        &Command::new(bin("vexvisor"))
            .args(["status", "--json", "--home"])
            .arg(&home)
            .output()?
            .stdout,
    )?;
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
            tail(&sup_log)
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
