//! The missed-block record on chain, through the in-process harness (real wasm runtime, real
//! RocksDB). The dev key produces every block while `bob`, a second validator, is due to lead
//! some slots (the shared draw of `runtime_api::schedule` says which): bob's misses are counted,
//! three take him out of the rotation except in probation slots (where he is charged again, as
//! he is due there), and nothing is counted during an upgrade grace period.

use vexidus_genesis::dev_genesis;
use vexidus_harness::Harness;
use vexidus_runtime_api::abi::{LivenessView, Query, QueryResponse};
use vexidus_runtime_api::schedule::{SLOT_BLOCKS, draw, is_probation_slot, slot_of};
use vexidus_runtime_api::signing::Keypair;
use vexidus_runtime_api::state::GenesisValidator;
use vexidus_runtime_api::transaction::{Operation, UpgradeTarget};
use vexidus_runtime_api::{Address, GenesisConfig, NANO_PER_VXS};

const UPGRADE: &str = "grace-test";
const GRACE: u64 = 40;

fn genesis(bob: &Keypair) -> GenesisConfig {
    let mut g = dev_genesis();
    g.validators.push(GenesisValidator {
        public_key: bob.public(),
        stake: 100_000 * NANO_PER_VXS,
        commission_bps: 0,
    });
    g.parameters.upgrade_grace_blocks = GRACE;
    g
}

fn members(g: &GenesisConfig) -> Vec<(Address, u128)> {
    g.validators
        .iter()
        .map(|v| (v.public_key.address(), v.stake))
        .collect()
}

fn b3(b: &[u8]) -> [u8; 32] {
    *blake3::hash(b).as_bytes()
}

/// Heights in `from..to` that start a slot led by `who` (a slot's first block is where its
/// leader is due; later blocks of a slot another produced belong to that producer).
fn led_slot_starts(g: &GenesisConfig, who: Address, from: u64, to: u64) -> Vec<u64> {
    (from..to)
        .filter(|h| h % SLOT_BLOCKS == 0 || *h == 1)
        .filter(|h| draw(slot_of(*h), &members(g), b3)[0] == who)
        .collect()
}

fn liveness(h: &Harness, who: Address) -> LivenessView {
    match h.query(Query::Liveness(who)).expect("query") {
        QueryResponse::Liveness(l) => l,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn misses_are_counted_three_skip_and_the_producer_is_never_charged() {
    let bob = Harness::account_key("bob");
    let g = genesis(&bob);
    let b = bob.public().address();
    let alice = Harness::dev_key().public().address();
    let mut h = Harness::new(
        g.clone(),
        vexidus_genesis::GENESIS_RUNTIME,
        Harness::dev_key(),
    )
    .expect("chain");
    let mut seen = 0u64;
    let mut on_probation = 0;
    for height in 1..=120 {
        h.advance_to(height).expect("block");
        let now = liveness(&h, b);
        if led_slot_starts(&g, b, height, height + 1) == [height] {
            if seen < 3 {
                seen += 1;
            } else if is_probation_slot(slot_of(height)) {
                // Skipped, but in a probation slot he keeps his place: due, and charged.
                seen += 1;
                on_probation += 1;
            }
        }
        assert_eq!(now.missed_total, seen, "at height {height}");
    }
    let end = liveness(&h, b);
    assert_eq!(
        (end.missed_total, end.missed_streak, end.skipped),
        (seen, seen as u32, true)
    );
    assert!(on_probation > 0, "the draw gives bob a probation slot here");
    assert!(
        led_slot_starts(&g, b, 1, 121).len() as u64 > seen,
        "bob leads more slots than he is charged for once skipped"
    );
    assert_eq!(liveness(&h, alice), LivenessView::default());
}

#[test]
fn a_grace_period_counts_no_misses() {
    let bob = Harness::account_key("bob");
    let g = genesis(&bob);
    let b = bob.public().address();
    let mut h = Harness::with_upgrades(
        g.clone(),
        vexidus_genesis::GENESIS_RUNTIME,
        Harness::dev_key(),
        vec![UPGRADE.into()],
    )
    .expect("chain");
    h.advance_to(1).expect("block");
    let target = 12;
    let r = h
        .execute(
            &Harness::dev_key(),
            vec![Operation::ScheduleUpgrade {
                name: UPGRADE.into(),
                height: target,
                info_url: String::new(),
                target: UpgradeTarget::Binary {
                    binary_url: "https://example.invalid/node".into(),
                    sha256: vec![1; 32],
                    signature: None,
                },
            }],
        )
        .expect("included");
    assert!(r.success, "{:?}", r.error);
    h.advance_to(target - 1).expect("blocks");
    let before = liveness(&h, b).missed_total;
    let in_grace = led_slot_starts(&g, b, target, target + GRACE);
    assert!(
        !in_grace.is_empty() && before < 3,
        "the scenario needs bob due inside the grace period and not yet skipped: {in_grace:?}, {before}"
    );
    h.advance_to(target + GRACE - 1).expect("blocks");
    match h.query(Query::GraceUntil).expect("query") {
        QueryResponse::GraceUntil(g) => assert_eq!(g, target + GRACE),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        liveness(&h, b).missed_total,
        before,
        "bob led slots {in_grace:?} in the grace period and was not charged"
    );
    // After it, misses count again.
    h.advance_to(target + GRACE + 60).expect("blocks");
    assert!(liveness(&h, b).missed_total > before);
}
