//! A `vexidus localnet` of real node processes on loopback, driven through its files
//! (`localnet.json`, each node's `pid` and `command.json`) and the nodes' RPC.

use crate::bin;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vexidus_cli::RpcClient;

/// One node of the network.
pub struct LocalNode {
    /// Its RPC client.
    pub rpc: RpcClient,
    /// Its directory (`validator.key`, `data/`, `node.log`, `pid`, `command.json`).
    pub dir: PathBuf,
    /// Its validator address.
    pub address: String,
    /// Its validator public key.
    pub public_key: String,
}

impl LocalNode {
    /// `vex_getStatus`, or `None` while the node is down.
    pub fn status(&self) -> Option<Value> {
        self.rpc.status().ok()
    }

    /// The last lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The hash of its canonical block at `height`.
    pub fn hash_at(&self, height: u64) -> Result<String> {
        let b = self.rpc.call("vex_getBlock", json!([height]))?;
        b["hash"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("no block {height}: {b}"))
    }

    /// Its record of validator `address` in `vex_getValidators`.
    pub fn validator(&self, address: &str) -> Result<Value> {
        let all = self.rpc.call("vex_getValidators", json!([]))?;
        all.as_array()
            .and_then(|a| a.iter().find(|v| v["address"] == address))
            .cloned()
            .with_context(|| format!("{address} not in {all}"))
    }
}

/// `vexidus localnet` running in the background; stopped when dropped.
pub struct Localnet {
    child: Option<Child>,
    /// The home directory.
    pub home: PathBuf,
    /// The nodes, in index order.
    pub nodes: Vec<LocalNode>,
    restarted: Vec<Child>,
}

impl Localnet {
    /// Starts `vexidus localnet --home <home> <args>` and waits until every node answers RPC.
    pub fn start(home: &Path, args: &[&str]) -> Result<Self> {
        let out = std::fs::File::create(home.with_extension("out"))?;
        let child = Command::new(bin("vexidus"))
            .arg("localnet")
            .arg("--home")
            .arg(home)
            .arg("--node-bin")
            .arg(bin("vexidus-node"))
            .arg("--vexvisor-bin")
            .arg(bin("vexvisor"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let mut net = Self {
            child: Some(child),
            home: home.to_path_buf(),
            nodes: Vec::new(),
            restarted: Vec::new(),
        };
        let description = home.join("localnet.json");
        let started = Instant::now();
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&description)
                && serde_json::from_str::<Value>(&t).is_ok()
            {
                break t;
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!("localnet wrote no description:\n{}", net.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let v: Value = serde_json::from_str(&text)?;
        for n in v["nodes"].as_array().context("nodes")? {
            net.nodes.push(LocalNode {
                rpc: RpcClient::new(n["rpc"].as_str().context("rpc")?),
                dir: PathBuf::from(n["key_file"].as_str().context("key file")?)
                    .parent()
                    .context("node dir")?
                    .to_path_buf(),
                address: n["address"].as_str().context("address")?.to_string(),
                public_key: n["public_key"].as_str().context("key")?.to_string(),
            });
        }
        let started = Instant::now();
        while net.nodes.iter().any(|n| n.status().is_none()) {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the nodes did not come up:\n{}", net.output());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(net)
    }

    /// What `vexidus localnet` printed.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.home.with_extension("out")).unwrap_or_default()
    }

    /// Every node's log tail, for failure messages.
    pub fn logs(&self, n: usize) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, nd)| format!("--- node {i} ---\n{}", nd.log_tail(n)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until `pred` holds for the statuses of the nodes in `which`.
    pub fn wait_until(
        &self,
        which: &[usize],
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<()> {
        let started = Instant::now();
        loop {
            if which
                .iter()
                .all(|i| self.nodes[*i].status().is_some_and(|s| pred(&s)))
            {
                return Ok(());
            }
            if started.elapsed() > timeout {
                let statuses: Vec<String> = which
                    .iter()
                    .map(|i| format!("{i}: {:?}", self.nodes[*i].status()))
                    .collect();
                bail!(
                    "timed out waiting for {what}\n{}\n{}",
                    statuses.join("\n"),
                    self.logs(25)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Checks that no node banned a peer: honest nodes' messages (re-sent votes, repeated sync
    /// requests) must never look like offences.
    pub fn assert_no_bans(&self) -> Result<()> {
        for (i, n) in self.nodes.iter().enumerate() {
            let log = std::fs::read_to_string(n.dir.join("node.log")).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| l.contains("banned a peer")) {
                bail!("node {i} banned a peer: {line}");
            }
        }
        Ok(())
    }

    /// The lowest finalized height among `which`.
    pub fn min_finalized(&self, which: &[usize]) -> u64 {
        which
            .iter()
            .filter_map(|i| self.nodes[*i].status())
            .map(|s| s["finalized_height"].as_u64().unwrap_or(0))
            .min()
            .unwrap_or(0)
    }

    /// Checks that the nodes in `which` hold the same blocks at every height in `heights`.
    pub fn assert_same_blocks(
        &self,
        which: &[usize],
        heights: impl Iterator<Item = u64>,
    ) -> Result<()> {
        for h in heights {
            let first = self.nodes[which[0]].hash_at(h)?;
            for i in &which[1..] {
                let other = self.nodes[*i].hash_at(h)?;
                anyhow::ensure!(
                    other == first,
                    "node {i} has {other} at height {h}, node {} has {first}",
                    which[0]
                );
            }
        }
        Ok(())
    }

    /// Node `i`'s resident memory (`VmRSS`), in KiB.
    pub fn rss_kib(&self, i: usize) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(i)?))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS line")
    }

    /// Node `i`'s process id.
    pub fn pid(&self, i: usize) -> Result<i32> {
        Ok(std::fs::read_to_string(self.nodes[i].dir.join("pid"))?
            .trim()
            .parse()?)
    }

    /// Kills node `i` outright (SIGKILL).
    pub fn kill_node(&mut self, i: usize) -> Result<()> {
        let pid = self.pid(i)?;
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -KILL {pid} failed");
        let started = Instant::now();
        while self.nodes[i].status().is_some() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("node {i} still answers after SIGKILL");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts node `i` again with the command localnet started it with.
    pub fn restart_node(&mut self, i: usize) -> Result<()> {
        self.restart_node_with(i, &[])
    }

    /// Starts node `i` again with the command localnet started it with and `extra` flags.
    pub fn restart_node_with(&mut self, i: usize, extra: &[&str]) -> Result<()> {
        let dir = &self.nodes[i].dir;
        let mut argv: Vec<String> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("command.json"))?)?;
        argv.extend(extra.iter().map(|s| s.to_string()));
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("node.log"))?;
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        std::fs::write(dir.join("pid"), child.id().to_string())?;
        self.restarted.push(child);
        let started = Instant::now();
        while self.nodes[i].status().is_none() {
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "node {i} did not come back:\n{}",
                    self.nodes[i].log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Stops the network (SIGTERM to localnet, which stops its nodes) and waits.
    pub fn stop(&mut self) {
        for c in &mut self.restarted {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let _ = c.wait();
        }
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let started = Instant::now();
            while !matches!(c.try_wait(), Ok(Some(_))) {
                if started.elapsed() > Duration::from_secs(30) {
                    let _ = c.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.wait();
        }
    }
}

impl Localnet {
    /// After [`Localnet::stop`]: every node process has exited.
    pub fn assert_all_stopped(&self) -> Result<()> {
        for i in 0..self.nodes.len() {
            let pid = self.pid(i)?;
            let alive = Command::new("kill")
                .args(["-0", &pid.to_string()])
                .stderr(Stdio::null())
                .status()?
                .success();
            anyhow::ensure!(!alive, "node {i} (pid {pid}) is still running");
        }
        Ok(())
    }
}

impl Drop for Localnet {
    fn drop(&mut self) {
        self.stop();
    }
}
