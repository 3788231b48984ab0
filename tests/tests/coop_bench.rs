//! Benchmark of the cooperative origin download (not a timed test; ignored by default):
//! one file on the rate-limited test origin (each connection capped, standing in for each
//! participant's own uplink), fetched by 1, 2, 4 and 8 participants (a fetcher and N-1
//! `p2p helper`s), each as a ratio to one participant alone, and by `aria2c -x N` from one
//! process in the same run.
//!
//! ```text
//! cargo test --release -p p2p-tests --test coop_bench -- --ignored --nocapture
//! COOP_BENCH_MIB=128 COOP_BENCH_RATE_MIB=8 cargo test --release ...   # other sizes
//! ```

mod coop_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coop_support::*;

const MIB: u64 = 1024 * 1024;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One cooperative fetch with `participants` (fetcher included); wall seconds, and the
/// job's own seconds as the fetcher reports them.
fn coop_run(origin: &Origin, data: &[u8], participants: usize) -> (f64, f64, usize) {
    let swarm_dir = tempfile::tempdir().unwrap();
    let swarm = p2p_tests::new_swarm(swarm_dir.path());
    let (_tracker, tracker) = start_tracker(&swarm);
    let helpers: Vec<_> = (1..participants)
        .map(|_| start_helper(tracker, &swarm, origin.addr))
        .collect();
    wait_for_peers(tracker, &swarm, participants - 1);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.bin");
    let before = origin.served();
    let started = Instant::now();
    let fetch = start_fetch(tracker, &swarm, &origin.url("bench.bin"), &out, &[]);
    let result = finish_fetch(fetch, Duration::from_secs(600));
    let wall = started.elapsed().as_secs_f64();
    assert!(result.success, "fetch failed: {}", result.stderr);
    assert!(std::fs::read(&out).unwrap() == data, "the file differs");
    let takers = result.range_takers();
    assert_eq!(
        takers.len(),
        participants,
        "not everyone took ranges: {takers:?}"
    );
    let job = result.of("complete")[0]["seconds"].as_f64().unwrap_or(wall);
    eprintln!(
        "{participants} participant(s): {wall:.2} s wall, {job:.2} s job, origin served {} MiB, ranges {takers:?}",
        (origin.served() - before) / MIB
    );
    drop(helpers);
    (wall, job, takers.len())
}

/// `aria2c -x N` from one process; wall seconds.
fn aria2_run(origin: &Origin, data: &[u8], connections: usize) -> Option<f64> {
    let dir = tempfile::tempdir().unwrap();
    let n = connections.to_string();
    let started = Instant::now();
    let status = Command::new("aria2c")
        .args(["-q", "--allow-overwrite=true", "--auto-file-renaming=false"])
        .args(["-x", &n, "-s", &n, "-k", "1M", "--file-allocation=none"])
        .arg("-d")
        .arg(dir.path())
        .args(["-o", "bench.bin", &origin.url("bench.bin")])
        .stdout(Stdio::null())
        .status()
        .ok()?;
    let wall = started.elapsed().as_secs_f64();
    assert!(status.success(), "aria2c failed");
    assert!(
        std::fs::read(dir.path().join("bench.bin")).unwrap() == data,
        "aria2c's file differs"
    );
    eprintln!("aria2c -x {connections}: {wall:.2} s");
    Some(wall)
}

#[test]
#[ignore = "benchmark: cargo test --release -p p2p-tests --test coop_bench -- --ignored --nocapture"]
fn coop_bench() {
    let size = env_u64("COOP_BENCH_MIB", 64) * MIB;
    let rate = env_u64("COOP_BENCH_RATE_MIB", 8) * MIB;
    let data = test_bytes(size as usize, 42);
    let origin = Origin::start(data.clone(), OriginConfig { rate, ranges: true });
    let counts = [1usize, 2, 4, 8];
    let aria2 = Path::new("/usr/bin/aria2c").exists()
        || Command::new("aria2c").arg("--version").output().is_ok();

    let mut rows = Vec::new();
    for &n in &counts {
        let (wall, job, took) = coop_run(&origin, &data, n);
        let aria = aria2.then(|| aria2_run(&origin, &data, n)).flatten();
        rows.push((n, wall, job, took, aria));
    }
    let (base_wall, base_job) = (rows[0].1, rows[0].2);
    println!();
    println!(
        "{} MiB file, origin capped at {} MiB/s per connection, 1 MiB ranges, 1 origin connection per participant",
        size / MIB,
        rate / MIB
    );
    println!();
    println!(
        "| participants (took ranges) | p2p fetch wall (s) | time vs 1 participant | job only (s) | aria2c -x N wall (s) | aria2c vs p2p alone |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for (n, wall, job, took, aria) in rows {
        let aria = aria.map_or("n/a".to_string(), |a| {
            format!("{a:.2} | {:.2}", a / base_wall)
        });
        println!(
            "| {n} ({took}) | {wall:.2} | {:.2} | {job:.2} (×{:.2}) | {aria} |",
            wall / base_wall,
            job / base_job
        );
    }
}
