//! What an operation sees of its surroundings, and every way it can fail.

use alloc::vec::Vec;
use core::fmt;
use vexidus_governance::{GovError, ProposalError};
use vexidus_runtime_api::block::Event;
use vexidus_runtime_api::{Address, PublicKey};

/// Why an operation failed. Included in the receipt in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchError {
    /// Not enough spendable balance.
    InsufficientBalance {
        /// Needed.
        needed: u128,
        /// Held.
        available: u128,
    },
    /// A balance would overflow `u128`.
    Overflow,
    /// The sender is already a validator.
    AlreadyValidator,
    /// Self-stake below `min_stake`.
    StakeBelowMinimum {
        /// Offered.
        stake: u128,
        /// Required.
        min_stake: u128,
    },
    /// Commission above `max_commission_bps`.
    CommissionTooHigh {
        /// Offered.
        commission_bps: u16,
        /// Allowed.
        max: u16,
    },
    /// No validator at that address.
    UnknownValidator(Address),
    /// The sender is not a validator.
    NotAValidator,
    /// Less delegated than asked to undelegate.
    InsufficientDelegation {
        /// Asked.
        requested: u128,
        /// Bonded.
        delegated: u128,
    },
    /// Zero amount where a positive one is needed.
    ZeroAmount,
    /// Nothing to claim.
    NoRewards,
    /// The validator is not jailed.
    NotJailed,
    /// The jail period has not passed.
    StillJailed {
        /// Jailed until this height.
        until: u64,
    },
    /// The double-sign evidence does not prove an offence.
    InvalidEvidence(&'static str),
    /// This offence was punished already.
    EvidenceAlreadyUsed,
    /// A governance rule refused it.
    Governance(GovError),
}

impl From<ProposalError> for DispatchError {
    fn from(e: ProposalError) -> Self {
        DispatchError::Governance(GovError::Proposal(e))
    }
}

impl From<GovError> for DispatchError {
    fn from(e: GovError) -> Self {
        DispatchError::Governance(e)
    }
}

impl fmt::Display for DispatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DispatchError::InsufficientBalance { needed, available } => write!(
                f,
                "insufficient balance: needs {needed} nanoVXS, account holds {available} nanoVXS"
            ),
            DispatchError::Overflow => f.write_str("balance overflow"),
            DispatchError::AlreadyValidator => f.write_str("sender is already a validator"),
            DispatchError::StakeBelowMinimum { stake, min_stake } => write!(
                f,
                "stake {stake} nanoVXS is below the minimum of {min_stake} nanoVXS"
            ),
            DispatchError::CommissionTooHigh {
                commission_bps,
                max,
            } => write!(
                f,
                "commission {commission_bps} bps is above the maximum of {max} bps"
            ),
            DispatchError::UnknownValidator(a) => write!(f, "no validator at {a}"),
            DispatchError::NotAValidator => f.write_str("sender is not a validator"),
            DispatchError::InsufficientDelegation {
                requested,
                delegated,
            } => write!(
                f,
                "cannot undelegate {requested} nanoVXS: only {delegated} nanoVXS delegated"
            ),
            DispatchError::ZeroAmount => f.write_str("amount must be greater than zero"),
            DispatchError::NoRewards => f.write_str("no rewards to claim"),
            DispatchError::NotJailed => f.write_str("validator is not jailed"),
            DispatchError::StillJailed { until } => {
                write!(f, "validator is jailed until height {until}")
            }
            DispatchError::InvalidEvidence(why) => write!(f, "invalid double-sign evidence: {why}"),
            DispatchError::EvidenceAlreadyUsed => {
                f.write_str("this double-sign offence was already reported and punished")
            }
            DispatchError::Governance(e) => write!(f, "{e}"),
        }
    }
}

/// What an operation sees of its surroundings.
pub struct Context<'a> {
    /// Block height.
    pub height: u64,
    /// Sending account.
    pub sender: Address,
    /// Sending key.
    pub sender_key: &'a PublicKey,
    /// Events emitted so far by this transaction.
    pub events: &'a mut Vec<Event>,
}
