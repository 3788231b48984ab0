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
//! - After the machine emits `Close` it has forgotten the connection: a later
//!   `handle_closed` or `handle_message` for it is ignored.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::chunkset::ChunkSet;
use crate::ids::{ConnId, ContentId, PeerId};
use crate::manifest::Manifest;
use crate::time::Instant;
use crate::wire::{
    FRAME_LEN_MAX, FileEntry, LIST_LEN_MAX, Message, PEERS_LEN_MAX, PROTOCOL_VERSION, PeerChunks,
    PeerEntry, STRING_LEN_MAX, error_code,
};

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

/// One accepted connection.
struct Conn {
    /// The session, once `Hello` was accepted.
    peer: Option<PeerId>,
    /// When the connection is dropped unless something arrives first.
    deadline: Instant,
}

/// One live peer.
struct Session {
    conn: ConnId,
    swarm: String,
    listen_addr: String,
    uploaded_bytes: u64,
    downloaded_bytes: u64,
    last_seen: Instant,
    /// Contents of which the peer holds at least one chunk (or the whole of an empty file).
    holdings: BTreeMap<ContentId, ChunkSet>,
}

impl Session {
    /// Whether other peers can download from this one.
    fn is_source(&self) -> bool {
        !self.listen_addr.is_empty()
    }
}

#[derive(Default)]
struct Swarm {
    peers: BTreeSet<PeerId>,
    files: BTreeMap<ContentId, FileRecord>,
}

impl Swarm {
    fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.files.is_empty()
    }
}

/// A content some live peer of a swarm holds, with counters kept up to date on every change
/// so `ListFiles` never has to union chunk sets.
struct FileRecord {
    /// From the first announcer while the record lives: a later peer cannot rename a file
    /// others publish, and the listing does not flicker when peers re-announce.
    manifest: Manifest,
    /// Every session holding a chunk, sources or not.
    holders: BTreeSet<PeerId>,
    /// Per chunk, how many sources hold it.
    availability: Vec<u32>,
    /// Chunks no source holds.
    uncovered: u32,
    /// Sources holding at least one chunk.
    sources: u32,
    /// Sources holding every chunk.
    full_sources: u32,
    /// Origins (URL and validator) this content is known to be the file at. Soft state like
    /// the rest: holders re-send them after a reconnect.
    origins: BTreeSet<String>,
}

impl FileRecord {
    fn new(manifest: Manifest) -> FileRecord {
        let chunk_count = manifest.chunk_count();
        FileRecord {
            manifest,
            holders: BTreeSet::new(),
            availability: vec![0; chunk_count as usize],
            uncovered: chunk_count,
            sources: 0,
            full_sources: 0,
            origins: BTreeSet::new(),
        }
    }

    /// Bytes charged against `manifest_bytes_max`: the hashes, the name and the counters.
    fn cost(manifest: &Manifest) -> usize {
        manifest.chunk_hashes.len() * (32 + size_of::<u32>()) + manifest.name.len()
    }

    fn add_chunk(&mut self, index: u32) {
        if let Some(count) = self.availability.get_mut(index as usize) {
            if *count == 0 {
                self.uncovered -= 1;
            }
            *count += 1;
        }
    }

    fn remove_chunk(&mut self, index: u32) {
        if let Some(count) = self.availability.get_mut(index as usize)
            && *count > 0
        {
            *count -= 1;
            if *count == 0 {
                self.uncovered += 1;
            }
        }
    }

    fn add_source(&mut self, chunks: &ChunkSet) {
        for index in chunks.iter() {
            self.add_chunk(index);
        }
        self.sources += 1;
        if chunks.is_full() {
            self.full_sources += 1;
        }
    }

    fn remove_source(&mut self, chunks: &ChunkSet) {
        for index in chunks.iter() {
            self.remove_chunk(index);
        }
        self.sources = self.sources.saturating_sub(1);
        if chunks.is_full() {
            self.full_sources = self.full_sources.saturating_sub(1);
        }
    }

    /// The live sources together hold every chunk (an empty file needs one source).
    fn is_complete(&self) -> bool {
        self.uncovered == 0 && self.sources > 0
    }

    fn entry(&self, content_id: ContentId) -> FileEntry {
        FileEntry {
            content_id,
            name: self.manifest.name.clone(),
            size: self.manifest.size,
            chunk_size: self.manifest.chunk_size,
            chunk_count: self.manifest.chunk_count(),
            full_sources: self.full_sources,
            peers: self.sources,
            complete: self.is_complete(),
        }
    }
}

/// Whether a chunk set counts as holding the content: at least one chunk, or the whole of
/// an empty (zero-chunk) file.
fn holds_any(chunks: &ChunkSet) -> bool {
    // `is_full` is true of the zero-length set, and implies a chunk for any other.
    !chunks.is_empty() || chunks.is_full()
}

/// Encoded bytes of a string field (`put_str` truncates at `STRING_LEN_MAX`).
fn str_len(s: &str) -> usize {
    2 + s.len().min(STRING_LEN_MAX)
}

/// Frame bytes (kind and payload) of a list reply before its entries.
const FILE_LIST_HEADER_LEN: usize = 1 + 4;
const LOCATED_HEADER_LEN: usize = 1 + 32 + 4;
const PEER_LIST_HEADER_LEN: usize = 1 + 4;

fn file_entry_len(entry: &FileEntry) -> usize {
    32 + str_len(&entry.name) + 8 + 4 + 4 + 4 + 4 + 1
}

fn peer_chunks_len(entry: &PeerChunks) -> usize {
    8 + str_len(&entry.listen_addr) + 4 + entry.chunks.as_bitfield().len()
}

fn peer_entry_len(entry: &PeerEntry) -> usize {
    8 + str_len(&entry.listen_addr) + 4 + 8 * 4
}

/// Keeps the longest prefix of `items` that has at most `count_max` entries and encodes
/// within `FRAME_LEN_MAX`, so a reply is never a frame the receiver must reject.
fn truncate_to_frame<T>(
    items: &mut Vec<T>,
    count_max: usize,
    header_len: usize,
    entry_len: impl Fn(&T) -> usize,
) {
    let mut total = header_len;
    let mut keep = 0;
    for item in items.iter().take(count_max) {
        total += entry_len(item);
        if total > FRAME_LEN_MAX as usize {
            break;
        }
        keep += 1;
    }
    items.truncate(keep);
}

/// Fisher–Yates with the tracker's seeded RNG (deterministic for the simulator).
fn shuffle<T>(rng: &mut ChaCha8Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
}

/// Most origins remembered per file.
pub(crate) const ORIGINS_PER_FILE_MAX: usize = 16;

/// The tracker state machine.
pub struct Tracker {
    config: TrackerConfig,
    rng: ChaCha8Rng,
    next_conn: u64,
    conns: BTreeMap<ConnId, Conn>,
    /// Every connection's deadline, earliest first.
    deadlines: BTreeSet<(Instant, ConnId)>,
    sessions: BTreeMap<PeerId, Session>,
    swarms: BTreeMap<String, Swarm>,
    /// Sum of `FileRecord::cost` over all records.
    manifest_bytes: usize,
    actions: VecDeque<TrackerAction>,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Tracker {
        Tracker {
            rng: ChaCha8Rng::seed_from_u64(config.rng_seed),
            config,
            next_conn: 0,
            conns: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            sessions: BTreeMap::new(),
            swarms: BTreeMap::new(),
            manifest_bytes: 0,
            actions: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// A connection was accepted; the machine hands out its id. It must say `Hello` within
    /// `peer_timeout`.
    pub fn accept(&mut self, now: Instant) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let deadline = now + self.config.peer_timeout;
        self.conns.insert(
            conn,
            Conn {
                peer: None,
                deadline,
            },
        );
        self.deadlines.insert((deadline, conn));
        conn
    }

    /// A decoded message arrived on `conn`.
    pub fn handle_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        let Some(state) = self.conns.get(&conn) else {
            return; // Already closed by us: late frames are dropped.
        };
        let peer = state.peer;
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
        while let Some(&(deadline, conn)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
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
        self.deadlines.first().map(|&(deadline, _)| deadline)
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
        self.swarms.get(swarm).map_or_else(Vec::new, |s| {
            s.files
                .iter()
                .filter(|(_, record)| record.is_complete())
                .map(|(&content_id, record)| record.entry(content_id))
                .collect()
        })
    }

    #[cfg(test)]
    /// Every content of `swarm` some live peer holds a chunk of, delisted ones included.
    pub(crate) fn known_files(&self, swarm: &str) -> Vec<FileEntry> {
        self.swarms.get(swarm).map_or_else(Vec::new, |s| {
            s.files
                .iter()
                .map(|(&content_id, record)| record.entry(content_id))
                .collect()
        })
    }

    /// The peers of `swarm` that `ListPeers` lists (those with a listen address), by peer id.
    /// Not truncated to a frame.
    pub fn peers(&self, now: Instant, swarm: &str) -> Vec<PeerEntry> {
        let Some(s) = self.swarms.get(swarm) else {
            return Vec::new();
        };
        s.peers
            .iter()
            .filter_map(|peer_id| {
                let session = self.sessions.get(peer_id)?;
                session.is_source().then(|| PeerEntry {
                    peer_id: *peer_id,
                    listen_addr: session.listen_addr.clone(),
                    files: u32::try_from(session.holdings.len()).unwrap_or(u32::MAX),
                    chunks_held: session
                        .holdings
                        .values()
                        .map(|c| u64::from(c.count()))
                        .sum(),
                    uploaded_bytes: session.uploaded_bytes,
                    downloaded_bytes: session.downloaded_bytes,
                    last_seen_ms_ago: u64::try_from(
                        now.saturating_since(session.last_seen).as_millis(),
                    )
                    .unwrap_or(u64::MAX),
                })
            })
            .collect()
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
        Some(&self.swarms.get(swarm)?.files.get(&content_id)?.manifest)
    }

    /// Recomputes every derived counter from the sessions and compares: `Err` names the
    /// first disagreement. For tests and the simulator's checkers; O(all state).
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut manifest_bytes = 0;
        for (name, swarm) in &self.swarms {
            if swarm.is_empty() {
                return Err(format!("swarm {name:?} is empty but kept"));
            }
            for peer_id in &swarm.peers {
                if self.sessions.get(peer_id).is_none_or(|s| &s.swarm != name) {
                    return Err(format!(
                        "swarm {name:?} lists {peer_id} without its session"
                    ));
                }
            }
            for (content_id, record) in &swarm.files {
                manifest_bytes += FileRecord::cost(&record.manifest);
                let mut expected = FileRecord::new(record.manifest.clone());
                for peer_id in &swarm.peers {
                    let session = &self.sessions[peer_id];
                    if let Some(chunks) = session.holdings.get(content_id) {
                        expected.holders.insert(*peer_id);
                        if session.is_source() {
                            expected.add_source(chunks);
                        }
                    }
                }
                if expected.holders.is_empty() {
                    return Err(format!("{content_id} kept with no holder"));
                }
                if (
                    &expected.holders,
                    &expected.availability,
                    expected.uncovered,
                    expected.sources,
                    expected.full_sources,
                ) != (
                    &record.holders,
                    &record.availability,
                    record.uncovered,
                    record.sources,
                    record.full_sources,
                ) {
                    return Err(format!("counters of {content_id} in {name:?} disagree"));
                }
            }
        }
        if manifest_bytes != self.manifest_bytes {
            return Err(format!(
                "manifest bytes {} but records cost {manifest_bytes}",
                self.manifest_bytes
            ));
        }
        for (peer_id, session) in &self.sessions {
            if self.conns.get(&session.conn).and_then(|c| c.peer) != Some(*peer_id) {
                return Err(format!("session {peer_id} on a connection not its own"));
            }
            if !self
                .swarms
                .get(&session.swarm)
                .is_some_and(|s| s.peers.contains(peer_id))
            {
                return Err(format!("session {peer_id} missing from its swarm"));
            }
            for (content_id, chunks) in &session.holdings {
                if !holds_any(chunks) {
                    return Err(format!("{peer_id} keeps an empty holding of {content_id}"));
                }
            }
        }
        let deadlines: BTreeSet<_> = self.conns.iter().map(|(&c, s)| (s.deadline, c)).collect();
        if deadlines != self.deadlines {
            return Err("deadline index disagrees with the connections".to_owned());
        }
        Ok(())
    }

    // ---- inputs ----

    fn on_hello(
        &mut self,
        now: Instant,
        conn: ConnId,
        version: u16,
        peer_id: PeerId,
        listen_addr: String,
        swarm: String,
    ) {
        if version != PROTOCOL_VERSION {
            self.fail(
                conn,
                error_code::VERSION_MISMATCH,
                format!(
                    "protocol version {version} is not supported: this tracker speaks version {PROTOCOL_VERSION}"
                ),
            );
            return;
        }
        if let Some(old) = self.sessions.get(&peer_id) {
            // The peer reconnected before we noticed its old connection die (or another
            // process claims its id): the newest connection wins.
            let old_conn = old.conn;
            self.fail(
                old_conn,
                error_code::SESSION_REPLACED,
                format!("peer {peer_id} said Hello on another connection"),
            );
        }
        if let Some(state) = self.conns.get_mut(&conn) {
            state.peer = Some(peer_id);
        }
        self.swarms
            .entry(swarm.clone())
            .or_default()
            .peers
            .insert(peer_id);
        self.sessions.insert(
            peer_id,
            Session {
                conn,
                swarm,
                listen_addr,
                uploaded_bytes: 0,
                downloaded_bytes: 0,
                last_seen: now,
                holdings: BTreeMap::new(),
            },
        );
        self.send(
            conn,
            Message::Welcome {
                version: PROTOCOL_VERSION,
                peer_id: self.config.tracker_id,
            },
        );
    }

    fn on_session_message(&mut self, now: Instant, conn: ConnId, peer: PeerId, message: Message) {
        match message {
            Message::Heartbeat {
                uploaded_bytes,
                downloaded_bytes,
            } => {
                if let Some(session) = self.sessions.get_mut(&peer) {
                    session.uploaded_bytes = uploaded_bytes;
                    session.downloaded_bytes = downloaded_bytes;
                }
            }
            Message::Goodbye => self.close(conn),
            // The peer reports a problem; if it closes, `handle_closed` follows.
            Message::Error { .. } => {}
            Message::Announce { manifest, chunks } => {
                self.on_announce(conn, peer, manifest, chunks)
            }
            Message::Have {
                content_id,
                chunk_indices,
            } => self.on_have(peer, content_id, &chunk_indices),
            Message::Withdraw { content_id } => self.on_withdraw(peer, content_id),
            Message::ListFiles => {
                let mut files = self
                    .session_swarm(peer)
                    .map_or_else(Vec::new, |s| self.files(s));
                truncate_to_frame(
                    &mut files,
                    LIST_LEN_MAX,
                    FILE_LIST_HEADER_LEN,
                    file_entry_len,
                );
                self.send(conn, Message::FileList { files });
            }
            Message::ListPeers => {
                let mut peers = self
                    .session_swarm(peer)
                    .map_or_else(Vec::new, |s| self.peers(now, s));
                truncate_to_frame(
                    &mut peers,
                    LIST_LEN_MAX,
                    PEER_LIST_HEADER_LEN,
                    peer_entry_len,
                );
                self.send(conn, Message::PeerList { peers });
            }
            Message::Locate { content_id } => {
                let peers = self.locate(peer, content_id);
                self.send(conn, Message::Located { content_id, peers });
            }
            Message::GetManifest { content_id } => {
                let reply = match self
                    .session_swarm(peer)
                    .and_then(|s| self.manifest(s, content_id))
                {
                    Some(manifest) => Message::ManifestReply {
                        manifest: manifest.clone(),
                    },
                    None => Message::NotFound { content_id },
                };
                self.send(conn, reply);
            }
            Message::SetOrigin { content_id, origin } => {
                self.on_set_origin(peer, content_id, origin)
            }
            Message::FindOrigin { origin } => {
                let content_id = self.find_origin(peer, &origin);
                self.send(conn, Message::OriginResult { origin, content_id });
            }
            Message::Hello { .. } => self.fail(
                conn,
                error_code::UNEXPECTED_MESSAGE,
                "second Hello on one connection".to_owned(),
            ),
            other => self.fail(
                conn,
                error_code::UNEXPECTED_MESSAGE,
                format!("the tracker does not accept {}", other.kind()),
            ),
        }
    }

    /// Records that a holder's content is the file at `origin`. Only a peer holding the
    /// content may say so, and each file keeps a bounded number of origins.
    fn on_set_origin(&mut self, peer: PeerId, content_id: ContentId, origin: String) {
        let Some(session) = self.sessions.get(&peer) else {
            return;
        };
        if !session.holdings.contains_key(&content_id) {
            return;
        }
        let Some(record) = self
            .swarms
            .get_mut(&session.swarm)
            .and_then(|s| s.files.get_mut(&content_id))
        else {
            return;
        };
        if record.origins.len() < ORIGINS_PER_FILE_MAX {
            record.origins.insert(origin);
        }
    }

    /// A listed (wholly available) file of the asker's swarm known to be the file at `origin`.
    fn find_origin(&self, asker: PeerId, origin: &str) -> Option<ContentId> {
        let swarm = self.swarms.get(self.session_swarm(asker)?)?;
        swarm
            .files
            .iter()
            .find(|(_, record)| record.is_complete() && record.origins.contains(origin))
            .map(|(content_id, _)| *content_id)
    }

    fn on_announce(&mut self, conn: ConnId, peer: PeerId, manifest: Manifest, chunks: ChunkSet) {
        // The decoder validated both, but the simulator hands messages over undecoded.
        if let Err(e) = manifest.validate() {
            self.fail(
                conn,
                error_code::BAD_MESSAGE,
                format!("invalid manifest: {e}"),
            );
            return;
        }
        if chunks.len() != manifest.chunk_count() {
            self.fail(
                conn,
                error_code::BAD_MESSAGE,
                format!(
                    "chunk set covers {} chunks but the manifest has {}",
                    chunks.len(),
                    manifest.chunk_count()
                ),
            );
            return;
        }
        let content_id = manifest.content_id();
        let Some(session) = self.sessions.get_mut(&peer) else {
            return;
        };
        let Some(swarm) = self.swarms.get_mut(&session.swarm) else {
            return;
        };
        let holds = holds_any(&chunks);
        let already_held = session.holdings.contains_key(&content_id);
        let known = swarm.files.contains_key(&content_id);
        let refusal = if holds
            && !already_held
            && session.holdings.len() >= self.config.contents_per_peer_max
        {
            Some(format!(
                "a peer may hold at most {} contents at once",
                self.config.contents_per_peer_max
            ))
        } else if holds
            && !known
            && self.manifest_bytes + FileRecord::cost(&manifest) > self.config.manifest_bytes_max
        {
            Some("the tracker's manifest budget is spent".to_owned())
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.send(
                conn,
                Message::Error {
                    code: error_code::LIMIT_EXCEEDED,
                    message: format!("announce of {content_id} refused: {reason}"),
                },
            );
            return;
        }
        let is_source = session.is_source();
        // An Announce states everything the peer holds of the content: replace the old set.
        if let Some(old) = session.holdings.remove(&content_id)
            && let Some(record) = swarm.files.get_mut(&content_id)
        {
            if is_source {
                record.remove_source(&old);
            }
            record.holders.remove(&peer);
        }
        if holds {
            let record = swarm.files.entry(content_id).or_insert_with(|| {
                self.manifest_bytes += FileRecord::cost(&manifest);
                FileRecord::new(manifest)
            });
            record.holders.insert(peer);
            if is_source {
                record.add_source(&chunks);
            }
            session.holdings.insert(content_id, chunks);
        } else {
            Self::release_if_unheld(swarm, content_id, &mut self.manifest_bytes);
        }
    }

    fn on_have(&mut self, peer: PeerId, content_id: ContentId, chunk_indices: &[u32]) {
        let Some(session) = self.sessions.get_mut(&peer) else {
            return;
        };
        let is_source = session.is_source();
        // Unknown content: the peer has not announced it on this session; ignored (see the
        // module docs).
        let Some(chunks) = session.holdings.get_mut(&content_id) else {
            return;
        };
        let Some(record) = self
            .swarms
            .get_mut(&session.swarm)
            .and_then(|s| s.files.get_mut(&content_id))
        else {
            return;
        };
        let was_full = chunks.is_full();
        for &index in chunk_indices {
            // `insert` ignores indices out of range.
            if chunks.insert(index) && is_source {
                record.add_chunk(index);
            }
        }
        if is_source && !was_full && chunks.is_full() {
            record.full_sources += 1;
        }
    }

    fn on_withdraw(&mut self, peer: PeerId, content_id: ContentId) {
        let Some(session) = self.sessions.get_mut(&peer) else {
            return;
        };
        let Some(chunks) = session.holdings.remove(&content_id) else {
            return;
        };
        let is_source = session.is_source();
        if let Some(swarm) = self.swarms.get_mut(&session.swarm) {
            Self::remove_holding(
                swarm,
                peer,
                content_id,
                &chunks,
                is_source,
                &mut self.manifest_bytes,
            );
        }
    }

    /// Up to `locate_peers_max` live sources of the asker's swarm holding a chunk of
    /// `content_id`, the asker excluded. When there are more, a random sample that gives
    /// half the places to full sources (they can serve any chunk) and half to partial
    /// holders (spreads load off the seeders, which is how a swarm scales); places one side
    /// cannot fill go to the other.
    fn locate(&mut self, asker: PeerId, content_id: ContentId) -> Vec<PeerChunks> {
        let mut full = Vec::new();
        let mut partial = Vec::new();
        if let Some(record) = self
            .session_swarm(asker)
            .and_then(|s| self.swarms.get(s))
            .and_then(|s| s.files.get(&content_id))
        {
            for &peer_id in &record.holders {
                if peer_id == asker {
                    continue;
                }
                let Some(session) = self.sessions.get(&peer_id) else {
                    continue;
                };
                let Some(chunks) = session.holdings.get(&content_id) else {
                    continue;
                };
                if !session.is_source() {
                    continue;
                }
                if chunks.is_full() {
                    full.push(peer_id);
                } else {
                    partial.push(peer_id);
                }
            }
        }
        let max = self.config.locate_peers_max.min(PEERS_LEN_MAX);
        shuffle(&mut self.rng, &mut full);
        shuffle(&mut self.rng, &mut partial);
        let full_take = full
            .len()
            .min(max.div_ceil(2).max(max.saturating_sub(partial.len())));
        let partial_take = partial.len().min(max - full_take);
        full.truncate(full_take);
        full.extend_from_slice(&partial[..partial_take]);
        let mut chosen = full;
        // Mix full and partial so a client that tries peers in order spreads its load.
        shuffle(&mut self.rng, &mut chosen);
        let mut peers: Vec<PeerChunks> = chosen
            .into_iter()
            .filter_map(|peer_id| {
                let session = self.sessions.get(&peer_id)?;
                Some(PeerChunks {
                    peer_id,
                    listen_addr: session.listen_addr.clone(),
                    chunks: session.holdings.get(&content_id)?.clone(),
                })
            })
            .collect();
        truncate_to_frame(
            &mut peers,
            PEERS_LEN_MAX,
            LOCATED_HEADER_LEN,
            peer_chunks_len,
        );
        peers
    }

    // ---- bookkeeping ----

    fn session_swarm(&self, peer: PeerId) -> Option<&str> {
        self.sessions.get(&peer).map(|s| s.swarm.as_str())
    }

    /// Something arrived on `conn`: push its deadline back.
    fn touch(&mut self, now: Instant, conn: ConnId, peer: Option<PeerId>) {
        let deadline = now + self.config.peer_timeout;
        if let Some(state) = self.conns.get_mut(&conn) {
            self.deadlines.remove(&(state.deadline, conn));
            state.deadline = deadline;
            self.deadlines.insert((deadline, conn));
        }
        if let Some(session) = peer.and_then(|p| self.sessions.get_mut(&p)) {
            session.last_seen = now;
        }
    }

    fn send(&mut self, conn: ConnId, message: Message) {
        self.actions
            .push_back(TrackerAction::Send { conn, message });
    }

    /// Fatal: tell the other side why, close, forget.
    fn fail(&mut self, conn: ConnId, code: u16, message: String) {
        self.send(conn, Message::Error { code, message });
        self.close(conn);
    }

    fn close(&mut self, conn: ConnId) {
        if self.forget_conn(conn) {
            self.actions.push_back(TrackerAction::Close { conn });
        }
    }

    /// Forgets `conn` and its session; whether it was known.
    fn forget_conn(&mut self, conn: ConnId) -> bool {
        let Some(state) = self.conns.remove(&conn) else {
            return false;
        };
        self.deadlines.remove(&(state.deadline, conn));
        if let Some(peer) = state.peer {
            self.drop_session(peer, conn);
        }
        true
    }

    /// Drops `peer`'s session (if it is still the one on `conn`) with every chunk it held.
    fn drop_session(&mut self, peer: PeerId, conn: ConnId) {
        if self.sessions.get(&peer).is_none_or(|s| s.conn != conn) {
            return;
        }
        let Some(session) = self.sessions.remove(&peer) else {
            return;
        };
        let Some(swarm) = self.swarms.get_mut(&session.swarm) else {
            return;
        };
        let is_source = session.is_source();
        for (content_id, chunks) in &session.holdings {
            Self::remove_holding(
                swarm,
                peer,
                *content_id,
                chunks,
                is_source,
                &mut self.manifest_bytes,
            );
        }
        swarm.peers.remove(&peer);
        if swarm.is_empty() {
            self.swarms.remove(&session.swarm);
        }
    }

    fn remove_holding(
        swarm: &mut Swarm,
        peer: PeerId,
        content_id: ContentId,
        chunks: &ChunkSet,
        is_source: bool,
        manifest_bytes: &mut usize,
    ) {
        if let Some(record) = swarm.files.get_mut(&content_id) {
            if is_source {
                record.remove_source(chunks);
            }
            record.holders.remove(&peer);
        }
        Self::release_if_unheld(swarm, content_id, manifest_bytes);
    }

    /// Forgets a content (manifest too) once no live peer holds any of it.
    fn release_if_unheld(swarm: &mut Swarm, content_id: ContentId, manifest_bytes: &mut usize) {
        if swarm
            .files
            .get(&content_id)
            .is_some_and(|r| r.holders.is_empty())
            && let Some(record) = swarm.files.remove(&content_id)
        {
            *manifest_bytes = manifest_bytes.saturating_sub(FileRecord::cost(&record.manifest));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{CHUNK_SIZE_MIN, ManifestBuilder};
    use crate::wire::FrameDecoder;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A manifest of `chunks` chunks whose bytes are all `fill` (distinct fills give
    /// distinct content ids).
    fn manifest(name: &str, chunks: u32, fill: u8) -> Manifest {
        let mut builder = ManifestBuilder::new(name, CHUNK_SIZE_MIN).unwrap();
        builder.update(&vec![fill; (chunks * CHUNK_SIZE_MIN) as usize]);
        builder.finish().unwrap()
    }

    fn set(len: u32, indices: &[u32]) -> ChunkSet {
        let mut set = ChunkSet::new(len);
        for &i in indices {
            set.insert(i);
        }
        set
    }

    struct Harness {
        tracker: Tracker,
        now: Instant,
    }

    impl Harness {
        fn new() -> Harness {
            Harness::with(TrackerConfig {
                tracker_id: PeerId(0x7777),
                rng_seed: 42,
                ..TrackerConfig::default()
            })
        }

        fn with(config: TrackerConfig) -> Harness {
            Harness {
                tracker: Tracker::new(config),
                now: Instant::from_nanos(1_000_000_000),
            }
        }

        fn drain(&mut self) -> Vec<TrackerAction> {
            std::iter::from_fn(|| self.tracker.poll_action()).collect()
        }

        fn send(&mut self, conn: ConnId, message: Message) -> Vec<TrackerAction> {
            self.tracker.handle_message(self.now, conn, message);
            self.drain()
        }

        /// Sends a request and returns the one reply.
        fn ask(&mut self, conn: ConnId, message: Message) -> Message {
            match self.send(conn, message).as_slice() {
                [TrackerAction::Send { conn: c, message }] if *c == conn => message.clone(),
                other => panic!("expected one reply, got {other:?}"),
            }
        }

        fn connect(&mut self, peer: u64, addr: &str, swarm: &str) -> ConnId {
            let conn = self.tracker.accept(self.now);
            let reply = self.ask(conn, hello(peer, addr, swarm));
            assert_eq!(
                reply,
                Message::Welcome {
                    version: PROTOCOL_VERSION,
                    peer_id: PeerId(0x7777)
                }
            );
            conn
        }

        fn announce(&mut self, conn: ConnId, manifest: &Manifest, chunks: ChunkSet) {
            let actions = self.send(
                conn,
                Message::Announce {
                    manifest: manifest.clone(),
                    chunks,
                },
            );
            assert!(actions.is_empty(), "{actions:?}");
        }

        fn advance(&mut self, by: Duration) {
            self.now = self.now + by;
        }

        fn list_files(&mut self, conn: ConnId) -> Vec<FileEntry> {
            match self.ask(conn, Message::ListFiles) {
                Message::FileList { files } => files,
                other => panic!("{other:?}"),
            }
        }

        fn locate(&mut self, conn: ConnId, content_id: ContentId) -> Vec<PeerChunks> {
            match self.ask(conn, Message::Locate { content_id }) {
                Message::Located {
                    content_id: c,
                    mut peers,
                } => {
                    assert_eq!(c, content_id);
                    peers.sort_by_key(|p| p.peer_id);
                    peers
                }
                other => panic!("{other:?}"),
            }
        }

        fn list_peers(&mut self, conn: ConnId) -> Vec<PeerEntry> {
            match self.ask(conn, Message::ListPeers) {
                Message::PeerList { peers } => peers,
                other => panic!("{other:?}"),
            }
        }
    }

    fn hello(peer: u64, addr: &str, swarm: &str) -> Message {
        Message::Hello {
            version: PROTOCOL_VERSION,
            peer_id: PeerId(peer),
            listen_addr: addr.into(),
            swarm: swarm.into(),
        }
    }

    /// The actions are `Error{code}` then `Close` on `conn`.
    fn assert_fatal(actions: &[TrackerAction], conn: ConnId, code: u16) -> String {
        match actions {
            [
                TrackerAction::Send {
                    conn: c1,
                    message: Message::Error { code: got, message },
                },
                TrackerAction::Close { conn: c2 },
            ] if *c1 == conn && *c2 == conn && *got == code => message.clone(),
            other => panic!("expected fatal error {code} on {conn}, got {other:?}"),
        }
    }

    #[test]
    fn hello_gets_welcome() {
        let mut h = Harness::new();
        h.connect(1, "10.0.0.1:7000", "s");
        assert!(h.tracker.is_peer_known(PeerId(1)));
        assert_eq!(h.tracker.peer_count(), 1);
    }

    #[test]
    fn version_mismatch_is_refused_naming_both_versions() {
        let mut h = Harness::new();
        let conn = h.tracker.accept(h.now);
        let actions = h.send(
            conn,
            Message::Hello {
                version: 99,
                peer_id: PeerId(1),
                listen_addr: "a:1".into(),
                swarm: "s".into(),
            },
        );
        let text = assert_fatal(&actions, conn, error_code::VERSION_MISMATCH);
        assert!(
            text.contains("99") && text.contains(&PROTOCOL_VERSION.to_string()),
            "{text}"
        );
        assert!(!h.tracker.is_peer_known(PeerId(1)));
        assert_eq!(h.tracker.conn_count(), 0);
        // Late frames and the driver's close report are ignored.
        assert!(h.send(conn, Message::ListFiles).is_empty());
        h.tracker.handle_closed(h.now, conn);
        assert!(h.drain().is_empty());
    }

    #[test]
    fn message_before_hello_is_refused() {
        let mut h = Harness::new();
        let conn = h.tracker.accept(h.now);
        let actions = h.send(conn, Message::ListFiles);
        assert_fatal(&actions, conn, error_code::HELLO_REQUIRED);
        assert_eq!(h.tracker.conn_count(), 0);
    }

    #[test]
    fn connection_without_hello_times_out() {
        let mut h = Harness::new();
        let conn = h.tracker.accept(h.now);
        assert_eq!(h.tracker.poll_timeout(), Some(h.now + TIMEOUT));
        h.advance(TIMEOUT);
        h.tracker.handle_timeout(h.now);
        assert_fatal(&h.drain(), conn, error_code::TIMED_OUT);
        assert_eq!(h.tracker.poll_timeout(), None);
    }

    #[test]
    fn second_hello_and_peer_messages_are_refused() {
        let mut h = Harness::new();
        let a = h.connect(1, "a:1", "s");
        let actions = h.send(a, hello(1, "a:1", "s"));
        assert_fatal(&actions, a, error_code::UNEXPECTED_MESSAGE);
        assert!(!h.tracker.is_peer_known(PeerId(1)));

        let cid = manifest("f", 1, 1).content_id();
        for message in [
            Message::Request {
                content_id: cid,
                chunk_index: 0,
                offset: 0,
                length: 1,
            },
            Message::Piece {
                content_id: cid,
                chunk_index: 0,
                offset: 0,
                data: bytes::Bytes::from_static(b"x"),
            },
            Message::Bitfield {
                content_id: cid,
                chunks: ChunkSet::new(1),
            },
            Message::Interested { content_id: cid },
            Message::Welcome {
                version: 1,
                peer_id: PeerId(3),
            },
            Message::FileList { files: vec![] },
        ] {
            let b = h.connect(2, "b:1", "s");
            let actions = h.send(b, message);
            let text = assert_fatal(&actions, b, error_code::UNEXPECTED_MESSAGE);
            assert!(text.contains("does not accept"), "{text}");
            assert!(!h.tracker.is_peer_known(PeerId(2)));
        }
    }

    #[test]
    fn announce_list_files_locate_list_peers() {
        let mut h = Harness::new();
        let m = manifest("movie.mkv", 3, 7);
        let cid = m.content_id();
        let a = h.connect(1, "10.0.0.1:7000", "s");
        let b = h.connect(2, "10.0.0.2:7000", "s");
        let cli = h.connect(3, "", "s");
        h.announce(a, &m, ChunkSet::full(3));
        h.announce(b, &m, set(3, &[1]));

        let files = h.list_files(cli);
        assert_eq!(
            files,
            vec![FileEntry {
                content_id: cid,
                name: "movie.mkv".into(),
                size: 3 * u64::from(CHUNK_SIZE_MIN),
                chunk_size: CHUNK_SIZE_MIN,
                chunk_count: 3,
                full_sources: 1,
                peers: 2,
                complete: true,
            }]
        );
        assert_eq!(h.tracker.files("s"), files);

        // The asker is left out; each peer comes with its chunks.
        let located = h.locate(b, cid);
        assert_eq!(
            located,
            vec![PeerChunks {
                peer_id: PeerId(1),
                listen_addr: "10.0.0.1:7000".into(),
                chunks: ChunkSet::full(3),
            }]
        );
        let located = h.locate(cli, cid);
        assert_eq!(located.len(), 2);
        assert_eq!(located[1].chunks, set(3, &[1]));

        assert_eq!(
            h.ask(cli, Message::GetManifest { content_id: cid }),
            Message::ManifestReply {
                manifest: m.clone()
            }
        );
        let unknown = manifest("other", 1, 9).content_id();
        assert_eq!(
            h.ask(
                cli,
                Message::GetManifest {
                    content_id: unknown
                }
            ),
            Message::NotFound {
                content_id: unknown
            }
        );
        assert!(h.locate(cli, unknown).is_empty());

        // The CLI session (no listen address) is not listed.
        h.advance(Duration::from_millis(1500));
        h.send(
            a,
            Message::Heartbeat {
                uploaded_bytes: 500,
                downloaded_bytes: 20,
            },
        );
        h.advance(Duration::from_millis(250));
        let peers = h.list_peers(cli);
        assert_eq!(peers.len(), 2);
        assert_eq!(
            peers[0],
            PeerEntry {
                peer_id: PeerId(1),
                listen_addr: "10.0.0.1:7000".into(),
                files: 1,
                chunks_held: 3,
                uploaded_bytes: 500,
                downloaded_bytes: 20,
                last_seen_ms_ago: 250,
            }
        );
        assert_eq!(peers[1].peer_id, PeerId(2));
        assert_eq!(peers[1].chunks_held, 1);
        assert_eq!(peers[1].last_seen_ms_ago, 1750);
        assert_eq!(h.tracker.holders(cid).len(), 2);
    }

    #[test]
    fn swarms_are_isolated() {
        let mut h = Harness::new();
        let m = manifest("f", 2, 1);
        let cid = m.content_id();
        let a = h.connect(1, "a:1", "red");
        let b = h.connect(2, "b:1", "blue");
        h.announce(a, &m, ChunkSet::full(2));
        assert!(h.list_files(b).is_empty());
        assert!(h.locate(b, cid).is_empty());
        assert_eq!(
            h.ask(b, Message::GetManifest { content_id: cid }),
            Message::NotFound { content_id: cid }
        );
        assert_eq!(h.list_peers(b).len(), 1);
        assert_eq!(h.list_peers(b)[0].peer_id, PeerId(2));
        // The same content in two swarms is two records.
        h.announce(b, &m, set(2, &[0]));
        assert!(
            h.list_files(b).is_empty(),
            "blue alone cannot supply chunk 1"
        );
        assert_eq!(h.list_files(a).len(), 1);
        assert_eq!(h.locate(a, cid).len(), 0);
    }

    #[test]
    fn have_adds_chunks_in_batches() {
        let mut h = Harness::new();
        let m = manifest("f", 4, 1);
        let cid = m.content_id();
        let a = h.connect(1, "a:1", "s");
        let b = h.connect(2, "b:1", "s");
        h.announce(a, &m, set(4, &[0]));
        assert!(h.list_files(b).is_empty());
        // Out-of-range indices are ignored; so is a Have for unannounced content.
        let actions = h.send(
            a,
            Message::Have {
                content_id: cid,
                chunk_indices: vec![1, 2, 1, 4, u32::MAX],
            },
        );
        assert!(actions.is_empty());
        let other = manifest("g", 1, 2).content_id();
        assert!(
            h.send(
                a,
                Message::Have {
                    content_id: other,
                    chunk_indices: vec![0]
                }
            )
            .is_empty()
        );
        assert_eq!(h.locate(b, cid)[0].chunks, set(4, &[0, 1, 2]));
        assert!(h.list_files(b).is_empty());
        h.send(
            a,
            Message::Have {
                content_id: cid,
                chunk_indices: vec![3],
            },
        );
        let files = h.list_files(b);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].full_sources, 1);
        assert!(files[0].complete);
        // Withdraw forgets the content entirely.
        h.send(a, Message::Withdraw { content_id: cid });
        assert!(h.list_files(b).is_empty());
        assert!(h.tracker.known_files("s").is_empty());
        assert_eq!(h.tracker.manifest_bytes, 0);
    }

    #[test]
    fn silent_peer_is_dropped_with_its_chunks_and_the_file_delisted() {
        let mut h = Harness::new();
        let m = manifest("f", 2, 1);
        let cid = m.content_id();
        let a = h.connect(1, "a:1", "s");
        let b = h.connect(2, "b:1", "s");
        h.announce(a, &m, ChunkSet::full(2));
        h.announce(b, &m, set(2, &[0]));
        assert_eq!(h.list_files(b).len(), 1);

        // b heartbeats, a stays silent.
        let a_deadline = h.now + TIMEOUT;
        for _ in 0..2 {
            assert_eq!(h.tracker.poll_timeout(), Some(a_deadline));
            h.advance(TIMEOUT / 2);
            let actions = h.send(
                b,
                Message::Heartbeat {
                    uploaded_bytes: 0,
                    downloaded_bytes: 0,
                },
            );
            assert!(actions.is_empty());
        }
        assert_eq!(h.tracker.poll_timeout(), Some(h.now));
        h.tracker.handle_timeout(h.now);
        assert_fatal(&h.drain(), a, error_code::TIMED_OUT);
        assert!(!h.tracker.is_peer_known(PeerId(1)));
        assert!(h.tracker.is_peer_known(PeerId(2)));
        assert_eq!(h.tracker.poll_timeout(), Some(h.now + TIMEOUT));

        // b alone lacks chunk 1: delisted, but still located and its manifest served.
        assert!(h.list_files(b).is_empty());
        assert_eq!(h.tracker.known_files("s").len(), 1);
        assert!(!h.tracker.known_files("s")[0].complete);
        assert_eq!(h.tracker.holders(cid), vec![(PeerId(2), set(2, &[0]))]);
    }

    #[test]
    fn goodbye_and_closed_drop_the_session() {
        let mut h = Harness::new();
        let m = manifest("f", 1, 1);
        let a = h.connect(1, "a:1", "s");
        let b = h.connect(2, "b:1", "s");
        let c = h.connect(3, "c:1", "s");
        h.announce(a, &m, ChunkSet::full(1));
        h.announce(b, &m, ChunkSet::full(1));
        assert_eq!(
            h.send(a, Message::Goodbye),
            vec![TrackerAction::Close { conn: a }]
        );
        assert!(!h.tracker.is_peer_known(PeerId(1)));
        assert_eq!(h.list_files(c)[0].full_sources, 1);
        h.tracker.handle_closed(h.now, b);
        assert!(h.drain().is_empty());
        assert!(!h.tracker.is_peer_known(PeerId(2)));
        assert!(h.list_files(c).is_empty());
        assert!(h.tracker.known_files("s").is_empty());
        assert_eq!(h.tracker.peer_count(), 1);
        assert_eq!(h.tracker.conn_count(), 1);
    }

    #[test]
    fn file_is_complete_only_when_the_union_covers_every_chunk() {
        let mut h = Harness::new();
        let m = manifest("f", 3, 1);
        let a = h.connect(1, "a:1", "s");
        let b = h.connect(2, "b:1", "s");
        let cli = h.connect(3, "", "s");
        h.announce(a, &m, set(3, &[0, 1]));
        assert!(h.list_files(cli).is_empty());
        h.announce(b, &m, set(3, &[1]));
        assert!(h.list_files(cli).is_empty());
        // A client without a listen address cannot serve: it does not complete the file.
        h.announce(cli, &m, set(3, &[2]));
        assert!(h.list_files(cli).is_empty());
        // A re-announce replaces the set.
        h.announce(b, &m, set(3, &[2]));
        let files = h.list_files(cli);
        assert_eq!(files.len(), 1);
        assert_eq!((files[0].full_sources, files[0].peers), (0, 2));
        assert!(files[0].complete);
        // An empty announce withdraws.
        h.announce(b, &m, ChunkSet::new(3));
        assert!(h.list_files(cli).is_empty());
        assert_eq!(h.tracker.known_files("s")[0].peers, 1);
    }

    #[test]
    fn empty_file_is_listed() {
        let mut h = Harness::new();
        let m = ManifestBuilder::new("empty", CHUNK_SIZE_MIN)
            .unwrap()
            .finish()
            .unwrap();
        let a = h.connect(1, "a:1", "s");
        h.announce(a, &m, ChunkSet::full(0));
        let files = h.list_files(a);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].full_sources, 1);
    }

    #[test]
    fn announce_with_wrong_chunk_count_is_refused() {
        let mut h = Harness::new();
        let m = manifest("f", 3, 1);
        let a = h.connect(1, "a:1", "s");
        let actions = h.send(
            a,
            Message::Announce {
                manifest: m,
                chunks: ChunkSet::full(2),
            },
        );
        assert_fatal(&actions, a, error_code::BAD_MESSAGE);
        let b = h.connect(2, "b:1", "s");
        let mut bad = manifest("g", 2, 1);
        bad.chunk_hashes.pop();
        let actions = h.send(
            b,
            Message::Announce {
                manifest: bad,
                chunks: ChunkSet::full(1),
            },
        );
        assert_fatal(&actions, b, error_code::BAD_MESSAGE);
        assert!(h.tracker.known_files("s").is_empty());
    }

    #[test]
    fn limits_refuse_an_announce_without_closing() {
        let mut h = Harness::with(TrackerConfig {
            tracker_id: PeerId(0x7777),
            contents_per_peer_max: 1,
            ..TrackerConfig::default()
        });
        let a = h.connect(1, "a:1", "s");
        let m1 = manifest("f", 1, 1);
        h.announce(a, &m1, ChunkSet::full(1));
        match h
            .send(
                a,
                Message::Announce {
                    manifest: manifest("g", 1, 2),
                    chunks: ChunkSet::full(1),
                },
            )
            .as_slice()
        {
            [
                TrackerAction::Send {
                    message: Message::Error { code, .. },
                    ..
                },
            ] => assert_eq!(*code, error_code::LIMIT_EXCEEDED),
            other => panic!("{other:?}"),
        }
        // Re-announcing held content is not a new content.
        h.announce(a, &m1, ChunkSet::full(1));
        assert!(h.tracker.is_peer_known(PeerId(1)));
        assert_eq!(h.list_files(a).len(), 1);

        let mut h = Harness::with(TrackerConfig {
            tracker_id: PeerId(0x7777),
            manifest_bytes_max: 100,
            ..TrackerConfig::default()
        });
        let a = h.connect(1, "a:1", "s");
        let actions = h.send(
            a,
            Message::Announce {
                manifest: manifest("f", 4, 1),
                chunks: ChunkSet::full(4),
            },
        );
        assert!(matches!(
            actions.as_slice(),
            [TrackerAction::Send {
                message: Message::Error {
                    code: error_code::LIMIT_EXCEEDED,
                    ..
                },
                ..
            }]
        ));
        assert!(h.tracker.known_files("s").is_empty());
    }

    #[test]
    fn duplicate_peer_id_replaces_the_old_session() {
        let mut h = Harness::new();
        let m = manifest("f", 1, 1);
        let old = h.connect(1, "a:1", "s");
        h.announce(old, &m, ChunkSet::full(1));
        let new = h.tracker.accept(h.now);
        let actions = h.send(new, hello(1, "a:2", "s"));
        assert_eq!(actions.len(), 3, "{actions:?}");
        assert_fatal(&actions[..2], old, error_code::SESSION_REPLACED);
        assert!(
            matches!(&actions[2], TrackerAction::Send { conn, message: Message::Welcome { .. } } if *conn == new)
        );
        assert!(h.tracker.is_peer_known(PeerId(1)));
        assert_eq!(h.tracker.peer_count(), 1);
        // The old holdings went with the old session; the new one must re-announce.
        assert!(h.tracker.known_files("s").is_empty());
        // The old connection's close report does not touch the new session.
        h.tracker.handle_closed(h.now, old);
        assert!(h.tracker.is_peer_known(PeerId(1)));
        assert_eq!(h.list_peers(new)[0].listen_addr, "a:2");
    }

    #[test]
    fn restarted_tracker_is_whole_after_peers_reannounce() {
        let m = manifest("f", 2, 1);
        let peers = [
            (1, "a:1", vec![0u32, 1]),
            (2, "b:1", vec![0]),
            (3, "c:1", vec![1]),
        ];
        let mut first = Harness::new();
        for (id, addr, chunks) in &peers {
            let conn = first.connect(*id, addr, "s");
            first.announce(conn, &m, set(2, chunks));
        }
        let mut second = Harness::new();
        assert_eq!(second.tracker.peer_count(), 0);
        let mut conn = ConnId(0);
        for (id, addr, chunks) in &peers {
            conn = second.connect(*id, addr, "s");
            second.announce(conn, &m, set(2, chunks));
        }
        assert_eq!(second.tracker.files("s"), first.tracker.files("s"));
        assert_eq!(
            second.tracker.holders(m.content_id()),
            first.tracker.holders(m.content_id())
        );
        for (id, ..) in &peers {
            assert!(second.tracker.is_peer_known(PeerId(*id)));
        }
        assert_eq!(second.locate(conn, m.content_id()).len(), 2);
    }

    #[test]
    fn locate_samples_a_bounded_mix_deterministically() {
        let run = |seed: u64| {
            let mut h = Harness::with(TrackerConfig {
                tracker_id: PeerId(0x7777),
                locate_peers_max: 8,
                rng_seed: seed,
                ..TrackerConfig::default()
            });
            let m = manifest("f", 2, 1);
            for id in 0..40u64 {
                let conn = h.connect(id, &format!("p{id}:1"), "s");
                let chunks = if id < 20 {
                    ChunkSet::full(2)
                } else {
                    set(2, &[0])
                };
                h.announce(conn, &m, chunks);
            }
            let asker = h.connect(100, "", "s");
            h.locate(asker, m.content_id())
        };
        let peers = run(1);
        assert_eq!(peers.len(), 8);
        let full = peers.iter().filter(|p| p.chunks.is_full()).count();
        assert_eq!(full, 4, "half full sources, half partial");
        assert_eq!(run(1), peers, "same seed, same sample");
        assert_ne!(run(2), peers, "another seed samples differently");
    }

    #[test]
    fn replies_fit_in_one_frame() {
        let mut h = Harness::new();
        let addr = "x".repeat(STRING_LEN_MAX);
        let count = FRAME_LEN_MAX as usize / (STRING_LEN_MAX + 46) + 10;
        let mut conn = ConnId(0);
        for id in 0..count as u64 {
            conn = h.connect(id, &addr, "s");
        }
        let peers = h.list_peers(conn);
        assert!(peers.len() < count);
        assert!(peers.len() + 20 > count);
        let frame = Message::PeerList { peers }.to_frame();
        let mut decoder = FrameDecoder::new();
        decoder.feed(&frame);
        assert!(matches!(
            decoder.next_message(),
            Ok(Some(Message::PeerList { .. }))
        ));
    }

    #[test]
    fn truncation_respects_count_and_bytes() {
        let mut items = vec![1usize; 10];
        truncate_to_frame(&mut items, 4, 0, |_| 1);
        assert_eq!(items.len(), 4);
        let mut items = vec![FRAME_LEN_MAX as usize / 3; 10];
        truncate_to_frame(&mut items, 100, 5, |&n| n);
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn random_operations_keep_the_counters_true() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let manifests = [
            manifest("a", 3, 1),
            manifest("b", 9, 2),
            manifest("c", 1, 3),
        ];
        let mut h = Harness::with(TrackerConfig {
            tracker_id: PeerId(0x7777),
            contents_per_peer_max: 2,
            ..TrackerConfig::default()
        });
        let mut conns: Vec<ConnId> = Vec::new();
        for step in 0..3000 {
            let m = &manifests[rng.random_range(0..manifests.len())];
            let n = m.chunk_count();
            let conn = conns
                .get(rng.random_range(0..conns.len().max(1)))
                .copied()
                .unwrap_or(ConnId(u64::MAX));
            let random_set = |rng: &mut ChaCha8Rng| {
                let mut set = ChunkSet::new(n);
                for i in 0..n {
                    if rng.random_bool(0.5) {
                        set.insert(i);
                    }
                }
                set
            };
            let message = match rng.random_range(0..14) {
                0..=1 => {
                    let conn = h.tracker.accept(h.now);
                    conns.push(conn);
                    let peer = rng.random_range(0..6u64);
                    let addr = if peer == 5 { "" } else { "p:1" };
                    let swarm = if rng.random_bool(0.8) { "s" } else { "t" };
                    h.tracker
                        .handle_message(h.now, conn, hello(peer, addr, swarm));
                    h.drain();
                    continue;
                }
                2..=4 => Message::Announce {
                    manifest: m.clone(),
                    chunks: random_set(&mut rng),
                },
                5..=6 => Message::Have {
                    content_id: m.content_id(),
                    chunk_indices: (0..rng.random_range(0..4))
                        .map(|_| rng.random_range(0..n + 2))
                        .collect(),
                },
                7 => Message::Withdraw {
                    content_id: m.content_id(),
                },
                8 => Message::Locate {
                    content_id: m.content_id(),
                },
                9 => Message::ListFiles,
                10 => Message::Heartbeat {
                    uploaded_bytes: step,
                    downloaded_bytes: 0,
                },
                11 => {
                    h.tracker.handle_closed(h.now, conn);
                    h.drain();
                    continue;
                }
                12 => {
                    h.advance(Duration::from_secs(rng.random_range(0..4)));
                    h.tracker.handle_timeout(h.now);
                    h.drain();
                    continue;
                }
                _ => Message::Goodbye,
            };
            h.send(conn, message);
            if let Err(e) = h.tracker.check_invariants() {
                panic!("step {step}: {e}");
            }
            for file in h.tracker.known_files("s") {
                let union = h
                    .tracker
                    .holders(file.content_id)
                    .iter()
                    .filter(|(p, _)| p.0 != 5 && h.tracker.sessions[p].swarm == "s")
                    .fold(ChunkSet::new(file.chunk_count), |mut u, (_, c)| {
                        u.union_with(c);
                        u
                    });
                assert_eq!(
                    file.complete,
                    union.is_full() && file.peers > 0,
                    "step {step}"
                );
            }
        }
    }
}
