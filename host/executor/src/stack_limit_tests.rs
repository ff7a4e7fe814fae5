//! The deterministic stack limit against wasmtime's native one, frame shape by frame shape.

use super::blob::stack_limit::instrument;
use super::{HostState, engine};
use wasmtime::{Instance, Module, Store, Trap};

/// `run(n)` recursing `n` calls deep through `$f`, whose body (in the flat text format)
/// keeps what `shape` describes live across its recursive call.
fn recursion(shape: &Shape) -> Vec<u8> {
    let k = shape.width;
    let mut locals = String::new();
    let (mut before, mut after) = (String::new(), String::new());
    let recurse = if shape.indirect {
        "local.get $n i32.const 1 i32.sub i32.const 0 call_indirect (type $t)"
    } else {
        "local.get $n i32.const 1 i32.sub call $f"
    };
    match shape.kind {
        Kind::Minimal => {}
        Kind::Locals(ty) => {
            for i in 0..k {
                locals += &format!(" (local $l{i} {})", ty.name());
                before += &format!(
                    " local.get $n i32.const {i} i32.add {} local.set $l{i}",
                    ty.widen()
                );
            }
            after += &format!(" local.get $l0 {}", ty.narrow());
            for i in 1..k {
                after += &format!(" local.get $l{i} {} i32.add", ty.narrow());
            }
            after += " i32.add";
        }
        Kind::Operands(ty) => {
            for i in 0..k {
                before += &format!(" local.get $n i32.const {i} i32.add {}", ty.widen());
            }
        }
        Kind::Segments(ty) => {
            // Many values, each live across a call of its own to a leaf, one at a time.
            locals += " (local $acc i32)";
            for i in 0..k {
                before += &format!(
                    " local.get $n i32.const {i} i32.add {from} local.get $n call $leaf drop {to} local.get $acc i32.add local.set $acc",
                    from = ty.widen(),
                    to = ty.narrow()
                );
            }
            after += " local.get $acc i32.add";
        }
        Kind::LocalSegments(ty) => {
            // The same through one local set anew before every call.
            locals += &format!(" (local $acc i32) (local $v {})", ty.name());
            for i in 0..k {
                before += &format!(
                    " local.get $n i32.const {i} i32.add {from} local.set $v local.get $n call $leaf drop local.get $v {to} local.get $acc i32.add local.set $acc",
                    from = ty.widen(),
                    to = ty.narrow()
                );
            }
            after += " local.get $acc i32.add";
        }
        Kind::Sites(live) => {
            for j in 0..live {
                locals += &format!(" (local $a{j} i64)");
            }
            for i in 0..k {
                let j = i % live.max(1);
                if live == 0 {
                    before += " local.get $n call $leaf drop";
                } else {
                    before += &format!(
                        " local.get $n call $leaf i64.extend_i32_u local.get $a{j} i64.add i64.const 0x9e3779b97f4a7c15 i64.mul local.set $a{j}"
                    );
                }
            }
            for j in 0..live {
                after += &format!(" local.get $a{j} i64.const 29 i64.shr_u i32.wrap_i64 i32.add");
            }
        }
    }
    let body = match shape.kind {
        // The operands stay on the stack across the call and are folded into its result
        // afterwards.
        Kind::Operands(ty) => {
            locals += " (local $r i32)";
            let mut fold = String::new();
            for _ in 0..k {
                fold += &format!(" {} local.get $r i32.add local.set $r", ty.narrow());
            }
            format!("{before} {recurse} local.set $r {fold} local.get $r")
        }
        _ => format!("{before} {recurse} {after}"),
    };
    let wat = format!(
        r#"(module
             (type $t (func (param i32) (result i32)))
             (table 1 funcref) (elem (i32.const 0) $f)
             (func $leaf (param i32) (result i32) local.get 0 i32.const 1 i32.add)
             (func $f (export "run") (type $t) (param $n i32) (result i32) {locals}
               local.get $n i32.eqz
               if (result i32) i32.const 0 else {body} end))"#
    );
    wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"))
}

/// The value types a runtime can keep in a frame (SIMD is refused by the blob checks). The
/// conversions are ones the code generator cannot fold away, so every value really occupies
/// a register or a stack slot.
#[derive(Clone, Copy)]
enum Ty {
    I64,
    F64,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::I64 => "i64",
            Ty::F64 => "f64",
        }
    }
    fn widen(self) -> &'static str {
        match self {
            Ty::I64 => "i64.extend_i32_u i64.const 0x9e3779b97f4a7c15 i64.mul",
            Ty::F64 => "f64.convert_i32_u f64.sqrt",
        }
    }
    fn narrow(self) -> &'static str {
        match self {
            Ty::I64 => "i64.const 29 i64.shr_u i32.wrap_i64",
            Ty::F64 => "i32.trunc_sat_f64_u",
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Minimal,
    Locals(Ty),
    Operands(Ty),
    Segments(Ty),
    LocalSegments(Ty),
    /// `width` calls to a leaf with this many accumulators live across every one of them.
    Sites(u32),
}

struct Shape {
    name: &'static str,
    kind: Kind,
    width: u32,
    indirect: bool,
}

/// The deepest `run(n)` that returns, and the trap one call deeper.
fn deepest(code: &[u8]) -> (u32, Trap) {
    let module = Module::new(engine(), code).expect("compiles");
    let run = |n: u32| -> Result<(), Trap> {
        let mut store = Store::new(engine(), HostState::new(None));
        store.set_fuel(u64::MAX).expect("fuel is on");
        let instance = Instance::new(&mut store, &module, &[]).expect("instantiates");
        let run = instance
            .get_typed_func::<i32, i32>(&mut store, "run")
            .expect("exports run");
        run.call(&mut store, n as i32)
            .map(drop)
            .map_err(|e| *e.downcast_ref::<Trap>().expect("a trap"))
    };
    let (mut ok, mut traps) = (0u32, 1u32 << 20);
    let mut trap = run(traps).expect_err("a million calls deep traps");
    while traps - ok > 1 {
        let mid = ok + (traps - ok) / 2;
        match run(mid) {
            Ok(()) => ok = mid,
            Err(t) => (traps, trap) = (mid, t),
        }
    }
    (ok, trap)
}

fn shapes() -> Vec<Shape> {
    use Kind::*;
    let shape = |name, kind, width, indirect| Shape {
        name,
        kind,
        width,
        indirect,
    };
    vec![
        shape("a frame with nothing in it", Minimal, 0, false),
        shape("the same through call_indirect", Minimal, 0, true),
        shape("64 i64 locals", Locals(Ty::I64), 64, false),
        shape("64 f64 locals", Locals(Ty::F64), 64, false),
        shape("64 f64 locals, indirect", Locals(Ty::F64), 64, true),
        shape("64 i64 operands", Operands(Ty::I64), 64, false),
        shape("64 f64 operands", Operands(Ty::F64), 64, false),
        shape(
            "200 i64 values, one at a time",
            Segments(Ty::I64),
            200,
            false,
        ),
        shape(
            "200 f64 values, one at a time",
            Segments(Ty::F64),
            200,
            false,
        ),
        shape(
            "200 f64 values in one local",
            LocalSegments(Ty::F64),
            200,
            false,
        ),
        shape("200 calls, nothing live", Sites(0), 200, false),
        shape("200 calls, 1 live", Sites(1), 200, false),
        shape("200 calls, 4 live", Sites(4), 200, false),
        shape("200 calls, 16 live", Sites(16), 200, false),
        shape("50 calls, 16 live", Sites(16), 50, false),
        shape("1000 i64 locals", Locals(Ty::I64), 1000, false),
    ]
}

/// The native stack is a backstop no runtime reaches: for every frame shape the logical
/// limit stops recursion at most half as deep as the native limit would, so it is the
/// logical limit, the same everywhere, that decides.
#[test]
fn no_frame_shape_reaches_the_native_stack_before_the_logical_limit() {
    for shape in shapes() {
        let raw = recursion(&shape);
        let (native, native_trap) = deepest(&raw);
        let (logical, logical_trap) = deepest(&instrument(&raw).expect("instruments"));
        assert_eq!(native_trap, Trap::StackOverflow, "{}", shape.name);
        assert_eq!(logical_trap, Trap::UnreachableCodeReached, "{}", shape.name);
        println!(
            "{:<36} native {native:>7} calls, logical {logical:>6}: {:.1}x",
            shape.name,
            native as f64 / logical as f64
        );
        assert!(
            logical * 2 <= native,
            "{}: {logical} vs {native}",
            shape.name
        );
    }
}
