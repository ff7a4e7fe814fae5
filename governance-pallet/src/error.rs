//! Every way a governance operation can be refused. Each variant is one rule; its text is what
//! the receipt and the CLI show.

use alloc::string::String;
use core::fmt;
use vexidus_runtime_api::Address;

/// A refused governance operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GovError {
    /// Only the upgrade authority may do this.
    NotAuthority,
    /// Plan names are not empty.
    NameEmpty,
    /// Plan names are at most 64 bytes.
    NameTooLong {
        /// The name's length.
        len: usize,
    },
    /// Plan names use `[a-z0-9._-]` only.
    NameCharacter {
        /// The first character outside the set.
        found: char,
    },
    /// Plan names do not start with `.`.
    NameLeadingDot,
    /// The name was used before.
    NameTaken {
        /// The name.
        name: String,
    },
    /// The target height is too close.
    LeadTooShort {
        /// Requested height.
        height: u64,
        /// Earliest allowed height.
        earliest: u64,
    },
    /// Another plan is active.
    PlanActive {
        /// The active plan.
        name: String,
    },
    /// A binary target needs a URL.
    MissingBinaryUrl,
    /// A binary target's checksum is a 32-byte SHA-256 digest.
    BadChecksum {
        /// Bytes given.
        len: usize,
    },
    /// A binary target's signature is 64 bytes.
    BadSignature {
        /// Bytes given.
        len: usize,
    },
    /// The runtime blob is over `max_runtime_code_bytes`.
    RuntimeTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: u32,
    },
    /// The host's static checks refused the blob.
    RuntimeRejected {
        /// The host's reason.
        reason: String,
    },
    /// The blob belongs to another runtime family.
    SpecNameMismatch {
        /// This chain's spec name.
        expected: String,
        /// The blob's.
        found: String,
    },
    /// The blob's `spec_version` is not above the current one.
    SpecVersionNotHigher {
        /// Current.
        current: u32,
        /// The blob's.
        found: u32,
    },
    /// No active plan has that name.
    UnknownPlan {
        /// The name.
        name: String,
    },
    /// The plan already ended.
    PlanFinished {
        /// The name.
        name: String,
        /// How it ended.
        status: &'static str,
    },
    /// Votes exist in `full` mode only.
    NotFullMode,
    /// The plan is already approved; no vote is needed.
    AlreadyApproved {
        /// The name.
        name: String,
    },
    /// The vote is over.
    VoteEnded {
        /// Last height a vote was accepted.
        ended_at: u64,
    },
    /// Only validators vote.
    NotAValidator {
        /// The sender.
        sender: Address,
    },
    /// Jailed validators do not vote.
    Jailed {
        /// Jailed until.
        until: u64,
    },
    /// The validator was not active when the vote opened, so it has no weight in it.
    NotInSnapshot,
    /// A validator votes once.
    AlreadyVoted,
    /// A proposal or multisig rule.
    Proposal(ProposalError),
}

impl From<ProposalError> for GovError {
    fn from(e: ProposalError) -> Self {
        GovError::Proposal(e)
    }
}

impl fmt::Display for GovError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GovError::NotAuthority => {
                f.write_str("only the upgrade authority may schedule or cancel upgrades")
            }
            GovError::NameEmpty => f.write_str("upgrade name is empty"),
            GovError::NameTooLong { len } => {
                write!(f, "upgrade name is {len} bytes; the limit is 64")
            }
            GovError::NameCharacter { found } => {
                write!(
                    f,
                    "upgrade name contains {found:?}; only a-z, 0-9, '.', '_' and '-' are allowed"
                )
            }
            GovError::NameLeadingDot => f.write_str("upgrade name must not start with '.'"),
            GovError::NameTaken { name } => write!(
                f,
                "upgrade name {name:?} was used before; names are never reused"
            ),
            GovError::LeadTooShort { height, earliest } => write!(
                f,
                "target height {height} is too soon: upgrade_min_lead_blocks requires at least {earliest}"
            ),
            GovError::PlanActive { name } => write!(
                f,
                "another upgrade plan ({name:?}) is active; cancel it first"
            ),
            GovError::MissingBinaryUrl => f.write_str("a binary upgrade needs a binary URL"),
            GovError::BadChecksum { len } => write!(
                f,
                "checksum must be a 32-byte SHA-256 digest, got {len} bytes"
            ),
            GovError::BadSignature { len } => {
                write!(f, "binary signature must be 64 bytes, got {len} bytes")
            }
            GovError::RuntimeTooLarge { size, limit } => {
                write!(
                    f,
                    "runtime blob is {size} bytes, over max_runtime_code_bytes ({limit})"
                )
            }
            GovError::RuntimeRejected { reason } => write!(f, "runtime blob refused: {reason}"),
            GovError::SpecNameMismatch { expected, found } => {
                write!(
                    f,
                    "runtime spec_name is {found:?}; this chain runs {expected:?}"
                )
            }
            GovError::SpecVersionNotHigher { current, found } => write!(
                f,
                "runtime spec_version {found} is not higher than the current spec_version {current}"
            ),
            GovError::UnknownPlan { name } => write!(f, "no upgrade plan named {name:?}"),
            GovError::PlanFinished { name, status } => {
                write!(f, "upgrade plan {name:?} is already {status}")
            }
            GovError::NotFullMode => {
                f.write_str("upgrade votes are only taken in full governance mode")
            }
            GovError::AlreadyApproved { name } => {
                write!(f, "upgrade plan {name:?} is already approved")
            }
            GovError::VoteEnded { ended_at } => write!(f, "the vote ended at height {ended_at}"),
            GovError::NotAValidator { sender } => write!(f, "{sender} is not a validator"),
            GovError::Jailed { until } => write!(
                f,
                "jailed validators cannot vote (jailed until height {until})"
            ),
            GovError::NotInSnapshot => f.write_str(
                "validator was not active when the plan was scheduled, so it has no vote",
            ),
            GovError::AlreadyVoted => f.write_str("validator already voted on this"),
            GovError::Proposal(e) => write!(f, "{e}"),
        }
    }
}

/// Refusals of parameter governance and multisig operations (60-67).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposalError {
    /// Only accounts with stake may propose.
    NoStake,
    /// A parameter value outside its bounds.
    OutOfBounds {
        /// The parameter.
        key: vexidus_runtime_api::transaction::ParamKey,
        /// The value.
        value: u128,
        /// Lowest allowed.
        min: u128,
        /// Highest allowed.
        max: u128,
    },
    /// A parameter value within its bounds that contradicts the other parameters.
    Inconsistent {
        /// The parameter.
        key: vexidus_runtime_api::transaction::ParamKey,
        /// The value.
        value: u128,
        /// The contradiction.
        why: String,
    },
    /// No proposal with that id.
    UnknownProposal {
        /// The id.
        id: u64,
    },
    /// Already executed.
    AlreadyExecuted {
        /// The id.
        id: u64,
    },
    /// Withdrawn by its proposer.
    Cancelled {
        /// The id.
        id: u64,
    },
    /// Not passed (yet).
    NotPassed {
        /// The id.
        id: u64,
        /// Why, in words.
        why: String,
    },
    /// Only the proposer may cancel.
    NotProposer,
    /// A multisig needs 1 to 16 distinct signers and a threshold between 1 and their number.
    BadMultiSig {
        /// What is wrong.
        why: &'static str,
    },
    /// No multisig account at that address.
    UnknownMultiSig {
        /// The address.
        multisig: Address,
    },
    /// The sender is not one of the account's signers.
    NotASigner,
    /// No pending operation with that id.
    UnknownMultiSigOp {
        /// The id.
        id: u64,
    },
    /// The signer already approved.
    AlreadyApproved,
    /// The signer has no approval to withdraw.
    NotApproved,
    /// A multisig account cannot send this operation.
    NotForMultiSig {
        /// The operation.
        op: &'static str,
    },
}

impl fmt::Display for ProposalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposalError::NoStake => f.write_str(
                "only accounts with stake (a validator or a delegator) may create proposals",
            ),
            ProposalError::OutOfBounds {
                key,
                value,
                min,
                max,
            } => {
                write!(
                    f,
                    "{} = {value} is out of bounds: allowed {min} to {max}",
                    key.as_str()
                )
            }
            ProposalError::Inconsistent { key, value, why } => {
                write!(f, "{} = {value} is refused: {why}", key.as_str())
            }
            ProposalError::UnknownProposal { id } => write!(f, "no proposal {id}"),
            ProposalError::AlreadyExecuted { id } => {
                write!(f, "proposal {id} was already executed")
            }
            ProposalError::Cancelled { id } => write!(f, "proposal {id} was cancelled"),
            ProposalError::NotPassed { id, why } => {
                write!(f, "proposal {id} has not passed: {why}")
            }
            ProposalError::NotProposer => f.write_str("only the proposer may cancel a proposal"),
            ProposalError::BadMultiSig { why } => write!(f, "invalid multisig: {why}"),
            ProposalError::UnknownMultiSig { multisig } => {
                write!(f, "no multisig account at {multisig}")
            }
            ProposalError::NotASigner => {
                f.write_str("sender is not a signer of this multisig account")
            }
            ProposalError::UnknownMultiSigOp { id } => {
                write!(f, "no pending multisig operation {id}")
            }
            ProposalError::AlreadyApproved => f.write_str("signer already approved this operation"),
            ProposalError::NotApproved => f.write_str("signer has not approved this operation"),
            ProposalError::NotForMultiSig { op } => {
                write!(f, "a multisig account cannot send {op}")
            }
        }
    }
}
