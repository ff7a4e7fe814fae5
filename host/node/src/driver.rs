//! The consensus driver: feeds the `vexidus_consensus` state machine with blocks (verified and
//! executed on their parent's state), votes (signatures checked) and the passing of time, and
//! carries out what it asks — produce, vote, move the head, finalize, relay, put evidence on
//! chain, fetch a missing block.
//!
//! It runs on a thread of its own and owns the state machine; the network task and RPC reach
//! it through [`Input`]s, and it reaches the network through [`Outbound`] messages. Before any
//! vote or block of this validator leaves, the state machine's [`SafetyState`] is stored with
//! fsync, so a restarted validator never signs twice.
//!
//! Consensus reads the active set and the missed-block record from chain state
//! (`Query::Consensus`) at the last irreversible block, and switches to the set of each newly
//! irreversible block: every node switches at the same block.

use crate::state::{Applied, NodeState};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use vexidus_chain::{ChainError, ExecutedBlock};
use vexidus_consensus::forkdb::Liveness;
use vexidus_consensus::{
    Action, BlockMeta, Config, Consensus, Event, Evidence, SafetyState, Stage, ValidatorSet, Vote,
};
use vexidus_network::guard::Offence;
use vexidus_network::service::{Validation, Verdict};
use vexidus_network::wire::{Gossip, MAX_VOTES_PER_MESSAGE};
use vexidus_runtime_api::abi::{ConsensusView, UpgradeHalt};
use vexidus_runtime_api::queries;
use vexidus_runtime_api::signing::{self, Keypair};
use vexidus_runtime_api::vote::{DoubleSignEvidence, SignedHeader, SignedVote, VoteBody};
use vexidus_runtime_api::{Address, Block, Hash, Signature};

/// A peer, as the network names it.
pub type PeerId = libp2p::PeerId;

/// How long the driver waits for input before time passes for consensus.
const TICK: Duration = Duration::from_millis(20);
/// Most blocks kept waiting for their parent.
pub const MAX_ORPHANS: usize = 256;
/// Most bytes of blocks kept waiting for their parent (encoded size).
pub const MAX_ORPHAN_BYTES: usize = 64 << 20;
/// Heights above the last irreversible block for which votes are counted and kept, and
/// blocks are kept waiting for their parent. A vote or an orphan further ahead is dropped
/// (nobody is charged: a node that is behind sees honest ones); validators send their votes
/// again every few seconds, so a vote dropped while finality lagged arrives again once it
/// is inside the window.
pub const HEIGHT_WINDOW: u64 = 256;

/// How far ahead of the local clock a block's timestamp may be when it arrives. Further
/// ahead, it is refused (uncharged) and can be fetched again once it is due.
pub const MAX_CLOCK_DRIFT_MS: u64 = 500;
/// How far apart honest validators' clocks may be (generously: they are NTP-synchronised).
/// A vote or block is judged impossible only at a height no honest node could reach even
/// with its clock this far ahead of this node's, and twice that for what its forwarder saw.
pub const MAX_CLOCK_SKEW_MS: u64 = 30_000;

/// A misbehaviour a test can switch on (`vexidus-node --test-fault`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Produce two different blocks at every height this validator produces.
    DoubleSign,
    /// As a backup, produce a block interval after the parent arrives without waiting for the
    /// failover delay, stamped with the clock: trying to take other validators' slots.
    SkipFailoverDelay,
}

/// Consensus settings of a node.
#[derive(Clone, Debug)]
pub struct ConsensusSettings {
    /// The chain's failover unit: backups wait 5, 8, 11 … units (1 s in production, less in
    /// test networks). Chain data: the node sets it from its database (`node::run`).
    pub failover_base_ms: u64,
    /// How often a validator re-sends its votes above the last irreversible block.
    pub rebroadcast_ms: u64,
    /// A deliberate misbehaviour, for tests only.
    pub fault: Option<Fault>,
}

impl Default for ConsensusSettings {
    fn default() -> Self {
        Self {
            failover_base_ms: 1_000,
            rebroadcast_ms: 2_000,
            fault: None,
        }
    }
}

/// What the driver hears.
pub enum Input {
    /// A block from a peer (gossip or sync). `done` hears whether it was taken.
    Block {
        /// The block.
        block: Box<Block>,
        /// Who sent it.
        from: Option<PeerId>,
        /// Told the outcome once the block is executed (or refused).
        done: Option<oneshot::Sender<Result<(), String>>>,
        /// For a gossiped block: the verdict the transport waits for before forwarding it.
        gossip: Option<Validation>,
    },
    /// Votes from a peer: one gossip message, or a synced certificate.
    Votes {
        /// The votes.
        votes: Vec<SignedVote>,
        /// Who sent them.
        from: Option<PeerId>,
        /// For gossiped votes: the verdict the transport waits for before forwarding them.
        gossip: Option<Validation>,
    },
}

/// Most inputs waiting for the driver.
pub const INPUT_QUEUE: usize = 1_024;
/// Most bytes of blocks waiting for the driver (encoded). Past either bound a gossiped input is
/// dropped (counted; its message goes unforwarded and nobody is charged) and a synced one waits.
pub const INPUT_QUEUE_BYTES: usize = 64 << 20;

#[derive(Default)]
struct QueueShared {
    bytes: std::sync::atomic::AtomicUsize,
    dropped: std::sync::atomic::AtomicU64,
}

/// The sending side of the driver's bounded input queue (the network task's).
#[derive(Clone)]
pub struct Inputs {
    tx: std::sync::mpsc::SyncSender<(Input, usize)>,
    shared: Arc<QueueShared>,
}

/// The driver's side of its input queue.
pub struct InputQueue {
    rx: std::sync::mpsc::Receiver<(Input, usize)>,
    shared: Arc<QueueShared>,
}

/// A bounded input queue for the driver: [`INPUT_QUEUE`] inputs, [`INPUT_QUEUE_BYTES`] bytes.
pub fn input_queue() -> (Inputs, InputQueue) {
    let (tx, rx) = std::sync::mpsc::sync_channel(INPUT_QUEUE);
    let shared = Arc::new(QueueShared::default());
    (
        Inputs {
            tx,
            shared: shared.clone(),
        },
        InputQueue { rx, shared },
    )
}

/// Why an input was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The queue is full.
    Full,
    /// The driver has stopped.
    Closed,
}

impl Inputs {
    fn size(input: &Input) -> usize {
        match input {
            Input::Block { block, .. } => borsh::object_length(block.as_ref()).unwrap_or(0),
            Input::Votes { votes, .. } => votes.len() * 160,
        }
    }

    /// Queues `input` if there is room; a gossiped input that finds none is dropped and
    /// counted ([`Self::dropped`]).
    pub fn offer(&self, input: Input) -> Result<(), QueueError> {
        let size = Self::size(&input);
        let before = self.shared.bytes.fetch_add(size, Ordering::SeqCst);
        if before > 0 && before + size > INPUT_QUEUE_BYTES {
            self.shared.bytes.fetch_sub(size, Ordering::SeqCst);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(QueueError::Full);
        }
        match self.tx.try_send((input, size)) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.shared.bytes.fetch_sub(size, Ordering::SeqCst);
                match e {
                    std::sync::mpsc::TrySendError::Full(_) => {
                        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                        Err(QueueError::Full)
                    }
                    std::sync::mpsc::TrySendError::Disconnected(_) => Err(QueueError::Closed),
                }
            }
        }
    }

    /// Queues `input`, waiting for room (synced blocks: the caller awaits each verdict anyway).
    pub async fn send(&self, input: Input) -> Result<(), QueueError> {
        let mut input = Some(input);
        loop {
            let size = Self::size(input.as_ref().expect("held until sent"));
            let before = self.shared.bytes.fetch_add(size, Ordering::SeqCst);
            if before == 0 || before + size <= INPUT_QUEUE_BYTES {
                match self.tx.try_send((input.take().expect("held"), size)) {
                    Ok(()) => return Ok(()),
                    Err(std::sync::mpsc::TrySendError::Full((back, _))) => input = Some(back),
                    Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                        self.shared.bytes.fetch_sub(size, Ordering::SeqCst);
                        return Err(QueueError::Closed);
                    }
                }
            }
            self.shared.bytes.fetch_sub(size, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Gossiped inputs dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl InputQueue {
    fn recv_timeout(&self, timeout: Duration) -> Result<Input, std::sync::mpsc::RecvTimeoutError> {
        let (input, size) = self.rx.recv_timeout(timeout)?;
        self.shared.bytes.fetch_sub(size, Ordering::SeqCst);
        Ok(input)
    }
}

/// What the driver asks of the network.
#[derive(Debug)]
pub enum Outbound {
    /// Gossip this.
    Publish(Gossip),
    /// Fetch a block by hash (from `from` first, then from every other peer).
    Fetch {
        /// The block.
        hash: Hash,
        /// A peer that should have it.
        from: Option<PeerId>,
    },
    /// The verdict on a gossip message (forward, drop, or drop and ban its sender).
    Validated {
        /// The message.
        validation: Validation,
        /// The verdict.
        verdict: Verdict,
    },
    /// The peer sent something invalid.
    Report {
        /// The peer.
        peer: PeerId,
        /// What it did.
        offence: Offence,
    },
}

/// The driver.
pub struct Driver {
    state: Arc<NodeState>,
    settings: ConsensusSettings,
    key: Option<Arc<Keypair>>,
    consensus: Consensus,
    out: Option<mpsc::UnboundedSender<Outbound>>,
    started: Instant,
    chain_id: String,
    orphans: Orphans,
    /// Signed votes above the last irreversible block, for relays and certificates.
    signed: BTreeMap<(Stage, u64, Hash), BTreeMap<Address, SignedVote>>,
    persisted: Vec<u8>,
    halt: Option<UpgradeHalt>,
    /// A binary upgrade due at the block after the head, and when to halt for it: when that
    /// block would be produced, so the head has a block interval to spread and gather votes.
    halt_at: Option<(UpgradeHalt, u64)>,
    block_time_ms: u64,
    /// Own votes already sent once: sending one again is a re-send.
    sent: std::collections::BTreeSet<(Stage, u64)>,
    /// Votes to send again, batched into one `Gossip::Votes` per round of actions.
    resend: Vec<SignedVote>,
}

fn chain_err(e: impl std::fmt::Display) -> ChainError {
    ChainError::Runtime(e.to_string())
}

fn consensus_view(state: &NodeState, at: &Hash, height: u64) -> Result<ConsensusView, ChainError> {
    state.read_chain().query_at(
        at,
        queries::Consensus {
            at_height: height + 1,
        },
    )
}

/// The consensus view of an executed block.
fn meta_of(state: &NodeState, b: &ExecutedBlock) -> Result<BlockMeta, ChainError> {
    let height = b.block.header.height;
    let grace_until = state.read_chain().query_at(&b.hash, queries::GraceUntil)?;
    Ok(BlockMeta {
        hash: b.hash,
        parent: b.block.header.parent_hash,
        height,
        proposer: b.block.header.proposer.address(),
        timestamp_ms: b.block.header.timestamp_ms,
        in_grace: height < grace_until,
    })
}

impl Driver {
    /// A driver over the node's chain: consensus starts at the last irreversible block, with
    /// the stored vote record, and is fed every kept block above it.
    pub fn new(
        state: Arc<NodeState>,
        key: Option<Keypair>,
        settings: ConsensusSettings,
        out: Option<mpsc::UnboundedSender<Outbound>>,
    ) -> Result<Self, ChainError> {
        let (finalized, root_block, block_time_ms, chain_id, stored_safety, pending) = {
            let chain = state.read_chain();
            let fin = chain.finalized().clone();
            let root_block = chain
                .block(&fin.hash)?
                .ok_or_else(|| chain_err("the last irreversible block is not stored"))?;
            (
                fin,
                root_block,
                chain.genesis().block_time_ms,
                chain.chain_id().to_string(),
                chain.db().safety()?,
                chain.pending_hashes(),
            )
        };
        let view = consensus_view(&state, &finalized.hash, finalized.height)?;
        let root = BlockMeta {
            hash: finalized.hash,
            parent: root_block.header.parent_hash,
            height: finalized.height,
            proposer: root_block.header.proposer.address(),
            timestamp_ms: root_block.header.timestamp_ms,
            in_grace: finalized.height < view.grace_until,
        };
        let liveness = Liveness {
            last: view.last,
            missed: view.missed.into_iter().collect(),
            skipped: view.skipped.into_iter().collect(),
        };
        let mut safety = match &stored_safety {
            Some(bytes) => borsh::from_slice::<SafetyState>(bytes)
                .map_err(|e| chain_err(format!("stored vote record does not decode: {e}")))?,
            None => SafetyState::default(),
        };
        // A block this validator produced is kept in `pending` (synced) before it is published.
        // A height recorded as produced with no own block kept there was never published (the
        // process died while building it): producing it again is no double proposal, and not
        // doing so would leave a lone validator waiting forever.
        if let Some(me) = key.as_ref().map(|k| k.public()) {
            let chain = state.read_chain();
            let own: std::collections::BTreeSet<u64> = pending
                .iter()
                .filter_map(|h| chain.pending_block(h))
                .filter(|b| b.block.header.proposer == me)
                .map(|b| b.block.header.height)
                .collect();
            safety
                .produced
                .retain(|h| *h <= finalized.height || own.contains(h));
        }
        let consensus = Consensus::new(
            Config {
                me: key.as_ref().map(|k| k.public().address()),
                block_time_ms,
                failover_base_ms: settings.failover_base_ms,
                rebroadcast_ms: settings.rebroadcast_ms,
                fault_skip_failover_delay: settings.fault == Some(Fault::SkipFailoverDelay),
            },
            ValidatorSet::new(view.active),
            root,
            liveness,
            safety,
            0,
        );
        let already_sent = consensus.safety().voted.keys().copied().collect();
        let mut driver = Self {
            state,
            settings,
            key: key.map(Arc::new),
            consensus,
            out,
            started: Instant::now(),
            chain_id,
            orphans: Orphans::default(),
            signed: BTreeMap::new(),
            persisted: stored_safety.unwrap_or_default(),
            halt: None,
            halt_at: None,
            block_time_ms,
            // Votes cast before a restart go out again as re-sends, never as the same bytes.
            sent: already_sent,
            resend: Vec::new(),
        };
        let mut queue = VecDeque::new();
        for hash in pending {
            let executed = driver.state.read_chain().pending_block(&hash).cloned();
            if let Some(b) = executed {
                queue.push_back(Event::Block(meta_of(&driver.state, &b)?));
            }
        }
        driver.run_queue(queue)?;
        Ok(driver)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn send(&self, message: Outbound) {
        if let Some(out) = &self.out {
            let _ = out.send(message);
        }
    }

    /// Runs until `stop` is set, the inputs close, or a binary upgrade halts the node.
    pub fn run(
        mut self,
        inputs: InputQueue,
        stop: Arc<AtomicBool>,
    ) -> Result<Option<UpgradeHalt>, ChainError> {
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            match inputs.recv_timeout(TICK) {
                Ok(input) => self.on_input(input)?,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(None),
            }
            self.run_queue(VecDeque::from([Event::Tick]))?;
            if let Some((halt, at)) = &self.halt_at
                && self.now_ms() >= *at
            {
                self.halt = Some(halt.clone());
            }
            if let Some(halt) = self.halt.take() {
                return Ok(Some(halt));
            }
        }
    }

    fn on_input(&mut self, input: Input) -> Result<(), ChainError> {
        match input {
            Input::Block {
                block,
                from,
                done,
                gossip,
            } => {
                let mut queue = VecDeque::new();
                let verdict = self.import(*block, from, gossip, &mut queue);
                if let Some(done) = done {
                    let answer = match (&verdict, &self.halt) {
                        (Err(e), _) => Err(e.to_string()),
                        (Ok(()), Some(halt)) => Err(format!(
                            "the chain halts at height {} for binary upgrade `{}`",
                            halt.height, halt.name
                        )),
                        (Ok(()), None) => Ok(()),
                    };
                    let _ = done.send(answer);
                }
                if let Err(e @ ChainError::Storage(_)) = verdict {
                    return Err(e);
                }
                self.run_queue(queue)
            }
            Input::Votes {
                votes,
                from,
                gossip,
            } => {
                let mut events = VecDeque::new();
                let mut verdict = Verdict::Ignore;
                if votes.len() > MAX_VOTES_PER_MESSAGE {
                    verdict = Verdict::Reject(Offence::Malformed);
                } else {
                    for vote in votes {
                        match self.check_vote(&vote) {
                            VoteCheck::Useless => {}
                            VoteCheck::Held => verdict = Verdict::Accept,
                            VoteCheck::Good => {
                                events.push_back(self.keep_vote(vote));
                                verdict = Verdict::Accept;
                            }
                            VoteCheck::BadSignature => {
                                verdict = Verdict::Reject(Offence::BadSignature);
                                events.clear();
                                break;
                            }
                            VoteCheck::Impossible => {
                                verdict = Verdict::Reject(Offence::ImpossibleHeight);
                                events.clear();
                                break;
                            }
                        }
                    }
                }
                match (gossip, verdict, from) {
                    (Some(validation), verdict, _) => self.send(Outbound::Validated {
                        validation,
                        verdict,
                    }),
                    (None, Verdict::Reject(offence), Some(peer)) => {
                        self.send(Outbound::Report { peer, offence })
                    }
                    _ => {}
                }
                self.run_queue(events)
            }
        }
    }

    /// Whether a vote is worth counting, checked cheapest first: a vote at a height consensus
    /// is done with or too far ahead, from a key outside the active set, or already held costs
    /// no signature check.
    fn check_vote(&self, vote: &SignedVote) -> VoteCheck {
        let finalized = self.consensus.finalized().height;
        let height = vote.body.height;
        if self.impossible(height) {
            return VoteCheck::Impossible;
        }
        if height <= finalized
            || height > finalized + HEIGHT_WINDOW
            || height > self.reachable(MAX_CLOCK_DRIFT_MS + MAX_CLOCK_SKEW_MS)
        {
            return VoteCheck::Useless;
        }
        let voter = vote.voter.address();
        if !self.consensus.validators().members.contains_key(&voter) {
            return VoteCheck::Useless;
        }
        if self
            .signed
            .get(&(vote.body.stage, height, vote.body.block))
            .and_then(|m| m.get(&voter))
            .is_some_and(|held| held == vote)
        {
            // The very bytes checked before: valid, and nothing new for consensus. A re-send
            // made of such votes is still forwarded, for peers that missed the first copy.
            return VoteCheck::Held;
        }
        if vote.verify(&self.chain_id) {
            VoteCheck::Good
        } else {
            VoteCheck::BadSignature
        }
    }

    /// The highest height the chain can have reached by this node's clock plus `ahead_ms`: each
    /// block above the last irreversible one is stamped at least a block interval after its
    /// parent (the schedule rule), and no node takes a block stamped further ahead of its clock
    /// than [`MAX_CLOCK_DRIFT_MS`].
    fn reachable(&self, ahead_ms: u64) -> u64 {
        let root = self.consensus.finalized();
        let elapsed = wall_ms()
            .saturating_add(ahead_ms)
            .saturating_sub(root.timestamp_ms);
        root.height
            .saturating_add(elapsed / self.block_time_ms.max(1))
    }

    /// Whether a vote or block at `height` is provably bogus: beyond the window of heights this
    /// node keeps and beyond what any honest node could hold, with clocks apart by up to
    /// [`MAX_CLOCK_SKEW_MS`] twice over (the forwarder's view and its author's). An honest
    /// forwarder drops a vote beyond [`Self::reachable`] with one skew; one whose last
    /// irreversible block is higher than here has a tighter bound than this node's, and one
    /// whose is lower sends nothing beyond its window, which lies inside this node's.
    fn impossible(&self, height: u64) -> bool {
        height > self.consensus.finalized().height + HEIGHT_WINDOW
            && height > self.reachable(MAX_CLOCK_DRIFT_MS + 2 * MAX_CLOCK_SKEW_MS)
    }

    /// Keeps a checked vote (for relays and certificates) and returns its event.
    fn keep_vote(&mut self, vote: SignedVote) -> Event {
        let voter = vote.voter.address();
        let v = Vote {
            stage: vote.body.stage,
            height: vote.body.height,
            block: vote.body.block,
            voter,
            signature: vote.signature.0.to_vec(),
        };
        if vote.body.height > self.consensus.finalized().height {
            self.signed
                .entry((vote.body.stage, vote.body.height, vote.body.block))
                .or_default()
                .entry(voter)
                .or_insert(vote);
        }
        Event::Vote(v)
    }

    /// Executes a block from a peer, and then any blocks that were waiting for it. A gossiped
    /// block's verdict goes to the transport once it is known: forwarded only once executed.
    fn import(
        &mut self,
        block: Block,
        from: Option<PeerId>,
        gossip: Option<Validation>,
        queue: &mut VecDeque<Event>,
    ) -> Result<(), ChainError> {
        let mut todo = vec![Orphan::new(block, from, gossip)];
        let mut first = true;
        let mut verdict = Ok(());
        while let Some(Orphan {
            block,
            from,
            gossip,
            ..
        }) = todo.pop()
        {
            let hash = signing::header_hash(&block.header);
            let parent = block.header.parent_hash;
            let (known, parent_known, finalized) = {
                let chain = self.state.read_chain();
                (
                    chain.knows(&hash),
                    parent == chain.finalized().hash || chain.pending_block(&parent).is_some(),
                    chain.finalized().height,
                )
            };
            if known || block.header.height <= finalized {
                self.validated(gossip, Verdict::Ignore);
                continue;
            }
            if !parent_known {
                let orphan = Orphan::new(block, from, gossip);
                match self.check_orphan(&orphan, finalized) {
                    Verdict::Accept => {
                        let evicted = self.orphans.insert(parent, hash, orphan);
                        for o in evicted {
                            self.validated(o.gossip, Verdict::Ignore);
                        }
                        self.send(Outbound::Fetch { hash: parent, from });
                    }
                    Verdict::Ignore => self.validated(orphan.gossip, Verdict::Ignore),
                    Verdict::Reject(offence) => self.reject(orphan.from, orphan.gossip, offence),
                }
                continue;
            }
            if let Err(why) = self.check_timing(&block, hash) {
                tracing::warn!(height = block.header.height, hash = %hex::encode(&hash[..4]), "refused a block: {why}");
                self.validated(gossip, Verdict::Ignore);
                let e = ChainError::InvalidBlock {
                    height: block.header.height,
                    reason: why,
                };
                if first {
                    verdict = Err(e);
                }
                first = false;
                continue;
            }
            let block_height = block.header.height;
            let result = self.state.execute(block);
            let r = match result {
                Ok(Applied::Halt(halt)) => {
                    // Nobody is at fault: the block is simply past the halt. Nothing after it
                    // can be executed either.
                    self.validated(gossip, Verdict::Ignore);
                    self.halt = Some(halt);
                    break;
                }
                Ok(Applied::Block(executed)) => {
                    tracing::info!(height = executed.block.header.height, hash = %vexidus_rpc_api::hex::hex0x(hash), txs = executed.block.transactions.len(), "imported block");
                    self.validated(gossip, Verdict::Accept);
                    queue.push_back(Event::Block(meta_of(&self.state, &executed)?));
                    todo.extend(self.orphans.children_of(&hash));
                    Ok(())
                }
                Err(e) => {
                    match offence_of(&e) {
                        Some(offence) => self.reject(from, gossip, offence),
                        None => self.validated(gossip, Verdict::Ignore),
                    }
                    if !matches!(e, ChainError::Storage(_)) {
                        tracing::warn!(height = block_height, hash = %hex::encode(&hash[..4]), "refused a block: {e}");
                    }
                    Err(e)
                }
            };
            if first {
                verdict = r;
            } else if let Err(e @ ChainError::Storage(_)) = r {
                return Err(e);
            }
            first = false;
        }
        verdict
    }

    /// Whether a block whose parent is held may come now: its timestamp no further ahead of
    /// this node's clock than [`MAX_CLOCK_DRIFT_MS`] (checked on receipt only, never in the
    /// state transition), and the schedule allows its proposer at that time. Checked before
    /// executing it. Nobody is charged: a clock or a validator set may differ between nodes,
    /// and a block too early now may be fetched again once it is due.
    fn check_timing(&self, block: &Block, hash: Hash) -> Result<(), String> {
        let header = &block.header;
        let now = wall_ms();
        if header.timestamp_ms > now.saturating_add(MAX_CLOCK_DRIFT_MS) {
            return Err(format!(
                "its timestamp is {} ms ahead of this node's clock (at most {MAX_CLOCK_DRIFT_MS} ms)",
                header.timestamp_ms - now
            ));
        }
        let meta = BlockMeta {
            hash,
            parent: header.parent_hash,
            height: header.height,
            proposer: header.proposer.address(),
            timestamp_ms: header.timestamp_ms,
            in_grace: false,
        };
        self.consensus
            .check_schedule(&meta)
            .map_err(|e| e.to_string())
    }

    /// Whether a block whose parent is unknown is worth keeping until the parent arrives:
    /// inside the height window, signed by its proposer, who is in the active set. A bad
    /// signature is provable; the rest may be an honest peer's view ahead of this node's.
    fn check_orphan(&self, orphan: &Orphan, finalized: u64) -> Verdict {
        let header = &orphan.block.header;
        if self.impossible(header.height) {
            return Verdict::Reject(Offence::ImpossibleHeight);
        }
        if header.height > finalized + HEIGHT_WINDOW
            || header.timestamp_ms > wall_ms().saturating_add(MAX_CLOCK_DRIFT_MS)
            || !self
                .consensus
                .validators()
                .members
                .contains_key(&header.proposer.address())
        {
            return Verdict::Ignore;
        }
        if !signing::verify(
            &header.proposer,
            signing::BLOCK_DOMAIN,
            &self.chain_id,
            &signing::header_hash(header),
            &orphan.block.signature,
        ) {
            return Verdict::Reject(Offence::BadSignature);
        }
        Verdict::Accept
    }

    /// Tells the transport the verdict on a gossiped message, if it was one.
    fn validated(&self, gossip: Option<Validation>, verdict: Verdict) {
        if let Some(validation) = gossip {
            self.send(Outbound::Validated {
                validation,
                verdict,
            });
        }
    }

    /// A message from `from` proved `offence`: a gossiped one is rejected (the transport bans
    /// the peer it came from), a synced one reported.
    fn reject(&self, from: Option<PeerId>, gossip: Option<Validation>, offence: Offence) {
        match (gossip, from) {
            (Some(validation), _) => self.validated(Some(validation), Verdict::Reject(offence)),
            (None, Some(peer)) => self.send(Outbound::Report { peer, offence }),
            (None, None) => {}
        }
    }

    /// Hands events to consensus and carries out its actions, until nothing is left.
    fn run_queue(&mut self, mut queue: VecDeque<Event>) -> Result<(), ChainError> {
        while let Some(event) = queue.pop_front() {
            let actions = self.consensus.handle(event, self.now_ms());
            if actions
                .iter()
                .any(|a| matches!(a, Action::Produce { .. } | Action::CastVote { .. }))
            {
                self.persist_safety()?;
            }
            let mut finalized = None;
            for action in actions {
                match action {
                    Action::Finalized { hash, height } => {
                        let started = std::time::Instant::now();
                        self.state.finalize(&hash)?;
                        tracing::debug!(
                            height,
                            ms = started.elapsed().as_millis() as u64,
                            "finalized"
                        );
                        finalized = Some((hash, height));
                    }
                    other => self.act(other, &mut queue)?,
                }
                if self.halt.is_some() {
                    return Ok(());
                }
            }
            if let Some((hash, height)) = finalized {
                self.after_finality(hash, height)?;
            }
            if !self.resend.is_empty() {
                let votes = std::mem::take(&mut self.resend);
                for votes in votes.chunks(MAX_VOTES_PER_MESSAGE) {
                    self.send(Outbound::Publish(Gossip::Votes {
                        sent_at_ms: wall_ms(),
                        votes: votes.to_vec(),
                    }));
                }
            }
        }
        Ok(())
    }

    fn persist_safety(&mut self) -> Result<(), ChainError> {
        let bytes = borsh::to_vec(self.consensus.safety()).map_err(chain_err)?;
        if bytes != self.persisted {
            self.state.read_chain().db().put_safety(&bytes)?;
            self.persisted = bytes;
        }
        Ok(())
    }

    fn act(&mut self, action: Action, queue: &mut VecDeque<Event>) -> Result<(), ChainError> {
        match action {
            Action::Produce {
                parent,
                height,
                not_before_ms,
            } => self.produce(parent, height, not_before_ms, queue)?,
            Action::CastVote {
                stage,
                height,
                block,
            } => {
                let Some(key) = &self.key else { return Ok(()) };
                let vote = SignedVote::sign(
                    VoteBody {
                        stage,
                        height,
                        block,
                    },
                    key,
                    &self.chain_id,
                );
                self.signed
                    .entry((stage, height, block))
                    .or_default()
                    .insert(key.public().address(), vote.clone());
                if self.sent.insert((stage, height)) {
                    self.send(Outbound::Publish(Gossip::Vote(vote)));
                } else {
                    self.resend.push(vote);
                }
            }
            Action::NewHead { hash, height } => {
                self.state.set_head(&hash)?;
                tracing::debug!(height, "new head");
                self.update_leaders(&hash, height);
                self.check_halt()?;
            }
            Action::Relay(votes) => {
                for v in votes {
                    if let Some(signed) = self
                        .signed
                        .get(&(v.stage, v.height, v.block))
                        .and_then(|m| m.get(&v.voter))
                    {
                        self.resend.push(signed.clone());
                    }
                }
            }
            Action::Evidence(e) => self.report(e),
            Action::RequestBlock { hash } => self.send(Outbound::Fetch { hash, from: None }),
            Action::Finalized { .. } => {}
        }
        Ok(())
    }

    fn produce(
        &mut self,
        parent: Hash,
        height: u64,
        not_before_ms: u64,
        queue: &mut VecDeque<Event>,
    ) -> Result<(), ChainError> {
        let Some(key) = self.key.clone() else {
            return Ok(());
        };
        // The clock, or the earliest time the schedule allows here if the clock is behind it
        // (a clock slower than the parent's producer's): the block is valid either way.
        let now = if self.settings.fault == Some(Fault::SkipFailoverDelay) {
            wall_ms()
        } else {
            wall_ms().max(not_before_ms)
        };
        let started = std::time::Instant::now();
        let produced = match self.state.produce_on(&parent, &key, now, true) {
            Ok(Applied::Block(b)) => b,
            Ok(Applied::Halt(halt)) => {
                self.halt = Some(halt);
                return Ok(());
            }
            Err(e @ ChainError::Storage(_)) => return Err(e),
            Err(e) => {
                tracing::error!(height, "block production failed: {e}");
                return Ok(());
            }
        };
        tracing::info!(
            height,
            txs = produced.block.transactions.len(),
            rejected = produced.rejected.len(),
            hash = %vexidus_rpc_api::hex::hex0x(produced.hash),
            ms = started.elapsed().as_millis() as u64,
            "produced block"
        );
        self.send(Outbound::Publish(Gossip::Block(produced.block.clone())));
        if self.settings.fault == Some(Fault::DoubleSign) {
            // The test fault: a second, different block at the same height, signed by the same
            // key and sent to everyone. Honest nodes see both and report the proposer.
            match self.state.produce_on(&parent, &key, now + 1, false) {
                Ok(Applied::Halt(_)) => {}
                Ok(Applied::Block(twin)) => {
                    tracing::warn!(height, hash = %vexidus_rpc_api::hex::hex0x(twin.hash), "test fault: double-signed a second block");
                    self.send(Outbound::Publish(Gossip::Block(twin.block)));
                }
                Err(e) => tracing::error!("test fault: cannot produce the twin: {e}"),
            }
        }
        queue.push_back(Event::Block(meta_of(&self.state, &produced)?));
        Ok(())
    }

    /// Who transactions go to: the producer due at the next height and the leader of the next
    /// slot.
    fn update_leaders(&self, head: &Hash, height: u64) {
        use vexidus_consensus::schedule::{SLOT_BLOCKS, slot_of};
        let Some(node) = self.consensus.forkdb().get(head) else {
            return;
        };
        let set = self.consensus.validators();
        let in_grace = node.meta.in_grace;
        let mut leaders = Vec::with_capacity(2);
        if let Some(next) =
            vexidus_consensus::forkdb::producers(node, height + 1, set, in_grace).first()
        {
            leaders.push(*next);
        }
        let next_slot = (slot_of(height + 1) + 1) * SLOT_BLOCKS;
        if let Some(after) = vexidus_consensus::schedule::producers(
            next_slot,
            (next_slot - 1, node.meta.proposer),
            set,
            &node.liveness.skipped,
            in_grace,
        )
        .first()
            && !leaders.contains(after)
        {
            leaders.push(*after);
        }
        *self.state.leaders.lock().unwrap_or_else(|p| p.into_inner()) = leaders;
    }

    /// Prepares to halt before the next block when an approved binary upgrade this binary
    /// does not implement is due there: when that block would be produced, every validator
    /// (due to produce or not) and every follower stops, at the same height.
    fn check_halt(&mut self) -> Result<(), ChainError> {
        self.halt_at = None;
        // The runtime decides: its `vex_begin_block` for the next height says whether that block
        // halts for a binary upgrade.
        let halt = self.state.read_chain().halt_due()?;
        if let Some(halt) = halt {
            self.halt_at = Some((halt, self.now_ms() + self.block_time_ms));
        }
        Ok(())
    }

    /// After blocks became irreversible: keep the certificate, switch to the new active set,
    /// forget votes below.
    fn after_finality(&mut self, hash: Hash, height: u64) -> Result<(), ChainError> {
        let certificate: Vec<SignedVote> = self
            .signed
            .get(&(Stage::Precommit, height, hash))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        if !certificate.is_empty() {
            let bytes = borsh::to_vec(&certificate).map_err(chain_err)?;
            self.state
                .read_chain()
                .db()
                .put_certificate(height, &bytes)?;
        }
        self.signed.retain(|(_, h, _), _| *h > height);
        self.sent.retain(|(_, h)| *h > height);
        for o in self.orphans.prune_to(height) {
            self.validated(o.gossip, Verdict::Ignore);
        }
        let view = consensus_view(&self.state, &hash, height)?;
        let set = ValidatorSet::new(view.active);
        if &set != self.consensus.validators() {
            tracing::info!(
                height,
                validators = set.members.len(),
                "the active set changed"
            );
            self.consensus.set_validators(set);
        }
        self.persist_safety()?;
        tracing::debug!(height, "finalized");
        Ok(())
    }

    /// Turns evidence into a `ReportDoubleSign` transaction from this validator's key.
    fn report(&self, evidence: Evidence) {
        let Some(key) = &self.key else {
            tracing::warn!(offender = %evidence.offender(), "double-sign seen; no key to report it with");
            return;
        };
        let on_chain = match &evidence {
            Evidence::DoubleVote(a, b) => {
                let signed = |v: &Vote| {
                    self.signed
                        .get(&(v.stage, v.height, v.block))
                        .and_then(|m| m.get(&v.voter))
                        .cloned()
                        .or_else(|| {
                            let sig = Signature(v.signature.as_slice().try_into().ok()?);
                            let voter = self.key_of(&v.voter)?;
                            Some(SignedVote {
                                body: VoteBody {
                                    stage: v.stage,
                                    height: v.height,
                                    block: v.block,
                                },
                                voter,
                                signature: sig,
                            })
                        })
                };
                match (signed(a), signed(b)) {
                    (Some(first), Some(second)) => DoubleSignEvidence::DoubleVote { first, second },
                    _ => return,
                }
            }
            Evidence::DoubleProposal { first, second, .. } => {
                let chain = self.state.read_chain();
                let header = |h: &Hash| {
                    chain.block(h).ok().flatten().map(|b| SignedHeader {
                        header: b.header,
                        signature: b.signature,
                    })
                };
                match (header(first), header(second)) {
                    (Some(first), Some(second)) => {
                        DoubleSignEvidence::DoubleProposal { first, second }
                    }
                    _ => return,
                }
            }
        };
        match self.state.submit_evidence(key, on_chain) {
            Ok(tx) => {
                tracing::warn!(offender = %evidence.offender(), tx = %vexidus_rpc_api::hex::hex0x(tx), "double-sign reported on chain")
            }
            Err(e) => {
                tracing::warn!(offender = %evidence.offender(), "cannot report a double-sign: {e}")
            }
        }
    }

    fn key_of(&self, who: &Address) -> Option<vexidus_runtime_api::PublicKey> {
        match self.state.read_chain().query(queries::Validator(*who)) {
            Ok(Some(v)) => Some(v.public_key),
            _ => None,
        }
    }
}

/// How a received vote fared.
enum VoteCheck {
    /// Valid and new.
    Good,
    /// The very vote already held (checked when it first came).
    Held,
    /// Outside the window of heights, or from a key outside the active set: dropped unchecked.
    Useless,
    /// The signature does not verify.
    BadSignature,
    /// At a height no chain can have reached ([`Driver::impossible`]).
    Impossible,
}

/// A block waiting for its parent.
struct Orphan {
    block: Block,
    from: Option<PeerId>,
    gossip: Option<Validation>,
    bytes: usize,
}

impl Orphan {
    fn new(block: Block, from: Option<PeerId>, gossip: Option<Validation>) -> Self {
        let bytes = borsh::object_length(&block).unwrap_or(usize::MAX);
        Self {
            block,
            from,
            gossip,
            bytes,
        }
    }
}

/// Blocks waiting for their parent, bounded by [`MAX_ORPHANS`] and [`MAX_ORPHAN_BYTES`]: when
/// full, the highest blocks leave first (the furthest from being executable).
#[derive(Default)]
struct Orphans {
    by_parent: BTreeMap<Hash, Vec<Orphan>>,
    /// (height, hash) → parent, to find the highest.
    by_height: BTreeMap<(u64, Hash), Hash>,
    bytes: usize,
}

impl Orphans {
    /// Keeps `orphan` (unless it is already kept); returns what left to make room, which may be
    /// `orphan` itself when it is the highest.
    fn insert(&mut self, parent: Hash, hash: Hash, orphan: Orphan) -> Vec<Orphan> {
        let key = (orphan.block.header.height, hash);
        if self.by_height.contains_key(&key) {
            return vec![orphan];
        }
        self.bytes += orphan.bytes;
        self.by_height.insert(key, parent);
        self.by_parent.entry(parent).or_default().push(orphan);
        let mut evicted = Vec::new();
        while self.by_height.len() > MAX_ORPHANS || self.bytes > MAX_ORPHAN_BYTES {
            let Some((&(height, hash), _)) = self.by_height.iter().next_back() else {
                break;
            };
            if let Some(o) = self.remove(height, &hash) {
                evicted.push(o);
            }
        }
        evicted
    }

    fn remove(&mut self, height: u64, hash: &Hash) -> Option<Orphan> {
        let parent = self.by_height.remove(&(height, *hash))?;
        let siblings = self.by_parent.get_mut(&parent)?;
        let i = siblings
            .iter()
            .position(|o| signing::header_hash(&o.block.header) == *hash)?;
        let o = siblings.swap_remove(i);
        if siblings.is_empty() {
            self.by_parent.remove(&parent);
        }
        self.bytes -= o.bytes;
        Some(o)
    }

    /// Takes the blocks waiting for `parent`.
    fn children_of(&mut self, parent: &Hash) -> Vec<Orphan> {
        let children = self.by_parent.remove(parent).unwrap_or_default();
        for o in &children {
            self.by_height
                .remove(&(o.block.header.height, signing::header_hash(&o.block.header)));
            self.bytes -= o.bytes;
        }
        children
    }

    /// Forgets blocks at or below `height` (their parent can no longer be executed on).
    fn prune_to(&mut self, height: u64) -> Vec<Orphan> {
        let stale: Vec<(u64, Hash)> = self
            .by_height
            .range(..=(height, [0xff; 32]))
            .map(|(k, _)| *k)
            .collect();
        stale
            .into_iter()
            .filter_map(|(h, hash)| self.remove(h, &hash))
            .collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_height.len()
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An invalid signature or block from a peer bans it; a block that merely does not fit (an
/// old or competing block) does not.
fn offence_of(e: &ChainError) -> Option<Offence> {
    match e {
        ChainError::InvalidBlock { reason, .. } if reason.contains("signature") => {
            Some(Offence::BadSignature)
        }
        ChainError::InvalidBlock { reason, .. } if reason.contains("mismatch") => {
            Some(Offence::InvalidBlock)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vexidus_runtime_api::{Header, PublicKey, Signature};

    fn orphan(height: u64, parent: u8, payload: usize) -> (Hash, Hash, Orphan) {
        let block = Block {
            header: Header {
                parent_hash: [parent; 32],
                height,
                timestamp_ms: payload as u64,
                proposer: PublicKey::default(),
                state_root: [0; 32],
                transactions_root: [0; 32],
                receipts_root: [0; 32],
            },
            transactions: vec![],
            signature: Signature([payload as u8; 64]),
        };
        let hash = signing::header_hash(&block.header);
        let mut o = Orphan::new(block, None, None);
        o.bytes = payload;
        ([parent; 32], hash, o)
    }

    #[test]
    fn orphans_are_bounded_by_count_and_bytes_and_the_highest_leave_first() {
        let mut orphans = Orphans::default();
        for i in 0..MAX_ORPHANS as u64 {
            let (parent, hash, o) = orphan(10 + i, (i % 7) as u8, 1);
            assert!(orphans.insert(parent, hash, o).is_empty());
        }
        // One more than the count: the highest leaves, even when it is the newcomer.
        let (parent, hash, o) = orphan(1_000_000, 1, 1);
        let out = orphans.insert(parent, hash, o);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].block.header.height, 1_000_000);
        let (parent, hash, o) = orphan(5, 1, 1);
        let out = orphans.insert(parent, hash, o);
        assert_eq!(out[0].block.header.height, 10 + MAX_ORPHANS as u64 - 1);
        assert_eq!(orphans.len(), MAX_ORPHANS);
        // Bytes: a few large blocks push out as many as it takes.
        let (parent, hash, o) = orphan(6, 2, MAX_ORPHAN_BYTES / 2);
        orphans.insert(parent, hash, o);
        let (parent, hash, o) = orphan(7, 2, MAX_ORPHAN_BYTES / 2);
        let out = orphans.insert(parent, hash, o);
        assert!(orphans.bytes <= MAX_ORPHAN_BYTES);
        assert!(!out.is_empty());
        // The same block twice is kept once.
        let (parent, hash, o) = orphan(5, 1, 1);
        assert_eq!(orphans.insert(parent, hash, o).len(), 1);
        // Children come out by parent; pruning drops everything at or below a height.
        let before = orphans.len();
        let kids = orphans.children_of(&[1; 32]);
        assert!(!kids.is_empty());
        assert_eq!(orphans.len(), before - kids.len());
        let pruned = orphans.prune_to(u64::MAX - 1);
        assert_eq!(orphans.len(), 0, "{} pruned", pruned.len());
        assert_eq!(orphans.bytes, 0);
    }

    fn votes(n: usize) -> Input {
        let vote = SignedVote::sign(
            VoteBody {
                stage: vexidus_runtime_api::vote::VoteStage::Prevote,
                height: 1,
                block: [1; 32],
            },
            &vexidus_runtime_api::signing::Keypair::from_seed([1; 32]),
            "bounded",
        );
        Input::Votes {
            votes: vec![vote; n],
            from: None,
            gossip: None,
        }
    }

    #[test]
    fn the_input_queue_is_bounded_by_count_and_bytes_and_counts_what_it_drops() {
        let (inputs, queue) = input_queue();
        // Bytes: 40 MiB of votes fit, another 40 MiB does not, a small input still does.
        let forty_mib = (40 << 20) / 160;
        assert_eq!(inputs.offer(votes(forty_mib)), Ok(()));
        assert_eq!(inputs.offer(votes(forty_mib)), Err(QueueError::Full));
        assert_eq!(inputs.dropped(), 1);
        assert_eq!(inputs.offer(votes(1)), Ok(()));
        // Taking the large input out gives its bytes back.
        assert!(matches!(
            queue.recv_timeout(Duration::from_secs(1)),
            Ok(Input::Votes { votes, .. }) if votes.len() == forty_mib
        ));
        assert_eq!(inputs.offer(votes(forty_mib)), Ok(()));
        // Count: one slot per input, however small.
        let mut queued = 2;
        while inputs.offer(votes(0)).is_ok() {
            queued += 1;
        }
        assert_eq!(queued, INPUT_QUEUE);
        assert_eq!(inputs.dropped(), 2);
        // A synced input waits for room instead of being dropped.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let waiting = std::thread::scope(|s| {
            let sender = s.spawn(|| runtime.block_on(inputs.send(votes(1))));
            std::thread::sleep(Duration::from_millis(100));
            assert!(!sender.is_finished(), "a full queue took a synced input");
            queue
                .recv_timeout(Duration::from_secs(1))
                .expect("an input");
            sender.join().expect("sender")
        });
        assert_eq!(waiting, Ok(()));
        assert_eq!(
            inputs.dropped(),
            2,
            "a synced input is never counted as dropped"
        );
        drop(queue);
        assert_eq!(inputs.offer(votes(0)), Err(QueueError::Closed));
    }
}
