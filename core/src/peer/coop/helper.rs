//! The helper's side of a cooperative download: taking a job a fetcher offers, asking for
//! ranges while a slot is free, fetching each from the origin through the driver, and
//! delivering the bytes (or the failure) back to the fetcher.

use bytes::Bytes;

use super::job::HelperJob;
use super::{Coop, CoopPending, Ctx, HELPER_JOBS_MAX, RangeError};
use crate::ids::ConnId;
use crate::peer::action::PeerAction;
use crate::wire::{BLOCK_LEN_MAX, Message};

impl Coop {
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
                if !ctx.config.help_others
                    || self.fetches.contains_key(&job_id)
                    || (self.helping.len() >= HELPER_JOBS_MAX
                        && !self.helping.contains_key(&job_id))
                {
                    return Ok(());
                }
                let job = self.helping.entry(job_id).or_insert(HelperJob {
                    fetcher_conn: conn,
                    url,
                    validator,
                    size,
                    slots_busy: 0,
                });
                job.fetcher_conn = conn;
                self.ask_for_work(ctx, job_id);
            }
            Message::AssignRange {
                job_id,
                range_index,
                offset,
                length,
            } => {
                let Some(job) = self.helping.get(&job_id) else {
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
                let (url, validator) = (job.url.clone(), job.validator.clone());
                let token = ctx.out.next_token();
                self.pending.insert(
                    token,
                    CoopPending::HelperFetch {
                        job_id,
                        range_index,
                        offset,
                    },
                );
                ctx.out.push(PeerAction::FetchRange {
                    token,
                    url,
                    validator,
                    offset,
                    length,
                });
            }
            Message::NoWork { job_id } => {
                if let Some(job) = self.helping.get_mut(&job_id)
                    && job.fetcher_conn == conn
                {
                    job.slots_busy = job.slots_busy.saturating_sub(1);
                }
            }
            Message::EndJob { job_id, .. }
                if self
                    .helping
                    .get(&job_id)
                    .is_some_and(|j| j.fetcher_conn == conn) =>
            {
                self.helping.remove(&job_id);
            }
            _ => {}
        }
        Ok(())
    }

    /// A range this peer fetched for a fetcher: deliver it (or the failure) and ask for
    /// more. Returns the bytes delivered (they count as uploaded).
    pub(super) fn helper_fetched(
        &mut self,
        ctx: &mut Ctx<'_>,
        job_id: u64,
        range_index: u32,
        offset: u64,
        result: Result<Bytes, RangeError>,
    ) -> u64 {
        let mut uploaded_bytes = 0;
        let Some(job) = self.helping.get_mut(&job_id) else {
            return 0;
        };
        job.slots_busy = job.slots_busy.saturating_sub(1);
        let conn = job.fetcher_conn;
        let message = match result {
            Ok(data) => {
                // Bytes handed to another peer count as uploaded, like pieces.
                uploaded_bytes = data.len() as u64;
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
        ctx.out.send(conn, message);
        self.ask_for_work(ctx, job_id);
        uploaded_bytes
    }

    /// A helper's slot is free: it asks the fetcher for a range.
    fn ask_for_work(&mut self, ctx: &mut Ctx<'_>, job_id: u64) {
        let slots = ctx.config.origin_connections.max(1);
        let Some(job) = self.helping.get_mut(&job_id) else {
            return;
        };
        let conn = job.fetcher_conn;
        let mut asks = 0;
        while job.slots_busy < slots {
            job.slots_busy += 1;
            asks += 1;
        }
        for _ in 0..asks {
            ctx.out.send(conn, Message::TakeWork { job_id });
        }
    }
}
