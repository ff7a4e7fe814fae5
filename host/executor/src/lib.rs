//! The WebAssembly executor: runs runtime entry points in wasmtime.
//!
//! Shaped like smoldot's host: a [`Prototype`] (validated, compiled, cacheable, cheap to share)
//! is separate from a running call, and storage is reached through the [`Externalities`] trait
//! the caller supplies, so the same executor runs against RocksDB, a block overlay, an in-memory
//! map or a throwaway copy without knowing which.
//!
//! Every call starts from the state of a fresh instance, under a deterministic fuel limit, a
//! deterministic stack limit counted in the module itself ([`stack_limit`]) and a memory limit.
//! Where a module allows it (see [`warm`]) an instance serves many calls and is restored after
//! each; otherwise each call gets a new instance (pooling allocator + copy-on-write memory
//! images). A trap, an exhausted fuel budget or a memory bomb ends the call with an
//! [`ExecError`]; the node goes on.

pub use vexidus_blob as blob;
pub use vexidus_blob::stack_limit;
#[cfg(test)]
mod stack_limit_tests;
pub mod warm;

use parity_scale_codec::{Decode, Encode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use vexidus_runtime_api::abi;
use vexidus_runtime_api::{Hash, RuntimeVersion};
use wasmtime::{
    Config, Engine, Func, Instance, InstanceAllocationStrategy, InstancePre, Linker, Memory,
    Module, ModuleExport, PoolingAllocationConfig, Store, StoreLimits, Trap, ValRaw,
};

pub use blob::BlobError;

/// Storage as the runtime reaches it, supplied by the caller of each call.
pub trait Externalities {
    /// Reads a value.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
    /// Writes a value.
    fn set(&mut self, key: &[u8], value: &[u8]);
    /// Deletes a value.
    fn remove(&mut self, key: &[u8]);
    /// The next key strictly after `key`.
    fn next_key(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
    /// Adds `amount` to the block total `name` (saturating; the ABI's block totals). An error
    /// (the call traps) where no block is being executed.
    fn add_to_total(&mut self, name: &[u8], amount: u128) -> Result<(), String> {
        let _ = (name, amount);
        Err(NO_BLOCK_TOTALS.into())
    }
    /// What the block added to the total `name`. An error (the call traps) anywhere but in
    /// `end_block`.
    fn total(&mut self, name: &[u8]) -> Result<u128, String> {
        let _ = name;
        Err(TOTALS_IN_END_BLOCK_ONLY.into())
    }
}

/// Why adding to a block total failed outside a block.
pub const NO_BLOCK_TOTALS: &str = "block totals exist only while a block is executed";
/// Why reading a block total failed outside `end_block` (a transaction's view of a running sum
/// would depend on the order transactions are executed in).
pub const TOTALS_IN_END_BLOCK_ONLY: &str = "block totals are read in vex_end_block only";

/// Fuel budgets per kind of call. Deterministic: the same call runs out at the same
/// instruction on every node.
#[derive(Clone, Copy, Debug)]
pub struct FuelLimits {
    /// `vex_genesis_build`.
    pub genesis: u64,
    /// `vex_begin_block`, `vex_end_block`, `vex_migrate`.
    pub block: u64,
    /// `vex_apply_transaction`, `vex_validate_transaction`.
    pub transaction: u64,
    /// `vex_query`.
    pub query: u64,
}

impl Default for FuelLimits {
    fn default() -> Self {
        Self {
            genesis: 20_000_000_000,
            block: 2_000_000_000,
            transaction: 200_000_000,
            query: 1_000_000_000,
        }
    }
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The blob failed a static check.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// wasmtime refused to compile or instantiate it.
    #[error("cannot compile runtime: {0}")]
    Compile(String),
    /// Instantiation failed (e.g. no free instance slot, data segment out of bounds).
    #[error("cannot instantiate runtime: {0}")]
    Instantiate(String),
    /// The runtime trapped.
    #[error("runtime trapped in `{entry}`: {reason}")]
    Trap {
        /// Entry point.
        entry: String,
        /// The trap, with the runtime's last error log line if it left one.
        reason: String,
    },
    /// The fuel budget ran out.
    #[error("runtime ran out of fuel in `{entry}` (limit {limit})")]
    OutOfFuel {
        /// Entry point.
        entry: String,
        /// The budget.
        limit: u64,
    },
    /// The runtime tried to grow memory beyond the limit.
    #[error("runtime exceeded the memory limit of {limit_bytes} bytes in `{entry}`")]
    MemoryLimit {
        /// Entry point.
        entry: String,
        /// Limit.
        limit_bytes: usize,
    },
    /// The result pointer/length is outside guest memory, or does not decode.
    #[error("runtime returned a bad result from `{entry}`: {reason}")]
    BadOutput {
        /// Entry point.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// A storage read failed underneath the runtime.
    #[error("storage error during `{entry}`: {reason}")]
    Storage {
        /// Entry point.
        entry: String,
        /// The storage error.
        reason: String,
    },
}

/// A validated, compiled runtime ready to be instantiated.
pub struct Prototype {
    /// blake3 of the code.
    pub code_hash: Hash,
    /// The version from its custom section.
    pub version: RuntimeVersion,
    pre: InstancePre<HostState>,
    exports: Exports,
    /// Warm instances, or why this module's instances cannot be reused.
    warm: Result<warm::Pool, String>,
}

impl Prototype {
    /// How many calls ran in an instance an earlier call had used, or why instances of this
    /// module are not reused (each call then gets a new one).
    pub fn instance_reuse(&self) -> Result<u64, &str> {
        match &self.warm {
            Ok(pool) => Ok(pool.reuses()),
            Err(why) => Err(why),
        }
    }

    /// How many times a reused instance was restored without reading the page table (no page
    /// fault since its last restore; see [`warm`]), or why instances are not reused.
    pub fn restores_without_scan(&self) -> Result<u64, &str> {
        match &self.warm {
            Ok(pool) => Ok(pool.unscanned()),
            Err(why) => Err(why),
        }
    }
}

/// The ABI's exports, resolved and type-checked once per module, so a call neither looks them
/// up by name nor checks their types again.
struct Exports {
    memory: ModuleExport,
    /// `vex_alloc`: `(i32) -> i32`.
    alloc: ModuleExport,
    /// The entry points, by name: each `(i32, i32) -> i64`.
    entries: Vec<(&'static str, ModuleExport)>,
    /// The global [`stack_limit`] counts the slots in flight in (absent in a module without
    /// code of its own).
    stack_height: Option<ModuleExport>,
}

impl Exports {
    fn resolve(module: &Module) -> Result<Self, ExecError> {
        use wasmtime::{ExternType, ValType};
        let find = |name: &str, params: &[ValType], result: ValType| {
            let ok = match module.get_export(name) {
                Some(ExternType::Func(ty)) => {
                    ty.params().len() == params.len()
                        && ty.params().zip(params).all(|(a, b)| ValType::eq(&a, b))
                        && ty.results().len() == 1
                        && ty.results().all(|r| ValType::eq(&r, &result))
                }
                _ => false,
            };
            ok.then(|| module.get_export_index(name))
                .flatten()
                .ok_or_else(|| {
                    ExecError::Instantiate(format!("export `{name}` missing or of the wrong type"))
                })
        };
        let memory = module
            .get_export_index(abi::MEMORY)
            .ok_or_else(|| ExecError::Instantiate("no exported memory".into()))?;
        let mut entries = Vec::with_capacity(abi::ENTRY_POINTS.len());
        for name in abi::ENTRY_POINTS {
            entries.push((
                *name,
                find(name, &[ValType::I32, ValType::I32], ValType::I64)?,
            ));
        }
        Ok(Self {
            memory,
            alloc: find(abi::ALLOC, &[ValType::I32], ValType::I32)?,
            entries,
            stack_height: module.get_export_index(stack_limit::STACK_HEIGHT_EXPORT),
        })
    }

    /// The position of entry point `name` in `entries`.
    fn entry(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|(n, _)| *n == name)
    }

    /// `instance`'s exported memory, which the host functions of its store then reach (and
    /// its stack height, which [`classify`] reads).
    fn bind_memory(
        &self,
        instance: &Instance,
        store: &mut Store<HostState>,
    ) -> Result<Memory, ExecError> {
        let memory = instance
            .get_module_export(&mut *store, &self.memory)
            .and_then(|e| e.into_memory())
            .ok_or_else(|| ExecError::Instantiate("no exported memory".into()))?;
        store.data_mut().memory = Some(memory);
        store.data_mut().stack_height = self
            .stack_height
            .as_ref()
            .and_then(|export| instance.get_module_export(&mut *store, export))
            .and_then(|e| e.into_global());
        Ok(memory)
    }

    /// The function `export` of `instance`.
    fn func(
        instance: &Instance,
        store: &mut Store<HostState>,
        export: &ModuleExport,
    ) -> Result<Func, ExecError> {
        instance
            .get_module_export(store, export)
            .and_then(|e| e.into_func())
            .ok_or_else(|| ExecError::Instantiate("an ABI export is not a function".into()))
    }
}

/// A store for one instance, with the memory limit in force.
fn new_store(ext: Option<*mut (dyn Externalities + 'static)>) -> Store<HostState> {
    let mut store = Store::new(engine(), HostState::new(ext));
    store.limiter(|s| &mut s.limits);
    store
}

impl std::fmt::Debug for Prototype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prototype")
            .field("code_hash", &hex::encode(self.code_hash))
            .field("version", &self.version)
            .finish()
    }
}

/// Where compiled modules are kept across restarts (the node uses a RocksDB column family).
pub trait ModuleStore: Send + Sync {
    /// Loads serialized module bytes.
    fn load(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Stores serialized module bytes.
    fn store(&self, key: &[u8], bytes: &[u8]);
}

/// The result of a call.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// The SCALE-encoded result.
    pub output: Vec<u8>,
    /// Fuel consumed.
    pub fuel_used: u64,
}

/// Largest memory one instance may use.
pub const MEMORY_LIMIT_BYTES: usize = (blob::MAX_MEMORY_PAGES as usize) * 65536;
const MAX_WASM_STACK: usize = 1024 * 1024;
/// Memory of a pooled instance slot restored in place after a call instead of returned to the
/// kernel (see `engine`): more than an ordinary call touches. Larger costs more per call once
/// some big call (genesis, a runtime upgrade) has touched it all.
const KEEP_RESIDENT_BYTES: usize = 256 * 1024;
const MAX_LOG_LINES: usize = 64;
const MAX_LOG_LINE: usize = 4096;

/// State a running call carries.
pub struct HostState {
    ext: Option<*mut (dyn Externalities + 'static)>,
    memory: Option<Memory>,
    limits: StoreLimits,
    logs: Vec<(u32, String)>,
    storage_error: Option<String>,
    stack_height: Option<wasmtime::Global>,
}

// SAFETY: `ext` is only set for the duration of one synchronous `Executor::call`, on the calling
// thread, and the store it lives in is dropped before that call returns.
unsafe impl Send for HostState {}

/// The process-wide wasmtime engine (ARCHITECTURE: one per process).
/// The CPU features every node compiles runtimes for on x86-64: x86-64-v2 (SSE3, SSSE3,
/// SSE4.1, SSE4.2, POPCNT, CMPXCHG16B), which every x86-64 server of the last fifteen years has.
#[cfg(target_arch = "x86_64")]
pub const CODEGEN_FEATURES: &[&str] = &[
    "has_sse3",
    "has_ssse3",
    "has_sse41",
    "has_sse42",
    "has_popcnt",
    "has_cmpxchg16b",
];
/// The CPU features every node compiles runtimes for on this architecture: its baseline.
#[cfg(not(target_arch = "x86_64"))]
pub const CODEGEN_FEATURES: &[&str] = &[];

/// Makes code generation independent of the machine. By default wasmtime compiles for the CPU
/// it runs on (AVX, BMI, LZCNT … when present), so two validators with different CPUs would run
/// different machine code for the same runtime, with frames of different sizes: deep
/// recursion, limited by the native stack (`MAX_WASM_STACK`), would trap at different depths,
/// and a block could execute on one node and trap on another. Naming the target turns that
/// inference off; the fixed [`CODEGEN_FEATURES`] are enabled instead, and a CPU without them is
/// refused when the engine starts rather than run differently.
fn pin_code_generation(config: &mut Config) {
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    if let Err(e) = config.target(&triple) {
        tracing::warn!("cannot pin code generation to {triple}: {e:#}");
        return;
    }
    for flag in CODEGEN_FEATURES {
        // SAFETY: Engine::new checks each enabled flag against the host CPU and refuses an
        // engine whose code the host could not run.
        unsafe {
            config.cranelift_flag_enable(flag);
        }
    }
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(256)
            .total_memories(256)
            .total_tables(256)
            .max_memory_size(MEMORY_LIMIT_BYTES)
            // Every call runs in a fresh instance, so resetting a slot after a call is on the
            // hot path. Returning its memory to the kernel (`madvise`) means a TLB shootdown on
            // every core and page faults in the next call. Instead the pages a call touched,
            // found with the PAGEMAP_SCAN ioctl (Linux 6.7+; elsewhere the first bytes are
            // reset with memset), are restored in place, up to KEEP_RESIDENT_BYTES; anything a
            // bigger call touched beyond that is returned to the kernel, in batches.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(64 * 1024)
            .decommit_batch_size(64);
        // Threads are compiled out (wasmtime's `threads` feature is off), so shared memory and
        // atomics can never reach a runtime.
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .cranelift_nan_canonicalization(true)
            .wasm_relaxed_simd(false)
            .wasm_simd(false)
            .max_wasm_stack(MAX_WASM_STACK)
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        pin_code_generation(&mut config);
        match Engine::new(&config) {
            Ok(engine) => engine,
            // Pooling needs virtual address space; fall back to on-demand allocation rather
            // than refusing to start on a constrained machine.
            Err(e) => {
                tracing::warn!("pooling allocator unavailable ({e}); using on-demand instances");
                config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
                Engine::new(&config).unwrap_or_else(|e| {
                    panic!("cannot start the wasm engine: {e:#} (runtimes are compiled for {CODEGEN_FEATURES:?})")
                })
            }
        }
    })
}

/// Compiles, caches and calls runtimes.
pub struct Executor {
    linker: Linker<HostState>,
    cache: Mutex<HashMap<Hash, Arc<Prototype>>>,
    module_store: Option<Arc<dyn ModuleStore>>,
    /// Fuel budgets.
    pub fuel: FuelLimits,
}

impl Executor {
    /// An executor with an optional persistent module cache.
    pub fn new(module_store: Option<Arc<dyn ModuleStore>>) -> Self {
        Self {
            linker: host_functions(),
            cache: Mutex::new(HashMap::new()),
            module_store,
            fuel: FuelLimits::default(),
        }
    }

    /// Static checks only (SPEC §5), with the size limit in force.
    pub fn check_blob(code: &[u8], max_size: usize) -> Result<RuntimeVersion, BlobError> {
        blob::check(code, max_size)
    }

    /// The prototype of `code`: from the memory cache, else from the module store, else checked
    /// and compiled (and stored).
    pub fn prototype(&self, code: &[u8]) -> Result<Arc<Prototype>, ExecError> {
        let code_hash = *blake3::hash(code).as_bytes();
        if let Some(p) = self.lock_cache().get(&code_hash) {
            return Ok(p.clone());
        }
        let version = blob::check_unlimited_cached(code)?;
        let code = &stack_limit::instrument(code)
            .map_err(|e| ExecError::Compile(format!("stack limit instrumentation: {e}")))?;
        let module = self.load_or_compile(&code_hash, code)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| ExecError::Instantiate(format!("{e:#}")))?;
        let warm = warm::Plan::for_module(code).and_then(|plan| {
            warm::Pool::new(plan).ok_or_else(|| "the PAGEMAP_SCAN ioctl is unavailable".into())
        });
        if let Err(why) = &warm {
            tracing::info!(code_hash = %hex::encode(code_hash), "a new instance for every call: {why}");
        }
        let proto = Arc::new(Prototype {
            code_hash,
            version,
            exports: Exports::resolve(&module)?,
            pre,
            warm,
        });
        self.lock_cache().insert(code_hash, proto.clone());
        Ok(proto)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<Hash, Arc<Prototype>>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn store_key(code_hash: &Hash) -> Vec<u8> {
        use std::hash::{Hash as _, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine().precompile_compatibility_hash().hash(&mut h);
        stack_limit::VERSION.hash(&mut h);
        let mut key = code_hash.to_vec();
        key.extend_from_slice(&h.finish().to_le_bytes());
        key
    }

    fn load_or_compile(&self, code_hash: &Hash, code: &[u8]) -> Result<Module, ExecError> {
        let key = Self::store_key(code_hash);
        if let Some(store) = &self.module_store
            && let Some(stored) = store.load(&key)
        {
            // Layout: blake3(serialized) || serialized. A torn or tampered entry is ignored.
            if stored.len() > 32 && blake3::hash(&stored[32..]).as_bytes() == &stored[..32] {
                // SAFETY: the bytes were produced by `Module::serialize` of an engine with
                // the same compatibility hash (part of the key), written by this node into
                // its own database, and their checksum matches what was written.
                match unsafe { Module::deserialize(engine(), &stored[32..]) } {
                    Ok(m) => return Ok(m),
                    Err(e) => tracing::warn!("cached module unusable, recompiling: {e}"),
                }
            }
        }
        let started = std::time::Instant::now();
        let module =
            Module::new(engine(), code).map_err(|e| ExecError::Compile(format!("{e:#}")))?;
        tracing::info!(code_hash = %hex::encode(code_hash), ms = started.elapsed().as_millis() as u64, "compiled runtime");
        if let Some(store) = &self.module_store
            && let Ok(bytes) = module.serialize()
        {
            let mut value = blake3::hash(&bytes).as_bytes().to_vec();
            value.extend_from_slice(&bytes);
            store.store(&key, &value);
        }
        Ok(module)
    }

    /// Calls `entry` with raw input bytes.
    pub fn call_raw(
        &self,
        proto: &Prototype,
        entry: &str,
        input: &[u8],
        ext: &mut dyn Externalities,
        fuel: u64,
    ) -> Result<CallOutcome, ExecError> {
        let index = proto.exports.entry(entry).ok_or_else(|| {
            ExecError::Instantiate(format!("entry point `{entry}`: not exported"))
        })?;
        // SAFETY: erases the borrow's lifetime so the pointer can sit in the `'static` store
        // data. It is cleared before a warm instance is put back, and a fresh instance's store
        // is dropped at the end of this function; no host function runs after either, so the
        // pointer is never used beyond the borrow.
        let ext_ptr: *mut (dyn Externalities + 'static) = unsafe {
            std::mem::transmute::<*mut (dyn Externalities + '_), *mut (dyn Externalities + 'static)>(
                ext,
            )
        };
        if let Ok(pool) = &proto.warm
            // Should instantiation fail (or `warm::MAX_LIVE` be reached), the fresh path below
            // runs the call or reports why it cannot.
            && let Ok(mut warm) = pool.take(&proto.pre, &proto.exports)
        {
            warm.store.data_mut().ext = Some(ext_ptr);
            warm.store
                .set_fuel(fuel)
                .map_err(|e| ExecError::Instantiate(e.to_string()))?;
            let call = Call {
                memory: warm.memory,
                alloc: warm.alloc,
                func: warm.entries[index],
                entry,
            };
            // A failed call drops its instance: whatever it left half done is not restored.
            let outcome = call.run(&mut warm.store, input, fuel)?;
            pool.put_back(warm);
            return Ok(outcome);
        }

        let mut store = new_store(Some(ext_ptr));
        store
            .set_fuel(fuel)
            .map_err(|e| ExecError::Instantiate(e.to_string()))?;
        let instance = proto
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&mut store, entry, fuel, e))?;
        let exports = &proto.exports;
        let call = Call {
            memory: exports.bind_memory(&instance, &mut store)?,
            alloc: Exports::func(&instance, &mut store, &exports.alloc)?,
            func: Exports::func(&instance, &mut store, &exports.entries[index].1)?,
            entry,
        };
        call.run(&mut store, input, fuel)
    }

    /// Whether a compiled module for `code_hash` is in memory.
    pub fn is_compiled(&self, code_hash: &Hash) -> bool {
        self.lock_cache().contains_key(code_hash)
    }

    /// Calls `entry` with a SCALE-encoded input and decodes its SCALE-encoded output.
    pub fn call<I: Encode, O: Decode>(
        &self,
        proto: &Prototype,
        entry: &str,
        input: &I,
        ext: &mut dyn Externalities,
        fuel: u64,
    ) -> Result<O, ExecError> {
        self.call_metered(proto, entry, input, ext, fuel)
            .map(|(out, _)| out)
    }

    /// [`Self::call`], also returning the fuel the call used. A call that fails returns no
    /// count.
    pub fn call_metered<I: Encode, O: Decode>(
        &self,
        proto: &Prototype,
        entry: &str,
        input: &I,
        ext: &mut dyn Externalities,
        fuel: u64,
    ) -> Result<(O, u64), ExecError> {
        let out = self.call_raw(proto, entry, &input.encode(), ext, fuel)?;
        let decoded = O::decode(&mut &out.output[..]).map_err(|e| ExecError::BadOutput {
            entry: entry.into(),
            reason: format!("does not decode: {e}"),
        })?;
        Ok((decoded, out.fuel_used))
    }
}

/// One call of an entry point on an instance: the input written through `vex_alloc`, the
/// entry point run, its result read out of guest memory.
struct Call<'a> {
    memory: Memory,
    alloc: Func,
    func: Func,
    entry: &'a str,
}

impl Call<'_> {
    /// Runs the call on `store`, whose fuel is set to `fuel` (less what instantiating used).
    fn run(
        self,
        store: &mut Store<HostState>,
        input: &[u8],
        fuel: u64,
    ) -> Result<CallOutcome, ExecError> {
        let Call {
            memory,
            alloc,
            func,
            entry,
        } = self;
        let len = u32::try_from(input.len())
            .map_err(|_| ExecError::Instantiate("input too large".into()))?;
        // Calls without `TypedFunc`, whose per-call type lookup takes the engine's type-registry
        // lock (shared by every worker). Params and results share the slots.
        let mut slots = [ValRaw::u32(len), ValRaw::u32(0)];
        // SAFETY: `Exports::resolve` checked that `vex_alloc` is `(i32) -> i32`; `slots` holds
        // its one parameter and has room for its one result.
        unsafe { alloc.call_unchecked(&mut *store, &mut slots[..1]) }
            .map_err(|e| classify(store, entry, fuel, e))?;
        let ptr = slots[0].get_u32();
        memory
            .write(&mut *store, ptr as usize, input)
            .map_err(|_| ExecError::BadOutput {
                entry: entry.into(),
                reason: "vex_alloc returned memory out of bounds".into(),
            })?;
        let mut slots = [ValRaw::u32(ptr), ValRaw::u32(len)];
        // SAFETY: `Exports::resolve` checked that every entry point is `(i32, i32) -> i64`;
        // `slots` holds the two parameters and has room for the result.
        unsafe { func.call_unchecked(&mut *store, &mut slots[..]) }
            .map_err(|e| classify(store, entry, fuel, e))?;
        let packed = slots[0].get_u64();
        let (out_ptr, out_len) = abi::unpack(packed);
        let output = memory
            .data(&*store)
            .get(out_ptr as usize..)
            .and_then(|tail| tail.get(..out_len as usize))
            .ok_or_else(|| ExecError::BadOutput {
                entry: entry.into(),
                reason: format!("result {out_ptr:#x}+{out_len} is outside guest memory"),
            })?
            .to_vec();
        let fuel_used = fuel - store.get_fuel().unwrap_or(0);
        for (level, line) in &store.data().logs {
            log_runtime(*level, line);
        }
        Ok(CallOutcome { output, fuel_used })
    }
}

/// `log_v1`: writes a runtime's log line at its level (0 error … 4 trace) under the `runtime`
/// target.
pub fn log_runtime(level: u32, line: &str) {
    match level {
        0 => tracing::error!(target: "runtime", "{line}"),
        1 => tracing::warn!(target: "runtime", "{line}"),
        2 => tracing::info!(target: "runtime", "{line}"),
        3 => tracing::debug!(target: "runtime", "{line}"),
        _ => tracing::trace!(target: "runtime", "{line}"),
    }
}

/// Turns a wasmtime error into the reason a call failed.
fn classify(
    store: &mut Store<HostState>,
    entry: &str,
    fuel: u64,
    err: wasmtime::Error,
) -> ExecError {
    if let Some(trap) = err.downcast_ref::<Trap>()
        && *trap == Trap::UnreachableCodeReached
        && let Some(height) = store.data().stack_height
        && let Some(slots) = height.get(&mut *store).i32()
        && slots as u32 > stack_limit::STACK_LIMIT_SLOTS
    {
        return ExecError::Trap {
            entry: entry.into(),
            reason: format!(
                "stack limit reached: the call nested deeper than {} slots",
                stack_limit::STACK_LIMIT_SLOTS
            ),
        };
    }
    let state = store.data();
    if let Some(reason) = &state.storage_error {
        return ExecError::Storage {
            entry: entry.into(),
            reason: reason.clone(),
        };
    }
    if let Some(trap) = err.downcast_ref::<Trap>()
        && *trap == Trap::OutOfFuel
    {
        return ExecError::OutOfFuel {
            entry: entry.into(),
            limit: fuel,
        };
    }
    let text = format!("{err:#}");
    if text.contains("memory")
        && (text.contains("grow") || text.contains("limit") || text.contains("minimum"))
    {
        return ExecError::MemoryLimit {
            entry: entry.into(),
            limit_bytes: MEMORY_LIMIT_BYTES,
        };
    }
    let last_error = state
        .logs
        .iter()
        .rev()
        .find(|(l, _)| *l == 0)
        .map(|(_, m)| m.clone());
    let reason = match (err.downcast_ref::<Trap>(), last_error) {
        (Some(trap), Some(msg)) => format!("{trap} ({msg})"),
        (Some(trap), None) => trap.to_string(),
        (None, Some(msg)) => format!("{text} ({msg})"),
        (None, None) => text,
    };
    ExecError::Trap {
        entry: entry.into(),
        reason,
    }
}

/// `ed25519_verify_v1`: single verification under ZIP-215 (the rule batches must match).
pub fn ed25519_verify(message: &[u8], signature: &[u8; 64], key: &[u8; 32]) -> bool {
    ed25519_consensus::VerificationKey::try_from(*key)
        .map(|vk| {
            vk.verify(&ed25519_consensus::Signature::from(*signature), message)
                .is_ok()
        })
        .unwrap_or(false)
}

type Caller<'a> = wasmtime::Caller<'a, HostState>;

fn guest_range(
    mem_len: usize,
    ptr: u32,
    len: u32,
    what: &str,
) -> wasmtime::Result<std::ops::Range<usize>> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize).filter(|e| *e <= mem_len);
    match end {
        Some(end) => Ok(start..end),
        None => Err(wasmtime::Error::msg(format!(
            "{what}: guest range {ptr:#x}+{len} out of bounds"
        ))),
    }
}

/// Runs `f` with guest memory and the externalities of the current call.
fn with_ext<R>(
    caller: &mut Caller<'_>,
    f: impl FnOnce(&mut [u8], &mut dyn Externalities, &mut Option<String>) -> wasmtime::Result<R>,
) -> wasmtime::Result<R> {
    let memory = caller
        .data()
        .memory
        .ok_or_else(|| wasmtime::Error::msg("host function called before memory export"))?;
    let (mem, state) = memory.data_and_store_mut(caller);
    let ext = state
        .ext
        .ok_or_else(|| wasmtime::Error::msg("no storage attached to this call"))?;
    // SAFETY: see `Executor::call_raw`; the pointer is valid for the whole call and no other
    // reference to the externalities exists while a host function runs.
    let ext = unsafe { &mut *ext };
    f(mem, ext, &mut state.storage_error)
}

/// Writes `value` into the guest buffer if it fits; returns its length, or -1 for `None`.
fn write_result(
    mem: &mut [u8],
    out_ptr: u32,
    out_cap: u32,
    value: Option<Vec<u8>>,
    what: &str,
) -> wasmtime::Result<i64> {
    let Some(value) = value else { return Ok(-1) };
    if value.len() <= out_cap as usize {
        let r = guest_range(mem.len(), out_ptr, value.len() as u32, what)?;
        mem[r].copy_from_slice(&value);
    }
    Ok(value.len() as i64)
}

/// Refuses a block total's name longer than [`abi::MAX_TOTAL_NAME`].
pub fn check_total_name(name: &[u8]) -> Result<(), String> {
    if name.len() > abi::MAX_TOTAL_NAME {
        return Err(format!(
            "a block total's name is {} bytes, at most {} allowed",
            name.len(),
            abi::MAX_TOTAL_NAME
        ));
    }
    Ok(())
}

fn storage_failed(slot: &mut Option<String>, e: String) -> wasmtime::Error {
    *slot = Some(e.clone());
    wasmtime::Error::msg(e)
}

/// The host functions of ABI version 1 (see `vexidus_runtime_api::abi`).
fn host_functions() -> Linker<HostState> {
    let mut linker = Linker::new(engine());
    let m = abi::HOST_MODULE;
    let result = (|| -> wasmtime::Result<()> {
        linker.func_wrap(
            m,
            "storage_get_v1",
            |mut c: Caller<'_>, kp: u32, kl: u32, op: u32, oc: u32| {
                with_ext(&mut c, |mem, ext, err| {
                    let key = guest_range(mem.len(), kp, kl, "storage_get_v1 key")?;
                    let value = ext.get(&mem[key]).map_err(|e| storage_failed(err, e))?;
                    write_result(mem, op, oc, value, "storage_get_v1 out")
                })
            },
        )?;
        linker.func_wrap(
            m,
            "storage_set_v1",
            |mut c: Caller<'_>, kp: u32, kl: u32, vp: u32, vl: u32| {
                with_ext(&mut c, |mem, ext, _| {
                    let key = guest_range(mem.len(), kp, kl, "storage_set_v1 key")?;
                    let val = guest_range(mem.len(), vp, vl, "storage_set_v1 value")?;
                    ext.set(&mem[key], &mem[val]);
                    Ok(())
                })
            },
        )?;
        linker.func_wrap(
            m,
            "storage_remove_v1",
            |mut c: Caller<'_>, kp: u32, kl: u32| {
                with_ext(&mut c, |mem, ext, _| {
                    let key = guest_range(mem.len(), kp, kl, "storage_remove_v1 key")?;
                    ext.remove(&mem[key]);
                    Ok(())
                })
            },
        )?;
        linker.func_wrap(
            m,
            "storage_next_key_v1",
            |mut c: Caller<'_>, kp: u32, kl: u32, op: u32, oc: u32| {
                with_ext(&mut c, |mem, ext, err| {
                    let key = guest_range(mem.len(), kp, kl, "storage_next_key_v1 key")?;
                    let next = ext
                        .next_key(&mem[key])
                        .map_err(|e| storage_failed(err, e))?;
                    write_result(mem, op, oc, next, "storage_next_key_v1 out")
                })
            },
        )?;
        linker.func_wrap(
            m,
            "blake3_v1",
            |mut c: Caller<'_>, p: u32, l: u32, o: u32| {
                with_ext(&mut c, |mem, _, _| {
                    let digest =
                        *blake3::hash(&mem[guest_range(mem.len(), p, l, "blake3_v1 input")?])
                            .as_bytes();
                    let out = guest_range(mem.len(), o, 32, "blake3_v1 out")?;
                    mem[out].copy_from_slice(&digest);
                    Ok(())
                })
            },
        )?;
        linker.func_wrap(
            m,
            "sha256_v1",
            |mut c: Caller<'_>, p: u32, l: u32, o: u32| {
                with_ext(&mut c, |mem, _, _| {
                    use sha2::Digest;
                    let digest = sha2::Sha256::digest(
                        &mem[guest_range(mem.len(), p, l, "sha256_v1 input")?],
                    );
                    let out = guest_range(mem.len(), o, 32, "sha256_v1 out")?;
                    mem[out].copy_from_slice(&digest);
                    Ok(())
                })
            },
        )?;
        linker.func_wrap(
            m,
            "ed25519_verify_v1",
            |mut c: Caller<'_>, mp: u32, ml: u32, sp: u32, pp: u32| {
                with_ext(&mut c, |mem, _, _| {
                    let msg = &mem[guest_range(mem.len(), mp, ml, "ed25519_verify_v1 msg")?];
                    let sig: [u8; 64] =
                        mem[guest_range(mem.len(), sp, 64, "ed25519_verify_v1 sig")?].try_into()?;
                    let pk: [u8; 32] =
                        mem[guest_range(mem.len(), pp, 32, "ed25519_verify_v1 key")?].try_into()?;
                    Ok(ed25519_verify(msg, &sig, &pk) as u32)
                })
            },
        )?;
        linker.func_wrap(
            m,
            "runtime_check_v1",
            |mut c: Caller<'_>, cp: u32, cl: u32, op: u32, oc: u32| {
                with_ext(&mut c, |mem, _, _| {
                    let code = &mem[guest_range(mem.len(), cp, cl, "runtime_check_v1 code")?];
                    let verdict: Result<RuntimeVersion, String> =
                        blob::check_unlimited_cached(code).map_err(|e| e.to_string());
                    write_result(mem, op, oc, Some(verdict.encode()), "runtime_check_v1 out")
                })
            },
        )?;
        linker.func_wrap(
            m,
            "block_total_add_v1",
            |mut c: Caller<'_>, np: u32, nl: u32, ap: u32| {
                with_ext(&mut c, |mem, ext, _| {
                    let name = &mem[guest_range(mem.len(), np, nl, "block_total_add_v1 name")?];
                    let amount = guest_range(mem.len(), ap, 16, "block_total_add_v1 amount")?;
                    let amount = u128::from_le_bytes(mem[amount].try_into()?);
                    check_total_name(name)
                        .and_then(|()| ext.add_to_total(name, amount))
                        .map_err(|e| wasmtime::Error::msg(format!("block_total_add_v1: {e}")))
                })
            },
        )?;
        linker.func_wrap(
            m,
            "block_total_v1",
            |mut c: Caller<'_>, np: u32, nl: u32, op: u32| {
                with_ext(&mut c, |mem, ext, _| {
                    let name = &mem[guest_range(mem.len(), np, nl, "block_total_v1 name")?];
                    let total = check_total_name(name)
                        .and_then(|()| ext.total(name))
                        .map_err(|e| wasmtime::Error::msg(format!("block_total_v1: {e}")))?;
                    let out = guest_range(mem.len(), op, 16, "block_total_v1 out")?;
                    mem[out].copy_from_slice(&total.to_le_bytes());
                    Ok(())
                })
            },
        )?;
        linker.func_wrap(
            m,
            "log_v1",
            |mut c: Caller<'_>, level: u32, p: u32, l: u32| {
                let memory = c
                    .data()
                    .memory
                    .ok_or_else(|| wasmtime::Error::msg("no memory"))?;
                let (mem, state) = memory.data_and_store_mut(&mut c);
                let bytes = &mem[guest_range(mem.len(), p, l, "log_v1")?];
                if state.logs.len() < MAX_LOG_LINES {
                    let mut line = String::from_utf8_lossy(bytes).into_owned();
                    line.truncate(MAX_LOG_LINE);
                    state.logs.push((level, line));
                }
                Ok(())
            },
        )?;
        Ok(())
    })();
    result.expect("host function signatures are fixed at compile time");
    linker
}

/// An [`Externalities`] over an in-memory map, for tests and one-off calls.
#[derive(Default, Debug, Clone)]
pub struct MemoryExt {
    /// The state.
    pub map: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Externalities for MemoryExt {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Ok(self.map.get(key).cloned())
    }
    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.map.insert(key.to_vec(), value.to_vec());
    }
    fn remove(&mut self, key: &[u8]) {
        self.map.remove(key);
    }
    fn next_key(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        use std::ops::Bound;
        Ok(self
            .map
            .range::<[u8], _>((Bound::Excluded(key), Bound::Unbounded))
            .next()
            .map(|(k, _)| k.clone()))
    }
}
