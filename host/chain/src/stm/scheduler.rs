//! The collaborative scheduler of Block-STM: the lowest-index task first, validation
//! lowered on every abort, done when both indices are past the end and nothing runs.

use super::common::{Incarnation, RunIndex, lock};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

pub(super) enum Task {
    Execute(RunIndex, Incarnation),
    Validate(RunIndex, Incarnation),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Status {
    ReadyToExecute,
    Executing,
    Executed,
    Aborting,
}

/// One run's place in the scheduler, alone on its cache line: neighbouring
/// runs run on different workers, and with their states packed five to a line every
/// status change waited for the line to come back from the other core.
#[repr(align(64))]
pub(super) struct TxSchedule {
    pub(super) status: Mutex<(Incarnation, Status)>,
    pub(super) dependents: Mutex<Vec<RunIndex>>,
}

/// The collaborative scheduler of Block-STM (the paper's Algorithm 4 and 5).
pub(super) struct Scheduler {
    pub(super) n: usize,
    pub(super) execution_idx: AtomicUsize,
    pub(super) validation_idx: AtomicUsize,
    /// Bumped whenever an index is lowered, so `check_done` can tell it raced with one.
    pub(super) decrease_cnt: AtomicUsize,
    /// Tasks handed out and not finished.
    pub(super) active: AtomicUsize,
    pub(super) done: AtomicBool,
    /// Each run's status and the runs waiting for its next execution.
    pub(super) slots: Vec<TxSchedule>,
}

impl Scheduler {
    pub(super) fn new(n: usize) -> Self {
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

    pub(super) fn done(&self) -> bool {
        self.done.load(SeqCst)
    }

    /// Stops every worker (a node-local failure ends the block's execution).
    pub(super) fn halt(&self) {
        self.done.store(true, SeqCst);
    }

    pub(super) fn check_done(&self) {
        let observed = self.decrease_cnt.load(SeqCst);
        let exec = self.execution_idx.load(SeqCst);
        let val = self.validation_idx.load(SeqCst);
        let active = self.active.load(SeqCst);
        if exec.min(val) >= self.n && active == 0 && observed == self.decrease_cnt.load(SeqCst) {
            self.done.store(true, SeqCst);
        }
    }

    pub(super) fn decrease_execution_idx(&self, to: RunIndex) {
        self.execution_idx.fetch_min(to, SeqCst);
        self.decrease_cnt.fetch_add(1, SeqCst);
    }

    pub(super) fn decrease_validation_idx(&self, to: RunIndex) {
        self.validation_idx.fetch_min(to, SeqCst);
        self.decrease_cnt.fetch_add(1, SeqCst);
    }

    /// Ready → executing; the incarnation to run.
    pub(super) fn try_incarnate(&self, i: RunIndex) -> Option<Incarnation> {
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

    pub(super) fn next_version_to_execute(&self) -> Option<Task> {
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

    pub(super) fn next_version_to_validate(&self) -> Option<Task> {
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

    pub(super) fn next_task(&self) -> Option<Task> {
        if self.validation_idx.load(SeqCst) < self.execution_idx.load(SeqCst) {
            self.next_version_to_validate()
        } else {
            self.next_version_to_execute()
        }
    }

    /// `i` read an estimate of `blocking`: park it until `blocking` is executed again. False
    /// when `blocking` has been executed meanwhile (then `i` runs again at once).
    pub(super) fn add_dependency(&self, i: RunIndex, blocking: RunIndex) -> bool {
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
    pub(super) fn set_ready(&self, i: RunIndex) {
        let mut s = lock(&self.slots[i].status);
        debug_assert_eq!(s.1, Status::Aborting);
        *s = (s.0 + 1, Status::ReadyToExecute);
    }

    pub(super) fn finish_execution(
        &self,
        i: RunIndex,
        inc: Incarnation,
        wrote_new_key: bool,
    ) -> Option<Task> {
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
    pub(super) fn try_validation_abort(&self, i: RunIndex, inc: Incarnation) -> bool {
        let mut s = lock(&self.slots[i].status);
        if *s == (inc, Status::Executed) {
            s.1 = Status::Aborting;
            true
        } else {
            false
        }
    }

    pub(super) fn finish_validation(&self, i: RunIndex, aborted: bool) -> Option<Task> {
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
