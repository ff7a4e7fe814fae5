//! The normative host⇄runtime ABI.
//!
//! # Calling convention
//!
//! Every entry point the runtime exports has the WebAssembly signature
//! `(i32 ptr, i32 len) -> i64`. The argument is the SCALE encoding of the entry point's input
//! type, placed by the host in guest memory obtained from [`ALLOC`]. The result is the SCALE
//! encoding of the output type, returned as a packed pointer/length (see [`pack`]): the low 32
//! bits are the pointer, the high 32 bits the length. Every call starts from the state of a fresh
//! instance (the host may reuse an instance, restored between calls), so the guest never needs to
//! free anything and nothing carries from one call to the next.
//!
//! | export | input | output |
//! | --- | --- | --- |
//! | [`GENESIS_BUILD`] | [`GenesisConfig`](crate::GenesisConfig) | `Result<(), String>` |
//! | [`BEGIN_BLOCK`] | [`BlockContext`] | `Result<BeginBlockOutcome, String>` |
//! | [`APPLY_TRANSACTION`] | [`ApplyArgs`] | `Result<Receipt, InvalidTransaction>` |
//! | [`END_BLOCK`] | [`BlockContext`] | `Result<EndBlockOutcome, String>` |
//! | [`VALIDATE_TRANSACTION`] | [`ValidateArgs`] | `Result<ValidTransaction, InvalidTransaction>` |
//! | [`QUERY`] | [`Query`] | `Result<QueryResponse, String>` |
//! | [`MIGRATE`] | [`MigrateArgs`] | `Result<(), String>` |
//!
//! The runtime also exports its linear memory as [`MEMORY`] and an allocator
//! [`ALLOC`]`(i32 len) -> i32`.
//!
//! # Host functions
//!
//! Imported from the module [`HOST_MODULE`]; every name carries a version suffix and a name's
//! meaning never changes. The host writes results into buffers the guest supplies; it never
//! allocates inside guest memory. There is no clock, no randomness and no I/O: execution is a
//! pure function of (code, state, arguments).
//!
//! | import | signature | meaning |
//! | --- | --- | --- |
//! | `storage_get_v1` | `(key_ptr, key_len, out_ptr, out_cap: i32) -> i64` | `-1` if absent, else the value's length; the value is copied to `out` only if it fits |
//! | `storage_set_v1` | `(key_ptr, key_len, val_ptr, val_len: i32)` | write |
//! | `storage_remove_v1` | `(key_ptr, key_len: i32)` | delete |
//! | `storage_next_key_v1` | `(key_ptr, key_len, out_ptr, out_cap: i32) -> i64` | the next key strictly after `key`, same convention as `storage_get_v1` |
//! | `blake3_v1` | `(ptr, len, out_ptr: i32)` | 32-byte blake3 digest |
//! | `sha256_v1` | `(ptr, len, out_ptr: i32)` | 32-byte SHA-256 digest |
//! | `ed25519_verify_v1` | `(msg_ptr, msg_len, sig_ptr, pk_ptr: i32) -> i32` | 1 if the 64-byte signature by the 32-byte key is valid (ZIP-215), else 0 |
//! | `log_v1` | `(level, ptr, len: i32)` | UTF-8 log line; level 0 error … 4 trace |
//! | `runtime_check_v1` | `(code_ptr, code_len, out_ptr, out_cap: i32) -> i64` | the host's static checks of a runtime blob (valid wasm with the host's features, version section, supported ABI, known imports, every export); writes SCALE `Result<RuntimeVersion, String>` like `storage_get_v1` |
//! | `block_total_add_v1` | `(name_ptr, name_len, amount_ptr: i32)` | adds the 16-byte little-endian `u128` at `amount` to the block total `name` (at most [`MAX_TOTAL_NAME`] bytes), saturating |
//! | `block_total_v1` | `(name_ptr, name_len, out_ptr: i32)` | writes the block total `name` as 16 bytes little-endian; in [`END_BLOCK`] only, anywhere else the call traps |
//!
//! ## Block totals
//!
//! A block total is a sum that lives for one block and is not state: every name starts the block
//! at zero, `begin_block`, each included transaction and `end_block` add to it, and `end_block`
//! reads what they added up to. A refused transaction's additions are dropped with its writes,
//! but the guest's own write cache ([`Overlay`](crate::guest::Overlay)) holds additions like
//! writes, so an operation list that fails adds nothing either. They exist for sums that every
//! transaction adds to and only the end of the block reads — the block's fees, paid to the
//! proposer at the end: as state, such a sum would be a key every transaction writes, and no two
//! transactions could execute in parallel. Additions commute (saturating at `u128::MAX`, which
//! an unsigned sum reaches in any order or not at all), so a host executing transactions in
//! parallel adds them up in any order; a running sum cannot be read mid-block for the same
//! reason (it would depend on the order), which is why reading is for `end_block` alone.
//!
//! # Version
//!
//! A blob carries its [`RuntimeVersion`] SCALE-encoded in a custom section named
//! [`VERSION_SECTION`], so the host can read it without executing anything. The host refuses a
//! blob whose `abi_version` is not in its supported list, that lacks an export above, or that
//! imports anything not listed above.

use crate::block::Receipt;
use crate::primitives::{Address, Hash, PublicKey};
use crate::state::{AccountInfo, GovernanceSettings, Parameters, RuntimeVersion, ValidatorInfo};
use crate::transaction::SignedTransaction;
use alloc::{string::String, vec::Vec};
use core::fmt;
use parity_scale_codec::{Decode, Encode};

/// The ABI version this crate describes.
pub const ABI_VERSION: u32 = 1;

/// The import module every host function lives in.
pub const HOST_MODULE: &str = "vexidus";
/// The custom section holding the SCALE-encoded [`RuntimeVersion`].
pub const VERSION_SECTION: &str = "vexidus_runtime_version";
/// Storage key of the runtime blob.
pub const CODE_KEY: &[u8] = b":code";

/// Exported linear memory.
pub const MEMORY: &str = "memory";
/// `(len: i32) -> i32`: allocate `len` bytes of guest memory for an input.
pub const ALLOC: &str = "vex_alloc";
/// Builds genesis state.
pub const GENESIS_BUILD: &str = "vex_genesis_build";
/// Runs before the block's transactions.
pub const BEGIN_BLOCK: &str = "vex_begin_block";
/// Applies one transaction.
pub const APPLY_TRANSACTION: &str = "vex_apply_transaction";
/// Runs after the block's transactions.
pub const END_BLOCK: &str = "vex_end_block";
/// Checks a transaction for the pool without changing state.
pub const VALIDATE_TRANSACTION: &str = "vex_validate_transaction";
/// Read-only queries.
pub const QUERY: &str = "vex_query";
/// The on-upgrade migration of a new runtime.
pub const MIGRATE: &str = "vex_migrate";

/// Every entry point a blob must export besides [`MEMORY`] and [`ALLOC`].
pub const ENTRY_POINTS: &[&str] = &[
    GENESIS_BUILD,
    BEGIN_BLOCK,
    APPLY_TRANSACTION,
    END_BLOCK,
    VALIDATE_TRANSACTION,
    QUERY,
    MIGRATE,
];

/// A host function: its import name and its WebAssembly signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFunction {
    /// Versioned import name.
    pub name: &'static str,
    /// Number of `i32` parameters.
    pub params: usize,
    /// Result type, if any.
    pub result: Option<WasmType>,
}

/// The value types used by the ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasmType {
    /// `i32`
    I32,
    /// `i64`
    I64,
}

/// Every host function of ABI version 1.
pub const HOST_FUNCTIONS_V1: &[HostFunction] = &[
    HostFunction {
        name: "storage_get_v1",
        params: 4,
        result: Some(WasmType::I64),
    },
    HostFunction {
        name: "storage_set_v1",
        params: 4,
        result: None,
    },
    HostFunction {
        name: "storage_remove_v1",
        params: 2,
        result: None,
    },
    HostFunction {
        name: "storage_next_key_v1",
        params: 4,
        result: Some(WasmType::I64),
    },
    HostFunction {
        name: "blake3_v1",
        params: 3,
        result: None,
    },
    HostFunction {
        name: "sha256_v1",
        params: 3,
        result: None,
    },
    HostFunction {
        name: "ed25519_verify_v1",
        params: 4,
        result: Some(WasmType::I32),
    },
    HostFunction {
        name: "log_v1",
        params: 3,
        result: None,
    },
    HostFunction {
        name: "runtime_check_v1",
        params: 4,
        result: Some(WasmType::I64),
    },
    HostFunction {
        name: "block_total_add_v1",
        params: 3,
        result: None,
    },
    HostFunction {
        name: "block_total_v1",
        params: 3,
        result: None,
    },
];

/// The longest name of a block total, in bytes.
pub const MAX_TOTAL_NAME: usize = 64;

/// Packs a guest pointer and length into the `i64` an entry point returns.
pub const fn pack(ptr: u32, len: u32) -> u64 {
    (ptr as u64) | ((len as u64) << 32)
}

/// Splits a packed result into `(ptr, len)`.
pub const fn unpack(packed: u64) -> (u32, u32) {
    (packed as u32, (packed >> 32) as u32)
}

/// Length of the version section for a `spec_name` of `name_len` bytes (< 64).
pub const fn version_section_len(name_len: usize) -> usize {
    1 + name_len + 12
}

/// SCALE-encodes a [`RuntimeVersion`] at compile time, for the custom section. `N` must be
/// [`version_section_len`]`(name.len())` and the name shorter than 64 bytes (one-byte compact
/// length); both are checked at compile time when used in a `static`.
pub const fn encode_version_section<const N: usize>(
    name: &str,
    spec_version: u32,
    impl_version: u32,
    abi_version: u32,
) -> [u8; N] {
    let name = name.as_bytes();
    assert!(name.len() < 64, "spec_name must be shorter than 64 bytes");
    assert!(N == version_section_len(name.len()), "wrong section length");
    let mut out = [0u8; N];
    out[0] = (name.len() as u8) << 2;
    let mut i = 0;
    while i < name.len() {
        out[1 + i] = name[i];
        i += 1;
    }
    let mut at = 1 + name.len();
    let words = [spec_version, impl_version, abi_version];
    let mut w = 0;
    while w < 3 {
        let bytes = words[w].to_le_bytes();
        let mut j = 0;
        while j < 4 {
            out[at + j] = bytes[j];
            j += 1;
        }
        at += 4;
        w += 1;
    }
    out
}

/// The block being executed, as the runtime sees it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct BlockContext {
    /// Height of the block.
    pub height: u64,
    /// Hash of its parent.
    pub parent_hash: Hash,
    /// The proposer, who receives 80% of fees.
    pub proposer: PublicKey,
    /// Upgrade names this host binary implements (for binary-upgrade plans).
    pub implemented_upgrades: Vec<String>,
}

/// Storage key of the migration the host must run first in the next block, set by the runtime
/// that enacts a runtime upgrade. Value: SCALE [`PendingMigration`].
pub const PENDING_MIGRATION_KEY: &[u8] = b":pending_migration";
/// Storage key of the runtime blob an enacted upgrade replaced; the host restores it under
/// [`CODE_KEY`] when the new runtime's migration fails.
pub const PREVIOUS_CODE_KEY: &[u8] = b":previous_code";
/// Storage key the host writes when a migration failed: SCALE `(String name, String reason)`.
/// The restored runtime's `vex_begin_block` records the abort and removes it.
pub const UPGRADE_ABORTED_KEY: &[u8] = b":upgrade_aborted";

/// A runtime upgrade enacted in the previous block, whose migration has not run yet.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct PendingMigration {
    /// The plan's name.
    pub name: String,
    /// The version being replaced.
    pub from: RuntimeVersion,
}

/// An approved binary upgrade this binary does not implement, due now: what the host writes to
/// `upgrade-info.json` before it exits with code 42.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct UpgradeHalt {
    /// Plan name.
    pub name: String,
    /// Target height (the block that is not executed).
    pub height: u64,
    /// Where the new binary is.
    pub binary_url: String,
    /// Its SHA-256 digest.
    pub sha256: Vec<u8>,
    /// The authority's signature over the digest, if any.
    pub signature: Option<Vec<u8>>,
    /// The upgrade authority.
    pub authority: PublicKey,
    /// Release notes.
    pub info_url: String,
    /// The chain.
    pub chain_id: String,
}

/// What `vex_begin_block` tells the host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct BeginBlockOutcome {
    /// Set when an approved binary plan is due at this height and this binary does not implement
    /// it: the host must commit nothing and halt.
    pub halt_for_upgrade: Option<UpgradeHalt>,
    /// Events emitted outside any transaction.
    pub events: Vec<crate::block::Event>,
}

/// What `vex_end_block` tells the host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct EndBlockOutcome {
    /// Events emitted outside any transaction.
    pub events: Vec<crate::block::Event>,
}

/// Input of `vex_apply_transaction`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ApplyArgs {
    /// Block height.
    pub height: u64,
    /// The proposer.
    pub proposer: PublicKey,
    /// The transaction; its signature was verified by the host.
    pub transaction: SignedTransaction,
}

/// Input of `vex_validate_transaction`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ValidateArgs {
    /// The height of the next block.
    pub height: u64,
    /// The transaction; its signature was verified by the host.
    pub transaction: SignedTransaction,
}

/// A transaction the pool may keep.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ValidTransaction {
    /// The nonce the sender's account expects now; the transaction may be ahead of it.
    pub account_nonce: u64,
}

/// Input of `vex_migrate`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct MigrateArgs {
    /// The runtime version being replaced.
    pub from: RuntimeVersion,
    /// Height of the block the migration runs in.
    pub height: u64,
}

/// Why a transaction cannot be included at all (as opposed to being included and failing).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum InvalidTransaction {
    /// Its `chain_id` is not this chain's.
    #[codec(index = 0)]
    WrongChain {
        /// This chain.
        expected: String,
        /// The transaction's.
        found: String,
    },
    /// Nonce already used.
    #[codec(index = 1)]
    StaleNonce {
        /// The account's next nonce.
        expected: u64,
        /// The transaction's.
        found: u64,
    },
    /// Nonce ahead of the account's next nonce.
    #[codec(index = 2)]
    FutureNonce {
        /// The account's next nonce.
        expected: u64,
        /// The transaction's.
        found: u64,
    },
    /// The sender cannot pay `max_gas × gas_price`.
    #[codec(index = 3)]
    InsufficientFunds {
        /// What the fee needs up front.
        needed: u128,
        /// What the sender holds.
        available: u128,
    },
    /// Past `valid_until`.
    #[codec(index = 4)]
    Expired {
        /// The transaction's `valid_until`.
        valid_until: u64,
        /// The block height.
        height: u64,
    },
    /// No operations, or more than the limit.
    #[codec(index = 5)]
    OperationCount {
        /// Operations found.
        found: u32,
    },
    /// `max_gas` is below what the operations need.
    #[codec(index = 6)]
    GasLimitTooLow {
        /// Intrinsic gas of the operations.
        needed: u64,
        /// The transaction's `max_gas`.
        max_gas: u64,
    },
    /// Larger than a block of this chain may carry (`max_block_bytes`).
    #[codec(index = 7)]
    TooLarge {
        /// The signed transaction's encoded length.
        bytes: u64,
        /// The block budget.
        max_block_bytes: u32,
    },
}

impl fmt::Display for InvalidTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidTransaction::WrongChain { expected, found } => {
                write!(
                    f,
                    "wrong chain id: transaction is for {found:?}, this chain is {expected:?}"
                )
            }
            InvalidTransaction::StaleNonce { expected, found } => {
                write!(
                    f,
                    "nonce {found} was already used (account's next nonce is {expected}); replayed transaction?"
                )
            }
            InvalidTransaction::FutureNonce { expected, found } => {
                write!(
                    f,
                    "nonce {found} is in the future (account's next nonce is {expected})"
                )
            }
            InvalidTransaction::InsufficientFunds { needed, available } => write!(
                f,
                "insufficient funds for the fee: max_gas × gas_price = {needed} nanoVXS, balance is {available} nanoVXS"
            ),
            InvalidTransaction::Expired {
                valid_until,
                height,
            } => {
                write!(
                    f,
                    "transaction expired: valid until height {valid_until}, chain is at {height}"
                )
            }
            InvalidTransaction::OperationCount { found } => write!(
                f,
                "a transaction carries 1 to {} operations, this one has {found}",
                crate::transaction::MAX_OPERATIONS
            ),
            InvalidTransaction::GasLimitTooLow { needed, max_gas } => {
                write!(
                    f,
                    "max_gas {max_gas} is below the {needed} gas the operations and bytes need"
                )
            }
            InvalidTransaction::TooLarge {
                bytes,
                max_block_bytes,
            } => write!(
                f,
                "transaction of {bytes} bytes can never be included: a block carries at most \
                 {max_block_bytes} bytes (max_block_bytes)"
            ),
        }
    }
}

/// A read-only question to the runtime.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Query {
    /// An account (absent accounts read as zero).
    #[codec(index = 0)]
    Account(Address),
    /// Every registered validator, sorted by address.
    #[codec(index = 1)]
    Validators,
    /// One validator.
    #[codec(index = 2)]
    Validator(Address),
    /// Current protocol parameters.
    #[codec(index = 3)]
    Parameters,
    /// Governance settings.
    #[codec(index = 4)]
    Governance,
    /// The chain id.
    #[codec(index = 5)]
    ChainId,
    /// The treasury's address.
    #[codec(index = 6)]
    Treasury,
    /// The active upgrade plan with its tally.
    #[codec(index = 7)]
    UpgradePlan,
    /// The status of any plan ever scheduled under a name.
    #[codec(index = 8)]
    PlanStatus(String),
    /// The end of the upgrade grace period.
    #[codec(index = 9)]
    GraceUntil,
    /// A governance proposal with its tally and whether it could be executed at `at_height`.
    #[codec(index = 10)]
    Proposal {
        /// Proposal id.
        id: u64,
        /// The height to judge at (the next block's).
        at_height: u64,
    },
    /// A multisig account.
    #[codec(index = 11)]
    MultiSig(Address),
    /// The active runtime plan's blob (for background compilation and shadow runs).
    #[codec(index = 12)]
    PlanCode,
    /// A validator's missed-block record.
    #[codec(index = 13)]
    Liveness(Address),
    /// What consensus needs of the state after a block: the active set the next block is
    /// scheduled and voted with, and the whole missed-block record.
    #[codec(index = 14)]
    Consensus {
        /// The height of the next block.
        at_height: u64,
    },
}

/// The consensus view of chain state ([`Query::Consensus`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct ConsensusView {
    /// The active set at the asked height: (address, stake), sorted by address.
    pub active: Vec<(Address, u128)>,
    /// The last block's (height, proposer, consecutive blocks by that proposer).
    pub last: Option<(u64, Address, u32)>,
    /// (consecutive misses, all misses) of every validator with a record, by address.
    pub missed: Vec<(Address, (u32, u64))>,
    /// Validators out of the rotation, sorted.
    pub skipped: Vec<Address>,
    /// The end of the upgrade grace period (exclusive).
    pub grace_until: u64,
}

/// A validator's missed-block record as `vex_getValidators` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct LivenessView {
    /// Consecutive blocks it was due to produce and did not.
    pub missed_streak: u32,
    /// All blocks it was due to produce and did not.
    pub missed_total: u64,
    /// Out of the rotation (leader skip) until it produces two consecutive blocks.
    pub skipped: bool,
}

/// A proposal as `vex_getProposal` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ProposalView {
    /// The proposal.
    pub proposal: crate::state::Proposal,
    /// Approving snapshot weight.
    pub approve: u128,
    /// Rejecting snapshot weight.
    pub reject: u128,
    /// Total snapshot weight.
    pub total: u128,
    /// First height at which votes are no longer accepted.
    pub voting_ends_at: u64,
    /// `Ok` when it may be executed at the height asked about, else why not.
    pub passed: Result<(), String>,
}

/// The active upgrade plan as `vex_getUpgradePlan` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct PlanView {
    /// The plan (a runtime target's code is left out; see `code_hash`).
    pub plan: crate::state::UpgradePlan,
    /// Approving snapshot weight.
    pub approve: u128,
    /// Rejecting snapshot weight.
    pub reject: u128,
    /// Total snapshot weight.
    pub total: u128,
    /// Quorum in force, percent.
    pub quorum_percent: u8,
    /// First height at which votes are no longer accepted.
    pub voting_ends_at: u64,
}

/// The answer to a [`Query`], same variant.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum QueryResponse {
    /// See [`Query::Account`].
    #[codec(index = 0)]
    Account(AccountInfo),
    /// See [`Query::Validators`].
    #[codec(index = 1)]
    Validators(Vec<ValidatorInfo>),
    /// See [`Query::Validator`].
    #[codec(index = 2)]
    Validator(Option<ValidatorInfo>),
    /// See [`Query::Parameters`].
    #[codec(index = 3)]
    Parameters(Parameters),
    /// See [`Query::Governance`].
    #[codec(index = 4)]
    Governance(GovernanceSettings),
    /// See [`Query::ChainId`].
    #[codec(index = 5)]
    ChainId(String),
    /// See [`Query::Treasury`].
    #[codec(index = 6)]
    Treasury(Address),
    /// See [`Query::UpgradePlan`].
    #[codec(index = 7)]
    UpgradePlan(Option<PlanView>),
    /// See [`Query::PlanStatus`].
    #[codec(index = 8)]
    PlanStatus(Option<crate::state::PlanStatus>),
    /// See [`Query::GraceUntil`].
    #[codec(index = 9)]
    GraceUntil(u64),
    /// See [`Query::Proposal`].
    #[codec(index = 10)]
    Proposal(Option<ProposalView>),
    /// See [`Query::MultiSig`].
    #[codec(index = 11)]
    MultiSig(Option<crate::state::MultiSigAccount>),
    /// See [`Query::PlanCode`].
    #[codec(index = 12)]
    PlanCode(Option<Vec<u8>>),
    /// See [`Query::Liveness`].
    #[codec(index = 13)]
    Liveness(LivenessView),
    /// See [`Query::Consensus`].
    #[codec(index = 14)]
    Consensus(ConsensusView),
}

/// The result of `vex_apply_transaction`.
pub type ApplyResult = Result<Receipt, InvalidTransaction>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn const_version_section_equals_scale() {
        const N: usize = version_section_len(7);
        let bytes: [u8; N] = encode_version_section("vexidus", 3, 2, 1);
        let v = RuntimeVersion {
            spec_name: "vexidus".into(),
            spec_version: 3,
            impl_version: 2,
            abi_version: 1,
        };
        assert_eq!(bytes.to_vec(), v.encode());
    }

    #[test]
    fn pack_round_trip() {
        assert_eq!(
            unpack(pack(0xdead_beef, 0x1234_5678)),
            (0xdead_beef, 0x1234_5678)
        );
    }
}
