//! Issue 4, end-to-end test 2: One seeder and five getters at once: all complete, and the
//! getters uploaded to each other (the tracker's peer list carries every peer's transfer
//! counters).

use std::time::Duration;

use p2p_tests::*;

const SIZE: usize = 32 * 1024 * 1024;
const GETTERS: usize = 5;

#[test]
fn one_seeder_five_getters_share_with_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    let src = dir.path().join("swarm.bin");
    let data = write_file(&src, SIZE, 2);
    let expected_sha = sha256_hex(&data);

    let (_tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);
    // The seeder's upload is capped (16 MiB/s, a modest link): serving all five alone would
    // take 10 s, so the getters have every reason to serve each other.
    let seeder = start_seeder(
        "seeder",
        dir.path(),
        &swarm,
        &src,
        tracker_addr,
        &["--upload-limit", &(16 * 1024 * 1024).to_string()],
    );

    let mut getters: Vec<Proc> = (0..GETTERS)
        .map(|i| {
            let out = dir.path().join(format!("out{i}"));
            std::fs::create_dir(&out).unwrap();
            start_getter(
                &format!("getter{i}"),
                dir.path(),
                &swarm,
                &seeder.ticket,
                &out,
                &["--seed"],
            )
        })
        .collect();

    for (i, getter) in getters.iter_mut().enumerate() {
        let (path, sha) = wait_complete(getter);
        assert_eq!(path, dir.path().join(format!("out{i}/swarm.bin")));
        assert_eq!(sha, expected_sha, "getter{i}'s SHA-256");
        assert_file_eq(&path, &data);
    }

    // Every peer heartbeats its counters to the tracker (every 2 s): wait until the getters'
    // downloads are all accounted for, then look at who uploaded.
    let seeder_addr = seeder.addr.to_string();
    let (seeder_up, getters_up, getters_down, getters_uploading) = wait_for(
        "peer counters covering every download",
        Duration::from_secs(30),
        || {
            let peers = query_json(dir.path(), &swarm, "peers", tracker_addr)?;
            let seeder = peers
                .iter()
                .find(|p| p["listen_addr"] == seeder_addr.as_str())?;
            let others: Vec<_> = peers
                .iter()
                .filter(|p| p["listen_addr"] != seeder_addr.as_str())
                .collect();
            if others.len() != GETTERS {
                return None;
            }
            let down: u64 = others
                .iter()
                .map(|p| p["downloaded_bytes"].as_u64().unwrap())
                .sum();
            let up: u64 = others
                .iter()
                .map(|p| p["uploaded_bytes"].as_u64().unwrap())
                .sum();
            let uploading = others
                .iter()
                .filter(|p| p["uploaded_bytes"].as_u64().unwrap() > 0)
                .count();
            (down >= (GETTERS * SIZE) as u64).then(|| {
                (
                    seeder["uploaded_bytes"].as_u64().unwrap(),
                    up,
                    down,
                    uploading,
                )
            })
        },
    );
    eprintln!(
        "seeder uploaded {seeder_up}, getters uploaded {getters_up} ({getters_uploading} of them), downloaded {getters_down}"
    );
    assert!(getters_up > 0, "no getter uploaded anything");
    assert!(
        getters_uploading >= 2,
        "only {getters_uploading} getter(s) uploaded"
    );
    // What the getters got from each other, the seeder did not have to send.
    assert!(
        seeder_up < (GETTERS * SIZE) as u64,
        "the seeder sent {seeder_up} bytes: everything, alone"
    );
}
