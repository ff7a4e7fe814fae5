//! Multisig accounts (operations 64-67): an address that holds funds and sends an operation once
//! `threshold` of its signers approved it.
//!
//! | key | value |
//! | --- | --- |
//! | `msig/count` | `u64` accounts created so far (makes addresses unique) |
//! | `msig/acct/` ‖ address | [`MultiSigAccount`] |
//! | `msig/op/` ‖ address ‖ id (u64 BE) | [`PendingMultiSigOp`] |

use crate::error::ProposalError;
use alloc::{string::String, vec::Vec};
use vexidus_runtime_api::Address;
use vexidus_runtime_api::block::Event;
use vexidus_runtime_api::guest::{Env, read, write};
use vexidus_runtime_api::state::{MultiSigAccount, PendingMultiSigOp};
use vexidus_runtime_api::transaction::Operation;

/// Accounts created so far.
pub const COUNT: &[u8] = b"msig/count";
/// Prefix of accounts.
pub const ACCOUNT_PREFIX: &[u8] = b"msig/acct/";
/// Prefix of pending operations.
pub const OP_PREFIX: &[u8] = b"msig/op/";
/// Most signers of one account.
pub const MAX_SIGNERS: usize = 16;

fn account_key(a: &Address) -> Vec<u8> {
    let mut k = ACCOUNT_PREFIX.to_vec();
    k.extend_from_slice(&a.0);
    k
}

fn op_key(a: &Address, id: u64) -> Vec<u8> {
    let mut k = OP_PREFIX.to_vec();
    k.extend_from_slice(&a.0);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The account at `address`.
pub fn account(env: &mut (impl Env + ?Sized), address: &Address) -> Option<MultiSigAccount> {
    read(env, &account_key(address))
}

/// A pending operation.
pub fn pending(
    env: &mut (impl Env + ?Sized),
    multisig: &Address,
    id: u64,
) -> Option<PendingMultiSigOp> {
    read(env, &op_key(multisig, id))
}

/// Whether a multisig account may send `op`. Operations that need a signing key of their own
/// (validator duties, upgrade authority) or that would nest multisig approvals are refused.
pub fn allowed(op: &Operation) -> bool {
    matches!(
        op,
        Operation::Transfer { .. }
            | Operation::Delegate { .. }
            | Operation::Undelegate { .. }
            | Operation::CreateProposal { .. }
            | Operation::ExecuteProposal { .. }
            | Operation::CancelProposal { .. }
    )
}

/// Operation 64: returns the new account's address.
pub fn create(
    env: &mut (impl Env + ?Sized),
    sender: Address,
    signers: &[Address],
    threshold: u8,
    label: &str,
    events: &mut Vec<Event>,
) -> Result<Address, ProposalError> {
    let mut sorted = signers.to_vec();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != signers.len() {
        return Err(ProposalError::BadMultiSig {
            why: "signers must be distinct",
        });
    }
    if sorted.is_empty() || sorted.len() > MAX_SIGNERS {
        return Err(ProposalError::BadMultiSig {
            why: "between 1 and 16 signers",
        });
    }
    if threshold == 0 || threshold as usize > sorted.len() {
        return Err(ProposalError::BadMultiSig {
            why: "threshold must be between 1 and the number of signers",
        });
    }
    let count: u64 = read(env, COUNT).unwrap_or(0);
    write(env, COUNT, &(count + 1));
    let mut seed = b"vexidus/multisig/v1".to_vec();
    seed.extend_from_slice(&sender.0);
    seed.extend_from_slice(&count.to_le_bytes());
    let address = Address(env.blake3(&seed));
    let acct = MultiSigAccount {
        signers: sorted,
        threshold,
        label: String::from(label),
        next_id: 0,
    };
    write(env, &account_key(&address), &acct);
    events.push(Event::MultiSigCreated {
        multisig: address,
        threshold,
    });
    Ok(address)
}

fn signer_of(
    env: &mut (impl Env + ?Sized),
    multisig: &Address,
    sender: &Address,
) -> Result<MultiSigAccount, ProposalError> {
    let acct = account(env, multisig).ok_or(ProposalError::UnknownMultiSig {
        multisig: *multisig,
    })?;
    if acct.signers.binary_search(sender).is_err() {
        return Err(ProposalError::NotASigner);
    }
    Ok(acct)
}

/// What an approval decided.
#[derive(Debug)]
pub enum Approval {
    /// Still short of the threshold.
    Pending,
    /// Threshold reached: the caller runs this operation as the multisig account now.
    Execute(Operation),
}

fn settle(
    env: &mut (impl Env + ?Sized),
    multisig: &Address,
    id: u64,
    acct: &MultiSigAccount,
    op: PendingMultiSigOp,
    events: &mut Vec<Event>,
) -> Approval {
    if op.approvals.len() >= acct.threshold as usize {
        env.remove(&op_key(multisig, id));
        events.push(Event::MultiSigExecuted {
            multisig: *multisig,
            proposal_id: id,
        });
        Approval::Execute(op.op)
    } else {
        write(env, &op_key(multisig, id), &op);
        Approval::Pending
    }
}

/// Operation 65: the proposer's approval counts at once.
pub fn propose(
    env: &mut (impl Env + ?Sized),
    sender: Address,
    multisig: &Address,
    op: &Operation,
    events: &mut Vec<Event>,
) -> Result<Approval, ProposalError> {
    let mut acct = signer_of(env, multisig, &sender)?;
    if !allowed(op) {
        return Err(ProposalError::NotForMultiSig { op: op.name() });
    }
    let id = acct.next_id;
    acct.next_id += 1;
    write(env, &account_key(multisig), &acct);
    events.push(Event::MultiSigProposed {
        multisig: *multisig,
        proposal_id: id,
    });
    events.push(Event::MultiSigApproval {
        multisig: *multisig,
        proposal_id: id,
        signer: sender,
        approve: true,
        approvals: 1,
    });
    let pending = PendingMultiSigOp {
        op: op.clone(),
        proposer: sender,
        approvals: alloc::vec![sender],
    };
    Ok(settle(env, multisig, id, &acct, pending, events))
}

/// Operation 66.
pub fn approve(
    env: &mut (impl Env + ?Sized),
    sender: Address,
    multisig: &Address,
    id: u64,
    events: &mut Vec<Event>,
) -> Result<Approval, ProposalError> {
    let acct = signer_of(env, multisig, &sender)?;
    let mut op = pending(env, multisig, id).ok_or(ProposalError::UnknownMultiSigOp { id })?;
    let at = match op.approvals.binary_search(&sender) {
        Ok(_) => return Err(ProposalError::AlreadyApproved),
        Err(at) => at,
    };
    op.approvals.insert(at, sender);
    events.push(Event::MultiSigApproval {
        multisig: *multisig,
        proposal_id: id,
        signer: sender,
        approve: true,
        approvals: op.approvals.len() as u8,
    });
    Ok(settle(env, multisig, id, &acct, op, events))
}

/// Operation 67.
pub fn revoke(
    env: &mut (impl Env + ?Sized),
    sender: Address,
    multisig: &Address,
    id: u64,
    events: &mut Vec<Event>,
) -> Result<(), ProposalError> {
    signer_of(env, multisig, &sender)?;
    let mut op = pending(env, multisig, id).ok_or(ProposalError::UnknownMultiSigOp { id })?;
    let at = op
        .approvals
        .binary_search(&sender)
        .map_err(|_| ProposalError::NotApproved)?;
    op.approvals.remove(at);
    events.push(Event::MultiSigApproval {
        multisig: *multisig,
        proposal_id: id,
        signer: sender,
        approve: false,
        approvals: op.approvals.len() as u8,
    });
    write(env, &op_key(multisig, id), &op);
    Ok(())
}
