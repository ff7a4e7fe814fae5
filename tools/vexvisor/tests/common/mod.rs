//! Fixtures for the supervisor tests, in the spirit of Cosmovisor's: fake node programs (shell
//! scripts) that write an upgrade file and exit 42, binaries served from a local HTTP server,
//! and the real `vexvisor` binary run as a process.

#![allow(dead_code, missing_docs)]

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vexidus_runtime_api::signing::{BINARY_DOMAIN, Keypair};

pub const NAME: &str = "up1";
pub const CHAIN: &str = "test-chain";

/// The authority key of the tests.
pub fn authority() -> Keypair {
    Keypair::from_seed([5; 32])
}

/// A fake node program. `version` is its first `--version` line (and makes its bytes unique);
/// `implements` its `implemented upgrades:` line; `body` what it does when run, after
/// appending `version` to `<home>/runs.log`. `$DATA` is its data directory and `$HOME_DIR` the
/// supervisor home.
pub fn node_script(version: &str, implements: &str, body: &str) -> Vec<u8> {
    format!(
        r#"#!/bin/sh
if [ "$1" = "--version" ]; then
  echo "{version}"
  echo "implemented upgrades: {implements}"
  exit 0
fi
DATA=""; prev=""
for a in "$@"; do
  if [ "$prev" = "--data-dir" ]; then DATA="$a"; fi
  prev="$a"
done
HOME_DIR="$(dirname "$DATA")"
mkdir -p "$DATA"
echo "{version}" >> "$HOME_DIR/runs.log"
{body}
"#
    )
    .into_bytes()
}

/// Body: write `<home>/next-info.json` as the upgrade file (atomically) and exit 42.
pub const HALT: &str = r#"cp "$HOME_DIR/next-info.json" "$DATA/.info.tmp" && mv "$DATA/.info.tmp" "$DATA/upgrade-info.json"
exit 42"#;
/// Body: exit cleanly.
pub const EXIT_OK: &str = "exit 0";
/// Body: crash at once.
pub const CRASH: &str = "exit 3";
/// Body: run until SIGTERM, note it, exit 0.
pub const SLEEP_UNTIL_TERM: &str = r#"trap 'echo "got TERM" >> "$HOME_DIR/runs.log"; exit 0' TERM
while true; do sleep 0.05; done"#;

/// The old binary: halts for the upgrade.
pub fn old_node() -> Vec<u8> {
    node_script("fake-node v1", "none", HALT)
}

/// A new binary that implements the upgrade and then exits cleanly.
pub fn new_node() -> Vec<u8> {
    node_script("fake-node v2", NAME, EXIT_OK)
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A supervisor home in a temporary directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
}

impl Fixture {
    /// A home whose current binary is `current` (via `vexvisor init`).
    pub fn new(current: &[u8]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("home");
        let f = Self { dir, home };
        let bin = f.write_program("initial-node", current);
        let out = Command::new(vexvisor_bin())
            .args(["init", "--home"])
            .arg(&f.home)
            .arg("--binary")
            .arg(&bin)
            .output()
            .expect("vexvisor init");
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        f
    }

    /// Writes an executable file outside the home.
    pub fn write_program(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        write_executable(&p, bytes);
        p
    }

    /// Writes the upgrade file the old node will copy into its data directory.
    pub fn set_info(&self, info: &serde_json::Value) {
        self.set_info_text(&info.to_string());
    }

    pub fn set_info_text(&self, text: &str) {
        let p = self.home.join("next-info.json");
        let tmp = self.home.join("next-info.json.tmp");
        std::fs::write(&tmp, text).expect("write info");
        std::fs::rename(&tmp, &p).expect("rename info");
    }

    /// Stages `bytes` as the binary of `name`, atomically.
    pub fn stage(&self, name: &str, bytes: &[u8]) {
        let dir = self.vexvisor().join("upgrades").join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        let tmp = self.dir.path().join("staging.tmp");
        write_executable(&tmp, bytes);
        std::fs::rename(&tmp, dir.join("vexidus-node")).expect("stage");
    }

    pub fn vexvisor(&self) -> PathBuf {
        self.home.join("vexvisor")
    }

    pub fn current(&self) -> Vec<u8> {
        std::fs::read(self.vexvisor().join("current/vexidus-node")).expect("current binary")
    }

    pub fn staged(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(
            self.vexvisor()
                .join("upgrades")
                .join(name)
                .join("vexidus-node"),
        )
        .ok()
    }

    /// Lines of `<home>/runs.log`: which binaries ran, in order.
    pub fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.home.join("runs.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Backup files, any order.
    pub fn backups(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.vexvisor().join("backups"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Every temporary file left in the supervisor's directories.
    pub fn temporaries(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.vexvisor()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if e.file_name().to_string_lossy().contains(".tmp-") {
                    out.push(p);
                }
            }
        }
        out
    }

    /// `vexvisor run --home H <flags> --`, stderr to a log file, with a short backoff.
    pub fn run(&self, flags: &[&str], envs: &[(&str, &str)]) -> Supervisor {
        let log = self.dir.path().join(format!(
            "vexvisor-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos()
        ));
        let mut cmd = Command::new(vexvisor_bin());
        cmd.args(["run", "--home"]).arg(&self.home);
        if !flags.contains(&"--backoff-unit-ms") {
            cmd.args(["--backoff-unit-ms", "10"]);
        }
        cmd.args(flags)
            .arg("--")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Supervisor {
            child: cmd.spawn().expect("spawn vexvisor"),
            log,
        }
    }

    /// Runs to the end (at most 60 s) and returns the exit status and the log.
    pub fn run_to_end(&self, flags: &[&str]) -> (ExitStatus, String) {
        let mut s = self.run(flags, &[]);
        let status = s.wait(Duration::from_secs(60));
        (status, s.log())
    }
}

/// A running `vexvisor`.
pub struct Supervisor {
    pub child: Child,
    pub log: PathBuf,
}

impl Supervisor {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the exit; panics with the log after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("vexvisor did not finish in time; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let started = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                started.elapsed() < timeout,
                "log never showed {needle:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn vexvisor_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vexvisor")
}

pub fn write_executable(p: &Path, bytes: &[u8]) {
    std::fs::write(p, bytes).expect("write program");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The upgrade file for `binary` served at `url`, optionally signed.
pub fn info_for(binary: &[u8], url: &str, signer: Option<&Keypair>) -> serde_json::Value {
    let digest = sha256(binary);
    serde_json::json!({
        "name": NAME, "height": 120, "binary_url": url, "sha256": hex::encode(digest),
        "signature": signer.map(|k| hex::encode(k.sign(BINARY_DOMAIN, CHAIN, &digest).0)),
        "authority": authority().public().to_string(), "info_url": null, "chain_id": CHAIN,
    })
}

/// What the test HTTP server does for a path.
#[derive(Clone)]
pub enum Route {
    /// 200 with the bytes.
    Bytes(Vec<u8>),
    /// Announces the full length, sends half, closes.
    Truncated(Vec<u8>),
    /// Accepts and never answers.
    Hang,
}

/// A tiny HTTP/1.1 server on loopback; unknown paths get 404. Counts requests per path.
pub struct HttpServer {
    pub base: String,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl HttpServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (r, h) = (routes.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, h) = (r.clone(), h.clone());
                std::thread::spawn(move || serve(stream, &r, &h));
            }
        });
        Self { base, routes, hits }
    }

    pub fn route(&self, path: &str, route: Route) -> String {
        self.routes
            .lock()
            .expect("routes")
            .insert(path.to_string(), route);
        format!("{}{path}", self.base)
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .expect("hits")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

fn serve(
    mut stream: std::net::TcpStream,
    routes: &Mutex<HashMap<String, Route>>,
    hits: &Mutex<HashMap<String, usize>>,
) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
            break;
        }
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    *hits.lock().expect("hits").entry(path.clone()).or_default() += 1;
    let route = routes.lock().expect("routes").get(&path).cloned();
    let head = |len: usize| {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    match route {
        Some(Route::Bytes(b)) => {
            let _ = stream.write_all(head(b.len()).as_bytes());
            let _ = stream.write_all(&b);
        }
        Some(Route::Truncated(b)) => {
            let _ = stream.write_all(head(b.len()).as_bytes());
            let _ = stream.write_all(&b[..b.len() / 2]);
        }
        Some(Route::Hang) => {
            let mut sink = [0u8; 64];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            let _ = stream.read(&mut sink);
        }
        None => {
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    }
    let _ = stream.flush();
}
