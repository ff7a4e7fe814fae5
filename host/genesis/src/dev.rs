//! The development chain of `--dev`. The JSON genesis file format lives in
//! [`vexidus_runtime_api::genesis_file`].

pub use vexidus_runtime_api::genesis_file::GenesisFile;

use vexidus_runtime_api::signing::{Keypair, dev_seed};
use vexidus_runtime_api::state::GenesisValidator;
use vexidus_runtime_api::{
    GenesisConfig, GovernanceMode, GovernanceSettings, NANO_PER_VXS, Parameters,
};

/// Chain id of the development chain.
pub const DEV_CHAIN_ID: &str = "vexidus-dev";

/// Seeds of the prefunded development accounts besides the validator: `blake3("vexidus/dev/<name>")`.
pub const DEV_ACCOUNTS: &[&str] = &["bob", "charlie", "dave"];

/// The seed of a named development account.
pub fn dev_account_seed(name: &str) -> [u8; 32] {
    *blake3::hash(format!("vexidus/dev/{name}").as_bytes()).as_bytes()
}

/// The development chain: the well-known dev key (`vexidus keys dev`) is its only validator and
/// its upgrade authority; it and a few named accounts start funded; blocks every second;
/// upgrades need only 10 blocks of lead.
pub fn dev_genesis() -> GenesisConfig {
    let alice = Keypair::from_seed(dev_seed()).public();
    let mut balances = vec![(alice.address(), 1_000_000 * NANO_PER_VXS)];
    for name in DEV_ACCOUNTS {
        balances.push((
            Keypair::from_seed(dev_account_seed(name))
                .public()
                .address(),
            100_000 * NANO_PER_VXS,
        ));
    }
    GenesisConfig {
        chain_id: DEV_CHAIN_ID.into(),
        block_time_ms: 1_000,
        balances,
        validators: vec![GenesisValidator {
            public_key: alice,
            stake: 100_000 * NANO_PER_VXS,
            commission_bps: 500,
        }],
        governance: GovernanceSettings {
            mode: GovernanceMode::SeedAuthority,
            upgrade_authority: alice,
        },
        // Short upgrade leads and grace so upgrades can be tried out in minutes, not hours.
        parameters: Parameters {
            upgrade_min_lead_blocks: 10,
            upgrade_grace_blocks: 10,
            ..Parameters::default()
        },
    }
}
