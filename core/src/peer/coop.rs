//! Cooperative origin download: a fetcher splits one HTTP download into byte ranges, and
//! helper peers of its swarm pull ranges, fetch them from the origin with their own WAN
//! links, and deliver the bytes over the LAN. The fetcher writes every range in place.
//!
//! Both roles live in the peer machine (they share its connections); this module holds their
//! state and the glue. HTTP is the driver's: the machine asks for `FetchRange` and is told
//! the result with `Peer::handle_range_fetched`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;

use crate::ids::{ConnId, PeerId};
use crate::peer::{Peer, PeerAction, PeerNotice};
use crate::time::Instant;
use crate::wire::{BLOCK_LEN_MAX, Message};

/// Most times one range may fail (retryably) before the job is abandoned.
pub const RANGE_ATTEMPTS_MAX: u32 = 5;
/// Most jobs a helper works on at once; more offers are ignored.
pub const HELPER_JOBS_MAX: usize = 8;
/// Smallest range a job may be cut into: smaller ranges cost more in requests than they
/// gain in spreading.
pub const RANGE_LEN_MIN: u32 = 16 * 1024;

/// What the driver learned with `HEAD` and what the user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchSpec {
    pub url: String,
    /// `ETag` (preferred) or `Last-Modified`; sent as `If-Range` with every range.
    pub validator: String,
    pub size: u64,
    /// Bytes per range, at most [`BLOCK_LEN_MAX`] so a range travels in one message.
    pub range_len: u32,
}

/// Why fetching a range failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeError {
    /// Retrying cannot help: the origin's file changed (a `200` for a ranged request, a
    /// different validator, a short body) or it refused (`4xx`).
    pub fatal: bool,
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
enum RangeState {
    Pending,
    Fetching { by: Participant, deadline: Instant },
    Writing,
    Done,
}

/// The fetcher's side of one job.
pub struct FetchJob {
    pub job_id: u64,
    pub spec: FetchSpec,
    ranges: Vec<RangeState>,
    /// Retryable failures per range.
    failures: Vec<u32>,
    /// Bytes and ranges each participant delivered.
    pub fetched_by: BTreeMap<Participant, (u64, u32)>,
    /// Helpers told about the job.
    offered: BTreeSet<PeerId>,
    /// Helpers that asked for work when there was none: told again when a range frees up.
    idle: BTreeSet<PeerId>,
    local_in_flight: u32,
    /// After a local failure, the fetcher's own next attempt waits until then.
    local_retry_at: Option<Instant>,
    pub bytes_done: u64,
    finished: bool,
}

impl FetchJob {
    fn new(job_id: u64, spec: FetchSpec) -> FetchJob {
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

    pub fn range_count(&self) -> u32 {
        self.ranges.len() as u32
    }

    /// Offset and length of range `index`.
    pub fn range(&self, index: u32) -> (u64, u32) {
        let offset = u64::from(index) * u64::from(self.spec.range_len);
        let length = (self.spec.size - offset).min(u64::from(self.spec.range_len)) as u32;
        (offset, length)
    }

    fn take_pending(&mut self, by: Participant, deadline: Instant) -> Option<u32> {
        let index = self.ranges.iter().position(|r| *r == RangeState::Pending)?;
        self.ranges[index] = RangeState::Fetching { by, deadline };
        Some(index as u32)
    }

    fn is_fetching_by(&self, index: u32, by: Participant) -> bool {
        matches!(self.ranges.get(index as usize), Some(RangeState::Fetching { by: b, .. }) if *b == by)
    }

    /// Puts every range `by` holds back in the pool; returns how many.
    fn requeue_all_of(&mut self, by: Participant) -> usize {
        let mut count = 0;
        for range in &mut self.ranges {
            if matches!(range, RangeState::Fetching { by: b, .. } if *b == by) {
                *range = RangeState::Pending;
                count += 1;
            }
        }
        count
    }

    fn is_done(&self) -> bool {
        self.ranges.iter().all(|r| *r == RangeState::Done)
    }

    fn next_deadline(&self) -> Option<Instant> {
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
    pub job_id: u64,
    fetcher_conn: ConnId,
    url: String,
    validator: String,
    size: u64,
    /// `TakeWork`s sent and not yet answered, plus ranges being fetched.
    slots_busy: u32,
}

/// What a fetch or write token stands for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CoopPending {
    /// The fetcher fetching a range itself.
    LocalFetch { job_id: u64, range_index: u32 },
    /// The fetcher writing a delivered range.
    Write {
        job_id: u64,
        range_index: u32,
        by: Participant,
    },
    /// A helper fetching a range for a fetcher.
    HelperFetch {
        job_id: u64,
        range_index: u32,
        offset: u64,
    },
}

/// The coop state a peer carries.
#[derive(Default)]
pub(crate) struct Coop {
    pub(crate) fetches: BTreeMap<u64, FetchJob>,
    pub(crate) helping: BTreeMap<u64, HelperJob>,
    pub(crate) pending: BTreeMap<u64, CoopPending>,
}

impl Coop {
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for job in self.fetches.values().filter(|j| !j.finished) {
            for at in [job.next_deadline(), job.local_retry_at]
                .into_iter()
                .flatten()
            {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        next
    }

    pub(crate) fn has_active_fetch(&self) -> bool {
        self.fetches.values().any(|j| !j.finished)
    }
}

impl Peer {
    /// Starts a cooperative fetch of `spec` (the driver has done `HEAD`). Returns the job
    /// id the notices carry. Helpers are found through the tracker's peer list.
    pub fn fetch(&mut self, now: Instant, mut spec: FetchSpec) -> u64 {
        spec.range_len = spec.range_len.clamp(RANGE_LEN_MIN, BLOCK_LEN_MAX);
        let job_id = self.rng.random();
        self.coop
            .fetches
            .insert(job_id, FetchJob::new(job_id, spec));
        self.send_to_tracker(Message::ListPeers);
        let ready: Vec<ConnId> = self.ready_conns().collect();
        for conn in ready {
            self.offer_jobs(conn);
        }
        self.pump_local_fetches(now);
        self.finish_fetch_if_done(job_id);
        job_id
    }

    /// Stops a fetch (the user gave up): helpers are told.
    pub fn cancel_fetch(&mut self, _now: Instant, job_id: u64) {
        self.end_fetch(job_id, "cancelled by the fetcher".into());
    }

    /// Inspection: a running or finished fetch job.
    pub fn fetch_job(&self, job_id: u64) -> Option<&FetchJob> {
        self.coop.fetches.get(&job_id)
    }

    /// A `FetchRange` finished.
    pub fn handle_range_fetched(
        &mut self,
        now: Instant,
        token: u64,
        result: Result<Bytes, RangeError>,
    ) {
        match self.coop.pending.remove(&token) {
            Some(CoopPending::LocalFetch {
                job_id,
                range_index,
            }) => {
                if let Some(job) = self.coop.fetches.get_mut(&job_id) {
                    job.local_in_flight = job.local_in_flight.saturating_sub(1);
                }
                self.on_range_result(now, job_id, range_index, Participant::Local, result);
            }
            Some(CoopPending::HelperFetch {
                job_id,
                range_index,
                offset,
            }) => {
                let Some(job) = self.coop.helping.get_mut(&job_id) else {
                    return;
                };
                job.slots_busy = job.slots_busy.saturating_sub(1);
                let conn = job.fetcher_conn;
                let message = match result {
                    Ok(data) => {
                        // Bytes handed to another peer count as uploaded, like pieces.
                        self.uploaded_bytes += data.len() as u64;
                        Message::DeliverRange {
                            job_id,
                            range_index,
                            offset,
                            data,
                        }
                    }
                    Err(error) => Message::RangeFailed {
                        job_id,
                        range_index,
                        fatal: error.fatal,
                        reason: error.reason,
                    },
                };
                self.send(conn, message);
                self.ask_for_work(job_id);
            }
            _ => {}
        }
        self.pump_local_fetches(now);
    }

    /// A `WriteRange` finished.
    pub fn handle_range_written(&mut self, now: Instant, token: u64, result: Result<(), String>) {
        let Some(CoopPending::Write {
            job_id,
            range_index,
            by,
        }) = self.coop.pending.remove(&token)
        else {
            return;
        };
        if let Err(reason) = result {
            self.end_fetch(
                job_id,
                format!("cannot write range {range_index}: {reason}"),
            );
            return;
        }
        let Some(job) = self.coop.fetches.get_mut(&job_id) else {
            return;
        };
        if job.finished {
            return;
        }
        let (offset, length) = job.range(range_index);
        job.ranges[range_index as usize] = RangeState::Done;
        job.bytes_done += u64::from(length);
        let entry = job.fetched_by.entry(by).or_default();
        entry.0 += u64::from(length);
        entry.1 += 1;
        let by_label = self.participant_label(by);
        let progress = self.fetch_progress(job_id);
        self.notify(PeerNotice::RangeFetched {
            job_id,
            range_index,
            offset,
            length,
            by: by_label,
        });
        if let Some(progress) = progress {
            self.notify(progress);
        }
        self.finish_fetch_if_done(job_id);
        self.pump_local_fetches(now);
    }

    /// Deadlines of ranges out with helpers, and the fetcher's own retry backoff.
    pub(crate) fn coop_timers(&mut self, now: Instant) {
        let mut freed = Vec::new();
        for job in self.coop.fetches.values_mut().filter(|j| !j.finished) {
            let mut any = false;
            for range in &mut job.ranges {
                if let RangeState::Fetching { by, deadline } = *range
                    && now >= deadline
                    && by != Participant::Local
                {
                    // A helper that stalls loses the range to whoever asks next.
                    *range = RangeState::Pending;
                    any = true;
                }
            }
            if any {
                freed.push(job.job_id);
            }
        }
        for job_id in freed {
            self.reoffer_to_idle(job_id);
        }
        self.pump_local_fetches(now);
    }

    /// The fetcher's own slots take ranges like any helper.
    pub(crate) fn pump_local_fetches(&mut self, now: Instant) {
        let slots = self.config.origin_connections.max(1);
        let timeout = self.config.coop_range_timeout;
        let mut fetches = Vec::new();
        for job in self.coop.fetches.values_mut().filter(|j| !j.finished) {
            match job.local_retry_at {
                Some(at) if now < at => continue,
                Some(_) => job.local_retry_at = None,
                None => {}
            }
            while job.local_in_flight < slots {
                // The fetcher's own ranges never time out: its driver reports every fetch.
                let far = now + timeout * 1000;
                let Some(index) = job.take_pending(Participant::Local, far) else {
                    break;
                };
                job.local_in_flight += 1;
                let (offset, length) = job.range(index);
                fetches.push((
                    job.job_id,
                    index,
                    job.spec.url.clone(),
                    job.spec.validator.clone(),
                    offset,
                    length,
                ));
            }
        }
        for (job_id, range_index, url, validator, offset, length) in fetches {
            let token = self.next_token();
            self.coop.pending.insert(
                token,
                CoopPending::LocalFetch {
                    job_id,
                    range_index,
                },
            );
            self.actions.push_back(PeerAction::FetchRange {
                token,
                url,
                validator,
                offset,
                length,
            });
        }
    }

    /// Offers every running job to a newly ready connection.
    pub(crate) fn offer_jobs(&mut self, conn: ConnId) {
        let Some(remote) = self.conns.get(&conn).and_then(|c| c.remote) else {
            return;
        };
        let offers: Vec<Message> = self
            .coop
            .fetches
            .values_mut()
            .filter(|j| !j.finished)
            .map(|job| {
                job.offered.insert(remote);
                Message::OfferJob {
                    job_id: job.job_id,
                    url: job.spec.url.clone(),
                    validator: job.spec.validator.clone(),
                    size: job.spec.size,
                    range_len: job.spec.range_len,
                }
            })
            .collect();
        for offer in offers {
            self.send(conn, offer);
        }
    }

    /// Coop messages on a ready peer connection.
    pub(crate) fn on_coop_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: PeerId,
        message: Message,
    ) {
        match message {
            // ---- as a helper ----
            Message::OfferJob {
                job_id,
                url,
                validator,
                size,
                range_len,
            } => {
                let _ = range_len;
                if !self.config.help_others
                    || self.coop.fetches.contains_key(&job_id)
                    || (self.coop.helping.len() >= HELPER_JOBS_MAX
                        && !self.coop.helping.contains_key(&job_id))
                {
                    return;
                }
                let job = self.coop.helping.entry(job_id).or_insert(HelperJob {
                    job_id,
                    fetcher_conn: conn,
                    url,
                    validator,
                    size,
                    slots_busy: 0,
                });
                job.fetcher_conn = conn;
                self.ask_for_work(job_id);
            }
            Message::AssignRange {
                job_id,
                range_index,
                offset,
                length,
            } => {
                let Some(job) = self.coop.helping.get(&job_id) else {
                    return;
                };
                if job.fetcher_conn != conn
                    || length == 0
                    || length > BLOCK_LEN_MAX
                    || offset
                        .checked_add(u64::from(length))
                        .is_none_or(|end| end > job.size)
                {
                    self.refuse(conn, "range assignment outside the job".into());
                    return;
                }
                let (url, validator) = (job.url.clone(), job.validator.clone());
                let token = self.next_token();
                self.coop.pending.insert(
                    token,
                    CoopPending::HelperFetch {
                        job_id,
                        range_index,
                        offset,
                    },
                );
                self.actions.push_back(PeerAction::FetchRange {
                    token,
                    url,
                    validator,
                    offset,
                    length,
                });
            }
            Message::NoWork { job_id } => {
                if let Some(job) = self.coop.helping.get_mut(&job_id)
                    && job.fetcher_conn == conn
                {
                    job.slots_busy = job.slots_busy.saturating_sub(1);
                }
            }
            Message::EndJob { job_id, .. }
                if self
                    .coop
                    .helping
                    .get(&job_id)
                    .is_some_and(|j| j.fetcher_conn == conn) =>
            {
                self.coop.helping.remove(&job_id);
            }
            // ---- as the fetcher ----
            Message::TakeWork { job_id } => {
                let timeout = self.config.coop_range_timeout;
                let Some(job) = self.coop.fetches.get_mut(&job_id) else {
                    return;
                };
                if job.finished {
                    self.send(
                        conn,
                        Message::EndJob {
                            job_id,
                            reason: "the job is over".into(),
                        },
                    );
                    return;
                }
                let reply = match job.take_pending(Participant::Helper(remote), now + timeout) {
                    Some(range_index) => {
                        job.idle.remove(&remote);
                        let (offset, length) = job.range(range_index);
                        Message::AssignRange {
                            job_id,
                            range_index,
                            offset,
                            length,
                        }
                    }
                    None => {
                        job.idle.insert(remote);
                        Message::NoWork { job_id }
                    }
                };
                self.send(conn, reply);
            }
            Message::DeliverRange {
                job_id,
                range_index,
                offset,
                data,
            } => {
                let by = Participant::Helper(remote);
                let Some(job) = self.coop.fetches.get(&job_id) else {
                    return;
                };
                if !job.is_fetching_by(range_index, by) {
                    // Late (the range timed out and went to someone else) or never asked.
                    return;
                }
                let (expected_offset, length) = job.range(range_index);
                if offset != expected_offset || data.len() != length as usize {
                    self.refuse(conn, "delivered range does not match its assignment".into());
                    return;
                }
                self.write_range(job_id, range_index, by, offset, data);
            }
            Message::RangeFailed {
                job_id,
                range_index,
                fatal,
                reason,
            } => {
                let by = Participant::Helper(remote);
                if self
                    .coop
                    .fetches
                    .get(&job_id)
                    .is_some_and(|j| j.is_fetching_by(range_index, by))
                {
                    let addr = self.participant_label(by);
                    self.on_range_result(
                        now,
                        job_id,
                        range_index,
                        by,
                        Err(RangeError {
                            fatal,
                            reason: format!("{reason} (helper {addr})"),
                        }),
                    );
                }
            }
            _ => {}
        }
    }

    /// A peer connection closed: its ranges go back to the pool; jobs it offered end.
    pub(crate) fn coop_conn_closed(&mut self, conn: ConnId, remote: Option<PeerId>) {
        self.coop.helping.retain(|_, job| job.fetcher_conn != conn);
        let Some(remote) = remote else {
            return;
        };
        let mut freed = Vec::new();
        for job in self.coop.fetches.values_mut().filter(|j| !j.finished) {
            job.offered.remove(&remote);
            job.idle.remove(&remote);
            if job.requeue_all_of(Participant::Helper(remote)) > 0 {
                freed.push(job.job_id);
            }
        }
        for job_id in freed {
            self.reoffer_to_idle(job_id);
        }
    }

    fn on_range_result(
        &mut self,
        now: Instant,
        job_id: u64,
        range_index: u32,
        by: Participant,
        result: Result<Bytes, RangeError>,
    ) {
        let Some(job) = self.coop.fetches.get_mut(&job_id) else {
            return;
        };
        if job.finished || !job.is_fetching_by(range_index, by) {
            return;
        }
        match result {
            Ok(data) => {
                let (offset, length) = job.range(range_index);
                if data.len() != length as usize {
                    let reason = format!(
                        "the origin sent {} bytes for range {range_index} instead of {length}: the file may have changed",
                        data.len()
                    );
                    self.end_fetch(job_id, reason);
                    return;
                }
                self.write_range(job_id, range_index, by, offset, data);
            }
            Err(error) if error.fatal => {
                let (offset, _) = job.range(range_index);
                let reason = format!("range at byte {offset}: {}", error.reason);
                self.end_fetch(job_id, reason);
            }
            Err(error) => {
                job.failures[range_index as usize] += 1;
                let attempts = job.failures[range_index as usize];
                if attempts >= RANGE_ATTEMPTS_MAX {
                    let reason = format!(
                        "range {range_index} failed {attempts} times, last: {}",
                        error.reason
                    );
                    self.end_fetch(job_id, reason);
                    return;
                }
                job.ranges[range_index as usize] = RangeState::Pending;
                if by == Participant::Local {
                    // Back off exponentially, with jitter, before the fetcher itself asks the
                    // origin again; helpers may take the range meanwhile.
                    let base = self.config.tracker_backoff_min * (1 << attempts.min(10));
                    let wait = base.mul_f64(self.rng.random_range(0.5..1.0));
                    if let Some(job) = self.coop.fetches.get_mut(&job_id) {
                        job.local_retry_at = Some(now + wait.min(Duration::from_secs(30)));
                    }
                }
                self.reoffer_to_idle(job_id);
            }
        }
    }

    fn write_range(
        &mut self,
        job_id: u64,
        range_index: u32,
        by: Participant,
        offset: u64,
        data: Bytes,
    ) {
        let Some(job) = self.coop.fetches.get_mut(&job_id) else {
            return;
        };
        job.ranges[range_index as usize] = RangeState::Writing;
        let token = self.next_token();
        self.coop.pending.insert(
            token,
            CoopPending::Write {
                job_id,
                range_index,
                by,
            },
        );
        self.actions.push_back(PeerAction::WriteRange {
            token,
            job_id,
            offset,
            data,
        });
    }

    /// A helper's slot is free: it asks the fetcher for a range.
    fn ask_for_work(&mut self, job_id: u64) {
        let slots = self.config.origin_connections.max(1);
        let Some(job) = self.coop.helping.get_mut(&job_id) else {
            return;
        };
        let conn = job.fetcher_conn;
        let mut asks = 0;
        while job.slots_busy < slots {
            job.slots_busy += 1;
            asks += 1;
        }
        for _ in 0..asks {
            self.send(conn, Message::TakeWork { job_id });
        }
    }

    /// Tells helpers that found no work that there is some again.
    fn reoffer_to_idle(&mut self, job_id: u64) {
        let Some(job) = self.coop.fetches.get_mut(&job_id) else {
            return;
        };
        let idle: Vec<PeerId> = std::mem::take(&mut job.idle).into_iter().collect();
        let offer = Message::OfferJob {
            job_id,
            url: job.spec.url.clone(),
            validator: job.spec.validator.clone(),
            size: job.spec.size,
            range_len: job.spec.range_len,
        };
        for peer in idle {
            if let Some(&conn) = self.conn_by_peer.get(&peer) {
                self.send(conn, offer.clone());
            }
        }
    }

    fn finish_fetch_if_done(&mut self, job_id: u64) {
        let done = self
            .coop
            .fetches
            .get(&job_id)
            .is_some_and(|j| !j.finished && j.is_done());
        if !done {
            return;
        }
        self.tell_helpers_job_ended(job_id, "complete");
        if let Some(job) = self.coop.fetches.get_mut(&job_id) {
            job.finished = true;
        }
        self.notify(PeerNotice::FetchComplete { job_id });
    }

    fn end_fetch(&mut self, job_id: u64, reason: String) {
        if self.coop.fetches.get(&job_id).is_none_or(|j| j.finished) {
            return;
        }
        self.tell_helpers_job_ended(job_id, &reason);
        if let Some(job) = self.coop.fetches.get_mut(&job_id) {
            job.finished = true;
        }
        self.notify(PeerNotice::FetchFailed { job_id, reason });
    }

    fn tell_helpers_job_ended(&mut self, job_id: u64, reason: &str) {
        let Some(job) = self.coop.fetches.get(&job_id) else {
            return;
        };
        let helpers: Vec<PeerId> = job.offered.iter().copied().collect();
        for peer in helpers {
            if let Some(&conn) = self.conn_by_peer.get(&peer) {
                self.send(
                    conn,
                    Message::EndJob {
                        job_id,
                        reason: reason.to_string(),
                    },
                );
            }
        }
    }

    fn participant_label(&self, by: Participant) -> String {
        match by {
            Participant::Local => "local".into(),
            Participant::Helper(peer) => self
                .conn_by_peer
                .get(&peer)
                .and_then(|c| self.conns.get(c))
                .map(|c| c.addr.clone())
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| peer.to_string()),
        }
    }

    fn fetch_progress(&self, job_id: u64) -> Option<PeerNotice> {
        let job = self.coop.fetches.get(&job_id)?;
        Some(PeerNotice::FetchProgress {
            job_id,
            bytes_done: job.bytes_done,
            size: job.spec.size,
            by_participant: job
                .fetched_by
                .iter()
                .map(|(by, (bytes, _))| (self.participant_label(*by), *bytes))
                .collect(),
        })
    }
}
