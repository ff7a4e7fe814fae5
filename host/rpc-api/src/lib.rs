//! The node's JSON-RPC interface (SPEC §9): one API trait, `VexApi`, that the node serves
//! ([`VexApiServer`]) and clients call ([`VexApiClient`], over any jsonrpsee transport), its
//! subscriptions ([`VexSubscriptionApiServer`], [`VexSubscriptionApiClient`]; WebSocket
//! only), and the serde types of every parameter and answer.
//!
//! Errors say what is wrong. Codes: `-32602` ([`INVALID_PARAMS`]) for parameters that do not
//! parse (the `data` says why), [`RATE_LIMITED`] when the rate limit is hit, [`TX_REFUSED`]
//! for a transaction refused at ingress (the message gives the reason), [`NODE_ERROR`] for a
//! node-side failure.

#![forbid(unsafe_code)]

pub mod hex;
pub mod params;
pub mod types;

pub use hex::H256;
pub use params::{BlockId, Full, MAX_BATCH_TRANSACTIONS, RawTransaction, RawTransactions};
pub use types::*;

use jsonrpsee::core::{RpcResult, SubscriptionResult};
use jsonrpsee::proc_macros::rpc;
use vexidus_runtime_api::Address;

/// Parameters that do not parse.
pub const INVALID_PARAMS: i32 = -32602;
/// Rate limit hit.
pub const RATE_LIMITED: i32 = -32005;
/// Transaction refused at ingress.
pub const TX_REFUSED: i32 = 1001;
/// Node-side failure.
pub const NODE_ERROR: i32 = 1002;

/// Reads and writes of a node.
#[rpc(server, client)]
pub trait VexApi {
    /// Head, finality, pool and runtime of the node.
    #[method(name = "vex_getStatus")]
    fn status(&self) -> RpcResult<Status>;

    /// A block by height, hash, `"latest"` or `"finalized"`; `full` (default true) false
    /// lists transaction hashes only, without bodies or receipts. A block by hash may be on a
    /// fork; its receipts are those of its own execution. `None` for an unknown block.
    #[method(name = "vex_getBlock")]
    fn block(&self, id: BlockId, full: Option<Full>) -> RpcResult<Option<BlockAnswer>>;

    /// A transaction waiting in the pool or included in a canonical block; `None` when
    /// neither.
    #[method(name = "vex_getTransaction")]
    fn transaction(&self, hash: H256) -> RpcResult<Option<TransactionStatus>>;

    /// Balance and next nonce of an account (zero for one never seen).
    #[method(name = "vex_getAccount")]
    fn account(&self, address: Address) -> RpcResult<AccountView>;

    /// Every registered validator.
    #[method(name = "vex_getValidators")]
    fn validators(&self) -> RpcResult<Vec<ValidatorView>>;

    /// One validator; `None` when the address is none.
    #[method(name = "vex_getValidator")]
    fn validator(&self, address: Address) -> RpcResult<Option<ValidatorView>>;

    /// The governed parameters at the head.
    #[method(name = "vex_getParameters")]
    fn parameters(&self) -> RpcResult<ParametersView>;

    /// A governance proposal and its tally; `None` for an unknown id.
    #[method(name = "vex_getProposal")]
    fn proposal(&self, id: u64) -> RpcResult<Option<ProposalAnswer>>;

    /// The active upgrade plan and its tally; `None` when there is none.
    #[method(name = "vex_getUpgradePlan")]
    fn upgrade_plan(&self) -> RpcResult<Option<PlanAnswer>>;

    /// This node's preparation for the pending runtime plan; `None` when none is pending.
    #[method(name = "vex_getUpgradeReadiness")]
    fn upgrade_readiness(&self) -> RpcResult<Option<ReadinessView>>;

    /// The running runtime.
    #[method(name = "vex_getRuntimeVersion")]
    fn runtime_version(&self) -> RpcResult<RuntimeInfo>;

    /// Connected and banned peers.
    #[method(name = "vex_getPeers")]
    fn peers(&self) -> RpcResult<PeersView>;

    /// Admits a signed transaction to the pool; returns its hash.
    #[method(name = "vex_submitTransaction")]
    fn submit_transaction(&self, tx: RawTransaction) -> RpcResult<H256>;

    /// Admits up to [`MAX_BATCH_TRANSACTIONS`] transactions; one outcome each, in order.
    #[method(name = "vex_submitTransactions")]
    fn submit_transactions(&self, txs: RawTransactions) -> RpcResult<Vec<SubmitOutcome>>;

    /// As `vex_submitTransaction`, for `ScheduleUpgrade` (46) operations only.
    #[method(name = "vex_scheduleUpgrade")]
    fn schedule_upgrade(&self, tx: RawTransaction) -> RpcResult<H256>;

    /// As `vex_submitTransaction`, for `CancelUpgrade` (47) operations only.
    #[method(name = "vex_cancelUpgrade")]
    fn cancel_upgrade(&self, tx: RawTransaction) -> RpcResult<H256>;

    /// As `vex_submitTransaction`, for `VoteUpgrade` (48) operations only.
    #[method(name = "vex_voteUpgrade")]
    fn vote_upgrade(&self, tx: RawTransaction) -> RpcResult<H256>;

    /// As `vex_submitTransaction`, for `ClaimRewards` (4) operations only.
    #[method(name = "vex_claimRewards")]
    fn claim_rewards(&self, tx: RawTransaction) -> RpcResult<H256>;

    /// As `vex_submitTransaction`, for `Unjail` (5) operations only.
    #[method(name = "vex_unjail")]
    fn unjail(&self, tx: RawTransaction) -> RpcResult<H256>;
}

/// What a node pushes over WebSocket. A slow subscriber skips what it missed.
#[rpc(server, client)]
pub trait VexSubscriptionApi {
    /// Every new head.
    #[subscription(name = "vex_subscribeNewHeads" => "vex_newHead", unsubscribe = "vex_unsubscribeNewHeads", item = HeaderView)]
    async fn subscribe_new_heads(&self) -> SubscriptionResult;

    /// Every block made irreversible, in height order.
    #[subscription(name = "vex_subscribeFinalized" => "vex_finalized", unsubscribe = "vex_unsubscribeFinalized", item = FinalizedBlock)]
    async fn subscribe_finalized(&self) -> SubscriptionResult;

    /// The active upgrade plan now and whenever it changes (`null` once there is none).
    #[subscription(name = "vex_subscribeUpgrade" => "vex_upgrade", unsubscribe = "vex_unsubscribeUpgrade", item = Option<PlanAnswer>)]
    async fn subscribe_upgrade(&self) -> SubscriptionResult;
}
