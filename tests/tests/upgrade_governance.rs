//! Upgrade governance (SPEC §4) through the in-process harness: the real runtime in wasmtime,
//! the real host-side migration and halt logic. Every rule and refusal, with its exact words.

use parity_scale_codec::Encode;
use vexidus_chain::ChainError;
use vexidus_harness::{Harness, HarnessError};
use vexidus_runtime_api::abi::{Query, QueryResponse};
use vexidus_runtime_api::block::Event;
use vexidus_runtime_api::signing::Keypair;
use vexidus_runtime_api::state::GenesisValidator;
use vexidus_runtime_api::state::PlanStatus;
use vexidus_runtime_api::transaction::{Operation, UpgradeTarget};
use vexidus_runtime_api::{GenesisConfig, GovernanceMode, NANO_PER_VXS, Receipt, ValidatorInfo};
use vexidus_tests::runtimes;
use vexidus_tests::wat_runtime::{named_version, runtime_wat, version, with_section};

const VXS: u128 = NANO_PER_VXS;

fn key(name: &str) -> Keypair {
    Harness::account_key(name)
}

/// A chain with short leads, `mode`, and validators `v0..` with the given stakes (in VXS); the
/// dev key is the authority and proposer (with a small stake of its own).
fn chain(mode: GovernanceMode, stakes: &[u128]) -> Harness {
    chain_with(mode, stakes, Vec::new(), |_| {})
}

fn chain_with(
    mode: GovernanceMode,
    stakes: &[u128],
    implemented: Vec<String>,
    tweak: impl FnOnce(&mut GenesisConfig),
) -> Harness {
    let mut g = vexidus_genesis::dev_genesis();
    g.governance.mode = mode;
    g.parameters.upgrade_min_lead_blocks = 10;
    g.parameters.voting_period_blocks = 100;
    g.parameters.upgrade_grace_blocks = 5;
    g.validators[0].stake = 0; // the dev key produces blocks but has no stake, so no vote
    for (i, stake) in stakes.iter().enumerate() {
        let k = key(&format!("v{i}"));
        g.validators.push(GenesisValidator {
            public_key: k.public(),
            stake: stake * VXS,
            commission_bps: 100,
        });
        g.balances.push((k.public().address(), 1_000 * VXS));
    }
    tweak(&mut g);
    Harness::with_upgrades(
        g,
        vexidus_genesis::GENESIS_RUNTIME,
        Harness::dev_key(),
        implemented,
    )
    .expect("chain")
}

fn binary(name: &str, height: u64) -> Operation {
    Operation::ScheduleUpgrade {
        name: name.into(),
        height,
        info_url: "https://example.invalid/notes".into(),
        target: UpgradeTarget::Binary {
            binary_url: "https://example.invalid/vexidus-node".into(),
            sha256: vec![7; 32],
            signature: None,
        },
    }
}

fn runtime(name: &str, height: u64, code: &[u8]) -> Operation {
    Operation::ScheduleUpgrade {
        name: name.into(),
        height,
        info_url: String::new(),
        target: UpgradeTarget::Runtime {
            code: code.to_vec(),
        },
    }
}

/// Runs `op` from `who` and returns the receipt's error text (panics on success).
fn refused(h: &mut Harness, who: &Keypair, op: Operation) -> String {
    let r = h.execute(who, vec![op]).expect("included");
    assert!(!r.success, "expected a refusal");
    r.error.expect("an error in words")
}

fn ok(h: &mut Harness, who: &Keypair, op: Operation) -> Receipt {
    let r = h.execute(who, vec![op]).expect("included");
    assert!(r.success, "{:?}", r.error);
    r
}

fn plan_status(h: &Harness, name: &str) -> Option<PlanStatus> {
    match h.query(Query::PlanStatus(name.into())).expect("query") {
        QueryResponse::PlanStatus(s) => s,
        other => panic!("{other:?}"),
    }
}

fn active_plan(h: &Harness) -> Option<vexidus_runtime_api::abi::PlanView> {
    match h.query(Query::UpgradePlan).expect("query") {
        QueryResponse::UpgradePlan(p) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn scheduling_refusals_each_name_their_rule() {
    let mut h = chain(GovernanceMode::SeedAuthority, &[]);
    let auth = Harness::dev_key();
    let at = h.height() + 50;

    let e = refused(&mut h, &key("bob"), binary("v2", at));
    assert!(
        e.ends_with("only the upgrade authority may schedule or cancel upgrades"),
        "{e}"
    );

    let cases: Vec<(String, &str)> = vec![
        ("../x".into(), "upgrade name contains '/'"),
        ("a/b".into(), "upgrade name contains '/'"),
        (".hidden".into(), "upgrade name must not start with '.'"),
        ("UPPER".into(), "upgrade name contains 'U'"),
        ("a".repeat(65), "upgrade name is 65 bytes; the limit is 64"),
        (String::new(), "upgrade name is empty"),
    ];
    for (name, expected) in cases {
        let e = refused(&mut h, &auth, binary(&name, at));
        assert!(e.contains(expected), "{name:?}: {e}");
    }
    let soon = h.height() + 5;
    let e = refused(&mut h, &auth, binary("soon", soon));
    assert!(
        e.contains("is too soon: upgrade_min_lead_blocks requires at least"),
        "{e}"
    );

    let bad_url = Operation::ScheduleUpgrade {
        name: "nourl".into(),
        height: at,
        info_url: String::new(),
        target: UpgradeTarget::Binary {
            binary_url: " ".into(),
            sha256: vec![1; 32],
            signature: None,
        },
    };
    assert!(refused(&mut h, &auth, bad_url).contains("a binary upgrade needs a binary URL"));
    let bad_sum = Operation::ScheduleUpgrade {
        name: "badsum".into(),
        height: at,
        info_url: String::new(),
        target: UpgradeTarget::Binary {
            binary_url: "file:///x".into(),
            sha256: vec![1; 31],
            signature: None,
        },
    };
    assert!(
        refused(&mut h, &auth, bad_sum)
            .contains("checksum must be a 32-byte SHA-256 digest, got 31 bytes")
    );
    let bad_sig = Operation::ScheduleUpgrade {
        name: "badsig".into(),
        height: at,
        info_url: String::new(),
        target: UpgradeTarget::Binary {
            binary_url: "file:///x".into(),
            sha256: vec![1; 32],
            signature: Some(vec![0; 63]),
        },
    };
    assert!(
        refused(&mut h, &auth, bad_sig).contains("binary signature must be 64 bytes, got 63 bytes")
    );

    // One active plan at a time; names are never reused, even after a cancel.
    let r = ok(&mut h, &auth, binary("first", at));
    assert!(
        r.events.contains(&Event::UpgradeApproved {
            name: "first".into()
        }),
        "seed-authority approves at once"
    );
    assert!(
        refused(&mut h, &auth, binary("second", at))
            .contains("another upgrade plan (\"first\") is active")
    );
    assert!(
        refused(
            &mut h,
            &key("bob"),
            Operation::CancelUpgrade {
                name: "first".into()
            }
        )
        .contains("only the upgrade authority")
    );
    assert!(
        refused(
            &mut h,
            &auth,
            Operation::CancelUpgrade {
                name: "nope".into()
            }
        )
        .contains("no upgrade plan named \"nope\"")
    );
    ok(
        &mut h,
        &auth,
        Operation::CancelUpgrade {
            name: "first".into(),
        },
    );
    assert_eq!(plan_status(&h, "first"), Some(PlanStatus::Cancelled));
    assert!(
        refused(&mut h, &auth, binary("first", at))
            .contains("upgrade name \"first\" was used before")
    );
    assert!(
        refused(
            &mut h,
            &auth,
            Operation::CancelUpgrade {
                name: "first".into()
            }
        )
        .contains("is already cancelled")
    );
    // Votes are for full mode.
    assert!(
        refused(
            &mut h,
            &auth,
            Operation::VoteUpgrade {
                name: "x".into(),
                approve: true
            }
        )
        .contains("only taken in full governance mode")
    );
}

#[test]
fn runtime_blob_refusals_each_have_their_own_message() {
    let mut h = chain_with(GovernanceMode::SeedAuthority, &[], Vec::new(), |g| {
        g.parameters.max_runtime_code_bytes = 64 * 1024;
    });
    let auth = Harness::dev_key();
    let at = h.height() + 50;
    let wat_with = |section: Vec<u8>| {
        with_section(
            runtime_wat("", "(memory 1)", "(i64.const 0)", None),
            "vexidus_runtime_version",
            &section,
        )
    };

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "same",
            vexidus_genesis::GENESIS_RUNTIME.to_vec(),
            "runtime blob is",
        ),
        (
            "lower",
            wat_with(version(2, 1)),
            "spec_version 2 is not higher than the current spec_version 2",
        ),
        (
            "family",
            wat_with(named_version("other", 5)),
            "runtime spec_name is \"other\"; this chain runs \"vexidus\"",
        ),
        (
            "abi",
            wat_with(version(5, 99)),
            "runtime needs ABI version 99",
        ),
        (
            "entry",
            with_section(
                runtime_wat("", "(memory 1)", "(i64.const 0)", Some("vex_migrate")),
                "vexidus_runtime_version",
                &version(5, 1),
            ),
            "does not export the entry point `vex_migrate`",
        ),
        (
            "import",
            with_section(
                runtime_wat(
                    r#"(import "vexidus" "clock_now_v1" (func (result i64)))"#,
                    "(memory 1)",
                    "(i64.const 0)",
                    None,
                ),
                "vexidus_runtime_version",
                &version(5, 1),
            ),
            "imports `vexidus::clock_now_v1`, which this host does not provide",
        ),
        (
            "invalid",
            b"\0asm\x01\0\0\0garbage".to_vec(),
            "invalid WebAssembly",
        ),
        (
            "noversion",
            runtime_wat("", "(memory 1)", "(i64.const 0)", None),
            "has no `vexidus_runtime_version` custom section",
        ),
    ];
    for (name, code, expected) in cases {
        let e = refused(&mut h, &auth, runtime(name, at, &code));
        assert!(e.contains(expected), "{name}: {e}");
    }
    // The genesis blob is over the 64 KiB limit set above.
    let e = refused(
        &mut h,
        &auth,
        runtime("big", at, vexidus_genesis::GENESIS_RUNTIME),
    );
    assert!(e.contains("over max_runtime_code_bytes (65536)"), "{e}");
}

/// Stake of validators with unequal weights; returns (harness, validator keys).
fn full_chain(stakes: &[u128]) -> (Harness, Vec<Keypair>) {
    let h = chain(GovernanceMode::Full, stakes);
    let keys = (0..stakes.len()).map(|i| key(&format!("v{i}"))).collect();
    (h, keys)
}

fn vote(h: &mut Harness, who: &Keypair, name: &str, approve: bool) -> Receipt {
    h.execute(
        who,
        vec![Operation::VoteUpgrade {
            name: name.into(),
            approve,
        }],
    )
    .expect("included")
}

#[test]
fn quorum_at_exactly_67_percent_approves() {
    let (mut h, v) = full_chain(&[67, 13, 11, 9]);
    let at = h.height() + 50;
    ok(&mut h, &Harness::dev_key(), binary("edge", at));
    let view = active_plan(&h).expect("active");
    assert_eq!(view.plan.status, PlanStatus::Voting);
    assert_eq!(view.total, 100 * VXS);
    // 67 of 100: exactly the quorum, approved by this one vote.
    let r = vote(&mut h, &v[0], "edge", true);
    assert!(r.success, "{:?}", r.error);
    assert!(r.events.contains(&Event::UpgradeApproved {
        name: "edge".into()
    }));
    assert_eq!(
        active_plan(&h).expect("active").plan.status,
        PlanStatus::Approved
    );
    assert_eq!(plan_status(&h, "edge"), Some(PlanStatus::Approved));
    assert!(
        refused(
            &mut h,
            &v[1],
            Operation::VoteUpgrade {
                name: "edge".into(),
                approve: true
            }
        )
        .contains("already approved")
    );
}

#[test]
fn quorum_just_under_67_percent_expires_when_the_vote_ends() {
    let (mut h, v) = full_chain(&[66, 14, 11, 9]);
    let scheduled = h.height() + 1;
    ok(
        &mut h,
        &Harness::dev_key(),
        binary("under", scheduled + 150),
    );
    assert!(vote(&mut h, &v[0], "under", true).success);
    assert!(vote(&mut h, &v[1], "under", false).success);
    assert_eq!(active_plan(&h).expect("active").approve, 66 * VXS);
    assert_eq!(
        active_plan(&h).expect("active").plan.status,
        PlanStatus::Voting
    );
    // The vote ends at scheduled + voting_period (100).
    h.advance_to(scheduled + 99).expect("advance");
    assert_eq!(plan_status(&h, "under"), Some(PlanStatus::Voting));
    let block = h.produce_block().expect("block");
    assert_eq!(block.block.header.height, scheduled + 100);
    assert!(block.events.iter().any(|e| matches!(e, Event::UpgradeExpired { name, reason } if name == "under" && reason.contains("voting period ended"))));
    assert_eq!(plan_status(&h, "under"), Some(PlanStatus::Expired));
    assert!(active_plan(&h).is_none());
}

#[test]
fn unapproved_plan_expires_at_its_target_height() {
    let (mut h, _) = full_chain(&[50, 50]);
    let target = h.height() + 20; // before the 100-block vote ends
    ok(&mut h, &Harness::dev_key(), binary("late", target));
    h.advance_to(target - 1).expect("advance");
    let block = h
        .produce_block()
        .expect("the target block runs: nothing approved, nothing halts");
    assert!(block.events.iter().any(|e| matches!(e, Event::UpgradeExpired { reason, .. } if reason.contains("target height reached"))));
    assert_eq!(plan_status(&h, "late"), Some(PlanStatus::Expired));
}

fn jail(h: &mut Harness, who: &Keypair, until: u64) {
    let addr = who.public().address();
    let mut info: ValidatorInfo = h
        .validators()
        .into_iter()
        .find(|v| v.address == addr)
        .expect("validator");
    info.jailed_until = until;
    let mut k = b"val/".to_vec();
    k.extend_from_slice(&addr.0);
    h.force_state(vec![(k, Some(info.encode()))]).expect("jail");
}

#[test]
fn who_may_vote_and_with_what_weight() {
    let (mut h, v) = full_chain(&[40, 30, 20, 10]);
    jail(&mut h, &v[3], 1_000_000);
    let at = h.height() + 50;
    ok(&mut h, &Harness::dev_key(), binary("who", at));

    // Non-validators, jailed validators, double votes.
    assert!(
        refused(
            &mut h,
            &key("bob"),
            Operation::VoteUpgrade {
                name: "who".into(),
                approve: true
            }
        )
        .contains("is not a validator")
    );
    assert!(
        refused(
            &mut h,
            &v[3],
            Operation::VoteUpgrade {
                name: "who".into(),
                approve: true
            }
        )
        .contains("jailed validators cannot vote (jailed until height 1000000)")
    );
    assert!(vote(&mut h, &v[2], "who", false).success);
    assert!(
        refused(
            &mut h,
            &v[2],
            Operation::VoteUpgrade {
                name: "who".into(),
                approve: true
            }
        )
        .contains("already voted")
    );
    assert!(
        refused(
            &mut h,
            &v[0],
            Operation::VoteUpgrade {
                name: "nope".into(),
                approve: true
            }
        )
        .contains("no upgrade plan named")
    );

    // Stake moved after the snapshot does not change the weight.
    let whale = key("charlie");
    ok(
        &mut h,
        &whale,
        Operation::Delegate {
            validator: v[1].public().address(),
            amount: 90_000 * VXS,
        },
    );
    let r = vote(&mut h, &v[1], "who", true);
    assert!(r.events.contains(&Event::UpgradeVoted {
        name: "who".into(),
        validator: v[1].public().address(),
        approve: true,
        weight: 30 * VXS
    }));

    // A validator registered after scheduling has no vote.
    let late = key("dave");
    ok(
        &mut h,
        &late,
        Operation::RegisterValidator {
            stake: 1_000 * VXS,
            commission_bps: 100,
        },
    );
    assert!(
        refused(
            &mut h,
            &late,
            Operation::VoteUpgrade {
                name: "who".into(),
                approve: true
            }
        )
        .contains("was not active when the plan was scheduled")
    );
    // Total excludes the jailed validator: 40 + 30 + 20.
    assert_eq!(active_plan(&h).expect("active").total, 90 * VXS);
    // A validator with no stake at scheduling (the proposer key here) has no vote either.
    assert!(
        refused(
            &mut h,
            &Harness::dev_key(),
            Operation::VoteUpgrade {
                name: "who".into(),
                approve: true
            }
        )
        .contains("was not active when the plan was scheduled")
    );
}

#[test]
fn runtime_upgrade_switches_at_the_target_and_migrates() {
    let mut h = chain(GovernanceMode::SeedAuthority, &[]);
    let auth = Harness::dev_key();
    let target = h.height() + 12;
    let r = ok(
        &mut h,
        &auth,
        runtime("rt-v2", target, runtimes::NEXT_EXAMPLE),
    );
    assert!(r.events.contains(&Event::UpgradeScheduled {
        name: "rt-v2".into(),
        height: target,
        kind: "runtime".into()
    }));
    let view = active_plan(&h).expect("plan");
    assert_eq!(
        view.plan.code_hash,
        Some(*blake3::hash(runtimes::NEXT_EXAMPLE).as_bytes())
    );

    h.advance_to(target - 1).expect("advance");
    assert_eq!(h.runtime_version().spec_version, 2);
    h.produce_block().expect("block H"); // the old runtime moves the blob into :code
    assert_eq!(h.height(), target);
    assert_eq!(
        h.runtime_version().spec_version,
        3,
        "block H+1 runs the new runtime"
    );
    let next = h
        .produce_block()
        .expect("block H+1: migration, then the new runtime");
    assert!(next.events.iter().any(|e| matches!(e, Event::RuntimeUpgraded { name, version } if name == "rt-v2" && version.spec_version == 3)),
        "{:?}", next.events);
    assert_eq!(plan_status(&h, "rt-v2"), Some(PlanStatus::Executed));
    assert_eq!(h.storage(b":code").as_deref(), Some(runtimes::NEXT_EXAMPLE));
    assert_eq!(h.storage(b":pending_migration"), None);
    assert_eq!(h.storage(b":previous_code"), None);
    match h.query(Query::GraceUntil).expect("query") {
        QueryResponse::GraceUntil(g) => assert_eq!(g, target + 1 + 5),
        other => panic!("{other:?}"),
    }
    // The visible change: v2's migration stored a 70% proposer share.
    let r = ok(
        &mut h,
        &key("bob"),
        Operation::Transfer {
            to: key("x").public().address(),
            amount: 1,
        },
    );
    assert!(r.events.iter().any(|e| matches!(e, Event::FeePaid { fee, to_proposer, .. } if *to_proposer == fee * 70 / 100)), "{:?}", r.events);
    // A higher version is needed from now on.
    let later = h.height() + 20;
    let e = refused(
        &mut h,
        &auth,
        runtime("again", later, runtimes::NEXT_EXAMPLE),
    );
    assert!(
        e.contains("spec_version 3 is not higher than the current spec_version 3"),
        "{e}"
    );
}

#[test]
fn a_failing_migration_restores_the_old_runtime() {
    let mut h = chain(GovernanceMode::SeedAuthority, &[]);
    let target = h.height() + 12;
    ok(
        &mut h,
        &Harness::dev_key(),
        runtime("bad", target, runtimes::NEXT_BAD_MIGRATION),
    );
    h.advance_to(target).expect("advance to H");
    assert_eq!(h.runtime_version().spec_version, 3);
    let next = h.produce_block().expect("H+1 still produces a block");
    assert!(next.events.iter().any(|e| matches!(e, Event::UpgradeAborted { name, reason } if name == "bad" && reason.contains("next-bad-migration"))),
        "{:?}", next.events);
    assert_eq!(h.runtime_version().spec_version, 2);
    assert_eq!(
        h.storage(b":code").as_deref(),
        Some(vexidus_genesis::GENESIS_RUNTIME)
    );
    assert_eq!(plan_status(&h, "bad"), Some(PlanStatus::Aborted));
    // The old runtime goes on: 80/20 fees, blocks keep coming.
    let r = ok(
        &mut h,
        &key("bob"),
        Operation::Transfer {
            to: key("x").public().address(),
            amount: 1,
        },
    );
    assert!(r.events.iter().any(
        |e| matches!(e, Event::FeePaid { fee, to_proposer, .. } if *to_proposer == fee * 80 / 100)
    ));
    let more = h.height() + 3;
    h.advance_to(more).expect("more blocks");
}

#[test]
fn binary_upgrade_halts_a_binary_that_does_not_implement_it() {
    let mut h = chain(GovernanceMode::SeedAuthority, &[]);
    let target = h.height() + 12;
    ok(&mut h, &Harness::dev_key(), binary("bin-v2", target));
    h.advance_to(target - 1).expect("advance");
    let root_before = h.chain().head().state_root;
    for _ in 0..2 {
        match h.produce_block() {
            Err(HarnessError::Chain(ChainError::UpgradeHalt(halt))) => {
                assert_eq!((halt.name.as_str(), halt.height), ("bin-v2", target));
                assert_eq!(halt.sha256, vec![7; 32]);
                assert_eq!(halt.authority, Harness::dev_key().public());
                assert_eq!(halt.chain_id, "vexidus-dev");
            }
            other => panic!(
                "expected a halt, got {:?}",
                other.map(|b| b.block.header.height)
            ),
        }
        assert_eq!(h.height(), target - 1, "nothing committed for H");
        assert_eq!(h.chain().head().state_root, root_before);
    }
}

#[test]
fn binary_upgrade_runs_on_in_a_binary_that_implements_it() {
    let mut h = chain_with(
        GovernanceMode::SeedAuthority,
        &[],
        vec!["bin-v2".into()],
        |_| {},
    );
    let target = h.height() + 12;
    ok(&mut h, &Harness::dev_key(), binary("bin-v2", target));
    h.advance_to(target - 1).expect("advance");
    let block = h.produce_block().expect("block H executes");
    assert!(block.events.contains(&Event::UpgradeExecuted {
        name: "bin-v2".into(),
        height: target
    }));
    assert_eq!(plan_status(&h, "bin-v2"), Some(PlanStatus::Executed));
    match h.query(Query::GraceUntil).expect("query") {
        QueryResponse::GraceUntil(g) => assert_eq!(g, target + 5),
        other => panic!("{other:?}"),
    }
}
