//! What a chain starts from: the runtime blob this build carries (built from `runtime/` by this
//! crate's build script), the released blobs a node can start an older chain on, and the
//! development chain's genesis.

#![forbid(unsafe_code)]

mod dev;

pub use dev::{DEV_ACCOUNTS, DEV_CHAIN_ID, GenesisFile, dev_account_seed, dev_genesis};

/// The genesis runtime blob, built from `runtime/` by this crate's build script.
pub const GENESIS_RUNTIME: &[u8] = include_bytes!(env!("VEXIDUS_RUNTIME_WASM"));

/// Runtime blobs as released (`runtime/releases/`), by spec_version: a node can start, or join
/// from genesis, a chain that began on an earlier release (its genesis file names it with
/// `runtime_spec_version`).
pub const RELEASED_RUNTIMES: &[(u32, &[u8])] =
    &[(1, include_bytes!("../../../runtime/releases/spec-1.wasm"))];

/// The blob a chain starts on: the release of `spec_version`, or this build's runtime when
/// `None` or when it is this build's version.
pub fn genesis_runtime(spec_version: Option<u32>) -> Result<&'static [u8], String> {
    let Some(wanted) = spec_version else {
        return Ok(GENESIS_RUNTIME);
    };
    if let Some((_, code)) = RELEASED_RUNTIMES.iter().find(|(v, _)| *v == wanted) {
        return Ok(code);
    }
    let current = vexidus_blob::check_unlimited_cached(GENESIS_RUNTIME)
        .map_err(|e| format!("the built-in runtime: {e}"))?
        .spec_version;
    if wanted == current {
        return Ok(GENESIS_RUNTIME);
    }
    let mut known: Vec<u32> = RELEASED_RUNTIMES.iter().map(|(v, _)| *v).collect();
    known.push(current);
    Err(format!(
        "runtime_spec_version {wanted} is not a runtime this node carries (it has {known:?})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file `runtime/releases/SHA256SUMS` lists is there with that digest and names its
    /// spec_version, including a release recorded before this build carries it.
    #[test]
    fn every_recorded_release_matches_its_digest() {
        use sha2::Digest;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtime/releases");
        let sums = include_str!("../../../runtime/releases/SHA256SUMS");
        let mut seen = 0;
        for line in sums.lines().filter(|l| !l.trim().is_empty()) {
            let (digest, name) = line.split_once("  ").expect("`<sha256>  <file>` lines");
            let code = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(hex::encode(sha2::Sha256::digest(&code)), digest, "{name}");
            let spec: u32 = name
                .strip_prefix("spec-")
                .and_then(|n| n.strip_suffix(".wasm"))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{name} is not spec-<N>.wasm"));
            let version = vexidus_blob::check_unlimited_cached(&code).expect("a valid blob");
            assert_eq!(version.spec_version, spec, "{name}");
            seen += 1;
        }
        assert!(seen >= 2, "only {seen} releases recorded");
    }

    /// Each embedded release is the file its digest in `runtime/releases/SHA256SUMS` names, and
    /// says the spec_version it is listed under: a release never changes.
    #[test]
    fn released_runtimes_are_the_recorded_blobs() {
        use sha2::Digest;
        let sums = include_str!("../../../runtime/releases/SHA256SUMS");
        for (spec, code) in RELEASED_RUNTIMES {
            let name = format!("spec-{spec}.wasm");
            let recorded = sums
                .lines()
                .find_map(|l| l.strip_suffix(&name).map(str::trim))
                .unwrap_or_else(|| panic!("{name} is not in SHA256SUMS"));
            assert_eq!(hex::encode(sha2::Sha256::digest(code)), recorded, "{name}");
            let version = vexidus_blob::check_unlimited_cached(code).expect("a valid blob");
            assert_eq!(version.spec_version, *spec, "{name}");
            assert_eq!(genesis_runtime(Some(*spec)), Ok(*code));
        }
        assert_eq!(genesis_runtime(None), Ok(GENESIS_RUNTIME));
        let current = vexidus_blob::check_unlimited_cached(GENESIS_RUNTIME)
            .expect("the built-in runtime")
            .spec_version;
        assert!(
            RELEASED_RUNTIMES.iter().all(|(v, _)| *v < current),
            "this build's runtime is newer than every release"
        );
        assert_eq!(genesis_runtime(Some(current)), Ok(GENESIS_RUNTIME));
        let e = genesis_runtime(Some(99)).expect_err("no such release");
        assert!(
            e.contains("runtime_spec_version 99 is not a runtime this node carries"),
            "{e}"
        );
    }
}
