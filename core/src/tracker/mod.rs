//! The tracker state machine: which peers are live, in which swarm, holding which chunks of
//! which content.
//!
//! Sans-IO like quinn-proto: the driver accepts a connection and gets a [`ConnId`] from
//! [`Tracker::accept`], feeds decoded messages with [`Tracker::handle_message`], reports a
//! closed connection with [`Tracker::handle_closed`], wakes the machine at
//! [`Tracker::poll_timeout`] with [`Tracker::handle_timeout`], and after every input drains
//! [`Tracker::poll_action`] until it returns `None`.
//!
//! All state is soft: it is exactly what the live sessions announced. A tracker that restarts
//! empty is whole again once the peers reconnect and re-announce.
//!
//! Rules worth knowing on the other side of the wire:
//! - `Error` followed by `Close` is fatal; an `Error` alone (code
//!   [`error_code::LIMIT_EXCEEDED`]) refuses one request and the session goes on.
//! - A `Have` or `Withdraw` for content the peer has not announced on this session is
//!   ignored: a peer must `Announce` (again, after every reconnect) before its `Have`s count.
//! - An `Announce` with an empty chunk set withdraws the content.
//! - A session with an empty `listen_addr` (a CLI client) may announce, but it can serve
//!   nobody, so it is never a *source*: it is left out of `Located`, `PeerList` and the
//!   `FileEntry` counts, and does not make a file complete.
//! - `ListFiles` lists only files the live sources can supply whole; `Locate` and
//!   `GetManifest` still answer for a delisted file as long as some live peer holds a chunk.
//! - `Locate` for unknown content answers `Located` with no peers (not `NotFound`).
//! - A peer is listed at the IP its connection came from with the port its `Hello` claims
//!   (unless `trust_claimed_addresses`); a `listen_addr` without a port is refused.
//! - After the machine emits `Close` it has forgotten the connection: a later
//!   `handle_closed` or `handle_message` for it is ignored.
//!
//! This file is the facade: every input and output of [`Tracker`], its config and actions.
//! The steps behind the inputs that need several parts are in `steps`. Each part owns its
//! state in its own module: accepted connections and their deadlines (`conns`), live
//! sessions (`sessions`), the content registry per swarm with the manifest budget
//! (`registry`, each content a `file_record`), the answers to queries with `Locate`'s
//! sampling (`queries`, cut to a frame by `frame`), origins (`origins`); `invariants`
//! recounts everything for `check_invariants`.

mod conns;
mod file_record;
pub(crate) mod frame;
mod invariants;
mod origins;
mod queries;
mod registry;
mod sessions;
mod steps;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use self::conns::Connections;
use self::registry::Registry;
use self::sessions::Sessions;
#[cfg(test)]
use crate::chunkset::ChunkSet;
use crate::ids::{ConnId, ContentId, PeerId};
use crate::manifest::Manifest;
use crate::secure::Remote;
use crate::time::Instant;
use crate::wire::{FileEntry, Message, PeerEntry, error_code};

/// Default for [`TrackerConfig::peer_timeout`]: peers heartbeat well inside it.
pub(crate) const PEER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Default for [`TrackerConfig::locate_peers_max`]: enough peers to saturate a download,
/// few enough that a `Located` stays small.
pub(crate) const LOCATE_PEERS_MAX_DEFAULT: usize = 64;
/// Default for [`TrackerConfig::contents_per_peer_max`].
pub(crate) const CONTENTS_PER_PEER_MAX_DEFAULT: usize = 4096;
/// Default for [`TrackerConfig::manifest_bytes_max`]: 256 MiB of manifests and per-chunk
/// availability counters, across all swarms.
pub(crate) const MANIFEST_BYTES_MAX_DEFAULT: usize = 256 * 1024 * 1024;

/// Tuning and identity of a tracker.
#[derive(Clone, Debug)]
pub struct TrackerConfig {
    /// A connection that sends nothing (not even a `Heartbeat`) for this long is dropped,
    /// with every chunk its peer held. Also bounds how long a connection may wait before
    /// its `Hello`.
    pub peer_timeout: Duration,
    /// Most peers in one `Located`; clamped to the wire's `PEERS_LEN_MAX`.
    pub locate_peers_max: usize,
    /// Most contents one session may hold at once; a further `Announce` is refused
    /// (non-fatally), so one peer cannot make the tracker track unbounded state.
    pub contents_per_peer_max: usize,
    /// Budget, in bytes, for the manifests (and their availability counters) the tracker
    /// keeps: an `Announce` of new content past it is refused (non-fatally).
    pub manifest_bytes_max: usize,
    /// Seed of the RNG that samples peers for `Located`.
    pub rng_seed: u64,
    /// The tracker's own id, sent in `Welcome`.
    pub tracker_id: PeerId,
    /// List each peer at the address its `Hello` claims. Off (the default): at the IP its
    /// connection came from, with the port it claims, so that no member can point the
    /// others at a third party's address. On only where the operator knows better than
    /// the connection (peers reaching the tracker through a proxy or a NAT that others
    /// do not go through).
    pub trust_claimed_addresses: bool,
    /// List a peer that reaches the tracker over loopback (on the tracker's own host: the
    /// sharer beside its embedded tracker) at the address it claims: behind a NAT it knows
    /// the address it is reached at from outside (`share --advertise`), which neither the
    /// tracker nor the connection can see. Others are listed as without it.
    pub trust_loopback_claims: bool,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            peer_timeout: PEER_TIMEOUT_DEFAULT,
            locate_peers_max: LOCATE_PEERS_MAX_DEFAULT,
            contents_per_peer_max: CONTENTS_PER_PEER_MAX_DEFAULT,
            manifest_bytes_max: MANIFEST_BYTES_MAX_DEFAULT,
            rng_seed: 0,
            tracker_id: PeerId(0),
            trust_claimed_addresses: false,
            trust_loopback_claims: false,
        }
    }
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackerAction {
    Send {
        conn: ConnId,
        message: Message,
    },
    /// Close the connection (after sending what was queued before it). The machine has
    /// already forgotten it.
    Close {
        conn: ConnId,
    },
}

/// The tracker state machine.
pub struct Tracker {
    config: TrackerConfig,
    rng: ChaCha8Rng,
    conns: Connections,
    sessions: Sessions,
    registry: Registry,
    actions: VecDeque<TrackerAction>,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Tracker {
        Tracker {
            rng: ChaCha8Rng::seed_from_u64(config.rng_seed),
            config,
            conns: Connections::default(),
            sessions: Sessions::new(),
            registry: Registry::default(),
            actions: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// A connection was accepted and its secure handshake proved `remote` at the other end
    /// (a key of one of the swarms this tracker serves); the machine hands out its id. It
    /// must say `Hello` within `peer_timeout`. `from` is the address the connection came
    /// from, as the driver saw it (`IP:PORT`, IPv6 in brackets; an IPv4-mapped IPv6
    /// address given as the IPv4 one): the peer is listed at its IP (see
    /// [`TrackerConfig::trust_claimed_addresses`]).
    pub fn accept(&mut self, now: Instant, remote: Remote, from: String) -> ConnId {
        self.accept_at(now, remote, from, String::new())
    }

    /// [`Tracker::accept`], knowing also the local IP the connection arrived at
    /// (`reached_ip`, IPv6 in brackets, no port). A peer on the tracker's own host, listed
    /// at a loopback IP, is then given to this connection's peer at `reached_ip` instead,
    /// with its port: how a sharer beside its embedded tracker on a host with several
    /// addresses is found by every getter at the address that getter reached.
    pub fn accept_at(
        &mut self,
        now: Instant,
        remote: Remote,
        from: String,
        reached_ip: String,
    ) -> ConnId {
        self.conns
            .accept(now + self.config.peer_timeout, remote, from, reached_ip)
    }

    /// A decoded message arrived on `conn`.
    pub fn handle_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        let Some(peer) = self.conns.session_of(conn) else {
            return; // Already closed by us: late frames are dropped.
        };
        self.touch(now, conn, peer);
        match (peer, message) {
            (
                None,
                Message::Hello {
                    version,
                    peer_id,
                    listen_addr,
                    swarm,
                },
            ) => self.on_hello(now, conn, version, peer_id, listen_addr, swarm),
            (None, Message::Goodbye) => self.close(conn),
            (None, other) => self.fail(
                conn,
                error_code::HELLO_REQUIRED,
                format!("expected Hello first, got {}", other.kind()),
            ),
            (Some(peer), message) => self.on_session_message(now, conn, peer, message),
        }
    }

    /// The connection closed (either side, or a decode error the driver saw). Its session,
    /// if any, is dropped with every chunk it held.
    pub fn handle_closed(&mut self, _now: Instant, conn: ConnId) {
        self.forget_conn(conn);
    }

    /// Drops every connection whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(conn) = self.conns.expired(now) {
            self.fail(
                conn,
                error_code::TIMED_OUT,
                format!(
                    "nothing heard for {} ms",
                    self.config.peer_timeout.as_millis()
                ),
            );
        }
    }

    /// The earliest connection deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns.next_deadline()
    }

    /// The next thing the driver must do. Drain after every input.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<TrackerAction> {
        self.actions.pop_front()
    }

    // ---- inspection ----

    /// The files of `swarm` that `ListFiles` lists (the live sources can supply them
    /// whole), by content id. Not truncated to a frame.
    pub fn files(&self, swarm: &str) -> Vec<FileEntry> {
        self.registry.files(swarm)
    }

    #[cfg(test)]
    /// Every content of `swarm` some live peer holds a chunk of, delisted ones included.
    pub(crate) fn known_files(&self, swarm: &str) -> Vec<FileEntry> {
        self.registry.known_files(swarm)
    }

    /// The peers of `swarm` that `ListPeers` lists (those with a listen address), by peer id.
    /// Not truncated to a frame.
    pub fn peers(&self, now: Instant, swarm: &str) -> Vec<PeerEntry> {
        queries::peers(now, &self.sessions, &self.registry, swarm)
    }

    /// Whether `peer_id` has a live session.
    pub fn is_peer_known(&self, peer_id: PeerId) -> bool {
        self.sessions.contains_key(&peer_id)
    }

    /// Live sessions, CLI clients included.
    pub fn peer_count(&self) -> usize {
        self.sessions.len()
    }

    /// Open connections, before or after `Hello`.
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    #[cfg(test)]
    /// Every live peer (any swarm, sources or not) holding a chunk of `content_id`, with
    /// what it holds, by peer id.
    pub(crate) fn holders(&self, content_id: ContentId) -> Vec<(PeerId, ChunkSet)> {
        self.sessions
            .iter()
            .filter_map(|(&peer_id, session)| {
                session
                    .holdings
                    .get(&content_id)
                    .map(|chunks| (peer_id, chunks.clone()))
            })
            .collect()
    }

    /// The manifest of `content_id` as known in `swarm`.
    pub fn manifest(&self, swarm: &str, content_id: ContentId) -> Option<&Manifest> {
        self.registry.manifest(swarm, content_id)
    }

    /// Recomputes every derived counter from the sessions and compares: `Err` names the
    /// first disagreement. For tests and the simulator's checkers; O(all state).
    pub fn check_invariants(&self) -> Result<(), String> {
        invariants::check(&self.conns, &self.sessions, &self.registry)
    }
}
