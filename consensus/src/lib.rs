//! HyperSync consensus (SPEC §10) as a deterministic state machine: events in (a block, a
//! vote, the passing of time), actions out (produce, vote, new head, finalize, evidence,
//! request a block). Time is an input and every collection is ordered, so the same events give
//! the same actions on every machine; the network and storage live in the host.
//!
//! - [`schedule`]: leader slots of five blocks, the stake-weighted draw, failover delays,
//!   leader skip.
//! - [`forkdb`]: blocks above the last irreversible block, fork choice, the schedule rule
//!   (which producer may come when, from the parent's timestamp), and the missed-block record
//!   each block implies (suspended in upgrade grace periods).
//! - [`machine`]: prevotes, precommits, locks, two-stage finality, equivocation evidence.

#![forbid(unsafe_code)]

pub mod forkdb;
pub mod machine;
pub mod schedule;
pub mod types;

pub use machine::{Action, Config, Consensus, Event, SafetyState};
pub use types::{BlockMeta, Evidence, Stage, ValidatorSet, Vote};
