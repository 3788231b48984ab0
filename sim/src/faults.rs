//! Fault knobs and the fault plan drawn from them.
//!
//! Every knob is named for what it is, with its unit last, and printed next to the seed at
//! the start of a run. The plan is drawn up front from the run's RNG, so a fault happens at
//! the same virtual instant on every replay.

use std::fmt;

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::event_queue::{NANOS_PER_MS, Nanos};

/// How often and how hard each kind of fault strikes during the fault phase.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultKnobs {
    /// Chance that a peer (the seeder included) crashes once during the fault phase.
    pub peer_crash_probability: f64,
    /// Mean time a crashed peer stays down before it restarts from its disk.
    pub peer_restart_delay_ms_mean: u64,
    /// Chance that a downloading peer leaves for good (half politely, half by crashing).
    pub peer_leave_probability: f64,
    /// Tracker outages: the tracker crashes and restarts with empty state.
    pub tracker_outage_count: u32,
    pub tracker_outage_duration_ms_mean: u64,
    /// Network partitions: a random set of nodes is cut off from the rest, then healed.
    pub partition_count: u32,
    pub partition_duration_ms_mean: u64,
    /// Swizzles: nodes are cut off one by one, then healed one by one in another order.
    pub swizzle_count: u32,
    pub swizzle_step_ms: u64,
    /// Fraction of downloading peers whose links run at `slow_peer_capacity_factor` of normal.
    pub slow_peer_fraction: f64,
    pub slow_peer_capacity_factor: f64,
    /// Fraction of downloading peers that flip bytes in the pieces they send, and the chance
    /// that one piece they send is corrupted.
    pub corrupt_peer_fraction: f64,
    pub corrupt_piece_probability: f64,
    /// Latency spikes: every link of one node gets `latency_spike_factor` times slower.
    pub latency_spike_count: u32,
    pub latency_spike_factor: u32,
    pub latency_spike_duration_ms_mean: u64,
    /// Outsiders: nodes holding another swarm's secret that dial the tracker and peers
    /// every `intruder_dial_interval_ms` of the fault phase; every handshake must fail.
    pub outsider_count: u32,
    /// Impostors: members (the right secret, their own key) that dial the same way and
    /// send a `Hello` claiming another live peer's id; it must be refused, and the peer
    /// they name neither evicted from the tracker nor banned.
    pub impostor_count: u32,
    pub intruder_dial_interval_ms: u64,
}

impl FaultKnobs {
    /// Names of the fault kinds switched on.
    pub fn enabled(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        if self.peer_crash_probability > 0.0 {
            kinds.push("crash");
        }
        if self.peer_leave_probability > 0.0 {
            kinds.push("leave");
        }
        if self.tracker_outage_count > 0 {
            kinds.push("tracker-outage");
        }
        if self.partition_count > 0 {
            kinds.push("partition");
        }
        if self.swizzle_count > 0 {
            kinds.push("swizzle");
        }
        if self.slow_peer_fraction > 0.0 {
            kinds.push("slow");
        }
        if self.corrupt_peer_fraction > 0.0 {
            kinds.push("corrupt");
        }
        if self.latency_spike_count > 0 {
            kinds.push("latency-spike");
        }
        if self.outsider_count > 0 {
            kinds.push("outsider");
        }
        if self.impostor_count > 0 {
            kinds.push("impostor");
        }
        kinds
    }
}

impl fmt::Display for FaultKnobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "peer_crash_probability={:.2} peer_restart_delay_ms_mean={} peer_leave_probability={:.2} \
             tracker_outage_count={} tracker_outage_duration_ms_mean={} \
             partition_count={} partition_duration_ms_mean={} swizzle_count={} swizzle_step_ms={} \
             slow_peer_fraction={:.2} slow_peer_capacity_factor={:.2} \
             corrupt_peer_fraction={:.2} corrupt_piece_probability={:.2} \
             latency_spike_count={} latency_spike_factor={} latency_spike_duration_ms_mean={} \
             outsider_count={} impostor_count={} intruder_dial_interval_ms={}",
            self.peer_crash_probability,
            self.peer_restart_delay_ms_mean,
            self.peer_leave_probability,
            self.tracker_outage_count,
            self.tracker_outage_duration_ms_mean,
            self.partition_count,
            self.partition_duration_ms_mean,
            self.swizzle_count,
            self.swizzle_step_ms,
            self.slow_peer_fraction,
            self.slow_peer_capacity_factor,
            self.corrupt_peer_fraction,
            self.corrupt_piece_probability,
            self.latency_spike_count,
            self.latency_spike_factor,
            self.latency_spike_duration_ms_mean,
            self.outsider_count,
            self.impostor_count,
            self.intruder_dial_interval_ms,
        )
    }
}

/// One fault, at one instant. Node 0 is the tracker, 1 the seeder, the rest downloaders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    PeerCrash {
        node: usize,
    },
    PeerRestart {
        node: usize,
    },
    PeerLeave {
        node: usize,
        graceful: bool,
    },
    TrackerDown,
    TrackerUp,
    /// Cut `nodes` off from everyone else (they still reach each other).
    Partition {
        nodes: Vec<usize>,
    },
    PartitionHeal {
        nodes: Vec<usize>,
    },
    /// Cut one node off from everyone (a swizzle step).
    Isolate {
        node: usize,
    },
    Rejoin {
        node: usize,
    },
    LatencySpike {
        node: usize,
        factor: u32,
    },
    LatencySpikeEnd {
        node: usize,
    },
}

/// Draws a duration around `mean_ms` (uniform in half to one and a half times it).
fn around(rng: &mut ChaCha8Rng, mean_ms: u64) -> Nanos {
    let mean = mean_ms.max(1) * NANOS_PER_MS;
    rng.random_range(mean / 2..=mean + mean / 2)
}

/// The faults of one run, in no particular order (the event queue sorts them). Anything
/// still broken when the fault phase ends is healed then.
pub fn plan(
    knobs: &FaultKnobs,
    rng: &mut ChaCha8Rng,
    node_count: usize,
    fault_phase: Nanos,
) -> Vec<(Nanos, Fault)> {
    let mut faults = Vec::new();
    let phase = fault_phase.max(1);
    for node in 1..node_count {
        if rng.random_bool(knobs.peer_crash_probability.clamp(0.0, 1.0)) {
            let at = rng.random_range(0..phase);
            faults.push((at, Fault::PeerCrash { node }));
            let back = at + around(rng, knobs.peer_restart_delay_ms_mean);
            if back < phase {
                faults.push((back, Fault::PeerRestart { node }));
            }
        }
    }
    for node in 2..node_count {
        if rng.random_bool(knobs.peer_leave_probability.clamp(0.0, 1.0)) {
            let at = rng.random_range(0..phase);
            let graceful = rng.random_bool(0.5);
            faults.push((at, Fault::PeerLeave { node, graceful }));
        }
    }
    for _ in 0..knobs.tracker_outage_count {
        let at = rng.random_range(0..phase);
        faults.push((at, Fault::TrackerDown));
        let back = at + around(rng, knobs.tracker_outage_duration_ms_mean);
        if back < phase {
            faults.push((back, Fault::TrackerUp));
        }
    }
    for _ in 0..knobs.partition_count {
        let at = rng.random_range(0..phase);
        let mut nodes: Vec<usize> = (0..node_count).filter(|_| rng.random_bool(0.5)).collect();
        if nodes.is_empty() || nodes.len() == node_count {
            nodes = vec![rng.random_range(0..node_count)];
        }
        let back = at + around(rng, knobs.partition_duration_ms_mean);
        faults.push((
            at,
            Fault::Partition {
                nodes: nodes.clone(),
            },
        ));
        if back < phase {
            faults.push((back, Fault::PartitionHeal { nodes }));
        }
    }
    for _ in 0..knobs.swizzle_count {
        let start = rng.random_range(0..phase);
        let step = knobs.swizzle_step_ms.max(1) * NANOS_PER_MS;
        let mut nodes: Vec<usize> = (0..node_count).collect();
        nodes.shuffle(rng);
        nodes.truncate(rng.random_range(1..=node_count.div_ceil(2)));
        let mut at = start;
        for &node in &nodes {
            faults.push((at, Fault::Isolate { node }));
            at += step;
        }
        // Heal in another order: FoundationDB's swizzle-clog.
        nodes.shuffle(rng);
        for &node in &nodes {
            if at < phase {
                faults.push((at, Fault::Rejoin { node }));
            }
            at += step;
        }
    }
    for _ in 0..knobs.latency_spike_count {
        let at = rng.random_range(0..phase);
        let node = rng.random_range(0..node_count);
        let factor = knobs.latency_spike_factor.max(1);
        faults.push((at, Fault::LatencySpike { node, factor }));
        let back = at + around(rng, knobs.latency_spike_duration_ms_mean);
        if back < phase {
            faults.push((back, Fault::LatencySpikeEnd { node }));
        }
    }
    faults
}
