//! Protocol-parameter governance (VSC-88, operations 60-63, SPEC §6): proposals, stake-weighted
//! votes of the active validators, execution by anyone once passed.
//!
//! A proposal passes when turnout reaches `quorum_percent` of the snapshot stake and more weight
//! approves than rejects, judged when its vote ends; it may be executed earlier once the approving
//! weight alone reaches the quorum and is more than half of all stake, because no later vote can
//! change that outcome.
//!
//! | key | value |
//! | --- | --- |
//! | `gov/next_proposal` | `u64` id of the next proposal |
//! | `gov/proposal/` ‖ id (u64 BE) | [`Proposal`] |

use crate::GovError;
use crate::error::ProposalError;
use crate::upgrade::{Voter, reaches_quorum};
use alloc::{format, string::String, vec::Vec};
use vexidus_runtime_api::block::Event;
use vexidus_runtime_api::guest::{Env, read, write};
use vexidus_runtime_api::state::Proposal;
use vexidus_runtime_api::transaction::{ParamKey, ProposalKind};
use vexidus_runtime_api::{Address, Parameters};

/// Id of the next proposal.
pub const NEXT_ID: &[u8] = b"gov/next_proposal";
/// Prefix of proposals.
pub const PREFIX: &[u8] = b"gov/proposal/";

/// What a proposal operation sees.
pub struct Context<'a> {
    /// Block height.
    pub height: u64,
    /// Sender.
    pub sender: Address,
    /// Parameters in force.
    pub params: Parameters,
    /// Events of the transaction.
    pub events: &'a mut Vec<Event>,
}

/// Lowest and highest value of a parameter (SPEC §6).
pub fn bounds(key: ParamKey) -> (u128, u128) {
    key.bounds()
}

/// Checks a value against its bounds.
pub fn check_bounds(key: ParamKey, value: u128) -> Result<(), ProposalError> {
    let (min, max) = bounds(key);
    if value < min || value > max {
        return Err(ProposalError::OutOfBounds {
            key,
            value,
            min,
            max,
        });
    }
    Ok(())
}

/// Checks a change against its bounds and against the other parameters in force.
pub fn check_change(params: &Parameters, key: ParamKey, value: u128) -> Result<(), ProposalError> {
    check_bounds(key, value)?;
    let mut after = *params;
    apply_change(&mut after, key, value);
    match after.inconsistency() {
        Some(why) => Err(ProposalError::Inconsistent { key, value, why }),
        None => Ok(()),
    }
}

/// Sets a parameter; the value must be within bounds (then it fits the field).
pub fn apply_change(params: &mut Parameters, key: ParamKey, value: u128) {
    match key {
        ParamKey::GasPrice => params.gas_price = value,
        ParamKey::MaxTxsPerBlock => params.max_txs_per_block = value as u32,
        ParamKey::MinStake => params.min_stake = value,
        ParamKey::MaxCommissionBps => params.max_commission_bps = value as u16,
        ParamKey::VotingPeriodBlocks => params.voting_period_blocks = value as u64,
        ParamKey::QuorumPercent => params.quorum_percent = value as u8,
        ParamKey::UpgradeMinLeadBlocks => params.upgrade_min_lead_blocks = value as u64,
        ParamKey::UpgradeGraceBlocks => params.upgrade_grace_blocks = value as u64,
        ParamKey::MaxRuntimeCodeBytes => params.max_runtime_code_bytes = value as u32,
        ParamKey::MaxBlockBytes => params.max_block_bytes = value as u32,
    }
}

fn key(id: u64) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// A proposal by id.
pub fn get(env: &mut (impl Env + ?Sized), id: u64) -> Option<Proposal> {
    read(env, &key(id))
}

/// Approving, rejecting and total snapshot weight.
pub fn tally(p: &Proposal) -> (u128, u128, u128) {
    crate::ballot::tally(&p.snapshot, &p.votes)
}

/// Whether the proposal has passed at `height`, or why not.
pub fn passed(p: &Proposal, params: &Parameters, height: u64) -> Result<(), String> {
    let (approve, reject, total) = tally(p);
    let ends = p.created_at.saturating_add(params.voting_period_blocks);
    let decisive =
        reaches_quorum(approve, total, params.quorum_percent) && approve.saturating_mul(2) > total;
    if decisive {
        return Ok(());
    }
    if height < ends {
        return Err(format!("its vote is open until height {ends}"));
    }
    if !reaches_quorum(approve + reject, total, params.quorum_percent) {
        return Err(format!(
            "turnout {} of {total} is below the {}% quorum",
            approve + reject,
            params.quorum_percent
        ));
    }
    if approve <= reject {
        return Err(format!("{approve} approving against {reject} rejecting"));
    }
    Ok(())
}

/// Operation 60.
pub fn create(
    env: &mut (impl Env + ?Sized),
    ctx: &mut Context<'_>,
    kind: &ProposalKind,
    has_stake: bool,
    active: &[(Address, u128)],
) -> Result<u64, ProposalError> {
    if !has_stake {
        return Err(ProposalError::NoStake);
    }
    if let ProposalKind::ParameterChange { key, value } = kind {
        check_change(&ctx.params, *key, *value)?;
    }
    let id: u64 = read(env, NEXT_ID).unwrap_or(0);
    write(env, NEXT_ID, &(id + 1));
    let p = Proposal {
        id,
        proposer: ctx.sender,
        kind: kind.clone(),
        created_at: ctx.height,
        snapshot: active.to_vec(),
        votes: Vec::new(),
        executed: false,
        cancelled: false,
    };
    write(env, &key(id), &p);
    ctx.events.push(Event::ProposalCreated {
        id,
        proposer: ctx.sender,
    });
    Ok(id)
}

fn open(env: &mut (impl Env + ?Sized), id: u64) -> Result<Proposal, ProposalError> {
    let p = get(env, id).ok_or(ProposalError::UnknownProposal { id })?;
    if p.executed {
        return Err(ProposalError::AlreadyExecuted { id });
    }
    if p.cancelled {
        return Err(ProposalError::Cancelled { id });
    }
    Ok(p)
}

/// Operation 61.
pub fn vote(
    env: &mut (impl Env + ?Sized),
    ctx: &mut Context<'_>,
    id: u64,
    approve: bool,
    voter: Voter,
) -> Result<(), GovError> {
    let mut p = open(env, id)?;
    let ends = p.created_at.saturating_add(ctx.params.voting_period_blocks);
    if ctx.height >= ends {
        return Err(GovError::VoteEnded {
            ended_at: ends.saturating_sub(1),
        });
    }
    let weight = crate::ballot::cast(&p.snapshot, &mut p.votes, ctx.sender, approve, voter)?;
    write(env, &key(id), &p);
    ctx.events.push(Event::ProposalVoted {
        id,
        validator: ctx.sender,
        approve,
        weight,
    });
    Ok(())
}

/// Operation 62: marks a passed proposal executed and returns what it does; the caller applies
/// the effect in the same transaction (so a failing effect reverts the mark too).
pub fn execute(
    env: &mut (impl Env + ?Sized),
    ctx: &mut Context<'_>,
    id: u64,
) -> Result<ProposalKind, ProposalError> {
    let mut p = open(env, id)?;
    passed(&p, &ctx.params, ctx.height).map_err(|why| ProposalError::NotPassed { id, why })?;
    p.executed = true;
    write(env, &key(id), &p);
    ctx.events.push(Event::ProposalExecuted { id });
    Ok(p.kind)
}

/// Operation 63.
pub fn cancel(
    env: &mut (impl Env + ?Sized),
    ctx: &mut Context<'_>,
    id: u64,
) -> Result<(), ProposalError> {
    let mut p = open(env, id)?;
    if p.proposer != ctx.sender {
        return Err(ProposalError::NotProposer);
    }
    p.cancelled = true;
    write(env, &key(id), &p);
    ctx.events.push(Event::ProposalCancelled { id });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive() {
        assert!(check_bounds(ParamKey::GasPrice, 1).is_ok());
        assert!(check_bounds(ParamKey::GasPrice, 1_000).is_ok());
        assert!(check_bounds(ParamKey::GasPrice, 0).is_err());
        assert!(check_bounds(ParamKey::GasPrice, 1_001).is_err());
        assert!(check_bounds(ParamKey::UpgradeGraceBlocks, 0).is_ok());
        assert!(check_bounds(ParamKey::MaxRuntimeCodeBytes, 64 * 1024 - 1).is_err());
        // Every bound fits its field, so apply_change never truncates.
        for k in ParamKey::ALL {
            let mut p = Parameters::default();
            apply_change(&mut p, k, bounds(k).1);
        }
    }
}
