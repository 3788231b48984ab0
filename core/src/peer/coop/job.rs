//! The jobs of a cooperative origin download: what the fetcher knows of each range of its
//! file (who fetches it, until when, how often it failed) and what a helper knows of a job
//! it helps with. Plain state with the bookkeeping on it; the messages are in `fetcher.rs`
//! and `helper.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;

use super::{
    ENDGAME_DUPLICATES_PER_RANGE, ENDGAME_SLOW_AGE_MIN, ENDGAME_SLOW_FACTOR, RANGE_TIME_WEIGHT_NEW,
};

use crate::chunkset::ChunkSet;
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
    /// Spot-check the ranges helpers deliver against the origin (see
    /// [`SPOT_CHECKS_PER_HELPER`](super::SPOT_CHECKS_PER_HELPER)). Off when the whole
    /// file's SHA-256 is known beforehand: that check is stronger and costs no origin bytes.
    pub spot_checks: bool,
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
    /// `by` holds it since `since`; it loses it at `deadline` (a helper that stalls).
    Fetching {
        by: Participant,
        since: Instant,
        deadline: Instant,
    },
    Writing,
    /// Written; `by` delivered it (a helper caught lying loses every range it delivered).
    Done {
        by: Participant,
    },
}

/// A second participant fetching a range someone else holds, in the endgame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Duplicate {
    pub(crate) by: Participant,
    pub(crate) since: Instant,
    pub(crate) deadline: Instant,
}

/// A few bytes of a range a helper delivered, to be fetched again from the origin by the
/// fetcher itself and compared.
#[derive(Clone, Debug)]
pub(crate) struct SpotCheck {
    pub(crate) helper: PeerId,
    pub(crate) range_index: u32,
    /// Offset in the file.
    pub(crate) offset: u64,
    /// What the helper delivered there.
    pub(crate) expected: Bytes,
    /// Retryable failures fetching it.
    pub(crate) attempts: u32,
}

/// What the fetcher keeps of each helper in one job.
#[derive(Clone, Debug, Default)]
pub(crate) struct HelperTally {
    /// Ranges it delivered that were taken for writing: the count the spot checks'
    /// reservoir sampling draws against.
    pub(crate) delivered: u32,
    /// Failures it reported (`RangeFailed`); past a bound it leaves the job.
    pub(crate) failures: u32,
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
    pub(crate) helpers: BTreeMap<PeerId, HelperTally>,
    /// Helpers that take no more work in this job: they left (a fatal failure, too many
    /// failures) or were caught delivering bytes the origin does not have.
    pub(crate) dismissed: BTreeSet<PeerId>,
    /// Of those, the ones caught: whatever they still deliver is dropped.
    pub(crate) banned: BTreeSet<PeerId>,
    /// Spot checks waiting for a slot.
    pub(crate) checks: Vec<SpotCheck>,
    pub(crate) checks_in_flight: u32,
    /// Spot checks that matched, and the origin bytes they cost.
    pub spot_checks_passed: u32,
    pub spot_check_bytes: u64,
    /// Endgame copies of ranges others hold, by range (at most
    /// [`ENDGAME_DUPLICATES_PER_RANGE`] each): the first copy written wins.
    pub(crate) duplicates: BTreeMap<u32, Vec<Duplicate>>,
    /// Endgame copies started over the job, each costing origin bytes twice for a while.
    pub duplicates_started: u32,
    /// How long a range takes from assignment to delivery, as a moving average over the
    /// job's delivered ranges: a range out for [`ENDGAME_SLOW_FACTOR`] times that is slow.
    pub(crate) range_time_typical: Option<Duration>,
    /// When an outstanding range next becomes slow enough to copy: idle participants are
    /// woken then (helpers told there was no work are offered the job again).
    pub(crate) endgame_at: Option<Instant>,
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
            helpers: BTreeMap::new(),
            dismissed: BTreeSet::new(),
            banned: BTreeSet::new(),
            checks: Vec::new(),
            checks_in_flight: 0,
            spot_checks_passed: 0,
            spot_check_bytes: 0,
            duplicates: BTreeMap::new(),
            duplicates_started: 0,
            range_time_typical: None,
            endgame_at: None,
        }
    }

    /// Offset and length of range `index`.
    pub fn range(&self, index: u32) -> (u64, u32) {
        let offset = u64::from(index) * u64::from(self.spec.range_len);
        let length = (self.spec.size - offset).min(u64::from(self.spec.range_len)) as u32;
        (offset, length)
    }

    pub(crate) fn take_pending(
        &mut self,
        by: Participant,
        now: Instant,
        deadline: Instant,
    ) -> Option<u32> {
        let index = self.ranges.iter().position(|r| *r == RangeState::Pending)?;
        self.ranges[index] = RangeState::Fetching {
            by,
            since: now,
            deadline,
        };
        Some(index as u32)
    }

    /// The endgame: with no range left in the pool, `by` (idle) takes a copy of the range
    /// held longest by someone else, once it has been out [`ENDGAME_SLOW_FACTOR`] times
    /// the typical range time, and at least [`ENDGAME_SLOW_AGE_MIN`] (a range going at the usual pace is left alone: a copy costs
    /// origin bytes).
    pub(crate) fn take_duplicate(
        &mut self,
        by: Participant,
        now: Instant,
        deadline: Instant,
    ) -> Option<u32> {
        let slow_after = self.slow_after()?;
        if self.ranges.contains(&RangeState::Pending) {
            return None;
        }
        let index = self
            .ranges
            .iter()
            .enumerate()
            .filter_map(|(index, range)| match *range {
                RangeState::Fetching {
                    by: holder, since, ..
                } if holder != by
                    && now.saturating_since(since) >= slow_after
                    && self.duplicates_of(index as u32).len() < ENDGAME_DUPLICATES_PER_RANGE
                    && !self.duplicates_of(index as u32).iter().any(|d| d.by == by) =>
                {
                    Some((since, index as u32))
                }
                _ => None,
            })
            .min()?
            .1;
        self.duplicates.entry(index).or_default().push(Duplicate {
            by,
            since: now,
            deadline,
        });
        self.duplicates_started += 1;
        Some(index)
    }

    /// When the next outstanding range becomes slow enough to copy, if after `now`.
    pub(crate) fn next_duplicate_at(&self, now: Instant) -> Option<Instant> {
        let slow_after = self.slow_after()?;
        if self.ranges.contains(&RangeState::Pending) {
            return None;
        }
        self.ranges
            .iter()
            .enumerate()
            .filter_map(|(index, range)| match *range {
                RangeState::Fetching { since, .. }
                    if self.duplicates_of(index as u32).len() < ENDGAME_DUPLICATES_PER_RANGE =>
                {
                    Some(since + slow_after)
                }
                _ => None,
            })
            .filter(|at| *at > now)
            .min()
    }

    fn slow_after(&self) -> Option<Duration> {
        Some((self.range_time_typical? * ENDGAME_SLOW_FACTOR).max(ENDGAME_SLOW_AGE_MIN))
    }

    pub(crate) fn duplicates_of(&self, index: u32) -> &[Duplicate] {
        self.duplicates.get(&index).map_or(&[], Vec::as_slice)
    }

    /// Range `index` arrived from `by`, to be written: the time it took joins the typical
    /// range time, and the others fetching it are returned, to be cancelled.
    pub(crate) fn take_for_writing(
        &mut self,
        index: u32,
        by: Participant,
        now: Instant,
    ) -> Vec<Participant> {
        let mut losers: Vec<Participant> = self
            .duplicates
            .remove(&index)
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.by)
            .filter(|b| *b != by)
            .collect();
        if let Some(RangeState::Fetching {
            by: holder, since, ..
        }) = self.ranges.get(index as usize).copied()
        {
            if holder == by {
                self.record_range_time(now.saturating_since(since));
            } else {
                // A copy won: its time is not known here (it started later), and the
                // holder's would say nothing of the usual pace.
                losers.push(holder);
            }
        }
        if let Some(range) = self.ranges.get_mut(index as usize) {
            *range = RangeState::Writing;
        }
        losers
    }

    fn record_range_time(&mut self, took: Duration) {
        self.range_time_typical = Some(match self.range_time_typical {
            None => took,
            Some(typical) => {
                typical.mul_f64(1.0 - RANGE_TIME_WEIGHT_NEW) + took.mul_f64(RANGE_TIME_WEIGHT_NEW)
            }
        });
    }

    /// Ranges `by` is fetching now (held or copied).
    pub(crate) fn held_by(&self, by: Participant) -> u32 {
        let held = self
            .ranges
            .iter()
            .filter(|r| matches!(r, RangeState::Fetching { by: b, .. } if *b == by))
            .count();
        let copied = self
            .duplicates
            .values()
            .flatten()
            .filter(|d| d.by == by)
            .count();
        (held + copied) as u32
    }

    pub(crate) fn is_fetching_by(&self, index: u32, by: Participant) -> bool {
        matches!(self.ranges.get(index as usize), Some(RangeState::Fetching { by: b, .. }) if *b == by)
            || self.duplicates_of(index).iter().any(|d| d.by == by)
    }

    /// `by` no longer fetches range `index`: a copy is forgotten; a holder hands the range
    /// to its copy if there is one, else it goes back to the pool.
    pub(crate) fn release(&mut self, index: u32, by: Participant) {
        if let Some(copies) = self.duplicates.get_mut(&index) {
            copies.retain(|d| d.by != by);
        }
        let Some(range) = self.ranges.get_mut(index as usize) else {
            return;
        };
        if !matches!(range, RangeState::Fetching { by: b, .. } if *b == by) {
            return;
        }
        let copies = self.duplicates.entry(index).or_default();
        *range = match copies.pop() {
            Some(copy) => RangeState::Fetching {
                by: copy.by,
                since: copy.since,
                deadline: copy.deadline,
            },
            None => RangeState::Pending,
        };
        if copies.is_empty() {
            self.duplicates.remove(&index);
        }
    }

    /// Puts every range `by` holds back in the pool (or with its copy), and drops its
    /// copies; returns how many it let go.
    pub(crate) fn requeue_all_of(&mut self, by: Participant) -> usize {
        let mut count = 0;
        for index in 0..self.ranges.len() as u32 {
            if self.is_fetching_by(index, by) {
                self.release(index, by);
                count += 1;
            }
        }
        count
    }

    /// Puts every range `helper` delivered, and every one it holds, back in the pool, and
    /// forgets what it delivered; returns how many ranges, and which of them were written.
    pub(crate) fn requeue_delivered_by(&mut self, helper: PeerId) -> (u32, Vec<u32>) {
        let by = Participant::Helper(helper);
        let held = self.requeue_all_of(by) as u32;
        let mut written = Vec::new();
        for index in 0..self.ranges.len() as u32 {
            if self.ranges[index as usize] == (RangeState::Done { by }) {
                self.ranges[index as usize] = RangeState::Pending;
                let (_, length) = self.range(index);
                self.bytes_done = self.bytes_done.saturating_sub(u64::from(length));
                written.push(index);
            }
        }
        self.fetched_by.remove(&by);
        self.checks.retain(|c| c.helper != helper);
        (held + written.len() as u32, written)
    }

    /// The ranges in `on_disk` (an earlier run's, of a set as long as the job's ranges)
    /// are done: written, by the fetcher as far as this job knows.
    pub(crate) fn mark_on_disk(&mut self, on_disk: &ChunkSet) {
        if on_disk.len() as usize != self.ranges.len() {
            return;
        }
        for index in on_disk.iter() {
            self.ranges[index as usize] = RangeState::Done {
                by: Participant::Local,
            };
            let (_, length) = self.range(index);
            self.bytes_done += u64::from(length);
        }
    }

    /// Every range written and every spot check passed.
    pub(crate) fn is_done(&self) -> bool {
        self.ranges
            .iter()
            .all(|r| matches!(r, RangeState::Done { .. }))
            && self.checks.is_empty()
            && self.checks_in_flight == 0
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let copies = self.duplicates.values().flatten().map(|d| d.deadline);
        self.ranges
            .iter()
            .filter_map(|r| match r {
                RangeState::Fetching { deadline, .. } => Some(*deadline),
                _ => None,
            })
            .chain(copies)
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
