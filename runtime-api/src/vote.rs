//! Consensus votes as they are signed, sent and, as evidence of double-signing, put on chain.
//! The runtime verifies evidence with the same message the node signs.

use crate::primitives::{Hash, PublicKey, Signature};
use borsh::{BorshDeserialize, BorshSerialize};
use parity_scale_codec::{Decode, Encode};

/// The two stages of a vote (SPEC §10).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Encode,
    Decode,
)]
#[cfg_attr(
    feature = "std",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum VoteStage {
    /// "I imported and validated this block."
    Prevote,
    /// "I saw more than 2/3 of stake prevote it."
    Precommit,
}

/// What a validator signs.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Encode, Decode)]
#[cfg_attr(feature = "std", derive(serde::Serialize, serde::Deserialize))]
pub struct VoteBody {
    /// Stage.
    pub stage: VoteStage,
    /// Height of the block.
    pub height: u64,
    /// The block's hash.
    pub block: Hash,
}

/// A signed vote.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Encode, Decode)]
#[cfg_attr(feature = "std", derive(serde::Serialize, serde::Deserialize))]
pub struct SignedVote {
    /// The vote.
    pub body: VoteBody,
    /// The voter's key.
    pub voter: PublicKey,
    /// Signature over `signing_message(VOTE_DOMAIN, chain_id, borsh(body))`.
    pub signature: Signature,
}

/// A block header with its proposer's signature (the proposer is in the header).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Encode, Decode)]
#[cfg_attr(feature = "std", derive(serde::Serialize, serde::Deserialize))]
pub struct SignedHeader {
    /// The header.
    pub header: crate::header::Header,
    /// The proposer's signature over the header hash (`vexidus/block/v1`).
    pub signature: Signature,
}

/// Proof that a validator signed two conflicting things at one height (SPEC §10). Anyone may
/// put it on chain (`Operation::ReportDoubleSign`); the offender is jailed.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Encode, Decode)]
#[cfg_attr(feature = "std", derive(serde::Serialize, serde::Deserialize))]
pub enum DoubleSignEvidence {
    /// Two votes of one stage at one height for different blocks.
    #[codec(index = 0)]
    DoubleVote {
        /// One vote.
        first: SignedVote,
        /// The other.
        second: SignedVote,
    },
    /// Two different blocks at one height by one proposer.
    #[codec(index = 1)]
    DoubleProposal {
        /// One header.
        first: SignedHeader,
        /// The other.
        second: SignedHeader,
    },
}

impl DoubleSignEvidence {
    /// The key that signed both.
    pub fn offender(&self) -> PublicKey {
        match self {
            DoubleSignEvidence::DoubleVote { first, .. } => first.voter,
            DoubleSignEvidence::DoubleProposal { first, .. } => first.header.proposer,
        }
    }

    /// The height of the offence.
    pub fn height(&self) -> u64 {
        match self {
            DoubleSignEvidence::DoubleVote { first, .. } => first.body.height,
            DoubleSignEvidence::DoubleProposal { first, .. } => first.header.height,
        }
    }

    /// 0 for a double vote, 1 for a double proposal (one report per kind, height, offender).
    pub fn kind(&self) -> u8 {
        match self {
            DoubleSignEvidence::DoubleVote { .. } => 0,
            DoubleSignEvidence::DoubleProposal { .. } => 1,
        }
    }
}

#[cfg(feature = "std")]
impl SignedVote {
    /// Signs `body` with `key` for `chain_id`.
    pub fn sign(body: VoteBody, key: &crate::keys::Keypair, chain_id: &str) -> Self {
        let bytes = borsh::to_vec(&body).expect("a vote always encodes");
        Self {
            signature: key.sign(crate::domains::VOTE_DOMAIN, chain_id, &bytes),
            voter: key.public(),
            body,
        }
    }

    /// Whether the signature is the voter's, for `chain_id`.
    pub fn verify(&self, chain_id: &str) -> bool {
        let bytes = borsh::to_vec(&self.body).expect("a vote always encodes");
        crate::keys::verify(
            &self.voter,
            crate::domains::VOTE_DOMAIN,
            chain_id,
            &bytes,
            &self.signature,
        )
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    #[test]
    fn votes_verify_only_as_signed() {
        let k = Keypair::from_seed([3; 32]);
        let body = VoteBody {
            stage: VoteStage::Prevote,
            height: 9,
            block: [1; 32],
        };
        let v = SignedVote::sign(body, &k, "c");
        assert!(v.verify("c"));
        assert!(!v.verify("d"));
        let mut other = v.clone();
        other.body.stage = VoteStage::Precommit;
        assert!(!other.verify("c"));
        let mut moved = v;
        moved.body.height = 10;
        assert!(!moved.verify("c"));
    }
}
