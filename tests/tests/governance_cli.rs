//! Parameter governance through the real CLI against a real dev node: a proposal that passes
//! changes the fee of the next transfer.

use anyhow::Result;
use vexidus_tests::{Node, cli, cli_json};

#[test]
fn gas_price_proposal_through_the_cli() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start_dev(&dir.path().join("data"), 0.3, &[])?;
    let key = dir.path().join("dev.key");
    let k = key.to_str().unwrap_or_default();
    cli_json(&node.url, &["keys", "dev", "--out", k])?;

    let out = cli(
        &node.url,
        &[
            "proposal",
            "create",
            "--key",
            k,
            "--param",
            "gas_prize",
            "--value",
            "20",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unknown parameter \"gas_prize\"; governable parameters: gas_price")
    );
    let out = cli(
        &node.url,
        &[
            "proposal",
            "create",
            "--key",
            k,
            "--param",
            "gas_price",
            "--value",
            "5000",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("gas_price = 5000 is out of bounds: allowed 1 to 1000")
    );

    let created = cli_json(
        &node.url,
        &[
            "proposal",
            "create",
            "--key",
            k,
            "--param",
            "gas_price",
            "--value",
            "20",
        ],
    )?;
    let id = created["receipt"]["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["type"] == "ProposalCreated"))
        .and_then(|e| e["id"].as_u64())
        .expect("ProposalCreated");
    assert_eq!(
        cli_json(&node.url, &["query", "proposal", &id.to_string()])?["status"],
        "open"
    );
    cli_json(
        &node.url,
        &[
            "proposal",
            "vote",
            "--key",
            k,
            "--id",
            &id.to_string(),
            "--approve",
        ],
    )?;
    assert_eq!(
        cli_json(&node.url, &["query", "proposal", &id.to_string()])?["status"],
        "passed"
    );
    cli_json(
        &node.url,
        &["proposal", "execute", "--key", k, "--id", &id.to_string()],
    )?;
    assert_eq!(cli_json(&node.url, &["query", "params"])?["gas_price"], 20);

    let to = cli_json(
        &node.url,
        &[
            "keys",
            "generate",
            "--out",
            dir.path().join("to.key").to_str().unwrap_or_default(),
        ],
    )?;
    let sent = cli_json(
        &node.url,
        &[
            "tx",
            "transfer",
            "--key",
            k,
            "--to",
            to["address"].as_str().unwrap_or_default(),
            "--amount",
            "1",
        ],
    )?;
    assert_eq!(sent["receipt"]["fee"].as_u64(), Some(21_000 * 20));
    Ok(())
}
