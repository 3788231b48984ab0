//! Everything that can happen in a run, as events in the queue, and the counters of what
//! did happen (per event kind and per message kind) for the report.

use std::collections::BTreeMap;

use bytes::Bytes;
use p2p_core::ids::{ConnId, ContentId};
use p2p_core::manifest::ChunkCheck;

use crate::event_queue::Nanos;
use crate::faults::Fault;
use crate::world::connection::{LinkSide, Packet};

/// Boxed in [`Event`]: the bulky, rare events would otherwise size every event in the
/// heap, and the heap moves them on every push and pop.
pub(crate) struct ReadOp {
    pub node: usize,
    pub incarnation: u32,
    pub token: u64,
    pub content_id: ContentId,
    pub chunk_index: u32,
    pub offset: u32,
    pub length: u32,
}

/// Boxed in [`Event`], like [`ReadOp`].
pub(crate) struct StoreOp {
    pub node: usize,
    pub incarnation: u32,
    pub token: u64,
    pub content_id: ContentId,
    pub chunk_index: u32,
    pub check: ChunkCheck,
    pub data: Bytes,
}

/// Boxed in [`Event`], like [`ReadOp`].
pub(crate) struct PrepareOp {
    pub node: usize,
    pub incarnation: u32,
    pub content_id: ContentId,
    pub chunk_count: u32,
}

/// A `FetchRange` on its way to the origin (boxed in [`Event`], like [`ReadOp`]).
pub(crate) struct OriginRequest {
    pub node: usize,
    pub incarnation: u32,
    pub token: u64,
    pub validator: String,
    pub offset: u64,
    pub length: u32,
    /// For another peer's job (a helper's fetch), not the fetcher's own.
    pub helping: bool,
    /// The origin answers this one with a retryable error (an injected fault).
    pub failed: bool,
    /// Bytes of the range the fetcher had written when this was asked for: asking for
    /// them again is waste (but for a spot check), whenever the origin gets to it.
    pub written_when_asked: u64,
}

/// Everything that can happen.
pub(crate) enum Event {
    Wake {
        node: usize,
        incarnation: u32,
    },
    LinkDone {
        node: usize,
        side: LinkSide,
        generation: u64,
    },
    /// A packet reached the receiver's download link.
    Arrive {
        conn: u64,
        dir: usize,
        size: u64,
        packet: Packet,
    },
    Syn {
        conn: u64,
    },
    SynAck {
        conn: u64,
    },
    /// The handshake of a connection must be done by now.
    HandshakeTimeout {
        conn: u64,
    },
    /// An intruder dials again.
    IntruderDial {
        node: usize,
    },
    ConnectFailed {
        conn: u64,
    },
    /// The connection broke under `node` (its end already forgotten by the network).
    Broken {
        node: usize,
        incarnation: u32,
        local: ConnId,
    },
    DiskRead(Box<ReadOp>),
    DiskStore(Box<StoreOp>),
    Prepared(Box<PrepareOp>),
    Join {
        node: usize,
    },
    Fault(Fault),
    /// A departed node's machine is dropped (after its goodbyes went out).
    Depart {
        node: usize,
        incarnation: u32,
    },
    Heal,
    CheckTick,
    RecoveryCheck {
        tracker_incarnation: u32,
        restarted_at: Nanos,
    },
    /// A range request reached the origin (see `world/origin.rs`).
    OriginRequest(Box<OriginRequest>),
    /// A response finished crossing one of the origin's links; only the newest
    /// `generation` is live.
    OriginLinks {
        generation: u64,
    },
    /// A `WriteRange` finished on the fetcher's disk.
    RangeWritten {
        node: usize,
        incarnation: u32,
        token: u64,
    },
    /// The user runs the fetch again after it failed (see `world/coop.rs`).
    FetchAgain {
        node: usize,
    },
    /// The origin's file gets a new validator.
    ValidatorChange,
}

impl Event {
    /// Index into [`EVENT_KIND_NAMES`].
    pub(crate) fn kind(&self) -> usize {
        match self {
            Event::Wake { .. } => WAKE,
            Event::LinkDone { .. } => LINK_DONE,
            Event::Arrive { .. } => 5,
            Event::Syn { .. } => 6,
            Event::SynAck { .. } => 7,
            Event::ConnectFailed { .. } => 8,
            Event::Broken { .. } => 9,
            Event::DiskRead(_) => 10,
            Event::DiskStore(_) => 11,
            Event::Prepared(_) => 12,
            Event::Join { .. } => 13,
            Event::Fault(_) => 14,
            Event::Depart { .. } => 15,
            Event::Heal => 16,
            Event::CheckTick => 17,
            Event::RecoveryCheck { .. } => 18,
            Event::HandshakeTimeout { .. } => 19,
            Event::IntruderDial { .. } => 20,
            Event::OriginRequest(_) => 21,
            Event::OriginLinks { .. } => 22,
            Event::RangeWritten { .. } => 23,
            Event::FetchAgain { .. } => 24,
            Event::ValidatorChange => 25,
        }
    }
}

/// Names of the event kinds counted in [`Stats::events_by_kind`]; a `-stale` kind is an
/// event superseded before it came due (a timer re-armed, a link re-planned), dropped unseen.
pub const EVENT_KIND_NAMES: [&str; 26] = [
    "wake",
    "wake-stale",
    "link-done",
    "link-done-stale",
    "link-done-early",
    "arrive",
    "syn",
    "syn-ack",
    "connect-failed",
    "broken",
    "disk-read",
    "disk-store",
    "prepared",
    "join",
    "fault",
    "depart",
    "heal",
    "check-tick",
    "recovery-check",
    "handshake-timeout",
    "intruder-dial",
    "origin-request",
    "origin-links",
    "range-written",
    "fetch-again",
    "validator-change",
];
pub(crate) const WAKE: usize = 0;
pub(crate) const WAKE_STALE: usize = 1;
pub(crate) const LINK_DONE: usize = 2;
pub(crate) const LINK_DONE_STALE: usize = 3;
/// A live link event that came due before anything finished (the completion moved later).
pub(crate) const LINK_DONE_EARLY: usize = 4;

/// Counters for the report.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub events: u64,
    /// Events popped, per kind (see [`EVENT_KIND_NAMES`]).
    pub events_by_kind: [u64; EVENT_KIND_NAMES.len()],
    /// Messages sent, per wire kind byte, with the message's name.
    pub messages_by_kind: BTreeMap<u8, (String, u64)>,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub pieces_sent: u64,
    pub pieces_corrupted: u64,
    pub peers_banned: u64,
    pub crashes: u64,
    pub tracker_restarts: u64,
    pub connections_opened: u64,
    /// Handshake messages sent; handshakes refused by either side, and not done in time.
    pub handshake_messages: u64,
    pub handshakes_refused: u64,
    pub handshakes_timed_out: u64,
    /// Intruders' dials; outsiders' handshakes refused; an impostor's `Hello`s refused
    /// (answered with an `Error`) by the tracker and by peers.
    pub intruder_dials: u64,
    pub outsider_handshakes_refused: u64,
    pub impostor_refused_by_tracker: u64,
    pub impostor_refused_by_peers: u64,
}

impl Stats {
    /// The event just counted as its live kind `live` turned out to be `actual` (stale, or
    /// early): count it there instead.
    pub(crate) fn recount(&mut self, live: usize, actual: usize) {
        self.events_by_kind[live] -= 1;
        self.events_by_kind[actual] += 1;
    }

    /// Events and messages per kind, one `name=count` list each, biggest first.
    pub fn kinds_summary(&self) -> String {
        let mut events: Vec<(&str, u64)> = EVENT_KIND_NAMES
            .iter()
            .copied()
            .zip(self.events_by_kind)
            .filter(|&(_, n)| n > 0)
            .collect();
        events.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        let mut messages: Vec<(&str, u64)> = self
            .messages_by_kind
            .values()
            .map(|(name, n)| (name.as_str(), *n))
            .collect();
        messages.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        let list = |items: Vec<(&str, u64)>| {
            items
                .iter()
                .map(|(name, n)| format!("{name}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "events by kind: {}\nmessages by kind: {}",
            list(events),
            list(messages)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_stay_small() {
        // Every heap push and pop moves events: keep bulky payloads boxed.
        assert!(
            std::mem::size_of::<Event>() <= 40,
            "{}",
            std::mem::size_of::<Event>()
        );
    }
}
