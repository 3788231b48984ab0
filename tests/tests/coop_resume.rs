//! A `p2p fetch` killed mid-job resumes from the ranges its record lists on disk when the
//! origin's validator is unchanged, and starts over cleanly when it changed: the real
//! binary, killed with SIGKILL, against the loopback test origin slowed per connection.

mod coop_support;

use std::path::Path;
use std::time::Duration;

use coop_support::*;

const MIB: u64 = 1024 * 1024;
const RANGE: u64 = 256 * 1024;
/// Per-connection rate of the test origin: slow enough to kill the fetch halfway.
const RATE: u64 = MIB;
const SIZE: u64 = 8 * MIB;
const LIMIT: Duration = Duration::from_secs(90);

/// The test origin serving `SIZE` bytes of `seed` at `RATE` per connection.
fn slow_origin(seed: u64) -> (Origin, Vec<u8>) {
    let data = test_bytes(SIZE as usize, seed);
    let config = OriginConfig {
        rate: RATE,
        ranges: true,
    };
    (Origin::start(data.clone(), config), data)
}

/// Starts `p2p fetch` of `origin`'s file alone: its own swarm and tracker (returned, to
/// keep it running), no helpers.
fn start_alone(origin: &Origin, out: &Path) -> (Proc, (Proc, tempfile::TempDir)) {
    let swarm_dir = tempfile::tempdir().unwrap();
    let swarm = &p2p_tests::new_swarm(swarm_dir.path());
    let (tracker_proc, tracker) = start_tracker(swarm);
    let range = RANGE.to_string();
    let args = ["--range-size", range.as_str()];
    let fetch = start_fetch(tracker, swarm, &origin.url("file.bin"), out, &args);
    (fetch, (tracker_proc, swarm_dir))
}

/// Starts a fetch of `origin`'s file alone, waits until its
/// resume record exists and at least `served` bytes left the origin, and kills it.
fn fetch_and_kill(origin: &Origin, out: &Path, served: u64) {
    let (mut fetch, _tracker) = start_alone(origin, out);
    let record = out.with_file_name("file.bin.part.p2p");
    p2p_tests::wait_for("a resume record mid-fetch", LIMIT, || {
        (record.exists() && origin.served() >= served).then_some(())
    });
    assert!(
        fetch.child.try_wait().unwrap().is_none(),
        "the fetch ended before it could be killed"
    );
    fetch.kill();
}

/// Runs a fetch of `origin`'s file to its end; returns what it said.
fn fetch_to_end(origin: &Origin, out: &Path) -> FetchOutput {
    let (fetch, _tracker) = start_alone(origin, out);
    finish_fetch(fetch, LIMIT)
}

#[test]
fn a_killed_fetch_resumes_from_its_ranges_on_disk() {
    let (origin, data) = slow_origin(21);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("file.bin");
    fetch_and_kill(&origin, &out, SIZE / 3);
    assert!(dir.path().join("file.bin.part").exists());
    let served_first = origin.served();

    let result = fetch_to_end(&origin, &out);
    assert!(
        result.success,
        "the resumed fetch failed: {}",
        result.stderr
    );
    assert!(
        result.stderr.contains("resuming"),
        "no resume: {}",
        result.stderr
    );
    assert!(std::fs::read(&out).unwrap() == data, "the file differs");
    assert!(!dir.path().join("file.bin.part").exists());
    assert!(!dir.path().join("file.bin.part.p2p").exists());
    // The second run fetched only what the first had not saved.
    let served_second = origin.served() - served_first;
    assert!(
        served_second < SIZE,
        "the second run fetched {served_second} bytes of {SIZE}"
    );
}

#[test]
fn a_killed_fetch_starts_over_when_the_file_changed() {
    let (origin, _) = slow_origin(22);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("file.bin");
    fetch_and_kill(&origin, &out, SIZE / 3);
    // The file changes at the origin (another ETag) before the next run: it switches once
    // one more byte is served.
    origin.change_after(origin.served() + 1);
    get_one_byte(&origin);
    assert!(origin.changed());
    let served_first = origin.served();

    let result = fetch_to_end(&origin, &out);
    assert!(result.success, "the second fetch failed: {}", result.stderr);
    assert!(
        !result.stderr.contains("resuming"),
        "resumed across a change: {}",
        result.stderr
    );
    let changed = origin_bytes_after_change();
    assert!(
        std::fs::read(&out).unwrap() == changed,
        "the file is not the origin's new version"
    );
    assert!(origin.served() - served_first >= SIZE);
}

/// A plain ranged `GET` of the file's first byte.
fn get_one_byte(origin: &Origin) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(origin.addr).unwrap();
    let request =
        "GET /file.bin HTTP/1.1\r\nHost: origin\r\nRange: bytes=0-0\r\nConnection: close\r\n\r\n";
    conn.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
}

/// The origin's bytes after `change_after` (what `coop_support` serves then).
fn origin_bytes_after_change() -> Vec<u8> {
    test_bytes(SIZE as usize, CHANGED_SEED)
}
