//! A signed transaction as RPC, gossip and sync hand it to the node: Borsh under the size cap.
//! Whatever decodes must round-trip through Borsh, JSON (the RPC's readable form) and SCALE
//! (what the host hands the runtime), and hashing and checking its signature must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parity_scale_codec::{Decode, Encode};
use vexidus_runtime_api::SignedTransaction;
use vexidus_runtime_api::signing;
use vexidus_runtime_api::transaction::MAX_TRANSACTION_BYTES;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_TRANSACTION_BYTES {
        return;
    }
    let Ok(tx) = borsh::from_slice::<SignedTransaction>(data) else {
        return;
    };
    let borsh = borsh::to_vec(&tx).expect("encodes");
    assert_eq!(
        borsh::from_slice::<SignedTransaction>(&borsh).expect("decodes"),
        tx
    );
    let json = serde_json::to_vec(&tx).expect("encodes");
    assert_eq!(
        serde_json::from_slice::<SignedTransaction>(&json).expect("decodes"),
        tx
    );
    let scale = tx.encode();
    assert_eq!(
        SignedTransaction::decode(&mut &scale[..]).expect("decodes"),
        tx
    );
    let _ = signing::transaction_hash(&tx);
    let _ = signing::verify_transaction(&tx);
});
