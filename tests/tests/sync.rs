//! Two real nodes over libp2p on loopback: a validator of a chain started on the previous
//! runtime release produces, and takes this build's runtime through governance with the CLI
//! (its migration adds the block byte budget); a node started later with no key builds the same
//! genesis from the release it carries, syncs from genesis through the sync protocol, reaches
//! the same blocks and state roots, runs the upgraded runtime, and then follows the head by
//! gossip.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use vexidus_tests::{Node, cli_json};

fn block(node: &Node, height: u64) -> Result<Value> {
    Ok(node.client().call("vex_getBlock", json!([height]))?)
}

#[test]
fn a_late_node_syncs_from_genesis_across_a_runtime_upgrade_and_follows() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("dev.key");
    let k = key.to_str().context("path")?;
    let dev = cli_json("http://unused", &["keys", "dev", "--out", k])?;
    let pk = dev["public_key"]
        .as_str()
        .context("public key")?
        .to_string();
    let addr = dev["address"].as_str().context("address")?.to_string();
    let genesis = dir.path().join("genesis.json");
    let g = genesis.to_str().context("path")?;
    cli_json(
        "http://unused",
        &[
            "genesis",
            "new",
            "--out",
            g,
            "--chain-id",
            "sync-test",
            "--validator",
            &format!("{pk}:5000"),
            "--balance",
            &format!("{addr}:1000000"),
            "--upgrade-authority",
            &pk,
            "--upgrade-min-lead",
            "10",
            "--block-time",
            "0.2",
            "--runtime-spec-version",
            "1",
        ],
    )?;
    let p2p = "/ip4/127.0.0.1/udp/0/quic-v1";
    let a_args: Vec<String> = [
        "--genesis",
        g,
        "--validator-key",
        k,
        "--data-dir",
        dir.path().join("a").to_str().context("path")?,
        "--rpc-addr",
        "127.0.0.1:0",
        "--p2p-addr",
        p2p,
    ]
    .map(String::from)
    .to_vec();
    let a = Node::start(&a_args, &dir.path().join("a"))?;
    let a_p2p = a.p2p.clone().context("A's P2P address")?;

    assert_eq!(a.status()?["runtime"]["spec_version"], 1);
    let params = a.client().call("vex_getParameters", json!([]))?;
    assert_eq!(params["max_block_bytes"], 6 << 20, "{params}");

    // Traffic and a runtime upgrade on A before B exists. The CLI's gas for the upgrade is
    // what the spec 1 runtime asks.
    let to = format!("0x{}", "7c".repeat(32));
    cli_json(
        &a.url,
        &["tx", "transfer", "--key", k, "--to", &to, "--amount", "3"],
    )?;
    let wasm = dir.path().join("v2.wasm");
    std::fs::write(&wasm, vexidus_genesis::GENESIS_RUNTIME)?;
    let target = a.height()? + 12;
    let r = cli_json(
        &a.url,
        &[
            "upgrade",
            "runtime",
            "--key",
            k,
            "--name",
            "byte-budget",
            "--height",
            &target.to_string(),
            "--wasm",
            wasm.to_str().context("path")?,
        ],
    )?;
    ensure!(r["receipt"]["success"] == true, "{r}");
    a.wait_height(target + 10, Duration::from_secs(60))?;
    assert_eq!(a.status()?["runtime"]["spec_version"], 2);

    // B starts empty, with no key, and A as bootnode.
    let b_args: Vec<String> = [
        "--genesis",
        g,
        "--data-dir",
        dir.path().join("b").to_str().context("path")?,
        "--rpc-addr",
        "127.0.0.1:0",
        "--p2p-addr",
        p2p,
        "--bootnodes",
        &a_p2p,
    ]
    .map(String::from)
    .to_vec();
    let started = Instant::now();
    let b = Node::start(&b_args, &dir.path().join("b"))?;
    let a_height = a.height()?;
    b.wait_height(a_height, Duration::from_secs(60))?;
    println!(
        "synced {a_height} blocks from genesis in {} ms",
        started.elapsed().as_millis()
    );
    for h in 1..=a_height {
        let (x, y) = (block(&a, h)?, block(&b, h)?);
        assert_eq!(x["hash"], y["hash"], "block {h}");
        assert_eq!(x["state_root"], y["state_root"], "state root at {h}");
    }
    assert_eq!(
        b.status()?["runtime"]["spec_version"],
        2,
        "B runs the upgraded runtime"
    );
    let balance = |n: &Node| -> Result<Value> {
        Ok(n.client().call("vex_getAccount", json!([to]))?["balance"].clone())
    };
    assert_eq!(balance(&b)?, balance(&a)?);

    // Then B follows the head by gossip.
    let ahead = a.height()? + 10;
    a.wait_height(ahead, Duration::from_secs(30))?;
    b.wait_height(ahead, Duration::from_secs(30))?;
    assert_eq!(block(&a, ahead)?["hash"], block(&b, ahead)?["hash"]);
    assert_eq!(b.status()?["validator"], Value::Null, "B produced nothing");
    Ok(())
}
