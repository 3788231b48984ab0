//! The helper's side of a cooperative download: taking a job a fetcher offers, asking for
//! ranges while a slot is free, fetching each from the origin through the driver, and
//! delivering the bytes (or the failure) back to the fetcher.
//!
//! A helper does only the work it asked for: every `AssignRange` must answer one of its own
//! `TakeWork`s, so a member cannot make it fetch more than its slots, per job and in total
//! ([`helper_fetches_max`]), however many assignments it sends.

use bytes::Bytes;

use super::job::HelperJob;
use super::{
    Coop, CoopPending, Ctx, HELPER_JOBS_MAX, HELPER_JOBS_PER_CONN_MAX, RangeError,
    helper_fetches_max, ranges_in_flight_max,
};
use crate::ids::ConnId;
use crate::wire::{BLOCK_LEN_MAX, Message};

impl Coop {
    /// Jobs this helper works on for the fetcher at the other end of `conn`.
    fn jobs_offered_by(&self, conn: ConnId) -> usize {
        self.helping
            .values()
            .filter(|job| job.fetcher_conn == conn)
            .count()
    }

    /// Messages from a fetcher to this peer as its helper.
    pub(super) fn on_helper_message(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        message: Message,
    ) -> Result<(), String> {
        match message {
            Message::OfferJob {
                job_id,
                url,
                validator,
                size,
                range_len,
            } => {
                let _ = range_len;
                if !ctx.config.help_others || self.fetches.contains_key(&job_id) {
                    return Ok(());
                }
                match self.helping.get(&job_id) {
                    // A job belongs to the connection that offered it (a job's connection
                    // closing ends it here): another cannot take its deliveries over.
                    Some(job) if job.fetcher_conn != conn => return Ok(()),
                    Some(_) => {}
                    None if self.helping.len() >= HELPER_JOBS_MAX => return Ok(()),
                    None if self.jobs_offered_by(conn) >= HELPER_JOBS_PER_CONN_MAX => {
                        return Ok(());
                    }
                    None => {
                        let job = HelperJob {
                            fetcher_conn: conn,
                            url,
                            validator,
                            size,
                            asks_outstanding: 0,
                            fetching: 0,
                            refused: None,
                            waiting_for_total: false,
                        };
                        self.helping.insert(job_id, job);
                    }
                }
                self.ask_for_work(ctx, job_id);
            }
            Message::AssignRange {
                job_id,
                range_index,
                offset,
                length,
            } => {
                let Some(job) = self.helping.get_mut(&job_id) else {
                    // The job ended here (`EndJob` crossed the assignment): nothing to do.
                    return Ok(());
                };
                if job.fetcher_conn != conn
                    || length == 0
                    || length > BLOCK_LEN_MAX
                    || offset
                        .checked_add(u64::from(length))
                        .is_none_or(|end| end > job.size)
                {
                    return Err("range assignment outside the job".into());
                }
                if job.asks_outstanding == 0 {
                    // A fetcher answers each `TakeWork` once, in order, on this connection,
                    // so an honest one never gets here: refusing the connection (rather than
                    // dropping the message) also stops the rest of a flood at once.
                    return Err("range assignment not asked for".into());
                }
                job.asks_outstanding -= 1;
                if let Some(reason) = &job.refused {
                    // Promised before the policy refused the URL: give it back unfetched.
                    let failed = Message::RangeFailed {
                        job_id,
                        range_index,
                        fatal: false,
                        reason: reason.clone(),
                    };
                    ctx.out.send(conn, failed);
                    return Ok(());
                }
                job.fetching += 1;
                let (url, validator) = (job.url.clone(), job.validator.clone());
                let why = CoopPending::HelperFetch {
                    job_id,
                    conn,
                    range_index,
                    offset,
                };
                self.fetch_range(ctx.out, why, url, validator, offset, length);
            }
            Message::NoWork { job_id } => {
                if let Some(job) = self.helping.get_mut(&job_id)
                    && job.fetcher_conn == conn
                {
                    job.asks_outstanding = job.asks_outstanding.saturating_sub(1);
                }
            }
            Message::EndJob { job_id, .. }
                if self
                    .helping
                    .get(&job_id)
                    .is_some_and(|j| j.fetcher_conn == conn) =>
            {
                self.helping.remove(&job_id);
                // Nobody wants the ranges still being fetched for it.
                self.cancel_helper_fetches(ctx, job_id, conn, None);
            }
            Message::CancelRange {
                job_id,
                range_index,
            } => {
                // Unknown (delivered already, crossing this message) is nothing to do.
                self.cancel_helper_fetches(ctx, job_id, conn, Some(range_index));
            }
            _ => {}
        }
        Ok(())
    }

    /// Cancels the fetches this peer runs for job `job_id` of the fetcher on `conn`: the
    /// one of range `only` (the fetcher has it from someone else), or all of them.
    fn cancel_helper_fetches(
        &mut self,
        ctx: &mut Ctx<'_>,
        job_id: u64,
        conn: ConnId,
        only: Option<u32>,
    ) {
        let tokens: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, why)| {
                matches!(why, CoopPending::HelperFetch { job_id: j, conn: c, range_index, .. }
                    if *j == job_id && *c == conn && only.is_none_or(|o| o == *range_index))
            })
            .map(|(token, _)| *token)
            .collect();
        for token in tokens {
            self.cancel_fetch_token(ctx.out, token);
        }
    }

    /// A range this peer fetched for a fetcher on `conn`: deliver it (or the failure) and
    /// ask for more; `None` when it was cancelled (nothing is delivered). Returns the bytes
    /// delivered (they count as uploaded).
    pub(super) fn helper_fetched(
        &mut self,
        ctx: &mut Ctx<'_>,
        job_id: u64,
        conn: ConnId,
        range_index: u32,
        offset: u64,
        result: Option<Result<Bytes, RangeError>>,
    ) -> u64 {
        let mut uploaded_bytes = 0;
        // The job may have ended, or another with the same id begun on another connection,
        // while the range was fetched: then the result is nobody's, but the slot is free.
        if let Some(job) = self
            .helping
            .get_mut(&job_id)
            .filter(|j| j.fetcher_conn == conn)
        {
            job.fetching = job.fetching.saturating_sub(1);
            let message = match result {
                None => None,
                Some(Ok(data)) => {
                    // Bytes handed to another peer count as uploaded, like pieces.
                    uploaded_bytes = data.len() as u64;
                    Some(Message::DeliverRange {
                        job_id,
                        range_index,
                        offset,
                        data,
                    })
                }
                Some(Err(error)) => {
                    if error.refused {
                        job.refused = Some(error.reason.clone());
                    }
                    Some(Message::RangeFailed {
                        job_id,
                        range_index,
                        fatal: error.fatal,
                        reason: error.reason,
                    })
                }
            };
            if let Some(message) = message {
                ctx.out.send(conn, message);
            }
        }
        // A slot freed: this job asks again, and so does any job that found the total busy
        // (with fetches of jobs that have ended, say). Jobs told there was no work are not
        // asked for: their fetcher offers again when it has some.
        let waiting: Vec<u64> = self
            .helping
            .iter()
            .filter(|(id, j)| **id == job_id || j.waiting_for_total)
            .map(|(id, _)| *id)
            .collect();
        for job_id in waiting {
            self.ask_for_work(ctx, job_id);
        }
        uploaded_bytes
    }

    /// Slots taken over every job: asks waiting for an answer and fetches running, counting
    /// fetches of jobs that have ended since (the driver still runs them).
    fn helper_slots_busy(&self) -> usize {
        let fetches = self
            .pending
            .values()
            .filter(|p| matches!(p, CoopPending::HelperFetch { .. }))
            .count();
        let asks: usize = self
            .helping
            .values()
            .map(|j| j.asks_outstanding as usize)
            .sum();
        fetches + asks
    }

    /// Asks the fetcher for ranges until the job has [`ranges_in_flight_max`] outstanding
    /// (asked for or being fetched), within the total: with more than one per slot, the
    /// next range is on its way before the current one ends.
    fn ask_for_work(&mut self, ctx: &mut Ctx<'_>, job_id: u64) {
        let slots = ranges_in_flight_max(ctx.config.origin_connections);
        let total_max = helper_fetches_max(ctx.config.origin_connections);
        let mut busy_total = self.helper_slots_busy();
        let Some(job) = self.helping.get_mut(&job_id) else {
            return;
        };
        if job.refused.is_some() {
            job.waiting_for_total = false;
            return;
        }
        while job.slots_busy() < slots && busy_total < total_max {
            job.asks_outstanding += 1;
            busy_total += 1;
            ctx.out.send(job.fetcher_conn, Message::TakeWork { job_id });
        }
        job.waiting_for_total = job.slots_busy() < slots;
    }
}
