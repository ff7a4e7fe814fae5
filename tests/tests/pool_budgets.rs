//! The pool's budgets against a real dev node: one funded account flooding it holds at most
//! the per-sender limit, other senders are still admitted (the flooder's highest nonces make
//! room when bytes run out), the pool's bytes never exceed the budget, and a sender cannot
//! pend more than its balance can pay.

use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use vexidus_cli::RpcClient;
use vexidus_runtime_api::signing::{Keypair, dev_seed};
use vexidus_runtime_api::transaction::{Operation, ProposalKind, Transaction};
use vexidus_runtime_api::{Address, NANO_PER_VXS, SignedTransaction};
use vexidus_tests::Node;

const MAX_PER_SENDER: usize = 8;

fn size(tx: &SignedTransaction) -> u64 {
    borsh::object_length(tx).expect("encodes") as u64
}

fn tx(key: &Keypair, nonce: u64, max_gas: u64, op: Operation) -> SignedTransaction {
    key.sign_transaction(Transaction {
        chain_id: "vexidus-dev".into(),
        sender: key.public(),
        nonce,
        max_gas,
        valid_until: 1_000_000,
        operations: vec![op],
    })
}

fn transfer(key: &Keypair, nonce: u64, to: Address, amount: u128) -> SignedTransaction {
    tx(key, nonce, 21_000, Operation::Transfer { to, amount })
}

/// A transaction of about 600 bytes.
fn bulky(key: &Keypair, nonce: u64) -> SignedTransaction {
    tx(
        key,
        nonce,
        200_000,
        Operation::CreateProposal {
            kind: ProposalKind::Text {
                title: format!("flood {nonce}"),
                body: "x".repeat(500),
            },
        },
    )
}

/// `vex_submitTransactions`: one result per transaction, `Ok(hash)` or `Err(why)`.
fn submit_all(
    client: &RpcClient,
    txs: &[SignedTransaction],
) -> Result<Vec<Result<String, String>>> {
    let hex: Vec<String> = txs
        .iter()
        .map(|t| format!("0x{}", hex::encode(borsh::to_vec(t).expect("encodes"))))
        .collect();
    let answer = client.call("vex_submitTransactions", json!([hex]))?;
    Ok(answer
        .as_array()
        .context("an array")?
        .iter()
        .map(|r| match r["hash"].as_str() {
            Some(h) => Ok(h.to_string()),
            None => Err(r["error"].as_str().unwrap_or("?").to_string()),
        })
        .collect())
}

fn balance(client: &RpcClient, who: &Address) -> Result<u128> {
    let a: Value = client.call("vex_getAccount", json!([who.to_string()]))?;
    Ok(a["balance"].as_u64().map(u128::from).unwrap_or(0))
}

fn pending_bytes(node: &Node) -> Result<u64> {
    node.status()?["pending_bytes"]
        .as_u64()
        .context("pending_bytes")
}

#[test]
fn a_flooding_sender_holds_at_most_its_share_and_others_are_still_admitted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let alice = Keypair::from_seed(dev_seed());
    let bob = Keypair::from_seed([21; 32]);
    let carol = Keypair::from_seed([22; 32]);
    // Room for Alice's share of transfers, three of Bob's bulky transactions, and less than
    // one more transfer.
    let max_bytes = MAX_PER_SENDER as u64 * size(&transfer(&alice, 10, Address([9; 32]), 1))
        + 3 * size(&bulky(&bob, 0))
        + 100;
    let (per_sender, bytes) = (MAX_PER_SENDER.to_string(), max_bytes.to_string());
    // Blocks 4 s apart: the flood happens between two of them.
    let node = Node::start_dev(
        &dir.path().join("data"),
        4.0,
        &[
            "--pool-max-per-sender",
            &per_sender,
            "--pool-max-bytes",
            &bytes,
        ],
    )?;
    let client = node.client();
    // Fund Bob well and Carol with one VXS, and wait until both are in a block.
    let funded = submit_all(
        &client,
        &[
            transfer(&alice, 0, bob.public().address(), 1_000 * NANO_PER_VXS),
            transfer(&alice, 1, carol.public().address(), NANO_PER_VXS),
        ],
    )?;
    assert!(funded.iter().all(Result::is_ok), "{funded:?}");
    let started = Instant::now();
    while balance(&client, &carol.public().address())? == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "funding never landed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    while node.status()?["pending_transactions"].as_u64() != Some(0) {
        std::thread::sleep(Duration::from_millis(50));
    }

    // Alice floods: 50 transfers in one call. The pool holds 8 of them at most.
    let flood: Vec<SignedTransaction> = (2..52)
        .map(|n| transfer(&alice, n, Address([9; 32]), 1))
        .collect();
    let results = submit_all(&client, &flood)?;
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    assert!(
        admitted <= MAX_PER_SENDER,
        "{admitted} admitted: {results:?}"
    );
    let refused = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .find(|e| e.contains("the most one sender may have"));
    assert!(refused.is_some(), "{results:?}");
    assert!(pending_bytes(&node)? <= max_bytes);

    assert_eq!(admitted, MAX_PER_SENDER, "{results:?}");
    // Bob fills what is left of the bytes with bulky transactions...
    let bulk: Vec<SignedTransaction> = (0..MAX_PER_SENDER as u64).map(|n| bulky(&bob, n)).collect();
    let results = submit_all(&client, &bulk)?;
    assert!(
        results
            .iter()
            .any(|r| r.as_ref().is_err_and(|e| e.contains("bytes"))),
        "the byte budget never filled: {results:?}"
    );
    assert!(pending_bytes(&node)? <= max_bytes);
    let bob_admitted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(bob_admitted, 3, "{results:?}");
    // ...and Carol, holding nothing, still gets in: Bob's highest nonce makes room.
    let before = node.status()?["pending_transactions"].as_u64();
    let carol_tx = transfer(&carol, 0, Address([9; 32]), NANO_PER_VXS / 2);
    let results = submit_all(&client, std::slice::from_ref(&carol_tx))?;
    assert!(results[0].is_ok(), "{results:?}");
    assert!(pending_bytes(&node)? <= max_bytes);
    assert_eq!(
        node.status()?["pending_transactions"].as_u64(),
        before,
        "one of Bob's left for Carol's"
    );

    // Carol cannot pend more than her balance can pay: half of it is promised already.
    let results = submit_all(
        &client,
        &[transfer(&carol, 1, Address([9; 32]), NANO_PER_VXS / 2)],
    )?;
    let err = results[0].as_ref().expect_err("overcommitted");
    assert!(err.contains("more than its balance"), "{err}");

    // The node goes on: what was admitted is included.
    let started = Instant::now();
    while balance(&client, &Address([9; 32]))? < NANO_PER_VXS / 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "carol's transfer never landed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
