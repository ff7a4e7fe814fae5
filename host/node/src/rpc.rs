//! JSON-RPC over HTTP and WebSocket on one port (SPEC §9), with a request size cap and a
//! per-IP rate limit.
//!
//! Every error says what is wrong. Codes: `-32602` for parameters that do not parse (bad hex,
//! bad address), `-32005` when the rate limit is hit, `1001` for a transaction refused at
//! ingress (the message gives the reason), `1002` for a node-side failure.

use crate::state::{NodeState, Origin};
use crate::views::{
    event_json, header_json, hex0x, plan_json, proposal_json, receipt_json, transaction_json,
    validator_json, version_json,
};
use jsonrpsee::core::middleware::{Batch, Notification, RpcServiceBuilder, RpcServiceT};
use jsonrpsee::server::{ServerConfig, ServerHandle, serve_with_graceful_shutdown, stop_channel};
use jsonrpsee::types::{ErrorObjectOwned, Id, Params, Request};
use jsonrpsee::{MethodResponse, RpcModule};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vexidus_pool::TxError;
use vexidus_runtime_api::abi::{Query, QueryResponse};
use vexidus_runtime_api::{Address, Hash, SignedTransaction, ValidatorInfo};

/// Parameters that do not parse.
pub const INVALID_PARAMS: i32 = -32602;
/// Rate limit hit.
pub const RATE_LIMITED: i32 = -32005;
/// Transaction refused at ingress.
pub const TX_REFUSED: i32 = 1001;
/// Node-side failure.
pub const NODE_ERROR: i32 = 1002;

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

fn bad_params(msg: impl Into<String>) -> ErrorObjectOwned {
    err(INVALID_PARAMS, msg)
}

fn node_err(e: impl std::fmt::Display) -> ErrorObjectOwned {
    err(NODE_ERROR, e.to_string())
}

fn parse_hex_bytes(s: &str, what: &str) -> Result<Vec<u8>, ErrorObjectOwned> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    hex::decode(s).map_err(|e| bad_params(format!("{what} is not valid hex: {e}")))
}

fn parse_hash(s: &str) -> Result<Hash, ErrorObjectOwned> {
    parse_hex_bytes(s, "hash")?
        .try_into()
        .map_err(|v: Vec<u8>| bad_params(format!("a hash is 32 bytes, got {}", v.len())))
}

fn one_param<T: serde::de::DeserializeOwned>(
    params: &Params<'_>,
    what: &str,
) -> Result<T, ErrorObjectOwned> {
    let mut seq = params.sequence();
    seq.next::<T>().map_err(|e| {
        bad_params(format!(
            "expected {what} as the first parameter: {}",
            e.message()
        ))
    })
}

/// A validator with its missed-block record.
fn validator_with_liveness(
    state: &NodeState,
    v: &ValidatorInfo,
) -> Result<Value, ErrorObjectOwned> {
    match query(state, Query::Liveness(v.address))? {
        QueryResponse::Liveness(live) => Ok(validator_json(v, &live)),
        other => Err(node_err(format!("unexpected runtime answer {other:?}"))),
    }
}

fn query(state: &NodeState, q: Query) -> Result<QueryResponse, ErrorObjectOwned> {
    state.read_chain().query(q).map_err(node_err)
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

/// Most transactions per `vex_submitTransactions` call.
pub const MAX_BATCH_TRANSACTIONS: usize = 10_000;

/// Builds the RPC methods over the node's shared state.
pub fn module(state: Arc<NodeState>) -> RpcModule<Arc<NodeState>> {
    let mut m = RpcModule::new(state);
    let result = (|| -> Result<(), jsonrpsee::core::RegisterMethodError> {
        let writes: [(&'static str, Option<(u8, &'static str)>); 6] = [
            ("vex_submitTransaction", None),
            ("vex_scheduleUpgrade", Some((46, "ScheduleUpgrade"))),
            ("vex_cancelUpgrade", Some((47, "CancelUpgrade"))),
            ("vex_voteUpgrade", Some((48, "VoteUpgrade"))),
            ("vex_claimRewards", Some((4, "ClaimRewards"))),
            ("vex_unjail", Some((5, "Unjail"))),
        ];
        for (method, only) in writes {
            m.register_method(method, move |params, state, _| {
                let hex: String = one_param(&params, "a hex-encoded signed transaction")?;
                let bytes = parse_hex_bytes(&hex, "transaction")?;
                let tx = vexidus_pool::decode(&bytes).and_then(|tx| match only {
                    Some(only) => only_operation(tx, only),
                    None => Ok(tx),
                });
                let mut results = state.admit(vec![tx], Origin::Rpc);
                results
                    .pop()
                    .expect("one result for one transaction")
                    .map(hex0x)
                    .map_err(|e| match e {
                        TxError::Node(e) => node_err(e),
                        other => err(TX_REFUSED, other.to_string()),
                    })
            })?;
        }
        m.register_method(
            "vex_submitTransactions",
            |params, state, _| -> Result<Value, ErrorObjectOwned> {
                let list: Vec<String> =
                    one_param(&params, "an array of hex-encoded signed transactions")?;
                if list.len() > MAX_BATCH_TRANSACTIONS {
                    return Err(bad_params(format!(
                        "at most {MAX_BATCH_TRANSACTIONS} transactions per call, got {}",
                        list.len()
                    )));
                }
                let mut decoded = Vec::with_capacity(list.len());
                for (i, hex) in list.iter().enumerate() {
                    let bytes = parse_hex_bytes(hex, &format!("transaction {i}"))?;
                    decoded.push(vexidus_pool::decode(&bytes));
                }
                let results = state.admit(decoded, Origin::Rpc);
                Ok(json!(
                    results
                        .into_iter()
                        .map(|r| match r {
                            Ok(hash) => json!({ "hash": hex0x(hash) }),
                            Err(e) => json!({ "error": e.to_string() }),
                        })
                        .collect::<Vec<_>>()
                ))
            },
        )?;
        m.register_method(
            "vex_getProposal",
            |params, state, _| -> Result<Value, ErrorObjectOwned> {
                let id: u64 = one_param(&params, "a proposal id (number)")?;
                let at_height = state.read_chain().head().height + 1;
                match query(state, Query::Proposal { id, at_height })? {
                    QueryResponse::Proposal(p) => {
                        Ok(p.as_ref().map(proposal_json).unwrap_or(Value::Null))
                    }
                    other => Err(node_err(format!("unexpected runtime answer {other:?}"))),
                }
            },
        )?;
        m.register_method(
            "vex_getUpgradeReadiness",
            |_, state, _| -> Result<Value, ErrorObjectOwned> { Ok(state.readiness_json()) },
        )?;
        m.register_subscription(
            "vex_subscribeUpgrade",
            "vex_upgrade",
            "vex_unsubscribeUpgrade",
            |_, pending, state, _| async move {
                let mut rx = state.heads.subscribe();
                let sink = pending.accept().await?;
                let mut last = Value::Bool(false); // differs from any plan and from null
                loop {
                    let plan = match query(&state, Query::UpgradePlan) {
                        Ok(QueryResponse::UpgradePlan(p)) => p.as_ref().map(plan_json).unwrap_or(Value::Null),
                        _ => Value::Null,
                    };
                    if plan != last {
                        let msg = serde_json::value::to_raw_value(&plan)?;
                        if sink.send(msg).await.is_err() {
                            break;
                        }
                        last = plan;
                    }
                    tokio::select! {
                        _ = sink.closed() => break,
                        head = rx.recv() => match head {
                            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(_) => break,
                        },
                    }
                }
                Ok(())
            },
        )?;
        m.register_method(
            "vex_getUpgradePlan",
            |_, state, _| -> Result<Value, ErrorObjectOwned> {
                match query(state, Query::UpgradePlan)? {
                    QueryResponse::UpgradePlan(p) => {
                        Ok(p.as_ref().map(plan_json).unwrap_or(Value::Null))
                    }
                    other => Err(node_err(format!("unexpected runtime answer {other:?}"))),
                }
            },
        )?;
        m.register_method("vex_getPeers", |_, state, _| -> Value {
            state
                .network
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        })?;
        m.register_method(
            "vex_getStatus",
            |_, state, _| -> Result<Value, ErrorObjectOwned> { Ok(state.status_json()) },
        )?;
        m.register_method(
            "vex_getBlock",
            |params, state, _| -> Result<Value, ErrorObjectOwned> {
                let mut seq = params.sequence();
                let id: Value = seq.next().map_err(|e| {
                    bad_params(format!(
                        "expected a height or a block hash as the first parameter: {}",
                        e.message()
                    ))
                })?;
                // Optional second parameter: false lists transaction hashes only (no bodies,
                // no receipts), for followers of busy chains.
                let full: bool = seq
                    .optional_next::<bool>()
                    .map_err(|e| {
                        bad_params(format!(
                            "the optional second parameter is `full` (true or false): {}",
                            e.message()
                        ))
                    })?
                    .unwrap_or(true);
                let chain = state.read_chain();
                let block = match &id {
                    Value::Number(n) => {
                        let h = n
                            .as_u64()
                            .ok_or_else(|| bad_params("height must be a non-negative integer"))?;
                        chain.block_at(h).map_err(node_err)?
                    }
                    Value::String(s) if s == "latest" => {
                        chain.block_at(chain.head().height).map_err(node_err)?
                    }
                    Value::String(s) if s == "finalized" => {
                        chain.block_at(chain.finalized().height).map_err(node_err)?
                    }
                    Value::String(s) => chain.block(&parse_hash(s)?).map_err(node_err)?,
                    _ => {
                        return Err(bad_params(
                            "expected a height (number), a block hash (hex string) or \"latest\"",
                        ));
                    }
                };
                let Some(block) = block else {
                    return Ok(Value::Null);
                };
                let hash = vexidus_runtime_api::signing::header_hash(&block.header);
                if !full {
                    let mut v = header_json(&block, &hash);
                    v["finalized"] = json!(block.header.height <= chain.finalized().height);
                    v["transactions"] = json!(
                        block
                            .transactions
                            .iter()
                            .map(|t| hex0x(vexidus_runtime_api::signing::transaction_hash(t)))
                            .collect::<Vec<_>>()
                    );
                    return Ok(v);
                }
                // A block by hash may be on a fork: its receipts are those of its own execution.
                let (receipts, block_events) = match chain.pending_block(&hash) {
                    Some(p) => (p.receipts.clone(), p.events.clone()),
                    None => chain
                        .outcome_at(block.header.height)
                        .map_err(node_err)?
                        .unwrap_or_default(),
                };
                let mut v = header_json(&block, &hash);
                v["signature"] = json!(block.signature.to_string());
                v["finalized"] = json!(block.header.height <= chain.finalized().height);
                v["events"] = json!(block_events.iter().map(event_json).collect::<Vec<_>>());
                v["transactions"] = json!(
                    block
                        .transactions
                        .iter()
                        .zip(receipts.iter())
                        .map(|(t, r)| {
                            let mut tj = transaction_json(t);
                            tj["receipt"] = receipt_json(r);
                            tj
                        })
                        .collect::<Vec<_>>()
                );
                Ok(v)
            },
        )?;
        m.register_method(
            "vex_getTransaction",
            |params, state, _| -> Result<Value, ErrorObjectOwned> {
                let h: String = one_param(&params, "a transaction hash")?;
                let hash = parse_hash(&h)?;
                if state.is_pending(&hash) {
                    return Ok(json!({ "hash": hex0x(hash), "status": "pending" }));
                }
                let chain = state.read_chain();
                let Some((height, index)) = chain.tx_location(&hash).map_err(node_err)? else {
                    return Ok(Value::Null);
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
                Ok(json!({
                    "hash": hex0x(hash), "status": "included", "height": height, "index": index,
                    "finalized": height <= chain.finalized().height,
                    "block_hash": hex0x(vexidus_runtime_api::signing::header_hash(&block.header)),
                    "transaction": transaction_json(tx), "receipt": receipt_json(receipt),
                }))
            },
        )?;
        m.register_method("vex_getAccount", |params, state, _| -> Result<Value, ErrorObjectOwned> {
            let a: String = one_param(&params, "an address")?;
            let address = Address::from_hex(&a).map_err(|e| bad_params(format!("address: {e}")))?;
            match query(state, Query::Account(address))? {
                QueryResponse::Account(acct) => {
                    Ok(json!({ "address": address.to_string(), "balance": acct.balance, "nonce": acct.nonce }))
                }
                other => Err(node_err(format!("unexpected runtime answer {other:?}"))),
            }
        })?;
        m.register_method(
            "vex_getValidators",
            |_, state, _| -> Result<Value, ErrorObjectOwned> {
                match query(state, Query::Validators)? {
                    QueryResponse::Validators(vs) => Ok(json!(
                        vs.iter()
                            .map(|v| validator_with_liveness(state, v))
                            .collect::<Result<Vec<_>, _>>()?
                    )),
                    other => Err(node_err(format!("unexpected runtime answer {other:?}"))),
                }
            },
        )?;
        m.register_method(
            "vex_getValidator",
            |params, state, _| -> Result<Value, ErrorObjectOwned> {
                let a: String = one_param(&params, "an address")?;
                let address =
                    Address::from_hex(&a).map_err(|e| bad_params(format!("address: {e}")))?;
                match query(state, Query::Validator(address))? {
                    QueryResponse::Validator(Some(v)) => validator_with_liveness(state, &v),
                    QueryResponse::Validator(None) => Ok(Value::Null),
                    other => Err(node_err(format!("unexpected runtime answer {other:?}"))),
                }
            },
        )?;
        m.register_method(
            "vex_getParameters",
            |_, state, _| -> Result<Value, ErrorObjectOwned> {
                match query(state, Query::Parameters)? {
                    QueryResponse::Parameters(p) => Ok(serde_json::to_value(p).map_err(node_err)?),
                    other => Err(node_err(format!("unexpected runtime answer {other:?}"))),
                }
            },
        )?;
        m.register_method(
            "vex_getRuntimeVersion",
            |_, state, _| -> Result<Value, ErrorObjectOwned> {
                let chain = state.read_chain();
                let rt = chain.runtime();
                Ok(version_json(&rt.version, &rt.code_hash))
            },
        )?;
        m.register_subscription(
            "vex_subscribeNewHeads",
            "vex_newHead",
            "vex_unsubscribeNewHeads",
            |_, pending, state, _| async move {
                let rx = state.heads.subscribe();
                forward(pending, rx).await
            },
        )?;
        m.register_subscription(
            "vex_subscribeFinalized",
            "vex_finalized",
            "vex_unsubscribeFinalized",
            |_, pending, state, _| async move {
                let rx = state.finalized.subscribe();
                forward(pending, rx).await
            },
        )?;
        Ok(())
    })();
    result.expect("method names are unique");
    m
}

/// Streams every value of `rx` to the subscriber until it goes away; a slow subscriber skips
/// what it missed.
async fn forward(
    pending: jsonrpsee::PendingSubscriptionSink,
    mut rx: tokio::sync::broadcast::Receiver<Value>,
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
