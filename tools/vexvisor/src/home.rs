//! The supervisor's directory layout (SPEC §7) and the crash-safe file operations on it.
//!
//! ```text
//! <home>/vexvisor/current/vexidus-node            the binary being run
//! <home>/vexvisor/upgrades/<name>/vexidus-node     pre-staged or downloaded upgrade binaries
//! <home>/vexvisor/backups/vexidus-node.pre-<name>-<utc-timestamp>
//! <home>/vexvisor/state.json                       failures, the swap journal, probation
//! <home>/data/                                     the node's data directory (never written here)
//! ```
//!
//! Every file that a later step trusts is written to a temporary name in its final directory,
//! synced, and renamed into place, and the directory is synced: after a crash a path holds either
//! the old complete file or the new complete file. Temporary names start with `.` and carry
//! `.tmp-`; [`Home::remove_temporaries`] clears the ones a crash left behind.

use anyhow::{Context, Result};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// File name of the node binary in every directory of the layout.
pub const BINARY: &str = "vexidus-node";
/// How many backups are kept.
pub const KEEP_BACKUPS: usize = 3;
const BACKUP_PREFIX: &str = "vexidus-node.pre-";
const TEMP_MARK: &str = ".tmp-";

/// A supervisor home directory.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

/// A backup of a replaced binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// The file.
    pub path: PathBuf,
    /// The upgrade that replaced it (or `rollback` for a manual rollback).
    pub replaced_by: String,
    /// When, as `YYYYMMDDTHHMMSSZ` (UTC).
    pub timestamp: String,
}

impl Home {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<home>/vexvisor`.
    pub fn dir(&self) -> PathBuf {
        self.root.join("vexvisor")
    }

    /// `<home>/vexvisor/current/vexidus-node`.
    pub fn current(&self) -> PathBuf {
        self.dir().join("current").join(BINARY)
    }

    /// `<home>/vexvisor/upgrades/<name>/`; `name` must have passed the name rule.
    pub fn upgrade_dir(&self, name: &str) -> PathBuf {
        self.dir().join("upgrades").join(name)
    }

    /// `<home>/vexvisor/upgrades/<name>/vexidus-node`.
    pub fn staged(&self, name: &str) -> PathBuf {
        self.upgrade_dir(name).join(BINARY)
    }

    /// `<home>/vexvisor/backups/`.
    pub fn backups_dir(&self) -> PathBuf {
        self.dir().join("backups")
    }

    /// `<home>/data`, the node's default data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// `<home>/vexvisor/state.json`.
    pub fn state_file(&self) -> PathBuf {
        self.dir().join("state.json")
    }

    /// `<home>/vexvisor/lock`, held by the running supervisor.
    pub fn lock_file(&self) -> PathBuf {
        self.dir().join("lock")
    }

    /// Creates the directories of the layout.
    pub fn create_dirs(&self) -> Result<()> {
        for d in [
            self.dir().join("current"),
            self.dir().join("upgrades"),
            self.backups_dir(),
        ] {
            fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        Ok(())
    }

    /// Removes the temporary files an interrupted step left in the supervisor's directories
    /// (never in the data directory). Returns what was removed.
    pub fn remove_temporaries(&self) -> Result<Vec<PathBuf>> {
        let mut dirs = vec![self.dir(), self.dir().join("current"), self.backups_dir()];
        if let Ok(entries) = fs::read_dir(self.dir().join("upgrades")) {
            dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        let mut removed = Vec::new();
        for dir in dirs {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.contains(TEMP_MARK) {
                    fs::remove_file(e.path())
                        .with_context(|| format!("cannot remove {}", e.path().display()))?;
                    removed.push(e.path());
                }
            }
        }
        Ok(removed)
    }

    /// The backups, newest first.
    pub fn backups(&self) -> Result<Vec<Backup>> {
        let mut out = Vec::new();
        let dir = self.backups_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = file.strip_prefix(BACKUP_PREFIX) else {
                continue;
            };
            let Some((replaced_by, timestamp)) = rest.rsplit_once('-') else {
                continue;
            };
            if !is_timestamp(timestamp) {
                continue;
            }
            out.push(Backup {
                path: e.path(),
                replaced_by: replaced_by.to_string(),
                timestamp: timestamp.to_string(),
            });
        }
        out.sort_by(|a, b| {
            b.timestamp
                .cmp(&a.timestamp)
                .then_with(|| b.path.cmp(&a.path))
        });
        Ok(out)
    }

    /// Backs up the current binary before `replaced_by` replaces it, and keeps the
    /// [`KEEP_BACKUPS`] newest. The backup is a hard link (no copy, no extra disk) where the
    /// file system allows, else a synced copy. A current binary identical to the newest backup
    /// (a retried upgrade) is not backed up twice. Returns the backup that holds the current
    /// binary.
    pub fn back_up_current(&self, replaced_by: &str) -> Result<PathBuf> {
        let current = self.current();
        let digest = crate::verify::sha256_file(&current)?;
        let backups = self.backups()?;
        if let Some(newest) = backups.first()
            && crate::verify::sha256_file(&newest.path).ok() == Some(digest)
        {
            return Ok(newest.path.clone());
        }
        let dir = self.backups_dir();
        fs::create_dir_all(&dir)?;
        // Timestamps strictly increase, so "newest first" never depends on names: two backups
        // within one second take the next second.
        let mut now = unix_now();
        if let Some(newest) = backups.first() {
            while utc_timestamp(now) <= newest.timestamp {
                now += 1;
            }
        }
        let path = dir.join(format!(
            "{BACKUP_PREFIX}{replaced_by}-{}",
            utc_timestamp(now)
        ));
        let tmp = temp_path(&path);
        let _ = fs::remove_file(&tmp);
        if fs::hard_link(&current, &tmp).is_err() {
            let mut from = fs::File::open(&current)?;
            let mut to = create_temp(&tmp)?;
            std::io::copy(&mut from, &mut to).with_context(|| {
                format!("cannot copy {} to {}", current.display(), tmp.display())
            })?;
            to.set_permissions(fs::Permissions::from_mode(0o755))?;
            to.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        sync_dir(&dir)?;
        for old in self.backups()?.into_iter().skip(KEEP_BACKUPS) {
            fs::remove_file(&old.path)
                .with_context(|| format!("cannot remove old backup {}", old.path.display()))?;
        }
        sync_dir(&dir)?;
        Ok(path)
    }
}

/// `dir/.name.tmp-<pid>` beside `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}{TEMP_MARK}{}", std::process::id()))
}

/// Creates the temporary file `tmp` afresh: a leftover (or a symlink planted in its place) is
/// removed first, and the file is created exclusively (`O_CREAT | O_EXCL`, which never follows
/// a symlink), so a write can never land anywhere but in a new file of ours.
pub fn create_temp(tmp: &Path) -> Result<fs::File> {
    match fs::remove_file(tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", tmp.display())),
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    {
        let mut f = create_temp(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot rename into {}", path.display()))?;
    sync_dir(parent(path))
}

/// Puts a copy of the binary `src` at `dest` atomically, executable: `dest` holds the old
/// complete binary or the new complete one at every instant. The copy is hashed once written
/// and synced, and must have the SHA-256 `expected` (what was verified before), so a binary
/// changed between its check and its copy never becomes current.
pub fn install_binary(src: &Path, dest: &Path, expected: &[u8; 32]) -> Result<()> {
    let tmp = temp_path(dest);
    {
        let mut from =
            fs::File::open(src).with_context(|| format!("cannot open {}", src.display()))?;
        let mut to = create_temp(&tmp)?;
        std::io::copy(&mut from, &mut to)
            .with_context(|| format!("cannot copy {} to {}", src.display(), tmp.display()))?;
        to.set_permissions(fs::Permissions::from_mode(0o755))?;
        to.sync_all()?;
    }
    let copied = crate::verify::sha256_file(&tmp)?;
    if copied != *expected {
        let _ = fs::remove_file(&tmp);
        anyhow::bail!(
            "the copy of {} has SHA-256 {}, not the verified {}: it changed while it was copied",
            src.display(),
            hex::encode(copied),
            hex::encode(expected)
        );
    }
    crate::test_hook::point("install-before-rename");
    fs::rename(&tmp, dest).with_context(|| format!("cannot rename into {}", dest.display()))?;
    sync_dir(parent(dest))
}

/// Fsyncs a directory so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory {}", dir.display()))
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time, in UTC.
pub fn utc_timestamp(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_and_sortable() {
        assert_eq!(utc_timestamp(0), "19700101T000000Z");
        assert_eq!(utc_timestamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_timestamp(1_795_300_496), "20261121T223456Z");
        assert!(is_timestamp(&utc_timestamp(1_795_300_496)));
        assert!(utc_timestamp(1_795_300_497) > utc_timestamp(1_795_300_496));
    }

    fn home_with_current(bytes: &[u8]) -> (tempfile::TempDir, Home) {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path());
        home.create_dirs().expect("dirs");
        write_atomic(&home.current(), bytes).expect("write");
        (dir, home)
    }

    #[test]
    fn backups_rotate_keep_three_and_skip_duplicates() {
        let (_d, home) = home_with_current(b"v0");
        let first = home.back_up_current("u1").expect("backup");
        assert_eq!(home.back_up_current("u1").expect("again"), first);
        assert_eq!(home.backups().expect("list").len(), 1);
        for i in 1..=5 {
            write_atomic(&home.current(), format!("v{i}").as_bytes()).expect("write");
            home.back_up_current(&format!("u{}", i + 1))
                .expect("backup");
        }
        let list = home.backups().expect("list");
        assert_eq!(list.len(), KEEP_BACKUPS);
        let contents: Vec<Vec<u8>> = list
            .iter()
            .map(|b| fs::read(&b.path).expect("read"))
            .collect();
        assert_eq!(
            contents,
            vec![b"v5".to_vec(), b"v4".to_vec(), b"v3".to_vec()]
        );
        assert_eq!(list[0].replaced_by, "u6");
    }

    #[test]
    fn temporaries_are_removed_and_nothing_else() {
        let (_d, home) = home_with_current(b"bin");
        fs::create_dir_all(home.upgrade_dir("u1")).expect("dir");
        let stray = [
            temp_path(&home.current()),
            temp_path(&home.staged("u1")),
            temp_path(&home.state_file()),
        ];
        for p in &stray {
            fs::write(p, b"half").expect("write");
        }
        fs::write(home.staged("u1"), b"whole").expect("write");
        let mut removed = home.remove_temporaries().expect("clean");
        removed.sort();
        let mut expected = stray.to_vec();
        expected.sort();
        assert_eq!(removed, expected);
        assert!(home.current().exists() && home.staged("u1").exists());
    }

    #[test]
    fn a_symlink_planted_at_a_temporary_path_is_replaced_not_followed() {
        let (dir, home) = home_with_current(b"bin");
        let target = dir.path().join("victim");
        fs::write(&target, b"precious").expect("write");
        std::os::unix::fs::symlink(&target, temp_path(&home.state_file())).expect("symlink");
        write_atomic(&home.state_file(), b"state").expect("write");
        assert_eq!(fs::read(&target).expect("read"), b"precious");
        assert_eq!(fs::read(home.state_file()).expect("read"), b"state");
    }

    #[test]
    fn a_binary_whose_copy_differs_from_the_verified_digest_is_not_installed() {
        let (dir, home) = home_with_current(b"old");
        let new = dir.path().join("new");
        fs::write(&new, b"new binary").expect("write");
        let verified = crate::verify::sha256_file(&new).expect("hash");
        // Changed after it was verified:
        fs::write(&new, b"tampered").expect("write");
        let e = install_binary(&new, &home.current(), &verified).expect_err("refused");
        assert!(
            format!("{e:#}").contains("changed while it was copied"),
            "{e:#}"
        );
        assert_eq!(fs::read(home.current()).expect("read"), b"old");
        assert!(!temp_path(&home.current()).exists());
        let digest = crate::verify::sha256_file(&new).expect("hash");
        install_binary(&new, &home.current(), &digest).expect("installed");
        assert_eq!(fs::read(home.current()).expect("read"), b"tampered");
    }
}
