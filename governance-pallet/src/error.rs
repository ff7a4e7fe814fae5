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
            GovError::AlreadyVoted => f.write_str("validator already voted on this plan"),
        }
    }
}
