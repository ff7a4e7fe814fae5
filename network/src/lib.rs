//! The Vexidus wire protocol (SPEC §10), independent of the transport.
//!
//! - [`wire`]: gossip messages (`blocks` and `votes` topics) and sync messages; Borsh behind the
//!   `VX` magic, and JSON accepted on receipt so old and new binaries interoperate during a
//!   rolling upgrade.
//! - [`guard`]: the per-peer guard that every received message passes first: a size cap, a
//!   rate limit, a ring of the last 200 message hashes per peer, scores, and permanent bans at
//!   zero; messages from a banned peer are dropped unread.
//!
//! The libp2p transport (QUIC, GossipSub, request-response, identify) plugs these in.

pub mod guard;
pub mod service;
pub mod wire;
