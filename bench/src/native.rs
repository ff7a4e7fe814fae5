//! The runtime's [`Env`] over the host's [`Externalities`], for running the runtime crate
//! natively (compiled into the host, not to wasm): the baseline the execution benchmark
//! measures the wasm runtime against, and a way to step through runtime logic in a debugger
//! over real node storage.

use vexidus_executor::Externalities;
use vexidus_runtime_api::RuntimeVersion;
use vexidus_runtime_api::guest::Env;

/// Host storage and the host's crypto as the runtime's [`Env`], with the same semantics as the
/// host functions of ABI version 1.
pub struct NativeEnv<'a> {
    ext: &'a mut dyn Externalities,
    /// The first storage error, or block-total call the host refused (the runtime's `Env`
    /// cannot return one; the wasm executor traps on it, a native caller checks this after the
    /// call).
    pub storage_error: Option<String>,
}

impl<'a> NativeEnv<'a> {
    /// Storage `ext` as an [`Env`].
    pub fn new(ext: &'a mut dyn Externalities) -> Self {
        Self {
            ext,
            storage_error: None,
        }
    }

    fn failed<T>(&mut self, r: Result<Option<T>, String>) -> Option<T> {
        r.unwrap_or_else(|e| {
            self.storage_error.get_or_insert(e);
            None
        })
    }
}

impl Env for NativeEnv<'_> {
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let r = self.ext.get(key);
        self.failed(r)
    }
    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.ext.set(key, value);
    }
    fn remove(&mut self, key: &[u8]) {
        self.ext.remove(key);
    }
    fn next_key(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let r = self.ext.next_key(key);
        self.failed(r)
    }
    fn blake3(&self, data: &[u8]) -> [u8; 32] {
        *blake3::hash(data).as_bytes()
    }
    fn ed25519_verify(&self, message: &[u8], signature: &[u8; 64], key: &[u8; 32]) -> bool {
        vexidus_executor::ed25519_verify(message, signature, key)
    }
    fn log(&self, level: u32, message: &str) {
        vexidus_executor::log_runtime(level, message);
    }
    fn check_runtime(&self, code: &[u8]) -> Result<RuntimeVersion, String> {
        vexidus_executor::blob::check_unlimited_cached(code).map_err(|e| e.to_string())
    }
    fn add_to_block_total(&mut self, name: &[u8], amount: u128) {
        let r = vexidus_executor::check_total_name(name)
            .and_then(|()| self.ext.add_to_total(name, amount))
            .map(Some);
        self.failed(r);
    }
    fn block_total(&mut self, name: &[u8]) -> u128 {
        let r = vexidus_executor::check_total_name(name)
            .and_then(|()| self.ext.total(name))
            .map(Some);
        self.failed(r).unwrap_or(0)
    }
}
