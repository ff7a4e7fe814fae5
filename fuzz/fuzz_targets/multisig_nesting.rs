//! Structure-aware: transactions built from the fuzzer's bytes with multisig proposals nested
//! to any depth around arbitrary operations. Borsh and JSON must accept exactly the nesting
//! depths up to `MAX_MULTISIG_NESTING` and give back the same transaction, and refuse deeper
//! ones with an error (never by exhausting the stack).
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use vexidus_runtime_api::transaction::{MAX_MULTISIG_NESTING, Operation, Transaction};
use vexidus_runtime_api::{Address, PublicKey, Signature, SignedTransaction};

fn leaf(u: &mut Unstructured<'_>) -> Result<Operation> {
    let address = Address(u.arbitrary()?);
    Ok(match u.int_in_range(0..=4u8)? {
        0 => Operation::Transfer {
            to: address,
            amount: u.arbitrary()?,
        },
        1 => Operation::Delegate {
            validator: address,
            amount: u.arbitrary()?,
        },
        2 => Operation::ApproveMultiSig {
            multisig: address,
            proposal_id: u.arbitrary()?,
        },
        3 => Operation::RevokeMultiSig {
            multisig: address,
            proposal_id: u.arbitrary()?,
        },
        _ => Operation::RegisterValidator {
            stake: u.arbitrary()?,
            commission_bps: u.arbitrary()?,
        },
    })
}

fn transaction(u: &mut Unstructured<'_>) -> Result<(SignedTransaction, usize)> {
    let mut deepest = 0;
    let mut operations = Vec::new();
    for _ in 0..u.int_in_range(1..=4u8)? {
        let depth = usize::from(u.int_in_range(0..=12u8)?);
        let mut op = leaf(u)?;
        for _ in 0..depth {
            op = Operation::ProposeMultiSig {
                multisig: Address(u.arbitrary()?),
                op: Box::new(op),
            };
        }
        deepest = deepest.max(depth);
        operations.push(op);
    }
    let tx = SignedTransaction {
        transaction: Transaction {
            chain_id: u.arbitrary()?,
            sender: PublicKey(u.arbitrary()?),
            nonce: u.arbitrary()?,
            max_gas: u.arbitrary()?,
            valid_until: u.arbitrary()?,
            operations,
        },
        signature: Signature(u.arbitrary()?),
    };
    Ok((tx, deepest))
}

fuzz_target!(|data: &[u8]| {
    let Ok((tx, deepest)) = transaction(&mut Unstructured::new(data)) else {
        return;
    };
    let accepted = deepest <= MAX_MULTISIG_NESTING;
    let borsh = borsh::from_slice::<SignedTransaction>(&borsh::to_vec(&tx).expect("encodes"));
    assert_eq!(
        borsh.is_ok(),
        accepted,
        "Borsh at depth {deepest}: {borsh:?}"
    );
    if let Ok(again) = borsh {
        assert_eq!(again, tx);
    }
    let json =
        serde_json::from_slice::<SignedTransaction>(&serde_json::to_vec(&tx).expect("encodes"));
    assert_eq!(json.is_ok(), accepted, "JSON at depth {deepest}");
    if let Ok(again) = json {
        assert_eq!(again, tx);
    }
});
