//! Upgrade governance (operations 46-48) and protocol-parameter governance (operations 60-67).
//!
//! This crate holds the governance state types; the rules that act on them arrive with the
//! upgrade-governance work (see `docs/architecture.md`).
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

use alloc::{string::String, vec::Vec};
use parity_scale_codec::{Decode, Encode};
use vexidus_runtime_api::transaction::{ProposalKind, UpgradeTarget};
use vexidus_runtime_api::{Address, Hash};

/// Where an upgrade plan stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum PlanStatus {
    /// Waiting for votes (`full` mode).
    #[codec(index = 0)]
    Voting,
    /// Approved; waits for its height.
    #[codec(index = 1)]
    Approved,
    /// Carried out at its height.
    #[codec(index = 2)]
    Executed,
    /// Cancelled by the authority.
    #[codec(index = 3)]
    Cancelled,
    /// Not approved in time.
    #[codec(index = 4)]
    Expired,
    /// A runtime upgrade whose migration failed.
    #[codec(index = 5)]
    Aborted,
}

/// An upgrade plan (operation 46).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct UpgradePlan {
    /// Unique name.
    pub name: String,
    /// Target height.
    pub height: u64,
    /// Release notes.
    pub info_url: String,
    /// What is upgraded. For runtime targets the code is kept under its own key and this holds
    /// an empty `code`; see `code_hash`.
    pub target: UpgradeTarget,
    /// blake3 of the runtime code, for runtime targets.
    pub code_hash: Option<Hash>,
    /// Height it was scheduled at.
    pub scheduled_at: u64,
    /// Status.
    pub status: PlanStatus,
    /// Stake snapshot taken at scheduling: (validator, weight), sorted by address.
    pub snapshot: Vec<(Address, u128)>,
    /// Votes cast: (validator, approve), sorted by address.
    pub votes: Vec<(Address, bool)>,
}

/// A parameter-governance proposal (operation 60).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Proposal {
    /// Id, assigned in order from 0.
    pub id: u64,
    /// Who created it.
    pub proposer: Address,
    /// What it does.
    pub kind: ProposalKind,
    /// Height it was created at.
    pub created_at: u64,
    /// Votes cast: (validator, approve), sorted by address.
    pub votes: Vec<(Address, bool)>,
    /// Whether it was executed.
    pub executed: bool,
    /// Whether its proposer cancelled it.
    pub cancelled: bool,
}
