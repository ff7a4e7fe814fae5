//! Block-STM: a block's transactions executed in parallel, with exactly the outcome of executing
//! them one after another in block order.
//!
//! This is the algorithm of Gelashvili et al., "Block-STM: Scaling Blockchain Execution by
//! Turning Ordering Curse to a Performance Blessing" (PPoPP 2023), as aptos-core's
//! `block-executor` implements it, over the wasm executor, with one change of unit: the tasks
//! are **runs** of consecutive transactions, not single transactions.
//!
//! - **Runs**: the block is cut into runs of `len` transactions ([`Workers::run_for`]: up to 16
//!   at the node's block sizes). A worker executes a run's transactions one after another over
//!   one view, each reading what the ones before it in the run wrote — which is what sequential
//!   execution gives them — so only the run's reads of the runs below it are recorded and
//!   validated, and its writes (each key's last) are recorded once. With single transactions
//!   the bookkeeping of the paper (two scheduler states, a slot, a read set and its validation,
//!   the shared reads every transfer makes) cost 2-4.5 µs a transfer, a quarter to a half of a
//!   transfer's execution, on cache lines both cores kept writing; a run pays it once.
//! - **Multi-version memory** (`MvMemory`): for every key, the value each run's latest
//!   incarnation wrote, by run index. A run reads the write of the highest lower index, or the
//!   block's state before the transactions ([`StateOverlay`] after `begin_block`). When an
//!   incarnation is aborted its writes become *estimates*: a later run that reads one waits for
//!   it instead of reading a value that is about to change.
//! - **Read sets and validation**: each incarnation records where every read below the run came
//!   from (which run and incarnation, or the block's state) and the result of every
//!   `next_key`. Validation reads them again; any difference aborts the incarnation and
//!   schedules the run again with a higher incarnation number. The reads decide the run's
//!   outcome, because its transactions run in order on nothing else.
//! - **The collaborative scheduler** (`Scheduler`): workers take the lowest-index task —
//!   validating an executed run or executing a ready one — from two shared indices; an abort
//!   lowers the validation index so everything above is validated again. The block is done
//!   when both indices are past the end, no task is running and no index moved meanwhile; then
//!   every run's last incarnation has been validated against the final writes of all runs below
//!   it, which is exactly sequential execution.
//! - **Commit**: [`execute`] returns each transaction's final outcome in block order and the
//!   block's changes — each key's last writer's value, which is what committing the final write
//!   sets in index order gives — merged once into the block's overlay by the caller.
//! - **Contention**: when a block conflicts so much that speculation is wasted (one execution in
//!   three aborted or waiting, or half writing a hot key), the extra workers leave and one
//!   finishes the block in order.
//!
//! The multi-version memory has a part per worker, each split in hashed shards alone on their
//! cache lines: a worker records only into its own part, so the lines it writes stay in its
//! core's cache, and readers merge the parts (`next_key` merges every shard, through an ordered
//! index a shard builds the first time `next_key` looks into it). Each part's table
//! of the lowest writer of each key lets most reads (the parameters, the chain id, accounts no
//! one below touches, a validated run's own writes) skip the shards altogether: taking even a
//! read lock writes the lock's word, and with two workers reading the same hot keys that word
//! would move between cores on every read.
//!
//! What this needs from the runtime: nothing. Any call may read and write any key and iterate
//! with `next_key`; determinism comes from the validation, not from knowledge of the operations,
//! so upgrade and governance transactions run on this path too. A transaction the runtime
//! refuses writes nothing (as in sequential execution, where its overlay is discarded; in a run,
//! its writes are dropped before the next transaction runs). Each transaction starts from a
//! fresh instance's state with its own fuel budget, so fuel, events, fees and receipts are
//! those of the final incarnation — the sequential ones.
//!
//! The worker pool is sized to the machine's cores and kept for the life of the process.

mod common;
mod gather;
mod memory;
mod scheduler;
mod threads;
mod view;
mod worker;

pub use common::TxOutcome;
pub use threads::{default_threads, pinned_cores};

use common::{classify, lock, metered, run_range};
use gather::final_ranges;
use memory::MvMemory;
use scheduler::Scheduler;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use threads::pool;
use vexidus_executor::{ExecError, Executor, Prototype};
use vexidus_runtime_api::abi::{self, ApplyArgs};
use vexidus_storage::overlay::{Changes, StateOverlay, Totals, add_total};
use worker::Shared;

/// What parallel execution of one block did, beyond the sequential work. Counts are of
/// transactions: a run executed, aborted or stopped counts each of its transactions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Transactions in the block.
    pub transactions: usize,
    /// Transactions per run (the unit the workers take, validate and run again).
    pub run: usize,
    /// Transaction executions (`transactions` when nothing conflicted).
    pub executions: usize,
    /// Validations of a run's reads.
    pub validations: usize,
    /// Transaction executions thrown away because validation aborted their run.
    pub aborts: usize,
    /// Transaction executions thrown away because their run stopped at an estimate, to wait
    /// for the run that wrote it.
    pub waits: usize,
    /// The block conflicted so much from its start that Block-STM gave up early and the block
    /// ran one transaction after another.
    pub fell_back: bool,
}

/// How a block's transactions are spread over workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workers {
    /// Workers (at most the pool's size, one per core).
    pub threads: usize,
    /// Transactions per run; `None`: [`Workers::run_for`] picks it from the block's size.
    pub run: Option<usize>,
}

impl Workers {
    /// `threads` workers, runs sized to the block.
    pub fn new(threads: usize) -> Self {
        Self { threads, run: None }
    }

    /// The run length for a block of `n` transactions: `run` if set, else about 32 runs per
    /// worker, at most 16 transactions each. A run's bookkeeping — its scheduler states, its slot, its read set's
    /// allocation, the shared reads every transfer makes (parameters, chain id, the proposer)
    /// and their validation — is paid once for all its transactions, and consecutive
    /// transactions stay on one core; a longer run costs more when it conflicts (all of it runs
    /// again) and leaves a longer tail at the block's end (a 16-transfer run is about 0.1 ms).
    pub fn run_for(&self, n: usize) -> usize {
        self.run
            .unwrap_or_else(|| (n / (32 * self.threads.max(1))).min(16))
            .max(1)
    }
}

/// Executes `txs` with Block-STM on up to `workers.threads` workers over `overlay` (the
/// block's state after `begin_block`), commits their changes to it and returns each
/// transaction's final outcome, in block order. The workers' fuel is charged to this thread's
/// meter, as sequential calls would have charged it.
///
/// A block that conflicts from its start (one execution in three aborted or waiting, or half
/// writing a hot key, within the first eighth of the block) is run one transaction after
/// another instead (the speculation so far is thrown away); `stop_at_refusal` is for that case (see [`execute_sequentially`]).
pub fn execute(
    executor: &Executor,
    runtime: &Prototype,
    overlay: &mut StateOverlay<'_>,
    txs: &[ApplyArgs],
    fuel: u64,
    workers: Workers,
    stop_at_refusal: bool,
) -> Result<(Vec<TxOutcome>, Stats), ExecError> {
    let (parallel, mut stats) = execute_parallel(executor, runtime, overlay, txs, fuel, workers)?;
    match parallel {
        Some((outcomes, changes, totals)) => {
            overlay.commit_changes(changes);
            overlay.commit_totals(totals);
            Ok((outcomes, stats))
        }
        None => {
            stats.fell_back = true;
            let outcomes =
                execute_sequentially(executor, runtime, overlay, txs, fuel, stop_at_refusal)?;
            Ok((outcomes, stats))
        }
    }
}

/// What Block-STM produced: each transaction's outcome in block order, the block's changes and
/// what its transactions added to the block totals.
type Finished = (Vec<TxOutcome>, Changes, Totals);

/// Block-STM proper: the outcomes and the block's changes, or `None` when it gave up early.
fn execute_parallel(
    executor: &Executor,
    runtime: &Prototype,
    base: &StateOverlay<'_>,
    txs: &[ApplyArgs],
    fuel: u64,
    workers: Workers,
) -> Result<(Option<Finished>, Stats), ExecError> {
    let n = txs.len();
    let threads = workers.threads.clamp(1, pool().current_num_threads());
    let run = workers.run_for(n);
    let runs = n.div_ceil(run);
    let shared = Shared {
        executor,
        runtime,
        txs,
        run,
        fuel,
        mv: MvMemory::new(base, runs, n, threads),
        scheduler: Scheduler::new(runs),
        failure: Mutex::new(None),
        abandoned: AtomicBool::new(false),
        executions: AtomicUsize::new(0),
        validations: AtomicUsize::new(0),
        aborts: AtomicUsize::new(0),
        waits: AtomicUsize::new(0),
        shared_writes: AtomicUsize::new(0),
    };
    pool().scope(|s| {
        for worker in 1..threads {
            let shared = &shared;
            s.spawn(move |_| shared.work(worker, true));
        }
        shared.work(0, false);
    });
    if let Some(e) = lock(&shared.failure).take() {
        return Err(e);
    }
    let stats = Stats {
        transactions: n,
        run,
        executions: shared.executions.load(SeqCst),
        validations: shared.validations.load(SeqCst),
        aborts: shared.aborts.load(SeqCst),
        waits: shared.waits.load(SeqCst),
        fell_back: false,
    };
    if shared.abandoned.load(SeqCst) {
        return Ok((None, stats));
    }
    let MvMemory {
        parts, mut last, ..
    } = shared.mv;
    let ranges = final_ranges(parts.into_iter().map(|p| p.shards).collect());
    // The map is built on one thread; the outcomes and totals are gathered on the other
    // meanwhile (the sums do not depend on the order of adding). The ranges go into one vector
    // of the final length first: collecting the flattened ranges grew it from empty, copying
    // the changes over and over, and took the map's build from 0.7-0.9 ms to 1.2-1.4.
    let (changes, gathered) = pool().join(
        || {
            let mut sorted = Vec::with_capacity(ranges.iter().map(Vec::len).sum());
            for range in ranges {
                sorted.extend(range);
            }
            Changes::from_iter(sorted)
        },
        || {
            let mut totals = Totals::new();
            let mut outcomes = Vec::with_capacity(n);
            for (r, slot) in last.iter_mut().enumerate() {
                let last = slot.0.get_mut().unwrap_or_else(|p| p.into_inner());
                for (name, amount) in &last.totals {
                    add_total(&mut totals, name, *amount);
                }
                if last.outcomes.len() != run_range(r, run, n).len() {
                    return Err(ExecError::Instantiate(format!(
                        "parallel execution ended with {} outcomes for the {} transactions \
                         of run {r}",
                        last.outcomes.len(),
                        run_range(r, run, n).len()
                    )));
                }
                outcomes.append(&mut last.outcomes);
            }
            Ok((outcomes, totals))
        },
    );
    let (outcomes, totals) = gathered?;
    // The reads and written keys are freed off the block's path.
    pool().spawn(move || drop(last));
    Ok((Some((outcomes, changes, totals)), stats))
}

/// Executes `txs` one after another on the transaction layer of `overlay`: an included one's
/// writes are committed to the block's layer at once (its outcome carries none), a refused one's
/// are discarded. With `stop_at_refusal` (import: the block is invalid) it stops at the first
/// refused transaction.
pub fn execute_sequentially(
    executor: &Executor,
    runtime: &Prototype,
    overlay: &mut StateOverlay<'_>,
    txs: &[ApplyArgs],
    fuel: u64,
    stop_at_refusal: bool,
) -> Result<Vec<TxOutcome>, ExecError> {
    let mut outcomes = Vec::with_capacity(txs.len());
    for args in txs {
        let (outcome, fuel) =
            metered(executor.call_metered(runtime, abi::APPLY_TRANSACTION, args, overlay, fuel));
        let result = classify(outcome)?;
        let refused = result.is_err();
        if refused {
            overlay.discard_transaction();
        } else {
            overlay.commit_transaction();
        }
        outcomes.push(TxOutcome { result, fuel });
        if refused && stop_at_refusal {
            break;
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::common::read_lock;
    use super::memory::*;
    use super::view::View;
    use super::*;
    use std::collections::BTreeMap;
    use vexidus_storage::overlay::Additions;

    #[test]
    fn runs_are_sized_to_the_block_unless_set() {
        let auto = Workers::new(2);
        assert_eq!(auto.run_for(10), 1);
        assert_eq!(auto.run_for(800), 12);
        assert_eq!(auto.run_for(10_000), 16);
        let set = |run| Workers {
            threads: 2,
            run: Some(run),
        };
        assert_eq!(
            set(32).run_for(10_000),
            32,
            "an explicit length is not capped"
        );
        assert_eq!(set(0).run_for(10_000), 1);
    }

    /// A run's view: each transaction reads what the run's earlier included transactions wrote,
    /// a refused one's writes are gone before the next runs, `next_key` merges the run's writes
    /// and the transaction's over the state, and only reads of the state are recorded. (The
    /// genesis runtime refuses a transaction before it writes anything, so the property test
    /// cannot tell a leaked refusal; this can.)
    #[test]
    fn a_runs_transactions_see_the_included_ones_before_them() -> Result<(), String> {
        use vexidus_executor::Externalities;
        let backend = vexidus_storage::MapBackend(BTreeMap::from([
            (b"a".to_vec(), b"1".to_vec()),
            (b"c".to_vec(), b"3".to_vec()),
            (b"e".to_vec(), b"5".to_vec()),
        ]));
        let base = StateOverlay::new(&backend);
        let mv = MvMemory::new(&base, 1, 4, 1);
        let mut view = View::new(&mv, 0);
        let v = |s: &str| Some(s.as_bytes().to_vec());

        // Included: deletes a, writes b.
        view.remove(b"a");
        view.set(b"b", b"2");
        view.add_to_total(b"fees", 7)?;
        view.commit_transaction();
        // Refused after writing: nothing of it may stay.
        view.set(b"d", b"4");
        view.remove(b"c");
        view.set(b"b", b"refused");
        view.add_to_total(b"fees", 1_000)?;
        view.discard_transaction();

        assert_eq!(view.get(b"a")?, None);
        assert_eq!(view.get(b"b")?, v("2"));
        assert_eq!(view.get(b"c")?, v("3"));
        assert_eq!(view.get(b"d")?, None);
        assert_eq!(view.next_key(b"")?, v("b"));
        assert_eq!(view.next_key(b"b")?, v("c"));
        // This transaction re-creates a, deletes the run's b and the state's e.
        view.set(b"a", b"again");
        view.remove(b"b");
        view.remove(b"e");
        assert_eq!(view.next_key(b"")?, v("a"));
        assert_eq!(view.next_key(b"a")?, v("c"));
        assert_eq!(view.next_key(b"c")?, None);
        view.commit_transaction();

        let (reads, writes, totals) = view.into_parts();
        assert_eq!(
            writes,
            Changes::from([
                (b"a".to_vec(), v("again")),
                (b"b".to_vec(), None),
                (b"e".to_vec(), None),
            ])
        );
        assert_eq!(totals.len(), 1, "the refused transaction's addition stayed");
        assert_eq!(totals[0].1, 7);
        // Only what came from below the run: c and d read from the state (a and b were the
        // run's own when read), and the next-key walks over the state.
        let gets: Vec<&[u8]> = reads
            .iter()
            .filter_map(|r| match r {
                Read::Get(k, Origin::Base) => Some(k.as_slice()),
                _ => None,
            })
            .collect();
        assert_eq!(gets, [b"c".as_slice(), b"d"]);
        assert!(
            reads
                .iter()
                .all(|r| matches!(r, Read::Get(_, Origin::Base) | Read::NextKey(..)))
        );
        Ok(())
    }

    /// `next_key` over the multi-version memory: a shard's ordered index is built the first
    /// time it is looked into, and keys written after that (in either part) are in it; each run
    /// sees the writes below it over the block's state, deletions included.
    #[test]
    fn next_key_sees_keys_written_after_the_order_was_built() -> Result<(), String> {
        let backend = vexidus_storage::MapBackend(BTreeMap::from([
            (b"k/050".to_vec(), b"state".to_vec()),
            (b"z".to_vec(), b"state".to_vec()),
        ]));
        let base = StateOverlay::new(&backend);
        let mv = MvMemory::new(&base, 4, 4, 2);
        let ran = |writes: Vec<(String, Option<&str>)>| Ran {
            reads: Vec::new(),
            writes: writes
                .into_iter()
                .map(|(k, v)| (k.into_bytes(), v.map(|v| v.as_bytes().to_vec())))
                .collect(),
            totals: Additions::new(),
            outcomes: Vec::new(),
        };
        let next = |from: &str, run| -> Result<Option<String>, String> {
            match mv.next_key(from.as_bytes(), run)? {
                Ok(k) => Ok(k.map(|k| String::from_utf8_lossy(&k).into_owned())),
                Err(writer) => Err(format!("blocked on run {writer}")),
            }
        };
        let some = |k: &str| Some(k.to_string());
        // Which shards of both parts have their ordered index built.
        let ordered = || -> Vec<bool> {
            mv.parts
                .iter()
                .flat_map(|p| &p.shards)
                .map(|s| read_lock(&s.0).ordered.is_some())
                .collect()
        };

        mv.record(0, 0, 0, ran(vec![("k/030".into(), Some("0"))]));
        assert!(
            ordered().iter().all(|built| !built),
            "an order was built before any next_key"
        );
        assert_eq!(next("k/", 1)?, some("k/030"));
        assert!(
            ordered().iter().all(|&built| built),
            "next_key left a shard without its order"
        );

        // Written after the orders were built, into the other part: 100 keys, and run 0's
        // k/030 deleted.
        let mut writes: Vec<(String, Option<&str>)> = (0..100)
            .map(|i| (format!("k/1{i:02}"), Some("1")))
            .collect();
        writes.push(("k/020".into(), Some("1")));
        writes.push(("k/030".into(), None));
        mv.record(1, 0, 1, ran(writes));

        // Run 1 sees only run 0's write; run 2 sees run 1's over it.
        assert_eq!(next("k/", 1)?, some("k/030"));
        assert_eq!(next("k/030", 1)?, some("k/050"));
        assert_eq!(next("k/", 2)?, some("k/020"));
        assert_eq!(
            next("k/020", 2)?,
            some("k/050"),
            "the deleted k/030 is skipped"
        );
        let mut walked = Vec::new();
        let mut cursor = "k/050".to_string();
        while let Some(k) = next(&cursor, 2)? {
            walked.push(k.clone());
            cursor = k;
        }
        let expected: Vec<String> = (0..100)
            .map(|i| format!("k/1{i:02}"))
            .chain(["z".to_string()])
            .collect();
        assert_eq!(walked, expected, "the walk missed or misordered keys");

        // An aborted run's writes are estimates: a run above that reaches one waits for it.
        mv.convert_writes_to_estimates(1);
        assert_eq!(next("k/", 2), Err("blocked on run 1".to_string()));
        assert_eq!(next("k/", 1)?, some("k/030"));
        Ok(())
    }
}
