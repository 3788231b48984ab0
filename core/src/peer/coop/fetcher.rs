//! The fetcher's side of a cooperative download: the job's ranges handed to helpers and
//! to its own slots, deadlines that take a range back from a helper that stalls, retries
//! with backoff, writing every range in place, and the job's end.

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::job::{FetchJob, FetchSpec, Participant, RangeError, RangeState, SpotCheck};
use super::{
    Coop, CoopPending, Ctx, HELPER_FAILURES_MAX, HELPER_RANGES_HELD_MAX, LOCAL_RANGE_TIMEOUTS,
    LOCAL_RETRY_DOUBLINGS_MAX, LOCAL_RETRY_WAIT_MAX, RANGE_ATTEMPTS_MAX, RANGE_LEN_MIN,
    SPOT_CHECK_LEN, SPOT_CHECKS_IN_FLIGHT_MAX, SPOT_CHECKS_PER_HELPER, SpotCheckRef,
    ranges_in_flight_max,
};
use crate::chunkset::ChunkSet;
use crate::ids::{ConnId, PeerId};
use crate::peer::action::{PeerAction, PeerNotice};
use crate::peer::conns::Connections;
use crate::time::Instant;
use crate::wire::{BLOCK_LEN_MAX, Message};

impl Coop {
    /// Messages from a helper to this peer as the fetcher.
    pub(super) fn on_fetcher_message(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        conn: ConnId,
        remote: PeerId,
        message: Message,
    ) -> Result<(), String> {
        match message {
            Message::TakeWork { job_id } => {
                let timeout = ctx.config.coop_range_timeout;
                let Some(job) = self.fetches.get_mut(&job_id) else {
                    return Ok(());
                };
                if job.finished || job.dismissed.contains(&remote) {
                    let reason = if job.finished {
                        "the job is over"
                    } else {
                        "you take no more ranges of this job"
                    };
                    ctx.out.send(
                        conn,
                        Message::EndJob {
                            job_id,
                            reason: reason.into(),
                        },
                    );
                    return Ok(());
                }
                let by = Participant::Helper(remote);
                let held = job.held_by(by);
                let taken = if held < HELPER_RANGES_HELD_MAX {
                    let deadline = now + timeout;
                    job.take_pending(by, now, deadline)
                        .or_else(|| job.take_duplicate(by, now, deadline))
                } else {
                    None
                };
                let reply = match taken {
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
                ctx.out.send(conn, reply);
            }
            Message::DeliverRange {
                job_id,
                range_index,
                offset,
                data,
            } => {
                let by = Participant::Helper(remote);
                let Some(job) = self.fetches.get(&job_id) else {
                    return Ok(());
                };
                if !job.is_fetching_by(range_index, by) {
                    // Late (the range timed out and went to someone else) or never asked.
                    return Ok(());
                }
                let (expected_offset, length) = job.range(range_index);
                if offset != expected_offset || data.len() != length as usize {
                    return Err("delivered range does not match its assignment".into());
                }
                self.write_range(ctx, now, job_id, range_index, by, data);
            }
            Message::RangeFailed {
                job_id,
                range_index,
                fatal,
                reason,
            } => {
                self.helper_failed(ctx, job_id, range_index, remote, fatal, &reason);
            }
            _ => {}
        }
        Ok(())
    }

    /// Starts a cooperative fetch of `spec` (the driver has done `HEAD`); returns the job
    /// id the notices carry. The caller asks the tracker for helpers and offers the job.
    pub(crate) fn start_fetch(
        &mut self,
        rng: &mut ChaCha8Rng,
        mut spec: FetchSpec,
        on_disk: Option<&ChunkSet>,
    ) -> u64 {
        spec.range_len = spec.range_len.clamp(RANGE_LEN_MIN, BLOCK_LEN_MAX);
        let job_id = rng.random();
        let mut job = FetchJob::new(job_id, spec);
        if let Some(on_disk) = on_disk {
            job.mark_on_disk(on_disk);
        }
        self.fetches.insert(job_id, job);
        job_id
    }

    /// Stops a fetch (the user gave up): helpers are told.
    pub(crate) fn cancel_fetch(&mut self, ctx: &mut Ctx<'_>, job_id: u64) {
        self.end_fetch(ctx, job_id, "cancelled by the fetcher".into());
    }

    /// A `WriteRange` finished.
    pub(crate) fn handle_range_written(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        token: u64,
        result: Result<(), String>,
    ) {
        let Some(CoopPending::Write {
            job_id,
            range_index,
            by,
            check,
        }) = self.pending.remove(&token)
        else {
            return;
        };
        if let Err(reason) = result {
            self.end_fetch(
                ctx,
                job_id,
                format!("cannot write range {range_index}: {reason}"),
            );
            return;
        }
        let Some(job) = self.fetches.get_mut(&job_id) else {
            return;
        };
        if job.finished {
            return;
        }
        if let Participant::Helper(helper) = by
            && job.banned.contains(&helper)
        {
            // Caught while this range was being written: it is fetched again.
            job.ranges[range_index as usize] = RangeState::Pending;
            self.reoffer_to_idle(ctx, job_id);
            self.pump_local_fetches(ctx, now);
            return;
        }
        let (offset, length) = job.range(range_index);
        job.ranges[range_index as usize] = RangeState::Done { by };
        job.bytes_done += u64::from(length);
        let entry = job.fetched_by.entry(by).or_default();
        entry.0 += u64::from(length);
        entry.1 += 1;
        let settled = check.is_none();
        if let Some(check) = check {
            job.checks.push(*check);
        }
        if settled {
            ctx.out.notify(PeerNotice::RangeSettled {
                job_id,
                range_index,
            });
        }
        let by_label = participant_label(ctx.conns, by);
        let progress = self.fetch_progress(ctx.conns, job_id);
        ctx.out.notify(PeerNotice::RangeFetched {
            job_id,
            range_index,
            offset,
            length,
            by: by_label,
        });
        if let Some(progress) = progress {
            ctx.out.notify(progress);
        }
        self.finish_fetch_if_done(ctx, job_id);
        self.pump_local_fetches(ctx, now);
    }

    /// Deadlines of ranges out with helpers, the fetcher's own retry backoff, and the
    /// endgame's wakeup (a range became slow enough to copy).
    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        let mut freed = Vec::new();
        for job in self.fetches.values_mut().filter(|j| !j.finished) {
            let mut expired = Vec::new();
            for (index, range) in job.ranges.iter().enumerate() {
                if let RangeState::Fetching { by, deadline, .. } = *range
                    && now >= deadline
                    && by != Participant::Local
                {
                    expired.push((index as u32, by));
                }
            }
            for (index, copies) in &job.duplicates {
                for copy in copies {
                    if now >= copy.deadline && copy.by != Participant::Local {
                        expired.push((*index, copy.by));
                    }
                }
            }
            // A helper that stalls loses the range to its copy, or to whoever asks next.
            for (index, by) in &expired {
                job.release(*index, *by);
            }
            if !expired.is_empty() || job.endgame_at.is_some_and(|at| now >= at) {
                job.endgame_at = None;
                freed.push(job.job_id);
            }
        }
        for job_id in freed {
            self.reoffer_to_idle(ctx, job_id);
        }
        self.pump_local_fetches(ctx, now);
    }

    /// The fetcher's own slots take ranges like any helper, [`RANGES_PER_SLOT`](super::RANGES_PER_SLOT) each.
    pub(crate) fn pump_local_fetches(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        let slots = ranges_in_flight_max(ctx.config.origin_connections);
        let timeout = ctx.config.coop_range_timeout;
        let mut fetches = Vec::new();
        let mut checks: Vec<(u64, String, String, SpotCheckRef)> = Vec::new();
        for job in self.fetches.values_mut().filter(|j| !j.finished) {
            match job.local_retry_at {
                Some(at) if now < at => continue,
                Some(_) => job.local_retry_at = None,
                None => {}
            }
            while job.checks_in_flight < SPOT_CHECKS_IN_FLIGHT_MAX {
                let Some(check) = job.checks.pop() else {
                    break;
                };
                job.checks_in_flight += 1;
                checks.push((
                    job.job_id,
                    job.spec.url.clone(),
                    job.spec.validator.clone(),
                    Box::new(check),
                ));
            }
            while job.local_in_flight < slots {
                // The fetcher's own ranges never time out: its driver reports every fetch.
                let far = now + timeout * LOCAL_RANGE_TIMEOUTS;
                let Some(index) = job
                    .take_pending(Participant::Local, now, far)
                    .or_else(|| job.take_duplicate(Participant::Local, now, far))
                else {
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
            job.endgame_at = job.next_duplicate_at(now);
        }
        for (job_id, url, validator, check) in checks {
            let (offset, length) = (check.offset, check.expected.len() as u32);
            let why = CoopPending::SpotCheck { job_id, check };
            self.fetch_range(ctx.out, why, url, validator, offset, length);
        }
        for (job_id, range_index, url, validator, offset, length) in fetches {
            let why = CoopPending::LocalFetch {
                job_id,
                range_index,
            };
            self.fetch_range(ctx.out, why, url, validator, offset, length);
        }
    }

    /// Offers every running job to a newly ready connection.
    pub(crate) fn offer_jobs(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        let Some(remote) = ctx.conns.remote(conn) else {
            return;
        };
        let offers: Vec<Message> = self
            .fetches
            .values_mut()
            .filter(|j| !j.finished && !j.dismissed.contains(&remote))
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
            ctx.out.send(conn, offer);
        }
    }

    pub(super) fn on_range_result(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        job_id: u64,
        range_index: u32,
        by: Participant,
        result: Result<Bytes, RangeError>,
    ) {
        let Some(job) = self.fetches.get_mut(&job_id) else {
            return;
        };
        if job.finished || !job.is_fetching_by(range_index, by) {
            return;
        }
        match result {
            Ok(data) => {
                let (_, length) = job.range(range_index);
                if data.len() != length as usize {
                    let reason = format!(
                        "the origin sent {} bytes for range {range_index} instead of {length}: the file may have changed",
                        data.len()
                    );
                    self.end_fetch(ctx, job_id, reason);
                    return;
                }
                self.write_range(ctx, now, job_id, range_index, by, data);
            }
            Err(error) if error.fatal => {
                let (offset, _) = job.range(range_index);
                let reason = format!("range at byte {offset}: {}", error.reason);
                self.end_fetch(ctx, job_id, reason);
            }
            Err(error) => {
                // Only the fetcher's own failures get here (a helper's go through
                // `helper_failed`), so a member cannot use up a range's attempts.
                job.failures[range_index as usize] += 1;
                let attempts = job.failures[range_index as usize];
                if attempts >= RANGE_ATTEMPTS_MAX {
                    let reason = format!(
                        "range {range_index} failed {attempts} times, last: {}",
                        error.reason
                    );
                    self.end_fetch(ctx, job_id, reason);
                    return;
                }
                job.release(range_index, by);
                if by == Participant::Local {
                    back_off_locally(ctx, job, now, attempts);
                }
                self.reoffer_to_idle(ctx, job_id);
            }
        }
    }

    /// A helper reports it could not fetch a range. The range goes back to the pool; the
    /// helper leaves the job after a fatal failure or [`HELPER_FAILURES_MAX`] of them, but
    /// the job goes on: the fetcher learns for itself whether the origin really changed,
    /// and no member can end another's job by saying so.
    fn helper_failed(
        &mut self,
        ctx: &mut Ctx<'_>,
        job_id: u64,
        range_index: u32,
        helper: PeerId,
        fatal: bool,
        reason: &str,
    ) {
        let by = Participant::Helper(helper);
        let Some(job) = self.fetches.get_mut(&job_id) else {
            return;
        };
        if job.finished || !job.is_fetching_by(range_index, by) {
            return;
        }
        job.release(range_index, by);
        let tally = job.helpers.entry(helper).or_default();
        tally.failures += 1;
        let failures = tally.failures;
        let addr = participant_label(ctx.conns, by);
        if fatal || failures >= HELPER_FAILURES_MAX {
            let why = if fatal {
                format!("helper {addr} leaves the job: {reason}")
            } else {
                format!("helper {addr} leaves the job after {failures} failures, last: {reason}")
            };
            self.dismiss_helper(ctx, job_id, helper, &why);
            ctx.out.notify(PeerNotice::HelperLeft {
                job_id,
                helper: addr,
                reason: why,
            });
        }
        self.reoffer_to_idle(ctx, job_id);
    }

    /// `helper` takes no more ranges of the job: it is told, and what it holds goes back.
    fn dismiss_helper(&mut self, ctx: &mut Ctx<'_>, job_id: u64, helper: PeerId, reason: &str) {
        let Some(job) = self.fetches.get_mut(&job_id) else {
            return;
        };
        job.dismissed.insert(helper);
        job.idle.remove(&helper);
        job.requeue_all_of(Participant::Helper(helper));
        if job.offered.remove(&helper)
            && let Some(conn) = ctx.conns.conn_of(helper)
        {
            ctx.out.send(
                conn,
                Message::EndJob {
                    job_id,
                    reason: reason.to_string(),
                },
            );
        }
    }

    /// A spot check's bytes came back from the origin.
    pub(super) fn on_check_result(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        job_id: u64,
        mut check: SpotCheck,
        result: Result<Bytes, RangeError>,
    ) {
        let Some(job) = self.fetches.get_mut(&job_id) else {
            return;
        };
        if job.finished || job.banned.contains(&check.helper) {
            return;
        }
        match result {
            Ok(data) if data.len() != check.expected.len() => {
                let reason = format!(
                    "the origin sent {} bytes for a check at byte {} instead of {}: the file may have changed",
                    data.len(),
                    check.offset,
                    check.expected.len()
                );
                self.end_fetch(ctx, job_id, reason);
            }
            Ok(data) if data == check.expected => {
                job.spot_checks_passed += 1;
                job.spot_check_bytes += data.len() as u64;
                // Unless its helper is caught later (then `RangeDropped`).
                ctx.out.notify(PeerNotice::RangeSettled {
                    job_id,
                    range_index: check.range_index,
                });
                self.finish_fetch_if_done(ctx, job_id);
            }
            Ok(data) => {
                job.spot_check_bytes += data.len() as u64;
                self.ban_helper(ctx, job_id, &check);
            }
            Err(error) if error.fatal => {
                let reason = format!("check at byte {}: {}", check.offset, error.reason);
                self.end_fetch(ctx, job_id, reason);
            }
            Err(error) => {
                check.attempts += 1;
                if check.attempts >= RANGE_ATTEMPTS_MAX {
                    let reason = format!(
                        "a check at byte {} failed {} times, last: {}",
                        check.offset, check.attempts, error.reason
                    );
                    self.end_fetch(ctx, job_id, reason);
                    return;
                }
                let attempts = check.attempts;
                job.checks.push(check);
                back_off_locally(ctx, job, now, attempts);
            }
        }
    }

    /// A helper delivered bytes the origin does not have: it is banned from the job, every
    /// range it delivered is fetched again, and the user is told.
    fn ban_helper(&mut self, ctx: &mut Ctx<'_>, job_id: u64, check: &SpotCheck) {
        let helper = check.helper;
        let addr = participant_label(ctx.conns, Participant::Helper(helper));
        let reason = format!(
            "range {} differs from the origin at byte {}",
            check.range_index, check.offset
        );
        self.dismiss_helper(ctx, job_id, helper, &reason);
        let Some(job) = self.fetches.get_mut(&job_id) else {
            return;
        };
        job.banned.insert(helper);
        let (ranges_refetched, done_dropped) = job.requeue_delivered_by(helper);
        for range_index in done_dropped {
            ctx.out.notify(PeerNotice::RangeDropped {
                job_id,
                range_index,
            });
        }
        ctx.out.notify(PeerNotice::HelperCaught {
            job_id,
            peer_id: helper,
            helper: addr,
            reason,
            ranges_refetched,
        });
        if let Some(progress) = self.fetch_progress(ctx.conns, job_id) {
            ctx.out.notify(progress);
        }
        self.reoffer_to_idle(ctx, job_id);
    }

    /// Writes a range `by` delivered; whoever else was fetching it (the endgame) is
    /// cancelled: a helper is told, the fetcher's own fetch is dropped.
    fn write_range(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        job_id: u64,
        range_index: u32,
        by: Participant,
        data: Bytes,
    ) {
        let Some(job) = self.fetches.get_mut(&job_id) else {
            return;
        };
        let (offset, _) = job.range(range_index);
        let losers = job.take_for_writing(range_index, by, now);
        let check = match by {
            Participant::Helper(helper) if job.spec.spot_checks => {
                sample_for_check(ctx.rng, job, helper, range_index, offset, &data)
            }
            _ => None,
        };
        let token = ctx.out.next_token();
        self.pending.insert(
            token,
            CoopPending::Write {
                job_id,
                range_index,
                by,
                check,
            },
        );
        ctx.out.push(PeerAction::WriteRange {
            token,
            job_id,
            offset,
            data,
        });
        for loser in losers {
            self.cancel_range(ctx, job_id, range_index, loser);
        }
    }

    /// `by` no longer fetches range `range_index`: another delivered it first.
    fn cancel_range(&mut self, ctx: &mut Ctx<'_>, job_id: u64, range_index: u32, by: Participant) {
        match by {
            Participant::Helper(helper) => {
                if let Some(conn) = ctx.conns.conn_of(helper) {
                    let cancel = Message::CancelRange {
                        job_id,
                        range_index,
                    };
                    ctx.out.send(conn, cancel);
                }
            }
            Participant::Local => {
                let tokens: Vec<u64> = self
                    .pending
                    .iter()
                    .filter(|(_, why)| {
                        matches!(why, CoopPending::LocalFetch { job_id: j, range_index: r }
                            if *j == job_id && *r == range_index)
                    })
                    .map(|(token, _)| *token)
                    .collect();
                for token in tokens {
                    self.cancel_fetch_token(ctx.out, token);
                }
            }
        }
    }

    /// Tells helpers that found no work that there is some again.
    pub(super) fn reoffer_to_idle(&mut self, ctx: &mut Ctx<'_>, job_id: u64) {
        let Some(job) = self.fetches.get_mut(&job_id) else {
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
            if let Some(conn) = ctx.conns.conn_of(peer) {
                ctx.out.send(conn, offer.clone());
            }
        }
    }

    /// Ends the job once every range is written and every spot check passed.
    pub(crate) fn finish_fetch_if_done(&mut self, ctx: &mut Ctx<'_>, job_id: u64) {
        let done = self
            .fetches
            .get(&job_id)
            .is_some_and(|j| !j.finished && j.is_done());
        if !done {
            return;
        }
        self.tell_helpers_job_ended(ctx, job_id, "complete");
        if let Some(job) = self.fetches.get_mut(&job_id) {
            job.finished = true;
        }
        ctx.out.notify(PeerNotice::FetchComplete { job_id });
    }

    fn end_fetch(&mut self, ctx: &mut Ctx<'_>, job_id: u64, reason: String) {
        if self.fetches.get(&job_id).is_none_or(|j| j.finished) {
            return;
        }
        self.tell_helpers_job_ended(ctx, job_id, &reason);
        if let Some(job) = self.fetches.get_mut(&job_id) {
            job.finished = true;
        }
        ctx.out.notify(PeerNotice::FetchFailed { job_id, reason });
    }

    fn tell_helpers_job_ended(&mut self, ctx: &mut Ctx<'_>, job_id: u64, reason: &str) {
        let Some(job) = self.fetches.get(&job_id) else {
            return;
        };
        let helpers: Vec<PeerId> = job.offered.iter().copied().collect();
        for peer in helpers {
            if let Some(conn) = ctx.conns.conn_of(peer) {
                ctx.out.send(
                    conn,
                    Message::EndJob {
                        job_id,
                        reason: reason.to_string(),
                    },
                );
            }
        }
    }

    fn fetch_progress(&self, conns: &Connections, job_id: u64) -> Option<PeerNotice> {
        let job = self.fetches.get(&job_id)?;
        Some(PeerNotice::FetchProgress {
            job_id,
            bytes_done: job.bytes_done,
            size: job.spec.size,
            by_participant: job
                .fetched_by
                .iter()
                .map(|(by, (bytes, _))| (participant_label(conns, *by), *bytes))
                .collect(),
        })
    }
}

/// The reservoir's draw for the range `helper` just delivered: while it has delivered at
/// most [`SPOT_CHECKS_PER_HELPER`] ranges every one is checked, after that the n-th with
/// probability K / n. A checked range gives a window of [`SPOT_CHECK_LEN`] bytes at a random
/// offset, copied out of the delivery (the rest of it is not kept).
fn sample_for_check(
    rng: &mut ChaCha8Rng,
    job: &mut FetchJob,
    helper: PeerId,
    range_index: u32,
    offset: u64,
    data: &Bytes,
) -> Option<SpotCheckRef> {
    let tally = job.helpers.entry(helper).or_default();
    tally.delivered = tally.delivered.saturating_add(1);
    let delivered = tally.delivered;
    if delivered > SPOT_CHECKS_PER_HELPER
        && rng.random_range(0..delivered) >= SPOT_CHECKS_PER_HELPER
    {
        return None;
    }
    let window = (data.len() as u64).min(u64::from(SPOT_CHECK_LEN));
    let start = rng.random_range(0..=data.len() as u64 - window);
    let expected = Bytes::copy_from_slice(&data[start as usize..(start + window) as usize]);
    Some(Box::new(SpotCheck {
        helper,
        range_index,
        offset: offset + start,
        expected,
        attempts: 0,
    }))
}

/// After a failure of its own, the fetcher waits before asking the origin again:
/// exponentially, with jitter; helpers may take the range meanwhile.
fn back_off_locally(ctx: &mut Ctx<'_>, job: &mut FetchJob, now: Instant, attempts: u32) {
    let base = ctx.config.tracker_backoff_min * (1 << attempts.min(LOCAL_RETRY_DOUBLINGS_MAX));
    let wait = base.mul_f64(ctx.rng.random_range(0.5..1.0));
    job.local_retry_at = Some(now + wait.min(LOCAL_RETRY_WAIT_MAX));
}

/// How notices name a participant: "local", or a helper's address (its id if unknown).
fn participant_label(conns: &Connections, by: Participant) -> String {
    match by {
        Participant::Local => "local".into(),
        Participant::Helper(peer) => conns
            .addr_of(peer)
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| peer.to_string()),
    }
}
