//! A fetch is verified, not trusted: the fetcher spot-checks the ranges helpers deliver
//! against the origin, bans a helper caught delivering other bytes and fetches its ranges
//! again, and a helper's failure (even `fatal`) ends only that helper's part of the job.
//!
//! One fetcher machine driven by hand; the test plays the origin, the disk and scripted
//! helpers (honest, zero-filling, or failing) over real connections of the machine.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use p2p_core::peer::{
    FetchSpec, HELPER_FAILURES_MAX, Peer, PeerAction, PeerConfig, PeerNotice, RangeError,
    SPOT_CHECK_LEN, SPOT_CHECKS_PER_HELPER,
};
use p2p_core::testkit::file_bytes;
use p2p_core::testkit::remote::{accept_with, hello};
use p2p_core::wire::Message;
use p2p_core::{ConnId, Instant, PeerId};

const RANGE: u32 = 16 * 1024;
const URL: &str = "http://origin.test/f";

/// How a scripted helper answers an assignment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Script {
    Honest,
    /// Delivers zeros for every range.
    Zeros,
    /// Delivers zeros for every `n`-th range it is given, the origin's bytes otherwise.
    ZerosEvery(u32),
    /// Answers every assignment with a `RangeFailed`.
    Fails {
        fatal: bool,
    },
}

struct Harness {
    peer: Peer,
    now: Instant,
    origin: Bytes,
    file: Vec<u8>,
    helpers: BTreeMap<ConnId, (Script, u32)>,
    /// The fetcher's own fetches, answered one per round so helpers get work.
    local_fetches: VecDeque<(u64, u64, u32)>,
    origin_bytes_served: u64,
    notices: Vec<PeerNotice>,
    sent_to: Vec<(ConnId, Message)>,
}

impl Harness {
    fn new(size: usize, spot_checks: bool, scripts: &[Script], seed: u64) -> Harness {
        let mut peer = Peer::new(
            PeerConfig {
                peer_id: PeerId(1),
                swarm: "s".into(),
                listen_addr: "me:1".into(),
                origin_connections: 1,
                rng_seed: seed,
                ..PeerConfig::default()
            },
            Instant::ZERO,
        );
        let mut helpers = BTreeMap::new();
        for (i, script) in scripts.iter().enumerate() {
            let id = 10 + i as u64;
            let (conn, _) = accept_with(
                &mut peer,
                Instant::ZERO,
                hello(PeerId(id), &format!("helper{id}:1"), "s"),
            )
            .unwrap();
            helpers.insert(conn, (*script, 0));
        }
        let origin = Bytes::from(file_bytes(size, 5));
        let mut h = Harness {
            peer,
            now: Instant::ZERO,
            origin,
            file: vec![0xAA; size],
            helpers,
            local_fetches: VecDeque::new(),
            origin_bytes_served: 0,
            notices: Vec::new(),
            sent_to: Vec::new(),
        };
        let spec = FetchSpec {
            url: URL.into(),
            validator: "\"v\"".into(),
            size: size as u64,
            range_len: RANGE,
            spot_checks,
        };
        h.peer.fetch(h.now, spec);
        h
    }

    fn origin_range(&mut self, offset: u64, length: u32) -> Bytes {
        self.origin_bytes_served += u64::from(length);
        self.origin
            .slice(offset as usize..offset as usize + length as usize)
    }

    /// Runs until the job ends (or `rounds_max` rounds); returns how it ended.
    fn run(&mut self, rounds_max: usize) -> Option<Result<(), String>> {
        for _ in 0..rounds_max {
            self.round();
            if let Some(end) = self.end() {
                return Some(end);
            }
        }
        None
    }

    fn end(&self) -> Option<Result<(), String>> {
        self.notices.iter().find_map(|n| match n {
            PeerNotice::FetchComplete { .. } => Some(Ok(())),
            PeerNotice::FetchFailed { reason, .. } => Some(Err(reason.clone())),
            _ => None,
        })
    }

    fn round(&mut self) {
        while let Some(action) = self.peer.poll_action() {
            match action {
                PeerAction::FetchRange {
                    token,
                    offset,
                    length,
                    helping,
                    ..
                } => {
                    assert!(!helping, "the fetcher fetches only its own URL");
                    self.local_fetches.push_back((token, offset, length));
                }
                PeerAction::WriteRange {
                    token,
                    offset,
                    data,
                    ..
                } => {
                    self.file[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                    self.peer.handle_range_written(self.now, token, Ok(()));
                }
                PeerAction::Send { conn, message } => {
                    self.sent_to.push((conn, message.clone()));
                    self.helper_answers(conn, message);
                }
                PeerAction::Notify(notice) => self.notices.push(notice),
                _ => {}
            }
        }
        if let Some((token, offset, length)) = self.local_fetches.pop_front() {
            let data = self.origin_range(offset, length);
            self.peer.handle_range_fetched(self.now, token, Ok(data));
        }
    }

    fn helper_answers(&mut self, conn: ConnId, message: Message) {
        let Some((script, given)) = self.helpers.get_mut(&conn) else {
            return;
        };
        let script = *script;
        match message {
            Message::OfferJob { job_id, .. } => {
                self.peer
                    .handle_message(self.now, conn, Message::TakeWork { job_id });
            }
            Message::AssignRange {
                job_id,
                range_index,
                offset,
                length,
            } => {
                *given += 1;
                let nth = *given;
                let reply = match script {
                    Script::Fails { fatal } => Message::RangeFailed {
                        job_id,
                        range_index,
                        fatal,
                        reason: "the origin's file changed".into(),
                    },
                    Script::Zeros => Message::DeliverRange {
                        job_id,
                        range_index,
                        offset,
                        data: Bytes::from(vec![0; length as usize]),
                    },
                    Script::ZerosEvery(n) if nth % n == 0 => Message::DeliverRange {
                        job_id,
                        range_index,
                        offset,
                        data: Bytes::from(vec![0; length as usize]),
                    },
                    Script::Honest | Script::ZerosEvery(_) => {
                        let data = self.origin_range(offset, length);
                        Message::DeliverRange {
                            job_id,
                            range_index,
                            offset,
                            data,
                        }
                    }
                };
                self.peer.handle_message(self.now, conn, reply);
                self.peer
                    .handle_message(self.now, conn, Message::TakeWork { job_id });
            }
            _ => {}
        }
    }

    fn caught(&self) -> Vec<&PeerNotice> {
        self.notices
            .iter()
            .filter(|n| matches!(n, PeerNotice::HelperCaught { .. }))
            .collect()
    }

    fn ended_for(&self, conn: ConnId) -> bool {
        self.sent_to
            .iter()
            .any(|(c, m)| *c == conn && matches!(m, Message::EndJob { .. }))
    }
}

#[test]
fn a_helper_delivering_zeros_is_caught_banned_and_its_ranges_fetched_again() {
    let mut h = Harness::new(
        40 * RANGE as usize,
        true,
        &[Script::Honest, Script::Zeros],
        1,
    );
    assert_eq!(h.run(10_000), Some(Ok(())), "{:?}", h.notices);
    assert_eq!(h.file, h.origin, "the saved bytes are the origin's");
    let caught = h.caught();
    assert_eq!(caught.len(), 1, "{caught:?}");
    assert!(matches!(
        caught[0],
        PeerNotice::HelperCaught {
            peer_id: PeerId(11),
            ..
        }
    ));
    let zeros_conn = *h
        .helpers
        .iter()
        .find(|(_, (s, _))| *s == Script::Zeros)
        .unwrap()
        .0;
    assert!(h.ended_for(zeros_conn), "the banned helper is told");
    // After the ban it was given nothing more.
    let given_after_ban = h
        .sent_to
        .iter()
        .skip_while(|(c, m)| !(*c == zeros_conn && matches!(m, Message::EndJob { .. })))
        .filter(|(c, m)| *c == zeros_conn && matches!(m, Message::AssignRange { .. }))
        .count();
    assert_eq!(given_after_ban, 0);
}

#[test]
fn a_helper_altering_one_range_in_twenty_is_caught() {
    // Every range a helper delivers is checked while it has delivered at most
    // `SPOT_CHECKS_PER_HELPER`, so one altered range among 100 is always found.
    for seed in 0..8 {
        let mut h = Harness::new(200 * RANGE as usize, true, &[Script::ZerosEvery(20)], seed);
        assert_eq!(h.run(100_000), Some(Ok(())), "seed {seed}");
        assert_eq!(h.file, h.origin, "seed {seed}");
        assert_eq!(h.caught().len(), 1, "seed {seed}");
    }
}

#[test]
fn past_the_reservoir_a_helper_altering_five_percent_is_still_caught() {
    // Well past `SPOT_CHECKS_PER_HELPER` ranges, so only some are checked: the escape
    // probability is at most 0.95^135 < 0.001 per run.
    for seed in 0..4 {
        let mut h = Harness::new(1200 * RANGE as usize, true, &[Script::ZerosEvery(20)], seed);
        assert_eq!(h.run(1_000_000), Some(Ok(())), "seed {seed}");
        assert_eq!(h.file, h.origin, "seed {seed}");
        assert_eq!(h.caught().len(), 1, "seed {seed}");
    }
}

#[test]
fn honest_helpers_pass_and_the_checks_cost_one_window_per_range_they_delivered() {
    let size = 40 * RANGE as usize - 1000;
    let mut h = Harness::new(size, true, &[Script::Honest, Script::Honest], 3);
    assert_eq!(h.run(10_000), Some(Ok(())));
    assert_eq!(h.file, h.origin);
    assert!(h.caught().is_empty());
    let helper_ranges = h
        .notices
        .iter()
        .filter(|n| matches!(n, PeerNotice::RangeFetched { by, .. } if by != "local"))
        .count() as u64;
    assert!(helper_ranges > 0);
    // The origin served the file once (the fetcher's share and the helpers'), plus a check
    // window per helper range.
    assert_eq!(
        h.origin_bytes_served,
        size as u64 + helper_ranges * u64::from(SPOT_CHECK_LEN)
    );
}

#[test]
fn checks_per_helper_follow_the_reservoir_bound() {
    // One helper, many ranges: at least K checked, about K (1 + ln(n / K)) in all.
    let ranges = 2000u32;
    let size = ranges as usize * RANGE as usize;
    let mut h = Harness::new(size, true, &[Script::Honest], 9);
    assert_eq!(h.run(1_000_000), Some(Ok(())));
    let helper_ranges = h
        .notices
        .iter()
        .filter(|n| matches!(n, PeerNotice::RangeFetched { by, .. } if by != "local"))
        .count() as u64;
    let checks = (h.origin_bytes_served - size as u64) / u64::from(SPOT_CHECK_LEN);
    let k = f64::from(SPOT_CHECKS_PER_HELPER);
    let expected = k * (1.0 + (helper_ranges as f64 / k).ln());
    assert!(
        helper_ranges > u64::from(SPOT_CHECKS_PER_HELPER),
        "{helper_ranges}"
    );
    assert!(checks >= u64::from(SPOT_CHECKS_PER_HELPER), "{checks}");
    assert!(
        (checks as f64) < expected * 1.3,
        "{checks} checks for {helper_ranges} ranges, expected about {expected:.0}"
    );
}

#[test]
fn with_a_known_sha256_there_are_no_spot_checks() {
    let size = 40 * RANGE as usize;
    let mut h = Harness::new(size, false, &[Script::Honest], 3);
    assert_eq!(h.run(10_000), Some(Ok(())));
    assert_eq!(h.origin_bytes_served, size as u64);
}

#[test]
fn a_fatal_failure_from_a_helper_ends_only_its_part() {
    let mut h = Harness::new(
        40 * RANGE as usize,
        true,
        &[Script::Fails { fatal: true }, Script::Honest],
        4,
    );
    assert_eq!(h.run(10_000), Some(Ok(())), "{:?}", h.notices);
    assert_eq!(h.file, h.origin);
    assert!(
        h.notices
            .iter()
            .any(|n| matches!(n, PeerNotice::HelperLeft { .. }))
    );
    let failing = *h
        .helpers
        .iter()
        .find(|(_, (s, _))| matches!(s, Script::Fails { .. }))
        .unwrap()
        .0;
    assert!(h.ended_for(failing));
    assert_eq!(h.helpers[&failing].1, 1, "given one range, then no more");
}

#[test]
fn a_helper_failing_every_range_cannot_end_the_job() {
    let mut h = Harness::new(
        40 * RANGE as usize,
        true,
        &[Script::Fails { fatal: false }],
        4,
    );
    assert_eq!(h.run(10_000), Some(Ok(())), "{:?}", h.notices);
    assert_eq!(h.file, h.origin);
    let failing = *h.helpers.keys().next().unwrap();
    assert_eq!(h.helpers[&failing].1, HELPER_FAILURES_MAX);
}

#[test]
fn a_failed_check_is_retried_and_a_changed_origin_ends_the_job() {
    // The origin answers the checks with errors: retryable ones are retried, a fatal one
    // (the file changed) ends the job.
    let mut h = Harness::new(8 * RANGE as usize, true, &[Script::Honest], 2);
    let mut fatal_sent = false;
    let mut retryable_sent = 0;
    for _ in 0..10_000 {
        while let Some(action) = h.peer.poll_action() {
            match action {
                PeerAction::FetchRange { token, length, .. }
                    if length == SPOT_CHECK_LEN && u64::from(RANGE) > u64::from(length) =>
                {
                    // A check (ranges are 16 KiB here).
                    let error = RangeError {
                        fatal: retryable_sent >= 2,
                        refused: false,
                        reason: "changed".into(),
                    };
                    fatal_sent |= error.fatal;
                    retryable_sent += 1;
                    h.peer.handle_range_fetched(h.now, token, Err(error));
                }
                PeerAction::FetchRange {
                    token,
                    offset,
                    length,
                    ..
                } => h.local_fetches.push_back((token, offset, length)),
                PeerAction::WriteRange { token, .. } => {
                    h.peer.handle_range_written(h.now, token, Ok(()))
                }
                PeerAction::Send { conn, message } => h.helper_answers(conn, message),
                PeerAction::Notify(notice) => h.notices.push(notice),
                _ => {}
            }
        }
        if let Some((token, offset, length)) = h.local_fetches.pop_front() {
            let data = h.origin_range(offset, length);
            h.peer.handle_range_fetched(h.now, token, Ok(data));
        }
        // Let the fetcher's backoff run out.
        h.now = h.now + std::time::Duration::from_secs(60);
        h.peer.handle_timeout(h.now);
        if h.end().is_some() {
            break;
        }
    }
    assert!(fatal_sent);
    assert!(matches!(h.end(), Some(Err(reason)) if reason.contains("check at byte")));
}
