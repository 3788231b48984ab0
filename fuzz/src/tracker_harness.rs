//! Operation sequences for the tracker machine.
//!
//! Input format: a sequence of ops, each one byte (`op % OPS`) followed by its operands:
//! - `ACCEPT`: a connection is accepted;
//! - `CLOSE sel`: the remote closes connection `sel` (an index into every connection ever
//!   accepted, so closed ones are picked too);
//! - `ADVANCE ms:u16`: time moves on; the timer fires if due;
//! - `FRAME sel len:u16 body`: a frame body (kind and payload) arrives on `sel`, if it
//!   decodes;
//! - `MESSAGE sel …`: a structured message from a small world of peers, swarms and files;
//! - `TIMEOUT`: the driver calls `handle_timeout` now, due or not.
//!
//! After every op the actions are drained and checked: every `Send` and `Close` names a
//! connection that is open (accepted, not closed by either side), every sent message is a
//! frame the receiver accepts, `conn_count` matches, and `check_invariants` holds.

use std::collections::BTreeSet;
use std::time::Duration;

use arbitrary::{Result, Unstructured};
use p2p_core::manifest::CHUNK_SIZE_MIN;
use p2p_core::secure::Remote;
use p2p_core::tracker::{Tracker, TrackerAction, TrackerConfig};
use p2p_core::wire::PROTOCOL_VERSION;
use p2p_core::{ChunkSet, ConnId, ContentId, Instant, Manifest, Message, PeerId};

use crate::{assert_sendable, be16, blob, byte, generate, through_wire};

pub const ACCEPT: u8 = 0;
pub const CLOSE: u8 = 1;
pub const ADVANCE: u8 = 2;
pub const FRAME: u8 = 3;
pub const MESSAGE: u8 = 4;
pub const TIMEOUT: u8 = 5;
const OPS: u8 = 6;

/// Most ops run per input.
const STEPS_MAX: usize = 256;

pub const SWARMS: [&str; 2] = ["default", "other"];
pub const ADDRS: [&str; 3] = ["", "10.0.0.1:7000", "10.0.0.2:7000"];

/// A few fixed manifests: empty, one chunk, three chunks, nine chunks.
pub fn manifests() -> Vec<Manifest> {
    [(0u32, "empty"), (1, "one"), (3, "three"), (9, "nine")]
        .into_iter()
        .map(|(count, name)| Manifest {
            name: name.into(),
            size: if count == 0 {
                0
            } else {
                u64::from(count) * u64::from(CHUNK_SIZE_MIN) - 7
            },
            chunk_size: CHUNK_SIZE_MIN,
            chunk_hashes: (0..count).map(|i| [i as u8 + 1; 32]).collect(),
            file_table: None,
        })
        .collect()
}

/// Builds messages a tracker sees from peers of a small world, valid or slightly off.
fn tracker_message(u: &mut Unstructured<'_>, pool: &[Manifest]) -> Result<Message> {
    let pick_manifest = |u: &mut Unstructured<'_>| -> Result<Manifest> {
        if u.ratio(1, 8)? {
            generate::manifest(u)
        } else {
            Ok(pool[u.choose_index(pool.len())?].clone())
        }
    };
    let pick_cid = |u: &mut Unstructured<'_>| -> Result<ContentId> {
        if u.ratio(1, 8)? {
            generate::content_id(u)
        } else {
            Ok(pool[u.choose_index(pool.len())?].content_id())
        }
    };
    Ok(match u.int_in_range(0..=12)? {
        0 | 1 => Message::Hello {
            version: if u.ratio(1, 10)? {
                u.arbitrary()?
            } else {
                PROTOCOL_VERSION
            },
            peer_id: PeerId(u.int_in_range(1..=4)?),
            listen_addr: (*u.choose(&ADDRS)?).into(),
            swarm: (*u.choose(&SWARMS)?).into(),
        },
        2 | 3 => {
            let manifest = pick_manifest(u)?;
            let chunks = if u.ratio(1, 3)? {
                ChunkSet::full(manifest.chunk_count())
            } else {
                generate::chunkset_of_len(u, manifest.chunk_count())?
            };
            Message::Announce { manifest, chunks }
        }
        4 => {
            let content_id = pick_cid(u)?;
            let n = u.int_in_range(0..=6)?;
            let mut chunk_indices = Vec::new();
            for _ in 0..n {
                chunk_indices.push(if u.ratio(1, 6)? {
                    u.arbitrary()?
                } else {
                    u.int_in_range(0..=9)?
                });
            }
            Message::Have {
                content_id,
                chunk_indices,
            }
        }
        5 => Message::Withdraw {
            content_id: pick_cid(u)?,
        },
        6 => Message::Locate {
            content_id: pick_cid(u)?,
        },
        7 => Message::GetManifest {
            content_id: pick_cid(u)?,
        },
        8 => Message::ListFiles,
        9 => Message::ListPeers,
        10 => Message::Heartbeat {
            uploaded_bytes: u.arbitrary()?,
            downloaded_bytes: u.arbitrary()?,
        },
        11 => Message::Goodbye,
        _ => generate::message(u)?,
    })
}

pub struct TrackerHarness {
    pub tracker: Tracker,
    pub now: Instant,
    /// Every connection ever accepted, in order.
    pub conns: Vec<ConnId>,
    /// The ones still open.
    pub live: BTreeSet<ConnId>,
    pool: Vec<Manifest>,
}

/// The key and swarm a connection's handshake proved, so a `Hello` sometimes matches them
/// and sometimes claims another's.
fn remote(sel: u8) -> Remote {
    Remote {
        peer_id: PeerId(1 + u64::from(sel % 4)),
        swarm: SWARMS[usize::from(sel >> 7)].into(),
    }
}

impl Default for TrackerHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl TrackerHarness {
    pub fn new() -> TrackerHarness {
        TrackerHarness {
            tracker: Tracker::new(TrackerConfig::default()),
            now: Instant::from_nanos(1_000_000_000),
            conns: Vec::new(),
            live: BTreeSet::new(),
            pool: manifests(),
        }
    }

    /// A harness whose tracker already holds `n` sessions (not among the connections the
    /// ops pick from: they are the load beside them).
    pub fn crowded(n: usize) -> TrackerHarness {
        let mut h = TrackerHarness::new();
        for i in 0..n {
            let peer_id = PeerId(1000 + i as u64);
            let swarm = SWARMS[i % SWARMS.len()];
            let (a, b) = ((i / 250) as u8, (i % 250 + 1) as u8);
            let remote = Remote {
                peer_id,
                swarm: swarm.into(),
            };
            let conn = h
                .tracker
                .accept(h.now, remote, format!("10.1.{a}.{b}:50000"));
            h.live.insert(conn);
            let manifest = h.pool[i % h.pool.len()].clone();
            let mut chunks = ChunkSet::new(manifest.chunk_count());
            for chunk in (0..manifest.chunk_count()).filter(|c| (c + i as u32) % 3 != 0) {
                chunks.insert(chunk);
            }
            let hello = Message::Hello {
                version: PROTOCOL_VERSION,
                peer_id,
                listen_addr: format!("10.1.{a}.{b}:7000"),
                swarm: swarm.into(),
            };
            h.tracker.handle_message(h.now, conn, hello);
            h.tracker
                .handle_message(h.now, conn, Message::Announce { manifest, chunks });
            // Its replies, unchecked: the invariants are checked once, below (per session
            // they would cost the crowd squared on every input).
            while h.tracker.poll_action().is_some() {}
        }
        h.drain_and_check();
        assert_eq!(h.tracker.conn_count(), n, "the crowd was refused");
        h
    }

    fn pick(&self, sel: u8) -> Option<ConnId> {
        if self.conns.is_empty() {
            None
        } else {
            Some(self.conns[sel as usize % self.conns.len()])
        }
    }

    /// Runs one op; `false` when the input is used up.
    pub fn step(&mut self, u: &mut Unstructured<'_>) -> bool {
        if u.is_empty() {
            return false;
        }
        let now = self.now;
        match byte(u) % OPS {
            ACCEPT => {
                // From any of the addresses (or none) the driver could report.
                let from = (*u.choose(&ADDRS).unwrap_or(&"")).to_string();
                let conn = self.tracker.accept(now, remote(byte(u)), from);
                assert!(self.live.insert(conn), "accept reused open {conn}");
                assert!(!self.conns.contains(&conn), "accept reused {conn}");
                self.conns.push(conn);
            }
            CLOSE => {
                if let Some(conn) = self.pick(byte(u)) {
                    self.live.remove(&conn);
                    self.tracker.handle_closed(now, conn);
                }
            }
            ADVANCE => {
                let ms = be16(u);
                self.now = self.now + Duration::from_millis(u64::from(ms));
                if self.tracker.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.tracker.handle_timeout(self.now);
                }
            }
            FRAME => {
                let sel = byte(u);
                let body = blob(u);
                if let (Some(conn), Some(message)) = (self.pick(sel), crate::decode_body(body)) {
                    self.tracker.handle_message(now, conn, message);
                }
            }
            MESSAGE => {
                let sel = byte(u);
                let Ok(message) = tracker_message(u, &self.pool) else {
                    return false;
                };
                if let (Some(conn), Some(message)) = (self.pick(sel), through_wire(&message)) {
                    self.tracker.handle_message(now, conn, message);
                }
            }
            _ => self.tracker.handle_timeout(now),
        }
        self.drain_and_check();
        true
    }

    pub fn drain_and_check(&mut self) {
        while let Some(action) = self.tracker.poll_action() {
            match action {
                TrackerAction::Send { conn, message } => {
                    assert!(
                        self.live.contains(&conn),
                        "Send on closed {conn}: {message:?}"
                    );
                    assert_sendable(&message);
                }
                TrackerAction::Close { conn } => {
                    assert!(self.live.remove(&conn), "Close of closed {conn}");
                }
            }
        }
        assert_eq!(
            self.tracker.conn_count(),
            self.live.len(),
            "conn_count disagrees"
        );
        if let Err(e) = self.tracker.check_invariants() {
            panic!("tracker invariant broken: {e}");
        }
        if let Some(t) = self.tracker.poll_timeout() {
            // A deadline is never more than one peer timeout ahead.
            assert!(t <= self.now + self.tracker.config().peer_timeout);
        }
    }
}

/// Sessions of the crowd a [`run_crowded`] input starts beside.
pub const CROWD: usize = 1000;

/// Runs a whole input.
pub fn run(data: &[u8]) {
    run_with(data, TrackerHarness::new());
}

/// Runs a whole input beside [`CROWD`] sessions already open, each in one of the swarms
/// and holding one of the pool's contents (whole or in part): the ops' connections, lists,
/// locates and timeouts meet a tracker under many connections (issue 14).
pub fn run_crowded(data: &[u8]) {
    run_with(data, TrackerHarness::crowded(CROWD));
}

fn run_with(data: &[u8], mut h: TrackerHarness) {
    let mut u = Unstructured::new(data);
    for _ in 0..STEPS_MAX {
        if !h.step(&mut u) {
            break;
        }
    }
}

/// Encoders for seed inputs.
pub mod ops {
    use super::*;

    pub fn accept(out: &mut Vec<u8>) {
        out.push(ACCEPT);
    }
    pub fn close(out: &mut Vec<u8>, sel: u8) {
        out.extend_from_slice(&[CLOSE, sel]);
    }
    pub fn advance(out: &mut Vec<u8>, ms: u16) {
        out.push(ADVANCE);
        out.extend_from_slice(&ms.to_be_bytes());
    }
    pub fn frame(out: &mut Vec<u8>, sel: u8, message: &Message) {
        out.extend_from_slice(&[FRAME, sel]);
        crate::put_blob(out, &message.to_frame()[4..]);
    }
    pub fn timeout(out: &mut Vec<u8>) {
        out.push(TIMEOUT);
    }
}
