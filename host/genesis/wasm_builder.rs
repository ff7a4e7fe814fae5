//! The one command line that builds the runtime blob, shared by `build.rs` and the
//! reproducibility test so both build exactly the same way.
//!
//! A nested `cargo rustc` of `vexidus-runtime` for `wasm32-unknown-unknown` with the
//! `runtime-wasm` profile, in a target directory of its own. Outer `RUSTFLAGS` and compiler
//! wrappers are dropped and every machine-specific path is remapped to a fixed prefix, so the
//! bytes depend only on the sources, `Cargo.lock` and the pinned toolchain.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The runtime's stack, at the bottom of linear memory (the linker's `--stack-first`, Rust's
/// default for wasm): an overflow runs below address 0 and traps instead of corrupting data. A
/// transfer uses about 2 KiB of it; Rust's default is 1 MiB.
const STACK_BYTES: u32 = 128 * 1024;
/// The runtime's initial linear memory: the stack, the data (about 11 KiB) and about 240 KiB of
/// heap, more than an ordinary call allocates.
const INITIAL_MEMORY_BYTES: u32 = 384 * 1024;

/// Builds the runtime blob of the workspace at `root` into `target_dir` and returns its path.
pub fn build_runtime(root: &Path, target_dir: &Path, features: &str) -> Result<PathBuf, String> {
    ensure_wasm_target(root)?;
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let cargo_home = env::var("CARGO_HOME")
        .ok()
        .or_else(|| env::var("HOME").ok().map(|h| format!("{h}/.cargo")));
    let mut rustflags = vec![
        format!("--remap-path-prefix={}=/vexidus", root.display()),
        format!("--remap-path-prefix={}=/target", target_dir.display()),
    ];
    if let Some(home) = cargo_home {
        rustflags.push(format!("--remap-path-prefix={home}=/cargo"));
    }
    // Start with memory enough for an ordinary call, so calls do not grow it: every call runs
    // in a fresh instance, and a grown memory must be shrunk back with `mprotect` when its slot
    // is reused, which takes the process-wide mmap lock and flushes every core's TLB (it was
    // the bottleneck of parallel execution). But no more than that: after each call the host
    // scans the page table of the whole initial memory for pages to reset, so a small stack
    // and a small heap make every call cheaper.
    rustflags.push(format!("-Clink-arg=-zstack-size={STACK_BYTES}"));
    rustflags.push(format!(
        "-Clink-arg=--initial-memory={INITIAL_MEMORY_BYTES}"
    ));
    // The toolchain's stack pointer is the runtime's one mutable global. Exported, the host can
    // set it back after a call and run the next call in the same instance (executor/warm.rs).
    rustflags.push("-Clink-arg=--export=__stack_pointer".into());

    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "rustc",
            "--locked",
            "-p",
            "vexidus-runtime",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .args(["--profile", "runtime-wasm", "--crate-type", "cdylib"])
        .arg("--target-dir")
        .arg(target_dir);
    if !features.is_empty() {
        cmd.args(["--features", features]);
    }
    for var in [
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_ENCODED_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", rustflags.join("\x1f"));
    cmd.env("SOURCE_DATE_EPOCH", "0");

    let status = cmd
        .status()
        .map_err(|e| format!("cannot run cargo to build the runtime: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the runtime for wasm32-unknown-unknown failed ({status}); is the target installed? \
             `rustup target add wasm32-unknown-unknown` (rust-toolchain.toml asks for it)"
        ));
    }
    Ok(target_dir.join("wasm32-unknown-unknown/runtime-wasm/vexidus_runtime.wasm"))
}

/// Installs the `wasm32-unknown-unknown` standard library with rustup when the toolchain lacks
/// it (a fresh machine, or rustup told not to auto-install), so a plain `cargo build` works from
/// a clean clone. Without rustup the error says what to install.
fn ensure_wasm_target(root: &Path) -> Result<(), String> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .current_dir(root)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {rustc}: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot
        .join("lib/rustlib/wasm32-unknown-unknown/lib")
        .exists()
    {
        return Ok(());
    }
    println!(
        "cargo:warning=installing the wasm32-unknown-unknown target with rustup (needed to build the runtime)"
    );
    let status = Command::new("rustup")
        .current_dir(root)
        .args(["target", "add", "wasm32-unknown-unknown"])
        .status()
        .map_err(|e| format!("the wasm32-unknown-unknown target is missing and rustup cannot be run ({e}); install the target for {}", sysroot.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`rustup target add wasm32-unknown-unknown` failed ({status}); the runtime cannot be built without it"
        ))
    }
}

/// The sources a node binary is built from (every crate of the workspace it links).
#[allow(dead_code)]
pub const DIGEST_DIRS: [&str; 14] = [
    "host/blob/src",
    "host/executor/src",
    "host/storage/src",
    "host/genesis/src",
    "host/chain/src",
    "host/pool/src",
    "host/rpc-api/src",
    "host/node/src",
    "runtime/src",
    "runtime-api/src",
    "governance-pallet/src",
    "consensus/src",
    "network/src",
    "upgrade-contract/src",
];

/// A digest of every file (path and bytes, in path order) under the node's source directories:
/// `vexidus-node --version` prints it, and the end-to-end tests compare it with their own
/// sources to refuse a stale binary.
#[allow(dead_code)]
pub fn source_digest(root: &Path) -> String {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    for dir in DIGEST_DIRS {
        walk(&root.join(dir), &mut files);
    }
    files.sort();
    let mut h = fnv::Hasher::default();
    for f in files {
        if let (Ok(rel), Ok(bytes)) = (f.strip_prefix(root), std::fs::read(&f)) {
            h.update(rel.to_string_lossy().as_bytes());
            h.update(&bytes);
        }
    }
    h.finish_hex()
}

/// A dependency-free 64-bit FNV-1a, enough to tell source trees apart (build scripts have no
/// access to the workspace's crates).
mod fnv {
    #[derive(Default)]
    pub struct Hasher(u64, u64);
    impl Hasher {
        pub fn update(&mut self, bytes: &[u8]) {
            if self.0 == 0 {
                self.0 = 0xcbf2_9ce4_8422_2325;
                self.1 = 0x8422_2325_cbf2_9ce4;
            }
            for b in bytes {
                self.0 = (self.0 ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3);
                self.1 = (self.1 ^ (*b as u64).rotate_left(7)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            self.0 ^= bytes.len() as u64;
        }
        pub fn finish_hex(&self) -> String {
            format!("{:016x}{:016x}", self.0, self.1)
        }
    }
}
