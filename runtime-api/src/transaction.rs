//! Transactions ("bundles") and their operations.
//!
//! The one-byte Borsh discriminants of [`Operation`] are part of the wire format and fixed
//! forever: a discriminant is never reused or renumbered. 6..=45 and 49..=59 are reserved.
//! The SCALE indices are the same numbers.

use crate::primitives::{Address, PublicKey, Signature};
use alloc::{boxed::Box, string::String, vec::Vec};
use borsh::{BorshDeserialize, BorshSerialize};
use parity_scale_codec::{Decode, Encode};

/// Most operations one transaction may carry.
pub const MAX_OPERATIONS: usize = 16;

/// The highest `max_block_bytes` governance may set: a block of it, with its header and
/// signature, fits in a gossip message (8 MiB) with room to spare.
pub const MAX_BLOCK_BYTES_BOUND: u32 = 7 * 1024 * 1024;

/// Largest encoded transaction any node decodes (bytes): one that fills the largest block
/// governance may allow. Below this, a transaction over the chain's current `max_block_bytes`
/// is refused at admission, since no block may carry it.
pub const MAX_TRANSACTION_BYTES: usize = MAX_BLOCK_BYTES_BOUND as usize;

/// Room in a block for everything of a runtime-upgrade transaction except the blob.
pub const RUNTIME_UPGRADE_ENVELOPE_BYTES: u32 = 64 * 1024;

/// Gas per byte of a transaction beyond the first [`FREE_TRANSACTION_BYTES`] (its Borsh
/// encoding with the signature, as on the wire and as counted against the block budget).
pub const GAS_PER_BYTE: u64 = 16;

/// Bytes of every transaction its operations' gas already pays for: an ordinary transaction
/// (a transfer is about 150 bytes; sixteen operations fit) costs no byte gas.
pub const FREE_TRANSACTION_BYTES: u64 = 1024;

/// The unsigned body of a transaction: what the sender signs (Borsh-encoded, under the
/// `vexidus/tx/v1` domain).
#[cfg_attr(feature = "std", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Encode, Decode)]
pub struct Transaction {
    /// The chain this transaction is meant for. A node refuses transactions of other chains.
    pub chain_id: String,
    /// The sender's Ed25519 public key; the sending account is its address.
    pub sender: PublicKey,
    /// The sender's nonce: strictly sequential per account, starting at 0.
    pub nonce: u64,
    /// The most gas the sender will pay for; `max_gas × gas_price` must be held up front.
    pub max_gas: u64,
    /// The last block height at which the transaction may be included.
    pub valid_until: u64,
    /// One to [`MAX_OPERATIONS`] operations, applied in order, all or nothing.
    pub operations: Vec<Operation>,
}

/// A transaction with its sender's signature.
#[cfg_attr(feature = "std", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Encode, Decode)]
pub struct SignedTransaction {
    /// The signed body.
    pub transaction: Transaction,
    /// Ed25519 signature by `transaction.sender` over the `vexidus/tx/v1` signing message.
    pub signature: Signature,
}

/// What a scheduled upgrade replaces.
#[cfg_attr(feature = "std", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Encode, Decode)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum UpgradeTarget {
    /// A new host binary, carried by the VexVisor supervisor.
    #[codec(index = 0)]
    Binary {
        /// Where the binary can be downloaded (http, https or file).
        binary_url: String,
        /// SHA-256 digest of the binary; must be 32 bytes.
        sha256: Vec<u8>,
        /// Optional Ed25519 signature by the upgrade authority over the digest
        /// (`vexidus/binary/v1` domain).
        signature: Option<Vec<u8>>,
    } = 0,
    /// A new WebAssembly runtime that replaces `:code` at the target height.
    #[codec(index = 1)]
    Runtime {
        /// The runtime blob.
        code: Vec<u8>,
    } = 1,
}

/// The governable protocol parameters (SPEC §6).
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
#[borsh(use_discriminant = true)]
#[cfg_attr(
    feature = "std",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[repr(u8)]
pub enum ParamKey {
    /// nanoVXS per unit of gas.
    #[codec(index = 0)]
    GasPrice = 0,
    /// Most transactions in one block.
    #[codec(index = 1)]
    MaxTxsPerBlock = 1,
    /// Least self-stake to register a validator (nanoVXS).
    #[codec(index = 2)]
    MinStake = 2,
    /// Highest commission a validator may set (basis points).
    #[codec(index = 3)]
    MaxCommissionBps = 3,
    /// Length of upgrade and proposal votes (blocks).
    #[codec(index = 4)]
    VotingPeriodBlocks = 4,
    /// Approving share of stake an upgrade plan needs; turnout a proposal needs (percent).
    #[codec(index = 5)]
    QuorumPercent = 5,
    /// Least distance between scheduling and the target height (blocks).
    #[codec(index = 6)]
    UpgradeMinLeadBlocks = 6,
    /// Blocks after an upgrade in which nobody is counted as missing blocks.
    #[codec(index = 7)]
    UpgradeGraceBlocks = 7,
    /// Largest runtime blob accepted (bytes).
    #[codec(index = 8)]
    MaxRuntimeCodeBytes = 8,
    /// Most bytes of transactions in one block.
    #[codec(index = 9)]
    MaxBlockBytes = 9,
}

impl ParamKey {
    /// The parameter's name as in SPEC §6 (`gas_price`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            ParamKey::GasPrice => "gas_price",
            ParamKey::MaxTxsPerBlock => "max_txs_per_block",
            ParamKey::MinStake => "min_stake",
            ParamKey::MaxCommissionBps => "max_commission_bps",
            ParamKey::VotingPeriodBlocks => "voting_period_blocks",
            ParamKey::QuorumPercent => "quorum_percent",
            ParamKey::UpgradeMinLeadBlocks => "upgrade_min_lead_blocks",
            ParamKey::UpgradeGraceBlocks => "upgrade_grace_blocks",
            ParamKey::MaxRuntimeCodeBytes => "max_runtime_code_bytes",
            ParamKey::MaxBlockBytes => "max_block_bytes",
        }
    }

    /// The highest allowed value (see [`Self::bounds`]).
    pub const fn upper_bound(&self) -> u128 {
        self.bounds().1
    }

    /// Lowest and highest allowed value (SPEC §6), in the parameter's unit (nanoVXS for
    /// `min_stake`).
    pub const fn bounds(&self) -> (u128, u128) {
        const VXS: u128 = crate::NANO_PER_VXS;
        match self {
            ParamKey::GasPrice => (1, 1_000),
            ParamKey::MaxTxsPerBlock => (100, 100_000),
            ParamKey::MinStake => (100 * VXS, 100_000 * VXS),
            ParamKey::MaxCommissionBps => (100, 10_000),
            ParamKey::VotingPeriodBlocks => (100, 50_400),
            ParamKey::QuorumPercent => (51, 100),
            ParamKey::UpgradeMinLeadBlocks => (10, 10_000),
            ParamKey::UpgradeGraceBlocks => (0, 10_000),
            ParamKey::MaxRuntimeCodeBytes => (
                64 * 1024,
                (MAX_BLOCK_BYTES_BOUND - RUNTIME_UPGRADE_ENVELOPE_BYTES) as u128,
            ),
            ParamKey::MaxBlockBytes => (256 * 1024, MAX_BLOCK_BYTES_BOUND as u128),
        }
    }

    /// Every key.
    pub const ALL: [ParamKey; 10] = [
        ParamKey::GasPrice,
        ParamKey::MaxTxsPerBlock,
        ParamKey::MinStake,
        ParamKey::MaxCommissionBps,
        ParamKey::VotingPeriodBlocks,
        ParamKey::QuorumPercent,
        ParamKey::UpgradeMinLeadBlocks,
        ParamKey::UpgradeGraceBlocks,
        ParamKey::MaxRuntimeCodeBytes,
        ParamKey::MaxBlockBytes,
    ];
}

/// What a governance proposal does once passed and executed.
#[cfg_attr(feature = "std", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Encode, Decode)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum ProposalKind {
    /// Set a protocol parameter to a value within its bounds.
    #[codec(index = 0)]
    ParameterChange {
        /// The parameter.
        key: ParamKey,
        /// Its new value.
        value: u128,
    } = 0,
    /// Pay from the treasury.
    #[codec(index = 1)]
    TreasurySpend {
        /// Recipient.
        to: Address,
        /// Amount in nanoVXS.
        amount: u128,
    } = 1,
    /// A signalling proposal with no effect on chain.
    #[codec(index = 2)]
    Text {
        /// Title.
        title: String,
        /// Body.
        body: String,
    } = 2,
}

/// One operation of a transaction. See SPEC §3 for who may send each and its gas.
#[cfg_attr(feature = "std", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Encode, Decode)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum Operation {
    /// Move `amount` nanoVXS to `to`.
    #[codec(index = 0)]
    Transfer {
        /// Recipient address.
        to: Address,
        /// Amount in nanoVXS.
        amount: u128,
    } = 0,
    /// Become a validator by bonding `stake` from the sender's balance.
    #[codec(index = 1)]
    RegisterValidator {
        /// Self-stake in nanoVXS; at least `min_stake`.
        stake: u128,
        /// Commission in basis points; at most `max_commission_bps`.
        commission_bps: u16,
    } = 1,
    /// Bond `amount` to `validator`.
    #[codec(index = 2)]
    Delegate {
        /// The validator's address.
        validator: Address,
        /// Amount in nanoVXS.
        amount: u128,
    } = 2,
    /// Unbond `amount` from `validator`.
    #[codec(index = 3)]
    Undelegate {
        /// The validator's address.
        validator: Address,
        /// Amount in nanoVXS.
        amount: u128,
    } = 3,
    /// Move the sender's accrued validator rewards to its balance.
    #[codec(index = 4)]
    ClaimRewards = 4,
    /// Leave jail once the jail period has passed.
    #[codec(index = 5)]
    Unjail = 5,
    /// Put proof of double-signing on chain; the offender is jailed (anyone may send it).
    #[codec(index = 6)]
    ReportDoubleSign {
        /// The two conflicting signed messages.
        evidence: Box<crate::vote::DoubleSignEvidence>,
    } = 6,
    /// Schedule an upgrade plan (upgrade authority only).
    #[codec(index = 46)]
    ScheduleUpgrade {
        /// Plan name: `[a-z0-9._-]{1,64}`, not starting with `.`, never reused.
        name: String,
        /// Target height.
        height: u64,
        /// Free-form link to release notes.
        info_url: String,
        /// What is upgraded.
        target: UpgradeTarget,
    } = 46,
    /// Cancel the active plan (upgrade authority only).
    #[codec(index = 47)]
    CancelUpgrade {
        /// Plan name.
        name: String,
    } = 47,
    /// Vote on the active plan (active validators, `full` mode only).
    #[codec(index = 48)]
    VoteUpgrade {
        /// Plan name.
        name: String,
        /// Approve or reject.
        approve: bool,
    } = 48,
    /// Open a governance proposal.
    #[codec(index = 60)]
    CreateProposal {
        /// What the proposal does.
        kind: ProposalKind,
    } = 60,
    /// Vote on a proposal (active validators).
    #[codec(index = 61)]
    VoteProposal {
        /// Proposal id.
        id: u64,
        /// Approve or reject.
        approve: bool,
    } = 61,
    /// Execute a passed proposal (anyone).
    #[codec(index = 62)]
    ExecuteProposal {
        /// Proposal id.
        id: u64,
    } = 62,
    /// Withdraw a proposal (its proposer).
    #[codec(index = 63)]
    CancelProposal {
        /// Proposal id.
        id: u64,
    } = 63,
    /// Create a multisig account.
    #[codec(index = 64)]
    CreateMultiSig {
        /// Addresses allowed to propose and approve.
        signers: Vec<Address>,
        /// Approvals needed.
        threshold: u8,
        /// Human-readable label.
        label: String,
    } = 64,
    /// Propose an operation the multisig account will send. The wrapped operation may not be
    /// a multisig operation itself (the runtime refuses it, ingress refuses it at the door), and
    /// decoders refuse proposals nested deeper than [`MAX_MULTISIG_NESTING`].
    #[codec(index = 65)]
    ProposeMultiSig {
        /// The multisig account.
        multisig: Address,
        /// The wrapped operation.
        #[borsh(deserialize_with = "decode_wrapped")]
        #[cfg_attr(feature = "std", serde(deserialize_with = "serde_wrapped"))]
        op: Box<Operation>,
    } = 65,
    /// Approve a pending multisig operation.
    #[codec(index = 66)]
    ApproveMultiSig {
        /// The multisig account.
        multisig: Address,
        /// The pending operation's id.
        proposal_id: u64,
    } = 66,
    /// Withdraw one's approval of a pending multisig operation.
    #[codec(index = 67)]
    RevokeMultiSig {
        /// The multisig account.
        multisig: Address,
        /// The pending operation's id.
        proposal_id: u64,
    } = 67,
}

/// Most `ProposeMultiSig` operations nested in one another that a decoder accepts.
///
/// Only one level is meaningful (a multisig proposal wrapping a plain operation; the runtime
/// refuses a wrapped multisig operation when it executes). Decoding stops at this depth so that
/// bytes from outside cannot build a structure whose decoding, handling or dropping recurses
/// without bound: derived decoders recurse once per level, and a transaction nested a few
/// hundred thousand deep overflowed the stack. The limit leaves room for the nested proposals a
/// chain may already hold in its blocks (executed and refused), so their blocks still decode.
pub const MAX_MULTISIG_NESTING: usize = 4;

/// The `op` field of a Borsh-encoded `ProposeMultiSig`: the chain of further proposals is read
/// in a loop, not by recursion, and refused past [`MAX_MULTISIG_NESTING`].
fn decode_wrapped<R: borsh::io::Read>(reader: &mut R) -> borsh::io::Result<Box<Operation>> {
    const PROPOSE: u8 = 65;
    // The proposal whose field this is counts as the first level.
    let mut wrappers: Vec<Address> = Vec::new();
    loop {
        let tag = u8::deserialize_reader(reader)?;
        if tag != PROPOSE {
            let mut op = <Operation as borsh::de::EnumExt>::deserialize_variant(reader, tag)?;
            for multisig in wrappers.into_iter().rev() {
                op = Operation::ProposeMultiSig {
                    multisig,
                    op: Box::new(op),
                };
            }
            return Ok(Box::new(op));
        }
        if wrappers.len() + 2 > MAX_MULTISIG_NESTING {
            return Err(borsh::io::Error::new(
                borsh::io::ErrorKind::InvalidData,
                alloc::format!("multisig proposals nested more than {MAX_MULTISIG_NESTING} deep"),
            ));
        }
        wrappers.push(Address::deserialize_reader(reader)?);
    }
}

/// The same limit for the JSON form: serde's derived decoder recurses, so the depth is counted
/// on the decoding thread.
#[cfg(feature = "std")]
fn serde_wrapped<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Box<Operation>, D::Error> {
    use serde::Deserialize;
    use std::cell::Cell;
    std::thread_local!(static DEPTH: Cell<usize> = const { Cell::new(0) });
    struct Level;
    impl Drop for Level {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
    // The proposals whose fields are being decoded, this one's included.
    let level = DEPTH.with(|d| d.get()) + 1;
    if level > MAX_MULTISIG_NESTING {
        return Err(serde::de::Error::custom(format!(
            "multisig proposals nested more than {MAX_MULTISIG_NESTING} deep"
        )));
    }
    DEPTH.with(|d| d.set(d.get() + 1));
    let _level = Level;
    <Operation as Deserialize>::deserialize(d).map(Box::new)
}

impl Operation {
    /// The fixed discriminant of this operation (SPEC §3).
    pub fn discriminant(&self) -> u8 {
        // SAFETY: `Operation` is `repr(u8)`, so its first byte is the discriminant
        // (the documented layout of primitive-representation enums).
        unsafe { *(self as *const Self as *const u8) }
    }

    /// Gas this operation costs (SPEC §3), before the transaction's byte gas.
    pub fn gas(&self) -> u64 {
        match self {
            Operation::Transfer { .. } => 21_000,
            Operation::RegisterValidator { .. }
            | Operation::Delegate { .. }
            | Operation::Undelegate { .. } => 50_000,
            Operation::ClaimRewards | Operation::Unjail => 30_000,
            Operation::ReportDoubleSign { .. } => 60_000,
            Operation::ScheduleUpgrade { .. } => 80_000,
            Operation::CancelUpgrade { .. } => 60_000,
            Operation::VoteUpgrade { .. } => 40_000,
            Operation::CreateProposal { .. } => 80_000,
            Operation::VoteProposal { .. } => 40_000,
            Operation::ExecuteProposal { .. }
            | Operation::CancelProposal { .. }
            | Operation::CreateMultiSig { .. }
            | Operation::ProposeMultiSig { .. }
            | Operation::ApproveMultiSig { .. }
            | Operation::RevokeMultiSig { .. } => 60_000,
        }
    }

    /// A short name for logs and receipts.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Transfer { .. } => "Transfer",
            Operation::RegisterValidator { .. } => "RegisterValidator",
            Operation::Delegate { .. } => "Delegate",
            Operation::Undelegate { .. } => "Undelegate",
            Operation::ClaimRewards => "ClaimRewards",
            Operation::Unjail => "Unjail",
            Operation::ReportDoubleSign { .. } => "ReportDoubleSign",
            Operation::ScheduleUpgrade { .. } => "ScheduleUpgrade",
            Operation::CancelUpgrade { .. } => "CancelUpgrade",
            Operation::VoteUpgrade { .. } => "VoteUpgrade",
            Operation::CreateProposal { .. } => "CreateProposal",
            Operation::VoteProposal { .. } => "VoteProposal",
            Operation::ExecuteProposal { .. } => "ExecuteProposal",
            Operation::CancelProposal { .. } => "CancelProposal",
            Operation::CreateMultiSig { .. } => "CreateMultiSig",
            Operation::ProposeMultiSig { .. } => "ProposeMultiSig",
            Operation::ApproveMultiSig { .. } => "ApproveMultiSig",
            Operation::RevokeMultiSig { .. } => "RevokeMultiSig",
        }
    }
}

impl Transaction {
    /// Gas the transaction needs: its operations' gas, summed, plus [`GAS_PER_BYTE`] for each
    /// byte of the signed transaction beyond [`FREE_TRANSACTION_BYTES`]; saturating so a hostile
    /// transaction cannot overflow it.
    pub fn intrinsic_gas(&self) -> u64 {
        byte_gas(self.signed_len() as u64).saturating_add(self.operations_gas())
    }

    /// The operations' gas alone, summed (saturating).
    pub fn operations_gas(&self) -> u64 {
        self.operations
            .iter()
            .fold(0u64, |acc, op| acc.saturating_add(op.gas()))
    }

    /// Length of the Borsh encoding of this transaction once signed: the body and the 64-byte
    /// signature, the bytes a block carries.
    pub fn signed_len(&self) -> usize {
        // Writing into a counter cannot fail.
        borsh::object_length(self)
            .unwrap_or(usize::MAX)
            .saturating_add(64)
    }
}

/// The byte gas of a signed transaction of `bytes` bytes: [`GAS_PER_BYTE`] for each beyond
/// [`FREE_TRANSACTION_BYTES`].
pub fn byte_gas(bytes: u64) -> u64 {
    bytes
        .saturating_sub(FREE_TRANSACTION_BYTES)
        .saturating_mul(GAS_PER_BYTE)
}

impl SignedTransaction {
    /// Length of its Borsh encoding, as carried in a block (see [`Transaction::signed_len`]).
    pub fn encoded_len(&self) -> usize {
        self.transaction.signed_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn tx(operations: Vec<Operation>) -> Transaction {
        Transaction {
            chain_id: "vexidus-dev".into(),
            sender: PublicKey([1; 32]),
            nonce: 0,
            max_gas: 0,
            valid_until: 10,
            operations,
        }
    }

    #[test]
    fn bytes_beyond_the_first_kib_cost_gas() {
        let transfer = tx(vec![Operation::Transfer {
            to: Address([2; 32]),
            amount: 1,
        }]);
        assert!(transfer.signed_len() < 200, "{}", transfer.signed_len());
        assert_eq!(transfer.intrinsic_gas(), 21_000);
        let text = tx(vec![Operation::CreateProposal {
            kind: ProposalKind::Text {
                title: String::new(),
                body: "x".repeat(1 << 20),
            },
        }]);
        let len = text.signed_len() as u64;
        assert_eq!(
            len,
            borsh::to_vec(&text).expect("encodes").len() as u64 + 64
        );
        assert_eq!(text.intrinsic_gas(), 80_000 + 16 * (len - 1024));
    }

    /// The wire format is pinned: these bytes may never change.
    #[test]
    fn discriminants_are_fixed_on_the_wire() {
        let cases: Vec<(Operation, u8)> = vec![
            (
                Operation::Transfer {
                    to: Address([1; 32]),
                    amount: 5,
                },
                0,
            ),
            (
                Operation::RegisterValidator {
                    stake: 1,
                    commission_bps: 2,
                },
                1,
            ),
            (
                Operation::Delegate {
                    validator: Address([0; 32]),
                    amount: 1,
                },
                2,
            ),
            (
                Operation::Undelegate {
                    validator: Address([0; 32]),
                    amount: 1,
                },
                3,
            ),
            (Operation::ClaimRewards, 4),
            (Operation::Unjail, 5),
            (
                Operation::ScheduleUpgrade {
                    name: "a".into(),
                    height: 1,
                    info_url: String::new(),
                    target: UpgradeTarget::Runtime { code: vec![] },
                },
                46,
            ),
            (Operation::CancelUpgrade { name: "a".into() }, 47),
            (
                Operation::VoteUpgrade {
                    name: "a".into(),
                    approve: true,
                },
                48,
            ),
            (
                Operation::CreateProposal {
                    kind: ProposalKind::Text {
                        title: String::new(),
                        body: String::new(),
                    },
                },
                60,
            ),
            (
                Operation::VoteProposal {
                    id: 0,
                    approve: true,
                },
                61,
            ),
            (Operation::ExecuteProposal { id: 0 }, 62),
            (Operation::CancelProposal { id: 0 }, 63),
            (
                Operation::CreateMultiSig {
                    signers: vec![],
                    threshold: 1,
                    label: String::new(),
                },
                64,
            ),
            (
                Operation::ProposeMultiSig {
                    multisig: Address([0; 32]),
                    op: Box::new(Operation::ClaimRewards),
                },
                65,
            ),
            (
                Operation::ApproveMultiSig {
                    multisig: Address([0; 32]),
                    proposal_id: 0,
                },
                66,
            ),
            (
                Operation::RevokeMultiSig {
                    multisig: Address([0; 32]),
                    proposal_id: 0,
                },
                67,
            ),
        ];
        for (op, disc) in cases {
            assert_eq!(op.discriminant(), disc, "{}", op.name());
            let borsh_bytes = borsh::to_vec(&op).expect("encodes");
            assert_eq!(borsh_bytes[0], disc, "borsh discriminant of {}", op.name());
            assert_eq!(op.encode()[0], disc, "SCALE index of {}", op.name());
            let back: Operation = borsh::from_slice(&borsh_bytes).expect("decodes");
            assert_eq!(back, op);
        }
        // A transfer, byte for byte: discriminant, address, u128 little-endian.
        let t = Operation::Transfer {
            to: Address([7; 32]),
            amount: 258,
        };
        let mut expected = vec![0u8];
        expected.extend_from_slice(&[7; 32]);
        expected.extend_from_slice(&258u128.to_le_bytes());
        assert_eq!(borsh::to_vec(&t).expect("encodes"), expected);
    }

    /// `levels` multisig proposals wrapped in one another around a transfer, as Borsh bytes
    /// built by hand (building the value itself would recurse to drop it).
    fn nested_borsh(levels: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(levels * 33 + 49);
        for _ in 0..levels {
            bytes.push(65);
            bytes.extend_from_slice(&[9; 32]);
        }
        bytes.extend(borsh::to_vec(&Operation::ClaimRewards).expect("encodes"));
        bytes
    }

    fn nested(levels: usize) -> Operation {
        let mut op = Operation::ClaimRewards;
        for _ in 0..levels {
            op = Operation::ProposeMultiSig {
                multisig: Address([9; 32]),
                op: Box::new(op),
            };
        }
        op
    }

    #[test]
    fn multisig_nesting_decodes_up_to_the_limit_and_is_refused_beyond() {
        for levels in 1..=MAX_MULTISIG_NESTING {
            let op: Operation = borsh::from_slice(&nested_borsh(levels)).expect("within the limit");
            assert_eq!(op, nested(levels));
            assert_eq!(borsh::to_vec(&op).expect("encodes"), nested_borsh(levels));
        }
        for levels in [MAX_MULTISIG_NESTING + 1, 1_000, 100_000] {
            let err =
                borsh::from_slice::<Operation>(&nested_borsh(levels)).expect_err("nested too deep");
            assert!(
                err.to_string().contains("nested more than 4 deep"),
                "{levels}: {err}"
            );
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn multisig_nesting_is_limited_in_json_too() {
        fn json(levels: usize) -> String {
            let mut s = String::new();
            for _ in 0..levels {
                s.push_str(r#"{"ProposeMultiSig":{"multisig":"#);
                s.push_str(&serde_json::to_string(&Address([9; 32])).expect("address"));
                s.push_str(r#","op":"#);
            }
            s.push_str(r#""ClaimRewards""#);
            for _ in 0..levels {
                s.push_str("}}");
            }
            s
        }
        for levels in 1..=MAX_MULTISIG_NESTING {
            let op: Operation = serde_json::from_str(&json(levels)).expect("within the limit");
            assert_eq!(op, nested(levels));
        }
        let err = serde_json::from_str::<Operation>(&json(MAX_MULTISIG_NESTING + 1))
            .expect_err("nested too deep");
        assert!(err.to_string().contains("nested more than 4 deep"), "{err}");
        // Deeper still, serde_json's own recursion limit may answer first; either way it is
        // an error, not a stack overflow.
        assert!(serde_json::from_str::<Operation>(&json(100_000)).is_err());
        // The depth counter is back at zero after an error.
        let op: Operation = serde_json::from_str(&json(MAX_MULTISIG_NESTING)).expect("again");
        assert_eq!(op, nested(MAX_MULTISIG_NESTING));
    }

    #[test]
    fn reserved_discriminants_do_not_decode() {
        for d in (6u8..=45).chain(49..=59).chain(68..=255) {
            assert!(borsh::from_slice::<Operation>(&[d]).is_err(), "{d}");
        }
    }
}
