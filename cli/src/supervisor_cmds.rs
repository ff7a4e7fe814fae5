//! `vexidus upgrade prepare` and `vexidus upgrade rollback`: the operator's hands on a
//! `vexvisor` home, through the same code the supervisor uses.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use vexidus_cli::RpcClient;
use vexidus_rpc_api::{PlanTarget, VexApiClient};
use vexidus_runtime_api::state::PlanStatus;
use vexidus_upgrade_contract::{RawUpgradeInfo, UpgradeInfo};
use vexvisor::Home;
use vexvisor::fetch::FetchOptions;
use vexvisor::verify::{SignaturePolicy, sha256_file};

/// A binary staged by `vexidus upgrade prepare`.
#[derive(serde::Serialize)]
pub struct Staged {
    /// The plan's name.
    pub name: String,
    /// Its height.
    pub height: u64,
    /// Where the binary is.
    pub path: String,
    /// Its SHA-256, bare hex.
    pub sha256: String,
    /// Whether a signature was verified.
    pub signed: bool,
    /// Where the plan stands on chain.
    pub plan_status: PlanStatus,
}

/// A backup swapped back into `current/` by `vexidus upgrade rollback`.
#[derive(serde::Serialize)]
pub struct Restored {
    /// The backup restored.
    pub restored: String,
    /// Its SHA-256, bare hex.
    pub sha256: String,
    /// The binary path it now occupies.
    pub current: String,
}

/// Fetches and verifies the active binary plan's binary into `<home>/vexvisor/upgrades/<name>/`.
pub fn prepare(client: &RpcClient, home: &Path, policy: SignaturePolicy) -> Result<Staged> {
    let api = client.api();
    let Some(plan) = client.wait(api.upgrade_plan())? else {
        bail!("there is no active upgrade plan; nothing to prepare");
    };
    let PlanTarget::Binary {
        binary_url,
        sha256,
        signature,
    } = &plan.target
    else {
        bail!(
            "plan {:?} is a runtime upgrade: it needs no binary (the chain carries it)",
            plan.name
        );
    };
    let status = client.wait(api.status())?;
    let raw = RawUpgradeInfo {
        name: plan.name.clone(),
        height: plan.height,
        binary_url: binary_url.clone(),
        sha256: hex::encode(sha256),
        signature: signature.as_ref().map(hex::encode),
        authority: status.upgrade_authority.to_string(),
        info_url: Some(plan.info_url.clone()),
        chain_id: status.chain_id,
    };
    let info = UpgradeInfo::validate(raw, "the active plan")?;
    let home = Home::new(home);
    home.create_dirs()?;
    let stop = AtomicBool::new(false);
    let staged = vexvisor::upgrade::stage(&home, &info, &policy, &FetchOptions::default(), &stop)?;
    Ok(Staged {
        sha256: info.sha256_hex(),
        signed: info.signature.is_some(),
        name: info.name,
        height: info.height,
        path: staged.display().to_string(),
        plan_status: plan.status,
    })
}

/// Lists the backups newest first and swaps the chosen one into `current/` (the current binary
/// is backed up first, so a rollback can itself be undone).
pub fn rollback(home: &Path, yes: bool, pick: Option<usize>) -> Result<Restored> {
    let home = Home::new(home);
    let backups = home.backups()?;
    if backups.is_empty() {
        bail!(
            "{} holds no backups; nothing to roll back to",
            home.backups_dir().display()
        );
    }
    let mut err = std::io::stderr();
    writeln!(
        err,
        "backups of {} (newest first):",
        home.current().display()
    )?;
    for (i, b) in backups.iter().enumerate() {
        writeln!(
            err,
            "  {}. {}  (replaced by {} at {})",
            i + 1,
            b.path.display(),
            b.replaced_by,
            b.timestamp
        )?;
    }
    let choice = match (pick, yes) {
        (Some(n), true) => n,
        (_, true) => bail!("--yes needs --pick N (which backup to restore)"),
        (preset, false) => {
            if !std::io::stdin().is_terminal() {
                bail!("no terminal to ask on; pass --yes --pick N");
            }
            let n = match preset {
                Some(n) => n,
                None => {
                    write!(err, "restore which one? [1-{}] ", backups.len())?;
                    err.flush()?;
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim().parse().context("expected a number")?
                }
            };
            write!(err, "swap backup {n} into current/? [y/N] ")?;
            err.flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            if !matches!(line.trim(), "y" | "Y" | "yes") {
                bail!("rollback cancelled; nothing changed");
            }
            n
        }
    };
    let Some(chosen) = choice.checked_sub(1).and_then(|i| backups.get(i)) else {
        bail!(
            "--pick {choice} is out of range: there are {} backups",
            backups.len()
        );
    };
    let current = home.current();
    let digest = sha256_file(&chosen.path)?;
    if current.exists() && sha256_file(&current)? == digest {
        bail!("backup {choice} is the binary already in current/; nothing to do");
    }
    // Hold a copy first: backing up the current binary rotates the oldest backup away, which
    // may be the chosen one. The holding file is a temporary that a crash leaves for
    // `vexvisor` to clear.
    let hold = vexvisor::home::temp_path(&home.dir().join("rollback-source"));
    std::fs::copy(&chosen.path, &hold)
        .with_context(|| format!("cannot copy {}", chosen.path.display()))?;
    if current.exists() {
        home.back_up_current("rollback")?;
    }
    let restored = vexvisor::upgrade::restore(&home, &hold);
    let _ = std::fs::remove_file(&hold);
    restored?;
    writeln!(
        err,
        "restored {}; restart the node (a running vexvisor picks it up at the next restart)",
        chosen.path.display()
    )?;
    Ok(Restored {
        restored: chosen.path.display().to_string(),
        sha256: hex::encode(digest),
        current: current.display().to_string(),
    })
}
