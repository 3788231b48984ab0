//! Issue 4, end-to-end test 4: Kill the tracker mid-download: the download completes; a new
//! tracker with no state on the same address knows the files and the peers again within a
//! bound.

use std::time::Duration;

use p2p_tests::*;

const SIZE: usize = 16 * 1024 * 1024;

#[test]
fn tracker_killed_mid_download_then_restarted_empty() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    let src = dir.path().join("soft.bin");
    let data = write_file(&src, SIZE, 4);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();

    // The address must survive the tracker: bound once with port 0, then reused.
    let (mut tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);
    let seeder = start_seeder(
        "seeder",
        dir.path(),
        &swarm,
        &src,
        tracker_addr,
        &["--upload-limit", &(4 * 1024 * 1024).to_string()],
    );
    let mut getter = start_getter(
        "getter",
        dir.path(),
        &swarm,
        &seeder.ticket,
        &out,
        &["--seed"],
    );
    let at = getter.wait_json("progress at 20%", |v| {
        progress_bytes(v).filter(|&b| b >= SIZE as u64 / 5)
    });
    assert!(
        at < SIZE as u64,
        "complete before the tracker could be killed"
    );
    tracker.kill9();
    eprintln!("killed the tracker at {at} of {SIZE} bytes");

    let (path, sha) = wait_complete(&mut getter);
    assert_eq!(sha, sha256_hex(&data));
    assert_file_eq(&path, &data);
    assert!(
        getter.try_status().is_none(),
        "getter --seed exited\n{}",
        getter.describe()
    );

    // A new tracker, no state, same address.
    let (_tracker2, addr2) = start_tracker(dir.path(), &swarm, Some(tracker_addr));
    assert_eq!(addr2, tracker_addr);
    let content_id = seeder.ticket.split(':').nth(1).unwrap().to_string();
    // Peers back off up to 5 s between reconnects, heartbeat every 2 s.
    let bound = Duration::from_secs(20);
    wait_for("the file listed by the new tracker", bound, || {
        let files = query_json(dir.path(), &swarm, "ls", tracker_addr)?;
        files
            .iter()
            .any(|f| f["content_id"] == content_id.as_str() && f["complete"] == true)
            .then_some(())
    });
    let seeder_addr = seeder.addr.to_string();
    wait_for("both peers known to the new tracker", bound, || {
        let peers = query_json(dir.path(), &swarm, "peers", tracker_addr)?;
        let serving: Vec<_> = peers
            .iter()
            .filter(|p| p["listen_addr"].as_str().is_some_and(|a| !a.is_empty()))
            .collect();
        (serving.len() >= 2
            && serving
                .iter()
                .any(|p| p["listen_addr"] == seeder_addr.as_str()))
        .then_some(())
    });
    // The getter saw the tracker go (its --json events stop once it seeds, so the
    // reconnection shows at the tracker, above).
    assert!(
        getter
            .json_lines()
            .iter()
            .any(|v| v["event"] == "tracker_lost"),
        "no tracker_lost event\n{}",
        getter.describe()
    );
    let files = query_json(dir.path(), &swarm, "ls", tracker_addr).unwrap();
    let file = files
        .iter()
        .find(|f| f["content_id"] == content_id.as_str())
        .unwrap();
    assert_eq!(file["name"], "soft.bin");
    assert_eq!(file["size"], SIZE as u64);
}
