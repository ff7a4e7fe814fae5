//! Blocks, receipts and events.

pub use crate::header::Header;
use crate::primitives::{Address, Signature};
use crate::state::RuntimeVersion;
use crate::transaction::SignedTransaction;
use alloc::{string::String, vec::Vec};
use borsh::{BorshDeserialize, BorshSerialize};
use parity_scale_codec::{Decode, Encode};

/// A block: header, transactions and the proposer's signature over the header hash
/// (`vexidus/block/v1` domain).
#[cfg_attr(feature = "std", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Encode, Decode)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// Transactions in execution order.
    pub transactions: Vec<SignedTransaction>,
    /// Proposer signature over the header hash.
    pub signature: Signature,
}

/// What the runtime reports for one applied transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Encode, Decode)]
pub struct Receipt {
    /// Whether every operation succeeded. On failure all operations were reverted; the fee was
    /// still charged and the nonce bumped.
    pub success: bool,
    /// The runtime's error in words, with the index of the failing operation.
    pub error: Option<String>,
    /// Gas charged.
    pub gas_used: u64,
    /// Fee charged in nanoVXS (`gas_used × gas_price`).
    pub fee: u128,
    /// Events emitted, in order.
    pub events: Vec<Event>,
}

/// Something the runtime wants the outside world to know. Indices are fixed like operation
/// discriminants.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Encode, Decode)]
#[cfg_attr(
    feature = "std",
    derive(serde::Serialize, serde::Deserialize),
    serde(tag = "type")
)]
pub enum Event {
    /// Funds moved between accounts.
    #[codec(index = 0)]
    Transferred {
        /// Sender.
        from: Address,
        /// Recipient.
        to: Address,
        /// Amount in nanoVXS.
        #[cfg_attr(
            feature = "std",
            serde(deserialize_with = "crate::serde_amount::deserialize")
        )]
        amount: u128,
    },
    /// A fee was charged and split.
    #[codec(index = 1)]
    FeePaid {
        /// Who paid.
        payer: Address,
        /// Whole fee.
        #[cfg_attr(
            feature = "std",
            serde(deserialize_with = "crate::serde_amount::deserialize")
        )]
        fee: u128,
        /// The proposer's 80%.
        #[cfg_attr(
            feature = "std",
            serde(deserialize_with = "crate::serde_amount::deserialize")
        )]
        to_proposer: u128,
        /// The treasury's 20% (and any rounding remainder).
        #[cfg_attr(
            feature = "std",
            serde(deserialize_with = "crate::serde_amount::deserialize")
        )]
        to_treasury: u128,
    },
    /// A validator registered.
    #[codec(index = 2)]
    ValidatorRegistered {
        /// Its address.
        validator: Address,
        /// Self-stake.
        #[cfg_attr(
            feature = "std",
            serde(deserialize_with = "crate::serde_amount::deserialize")
        )]
        stake: u128,
        /// Commission.
        commission_bps: u16,
    },
    /// Stake delegated.
    #[codec(index = 3)]
    Delegated {
        /// Delegator.
        delegator: Address,
        /// Validator.
        validator: Address,
        /// Amount.
        #[cfg_attr(
            feature = "std",
            serde(deserialize_with = "crate::serde_amount::deserialize")
        )]
        amount: u128,
    },
    /// Stake undelegated.
    #[codec(index = 4)]
    Undelegated {
        /// Delegator.
        delegator: Address,
        /// Validator.
        validator: Address,
        /// Amount.
        #[cfg_attr(
            feature = "std",
            serde(deserialize_with = "crate::serde_amount::deserialize")
        )]
        amount: u128,
    },
    /// Rewards claimed.
    #[codec(index = 5)]
    RewardsClaimed {
        /// Validator.
        validator: Address,
        /// Amount.
        #[cfg_attr(
            feature = "std",
            serde(deserialize_with = "crate::serde_amount::deserialize")
        )]
        amount: u128,
    },
    /// A validator left jail.
    #[codec(index = 6)]
    Unjailed {
        /// Validator.
        validator: Address,
    },
    /// An upgrade plan was scheduled.
    #[codec(index = 10)]
    UpgradeScheduled {
        /// Plan name.
        name: String,
        /// Target height.
        height: u64,
        /// `binary` or `runtime`.
        kind: String,
    },
    /// A plan was approved (at scheduling in `seed-authority` mode, at quorum in `full` mode).
    #[codec(index = 11)]
    UpgradeApproved {
        /// Plan name.
        name: String,
    },
    /// A validator voted on a plan.
    #[codec(index = 12)]
    UpgradeVoted {
        /// Plan name.
        name: String,
        /// The voter.
        validator: Address,
        /// Approve or reject.
        approve: bool,
        /// Snapshot weight of the vote.
        #[cfg_attr(
            feature = "std",
            serde(deserialize_with = "crate::serde_amount::deserialize")
        )]
        weight: u128,
    },
    /// The authority cancelled a plan.
    #[codec(index = 13)]
    UpgradeCancelled {
        /// Plan name.
        name: String,
    },
    /// A plan was not approved in time.
    #[codec(index = 14)]
    UpgradeExpired {
        /// Plan name.
        name: String,
        /// Which deadline passed.
        reason: String,
    },
    /// A binary upgrade was carried out by a binary that implements it.
    #[codec(index = 15)]
    UpgradeExecuted {
        /// Plan name.
        name: String,
        /// Height.
        height: u64,
    },
    /// A runtime upgrade took effect.
    #[codec(index = 20)]
    RuntimeUpgraded {
        /// Name of the plan.
        name: String,
        /// The new version.
        version: RuntimeVersion,
    },
    /// A runtime upgrade's migration failed; the previous runtime was restored.
    #[codec(index = 21)]
    UpgradeAborted {
        /// Name of the plan.
        name: String,
        /// Why.
        reason: String,
    },
    /// A governance proposal was created.
    #[codec(index = 30)]
    ProposalCreated {
        /// Id.
        id: u64,
        /// Proposer.
        proposer: Address,
    },
    /// A validator voted on a proposal.
    #[codec(index = 31)]
    ProposalVoted {
        /// Id.
        id: u64,
        /// Voter.
        validator: Address,
        /// Approve or reject.
        approve: bool,
        /// Weight.
        #[cfg_attr(
            feature = "std",
            serde(deserialize_with = "crate::serde_amount::deserialize")
        )]
        weight: u128,
    },
    /// A passed proposal was executed.
    #[codec(index = 32)]
    ProposalExecuted {
        /// Id.
        id: u64,
    },
    /// The proposer withdrew a proposal.
    #[codec(index = 33)]
    ProposalCancelled {
        /// Id.
        id: u64,
    },
    /// A protocol parameter changed.
    #[codec(index = 34)]
    ParameterChanged {
        /// Parameter.
        key: crate::transaction::ParamKey,
        /// New value.
        #[cfg_attr(
            feature = "std",
            serde(deserialize_with = "crate::serde_amount::deserialize")
        )]
        value: u128,
    },
    /// The treasury paid out.
    #[codec(index = 35)]
    TreasurySpent {
        /// Recipient.
        to: Address,
        /// Amount.
        #[cfg_attr(
            feature = "std",
            serde(deserialize_with = "crate::serde_amount::deserialize")
        )]
        amount: u128,
    },
    /// A multisig account was created.
    #[codec(index = 40)]
    MultiSigCreated {
        /// Its address.
        multisig: Address,
        /// Approvals needed.
        threshold: u8,
    },
    /// A signer proposed an operation for a multisig account.
    #[codec(index = 41)]
    MultiSigProposed {
        /// The account.
        multisig: Address,
        /// Pending operation id.
        proposal_id: u64,
    },
    /// A signer approved (or, with `approve` false, revoked) a pending operation.
    #[codec(index = 42)]
    MultiSigApproval {
        /// The account.
        multisig: Address,
        /// Pending operation id.
        proposal_id: u64,
        /// Signer.
        signer: Address,
        /// Approval given or withdrawn.
        approve: bool,
        /// Approvals now.
        approvals: u8,
    },
    /// A pending operation reached its threshold and ran as the multisig account.
    #[codec(index = 43)]
    MultiSigExecuted {
        /// The account.
        multisig: Address,
        /// Pending operation id.
        proposal_id: u64,
    },
    /// A validator was jailed for double-signing.
    #[codec(index = 7)]
    Jailed {
        /// Validator.
        validator: Address,
        /// Height of the offence.
        offence_height: u64,
        /// Jailed until this height (exclusive).
        until: u64,
        /// Offences so far, this one included (the jail term escalates with them).
        offences: u32,
    },
}
