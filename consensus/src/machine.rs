//! The consensus state machine: events in, actions out, time as an input.
//!
//! Voting rules (two-stage, after the last-irreversible-block rule of the EOSIO family):
//! - **Prevote** the first valid block seen at each height, if it extends the lock.
//! - A block with prevotes from more than 2/3 of stake is **justified**. Precommit a justified
//!   block (once per height) if it is on one chain with the lock and every prevote already cast
//!   above its height is for one of its descendants; lock on it when higher.
//!   Seeing a justified block that conflicts with the lock at a greater height moves the lock
//!   to it.
//! - A block with precommits from more than 2/3 of stake is **irreversible**, with all its
//!   ancestors; the fork database is re-rooted there, so fork choice never crosses it.
//!
//! Safety: if B is irreversible, more than 2/3 precommitted it and are locked on B or a
//! descendant, and every prevote they cast above B (before or after) extends B; a conflicting
//! block needs prevotes from more than 2/3, so from one of them; locks only move to justified
//! blocks, and the first justified block off B's chain cannot exist. Hence two conflicting irreversible blocks need
//! more than 1/3 of stake to equivocate, which the machine reports as evidence.

use crate::forkdb::{ForkDb, InsertError, Liveness, Timing, check_schedule, producers};
use crate::schedule::failover_delay_ms;
use crate::types::{BlockMeta, Evidence, Stage, ValidatorSet, Vote};
use std::collections::{BTreeMap, BTreeSet};
use vexidus_runtime_api::{Address, Hash};

/// Settings of one node's consensus.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's validator address, if it is one.
    pub me: Option<Address>,
    /// Target block interval.
    pub block_time_ms: u64,
    /// Failover unit: backups wait 5, 8, 11 … units (1 s in production).
    pub failover_base_ms: u64,
    /// How often this validator re-sends its votes above the last irreversible block, so
    /// votes lost on the way (a partition, a restart) are made good.
    pub rebroadcast_ms: u64,
    /// A deliberate fault for tests: as a backup, produce a block interval after the parent
    /// arrives, without waiting for the failover delay (trying to take others' slots).
    pub fault_skip_failover_delay: bool,
}

impl Config {
    /// The block timing this node judges blocks by.
    pub fn timing(&self) -> Timing {
        Timing {
            block_time_ms: self.block_time_ms,
            failover_base_ms: self.failover_base_ms,
        }
    }
}

/// An input.
#[derive(Clone, Debug)]
pub enum Event {
    /// Time passed.
    Tick,
    /// A block the host verified (signature, proposer) and executed.
    Block(BlockMeta),
    /// A vote whose signature the host verified.
    Vote(Vote),
}

/// An output for the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Build, sign and broadcast a block on `parent`, then feed it back as [`Event::Block`].
    Produce {
        /// Parent block.
        parent: Hash,
        /// Height of the new block.
        height: u64,
        /// The earliest timestamp the schedule allows this node at this height: the block's
        /// timestamp is the later of this and the clock.
        not_before_ms: u64,
    },
    /// Sign and broadcast this vote (the machine has already counted it).
    CastVote {
        /// Stage.
        stage: Stage,
        /// Height.
        height: u64,
        /// Block.
        block: Hash,
    },
    /// The canonical head changed.
    NewHead {
        /// Head hash.
        hash: Hash,
        /// Head height.
        height: u64,
    },
    /// A block became irreversible (emitted in height order).
    Finalized {
        /// Block hash.
        hash: Hash,
        /// Height.
        height: u64,
    },
    /// Re-send these votes of others (already signed): the certificate that justifies the
    /// block this node's fork choice rests on, so every node can see it.
    Relay(Vec<Vote>),
    /// Put this evidence on chain.
    Evidence(Evidence),
    /// Fetch this block from peers (a block arrived whose parent is unknown).
    RequestBlock {
        /// The missing block.
        hash: Hash,
    },
}

/// What a validator must persist before its votes leave the process, so that a restart never
/// makes it sign twice.
#[derive(Clone, Debug, Default, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct SafetyState {
    /// This validator's votes, by stage and height.
    pub voted: BTreeMap<(Stage, u64), Hash>,
    /// Heights this validator produced a block at.
    pub produced: BTreeSet<u64>,
    /// The lock: (block, height).
    pub lock: Option<(Hash, u64)>,
}

/// One node's consensus.
#[derive(Clone, Debug)]
pub struct Consensus {
    cfg: Config,
    set: ValidatorSet,
    forkdb: ForkDb,
    head: Hash,
    head_since_ms: u64,
    /// The block this node was last told to produce: its height and when.
    producing: Option<(u64, u64)>,
    now_ms: u64,
    safety: SafetyState,
    votes: BTreeMap<(Stage, u64, Hash), BTreeMap<Address, Vote>>,
    first_votes: BTreeMap<(Stage, u64, Address), Vote>,
    proposals: BTreeMap<(u64, Address), Hash>,
    reported: BTreeSet<(Address, u64, u8)>,
    orphans: BTreeMap<Hash, Vec<BlockMeta>>,
    requested: BTreeSet<Hash>,
    last_rebroadcast_ms: u64,
}

/// Heights of vote and proposal records kept below the last irreversible block, for late
/// equivocation evidence.
const EVIDENCE_WINDOW: u64 = 64;

impl Consensus {
    /// A node whose last irreversible block is `root` (genesis at first start).
    pub fn new(
        cfg: Config,
        set: ValidatorSet,
        root: BlockMeta,
        liveness: Liveness,
        safety: SafetyState,
        now_ms: u64,
    ) -> Self {
        let head = root.hash;
        Self {
            cfg,
            set,
            forkdb: ForkDb::new(root, liveness),
            head,
            head_since_ms: now_ms,
            producing: None,
            now_ms,
            safety,
            votes: BTreeMap::new(),
            first_votes: BTreeMap::new(),
            proposals: BTreeMap::new(),
            reported: BTreeSet::new(),
            orphans: BTreeMap::new(),
            requested: BTreeSet::new(),
            last_rebroadcast_ms: now_ms,
        }
    }

    /// The fork database.
    pub fn forkdb(&self) -> &ForkDb {
        &self.forkdb
    }

    /// The canonical head.
    pub fn head(&self) -> &BlockMeta {
        &self
            .forkdb
            .get(&self.head)
            .unwrap_or(self.forkdb.root())
            .meta
    }

    /// The last irreversible block.
    pub fn finalized(&self) -> &BlockMeta {
        &self.forkdb.root().meta
    }

    /// The state to persist.
    pub fn safety(&self) -> &SafetyState {
        &self.safety
    }

    /// Stake that voted `stage` for `block` at `height`, as counted here.
    pub fn tally(&self, stage: Stage, height: u64, block: &Hash) -> u128 {
        self.votes
            .get(&(stage, height, *block))
            .map(|v| v.keys().map(|a| self.set.stake(a)).sum())
            .unwrap_or(0)
    }

    /// Whether the schedule allows `meta` on its parent, if the parent is held (a block on an
    /// unknown parent is judged once the parent arrives).
    pub fn check_schedule(&self, meta: &BlockMeta) -> Result<(), InsertError> {
        match self.forkdb.get(&meta.parent) {
            Some(parent) => check_schedule(parent, meta, &self.set, self.cfg.timing()),
            None => Ok(()),
        }
    }

    /// The validator set.
    pub fn validators(&self) -> &ValidatorSet {
        &self.set
    }

    /// Replaces the validator set (the host reads it from the state of each newly irreversible
    /// block, so every node switches at the same block). Votes already counted keep counting
    /// with the stake of the new set.
    pub fn set_validators(&mut self, set: ValidatorSet) {
        self.set = set;
    }

    /// Handles one event at time `now_ms` (monotonic, from the host).
    pub fn handle(&mut self, event: Event, now_ms: u64) -> Vec<Action> {
        self.now_ms = self.now_ms.max(now_ms);
        let mut out = Vec::new();
        match event {
            Event::Tick => {
                self.maybe_produce(&mut out);
                self.maybe_rebroadcast(&mut out);
            }
            Event::Block(meta) => self.on_block(meta, &mut out),
            Event::Vote(v) => self.on_vote(v, &mut out),
        }
        self.update_head(&mut out);
        out
    }

    fn me_votes(&self) -> Option<Address> {
        self.cfg.me.filter(|m| self.set.stake(m) > 0)
    }

    fn maybe_produce(&mut self, out: &mut Vec<Action>) {
        let Some(me) = self.me_votes() else {
            return;
        };
        let head = self.forkdb.get(&self.head).unwrap_or(self.forkdb.root());
        let height = head.meta.height + 1;
        if self.safety.produced.contains(&height) {
            return;
        }
        let order = producers(head, height, &self.set, head.meta.in_grace);
        let Some(position) = order.iter().position(|a| *a == me) else {
            return;
        };
        let wait = if self.cfg.fault_skip_failover_delay {
            0
        } else {
            failover_delay_ms(position, self.cfg.failover_base_ms)
        };
        let due = self.head_since_ms + self.cfg.block_time_ms + wait;
        if self.now_ms >= due {
            self.safety.produced.insert(height);
            self.producing = Some((height, self.now_ms));
            out.push(Action::Produce {
                parent: head.meta.hash,
                height,
                not_before_ms: self
                    .cfg
                    .timing()
                    .earliest_ms(head.meta.timestamp_ms, position),
            });
        }
    }

    fn maybe_rebroadcast(&mut self, out: &mut Vec<Action>) {
        if self.now_ms < self.last_rebroadcast_ms + self.cfg.rebroadcast_ms {
            return;
        }
        self.last_rebroadcast_ms = self.now_ms;
        let root = self.forkdb.root().meta.height;
        let best = self.forkdb.best_justified();
        if best.meta.height > root
            && let Some(certificate) =
                self.votes
                    .get(&(Stage::Prevote, best.meta.height, best.meta.hash))
        {
            out.push(Action::Relay(certificate.values().cloned().collect()));
        }
        // Requests are not answered when a peer or this node was away: ask again for every
        // parent still missing.
        for parent in self.orphans.keys() {
            out.push(Action::RequestBlock { hash: *parent });
        }
        for ((stage, height), block) in &self.safety.voted {
            if *height > root {
                out.push(Action::CastVote {
                    stage: *stage,
                    height: *height,
                    block: *block,
                });
            }
        }
    }

    fn on_block(&mut self, meta: BlockMeta, out: &mut Vec<Action>) {
        self.check_double_proposal(&meta, out);
        let mut queue = vec![meta];
        while let Some(meta) = queue.pop() {
            let hash = meta.hash;
            match self
                .forkdb
                .insert(meta.clone(), &self.set, self.cfg.timing())
            {
                Ok(()) => {
                    self.requested.remove(&hash);
                    if let Some(children) = self.orphans.remove(&hash) {
                        queue.extend(children);
                    }
                    self.check_thresholds(Stage::Prevote, meta.height, hash, out);
                    self.check_thresholds(Stage::Precommit, meta.height, hash, out);
                    self.maybe_prevote(&hash, out);
                }
                Err(InsertError::MissingParent(parent)) => {
                    let waiting = self.orphans.entry(parent).or_default();
                    if !waiting.iter().any(|m| m.hash == hash) {
                        waiting.push(meta);
                    }
                    if self.requested.insert(parent) {
                        out.push(Action::RequestBlock { hash: parent });
                    }
                }
                Err(_) => {}
            }
        }
    }

    fn check_double_proposal(&mut self, meta: &BlockMeta, out: &mut Vec<Action>) {
        let key = (meta.height, meta.proposer);
        match self.proposals.get(&key) {
            None => {
                self.proposals.insert(key, meta.hash);
            }
            Some(first) if *first != meta.hash => {
                if self.reported.insert((meta.proposer, meta.height, 0)) {
                    out.push(Action::Evidence(Evidence::DoubleProposal {
                        proposer: meta.proposer,
                        height: meta.height,
                        first: *first,
                        second: meta.hash,
                    }));
                }
            }
            Some(_) => {}
        }
    }

    fn lock_allows_prevote(&self, block: &Hash) -> bool {
        match &self.safety.lock {
            None => true,
            // A lock at or below the root is an ancestor of everything held.
            Some((l, _)) if self.forkdb.get(l).is_none() => true,
            Some((l, _)) => self.forkdb.is_ancestor_or_equal(l, block),
        }
    }

    fn lock_compatible(&self, block: &Hash) -> bool {
        match &self.safety.lock {
            None => true,
            Some((l, _)) if self.forkdb.get(l).is_none() => true,
            Some((l, _)) => self.forkdb.compatible(l, block),
        }
    }

    /// Whether every prevote this validator cast above `height` is for a descendant of
    /// `block`. Votes are pipelined: a validator may have prevoted a higher block of another
    /// fork before `block` was justified, and precommitting `block` then would let both forks
    /// count it.
    fn prevotes_above_extend(&self, block: &Hash, height: u64) -> bool {
        self.safety
            .voted
            .range((Stage::Prevote, height + 1)..(Stage::Precommit, 0))
            .all(|(_, voted)| self.forkdb.is_ancestor_or_equal(block, voted))
    }

    fn maybe_prevote(&mut self, hash: &Hash, out: &mut Vec<Action>) {
        let Some(me) = self.me_votes() else {
            return;
        };
        let Some(height) = self.forkdb.get(hash).map(|n| n.meta.height) else {
            return;
        };
        if self.safety.voted.contains_key(&(Stage::Prevote, height))
            || !self.lock_allows_prevote(hash)
        {
            return;
        }
        self.cast(me, Stage::Prevote, height, *hash, out);
    }

    fn cast(&mut self, me: Address, stage: Stage, height: u64, block: Hash, out: &mut Vec<Action>) {
        self.safety.voted.insert((stage, height), block);
        out.push(Action::CastVote {
            stage,
            height,
            block,
        });
        self.on_vote(
            Vote {
                stage,
                height,
                block,
                voter: me,
                signature: Vec::new(),
            },
            out,
        );
    }

    fn on_vote(&mut self, vote: Vote, out: &mut Vec<Action>) {
        let stake = self.set.stake(&vote.voter);
        if stake == 0 {
            return;
        }
        // A double vote is reported, and still counted for the block it names: a certificate
        // of more than 2/3 proves what it proves whoever else its signers signed, and
        // counting it keeps every node's view of justification the same.
        let key = (vote.stage, vote.height, vote.voter);
        match self.first_votes.get(&key) {
            Some(first) if first.block == vote.block => {}
            Some(first) => {
                let kind = 1 + vote.stage as u8;
                if self.reported.insert((vote.voter, vote.height, kind)) {
                    out.push(Action::Evidence(Evidence::DoubleVote(
                        first.clone(),
                        vote.clone(),
                    )));
                }
            }
            None => {
                self.first_votes.insert(key, vote.clone());
            }
        }
        if vote.height <= self.forkdb.root().meta.height {
            return;
        }
        let voters = self
            .votes
            .entry((vote.stage, vote.height, vote.block))
            .or_default();
        if voters.contains_key(&vote.voter) {
            return;
        }
        voters.insert(vote.voter, vote.clone());
        self.check_thresholds(vote.stage, vote.height, vote.block, out);
    }

    fn check_thresholds(&mut self, stage: Stage, height: u64, block: Hash, out: &mut Vec<Action>) {
        let Some(node) = self.forkdb.get(&block) else {
            return;
        };
        let stake = self.tally(stage, height, &block);
        if !self.set.is_supermajority(stake) {
            return;
        }
        match stage {
            Stage::Prevote if !node.justified => {
                self.forkdb.justify(&block);
                self.on_justified(block, height, out);
            }
            Stage::Precommit => self.finalize(block, out),
            Stage::Prevote => {}
        }
    }

    fn on_justified(&mut self, block: Hash, height: u64, out: &mut Vec<Action>) {
        if let Some((l, lh)) = self.safety.lock
            && self.forkdb.get(&l).is_some()
            && height > lh
            && !self.forkdb.compatible(&l, &block)
        {
            self.safety.lock = Some((block, height));
        }
        let Some(me) = self.me_votes() else {
            return;
        };
        if self.safety.voted.contains_key(&(Stage::Precommit, height))
            || !self.lock_compatible(&block)
            || !self.prevotes_above_extend(&block, height)
        {
            return;
        }
        if self.safety.lock.is_none_or(|(_, lh)| height > lh) {
            self.safety.lock = Some((block, height));
        }
        self.cast(me, Stage::Precommit, height, block, out);
    }

    fn finalize(&mut self, block: Hash, out: &mut Vec<Action>) {
        let root_height = self.forkdb.root().meta.height;
        let Some(node) = self.forkdb.get(&block) else {
            return;
        };
        if node.meta.height <= root_height {
            return;
        }
        for n in self.forkdb.path_from_root(&block) {
            out.push(Action::Finalized {
                hash: n.meta.hash,
                height: n.meta.height,
            });
        }
        self.forkdb.set_root(&block);
        let height = self.forkdb.root().meta.height;
        self.votes.retain(|(_, h, _), _| *h > height);
        let keep_from = height.saturating_sub(EVIDENCE_WINDOW);
        self.first_votes.retain(|(_, h, _), _| *h >= keep_from);
        self.proposals.retain(|(h, _), _| *h >= keep_from);
        self.reported.retain(|(_, h, _)| *h >= keep_from);
        self.safety.voted.retain(|(_, h), _| *h >= keep_from);
        self.safety.produced.retain(|h| *h >= keep_from);
        self.orphans
            .retain(|_, children| children.iter().any(|c| c.height > height));
    }

    fn update_head(&mut self, out: &mut Vec<Action>) {
        let best = self.forkdb.best_head();
        if best.meta.hash != self.head {
            self.head = best.meta.hash;
            // The next block is due a block time after the head came, or, when the head is the
            // block this node was producing, after its production started: a leader's blocks
            // then come every block time (or back to back, if one takes longer), not every
            // block time plus however long the last one took to produce.
            self.head_since_ms = match self.producing {
                Some((height, started))
                    if best.meta.height == height && Some(best.meta.proposer) == self.cfg.me =>
                {
                    started
                }
                _ => self.now_ms,
            };
            out.push(Action::NewHead {
                hash: best.meta.hash,
                height: best.meta.height,
            });
        }
    }
}
