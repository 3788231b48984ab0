//! The world: nodes running the real core machines, driven by the event queue over the
//! network, storage and fault models. One `World` is one run of one seed.
//!
//! The driver contract is str0m's: after every input to a machine, drain `poll_action`
//! completely, carry out each action (which only ever schedules future events, so a machine
//! is never re-entered), then re-arm its timer from `poll_timeout`.
//!
//! This file holds the world's state, its construction and the event loop, which hands each
//! event to the part that owns it:
//! - `node.rs`: a node, its machine and its life; `driver.rs`: driving the machines
//!   (inputs, actions, notices, start and crash); `disk.rs`: the disk actions and events.
//! - `network.rs` (the model) over `connection.rs` (its data); `sockets.rs`: what the
//!   network's events and the machines' connect/send/close do to each other.
//! - `faults.rs`: the fault plan carried out, and the heal.
//! - `origin.rs`: the HTTP origin of a cooperative download (`coverage.rs`: its books);
//!   `coop.rs`: the fetcher's job driven as `p2p fetch` drives it, and its checkers.
//! - `safety.rs`, `liveness.rs`, `recovery.rs`: the checkers, each a value fed observations.
//! - `event.rs`: every event, and the counters for the report.

mod connection;
mod coop;
mod coverage;
mod disk;
mod driver;
mod event;
mod faults;
mod intruders;
mod liveness;
mod network;
mod node;
mod origin;
mod recovery;
mod safety;
mod secure;
mod sockets;
mod trust;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use p2p_core::ids::PeerId;
use p2p_core::peer::{PeerAction, PeerConfig};
use p2p_core::secure::{Keyring, SwarmSecret};
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use crate::event_queue::{EventQueue, NANOS_PER_MS, NANOS_PER_S, Nanos};
use crate::faults as fault_plan;
use crate::scenario::SimConfig;
use crate::storage::{Disk, SourceFile};
use crate::trace::{Digest, DigestTag};
use crate::violations::{FailureKind, Violations};

use coop::{CoopRun, FETCHER_NODE, new_coop_run};
use event::{Event, WAKE, WAKE_STALE};
use liveness::Liveness;
use network::Network;
use recovery::Recovery;
use safety::Safety;
use secure::Handshakes;
use trust::Trust;

pub use coop::CoopSummary;
pub use event::Stats;
pub use node::{Life, Role, TRACKER_NODE, install_panic_hook, sim_peer_config};
pub(crate) use node::{Node, SEEDER_NODE};
pub use origin::OriginStats;

/// How often the periodic checkers look at every node.
const CHECK_INTERVAL: Nanos = NANOS_PER_S;
/// Timer wakes at one instant for one node beyond this are a livelock.
const SAME_INSTANT_WAKES_MAX: u32 = 10_000;
/// A run that processes this many events is stuck, whatever its virtual time.
pub const EVENTS_MAX: u64 = 400_000_000;

pub struct World {
    pub(crate) config: SimConfig,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) queue: EventQueue<Event>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) network: Network,
    pub(crate) source: SourceFile,
    pub(crate) peer_owner: BTreeMap<PeerId, usize>,
    pub(crate) digest: Digest,
    pub(crate) tracing: bool,
    /// Tracing prints only events at or after this instant.
    pub(crate) trace_from: Nanos,
    /// The run is declared not converging past this many events (`EVENTS_MAX` unless a
    /// developer lowers it to look at a livelock early).
    pub(crate) events_max: u64,
    pub(crate) violations: Violations,
    pub(crate) safety: Safety,
    pub(crate) liveness: Liveness,
    pub(crate) recovery: Recovery,
    pub(crate) trust: Trust,
    /// The swarm's secret: every member holds it, and the tracker serves its swarm.
    pub(crate) swarm_secret: SwarmSecret,
    pub(crate) handshakes: Handshakes,
    /// Connection ids for the intruders' dials (they have no machine to hand them out).
    pub(crate) next_intruder_conn: u64,
    pub(crate) stats: Stats,
    pub(crate) heal_at: Nanos,
    pub(crate) healed: bool,
    pub(crate) deadline: Nanos,
    pub(crate) stopped: bool,
    pub(crate) peer_config_template: PeerConfig,
    pub(crate) tracker_peer_timeout: Duration,
    /// When set (bench), peers stop nothing early and checkers skip the periodic sweep.
    pub(crate) periodic_checks: bool,
    /// The origin and the fetcher's job of a coop run.
    pub(crate) coop: Option<CoopRun>,
    /// Buffers reused on every event instead of allocated: message encoding (for sizes),
    /// a machine's actions.
    frame_scratch: BytesMut,
    actions_scratch: Vec<PeerAction>,
}

impl World {
    /// Builds the world for `config`; `rng` is the run's one RNG (already used to draw the
    /// config, if it was drawn).
    pub fn new(config: SimConfig, mut rng: ChaCha8Rng) -> World {
        let data_seed = rng.next_u64();
        let table = config
            .collection
            .as_ref()
            .map(|c| c.table(config.chunk_size_bytes));
        let source = match &table {
            None => SourceFile::generate(
                "sim-file.bin",
                config.file_size_bytes,
                config.chunk_size_bytes,
                data_seed,
            ),
            Some(table) => SourceFile::generate_collection(
                "sim-tree",
                table,
                config.chunk_size_bytes,
                data_seed,
            ),
        };
        // One swarm per run, its secret made from the seed as the runtime makes it from
        // the OS.
        let mut secret_bytes = [0u8; 32];
        rng.fill_bytes(&mut secret_bytes);
        let swarm_secret = SwarmSecret::from_bytes(secret_bytes);
        let node_count = config.peer_count as usize + 2;
        let mut nodes = Vec::with_capacity(node_count);
        let mut network = Network::new(config.jitter_ms_max);
        for index in 0..node_count {
            let helpers = config.coop.as_ref().map(|c| c.helper_count as usize);
            let role = match (index, helpers) {
                (TRACKER_NODE, _) => Role::Tracker,
                (FETCHER_NODE, Some(_)) => Role::Fetcher,
                (_, Some(helpers)) if index < FETCHER_NODE + 1 + helpers => Role::Helper,
                (SEEDER_NODE, None) => Role::Seeder,
                _ => Role::Leecher,
            };
            let mut node = new_node(index, role, &config, &source, &mut network, &mut rng);
            node.secret = swarm_secret.clone();
            node.keyring = Keyring::of(swarm_secret.clone());
            nodes.push(node);
        }
        let outsiders = config.faults.outsider_count as usize;
        let impostors = config.faults.impostor_count as usize;
        for k in 0..outsiders + impostors {
            let index = nodes.len();
            let role = if k < outsiders {
                Role::Outsider
            } else {
                Role::Impostor
            };
            let mut node = new_node(index, role, &config, &source, &mut network, &mut rng);
            node.secret = if role == Role::Outsider {
                // Another swarm's secret: the outsider's handshakes name a swarm nobody
                // here serves.
                let mut bytes = [0u8; 32];
                rng.fill_bytes(&mut bytes);
                SwarmSecret::from_bytes(bytes)
            } else {
                swarm_secret.clone()
            };
            nodes.push(node);
        }
        // A collection's downloading peers: some want only part of the tree. Drawn after
        // every node, and only in a collection run, so other runs draw as before.
        if let (Some(knobs), Some(table)) = (&config.collection, &table) {
            for node in nodes.iter_mut().filter(|n| n.role == Role::Leecher) {
                node.wanted = knobs.draw_part(
                    table,
                    config.chunk_size_bytes,
                    source.chunk_count(),
                    &mut rng,
                );
            }
        }
        let peer_config_template = sim_peer_config();
        let coop = new_coop_run(&config, &source);
        let mut world = World {
            queue: EventQueue::default(),
            nodes,
            network,
            source,
            peer_owner: BTreeMap::new(),
            digest: Digest::default(),
            tracing: false,
            trace_from: 0,
            events_max: EVENTS_MAX,
            violations: Violations::default(),
            safety: Safety::new(&peer_config_template),
            liveness: Liveness::new(config.liveness_bound_ms),
            recovery: Recovery::new(config.recovery_bound_ms),
            trust: Trust::new(swarm_secret.clone()),
            swarm_secret,
            handshakes: Handshakes::default(),
            next_intruder_conn: 1,
            stats: Stats::default(),
            heal_at: config.fault_phase(),
            healed: false,
            deadline: u64::MAX,
            stopped: false,
            peer_config_template,
            tracker_peer_timeout: Duration::from_secs(5),
            periodic_checks: true,
            coop,
            frame_scratch: BytesMut::new(),
            actions_scratch: Vec::new(),
            config,
            rng,
        };
        world.schedule_plan(node_count);
        world
    }

    /// The first events: arrivals, the fault plan, the heal and the periodic check.
    fn schedule_plan(&mut self, node_count: usize) {
        // The tracker and the seeder are there from the start; peers arrive.
        self.queue.schedule(0, Event::Join { node: TRACKER_NODE });
        let window = self.config.arrival_window_ms * NANOS_PER_MS;
        // A fetcher runs once its helpers are up (they are daemons, started before).
        let node1_at = if self.coop.is_some() { window } else { 0 };
        self.queue
            .schedule(node1_at, Event::Join { node: SEEDER_NODE });
        // Intruders knock from the start (see `intruders.rs`).
        for node in node_count..self.nodes.len() {
            self.queue.schedule(0, Event::Join { node });
        }
        for node in 2..node_count {
            if self.coop.is_some() && self.nodes[node].role == Role::Leecher {
                // A getter comes once the fetch is done (see `coop.rs`).
                continue;
            }
            let at = if window == 0 {
                0
            } else {
                self.rng.random_range(0..window)
            };
            self.queue.schedule(at, Event::Join { node });
        }
        let plan = fault_plan::plan(
            &self.config.faults,
            &mut self.rng,
            node_count,
            self.config.fault_phase(),
        );
        for (at, fault) in plan {
            if self.coop.is_some() && fault_hits(&fault, FETCHER_NODE) {
                // The fetcher cannot resume a job yet: it stays up.
                continue;
            }
            self.queue.schedule(at, Event::Fault(fault));
        }
        if let Some(at_ms) = self
            .config
            .coop
            .as_ref()
            .and_then(|c| c.validator_change_at_ms)
        {
            self.queue
                .schedule(at_ms * NANOS_PER_MS, Event::ValidatorChange);
        }
        self.queue.schedule(self.heal_at, Event::Heal);
        self.queue.schedule(CHECK_INTERVAL, Event::CheckTick);
    }

    pub fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
    }

    /// Tracing (if on) starts at `at`: the events before it are not printed.
    pub fn set_trace_from(&mut self, at: Nanos) {
        self.trace_from = at;
    }

    /// Lowers (or raises) the event count past which the run is declared not converging.
    pub fn set_events_max(&mut self, events_max: u64) {
        self.events_max = events_max;
    }

    pub fn now(&self) -> Nanos {
        self.queue.now()
    }

    fn trace(&self, line: impl FnOnce() -> String) {
        if self.tracing && self.now() >= self.trace_from {
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
            if self.stats.events > self.events_max {
                let events_max = self.events_max;
                self.violations.push(
                    FailureKind::Liveness,
                    at,
                    format!("more than {events_max} events: the run is not converging"),
                );
                break;
            }
            // Untagged: the one record that is not an action, first of every event.
            self.digest.mix(&[at, seq]);
            self.handle_event(event);
        }
        self.finish_checks();
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Wake { node, incarnation } => self.on_wake(node, incarnation),
            Event::LinkDone {
                node,
                side,
                generation,
            } => self.on_link_done(node, side, generation),
            Event::Arrive {
                conn,
                dir,
                size,
                packet,
            } => self
                .network
                .arrive((conn, dir), size, packet, &mut self.queue),
            Event::Syn { conn } => self.on_syn(conn),
            Event::SynAck { conn } => self.on_syn_ack(conn),
            Event::HandshakeTimeout { conn } => self.on_handshake_timeout(conn),
            Event::IntruderDial { node } => self.on_intruder_dial(node),
            Event::ConnectFailed { conn } => self.on_connect_failed(conn),
            Event::Broken {
                node,
                incarnation,
                local,
            } => self.on_broken(node, incarnation, local),
            Event::DiskRead(op) => self.on_disk_read(*op),
            Event::DiskStore(op) => self.on_disk_store(*op),
            Event::Prepared(op) => self.on_prepared(*op),
            Event::Join { node } => self.on_join(node),
            Event::Fault(fault) => self.on_fault(fault),
            Event::Depart { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation {
                    self.crash(node);
                    self.nodes[node].life = Life::Departed;
                }
            }
            Event::Heal => self.heal(),
            Event::CheckTick => self.on_check_tick(),
            Event::OriginRequest(request) => self.on_origin_request(*request),
            Event::OriginLinks { generation } => self.on_origin_links(generation),
            Event::RangeWritten {
                node,
                incarnation,
                token,
            } => self.on_range_written(node, incarnation, token),
            Event::FetchAgain { node } => self.start_fetch(node),
            Event::ValidatorChange => self.change_validator(),
            Event::RecoveryCheck {
                tracker_incarnation,
                restarted_at,
            } => {
                let now = self.now();
                let current = self.nodes[TRACKER_NODE].incarnation == tracker_incarnation;
                self.recovery.check(
                    &mut self.violations,
                    now,
                    (restarted_at, current),
                    &self.nodes,
                    &self.network,
                );
                self.check_done();
            }
        }
    }

    fn on_wake(&mut self, node: usize, incarnation: u32) {
        let now = self.now();
        if self.nodes[node].incarnation != incarnation || self.nodes[node].wake_at != Some(now) {
            self.stats.recount(WAKE, WAKE_STALE);
            return;
        }
        self.digest.mix_tagged(DigestTag::Wake, &[node as u64]);
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

    fn on_join(&mut self, node: usize) {
        if self.nodes[node].life != Life::NotJoined {
            return;
        }
        self.digest.mix_tagged(DigestTag::Join, &[node as u64]);
        self.nodes[node].joined_at = Some(self.now());
        self.start(node);
    }

    fn on_check_tick(&mut self) {
        let now = self.now();
        if self.periodic_checks {
            self.check_snapshot();
        }
        self.check_done();
        self.queue.schedule(now + CHECK_INTERVAL, Event::CheckTick);
    }

    /// Safety, every second (and at the end): see [`Safety::snapshot`].
    fn check_snapshot(&mut self) {
        let now = self.now();
        let content_id = self.source.content_id;
        self.safety
            .snapshot(&mut self.violations, now, &self.nodes, content_id);
    }

    /// Liveness, at the end: every peer with a live honest source for each chunk finished.
    fn finish_checks(&mut self) {
        if self.violations.has(FailureKind::Crash) {
            return;
        }
        self.check_snapshot();
        let now = self.now();
        self.liveness.finish(
            &mut self.violations,
            now,
            self.healed,
            &self.nodes,
            &self.source,
        );
        if let Some(coop) = &self.coop {
            let size = self.source.data.len() as u64;
            coop.finish(&mut self.violations, now, self.healed, size);
        }
    }

    /// Stops the run once the heal is past, every recovery check ran and every peer that
    /// must finish did.
    fn check_done(&mut self) {
        if !self.healed || !self.recovery.all_checked() {
            return;
        }
        if self.coop.as_ref().is_some_and(|c| !c.is_settled()) {
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

/// Node `index` as the run starts: its role, address, distance, capacities and disk, drawn
/// from `rng` in a fixed order; its network interface is added to `network`.
fn new_node(
    index: usize,
    role: Role,
    config: &SimConfig,
    source: &SourceFile,
    network: &mut Network,
    rng: &mut ChaCha8Rng,
) -> Node {
    let addr = match role {
        Role::Tracker => "tracker:7000".to_string(),
        _ => format!("node{index}:7000"),
    };
    let latency_ms = rng.random_range(
        config.node_latency_ms_min..=config.node_latency_ms_max.max(config.node_latency_ms_min),
    );
    // Halves: a link's delay is the sum of its two ends.
    let latency_half = latency_ms * NANOS_PER_MS / 2;
    let slow = matches!(role, Role::Leecher | Role::Helper)
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
    network.add_node(&addr, latency_half, upload, download);
    let disk = if role == Role::Seeder {
        Disk::with_full(source)
    } else {
        Disk::default()
    };
    let has_manifest =
        role == Role::Seeder || rng.random_bool(config.manifest_known_probability.clamp(0.0, 1.0));
    Node {
        role,
        addr,
        life: Life::NotJoined,
        machine: None,
        incarnation: 0,
        slow,
        corrupt,
        disk,
        has_manifest,
        wanted: None,
        wake_at: None,
        same_instant_wakes: 0,
        peer_id: PeerId(0),
        key: None,
        secret: SwarmSecret::from_bytes([0; 32]),
        keyring: Keyring::new(),
        joined_at: None,
        disrupted_at: 0,
        completed_at: None,
        failed: None,
    }
}

/// Whether `fault` crashes, restarts or removes `node`.
fn fault_hits(fault: &fault_plan::Fault, node: usize) -> bool {
    use fault_plan::Fault;
    matches!(fault,
        Fault::PeerCrash { node: n } | Fault::PeerRestart { node: n } | Fault::PeerLeave { node: n, .. }
        if *n == node)
}
