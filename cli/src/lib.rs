//! The small JSON-RPC client the `vexidus` CLI (and the end-to-end tests) use to talk to a node,
//! plus the helpers that turn operator input into chain values, and `vexidus localnet`.

pub mod localnet;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use vexidus_runtime_api::NANO_PER_VXS;

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node answered with a JSON-RPC error.
    #[error("{message} (RPC error {code})")]
    Rpc {
        /// JSON-RPC error code.
        code: i64,
        /// The node's message.
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

    /// Calls `method` with positional `params`.
    pub fn call(&self, method: &str, params: Value) -> Result<Value> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let transport = |reason: String| ClientError::Transport {
            url: self.url.clone(),
            reason,
        };
        let mut resp = self
            .agent
            .post(&self.url)
            .send_json(&body)
            .map_err(|e| transport(e.to_string()))?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| transport(e.to_string()))?;
        let v: Value = serde_json::from_str(&text).map_err(|_| {
            transport(format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            ))
        })?;
        if let Some(e) = v.get("error") {
            return Err(ClientError::Rpc {
                code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error")
                    .to_string(),
            });
        }
        Ok(v.get("result").cloned().unwrap_or(Value::Null))
    }

    /// `vex_getStatus`.
    pub fn status(&self) -> Result<Value> {
        self.call("vex_getStatus", json!([]))
    }

    /// Submits a Borsh-encoded signed transaction; returns its hash.
    pub fn submit(&self, tx: &vexidus_runtime_api::SignedTransaction) -> Result<String> {
        self.submit_via("vex_submitTransaction", tx)
    }

    /// Submits through a typed write method (`vex_scheduleUpgrade`, …); returns the hash.
    pub fn submit_via(
        &self,
        method: &str,
        tx: &vexidus_runtime_api::SignedTransaction,
    ) -> Result<String> {
        let bytes = borsh_bytes(tx);
        let v = self.call(method, json!([format!("0x{}", hex::encode(bytes))]))?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Polls `vex_getTransaction` until the transaction is included; returns the answer.
    pub fn wait_included(&self, hash: &str, timeout: Duration) -> Result<Value> {
        let started = Instant::now();
        loop {
            let v = self.call("vex_getTransaction", json!([hash]))?;
            if v.get("status").and_then(Value::as_str) == Some("included") {
                return Ok(v);
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

fn borsh_bytes(tx: &vexidus_runtime_api::SignedTransaction) -> Vec<u8> {
    // A transaction always encodes; Borsh only fails on writer errors, and a Vec never fails.
    let mut out = Vec::new();
    let _ = borsh::BorshSerialize::serialize(tx, &mut out);
    out
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
