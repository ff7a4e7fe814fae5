//! The per-peer guard every received message passes first, driven as a stream of messages from
//! a handful of peers over time: it must never panic, and never keep more peer records than
//! its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vexidus_network::guard::{MAX_RECORDS, PeerGuard};
use vexidus_network::wire::Gossip;

fuzz_target!(|data: &[u8]| {
    let mut guard = PeerGuard::new(50);
    let mut now = 0u64;
    // Each message: peer (2 bytes; the top bit makes it a request), time step (1 byte,
    // ×100 ms), length (1 byte), then its bytes.
    let mut rest = data;
    while let [p0, p1, step, len, tail @ ..] = rest {
        let len = (*len as usize).min(tail.len());
        let (message, after) = tail.split_at(len);
        now += u64::from(*step) * 100;
        let peer = [p0 & 0x7f, *p1];
        if p0 & 0x80 == 0 {
            let _ = guard.admit::<Gossip>(&peer, message, now);
        } else {
            let _ = guard.admit_request::<Gossip>(&peer, message, now);
        }
        guard.expire(now);
        let _ = guard.take_new_bans();
        rest = after;
    }
    assert!(guard.records() <= MAX_RECORDS);
});
