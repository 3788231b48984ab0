//! Operation sequences for the cooperative origin download: a peer that helps (and, when
//! the first byte says so, also fetches a URL itself), fed the coop messages of up to four
//! remote peers, lies and floods included, and the driver's range fetches and writes.
//!
//! Input: `[config]` then ops, each one byte (`op % OPS`) and its operands:
//! - `ACCEPT peer`: remote `peer` (1..=4) connects and says hello;
//! - `CLOSE sel`: a connection closes;
//! - `MESSAGE sel …`: a coop message on a connection (offers, assignments, no-work, end,
//!   take-work, deliveries, failures, cancels; ids, ranges and sizes sometimes valid, often not);
//! - `FLOOD sel n job`: `n` assignments of a job at once;
//! - `FETCHED k mode`: the driver finishes the k-th pending `FetchRange` (the bytes, too few,
//!   a retryable or fatal failure, a refusal by the origin policy);
//! - `WRITTEN k ok`: the driver finishes the k-th pending `WriteRange`;
//! - `ADVANCE ms:u16`: time moves on; timers fire if due.
//!
//! Checked after every op: no panic; `Send`/`Close` only on open connections, every message
//! sent decodable; a helping `FetchRange` only right after an `AssignRange` that answered a
//! `TakeWork` the peer sent on that connection for that job; helping fetches in flight never
//! more than `helper_fetches_max`; asks outstanding per job never more than its slots hold
//! (`ranges_in_flight_max`); a `CancelFetch` only of a fetch still running.

use std::collections::BTreeMap;
use std::time::Duration;

use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use p2p_core::peer::{
    FetchSpec, Peer, PeerAction, PeerConfig, RangeError, helper_fetches_max, ranges_in_flight_max,
};
use p2p_core::testkit::remote::{accept_with, hello};
use p2p_core::{ConnId, Instant, Message, PeerId};

use crate::{assert_sendable, be16, byte, through_wire};

pub const ACCEPT: u8 = 0;
pub const CLOSE: u8 = 1;
pub const MESSAGE: u8 = 2;
pub const FLOOD: u8 = 3;
pub const FETCHED: u8 = 4;
pub const WRITTEN: u8 = 5;
pub const ADVANCE: u8 = 6;
const OPS: u8 = 7;

const STEPS_MAX: usize = 256;
const FLOOD_MAX: u8 = 64;
/// Job ids the remotes offer: few, so offers, assignments and ends meet.
const JOB_IDS: u64 = 4;
const SIZE_SMALL: u64 = 100_000;
const RANGE_LEN: u32 = 16 * 1024;

pub struct CoopHarness {
    pub peer: Peer,
    pub now: Instant,
    origin_connections: u32,
    /// The peer's own fetch, when it runs one.
    own_job: Option<u64>,
    conns: Vec<ConnId>,
    /// `TakeWork`s the peer sent and the harness has not answered, by connection and job.
    asks: BTreeMap<(ConnId, u64), u32>,
    /// Pending `FetchRange`s: token, length, helping.
    fetches: Vec<(u64, u32, bool)>,
    writes: Vec<u64>,
    /// Helping fetches the peer started, over the run.
    pub helping_fetches_started: usize,
}

impl CoopHarness {
    pub fn new(config: u8) -> CoopHarness {
        let origin_connections = u32::from(config % 3) + 1;
        let now = Instant::from_nanos(1_000_000_000);
        let peer = Peer::new(
            PeerConfig {
                peer_id: PeerId(100),
                swarm: "s".into(),
                listen_addr: "self:1".into(),
                origin_connections,
                ..PeerConfig::default()
            },
            now,
        );
        let mut h = CoopHarness {
            peer,
            now,
            origin_connections,
            own_job: None,
            conns: Vec::new(),
            asks: BTreeMap::new(),
            fetches: Vec::new(),
            writes: Vec::new(),
            helping_fetches_started: 0,
        };
        if config & 0x80 != 0 {
            let spec = FetchSpec {
                url: "http://origin/f".into(),
                validator: "\"v\"".into(),
                size: SIZE_SMALL,
                range_len: RANGE_LEN,
                spot_checks: config & 0x40 != 0,
            };
            h.own_job = Some(h.peer.fetch(now, spec));
            h.drain_and_check(None);
        }
        h
    }

    fn pick(&self, sel: u8) -> Option<ConnId> {
        (!self.conns.is_empty()).then(|| self.conns[sel as usize % self.conns.len()])
    }

    fn job_id(&self, u: &mut Unstructured<'_>) -> Result<u64> {
        Ok(match u.int_in_range(0..=5)? {
            0..=3 => u.int_in_range(0..=JOB_IDS - 1)?,
            4 => self.own_job.unwrap_or(0),
            _ => u.arbitrary()?,
        })
    }

    fn message(&self, u: &mut Unstructured<'_>) -> Result<Message> {
        let job_id = self.job_id(u)?;
        let range_index = if u.ratio(1, 5)? {
            u.arbitrary()?
        } else {
            u.int_in_range(0..=7)?
        };
        let offset = if u.ratio(1, 5)? {
            u.arbitrary()?
        } else {
            u64::from(range_index) * u64::from(RANGE_LEN)
        };
        let length = match u.int_in_range(0..=4)? {
            0 => 0,
            1 => u.arbitrary()?,
            _ => RANGE_LEN,
        };
        Ok(match u.int_in_range(0..=8)? {
            0 => Message::OfferJob {
                job_id,
                url: if u.ratio(1, 2)? {
                    "http://origin/f".into()
                } else {
                    crate::generate::string(u)?
                },
                validator: "\"v\"".into(),
                size: if u.ratio(3, 4)? {
                    SIZE_SMALL
                } else {
                    u.arbitrary()?
                },
                range_len: RANGE_LEN,
            },
            1 | 2 => Message::AssignRange {
                job_id,
                range_index,
                offset,
                length,
            },
            3 => Message::NoWork { job_id },
            4 => Message::EndJob {
                job_id,
                reason: "end".into(),
            },
            5 => Message::TakeWork { job_id },
            6 => Message::DeliverRange {
                job_id,
                range_index,
                offset,
                data: Bytes::from(vec![7; (length as usize).min(70_000)]),
            },
            7 => Message::CancelRange {
                job_id,
                range_index,
            },
            _ => Message::RangeFailed {
                job_id,
                range_index,
                fatal: u.arbitrary()?,
                reason: "no".into(),
            },
        })
    }

    /// Delivers `message` on `conn` as a remote sends it, and checks what follows.
    fn deliver(&mut self, conn: ConnId, message: Message) {
        let Some(message) = through_wire(&message) else {
            return;
        };
        // The ask this message answers, if it is an assignment or a no-work.
        let answered = match message {
            Message::AssignRange { job_id, .. } | Message::NoWork { job_id } => {
                match self.asks.get_mut(&(conn, job_id)) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        Some(job_id)
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if let Message::EndJob { job_id, .. } = message {
            // The job ends here: its asks are void (a new offer of it asks afresh).
            self.asks.remove(&(conn, job_id));
        }
        let assignment = matches!(message, Message::AssignRange { .. });
        self.peer.handle_message(self.now, conn, message);
        self.drain_and_check(assignment.then_some(answered));
    }

    /// Drains the peer's actions and checks them. `after_assignment`: the actions follow an
    /// `AssignRange`, `Some(job)` when it answered one of the peer's asks.
    fn drain_and_check(&mut self, after_assignment: Option<Option<u64>>) {
        let mut helping_fetches = 0;
        while let Some(action) = self.peer.poll_action() {
            match action {
                PeerAction::Send { conn, message } => {
                    assert!(self.conns.contains(&conn), "send on closed {conn}");
                    assert_sendable(&message);
                    if let Message::TakeWork { job_id } = message
                        && Some(job_id) != self.own_job
                    {
                        *self.asks.entry((conn, job_id)).or_default() += 1;
                    }
                }
                PeerAction::Close { conn } => {
                    assert!(self.conns.contains(&conn), "close of closed {conn}");
                    self.closed(conn);
                }
                PeerAction::FetchRange {
                    token,
                    length,
                    helping,
                    ..
                } => {
                    if helping {
                        helping_fetches += 1;
                        self.helping_fetches_started += 1;
                    }
                    self.fetches.push((token, length, helping));
                }
                PeerAction::WriteRange { token, .. } => self.writes.push(token),
                PeerAction::CancelFetch { token } => assert!(
                    self.fetches.iter().any(|f| f.0 == token),
                    "cancel of fetch {token}, not running"
                ),
                _ => {}
            }
        }
        match after_assignment {
            Some(Some(_)) => assert!(
                helping_fetches <= 1,
                "one assignment, {helping_fetches} fetches"
            ),
            _ => assert_eq!(helping_fetches, 0, "a helping fetch nobody asked for"),
        }
        let in_flight = self.fetches.iter().filter(|f| f.2).count();
        assert!(
            in_flight <= helper_fetches_max(self.origin_connections),
            "{in_flight} helping fetches in flight"
        );
        for (&(conn, job_id), &n) in &self.asks {
            // Each slot keeps the next range asked for while one arrives.
            assert!(
                n <= ranges_in_flight_max(self.origin_connections),
                "{n} asks outstanding on {conn} for job {job_id}"
            );
        }
    }

    fn closed(&mut self, conn: ConnId) {
        self.conns.retain(|c| *c != conn);
        self.asks.retain(|(c, _), _| *c != conn);
    }

    /// Runs one op; `false` when the input is used up.
    pub fn step(&mut self, u: &mut Unstructured<'_>) -> Result<bool> {
        if u.is_empty() {
            return Ok(false);
        }
        match byte(u) % OPS {
            ACCEPT => {
                let peer = PeerId(1 + u64::from(byte(u)) % 4);
                if let Some((conn, actions)) =
                    accept_with(&mut self.peer, self.now, hello(peer, "r:1", "s"))
                {
                    self.conns.push(conn);
                    for action in actions {
                        if let PeerAction::Close { conn } = action {
                            self.closed(conn);
                        }
                    }
                    self.drain_and_check(None);
                }
            }
            CLOSE => {
                if let Some(conn) = self.pick(byte(u)) {
                    self.closed(conn);
                    self.peer.handle_closed(self.now, conn);
                    self.drain_and_check(None);
                }
            }
            MESSAGE => {
                let sel = byte(u);
                let message = self.message(u)?;
                if let Some(conn) = self.pick(sel) {
                    self.deliver(conn, message);
                }
            }
            FLOOD => {
                let sel = byte(u);
                let n = byte(u) % FLOOD_MAX;
                let job_id = self.job_id(u)?;
                for range_index in 0..u32::from(n) {
                    let Some(conn) = self.pick(sel) else { break };
                    let assign = Message::AssignRange {
                        job_id,
                        range_index,
                        offset: u64::from(range_index) * u64::from(RANGE_LEN),
                        length: RANGE_LEN,
                    };
                    self.deliver(conn, assign);
                }
            }
            FETCHED => {
                let k = byte(u) as usize;
                let mode = byte(u) % 5;
                if !self.fetches.is_empty() {
                    let (token, length, _) = self.fetches.remove(k % self.fetches.len());
                    let error = |fatal, refused| RangeError {
                        fatal,
                        refused,
                        reason: "origin".into(),
                    };
                    let result = match mode {
                        0 | 1 => Ok(Bytes::from(vec![1; length as usize])),
                        2 => Ok(Bytes::from(vec![1; (length / 2) as usize])),
                        3 => Err(error(u.arbitrary()?, false)),
                        _ => Err(error(false, true)),
                    };
                    self.peer.handle_range_fetched(self.now, token, result);
                    self.drain_and_check(None);
                }
            }
            WRITTEN => {
                let k = byte(u) as usize;
                let ok = !byte(u).is_multiple_of(4);
                if !self.writes.is_empty() {
                    let token = self.writes.remove(k % self.writes.len());
                    let result = if ok { Ok(()) } else { Err("disk".into()) };
                    self.peer.handle_range_written(self.now, token, result);
                    self.drain_and_check(None);
                }
            }
            _ => {
                self.now = self.now + Duration::from_millis(u64::from(be16(u)) * 10);
                self.peer.handle_timeout(self.now);
                self.drain_and_check(None);
            }
        }
        Ok(true)
    }
}

/// Runs a whole input.
pub fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let mut h = CoopHarness::new(byte(&mut u));
    for _ in 0..STEPS_MAX {
        if !h.step(&mut u)? {
            break;
        }
    }
    Ok(())
}

/// Seed inputs (`examples/gen_corpus.rs`): `(name, bytes)`. The byte values follow how
/// `arbitrary` reads small ranges (one byte, modulo the range's size).
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    // MESSAGE on connection 0: job 0 (two draws), range 0 (a ratio, then the index), the
    // offset of the range (a ratio), RANGE_LEN (a draw), then the kind: an offer of
    // "http://origin/f" (a ratio) of SIZE_SMALL bytes (a ratio).
    let offer = [MESSAGE, 0, 0, 0, 1, 0, 1, 2, 0, 0, 0];
    let accept = [ACCEPT, 0];
    let mut flood = vec![0u8]; // one slot, no fetch of its own
    flood.extend_from_slice(&accept);
    flood.extend_from_slice(&offer);
    flood.extend_from_slice(&[FLOOD, 0, 40, 0, 0]);
    flood.extend_from_slice(&[FETCHED, 0, 0]);
    let mut helping = vec![1u8 | 0x80]; // two slots, and a fetch of its own
    helping.extend_from_slice(&accept);
    helping.extend_from_slice(&[ACCEPT, 1]);
    helping.extend_from_slice(&offer);
    for _ in 0..4 {
        helping.extend_from_slice(&[FLOOD, 0, 1, 0, 0]);
        helping.extend_from_slice(&[FETCHED, 0, 0, WRITTEN, 0, 1]);
    }
    helping.extend_from_slice(&[FETCHED, 0, 4]); // refused by the policy
    helping.extend_from_slice(&[ADVANCE, 0x10, 0]);
    vec![("flood".into(), flood), ("helping".into(), helping)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_reach_a_helping_fetch_and_a_refused_flood() {
        for (name, seed) in seeds() {
            let mut u = Unstructured::new(&seed);
            let mut h = CoopHarness::new(byte(&mut u));
            while h.step(&mut u).unwrap() {}
            assert!(h.helping_fetches_started >= 1, "{name}: no helping fetch");
            if name == "flood" {
                assert_eq!(h.helping_fetches_started, 1, "{name}");
                assert!(
                    h.conns.is_empty(),
                    "{name}: the flooding connection stayed open"
                );
            }
        }
    }
}
