//! Transports on loopback QUIC: gossip in both encodings, block sync; peers that send garbage,
//! replay messages or send oversized ones get banned and disconnected while the node keeps
//! working with the others; the validator allowlist admits blocks and votes only from proven
//! peers; gossip is forwarded only once the node has validated it, and a rejected message
//! bans only the peer it came from.

use libp2p::multiaddr::Protocol;
use std::time::Duration;
use tokio::time::{Instant, timeout};
use vexidus_network::guard::{Dropped, Offence};
use vexidus_network::service::{
    BLOCKS_TOPIC, NetworkConfig, NetworkEvent, NetworkHandle, VOTES_TOPIC, Verdict, start,
};
use vexidus_network::wire::{
    Encoding, Gossip, MAX_MESSAGE_BYTES, SyncRequest, SyncResponse, encode, encode_json,
};
use vexidus_runtime_api::signing::Keypair;
use vexidus_runtime_api::vote::{SignedVote, VoteBody, VoteStage};
use vexidus_runtime_api::{Block, Header, PublicKey, Signature};

const WAIT: Duration = Duration::from_secs(20);

fn config(bootnodes: Vec<libp2p::Multiaddr>) -> NetworkConfig {
    NetworkConfig {
        keypair: libp2p::identity::Keypair::generate_ed25519(),
        listen: "/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("multiaddr"),
        bootnodes,
        max_messages_per_second: 100,
        request_timeout: Duration::from_secs(5),
        heartbeat: Duration::from_millis(100),
        enforce_validator_allowlist: false,
        max_peers: vexidus_network::service::DEFAULT_MAX_PEERS,
        max_peers_per_ip: vexidus_network::service::DEFAULT_MAX_PEERS_PER_IP,
    }
}

fn addr_of(h: &NetworkHandle) -> libp2p::Multiaddr {
    h.listen_addrs[0].clone().with(Protocol::P2p(h.peer_id))
}

/// A block (the transport does not check it; the node does).
fn block(height: u64) -> Block {
    Block {
        header: Header {
            parent_hash: [1; 32],
            height,
            timestamp_ms: 5,
            proposer: PublicKey::default(),
            state_root: [2; 32],
            transactions_root: [3; 32],
            receipts_root: [4; 32],
        },
        transactions: vec![],
        signature: Signature::default(),
    }
}

fn vote(height: u64) -> Gossip {
    Gossip::Vote(SignedVote::sign(
        VoteBody {
            stage: VoteStage::Prevote,
            height,
            block: [height as u8; 32],
        },
        &Keypair::from_seed([4; 32]),
        "c",
    ))
}

/// Publishes `bytes` from `from` every 200 ms (GossipSub needs the subscriptions exchanged
/// first) until `to` reports an event matching `pred`; returns that event.
async fn deliver(
    from: &NetworkHandle,
    to: &mut NetworkHandle,
    bytes: Vec<u8>,
    pred: impl Fn(&NetworkEvent) -> bool,
) -> NetworkEvent {
    deliver_on(VOTES_TOPIC, from, to, bytes, pred).await
}

/// [`deliver`] on `topic`.
async fn deliver_on(
    topic: &'static str,
    from: &NetworkHandle,
    to: &mut NetworkHandle,
    bytes: Vec<u8>,
    pred: impl Fn(&NetworkEvent) -> bool,
) -> NetworkEvent {
    let deadline = Instant::now() + WAIT;
    loop {
        from.publish_raw(topic, bytes.clone()).await;
        let until = Instant::now() + Duration::from_millis(200);
        while let Ok(Some(e)) = timeout(
            until.saturating_duration_since(Instant::now()),
            to.events.recv(),
        )
        .await
        {
            if pred(&e) {
                return e;
            }
        }
        assert!(Instant::now() < deadline, "message never arrived");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_sync_and_bans_over_quic_on_loopback() {
    let mut a = start(config(vec![])).await.expect("a");
    let b = start(config(vec![addr_of(&a)])).await.expect("b");
    let c = start(config(vec![addr_of(&a)])).await.expect("c");

    // Borsh, then the JSON fallback, both from B.
    let e = deliver(
        &b,
        &mut a,
        vexidus_network::wire::encode(&vote(1)),
        |e| matches!(e, NetworkEvent::Gossip { message, .. } if **message == vote(1)),
    )
    .await;
    assert!(
        matches!(e, NetworkEvent::Gossip { peer, encoding: Encoding::Borsh, .. } if peer == b.peer_id)
    );
    let e = deliver(
        &b,
        &mut a,
        encode_json(&vote(2)),
        |e| matches!(e, NetworkEvent::Gossip { message, .. } if **message == vote(2)),
    )
    .await;
    assert!(matches!(
        e,
        NetworkEvent::Gossip {
            encoding: Encoding::Json,
            ..
        }
    ));

    // B syncs a block from A.
    let block = block(1);
    let answered = block.clone();
    let a_peer = a.peer_id;
    let request = tokio::spawn(async move {
        let r = b
            .request(a_peer, SyncRequest::Blocks { from: 1, max: 10 })
            .await;
        (b, r)
    });
    let deadline = Instant::now() + WAIT;
    let ticket = loop {
        match timeout(
            deadline.saturating_duration_since(Instant::now()),
            a.events.recv(),
        )
        .await
        {
            Ok(Some(NetworkEvent::SyncRequest {
                request, ticket, ..
            })) => {
                assert_eq!(request, SyncRequest::Blocks { from: 1, max: 10 });
                break ticket;
            }
            Ok(Some(_)) => continue,
            _ => panic!("no sync request arrived"),
        }
    };
    a.respond(
        ticket,
        SyncResponse::Blocks {
            blocks: vec![answered],
            certificate: vec![],
        },
    )
    .await;
    let (b, response) = request.await.expect("join");
    assert_eq!(
        response,
        Ok(SyncResponse::Blocks {
            blocks: vec![block],
            certificate: vec![],
        })
    );

    // C sends garbage until A bans it.
    let mut n = 0u32;
    let e = loop {
        n += 1;
        let e = deliver(&c, &mut a, format!("garbage {n}").into_bytes(), |e| {
            matches!(
                e,
                NetworkEvent::Dropped { .. } | NetworkEvent::Banned { .. }
            )
        })
        .await;
        if let NetworkEvent::Banned { peer } = e {
            break peer;
        }
        assert!(
            matches!(
                e,
                NetworkEvent::Dropped {
                    reason: Dropped::Garbage(_),
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(n < 20, "C should be banned by now");
    };
    assert_eq!(e, c.peer_id);
    // A keeps working with B, and no longer hears C.
    let deadline = Instant::now() + WAIT;
    while a.peers().await.contains(&c.peer_id) {
        assert!(Instant::now() < deadline, "C still connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    deliver(
        &b,
        &mut a,
        vexidus_network::wire::encode(&vote(3)),
        |e| matches!(e, NetworkEvent::Gossip { message, .. } if **message == vote(3)),
    )
    .await;
    c.publish_raw(VOTES_TOPIC, vexidus_network::wire::encode(&vote(4)))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(e) = a.events.try_recv() {
        assert!(
            !matches!(&e, NetworkEvent::Gossip { peer, .. } if *peer == c.peer_id),
            "a banned peer was heard: {e:?}"
        );
    }
}

/// Sends `bytes` from `from` until `to` bans it; returns how many were dropped for `reason`
/// first.
async fn until_banned(
    from: &NetworkHandle,
    to: &mut NetworkHandle,
    bytes: Vec<u8>,
    reason: fn(&Dropped) -> bool,
) -> u32 {
    let mut dropped = 0;
    loop {
        let e = deliver(from, to, bytes.clone(), |e| {
            matches!(e, NetworkEvent::Dropped { peer, .. } | NetworkEvent::Banned { peer } if *peer == from.peer_id)
        })
        .await;
        match e {
            NetworkEvent::Banned { .. } => return dropped,
            NetworkEvent::Dropped { reason: r, .. } => {
                assert!(reason(&r), "dropped for another reason: {r:?}");
                dropped += 1;
            }
            other => panic!("{other:?}"),
        }
        assert!(dropped < 40, "never banned");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_oversized_messages_get_peers_banned() {
    let mut a = start(config(vec![])).await.expect("a");
    let replayer = start(config(vec![addr_of(&a)])).await.expect("replayer");
    let flooder = start(config(vec![addr_of(&a)])).await.expect("flooder");
    let honest = start(config(vec![addr_of(&a)])).await.expect("honest");

    // The same vote again and again: the first is heard, the replays cost points until a ban
    // (100 points, 5 per replay).
    let bytes = encode(&vote(9));
    deliver(
        &replayer,
        &mut a,
        bytes.clone(),
        |e| matches!(e, NetworkEvent::Gossip { message, .. } if **message == vote(9)),
    )
    .await;
    let replays = until_banned(&replayer, &mut a, bytes, |r| *r == Dropped::Replay).await;
    assert!(
        (15..=20).contains(&replays),
        "{replays} replays before the ban"
    );

    // Messages over the 8 MiB cap (25 points each) are dropped unread, then banned.
    let big = vec![0x56; MAX_MESSAGE_BYTES + 100];
    let oversized = until_banned(&flooder, &mut a, big, |r| {
        matches!(r, Dropped::Oversized(_))
    })
    .await;
    assert!(
        (2..=4).contains(&oversized),
        "{oversized} oversized before the ban"
    );

    // The node keeps working with the honest peer.
    deliver(
        &honest,
        &mut a,
        encode(&vote(10)),
        |e| matches!(e, NetworkEvent::Gossip { message, .. } if **message == vote(10)),
    )
    .await;
}

/// Sends `bytes` on `topic` from `from` until `to` drops it as authored by no proven validator.
async fn ignored_as_no_validator(
    topic: &'static str,
    from: &NetworkHandle,
    to: &mut NetworkHandle,
    bytes: Vec<u8>,
) {
    let e = deliver_on(
        topic,
        from,
        to,
        bytes,
        |e| matches!(e, NetworkEvent::Dropped { peer, .. } if *peer == from.peer_id),
    )
    .await;
    assert!(
        matches!(
            e,
            NetworkEvent::Dropped {
                reason: Dropped::NotAValidatorPeer,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allowlist_admits_blocks_only_from_proven_validators() {
    let mut cfg = config(vec![]);
    cfg.enforce_validator_allowlist = true;
    let mut a = start(cfg).await.expect("a");
    let validator = start(config(vec![addr_of(&a)])).await.expect("validator");
    let stranger = start(config(vec![addr_of(&a)])).await.expect("stranger");
    a.allow(validator.peer_id).await;
    let block = |height: u64| Gossip::Block(block(height));
    ignored_as_no_validator(BLOCKS_TOPIC, &stranger, &mut a, encode(&block(7))).await;
    deliver_on(
        BLOCKS_TOPIC,
        &validator,
        &mut a,
        encode(&block(8)),
        |e| matches!(e, NetworkEvent::Gossip { message, .. } if **message == block(8)),
    )
    .await;
    // Votes too come from validators only.
    ignored_as_no_validator(VOTES_TOPIC, &stranger, &mut a, encode(&vote(11))).await;
    deliver(
        &validator,
        &mut a,
        encode(&vote(12)),
        |e| matches!(e, NetworkEvent::Gossip { message, .. } if **message == vote(12)),
    )
    .await;
}

/// Whether `h` hears gossip carrying `message` within `wait`.
async fn hears(h: &mut NetworkHandle, message: &Gossip, wait: Duration) -> bool {
    let until = Instant::now() + wait;
    while let Ok(Some(e)) = timeout(
        until.saturating_duration_since(Instant::now()),
        h.events.recv(),
    )
    .await
    {
        if matches!(&e, NetworkEvent::Gossip { message: m, .. } if **m == *message) {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_is_forwarded_only_once_validated_and_a_rejection_bans_only_its_sender() {
    // A line: author - relay - listener (each dials only the relay).
    let mut relay = start(config(vec![])).await.expect("relay");
    let author = start(config(vec![addr_of(&relay)])).await.expect("author");
    let mut listener = start(config(vec![addr_of(&relay)]))
        .await
        .expect("listener");

    // The relay holds a message until it gives its verdict: nothing reaches the listener.
    let e = deliver(
        &author,
        &mut relay,
        encode(&vote(20)),
        |e| matches!(e, NetworkEvent::Gossip { message, .. } if **message == vote(20)),
    )
    .await;
    let NetworkEvent::Gossip { validation, .. } = e else {
        unreachable!()
    };
    assert_eq!(validation.peer(), author.peer_id);
    assert!(
        !hears(&mut listener, &vote(20), Duration::from_secs(1)).await,
        "forwarded before it was validated"
    );
    // Accepted: forwarded.
    relay.validated(validation, Verdict::Accept).await;
    assert!(
        hears(&mut listener, &vote(20), WAIT).await,
        "an accepted message was not forwarded"
    );

    // A message the relay rejects is not forwarded; its author is banned, nobody else is.
    let e = deliver(
        &author,
        &mut relay,
        encode(&vote(21)),
        |e| matches!(e, NetworkEvent::Gossip { message, .. } if **message == vote(21)),
    )
    .await;
    let NetworkEvent::Gossip { validation, .. } = e else {
        unreachable!()
    };
    relay
        .validated(validation, Verdict::Reject(Offence::BadSignature))
        .await;
    let deadline = Instant::now() + WAIT;
    loop {
        let bans = relay.bans().await;
        if bans.iter().any(|b| b.peer == author.peer_id) {
            assert_eq!(bans.len(), 1, "{bans:?}");
            assert_eq!(bans[0].reason, "BadSignature");
            assert!(bans[0].remaining_ms > 9 * 60 * 1000, "{bans:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the author was not banned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !hears(&mut listener, &vote(21), Duration::from_secs(1)).await,
        "a rejected message was forwarded"
    );
    assert!(
        listener.bans().await.is_empty(),
        "the listener banned someone"
    );
    assert!(listener.peers().await.contains(&relay.peer_id));
}

/// Waits `wait` for `to` to report connections, and returns the peers it connected to.
async fn connections(to: &mut NetworkHandle, wait: Duration) -> Vec<libp2p::PeerId> {
    let deadline = Instant::now() + wait;
    let mut connected = Vec::new();
    while let Ok(Some(e)) = timeout(
        deadline.saturating_duration_since(Instant::now()),
        to.events.recv(),
    )
    .await
    {
        if let NetworkEvent::Connected { peer } = e {
            connected.push(peer);
        }
    }
    connected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_connections_are_limited_per_address_and_in_total() {
    // Two inbound connections per address: of three peers dialing from 127.0.0.1 one is
    // refused, however long it keeps trying (each peer dials its bootnode again on failure).
    let mut cfg = config(vec![]);
    cfg.max_peers_per_ip = 2;
    let mut a = start(cfg).await.expect("a");
    let mut dialers = Vec::new();
    for _ in 0..3 {
        dialers.push(start(config(vec![addr_of(&a)])).await.expect("dialer"));
    }
    let connected = connections(&mut a, Duration::from_secs(6)).await;
    assert_eq!(connected.len(), 2, "connected: {connected:?}");
    assert_eq!(a.peers().await.len(), 2);

    // Three connections in all: the fourth peer is refused, whatever its address.
    let mut cfg = config(vec![]);
    cfg.max_peers = 3;
    let mut b = start(cfg).await.expect("b");
    for _ in 0..4 {
        dialers.push(start(config(vec![addr_of(&b)])).await.expect("dialer"));
    }
    let connected = connections(&mut b, Duration::from_secs(6)).await;
    assert_eq!(connected.len(), 3, "connected: {connected:?}");
    assert_eq!(b.peers().await.len(), 3);
}
