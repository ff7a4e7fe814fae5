//! Crash points for the supervisor's own tests.
//!
//! With `VEXVISOR_TEST_CRASH_AT=<point>` in its environment the supervisor aborts (no cleanup,
//! no destructors: as if killed) when it reaches the named point. The crash-safety tests use it
//! to stop the supervisor in the middle of every step and then check that a restart converges.
//! Without the variable each point is a no-op.

use std::sync::OnceLock;

/// Aborts the process if `VEXVISOR_TEST_CRASH_AT` names `point`.
pub fn point(point: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("VEXVISOR_TEST_CRASH_AT").ok());
    if at.as_deref() == Some(point) {
        eprintln!("vexvisor: test crash at {point}");
        std::process::abort();
    }
}
