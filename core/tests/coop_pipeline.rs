//! Every participant keeps its link full: the fetcher's own slots and each helper keep
//! [`RANGES_PER_SLOT`] ranges outstanding, so the next range is asked for while the current
//! one is still arriving; and a member asking for more than its share is told there is no
//! work past [`HELPER_RANGES_HELD_MAX`].

use bytes::Bytes;
use p2p_core::peer::{
    FetchSpec, HELPER_RANGES_HELD_MAX, Peer, PeerAction, PeerConfig, RANGES_PER_SLOT,
};
use p2p_core::testkit::remote::{accept_with, drain, hello};
use p2p_core::wire::Message;
use p2p_core::{ConnId, Instant, PeerId};

const RANGE: u32 = 16 * 1024;
const URL: &str = "http://origin.test/f";

fn peer(origin_connections: u32) -> Peer {
    Peer::new(
        PeerConfig {
            peer_id: PeerId(1),
            swarm: "s".into(),
            listen_addr: "me:1".into(),
            origin_connections,
            ..PeerConfig::default()
        },
        Instant::ZERO,
    )
}

fn spec(ranges: u32) -> FetchSpec {
    FetchSpec {
        url: URL.into(),
        validator: "\"v\"".into(),
        size: u64::from(ranges) * u64::from(RANGE),
        range_len: RANGE,
        spot_checks: false,
    }
}

/// (token, offset, helping) of every `FetchRange` among `actions`.
fn fetches(actions: &[PeerAction]) -> Vec<(u64, u64, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            PeerAction::FetchRange {
                token,
                offset,
                helping,
                ..
            } => Some((*token, *offset, *helping)),
            _ => None,
        })
        .collect()
}

/// Messages sent on `conn` among `actions`.
fn sent_on(actions: &[PeerAction], conn: ConnId) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            PeerAction::Send { conn: c, message } if *c == conn => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_fetcher_asks_for_its_next_range_before_the_current_one_ends() {
    for slots in [1, 3] {
        let mut p = peer(slots);
        p.fetch(Instant::ZERO, spec(64));
        let started = fetches(&drain(&mut p));
        let in_flight = (slots * RANGES_PER_SLOT) as usize;
        assert_eq!(started.len(), in_flight, "{slots} slot(s): {started:?}");
        // The first range arrives: it is written, and another is asked for at once, while
        // the others are still outstanding.
        let (token, offset, _) = started[0];
        p.handle_range_fetched(
            Instant::ZERO,
            token,
            Ok(Bytes::from(vec![7; RANGE as usize])),
        );
        let actions = drain(&mut p);
        let next = fetches(&actions);
        assert_eq!(next.len(), 1, "{actions:?}");
        assert!(
            !started.iter().any(|(_, o, _)| *o == next[0].1),
            "a range not already in flight"
        );
        assert!(actions.iter().any(|a| matches!(
            a,
            PeerAction::WriteRange { offset: o, .. } if *o == offset
        )));
    }
}

#[test]
fn a_helper_has_two_ranges_outstanding_and_asks_for_a_third_when_one_ends() {
    let mut p = peer(1);
    let (conn, _) = accept_with(&mut p, Instant::ZERO, hello(PeerId(2), "f:1", "s")).unwrap();
    drain(&mut p);
    let offer = Message::OfferJob {
        job_id: 7,
        url: URL.into(),
        validator: "\"v\"".into(),
        size: 64 * u64::from(RANGE),
        range_len: RANGE,
    };
    p.handle_message(Instant::ZERO, conn, offer);
    let asks = sent_on(&drain(&mut p), conn);
    assert_eq!(
        asks,
        vec![Message::TakeWork { job_id: 7 }; RANGES_PER_SLOT as usize]
    );
    // Both asks answered: both ranges are fetched at once.
    let mut tokens = Vec::new();
    for range_index in 0..RANGES_PER_SLOT {
        let assign = Message::AssignRange {
            job_id: 7,
            range_index,
            offset: u64::from(range_index) * u64::from(RANGE),
            length: RANGE,
        };
        p.handle_message(Instant::ZERO, conn, assign);
        tokens.extend(fetches(&drain(&mut p)).into_iter().map(|(t, _, h)| {
            assert!(h, "fetched for the fetcher");
            t
        }));
    }
    assert_eq!(tokens.len(), RANGES_PER_SLOT as usize);
    // The first ends: it is delivered and the next is asked for, the second still running.
    p.handle_range_fetched(
        Instant::ZERO,
        tokens[0],
        Ok(Bytes::from(vec![1; RANGE as usize])),
    );
    let sent = sent_on(&drain(&mut p), conn);
    assert!(matches!(
        sent.as_slice(),
        [
            Message::DeliverRange { range_index: 0, .. },
            Message::TakeWork { job_id: 7 }
        ]
    ));
}

#[test]
fn a_member_asking_for_more_than_its_share_is_told_there_is_no_work() {
    let mut p = peer(1);
    let (conn, _) = accept_with(&mut p, Instant::ZERO, hello(PeerId(2), "h:1", "s")).unwrap();
    drain(&mut p);
    let job_id = p.fetch(Instant::ZERO, spec(1000));
    drain(&mut p);
    let asks = HELPER_RANGES_HELD_MAX * 4;
    for _ in 0..asks {
        p.handle_message(Instant::ZERO, conn, Message::TakeWork { job_id });
    }
    let sent = sent_on(&drain(&mut p), conn);
    let assigned = sent
        .iter()
        .filter(|m| matches!(m, Message::AssignRange { .. }))
        .count();
    let refused = sent
        .iter()
        .filter(|m| matches!(m, Message::NoWork { .. }))
        .count();
    assert_eq!(assigned, HELPER_RANGES_HELD_MAX as usize);
    assert_eq!(refused, (asks - HELPER_RANGES_HELD_MAX) as usize);
    // It delivers one: it may hold one more.
    let (offset, range_index) = sent
        .iter()
        .find_map(|m| match m {
            Message::AssignRange {
                offset,
                range_index,
                ..
            } => Some((*offset, *range_index)),
            _ => None,
        })
        .unwrap();
    let deliver = Message::DeliverRange {
        job_id,
        range_index,
        offset,
        data: Bytes::from(vec![3; RANGE as usize]),
    };
    p.handle_message(Instant::ZERO, conn, deliver);
    drain(&mut p);
    p.handle_message(Instant::ZERO, conn, Message::TakeWork { job_id });
    let sent = sent_on(&drain(&mut p), conn);
    assert!(
        matches!(sent.as_slice(), [Message::AssignRange { .. }]),
        "{sent:?}"
    );
}
