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

use hashbrown::HashTable;
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, OnceLock, RwLock};
use vexidus_executor::{ExecError, Executor, Externalities, Prototype};
use vexidus_runtime_api::Receipt;
use vexidus_runtime_api::abi::{self, ApplyArgs, InvalidTransaction};
use vexidus_storage::overlay::{Additions, Changes, StateOverlay, Totals, add_total};

/// One key's final value (`None`: deleted).
type Change = (Vec<u8>, Option<Vec<u8>>);
/// A run's position in the block: run `r` is transactions `r * len .. (r + 1) * len` (the last
/// run may be shorter).
type RunIndex = usize;
/// How many times a run has been executed before (0 for the first execution).
type Incarnation = u32;

/// What the final incarnation of one transaction gave.
#[derive(Debug, Clone)]
pub struct TxOutcome {
    /// The receipt, or why the runtime refused the transaction (the same text sequential
    /// execution gives).
    pub result: Result<Receipt, String>,
    /// Fuel the call used, counted as [`Executor::metered`] counts it.
    pub fuel: u64,
}

/// What one `vex_apply_transaction` call means for the block: a receipt, a refusal (the
/// transaction is left out, or the block is invalid), or a node-local failure that says nothing
/// about the transaction (a storage read, no free instance slot) and fails the block's execution.
pub(crate) fn classify(
    outcome: Result<Result<Receipt, InvalidTransaction>, ExecError>,
) -> Result<Result<Receipt, String>, ExecError> {
    match outcome {
        Ok(Ok(receipt)) => Ok(Ok(receipt)),
        Ok(Err(invalid)) => Ok(Err(invalid.to_string())),
        Err(e @ (ExecError::Storage { .. } | ExecError::Instantiate(_))) => Err(e),
        Err(e) => Ok(Err(e.to_string())),
    }
}

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

/// The number of workers: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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

/// The execution pool: one thread per core, each pinned to its own core when the process may
/// run on exactly as many CPUs as the pool has threads (see [`pinned_cores`]).
fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = pinned_cores();
        rayon::ThreadPoolBuilder::new()
            .num_threads(default_threads())
            .thread_name(|i| format!("vexidus-exec-{i}"))
            .start_handler(move |i| {
                if let Some(&cpu) = cores.and_then(|cores| cores.get(i))
                    && let Err(e) = pin_current_thread(cpu)
                {
                    tracing::warn!(thread = i, cpu, "execution worker not pinned: {e}");
                }
            })
            .build()
            .expect("a thread pool of the machine's size builds")
    })
}

/// The CPUs the execution pool's threads are pinned to, thread `i` to the `i`-th, or `None`
/// when they are not pinned: the process may run on more (or fewer) CPUs than the pool has
/// threads (a CPU quota, or a machine shared by choice), the system does not say which, or
/// `VEXIDUS_PIN_WORKERS=0` is set.
///
/// Why pin: a worker sleeps between blocks and a block's first task wakes it. Linux places a
/// woken thread on the CPU of the thread that woke it when it judges that cache-friendly
/// (wake-affine), and there it waits behind the busy waker until the scheduler's next
/// load-balancing tick moves it to its idle core. Measured on a 2-vCPU VM: the second worker
/// began its first task 1.8-2.4 ms (mean per process) after the block started, up to 4 ms, while
/// a fresh `std::thread` started in 0.2 ms; pinned, it can only wake on its own core and
/// starts in 0.1-0.2 ms.
pub fn pinned_cores() -> Option<&'static [usize]> {
    static CORES: OnceLock<Option<Vec<usize>>> = OnceLock::new();
    CORES
        .get_or_init(|| {
            if std::env::var_os("VEXIDUS_PIN_WORKERS").is_some_and(|v| v == "0") {
                return None;
            }
            let cpus = allowed_cpus()?;
            (cpus.len() == default_threads()).then_some(cpus)
        })
        .as_deref()
}

/// The CPUs the calling thread may run on, in order.
fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: `cpu_set_t` is plain bits (all zero is the empty set), and `sched_getaffinity`
    // writes at most `size_of::<cpu_set_t>()` bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some(
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
                .collect(),
        )
    }
}

/// Lets the calling thread run on `cpu` only.
fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    // SAFETY: as in `allowed_cpus`; `CPU_SET` ignores a CPU beyond the set's size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
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
            Executor::charge_meter(outcomes.iter().map(|o| o.fuel).sum());
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

/// The transactions of run `r` of a block of `n` in runs of `run`.
fn run_range(r: RunIndex, run: usize, n: usize) -> std::ops::Range<usize> {
    r * run..((r + 1) * run).min(n)
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

/// A key's first eight bytes, big-endian and zero-padded: it orders like the key, and most
/// comparisons between two keys end there, without following the keys' pointers (comparing
/// keys that live in separate allocations is cache-miss bound).
fn head(key: &[u8]) -> u64 {
    let mut head = [0u8; 8];
    let n = key.len().min(8);
    head[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(head)
}

/// The next key of one piece of a shard, in a range's merge: the heap holds one per piece,
/// smallest key on top (`BinaryHeap` is a max-heap, so the order is reversed).
struct Next {
    head: u64,
    key: Vec<u8>,
    piece: usize,
}

impl Ord for Next {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.head, &other.key).cmp(&(self.head, &self.key))
    }
}

impl PartialOrd for Next {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Next {
    fn eq(&self, other: &Self) -> bool {
        self.head == other.head && self.key == other.key
    }
}

impl Eq for Next {}

/// One shard's piece of a key range, being merged: the entries left (in key order; the merge
/// takes their keys and last cells out), and the last cell of the key it has in the merge's heap.
struct Source<'e> {
    rest: std::slice::IterMut<'e, Entry>,
    cell: Option<(RunIndex, Cell)>,
}

impl Source<'_> {
    /// Moves on to the piece's next key that has a cell (a transaction that ran again without
    /// writing a key leaves it without one), keeps the cell and gives the key's heap entry.
    fn advance(&mut self, piece: usize) -> Option<Next> {
        let (head, key, cell) = self.rest.find_map(|entry| {
            let cell = entry.versions.take_last()?;
            Some((entry.head, std::mem::take(&mut entry.key), cell))
        })?;
        self.cell = Some(cell);
        Some(Next { head, key, piece })
    }
}

/// Merges one key range's pieces of every shard (each sorted) into the range's changes: each
/// key's best-ranked last cell ([`rank`]; a key written on several workers is in several
/// parts), in key order, without the keys whose best cell is an estimate (which holds no value).
fn merge_range(pieces: Vec<&mut [Entry]>) -> Vec<Change> {
    use std::collections::binary_heap::{BinaryHeap, PeekMut};
    let mut changes = Vec::with_capacity(pieces.iter().map(|p| p.len()).sum());
    let mut sources: Vec<Source> = pieces
        .into_iter()
        .map(|piece| Source {
            rest: piece.iter_mut(),
            cell: None,
        })
        .collect();
    let mut heap: BinaryHeap<Next> = sources
        .iter_mut()
        .enumerate()
        .filter_map(|(piece, source)| source.advance(piece))
        .collect();
    // The key being merged, its best cell so far and that cell's rank.
    let mut best: Option<(Next, Cell, (RunIndex, Incarnation))> = None;
    while let Some(mut top) = heap.peek_mut() {
        let source = &mut sources[top.piece];
        let (writer, cell) = source
            .cell
            .take()
            .expect("a key in the heap has its cell kept");
        let entry = match source.advance(top.piece) {
            Some(next) => std::mem::replace(&mut *top, next),
            None => PeekMut::pop(top),
        };
        let ranked = rank(writer, &cell);
        match &mut best {
            Some((key, kept, r)) if *key == entry => {
                if ranked > *r {
                    (*kept, *r) = (cell, ranked);
                }
            }
            _ => {
                if let Some((key, Cell::Written(_, value), _)) = best.replace((entry, cell, ranked))
                {
                    changes.push((key.key, value));
                }
            }
        }
    }
    if let Some((key, Cell::Written(_, value), _)) = best {
        changes.push((key.key, value));
    }
    changes
}

/// The block's changes out of the multi-version memory (every part's shards), in key ranges
/// that follow one another: each key's last writer's value, in key order. This runs after the
/// workers finish, so it is on all cores: each shard's entries are sorted by key (the shards in
/// parallel), the key space is cut into ranges at keys sampled from the longest shard (hashing
/// spreads every range over all shards alike), each shard's sorted entries are split at the cuts
/// (a binary search each), and each range merges its piece of every shard, keeping of a key
/// written on several workers (so in several parts) the best-ranked cell.
fn final_ranges(parts: Vec<Vec<Shard>>) -> Vec<Vec<Change>> {
    use rayon::prelude::*;
    let maps: Vec<ShardMap> = parts
        .into_iter()
        .flatten()
        .map(|shard| shard.0.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect();
    pool().install(|| {
        let mut sorted: Vec<Vec<Entry>> = maps.into_par_iter().map(ShardMap::into_sorted).collect();
        let total: usize = sorted.iter().map(Vec::len).sum();
        let ranges = (4 * pool().current_num_threads()).clamp(1, total / 1024 + 1);
        let cuts: Vec<Vec<u8>> = sorted
            .iter()
            .max_by_key(|s| s.len())
            .map_or_else(Vec::new, |s| {
                let step = s.len() / ranges;
                s.iter()
                    .skip(step)
                    .step_by(step.max(1))
                    .take(ranges - 1)
                    .map(|e| e.key.clone())
                    .collect()
            });
        // Each shard in pieces, one per range: `pieces[range][shard]`.
        let mut pieces: Vec<Vec<&mut [Entry]>> = (0..=cuts.len())
            .map(|_| Vec::with_capacity(sorted.len()))
            .collect();
        for shard in &mut sorted {
            let mut rest: &mut [Entry] = shard;
            for (range, cut) in cuts.iter().enumerate() {
                let at = rest.partition_point(|e| e.key < *cut);
                let (piece, after) = std::mem::take(&mut rest).split_at_mut(at);
                pieces[range].push(piece);
                rest = after;
            }
            pieces[cuts.len()].push(rest);
        }
        let changes: Vec<Vec<Change>> = pieces.into_par_iter().map(merge_range).collect();
        // What the merge left of the entries (the versions of keys several runs wrote) is
        // freed off the block's path.
        pool().spawn(move || drop(sorted));
        changes
    })
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
        let (outcome, fuel) = Executor::metered(|| {
            executor.call(runtime, abi::APPLY_TRANSACTION, args, overlay, fuel)
        });
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Everything the workers share for one block.
struct Shared<'a> {
    executor: &'a Executor,
    runtime: &'a Prototype,
    txs: &'a [ApplyArgs],
    /// Transactions per run.
    run: usize,
    fuel: u64,
    mv: MvMemory<'a>,
    scheduler: Scheduler,
    failure: Mutex<Option<ExecError>>,
    /// Gave up early: the block runs one transaction after another instead.
    abandoned: AtomicBool,
    executions: AtomicUsize,
    validations: AtomicUsize,
    aborts: AtomicUsize,
    waits: AtomicUsize,
    /// Executions that wrote a key another execution on the same worker had written.
    shared_writes: AtomicUsize,
}

enum Task {
    Execute(RunIndex, Incarnation),
    Validate(RunIndex, Incarnation),
}

impl Shared<'_> {
    /// Whether the block conflicts so much that speculation costs more than it gains: after
    /// the first 64 transaction executions (and eight runs), one in three or more was aborted
    /// or stopped at an estimate, or half of them were in runs that wrote a key an earlier run
    /// on the same worker wrote (a hot account: every such run depends on the one before it,
    /// even when the workers happen to take turns so neatly that few of them abort, which with
    /// the conflict count alone kept some fully contended blocks speculating for a thousand
    /// executions or all the way). Then extra workers leave and one finishes the block in
    /// order, which gives the same outcome (Block-STM is correct with any number of workers)
    /// without the wasted work.
    fn too_contended(&self) -> bool {
        let executions = self.executions.load(SeqCst);
        let conflicts = self.aborts.load(SeqCst) + self.waits.load(SeqCst);
        let shared = self.shared_writes.load(SeqCst);
        executions >= 64.max(8 * self.run)
            && (conflicts * 3 >= executions || shared * 2 >= executions)
    }

    /// A worker's loop. Once the block is too contended (checked between tasks, never while
    /// holding one): within its first eighth, everyone stops and the block runs sequentially;
    /// later, a `may_leave` worker leaves and the others finish.
    fn work(&self, worker: usize, may_leave: bool) {
        let mut task = None;
        while !self.scheduler.done() {
            if task.is_none() && self.too_contended() {
                if self.executions.load(SeqCst) * 8 <= self.txs.len() {
                    self.abandoned.store(true, SeqCst);
                    self.scheduler.halt();
                    return;
                }
                if may_leave {
                    return;
                }
            }
            task = match task {
                Some(Task::Execute(i, inc)) => self.execute(i, inc, worker),
                Some(Task::Validate(i, inc)) => self.validate(i, inc),
                None => {
                    let next = self.scheduler.next_task();
                    if next.is_none() {
                        std::hint::spin_loop();
                    }
                    next
                }
            };
        }
    }

    fn fail(&self, e: ExecError) {
        lock(&self.failure).get_or_insert(e);
        self.scheduler.halt();
    }

    /// The transactions of run `r`.
    fn run_range(&self, r: RunIndex) -> std::ops::Range<usize> {
        run_range(r, self.run, self.txs.len())
    }

    /// Runs incarnation `inc` of run `r`: its transactions one after another over one view, each
    /// reading what the ones before it in the run wrote, as sequential execution would; returns
    /// the follow-up task, if any.
    fn execute(&self, r: RunIndex, inc: Incarnation, worker: usize) -> Option<Task> {
        let range = self.run_range(r);
        loop {
            let mut view = View::new(&self.mv, r);
            let mut outcomes = Vec::with_capacity(range.len());
            for args in &self.txs[range.clone()] {
                let (outcome, fuel) = Executor::metered(|| {
                    self.executor.call(
                        self.runtime,
                        abi::APPLY_TRANSACTION,
                        args,
                        &mut view,
                        self.fuel,
                    )
                });
                if view.blocked_on.is_some() {
                    break;
                }
                let result = match classify(outcome) {
                    Ok(result) => result,
                    Err(e) => {
                        self.fail(e);
                        return None;
                    }
                };
                // A refused transaction writes nothing, as its discarded overlay in sequential
                // execution; what it read stays among the run's reads (it decided the refusal).
                if result.is_ok() {
                    view.commit_transaction();
                } else {
                    view.discard_transaction();
                }
                outcomes.push(TxOutcome { result, fuel });
            }
            let executed = outcomes.len() + usize::from(view.blocked_on.is_some());
            self.executions.fetch_add(executed, SeqCst);
            if let Some(blocking) = view.blocked_on {
                self.waits.fetch_add(executed, SeqCst);
                // It read an estimate: wait for that run to be executed again, unless it
                // already has been (then run again at once).
                if self.scheduler.add_dependency(r, blocking) {
                    return None;
                }
                continue;
            }
            let (reads, writes, totals) = view.into_parts();
            let ran = Ran {
                reads,
                writes,
                totals,
                outcomes,
            };
            let (wrote_new_key, shared_key) = self.mv.record(r, inc, worker, ran);
            if shared_key {
                self.shared_writes.fetch_add(range.len(), SeqCst);
            }
            return self.scheduler.finish_execution(r, inc, wrote_new_key);
        }
    }

    fn validate(&self, i: RunIndex, inc: Incarnation) -> Option<Task> {
        self.validations.fetch_add(1, SeqCst);
        let valid = match self.mv.validate(i) {
            Ok(v) => v,
            Err(e) => {
                self.fail(ExecError::Storage {
                    entry: abi::APPLY_TRANSACTION.into(),
                    reason: e,
                });
                return None;
            }
        };
        let aborted = !valid && self.scheduler.try_validation_abort(i, inc);
        if aborted {
            self.aborts.fetch_add(self.run_range(i).len(), SeqCst);
            self.mv.convert_writes_to_estimates(i);
        }
        self.scheduler.finish_validation(i, aborted)
    }
}

/// A value some incarnation wrote, or the mark of an aborted incarnation's write (with that
/// incarnation, so that a later incarnation's write wins over it; see [`MvMemory::record`]).
#[derive(Clone)]
enum Cell {
    Written(Incarnation, Option<Vec<u8>>),
    Estimate(Incarnation),
}

impl Cell {
    fn incarnation(&self) -> Incarnation {
        match self {
            Cell::Written(inc, _) | Cell::Estimate(inc) => *inc,
        }
    }
}

/// Where a read found its value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Origin {
    /// The block's state before its transactions.
    Base,
    /// The write of this run's incarnation.
    Version(RunIndex, Incarnation),
}

/// One read an incarnation made below its own writes. A key read is an [`InlineKey`], for the
/// reason [`Last`]'s written keys are.
enum Read {
    Get(InlineKey, Origin),
    NextKey(Vec<u8>, Option<Vec<u8>>),
}

/// The result of a read in the multi-version memory.
enum Lookup {
    Found(Origin, Option<Vec<u8>>),
    /// The value is an estimate of this (aborted) run's write.
    Blocked(RunIndex),
}

/// Versions of one key in one worker's part: the cell each run's last incarnation left
/// there, sorted by index. Mostly one entry (a block's keys are mostly written once), kept
/// inline: no allocation to record it and none to free; appended near the end (execution runs
/// roughly in index order).
#[derive(Default)]
struct Versions(SmallVec<[(RunIndex, Cell); 1]>);

impl Versions {
    /// The cell run `run` reads: the highest lower writer's.
    fn visible(&self, run: RunIndex) -> Option<(RunIndex, &Cell)> {
        let below = self.0.partition_point(|(w, _)| *w < run);
        below.checked_sub(1).map(|i| (self.0[i].0, &self.0[i].1))
    }

    fn slot(&mut self, run: RunIndex) -> Result<usize, usize> {
        self.0.binary_search_by_key(&run, |(w, _)| *w)
    }

    fn insert(&mut self, run: RunIndex, cell: Cell) {
        match self.slot(run) {
            Ok(i) => self.0[i].1 = cell,
            Err(i) => self.0.insert(i, (run, cell)),
        }
    }

    fn remove(&mut self, run: RunIndex) {
        if let Ok(i) = self.slot(run) {
            self.0.remove(i);
        }
    }

    fn get_mut(&mut self, run: RunIndex) -> Option<&mut Cell> {
        self.slot(run).ok().map(|i| &mut self.0[i].1)
    }

    /// The last writer and its cell, taken out when all is done.
    fn take_last(&mut self) -> Option<(RunIndex, Cell)> {
        self.0.pop()
    }
}

/// Which of two cells of one key a reader sees: the higher writer's, and of two cells of one
/// writer (in two parts, while `record` moves a run's writes), the later incarnation's.
fn rank(writer: RunIndex, cell: &Cell) -> (RunIndex, Incarnation) {
    (writer, cell.incarnation())
}

/// Shards of one worker's part, so a worker's reads and its own writes seldom wait for one
/// another. `next_key` merges them.
const SHARDS: usize = 16;

/// One shard, alone on its cache lines (two workers hammering locks that share a line would
/// serialise on it).
#[repr(align(128))]
struct Shard(RwLock<ShardMap>);

/// A key of a run's reads or writes, held inline when it is short (an account key is 37
/// bytes): no allocation per key, and no cross-thread free of one when a block's runs are
/// dropped on another thread.
type InlineKey = SmallVec<[u8; 40]>;

/// One key's versions in a shard, with the key: the one the run's writes came with, moved in
/// (not copied) and moved on into the block's changes at the end, so a key written once costs
/// no allocation here. Finding it follows the key's pointer only when the whole hash matches
/// (the index keeps it), so a key not in the shard almost never does.
struct Entry {
    /// The key's first eight bytes ([`head`]), for the final sort and merge.
    head: u64,
    key: Vec<u8>,
    versions: Versions,
}

/// One shard's keys: an entry per key, in the order they were first written, found through a
/// hash index. Order is kept only where it is needed:
///
/// - `next_key` builds an ordered index of the shard the first time it looks into it in a
///   block, and every new key goes into that index from then on (a block of transfers never
///   calls it, so never pays for it);
/// - the final gathering sorts each shard's entries once ([`ShardMap::into_sorted`]).
///
/// Why not an ordered tree: recording a run's writes would search it for every key, three or
/// four levels of nodes of up to eleven 48-byte keys each, on cache misses after a run's wasm
/// calls have cycled the caches, the hottest part of Block-STM's own CPU. The index finds a
/// key with one probe of its slots and one entry, which halves Block-STM's own CPU against a
/// tree.
#[derive(Default)]
struct ShardMap {
    entries: Vec<Entry>,
    /// `(index_hash, position in entries)` of every key: the hash is kept so that growing the
    /// index reads no entry.
    index: HashTable<(u64, usize)>,
    /// The keys in order, with their position in `entries`, once `next_key` has looked here.
    ordered: Option<BTreeMap<Vec<u8>, usize>>,
}

/// A key's hash as a shard's index uses it. The hash's low bits picked the shard
/// ([`shard_of`]), so they are the same for every key in it; the index takes a bucket from the
/// low bits and a tag from the top seven, which the rotation both fills with other bits.
fn index_hash(hash: u64) -> u64 {
    hash.rotate_left(32)
}

impl ShardMap {
    fn position(&self, hash: u64, key: &[u8]) -> Option<usize> {
        let h = index_hash(hash);
        self.index
            .find(h, is_key(&self.entries, h, key))
            .map(|&(_, i)| i)
    }

    fn get(&self, hash: u64, key: &[u8]) -> Option<&Versions> {
        self.position(hash, key).map(|i| &self.entries[i].versions)
    }

    fn get_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut Versions> {
        let i = self.position(hash, key)?;
        Some(&mut self.entries[i].versions)
    }

    /// The versions of `key` (of hash `hash`), a new entry without any if it has none.
    fn entry(&mut self, hash: u64, key: Vec<u8>) -> &mut Versions {
        let h = index_hash(hash);
        let entries = &self.entries;
        let i = match self.index.entry(h, is_key(entries, h, &key), |&(eh, _)| eh) {
            hashbrown::hash_table::Entry::Occupied(o) => o.get().1,
            hashbrown::hash_table::Entry::Vacant(v) => {
                let i = self.entries.len();
                v.insert((h, i));
                if let Some(ordered) = &mut self.ordered {
                    ordered.insert(key.clone(), i);
                }
                self.entries.push(Entry {
                    head: head(&key),
                    key,
                    versions: Versions::default(),
                });
                i
            }
        };
        &mut self.entries[i].versions
    }

    /// Builds the ordered index, unless it is built.
    fn build_ordered(&mut self) {
        if self.ordered.is_none() {
            let ordered = self
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| (e.key.clone(), i))
                .collect();
            self.ordered = Some(ordered);
        }
    }

    /// The first key after `after`, in key order, for which `f` of its versions gives
    /// something, and what it gives. Needs the ordered index ([`ordered_shard`] builds it):
    /// without it the answer would silently skip this shard's keys, so that is a panic.
    fn first_after<R>(
        &self,
        after: &[u8],
        f: impl Fn(&Versions) -> Option<R>,
    ) -> Option<(&Vec<u8>, R)> {
        self.ordered
            .as_ref()
            .expect("next_key looked into a shard whose order was not built")
            .range::<[u8], _>((Bound::Excluded(after), Bound::Unbounded))
            .find_map(|(k, &i)| f(&self.entries[i].versions).map(|r| (k, r)))
    }

    /// The entries in key order. What is sorted is each entry's first eight bytes and
    /// position (most comparisons end at the eight bytes, without following a key's pointer);
    /// the entries are then moved once into that order (sorting the 80-byte entries themselves
    /// moved each a dozen times).
    fn into_sorted(self) -> Vec<Entry> {
        let mut entries = self.entries;
        let mut order: Vec<(u64, usize)> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.head, i))
            .collect();
        order.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| entries[a.1].key.cmp(&entries[b.1].key))
        });
        order
            .into_iter()
            .map(|(head, i)| {
                let e = &mut entries[i];
                Entry {
                    head,
                    key: std::mem::take(&mut e.key),
                    versions: std::mem::take(&mut e.versions),
                }
            })
            .collect()
    }
}

/// Whether an index slot `(hash, position)` holds `key` (of index hash `h`): the whole hash
/// first, so the key behind the position is read only when it almost surely matches.
fn is_key<'e>(entries: &'e [Entry], h: u64, key: &'e [u8]) -> impl Fn(&(u64, usize)) -> bool + 'e {
    move |&(eh, i)| eh == h && entries[i].key == key
}

/// A read guard of a shard whose ordered index is built (built first, under the write lock, if
/// it is not; it stays built for the rest of the block).
fn ordered_shard(shard: &RwLock<ShardMap>) -> std::sync::RwLockReadGuard<'_, ShardMap> {
    loop {
        let guard = read_lock(shard);
        if guard.ordered.is_some() {
            return guard;
        }
        drop(guard);
        write_lock(shard).build_ordered();
    }
}

/// What one worker's executions recorded: their versions, in shards, and the lowest writer of
/// each key among them.
///
/// Each worker writes only its own part, so the shards' lock words and tree nodes stay in its
/// core's cache: with one shared set of shards, both workers inserted into the same trees and
/// each insert missed on lines the other core had just written (perf: recording the writes
/// took about 1.4 µs a transaction, most of it waiting for those lines). Readers look into
/// every part whose lowest writers say it may hold a write below them, which in a block that
/// seldom conflicts is almost never another worker's.
struct Part {
    shards: Vec<Shard>,
    lowest_writers: LowestWriters,
}

struct MvMemory<'a> {
    base: &'a StateOverlay<'a>,
    parts: Vec<Part>,
    /// What each run's last incarnation left.
    last: Vec<LastSlot>,
}

/// What one incarnation of a run did.
struct Ran {
    /// Its reads below the run (what its transactions read of one another is not among them).
    reads: Vec<Read>,
    /// Its included transactions' writes, each key's last.
    writes: Changes,
    /// Its included transactions' additions to the block totals.
    totals: Additions,
    /// Each transaction's outcome, in order.
    outcomes: Vec<TxOutcome>,
}

/// What a run's last incarnation left: the part it recorded into, the keys it wrote, its
/// reads, its additions to the block totals and its transactions' outcomes.
///
/// The written keys are [`InlineKey`]s: a `Vec` per key was an allocation per write when
/// recording and, since a run's `Last` is freed on whichever thread
/// drops the block's memory, a cross-thread free per write at the end of the block.
#[derive(Default)]
struct Last {
    part: usize,
    writes: Vec<InlineKey>,
    reads: Vec<Read>,
    totals: Additions,
    outcomes: Vec<TxOutcome>,
}

/// One run's [`Last`], under one lock, alone on its cache line: neighbouring runs run on
/// different workers, and with separate arrays of locks packed two or three to a line (writes,
/// reads, outcomes) each record took three locks whose lines the other core had just written.
#[repr(align(64))]
#[derive(Default)]
struct LastSlot(Mutex<Last>);

/// What a key holds for one run, as `next_key` needs it.
#[derive(Clone, Copy)]
enum Presence {
    Exists,
    Deleted,
    Estimate(RunIndex),
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// A key's hash, eight bytes at a time: it picks the key's shard, its place in the shard's
/// index and its buckets of lowest writers. Only speed depends on it (a shard's index compares
/// the keys themselves and the buckets only say "maybe"), so crafted keys can slow down nothing
/// but their own lookups and those of their shard.
fn key_hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (key.len() as u64).wrapping_mul(K);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("eight bytes"));
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^ (h >> 32)
}

fn shard_of(hash: u64) -> usize {
    (hash % SHARDS as u64) as usize
}

/// The lowest run that may have written each key into one part: a table of buckets, each
/// holding the lowest index of a run whose write hashed there (two buckets per key, in one
/// cache line). A key both of whose buckets hold only writers at or above `run` was written
/// into this part by no run below `run`, so `run` does not look for it there: the parameters
/// and chain id no one writes, an account only higher runs wrote, and, when validating a run,
/// the keys it wrote itself (a Bloom filter of written keys, the
/// predecessor, sent those to the shards). Buckets only ever move down (to a lower writer), so
/// a stale bucket errs on the side of a shard lookup. A bucket is lowered before the key goes
/// into its shard, and a reader that missed a concurrent update is no different from one that
/// read just before it: the validation, which runs after the writer's execution finished (and
/// so sees its buckets), catches the stale read.
struct LowestWriters {
    /// `n - writer` of the lowest writer seen (0: none), so a zeroed table is empty and
    /// lowering a bucket is a `fetch_max`.
    buckets: Vec<AtomicU32>,
    /// Buckets minus one (a power of two).
    mask: u64,
    n: usize,
}

impl LowestWriters {
    /// A table for one of `parts` parts of a block of `n` runs and `txs` transactions: about
    /// four buckets per written key at three keys a transaction (a reader near the end of the
    /// block looks into a shard for about one key in seven needlessly), at least 16 Ki buckets.
    /// Small enough to stay in the allocator's reused pages: a table of megabytes came fresh
    /// from the kernel for every block, and zeroing its pages cost more than the lookups it
    /// saved.
    fn new(n: usize, txs: usize, parts: usize) -> Self {
        let buckets = (txs.saturating_mul(12) / parts.max(1))
            .clamp(1 << 14, 1 << 26)
            .next_power_of_two();
        Self {
            buckets: (0..buckets).map(|_| AtomicU32::new(0)).collect(),
            mask: buckets as u64 - 1,
            n,
        }
    }

    /// The key's two buckets: one from the hash's low bits, the other in the same 64-byte line.
    fn buckets(&self, hash: u64) -> [&AtomicU32; 2] {
        let first = hash & self.mask;
        let mut second = (first & !15) | ((hash >> 40) & 15);
        if second == first {
            second ^= 1;
        }
        [
            &self.buckets[first as usize],
            &self.buckets[second as usize],
        ]
    }

    fn insert(&self, hash: u64, writer: RunIndex) {
        let mark = (self.n - writer) as u32;
        for b in self.buckets(hash) {
            // Most keys are new; a bucket that already holds a lower writer needs no write.
            if b.load(SeqCst) < mark {
                b.fetch_max(mark, SeqCst);
            }
        }
    }

    /// Whether a run below `run` may have written the key.
    fn may_have_writer_below(&self, hash: u64, run: RunIndex) -> bool {
        let below = (self.n - run) as u32;
        self.buckets(hash).iter().all(|b| b.load(SeqCst) > below)
    }
}

impl<'a> MvMemory<'a> {
    /// The memory of a block of `n` runs and `txs` transactions, in `parts` parts.
    fn new(base: &'a StateOverlay<'a>, n: usize, txs: usize, parts: usize) -> Self {
        Self {
            base,
            parts: (0..parts.max(1))
                .map(|_| Part {
                    shards: (0..SHARDS)
                        .map(|_| Shard(RwLock::new(ShardMap::default())))
                        .collect(),
                    lowest_writers: LowestWriters::new(n, txs, parts),
                })
                .collect(),
            last: (0..n).map(|_| LastSlot::default()).collect(),
        }
    }

    fn shard(&self, part: usize, hash: u64) -> &RwLock<ShardMap> {
        &self.parts[part].shards[shard_of(hash)].0
    }

    /// `f` of the cell of `key` that run `run` reads, with its writer: of every part
    /// that may hold a write below `run`, the best-ranked visible cell.
    fn visible<R>(&self, key: &[u8], run: RunIndex, f: impl Fn(RunIndex, &Cell) -> R) -> Option<R> {
        let hash = key_hash(key);
        let mut best: Option<((RunIndex, Incarnation), R)> = None;
        for part in &self.parts {
            if !part.lowest_writers.may_have_writer_below(hash, run) {
                continue;
            }
            let shard = read_lock(&part.shards[shard_of(hash)].0);
            if let Some((writer, cell)) = shard.get(hash, key).and_then(|v| v.visible(run))
                && best.as_ref().is_none_or(|(r, _)| rank(writer, cell) > *r)
            {
                best = Some((rank(writer, cell), f(writer, cell)));
            }
        }
        best.map(|(_, r)| r)
    }

    /// The value of `key` as run `run` sees it.
    fn get(&self, key: &[u8], run: RunIndex) -> Result<Lookup, String> {
        let found = self.visible(key, run, |writer, cell| match cell {
            Cell::Written(inc, value) => {
                Lookup::Found(Origin::Version(writer, *inc), value.clone())
            }
            Cell::Estimate(_) => Lookup::Blocked(writer),
        });
        match found {
            Some(lookup) => Ok(lookup),
            None => Ok(Lookup::Found(Origin::Base, self.base.read(key)?)),
        }
    }

    /// Where run `run` would read `key` from now (no value: validation compares origins,
    /// and a read of the block's state cannot have changed).
    fn origin(&self, key: &[u8], run: RunIndex) -> Result<Origin, RunIndex> {
        match self.visible(key, run, |writer, cell| match cell {
            Cell::Written(inc, _) => Ok(Origin::Version(writer, *inc)),
            Cell::Estimate(_) => Err(writer),
        }) {
            Some(origin) => origin,
            None => Ok(Origin::Base),
        }
    }

    /// The first key after `after` that a run below `run` wrote, and what it holds.
    fn next_written(&self, after: &[u8], run: RunIndex) -> Option<(Vec<u8>, Presence)> {
        // The first visible key of every shard of every part; a key in several parts is the
        // first in each of them when it is the first overall, so its best cell is among these.
        let mut best: Option<(Vec<u8>, (RunIndex, Incarnation), Presence)> = None;
        for shard in self.parts.iter().flat_map(|p| &p.shards) {
            let shard = ordered_shard(&shard.0);
            let found = shard.first_after(after, |versions| {
                versions.visible(run).map(|(writer, cell)| {
                    let presence = match cell {
                        Cell::Written(_, Some(_)) => Presence::Exists,
                        Cell::Written(_, None) => Presence::Deleted,
                        Cell::Estimate(_) => Presence::Estimate(writer),
                    };
                    (rank(writer, cell), presence)
                })
            });
            if let Some((k, (r, presence))) = found
                && best.as_ref().is_none_or(|(b, br, _)| {
                    k.as_slice() < b.as_slice() || (k.as_slice() == b.as_slice() && r > *br)
                })
            {
                best = Some((k.to_vec(), r, presence));
            }
        }
        best.map(|(k, _, presence)| (k, presence))
    }

    /// The first key after `from` that exists as run `run` sees the state, or the
    /// run whose estimate decides it.
    fn next_key(
        &self,
        from: &[u8],
        run: RunIndex,
    ) -> Result<Result<Option<Vec<u8>>, RunIndex>, String> {
        let mut in_base = self.base.read_next_key(from)?;
        let mut cursor = from.to_vec();
        loop {
            let Some((k, presence)) = self.next_written(&cursor, run) else {
                return Ok(Ok(in_base));
            };
            if in_base.as_ref().is_some_and(|b| *b < k) {
                return Ok(Ok(in_base));
            }
            match presence {
                Presence::Estimate(writer) => return Ok(Err(writer)),
                Presence::Exists => return Ok(Ok(Some(k))),
                Presence::Deleted => {
                    // Deleted below `run`: skip it in both sources.
                    if in_base.as_ref() == Some(&k) {
                        in_base = self.base.read_next_key(&k)?;
                    }
                    cursor = k;
                }
            }
        }
    }

    /// Stores what incarnation `inc`, which worker `part` ran, did; says whether it wrote a key
    /// the previous incarnation did not (then runs above must be validated again), and
    /// whether it wrote a key another run this worker ran wrote too (see
    /// [`Shared::too_contended`]).
    ///
    /// The previous incarnation's cells (estimates, once it was aborted) stay until the new
    /// ones are in: a reader in between sees the estimate and waits, as it must. When the
    /// previous incarnation ran on another worker, its cells are in another part; the new ones
    /// go into this worker's part first and the old ones are removed after, and for the moment
    /// both are there a reader takes the later incarnation's ([`rank`]).
    fn record(&self, run: RunIndex, inc: Incarnation, part: usize, ran: Ran) -> (bool, bool) {
        let Ran {
            reads,
            writes,
            totals,
            outcomes,
        } = ran;
        let mut last = lock(&self.last[run].0);
        let previous_part = std::mem::replace(&mut last.part, part);
        let previous = std::mem::replace(
            &mut last.writes,
            writes.keys().map(|k| InlineKey::from_slice(k)).collect(),
        );
        let wrote_new_key = writes.keys().any(|k| {
            previous
                .binary_search_by(|p| p.as_slice().cmp(k.as_slice()))
                .is_err()
        });
        let stale: Vec<InlineKey> = previous
            .into_iter()
            .filter(|k| previous_part != part || !writes.contains_key(k.as_slice()))
            .collect();
        let own = &self.parts[part];
        let mut shared_key = false;
        for (k, v) in writes {
            let hash = key_hash(&k);
            own.lowest_writers.insert(hash, run);
            let mut shard = write_lock(&own.shards[shard_of(hash)].0);
            let versions = shard.entry(hash, k);
            versions.insert(run, Cell::Written(inc, v));
            shared_key |= versions.0.len() > 1;
        }
        for k in stale {
            let hash = key_hash(&k);
            if let Some(versions) = write_lock(self.shard(previous_part, hash)).get_mut(hash, &k) {
                versions.remove(run);
            }
        }
        last.reads = reads;
        last.totals = totals;
        last.outcomes = outcomes;
        (wrote_new_key, shared_key)
    }

    /// Whether every read of `run`'s last incarnation would read the same now.
    fn validate(&self, run: RunIndex) -> Result<bool, String> {
        let last = lock(&self.last[run].0);
        for read in &last.reads {
            let same = match read {
                Read::Get(key, origin) => self.origin(key, run) == Ok(*origin),
                Read::NextKey(from, result) => {
                    matches!(self.next_key(from, run)?, Ok(now) if now == *result)
                }
            };
            if !same {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn convert_writes_to_estimates(&self, run: RunIndex) {
        let last = lock(&self.last[run].0);
        for k in &last.writes {
            let hash = key_hash(k);
            if let Some(cell) = write_lock(self.shard(last.part, hash))
                .get_mut(hash, k)
                .and_then(|v| v.get_mut(run))
            {
                *cell = Cell::Estimate(cell.incarnation());
            }
        }
    }
}

/// Storage as one incarnation of a run sees it: the transaction's own writes over those of the
/// run's transactions before it, over the multi-version memory (the runs below).
struct View<'m, 'a> {
    mv: &'m MvMemory<'a>,
    run: RunIndex,
    /// What this incarnation read from the multi-version memory, by key: where it came from and
    /// the value. A key read again gives the same value without going back to the shared
    /// memory (whose locks and nodes the other workers keep writing): the incarnation sees one
    /// snapshot per key, and validation checks where the first read came from, which decides
    /// both.
    seen: BTreeMap<InlineKey, (Origin, Option<Vec<u8>>)>,
    /// The results of `next_key` below the run's writes, in order.
    next_keys: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// What the run's included transactions so far wrote.
    run_writes: Changes,
    /// What they added to the block totals: nothing reads them before the block ends, so they
    /// are neither read nor validated, only summed at the end.
    run_totals: Additions,
    /// The transaction being executed: its writes and additions, until it is included or
    /// refused.
    writes: Changes,
    totals: Additions,
    blocked_on: Option<RunIndex>,
}

impl<'m, 'a> View<'m, 'a> {
    fn new(mv: &'m MvMemory<'a>, run: RunIndex) -> Self {
        Self {
            mv,
            run,
            seen: BTreeMap::new(),
            next_keys: Vec::new(),
            run_writes: Changes::new(),
            run_totals: Additions::new(),
            writes: Changes::new(),
            totals: Additions::new(),
            blocked_on: None,
        }
    }
}

impl View<'_, '_> {
    /// The transaction is included: its writes and additions join the run's.
    fn commit_transaction(&mut self) {
        // One by one: `BTreeMap::append` rebuilds the whole run's map each time.
        for (key, value) in std::mem::take(&mut self.writes) {
            self.run_writes.insert(key, value);
        }
        self.run_totals.append(&mut self.totals);
    }

    /// The transaction is refused: its writes and additions are dropped.
    fn discard_transaction(&mut self) {
        self.writes.clear();
        self.totals.clear();
    }

    /// What the transaction and the run before it wrote to `key`, if anything (`Some(None)`:
    /// deleted).
    fn local(&self, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.writes.get(key).or_else(|| self.run_writes.get(key))
    }

    /// The reads to validate (the keys move; the values are not needed), the writes and the
    /// additions to totals.
    fn into_parts(self) -> (Vec<Read>, Changes, Additions) {
        let reads = self
            .seen
            .into_iter()
            .map(|(key, (origin, _))| Read::Get(key, origin))
            .chain(
                self.next_keys
                    .into_iter()
                    .map(|(from, next)| Read::NextKey(from, next)),
            )
            .collect();
        (reads, self.run_writes, self.run_totals)
    }

    fn blocked(&mut self, writer: RunIndex) -> String {
        self.blocked_on = Some(writer);
        format!("run {} waits for run {writer}", self.run)
    }

    /// The next key below the run's writes, recorded.
    fn shared_next_key(&mut self, from: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match self.mv.next_key(from, self.run)? {
            Ok(next) => {
                self.next_keys.push((from.to_vec(), next.clone()));
                Ok(next)
            }
            Err(writer) => Err(self.blocked(writer)),
        }
    }
}

impl Externalities for View<'_, '_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        if let Some(v) = self
            .local(key)
            .or_else(|| self.seen.get(key).map(|(_, v)| v))
        {
            return Ok(v.clone());
        }
        match self.mv.get(key, self.run)? {
            Lookup::Found(origin, value) => {
                self.seen
                    .insert(InlineKey::from_slice(key), (origin, value.clone()));
                Ok(value)
            }
            Lookup::Blocked(writer) => Err(self.blocked(writer)),
        }
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
    }

    fn remove(&mut self, key: &[u8]) {
        self.writes.insert(key.to_vec(), None);
    }

    fn next_key(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let mut cursor = key.to_vec();
        let below = loop {
            match self.shared_next_key(&cursor)? {
                Some(k) if matches!(self.local(&k), Some(None)) => cursor = k,
                other => break other,
            }
        };
        let after = (Bound::Excluded(key), Bound::Unbounded);
        // The first key the transaction set, and the first the run set that the transaction
        // has not deleted.
        let own = self
            .writes
            .range::<[u8], _>(after)
            .find(|(_, v)| v.is_some())
            .map(|(k, _)| k);
        let run = self
            .run_writes
            .range::<[u8], _>(after)
            .find(|(k, v)| v.is_some() && !matches!(self.writes.get(*k), Some(None)))
            .map(|(k, _)| k);
        let local = [own, run].into_iter().flatten().min().cloned();
        Ok([below, local].into_iter().flatten().min())
    }

    fn add_to_total(&mut self, name: &[u8], amount: u128) -> Result<(), String> {
        self.totals.push((name.into(), amount));
        Ok(())
    }

    // `total`: the trait's refusal (a transaction never reads a block total).
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    ReadyToExecute,
    Executing,
    Executed,
    Aborting,
}

/// One run's place in the scheduler, alone on its cache line: neighbouring
/// runs run on different workers, and with their states packed five to a line every
/// status change waited for the line to come back from the other core.
#[repr(align(64))]
struct TxSchedule {
    status: Mutex<(Incarnation, Status)>,
    dependents: Mutex<Vec<RunIndex>>,
}

/// The collaborative scheduler of Block-STM (the paper's Algorithm 4 and 5).
struct Scheduler {
    n: usize,
    execution_idx: AtomicUsize,
    validation_idx: AtomicUsize,
    /// Bumped whenever an index is lowered, so `check_done` can tell it raced with one.
    decrease_cnt: AtomicUsize,
    /// Tasks handed out and not finished.
    active: AtomicUsize,
    done: AtomicBool,
    /// Each run's status and the runs waiting for its next execution.
    slots: Vec<TxSchedule>,
}

impl Scheduler {
    fn new(n: usize) -> Self {
        Self {
            n,
            execution_idx: AtomicUsize::new(0),
            validation_idx: AtomicUsize::new(0),
            decrease_cnt: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            done: AtomicBool::new(n == 0),
            slots: (0..n)
                .map(|_| TxSchedule {
                    status: Mutex::new((0, Status::ReadyToExecute)),
                    dependents: Mutex::new(Vec::new()),
                })
                .collect(),
        }
    }

    fn done(&self) -> bool {
        self.done.load(SeqCst)
    }

    /// Stops every worker (a node-local failure ends the block's execution).
    fn halt(&self) {
        self.done.store(true, SeqCst);
    }

    fn check_done(&self) {
        let observed = self.decrease_cnt.load(SeqCst);
        let exec = self.execution_idx.load(SeqCst);
        let val = self.validation_idx.load(SeqCst);
        let active = self.active.load(SeqCst);
        if exec.min(val) >= self.n && active == 0 && observed == self.decrease_cnt.load(SeqCst) {
            self.done.store(true, SeqCst);
        }
    }

    fn decrease_execution_idx(&self, to: RunIndex) {
        self.execution_idx.fetch_min(to, SeqCst);
        self.decrease_cnt.fetch_add(1, SeqCst);
    }

    fn decrease_validation_idx(&self, to: RunIndex) {
        self.validation_idx.fetch_min(to, SeqCst);
        self.decrease_cnt.fetch_add(1, SeqCst);
    }

    /// Ready → executing; the incarnation to run.
    fn try_incarnate(&self, i: RunIndex) -> Option<Incarnation> {
        if i >= self.n {
            return None;
        }
        let mut s = lock(&self.slots[i].status);
        if s.1 == Status::ReadyToExecute {
            s.1 = Status::Executing;
            Some(s.0)
        } else {
            None
        }
    }

    fn next_version_to_execute(&self) -> Option<Task> {
        if self.execution_idx.load(SeqCst) >= self.n {
            self.check_done();
            return None;
        }
        self.active.fetch_add(1, SeqCst);
        let i = self.execution_idx.fetch_add(1, SeqCst);
        match self.try_incarnate(i) {
            Some(inc) => Some(Task::Execute(i, inc)),
            None => {
                self.active.fetch_sub(1, SeqCst);
                None
            }
        }
    }

    fn next_version_to_validate(&self) -> Option<Task> {
        if self.validation_idx.load(SeqCst) >= self.n {
            self.check_done();
            return None;
        }
        self.active.fetch_add(1, SeqCst);
        let i = self.validation_idx.fetch_add(1, SeqCst);
        if i < self.n {
            let (inc, status) = *lock(&self.slots[i].status);
            if status == Status::Executed {
                return Some(Task::Validate(i, inc));
            }
        }
        self.active.fetch_sub(1, SeqCst);
        None
    }

    fn next_task(&self) -> Option<Task> {
        if self.validation_idx.load(SeqCst) < self.execution_idx.load(SeqCst) {
            self.next_version_to_validate()
        } else {
            self.next_version_to_execute()
        }
    }

    /// `i` read an estimate of `blocking`: park it until `blocking` is executed again. False
    /// when `blocking` has been executed meanwhile (then `i` runs again at once).
    fn add_dependency(&self, i: RunIndex, blocking: RunIndex) -> bool {
        {
            let mut deps = lock(&self.slots[blocking].dependents);
            if lock(&self.slots[blocking].status).1 == Status::Executed {
                return false;
            }
            lock(&self.slots[i].status).1 = Status::Aborting;
            deps.push(i);
        }
        self.active.fetch_sub(1, SeqCst);
        true
    }

    /// Aborting(k) → ReadyToExecute(k + 1).
    fn set_ready(&self, i: RunIndex) {
        let mut s = lock(&self.slots[i].status);
        debug_assert_eq!(s.1, Status::Aborting);
        *s = (s.0 + 1, Status::ReadyToExecute);
    }

    fn finish_execution(&self, i: RunIndex, inc: Incarnation, wrote_new_key: bool) -> Option<Task> {
        lock(&self.slots[i].status).1 = Status::Executed;
        let waiting = std::mem::take(&mut *lock(&self.slots[i].dependents));
        if let Some(&lowest) = waiting.iter().min() {
            for &d in &waiting {
                self.set_ready(d);
            }
            self.decrease_execution_idx(lowest);
        }
        if self.validation_idx.load(SeqCst) > i {
            if wrote_new_key {
                // Everything above may have read around the new key: validate it all again.
                self.decrease_validation_idx(i);
            } else {
                return Some(Task::Validate(i, inc));
            }
        }
        self.active.fetch_sub(1, SeqCst);
        None
    }

    /// Executed(inc) → Aborting(inc), unless another validation got there first.
    fn try_validation_abort(&self, i: RunIndex, inc: Incarnation) -> bool {
        let mut s = lock(&self.slots[i].status);
        if *s == (inc, Status::Executed) {
            s.1 = Status::Aborting;
            true
        } else {
            false
        }
    }

    fn finish_validation(&self, i: RunIndex, aborted: bool) -> Option<Task> {
        if aborted {
            self.set_ready(i);
            self.decrease_validation_idx(i + 1);
            if self.execution_idx.load(SeqCst) > i
                && let Some(inc) = self.try_incarnate(i)
            {
                return Some(Task::Execute(i, inc));
            }
        }
        self.active.fetch_sub(1, SeqCst);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key `i` of the merge test: a spread of shapes that stress the range cuts, which fall on
    /// eight-byte prefixes: many keys sharing their first eight bytes, keys shorter than eight
    /// bytes, keys that are prefixes of other keys, and keys that differ only in byte 8.
    fn key(i: u32) -> Vec<u8> {
        let h = blake3::hash(&i.to_le_bytes());
        let r = h.as_bytes();
        match i % 5 {
            0 => [b"acct/".as_slice(), &r[..32]].concat(),
            1 => [b"samehead".as_slice(), &r[..(r[0] % 4) as usize]].concat(),
            2 => r[..1 + (r[1] % 7) as usize].to_vec(),
            3 => [b"fees/".as_slice(), &r[..3]].concat(),
            _ => [b"acct/".as_slice(), &r[..3], &[r[4] % 2]].concat(),
        }
    }

    /// The pool's threads are pinned one to a core exactly when the process may run on as
    /// many CPUs as the pool has threads (and pinning is not turned off); otherwise each keeps
    /// the CPUs the process may use.
    #[test]
    fn the_pools_threads_are_pinned_one_to_a_core_when_the_cores_are_theirs() {
        let allowed = allowed_cpus().expect("Linux says which CPUs a thread may use");
        let each: Vec<Vec<usize>> =
            pool().broadcast(|_| allowed_cpus().expect("and it says so on a pool thread"));
        let off = std::env::var_os("VEXIDUS_PIN_WORKERS").is_some_and(|v| v == "0");
        match pinned_cores() {
            Some(cores) => {
                assert!(!off, "pinned although VEXIDUS_PIN_WORKERS=0");
                assert_eq!(cores, allowed.as_slice());
                let one_each: Vec<Vec<usize>> = cores.iter().map(|&cpu| vec![cpu]).collect();
                assert_eq!(each, one_each);
            }
            None => {
                assert!(
                    off || allowed.len() != default_threads(),
                    "not pinned although the process has {} CPUs for {} threads",
                    allowed.len(),
                    default_threads()
                );
                assert!(each.iter().all(|cpus| *cpus == allowed), "{each:?}");
            }
        }
    }

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

    #[test]
    fn final_changes_hold_each_keys_last_write_once() {
        const PARTS: usize = 3;
        let parts: Vec<Vec<Shard>> = (0..PARTS)
            .map(|_| {
                (0..SHARDS)
                    .map(|_| Shard(RwLock::new(ShardMap::default())))
                    .collect()
            })
            .collect();
        let put = |part: usize, k: &[u8], writer: RunIndex, cell: Cell| {
            let hash = key_hash(k);
            write_lock(&parts[part][shard_of(hash)].0)
                .entry(hash, k.to_vec())
                .insert(writer, cell);
        };
        let mut expected = Changes::new();
        let mut in_two_parts = 0;
        for i in 0..6_000u32 {
            let k = key(i);
            let value = (i % 7 != 0).then(|| i.to_le_bytes().to_vec());
            // Later writers of a key come later (the key shapes repeat), each on some worker;
            // the highest writer's value is the change, whichever part holds it.
            let writer = 2 * i as RunIndex;
            let part = blake3::hash(&i.to_be_bytes()).as_bytes()[0] as usize % PARTS;
            if i % 11 == 0 {
                // Caught between parts (`record` moving a re-executed transaction): the
                // previous incarnation's estimate in one part, the new write in another.
                put((part + 1) % PARTS, &k, writer, Cell::Estimate(0));
                put(part, &k, writer, Cell::Written(1, value.clone()));
                in_two_parts += 1;
            } else {
                put(part, &k, writer, Cell::Written(0, value.clone()));
            }
            expected.insert(k, value);
        }
        // A key whose last writer left only an estimate has no final value, even with an older
        // write in another part.
        let stray = b"estimate".to_vec();
        put(0, &stray, 1, Cell::Written(0, Some(b"old".to_vec())));
        put(1, &stray, 3, Cell::Estimate(0));
        // A key whose only writer ran again without writing it: no cells left, no change.
        let emptied = b"emptied".to_vec();
        put(2, &emptied, 5, Cell::Written(0, Some(b"gone".to_vec())));
        let hash = key_hash(&emptied);
        write_lock(&parts[2][shard_of(hash)].0)
            .get_mut(hash, &emptied)
            .expect("just put")
            .remove(5);
        assert!(expected.len() > 3_000, "the keys overlap too much");
        assert!(in_two_parts > 500);
        let flat: Vec<Change> = final_ranges(parts).into_iter().flatten().collect();
        assert!(
            flat.windows(2).all(|w| w[0].0 < w[1].0),
            "the ranges' changes do not follow one another in key order"
        );
        let got: Changes = flat.into_iter().collect();
        assert_eq!(got.len(), expected.len());
        assert!(
            got == expected,
            "the merged changes differ from each key's last write"
        );
    }
}
