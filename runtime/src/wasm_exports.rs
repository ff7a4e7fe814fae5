//! The WebAssembly face of the runtime: exported entry points, allocator, panic handler and
//! the version section. See `vexidus_runtime_api::abi` for the convention.

use crate::env::HostEnv;
use crate::executive;
use alloc::vec::Vec;
use parity_scale_codec::{Decode, Encode};
use vexidus_runtime_api::abi::{self, encode_version_section, version_section_len};

#[global_allocator]
static ALLOCATOR: vexidus_runtime_api::guest_alloc::GuestAllocator =
    vexidus_runtime_api::guest_alloc::GuestAllocator::new();

#[used]
#[unsafe(link_section = "vexidus_runtime_version")]
static VERSION_SECTION: [u8; version_section_len(crate::SPEC_NAME.len())] = encode_version_section(
    crate::SPEC_NAME,
    crate::SPEC_VERSION,
    crate::IMPL_VERSION,
    abi::ABI_VERSION,
);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use crate::env::Env;
    let msg = alloc::format!("runtime panicked: {info}");
    HostEnv.log(0, &msg);
    core::arch::wasm32::unreachable()
}

/// Allocates `len` bytes for the host to write an input into. Never freed: every call runs in a
/// fresh instance.
#[unsafe(no_mangle)]
pub extern "C" fn vex_alloc(len: u32) -> u32 {
    let mut v: Vec<u8> = Vec::with_capacity(len as usize);
    let ptr = v.as_mut_ptr();
    core::mem::forget(v);
    ptr as u32
}

fn input<T: Decode>(ptr: u32, len: u32) -> T {
    // SAFETY: the host placed `len` bytes at `ptr`, in memory it obtained from `vex_alloc`.
    let bytes = unsafe { core::slice::from_raw_parts(ptr as *const u8, len as usize) };
    match T::decode(&mut &bytes[..]) {
        Ok(v) => v,
        Err(_) => panic!("the host passed an argument that does not decode"),
    }
}

fn output<T: Encode>(value: &T) -> u64 {
    let bytes = value.encode();
    let packed = abi::pack(bytes.as_ptr() as u32, bytes.len() as u32);
    core::mem::forget(bytes);
    packed
}

macro_rules! entry {
    ($name:ident, $f:path) => {
        #[doc = concat!("ABI entry point `", stringify!($name), "`.")]
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(ptr: u32, len: u32) -> u64 {
            output(&$f(&mut HostEnv, input(ptr, len)))
        }
    };
}

entry!(vex_genesis_build, executive::genesis_build);
entry!(vex_begin_block, executive::begin_block);
entry!(vex_apply_transaction, executive::apply_transaction);
entry!(vex_end_block, executive::end_block);
entry!(vex_validate_transaction, executive::validate_transaction);
entry!(vex_query, executive::query);
entry!(vex_migrate, executive::migrate);
