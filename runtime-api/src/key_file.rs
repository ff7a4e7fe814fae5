//! Key files: a validator's or an account's Ed25519 seed as 64 hex characters and a newline,
//! readable by its owner only. The node, the CLI and the local network all read and write them
//! here.

use crate::signing::Keypair;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why a key file could not be read or written.
#[derive(Debug)]
pub enum KeyFileError {
    /// The file could not be read.
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not hold a seed.
    NotAKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with its contents.
        reason: String,
    },
    /// The file exists and was not to be overwritten.
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be written.
    Unwritable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable { path, source } => {
                write!(f, "cannot read key file {}: {source}", path.display())
            }
            Self::NotAKey { path, reason } => {
                write!(f, "key file {} is not a key: {reason}", path.display())
            }
            Self::Exists { path } => write!(f, "{} already exists", path.display()),
            Self::Unwritable { path, source } => {
                write!(f, "cannot write key file {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for KeyFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unreadable { source, .. } | Self::Unwritable { source, .. } => Some(source),
            Self::NotAKey { .. } | Self::Exists { .. } => None,
        }
    }
}

/// Reads the key in `path`.
pub fn read(path: &Path) -> Result<Keypair, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Unreadable {
        path: path.into(),
        source,
    })?;
    Keypair::from_seed_hex(&text).map_err(|e| KeyFileError::NotAKey {
        path: path.into(),
        reason: e.to_string(),
    })
}

/// Writes `key` to `path` with mode 0600 and syncs it. An existing file is replaced only when
/// `overwrite` is set; otherwise it is [`KeyFileError::Exists`].
pub fn write(path: &Path, key: &Keypair, overwrite: bool) -> Result<(), KeyFileError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let unwritable = |source| KeyFileError::Unwritable {
        path: path.into(),
        source,
    };
    let mut f = opts.open(path).map_err(|source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::Exists { path: path.into() }
        } else {
            unwritable(source)
        }
    })?;
    f.write_all(format!("{}\n", key.seed_hex()).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(unwritable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_written_key_reads_back_and_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        let key = Keypair::from_seed([7; 32]);
        write(&path, &key, false).expect("written");
        assert_eq!(read(&path).expect("read").public(), key.public());
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).expect("text"),
            format!("{}\n", key.seed_hex())
        );
    }

    #[test]
    fn an_existing_file_is_kept_unless_overwriting_is_asked_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        write(&path, &Keypair::from_seed([1; 32]), false).expect("written");
        let err = write(&path, &Keypair::from_seed([2; 32]), false).expect_err("exists");
        assert!(matches!(err, KeyFileError::Exists { .. }), "{err}");
        assert_eq!(read(&path).expect("read").seed(), [1; 32]);
        write(&path, &Keypair::from_seed([2; 32]), true).expect("overwritten");
        assert_eq!(read(&path).expect("read").seed(), [2; 32]);
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        let Err(err) = read(&missing) else {
            panic!("a missing file read as a key")
        };
        assert!(err.to_string().starts_with("cannot read key file"), "{err}");
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "not hex").expect("write");
        let Err(err) = read(&bad) else {
            panic!("text that is not hex read as a key")
        };
        assert!(matches!(err, KeyFileError::NotAKey { .. }), "{err}");
        assert!(err.to_string().contains("is not a key"), "{err}");
    }
}
