//! Stamps the node with a digest of the sources it was built from: `vexidus-node --version`
//! prints it, and the end-to-end tests refuse a binary built from other sources.

// Only its source digest is used here; the blob itself is built by vexidus-genesis.
#[path = "../genesis/wasm_builder.rs"]
#[allow(dead_code)]
mod wasm_builder;

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"))
        .ancestors()
        .nth(2)
        .expect("host/node/ lives in the workspace")
        .to_path_buf();
    // `implemented_upgrades` reads it with option_env!.
    println!("cargo:rerun-if-env-changed=VEXIDUS_EXTRA_UPGRADES");
    for dir in wasm_builder::DIGEST_DIRS {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rustc-env=VEXIDUS_SOURCE_DIGEST={}",
        wasm_builder::source_digest(&root)
    );
}
