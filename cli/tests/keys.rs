//! The `vexidus keys` commands on real files.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn vexidus(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vexidus"))
        .args(args)
        .output()
        .expect("run vexidus")
}

#[test]
fn generate_writes_a_private_key_file_and_show_reads_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("k.key");
    let p = path.to_str().expect("utf-8 path");
    let out = vexidus(&["keys", "generate", "--out", p, "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let mode = std::fs::metadata(&path).expect("file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.trim().len(), 64);
    assert!(text.trim().chars().all(|c| c.is_ascii_hexdigit()));

    let out = vexidus(&["keys", "show", p, "--output", "json"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(shown, made);
    let pk = shown["public_key"].as_str().expect("public_key");
    let address = shown["address"].as_str().expect("address");
    let pk_bytes = hex::decode(&pk[2..]).expect("hex");
    assert_eq!(address, format!("0x{}", blake3::hash(&pk_bytes).to_hex()));

    // Never overwrites by accident.
    let out = vexidus(&["keys", "generate", "--out", p]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists (pass --force to overwrite)")
    );
    // Two generated keys differ.
    let other = dir.path().join("k2.key");
    let out = vexidus(&[
        "keys",
        "generate",
        "--out",
        other.to_str().expect("utf-8"),
        "--output",
        "json",
    ]);
    let second: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_ne!(second["public_key"], made["public_key"]);
}

#[test]
fn dev_key_is_the_well_known_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dev.key");
    let out = vexidus(&[
        "keys",
        "dev",
        "--out",
        path.to_str().expect("utf-8"),
        "--output",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let seed = blake3::hash(b"vexidus/dev/alice");
    assert_eq!(
        std::fs::read_to_string(&path).expect("read").trim(),
        seed.to_hex().as_str()
    );
    let expected = ed25519_dalek::SigningKey::from_bytes(seed.as_bytes())
        .verifying_key()
        .to_bytes();
    assert_eq!(v["public_key"], format!("0x{}", hex::encode(expected)));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "not a key").expect("write");
    let out = vexidus(&["keys", "show", bad.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a key: expected 64 hex digits"),
        "{err}"
    );

    let out = vexidus(&["keys", "show", "/nonexistent/key"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read key file /nonexistent/key"));

    let key = dir.path().join("k.key");
    vexidus(&["keys", "dev", "--out", key.to_str().expect("utf-8")]);
    let out = vexidus(&[
        "tx",
        "transfer",
        "--key",
        key.to_str().expect("utf-8"),
        "--to",
        "0x12",
        "--amount",
        "1",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"0x12\" is not an address"));
    let out = vexidus(&[
        "tx",
        "transfer",
        "--key",
        key.to_str().expect("utf-8"),
        "--to",
        &format!("0x{}", "ab".repeat(32)),
        "--amount",
        "1.0000000001",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than 9 decimals"));
    let out = vexidus(&["--rpc", "http://127.0.0.1:1", "query", "status"]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot reach the node at http://127.0.0.1:1")
    );
}
