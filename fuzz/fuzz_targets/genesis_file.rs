//! Genesis files (`--genesis FILE`): any bytes give a configuration or an error; a configuration
//! written back as a genesis file reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vexidus_runtime_api::genesis_file::GenesisFile;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = serde_json::from_slice::<GenesisFile>(data) else {
        return;
    };
    let Ok(config) = file.into_config() else {
        return;
    };
    let again = GenesisFile::from_config(&config)
        .into_config()
        .expect("a configuration written as a genesis file reads back");
    assert_eq!(again, config);
});
