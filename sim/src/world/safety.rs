//! The safety checker: nothing unverified is ever served, advertised, marked held or
//! stored; every completed file is byte-identical to its source; no peer exceeds its
//! bounds; no honest peer is ever banned.
//!
//! It is a value the world feeds observations to (a send, a read, a store, a completion, a
//! ban, and a snapshot every simulated second); it reads only what a driver or an observer
//! could see (the disks and the machines' inspection methods) and reports into
//! [`Violations`].

use p2p_core::ids::{ContentId, PeerId};
use p2p_core::peer::PeerConfig;
use p2p_core::wire::Message;

use crate::event_queue::Nanos;
use crate::storage::SourceFile;
use crate::violations::{FailureKind, Violations};
use crate::world::node::Node;

pub(crate) struct Safety {
    serve_blocks_in_flight_max: u32,
    connections_max: usize,
}

impl Safety {
    /// Bounds as every peer of the run is configured.
    pub fn new(peer_config: &PeerConfig) -> Safety {
        Safety {
            serve_blocks_in_flight_max: peer_config.serve_blocks_in_flight_max,
            connections_max: peer_config.connections_max,
        }
    }

    /// At every send: a node only serves and advertises chunks it verified.
    pub fn on_send(&self, violations: &mut Violations, now: Nanos, node: &Node, message: &Message) {
        let disk = &node.disk;
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
            let addr = &node.addr;
            violations.push(
                FailureKind::Safety,
                now,
                format!("{addr} {what} chunks {unverified:?} it never verified and stored"),
            );
        }
    }

    /// A peer never has more pieces queued on one connection than its bound.
    pub fn on_pieces_queued(
        &self,
        violations: &mut Violations,
        now: Nanos,
        node: &Node,
        queued: u32,
    ) {
        let bound = self.serve_blocks_in_flight_max;
        if queued > bound {
            let addr = &node.addr;
            violations.push(
                FailureKind::Safety,
                now,
                format!("{addr} has {queued} pieces queued on one connection, above serve_blocks_in_flight_max={bound}"),
            );
        }
    }

    /// A node only reads a chunk to serve it once it verified and stored it.
    pub fn on_read(
        &self,
        violations: &mut Violations,
        now: Nanos,
        node: &Node,
        content_id: ContentId,
        chunk_index: u32,
    ) {
        if !node.disk.has(content_id, chunk_index) {
            let addr = &node.addr;
            violations.push(
                FailureKind::Safety,
                now,
                format!("{addr} read chunk {chunk_index} to serve it, but that chunk was never verified and stored"),
            );
        }
    }

    /// A chunk the disk accepted must equal the source (`identical`), and be one the
    /// node's download asks for (a part of a collection never fetches the rest).
    pub fn on_store(
        &self,
        violations: &mut Violations,
        now: Nanos,
        node: &Node,
        chunk_index: u32,
        identical: bool,
    ) {
        if !node.wants(chunk_index) {
            let addr = &node.addr;
            violations.push(
                FailureKind::Safety,
                now,
                format!("{addr} stored chunk {chunk_index}, which the part of the collection it wants does not hold"),
            );
        }
        if !identical {
            let addr = &node.addr;
            violations.push(
                FailureKind::Safety,
                now,
                format!("{addr} stored chunk {chunk_index} whose bytes differ from the source (the check it gave was not the manifest's)"),
            );
        }
    }

    /// At `DownloadComplete`: the file (or the part of a collection wanted) is on disk,
    /// byte-identical.
    pub fn on_complete(
        &self,
        violations: &mut Violations,
        now: Nanos,
        node: &Node,
        content_id: ContentId,
        source: &SourceFile,
    ) {
        let addr = &node.addr;
        if content_id != source.content_id {
            violations.push(
                FailureKind::Safety,
                now,
                format!("{addr} completed a content that is not being shared"),
            );
            return;
        }
        // Of the chunks it wants: all of them, or a part's.
        let missing: Vec<u32> = (0..source.chunk_count())
            .filter(|&i| node.wants(i) && !node.disk.has(content_id, i))
            .collect();
        if !missing.is_empty() {
            violations.push(
                FailureKind::Safety,
                now,
                format!(
                    "{addr} reported the download complete with chunks {missing:?} not on disk"
                ),
            );
        }
        let corrupt = node.disk.corrupt_chunks(content_id);
        if !corrupt.is_empty() {
            violations.push(
                FailureKind::Safety,
                now,
                format!("{addr} completed a file whose chunks {corrupt:?} differ from the source"),
            );
        }
    }

    /// Only peers that really sent corrupt data are banned. `culprit` is the node that ran
    /// as `banned`, if any did.
    pub fn on_ban(
        &self,
        violations: &mut Violations,
        now: Nanos,
        (banner, banned): (&Node, PeerId),
        culprit: Option<&Node>,
    ) {
        let honest = culprit.is_some_and(|c| !c.corrupt);
        if honest || culprit.is_none() {
            let addr = &banner.addr;
            let who = culprit.map_or_else(|| format!("unknown peer {banned}"), |c| c.addr.clone());
            violations.push(
                FailureKind::Safety,
                now,
                format!("{addr} banned {who}, which never sent a corrupt byte"),
            );
        }
    }

    /// Every second: what each peer marks held is verified on its disk, nothing stored
    /// differs from the source, and no peer is over its connection bound.
    pub fn snapshot(
        &self,
        violations: &mut Violations,
        now: Nanos,
        nodes: &[Node],
        content_id: ContentId,
    ) {
        let connections_max = self.connections_max;
        let mut found = Vec::new();
        for n in nodes {
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
            violations.push(FailureKind::Safety, now, message);
        }
    }
}
