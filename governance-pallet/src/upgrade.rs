//! Upgrade governance (operations 46-48, SPEC §4): scheduling, cancelling, voting, and what
//! happens at each block — expiry, enactment of runtime upgrades, the binary-upgrade halt.
//!
//! | key | value |
//! | --- | --- |
//! | `gov/plan` | the active [`UpgradePlan`] (at most one) |
//! | `gov/plan_code` | the active runtime plan's blob |
//! | `gov/name/` ‖ name | [`PlanStatus`] of every name ever scheduled (names are never reused) |
//! | `gov/enacted` | name of the runtime upgrade enacted in the previous block |
//! | `gov/grace_until` | `u64`: no liveness accounting below this height |

use crate::ballot;
pub use crate::ballot::{Voter, reaches_quorum};
use crate::{GovError, PlanStatus, UpgradePlan};
use alloc::{string::String, vec::Vec};
use vexidus_runtime_api::abi::{self, PendingMigration, UpgradeHalt};
use vexidus_runtime_api::block::Event;
use vexidus_runtime_api::guest::{Env, read, write};
use vexidus_runtime_api::transaction::UpgradeTarget;
use vexidus_runtime_api::{
    Address, GovernanceMode, GovernanceSettings, Parameters, PublicKey, RuntimeVersion,
};

/// The active plan.
pub const ACTIVE_PLAN: &[u8] = b"gov/plan";
/// The active runtime plan's code.
pub const PLAN_CODE: &[u8] = b"gov/plan_code";
/// Prefix of used names.
pub const NAME_PREFIX: &[u8] = b"gov/name/";
/// The runtime upgrade enacted in the previous block.
pub const ENACTED: &[u8] = b"gov/enacted";
/// End of the grace period.
pub const GRACE_UNTIL: &[u8] = b"gov/grace_until";

/// Longest plan name in bytes.
pub const MAX_NAME_LEN: usize = vexidus_runtime_api::upgrade_name::MAX_LEN;

/// What an upgrade operation sees of its surroundings.
pub struct Context<'a> {
    /// Block height.
    pub height: u64,
    /// Sending account.
    pub sender: Address,
    /// Sending key.
    pub sender_key: PublicKey,
    /// Current parameters.
    pub params: Parameters,
    /// Governance settings.
    pub settings: GovernanceSettings,
    /// The running runtime's version.
    pub current: RuntimeVersion,
    /// Events of the transaction.
    pub events: &'a mut Vec<Event>,
}

/// Checks a plan name: it becomes a directory name on validators' disks
/// ([`vexidus_runtime_api::upgrade_name`], the rule the supervisor applies too).
pub fn validate_name(name: &str) -> Result<(), GovError> {
    use vexidus_runtime_api::upgrade_name::{NameError, check};
    check(name).map_err(|e| match e {
        NameError::Empty => GovError::NameEmpty,
        NameError::TooLong { len } => GovError::NameTooLong { len },
        NameError::Character { found } => GovError::NameCharacter { found },
        NameError::LeadingDot => GovError::NameLeadingDot,
    })
}

fn name_key(name: &str) -> Vec<u8> {
    let mut k = NAME_PREFIX.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// The active plan, if any.
pub fn active_plan(env: &mut (impl Env + ?Sized)) -> Option<UpgradePlan> {
    read(env, ACTIVE_PLAN)
}

/// The status of any plan ever scheduled under `name`.
pub fn plan_status(env: &mut (impl Env + ?Sized), name: &str) -> Option<PlanStatus> {
    read(env, &name_key(name))
}

/// The height below which nobody is counted as missing blocks (0 when never set).
pub fn grace_until(env: &mut (impl Env + ?Sized)) -> u64 {
    read(env, GRACE_UNTIL).unwrap_or(0)
}

/// Approving, rejecting and total snapshot weight of a plan.
pub fn tally(plan: &UpgradePlan) -> (u128, u128, u128) {
    ballot::tally(&plan.snapshot, &plan.votes)
}

fn finish(env: &mut (impl Env + ?Sized), name: &str, status: PlanStatus) {
    write(env, &name_key(name), &status);
    env.remove(ACTIVE_PLAN);
    env.remove(PLAN_CODE);
}

/// Checks a runtime blob against the chain: size, the host's static checks, same family,
/// higher version. Used at scheduling and again at enactment.
pub fn check_runtime_code(
    env: &(impl Env + ?Sized),
    code: &[u8],
    params: &Parameters,
    current: &RuntimeVersion,
) -> Result<RuntimeVersion, GovError> {
    if code.len() > params.max_runtime_code_bytes as usize {
        return Err(GovError::RuntimeTooLarge {
            size: code.len(),
            limit: params.max_runtime_code_bytes,
        });
    }
    let v = env
        .check_runtime(code)
        .map_err(|reason| GovError::RuntimeRejected { reason })?;
    if v.spec_name != current.spec_name {
        return Err(GovError::SpecNameMismatch {
            expected: current.spec_name.clone(),
            found: v.spec_name,
        });
    }
    if v.spec_version <= current.spec_version {
        return Err(GovError::SpecVersionNotHigher {
            current: current.spec_version,
            found: v.spec_version,
        });
    }
    Ok(v)
}

/// Operation 46. `active` is the active validator set with stake, sorted by address: the
/// snapshot votes are weighed with.
#[allow(clippy::too_many_arguments)]
pub fn schedule(
    env: &mut (impl Env + ?Sized),
    ctx: &mut Context<'_>,
    name: &str,
    height: u64,
    info_url: &str,
    target: &UpgradeTarget,
    active: &[(Address, u128)],
) -> Result<(), GovError> {
    if ctx.sender_key != ctx.settings.upgrade_authority {
        return Err(GovError::NotAuthority);
    }
    validate_name(name)?;
    if plan_status(env, name).is_some() {
        return Err(GovError::NameTaken { name: name.into() });
    }
    if let Some(p) = active_plan(env) {
        return Err(GovError::PlanActive { name: p.name });
    }
    let earliest = ctx
        .height
        .saturating_add(ctx.params.upgrade_min_lead_blocks);
    if height < earliest {
        return Err(GovError::LeadTooShort { height, earliest });
    }
    let (stored_target, code_hash, kind) = match target {
        UpgradeTarget::Binary {
            binary_url,
            sha256,
            signature,
        } => {
            if binary_url.trim().is_empty() {
                return Err(GovError::MissingBinaryUrl);
            }
            if sha256.len() != 32 {
                return Err(GovError::BadChecksum { len: sha256.len() });
            }
            if let Some(sig) = signature
                && sig.len() != 64
            {
                return Err(GovError::BadSignature { len: sig.len() });
            }
            (target.clone(), None, "binary")
        }
        UpgradeTarget::Runtime { code } => {
            check_runtime_code(env, code, &ctx.params, &ctx.current)?;
            env.set(PLAN_CODE, code);
            (
                UpgradeTarget::Runtime { code: Vec::new() },
                Some(env.blake3(code)),
                "runtime",
            )
        }
    };
    let status = match ctx.settings.mode {
        GovernanceMode::SeedAuthority => PlanStatus::Approved,
        GovernanceMode::Full => PlanStatus::Voting,
    };
    let plan = UpgradePlan {
        name: name.into(),
        height,
        info_url: info_url.into(),
        target: stored_target,
        code_hash,
        scheduled_at: ctx.height,
        status,
        snapshot: active.to_vec(),
        votes: Vec::new(),
    };
    write(env, ACTIVE_PLAN, &plan);
    write(env, &name_key(name), &status);
    ctx.events.push(Event::UpgradeScheduled {
        name: name.into(),
        height,
        kind: kind.into(),
    });
    if status == PlanStatus::Approved {
        ctx.events
            .push(Event::UpgradeApproved { name: name.into() });
    }
    Ok(())
}

fn the_active_plan(env: &mut (impl Env + ?Sized), name: &str) -> Result<UpgradePlan, GovError> {
    match active_plan(env) {
        Some(p) if p.name == name => Ok(p),
        _ => match plan_status(env, name) {
            Some(status) => Err(GovError::PlanFinished {
                name: name.into(),
                status: status.as_str(),
            }),
            None => Err(GovError::UnknownPlan { name: name.into() }),
        },
    }
}

/// Operation 47.
pub fn cancel(
    env: &mut (impl Env + ?Sized),
    ctx: &mut Context<'_>,
    name: &str,
) -> Result<(), GovError> {
    if ctx.sender_key != ctx.settings.upgrade_authority {
        return Err(GovError::NotAuthority);
    }
    let plan = the_active_plan(env, name)?;
    finish(env, &plan.name, PlanStatus::Cancelled);
    ctx.events.push(Event::UpgradeCancelled { name: plan.name });
    Ok(())
}

/// Operation 48.
pub fn vote(
    env: &mut (impl Env + ?Sized),
    ctx: &mut Context<'_>,
    name: &str,
    approve: bool,
    voter: Voter,
) -> Result<(), GovError> {
    if ctx.settings.mode != GovernanceMode::Full {
        return Err(GovError::NotFullMode);
    }
    let mut plan = the_active_plan(env, name)?;
    if plan.status == PlanStatus::Approved {
        return Err(GovError::AlreadyApproved { name: name.into() });
    }
    let ends = plan
        .scheduled_at
        .saturating_add(ctx.params.voting_period_blocks);
    if ctx.height >= ends || ctx.height >= plan.height {
        return Err(GovError::VoteEnded {
            ended_at: ends.min(plan.height).saturating_sub(1),
        });
    }
    let weight = ballot::cast(&plan.snapshot, &mut plan.votes, ctx.sender, approve, voter)?;
    ctx.events.push(Event::UpgradeVoted {
        name: name.into(),
        validator: ctx.sender,
        approve,
        weight,
    });
    let (yes, _, total) = tally(&plan);
    if reaches_quorum(yes, total, ctx.params.quorum_percent) {
        plan.status = PlanStatus::Approved;
        write(env, &name_key(name), &PlanStatus::Approved);
        ctx.events
            .push(Event::UpgradeApproved { name: name.into() });
    }
    write(env, ACTIVE_PLAN, &plan);
    Ok(())
}

/// What the start of a block brings: events to record and, for a due binary plan this binary
/// does not implement, the halt.
#[derive(Debug, Default)]
pub struct BlockStart {
    /// Events.
    pub events: Vec<Event>,
    /// The halt, if due.
    pub halt: Option<UpgradeHalt>,
}

/// Runs at the start of every block, before any transaction.
pub fn begin_block(
    env: &mut (impl Env + ?Sized),
    height: u64,
    implemented: &[String],
    params: &Parameters,
    settings: &GovernanceSettings,
    current: &RuntimeVersion,
    chain_id: &str,
) -> BlockStart {
    let mut out = BlockStart::default();

    // The outcome of the runtime upgrade enacted in the previous block.
    if let Some(name) = read::<String>(env, ENACTED) {
        env.remove(ENACTED);
        env.remove(abi::PREVIOUS_CODE_KEY);
        match read::<(String, String)>(env, abi::UPGRADE_ABORTED_KEY) {
            Some((aborted, reason)) => {
                env.remove(abi::UPGRADE_ABORTED_KEY);
                write(env, &name_key(&aborted), &PlanStatus::Aborted);
                out.events.push(Event::UpgradeAborted {
                    name: aborted,
                    reason,
                });
            }
            None => {
                write(
                    env,
                    GRACE_UNTIL,
                    &height.saturating_add(params.upgrade_grace_blocks),
                );
                out.events.push(Event::RuntimeUpgraded {
                    name,
                    version: current.clone(),
                });
            }
        }
    }

    let Some(plan) = active_plan(env) else {
        return out;
    };
    let vote_end = plan
        .scheduled_at
        .saturating_add(params.voting_period_blocks);
    match plan.status {
        PlanStatus::Voting if height >= plan.height => {
            finish(env, &plan.name, PlanStatus::Expired);
            out.events.push(Event::UpgradeExpired {
                name: plan.name,
                reason: "target height reached without approval".into(),
            });
        }
        PlanStatus::Voting if height >= vote_end => {
            finish(env, &plan.name, PlanStatus::Expired);
            out.events.push(Event::UpgradeExpired {
                name: plan.name,
                reason: "voting period ended without quorum".into(),
            });
        }
        PlanStatus::Approved if height >= plan.height => match &plan.target {
            UpgradeTarget::Binary {
                binary_url,
                sha256,
                signature,
            } => {
                if implemented.contains(&plan.name) {
                    finish(env, &plan.name, PlanStatus::Executed);
                    write(
                        env,
                        GRACE_UNTIL,
                        &height.saturating_add(params.upgrade_grace_blocks),
                    );
                    out.events.push(Event::UpgradeExecuted {
                        name: plan.name,
                        height,
                    });
                } else {
                    out.halt = Some(UpgradeHalt {
                        name: plan.name.clone(),
                        height,
                        binary_url: binary_url.clone(),
                        sha256: sha256.clone(),
                        signature: signature.clone(),
                        authority: settings.upgrade_authority,
                        info_url: plan.info_url.clone(),
                        chain_id: chain_id.into(),
                    });
                }
            }
            UpgradeTarget::Runtime { .. } => {
                let code = env.get(PLAN_CODE).unwrap_or_default();
                match check_runtime_code(env, &code, params, current) {
                    Ok(_) => {
                        if let Some(old) = env.get(abi::CODE_KEY) {
                            env.set(abi::PREVIOUS_CODE_KEY, &old);
                        }
                        env.set(abi::CODE_KEY, &code);
                        write(
                            env,
                            abi::PENDING_MIGRATION_KEY,
                            &PendingMigration {
                                name: plan.name.clone(),
                                from: current.clone(),
                            },
                        );
                        write(env, ENACTED, &plan.name);
                        finish(env, &plan.name, PlanStatus::Executed);
                    }
                    Err(e) => {
                        finish(env, &plan.name, PlanStatus::Aborted);
                        out.events.push(Event::UpgradeAborted {
                            name: plan.name,
                            reason: alloc::format!("{e}"),
                        });
                    }
                }
            }
        },
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_directory_rules() {
        for ok in ["v2", "lthash-audit-fix", "a.b_c-d", "0", &"a".repeat(64)] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_name(""), Err(GovError::NameEmpty));
        assert_eq!(
            validate_name(&"a".repeat(65)),
            Err(GovError::NameTooLong { len: 65 })
        );
        assert_eq!(
            validate_name("../x"),
            Err(GovError::NameCharacter { found: '/' })
        );
        assert_eq!(
            validate_name("a/b"),
            Err(GovError::NameCharacter { found: '/' })
        );
        assert_eq!(validate_name(".hidden"), Err(GovError::NameLeadingDot));
        assert_eq!(
            validate_name("UPPER"),
            Err(GovError::NameCharacter { found: 'U' })
        );
        assert_eq!(
            validate_name("sp ace"),
            Err(GovError::NameCharacter { found: ' ' })
        );
        assert_eq!(
            validate_name("é"),
            Err(GovError::NameCharacter { found: 'é' })
        );
    }

    #[test]
    fn quorum_is_inclusive_at_the_percentage() {
        assert!(reaches_quorum(67, 100, 67));
        assert!(!reaches_quorum(66, 100, 67));
        // 2/3 of 3 is not 67%.
        assert!(!reaches_quorum(2, 3, 67));
        assert!(reaches_quorum(3, 3, 100));
    }
}
