//! A helper does only the work it asked for: an `AssignRange` that answers none of its
//! `TakeWork`s never becomes a `FetchRange`, its fetches stay within its slots however many
//! jobs and assignments arrive, and a URL its origin policy refused costs no more fetches.

use bytes::Bytes;
use p2p_core::peer::{
    HELPER_JOBS_MAX, HELPER_JOBS_PER_CONN_MAX, Peer, PeerAction, PeerConfig, RANGES_PER_SLOT,
    RangeError,
};
use p2p_core::testkit::remote::{accept_with, drain, hello};
use p2p_core::wire::Message;
use p2p_core::{ConnId, Instant, PeerId};

const SIZE: u64 = 1 << 20;
const RANGE: u32 = 16 * 1024;
/// Asks (and so ranges in flight) per slot.
const PER_SLOT: usize = RANGES_PER_SLOT as usize;

fn helper(origin_connections: u32) -> Peer {
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

/// A fetcher connected as `peer_id`.
fn fetcher(p: &mut Peer, peer_id: u64) -> ConnId {
    let (conn, _) = accept_with(p, Instant::ZERO, hello(PeerId(peer_id), "f:1", "s")).unwrap();
    conn
}

fn offer(job_id: u64) -> Message {
    Message::OfferJob {
        job_id,
        url: "http://origin.example/f".into(),
        validator: "\"v\"".into(),
        size: SIZE,
        range_len: RANGE,
    }
}

fn assign(job_id: u64, range_index: u32) -> Message {
    Message::AssignRange {
        job_id,
        range_index,
        offset: u64::from(range_index) * u64::from(RANGE),
        length: RANGE,
    }
}

fn asks(actions: &[PeerAction]) -> usize {
    actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                PeerAction::Send {
                    message: Message::TakeWork { .. },
                    ..
                }
            )
        })
        .count()
}

/// The tokens of the helper fetches among `actions`.
fn fetches(actions: &[PeerAction]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            PeerAction::FetchRange {
                token,
                helping: true,
                ..
            } => Some(*token),
            _ => None,
        })
        .collect()
}

fn closed(actions: &[PeerAction], conn: ConnId) -> bool {
    actions.iter().any(|a| *a == PeerAction::Close { conn })
}

#[test]
fn an_assignment_not_asked_for_closes_the_connection_and_fetches_nothing() {
    let mut p = helper(1);
    let conn = fetcher(&mut p, 2);
    p.handle_message(Instant::ZERO, conn, offer(7));
    assert_eq!(asks(&drain(&mut p)), PER_SLOT, "one slot, its asks");
    for range_index in 0..RANGES_PER_SLOT {
        p.handle_message(Instant::ZERO, conn, assign(7, range_index));
        let actions = drain(&mut p);
        assert_eq!(
            fetches(&actions).len(),
            1,
            "the answer to an ask is fetched"
        );
        assert!(!closed(&actions, conn));
    }
    p.handle_message(Instant::ZERO, conn, assign(7, RANGES_PER_SLOT));
    let actions = drain(&mut p);
    assert!(fetches(&actions).is_empty(), "{actions:?}");
    assert!(closed(&actions, conn), "{actions:?}");
}

#[test]
fn a_flood_of_assignments_fetches_no_more_than_the_slots() {
    let slots = 3;
    let mut p = helper(slots);
    let conn = fetcher(&mut p, 2);
    p.handle_message(Instant::ZERO, conn, offer(7));
    assert_eq!(asks(&drain(&mut p)), slots as usize * PER_SLOT);
    let mut started = 0;
    for range_index in 0..2000 {
        p.handle_message(Instant::ZERO, conn, assign(7, range_index % 64));
        started += fetches(&drain(&mut p)).len();
    }
    assert_eq!(started, slots as usize * PER_SLOT);
}

#[test]
fn a_no_work_answer_uses_up_the_ask() {
    let mut p = helper(1);
    let conn = fetcher(&mut p, 2);
    p.handle_message(Instant::ZERO, conn, offer(7));
    drain(&mut p);
    for _ in 0..PER_SLOT {
        p.handle_message(Instant::ZERO, conn, Message::NoWork { job_id: 7 });
    }
    drain(&mut p);
    p.handle_message(Instant::ZERO, conn, assign(7, 0));
    let actions = drain(&mut p);
    assert!(fetches(&actions).is_empty() && closed(&actions, conn));
}

#[test]
fn one_connection_cannot_fill_every_job_slot() {
    // A member offering job after job gets a few; the helper keeps the rest for others.
    let mut p = helper(1);
    let greedy = fetcher(&mut p, 2);
    let mut taken = 0;
    for job_id in 0..HELPER_JOBS_MAX as u64 {
        p.handle_message(Instant::ZERO, greedy, offer(job_id));
        taken += asks(&drain(&mut p));
    }
    assert_eq!(taken, HELPER_JOBS_PER_CONN_MAX * PER_SLOT);
    let other = fetcher(&mut p, 3);
    p.handle_message(Instant::ZERO, other, offer(100));
    assert_eq!(
        asks(&drain(&mut p)),
        PER_SLOT,
        "another member's job is taken"
    );
    // A job of the greedy one ends: it may offer another.
    p.handle_message(
        Instant::ZERO,
        greedy,
        Message::EndJob {
            job_id: 0,
            reason: "done".into(),
        },
    );
    drain(&mut p);
    p.handle_message(Instant::ZERO, greedy, offer(200));
    assert_eq!(asks(&drain(&mut p)), PER_SLOT);
}

#[test]
fn fetches_of_ended_jobs_still_count_against_the_total() {
    // A fetcher that takes a range, leaves and comes back cannot pile up fetches: those of
    // its old connections run on in the driver until they finish.
    let mut p = helper(1);
    let mut tokens = Vec::new();
    let mut last_asks = 0;
    for round in 0..(HELPER_JOBS_MAX as u64 * 3) {
        let conn = fetcher(&mut p, 100 + round);
        p.handle_message(Instant::ZERO, conn, offer(round));
        last_asks = asks(&drain(&mut p));
        for range_index in 0..last_asks as u32 {
            p.handle_message(Instant::ZERO, conn, assign(round, range_index));
            tokens.extend(fetches(&drain(&mut p)));
        }
        p.handle_closed(Instant::ZERO, conn);
        drain(&mut p);
    }
    assert_eq!(
        tokens.len(),
        HELPER_JOBS_MAX * PER_SLOT,
        "one slot's ranges in each of the jobs"
    );
    assert_eq!(last_asks, 0, "no ask while the total is busy");
    // One fetch finishes: a job waiting for a slot asks again.
    let conn = fetcher(&mut p, 99);
    p.handle_message(Instant::ZERO, conn, offer(1000));
    assert_eq!(asks(&drain(&mut p)), 0);
    p.handle_range_fetched(
        Instant::ZERO,
        tokens[0],
        Ok(Bytes::from(vec![0; RANGE as usize])),
    );
    let actions = drain(&mut p);
    assert_eq!(asks(&actions), 1, "{actions:?}");
}

#[test]
fn a_url_refused_by_policy_is_not_fetched_again() {
    let mut p = helper(2);
    let conn = fetcher(&mut p, 2);
    p.handle_message(Instant::ZERO, conn, offer(7));
    assert_eq!(asks(&drain(&mut p)), 2 * PER_SLOT);
    p.handle_message(Instant::ZERO, conn, assign(7, 0));
    let token = fetches(&drain(&mut p))[0];
    let refusal = RangeError {
        fatal: false,
        refused: true,
        reason: "refused by origin policy".into(),
    };
    p.handle_range_fetched(Instant::ZERO, token, Err(refusal));
    let actions = drain(&mut p);
    assert_eq!(asks(&actions), 0, "no more asks for a refused job");
    assert!(actions.iter().any(|a| matches!(a, PeerAction::Send { message: Message::RangeFailed { fatal: false, reason, .. }, .. } if reason == "refused by origin policy")));
    // The second ask was answered: that range goes back at once, unfetched.
    p.handle_message(Instant::ZERO, conn, assign(7, 1));
    let actions = drain(&mut p);
    assert!(fetches(&actions).is_empty());
    assert!(actions.iter().any(|a| matches!(
        a,
        PeerAction::Send {
            message: Message::RangeFailed {
                range_index: 1,
                fatal: false,
                ..
            },
            ..
        }
    )));
    // A new offer of the same job asks nothing.
    p.handle_message(Instant::ZERO, conn, offer(7));
    assert_eq!(asks(&drain(&mut p)), 0);
}

#[test]
fn a_job_without_work_is_not_asked_again_when_another_jobs_range_finishes() {
    let mut p = helper(1);
    let (a, b) = (fetcher(&mut p, 2), fetcher(&mut p, 3));
    p.handle_message(Instant::ZERO, a, offer(1));
    p.handle_message(Instant::ZERO, b, offer(2));
    assert_eq!(asks(&drain(&mut p)), 2 * PER_SLOT);
    for _ in 0..PER_SLOT {
        p.handle_message(Instant::ZERO, a, Message::NoWork { job_id: 1 });
    }
    p.handle_message(Instant::ZERO, b, assign(2, 0));
    let token = fetches(&drain(&mut p))[0];
    p.handle_range_fetched(
        Instant::ZERO,
        token,
        Ok(Bytes::from(vec![0; RANGE as usize])),
    );
    let actions = drain(&mut p);
    let asked: Vec<ConnId> = actions
        .iter()
        .filter_map(|a| match a {
            PeerAction::Send {
                conn,
                message: Message::TakeWork { .. },
            } => Some(*conn),
            _ => None,
        })
        .collect();
    assert_eq!(
        asked,
        vec![b],
        "only the job whose range finished asks again"
    );
}
