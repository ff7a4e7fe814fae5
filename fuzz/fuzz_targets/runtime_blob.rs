//! The static checks of a runtime blob (SPEC §5), which every node runs on a blob governance
//! proposes before anything compiles it: any bytes give a version or a refusal, never a panic,
//! and the same verdict twice.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let first = vexidus_blob::check(data, usize::MAX);
    assert_eq!(first, vexidus_blob::check(data, usize::MAX));
});
