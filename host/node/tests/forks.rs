//! Forks in the host (real wasm runtime, real RocksDB in a temp dir): blocks above the last
//! irreversible block execute on overlays over their own parent's state, queries follow the
//! head, finality writes one branch to the database and drops the others, and a restarted
//! node executes its kept non-final blocks again.

use std::sync::Arc;
use vexidus_chain::{BlockOutcome, Chain};
use vexidus_executor::Executor;
use vexidus_genesis::dev_genesis;
use vexidus_harness::Harness;
use vexidus_runtime_api::abi::{Query, QueryResponse};
use vexidus_runtime_api::signing::Keypair;
use vexidus_runtime_api::state::GenesisValidator;
use vexidus_runtime_api::transaction::{Operation, Transaction};
use vexidus_runtime_api::{Address, NANO_PER_VXS, SignedTransaction};
use vexidus_storage::Db;

fn open(dir: &std::path::Path, genesis: &vexidus_runtime_api::GenesisConfig) -> Chain {
    let mut db = Db::open(&dir.join("db")).expect("db");
    db.set_sync_writes(false);
    let db = Arc::new(db);
    let executor = Arc::new(Executor::new(Some(db.module_store())));
    Chain::open(
        db,
        executor,
        genesis,
        vexidus_genesis::GENESIS_RUNTIME,
        vec![],
    )
    .expect("chain")
}

fn balance(chain: &Chain, at: &[u8; 32], who: Address) -> u128 {
    match chain.query_at(at, Query::Account(who)).expect("query") {
        QueryResponse::Account(a) => a.balance,
        other => panic!("{other:?}"),
    }
}

fn transfer(
    chain: &Chain,
    from: &Keypair,
    nonce: u64,
    to: Address,
    amount: u128,
) -> SignedTransaction {
    from.sign_transaction(Transaction {
        chain_id: chain.chain_id().into(),
        sender: from.public(),
        nonce,
        max_gas: 40_000,
        valid_until: 1_000,
        operations: vec![Operation::Transfer { to, amount }],
    })
}

#[test]
fn forks_execute_on_their_parent_and_finality_keeps_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let alice = Harness::dev_key();
    let bob = Harness::account_key("bob");
    let mut genesis = dev_genesis();
    genesis.validators.push(GenesisValidator {
        public_key: bob.public(),
        stake: 10_000 * NANO_PER_VXS,
        commission_bps: 0,
    });
    let payer = Harness::account_key("charlie");
    let carol = Harness::account_key("carol").public().address();
    let mut chain = open(dir.path(), &genesis);
    let g = chain.head().hash;

    // Two blocks at height 1 on genesis, one paying carol 5 VXS, the other 7.
    let a1 = chain
        .produce_on(
            &g,
            vec![transfer(&chain, &payer, 0, carol, 5 * NANO_PER_VXS)],
            &alice,
            1,
        )
        .expect("a1");
    let b1 = chain
        .produce_on(
            &g,
            vec![transfer(&chain, &payer, 0, carol, 7 * NANO_PER_VXS)],
            &bob,
            2,
        )
        .expect("b1");
    assert!(a1.receipts[0].success && b1.receipts[0].success);
    assert_ne!(a1.hash, b1.hash);
    let base = balance(&chain, &g, carol);
    assert_eq!(balance(&chain, &a1.hash, carol), base + 5 * NANO_PER_VXS);
    assert_eq!(balance(&chain, &b1.hash, carol), base + 7 * NANO_PER_VXS);
    // Producing does not move the head; the caller's fork choice does.
    assert_eq!(chain.head().hash, g);
    chain.set_head(&b1.hash).expect("head");
    assert_eq!(chain.head().height, 1);

    // A child of b1 built elsewhere imports onto b1's state (nonce 1 is right only there).
    let mut other = open(&dir.path().join("other"), &genesis);
    let b1_copy = other.execute_block(b1.block.clone()).expect("b1 elsewhere");
    assert_eq!(b1_copy.hash, b1.hash);
    let b2 = other
        .produce_on(
            &b1.hash,
            vec![transfer(&other, &payer, 1, carol, NANO_PER_VXS)],
            &bob,
            3,
        )
        .expect("b2");
    let b2_here = chain
        .execute_block(b2.block.clone())
        .expect("b2 imports on b1");
    assert_eq!(b2_here.block.header.state_root, b2.block.header.state_root);
    // The same block on the other fork's state is refused (its parent decides its state).
    let mut on_a1 = b2.block.clone();
    on_a1.header.parent_hash = a1.hash;
    assert!(chain.execute_block(on_a1).is_err());
    drop(other);

    // A block whose parent nobody has is refused as such.
    let mut orphan = b2.block.clone();
    orphan.header.parent_hash = [7; 32];
    orphan.header.height = 3;
    assert!(matches!(
        chain.execute_block(orphan),
        Err(vexidus_chain::ChainError::UnknownParent(_))
    ));

    // Nothing above genesis is in the database yet; restart executes the kept blocks again.
    chain.set_head(&b2.hash).expect("head");
    assert_eq!(chain.db().head().expect("db").expect("head").height, 0);
    drop(chain);
    let mut chain = open(dir.path(), &genesis);
    assert_eq!(
        chain.head().hash,
        b2.hash,
        "highest kept block is the head after a restart"
    );
    assert_eq!(chain.pending_hashes().len(), 3);
    assert_eq!(balance(&chain, &b2.hash, carol), base + 8 * NANO_PER_VXS);

    // Finality on b2 writes b1 and b2, drops a1, and the stored state is b2's.
    let written = chain.finalize(&b2.hash).expect("finalize");
    assert_eq!(
        written.iter().map(|b| b.hash).collect::<Vec<_>>(),
        vec![b1.hash, b2.hash]
    );
    assert!(chain.pending_hashes().is_empty(), "the losing fork is gone");
    assert!(!chain.knows(&a1.hash));
    let stored = chain.db().head().expect("db").expect("head");
    assert_eq!(stored.hash, b2.hash);
    assert_eq!(
        chain.db().recompute_lthash().expect("lthash").root(),
        b2.block.header.state_root
    );
    assert_eq!(
        chain
            .db()
            .tx_location(&vexidus_runtime_api::signing::transaction_hash(
                &b2.block.transactions[0]
            ))
            .expect("idx"),
        Some((2, 0))
    );
    drop(chain);
    let chain = open(dir.path(), &genesis);
    assert!(
        chain.pending_hashes().is_empty(),
        "no kept block survives its finalization"
    );
    assert_eq!(chain.head().hash, b2.hash);
}

/// A block built or checked under shared access is kept later: if finality meanwhile dropped
/// its parent's fork it is refused, and one kept meanwhile (the same block imported twice) is
/// returned as it was kept.
#[test]
fn a_block_executed_under_shared_access_is_kept_only_while_its_parent_is() {
    let dir = tempfile::tempdir().expect("tmp");
    let alice = Harness::dev_key();
    let payer = Harness::account_key("charlie");
    let carol = Harness::account_key("carol").public().address();
    let mut chain = open(dir.path(), &dev_genesis());
    let g = chain.head().hash;
    let a1 = chain
        .produce_on(
            &g,
            vec![transfer(&chain, &payer, 0, carol, NANO_PER_VXS)],
            &alice,
            1,
        )
        .expect("a1");
    let b1 = chain.produce_on(&g, vec![], &alice, 2).expect("b1");

    // Built on a1 while a1 is above the last irreversible block...
    let BlockOutcome::Executed(on_a1) = chain
        .build_on(
            &a1.hash,
            vec![transfer(&chain, &payer, 1, carol, NANO_PER_VXS)],
            &alice,
            3,
            None,
        )
        .expect("built on a1")
    else {
        panic!("a block on a1 is built, not a halt");
    };
    // ...and the same block checked for import twice, before either is kept.
    let mut elsewhere = open(&dir.path().join("other"), &dev_genesis());
    elsewhere
        .execute_block(a1.block.clone())
        .expect("a1 elsewhere");
    let a2 = elsewhere
        .produce_on(
            &a1.hash,
            vec![transfer(&elsewhere, &payer, 1, carol, 2 * NANO_PER_VXS)],
            &alice,
            4,
        )
        .expect("a2 elsewhere");
    let check = |chain: &Chain| match chain
        .check_block(a2.block.clone(), None)
        .expect("a2 checks")
    {
        BlockOutcome::Executed(built) => *built,
        BlockOutcome::Known(_) => panic!("a2 is not kept yet"),
        BlockOutcome::Halt(h) => panic!("no halt is planned, got {h:?}"),
    };
    let (first, second) = (check(&chain), check(&chain));
    let kept = chain.keep_built(first).expect("a2 kept");
    let again = chain.keep_built(second).expect("a2 kept twice");
    assert_eq!((kept.hash, again.hash), (a2.hash, a2.hash));
    assert!(chain.pending_block(&a2.hash).is_some());

    // Finality goes to b1: a1's fork is dropped, so the block built on a1 has no parent left.
    chain.set_head(&b1.hash).expect("head");
    chain.finalize(&b1.hash).expect("finalize b1");
    assert!(chain.pending_block(&a1.hash).is_none());
    assert!(matches!(
        chain.keep_built(*on_a1),
        Err(vexidus_chain::ChainError::UnknownParent(p)) if p == a1.hash
    ));
    assert!(chain.pending_block(&a2.hash).is_none());
}

/// A transaction in a block of a branch the head leaves goes back into the pool, checked
/// against the new head, and the next block on the new branch includes it; one the new branch
/// includes too, or made stale, stays out.
#[test]
fn a_head_switch_puts_the_left_branchs_transactions_back_in_the_pool() {
    use vexidus_node::state::{Applied, NodeState, Origin};
    let dir = tempfile::tempdir().expect("tmp");
    let alice = Harness::dev_key();
    let bob = Keypair::from_seed([0xb0; 32]);
    let mut genesis = dev_genesis();
    genesis
        .balances
        .push((bob.public().address(), 10 * NANO_PER_VXS));
    let chain = open(dir.path(), &genesis);
    let root = chain.head().hash;
    let node = Arc::new(NodeState::new(
        chain,
        vexidus_pool::PoolLimits::count_only(100),
        None,
    ));
    let to = Address([5; 32]);
    let (left_out, both) = {
        let chain = node.read_chain();
        (
            transfer(&chain, &alice, 0, to, NANO_PER_VXS),
            transfer(&chain, &bob, 0, to, NANO_PER_VXS),
        )
    };
    let submit = |tx: &vexidus_runtime_api::SignedTransaction| {
        let bytes = borsh::to_vec(tx).expect("encodes");
        let mut results = node.admit(vec![vexidus_pool::decode(&bytes)], Origin::Rpc);
        results.pop().expect("one result").expect("admitted")
    };
    let left_out_hash = submit(&left_out);
    let both_hash = submit(&both);

    // Branch A: one block with both transactions; the head, so the pool lets them go.
    let a = node
        .produce_on(&root, &alice, 1_000, true)
        .and_then(Applied::block)
        .expect("a");
    assert_eq!(a.receipts.len(), 2);
    node.set_head(&a.hash).expect("head a");
    assert!(!node.is_pending(&left_out_hash) && !node.is_pending(&both_hash));

    // Branch B: a block with only bob's transfer, built by another node on the same root and
    // imported here, then an empty one; the head moves there.
    let other_dir = tempfile::tempdir().expect("tmp");
    let mut other = open(other_dir.path(), &genesis);
    assert_eq!(other.head().hash, root);
    let b1 = other
        .produce_on(&root, vec![both.clone()], &alice, 1_500)
        .expect("b1");
    assert_eq!(b1.receipts.len(), 1);
    let b1 = node
        .execute(b1.block)
        .and_then(Applied::block)
        .expect("import b1");
    let b2 = node
        .produce_on(&b1.hash, &alice, 2_000, false)
        .and_then(Applied::block)
        .expect("b2");
    node.set_head(&b2.hash).expect("head b2");
    assert!(
        node.is_pending(&left_out_hash),
        "alice's transfer, only on the branch the head left, is not back in the pool"
    );
    assert!(
        !node.is_pending(&both_hash),
        "bob's transfer, on the new branch too, is back in the pool"
    );

    // The next block on the new branch includes it.
    let b3 = node
        .produce_on(&b2.hash, &alice, 2_500, true)
        .and_then(Applied::block)
        .expect("b3");
    assert_eq!(b3.block.transactions, vec![left_out]);
    node.set_head(&b3.hash).expect("head b3");
    assert!(!node.is_pending(&left_out_hash));

    // Extending the head takes nothing out.
    assert!(node.read_chain().retracted_by(&b3.hash).is_empty());
}
