//! Cooperative origin download: a fetcher splits one HTTP download into byte ranges, and
//! helper peers of its swarm pull ranges, fetch them from the origin with their own WAN
//! links, and deliver the bytes over the LAN. The fetcher writes every range in place.
//!
//! Both roles ride on the peer's connections; this module owns their state ([`Coop`]) and
//! their messages, and is handed what it needs of the rest of the peer in a [`Ctx`]. HTTP is
//! the driver's: the machine asks for `FetchRange` and is told the result with
//! `Peer::handle_range_fetched`.
//!
//! The fetcher's side is in `fetcher.rs`, the helper's in `helper.rs`, the jobs' state in
//! `job.rs`; this file holds what both share and hands each message to its role.

mod fetcher;
mod helper;
mod job;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;

use job::SpotCheck;
pub use job::{FetchJob, FetchSpec, HelperJob, Participant, RangeError};

use super::action::PeerAction;
use super::config::PeerConfig;
use super::conns::Connections;
use super::output::Output;
use crate::ids::{ConnId, PeerId};
use crate::time::Instant;
use crate::wire::Message;

/// Most times one range may fail (retryably) before the job is abandoned.
pub const RANGE_ATTEMPTS_MAX: u32 = 5;
/// Most jobs a helper works on at once; more offers are ignored.
pub const HELPER_JOBS_MAX: usize = 8;
/// Most of those jobs offered over one connection: a fetcher runs one job per URL it
/// fetches, so two leave room for a second fetch while no member can fill every slot.
pub const HELPER_JOBS_PER_CONN_MAX: usize = 2;

/// Ranges each participant's slot (`origin_connections`) keeps outstanding: the next is
/// asked for while the current one is still arriving, so at WAN latency a participant's
/// link does not idle for a round trip (request out, first byte back) between ranges. The
/// driver runs each on its own kept-alive connection to the origin.
pub const RANGES_PER_SLOT: u32 = 2;
/// Most ranges one helper holds of one job at once: a member asking for more (whatever its
/// `origin_connections`) is told there is no work until it delivers some.
pub const HELPER_RANGES_HELD_MAX: u32 = 32;

/// Ranges a participant with `origin_connections` slots keeps outstanding in one job.
pub fn ranges_in_flight_max(origin_connections: u32) -> u32 {
    origin_connections.max(1) * RANGES_PER_SLOT
}

/// Most ranges a helper fetches for others at once, over every job: its ranges in flight
/// ([`ranges_in_flight_max`]) in each of at most [`HELPER_JOBS_MAX`] jobs. Ranges still being
/// fetched for a job that has ended (its fetcher left) count too, so a fetcher that offers,
/// takes a range and reconnects cannot pile up fetches. The driver bounds its blocking HTTP
/// fetches for helping by the same number.
pub fn helper_fetches_max(origin_connections: u32) -> usize {
    HELPER_JOBS_MAX * ranges_in_flight_max(origin_connections) as usize
}
/// Failures one helper may report in one job (`RangeFailed`, retryable) before it takes
/// no more of the job's ranges. Only the fetcher's own failures count against a range
/// ([`RANGE_ATTEMPTS_MAX`]): a member cannot end someone else's job by failing.
pub const HELPER_FAILURES_MAX: u32 = 5;
/// Bytes of one spot check: a window of a range a helper delivered, fetched again from
/// the origin by the fetcher and compared.
pub const SPOT_CHECK_LEN: u32 = 4 * 1024;
/// Spot checks per helper per job, as a reservoir: every range a helper delivers enters it
/// with probability `K / n` (the n-th; certainly while n <= K), and each range that enters
/// is checked at once, at a random offset. Whatever ranges the helper delivered, a uniform
/// K-subset of them is among those checked, so a helper that altered a fraction f of its
/// ranges escapes with probability at most (1 - f)^K: with K = 135 and f = 0.05 that is
/// 0.00098, under 1 in 1000 per job. A helper delivering n ranges costs about
/// K (1 + ln(n / K)) checks (n when n <= K) of `SPOT_CHECK_LEN` bytes each.
pub const SPOT_CHECKS_PER_HELPER: u32 = 135;
/// Spot checks the fetcher runs at once, beside its own ranges.
pub const SPOT_CHECKS_IN_FLIGHT_MAX: u32 = 4;
/// Endgame copies one range may have beside its holder: with no range left in the pool,
/// an idle participant fetches a copy of a slow one, the first copy written wins and the
/// others are cancelled. One copy is enough to take a stalled helper out of the finish
/// time; each costs origin bytes for as long as both run.
pub const ENDGAME_DUPLICATES_PER_RANGE: usize = 1;
/// A range out this many times the job's typical range time is slow enough to copy in the
/// endgame: ranges going at the usual pace (every participant at the same rate) are left
/// alone, so the endgame costs no origin bytes when nobody lags.
pub const ENDGAME_SLOW_FACTOR: u32 = 2;
/// A range is never slow before this age, whatever the typical range time: below it, ages
/// are the noise of timers and scheduling, not a participant lagging.
pub const ENDGAME_SLOW_AGE_MIN: Duration = Duration::from_millis(100);
/// Weight of the newest range in the typical range time (a moving average).
const RANGE_TIME_WEIGHT_NEW: f64 = 0.25;
/// Smallest range a job may be cut into: smaller ranges cost more in requests than they
/// gain in spreading.
pub const RANGE_LEN_MIN: u32 = 16 * 1024;
/// Most doublings of the fetcher's own retry backoff.
const LOCAL_RETRY_DOUBLINGS_MAX: u32 = 10;
/// Longest the fetcher waits before asking the origin again itself.
const LOCAL_RETRY_WAIT_MAX: Duration = Duration::from_secs(30);
/// The fetcher's own ranges never time out (its driver reports every fetch): their deadline
/// is this many range timeouts away.
const LOCAL_RANGE_TIMEOUTS: u32 = 1000;

/// What coop needs of the rest of the peer for one step.
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a PeerConfig,
    pub(crate) rng: &'a mut ChaCha8Rng,
    pub(crate) out: &'a mut Output,
    pub(crate) conns: &'a Connections,
}

/// What a fetch or write token stands for.
#[derive(Clone, Debug)]
pub(crate) enum CoopPending {
    /// The fetcher fetching a range itself.
    LocalFetch { job_id: u64, range_index: u32 },
    /// The fetcher writing a delivered range.
    Write {
        job_id: u64,
        range_index: u32,
        by: Participant,
        /// The spot check to run once it is written (a helper's range the reservoir took).
        check: Option<SpotCheckRef>,
    },
    /// The fetcher fetching a spot check's bytes from the origin.
    SpotCheck { job_id: u64, check: SpotCheckRef },
    /// A helper fetching a range for a fetcher.
    HelperFetch {
        job_id: u64,
        /// The fetcher's connection when the range was assigned.
        conn: ConnId,
        range_index: u32,
        offset: u64,
    },
}

/// A spot check in a token (boxed: its bytes are kept until compared).
pub(crate) type SpotCheckRef = Box<SpotCheck>;

/// The coop state a peer carries: its fetches, the jobs it helps with, and the driver's
/// fetches and writes in flight.
#[derive(Default)]
pub(crate) struct Coop {
    fetches: BTreeMap<u64, FetchJob>,
    helping: BTreeMap<u64, HelperJob>,
    pending: BTreeMap<u64, CoopPending>,
    /// Fetches of `pending` that were cancelled: their result, when the driver reports
    /// it, only frees their slot.
    cancelled: BTreeSet<u64>,
}

impl Coop {
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for job in self.fetches.values().filter(|j| !j.finished) {
            for at in [job.next_deadline(), job.local_retry_at, job.endgame_at]
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

    /// Asks the driver for `length` bytes at `offset` of `url`, the result remembered under
    /// a fresh token as `why` (for another peer's job, under the origin policy).
    fn fetch_range(
        &mut self,
        out: &mut Output,
        why: CoopPending,
        url: String,
        validator: String,
        offset: u64,
        length: u32,
    ) {
        let token = out.next_token();
        let helping = matches!(why, CoopPending::HelperFetch { .. });
        self.pending.insert(token, why);
        out.push(PeerAction::FetchRange {
            token,
            url,
            validator,
            offset,
            length,
            helping,
        });
    }

    /// Tells the driver the bytes of fetch `token` are not wanted; its result, when it
    /// comes, only frees the slot.
    fn cancel_fetch_token(&mut self, out: &mut Output, token: u64) {
        if self.pending.contains_key(&token) && self.cancelled.insert(token) {
            out.push(PeerAction::CancelFetch { token });
        }
    }
}

impl Coop {
    /// A `FetchRange` finished.
    /// Returns the bytes delivered to another peer (they count as uploaded).
    pub(crate) fn handle_range_fetched(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        token: u64,
        result: Result<Bytes, RangeError>,
    ) -> u64 {
        let mut uploaded_bytes = 0;
        let cancelled = self.cancelled.remove(&token);
        match self.pending.remove(&token) {
            Some(CoopPending::LocalFetch {
                job_id,
                range_index,
            }) => {
                if let Some(job) = self.fetches.get_mut(&job_id) {
                    job.local_in_flight = job.local_in_flight.saturating_sub(1);
                }
                if !cancelled {
                    let by = Participant::Local;
                    self.on_range_result(ctx, now, job_id, range_index, by, result);
                }
            }
            Some(CoopPending::SpotCheck { job_id, check }) => {
                if let Some(job) = self.fetches.get_mut(&job_id) {
                    job.checks_in_flight = job.checks_in_flight.saturating_sub(1);
                }
                self.on_check_result(ctx, now, job_id, *check, result);
            }
            Some(CoopPending::HelperFetch {
                job_id,
                conn,
                range_index,
                offset,
            }) => {
                // A cancelled range is not delivered: the fetcher has it already.
                let result = (!cancelled).then_some(result);
                uploaded_bytes =
                    self.helper_fetched(ctx, job_id, conn, range_index, offset, result);
            }
            _ => {}
        }
        self.pump_local_fetches(ctx, now);
        uploaded_bytes
    }

    /// Coop messages on a ready peer connection. `Err` is a reason to refuse the remote.
    pub(crate) fn on_message(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        conn: ConnId,
        remote: PeerId,
        message: Message,
    ) -> Result<(), String> {
        match message {
            Message::OfferJob { .. }
            | Message::AssignRange { .. }
            | Message::NoWork { .. }
            | Message::EndJob { .. }
            | Message::CancelRange { .. } => self.on_helper_message(ctx, conn, message),
            _ => self.on_fetcher_message(ctx, now, conn, remote, message),
        }
    }

    /// A peer connection closed: its ranges go back to the pool; jobs it offered end.
    pub(crate) fn conn_closed(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, remote: Option<PeerId>) {
        self.helping.retain(|_, job| job.fetcher_conn != conn);
        let Some(remote) = remote else {
            return;
        };
        let mut freed = Vec::new();
        for job in self.fetches.values_mut().filter(|j| !j.finished) {
            job.offered.remove(&remote);
            job.idle.remove(&remote);
            if job.requeue_all_of(Participant::Helper(remote)) > 0 {
                freed.push(job.job_id);
            }
        }
        for job_id in freed {
            self.reoffer_to_idle(ctx, job_id);
        }
    }
}
