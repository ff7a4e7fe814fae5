//! The Vexidus runtime: the state-transition function, compiled to WebAssembly and stored on
//! chain under `:code`.
//!
//! The logic ([`executive`], [`dispatch`]) is written against [`env::Env`], so the same code runs
//! inside wasm (through the host functions of the ABI) and natively. The wasm build exports the
//! entry points of [`vexidus_runtime_api::abi`] and carries its [`version()`] in the
//! `vexidus_runtime_version` custom section.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod context;
pub mod dispatch;
pub mod env;
pub mod executive;
pub mod jail;
pub mod liveness;
pub mod staking;
pub mod storage;

#[cfg(target_arch = "wasm32")]
mod wasm_exports;

/// The runtime family name; upgrades must keep it.
pub const SPEC_NAME: &str = "vexidus";
/// The version of the state-transition rules.
#[cfg(not(any(
    feature = "next-example",
    feature = "next-bad-migration",
    feature = "next-trap",
    feature = "next-short-jail"
)))]
pub const SPEC_VERSION: u32 = 2;
/// The version of the state-transition rules (the next version, for upgrade tests).
#[cfg(any(
    feature = "next-example",
    feature = "next-bad-migration",
    feature = "next-trap",
    feature = "next-short-jail"
))]
pub const SPEC_VERSION: u32 = 3;
/// The implementation version.
pub const IMPL_VERSION: u32 = 1;

/// This runtime's version, as carried in its custom section.
pub fn version() -> vexidus_runtime_api::RuntimeVersion {
    vexidus_runtime_api::RuntimeVersion {
        spec_name: SPEC_NAME.into(),
        spec_version: SPEC_VERSION,
        impl_version: IMPL_VERSION,
        abi_version: vexidus_runtime_api::abi::ABI_VERSION,
    }
}
