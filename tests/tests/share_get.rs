//! Issue 4, end-to-end test 1: `p2p share` then `p2p get` of a 64 MiB file: bytes equal,
//! exit 0, and the SHA-256 the getter prints is the file's.

use std::time::Instant;

use p2p_tests::*;

#[test]
fn share_then_get_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = swarm_name("share-get");
    let src = dir.path().join("big.bin");
    let data = write_file(&src, 64 * 1024 * 1024, 1);
    let expected_sha = sha256_hex(&data);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();

    let (_tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);
    let seeder = start_seeder("seeder", dir.path(), &swarm, &src, tracker_addr, &[]);
    assert!(
        seeder.ticket.starts_with("p2p1:"),
        "ticket: {}",
        seeder.ticket
    );

    // Plain (not --json): the result is `SHA256  PATH` on standard output.
    let started = Instant::now();
    let mut getter = Proc::spawn(
        "getter",
        dir.path(),
        &[
            "--swarm",
            &swarm,
            "get",
            &seeder.ticket,
            "-o",
            out.to_str().unwrap(),
        ],
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
