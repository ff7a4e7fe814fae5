//! What every part of Block-STM speaks of: runs and their incarnations, keys, outcomes,
//! and locks that outlive a panicked holder.

use smallvec::SmallVec;
use std::sync::{Mutex, RwLock};
use vexidus_executor::ExecError;
use vexidus_runtime_api::Receipt;
use vexidus_runtime_api::abi::InvalidTransaction;

/// One key's final value (`None`: deleted).
pub(super) type Change = (Vec<u8>, Option<Vec<u8>>);
/// A run's position in the block: run `r` is transactions `r * len .. (r + 1) * len` (the last
/// run may be shorter).
pub(super) type RunIndex = usize;
/// How many times a run has been executed before (0 for the first execution).
pub(super) type Incarnation = u32;

/// What the final incarnation of one transaction gave.
#[derive(Debug, Clone)]
pub struct TxOutcome {
    /// The receipt, or why the runtime refused the transaction (the same text sequential
    /// execution gives).
    pub result: Result<Receipt, String>,
    /// Fuel the call used ([`vexidus_executor::Executor::call_metered`]).
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

/// A metered call's outcome and fuel, apart (a failed call used none that counts).
pub(crate) fn metered<T>(r: Result<(T, u64), ExecError>) -> (Result<T, ExecError>, u64) {
    match r {
        Ok((out, fuel)) => (Ok(out), fuel),
        Err(e) => (Err(e), 0),
    }
}

/// The transactions of run `r` of a block of `n` in runs of `run`.
pub(super) fn run_range(r: RunIndex, run: usize, n: usize) -> std::ops::Range<usize> {
    r * run..((r + 1) * run).min(n)
}

/// A key of a run's reads or writes, held inline when it is short (an account key is 37
/// bytes): no allocation per key, and no cross-thread free of one when a block's runs are
/// dropped on another thread.
pub(super) type InlineKey = SmallVec<[u8; 40]>;

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
