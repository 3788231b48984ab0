//! One download's state and what happens to it: the manifest (once verified), the
//! scheduler, where its sources come from (candidates), the chunks in transit, and its
//! timers (re-locating, re-asking bitfields, giving up when stalled).
//!
//! Methods answer with what the facade must do elsewhere (cancels to send, a chunk to
//! store, a locate due) instead of reaching into other parts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;

use super::assembly::{Assemblies, BlockMismatch};
use super::scheduler::{Scheduler, SchedulerConfig};
use crate::chunkset::ChunkSet;
use crate::ids::{ContentId, PeerId};
use crate::manifest::{ChunkCheck, Manifest};
use crate::peer::action::PeerNotice;
use crate::peer::config::PeerConfig;
use crate::time::Instant;
use crate::wire::{PEERS_LEN_MAX, PeerChunks};

/// Most doublings of the early re-locate interval: bounds the shift, the configured
/// interval caps the wait anyway.
const LOCATE_DOUBLINGS_MAX: u32 = 16;

/// Where a download stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownloadPhase {
    /// Asking the tracker and peers for the manifest.
    AwaitingManifest,
    /// The driver is preparing `NAME.part` and checking what is already on disk.
    Preparing,
    /// Requesting chunks.
    Active,
    /// Every chunk verified and stored.
    Complete,
    /// Given up; the reason was reported.
    Failed,
}

/// Blocks to cancel: (peer, chunk index, blocks as (offset, length)).
pub(crate) type Cancels = Vec<(PeerId, u32, Vec<(u32, u32)>)>;

/// Chunks to request: (peer, chunk index, blocks as (offset, length)).
pub(crate) type Requests = Vec<(PeerId, u32, Vec<(u32, u32)>)>;

/// A received block that completed its chunk: what to hand the driver to verify and store.
pub(crate) struct ChunkReceived {
    pub(crate) check: ChunkCheck,
    pub(crate) data: Bytes,
    /// Peers that lost the endgame race for this chunk.
    pub(crate) cancels: Cancels,
}

/// What a `Piece` led to.
pub(crate) enum PieceOutcome {
    /// Not ours (never asked, or cancelled): dropped without blame.
    Ignored,
    /// The piece does not match the request: the sender is broken or lying.
    WrongLength,
    /// Taken: `bytes` more downloaded, and maybe a whole chunk.
    Taken {
        bytes: u64,
        chunk: Option<ChunkReceived>,
    },
}

/// What a download's timer led to.
pub(crate) struct DownloadTimers {
    pub(crate) cancels: Cancels,
    pub(crate) locate_due: bool,
    pub(crate) resync: bool,
    pub(crate) stalled_out: bool,
}

/// A peer that may serve a download, not (yet) connected.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub(crate) addr: String,
    /// What the tracker says it holds; `None` when only peer exchange named it.
    pub(crate) chunks: Option<ChunkSet>,
}

/// One download.
pub struct Download {
    pub(crate) content_id: ContentId,
    pub(crate) phase: DownloadPhase,
    pub(crate) manifest: Option<Manifest>,
    pub(crate) scheduler: Option<Scheduler>,
    /// Peers known (from the tracker or peer exchange) to hold some of the content.
    pub(crate) candidates: BTreeMap<PeerId, Candidate>,
    /// Bitfields that arrived before the manifest, applied once it is verified.
    early_bitfields: BTreeMap<PeerId, ChunkSet>,
    /// Chunks in transit, by (chunk, peer): in endgame one chunk may come from two peers.
    assemblies: Assemblies,
    /// When the next `Locate` goes to the tracker.
    next_locate_at: Instant,
    /// Locates sent so far: early ones come quickly (a crowd that arrives together finds
    /// itself fast), later ones at the configured interval.
    locates_sent: u32,
    /// Since when some needed chunk (or the manifest) has had no source.
    stalled_since: Option<Instant>,
    /// The earliest time connected peers may be asked for their bitfields again.
    next_resync_at: Instant,
    /// The chunks this download asks for, when only part of the content is wanted
    /// (`get --only`); `None`: all of them.
    pub(crate) wanted: Option<ChunkSet>,
}

/// What the driver found when it prepared a download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedChunks {
    /// Chunks verified on disk (a resumed download).
    pub have: ChunkSet,
    /// The chunks to download, when only part of the content is wanted (the paths `get
    /// --only` picks out of a collection); `None`: every chunk.
    pub wanted: Option<ChunkSet>,
}

impl From<ChunkSet> for PreparedChunks {
    fn from(have: ChunkSet) -> PreparedChunks {
        PreparedChunks { have, wanted: None }
    }
}

impl Download {
    pub fn new(now: Instant, content_id: ContentId) -> Download {
        Download {
            content_id,
            phase: DownloadPhase::AwaitingManifest,
            manifest: None,
            scheduler: None,
            candidates: BTreeMap::new(),
            early_bitfields: BTreeMap::new(),
            assemblies: Assemblies::default(),
            next_locate_at: now,
            locates_sent: 0,
            stalled_since: None,
            next_resync_at: now,
            wanted: None,
        }
    }

    /// Whether `held` covers every chunk this download asks for.
    pub(crate) fn is_covered_by(&self, held: &ChunkSet) -> bool {
        match &self.wanted {
            Some(wanted) => held.contains_all(wanted),
            None => held.is_full(),
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, DownloadPhase::Complete | DownloadPhase::Failed)
    }

    /// How long the download has had no source for something it needs.
    pub fn stalled_for(&self, now: Instant) -> Duration {
        self.stalled_since
            .map(|since| now.saturating_since(since))
            .unwrap_or_default()
    }

    pub(crate) fn needs_manifest(&self) -> bool {
        self.manifest.is_none()
    }

    /// Connected peers serving chunks.
    pub(crate) fn source_count(&self) -> usize {
        self.scheduler.as_ref().map_or(0, |s| s.peer_count())
    }

    /// When this download next needs the timer; `None` once finished.
    pub(crate) fn deadline(&self, config: &PeerConfig) -> Option<Instant> {
        if self.is_finished() {
            return None;
        }
        let mut next = self.next_locate_at;
        if let Some(since) = self.stalled_since {
            next = next.min(since + config.stall_timeout);
        }
        if let Some(at) = self.scheduler.as_ref().and_then(|s| s.poll_timeout()) {
            next = next.min(at);
        }
        Some(next)
    }

    /// Takes a manifest that matches the content id, if none is known yet. True when taken:
    /// the driver is then asked to prepare the file.
    pub(crate) fn take_manifest(&mut self, manifest: &Manifest) -> bool {
        if self.manifest.is_some() || manifest.verify(self.content_id).is_err() {
            return false;
        }
        self.manifest = Some(manifest.clone());
        self.phase = DownloadPhase::Preparing;
        self.stalled_since = None;
        true
    }

    /// Checks the driver's report on preparing the file: the manifest and the chunks on
    /// disk, or why the download fails. `None` when no preparation was awaited.
    pub(crate) fn check_prepared(
        &self,
        result: Result<PreparedChunks, String>,
    ) -> Option<Result<(Manifest, PreparedChunks), String>> {
        if self.phase != DownloadPhase::Preparing {
            return None;
        }
        let manifest = self.manifest.clone()?;
        let count = manifest.chunk_count();
        Some(match result {
            Ok(prepared)
                if prepared.have.len() == count
                    && prepared.wanted.as_ref().is_none_or(|w| w.len() == count) =>
            {
                Ok((manifest, prepared))
            }
            Ok(prepared) => Err(format!(
                "the driver reported {} chunks on disk for a file of {}",
                prepared.have.len(),
                count
            )),
            Err(reason) => Err(format!("cannot prepare the file: {reason}")),
        })
    }

    /// Starts scheduling once the driver says which chunks are already on disk, and which
    /// are wanted.
    pub fn activate(&mut self, config: SchedulerConfig, prepared: PreparedChunks, rng_seed: u64) {
        let Some(manifest) = &self.manifest else {
            return;
        };
        let count = manifest.chunk_count();
        let wanted = prepared.wanted.unwrap_or_else(|| ChunkSet::full(count));
        let mut scheduler = Scheduler::new_part(
            config,
            count,
            manifest.chunk_size,
            prepared.have,
            &wanted,
            rng_seed,
        );
        self.wanted = (!wanted.is_full()).then_some(wanted);
        for (peer, chunks) in std::mem::take(&mut self.early_bitfields) {
            scheduler.add_peer(peer, chunks);
        }
        self.scheduler = Some(scheduler);
        self.phase = DownloadPhase::Active;
    }

    /// The tracker's answer is the freshest view: peers it no longer lists are gone
    /// (`replace`). With several trackers, each lists the members it knows: the answer is
    /// added to the others' (within `PEERS_LEN_MAX`).
    pub(crate) fn set_candidates(
        &mut self,
        peers: Vec<PeerChunks>,
        config: &PeerConfig,
        banned: Option<&BTreeSet<PeerId>>,
        replace: bool,
    ) {
        if replace {
            self.candidates.clear();
        }
        for peer in peers.into_iter().take(PEERS_LEN_MAX) {
            if !self.candidates.contains_key(&peer.peer_id)
                && self.candidates.len() >= PEERS_LEN_MAX
            {
                break;
            }
            let is_banned = banned.is_some_and(|b| b.contains(&peer.peer_id));
            if peer.peer_id == config.peer_id || peer.listen_addr == config.listen_addr || is_banned
            {
                continue;
            }
            let candidate = Candidate {
                addr: peer.listen_addr,
                chunks: Some(peer.chunks),
            };
            self.candidates.insert(peer.peer_id, candidate);
        }
    }

    /// Candidates to dial because they hold a needed chunk that no connected source
    /// serves: one for each such chunk the tracker names a holder of (a candidate holding
    /// several covers them all). A holder `known` says is connected or being dialled
    /// already covers what it holds: the next bitfield resync or the dial brings it, and
    /// dialling a second holder meanwhile would only crowd it. Empty while every needed
    /// chunk has a source.
    ///
    /// These are dialled beyond `sources_per_download`: a download can have its fill of
    /// sources that all lack the same chunk (peers that met while cut off from every holder
    /// of it, as in a partition, and stay connected after it heals), and then only a new
    /// connection finishes it.
    pub(crate) fn rescuers(&self, known: impl Fn(PeerId, &str) -> bool) -> Vec<String> {
        let Some(scheduler) = &self.scheduler else {
            return Vec::new();
        };
        let mut uncovered = scheduler.missing_without_source();
        if uncovered.is_empty() {
            return Vec::new();
        }
        let holders = || {
            self.candidates.iter().filter_map(|(&peer_id, candidate)| {
                // A peer that does not listen cannot be dialled: it covers nothing here.
                let chunks = candidate
                    .chunks
                    .as_ref()
                    .filter(|_| !candidate.addr.is_empty())?;
                Some((known(peer_id, &candidate.addr), &candidate.addr, chunks))
            })
        };
        for (_, _, chunks) in holders().filter(|&(known, _, _)| known) {
            uncovered.retain(|&chunk_index| !chunks.contains(chunk_index));
            if uncovered.is_empty() {
                return Vec::new();
            }
        }
        let mut rescuers = Vec::new();
        for (_, addr, chunks) in holders().filter(|&(known, _, _)| !known) {
            if uncovered.is_empty() {
                break;
            }
            let before = uncovered.len();
            uncovered.retain(|&chunk_index| !chunks.contains(chunk_index));
            if uncovered.len() < before {
                rescuers.push(addr.clone());
            }
        }
        rescuers
    }

    /// A remote holds `chunks` of the content. False when the bitfield's length does not
    /// match the manifest (the remote is broken).
    pub(crate) fn on_bitfield(&mut self, remote: PeerId, chunks: ChunkSet) -> bool {
        if let Some(manifest) = &self.manifest
            && chunks.len() != manifest.chunk_count()
        {
            return false;
        }
        match &mut self.scheduler {
            Some(s) => s.add_peer(remote, chunks),
            None => {
                self.early_bitfields.insert(remote, chunks);
            }
        }
        true
    }

    /// A remote gained chunks.
    pub(crate) fn on_have(&mut self, remote: PeerId, chunk_indices: Vec<u32>) {
        match &mut self.scheduler {
            Some(s) => {
                for index in chunk_indices {
                    s.peer_has(remote, index);
                }
            }
            None => {
                if let Some(set) = self.early_bitfields.get_mut(&remote) {
                    for index in chunk_indices {
                        set.insert(index);
                    }
                }
            }
        }
    }

    /// A remote turned a request away; returns the other blocks of that chunk, which are
    /// not wanted from it now.
    pub(crate) fn on_reject(&mut self, remote: PeerId, chunk_index: u32) -> Vec<(u32, u32)> {
        let pending = self.assemblies.abandon_chunk(chunk_index, remote);
        if let Some(s) = &mut self.scheduler {
            s.on_rejected(remote, chunk_index);
        }
        pending
    }

    pub(crate) fn record_rtt(&mut self, remote: PeerId, rtt: Duration) {
        if let Some(s) = &mut self.scheduler {
            s.record_rtt(remote, rtt);
        }
    }

    /// A block arrived from `remote`.
    pub(crate) fn on_piece(
        &mut self,
        now: Instant,
        remote: PeerId,
        chunk_index: u32,
        offset: u32,
        data: Bytes,
    ) -> PieceOutcome {
        let bytes = data.len() as u64;
        let complete = match self.assemblies.accept(chunk_index, remote, offset, data) {
            Ok(complete) => complete,
            Err(BlockMismatch::NotRequested) => return PieceOutcome::Ignored,
            Err(BlockMismatch::WrongLength) => return PieceOutcome::WrongLength,
        };
        let chunk = self.on_block_taken(now, remote, chunk_index, bytes, complete);
        PieceOutcome::Taken { bytes, chunk }
    }

    fn on_block_taken(
        &mut self,
        now: Instant,
        remote: PeerId,
        chunk_index: u32,
        bytes: u64,
        complete: Option<Bytes>,
    ) -> Option<ChunkReceived> {
        let scheduler = self.scheduler.as_mut()?;
        scheduler.on_bytes_received(now, remote, chunk_index, bytes);
        let data = complete?;
        let losers = scheduler.on_chunk_received(now, remote, chunk_index);
        let check = self.manifest.as_ref()?.chunk_check(chunk_index)?;
        let cancels = losers
            .into_iter()
            .map(|loser| {
                let blocks = self.assemblies.abandon_chunk(chunk_index, loser);
                (loser, chunk_index, blocks)
            })
            .collect();
        Some(ChunkReceived {
            check,
            data,
            cancels,
        })
    }

    /// The next chunks to request: (peer, chunk index, blocks), each begun in assembly.
    /// `may_request` is false while too many chunks wait for the disk.
    pub(crate) fn next_requests(&mut self, now: Instant, may_request: bool) -> Requests {
        match self.phase {
            DownloadPhase::AwaitingManifest => {
                self.stalled_since.get_or_insert(now);
                return Vec::new();
            }
            DownloadPhase::Active => {}
            _ => return Vec::new(),
        }
        let Some(scheduler) = &mut self.scheduler else {
            return Vec::new();
        };
        let mut requests = Vec::new();
        if may_request {
            while let Some((peer, chunk_index)) = scheduler.next_request(now) {
                requests.push((peer, chunk_index));
            }
        }
        let Some(manifest) = &self.manifest else {
            return Vec::new();
        };
        requests
            .into_iter()
            .map(|(peer, chunk_index)| {
                let blocks = self.assemblies.begin(manifest, chunk_index, peer);
                (peer, chunk_index, blocks)
            })
            .collect()
    }

    /// Request timeouts, re-locates, bitfield resyncs and the stall check.
    pub(crate) fn on_timer(&mut self, now: Instant, config: &PeerConfig) -> DownloadTimers {
        let mut expired = Vec::new();
        if let Some(s) = &mut self.scheduler {
            expired = s.handle_timeout(now);
        }
        let mut cancels = Vec::new();
        for (peer, chunk_index) in expired {
            let blocks = self.assemblies.abandon_chunk(chunk_index, peer);
            cancels.push((peer, chunk_index, blocks));
        }
        let resync = self.resync_due(now, config);
        let locate_due = now >= self.next_locate_at;
        if locate_due {
            let early = config
                .locate_interval_min
                .saturating_mul(1 << self.locates_sent.min(LOCATE_DOUBLINGS_MAX));
            self.locates_sent = self.locates_sent.saturating_add(1);
            self.next_locate_at = now + early.min(config.locate_interval);
        }
        let stalled_out =
            self.stalled_for(now) >= config.stall_timeout && self.stalled_since.is_some();
        DownloadTimers {
            cancels,
            locate_due,
            resync,
            stalled_out,
        }
    }

    /// Whether to ask connected peers for their bitfields again now, tracking since when
    /// some needed chunk has had no source.
    fn resync_due(&mut self, now: Instant, config: &PeerConfig) -> bool {
        // Whether some needed chunk has no source: checked on timers, not on every
        // message, since it scans the whole file.
        let mut resync = false;
        if let Some(s) = &self.scheduler {
            if s.missing_without_source().is_empty() {
                self.stalled_since = None;
            } else {
                self.stalled_since.get_or_insert(now);
                resync = true;
            }
        }
        // At most every `resync_interval`: this runs on every timer of the peer
        // (each connection's ping deadline among them), and asking every connected peer
        // again on each of those floods every connection with `Interested`/`Bitfield`.
        // Not only once per locate round either: a chunk loses its last known source
        // whenever its holders turn a repeat request away, and it should not wait
        // seconds for them to be asked again.
        let resync = resync && now >= self.next_resync_at;
        if resync {
            self.next_resync_at = now + config.resync_interval;
        }
        resync
    }

    /// Why the download gives up after stalling.
    pub(crate) fn give_up_reason(&self, config: &PeerConfig, tracker_ready: bool) -> String {
        let stalled = config.stall_timeout.as_secs_f64();
        let tracker = if tracker_ready {
            "the tracker knows no other source"
        } else {
            "the tracker is unreachable"
        };
        match &self.scheduler {
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
        }
    }

    /// Marks the download failed; the notice to show, unless it had already finished.
    pub(crate) fn fail(&mut self, reason: String) -> Option<PeerNotice> {
        if self.is_finished() {
            return None;
        }
        self.phase = DownloadPhase::Failed;
        let missing_chunks = self
            .scheduler
            .as_ref()
            .map(|s| s.have().missing().collect())
            .unwrap_or_default();
        Some(PeerNotice::DownloadFailed {
            content_id: self.content_id,
            reason,
            missing_chunks,
        })
    }

    /// Every chunk is held: the download is complete. True the first time.
    pub(crate) fn complete(&mut self) -> bool {
        if self.phase != DownloadPhase::Active {
            return false;
        }
        self.phase = DownloadPhase::Complete;
        self.assemblies.clear();
        true
    }

    /// Drops every chunk in transit; returns the blocks to cancel.
    pub(crate) fn abandon_all(&mut self) -> Cancels {
        self.assemblies
            .in_transit()
            .into_iter()
            .map(|(chunk_index, peer)| {
                let blocks = self.assemblies.abandon_chunk(chunk_index, peer);
                (peer, chunk_index, blocks)
            })
            .collect()
    }

    /// A peer disconnected: its chunks in transit go back to the scheduler.
    pub(crate) fn remove_peer(&mut self, remote: PeerId) {
        self.assemblies.abandon_peer(remote);
        if let Some(s) = &mut self.scheduler {
            s.remove_peer(remote);
        }
    }

    /// A peer sent a chunk that failed its hash: it is no source any more.
    pub(crate) fn ban_peer(&mut self, peer: PeerId, chunk_index: u32) {
        self.assemblies.abandon_peer(peer);
        self.candidates.remove(&peer);
        if let Some(s) = &mut self.scheduler {
            s.on_chunk_failed(peer, chunk_index);
        }
    }
}
