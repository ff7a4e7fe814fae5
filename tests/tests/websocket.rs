//! The RPC port speaks WebSocket too: `vex_subscribeNewHeads` streams every new block and
//! `vex_subscribeFinalized` every block that becomes irreversible.

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tungstenite::Message;
use vexidus_tests::Node;

#[test]
fn new_heads_stream_over_websocket() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start_dev(&dir.path().join("data"), 0.2, &[])?;
    let ws_url = node.url.replace("http://", "ws://");
    let (mut ws, _) = tungstenite::connect(ws_url.as_str()).context("websocket handshake")?;

    // A plain call works over the same socket.
    ws.send(Message::text(
        json!({"jsonrpc":"2.0","id":1,"method":"vex_getStatus","params":[]}).to_string(),
    ))?;
    let status: Value = serde_json::from_str(ws.read()?.to_text()?)?;
    assert_eq!(status["result"]["chain_id"], "vexidus-dev");

    ws.send(Message::text(
        json!({"jsonrpc":"2.0","id":2,"method":"vex_subscribeNewHeads","params":[]}).to_string(),
    ))?;
    let sub: Value = serde_json::from_str(ws.read()?.to_text()?)?;
    let id = sub["result"].clone();
    assert!(!id.is_null(), "{sub}");

    let mut heights = Vec::new();
    while heights.len() < 3 {
        let msg: Value = serde_json::from_str(ws.read()?.to_text()?)?;
        assert_eq!(msg["method"], "vex_newHead");
        assert_eq!(msg["params"]["subscription"], id);
        let head = &msg["params"]["result"];
        assert!(head["hash"].as_str().is_some_and(|h| h.len() == 66));
        heights.push(head["height"].as_u64().context("height")?);
    }
    assert!(heights.windows(2).all(|w| w[1] == w[0] + 1), "{heights:?}");
    Ok(())
}

#[test]
fn finality_streams_over_websocket() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start_dev(&dir.path().join("data"), 0.2, &[])?;
    let ws_url = node.url.replace("http://", "ws://");
    let (mut ws, _) = tungstenite::connect(ws_url.as_str()).context("websocket handshake")?;
    ws.send(Message::text(
        json!({"jsonrpc":"2.0","id":1,"method":"vex_subscribeFinalized","params":[]}).to_string(),
    ))?;
    let sub: Value = serde_json::from_str(ws.read()?.to_text()?)?;
    assert!(!sub["result"].is_null(), "{sub}");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let msg: Value = serde_json::from_str(ws.read()?.to_text()?)?;
        assert_eq!(msg["method"], "vex_finalized");
        let f = &msg["params"]["result"];
        let height = f["height"].as_u64().context("height")?;
        // The stream names the very block the chain stores at that height.
        let block = node.client().call("vex_getBlock", json!([height]))?;
        assert_eq!(block["hash"], f["hash"], "{block}");
        seen.push(height);
    }
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
    Ok(())
}

/// A connection holds at most 64 subscriptions: the 65th is refused with an error while the
/// others keep streaming, and another connection may still subscribe.
#[test]
fn a_connection_holds_at_most_64_subscriptions() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start_dev(&dir.path().join("data"), 0.2, &[])?;
    let ws_url = node.url.replace("http://", "ws://");
    let subscribe = |ws: &mut tungstenite::WebSocket<_>, id: u64| -> Result<Value> {
        ws.send(Message::text(
            json!({"jsonrpc":"2.0","id":id,"method":"vex_subscribeNewHeads","params":[]})
                .to_string(),
        ))?;
        // Skip notifications of the subscriptions already held until the answer comes.
        loop {
            let msg: Value = serde_json::from_str(ws.read()?.to_text()?)?;
            if msg["id"] == id {
                return Ok(msg);
            }
        }
    };
    let (mut ws, _) = tungstenite::connect(ws_url.as_str()).context("websocket handshake")?;
    for id in 1..=64 {
        let answer = subscribe(&mut ws, id)?;
        assert!(
            answer["result"].is_string() || answer["result"].is_number(),
            "{answer}"
        );
    }
    let refused = subscribe(&mut ws, 65)?;
    assert!(
        refused["result"].is_null()
            && refused["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Too many subscriptions"))
            && refused["error"]["data"]
                .as_str()
                .is_some_and(|d| d.contains("64")),
        "the 65th subscription: {refused}"
    );
    // The 64 held still stream.
    let msg: Value = serde_json::from_str(ws.read()?.to_text()?)?;
    assert_eq!(msg["method"], "vex_newHead", "{msg}");

    let (mut other, _) = tungstenite::connect(ws_url.as_str()).context("second handshake")?;
    let answer = subscribe(&mut other, 1)?;
    assert!(!answer["result"].is_null(), "{answer}");
    Ok(())
}
