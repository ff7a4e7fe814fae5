//! `vexvisor run`: runs the node, carries binary upgrades on exit code 42, restarts with
//! backoff, rolls back a new binary that fails within the rollback window, and stops on the
//! operator's SIGINT/SIGTERM after forwarding it.

use crate::fetch::FetchOptions;
use crate::home::Home;
use crate::state::State;
use crate::stop::sleep_unless;
use crate::upgrade;
use crate::verify::{SignaturePolicy, check_executable, sha256_file};
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};
use vexidus_upgrade_contract::UpgradeInfo;

/// Settings of `vexvisor run`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The home directory.
    pub home: Home,
    /// Arguments for the node (`--data-dir <home>/data` is added when absent).
    pub node_args: Vec<OsString>,
    /// Signature policy.
    pub policy: SignaturePolicy,
    /// Download limits.
    pub fetch: FetchOptions,
    /// A new binary that fails sooner than this after its start is rolled back.
    pub rollback_window: Duration,
    /// Backoff unit: the n-th failure waits 2^min(n,5) units (2, 4, 8, 16, 32 s by default).
    pub backoff_unit: Duration,
    /// Failures after which the supervisor gives up.
    pub max_failures: u32,
    /// A node run this long clears the failure count.
    pub healthy_after: Duration,
    /// Clear the failure count at start (the operator's acknowledgement after the breaker).
    pub reset_failures: bool,
}

/// The backoff before restarting after the `failures`-th failure.
pub fn backoff(unit: Duration, failures: u32) -> Duration {
    unit * 2u32.pow(failures.clamp(1, 5))
}

/// Operator signals: set `stop` and forward the signal to the running node.
struct Signals {
    stop: Arc<AtomicBool>,
    child: Arc<AtomicI32>,
}

impl Signals {
    fn install() -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let child = Arc::new(AtomicI32::new(0));
        let mut signals = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM])
            .context("cannot install signal handlers")?;
        let (s, c) = (stop.clone(), child.clone());
        std::thread::spawn(move || {
            for sig in signals.forever() {
                s.store(true, Ordering::SeqCst);
                let pid = c.load(Ordering::SeqCst);
                crate::log::info(
                    "signal",
                    &[
                        ("signal", &sig.to_string()),
                        ("forwarded_to", &pid.to_string()),
                    ],
                );
                if pid > 0 {
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        });
        Ok(Self { stop, child })
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Holds `vexvisor/lock` for the life of the process: one supervisor per home.
struct Lock(#[allow(dead_code)] std::fs::File);

fn lock(home: &Home) -> Result<Lock> {
    use std::os::fd::AsRawFd;
    let path = home.lock_file();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock(2) on a file descriptor we own.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        bail!(
            "another vexvisor is running on {} (it holds {})",
            home.root().display(),
            path.display()
        );
    }
    Ok(Lock(f))
}

/// The node arguments, with `--data-dir <home>/data` added when absent, and the data
/// directory they name.
pub fn node_args(home: &Home, args: &[OsString]) -> (Vec<OsString>, PathBuf) {
    let mut data_dir = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--data-dir" {
            data_dir = it.next().map(PathBuf::from);
        } else if let Some(v) = s.strip_prefix("--data-dir=") {
            data_dir = Some(PathBuf::from(v));
        }
    }
    match data_dir {
        Some(d) => (args.to_vec(), d),
        None => {
            let d = home.data_dir();
            let mut out = args.to_vec();
            out.push("--data-dir".into());
            out.push(d.clone().into());
            (out, d)
        }
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

/// Runs the supervisor until the node exits cleanly, the operator stops it, or the breaker
/// trips. Returns the process exit code.
pub fn run(cfg: RunConfig) -> Result<i32> {
    let home = &cfg.home;
    home.create_dirs()?;
    let _lock = lock(home)?;
    for p in home.remove_temporaries()? {
        crate::log::info("removed_temporary", &[("path", &p.display().to_string())]);
    }
    let mut state = State::load(home)?;
    upgrade::recover(home, &mut state)?;
    if cfg.reset_failures && state.failures > 0 {
        crate::log::info("failures_reset", &[("were", &state.failures.to_string())]);
        state.failures = 0;
        state.save(home)?;
    }
    if state.failures >= cfg.max_failures {
        bail!(breaker_message(home, &state));
    }
    check_executable(&home.current()).with_context(|| {
        format!(
            "no runnable node binary; set one up with `vexvisor init --home {} --binary FILE`",
            home.root().display()
        )
    })?;
    let (args, data_dir) = node_args(home, &cfg.node_args);
    let signals = Signals::install()?;
    loop {
        if signals.stopped() {
            crate::log::info("stopped", &[("reason", "operator signal")]);
            return Ok(0);
        }
        let started = Instant::now();
        let status = run_node(home, &args, &signals, &cfg, &mut state)?;
        let ran = started.elapsed();
        let ran_s = format!("{:.1}", ran.as_secs_f64());
        if signals.stopped() {
            crate::log::info(
                "stopped",
                &[("reason", "operator signal"), ("node", &describe(status))],
            );
            return Ok(0);
        }
        if status.code() == Some(0) {
            crate::log::info(
                "node_exited",
                &[("status", "exit code 0"), ("ran_s", &ran_s)],
            );
            return Ok(0);
        }
        if status.code() == Some(vexidus_upgrade_contract::EXIT_CODE) {
            let code = format!("exit code {}", vexidus_upgrade_contract::EXIT_CODE);
            crate::log::info("node_halted", &[("status", &code), ("ran_s", &ran_s)]);
            match carry_upgrade(&cfg, &data_dir, &mut state, &signals) {
                Ok(()) => continue,
                Err(Step::Fatal(e)) => return Err(e),
                Err(Step::Failed { upgrade, error }) => {
                    let what = format!("{error:#}");
                    crate::log::error("upgrade_failed", &[("name", &upgrade), ("error", &what)]);
                    fail(&cfg, &mut state, Some(&upgrade), what, ran, &signals)?;
                    continue;
                }
            }
        }
        let what = format!("node failed ({})", describe(status));
        crate::log::error(
            "node_failed",
            &[("status", &describe(status)), ("ran_s", &ran_s)],
        );
        let upgrade = state.probation.as_ref().map(|p| p.name.clone());
        fail(&cfg, &mut state, upgrade.as_deref(), what, ran, &signals)?;
    }
}

/// Starts the node and waits for it; confirms a binary on probation once it has outlived the
/// rollback window, and clears the failure count after a healthy run.
fn run_node(
    home: &Home,
    args: &[OsString],
    signals: &Signals,
    cfg: &RunConfig,
    state: &mut State,
) -> Result<ExitStatus> {
    let binary = home.current();
    crate::log::info("node_start", &[("binary", &binary.display().to_string())]);
    let mut cmd = Command::new(&binary);
    cmd.args(args);
    let parent = std::process::id() as i32;
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // The node must not outlive a supervisor that is killed outright.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    signals.child.store(child.id() as i32, Ordering::SeqCst);
    if signals.stopped() {
        // The signal came between our check and the spawn.
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let ran = started.elapsed();
        if ran >= cfg.rollback_window
            && let Some(p) = state.probation.take()
        {
            crate::log::info(
                "upgrade_confirmed",
                &[("name", &p.name), ("ran_s", &ran.as_secs().to_string())],
            );
            save_while_running(home, state);
        }
        if ran >= cfg.healthy_after && state.failures > 0 {
            state.failures = 0;
            save_while_running(home, state);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    signals.child.store(0, Ordering::SeqCst);
    Ok(status)
}

/// Saves the state while the node runs; a failure is logged, not fatal: the node keeps running
/// and the next save retries.
fn save_while_running(home: &Home, state: &State) {
    if let Err(e) = state.save(home) {
        crate::log::warn("state_save_failed", &[("error", &format!("{e:#}"))]);
    }
}

/// How an upgrade attempt ended badly.
enum Step {
    /// Stop the supervisor: the upgrade information itself is unusable.
    Fatal(anyhow::Error),
    /// Count a failure and retry after the backoff.
    Failed {
        upgrade: String,
        error: anyhow::Error,
    },
}

/// Exit code 42: validate the information, stage, verify and install the binary.
fn carry_upgrade(
    cfg: &RunConfig,
    data_dir: &std::path::Path,
    state: &mut State,
    signals: &Signals,
) -> Result<(), Step> {
    let home = &cfg.home;
    let path = vexidus_upgrade_contract::path_in(data_dir);
    let info = UpgradeInfo::read(&path).map_err(|e| {
        Step::Fatal(anyhow::anyhow!(
            "{e}\nThe node binary in {} was left as it was. Check the node's log; when the \
             file is fixed (or the node rewrites it), start vexvisor again.",
            home.current().display()
        ))
    })?;
    crate::log::info(
        "upgrade_start",
        &[
            ("name", &info.name),
            ("height", &info.height.to_string()),
            ("url", &info.binary_url),
            ("sha256", &info.sha256_hex()),
        ],
    );
    let failed = |error: anyhow::Error| Step::Failed {
        upgrade: info.name.clone(),
        error,
    };
    let current = sha256_file(&home.current()).map_err(failed)?;
    if current == info.sha256 {
        // The binary governance approved for this upgrade is running and halted for it anyway.
        if let Some(p) = state.probation.clone() {
            rollback(home, state, &p)
                .map_err(|e| Step::Fatal(e.context("automatic rollback failed")))?;
        }
        return Err(failed(anyhow::anyhow!(
            "the binary for upgrade {:?} is installed but halted for that upgrade again: it does \
             not implement it",
            info.name
        )));
    }
    let staged =
        upgrade::stage(home, &info, &cfg.policy, &cfg.fetch, &signals.stop).map_err(failed)?;
    upgrade::install(home, &info, &staged, state).map_err(failed)?;
    Ok(())
}

fn rollback(home: &Home, state: &mut State, p: &crate::state::Swap) -> Result<()> {
    upgrade::restore(home, &p.backup)?;
    crate::log::warn(
        "rolled_back",
        &[
            ("name", &p.name),
            ("restored", &p.backup.display().to_string()),
        ],
    );
    state.probation = None;
    state.save(home)
}

/// Counts a failure; rolls back a binary on probation that failed within the window; trips
/// the breaker; waits the backoff.
fn fail(
    cfg: &RunConfig,
    state: &mut State,
    upgrade: Option<&str>,
    what: String,
    ran: Duration,
    signals: &Signals,
) -> Result<()> {
    let home = &cfg.home;
    if ran >= cfg.healthy_after {
        state.failures = 0;
    }
    let n = state.record_failure(upgrade, what);
    if let Some(p) = state.probation.clone() {
        if ran < cfg.rollback_window {
            rollback(home, state, &p).context("automatic rollback failed")?;
        } else {
            state.probation = None;
        }
    }
    state.save(home)?;
    if n >= cfg.max_failures {
        bail!(breaker_message(home, state));
    }
    let wait = backoff(cfg.backoff_unit, n);
    crate::log::info(
        "restart_backoff",
        &[
            ("failures", &n.to_string()),
            ("of", &cfg.max_failures.to_string()),
            ("wait_s", &format!("{:.3}", wait.as_secs_f64())),
        ],
    );
    sleep_unless(&signals.stop, wait);
    Ok(())
}

fn breaker_message(home: &Home, state: &State) -> String {
    let last = state.last_failure.as_ref();
    let upgrade = last.and_then(|f| f.upgrade.clone());
    let what = last.map(|f| f.what.clone()).unwrap_or_default();
    let root = home.root().display();
    let mut msg = format!("vexvisor gives up after {} failures. ", state.failures);
    match upgrade {
        Some(name) => msg.push_str(&format!(
            "Upgrade {name:?} did not go through; the last failure: {what}.\nNext step: read \
             the node's log above; if the upgrade binary is at fault, put a working one at \
             {root}/vexvisor/upgrades/{name}/vexidus-node (it must match the plan's SHA-256), \
             or roll back with `vexidus upgrade rollback --home {root}`; then start again with \
             `vexvisor run --home {root} --reset-failures -- …`."
        )),
        None => msg.push_str(&format!(
            "The last failure: {what}.\nNext step: read the node's log above and fix the cause; \
             then start again with `vexvisor run --home {root} --reset-failures -- …`."
        )),
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_32_units() {
        let unit = Duration::from_secs(1);
        let waits: Vec<u64> = (1..=7).map(|n| backoff(unit, n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 32, 32]);
    }

    #[test]
    fn data_dir_is_added_or_taken_from_the_arguments() {
        let home = Home::new("/h");
        let (args, d) = node_args(&home, &["--dev".into()]);
        assert_eq!(d, PathBuf::from("/h/data"));
        assert_eq!(args, ["--dev", "--data-dir", "/h/data"].map(OsString::from));
        let (_, d) = node_args(&home, &["--data-dir".into(), "/x".into()]);
        assert_eq!(d, PathBuf::from("/x"));
        let (_, d) = node_args(&home, &["--data-dir=/y".into()]);
        assert_eq!(d, PathBuf::from("/y"));
    }
}
