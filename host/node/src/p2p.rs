//! The node on the network (`--p2p-addr`, `--bootnodes`): passes gossiped blocks and votes to
//! the consensus driver, publishes what the driver asks, fetches missing blocks, catches up from
//! peers in batches when it is behind (from genesis if need be: each block runs on the runtime
//! its parent's state names, so syncing across runtime upgrades needs nothing special), answers
//! peers' sync requests, exchanges validator proofs, and forwards transactions submitted here
//! to the validators due to produce next (there is no transaction gossip).
//!
//! Synced batches carry the precommit certificate of the highest irreversible block among
//! them; the driver counts those votes like gossiped ones, so a syncing node finalizes what it
//! syncs through the ordinary rules, trusting no peer.

use crate::driver::{Input, Outbound};
use crate::state::{NodeState, Origin};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use vexidus_network::guard::Offence;
use vexidus_network::service::{NetworkClient, NetworkEvent, NetworkHandle};
use vexidus_network::wire::{Gossip, MAX_MESSAGE_BYTES, PeerProof, SyncRequest, SyncResponse};
use vexidus_rpc_api::{BanView, PeersView};
use vexidus_runtime_api::queries;
use vexidus_runtime_api::signing::Keypair;
use vexidus_runtime_api::vote::SignedVote;
use vexidus_runtime_api::{Address, SignedTransaction};

/// Blocks asked for per sync request.
pub const SYNC_BATCH: u32 = 64;
/// Blocking threads answering peers' requests at once.
pub const ANSWER_WORKERS: usize = 2;
/// Requests answered or waiting for a worker at once; more get an empty answer.
pub const ANSWERS_IN_FLIGHT: usize = 64;

/// Runs until the network task stops.
pub async fn run(
    state: Arc<NodeState>,
    mut network: NetworkHandle,
    inputs: crate::driver::Inputs,
    mut outbound: mpsc::UnboundedReceiver<Outbound>,
    validator_key: Option<Keypair>,
    bootnodes: Vec<libp2p::Multiaddr>,
) {
    let chain_id = state.read_chain().chain_id().to_string();
    let proof = validator_key
        .as_ref()
        .map(|k| PeerProof::sign(&network.peer_id.to_bytes(), k, &chain_id));
    let (forward, mut to_forward) = mpsc::unbounded_channel();
    *state.forward.lock().unwrap_or_else(|p| p.into_inner()) = Some(forward);
    let me = validator_key.as_ref().map(|k| k.public().address());
    let p2p = P2p {
        state,
        client: network.client(),
        syncing: Arc::new(AtomicBool::new(false)),
        inputs,
        proof,
        chain_id,
        validators: Arc::new(std::sync::Mutex::new(BTreeMap::new())),
        answer_workers: Arc::new(tokio::sync::Semaphore::new(ANSWER_WORKERS)),
        answers_in_flight: Arc::new(tokio::sync::Semaphore::new(ANSWERS_IN_FLIGHT)),
    };
    let mut census = tokio::time::interval(Duration::from_secs(1));
    let mut ticks = 0u64;
    // The driver going away (a halt for an upgrade, a shutdown) is the node's business, not a
    // network failure: keep serving until the node stops this task.
    let mut driver_gone = false;
    loop {
        tokio::select! {
            message = outbound.recv(), if !driver_gone => match message {
                Some(m) => p2p.on_outbound(m).await,
                None => driver_gone = true,
            },
            event = network.events.recv() => match event {
                Some(e) => p2p.on_event(e).await,
                None => return,
            },
            tx = to_forward.recv() => {
                if let Some(tx) = tx {
                    let mut batch = vec![tx];
                    while let Ok(more) = to_forward.try_recv() {
                        batch.push(more);
                    }
                    p2p.forward(batch, me);
                }
            }
            _ = census.tick() => {
                ticks += 1;
                let peers = p2p.client.peers().await;
                p2p.state.peers.store(peers.len(), Ordering::Relaxed);
                let bans = p2p.client.bans().await;
                *p2p.state.network.lock().unwrap_or_else(|p| p.into_inner()) = PeersView {
                    peer_id: Some(network.peer_id.to_string()),
                    connected: peers.iter().map(|p| p.to_string()).collect(),
                    banned: bans
                        .iter()
                        .map(|b| BanView {
                            peer: b.peer.to_string(),
                            reason: b.reason.clone(),
                            remaining_s: b.remaining_ms.div_ceil(1000),
                        })
                        .collect(),
                };
                // Bootnodes that went away (restarted, upgraded) are dialled again.
                if ticks.is_multiple_of(5) && peers.len() < bootnodes.len() {
                    for addr in &bootnodes {
                        p2p.client.dial(addr.clone()).await;
                    }
                }
                // Catch up from a peer now and then whatever gossip brought: a lost gossip
                // message or a stalled mesh must not leave the node behind for good.
                if ticks.is_multiple_of(3) && !peers.is_empty() {
                    p2p.sync_in_background(peers[(ticks / 3) as usize % peers.len()]);
                }
            }
        }
    }
}

#[derive(Clone)]
struct P2p {
    state: Arc<NodeState>,
    client: NetworkClient,
    syncing: Arc<AtomicBool>,
    inputs: crate::driver::Inputs,
    proof: Option<PeerProof>,
    chain_id: String,
    /// Validators that proved their key, and their peers.
    validators: Arc<std::sync::Mutex<BTreeMap<Address, libp2p::PeerId>>>,
    /// Permits to run an answer ([`ANSWER_WORKERS`]).
    answer_workers: Arc<tokio::sync::Semaphore>,
    /// Permits to hold a request while it waits or runs ([`ANSWERS_IN_FLIGHT`]).
    answers_in_flight: Arc<tokio::sync::Semaphore>,
}

impl P2p {
    /// Starts catching up from `peer` unless a catch-up is already running.
    fn sync_in_background(&self, peer: libp2p::PeerId) {
        if self.syncing.swap(true, Ordering::SeqCst) {
            return;
        }
        let (state, client, syncing, inputs) = (
            self.state.clone(),
            self.client.clone(),
            self.syncing.clone(),
            self.inputs.clone(),
        );
        tokio::spawn(async move {
            sync_from(&state, &client, &inputs, peer).await;
            syncing.store(false, Ordering::SeqCst);
        });
    }

    async fn on_outbound(&self, message: Outbound) {
        match message {
            Outbound::Publish(g) => self.client.publish(&g).await,
            Outbound::Report { peer, offence } => self.client.report(peer, offence).await,
            Outbound::Validated {
                validation,
                verdict,
            } => self.client.validated(validation, verdict).await,
            Outbound::Fetch { hash, from } => {
                let (client, inputs) = (self.client.clone(), self.inputs.clone());
                tokio::spawn(async move {
                    // The peer that named the block first, then every other: the one that
                    // sent a child may have gone away (a dead peer answers only when its
                    // request times out), and an orphan's parent is not asked for again.
                    let mut peers = client.peers().await;
                    if let Some(p) = from {
                        peers.retain(|q| *q != p);
                        peers.insert(0, p);
                    }
                    for peer in peers {
                        if let Ok(SyncResponse::Blocks { blocks, .. }) =
                            client.request(peer, SyncRequest::Block { hash }).await
                            && let Some(block) = blocks.into_iter().next()
                        {
                            let _ = inputs
                                .send(Input::Block {
                                    block: Box::new(block),
                                    from: Some(peer),
                                    done: None,
                                    gossip: None,
                                })
                                .await;
                            return;
                        }
                    }
                });
            }
        }
    }

    /// Accepts a peer's validator proof: its blocks pass `--enforce-validator-allowlist`.
    async fn check_proof(&self, peer: libp2p::PeerId, proof: Option<PeerProof>) {
        let Some(proof) = proof else { return };
        if !proof.verify(&peer.to_bytes(), &self.chain_id) {
            self.client.report(peer, Offence::BadSignature).await;
            return;
        }
        let registered = matches!(
            self.state
                .read_chain()
                .query(queries::Validator(proof.validator.address())),
            Ok(Some(_))
        );
        if registered {
            tracing::info!(%peer, validator = %proof.validator, "validator peer");
            self.validators
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(proof.validator.address(), peer);
            self.client.allow(peer).await;
        }
    }

    /// Sends transactions submitted here to the validators due to produce next.
    fn forward(&self, batch: Vec<SignedTransaction>, me: Option<Address>) {
        let leaders = self
            .state
            .leaders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let peers: Vec<libp2p::PeerId> = {
            let known = self.validators.lock().unwrap_or_else(|p| p.into_inner());
            leaders
                .iter()
                .filter(|l| Some(**l) != me)
                .filter_map(|l| known.get(l).copied())
                .collect()
        };
        // Requests are capped like messages: split the batch by encoded size.
        let mut batches: Vec<Vec<SignedTransaction>> = vec![Vec::new()];
        let mut size = 0usize;
        let cap = MAX_MESSAGE_BYTES - 1024;
        for tx in batch {
            let n = borsh::to_vec(&tx).map(|b| b.len()).unwrap_or(cap);
            if size + n > cap && !batches.last().is_some_and(Vec::is_empty) {
                batches.push(Vec::new());
                size = 0;
            }
            size += n;
            batches.last_mut().expect("one batch at least").push(tx);
        }
        for (peer, transactions) in peers
            .iter()
            .flat_map(|p| batches.iter().map(move |b| (*p, b.clone())))
        {
            let client = self.client.clone();
            tokio::spawn(async move {
                match client
                    .request(peer, SyncRequest::Transactions { transactions })
                    .await
                {
                    Ok(SyncResponse::Accepted { accepted }) => {
                        tracing::debug!(%peer, accepted, "forwarded transactions")
                    }
                    other => tracing::debug!(%peer, ?other, "forwarding transactions failed"),
                }
            });
        }
    }

    /// Answers a request for blocks or a batch of forwarded transactions on a blocking thread:
    /// reading blocks and checking signatures must not hold up the network loop. At most
    /// [`ANSWERS_IN_FLIGHT`] requests wait for one of [`ANSWER_WORKERS`]; past that a request
    /// gets an empty answer at once (the asker tries again later or another peer).
    fn answer_in_background(&self, peer: libp2p::PeerId, request: SyncRequest, ticket: u64) {
        let busy = match &request {
            SyncRequest::Transactions { .. } => SyncResponse::Accepted { accepted: 0 },
            _ => SyncResponse::Blocks {
                blocks: vec![],
                certificate: vec![],
            },
        };
        let Ok(in_flight) = self.answers_in_flight.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many sync requests at once: answered empty");
            let client = self.client.clone();
            tokio::spawn(async move { client.respond(ticket, busy).await });
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            let _in_flight = in_flight;
            let Ok(_worker) = me.answer_workers.clone().acquire_owned().await else {
                return;
            };
            let state = me.state.clone();
            let work = tokio::task::spawn_blocking(move || match request {
                SyncRequest::Transactions { transactions } => admit_all(&state, transactions),
                other => (answer(&state, &other), None),
            });
            let (response, offence) = work.await.unwrap_or((busy, None));
            if let Some(offence) = offence {
                me.client.report(peer, offence).await;
            }
            me.client.respond(ticket, response).await;
        });
    }

    async fn on_event(&self, event: NetworkEvent) {
        match event {
            NetworkEvent::Connected { peer } => {
                tracing::info!(%peer, "connected");
                let me = self.clone();
                tokio::spawn(async move {
                    let hello = SyncRequest::Hello {
                        proof: me.proof.clone(),
                    };
                    if let Ok(SyncResponse::Hello { proof }) = me.client.request(peer, hello).await
                    {
                        me.check_proof(peer, proof).await;
                    }
                });
                self.sync_in_background(peer);
            }
            NetworkEvent::Gossip {
                peer,
                message,
                validation,
                ..
            } => {
                let input = match *message {
                    Gossip::Block(block) => {
                        if block.header.height > self.state.read_chain().head().height + 1 {
                            self.sync_in_background(peer);
                        }
                        Input::Block {
                            block: Box::new(block),
                            from: Some(peer),
                            done: None,
                            gossip: Some(validation),
                        }
                    }
                    Gossip::Vote(vote) => Input::Votes {
                        votes: vec![vote],
                        from: Some(peer),
                        gossip: Some(validation),
                    },
                    Gossip::Votes { votes, .. } => Input::Votes {
                        votes,
                        from: Some(peer),
                        gossip: Some(validation),
                    },
                };
                if self.inputs.offer(input).is_err() {
                    tracing::debug!(
                        dropped = self.inputs.dropped(),
                        "the consensus driver is behind: gossip dropped"
                    );
                }
            }
            NetworkEvent::SyncRequest {
                peer,
                request,
                ticket,
            } => {
                if let SyncRequest::Hello { proof } = request {
                    self.check_proof(peer, proof).await;
                    let hello = SyncResponse::Hello {
                        proof: self.proof.clone(),
                    };
                    self.client.respond(ticket, hello).await;
                    return;
                }
                self.answer_in_background(peer, request, ticket);
            }
            NetworkEvent::Dropped { peer, reason } => {
                tracing::debug!(%peer, ?reason, "dropped a message");
            }
            NetworkEvent::Banned { peer } => {
                tracing::warn!(%peer, "banned a peer");
            }
        }
    }
}

/// Asks `peer` for the canonical blocks above the last irreversible block, in batches, until
/// it has no more, handing each to the driver and waiting for it to be executed.
async fn sync_from(
    state: &Arc<NodeState>,
    network: &NetworkClient,
    inputs: &crate::driver::Inputs,
    peer: libp2p::PeerId,
) {
    let mut from = state.read_chain().finalized().height + 1;
    let mut total = 0usize;
    loop {
        let (blocks, certificate) = match network
            .request(
                peer,
                SyncRequest::Blocks {
                    from,
                    max: SYNC_BATCH,
                },
            )
            .await
        {
            Ok(SyncResponse::Blocks {
                blocks,
                certificate,
            }) => (blocks, certificate),
            Ok(_) => return,
            Err(e) => {
                tracing::debug!(%peer, "sync request failed: {e}");
                return;
            }
        };
        let n = blocks.len();
        for (i, block) in blocks.into_iter().enumerate() {
            if block.header.height != from + i as u64 {
                return;
            }
            let (done, verdict) = oneshot::channel();
            if inputs
                .send(Input::Block {
                    block: Box::new(block),
                    from: Some(peer),
                    done: Some(done),
                    gossip: None,
                })
                .await
                .is_err()
            {
                return;
            }
            match verdict.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(%peer, "refused a synced block: {e}");
                    return;
                }
                Err(_) => return,
            }
        }
        for votes in certificate.chunks(vexidus_network::wire::MAX_VOTES_PER_MESSAGE) {
            let _ = inputs
                .send(Input::Votes {
                    votes: votes.to_vec(),
                    from: Some(peer),
                    gossip: None,
                })
                .await;
        }
        total += n;
        from += n as u64;
        if n < SYNC_BATCH as usize {
            if total > 0 {
                tracing::info!(%peer, blocks = total, "caught up");
            }
            return;
        }
    }
}

/// Admits forwarded transactions. A bad signature is charged to the peer: a node checks a
/// signature before it forwards a transaction, so only its sender can have made it.
fn admit_all(
    state: &NodeState,
    transactions: Vec<SignedTransaction>,
) -> (SyncResponse, Option<Offence>) {
    let results = state.admit(transactions.into_iter().map(Ok).collect(), Origin::Peer);
    let mut accepted = 0u32;
    let mut offence = None;
    for r in results {
        match r {
            Ok(_) => accepted += 1,
            Err(vexidus_pool::TxError::BadSignature(_)) => offence = Some(Offence::BadSignature),
            Err(e) => tracing::debug!("forwarded transaction refused: {e}"),
        }
    }
    (SyncResponse::Accepted { accepted }, offence)
}

/// Blocks for a peer: consecutive canonical blocks from the asked height, within the count and
/// size caps, with the certificate of the highest irreversible one among them.
fn answer(state: &NodeState, request: &SyncRequest) -> SyncResponse {
    let chain = state.read_chain();
    let mut blocks = Vec::new();
    let mut certificate = Vec::new();
    match request {
        SyncRequest::Blocks { from, max } => {
            let mut size = 0usize;
            let cap = (MAX_MESSAGE_BYTES as u64).min(vexidus_network::service::MAX_RESPONSE_BYTES)
                as usize;
            for h in *from..from.saturating_add(u64::from((*max).min(SYNC_BATCH))) {
                let Ok(Some(block)) = chain.block_at(h) else {
                    break;
                };
                size += borsh::to_vec(&block).map(|b| b.len()).unwrap_or(cap);
                if size > cap && !blocks.is_empty() {
                    break;
                }
                blocks.push(block);
            }
            if let Some(last) = blocks.last() {
                let top = last.header.height.min(chain.finalized().height);
                if let Ok(Some((_, bytes))) = chain.db().certificate_in(*from, top) {
                    certificate = borsh::from_slice::<Vec<SignedVote>>(&bytes).unwrap_or_default();
                }
            }
        }
        SyncRequest::Block { hash } => {
            if let Ok(Some(block)) = chain.block(hash) {
                blocks.push(block);
            }
        }
        SyncRequest::Hello { .. } | SyncRequest::Transactions { .. } => {}
    }
    SyncResponse::Blocks {
        blocks,
        certificate,
    }
}
