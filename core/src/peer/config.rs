//! The peer's tuning: every timer, limit and cap the machine works with, in one value the
//! driver builds before starting it.

use std::time::Duration;

use super::download::scheduler::SchedulerConfig;
use crate::ids::PeerId;

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
    /// Other trackers to announce to as well (issue 15), each with its addresses, tried in
    /// turn: a seeding getter's own tracker beside the swarm's.
    pub more_trackers: Vec<Vec<String>>,
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
            more_trackers: Vec::new(),
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
