//! The Vexidus wire protocol (SPEC §10), independent of the transport.
//!
//! - [`wire`]: gossip messages (`blocks` and `votes` topics) and sync messages; Borsh behind the
//!   `VX` magic, and JSON accepted on receipt so old and new binaries interoperate during a
//!   rolling upgrade.
//! - [`guard`]: the per-peer guard that every received message passes first: a size cap, a
//!   rate limit, a ring of the last 200 message hashes per peer, scores that recover, and bans
//!   at zero that expire (10 minutes, doubling with each repeat to a day); messages from a
//!   banned peer are dropped unread.
//! - [`limits`]: one connection per peer and a cap of inbound connections per IP address.
//!
//! The libp2p transport (QUIC, GossipSub, request-response, identify) plugs these in.

#![forbid(unsafe_code)]

pub mod guard;
#[cfg(feature = "transport")]
pub mod limits;
#[cfg(feature = "transport")]
pub mod service;
pub mod wire;
