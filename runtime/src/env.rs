//! `HostEnv`: the runtime's [`Env`] over the host functions
//! of ABI version 1 (inside WebAssembly only).

pub use vexidus_runtime_api::guest::Env;

#[cfg(target_arch = "wasm32")]
pub use wasm::HostEnv;

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::Env;
    use alloc::{string::String, vec::Vec};
    use parity_scale_codec::Decode;
    use vexidus_runtime_api::RuntimeVersion;

    #[link(wasm_import_module = "vexidus")]
    unsafe extern "C" {
        fn storage_get_v1(key_ptr: u32, key_len: u32, out_ptr: u32, out_cap: u32) -> i64;
        fn storage_set_v1(key_ptr: u32, key_len: u32, val_ptr: u32, val_len: u32);
        fn storage_remove_v1(key_ptr: u32, key_len: u32);
        fn storage_next_key_v1(key_ptr: u32, key_len: u32, out_ptr: u32, out_cap: u32) -> i64;
        fn blake3_v1(ptr: u32, len: u32, out_ptr: u32);
        fn ed25519_verify_v1(msg_ptr: u32, msg_len: u32, sig_ptr: u32, pk_ptr: u32) -> i32;
        fn log_v1(level: u32, ptr: u32, len: u32);
        fn runtime_check_v1(code_ptr: u32, code_len: u32, out_ptr: u32, out_cap: u32) -> i64;
        fn block_total_add_v1(name_ptr: u32, name_len: u32, amount_ptr: u32);
        fn block_total_v1(name_ptr: u32, name_len: u32, out_ptr: u32);
    }

    /// The host functions of ABI version 1.
    pub struct HostEnv;

    /// Calls a "write into my buffer" host function, growing the buffer once if the first guess
    /// was too small.
    fn read_with(mut f: impl FnMut(u32, u32) -> i64) -> Option<Vec<u8>> {
        let mut buf: Vec<u8> = Vec::with_capacity(128);
        let len = f(buf.as_mut_ptr() as u32, buf.capacity() as u32);
        if len < 0 {
            return None;
        }
        let len = len as usize;
        if len > buf.capacity() {
            buf = Vec::with_capacity(len);
            let again = f(buf.as_mut_ptr() as u32, buf.capacity() as u32);
            debug_assert_eq!(again as usize, len);
        }
        // SAFETY: the host wrote exactly `len` bytes into the buffer, whose capacity is >= len.
        unsafe { buf.set_len(len) };
        Some(buf)
    }

    impl Env for HostEnv {
        fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
            // SAFETY: the pointers are valid guest memory for the lengths given.
            read_with(|out, cap| unsafe {
                storage_get_v1(key.as_ptr() as u32, key.len() as u32, out, cap)
            })
        }
        fn set(&mut self, key: &[u8], value: &[u8]) {
            // SAFETY: valid guest memory for the lengths given.
            unsafe {
                storage_set_v1(
                    key.as_ptr() as u32,
                    key.len() as u32,
                    value.as_ptr() as u32,
                    value.len() as u32,
                )
            }
        }
        fn remove(&mut self, key: &[u8]) {
            // SAFETY: valid guest memory for the length given.
            unsafe { storage_remove_v1(key.as_ptr() as u32, key.len() as u32) }
        }
        fn next_key(&mut self, key: &[u8]) -> Option<Vec<u8>> {
            // SAFETY: the pointers are valid guest memory for the lengths given.
            read_with(|out, cap| unsafe {
                storage_next_key_v1(key.as_ptr() as u32, key.len() as u32, out, cap)
            })
        }
        fn blake3(&self, data: &[u8]) -> [u8; 32] {
            let mut out = [0u8; 32];
            // SAFETY: `out` is 32 writable bytes; `data` valid for its length.
            unsafe {
                blake3_v1(
                    data.as_ptr() as u32,
                    data.len() as u32,
                    out.as_mut_ptr() as u32,
                )
            };
            out
        }
        fn ed25519_verify(&self, message: &[u8], signature: &[u8; 64], key: &[u8; 32]) -> bool {
            // SAFETY: valid guest memory: `message` for its length, 64 and 32 bytes.
            unsafe {
                ed25519_verify_v1(
                    message.as_ptr() as u32,
                    message.len() as u32,
                    signature.as_ptr() as u32,
                    key.as_ptr() as u32,
                ) == 1
            }
        }
        fn log(&self, level: u32, message: &str) {
            // SAFETY: valid guest memory for the length given.
            unsafe { log_v1(level, message.as_ptr() as u32, message.len() as u32) }
        }
        fn check_runtime(&self, code: &[u8]) -> Result<RuntimeVersion, String> {
            // SAFETY: the pointers are valid guest memory for the lengths given.
            let out = read_with(|out, cap| unsafe {
                runtime_check_v1(code.as_ptr() as u32, code.len() as u32, out, cap)
            });
            match out.map(|bytes| Result::<RuntimeVersion, String>::decode(&mut &bytes[..])) {
                Some(Ok(verdict)) => verdict,
                _ => Err("the host returned no verdict on the runtime blob".into()),
            }
        }
        fn add_to_block_total(&mut self, name: &[u8], amount: u128) {
            let amount = amount.to_le_bytes();
            // SAFETY: valid guest memory: `name` for its length, 16 bytes of `amount`.
            unsafe {
                block_total_add_v1(
                    name.as_ptr() as u32,
                    name.len() as u32,
                    amount.as_ptr() as u32,
                )
            }
        }
        fn block_total(&mut self, name: &[u8]) -> u128 {
            let mut out = [0u8; 16];
            // SAFETY: `out` is 16 writable bytes; `name` valid for its length.
            unsafe {
                block_total_v1(
                    name.as_ptr() as u32,
                    name.len() as u32,
                    out.as_mut_ptr() as u32,
                )
            };
            u128::from_le_bytes(out)
        }
    }
}
