//! Which chunk to ask for next, and from whom. SKELETON: the signatures are the contract the
//! peer machine codes against; bodies to be written.

use std::time::Duration;

use crate::chunkset::ChunkSet;
use crate::ids::PeerId;
use crate::time::Instant;

/// Tuning of one download's scheduler.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// A chunk request with no data for this long (or longer, for slow peers) is given up.
    pub request_timeout_min: Duration,
    /// Chunks in flight to a fresh or demoted peer.
    pub in_flight_min: u32,
    /// Most chunks in flight to one peer, however fast.
    pub in_flight_max: u32,
    /// In endgame, most peers one chunk may be requested from at once.
    pub endgame_copies_max: u32,
    /// How long a peer whose request timed out is ranked below all others.
    pub demotion: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            request_timeout_min: Duration::from_secs(5),
            in_flight_min: 2,
            in_flight_max: 16,
            endgame_copies_max: 2,
            demotion: Duration::from_secs(10),
        }
    }
}

pub struct Scheduler {
    _private: (),
}

#[allow(unused_variables)]
impl Scheduler {
    /// A scheduler for a file of `chunk_count` chunks of (nominally) `chunk_size` bytes, of
    /// which `have` are already verified. Ties are broken with a ChaCha RNG seeded by `rng_seed`.
    pub fn new(
        config: SchedulerConfig,
        chunk_count: u32,
        chunk_size: u32,
        have: ChunkSet,
        rng_seed: u64,
    ) -> Scheduler {
        unimplemented!()
    }
    /// Adds a peer, or replaces what a known peer holds. Ignored for banned peers.
    pub fn add_peer(&mut self, peer: PeerId, chunks: ChunkSet) {}
    /// A peer gained a chunk.
    pub fn peer_has(&mut self, peer: PeerId, chunk_index: u32) {}
    /// A peer is gone (disconnected): its in-flight chunks become requestable again.
    pub fn remove_peer(&mut self, peer: PeerId) {}
    /// A peer is banned for this content (sent data that failed its hash): removed, and never
    /// added again.
    pub fn ban(&mut self, peer: PeerId) {}
    pub fn is_banned(&self, peer: PeerId) -> bool {
        false
    }
    /// A round-trip time measured with ping/pong.
    pub fn record_rtt(&mut self, peer: PeerId, rtt: Duration) {}
    /// The next request to make: a peer with a free slot and a chunk it holds that we need,
    /// rarest first; in endgame, a duplicate of an outstanding chunk. Marks it in flight.
    /// Call until `None`.
    pub fn next_request(&mut self, now: Instant) -> Option<(PeerId, u32)> {
        None
    }
    /// `bytes` of `chunk_index` arrived from `peer`: feeds throughput and resets the timeout.
    pub fn on_bytes_received(&mut self, now: Instant, peer: PeerId, chunk_index: u32, bytes: u64) {}
    /// Every byte of `chunk_index` arrived from `peer`, to be verified. The chunk is no longer
    /// requested from anyone; returns the other peers it was in flight to (cancel them).
    pub fn on_chunk_received(
        &mut self,
        now: Instant,
        peer: PeerId,
        chunk_index: u32,
    ) -> Vec<PeerId> {
        Vec::new()
    }
    /// The chunk passed its hash and is stored.
    pub fn on_chunk_verified(&mut self, chunk_index: u32) {}
    /// The chunk failed its hash: `peer` is banned and the chunk is needed again.
    pub fn on_chunk_failed(&mut self, peer: PeerId, chunk_index: u32) {}
    /// Storing the chunk failed for a local reason: the chunk is needed again, no one is blamed.
    pub fn on_chunk_store_failed(&mut self, chunk_index: u32) {}
    /// `peer` refused the request: it is treated as not holding the chunk.
    pub fn on_rejected(&mut self, peer: PeerId, chunk_index: u32) {}
    /// Earliest request deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    /// Expires overdue requests, demoting their peers; returns them (peer, chunk) so the
    /// caller can cancel them and drop partial data.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(PeerId, u32)> {
        Vec::new()
    }
    pub fn have(&self) -> &ChunkSet {
        unimplemented!()
    }
    pub fn is_complete(&self) -> bool {
        false
    }
    /// Chunks still needed that no usable (connected, unbanned) peer holds.
    pub fn missing_without_source(&self) -> Vec<u32> {
        Vec::new()
    }
    /// Chunks in flight to `peer`.
    pub fn in_flight(&self, peer: PeerId) -> u32 {
        0
    }
    /// Peers known (not banned).
    pub fn peer_count(&self) -> usize {
        0
    }
}
