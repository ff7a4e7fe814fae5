//! `vexidus-bench`: the node's benchmarks (use a release build); each prints its baseline,
//! measured in the same process, and the ratios against it.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use vexidus_bench::{Contention, Execution, admission, execution, print_table, signatures};

// The node's allocator and its settings, so the figures are the node's.
#[global_allocator]
static ALLOCATOR: vexidus_node::allocator::MiMalloc = vexidus_node::allocator::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "vexidus-bench",
    version,
    about = "The Vexidus node's benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// Signature verification: one by one on one thread vs the node's batched parallel verifier.
    Signatures {
        /// Signatures per run.
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        /// Runs; the best is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Execution of one block of transfers: wasm sequential vs native sequential vs wasm
    /// Block-STM, at low and full contention, and whole-block production.
    Execution {
        /// Transfers in the block.
        #[arg(long, default_value_t = 10_000)]
        txs: usize,
        /// Timed rounds (after one untimed warm-up round); each way's best is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Transactions per Block-STM run (default: sized to the block, as the node does).
        #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        run: Option<usize>,
    },
    /// Admission: the pool's check of incoming transfers against the head state, on a finalized
    /// head vs a head with full blocks waiting for finality above it.
    Admission {
        /// Blocks between the last irreversible block and the head.
        #[arg(long, default_value_t = 2)]
        pending: usize,
        /// Transfers in each of those blocks.
        #[arg(long, default_value_t = 10_000)]
        block_txs: usize,
        /// Incoming transfers checked per run.
        #[arg(long, default_value_t = 2_000)]
        checks: usize,
        /// Runs; the best is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

fn main() {
    vexidus_node::allocator::keep_freed_memory_between_blocks();
    let cli = Cli::parse();
    vexidus_node::logging::init();
    let result = match cli.command {
        Bench::Signatures { count, runs } => signatures(count, runs).map(|lines| {
            print_table(
                &format!("signature verification, {count} Ed25519 signatures (ZIP-215)"),
                &lines,
            )
        }),
        Bench::Execution { txs, runs, run } => bench_execution(txs, runs, run),
        Bench::Admission {
            pending,
            block_txs,
            checks,
            runs,
        } => admission(pending, block_txs, checks, runs).map(|lines| {
            print_table(
                &format!("admission of {checks} incoming transfers (vex_validate_transaction on the head)"),
                &lines,
            )
        }),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn bench_execution(txs: usize, runs: usize, run: Option<usize>) -> anyhow::Result<()> {
    for (contention, what) in [
        (
            Contention::Low,
            "low contention: distinct senders, distinct recipients",
        ),
        (
            Contention::Full,
            "full contention: distinct senders, one hot recipient",
        ),
    ] {
        let Execution {
            lines,
            paired,
            stats,
            restores,
        } = execution(txs, runs, contention, run)?;
        print_table(
            &format!("execution of a {txs}-transfer block, {what}"),
            &lines,
        );
        println!(
            "  round by round, baseline time over the way's in the same round (the ways take turns):"
        );
        for p in &paired {
            println!(
                "    {:<52} median {:.2}×  ({:.2}-{:.2}× over {} rounds)",
                p.name,
                p.median(),
                p.ratios.first().copied().unwrap_or(0.0),
                p.ratios.last().copied().unwrap_or(0.0),
                p.ratios.len()
            );
        }
        println!(
            "  Block-STM, runs of {}: {} transaction executions and {} validations of runs for {} transactions, {} executions aborted by validation, {} stopped at an estimate{}",
            stats.run,
            stats.executions,
            stats.validations,
            stats.transactions,
            stats.aborts,
            stats.waits,
            if stats.fell_back {
                "; too contended from the start: the block ran one transaction after another"
            } else {
                ""
            }
        );
        println!(
            "  wasm calls in the timed rounds: {} in a reused instance, {} of whose restores skipped the page-table scan (no page fault since the last one)",
            restores.reuses, restores.unscanned
        );
        match vexidus_chain::stm::pinned_cores() {
            Some(cores) => println!(
                "  Block-STM's workers pinned one to a CPU: {cores:?} (VEXIDUS_PIN_WORKERS=0 turns it off)"
            ),
            None => println!("  Block-STM's workers not pinned to CPUs"),
        }
    }
    Ok(())
}
