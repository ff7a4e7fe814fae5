//! Bad input over JSON-RPC gets an error that says what is wrong, and the node keeps producing.

use anyhow::Result;
use serde_json::json;
use std::time::Duration;
use vexidus_cli::{ClientError, RpcClient};
use vexidus_runtime_api::signing::{Keypair, dev_seed};
use vexidus_runtime_api::transaction::{Operation, Transaction};
use vexidus_runtime_api::{Address, SignedTransaction};
use vexidus_tests::Node;

fn hex_tx(tx: &SignedTransaction) -> String {
    format!("0x{}", hex::encode(borsh::to_vec(tx).expect("encodes")))
}

fn submit_err(client: &RpcClient, param: serde_json::Value) -> (i64, String) {
    match client.call("vex_submitTransaction", json!([param])) {
        Err(ClientError::Rpc { code, message }) => (code, message),
        other => panic!("expected an RPC error, got {other:?}"),
    }
}

#[test]
fn bad_input_is_refused_with_a_reason_and_the_node_goes_on() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start_dev(
        &dir.path().join("data"),
        0.3,
        &["--rpc-max-request-bytes", "200000"],
    )?;
    let client = node.client();
    let alice = Keypair::from_seed(dev_seed());
    let base = Transaction {
        chain_id: "vexidus-dev".into(),
        sender: alice.public(),
        nonce: 0,
        max_gas: 21_000,
        valid_until: 1_000_000,
        operations: vec![Operation::Transfer {
            to: Address([7; 32]),
            amount: 1,
        }],
    };

    let (code, msg) = submit_err(&client, json!("0xnothex"));
    assert_eq!(code, -32602);
    assert!(msg.contains("not valid hex"), "{msg}");

    let (code, msg) = submit_err(&client, json!("0xdeadbeef"));
    assert_eq!(code, 1001);
    assert!(msg.starts_with("malformed transaction"), "{msg}");

    let (_, msg) = submit_err(&client, json!(42));
    assert!(
        msg.contains("expected a hex-encoded signed transaction"),
        "{msg}"
    );

    let mut forged = alice.sign_transaction(base.clone());
    forged.transaction.operations = vec![Operation::Transfer {
        to: Address([7; 32]),
        amount: 1_000_000,
    }];
    let (code, msg) = submit_err(&client, json!(hex_tx(&forged)));
    assert_eq!(code, 1001);
    assert!(msg.starts_with("bad signature"), "{msg}");

    let wrong_chain = alice.sign_transaction(Transaction {
        chain_id: "mainnet".into(),
        ..base.clone()
    });
    let (_, msg) = submit_err(&client, json!(hex_tx(&wrong_chain)));
    assert!(
        msg.contains("wrong chain id") && msg.contains("mainnet"),
        "{msg}"
    );

    let future = alice.sign_transaction(Transaction {
        nonce: 5,
        ..base.clone()
    });
    let (_, msg) = submit_err(&client, json!(hex_tx(&future)));
    assert!(msg.contains("nonce 5 is in the future"), "{msg}");

    let poor = Keypair::from_seed([42; 32]);
    let broke = poor.sign_transaction(Transaction {
        sender: poor.public(),
        ..base.clone()
    });
    let (_, msg) = submit_err(&client, json!(hex_tx(&broke)));
    assert!(msg.contains("insufficient funds"), "{msg}");

    // A good one is included; sending it again is a replay.
    let good = alice.sign_transaction(base.clone());
    let hash = client.call("vex_submitTransaction", json!([hex_tx(&good)]))?;
    let hash = hash.as_str().unwrap_or_default().to_string();
    client.wait_included(&hash, Duration::from_secs(20))?;
    let (_, msg) = submit_err(&client, json!(hex_tx(&good)));
    assert!(
        msg.contains("already used") && msg.contains("replayed"),
        "{msg}"
    );

    // Oversized request: refused from its declared length, before the body is read.
    let response = oversized_request(&node.url, 300_000)?;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.to_lowercase().contains("too big"), "{response}");

    // Unknown method and bad parameters to reads.
    match client.call("vex_doesNotExist", json!([])) {
        Err(ClientError::Rpc { code, .. }) => assert_eq!(code, -32601),
        other => panic!("expected method not found, got {other:?}"),
    }
    match client.call("vex_getAccount", json!(["0x1234"])) {
        Err(ClientError::Rpc { message, .. }) => {
            assert!(message.contains("expected 64 hex digits"), "{message}")
        }
        other => panic!("expected a bad address error, got {other:?}"),
    }

    // Still producing.
    let h = node.height()?;
    node.wait_height(h + 2, Duration::from_secs(20))?;
    Ok(())
}

#[test]
fn the_rate_limit_applies_per_client_and_recovers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start_dev(&dir.path().join("data"), 0.5, &["--rpc-rate-limit", "5"])?;
    std::thread::sleep(Duration::from_millis(1200)); // let the bucket refill after start-up polling
    let client = node.client();
    let mut limited = 0;
    for _ in 0..20 {
        match client.call("vex_getStatus", json!([])) {
            Err(ClientError::Rpc {
                code: -32005,
                message,
            }) => {
                assert!(message.contains("rate limit"), "{message}");
                limited += 1;
            }
            Ok(_) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(
        limited >= 10,
        "only {limited} of 20 calls were limited at 5/s"
    );
    std::thread::sleep(Duration::from_millis(1100));
    client.call("vex_getStatus", json!([]))?;
    Ok(())
}

/// Sends only the headers of a request declaring `len` body bytes and returns the response.
fn oversized_request(url: &str, len: usize) -> Result<String> {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut sock = std::net::TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        sock,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )?;
    let mut buf = vec![0u8; 4096];
    let n = sock.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// POSTs `body` and returns the response body.
fn post(url: &str, body: &str) -> Result<String> {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut sock = std::net::TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        sock,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = Vec::new();
    sock.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(text))
}

fn batch(len: usize) -> String {
    let calls: Vec<String> = (0..len)
        .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"vex_getStatus","params":[]}}"#))
        .collect();
    format!("[{}]", calls.join(","))
}

#[test]
fn an_oversized_batch_is_refused_and_a_batch_costs_its_length_in_tokens() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start_dev(
        &dir.path().join("data"),
        0.5,
        &["--rpc-rate-limit", "100", "--rpc-max-batch-len", "50"],
    )?;
    // Longer than the limit: one error for the whole batch, no call answered. The calls are
    // garbage past the first, so an answer proves none of them was parsed.
    let mut too_long = batch(1);
    too_long.pop();
    for _ in 0..60 {
        too_long.push_str(r#",{"not":"a call"}"#);
    }
    too_long.push(']');
    let answer = post(&node.url, &too_long)?;
    let v: serde_json::Value = serde_json::from_str(&answer)?;
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("too large") || m.contains("too big")),
        "{answer}"
    );
    // Within the limit: every call answered.
    std::thread::sleep(Duration::from_millis(1100));
    let answer: serde_json::Value = serde_json::from_str(&post(&node.url, &batch(50))?)?;
    assert_eq!(answer.as_array().map(Vec::len), Some(50), "{answer}");
    // The 50 calls took 50 of the 100 tokens: a second batch of 50 fits, a third does not.
    let answer: serde_json::Value = serde_json::from_str(&post(&node.url, &batch(50))?)?;
    assert_eq!(answer.as_array().map(Vec::len), Some(50), "{answer}");
    let answer = post(&node.url, &batch(50))?;
    assert!(answer.contains("rate limit"), "{answer}");
    // The node goes on.
    std::thread::sleep(Duration::from_millis(1100));
    node.client().call("vex_getStatus", json!([]))?;
    Ok(())
}
