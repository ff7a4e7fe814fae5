//! The contract between the Vexidus host and its WebAssembly runtime.
//!
//! Everything both sides must agree on lives here and only here:
//!
//! - [`abi`]: the normative host⇄runtime ABI — entry points, host functions, the packed
//!   pointer/length convention, the `vexidus_runtime_version` custom section and the supported
//!   ABI versions;
//! - [`primitives`], [`transaction`], [`header`], [`block`], [`state`], [`vote`]: the shared
//!   types, each defined once;
//! - [`keys`] and [`signing`] (with `std`): Ed25519 keys and verification, and the signing of
//!   transactions and headers the host and the CLI use.
//!
//! # Codecs
//!
//! Two binary codecs are used, each for one job, and a type that crosses both boundaries derives
//! both:
//!
//! - **Borsh** for everything that is signed or gossiped (transactions, blocks). Borsh is
//!   canonical: one value has exactly one encoding, so a hash or signature over it is well defined.
//!   Enum discriminants of [`transaction::Operation`] are fixed forever.
//! - **SCALE** (`parity-scale-codec`) for every value that crosses the ABI and every value the
//!   runtime keeps in state.
//!
//! The crate is `no_std` + `alloc` so the runtime can use it inside WebAssembly.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod abi;
pub mod block;
pub mod domains;
pub mod guest;
pub mod guest_alloc;
pub mod header;
pub mod primitives;
pub mod queries;
pub mod schedule;
#[cfg(feature = "std")]
pub mod serde_amount;
pub mod state;
pub mod transaction;
pub mod upgrade_name;
pub mod vote;

#[cfg(feature = "std")]
pub mod genesis_file;
#[cfg(feature = "std")]
pub mod key_file;
#[cfg(feature = "std")]
pub mod keys;
#[cfg(feature = "std")]
pub mod signing;

pub use block::{Block, Header, Receipt};
pub use primitives::{Address, Hash, PublicKey, Signature};
pub use state::{
    AccountInfo, GenesisConfig, GovernanceMode, GovernanceSettings, Parameters, RuntimeVersion,
    ValidatorInfo,
};
pub use transaction::{Operation, SignedTransaction, Transaction};

/// Number of nanoVXS in one VXS (the token has 9 decimals).
pub const NANO_PER_VXS: u128 = 1_000_000_000;
