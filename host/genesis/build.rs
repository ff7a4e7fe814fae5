//! Builds the runtime to WebAssembly and hands the blob to the node as its genesis runtime.
//!
//! Like Substrate's wasm builder, this runs a nested `cargo rustc` of the `vexidus-runtime` crate
//! for `wasm32-unknown-unknown` with the `runtime-wasm` profile, in a target directory of its own
//! (so it never waits on the outer build's lock). Everything that could leak the build machine
//! into the bytes is pinned: the profile (LTO, one codegen unit, stripped), the flags (outer
//! `RUSTFLAGS` and wrappers are dropped), and paths (remapped to fixed prefixes). Two clean
//! builds give identical bytes; `tests/tests/reproducible.rs` checks it.
//!
//! `VEXIDUS_RUNTIME_FEATURES` (comma-separated) builds the runtime with extra cargo features.

#[path = "wasm_builder.rs"]
mod wasm_builder;

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("host/genesis/ lives in the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));

    for dir in ["runtime", "runtime-api", "governance-pallet"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.toml").display()
    );
    println!("cargo:rerun-if-env-changed=VEXIDUS_RUNTIME_FEATURES");
    println!("cargo:rerun-if-env-changed=VEXIDUS_WASM_TARGET_DIR");

    let features = env::var("VEXIDUS_RUNTIME_FEATURES").unwrap_or_default();
    let target_dir = env::var_os("VEXIDUS_WASM_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| default_target_dir(&out_dir, &features));

    let blob = wasm_builder::build_runtime(&root, &target_dir, &features)
        .unwrap_or_else(|e| panic!("{e}"));
    let dest = out_dir.join("vexidus_runtime.wasm");
    std::fs::copy(&blob, &dest).expect("copy the runtime blob into OUT_DIR");
    println!("cargo:rustc-env=VEXIDUS_RUNTIME_WASM={}", dest.display());
}

/// `<target>/runtime-wasm[-features]`, next to the outer build's profile directories.
fn default_target_dir(out_dir: &Path, features: &str) -> PathBuf {
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out (or with a target triple in between).
    let target = out_dir
        .ancestors()
        .find(|p| p.join("CACHEDIR.TAG").exists())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.join("wasm"));
    let suffix = if features.is_empty() {
        String::new()
    } else {
        format!("-{}", features.replace(',', "-"))
    };
    target.join(format!("runtime-wasm{suffix}"))
}
