//! Gossip messages (`blocks` and `votes` topics) as the guard decodes them: VX-framed Borsh,
//! or JSON without the magic. Whatever decodes must encode back to a message that decodes to
//! the same value, in both encodings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vexidus_network::wire::{Gossip, decode, encode, encode_json};

fuzz_target!(|data: &[u8]| {
    if let Ok((message, _)) = decode::<Gossip>(data) {
        let (again, _) = decode::<Gossip>(&encode(&message)).expect("Borsh re-encoding decodes");
        assert_eq!(again, message);
        let (again, _) =
            decode::<Gossip>(&encode_json(&message)).expect("JSON re-encoding decodes");
        assert_eq!(again, message);
    }
});
