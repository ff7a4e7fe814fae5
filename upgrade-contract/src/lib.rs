//! The binary-upgrade contract (SPEC §4, §7): how a Vexidus node that halts for a binary upgrade
//! tells its supervisor what it needs.
//!
//! The node stops before executing the plan's target block, writes [`FILE_NAME`] into its data
//! directory with [`write()`] and exits with [`EXIT_CODE`]. The supervisor (`vexvisor`) and the
//! operator's CLI read it back with [`UpgradeInfo::read`], which refuses a missing, half-written
//! or malformed file and names the field that is wrong.
//!
//! This crate is the only place the exit code, the file name and the file's schema are
//! defined. It depends on nothing of the node, so the supervisor can use it without linking the
//! node.

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use vexidus_runtime_api::abi::UpgradeHalt;
use vexidus_runtime_api::{PublicKey, Signature, upgrade_name};

/// The exit code of a node that halted for a binary upgrade it does not implement.
pub const EXIT_CODE: i32 = 42;

/// The name of the file a halting node writes into its data directory.
pub const FILE_NAME: &str = "upgrade-info.json";

/// Where the file is in `data_dir`.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// The temporary name [`write()`] uses before it renames the file into place.
pub fn temporary_path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(format!(".{FILE_NAME}.tmp"))
}

/// The file's schema: every field as it is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawUpgradeInfo {
    /// Plan name.
    pub name: String,
    /// Target height (the block that is not executed).
    pub height: u64,
    /// Where the new binary can be downloaded.
    pub binary_url: String,
    /// SHA-256 of the new binary, hex.
    pub sha256: String,
    /// The authority's Ed25519 signature over the digest, hex, or null.
    pub signature: Option<String>,
    /// The upgrade authority's public key, hex.
    pub authority: String,
    /// Release notes or other information, optional.
    #[serde(default)]
    pub info_url: Option<String>,
    /// The chain the plan belongs to (part of the signed message).
    pub chain_id: String,
}

impl From<&UpgradeHalt> for RawUpgradeInfo {
    fn from(halt: &UpgradeHalt) -> Self {
        Self {
            name: halt.name.clone(),
            height: halt.height,
            binary_url: halt.binary_url.clone(),
            sha256: hex::encode(&halt.sha256),
            signature: halt.signature.as_ref().map(hex::encode),
            authority: halt.authority.to_string(),
            info_url: Some(halt.info_url.clone()),
            chain_id: halt.chain_id.clone(),
        }
    }
}

/// Writes the file into `data_dir` atomically: temporary file, fsync, rename, fsync of the
/// directory. A reader sees the old file or the whole new one, never half of it.
pub fn write(data_dir: &Path, info: &RawUpgradeInfo) -> std::io::Result<PathBuf> {
    let path = path_in(data_dir);
    let tmp = temporary_path_in(data_dir);
    {
        let mut f = std::fs::File::create(&tmp)?;
        let mut text = serde_json::to_string_pretty(info).map_err(std::io::Error::other)?;
        text.push('\n');
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(path)
}

/// Where a binary comes from: the URL schemes a plan may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinarySource {
    /// An `http://` or `https://` URL.
    Http(String),
    /// A local file, from a `file://` URL.
    File(PathBuf),
}

impl BinarySource {
    /// Parses a URL; only `http`, `https` and `file` (with an absolute path) are accepted.
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("http://") || url.starts_with("https://") {
            let rest = url.split_once("://").map(|(_, r)| r).unwrap_or("");
            if rest.is_empty() || rest.starts_with('/') {
                return Err(format!("{url:?} has no host"));
            }
            Ok(Self::Http(url.to_string()))
        } else if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!("{url:?} must name an absolute path (file:///…)"));
            }
            Ok(Self::File(PathBuf::from(path)))
        } else {
            Err(format!("{url:?} is not an http, https or file URL"))
        }
    }
}

/// A validated upgrade: every field checked, digests and keys decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeInfo {
    /// Plan name; safe to use as a directory name.
    pub name: String,
    /// Target height.
    pub height: u64,
    /// `http://`, `https://` or `file://` URL of the binary.
    pub binary_url: String,
    /// SHA-256 of the binary.
    pub sha256: [u8; 32],
    /// The authority's signature over the digest, if the plan carries one.
    pub signature: Option<Signature>,
    /// The upgrade authority the chain names.
    pub authority: PublicKey,
    /// Release notes, if any.
    pub info_url: Option<String>,
    /// The chain id.
    pub chain_id: String,
}

/// Why an `upgrade-info.json` was refused.
#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    /// The file is not there.
    #[error(
        "{path} does not exist: the node exited with code {EXIT_CODE} but left no upgrade information"
    )]
    Missing {
        /// The file.
        path: String,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file ends in the middle of the JSON document.
    #[error("{path} is incomplete (half-written?): {reason}")]
    Truncated {
        /// The file.
        path: String,
        /// What the parser said.
        reason: String,
    },
    /// The file is not the expected JSON.
    #[error("{path} is malformed: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// What the parser said.
        reason: String,
    },
    /// A field has an impossible value.
    #[error("{path}: field `{field}` is invalid: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl UpgradeInfo {
    /// Reads and validates the file at `path`.
    pub fn read(path: &Path) -> Result<Self, InfoError> {
        let shown = path.display().to_string();
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(InfoError::Missing { path: shown });
            }
            Err(source) => {
                return Err(InfoError::Unreadable {
                    path: shown,
                    source,
                });
            }
        };
        Self::parse(&text, &shown)
    }

    /// Parses and validates the bytes of a file; `path` is only used in messages.
    pub fn parse(bytes: &[u8], path: &str) -> Result<Self, InfoError> {
        let raw: RawUpgradeInfo = serde_json::from_slice(bytes).map_err(|e| {
            let reason = e.to_string();
            if e.is_eof() {
                InfoError::Truncated {
                    path: path.into(),
                    reason,
                }
            } else {
                InfoError::Malformed {
                    path: path.into(),
                    reason,
                }
            }
        })?;
        Self::validate(raw, path)
    }

    /// Validates the fields of a parsed file.
    pub fn validate(raw: RawUpgradeInfo, path: &str) -> Result<Self, InfoError> {
        let invalid = |field: &'static str, reason: String| InfoError::Invalid {
            path: path.into(),
            field,
            reason,
        };
        upgrade_name::check(&raw.name).map_err(|e| invalid("name", e.to_string()))?;
        if raw.height == 0 {
            return Err(invalid("height", "must be above 0".into()));
        }
        BinarySource::parse(&raw.binary_url).map_err(|e| invalid("binary_url", e))?;
        let sha256 = decode_hex::<32>(&raw.sha256).map_err(|e| invalid("sha256", e))?;
        let signature = match raw.signature.as_deref() {
            None => None,
            Some(s) => Some(Signature(
                decode_hex::<64>(s).map_err(|e| invalid("signature", e))?,
            )),
        };
        let authority =
            PublicKey(decode_hex::<32>(&raw.authority).map_err(|e| invalid("authority", e))?);
        if raw.chain_id.is_empty() {
            return Err(invalid("chain_id", "is empty".into()));
        }
        Ok(Self {
            name: raw.name,
            height: raw.height,
            binary_url: raw.binary_url,
            sha256,
            signature,
            authority,
            info_url: raw.info_url.filter(|u| !u.is_empty()),
            chain_id: raw.chain_id,
        })
    }

    /// The digest as hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Decodes `N` bytes of hex with an optional `0x` prefix.
pub fn decode_hex<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    if s.len() != 2 * N {
        return Err(format!("expected {} hex digits, found {}", 2 * N, s.len()));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> serde_json::Value {
        serde_json::json!({
            "name": "v2", "height": 150, "binary_url": "http://127.0.0.1:1/vexidus-node",
            "sha256": "11".repeat(32), "signature": null, "authority": format!("0x{}", "22".repeat(32)),
            "info_url": null, "chain_id": "dev",
        })
    }

    fn parse(v: &serde_json::Value) -> Result<UpgradeInfo, InfoError> {
        UpgradeInfo::parse(v.to_string().as_bytes(), FILE_NAME)
    }

    #[test]
    fn a_complete_file_parses() {
        let info = parse(&good()).expect("valid");
        assert_eq!(info.name, "v2");
        assert_eq!(info.sha256, [0x11; 32]);
        assert_eq!(info.authority, PublicKey([0x22; 32]));
        assert_eq!(info.signature, None);
    }

    #[test]
    fn what_the_node_writes_the_supervisor_reads() {
        let halt = UpgradeHalt {
            name: "v2".into(),
            height: 150,
            binary_url: "file:///opt/vexidus-node".into(),
            sha256: vec![0x33; 32],
            signature: Some(vec![0x44; 64]),
            authority: PublicKey([0x55; 32]),
            info_url: String::new(),
            chain_id: "dev".into(),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), &RawUpgradeInfo::from(&halt)).expect("written");
        assert_eq!(path, path_in(dir.path()));
        assert!(!temporary_path_in(dir.path()).exists());
        let info = UpgradeInfo::read(&path).expect("valid");
        assert_eq!(info.name, halt.name);
        assert_eq!(info.height, halt.height);
        assert_eq!(info.binary_url, halt.binary_url);
        assert_eq!(info.sha256, [0x33; 32]);
        assert_eq!(info.signature, Some(Signature([0x44; 64])));
        assert_eq!(info.authority, halt.authority);
        assert_eq!(info.info_url, None, "an empty release-notes URL is no URL");
        assert_eq!(info.chain_id, halt.chain_id);
    }

    #[test]
    fn a_missing_file_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = UpgradeInfo::read(&path_in(dir.path())).expect_err("missing");
        assert!(matches!(err, InfoError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("code 42"), "{err}");
    }

    #[test]
    fn half_written_files_are_named_as_such() {
        let text = good().to_string();
        for cut in [1, text.len() / 2, text.len() - 1] {
            let err = UpgradeInfo::parse(&text.as_bytes()[..cut], "f").expect_err("truncated");
            assert!(matches!(err, InfoError::Truncated { .. }), "{err}");
            assert!(err.to_string().contains("half-written"), "{err}");
        }
        let err = UpgradeInfo::parse(b"", "f").expect_err("empty");
        assert!(matches!(err, InfoError::Truncated { .. }), "{err}");
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: [(&str, serde_json::Value, &str); 8] = [
            ("name", "../evil".into(), "name"),
            ("name", ".hidden".into(), "name"),
            ("height", 0.into(), "height"),
            ("binary_url", "ftp://x/y".into(), "binary_url"),
            ("sha256", "abcd".into(), "sha256"),
            ("signature", "zz".repeat(64).into(), "signature"),
            ("authority", "".into(), "authority"),
            ("chain_id", "".into(), "chain_id"),
        ];
        for (field, value, named) in cases {
            let mut v = good();
            v[field] = value;
            let err = parse(&v).expect_err(field);
            assert!(
                matches!(&err, InfoError::Invalid { field: f, .. } if *f == named),
                "{field}: {err}"
            );
        }
        let mut v = good();
        v.as_object_mut().expect("object").remove("sha256");
        assert!(matches!(
            parse(&v).expect_err("missing"),
            InfoError::Malformed { .. }
        ));
    }

    #[test]
    fn only_three_schemes_are_accepted() {
        assert_eq!(
            BinarySource::parse("http://h/x").expect("http"),
            BinarySource::Http("http://h/x".into())
        );
        assert!(BinarySource::parse("https://h/x").is_ok());
        assert_eq!(
            BinarySource::parse("file:///tmp/x").expect("file"),
            BinarySource::File("/tmp/x".into())
        );
        for bad in [
            "ftp://h/x",
            "file://relative",
            "http://",
            "http:///x",
            "/tmp/x",
            "",
        ] {
            assert!(BinarySource::parse(bad).is_err(), "{bad}");
        }
    }
}
