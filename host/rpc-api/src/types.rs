//! The answers of the RPC methods and the items of its subscriptions, as the node writes them
//! and clients read them. A client refuses an answer that lacks a field, naming the field:
//! fields that may be empty are `null`, never left out (`required`).

use crate::hex::{H256, bare_hex, bare_hex_opt, required};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use vexidus_runtime_api::abi::{LivenessView, PlanView, ProposalView};
use vexidus_runtime_api::block::Event;
use vexidus_runtime_api::serde_amount::deserialize as amount;
use vexidus_runtime_api::state::{GovernanceMode, Parameters, PlanStatus};
use vexidus_runtime_api::transaction::{ParamKey, ProposalKind, UpgradeTarget};
use vexidus_runtime_api::{
    Address, Block, Hash, PublicKey, Receipt, RuntimeVersion, Signature, SignedTransaction,
    ValidatorInfo,
};

/// The running runtime (`vex_getRuntimeVersion`, and `runtime` in `vex_getStatus`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    /// Runtime name.
    pub spec_name: String,
    /// Version of the state transition; bumped by every upgrade that changes behaviour.
    pub spec_version: u32,
    /// Version of the implementation.
    pub impl_version: u32,
    /// Host-runtime ABI the blob was built against.
    pub abi_version: u32,
    /// blake3 of the blob.
    pub code_hash: H256,
}

impl RuntimeInfo {
    /// The view of `version` with its code hash.
    pub fn new(version: &RuntimeVersion, code_hash: &Hash) -> Self {
        Self {
            spec_name: version.spec_name.clone(),
            spec_version: version.spec_version,
            impl_version: version.impl_version,
            abi_version: version.abi_version,
            code_hash: H256(*code_hash),
        }
    }
}

/// `vex_getStatus`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Chain id transactions must carry.
    pub chain_id: String,
    /// Head height.
    pub height: u64,
    /// Height of the last irreversible block.
    pub finalized_height: u64,
    /// Hash of the last irreversible block.
    pub finalized_hash: H256,
    /// Hash of the head.
    pub head_hash: H256,
    /// State root after the head.
    pub state_root: H256,
    /// Connected peers.
    pub peers: u64,
    /// Transactions waiting in the pool.
    pub pending_transactions: u64,
    /// Their encoded bytes.
    pub pending_bytes: u64,
    /// The node's validator key, when it validates.
    #[serde(deserialize_with = "required")]
    pub validator: Option<PublicKey>,
    /// Block interval of the chain.
    pub block_time_ms: u64,
    /// How upgrade plans are approved.
    pub governance_mode: GovernanceMode,
    /// The key that schedules upgrades.
    pub upgrade_authority: PublicKey,
    /// Until which height a newly activated runtime may still be rolled back by governance.
    #[serde(deserialize_with = "required")]
    pub upgrade_grace_until: Option<u64>,
    /// The running runtime.
    pub runtime: RuntimeInfo,
}

/// A block header with its hash: `vex_newHead` items and the head of every `vex_getBlock`
/// answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderView {
    /// Header hash.
    pub hash: H256,
    /// Height.
    pub height: u64,
    /// Parent's hash.
    pub parent_hash: H256,
    /// Proposer's timestamp.
    pub timestamp_ms: u64,
    /// Proposer's key.
    pub proposer: PublicKey,
    /// State root after the block.
    pub state_root: H256,
    /// Merkle root of the transactions.
    pub transactions_root: H256,
    /// Merkle root of the receipts.
    pub receipts_root: H256,
    /// Transactions in the block.
    pub transaction_count: u64,
}

impl HeaderView {
    /// The view of `block`, whose header hash is `hash`.
    pub fn new(block: &Block, hash: &Hash) -> Self {
        let h = &block.header;
        Self {
            hash: H256(*hash),
            height: h.height,
            parent_hash: H256(h.parent_hash),
            timestamp_ms: h.timestamp_ms,
            proposer: h.proposer,
            state_root: H256(h.state_root),
            transactions_root: H256(h.transactions_root),
            receipts_root: H256(h.receipts_root),
            transaction_count: block.transactions.len() as u64,
        }
    }
}

/// A block made irreversible (`vex_finalized` items).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalizedBlock {
    /// Its hash.
    pub hash: H256,
    /// Its height.
    pub height: u64,
}

/// An operation as RPC shows it: value-moving operations in full, any other by name and
/// discriminant (upgrade blobs and evidence are too large to echo).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperationView {
    /// A transfer.
    Transfer {
        /// Recipient.
        to: Address,
        /// nanoVXS.
        amount: u128,
    },
    /// A validator registration.
    RegisterValidator {
        /// Self-stake.
        stake: u128,
        /// Commission in basis points.
        commission_bps: u16,
    },
    /// A delegation.
    Delegate {
        /// Validator.
        validator: Address,
        /// nanoVXS.
        amount: u128,
    },
    /// An undelegation.
    Undelegate {
        /// Validator.
        validator: Address,
        /// nanoVXS.
        amount: u128,
    },
    /// Any other operation.
    Other {
        /// Its name (`ScheduleUpgrade`, ...).
        name: String,
        /// Its wire discriminant.
        discriminant: u8,
    },
}

/// The operations shown in full, tagged by `type`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type")]
enum Shown {
    Transfer {
        to: Address,
        #[serde(deserialize_with = "amount")]
        amount: u128,
    },
    RegisterValidator {
        #[serde(deserialize_with = "amount")]
        stake: u128,
        commission_bps: u16,
    },
    Delegate {
        validator: Address,
        #[serde(deserialize_with = "amount")]
        amount: u128,
    },
    Undelegate {
        validator: Address,
        #[serde(deserialize_with = "amount")]
        amount: u128,
    },
}

#[derive(Deserialize)]
struct NamedOperation {
    #[serde(rename = "type")]
    name: String,
    discriminant: u8,
}

impl From<&vexidus_runtime_api::Operation> for OperationView {
    fn from(op: &vexidus_runtime_api::Operation) -> Self {
        use vexidus_runtime_api::Operation as Op;
        match op {
            Op::Transfer { to, amount } => Self::Transfer {
                to: *to,
                amount: *amount,
            },
            Op::RegisterValidator {
                stake,
                commission_bps,
            } => Self::RegisterValidator {
                stake: *stake,
                commission_bps: *commission_bps,
            },
            Op::Delegate { validator, amount } => Self::Delegate {
                validator: *validator,
                amount: *amount,
            },
            Op::Undelegate { validator, amount } => Self::Undelegate {
                validator: *validator,
                amount: *amount,
            },
            other => Self::Other {
                name: other.name().into(),
                discriminant: other.discriminant(),
            },
        }
    }
}

impl Serialize for OperationView {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Self::Transfer { to, amount } => Shown::Transfer { to, amount }.serialize(s),
            Self::RegisterValidator {
                stake,
                commission_bps,
            } => Shown::RegisterValidator {
                stake,
                commission_bps,
            }
            .serialize(s),
            Self::Delegate { validator, amount } => {
                Shown::Delegate { validator, amount }.serialize(s)
            }
            Self::Undelegate { validator, amount } => {
                Shown::Undelegate { validator, amount }.serialize(s)
            }
            Self::Other {
                ref name,
                discriminant,
            } => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("type", name)?;
                m.serialize_entry("discriminant", &discriminant)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for OperationView {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let name = v
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| D::Error::missing_field("type"))?;
        let view = match name {
            "Transfer" | "RegisterValidator" | "Delegate" | "Undelegate" => {
                match Shown::deserialize(v).map_err(D::Error::custom)? {
                    Shown::Transfer { to, amount } => Self::Transfer { to, amount },
                    Shown::RegisterValidator {
                        stake,
                        commission_bps,
                    } => Self::RegisterValidator {
                        stake,
                        commission_bps,
                    },
                    Shown::Delegate { validator, amount } => Self::Delegate { validator, amount },
                    Shown::Undelegate { validator, amount } => {
                        Self::Undelegate { validator, amount }
                    }
                }
            }
            _ => {
                let n = NamedOperation::deserialize(v).map_err(D::Error::custom)?;
                Self::Other {
                    name: n.name,
                    discriminant: n.discriminant,
                }
            }
        };
        Ok(view)
    }
}

/// A transaction as RPC shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionView {
    /// Its hash.
    pub hash: H256,
    /// Chain id it was signed for.
    pub chain_id: String,
    /// Signer's key.
    pub sender: PublicKey,
    /// Signer's address.
    pub sender_address: Address,
    /// Nonce.
    pub nonce: u64,
    /// Gas limit.
    pub max_gas: u64,
    /// Last height it may be included at.
    pub valid_until: u64,
    /// What it does.
    pub operations: Vec<OperationView>,
}

impl From<&SignedTransaction> for TransactionView {
    fn from(tx: &SignedTransaction) -> Self {
        let t = &tx.transaction;
        Self {
            hash: H256(vexidus_runtime_api::signing::transaction_hash(tx)),
            chain_id: t.chain_id.clone(),
            sender: t.sender,
            sender_address: t.sender.address(),
            nonce: t.nonce,
            max_gas: t.max_gas,
            valid_until: t.valid_until,
            operations: t.operations.iter().map(OperationView::from).collect(),
        }
    }
}

/// What executing a transaction did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptView {
    /// Whether every operation succeeded (on failure all were reverted; the fee was charged).
    pub success: bool,
    /// The runtime's error, with the index of the failing operation.
    #[serde(deserialize_with = "required")]
    pub error: Option<String>,
    /// Gas charged.
    pub gas_used: u64,
    /// Fee charged in nanoVXS.
    #[serde(deserialize_with = "amount")]
    pub fee: u128,
    /// Events emitted, in order.
    pub events: Vec<Event>,
}

impl From<&Receipt> for ReceiptView {
    fn from(r: &Receipt) -> Self {
        Self {
            success: r.success,
            error: r.error.clone(),
            gas_used: r.gas_used,
            fee: r.fee,
            events: r.events.clone(),
        }
    }
}

/// A transaction of a block, with its receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncludedTransaction {
    /// The transaction.
    #[serde(flatten)]
    pub transaction: TransactionView,
    /// What executing it did.
    pub receipt: ReceiptView,
}

/// `vex_getBlock` with `full` (the default): the block with its transactions, their receipts
/// and the block's own events (those of the end-of-block hook).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullBlock {
    /// The header.
    #[serde(flatten)]
    pub header: HeaderView,
    /// The proposer's signature.
    pub signature: Signature,
    /// At or below the finalized height.
    pub finalized: bool,
    /// Events of the end-of-block hook.
    pub events: Vec<Event>,
    /// The transactions with their receipts.
    pub transactions: Vec<IncludedTransaction>,
}

/// `vex_getBlock` with `full` false: the header and the transaction hashes only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSummary {
    /// The header.
    #[serde(flatten)]
    pub header: HeaderView,
    /// At or below the finalized height.
    pub finalized: bool,
    /// Hashes of its transactions.
    pub transactions: Vec<H256>,
}

/// A `vex_getBlock` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockAnswer {
    /// With bodies and receipts.
    Full(Box<FullBlock>),
    /// Hashes only.
    Summary(Box<BlockSummary>),
}

impl BlockAnswer {
    /// The header of either form.
    pub fn header(&self) -> &HeaderView {
        match self {
            BlockAnswer::Full(b) => &b.header,
            BlockAnswer::Summary(b) => &b.header,
        }
    }
}

impl Serialize for BlockAnswer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BlockAnswer::Full(b) => b.serialize(s),
            BlockAnswer::Summary(b) => b.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for BlockAnswer {
    /// The full form carries the proposer's signature; the summary does not.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        if v.get("signature").is_some() {
            FullBlock::deserialize(v)
                .map(|b| BlockAnswer::Full(Box::new(b)))
                .map_err(D::Error::custom)
        } else {
            BlockSummary::deserialize(v)
                .map(|b| BlockAnswer::Summary(Box::new(b)))
                .map_err(D::Error::custom)
        }
    }
}

/// `vex_getTransaction` for a known transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum TransactionStatus {
    /// Waiting in this node's pool.
    Pending {
        /// Its hash.
        hash: H256,
    },
    /// In a canonical block.
    Included {
        /// Its hash.
        hash: H256,
        /// The block's height.
        height: u64,
        /// Its index in the block.
        index: u32,
        /// At or below the finalized height.
        finalized: bool,
        /// The block's hash.
        block_hash: H256,
        /// The transaction.
        transaction: Box<TransactionView>,
        /// What executing it did.
        receipt: ReceiptView,
    },
}

/// `vex_getAccount`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// The address.
    pub address: Address,
    /// Spendable nanoVXS.
    #[serde(deserialize_with = "amount")]
    pub balance: u128,
    /// The nonce its next transaction must carry.
    pub nonce: u64,
}

/// A validator with its missed-block record (`vex_getValidators`, `vex_getValidator`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorView {
    /// Its address.
    pub address: Address,
    /// Its signing key.
    pub public_key: PublicKey,
    /// Own stake in nanoVXS.
    #[serde(deserialize_with = "amount")]
    pub self_stake: u128,
    /// Delegated stake in nanoVXS.
    #[serde(deserialize_with = "amount")]
    pub delegated: u128,
    /// Both.
    #[serde(deserialize_with = "amount")]
    pub total_stake: u128,
    /// Commission in basis points.
    pub commission_bps: u16,
    /// Jailed below this height.
    pub jailed_until: u64,
    /// Rewards not yet claimed.
    #[serde(deserialize_with = "amount")]
    pub unclaimed_rewards: u128,
    /// Height of registration.
    pub registered_at: u64,
    /// Slots it was due to produce and did not.
    pub missed_blocks: u64,
    /// Such slots in a row, up to now.
    pub missed_streak: u32,
    /// Its last due slot was skipped.
    pub skipped: bool,
}

impl ValidatorView {
    /// The view of `v` with its record `live`.
    pub fn new(v: &ValidatorInfo, live: &LivenessView) -> Self {
        Self {
            address: v.address,
            public_key: v.public_key,
            self_stake: v.self_stake,
            delegated: v.delegated,
            total_stake: v.total_stake(),
            commission_bps: v.commission_bps,
            jailed_until: v.jailed_until,
            unclaimed_rewards: v.unclaimed_rewards,
            registered_at: v.registered_at,
            missed_blocks: live.missed_total,
            missed_streak: live.missed_streak,
            skipped: live.skipped,
        }
    }
}

/// `vex_getParameters`: every governed parameter. A client refuses an answer missing one
/// (the parameters' own reader fills gaps with defaults, as genesis files need).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ParametersView(pub Parameters);

impl<'de> Deserialize<'de> for ParametersView {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let every = serde_json::to_value(Parameters::default()).map_err(D::Error::custom)?;
        if let (Some(expected), Some(got)) = (every.as_object(), v.as_object())
            && let Some(missing) = expected.keys().find(|k| !got.contains_key(*k))
        {
            return Err(D::Error::custom(format!("missing field `{missing}`")));
        }
        Parameters::deserialize(v)
            .map(ParametersView)
            .map_err(D::Error::custom)
    }
}

/// What a binary or runtime plan installs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PlanTarget {
    /// A new node binary, fetched by vexvisor.
    Binary {
        /// Where to download it.
        binary_url: String,
        /// Its SHA-256, bare hex.
        #[serde(with = "bare_hex")]
        sha256: Vec<u8>,
        /// The authority's signature over the digest, bare hex.
        #[serde(with = "bare_hex_opt")]
        signature: Option<Vec<u8>>,
    },
    /// A new runtime blob, carried on chain.
    Runtime {
        /// blake3 of the blob.
        #[serde(deserialize_with = "required")]
        code_hash: Option<H256>,
    },
}

/// The votes on a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanTally {
    /// Approving weight.
    #[serde(deserialize_with = "amount")]
    pub approve: u128,
    /// Rejecting weight.
    #[serde(deserialize_with = "amount")]
    pub reject: u128,
    /// All weight of the snapshot.
    #[serde(deserialize_with = "amount")]
    pub total: u128,
    /// Share of `total` that must approve.
    pub quorum_percent: u8,
    /// Votes cast.
    pub votes: u64,
}

/// One validator's weight in a plan's snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotWeight {
    /// The validator.
    pub validator: Address,
    /// Its stake at scheduling.
    #[serde(deserialize_with = "amount")]
    pub weight: u128,
}

/// `vex_getUpgradePlan` and `vex_upgrade` items: the active plan and its tally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanAnswer {
    /// Its name.
    pub name: String,
    /// Height it takes effect at.
    pub height: u64,
    /// Where its notes are.
    pub info_url: String,
    /// Where it stands.
    pub status: PlanStatus,
    /// Height it was scheduled at.
    pub scheduled_at: u64,
    /// Last height of its vote.
    pub voting_ends_at: u64,
    /// What it installs.
    pub target: PlanTarget,
    /// The votes.
    pub tally: PlanTally,
    /// Voting weights, fixed at scheduling.
    pub snapshot: Vec<SnapshotWeight>,
}

impl From<&PlanView> for PlanAnswer {
    fn from(v: &PlanView) -> Self {
        let p = &v.plan;
        let target = match &p.target {
            UpgradeTarget::Binary {
                binary_url,
                sha256,
                signature,
            } => PlanTarget::Binary {
                binary_url: binary_url.clone(),
                sha256: sha256.clone(),
                signature: signature.clone(),
            },
            UpgradeTarget::Runtime { .. } => PlanTarget::Runtime {
                code_hash: p.code_hash.map(H256),
            },
        };
        Self {
            name: p.name.clone(),
            height: p.height,
            info_url: p.info_url.clone(),
            status: p.status,
            scheduled_at: p.scheduled_at,
            voting_ends_at: v.voting_ends_at,
            target,
            tally: PlanTally {
                approve: v.approve,
                reject: v.reject,
                total: v.total,
                quorum_percent: v.quorum_percent,
                votes: p.votes.len() as u64,
            },
            snapshot: p
                .snapshot
                .iter()
                .map(|(validator, weight)| SnapshotWeight {
                    validator: *validator,
                    weight: *weight,
                })
                .collect(),
        }
    }
}

/// What a proposal does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ProposalKindView {
    /// Sets a governed parameter.
    ParameterChange {
        /// Which.
        key: ParamKey,
        /// The new value.
        #[serde(deserialize_with = "amount")]
        value: u128,
    },
    /// Pays from the treasury.
    TreasurySpend {
        /// Recipient.
        to: Address,
        /// nanoVXS.
        #[serde(deserialize_with = "amount")]
        amount: u128,
    },
    /// Text only; binds nothing.
    Text {
        /// Title.
        title: String,
        /// Body.
        body: String,
    },
}

/// Where a proposal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProposalStatus {
    /// Open for votes, not yet passing.
    Open,
    /// Passing: executes when its vote ends.
    Passed,
    /// Carried out.
    Executed,
    /// Withdrawn.
    Cancelled,
}

/// The votes on a proposal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalTally {
    /// Approving weight.
    #[serde(deserialize_with = "amount")]
    pub approve: u128,
    /// Rejecting weight.
    #[serde(deserialize_with = "amount")]
    pub reject: u128,
    /// All weight of the snapshot.
    #[serde(deserialize_with = "amount")]
    pub total: u128,
    /// Votes cast.
    pub votes: u64,
}

/// `vex_getProposal`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalAnswer {
    /// Its id.
    pub id: u64,
    /// Who proposed it.
    pub proposer: Address,
    /// What it does.
    pub kind: ProposalKindView,
    /// Height it was made at.
    pub created_at: u64,
    /// Last height of its vote.
    pub voting_ends_at: u64,
    /// Where it stands.
    pub status: ProposalStatus,
    /// Why it does not pass (yet), when it does not.
    #[serde(deserialize_with = "required")]
    pub not_passed_because: Option<String>,
    /// The votes.
    pub tally: ProposalTally,
}

impl From<&ProposalView> for ProposalAnswer {
    fn from(v: &ProposalView) -> Self {
        let p = &v.proposal;
        let kind = match &p.kind {
            ProposalKind::ParameterChange { key, value } => ProposalKindView::ParameterChange {
                key: *key,
                value: *value,
            },
            ProposalKind::TreasurySpend { to, amount } => ProposalKindView::TreasurySpend {
                to: *to,
                amount: *amount,
            },
            ProposalKind::Text { title, body } => ProposalKindView::Text {
                title: title.clone(),
                body: body.clone(),
            },
        };
        let status = if p.executed {
            ProposalStatus::Executed
        } else if p.cancelled {
            ProposalStatus::Cancelled
        } else if v.passed.is_ok() {
            ProposalStatus::Passed
        } else {
            ProposalStatus::Open
        };
        Self {
            id: p.id,
            proposer: p.proposer,
            kind,
            created_at: p.created_at,
            voting_ends_at: v.voting_ends_at,
            status,
            not_passed_because: v.passed.as_ref().err().cloned(),
            tally: ProposalTally {
                approve: v.approve,
                reject: v.reject,
                total: v.total,
                votes: p.votes.len() as u64,
            },
        }
    }
}

/// `vex_getUpgradeReadiness`: this node's preparation for the pending runtime plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadinessView {
    /// The plan's name.
    pub plan: String,
    /// blake3 of its blob.
    #[serde(deserialize_with = "required")]
    pub code_hash: Option<H256>,
    /// The blob is compiled and ready to swap in.
    pub compiled: bool,
    /// Compilation is running.
    pub compiling: bool,
    /// How long compilation took.
    #[serde(deserialize_with = "required")]
    pub compile_ms: Option<u64>,
    /// Why compilation failed.
    #[serde(deserialize_with = "required")]
    pub compile_error: Option<String>,
    /// Blocks executed with the pending runtime beside the live one.
    pub blocks_run: u64,
    /// Of those, blocks in which the pending runtime failed.
    pub traps: u64,
    /// The last failure.
    #[serde(deserialize_with = "required")]
    pub last_error: Option<String>,
    /// Fuel of the live runtime over those blocks.
    #[serde(deserialize_with = "amount")]
    pub fuel_live: u128,
    /// Fuel of the pending runtime over the same blocks.
    #[serde(deserialize_with = "amount")]
    pub fuel_shadow: u128,
    /// `fuel_shadow / fuel_live`.
    #[serde(deserialize_with = "required")]
    pub fuel_ratio: Option<f64>,
    /// Shadow execution time over live execution time.
    #[serde(deserialize_with = "required")]
    pub time_ratio: Option<f64>,
}

/// A banned peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanView {
    /// Its peer id.
    pub peer: String,
    /// What it did.
    pub reason: String,
    /// Seconds until the ban lifts.
    pub remaining_s: u64,
}

/// `vex_getPeers`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersView {
    /// This node's peer id (none before the network is up, or without a network).
    #[serde(deserialize_with = "required")]
    pub peer_id: Option<String>,
    /// Connected peers.
    pub connected: Vec<String>,
    /// Banned peers.
    pub banned: Vec<BanView>,
}

/// What became of one transaction of `vex_submitTransactions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// Admitted, under this hash.
    Accepted(H256),
    /// Refused, for this reason.
    Refused(String),
}

impl Serialize for SubmitOutcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match self {
            SubmitOutcome::Accepted(hash) => m.serialize_entry("hash", hash)?,
            SubmitOutcome::Refused(error) => m.serialize_entry("error", error)?,
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for SubmitOutcome {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Either {
            hash: Option<H256>,
            error: Option<String>,
        }
        match Either::deserialize(d)? {
            Either { hash: Some(h), .. } => Ok(SubmitOutcome::Accepted(h)),
            Either { error: Some(e), .. } => Ok(SubmitOutcome::Refused(e)),
            _ => Err(D::Error::custom("missing field `hash` or `error`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_missing_a_field_is_refused_naming_the_field() {
        let account = AccountView {
            address: Address([3; 32]),
            balance: 5,
            nonce: 2,
        };
        let mut v = serde_json::to_value(&account).expect("serializes");
        assert_eq!(
            serde_json::from_value::<AccountView>(v.clone()).expect("reads"),
            account
        );
        v.as_object_mut().expect("object").remove("nonce");
        let e = serde_json::from_value::<AccountView>(v).expect_err("no nonce");
        assert!(e.to_string().contains("missing field `nonce`"), "{e}");

        let receipt = serde_json::json!({ "success": true, "gas_used": 1, "fee": 1, "events": [] });
        let e = serde_json::from_value::<ReceiptView>(receipt).expect_err("no error field");
        assert!(e.to_string().contains("missing field `error`"), "{e}");

        let mut params = serde_json::to_value(Parameters::default()).expect("serializes");
        let first = params
            .as_object()
            .and_then(|o| o.keys().next().cloned())
            .expect("a key");
        params.as_object_mut().expect("object").remove(&first);
        let e = serde_json::from_value::<ParametersView>(params).expect_err("a parameter missing");
        assert!(
            e.to_string().contains(&format!("missing field `{first}`")),
            "{e}"
        );
    }

    #[test]
    fn operations_keep_their_shape_and_others_show_name_and_discriminant() {
        let transfer = OperationView::Transfer {
            to: Address([1; 32]),
            amount: 7,
        };
        let v = serde_json::to_value(&transfer).expect("serializes");
        assert_eq!(v["type"], "Transfer");
        assert_eq!(v["amount"], 7);
        assert_eq!(
            serde_json::from_value::<OperationView>(v).expect("reads"),
            transfer
        );
        let other = OperationView::from(&vexidus_runtime_api::Operation::Unjail);
        let v = serde_json::to_value(&other).expect("serializes");
        assert_eq!(v["type"], "Unjail");
        assert_eq!(
            serde_json::from_value::<OperationView>(v).expect("reads"),
            other
        );
    }

    #[test]
    fn an_included_transaction_reads_back_with_its_receipt_and_events() {
        let key = vexidus_runtime_api::signing::Keypair::from_seed([5; 32]);
        let tx = key.sign_transaction(vexidus_runtime_api::Transaction {
            chain_id: "dev".into(),
            sender: key.public(),
            nonce: 0,
            max_gas: 21_000,
            valid_until: 9,
            operations: vec![vexidus_runtime_api::Operation::Transfer {
                to: Address([2; 32]),
                amount: 10_000_000_000_000_000_000,
            }],
        });
        let answer = TransactionStatus::Included {
            hash: H256([1; 32]),
            height: 3,
            index: 0,
            finalized: true,
            block_hash: H256([9; 32]),
            transaction: Box::new(TransactionView::from(&tx)),
            receipt: ReceiptView {
                success: true,
                error: None,
                gas_used: 21_000,
                fee: 21_000,
                events: vec![Event::FeePaid {
                    payer: key.public().address(),
                    fee: 21_000,
                    to_proposer: 16_800,
                    to_treasury: 4_200,
                }],
            },
        };
        let text = serde_json::to_string(&answer).expect("serializes");
        assert!(text.contains("\"status\":\"included\""), "{text}");
        assert_eq!(
            serde_json::from_str::<TransactionStatus>(&text).expect("reads"),
            answer
        );
    }

    #[test]
    fn submit_outcomes_are_a_hash_or_an_error() {
        for o in [
            SubmitOutcome::Accepted(H256([4; 32])),
            SubmitOutcome::Refused("no".into()),
        ] {
            let text = serde_json::to_string(&o).expect("serializes");
            assert_eq!(
                serde_json::from_str::<SubmitOutcome>(&text).expect("reads"),
                o
            );
        }
        assert!(serde_json::from_str::<SubmitOutcome>("{}").is_err());
    }
}
