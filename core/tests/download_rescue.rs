//! A download whose connected sources all lack the same chunk dials a peer the tracker
//! names as holding it, even with its fill of sources: otherwise it waits forever.
//!
//! The simulator found it (seed 1368, partition): 53 of 97 peers spent a partition cut off
//! from every holder of chunk 62, met each other (49 to 53 connections each, over the 48
//! sources a download keeps), and after the heal never dialled any of the 45 peers that held
//! it, asking each other for bitfields every 250 ms instead, until the run's event limit.

use p2p_core::peer::{Peer, PeerAction, PeerConfig};
use p2p_core::secure::Remote;
use p2p_core::testkit::TestFile;
use p2p_core::testkit::remote::{connect_remote, drain};
use p2p_core::wire::{Message, PROTOCOL_VERSION, PeerChunks};
use p2p_core::{ChunkSet, ConnId, ContentId, Instant, Manifest, PeerId};

const CHUNK: u32 = 16 * 1024;
const CHUNKS: u32 = 4;
/// The chunk no connected source holds.
const LACKED: u32 = 3;
/// Sources the download keeps: the two remotes that connect fill it.
const SOURCES: usize = 2;

/// A downloader of a 4-chunk file with none of it, its tracker session ready: the
/// peer and the tracker connection.
fn downloader(manifest: &Manifest) -> (Peer, ConnId) {
    let config = PeerConfig {
        peer_id: PeerId(1),
        swarm: "s".into(),
        listen_addr: "me:1".into(),
        trackers: vec!["tracker:1".into()],
        sources_per_download: SOURCES,
        ..PeerConfig::default()
    };
    let mut peer = Peer::new(config, Instant::ZERO);
    peer.handle_timeout(Instant::ZERO);
    let tracker = drain(&mut peer)
        .into_iter()
        .find_map(|a| match a {
            PeerAction::Connect { conn, addr } if addr == "tracker:1" => Some(conn),
            _ => None,
        })
        .expect("the peer dials its tracker");
    let remote = Remote {
        peer_id: PeerId(1000),
        swarm: "s".into(),
    };
    peer.handle_connected(Instant::ZERO, tracker, remote);
    let welcome = Message::Welcome {
        version: PROTOCOL_VERSION,
        peer_id: PeerId(1000),
    };
    peer.handle_message(Instant::ZERO, tracker, welcome);
    let content_id = manifest.content_id();
    peer.download(Instant::ZERO, content_id, Some(manifest.clone()));
    peer.download_prepared(Instant::ZERO, content_id, Ok(ChunkSet::new(CHUNKS).into()));
    drain(&mut peer);
    (peer, tracker)
}

fn chunks(indices: &[u32]) -> ChunkSet {
    let mut set = ChunkSet::new(CHUNKS);
    for &i in indices {
        set.insert(i);
    }
    set
}

/// Remote `remote` connects and says it holds every chunk but [`LACKED`].
fn connect_source_lacking_chunk(peer: &mut Peer, content_id: ContentId, remote: u64) {
    let conn = connect_remote(peer, remote);
    let held: Vec<u32> = (0..CHUNKS).filter(|&i| i != LACKED).collect();
    let bitfield = Message::Bitfield {
        content_id,
        chunks: chunks(&held),
    };
    peer.handle_message(Instant::ZERO, conn, bitfield);
    drain(peer);
}

fn holder(remote: u64, held: &[u32]) -> PeerChunks {
    PeerChunks {
        peer_id: PeerId(remote),
        listen_addr: format!("remote{remote}:1"),
        chunks: chunks(held),
    }
}

/// The addresses the peer dials in answer to the tracker's `Located`.
fn dials_after_located(
    peer: &mut Peer,
    tracker: ConnId,
    content_id: ContentId,
    peers: Vec<PeerChunks>,
) -> Vec<String> {
    peer.handle_message(
        Instant::ZERO,
        tracker,
        Message::Located { content_id, peers },
    );
    drain(peer)
        .into_iter()
        .filter_map(|a| match a {
            PeerAction::Connect { addr, .. } => Some(addr),
            _ => None,
        })
        .collect()
}

#[test]
fn a_chunk_no_source_holds_is_fetched_from_a_new_peer_beyond_the_source_target() {
    let manifest = TestFile::new("f.bin", CHUNK, vec![5; (CHUNKS * CHUNK) as usize]).manifest;
    let content_id = manifest.content_id();
    let (mut peer, tracker) = downloader(&manifest);
    connect_source_lacking_chunk(&mut peer, content_id, 2);
    connect_source_lacking_chunk(&mut peer, content_id, 3);
    assert_eq!(peer.source_count(content_id), SOURCES);

    // Remote 4 holds nothing the connected sources lack, remote 5 holds the lacked
    // chunk, remote 6 too.
    let located = vec![
        holder(4, &[0, 1]),
        holder(5, &[0, 1, 2, 3]),
        holder(6, &[3]),
    ];
    let dials = dials_after_located(&mut peer, tracker, content_id, located.clone());
    // One holder of the lacked chunk is dialled although the sources are full; the other
    // peers are not (the target is met and they would bring nothing new).
    assert_eq!(dials, vec!["remote5:1".to_string()]);

    // While that dial is in progress, the next answer dials nobody else for the chunk.
    let dials = dials_after_located(&mut peer, tracker, content_id, located);
    assert!(dials.is_empty(), "{dials:?}");
}

#[test]
fn sources_that_cover_every_needed_chunk_lead_to_no_dial_beyond_the_target() {
    let manifest = TestFile::new("f.bin", CHUNK, vec![6; (CHUNKS * CHUNK) as usize]).manifest;
    let content_id = manifest.content_id();
    let (mut peer, tracker) = downloader(&manifest);
    connect_source_lacking_chunk(&mut peer, content_id, 2);
    let conn = connect_remote(&mut peer, 3);
    let bitfield = Message::Bitfield {
        content_id,
        chunks: ChunkSet::full(CHUNKS),
    };
    peer.handle_message(Instant::ZERO, conn, bitfield);
    drain(&mut peer);

    let located = vec![holder(5, &[0, 1, 2, 3]), holder(6, &[3])];
    let dials = dials_after_located(&mut peer, tracker, content_id, located);
    assert!(dials.is_empty(), "{dials:?}");
}
