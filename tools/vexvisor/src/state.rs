//! What the supervisor remembers across its own restarts (`vexvisor/state.json`, written
//! atomically): the failure count, the last failure, the swap journal and the binary on
//! probation.

use crate::home::{Home, unix_now, write_atomic};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The persistent state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Failures counted towards the breaker (cleared by a long healthy run).
    pub failures: u32,
    /// The most recent failure.
    pub last_failure: Option<Failure>,
    /// Journal of a swap in progress: written before `current/` is replaced, cleared after.
    /// Found at start-up, it tells whether the swap happened (the digest of `current/`).
    pub swap: Option<Swap>,
    /// A freshly installed binary that must survive the rollback window.
    pub probation: Option<Swap>,
    /// Upgrades this supervisor installed, oldest first (the last 32).
    pub applied: Vec<String>,
}

/// One failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Unix seconds.
    pub at: u64,
    /// The upgrade involved, if any.
    pub upgrade: Option<String>,
    /// What happened.
    pub what: String,
}

/// A binary replacing another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swap {
    /// The upgrade.
    pub name: String,
    /// SHA-256 of the new binary, hex.
    pub sha256: String,
    /// The backup holding the binary it replaced.
    pub backup: PathBuf,
}

impl State {
    /// Loads the state; a missing file is a fresh state. A file that cannot be parsed (it is
    /// written atomically, so only outside hands make one) is moved aside with a warning: the
    /// node's liveness matters more than the supervisor's bookkeeping.
    pub fn load(home: &Home) -> Result<Self> {
        let path = home.state_file();
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(s) => Ok(s),
                Err(e) => {
                    let aside = path.with_extension(format!("json.corrupt-{}", unix_now()));
                    std::fs::rename(&path, &aside)?;
                    crate::log::warn(
                        "state_corrupt",
                        &[
                            ("file", &path.display().to_string()),
                            ("error", &e.to_string()),
                            ("moved_to", &aside.display().to_string()),
                        ],
                    );
                    Ok(Self::default())
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Saves the state atomically.
    pub fn save(&self, home: &Home) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        write_atomic(&home.state_file(), &bytes)
    }

    /// Records a failure and returns the new count.
    pub fn record_failure(&mut self, upgrade: Option<&str>, what: String) -> u32 {
        self.failures += 1;
        self.last_failure = Some(Failure {
            at: unix_now(),
            upgrade: upgrade.map(str::to_string),
            what,
        });
        self.failures
    }

    /// Notes an installed upgrade.
    pub fn note_applied(&mut self, name: &str) {
        self.applied.retain(|n| n != name);
        self.applied.push(name.to_string());
        let excess = self.applied.len().saturating_sub(32);
        self.applied.drain(..excess);
    }
}
