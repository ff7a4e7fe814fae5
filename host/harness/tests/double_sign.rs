//! Double-sign evidence on chain through the in-process harness (the real wasm runtime over
//! real RocksDB): verification of both kinds of evidence, jailing with escalating terms counted
//! in blocks of the chain's block time, one punishment per offence, and unjail after the term.

use vexidus_genesis::dev_genesis;
use vexidus_harness::Harness;
use vexidus_runtime_api::block::{Event, Header, Receipt};
use vexidus_runtime_api::signing::{BLOCK_DOMAIN, Keypair, header_hash};
use vexidus_runtime_api::state::GenesisValidator;
use vexidus_runtime_api::transaction::Operation;
use vexidus_runtime_api::vote::{
    DoubleSignEvidence, SignedHeader, SignedVote, VoteBody, VoteStage,
};
use vexidus_runtime_api::{Address, NANO_PER_VXS};

/// Ten-minute blocks: one hour of jail is 6 blocks, a day 144.
const BLOCK_TIME_MS: u64 = 600_000;

/// A chain where the dev key produces and `bob` is a second validator.
fn chain() -> (Harness, Keypair) {
    let bob = Harness::account_key("bob");
    let mut genesis = dev_genesis();
    genesis.block_time_ms = BLOCK_TIME_MS;
    genesis.validators.push(GenesisValidator {
        public_key: bob.public(),
        stake: 10_000 * NANO_PER_VXS,
        commission_bps: 0,
    });
    let h = Harness::new(
        genesis,
        vexidus_genesis::GENESIS_RUNTIME,
        Harness::dev_key(),
    )
    .expect("chain");
    (h, bob)
}

fn chain_id(h: &Harness) -> String {
    h.chain().chain_id().to_string()
}

fn vote(key: &Keypair, chain: &str, stage: VoteStage, height: u64, block: u8) -> SignedVote {
    SignedVote::sign(
        VoteBody {
            stage,
            height,
            block: [block; 32],
        },
        key,
        chain,
    )
}

fn double_vote(key: &Keypair, chain: &str, height: u64) -> DoubleSignEvidence {
    DoubleSignEvidence::DoubleVote {
        first: vote(key, chain, VoteStage::Prevote, height, 1),
        second: vote(key, chain, VoteStage::Prevote, height, 2),
    }
}

fn signed_header(key: &Keypair, chain: &str, height: u64, root: u8) -> SignedHeader {
    let header = Header {
        parent_hash: [9; 32],
        height,
        timestamp_ms: 0,
        proposer: key.public(),
        state_root: [root; 32],
        transactions_root: [0; 32],
        receipts_root: [0; 32],
    };
    let signature = key.sign(BLOCK_DOMAIN, chain, &header_hash(&header));
    SignedHeader { header, signature }
}

fn report(h: &mut Harness, evidence: DoubleSignEvidence) -> Receipt {
    h.execute(
        &Harness::account_key("charlie"),
        vec![Operation::ReportDoubleSign {
            evidence: Box::new(evidence),
        }],
    )
    .expect("included")
}

fn refused(r: &Receipt, expected: &str) {
    assert!(!r.success, "expected a refusal with {expected:?}");
    let err = r.error.as_deref().unwrap_or_default();
    assert!(err.contains(expected), "{err}");
}

/// Reports `evidence` against `who` (free, not jailed): the report is included, but jails no one.
fn recorded_without_a_term(h: &mut Harness, evidence: DoubleSignEvidence, who: &Address) {
    let r = report(h, evidence);
    assert!(r.success, "{:?}", r.error);
    assert!(
        !r.events.iter().any(|e| matches!(e, Event::Jailed { .. })),
        "{:?}",
        r.events
    );
    assert_eq!(jailed_until(h, who), 0);
}

fn jailed_until(h: &Harness, who: &Address) -> u64 {
    h.validators()
        .into_iter()
        .find(|v| v.address == *who)
        .map(|v| v.jailed_until)
        .expect("a validator")
}

#[test]
fn a_double_vote_jails_escalates_and_unjails_after_the_term() {
    let (mut h, bob) = chain();
    let chain = chain_id(&h);
    let b = bob.public().address();
    h.advance_to(4).expect("blocks");

    let r = report(&mut h, double_vote(&bob, &chain, 3));
    assert!(r.success, "{:?}", r.error);
    let height = h.height();
    let jailed = r
        .events
        .iter()
        .find_map(|e| match e {
            Event::Jailed {
                validator,
                offence_height,
                until,
                offences,
            } => Some((*validator, *offence_height, *until, *offences)),
            _ => None,
        })
        .expect("a Jailed event");
    assert_eq!(
        jailed,
        (b, 3, height + 6, 1),
        "one hour = 6 ten-minute blocks"
    );
    assert_eq!(jailed_until(&h, &b), height + 6);

    // One punishment per offence, whichever way round the votes come.
    refused(
        &report(&mut h, double_vote(&bob, &chain, 3)),
        "already reported",
    );
    let DoubleSignEvidence::DoubleVote { first, second } = double_vote(&bob, &chain, 3) else {
        unreachable!()
    };
    refused(
        &report(
            &mut h,
            DoubleSignEvidence::DoubleVote {
                first: second,
                second: first,
            },
        ),
        "already reported",
    );

    // Still jailed: unjail refused; after the term it works.
    let r = h.execute(&bob, vec![Operation::Unjail]).expect("included");
    refused(&r, "jailed until height");
    h.advance_to(height + 6).expect("blocks");
    let r = h.execute(&bob, vec![Operation::Unjail]).expect("included");
    assert!(r.success, "{:?}", r.error);
    assert!(
        r.events
            .iter()
            .any(|e| matches!(e, Event::Unjailed { validator } if *validator == b))
    );
    assert_eq!(jailed_until(&h, &b), 0);

    // A late report of the same burst (an offence before the block that jailed it): recorded,
    // but neither a new term nor a second offence.
    recorded_without_a_term(&mut h, double_vote(&bob, &chain, 2), &b);
    refused(
        &report(&mut h, double_vote(&bob, &chain, 2)),
        "already reported",
    );
    // So is one of twins it signed after the block that jailed it, before the term ended (a
    // faulty node signs on until it sees that block; its reports can land after the term).
    recorded_without_a_term(&mut h, double_vote(&bob, &chain, height + 2), &b);

    // A second offence, after the term: 24 hours = 144 blocks.
    let offence = h.height() - 1;
    let r = report(&mut h, double_vote(&bob, &chain, offence));
    assert!(r.success, "{:?}", r.error);
    assert!(r.events.iter().any(|e| matches!(
        e,
        Event::Jailed { offences: 2, until, .. } if *until == h.height() + 144
    )));
}

#[test]
fn a_double_proposal_jails_once_as_its_own_kind() {
    let (mut h, bob) = chain();
    let chain = chain_id(&h);
    h.advance_to(6).expect("blocks");
    let evidence = DoubleSignEvidence::DoubleProposal {
        first: signed_header(&bob, &chain, 5, 1),
        second: signed_header(&bob, &chain, 5, 2),
    };
    let r = report(&mut h, evidence.clone());
    assert!(r.success, "{:?}", r.error);
    assert_eq!(jailed_until(&h, &bob.public().address()), h.height() + 6);
    refused(&report(&mut h, evidence), "already reported");
    // A double vote at the same height is another offence; committed while the first term is
    // served, it is recorded (it cannot be reported again) without lengthening the term.
    let until = jailed_until(&h, &bob.public().address());
    let r = report(&mut h, double_vote(&bob, &chain, 5));
    assert!(r.success, "{:?}", r.error);
    assert!(!r.events.iter().any(|e| matches!(e, Event::Jailed { .. })));
    assert_eq!(jailed_until(&h, &bob.public().address()), until);
    refused(
        &report(&mut h, double_vote(&bob, &chain, 5)),
        "already reported",
    );
}

#[test]
fn evidence_that_proves_nothing_is_refused_and_jails_no_one() {
    let (mut h, bob) = chain();
    let chain = chain_id(&h);
    let dave = Harness::account_key("dave");
    let mallory = Keypair::from_seed([66; 32]);
    h.advance_to(4).expect("blocks");
    let same_block = DoubleSignEvidence::DoubleVote {
        first: vote(&bob, &chain, VoteStage::Prevote, 3, 1),
        second: vote(&bob, &chain, VoteStage::Prevote, 3, 1),
    };
    let two_voters = DoubleSignEvidence::DoubleVote {
        first: vote(&bob, &chain, VoteStage::Prevote, 3, 1),
        second: vote(&dave, &chain, VoteStage::Prevote, 3, 2),
    };
    let two_stages = DoubleSignEvidence::DoubleVote {
        first: vote(&bob, &chain, VoteStage::Prevote, 3, 1),
        second: vote(&bob, &chain, VoteStage::Precommit, 3, 2),
    };
    let mut forged = double_vote(&mallory, &chain, 3);
    if let DoubleSignEvidence::DoubleVote { first, second } = &mut forged {
        first.voter = bob.public();
        second.voter = bob.public();
    }
    let other_chain = double_vote(&bob, "another-chain", 3);
    let not_a_validator = double_vote(&dave, &chain, 3);
    let future = double_vote(&bob, &chain, 1_000);
    let same_header = DoubleSignEvidence::DoubleProposal {
        first: signed_header(&bob, &chain, 3, 1),
        second: signed_header(&bob, &chain, 3, 1),
    };
    for (evidence, expected) in [
        (same_block, "same block"),
        (two_voters, "different voters"),
        (two_stages, "one stage at one height"),
        (forged, "does not verify"),
        (other_chain, "does not verify"),
        (not_a_validator, "not a registered validator"),
        (future, "above the current height"),
        (same_header, "same block"),
    ] {
        refused(&report(&mut h, evidence), expected);
    }
    assert_eq!(jailed_until(&h, &bob.public().address()), 0);
}
