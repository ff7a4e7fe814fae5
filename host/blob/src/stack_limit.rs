//! A deterministic stack limit, instrumented into every runtime before it is compiled.
//!
//! wasmtime limits recursion by native stack bytes. How many bytes a wasm frame takes depends
//! on the code generator (its version, its register allocator, the CPU features it targets)
//! and the host frames below the first wasm frame depend on how the node was built, so the
//! depth at which a deep call traps could differ between two nodes, and a block could execute
//! on one and trap on the other. Instead the depth is counted in the module itself, in units the
//! wasm defines, the way Substrate's `deterministic_stack_limit` (wasm-instrument's stack
//! limiter) does:
//!
//! - every defined function costs `locals (params included) + its highest operand stack +
//!   CALL_SITE_SLOTS × its call sites + FRAME_SLOTS` **slots**, computed by the validator from
//!   the function's code alone;
//! - a mutable `i32` global (exported as [`STACK_HEIGHT_EXPORT`]) holds the slots of the frames
//!   in flight: before each `call` the caller adds the callee's cost and traps (`unreachable`)
//!   if the sum exceeds [`STACK_LIMIT_SLOTS`], and subtracts it when the call returns;
//! - a `call_indirect` costs the most expensive function its type could reach (any function
//!   the module declares by reference: element segments, exports, `ref.func` in globals);
//! - every exported defined function (and the start function) is reached through a thunk that
//!   counts the callee and itself, so the host's call into the runtime is counted too.
//!
//! Calls to host functions cost nothing here: their frames are native and the host bounds
//! them. Whether a call traps is therefore a function of the module's bytes and the call's
//! path only, the same on every machine, kernel and build. The native limit stays as a
//! backstop that no module reaches first: [`STACK_LIMIT_SLOTS`] slots at the most native bytes
//! a slot has been measured to take (the host's
//! `no_frame_shape_reaches_the_native_stack_before_the_logical_limit`) fit in the native limit
//! twice over.
//!
//! The instrumented bytes are what gets compiled and cached; [`VERSION`] is part of the module
//! cache key, and any change to the costs or the limit is a change of consensus that ships as
//! a coordinated binary upgrade.

use std::collections::{BTreeSet, HashMap};
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{
    CodeSection, ConstExpr, ExportKind, ExportSection, Function, FunctionSection, GlobalSection,
    GlobalType, Instruction, RawSection, StartSection, ValType,
};
use wasmparser::{
    ElementItems, ExternalKind, FuncType, FunctionBody, Operator, Parser, Payload, TypeRef,
    ValidPayload, Validator,
};

/// The most slots the frames of one call may hold. The runtime's whole test suite (genesis,
/// blocks, staking, upgrades with their migrations) runs within an eighth of it.
pub const STACK_LIMIT_SLOTS: u32 = 24 * 1024;
/// Slots every frame costs besides its locals and operands: the return address, the saved
/// frame pointer and callee-saved registers, and the two operands the instrumentation itself
/// pushes.
pub const FRAME_SLOTS: u32 = 8;
/// Slots every call site in a function costs it, whatever it calls (a host function too): the
/// register allocator gives what is live across a call a spill slot of its own at each call
/// site, so a frame grows with its calls even when few values are live at once (measured
/// at 8 to 12 native bytes a call site).
pub const CALL_SITE_SLOTS: u32 = 1;
/// Changes whenever the instrumentation, its costs or the limit change; part of the module
/// cache key so that code compiled under other rules is never reused.
pub const VERSION: u32 = 1;
/// Export name of the global holding the slots in flight.
pub const STACK_HEIGHT_EXPORT: &str = "__vexidus_stack_height";

/// What the analysis of a module found.
struct Analysis {
    /// Every function type, by type index.
    types: Vec<FuncType>,
    /// The type index of every function, imports first.
    func_types: Vec<u32>,
    imported_funcs: u32,
    /// Globals the module defines (a runtime imports functions only, so these are all).
    globals: u32,
    /// Cost of every function in slots, imports first (a host function costs nothing).
    costs: Vec<u32>,
    /// The costliest function each type index reaches through `call_indirect`.
    indirect_costs: Vec<u32>,
    /// Defined functions reached from outside (exports, start): each gets a thunk.
    entered: BTreeSet<u32>,
}

/// `code` with the stack limit instrumented. `code` must already have passed the blob checks;
/// anything unexpected is refused with the reason.
pub fn instrument(code: &[u8]) -> Result<Vec<u8>, String> {
    let analysis = analyse(code)?;
    if analysis.func_types.len() as u32 == analysis.imported_funcs {
        return Ok(code.to_vec()); // no code of its own: nothing can nest
    }
    rewrite(code, &analysis)
}

fn analyse(code: &[u8]) -> Result<Analysis, String> {
    let mut validator = Validator::new_with_features(crate::features());
    let mut a = Analysis {
        types: Vec::new(),
        func_types: Vec::new(),
        imported_funcs: 0,
        globals: 0,
        costs: Vec::new(),
        indirect_costs: Vec::new(),
        entered: BTreeSet::new(),
    };
    let mut referenced = BTreeSet::new();
    let mut allocs = wasmparser::FuncValidatorAllocations::default();
    for payload in Parser::new(0).parse_all(code) {
        let payload = payload.map_err(|e| e.to_string())?;
        let valid = validator.payload(&payload).map_err(|e| e.to_string())?;
        match &payload {
            Payload::TypeSection(reader) => {
                for ty in reader.clone().into_iter_err_on_gc_types() {
                    a.types.push(ty.map_err(|e| e.to_string())?);
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    let import = import.map_err(|e| e.to_string())?;
                    match import.ty {
                        TypeRef::Func(t) => {
                            a.func_types.push(t);
                            a.imported_funcs += 1;
                        }
                        _ => return Err(format!("import `{}` is not a function", import.name)),
                    }
                }
                a.costs = vec![0; a.imported_funcs as usize];
            }
            Payload::FunctionSection(reader) => {
                for t in reader.clone() {
                    a.func_types.push(t.map_err(|e| e.to_string())?);
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader.clone() {
                    let global = global.map_err(|e| e.to_string())?;
                    referenced_in(&global.init_expr, &mut referenced)?;
                    a.globals += 1;
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader.clone() {
                    let export = export.map_err(|e| e.to_string())?;
                    if export.name == STACK_HEIGHT_EXPORT {
                        return Err(format!(
                            "the module already exports `{STACK_HEIGHT_EXPORT}`"
                        ));
                    }
                    if export.kind == ExternalKind::Func {
                        referenced.insert(export.index);
                        if export.index >= a.imported_funcs {
                            a.entered.insert(export.index);
                        }
                    }
                }
            }
            Payload::StartSection { func, .. } if *func >= a.imported_funcs => {
                a.entered.insert(*func);
            }
            Payload::ElementSection(reader) => {
                for element in reader.clone() {
                    match element.map_err(|e| e.to_string())?.items {
                        ElementItems::Functions(funcs) => {
                            for f in funcs {
                                referenced.insert(f.map_err(|e| e.to_string())?);
                            }
                        }
                        ElementItems::Expressions(_, exprs) => {
                            for expr in exprs {
                                referenced_in(&expr.map_err(|e| e.to_string())?, &mut referenced)?;
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        if let ValidPayload::Func(to_validate, body) = valid {
            let mut func = to_validate.into_validator(allocs);
            let cost = frame_cost(&mut func, &body)?;
            a.costs.push(cost);
            allocs = func.into_allocations();
        }
    }
    if a.costs.len() != a.func_types.len() {
        return Err("function and code sections disagree".into());
    }
    // The costliest referenced function of each signature (types compare structurally).
    let mut by_signature: HashMap<&FuncType, u32> = HashMap::new();
    for f in referenced {
        let ty = type_of(&a, f)?;
        let slot = by_signature.entry(ty).or_insert(0);
        *slot = (*slot).max(a.costs[f as usize]);
    }
    a.indirect_costs = a
        .types
        .iter()
        .map(|ty| by_signature.get(ty).copied().unwrap_or(0))
        .collect();
    Ok(a)
}

fn type_of(a: &Analysis, func: u32) -> Result<&FuncType, String> {
    a.func_types
        .get(func as usize)
        .and_then(|t| a.types.get(*t as usize))
        .ok_or_else(|| format!("function {func} has no type"))
}

/// Functions a constant expression refers to with `ref.func`.
fn referenced_in(expr: &wasmparser::ConstExpr<'_>, into: &mut BTreeSet<u32>) -> Result<(), String> {
    let mut ops = expr.get_operators_reader();
    while !ops.eof() {
        if let Operator::RefFunc { function_index } = ops.read().map_err(|e| e.to_string())? {
            into.insert(function_index);
        }
    }
    Ok(())
}

/// Locals (params included), plus the highest operand stack of the body, plus
/// [`CALL_SITE_SLOTS`] for every call it makes, plus [`FRAME_SLOTS`].
fn frame_cost(
    func: &mut wasmparser::FuncValidator<wasmparser::ValidatorResources>,
    body: &FunctionBody<'_>,
) -> Result<u32, String> {
    let err = |e: wasmparser::BinaryReaderError| e.to_string();
    for local in body.get_locals_reader().map_err(err)? {
        let (count, ty) = local.map_err(err)?;
        func.define_locals(body.get_binary_reader().original_position(), count, ty)
            .map_err(err)?;
    }
    let mut ops = body.get_operators_reader().map_err(err)?;
    let (mut highest, mut calls) = (0, 0u32);
    while !ops.eof() {
        let (op, offset) = ops.read_with_offset().map_err(err)?;
        if matches!(op, Operator::Call { .. } | Operator::CallIndirect { .. }) {
            calls = calls.saturating_add(1);
        }
        func.op(offset, &op).map_err(err)?;
        highest = highest.max(func.operand_stack_height());
    }
    ops.finish().map_err(err)?;
    Ok(func
        .len_locals()
        .saturating_add(highest)
        .saturating_add(calls.saturating_mul(CALL_SITE_SLOTS))
        .saturating_add(FRAME_SLOTS))
}

/// The order sections must appear in, by id (custom sections, 0, anywhere).
fn section_order(id: u8) -> u8 {
    match id {
        1..=5 => id, // type, import, function, table, memory
        13 => 6,     // tag
        6 => 7,      // global
        7 => 8,      // export
        8 => 9,      // start
        9 => 10,     // element
        12 => 11,    // data count
        10 => 12,    // code
        11 => 13,    // data
        _ => 0,
    }
}

const GLOBAL_ORDER: u8 = 7;
const EXPORT_ORDER: u8 = 8;

fn rewrite(code: &[u8], a: &Analysis) -> Result<Vec<u8>, String> {
    let defined = a.func_types.len() as u32;
    let height = a.globals; // the new global comes after the module's own
    // Thunks are appended after the defined functions, so no index the module uses moves.
    let thunk_of: HashMap<u32, u32> = a
        .entered
        .iter()
        .enumerate()
        .map(|(i, &f)| (f, defined + i as u32))
        .collect();
    let mut out = wasm_encoder::Module::new();
    let mut reencoder = RoundtripReencoder;
    let (mut global_done, mut export_done) = (false, false);
    let mut code_section: Option<(CodeSection, u32)> = None; // bodies still to come
    let mut next_func = a.imported_funcs;

    for payload in Parser::new(0).parse_all(code) {
        let payload = payload.map_err(|e| e.to_string())?;
        let Some((id, range)) = payload.as_section() else {
            if let Payload::CodeSectionEntry(body) = &payload {
                let (section, left) = code_section
                    .as_mut()
                    .ok_or("a body outside the code section")?;
                section.function(&instrument_body(body, a, height, &mut reencoder)?);
                next_func += 1;
                *left -= 1;
                if *left == 0 {
                    for &f in &a.entered {
                        section.function(&thunk(f, a, height)?);
                    }
                    out.section(section);
                    code_section = None;
                }
            }
            continue;
        };
        let order = section_order(id);
        if order > GLOBAL_ORDER && !global_done {
            out.section(&height_global(GlobalSection::new()));
            global_done = true;
        }
        if order > EXPORT_ORDER && !export_done {
            out.section(&height_export(ExportSection::new(), height));
            export_done = true;
        }
        match payload {
            Payload::FunctionSection(reader) => {
                let mut functions = FunctionSection::new();
                for t in reader {
                    functions.function(t.map_err(|e| e.to_string())?);
                }
                for &f in &a.entered {
                    functions.function(a.func_types[f as usize]);
                }
                out.section(&functions);
            }
            Payload::GlobalSection(reader) => {
                let mut globals = GlobalSection::new();
                reencoder
                    .parse_global_section(&mut globals, reader)
                    .map_err(|e| e.to_string())?;
                out.section(&height_global(globals));
                global_done = true;
            }
            Payload::ExportSection(reader) => {
                let mut exports = ExportSection::new();
                for export in reader {
                    let export = export.map_err(|e| e.to_string())?;
                    let index = match export.kind {
                        ExternalKind::Func => *thunk_of.get(&export.index).unwrap_or(&export.index),
                        _ => export.index,
                    };
                    exports.export(
                        export.name,
                        reencoder
                            .export_kind(export.kind)
                            .map_err(|e| e.to_string())?,
                        index,
                    );
                }
                out.section(&height_export(exports, height));
                export_done = true;
            }
            Payload::StartSection { func, .. } => {
                out.section(&StartSection {
                    function_index: *thunk_of.get(&func).unwrap_or(&func),
                });
            }
            Payload::CodeSectionStart { count, .. } => {
                if count == 0 {
                    return Err("an empty code section".into());
                }
                code_section = Some((CodeSection::new(), count));
            }
            _ => {
                out.section(&RawSection {
                    id,
                    data: &code[range],
                });
            }
        }
    }
    if code_section.is_some() || next_func != defined {
        return Err("the code section ended early".into());
    }
    Ok(out.finish())
}

fn height_global(mut globals: GlobalSection) -> GlobalSection {
    globals.global(
        GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        },
        &ConstExpr::i32_const(0),
    );
    globals
}

fn height_export(mut exports: ExportSection, height: u32) -> ExportSection {
    exports.export(STACK_HEIGHT_EXPORT, ExportKind::Global, height);
    exports
}

/// Counts `cost` slots in before a call, trapping past the limit.
fn enter(f: &mut Function, height: u32, cost: u32) {
    f.instruction(&Instruction::GlobalGet(height));
    f.instruction(&Instruction::I32Const(cost as i32));
    f.instruction(&Instruction::I32Add);
    f.instruction(&Instruction::GlobalSet(height));
    f.instruction(&Instruction::GlobalGet(height));
    f.instruction(&Instruction::I32Const(STACK_LIMIT_SLOTS as i32));
    f.instruction(&Instruction::I32GtU);
    f.instruction(&Instruction::If(wasm_encoder::BlockType::Empty));
    f.instruction(&Instruction::Unreachable);
    f.instruction(&Instruction::End);
}

/// Counts `cost` slots out after the call returned.
fn leave(f: &mut Function, height: u32, cost: u32) {
    f.instruction(&Instruction::GlobalGet(height));
    f.instruction(&Instruction::I32Const(cost as i32));
    f.instruction(&Instruction::I32Sub);
    f.instruction(&Instruction::GlobalSet(height));
}

fn instrument_body(
    body: &FunctionBody<'_>,
    a: &Analysis,
    height: u32,
    reencoder: &mut RoundtripReencoder,
) -> Result<Function, String> {
    let mut f = reencoder
        .new_function_with_parsed_locals(body)
        .map_err(|e| e.to_string())?;
    let mut ops = body.get_operators_reader().map_err(|e| e.to_string())?;
    while !ops.eof() {
        let op = ops.read().map_err(|e| e.to_string())?;
        let cost = match &op {
            Operator::Call { function_index } => a.costs.get(*function_index as usize).copied(),
            Operator::CallIndirect { type_index, .. } => {
                a.indirect_costs.get(*type_index as usize).copied()
            }
            _ => None,
        }
        .filter(|&c| c > 0);
        let instruction = reencoder.instruction(op).map_err(|e| e.to_string())?;
        match cost {
            Some(cost) => {
                enter(&mut f, height, cost);
                f.instruction(&instruction);
                leave(&mut f, height, cost);
            }
            None => {
                f.instruction(&instruction);
            }
        }
    }
    Ok(f)
}

/// The function the outside reaches `func` through: it counts its own frame and `func`'s.
fn thunk(func: u32, a: &Analysis, height: u32) -> Result<Function, String> {
    let ty = type_of(a, func)?;
    let params = ty.params().len() as u32;
    let own = params + params.max(ty.results().len() as u32).max(2) + CALL_SITE_SLOTS + FRAME_SLOTS;
    let cost = own.saturating_add(a.costs[func as usize]);
    let mut f = Function::new([]);
    enter(&mut f, height, cost);
    for i in 0..params {
        f.instruction(&Instruction::LocalGet(i));
    }
    f.instruction(&Instruction::Call(func));
    leave(&mut f, height, cost);
    f.instruction(&Instruction::End);
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exports(code: &[u8]) -> Vec<(String, ExternalKind, u32)> {
        let mut out = Vec::new();
        for payload in Parser::new(0).parse_all(code) {
            if let Payload::ExportSection(reader) = payload.expect("parses") {
                for e in reader {
                    let e = e.expect("export");
                    out.push((e.name.to_string(), e.kind, e.index));
                }
            }
        }
        out
    }

    const MODULE: &str = r#"(module
        (func $leaf (param i32) (result i32) local.get 0)
        (func $run (export "run") (param i32) (result i32) (local i64 i64)
          local.get 0 call $leaf)
        (memory (export "memory") 1))"#;

    #[test]
    fn exports_are_reached_through_thunks_and_the_height_is_exported() {
        let code = wat::parse_str(MODULE).expect("parses");
        let instrumented = instrument(&code).expect("instruments");
        wasmparser::Validator::new_with_features(crate::features())
            .validate_all(&instrumented)
            .expect("validates");
        let exports = exports(&instrumented);
        // Two defined functions, then the thunk of `run`.
        assert!(exports.contains(&("run".into(), ExternalKind::Func, 2)));
        assert!(exports.contains(&("memory".into(), ExternalKind::Memory, 0)));
        assert!(exports.contains(&(STACK_HEIGHT_EXPORT.into(), ExternalKind::Global, 0)));
        assert_eq!(
            instrument(&code),
            Ok(instrumented),
            "the same bytes every time"
        );
    }

    #[test]
    fn frames_cost_their_locals_operands_and_the_frame() {
        let code = wat::parse_str(MODULE).expect("parses");
        let a = analyse(&code).expect("analyses");
        // $leaf: one parameter, one operand. $run: one parameter and two locals, one operand,
        // one call.
        assert_eq!(
            a.costs,
            vec![1 + 1 + FRAME_SLOTS, 3 + 1 + CALL_SITE_SLOTS + FRAME_SLOTS]
        );
    }

    #[test]
    fn a_module_exporting_the_height_itself_is_refused() {
        let code = wat::parse_str(format!(
            r#"(module (global (export "{STACK_HEIGHT_EXPORT}") (mut i32) (i32.const 0))
                 (func (export "run")))"#
        ))
        .expect("parses");
        let err = instrument(&code).expect_err("refused");
        assert!(err.contains(STACK_HEIGHT_EXPORT), "{err}");
    }

    #[test]
    fn a_module_without_code_of_its_own_is_left_alone() {
        let code = wat::parse_str(r#"(module (memory (export "memory") 1))"#).expect("parses");
        assert_eq!(instrument(&code), Ok(code));
    }
}
