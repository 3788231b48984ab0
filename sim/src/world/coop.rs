//! A cooperative origin download run (`Scenario::Coop`), driven as `p2p fetch` drives it:
//! the fetcher (node 1) starts a job for the origin's URL, writes every range in place, and
//! once the job is complete has its file checked, published and tied to the URL, so the
//! getters (who arrive only then) get it from peers. A job that fails during the fault
//! phase is run again, as a user would; the fetcher itself never crashes (a fetch does not
//! resume yet: issue 17).
//!
//! Its checkers, beside the swarm's own (getters are ordinary downloads):
//! - exact bytes: the fetcher's file equals the origin's when the job completes;
//! - origin bytes: what the origin sent is at most the file's size plus the bytes it sent
//!   again before the fetcher had written them (retries: failed, lost or slow ranges) plus
//!   spot checks: bytes the fetcher had written and fetched again only to check them;
//! - liveness: after the heal (the origin answers every request), the job ends within the
//!   bound, complete unless the origin's file changed under it.

use std::fmt;

use bytes::Bytes;
use p2p_core::peer::FetchSpec;
use rand::Rng;

use crate::event_queue::{NANOS_PER_MS, Nanos};
use crate::storage::{Disk, SourceFile};
use crate::trace::DigestTag;
use crate::violations::{FailureKind, Violations};
use crate::world::World;
use crate::world::coverage::Coverage;
use crate::world::event::Event;
use crate::world::node::{Life, Machine, Role};
use crate::world::origin::{Origin, OriginStats, URL, VALIDATOR};

/// The fetcher is node 1, where other scenarios have their seeder.
pub(crate) const FETCHER_NODE: usize = 1;
/// How long the user waits before running a failed fetch again.
const FETCH_AGAIN_AFTER: Nanos = 1_000 * NANOS_PER_MS;
/// Getters arrive within this long after the fetch completes.
const GETTER_ARRIVAL_WINDOW: Nanos = 2_000 * NANOS_PER_MS;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FetchState {
    Running,
    Complete,
    /// Ended for good: the origin's file changed, or it failed after the heal.
    Failed(String),
}

pub(crate) struct CoopRun {
    pub origin: Origin,
    /// Bytes of the file the current job has written.
    pub written: Coverage,
    /// The fetcher's `NAME.part`.
    file: Vec<u8>,
    pub state: FetchState,
    pub fetches_run_again: u32,
}

/// What a coop run did, for the report.
#[derive(Clone, Debug)]
pub struct CoopSummary {
    pub origin: OriginStats,
    /// `running`, `complete`, or `failed: REASON`.
    pub outcome: String,
    pub fetches_run_again: u32,
}

impl fmt::Display for CoopSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        write!(
            f,
            "coop: fetch {} (run again {} times); origin: requests={} errors_injected={} \
             slow_injected={} bytes_sent={} new={} retried={} spot_checks={} cancelled={} \
             wasted={}",
            self.outcome,
            self.fetches_run_again,
            o.requests,
            o.errors_injected,
            o.slow_injected,
            o.bytes_sent,
            o.new_bytes,
            o.retried_bytes,
            o.spot_check_bytes,
            o.cancelled_bytes,
            o.wasted_bytes
        )
    }
}

impl CoopRun {
    pub fn summary(&self) -> CoopSummary {
        let outcome = match &self.state {
            FetchState::Running => "running".to_string(),
            FetchState::Complete => "complete".to_string(),
            FetchState::Failed(reason) => format!("failed: {reason}"),
        };
        CoopSummary {
            origin: self.origin.stats.clone(),
            outcome,
            fetches_run_again: self.fetches_run_again,
        }
    }

    pub fn new(origin: Origin, size: u64) -> CoopRun {
        CoopRun {
            origin,
            written: Coverage::default(),
            file: vec![0; size as usize],
            state: FetchState::Running,
            fetches_run_again: 0,
        }
    }

    /// Whether the job has ended, one way or the other.
    pub fn is_settled(&self) -> bool {
        self.state != FetchState::Running
    }

    /// At the end of the run: the origin-bytes bound, and the job's liveness.
    pub fn finish(&self, violations: &mut Violations, now: Nanos, healed: bool, size: u64) {
        let s = &self.origin.stats;
        let allowed = size + s.retried_bytes + s.spot_check_bytes + s.cancelled_bytes;
        if s.bytes_sent > allowed {
            violations.push(
                FailureKind::Safety,
                now,
                format!(
                    "the origin sent {} bytes for a {size}-byte file, more than the file plus {} \
                     bytes of retried ranges, {} of spot checks and {} of cancelled copies: {} \
                     bytes the fetcher had already written were fetched again",
                    s.bytes_sent,
                    s.retried_bytes,
                    s.spot_check_bytes,
                    s.cancelled_bytes,
                    s.wasted_bytes
                ),
            );
        }
        if healed && self.state == FetchState::Running {
            violations.push(
                FailureKind::Liveness,
                now,
                format!(
                    "the fetch did not end although the origin answered every request since \
                     the heal: {} of {size} bytes written",
                    self.written.covered(0, size)
                ),
            );
        }
    }
}

impl World {
    /// The fetcher's job, as `p2p fetch` starts it after its `HEAD`.
    pub(crate) fn start_fetch(&mut self, node: usize) {
        let Some(knobs) = self.config.coop.as_ref() else {
            return;
        };
        let spec = FetchSpec {
            url: URL.to_string(),
            validator: VALIDATOR.to_string(),
            size: self.source.data.len() as u64,
            range_len: knobs.range_len_bytes,
            spot_checks: knobs.spot_checks,
        };
        self.drive(node, |m, now| {
            if let Machine::Peer(p) = m {
                let _job_id = p.fetch(now, spec);
            }
        });
    }

    /// `WriteRange`: into the fetcher's file at once; reported after the disk's latency.
    pub(crate) fn write_range(&mut self, node: usize, token: u64, offset: u64, data: Bytes) {
        self.digest
            .mix_tagged(DigestTag::OriginAction, &[node as u64, token]);
        self.trace(|| {
            format!(
                "node{node} WriteRange token {token} bytes {offset}+{}",
                data.len()
            )
        });
        let Some(coop) = self.coop.as_mut() else {
            return;
        };
        let end = offset as usize + data.len();
        if end > coop.file.len() {
            let addr = &self.nodes[node].addr;
            self.violations.push(
                FailureKind::Safety,
                self.queue.now(),
                format!("{addr} wrote a range ending at byte {end}, past the file's end"),
            );
            return;
        }
        coop.file[offset as usize..end].copy_from_slice(&data);
        coop.written.insert(offset, end as u64);
        let incarnation = self.nodes[node].incarnation;
        let at = self.disk_done_at();
        self.queue.schedule(
            at,
            Event::RangeWritten {
                node,
                incarnation,
                token,
            },
        );
    }

    pub(crate) fn on_range_written(&mut self, node: usize, incarnation: u32, token: u64) {
        if self.nodes[node].incarnation != incarnation {
            return;
        }
        self.drive(node, |m, now| {
            if let Machine::Peer(p) = m {
                p.handle_range_written(now, token, Ok(()));
            }
        });
    }

    /// `FetchComplete`: the file is checked against the origin's, then published and tied
    /// to the URL, and the getters come.
    pub(crate) fn on_fetch_complete(&mut self, node: usize) {
        let now = self.now();
        let Some(coop) = self.coop.as_mut() else {
            return;
        };
        if coop.state != FetchState::Running {
            return;
        }
        coop.state = FetchState::Complete;
        if coop.file.as_slice() != self.source.data.as_ref() {
            let first = first_difference(&coop.file, &self.source.data);
            let addr = &self.nodes[node].addr;
            self.violations.push(
                FailureKind::Safety,
                now,
                format!("{addr} completed its fetch with bytes that differ from the origin's from byte {first}"),
            );
            // The runtime would publish what it wrote; the simulator has no other copy to
            // share, so the getters do not come.
            self.cancel_getters();
            return;
        }
        self.nodes[node].completed_at = Some(now);
        self.publish_fetched(node);
        for getter in self.getters() {
            let at = now + self.rng.random_range(0..GETTER_ARRIVAL_WINDOW);
            self.queue.schedule(at, Event::Join { node: getter });
        }
        self.check_done();
    }

    /// The fetched file is shared, keyed also by its URL and validator.
    pub(crate) fn publish_fetched(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        n.disk = Disk::with_full(&self.source);
        n.has_manifest = true;
        let manifest = self.source.manifest.clone();
        let content_id = self.source.content_id;
        self.drive(node, |m, now| {
            if let Machine::Peer(p) = m {
                p.publish(now, manifest);
                p.set_origin(now, content_id, format!("{URL} {VALIDATOR}"));
            }
        });
    }

    /// `FetchFailed`: run again (in the fault phase, the origin's file unchanged), or the
    /// end of the fetch.
    pub(crate) fn on_fetch_failed(&mut self, node: usize, reason: String) {
        let now = self.now();
        let healed = self.healed;
        let Some(coop) = self.coop.as_mut() else {
            return;
        };
        if coop.state != FetchState::Running {
            return;
        }
        if coop.origin.validator_changed() {
            coop.state = FetchState::Failed(reason);
            self.cancel_getters();
            self.check_done();
            return;
        }
        if healed {
            let addr = &self.nodes[node].addr;
            self.violations.push(
                FailureKind::Liveness,
                now,
                format!("{addr}'s fetch failed after the heal, with the origin answering every request: {reason}"),
            );
            coop.state = FetchState::Failed(reason);
            self.cancel_getters();
            return;
        }
        coop.fetches_run_again += 1;
        coop.written = Coverage::default();
        self.queue
            .schedule(now + FETCH_AGAIN_AFTER, Event::FetchAgain { node });
    }

    /// The origin's file gets a new validator.
    pub(crate) fn change_validator(&mut self) {
        if let Some(coop) = self.coop.as_mut() {
            coop.origin.change_validator();
        }
    }

    fn getters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].role == Role::Leecher)
            .collect()
    }

    /// Getters wait for a fetch that will not complete: they never come.
    fn cancel_getters(&mut self) {
        for getter in self.getters() {
            if self.nodes[getter].life == Life::NotJoined {
                self.nodes[getter].life = Life::Departed;
            }
        }
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// The origin of a coop run, serving the source file.
pub(crate) fn new_coop_run(
    config: &crate::scenario::SimConfig,
    source: &SourceFile,
) -> Option<CoopRun> {
    let knobs = config.coop.as_ref()?;
    let origin = Origin::new(knobs, source.data.clone());
    Some(CoopRun::new(origin, source.data.len() as u64))
}
