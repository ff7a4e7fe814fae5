//! The README walkthrough, end to end with the real binaries: a dev chain rises, a transfer made
//! with the CLI is visible within two blocks with its fee split 80/20, a restart continues the
//! chain, and replaying every stored block reproduces every state root.

use anyhow::Result;
use std::time::Duration;
use vexidus_tests::{Node, cli, cli_json, node_command, treasury_address};

const FEE: u64 = 21_000 * 10;

#[test]
fn transfer_on_a_dev_chain_then_restart_and_replay() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut node = Node::start_dev(&data, 0.5, &[])?;

    // The height rises.
    let h1 = cli_json(&node.url, &["query", "status"])?["height"]
        .as_u64()
        .unwrap_or(0);
    node.wait_height(h1 + 2, Duration::from_secs(20))?;
    let status = cli_json(&node.url, &["query", "status"])?;
    assert!(status["height"].as_u64() > Some(h1));
    assert_eq!(status["runtime"]["spec_name"], "vexidus");

    // Keys.
    let dev_key = dir.path().join("dev.key");
    let new_key = dir.path().join("new.key");
    let dev = cli_json(
        &node.url,
        &["keys", "dev", "--out", dev_key.to_str().unwrap_or_default()],
    )?;
    let fresh = cli_json(
        &node.url,
        &[
            "keys",
            "generate",
            "--out",
            new_key.to_str().unwrap_or_default(),
        ],
    )?;
    let to = fresh["address"].as_str().unwrap_or_default().to_string();
    let alice = dev["address"].as_str().unwrap_or_default().to_string();

    let treasury = treasury_address();
    let balance = |addr: &str| -> Result<u64> {
        Ok(cli_json(&node.url, &["query", "account", addr])?["balance"]
            .as_u64()
            .unwrap_or(0))
    };
    let alice_before = balance(&alice)?;
    let treasury_before = balance(&treasury)?;

    // The transfer, submitted without waiting so the test measures inclusion itself.
    let submitted_at = node.height()?;
    let sub = cli_json(
        &node.url,
        &[
            "tx",
            "transfer",
            "--key",
            dev_key.to_str().unwrap_or_default(),
            "--to",
            &to,
            "--amount",
            "5",
            "--no-wait",
        ],
    )?;
    let hash = sub["hash"].as_str().unwrap_or_default().to_string();
    let included = node
        .client()
        .wait_included(&hash, Duration::from_secs(20))?;
    let at = included["height"].as_u64().unwrap_or(u64::MAX);
    assert!(
        at <= submitted_at + 2,
        "included at {at}, submitted at {submitted_at}: not within two blocks"
    );
    assert_eq!(included["receipt"]["success"], true);
    assert_eq!(included["receipt"]["fee"].as_u64(), Some(FEE));
    // The block lists it; `full = false` lists hashes only (what a load generator follows).
    let client = node.client();
    let full = client.call("vex_getBlock", serde_json::json!([at]))?;
    let hashes = client.call("vex_getBlock", serde_json::json!([at, false]))?;
    assert_eq!(full["hash"], hashes["hash"]);
    assert_eq!(full["transactions"][0]["hash"], hash.as_str());
    assert_eq!(hashes["transactions"], serde_json::json!([hash]));
    let bad = client.call("vex_getBlock", serde_json::json!([at, "no"]));
    assert!(
        format!("{:?}", bad.err()).contains("optional second parameter is `full`"),
        "a non-boolean second parameter is refused with a reason"
    );

    let acct = cli_json(&node.url, &["query", "account", &to])?;
    assert_eq!(acct["balance"].as_u64(), Some(5_000_000_000));
    assert_eq!(acct["nonce"].as_u64(), Some(0));
    // The dev key is also the proposer: it pays the fee and earns 80% of it back.
    assert_eq!(
        balance(&alice)?,
        alice_before - 5_000_000_000 - FEE + FEE * 80 / 100
    );
    assert_eq!(balance(&treasury)?, treasury_before + FEE * 20 / 100);

    // The CLI waits for inclusion and reports a failed operation in words, exiting non-zero.
    let out = cli(
        &node.url,
        &[
            "tx",
            "transfer",
            "--key",
            new_key.to_str().unwrap_or_default(),
            "--to",
            &alice,
            "--amount",
            "100",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("insufficient balance"), "{stderr}");

    // Restart on the same data directory: the chain continues from where it stopped.
    let stopped_at = node.height()?;
    assert_eq!(node.stop(), Some(0));
    let node = Node::start_dev(&data, 0.5, &[])?;
    assert!(node.height()? >= stopped_at);
    node.wait_height(stopped_at + 2, Duration::from_secs(20))?;
    assert_eq!(
        cli_json(&node.url, &["query", "account", &to])?["balance"].as_u64(),
        Some(4_999_790_000)
    );
    drop(node);

    // Determinism: re-execute every stored block into an empty database.
    let replay = dir.path().join("replay");
    let out = node_command(&[
        "replay",
        "--data-dir",
        data.to_str().unwrap_or_default(),
        "--into",
        replay.to_str().unwrap_or_default(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("every state root matches"), "{stdout}");
    Ok(())
}

#[test]
fn runtime_hash_and_version_of_the_genesis_blob() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let blob = dir.path().join("runtime.wasm");
    std::fs::write(&blob, vexidus_genesis::GENESIS_RUNTIME)?;
    let hash = cli_json(
        "http://unused",
        &["runtime", "hash", blob.to_str().unwrap_or_default()],
    )?;
    assert_eq!(
        hash["hash"],
        format!(
            "0x{}",
            blake3::hash(vexidus_genesis::GENESIS_RUNTIME).to_hex()
        )
    );
    let version = cli_json(
        "http://unused",
        &["runtime", "version", blob.to_str().unwrap_or_default()],
    )?;
    assert_eq!(version["spec_name"], "vexidus");
    assert_eq!(version["spec_version"], 2);
    assert_eq!(version["abi_version"], 1);
    std::fs::write(&blob, b"garbage")?;
    let out = cli(
        "http://unused",
        &["runtime", "version", blob.to_str().unwrap_or_default()],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a WebAssembly module"));
    Ok(())
}
