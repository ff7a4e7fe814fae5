//! Readiness of a pending runtime upgrade: background compilation as soon as a runtime plan is
//! scheduled, and the counts of the shadow runs that execute every new block with the pending
//! runtime on a throwaway copy of state (SPEC §5). `vex_getUpgradeReadiness` shows them, so
//! validators can vote on evidence.

use std::sync::Arc;
use std::time::Duration;
use vexidus_chain::ShadowReport;
use vexidus_executor::Prototype;
use vexidus_rpc_api::{H256, ReadinessView};
use vexidus_runtime_api::Hash;

/// What this node knows of the pending runtime plan.
#[derive(Default, Debug)]
pub struct Readiness {
    /// The plan's name.
    pub plan: Option<String>,
    /// blake3 of its blob.
    pub code_hash: Option<Hash>,
    /// The compiled module, once ready.
    pub compiled: Option<Arc<Prototype>>,
    /// A compilation is running.
    pub compiling: bool,
    /// Compilation time.
    pub compile_ms: Option<u64>,
    /// Why compilation failed.
    pub compile_error: Option<String>,
    /// Blocks shadow-run.
    pub blocks_run: u64,
    /// Blocks in which the pending runtime trapped or otherwise failed.
    pub traps: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// Fuel used by the live runtime over the shadow-run blocks.
    pub live_fuel: u128,
    /// Fuel used by the pending runtime over the same blocks.
    pub shadow_fuel: u128,
    /// Live execution time over the shadow-run blocks.
    pub live_time: Duration,
    /// Shadow execution time over the same blocks.
    pub shadow_time: Duration,
}

impl Readiness {
    /// Starts tracking `plan` (forgetting any other).
    pub fn track(&mut self, plan: &str, code_hash: Hash) {
        if self.plan.as_deref() != Some(plan) || self.code_hash != Some(code_hash) {
            *self = Readiness {
                plan: Some(plan.into()),
                code_hash: Some(code_hash),
                ..Readiness::default()
            };
        }
    }

    /// Adds one block's shadow run.
    pub fn record(&mut self, r: &ShadowReport) {
        if Some(r.code_hash) != self.code_hash {
            return;
        }
        self.blocks_run += 1;
        if let Some(e) = &r.error {
            self.traps += 1;
            self.last_error = Some(format!("block {}: {e}", r.height));
        }
        self.live_fuel += r.live_fuel as u128;
        self.shadow_fuel += r.shadow_fuel as u128;
        self.live_time += r.live_time;
        self.shadow_time += r.shadow_time;
    }

    /// `vex_getUpgradeReadiness`: `None` when no runtime plan is pending.
    pub fn view(&self) -> Option<ReadinessView> {
        let plan = self.plan.clone()?;
        let ratio = |a: f64, b: f64| if b > 0.0 { Some(a / b) } else { None };
        Some(ReadinessView {
            plan,
            code_hash: self.code_hash.map(H256),
            compiled: self.compiled.is_some(),
            compiling: self.compiling,
            compile_ms: self.compile_ms,
            compile_error: self.compile_error.clone(),
            blocks_run: self.blocks_run,
            traps: self.traps,
            last_error: self.last_error.clone(),
            fuel_live: self.live_fuel,
            fuel_shadow: self.shadow_fuel,
            fuel_ratio: ratio(self.shadow_fuel as f64, self.live_fuel as f64),
            time_ratio: ratio(self.shadow_time.as_secs_f64(), self.live_time.as_secs_f64()),
        })
    }
}
