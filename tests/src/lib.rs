//! Helpers for end-to-end tests: find the built binaries, run a real `vexidus-node` on loopback
//! in a temporary data directory, and drive the real `vexidus` CLI.
//!
//! The binaries come from the same cargo target directory as the test executable. `cargo test`
//! builds them because `vexidus-node`, `vexidus-harness` and `vexidus-cli` have integration tests of their own.

#![forbid(unsafe_code)]

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use vexidus_cli::RpcClient;

pub mod flags;
pub mod localnet;
pub mod supervised;

/// Path of a workspace binary next to the running test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Tests live in <target>/<profile>/deps/<test>-<hash>; this crate's own binaries (the
    // benchmarks) in <target>/<profile>/.
    let mut profile_dir = exe.parent().expect("executable has a directory");
    if profile_dir.ends_with("deps") {
        profile_dir = profile_dir.parent().expect("deps has a parent");
    }
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing; build the workspace binaries first (`cargo test --workspace` builds them)",
        path.display()
    );
    // `cargo test -p vexidus-tests` alone does not rebuild other packages' binaries: refuse a
    // node built from other sources than the ones these tests were built from.
    if name == "vexidus-node" {
        let out = Command::new(&path)
            .arg("--version")
            .output()
            .expect("vexidus-node --version");
        let text = String::from_utf8_lossy(&out.stdout);
        let expected = format!("source digest: {}", env!("VEXIDUS_SOURCE_DIGEST"));
        assert!(
            text.contains(&expected),
            "{} was built from other sources; rebuild it (`cargo build --bins`, or run `cargo test --workspace`)",
            path.display()
        );
    }
    path
}

/// A `vexidus-node` process on loopback; killed when dropped.
pub struct Node {
    child: Option<Child>,
    /// Its RPC URL.
    pub url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its peer-to-peer address (with `/p2p/<peer id>`), when started with `--p2p-addr`.
    pub p2p: Option<String>,
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
        let mut p2p = None;
        if args.iter().any(|a| a == "--p2p-addr") {
            line.clear();
            reader.read_line(&mut line)?;
            p2p = line
                .trim()
                .strip_prefix("vexidus-node: P2P on ")
                .map(str::to_string);
            if p2p.is_none() {
                let _ = child.kill();
                bail!("node printed no P2P address: {line:?}");
            }
        }
        // Keep draining stdout so the node never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        let node = Self {
            child: Some(child),
            url,
            data_dir: data_dir.to_path_buf(),
            p2p,
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

    /// The node's log file (its stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
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

    /// Waits up to `timeout` for the node to exit by itself; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let started = Instant::now();
        let c = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return status.code();
            }
            if started.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
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

/// The next runtime versions, built by this crate's build script from `runtime/` features.
pub mod runtimes {
    /// `next-example`: the next spec_version; its migration stores a 70% proposer fee share.
    pub const NEXT_EXAMPLE: &[u8] = include_bytes!(env!("VEXIDUS_RUNTIME_NEXT_EXAMPLE"));
    /// `next-bad-migration`: the next spec_version, whose migration traps.
    pub const NEXT_BAD_MIGRATION: &[u8] =
        include_bytes!(env!("VEXIDUS_RUNTIME_NEXT_BAD_MIGRATION"));
    /// `next-trap`: the next spec_version, which traps in every block.
    pub const NEXT_TRAP: &[u8] = include_bytes!(env!("VEXIDUS_RUNTIME_NEXT_TRAP"));
    /// `next-short-jail`: the next spec_version, with jail terms at 1/360 (an hour is ten seconds).
    pub const NEXT_SHORT_JAIL: &[u8] = include_bytes!(env!("VEXIDUS_RUNTIME_NEXT_SHORT_JAIL"));
}

/// Runtime blobs as released: what chains started on earlier versions run until governance
/// upgrades them (`runtime/releases/`, with their SHA-256 digests).
pub mod releases {
    /// spec_version 1: no block byte budget, flat gas per operation.
    pub const SPEC_1: &[u8] = include_bytes!("../../runtime/releases/spec-1.wasm");
}

/// Hand-written runtimes: `wat` modules with every ABI export, for tests of the executor's and
/// the governance pallet's refusals.
pub mod wat_runtime {
    use parity_scale_codec::Encode;
    use vexidus_runtime_api::RuntimeVersion;
    use vexidus_runtime_api::abi;

    /// A SCALE version section body for `vexidus` at `spec_version` and `abi_version`.
    pub fn version(spec_version: u32, abi_version: u32) -> Vec<u8> {
        RuntimeVersion {
            spec_name: "vexidus".into(),
            spec_version,
            impl_version: 1,
            abi_version,
        }
        .encode()
    }

    /// Appends a custom section (id 0) to a module.
    pub fn with_section(mut module: Vec<u8>, name: &str, data: &[u8]) -> Vec<u8> {
        fn leb(mut n: usize, out: &mut Vec<u8>) {
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
        }
        let mut payload = Vec::new();
        leb(name.len(), &mut payload);
        payload.extend_from_slice(name.as_bytes());
        payload.extend_from_slice(data);
        module.push(0);
        leb(payload.len(), &mut module);
        module.extend_from_slice(&payload);
        module
    }

    /// A module with every ABI export; `query_body` is the body of `vex_query`, `extra` goes into
    /// the module (imports first), `memory` is the memory declaration.
    pub fn runtime_wat(
        extra_imports: &str,
        memory: &str,
        query_body: &str,
        skip: Option<&str>,
    ) -> Vec<u8> {
        let mut entries = String::new();
        for e in abi::ENTRY_POINTS {
            if Some(*e) == skip {
                continue;
            }
            let body = if *e == abi::QUERY {
                query_body
            } else {
                "(i64.const 0)"
            };
            entries.push_str(&format!(
                "(func (export \"{e}\") (param i32 i32) (result i64) {body})\n"
            ));
        }
        let text = format!(
            r#"(module
                {extra_imports}
                {memory}
                (export "memory" (memory 0))
                (func (export "vex_alloc") (param i32) (result i32) (i32.const 1024))
                {entries}
            )"#
        );
        wat::parse_str(&text).expect("test wat parses")
    }

    /// A complete, valid module whose `vex_query` body is `query_body`.
    pub fn valid(query_body: &str) -> Vec<u8> {
        with_section(
            runtime_wat("", "(memory 1)", query_body, None),
            abi::VERSION_SECTION,
            &version(1, 1),
        )
    }

    /// A version section body with any spec name.
    pub fn named_version(spec_name: &str, spec_version: u32) -> Vec<u8> {
        RuntimeVersion {
            spec_name: spec_name.into(),
            spec_version,
            impl_version: 1,
            abi_version: 1,
        }
        .encode()
    }
}

/// The rehearsal build of `vexidus-node` that implements `e2e-binary-upgrade`, which
/// `scripts/test` makes with `VEXIDUS_EXTRA_UPGRADES=e2e-binary-upgrade` into
/// `<target>/upgrade-node/`.
pub fn upgrade_binary() -> PathBuf {
    let node = bin("vexidus-node");
    let path = node
        .parent()
        .and_then(|p| p.parent())
        .map(|t| t.join("upgrade-node/vexidus-node"))
        .unwrap_or_default();
    assert!(
        path.exists(),
        "{} is missing: scripts/test builds it (VEXIDUS_EXTRA_UPGRADES=e2e-binary-upgrade cargo build --bin vexidus-node)",
        path.display()
    );
    path
}

/// Serves one file over HTTP on loopback (any path), streaming it; counts the requests.
pub struct FileServer {
    /// `http://127.0.0.1:PORT/<name>`.
    pub url: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FileServer {
    /// Starts serving `file` as `/<name>`.
    pub fn start(file: &Path, name: &str) -> Result<Self> {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}/{name}", listener.local_addr()?);
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (file, counter) = (file.to_path_buf(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                let file = file.clone();
                std::thread::spawn(move || -> std::io::Result<()> {
                    let mut stream = stream;
                    let mut reader = BufReader::new(stream.try_clone()?);
                    let mut line = String::new();
                    while reader.read_line(&mut line)? > 0 && line != "\r\n" {
                        line.clear();
                    }
                    let mut f = std::fs::File::open(&file)?;
                    let len = f.metadata()?.len();
                    write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                    )?;
                    std::io::copy(&mut f, &mut stream)?;
                    stream.flush()
                });
            }
        });
        Ok(Self { url, hits })
    }

    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}
