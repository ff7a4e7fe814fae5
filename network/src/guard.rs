//! The per-peer guard every received message passes before anything else reads it.
//!
//! Each peer starts at [`START_SCORE`]. Garbage, oversized messages, replays (a hash among the
//! last [`REPLAY_RING`] messages from that peer) and messages over the rate limit cost points;
//! an offence the node proved after checking a message (a bad signature, an invalid block)
//! bans at once. Points come back over time ([`RECOVERY_MS`] a point), so an honest peer that
//! once sent something odd is not marked for good. A ban lasts [`BAN_BASE_MS`], doubled for
//! each earlier ban of the same peer up to [`BAN_MAX_MS`]; meanwhile its messages are dropped
//! unread (not hashed, not decoded) and the transport refuses its connections.
//!
//! Only the peer a message came from is ever charged, and only for what that message shows:
//! the transport forwards nothing before the node has validated it, so an honest relay never
//! passes on what would cost it points.

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
/// A point comes back every this many milliseconds, up to [`START_SCORE`].
pub const RECOVERY_MS: u64 = 10_000;
/// Length of a peer's first ban.
pub const BAN_BASE_MS: u64 = 10 * 60 * 1000;
/// Longest ban.
pub const BAN_MAX_MS: u64 = 24 * 60 * 60 * 1000;
/// Most peers the guard keeps a record of. Past it, the record least recently heard from
/// that is not banned leaves (then the ban that ends first): a stranger with endless peer ids
/// cannot grow the table.
pub const MAX_RECORDS: usize = 4_096;

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
    /// A request that ended before its message did (nothing, or a message's beginning): what
    /// a request its sender cancelled looks like, so not an offence.
    Incomplete,
    /// A message authored by a peer that has not proved a validator key, on a topic only
    /// validators publish, while `--enforce-validator-allowlist` is on (not an offence:
    /// ignored, not forwarded).
    NotAValidatorPeer,
}

/// What the node checked and found wrong in a message that decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offence {
    /// A block or vote whose signature does not verify.
    BadSignature,
    /// A block that does not execute to its header.
    InvalidBlock,
    /// A message the protocol does not allow (too many votes in one, a proof for another
    /// peer id).
    Malformed,
    /// A vote or block at a height no chain can have reached yet: timestamps rise by at least
    /// a block interval per block and are never far ahead of the clock, so an honest node
    /// never holds one, and never forwards it.
    ImpossibleHeight,
}

/// One peer's record.
#[derive(Clone, Debug)]
pub struct PeerRecord {
    /// Current score; banned at zero.
    pub score: i32,
    /// Until when (the guard's clock, ms) the peer is banned, while it is.
    pub banned_until: Option<u64>,
    /// Bans so far: each one lasts twice the last.
    pub bans: u32,
    /// Why, when banned.
    pub ban_reason: Option<String>,
    recent: VecDeque<[u8; 32]>,
    window_start_ms: u64,
    in_window: u32,
    /// When the score was last brought up to date, and when the peer was last heard from.
    last_ms: u64,
}

impl PeerRecord {
    fn new(now_ms: u64) -> Self {
        Self {
            score: START_SCORE,
            banned_until: None,
            bans: 0,
            ban_reason: None,
            recent: VecDeque::with_capacity(REPLAY_RING),
            window_start_ms: now_ms,
            in_window: 0,
            last_ms: now_ms,
        }
    }

    /// Whether the peer is banned at `now_ms`.
    pub fn is_banned(&self, now_ms: u64) -> bool {
        self.banned_until.is_some_and(|until| now_ms < until)
    }

    /// Points that came back since the last look.
    fn recover(&mut self, now_ms: u64) {
        if self.banned_until.is_none() {
            let points = now_ms.saturating_sub(self.last_ms) / RECOVERY_MS;
            if points > 0 {
                self.score = (self.score as i64 + points as i64).min(START_SCORE as i64) as i32;
                self.last_ms += points * RECOVERY_MS;
            }
            if self.score >= START_SCORE {
                self.last_ms = now_ms;
            }
        } else {
            self.last_ms = now_ms;
        }
    }
}

/// A ban the guard imposed, for the transport to enforce and log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    /// The peer.
    pub peer: Vec<u8>,
    /// Why.
    pub reason: String,
    /// How long (ms).
    pub duration_ms: u64,
    /// Which ban of this peer it is (1 for the first).
    pub count: u32,
}

/// The guard of one node, over all its peers (keyed by peer id bytes).
#[derive(Clone, Debug)]
pub struct PeerGuard {
    peers: BTreeMap<Vec<u8>, PeerRecord>,
    max_per_second: u32,
    /// Bans imposed since the transport last took them.
    new_bans: Vec<Ban>,
}

impl PeerGuard {
    /// A guard allowing `max_per_second` messages per peer.
    pub fn new(max_per_second: u32) -> Self {
        Self {
            peers: BTreeMap::new(),
            max_per_second,
            new_bans: Vec::new(),
        }
    }

    /// A peer's record, if it sent anything.
    pub fn peer(&self, id: &[u8]) -> Option<&PeerRecord> {
        self.peers.get(id)
    }

    /// Whether a peer is banned at `now_ms` (the transport also disconnects it).
    pub fn is_banned(&self, id: &[u8], now_ms: u64) -> bool {
        self.peers.get(id).is_some_and(|p| p.is_banned(now_ms))
    }

    /// The peers banned at `now_ms`, with why and until when.
    pub fn banned(&self, now_ms: u64) -> Vec<(Vec<u8>, String, u64)> {
        self.peers
            .iter()
            .filter(|(_, r)| r.is_banned(now_ms))
            .map(|(id, r)| {
                (
                    id.clone(),
                    r.ban_reason.clone().unwrap_or_default(),
                    r.banned_until.unwrap_or(now_ms),
                )
            })
            .collect()
    }

    /// Peers with a record (at most [`MAX_RECORDS`]).
    pub fn records(&self) -> usize {
        self.peers.len()
    }

    /// The bans imposed since the last call.
    pub fn take_new_bans(&mut self) -> Vec<Ban> {
        std::mem::take(&mut self.new_bans)
    }

    /// Lifts the bans that ended by `now_ms` and returns those peers. They start again from a
    /// full score; the next ban lasts twice as long.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Vec<u8>> {
        let mut lifted = Vec::new();
        for (id, record) in &mut self.peers {
            if record.banned_until.is_some_and(|until| now_ms >= until) {
                record.banned_until = None;
                record.ban_reason = None;
                record.score = START_SCORE;
                record.last_ms = now_ms;
                lifted.push(id.clone());
            }
        }
        lifted
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
    /// (a retry, a sync restarted from the same height) is what an honest peer does, and a
    /// request that ends early ([`Dropped::Incomplete`]) costs nothing, since that is what a
    /// request its asker cancelled looks like.
    pub fn admit_request<T: BorshDeserialize + for<'de> Deserialize<'de>>(
        &mut self,
        peer: &[u8],
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(T, Encoding), Dropped> {
        self.admit_with(peer, bytes, now_ms, false)
    }

    fn record(&mut self, peer: &[u8], now_ms: u64) -> &mut PeerRecord {
        if !self.peers.contains_key(peer) && self.peers.len() >= MAX_RECORDS {
            self.evict_one();
        }
        let record = self
            .peers
            .entry(peer.to_vec())
            .or_insert_with(|| PeerRecord::new(now_ms));
        record.recover(now_ms);
        record
    }

    /// Makes room for one record: the least recently heard from peer that is not banned, or
    /// else the ban that ends first.
    fn evict_one(&mut self) {
        let victim = self
            .peers
            .iter()
            .filter(|(_, r)| r.banned_until.is_none())
            .min_by_key(|(_, r)| r.last_ms)
            .or_else(|| {
                self.peers
                    .iter()
                    .min_by_key(|(_, r)| r.banned_until.unwrap_or(0))
            })
            .map(|(id, _)| id.clone());
        if let Some(id) = victim {
            self.peers.remove(&id);
        }
    }

    fn admit_with<T: BorshDeserialize + for<'de> Deserialize<'de>>(
        &mut self,
        peer: &[u8],
        bytes: &[u8],
        now_ms: u64,
        gossip: bool,
    ) -> Result<(T, Encoding), Dropped> {
        let max_rate = self.max_per_second;
        let record = self.record(peer, now_ms);
        if record.is_banned(now_ms) {
            return Err(Dropped::Banned);
        }
        let verdict = check(record, bytes, now_ms, max_rate, gossip);
        let verdict = verdict.and_then(|()| {
            decode(bytes).map_err(|e| {
                // Gossip arrives whole or not at all; a request's stream can end early when
                // the asker gives up on it (a timeout, a closed connection).
                if !gossip && e.is_incomplete() {
                    Dropped::Incomplete
                } else {
                    record.score -= GARBAGE_COST;
                    Dropped::Garbage(e.to_string())
                }
            })
        });
        if verdict.is_err() {
            self.ban_if_spent(peer, now_ms, &verdict);
        }
        verdict
    }

    fn ban_if_spent<T>(&mut self, peer: &[u8], now_ms: u64, why: &Result<T, Dropped>) {
        let Some(record) = self.peers.get(peer) else {
            return;
        };
        if record.score > 0 || record.is_banned(now_ms) {
            return;
        }
        let reason = match why {
            Err(Dropped::Oversized(_)) => "oversized messages",
            Err(Dropped::RateLimited) => "message rate",
            Err(Dropped::Replay) => "replayed messages",
            Err(Dropped::Garbage(_)) => "undecodable messages",
            _ => "misbehaviour",
        };
        self.ban(peer, now_ms, reason.to_string());
    }

    fn ban(&mut self, peer: &[u8], now_ms: u64, reason: String) {
        let record = self.record(peer, now_ms);
        let duration_ms = BAN_BASE_MS
            .saturating_mul(1u64 << record.bans.min(20))
            .min(BAN_MAX_MS);
        record.score = 0;
        record.bans += 1;
        record.banned_until = Some(now_ms.saturating_add(duration_ms));
        record.ban_reason = Some(reason.clone());
        let count = record.bans;
        self.new_bans.push(Ban {
            peer: peer.to_vec(),
            reason,
            duration_ms,
            count,
        });
    }

    /// Charges `peer` `cost` points for a message that decoded but breaks a rule of the
    /// protocol the transport checks (`why` is the ban's reason if the score runs out).
    pub fn penalize(&mut self, peer: &[u8], cost: i32, why: &str, now_ms: u64) {
        let record = self.record(peer, now_ms);
        record.score -= cost;
        if record.score <= 0 && !record.is_banned(now_ms) {
            self.ban(peer, now_ms, why.to_string());
        }
    }

    /// The node proved `offence` in a message from `peer`: banned at once (unless it already
    /// is).
    pub fn report(&mut self, peer: &[u8], offence: Offence, now_ms: u64) {
        if !self.is_banned(peer, now_ms) {
            self.ban(peer, now_ms, format!("{offence:?}"));
        }
    }
}

/// The checks before decoding: size, rate, replay. Costs points on failure.
fn check(
    record: &mut PeerRecord,
    bytes: &[u8],
    now_ms: u64,
    max_rate: u32,
    replay_check: bool,
) -> Result<(), Dropped> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        record.score -= OVERSIZED_COST;
        return Err(Dropped::Oversized(bytes.len()));
    }
    if now_ms >= record.window_start_ms + 1000 {
        record.window_start_ms = now_ms;
        record.in_window = 0;
    }
    record.in_window += 1;
    if record.in_window > max_rate {
        record.score -= RATE_COST;
        return Err(Dropped::RateLimited);
    }
    if replay_check {
        let hash = *blake3::hash(bytes).as_bytes();
        if record.recent.contains(&hash) {
            record.score -= REPLAY_COST;
            return Err(Dropped::Replay);
        }
        if record.recent.len() == REPLAY_RING {
            record.recent.pop_front();
        }
        record.recent.push_back(hash);
    }
    Ok(())
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
        while !g.is_banned(b"bad", t) {
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
    fn a_request_cut_short_costs_nothing_and_garbage_or_short_gossip_still_does() {
        let mut g = PeerGuard::new(1_000);
        let request = crate::wire::encode(&crate::wire::SyncRequest::Blocks { from: 7, max: 64 });
        for t in 0..100u64 {
            let cut = (t as usize) % request.len();
            assert_eq!(
                g.admit_request::<crate::wire::SyncRequest>(b"asker", &request[..cut], t),
                Err(Dropped::Incomplete),
                "{cut} bytes"
            );
        }
        assert_eq!(g.peer(b"asker").map(|p| p.score), Some(START_SCORE));
        assert!(matches!(
            g.admit_request::<crate::wire::SyncRequest>(b"asker", b"VX\x09", 100),
            Err(Dropped::Garbage(_))
        ));
        assert_eq!(
            g.peer(b"asker").map(|p| p.score),
            Some(START_SCORE - GARBAGE_COST)
        );
        let whole = encode(&vote(3));
        assert!(matches!(
            g.admit::<Gossip>(b"gossiper", &whole[..whole.len() - 1], 0),
            Err(Dropped::Garbage(_))
        ));
        assert_eq!(
            g.peer(b"gossiper").map(|p| p.score),
            Some(START_SCORE - GARBAGE_COST)
        );
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
        g.report(b"p", Offence::BadSignature, 0);
        assert!(g.is_banned(b"p", 0));
        assert_eq!(
            g.admit::<Gossip>(b"p", &encode(&vote(1)), 0),
            Err(Dropped::Banned)
        );
        let bans = g.take_new_bans();
        assert_eq!(bans.len(), 1);
        assert_eq!(
            (bans[0].reason.as_str(), bans[0].duration_ms, bans[0].count),
            ("BadSignature", BAN_BASE_MS, 1)
        );
        assert!(g.take_new_bans().is_empty(), "taken once");
    }

    #[test]
    fn bans_expire_and_each_lasts_twice_the_last() {
        let mut g = PeerGuard::new(10);
        let mut now = 1_000;
        let mut expected = BAN_BASE_MS;
        for count in 1..=12u32 {
            g.report(b"p", Offence::InvalidBlock, now);
            let ban = g.take_new_bans().pop().expect("a ban");
            assert_eq!((ban.count, ban.duration_ms), (count, expected));
            assert!(g.is_banned(b"p", now + expected - 1));
            assert!(g.expire(now + expected - 1).is_empty(), "not over yet");
            assert_eq!(g.expire(now + expected), vec![b"p".to_vec()]);
            assert!(!g.is_banned(b"p", now + expected));
            assert!(g.banned(now + expected).is_empty());
            assert_eq!(g.peer(b"p").map(|r| r.score), Some(START_SCORE));
            // After the ban, the peer is heard again.
            now += expected;
            assert!(
                g.admit::<Gossip>(b"p", &encode(&vote(count as u64)), now)
                    .is_ok()
            );
            expected = (expected * 2).min(BAN_MAX_MS);
        }
        assert_eq!(expected, BAN_MAX_MS, "the cap is reached");
    }

    #[test]
    fn points_come_back_over_time() {
        let mut g = PeerGuard::new(1_000);
        for n in 0..4u32 {
            let junk = format!("junk {n}");
            let _ = g.admit::<Gossip>(b"p", junk.as_bytes(), 0);
        }
        assert_eq!(
            g.peer(b"p").map(|r| r.score),
            Some(START_SCORE - 4 * GARBAGE_COST)
        );
        // 25 recovery periods later, 25 points are back; never more than the start score.
        assert!(
            g.admit::<Gossip>(b"p", &encode(&vote(1)), 25 * RECOVERY_MS + 1)
                .is_ok()
        );
        assert_eq!(
            g.peer(b"p").map(|r| r.score),
            Some(START_SCORE - 4 * GARBAGE_COST + 25)
        );
        assert!(
            g.admit::<Gossip>(b"p", &encode(&vote(2)), 1_000 * RECOVERY_MS)
                .is_ok()
        );
        assert_eq!(g.peer(b"p").map(|r| r.score), Some(START_SCORE));
        // A garbage stream faster than recovery still ends in a ban.
        let mut t = 1_000 * RECOVERY_MS;
        let mut n = 0;
        while !g.is_banned(b"p", t) {
            t += RECOVERY_MS;
            n += 1;
            let _ = g.admit::<Gossip>(b"p", format!("more junk {n}").as_bytes(), t);
            assert!(n < 20, "should be banned by now");
        }
    }

    #[test]
    fn the_record_table_is_bounded_and_keeps_bans() {
        let mut g = PeerGuard::new(10);
        g.report(b"banned", Offence::BadSignature, 0);
        for i in 0..(MAX_RECORDS as u64 * 2) {
            let id = format!("peer {i}");
            assert!(
                g.admit::<Gossip>(id.as_bytes(), &encode(&vote(i)), i + 1)
                    .is_ok()
            );
        }
        assert_eq!(g.peers.len(), MAX_RECORDS);
        assert!(
            g.is_banned(b"banned", 10),
            "a ban is not evicted by newcomers"
        );
        assert!(g.peer(b"peer 0").is_none(), "the least recently heard left");
    }
}
