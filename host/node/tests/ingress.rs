//! The node's one ingress, `NodeState::admit` (real wasm runtime, real RocksDB in a temp dir):
//! one result per entry in order, whatever mix of good and bad entries arrives; each refusal
//! says what is wrong; only what was submitted here is forwarded.

use std::sync::Arc;
use vexidus_chain::Chain;
use vexidus_executor::Executor;
use vexidus_genesis::dev_genesis;
use vexidus_harness::Harness;
use vexidus_node::state::{NodeState, Origin};
use vexidus_pool::TxError;
use vexidus_runtime_api::signing::{self, Keypair};
use vexidus_runtime_api::transaction::{Operation, Transaction};
use vexidus_runtime_api::{Address, SignedTransaction};
use vexidus_storage::Db;

fn node(dir: &std::path::Path) -> Arc<NodeState> {
    let mut db = Db::open(&dir.join("db")).expect("db");
    db.set_sync_writes(false);
    let db = Arc::new(db);
    let executor = Arc::new(Executor::new(Some(db.module_store())));
    let chain = Chain::open(
        db,
        executor,
        &dev_genesis(),
        vexidus_genesis::GENESIS_RUNTIME,
        vec![],
    )
    .expect("chain");
    Arc::new(NodeState::new(
        chain,
        vexidus_pool::PoolLimits::count_only(100),
        None,
    ))
}

fn transfer(from: &Keypair, nonce: u64, chain_id: &str) -> SignedTransaction {
    from.sign_transaction(Transaction {
        chain_id: chain_id.into(),
        sender: from.public(),
        nonce,
        max_gas: 100_000,
        valid_until: 1_000,
        operations: vec![Operation::Transfer {
            to: Address([7; 32]),
            amount: 1,
        }],
    })
}

#[test]
fn a_mixed_batch_gets_one_verdict_per_entry_in_order_and_only_rpc_is_forwarded() {
    let dir = tempfile::tempdir().expect("tmp");
    let node = node(dir.path());
    let (forward, mut forwarded) = tokio::sync::mpsc::unbounded_channel();
    *node.forward.lock().expect("lock") = Some(forward);
    let alice = Harness::dev_key();
    let chain_id = node.read_chain().chain_id().to_string();

    let first = transfer(&alice, 0, &chain_id);
    let mut forged = transfer(&alice, 1, &chain_id);
    forged.signature.0[0] ^= 1;
    let gap = transfer(&alice, 5, &chain_id);
    let other_chain = transfer(&alice, 1, "another-chain");
    let second = transfer(&alice, 1, &chain_id);
    let results = node.admit(
        vec![
            Ok(first.clone()),
            Err(TxError::Malformed("not Borsh".into())),
            Ok(forged),
            Ok(gap),
            Ok(other_chain),
            Ok(first.clone()),
            Ok(second.clone()),
        ],
        Origin::Rpc,
    );
    assert_eq!(results.len(), 7);
    assert_eq!(
        results[0].as_ref().expect("admitted"),
        &signing::transaction_hash(&first)
    );
    let refusal = |i: usize| match &results[i] {
        Ok(h) => panic!("entry {i} admitted as {h:?}"),
        Err(e) => e.to_string(),
    };
    assert!(
        matches!(results[1], Err(TxError::Malformed(_))),
        "{}",
        refusal(1)
    );
    assert!(
        matches!(results[2], Err(TxError::BadSignature(_))),
        "{}",
        refusal(2)
    );
    assert!(
        matches!(
            results[3],
            Err(TxError::NonceGap {
                expected: 1,
                found: 5
            })
        ),
        "{}",
        refusal(3)
    );
    assert!(refusal(4).contains("another-chain"), "{}", refusal(4));
    assert!(
        matches!(results[5], Err(TxError::AlreadyPending(_))),
        "{}",
        refusal(5)
    );
    assert_eq!(
        results[6].as_ref().expect("admitted"),
        &signing::transaction_hash(&second)
    );
    assert!(node.is_pending(&signing::transaction_hash(&first)));

    // What was submitted here goes on to the leaders, in order, and nothing else.
    assert_eq!(forwarded.try_recv().expect("first forwarded"), first);
    assert_eq!(forwarded.try_recv().expect("second forwarded"), second);
    assert!(forwarded.try_recv().is_err());

    // A peer's transaction is admitted and not forwarded again; its resubmission is refused
    // before any check.
    let bob = Keypair::from_seed(vexidus_genesis::dev_account_seed("bob"));
    let from_peer = transfer(&bob, 0, &chain_id);
    let results = node.admit(vec![Ok(from_peer.clone())], Origin::Peer);
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(forwarded.try_recv().is_err());
    let again = node.admit(vec![Ok(from_peer)], Origin::Rpc);
    assert!(
        matches!(again[0], Err(TxError::AlreadyPending(_))),
        "{:?}",
        again[0]
    );
    assert!(forwarded.try_recv().is_err());
}
