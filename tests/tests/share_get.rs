//! Issue 4, end-to-end test 1: `p2p share` then `p2p get` of a 64 MiB file: bytes equal,
//! exit 0, and the SHA-256 the getter prints is the file's.

use std::time::Instant;

use p2p_tests::*;

#[test]
fn share_then_get_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    let src = dir.path().join("big.bin");
    let data = write_file(&src, 64 * 1024 * 1024, 1);
    let expected_sha = sha256_hex(&data);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();

    let (_tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);
    let seeder = start_seeder("seeder", dir.path(), &swarm, &src, tracker_addr, &[]);
    assert!(
        seeder.ticket.starts_with("p2p2:"),
        "ticket: {}",
        seeder.ticket
    );

    // Plain (not --json): the result is `SHA256  PATH` on standard output.
    let started = Instant::now();
    let mut getter = Proc::spawn(
        "getter",
        dir.path(),
        &["get", &seeder.ticket, "-o", out.to_str().unwrap()],
    );
    let status = getter.wait_exit(WAIT);
    let took = started.elapsed();
    assert!(
        status.success(),
        "get exited {status}\n{}",
        getter.describe()
    );
    let stdout = getter.stdout.text();
    let line = stdout
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no result line\n{}", getter.describe()));
    let (sha, path) = line.split_once("  ").expect("`SHA256  PATH`");
    let final_path = out.join("big.bin");
    assert_eq!(std::path::Path::new(path), final_path, "printed path");
    assert_eq!(sha, expected_sha, "printed SHA-256");
    assert_file_eq(&final_path, &data);
    // Nothing left behind but the file.
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["big.bin"], "output dir holds only the file");
    eprintln!("64 MiB in {took:?}");
}

/// `--sha256`: another file's hash stops the download before anything is written; the
/// right one (in any case) lets it through; a malformed one is a usage error.
#[test]
fn get_checks_an_expected_sha256_before_downloading() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    let src = dir.path().join("small.bin");
    let data = write_file(&src, 3 * 1024 * 1024 + 17, 2);
    let (_tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);
    let seeder = start_seeder("seeder", dir.path(), &swarm, &src, tracker_addr, &[]);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let out_arg = out.to_str().unwrap();
    let get = |sha: &str| {
        run(
            dir.path(),
            &[
                "get",
                &seeder.ticket,
                "-o",
                out_arg,
                "--listen",
                "127.0.0.1:0",
                "--sha256",
                sha,
            ],
        )
    };

    let other = sha256_hex(b"some other file");
    let (status, _, stderr) = get(&other);
    assert!(!status.success(), "a wrong hash must fail\n{stderr}");
    assert!(
        stderr.contains(&format!("not the expected {other}"))
            && stderr.contains(&sha256_hex(&data)),
        "stderr names both hashes: {stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert!(left.is_empty(), "nothing written: {left:?}");

    let (status, _, stderr) = get("not-hex");
    assert_eq!(status.code(), Some(2), "usage error\n{stderr}");
    assert!(stderr.contains("64 hex digits"), "{stderr}");

    let (status, stdout, stderr) = get(&sha256_hex(&data).to_uppercase());
    assert!(status.success(), "the right hash passes\n{stderr}");
    assert!(stdout.starts_with(&sha256_hex(&data)), "{stdout}");
    assert_file_eq(&out.join("small.bin"), &data);
}
