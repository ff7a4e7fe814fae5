//! `upgrade-info.json` as vexvisor reads it from the data directory at a halt: any bytes give
//! a plan or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = vexvisor::UpgradeInfo::parse(data, "upgrade-info.json") {
        let _ = info.sha256_hex();
    }
});
