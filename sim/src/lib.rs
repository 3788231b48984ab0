//! A deterministic discrete-event simulator for p2p: the real `p2p-core` tracker and peer
//! machines on a simulated network, with faults injected and checkers run after every run.
//!
//! One `u64` seed feeds one ChaCha RNG; time is virtual; there are no threads and no
//! iteration over unordered maps, so a seed replays bit for bit. `world/` is one run: its
//! event loop (`world/mod.rs`), the network model (`world/network.rs`), the fault model
//! (`world/faults.rs`, carrying out the plan drawn in `faults.rs`) and the checkers
//! (`world/safety.rs`, `world/liveness.rs`, `world/recovery.rs`, reporting the
//! `violations.rs` types). `storage.rs` holds the disks, `scenario.rs` the presets.

mod collection;
mod coop;
mod event_queue;
mod faults;
mod link;
mod run;
mod scenario;
mod storage;
mod trace;
mod violations;
mod world;

pub mod bench;

pub use coop::CoopKnobs;
pub use event_queue::{NANOS_PER_MS, NANOS_PER_S, Nanos};
pub use faults::FaultKnobs;
pub use run::{
    CollectionSummary, RunOptions, RunReport, configure, run, run_config, run_config_with,
};
pub use scenario::{Scale, Scenario, SimConfig};
pub use violations::{FailureKind, Violation};
pub use world::sim_peer_config;
pub use world::{CoopSummary, OriginStats, install_panic_hook};
