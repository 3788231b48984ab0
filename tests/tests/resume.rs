//! Issue 4, end-to-end test 5: `kill -9` a getter mid-download and run it again: it resumes
//! (fetching no more than the missing chunks plus one), the file is exact, and no file
//! exists under the final name before the download is complete.

use std::path::Path;
use std::time::Duration;

use p2p_tests::*;

const CHUNK: u64 = 1024 * 1024;
const SIZE: usize = 32 * 1024 * 1024;

/// A file under the final name must be the whole file, whenever it is seen.
fn check_final_name(final_path: &Path, data: &[u8], complete_seen: bool, getter: &Proc) {
    if final_path.exists() && !complete_seen {
        let got = std::fs::read(final_path).unwrap_or_default();
        assert!(
            got == data,
            "{} exists before completion with {} of {} bytes\n{}",
            final_path.display(),
            got.len(),
            data.len(),
            getter.describe()
        );
    }
}

#[test]
fn getter_killed_then_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    let src = dir.path().join("resume.bin");
    let data = write_file(&src, SIZE, 5);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let final_path = out.join("resume.bin");
    let part_path = out.join("resume.bin.part");

    let (_tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);
    let seeder = start_seeder(
        "seeder",
        dir.path(),
        &swarm,
        &src,
        tracker_addr,
        &["--upload-limit", &(8 * 1024 * 1024).to_string()],
    );

    // First run: watch the directory until about 40%, then kill -9.
    let mut first = start_getter("getter-1", dir.path(), &swarm, &seeder.ticket, &out, &[]);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        assert!(
            !final_path.exists(),
            "{} exists mid-download\n{}",
            final_path.display(),
            first.describe()
        );
        let have = first.json_lines().iter().filter_map(progress_bytes).max();
        if have.is_some_and(|b| b >= SIZE as u64 * 2 / 5) {
            break;
        }
        assert!(
            first.try_status().is_none(),
            "getter-1 exited\n{}",
            first.describe()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no 40% within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    first.kill9();
    let killed_at = first
        .json_lines()
        .iter()
        .filter_map(progress_bytes)
        .max()
        .unwrap();
    assert!(killed_at < SIZE as u64, "complete before the kill");
    assert!(!final_path.exists(), "final name exists after the kill");
    assert!(
        part_path.exists(),
        "no {} after the kill",
        part_path.display()
    );

    // Second run, with logs (the resume line) and kept seeding (its counters reach the
    // tracker).
    let mut second = start_getter(
        "getter-2",
        dir.path(),
        &swarm,
        &seeder.ticket,
        &out,
        &["-v", "--seed"],
    );
    let deadline = std::time::Instant::now() + WAIT;
    let (path, sha) = loop {
        let lines = second.json_lines();
        let complete = lines.iter().find(|v| v["event"] == "complete");
        check_final_name(&final_path, &data, complete.is_some(), &second);
        if let Some(v) = complete {
            break (
                std::path::PathBuf::from(v["path"].as_str().unwrap()),
                v["sha256"].as_str().unwrap().to_string(),
            );
        }
        if let Some(v) = lines.iter().find(|v| v["event"] == "failed") {
            panic!("resumed download failed: {v}\n{}", second.describe());
        }
        assert!(
            second.try_status().is_none(),
            "getter-2 exited\n{}",
            second.describe()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no completion within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(path, final_path);
    assert_eq!(sha, sha256_hex(&data));
    assert_file_eq(&final_path, &data);
    assert!(!part_path.exists(), "the .part file is still there");
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["resume.bin"], "left beside the file: {names:?}");

    // "resuming: L of N chunks listed, V verified"
    let (listed, count, verified) = second.wait_stderr("the resume log line", |line| {
        let rest = line.split("resuming: ").nth(1)?;
        let nums: Vec<u64> = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .take(3)
            .map(|s| s.parse().unwrap())
            .collect();
        (nums.len() == 3).then(|| (nums[0], nums[1], nums[2]))
    });
    eprintln!(
        "killed at {killed_at} bytes; resumed with {listed} of {count} chunks listed, {verified} verified"
    );
    assert_eq!(count, SIZE as u64 / CHUNK);
    assert!(verified > 0, "nothing was resumed");
    assert!(verified <= listed);
    let missing = count - verified;

    // What the second run fetched: its downloaded bytes, as its heartbeat tells the tracker.
    let seeder_addr = seeder.addr.to_string();
    let fetched = wait_for(
        "getter-2's counters at the tracker",
        Duration::from_secs(20),
        || {
            let peers = query_json(dir.path(), &swarm, "peers", tracker_addr)?;
            let getters: Vec<u64> = peers
                .iter()
                .filter(|p| p["listen_addr"] != seeder_addr.as_str())
                .map(|p| p["downloaded_bytes"].as_u64().unwrap())
                .filter(|&d| d >= missing * CHUNK)
                .collect();
            (getters.len() == 1).then(|| getters[0])
        },
    );
    eprintln!("second run fetched {fetched} bytes for {missing} missing chunks");
    assert!(
        fetched <= (missing + 1) * CHUNK,
        "second run fetched {fetched} bytes, more than the {missing} missing chunks plus one"
    );
}
