//! The tracker's unit tests: a harness that drives one machine with a virtual clock, then one
//! test per rule (sessions, announces and haves, queries, limits, frames), and a randomized
//! run that checks the counters against a recount after every step.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::frame::truncate_to_frame;
use super::*;
use crate::chunkset::ChunkSet;
use crate::manifest::{CHUNK_SIZE_MIN, ManifestBuilder};
use crate::secure::Remote;
use crate::wire::{
    FRAME_LEN_MAX, FrameDecoder, PROTOCOL_VERSION, PeerChunks, STRING_LEN_MAX, TreeSummary,
};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A manifest of `chunks` chunks whose bytes are all `fill` (distinct fills give
/// distinct content ids).
fn manifest(name: &str, chunks: u32, fill: u8) -> Manifest {
    let mut builder = ManifestBuilder::new(name, CHUNK_SIZE_MIN).unwrap();
    builder.update(&vec![fill; (chunks * CHUNK_SIZE_MIN) as usize]);
    builder.finish().unwrap()
}

fn set(len: u32, indices: &[u32]) -> ChunkSet {
    let mut set = ChunkSet::new(len);
    for &i in indices {
        set.insert(i);
    }
    set
}

struct Harness {
    tracker: Tracker,
    now: Instant,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(TrackerConfig {
            tracker_id: PeerId(0x7777),
            rng_seed: 42,
            ..TrackerConfig::default()
        })
    }

    fn with(config: TrackerConfig) -> Harness {
        Harness {
            tracker: Tracker::new(config),
            now: Instant::from_nanos(1_000_000_000),
        }
    }

    fn drain(&mut self) -> Vec<TrackerAction> {
        std::iter::from_fn(|| self.tracker.poll_action()).collect()
    }

    fn send(&mut self, conn: ConnId, message: Message) -> Vec<TrackerAction> {
        self.tracker.handle_message(self.now, conn, message);
        self.drain()
    }

    /// Sends a request and returns the one reply.
    fn ask(&mut self, conn: ConnId, message: Message) -> Message {
        match self.send(conn, message).as_slice() {
            [TrackerAction::Send { conn: c, message }] if *c == conn => message.clone(),
            other => panic!("expected one reply, got {other:?}"),
        }
    }

    /// A peer that listens at `addr` connects from the same host.
    fn connect(&mut self, peer: u64, addr: &str, swarm: &str) -> ConnId {
        let conn = self
            .tracker
            .accept(self.now, remote(peer, swarm), seen_from(addr));
        let reply = self.ask(conn, hello(peer, addr, swarm));
        assert_eq!(
            reply,
            Message::Welcome {
                version: PROTOCOL_VERSION,
                peer_id: PeerId(0x7777)
            }
        );
        conn
    }

    fn announce(&mut self, conn: ConnId, manifest: &Manifest, chunks: ChunkSet) {
        let actions = self.send(
            conn,
            Message::Announce {
                manifest: manifest.clone(),
                chunks,
            },
        );
        assert!(actions.is_empty(), "{actions:?}");
    }

    fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
    }

    fn list_files(&mut self, conn: ConnId) -> Vec<FileEntry> {
        match self.ask(conn, Message::ListFiles) {
            Message::FileList { files } => files,
            other => panic!("{other:?}"),
        }
    }

    fn locate(&mut self, conn: ConnId, content_id: ContentId) -> Vec<PeerChunks> {
        match self.ask(conn, Message::Locate { content_id }) {
            Message::Located {
                content_id: c,
                mut peers,
            } => {
                assert_eq!(c, content_id);
                peers.sort_by_key(|p| p.peer_id);
                peers
            }
            other => panic!("{other:?}"),
        }
    }

    fn list_peers(&mut self, conn: ConnId) -> Vec<PeerEntry> {
        match self.ask(conn, Message::ListPeers) {
            Message::PeerList { peers } => peers,
            other => panic!("{other:?}"),
        }
    }
}

/// The address a connection from the host of `listen_addr` comes from (from an ephemeral
/// port); loopback for a client that listens nowhere.
fn seen_from(listen_addr: &str) -> String {
    let host = listen_addr
        .rsplit_once(':')
        .map_or("127.0.0.1", |(host, _)| host);
    format!("{host}:50000")
}

/// The key and swarm a connection's handshake proved.
fn remote(peer: u64, swarm: &str) -> Remote {
    Remote {
        peer_id: PeerId(peer),
        swarm: swarm.into(),
    }
}

fn hello(peer: u64, addr: &str, swarm: &str) -> Message {
    Message::Hello {
        version: PROTOCOL_VERSION,
        peer_id: PeerId(peer),
        listen_addr: addr.into(),
        swarm: swarm.into(),
    }
}

/// The actions are `Error{code}` then `Close` on `conn`.
fn assert_fatal(actions: &[TrackerAction], conn: ConnId, code: u16) -> String {
    match actions {
        [
            TrackerAction::Send {
                conn: c1,
                message: Message::Error { code: got, message },
            },
            TrackerAction::Close { conn: c2 },
        ] if *c1 == conn && *c2 == conn && *got == code => message.clone(),
        other => panic!("expected fatal error {code} on {conn}, got {other:?}"),
    }
}

#[test]
fn hello_gets_welcome() {
    let mut h = Harness::new();
    h.connect(1, "10.0.0.1:7000", "s");
    assert!(h.tracker.is_peer_known(PeerId(1)));
    assert_eq!(h.tracker.peer_count(), 1);
}

#[test]
fn version_mismatch_is_refused_naming_both_versions() {
    let mut h = Harness::new();
    let conn = h.tracker.accept(h.now, remote(1, "s"), seen_from("a:1"));
    let actions = h.send(
        conn,
        Message::Hello {
            version: 99,
            peer_id: PeerId(1),
            listen_addr: "a:1".into(),
            swarm: "s".into(),
        },
    );
    let text = assert_fatal(&actions, conn, error_code::VERSION_MISMATCH);
    assert!(
        text.contains("99") && text.contains(&PROTOCOL_VERSION.to_string()),
        "{text}"
    );
    assert!(!h.tracker.is_peer_known(PeerId(1)));
    assert_eq!(h.tracker.conn_count(), 0);
    // Late frames and the driver's close report are ignored.
    assert!(h.send(conn, Message::ListFiles).is_empty());
    h.tracker.handle_closed(h.now, conn);
    assert!(h.drain().is_empty());
}

#[test]
fn message_before_hello_is_refused() {
    let mut h = Harness::new();
    let conn = h.tracker.accept(h.now, remote(1, "s"), seen_from("a:1"));
    let actions = h.send(conn, Message::ListFiles);
    assert_fatal(&actions, conn, error_code::HELLO_REQUIRED);
    assert_eq!(h.tracker.conn_count(), 0);
}

#[test]
fn connection_without_hello_times_out() {
    let mut h = Harness::new();
    let conn = h.tracker.accept(h.now, remote(1, "s"), seen_from("a:1"));
    assert_eq!(h.tracker.poll_timeout(), Some(h.now + TIMEOUT));
    h.advance(TIMEOUT);
    h.tracker.handle_timeout(h.now);
    assert_fatal(&h.drain(), conn, error_code::TIMED_OUT);
    assert_eq!(h.tracker.poll_timeout(), None);
}

#[test]
fn second_hello_and_peer_messages_are_refused() {
    let mut h = Harness::new();
    let a = h.connect(1, "a:1", "s");
    let actions = h.send(a, hello(1, "a:1", "s"));
    assert_fatal(&actions, a, error_code::UNEXPECTED_MESSAGE);
    assert!(!h.tracker.is_peer_known(PeerId(1)));

    let cid = manifest("f", 1, 1).content_id();
    for message in [
        Message::Request {
            content_id: cid,
            chunk_index: 0,
            offset: 0,
            length: 1,
        },
        Message::Piece {
            content_id: cid,
            chunk_index: 0,
            offset: 0,
            data: bytes::Bytes::from_static(b"x"),
        },
        Message::Bitfield {
            content_id: cid,
            chunks: ChunkSet::new(1),
        },
        Message::Interested { content_id: cid },
        Message::Welcome {
            version: 1,
            peer_id: PeerId(3),
        },
        Message::FileList { files: vec![] },
    ] {
        let b = h.connect(2, "b:1", "s");
        let actions = h.send(b, message);
        let text = assert_fatal(&actions, b, error_code::UNEXPECTED_MESSAGE);
        assert!(text.contains("does not accept"), "{text}");
        assert!(!h.tracker.is_peer_known(PeerId(2)));
    }
}

#[test]
fn announce_list_files_locate_list_peers() {
    let mut h = Harness::new();
    let m = manifest("movie.mkv", 3, 7);
    let cid = m.content_id();
    let a = h.connect(1, "10.0.0.1:7000", "s");
    let b = h.connect(2, "10.0.0.2:7000", "s");
    let cli = h.connect(3, "", "s");
    h.announce(a, &m, ChunkSet::full(3));
    h.announce(b, &m, set(3, &[1]));

    let files = h.list_files(cli);
    assert_eq!(
        files,
        vec![FileEntry {
            content_id: cid,
            name: "movie.mkv".into(),
            size: 3 * u64::from(CHUNK_SIZE_MIN),
            chunk_size: CHUNK_SIZE_MIN,
            chunk_count: 3,
            full_sources: 1,
            peers: 2,
            complete: true,
            tree: None,
        }]
    );
    assert_eq!(h.tracker.files("s"), files);

    // The asker is left out; each peer comes with its chunks.
    let located = h.locate(b, cid);
    assert_eq!(
        located,
        vec![PeerChunks {
            peer_id: PeerId(1),
            listen_addr: "10.0.0.1:7000".into(),
            chunks: ChunkSet::full(3),
        }]
    );
    let located = h.locate(cli, cid);
    assert_eq!(located.len(), 2);
    assert_eq!(located[1].chunks, set(3, &[1]));

    assert_eq!(
        h.ask(cli, Message::GetManifest { content_id: cid }),
        Message::ManifestReply {
            manifest: m.clone()
        }
    );
    let unknown = manifest("other", 1, 9).content_id();
    assert_eq!(
        h.ask(
            cli,
            Message::GetManifest {
                content_id: unknown
            }
        ),
        Message::NotFound {
            content_id: unknown
        }
    );
    assert!(h.locate(cli, unknown).is_empty());

    // The CLI session (no listen address) is not listed.
    h.advance(Duration::from_millis(1500));
    h.send(
        a,
        Message::Heartbeat {
            uploaded_bytes: 500,
            downloaded_bytes: 20,
        },
    );
    h.advance(Duration::from_millis(250));
    let peers = h.list_peers(cli);
    assert_eq!(peers.len(), 2);
    assert_eq!(
        peers[0],
        PeerEntry {
            peer_id: PeerId(1),
            listen_addr: "10.0.0.1:7000".into(),
            files: 1,
            chunks_held: 3,
            uploaded_bytes: 500,
            downloaded_bytes: 20,
            last_seen_ms_ago: 250,
        }
    );
    assert_eq!(peers[1].peer_id, PeerId(2));
    assert_eq!(peers[1].chunks_held, 1);
    assert_eq!(peers[1].last_seen_ms_ago, 1750);
    assert_eq!(h.tracker.holders(cid).len(), 2);
}

/// The sharer beside its embedded tracker connects over loopback; a getter that came in
/// at one of the host's addresses is told that address, one on the host itself loopback.
#[test]
fn a_peer_on_the_trackers_host_is_given_at_the_address_each_asker_reached() {
    let mut h = Harness::new();
    let m = manifest("f", 2, 1);
    let cid = m.content_id();
    let sharer = h.connect(1, "127.0.0.1:7001", "s");
    h.announce(sharer, &m, ChunkSet::full(2));
    let mut arrive = |peer: u64, from: &str, reached_ip: &str| {
        let conn = h.tracker.accept_at(
            h.now,
            remote(peer, "s"),
            format!("{from}:40000"),
            reached_ip.to_owned(),
        );
        assert!(matches!(
            h.ask(conn, hello(peer, "0.0.0.0:7002", "s")),
            Message::Welcome { .. }
        ));
        conn
    };
    let over_v4 = arrive(2, "10.0.0.7", "10.0.0.5");
    let over_v6 = arrive(3, "[fd00::7]", "[fd00::5]");
    let on_host = arrive(4, "127.0.0.1", "127.0.0.1");
    let sharer_at = |peers: Vec<PeerChunks>| peers[0].listen_addr.clone();
    assert_eq!(sharer_at(h.locate(over_v4, cid)), "10.0.0.5:7001");
    assert_eq!(sharer_at(h.locate(over_v6, cid)), "[fd00::5]:7001");
    assert_eq!(sharer_at(h.locate(on_host, cid)), "127.0.0.1:7001");
    let listed: Vec<String> = h
        .list_peers(over_v4)
        .into_iter()
        .map(|p| p.listen_addr)
        .collect();
    assert!(listed.contains(&"10.0.0.5:7001".to_owned()), "{listed:?}");
    // Peers elsewhere are listed where they were seen, whoever asks; every peer on the
    // tracker's host at the address the asker reached.
    assert!(listed.contains(&"[fd00::7]:7002".to_owned()), "{listed:?}");
    assert!(listed.contains(&"10.0.0.5:7002".to_owned()), "{listed:?}");
}

#[test]
fn swarms_are_isolated() {
    let mut h = Harness::new();
    let m = manifest("f", 2, 1);
    let cid = m.content_id();
    let a = h.connect(1, "a:1", "red");
    let b = h.connect(2, "b:1", "blue");
    h.announce(a, &m, ChunkSet::full(2));
    assert!(h.list_files(b).is_empty());
    assert!(h.locate(b, cid).is_empty());
    assert_eq!(
        h.ask(b, Message::GetManifest { content_id: cid }),
        Message::NotFound { content_id: cid }
    );
    assert_eq!(h.list_peers(b).len(), 1);
    assert_eq!(h.list_peers(b)[0].peer_id, PeerId(2));
    // The same content in two swarms is two records.
    h.announce(b, &m, set(2, &[0]));
    assert!(
        h.list_files(b).is_empty(),
        "blue alone cannot supply chunk 1"
    );
    assert_eq!(h.list_files(a).len(), 1);
    assert_eq!(h.locate(a, cid).len(), 0);
}

#[test]
fn have_adds_chunks_in_batches() {
    let mut h = Harness::new();
    let m = manifest("f", 4, 1);
    let cid = m.content_id();
    let a = h.connect(1, "a:1", "s");
    let b = h.connect(2, "b:1", "s");
    h.announce(a, &m, set(4, &[0]));
    assert!(h.list_files(b).is_empty());
    // Out-of-range indices are ignored; so is a Have for unannounced content.
    let actions = h.send(
        a,
        Message::Have {
            content_id: cid,
            chunk_indices: vec![1, 2, 1, 4, u32::MAX],
        },
    );
    assert!(actions.is_empty());
    let other = manifest("g", 1, 2).content_id();
    assert!(
        h.send(
            a,
            Message::Have {
                content_id: other,
                chunk_indices: vec![0]
            }
        )
        .is_empty()
    );
    assert_eq!(h.locate(b, cid)[0].chunks, set(4, &[0, 1, 2]));
    assert!(h.list_files(b).is_empty());
    h.send(
        a,
        Message::Have {
            content_id: cid,
            chunk_indices: vec![3],
        },
    );
    let files = h.list_files(b);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].full_sources, 1);
    assert!(files[0].complete);
    // Withdraw forgets the content entirely.
    h.send(a, Message::Withdraw { content_id: cid });
    assert!(h.list_files(b).is_empty());
    assert!(h.tracker.known_files("s").is_empty());
    assert_eq!(h.tracker.registry.manifest_bytes(), 0);
}

#[test]
fn silent_peer_is_dropped_with_its_chunks_and_the_file_delisted() {
    let mut h = Harness::new();
    let m = manifest("f", 2, 1);
    let cid = m.content_id();
    let a = h.connect(1, "a:1", "s");
    let b = h.connect(2, "b:1", "s");
    h.announce(a, &m, ChunkSet::full(2));
    h.announce(b, &m, set(2, &[0]));
    assert_eq!(h.list_files(b).len(), 1);

    // b heartbeats, a stays silent.
    let a_deadline = h.now + TIMEOUT;
    for _ in 0..2 {
        assert_eq!(h.tracker.poll_timeout(), Some(a_deadline));
        h.advance(TIMEOUT / 2);
        let actions = h.send(
            b,
            Message::Heartbeat {
                uploaded_bytes: 0,
                downloaded_bytes: 0,
            },
        );
        assert!(actions.is_empty());
    }
    assert_eq!(h.tracker.poll_timeout(), Some(h.now));
    h.tracker.handle_timeout(h.now);
    assert_fatal(&h.drain(), a, error_code::TIMED_OUT);
    assert!(!h.tracker.is_peer_known(PeerId(1)));
    assert!(h.tracker.is_peer_known(PeerId(2)));
    assert_eq!(h.tracker.poll_timeout(), Some(h.now + TIMEOUT));

    // b alone lacks chunk 1: delisted, but still located and its manifest served.
    assert!(h.list_files(b).is_empty());
    assert_eq!(h.tracker.known_files("s").len(), 1);
    assert!(!h.tracker.known_files("s")[0].complete);
    assert_eq!(h.tracker.holders(cid), vec![(PeerId(2), set(2, &[0]))]);
}

#[test]
fn goodbye_and_closed_drop_the_session() {
    let mut h = Harness::new();
    let m = manifest("f", 1, 1);
    let a = h.connect(1, "a:1", "s");
    let b = h.connect(2, "b:1", "s");
    let c = h.connect(3, "c:1", "s");
    h.announce(a, &m, ChunkSet::full(1));
    h.announce(b, &m, ChunkSet::full(1));
    assert_eq!(
        h.send(a, Message::Goodbye),
        vec![TrackerAction::Close { conn: a }]
    );
    assert!(!h.tracker.is_peer_known(PeerId(1)));
    assert_eq!(h.list_files(c)[0].full_sources, 1);
    h.tracker.handle_closed(h.now, b);
    assert!(h.drain().is_empty());
    assert!(!h.tracker.is_peer_known(PeerId(2)));
    assert!(h.list_files(c).is_empty());
    assert!(h.tracker.known_files("s").is_empty());
    assert_eq!(h.tracker.peer_count(), 1);
    assert_eq!(h.tracker.conn_count(), 1);
}

#[test]
fn file_is_complete_only_when_the_union_covers_every_chunk() {
    let mut h = Harness::new();
    let m = manifest("f", 3, 1);
    let a = h.connect(1, "a:1", "s");
    let b = h.connect(2, "b:1", "s");
    let cli = h.connect(3, "", "s");
    h.announce(a, &m, set(3, &[0, 1]));
    assert!(h.list_files(cli).is_empty());
    h.announce(b, &m, set(3, &[1]));
    assert!(h.list_files(cli).is_empty());
    // A client without a listen address cannot serve: it does not complete the file.
    h.announce(cli, &m, set(3, &[2]));
    assert!(h.list_files(cli).is_empty());
    // A re-announce replaces the set.
    h.announce(b, &m, set(3, &[2]));
    let files = h.list_files(cli);
    assert_eq!(files.len(), 1);
    assert_eq!((files[0].full_sources, files[0].peers), (0, 2));
    assert!(files[0].complete);
    // An empty announce withdraws.
    h.announce(b, &m, ChunkSet::new(3));
    assert!(h.list_files(cli).is_empty());
    assert_eq!(h.tracker.known_files("s")[0].peers, 1);
}

#[test]
fn empty_file_is_listed() {
    let mut h = Harness::new();
    let m = ManifestBuilder::new("empty", CHUNK_SIZE_MIN)
        .unwrap()
        .finish()
        .unwrap();
    let a = h.connect(1, "a:1", "s");
    h.announce(a, &m, ChunkSet::full(0));
    let files = h.list_files(a);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].full_sources, 1);
}

#[test]
fn announce_with_wrong_chunk_count_is_refused() {
    let mut h = Harness::new();
    let m = manifest("f", 3, 1);
    let a = h.connect(1, "a:1", "s");
    let actions = h.send(
        a,
        Message::Announce {
            manifest: m,
            chunks: ChunkSet::full(2),
        },
    );
    assert_fatal(&actions, a, error_code::BAD_MESSAGE);
    let b = h.connect(2, "b:1", "s");
    let mut bad = manifest("g", 2, 1);
    bad.chunk_hashes = bad.chunk_hashes[..1].into();
    let actions = h.send(
        b,
        Message::Announce {
            manifest: bad,
            chunks: ChunkSet::full(1),
        },
    );
    assert_fatal(&actions, b, error_code::BAD_MESSAGE);
    assert!(h.tracker.known_files("s").is_empty());
}

#[test]
fn limits_refuse_an_announce_without_closing() {
    let mut h = Harness::with(TrackerConfig {
        tracker_id: PeerId(0x7777),
        contents_per_peer_max: 1,
        ..TrackerConfig::default()
    });
    let a = h.connect(1, "a:1", "s");
    let m1 = manifest("f", 1, 1);
    h.announce(a, &m1, ChunkSet::full(1));
    match h
        .send(
            a,
            Message::Announce {
                manifest: manifest("g", 1, 2),
                chunks: ChunkSet::full(1),
            },
        )
        .as_slice()
    {
        [
            TrackerAction::Send {
                message: Message::Error { code, .. },
                ..
            },
        ] => assert_eq!(*code, error_code::LIMIT_EXCEEDED),
        other => panic!("{other:?}"),
    }
    // Re-announcing held content is not a new content.
    h.announce(a, &m1, ChunkSet::full(1));
    assert!(h.tracker.is_peer_known(PeerId(1)));
    assert_eq!(h.list_files(a).len(), 1);

    let mut h = Harness::with(TrackerConfig {
        tracker_id: PeerId(0x7777),
        manifest_bytes_max: 100,
        ..TrackerConfig::default()
    });
    let a = h.connect(1, "a:1", "s");
    let actions = h.send(
        a,
        Message::Announce {
            manifest: manifest("f", 4, 1),
            chunks: ChunkSet::full(4),
        },
    );
    assert!(matches!(
        actions.as_slice(),
        [TrackerAction::Send {
            message: Message::Error {
                code: error_code::LIMIT_EXCEEDED,
                ..
            },
            ..
        }]
    ));
    assert!(h.tracker.known_files("s").is_empty());
}

#[test]
fn a_collection_is_listed_with_its_files_and_its_table_counts_against_the_manifest_budget() {
    let tree = crate::testkit::collection_of("tree");
    let table_len = tree.file_table.as_ref().unwrap().len();
    let mut h = Harness::new();
    let a = h.connect(1, "a:1", "s");
    h.announce(a, &tree, ChunkSet::full(2));
    let files = h.list_files(a);
    assert_eq!(
        files[0].tree,
        Some(TreeSummary {
            files: 4,
            size: 41_000
        })
    );
    // A budget that fits the hashes and the name but not the table refuses the collection.
    let mut h = Harness::with(TrackerConfig {
        tracker_id: PeerId(0x7777),
        manifest_bytes_max: 2 * (32 + 4) + "tree".len() + table_len - 1,
        ..TrackerConfig::default()
    });
    let a = h.connect(1, "a:1", "s");
    let actions = h.send(
        a,
        Message::Announce {
            manifest: tree,
            chunks: ChunkSet::full(2),
        },
    );
    assert!(
        matches!(
            actions.as_slice(),
            [TrackerAction::Send {
                message: Message::Error {
                    code: error_code::LIMIT_EXCEEDED,
                    ..
                },
                ..
            }]
        ),
        "{actions:?}"
    );
}

#[test]
fn hello_under_another_key_or_swarm_is_refused_and_the_real_peer_keeps_its_session() {
    let mut h = Harness::new();
    let m = manifest("f", 1, 1);
    let real = h.connect(1, "a:1", "s");
    h.announce(real, &m, ChunkSet::full(1));
    // Peer 2's key, claiming peer 1's id: refused, and peer 1 is not evicted.
    let thief = h.tracker.accept(h.now, remote(2, "s"), seen_from("evil:1"));
    let actions = h.send(thief, hello(1, "evil:1", "s"));
    let text = assert_fatal(&actions, thief, error_code::IDENTITY_MISMATCH);
    assert!(text.contains("claims peer"), "{text}");
    assert!(h.tracker.is_peer_known(PeerId(1)));
    let other = h.connect(4, "d:1", "s");
    let located = h.locate(other, m.content_id());
    assert_eq!(located.len(), 1);
    assert_eq!(
        located[0].listen_addr, "a:1",
        "the thief's address was not taken"
    );
    // A key of swarm "t" naming swarm "s" in its Hello: refused too.
    let stray = h.tracker.accept(h.now, remote(3, "t"), seen_from("c:1"));
    let actions = h.send(stray, hello(3, "c:1", "s"));
    assert_fatal(&actions, stray, error_code::IDENTITY_MISMATCH);
    assert!(!h.tracker.is_peer_known(PeerId(3)));
    assert_eq!(h.list_files(real).len(), 1);
}

#[test]
fn a_peer_is_listed_at_the_ip_its_connection_came_from_with_the_port_it_claims() {
    for (trust, expected) in [(false, "127.0.0.1:7000"), (true, "10.9.9.9:7000")] {
        let mut h = Harness::with(TrackerConfig {
            tracker_id: PeerId(0x7777),
            trust_claimed_addresses: trust,
            ..TrackerConfig::default()
        });
        let m = manifest("f", 1, 1);
        // Claims a third party's address; connects from loopback.
        let liar = h
            .tracker
            .accept(h.now, remote(1, "s"), "127.0.0.1:50000".into());
        h.ask(liar, hello(1, "10.9.9.9:7000", "s"));
        h.announce(liar, &m, ChunkSet::full(1));
        let asker = h.connect(2, "", "s");
        assert_eq!(
            h.list_peers(asker)[0].listen_addr,
            expected,
            "trust {trust}"
        );
        assert_eq!(h.locate(asker, m.content_id())[0].listen_addr, expected);
    }
}

#[test]
fn with_loopback_claims_trusted_only_a_peer_on_the_trackers_host_is_listed_where_it_claims() {
    // The embedded tracker of `share --advertise`: its sharer (over loopback) knows the
    // NAT's address; a member from elsewhere is listed where it was seen, claim or not.
    let mut h = Harness::with(TrackerConfig {
        tracker_id: PeerId(0x7777),
        trust_loopback_claims: true,
        ..TrackerConfig::default()
    });
    let m = manifest("f", 1, 1);
    let sharer = h
        .tracker
        .accept(h.now, remote(1, "s"), "127.0.0.1:50000".into());
    h.ask(sharer, hello(1, "nat.example:7001", "s"));
    h.announce(sharer, &m, ChunkSet::full(1));
    let member = h
        .tracker
        .accept(h.now, remote(2, "s"), "10.1.2.3:50000".into());
    h.ask(member, hello(2, "10.9.9.9:7002", "s"));
    h.announce(member, &m, ChunkSet::full(1));
    let asker = h.connect(3, "", "s");
    let mut listed: Vec<String> = h
        .locate(asker, m.content_id())
        .into_iter()
        .map(|p| p.listen_addr)
        .collect();
    listed.sort();
    assert_eq!(listed, ["10.1.2.3:7002", "nat.example:7001"]);
}

#[test]
fn an_unspecified_or_ipv6_listen_address_is_filled_in_and_a_portless_one_refused() {
    for trust in [false, true] {
        let mut h = Harness::with(TrackerConfig {
            tracker_id: PeerId(0x7777),
            trust_claimed_addresses: trust,
            ..TrackerConfig::default()
        });
        let asker = h.connect(9, "", "s");
        for (peer, claimed, from, listed) in [
            (1, "0.0.0.0:7001", "10.1.2.3:50000", "10.1.2.3:7001"),
            (2, "[::]:7002", "[fe80::1%2]:50000", "[fe80::1%2]:7002"),
        ] {
            let conn = h.tracker.accept(h.now, remote(peer, "s"), from.into());
            h.ask(conn, hello(peer, claimed, "s"));
            let peers = h.list_peers(asker);
            let entry = peers.iter().find(|p| p.peer_id == PeerId(peer)).unwrap();
            assert_eq!(entry.listen_addr, listed, "trust {trust}");
        }
        for claimed in ["host", "host:", "host:0", "host:70000", ":"] {
            let conn = h.tracker.accept(h.now, remote(3, "s"), seen_from("h:1"));
            let actions = h.send(conn, hello(3, claimed, "s"));
            assert_fatal(&actions, conn, error_code::BAD_MESSAGE);
            assert!(!h.tracker.is_peer_known(PeerId(3)), "{claimed}");
        }
    }
}

#[test]
fn the_same_key_again_replaces_its_session_another_key_cannot() {
    let mut h = Harness::new();
    let m = manifest("f", 1, 1);
    let first = h.connect(1, "a:1", "s");
    h.announce(first, &m, ChunkSet::full(1));
    // Keys 2 and 3 claiming peer 1, from anywhere: refused; peer 1 keeps its session.
    for (key, from) in [(2, "a:50001"), (3, "evil:50000")] {
        let thief = h.tracker.accept(h.now, remote(key, "s"), from.into());
        let actions = h.send(thief, hello(1, "a:1", "s"));
        assert_fatal(&actions, thief, error_code::IDENTITY_MISMATCH);
        assert_eq!(h.tracker.known_files("s").len(), 1);
    }
    // Key 1 again (its process reconnected, maybe from another address): the newest
    // connection wins, as only the key's holder can make it.
    let second = h.tracker.accept(h.now, remote(1, "s"), "b:50000".into());
    let actions = h.send(second, hello(1, "a:1", "s"));
    assert_fatal(&actions[..2], first, error_code::SESSION_REPLACED);
    let asker = h.connect(4, "", "s");
    assert_eq!(h.list_peers(asker)[0].listen_addr, "b:1");
}

#[test]
fn duplicate_peer_id_replaces_the_old_session() {
    let mut h = Harness::new();
    let m = manifest("f", 1, 1);
    let old = h.connect(1, "a:1", "s");
    h.announce(old, &m, ChunkSet::full(1));
    let new = h.tracker.accept(h.now, remote(1, "s"), seen_from("a:1"));
    let actions = h.send(new, hello(1, "a:2", "s"));
    assert_eq!(actions.len(), 3, "{actions:?}");
    assert_fatal(&actions[..2], old, error_code::SESSION_REPLACED);
    assert!(
        matches!(&actions[2], TrackerAction::Send { conn, message: Message::Welcome { .. } } if *conn == new)
    );
    assert!(h.tracker.is_peer_known(PeerId(1)));
    assert_eq!(h.tracker.peer_count(), 1);
    // The old holdings went with the old session; the new one must re-announce.
    assert!(h.tracker.known_files("s").is_empty());
    // The old connection's close report does not touch the new session.
    h.tracker.handle_closed(h.now, old);
    assert!(h.tracker.is_peer_known(PeerId(1)));
    assert_eq!(h.list_peers(new)[0].listen_addr, "a:2");
}

#[test]
fn restarted_tracker_is_whole_after_peers_reannounce() {
    let m = manifest("f", 2, 1);
    let peers = [
        (1, "a:1", vec![0u32, 1]),
        (2, "b:1", vec![0]),
        (3, "c:1", vec![1]),
    ];
    let mut first = Harness::new();
    for (id, addr, chunks) in &peers {
        let conn = first.connect(*id, addr, "s");
        first.announce(conn, &m, set(2, chunks));
    }
    let mut second = Harness::new();
    assert_eq!(second.tracker.peer_count(), 0);
    let mut conn = ConnId(0);
    for (id, addr, chunks) in &peers {
        conn = second.connect(*id, addr, "s");
        second.announce(conn, &m, set(2, chunks));
    }
    assert_eq!(second.tracker.files("s"), first.tracker.files("s"));
    assert_eq!(
        second.tracker.holders(m.content_id()),
        first.tracker.holders(m.content_id())
    );
    for (id, ..) in &peers {
        assert!(second.tracker.is_peer_known(PeerId(*id)));
    }
    assert_eq!(second.locate(conn, m.content_id()).len(), 2);
}

#[test]
fn locate_samples_a_bounded_mix_deterministically() {
    let run = |seed: u64| {
        let mut h = Harness::with(TrackerConfig {
            tracker_id: PeerId(0x7777),
            locate_peers_max: 8,
            rng_seed: seed,
            ..TrackerConfig::default()
        });
        let m = manifest("f", 2, 1);
        for id in 0..40u64 {
            let conn = h.connect(id, &format!("p{id}:1"), "s");
            let chunks = if id < 20 {
                ChunkSet::full(2)
            } else {
                set(2, &[0])
            };
            h.announce(conn, &m, chunks);
        }
        let asker = h.connect(100, "", "s");
        h.locate(asker, m.content_id())
    };
    let peers = run(1);
    assert_eq!(peers.len(), 8);
    let full = peers.iter().filter(|p| p.chunks.is_full()).count();
    assert_eq!(full, 4, "half full sources, half partial");
    assert_eq!(run(1), peers, "same seed, same sample");
    assert_ne!(run(2), peers, "another seed samples differently");
}

#[test]
fn replies_fit_in_one_frame() {
    // Addresses as long as the wire allows: only claimed ones can be.
    let mut h = Harness::with(TrackerConfig {
        tracker_id: PeerId(0x7777),
        trust_claimed_addresses: true,
        ..TrackerConfig::default()
    });
    let addr = format!("{}:1", "x".repeat(STRING_LEN_MAX - 2));
    let count = FRAME_LEN_MAX as usize / (STRING_LEN_MAX + 46) + 10;
    let mut conn = ConnId(0);
    for id in 0..count as u64 {
        conn = h.connect(id, &addr, "s");
    }
    let peers = h.list_peers(conn);
    assert!(peers.len() < count);
    assert!(peers.len() + 20 > count);
    let frame = Message::PeerList { peers }.to_frame();
    let mut decoder = FrameDecoder::new();
    decoder.feed(&frame);
    assert!(matches!(
        decoder.next_message(),
        Ok(Some(Message::PeerList { .. }))
    ));
}

#[test]
fn truncation_respects_count_and_bytes() {
    let mut items = vec![1usize; 10];
    truncate_to_frame(&mut items, 4, 0, |_| 1);
    assert_eq!(items.len(), 4);
    let mut items = vec![FRAME_LEN_MAX as usize / 3; 10];
    truncate_to_frame(&mut items, 100, 5, |&n| n);
    assert_eq!(items.len(), 2);
}

#[test]
fn random_operations_keep_the_counters_true() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let manifests = [
        manifest("a", 3, 1),
        manifest("b", 9, 2),
        manifest("c", 1, 3),
    ];
    let mut h = Harness::with(TrackerConfig {
        tracker_id: PeerId(0x7777),
        contents_per_peer_max: 2,
        ..TrackerConfig::default()
    });
    let mut conns: Vec<ConnId> = Vec::new();
    for step in 0..3000 {
        let m = &manifests[rng.random_range(0..manifests.len())];
        let n = m.chunk_count();
        let conn = conns
            .get(rng.random_range(0..conns.len().max(1)))
            .copied()
            .unwrap_or(ConnId(u64::MAX));
        let random_set = |rng: &mut ChaCha8Rng| {
            let mut set = ChunkSet::new(n);
            for i in 0..n {
                if rng.random_bool(0.5) {
                    set.insert(i);
                }
            }
            set
        };
        let message = match rng.random_range(0..14) {
            0..=1 => {
                let peer = rng.random_range(0..6u64);
                let addr = if peer == 5 { "" } else { "p:1" };
                let swarm = if rng.random_bool(0.8) { "s" } else { "t" };
                let conn = h
                    .tracker
                    .accept(h.now, remote(peer, swarm), seen_from(addr));
                conns.push(conn);
                h.tracker
                    .handle_message(h.now, conn, hello(peer, addr, swarm));
                h.drain();
                continue;
            }
            2..=4 => Message::Announce {
                manifest: m.clone(),
                chunks: random_set(&mut rng),
            },
            5..=6 => Message::Have {
                content_id: m.content_id(),
                chunk_indices: (0..rng.random_range(0..4))
                    .map(|_| rng.random_range(0..n + 2))
                    .collect(),
            },
            7 => Message::Withdraw {
                content_id: m.content_id(),
            },
            8 => Message::Locate {
                content_id: m.content_id(),
            },
            9 => Message::ListFiles,
            10 => Message::Heartbeat {
                uploaded_bytes: step,
                downloaded_bytes: 0,
            },
            11 => {
                h.tracker.handle_closed(h.now, conn);
                h.drain();
                continue;
            }
            12 => {
                h.advance(Duration::from_secs(rng.random_range(0..4)));
                h.tracker.handle_timeout(h.now);
                h.drain();
                continue;
            }
            _ => Message::Goodbye,
        };
        h.send(conn, message);
        if let Err(e) = h.tracker.check_invariants() {
            panic!("step {step}: {e}");
        }
        for file in h.tracker.known_files("s") {
            let union = h
                .tracker
                .holders(file.content_id)
                .iter()
                .filter(|(p, _)| p.0 != 5 && h.tracker.sessions[p].swarm == "s")
                .fold(ChunkSet::new(file.chunk_count), |mut u, (_, c)| {
                    u.union_with(c);
                    u
                });
            assert_eq!(
                file.complete,
                union.is_full() && file.peers > 0,
                "step {step}"
            );
        }
    }
}
