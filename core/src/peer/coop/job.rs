//! The jobs of a cooperative origin download: what the fetcher knows of each range of its
//! file (who fetches it, until when, how often it failed) and what a helper knows of a job
//! it helps with. Plain state with the bookkeeping on it; the messages are in `fetcher.rs`
//! and `helper.rs`.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{ConnId, PeerId};
use crate::time::Instant;

/// What the driver learned with `HEAD` and what the user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchSpec {
    pub url: String,
    /// `ETag` (preferred) or `Last-Modified`; sent as `If-Range` with every range.
    pub validator: String,
    pub size: u64,
    /// Bytes per range, at most [`BLOCK_LEN_MAX`](crate::wire::BLOCK_LEN_MAX) so a range travels in one message.
    pub range_len: u32,
}

/// Why fetching a range failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeError {
    /// Retrying cannot help: the origin's file changed (a `200` for a ranged request, a
    /// different validator, a short body) or it refused (`4xx`).
    pub fatal: bool,
    /// A helper's origin policy refused the URL (or a redirect of it): the helper stops
    /// taking ranges of this job, which others may still fetch. Never set by a fetcher.
    pub refused: bool,
    pub reason: String,
}

/// Who fetched a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Participant {
    /// The fetcher itself.
    Local,
    Helper(PeerId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeState {
    Pending,
    Fetching { by: Participant, deadline: Instant },
    Writing,
    Done,
}

/// The fetcher's side of one job.
pub struct FetchJob {
    pub job_id: u64,
    pub spec: FetchSpec,
    pub(crate) ranges: Vec<RangeState>,
    /// Retryable failures per range.
    pub(crate) failures: Vec<u32>,
    /// Bytes and ranges each participant delivered.
    pub fetched_by: BTreeMap<Participant, (u64, u32)>,
    /// Helpers told about the job.
    pub(crate) offered: BTreeSet<PeerId>,
    /// Helpers that asked for work when there was none: told again when a range frees up.
    pub(crate) idle: BTreeSet<PeerId>,
    pub(crate) local_in_flight: u32,
    /// After a local failure, the fetcher's own next attempt waits until then.
    pub(crate) local_retry_at: Option<Instant>,
    pub bytes_done: u64,
    pub(crate) finished: bool,
}

impl FetchJob {
    pub(crate) fn new(job_id: u64, spec: FetchSpec) -> FetchJob {
        let count = spec.size.div_ceil(u64::from(spec.range_len)) as usize;
        FetchJob {
            job_id,
            spec,
            ranges: vec![RangeState::Pending; count],
            failures: vec![0; count],
            fetched_by: BTreeMap::new(),
            offered: BTreeSet::new(),
            idle: BTreeSet::new(),
            local_in_flight: 0,
            local_retry_at: None,
            bytes_done: 0,
            finished: false,
        }
    }

    /// Offset and length of range `index`.
    pub fn range(&self, index: u32) -> (u64, u32) {
        let offset = u64::from(index) * u64::from(self.spec.range_len);
        let length = (self.spec.size - offset).min(u64::from(self.spec.range_len)) as u32;
        (offset, length)
    }

    pub(crate) fn take_pending(&mut self, by: Participant, deadline: Instant) -> Option<u32> {
        let index = self.ranges.iter().position(|r| *r == RangeState::Pending)?;
        self.ranges[index] = RangeState::Fetching { by, deadline };
        Some(index as u32)
    }

    pub(crate) fn is_fetching_by(&self, index: u32, by: Participant) -> bool {
        matches!(self.ranges.get(index as usize), Some(RangeState::Fetching { by: b, .. }) if *b == by)
    }

    /// Puts every range `by` holds back in the pool; returns how many.
    pub(crate) fn requeue_all_of(&mut self, by: Participant) -> usize {
        let mut count = 0;
        for range in &mut self.ranges {
            if matches!(range, RangeState::Fetching { by: b, .. } if *b == by) {
                *range = RangeState::Pending;
                count += 1;
            }
        }
        count
    }

    pub(crate) fn is_done(&self) -> bool {
        self.ranges.iter().all(|r| *r == RangeState::Done)
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.ranges
            .iter()
            .filter_map(|r| match r {
                RangeState::Fetching { deadline, .. } => Some(*deadline),
                _ => None,
            })
            .min()
    }
}

/// The helper's side of one job.
pub struct HelperJob {
    pub(crate) fetcher_conn: ConnId,
    pub(crate) url: String,
    pub(crate) validator: String,
    pub(crate) size: u64,
    /// `TakeWork`s sent and not yet answered: each allows exactly one `AssignRange`.
    pub(crate) asks_outstanding: u32,
    /// Ranges of this job being fetched for the fetcher.
    pub(crate) fetching: u32,
    /// This peer's origin policy refused the job's URL (the reason): it asks for no more
    /// ranges and answers any it was already promised with a failure, without fetching.
    pub(crate) refused: Option<String>,
    /// Slots of this job stayed free because the helper's total was busy: it asks when a
    /// fetch of any job finishes.
    pub(crate) waiting_for_total: bool,
}

impl HelperJob {
    /// Slots taken: asks waiting for an answer and fetches running.
    pub(crate) fn slots_busy(&self) -> u32 {
        self.asks_outstanding + self.fetching
    }
}
