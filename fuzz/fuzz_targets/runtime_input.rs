//! The runtime's own input decoding: the SCALE arguments of its entry points
//! (`vex_genesis_build`, `vex_begin_block`, `vex_end_block`, `vex_apply_transaction`,
//! `vex_validate_transaction`, `vex_query`, `vex_migrate`), decoded as the runtime decodes
//! them. Whatever decodes encodes back to bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parity_scale_codec::{Decode, Encode};
use vexidus_runtime_api::GenesisConfig;
use vexidus_runtime_api::abi::{ApplyArgs, BlockContext, MigrateArgs, Query, ValidateArgs};

fn round_trip<T: Decode + Encode + PartialEq + std::fmt::Debug>(mut bytes: &[u8]) {
    if let Ok(value) = T::decode(&mut bytes) {
        let encoded = value.encode();
        assert_eq!(
            T::decode(&mut &encoded[..]).expect("re-encoding decodes"),
            value
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => round_trip::<GenesisConfig>(rest),
        1 => round_trip::<BlockContext>(rest),
        2 => round_trip::<ApplyArgs>(rest),
        3 => round_trip::<ValidateArgs>(rest),
        4 => round_trip::<Query>(rest),
        _ => round_trip::<MigrateArgs>(rest),
    }
});
