//! The Vexidus node: executor, storage, chain, transaction pool, JSON-RPC and the pieces the
//! `vexidus-node` binary wires together.
pub mod executor;

/// The genesis runtime blob, built from `runtime/` by this crate's build script.
pub const GENESIS_RUNTIME: &[u8] = include_bytes!(env!("VEXIDUS_RUNTIME_WASM"));
pub mod chain;
pub mod genesis;
pub mod harness;
pub mod node;
pub mod pool;
pub mod rpc;
pub mod storage;
