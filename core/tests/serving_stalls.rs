//! A requester that stops reading keeps its blocks in flight (never reported written):
//! it holds only its own share of the uplink's budget, others are served meanwhile, and it
//! is closed once it has written nothing for a minute.

use std::time::Duration;

use bytes::Bytes;
use p2p_core::peer::{Peer, PeerAction, PeerConfig};
use p2p_core::testkit::TestFile;
use p2p_core::testkit::remote::{connect_remote, drain, seeding_peer};
use p2p_core::wire::Message;
use p2p_core::{ConnId, Instant, Manifest};

const CHUNK: u32 = 16 * 1024;
const CHUNKS: u32 = 32;

fn seeder() -> (Peer, Manifest) {
    let manifest = TestFile::new("f.bin", CHUNK, vec![7; (CHUNKS * CHUNK) as usize]).manifest;
    (seeding_peer(&manifest), manifest)
}

fn connect(peer: &mut Peer, remote: u64) -> ConnId {
    connect_remote(peer, remote)
}

fn request(peer: &mut Peer, now: Instant, manifest: &Manifest, conn: ConnId, chunk: u32) {
    let message = Message::Request {
        content_id: manifest.content_id(),
        chunk_index: chunk,
        offset: 0,
        length: CHUNK,
    };
    peer.handle_message(now, conn, message);
}

/// Drains the peer's actions and completes every read among them; returns the actions
/// and the (token, chunk) of each read.
fn step(peer: &mut Peer, now: Instant) -> (Vec<PeerAction>, Vec<(u64, u32)>) {
    let actions = drain(peer);
    let reads = complete_reads(peer, now, &actions);
    (actions, reads)
}

fn complete_reads(peer: &mut Peer, now: Instant, actions: &[PeerAction]) -> Vec<(u64, u32)> {
    let reads: Vec<(u64, u32)> = actions
        .iter()
        .filter_map(|a| match a {
            PeerAction::ReadChunk {
                token, chunk_index, ..
            } => Some((*token, *chunk_index)),
            _ => None,
        })
        .collect();
    for &(token, _) in &reads {
        peer.handle_read(now, token, Ok(Bytes::from(vec![7; CHUNK as usize])));
    }
    reads
}

fn closed(actions: &[PeerAction], conn: ConnId) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, PeerAction::Close { conn: c } if *c == conn))
}

/// The peer's next timer, or a second on.
fn next_wakeup(peer: &Peer, now: Instant) -> Instant {
    let soon = now + Duration::from_millis(100);
    peer.poll_timeout()
        .map_or(now + Duration::from_secs(1), |t| t.max(soon))
}

fn at(secs: u64) -> Instant {
    Instant::ZERO + Duration::from_secs(secs)
}

#[test]
fn a_requester_that_stops_reading_holds_only_its_own_blocks_and_is_closed() {
    let (mut p, m) = seeder();
    let config = PeerConfig::default();
    let (slots, per_conn) = (
        config.serve_blocks_in_flight_total_max as usize,
        config.serve_blocks_in_flight_max as usize,
    );
    let stuck = connect(&mut p, 2);
    let getter = connect(&mut p, 3);
    // The stuck requester takes the whole budget and never reads a block.
    for chunk in 0..8 {
        request(&mut p, at(0), &m, stuck, chunk);
    }
    let (_, stuck_reads) = step(&mut p, at(0));
    assert_eq!(stuck_reads.len(), slots.min(per_conn));
    drain(&mut p);
    request(&mut p, at(1), &m, getter, 20);
    assert!(step(&mut p, at(1)).1.is_empty(), "the budget is full");

    // Within a check interval or two the stuck connection is stalled: its blocks leave
    // the budget and the getter is served.
    let mut now = at(1);
    let mut served = Vec::new();
    while served.is_empty() && now < at(12) {
        now = next_wakeup(&p, now);
        // The stuck one keeps its connection alive (it is not idle, only not reading).
        p.handle_message(now, stuck, Message::Ping { nonce: 1 });
        p.handle_timeout(now);
        served = step(&mut p, now).1;
    }
    assert!(
        !served.is_empty(),
        "the getter waits behind a stalled requester"
    );
    // Then block after block, while the stuck one gets nothing more.
    for chunk in 21..30 {
        for (_, chunk) in &served {
            assert!(*chunk >= 20, "chunk {chunk} went to the stalled requester");
        }
        p.handle_sent(now, getter);
        request(&mut p, now, &m, getter, chunk);
        served = step(&mut p, now).1;
        assert_eq!(served.len(), 1);
    }
    p.handle_sent(now, getter);

    // It is closed once it has written nothing for a minute, with an error that says why.
    let mut stuck_closed = false;
    while now < at(120) && !stuck_closed {
        now = next_wakeup(&p, now);
        p.handle_message(now, stuck, Message::Ping { nonce: 2 });
        p.handle_message(now, getter, Message::Ping { nonce: 2 });
        p.handle_timeout(now);
        let (actions, _) = step(&mut p, now);
        stuck_closed = closed(&actions, stuck);
        assert!(!closed(&actions, getter));
    }
    assert!(
        stuck_closed,
        "the stuck requester is still connected at {now:?}"
    );
    assert!(
        now >= at(55),
        "closed after a minute of no progress, not at {now:?}"
    );
}

#[test]
fn a_requester_that_reads_slowly_is_never_stalled() {
    let (mut p, m) = seeder();
    let slow = connect(&mut p, 2);
    for chunk in 0..CHUNKS {
        request(&mut p, at(0), &m, slow, chunk);
    }
    let (_, mut pending) = step(&mut p, at(0));
    drain(&mut p);
    // One block written every 4 s: slow, but inside every check interval.
    let mut now = at(0);
    for _ in 0..20 {
        now = now + Duration::from_secs(4);
        p.handle_message(now, slow, Message::Ping { nonce: 3 });
        p.handle_timeout(now);
        p.handle_sent(now, slow);
        let (actions, reads) = step(&mut p, now);
        assert!(
            !closed(&actions, slow),
            "a slow reader was closed at {now:?}"
        );
        pending.extend(reads);
        drain(&mut p);
    }
    assert!(
        pending.len() > 20,
        "only {} blocks were served",
        pending.len()
    );
}

#[test]
fn stalled_requesters_together_hold_at_most_one_budget() {
    let (mut p, m) = seeder();
    let slots = PeerConfig::default().serve_blocks_in_flight_total_max as usize;
    let first = connect(&mut p, 2);
    let second = connect(&mut p, 3);
    for chunk in 0..8 {
        request(&mut p, at(0), &m, first, chunk);
    }
    assert_eq!(step(&mut p, at(0)).1.len(), slots);
    drain(&mut p);
    for chunk in 8..16 {
        request(&mut p, at(0), &m, second, chunk);
    }
    // The first stalls, the second takes the budget it left and stalls too: together they
    // would hold two budgets of blocks, so the one stalled longest is closed.
    let mut now = at(0);
    let mut first_closed = false;
    while now < at(30) && !first_closed {
        now = next_wakeup(&p, now);
        for conn in [first, second] {
            p.handle_message(now, conn, Message::Ping { nonce: 4 });
        }
        p.handle_timeout(now);
        let (actions, _) = step(&mut p, now);
        first_closed = closed(&actions, first);
        assert!(
            !closed(&actions, second),
            "the one stalled later went first"
        );
    }
    assert!(
        first_closed,
        "two stalled requesters hold two budgets at {now:?}"
    );
    assert!(now < at(55), "closed for holding too much, before a minute");
}

#[test]
fn a_stalled_requesters_queue_does_not_turn_away_anothers_repeat_requests() {
    // Chunks already sent are turned away while others wait, so the requester asks
    // another holder. Waiting behind a stalled requester is no reason: two members that
    // ask for every chunk and never read kept a getter of the same chunks rejected until
    // the idle timeout closed them (30 s).
    let (mut p, m) = seeder();
    let stuck = [connect(&mut p, 2), connect(&mut p, 3)];
    let getter = connect(&mut p, 4);
    for chunk in 0..CHUNKS {
        for conn in stuck {
            request(&mut p, at(0), &m, conn, chunk);
        }
    }
    step(&mut p, at(0));
    let mut now = at(0);
    let mut served = 0;
    let mut rejected = 0;
    while now < at(10) && served < 8 {
        now = next_wakeup(&p, now);
        for conn in stuck.into_iter().chain([getter]) {
            p.handle_message(now, conn, Message::Ping { nonce: 1 });
        }
        p.handle_timeout(now);
        step(&mut p, now);
        // The getter asks for the chunks the stuck ones began, one at a time, the next as
        // soon as one comes.
        loop {
            request(&mut p, now, &m, getter, served);
            let (actions, reads) = step(&mut p, now);
            rejected += actions
                .iter()
                .filter(|a| matches!(a, PeerAction::Send { conn, message: Message::Reject { .. } } if *conn == getter))
                .count();
            if reads.is_empty() || served == 7 {
                served += u32::from(!reads.is_empty());
                break;
            }
            p.handle_sent(now, getter);
            served += 1;
        }
    }
    assert_eq!(
        served, 8,
        "the getter got {served} blocks by {now:?} ({rejected} rejected)"
    );
    assert!(now < at(6), "served only at {now:?}");
}
