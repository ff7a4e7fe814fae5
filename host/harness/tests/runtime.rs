//! Runtime behaviour through the in-process harness: the real wasm blob in wasmtime over real
//! RocksDB. Transfers, nonces, fees, genesis and staking registration.

use vexidus_harness::{Harness, HarnessError};
use vexidus_pool::TxError;
use vexidus_runtime_api::abi::InvalidTransaction;
use vexidus_runtime_api::block::Event;
use vexidus_runtime_api::transaction::{Operation, Transaction};
use vexidus_runtime_api::{Address, NANO_PER_VXS};

const TRANSFER_FEE: u128 = 21_000 * 10;

fn fresh_address(tag: &str) -> Address {
    Harness::account_key(tag).public().address()
}

#[test]
fn genesis_state_matches_the_dev_config() {
    let h = Harness::dev();
    let g = vexidus_genesis::dev_genesis();
    assert_eq!(h.height(), 0);
    for (who, amount) in &g.balances {
        let a = h.account(who);
        assert_eq!((a.balance, a.nonce), (*amount, 0));
    }
    let validators = h.validators();
    assert_eq!(validators.len(), 1);
    assert_eq!(validators[0].public_key, Harness::dev_key().public());
    assert_eq!(validators[0].self_stake, 100_000 * NANO_PER_VXS);
    assert_eq!(h.parameters(), g.parameters);
    assert_eq!(
        h.storage(b":code").as_deref(),
        Some(vexidus_genesis::GENESIS_RUNTIME)
    );
}

#[test]
fn transfer_moves_funds_and_splits_the_fee_80_20() {
    let mut h = Harness::dev();
    let alice = Harness::dev_key();
    let a = alice.public().address();
    let to = fresh_address("fresh-1");
    let treasury = h.treasury();
    let before = h.account(&a).balance;

    let r = h
        .execute(
            &alice,
            vec![Operation::Transfer {
                to,
                amount: 5 * NANO_PER_VXS,
            }],
        )
        .expect("included");
    assert!(r.success, "{:?}", r.error);
    assert_eq!(r.gas_used, 21_000);
    assert_eq!(r.fee, TRANSFER_FEE);
    assert_eq!(h.account(&to).balance, 5 * NANO_PER_VXS);
    // Alice is also the proposer: she pays the fee and gets 80% back.
    let to_proposer = TRANSFER_FEE * 80 / 100;
    assert_eq!(
        h.account(&a).balance,
        before - 5 * NANO_PER_VXS - TRANSFER_FEE + to_proposer
    );
    assert_eq!(h.account(&treasury).balance, TRANSFER_FEE - to_proposer);
    assert!(r.events.contains(&Event::Transferred {
        from: a,
        to,
        amount: 5 * NANO_PER_VXS
    }));
    assert!(r.events.contains(&Event::FeePaid {
        payer: a,
        fee: TRANSFER_FEE,
        to_proposer,
        to_treasury: TRANSFER_FEE - to_proposer
    }));
}

#[test]
fn fee_goes_to_the_proposer_when_someone_else_sends() {
    let mut h = Harness::dev();
    let bob = Harness::account_key("bob");
    let alice = Harness::dev_key().public().address();
    let alice_before = h.account(&alice).balance;
    let bob_before = h.account(&bob.public().address()).balance;
    let r = h
        .execute(
            &bob,
            vec![Operation::Transfer {
                to: fresh_address("x"),
                amount: 1,
            }],
        )
        .expect("included");
    assert!(r.success);
    assert_eq!(
        h.account(&alice).balance,
        alice_before + TRANSFER_FEE * 80 / 100
    );
    assert_eq!(
        h.account(&bob.public().address()).balance,
        bob_before - 1 - TRANSFER_FEE
    );
}

#[test]
fn a_blocks_fees_are_paid_out_once_at_its_end_and_leave_no_records() {
    let mut h = Harness::dev();
    let proposer = Harness::dev_key().public().address();
    let treasury = h.treasury();
    let (proposer_before, treasury_before) =
        (h.account(&proposer).balance, h.account(&treasury).balance);
    let senders: Vec<_> = ["bob", "charlie", "dave"]
        .iter()
        .map(|n| Harness::account_key(n))
        .collect();
    for (i, key) in senders.iter().enumerate() {
        for n in 0..2u64 {
            let mut tx = h
                .sign(
                    key,
                    vec![Operation::Transfer {
                        to: fresh_address(&format!("sink-{i}-{n}")),
                        amount: 1,
                    }],
                )
                .transaction;
            tx.nonce = n;
            h.submit(key.sign_transaction(tx)).expect("admitted");
        }
    }
    let block = h.produce_block().expect("block");
    assert_eq!(block.receipts.len(), 6);
    let fees: Vec<(u128, u128)> = block
        .receipts
        .iter()
        .flat_map(|r| &r.events)
        .filter_map(|e| match e {
            Event::FeePaid {
                to_proposer,
                to_treasury,
                ..
            } => Some((*to_proposer, *to_treasury)),
            _ => None,
        })
        .collect();
    assert_eq!(
        fees,
        vec![(TRANSFER_FEE * 80 / 100, TRANSFER_FEE * 20 / 100); 6]
    );
    assert_eq!(
        h.account(&proposer).balance,
        proposer_before + 6 * (TRANSFER_FEE * 80 / 100)
    );
    assert_eq!(
        h.account(&treasury).balance,
        treasury_before + 6 * (TRANSFER_FEE * 20 / 100)
    );
    // The shares were block totals, not state: nothing of them reaches the database, and the
    // stored root is the root of what is stored.
    let db = h.chain().db();
    let leftovers = db
        .state_pairs()
        .map(|kv| kv.expect("readable").0)
        .filter(|k| k.starts_with(b"fees/"))
        .count();
    assert_eq!(leftovers, 0);
    assert_eq!(
        db.recompute_lthash().expect("recompute").root(),
        block.block.header.state_root
    );
}

#[test]
fn unused_gas_is_refunded() {
    let mut h = Harness::dev();
    let bob = Harness::account_key("bob");
    let b = bob.public().address();
    let before = h.account(&b).balance;
    let mut tx = h
        .sign(
            &bob,
            vec![Operation::Transfer {
                to: fresh_address("y"),
                amount: 1,
            }],
        )
        .transaction;
    tx.max_gas = 100_000;
    let r = h.include(bob.sign_transaction(tx)).expect("included");
    assert_eq!(r.gas_used, 21_000);
    assert_eq!(h.account(&b).balance, before - 1 - TRANSFER_FEE);
}

#[test]
fn nonces_are_strictly_sequential() {
    let mut h = Harness::dev();
    let bob = Harness::account_key("bob");
    let b = bob.public().address();
    let op = || {
        vec![Operation::Transfer {
            to: fresh_address("n"),
            amount: 1,
        }]
    };
    // Three in one block, in nonce order.
    for _ in 0..3 {
        let tx = h.sign(&bob, op());
        h.submit(tx).expect("admitted");
    }
    let block = h.produce_block().expect("block");
    assert_eq!(block.block.transactions.len(), 3);
    assert_eq!(h.account(&b).nonce, 3);

    // A replay of nonce 0 is refused as stale.
    let mut replay = h.sign(&bob, op()).transaction;
    replay.nonce = 0;
    match h.submit(bob.sign_transaction(replay)) {
        Err(HarnessError::Tx(TxError::Invalid(InvalidTransaction::StaleNonce {
            expected: 3,
            found: 0,
        }))) => {}
        other => panic!("expected a stale nonce, got {other:?}"),
    }
    // A gap is refused as a future nonce.
    let mut future = h.sign(&bob, op()).transaction;
    future.nonce = 7;
    match h.submit(bob.sign_transaction(future)) {
        Err(HarnessError::Tx(TxError::NonceGap {
            expected: 3,
            found: 7,
        })) => {}
        other => panic!("expected a nonce gap, got {other:?}"),
    }
}

#[test]
fn failed_operation_reverts_all_but_charges_gas_and_bumps_nonce() {
    let mut h = Harness::dev();
    let bob = Harness::account_key("bob");
    let b = bob.public().address();
    let first = fresh_address("first");
    let before = h.account(&b);
    let r = h
        .execute(
            &bob,
            vec![
                Operation::Transfer {
                    to: first,
                    amount: 10,
                },
                Operation::Transfer {
                    to: first,
                    amount: u128::MAX / 2,
                },
            ],
        )
        .expect("included");
    assert!(!r.success);
    let err = r.error.expect("an error in words");
    assert!(
        err.contains("operation 1 (Transfer) failed: insufficient balance"),
        "{err}"
    );
    assert_eq!(r.gas_used, 42_000);
    assert_eq!(
        h.account(&first).balance,
        0,
        "the first transfer was reverted"
    );
    let after = h.account(&b);
    assert_eq!(after.nonce, before.nonce + 1);
    assert_eq!(after.balance, before.balance - 42_000 * 10);
    assert!(r.events.iter().all(|e| matches!(e, Event::FeePaid { .. })));
}

#[test]
fn cannot_pay_max_fee_is_refused() {
    let mut h = Harness::dev();
    let poor = Harness::account_key("poor");
    h.execute(
        &Harness::dev_key(),
        vec![Operation::Transfer {
            to: poor.public().address(),
            amount: 1_000,
        }],
    )
    .expect("funded");
    let tx = h.sign(
        &poor,
        vec![Operation::Transfer {
            to: fresh_address("z"),
            amount: 1,
        }],
    );
    match h.submit(tx) {
        Err(HarnessError::Tx(TxError::Invalid(InvalidTransaction::InsufficientFunds {
            needed,
            available: 1_000,
        }))) => {
            assert_eq!(needed, TRANSFER_FEE)
        }
        other => panic!("expected insufficient funds, got {other:?}"),
    }
}

#[test]
fn malformed_transactions_are_refused_with_reasons() {
    let mut h = Harness::dev();
    let bob = Harness::account_key("bob");
    let base = h
        .sign(
            &bob,
            vec![Operation::Transfer {
                to: fresh_address("m"),
                amount: 1,
            }],
        )
        .transaction;

    let no_ops = Transaction {
        operations: vec![],
        ..base.clone()
    };
    assert!(matches!(
        h.submit(bob.sign_transaction(no_ops)),
        Err(HarnessError::Tx(TxError::Invalid(
            InvalidTransaction::OperationCount { found: 0 }
        )))
    ));
    let low_gas = Transaction {
        max_gas: 20_999,
        ..base.clone()
    };
    assert!(matches!(
        h.submit(bob.sign_transaction(low_gas)),
        Err(HarnessError::Tx(TxError::Invalid(
            InvalidTransaction::GasLimitTooLow {
                needed: 21_000,
                max_gas: 20_999
            }
        )))
    ));
    let expired = Transaction {
        valid_until: 0,
        ..base.clone()
    };
    assert!(matches!(
        h.submit(bob.sign_transaction(expired)),
        Err(HarnessError::Tx(TxError::Invalid(
            InvalidTransaction::Expired {
                valid_until: 0,
                height: 1
            }
        )))
    ));
    let wrong_chain = Transaction {
        chain_id: "other".into(),
        ..base.clone()
    };
    assert!(matches!(
        h.submit(bob.sign_transaction(wrong_chain)),
        Err(HarnessError::Tx(TxError::WrongChain { .. }))
    ));
    let mut forged = bob.sign_transaction(base);
    forged.transaction.nonce += 1;
    assert!(matches!(
        h.submit(forged),
        Err(HarnessError::Tx(TxError::BadSignature(_)))
    ));
}

#[test]
fn staking_registration_bonds_stake() {
    let mut h = Harness::dev();
    let carol = Harness::account_key("charlie");
    let c = carol.public().address();
    let before = h.account(&c).balance;
    let min = h.parameters().min_stake;

    let r = h
        .execute(
            &carol,
            vec![Operation::RegisterValidator {
                stake: min - 1,
                commission_bps: 100,
            }],
        )
        .expect("included");
    assert!(r.error.expect("fails").contains("below the minimum"));
    let r = h
        .execute(
            &carol,
            vec![Operation::RegisterValidator {
                stake: min,
                commission_bps: 9_000,
            }],
        )
        .expect("included");
    assert!(
        r.error
            .expect("fails")
            .contains("commission 9000 bps is above the maximum of 5000 bps")
    );

    let r = h
        .execute(
            &carol,
            vec![Operation::RegisterValidator {
                stake: min,
                commission_bps: 1_000,
            }],
        )
        .expect("included");
    assert!(r.success, "{:?}", r.error);
    assert!(r.events.contains(&Event::ValidatorRegistered {
        validator: c,
        stake: min,
        commission_bps: 1_000
    }));
    assert_eq!(h.account(&c).balance, before - min - 3 * 50_000 * 10);
    let v = h
        .validators()
        .into_iter()
        .find(|v| v.address == c)
        .expect("registered");
    assert_eq!(
        (v.self_stake, v.commission_bps, v.registered_at),
        (min, 1_000, 3)
    );

    let r = h
        .execute(
            &carol,
            vec![Operation::RegisterValidator {
                stake: min,
                commission_bps: 1_000,
            }],
        )
        .expect("included");
    assert!(r.error.expect("fails").contains("already a validator"));
}

#[test]
fn delegation_round_trip() {
    let mut h = Harness::dev();
    let dave = Harness::account_key("dave");
    let validator = Harness::dev_key().public().address();
    let r = h
        .execute(
            &dave,
            vec![Operation::Delegate {
                validator,
                amount: 500,
            }],
        )
        .expect("included");
    assert!(r.success, "{:?}", r.error);
    assert_eq!(h.validators()[0].delegated, 500);
    let r = h
        .execute(
            &dave,
            vec![Operation::Undelegate {
                validator,
                amount: 501,
            }],
        )
        .expect("included");
    assert!(
        r.error
            .expect("fails")
            .contains("only 500 nanoVXS delegated")
    );
    let r = h
        .execute(
            &dave,
            vec![Operation::Undelegate {
                validator,
                amount: 500,
            }],
        )
        .expect("included");
    assert!(r.success);
    assert_eq!(h.validators()[0].delegated, 0);
}

/// The example of docs/runtime-authors.md, kept here so the guide never rots.
#[test]
fn transfer_to_self_costs_only_the_fee() {
    let mut h = Harness::dev();
    let bob = Harness::account_key("bob");
    let me = bob.public().address();
    let before = h.account(&me).balance;
    let receipt = h
        .execute(
            &bob,
            vec![Operation::Transfer {
                to: me,
                amount: 1_000,
            }],
        )
        .expect("included");
    assert!(receipt.success, "{:?}", receipt.error);
    assert_eq!(receipt.fee, 21_000 * 10);
    assert!(receipt.events.contains(&Event::Transferred {
        from: me,
        to: me,
        amount: 1_000
    }));
    assert_eq!(h.account(&me).balance, before - receipt.fee);
    assert_eq!(h.account(&me).nonce, 1);
}
