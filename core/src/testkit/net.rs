//! A memory network: connections between named nodes, each frame delivered whole after the
//! sender's uplink has sent it (one frame after another, at [`UPLOAD_BYTES_PER_S`]) plus a
//! one-way [`LATENCY`]. Frames go through the real encoding and an incremental decoder per
//! receiving end, as over TCP.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use crate::ids::ConnId;
use crate::time::Instant;
use crate::wire::{FrameDecoder, Message};

/// Every node's uplink, in bytes per second: slow enough that a seeder cannot serve
/// everyone at once, so sharing between getters matters.
pub const UPLOAD_BYTES_PER_S: u64 = 8 * 1024 * 1024;
/// One-way latency of every link.
pub const LATENCY: Duration = Duration::from_millis(2);

const NANOS_PER_S: u64 = 1_000_000_000;

/// One end of a connection: the node's address and its connection id there.
pub type End = (String, ConnId);

/// Connections, decoders and frames in flight.
#[derive(Default)]
pub struct MemoryNet {
    /// Both directions of every open connection: each end → the other end.
    links: BTreeMap<End, End>,
    /// The receiving side's decoder, per end. Kept after a close: frames still in flight
    /// are delivered (and ignored by the machine), as a socket's buffered bytes would be.
    decoders: BTreeMap<End, FrameDecoder>,
    /// Frames on the wire, by delivery time and send order.
    in_flight: BTreeMap<(Instant, u64), (End, Bytes)>,
    frames_sent: u64,
    /// When each node's uplink is free again: frames leave one after another.
    upload_free_at: BTreeMap<String, Instant>,
}

impl MemoryNet {
    /// Opens a connection between two ends.
    pub fn link(&mut self, a: End, b: End) {
        self.links.insert(a.clone(), b.clone());
        self.links.insert(b, a);
    }

    /// The other end of `end`'s connection, if it is open.
    pub fn peer_of(&self, end: &End) -> Option<&End> {
        self.links.get(end)
    }

    /// Every open connection of the node at `addr`, as (its end, the other end).
    pub fn links_of(&self, addr: &str) -> Vec<(End, End)> {
        self.links
            .iter()
            .filter(|((from, _), _)| from == addr)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Closes the connection of `end` (both directions); returns the other end if it was open.
    pub fn unlink(&mut self, end: &End) -> Option<End> {
        let other = self.links.remove(end)?;
        self.links.remove(&other);
        Some(other)
    }

    /// Forgets every frame on its way to `addr` (the node is gone).
    pub fn drop_frames_to(&mut self, addr: &str) {
        self.in_flight.retain(|_, ((to, _), _)| to != addr);
    }

    /// Sends a frame from `end` at `now`; dropped when the connection is closed.
    pub fn send(&mut self, now: Instant, end: &End, frame: Bytes) {
        let Some(to) = self.links.get(end) else {
            return;
        };
        let free_at = self.upload_free_at.entry(end.0.clone()).or_default();
        let start = (*free_at).max(now);
        let transmit = Duration::from_nanos(frame.len() as u64 * NANOS_PER_S / UPLOAD_BYTES_PER_S);
        *free_at = start + transmit;
        self.frames_sent += 1;
        self.in_flight.insert(
            (start + transmit + LATENCY, self.frames_sent),
            (to.clone(), frame),
        );
    }

    /// When the next frame arrives.
    pub fn next_delivery_at(&self) -> Option<Instant> {
        self.in_flight.keys().next().map(|(at, _)| *at)
    }

    /// Whether no frame is on the wire.
    pub fn is_quiet(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Takes the next frame off the wire: when it arrives, where, and the messages its
    /// receiver's decoder yields (a frame that does not decode yields none).
    pub fn deliver_next(&mut self) -> Option<(Instant, End, Vec<Message>)> {
        let ((at, _), (to, frame)) = self.in_flight.pop_first()?;
        let decoder = self.decoders.entry(to.clone()).or_default();
        decoder.feed(&frame);
        let mut messages = Vec::new();
        while let Ok(Some(message)) = decoder.next_message() {
            messages.push(message);
        }
        Some((at, to, messages))
    }
}
