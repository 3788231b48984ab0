//! The peer machine: a tracker session, connections to other peers, serving the chunks it
//! holds, and its downloads.
//!
//! Inputs are `handle_*(now, …)` calls and user commands (`publish`, `download`, `cancel`);
//! outputs are [`PeerAction`]s from [`Peer::poll_action`], drained after every input. The
//! driver carries out connects, sends, closes, chunk reads and verify-and-store, and reports
//! back with the matching `handle_*` call.
//!
//! This file is the facade: every input and output of [`Peer`]. The steps behind them that
//! need several parts are in `steps` and `peer_messages`. Each part owns its state in its
//! own module: the tracker session (`tracker_session`), connections with their handshake,
//! pings and idle timeouts (`conns`), serving (`serving`), downloads (`download`), peer
//! exchange (`exchange`), the tracker's questions answered from what this peer knows
//! (`answers`), the cooperative origin download (`coop`); the timer kinds and
//! their table are in `timer`, the action queue every part writes to in `output`.

mod action;
mod answers;
mod config;
mod conns;
mod coop;
mod download;
mod exchange;
mod output;
mod peer_messages;
mod serving;
mod steps;
mod timer;
mod tracker_session;
mod trackers;

use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use action::{PeerAction, PeerNotice, StoreOutcome};
pub use config::PeerConfig;
pub use coop::{
    ENDGAME_DUPLICATES_PER_RANGE, ENDGAME_SLOW_AGE_MIN, ENDGAME_SLOW_FACTOR, HELPER_FAILURES_MAX,
    RANGE_LEN_MIN, SPOT_CHECK_LEN, SPOT_CHECKS_PER_HELPER,
};
pub use coop::{
    FetchSpec, HELPER_JOBS_MAX, HELPER_JOBS_PER_CONN_MAX, HELPER_RANGES_HELD_MAX, RANGES_PER_SLOT,
    RangeError, helper_fetches_max, ranges_in_flight_max,
};
pub use download::DownloadPhase;
pub use download::PreparedChunks;
pub use download::scheduler::SchedulerConfig;

use self::conns::Connections;
use self::coop::{Coop, Ctx};
use self::download::{Download, Downloads};
use self::output::Output;
use self::serving::{Held, Serving};
use self::timer::{Timer, TimerTable};
use self::trackers::Trackers;
use crate::chunkset::ChunkSet;
use crate::ids::{ConnId, ContentId, PeerId};
use crate::manifest::Manifest;
use crate::secure::Remote;
use crate::time::Instant;
use crate::wire::Message;

/// Ping intervals a connection must have heard nothing for before a newcomer may take its
/// place at the connection limit: every live one answers a ping each interval.
pub const EVICTABLE_AFTER_PINGS: u32 = 3;
/// Ping intervals a connection must have moved no block and no range for before a newcomer
/// may take its place at the connection limit, when no connection is silent.
pub const EVICTABLE_AFTER_IDLE_PINGS: u32 = 15;

/// The peer machine. See the module docs for the contract.
pub struct Peer {
    config: PeerConfig,
    rng: ChaCha8Rng,
    out: Output,
    trackers: Trackers,
    conns: Connections,
    serving: Serving,
    downloads: Downloads,
    /// Cooperative origin downloads, as fetcher and as helper.
    coop: Coop,
    uploaded_bytes: u64,
    downloaded_bytes: u64,
    /// The latest `now` given to the machine, for deadlines set deep inside helpers.
    now_hint: Instant,
    /// When a running fetch next asks the tracker for helpers.
    next_helper_scan_at: Instant,
}

impl Peer {
    pub fn new(config: PeerConfig, now: Instant) -> Peer {
        Peer {
            rng: ChaCha8Rng::seed_from_u64(config.rng_seed),
            trackers: Trackers::new(now, &config),
            conns: Connections::new(&config),
            config,
            out: Output::new(),
            serving: Serving::new(),
            downloads: Downloads::default(),
            coop: Coop::default(),
            uploaded_bytes: 0,
            downloaded_bytes: 0,
            now_hint: now,
            next_helper_scan_at: now,
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.config.peer_id
    }

    /// The swarm this peer speaks in (the name its `Hello` gives).
    pub fn swarm(&self) -> &str {
        &self.config.swarm
    }

    // ------------------------------------------------------------------ inspection

    /// Verified chunks held of a content.
    pub fn held_chunks(&self, content_id: ContentId) -> Option<&ChunkSet> {
        self.serving.held.get(&content_id).map(|h| &h.chunks)
    }

    pub fn download_phase(&self, content_id: ContentId) -> Option<DownloadPhase> {
        self.downloads.get(content_id).map(|d| d.phase.clone())
    }

    /// Connected peers serving chunks to a download.
    pub fn source_count(&self, content_id: ContentId) -> usize {
        self.downloads
            .get(content_id)
            .map_or(0, Download::source_count)
    }

    pub fn is_tracker_ready(&self) -> bool {
        self.trackers.is_ready()
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

    /// The peers connected now that accept connections, with the address each is reached
    /// at (where it was seen, with the port it listens on): what a driver may remember to
    /// find the swarm again once its trackers are gone.
    pub fn connected_peers(&self) -> Vec<(PeerId, String)> {
        self.conns.listening_peers().collect()
    }

    // ------------------------------------------------------------------ outputs

    /// The next thing for the driver to do. Drain after every input.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<PeerAction> {
        self.out.pop()
    }

    /// When `handle_timeout` next wants to run: the earliest deadline of any timer. Changes
    /// after any input.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer_table().next_timeout()
    }

    /// Every timer's deadline, from the parts that own them.
    fn timer_table(&self) -> TimerTable {
        let mut table = TimerTable::default();
        for timer in Timer::ALL {
            table.set(timer, self.deadline_of(timer));
        }
        table
    }

    /// Coop's state beside its view of the rest of the peer for one step: the fields coop
    /// may use, borrowed apart from its own.
    fn coop_parts(&mut self) -> (&mut Coop, Ctx<'_>) {
        let ctx = Ctx {
            config: &self.config,
            rng: &mut self.rng,
            out: &mut self.out,
            conns: &self.conns,
        };
        (&mut self.coop, ctx)
    }

    fn deadline_of(&self, timer: Timer) -> Option<Instant> {
        match timer {
            Timer::TrackerSession => self.trackers.deadline(),
            Timer::HavesFlush => self.trackers.haves_deadline(),
            Timer::Connections => self.conns.deadline(),
            Timer::Downloads => self
                .downloads
                .iter()
                .filter_map(|d| d.deadline(&self.config))
                .min(),
            Timer::Coop => self.coop.poll_timeout(),
            Timer::HelperScan => self
                .coop
                .has_active_fetch()
                .then_some(self.next_helper_scan_at),
            Timer::ServingStalls => self.serving.deadline(),
        }
    }

    // ------------------------------------------------------------------ user commands

    /// Starts serving a complete file whose chunks are all on disk.
    pub fn publish(&mut self, now: Instant, manifest: Manifest) {
        let content_id = manifest.content_id();
        let chunks = ChunkSet::full(manifest.chunk_count());
        self.serving
            .held
            .insert(content_id, Held::new(manifest, chunks));
        self.announce(content_id);
        self.pump(now);
    }

    /// Tells the tracker (now and after every reconnect) that a held content is the file at
    /// `origin` (a URL and its validator), so later fetches of it come from the swarm.
    pub fn set_origin(&mut self, now: Instant, content_id: ContentId, origin: String) {
        self.trackers.set_origin(content_id, origin, &mut self.out);
        self.pump(now);
    }

    /// Stops serving a content (and forgets it).
    pub fn unpublish(&mut self, now: Instant, content_id: ContentId) {
        self.serving.held.remove(&content_id);
        self.trackers.withdraw(content_id, &mut self.out);
        self.pump(now);
    }

    /// Starts downloading `content_id`. With a manifest it must match the id; without one,
    /// the manifest is asked of the tracker and of peers.
    pub fn download(&mut self, now: Instant, content_id: ContentId, manifest: Option<Manifest>) {
        if self.downloads.is_running(content_id) {
            return;
        }
        if self
            .serving
            .held
            .get(&content_id)
            .is_some_and(|h| h.chunks.is_full())
        {
            self.out.notify(PeerNotice::DownloadComplete { content_id });
            return;
        }
        let mut download = Download::new(now, content_id);
        if let Some(manifest) = manifest
            && download.take_manifest(&manifest)
        {
            self.out.push(PeerAction::PrepareDownload {
                content_id,
                manifest,
            });
        }
        self.downloads.insert(download);
        self.ask_tracker_about(content_id);
        let ready: Vec<ConnId> = self.conns.ready().collect();
        for conn in ready {
            self.express_interest(conn, content_id);
        }
        self.pump(now);
    }

    /// Peers known from elsewhere (met in an earlier run) become candidates of a running
    /// download and are dialled, as peers named by peer exchange are: for when no tracker
    /// answers. The tracker's next answer replaces them.
    pub fn add_candidates(
        &mut self,
        now: Instant,
        content_id: ContentId,
        peers: Vec<(PeerId, String)>,
    ) {
        let me = self.config.peer_id;
        let Some(download) = self.downloads.get_mut(content_id) else {
            return;
        };
        exchange::take(download, peers, me);
        self.connect_candidates(now, content_id);
        self.pump(now);
    }

    /// The driver prepared the download's file: what it found on disk (resume) and which
    /// chunks are wanted, or why the preparation failed.
    pub fn download_prepared(
        &mut self,
        now: Instant,
        content_id: ContentId,
        result: Result<PreparedChunks, String>,
    ) {
        let Some(download) = self.downloads.get_mut(content_id) else {
            return;
        };
        let (manifest, prepared) = match download.check_prepared(result) {
            None => return,
            Some(Ok(prepared)) => prepared,
            Some(Err(reason)) => {
                self.fail_download(content_id, reason);
                return;
            }
        };
        let seed = rand::Rng::random(&mut self.rng);
        let have = prepared.have.clone();
        download.activate(self.config.scheduler.clone(), prepared, seed);
        self.serving
            .held
            .insert(content_id, Held::new(manifest, have));
        self.announce(content_id);
        // Peers that asked before we knew the file got `NotFound`: they get our bitfield
        // now, and our haves from here on.
        let chunks = self.serving.held.get(&content_id).map(|h| h.chunks.clone());
        let waiting = self.conns.wanting(content_id);
        if let Some(chunks) = chunks {
            for conn in waiting {
                let bitfield = Message::Bitfield {
                    content_id,
                    chunks: chunks.clone(),
                };
                self.out.send(conn, bitfield);
            }
        }
        self.report_progress(content_id);
        self.check_complete(content_id);
        self.pump(now);
    }

    /// Stops a download. Chunks already verified stay held and served.
    pub fn cancel(&mut self, now: Instant, content_id: ContentId) {
        if let Some(mut download) = self.downloads.remove(content_id) {
            for (peer, chunk_index, blocks) in download.abandon_all() {
                self.send_cancels(peer, content_id, chunk_index, &blocks);
            }
        }
        self.pump(now);
    }

    /// Leaves politely: goodbye to the tracker and every peer, then closes everything.
    pub fn shutdown(&mut self, _now: Instant) {
        self.conns.shutdown(&mut self.out);
        self.serving.conns_cleared();
        self.trackers.shutdown(&self.serving.held, &mut self.out);
    }

    /// Starts a cooperative fetch of `spec` (the driver has done `HEAD`). Returns the job
    /// id the notices carry. Helpers are found through the tracker's peer list.
    pub fn fetch(&mut self, now: Instant, spec: FetchSpec) -> u64 {
        self.fetch_resuming(now, spec, None)
    }

    /// [`fetch`](Self::fetch), resuming: the ranges in `on_disk` are in the file already
    /// (written and synced by an earlier run of the same URL, validator, size and range
    /// length, as [`PeerNotice::RangeSettled`] said), and are not fetched again. A set of
    /// another length than the job's range count is ignored.
    pub fn fetch_resuming(
        &mut self,
        now: Instant,
        spec: FetchSpec,
        on_disk: Option<&ChunkSet>,
    ) -> u64 {
        let job_id = self.coop.start_fetch(&mut self.rng, spec, on_disk);
        self.trackers.send(&mut self.out, Message::ListPeers);
        let ready: Vec<ConnId> = self.conns.ready().collect();
        let (coop, mut ctx) = self.coop_parts();
        for conn in ready {
            coop.offer_jobs(&mut ctx, conn);
        }
        coop.pump_local_fetches(&mut ctx, now);
        coop.finish_fetch_if_done(&mut ctx, job_id);
        job_id
    }

    /// Stops a fetch (the user gave up): helpers are told.
    pub fn cancel_fetch(&mut self, _now: Instant, job_id: u64) {
        let (coop, mut ctx) = self.coop_parts();
        coop.cancel_fetch(&mut ctx, job_id);
    }

    // ------------------------------------------------------------------ connection events

    /// A peer connected to us from `from` (`IP:PORT`, as the socket saw it) and finished
    /// the secure handshake as `remote`. Returns the connection's id, or `None` when at the
    /// connection limit (the driver closes the socket).
    ///
    /// At the limit, the incoming connection silent for longest (at least
    /// [`EVICTABLE_AFTER_PINGS`] ping intervals) is closed to make room, else the one that
    /// moved no data for longest (at least [`EVICTABLE_AFTER_IDLE_PINGS`]): connections
    /// opened and left idle, answering pings or not, cannot lock newcomers out.
    pub fn accept(&mut self, now: Instant, remote: Remote, from: String) -> Option<ConnId> {
        if self.conns.is_full(&self.config) {
            let silence = self.config.ping_interval * EVICTABLE_AFTER_PINGS;
            let idle = self.config.ping_interval * EVICTABLE_AFTER_IDLE_PINGS;
            let evicted = self
                .conns
                .longest_silent(now, silence)
                .or_else(|| self.conns.longest_unproductive(now, idle))?;
            self.close(evicted);
        }
        self.conns
            .accept(now, remote.peer_id, from, &self.config, &mut self.out)
    }

    /// An outgoing connection is open and its secure handshake done: the other end is
    /// `remote`.
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId, remote: Remote) {
        let hello = Connections::hello(&self.config);
        if self.trackers.connected(conn, hello.clone(), &mut self.out) {
            return;
        }
        self.conns
            .connected(now, conn, remote.peer_id, hello, &mut self.out);
    }

    /// A connection closed, failed to open, or broke.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        if let Some(session) = self.trackers.of_conn(conn) {
            session.lost(now, &self.config, &mut self.rng, &mut self.out);
            return;
        }
        self.drop_conn(conn);
        self.pump(now);
    }

    /// A message arrived on a connection.
    pub fn handle_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        if self.trackers.of_conn(conn).is_some() {
            self.on_tracker_message(now, conn, message);
        } else if self.conns.contains(conn) {
            self.on_peer_message(now, conn, message);
        }
        self.pump(now);
    }

    /// The driver wrote a `Piece` we sent on `conn` to the socket: room for another read.
    pub fn handle_sent(&mut self, now: Instant, conn: ConnId) {
        self.conns.moved_data(now, conn);
        self.serving.on_sent(conn, &self.config, &mut self.out);
        self.serving.arm_stall_check(now);
    }

    /// A `ReadChunk` finished.
    pub fn handle_read(&mut self, now: Instant, token: u64, result: Result<Bytes, String>) {
        self.uploaded_bytes += self
            .serving
            .on_read(token, result, &self.config, &mut self.out);
        self.serving.arm_stall_check(now);
    }

    /// A `StoreChunk` finished.
    pub fn handle_stored(&mut self, now: Instant, token: u64, outcome: StoreOutcome) {
        self.now_hint = now;
        let Some(store) = self.downloads.store_finished(token) else {
            return;
        };
        let (content_id, chunk_index) = (store.content_id, store.chunk_index);
        match outcome {
            StoreOutcome::Stored => self.chunk_verified(content_id, chunk_index),
            StoreOutcome::HashMismatch => self.ban(content_id, store.from, chunk_index),
            StoreOutcome::Io(reason) => {
                if let Some(s) = self
                    .downloads
                    .get_mut(content_id)
                    .and_then(|d| d.scheduler.as_mut())
                {
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

    /// A `FetchRange` finished.
    pub fn handle_range_fetched(
        &mut self,
        now: Instant,
        token: u64,
        result: Result<Bytes, RangeError>,
    ) {
        let (coop, mut ctx) = self.coop_parts();
        let uploaded_bytes = coop.handle_range_fetched(&mut ctx, now, token, result);
        self.uploaded_bytes += uploaded_bytes;
    }

    /// A `WriteRange` finished.
    pub fn handle_range_written(&mut self, now: Instant, token: u64, result: Result<(), String>) {
        let (coop, mut ctx) = self.coop_parts();
        coop.handle_range_written(&mut ctx, now, token, result);
    }

    /// Timers: tracker reconnects and heartbeats, pings, idle connections, request
    /// timeouts, periodic locates, stalled downloads. Runs what is due, in
    /// [`Timer::ALL`]'s order.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in Timer::ALL {
            // Each kind's deadline is read just before it runs, after the kinds before it
            // ran: one of them may move it (a snapshot taken up front would run a timer
            // that is no longer due, or skip one that became due).
            if timer.is_due(now, || self.deadline_of(timer)) {
                self.on_timer(timer, now);
            }
        }
        self.pump(now);
    }

    fn on_timer(&mut self, timer: Timer, now: Instant) {
        match timer {
            Timer::TrackerSession => self.trackers.on_timer(
                now,
                &self.config,
                &mut self.out,
                self.uploaded_bytes,
                self.downloaded_bytes,
            ),
            Timer::HavesFlush => self.trackers.flush_haves(&self.serving.held, &mut self.out),
            Timer::Connections => self.conn_timers(now),
            Timer::Downloads => self.download_timers(now),
            Timer::Coop => {
                let (coop, mut ctx) = self.coop_parts();
                coop.on_timer(&mut ctx, now);
            }
            Timer::HelperScan => {
                // New helpers may have joined the swarm since the job started.
                self.next_helper_scan_at = now + self.config.locate_interval;
                self.trackers.send(&mut self.out, Message::ListPeers);
            }
            Timer::ServingStalls => {
                for conn in self.serving.check_stalls(now, &self.config) {
                    // Nothing written for a minute with blocks waiting (or stalled longest
                    // while stalled ones hold too much): it is not reading.
                    let message = "stopped reading the blocks it asked for".to_string();
                    let code = crate::wire::error_code::TIMED_OUT;
                    self.out.send(conn, Message::Error { code, message });
                    self.close(conn);
                }
                // The budget stalled connections held goes to the others.
                self.serving.pump(&self.config, &mut self.out);
            }
        }
    }
}
