//! Static checks of a runtime blob, made without executing it (SPEC §5), and the deterministic
//! stack limit instrumented into it before it is compiled ([`stack_limit`]).
//!
//! The verdict and the instrumented bytes are pure functions of the blob, so every honest node
//! reaches the same ones.

#![forbid(unsafe_code)]

pub mod stack_limit;

use parity_scale_codec::Decode;
use vexidus_runtime_api::RuntimeVersion;
use vexidus_runtime_api::abi::{self, WasmType};
use wasmparser::{Parser, Payload, TypeRef, ValType};

/// ABI versions this host implements.
pub const SUPPORTED_ABI_VERSIONS: &[u32] = &[1];

/// Largest linear memory a runtime may use (also its declared minimum), in 64 KiB pages.
pub const MAX_MEMORY_PAGES: u64 = 2048; // 128 MiB

/// Why a blob was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// Larger than allowed.
    #[error("runtime blob is {size} bytes, larger than the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not valid WebAssembly, or uses a feature the host does not enable.
    #[error("invalid WebAssembly: {0}")]
    InvalidWasm(String),
    /// No `vexidus_runtime_version` custom section.
    #[error("runtime blob has no `vexidus_runtime_version` custom section")]
    MissingVersion,
    /// The version section does not decode.
    #[error("the `vexidus_runtime_version` section does not decode: {0}")]
    BadVersion(String),
    /// The ABI version is not supported here.
    #[error("runtime needs ABI version {found}; this host supports {supported:?}")]
    UnsupportedAbi {
        /// The blob's ABI version.
        found: u32,
        /// What this host supports.
        supported: &'static [u32],
    },
    /// A required export is missing.
    #[error("runtime does not export the entry point `{0}`")]
    MissingExport(String),
    /// An export has the wrong type.
    #[error("runtime export `{name}` has the wrong type: {detail}")]
    WrongExportType {
        /// The export.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// An import this host does not provide.
    #[error("runtime imports `{module}::{name}`, which this host does not provide")]
    UnknownImport {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
    },
    /// An import with a signature other than the host's.
    #[error("runtime imports `{name}` with a signature this host does not provide")]
    ImportSignature {
        /// Import name.
        name: String,
    },
    /// Memory declared beyond the limit.
    #[error("runtime memory needs at least {pages} pages; the limit is {limit} pages")]
    MemoryTooLarge {
        /// Declared minimum pages.
        pages: u64,
        /// Limit.
        limit: u64,
    },
}

/// [`check`] without a size limit, remembered by code hash: the verdict is a pure function of
/// the bytes, and the same blob is checked when it is scheduled, when the node compiles it ahead
/// of its height, and again when the runtime enacts it (a full validation of a large module is
/// milliseconds the switching block should not spend twice).
pub fn check_unlimited_cached(code: &[u8]) -> Result<RuntimeVersion, BlobError> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Verdicts = Mutex<HashMap<[u8; 32], Result<RuntimeVersion, BlobError>>>;
    static VERDICTS: OnceLock<Verdicts> = OnceLock::new();
    let verdicts = VERDICTS.get_or_init(Default::default);
    let hash = *blake3::hash(code).as_bytes();
    let lock = || verdicts.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(v) = lock().get(&hash) {
        return v.clone();
    }
    let verdict = check(code, usize::MAX);
    let mut map = lock();
    if map.len() >= 64 {
        map.clear();
    }
    map.insert(hash, verdict.clone());
    verdict
}

/// Validates `code` and returns the version it declares.
pub fn check(code: &[u8], max_size: usize) -> Result<RuntimeVersion, BlobError> {
    if code.len() > max_size {
        return Err(BlobError::TooLarge {
            size: code.len(),
            limit: max_size,
        });
    }
    let mut validator = wasmparser::Validator::new_with_features(features());
    validator
        .validate_all(code)
        .map_err(|e| BlobError::InvalidWasm(e.to_string()))?;

    let mut types: Vec<wasmparser::FuncType> = Vec::new();
    let mut func_types: Vec<u32> = Vec::new(); // type index of every function, imports first
    let mut version = None;
    let mut exports: Vec<(String, wasmparser::ExternalKind, u32)> = Vec::new();

    for payload in Parser::new(0).parse_all(code) {
        let payload = payload.map_err(|e| BlobError::InvalidWasm(e.to_string()))?;
        match payload {
            Payload::TypeSection(reader) => {
                for group in reader.into_iter_err_on_gc_types() {
                    types.push(group.map_err(|e| BlobError::InvalidWasm(e.to_string()))?);
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(|e| BlobError::InvalidWasm(e.to_string()))?;
                    check_import(&import, &types)?;
                    if let TypeRef::Func(t) = import.ty {
                        func_types.push(t);
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for t in reader {
                    func_types.push(t.map_err(|e| BlobError::InvalidWasm(e.to_string()))?);
                }
            }
            Payload::MemorySection(reader) => {
                for m in reader {
                    let m = m.map_err(|e| BlobError::InvalidWasm(e.to_string()))?;
                    if m.initial > MAX_MEMORY_PAGES {
                        return Err(BlobError::MemoryTooLarge {
                            pages: m.initial,
                            limit: MAX_MEMORY_PAGES,
                        });
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for e in reader {
                    let e = e.map_err(|e| BlobError::InvalidWasm(e.to_string()))?;
                    exports.push((e.name.to_string(), e.kind, e.index));
                }
            }
            Payload::CustomSection(reader) if reader.name() == abi::VERSION_SECTION => {
                let v = RuntimeVersion::decode(&mut reader.data())
                    .map_err(|e| BlobError::BadVersion(e.to_string()))?;
                version = Some(v);
            }
            _ => {}
        }
    }

    let version = version.ok_or(BlobError::MissingVersion)?;
    if !SUPPORTED_ABI_VERSIONS.contains(&version.abi_version) {
        return Err(BlobError::UnsupportedAbi {
            found: version.abi_version,
            supported: SUPPORTED_ABI_VERSIONS,
        });
    }

    let find = |name: &str| exports.iter().find(|(n, _, _)| n == name);
    match find(abi::MEMORY) {
        Some((_, wasmparser::ExternalKind::Memory, _)) => {}
        Some(_) => {
            return Err(BlobError::WrongExportType {
                name: abi::MEMORY.into(),
                detail: "not a memory".into(),
            });
        }
        None => return Err(BlobError::MissingExport(abi::MEMORY.into())),
    }
    let func_sig = |name: &str| -> Result<&wasmparser::FuncType, BlobError> {
        match find(name) {
            Some((_, wasmparser::ExternalKind::Func, idx)) => func_types
                .get(*idx as usize)
                .and_then(|t| types.get(*t as usize))
                .ok_or_else(|| BlobError::InvalidWasm(format!("export `{name}` has no type"))),
            Some(_) => Err(BlobError::WrongExportType {
                name: name.into(),
                detail: "not a function".into(),
            }),
            None => Err(BlobError::MissingExport(name.into())),
        }
    };
    let alloc = func_sig(abi::ALLOC)?;
    if alloc.params() != [ValType::I32] || alloc.results() != [ValType::I32] {
        return Err(BlobError::WrongExportType {
            name: abi::ALLOC.into(),
            detail: "expected (i32) -> i32".into(),
        });
    }
    for entry in abi::ENTRY_POINTS {
        let sig = func_sig(entry)?;
        if sig.params() != [ValType::I32, ValType::I32] || sig.results() != [ValType::I64] {
            return Err(BlobError::WrongExportType {
                name: (*entry).into(),
                detail: "expected (i32, i32) -> i64".into(),
            });
        }
    }
    Ok(version)
}

fn check_import(
    import: &wasmparser::Import<'_>,
    types: &[wasmparser::FuncType],
) -> Result<(), BlobError> {
    let unknown = || BlobError::UnknownImport {
        module: import.module.to_string(),
        name: import.name.to_string(),
    };
    if import.module != abi::HOST_MODULE {
        return Err(unknown());
    }
    let host = abi::HOST_FUNCTIONS_V1
        .iter()
        .find(|f| f.name == import.name)
        .ok_or_else(unknown)?;
    let TypeRef::Func(t) = import.ty else {
        return Err(unknown());
    };
    let sig = types
        .get(t as usize)
        .ok_or_else(|| BlobError::InvalidWasm("import type out of range".into()))?;
    let result = match host.result {
        None => vec![],
        Some(WasmType::I32) => vec![ValType::I32],
        Some(WasmType::I64) => vec![ValType::I64],
    };
    if sig.params() != vec![ValType::I32; host.params].as_slice()
        || sig.results() != result.as_slice()
    {
        return Err(BlobError::ImportSignature {
            name: import.name.to_string(),
        });
    }
    Ok(())
}

/// The WebAssembly features a runtime may use: the deterministic ones rustc emits for
/// `wasm32-unknown-unknown`. No threads, no GC, no exceptions, and no SIMD: a `v128` value
/// live across a call takes 16 native bytes of spill space per call site, more than the
/// deterministic stack limit ([`stack_limit`]) can count for it.
pub fn features() -> wasmparser::WasmFeatures {
    use wasmparser::WasmFeatures as F;
    F::MUTABLE_GLOBAL
        | F::SATURATING_FLOAT_TO_INT
        | F::SIGN_EXTENSION
        | F::MULTI_VALUE
        | F::BULK_MEMORY
        | F::REFERENCE_TYPES
        | F::FLOATS
        | F::CALL_INDIRECT_OVERLONG
        | F::BULK_MEMORY_OPT
}
