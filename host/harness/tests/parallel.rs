//! Block-STM gives exactly what sequential execution gives: random blocks — random senders and
//! amounts, hot accounts, overdrafts, stale and future nonces, too little gas, staking and
//! governance operations — are produced by a chain executing one transaction after another and
//! by chains running Block-STM, and must come out as the same blocks (same state root, receipts
//! root and transaction list), with the same receipts, events, refusals and fuel, whether each
//! worker takes one transaction at a time or runs of consecutive ones. Another chain imports the
//! sequential chain's blocks on the parallel path.
//!
//! Real wasm runtime in wasmtime, real RocksDB in temporary directories. `VEXIDUS_STM_SEEDS=N`
//! runs more seeds.

use vexidus_chain::ExecutedBlock;
use vexidus_harness::Harness;
use vexidus_runtime_api::signing::Keypair;
use vexidus_runtime_api::transaction::{
    Operation, ParamKey, ProposalKind, Transaction, UpgradeTarget,
};
use vexidus_runtime_api::{Address, GenesisConfig, NANO_PER_VXS, SignedTransaction};

/// splitmix64: a deterministic generator, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

struct World {
    seed: u64,
    accounts: Vec<Keypair>,
    sinks: Vec<Address>,
    alice: Keypair,
    genesis: GenesisConfig,
}

fn world(seed: u64) -> World {
    let mut rng = Rng(seed);
    // Few accounts make hot spots (every transaction conflicts); many make disjoint blocks.
    let n = *rng.pick(&[1usize, 2, 3, 8, 40]);
    let accounts: Vec<Keypair> = (0..n)
        .map(|i| Keypair::from_seed(*blake3::hash(format!("stm/{seed}/{i}").as_bytes()).as_bytes()))
        .collect();
    let mut genesis = vexidus_genesis::dev_genesis();
    genesis.parameters.voting_period_blocks = 2;
    for key in &accounts {
        let balance = *rng.pick(&[
            0,
            100_000,
            5 * NANO_PER_VXS,
            50 * NANO_PER_VXS,
            60_000 * NANO_PER_VXS,
        ]);
        if balance > 0 {
            genesis.balances.push((key.public().address(), balance));
        }
    }
    let sinks = (0..4)
        .map(|i| Address(*blake3::hash(format!("sink/{seed}/{i}").as_bytes()).as_bytes()))
        .collect();
    World {
        seed,
        accounts,
        sinks,
        alice: Harness::dev_key(),
        genesis,
    }
}

fn harness(w: &World, threads: usize) -> Harness {
    let mut h = Harness::new(
        w.genesis.clone(),
        vexidus_genesis::GENESIS_RUNTIME,
        Harness::dev_key(),
    )
    .expect("harness");
    h.set_execution_threads(threads);
    h
}

/// A harness whose Block-STM workers take runs of `run` consecutive transactions: the random
/// blocks are too small for the node's own run length to exceed one.
fn harness_with_runs(w: &World, threads: usize, run: usize) -> Harness {
    let mut h = harness(w, threads);
    h.set_execution_run(Some(run));
    h
}

fn random_operation(rng: &mut Rng, w: &World, h: &Harness) -> Operation {
    let alice = w.alice.public().address();
    let some_account = |rng: &mut Rng| rng.pick(&w.accounts).public().address();
    let amount =
        |rng: &mut Rng| *rng.pick(&[1, 1_000, NANO_PER_VXS, 40 * NANO_PER_VXS, u128::MAX / 2]);
    let proposal = |rng: &mut Rng| rng.below(4);
    match rng.below(100) {
        0..=44 => Operation::Transfer {
            to: if rng.chance(50) {
                some_account(rng)
            } else {
                *rng.pick(&w.sinks)
            },
            amount: amount(rng),
        },
        45..=49 => Operation::Transfer {
            to: alice,
            amount: amount(rng),
        },
        50..=55 => Operation::Delegate {
            validator: if rng.chance(80) {
                alice
            } else {
                some_account(rng)
            },
            amount: amount(rng),
        },
        56..=59 => Operation::Undelegate {
            validator: alice,
            amount: amount(rng),
        },
        60..=62 => Operation::RegisterValidator {
            stake: *rng.pick(&[NANO_PER_VXS, 20_000 * NANO_PER_VXS]),
            commission_bps: *rng.pick(&[100, 500, 20_000]),
        },
        63..=64 => Operation::ClaimRewards,
        65..=72 => Operation::CreateProposal {
            kind: match rng.below(3) {
                0 => ProposalKind::Text {
                    title: format!("t{}", rng.below(9)),
                    body: String::new(),
                },
                1 => ProposalKind::TreasurySpend {
                    to: some_account(rng),
                    amount: *rng.pick(&[1_000, 100_000, 10 * NANO_PER_VXS]),
                },
                _ => ProposalKind::ParameterChange {
                    key: ParamKey::GasPrice,
                    value: *rng.pick(&[10, 11, 0]),
                },
            },
        },
        73..=80 => Operation::VoteProposal {
            id: proposal(rng),
            approve: rng.chance(80),
        },
        81..=86 => Operation::ExecuteProposal { id: proposal(rng) },
        87..=88 => Operation::CancelProposal { id: proposal(rng) },
        89..=91 => Operation::CreateMultiSig {
            signers: vec![alice, some_account(rng)],
            threshold: *rng.pick(&[1, 2, 3]),
            label: String::from("m"),
        },
        92..=94 => Operation::ScheduleUpgrade {
            name: format!("plan-{}", rng.below(3)),
            height: h.height() + 1_000,
            info_url: String::new(),
            target: UpgradeTarget::Binary {
                binary_url: String::from("file:///nowhere"),
                sha256: vec![7; 32],
                signature: None,
            },
        },
        95..=97 => Operation::CancelUpgrade {
            name: format!("plan-{}", rng.below(3)),
        },
        _ => Operation::VoteUpgrade {
            name: format!("plan-{}", rng.below(3)),
            approve: true,
        },
    }
}

/// A block's worth of candidate transactions, signed, with the nonces mostly right.
fn random_block(rng: &mut Rng, w: &World, h: &Harness) -> Vec<SignedTransaction> {
    let count = 1 + rng.below(48) as usize;
    let mut next_nonce = std::collections::BTreeMap::new();
    (0..count)
        .map(|_| {
            let key = if rng.chance(15) {
                &w.alice
            } else {
                rng.pick(&w.accounts)
            };
            let sender = key.public().address();
            let nonce = next_nonce
                .entry(sender)
                .or_insert_with(|| h.account(&sender).nonce);
            let mut tx_nonce = *nonce;
            match rng.below(100) {
                0..=3 => tx_nonce += 1,
                4..=6 => tx_nonce = tx_nonce.saturating_sub(1),
                _ => *nonce += 1,
            }
            let operations = (0..1 + rng.below(3))
                .map(|_| random_operation(rng, w, h))
                .collect::<Vec<_>>();
            let tx = Transaction {
                chain_id: h.chain().chain_id().into(),
                sender: key.public(),
                nonce: tx_nonce,
                max_gas: 0,
                valid_until: h.height() + 100,
                operations,
            };
            let gas = tx.intrinsic_gas();
            let max_gas = match rng.below(100) {
                0..=2 => gas - 1,
                3..=10 => gas * 3,
                _ => gas,
            };
            key.sign_transaction(Transaction { max_gas, ..tx })
        })
        .collect()
}

fn produce(h: &mut Harness, w: &World, txs: Vec<SignedTransaction>) -> (ExecutedBlock, u64) {
    let timestamp = (h.height() + 1) * 1_000;
    let block = h
        .chain_mut()
        .produce_block(txs, &w.alice, timestamp)
        .expect("block");
    let fuel = block.fuel;
    (block, fuel)
}

fn run_seed(seed: u64) -> (usize, usize) {
    let w = world(seed);
    let mut rng = Rng(seed ^ 0xD1CE);
    let mut sequential = harness(&w, 1);
    let mut parallel = harness(&w, 2);
    let mut in_runs = harness_with_runs(&w, 2, [2, 3, 5, 16][seed as usize % 4]);
    let mut oversubscribed = harness(&w, 8);
    let mut importer = harness_with_runs(&w, 2, 4);
    let (mut included, mut aborts) = (0, 0);
    for _ in 0..5 {
        let txs = random_block(&mut rng, &w, &sequential);
        let (s, s_fuel) = produce(&mut sequential, &w, txs.clone());
        for h in [&mut parallel, &mut in_runs, &mut oversubscribed] {
            let (p, p_fuel) = produce(h, &w, txs.clone());
            let context = format!("seed {} height {}", w.seed, s.block.header.height);
            assert_eq!(p.receipts, s.receipts, "{context}: receipts");
            assert_eq!(p.events, s.events, "{context}: block events");
            assert_eq!(p.rejected, s.rejected, "{context}: refusals");
            assert_eq!(
                p.block.header.state_root, s.block.header.state_root,
                "{context}: state root"
            );
            assert_eq!(p.hash, s.hash, "{context}: block");
            assert_eq!(p_fuel, s_fuel, "{context}: fuel");
            if txs.len() > 1 {
                let stats = h
                    .chain()
                    .take_stm_stats()
                    .expect("the block ran on Block-STM");
                assert_eq!(stats.transactions, txs.len());
                aborts += stats.aborts + stats.waits;
            }
        }
        let imported = importer
            .chain_mut()
            .import_block(s.block.clone())
            .expect("the sequential block imports on the parallel path");
        assert_eq!(imported.receipts, s.receipts);
        included += s.receipts.len();
    }
    (included, aborts)
}

#[test]
fn random_blocks_give_the_same_receipts_and_roots_sequentially_and_with_block_stm() {
    let seeds: u64 = std::env::var("VEXIDUS_STM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let (mut included, mut conflicts) = (0, 0);
    for seed in 0..seeds {
        let (i, c) = run_seed(seed);
        included += i;
        conflicts += c;
    }
    println!("{seeds} seeds: {included} transactions included, {conflicts} aborts and waits");
    // The blocks must have exercised the conflict machinery, not only disjoint transactions.
    assert!(included > seeds as usize * 20, "{included}");
    assert!(conflicts > 0, "no transaction ever conflicted");
}

/// Transfers from fresh funded accounts; `hot(i)` says whether transfer `i` pays the one hot
/// account (otherwise its own recipient).
fn transfer_block(count: usize, hot: impl Fn(usize) -> bool) -> (World, Vec<SignedTransaction>) {
    let mut w = world(0);
    w.accounts = (0..count)
        .map(|i| Keypair::from_seed(*blake3::hash(format!("hot/{i}").as_bytes()).as_bytes()))
        .collect();
    w.genesis.balances.extend(
        w.accounts
            .iter()
            .map(|k| (k.public().address(), 10 * NANO_PER_VXS)),
    );
    let chain_id = w.genesis.chain_id.clone();
    let txs = w
        .accounts
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let to = if hot(i) {
                w.sinks[0]
            } else {
                Address(*blake3::hash(format!("cold/{i}").as_bytes()).as_bytes())
            };
            key.sign_transaction(Transaction {
                chain_id: chain_id.clone(),
                sender: key.public(),
                nonce: 0,
                max_gas: 21_000,
                valid_until: 100,
                operations: vec![Operation::Transfer { to, amount: 1 }],
            })
        })
        .collect();
    (w, txs)
}

/// Runs `txs` as one block sequentially and on Block-STM; they must agree. Returns Block-STM's
/// stats.
fn same_both_ways(w: &World, txs: Vec<SignedTransaction>) -> vexidus_chain::stm::Stats {
    let mut sequential = harness(w, 1);
    let mut parallel = harness(w, 2);
    let (s, s_fuel) = produce(&mut sequential, w, txs.clone());
    let (p, p_fuel) = produce(&mut parallel, w, txs.clone());
    assert_eq!(p.receipts, s.receipts);
    assert_eq!(p.hash, s.hash);
    assert_eq!(p_fuel, s_fuel);
    assert_eq!(s.receipts.len(), txs.len());
    parallel.chain().take_stm_stats().expect("Block-STM ran")
}

// Larger blocks than the random ones, to reach the contention handling (after 64 executions):
// which branch runs — speculation to the end, extra workers leaving, or giving up early for
// sequential execution — depends on timing; the outcome must be the same in every case.

#[test]
fn a_block_hot_from_its_start_gives_the_sequential_outcome() {
    let (w, txs) = transfer_block(800, |_| true);
    let stats = same_both_ways(&w, txs);
    println!("hot from the start: {stats:?}");
}

#[test]
fn a_block_that_turns_hot_late_gives_the_sequential_outcome() {
    // The first 600 transfers are independent, the last 200 all pay one account.
    let (w, txs) = transfer_block(800, |i| i >= 600);
    let stats = same_both_ways(&w, txs);
    println!("hot late: {stats:?}");
}
