//! Any member answers the tracker's questions from what it knows (issue 15): `ListFiles`,
//! `Locate` and `ListPeers` asked on a peer connection get the peer's own view, so a swarm
//! whose trackers are all gone can still be listed and located through any member.

use p2p_core::peer::{Peer, PeerAction};
use p2p_core::testkit::TestFile;
use p2p_core::testkit::remote::{
    accept_with, connect_remote, drain, hello, local_peer, seeding_peer,
};
use p2p_core::wire::{Message, PeerChunks};
use p2p_core::{ChunkSet, ConnId, ContentId, Instant, Manifest, PeerId};

const CHUNK: u32 = 16 * 1024;
const CHUNKS: u32 = 4;

fn manifest() -> Manifest {
    let data: Vec<u8> = (0..CHUNKS * CHUNK).map(|i| (i % 251) as u8).collect();
    TestFile::new("answered.bin", CHUNK, data).manifest
}

/// A client that serves nothing (as `p2p ls` connects): peer 9, no listen address.
fn client(peer: &mut Peer) -> ConnId {
    let (conn, _) = accept_with(peer, Instant::ZERO, hello(PeerId(9), "", "s")).unwrap();
    conn
}

/// Asks `question` on `conn`; the one answer the peer sends there.
fn ask(peer: &mut Peer, conn: ConnId, question: Message) -> Message {
    peer.handle_message(Instant::ZERO, conn, question);
    let mut answers: Vec<Message> = drain(peer)
        .into_iter()
        .filter_map(|a| match a {
            PeerAction::Send { conn: to, message } if to == conn => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), 1, "one answer: {answers:?}");
    answers.remove(0)
}

fn chunks(indices: &[u32]) -> ChunkSet {
    let mut set = ChunkSet::new(CHUNKS);
    for &i in indices {
        set.insert(i);
    }
    set
}

#[test]
fn a_seeder_lists_what_it_holds_and_locates_itself() {
    let manifest = manifest();
    let content_id = manifest.content_id();
    let mut peer = seeding_peer(&manifest);
    connect_remote(&mut peer, 2);
    drain(&mut peer);
    let conn = client(&mut peer);
    drain(&mut peer);

    let Message::FileList { files } = ask(&mut peer, conn, Message::ListFiles) else {
        panic!("not a FileList");
    };
    assert_eq!(files.len(), 1);
    let file = &files[0];
    assert_eq!(file.content_id, content_id);
    assert_eq!(file.name, "answered.bin");
    assert_eq!(file.size, u64::from(CHUNKS * CHUNK));
    assert_eq!(file.chunk_count, CHUNKS);
    assert_eq!((file.full_sources, file.peers, file.complete), (1, 1, true));
    assert_eq!(file.tree, None);

    let located = ask(&mut peer, conn, Message::Locate { content_id });
    let me = PeerChunks {
        peer_id: PeerId(1),
        listen_addr: "me:1".into(),
        chunks: ChunkSet::full(CHUNKS),
    };
    assert_eq!(
        located,
        Message::Located {
            content_id,
            peers: vec![me]
        }
    );
    let unknown = ContentId([7; 32]);
    assert_eq!(
        ask(
            &mut peer,
            conn,
            Message::Locate {
                content_id: unknown
            }
        ),
        Message::Located {
            content_id: unknown,
            peers: vec![]
        }
    );

    // Itself and the connected peer that listens; not the client, which serves nothing.
    let Message::PeerList { peers } = ask(&mut peer, conn, Message::ListPeers) else {
        panic!("not a PeerList");
    };
    let listed: Vec<(PeerId, &str)> = peers
        .iter()
        .map(|p| (p.peer_id, p.listen_addr.as_str()))
        .collect();
    assert_eq!(listed, vec![(PeerId(1), "me:1"), (PeerId(2), "remote2:1")]);
    assert_eq!(
        (peers[0].files, peers[0].chunks_held),
        (1, u64::from(CHUNKS))
    );
}

#[test]
fn a_downloader_names_its_sources_with_the_chunks_they_hold() {
    let manifest = manifest();
    let content_id = manifest.content_id();
    let mut peer = local_peer();
    peer.download(Instant::ZERO, content_id, Some(manifest.clone()));
    peer.download_prepared(Instant::ZERO, content_id, Ok(ChunkSet::new(CHUNKS).into()));
    drain(&mut peer);
    let source = connect_remote(&mut peer, 2);
    let bitfield = Message::Bitfield {
        content_id,
        chunks: chunks(&[0, 2]),
    };
    peer.handle_message(Instant::ZERO, source, bitfield);
    drain(&mut peer);
    let conn = client(&mut peer);
    drain(&mut peer);

    // It holds nothing yet: only the source is named, with what its bitfield said.
    let located = ask(&mut peer, conn, Message::Locate { content_id });
    let source_entry = PeerChunks {
        peer_id: PeerId(2),
        listen_addr: "remote2:1".into(),
        chunks: chunks(&[0, 2]),
    };
    assert_eq!(
        located,
        Message::Located {
            content_id,
            peers: vec![source_entry]
        }
    );
    let Message::PeerList { peers } = ask(&mut peer, conn, Message::ListPeers) else {
        panic!("not a PeerList");
    };
    let source = peers.iter().find(|p| p.peer_id == PeerId(2)).unwrap();
    assert_eq!((source.files, source.chunks_held), (1, 2));
    // The file is listed with what is known of it: one peer (the source) holding part.
    let Message::FileList { files } = ask(&mut peer, conn, Message::ListFiles) else {
        panic!("not a FileList");
    };
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].content_id, content_id);
    assert_eq!(
        (files[0].full_sources, files[0].peers, files[0].complete),
        (0, 1, false)
    );
}
