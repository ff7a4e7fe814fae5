//! A worker's loop over one block's tasks: execute a run over its view, validate a run's
//! reads, give up on a block that conflicts too much.

use super::common::{Incarnation, RunIndex, TxOutcome, classify, lock, metered, run_range};
use super::memory::{MvMemory, Ran};
use super::scheduler::{Scheduler, Task};
use super::view::View;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use vexidus_executor::{ExecError, Executor, Prototype};
use vexidus_runtime_api::abi::{self, ApplyArgs};

/// Everything the workers share for one block.
pub(super) struct Shared<'a> {
    pub(super) executor: &'a Executor,
    pub(super) runtime: &'a Prototype,
    pub(super) txs: &'a [ApplyArgs],
    /// Transactions per run.
    pub(super) run: usize,
    pub(super) fuel: u64,
    pub(super) mv: MvMemory<'a>,
    pub(super) scheduler: Scheduler,
    pub(super) failure: Mutex<Option<ExecError>>,
    /// Gave up early: the block runs one transaction after another instead.
    pub(super) abandoned: AtomicBool,
    pub(super) executions: AtomicUsize,
    pub(super) validations: AtomicUsize,
    pub(super) aborts: AtomicUsize,
    pub(super) waits: AtomicUsize,
    /// Executions that wrote a key another execution on the same worker had written.
    pub(super) shared_writes: AtomicUsize,
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
    pub(super) fn too_contended(&self) -> bool {
        let executions = self.executions.load(SeqCst);
        let conflicts = self.aborts.load(SeqCst) + self.waits.load(SeqCst);
        let shared = self.shared_writes.load(SeqCst);
        executions >= 64.max(8 * self.run)
            && (conflicts * 3 >= executions || shared * 2 >= executions)
    }

    /// A worker's loop. Once the block is too contended (checked between tasks, never while
    /// holding one): within its first eighth, everyone stops and the block runs sequentially;
    /// later, a `may_leave` worker leaves and the others finish.
    pub(super) fn work(&self, worker: usize, may_leave: bool) {
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

    pub(super) fn fail(&self, e: ExecError) {
        lock(&self.failure).get_or_insert(e);
        self.scheduler.halt();
    }

    /// The transactions of run `r`.
    pub(super) fn run_range(&self, r: RunIndex) -> std::ops::Range<usize> {
        run_range(r, self.run, self.txs.len())
    }

    /// Runs incarnation `inc` of run `r`: its transactions one after another over one view, each
    /// reading what the ones before it in the run wrote, as sequential execution would; returns
    /// the follow-up task, if any.
    pub(super) fn execute(&self, r: RunIndex, inc: Incarnation, worker: usize) -> Option<Task> {
        let range = self.run_range(r);
        loop {
            let mut view = View::new(&self.mv, r);
            let mut outcomes = Vec::with_capacity(range.len());
            for args in &self.txs[range.clone()] {
                let (outcome, fuel) = metered(self.executor.call_metered(
                    self.runtime,
                    abi::APPLY_TRANSACTION,
                    args,
                    &mut view,
                    self.fuel,
                ));
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

    pub(super) fn validate(&self, i: RunIndex, inc: Incarnation) -> Option<Task> {
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
