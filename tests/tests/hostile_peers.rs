//! Hostile peers against four real validators on loopback. A stranger speaking the real
//! transport (QUIC, GossipSub, the sync protocol) sends forged messages to one node: only the
//! stranger is banned, no honest node bans another (an honest node forwards nothing it has not
//! validated), and finality goes on.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::str::FromStr;
use std::time::{Duration, Instant};
use vexidus_network::service::{NetworkConfig, NetworkHandle, start};
use vexidus_network::wire::{Gossip, SyncRequest, SyncResponse};
use vexidus_runtime_api::vote::{SignedVote, VoteBody, VoteStage};
use vexidus_runtime_api::{Block, Header, PublicKey, Signature};
use vexidus_tests::localnet::Localnet;

const ALL: [usize; 4] = [0, 1, 2, 3];

fn four_validators(dir: &std::path::Path, rpc_port: u16, p2p_port: u16) -> Result<Localnet> {
    let (rpc, p2p) = (rpc_port.to_string(), p2p_port.to_string());
    Localnet::start(
        &dir.join("net"),
        &[
            "--validators",
            "4",
            "--block-time",
            "0.5",
            "--failover-base-ms",
            "200",
            "--rpc-port",
            &rpc,
            "--p2p-port",
            &p2p,
        ],
    )
}

/// Four validators that have finalized a few blocks; node 0's status and the chain id.
fn finalizing(
    dir: &std::path::Path,
    rpc_port: u16,
    p2p_port: u16,
) -> Result<(Localnet, Value, String)> {
    let net = four_validators(dir, rpc_port, p2p_port)?;
    net.wait_until(&ALL, Duration::from_secs(60), "finality", |s| {
        s["finalized_height"].as_u64().unwrap_or(0) >= 4
    })?;
    let status = net.nodes[0].status().context("status")?;
    let chain_id = status["chain_id"].as_str().context("chain id")?.to_string();
    Ok((net, status, chain_id))
}

/// Waits until every node has finalized five more blocks.
fn finality_goes_on(net: &Localnet) -> Result<()> {
    let before = net.min_finalized(&ALL);
    net.wait_until(
        &ALL,
        Duration::from_secs(60),
        "finality after the attack",
        |s| s["finalized_height"].as_u64().unwrap_or(0) >= before + 5,
    )
}

/// Nodes 1-3, which the attacker did not speak to, banned nobody; every node finalizes on.
fn others_banned_nobody_and_finality_goes_on(net: &Localnet) -> Result<()> {
    for i in 1..4 {
        assert!(
            banned(&peers(net, i)?).is_empty(),
            "node {i} banned someone"
        );
    }
    finality_goes_on(net)
}

/// The QUIC address of node `i`, from `localnet.json`.
fn p2p_addr(net: &Localnet, i: usize) -> Result<libp2p::Multiaddr> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(net.home.join("localnet.json"))?)?;
    Ok(v["nodes"][i]["p2p"]
        .as_str()
        .context("p2p address")?
        .parse()?)
}

/// A transport of a stranger (no validator key), dialling `target`.
async fn stranger(target: libp2p::Multiaddr) -> Result<NetworkHandle> {
    Ok(start(NetworkConfig {
        keypair: libp2p::identity::Keypair::generate_ed25519(),
        listen: "/ip4/127.0.0.1/udp/0/quic-v1".parse()?,
        bootnodes: vec![target],
        max_messages_per_second: 1_000,
        request_timeout: Duration::from_secs(10),
        heartbeat: Duration::from_millis(500),
        enforce_validator_allowlist: false,
        max_peers: vexidus_network::service::DEFAULT_MAX_PEERS,
        max_peers_per_ip: vexidus_network::service::DEFAULT_MAX_PEERS_PER_IP,
    })
    .await?)
}

/// `vex_getPeers` of node `i`.
fn peers(net: &Localnet, i: usize) -> Result<Value> {
    Ok(net.nodes[i].rpc.call("vex_getPeers", json!([]))?)
}

fn banned(peers: &Value) -> Vec<String> {
    peers["banned"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| b["peer"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until node `i` lists `peer` as connected, and two heartbeats more (until the stranger
/// is in node `i`'s mesh, nothing it publishes arrives).
async fn connected(net: &Localnet, i: usize, peer: &NetworkHandle) -> Result<()> {
    let me = peer.peer_id.to_string();
    let started = Instant::now();
    while !peers(net, i)?["connected"]
        .as_array()
        .is_some_and(|c| c.iter().any(|p| p.as_str() == Some(me.as_str())))
    {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "never connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

/// Publishes what `message` makes (fresh each time, so no two are the same bytes) from
/// `from` until node `i` lists `from` as banned.
async fn send_until_banned(
    net: &Localnet,
    i: usize,
    from: &NetworkHandle,
    message: impl Fn(u64) -> Gossip,
) -> Result<u64> {
    let started = Instant::now();
    let me = from.peer_id.to_string();
    for n in 0.. {
        from.publish(&message(n)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if banned(&peers(net, i)?).contains(&me) {
            return Ok(n + 1);
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("node {i} never banned {me}:\n{}", net.logs(30));
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_forging_a_vote_and_a_block_is_banned_and_no_honest_node_bans_another()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let (net, status, chain_id) = finalizing(dir.path(), 19_610, 19_710)?;
    let finalized = status["finalized_height"].as_u64().context("finalized")?;
    // A real validator's key, with signatures that are not its own.
    let victim: PublicKey = PublicKey::from_hex(&net.nodes[1].public_key)
        .map_err(|e| anyhow::anyhow!("public key: {e}"))?;
    let target = p2p_addr(&net, 0)?;

    // Heights well inside the window of 256 above finality, so they stay inside it however
    // far finality moves while the attack goes on (two blocks a second).
    // A forged prevote: inside the window, from an active validator, signed by nobody.
    let voter = stranger(target.clone()).await?;
    let forged_vote = |n: u64| {
        let mut v = SignedVote::sign(
            VoteBody {
                stage: VoteStage::Prevote,
                height: finalized + 100,
                block: [n as u8; 32],
            },
            &vexidus_runtime_api::signing::Keypair::from_seed([7; 32]),
            &chain_id,
        );
        v.voter = victim;
        Gossip::Vote(v)
    };
    let votes = send_until_banned(&net, 0, &voter, forged_vote).await?;

    // A forged block: the validator as proposer, a signature it never made.
    let producer = stranger(target).await?;
    let forged_block = |n: u64| {
        Gossip::Block(Block {
            header: Header {
                parent_hash: [n as u8; 32],
                height: finalized + 101,
                timestamp_ms: n,
                proposer: victim,
                state_root: [2; 32],
                transactions_root: [3; 32],
                receipts_root: [4; 32],
            },
            transactions: vec![],
            signature: Signature([9; 64]),
        })
    };
    let blocks = send_until_banned(&net, 0, &producer, forged_block).await?;

    // A vote message longer than any honest node sends: refused before a signature is read.
    let crowd = stranger(p2p_addr(&net, 0)?).await?;
    let too_many = |n: u64| {
        let key = vexidus_runtime_api::signing::Keypair::from_seed([n as u8; 32]);
        let vote = SignedVote::sign(
            VoteBody {
                stage: VoteStage::Prevote,
                height: finalized + 100,
                block: [n as u8; 32],
            },
            &key,
            &chain_id,
        );
        Gossip::Votes {
            sent_at_ms: n,
            votes: vec![vote; vexidus_network::wire::MAX_VOTES_PER_MESSAGE + 1],
        }
    };
    let crowded = send_until_banned(&net, 0, &crowd, too_many).await?;

    // Only the strangers are banned, and only by the node they spoke to.
    let strangers = [
        voter.peer_id.to_string(),
        producer.peer_id.to_string(),
        crowd.peer_id.to_string(),
    ];
    let mut honest = Vec::new();
    for i in ALL {
        honest.push(
            peers(&net, i)?["peer_id"]
                .as_str()
                .context("peer id")?
                .to_string(),
        );
    }
    // Give any wrongly forwarded message time to cost someone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in ALL {
        let p = peers(&net, i)?;
        let b = banned(&p);
        for id in &b {
            assert!(
                !honest.contains(id),
                "node {i} banned an honest node {id}: {p}\n{}",
                net.logs(30)
            );
        }
        if i == 0 {
            let mut sorted = b.clone();
            sorted.sort();
            let mut expected = strangers.to_vec();
            expected.sort();
            assert_eq!(sorted, expected, "node 0's bans: {p}");
        } else {
            assert!(b.is_empty(), "node {i} heard a forgery: {p}");
        }
        let connected = p["connected"].as_array().map_or(0, Vec::len);
        assert!(connected >= 3, "node {i} lost honest peers: {p}");
    }
    // Finality goes on everywhere.
    finality_goes_on(&net)?;
    eprintln!(
        "banned after {votes} forged votes, {blocks} forged blocks and {crowded} messages of \
         too many votes"
    );
    Ok(())
}

/// A transaction whose one operation is `levels` multisig proposals wrapped in one another, as
/// Borsh bytes: a well-formed transaction with a placeholder transfer, the placeholder's bytes
/// replaced (the nested value itself is never built).
fn nested_transaction(chain_id: &str, levels: usize) -> Vec<u8> {
    use vexidus_runtime_api::transaction::{Operation, Transaction};
    use vexidus_runtime_api::{Address, SignedTransaction};
    let placeholder = Operation::Transfer {
        to: Address([0xab; 32]),
        amount: 0x1122_3344_5566_7788_99aa_bbcc_ddee_ff00,
    };
    let tx = SignedTransaction {
        transaction: Transaction {
            chain_id: chain_id.to_string(),
            sender: PublicKey([1; 32]),
            nonce: 0,
            max_gas: 1_000_000,
            valid_until: u64::MAX,
            operations: vec![placeholder.clone()],
        },
        signature: Signature([2; 64]),
    };
    let bytes = borsh::to_vec(&tx).expect("encodes");
    let old = borsh::to_vec(&placeholder).expect("encodes");
    let at = bytes
        .windows(old.len())
        .position(|w| w == old.as_slice())
        .expect("placeholder");
    let mut nested = Vec::with_capacity(levels * 33 + 1);
    for _ in 0..levels {
        nested.push(65);
        nested.extend_from_slice(&[9; 32]);
    }
    nested.push(4); // ClaimRewards
    [&bytes[..at], &nested[..], &bytes[at + old.len()..]].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_nested_100000_deep_is_refused_over_rpc_gossip_and_sync() -> Result<()> {
    const LEVELS: usize = 100_000;
    let dir = tempfile::tempdir()?;
    let (net, status, chain_id) = finalizing(dir.path(), 19_620, 19_720)?;
    let tx = nested_transaction(&chain_id, LEVELS);

    // RPC: refused with an error that says why.
    let answer = net.nodes[0].rpc.call(
        "vex_submitTransaction",
        json!([format!("0x{}", hex::encode(&tx))]),
    );
    let err = answer
        .expect_err("a nested transaction was accepted")
        .to_string();
    assert!(err.contains("nested more than 4 deep"), "{err}");

    // Gossip: a block carrying it does not decode; its sender pays for the garbage.
    let peer = stranger(p2p_addr(&net, 1)?).await?;
    let head = status["height"].as_u64().context("height")?;
    let block = Block {
        header: Header {
            parent_hash: [1; 32],
            height: head + 1,
            timestamp_ms: 0,
            proposer: PublicKey([3; 32]),
            state_root: [2; 32],
            transactions_root: [3; 32],
            receipts_root: [4; 32],
        },
        transactions: vec![],
        signature: Signature([9; 64]),
    };
    // `VX`, the Block variant, the header, one transaction, the signature.
    let mut encoded = vexidus_network::wire::encode(&Gossip::Block(block));
    let tail = encoded.split_off(encoded.len() - 64 - 4);
    let mut message = encoded;
    message.extend_from_slice(&1u32.to_le_bytes());
    message.extend_from_slice(&tx);
    message.extend_from_slice(&tail[4..]);
    assert!(vexidus_network::wire::decode::<Gossip>(&message).is_err());
    let me = peer.peer_id.to_string();
    let started = Instant::now();
    loop {
        peer.publish_raw(vexidus_network::service::BLOCKS_TOPIC, message.clone())
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let log = std::fs::read_to_string(net.nodes[1].dir.join("node.log"))?;
        if banned(&peers(&net, 1)?).contains(&me) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "node 1 never dropped the gossip:\n{}",
            &log[log.len().saturating_sub(3000)..]
        );
    }

    // Sync: a request carrying it does not decode; no answer comes.
    let asker = stranger(p2p_addr(&net, 2)?).await?;
    let node2 = libp2p::PeerId::from_str(peers(&net, 2)?["peer_id"].as_str().context("peer id")?)?;
    let mut request = vexidus_network::wire::MAGIC.to_vec();
    request.push(3); // SyncRequest::Transactions
    request.extend_from_slice(&1u32.to_le_bytes());
    request.extend_from_slice(&tx);
    let started = Instant::now();
    let answer = loop {
        match asker.request_raw(node2, request.clone()).await {
            Err(e) if e.contains("dial") || e.contains("connect") => {
                assert!(started.elapsed() < Duration::from_secs(30), "{e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => break other,
        }
    };
    assert!(
        answer.is_err(),
        "a nested transaction got an answer: {answer:?}"
    );

    // Every node keeps producing and finalizing.
    finality_goes_on(&net)?;
    for i in ALL {
        assert!(net.nodes[i].status().is_some(), "node {i} is down");
    }
    Ok(())
}

/// Samples node `i`'s resident memory every 100 ms until `stop` is set; returns the highest.
fn sample_rss(net: &Localnet, i: usize, stop: &std::sync::atomic::AtomicBool) -> Result<u64> {
    let mut highest = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        highest = highest.max(net.rss_kib(i)?);
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(highest.max(net.rss_kib(i)?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_far_future_votes_and_large_orphans_costs_no_memory_and_bans_its_sender()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let (net, status, chain_id) = finalizing(dir.path(), 19_630, 19_730)?;
    let finalized = status["finalized_height"].as_u64().context("finalized")?;
    let attacker = stranger(p2p_addr(&net, 0)?).await?;
    let me = attacker.peer_id.to_string();
    connected(&net, 0, &attacker).await?;
    let before = (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(200));
            net.rss_kib(0)
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .max()
        .unwrap_or(0);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (highest, sent) = std::thread::scope(|s| -> Result<(u64, (u64, u64))> {
        let sampler = s.spawn(|| sample_rss(&net, 0, &stop));
        let attack = async {
            // 1,024 orphans of 1 MiB each, inside the window of heights, signed by keys that are
            // no validator's: each is read, found useless and dropped, and nobody is charged
            // (an honest peer ahead of this node could send such a block).
            let filler = vexidus_runtime_api::signing::Keypair::from_seed([3; 32]);
            let mut orphans = 0u64;
            for n in 0..1_024u32 {
                let key = vexidus_runtime_api::signing::Keypair::from_seed(
                    *blake3::hash(&n.to_le_bytes()).as_bytes(),
                );
                let header = Header {
                    parent_hash: *blake3::hash(&[n.to_le_bytes(), [1; 4]].concat()).as_bytes(),
                    height: finalized + 50,
                    timestamp_ms: 0,
                    proposer: key.public(),
                    state_root: [2; 32],
                    transactions_root: [3; 32],
                    receipts_root: [4; 32],
                };
                let signature = key.sign(
                    vexidus_runtime_api::signing::BLOCK_DOMAIN,
                    &chain_id,
                    &vexidus_runtime_api::signing::header_hash(&header),
                );
                let tx = filler.sign_transaction(vexidus_runtime_api::transaction::Transaction {
                    chain_id: chain_id.clone(),
                    sender: filler.public(),
                    nonce: u64::from(n),
                    max_gas: 1,
                    valid_until: 1,
                    operations: vec![
                        vexidus_runtime_api::transaction::Operation::CreateProposal {
                            kind: vexidus_runtime_api::transaction::ProposalKind::Text {
                                title: "x".into(),
                                body: "x".repeat(1 << 20),
                            },
                        },
                    ],
                });
                attacker
                    .publish(&Gossip::Block(Block {
                        header,
                        transactions: vec![tx],
                        signature,
                    }))
                    .await;
                orphans += 1;
            }
            // 60,000 validly signed votes from fresh keys, at heights no chain can have reached:
            // provably bogus, so a message of them that reaches the node bans the sender (those
            // that find the node's queue still full of orphans are dropped uncharged, so the
            // flood goes on until the ban).
            let vote_batch = |chunk: u64| -> Vec<SignedVote> {
                (0..500u64)
                    .map(|i| {
                        let n = chunk * 500 + i;
                        SignedVote::sign(
                            VoteBody {
                                stage: VoteStage::Prevote,
                                height: finalized + 1_000_000_000 + n,
                                block: [7; 32],
                            },
                            &vexidus_runtime_api::signing::Keypair::from_seed(
                                *blake3::hash(&n.to_le_bytes()).as_bytes(),
                            ),
                            &chain_id,
                        )
                    })
                    .collect()
            };
            let mut votes = 0u64;
            let flood_started = Instant::now();
            for chunk in 0.. {
                let batch = vote_batch(chunk);
                votes += batch.len() as u64;
                attacker
                    .publish(&Gossip::Votes {
                        sent_at_ms: chunk,
                        votes: batch,
                    })
                    .await;
                if votes >= 60_000 {
                    if banned(&peers(&net, 0)?).contains(&me)
                        || flood_started.elapsed() > Duration::from_secs(90)
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok::<_, anyhow::Error>((orphans, votes))
        };
        let sent =
            tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(attack));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let sent = sent?;
        let highest = sampler
            .join()
            .map_err(|_| anyhow::anyhow!("sampler panicked"))??;
        Ok((highest, sent))
    })?;
    let grew_mib = highest.saturating_sub(before) as f64 / 1024.0;
    eprintln!(
        "sent {} orphans and {} votes; node 0's resident memory {} MiB before, at most {} MiB \
         during the flood (+{grew_mib:.1} MiB)",
        sent.0,
        sent.1,
        before / 1024,
        highest / 1024
    );
    assert!(
        grew_mib <= 64.0,
        "resident memory grew by {grew_mib:.1} MiB\n{}",
        net.logs(20)
    );
    let p = peers(&net, 0)?;
    assert!(banned(&p).contains(&me), "the flooder is not banned: {p}");
    assert!(
        p["banned"]
            .as_array()
            .is_some_and(|b| b.iter().any(|x| x["reason"] == "ImpossibleHeight")),
        "{p}"
    );
    others_banned_nobody_and_finality_goes_on(&net)
}

/// A stranger asks one node for its whole chain, hundreds of requests at a time, for fifteen
/// seconds. Answers are read off the network loop by a few workers, and a request that finds
/// them all busy is answered empty at once: the flooded node keeps importing, voting and
/// answering RPC, and finality goes on at its pace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_sync_requests_does_not_stall_the_node_it_floods() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (net, _, _) = finalizing(dir.path(), 19_650, 19_750)?;
    let asker = stranger(p2p_addr(&net, 0)?).await?;
    connected(&net, 0, &asker).await?;
    let node: libp2p::PeerId = peers(&net, 0)?["peer_id"]
        .as_str()
        .context("peer id")?
        .parse()?;
    let finalized_at = |i: usize| -> Result<u64> {
        net.nodes[i].status().context("status")?["finalized_height"]
            .as_u64()
            .context("finalized")
    };
    let before = finalized_at(0)?;
    let client = asker.client();
    let flood_for = Duration::from_secs(15);
    let started = Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    let (mut sent, mut full, mut empty, mut failed) = (0u64, 0u64, 0u64, 0u64);
    let mut reasons = std::collections::BTreeMap::new();
    while started.elapsed() < flood_for {
        while in_flight.len() < 256 {
            let client = client.clone();
            let from = sent % 16;
            in_flight.spawn(async move {
                client
                    .request(
                        node,
                        SyncRequest::Blocks {
                            from,
                            max: u32::MAX,
                        },
                    )
                    .await
            });
            sent += 1;
        }
        match in_flight.join_next().await.context("a request in flight")? {
            Ok(Ok(SyncResponse::Blocks { blocks, .. })) if !blocks.is_empty() => full += 1,
            Ok(Ok(_)) => empty += 1,
            Ok(Err(e)) => {
                failed += 1;
                *reasons.entry(e).or_insert(0u64) += 1;
            }
            Err(e) => bail!("a request task failed: {e}"),
        }
    }
    let during = finalized_at(0)?;
    in_flight.abort_all();
    eprintln!(
        "{sent} requests in {:?}: {full} answered with blocks, {empty} empty, {failed} failed; \
         node 0 finalized {before} -> {during}; failures: {reasons:?}; node 0's bans: {}",
        started.elapsed(),
        peers(&net, 0)?["banned"]
    );
    assert!(full > 0, "the flooded node served nobody");
    // Requests the asker gave up on reach the node as streams that end early: not garbage.
    let bans = peers(&net, 0)?;
    assert!(
        !bans["banned"]
            .as_array()
            .is_some_and(|b| b.iter().any(|x| x["reason"] == "undecodable messages")),
        "well-formed requests were taken for garbage: {bans}"
    );
    // Two blocks a second: fifteen seconds of flood leave room for thirty.
    assert!(
        during >= before + 10,
        "finality on the flooded node went {before} -> {during} in {flood_for:?}\n{}",
        net.logs(20)
    );
    others_banned_nobody_and_finality_goes_on(&net)
}

/// A client fills the chain with the largest texts it can sign: three proposals of 3 MiB each,
/// submitted at once to three nodes. Two of them with their envelopes exceed the 6 MiB block
/// budget, so each block takes one; all three are included, every node imports every block, and
/// nobody is banned (a block within the budget always fits a gossip message and a sync answer).
#[test]
fn three_3_mib_text_proposals_at_once_are_included_within_the_block_budget() -> Result<()> {
    use vexidus_runtime_api::signing::Keypair;
    use vexidus_runtime_api::transaction::{Operation, ProposalKind, Transaction};
    const BODY: usize = 3 << 20;
    let dir = tempfile::tempdir()?;
    let (net, status, chain_id) = finalizing(dir.path(), 19_640, 19_740)?;
    let head = status["height"].as_u64().context("height")?;
    let budget = net.nodes[0].rpc.call("vex_getParameters", json!([]))?["max_block_bytes"]
        .as_u64()
        .context("max_block_bytes")?;
    assert_eq!(budget, 6 << 20);

    let submissions: Vec<(usize, Vec<u8>)> = (0..3)
        .map(|i| -> Result<(usize, Vec<u8>)> {
            let seed = std::fs::read_to_string(net.nodes[i].dir.join("validator.key"))?;
            let key = Keypair::from_seed_hex(seed.trim()).map_err(|e| anyhow::anyhow!("{e}"))?;
            let account = net.nodes[i].rpc.call(
                "vex_getAccount",
                json!([key.public().address().to_string()]),
            )?;
            let tx = Transaction {
                chain_id: chain_id.clone(),
                sender: key.public(),
                nonce: account["nonce"].as_u64().context("nonce")?,
                max_gas: 0,
                valid_until: head + 1_000,
                operations: vec![Operation::CreateProposal {
                    kind: ProposalKind::Text {
                        title: format!("volume {i}"),
                        body: "x".repeat(BODY),
                    },
                }],
            };
            let tx = Transaction {
                max_gas: tx.intrinsic_gas(),
                ..tx
            };
            Ok((i, borsh::to_vec(&key.sign_transaction(tx))?))
        })
        .collect::<Result<_>>()?;
    let hashes: Vec<String> = std::thread::scope(|s| {
        let sent: Vec<_> = submissions
            .iter()
            .map(|(i, bytes)| {
                let node = &net.nodes[*i];
                s.spawn(move || {
                    node.rpc.call(
                        "vex_submitTransaction",
                        json!([format!("0x{}", hex::encode(bytes))]),
                    )
                })
            })
            .collect();
        sent.into_iter()
            .map(|t| {
                let hash = t.join().expect("submitter")?;
                Ok(hash.as_str().context("hash")?.to_string())
            })
            .collect::<Result<Vec<String>>>()
    })?;

    // Each is included, every node knows where, and the three are in three blocks.
    let started = Instant::now();
    let mut heights = Vec::new();
    for hash in &hashes {
        let height = loop {
            let t = net.nodes[3].rpc.call("vex_getTransaction", json!([hash]))?;
            if t["status"] == "included" && t["finalized"] == true {
                assert_eq!(t["receipt"]["success"], true, "{}", t["receipt"]);
                break t["height"].as_u64().context("height")?;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{hash} not finalized: {}\n{}",
                t["status"],
                net.nodes[0].log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(250));
        };
        heights.push(height);
    }
    heights.sort_unstable();
    heights.dedup();
    assert_eq!(heights.len(), 3, "one per block: {heights:?}");
    let top = net.min_finalized(&ALL);
    net.assert_same_blocks(&ALL, 1..=top)?;
    for h in &heights {
        let b = net.nodes[1].rpc.call("vex_getBlock", json!([h]))?;
        assert_eq!(b["transaction_count"], 1, "block {h}");
    }
    net.assert_no_bans()?;
    finality_goes_on(&net)
}
