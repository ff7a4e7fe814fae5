//! The executor refuses or contains bad blobs, each with its own error, and stays usable.
//! Hand-written `wat` modules stand in for hostile runtimes.

use parity_scale_codec::Encode;
use vexidus_executor::{BlobError, ExecError, Executor, MemoryExt};
use vexidus_runtime_api::abi::{self, Query, QueryResponse};
use vexidus_tests::wat_runtime::{runtime_wat, valid, version, with_section};

fn call_query(ex: &Executor, code: &[u8]) -> Result<Vec<u8>, ExecError> {
    let proto = ex.prototype(code)?;
    let mut ext = MemoryExt::default();
    ex.call_raw(
        &proto,
        abi::QUERY,
        &Query::ChainId.encode(),
        &mut ext,
        10_000_000,
    )
    .map(|o| o.output)
}

fn assert_still_works(ex: &Executor) {
    let proto = ex
        .prototype(vexidus_genesis::GENESIS_RUNTIME)
        .expect("the real runtime compiles");
    let mut ext = MemoryExt::default();
    ext.map
        .insert(b":chain_id".to_vec(), "unharmed".to_string().encode());
    let r: Result<QueryResponse, String> = ex
        .call(&proto, abi::QUERY, &Query::ChainId, &mut ext, 100_000_000)
        .expect("call");
    assert_eq!(r, Ok(QueryResponse::ChainId("unharmed".into())));
}

#[test]
fn invalid_wasm_is_refused() {
    let ex = Executor::new(None);
    match ex.prototype(b"\0asm but not really") {
        Err(ExecError::Blob(BlobError::InvalidWasm(msg))) => assert!(!msg.is_empty()),
        other => panic!("expected invalid wasm, got {other:?}"),
    }
    assert_still_works(&ex);
}

#[test]
fn missing_version_section_is_refused() {
    let ex = Executor::new(None);
    let code = runtime_wat("", "(memory 1)", "(i64.const 0)", None);
    assert!(matches!(
        ex.prototype(&code),
        Err(ExecError::Blob(BlobError::MissingVersion))
    ));
    let garbled = with_section(code, abi::VERSION_SECTION, &[0xff]);
    assert!(matches!(
        ex.prototype(&garbled),
        Err(ExecError::Blob(BlobError::BadVersion(_)))
    ));
    assert_still_works(&ex);
}

#[test]
fn unsupported_abi_version_is_refused() {
    let code = with_section(
        runtime_wat("", "(memory 1)", "(i64.const 0)", None),
        abi::VERSION_SECTION,
        &version(1, 99),
    );
    assert!(matches!(
        Executor::check_blob(&code, usize::MAX),
        Err(BlobError::UnsupportedAbi { found: 99, .. })
    ));
}

#[test]
fn missing_entry_point_is_refused() {
    let ex = Executor::new(None);
    let code = with_section(
        runtime_wat("", "(memory 1)", "(i64.const 0)", Some(abi::MIGRATE)),
        abi::VERSION_SECTION,
        &version(1, 1),
    );
    match ex.prototype(&code) {
        Err(ExecError::Blob(BlobError::MissingExport(name))) => assert_eq!(name, abi::MIGRATE),
        other => panic!("expected a missing export, got {other:?}"),
    }
    assert_still_works(&ex);
}

#[test]
fn unknown_host_import_is_refused() {
    let ex = Executor::new(None);
    let import = r#"(import "vexidus" "clock_now_v1" (func (result i64)))"#;
    let code = with_section(
        runtime_wat(import, "(memory 1)", "(i64.const 0)", None),
        abi::VERSION_SECTION,
        &version(1, 1),
    );
    match ex.prototype(&code) {
        Err(ExecError::Blob(BlobError::UnknownImport { module, name })) => {
            assert_eq!(
                (module.as_str(), name.as_str()),
                ("vexidus", "clock_now_v1")
            )
        }
        other => panic!("expected an unknown import, got {other:?}"),
    }
    // A known name with the wrong signature is refused too.
    let import = r#"(import "vexidus" "blake3_v1" (func (param i32)))"#;
    let code = with_section(
        runtime_wat(import, "(memory 1)", "(i64.const 0)", None),
        abi::VERSION_SECTION,
        &version(1, 1),
    );
    assert!(matches!(
        ex.prototype(&code),
        Err(ExecError::Blob(BlobError::ImportSignature { .. }))
    ));
    assert_still_works(&ex);
}

/// A `v128` value live across a call costs the native stack 16 bytes per call site where the
/// stack limit counts one slot, so SIMD is refused at the door rather than trusted.
#[test]
fn a_runtime_using_simd_is_refused() {
    let ex = Executor::new(None);
    let simd = "(func (result i32) (i32x4.extract_lane 0 (v128.const i32x4 1 2 3 4)))";
    let code = with_section(
        runtime_wat(simd, "(memory 1)", "(i64.const 0)", None),
        abi::VERSION_SECTION,
        &version(1, 1),
    );
    match ex.prototype(&code) {
        Err(ExecError::Blob(BlobError::InvalidWasm(msg))) => {
            assert!(msg.contains("SIMD"), "the refusal names SIMD: {msg}")
        }
        other => panic!("expected SIMD to be refused, got {other:?}"),
    }
    assert_still_works(&ex);
}

#[test]
fn a_trap_is_contained() {
    let ex = Executor::new(None);
    match call_query(&ex, &valid("(unreachable)")) {
        Err(ExecError::Trap { entry, reason }) => {
            assert_eq!(entry, abi::QUERY);
            assert!(reason.contains("unreachable"), "{reason}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_still_works(&ex);
}

#[test]
fn an_endless_loop_runs_out_of_fuel_deterministically() {
    let ex = Executor::new(None);
    let code = valid("(loop (br 0)) (i64.const 0)");
    let first = call_query(&ex, &code);
    let second = call_query(&ex, &code);
    assert!(
        matches!(
            first,
            Err(ExecError::OutOfFuel {
                limit: 10_000_000,
                ..
            })
        ),
        "{first:?}"
    );
    assert_eq!(first, second);
    assert_still_works(&ex);
}

#[test]
fn a_memory_bomb_is_stopped() {
    let ex = Executor::new(None);
    // Declared beyond the limit: refused before running.
    let huge = with_section(
        runtime_wat("", "(memory 60000)", "(i64.const 0)", None),
        abi::VERSION_SECTION,
        &version(1, 1),
    );
    assert!(matches!(
        ex.prototype(&huge),
        Err(ExecError::Blob(BlobError::MemoryTooLarge {
            pages: 60000,
            ..
        }))
    ));
    // Grown at run time: the growth past the limit traps.
    let grow = valid(
        "(loop (br_if 0 (i32.ne (memory.grow (i32.const 256)) (i32.const -1)))) (i64.const 0)",
    );
    match call_query(&ex, &grow) {
        Err(ExecError::MemoryLimit { entry, limit_bytes }) => {
            assert_eq!(entry, abi::QUERY);
            assert_eq!(limit_bytes, vexidus_executor::MEMORY_LIMIT_BYTES);
        }
        other => panic!("expected the memory limit, got {other:?}"),
    }
    assert_still_works(&ex);
}

#[test]
fn a_result_outside_memory_is_refused() {
    let ex = Executor::new(None);
    // ptr 0xffff0000, len 0x1000: far outside one page.
    match call_query(&ex, &valid("(i64.const 0x00001000ffff0000)")) {
        Err(ExecError::BadOutput { reason, .. }) => {
            assert!(reason.contains("outside guest memory"), "{reason}")
        }
        other => panic!("expected a bad output, got {other:?}"),
    }
}

#[test]
fn the_real_runtime_passes_the_checks() {
    let v = Executor::check_blob(vexidus_genesis::GENESIS_RUNTIME, 4 * 1024 * 1024).expect("valid");
    assert_eq!(
        (v.spec_name.as_str(), v.spec_version, v.abi_version),
        ("vexidus", 2, 1)
    );
    assert!(matches!(
        Executor::check_blob(vexidus_genesis::GENESIS_RUNTIME, 1024),
        Err(BlobError::TooLarge { limit: 1024, .. })
    ));
}

/// A `vex_query` body that reports what the instance looks like when the call starts, then
/// changes all of it: the exported global `$g` (7 at instantiation), a byte of the data segment
/// at 2048 (1), two zero bytes on other pages and the memory's size, written as the result at
/// 4096; then sets `$g` to 99 and overwrites those bytes. It traps at the end if the input's
/// first byte is not 0, leaving its changes behind.
const REPORT_THEN_SCRIBBLE: &str = r#"
    (i32.store (i32.const 4096) (global.get $g))
    (i32.store8 (i32.const 4100) (i32.load8_u (i32.const 2048)))
    (i32.store8 (i32.const 4101) (i32.load8_u (i32.const 3000)))
    (i32.store8 (i32.const 4102) (i32.load8_u (i32.const 40000)))
    (i32.store8 (i32.const 4103) (memory.size))
    (global.set $g (i32.const 99))
    (i32.store8 (i32.const 2048) (i32.const 255))
    (i32.store8 (i32.const 3000) (i32.const 238))
    (i32.store8 (i32.const 40000) (i32.const 17))
    (if (i32.load8_u (local.get 0)) (then unreachable))
    (i64.or (i64.shl (i64.const 8) (i64.const 32)) (i64.const 4096))"#;

/// What [`REPORT_THEN_SCRIBBLE`] reports in a fresh instance.
const FRESH_REPORT: [u8; 8] = [7, 0, 0, 0, 1, 0, 0, 1];

fn module(fields: &str, memory: &str, query_body: &str) -> Vec<u8> {
    with_section(
        runtime_wat(fields, memory, query_body, None),
        abi::VERSION_SECTION,
        &version(1, 1),
    )
}

fn query_raw(
    ex: &Executor,
    proto: &vexidus_executor::Prototype,
    input: &[u8],
) -> Result<Vec<u8>, ExecError> {
    ex.call_raw(
        proto,
        abi::QUERY,
        input,
        &mut MemoryExt::default(),
        10_000_000,
    )
    .map(|o| o.output)
}

#[test]
fn a_reused_instance_starts_every_call_as_a_fresh_one() {
    let ex = Executor::new(None);
    let code = module(
        r#"(global $g (export "g") (mut i32) (i32.const 7))"#,
        r#"(memory 1) (data (i32.const 2048) "\01")"#,
        REPORT_THEN_SCRIBBLE,
    );
    let proto = ex.prototype(&code).expect("compiles");
    // `calls` calls, each seeing a fresh instance; then `reuses` calls so far reused one.
    let fresh_calls = |calls: usize, reuses: u64, why: &str| {
        for _ in 0..calls {
            assert_eq!(query_raw(&ex, &proto, &[0]).expect("call"), FRESH_REPORT);
        }
        assert_eq!(proto.instance_reuse(), Ok(reuses), "{why}");
    };
    fresh_calls(0, 0, "nothing ran yet");
    fresh_calls(3, 2, "the second and third calls reused the first");
    // A call that traps after scribbling: its instance is dropped, not restored.
    assert!(matches!(
        query_raw(&ex, &proto, &[1]),
        Err(ExecError::Trap { .. })
    ));
    assert_eq!(proto.instance_reuse(), Ok(3));
    fresh_calls(2, 4, "a new instance, then it again");
}

/// A `vex_query` body that reports one byte of each of the pages 2 to 9 (at offset 100), all
/// zero in a fresh instance, then writes 9 into the one of them the input's first byte picks.
const REPORT_THEN_WRITE_ONE_PAGE: &str = r#"
    (local $p i32)
    (local.set $p (i32.const 0))
    (loop $each
      (i32.store8
        (i32.add (i32.const 4096) (local.get $p))
        (i32.load8_u (i32.add (i32.const 8292) (i32.mul (local.get $p) (i32.const 4096)))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br_if $each (i32.lt_u (local.get $p) (i32.const 8))))
    (i32.store8
      (i32.add (i32.const 8292) (i32.mul (i32.load8_u (local.get 0)) (i32.const 4096)))
      (i32.const 9))
    (i64.or (i64.shl (i64.const 8) (i64.const 32)) (i64.const 4096))"#;

/// Most restores skip the page-table scan (no page fault since the last one), and a call that
/// writes a page no earlier call wrote is still undone: the fault it takes makes its restore
/// scan. In debug builds every restore also scans and checks the skipped ones against it.
#[test]
fn a_restore_without_a_scan_still_undoes_a_newly_written_page() {
    let ex = Executor::new(None);
    let code = module("", "(memory 1)", REPORT_THEN_WRITE_ONE_PAGE);
    let proto = ex.prototype(&code).expect("compiles");
    let fresh = [0u8; 8];
    for _ in 0..20 {
        assert_eq!(query_raw(&ex, &proto, &[0]).expect("call"), fresh);
    }
    assert_eq!(proto.instance_reuse(), Ok(19));
    let skipped = proto.restores_without_scan().expect("reused");
    assert!(
        skipped >= 1,
        "19 restores after calls that wrote the same pages, {skipped} without a scan"
    );
    // Each page in turn is written for the first time, then by every later call of that kind.
    for round in 0..3 {
        for page in 0..8u8 {
            assert_eq!(
                query_raw(&ex, &proto, &[page]).expect("call"),
                fresh,
                "round {round}: a call before the one writing page {page} left something"
            );
        }
    }
    assert_eq!(proto.instance_reuse(), Ok(43));
}

#[test]
fn a_module_whose_state_the_host_cannot_restore_gets_a_new_instance_per_call() {
    let ex = Executor::new(None);
    // A mutable global the host cannot reach.
    let hidden = module(
        "(global $g (mut i32) (i32.const 7))",
        r#"(memory 1) (data (i32.const 2048) "\01")"#,
        REPORT_THEN_SCRIBBLE,
    );
    let proto = ex.prototype(&hidden).expect("compiles");
    let why = proto.instance_reuse().expect_err("not reused");
    assert!(why.contains("mutable global 0 is not exported"), "{why}");
    for _ in 0..3 {
        assert_eq!(query_raw(&ex, &proto, &[0]).expect("call"), FRESH_REPORT);
    }
    // A table the code changes.
    let table = module(
        "(table 1 funcref) (func $f) (elem declare func $f)",
        "(memory 1)",
        "(table.set 0 (i32.const 0) (ref.func $f)) (i64.const 0)",
    );
    let proto = ex.prototype(&table).expect("compiles");
    let why = proto.instance_reuse().expect_err("not reused");
    assert!(why.contains("table.set"), "{why}");
    // A start function.
    let start = module("(func $s) (start $s)", "(memory 1)", "(i64.const 0)");
    let proto = ex.prototype(&start).expect("compiles");
    let why = proto.instance_reuse().expect_err("not reused");
    assert!(why.contains("start function"), "{why}");
}

#[test]
fn a_call_that_grows_memory_or_writes_much_of_it_leaves_its_instance_behind() {
    let ex = Executor::new(None);
    let grows = module(
        "",
        "(memory 1)",
        "(i32.store8 (i32.const 4096) (memory.size))
         (drop (memory.grow (i32.const 1)))
         (i32.store8 (i32.const 70000) (i32.const 5))
         (i64.or (i64.shl (i64.const 1) (i64.const 32)) (i64.const 4096))",
    );
    let proto = ex.prototype(&grows).expect("compiles");
    for _ in 0..3 {
        assert_eq!(query_raw(&ex, &proto, &[0]).expect("call"), [1]);
    }
    assert_eq!(
        proto.instance_reuse(),
        Ok(0),
        "a grown memory is not restored"
    );

    // 128 KiB written: more than is worth copying back after every later call.
    let dirty = module(
        "",
        "(memory 4)",
        "(i32.store8 (i32.const 4096) (i32.load8_u (i32.const 100000)))
         (memory.fill (i32.const 65536) (i32.const 170) (i32.const 131072))
         (i64.or (i64.shl (i64.const 1) (i64.const 32)) (i64.const 4096))",
    );
    let proto = ex.prototype(&dirty).expect("compiles");
    for _ in 0..3 {
        assert_eq!(query_raw(&ex, &proto, &[0]).expect("call"), [0]);
    }
    assert_eq!(proto.instance_reuse(), Ok(0), "a dirty instance is dropped");
    assert_still_works(&ex);
}

#[test]
fn the_real_runtime_runs_in_reused_instances() {
    let ex = Executor::new(None);
    let proto = ex
        .prototype(vexidus_genesis::GENESIS_RUNTIME)
        .expect("the real runtime compiles");
    assert_eq!(proto.instance_reuse(), Ok(0));
    assert_still_works(&ex);
    assert_still_works(&ex);
    assert_eq!(proto.instance_reuse(), Ok(1));
}

/// Each thread restores its instances through a page-map descriptor of its own: calls on new
/// threads, several at once, still run in reused instances and see nothing of earlier calls.
#[test]
fn threads_each_reuse_their_instances() {
    let ex = Executor::new(None);
    let proto = ex
        .prototype(vexidus_genesis::GENESIS_RUNTIME)
        .expect("the real runtime compiles");
    let before = proto
        .instance_reuse()
        .expect("the real runtime is restorable here");
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..4 {
                    assert_still_works(&ex);
                }
            });
        }
    });
    // Each thread's first call may find no idle instance of its own; its next three reuse one.
    let reused = proto.instance_reuse().expect("still restorable") - before;
    assert!(
        reused >= 9,
        "{reused} of 12 calls on three threads reused an instance"
    );
}

#[test]
fn idle_instances_of_many_runtimes_never_take_every_instance_slot() {
    use vexidus_executor::warm::MAX_LIVE;
    let ex = Executor::new(None);
    // More runtimes, each keeping an idle instance, than the engine has instance slots (256):
    // every call must still find a slot, warm or fresh.
    let protos: Vec<_> = (0..300)
        .map(|i| {
            let code = with_section(
                runtime_wat("", "(memory 1)", "(i64.const 0)", None),
                abi::VERSION_SECTION,
                &version(i, 1),
            );
            ex.prototype(&code).expect("compiles")
        })
        .collect();
    for proto in &protos {
        for _ in 0..2 {
            query_raw(&ex, proto, &[0]).expect("the call finds an instance slot");
        }
    }
    let warm = protos
        .iter()
        .filter(|p| p.instance_reuse() == Ok(1))
        .count();
    assert!(
        (1..=MAX_LIVE).contains(&warm),
        "{warm} runtimes reused an instance; at most {MAX_LIVE} may be warm at once"
    );
}

/// A runtime whose `vex_query` adds `amount` to the block total `name` twice and returns the
/// total (16 bytes at 4096).
fn block_total_module(name: &str, amount: u8) -> Vec<u8> {
    let imports = r#"
        (import "vexidus" "block_total_add_v1" (func $add (param i32 i32 i32)))
        (import "vexidus" "block_total_v1" (func $total (param i32 i32 i32)))"#;
    let memory = format!(
        r#"(memory 1) (data (i32.const 2048) "{name}") (data (i32.const 3072) "\{amount:02x}")"#
    );
    let len = name.len();
    let body = format!(
        "(call $add (i32.const 2048) (i32.const {len}) (i32.const 3072))
         (call $add (i32.const 2048) (i32.const {len}) (i32.const 3072))
         (call $total (i32.const 2048) (i32.const {len}) (i32.const 4096))
         (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 4096))"
    );
    module(imports, &memory, &body)
}

struct NoState;
impl vexidus_storage::StateBackend for NoState {
    fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }
    fn next_key(&self, _: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }
}

#[test]
fn block_totals_add_up_and_are_read_in_end_block_only() {
    use vexidus_storage::overlay::StateOverlay;
    let ex = Executor::new(None);
    let proto = ex
        .prototype(&block_total_module("fees", 5))
        .expect("a runtime importing the block-total functions passes the checks");
    let mut overlay = StateOverlay::new(&NoState);
    // What an earlier transaction of the block added.
    vexidus_executor::Externalities::add_to_total(&mut overlay, b"fees", 90).expect("adds");
    overlay.commit_transaction();
    let run = |overlay: &mut StateOverlay<'_>| {
        ex.call_raw(&proto, abi::QUERY, &[], overlay, 10_000_000)
            .map(|o| o.output)
    };
    // As end_block: 90 + 5 + 5.
    overlay.set_totals_readable(true);
    let out = run(&mut overlay).expect("end_block reads the total");
    assert_eq!(out, 100u128.to_le_bytes());
    // As a transaction: the read traps, with the reason.
    overlay.discard_transaction();
    overlay.set_totals_readable(false);
    match run(&mut overlay) {
        Err(ExecError::Trap { reason, .. }) => assert!(
            reason.contains(vexidus_executor::TOTALS_IN_END_BLOCK_ONLY),
            "{reason}"
        ),
        other => panic!("expected a trap, got {other:?}"),
    }
    // Outside a block (no totals at all) adding traps too.
    match call_query(&ex, &block_total_module("fees", 5)) {
        Err(ExecError::Trap { reason, .. }) => assert!(
            reason.contains(vexidus_executor::NO_BLOCK_TOTALS),
            "{reason}"
        ),
        other => panic!("expected a trap, got {other:?}"),
    }
    // A name longer than the ABI allows is refused.
    let long = "n".repeat(abi::MAX_TOTAL_NAME + 1);
    overlay.set_totals_readable(true);
    let proto = ex.prototype(&block_total_module(&long, 1)).expect("checks");
    match ex.call_raw(&proto, abi::QUERY, &[], &mut overlay, 10_000_000) {
        Err(ExecError::Trap { reason, .. }) => {
            assert!(reason.contains("at most 64 allowed"), "{reason}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_still_works(&ex);
}

/// A `vex_query` whose input is a depth N (u32 LE): it recurses N calls deep through a function
/// with a few locals, then returns.
fn recursion_module() -> Vec<u8> {
    module(
        r#"(func $rec (param $n i32) (result i32) (local i64 i64 i64 i64)
             (if (result i32) (i32.eqz (local.get $n))
               (then (i32.const 0))
               (else (i32.add (call $rec (i32.sub (local.get $n) (i32.const 1)))
                              (i32.const 1)))))"#,
        "(memory 1)",
        "(drop (call $rec (i32.load (local.get 0)))) (i64.const 0)",
    )
}

/// The deepest recursion that does not trap, found by bisection.
fn deepest(ex: &Executor, proto: &vexidus_executor::Prototype) -> u32 {
    let (mut ok, mut traps) = (0u32, 1u32 << 22);
    while traps - ok > 1 {
        let mid = ok + (traps - ok) / 2;
        match query_raw(ex, proto, &mid.to_le_bytes()) {
            Ok(_) => ok = mid,
            Err(ExecError::Trap { reason, .. }) => {
                assert!(reason.contains("stack limit reached"), "{reason}");
                traps = mid;
            }
            Err(e) => panic!("depth {mid}: {e:?}"),
        }
    }
    ok
}

/// The depth at which deep recursion traps is part of consensus: a block must trap on every
/// node or on none. It is counted in the module (`executor::stack_limit`), in slots the wasm
/// defines, so it is the same on every thread, in fresh and reused instances, and on every
/// machine and build: `$rec` costs 16 slots (five locals with its parameter, two operands, one
/// call site, eight for the frame), so it fits the limit's slots over 16 times, less the
/// entry's few frames.
#[test]
fn deep_recursion_traps_at_one_depth_everywhere() {
    let ex = Executor::new(None);
    let proto = ex.prototype(&recursion_module()).expect("compiles");
    let here = deepest(&ex, &proto);
    let elsewhere =
        std::thread::scope(|s| s.spawn(|| deepest(&ex, &proto)).join().expect("thread"));
    assert_eq!(here, elsewhere);
    let fresh = Executor::new(None);
    let again = fresh.prototype(&recursion_module()).expect("compiles");
    assert_eq!(deepest(&fresh, &again), here);
    let frames = vexidus_executor::stack_limit::STACK_LIMIT_SLOTS / 16;
    assert!(
        here < frames && here + 8 > frames,
        "{here} calls deep, {frames} frames fit"
    );
    println!("deep recursion traps past {here} calls");
    assert!(here > 1_000, "{here}");
}
