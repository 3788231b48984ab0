//! A peer machine fed lies by a remote: it refuses, rejects or ignores, and never panics or
//! serves what it has not verified.

use bytes::Bytes;
use p2p_core::peer::{
    EVICTABLE_AFTER_IDLE_PINGS, EVICTABLE_AFTER_PINGS, Peer, PeerAction, PeerConfig,
};
use p2p_core::secure::Remote;
use p2p_core::testkit::TestFile;
use p2p_core::testkit::remote::{accept_as, accept_with, drain, hello, local_peer};
use p2p_core::wire::{Message, PROTOCOL_VERSION};
use p2p_core::{ChunkSet, ConnId, ContentId, Instant, Manifest, PeerId};

const CHUNK: u32 = 16 * 1024;

fn manifest(chunks: u32, salt: u8) -> Manifest {
    TestFile::new("f.bin", CHUNK, vec![salt; (chunks * CHUNK) as usize]).manifest
}

fn peer() -> Peer {
    local_peer()
}

/// An incoming connection that completed the handshake as peer 2.
fn handshake(peer: &mut Peer) -> ConnId {
    let (conn, actions) =
        accept_with(peer, Instant::ZERO, hello(PeerId(2), "remote:1", "s")).unwrap();
    assert!(actions.iter().any(|a| matches!(
        a,
        PeerAction::Send {
            message: Message::Welcome { .. },
            ..
        }
    )));
    conn
}

fn closed(actions: &[PeerAction], conn: ConnId) -> bool {
    actions.iter().any(|a| *a == PeerAction::Close { conn })
}

#[test]
fn wrong_swarm_and_wrong_version_are_refused() {
    let mut p = peer();
    let (conn, actions) =
        accept_with(&mut p, Instant::ZERO, hello(PeerId(2), "", "other")).unwrap();
    assert!(closed(&actions, conn));
    let (conn, actions) = accept_with(
        &mut p,
        Instant::ZERO,
        Message::Hello {
            version: PROTOCOL_VERSION + 1,
            peer_id: PeerId(2),
            listen_addr: String::new(),
            swarm: "s".into(),
        },
    )
    .unwrap();
    assert!(closed(&actions, conn));
    let (conn, actions) = accept_with(&mut p, Instant::ZERO, Message::Ping { nonce: 1 }).unwrap();
    assert!(closed(&actions, conn), "a message before Hello closes");
}

#[test]
fn a_hello_under_another_peers_id_is_refused_and_that_peer_keeps_its_connection() {
    let mut p = peer();
    let real = handshake(&mut p);
    // Key of peer 3, claiming to be peer 2 (connected already) and then peer 4 (not).
    for claimed in [PeerId(2), PeerId(4)] {
        let remote = Remote {
            peer_id: PeerId(3),
            swarm: "s".into(),
        };
        let (conn, actions) =
            accept_as(&mut p, Instant::ZERO, remote, hello(claimed, "evil:1", "s")).unwrap();
        assert!(closed(&actions, conn), "{actions:?}");
        assert!(
            !closed(&actions, real),
            "the real peer 2 keeps its connection"
        );
        assert!(
            !actions.iter().any(|a| matches!(
                a,
                PeerAction::Send {
                    message: Message::Welcome { .. },
                    ..
                }
            )),
            "an impostor is not welcomed"
        );
    }
    // The real peer 2 is still served on its connection.
    p.handle_message(Instant::ZERO, real, Message::Ping { nonce: 7 });
    let actions = drain(&mut p);
    assert!(
        actions.iter().any(|a| matches!(a, PeerAction::Send { conn, message: Message::Pong { nonce: 7 } } if *conn == real)),
        "{actions:?}"
    );
}

#[test]
fn requests_for_unverified_or_out_of_range_data_are_rejected() {
    let mut p = peer();
    let m = manifest(4, 1);
    let cid = m.content_id();
    // Download it, with only chunk 0 verified on disk.
    p.download(Instant::ZERO, cid, Some(m.clone()));
    drain(&mut p);
    let mut have = ChunkSet::new(4);
    have.insert(0);
    p.download_prepared(Instant::ZERO, cid, Ok(have.into()));
    drain(&mut p);
    let conn = handshake(&mut p);
    let request = |chunk_index, offset, length| Message::Request {
        content_id: cid,
        chunk_index,
        offset,
        length,
    };
    for (chunk, offset, length) in [(1, 0, CHUNK), (0, CHUNK - 1, 2), (0, 0, 0), (9, 0, 1)] {
        p.handle_message(Instant::ZERO, conn, request(chunk, offset, length));
        let actions = drain(&mut p);
        assert!(
            actions.iter().any(|a| matches!(
                a,
                PeerAction::Send {
                    message: Message::Reject { .. },
                    ..
                }
            )),
            "request {chunk}/{offset}/{length} not rejected: {actions:?}"
        );
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, PeerAction::ReadChunk { .. }))
        );
    }
    // The verified chunk is served through a read.
    p.handle_message(Instant::ZERO, conn, request(0, 0, CHUNK));
    let actions = drain(&mut p);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, PeerAction::ReadChunk { chunk_index: 0, .. }))
    );
}

#[test]
fn serving_is_bounded_per_connection() {
    let mut p = peer();
    let m = manifest(64, 2);
    p.publish(Instant::ZERO, m.clone());
    drain(&mut p);
    let conn = handshake(&mut p);
    let config = PeerConfig::default();
    let max = config
        .serve_blocks_in_flight_max
        .min(config.serve_blocks_in_flight_total_max) as usize;
    for chunk_index in 0..64 {
        p.handle_message(
            Instant::ZERO,
            conn,
            Message::Request {
                content_id: m.content_id(),
                chunk_index,
                offset: 0,
                length: CHUNK,
            },
        );
    }
    let reads = drain(&mut p)
        .into_iter()
        .filter(|a| matches!(a, PeerAction::ReadChunk { .. }))
        .count();
    assert_eq!(reads, max, "reads in flight must stop at the cap");
}

#[test]
fn lies_from_a_source_are_survived() {
    let mut p = peer();
    let m = manifest(8, 3);
    let cid = m.content_id();
    p.download(Instant::ZERO, cid, Some(m.clone()));
    drain(&mut p);
    p.download_prepared(Instant::ZERO, cid, Ok(ChunkSet::new(8).into()));
    drain(&mut p);
    let conn = handshake(&mut p);
    // A piece never requested is dropped without a store.
    p.handle_message(
        Instant::ZERO,
        conn,
        Message::Piece {
            content_id: cid,
            chunk_index: 3,
            offset: 0,
            data: Bytes::from(vec![0u8; CHUNK as usize]),
        },
    );
    assert!(
        !drain(&mut p)
            .iter()
            .any(|a| matches!(a, PeerAction::StoreChunk { .. }))
    );
    // A pong never pinged and haves out of range are ignored.
    p.handle_message(Instant::ZERO, conn, Message::Pong { nonce: 77 });
    p.handle_message(
        Instant::ZERO,
        conn,
        Message::Have {
            content_id: cid,
            chunk_indices: vec![u32::MAX, 8],
        },
    );
    assert!(!closed(&drain(&mut p), conn));
    // A bitfield of the wrong length is a lie about the file: the connection closes.
    p.handle_message(
        Instant::ZERO,
        conn,
        Message::Bitfield {
            content_id: cid,
            chunks: ChunkSet::full(9),
        },
    );
    assert!(closed(&drain(&mut p), conn));
}

#[test]
fn a_wrong_length_piece_closes_and_the_right_one_is_stored_with_the_manifest_hash() {
    let mut p = peer();
    let m = manifest(2, 4);
    let cid: ContentId = m.content_id();
    p.download(Instant::ZERO, cid, Some(m.clone()));
    drain(&mut p);
    p.download_prepared(Instant::ZERO, cid, Ok(ChunkSet::new(2).into()));
    drain(&mut p);
    let conn = handshake(&mut p);
    p.handle_message(
        Instant::ZERO,
        conn,
        Message::Bitfield {
            content_id: cid,
            chunks: ChunkSet::full(2),
        },
    );
    let requests: Vec<(u32, u32)> = drain(&mut p)
        .into_iter()
        .filter_map(|a| match a {
            PeerAction::Send {
                message:
                    Message::Request {
                        chunk_index,
                        length,
                        ..
                    },
                ..
            } => Some((chunk_index, length)),
            _ => None,
        })
        .collect();
    assert!(!requests.is_empty());
    let (chunk_index, length) = requests[0];
    p.handle_message(
        Instant::ZERO,
        conn,
        Message::Piece {
            content_id: cid,
            chunk_index,
            offset: 0,
            data: Bytes::from(vec![4u8; length as usize]),
        },
    );
    let stored = drain(&mut p).into_iter().find_map(|a| match a {
        PeerAction::StoreChunk {
            check,
            chunk_index: c,
            ..
        } => Some((c, check)),
        _ => None,
    });
    assert_eq!(
        stored,
        Some((chunk_index, m.chunk_check(chunk_index).unwrap()))
    );
    if let Some(&(other, _)) = requests.iter().find(|(c, _)| *c != chunk_index) {
        p.handle_message(
            Instant::ZERO,
            conn,
            Message::Piece {
                content_id: cid,
                chunk_index: other,
                offset: 0,
                data: Bytes::from(vec![4u8; 10]),
            },
        );
        assert!(closed(&drain(&mut p), conn));
    }
}

#[test]
fn peer_exchange_names_a_remote_where_its_connection_came_from_not_where_it_claims() {
    let m = manifest(2, 9);
    let mut p = p2p_core::testkit::remote::seeding_peer(&m);
    let interested = Message::Interested {
        content_id: m.content_id(),
    };
    // Peer 2 claims to listen at a third party's address, from 127.0.0.5.
    let liar = Remote {
        peer_id: PeerId(2),
        swarm: "s".into(),
    };
    let conn = p
        .accept(Instant::ZERO, liar, "127.0.0.5:40000".into())
        .unwrap();
    p.handle_message(Instant::ZERO, conn, hello(PeerId(2), "10.0.0.1:80", "s"));
    p.handle_message(Instant::ZERO, conn, interested.clone());
    drain(&mut p);
    // A malformed claim (no port) is refused at the handshake.
    let no_port = Remote {
        peer_id: PeerId(4),
        swarm: "s".into(),
    };
    let refused = p
        .accept(Instant::ZERO, no_port, "127.0.0.6:40000".into())
        .unwrap();
    p.handle_message(Instant::ZERO, refused, hello(PeerId(4), "10.0.0.1", "s"));
    assert!(closed(&drain(&mut p), refused));

    // Peer 3 asks for the same content: it is told of peer 2 at 127.0.0.5, the port claimed.
    let (asker, _) =
        accept_with(&mut p, Instant::ZERO, hello(PeerId(3), "remote3:1", "s")).unwrap();
    p.handle_message(Instant::ZERO, asker, interested);
    let named: Vec<_> = drain(&mut p)
        .into_iter()
        .filter_map(|a| match a {
            PeerAction::Send {
                message: Message::PeerExchange { peers, .. },
                ..
            } => Some(peers),
            _ => None,
        })
        .collect();
    assert_eq!(named, vec![vec![(PeerId(2), "127.0.0.5:80".to_string())]]);
}

/// `secs` seconds into a test.
fn at(secs: u64) -> Instant {
    Instant::ZERO + std::time::Duration::from_secs(secs)
}

/// A peer of three connections at most, holding three: members 2, 3 and 4, accepted at
/// 0, 1 and 2 s.
fn full_with_three_members() -> (Peer, Vec<ConnId>) {
    let mut p = Peer::new(
        PeerConfig {
            peer_id: PeerId(1),
            swarm: "s".into(),
            listen_addr: "me:1".into(),
            connections_max: 3,
            ..PeerConfig::default()
        },
        Instant::ZERO,
    );
    let conns = (2..5)
        .map(|id| {
            let member = hello(PeerId(id), &format!("r{id}:1"), "s");
            accept_with(&mut p, at(id - 2), member).unwrap().0
        })
        .collect();
    (p, conns)
}

#[test]
fn at_the_connection_limit_the_longest_silent_connection_makes_room() {
    let (mut p, conns) = full_with_three_members();
    let ping = PeerConfig::default().ping_interval;
    // Everyone heard from recently: a newcomer is refused, nobody is closed.
    assert!(
        accept_with(&mut p, at(3), hello(PeerId(9), "r9:1", "s")).is_none(),
        "refused while every connection is live"
    );
    // Peer 2 answers its pings; 3 and 4 go silent. Past the silence, the newcomer takes
    // the place of the one silent longest (3), and 4 stays.
    let late = at(2) + ping * EVICTABLE_AFTER_PINGS;
    p.handle_message(late, conns[0], Message::Ping { nonce: 1 });
    drain(&mut p);
    let (newcomer, actions) = accept_with(&mut p, late, hello(PeerId(9), "r9:1", "s")).unwrap();
    assert!(closed(&actions, conns[1]), "{actions:?}");
    assert!(!closed(&actions, conns[0]) && !closed(&actions, conns[2]));
    assert!(actions.iter().any(|a| matches!(a, PeerAction::Send { conn, message: Message::Welcome { .. } } if *conn == newcomer)));
}

#[test]
fn at_the_connection_limit_members_that_only_answer_pings_make_room() {
    let (mut p, conns) = full_with_three_members();
    let ping = PeerConfig::default().ping_interval;
    let idle = ping * EVICTABLE_AFTER_IDLE_PINGS;
    // Every connection keeps answering; only peer 2 is sent a block now and then.
    let keep_alive = |p: &mut Peer, now: Instant| {
        for (nonce, &conn) in conns.iter().enumerate() {
            p.handle_message(
                now,
                conn,
                Message::Ping {
                    nonce: nonce as u64,
                },
            );
        }
        drain(p);
    };
    let before = at(1) + (idle - std::time::Duration::from_secs(1));
    keep_alive(&mut p, before);
    p.handle_sent(before, conns[0]);
    drain(&mut p);
    assert!(
        accept_with(&mut p, before, hello(PeerId(9), "r9:1", "s")).is_none(),
        "refused while every connection moved data lately"
    );
    // Past the idle time, the newcomer takes the place of the member idle longest (3);
    // peer 2, served lately, and peer 4, idle for less long, stay.
    let late = at(1) + idle;
    keep_alive(&mut p, late);
    let (_, actions) = accept_with(&mut p, late, hello(PeerId(9), "r9:1", "s")).unwrap();
    assert!(closed(&actions, conns[1]), "{actions:?}");
    assert!(!closed(&actions, conns[0]) && !closed(&actions, conns[2]));
}
