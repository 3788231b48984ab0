//! Issue 4, end-to-end test 3: Two full seeders; `kill -9` one while a getter is at about
//! 30%: the download completes.

use p2p_tests::*;

const SIZE: usize = 32 * 1024 * 1024;

#[test]
fn seeder_killed_at_30_percent() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    let src = dir.path().join("crash.bin");
    let data = write_file(&src, SIZE, 3);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();

    let (_tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);
    // Capped uploads (4 MiB/s each) make the transfer last seconds, so 30% can be caught.
    let limit = (4 * 1024 * 1024).to_string();
    let extra = ["--upload-limit", limit.as_str()];
    let mut a = start_seeder("seeder-a", dir.path(), &swarm, &src, tracker_addr, &extra);
    let b = start_seeder("seeder-b", dir.path(), &swarm, &src, tracker_addr, &extra);
    assert_eq!(a.ticket, b.ticket, "same bytes, same ticket");
    // Both are listed before the getter starts.
    wait_for("two full sources", WAIT, || {
        let files = query_json(dir.path(), &swarm, "ls", tracker_addr)?;
        (files.first()?["full_sources"].as_u64()? >= 2).then_some(())
    });

    let mut getter = start_getter("getter", dir.path(), &swarm, &a.ticket, &out, &[]);
    let at = getter.wait_json("progress at 30%", |v| {
        progress_bytes(v).filter(|&b| b >= SIZE as u64 * 3 / 10)
    });
    assert!(at < SIZE as u64, "already complete at the kill: {at} bytes");
    a.proc.kill9();
    eprintln!("killed seeder-a at {at} of {SIZE} bytes");

    let (path, sha) = wait_complete(&mut getter);
    let status = getter.wait_exit(WAIT);
    assert!(
        status.success(),
        "get exited {status}\n{}",
        getter.describe()
    );
    assert_eq!(sha, sha256_hex(&data));
    assert_file_eq(&path, &data);
    drop(b);
}
