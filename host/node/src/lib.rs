//! The Vexidus node service: it wires the chain, the pool, the consensus driver, the p2p glue,
//! readiness and JSON-RPC together, halts for binary upgrades, and holds the `vexidus-node`
//! binary.

pub mod allocator;
pub mod driver;
pub mod logging;
pub mod node;
pub mod p2p;
pub mod readiness;
pub mod rpc;
pub mod state;

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
