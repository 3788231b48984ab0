//! Scenarios: named presets and the random generator that turn a seed into a run's
//! configuration (swarm size, file, capacities, latencies, fault knobs).

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::collection::CollectionKnobs;
use crate::coop::CoopKnobs;
use crate::event_queue::{NANOS_PER_MS, NANOS_PER_S, Nanos};
use crate::faults::FaultKnobs;

/// A named workload with its faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// One seeder, many peers arriving at once; no faults but the intruders every scenario
    /// has.
    FlashCrowd,
    /// Peers arrive over time, crash, restart and leave.
    Churn,
    /// The tracker goes down and comes back empty, more than once.
    TrackerOutage,
    /// Partitions split and heal, including a swizzle.
    Partition,
    /// Some peers send corrupt pieces.
    CorruptPeers,
    /// Some peers have a fraction of normal capacity.
    SlowPeers,
    /// Everything drawn from the seed: swarm size, file and each fault kind.
    Random,
    /// A cooperative origin download: one fetcher and its helpers split the file by ranges
    /// from a simulated HTTP origin, under helper crashes, slow helpers and origin faults;
    /// later getters of the same URL get it from peers. Not in the seed-cycled mix (`ALL`):
    /// the sweep runs it on its own seeds, so every other seed keeps its scenario.
    Coop,
    /// A collection (a tree of many small files and some large ones, with copies, empty
    /// files and directories) under the random mix's faults; some peers want only part of
    /// it (`get --only`). Not in `ALL`, like `Coop`: the sweep runs it on its own seeds.
    Collection,
}

impl Scenario {
    /// The scenarios a sweep without `--scenario` cycles through, seed by seed.
    pub const ALL: [Scenario; 7] = [
        Scenario::FlashCrowd,
        Scenario::Churn,
        Scenario::TrackerOutage,
        Scenario::Partition,
        Scenario::CorruptPeers,
        Scenario::SlowPeers,
        Scenario::Random,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::FlashCrowd => "flash-crowd",
            Scenario::Churn => "churn",
            Scenario::TrackerOutage => "tracker-outage",
            Scenario::Partition => "partition",
            Scenario::CorruptPeers => "corrupt-peers",
            Scenario::SlowPeers => "slow-peers",
            Scenario::Random => "random",
            Scenario::Coop => "coop",
            Scenario::Collection => "collection",
        }
    }

    /// The scenario a sweep without `--scenario` runs for `seed`: all of them in turn.
    pub fn for_seed(seed: u64) -> Scenario {
        Scenario::ALL[(seed % Scenario::ALL.len() as u64) as usize]
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let named = Scenario::ALL
            .into_iter()
            .chain([Scenario::Coop, Scenario::Collection]);
        named.clone().find(|sc| sc.name() == s).ok_or_else(|| {
            let names: Vec<_> = named.map(|s| s.name()).collect();
            format!("unknown scenario '{s}' (one of: {})", names.join(", "))
        })
    }
}

/// How big a run may get. `Small` keeps a seed to a fraction of a second in the
/// (lightly optimised) test profile; `Full` is what the issue asks of `sweep`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Small,
    Full,
}

impl Scale {
    pub fn name(self) -> &'static str {
        match self {
            Scale::Small => "small",
            Scale::Full => "full",
        }
    }
}

impl FromStr for Scale {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "small" => Ok(Scale::Small),
            "full" => Ok(Scale::Full),
            _ => Err(format!("unknown scale '{s}' (small or full)")),
        }
    }
}

/// Everything a run is made of, drawn from the seed (or set by `bench`).
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub scenario: Scenario,
    pub scale: Scale,
    /// Downloading peers (the seeder and the tracker come on top).
    pub peer_count: u32,
    pub file_size_bytes: u64,
    pub chunk_size_bytes: u32,
    /// Normal capacities of every node's links.
    pub upload_bytes_per_s: u64,
    pub download_bytes_per_s: u64,
    /// Each node sits `latency` away from the network core, drawn in this range; a link's
    /// one-way delay is the sum of its two ends, plus jitter.
    pub node_latency_ms_min: u64,
    pub node_latency_ms_max: u64,
    pub jitter_ms_max: u64,
    /// Downloading peers join at uniform times in `0..arrival_window_ms`.
    pub arrival_window_ms: u64,
    /// Chance that a peer starts with the manifest (a ticket with it) rather than asking.
    pub manifest_known_probability: f64,
    /// How long faults strike; everything is healed at its end.
    pub fault_phase_ms: u64,
    /// After the heal, every peer with a source for every chunk must finish within this.
    pub liveness_bound_ms: u64,
    /// After a tracker restart (and after the heal), every live peer must be known to it
    /// within this.
    pub recovery_bound_ms: u64,
    /// Time a chunk read or verified write takes on a node's disk.
    pub disk_latency_us: u64,
    /// Pass every message through the wire codec (slow; catches codec asymmetries).
    pub codec_roundtrip: bool,
    pub faults: FaultKnobs,
    /// The cooperative download's participants and origin (`Scenario::Coop` only).
    pub coop: Option<CoopKnobs>,
    /// The tree shared and the parts peers want (`Scenario::Collection` only).
    pub collection: Option<CollectionKnobs>,
}

/// Chunk sizes a generated file may use (the manifest's minimum is 16 KiB).
const CHUNK_SIZES_FULL: [u32; 4] = [16 * 1024, 32 * 1024, 64 * 1024, 256 * 1024];
const CHUNK_COUNT_MAX_FULL: u64 = 96;
const CHUNK_COUNT_MAX_SMALL: u64 = 32;
const PEER_COUNT_MAX_FULL: u32 = 200;
const PEER_COUNT_MAX_SMALL: u32 = 30;

impl SimConfig {
    /// Draws a configuration for `scenario` from `rng` (the run's one RNG, freshly seeded).
    pub fn generate(
        seed: u64,
        scenario: Scenario,
        scale: Scale,
        rng: &mut ChaCha8Rng,
    ) -> SimConfig {
        let peer_max = match scale {
            Scale::Full => PEER_COUNT_MAX_FULL,
            Scale::Small => PEER_COUNT_MAX_SMALL,
        };
        // Swarm sizes are spread log-uniformly: most runs small and fast, some large.
        let peer_count = {
            let log_max = f64::from(peer_max).ln();
            let drawn = rng.random_range(2f64.ln()..=log_max).exp().round() as u32;
            drawn.clamp(2, peer_max)
        };
        let (chunk_size, chunk_count_max) = match scale {
            Scale::Full => (
                CHUNK_SIZES_FULL[rng.random_range(0..CHUNK_SIZES_FULL.len())],
                CHUNK_COUNT_MAX_FULL,
            ),
            Scale::Small => (16 * 1024, CHUNK_COUNT_MAX_SMALL),
        };
        let chunk_count = rng.random_range(1..=chunk_count_max);
        // The last chunk is usually short.
        let last_chunk = rng.random_range(1..=u64::from(chunk_size));
        let file_size = (chunk_count - 1) * u64::from(chunk_size) + last_chunk;
        let upload = rng.random_range(2_000_000..=20_000_000u64);
        let download = upload * rng.random_range(2..=8u64);
        let latency_min = rng.random_range(1..=10u64);
        let latency_max = latency_min + rng.random_range(0..=40u64);
        let mut config = SimConfig {
            seed,
            scenario,
            scale,
            peer_count,
            file_size_bytes: file_size,
            chunk_size_bytes: chunk_size,
            upload_bytes_per_s: upload,
            download_bytes_per_s: download,
            node_latency_ms_min: latency_min,
            node_latency_ms_max: latency_max,
            jitter_ms_max: rng.random_range(0..=10),
            arrival_window_ms: rng.random_range(0..=3_000),
            manifest_known_probability: rng.random_range(0.0..=1.0),
            fault_phase_ms: match scale {
                Scale::Full => rng.random_range(10_000..=30_000),
                Scale::Small => rng.random_range(4_000..=10_000),
            },
            liveness_bound_ms: 0,
            recovery_bound_ms: 15_000,
            disk_latency_us: rng.random_range(0..=500),
            codec_roundtrip: false,
            faults: FaultKnobs::default(),
            coop: None,
            collection: None,
        };
        let f = &mut config.faults;
        match scenario {
            Scenario::FlashCrowd => {
                config.arrival_window_ms = rng.random_range(0..=200);
            }
            Scenario::Churn => {
                config.arrival_window_ms = config.fault_phase_ms / 2;
                f.peer_crash_probability = rng.random_range(0.2..=0.7);
                f.peer_restart_delay_ms_mean = rng.random_range(500..=5_000);
                f.peer_leave_probability = rng.random_range(0.05..=0.3);
            }
            Scenario::TrackerOutage => {
                f.tracker_outage_count = rng.random_range(1..=3);
                f.tracker_outage_duration_ms_mean = rng.random_range(500..=6_000);
            }
            Scenario::Partition => {
                f.partition_count = rng.random_range(1..=3);
                f.partition_duration_ms_mean = rng.random_range(500..=6_000);
                f.swizzle_count = 1;
                f.swizzle_step_ms = rng.random_range(100..=1_000);
            }
            Scenario::CorruptPeers => {
                f.corrupt_peer_fraction = rng.random_range(0.1..=0.4);
                f.corrupt_piece_probability = rng.random_range(0.1..=1.0);
            }
            Scenario::SlowPeers => {
                f.slow_peer_fraction = rng.random_range(0.2..=0.6);
                f.slow_peer_capacity_factor = rng.random_range(0.02..=0.3);
            }
            Scenario::Random => draw_random_faults(f, rng),
            Scenario::Collection => {
                draw_random_faults(f, rng);
                let knobs = CollectionKnobs::generate(scale, rng);
                config.file_size_bytes = crate::collection::stream_len(&knobs.table(chunk_size));
                config.collection = Some(knobs);
            }
            Scenario::Coop => {
                // Helpers crash and come back (the fetcher never does: see `world/coop.rs`),
                // some are slow; the origin's own faults are in the knobs.
                f.peer_crash_probability = rng.random_range(0.0..=0.5);
                f.peer_restart_delay_ms_mean = rng.random_range(200..=3_000);
                if rng.random_bool(0.5) {
                    f.slow_peer_fraction = rng.random_range(0.2..=0.6);
                    f.slow_peer_capacity_factor = rng.random_range(0.02..=0.3);
                }
                // Files of a few ranges at least, so that helpers take some.
                let chunk_count = rng.random_range(8..=chunk_count_max);
                config.file_size_bytes = (chunk_count - 1) * u64::from(chunk_size) + last_chunk;
                config.arrival_window_ms = rng.random_range(0..=2_000);
                let coop =
                    CoopKnobs::generate(scale, config.file_size_bytes, config.fault_phase_ms, rng);
                // Sometimes the swarm splits or loses its tracker too (the origin stays
                // reachable from everyone).
                if rng.random_bool(0.3) {
                    f.partition_count = rng.random_range(1..=2);
                    f.partition_duration_ms_mean = rng.random_range(300..=4_000);
                }
                if rng.random_bool(0.3) {
                    f.tracker_outage_count = rng.random_range(1..=2);
                    f.tracker_outage_duration_ms_mean = rng.random_range(300..=4_000);
                }
                config.peer_count = coop.helper_count + coop.getter_count;
                config.coop = Some(coop);
            }
        }
        // Every scenario runs with intruders knocking: the swarm is private whatever else
        // goes wrong. Drawn last, so each seed keeps the rest of its configuration.
        f.outsider_count = 1;
        f.impostor_count = 1;
        if scenario == Scenario::Random {
            f.outsider_count = rng.random_range(0..=2);
            f.impostor_count = rng.random_range(0..=2);
        }
        f.intruder_dial_interval_ms = rng.random_range(100..=1_000);
        config.liveness_bound_ms = config.default_liveness_bound_ms();
        config
    }

    /// A generous bound: ten times the fluid transfer time of the whole swarm at the
    /// slowest capacity any node may have, plus a minute for reconnects and backoffs.
    pub fn default_liveness_bound_ms(&self) -> u64 {
        let slowest = if self.faults.slow_peer_fraction > 0.0 {
            self.faults.slow_peer_capacity_factor.max(0.01)
        } else {
            1.0
        };
        let upload = (self.upload_bytes_per_s as f64 * slowest).max(1.0);
        // Worst case: one slow node must push the whole file, and the swarm its N copies.
        let fluid_s = self.file_size_bytes as f64 / upload
            + f64::from(self.peer_count) * self.file_size_bytes as f64
                / self.upload_bytes_per_s as f64;
        let origin_s = self.coop.as_ref().map_or(0.0, |coop| {
            // The whole file through the origin's link, or the slowest participant's alone.
            let rate = (coop.origin_upload_bytes_per_s as f64)
                .min(coop.wan_download_bytes_per_s as f64 * slowest)
                .max(1.0);
            self.file_size_bytes as f64 / rate
                + coop.origin_latency_ms as f64 * f64::from(coop.origin_slow_factor) / 1_000.0
        });
        60_000 + ((fluid_s + origin_s) * 10_000.0) as u64
    }

    pub fn fault_phase(&self) -> Nanos {
        self.fault_phase_ms * NANOS_PER_MS
    }

    /// The replay command for this run.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!(
            "p2p-sim run --seed {} --scenario {}",
            self.seed, self.scenario
        );
        if self.scale != Scale::Full {
            cmd.push_str(&format!(" --scale {}", self.scale.name()));
        }
        cmd
    }
}

impl fmt::Display for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed={} scenario={} scale={}",
            self.seed,
            self.scenario,
            self.scale.name()
        )?;
        writeln!(
            f,
            "peer_count={} file_size_bytes={} chunk_size_bytes={} upload_bytes_per_s={} download_bytes_per_s={}",
            self.peer_count,
            self.file_size_bytes,
            self.chunk_size_bytes,
            self.upload_bytes_per_s,
            self.download_bytes_per_s
        )?;
        writeln!(
            f,
            "node_latency_ms_min={} node_latency_ms_max={} jitter_ms_max={} arrival_window_ms={} manifest_known_probability={:.2} disk_latency_us={}",
            self.node_latency_ms_min,
            self.node_latency_ms_max,
            self.jitter_ms_max,
            self.arrival_window_ms,
            self.manifest_known_probability,
            self.disk_latency_us
        )?;
        writeln!(
            f,
            "fault_phase_ms={} liveness_bound_ms={} recovery_bound_ms={} (liveness bound in s: {:.0})",
            self.fault_phase_ms,
            self.liveness_bound_ms,
            self.recovery_bound_ms,
            self.liveness_bound_ms as f64 * NANOS_PER_MS as f64 / NANOS_PER_S as f64
        )?;
        write!(f, "faults: {}", self.faults)?;
        if let Some(coop) = &self.coop {
            write!(f, "\ncoop: {coop}")?;
        }
        if let Some(collection) = &self.collection {
            write!(f, "\ncollection: {collection}")?;
        }
        Ok(())
    }
}

/// Each fault kind, drawn or not: the random mix's faults.
fn draw_random_faults(f: &mut FaultKnobs, rng: &mut ChaCha8Rng) {
    if rng.random_bool(0.5) {
        f.peer_crash_probability = rng.random_range(0.05..=0.5);
        f.peer_restart_delay_ms_mean = rng.random_range(200..=5_000);
    }
    if rng.random_bool(0.3) {
        f.peer_leave_probability = rng.random_range(0.05..=0.3);
    }
    if rng.random_bool(0.5) {
        f.tracker_outage_count = rng.random_range(1..=3);
        f.tracker_outage_duration_ms_mean = rng.random_range(200..=6_000);
    }
    if rng.random_bool(0.5) {
        f.partition_count = rng.random_range(1..=3);
        f.partition_duration_ms_mean = rng.random_range(200..=6_000);
    }
    if rng.random_bool(0.3) {
        f.swizzle_count = 1;
        f.swizzle_step_ms = rng.random_range(100..=1_000);
    }
    if rng.random_bool(0.4) {
        f.slow_peer_fraction = rng.random_range(0.1..=0.5);
        f.slow_peer_capacity_factor = rng.random_range(0.02..=0.5);
    }
    if rng.random_bool(0.4) {
        f.corrupt_peer_fraction = rng.random_range(0.05..=0.3);
        f.corrupt_piece_probability = rng.random_range(0.1..=1.0);
    }
    if rng.random_bool(0.4) {
        f.latency_spike_count = rng.random_range(1..=4);
        f.latency_spike_factor = rng.random_range(5..=50);
        f.latency_spike_duration_ms_mean = rng.random_range(200..=3_000);
    }
}
