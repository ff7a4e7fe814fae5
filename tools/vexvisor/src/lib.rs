//! `vexvisor`, the native supervisor that carries Vexidus binary upgrades (SPEC §7).
//!
//! Validators run `vexidus-node` under `vexvisor run`. When the node halts at an upgrade height
//! (exit code 42, with `data/upgrade-info.json` written), the supervisor gets the approved binary
//! onto the disk (pre-staged or downloaded), proves it is the one governance approved (SHA-256,
//! optional Ed25519 signature, a `--version` check), backs up and swaps atomically, restarts
//! the node with the same arguments, and rolls back by itself when the new binary fails within
//! the rollback window.
//!
//! It depends on nothing inside the node: it talks to it through the process (arguments, exit
//! code, signals) and the filesystem (`upgrade-info.json`, whose schema, like the exit code, is defined once in
//! `vexidus-upgrade-contract`), and shares only the signing rule and the upgrade-name rule
//! from `vexidus-runtime-api`.
//!
//! Every step is crash-safe: files are written under temporary names and renamed into place,
//! the swap is journalled in `vexvisor/state.json`, and a restart first clears temporaries and
//! resolves the journal ([`upgrade::recover`]).

pub mod fetch;
pub mod home;
pub mod log;
pub mod state;
pub mod status;
pub mod stop;
pub mod supervisor;
pub mod test_hook;
pub mod upgrade;
pub mod verify;

pub use home::Home;
pub use vexidus_upgrade_contract::UpgradeInfo;
