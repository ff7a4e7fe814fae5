//! Where the runtime keeps things: storage keys and typed accessors.
//!
//! | key | value |
//! | --- | --- |
//! | `:code` | the runtime blob (written by the host at genesis, by upgrades later) |
//! | `:chain_id` | SCALE `String` |
//! | `:block_time_ms` | SCALE `u64` |
//! | `:params` | SCALE [`Parameters`] |
//! | `:governance` | SCALE [`GovernanceSettings`] |
//! | `:block_budget` | SCALE `(u32, u32)`: `max_txs_per_block` and `max_block_bytes` as the block began (see `executive::end_block`) |
//! | `:fee_split` | SCALE `u8`, proposer's fee share (written by the `next-example` migration) |
//! | `acct/` ‖ address | SCALE [`AccountInfo`] |
//! | `val/` ‖ address | SCALE [`ValidatorInfo`] |
//! | `dlg/` ‖ delegator ‖ validator | SCALE `u128` |
//! | `jail/n/` ‖ address | SCALE `u32`, double-sign offences (see [`crate::jail`]) |
//! | `jail/e/` ‖ address ‖ height BE ‖ kind | empty: an offence already punished |
//! | `jail/j/` ‖ address | SCALE `u64`: height of the block that last jailed it (see [`crate::jail`]) |
//!
//! Not state: the block totals (see `vexidus_runtime_api::abi`) [`FEES_TO_PROPOSER`] and
//! [`FEES_TO_TREASURY`], the fee shares of the block's transactions, paid out by `end_block`,
//! and [`BLOCK_BYTES`] and [`BLOCK_TRANSACTIONS`], its size, checked by `end_block`.

use crate::env::Env;
use alloc::vec::Vec;
use vexidus_runtime_api::{AccountInfo, Address, GovernanceSettings, Parameters, ValidatorInfo};

/// Chain id key.
pub const CHAIN_ID: &[u8] = b":chain_id";
/// Block time key.
pub const BLOCK_TIME: &[u8] = b":block_time_ms";
/// Parameters key.
pub const PARAMS: &[u8] = b":params";
/// Governance settings key.
pub const GOVERNANCE: &[u8] = b":governance";
/// The block budget in force for the current block, as it began.
pub const BLOCK_BUDGET: &[u8] = b":block_budget";
/// The proposer's fee share in percent (from the `next-example` runtime on).
pub const FEE_SPLIT: &[u8] = b":fee_split";
/// Prefix of accounts.
pub const ACCOUNT_PREFIX: &[u8] = b"acct/";
/// Prefix of validators.
pub const VALIDATOR_PREFIX: &[u8] = b"val/";
/// Prefix of delegations.
pub const DELEGATION_PREFIX: &[u8] = b"dlg/";

/// Block total: the proposer's shares of the block's fees so far.
pub const FEES_TO_PROPOSER: &[u8] = b"fees/proposer";
/// Block total: the treasury's shares of the block's fees so far.
pub const FEES_TO_TREASURY: &[u8] = b"fees/treasury";
/// Records the budget `params` set as the one the next blocks are measured by, if it changed.
pub fn set_block_budget(env: &mut impl Env, params: &Parameters) {
    let budget = (params.max_txs_per_block, params.max_block_bytes);
    if read::<(u32, u32)>(env, BLOCK_BUDGET) != Some(budget) {
        write(env, BLOCK_BUDGET, &budget);
    }
}

/// Block total: the encoded length of the block's transactions so far.
pub const BLOCK_BYTES: &[u8] = b"block/bytes";
/// Block total: the block's transactions so far.
pub const BLOCK_TRANSACTIONS: &[u8] = b"block/transactions";

fn key(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + parts.iter().map(|p| p.len()).sum::<usize>());
    k.extend_from_slice(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

pub use vexidus_runtime_api::guest::{read, write};

/// The account of `who` (zero when absent).
pub fn account(env: &mut impl Env, who: &Address) -> AccountInfo {
    read(env, &key(ACCOUNT_PREFIX, &[&who.0])).unwrap_or_default()
}

/// Stores the account of `who`; an empty account is removed so state stays small.
pub fn set_account(env: &mut impl Env, who: &Address, info: &AccountInfo) {
    let k = key(ACCOUNT_PREFIX, &[&who.0]);
    if *info == AccountInfo::default() {
        env.remove(&k);
    } else {
        write(env, &k, info);
    }
}

/// The validator registered at `who`.
pub fn validator(env: &mut impl Env, who: &Address) -> Option<ValidatorInfo> {
    read(env, &key(VALIDATOR_PREFIX, &[&who.0]))
}

/// Stores a validator.
pub fn set_validator(env: &mut impl Env, info: &ValidatorInfo) {
    write(env, &key(VALIDATOR_PREFIX, &[&info.address.0]), info);
}

/// Every validator, in address order.
pub fn validators(env: &mut impl Env) -> Vec<ValidatorInfo> {
    let mut out = Vec::new();
    let mut cursor = VALIDATOR_PREFIX.to_vec();
    while let Some(k) = env.next_key(&cursor) {
        if !k.starts_with(VALIDATOR_PREFIX) {
            break;
        }
        if let Some(v) = read::<ValidatorInfo>(env, &k) {
            out.push(v);
        }
        cursor = k;
    }
    out
}

/// Stake `delegator` has bonded to `validator`.
pub fn delegation(env: &mut impl Env, delegator: &Address, validator: &Address) -> u128 {
    read(env, &key(DELEGATION_PREFIX, &[&delegator.0, &validator.0])).unwrap_or(0)
}

/// Stores a delegation; zero removes it.
pub fn set_delegation(env: &mut impl Env, delegator: &Address, validator: &Address, amount: u128) {
    let k = key(DELEGATION_PREFIX, &[&delegator.0, &validator.0]);
    if amount == 0 {
        env.remove(&k);
    } else {
        write(env, &k, &amount);
    }
}

/// Current protocol parameters.
pub fn parameters(env: &mut impl Env) -> Parameters {
    read(env, PARAMS).unwrap_or_default()
}

/// Governance settings.
pub fn governance(env: &mut impl Env) -> Option<GovernanceSettings> {
    read(env, GOVERNANCE)
}

/// The chain id.
pub fn chain_id(env: &mut impl Env) -> alloc::string::String {
    read(env, CHAIN_ID).unwrap_or_default()
}

/// The treasury account: `blake3("vexidus/treasury")`.
pub fn treasury(env: &impl Env) -> Address {
    Address(env.blake3(b"vexidus/treasury"))
}
