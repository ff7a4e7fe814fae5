//! The upgrade steps of SPEC §7 that touch files: stage a verified binary (pre-staged or
//! downloaded), back up the current one, swap atomically, and roll back. Shared by the
//! supervisor and by `vexidus upgrade prepare|rollback`.

use crate::fetch::{FetchOptions, download};
use crate::home::{Home, install_binary, sync_dir};
use crate::state::{State, Swap};
use crate::test_hook;
use crate::verify::{SignaturePolicy, sha256_file, verify_binary};
use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use vexidus_upgrade_contract::UpgradeInfo;

/// Name a refused pre-staged binary is moved to, beside where it was.
pub const REJECTED: &str = "vexidus-node.rejected";

/// Steps 2 and 3: returns `upgrades/<name>/vexidus-node`, verified. A pre-staged binary is used
/// when it passes every check; one that does not is moved aside to [`REJECTED`] (so it never
/// blocks a retry) and the binary is downloaded. A download is verified before it is renamed
/// into place, so the staged path only ever holds a binary that passed.
pub fn stage(
    home: &Home,
    info: &UpgradeInfo,
    policy: &SignaturePolicy,
    fetch: &FetchOptions,
    stop: &AtomicBool,
) -> Result<PathBuf> {
    let staged = home.staged(&info.name);
    if staged.exists() {
        match verify_binary(&staged, info, policy) {
            Ok(_) => {
                crate::log::info(
                    "using_staged_binary",
                    &[
                        ("name", &info.name),
                        ("path", &staged.display().to_string()),
                    ],
                );
                return Ok(staged);
            }
            Err(e) => {
                let aside = staged.with_file_name(REJECTED);
                std::fs::rename(&staged, &aside)
                    .with_context(|| format!("cannot move {} aside", staged.display()))?;
                crate::log::warn(
                    "staged_binary_rejected",
                    &[
                        ("name", &info.name),
                        ("error", &format!("{e:#}")),
                        ("moved_to", &aside.display().to_string()),
                    ],
                );
            }
        }
    }
    let dir = home.upgrade_dir(&info.name);
    crate::log::info(
        "download_start",
        &[("name", &info.name), ("url", &info.binary_url)],
    );
    let tmp = download(&info.binary_url, &dir, fetch, stop)?;
    test_hook::point("downloaded");
    let checked = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(anyhow::Error::from)
        .and_then(|()| verify_binary(&tmp, info, policy));
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!(
            "the binary downloaded for upgrade {:?} was refused",
            info.name
        )));
    }
    test_hook::point("verified");
    std::fs::rename(&tmp, &staged)
        .with_context(|| format!("cannot rename into {}", staged.display()))?;
    sync_dir(&dir)?;
    crate::log::info(
        "binary_staged",
        &[
            ("name", &info.name),
            ("path", &staged.display().to_string()),
            ("sha256", &info.sha256_hex()),
        ],
    );
    Ok(staged)
}

/// Step 4: backs up `current/` and swaps `staged` in. The swap is journalled in `state` first,
/// so a crash at any instant is resolved by [`recover`]; `current/` always holds a complete
/// binary (the rename is atomic). Afterwards the new binary is on probation.
pub fn install(
    home: &Home,
    info: &UpgradeInfo,
    staged: &std::path::Path,
    state: &mut State,
) -> Result<()> {
    let backup = home.back_up_current(&info.name)?;
    test_hook::point("backed-up");
    let swap = Swap {
        name: info.name.clone(),
        sha256: info.sha256_hex(),
        backup,
    };
    state.swap = Some(swap.clone());
    state.save(home)?;
    test_hook::point("journalled");
    install_binary(staged, &home.current(), &info.sha256)?;
    test_hook::point("swapped");
    state.swap = None;
    state.note_applied(&info.name);
    state.probation = Some(swap);
    state.save(home)?;
    crate::log::info(
        "binary_installed",
        &[
            ("name", &info.name),
            ("sha256", &info.sha256_hex()),
            (
                "backup",
                &state
                    .probation
                    .as_ref()
                    .map(|p| p.backup.display().to_string())
                    .unwrap_or_default(),
            ),
        ],
    );
    Ok(())
}

/// Finishes what a crash interrupted: a journalled swap either happened (`current/` has the new
/// digest: the binary goes on probation) or did not (the journal is dropped; the old binary will
/// halt again and the upgrade is retried).
pub fn recover(home: &Home, state: &mut State) -> Result<()> {
    let Some(swap) = state.swap.take() else {
        return Ok(());
    };
    let current = sha256_file(&home.current()).ok().map(hex::encode);
    if current.as_deref() == Some(swap.sha256.as_str()) {
        crate::log::info(
            "recovered_swap",
            &[("name", &swap.name), ("state", "installed")],
        );
        state.note_applied(&swap.name);
        state.probation = Some(swap);
    } else {
        crate::log::info(
            "recovered_swap",
            &[("name", &swap.name), ("state", "not installed")],
        );
    }
    state.save(home)
}

/// Puts a backup back into `current/` (atomically).
pub fn restore(home: &Home, backup: &std::path::Path) -> Result<()> {
    let digest = sha256_file(backup)?;
    install_binary(backup, &home.current(), &digest)
        .with_context(|| format!("cannot restore {}", backup.display()))
}
