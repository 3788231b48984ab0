//! Issue 4, end-to-end test 6: A peer that serves corrupted bytes (a harness peer in this
//! test, speaking the wire protocol): the getter detects it, bans it, and still writes the
//! exact file.

use std::sync::atomic::Ordering;

use p2p_tests::*;

const SIZE: usize = 16 * 1024 * 1024;

#[test]
fn corrupt_peer_is_banned_and_the_file_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    let src = dir.path().join("honest.bin");
    let data = write_file(&src, SIZE, 6);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();

    let (_tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);
    // The honest seeder is slow (4 MiB/s), the liar answers at once: it gets asked.
    let seeder = start_seeder(
        "seeder",
        dir.path(),
        &swarm,
        &src,
        tracker_addr,
        &["--upload-limit", &(4 * 1024 * 1024).to_string()],
    );
    let manifest = manifest_of("honest.bin", &data);
    assert_eq!(
        seeder.ticket.split(':').nth(1).unwrap(),
        manifest.content_id().to_string(),
        "the harness's manifest is the seeder's"
    );
    let liar = HarnessPeer::start(tracker_addr, &swarm, manifest, data.clone(), true);
    wait_for("two full sources", WAIT, || {
        let files = query_json(dir.path(), &swarm, "ls", tracker_addr)?;
        (files.first()?["full_sources"].as_u64()? >= 2).then_some(())
    });

    let mut getter = start_getter("getter", dir.path(), &swarm, &seeder.ticket, &out, &[]);
    let (path, sha) = wait_complete(&mut getter);
    let status = getter.wait_exit(WAIT);
    assert!(
        status.success(),
        "get exited {status}\n{}",
        getter.describe()
    );
    assert_eq!(sha, sha256_hex(&data));
    assert_file_eq(&path, &data);

    let pieces = liar.pieces_sent.load(Ordering::Relaxed);
    assert!(pieces > 0, "the corrupt peer was never asked for anything");
    let liar_addr = liar.addr.to_string();
    let bans: Vec<_> = getter
        .json_lines()
        .into_iter()
        .filter(|v| v["event"] == "peer_banned")
        .collect();
    eprintln!("the liar sent {pieces} pieces; bans: {bans:?}");
    assert!(
        bans.iter().any(|v| v["addr"] == liar_addr.as_str()),
        "no peer_banned event for {liar_addr}\n{}",
        getter.describe()
    );
    assert!(
        bans.iter().all(|v| v["addr"] == liar_addr.as_str()),
        "an honest peer was banned: {bans:?}"
    );
    assert!(
        getter.stderr.text().contains("peer banned"),
        "no ban in the log\n{}",
        getter.describe()
    );
}
