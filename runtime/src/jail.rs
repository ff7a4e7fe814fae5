//! Double-sign evidence and jailing (SPEC §10): a validator that signed two conflicting votes or
//! blocks at one height is jailed for 1 hour, then 24 hours, 7 days and 30 days on repeat
//! offences, counted in blocks of the chain's block time. No stake is slashed. Each offence
//! (offender, height, kind) is punished once, and offences reported while the offender is
//! serving a term, or committed before the block that last jailed it, are recorded without
//! lengthening a term or counting again: double-signing comes in bursts (a faulty validator signs
//! twice at every height of its slot until the first report jails it), and a burst counts as one
//! offence however late its other reports arrive.

use crate::context::{Context, DispatchError};
use crate::env::Env;
use crate::storage;
use alloc::vec::Vec;
use vexidus_runtime_api::block::Event;
use vexidus_runtime_api::domains::{BLOCK_DOMAIN, VOTE_DOMAIN};
use vexidus_runtime_api::guest::{read, verify_signed, write};
use vexidus_runtime_api::vote::{DoubleSignEvidence, SignedHeader, SignedVote};
use vexidus_runtime_api::{Address, Hash};

/// Jail terms in seconds, by offence count (the last repeats).
#[cfg(not(feature = "next-short-jail"))]
pub const JAIL_TERMS_SECS: [u64; 4] = [3_600, 86_400, 7 * 86_400, 30 * 86_400];
/// Jail terms of the `next-short-jail` test runtime: the same escalation at 1/360.
#[cfg(feature = "next-short-jail")]
pub const JAIL_TERMS_SECS: [u64; 4] = [10, 240, 1_680, 7_200];

/// Prefix of offence counts: `jail/n/` ‖ address → SCALE `u32`.
pub const OFFENCES_PREFIX: &[u8] = b"jail/n/";
/// Prefix of punished offences: `jail/e/` ‖ address ‖ height (BE) ‖ kind → `()`.
pub const PUNISHED_PREFIX: &[u8] = b"jail/e/";
/// Prefix of the last height of the last term a validator was jailed for double-signing:
/// `jail/j/` ‖ address → SCALE `u64`.
pub const TERM_END_PREFIX: &[u8] = b"jail/j/";

fn offences_key(who: &Address) -> Vec<u8> {
    [OFFENCES_PREFIX, &who.0[..]].concat()
}

fn punished_key(who: &Address, height: u64, kind: u8) -> Vec<u8> {
    [
        PUNISHED_PREFIX,
        &who.0[..],
        &height.to_be_bytes()[..],
        &[kind][..],
    ]
    .concat()
}

fn term_end_key(who: &Address) -> Vec<u8> {
    [TERM_END_PREFIX, &who.0[..]].concat()
}

/// The end of the last term `who` was jailed for double-signing, if it ever was.
pub fn last_term_end(env: &mut impl Env, who: &Address) -> Option<u64> {
    read(env, &term_end_key(who))
}

/// Offences recorded against a validator.
pub fn offences(env: &mut impl Env, who: &Address) -> u32 {
    read(env, &offences_key(who)).unwrap_or(0)
}

/// Blocks of the jail term after `offences` offences (this one included).
pub fn term_blocks(offences: u32, block_time_ms: u64) -> u64 {
    let i = (offences.max(1) as usize - 1).min(JAIL_TERMS_SECS.len() - 1);
    (JAIL_TERMS_SECS[i] * 1000).div_ceil(block_time_ms.max(1))
}

fn header_hash(env: &impl Env, s: &SignedHeader) -> Hash {
    env.blake3(&borsh::to_vec(&s.header).unwrap_or_default())
}

fn vote_signed(env: &impl Env, chain_id: &str, v: &SignedVote) -> bool {
    let body = borsh::to_vec(&v.body).unwrap_or_default();
    verify_signed(env, &v.voter, VOTE_DOMAIN, chain_id, &body, &v.signature)
}

fn header_signed(env: &impl Env, chain_id: &str, s: &SignedHeader) -> bool {
    let hash = header_hash(env, s);
    verify_signed(
        env,
        &s.header.proposer,
        BLOCK_DOMAIN,
        chain_id,
        &hash,
        &s.signature,
    )
}

/// Checks the evidence: one signer, one height (and stage), two different messages, both
/// signatures valid on this chain.
pub fn check(env: &mut impl Env, evidence: &DoubleSignEvidence) -> Result<(), DispatchError> {
    let chain_id = storage::chain_id(env);
    let bad = DispatchError::InvalidEvidence;
    match evidence {
        DoubleSignEvidence::DoubleVote { first, second } => {
            if first.voter != second.voter {
                return Err(bad("the two votes have different voters"));
            }
            if first.body.stage != second.body.stage || first.body.height != second.body.height {
                return Err(bad("the two votes are not of one stage at one height"));
            }
            if first.body.block == second.body.block {
                return Err(bad("the two votes are for the same block"));
            }
            if !vote_signed(env, &chain_id, first) || !vote_signed(env, &chain_id, second) {
                return Err(bad("a vote signature does not verify"));
            }
        }
        DoubleSignEvidence::DoubleProposal { first, second } => {
            if first.header.proposer != second.header.proposer {
                return Err(bad("the two blocks have different proposers"));
            }
            if first.header.height != second.header.height {
                return Err(bad("the two blocks are not at one height"));
            }
            if header_hash(env, first) == header_hash(env, second) {
                return Err(bad("the two headers are the same block"));
            }
            if !header_signed(env, &chain_id, first) || !header_signed(env, &chain_id, second) {
                return Err(bad("a block signature does not verify"));
            }
        }
    }
    Ok(())
}

/// `ReportDoubleSign`: verifies the evidence and jails the offender.
pub fn report(
    env: &mut impl Env,
    ctx: &mut Context<'_>,
    evidence: &DoubleSignEvidence,
) -> Result<(), DispatchError> {
    check(env, evidence)?;
    let offender = Address(env.blake3(&evidence.offender().0));
    let mut v = storage::validator(env, &offender).ok_or(DispatchError::InvalidEvidence(
        "the signer is not a registered validator",
    ))?;
    let height = evidence.height();
    if height > ctx.height {
        return Err(DispatchError::InvalidEvidence(
            "the offence is above the current height",
        ));
    }
    let punished = punished_key(&offender, height, evidence.kind());
    if env.get(&punished).is_some() {
        return Err(DispatchError::EvidenceAlreadyUsed);
    }
    env.set(&punished, &[]);
    // Serving a term, or an offence committed before the last term ended (the burst that was
    // punished, reported late: a faulty node goes on signing twins for a few heights after the
    // block that jails it, until it sees that block): recorded, not counted. A repeat offence is
    // one committed after the term.
    if v.is_jailed_at(ctx.height) || last_term_end(env, &offender).is_some_and(|end| height <= end)
    {
        return Ok(());
    }
    let n = offences(env, &offender) + 1;
    write(env, &offences_key(&offender), &n);
    let block_time: u64 = read(env, storage::BLOCK_TIME).unwrap_or(1000);
    let until = ctx.height + term_blocks(n, block_time);
    v.jailed_until = v.jailed_until.max(until);
    write(env, &term_end_key(&offender), &v.jailed_until);
    storage::set_validator(env, &v);
    ctx.events.push(Event::Jailed {
        validator: offender,
        offence_height: height,
        until: v.jailed_until,
        offences: n,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_escalate_and_cap_at_30_days() {
        let terms: Vec<u64> = (1..=6).map(|n| term_blocks(n, 1000)).collect();
        assert_eq!(
            terms,
            [3_600, 86_400, 604_800, 2_592_000, 2_592_000, 2_592_000]
        );
        assert_eq!(term_blocks(1, 600_000), 6);
        assert_eq!(term_blocks(1, 7_000), 515, "rounded up");
    }
}
