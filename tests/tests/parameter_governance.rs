//! Parameter governance, treasury spends and multisig accounts (SPEC §6, operations 60-67)
//! through the in-process harness with the real wasm runtime.

use vexidus_harness::Harness;
use vexidus_runtime_api::abi::{Query, QueryResponse};
use vexidus_runtime_api::block::Event;
use vexidus_runtime_api::signing::Keypair;
use vexidus_runtime_api::state::GenesisValidator;
use vexidus_runtime_api::transaction::{Operation, ParamKey, ProposalKind};
use vexidus_runtime_api::{Address, NANO_PER_VXS, Receipt};

const VXS: u128 = NANO_PER_VXS;

fn key(name: &str) -> Keypair {
    Harness::account_key(name)
}

fn treasury() -> Address {
    Address(*blake3::hash(b"vexidus/treasury").as_bytes())
}

/// Two validators v0 (60 VXS) and v1 (40 VXS); the treasury holds 1,000 VXS.
fn chain() -> Harness {
    let mut g = vexidus_genesis::dev_genesis();
    g.validators[0].stake = 0;
    for (i, stake) in [60u128, 40].iter().enumerate() {
        let k = key(&format!("v{i}"));
        g.validators.push(GenesisValidator {
            public_key: k.public(),
            stake: stake * VXS,
            commission_bps: 100,
        });
        g.balances.push((k.public().address(), 1_000 * VXS));
    }
    g.balances.push((treasury(), 1_000 * VXS));
    g.parameters.voting_period_blocks = 100;
    Harness::new(g, vexidus_genesis::GENESIS_RUNTIME, Harness::dev_key()).expect("chain")
}

fn run(h: &mut Harness, who: &Keypair, op: Operation) -> Receipt {
    h.execute(who, vec![op]).expect("included")
}

fn ok(h: &mut Harness, who: &Keypair, op: Operation) -> Receipt {
    let r = run(h, who, op);
    assert!(r.success, "{:?}", r.error);
    r
}

fn refused(h: &mut Harness, who: &Keypair, op: Operation) -> String {
    let r = run(h, who, op);
    assert!(!r.success, "expected a refusal");
    r.error.expect("error in words")
}

fn created_id(r: &Receipt) -> u64 {
    r.events
        .iter()
        .find_map(|e| match e {
            Event::ProposalCreated { id, .. } => Some(*id),
            _ => None,
        })
        .expect("ProposalCreated")
}

#[test]
fn a_passed_parameter_change_changes_the_fee_of_the_next_transfer() {
    let mut h = chain();
    let (v0, v1) = (key("v0"), key("v1"));
    let before = ok(
        &mut h,
        &key("bob"),
        Operation::Transfer {
            to: key("x").public().address(),
            amount: 1,
        },
    );
    assert_eq!(before.fee, 21_000 * 10);

    let r = ok(
        &mut h,
        &v0,
        Operation::CreateProposal {
            kind: ProposalKind::ParameterChange {
                key: ParamKey::GasPrice,
                value: 20,
            },
        },
    );
    let id = created_id(&r);
    // 60% approving is below the 67% quorum: not executable yet, and the error says why.
    ok(&mut h, &v0, Operation::VoteProposal { id, approve: true });
    let e = refused(&mut h, &key("bob"), Operation::ExecuteProposal { id });
    assert!(
        e.contains(&format!(
            "proposal {id} has not passed: its vote is open until height"
        )),
        "{e}"
    );
    assert!(
        refused(&mut h, &v0, Operation::VoteProposal { id, approve: false })
            .contains("already voted")
    );
    assert!(
        refused(
            &mut h,
            &key("bob"),
            Operation::VoteProposal { id, approve: true }
        )
        .contains("is not a validator")
    );
    ok(&mut h, &v1, Operation::VoteProposal { id, approve: true });
    // Anyone may execute a passed proposal.
    let r = ok(&mut h, &key("bob"), Operation::ExecuteProposal { id });
    assert!(r.events.contains(&Event::ParameterChanged {
        key: ParamKey::GasPrice,
        value: 20
    }));
    assert_eq!(h.parameters().gas_price, 20);
    let after = ok(
        &mut h,
        &key("bob"),
        Operation::Transfer {
            to: key("x").public().address(),
            amount: 1,
        },
    );
    assert_eq!(after.fee, 21_000 * 20);
    assert!(
        refused(&mut h, &key("bob"), Operation::ExecuteProposal { id })
            .contains("was already executed")
    );
}

#[test]
fn out_of_bounds_values_are_refused_at_creation() {
    let mut h = chain();
    let v0 = key("v0");
    for (k, value, expected) in [
        (
            ParamKey::GasPrice,
            1_001u128,
            "gas_price = 1001 is out of bounds: allowed 1 to 1000",
        ),
        (ParamKey::GasPrice, 0, "gas_price = 0 is out of bounds"),
        (
            ParamKey::QuorumPercent,
            50,
            "quorum_percent = 50 is out of bounds: allowed 51 to 100",
        ),
        (
            ParamKey::MaxRuntimeCodeBytes,
            16 * 1024 * 1024 + 1,
            "max_runtime_code_bytes",
        ),
        (
            ParamKey::UpgradeMinLeadBlocks,
            9,
            "upgrade_min_lead_blocks = 9 is out of bounds",
        ),
    ] {
        let e = refused(
            &mut h,
            &v0,
            Operation::CreateProposal {
                kind: ProposalKind::ParameterChange { key: k, value },
            },
        );
        assert!(e.contains(expected), "{e}");
    }
    // Only accounts with stake propose.
    let e = refused(
        &mut h,
        &key("bob"),
        Operation::CreateProposal {
            kind: ProposalKind::Text {
                title: "t".into(),
                body: "b".into(),
            },
        },
    );
    assert!(e.contains("only accounts with stake"), "{e}");
    // A delegator has stake.
    ok(
        &mut h,
        &key("bob"),
        Operation::Delegate {
            validator: v0.public().address(),
            amount: 10 * VXS,
        },
    );
    ok(
        &mut h,
        &key("bob"),
        Operation::CreateProposal {
            kind: ProposalKind::Text {
                title: "t".into(),
                body: "b".into(),
            },
        },
    );
}

#[test]
fn a_treasury_spend_pays_out_and_cancel_is_for_the_proposer() {
    let mut h = chain();
    let (v0, v1) = (key("v0"), key("v1"));
    let to = key("grantee").public().address();
    let r = ok(
        &mut h,
        &v0,
        Operation::CreateProposal {
            kind: ProposalKind::TreasurySpend {
                to,
                amount: 250 * VXS,
            },
        },
    );
    let id = created_id(&r);
    ok(&mut h, &v0, Operation::VoteProposal { id, approve: true });
    ok(&mut h, &v1, Operation::VoteProposal { id, approve: true });
    let before = h.account(&treasury()).balance;
    let r = ok(&mut h, &v1, Operation::ExecuteProposal { id });
    assert!(r.events.contains(&Event::TreasurySpent {
        to,
        amount: 250 * VXS
    }));
    assert_eq!(h.account(&to).balance, 250 * VXS);
    // The treasury also earned this block's fees (20%) meanwhile.
    let fees_in = 60_000 * 10 * 20 / 100;
    assert_eq!(h.account(&treasury()).balance, before - 250 * VXS + fees_in);

    // More than the treasury holds: refused, nothing changes, the proposal stays executable.
    let r = ok(
        &mut h,
        &v0,
        Operation::CreateProposal {
            kind: ProposalKind::TreasurySpend {
                to,
                amount: 1_000_000 * VXS,
            },
        },
    );
    let big = created_id(&r);
    ok(
        &mut h,
        &v0,
        Operation::VoteProposal {
            id: big,
            approve: true,
        },
    );
    ok(
        &mut h,
        &v1,
        Operation::VoteProposal {
            id: big,
            approve: true,
        },
    );
    assert!(
        refused(&mut h, &v0, Operation::ExecuteProposal { id: big })
            .contains("insufficient balance")
    );
    match h
        .query(Query::Proposal {
            id: big,
            at_height: h.height() + 1,
        })
        .expect("query")
    {
        QueryResponse::Proposal(Some(p)) => assert!(!p.proposal.executed && p.passed.is_ok()),
        other => panic!("{other:?}"),
    }

    let r = ok(
        &mut h,
        &v0,
        Operation::CreateProposal {
            kind: ProposalKind::Text {
                title: "x".into(),
                body: String::new(),
            },
        },
    );
    let text = created_id(&r);
    assert!(
        refused(&mut h, &v1, Operation::CancelProposal { id: text })
            .contains("only the proposer may cancel")
    );
    ok(&mut h, &v0, Operation::CancelProposal { id: text });
    assert!(
        refused(
            &mut h,
            &v1,
            Operation::VoteProposal {
                id: text,
                approve: true
            }
        )
        .contains("was cancelled")
    );
}

#[test]
fn a_proposal_without_turnout_fails_when_its_vote_ends() {
    let mut h = chain();
    let v0 = key("v0");
    let r = ok(
        &mut h,
        &v0,
        Operation::CreateProposal {
            kind: ProposalKind::Text {
                title: "quiet".into(),
                body: String::new(),
            },
        },
    );
    let id = created_id(&r);
    let ends = h.height() + 100;
    ok(&mut h, &v0, Operation::VoteProposal { id, approve: true }); // 60% turnout < 67%
    h.advance_to(ends - 1).expect("advance");
    let e = refused(&mut h, &v0, Operation::ExecuteProposal { id });
    assert!(
        e.contains("turnout 60000000000 of 100000000000 is below the 67% quorum"),
        "{e}"
    );
    assert!(
        refused(
            &mut h,
            &key("v1"),
            Operation::VoteProposal { id, approve: true }
        )
        .contains("the vote ended")
    );
}

#[test]
fn a_2_of_3_multisig_transfers_only_after_the_second_approval() {
    let mut h = chain();
    let (a, b, c) = (key("bob"), key("charlie"), key("dave"));
    let mut signers = vec![
        a.public().address(),
        b.public().address(),
        c.public().address(),
    ];
    let r = ok(
        &mut h,
        &a,
        Operation::CreateMultiSig {
            signers: signers.clone(),
            threshold: 2,
            label: "ops".into(),
        },
    );
    let ms = r
        .events
        .iter()
        .find_map(|e| match e {
            Event::MultiSigCreated {
                multisig,
                threshold: 2,
            } => Some(*multisig),
            _ => None,
        })
        .expect("MultiSigCreated");
    ok(
        &mut h,
        &a,
        Operation::Transfer {
            to: ms,
            amount: 100 * VXS,
        },
    );
    let to = key("payee").public().address();
    let pay = Operation::Transfer {
        to,
        amount: 30 * VXS,
    };

    ok(
        &mut h,
        &a,
        Operation::ProposeMultiSig {
            multisig: ms,
            op: Box::new(pay.clone()),
        },
    );
    assert_eq!(h.account(&to).balance, 0, "one approval of two");
    assert!(
        refused(
            &mut h,
            &a,
            Operation::ApproveMultiSig {
                multisig: ms,
                proposal_id: 0
            }
        )
        .contains("already approved")
    );
    assert!(
        refused(
            &mut h,
            &key("v0"),
            Operation::ApproveMultiSig {
                multisig: ms,
                proposal_id: 0
            }
        )
        .contains("not a signer")
    );
    // A revoked approval does not count.
    ok(
        &mut h,
        &a,
        Operation::RevokeMultiSig {
            multisig: ms,
            proposal_id: 0,
        },
    );
    ok(
        &mut h,
        &b,
        Operation::ApproveMultiSig {
            multisig: ms,
            proposal_id: 0,
        },
    );
    assert_eq!(
        h.account(&to).balance,
        0,
        "one approval of two after the revoke"
    );
    let r = ok(
        &mut h,
        &c,
        Operation::ApproveMultiSig {
            multisig: ms,
            proposal_id: 0,
        },
    );
    assert!(r.events.contains(&Event::MultiSigExecuted {
        multisig: ms,
        proposal_id: 0
    }));
    assert!(r.events.contains(&Event::Transferred {
        from: ms,
        to,
        amount: 30 * VXS
    }));
    assert_eq!(h.account(&to).balance, 30 * VXS);
    assert_eq!(h.account(&ms).balance, 70 * VXS);
    assert!(
        refused(
            &mut h,
            &a,
            Operation::ApproveMultiSig {
                multisig: ms,
                proposal_id: 0
            }
        )
        .contains("no pending multisig operation 0")
    );

    // Validation of accounts and of what they may send.
    signers.push(signers[0]);
    assert!(
        refused(
            &mut h,
            &a,
            Operation::CreateMultiSig {
                signers,
                threshold: 2,
                label: String::new()
            }
        )
        .contains("signers must be distinct")
    );
    assert!(
        refused(
            &mut h,
            &a,
            Operation::CreateMultiSig {
                signers: vec![a.public().address()],
                threshold: 2,
                label: String::new()
            }
        )
        .contains("threshold must be between 1 and the number of signers")
    );
    assert!(
        refused(
            &mut h,
            &a,
            Operation::ProposeMultiSig {
                multisig: ms,
                op: Box::new(Operation::Unjail)
            }
        )
        .contains("a multisig account cannot send Unjail")
    );
}
