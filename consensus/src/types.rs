//! What consensus sees of blocks, votes and validators.

use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::BTreeMap;
use vexidus_runtime_api::{Address, Hash};

/// The consensus view of a block: the host has verified its signature and executed it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockMeta {
    /// Block hash.
    pub hash: Hash,
    /// Parent hash.
    pub parent: Hash,
    /// Height.
    pub height: u64,
    /// The validator that signed it.
    pub proposer: Address,
    /// The proposer's timestamp (ms since the Unix epoch), from the header.
    pub timestamp_ms: u64,
    /// Whether the block lies in an upgrade grace period (from chain state): no missed-block
    /// accounting, no leader skip.
    pub in_grace: bool,
}

/// The two stages of a vote (SPEC §10, two-stage confirmation): the type the wire and the
/// runtime use.
pub use vexidus_runtime_api::vote::VoteStage as Stage;

/// A validator's vote. The host checks the signature before consensus sees it; consensus keeps
/// it as opaque bytes so evidence can carry it on chain.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    /// Which stage.
    pub stage: Stage,
    /// Height of the block voted for.
    pub height: u64,
    /// The block.
    pub block: Hash,
    /// The voter.
    pub voter: Address,
    /// The voter's signature (checked by the host).
    pub signature: Vec<u8>,
}

/// Proof that a validator signed two conflicting things at one height.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Evidence {
    /// Two votes of one stage at one height for different blocks.
    DoubleVote(Vote, Vote),
    /// Two different blocks at one height by one proposer.
    DoubleProposal {
        /// The proposer.
        proposer: Address,
        /// The height.
        height: u64,
        /// One block.
        first: Hash,
        /// The other.
        second: Hash,
    },
}

impl Evidence {
    /// The validator the evidence convicts.
    pub fn offender(&self) -> Address {
        match self {
            Evidence::DoubleVote(v, _) => v.voter,
            Evidence::DoubleProposal { proposer, .. } => *proposer,
        }
    }
}

/// The active validators and their stakes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValidatorSet {
    /// Stake by validator, in address order.
    pub members: BTreeMap<Address, u128>,
}

impl ValidatorSet {
    /// A set from (validator, stake) pairs.
    pub fn new(members: impl IntoIterator<Item = (Address, u128)>) -> Self {
        Self {
            members: members.into_iter().collect(),
        }
    }

    /// Total stake.
    pub fn total(&self) -> u128 {
        self.members.values().sum()
    }

    /// Stake of one validator (0 for a non-member).
    pub fn stake(&self, v: &Address) -> u128 {
        self.members.get(v).copied().unwrap_or(0)
    }

    /// Whether `stake` is more than 2/3 of the total.
    #[cfg(not(feature = "deliberate-bug-half-quorum"))]
    pub fn is_supermajority(&self, stake: u128) -> bool {
        stake.saturating_mul(3) > self.total().saturating_mul(2)
    }

    /// A deliberately wrong quorum (more than 1/2), to show that the simulation catches it:
    /// `cargo test -p vexidus-consensus --features deliberate-bug-half-quorum`.
    #[cfg(feature = "deliberate-bug-half-quorum")]
    pub fn is_supermajority(&self, stake: u128) -> bool {
        stake.saturating_mul(2) > self.total()
    }
}
