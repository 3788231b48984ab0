//! The peer machine: a tracker session, connections to other peers, serving the chunks it
//! holds, and its downloads.
//!
//! Inputs are `handle_*(now, …)` calls and user commands (`publish`, `download`, `cancel`);
//! outputs are [`PeerAction`]s from [`Peer::poll_action`], drained after every input. The
//! driver carries out connects, sends, closes, chunk reads and verify-and-store, and reports
//! back with the matching `handle_*` call.

pub mod coop;
pub mod download;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use self::coop::Coop;
use self::download::scheduler::SchedulerConfig;
use self::download::{BlockMismatch, Download, DownloadPhase};
use crate::chunkset::ChunkSet;
use crate::ids::{ConnId, ContentId, PeerId};
use crate::manifest::{ChunkCheck, Manifest};
use crate::time::{Instant, earliest};
use crate::wire::{BLOCK_LEN_MAX, Message, PEERS_LEN_MAX, PROTOCOL_VERSION, PeerChunks};

/// Most peers named in one `PeerExchange` we send.
const PEER_EXCHANGE_MAX: usize = 32;

/// Tuning of a peer. `Default` suits a LAN; the simulator and tests shorten the timers.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    pub peer_id: PeerId,
    /// Peers only talk to peers and trackers of the same swarm.
    pub swarm: String,
    /// The address other peers reach this one at ("" when it does not accept connections).
    pub listen_addr: String,
    /// Tracker addresses, tried in turn.
    pub trackers: Vec<String>,
    pub rng_seed: u64,
    pub heartbeat_interval: Duration,
    /// First wait before reconnecting to the tracker; doubles per failure up to the max.
    pub tracker_backoff_min: Duration,
    pub tracker_backoff_max: Duration,
    pub ping_interval: Duration,
    /// A peer connection that is silent this long is closed.
    pub connection_idle_timeout: Duration,
    /// How long a handshake may take before the connection is dropped.
    pub handshake_timeout: Duration,
    /// Most open peer connections, both directions.
    pub connections_max: usize,
    /// Connected sources a download tries to keep.
    pub sources_per_download: usize,
    /// Chunk reads in flight plus pieces not yet written, per connection: bounds the bytes
    /// buffered for one requester to this many blocks.
    pub serve_blocks_in_flight_max: u32,
    /// The same, over all connections together: bounds the bytes waiting in the uplink.
    pub serve_blocks_in_flight_total_max: u32,
    /// Requests queued per connection; more are rejected.
    pub serve_queue_max: usize,
    /// How often a running download asks the tracker for more peers.
    pub locate_interval: Duration,
    /// The first re-locate of a download comes after this; the wait doubles up to
    /// `locate_interval`. Short, so that a crowd arriving with its seeder (whose announce
    /// may reach the tracker just after their first locate) finds it at once.
    pub locate_interval_min: Duration,
    /// How often, at most, a download whose needed chunks have no known source asks its
    /// connected peers for their bitfields again.
    pub resync_interval: Duration,
    /// Chunks handed to the driver to verify and store and not yet reported: bounds the
    /// memory of a download whose disk or hashing is slower than its network.
    pub stores_in_flight_max: usize,
    /// How long the haves gained go unsent to the tracker, to batch them.
    pub have_batch_delay: Duration,
    /// A download gives up after this long without a source for some chunk it needs.
    pub stall_timeout: Duration,
    pub scheduler: SchedulerConfig,
    /// Whether this peer takes ranges of other peers' cooperative origin downloads.
    pub help_others: bool,
    /// Requests this peer keeps in flight to an origin, as fetcher or helper.
    pub origin_connections: u32,
    /// A helper that delivers nothing for a range this long loses it to others.
    pub coop_range_timeout: Duration,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            peer_id: PeerId(0),
            swarm: "default".into(),
            listen_addr: String::new(),
            trackers: Vec::new(),
            rng_seed: 0,
            heartbeat_interval: Duration::from_secs(2),
            tracker_backoff_min: Duration::from_millis(100),
            tracker_backoff_max: Duration::from_secs(5),
            ping_interval: Duration::from_secs(2),
            connection_idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            connections_max: 128,
            sources_per_download: 48,
            serve_blocks_in_flight_max: 4,
            serve_blocks_in_flight_total_max: 4,
            serve_queue_max: 512,
            locate_interval: Duration::from_secs(3),
            locate_interval_min: Duration::from_millis(25),
            resync_interval: Duration::from_millis(250),
            stores_in_flight_max: 8,
            have_batch_delay: Duration::from_millis(100),
            stall_timeout: Duration::from_secs(60),
            scheduler: SchedulerConfig::default(),
            help_others: true,
            origin_connections: 1,
            coop_range_timeout: Duration::from_secs(30),
        }
    }
}

/// How storing a chunk went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Verified against its hash and written.
    Stored,
    /// The data does not match the expected hash: nothing was written.
    HashMismatch,
    /// A local failure (disk full, permissions).
    Io(String),
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerAction {
    /// Open a connection to `addr`; report `handle_connected` or `handle_closed`.
    Connect {
        conn: ConnId,
        addr: String,
    },
    Send {
        conn: ConnId,
        message: Message,
    },
    /// Close the connection. No `handle_closed` is needed for it.
    Close {
        conn: ConnId,
    },
    /// Read bytes of a held chunk; report `handle_read`.
    ReadChunk {
        token: u64,
        content_id: ContentId,
        chunk_index: u32,
        offset: u32,
        length: u32,
    },
    /// Write `data` only if `check.matches` it; report `handle_stored`.
    StoreChunk {
        token: u64,
        content_id: ContentId,
        chunk_index: u32,
        check: ChunkCheck,
        data: Bytes,
    },
    /// Make room for the download (`NAME.part`), check which chunks are already on disk,
    /// and report `download_prepared`.
    PrepareDownload {
        content_id: ContentId,
        manifest: Manifest,
    },
    /// Fetch `length` bytes at `offset` of `url` with `Range` and `If-Range: validator`;
    /// report `handle_range_fetched`.
    FetchRange {
        token: u64,
        url: String,
        validator: String,
        offset: u64,
        length: u32,
    },
    /// Write a fetched range of a cooperative download at `offset` of its file; report
    /// `handle_range_written`.
    WriteRange {
        token: u64,
        job_id: u64,
        offset: u64,
        data: Bytes,
    },
    /// Something for the user.
    Notify(PeerNotice),
}

/// Events a driver shows to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerNotice {
    TrackerConnected {
        addr: String,
    },
    TrackerLost {
        addr: String,
    },
    Progress {
        content_id: ContentId,
        chunks_have: u32,
        chunk_count: u32,
        bytes_have: u64,
        size: u64,
        sources: usize,
    },
    /// Every chunk is verified and stored: the driver syncs and renames the file.
    DownloadComplete {
        content_id: ContentId,
    },
    DownloadFailed {
        content_id: ContentId,
        reason: String,
        missing_chunks: Vec<u32>,
    },
    PeerBanned {
        content_id: ContentId,
        peer_id: PeerId,
        addr: String,
    },
    /// A range of a cooperative download is written; `by` is who fetched it.
    RangeFetched {
        job_id: u64,
        range_index: u32,
        offset: u64,
        length: u32,
        by: String,
    },
    FetchProgress {
        job_id: u64,
        bytes_done: u64,
        size: u64,
        /// Bytes delivered per participant ("local" or a helper's address).
        by_participant: Vec<(String, u64)>,
    },
    /// Every range is written: the driver verifies, syncs and renames the file.
    FetchComplete {
        job_id: u64,
    },
    FetchFailed {
        job_id: u64,
        reason: String,
    },
}

/// Where a connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    /// Outgoing, waiting for the driver's `handle_connected`.
    Connecting,
    /// Outgoing, `Hello` sent, waiting for `Welcome`.
    AwaitingWelcome,
    /// Incoming, waiting for `Hello`.
    AwaitingHello,
    Ready,
}

/// A request we are serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ServeRequest {
    content_id: ContentId,
    chunk_index: u32,
    offset: u32,
    length: u32,
}

/// A connection to another peer.
pub(crate) struct PeerConn {
    state: ConnState,
    outgoing: bool,
    /// Known after the handshake.
    pub(crate) remote: Option<PeerId>,
    pub(crate) addr: String,
    opened_at: Instant,
    last_received: Instant,
    next_ping_at: Instant,
    /// Nonce and send time of the ping in flight.
    ping_in_flight: Option<(u64, Instant)>,
    /// Contents the remote said it wants: it gets our `Have`s for them.
    remote_interests: BTreeSet<ContentId>,
    /// Contents we said we want on this connection.
    our_interests: BTreeSet<ContentId>,
    serve_queue: VecDeque<ServeRequest>,
    /// Reads in flight plus pieces handed to the driver and not yet written.
    serve_blocks_in_flight: u32,
}

/// The tracker session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TrackerState {
    /// Not connected; the next attempt is at `retry_at`.
    Idle {
        retry_at: Instant,
    },
    Connecting {
        conn: ConnId,
    },
    AwaitingWelcome {
        conn: ConnId,
    },
    Ready {
        conn: ConnId,
    },
}

/// A content this peer holds some verified chunks of (or is about to).
struct Held {
    manifest: Manifest,
    chunks: ChunkSet,
    /// How many times this peer has started sending each chunk: serving prefers the chunks
    /// it has sent least, so a seeder hands out every chunk once before any twice.
    times_served: Vec<u32>,
}

impl Held {
    fn new(manifest: Manifest, chunks: ChunkSet) -> Held {
        let times_served = vec![0; chunks.len() as usize];
        Held {
            manifest,
            chunks,
            times_served,
        }
    }

    /// Serving order of a request: lower goes first. The rest of a chunk already begun
    /// comes before any new chunk.
    fn serve_rank(&self, request: &ServeRequest) -> u32 {
        if request.offset > 0 {
            return 0;
        }
        self.times_served
            .get(request.chunk_index as usize)
            .map_or(0, |&n| n.saturating_add(1))
    }
}

/// What a read or store token stands for.
#[derive(Clone, Copy, Debug)]
enum Pending {
    Read {
        conn: ConnId,
        request: ServeRequest,
    },
    Store {
        content_id: ContentId,
        chunk_index: u32,
        from: PeerId,
    },
}

/// The peer machine. See the module docs for the contract.
pub struct Peer {
    pub(crate) config: PeerConfig,
    pub(crate) rng: ChaCha8Rng,
    next_conn_id: u64,
    next_token: u64,
    pub(crate) actions: VecDeque<PeerAction>,
    tracker: TrackerState,
    tracker_addr_index: usize,
    tracker_failures: u32,
    next_heartbeat_at: Instant,
    pub(crate) conns: BTreeMap<ConnId, PeerConn>,
    /// Ready connections by remote peer id.
    pub(crate) conn_by_peer: BTreeMap<PeerId, ConnId>,
    held: BTreeMap<ContentId, Held>,
    downloads: BTreeMap<ContentId, Download>,
    /// Peers banned per content: they sent a chunk that failed its hash.
    banned: BTreeMap<ContentId, BTreeSet<PeerId>>,
    pending: BTreeMap<u64, Pending>,
    /// Contents announced on the current tracker session: the tracker ignores a `Have` for
    /// a content not announced first, so the first chunk of a download goes as an `Announce`.
    announced: BTreeSet<ContentId>,
    /// Chunks gained and not yet told to the tracker.
    unsent_haves: BTreeMap<ContentId, Vec<u32>>,
    haves_flush_at: Option<Instant>,
    pub(crate) uploaded_bytes: u64,
    downloaded_bytes: u64,
    /// Blocks being read or written out, over all connections.
    serve_blocks_in_flight_total: u32,
    /// The connection served last: serving goes round the connections from there.
    serve_cursor: ConnId,
    /// The latest `now` given to the machine, for deadlines set deep inside helpers.
    now_hint: Instant,
    /// Cooperative origin downloads, as fetcher and as helper.
    pub(crate) coop: Coop,
    /// Origins (URL and validator) of held contents, told to the tracker on every session.
    origins: BTreeMap<ContentId, String>,
    /// When a running fetch next asks the tracker for helpers.
    next_helper_scan_at: Instant,
    /// The earliest connection deadline, `None` when it must be computed again. Scanning
    /// every connection in every `poll_timeout` (after every input) dominated large swarms;
    /// whatever moves a connection's deadline calls `conn_deadlines_changed`.
    earliest_conn_deadline: Cell<Option<Option<Instant>>>,
}

impl Peer {
    pub fn new(config: PeerConfig, now: Instant) -> Peer {
        Peer {
            rng: ChaCha8Rng::seed_from_u64(config.rng_seed),
            config,
            next_conn_id: 1,
            next_token: 1,
            actions: VecDeque::new(),
            tracker: TrackerState::Idle { retry_at: now },
            tracker_addr_index: 0,
            tracker_failures: 0,
            next_heartbeat_at: now,
            conns: BTreeMap::new(),
            conn_by_peer: BTreeMap::new(),
            held: BTreeMap::new(),
            downloads: BTreeMap::new(),
            banned: BTreeMap::new(),
            pending: BTreeMap::new(),
            announced: BTreeSet::new(),
            unsent_haves: BTreeMap::new(),
            haves_flush_at: None,
            uploaded_bytes: 0,
            downloaded_bytes: 0,
            now_hint: now,
            serve_blocks_in_flight_total: 0,
            serve_cursor: ConnId(0),
            coop: Coop::default(),
            origins: BTreeMap::new(),
            next_helper_scan_at: now,
            earliest_conn_deadline: Cell::new(None),
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.config.peer_id
    }

    // ------------------------------------------------------------------ inspection

    /// Verified chunks held of a content.
    pub fn held_chunks(&self, content_id: ContentId) -> Option<&ChunkSet> {
        self.held.get(&content_id).map(|h| &h.chunks)
    }

    /// Manifests of everything held (fully or partly).
    pub fn held_contents(&self) -> impl Iterator<Item = (&ContentId, &Manifest, &ChunkSet)> {
        self.held.iter().map(|(id, h)| (id, &h.manifest, &h.chunks))
    }

    pub fn download_phase(&self, content_id: ContentId) -> Option<DownloadPhase> {
        self.downloads.get(&content_id).map(|d| d.phase.clone())
    }

    /// Connected peers serving chunks to a download.
    pub fn source_count(&self, content_id: ContentId) -> usize {
        self.downloads
            .get(&content_id)
            .and_then(|d| d.scheduler.as_ref())
            .map_or(0, |s| s.peer_count())
    }

    pub fn is_tracker_ready(&self) -> bool {
        matches!(self.tracker, TrackerState::Ready { .. })
    }

    pub fn uploaded_bytes(&self) -> u64 {
        self.uploaded_bytes
    }

    pub fn downloaded_bytes(&self) -> u64 {
        self.downloaded_bytes
    }

    /// Open peer connections (any state).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    // ------------------------------------------------------------------ outputs

    /// The next thing for the driver to do. Drain after every input.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<PeerAction> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` next wants to run. Changes after any input.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = None;
        match self.tracker {
            TrackerState::Idle { retry_at } if !self.config.trackers.is_empty() => {
                next = Some(retry_at)
            }
            TrackerState::Ready { .. } => next = Some(self.next_heartbeat_at),
            _ => {}
        }
        next = earliest(next, self.haves_flush_at);
        next = earliest(next, self.coop.poll_timeout());
        if self.coop.has_active_fetch() {
            next = earliest(next, Some(self.next_helper_scan_at));
        }
        next = earliest(next, self.earliest_conn_deadline());
        for download in self.downloads.values() {
            if download.is_finished() {
                continue;
            }
            next = earliest(next, Some(download.next_locate_at));
            if let Some(since) = download.stalled_since {
                next = earliest(next, Some(since + self.config.stall_timeout));
            }
            if let Some(scheduler) = &download.scheduler {
                next = earliest(next, scheduler.poll_timeout());
            }
        }
        next
    }

    fn earliest_conn_deadline(&self) -> Option<Instant> {
        let scan = || self.conns.values().map(|c| c.deadline(&self.config)).min();
        match self.earliest_conn_deadline.get() {
            Some(cached) => {
                debug_assert_eq!(cached, scan(), "a connection deadline moved unseen");
                cached
            }
            None => {
                let fresh = scan();
                self.earliest_conn_deadline.set(Some(fresh));
                fresh
            }
        }
    }

    /// A connection came, went, or changed its handshake, ping or idle deadline.
    fn conn_deadlines_changed(&self) {
        self.earliest_conn_deadline.set(None);
    }

    // ------------------------------------------------------------------ user commands

    /// Starts serving a complete file whose chunks are all on disk.
    pub fn publish(&mut self, now: Instant, manifest: Manifest) {
        let content_id = manifest.content_id();
        let chunks = ChunkSet::full(manifest.chunk_count());
        self.held.insert(content_id, Held::new(manifest, chunks));
        self.announce(content_id);
        self.pump(now);
    }

    /// Tells the tracker (now and after every reconnect) that a held content is the file at
    /// `origin` (a URL and its validator), so later fetches of it come from the swarm.
    pub fn set_origin(&mut self, now: Instant, content_id: ContentId, origin: String) {
        self.origins.insert(content_id, origin.clone());
        self.send_to_tracker(Message::SetOrigin { content_id, origin });
        self.pump(now);
    }

    /// Stops serving a content (and forgets it).
    pub fn unpublish(&mut self, now: Instant, content_id: ContentId) {
        self.held.remove(&content_id);
        self.announced.remove(&content_id);
        self.send_to_tracker(Message::Withdraw { content_id });
        self.pump(now);
    }

    /// Starts downloading `content_id`. With a manifest it must match the id; without one,
    /// the manifest is asked of the tracker and of peers.
    pub fn download(&mut self, now: Instant, content_id: ContentId, manifest: Option<Manifest>) {
        if self
            .downloads
            .get(&content_id)
            .is_some_and(|d| !d.is_finished())
        {
            return;
        }
        if self
            .held
            .get(&content_id)
            .is_some_and(|h| h.chunks.is_full())
        {
            self.notify(PeerNotice::DownloadComplete { content_id });
            return;
        }
        let mut download = Download::new(now, content_id);
        if let Some(manifest) = manifest.filter(|m| m.verify(content_id).is_ok()) {
            download.manifest = Some(manifest.clone());
            download.phase = DownloadPhase::Preparing;
            self.actions.push_back(PeerAction::PrepareDownload {
                content_id,
                manifest,
            });
        }
        self.downloads.insert(content_id, download);
        self.ask_tracker_about(content_id);
        let ready: Vec<ConnId> = self.ready_conns().collect();
        for conn in ready {
            self.express_interest(conn, content_id);
        }
        self.pump(now);
    }

    /// The driver prepared the download's file: `have` lists chunks verified on disk
    /// (resume), or the preparation failed.
    pub fn download_prepared(
        &mut self,
        now: Instant,
        content_id: ContentId,
        result: Result<ChunkSet, String>,
    ) {
        let Some(download) = self.downloads.get_mut(&content_id) else {
            return;
        };
        if download.phase != DownloadPhase::Preparing {
            return;
        }
        let Some(manifest) = download.manifest.clone() else {
            return;
        };
        let have = match result {
            Ok(have) if have.len() == manifest.chunk_count() => have,
            Ok(have) => {
                let reason = format!(
                    "the driver reported {} chunks on disk for a file of {}",
                    have.len(),
                    manifest.chunk_count()
                );
                self.fail_download(content_id, reason);
                return;
            }
            Err(reason) => {
                self.fail_download(content_id, format!("cannot prepare the file: {reason}"));
                return;
            }
        };
        let seed = self.rng.random();
        download.activate(self.config.scheduler.clone(), have.clone(), seed);
        self.held.insert(content_id, Held::new(manifest, have));
        self.announce(content_id);
        // Peers that asked before we knew the file got `NotFound`: they get our bitfield
        // now, and our haves from here on.
        let chunks = self.held.get(&content_id).map(|h| h.chunks.clone());
        let waiting = self.conns_wanting(content_id);
        if let Some(chunks) = chunks {
            for conn in waiting {
                let bitfield = Message::Bitfield {
                    content_id,
                    chunks: chunks.clone(),
                };
                self.send(conn, bitfield);
            }
        }
        self.report_progress(content_id);
        self.check_complete(content_id);
        self.pump(now);
    }

    /// Stops a download. Chunks already verified stay held and served.
    pub fn cancel(&mut self, now: Instant, content_id: ContentId) {
        if let Some(mut download) = self.downloads.remove(&content_id) {
            let in_transit: Vec<(u32, PeerId)> = download.assemblies.keys().copied().collect();
            for (chunk_index, peer) in in_transit {
                let blocks = download.abandon_chunk(chunk_index, peer);
                self.send_cancels(peer, content_id, chunk_index, &blocks);
            }
        }
        self.pump(now);
    }

    /// Leaves politely: goodbye to the tracker and every peer, then closes everything.
    pub fn shutdown(&mut self, _now: Instant) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.send(conn, Message::Goodbye);
            self.actions.push_back(PeerAction::Close { conn });
        }
        self.conns.clear();
        self.conn_deadlines_changed();
        self.conn_by_peer.clear();
        if let TrackerState::Ready { conn }
        | TrackerState::AwaitingWelcome { conn }
        | TrackerState::Connecting { conn } = self.tracker
        {
            self.flush_haves();
            self.send(conn, Message::Goodbye);
            self.actions.push_back(PeerAction::Close { conn });
        }
        // Far future: no reconnect after a shutdown.
        self.tracker = TrackerState::Idle {
            retry_at: Instant::from_nanos(u64::MAX),
        };
        self.config.trackers.clear();
    }

    // ------------------------------------------------------------------ connection events

    /// A peer connected to us. Returns its id, or `None` when at the connection limit (the
    /// driver closes the socket).
    pub fn accept(&mut self, now: Instant) -> Option<ConnId> {
        if self.conns.len() >= self.config.connections_max {
            return None;
        }
        let conn = self.new_conn_id();
        self.conns
            .insert(conn, PeerConn::new(now, false, String::new()));
        self.conn_deadlines_changed();
        Some(conn)
    }

    /// An outgoing connection is open.
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId) {
        let hello = self.hello();
        if self.tracker == (TrackerState::Connecting { conn }) {
            self.tracker = TrackerState::AwaitingWelcome { conn };
            self.send(conn, hello);
            return;
        }
        if let Some(c) = self.conns.get_mut(&conn)
            && c.state == ConnState::Connecting
        {
            c.state = ConnState::AwaitingWelcome;
            c.last_received = now;
            self.conn_deadlines_changed();
            self.send(conn, hello);
        }
    }

    /// A connection closed, failed to open, or broke.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        if self.tracker_conn() == Some(conn) {
            self.tracker_lost(now);
            return;
        }
        self.drop_conn(conn);
        self.pump(now);
    }

    /// A message arrived on a connection.
    pub fn handle_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        if self.tracker_conn() == Some(conn) {
            self.on_tracker_message(now, conn, message);
        } else if self.conns.contains_key(&conn) {
            self.on_peer_message(now, conn, message);
        }
        self.pump(now);
    }

    /// The driver wrote a `Piece` we sent on `conn` to the socket: room for another read.
    pub fn handle_sent(&mut self, now: Instant, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn)
            && c.serve_blocks_in_flight > 0
        {
            c.serve_blocks_in_flight -= 1;
            self.serve_blocks_in_flight_total = self.serve_blocks_in_flight_total.saturating_sub(1);
        }
        self.pump_serving();
        let _ = now;
    }

    /// A `ReadChunk` finished.
    pub fn handle_read(&mut self, now: Instant, token: u64, result: Result<Bytes, String>) {
        let Some(Pending::Read { conn, request }) = self.pending.remove(&token) else {
            return;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match result {
            Ok(data) if data.len() == request.length as usize => {
                self.uploaded_bytes += data.len() as u64;
                // Stays counted in flight until the driver reports the piece written.
                self.send(
                    conn,
                    Message::Piece {
                        content_id: request.content_id,
                        chunk_index: request.chunk_index,
                        offset: request.offset,
                        data,
                    },
                );
            }
            _ => {
                if c.serve_blocks_in_flight > 0 {
                    c.serve_blocks_in_flight -= 1;
                    self.serve_blocks_in_flight_total =
                        self.serve_blocks_in_flight_total.saturating_sub(1);
                }
                self.reject(conn, &request);
                self.pump_serving();
            }
        }
        let _ = now;
    }

    /// A `StoreChunk` finished.
    pub fn handle_stored(&mut self, now: Instant, token: u64, outcome: StoreOutcome) {
        self.now_hint = now;
        let Some(Pending::Store {
            content_id,
            chunk_index,
            from,
        }) = self.pending.remove(&token)
        else {
            return;
        };
        match outcome {
            StoreOutcome::Stored => self.chunk_verified(content_id, chunk_index),
            StoreOutcome::HashMismatch => self.ban(content_id, from, chunk_index),
            StoreOutcome::Io(reason) => {
                if let Some(s) = self.scheduler_mut(content_id) {
                    s.on_chunk_store_failed(chunk_index);
                }
                self.fail_download(
                    content_id,
                    format!("cannot write chunk {chunk_index}: {reason}"),
                );
            }
        }
        self.pump(now);
    }

    /// Timers: tracker reconnects and heartbeats, pings, idle connections, request
    /// timeouts, periodic locates, stalled downloads.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.tracker {
            TrackerState::Idle { retry_at } if now >= retry_at => self.connect_tracker(now),
            TrackerState::Ready { conn } if now >= self.next_heartbeat_at => {
                self.next_heartbeat_at = now + self.config.heartbeat_interval;
                let heartbeat = Message::Heartbeat {
                    uploaded_bytes: self.uploaded_bytes,
                    downloaded_bytes: self.downloaded_bytes,
                };
                self.send(conn, heartbeat);
            }
            _ => {}
        }
        if self.haves_flush_at.is_some_and(|at| now >= at) {
            self.flush_haves();
        }
        self.conn_timers(now);
        self.download_timers(now);
        self.coop_timers(now);
        if self.coop.has_active_fetch() && now >= self.next_helper_scan_at {
            // New helpers may have joined the swarm since the job started.
            self.next_helper_scan_at = now + self.config.locate_interval;
            self.send_to_tracker(Message::ListPeers);
        }
        self.pump(now);
    }

    // ------------------------------------------------------------------ tracker session

    fn tracker_conn(&self) -> Option<ConnId> {
        match self.tracker {
            TrackerState::Idle { .. } => None,
            TrackerState::Connecting { conn }
            | TrackerState::AwaitingWelcome { conn }
            | TrackerState::Ready { conn } => Some(conn),
        }
    }

    fn connect_tracker(&mut self, now: Instant) {
        if self.config.trackers.is_empty() {
            self.tracker = TrackerState::Idle {
                retry_at: Instant::from_nanos(u64::MAX),
            };
            return;
        }
        let addr =
            self.config.trackers[self.tracker_addr_index % self.config.trackers.len()].clone();
        let conn = self.new_conn_id();
        self.tracker = TrackerState::Connecting { conn };
        self.actions.push_back(PeerAction::Connect { conn, addr });
        let _ = now;
    }

    /// The tracker connection failed or broke: back off (exponentially, with jitter) and
    /// try the next tracker address.
    fn tracker_lost(&mut self, now: Instant) {
        let was_ready = matches!(self.tracker, TrackerState::Ready { .. });
        if was_ready {
            let addr = self.current_tracker_addr();
            self.notify(PeerNotice::TrackerLost { addr });
            self.tracker_failures = 0;
        }
        self.tracker_failures = self.tracker_failures.saturating_add(1);
        self.tracker_addr_index = self.tracker_addr_index.wrapping_add(1);
        let exponent = self.tracker_failures.saturating_sub(1).min(16);
        let base = self
            .config
            .tracker_backoff_min
            .saturating_mul(1 << exponent)
            .min(self.config.tracker_backoff_max);
        // Jitter in [base/2, base): peers that lost the same tracker do not all come back
        // in the same instant.
        let jitter = self.rng.random_range(0.5..1.0);
        let wait = base.mul_f64(jitter);
        self.tracker = TrackerState::Idle {
            retry_at: now + wait,
        };
    }

    fn current_tracker_addr(&self) -> String {
        if self.config.trackers.is_empty() {
            return String::new();
        }
        self.config.trackers[self.tracker_addr_index % self.config.trackers.len()].clone()
    }

    fn on_tracker_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        match (self.tracker, message) {
            (TrackerState::AwaitingWelcome { .. }, Message::Welcome { version, .. })
                if version == PROTOCOL_VERSION =>
            {
                self.tracker = TrackerState::Ready { conn };
                self.tracker_failures = 0;
                self.next_heartbeat_at = now + self.config.heartbeat_interval;
                let addr = self.current_tracker_addr();
                self.notify(PeerNotice::TrackerConnected { addr });
                // The tracker's state is soft: tell it everything again after every
                // (re)connect, then ask again about every running download.
                self.announced.clear();
                let contents: Vec<ContentId> = self.held.keys().copied().collect();
                for content_id in contents {
                    self.announce(content_id);
                }
                let origins: Vec<(ContentId, String)> =
                    self.origins.iter().map(|(c, o)| (*c, o.clone())).collect();
                for (content_id, origin) in origins {
                    self.send_to_tracker(Message::SetOrigin { content_id, origin });
                }
                if self.coop.has_active_fetch() {
                    self.send_to_tracker(Message::ListPeers);
                }
                self.unsent_haves.clear();
                self.haves_flush_at = None;
                let downloads: Vec<ContentId> = self
                    .downloads
                    .iter()
                    .filter(|(_, d)| !d.is_finished())
                    .map(|(id, _)| *id)
                    .collect();
                for content_id in downloads {
                    self.ask_tracker_about(content_id);
                }
            }
            (TrackerState::Ready { .. }, Message::Located { content_id, peers }) => {
                self.on_located(now, content_id, peers);
            }
            (TrackerState::Ready { .. }, Message::ManifestReply { manifest }) => {
                self.on_manifest(manifest);
            }
            (TrackerState::Ready { .. }, Message::PeerList { peers }) => {
                if self.coop.has_active_fetch() {
                    let helpers = peers
                        .into_iter()
                        .map(|p| (p.peer_id, p.listen_addr))
                        .collect();
                    self.connect_to(now, helpers);
                }
            }
            (TrackerState::Ready { .. }, Message::NotFound { .. })
            | (TrackerState::Ready { .. }, Message::OriginResult { .. })
            | (TrackerState::Ready { .. }, Message::FileList { .. }) => {}
            (_, _) => {
                // A refusal, a goodbye or anything out of place: drop the session and
                // reconnect later.
                self.actions.push_back(PeerAction::Close { conn });
                self.tracker_lost(now);
            }
        }
    }

    pub(crate) fn send_to_tracker(&mut self, message: Message) {
        if let TrackerState::Ready { conn } = self.tracker {
            self.send(conn, message);
        }
    }

    fn announce(&mut self, content_id: ContentId) {
        let Some(held) = self.held.get(&content_id) else {
            return;
        };
        // An empty announce would read as a withdrawal: wait for the first chunk.
        if held.chunks.is_empty() || !self.is_tracker_ready() {
            return;
        }
        let message = Message::Announce {
            manifest: held.manifest.clone(),
            chunks: held.chunks.clone(),
        };
        self.unsent_haves.remove(&content_id);
        self.announced.insert(content_id);
        self.send_to_tracker(message);
    }

    fn ask_tracker_about(&mut self, content_id: ContentId) {
        let Some(download) = self.downloads.get(&content_id) else {
            return;
        };
        let needs_manifest = download.manifest.is_none();
        self.send_to_tracker(Message::Locate { content_id });
        if needs_manifest {
            self.send_to_tracker(Message::GetManifest { content_id });
        }
    }

    fn flush_haves(&mut self) {
        self.haves_flush_at = None;
        for (content_id, chunk_indices) in std::mem::take(&mut self.unsent_haves) {
            if self.announced.contains(&content_id) {
                self.send_to_tracker(Message::Have {
                    content_id,
                    chunk_indices,
                });
            } else {
                self.announce(content_id);
            }
        }
    }

    fn on_located(&mut self, now: Instant, content_id: ContentId, peers: Vec<PeerChunks>) {
        let me = self.config.peer_id;
        let my_addr = self.config.listen_addr.clone();
        let banned = self.banned.get(&content_id).cloned().unwrap_or_default();
        let Some(download) = self.downloads.get_mut(&content_id) else {
            return;
        };
        // The tracker's answer is the freshest view: peers it no longer lists are gone.
        download.candidates.clear();
        for peer in peers.into_iter().take(PEERS_LEN_MAX) {
            if peer.peer_id == me || peer.listen_addr == my_addr || banned.contains(&peer.peer_id) {
                continue;
            }
            download.candidates.insert(peer.peer_id, peer.listen_addr);
        }
        self.connect_candidates(now, content_id);
    }

    // ------------------------------------------------------------------ peer connections

    fn hello(&self) -> Message {
        Message::Hello {
            version: PROTOCOL_VERSION,
            peer_id: self.config.peer_id,
            listen_addr: self.config.listen_addr.clone(),
            swarm: self.config.swarm.clone(),
        }
    }

    fn new_conn_id(&mut self) -> ConnId {
        let id = ConnId(self.next_conn_id);
        self.next_conn_id += 1;
        id
    }

    /// Ready connections whose remote said it wants `content_id`.
    fn conns_wanting(&self, content_id: ContentId) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| {
                c.state == ConnState::Ready && c.remote_interests.contains(&content_id)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    pub(crate) fn ready_conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.conns
            .iter()
            .filter(|(_, c)| c.state == ConnState::Ready)
            .map(|(id, _)| *id)
    }

    /// Opens connections to peers not yet connected (for a fetch's helpers), up to the limit.
    fn connect_to(&mut self, now: Instant, peers: Vec<(PeerId, String)>) {
        for (peer_id, addr) in peers {
            if self.conns.len() >= self.config.connections_max {
                break;
            }
            let known = peer_id == self.config.peer_id
                || addr.is_empty()
                || addr == self.config.listen_addr
                || self.conn_by_peer.contains_key(&peer_id)
                || self.conns.values().any(|c| c.addr == addr);
            if !known {
                let conn = self.new_conn_id();
                self.conns
                    .insert(conn, PeerConn::new(now, true, addr.clone()));
                self.conn_deadlines_changed();
                self.actions.push_back(PeerAction::Connect { conn, addr });
            }
        }
    }

    /// Opens connections to candidates of a download until it has enough sources.
    fn connect_candidates(&mut self, now: Instant, content_id: ContentId) {
        let Some(download) = self.downloads.get(&content_id) else {
            return;
        };
        if download.is_finished() {
            return;
        }
        let connected_or_connecting = self
            .conns
            .values()
            .filter(|c| c.our_interests.contains(&content_id) || c.state != ConnState::Ready)
            .count();
        let mut wanted = self
            .config
            .sources_per_download
            .saturating_sub(connected_or_connecting);
        let mut to_connect = Vec::new();
        for (peer_id, addr) in &download.candidates {
            if wanted == 0 || self.conns.len() + to_connect.len() >= self.config.connections_max {
                break;
            }
            let known = self.conn_by_peer.contains_key(peer_id)
                || self.conns.values().any(|c| c.addr == *addr);
            if !known && !addr.is_empty() {
                to_connect.push(addr.clone());
                wanted -= 1;
            }
        }
        for addr in to_connect {
            let conn = self.new_conn_id();
            self.conns
                .insert(conn, PeerConn::new(now, true, addr.clone()));
            self.conn_deadlines_changed();
            self.actions.push_back(PeerAction::Connect { conn, addr });
        }
    }

    fn on_peer_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        // Hearing from the remote only moves this connection's deadline later, so the
        // earliest stays right unless it was this connection's (this runs on every message).
        let before = c.deadline(&self.config);
        c.last_received = now;
        if self
            .earliest_conn_deadline
            .get()
            .is_none_or(|earliest| earliest.is_none_or(|e| before <= e))
        {
            self.earliest_conn_deadline.set(None);
        }
        match (c.state, message) {
            (
                ConnState::AwaitingHello,
                Message::Hello {
                    version,
                    peer_id,
                    listen_addr,
                    swarm,
                },
            ) => {
                if version != PROTOCOL_VERSION || swarm != self.config.swarm {
                    let reason = if version != PROTOCOL_VERSION {
                        format!("protocol version {version} is not {PROTOCOL_VERSION}")
                    } else {
                        format!("swarm '{swarm}' is not '{}'", self.config.swarm)
                    };
                    self.refuse(conn, reason);
                    return;
                }
                c.addr = listen_addr;
                let welcome = Message::Welcome {
                    version: PROTOCOL_VERSION,
                    peer_id: self.config.peer_id,
                };
                self.send(conn, welcome);
                self.identified(now, conn, peer_id);
            }
            (ConnState::AwaitingWelcome, Message::Welcome { version, peer_id }) => {
                if version != PROTOCOL_VERSION {
                    self.refuse(
                        conn,
                        format!("protocol version {version} is not {PROTOCOL_VERSION}"),
                    );
                    return;
                }
                self.identified(now, conn, peer_id);
            }
            (ConnState::Ready, message) => self.on_ready_message(now, conn, message),
            (_, _) => self.refuse(conn, "unexpected message during the handshake".into()),
        }
    }

    /// The handshake finished: `conn` leads to `peer_id`.
    fn identified(&mut self, now: Instant, conn: ConnId, peer_id: PeerId) {
        if peer_id == self.config.peer_id {
            self.close(conn);
            return;
        }
        if let Some(&other) = self.conn_by_peer.get(&peer_id) {
            // Two connections to one peer (both dialled at once, or a stale one): keep the
            // one opened by the lower peer id, so both ends keep the same one; of two in the
            // same direction keep the newer.
            let other_outgoing = self.conns.get(&other).is_some_and(|c| c.outgoing);
            let this_outgoing = self.conns.get(&conn).is_some_and(|c| c.outgoing);
            let keep_outgoing = self.config.peer_id < peer_id;
            let keep_this = this_outgoing == other_outgoing || this_outgoing == keep_outgoing;
            if keep_this {
                self.close(other);
            } else {
                self.close(conn);
                return;
            }
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.state = ConnState::Ready;
        c.remote = Some(peer_id);
        c.next_ping_at = now;
        self.conn_deadlines_changed();
        self.conn_by_peer.insert(peer_id, conn);
        let downloads: Vec<ContentId> = self
            .downloads
            .iter()
            .filter(|(_, d)| !d.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for content_id in downloads {
            self.express_interest(conn, content_id);
        }
        self.offer_jobs(conn);
    }

    /// Tells the remote we want `content_id` (and asks for the manifest if we lack it).
    fn express_interest(&mut self, conn: ConnId, content_id: ContentId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.state != ConnState::Ready || !c.our_interests.insert(content_id) {
            return;
        }
        self.send(conn, Message::Interested { content_id });
        let needs_manifest = self
            .downloads
            .get(&content_id)
            .is_some_and(|d| d.manifest.is_none());
        if needs_manifest {
            self.send(conn, Message::GetManifest { content_id });
        }
    }

    fn on_ready_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        let Some(remote) = self.conns.get(&conn).and_then(|c| c.remote) else {
            return;
        };
        match message {
            Message::Interested { content_id } => {
                let reply = match self.held.get(&content_id) {
                    Some(held) => Message::Bitfield {
                        content_id,
                        chunks: held.chunks.clone(),
                    },
                    None => Message::NotFound { content_id },
                };
                let first_time = self
                    .conns
                    .get_mut(&conn)
                    .is_some_and(|c| c.remote_interests.insert(content_id));
                self.send(conn, reply);
                // Peers are named once per connection; a repeated `Interested` (a bitfield
                // resync) only wants the bitfield.
                if first_time {
                    self.exchange_peers(conn, remote, content_id);
                }
            }
            Message::GetManifest { content_id } => {
                let reply = match self.held.get(&content_id) {
                    Some(held) => Message::ManifestReply {
                        manifest: held.manifest.clone(),
                    },
                    None => Message::NotFound { content_id },
                };
                self.send(conn, reply);
            }
            Message::ManifestReply { manifest } => self.on_manifest(manifest),
            Message::NotFound { .. } => {}
            Message::Bitfield { content_id, chunks } => {
                self.on_bitfield(conn, remote, content_id, chunks)
            }
            Message::Have {
                content_id,
                chunk_indices,
            } => {
                if let Some(download) = self.downloads.get_mut(&content_id) {
                    match &mut download.scheduler {
                        Some(s) => {
                            for index in chunk_indices {
                                s.peer_has(remote, index);
                            }
                        }
                        None => {
                            if let Some(set) = download.early_bitfields.get_mut(&remote) {
                                for index in chunk_indices {
                                    set.insert(index);
                                }
                            }
                        }
                    }
                }
            }
            Message::Request {
                content_id,
                chunk_index,
                offset,
                length,
            } => self.on_request(
                conn,
                ServeRequest {
                    content_id,
                    chunk_index,
                    offset,
                    length,
                },
            ),
            Message::Cancel {
                content_id,
                chunk_index,
                offset,
                length,
            } => {
                let cancelled = ServeRequest {
                    content_id,
                    chunk_index,
                    offset,
                    length,
                };
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.serve_queue.retain(|r| *r != cancelled);
                }
            }
            Message::Piece {
                content_id,
                chunk_index,
                offset,
                data,
            } => self.on_piece(now, conn, remote, content_id, chunk_index, offset, data),
            Message::Reject {
                content_id,
                chunk_index,
                ..
            } => {
                if let Some(download) = self.downloads.get_mut(&content_id) {
                    let pending = download.abandon_chunk(chunk_index, remote);
                    if let Some(s) = &mut download.scheduler {
                        s.on_rejected(remote, chunk_index);
                    }
                    // The other blocks of that chunk are not wanted from this peer now.
                    self.send_cancels(remote, content_id, chunk_index, &pending);
                }
            }
            Message::Ping { nonce } => self.send(conn, Message::Pong { nonce }),
            Message::Pong { nonce } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                // A pong we never pinged for is ignored.
                if let Some((expected, sent_at)) = c.ping_in_flight
                    && expected == nonce
                {
                    c.ping_in_flight = None;
                    let rtt = now.saturating_since(sent_at);
                    for download in self.downloads.values_mut() {
                        if let Some(s) = &mut download.scheduler {
                            s.record_rtt(remote, rtt);
                        }
                    }
                }
            }
            Message::PeerExchange { content_id, peers } => {
                let me = self.config.peer_id;
                if let Some(download) = self.downloads.get_mut(&content_id) {
                    for (peer_id, addr) in peers.into_iter().take(PEERS_LEN_MAX) {
                        if peer_id != me && download.candidates.len() < PEERS_LEN_MAX {
                            download.candidates.entry(peer_id).or_insert(addr);
                        }
                    }
                    self.connect_candidates(now, content_id);
                }
            }
            Message::Goodbye => self.close(conn),
            Message::Error { .. } => self.close(conn),
            message @ (Message::OfferJob { .. }
            | Message::TakeWork { .. }
            | Message::AssignRange { .. }
            | Message::DeliverRange { .. }
            | Message::RangeFailed { .. }
            | Message::NoWork { .. }
            | Message::EndJob { .. }) => self.on_coop_message(now, conn, remote, message),
            _ => self.refuse(conn, "message not valid between peers".into()),
        }
    }

    /// Tells a peer that wants `content_id` about other peers here that want or hold it, so
    /// a crowd that arrives at once meshes without waiting for the tracker to list them.
    fn exchange_peers(&mut self, conn: ConnId, asker: PeerId, content_id: ContentId) {
        let peers: Vec<(PeerId, String)> = self
            .conns
            .values()
            .filter(|c| c.state == ConnState::Ready && !c.addr.is_empty())
            .filter(|c| {
                c.remote_interests.contains(&content_id) || c.our_interests.contains(&content_id)
            })
            .filter_map(|c| c.remote.map(|id| (id, c.addr.clone())))
            .filter(|(id, _)| *id != asker)
            .take(PEER_EXCHANGE_MAX)
            .collect();
        if !peers.is_empty() {
            self.send(conn, Message::PeerExchange { content_id, peers });
        }
    }

    fn on_manifest(&mut self, manifest: Manifest) {
        let content_id = manifest.content_id();
        let Some(download) = self.downloads.get_mut(&content_id) else {
            return;
        };
        if download.manifest.is_some() || manifest.verify(content_id).is_err() {
            return;
        }
        download.manifest = Some(manifest.clone());
        download.phase = DownloadPhase::Preparing;
        download.stalled_since = None;
        self.actions.push_back(PeerAction::PrepareDownload {
            content_id,
            manifest,
        });
    }

    fn on_bitfield(
        &mut self,
        conn: ConnId,
        remote: PeerId,
        content_id: ContentId,
        chunks: ChunkSet,
    ) {
        if self
            .banned
            .get(&content_id)
            .is_some_and(|b| b.contains(&remote))
        {
            return;
        }
        let Some(download) = self.downloads.get_mut(&content_id) else {
            return;
        };
        if let Some(manifest) = &download.manifest
            && chunks.len() != manifest.chunk_count()
        {
            self.refuse(conn, "bitfield length does not match the manifest".into());
            return;
        }
        match &mut download.scheduler {
            Some(s) => s.add_peer(remote, chunks),
            None => {
                download.early_bitfields.insert(remote, chunks);
            }
        }
    }

    fn on_request(&mut self, conn: ConnId, request: ServeRequest) {
        let valid = self.held.get(&request.content_id).is_some_and(|held| {
            let chunk_len = held.manifest.chunk_len(request.chunk_index);
            held.chunks.contains(request.chunk_index)
                && request.length > 0
                && request.length <= BLOCK_LEN_MAX
                && u64::from(request.offset) + u64::from(request.length) <= u64::from(chunk_len)
        });
        // A chunk this peer already sent can come from whoever got it: while other peers'
        // requests wait here, the repeat is turned away, so the requester asks another holder and
        // this peer's uplink goes to what only it may have (see `pump_serving`).
        let repeat = valid && self.is_repeat(&request) && self.others_waiting(conn);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !valid || repeat || c.serve_queue.len() >= self.config.serve_queue_max {
            self.reject(conn, &request);
            return;
        }
        c.serve_queue.push_back(request);
        self.pump_serving();
    }

    /// Tells the requester this request will not be served.
    fn reject(&mut self, conn: ConnId, request: &ServeRequest) {
        let message = Message::Reject {
            content_id: request.content_id,
            chunk_index: request.chunk_index,
            offset: request.offset,
            length: request.length,
        };
        self.send(conn, message);
    }

    /// Issues reads for queued requests, one block at a time, while the uplink has room.
    /// Few blocks in the uplink at once means each one goes out at full speed and reaches
    /// its requester early, who can then serve it on; many at once would share the uplink
    /// and all arrive late together. The next block is the queued one whose chunk this peer
    /// has sent least (see [`Held::serve_rank`]), ties going round the connections, so a
    /// seeder hands every chunk out once before any twice.
    fn pump_serving(&mut self) {
        while self.serve_blocks_in_flight_total < self.config.serve_blocks_in_flight_total_max {
            let Some((rank, conn, position)) = self.best_queued() else {
                return;
            };
            let others_wait = self.others_waiting(conn);
            self.serve_cursor = conn;
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let Some(request) = c.serve_queue.remove(position) else {
                return;
            };
            if rank > 1 && others_wait {
                // Only repeats are left: serving them one at a time to whoever asked last
                // and turning the others away makes every chunk spread from each new
                // holder at once, instead of from this peer to a queue of everyone.
                self.reject(conn, &request);
                continue;
            }
            if request.offset == 0
                && let Some(held) = self.held.get_mut(&request.content_id)
                && let Some(n) = held.times_served.get_mut(request.chunk_index as usize)
            {
                *n = n.saturating_add(1);
            }
            c.serve_blocks_in_flight += 1;
            self.serve_blocks_in_flight_total += 1;
            let token = self.next_token();
            self.pending.insert(token, Pending::Read { conn, request });
            self.actions.push_back(PeerAction::ReadChunk {
                token,
                content_id: request.content_id,
                chunk_index: request.chunk_index,
                offset: request.offset,
                length: request.length,
            });
        }
    }

    /// Whether a connection other than `conn` has requests waiting to be served.
    fn others_waiting(&self, conn: ConnId) -> bool {
        self.conns
            .iter()
            .any(|(&id, c)| id != conn && !c.serve_queue.is_empty())
    }

    /// Whether `request` starts a chunk this peer has sent before.
    fn is_repeat(&self, request: &ServeRequest) -> bool {
        self.held
            .get(&request.content_id)
            .is_some_and(|held| held.serve_rank(request) > 1)
    }

    /// The best-ranked queued request (rank, connection, queue position) on a connection
    /// that may take another block now, going round the connections from the last one
    /// served.
    fn best_queued(&self) -> Option<(u32, ConnId, usize)> {
        // Only the head of each queue is ranked beyond this: bounds the work per block
        // whatever a requester queues.
        const RANKED_PER_QUEUE: usize = 32;
        let per_conn_max = self.config.serve_blocks_in_flight_max;
        let cursor = self.serve_cursor;
        let mut best: Option<(u32, ConnId, usize)> = None;
        let round = self
            .conns
            .range(ConnId(cursor.0 + 1)..)
            .chain(self.conns.range(..=cursor));
        for (&id, c) in round {
            if c.serve_blocks_in_flight >= per_conn_max {
                continue;
            }
            for (position, request) in c.serve_queue.iter().take(RANKED_PER_QUEUE).enumerate() {
                let rank = self
                    .held
                    .get(&request.content_id)
                    .map_or(0, |held| held.serve_rank(request));
                if best.is_none_or(|(b, _, _)| rank < b) {
                    best = Some((rank, id, position));
                    if rank <= 1 {
                        // Nothing beats a new chunk never sent or the rest of one begun.
                        return best;
                    }
                }
            }
        }
        best
    }

    #[allow(clippy::too_many_arguments)]
    fn on_piece(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: PeerId,
        content_id: ContentId,
        chunk_index: u32,
        offset: u32,
        data: Bytes,
    ) {
        let Some(download) = self.downloads.get_mut(&content_id) else {
            return;
        };
        let len = data.len() as u64;
        let complete = match download.accept_block(chunk_index, remote, offset, data) {
            Ok(complete) => complete,
            Err(BlockMismatch::NotRequested) => return,
            Err(BlockMismatch::WrongLength) => {
                self.refuse(conn, "piece length does not match the request".into());
                return;
            }
        };
        self.downloaded_bytes += len;
        let Some(scheduler) = &mut download.scheduler else {
            return;
        };
        scheduler.on_bytes_received(now, remote, chunk_index, len);
        let Some(data) = complete else {
            return;
        };
        let losers = scheduler.on_chunk_received(now, remote, chunk_index);
        let Some(check) = download
            .manifest
            .as_ref()
            .and_then(|m| m.chunk_check(chunk_index))
        else {
            return;
        };
        let mut cancels = Vec::new();
        for loser in losers {
            let blocks = download.abandon_chunk(chunk_index, loser);
            cancels.push((loser, blocks));
        }
        for (loser, blocks) in cancels {
            self.send_cancels(loser, content_id, chunk_index, &blocks);
        }
        let token = self.next_token();
        self.pending.insert(
            token,
            Pending::Store {
                content_id,
                chunk_index,
                from: remote,
            },
        );
        self.actions.push_back(PeerAction::StoreChunk {
            token,
            content_id,
            chunk_index,
            check,
            data,
        });
    }

    fn send_cancels(
        &mut self,
        peer: PeerId,
        content_id: ContentId,
        chunk_index: u32,
        blocks: &[(u32, u32)],
    ) {
        let Some(&conn) = self.conn_by_peer.get(&peer) else {
            return;
        };
        for &(offset, length) in blocks {
            self.send(
                conn,
                Message::Cancel {
                    content_id,
                    chunk_index,
                    offset,
                    length,
                },
            );
        }
    }

    fn conn_timers(&mut self, now: Instant) {
        let mut expired = Vec::new();
        let mut pings = Vec::new();
        for (&id, c) in &mut self.conns {
            match c.state {
                ConnState::Ready => {
                    if now >= c.last_received + self.config.connection_idle_timeout {
                        expired.push(id);
                    } else if now >= c.next_ping_at {
                        c.next_ping_at = now + self.config.ping_interval;
                        let nonce = self.rng.random();
                        c.ping_in_flight = Some((nonce, now));
                        pings.push((id, nonce));
                    }
                }
                _ => {
                    if now >= c.opened_at + self.config.handshake_timeout {
                        expired.push(id);
                    }
                }
            }
        }
        if !pings.is_empty() {
            self.conn_deadlines_changed();
        }
        for (conn, nonce) in pings {
            self.send(conn, Message::Ping { nonce });
        }
        for conn in expired {
            self.close(conn);
        }
    }

    fn download_timers(&mut self, now: Instant) {
        let ids: Vec<ContentId> = self.downloads.keys().copied().collect();
        for content_id in ids {
            let Some(download) = self.downloads.get_mut(&content_id) else {
                continue;
            };
            if download.is_finished() {
                continue;
            }
            let mut expired = Vec::new();
            if let Some(s) = &mut download.scheduler {
                expired = s.handle_timeout(now);
            }
            let mut cancels = Vec::new();
            for (peer, chunk_index) in expired {
                let blocks = download.abandon_chunk(chunk_index, peer);
                cancels.push((peer, chunk_index, blocks));
            }
            // Whether some needed chunk has no source: checked on timers, not on every
            // message, since it scans the whole file.
            let mut resync = false;
            if let Some(s) = &download.scheduler {
                if s.missing_without_source().is_empty() {
                    download.stalled_since = None;
                } else {
                    download.stalled_since.get_or_insert(now);
                    resync = true;
                }
            }
            // At most every `resync_interval`: this runs on every timer of the peer
            // (each connection's ping deadline among them), and asking every connected peer
            // again on each of those floods every connection with `Interested`/`Bitfield`.
            // Not only once per locate round either: a chunk loses its last known source
            // whenever its holders turn a repeat request away, and it should not wait
            // seconds for them to be asked again.
            let resync = resync && now >= download.next_resync_at;
            if resync {
                download.next_resync_at = now + self.config.resync_interval;
            }
            let locate_due = now >= download.next_locate_at;
            if locate_due {
                let early = self
                    .config
                    .locate_interval_min
                    .saturating_mul(1 << download.locates_sent.min(16));
                download.locates_sent = download.locates_sent.saturating_add(1);
                download.next_locate_at = now + early.min(self.config.locate_interval);
            }
            let stalled_out = download.stalled_for(now) >= self.config.stall_timeout
                && download.stalled_since.is_some();
            for (peer, chunk_index, blocks) in cancels {
                self.send_cancels(peer, content_id, chunk_index, &blocks);
            }
            if locate_due {
                self.ask_tracker_about(content_id);
                self.connect_candidates(now, content_id);
            }
            if resync {
                self.resync_bitfields(content_id);
            }
            if stalled_out {
                self.give_up(content_id);
            }
        }
    }

    /// Some needed chunk has no known source: what peers told us may be stale (a rejected
    /// request counts as "does not have"), so ask every connected peer for its bitfield
    /// again.
    fn resync_bitfields(&mut self, content_id: ContentId) {
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == ConnState::Ready && c.our_interests.contains(&content_id))
            .map(|(id, _)| *id)
            .collect();
        for conn in conns {
            self.send(conn, Message::Interested { content_id });
        }
    }

    fn give_up(&mut self, content_id: ContentId) {
        let Some(download) = self.downloads.get(&content_id) else {
            return;
        };
        let stalled = self.config.stall_timeout.as_secs_f64();
        let tracker = if self.is_tracker_ready() {
            "the tracker knows no other source"
        } else {
            "the tracker is unreachable"
        };
        let reason = match &download.scheduler {
            None => format!(
                "no peer or tracker supplied the manifest within {stalled:.0} s ({tracker})"
            ),
            Some(s) => {
                let missing = s.missing_without_source();
                format!(
                    "no reachable peer holds {} of the {} chunks still needed, for {stalled:.0} s ({} peers connected; {tracker})",
                    missing.len(),
                    s.have().len() - s.have().count(),
                    s.peer_count(),
                )
            }
        };
        self.fail_download(content_id, reason);
    }

    fn fail_download(&mut self, content_id: ContentId, reason: String) {
        let Some(download) = self.downloads.get_mut(&content_id) else {
            return;
        };
        if download.is_finished() {
            return;
        }
        download.phase = DownloadPhase::Failed;
        let missing_chunks = download
            .scheduler
            .as_ref()
            .map(|s| s.have().missing().collect())
            .unwrap_or_default();
        self.notify(PeerNotice::DownloadFailed {
            content_id,
            reason,
            missing_chunks,
        });
    }

    // ------------------------------------------------------------------ chunks

    fn scheduler_mut(
        &mut self,
        content_id: ContentId,
    ) -> Option<&mut download::scheduler::Scheduler> {
        self.downloads
            .get_mut(&content_id)
            .and_then(|d| d.scheduler.as_mut())
    }

    fn chunk_verified(&mut self, content_id: ContentId, chunk_index: u32) {
        if let Some(s) = self.scheduler_mut(content_id) {
            s.on_chunk_verified(chunk_index);
        }
        let Some(held) = self.held.get_mut(&content_id) else {
            return;
        };
        if !held.chunks.insert(chunk_index) {
            return;
        }
        // Serve it at once: every peer that wants this content hears of it now; the
        // tracker hears in a batch.
        let interested = self.conns_wanting(content_id);
        for conn in interested {
            self.send(
                conn,
                Message::Have {
                    content_id,
                    chunk_indices: vec![chunk_index],
                },
            );
        }
        self.unsent_haves
            .entry(content_id)
            .or_default()
            .push(chunk_index);
        if self.haves_flush_at.is_none() {
            // Deadline is set relative to the last event; `now` is not needed precisely.
            self.haves_flush_at = Some(self.last_now_hint() + self.config.have_batch_delay);
        }
        self.report_progress(content_id);
        self.check_complete(content_id);
    }

    /// Batching deadlines are measured from the latest time this machine was given. Kept as
    /// a field to avoid threading `now` through every helper.
    fn last_now_hint(&self) -> Instant {
        self.now_hint
    }

    fn ban(&mut self, content_id: ContentId, peer: PeerId, chunk_index: u32) {
        // Several bad chunks from one peer may be in flight: one ban, one notice.
        let newly_banned = self.banned.entry(content_id).or_default().insert(peer);
        if let Some(download) = self.downloads.get_mut(&content_id) {
            download.abandon_peer(peer);
            download.candidates.remove(&peer);
            if let Some(s) = &mut download.scheduler {
                s.on_chunk_failed(peer, chunk_index);
            }
        }
        let addr = self
            .conn_by_peer
            .get(&peer)
            .and_then(|c| self.conns.get(c))
            .map(|c| c.addr.clone())
            .unwrap_or_default();
        if newly_banned {
            self.notify(PeerNotice::PeerBanned {
                content_id,
                peer_id: peer,
                addr,
            });
        }
    }

    fn check_complete(&mut self, content_id: ContentId) {
        let complete = self
            .held
            .get(&content_id)
            .is_some_and(|h| h.chunks.is_full());
        let Some(download) = self.downloads.get_mut(&content_id) else {
            return;
        };
        if complete && download.phase == DownloadPhase::Active {
            download.phase = DownloadPhase::Complete;
            download.assemblies.clear();
            self.flush_haves();
            self.notify(PeerNotice::DownloadComplete { content_id });
        }
    }

    fn report_progress(&mut self, content_id: ContentId) {
        let Some(held) = self.held.get(&content_id) else {
            return;
        };
        let bytes_have = held
            .chunks
            .iter()
            .map(|i| u64::from(held.manifest.chunk_len(i)))
            .sum();
        let notice = PeerNotice::Progress {
            content_id,
            chunks_have: held.chunks.count(),
            chunk_count: held.manifest.chunk_count(),
            bytes_have,
            size: held.manifest.size,
            sources: self.source_count(content_id),
        };
        self.notify(notice);
    }

    /// Hands out requests for every active download, and tracks whether each has a source
    /// for everything it needs.
    fn pump(&mut self, now: Instant) {
        self.now_hint = now;
        let ids: Vec<ContentId> = self.downloads.keys().copied().collect();
        for content_id in ids {
            self.pump_download(now, content_id);
        }
    }

    fn pump_download(&mut self, now: Instant, content_id: ContentId) {
        let Some(download) = self.downloads.get_mut(&content_id) else {
            return;
        };
        match download.phase {
            DownloadPhase::AwaitingManifest => {
                download.stalled_since.get_or_insert(now);
                return;
            }
            DownloadPhase::Active => {}
            _ => return,
        }
        let Some(scheduler) = &mut download.scheduler else {
            return;
        };
        let mut requests = Vec::new();
        // Verified-and-stored is the end of a chunk's life in memory: while too many wait
        // for the disk, ask for no more.
        let stores_in_flight = self
            .pending
            .values()
            .filter(|p| matches!(p, Pending::Store { .. }))
            .count();
        if stores_in_flight < self.config.stores_in_flight_max {
            while let Some((peer, chunk_index)) = scheduler.next_request(now) {
                requests.push((peer, chunk_index));
            }
        }
        for (peer, chunk_index) in requests {
            let blocks = download.begin_chunk(chunk_index, peer);
            let Some(&conn) = self.conn_by_peer.get(&peer) else {
                continue;
            };
            for (offset, length) in blocks {
                self.actions.push_back(PeerAction::Send {
                    conn,
                    message: Message::Request {
                        content_id,
                        chunk_index,
                        offset,
                        length,
                    },
                });
            }
        }
    }

    // ------------------------------------------------------------------ plumbing

    pub(crate) fn next_token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    pub(crate) fn send(&mut self, conn: ConnId, message: Message) {
        self.actions.push_back(PeerAction::Send { conn, message });
    }

    pub(crate) fn notify(&mut self, notice: PeerNotice) {
        self.actions.push_back(PeerAction::Notify(notice));
    }

    /// Sends an error and closes: the remote broke the protocol or is not for us.
    pub(crate) fn refuse(&mut self, conn: ConnId, reason: String) {
        self.send(
            conn,
            Message::Error {
                code: crate::wire::error_code::BAD_MESSAGE,
                message: reason,
            },
        );
        self.close(conn);
    }

    fn close(&mut self, conn: ConnId) {
        if self.conns.contains_key(&conn) {
            self.actions.push_back(PeerAction::Close { conn });
            self.drop_conn(conn);
        }
    }

    /// Forgets a connection: its requests go back to the scheduler, its reads are dropped.
    fn drop_conn(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.conn_deadlines_changed();
        self.coop_conn_closed(conn, c.remote);
        // Its blocks in flight will never be reported sent.
        self.serve_blocks_in_flight_total = self
            .serve_blocks_in_flight_total
            .saturating_sub(c.serve_blocks_in_flight);
        self.pending
            .retain(|_, p| !matches!(p, Pending::Read { conn: c2, .. } if *c2 == conn));
        let Some(remote) = c.remote else {
            return;
        };
        if self.conn_by_peer.get(&remote) == Some(&conn) {
            self.conn_by_peer.remove(&remote);
            for download in self.downloads.values_mut() {
                download.abandon_peer(remote);
                if let Some(s) = &mut download.scheduler {
                    s.remove_peer(remote);
                }
            }
        }
    }
}

impl PeerConn {
    /// When this connection next needs the timer: its ping or idle deadline once ready, its
    /// handshake deadline before.
    fn deadline(&self, config: &PeerConfig) -> Instant {
        match self.state {
            ConnState::Ready => self
                .next_ping_at
                .min(self.last_received + config.connection_idle_timeout),
            _ => self.opened_at + config.handshake_timeout,
        }
    }

    fn new(now: Instant, outgoing: bool, addr: String) -> PeerConn {
        PeerConn {
            state: if outgoing {
                ConnState::Connecting
            } else {
                ConnState::AwaitingHello
            },
            outgoing,
            remote: None,
            addr,
            opened_at: now,
            last_received: now,
            next_ping_at: now,
            ping_in_flight: None,
            remote_interests: BTreeSet::new(),
            our_interests: BTreeSet::new(),
            serve_queue: VecDeque::new(),
            serve_blocks_in_flight: 0,
        }
    }
}
