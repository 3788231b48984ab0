//! The HTTP origin of a cooperative download, as the runtime's `FetchRange` sees it: one
//! file under a validator, served by byte range after a round trip, through the origin's
//! uplink (shared by every response in flight) and then the requester's own downlink (its
//! WAN capacity: a slow node fetches slowly). During the fault phase it answers some
//! requests with a retryable error or late; at `validator_change_at_ms` its file gets a new
//! validator, and every range asked with the old one fails for good, as `If-Range` makes it.
//!
//! It also keeps the books the origin-bytes checker needs (`world/coop.rs`): every byte it
//! sends is new (never sent before), a retry (sent before, not yet written by the fetcher),
//! a spot check (the fetcher's re-read of written bytes), cancelled (an endgame copy the
//! machine gave up on with `CancelFetch` once the other copy was written, whose request
//! was already on its way), or waste.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use p2p_core::peer::{RangeError, SPOT_CHECK_LEN};
use rand::Rng;

use crate::coop::CoopKnobs;
use crate::event_queue::{NANOS_PER_MS, Nanos};
use crate::link::Link;
use crate::scenario::SimConfig;
use crate::trace::DigestTag;
use crate::violations::FailureKind;
use crate::world::World;
use crate::world::coverage::Coverage;
use crate::world::event::{Event, OriginRequest};
use crate::world::node::Role;

/// The validator the origin's file has, and the one it gets when it changes.
pub(crate) const VALIDATOR: &str = "\"sim-v1\"";
const VALIDATOR_CHANGED: &str = "\"sim-v2\"";
/// The URL the fetcher fetches.
pub(crate) const URL: &str = "http://origin.sim/sim-file.bin";

/// A response on its way through the links.
struct Response {
    request: OriginRequest,
    result: Result<Bytes, RangeError>,
}

/// What the origin sent, by kind (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct OriginStats {
    pub requests: u64,
    pub errors_injected: u64,
    pub slow_injected: u64,
    pub bytes_sent: u64,
    pub new_bytes: u64,
    pub retried_bytes: u64,
    pub spot_check_bytes: u64,
    pub cancelled_bytes: u64,
    pub wasted_bytes: u64,
}

pub(crate) struct Origin {
    data: Bytes,
    validator: &'static str,
    latency: Nanos,
    slow_factor: u64,
    uplink: Link<Response>,
    /// Each participant's WAN downlink, by node (created at its first request).
    downlinks: BTreeMap<usize, Link<Response>>,
    /// Bumped on every re-plan: only the newest `OriginLinks` event is live.
    generation: u64,
    next_request_id: u64,
    sent: Coverage,
    /// Fetches the machine cancelled (`CancelFetch`), by node, incarnation and token.
    cancelled: BTreeSet<(usize, u32, u64)>,
    pub stats: OriginStats,
}

impl Origin {
    pub fn new(knobs: &CoopKnobs, data: Bytes) -> Origin {
        Origin {
            data,
            validator: VALIDATOR,
            latency: knobs.origin_latency_ms * NANOS_PER_MS,
            slow_factor: u64::from(knobs.origin_slow_factor.max(1)),
            uplink: Link::new(knobs.origin_upload_bytes_per_s),
            downlinks: BTreeMap::new(),
            generation: 0,
            next_request_id: 0,
            sent: Coverage::default(),
            cancelled: BTreeSet::new(),
            stats: OriginStats::default(),
        }
    }

    pub fn change_validator(&mut self) {
        self.validator = VALIDATOR_CHANGED;
    }

    pub fn validator_changed(&self) -> bool {
        self.validator != VALIDATOR
    }

    /// The answer to a request as it reaches the origin, and the books kept for it.
    fn answer(&mut self, request: &OriginRequest) -> Result<Bytes, RangeError> {
        if request.validator != self.validator {
            return Err(RangeError {
                fatal: true,
                refused: false,
                reason: "the origin's validator changed (200 to an If-Range request)".into(),
            });
        }
        let size = self.data.len() as u64;
        let start = request.offset.min(size);
        let end = (request.offset + u64::from(request.length)).min(size);
        let length = end - start;
        let before = self.sent.covered(start, end);
        // Written bytes were all sent before; a request asked before they were written
        // (a range given up on, then done by another) is a retry, not waste.
        let rewritten = request.written_when_asked.min(before);
        let s = &mut self.stats;
        s.bytes_sent += length;
        s.new_bytes += length - before;
        s.retried_bytes += before - rewritten;
        // A spot check is the fetcher's own short re-read of bytes it wrote from a helper.
        let spot_check = !request.helping && request.length <= SPOT_CHECK_LEN;
        let cancelled =
            self.cancelled
                .contains(&(request.node, request.incarnation, request.token));
        if spot_check {
            s.spot_check_bytes += rewritten;
        } else if cancelled {
            s.cancelled_bytes += rewritten;
        } else {
            s.wasted_bytes += rewritten;
        }
        self.sent.insert(start, end);
        Ok(self.data.slice(start as usize..end as usize))
    }

    /// When the next response finishes crossing a link.
    fn next_completion(&self) -> Option<Nanos> {
        let downs = self.downlinks.values().filter_map(|l| l.next_completion());
        self.uplink.next_completion().into_iter().chain(downs).min()
    }
}

impl World {
    /// `FetchRange`: the request reaches the origin after a round trip (several when the
    /// origin is slow), or fails there.
    pub(crate) fn fetch_range(&mut self, node: usize, request: OriginRequest) {
        let now = self.now();
        self.digest
            .mix_tagged(DigestTag::OriginAction, &[node as u64, request.token]);
        self.trace(|| {
            format!(
                "node{node} FetchRange token {} bytes {}+{} helping={}",
                request.token, request.offset, request.length, request.helping
            )
        });
        if self.nodes[node].role == Role::Leecher {
            // A getter arrives once the file is published: it must come from peers.
            let addr = &self.nodes[node].addr;
            self.violations.push(
                FailureKind::Safety,
                now,
                format!("{addr} wants the published file but fetched from the origin"),
            );
        }
        let faulty = !self.healed;
        let Some(coop) = self.coop.as_mut() else {
            return;
        };
        let knobs = self
            .config
            .coop
            .as_ref()
            .expect("a coop run has coop knobs");
        let origin = &mut coop.origin;
        origin.stats.requests += 1;
        let mut delay = origin.latency;
        if faulty
            && self
                .rng
                .random_bool(knobs.origin_slow_probability.clamp(0.0, 1.0))
        {
            origin.stats.slow_injected += 1;
            delay *= origin.slow_factor;
        }
        let error = faulty
            && self
                .rng
                .random_bool(knobs.origin_error_probability.clamp(0.0, 1.0));
        let mut request = request;
        request.node = node;
        request.incarnation = self.nodes[node].incarnation;
        request.failed = error;
        request.written_when_asked = coop
            .written
            .covered(request.offset, request.offset + u64::from(request.length));
        self.queue
            .schedule(now + delay, Event::OriginRequest(Box::new(request)));
    }

    /// `CancelFetch`: the machine no longer wants fetch `token`. One still on its way to
    /// the origin is answered at once with nothing sent (as the runtime stops reading);
    /// one already answered runs to its end, its bytes counted as cancelled.
    pub(crate) fn cancel_fetch(&mut self, node: usize, token: u64) {
        let incarnation = self.nodes[node].incarnation;
        if let Some(coop) = self.coop.as_mut() {
            coop.origin.cancelled.insert((node, incarnation, token));
        }
    }

    /// A request reached the origin: an error goes back at once; bytes start down the
    /// origin's uplink.
    pub(crate) fn on_origin_request(&mut self, request: OriginRequest) {
        let now = self.now();
        if self.nodes[request.node].incarnation != request.incarnation {
            // The process that asked crashed: its connection to the origin is gone.
            return;
        }
        self.trace(|| {
            format!(
                "origin: node{} token {} bytes {}+{}: failed={} ({} written when asked)",
                request.node,
                request.token,
                request.offset,
                request.length,
                request.failed,
                request.written_when_asked
            )
        });
        let Some(coop) = self.coop.as_mut() else {
            return;
        };
        let key = (request.node, request.incarnation, request.token);
        if coop.origin.cancelled.contains(&key) {
            let cancelled = Err(RangeError {
                fatal: false,
                refused: false,
                reason: "cancelled".into(),
            });
            self.deliver_range(request, cancelled);
            return;
        }
        let result = if request.failed {
            coop.origin.stats.errors_injected += 1;
            Err(RangeError {
                fatal: false,
                refused: false,
                reason: "503 Service Unavailable".into(),
            })
        } else {
            coop.origin.answer(&request)
        };
        let Ok(data) = &result else {
            self.deliver_range(request, result);
            return;
        };
        let origin = &mut coop.origin;
        let flow = (origin.next_request_id, 0);
        origin.next_request_id += 1;
        let size = data.len() as u64;
        origin
            .uplink
            .push(now, flow, size, Response { request, result });
        self.replan_origin_links();
    }

    /// Responses that finished a link move on: off the uplink onto the requester's
    /// downlink, off a downlink to the requester.
    pub(crate) fn on_origin_links(&mut self, generation: u64) {
        let now = self.now();
        let Some(coop) = self.coop.as_mut() else {
            return;
        };
        let origin = &mut coop.origin;
        if generation != origin.generation {
            return;
        }
        let mut done = Vec::new();
        origin.uplink.take_finished(now, &mut done);
        for (flow, size, response) in done.drain(..) {
            let node = &self.nodes[response.request.node];
            let down_rate = wan_download_rate(&self.config, node.slow);
            origin
                .downlinks
                .entry(response.request.node)
                .or_insert_with(|| Link::new(down_rate))
                .push(now, flow, size, response);
        }
        for link in origin.downlinks.values_mut() {
            link.take_finished(now, &mut done);
        }
        self.replan_origin_links();
        for (_, _, response) in done {
            self.deliver_range(response.request, response.result);
        }
    }

    fn replan_origin_links(&mut self) {
        let Some(coop) = self.coop.as_mut() else {
            return;
        };
        let origin = &mut coop.origin;
        origin.generation += 1;
        if let Some(at) = origin.next_completion() {
            let generation = origin.generation;
            self.queue
                .schedule(at.max(self.queue.now()), Event::OriginLinks { generation });
        }
    }

    /// The requester learns the result, if the process that asked is still running.
    fn deliver_range(&mut self, request: OriginRequest, result: Result<Bytes, RangeError>) {
        let node = request.node;
        if self.nodes[node].incarnation != request.incarnation {
            return;
        }
        self.drive(node, |m, now| {
            if let crate::world::node::Machine::Peer(p) = m {
                p.handle_range_fetched(now, request.token, result);
            }
        });
    }
}

/// A participant's link to the origin: the run's WAN rate, a fraction of it when slow.
fn wan_download_rate(config: &SimConfig, slow: bool) -> u64 {
    let rate = config
        .coop
        .as_ref()
        .map_or(1, |c| c.wan_download_bytes_per_s);
    if slow {
        let factor = config.faults.slow_peer_capacity_factor.clamp(0.001, 1.0);
        ((rate as f64 * factor) as u64).max(1)
    } else {
        rate
    }
}
