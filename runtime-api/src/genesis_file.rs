//! The JSON genesis file (`--genesis FILE`, written by `vexidus genesis new`): the one
//! definition both the node and the CLI use.

use crate::state::GenesisValidator;
use crate::{Address, GenesisConfig, GovernanceMode, GovernanceSettings, Parameters, PublicKey};
use alloc::{format, string::String, vec::Vec};
use serde::{Deserialize, Serialize};

/// The JSON form of a genesis file (`--genesis FILE`). Amounts are integers in nanoVXS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisFile {
    /// Chain id.
    pub chain_id: String,
    /// Block time in milliseconds.
    pub block_time_ms: u64,
    /// Initial balances.
    pub balances: Vec<BalanceEntry>,
    /// Initial validators.
    pub validators: Vec<ValidatorEntry>,
    /// `seed-authority` or `full`.
    pub governance_mode: String,
    /// The upgrade authority's public key (`0x` + 64 hex).
    pub upgrade_authority: String,
    /// Parameters; omitted ones take their defaults.
    #[serde(default)]
    pub parameters: Parameters,
    /// The failover unit in milliseconds: the backups of a slot may produce 5, 8, 11 … units
    /// after the block interval (SPEC §10: 1000). Part of block validity, so every node of a
    /// chain must use the same; kept by the node beside the genesis, not in runtime state.
    #[serde(default = "default_failover_base_ms")]
    pub failover_base_ms: u64,
    /// The released runtime the chain starts on, by spec_version (the node carries every
    /// release); omitted: the runtime the node was built with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_spec_version: Option<u32>,
}

/// The failover unit of SPEC §10.
pub const DEFAULT_FAILOVER_BASE_MS: u64 = 1_000;

fn default_failover_base_ms() -> u64 {
    DEFAULT_FAILOVER_BASE_MS
}

/// One funded account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceEntry {
    /// Address.
    pub address: String,
    /// nanoVXS.
    pub amount: u128,
}

/// One genesis validator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorEntry {
    /// Public key.
    pub public_key: String,
    /// Stake in nanoVXS.
    pub stake: u128,
    /// Commission in basis points.
    pub commission_bps: u16,
}

impl GenesisFile {
    /// The file form of a configuration.
    pub fn from_config(c: &GenesisConfig) -> Self {
        Self {
            chain_id: c.chain_id.clone(),
            block_time_ms: c.block_time_ms,
            balances: c
                .balances
                .iter()
                .map(|(a, amount)| BalanceEntry {
                    address: a.to_string(),
                    amount: *amount,
                })
                .collect(),
            validators: c
                .validators
                .iter()
                .map(|v| ValidatorEntry {
                    public_key: v.public_key.to_string(),
                    stake: v.stake,
                    commission_bps: v.commission_bps,
                })
                .collect(),
            governance_mode: c.governance.mode.as_str().into(),
            upgrade_authority: c.governance.upgrade_authority.to_string(),
            parameters: c.parameters,
            failover_base_ms: DEFAULT_FAILOVER_BASE_MS,
            runtime_spec_version: None,
        }
    }

    /// Checks the file and turns it into a configuration for a new chain; the error says which
    /// field is wrong.
    pub fn into_config(self) -> Result<GenesisConfig, String> {
        let config = self.into_config_as_started()?;
        let parameters = &config.parameters;
        if let Some((key, value)) = parameters.out_of_bounds() {
            let (min, max) = key.bounds();
            return Err(format!(
                "parameters.{} = {value} is out of bounds: allowed {min} to {max}",
                key.as_str()
            ));
        }
        if let Some(why) = parameters.inconsistency() {
            return Err(format!("parameters: {why}"));
        }
        Ok(config)
    }

    /// The configuration of a chain that already exists, without checking its parameters
    /// against today's bounds: a chain started under wider bounds (a runtime upgrade narrowed
    /// them and migrated its state) must still open. The node compares it with the genesis
    /// it stored.
    pub fn into_config_as_started(self) -> Result<GenesisConfig, String> {
        let mode = match self.governance_mode.as_str() {
            "seed-authority" => GovernanceMode::SeedAuthority,
            "full" => GovernanceMode::Full,
            other => {
                return Err(format!(
                    "governance_mode {other:?}: expected \"seed-authority\" or \"full\""
                ));
            }
        };
        let upgrade_authority = PublicKey::from_hex(&self.upgrade_authority)
            .map_err(|e| format!("upgrade_authority: {e}"))?;
        let balances = self
            .balances
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                Ok((
                    Address::from_hex(&b.address)
                        .map_err(|e| format!("balances[{i}].address: {e}"))?,
                    b.amount,
                ))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let validators = self
            .validators
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                Ok(GenesisValidator {
                    public_key: PublicKey::from_hex(&v.public_key)
                        .map_err(|e| format!("validators[{i}].public_key: {e}"))?,
                    stake: v.stake,
                    commission_bps: v.commission_bps,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if validators.is_empty() {
            return Err("validators: a chain needs at least one validator".into());
        }
        if self.block_time_ms == 0 {
            return Err("block_time_ms must be positive".into());
        }
        if !(1..=60_000).contains(&self.failover_base_ms) {
            return Err(format!(
                "failover_base_ms = {} is out of bounds: allowed 1 to 60000",
                self.failover_base_ms
            ));
        }
        let parameters = self.parameters;
        Ok(GenesisConfig {
            chain_id: self.chain_id,
            block_time_ms: self.block_time_ms,
            balances,
            validators,
            governance: GovernanceSettings {
                mode,
                upgrade_authority,
            },
            parameters,
        })
    }

    /// Reads a genesis file (its fields are checked by [`Self::into_config`]).
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read genesis file {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("genesis file {} is not valid: {e}", path.display()))
    }

    /// Reads and checks a genesis file.
    pub fn load(path: &std::path::Path) -> Result<GenesisConfig, String> {
        Self::read(path)?
            .into_config()
            .map_err(|e| format!("genesis file {}: {e}", path.display()))
    }
}
