//! Which queued request a peer serves next: chunks it has never sent go before chunks it
//! already handed out, so a seeder gives every chunk to the swarm once before any twice; and
//! a repeat is served only when nothing else waits, the rest being turned away to ask the
//! peers that already got the chunk.

use bytes::Bytes;
use p2p_core::peer::{Peer, PeerAction, PeerConfig};
use p2p_core::testkit::TestFile;
use p2p_core::testkit::remote::{connect_remote, drain, seeding_peer};
use p2p_core::wire::Message;
use p2p_core::{ConnId, Instant, Manifest};

const CHUNK: u32 = 16 * 1024;
const CHUNKS: u32 = 16;

fn seeder() -> (Peer, Manifest) {
    let manifest = TestFile::new("f.bin", CHUNK, vec![7; (CHUNKS * CHUNK) as usize]).manifest;
    (seeding_peer(&manifest), manifest)
}

fn connect(peer: &mut Peer, remote: u64) -> ConnId {
    connect_remote(peer, remote)
}

fn request(peer: &mut Peer, manifest: &Manifest, conn: ConnId, chunk_index: u32) {
    let message = Message::Request {
        content_id: manifest.content_id(),
        chunk_index,
        offset: 0,
        length: CHUNK,
    };
    peer.handle_message(Instant::ZERO, conn, message);
}

/// Reads issued, as (token, chunk); rejects sent, as chunks.
fn reads_and_rejects(actions: &[PeerAction]) -> (Vec<(u64, u32)>, Vec<u32>) {
    let mut reads = Vec::new();
    let mut rejects = Vec::new();
    for action in actions {
        match action {
            PeerAction::ReadChunk {
                token, chunk_index, ..
            } => reads.push((*token, *chunk_index)),
            PeerAction::Send {
                message: Message::Reject { chunk_index, .. },
                ..
            } => rejects.push(*chunk_index),
            _ => {}
        }
    }
    (reads, rejects)
}

/// Completes one read and its send, freeing a serving slot; returns what that started.
fn finish(peer: &mut Peer, token: u64, conn: ConnId) -> Vec<PeerAction> {
    peer.handle_read(
        Instant::ZERO,
        token,
        Ok(Bytes::from(vec![7; CHUNK as usize])),
    );
    drain(peer);
    peer.handle_sent(Instant::ZERO, conn);
    drain(peer)
}

#[test]
fn fresh_chunks_are_served_before_repeats_and_repeats_are_turned_away() {
    let (mut p, m) = seeder();
    let a = connect(&mut p, 2);
    let b = connect(&mut p, 3);
    let slots = PeerConfig::default().serve_blocks_in_flight_total_max;
    // A takes every serving slot with chunks 0.., then queues one more fresh chunk.
    for chunk in 0..=slots {
        request(&mut p, &m, a, chunk);
    }
    let (reads, _) = reads_and_rejects(&drain(&mut p));
    assert_eq!(reads.len(), slots as usize);
    // B asks for chunk 0, already sent to A, while a fresh chunk waits: turned away, so B
    // asks someone else and its slot here goes to a chunk only this peer may have.
    request(&mut p, &m, b, 0);
    let (_, rejects) = reads_and_rejects(&drain(&mut p));
    assert_eq!(rejects, vec![0]);
    // B queues a fresh chunk after A's: equally fresh chunks go round the connections, so
    // B's goes next although A's waited longer.
    request(&mut p, &m, b, slots + 1);
    assert!(reads_and_rejects(&drain(&mut p)).1.is_empty());
    let (next, _) = reads_and_rejects(&finish(&mut p, reads[0].0, a));
    assert_eq!(
        next.iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![slots + 1]
    );
    let (next, _) = reads_and_rejects(&finish(&mut p, reads[1].0, a));
    assert_eq!(next.iter().map(|r| r.1).collect::<Vec<_>>(), vec![slots]);
}

#[test]
fn a_repeat_is_served_when_nothing_fresh_waits() {
    let (mut p, m) = seeder();
    let a = connect(&mut p, 2);
    let b = connect(&mut p, 3);
    request(&mut p, &m, a, 5);
    let (reads, _) = reads_and_rejects(&drain(&mut p));
    assert_eq!(reads.iter().map(|r| r.1).collect::<Vec<_>>(), vec![5]);
    // Nothing fresh is queued, so the swarm is not starved by serving chunk 5 again.
    request(&mut p, &m, b, 5);
    let (again, rejects) = reads_and_rejects(&drain(&mut p));
    assert!(rejects.is_empty());
    assert_eq!(again.iter().map(|r| r.1).collect::<Vec<_>>(), vec![5]);
}

#[test]
fn a_queued_repeat_waits_behind_fresh_chunks() {
    let (mut p, m) = seeder();
    let a = connect(&mut p, 2);
    let b = connect(&mut p, 3);
    let slots = PeerConfig::default().serve_blocks_in_flight_total_max;
    // B's request for chunk 0 queues before chunk 0 was ever sent, so it is accepted.
    for chunk in 0..slots {
        request(&mut p, &m, a, chunk);
    }
    let (reads, _) = reads_and_rejects(&drain(&mut p));
    request(&mut p, &m, b, 0);
    request(&mut p, &m, a, slots);
    request(&mut p, &m, a, slots + 1);
    assert!(reads_and_rejects(&drain(&mut p)).1.is_empty());
    // As slots free up, A's fresh chunks go out first although B's repeat came first and
    // serving goes round the connections.
    let mut served = Vec::new();
    for &(token, _) in &reads[..3] {
        let (next, _) = reads_and_rejects(&finish(&mut p, token, a));
        served.extend(next.iter().map(|r| r.1));
    }
    assert_eq!(served, vec![slots, slots + 1, 0]);
}

#[test]
fn repeats_left_in_the_queue_are_served_one_at_a_time() {
    let (mut p, m) = seeder();
    let a = connect(&mut p, 2);
    let slots = PeerConfig::default().serve_blocks_in_flight_total_max;
    for chunk in 0..slots {
        request(&mut p, &m, a, chunk);
    }
    let (reads, _) = reads_and_rejects(&drain(&mut p));
    // Three peers queue the same chunk while it is still fresh.
    let waiting: Vec<ConnId> = (3..6).map(|id| connect(&mut p, id)).collect();
    for &conn in &waiting {
        request(&mut p, &m, conn, slots);
    }
    assert!(reads_and_rejects(&drain(&mut p)).1.is_empty());
    // The first goes out; the two left are now repeats: the one reached while the other
    // waits is turned away (its requester will get the chunk from the first), and the
    // last one is served.
    let (first, _) = reads_and_rejects(&finish(&mut p, reads[0].0, a));
    assert_eq!(first.iter().map(|r| r.1).collect::<Vec<_>>(), vec![slots]);
    let (second, rejected) = reads_and_rejects(&finish(&mut p, reads[1].0, a));
    assert_eq!(rejected, vec![slots]);
    assert_eq!(second.iter().map(|r| r.1).collect::<Vec<_>>(), vec![slots]);
}
