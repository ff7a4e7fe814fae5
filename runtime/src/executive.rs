//! The entry points' logic, generic over [`Env`] so it runs the same in wasm and natively.

use crate::context::Context;
use crate::dispatch;
use crate::env::Env;
use crate::storage;
use alloc::{string::String, vec::Vec};
use vexidus_governance::upgrade;
use vexidus_runtime_api::abi::{
    ApplyArgs, BeginBlockOutcome, BlockContext, EndBlockOutcome, InvalidTransaction, MigrateArgs,
    PlanView, ProposalView, Query, QueryResponse, ValidTransaction, ValidateArgs,
};
use vexidus_runtime_api::block::{Event, Receipt};
use vexidus_runtime_api::guest::Overlay;
use vexidus_runtime_api::transaction::{MAX_OPERATIONS, ParamKey, Transaction, byte_gas};
use vexidus_runtime_api::{Address, GenesisConfig, PublicKey, ValidatorInfo};

/// Share of every fee paid to the block proposer, in percent; the rest goes to the treasury.
pub const PROPOSER_FEE_PERCENT: u128 = 80;

fn address_of(env: &impl Env, key: &PublicKey) -> Address {
    Address(env.blake3(&key.0))
}

/// Writes the genesis state.
pub fn genesis_build(env: &mut impl Env, config: GenesisConfig) -> Result<(), String> {
    if config.chain_id.is_empty() {
        return Err("genesis: chain_id is empty".into());
    }
    // Bounds are the genesis file's to check (tests build chains with short votes); a chain
    // whose largest runtime upgrade fits no block could never upgrade its runtime.
    if let Some(why) = config.parameters.inconsistency() {
        return Err(alloc::format!("genesis: {why}"));
    }
    storage::write(env, storage::CHAIN_ID, &config.chain_id);
    storage::write(env, storage::BLOCK_TIME, &config.block_time_ms);
    storage::write(env, storage::PARAMS, &config.parameters);
    storage::set_block_budget(env, &config.parameters);
    storage::write(env, storage::GOVERNANCE, &config.governance);
    for (who, amount) in &config.balances {
        dispatch::credit(env, who, *amount)
            .map_err(|e| alloc::format!("genesis balance of {who}: {e}"))?;
    }
    for v in &config.validators {
        let address = address_of(env, &v.public_key);
        if storage::validator(env, &address).is_some() {
            return Err(alloc::format!("genesis: validator {address} listed twice"));
        }
        storage::set_validator(
            env,
            &ValidatorInfo {
                public_key: v.public_key,
                address,
                self_stake: v.stake,
                delegated: 0,
                commission_bps: v.commission_bps,
                jailed_until: 0,
                unclaimed_rewards: 0,
                registered_at: 0,
            },
        );
    }
    Ok(())
}

/// Runs before the block's transactions: governance first (upgrade outcomes, expiry,
/// enactment, the binary-upgrade halt).
pub fn begin_block(env: &mut impl Env, ctx: BlockContext) -> Result<BeginBlockOutcome, String> {
    #[cfg(feature = "next-trap")]
    {
        let _ = (&env, &ctx);
        panic!("next-trap: this runtime traps in every block");
    }
    #[allow(unreachable_code)]
    let params = storage::parameters(env);
    let settings =
        storage::governance(env).ok_or_else(|| String::from("no governance settings in state"))?;
    let chain_id = storage::chain_id(env);
    let start = upgrade::begin_block(
        env,
        ctx.height,
        &ctx.implemented_upgrades,
        &params,
        &settings,
        &crate::version(),
        &chain_id,
    );
    if start.halt.is_none() {
        let proposer = address_of(env, &ctx.proposer);
        crate::liveness::record(env, ctx.height, proposer);
        // The block is measured by the budget it began with, which its producer chose its
        // transactions by: a parameter change inside it takes effect from the next block.
        storage::set_block_budget(env, &params);
    }
    Ok(BeginBlockOutcome {
        halt_for_upgrade: start.halt,
        events: start.events,
    })
}

/// Runs after the block's transactions: refuses a block over the budget of `max_txs_per_block`
/// transactions and `max_block_bytes` bytes, and pays the block's fees out (see
/// [`apply_transaction`]).
pub fn end_block(env: &mut impl Env, ctx: BlockContext) -> Result<EndBlockOutcome, String> {
    let (max_txs, max_bytes) = storage::read::<(u32, u32)>(env, storage::BLOCK_BUDGET)
        .ok_or_else(|| String::from("no block budget in state"))?;
    let count = env.block_total(storage::BLOCK_TRANSACTIONS);
    if count > u128::from(max_txs) {
        return Err(alloc::format!(
            "block carries {count} transactions, over max_txs_per_block {max_txs}"
        ));
    }
    let bytes = env.block_total(storage::BLOCK_BYTES);
    if bytes > u128::from(max_bytes) {
        return Err(alloc::format!(
            "block carries {bytes} bytes of transactions, over max_block_bytes {max_bytes}"
        ));
    }
    let to_proposer = env.block_total(storage::FEES_TO_PROPOSER);
    let to_treasury = env.block_total(storage::FEES_TO_TREASURY);
    // Credits cannot overflow: they return escrowed supply, and total supply fits in u128.
    let proposer = address_of(env, &ctx.proposer);
    let treasury = storage::treasury(env);
    let _ = dispatch::credit(env, &proposer, to_proposer);
    let _ = dispatch::credit(env, &treasury, to_treasury);
    Ok(EndBlockOutcome::default())
}

/// Checks everything about a transaction that does not depend on its operations' effects.
/// `exact_nonce` demands the account's next nonce (block inclusion); otherwise a future nonce is
/// allowed (pool admission) and the account's nonce is returned for the pool to order by.
fn check(
    env: &mut impl Env,
    tx: &Transaction,
    height: u64,
    exact_nonce: bool,
) -> Result<Checked, InvalidTransaction> {
    let chain = storage::chain_id(env);
    if tx.chain_id != chain {
        return Err(InvalidTransaction::WrongChain {
            expected: chain,
            found: tx.chain_id.clone(),
        });
    }
    if tx.operations.is_empty() || tx.operations.len() > MAX_OPERATIONS {
        return Err(InvalidTransaction::OperationCount {
            found: tx.operations.len() as u32,
        });
    }
    let bytes = tx.signed_len() as u64;
    let params = storage::parameters(env);
    if bytes > u64::from(params.max_block_bytes) {
        return Err(InvalidTransaction::TooLarge {
            bytes,
            max_block_bytes: params.max_block_bytes,
        });
    }
    let needed = byte_gas(bytes).saturating_add(tx.operations_gas());
    if tx.max_gas < needed {
        return Err(InvalidTransaction::GasLimitTooLow {
            needed,
            max_gas: tx.max_gas,
        });
    }
    if height > tx.valid_until {
        return Err(InvalidTransaction::Expired {
            valid_until: tx.valid_until,
            height,
        });
    }
    let sender = address_of(env, &tx.sender);
    let acct = storage::account(env, &sender);
    if tx.nonce < acct.nonce {
        return Err(InvalidTransaction::StaleNonce {
            expected: acct.nonce,
            found: tx.nonce,
        });
    }
    if exact_nonce && tx.nonce > acct.nonce {
        return Err(InvalidTransaction::FutureNonce {
            expected: acct.nonce,
            found: tx.nonce,
        });
    }
    let max_fee = (tx.max_gas as u128).saturating_mul(params.gas_price);
    if acct.balance < max_fee {
        return Err(InvalidTransaction::InsufficientFunds {
            needed: max_fee,
            available: acct.balance,
        });
    }
    Ok(Checked {
        account_nonce: acct.nonce,
        bytes,
        gas_price: params.gas_price,
        max_fee,
    })
}

/// What [`check`] found out about an includable transaction.
struct Checked {
    /// The sender account's next nonce.
    account_nonce: u64,
    /// The signed transaction's encoded length.
    bytes: u64,
    /// The gas price in force.
    gas_price: u128,
    /// What the sender must hold up front: `max_gas × gas_price`.
    max_fee: u128,
}

/// Checks a transaction for the pool.
pub fn validate_transaction(
    env: &mut impl Env,
    args: ValidateArgs,
) -> Result<ValidTransaction, InvalidTransaction> {
    let checked = check(env, &args.transaction.transaction, args.height, false)?;
    Ok(ValidTransaction {
        account_nonce: checked.account_nonce,
    })
}

/// Applies one transaction: escrow the largest fee, run the operations all-or-nothing, then
/// refund unused gas, split the fee and bump the nonce.
///
/// The fee's two shares are not credited here: they are added to two block totals (not state;
/// see `vexidus_runtime_api::abi`) and [`end_block`] pays them to the proposer and the treasury
/// in one credit each. Crediting them here would make every transaction of a block write the
/// same two accounts, so no two transactions could ever execute in parallel (Block-STM in the
/// host); this way a transfer touches only its sender's and its recipient's accounts. The
/// `FeePaid` event and the receipt are unchanged; the proposer's and the treasury's balances
/// rise at the end of the block instead of transaction by transaction.
pub fn apply_transaction(
    env: &mut impl Env,
    args: ApplyArgs,
) -> Result<Receipt, InvalidTransaction> {
    let tx = &args.transaction.transaction;
    let checked = check(env, tx, args.height, true)?;
    // The block's size, counted like its fees (see above), checked by `end_block`.
    env.add_to_block_total(storage::BLOCK_BYTES, u128::from(checked.bytes));
    env.add_to_block_total(storage::BLOCK_TRANSACTIONS, 1);
    let sender = address_of(env, &tx.sender);
    let (gas_price, escrow) = (checked.gas_price, checked.max_fee);

    let mut acct = storage::account(env, &sender);
    acct.balance -= escrow; // `check` proved balance >= escrow
    acct.nonce += 1;
    storage::set_account(env, &sender, &acct);

    let mut events = Vec::new();
    let mut gas_used = byte_gas(checked.bytes);
    let mut error = None;
    {
        let mut overlay = Overlay::new(env);
        let mut ctx = Context {
            height: args.height,
            sender,
            sender_key: &tx.sender,
            events: &mut events,
        };
        for (i, op) in tx.operations.iter().enumerate() {
            gas_used = gas_used.saturating_add(op.gas());
            if let Err(e) = dispatch::dispatch(&mut overlay, &mut ctx, op) {
                error = Some(dispatch::describe_failure(i, op, &e));
                break;
            }
        }
        if error.is_none() {
            overlay.commit();
        }
    }
    if error.is_some() {
        events.clear();
    }

    let fee = (gas_used as u128) * gas_price;
    let refund = escrow - fee; // gas_used <= byte gas + operations' gas <= max_gas
    let to_proposer = fee * proposer_fee_percent(env) / 100;
    let to_treasury = fee - to_proposer;
    // Cannot overflow: the refund returns escrowed supply, and total supply fits in u128.
    let _ = dispatch::credit(env, &sender, refund);
    if fee > 0 {
        env.add_to_block_total(storage::FEES_TO_PROPOSER, to_proposer);
        env.add_to_block_total(storage::FEES_TO_TREASURY, to_treasury);
    }
    events.push(Event::FeePaid {
        payer: sender,
        fee,
        to_proposer,
        to_treasury,
    });

    Ok(Receipt {
        success: error.is_none(),
        error,
        gas_used,
        fee,
        events,
    })
}

/// Answers a read-only query.
pub fn query(env: &mut impl Env, q: Query) -> Result<QueryResponse, String> {
    Ok(match q {
        Query::Account(a) => QueryResponse::Account(storage::account(env, &a)),
        Query::Validators => QueryResponse::Validators(storage::validators(env)),
        Query::Validator(a) => QueryResponse::Validator(storage::validator(env, &a)),
        Query::Parameters => QueryResponse::Parameters(storage::parameters(env)),
        Query::Governance => QueryResponse::Governance(
            storage::governance(env)
                .ok_or_else(|| String::from("no governance settings in state"))?,
        ),
        Query::ChainId => QueryResponse::ChainId(storage::chain_id(env)),
        Query::Treasury => QueryResponse::Treasury(storage::treasury(env)),
        Query::UpgradePlan => {
            let params = storage::parameters(env);
            QueryResponse::UpgradePlan(upgrade::active_plan(env).map(|plan| {
                let (approve, reject, total) = upgrade::tally(&plan);
                let voting_ends_at = plan
                    .scheduled_at
                    .saturating_add(params.voting_period_blocks)
                    .min(plan.height);
                PlanView {
                    plan,
                    approve,
                    reject,
                    total,
                    quorum_percent: params.quorum_percent,
                    voting_ends_at,
                }
            }))
        }
        Query::PlanStatus(name) => QueryResponse::PlanStatus(upgrade::plan_status(env, &name)),
        Query::GraceUntil => QueryResponse::GraceUntil(upgrade::grace_until(env)),
        Query::Proposal { id, at_height } => {
            let params = storage::parameters(env);
            QueryResponse::Proposal(vexidus_governance::proposals::get(env, id).map(|proposal| {
                let (approve, reject, total) = vexidus_governance::proposals::tally(&proposal);
                let voting_ends_at = proposal
                    .created_at
                    .saturating_add(params.voting_period_blocks);
                let passed = vexidus_governance::proposals::passed(&proposal, &params, at_height);
                ProposalView {
                    proposal,
                    approve,
                    reject,
                    total,
                    voting_ends_at,
                    passed,
                }
            }))
        }
        Query::MultiSig(a) => {
            QueryResponse::MultiSig(vexidus_governance::multisig::account(env, &a))
        }
        Query::PlanCode => QueryResponse::PlanCode(env.get(upgrade::PLAN_CODE)),
        Query::Consensus { at_height } => {
            QueryResponse::Consensus(crate::liveness::consensus_view(env, at_height))
        }
        Query::Liveness(who) => {
            let (streak, total) = crate::liveness::missed(env, &who);
            QueryResponse::Liveness(vexidus_runtime_api::abi::LivenessView {
                missed_streak: streak,
                missed_total: total,
                skipped: crate::liveness::skipped(env).contains(&who),
            })
        }
    })
}

/// The on-upgrade migration, run by the host first in the block after the switch. Each step
/// brings state from the version before it; a chain may skip versions, so every step whose
/// version is above `from` runs, oldest first.
pub fn migrate(env: &mut impl Env, args: MigrateArgs) -> Result<(), String> {
    #[cfg(feature = "next-bad-migration")]
    panic!(
        "next-bad-migration: this migration always fails (from spec_version {})",
        args.from.spec_version
    );
    #[allow(unreachable_code)]
    if args.from.spec_version < 2 {
        migrate_block_budget(env);
    }
    #[cfg(feature = "next-example")]
    if args.from.spec_version < 3 {
        storage::write(env, storage::FEE_SPLIT, &70u8);
    }
    Ok(())
}

/// To spec_version 2, which adds the block byte budget: the stored parameters gain
/// `max_block_bytes` (they decode with its default, 6 MiB, and are written back with it), and a
/// `max_runtime_code_bytes` larger than a block of that budget can carry in an upgrade is
/// lowered to what it can (the largest runtime blob was 16 MiB, which no block could carry).
fn migrate_block_budget(env: &mut impl Env) {
    let mut p = storage::parameters(env);
    let (_, code_bound) = ParamKey::MaxRuntimeCodeBytes.bounds();
    let fits = p
        .max_block_bytes
        .saturating_sub(vexidus_runtime_api::transaction::RUNTIME_UPGRADE_ENVELOPE_BYTES);
    p.max_runtime_code_bytes = p.max_runtime_code_bytes.min(code_bound as u32).min(fits);
    storage::write(env, storage::PARAMS, &p);
    storage::set_block_budget(env, &p);
}

/// The proposer's share of fees in percent. Version 1: a constant 80. The `next-example` version
/// keeps it in state (`:fee_split`), written by its migration.
fn proposer_fee_percent(env: &mut impl Env) -> u128 {
    let _ = &env;
    #[cfg(feature = "next-example")]
    if let Some(p) = storage::read::<u8>(env, storage::FEE_SPLIT) {
        return p as u128;
    }
    PROPOSER_FEE_PERCENT
}
