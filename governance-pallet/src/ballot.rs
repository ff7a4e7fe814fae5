//! Stake-weighted ballots shared by upgrade plans and proposals: who may vote, with what weight,
//! and the tally. Weights come from the snapshot taken when the ballot opened.

use crate::GovError;
use alloc::vec::Vec;
use vexidus_runtime_api::Address;

/// Where the sender stands as a voter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Voter {
    /// Not a registered validator.
    NotValidator,
    /// A validator jailed until the given height.
    Jailed(u64),
    /// An active validator.
    Active,
}

/// Records `sender`'s vote in `votes` (kept sorted by address) and returns its snapshot weight:
/// only active validators that were in the snapshot vote, once.
pub fn cast(
    snapshot: &[(Address, u128)],
    votes: &mut Vec<(Address, bool)>,
    sender: Address,
    approve: bool,
    voter: Voter,
) -> Result<u128, GovError> {
    match voter {
        Voter::NotValidator => return Err(GovError::NotAValidator { sender }),
        Voter::Jailed(until) => return Err(GovError::Jailed { until }),
        Voter::Active => {}
    }
    let weight = snapshot
        .iter()
        .find(|(a, _)| *a == sender)
        .map(|(_, w)| *w)
        .ok_or(GovError::NotInSnapshot)?;
    match votes.binary_search_by(|(a, _)| a.cmp(&sender)) {
        Ok(_) => Err(GovError::AlreadyVoted),
        Err(at) => {
            votes.insert(at, (sender, approve));
            Ok(weight)
        }
    }
}

/// Approving, rejecting and total snapshot weight.
pub fn tally(snapshot: &[(Address, u128)], votes: &[(Address, bool)]) -> (u128, u128, u128) {
    let weight = |who: &Address| {
        snapshot
            .iter()
            .find(|(a, _)| a == who)
            .map_or(0, |(_, w)| *w)
    };
    let sum = |side: bool| {
        votes
            .iter()
            .filter(|(_, a)| *a == side)
            .map(|(v, _)| weight(v))
            .sum()
    };
    (
        sum(true),
        sum(false),
        snapshot.iter().map(|(_, w)| *w).sum(),
    )
}

/// Whether approving weight reaches the quorum: `approve × 100 ≥ quorum × total`.
pub fn reaches_quorum(approve: u128, total: u128, quorum_percent: u8) -> bool {
    approve.saturating_mul(100) >= (quorum_percent as u128).saturating_mul(total)
}
