//! When a validator's next block is due: a block time after the head came, or, for the block
//! it produced itself, a block time after that block's production started.

use vexidus_consensus::forkdb::Liveness;
use vexidus_consensus::{Action, BlockMeta, Config, Consensus, Event, SafetyState, ValidatorSet};
use vexidus_runtime_api::Address;

const BLOCK_TIME: u64 = 500;

fn addr(i: u8) -> Address {
    Address([i; 32])
}

fn meta(height: u64, parent: [u8; 32], proposer: Address) -> BlockMeta {
    BlockMeta {
        hash: [height as u8 + 1; 32],
        parent,
        height,
        proposer,
        timestamp_ms: height * BLOCK_TIME,
        in_grace: false,
    }
}

/// One validator with all the stake (`me`), at genesis, at time 0.
fn single() -> (Consensus, BlockMeta) {
    let me = addr(1);
    let genesis = BlockMeta {
        hash: [0; 32],
        parent: [0; 32],
        height: 0,
        proposer: me,
        timestamp_ms: 0,
        in_grace: false,
    };
    let consensus = Consensus::new(
        Config {
            me: Some(me),
            block_time_ms: BLOCK_TIME,
            failover_base_ms: 100,
            rebroadcast_ms: 60_000,
            fault_skip_failover_delay: false,
        },
        ValidatorSet::new([(me, 100)]),
        genesis.clone(),
        Liveness::default(),
        SafetyState::default(),
        0,
    );
    (consensus, genesis)
}

fn produces(actions: &[Action]) -> Option<u64> {
    actions.iter().find_map(|a| match a {
        Action::Produce { height, .. } => Some(*height),
        _ => None,
    })
}

#[test]
fn a_leaders_blocks_are_due_a_block_time_after_the_last_one_started() {
    let (mut c, genesis) = single();
    assert_eq!(produces(&c.handle(Event::Tick, BLOCK_TIME - 1)), None);
    assert_eq!(produces(&c.handle(Event::Tick, BLOCK_TIME)), Some(1));
    // Block 1 took 300 ms to produce; block 2 is due at 1000, not at 1300.
    let one = meta(1, genesis.hash, addr(1));
    c.handle(Event::Block(one.clone()), 800);
    assert_eq!(produces(&c.handle(Event::Tick, 999)), None);
    assert_eq!(produces(&c.handle(Event::Tick, 1000)), Some(2));
    // Block 2 took longer than a block time (700 ms): block 3 is due at once.
    c.handle(Event::Block(meta(2, one.hash, addr(1))), 1700);
    assert_eq!(produces(&c.handle(Event::Tick, 1700)), Some(3));
}

#[test]
fn a_head_from_elsewhere_counts_from_when_it_came() {
    let (mut c, genesis) = single();
    // A block at height 1 signed by this validator's key but not produced by this node now
    // (say, replayed from before a restart) comes at 800: the next is due at 1300.
    c.handle(Event::Block(meta(1, genesis.hash, addr(1))), 800);
    assert_eq!(produces(&c.handle(Event::Tick, 1299)), None);
    assert_eq!(produces(&c.handle(Event::Tick, 1300)), Some(2));
}
