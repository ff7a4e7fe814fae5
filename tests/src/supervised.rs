//! A dev chain under the real `vexvisor`, for the end-to-end test and the downtime benchmark:
//! start it, schedule a signed binary upgrade to the rehearsal build, and measure the halt.

use crate::{bin, cli_json};
use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use vexidus_cli::RpcClient;

/// The upgrade name the rehearsal build implements.
pub const UPGRADE_NAME: &str = "e2e-binary-upgrade";

/// `vexvisor run` over a dev chain; the node's stdout is read line by line and each
/// `RPC on` URL is passed on. Killed when dropped.
pub struct SupervisedChain {
    /// The vexvisor process.
    pub child: Child,
    urls: mpsc::Receiver<String>,
    /// vexvisor's stderr (its log and the node's).
    pub log: PathBuf,
    /// The home directory.
    pub home: PathBuf,
}

impl SupervisedChain {
    /// `vexvisor init` with the ordinary node, then `vexvisor run <flags> -- --dev …`.
    pub fn start(home: &Path, block_time: f64, flags: &[&str]) -> Result<Self> {
        let out = Command::new(bin("vexvisor"))
            .args(["init", "--home"])
            .arg(home)
            .arg("--binary")
            .arg(bin("vexidus-node"))
            .output()?;
        ensure!(
            out.status.success(),
            "vexvisor init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = home.with_extension("log");
        let mut child = Command::new(bin("vexvisor"))
            .args(["run", "--home"])
            .arg(home)
            .args(flags)
            .args(["--", "--dev", "--rpc-addr", "127.0.0.1:0", "--block-time"])
            .arg(block_time.to_string())
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
        Ok(Self {
            child,
            urls,
            log,
            home: home.to_path_buf(),
        })
    }

    /// The RPC client of the next node the supervisor starts.
    pub fn next_node(&self, timeout: Duration) -> Result<RpcClient> {
        let url = self
            .urls
            .recv_timeout(timeout)
            .with_context(|| format!("no node came up; vexvisor log:\n{}", self.log_tail()))?;
        Ok(RpcClient::new(&url))
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// `vexvisor status --json`.
    pub fn status(&self) -> Result<Value> {
        let out = Command::new(bin("vexvisor"))
            .args(["status", "--json", "--home"])
            .arg(&self.home)
            .output()?;
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

impl Drop for SupervisedChain {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `client` reports `height` or more.
pub fn wait_height(client: &RpcClient, height: u64, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        if let Ok(s) = client.status()
            && s["height"].as_u64().unwrap_or(0) >= height
        {
            return Ok(());
        }
        ensure!(started.elapsed() < timeout, "height {height} not reached");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A binary upgrade plan on chain: its target height and the binary's digest.
pub struct ScheduledUpgrade {
    /// Target height.
    pub height: u64,
    /// SHA-256 of the binary, hex.
    pub sha256: String,
}

/// Signs `binary` with the dev key (the dev chain's authority) and schedules it as
/// [`UPGRADE_NAME`] `lead` blocks ahead, downloadable from `url`.
pub fn schedule_binary_upgrade(
    client: &RpcClient,
    dev_key: &Path,
    binary: &Path,
    url: &str,
    lead: u64,
) -> Result<ScheduledUpgrade> {
    let rpc = client.url();
    let k = dev_key.to_str().context("key path")?;
    let authority = client.status()?["upgrade_authority"]
        .as_str()
        .context("upgrade authority in status")?
        .to_string();
    let signed = cli_json(
        rpc,
        &[
            "upgrade",
            "sign",
            "--binary",
            binary.to_str().context("path")?,
            "--key",
            k,
        ],
    )?;
    let sha256 = signed["sha256"].as_str().context("sha256")?.to_string();
    let sig = signed["signature"].as_str().context("signature")?;
    let height = client.status()?["height"].as_u64().context("height")? + lead;
    cli_json(
        rpc,
        &[
            "upgrade",
            "schedule",
            "--key",
            k,
            "--from",
            &authority,
            "--name",
            UPGRADE_NAME,
            "--height",
            &height.to_string(),
            "--binary-url",
            url,
            "--checksum",
            &sha256,
            "--signature",
            sig,
        ],
    )?;
    Ok(ScheduledUpgrade { height, sha256 })
}

/// Polls `client` until its node stops answering; returns the last height seen and when it
/// was first seen.
pub fn follow_until_halt(client: &RpcClient) -> (u64, Instant) {
    let mut last = (0u64, Instant::now());
    while let Ok(s) = client.status() {
        let h = s["height"].as_u64().unwrap_or(0);
        if h > last.0 {
            last = (h, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    last
}

/// The downtime of an upgrade at `height`, seen from the node after it.
pub struct Downtime {
    /// Timestamp of block `height` minus that of block `height - 1`.
    pub block_gap: Duration,
    /// Wall clock from the first sight of block `height - 1` to the first of block `height`.
    pub wall: Duration,
}

/// Measures the downtime: waits for block `height` on `after` and compares with the last block
/// seen on the old node (`last_before`, from [`follow_until_halt`]).
pub fn measure_downtime(after: &RpcClient, height: u64, last_before: Instant) -> Result<Downtime> {
    wait_height(after, height, Duration::from_secs(60))?;
    let wall = last_before.elapsed();
    let ts = |h: u64| -> Result<u64> {
        after.call("vex_getBlock", json!([h]))?["timestamp_ms"]
            .as_u64()
            .context("timestamp_ms")
    };
    let block_gap = Duration::from_millis(ts(height)?.saturating_sub(ts(height - 1)?));
    Ok(Downtime { block_gap, wall })
}
