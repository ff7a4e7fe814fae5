//! Builds the second runtime versions the upgrade tests need (`runtime/` cargo features
//! `next-example`, `next-bad-migration`, `next-trap`) with the same builder as the node's genesis
//! runtime, and points `VEXIDUS_RUNTIME_<FEATURE>` at each blob.

#[path = "../host/genesis/wasm_builder.rs"]
mod wasm_builder;

use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    for dir in [
        "runtime",
        "runtime-api",
        "governance-pallet",
        "host/genesis/wasm_builder.rs",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let target = out_dir
        .ancestors()
        .find(|p| p.join("CACHEDIR.TAG").exists())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.join("wasm"))
        .join("runtime-wasm-variants");
    for dir in wasm_builder::DIGEST_DIRS {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rustc-env=VEXIDUS_SOURCE_DIGEST={}",
        wasm_builder::source_digest(&root)
    );
    for feature in [
        "next-example",
        "next-bad-migration",
        "next-trap",
        "next-short-jail",
    ] {
        let blob =
            wasm_builder::build_runtime(&root, &target, feature).unwrap_or_else(|e| panic!("{e}"));
        let dest = out_dir.join(format!("{feature}.wasm"));
        std::fs::copy(&blob, &dest).expect("copy the blob");
        let var = format!(
            "VEXIDUS_RUNTIME_{}",
            feature.to_uppercase().replace('-', "_")
        );
        println!("cargo:rustc-env={var}={}", dest.display());
    }
}
