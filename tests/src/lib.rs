//! Helpers for end-to-end tests: find the built binaries, run a real `vexidus-node` on loopback
//! in a temporary data directory, and drive the real `vexidus` CLI.
//!
//! The binaries come from the same cargo target directory as the test executable. `cargo test`
//! builds them because `vexidus-host` and `vexidus-cli` have integration tests of their own.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use vexidus_cli::RpcClient;

/// Path of a workspace binary next to the running test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // <target>/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in <profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing; build the workspace binaries first (`cargo test --workspace` builds them)",
        path.display()
    );
    path
}

/// A `vexidus-node` process on loopback; killed when dropped.
pub struct Node {
    child: Option<Child>,
    /// Its RPC URL.
    pub url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    log: PathBuf,
}

impl Node {
    /// Starts `vexidus-node --dev` with `block_time` seconds on `data_dir`, plus `extra` flags,
    /// and waits until its RPC answers.
    pub fn start_dev(data_dir: &Path, block_time: f64, extra: &[&str]) -> Result<Self> {
        let mut args = vec![
            "--dev".to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--rpc-addr".into(),
            "127.0.0.1:0".into(),
            "--block-time".into(),
            block_time.to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start(&args, data_dir)
    }

    /// Starts `vexidus-node` with `args`; the RPC address must be `127.0.0.1:0`.
    pub fn start(args: &[String], data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let log = data_dir.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut child = Command::new(bin("vexidus-node"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .env("VEXIDUS_LOG", "info")
            .spawn()
            .context("spawn vexidus-node")?;
        let stdout = child.stdout.take().context("node stdout")?;
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        reader.read_line(&mut line)?;
        let Some(url) = line
            .trim()
            .strip_prefix("vexidus-node: RPC on ")
            .map(str::to_string)
        else {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "node did not start: {:?}\n{}",
                line,
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        // Keep draining stdout so the node never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        let node = Self {
            child: Some(child),
            url,
            data_dir: data_dir.to_path_buf(),
            log,
        };
        node.wait_for(Duration::from_secs(30), |s| s.get("height").is_some())?;
        Ok(node)
    }

    /// An RPC client of this node.
    pub fn client(&self) -> RpcClient {
        RpcClient::new(&self.url)
    }

    /// `vex_getStatus`.
    pub fn status(&self) -> Result<Value> {
        Ok(self.client().status()?)
    }

    /// Current height.
    pub fn height(&self) -> Result<u64> {
        self.status()?
            .get("height")
            .and_then(Value::as_u64)
            .context("height in status")
    }

    /// Polls the status until `pred` holds.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        let started = Instant::now();
        loop {
            if let Ok(s) = self.status()
                && pred(&s)
            {
                return Ok(s);
            }
            if started.elapsed() > timeout {
                bail!("timed out waiting for the node; log:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the chain reaches `height`.
    pub fn wait_height(&self, height: u64, timeout: Duration) -> Result<()> {
        self.wait_for(timeout, |s| {
            s.get("height").and_then(Value::as_u64).unwrap_or(0) >= height
        })
        .map(|_| ())
    }

    /// The last lines of the node's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Kills the node with SIGKILL (no chance to clean up).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the node with SIGTERM and waits; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = c.kill();
                return c.wait().ok().and_then(|s| s.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The node's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the `vexidus` CLI against `url` and returns its output.
pub fn cli(url: &str, args: &[&str]) -> Output {
    Command::new(bin("vexidus"))
        .arg("--rpc")
        .arg(url)
        .args(args)
        .output()
        .expect("run vexidus")
}

/// Runs the CLI with `--output json`, demands success, parses stdout.
pub fn cli_json(url: &str, args: &[&str]) -> Result<Value> {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--output", "json"]);
    let out = cli(url, &all);
    if !out.status.success() {
        bail!(
            "vexidus {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("vexidus {args:?} printed no JSON"))
}

/// Runs `vexidus-node` with `args` to completion (subcommands like `replay`).
pub fn node_command(args: &[&str]) -> Output {
    Command::new(bin("vexidus-node"))
        .args(args)
        .output()
        .expect("run vexidus-node")
}

/// The treasury account: `blake3("vexidus/treasury")`.
pub fn treasury_address() -> String {
    format!("0x{}", blake3_hex(b"vexidus/treasury"))
}

fn blake3_hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}
