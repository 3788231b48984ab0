//! The machines wired together in memory, with no sockets: the test kit's `Swarm` carries
//! each machine's actions to the others as events, through the real wire encoding, on a
//! virtual clock.

use std::time::Duration;

use bytes::Bytes;
use p2p_core::peer::{FetchSpec, SPOT_CHECK_LEN};
use p2p_core::peer::{Peer, PeerConfig, PeerNotice};
use p2p_core::testkit::{Swarm, file_bytes};
use p2p_core::tracker::{Tracker, TrackerConfig};
use p2p_core::{ContentId, Instant, Manifest, ManifestBuilder, PeerId};

const SWARM: &str = "test";
const TRACKER: &str = "tracker:1";
const CHUNK_SIZE: u32 = 16 * 1024;

/// A tracker with empty state that forgets a silent peer after five seconds.
fn tracker() -> Tracker {
    Tracker::new(TrackerConfig {
        peer_timeout: Duration::from_secs(5),
        ..TrackerConfig::default()
    })
}

/// A swarm with its tracker up and no peer yet.
fn new_world() -> Swarm {
    let mut world = Swarm::new();
    world.add_tracker(TRACKER, tracker());
    world
}

/// Starts peer `id` listening at `addr`, in the swarm, knowing the tracker.
fn add_peer(world: &mut Swarm, addr: &str, id: u64) {
    let config = PeerConfig {
        peer_id: PeerId(id),
        swarm: SWARM.into(),
        listen_addr: addr.into(),
        trackers: vec![TRACKER.into()],
        rng_seed: id,
        ..PeerConfig::default()
    };
    let peer = Peer::new(config, world.now());
    world.add_peer(addr, peer);
}

fn manifest_of(name: &str, data: &[u8]) -> Manifest {
    let mut builder = ManifestBuilder::new(name, CHUNK_SIZE).unwrap();
    builder.update(data);
    builder.finish().unwrap()
}

fn completed(world: &Swarm, addr: &str, content_id: ContentId) -> bool {
    world
        .notices(addr)
        .contains(&PeerNotice::DownloadComplete { content_id })
}

#[test]
fn download_survives_a_seeder_vanishing_halfway() {
    let data = file_bytes(40 * CHUNK_SIZE as usize - 123, 7);
    let manifest = manifest_of("forty.bin", &data);
    let content_id = manifest.content_id();
    assert_eq!(manifest.chunk_count(), 40);

    let mut world = new_world();
    add_peer(&mut world, "seeder1:1", 1);
    add_peer(&mut world, "seeder2:1", 2);
    add_peer(&mut world, "downloader:1", 3);
    world.seed("seeder1:1", &manifest, &data);
    world.seed("seeder2:1", &manifest, &data);
    world.input("downloader:1", |peer, now| {
        peer.download(now, content_id, None)
    });

    let mut crashed = false;
    for _ in 0..200_000 {
        world.step();
        let have = world
            .peer("downloader:1")
            .held_chunks(content_id)
            .map_or(0, |c| c.count());
        if !crashed && have >= 20 {
            world.crash("seeder1:1");
            crashed = true;
        }
        if completed(&world, "downloader:1", content_id) {
            break;
        }
    }
    assert!(crashed, "the download never reached halfway");
    assert!(
        completed(&world, "downloader:1", content_id),
        "download did not complete; notices: {:?}",
        world.notices("downloader:1")
    );
    assert_eq!(world.disk("downloader:1").file(content_id, 40), data);
    assert!(
        world.peer("seeder2:1").uploaded_bytes() > 0,
        "the second seeder served nothing"
    );

    // Let haves reach the tracker, then read its state: seeder2 and the downloader (now a
    // full source itself) are listed; seeder1 is gone.
    for _ in 0..1000 {
        world.step();
    }
    let now = world.now();
    let peers = world.tracker(TRACKER).peers(now, SWARM);
    let addrs: Vec<&str> = peers.iter().map(|p| p.listen_addr.as_str()).collect();
    assert!(
        addrs.contains(&"seeder2:1") && addrs.contains(&"downloader:1"),
        "{addrs:?}"
    );
    assert!(!addrs.contains(&"seeder1:1"), "{addrs:?}");
    let downloader = peers
        .iter()
        .find(|p| p.listen_addr == "downloader:1")
        .unwrap();
    assert_eq!(downloader.chunks_held, 40);
    let files = world.tracker(TRACKER).files(SWARM);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].full_sources, 2);
    assert!(files[0].complete);
}

#[test]
fn corrupt_seeder_is_banned_and_file_is_exact() {
    let data = file_bytes(12 * CHUNK_SIZE as usize, 3);
    let manifest = manifest_of("twelve.bin", &data);
    let content_id = manifest.content_id();

    let mut world = new_world();
    add_peer(&mut world, "liar:1", 1);
    add_peer(&mut world, "honest:1", 2);
    add_peer(&mut world, "downloader:1", 3);
    world.seed("liar:1", &manifest, &data);
    world.corrupt_pieces("liar:1");
    world.seed("honest:1", &manifest, &data);
    world.input("downloader:1", |peer, now| {
        peer.download(now, content_id, None)
    });
    for _ in 0..200_000 {
        world.step();
        if completed(&world, "downloader:1", content_id) {
            break;
        }
    }
    assert!(completed(&world, "downloader:1", content_id));
    assert_eq!(world.disk("downloader:1").file(content_id, 12), data);
    let banned = world
        .notices("downloader:1")
        .iter()
        .any(|n| matches!(n, PeerNotice::PeerBanned { peer_id, .. } if *peer_id == PeerId(1)));
    assert!(banned, "the corrupt seeder was not banned");
}

#[test]
fn download_fails_with_reason_when_no_source_exists() {
    let data = file_bytes(4 * CHUNK_SIZE as usize, 1);
    let manifest = manifest_of("lost.bin", &data);
    let content_id = manifest.content_id();
    let mut world = new_world();
    add_peer(&mut world, "downloader:1", 3);
    world.input("downloader:1", |peer, now| {
        peer.download(now, content_id, Some(manifest))
    });
    for _ in 0..100_000 {
        world.step();
        if world.now() > Instant::from_nanos(0) + Duration::from_secs(600) {
            break;
        }
    }
    let failure = world.notices("downloader:1").iter().find_map(|n| match n {
        PeerNotice::DownloadFailed {
            reason,
            missing_chunks,
            ..
        } => Some((reason.clone(), missing_chunks.clone())),
        _ => None,
    });
    let (reason, missing) = failure.expect("the download should have failed");
    assert_eq!(missing, vec![0, 1, 2, 3]);
    assert!(reason.contains("no reachable peer holds 4"), "{reason}");
}

#[test]
fn getters_share_with_each_other() {
    let data = file_bytes(64 * CHUNK_SIZE as usize, 9);
    let manifest = manifest_of("shared.bin", &data);
    let content_id = manifest.content_id();
    let mut world = new_world();
    add_peer(&mut world, "seeder:1", 1);
    world.seed("seeder:1", &manifest, &data);
    let getters: Vec<String> = (0..5).map(|i| format!("getter{i}:1")).collect();
    for (i, getter) in getters.iter().enumerate() {
        add_peer(&mut world, getter, 10 + i as u64);
        world.input(getter, |peer, now| peer.download(now, content_id, None));
    }
    let all_done = world.drive_until(500_000, |w| {
        getters.iter().all(|g| completed(w, g, content_id))
    });
    assert!(all_done, "not every getter completed");
    let mut getter_upload = 0;
    for getter in &getters {
        assert_eq!(world.disk(getter).file(content_id, 64), data);
        getter_upload += world.peer(getter).uploaded_bytes();
    }
    assert!(getter_upload > 0, "getters never served each other");
}

#[test]
fn download_survives_tracker_outage_and_tracker_recovers() {
    let data = file_bytes(48 * CHUNK_SIZE as usize, 5);
    let manifest = manifest_of("outage.bin", &data);
    let content_id = manifest.content_id();
    let mut world = new_world();
    add_peer(&mut world, "seeder:1", 1);
    add_peer(&mut world, "getter:1", 2);
    world.seed("seeder:1", &manifest, &data);
    world.input("getter:1", |peer, now| peer.download(now, content_id, None));

    let started = world.drive_until(100_000, |w| {
        w.peer("getter:1")
            .held_chunks(content_id)
            .is_some_and(|c| c.count() >= 4)
    });
    assert!(started);
    world.crash(TRACKER);
    let outage_began = world.now();
    assert!(world.drive_until(500_000, |w| completed(w, "getter:1", content_id)));
    assert_eq!(world.disk("getter:1").file(content_id, 48), data);
    assert!(!world.peer("getter:1").is_tracker_ready());

    // Keep the tracker down a while, then start an empty one on the same address: the
    // peers find it (with backoff) and re-announce, and it is whole again.
    world.drive_until(100_000, |w| {
        w.now() >= outage_began + Duration::from_secs(20)
    });
    world.add_tracker(TRACKER, tracker());
    let restarted_at = world.now();
    let recovered = world.drive_until(100_000, |w| {
        let files = w.tracker(TRACKER).files(SWARM);
        files.len() == 1 && files[0].full_sources == 2
    });
    assert!(recovered, "the restarted tracker never relearned the swarm");
    assert!(
        world.now() - restarted_at <= Duration::from_secs(6),
        "recovery took {:?}",
        world.now() - restarted_at
    );
    assert!(world.tracker(TRACKER).is_peer_known(PeerId(1)));
    assert!(world.tracker(TRACKER).is_peer_known(PeerId(2)));
}

fn fetch_notice(world: &Swarm, addr: &str) -> Option<Result<(), String>> {
    world.notices(addr).iter().find_map(|n| match n {
        PeerNotice::FetchComplete { .. } => Some(Ok(())),
        PeerNotice::FetchFailed { reason, .. } => Some(Err(reason.clone())),
        _ => None,
    })
}

/// A fetcher and three helpers, all in the swarm; the origin serves 40 ranges slowly.
fn coop_world(size: usize) -> (Swarm, Vec<u8>, FetchSpec) {
    let data = file_bytes(size, 11);
    let mut world = new_world();
    let url = "http://origin.test/big.iso".to_string();
    world.origin.put(&url, "\"v1\"", Bytes::from(data.clone()));
    for (i, addr) in ["fetcher:1", "helper1:1", "helper2:1", "helper3:1"]
        .iter()
        .enumerate()
    {
        add_peer(&mut world, addr, 100 + i as u64);
    }
    // Let everyone join the tracker first.
    world.drive_until(10_000, |w| w.tracker(TRACKER).peer_count() == 4);
    let spec = FetchSpec {
        url,
        validator: "\"v1\"".into(),
        size: data.len() as u64,
        range_len: 16 * 1024,
        spot_checks: true,
    };
    (world, data, spec)
}

#[test]
fn cooperative_fetch_adds_up_helpers_and_is_exact() {
    let (mut world, data, spec) = coop_world(40 * 16 * 1024 - 1000);
    world.input("fetcher:1", |peer, now| peer.fetch(now, spec));
    let finished = world.drive_until(200_000, |w| fetch_notice(w, "fetcher:1").is_some());
    assert!(
        finished,
        "at {:?}: {:?}",
        world.now(),
        &world.notices("fetcher:1")
    );
    assert_eq!(fetch_notice(&world, "fetcher:1"), Some(Ok(())));
    assert_eq!(world.fetched("fetcher:1"), data);
    // Every participant fetched at least one range, and the origin sent the file once.
    let by: Vec<String> = world
        .notices("fetcher:1")
        .iter()
        .filter_map(|n| match n {
            PeerNotice::RangeFetched { by, .. } => Some(by.clone()),
            _ => None,
        })
        .collect();
    for who in ["local", "helper1:1", "helper2:1", "helper3:1"] {
        assert!(by.iter().any(|b| b == who), "{who} fetched nothing: {by:?}");
    }
    // The origin sent the file once, and one spot check for each range a helper delivered
    // (under `SPOT_CHECKS_PER_HELPER` each, every one is checked).
    let helper_ranges = by.iter().filter(|b| *b != "local").count() as u64;
    assert_eq!(
        world.origin.bytes_served(),
        data.len() as u64 + helper_ranges * u64::from(SPOT_CHECK_LEN)
    );
}

#[test]
fn cooperative_fetch_survives_a_helper_crash() {
    let (mut world, data, spec) = coop_world(40 * 16 * 1024);
    world.input("fetcher:1", |peer, now| peer.fetch(now, spec));
    world.drive_until(200_000, |w| {
        w.notices("fetcher:1")
            .iter()
            .filter(|n| matches!(n, PeerNotice::RangeFetched { .. }))
            .count()
            >= 8
    });
    world.crash("helper2:1");
    assert!(world.drive_until(400_000, |w| fetch_notice(w, "fetcher:1").is_some()));
    assert_eq!(fetch_notice(&world, "fetcher:1"), Some(Ok(())));
    assert_eq!(world.fetched("fetcher:1"), data);
}

#[test]
fn cooperative_fetch_aborts_when_the_origin_changes() {
    let (mut world, _data, spec) = coop_world(40 * 16 * 1024);
    let url = spec.url.clone();
    world.input("fetcher:1", |peer, now| peer.fetch(now, spec));
    world.drive_until(200_000, |w| {
        w.notices("fetcher:1")
            .iter()
            .any(|n| matches!(n, PeerNotice::RangeFetched { .. }))
    });
    world
        .origin
        .put(&url, "\"v2\"", Bytes::from(file_bytes(40 * 16 * 1024, 12)));
    assert!(world.drive_until(200_000, |w| fetch_notice(w, "fetcher:1").is_some()));
    let result = fetch_notice(&world, "fetcher:1").unwrap();
    assert!(
        result
            .as_ref()
            .is_err_and(|r| r.contains("validator changed")),
        "{result:?}"
    );
}
