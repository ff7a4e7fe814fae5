//! The node on the network (`--p2p-addr`, `--bootnodes`): gossips the blocks it produces,
//! imports blocks that extend its head, catches up from peers in batches when it is behind
//! (from genesis if need be: each block runs on the runtime its parent's state names, so syncing
//! across runtime upgrades needs nothing special), and answers peers' sync requests.
//!
//! One producer, many followers: this is sync and follow, not consensus yet (the `consensus`
//! crate's state machine takes over block choice when the host holds forks).

use crate::chain::ChainError;
use crate::node::NodeState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;
use vexidus_network::guard::Offence;
use vexidus_network::service::{NetworkClient, NetworkEvent, NetworkHandle};
use vexidus_network::wire::{Gossip, MAX_MESSAGE_BYTES, SyncRequest, SyncResponse};
use vexidus_runtime_api::Block;
use vexidus_runtime_api::abi::UpgradeHalt;

/// Blocks asked for per sync request.
pub const SYNC_BATCH: u32 = 64;

/// Runs until the network task stops or an imported block halts for a binary upgrade. Catching
/// up runs in a task of its own (one at a time), so this loop keeps answering peers' requests
/// meanwhile — two nodes syncing from each other would otherwise wait on each other.
pub async fn run(
    state: Arc<NodeState>,
    mut network: NetworkHandle,
) -> Result<Option<UpgradeHalt>, ChainError> {
    let mut produced = state.produced.subscribe();
    let (halts, mut halted) = mpsc::channel::<UpgradeHalt>(1);
    let p2p = P2p {
        state,
        client: network.client(),
        syncing: Arc::new(AtomicBool::new(false)),
        halts,
    };
    loop {
        tokio::select! {
            block = produced.recv() => match block {
                Ok(block) => p2p.client.publish(&Gossip::Block((*block).clone())).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return Ok(None),
            },
            halt = halted.recv() => return Ok(halt),
            event = network.events.recv() => {
                let Some(event) = event else { return Ok(None) };
                if let Some(halt) = p2p.on_event(event).await? {
                    return Ok(Some(halt));
                }
            }
        }
    }
}

struct P2p {
    state: Arc<NodeState>,
    client: NetworkClient,
    syncing: Arc<AtomicBool>,
    halts: mpsc::Sender<UpgradeHalt>,
}

impl P2p {
    /// Starts catching up from `peer` unless a catch-up is already running.
    fn sync_in_background(&self, peer: libp2p::PeerId) {
        if self.syncing.swap(true, Ordering::SeqCst) {
            return;
        }
        let (state, client, syncing, halts) = (
            self.state.clone(),
            self.client.clone(),
            self.syncing.clone(),
            self.halts.clone(),
        );
        tokio::spawn(async move {
            let r = sync_from(&state, &client, peer).await;
            syncing.store(false, Ordering::SeqCst);
            match r {
                Ok(Some(halt)) => {
                    let _ = halts.send(halt).await;
                }
                Ok(None) => {}
                Err(e) => tracing::error!(%peer, "sync failed: {e}"),
            }
        });
    }

    async fn on_event(&self, event: NetworkEvent) -> Result<Option<UpgradeHalt>, ChainError> {
        let (state, network) = (&self.state, &self.client);
        match event {
            NetworkEvent::Connected { peer } => {
                tracing::info!(%peer, "connected");
                self.sync_in_background(peer);
                Ok(None)
            }
            NetworkEvent::Gossip { peer, message, .. } => match *message {
                Gossip::Block(block) => {
                    let head = head_height(state);
                    let height = block.header.height;
                    if height == head + 1 {
                        match import(state, block).await {
                            Ok(()) => Ok(None),
                            Err(ChainError::UpgradeHalt(h)) => Ok(Some(*h)),
                            Err(e) => {
                                if let Some(offence) = offence_of(&e) {
                                    network.report(peer, offence).await;
                                }
                                tracing::warn!(%peer, height, "refused a gossiped block: {e}");
                                Ok(None)
                            }
                        }
                    } else {
                        if height > head + 1 {
                            self.sync_in_background(peer);
                        }
                        Ok(None)
                    }
                }
                Gossip::Vote(_) => Ok(None),
            },
            NetworkEvent::SyncRequest {
                request, ticket, ..
            } => {
                let response = answer(state, &request);
                network.respond(ticket, response).await;
                Ok(None)
            }
            NetworkEvent::Dropped { peer, reason } => {
                tracing::debug!(%peer, ?reason, "dropped a message");
                Ok(None)
            }
            NetworkEvent::Banned { peer } => {
                tracing::warn!(%peer, "banned a peer");
                Ok(None)
            }
        }
    }
}

fn head_height(state: &NodeState) -> u64 {
    state.read_chain().head().height
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

async fn import(state: &Arc<NodeState>, block: Block) -> Result<(), ChainError> {
    let state = state.clone();
    let height = block.header.height;
    tokio::task::spawn_blocking(move || {
        let imported = state.import(block)?;
        state.after_block();
        tracing::info!(height, hash = %crate::rpc::hex0x(imported.hash), "imported block");
        Ok(())
    })
    .await
    .map_err(|e| ChainError::Runtime(format!("import task failed: {e}")))?
}

/// Asks `peer` for the blocks above the head, in batches, until it has no more.
async fn sync_from(
    state: &Arc<NodeState>,
    network: &NetworkClient,
    peer: libp2p::PeerId,
) -> Result<Option<UpgradeHalt>, ChainError> {
    loop {
        let from = head_height(state) + 1;
        let blocks = match network
            .request(
                peer,
                SyncRequest::Blocks {
                    from,
                    max: SYNC_BATCH,
                },
            )
            .await
        {
            Ok(SyncResponse::Blocks { blocks }) => blocks,
            Err(e) => {
                tracing::debug!(%peer, "sync request failed: {e}");
                return Ok(None);
            }
        };
        let n = blocks.len();
        for block in blocks {
            if block.header.height != head_height(state) + 1 {
                return Ok(None);
            }
            match import(state, block).await {
                Ok(()) => {}
                Err(ChainError::UpgradeHalt(h)) => return Ok(Some(*h)),
                Err(e) => {
                    if let Some(offence) = offence_of(&e) {
                        network.report(peer, offence).await;
                    }
                    tracing::warn!(%peer, "refused a synced block: {e}");
                    return Ok(None);
                }
            }
        }
        if n < SYNC_BATCH as usize {
            if n > 0 {
                tracing::info!(%peer, height = head_height(state), "caught up");
            }
            return Ok(None);
        }
    }
}

/// Blocks for a peer: consecutive from the asked height, within the count and size caps.
fn answer(state: &NodeState, request: &SyncRequest) -> SyncResponse {
    let chain = state.read_chain();
    let mut blocks = Vec::new();
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
        }
        SyncRequest::Block { hash } => {
            if let Ok(Some(block)) = chain.block(hash) {
                blocks.push(block);
            }
        }
    }
    SyncResponse::Blocks { blocks }
}
