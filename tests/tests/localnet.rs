//! Many validators end to end: `vexidus localnet` starts real node processes on loopback that
//! run HyperSync over libp2p (QUIC). Four validators with unequal stake agree on every
//! irreversible block; one is killed and the rest keep producing and finalizing within the
//! failover bound, skipping it; restarted, it syncs, rejoins and produces again.

use anyhow::{Context, Result};
use serde_json::json;
use std::time::{Duration, Instant};
use vexidus_tests::localnet::Localnet;

const BLOCK_MS: u64 = 500;
const FAILOVER_BASE_MS: u64 = 200;
const ALL: [usize; 4] = [0, 1, 2, 3];

fn finalized(s: &serde_json::Value) -> u64 {
    s["finalized_height"].as_u64().unwrap_or(0)
}

/// Four validators at 0.5 s blocks and a 200 ms failover unit on ports from `rpc_port` and
/// `p2p_port`, with `extra` localnet flags.
fn four_validators(
    dir: &std::path::Path,
    rpc_port: u16,
    p2p_port: u16,
    extra: &[&str],
) -> Result<Localnet> {
    four_validators_with_failover(dir, rpc_port, p2p_port, FAILOVER_BASE_MS, extra)
}

fn four_validators_with_failover(
    dir: &std::path::Path,
    rpc_port: u16,
    p2p_port: u16,
    failover_base_ms: u64,
    extra: &[&str],
) -> Result<Localnet> {
    let (rpc, p2p, unit) = (
        rpc_port.to_string(),
        p2p_port.to_string(),
        failover_base_ms.to_string(),
    );
    let mut args = vec![
        "--validators",
        "4",
        "--block-time",
        "0.5",
        "--failover-base-ms",
        &unit,
        "--rpc-port",
        &rpc,
        "--p2p-port",
        &p2p,
        "--node-arg=--rpc-rate-limit=100000",
    ];
    args.extend_from_slice(extra);
    Localnet::start(&dir.join("net"), &args)
}

/// The first block above `after` that `proposer` produced, as `node` sees the chain; waits up
/// to `timeout` for one.
fn first_block_by(
    net: &Localnet,
    node: usize,
    proposer: &str,
    after: u64,
    timeout: Duration,
) -> Result<u64> {
    let started = Instant::now();
    let mut scanned = after;
    loop {
        let head = net.nodes[node].status().context("status")?["height"]
            .as_u64()
            .unwrap_or(0);
        while scanned < head {
            scanned += 1;
            let b = net.nodes[node].rpc.call("vex_getBlock", json!([scanned]))?;
            if b["proposer"] == proposer {
                return Ok(scanned);
            }
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "{proposer} produced nothing above {after} in {timeout:?}\n{}",
            net.logs(20)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn four_validators_finalize_survive_a_crash_and_take_it_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut net = four_validators(dir.path(), 21000, 41000, &[])?;
    let stakes: Vec<u128> = net.nodes[1]
        .rpc
        .call("vex_getValidators", json!([]))?
        .as_array()
        .context("validators")?
        .iter()
        .map(|v| v["total_stake"].as_u64().unwrap_or(0) as u128)
        .collect();
    assert_eq!(stakes.len(), 4);
    assert!(
        stakes
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == 4,
        "unequal stakes: {stakes:?}"
    );

    // Finality on every node, and how far it lags the head.
    net.wait_until(&ALL, Duration::from_secs(60), "finality past 10", |s| {
        finalized(s) >= 10
    })?;
    let mut worst_lag = 0;
    let sampled = Instant::now();
    while sampled.elapsed() < Duration::from_secs(5) {
        for n in &net.nodes {
            let s = n.status().context("status")?;
            let lag = s["height"].as_u64().unwrap_or(0) - finalized(&s);
            worst_lag = worst_lag.max(lag);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("finality lag with 4 validators: at most {worst_lag} blocks behind the head");
    assert!(worst_lag <= 3, "finality lags by {worst_lag} blocks");
    let common = net.min_finalized(&ALL);
    net.assert_same_blocks(&ALL, 1..=common)?;

    // Transactions submitted to any node reach the validators due to produce (no gossip: the
    // node forwards them to the current and next leader). One transfer submitted to each node
    // at once: whoever leads includes the others' too, so most are included by a validator
    // other than the one they were submitted to — which never happens without forwarding.
    let submitted_at = net.nodes[0].status().context("status")?["height"]
        .as_u64()
        .unwrap_or(0);
    let mut sent = Vec::new();
    for (i, n) in net.nodes.iter().enumerate() {
        let key = n.dir.join("validator.key");
        let v = vexidus_tests::cli_json(
            n.rpc.url(),
            &[
                "tx",
                "transfer",
                "--no-wait",
                "--key",
                key.to_str().unwrap_or_default(),
                "--to",
                &format!("0x{}", format!("{:02x}", 0x70 + i).repeat(32)),
                "--amount",
                "1",
            ],
        )?;
        sent.push((i, v["hash"].as_str().context("hash")?.to_string()));
    }
    let mut by_others = 0;
    for (i, hash) in &sent {
        let included = net.nodes[*i]
            .rpc
            .wait_included(hash, Duration::from_secs(30))?;
        let height = included["height"].as_u64().context("inclusion height")?;
        let block = net.nodes[0].rpc.call("vex_getBlock", json!([height]))?;
        if block["proposer"] != net.nodes[*i].public_key.as_str() {
            by_others += 1;
        }
        assert!(
            height <= submitted_at + 10,
            "submitted at {submitted_at}, included at {height}"
        );
    }
    assert!(
        by_others >= 2,
        "only {by_others} of 4 transfers were included by a validator other than their node's"
    );

    // Kill the validator with the most stake (it leads the most slots).
    let victim = 0;
    let live = [1, 2, 3];
    net.kill_node(victim)?;
    let killed_at = net.nodes[1].status().context("status")?["height"]
        .as_u64()
        .unwrap_or(0);
    // Its slots fail over to backups until three misses take it out of the rotation.
    let started = Instant::now();
    let skipped_at = loop {
        let record = net.nodes[1].validator(&net.nodes[victim].address)?;
        if record["skipped"] == true {
            assert!(
                record["missed_blocks"].as_u64().unwrap_or(0) >= 3,
                "{record}"
            );
            break net.nodes[1].status().context("status")?["height"]
                .as_u64()
                .unwrap_or(0);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(180),
            "the dead validator was never skipped: {record}\n{}",
            net.logs(20)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    net.wait_until(
        &live,
        Duration::from_secs(60),
        "finality 20 blocks on",
        |s| finalized(s) >= skipped_at + 20,
    )?;
    let until = net.min_finalized(&live);
    let mut worst = (0u64, 0u64);
    let mut previous = None;
    for h in killed_at..=until {
        let b = net.nodes[1].rpc.call("vex_getBlock", json!([h]))?;
        let ts = b["timestamp_ms"].as_u64().context("timestamp")?;
        if let Some(p) = previous {
            let gap = ts.saturating_sub(p);
            if gap > worst.0 {
                worst = (gap, h);
            }
        }
        previous = Some(ts);
    }
    let bound = BLOCK_MS + 5 * FAILOVER_BASE_MS;
    println!(
        "one validator down: worst block interval {} ms (at height {}), failover bound {bound} ms",
        worst.0, worst.1
    );
    // The bound plus what producing and gossiping a block takes on a loaded 2-core machine.
    assert!(
        worst.0 <= bound + 400,
        "worst interval {} ms at height {}",
        worst.0,
        worst.1
    );
    assert!(
        worst.0 > BLOCK_MS + 4 * FAILOVER_BASE_MS,
        "a backup took over at least once, so some interval shows the failover wait"
    );
    net.assert_same_blocks(&live, killed_at..=until)?;

    // Back: it syncs, agrees, and produces again (a probation slot lets it show it is up).
    net.restart_node(victim)?;
    let restarted_at = net.nodes[1].status().context("status")?["height"]
        .as_u64()
        .unwrap_or(0);
    net.wait_until(
        &[victim],
        Duration::from_secs(60),
        "the restarted node to sync",
        |s| finalized(s) >= restarted_at,
    )?;
    let started = Instant::now();
    let victim_key = net.nodes[victim].public_key.clone();
    let produced_again =
        first_block_by(&net, 1, &victim_key, restarted_at, Duration::from_secs(240))?;
    // Two consecutive blocks of its slot take it off the skip list.
    while net.nodes[1].validator(&net.nodes[victim].address)?["skipped"] != false {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the restarted validator produced at {produced_again} but stays skipped"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    println!(
        "restarted validator produced again at height {produced_again} ({} s after its restart)",
        started.elapsed().as_secs()
    );
    net.wait_until(
        &ALL,
        Duration::from_secs(60),
        "finality past its block",
        |s| finalized(s) >= produced_again,
    )?;
    let common = net.min_finalized(&ALL);
    net.assert_same_blocks(&ALL, 1..=common)?;
    net.assert_no_bans()?;
    // Ctrl-C (here SIGTERM) to localnet stops every node.
    net.stop();
    net.assert_all_stopped()?;
    assert!(net.output().contains("localnet: stopping 4 nodes"));
    Ok(())
}

/// The block at which `needle` first appears in a block's JSON (events included), scanning
/// heights `from..=to` on `node`.
fn find_event(
    node: &vexidus_tests::localnet::LocalNode,
    from: u64,
    to: u64,
    needle: &str,
) -> Result<Option<(u64, String)>> {
    for h in from..=to {
        let b = node.rpc.call("vex_getBlock", json!([h]))?;
        if b.to_string().contains(needle) {
            return Ok(Some((
                h,
                b["hash"].as_str().unwrap_or_default().to_string(),
            )));
        }
    }
    Ok(None)
}

#[test]
fn a_double_signing_validator_is_jailed_on_every_node_at_one_height_and_unjails_after() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let mut net = four_validators(dir.path(), 21100, 41100, &["--upgrade-min-lead", "10"])?;
    // Jail terms are an hour and more of blocks; the `next-short-jail` runtime keeps the rules at
    // 1/360 of the time (an hour is ten seconds), so the term can end within the test.
    let wasm = dir.path().join("short-jail.wasm");
    std::fs::write(&wasm, vexidus_tests::runtimes::NEXT_SHORT_JAIL)?;
    let authority_key = net.nodes[0].dir.join("validator.key");
    // Once the validators know each other (transactions go to the leaders by their proofs).
    net.wait_until(&ALL, Duration::from_secs(60), "finality past 5", |s| {
        finalized(s) >= 5
    })?;
    let upgrade_at = net.nodes[0].status().context("status")?["height"]
        .as_u64()
        .unwrap_or(0)
        + 20;
    let r = vexidus_tests::cli_json(
        net.nodes[0].rpc.url(),
        &[
            "upgrade",
            "runtime",
            "--key",
            authority_key.to_str().unwrap_or_default(),
            "--name",
            "short-jail",
            "--height",
            &upgrade_at.to_string(),
            "--wasm",
            wasm.to_str().unwrap_or_default(),
        ],
    )?;
    assert_eq!(r["receipt"]["success"], true, "{r}");
    net.wait_until(
        &ALL,
        Duration::from_secs(60),
        "the short-jail runtime",
        |s| finalized(s) > upgrade_at && s["runtime"]["spec_version"] == 3,
    )?;

    // Validator 3 turns bad: restarted with the test fault, it signs two blocks per height.
    net.kill_node(3)?;
    net.restart_node_with(3, &["--test-fault=double-sign"])?;
    let cheat = net.nodes[3].address.clone();
    let key = net.nodes[3].dir.join("validator.key");
    let started = Instant::now();
    let jailed_until = loop {
        let record = net.nodes[0].validator(&cheat)?;
        let until = record["jailed_until"].as_u64().unwrap_or(0);
        if until > 0 {
            break until;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(180),
            "the double-signer was never jailed: {record}\n{}",
            net.logs(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // At once, before the term ends: unjail is refused, naming the height it ends at.
    let out = vexidus_tests::cli(
        net.nodes[0].rpc.url(),
        &["tx", "unjail", "--key", key.to_str().unwrap_or_default()],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("jailed") && text.contains(&jailed_until.to_string()),
        "{text}"
    );

    let head = net.nodes[0].status().context("status")?["height"]
        .as_u64()
        .unwrap_or(0);
    let (jail_height, jail_hash) =
        find_event(&net.nodes[0], upgrade_at, head, "Jailed")?.context("no Jailed event")?;
    println!("double-signer jailed at height {jail_height} until {jailed_until}");
    // A first offence: "one hour" (ten seconds here) of blocks from the block that jails it;
    // the twins of the rest of its slot are the same burst and do not lengthen the term.
    assert_eq!(jailed_until, jail_height + 10_000 / BLOCK_MS);

    // Every node: the same block jails it, with the same term.
    net.wait_until(
        &ALL,
        Duration::from_secs(60),
        "finality past the jailing",
        |s| finalized(s) >= jail_height + 2,
    )?;
    for (i, n) in net.nodes.iter().enumerate() {
        assert_eq!(n.hash_at(jail_height)?, jail_hash, "node {i}");
        let (h, _) = find_event(n, jail_height, jail_height, "Jailed")?
            .with_context(|| format!("node {i} has no Jailed event at {jail_height}"))?;
        assert_eq!(h, jail_height);
        assert_eq!(
            n.validator(&cheat)?["jailed_until"].as_u64(),
            Some(jailed_until),
            "node {i}"
        );
    }

    // The others go on without it: finality continues and it produces nothing while jailed.
    let honest = [0, 1, 2];
    net.wait_until(
        &honest,
        Duration::from_secs(60),
        "the end of the term",
        |s| finalized(s) >= jailed_until,
    )?;
    for h in (jail_height + 3)..jailed_until {
        let b = net.nodes[0].rpc.call("vex_getBlock", json!([h]))?;
        assert_ne!(
            b["proposer"],
            net.nodes[3].public_key.as_str(),
            "height {h}"
        );
    }
    net.assert_same_blocks(&honest, 1..=net.min_finalized(&honest))?;

    // Reformed (restarted without the fault) and past the term: unjail, and it produces again.
    net.kill_node(3)?;
    net.restart_node(3)?;
    let r = vexidus_tests::cli_json(
        net.nodes[0].rpc.url(),
        &["tx", "unjail", "--key", key.to_str().unwrap_or_default()],
    )?;
    assert_eq!(r["receipt"]["success"], true, "{r}");
    let unjailed_at = r["height"].as_u64().context("height")?;
    let cheat_key = net.nodes[3].public_key.clone();
    let produced = first_block_by(&net, 0, &cheat_key, unjailed_at, Duration::from_secs(180))?;
    println!("unjailed at height {unjailed_at}; produced again at {produced}");
    for (i, n) in net.nodes.iter().enumerate() {
        assert_eq!(n.validator(&cheat)?["jailed_until"], 0, "node {i}");
    }
    // Its twin blocks were valid blocks: evidence, not a reason to ban the peer.
    net.assert_no_bans()?;
    Ok(())
}

#[test]
fn a_validator_producing_before_its_failover_delay_is_refused_everywhere_and_takes_no_slot()
-> Result<()> {
    const FAILOVER_UNIT_MS: u64 = 1000;
    let dir = tempfile::tempdir()?;
    // Validator 3 (the smallest stake) produces as a backup a block interval after each parent,
    // without waiting for its failover delay, hoping to take every slot and its fees. With a
    // failover unit of a second (the first backup waits five), honest leaders on a loaded
    // machine stay within their slots.
    let net = four_validators_with_failover(
        dir.path(),
        21200,
        41200,
        FAILOVER_UNIT_MS,
        &["--node-arg-for", "3:--test-fault=skip-failover-delay"],
    )?;
    net.wait_until(&ALL, Duration::from_secs(180), "finality past 100", |s| {
        finalized(s) >= 100
    })?;
    let top = net.min_finalized(&ALL);
    net.assert_same_blocks(&ALL, 1..=top)?;
    // Keys are readable by their owner only: the validator key localnet wrote and the p2p
    // key each node made.
    for key in ["validator.key", "data/p2p-key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(net.nodes[0].dir.join(key))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key} has mode {mode:o}");
    }

    // Its early blocks are refused by every other node, by the schedule rule.
    for i in 0..3 {
        let log = std::fs::read_to_string(net.nodes[i].dir.join("node.log"))?;
        let refused = log
            .lines()
            .filter(|l| l.contains("refused a block") && l.contains("off the schedule"))
            .count();
        assert!(
            refused >= 10,
            "node {i} refused {refused} blocks off the schedule\n{}",
            net.nodes[i].log_tail(20)
        );
    }
    // No honest leader is skipped before a backup may take its slot: an honest validator misses
    // a block only where the block came a full failover delay after its parent (the first block
    // of the chain, whose parent is genesis, or a leader genuinely late). Each such block excuses
    // as many misses as there are places whose delay had passed. Had the cheat's early blocks
    // counted, it would have won about half of every race with the leader and the honest three
    // would miss some forty blocks between them.
    let cheat = &net.nodes[3].public_key;
    let stamp = |h: u64| -> Result<(u64, String)> {
        let b = net.nodes[0].rpc.call("vex_getBlock", json!([h]))?;
        let ts = b["timestamp_ms"].as_u64().context("timestamp_ms")?;
        Ok((ts, b["proposer"].as_str().unwrap_or_default().to_string()))
    };
    let (mut parent_ms, _) = stamp(0)?;
    let (mut by_cheat, mut excused) = (0u64, 0u64);
    for h in 1..=top {
        let (ts, proposer) = stamp(h)?;
        if proposer == *cheat {
            by_cheat += 1;
        }
        let late = ts.saturating_sub(parent_ms);
        excused += (1..=3u64)
            .filter(|k| late >= BLOCK_MS + FAILOVER_UNIT_MS * (5 + 3 * (k - 1)))
            .count() as u64;
        parent_ms = ts;
    }
    for i in ALL {
        let validators = net.nodes[i].rpc.call("vex_getValidators", json!([]))?;
        let mut honest_missed = 0;
        for v in validators.as_array().context("validators")? {
            if v["address"] != net.nodes[3].address.as_str() {
                honest_missed += v["missed_blocks"].as_u64().context("missed_blocks")?;
            }
        }
        println!("node {i}: honest validators missed {honest_missed} blocks ({excused} excused)");
        assert!(
            honest_missed <= excused,
            "node {i}: honest validators missed {honest_missed} blocks, {excused} excused by \
             late blocks: {validators}"
        );
    }
    // Its share of the chain is its share of stake (50,000 of 260,000), within the spread of
    // some twenty slot draws (had it taken others' slots, it would have won about half of
    // every race with the leader, over 60% of the blocks).
    let share = by_cheat as f64 / top as f64;
    println!("the early producer made {by_cheat} of {top} blocks ({share:.2}; stake 0.19)");
    assert!(
        (share - 50.0 / 260.0).abs() <= 0.25,
        "the early producer made {by_cheat} of {top} blocks"
    );
    Ok(())
}
