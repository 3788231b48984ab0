//! Issue 14: reply amplification. Members ask a tracker and a seeder for a large manifest
//! (2 MiB: a 1 GiB file in 16 KiB chunks) over and over on connections they never read.
//! Before send queues were bounded in bytes and manifests shared, 128 such requests took a
//! tracker from 40 MiB to 2 GiB of RSS. Now each connection is closed once its queue holds
//! a few replies, and neither process's peak RSS passes 64 MiB; both still answer a member
//! that reads.

use std::fs::File;
use std::net::SocketAddr;
use std::time::Duration;

use p2p_core::Message;
use p2p_core::secure::{StaticKey, SwarmSecret};
use p2p_tests::*;

/// A sparse file: its manifest is what is large, not its bytes on disk.
const SIZE: u64 = 1024 * 1024 * 1024;
const CHUNK: &str = "16384";
/// Members flooding each target (within the 32 one address may hold), and requests each.
const FLOODERS: usize = 30;
const REQUESTS: usize = 128;
const RSS_MAX_KIB: u64 = 64 * 1024;

/// A member that asks `target` for the manifest `REQUESTS` times and never reads.
fn flooder(
    target: SocketAddr,
    secret: &SwarmSecret,
    content_id: p2p_core::ContentId,
) -> Option<SecureStream> {
    let key = StaticKey::from_private(test_seed());
    let mut session = SecureStream::connect(target, &key, secret).ok()?;
    session
        .send(&hello(key.peer_id(), "", &secret.tag().name()))
        .ok()?;
    for _ in 0..REQUESTS {
        // The target closes the connection part-way: later sends fail, as they should.
        if session.send(&Message::GetManifest { content_id }).is_err() {
            break;
        }
    }
    Some(session)
}

/// Peak resident set of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[test]
fn a_manifest_flood_on_unread_connections_stays_under_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    let secret = read_secret(&swarm);
    let src = dir.path().join("big.bin");
    File::create(&src).unwrap().set_len(SIZE).unwrap();
    let (mut tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);
    let mut seeder = start_seeder(
        "seeder",
        dir.path(),
        &swarm,
        &src,
        tracker_addr,
        &["--chunk-size", CHUNK],
    );
    let content_id = seeder
        .ticket
        .split(':')
        .nth(1)
        .and_then(|hex| hex.parse().ok())
        .expect("the ticket's content id");

    let mut held = Vec::new();
    for target in [tracker_addr, seeder.addr] {
        for _ in 0..FLOODERS {
            held.extend(flooder(target, &secret, content_id));
        }
    }
    assert!(held.len() >= FLOODERS, "the flood could not connect");
    // What was queued is written or dropped: let the targets settle.
    std::thread::sleep(Duration::from_secs(2));

    // A member that reads gets the whole manifest from each.
    for target in [tracker_addr, seeder.addr] {
        let key = StaticKey::from_private(test_seed());
        let mut session = SecureStream::connect(target, &key, &secret).unwrap();
        session
            .send(&hello(key.peer_id(), "", &secret.tag().name()))
            .unwrap();
        session.send(&Message::GetManifest { content_id }).unwrap();
        let manifest = std::iter::from_fn(|| session.read_message(Duration::from_secs(30)).ok()?)
            .find_map(|m| match m {
                Message::ManifestReply { manifest } => Some(manifest),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{target} sent no manifest"));
        assert_eq!(manifest.size, SIZE);
    }

    let tracker_rss = peak_rss_kib(tracker.pid());
    let seeder_rss = peak_rss_kib(seeder.proc.pid());
    eprintln!(
        "peak RSS after {} flooders × {REQUESTS} GetManifest (2 MiB each): tracker {} KiB, \
         seeder {} KiB",
        held.len(),
        tracker_rss,
        seeder_rss
    );
    assert!(
        tracker_rss < RSS_MAX_KIB,
        "tracker peak RSS {tracker_rss} KiB"
    );
    assert!(seeder_rss < RSS_MAX_KIB, "seeder peak RSS {seeder_rss} KiB");
    drop(held);
    tracker.terminate(Duration::from_secs(10));
    seeder.proc.terminate(Duration::from_secs(10));
}
