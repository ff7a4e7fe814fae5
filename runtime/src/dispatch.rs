//! Operations: what each one does to state, and every way it can fail.

use crate::context::{Context, DispatchError};
use crate::env::Env;
use crate::staking::active_set;
use crate::storage;
use alloc::{format, string::String};
use vexidus_governance::upgrade::{self, Voter};
use vexidus_governance::{multisig, proposals};
use vexidus_runtime_api::block::Event;
use vexidus_runtime_api::transaction::Operation;
use vexidus_runtime_api::transaction::ProposalKind;
use vexidus_runtime_api::{Address, PublicKey, ValidatorInfo};

/// Applies one operation.
pub fn dispatch(
    env: &mut impl Env,
    ctx: &mut Context<'_>,
    op: &Operation,
) -> Result<(), DispatchError> {
    match op {
        Operation::Transfer { to, amount } => transfer(env, ctx, *to, *amount),
        Operation::RegisterValidator {
            stake,
            commission_bps,
        } => register_validator(env, ctx, *stake, *commission_bps),
        Operation::Delegate { validator, amount } => delegate(env, ctx, *validator, *amount),
        Operation::Undelegate { validator, amount } => undelegate(env, ctx, *validator, *amount),
        Operation::ClaimRewards => claim_rewards(env, ctx),
        Operation::Unjail => unjail(env, ctx),
        Operation::ReportDoubleSign { evidence } => crate::jail::report(env, ctx, evidence),
        Operation::ScheduleUpgrade {
            name,
            height,
            info_url,
            target,
        } => {
            let active = active_set(env, ctx.height);
            let mut g = governance_context(env, ctx);
            Ok(upgrade::schedule(
                env, &mut g, name, *height, info_url, target, &active,
            )?)
        }
        Operation::CancelUpgrade { name } => {
            let mut g = governance_context(env, ctx);
            Ok(upgrade::cancel(env, &mut g, name)?)
        }
        Operation::VoteUpgrade { name, approve } => {
            let voter = voter(env, ctx);
            let mut g = governance_context(env, ctx);
            Ok(upgrade::vote(env, &mut g, name, *approve, voter)?)
        }
        Operation::CreateProposal { kind } => {
            let has_stake = has_stake(env, &ctx.sender);
            let active = active_set(env, ctx.height);
            let mut p = proposal_context(env, ctx);
            proposals::create(env, &mut p, kind, has_stake, &active)?;
            Ok(())
        }
        Operation::VoteProposal { id, approve } => {
            let voter = voter(env, ctx);
            let mut p = proposal_context(env, ctx);
            Ok(proposals::vote(env, &mut p, *id, *approve, voter)?)
        }
        Operation::ExecuteProposal { id } => {
            let mut p = proposal_context(env, ctx);
            match proposals::execute(env, &mut p, *id)? {
                ProposalKind::ParameterChange { key, value } => {
                    // The other parameters may have changed since the proposal was made.
                    let mut params = storage::parameters(env);
                    proposals::check_change(&params, key, value)?;
                    proposals::apply_change(&mut params, key, value);
                    storage::write(env, storage::PARAMS, &params);
                    ctx.events.push(Event::ParameterChanged { key, value });
                }
                ProposalKind::TreasurySpend { to, amount } => {
                    let treasury = storage::treasury(env);
                    debit(env, &treasury, amount)?;
                    credit(env, &to, amount)?;
                    ctx.events.push(Event::TreasurySpent { to, amount });
                }
                ProposalKind::Text { .. } => {}
            }
            Ok(())
        }
        Operation::CancelProposal { id } => {
            let mut p = proposal_context(env, ctx);
            Ok(proposals::cancel(env, &mut p, *id)?)
        }
        Operation::CreateMultiSig {
            signers,
            threshold,
            label,
        } => {
            multisig::create(env, ctx.sender, signers, *threshold, label, ctx.events)?;
            Ok(())
        }
        Operation::ProposeMultiSig {
            multisig: account,
            op,
        } => {
            let approval = multisig::propose(env, ctx.sender, account, op, ctx.events)?;
            run_approved(env, ctx, account, approval)
        }
        Operation::ApproveMultiSig {
            multisig: account,
            proposal_id,
        } => {
            let approval = multisig::approve(env, ctx.sender, account, *proposal_id, ctx.events)?;
            run_approved(env, ctx, account, approval)
        }
        Operation::RevokeMultiSig {
            multisig: account,
            proposal_id,
        } => Ok(multisig::revoke(
            env,
            ctx.sender,
            account,
            *proposal_id,
            ctx.events,
        )?),
    }
}

/// Sends an approved multisig operation as the multisig account.
fn run_approved(
    env: &mut impl Env,
    ctx: &mut Context<'_>,
    account: &Address,
    approval: multisig::Approval,
) -> Result<(), DispatchError> {
    match approval {
        multisig::Approval::Pending => Ok(()),
        multisig::Approval::Execute(op) => {
            let no_key = PublicKey::default();
            let mut inner = Context {
                height: ctx.height,
                sender: *account,
                sender_key: &no_key,
                events: ctx.events,
            };
            dispatch(env, &mut inner, &op)
        }
    }
}

/// Whether `who` has stake: its own as a validator, or delegated.
fn has_stake(env: &mut impl Env, who: &Address) -> bool {
    if storage::validator(env, who).is_some_and(|v| v.self_stake > 0) {
        return true;
    }
    let mut prefix = storage::DELEGATION_PREFIX.to_vec();
    prefix.extend_from_slice(&who.0);
    env.next_key(&prefix)
        .is_some_and(|k| k.starts_with(&prefix))
}

fn voter(env: &mut impl Env, ctx: &Context<'_>) -> Voter {
    match storage::validator(env, &ctx.sender) {
        None => Voter::NotValidator,
        Some(v) if v.is_jailed_at(ctx.height) => Voter::Jailed(v.jailed_until),
        Some(_) => Voter::Active,
    }
}

fn proposal_context<'c>(env: &mut impl Env, ctx: &'c mut Context<'_>) -> proposals::Context<'c> {
    proposals::Context {
        height: ctx.height,
        sender: ctx.sender,
        params: storage::parameters(env),
        events: ctx.events,
    }
}

fn governance_context<'c>(env: &mut impl Env, ctx: &'c mut Context<'_>) -> upgrade::Context<'c> {
    upgrade::Context {
        height: ctx.height,
        sender: ctx.sender,
        sender_key: *ctx.sender_key,
        params: storage::parameters(env),
        settings: storage::governance(env).unwrap_or(vexidus_runtime_api::GovernanceSettings {
            mode: vexidus_runtime_api::GovernanceMode::SeedAuthority,
            upgrade_authority: PublicKey::default(),
        }),
        current: crate::version(),
        events: ctx.events,
    }
}

/// Takes `amount` from `who`'s balance.
pub fn debit(env: &mut impl Env, who: &Address, amount: u128) -> Result<(), DispatchError> {
    let mut acct = storage::account(env, who);
    acct.balance = acct
        .balance
        .checked_sub(amount)
        .ok_or(DispatchError::InsufficientBalance {
            needed: amount,
            available: acct.balance,
        })?;
    storage::set_account(env, who, &acct);
    Ok(())
}

/// Adds `amount` to `who`'s balance.
pub fn credit(env: &mut impl Env, who: &Address, amount: u128) -> Result<(), DispatchError> {
    let mut acct = storage::account(env, who);
    acct.balance = acct
        .balance
        .checked_add(amount)
        .ok_or(DispatchError::Overflow)?;
    storage::set_account(env, who, &acct);
    Ok(())
}

fn transfer(
    env: &mut impl Env,
    ctx: &mut Context<'_>,
    to: Address,
    amount: u128,
) -> Result<(), DispatchError> {
    debit(env, &ctx.sender, amount)?;
    credit(env, &to, amount)?;
    ctx.events.push(Event::Transferred {
        from: ctx.sender,
        to,
        amount,
    });
    Ok(())
}

fn register_validator(
    env: &mut impl Env,
    ctx: &mut Context<'_>,
    stake: u128,
    commission_bps: u16,
) -> Result<(), DispatchError> {
    let params = storage::parameters(env);
    if storage::validator(env, &ctx.sender).is_some() {
        return Err(DispatchError::AlreadyValidator);
    }
    if stake < params.min_stake {
        return Err(DispatchError::StakeBelowMinimum {
            stake,
            min_stake: params.min_stake,
        });
    }
    if commission_bps > params.max_commission_bps {
        return Err(DispatchError::CommissionTooHigh {
            commission_bps,
            max: params.max_commission_bps,
        });
    }
    debit(env, &ctx.sender, stake)?;
    storage::set_validator(
        env,
        &ValidatorInfo {
            public_key: *ctx.sender_key,
            address: ctx.sender,
            self_stake: stake,
            delegated: 0,
            commission_bps,
            jailed_until: 0,
            unclaimed_rewards: 0,
            registered_at: ctx.height,
        },
    );
    ctx.events.push(Event::ValidatorRegistered {
        validator: ctx.sender,
        stake,
        commission_bps,
    });
    Ok(())
}

fn delegate(
    env: &mut impl Env,
    ctx: &mut Context<'_>,
    validator: Address,
    amount: u128,
) -> Result<(), DispatchError> {
    if amount == 0 {
        return Err(DispatchError::ZeroAmount);
    }
    let mut v =
        storage::validator(env, &validator).ok_or(DispatchError::UnknownValidator(validator))?;
    debit(env, &ctx.sender, amount)?;
    let bonded = storage::delegation(env, &ctx.sender, &validator);
    let bonded = bonded.checked_add(amount).ok_or(DispatchError::Overflow)?;
    v.delegated = v
        .delegated
        .checked_add(amount)
        .ok_or(DispatchError::Overflow)?;
    storage::set_delegation(env, &ctx.sender, &validator, bonded);
    storage::set_validator(env, &v);
    ctx.events.push(Event::Delegated {
        delegator: ctx.sender,
        validator,
        amount,
    });
    Ok(())
}

fn undelegate(
    env: &mut impl Env,
    ctx: &mut Context<'_>,
    validator: Address,
    amount: u128,
) -> Result<(), DispatchError> {
    if amount == 0 {
        return Err(DispatchError::ZeroAmount);
    }
    let mut v =
        storage::validator(env, &validator).ok_or(DispatchError::UnknownValidator(validator))?;
    let bonded = storage::delegation(env, &ctx.sender, &validator);
    let rest = bonded
        .checked_sub(amount)
        .ok_or(DispatchError::InsufficientDelegation {
            requested: amount,
            delegated: bonded,
        })?;
    v.delegated = v.delegated.saturating_sub(amount);
    storage::set_delegation(env, &ctx.sender, &validator, rest);
    storage::set_validator(env, &v);
    credit(env, &ctx.sender, amount)?;
    ctx.events.push(Event::Undelegated {
        delegator: ctx.sender,
        validator,
        amount,
    });
    Ok(())
}

fn claim_rewards(env: &mut impl Env, ctx: &mut Context<'_>) -> Result<(), DispatchError> {
    let mut v = storage::validator(env, &ctx.sender).ok_or(DispatchError::NotAValidator)?;
    if v.unclaimed_rewards == 0 {
        return Err(DispatchError::NoRewards);
    }
    let amount = core::mem::take(&mut v.unclaimed_rewards);
    storage::set_validator(env, &v);
    credit(env, &ctx.sender, amount)?;
    ctx.events.push(Event::RewardsClaimed {
        validator: ctx.sender,
        amount,
    });
    Ok(())
}

fn unjail(env: &mut impl Env, ctx: &mut Context<'_>) -> Result<(), DispatchError> {
    let mut v = storage::validator(env, &ctx.sender).ok_or(DispatchError::NotAValidator)?;
    if v.jailed_until == 0 {
        return Err(DispatchError::NotJailed);
    }
    if v.is_jailed_at(ctx.height) {
        return Err(DispatchError::StillJailed {
            until: v.jailed_until,
        });
    }
    v.jailed_until = 0;
    storage::set_validator(env, &v);
    ctx.events.push(Event::Unjailed {
        validator: ctx.sender,
    });
    Ok(())
}

/// Formats a failed operation for the receipt.
pub fn describe_failure(index: usize, op: &Operation, err: &DispatchError) -> String {
    format!("operation {index} ({}) failed: {err}", op.name())
}
