//! Proving a binary is the one governance approved: SHA-256, the authority's Ed25519 signature,
//! and a `--version` sanity check.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vexidus_runtime_api::PublicKey;
use vexidus_runtime_api::signing::{BINARY_DOMAIN, verify};
use vexidus_upgrade_contract::UpgradeInfo;

/// How long a binary may take to answer `--version`.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(20);

/// The signature policy of the operator.
#[derive(Debug, Clone, Default)]
pub struct SignaturePolicy {
    /// Refuse binaries without a valid signature (`--require-signed-upgrades`).
    pub required: bool,
    /// The key signatures must verify against (`--upgrade-authority`); when absent, the
    /// authority named by the chain in `upgrade-info.json` is used.
    pub authority: Option<PublicKey>,
}

/// The signature flags of `vexvisor run` and `vexidus upgrade prepare`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SignatureFlags {
    /// Refuse upgrade binaries without a valid signature of the upgrade authority.
    #[arg(long)]
    pub require_signed_upgrades: bool,
    /// The authority's public key (hex) signatures must verify against.
    #[arg(long, value_name = "HEX")]
    pub upgrade_authority: Option<String>,
}

impl SignatureFlags {
    /// The policy the flags ask for.
    pub fn policy(&self) -> Result<SignaturePolicy> {
        SignaturePolicy::from_flags(
            self.require_signed_upgrades,
            self.upgrade_authority.as_deref(),
        )
    }
}

impl SignaturePolicy {
    /// The policy of the `--require-signed-upgrades` and `--upgrade-authority HEX` flags.
    pub fn from_flags(required: bool, authority_hex: Option<&str>) -> Result<Self> {
        let authority = authority_hex
            .map(|h| {
                PublicKey::from_hex(h).map_err(|e| anyhow::anyhow!("--upgrade-authority: {e}"))
            })
            .transpose()?;
        if required && authority.is_none() {
            bail!(
                "--require-signed-upgrades needs --upgrade-authority HEX (the key signatures must verify against)"
            );
        }
        Ok(Self {
            required,
            authority,
        })
    }
}

/// Refuses a path that is not a regular executable file.
pub fn check_executable(path: &Path) -> Result<()> {
    let meta = fs::metadata(path).with_context(|| format!("{} is missing", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        bail!(
            "{} is not executable (mode {:o})",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    Ok(())
}

/// SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<[u8; 32]> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// Every check of SPEC §7 step 3 on the file at `path`: digest, signature under `policy`,
/// executable, answers `--version`, and, when its version output lists the upgrades it
/// implements, lists this one. Returns the version text.
pub fn verify_binary(path: &Path, info: &UpgradeInfo, policy: &SignaturePolicy) -> Result<String> {
    let digest = sha256_file(path)?;
    if digest != info.sha256 {
        bail!(
            "SHA-256 mismatch for {}: the plan wants {}, the file has {}",
            path.display(),
            info.sha256_hex(),
            hex::encode(digest)
        );
    }
    check_signature(info, policy)?;
    check_executable(path)?;
    let version = version_of(path)?;
    if let Some(list) = implemented_upgrades(&version)
        && !list.iter().any(|n| n == &info.name)
    {
        bail!(
            "{} does not implement upgrade {:?}: its --version lists [{}]",
            path.display(),
            info.name,
            list.join(", ")
        );
    }
    Ok(version)
}

/// Checks the plan's signature over the digest. A present signature must verify even when
/// none is required; a missing one is refused only when required. Without
/// `--upgrade-authority` the key is the one `upgrade-info.json` names, which proves only that
/// the file is consistent (and is logged as such); only a configured key proves origin.
pub fn check_signature(info: &UpgradeInfo, policy: &SignaturePolicy) -> Result<()> {
    let key = policy.authority.unwrap_or(info.authority);
    match &info.signature {
        None if policy.required => bail!(
            "upgrade {:?} carries no signature and --require-signed-upgrades is set",
            info.name
        ),
        None => Ok(()),
        Some(sig) => {
            if verify(&key, BINARY_DOMAIN, &info.chain_id, &info.sha256, sig) {
                if policy.authority.is_none() {
                    // The key came from the same file as the signature: whoever could write one
                    // could write both. Say so rather than let it pass for a check of origin.
                    crate::log::warn(
                        "signature-self-consistent",
                        &[
                            ("upgrade", &info.name),
                            (
                                "detail",
                                "the signature verifies against the authority key named in \
                                 upgrade-info.json itself; pass --upgrade-authority to check \
                                 who signed it",
                            ),
                        ],
                    );
                }
                Ok(())
            } else {
                bail!(
                    "the signature of upgrade {:?} does not verify with the authority key {key} \
                     (over SHA-256 {} on chain {:?})",
                    info.name,
                    info.sha256_hex(),
                    info.chain_id
                )
            }
        }
    }
}

/// Runs `path --version` and returns what it printed; refuses a binary that cannot start,
/// fails, prints nothing or does not answer within [`VERSION_TIMEOUT`].
pub fn version_of(path: &Path) -> Result<String> {
    let mut child = spawn_retrying(path)?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > VERSION_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} did not answer --version within {} s",
                path.display(),
                VERSION_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    if !status.success() {
        bail!("{} --version failed ({status})", path.display());
    }
    if out.trim().is_empty() {
        bail!("{} --version printed nothing", path.display());
    }
    Ok(out)
}

/// Spawns `path --version`. A file that was just written can briefly be "busy" (ETXTBSY) when
/// another thread forked while it was open; that is retried.
fn spawn_retrying(path: &Path) -> Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match Command::new(path)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => return Ok(c),
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot run {} --version", path.display()));
            }
        }
    }
}

/// The upgrade names a `vexidus-node --version` text lists on its `implemented upgrades:`
/// line; `None` for a binary that does not print one.
pub fn implemented_upgrades(version: &str) -> Option<Vec<String>> {
    let line = version
        .lines()
        .find_map(|l| l.trim().strip_prefix("implemented upgrades:"))?;
    Some(
        line.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s != "none")
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use vexidus_runtime_api::signing::Keypair;

    fn info(
        signature: Option<vexidus_runtime_api::Signature>,
        authority: PublicKey,
    ) -> UpgradeInfo {
        UpgradeInfo {
            name: "u".into(),
            height: 5,
            binary_url: "file:///x".into(),
            sha256: [7; 32],
            signature,
            authority,
            info_url: None,
            chain_id: "c".into(),
        }
    }

    #[test]
    fn signatures_follow_the_policy() {
        let k = Keypair::from_seed([1; 32]);
        let other = Keypair::from_seed([2; 32]);
        let good = k.sign(BINARY_DOMAIN, "c", &[7; 32]);
        let required = SignaturePolicy {
            required: true,
            authority: Some(k.public()),
        };
        assert!(check_signature(&info(Some(good), k.public()), &required).is_ok());
        // The operator's key wins over the one in the file.
        assert!(check_signature(&info(Some(good), other.public()), &required).is_ok());
        let wrong_key = SignaturePolicy {
            required: true,
            authority: Some(other.public()),
        };
        assert!(check_signature(&info(Some(good), k.public()), &wrong_key).is_err());
        let err = check_signature(&info(None, k.public()), &required).expect_err("missing");
        assert!(err.to_string().contains("no signature"), "{err}");
        // Not required: a missing signature passes, a bad one still does not.
        let optional = SignaturePolicy::default();
        assert!(check_signature(&info(None, k.public()), &optional).is_ok());
        let forged = other.sign(BINARY_DOMAIN, "c", &[7; 32]);
        assert!(check_signature(&info(Some(forged), k.public()), &optional).is_err());
        // Another chain's signature does not verify.
        let other_chain = k.sign(BINARY_DOMAIN, "d", &[7; 32]);
        assert!(check_signature(&info(Some(other_chain), k.public()), &optional).is_err());
    }

    #[test]
    fn implemented_upgrades_are_read_from_the_version_text() {
        let v = "vexidus-node 0.1.0\nimplemented upgrades: a, b-2\n";
        assert_eq!(
            implemented_upgrades(v),
            Some(vec!["a".into(), "b-2".into()])
        );
        assert_eq!(
            implemented_upgrades("implemented upgrades: none"),
            Some(vec![])
        );
        assert_eq!(implemented_upgrades("other 1.0"), None);
    }
}
