//! Cooperative origin download (`p2p fetch`, `p2p helper`) end to end: the real binary, a
//! test origin on 127.0.0.1 that honours `Range`/`If-Range`, counts bytes and limits each
//! connection's rate.

mod coop_support;

use std::time::{Duration, Instant};

use coop_support::*;
use p2p_tests::sha256_hex;

const MIB: u64 = 1024 * 1024;
const RANGE: u64 = 256 * 1024;
/// Per-connection rate of the test origin.
const RATE: u64 = 4 * MIB;
const LIMIT: Duration = Duration::from_secs(90);
/// Bytes of one spot check of a helper's range.
const SPOT_CHECK: u64 = p2p_core::peer::SPOT_CHECK_LEN as u64;

fn origin(size: u64, seed: u64) -> (Origin, Vec<u8>) {
    let data = test_bytes(size as usize, seed);
    let origin = Origin::start(
        data.clone(),
        OriginConfig {
            rate: RATE,
            ranges: true,
        },
    );
    (origin, data)
}

fn range_arg() -> String {
    RANGE.to_string()
}

#[test]
fn one_fetcher_and_three_helpers_get_identical_bytes_and_all_take_ranges() {
    let size = 12 * MIB;
    let (origin, data) = origin(size, 1);
    let swarm_dir = tempfile::tempdir().unwrap();
    let swarm = &p2p_tests::new_swarm(swarm_dir.path());
    let (_tracker, tracker) = start_tracker(swarm);
    let helpers: Vec<_> = (0..3)
        .map(|_| start_helper(tracker, swarm, origin.addr))
        .collect();
    wait_for_peers(tracker, swarm, 3);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("file.bin");
    let fetch = start_fetch(
        tracker,
        swarm,
        &origin.url("file.bin"),
        &out,
        &["--range-size", &range_arg()],
    );
    let result = finish_fetch(fetch, LIMIT);
    assert!(result.success, "fetch failed: {}", result.stderr);
    assert!(
        std::fs::read(&out).unwrap() == data,
        "the file differs from the origin's"
    );
    assert!(!dir.path().join("file.bin.part").exists());

    let takers = result.range_takers();
    assert!(
        takers.contains_key("local"),
        "the fetcher took no range: {takers:?}"
    );
    for (_, addr) in &helpers {
        assert!(
            takers.contains_key(&addr.to_string()),
            "helper {addr} took no range: {takers:?}"
        );
    }
    let ranges = size.div_ceil(RANGE);
    assert_eq!(takers.values().map(|&n| u64::from(n)).sum::<u64>(), ranges);
    // No retries here: the origin served the file exactly once, and the fetcher one spot
    // check of 4 KiB for each range a helper delivered (fewer than 135 each: every one).
    let helper_ranges = ranges - u64::from(takers["local"]);
    assert_eq!(
        origin.served(),
        size + helper_ranges * SPOT_CHECK,
        "origin served {} bytes",
        origin.served()
    );
    let complete = result.of("complete");
    assert_eq!(complete.len(), 1);
    assert_eq!(complete[0]["fetched_by"].as_object().unwrap().len(), 4);
    // The SHA-256 comes from the manifest made while publishing: it is the file's.
    assert_eq!(complete[0]["sha256"].as_str().unwrap(), sha256_hex(&data));
}

#[test]
fn a_helper_killed_mid_job_does_not_stop_the_download() {
    let size = 16 * MIB;
    let (origin, data) = origin(size, 2);
    let swarm_dir = tempfile::tempdir().unwrap();
    let swarm = &p2p_tests::new_swarm(swarm_dir.path());
    let (_tracker, tracker) = start_tracker(swarm);
    let mut helpers: Vec<_> = (0..3)
        .map(|_| start_helper(tracker, swarm, origin.addr))
        .collect();
    wait_for_peers(tracker, swarm, 3);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("file.bin");
    let fetch = start_fetch(
        tracker,
        swarm,
        &origin.url("file.bin"),
        &out,
        &["--range-size", &range_arg()],
    );
    // Kill one helper once a quarter of the file has left the origin.
    let deadline = Instant::now() + LIMIT;
    while origin.served() < size / 4 {
        assert!(Instant::now() < deadline, "the job never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (mut victim, victim_addr) = helpers.remove(0);
    victim.kill();
    let result = finish_fetch(fetch, LIMIT);
    assert!(result.success, "fetch failed: {}", result.stderr);
    assert!(
        std::fs::read(&out).unwrap() == data,
        "the file differs from the origin's"
    );
    let takers = result.range_takers();
    assert!(takers.len() >= 3, "{takers:?}");
    eprintln!("killed {victim_addr}; ranges by participant: {takers:?}");
    // At most the ranges the dead helper had in flight were fetched twice, beside the
    // spot checks of what helpers delivered.
    let helper_ranges: u64 = takers
        .iter()
        .filter(|(by, _)| *by != "local")
        .map(|(_, n)| u64::from(*n))
        .sum();
    assert!(
        origin.served() <= size + 2 * RANGE + helper_ranges * SPOT_CHECK,
        "origin served {} bytes for a {size}-byte file",
        origin.served()
    );
}

#[test]
fn an_origin_that_changes_mid_job_aborts_cleanly() {
    let size = 12 * MIB;
    let (origin, _) = origin(size, 3);
    origin.change_after(size / 3);
    let swarm_dir = tempfile::tempdir().unwrap();
    let swarm = &p2p_tests::new_swarm(swarm_dir.path());
    let (_tracker, tracker) = start_tracker(swarm);
    let _helpers: Vec<_> = (0..2)
        .map(|_| start_helper(tracker, swarm, origin.addr))
        .collect();
    wait_for_peers(tracker, swarm, 2);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("file.bin");
    let fetch = start_fetch(
        tracker,
        swarm,
        &origin.url("file.bin"),
        &out,
        &["--range-size", &range_arg()],
    );
    let result = finish_fetch(fetch, LIMIT);
    assert!(origin.changed());
    assert!(!result.success, "a fetch of a changing file succeeded");
    assert!(
        result.stderr.contains("changed"),
        "no clear message: {}",
        result.stderr
    );
    assert_eq!(result.of("failed").len(), 1);
    assert!(!out.exists(), "a final file was left behind");
    assert!(
        !dir.path().join("file.bin.part").exists(),
        "the part file was left behind"
    );
}

#[test]
fn a_second_fetch_of_the_same_url_comes_from_peers() {
    let size = 6 * MIB;
    let (origin, data) = origin(size, 4);
    let swarm_dir = tempfile::tempdir().unwrap();
    let swarm = &p2p_tests::new_swarm(swarm_dir.path());
    let (_tracker, tracker) = start_tracker(swarm);
    let _helper = start_helper(tracker, swarm, origin.addr);
    wait_for_peers(tracker, swarm, 1);
    let dir = tempfile::tempdir().unwrap();
    let url = origin.url("again.bin");

    // The first fetch keeps seeding.
    let first_out = dir.path().join("first.bin");
    let mut first = start_fetch(
        tracker,
        swarm,
        &url,
        &first_out,
        &["--range-size", &range_arg(), "--seed"],
    );
    let stdout = first.child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("\"complete\"") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(LIMIT)
        .expect("the first fetch did not complete");
    assert!(std::fs::read(&first_out).unwrap() == data);
    let served = origin.served();
    assert!(
        (size..=size + size.div_ceil(RANGE) * SPOT_CHECK).contains(&served),
        "{served}"
    );
    let gets = origin.gets();
    wait_until_listed_complete(tracker, swarm);

    let second_out = dir.path().join("second.bin");
    let second = start_fetch(tracker, swarm, &url, &second_out, &[]);
    let result = finish_fetch(second, LIMIT);
    assert!(result.success, "second fetch failed: {}", result.stderr);
    assert_eq!(result.of("from_swarm").len(), 1, "{}", result.stderr);
    assert!(std::fs::read(&second_out).unwrap() == data);
    // Only the check of the tracker's hint: four whole chunks of 1 MiB, one GET each.
    assert_eq!(
        origin.served(),
        served + 4 * MIB,
        "the origin served more than the hint's check"
    );
    assert_eq!(
        origin.gets(),
        gets + 4,
        "the origin saw more than the check's GETs"
    );
}

#[test]
fn an_origin_without_ranges_is_downloaded_alone_with_a_warning() {
    let size = 3 * MIB;
    let data = test_bytes(size as usize, 5);
    let origin = Origin::start(
        data.clone(),
        OriginConfig {
            rate: 0,
            ranges: false,
        },
    );
    let swarm_dir = tempfile::tempdir().unwrap();
    let swarm = &p2p_tests::new_swarm(swarm_dir.path());
    let (_tracker, tracker) = start_tracker(swarm);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plain.bin");
    let result = finish_fetch(
        start_fetch(tracker, swarm, &origin.url("plain.bin"), &out, &[]),
        LIMIT,
    );
    assert!(result.success, "fetch failed: {}", result.stderr);
    assert!(
        result.stderr.contains("does not accept byte ranges"),
        "{}",
        result.stderr
    );
    assert!(std::fs::read(&out).unwrap() == data);
    assert_eq!(origin.gets(), 1);
}

#[test]
fn a_sha256_mismatch_leaves_no_final_file() {
    let size = MIB;
    let (origin, _) = origin(size, 6);
    let swarm_dir = tempfile::tempdir().unwrap();
    let swarm = &p2p_tests::new_swarm(swarm_dir.path());
    let (_tracker, tracker) = start_tracker(swarm);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("checked.bin");
    let wrong = "00".repeat(32);
    let result = finish_fetch(
        start_fetch(
            tracker,
            swarm,
            &origin.url("checked.bin"),
            &out,
            &["--sha256", &wrong],
        ),
        LIMIT,
    );
    assert!(!result.success);
    assert!(
        result.stderr.contains("SHA-256 mismatch"),
        "{}",
        result.stderr
    );
    assert!(!out.exists());
    assert!(!dir.path().join("checked.bin.part").exists());
}

fn wait_until_listed_complete(tracker: std::net::SocketAddr, swarm: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = std::process::Command::new(p2p_bin())
            .args([
                "ls",
                "--json",
                "--tracker",
                &tracker.to_string(),
                "--secret-file",
                swarm,
            ])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("\"complete\":true") {
            // The origin key follows the announce on the same connection.
            std::thread::sleep(Duration::from_millis(200));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the tracker never listed the file"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
