//! The supervisor against fake node programs and a local HTTP server: every upgrade path,
//! every refusal, rollback, backoff, the breaker, crashes of the supervisor itself at every
//! step, backup rotation and operator signals.

mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// The invariants that hold after every run: `current/` is a complete runnable binary, and no
/// temporary file is left.
fn assert_sound(f: &Fixture) {
    let out = std::process::Command::new(f.vexvisor().join("current/vexidus-node"))
        .arg("--version")
        .output()
        .expect("current binary runs");
    assert!(out.status.success(), "current binary answers --version");
    assert!(
        f.temporaries().is_empty(),
        "temporaries left: {:?}",
        f.temporaries()
    );
}

#[test]
fn pre_staged_binary_is_used_without_downloading() {
    let f = Fixture::new(&old_node());
    let http = HttpServer::start();
    let url = format!("{}/never-asked", http.base);
    f.set_info(&info_for(&new_node(), &url, None));
    f.stage(NAME, &new_node());
    let (status, log) = f.run_to_end(&[]);
    assert!(status.success(), "{log}");
    assert_eq!(f.runs(), ["fake-node v1", "fake-node v2"]);
    assert_eq!(f.current(), new_node());
    assert_eq!(http.hits("/never-asked"), 0, "{log}");
    assert!(log.contains("event=using_staged_binary"), "{log}");
    let backups = f.backups();
    assert_eq!(backups.len(), 1);
    assert_eq!(std::fs::read(&backups[0]).expect("backup"), old_node());
    let name = backups[0]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with("vexidus-node.pre-up1-"), "{name}");
    assert_sound(&f);
}

#[test]
fn binary_is_downloaded_verified_and_swapped() {
    let f = Fixture::new(&old_node());
    let http = HttpServer::start();
    let url = http.route("/v2", Route::Bytes(new_node()));
    f.set_info(&info_for(&new_node(), &url, None));
    let (status, log) = f.run_to_end(&[]);
    assert!(status.success(), "{log}");
    assert_eq!(f.runs(), ["fake-node v1", "fake-node v2"]);
    assert_eq!(f.current(), new_node());
    assert_eq!(
        f.staged(NAME),
        Some(new_node()),
        "the download stays staged"
    );
    assert_eq!(http.hits("/v2"), 1);
    assert!(log.contains("event=download_done"), "{log}");
    assert_sound(&f);
}

#[test]
fn file_urls_work() {
    let f = Fixture::new(&old_node());
    let src = f.write_program("served-v2", &new_node());
    f.set_info(&info_for(
        &new_node(),
        &format!("file://{}", src.display()),
        None,
    ));
    let (status, log) = f.run_to_end(&[]);
    assert!(status.success(), "{log}");
    assert_eq!(f.current(), new_node());
}

/// Runs with `--max-failures 2` and checks the upgrade failed twice with `expected` in the
/// log, leaving the old binary in place and nothing half-done.
fn assert_refused(f: &Fixture, flags: &[&str], expected: &str) -> String {
    let mut all = vec!["--max-failures", "2"];
    all.extend_from_slice(flags);
    let (status, log) = f.run_to_end(&all);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains(expected), "expected {expected:?} in:\n{log}");
    assert!(log.contains("gives up after 2 failures"), "{log}");
    assert!(log.contains("Upgrade \"up1\" did not go through"), "{log}");
    assert_eq!(f.current(), old_node(), "the old binary stays");
    assert_eq!(
        f.runs(),
        ["fake-node v1", "fake-node v1"],
        "old binary restarted once"
    );
    assert!(f.staged(NAME).is_none(), "nothing refused is staged");
    assert!(f.backups().is_empty(), "no swap, no backup");
    assert_sound(f);
    log
}

#[test]
fn wrong_checksum_is_refused() {
    let f = Fixture::new(&old_node());
    let http = HttpServer::start();
    let url = http.route("/v2", Route::Bytes(new_node()));
    let mut info = info_for(&new_node(), &url, None);
    info["sha256"] = hex::encode([0xab; 32]).into();
    f.set_info(&info);
    assert_refused(&f, &[], "SHA-256 mismatch");
}

#[test]
fn signatures_are_required_when_asked() {
    let key = authority().public().to_string();
    let strict = [
        "--require-signed-upgrades",
        "--upgrade-authority",
        key.as_str(),
    ];
    let http = HttpServer::start();
    let url = http.route("/v2", Route::Bytes(new_node()));

    // Missing.
    let f = Fixture::new(&old_node());
    f.set_info(&info_for(&new_node(), &url, None));
    assert_refused(&f, &strict, "carries no signature");

    // Signed by someone else.
    let f = Fixture::new(&old_node());
    let mallory = vexidus_runtime_api::signing::Keypair::from_seed([6; 32]);
    f.set_info(&info_for(&new_node(), &url, Some(&mallory)));
    assert_refused(&f, &strict, "does not verify");

    // Signed by the authority.
    let f = Fixture::new(&old_node());
    f.set_info(&info_for(&new_node(), &url, Some(&authority())));
    let (status, log) = f.run_to_end(&strict);
    assert!(status.success(), "{log}");
    assert_eq!(f.current(), new_node());

    // The flag without a key is refused at once.
    let (status, log) = f.run_to_end(&["--require-signed-upgrades"]);
    assert_eq!(status.code(), Some(1));
    assert!(log.contains("needs --upgrade-authority"), "{log}");
}

#[test]
fn http_404_timeout_and_truncated_bodies_are_refused() {
    let http = HttpServer::start();

    let f = Fixture::new(&old_node());
    f.set_info(&info_for(
        &new_node(),
        &format!("{}/missing", http.base),
        None,
    ));
    let log = assert_refused(&f, &[], "answered HTTP 404");
    assert_eq!(
        http.hits("/missing"),
        2,
        "a 404 is not retried within an attempt: {log}"
    );

    let f = Fixture::new(&old_node());
    let url = http.route("/hang", Route::Hang);
    f.set_info(&info_for(&new_node(), &url, None));
    assert_refused(
        &f,
        &["--download-timeout", "1", "--download-attempts", "1"],
        "timeout",
    );

    let f = Fixture::new(&old_node());
    let url = http.route("/short", Route::Truncated(new_node()));
    f.set_info(&info_for(&new_node(), &url, None));
    let log = assert_refused(&f, &["--download-attempts", "2"], "download_retry");
    assert_eq!(
        http.hits("/short"),
        4,
        "two attempts per upgrade try: {log}"
    );

    let f = Fixture::new(&old_node());
    let url = http.route("/big", Route::Bytes(new_node()));
    f.set_info(&info_for(&new_node(), &url, None));
    assert_refused(&f, &["--max-download-bytes", "100"], "byte cap");
}

#[test]
fn binaries_that_do_not_run_are_refused() {
    let http = HttpServer::start();

    // Not a program at all (no exec format).
    let f = Fixture::new(&old_node());
    let junk = b"\x00\x01 this is not a program".to_vec();
    let url = http.route("/junk", Route::Bytes(junk.clone()));
    f.set_info(&info_for(&junk, &url, None));
    assert_refused(&f, &[], "cannot run");

    // A program whose --version fails.
    let f = Fixture::new(&old_node());
    let bad = b"#!/bin/sh\nexit 1\n".to_vec();
    let url = http.route("/bad", Route::Bytes(bad.clone()));
    f.set_info(&info_for(&bad, &url, None));
    assert_refused(&f, &[], "--version failed");

    // A node that says it does not implement the upgrade.
    let f = Fixture::new(&old_node());
    let other = node_script("fake-node v2-other", "something-else", EXIT_OK);
    let url = http.route("/other", Route::Bytes(other.clone()));
    f.set_info(&info_for(&other, &url, None));
    assert_refused(&f, &[], "does not implement upgrade");

    // A pre-staged binary without the executable bit is moved aside; the download is used.
    let f = Fixture::new(&old_node());
    let url = http.route("/v2-for-staged", Route::Bytes(new_node()));
    f.set_info(&info_for(&new_node(), &url, None));
    f.stage(NAME, &new_node());
    let staged = f.vexvisor().join("upgrades/up1/vexidus-node");
    std::fs::set_permissions(&staged, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let (status, log) = f.run_to_end(&[]);
    assert!(status.success(), "{log}");
    assert!(log.contains("event=staged_binary_rejected"), "{log}");
    assert!(log.contains("not executable"), "{log}");
    assert_eq!(http.hits("/v2-for-staged"), 1);
    assert!(
        f.vexvisor()
            .join("upgrades/up1/vexidus-node.rejected")
            .exists()
    );
    assert_eq!(f.current(), new_node());
}

#[test]
fn malformed_and_half_written_upgrade_info_stop_with_the_node_intact() {
    let cases = [
        (
            r#"{"name": "up1", "height": 12"#.to_string(),
            "half-written",
        ),
        (String::new(), "half-written"),
        (r#"{"name": 5}"#.to_string(), "malformed"),
        (
            {
                let mut i = info_for(&new_node(), "http://127.0.0.1:9/x", None);
                i["sha256"] = "beef".into();
                i.to_string()
            },
            "field `sha256` is invalid",
        ),
    ];
    for (text, expected) in cases {
        let f = Fixture::new(&old_node());
        f.set_info_text(&text);
        let (status, log) = f.run_to_end(&[]);
        assert_eq!(status.code(), Some(1), "{log}");
        assert!(log.contains(expected), "expected {expected:?}:\n{log}");
        assert!(log.contains("was left as it was"), "{log}");
        assert_eq!(f.runs(), ["fake-node v1"], "stops at once, no restart loop");
        assert_eq!(f.current(), old_node());
        assert_sound(&f);
    }
}

#[test]
fn upgrade_names_with_path_characters_are_refused() {
    for name in ["../../evil", "a/b", ".hidden", "..", "UP"] {
        let f = Fixture::new(&old_node());
        let mut info = info_for(&new_node(), "http://127.0.0.1:9/x", None);
        info["name"] = name.into();
        f.set_info(&info);
        let (status, log) = f.run_to_end(&[]);
        assert_eq!(status.code(), Some(1), "{name}: {log}");
        assert!(log.contains("field `name` is invalid"), "{name}: {log}");
        assert!(!f.home.join("evil").exists() && !f.dir.path().join("evil").exists());
        let upgrades: Vec<_> = std::fs::read_dir(f.vexvisor().join("upgrades"))
            .expect("upgrades")
            .collect();
        assert!(upgrades.is_empty(), "{name}: nothing created");
    }
}

#[test]
fn a_crashing_new_binary_is_rolled_back_then_a_fixed_one_goes_through() {
    let f = Fixture::new(&old_node());
    let http = HttpServer::start();
    let broken = node_script("fake-node v2-broken", NAME, CRASH);
    let url = http.route("/v2", Route::Bytes(broken.clone()));
    f.set_info(&info_for(&broken, &url, None));
    let sup = f.run(&["--backoff-unit-ms", "150"], &[]);
    // Three rounds of: install, crash, roll back, back off 2, 4, 8 units.
    sup.wait_log("failures=3 of=10 wait_s=1.200", LONG);
    let log = sup.log();
    for wait in ["wait_s=0.300", "wait_s=0.600", "wait_s=1.200"] {
        assert!(log.contains(wait), "backoff {wait}:\n{log}");
    }
    assert_eq!(log.matches("event=rolled_back").count(), 3, "{log}");
    assert_eq!(
        http.hits("/v2"),
        1,
        "downloaded once, then reused from upgrades/"
    );
    // The operator stages a fixed binary (the plan, too, names the fixed one here).
    let fixed = new_node();
    http.route("/v2", Route::Bytes(fixed.clone()));
    f.set_info(&info_for(&fixed, &url, None));
    f.stage(NAME, &fixed);
    let mut sup = sup;
    let status = sup.wait(LONG);
    let log = sup.log();
    assert!(status.success(), "{log}");
    assert_eq!(f.current(), fixed);
    assert_eq!(f.runs().last().map(String::as_str), Some("fake-node v2"));
    let runs = f.runs();
    assert!(
        runs.iter().filter(|r| *r == "fake-node v2-broken").count() >= 3,
        "{runs:?}"
    );
    // Every broken run was followed by the old binary (the rollback).
    for w in runs.windows(2) {
        if w[0] == "fake-node v2-broken" {
            assert_eq!(w[1], "fake-node v1", "{runs:?}");
        }
    }
    assert_eq!(
        f.backups().len(),
        1,
        "the same old binary is backed up once"
    );
    assert_sound(&f);
}

#[test]
fn a_crash_after_the_rollback_window_is_a_plain_restart() {
    let f = Fixture::new(&old_node());
    let http = HttpServer::start();
    // First run: up for 2.5 s, then crashes; second run: exits cleanly.
    let late = node_script(
        "fake-node v2-late",
        NAME,
        r#"if [ ! -f "$HOME_DIR/crashed-once" ]; then touch "$HOME_DIR/crashed-once"; sleep 2.5; exit 3; fi
exit 0"#,
    );
    let url = http.route("/v2", Route::Bytes(late.clone()));
    f.set_info(&info_for(&late, &url, None));
    let (status, log) = f.run_to_end(&["--rollback-window", "1"]);
    assert!(status.success(), "{log}");
    assert!(log.contains("event=upgrade_confirmed"), "{log}");
    assert!(!log.contains("event=rolled_back"), "{log}");
    assert_eq!(
        f.runs(),
        ["fake-node v1", "fake-node v2-late", "fake-node v2-late"]
    );
    assert_eq!(f.current(), late);
}

#[test]
fn ten_failures_trip_the_breaker_which_stays_tripped_until_reset() {
    let crash = node_script("fake-node crashing", "none", CRASH);
    let f = Fixture::new(&crash);
    let (status, log) = f.run_to_end(&["--backoff-unit-ms", "1"]);
    assert_eq!(status.code(), Some(1), "{log}");
    assert_eq!(f.runs().len(), 10, "{log}");
    assert!(log.contains("vexvisor gives up after 10 failures"), "{log}");
    assert!(log.contains("node failed (exit code 3)"), "{log}");
    assert!(log.contains("Next step"), "{log}");
    // Starting again without acknowledging does not start the node.
    let (status, log) = f.run_to_end(&[]);
    assert_eq!(status.code(), Some(1), "{log}");
    assert_eq!(f.runs().len(), 10);
    assert!(log.contains("--reset-failures"), "{log}");
    // With the acknowledgement it runs again (and trips again).
    let (status, _) = f.run_to_end(&["--backoff-unit-ms", "1", "--reset-failures"]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(f.runs().len(), 20);
    let st = std::process::Command::new(vexvisor_bin())
        .args(["status", "--json", "--home"])
        .arg(&f.home)
        .output()
        .expect("status");
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("status json");
    assert_eq!(v["failures"], 10);
    assert_eq!(v["last_failure"]["what"], "node failed (exit code 3)");
}

#[test]
fn supervisor_killed_at_every_step_converges_on_restart() {
    let points = [
        "download-half",
        "downloaded",
        "verified",
        "backed-up",
        "journalled",
        "install-before-rename",
        "swapped",
    ];
    for point in points {
        let f = Fixture::new(&old_node());
        let http = HttpServer::start();
        // Large enough that "half" is a real partial file.
        let mut big = new_node();
        big.extend(std::iter::repeat_n(b'#', 2 << 20));
        big.push(b'\n');
        let url = http.route("/v2", Route::Bytes(big.clone()));
        f.set_info(&info_for(&big, &url, None));
        let mut sup = f.run(&[], &[("VEXVISOR_TEST_CRASH_AT", point)]);
        let status = sup.wait(LONG);
        assert_eq!(
            status.signal(),
            Some(libc_sigabrt()),
            "{point}: {}",
            sup.log()
        );
        assert!(
            sup.log().contains(&format!("test crash at {point}")),
            "{point}"
        );
        // Whatever the moment: current/ is the old or the new binary, whole.
        let current = f.current();
        assert!(
            current == old_node() || current == big,
            "{point}: current is whole"
        );
        // A staged binary, if any, is the verified one.
        if let Some(s) = f.staged(NAME) {
            assert_eq!(s, big, "{point}: only a verified binary is staged");
        }
        // Restart: converges to the upgraded node.
        let (status, log) = f.run_to_end(&[]);
        assert!(status.success(), "{point}: {log}");
        assert_eq!(f.current(), big, "{point}");
        assert_eq!(
            f.runs().last().map(String::as_str),
            Some("fake-node v2"),
            "{point}"
        );
        assert_eq!(f.backups().len(), 1, "{point}: one backup");
        assert_sound(&f);
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f.vexvisor().join("state.json")).expect("state"))
                .expect("state json");
        assert!(state["swap"].is_null(), "{point}: journal resolved");
        assert_eq!(state["applied"], serde_json::json!(["up1"]), "{point}");
    }
}

fn libc_sigabrt() -> i32 {
    6
}

#[test]
fn a_chain_of_upgrades_keeps_the_three_newest_backups() {
    // Binary i implements up{i} and halts for up{i+1}; the fifth exits.
    let http = HttpServer::start();
    let mut binaries = Vec::new();
    for i in 1..=5 {
        let body = if i < 5 {
            format!(
                r#"cp "$HOME_DIR/info-{next}.json" "$DATA/.info.tmp" && mv "$DATA/.info.tmp" "$DATA/upgrade-info.json"
exit 42"#,
                next = i + 1
            )
        } else {
            EXIT_OK.to_string()
        };
        binaries.push(node_script(
            &format!("fake-node n{i}"),
            &format!("up{i}"),
            &body,
        ));
    }
    let f = Fixture::new(&binaries[0]);
    for (i, b) in binaries.iter().enumerate().skip(1) {
        let url = http.route(&format!("/n{}", i + 1), Route::Bytes(b.clone()));
        let mut info = info_for(b, &url, None);
        info["name"] = format!("up{}", i + 1).into();
        std::fs::write(
            f.home.join(format!("info-{}.json", i + 1)),
            info.to_string(),
        )
        .expect("info");
    }
    let (status, log) = f.run_to_end(&[]);
    assert!(status.success(), "{log}");
    let runs: Vec<String> = (1..=5).map(|i| format!("fake-node n{i}")).collect();
    assert_eq!(f.runs(), runs);
    let list = std::process::Command::new(vexvisor_bin())
        .args(["status", "--json", "--home"])
        .arg(&f.home)
        .output()
        .expect("status");
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    let backups = v["backups"].as_array().expect("backups");
    assert_eq!(backups.len(), 3, "{v}");
    let replaced_by: Vec<&str> = backups
        .iter()
        .map(|b| b["replaced_by"].as_str().expect("s"))
        .collect();
    assert_eq!(replaced_by, ["up5", "up4", "up3"], "newest first");
    let newest = std::fs::read(backups[0]["path"].as_str().expect("path")).expect("read");
    assert_eq!(newest, binaries[3]);
    assert_eq!(f.current(), binaries[4]);
}

#[test]
fn operator_sigterm_is_forwarded_and_ends_the_supervisor() {
    let sleeper = node_script("fake-node sleeper", "none", SLEEP_UNTIL_TERM);
    let f = Fixture::new(&sleeper);
    let mut sup = f.run(&[], &[]);
    let started = std::time::Instant::now();
    while f.runs().is_empty() {
        assert!(started.elapsed() < LONG, "node never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // One supervisor per home.
    let (status, log) = f.run_to_end(&[]);
    assert_eq!(status.code(), Some(1));
    assert!(log.contains("another vexvisor is running"), "{log}");
    sup.signal("TERM");
    let status = sup.wait(LONG);
    assert_eq!(status.code(), Some(0), "{}", sup.log());
    assert_eq!(
        f.runs(),
        ["fake-node sleeper", "got TERM"],
        "forwarded, not restarted"
    );
    assert!(
        sup.log().contains("reason=\"operator signal\""),
        "{}",
        sup.log()
    );
}

#[test]
fn a_killed_supervisor_takes_its_node_down() {
    let sleeper = node_script("fake-node sleeper", "none", SLEEP_UNTIL_TERM);
    let f = Fixture::new(&sleeper);
    let sup = f.run(&[], &[]);
    let started = std::time::Instant::now();
    while f.runs().is_empty() {
        assert!(started.elapsed() < LONG, "node never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    sup.signal("KILL");
    while f.runs().len() < 2 {
        assert!(started.elapsed() < LONG, "node outlived its supervisor");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(f.runs()[1], "got TERM");
}
