//! A node of the world: its role, where it is in its life, the core machine it runs (if it
//! is up), its disk, and what the checkers and the report need to know about it. Also the
//! machine configuration the simulator uses and the panic hook that turns a machine panic
//! into a finding.

use std::time::Duration;

use p2p_core::ChunkSet;
use p2p_core::ids::{ConnId, PeerId};
use p2p_core::peer::{Peer, PeerAction, PeerConfig};
use p2p_core::secure::{Keyring, Remote, StaticKey, SwarmSecret};
use p2p_core::time::Instant;
use p2p_core::tracker::{Tracker, TrackerAction};
use p2p_core::wire::Message;

use crate::event_queue::Nanos;
use crate::storage::Disk;

/// Node 0 is the tracker, node 1 the seeder, then the downloading peers, then the
/// intruders (see `intruders.rs`).
pub const TRACKER_NODE: usize = 0;
pub const SEEDER_NODE: usize = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Tracker,
    Seeder,
    Leecher,
    /// Runs a cooperative origin download (`Scenario::Coop`, in the seeder's place).
    Fetcher,
    /// Takes ranges of others' cooperative downloads, and wants nothing itself.
    Helper,
    /// Holds another swarm's secret; no machine, driven by the world.
    Outsider,
    /// Holds the secret and its own key, and claims another peer's id; no machine.
    Impostor,
}

impl Role {
    pub fn is_intruder(self) -> bool {
        matches!(self, Role::Outsider | Role::Impostor)
    }
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
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Machine::Tracker(t) => t.poll_timeout(),
            Machine::Peer(p) => p.poll_timeout(),
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        match self {
            Machine::Tracker(t) => t.handle_timeout(now),
            Machine::Peer(p) => p.handle_timeout(now),
        }
    }

    pub(crate) fn handle_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        match self {
            Machine::Tracker(t) => t.handle_message(now, conn, message),
            Machine::Peer(p) => p.handle_message(now, conn, message),
        }
    }

    pub(crate) fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        match self {
            Machine::Tracker(t) => t.handle_closed(now, conn),
            Machine::Peer(p) => p.handle_closed(now, conn),
        }
    }

    /// A connection from `remote`, dialled from the node at `from`.
    pub(crate) fn accept(&mut self, now: Instant, remote: Remote, from: String) -> Option<ConnId> {
        match self {
            Machine::Tracker(t) => Some(t.accept(now, remote, from)),
            Machine::Peer(p) => p.accept(now, remote, from),
        }
    }

    /// The next action, with a tracker's actions put in the peer's terms.
    pub(crate) fn poll_action(&mut self) -> Option<PeerAction> {
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

pub(crate) struct Node {
    pub role: Role,
    pub addr: String,
    pub life: Life,
    pub machine: Option<Machine>,
    /// Bumped on every crash: events for an older incarnation are dropped.
    pub incarnation: u32,
    pub slow: bool,
    pub corrupt: bool,
    pub disk: Disk,
    /// Whether the node has the manifest (given at start or fetched before a crash).
    pub has_manifest: bool,
    /// The chunks a downloading peer asks for when it wants only part of a collection
    /// (`get --only`); `None`: all of them.
    pub wanted: Option<ChunkSet>,
    pub(crate) wake_at: Option<Nanos>,
    pub(crate) same_instant_wakes: u32,
    /// The id of the current process's key (`key`), which its machine speaks under.
    pub peer_id: PeerId,
    /// The current process's static key: a new one at every start.
    pub key: Option<StaticKey>,
    /// The swarm secret this node holds (a member's is the world's), and the secrets it
    /// accepts handshakes for.
    pub secret: SwarmSecret,
    pub keyring: Keyring,
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

    /// Whether this node's download asks for `chunk_index`.
    pub(crate) fn wants(&self, chunk_index: u32) -> bool {
        self.wanted.as_ref().is_none_or(|w| w.contains(chunk_index))
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

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
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
