//! Block headers: what a proposer signs and a vote or double-signing evidence names.

use crate::primitives::{Hash, PublicKey};
use borsh::{BorshDeserialize, BorshSerialize};
use parity_scale_codec::{Decode, Encode};

/// A block header. Its hash (`blake3` of its Borsh encoding) identifies the block.
#[cfg_attr(feature = "std", derive(serde::Serialize, serde::Deserialize))]
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
