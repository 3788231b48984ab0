//! Which chunk to ask for next, and from whom.
//!
//! One [`Scheduler`] per download. The unit of request is a whole chunk. The scheduler keeps
//! what every usable (connected, unbanned) peer holds, how many of them hold each chunk
//! (its *availability*), and the state of every chunk:
//!
//! ```text
//!            next_request              on_chunk_received        on_chunk_verified
//!  Missing ───────────────► InFlight ───────────────────► Verifying ───────────────► Have
//!     ▲  timeout / reject / remove │                         │ on_chunk_failed
//!     └────────────────────────────┘◄────────────────────────┘ on_chunk_store_failed
//! ```
//!
//! **Rarest first.** [`Scheduler::next_request`] takes the best-ranked peer that has a free
//! slot and holds a `Missing` chunk, and gives it the chunk of lowest availability among those
//! it holds. Ties are broken uniformly at random: every `Missing` chunk carries a key drawn
//! from the seeded RNG each time it (re-)enters the missing set, and the lowest key wins. For i.i.d. keys the minimum over any subset is uniform over that
//! subset, so this is the same distribution as reservoir sampling over the tied chunks, but
//! finding it costs a walk of an ordered set that stops at the first chunk the peer holds
//! instead of a scan of the whole tie (a seeder's tie is the whole file).
//!
//! **Ranking.** Peers are ranked by: not demoted first; then throughput (bytes/s, an EWMA of
//! samples from [`Scheduler::on_bytes_received`]) descending; then smoothed RTT
//! ([`Scheduler::record_rtt`]) ascending; then a per-peer random key. A peer with no
//! throughput (or RTT) estimate yet is ranked at the mean of the peers that have one, so new
//! peers are neither starved nor preferred over proven fast ones.
//!
//! **Window.** A peer may have `window` chunks in flight:
//!
//! ```text
//! window = clamp(ceil(throughput_Bps × srtt_s / chunk_size) + in_flight_min,
//!                in_flight_min, in_flight_max)
//! ```
//!
//! i.e. enough requests to fill the bandwidth-delay product plus `in_flight_min` queued at the
//! sender so it never idles. Without both estimates, or while demoted, it is `in_flight_min`.
//! (`in_flight_min` is taken as at least 1 and `in_flight_max` as at least `in_flight_min`.)
//!
//! **Timeouts.** Each (peer, chunk) assignment has a deadline, set when requested and pushed
//! by every `on_bytes_received` for that pair: `last progress + timeout` with
//! `timeout = clamp(TIMEOUT_CHUNK_TIMES × chunk_size × max(1 / throughput, (in_flight + 1) /
//! (2 Σ throughput)), request_timeout_min, request_timeout_max)`: a request also waits behind
//! everything else in flight on our own downlink (terms without an estimate are dropped;
//! with none, just `request_timeout_min`).
//! [`Scheduler::handle_timeout`] expires overdue assignments, puts the chunk back in the
//! missing set and demotes the peer for `config.demotion`.
//!
//! **Endgame.** When no `Missing` chunk has a source (everything obtainable is in flight or
//! verifying), `next_request` hands an in-flight chunk to a further peer that holds it and has
//! a free slot, while it has fewer than `endgame_copies_max` assignments; chunks with the
//! fewest copies, then the oldest first request, go first. `on_chunk_received` returns the
//! peers that lost the race so the caller can cancel them. (Chunks no usable peer holds do not
//! hold endgame back: they cannot be requested anyway.)
//!
//! **Robustness.** No method panics: unknown peers and out-of-range chunk indices are
//! ignored, and a [`ChunkSet`] whose length is not the file's chunk count is ignored (see
//! [`Scheduler::add_peer`], [`Scheduler::new`]).
//!
//! **Cost.** With `n` chunks, `p` peers and `f` chunks in flight: `next_request` is `O(p)` to
//! rank plus a walk of the missing set bounded by `O(n / 64)` word operations;
//! `add_peer`/`remove_peer` are `O(n log n)`; a chunk entering or leaving the missing set is
//! `O(p + log n)` (every holder's count of requestable chunks is kept up to date, which is
//! what lets `next_request` skip peers with nothing to offer without looking at their
//! chunks); endgame is `O(f log f + p log p)` plus at worst `O(p × f)` matching. A call that
//! finds nothing is remembered, so asking again before anything it reads changed is `O(1)`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::chunkset::ChunkSet;
use crate::ids::PeerId;
use crate::time::Instant;

/// A request times out after this many chunk transfer times at the peer's measured
/// throughput (when that is longer than `request_timeout_min`): slack for jitter and for the
/// requests queued ahead of it at the sender.
pub const TIMEOUT_CHUNK_TIMES: u64 = 4;

/// Throughput is sampled over at least this much time, so one burst of bytes arriving in
/// the same instant does not read as an infinite rate.
pub const THROUGHPUT_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Weight of a new throughput sample in the EWMA is `1 / THROUGHPUT_EWMA_DIVISOR`: reacts
/// within a few samples (about half a second) to a peer slowing down.
const THROUGHPUT_EWMA_DIVISOR: u128 = 4;

/// Weight of a new RTT sample is `1 / RTT_EWMA_DIVISOR`, TCP's SRTT gain (RFC 6298).
const RTT_EWMA_DIVISOR: u128 = 8;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A change of one peer's set touching at least `1 / BULK_REBUILD_DIVISOR` of the missing
/// chunks rebuilds the rarest-first order in one sorted pass instead of moving each chunk
/// (a rebuild costs about a tenth of a move per element, so this pays off well before 1/4).
const BULK_REBUILD_DIVISOR: usize = 4;

/// Tuning of one download's scheduler.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// A chunk request with no data for this long (or longer, for slow peers) is given up.
    pub request_timeout_min: Duration,
    /// However slow a peer measured, a request with no data for this long is given up: a
    /// throughput estimate near zero must not turn into a timeout of days.
    pub request_timeout_max: Duration,
    /// Chunks in flight to a fresh or demoted peer.
    pub in_flight_min: u32,
    /// Most chunks in flight to one peer, however fast.
    pub in_flight_max: u32,
    /// In endgame, most peers one chunk may be requested from at once.
    pub endgame_copies_max: u32,
    /// How long a peer whose request timed out is ranked below all others.
    pub demotion: Duration,
    /// Most data in flight, in time at the rate everything arrives together: past it, more
    /// requests only queue on our own downlink (a slow link would time them all out).
    pub backlog_max: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            request_timeout_min: Duration::from_secs(5),
            request_timeout_max: Duration::from_secs(60),
            in_flight_min: 2,
            in_flight_max: 16,
            endgame_copies_max: 2,
            demotion: Duration::from_secs(10),
            backlog_max: Duration::from_secs(4),
        }
    }
}

/// Where one chunk is in its life, as [`Scheduler::chunk_state`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkState {
    /// Needed and not requested from anyone.
    Missing,
    /// Requested from at least one peer.
    InFlight,
    /// Every byte arrived; waiting for the hash check and the store.
    Verifying,
    /// Verified and stored.
    Have,
    /// Not part of this download (`get --only` leaves it out): never requested.
    Unwanted,
}

/// One outstanding request of a chunk to a peer.
#[derive(Clone, Copy, Debug)]
struct Assignment {
    peer: PeerId,
    deadline: Instant,
}

/// The requests outstanding for one chunk (one, or up to `endgame_copies_max` in endgame).
#[derive(Clone, Debug)]
struct Flight {
    /// When the chunk was first requested: in endgame, the oldest is duplicated first.
    first_requested: Instant,
    assignments: Vec<Assignment>,
}

#[derive(Clone, Debug)]
struct PeerState {
    chunks: ChunkSet,
    /// Chunks in flight to this peer.
    assigned: BTreeSet<u32>,
    /// How many `Missing` chunks this peer holds: zero means it has nothing to offer now.
    useful: u32,
    /// Throughput EWMA in bytes per second; `None` until the first sample.
    throughput: Option<u64>,
    /// Smoothed round-trip time in nanoseconds; `None` until the first sample.
    srtt: Option<u64>,
    /// Ranked last until then.
    demoted_until: Option<Instant>,
    /// Start of the open throughput sampling window, if any, and bytes seen in it.
    sample_start: Option<Instant>,
    sample_bytes: u64,
    /// When bytes last arrived from this peer.
    last_rx: Option<Instant>,
    /// Breaks ties between otherwise equal peers, so downloaders do not all pile on the
    /// lowest peer id.
    tiebreak: u64,
}

impl PeerState {
    fn is_demoted(&self, now: Instant) -> bool {
        self.demoted_until.is_some_and(|until| now < until)
    }
}

/// Which chunk to ask for next, and from whom: one per download. See the module docs.
pub struct Scheduler {
    config: SchedulerConfig,
    chunk_count: u32,
    chunk_size: u32,
    have: ChunkSet,
    state: Vec<ChunkState>,
    /// Usable peers holding each chunk.
    availability: Vec<u32>,
    /// Tie-break key of each `Missing` chunk (meaningless for other states).
    key: Vec<u32>,
    /// The `Missing` chunks as a bitmap, for word-wise intersection with a peer's chunks.
    missing: ChunkSet,
    /// The `Missing` chunks, rarest first: (availability, key, chunk).
    missing_order: BTreeSet<(u32, u32, u32)>,
    flights: BTreeMap<u32, Flight>,
    /// Every assignment's deadline: (deadline, chunk, peer).
    deadlines: BTreeSet<(Instant, u32, PeerId)>,
    peers: BTreeMap<PeerId, PeerState>,
    banned: BTreeSet<PeerId>,
    rng: ChaCha8Rng,
    /// Set when `next_request` found nothing to ask: until this instant it would find nothing
    /// again, unless something it reads changes, which clears it (see [`Self::changed`]). The
    /// peer asks after every message it handles, and most of those change nothing here (a
    /// `Have` of a chunk we hold, a request we serve), so this saves a pass over every peer.
    idle_until: Option<Instant>,
    /// When demotions end (possibly stale: a peer demoted again, or gone). A demotion ending
    /// can widen a window, so it ends `idle_until`; a stale entry only ends it early.
    demotion_ends: BTreeSet<Instant>,
}

impl Scheduler {
    /// A scheduler for a file of `chunk_count` chunks of (nominally) `chunk_size` bytes, of
    /// which `have` are already verified. Ties are broken with a ChaCha RNG seeded by `rng_seed`.
    ///
    /// A `have` set whose length is not `chunk_count` is ignored (nothing is held).
    #[cfg(test)]
    pub fn new(
        config: SchedulerConfig,
        chunk_count: u32,
        chunk_size: u32,
        have: ChunkSet,
        rng_seed: u64,
    ) -> Scheduler {
        Scheduler::new_part(
            config,
            chunk_count,
            chunk_size,
            have,
            &ChunkSet::full(chunk_count),
            rng_seed,
        )
    }

    /// A scheduler that asks only for the chunks of `wanted` (a part of the content, as
    /// `get --only` picks): the others are [`ChunkState::Unwanted`]. A `wanted` set whose
    /// length is not `chunk_count` is ignored (everything is wanted).
    pub fn new_part(
        config: SchedulerConfig,
        chunk_count: u32,
        chunk_size: u32,
        have: ChunkSet,
        wanted: &ChunkSet,
        rng_seed: u64,
    ) -> Scheduler {
        let have = if have.len() == chunk_count {
            have
        } else {
            ChunkSet::new(chunk_count)
        };
        let is_wanted = |c: u32| wanted.len() != chunk_count || wanted.contains(c);
        let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
        let n = chunk_count as usize;
        let mut state = vec![ChunkState::Missing; n];
        let mut key = vec![0u32; n];
        let mut missing = ChunkSet::new(chunk_count);
        let mut missing_order = BTreeSet::new();
        for c in 0..chunk_count {
            if have.contains(c) {
                state[c as usize] = ChunkState::Have;
            } else if !is_wanted(c) {
                state[c as usize] = ChunkState::Unwanted;
            } else {
                let k = rng.random::<u32>();
                key[c as usize] = k;
                missing.insert(c);
                missing_order.insert((0, k, c));
            }
        }
        Scheduler {
            config,
            chunk_count,
            chunk_size,
            have,
            state,
            availability: vec![0; n],
            key,
            missing,
            missing_order,
            flights: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            peers: BTreeMap::new(),
            banned: BTreeSet::new(),
            rng,
            idle_until: None,
            demotion_ends: BTreeSet::new(),
        }
    }

    /// Adds a peer, or replaces what a known peer holds. Ignored for banned peers.
    ///
    /// A set whose length is not the file's chunk count is ignored entirely (an unknown peer is
    /// not added, a known one keeps its old set). Requests already in flight to a peer stay in
    /// flight even if its new set lacks the chunk; they end by data, reject or timeout.
    pub fn add_peer(&mut self, peer: PeerId, chunks: ChunkSet) {
        if self.banned.contains(&peer) || chunks.len() != self.chunk_count {
            return;
        }
        self.changed();
        let old = match self.peers.get(&peer) {
            Some(p) => p.chunks.clone(),
            None => {
                let tiebreak = self.rng.random::<u64>();
                self.peers.insert(
                    peer,
                    PeerState {
                        chunks: ChunkSet::new(self.chunk_count),
                        assigned: BTreeSet::new(),
                        useful: 0,
                        throughput: None,
                        srtt: None,
                        demoted_until: None,
                        sample_start: None,
                        sample_bytes: 0,
                        last_rx: None,
                        tiebreak,
                    },
                );
                ChunkSet::new(self.chunk_count)
            }
        };
        // Only the difference changes availability.
        let lost: Vec<u32> = set_bits(&old).filter(|&c| !chunks.contains(c)).collect();
        let gained: Vec<u32> = set_bits(&chunks).filter(|&c| !old.contains(c)).collect();
        self.change_peer_chunks(peer, &gained, &lost);
    }

    /// A peer gained a chunk. Ignored for unknown peers (add them first) and out-of-range
    /// indices.
    pub fn peer_has(&mut self, peer: PeerId, chunk_index: u32) {
        // Selection only looks at which peers hold chunks still needed; a peer gaining one we
        // already have or are verifying (most `Have`s late in a download) changes nothing.
        // A chunk's first source can end the endgame; otherwise only `peer` can be freed.
        let first_source = self.state(chunk_index) == Some(ChunkState::Missing)
            && self.availability(chunk_index) == 0;
        if self.is_needed(chunk_index) && (first_source || !self.is_saturated(peer)) {
            self.changed();
        }
        self.peer_gained_chunk(peer, chunk_index, true);
    }

    /// Every peer known here and the chunks it is known to hold.
    pub fn peers_chunks(&self) -> impl Iterator<Item = (PeerId, &ChunkSet)> + '_ {
        self.peers
            .iter()
            .map(|(peer, state)| (*peer, &state.chunks))
    }

    /// Whether `peer` is known to hold `chunk_index`.
    pub fn peer_holds(&self, peer: PeerId, chunk_index: u32) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|p| p.chunks.contains(chunk_index))
    }

    /// A peer is gone (disconnected): its in-flight chunks become requestable again.
    pub fn remove_peer(&mut self, peer: PeerId) {
        let Some(state) = self.peers.get(&peer) else {
            return;
        };
        // `changed()`, spelled out: `state` still borrows `self.peers`.
        self.idle_until = None;
        let assigned: Vec<u32> = state.assigned.iter().copied().collect();
        let held: Vec<u32> = set_bits(&state.chunks).collect();
        for c in assigned {
            self.drop_assignment(peer, c);
        }
        self.change_peer_chunks(peer, &[], &held);
        self.peers.remove(&peer);
    }

    /// A peer is banned for this content (sent data that failed its hash): removed, and never
    /// added again.
    pub fn ban(&mut self, peer: PeerId) {
        self.remove_peer(peer);
        self.banned.insert(peer);
    }

    #[cfg(test)]
    pub fn is_banned(&self, peer: PeerId) -> bool {
        self.banned.contains(&peer)
    }

    /// A round-trip time measured with ping/pong.
    pub fn record_rtt(&mut self, peer: PeerId, rtt: Duration) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let sample = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX);
        state.srtt = Some(match state.srtt {
            None => sample,
            Some(old) => ewma(old, sample, RTT_EWMA_DIVISOR),
        });
        if !self.is_saturated(peer) {
            self.changed();
        }
    }

    /// The next request to make: a peer with a free slot and a chunk it holds that we need,
    /// rarest first; in endgame, a duplicate of an outstanding chunk. Marks it in flight.
    /// Call until `None`.
    pub fn next_request(&mut self, now: Instant) -> Option<(PeerId, u32)> {
        if self.idle_until.is_some_and(|until| now < until) {
            debug_assert_eq!(self.pick(now), None, "idle_until missed a change");
            return None;
        }
        let Some((peer, chunk)) = self.pick(now) else {
            // Only a demotion ending can widen a window without a call that clears this.
            while self.demotion_ends.first().is_some_and(|&end| end <= now) {
                self.demotion_ends.pop_first();
            }
            let until = self.demotion_ends.first().copied();
            self.idle_until = Some(until.unwrap_or(Instant::from_nanos(u64::MAX)));
            return None;
        };
        self.changed();
        self.assign(now, peer, chunk);
        Some((peer, chunk))
    }

    /// What `next_request` would hand out at `now`, without handing it out.
    fn pick(&self, now: Instant) -> Option<(PeerId, u32)> {
        if self.backlog_full() {
            return None;
        }
        if self.missing_has_source() {
            self.pick_normal(now)
        } else {
            self.pick_endgame(now)
        }
    }

    /// `bytes` of `chunk_index` arrived from `peer`: feeds throughput and resets the timeout.
    pub fn on_bytes_received(&mut self, now: Instant, peer: PeerId, chunk_index: u32, bytes: u64) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        state.last_rx = Some(now);
        let mut sampled = false;
        match state.sample_start {
            None => {
                state.sample_start = Some(now);
                state.sample_bytes = bytes;
            }
            Some(start) => {
                state.sample_bytes = state.sample_bytes.saturating_add(bytes);
                if now.saturating_since(start) >= THROUGHPUT_SAMPLE_INTERVAL {
                    Self::take_sample(state, now);
                    state.sample_start = Some(now);
                    sampled = true;
                }
            }
        }
        let assigned = state.assigned.contains(&chunk_index);
        if sampled {
            // The throughput moved: windows, ranking and the backlog bound (a sum over every
            // peer, so not only this peer's business) may change.
            self.idle_until = None;
        }
        if assigned {
            let deadline = now + self.request_timeout(peer);
            self.set_deadline(peer, chunk_index, deadline);
        }
    }

    /// Every byte of `chunk_index` arrived from `peer`, to be verified. The chunk is no longer
    /// requested from anyone; returns the other peers it was in flight to (cancel them).
    ///
    /// Data from a peer the chunk was not (or no longer) assigned to is accepted too, as long
    /// as the chunk is still needed (`Missing` or `InFlight`); if it is already `Verifying` or
    /// `Have`, nothing changes and the caller should drop the data (see [`Self::chunk_state`]).
    pub fn on_chunk_received(
        &mut self,
        now: Instant,
        peer: PeerId,
        chunk_index: u32,
    ) -> Vec<PeerId> {
        let _ = now;
        self.changed();
        let mut losers = Vec::new();
        match self.state(chunk_index) {
            Some(ChunkState::Missing) => {
                self.leave_missing(chunk_index);
                self.state[chunk_index as usize] = ChunkState::Verifying;
            }
            Some(ChunkState::InFlight) => {
                let assigned: Vec<PeerId> = self
                    .flights
                    .get(&chunk_index)
                    .map(|f| f.assignments.iter().map(|a| a.peer).collect())
                    .unwrap_or_default();
                // Mark verifying first so dropping the last assignment does not requeue it.
                self.state[chunk_index as usize] = ChunkState::Verifying;
                for p in assigned {
                    self.drop_assignment(p, chunk_index);
                    if p != peer {
                        losers.push(p);
                    }
                }
                self.flights.remove(&chunk_index);
            }
            _ => {}
        }
        losers
    }

    /// The chunk passed its hash and is stored.
    pub fn on_chunk_verified(&mut self, chunk_index: u32) {
        self.changed();
        match self.state(chunk_index) {
            None | Some(ChunkState::Have | ChunkState::Unwanted) => return,
            Some(ChunkState::Missing) => self.leave_missing(chunk_index),
            Some(ChunkState::InFlight) => {
                // Verified without our having seen it arrive: whoever still has it in flight
                // is simply released (the caller learns nothing to cancel from this call).
                self.state[chunk_index as usize] = ChunkState::Verifying;
                let assigned: Vec<PeerId> = self
                    .flights
                    .get(&chunk_index)
                    .map(|f| f.assignments.iter().map(|a| a.peer).collect())
                    .unwrap_or_default();
                for p in assigned {
                    self.drop_assignment(p, chunk_index);
                }
                self.flights.remove(&chunk_index);
            }
            Some(ChunkState::Verifying) => {}
        }
        self.state[chunk_index as usize] = ChunkState::Have;
        self.have.insert(chunk_index);
    }

    /// The chunk failed its hash: `peer` is banned and the chunk is needed again.
    pub fn on_chunk_failed(&mut self, peer: PeerId, chunk_index: u32) {
        self.changed();
        self.ban(peer);
        if self.state(chunk_index) == Some(ChunkState::Verifying) {
            self.enter_missing(chunk_index);
        }
    }

    /// Storing the chunk failed for a local reason: the chunk is needed again, no one is blamed.
    pub fn on_chunk_store_failed(&mut self, chunk_index: u32) {
        self.changed();
        if self.state(chunk_index) == Some(ChunkState::Verifying) {
            self.enter_missing(chunk_index);
        }
    }

    /// `peer` refused the request: it is treated as not holding the chunk.
    pub fn on_rejected(&mut self, peer: PeerId, chunk_index: u32) {
        self.changed();
        self.drop_assignment(peer, chunk_index);
        self.peer_lost_chunk(peer, chunk_index, true);
    }

    /// Earliest request deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(deadline, _, _)| deadline)
    }

    /// Expires overdue requests, demoting their peers; returns them (peer, chunk) so the
    /// caller can cancel them and drop partial data.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(PeerId, u32)> {
        let mut expired = Vec::new();
        while let Some(&(deadline, chunk, peer)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.changed();
            self.drop_assignment(peer, chunk);
            if let Some(state) = self.peers.get_mut(&peer) {
                let until = now + self.config.demotion;
                state.demoted_until = Some(until);
                self.demotion_ends.insert(until);
            }
            expired.push((peer, chunk));
        }
        expired
    }

    pub fn have(&self) -> &ChunkSet {
        &self.have
    }

    #[cfg(test)]
    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    /// Chunks still needed that no usable (connected, unbanned) peer holds.
    ///
    /// "Needed" here is `Missing` or `InFlight` (a request may be in flight to a peer that has
    /// since said it lacks the chunk); `Verifying` chunks are in hand and not listed.
    pub fn missing_without_source(&self) -> Vec<u32> {
        let mut out: Vec<u32> = self
            .missing_order
            .range(..(1, 0, 0))
            .map(|&(_, _, c)| c)
            .collect();
        out.extend(
            self.flights
                .keys()
                .copied()
                .filter(|&c| self.availability[c as usize] == 0),
        );
        out.sort_unstable();
        out
    }

    #[cfg(test)]
    /// Chunks in flight to `peer`.
    pub fn in_flight(&self, peer: PeerId) -> u32 {
        self.peers.get(&peer).map_or(0, |p| p.assigned.len() as u32)
    }

    /// Peers known (not banned).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    #[cfg(test)]
    /// Where `chunk_index` is in its life; `None` when out of range.
    pub fn chunk_state(&self, chunk_index: u32) -> Option<ChunkState> {
        self.state(chunk_index)
    }

    /// Whether data for `chunk_index` is still wanted (`Missing` or `InFlight`).
    pub fn is_needed(&self, chunk_index: u32) -> bool {
        matches!(
            self.state(chunk_index),
            Some(ChunkState::Missing | ChunkState::InFlight)
        )
    }

    #[cfg(test)]
    /// How many chunks may be in flight to `peer` at `now` (see the module docs for the
    /// formula); 0 for unknown peers.
    pub fn window(&self, peer: PeerId, now: Instant) -> u32 {
        self.peers.get(&peer).map_or(0, |p| self.window_of(p, now))
    }

    #[cfg(test)]
    /// Whether `peer` is ranked last at `now` because a request of its timed out.
    pub fn is_demoted(&self, peer: PeerId, now: Instant) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.is_demoted(now))
    }

    #[cfg(test)]
    /// The peer's throughput estimate in bytes per second, once measured.
    pub fn throughput(&self, peer: PeerId) -> Option<u64> {
        self.peers.get(&peer).and_then(|p| p.throughput)
    }

    /// How many usable peers hold `chunk_index` (0 when out of range).
    pub fn availability(&self, chunk_index: u32) -> u32 {
        self.availability
            .get(chunk_index as usize)
            .copied()
            .unwrap_or(0)
    }

    // ---- selection ----

    /// Something `pick` reads changed: it must look again.
    fn changed(&mut self) {
        self.idle_until = None;
    }

    /// Whether `peer` is known and has no room for a request at any instant. A change that
    /// touches only such a peer (its RTT, or a chunk it gained that others already supply)
    /// frees no one, so a `None` from `pick` stands: windows and what is
    /// requestable from others are unchanged, and ranking matters only once someone is free.
    fn is_saturated(&self, peer: PeerId) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|p| p.assigned.len() as u32 >= self.undemoted_window(p))
    }

    fn pick_normal(&self, now: Instant) -> Option<(PeerId, u32)> {
        let mut free = self
            .peers
            .iter()
            .filter(|(_, p)| p.useful > 0 && (p.assigned.len() as u32) < self.window_of(p, now))
            .peekable();
        // Most calls find no free peer (the last call of every round does): skip the means,
        // a second pass over every peer.
        free.peek()?;
        let means = self.means();
        let best = free
            .min_by_key(|&(&id, p)| rank_key(id, p, now, means))
            .map(|(&id, _)| id)?;
        let chunk = self.rarest_held_by(best)?;
        Some((best, chunk))
    }

    /// The first `Missing` chunk in rarest-first order that `peer` holds.
    fn rarest_held_by(&self, peer: PeerId) -> Option<u32> {
        let chunks = &self.peers.get(&peer)?.chunks;
        // Walk the ordered set while that is cheaper than intersecting the bitmaps, which
        // costs about one step per 64 chunks; a peer holding most of the file hits at once.
        let walk_budget = self.chunk_count as usize / 64 + 64;
        for &(_, _, c) in self.missing_order.iter().take(walk_budget) {
            if chunks.contains(c) {
                return Some(c);
            }
        }
        // The peer holds few missing chunks: find them word by word and take the best.
        let mut best: Option<(u32, u32, u32)> = None;
        let ours = self.missing.as_bitfield();
        let theirs = chunks.as_bitfield();
        for (word, (a, b)) in ours.chunks(8).zip(theirs.chunks(8)).enumerate() {
            let mut x = be_word(a) & be_word(b);
            while x != 0 {
                let bit = x.leading_zeros();
                x &= !(1u64 << (63 - bit));
                let c = word as u32 * 64 + bit;
                let entry = (self.availability[c as usize], self.key[c as usize], c);
                if best.is_none_or(|b| entry < b) {
                    best = Some(entry);
                }
            }
        }
        best.map(|(_, _, c)| c)
    }

    fn pick_endgame(&self, now: Instant) -> Option<(PeerId, u32)> {
        let copies_max = self.config.endgame_copies_max as usize;
        let mut candidates: Vec<(usize, Instant, u32)> = self
            .flights
            .iter()
            .filter(|(_, f)| f.assignments.len() < copies_max)
            .map(|(&c, f)| (f.assignments.len(), f.first_requested, c))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        // A peer holding none of the candidates cannot take one: leave it out before the
        // matching below, which looks up every candidate per peer. Tested 64 chunks at a time,
        // when that is fewer steps than the candidates.
        let wanted = (candidates.len() > self.chunk_count as usize / 64).then(|| {
            let mut set = ChunkSet::new(self.chunk_count);
            for &(_, _, c) in &candidates {
                set.insert(c);
            }
            set
        });
        let mut free: Vec<(PeerId, &PeerState)> = self
            .peers
            .iter()
            .filter(|(_, p)| (p.assigned.len() as u32) < self.window_of(p, now))
            .filter(|(_, p)| wanted.as_ref().is_none_or(|w| intersects(w, &p.chunks)))
            .map(|(&id, p)| (id, p))
            .collect();
        if free.is_empty() {
            return None;
        }
        candidates.sort_unstable();
        // Only now, past the early returns: the means are another pass over every peer.
        let means = self.means();
        free.sort_by_key(|&(id, p)| rank_key(id, p, now, means));
        free.iter().find_map(|&(id, p)| {
            candidates
                .iter()
                .find(|&&(_, _, c)| p.chunks.contains(c) && !p.assigned.contains(&c))
                .map(|&(_, _, c)| (id, c))
        })
    }

    /// Mean throughput and mean RTT of the peers that have one: what peers without an
    /// estimate are ranked at.
    fn means(&self) -> (u64, u64) {
        let (mut tp_sum, mut tp_n, mut rtt_sum, mut rtt_n) = (0u128, 0u128, 0u128, 0u128);
        for p in self.peers.values() {
            if let Some(tp) = p.throughput {
                tp_sum += u128::from(tp);
                tp_n += 1;
            }
            if let Some(rtt) = p.srtt {
                rtt_sum += u128::from(rtt);
                rtt_n += 1;
            }
        }
        let mean = |sum: u128, n: u128| sum.checked_div(n).map_or(0, |m| m as u64);
        (mean(tp_sum, tp_n), mean(rtt_sum, rtt_n))
    }

    fn in_flight_bounds(&self) -> (u32, u32) {
        // A window of 0 would starve the download; a max below the min is read as the min.
        let min = self.config.in_flight_min.max(1);
        (min, self.config.in_flight_max.max(min))
    }

    fn window_of(&self, p: &PeerState, now: Instant) -> u32 {
        if p.is_demoted(now) {
            return self.in_flight_bounds().0;
        }
        self.undemoted_window(p)
    }

    /// The window `p` has when not demoted: never smaller than its window at any instant.
    fn undemoted_window(&self, p: &PeerState) -> u32 {
        let (min, max) = self.in_flight_bounds();
        let (Some(tp), Some(rtt)) = (p.throughput, p.srtt) else {
            return min;
        };
        let denom = NANOS_PER_SEC * u128::from(self.chunk_size.max(1));
        let bdp_chunks = (u128::from(tp) * u128::from(rtt)).div_ceil(denom);
        let window = bdp_chunks.saturating_add(u128::from(min));
        u32::try_from(window).unwrap_or(u32::MAX).clamp(min, max)
    }

    /// Whether `backlog_max` worth of data at the total measured rate is already in flight
    /// (never below twice `in_flight_min` chunks; no limit before any rate is measured).
    fn backlog_full(&self) -> bool {
        let total_throughput: u64 = self.peers.values().filter_map(|p| p.throughput).sum();
        if total_throughput == 0 {
            return false;
        }
        let in_flight: u64 = self.peers.values().map(|p| p.assigned.len() as u64).sum();
        let (min, _) = self.in_flight_bounds();
        let bytes =
            u128::from(total_throughput) * self.config.backlog_max.as_nanos() / NANOS_PER_SEC;
        let chunks = u64::try_from(bytes / u128::from(self.chunk_size.max(1))).unwrap_or(u64::MAX);
        in_flight >= chunks.max(2 * u64::from(min))
    }

    fn request_timeout(&self, peer: PeerId) -> Duration {
        let min = self.config.request_timeout_min;
        let max = self.config.request_timeout_max.max(min);
        let chunk_times = |chunks: u64, bytes_per_s: u64| {
            let nanos = u128::from(TIMEOUT_CHUNK_TIMES)
                * u128::from(chunks)
                * u128::from(self.chunk_size)
                * NANOS_PER_SEC
                / u128::from(bytes_per_s.max(1));
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        };
        // Everything requested shares our own downlink: when it is the bottleneck, a
        // request waits behind all the others, however fast its peer. Timing it out then
        // only asks for it again and puts one more copy on the full link.
        let total_throughput: u64 = self.peers.values().filter_map(|p| p.throughput).sum();
        let in_flight: u64 = self.peers.values().map(|p| p.assigned.len() as u64).sum();
        let by_backlog = if total_throughput > 0 {
            // Half the margin: the backlog estimate already counts every request ahead.
            chunk_times(in_flight + 1, total_throughput) / 2
        } else {
            min
        };
        let by_peer = self
            .peers
            .get(&peer)
            .and_then(|p| p.throughput)
            .map_or(min, |tp| chunk_times(1, tp));
        by_peer.max(by_backlog).clamp(min, max)
    }

    // ---- bookkeeping ----

    fn state(&self, chunk_index: u32) -> Option<ChunkState> {
        self.state.get(chunk_index as usize).copied()
    }

    /// Whether some `Missing` chunk is held by at least one usable peer.
    fn missing_has_source(&self) -> bool {
        self.missing_order.range((1, 0, 0)..).next().is_some()
    }

    fn assign(&mut self, now: Instant, peer: PeerId, chunk: u32) {
        let deadline = now + self.request_timeout(peer);
        if self.state(chunk) == Some(ChunkState::Missing) {
            self.leave_missing(chunk);
            self.state[chunk as usize] = ChunkState::InFlight;
        }
        self.flights
            .entry(chunk)
            .or_insert_with(|| Flight {
                first_requested: now,
                assignments: Vec::new(),
            })
            .assignments
            .push(Assignment { peer, deadline });
        self.deadlines.insert((deadline, chunk, peer));
        if let Some(p) = self.peers.get_mut(&peer) {
            if p.assigned.is_empty() && p.sample_start.is_none() {
                // The peer starts working now: idle time before this must not count
                // against its throughput.
                p.sample_start = Some(now);
                p.sample_bytes = 0;
            }
            p.assigned.insert(chunk);
        }
    }

    fn set_deadline(&mut self, peer: PeerId, chunk: u32, deadline: Instant) {
        let Some(flight) = self.flights.get_mut(&chunk) else {
            return;
        };
        if let Some(a) = flight.assignments.iter_mut().find(|a| a.peer == peer) {
            self.deadlines.remove(&(a.deadline, chunk, peer));
            a.deadline = deadline;
            self.deadlines.insert((deadline, chunk, peer));
        }
    }

    /// Ends the request of `chunk` to `peer`, if any. A chunk left with no request goes back
    /// to `Missing` unless it is already past that (verifying or held).
    fn drop_assignment(&mut self, peer: PeerId, chunk: u32) {
        let Some(flight) = self.flights.get_mut(&chunk) else {
            return;
        };
        let Some(pos) = flight.assignments.iter().position(|a| a.peer == peer) else {
            return;
        };
        let a = flight.assignments.swap_remove(pos);
        let now_empty = flight.assignments.is_empty();
        self.deadlines.remove(&(a.deadline, chunk, peer));
        if let Some(p) = self.peers.get_mut(&peer) {
            p.assigned.remove(&chunk);
            if p.assigned.is_empty() {
                // Idle from here on: close the sampling window.
                // The window ends with the last byte that arrived, not with the event that
                // closed it (a timeout long after, say).
                if p.sample_bytes > 0
                    && let Some(last) = p.last_rx
                {
                    Self::take_sample(p, last);
                }
                p.sample_start = None;
                p.sample_bytes = 0;
            }
        }
        if now_empty {
            self.flights.remove(&chunk);
            if self.state(chunk) == Some(ChunkState::InFlight) {
                self.enter_missing(chunk);
            }
        }
    }

    /// Folds the open sampling window, ending at `end`, into the throughput EWMA.
    fn take_sample(p: &mut PeerState, end: Instant) {
        let Some(start) = p.sample_start else {
            return;
        };
        let elapsed = end.saturating_since(start).as_nanos();
        if elapsed == 0 {
            return;
        }
        let rate = u128::from(p.sample_bytes) * NANOS_PER_SEC / elapsed;
        let sample = u64::try_from(rate).unwrap_or(u64::MAX);
        p.throughput = Some(match p.throughput {
            None => sample,
            Some(old) => ewma(old, sample, THROUGHPUT_EWMA_DIVISOR),
        });
        p.sample_bytes = 0;
    }

    /// Applies a change of `peer`'s set, in bulk when it is large (see
    /// [`BULK_REBUILD_DIVISOR`]).
    fn change_peer_chunks(&mut self, peer: PeerId, gained: &[u32], lost: &[u32]) {
        let bulk =
            (gained.len() + lost.len()) * BULK_REBUILD_DIVISOR >= self.missing_order.len().max(1);
        for &c in lost {
            self.peer_lost_chunk(peer, c, !bulk);
        }
        for &c in gained {
            self.peer_gained_chunk(peer, c, !bulk);
        }
        if bulk {
            let mut order: Vec<(u32, u32, u32)> = set_bits(&self.missing)
                .map(|c| (self.availability[c as usize], self.key[c as usize], c))
                .collect();
            order.sort_unstable();
            self.missing_order = order.into_iter().collect();
        }
    }

    /// `reorder: false` leaves `missing_order` stale; the caller rebuilds it.
    fn peer_gained_chunk(&mut self, peer: PeerId, chunk: u32, reorder: bool) {
        if chunk >= self.chunk_count {
            return;
        }
        let is_missing = self.state(chunk) == Some(ChunkState::Missing);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !p.chunks.insert(chunk) {
            return;
        }
        if is_missing {
            p.useful += 1;
        }
        self.change_availability(chunk, 1, reorder);
    }

    /// `reorder: false` leaves `missing_order` stale; the caller rebuilds it.
    fn peer_lost_chunk(&mut self, peer: PeerId, chunk: u32, reorder: bool) {
        let is_missing = self.state(chunk) == Some(ChunkState::Missing);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !p.chunks.remove(chunk) {
            return;
        }
        if is_missing {
            p.useful = p.useful.saturating_sub(1);
        }
        self.change_availability(chunk, -1, reorder);
    }

    /// The tie-break key is kept: it is independent of availability, so the pick among
    /// equally rare chunks stays uniform.
    fn change_availability(&mut self, chunk: u32, delta: i32, reorder: bool) {
        let i = chunk as usize;
        let old = self.availability[i];
        let new = old.saturating_add_signed(delta);
        self.availability[i] = new;
        if reorder && self.state[i] == ChunkState::Missing {
            self.missing_order.remove(&(old, self.key[i], chunk));
            self.missing_order.insert((new, self.key[i], chunk));
        }
    }

    /// `chunk` becomes `Missing`: requestable again, with a fresh tie-break key.
    fn enter_missing(&mut self, chunk: u32) {
        let i = chunk as usize;
        if self.state[i] == ChunkState::Missing {
            return;
        }
        self.state[i] = ChunkState::Missing;
        let k = self.rng.random::<u32>();
        self.key[i] = k;
        self.missing.insert(chunk);
        self.missing_order.insert((self.availability[i], k, chunk));
        for p in self.peers.values_mut() {
            if p.chunks.contains(chunk) {
                p.useful += 1;
            }
        }
    }

    /// `chunk` stops being `Missing`; the caller sets its new state.
    fn leave_missing(&mut self, chunk: u32) {
        let i = chunk as usize;
        if self.state[i] != ChunkState::Missing {
            return;
        }
        self.missing.remove(chunk);
        self.missing_order
            .remove(&(self.availability[i], self.key[i], chunk));
        for p in self.peers.values_mut() {
            if p.chunks.contains(chunk) {
                p.useful = p.useful.saturating_sub(1);
            }
        }
        // Callers overwrite this; InFlight is a safe placeholder that is not Missing.
        self.state[i] = ChunkState::InFlight;
    }

    /// Checks every internal cross-reference; for tests.
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut avail = vec![0u32; self.chunk_count as usize];
        for p in self.peers.values() {
            for c in p.chunks.iter() {
                avail[c as usize] += 1;
            }
        }
        assert_eq!(avail, self.availability, "availability");
        let (_, max) = self.in_flight_bounds();
        for (id, p) in &self.peers {
            assert!(!self.banned.contains(id));
            let useful = p
                .chunks
                .iter()
                .filter(|&c| self.missing.contains(c))
                .count() as u32;
            assert_eq!(useful, p.useful, "useful count of {id:?}");
            assert!(p.assigned.len() as u32 <= max, "window max");
            for &c in &p.assigned {
                assert!(
                    self.flights[&c].assignments.iter().any(|a| a.peer == *id),
                    "assigned without flight"
                );
            }
        }
        let mut n_deadlines = 0;
        for (&c, f) in &self.flights {
            assert_eq!(self.state[c as usize], ChunkState::InFlight);
            assert!(!f.assignments.is_empty());
            for a in &f.assignments {
                assert!(self.peers[&a.peer].assigned.contains(&c));
                assert!(self.deadlines.contains(&(a.deadline, c, a.peer)));
                n_deadlines += 1;
            }
        }
        assert_eq!(n_deadlines, self.deadlines.len());
        assert_eq!(self.missing_order.len() as u32, self.missing.count());
        for c in 0..self.chunk_count {
            let i = c as usize;
            let s = self.state[i];
            assert_eq!(s == ChunkState::Have, self.have.contains(c));
            assert_eq!(s == ChunkState::Missing, self.missing.contains(c));
            assert_eq!(s == ChunkState::InFlight, self.flights.contains_key(&c));
            if s == ChunkState::Missing {
                assert!(
                    self.missing_order
                        .contains(&(self.availability[i], self.key[i], c))
                );
            }
        }
    }
}

/// Sort key of a peer, best first: not demoted, fastest, lowest RTT, then random.
fn rank_key(
    id: PeerId,
    p: &PeerState,
    now: Instant,
    (mean_tp, mean_rtt): (u64, u64),
) -> (bool, Reverse<u64>, u64, u64, PeerId) {
    (
        p.is_demoted(now),
        Reverse(p.throughput.unwrap_or(mean_tp)),
        p.srtt.unwrap_or(mean_rtt),
        p.tiebreak,
        id,
    )
}

/// `old + (sample - old) / divisor`, without overflow.
fn ewma(old: u64, sample: u64, divisor: u128) -> u64 {
    let v = (u128::from(old) * (divisor - 1) + u128::from(sample)) / divisor;
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// The chunks in `set`, in increasing order, skipping empty bytes: `ChunkSet::iter` tests
/// every index, which dominates adding a peer to a large file.
fn set_bits(set: &ChunkSet) -> impl Iterator<Item = u32> + '_ {
    set.as_bitfield()
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b != 0)
        .flat_map(|(i, &b)| {
            (0..8u32)
                .filter(move |bit| b & (0x80 >> bit) != 0)
                .map(move |bit| i as u32 * 8 + bit)
        })
}

/// Whether two sets of one length share a chunk.
fn intersects(a: &ChunkSet, b: &ChunkSet) -> bool {
    let (a, b) = (a.as_bitfield(), b.as_bitfield());
    a.chunks(8)
        .zip(b.chunks(8))
        .any(|(x, y)| be_word(x) & be_word(y) != 0)
}

/// Up to 8 bytes as a big-endian word, zero-padded: bit 63 is the first chunk.
fn be_word(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    // proptest's prelude exports another rand's `Rng`; name ours explicitly.
    use rand::Rng;

    const CHUNK: u32 = 1000;
    const MS: u64 = 1_000_000;

    fn at_ms(ms: u64) -> Instant {
        Instant::from_nanos(ms * MS)
    }

    fn set(len: u32, chunks: &[u32]) -> ChunkSet {
        let mut s = ChunkSet::new(len);
        for &c in chunks {
            s.insert(c);
        }
        s
    }

    fn sched(n: u32, seed: u64) -> Scheduler {
        Scheduler::new(SchedulerConfig::default(), n, CHUNK, ChunkSet::new(n), seed)
    }

    /// Drains `next_request` at `now`.
    fn drain(s: &mut Scheduler, now: Instant) -> Vec<(PeerId, u32)> {
        std::iter::from_fn(|| s.next_request(now)).collect()
    }

    #[test]
    fn never_requests_a_chunk_the_peer_lacks() {
        let mut s = sched(10, 1);
        s.add_peer(PeerId(1), set(10, &[1, 3, 5]));
        s.add_peer(PeerId(2), set(10, &[2, 4]));
        let reqs = drain(&mut s, Instant::ZERO);
        assert_eq!(reqs.len(), 4, "window 2 per peer: {reqs:?}");
        for (p, c) in reqs {
            match p {
                PeerId(1) => assert!([1, 3, 5].contains(&c)),
                PeerId(2) => assert!([2, 4].contains(&c)),
                _ => panic!("unknown peer"),
            }
        }
        s.check_invariants();
    }

    #[test]
    fn a_part_download_never_requests_an_unwanted_chunk() {
        let wanted = set(6, &[1, 4]);
        let mut s = Scheduler::new_part(
            SchedulerConfig::default(),
            6,
            CHUNK,
            ChunkSet::new(6),
            &wanted,
            3,
        );
        s.add_peer(PeerId(1), ChunkSet::full(6));
        s.add_peer(PeerId(2), ChunkSet::full(6));
        let mut asked: Vec<u32> = drain(&mut s, Instant::ZERO)
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        asked.sort_unstable();
        // Both in flight: the endgame asks the second peer too.
        asked.dedup();
        assert_eq!(asked, vec![1, 4]);
        assert_eq!(s.chunk_state(0), Some(ChunkState::Unwanted));
        assert!(!s.is_needed(0));
        // A chunk it never asked for cannot be verified into it.
        s.on_chunk_verified(0);
        assert_eq!(s.chunk_state(0), Some(ChunkState::Unwanted));
        for c in [1, 4] {
            s.on_chunk_received(at_ms(5), PeerId(1), c);
            s.on_chunk_verified(c);
        }
        assert!(drain(&mut s, at_ms(6)).is_empty());
        assert!(s.missing_without_source().is_empty());
        s.check_invariants();
    }

    #[test]
    fn window_caps_in_flight_and_grows_with_bandwidth_delay() {
        let mut s = sched(1000, 2);
        let p = PeerId(7);
        s.add_peer(p, ChunkSet::full(1000));
        assert_eq!(drain(&mut s, Instant::ZERO).len(), 2);
        assert_eq!(s.in_flight(p), 2);
        // 1 MB/s measured over a second, RTT 100 ms: BDP = 100 kB = 100 chunks: capped at 16.
        for ms in 1..=10 {
            s.on_bytes_received(at_ms(ms * 100), p, 0, 100_000);
        }
        s.record_rtt(p, Duration::from_millis(100));
        assert_eq!(s.throughput(p), Some(1_000_000));
        assert_eq!(s.window(p, at_ms(1000)), 16);
        // RTT 5 ms: BDP = 5 chunks, + in_flight_min 2 = 7.
        let mut s2 = sched(1000, 2);
        s2.add_peer(p, ChunkSet::full(1000));
        drain(&mut s2, Instant::ZERO);
        for ms in 1..=10 {
            s2.on_bytes_received(at_ms(ms * 100), p, 0, 100_000);
        }
        s2.record_rtt(p, Duration::from_millis(5));
        assert_eq!(s2.window(p, at_ms(1000)), 7);
        assert_eq!(drain(&mut s2, at_ms(1000)).len(), 5);
        assert_eq!(s2.in_flight(p), 7);
        s.check_invariants();
        s2.check_invariants();
    }

    #[test]
    fn picks_the_rarest_chunk_first() {
        // Chunk 3 is held by one peer, chunks 0..3 by three peers.
        let mut s = sched(4, 3);
        s.add_peer(PeerId(1), set(4, &[0, 1, 2, 3]));
        s.add_peer(PeerId(2), set(4, &[0, 1, 2]));
        s.add_peer(PeerId(3), set(4, &[0, 1, 2]));
        let first = drain(&mut s, Instant::ZERO);
        let to_1: Vec<u32> = first
            .iter()
            .filter(|(p, _)| *p == PeerId(1))
            .map(|&(_, c)| c)
            .collect();
        assert!(to_1.contains(&3), "{first:?}");
        // Whichever peer went first, chunk 3 was its pick if it was peer 1.
        let first_of_1 = first.iter().find(|(p, _)| *p == PeerId(1)).unwrap();
        assert_eq!(first_of_1.1, 3);
    }

    #[test]
    fn rarest_first_also_on_the_bitmap_path() {
        // 10_000 chunks; the peer holds few of them, far down the order, so the walk budget
        // runs out and the bitmap intersection finds them.
        let n = 10_000;
        let mut s = sched(n, 4);
        s.add_peer(PeerId(1), ChunkSet::full(n));
        s.add_peer(PeerId(2), set(n, &[9000, 9001, 9002]));
        s.add_peer(PeerId(3), set(n, &[9001, 9002]));
        let reqs = drain(&mut s, Instant::ZERO);
        let to_2: Vec<u32> = reqs
            .iter()
            .filter(|(p, _)| *p == PeerId(2))
            .map(|&(_, c)| c)
            .collect();
        assert!(!to_2.is_empty(), "{reqs:?}");
        for c in &to_2 {
            assert!([9000, 9001, 9002].contains(c));
        }
        // Unless peer 1 took it, peer 2's first pick is 9000 (availability 2 vs 3).
        if !reqs.contains(&(PeerId(1), 9000)) {
            assert_eq!(to_2[0], 9000);
        }
        s.check_invariants();
    }

    fn first_picks(seed: u64) -> Vec<u32> {
        let mut s = sched(64, seed);
        s.add_peer(PeerId(1), ChunkSet::full(64));
        drain(&mut s, Instant::ZERO)
            .into_iter()
            .map(|(_, c)| c)
            .collect()
    }

    #[test]
    fn tie_breaks_are_seeded() {
        assert_eq!(first_picks(5), first_picks(5));
        let distinct: BTreeSet<Vec<u32>> = (0..20).map(first_picks).collect();
        assert!(distinct.len() > 10, "{distinct:?}");
    }

    #[test]
    fn timeout_reassigns_and_demotes() {
        let mut s = sched(1, 6);
        s.add_peer(PeerId(1), ChunkSet::full(1));
        s.add_peer(PeerId(2), ChunkSet::full(1));
        let (first, c) = s.next_request(Instant::ZERO).unwrap();
        assert_eq!(c, 0);
        let other = if first == PeerId(1) {
            PeerId(2)
        } else {
            PeerId(1)
        };
        // Endgame would duplicate it to the other peer; take that out of the picture.
        let cfg = SchedulerConfig {
            endgame_copies_max: 1,
            ..SchedulerConfig::default()
        };
        let mut s = Scheduler::new(cfg.clone(), 1, CHUNK, ChunkSet::new(1), 6);
        s.add_peer(PeerId(1), ChunkSet::full(1));
        s.add_peer(PeerId(2), ChunkSet::full(1));
        assert_eq!(s.next_request(Instant::ZERO), Some((first, 0)));
        assert_eq!(s.next_request(Instant::ZERO), None);
        let deadline = s.poll_timeout().unwrap();
        assert_eq!(deadline, Instant::ZERO + cfg.request_timeout_min);
        // Progress pushes the deadline.
        s.on_bytes_received(at_ms(1000), first, 0, 100_000);
        assert_eq!(
            s.poll_timeout(),
            Some(at_ms(1000) + cfg.request_timeout_min)
        );
        assert!(s.handle_timeout(deadline).is_empty());
        let late = s.poll_timeout().unwrap();
        assert_eq!(s.handle_timeout(late), vec![(first, 0)]);
        assert!(s.is_demoted(first, late));
        assert!(!s.is_demoted(other, late));
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.next_request(late), Some((other, 0)));
        assert!(!s.is_demoted(first, late + cfg.demotion));
        s.check_invariants();
    }

    #[test]
    fn endgame_duplicates_and_returns_losers() {
        let mut s = sched(2, 7);
        s.add_peer(PeerId(1), ChunkSet::full(2));
        s.add_peer(PeerId(2), ChunkSet::full(2));
        s.add_peer(PeerId(3), ChunkSet::full(2));
        let reqs = drain(&mut s, Instant::ZERO);
        // Two chunks, two copies each.
        assert_eq!(reqs.len(), 4, "{reqs:?}");
        for c in 0..2 {
            let holders: BTreeSet<PeerId> = reqs.iter().filter(|r| r.1 == c).map(|r| r.0).collect();
            assert_eq!(holders.len(), 2);
        }
        let (winner, c) = reqs[0];
        let loser = reqs.iter().find(|r| r.1 == c && r.0 != winner).unwrap().0;
        assert_eq!(s.on_chunk_received(at_ms(5), winner, c), vec![loser]);
        assert_eq!(s.chunk_state(c), Some(ChunkState::Verifying));
        assert!(!s.is_needed(c));
        s.on_chunk_verified(c);
        assert_eq!(s.chunk_state(c), Some(ChunkState::Have));
        s.check_invariants();
    }

    #[test]
    fn endgame_prefers_fewest_copies() {
        let cfg = SchedulerConfig {
            endgame_copies_max: 3,
            in_flight_min: 1,
            ..SchedulerConfig::default()
        };
        let mut s = Scheduler::new(cfg, 2, CHUNK, ChunkSet::new(2), 8);
        s.add_peer(PeerId(1), ChunkSet::full(2));
        let a = s.next_request(Instant::ZERO).unwrap();
        s.add_peer(PeerId(2), ChunkSet::full(2));
        let b = s.next_request(at_ms(1)).unwrap();
        assert_ne!(a.1, b.1);
        // Both chunks have one copy; the older one (a's) is duplicated first.
        s.add_peer(PeerId(3), ChunkSet::full(2));
        assert_eq!(s.next_request(at_ms(2)), Some((PeerId(3), a.1)));
        s.add_peer(PeerId(4), ChunkSet::full(2));
        assert_eq!(s.next_request(at_ms(3)), Some((PeerId(4), b.1)));
        s.check_invariants();
    }

    #[test]
    fn failed_hash_bans_the_peer() {
        let mut s = sched(1, 9);
        s.add_peer(PeerId(1), ChunkSet::full(1));
        assert_eq!(s.next_request(Instant::ZERO), Some((PeerId(1), 0)));
        assert!(s.on_chunk_received(at_ms(1), PeerId(1), 0).is_empty());
        s.on_chunk_failed(PeerId(1), 0);
        assert!(s.is_banned(PeerId(1)));
        assert_eq!(s.peer_count(), 0);
        assert_eq!(s.chunk_state(0), Some(ChunkState::Missing));
        assert_eq!(s.missing_without_source(), vec![0]);
        s.add_peer(PeerId(1), ChunkSet::full(1));
        assert_eq!(s.peer_count(), 0);
        assert_eq!(s.next_request(at_ms(2)), None);
        s.add_peer(PeerId(2), ChunkSet::full(1));
        assert_eq!(s.next_request(at_ms(2)), Some((PeerId(2), 0)));
        s.check_invariants();
    }

    #[test]
    fn rejected_chunk_is_not_asked_of_that_peer_again() {
        let mut s = sched(2, 10);
        s.add_peer(PeerId(1), ChunkSet::full(2));
        let reqs = drain(&mut s, Instant::ZERO);
        assert_eq!(reqs.len(), 2);
        s.on_rejected(PeerId(1), 0);
        assert_eq!(s.availability(0), 0);
        assert_eq!(s.chunk_state(0), Some(ChunkState::Missing));
        assert_eq!(s.next_request(at_ms(1)), None);
        assert_eq!(s.missing_without_source(), vec![0]);
        s.peer_has(PeerId(1), 0);
        assert_eq!(s.next_request(at_ms(2)), Some((PeerId(1), 0)));
        s.check_invariants();
    }

    #[test]
    fn remove_peer_requeues_and_wrong_lengths_are_ignored() {
        let mut s = sched(3, 11);
        s.add_peer(PeerId(1), ChunkSet::full(3));
        s.add_peer(PeerId(2), ChunkSet::full(4));
        assert_eq!(s.peer_count(), 1);
        s.add_peer(PeerId(1), ChunkSet::full(2));
        assert_eq!(s.availability(2), 1);
        let reqs = drain(&mut s, Instant::ZERO);
        assert_eq!(reqs.len(), 2);
        s.remove_peer(PeerId(1));
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.missing_without_source(), vec![0, 1, 2]);
        // Replacing a set adjusts availability both ways.
        s.add_peer(PeerId(3), set(3, &[0, 1]));
        s.add_peer(PeerId(3), set(3, &[1, 2]));
        assert_eq!(
            (s.availability(0), s.availability(1), s.availability(2)),
            (0, 1, 1)
        );
        // Unknown peers and out-of-range chunks are ignored.
        s.peer_has(PeerId(9), 0);
        s.peer_has(PeerId(3), 99);
        s.on_rejected(PeerId(9), 99);
        s.on_chunk_verified(99);
        s.on_bytes_received(Instant::ZERO, PeerId(9), 99, 5);
        assert!(s.on_chunk_received(Instant::ZERO, PeerId(9), 99).is_empty());
        s.check_invariants();
        let bad_have = Scheduler::new(SchedulerConfig::default(), 3, CHUNK, ChunkSet::full(5), 0);
        assert_eq!(bad_have.have().count(), 0);
    }

    #[test]
    fn fast_peer_is_preferred() {
        let mut s = sched(100, 12);
        let (slow, fast) = (PeerId(1), PeerId(2));
        s.add_peer(slow, ChunkSet::full(100));
        s.add_peer(fast, ChunkSet::full(100));
        let reqs = drain(&mut s, Instant::ZERO);
        for &(p, c) in &reqs {
            let bytes = if p == fast { 100_000 } else { 1_000 };
            s.on_bytes_received(at_ms(200), p, c, bytes);
            s.on_chunk_received(at_ms(200), p, c);
            s.on_chunk_verified(c);
        }
        assert!(s.throughput(fast).unwrap() > s.throughput(slow).unwrap());
        assert_eq!(s.next_request(at_ms(300)).map(|r| r.0), Some(fast));
    }

    #[test]
    fn large_download_completes() {
        let n = 20_000;
        let mut s = sched(n, 13);
        for p in 0..200u64 {
            // Each peer holds a different half of the file, plus one full seeder.
            let chunks = if p == 0 {
                ChunkSet::full(n)
            } else {
                let mut cs = ChunkSet::new(n);
                for c in (p as u32 % 2..n).step_by(2) {
                    cs.insert(c);
                }
                cs
            };
            s.add_peer(PeerId(p), chunks);
        }
        let mut now = Instant::ZERO;
        let mut rounds = 0;
        while !s.is_complete() {
            rounds += 1;
            assert!(rounds < 1000);
            now = now + Duration::from_millis(10);
            for (p, c) in drain(&mut s, now) {
                s.on_bytes_received(now, p, c, u64::from(CHUNK));
                s.on_chunk_received(now, p, c);
                s.on_chunk_verified(c);
            }
        }
        s.check_invariants();
    }

    /// The brief's scale: 100k chunks, 1000 peers each holding a random half. Run with
    /// `cargo test --release -p p2p-core -- --ignored scale`.
    #[test]
    #[ignore = "scale check, slow in debug builds"]
    fn scale_100k_chunks_1000_peers() {
        let n = 100_000;
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        let mut s = sched(n, 14);
        for p in 0..1000u64 {
            let mut cs = ChunkSet::new(n);
            for c in 0..n {
                if rng.random::<bool>() {
                    cs.insert(c);
                }
            }
            s.add_peer(PeerId(p), cs);
        }
        let mut now = Instant::ZERO;
        let mut calls = 0u64;
        while !s.is_complete() {
            now = now + Duration::from_millis(10);
            for (p, c) in drain(&mut s, now) {
                calls += 1;
                s.on_bytes_received(now, p, c, u64::from(CHUNK));
                s.on_chunk_received(now, p, c);
                s.on_chunk_verified(c);
            }
        }
        assert!(calls >= u64::from(n));
    }

    #[derive(Clone, Debug)]
    enum Op {
        AddPeer(u8, Vec<bool>),
        PeerHas(u8, u8),
        Remove(u8),
        Ban(u8),
        Rtt(u8, u16),
        Next,
        Bytes(u8, u16),
        Received(u8),
        Verified(u8),
        Failed(u8),
        StoreFailed(u8),
        Rejected(u8),
        Tick(u16),
    }

    const N: u32 = 12;

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            1 => (0..6u8, proptest::collection::vec(any::<bool>(), N as usize))
                .prop_map(|(p, v)| Op::AddPeer(p, v)),
            1 => (0..6u8, 0..N as u8 + 2).prop_map(|(p, c)| Op::PeerHas(p, c)),
            1 => (0..6u8).prop_map(Op::Remove),
            1 => (0..8u8).prop_map(Op::Ban),
            1 => (0..6u8, any::<u16>()).prop_map(|(p, r)| Op::Rtt(p, r)),
            4 => Just(Op::Next),
            3 => (any::<u8>(), any::<u16>()).prop_map(|(i, b)| Op::Bytes(i, b)),
            3 => any::<u8>().prop_map(Op::Received),
            1 => any::<u8>().prop_map(Op::Verified),
            1 => any::<u8>().prop_map(Op::Failed),
            1 => any::<u8>().prop_map(Op::StoreFailed),
            1 => any::<u8>().prop_map(Op::Rejected),
            2 => any::<u16>().prop_map(Op::Tick),
        ]
    }

    /// Outstanding requests, as the test (the "peer machine") sees them.
    fn outstanding(s: &Scheduler, peers: &BTreeMap<PeerId, BTreeSet<u32>>) -> Vec<(PeerId, u32)> {
        let mut out = Vec::new();
        for &p in peers.keys() {
            if let Some(state) = s.peers.get(&p) {
                out.extend(state.assigned.iter().map(|&c| (p, c)));
            }
        }
        out
    }

    proptest! {
        #[test]
        fn random_operations_keep_invariants(seed: u64, ops in proptest::collection::vec(op(), 1..80)) {
            let mut s = Scheduler::new(SchedulerConfig::default(), N, CHUNK, ChunkSet::new(N), seed);
            // What each usable peer holds, by our own account; and peers we banned.
            let mut model: BTreeMap<PeerId, BTreeSet<u32>> = BTreeMap::new();
            let mut banned: BTreeSet<PeerId> = BTreeSet::new();
            let mut verifying: BTreeMap<u32, PeerId> = BTreeMap::new();
            let mut now = Instant::ZERO;
            for op in ops {
                match op {
                    Op::AddPeer(p, bits) => {
                        let p = PeerId(p.into());
                        let cs: Vec<u32> = (0..N).filter(|&c| bits[c as usize]).collect();
                        s.add_peer(p, set(N, &cs));
                        if !banned.contains(&p) {
                            model.insert(p, cs.into_iter().collect());
                        }
                    }
                    Op::PeerHas(p, c) => {
                        let p = PeerId(p.into());
                        s.peer_has(p, c.into());
                        if let Some(m) = model.get_mut(&p) && u32::from(c) < N {
                            m.insert(c.into());
                        }
                    }
                    Op::Remove(p) => {
                        let p = PeerId(p.into());
                        s.remove_peer(p);
                        model.remove(&p);
                    }
                    Op::Ban(p) => {
                        let p = PeerId(p.into());
                        s.ban(p);
                        model.remove(&p);
                        banned.insert(p);
                    }
                    Op::Rtt(p, ms) => s.record_rtt(PeerId(p.into()), Duration::from_millis(ms.into())),
                    Op::Next => {
                        let before: Vec<Option<ChunkState>> = (0..N).map(|c| s.chunk_state(c)).collect();
                        if let Some((p, c)) = s.next_request(now) {
                            prop_assert!(!banned.contains(&p));
                            prop_assert!(model.get(&p).is_some_and(|m| m.contains(&c)), "{p:?} lacks {c}");
                            prop_assert!(matches!(before[c as usize], Some(ChunkState::Missing | ChunkState::InFlight)));
                            prop_assert!(s.in_flight(p) <= s.window(p, now));
                        }
                    }
                    Op::Bytes(i, b) => {
                        let out = outstanding(&s, &model);
                        if !out.is_empty() {
                            let (p, c) = out[i as usize % out.len()];
                            s.on_bytes_received(now, p, c, b.into());
                        }
                    }
                    Op::Received(i) => {
                        let out = outstanding(&s, &model);
                        if !out.is_empty() {
                            let (p, c) = out[i as usize % out.len()];
                            let losers = s.on_chunk_received(now, p, c);
                            prop_assert!(!losers.contains(&p));
                            prop_assert_eq!(s.chunk_state(c), Some(ChunkState::Verifying));
                            verifying.insert(c, p);
                        }
                    }
                    Op::Verified(i) | Op::Failed(i) | Op::StoreFailed(i) => {
                        if !verifying.is_empty() {
                            let (&c, &p) = verifying.iter().nth(i as usize % verifying.len()).unwrap();
                            verifying.remove(&c);
                            match op {
                                Op::Verified(_) => s.on_chunk_verified(c),
                                Op::Failed(_) => {
                                    s.on_chunk_failed(p, c);
                                    model.remove(&p);
                                    banned.insert(p);
                                }
                                _ => s.on_chunk_store_failed(c),
                            }
                        }
                    }
                    Op::Rejected(i) => {
                        let out = outstanding(&s, &model);
                        if !out.is_empty() {
                            let (p, c) = out[i as usize % out.len()];
                            s.on_rejected(p, c);
                            if let Some(m) = model.get_mut(&p) {
                                m.remove(&c);
                            }
                        }
                    }
                    Op::Tick(ms) => {
                        now = now + Duration::from_millis(u64::from(ms) * 10);
                        if s.poll_timeout().is_some_and(|t| t <= now) {
                            prop_assert!(!s.handle_timeout(now).is_empty());
                        }
                        prop_assert!(s.poll_timeout().is_none_or(|t| t > now));
                    }
                }
                s.check_invariants();
                // A usable peer is one the model knows; its count must agree.
                prop_assert_eq!(s.peer_count(), model.len());
            }

            // Completion: give every chunk a source, answer every request.
            for (c, _) in std::mem::take(&mut verifying) {
                s.on_chunk_verified(c);
            }
            let seeder = PeerId(1000);
            s.add_peer(seeder, ChunkSet::full(N));
            model.insert(seeder, (0..N).collect());
            prop_assert!(s.missing_without_source().is_empty());
            for _ in 0..(4 * N) {
                if s.is_complete() {
                    break;
                }
                // Requests made before now are answered; new ones go out and are answered too.
                let mut todo = outstanding(&s, &model);
                let fresh = drain(&mut s, now);
                for &(p, c) in &fresh {
                    prop_assert!(model[&p].contains(&c));
                }
                todo.extend(fresh);
                for (p, c) in todo {
                    if s.is_needed(c) {
                        s.on_bytes_received(now, p, c, CHUNK.into());
                        s.on_chunk_received(now, p, c);
                        s.on_chunk_verified(c);
                    }
                }
                s.check_invariants();
                now = now + Duration::from_millis(1);
            }
            prop_assert!(s.is_complete());
            prop_assert_eq!(s.poll_timeout(), None);
        }
    }
}
