//! Issue 14, files: a symbolic link planted where a download keeps its files (`NAME.part`,
//! its record `NAME.part.p2p`, `p2p fetch`'s `NAME.part`) and pointing outside the
//! destination is refused with an error saying what to do, and its target keeps its bytes.

mod coop_support;

use std::os::unix::fs::symlink;
use std::path::Path;

use coop_support::{Origin, OriginConfig, finish_fetch, start_fetch};
use p2p_tests::*;

const PRECIOUS: &[u8] = b"bytes that are not p2p's to touch\n";

/// A file outside the destination, as someone else's would be.
fn precious(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("precious.txt");
    std::fs::write(&path, PRECIOUS).unwrap();
    path
}

fn assert_refused(status: std::process::ExitStatus, stderr: &str, link: &Path) {
    assert!(!status.success(), "exited {status}\n{stderr}");
    let shown = link.display().to_string();
    assert!(
        stderr.contains(&shown) && stderr.contains("symbolic link") && stderr.contains("remove"),
        "no clear refusal naming {shown}:\n{stderr}"
    );
}

#[test]
fn get_refuses_a_linked_part_file_or_record() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = precious(outside.path());
    let swarm = new_swarm(dir.path());
    let src = dir.path().join("small.bin");
    write_file(&src, 300 * 1024, 3);
    let (_tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);
    let seeder = start_seeder("seeder", dir.path(), &swarm, &src, tracker_addr, &[]);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for planted in ["small.bin.part", "small.bin.part.p2p"] {
        let link = out.join(planted);
        symlink(&target, &link).unwrap();
        // `--force` replaces a final file; it never writes through a link.
        for force in [false, true] {
            let mut args = vec![
                "get",
                &seeder.ticket,
                "-o",
                out.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ];
            if force {
                args.push("--force");
            }
            let (status, _, stderr) = run(dir.path(), &args);
            assert_refused(status, &stderr, &link);
            assert_eq!(std::fs::read(&target).unwrap(), PRECIOUS, "{planted}");
            assert!(!out.join("small.bin").exists());
        }
        std::fs::remove_file(&link).unwrap();
    }
}

#[test]
fn fetch_refuses_a_linked_part_file() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = precious(outside.path());
    let swarm = new_swarm(dir.path());
    let (_tracker, tracker) = coop_support::start_tracker(&swarm);
    let origin = Origin::start(
        coop_support::test_bytes(64 * 1024, 4),
        OriginConfig {
            rate: 64 * 1024 * 1024,
            ranges: true,
        },
    );
    let out = dir.path().join("file.bin");
    let link = dir.path().join("file.bin.part");
    symlink(&target, &link).unwrap();
    let fetch = start_fetch(tracker, &swarm, &origin.url("file.bin"), &out, &["--force"]);
    let result = finish_fetch(fetch, WAIT);
    assert!(!result.success, "fetch succeeded: {}", result.stderr);
    let shown = link.display().to_string();
    assert!(
        result.stderr.contains(&shown) && result.stderr.contains("symbolic link"),
        "no clear refusal naming {shown}:\n{}",
        result.stderr
    );
    assert_eq!(std::fs::read(&target).unwrap(), PRECIOUS);
    assert!(!out.exists());
    assert_eq!(origin.gets(), 0, "nothing was fetched");
}
