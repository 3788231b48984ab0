//! Issue 4, end-to-end test 7: Hostile input: random bytes and a 4 GiB length prefix to the
//! tracker and to a peer port close the connection and the process keeps serving others; a
//! manifest named `../../escape` lands inside the output directory; a malformed ticket gets
//! a clear message and exit 2.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use p2p_tests::*;

const SIZE: usize = 4 * 1024 * 1024 + 12345;

/// The hostile openings: (what, bytes).
fn hostile_openings() -> Vec<(&'static str, Vec<u8>)> {
    // Random bytes (fixed seed); the first byte is forced high so the length prefix is
    // beyond any limit whatever the seed, rather than a valid length still waiting for data.
    let mut random = pseudo_random(64 * 1024, 0xbad);
    random[0] |= 0x80;
    // A valid length, an unknown kind, garbage.
    let mut unknown_kind = vec![0, 0, 0, 64, 0xee];
    unknown_kind.extend(pseudo_random(63, 0xbad2));
    // 4 GiB announced, a few bytes sent.
    let mut four_gib = vec![0xff, 0xff, 0xff, 0xff, 1];
    four_gib.extend(pseudo_random(1024, 0xbad3));
    vec![
        ("random bytes", random),
        ("an unknown kind", unknown_kind),
        ("a 4 GiB length prefix", four_gib),
    ]
}

fn assert_closes(target: &str, addr: SocketAddr) {
    for (what, bytes) in hostile_openings() {
        assert!(
            send_and_expect_close(addr, &bytes, Duration::from_secs(10)),
            "the {target} at {addr} kept the connection open after {what}"
        );
    }
}

#[test]
fn hostile_bytes_to_tracker_and_peer() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    let src = dir.path().join("target.bin");
    let data = write_file(&src, SIZE, 7);
    let (mut tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);
    let mut seeder = start_seeder("seeder", dir.path(), &swarm, &src, tracker_addr, &[]);

    assert_closes("tracker", tracker_addr);
    assert_closes("peer", seeder.addr);
    // Several hostile connections open at once, then the real work alongside them.
    let held: Vec<_> = (0..8)
        .map(|i| {
            let addr = if i % 2 == 0 {
                tracker_addr
            } else {
                seeder.addr
            };
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            use std::io::Write;
            let _ = s.write_all(&[0xff, 0xff, 0xff, 0xff]);
            s
        })
        .collect();

    assert!(
        tracker.try_status().is_none(),
        "the tracker died\n{}",
        tracker.describe()
    );
    assert!(
        seeder.proc.try_status().is_none(),
        "the seeder died\n{}",
        seeder.proc.describe()
    );
    // Still serving: the tracker lists the file, and a get from the seeder works.
    let files = query_json(dir.path(), &swarm, "ls", tracker_addr).expect("p2p ls works");
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0]["name"], "target.bin");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut getter = start_getter("getter", dir.path(), &swarm, &seeder.ticket, &out, &[]);
    let (path, sha) = wait_complete(&mut getter);
    assert!(getter.wait_exit(WAIT).success(), "{}", getter.describe());
    assert_eq!(sha, sha256_hex(&data));
    assert_file_eq(&path, &data);
    drop(held);
}

#[test]
fn manifest_named_dot_dot_escape_stays_in_the_output_dir() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    // Output at <tmp>/a/b/out: `out/../../escape` would be <tmp>/a/escape, still in <tmp>.
    let out = dir.path().join("a/b/out");
    std::fs::create_dir_all(&out).unwrap();
    let data = pseudo_random(SIZE, 8);
    let manifest = manifest_of("../../escape", &data);
    let content_id = manifest.content_id().to_string();

    let (_tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);
    let _publisher = HarnessPeer::start(tracker_addr, &swarm, manifest, data.clone(), false);
    wait_for("the file listed", WAIT, || {
        let files = query_json(dir.path(), &swarm, "ls", tracker_addr)?;
        files
            .iter()
            .any(|f| f["content_id"] == content_id.as_str())
            .then_some(())
    });

    let tracker = tracker_addr.to_string();
    let mut getter = start_getter(
        "getter",
        dir.path(),
        &swarm,
        &content_id,
        &out,
        &["--tracker", &tracker],
    );
    let (path, sha) = wait_complete(&mut getter);
    assert!(getter.wait_exit(WAIT).success(), "{}", getter.describe());
    assert_eq!(sha, sha256_hex(&data));
    assert_eq!(
        path.parent(),
        Some(out.as_path()),
        "landed at {}",
        path.display()
    );
    assert_file_eq(&path, &data);
    assert!(!dir.path().join("a/escape").exists(), "escaped to a/escape");
    assert!(!dir.path().join("escape").exists());
    let mut files = files_under(dir.path());
    files.retain(|f| !f.ends_with("swarm.key") && !f.starts_with(dir.path().join("p2p-state")));
    assert_eq!(
        files,
        std::slice::from_ref(&path),
        "files written: {files:?}"
    );
    eprintln!("'../../escape' saved as {}", path.display());
}

#[test]
fn malformed_ticket_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let secret = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
    let cases = [
        (
            "p2p2:not-a-content-id:name:127.0.0.1:9".to_string(),
            "malformed ticket",
        ),
        ("p2p2:".to_string(), "malformed ticket"),
        (
            format!("p2p2:{id}:{secret}:n%zz:127.0.0.1:9"),
            "malformed ticket",
        ),
        (
            format!("p2p2:{id}:{}:n:127.0.0.1:9", &secret[2..]),
            "swarm secret",
        ),
        // A ticket of the format before private swarms: no secret, so no way in.
        (
            format!("p2p1:{id}:name:127.0.0.1:9"),
            "older p2p and carries no swarm secret",
        ),
    ];
    for (ticket, expected) in &cases {
        let (status, stdout, stderr) = run(dir.path(), &["get", ticket, "-o", "out/"]);
        assert_eq!(status.code(), Some(2), "get {ticket}: {status}\n{stderr}");
        assert!(
            stderr.contains(expected),
            "get {ticket}: unclear message: {stderr}"
        );
        assert!(stdout.trim().is_empty(), "get {ticket} printed {stdout}");
    }
    let (_, _, stderr) = run(dir.path(), &["get", &cases[4].0, "-o", "out/"]);
    assert!(
        stderr.contains("ask the sender for a new ticket"),
        "{stderr}"
    );
    assert_eq!(
        files_under(dir.path()),
        Vec::<PathBuf>::new(),
        "nothing written"
    );
}
