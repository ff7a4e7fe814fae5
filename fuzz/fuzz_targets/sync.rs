//! Sync requests and answers as a node decodes them from a peer, in both encodings; whatever
//! decodes round-trips through both.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vexidus_network::wire::{SyncRequest, SyncResponse, decode, encode, encode_json};

fn round_trip<T>(data: &[u8])
where
    T: borsh::BorshSerialize
        + borsh::BorshDeserialize
        + serde::Serialize
        + for<'de> serde::Deserialize<'de>
        + PartialEq
        + std::fmt::Debug,
{
    if let Ok((message, _)) = decode::<T>(data) {
        let (again, _) = decode::<T>(&encode(&message)).expect("Borsh re-encoding decodes");
        assert_eq!(again, message);
        let (again, _) = decode::<T>(&encode_json(&message)).expect("JSON re-encoding decodes");
        assert_eq!(again, message);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    if which & 1 == 0 {
        round_trip::<SyncRequest>(rest);
    } else {
        round_trip::<SyncResponse>(rest);
    }
});
