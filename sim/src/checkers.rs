//! The checkers: one per property, outside the machines, reading only what a driver or an
//! observer could see (the disks, the network, the machines' inspection methods).
//!
//! - *safety*: nothing unverified is ever served, advertised, marked held or stored; every
//!   completed file is byte-identical to its source; no peer exceeds its bounds; no honest
//!   peer is ever banned.
//! - *liveness*: after the heal, every peer with a live honest source for every chunk
//!   completes within the bound; `pending()` says in words what is still missing.
//! - *recovery*: after a tracker restart, every live peer is known to it again within the
//!   bound.

use std::fmt;

use crate::event_queue::{NANOS_PER_S, Nanos};

/// What kind of property broke. Ordered by how bad it is: the worst decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureKind {
    /// A machine panicked or livelocked, or the simulator itself broke.
    Crash,
    Safety,
    Liveness,
    Recovery,
}

impl FailureKind {
    /// Exit codes are distinct per kind (2 is kept for usage errors).
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::Crash => 1,
            FailureKind::Safety => 3,
            FailureKind::Liveness => 4,
            FailureKind::Recovery => 5,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Crash => "crash",
            FailureKind::Safety => "safety",
            FailureKind::Liveness => "liveness",
            FailureKind::Recovery => "recovery",
        }
    }
}

/// One broken property, with the virtual time it was seen at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: FailureKind,
    pub at: Nanos,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{} at t={:.6}s] {}",
            self.kind.name(),
            self.at as f64 / NANOS_PER_S as f64,
            self.message
        )
    }
}

/// Collected violations. Only the first few of each kind are kept: one is enough to fail,
/// and a broken invariant tends to break a thousand times.
#[derive(Default)]
pub struct Violations {
    list: Vec<Violation>,
    dropped: u64,
}

const VIOLATIONS_KEPT_MAX: usize = 20;

impl Violations {
    pub fn push(&mut self, kind: FailureKind, at: Nanos, message: String) {
        if self.list.len() >= VIOLATIONS_KEPT_MAX {
            self.dropped += 1;
            return;
        }
        self.list.push(Violation { kind, at, message });
    }

    pub fn has(&self, kind: FailureKind) -> bool {
        self.list.iter().any(|v| v.kind == kind)
    }

    pub fn into_list(self) -> (Vec<Violation>, u64) {
        (self.list, self.dropped)
    }
}

// ---------------------------------------------------------------------- the checks

use p2p_core::chunkset::ChunkSet;
use p2p_core::ids::{ContentId, PeerId};
use p2p_core::wire::Message;

use crate::world::{Life, Role, TRACKER_NODE, World};

impl World {
    /// Safety, at every send: a node only serves and advertises chunks it verified.
    pub(crate) fn check_sent(&mut self, node: usize, message: &Message) {
        let now = self.now();
        let disk = &self.nodes[node].disk;
        // Collected straight from the message: this runs on every send, and an empty
        // `Vec` (the usual verdict) allocates nothing.
        let unverified = |content_id: ContentId, indices: &mut dyn Iterator<Item = u32>| {
            indices
                .filter(|&i| !disk.has(content_id, i))
                .collect::<Vec<u32>>()
        };
        let (what, unverified) = match message {
            Message::Piece {
                content_id,
                chunk_index,
                ..
            } => (
                "served",
                unverified(*content_id, &mut std::iter::once(*chunk_index)),
            ),
            Message::Have {
                content_id,
                chunk_indices,
            } => (
                "advertised (Have)",
                unverified(*content_id, &mut chunk_indices.iter().copied()),
            ),
            Message::Bitfield { content_id, chunks } => (
                "advertised (Bitfield)",
                unverified(*content_id, &mut chunks.iter()),
            ),
            Message::Announce { manifest, chunks } => (
                "announced",
                unverified(manifest.content_id(), &mut chunks.iter()),
            ),
            _ => return,
        };
        if !unverified.is_empty() {
            let addr = self.nodes[node].addr.clone();
            self.violations.push(
                FailureKind::Safety,
                now,
                format!("{addr} {what} chunks {unverified:?} it never verified and stored"),
            );
        }
    }

    /// Safety: a peer never has more pieces queued on one connection than its bound.
    pub(crate) fn check_pieces_queued(&mut self, node: usize, queued: u32) {
        let bound = self.peer_config_template.serve_blocks_in_flight_max;
        if queued > bound {
            let addr = self.nodes[node].addr.clone();
            self.violations.push(
                FailureKind::Safety,
                self.now(),
                format!("{addr} has {queued} pieces queued on one connection, above serve_blocks_in_flight_max={bound}"),
            );
        }
    }

    /// Safety, at `DownloadComplete`: the file on disk is whole and byte-identical.
    pub(crate) fn check_completed(&mut self, node: usize, content_id: ContentId) {
        let now = self.now();
        let n = &self.nodes[node];
        let addr = n.addr.clone();
        if content_id != self.source.content_id {
            self.violations.push(
                FailureKind::Safety,
                now,
                format!("{addr} completed a content that is not being shared"),
            );
            return;
        }
        let missing: Vec<u32> = match n.disk.written(content_id) {
            Some(w) => w.missing().collect(),
            None => (0..self.source.chunk_count()).collect(),
        };
        if !missing.is_empty() {
            self.violations.push(
                FailureKind::Safety,
                now,
                format!(
                    "{addr} reported the download complete with chunks {missing:?} not on disk"
                ),
            );
        }
        let corrupt = n.disk.corrupt_chunks(content_id);
        if !corrupt.is_empty() {
            self.violations.push(
                FailureKind::Safety,
                now,
                format!("{addr} completed a file whose chunks {corrupt:?} differ from the source"),
            );
        }
    }

    /// Safety: only peers that really sent corrupt data are banned.
    pub(crate) fn check_ban(&mut self, node: usize, banned: PeerId) {
        let now = self.now();
        let culprit = self.peer_owner.get(&banned).copied();
        let honest = culprit.is_some_and(|c| !self.nodes[c].corrupt);
        if honest || culprit.is_none() {
            let addr = self.nodes[node].addr.clone();
            let who = culprit.map_or_else(
                || format!("unknown peer {banned}"),
                |c| self.nodes[c].addr.clone(),
            );
            self.violations.push(
                FailureKind::Safety,
                now,
                format!("{addr} banned {who}, which never sent a corrupt byte"),
            );
        }
    }

    /// Safety, every second: what each peer marks held is verified on its disk, nothing
    /// stored differs from the source, and no peer is over its connection bound.
    pub(crate) fn check_snapshot(&mut self) {
        let now = self.now();
        let content_id = self.source.content_id;
        let connections_max = self.peer_config_template.connections_max;
        let mut found = Vec::new();
        for n in &self.nodes {
            let corrupt = n.disk.corrupt_chunks(content_id);
            if !corrupt.is_empty() {
                found.push(format!(
                    "{} has chunks {corrupt:?} on disk that differ from the source",
                    n.addr
                ));
            }
            let Some(peer) = n.peer() else {
                continue;
            };
            if let Some(held) = peer.held_chunks(content_id) {
                let unverified: Vec<u32> = held
                    .iter()
                    .filter(|&i| !n.disk.has(content_id, i))
                    .collect();
                if !unverified.is_empty() {
                    found.push(format!(
                        "{} marks chunks {unverified:?} held that are not verified on its disk",
                        n.addr
                    ));
                }
            }
            if peer.connection_count() > connections_max {
                found.push(format!(
                    "{} has {} connections, above connections_max={connections_max}",
                    n.addr,
                    peer.connection_count()
                ));
            }
        }
        for message in found {
            self.violations.push(FailureKind::Safety, now, message);
        }
    }

    /// Recovery: every live peer that was up and reachable since `restarted_at` is known.
    pub(crate) fn check_recovery(&mut self, restarted_at: u64) {
        let now = self.now();
        let tracker_node = &self.nodes[TRACKER_NODE];
        let Some(tracker) = tracker_node.machine.as_ref().and_then(|m| m.tracker()) else {
            return;
        };
        if tracker_node.disrupted_at > restarted_at {
            return;
        }
        let unknown: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| {
                n.role != Role::Tracker
                    && n.life == Life::Up
                    && n.machine.is_some()
                    && n.disrupted_at <= restarted_at
                    && n.group == tracker_node.group
            })
            .filter(|n| !tracker.is_peer_known(n.peer_id))
            .map(|n| n.addr.clone())
            .collect();
        if !unknown.is_empty() {
            let bound = self.config.recovery_bound_ms;
            self.violations.push(
                FailureKind::Recovery,
                now,
                format!(
                    "{} live peers unknown to the tracker {bound} ms after its restart: {}",
                    unknown.len(),
                    unknown.join(", ")
                ),
            );
        }
    }

    /// Liveness, at the end: every peer with a live honest source for each chunk finished.
    pub(crate) fn finish_checks(&mut self) {
        if self.violations.has(FailureKind::Crash) {
            return;
        }
        self.check_snapshot();
        let pending = self.pending();
        if !pending.is_empty() {
            let now = self.now();
            let reason = if self.healed {
                format!(
                    "{} peers with a source for every chunk did not finish within {} ms of the heal",
                    pending.len(),
                    self.config.liveness_bound_ms
                )
            } else {
                "the run ended before the fault phase did".to_string()
            };
            self.violations.push(
                FailureKind::Liveness,
                now,
                format!("{reason}:\n    {}", pending.join("\n    ")),
            );
        }
    }

    /// Chunks some live, honest node has verified on disk.
    pub(crate) fn honest_coverage(&self) -> ChunkSet {
        let content_id = self.source.content_id;
        let mut covered = ChunkSet::new(self.source.chunk_count());
        for n in &self.nodes {
            if n.role == Role::Tracker || n.corrupt || n.life != Life::Up {
                continue;
            }
            if let Some(written) = n.disk.written(content_id) {
                covered.union_with(written);
            }
        }
        covered
    }

    /// In words, what is still unfinished: one line per live peer that has not completed
    /// although every chunk it lacks has a live honest source.
    pub fn pending(&self) -> Vec<String> {
        let content_id = self.source.content_id;
        let covered = self.honest_coverage();
        let mut lines = Vec::new();
        for (index, n) in self.nodes.iter().enumerate() {
            if n.role != Role::Leecher || n.life == Life::Departed || n.completed_at.is_some() {
                continue;
            }
            let on_disk = n.disk.written(content_id).map_or(0, |w| w.count());
            let lacks_source: Vec<u32> = (0..self.source.chunk_count())
                .filter(|&i| !covered.contains(i) && !n.disk.has(content_id, i))
                .collect();
            if !lacks_source.is_empty() {
                // Exempt: no live honest node holds these chunks.
                continue;
            }
            let mut line = format!(
                "node{index} ({}, peer {}): {on_disk}/{} chunks on disk",
                n.addr,
                n.peer_id,
                self.source.chunk_count()
            );
            match n.peer() {
                None => line.push_str(", machine not running"),
                Some(peer) => {
                    let held = peer.held_chunks(content_id).map_or(0, |h| h.count());
                    line.push_str(&format!(
                        ", {held} held, phase {:?}, {} sources, {} connections, tracker {}",
                        peer.download_phase(content_id),
                        peer.source_count(content_id),
                        peer.connection_count(),
                        if peer.is_tracker_ready() {
                            "connected"
                        } else {
                            "not connected"
                        },
                    ));
                }
            }
            if n.slow {
                line.push_str(", slow");
            }
            if n.corrupt {
                line.push_str(", corrupt");
            }
            if let Some(reason) = &n.failed {
                line.push_str(&format!(", download failed: {reason}"));
            }
            lines.push(line);
        }
        lines
    }
}
