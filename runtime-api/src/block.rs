//! Blocks, headers, receipts and events.

use crate::primitives::{Address, Hash, PublicKey, Signature};
use crate::state::RuntimeVersion;
use crate::transaction::SignedTransaction;
use alloc::{string::String, vec::Vec};
use borsh::{BorshDeserialize, BorshSerialize};
use parity_scale_codec::{Decode, Encode};

/// A block header. Its hash (`blake3` of its Borsh encoding) identifies the block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Encode, Decode)]
pub struct Header {
    /// Hash of the parent header; zero for genesis.
    pub parent_hash: Hash,
    /// Height; genesis is 0.
    pub height: u64,
    /// Proposer's wall-clock time in milliseconds since the Unix epoch. Informational: the
    /// runtime never sees it.
    pub timestamp_ms: u64,
    /// The proposer's key.
    pub proposer: PublicKey,
    /// LtHash state root after executing the block.
    pub state_root: Hash,
    /// blake3 over the transaction hashes in order.
    pub transactions_root: Hash,
    /// blake3 over the SCALE-encoded receipts in order.
    pub receipts_root: Hash,
}

/// A block: header, transactions and the proposer's signature over the header hash
/// (`vexidus/block/v1` domain).
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
pub enum Event {
    /// Funds moved between accounts.
    #[codec(index = 0)]
    Transferred {
        /// Sender.
        from: Address,
        /// Recipient.
        to: Address,
        /// Amount in nanoVXS.
        amount: u128,
    },
    /// A fee was charged and split.
    #[codec(index = 1)]
    FeePaid {
        /// Who paid.
        payer: Address,
        /// Whole fee.
        fee: u128,
        /// The proposer's 80%.
        to_proposer: u128,
        /// The treasury's 20% (and any rounding remainder).
        to_treasury: u128,
    },
    /// A validator registered.
    #[codec(index = 2)]
    ValidatorRegistered {
        /// Its address.
        validator: Address,
        /// Self-stake.
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
        amount: u128,
    },
    /// Rewards claimed.
    #[codec(index = 5)]
    RewardsClaimed {
        /// Validator.
        validator: Address,
        /// Amount.
        amount: u128,
    },
    /// A validator left jail.
    #[codec(index = 6)]
    Unjailed {
        /// Validator.
        validator: Address,
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
}
