//! The per-peer guard every received message passes before anything else reads it.
//!
//! Each peer starts at [`START_SCORE`]. Garbage, oversized messages, replays (a hash among the
//! last [`REPLAY_RING`] messages from that peer) and messages over the rate limit cost points;
//! a bad signature or an invalid block, reported by the node after checking, bans at once
//! (SPEC §10, seeds/002). At zero a peer is banned for good and its messages are dropped
//! unread: not hashed, not decoded.

use crate::wire::{Encoding, MAX_MESSAGE_BYTES, decode};
use borsh::BorshDeserialize;
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};

/// A new peer's score.
pub const START_SCORE: i32 = 100;
/// Message hashes remembered per peer.
pub const REPLAY_RING: usize = 200;
/// Cost of a message that does not decode.
pub const GARBAGE_COST: i32 = 20;
/// Cost of a message over the size cap.
pub const OVERSIZED_COST: i32 = 25;
/// Cost of a replayed message.
pub const REPLAY_COST: i32 = 5;
/// Cost of a message over the rate limit.
pub const RATE_COST: i32 = 2;

/// Why a message was not passed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// The peer is banned; the message was not read.
    Banned,
    /// Over the size cap.
    Oversized(usize),
    /// Over the per-second rate.
    RateLimited,
    /// Seen from this peer before.
    Replay,
    /// Not a message.
    Garbage(String),
    /// A block authored by a peer that has not proved a validator key, while
    /// `--enforce-validator-allowlist` is on (not an offence: ignored, not forwarded).
    NotAValidatorPeer,
}

/// What the node checked and found wrong in a message that decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offence {
    /// A block or vote whose signature does not verify.
    BadSignature,
    /// A block that does not execute to its header.
    InvalidBlock,
}

/// One peer's record.
#[derive(Clone, Debug)]
pub struct PeerRecord {
    /// Current score; banned at zero.
    pub score: i32,
    /// Banned for good.
    pub banned: bool,
    /// Why, when banned.
    pub ban_reason: Option<String>,
    recent: VecDeque<[u8; 32]>,
    window_start_ms: u64,
    in_window: u32,
}

impl Default for PeerRecord {
    fn default() -> Self {
        Self {
            score: START_SCORE,
            banned: false,
            ban_reason: None,
            recent: VecDeque::with_capacity(REPLAY_RING),
            window_start_ms: 0,
            in_window: 0,
        }
    }
}

/// The guard of one node, over all its peers (keyed by peer id bytes).
#[derive(Clone, Debug)]
pub struct PeerGuard {
    peers: BTreeMap<Vec<u8>, PeerRecord>,
    max_per_second: u32,
}

impl PeerGuard {
    /// A guard allowing `max_per_second` messages per peer.
    pub fn new(max_per_second: u32) -> Self {
        Self {
            peers: BTreeMap::new(),
            max_per_second,
        }
    }

    /// A peer's record, if it sent anything.
    pub fn peer(&self, id: &[u8]) -> Option<&PeerRecord> {
        self.peers.get(id)
    }

    /// Whether a peer is banned (the transport also disconnects it).
    pub fn is_banned(&self, id: &[u8]) -> bool {
        self.peers.get(id).is_some_and(|p| p.banned)
    }

    /// Admits gossip `bytes` from `peer` at `now_ms`: the decoded message, or why it was
    /// dropped.
    pub fn admit<T: BorshDeserialize + for<'de> Deserialize<'de>>(
        &mut self,
        peer: &[u8],
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(T, Encoding), Dropped> {
        self.admit_with(peer, bytes, now_ms, true)
    }

    /// Admits a request: as [`Self::admit`] but without the replay check, since asking again
    /// (a retry, a sync restarted from the same height) is what an honest peer does.
    pub fn admit_request<T: BorshDeserialize + for<'de> Deserialize<'de>>(
        &mut self,
        peer: &[u8],
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(T, Encoding), Dropped> {
        self.admit_with(peer, bytes, now_ms, false)
    }

    fn admit_with<T: BorshDeserialize + for<'de> Deserialize<'de>>(
        &mut self,
        peer: &[u8],
        bytes: &[u8],
        now_ms: u64,
        replay_check: bool,
    ) -> Result<(T, Encoding), Dropped> {
        let max_rate = self.max_per_second;
        let record = self.peers.entry(peer.to_vec()).or_default();
        if record.banned {
            return Err(Dropped::Banned);
        }
        if bytes.len() > MAX_MESSAGE_BYTES {
            penalize(record, OVERSIZED_COST, "oversized messages");
            return Err(Dropped::Oversized(bytes.len()));
        }
        if now_ms >= record.window_start_ms + 1000 {
            record.window_start_ms = now_ms;
            record.in_window = 0;
        }
        record.in_window += 1;
        if record.in_window > max_rate {
            penalize(record, RATE_COST, "message rate");
            return Err(Dropped::RateLimited);
        }
        if replay_check {
            let hash = *blake3::hash(bytes).as_bytes();
            if record.recent.contains(&hash) {
                penalize(record, REPLAY_COST, "replayed messages");
                return Err(Dropped::Replay);
            }
            if record.recent.len() == REPLAY_RING {
                record.recent.pop_front();
            }
            record.recent.push_back(hash);
        }
        decode(bytes).map_err(|e| {
            penalize(record, GARBAGE_COST, "undecodable messages");
            Dropped::Garbage(e.to_string())
        })
    }

    /// The node found `offence` in a message from `peer`: banned at once.
    pub fn report(&mut self, peer: &[u8], offence: Offence) {
        let record = self.peers.entry(peer.to_vec()).or_default();
        record.score = 0;
        record.banned = true;
        record.ban_reason = Some(format!("{offence:?}"));
    }
}

fn penalize(record: &mut PeerRecord, cost: i32, why: &str) {
    record.score -= cost;
    if record.score <= 0 {
        record.score = 0;
        record.banned = true;
        record.ban_reason = Some(why.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Gossip, encode, encode_json};
    use vexidus_runtime_api::signing::Keypair;
    use vexidus_runtime_api::vote::{SignedVote, VoteBody, VoteStage};

    fn vote(height: u64) -> Gossip {
        Gossip::Vote(SignedVote::sign(
            VoteBody {
                stage: VoteStage::Prevote,
                height,
                block: [height as u8; 32],
            },
            &Keypair::from_seed([1; 32]),
            "c",
        ))
    }

    #[test]
    fn good_messages_pass_in_both_encodings() {
        let mut g = PeerGuard::new(100);
        let (m, e) = g
            .admit::<Gossip>(b"p", &encode(&vote(1)), 0)
            .expect("borsh");
        assert_eq!((m, e), (vote(1), Encoding::Borsh));
        let (m, e) = g
            .admit::<Gossip>(b"p", &encode_json(&vote(2)), 0)
            .expect("json");
        assert_eq!((m, e), (vote(2), Encoding::Json));
        assert_eq!(g.peer(b"p").map(|p| p.score), Some(START_SCORE));
    }

    #[test]
    fn garbage_oversized_and_replays_lead_to_a_ban_and_then_nothing_is_read() {
        let mut g = PeerGuard::new(1000);
        let mut t = 0;
        // Replays cost a little.
        let m = encode(&vote(1));
        g.admit::<Gossip>(b"bad", &m, t).expect("first time");
        assert_eq!(g.admit::<Gossip>(b"bad", &m, t), Err(Dropped::Replay));
        assert_eq!(
            g.peer(b"bad").map(|p| p.score),
            Some(START_SCORE - REPLAY_COST)
        );
        // Oversized messages are not hashed or decoded.
        let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            g.admit::<Gossip>(b"bad", &big, t),
            Err(Dropped::Oversized(MAX_MESSAGE_BYTES + 1))
        );
        // Garbage until banned.
        let mut n = 0u32;
        while !g.is_banned(b"bad") {
            t += 1;
            n += 1;
            let junk = format!("junk {n}");
            assert!(matches!(
                g.admit::<Gossip>(b"bad", junk.as_bytes(), t),
                Err(Dropped::Garbage(_))
            ));
            assert!(n < 10, "should be banned by now");
        }
        assert_eq!(g.peer(b"bad").map(|p| p.score), Some(0));
        // A perfectly good message from a banned peer is dropped unread.
        assert_eq!(
            g.admit::<Gossip>(b"bad", &encode(&vote(9)), t),
            Err(Dropped::Banned)
        );
        // Other peers are unaffected.
        assert!(g.admit::<Gossip>(b"good", &encode(&vote(9)), t).is_ok());
    }

    #[test]
    fn the_replay_ring_remembers_200_messages() {
        let mut g = PeerGuard::new(10_000);
        for h in 0..=REPLAY_RING as u64 {
            g.admit::<Gossip>(b"p", &encode(&vote(h)), 0)
                .expect("fresh");
        }
        // The first one has left the ring; the last 200 are remembered.
        assert!(g.admit::<Gossip>(b"p", &encode(&vote(0)), 0).is_ok());
        assert_eq!(
            g.admit::<Gossip>(b"p", &encode(&vote(REPLAY_RING as u64)), 0),
            Err(Dropped::Replay)
        );
    }

    #[test]
    fn rate_abuse_costs_points_per_message_and_the_window_resets() {
        let mut g = PeerGuard::new(10);
        for h in 0..10 {
            g.admit::<Gossip>(b"p", &encode(&vote(h)), 500)
                .expect("within the rate");
        }
        assert_eq!(
            g.admit::<Gossip>(b"p", &encode(&vote(10)), 900),
            Err(Dropped::RateLimited)
        );
        assert_eq!(g.peer(b"p").map(|p| p.score), Some(START_SCORE - RATE_COST));
        assert!(g.admit::<Gossip>(b"p", &encode(&vote(11)), 1500).is_ok());
    }

    #[test]
    fn a_bad_signature_bans_at_once() {
        let mut g = PeerGuard::new(10);
        g.report(b"p", Offence::BadSignature);
        assert!(g.is_banned(b"p"));
        assert_eq!(
            g.admit::<Gossip>(b"p", &encode(&vote(1)), 0),
            Err(Dropped::Banned)
        );
    }
}
