//! The liveness checker: after the heal, every peer with a live honest source for every
//! chunk completes within the bound; `pending()` says in words what is still missing.
//!
//! A value the world asks at the end of a run (and whenever it wants the list of what is
//! unfinished); it reads only the nodes' disks and the machines' inspection methods.

use p2p_core::ChunkSet;

use crate::event_queue::Nanos;
use crate::storage::SourceFile;
use crate::violations::{FailureKind, Violations};
use crate::world::node::{Life, Node, Role};

/// Missing chunks a pending line names one by one; more are only counted.
const MISSING_LISTED_MAX: usize = 8;

pub(crate) struct Liveness {
    liveness_bound_ms: u64,
}

impl Liveness {
    pub fn new(liveness_bound_ms: u64) -> Liveness {
        Liveness { liveness_bound_ms }
    }

    /// At the end: every peer with a live honest source for each chunk finished. `healed`
    /// says whether the run got past its fault phase.
    pub fn finish(
        &self,
        violations: &mut Violations,
        now: Nanos,
        healed: bool,
        nodes: &[Node],
        source: &SourceFile,
    ) {
        let pending = self.pending(nodes, source);
        if pending.is_empty() {
            return;
        }
        let reason = if healed {
            format!(
                "{} peers with a source for every chunk did not finish within {} ms of the heal",
                pending.len(),
                self.liveness_bound_ms
            )
        } else {
            "the run ended before the fault phase did".to_string()
        };
        violations.push(
            FailureKind::Liveness,
            now,
            format!("{reason}:\n    {}", pending.join("\n    ")),
        );
    }

    /// In words, what is still unfinished: one line per live peer that has not completed
    /// although every chunk it lacks has a live honest source.
    pub fn pending(&self, nodes: &[Node], source: &SourceFile) -> Vec<String> {
        let content_id = source.content_id;
        let covered = honest_coverage(nodes, source);
        let mut lines = Vec::new();
        for (index, n) in nodes.iter().enumerate() {
            if n.role != Role::Leecher || n.life == Life::Departed || n.completed_at.is_some() {
                continue;
            }
            let lacks_source: Vec<u32> = (0..source.chunk_count())
                .filter(|&i| n.wants(i) && !covered.contains(i) && !n.disk.has(content_id, i))
                .collect();
            if !lacks_source.is_empty() {
                // Exempt: no live honest node holds these chunks.
                continue;
            }
            lines.push(pending_line(index, n, source));
        }
        lines
    }
}

/// One unfinished peer: what it has, where its machine is, and why it may be stuck.
fn pending_line(index: usize, n: &Node, source: &SourceFile) -> String {
    let content_id = source.content_id;
    let on_disk = n.disk.written(content_id).map_or(0, |w| w.count());
    let wanted = n
        .wanted
        .as_ref()
        .map_or(source.chunk_count(), |w| w.count());
    let mut line = format!(
        "node{index} ({}, peer {}): {on_disk}/{wanted} chunks on disk",
        n.addr, n.peer_id,
    );
    if n.wanted.is_some() {
        line.push_str(&format!(" (a part of the {})", source.chunk_count()));
    }
    // Which ones, when few: peers stuck on the same chunk are one finding, not many.
    let missing: Vec<u32> = (0..source.chunk_count())
        .filter(|&i| n.wants(i) && !n.disk.has(content_id, i))
        .take(MISSING_LISTED_MAX + 1)
        .collect();
    if !missing.is_empty() && missing.len() <= MISSING_LISTED_MAX {
        line.push_str(&format!(" (missing {missing:?})"));
    }
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
    line
}

/// Chunks some live, honest node has verified on disk.
fn honest_coverage(nodes: &[Node], source: &SourceFile) -> ChunkSet {
    let content_id = source.content_id;
    let mut covered = ChunkSet::new(source.chunk_count());
    for n in nodes {
        if n.role == Role::Tracker || n.corrupt || n.life != Life::Up {
            continue;
        }
        if let Some(written) = n.disk.written(content_id) {
            covered.union_with(written);
        }
    }
    covered
}
