//! Issue 14, a fetch is verified, not trusted: members that lie to a `p2p fetch`, each a
//! small hostile client speaking the real protocol over the secure session.
//!
//! - a member that ties its own content to someone else's URL at the tracker: the fetcher
//!   checks the hint against the origin, says it is false, and saves the origin's file
//!   under the URL's name;
//! - a member that connects to a fetcher during its job, takes ranges and answers with
//!   zeros: it is caught by the spot checks, banned, its ranges fetched again, and the
//!   saved file is the origin's.

mod coop_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coop_support::*;
use p2p_core::secure::{StaticKey, SwarmSecret};
use p2p_core::{ChunkSet, Message};
use p2p_tests::{SecureStream, free_addr, hello, manifest_of, read_secret, test_seed};

const MIB: u64 = 1024 * 1024;
const LIMIT: Duration = Duration::from_secs(90);
/// The test origin's validator (`coop_support`).
const ETAG: &str = "\"v1\"";

/// A member's session, its `Hello` answered with `Welcome`.
fn member(addr: SocketAddr, secret: &SwarmSecret, listen_addr: &str) -> SecureStream {
    let key = StaticKey::from_private(test_seed());
    let mut session = SecureStream::connect(addr, &key, secret).unwrap();
    session
        .send(&hello(key.peer_id(), listen_addr, &secret.tag().name()))
        .unwrap();
    let welcomed = session.read_message(Duration::from_secs(10)).unwrap();
    assert!(
        matches!(welcomed, Some(Message::Welcome { .. })),
        "{welcomed:?}"
    );
    session
}

#[test]
fn a_url_tied_to_other_content_is_caught_and_the_origins_file_saved_under_the_urls_name() {
    let size = 3 * MIB;
    let data = test_bytes(size as usize, 21);
    let origin = Origin::start(
        data.clone(),
        OriginConfig {
            rate: 0,
            ranges: true,
        },
    );
    let swarm_dir = tempfile::tempdir().unwrap();
    let swarm = &p2p_tests::new_swarm(swarm_dir.path());
    let secret = read_secret(swarm);
    let (_tracker, tracker) = start_tracker(swarm);
    let url = origin.url("release.tar");

    // The attacker announces its own file of the same size, under a name of its choosing,
    // and ties it to the URL at the current validator.
    let poison = test_bytes(size as usize, 666);
    let manifest = manifest_of("evil.sh", &poison);
    let content_id = manifest.content_id();
    // It claims a listen address, as a holder must to count as a source (nothing listens
    // there: the fetcher never gets as far as asking it for a byte).
    let mut session = member(tracker, &secret, &free_addr().to_string());
    let chunks = ChunkSet::full(manifest.chunk_count());
    session
        .send(&Message::Announce { manifest, chunks })
        .unwrap();
    session
        .send(&Message::SetOrigin {
            content_id,
            origin: format!("{url} {ETAG}"),
        })
        .unwrap();
    // The tracker has taken both once it answers a query sent after them.
    session
        .send(&Message::FindOrigin {
            origin: format!("{url} {ETAG}"),
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match session.read_message(Duration::from_secs(10)).unwrap() {
            Some(Message::OriginResult {
                content_id: found, ..
            }) => {
                assert_eq!(found, Some(content_id), "the tracker took the mapping");
                break;
            }
            Some(_) => {}
            None => panic!("the tracker closed the attacker's session"),
        }
        assert!(Instant::now() < deadline);
    }

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/");
    std::fs::create_dir(&out).unwrap();
    let fetch = start_fetch(tracker, swarm, &url, &out, &[]);
    let result = finish_fetch(fetch, LIMIT);
    assert!(result.success, "{}", result.stderr);
    assert_eq!(result.of("false_mapping").len(), 1, "{}", result.stderr);
    assert!(result.of("from_swarm").is_empty(), "{}", result.stderr);
    assert!(
        result.stderr.contains("not the origin's file"),
        "{}",
        result.stderr
    );
    let saved = out.join("release.tar");
    assert!(
        std::fs::read(&saved).unwrap() == data,
        "the saved file is the origin's"
    );
    assert!(
        !out.join("evil.sh").exists(),
        "the attacker's name was used"
    );
    let complete = result.of("complete");
    assert_eq!(complete[0]["sha256"], p2p_tests::sha256_hex(&data));

    // With `--sha256` the hint is checked against that hash (no origin bytes), and a false
    // one still gives way to the origin rather than failing the fetch.
    // The first fetcher has left: the tracker lists the attacker's content alone again.
    p2p_tests::wait_for("the first fetcher to be delisted", LIMIT, || {
        p2p_tests::query_json(dir.path(), swarm, "ls", tracker).filter(|files| files.len() == 1)
    });
    let served = origin.served();
    let out2 = dir.path().join("second.tar");
    let fetch = start_fetch(
        tracker,
        swarm,
        &url,
        &out2,
        &["--sha256", &p2p_tests::sha256_hex(&data)],
    );
    let result = finish_fetch(fetch, LIMIT);
    assert!(result.success, "{}", result.stderr);
    assert_eq!(result.of("false_mapping").len(), 1, "{}", result.stderr);
    assert!(std::fs::read(&out2).unwrap() == data);
    assert_eq!(origin.served(), served + size, "only the file itself, once");
    drop(session);
}

/// A member that connects to the fetcher at `fetcher`, takes every range it is given and
/// answers each with zeros, until the fetcher ends its part. Returns the ranges it
/// delivered and whether it was told to stop.
fn zero_filler(fetcher: SocketAddr, secret: SwarmSecret) -> (u32, bool) {
    // The fetcher listens once it has done HEAD and asked the tracker: keep trying.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut session = loop {
        let key = StaticKey::from_private(test_seed());
        match SecureStream::connect(fetcher, &key, &secret) {
            Ok(mut s) => {
                s.send(&hello(key.peer_id(), "", &secret.tag().name()))
                    .unwrap();
                break s;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("cannot reach the fetcher: {e}"),
        }
    };
    let mut delivered = 0;
    loop {
        let message = match session.read_message(Duration::from_secs(30)) {
            Ok(Some(message)) => message,
            Ok(None) | Err(_) => return (delivered, false),
        };
        let reply = match message {
            Message::OfferJob { job_id, .. } => vec![Message::TakeWork { job_id }],
            Message::AssignRange {
                job_id,
                range_index,
                offset,
                length,
            } => {
                delivered += 1;
                vec![
                    Message::DeliverRange {
                        job_id,
                        range_index,
                        offset,
                        data: vec![0u8; length as usize].into(),
                    },
                    Message::TakeWork { job_id },
                ]
            }
            Message::EndJob { .. } => return (delivered, true),
            _ => vec![],
        };
        for message in reply {
            if session.send(&message).is_err() {
                return (delivered, false);
            }
        }
    }
}

#[test]
fn a_member_answering_ranges_with_zeros_is_caught_and_the_origins_file_saved() {
    let size = 8 * MIB;
    let data = test_bytes(size as usize, 22);
    // Slow enough that the fetcher alone takes seconds: the member joins mid-job.
    let origin = Origin::start(
        data.clone(),
        OriginConfig {
            rate: MIB,
            ranges: true,
        },
    );
    let swarm_dir = tempfile::tempdir().unwrap();
    let swarm = &p2p_tests::new_swarm(swarm_dir.path());
    let secret = read_secret(swarm);
    let (_tracker, tracker) = start_tracker(swarm);
    let url = origin.url("data.bin");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data.bin");
    let listen = free_addr();
    let fetch = start_fetch(
        tracker,
        swarm,
        &url,
        &out,
        &[
            "--range-size",
            &(256 * 1024).to_string(),
            "--listen",
            &listen.to_string(),
        ],
    );
    let filler = std::thread::spawn(move || zero_filler(listen, secret));
    let result = finish_fetch(fetch, LIMIT);
    let (delivered, told_to_stop) = filler.join().unwrap();
    assert!(result.success, "{}", result.stderr);
    assert!(delivered > 0, "the member took no range: {}", result.stderr);
    assert!(told_to_stop, "the member was not told to stop");
    let caught = result.of("helper_caught");
    assert_eq!(caught.len(), 1, "{}", result.stderr);
    assert!(
        caught[0]["ranges_refetched"].as_u64().unwrap() >= 1,
        "{:?}",
        caught[0]
    );
    assert!(
        std::fs::read(&out).unwrap() == data,
        "the saved file is the origin's"
    );
    let complete = result.of("complete");
    assert_eq!(complete[0]["sha256"], p2p_tests::sha256_hex(&data));
    // The ranges the member took were fetched again, by the fetcher: it is the only one
    // counted in the end.
    let by = complete[0]["fetched_by"].as_object().unwrap();
    assert_eq!(by.keys().collect::<Vec<_>>(), vec!["local"], "{by:?}");
}
