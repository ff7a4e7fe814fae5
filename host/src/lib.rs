//! The Vexidus node: executor, storage, chain, transaction pool, JSON-RPC and the pieces the
//! `vexidus-node` binary wires together.
pub mod executor;

/// The genesis runtime blob, built from `runtime/` by this crate's build script.
pub const GENESIS_RUNTIME: &[u8] = include_bytes!(env!("VEXIDUS_RUNTIME_WASM"));
pub mod bench;
pub mod chain;
pub mod driver;
pub mod genesis;
pub mod harness;
pub mod node;
pub mod p2p;
pub mod pool;
pub mod readiness;
pub mod rpc;
pub mod sigcheck;
pub mod stm;
pub mod storage;

/// Binary-upgrade names implemented by every build of this version of the node.
pub const BUILTIN_UPGRADES: &[&str] = &[];

/// Every binary-upgrade name this binary implements: [`BUILTIN_UPGRADES`] plus the
/// comma-separated names in `VEXIDUS_EXTRA_UPGRADES` when the binary was built (for tests and
/// rehearsals: `VEXIDUS_EXTRA_UPGRADES=v2 cargo build`).
pub fn implemented_upgrades() -> Vec<String> {
    let extra = option_env!("VEXIDUS_EXTRA_UPGRADES").unwrap_or("");
    BUILTIN_UPGRADES
        .iter()
        .map(|s| s.to_string())
        .chain(
            extra
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        )
        .collect()
}
