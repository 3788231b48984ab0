//! One run of one seed, start to verdict.

use std::fmt;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::event_queue::{NANOS_PER_S, Nanos};
use crate::scenario::{Scale, Scenario, SimConfig};
use crate::violations::{FailureKind, Violation};
use crate::world::{CoopSummary, EVENTS_MAX, Role, Stats, World};

/// What a run found.
pub struct RunReport {
    pub config: SimConfig,
    /// Hash of every event and action, in order: equal for two runs of one seed.
    pub digest: u64,
    pub end_time: Nanos,
    pub stats: Stats,
    pub violations: Vec<Violation>,
    pub violations_dropped: u64,
    /// Completion time of every downloading peer, `None` if it never completed.
    pub completions: Vec<Option<Nanos>>,
    /// The fetch and the origin's books, in a coop run.
    pub coop: Option<CoopSummary>,
    /// In a collection run: the tree's paths, and how many downloading peers wanted only
    /// part of it (with the chunks each asked for).
    pub collection: Option<CollectionSummary>,
}

/// The tree of a collection run and the parts its peers wanted.
pub struct CollectionSummary {
    pub paths: usize,
    pub chunk_count: u32,
    /// One per peer that wanted a part: the chunks it asked for, and whether it finished.
    pub parts: Vec<(u32, bool)>,
}

impl RunReport {
    /// The worst failure, if any.
    pub fn failure(&self) -> Option<FailureKind> {
        self.violations.iter().map(|v| v.kind).min()
    }

    pub fn exit_code(&self) -> u8 {
        self.failure().map_or(0, FailureKind::exit_code)
    }

    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let done = self.completions.iter().filter(|c| c.is_some()).count();
        writeln!(
            f,
            "end t={:.3}s events={} messages={} bytes={} pieces={} corrupted={} bans={} crashes={} tracker_restarts={} connections={} completed={}/{}",
            self.end_time as f64 / NANOS_PER_S as f64,
            self.stats.events,
            self.stats.messages_sent,
            self.stats.bytes_sent,
            self.stats.pieces_sent,
            self.stats.pieces_corrupted,
            self.stats.peers_banned,
            self.stats.crashes,
            self.stats.tracker_restarts,
            self.stats.connections_opened,
            done,
            self.completions.len(),
        )?;
        writeln!(
            f,
            "handshakes: messages={} refused={} timed_out={}; intruders: dials={} outsiders_refused={} impostor_refused_by_tracker={} impostor_refused_by_peers={}",
            self.stats.handshake_messages,
            self.stats.handshakes_refused,
            self.stats.handshakes_timed_out,
            self.stats.intruder_dials,
            self.stats.outsider_handshakes_refused,
            self.stats.impostor_refused_by_tracker,
            self.stats.impostor_refused_by_peers,
        )?;
        writeln!(f, "{}", self.stats.kinds_summary())?;
        if let Some(coop) = &self.coop {
            writeln!(f, "{coop}")?;
        }
        if let Some(c) = &self.collection {
            writeln!(
                f,
                "collection: {} paths, {} chunks; {} of {} downloading peers wanted a part, {} finished (chunks asked for: {:?})",
                c.paths,
                c.chunk_count,
                c.parts.len(),
                self.completions.len(),
                c.parts.iter().filter(|(_, done)| *done).count(),
                c.parts.iter().map(|(asked, _)| asked).collect::<Vec<_>>(),
            )?;
        }
        writeln!(f, "trace digest {:016x}", self.digest)?;
        for v in &self.violations {
            writeln!(f, "{v}")?;
        }
        if self.violations_dropped > 0 {
            writeln!(f, "({} more violations not shown)", self.violations_dropped)?;
        }
        match self.failure() {
            None => write!(f, "PASS"),
            Some(kind) => write!(
                f,
                "FAIL ({}); replay: {}",
                kind.name(),
                self.config.replay_command()
            ),
        }
    }
}

/// The configuration `seed` draws for `scenario`, and the RNG positioned after the draw.
pub fn configure(seed: u64, scenario: Scenario, scale: Scale) -> (SimConfig, ChaCha8Rng) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let config = SimConfig::generate(seed, scenario, scale, &mut rng);
    (config, rng)
}

/// Runs one seed to its verdict. With `tracing`, every event is printed.
pub fn run(seed: u64, scenario: Scenario, scale: Scale, tracing: bool) -> RunReport {
    let (config, rng) = configure(seed, scenario, scale);
    run_config(config, rng, tracing)
}

/// Runs a prepared configuration.
pub fn run_config(config: SimConfig, rng: ChaCha8Rng, tracing: bool) -> RunReport {
    let options = RunOptions {
        tracing,
        ..RunOptions::default()
    };
    run_config_with(config, rng, options)
}

/// How a developer looks into one run; none of it changes what the run does, only what is
/// printed and when it is given up on.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Prints every event (from `trace_from` on).
    pub tracing: bool,
    pub trace_from: Nanos,
    /// Events past which the run is declared not converging (a liveness failure).
    pub events_max: u64,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            tracing: false,
            trace_from: 0,
            events_max: EVENTS_MAX,
        }
    }
}

/// Runs a prepared configuration with a developer's options.
pub fn run_config_with(config: SimConfig, rng: ChaCha8Rng, options: RunOptions) -> RunReport {
    let mut world = World::new(config, rng);
    world.set_tracing(options.tracing);
    world.set_trace_from(options.trace_from);
    world.set_events_max(options.events_max);
    world.run_to_end();
    report(world)
}

pub(crate) fn report(world: World) -> RunReport {
    let completions = world
        .nodes
        .iter()
        .filter(|n| n.role == Role::Leecher)
        .map(|n| n.completed_at)
        .collect();
    let end_time = world.now();
    let coop = world.coop.as_ref().map(|c| c.summary());
    let collection = world.source.table.as_ref().map(|table| CollectionSummary {
        paths: table.entries().len(),
        chunk_count: world.source.chunk_count(),
        parts: world
            .nodes
            .iter()
            .filter_map(|n| {
                let asked = n.wanted.as_ref()?.count();
                Some((asked, n.completed_at.is_some()))
            })
            .collect(),
    });
    let (violations, violations_dropped) = world.violations.into_list();
    RunReport {
        config: world.config,
        digest: std::hash::Hasher::finish(&world.digest),
        end_time,
        stats: world.stats,
        violations,
        violations_dropped,
        completions,
        coop,
        collection,
    }
}
