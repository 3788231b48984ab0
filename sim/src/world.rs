//! The world: nodes running the real core machines, driven by the event queue over the
//! network, storage and fault models. One `World` is one run of one seed.
//!
//! The driver contract is str0m's: after every input to a machine, drain `poll_action`
//! completely, carry out each action (which only ever schedules future events, so a machine
//! is never re-entered), then re-arm its timer from `poll_timeout`.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use p2p_core::ids::{ConnId, ContentId, PeerId};
use p2p_core::manifest::ChunkCheck;
use p2p_core::peer::{Peer, PeerAction, PeerConfig, PeerNotice, StoreOutcome};
use p2p_core::time::Instant;
use p2p_core::tracker::{Tracker, TrackerAction, TrackerConfig};
use p2p_core::wire::Message;
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use crate::checkers::{FailureKind, Violations};
use crate::event_queue::{EventQueue, NANOS_PER_MS, NANOS_PER_S, Nanos};
use crate::faults::{self, Fault};
use crate::link::{FlowKey, Link};
use crate::network::{Conn, End, FIN_SIZE_BYTES, Packet};
use crate::scenario::SimConfig;
use crate::storage::{Disk, SourceFile, StoreVerdict, verify};
use crate::trace::{Digest, describe, message_name, wire_facts};

/// Node 0 is the tracker, node 1 the seeder, the rest downloading peers.
pub const TRACKER_NODE: usize = 0;
pub const SEEDER_NODE: usize = 1;
pub const SWARM: &str = "sim";
/// How often the periodic checkers look at every node.
const CHECK_INTERVAL: Nanos = NANOS_PER_S;
/// Timer wakes at one instant for one node beyond this are a livelock.
const SAME_INSTANT_WAKES_MAX: u32 = 10_000;
/// A run that processes this many events is stuck, whatever its virtual time.
const EVENTS_MAX: u64 = 400_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Tracker,
    Seeder,
    Leecher,
}

/// Where a node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    NotJoined,
    Up,
    /// Crashed; comes back from its disk.
    Down,
    /// Left for good.
    Departed,
}

pub(crate) enum Machine {
    Tracker(Box<Tracker>),
    Peer(Box<Peer>),
}

impl Machine {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Machine::Tracker(t) => t.poll_timeout(),
            Machine::Peer(p) => p.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Machine::Tracker(t) => t.handle_timeout(now),
            Machine::Peer(p) => p.handle_timeout(now),
        }
    }

    fn handle_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        match self {
            Machine::Tracker(t) => t.handle_message(now, conn, message),
            Machine::Peer(p) => p.handle_message(now, conn, message),
        }
    }

    fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        match self {
            Machine::Tracker(t) => t.handle_closed(now, conn),
            Machine::Peer(p) => p.handle_closed(now, conn),
        }
    }

    fn accept(&mut self, now: Instant) -> Option<ConnId> {
        match self {
            Machine::Tracker(t) => Some(t.accept(now)),
            Machine::Peer(p) => p.accept(now),
        }
    }

    /// The next action, with a tracker's actions put in the peer's terms.
    fn poll_action(&mut self) -> Option<PeerAction> {
        match self {
            Machine::Tracker(t) => t.poll_action().map(|a| match a {
                TrackerAction::Send { conn, message } => PeerAction::Send { conn, message },
                TrackerAction::Close { conn } => PeerAction::Close { conn },
            }),
            Machine::Peer(p) => p.poll_action(),
        }
    }

    pub(crate) fn peer(&self) -> Option<&Peer> {
        match self {
            Machine::Peer(p) => Some(p),
            Machine::Tracker(_) => None,
        }
    }

    pub(crate) fn tracker(&self) -> Option<&Tracker> {
        match self {
            Machine::Tracker(t) => Some(t),
            Machine::Peer(_) => None,
        }
    }
}

/// Which of a node's two links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkSide {
    Upload,
    Download,
}

pub(crate) struct Node {
    pub role: Role,
    pub addr: String,
    pub life: Life,
    pub machine: Option<Machine>,
    /// Bumped on every crash: events for an older incarnation are dropped.
    pub incarnation: u32,
    pub upload: Link<Packet>,
    pub download: Link<Packet>,
    /// (generation, time) of the live completion event of each link: the one event that
    /// counts, due at or before the link's next completion (see [`World::arm_link`]).
    link_timer: [(u64, Option<Nanos>); 2],
    /// Nodes reach each other only within one group; 0 is the main network.
    pub group: u32,
    pub latency_half: Nanos,
    pub latency_factor: u32,
    pub slow: bool,
    pub corrupt: bool,
    pub disk: Disk,
    /// Whether the node has the manifest (given at start or fetched before a crash).
    pub has_manifest: bool,
    /// Local connection id → (simulator connection, which end this node is).
    pub local_conns: BTreeMap<ConnId, (u64, usize)>,
    wake_at: Option<Nanos>,
    same_instant_wakes: u32,
    pub peer_id: PeerId,
    pub joined_at: Option<Nanos>,
    /// Last crash, restart or partition change touching this node.
    pub disrupted_at: Nanos,
    pub completed_at: Option<Nanos>,
    pub failed: Option<String>,
}

impl Node {
    pub(crate) fn peer(&self) -> Option<&Peer> {
        self.machine.as_ref().and_then(|m| m.peer())
    }
}

/// Boxed in [`Event`]: the bulky, rare events would otherwise size every event in the
/// heap, and the heap moves them on every push and pop.
pub(crate) struct ReadOp {
    node: usize,
    incarnation: u32,
    token: u64,
    content_id: ContentId,
    chunk_index: u32,
    offset: u32,
    length: u32,
}

/// Boxed in [`Event`], like [`ReadOp`].
pub(crate) struct StoreOp {
    node: usize,
    incarnation: u32,
    token: u64,
    content_id: ContentId,
    chunk_index: u32,
    check: ChunkCheck,
    data: Bytes,
}

/// Boxed in [`Event`], like [`ReadOp`].
pub(crate) struct PrepareOp {
    node: usize,
    incarnation: u32,
    content_id: ContentId,
    chunk_count: u32,
}

/// Everything that can happen.
pub(crate) enum Event {
    Wake {
        node: usize,
        incarnation: u32,
    },
    LinkDone {
        node: usize,
        side: LinkSide,
        generation: u64,
    },
    /// A packet reached the receiver's download link.
    Arrive {
        conn: u64,
        dir: usize,
        size: u64,
        packet: Packet,
    },
    Syn {
        conn: u64,
    },
    SynAck {
        conn: u64,
    },
    ConnectFailed {
        conn: u64,
    },
    /// The connection broke under `node` (its end already forgotten by the network).
    Broken {
        node: usize,
        incarnation: u32,
        local: ConnId,
    },
    DiskRead(Box<ReadOp>),
    DiskStore(Box<StoreOp>),
    Prepared(Box<PrepareOp>),
    Join {
        node: usize,
    },
    Fault(Fault),
    /// A departed node's machine is dropped (after its goodbyes went out).
    Depart {
        node: usize,
        incarnation: u32,
    },
    Heal,
    CheckTick,
    RecoveryCheck {
        tracker_incarnation: u32,
        restarted_at: Nanos,
    },
}

impl Event {
    /// Index into [`EVENT_KIND_NAMES`].
    fn kind(&self) -> usize {
        match self {
            Event::Wake { .. } => WAKE,
            Event::LinkDone { .. } => LINK_DONE,
            Event::Arrive { .. } => 5,
            Event::Syn { .. } => 6,
            Event::SynAck { .. } => 7,
            Event::ConnectFailed { .. } => 8,
            Event::Broken { .. } => 9,
            Event::DiskRead(_) => 10,
            Event::DiskStore(_) => 11,
            Event::Prepared(_) => 12,
            Event::Join { .. } => 13,
            Event::Fault(_) => 14,
            Event::Depart { .. } => 15,
            Event::Heal => 16,
            Event::CheckTick => 17,
            Event::RecoveryCheck { .. } => 18,
        }
    }
}

/// Names of the event kinds counted in [`Stats::events_by_kind`]; a `-stale` kind is an
/// event superseded before it came due (a timer re-armed, a link re-planned), dropped unseen.
pub const EVENT_KIND_NAMES: [&str; 19] = [
    "wake",
    "wake-stale",
    "link-done",
    "link-done-stale",
    "link-done-early",
    "arrive",
    "syn",
    "syn-ack",
    "connect-failed",
    "broken",
    "disk-read",
    "disk-store",
    "prepared",
    "join",
    "fault",
    "depart",
    "heal",
    "check-tick",
    "recovery-check",
];
const WAKE: usize = 0;
const WAKE_STALE: usize = 1;
const LINK_DONE: usize = 2;
const LINK_DONE_STALE: usize = 3;
/// A live link event that came due before anything finished (the completion moved later).
const LINK_DONE_EARLY: usize = 4;

/// Counters for the report.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub events: u64,
    /// Events popped, per kind (see [`EVENT_KIND_NAMES`]).
    pub events_by_kind: [u64; EVENT_KIND_NAMES.len()],
    /// Messages sent, per wire kind byte, with the message's name.
    pub messages_by_kind: BTreeMap<u8, (String, u64)>,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub pieces_sent: u64,
    pub pieces_corrupted: u64,
    pub peers_banned: u64,
    pub crashes: u64,
    pub tracker_restarts: u64,
    pub connections_opened: u64,
}

impl Stats {
    /// The event just counted as its live kind `live` turned out to be `actual` (stale, or
    /// early): count it there instead.
    fn recount(&mut self, live: usize, actual: usize) {
        self.events_by_kind[live] -= 1;
        self.events_by_kind[actual] += 1;
    }

    /// Events and messages per kind, one `name=count` list each, biggest first.
    pub fn kinds_summary(&self) -> String {
        let mut events: Vec<(&str, u64)> = EVENT_KIND_NAMES
            .iter()
            .copied()
            .zip(self.events_by_kind)
            .filter(|&(_, n)| n > 0)
            .collect();
        events.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        let mut messages: Vec<(&str, u64)> = self
            .messages_by_kind
            .values()
            .map(|(name, n)| (name.as_str(), *n))
            .collect();
        messages.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        let list = |items: Vec<(&str, u64)>| {
            items
                .iter()
                .map(|(name, n)| format!("{name}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "events by kind: {}\nmessages by kind: {}",
            list(events),
            list(messages)
        )
    }
}

pub struct World {
    pub(crate) config: SimConfig,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) queue: EventQueue<Event>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    pub(crate) source: SourceFile,
    addr_to_node: BTreeMap<String, usize>,
    pub(crate) peer_owner: BTreeMap<PeerId, usize>,
    pub(crate) digest: Digest,
    pub(crate) tracing: bool,
    pub(crate) violations: Violations,
    pub(crate) stats: Stats,
    pub(crate) heal_at: Nanos,
    pub(crate) healed: bool,
    pub(crate) deadline: Nanos,
    pub(crate) recovery_checks_pending: u32,
    pub(crate) tracker_ever_restarted: bool,
    pub(crate) stopped: bool,
    pub(crate) peer_config_template: PeerConfig,
    pub(crate) tracker_peer_timeout: Duration,
    /// When set (bench), peers stop nothing early and checkers skip the periodic sweep.
    pub(crate) periodic_checks: bool,
    /// Buffers reused on every event instead of allocated: message encoding (for sizes),
    /// a machine's actions, a link's finished packets.
    frame_scratch: BytesMut,
    actions_scratch: Vec<PeerAction>,
    finished_scratch: Vec<(FlowKey, u64, Packet)>,
}

impl World {
    /// Builds the world for `config`; `rng` is the run's one RNG (already used to draw the
    /// config, if it was drawn).
    pub fn new(config: SimConfig, mut rng: ChaCha8Rng) -> World {
        let source = SourceFile::generate(
            "sim-file.bin",
            config.file_size_bytes,
            config.chunk_size_bytes,
            rng.next_u64(),
        );
        let node_count = config.peer_count as usize + 2;
        let mut nodes = Vec::with_capacity(node_count);
        let mut addr_to_node = BTreeMap::new();
        for index in 0..node_count {
            let role = match index {
                TRACKER_NODE => Role::Tracker,
                SEEDER_NODE => Role::Seeder,
                _ => Role::Leecher,
            };
            let addr = match role {
                Role::Tracker => "tracker:7000".to_string(),
                _ => format!("node{index}:7000"),
            };
            addr_to_node.insert(addr.clone(), index);
            let latency_ms = rng.random_range(
                config.node_latency_ms_min
                    ..=config.node_latency_ms_max.max(config.node_latency_ms_min),
            );
            // Halves: a link's delay is the sum of its two ends.
            let latency_half = latency_ms * NANOS_PER_MS / 2;
            let slow = role == Role::Leecher
                && rng.random_bool(config.faults.slow_peer_fraction.clamp(0.0, 1.0));
            let corrupt = role == Role::Leecher
                && rng.random_bool(config.faults.corrupt_peer_fraction.clamp(0.0, 1.0));
            let factor = if slow {
                config.faults.slow_peer_capacity_factor.clamp(0.001, 1.0)
            } else {
                1.0
            };
            let upload = ((config.upload_bytes_per_s as f64 * factor) as u64).max(1);
            let download = ((config.download_bytes_per_s as f64 * factor) as u64).max(1);
            let disk = if role == Role::Seeder {
                Disk::with_full(&source)
            } else {
                Disk::default()
            };
            let has_manifest = role == Role::Seeder
                || rng.random_bool(config.manifest_known_probability.clamp(0.0, 1.0));
            nodes.push(Node {
                role,
                addr,
                life: Life::NotJoined,
                machine: None,
                incarnation: 0,
                upload: Link::new(upload),
                download: Link::new(download),
                link_timer: [(0, None), (0, None)],
                group: 0,
                latency_half,
                latency_factor: 1,
                slow,
                corrupt,
                disk,
                has_manifest,
                local_conns: BTreeMap::new(),
                wake_at: None,
                same_instant_wakes: 0,
                peer_id: PeerId(0),
                joined_at: None,
                disrupted_at: 0,
                completed_at: None,
                failed: None,
            });
        }
        let mut world = World {
            queue: EventQueue::default(),
            nodes,
            conns: BTreeMap::new(),
            next_conn: 1,
            source,
            addr_to_node,
            peer_owner: BTreeMap::new(),
            digest: Digest::default(),
            tracing: false,
            violations: Violations::default(),
            stats: Stats::default(),
            heal_at: config.fault_phase(),
            healed: false,
            deadline: u64::MAX,
            recovery_checks_pending: 0,
            tracker_ever_restarted: false,
            stopped: false,
            peer_config_template: sim_peer_config(),
            tracker_peer_timeout: Duration::from_secs(5),
            periodic_checks: true,
            frame_scratch: BytesMut::new(),
            actions_scratch: Vec::new(),
            finished_scratch: Vec::new(),
            config,
            rng,
        };
        // The tracker and the seeder are there from the start; peers arrive.
        world.queue.schedule(0, Event::Join { node: TRACKER_NODE });
        world.queue.schedule(0, Event::Join { node: SEEDER_NODE });
        let window = world.config.arrival_window_ms * NANOS_PER_MS;
        for node in 2..node_count {
            let at = if window == 0 {
                0
            } else {
                world.rng.random_range(0..window)
            };
            world.queue.schedule(at, Event::Join { node });
        }
        let plan = faults::plan(
            &world.config.faults,
            &mut world.rng,
            node_count,
            world.config.fault_phase(),
        );
        for (at, fault) in plan {
            world.queue.schedule(at, Event::Fault(fault));
        }
        world.queue.schedule(world.heal_at, Event::Heal);
        world.queue.schedule(CHECK_INTERVAL, Event::CheckTick);
        world
    }

    pub fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
    }

    pub fn now(&self) -> Nanos {
        self.queue.now()
    }

    fn trace(&self, line: impl FnOnce() -> String) {
        if self.tracing {
            println!(
                "{:>12.6} {}",
                self.now() as f64 / NANOS_PER_S as f64,
                line()
            );
        }
    }

    /// Runs until every required peer is done after the heal, or the liveness deadline, or
    /// a crash-class failure.
    pub fn run_to_end(&mut self) {
        while !self.stopped {
            let Some(at) = self.queue.peek_time() else {
                break;
            };
            if at > self.deadline {
                break;
            }
            let Some((at, seq, event)) = self.queue.pop() else {
                break;
            };
            self.stats.events += 1;
            self.stats.events_by_kind[event.kind()] += 1;
            if self.stats.events > EVENTS_MAX {
                self.violations.push(
                    FailureKind::Liveness,
                    at,
                    format!("more than {EVENTS_MAX} events: the run is not converging"),
                );
                break;
            }
            self.digest.mix(&[at, seq]);
            self.handle_event(event);
        }
        self.finish_checks();
    }

    fn handle_event(&mut self, event: Event) {
        let now = self.now();
        match event {
            Event::Wake { node, incarnation } => {
                if self.nodes[node].incarnation != incarnation
                    || self.nodes[node].wake_at != Some(now)
                {
                    self.stats.recount(WAKE, WAKE_STALE);
                    return;
                }
                self.digest.mix(&[1, node as u64]);
                self.nodes[node].wake_at = None;
                self.drive(node, |m, now| m.handle_timeout(now));
                let n = &mut self.nodes[node];
                if n.wake_at == Some(now) {
                    n.same_instant_wakes += 1;
                    if n.same_instant_wakes > SAME_INSTANT_WAKES_MAX {
                        let addr = n.addr.clone();
                        self.violations.push(
                            FailureKind::Crash,
                            now,
                            format!("{addr}: poll_timeout keeps returning the current instant after handle_timeout (timer livelock)"),
                        );
                        self.stopped = true;
                    }
                } else {
                    n.same_instant_wakes = 0;
                }
            }
            Event::LinkDone {
                node,
                side,
                generation,
            } => {
                let slot = side as usize;
                if self.nodes[node].link_timer[slot].0 != generation {
                    self.stats.recount(LINK_DONE, LINK_DONE_STALE);
                    return;
                }
                self.nodes[node].link_timer[slot].1 = None;
                let mut done = std::mem::take(&mut self.finished_scratch);
                match side {
                    LinkSide::Upload => self.nodes[node].upload.take_finished(now, &mut done),
                    LinkSide::Download => self.nodes[node].download.take_finished(now, &mut done),
                }
                if done.is_empty() {
                    self.stats.recount(LINK_DONE, LINK_DONE_EARLY);
                }
                for ((conn, dir), size, packet) in done.drain(..) {
                    match side {
                        LinkSide::Upload => self.uploaded(conn, dir as usize, size, packet),
                        LinkSide::Download => self.downloaded(conn, dir as usize, packet),
                    }
                }
                self.finished_scratch = done;
                self.arm_link(node, side);
            }
            Event::Arrive {
                conn,
                dir,
                size,
                packet,
            } => {
                let Some(c) = self.conns.get(&conn) else {
                    return;
                };
                let receiver = c.ends[1 - dir];
                if !receiver.open {
                    return;
                }
                self.nodes[receiver.node]
                    .download
                    .push(now, (conn, dir as u8), size, packet);
                self.arm_link(receiver.node, LinkSide::Download);
            }
            Event::Syn { conn } => self.on_syn(conn),
            Event::SynAck { conn } => {
                let Some(c) = self.conns.get(&conn) else {
                    return;
                };
                let end = c.ends[0];
                if !end.open {
                    return;
                }
                self.digest.mix(&[2, conn]);
                if let Some(local) = end.local {
                    self.trace(|| format!("node{} connected {local}", end.node));
                    self.drive(end.node, |m, now| {
                        if let Machine::Peer(p) = m {
                            p.handle_connected(now, local);
                        }
                    });
                }
            }
            Event::ConnectFailed { conn } => {
                let Some(c) = self.conns.remove(&conn) else {
                    return;
                };
                let end = c.ends[0];
                if !end.open {
                    return;
                }
                self.digest.mix(&[3, conn]);
                if let Some(local) = end.local {
                    self.nodes[end.node].local_conns.remove(&local);
                    self.trace(|| format!("node{} connect failed {local}", end.node));
                    self.drive(end.node, |m, now| m.handle_closed(now, local));
                }
            }
            Event::Broken {
                node,
                incarnation,
                local,
            } => {
                if self.nodes[node].incarnation != incarnation {
                    return;
                }
                self.digest.mix(&[4, node as u64, local.0]);
                self.trace(|| format!("node{node} broken {local}"));
                self.drive(node, |m, now| m.handle_closed(now, local));
            }
            Event::DiskRead(op) => {
                let ReadOp {
                    node,
                    incarnation,
                    token,
                    content_id,
                    chunk_index,
                    offset,
                    length,
                } = *op;
                if self.nodes[node].incarnation != incarnation {
                    return;
                }
                let result = if content_id != self.source.content_id
                    || !self.nodes[node].disk.has(content_id, chunk_index)
                {
                    Err(format!("chunk {chunk_index} is not on disk"))
                } else {
                    self.source
                        .block(chunk_index, offset, length)
                        .ok_or_else(|| {
                            format!("bytes {offset}+{length} are outside chunk {chunk_index}")
                        })
                };
                self.digest
                    .mix(&[5, node as u64, token, result.is_ok() as u64]);
                self.drive(node, |m, now| {
                    if let Machine::Peer(p) = m {
                        p.handle_read(now, token, result);
                    }
                });
            }
            Event::DiskStore(op) => {
                let StoreOp {
                    node,
                    incarnation,
                    token,
                    content_id,
                    chunk_index,
                    check,
                    data,
                } = *op;
                if self.nodes[node].incarnation != incarnation {
                    // The write was lost in the crash, as it would be without a sync.
                    return;
                }
                let outcome = if content_id != self.source.content_id {
                    StoreOutcome::Io("no such file".into())
                } else {
                    match verify(&self.source, chunk_index, &check, &data) {
                        StoreVerdict::Written { identical } => {
                            let n = self.source.chunk_count();
                            self.nodes[node]
                                .disk
                                .write(content_id, n, chunk_index, identical);
                            if !identical {
                                let addr = self.nodes[node].addr.clone();
                                self.violations.push(
                                    FailureKind::Safety,
                                    now,
                                    format!("{addr} stored chunk {chunk_index} whose bytes differ from the source (the check it gave was not the manifest's)"),
                                );
                            }
                            StoreOutcome::Stored
                        }
                        StoreVerdict::Mismatch => StoreOutcome::HashMismatch,
                    }
                };
                self.digest.mix(&[
                    6,
                    node as u64,
                    token,
                    chunk_index as u64,
                    (outcome == StoreOutcome::Stored) as u64,
                ]);
                self.trace(|| format!("node{node} stored chunk {chunk_index}: {outcome:?}"));
                self.drive(node, |m, now| {
                    if let Machine::Peer(p) = m {
                        p.handle_stored(now, token, outcome);
                    }
                });
            }
            Event::Prepared(op) => {
                let PrepareOp {
                    node,
                    incarnation,
                    content_id,
                    chunk_count,
                } = *op;
                if self.nodes[node].incarnation != incarnation {
                    return;
                }
                let result = if content_id == self.source.content_id
                    && chunk_count == self.source.chunk_count()
                {
                    self.nodes[node].has_manifest = true;
                    Ok(self.nodes[node].disk.prepare(content_id, chunk_count))
                } else {
                    Err("the manifest does not describe the file being shared".to_string())
                };
                self.digest.mix(&[7, node as u64]);
                self.drive(node, |m, now| {
                    if let Machine::Peer(p) = m {
                        p.download_prepared(now, content_id, result);
                    }
                });
            }
            Event::Join { node } => {
                if self.nodes[node].life != Life::NotJoined {
                    return;
                }
                self.digest.mix(&[8, node as u64]);
                self.nodes[node].joined_at = Some(now);
                self.start(node);
            }
            Event::Fault(fault) => self.on_fault(fault),
            Event::Depart { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation {
                    self.crash(node);
                    self.nodes[node].life = Life::Departed;
                }
            }
            Event::Heal => self.heal(),
            Event::CheckTick => {
                if self.periodic_checks {
                    self.check_snapshot();
                }
                self.check_done();
                self.queue.schedule(now + CHECK_INTERVAL, Event::CheckTick);
            }
            Event::RecoveryCheck {
                tracker_incarnation,
                restarted_at,
            } => {
                self.recovery_checks_pending = self.recovery_checks_pending.saturating_sub(1);
                if self.nodes[TRACKER_NODE].incarnation == tracker_incarnation {
                    self.check_recovery(restarted_at);
                }
                self.check_done();
            }
        }
    }

    // ------------------------------------------------------------------ machines

    /// Gives `node`'s machine one input, then carries out everything it asks for.
    pub(crate) fn drive(&mut self, node: usize, input: impl FnOnce(&mut Machine, Instant)) {
        let now = self.now();
        let Some(machine) = self.nodes[node].machine.as_mut() else {
            return;
        };
        let at = Instant::from_nanos(now);
        let mut actions = std::mem::take(&mut self.actions_scratch);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            input(machine, at);
            while let Some(action) = machine.poll_action() {
                actions.push(action);
            }
            (actions, machine.poll_timeout())
        }));
        let (mut actions, timeout) = match result {
            Ok(r) => r,
            Err(panic) => {
                let message = panic_message(&panic);
                let addr = self.nodes[node].addr.clone();
                self.violations.push(
                    FailureKind::Crash,
                    now,
                    format!("{addr}: the core machine panicked: {message}"),
                );
                self.stopped = true;
                return;
            }
        };
        for action in actions.drain(..) {
            self.perform(node, action);
        }
        self.actions_scratch = actions;
        let wake = timeout.map(|t| t.as_nanos().max(now));
        let n = &mut self.nodes[node];
        if wake != n.wake_at {
            n.wake_at = wake;
            if let Some(at) = wake {
                let incarnation = n.incarnation;
                self.queue.schedule(at, Event::Wake { node, incarnation });
            }
        }
    }

    fn perform(&mut self, node: usize, action: PeerAction) {
        let now = self.now();
        match action {
            PeerAction::Connect { conn, addr } => self.connect(node, conn, &addr),
            PeerAction::Send { conn, message } => self.send(node, conn, message),
            PeerAction::Close { conn } => self.close(node, conn),
            PeerAction::ReadChunk {
                token,
                content_id,
                chunk_index,
                offset,
                length,
            } => {
                if !self.nodes[node].disk.has(content_id, chunk_index) {
                    let addr = self.nodes[node].addr.clone();
                    self.violations.push(
                        FailureKind::Safety,
                        now,
                        format!("{addr} read chunk {chunk_index} to serve it, but that chunk was never verified and stored"),
                    );
                }
                let incarnation = self.nodes[node].incarnation;
                self.digest.mix(&[20, node as u64, token]);
                self.queue.schedule(
                    now + self.config.disk_latency_us * 1_000,
                    Event::DiskRead(Box::new(ReadOp {
                        node,
                        incarnation,
                        token,
                        content_id,
                        chunk_index,
                        offset,
                        length,
                    })),
                );
            }
            PeerAction::StoreChunk {
                token,
                content_id,
                chunk_index,
                check,
                data,
            } => {
                let incarnation = self.nodes[node].incarnation;
                self.digest
                    .mix(&[21, node as u64, token, chunk_index as u64]);
                self.queue.schedule(
                    now + self.config.disk_latency_us * 1_000,
                    Event::DiskStore(Box::new(StoreOp {
                        node,
                        incarnation,
                        token,
                        content_id,
                        chunk_index,
                        check,
                        data,
                    })),
                );
            }
            PeerAction::PrepareDownload {
                content_id,
                manifest,
            } => {
                let incarnation = self.nodes[node].incarnation;
                self.digest.mix(&[22, node as u64]);
                self.queue.schedule(
                    now + self.config.disk_latency_us * 1_000,
                    Event::Prepared(Box::new(PrepareOp {
                        node,
                        incarnation,
                        content_id,
                        chunk_count: manifest.chunk_count(),
                    })),
                );
            }
            PeerAction::Notify(notice) => self.on_notice(node, notice),
            // No run starts a cooperative origin download (there is no origin server in the
            // simulated network), so these never come; if one does, it is dropped.
            PeerAction::FetchRange { token, .. } | PeerAction::WriteRange { token, .. } => {
                self.digest.mix(&[23, node as u64, token]);
            }
        }
    }

    fn on_notice(&mut self, node: usize, notice: PeerNotice) {
        let now = self.now();
        self.trace(|| format!("node{node} notice {notice:?}"));
        match notice {
            PeerNotice::DownloadComplete { content_id } => {
                self.digest.mix(&[30, node as u64]);
                self.check_completed(node, content_id);
                let n = &mut self.nodes[node];
                if n.completed_at.is_none() && n.role == Role::Leecher {
                    n.completed_at = Some(now);
                }
                n.failed = None;
                self.check_done();
            }
            PeerNotice::DownloadFailed {
                reason,
                missing_chunks,
                ..
            } => {
                self.digest.mix(&[31, node as u64]);
                self.nodes[node].failed = Some(format!(
                    "{reason} (missing chunks: {})",
                    missing_chunks.len()
                ));
            }
            PeerNotice::PeerBanned { peer_id, .. } => {
                self.digest.mix(&[32, node as u64, peer_id.0]);
                self.stats.peers_banned += 1;
                self.check_ban(node, peer_id);
            }
            PeerNotice::TrackerConnected { .. } => self.digest.mix(&[33, node as u64]),
            PeerNotice::TrackerLost { .. } => self.digest.mix(&[34, node as u64]),
            PeerNotice::Progress { chunks_have, .. } => {
                self.digest.mix(&[35, node as u64, u64::from(chunks_have)])
            }
            PeerNotice::RangeFetched { .. }
            | PeerNotice::FetchProgress { .. }
            | PeerNotice::FetchComplete { .. }
            | PeerNotice::FetchFailed { .. } => self.digest.mix(&[36, node as u64]),
        }
    }

    /// Starts (or restarts, from its disk) the machine of `node`.
    fn start(&mut self, node: usize) {
        let now = self.now();
        let at = Instant::from_nanos(now);
        let rng_seed = self.rng.next_u64();
        self.nodes[node].life = Life::Up;
        self.nodes[node].disrupted_at = now;
        self.nodes[node].wake_at = None;
        self.nodes[node].same_instant_wakes = 0;
        let tracker_addr = self.nodes[TRACKER_NODE].addr.clone();
        if self.nodes[node].role == Role::Tracker {
            let config = TrackerConfig {
                peer_timeout: self.tracker_peer_timeout,
                rng_seed,
                ..TrackerConfig::default()
            };
            self.nodes[node].machine = Some(Machine::Tracker(Box::new(Tracker::new(config))));
            self.drive(node, |_, _| {});
            return;
        }
        // A new process draws a new identity.
        let peer_id = PeerId(self.rng.next_u64() | 1);
        self.nodes[node].peer_id = peer_id;
        self.peer_owner.insert(peer_id, node);
        let config = PeerConfig {
            peer_id,
            swarm: SWARM.into(),
            listen_addr: self.nodes[node].addr.clone(),
            trackers: vec![tracker_addr],
            rng_seed,
            ..self.peer_config_template.clone()
        };
        self.nodes[node].machine = Some(Machine::Peer(Box::new(Peer::new(config, at))));
        let content_id = self.source.content_id;
        let full = self.nodes[node].disk.is_complete(content_id);
        let manifest = self.source.manifest.clone();
        if full {
            // A node with the whole file on disk shares it, as `p2p share` would.
            self.drive(node, |m, now| {
                if let Machine::Peer(p) = m {
                    p.publish(now, manifest);
                }
            });
        } else {
            let known = self.nodes[node].has_manifest.then_some(manifest);
            self.drive(node, |m, now| {
                if let Machine::Peer(p) = m {
                    p.download(now, content_id, known);
                }
            });
        }
    }

    /// The node's process dies: memory and connections gone, disk kept.
    fn crash(&mut self, node: usize) {
        let now = self.now();
        let n = &mut self.nodes[node];
        n.machine = None;
        n.incarnation += 1;
        n.life = Life::Down;
        n.wake_at = None;
        n.disrupted_at = now;
        let conns: Vec<u64> = n.local_conns.values().map(|&(c, _)| c).collect();
        for conn in conns {
            self.break_conn(conn, true);
        }
        let n = &mut self.nodes[node];
        n.local_conns.clear();
        n.upload.clear(now);
        n.download.clear(now);
        self.arm_link(node, LinkSide::Upload);
        self.arm_link(node, LinkSide::Download);
    }

    // ------------------------------------------------------------------ network

    fn latency(&mut self, a: usize, b: usize) -> Nanos {
        let (na, nb) = (&self.nodes[a], &self.nodes[b]);
        let factor = u64::from(na.latency_factor.max(nb.latency_factor));
        let base = (na.latency_half + nb.latency_half) * factor;
        let jitter_max = self.config.jitter_ms_max * NANOS_PER_MS;
        let jitter = if jitter_max == 0 {
            0
        } else {
            self.rng.random_range(0..=jitter_max)
        };
        base + jitter
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        self.nodes[a].group == self.nodes[b].group
    }

    fn connect(&mut self, node: usize, local: ConnId, addr: &str) {
        let now = self.now();
        let id = self.next_conn;
        self.next_conn += 1;
        self.stats.connections_opened += 1;
        let incarnation = self.nodes[node].incarnation;
        let target = self.addr_to_node.get(addr).copied();
        let conn = Conn::new(
            End {
                node,
                incarnation,
                local: Some(local),
                open: true,
            },
            target.unwrap_or(node),
        );
        self.conns.insert(id, conn);
        self.nodes[node].local_conns.insert(local, (id, 0));
        self.digest.mix(&[
            40,
            node as u64,
            local.0,
            target.map_or(u64::MAX, |t| t as u64),
        ]);
        self.trace(|| format!("node{node} connect {local} to {addr}"));
        match target {
            Some(target) if target != node => {
                let delay = self.latency(node, target);
                self.queue.schedule(now + delay, Event::Syn { conn: id });
            }
            _ => self
                .queue
                .schedule(now + NANOS_PER_MS, Event::ConnectFailed { conn: id }),
        }
    }

    fn on_syn(&mut self, id: u64) {
        let now = self.now();
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let (from, to) = (conn.ends[0], conn.ends[1].node);
        if !from.open {
            self.conns.remove(&id);
            return;
        }
        let up = self.nodes[to].life == Life::Up && self.nodes[to].machine.is_some();
        let back = self.latency(to, from.node);
        if !up || !self.reachable(from.node, to) {
            // Refused (down) or lost (partitioned): either way the dialler hears of it.
            self.queue
                .schedule(now + back, Event::ConnectFailed { conn: id });
            return;
        }
        let mut accepted = None;
        self.drive(to, |m, now| accepted = m.accept(now));
        self.digest.mix(&[41, id, accepted.map_or(0, |c| c.0)]);
        let Some(local) = accepted else {
            self.queue
                .schedule(now + back, Event::ConnectFailed { conn: id });
            return;
        };
        let incarnation = self.nodes[to].incarnation;
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.ends[1] = End {
                node: to,
                incarnation,
                local: Some(local),
                open: true,
            };
        }
        self.nodes[to].local_conns.insert(local, (id, 1));
        self.queue.schedule(now + back, Event::SynAck { conn: id });
    }

    fn send(&mut self, node: usize, local: ConnId, mut message: Message) {
        let now = self.now();
        let Some(&(id, end)) = self.nodes[node].local_conns.get(&local) else {
            // The connection is already gone: the bytes go nowhere, as on a dead socket.
            return;
        };
        self.check_sent(node, &message);
        if let Message::Piece { data, .. } = &mut message {
            self.stats.pieces_sent += 1;
            if self.nodes[node].corrupt
                && !data.is_empty()
                && self
                    .rng
                    .random_bool(self.config.faults.corrupt_piece_probability.clamp(0.0, 1.0))
            {
                let mut bytes = data.to_vec();
                let at = self.rng.random_range(0..bytes.len());
                bytes[at] ^= 1 << self.rng.random_range(0..8);
                *data = Bytes::from(bytes);
                self.stats.pieces_corrupted += 1;
            }
        }
        if self.config.codec_roundtrip {
            let frame = message.to_frame();
            let mut decoder = p2p_core::wire::FrameDecoder::new();
            decoder.feed(&frame);
            match decoder.next_message() {
                Ok(Some(decoded)) if decoded == message => message = decoded,
                other => {
                    self.violations.push(
                        FailureKind::Crash,
                        now,
                        format!("codec round trip changed {}: {other:?}", describe(&message)),
                    );
                    self.stopped = true;
                }
            }
        }
        let (kind, size) = wire_facts(&message, &mut self.frame_scratch);
        self.stats.messages_sent += 1;
        self.stats
            .messages_by_kind
            .entry(kind)
            .or_insert_with(|| (message_name(&message), 0))
            .1 += 1;
        self.stats.bytes_sent += size;
        self.digest
            .mix(&[42, node as u64, local.0, u64::from(kind), size]);
        self.trace(|| format!("node{node} send {local} {}", describe(&message)));
        let is_piece = matches!(message, Message::Piece { .. });
        if is_piece && let Some(conn) = self.conns.get_mut(&id) {
            conn.pieces_queued[end] += 1;
            let queued = conn.pieces_queued[end];
            self.check_pieces_queued(node, queued);
        }
        self.nodes[node].upload.push(
            now,
            (id, end as u8),
            size,
            Packet::Message(Box::new(message)),
        );
        self.arm_link(node, LinkSide::Upload);
    }

    fn close(&mut self, node: usize, local: ConnId) {
        let now = self.now();
        let Some((id, end)) = self.nodes[node].local_conns.remove(&local) else {
            return;
        };
        self.digest.mix(&[43, node as u64, local.0]);
        self.trace(|| format!("node{node} close {local}"));
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.ends[end].open = false;
        let other = conn.ends[1 - end];
        // Whatever the other side still sends us is discarded (our socket is gone).
        let incoming = (id, (1 - end) as u8);
        if other.open {
            self.nodes[other.node].upload.remove_flow(now, incoming);
            self.arm_link(other.node, LinkSide::Upload);
        }
        self.nodes[node].download.remove_flow(now, incoming);
        self.arm_link(node, LinkSide::Download);
        if other.open {
            // What we queued still goes out, then the FIN.
            self.nodes[node]
                .upload
                .push(now, (id, end as u8), FIN_SIZE_BYTES, Packet::Fin);
            self.arm_link(node, LinkSide::Upload);
        } else if other.local.is_none() || !other.open {
            self.conns.remove(&id);
        }
    }

    /// The connection dies under both ends (crash or partition); every open end on a live
    /// machine hears `handle_closed` (after one link delay when `crash`, at once otherwise).
    fn break_conn(&mut self, id: u64, crash: bool) {
        let now = self.now();
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        for dir in 0..2 {
            let flow = (id, dir as u8);
            let sender = conn.ends[dir].node;
            let receiver = conn.ends[1 - dir].node;
            self.nodes[sender].upload.remove_flow(now, flow);
            self.nodes[receiver].download.remove_flow(now, flow);
            self.arm_link(sender, LinkSide::Upload);
            self.arm_link(receiver, LinkSide::Download);
        }
        for e in 0..2 {
            let end = conn.ends[e];
            let Some(local) = end.local else {
                continue;
            };
            if !end.open || self.nodes[end.node].incarnation != end.incarnation {
                continue;
            }
            self.nodes[end.node].local_conns.remove(&local);
            if self.nodes[end.node].machine.is_none() {
                continue;
            }
            let delay = if crash {
                self.latency(end.node, conn.ends[1 - e].node)
            } else {
                0
            };
            self.queue.schedule(
                now + delay,
                Event::Broken {
                    node: end.node,
                    incarnation: end.incarnation,
                    local,
                },
            );
        }
    }

    /// Makes sure an event is due no later than the next completion of one link, after it
    /// changed.
    ///
    /// At most one event per link is live. When the completion moves earlier (a short message
    /// on an idle flow, a flow removed) a new event is scheduled and the old one, now of an
    /// older generation, is dropped when it comes due. When it moves later (more flows share
    /// the link) the pending event is kept: it fires early, finds nothing finished, and
    /// re-arms from there. Either way every packet is handed on at exactly the instant the
    /// processor-sharing model says, and a link that changes many times between two
    /// completions (every new flow delays the head) costs one extra event, not one per change.
    fn arm_link(&mut self, node: usize, side: LinkSide) {
        let next = match side {
            LinkSide::Upload => self.nodes[node].upload.next_completion(),
            LinkSide::Download => self.nodes[node].download.next_completion(),
        };
        let Some(next) = next else {
            // Nothing queued: a pending event finds nothing when it fires; leave it.
            return;
        };
        let slot = side as usize;
        let timer = &mut self.nodes[node].link_timer[slot];
        if timer.1.is_some_and(|pending| pending <= next) {
            return;
        }
        timer.0 += 1;
        timer.1 = Some(next);
        let generation = timer.0;
        self.queue.schedule(
            next,
            Event::LinkDone {
                node,
                side,
                generation,
            },
        );
    }

    /// A packet left the sender's upload link: it travels, then queues at the receiver.
    fn uploaded(&mut self, id: u64, dir: usize, size: u64, packet: Packet) {
        let now = self.now();
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let sender = conn.ends[dir];
        let receiver = conn.ends[1 - dir];
        if let Packet::Message(message) = &packet
            && let Message::Piece { .. } = **message
        {
            if let Some(c) = self.conns.get_mut(&id) {
                c.pieces_queued[dir] = c.pieces_queued[dir].saturating_sub(1);
            }
            if sender.open
                && let Some(local) = sender.local
            {
                self.drive(sender.node, |m, now| {
                    if let Machine::Peer(p) = m {
                        p.handle_sent(now, local);
                    }
                });
            }
        }
        let delay = self.latency(sender.node, receiver.node);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        // Jitter never reorders one connection: TCP delivers in order.
        let arrive = (now + delay).max(conn.last_arrival[dir]);
        conn.last_arrival[dir] = arrive;
        self.queue.schedule(
            arrive,
            Event::Arrive {
                conn: id,
                dir,
                size,
                packet,
            },
        );
    }

    /// A packet left the receiver's download link: the machine gets it.
    fn downloaded(&mut self, id: u64, dir: usize, packet: Packet) {
        let now = self.now();
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let receiver = conn.ends[1 - dir];
        let Some(local) = receiver.local else {
            return;
        };
        if !receiver.open {
            return;
        }
        match packet {
            Packet::Message(message) => {
                self.digest.mix(&[50, receiver.node as u64, local.0]);
                self.trace(|| format!("node{} recv {local} {}", receiver.node, describe(&message)));
                self.drive(receiver.node, |m, now| {
                    m.handle_message(now, local, *message)
                });
            }
            Packet::Fin => {
                conn.ends[1 - dir].open = false;
                let both_closed = !conn.ends[dir].open;
                if both_closed {
                    self.conns.remove(&id);
                }
                // Our queued bytes to a closed peer are dropped (it answers with RST).
                let outgoing = (id, (1 - dir) as u8);
                self.nodes[receiver.node].upload.remove_flow(now, outgoing);
                self.arm_link(receiver.node, LinkSide::Upload);
                self.nodes[receiver.node].local_conns.remove(&local);
                self.digest.mix(&[51, receiver.node as u64, local.0]);
                self.trace(|| format!("node{} closed by remote {local}", receiver.node));
                self.drive(receiver.node, |m, now| m.handle_closed(now, local));
            }
        }
    }

    // ------------------------------------------------------------------ faults

    fn on_fault(&mut self, fault: Fault) {
        let now = self.now();
        if self.healed {
            // The fault phase is over (a swizzle may have been planned to run past it).
            return;
        }
        self.trace(|| format!("fault {fault:?}"));
        match fault {
            Fault::PeerCrash { node } => {
                if self.nodes[node].life == Life::Up {
                    self.digest.mix(&[60, node as u64]);
                    self.stats.crashes += 1;
                    self.crash(node);
                }
            }
            Fault::PeerRestart { node } => {
                if self.nodes[node].life == Life::Down {
                    self.digest.mix(&[61, node as u64]);
                    self.start(node);
                }
            }
            Fault::PeerLeave { node, graceful } => {
                if self.nodes[node].life == Life::Departed {
                    return;
                }
                self.digest.mix(&[62, node as u64, graceful as u64]);
                if graceful && self.nodes[node].life == Life::Up {
                    self.drive(node, |m, now| {
                        if let Machine::Peer(p) = m {
                            p.shutdown(now);
                        }
                    });
                    // The machine stays until its goodbyes are out, then goes.
                    let incarnation = self.nodes[node].incarnation;
                    self.queue
                        .schedule(now + NANOS_PER_S, Event::Depart { node, incarnation });
                    self.nodes[node].life = Life::Departed;
                } else {
                    if self.nodes[node].life == Life::Up {
                        self.crash(node);
                    }
                    self.nodes[node].life = Life::Departed;
                }
            }
            Fault::TrackerDown => {
                if self.nodes[TRACKER_NODE].life == Life::Up {
                    self.digest.mix(&[63]);
                    self.crash(TRACKER_NODE);
                }
            }
            Fault::TrackerUp => self.restart_tracker(),
            Fault::Partition { nodes } => {
                let group = self.rng.next_u32() | 1;
                self.set_groups(&nodes, group);
            }
            Fault::PartitionHeal { nodes } => self.set_groups(&nodes, 0),
            Fault::Isolate { node } => {
                let group = self.rng.next_u32() | 1;
                self.set_groups(&[node], group);
            }
            Fault::Rejoin { node } => self.set_groups(&[node], 0),
            Fault::LatencySpike { node, factor } => self.nodes[node].latency_factor = factor,
            Fault::LatencySpikeEnd { node } => self.nodes[node].latency_factor = 1,
        }
    }

    fn restart_tracker(&mut self) {
        let now = self.now();
        if self.nodes[TRACKER_NODE].life != Life::Down {
            return;
        }
        self.digest.mix(&[64]);
        self.stats.tracker_restarts += 1;
        self.tracker_ever_restarted = true;
        self.start(TRACKER_NODE);
        self.recovery_checks_pending += 1;
        let tracker_incarnation = self.nodes[TRACKER_NODE].incarnation;
        self.queue.schedule(
            now + self.config.recovery_bound_ms * NANOS_PER_MS,
            Event::RecoveryCheck {
                tracker_incarnation,
                restarted_at: now,
            },
        );
    }

    /// Moves nodes to a partition group and breaks every connection that now crosses one.
    fn set_groups(&mut self, nodes: &[usize], group: u32) {
        let now = self.now();
        self.digest.mix(&[65, group as u64, nodes.len() as u64]);
        for &node in nodes {
            if self.nodes[node].group != group {
                self.nodes[node].group = group;
                self.nodes[node].disrupted_at = now;
            }
        }
        let crossing: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.ends[1].local.is_some() && !self.reachable(c.ends[0].node, c.ends[1].node)
            })
            .map(|(&id, _)| id)
            .collect();
        for id in crossing {
            self.break_conn(id, false);
        }
    }

    /// The fault phase is over: everything comes back and stays up.
    fn heal(&mut self) {
        let now = self.now();
        self.digest.mix(&[66]);
        self.trace(|| "heal: every partition, crash and spike ends".into());
        self.healed = true;
        self.heal_at = now;
        self.deadline = now + self.config.liveness_bound_ms * NANOS_PER_MS;
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.set_groups(&all, 0);
        for node in 0..self.nodes.len() {
            self.nodes[node].latency_factor = 1;
        }
        if self.nodes[TRACKER_NODE].life == Life::Down {
            self.restart_tracker();
        }
        for node in 1..self.nodes.len() {
            if self.nodes[node].life == Life::Down {
                self.start(node);
            }
        }
        if self.tracker_ever_restarted {
            // Once healed, every live peer must be known again, whatever happened before.
            self.recovery_checks_pending += 1;
            let tracker_incarnation = self.nodes[TRACKER_NODE].incarnation;
            self.queue.schedule(
                now + self.config.recovery_bound_ms * NANOS_PER_MS,
                Event::RecoveryCheck {
                    tracker_incarnation,
                    restarted_at: now,
                },
            );
        }
        self.check_done();
    }

    /// Stops the run once the heal is past, every recovery check ran and every peer that
    /// must finish did.
    fn check_done(&mut self) {
        if !self.healed || self.recovery_checks_pending > 0 {
            return;
        }
        let all_done = self
            .nodes
            .iter()
            .filter(|n| n.role == Role::Leecher && n.life != Life::Departed)
            .all(|n| n.completed_at.is_some());
        if all_done {
            self.stopped = true;
        }
    }
}

/// Timers suited to the simulator: short, so faults heal within seconds of virtual time.
pub fn sim_peer_config() -> PeerConfig {
    PeerConfig {
        heartbeat_interval: Duration::from_secs(1),
        tracker_backoff_min: Duration::from_millis(100),
        tracker_backoff_max: Duration::from_secs(2),
        ping_interval: Duration::from_secs(2),
        connection_idle_timeout: Duration::from_secs(20),
        handshake_timeout: Duration::from_secs(5),
        locate_interval: Duration::from_secs(2),
        // Long enough that a download never gives up during a run: liveness is judged by
        // the checker, not by the machine's patience.
        stall_timeout: Duration::from_secs(24 * 3600),
        ..PeerConfig::default()
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = LAST_PANIC.with(|p| p.borrow_mut().take()) {
        return text;
    }
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-text panic)".to_string()
    }
}

thread_local! {
    /// The text of the last panic on this thread, location included (set by the hook).
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Replaces the panic hook with one that records the panic (message and location) for the
/// report instead of printing it: a core panic is a finding, reported with its seed.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let text = info.to_string();
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_stay_small() {
        // Every heap push and pop moves events: keep bulky payloads boxed.
        assert!(
            std::mem::size_of::<Event>() <= 40,
            "{}",
            std::mem::size_of::<Event>()
        );
    }
}
