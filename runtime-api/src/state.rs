//! Values the runtime keeps in state and hands to the host: accounts, validators, parameters,
//! governance settings, the runtime version and the genesis configuration.

use crate::NANO_PER_VXS;
use crate::primitives::{Address, Hash, PublicKey};
use crate::transaction::{ProposalKind, UpgradeTarget};
use alloc::{string::String, vec::Vec};
use borsh::{BorshDeserialize, BorshSerialize};
use parity_scale_codec::{Decode, Encode};

/// An account: spendable balance and the next nonce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct AccountInfo {
    /// Spendable balance in nanoVXS.
    pub balance: u128,
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
}

/// A registered validator.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ValidatorInfo {
    /// The validator's signing key.
    pub public_key: PublicKey,
    /// Its address (`blake3(public_key)`).
    pub address: Address,
    /// Bonded self-stake in nanoVXS.
    pub self_stake: u128,
    /// Stake delegated to it by others, in nanoVXS.
    pub delegated: u128,
    /// Commission in basis points.
    pub commission_bps: u16,
    /// Jailed until this height (exclusive); 0 when never jailed.
    pub jailed_until: u64,
    /// Rewards accrued and not yet claimed, in nanoVXS.
    pub unclaimed_rewards: u128,
    /// Height at which it registered (0 for genesis validators).
    pub registered_at: u64,
}

impl ValidatorInfo {
    /// Total stake that counts for consensus weight.
    pub fn total_stake(&self) -> u128 {
        self.self_stake.saturating_add(self.delegated)
    }

    /// Whether the validator is jailed at `height`.
    pub fn is_jailed_at(&self, height: u64) -> bool {
        height < self.jailed_until
    }
}

/// The protocol parameters of SPEC §6 with their current values. In JSON (genesis files, RPC)
/// the fields keep their names; omitted ones take their defaults.
///
/// SCALE: the fields in order. Fields are only ever appended, and a decoder that meets the end
/// of its input where a later field would start gives that field its default: the parameters
/// an older runtime answers or stored decode here, and what this encodes decodes in an older
/// runtime (which stops reading before the new fields). So `Parameters` is always the last
/// thing in an encoding (a query answer, a storage value, the genesis configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode)]
#[cfg_attr(
    feature = "std",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct Parameters {
    /// nanoVXS per gas.
    pub gas_price: u128,
    /// Most transactions in one block.
    pub max_txs_per_block: u32,
    /// Least self-stake to register a validator (nanoVXS).
    pub min_stake: u128,
    /// Highest commission (basis points).
    pub max_commission_bps: u16,
    /// Vote length in blocks.
    pub voting_period_blocks: u64,
    /// Quorum in percent.
    pub quorum_percent: u8,
    /// Least lead from scheduling to target height, in blocks.
    pub upgrade_min_lead_blocks: u64,
    /// Grace period after an upgrade, in blocks.
    pub upgrade_grace_blocks: u64,
    /// Largest runtime blob in bytes.
    pub max_runtime_code_bytes: u32,
    /// Most bytes of transactions in one block (their Borsh encodings, as on the wire).
    pub max_block_bytes: u32,
}

impl Decode for Parameters {
    fn decode<I: parity_scale_codec::Input>(
        input: &mut I,
    ) -> Result<Self, parity_scale_codec::Error> {
        let mut p = Parameters {
            gas_price: Decode::decode(input)?,
            max_txs_per_block: Decode::decode(input)?,
            min_stake: Decode::decode(input)?,
            max_commission_bps: Decode::decode(input)?,
            voting_period_blocks: Decode::decode(input)?,
            quorum_percent: Decode::decode(input)?,
            upgrade_min_lead_blocks: Decode::decode(input)?,
            upgrade_grace_blocks: Decode::decode(input)?,
            max_runtime_code_bytes: Decode::decode(input)?,
            max_block_bytes: Parameters::default().max_block_bytes,
        };
        // Appended fields: present unless the input ends here.
        if input.remaining_len()? != Some(0) {
            p.max_block_bytes = Decode::decode(input)?;
        }
        Ok(p)
    }
}

impl Parameters {
    /// The value of one parameter.
    pub fn get(&self, key: crate::transaction::ParamKey) -> u128 {
        use crate::transaction::ParamKey as K;
        match key {
            K::GasPrice => self.gas_price,
            K::MaxTxsPerBlock => self.max_txs_per_block as u128,
            K::MinStake => self.min_stake,
            K::MaxCommissionBps => self.max_commission_bps as u128,
            K::VotingPeriodBlocks => self.voting_period_blocks as u128,
            K::QuorumPercent => self.quorum_percent as u128,
            K::UpgradeMinLeadBlocks => self.upgrade_min_lead_blocks as u128,
            K::UpgradeGraceBlocks => self.upgrade_grace_blocks as u128,
            K::MaxRuntimeCodeBytes => self.max_runtime_code_bytes as u128,
            K::MaxBlockBytes => self.max_block_bytes as u128,
        }
    }

    /// Why these parameters contradict each other, if they do: a runtime upgrade of the largest
    /// allowed blob must fit in a block.
    pub fn inconsistency(&self) -> Option<alloc::string::String> {
        let needed = u64::from(self.max_runtime_code_bytes)
            + crate::transaction::RUNTIME_UPGRADE_ENVELOPE_BYTES as u64;
        (needed > u64::from(self.max_block_bytes)).then(|| {
            alloc::format!(
                "max_runtime_code_bytes {} needs blocks of {needed} bytes to carry an upgrade, \
                 but max_block_bytes is {}",
                self.max_runtime_code_bytes,
                self.max_block_bytes
            )
        })
    }

    /// The first parameter outside its bounds, with its value.
    pub fn out_of_bounds(&self) -> Option<(crate::transaction::ParamKey, u128)> {
        crate::transaction::ParamKey::ALL.into_iter().find_map(|k| {
            let (min, max) = k.bounds();
            let v = self.get(k);
            (v < min || v > max).then_some((k, v))
        })
    }
}

impl Default for Parameters {
    fn default() -> Self {
        Self {
            gas_price: 10,
            max_txs_per_block: 10_000,
            min_stake: 1_000 * NANO_PER_VXS,
            max_commission_bps: 5_000,
            voting_period_blocks: 500,
            quorum_percent: 67,
            upgrade_min_lead_blocks: 100,
            upgrade_grace_blocks: 100,
            max_runtime_code_bytes: 4 * 1024 * 1024,
            max_block_bytes: 6 * 1024 * 1024,
        }
    }
}

/// How upgrade plans are approved.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Encode, Decode,
)]
#[cfg_attr(
    feature = "std",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum GovernanceMode {
    /// A plan is approved the moment the authority schedules it.
    #[default]
    #[codec(index = 0)]
    SeedAuthority,
    /// A plan opens a stake-weighted vote of the active validators.
    #[codec(index = 1)]
    Full,
}

impl GovernanceMode {
    /// The name used on the command line and in RPC (`seed-authority`, `full`).
    pub fn as_str(&self) -> &'static str {
        match self {
            GovernanceMode::SeedAuthority => "seed-authority",
            GovernanceMode::Full => "full",
        }
    }
}

/// Chain-level governance settings fixed in genesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct GovernanceSettings {
    /// Approval mode of upgrade plans.
    pub mode: GovernanceMode,
    /// The key allowed to schedule and cancel upgrades.
    pub upgrade_authority: PublicKey,
}

/// A validator present at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct GenesisValidator {
    /// Its signing key.
    pub public_key: PublicKey,
    /// Bonded self-stake in nanoVXS (minted at genesis, on top of balances).
    pub stake: u128,
    /// Commission in basis points.
    pub commission_bps: u16,
}

/// Everything a chain starts from. The runtime blob itself is stored by the host under `:code`
/// before `vex_genesis_build` runs.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct GenesisConfig {
    /// The chain's identifier; part of every signing message.
    pub chain_id: String,
    /// Target block interval in milliseconds (not governable).
    pub block_time_ms: u64,
    /// Initial balances in nanoVXS.
    pub balances: Vec<(Address, u128)>,
    /// Initial validators.
    pub validators: Vec<GenesisValidator>,
    /// Governance settings.
    pub governance: GovernanceSettings,
    /// Initial protocol parameters.
    pub parameters: Parameters,
}

/// A runtime's identity, read by the host from the `vexidus_runtime_version` custom section
/// without executing the blob.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Encode, Decode)]
#[cfg_attr(feature = "std", derive(serde::Serialize, serde::Deserialize))]
pub struct RuntimeVersion {
    /// The runtime family; an upgrade must keep it.
    pub spec_name: String,
    /// Monotonic version of the state-transition rules; an upgrade must raise it.
    pub spec_version: u32,
    /// Version of the implementation of the same rules.
    pub impl_version: u32,
    /// The host⇄runtime ABI the blob is built against (see [`crate::abi`]).
    pub abi_version: u32,
}

/// Where an upgrade plan stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
#[cfg_attr(
    feature = "std",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum PlanStatus {
    /// Waiting for votes (`full` mode).
    #[codec(index = 0)]
    Voting,
    /// Approved; waits for its height.
    #[codec(index = 1)]
    Approved,
    /// Carried out at its height.
    #[codec(index = 2)]
    Executed,
    /// Cancelled by the authority.
    #[codec(index = 3)]
    Cancelled,
    /// Not approved in time.
    #[codec(index = 4)]
    Expired,
    /// A runtime upgrade whose migration failed.
    #[codec(index = 5)]
    Aborted,
}

impl PlanStatus {
    /// The status in words.
    pub fn as_str(&self) -> &'static str {
        match self {
            PlanStatus::Voting => "voting",
            PlanStatus::Approved => "approved",
            PlanStatus::Executed => "executed",
            PlanStatus::Cancelled => "cancelled",
            PlanStatus::Expired => "expired",
            PlanStatus::Aborted => "aborted",
        }
    }
}

/// An upgrade plan (operation 46).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct UpgradePlan {
    /// Unique name.
    pub name: String,
    /// Target height.
    pub height: u64,
    /// Release notes.
    pub info_url: String,
    /// What is upgraded. For runtime targets the code is kept under its own key and this holds
    /// an empty `code`; see `code_hash`.
    pub target: UpgradeTarget,
    /// blake3 of the runtime code, for runtime targets.
    pub code_hash: Option<Hash>,
    /// Height it was scheduled at.
    pub scheduled_at: u64,
    /// Status.
    pub status: PlanStatus,
    /// Stake snapshot taken at scheduling: (validator, weight), sorted by address.
    pub snapshot: Vec<(Address, u128)>,
    /// Votes cast: (validator, approve), sorted by address.
    pub votes: Vec<(Address, bool)>,
}

/// A parameter-governance proposal (operation 60).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Proposal {
    /// Id, assigned in order from 0.
    pub id: u64,
    /// Who created it.
    pub proposer: Address,
    /// What it does.
    pub kind: ProposalKind,
    /// Height it was created at.
    pub created_at: u64,
    /// Stake snapshot of the active validators at creation: (validator, weight), by address.
    pub snapshot: Vec<(Address, u128)>,
    /// Votes cast: (validator, approve), sorted by address.
    pub votes: Vec<(Address, bool)>,
    /// Whether it was executed.
    pub executed: bool,
    /// Whether its proposer cancelled it.
    pub cancelled: bool,
}

/// A multisig account (operation 64).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct MultiSigAccount {
    /// Who may propose and approve, sorted, unique.
    pub signers: Vec<Address>,
    /// Approvals needed.
    pub threshold: u8,
    /// Label.
    pub label: String,
    /// Id the next proposed operation gets.
    pub next_id: u64,
}

/// An operation waiting for a multisig account's approvals.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct PendingMultiSigOp {
    /// The operation, sent as the multisig account once approved.
    pub op: crate::transaction::Operation,
    /// Who proposed it.
    pub proposer: Address,
    /// Signers who approve it, sorted.
    pub approvals: Vec<Address>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// The layout before `max_block_bytes`, as a runtime of spec_version 1 reads and writes it.
    #[derive(Debug, PartialEq, Eq, Encode, Decode)]
    struct ParametersSpec1 {
        gas_price: u128,
        max_txs_per_block: u32,
        min_stake: u128,
        max_commission_bps: u16,
        voting_period_blocks: u64,
        quorum_percent: u8,
        upgrade_min_lead_blocks: u64,
        upgrade_grace_blocks: u64,
        max_runtime_code_bytes: u32,
    }

    fn spec1(p: &Parameters) -> ParametersSpec1 {
        ParametersSpec1 {
            gas_price: p.gas_price,
            max_txs_per_block: p.max_txs_per_block,
            min_stake: p.min_stake,
            max_commission_bps: p.max_commission_bps,
            voting_period_blocks: p.voting_period_blocks,
            quorum_percent: p.quorum_percent,
            upgrade_min_lead_blocks: p.upgrade_min_lead_blocks,
            upgrade_grace_blocks: p.upgrade_grace_blocks,
            max_runtime_code_bytes: p.max_runtime_code_bytes,
        }
    }

    #[test]
    fn parameters_of_the_previous_layout_decode_with_the_default_budget_and_back() {
        let p = Parameters {
            gas_price: 7,
            max_block_bytes: 3 << 20,
            ..Parameters::default()
        };
        assert_eq!(Parameters::decode(&mut &p.encode()[..]), Ok(p));
        // What an older runtime answers or stored: the new field takes its default.
        let old = spec1(&p).encode();
        assert_eq!(
            Parameters::decode(&mut &old[..]),
            Ok(Parameters {
                max_block_bytes: Parameters::default().max_block_bytes,
                ..p
            })
        );
        // What this encodes, an older runtime reads as it always did.
        assert_eq!(ParametersSpec1::decode(&mut &p.encode()[..]), Ok(spec1(&p)));
        // Truncated inside a field is still an error, not a default.
        let mut cut: Vec<u8> = p.encode();
        cut.truncate(cut.len() - 2);
        assert!(Parameters::decode(&mut &cut[..]).is_err());
    }

    #[test]
    fn the_default_parameters_are_in_bounds_and_consistent() {
        let p = Parameters::default();
        assert_eq!(p.out_of_bounds(), None);
        assert_eq!(p.inconsistency(), None);
        let tight = Parameters {
            max_block_bytes: p.max_runtime_code_bytes,
            ..p
        };
        assert!(
            tight
                .inconsistency()
                .is_some_and(|why| why.contains("needs blocks of")),
            "{tight:?}"
        );
    }
}
