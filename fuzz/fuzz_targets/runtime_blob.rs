//! The static checks of a runtime blob (SPEC §5), which every node runs on a blob governance
//! proposes before anything compiles it, and the stack-limit instrumentation every node applies
//! to a blob that passed them: any bytes give a version or a refusal, never a panic, and the
//! same verdict twice; a blob that passes is instrumented into a module that still validates,
//! the same bytes twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vexidus_blob::stack_limit;

fuzz_target!(|data: &[u8]| {
    let first = vexidus_blob::check(data, usize::MAX);
    assert_eq!(first, vexidus_blob::check(data, usize::MAX));
    if first.is_ok() {
        let instrumented = stack_limit::instrument(data).expect("a checked blob instruments");
        assert_eq!(Ok(&instrumented), stack_limit::instrument(data).as_ref());
        wasmparser::Validator::new_with_features(vexidus_blob::features())
            .validate_all(&instrumented)
            .expect("the instrumented module validates");
    }
});
