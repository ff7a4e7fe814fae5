//! The blocking JSON-RPC client the `vexidus` CLI (and the end-to-end tests) use to talk to a
//! node, plus the helpers that turn operator input into chain values, and `vexidus localnet`.
//!
//! Typed calls go through the node's own API trait: [`RpcClient::api`] is a jsonrpsee client
//! transport, so every method of `vexidus_rpc_api::VexApiClient` is available on it, and
//! [`RpcClient::wait`] runs one to completion on the calling thread. An answer that lacks a
//! field is refused with [`ClientError::Answer`] naming the field.

pub mod localnet;

use jsonrpsee::core::client::{BatchResponse, ClientT, Error as RpcError};
use jsonrpsee::core::params::BatchRequestBuilder;
use jsonrpsee::core::traits::ToRpcParams;
use jsonrpsee::types::ErrorObject;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use vexidus_rpc_api::{H256, RawTransaction, TransactionStatus, VexApiClient};
use vexidus_runtime_api::NANO_PER_VXS;

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node answered with a JSON-RPC error.
    #[error("{message} (RPC error {code})")]
    Rpc {
        /// JSON-RPC error code.
        code: i64,
        /// The node's message, followed by its `data` when it sent some.
        message: String,
    },
    /// The node could not be reached or answered garbage.
    #[error("cannot reach the node at {url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The node answered, but not with what the API says (a field missing or of the wrong
    /// type); the reason names the field.
    #[error("the node at {url} answered in an unexpected shape: {reason}")]
    Answer {
        /// The URL.
        url: String,
        /// What is wrong with the answer.
        reason: String,
    },
    /// Waiting for something took too long.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

/// Client result.
pub type Result<T> = std::result::Result<T, ClientError>;

/// A JSON-RPC client over HTTP.
#[derive(Clone, Debug)]
pub struct RpcClient {
    url: String,
    agent: ureq::Agent,
}

/// The jsonrpsee transport of an [`RpcClient`]: `VexApiClient` methods are called on it.
/// Its calls are blocking HTTP requests, complete by the time their future is first polled.
#[derive(Clone, Copy, Debug)]
pub struct Api<'a>(&'a RpcClient);

/// One JSON-RPC response as it arrives.
#[derive(serde::Deserialize)]
struct Response {
    #[serde(default)]
    id: Option<Value>,
    /// Present (`null` included) or absent: a `null` result is an answer.
    #[serde(default, deserialize_with = "present")]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<ErrorObject<'static>>,
}

impl RpcClient {
    /// A client of the node at `url` (e.g. `http://127.0.0.1:9933`).
    pub fn new(url: &str) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build();
        Self {
            url: url.to_string(),
            agent: config.into(),
        }
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The typed API of the node (`use vexidus_rpc_api::VexApiClient`), to run with
    /// [`RpcClient::wait`]: `client.wait(client.api().status())`.
    pub fn api(&self) -> Api<'_> {
        Api(self)
    }

    /// Runs a call of [`RpcClient::api`] to completion and maps its error.
    pub fn wait<T>(
        &self,
        call: impl Future<Output = std::result::Result<T, RpcError>>,
    ) -> Result<T> {
        block_on(call).map_err(|e| self.client_error(e))
    }

    fn client_error(&self, e: RpcError) -> ClientError {
        match e {
            RpcError::Call(e) => ClientError::Rpc {
                code: e.code().into(),
                message: match e.data() {
                    Some(data) => {
                        let data: Value = serde_json::from_str(data.get()).unwrap_or(Value::Null);
                        match data.as_str() {
                            Some(text) => format!("{}: {text}", e.message()),
                            None => format!("{}: {data}", e.message()),
                        }
                    }
                    None => e.message().to_string(),
                },
            },
            RpcError::ParseError(e) => ClientError::Answer {
                url: self.url.clone(),
                reason: e.to_string(),
            },
            other => self.transport(other.to_string()),
        }
    }

    fn transport(&self, reason: String) -> ClientError {
        ClientError::Transport {
            url: self.url.clone(),
            reason,
        }
    }

    /// Posts one JSON-RPC body and returns the response text.
    fn post(&self, body: &Value) -> std::result::Result<String, RpcError> {
        let transport = |reason: String| RpcError::Transport(reason.into());
        let mut resp = self
            .agent
            .post(&self.url)
            .send_json(body)
            .map_err(|e| transport(e.to_string()))?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| transport(e.to_string()))?;
        if !status.is_success() && !text.trim_start().starts_with(['{', '[']) {
            return Err(transport(format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            )));
        }
        Ok(text)
    }

    /// Calls `method` with `params`; the raw `result` or the node's error.
    fn exchange(
        &self,
        method: &str,
        params: Option<Box<RawValue>>,
    ) -> std::result::Result<Box<RawValue>, RpcError> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let text = self.post(&body)?;
        let resp: Response = serde_json::from_str(&text).map_err(|_| {
            RpcError::Transport(
                format!(
                    "not a JSON-RPC response: {}",
                    text.chars().take(200).collect::<String>()
                )
                .into(),
            )
        })?;
        match (resp.error, resp.result) {
            (Some(e), _) => Err(RpcError::Call(e)),
            (None, Some(result)) => Ok(result),
            (None, None) => Err(RpcError::ParseError(serde::de::Error::missing_field(
                "result",
            ))),
        }
    }

    /// Calls `method` with positional `params` and returns the answer as raw JSON, as the
    /// wire carries it (end-to-end tests read the answers' shape this way).
    pub fn call(&self, method: &str, params: Value) -> Result<Value> {
        let params = RawValue::from_string(params.to_string()).ok();
        let raw = self
            .exchange(method, params)
            .map_err(|e| self.client_error(e))?;
        serde_json::from_str(raw.get()).map_err(|e| self.client_error(RpcError::ParseError(e)))
    }

    /// `vex_getStatus` as raw JSON.
    pub fn status(&self) -> Result<Value> {
        self.call("vex_getStatus", json!([]))
    }

    /// Submits a signed transaction; returns its hash.
    pub fn submit(&self, tx: &vexidus_runtime_api::SignedTransaction) -> Result<String> {
        let hash = self.wait(self.api().submit_transaction(RawTransaction::of(tx)))?;
        Ok(hash.to_string())
    }

    /// Polls `vex_getTransaction` until the transaction is included; returns the answer.
    pub fn wait_included(&self, hash: &str, timeout: Duration) -> Result<Value> {
        let typed = H256::parse(hash).map_err(|reason| ClientError::Answer {
            url: self.url.clone(),
            reason,
        })?;
        self.wait_included_typed(typed, timeout)?;
        self.call("vex_getTransaction", json!([hash]))
    }

    /// Polls `vex_getTransaction` until the transaction is included; returns the answer.
    pub fn wait_included_typed(&self, hash: H256, timeout: Duration) -> Result<TransactionStatus> {
        let started = Instant::now();
        loop {
            let answer = self.wait(self.api().transaction(hash))?;
            if let Some(included @ TransactionStatus::Included { .. }) = answer {
                return Ok(included);
            }
            if started.elapsed() > timeout {
                return Err(ClientError::Timeout(
                    timeout,
                    format!("transaction {hash} to be included"),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl ClientT for Api<'_> {
    fn notification<Params>(
        &self,
        method: &str,
        params: Params,
    ) -> impl Future<Output = std::result::Result<(), RpcError>> + Send
    where
        Params: ToRpcParams + Send,
    {
        let sent = params
            .to_rpc_params()
            .map_err(RpcError::ParseError)
            .and_then(|params| {
                let body = json!({ "jsonrpc": "2.0", "method": method, "params": params });
                self.0.post(&body).map(drop)
            });
        std::future::ready(sent)
    }

    fn request<R, Params>(
        &self,
        method: &str,
        params: Params,
    ) -> impl Future<Output = std::result::Result<R, RpcError>> + Send
    where
        R: DeserializeOwned,
        Params: ToRpcParams + Send,
    {
        let raw = params
            .to_rpc_params()
            .map_err(RpcError::ParseError)
            .and_then(|params| self.0.exchange(method, params));
        async move { serde_json::from_str(raw?.get()).map_err(RpcError::ParseError) }
    }

    fn batch_request<'a, R>(
        &self,
        batch: BatchRequestBuilder<'a>,
    ) -> impl Future<Output = std::result::Result<BatchResponse<'a, R>, RpcError>> + Send
    where
        R: DeserializeOwned + std::fmt::Debug + 'a,
    {
        let texts = (|| {
            let calls = batch.build()?;
            let n = calls.len();
            let body: Vec<Value> = calls
                .into_iter()
                .enumerate()
                .map(|(id, (method, params))| {
                    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
                })
                .collect();
            let text = self.0.post(&Value::Array(body))?;
            let answers: Vec<Response> =
                serde_json::from_str(&text).map_err(RpcError::ParseError)?;
            let mut ordered: Vec<Option<Response>> = (0..n).map(|_| None).collect();
            for a in answers {
                if let Some(slot) =
                    a.id.as_ref()
                        .and_then(Value::as_u64)
                        .and_then(|id| ordered.get_mut(id as usize))
                {
                    *slot = Some(a);
                }
            }
            ordered
                .into_iter()
                .enumerate()
                .map(|(id, a)| {
                    let a = a.ok_or_else(|| {
                        RpcError::Transport(format!("no answer to call {id} of the batch").into())
                    })?;
                    Ok(match (a.error, a.result) {
                        (Some(e), _) => Err(e),
                        (None, Some(r)) => Ok(r.get().to_string()),
                        (None, None) => Err(ErrorObject::owned(
                            -32603,
                            "answer without result or error",
                            None::<()>,
                        )),
                    })
                })
                .collect::<std::result::Result<Vec<_>, RpcError>>()
        })();
        async move {
            let mut ok = 0;
            let mut failed = 0;
            let mut entries = Vec::new();
            for t in texts? {
                match t {
                    Ok(text) => {
                        ok += 1;
                        entries.push(Ok(serde_json::from_str::<R>(&text)?));
                    }
                    Err(e) => {
                        failed += 1;
                        entries.push(Err(e));
                    }
                }
            }
            Ok(BatchResponse::new(ok, entries, failed))
        }
    }
}

/// A field that is there, whatever its value (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Box<RawValue>>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

/// Polls `f` on this thread until it is ready.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Parses a VXS amount (`5`, `0.25`, `1.000000001`) into nanoVXS, exactly.
pub fn parse_vxs(s: &str) -> std::result::Result<u128, String> {
    let s = s.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err("empty amount".into());
    }
    if !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("{s:?} is not a decimal amount of VXS"));
    }
    if frac.len() > 9 {
        return Err(format!(
            "{s:?} has more than 9 decimals (1 nanoVXS is 0.000000001 VXS)"
        ));
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| format!("{s:?} is too large"))?
    };
    let frac_nano: u128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}")
            .parse()
            .map_err(|_| format!("bad decimals in {s:?}"))?
    };
    whole
        .checked_mul(NANO_PER_VXS)
        .and_then(|w| w.checked_add(frac_nano))
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Formats nanoVXS as VXS with trailing zeros trimmed.
pub fn format_vxs(nano: u128) -> String {
    let whole = nano / NANO_PER_VXS;
    let frac = nano % NANO_PER_VXS;
    if frac == 0 {
        format!("{whole} VXS")
    } else {
        let f = format!("{frac:09}");
        format!("{whole}.{} VXS", f.trim_end_matches('0'))
    }
}

/// Reads the `vexidus_runtime_version` section of a blob without executing it.
pub fn runtime_version(
    code: &[u8],
) -> std::result::Result<vexidus_runtime_api::RuntimeVersion, String> {
    use parity_scale_codec::Decode;
    for payload in wasmparser::Parser::new(0).parse_all(code) {
        let payload = payload.map_err(|e| format!("not a WebAssembly module: {e}"))?;
        if let wasmparser::Payload::CustomSection(reader) = payload
            && reader.name() == vexidus_runtime_api::abi::VERSION_SECTION
        {
            return vexidus_runtime_api::RuntimeVersion::decode(&mut reader.data())
                .map_err(|e| format!("the version section does not decode: {e}"));
        }
    }
    Err("the blob has no `vexidus_runtime_version` section".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_result_is_an_answer_and_a_missing_one_is_not() {
        let null: Response =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":1,"result":null}"#).expect("parses");
        assert_eq!(
            null.result.map(|r| r.get().to_string()).as_deref(),
            Some("null")
        );
        let none: Response = serde_json::from_str(r#"{"jsonrpc":"2.0","id":1}"#).expect("parses");
        assert!(none.result.is_none() && none.error.is_none());
    }

    #[test]
    fn vxs_amounts_parse_exactly() {
        assert_eq!(parse_vxs("5"), Ok(5 * NANO_PER_VXS));
        assert_eq!(parse_vxs("0.25"), Ok(250_000_000));
        assert_eq!(parse_vxs("1.000000001"), Ok(1_000_000_001));
        assert_eq!(parse_vxs(".5"), Ok(500_000_000));
        assert!(parse_vxs("1.0000000001").is_err());
        assert!(parse_vxs("-1").is_err());
        assert!(parse_vxs("abc").is_err());
        assert!(parse_vxs("").is_err());
        assert_eq!(format_vxs(1_500_000_000), "1.5 VXS");
        assert_eq!(format_vxs(210_000), "0.00021 VXS");
    }
}
