//! The JSON-RPC server (SPEC §9): the node's implementation of the API trait of
//! `vexidus-rpc-api`, served over HTTP and WebSocket on one port with a request size cap and a
//! per-IP rate limit.
//!
//! Every error says what is wrong; the codes are the API crate's ([`INVALID_PARAMS`] for
//! parameters that do not parse, [`RATE_LIMITED`], [`TX_REFUSED`] with the ingress reason,
//! [`NODE_ERROR`]).

use crate::state::{NodeState, Origin};
use jsonrpsee::core::middleware::{Batch, Notification, RpcServiceBuilder, RpcServiceT};
use jsonrpsee::core::{RpcResult, SubscriptionResult};
use jsonrpsee::server::{ServerConfig, ServerHandle, serve_with_graceful_shutdown, stop_channel};
use jsonrpsee::types::{ErrorObjectOwned, Id, Request};
use jsonrpsee::{MethodResponse, PendingSubscriptionSink, RpcModule};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vexidus_pool::TxError;
use vexidus_rpc_api::{
    AccountView, BlockAnswer, BlockId, BlockSummary, Full, FullBlock, H256, HeaderView,
    IncludedTransaction, ParametersView, PeersView, PlanAnswer, ProposalAnswer, RawTransaction,
    RawTransactions, ReadinessView, ReceiptView, RuntimeInfo, Status, SubmitOutcome,
    TransactionStatus, TransactionView, ValidatorView, VexApiServer, VexSubscriptionApiServer,
};
pub use vexidus_rpc_api::{
    INVALID_PARAMS, MAX_BATCH_TRANSACTIONS, NODE_ERROR, RATE_LIMITED, TX_REFUSED,
};
use vexidus_runtime_api::queries::{self, TypedQuery};
use vexidus_runtime_api::{Address, SignedTransaction, ValidatorInfo};

/// RPC server settings.
#[derive(Clone, Debug)]
pub struct RpcConfig {
    /// Listen address.
    pub addr: SocketAddr,
    /// Requests per second per client IP.
    pub rate_limit: u32,
    /// Largest request body in bytes.
    pub max_request_bytes: u32,
    /// Most calls in one JSON-RPC batch. A longer batch is refused as a whole once its length
    /// is known, before any call in it is parsed; a batch costs its length in rate-limit
    /// tokens.
    pub max_batch_len: u32,
}

/// Most subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: u32 = 64;

fn err(code: i32, msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, msg.into(), None::<()>)
}

fn node_err(e: impl std::fmt::Display) -> ErrorObjectOwned {
    err(NODE_ERROR, e.to_string())
}

/// Refuses a transaction sent to a typed write method (`vex_voteUpgrade`, ...) that carries an
/// operation other than the method's (discriminant and name).
fn only_operation(
    tx: SignedTransaction,
    (discriminant, name): (u8, &'static str),
) -> Result<SignedTransaction, TxError> {
    match tx
        .transaction
        .operations
        .iter()
        .find(|op| op.discriminant() != discriminant)
    {
        Some(op) => Err(TxError::WrongOperation {
            expected: name,
            found: op.name(),
        }),
        None => Ok(tx),
    }
}

/// The node's RPC methods over its shared state.
#[derive(Clone)]
pub struct Rpc {
    state: Arc<NodeState>,
}

impl Rpc {
    fn query<Q: TypedQuery>(&self, q: Q) -> RpcResult<Q::Answer> {
        self.state.read_chain().query(q).map_err(node_err)
    }

    /// A validator with its missed-block record.
    fn with_liveness(&self, v: &ValidatorInfo) -> RpcResult<ValidatorView> {
        let live = self.query(queries::Liveness(v.address))?;
        Ok(ValidatorView::new(v, &live))
    }

    fn plan(&self) -> RpcResult<Option<PlanAnswer>> {
        Ok(self
            .query(queries::UpgradePlan)?
            .as_ref()
            .map(PlanAnswer::from))
    }

    /// Admits one transaction, optionally only if it carries `only` operations.
    fn submit(&self, tx: RawTransaction, only: Option<(u8, &'static str)>) -> RpcResult<H256> {
        let tx = vexidus_pool::decode(&tx.0).and_then(|tx| match only {
            Some(only) => only_operation(tx, only),
            None => Ok(tx),
        });
        let mut results = self.state.admit(vec![tx], Origin::Rpc);
        results
            .pop()
            .expect("one result for one transaction")
            .map(H256)
            .map_err(|e| match e {
                TxError::Node(e) => node_err(e),
                other => err(TX_REFUSED, other.to_string()),
            })
    }
}

impl VexApiServer for Rpc {
    fn status(&self) -> RpcResult<Status> {
        self.state.status().map_err(node_err)
    }

    fn block(&self, id: BlockId, full: Option<Full>) -> RpcResult<Option<BlockAnswer>> {
        let chain = self.state.read_chain();
        let block = match id {
            BlockId::Height(h) => chain.block_at(h),
            BlockId::Latest => chain.block_at(chain.head().height),
            BlockId::Finalized => chain.block_at(chain.finalized().height),
            BlockId::Hash(h) => chain.block(&h.0),
        }
        .map_err(node_err)?;
        let Some(block) = block else {
            return Ok(None);
        };
        let hash = vexidus_runtime_api::signing::header_hash(&block.header);
        let header = HeaderView::new(&block, &hash);
        let finalized = block.header.height <= chain.finalized().height;
        if !full.is_none_or(|f| f.0) {
            return Ok(Some(BlockAnswer::Summary(Box::new(BlockSummary {
                header,
                finalized,
                transactions: block
                    .transactions
                    .iter()
                    .map(|t| H256(vexidus_runtime_api::signing::transaction_hash(t)))
                    .collect(),
            }))));
        }
        // A block by hash may be on a fork: its receipts are those of its own execution.
        let (receipts, events) = match chain.pending_block(&hash) {
            Some(p) => (p.receipts.clone(), p.events.clone()),
            None => chain
                .outcome_at(block.header.height)
                .map_err(node_err)?
                .unwrap_or_default(),
        };
        Ok(Some(BlockAnswer::Full(Box::new(FullBlock {
            header,
            signature: block.signature,
            finalized,
            events,
            transactions: block
                .transactions
                .iter()
                .zip(receipts.iter())
                .map(|(t, r)| IncludedTransaction {
                    transaction: TransactionView::from(t),
                    receipt: ReceiptView::from(r),
                })
                .collect(),
        }))))
    }

    fn transaction(&self, hash: H256) -> RpcResult<Option<TransactionStatus>> {
        if self.state.is_pending(&hash.0) {
            return Ok(Some(TransactionStatus::Pending { hash }));
        }
        let chain = self.state.read_chain();
        let Some((height, index)) = chain.tx_location(&hash.0).map_err(node_err)? else {
            return Ok(None);
        };
        let block = chain
            .block_at(height)
            .map_err(node_err)?
            .ok_or_else(|| node_err("indexed block missing"))?;
        let (receipts, _) = chain
            .outcome_at(height)
            .map_err(node_err)?
            .unwrap_or_default();
        let tx = block
            .transactions
            .get(index as usize)
            .ok_or_else(|| node_err("indexed transaction missing"))?;
        let receipt = receipts
            .get(index as usize)
            .ok_or_else(|| node_err("receipt missing"))?;
        Ok(Some(TransactionStatus::Included {
            hash,
            height,
            index,
            finalized: height <= chain.finalized().height,
            block_hash: H256(vexidus_runtime_api::signing::header_hash(&block.header)),
            transaction: Box::new(TransactionView::from(tx)),
            receipt: ReceiptView::from(receipt),
        }))
    }

    fn account(&self, address: Address) -> RpcResult<AccountView> {
        let a = self.query(queries::Account(address))?;
        Ok(AccountView {
            address,
            balance: a.balance,
            nonce: a.nonce,
        })
    }

    fn validators(&self) -> RpcResult<Vec<ValidatorView>> {
        let vs = self.query(queries::Validators)?;
        vs.iter().map(|v| self.with_liveness(v)).collect()
    }

    fn validator(&self, address: Address) -> RpcResult<Option<ValidatorView>> {
        let v = self.query(queries::Validator(address))?;
        v.as_ref().map(|v| self.with_liveness(v)).transpose()
    }

    fn parameters(&self) -> RpcResult<ParametersView> {
        Ok(ParametersView(self.query(queries::Parameters)?))
    }

    fn proposal(&self, id: u64) -> RpcResult<Option<ProposalAnswer>> {
        let at_height = self.state.read_chain().head().height + 1;
        let p = self.query(queries::Proposal { id, at_height })?;
        Ok(p.as_ref().map(ProposalAnswer::from))
    }

    fn upgrade_plan(&self) -> RpcResult<Option<PlanAnswer>> {
        self.plan()
    }

    fn upgrade_readiness(&self) -> RpcResult<Option<ReadinessView>> {
        Ok(self.state.readiness())
    }

    fn runtime_version(&self) -> RpcResult<RuntimeInfo> {
        let chain = self.state.read_chain();
        let rt = chain.runtime();
        Ok(RuntimeInfo::new(&rt.version, &rt.code_hash))
    }

    fn peers(&self) -> RpcResult<PeersView> {
        Ok(self
            .state
            .network
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }

    fn submit_transaction(&self, tx: RawTransaction) -> RpcResult<H256> {
        self.submit(tx, None)
    }

    fn submit_transactions(&self, txs: RawTransactions) -> RpcResult<Vec<SubmitOutcome>> {
        let decoded = txs.0.iter().map(|t| vexidus_pool::decode(&t.0)).collect();
        Ok(self
            .state
            .admit(decoded, Origin::Rpc)
            .into_iter()
            .map(|r| match r {
                Ok(hash) => SubmitOutcome::Accepted(H256(hash)),
                Err(e) => SubmitOutcome::Refused(e.to_string()),
            })
            .collect())
    }

    fn schedule_upgrade(&self, tx: RawTransaction) -> RpcResult<H256> {
        self.submit(tx, Some((46, "ScheduleUpgrade")))
    }

    fn cancel_upgrade(&self, tx: RawTransaction) -> RpcResult<H256> {
        self.submit(tx, Some((47, "CancelUpgrade")))
    }

    fn vote_upgrade(&self, tx: RawTransaction) -> RpcResult<H256> {
        self.submit(tx, Some((48, "VoteUpgrade")))
    }

    fn claim_rewards(&self, tx: RawTransaction) -> RpcResult<H256> {
        self.submit(tx, Some((4, "ClaimRewards")))
    }

    fn unjail(&self, tx: RawTransaction) -> RpcResult<H256> {
        self.submit(tx, Some((5, "Unjail")))
    }
}

#[jsonrpsee::core::async_trait]
impl VexSubscriptionApiServer for Rpc {
    async fn subscribe_new_heads(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        forward(pending, self.state.heads.subscribe()).await
    }

    async fn subscribe_finalized(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        forward(pending, self.state.finalized.subscribe()).await
    }

    async fn subscribe_upgrade(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        let mut heads = self.state.heads.subscribe();
        let sink = pending.accept().await?;
        let mut last = None; // differs from any plan and from "no plan"
        loop {
            let plan = self.plan().ok().flatten();
            if last.as_ref() != Some(&plan) {
                let msg = serde_json::value::to_raw_value(&plan)?;
                if sink.send(msg).await.is_err() {
                    break;
                }
                last = Some(plan);
            }
            tokio::select! {
                _ = sink.closed() => break,
                head = heads.recv() => match head {
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                },
            }
        }
        Ok(())
    }
}

/// Builds the RPC methods over the node's shared state.
pub fn module(state: Arc<NodeState>) -> RpcModule<Rpc> {
    let rpc = Rpc { state };
    let mut m = VexApiServer::into_rpc(rpc.clone());
    m.merge(VexSubscriptionApiServer::into_rpc(rpc))
        .expect("method names are unique");
    m
}

/// Streams every value of `rx` to the subscriber until it goes away; a slow subscriber skips
/// what it missed.
async fn forward(
    pending: jsonrpsee::PendingSubscriptionSink,
    mut rx: tokio::sync::broadcast::Receiver<impl serde::Serialize + Clone>,
) -> jsonrpsee::core::SubscriptionResult {
    let sink = pending.accept().await?;
    loop {
        tokio::select! {
            _ = sink.closed() => break,
            item = rx.recv() => match item {
                Ok(v) => {
                    let msg = serde_json::value::to_raw_value(&v)?;
                    if sink.send(msg).await.is_err() { break; }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            },
        }
    }
    Ok(())
}

/// A token bucket per client IP, shared by all connections.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_second` requests per second per IP, with bursts of the same size.
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: per_second.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` tokens for `ip`; false when there are not enough.
    pub fn allow(&self, ip: IpAddr, n: usize) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 10_000 {
            let per_second = self.per_second;
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_second < per_second
            });
        }
        let (tokens, at) = buckets.entry(ip).or_insert((self.per_second, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second)
            .min(self.per_second);
        *at = now;
        if *tokens >= n as f64 {
            *tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

/// The rate-limit middleware of one connection.
#[derive(Clone)]
struct RateLimit<S> {
    inner: S,
    ip: IpAddr,
    limiter: Arc<RateLimiter>,
}

fn limited(id: Id<'_>) -> MethodResponse {
    MethodResponse::error(
        id,
        err(
            RATE_LIMITED,
            "rate limit exceeded: too many requests from this address; slow down",
        ),
    )
}

impl<S> RpcServiceT for RateLimit<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let allowed = self.limiter.allow(self.ip, 1);
        let inner = self.inner.clone();
        async move {
            if allowed {
                inner.call(request).await
            } else {
                limited(request.id)
            }
        }
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let allowed = self.limiter.allow(self.ip, batch.len().max(1));
        let inner = self.inner.clone();
        async move {
            if allowed {
                inner.batch(batch).await
            } else {
                limited(Id::Null)
            }
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.inner.notification(n)
    }
}

/// Binds the RPC port and serves until the returned handle is stopped.
pub async fn start(
    config: RpcConfig,
    state: Arc<NodeState>,
) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let local = listener.local_addr()?;
    let (stop_handle, server_handle) = stop_channel();
    let limiter = Arc::new(RateLimiter::new(config.rate_limit));
    let methods: jsonrpsee::Methods = module(state).into();
    let server_config = ServerConfig::builder()
        .max_request_body_size(config.max_request_bytes)
        .max_response_body_size(64 * 1024 * 1024)
        .max_connections(1_000)
        .max_subscriptions_per_connection(MAX_SUBSCRIPTIONS_PER_CONNECTION)
        .set_batch_request_config(jsonrpsee::server::BatchRequestConfig::Limit(
            config.max_batch_len,
        ))
        .build();
    let svc_builder = jsonrpsee::server::Server::builder()
        .set_config(server_config)
        .to_service_builder();

    tokio::spawn(async move {
        loop {
            let (sock, remote) = tokio::select! {
                res = listener.accept() => match res {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!("rpc accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop_handle.clone().shutdown() => break,
            };
            let ip = remote.ip();
            let limiter = limiter.clone();
            let middleware = RpcServiceBuilder::new().layer_fn(move |inner| RateLimit {
                inner,
                ip,
                limiter: limiter.clone(),
            });
            let svc = svc_builder
                .clone()
                .set_rpc_middleware(middleware)
                .build(methods.clone(), stop_handle.clone());
            let stopped = stop_handle.clone().shutdown();
            tokio::spawn(async move {
                if let Err(e) = serve_with_graceful_shutdown(sock, svc, stopped).await {
                    tracing::debug!("rpc connection from {remote} ended: {e}");
                }
            });
        }
    });
    Ok((local, server_handle))
}
