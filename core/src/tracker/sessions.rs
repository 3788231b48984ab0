//! A live peer's session: the connection it said `Hello` on, its swarm and listen address,
//! the traffic counters of its last `Heartbeat`, and what it holds of each content.

use std::collections::BTreeMap;

use crate::chunkset::ChunkSet;
use crate::ids::{ConnId, ContentId, PeerId};
use crate::time::Instant;

/// Every live session, by peer id.
pub(super) type Sessions = BTreeMap<PeerId, Session>;

/// One live peer.
pub(super) struct Session {
    pub(super) conn: ConnId,
    pub(super) swarm: String,
    pub(super) listen_addr: String,
    pub(super) uploaded_bytes: u64,
    pub(super) downloaded_bytes: u64,
    pub(super) last_seen: Instant,
    /// Contents of which the peer holds at least one chunk (or the whole of an empty file).
    pub(super) holdings: BTreeMap<ContentId, ChunkSet>,
}

impl Session {
    /// A session just opened by `Hello`: nothing held, nothing counted yet.
    pub(super) fn new(now: Instant, conn: ConnId, swarm: String, listen_addr: String) -> Session {
        Session {
            conn,
            swarm,
            listen_addr,
            uploaded_bytes: 0,
            downloaded_bytes: 0,
            last_seen: now,
            holdings: BTreeMap::new(),
        }
    }

    /// Whether other peers can download from this one.
    pub(super) fn is_source(&self) -> bool {
        !self.listen_addr.is_empty()
    }

    /// A `Heartbeat`'s traffic counters, as the peer reports them.
    pub(super) fn heartbeat(&mut self, uploaded_bytes: u64, downloaded_bytes: u64) {
        self.uploaded_bytes = uploaded_bytes;
        self.downloaded_bytes = downloaded_bytes;
    }
}
