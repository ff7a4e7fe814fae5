//! The block byte budget through the in-process harness: the real runtime in wasmtime on real
//! RocksDB. Blocks fill by bytes and count, a block over the budget is refused on import, every
//! byte of a transaction beyond the first KiB costs gas, and a chain started on the previous
//! runtime release takes all of it through governance without losing anything.

use parity_scale_codec::{Decode, Encode};
use vexidus_chain::{ChainError, transactions_root};
use vexidus_harness::Harness;
use vexidus_runtime_api::abi::{Query, QueryResponse};
use vexidus_runtime_api::block::{Block, Event, Header};
use vexidus_runtime_api::signing::{self, Keypair};
use vexidus_runtime_api::state::GenesisValidator;
use vexidus_runtime_api::transaction::{
    FREE_TRANSACTION_BYTES, GAS_PER_BYTE, Operation, ParamKey, ProposalKind,
    RUNTIME_UPGRADE_ENVELOPE_BYTES, SignedTransaction, Transaction, UpgradeTarget,
};
use vexidus_runtime_api::{GenesisConfig, NANO_PER_VXS, Parameters};
use vexidus_tests::releases;

const VXS: u128 = NANO_PER_VXS;
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn text(body_bytes: usize) -> Operation {
    Operation::CreateProposal {
        kind: ProposalKind::Text {
            title: "a long read".into(),
            body: "x".repeat(body_bytes),
        },
    }
}

/// The dev chain with a small budget (256 KiB) and three staked proposers `p0..p2`.
fn small_budget_genesis() -> (GenesisConfig, Vec<Keypair>) {
    let mut g = vexidus_genesis::dev_genesis();
    g.parameters.max_block_bytes = 256 * KIB as u32;
    g.parameters.max_runtime_code_bytes = 128 * KIB as u32;
    let keys: Vec<Keypair> = (0..3)
        .map(|i| Harness::account_key(&format!("p{i}")))
        .collect();
    for k in &keys {
        g.validators.push(GenesisValidator {
            public_key: k.public(),
            stake: 1_000 * VXS,
            commission_bps: 100,
        });
        g.balances.push((k.public().address(), 1_000 * VXS));
    }
    (g, keys)
}

fn byte_gas(tx: &SignedTransaction) -> u64 {
    (tx.encoded_len() as u64 - FREE_TRANSACTION_BYTES) * GAS_PER_BYTE
}

#[test]
fn blocks_fill_by_bytes_and_a_block_over_the_budget_is_refused_on_import() {
    let (g, keys) = small_budget_genesis();
    let mut a = Harness::new(
        g.clone(),
        vexidus_genesis::GENESIS_RUNTIME,
        Harness::dev_key(),
    )
    .expect("chain a");
    let mut b =
        Harness::new(g, vexidus_genesis::GENESIS_RUNTIME, Harness::dev_key()).expect("chain b");
    let budget = a.parameters().max_block_bytes as usize;

    // Three proposals of about 100 KiB: two fit in a block, the third waits for the next.
    let txs: Vec<SignedTransaction> = keys
        .iter()
        .map(|k| a.sign(k, vec![text(100 * KIB)]))
        .collect();
    for tx in &txs {
        a.submit(tx.clone()).expect("admitted");
    }
    let first = a.produce_block().expect("block 1");
    let bytes: usize = first
        .block
        .transactions
        .iter()
        .map(|t| t.encoded_len())
        .sum();
    assert_eq!(
        first.block.transactions.len(),
        2,
        "two fit in {budget} bytes"
    );
    assert!(bytes <= budget, "{bytes} bytes over the budget {budget}");
    assert!(
        first
            .block
            .transactions
            .iter()
            .all(|t| t.encoded_len() > 100 * KIB),
        "what was included is what was sent"
    );
    // Every byte beyond the first KiB is paid for.
    for (tx, r) in first.block.transactions.iter().zip(&first.receipts) {
        assert!(r.success, "{:?}", r.error);
        assert_eq!(r.gas_used, 80_000 + byte_gas(tx));
        assert_eq!(r.fee, u128::from(r.gas_used) * a.parameters().gas_price);
    }
    let second = a.produce_block().expect("block 2");
    assert_eq!(second.block.transactions.len(), 1);
    assert!(second.receipts[0].success);

    // A transaction no block may carry is refused at admission, saying why.
    let huge = a.sign(&keys[0], vec![text(300 * KIB)]);
    match a.submit(huge) {
        Err(e) => assert!(
            e.to_string().contains("can never be included")
                && e.to_string().contains(&format!("at most {budget} bytes")),
            "{e}"
        ),
        Ok(_) => panic!("a transaction over the block budget was admitted"),
    }

    // A producer that ignores the budget: all three in one block, validly signed. The other
    // chain refuses it as invalid and stays where it was.
    let head = b.chain().head().clone();
    let header = Header {
        parent_hash: head.hash,
        height: head.height + 1,
        timestamp_ms: 1_000,
        proposer: Harness::dev_key().public(),
        state_root: [0; 32],
        transactions_root: transactions_root(
            &txs.iter()
                .map(signing::transaction_hash)
                .collect::<Vec<_>>(),
        ),
        receipts_root: [0; 32],
    };
    let signature = Harness::dev_key().sign(
        signing::BLOCK_DOMAIN,
        b.chain().chain_id(),
        &signing::header_hash(&header),
    );
    let over = Block {
        header,
        transactions: txs.clone(),
        signature,
    };
    let total: usize = txs.iter().map(|t| t.encoded_len()).sum();
    match b.chain_mut().import_block(over) {
        Err(ChainError::InvalidBlock { reason, .. }) => assert!(
            reason.contains(&format!(
                "block carries {total} bytes of transactions, over max_block_bytes {budget}"
            )),
            "{reason}"
        ),
        other => panic!("an over-budget block was not refused: {other:?}"),
    }
    assert_eq!(b.chain().head().height, head.height);
}

#[test]
fn a_chain_on_the_previous_runtime_takes_the_byte_budget_through_governance_and_loses_nothing() {
    // A chain of spec_version 1 that set a gas price of its own and allowed runtime blobs of
    // 16 MiB (more than any block may now carry).
    let mut g = vexidus_genesis::dev_genesis();
    g.parameters.gas_price = 7;
    g.parameters.max_runtime_code_bytes = 16 * MIB as u32;
    let mut h = Harness::new(g, releases::SPEC_1, Harness::dev_key()).expect("chain");
    assert_eq!(h.runtime_version().spec_version, 1);
    let alice = Harness::dev_key();
    let bob = Harness::account_key("bob");
    let dave = Harness::account_key("dave").public().address();
    let r = h
        .execute(
            &bob,
            vec![Operation::Transfer {
                to: dave,
                amount: 5 * VXS,
            }],
        )
        .expect("a transfer on the old runtime");
    assert!(r.success);
    assert_eq!(r.gas_used, 21_000);
    // Spec 1 charged text by the operation alone.
    let r = h.execute(&alice, vec![text(64 * KIB)]).expect("text");
    assert_eq!(r.gas_used, 80_000);
    let before_params = h.parameters();
    let before_dave = h.account(&dave);
    let before_bob = h.account(&bob.public().address());
    let before_validators = h.validators();
    let old_params_bytes = h.storage(b":params").expect("stored parameters");

    // The upgrade, as governance ships it. Spec 1 charges 16 gas per byte of code.
    let code = vexidus_genesis::GENESIS_RUNTIME;
    let target = h.height() + 12;
    let head = h.height();
    let tx = alice.sign_transaction(Transaction {
        chain_id: h.chain().chain_id().into(),
        sender: alice.public(),
        nonce: h.account(&alice.public().address()).nonce,
        max_gas: 80_000 + 16 * (code.len() as u64 + 4 * KIB as u64),
        valid_until: head + 100,
        operations: vec![Operation::ScheduleUpgrade {
            name: "byte-budget".into(),
            height: target,
            info_url: String::new(),
            target: UpgradeTarget::Runtime {
                code: code.to_vec(),
            },
        }],
    });
    let r = h.include(tx).expect("scheduled");
    assert!(r.success, "{:?}", r.error);
    h.advance_to(target).expect("advance to the target");
    let migrated = h.produce_block().expect("the migration's block");
    assert!(
        migrated.events.iter().any(|e| matches!(e,
            Event::RuntimeUpgraded { name, version } if name == "byte-budget" && version.spec_version == 2)),
        "{:?}",
        migrated.events
    );
    assert_eq!(h.runtime_version().spec_version, 2);

    // The migration wrote the parameters in the new layout: the budget at its default, the
    // code limit lowered to what such a block carries, everything else as it was.
    let stored = h.storage(b":params").expect("stored parameters");
    assert_eq!(
        stored.len(),
        old_params_bytes.len() + 4,
        "the new field is stored"
    );
    let after = Parameters::decode(&mut &stored[..]).expect("decodes");
    let budget = Parameters::default().max_block_bytes;
    assert_eq!(
        after,
        Parameters {
            max_block_bytes: budget,
            max_runtime_code_bytes: budget - RUNTIME_UPGRADE_ENVELOPE_BYTES,
            ..before_params
        }
    );
    assert_eq!(after.gas_price, 7);
    assert_eq!(h.account(&dave), before_dave);
    assert_eq!(h.account(&bob.public().address()), before_bob);
    assert_eq!(h.validators(), before_validators);

    // The new rules: an ordinary transfer costs what it did; a 3 MiB text pays for its bytes;
    // one larger than the budget cannot be admitted.
    let r = h
        .execute(
            &bob,
            vec![Operation::Transfer {
                to: dave,
                amount: VXS,
            }],
        )
        .expect("a transfer on the new runtime");
    assert_eq!(r.gas_used, 21_000);
    let big = h.sign(&alice, vec![text(3 * MIB)]);
    let expected_gas = 80_000 + byte_gas(&big);
    let r = h.include(big).expect("a 3 MiB text");
    assert!(r.success, "{:?}", r.error);
    assert_eq!(r.gas_used, expected_gas);
    assert_eq!(r.fee, u128::from(expected_gas) * 7);
    let too_big = h.sign(&alice, vec![text(budget as usize)]);
    let e = h.submit(too_big).expect_err("over the budget");
    assert!(e.to_string().contains("can never be included"), "{e}");

    // The parameters stay consistent: a budget too small for the largest upgrade is refused.
    let r = h
        .execute(
            &alice,
            vec![Operation::CreateProposal {
                kind: ProposalKind::ParameterChange {
                    key: ParamKey::MaxBlockBytes,
                    value: MIB as u128,
                },
            }],
        )
        .expect("included");
    assert!(!r.success);
    let error = r.error.expect("in words");
    assert!(
        error.contains("max_block_bytes = 1048576 is refused") && error.contains("needs blocks of"),
        "{error}"
    );
    // The parameters answer carries the new field to the host (the pool and producer use it).
    match h.query(Query::Parameters).expect("query") {
        QueryResponse::Parameters(p) => assert_eq!(p.encode(), stored),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_budget_lowered_inside_a_block_applies_from_the_next_block() {
    // A 1 MiB budget, lowered by a proposal to 256 KiB, executed in a block that carries two
    // texts of 200 KiB chosen by the old budget: the block stands (it is measured by the budget
    // it began with), and the next blocks take one such text each. A 400 KiB text admitted
    // under the old budget, and left out of the block by it, can never be included now: it
    // leaves the pool.
    let (mut g, keys) = small_budget_genesis();
    g.parameters.max_block_bytes = MIB as u32;
    let mut h =
        Harness::new(g, vexidus_genesis::GENESIS_RUNTIME, Harness::dev_key()).expect("chain");
    let dev = Harness::dev_key();
    let r = h
        .execute(
            &dev,
            vec![Operation::CreateProposal {
                kind: ProposalKind::ParameterChange {
                    key: ParamKey::MaxBlockBytes,
                    value: 256 * KIB as u128,
                },
            }],
        )
        .expect("proposed");
    assert!(r.success, "{:?}", r.error);
    let id = r
        .events
        .iter()
        .find_map(|e| match e {
            Event::ProposalCreated { id, .. } => Some(*id),
            _ => None,
        })
        .expect("an id");
    // The dev key holds most of the stake: its vote decides.
    let r = h
        .execute(&dev, vec![Operation::VoteProposal { id, approve: true }])
        .expect("voted");
    assert!(r.success, "{:?}", r.error);

    let execute = h.sign(&dev, vec![Operation::ExecuteProposal { id }]);
    let submit_texts = |h: &mut Harness| {
        for k in &keys[..2] {
            let t = h.sign(k, vec![text(200 * KIB)]);
            h.submit(t).expect("admitted");
        }
    };
    h.submit(execute).expect("admitted");
    submit_texts(&mut h);
    let filler = h.sign(&keys[2], vec![text(250 * KIB)]);
    h.submit(filler).expect("admitted");
    let stranded = h.sign(&Harness::account_key("bob"), vec![text(400 * KIB)]);
    let stranded = h.submit(stranded).expect("admitted under the 1 MiB budget");
    let block = h.produce_block().expect("the block that lowers the budget");
    assert_eq!(block.block.transactions.len(), 4);
    assert!(h.is_pending(&stranded), "it did not fit beside the others");
    assert!(
        block.receipts.iter().all(|r| r.success),
        "{:?}",
        block.receipts
    );
    assert!(
        block
            .receipts
            .iter()
            .flat_map(|r| &r.events)
            .any(|e| matches!(e, Event::ParameterChanged { .. })),
        "the change was executed"
    );
    assert_eq!(h.parameters().max_block_bytes, 256 * KIB as u32);

    submit_texts(&mut h);
    assert_eq!(h.produce_block().expect("next").block.transactions.len(), 1);
    assert!(
        !h.is_pending(&stranded),
        "a transaction over the new budget stayed in the pool"
    );
    assert_eq!(h.produce_block().expect("next").block.transactions.len(), 1);
}
