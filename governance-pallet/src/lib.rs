//! Upgrade governance (operations 46-48) and protocol-parameter governance (operations 60-67).
//!
//! The rules live in [`upgrade`] (SPEC §4) and, for proposals and multisig accounts, in the
//! modules that follow it; every refusal is a distinct [`GovError`] whose text names the rule.
//! The pallet reaches state only through [`vexidus_runtime_api::guest::Env`] and learns what it
//! needs of staking from its callers, so it does not depend on the runtime.

#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod ballot;
pub mod error;
pub mod multisig;
pub mod proposals;
pub mod upgrade;

pub use error::{GovError, ProposalError};

pub use vexidus_runtime_api::state::{PlanStatus, Proposal, UpgradePlan};
