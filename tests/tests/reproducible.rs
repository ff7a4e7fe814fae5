//! Two clean builds of the runtime blob are byte-identical: the blob embedded in this build of
//! the node is compared with a fresh build of a copy of the sources in another directory, with
//! another target directory, through the same command line `host/genesis/build.rs` uses.

#[path = "../../host/genesis/wasm_builder.rs"]
mod wasm_builder;

use std::path::Path;

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if matches!(name_str.as_ref(), "target" | ".git" | "data") {
            continue;
        }
        let ty = entry.file_type()?;
        if ty.is_dir() {
            copy_tree(&entry.path(), &to.join(&name))?;
        } else if ty.is_file() {
            std::fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}

#[test]
fn runtime_blob_is_reproducible() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let scratch = tempfile::tempdir().expect("tempdir");
    let copy = scratch.path().join("elsewhere/vexidus");
    copy_tree(root, &copy).expect("copy the sources");
    let blob = wasm_builder::build_runtime(&copy, &scratch.path().join("other-target"), "")
        .expect("build the runtime");
    let fresh = std::fs::read(&blob).expect("read the fresh blob");
    let embedded = vexidus_genesis::GENESIS_RUNTIME;
    assert_eq!(
        blake3::hash(&fresh),
        blake3::hash(embedded),
        "a second clean build gave different bytes ({} vs {} bytes)",
        fresh.len(),
        embedded.len()
    );
    assert_eq!(fresh, embedded);
}
