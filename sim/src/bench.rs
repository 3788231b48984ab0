//! `p2p-sim bench`: how close the swarm gets to the fluid lower bound.
//!
//! A homogeneous swarm: one seeder and N peers, every node with upload capacity u and ample
//! download capacity (ten times u), all arriving at once, no faults. The fluid bound is
//! T_min = max(F/u_seed, F/d_min, N·F/(u_seed + Σu_peers)): the seeder must send every byte
//! once, every peer must receive every byte, and the swarm must move N·F bytes with all its
//! upload capacity. No schedule beats it, so a ratio below 1.0 is a simulator bug.

use std::time::Instant as WallInstant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::event_queue::{NANOS_PER_S, Nanos};
use crate::faults::FaultKnobs;
use crate::run::RunReport;
use crate::scenario::{Scale, Scenario, SimConfig};
use crate::world::World;

/// Upload capacity of every node: 100 Mbit/s.
pub const BENCH_UPLOAD_BYTES_PER_S: u64 = 12_500_000;
/// Download capacity: ample, ten times the upload.
pub const BENCH_DOWNLOAD_FACTOR: u64 = 10;
pub const BENCH_SEED: u64 = 1;

/// One bench swarm.
#[derive(Clone, Copy, Debug)]
pub struct BenchCase {
    pub peer_count: u32,
    pub chunk_size_bytes: u32,
    pub chunk_count: u32,
}

/// The swarms the issue asks for: N = 10 and 100 with a 256-chunk file, N = 1000 with a
/// 100 MiB file of 1 MiB chunks.
pub const CASES: [BenchCase; 3] = [
    BenchCase {
        peer_count: 10,
        chunk_size_bytes: 256 * 1024,
        chunk_count: 256,
    },
    BenchCase {
        peer_count: 100,
        chunk_size_bytes: 256 * 1024,
        chunk_count: 256,
    },
    BenchCase {
        peer_count: 1000,
        chunk_size_bytes: 1024 * 1024,
        chunk_count: 100,
    },
];

impl BenchCase {
    pub fn for_peer_count(n: u32) -> BenchCase {
        CASES
            .iter()
            .copied()
            .find(|c| c.peer_count == n)
            .unwrap_or(BenchCase {
                peer_count: n,
                chunk_size_bytes: 256 * 1024,
                chunk_count: 256,
            })
    }

    pub fn file_size_bytes(&self) -> u64 {
        u64::from(self.chunk_size_bytes) * u64::from(self.chunk_count)
    }

    pub fn config(&self) -> SimConfig {
        SimConfig {
            seed: BENCH_SEED,
            scenario: Scenario::FlashCrowd,
            scale: Scale::Full,
            peer_count: self.peer_count,
            file_size_bytes: self.file_size_bytes(),
            chunk_size_bytes: self.chunk_size_bytes,
            upload_bytes_per_s: BENCH_UPLOAD_BYTES_PER_S,
            download_bytes_per_s: BENCH_UPLOAD_BYTES_PER_S * BENCH_DOWNLOAD_FACTOR,
            node_latency_ms_min: 2,
            node_latency_ms_max: 2,
            jitter_ms_max: 0,
            arrival_window_ms: 0,
            manifest_known_probability: 1.0,
            fault_phase_ms: 0,
            liveness_bound_ms: 3_600_000,
            recovery_bound_ms: 15_000,
            disk_latency_us: 0,
            codec_roundtrip: false,
            faults: FaultKnobs::default(),
            coop: None,
            collection: None,
        }
    }

    /// The fluid lower bound, in seconds.
    pub fn t_min_s(&self) -> f64 {
        let f = self.file_size_bytes() as f64;
        let u = BENCH_UPLOAD_BYTES_PER_S as f64;
        let d = (BENCH_UPLOAD_BYTES_PER_S * BENCH_DOWNLOAD_FACTOR) as f64;
        let n = f64::from(self.peer_count);
        (f / u).max(f / d).max(n * f / (u + n * u))
    }
}

/// What one bench swarm measured.
#[derive(Clone, Debug)]
pub struct BenchResult {
    pub n: u32,
    pub file_size_bytes: u64,
    pub chunk_count: u32,
    pub t_min_s: f64,
    pub p50_ratio: f64,
    pub p99_ratio: f64,
    pub last_ratio: f64,
    pub completed: usize,
    pub wall_s: f64,
    pub events: u64,
    pub events_per_s: f64,
    pub peak_rss_bytes: u64,
    /// Events and messages per kind (`Stats::kinds_summary`).
    pub kinds: String,
    pub failure: Option<String>,
}

/// Runs one bench swarm in this process.
/// Runs one swarm; `seed` drives its randomness ([`BENCH_SEED`] for the reported figures,
/// others to tell a change's effect from one seed's luck).
pub fn run_case(case: BenchCase, seed: u64) -> BenchResult {
    let started = WallInstant::now();
    let mut config = case.config();
    config.seed = seed;
    // For profiling a large swarm: stop after this many virtual seconds (the run then
    // reports the unfinished peers as a liveness failure).
    if let Some(stop_s) = std::env::var("P2P_SIM_BENCH_STOP_S")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        config.liveness_bound_ms = stop_s * 1000;
    }
    let mut world = World::new(config, ChaCha8Rng::seed_from_u64(seed));
    world.run_to_end();
    let report: RunReport = crate::run::report(world);
    let wall_s = started.elapsed().as_secs_f64();
    let mut times: Vec<Nanos> = report.completions.iter().flatten().copied().collect();
    times.sort_unstable();
    let t_min = case.t_min_s();
    let ratio_at = |q: f64| -> f64 {
        if times.len() < report.completions.len() || times.is_empty() {
            return f64::INFINITY;
        }
        let rank = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len());
        times[rank - 1] as f64 / NANOS_PER_S as f64 / t_min
    };
    BenchResult {
        n: case.peer_count,
        file_size_bytes: case.file_size_bytes(),
        chunk_count: case.chunk_count,
        t_min_s: t_min,
        p50_ratio: ratio_at(0.5),
        p99_ratio: ratio_at(0.99),
        last_ratio: ratio_at(1.0),
        completed: times.len(),
        wall_s,
        events: report.stats.events,
        events_per_s: report.stats.events as f64 / wall_s.max(1e-9),
        peak_rss_bytes: peak_rss_bytes(),
        kinds: report.stats.kinds_summary(),
        failure: report.failure().map(|_| {
            report
                .violations
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        }),
    }
}

impl BenchResult {
    pub fn to_json(&self) -> serde_json::Value {
        let finite = |x: f64| {
            if x.is_finite() {
                serde_json::json!(x)
            } else {
                serde_json::Value::Null
            }
        };
        serde_json::json!({
            "n": self.n,
            "t_min_s": self.t_min_s,
            "p50_ratio": finite(self.p50_ratio),
            "p99_ratio": finite(self.p99_ratio),
            "last_ratio": finite(self.last_ratio),
            "wall_s": self.wall_s,
            "events_per_s": self.events_per_s,
            "peak_rss_bytes": self.peak_rss_bytes,
            "file_size_bytes": self.file_size_bytes,
            "chunk_count": self.chunk_count,
            "completed": self.completed,
            "events": self.events,
            "kinds": self.kinds,
            "failure": self.failure,
        })
    }

    pub fn from_json(value: &serde_json::Value) -> Option<BenchResult> {
        let f = |k: &str| {
            value
                .get(k)
                .and_then(|v| v.as_f64())
                .unwrap_or(f64::INFINITY)
        };
        Some(BenchResult {
            n: value.get("n")?.as_u64()? as u32,
            file_size_bytes: value.get("file_size_bytes")?.as_u64()?,
            chunk_count: value.get("chunk_count")?.as_u64()? as u32,
            t_min_s: f("t_min_s"),
            p50_ratio: f("p50_ratio"),
            p99_ratio: f("p99_ratio"),
            last_ratio: f("last_ratio"),
            completed: value.get("completed")?.as_u64()? as usize,
            wall_s: f("wall_s"),
            events: value.get("events")?.as_u64()?,
            events_per_s: f("events_per_s"),
            peak_rss_bytes: value.get("peak_rss_bytes")?.as_u64()?,
            kinds: value
                .get("kinds")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
            failure: value
                .get("failure")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        })
    }

    pub const TABLE_HEADER: &'static str = "     n   file_MiB chunks  t_min_s  p50_ratio  p99_ratio last_ratio   wall_s   events/s  peak_rss_MiB";

    pub fn table_row(&self) -> String {
        format!(
            "{:>6} {:>10.1} {:>6} {:>8.3} {:>10.3} {:>10.3} {:>10.3} {:>8.2} {:>10.0} {:>13.1}{}",
            self.n,
            self.file_size_bytes as f64 / (1024.0 * 1024.0),
            self.chunk_count,
            self.t_min_s,
            self.p50_ratio,
            self.p99_ratio,
            self.last_ratio,
            self.wall_s,
            self.events_per_s,
            self.peak_rss_bytes as f64 / (1024.0 * 1024.0),
            match &self.failure {
                Some(f) => format!("  FAILED: {f}"),
                None => String::new(),
            }
        )
    }
}

/// Peak resident memory of this process (`VmHWM`), in bytes; 0 where `/proc` is missing.
pub fn peak_rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}
