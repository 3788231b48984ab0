//! The endgame of a cooperative fetch: once no range is left in the pool, an idle
//! participant fetches a copy of a range that is slow (out [`ENDGAME_SLOW_FACTOR`] times the
//! typical range time, and [`ENDGAME_SLOW_AGE_MIN`]), the first copy written wins and the other is cancelled, at most
//! [`ENDGAME_DUPLICATES_PER_RANGE`] copy per range. So a stalled helper does not set the
//! finish time, and ranges going at the usual pace cost no second fetch.

use std::time::Duration;

use bytes::Bytes;
use p2p_core::peer::{
    ENDGAME_DUPLICATES_PER_RANGE, ENDGAME_SLOW_AGE_MIN, ENDGAME_SLOW_FACTOR, FetchSpec, Peer,
    PeerAction, PeerConfig, PeerNotice, RangeError,
};
use p2p_core::testkit::remote::{accept_with, drain, hello};
use p2p_core::testkit::{Swarm, file_bytes};
use p2p_core::tracker::{Tracker, TrackerConfig};
use p2p_core::wire::Message;
use p2p_core::{ConnId, Instant, PeerId};

const RANGE: u32 = 16 * 1024;
const URL: &str = "http://origin.test/f";
const SWARM: &str = "s";
const TRACKER: &str = "tracker:1";

fn ms(n: u64) -> Instant {
    Instant::from_nanos(n * 1_000_000)
}

fn fetcher() -> Peer {
    Peer::new(
        PeerConfig {
            peer_id: PeerId(1),
            swarm: SWARM.into(),
            listen_addr: "me:1".into(),
            origin_connections: 1,
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

fn range_bytes(range_index: u32) -> Bytes {
    Bytes::from(vec![range_index as u8; RANGE as usize])
}

/// (token, offset) of every `FetchRange` among `actions`.
fn fetches(actions: &[PeerAction]) -> Vec<(u64, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            PeerAction::FetchRange { token, offset, .. } => Some((*token, *offset)),
            _ => None,
        })
        .collect()
}

/// (token, offset) of every `WriteRange` among `actions`.
fn writes(actions: &[PeerAction]) -> Vec<(u64, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            PeerAction::WriteRange { token, offset, .. } => Some((*token, *offset)),
            _ => None,
        })
        .collect()
}

fn cancels(actions: &[PeerAction]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            PeerAction::CancelFetch { token } => Some(*token),
            _ => None,
        })
        .collect()
}

fn sent_on(actions: &[PeerAction], conn: ConnId) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            PeerAction::Send { conn: c, message } if *c == conn => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// Writes every range in `written` as the disk would, collecting the offsets.
fn finish_writes(p: &mut Peer, now: Instant, written: &[(u64, u64)], offsets: &mut Vec<u64>) {
    for (token, offset) in written {
        p.handle_range_written(now, *token, Ok(()));
        offsets.push(*offset);
    }
}

#[test]
fn slow_ranges_are_copied_once_and_the_first_copy_wins() {
    let mut p = fetcher();
    let (conn_a, _) = accept_with(&mut p, Instant::ZERO, hello(PeerId(2), "a:1", SWARM)).unwrap();
    let (conn_b, _) = accept_with(&mut p, Instant::ZERO, hello(PeerId(3), "b:1", SWARM)).unwrap();
    drain(&mut p);
    let job_id = p.fetch(Instant::ZERO, spec(4));
    // The fetcher's slot takes ranges 0 and 1, helper a ranges 2 and 3.
    let local = fetches(&drain(&mut p));
    assert_eq!(local.len(), 2);
    for _ in 0..2 {
        p.handle_message(Instant::ZERO, conn_a, Message::TakeWork { job_id });
    }
    let assigned = sent_on(&drain(&mut p), conn_a);
    assert!(
        matches!(
            assigned.as_slice(),
            [
                Message::AssignRange { range_index: 2, .. },
                Message::AssignRange { range_index: 3, .. }
            ]
        ),
        "{assigned:?}"
    );
    // The fetcher's two ranges take 100 ms: the typical range time. Helper a's are not slow
    // yet, so nothing is copied; the endgame wakes when they will be.
    let mut written = Vec::new();
    for (token, offset) in &local {
        p.handle_range_fetched(ms(100), *token, Ok(range_bytes((offset / 16384) as u32)));
    }
    let actions = drain(&mut p);
    assert!(fetches(&actions).is_empty(), "{actions:?}");
    finish_writes(&mut p, ms(100), &writes(&actions), &mut written);
    drain(&mut p);
    let slow_at = ms(100 * u64::from(ENDGAME_SLOW_FACTOR));
    assert!(slow_at - Instant::ZERO >= ENDGAME_SLOW_AGE_MIN);
    assert!(p.poll_timeout().is_some_and(|at| at <= slow_at));
    p.handle_timeout(Instant::from_nanos(slow_at.as_nanos() - 1));
    assert!(fetches(&drain(&mut p)).is_empty());
    // Then they are: the fetcher's idle slot copies both (oldest first).
    p.handle_timeout(slow_at);
    let copies = fetches(&drain(&mut p));
    let offsets: Vec<u64> = copies.iter().map(|c| c.1).collect();
    assert_eq!(offsets, vec![2 * u64::from(RANGE), 3 * u64::from(RANGE)]);
    // Helper b, idle, gets no third copy: one per range.
    assert_eq!(ENDGAME_DUPLICATES_PER_RANGE, 1);
    p.handle_message(slow_at, conn_b, Message::TakeWork { job_id });
    assert_eq!(
        sent_on(&drain(&mut p), conn_b),
        vec![Message::NoWork { job_id }]
    );
    // The fetcher's copy of range 2 arrives first: it is written, helper a is told to stop.
    p.handle_range_fetched(ms(250), copies[0].0, Ok(range_bytes(2)));
    let actions = drain(&mut p);
    assert_eq!(
        sent_on(&actions, conn_a),
        vec![Message::CancelRange {
            job_id,
            range_index: 2
        }]
    );
    finish_writes(&mut p, ms(250), &writes(&actions), &mut written);
    drain(&mut p);
    // Helper a delivers range 3 before the fetcher's copy: the copy is cancelled.
    let deliver = |range_index: u32| Message::DeliverRange {
        job_id,
        range_index,
        offset: u64::from(range_index) * u64::from(RANGE),
        data: range_bytes(range_index),
    };
    p.handle_message(ms(260), conn_a, deliver(3));
    let actions = drain(&mut p);
    assert_eq!(cancels(&actions), vec![copies[1].0]);
    finish_writes(&mut p, ms(260), &writes(&actions), &mut written);
    // Range 2 from helper a, late, and the cancelled copy's result are both dropped.
    p.handle_message(ms(270), conn_a, deliver(2));
    let cancelled = Err(RangeError {
        fatal: false,
        refused: false,
        reason: "cancelled".into(),
    });
    p.handle_range_fetched(ms(270), copies[1].0, cancelled);
    let actions = drain(&mut p);
    assert!(writes(&actions).is_empty(), "{actions:?}");
    assert!(fetches(&actions).is_empty(), "{actions:?}");
    // Every range was written exactly once, and the job is complete.
    written.sort();
    let expected: Vec<u64> = (0..4).map(|i| i * u64::from(RANGE)).collect();
    assert_eq!(written, expected);
    assert!(
        actions.iter().any(|a| matches!(a, PeerAction::Notify(PeerNotice::FetchComplete { job_id: j }) if *j == job_id)),
        "{actions:?}"
    );
}

#[test]
fn a_helper_told_to_cancel_stops_the_fetch_and_delivers_nothing() {
    let mut p = Peer::new(
        PeerConfig {
            peer_id: PeerId(2),
            swarm: SWARM.into(),
            listen_addr: "h:1".into(),
            ..PeerConfig::default()
        },
        Instant::ZERO,
    );
    let (conn, _) = accept_with(&mut p, Instant::ZERO, hello(PeerId(1), "f:1", SWARM)).unwrap();
    drain(&mut p);
    let offer = Message::OfferJob {
        job_id: 7,
        url: URL.into(),
        validator: "\"v\"".into(),
        size: 8 * u64::from(RANGE),
        range_len: RANGE,
    };
    p.handle_message(Instant::ZERO, conn, offer);
    drain(&mut p);
    let assign = Message::AssignRange {
        job_id: 7,
        range_index: 5,
        offset: 5 * u64::from(RANGE),
        length: RANGE,
    };
    p.handle_message(Instant::ZERO, conn, assign);
    let token = fetches(&drain(&mut p))[0].0;
    // A cancel for a range it does not fetch is nothing; for range 5, the fetch is stopped.
    let cancel = |range_index| Message::CancelRange {
        job_id: 7,
        range_index,
    };
    p.handle_message(ms(1), conn, cancel(4));
    assert!(cancels(&drain(&mut p)).is_empty());
    p.handle_message(ms(1), conn, cancel(5));
    assert_eq!(cancels(&drain(&mut p)), vec![token]);
    // Whatever the fetch still returns is not delivered; the slot asks for work again.
    p.handle_range_fetched(ms(2), token, Ok(range_bytes(5)));
    let sent = sent_on(&drain(&mut p), conn);
    assert_eq!(sent, vec![Message::TakeWork { job_id: 7 }]);
}

fn fetch_result(world: &Swarm, addr: &str) -> Option<Result<(), String>> {
    world.notices(addr).iter().find_map(|n| match n {
        PeerNotice::FetchComplete { .. } => Some(Ok(())),
        PeerNotice::FetchFailed { reason, .. } => Some(Err(reason.clone())),
        _ => None,
    })
}

fn ranges_by(world: &Swarm, who: &str) -> usize {
    world
        .notices("fetcher:1")
        .iter()
        .filter(|n| matches!(n, PeerNotice::RangeFetched { by, .. } if by == who))
        .count()
}

#[test]
fn a_stalled_helpers_last_ranges_are_finished_by_others_and_cancelled() {
    let ranges = 40;
    let data = file_bytes(ranges * RANGE as usize, 3);
    let mut world = Swarm::new();
    world.add_tracker(
        TRACKER,
        Tracker::new(TrackerConfig {
            peer_timeout: Duration::from_secs(5),
            ..TrackerConfig::default()
        }),
    );
    world.origin.put(URL, "\"v\"", Bytes::from(data.clone()));
    let addrs = ["fetcher:1", "helper1:1", "helper2:1"];
    for (i, addr) in addrs.iter().enumerate() {
        let config = PeerConfig {
            peer_id: PeerId(100 + i as u64),
            swarm: SWARM.into(),
            listen_addr: addr.to_string(),
            trackers: vec![TRACKER.into()],
            rng_seed: i as u64,
            ..PeerConfig::default()
        };
        let peer = Peer::new(config, world.now());
        world.add_peer(addr, peer);
    }
    world.drive_until(10_000, |w| w.tracker(TRACKER).peer_count() == 3);
    world.input("fetcher:1", |peer, now| {
        peer.fetch(now, spec(ranges as u32))
    });
    // Halfway through, helper 1's link to the origin all but stops: what it asks for
    // from then on would take minutes, past the range timeout.
    assert!(world.drive_until(200_000, |w| ranges_by(w, "helper1:1") >= 4));
    let stalled_at = world.now();
    let delivered_before_stall = ranges_by(&world, "helper1:1");
    world.slow_origin_for("helper1:1", 100_000);
    assert!(world.drive_until(400_000, |w| fetch_result(w, "fetcher:1").is_some()));
    assert_eq!(fetch_result(&world, "fetcher:1"), Some(Ok(())));
    let finished_at = world.now();
    // The cancels on their way arrive.
    assert!(world.drive_bounded(10_000));
    assert_eq!(world.fetched("fetcher:1"), data);
    // The others finished helper 1's last ranges long before its range timeout would
    // have taken them back.
    let timeout = PeerConfig::default().coop_range_timeout;
    assert!(
        finished_at - stalled_at < timeout / 4,
        "finished {:?} after the stall",
        finished_at - stalled_at
    );
    // Helper 1 delivered at most what it had fetched by the stall (one range may have been
    // on its way), and was told to cancel what it held: each such range was copied.
    assert!(ranges_by(&world, "helper1:1") <= delivered_before_stall + 1);
    let cancelled = world.fetches_cancelled("helper1:1");
    assert!(cancelled >= 1, "helper 1 cancelled nothing");
    // The origin sent the file once, plus both copies of each copied range: the loser's
    // bytes count too (this origin counts a range whole when it is asked for).
    let cancelled_total: u32 = addrs.iter().map(|a| world.fetches_cancelled(a)).sum();
    assert_eq!(
        world.origin.bytes_served(),
        data.len() as u64 + u64::from(cancelled_total) * u64::from(RANGE)
    );
}
