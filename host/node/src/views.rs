//! JSON views of chain data, as RPC answers and subscriptions show them.

use serde_json::{Value, json};
use vexidus_runtime_api::abi::{LivenessView, PlanView, ProposalView};
use vexidus_runtime_api::block::Event;
use vexidus_runtime_api::transaction::{Operation, ProposalKind, UpgradeTarget};
use vexidus_runtime_api::{Block, Hash, Receipt, RuntimeVersion, SignedTransaction, ValidatorInfo};

/// `0x` + lowercase hex.
pub fn hex0x(bytes: impl AsRef<[u8]>) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// JSON of a runtime version plus the code hash.
pub fn version_json(v: &RuntimeVersion, code_hash: &Hash) -> Value {
    json!({
        "spec_name": v.spec_name, "spec_version": v.spec_version, "impl_version": v.impl_version,
        "abi_version": v.abi_version, "code_hash": hex0x(code_hash),
    })
}

/// JSON of an operation.
pub fn operation_json(op: &Operation) -> Value {
    match op {
        Operation::Transfer { to, amount } => {
            json!({ "type": "Transfer", "to": to.to_string(), "amount": amount })
        }
        Operation::RegisterValidator {
            stake,
            commission_bps,
        } => {
            json!({ "type": "RegisterValidator", "stake": stake, "commission_bps": commission_bps })
        }
        Operation::Delegate { validator, amount } => {
            json!({ "type": "Delegate", "validator": validator.to_string(), "amount": amount })
        }
        Operation::Undelegate { validator, amount } => {
            json!({ "type": "Undelegate", "validator": validator.to_string(), "amount": amount })
        }
        other => json!({ "type": other.name(), "discriminant": other.discriminant() }),
    }
}

/// JSON of an event: `{"type": "<Variant>", ...fields}`.
pub fn event_json(e: &Event) -> Value {
    serde_json::to_value(e).unwrap_or(Value::Null)
}

/// JSON of a receipt.
pub fn receipt_json(r: &Receipt) -> Value {
    json!({
        "success": r.success, "error": r.error, "gas_used": r.gas_used, "fee": r.fee,
        "events": r.events.iter().map(event_json).collect::<Vec<_>>(),
    })
}

/// JSON of a transaction.
pub fn transaction_json(tx: &SignedTransaction) -> Value {
    let t = &tx.transaction;
    json!({
        "hash": hex0x(vexidus_runtime_api::signing::transaction_hash(tx)),
        "chain_id": t.chain_id, "sender": t.sender.to_string(), "sender_address": t.sender.address().to_string(),
        "nonce": t.nonce, "max_gas": t.max_gas, "valid_until": t.valid_until,
        "operations": t.operations.iter().map(operation_json).collect::<Vec<_>>(),
    })
}

/// JSON of a block header plus its hash.
pub fn header_json(block: &Block, hash: &Hash) -> Value {
    let h = &block.header;
    json!({
        "hash": hex0x(hash), "height": h.height, "parent_hash": hex0x(h.parent_hash), "timestamp_ms": h.timestamp_ms,
        "proposer": h.proposer.to_string(), "state_root": hex0x(h.state_root),
        "transactions_root": hex0x(h.transactions_root), "receipts_root": hex0x(h.receipts_root),
        "transaction_count": block.transactions.len(),
    })
}

/// JSON of the active upgrade plan and its tally.
pub fn plan_json(v: &PlanView) -> Value {
    let p = &v.plan;
    let target = match &p.target {
        UpgradeTarget::Binary {
            binary_url,
            sha256,
            signature,
        } => json!({
            "type": "binary", "binary_url": binary_url, "sha256": hex::encode(sha256),
            "signature": signature.as_ref().map(hex::encode),
        }),
        UpgradeTarget::Runtime { .. } => json!({
            "type": "runtime", "code_hash": p.code_hash.map(hex0x),
        }),
    };
    json!({
        "name": p.name, "height": p.height, "info_url": p.info_url, "status": p.status.as_str(),
        "scheduled_at": p.scheduled_at, "voting_ends_at": v.voting_ends_at, "target": target,
        "tally": { "approve": v.approve, "reject": v.reject, "total": v.total,
                   "quorum_percent": v.quorum_percent, "votes": p.votes.len() },
        "snapshot": p.snapshot.iter().map(|(a, w)| json!({ "validator": a.to_string(), "weight": w })).collect::<Vec<_>>(),
    })
}

/// JSON of a proposal and its tally.
pub fn proposal_json(v: &ProposalView) -> Value {
    let p = &v.proposal;
    let kind = match &p.kind {
        ProposalKind::ParameterChange { key, value } => {
            json!({ "type": "ParameterChange", "key": key.as_str(), "value": value })
        }
        ProposalKind::TreasurySpend { to, amount } => {
            json!({ "type": "TreasurySpend", "to": to.to_string(), "amount": amount })
        }
        ProposalKind::Text { title, body } => {
            json!({ "type": "Text", "title": title, "body": body })
        }
    };
    let status = if p.executed {
        "executed"
    } else if p.cancelled {
        "cancelled"
    } else if v.passed.is_ok() {
        "passed"
    } else {
        "open"
    };
    json!({
        "id": p.id, "proposer": p.proposer.to_string(), "kind": kind, "created_at": p.created_at,
        "voting_ends_at": v.voting_ends_at, "status": status,
        "not_passed_because": v.passed.as_ref().err(),
        "tally": { "approve": v.approve, "reject": v.reject, "total": v.total, "votes": p.votes.len() },
    })
}

/// JSON of a validator.
pub fn validator_json(v: &ValidatorInfo, live: &LivenessView) -> Value {
    json!({
        "address": v.address.to_string(), "public_key": v.public_key.to_string(), "self_stake": v.self_stake,
        "delegated": v.delegated, "total_stake": v.total_stake(), "commission_bps": v.commission_bps,
        "jailed_until": v.jailed_until, "unclaimed_rewards": v.unclaimed_rewards, "registered_at": v.registered_at,
        "missed_blocks": live.missed_total, "missed_streak": live.missed_streak, "skipped": live.skipped,
    })
}
