//! The peer's downloads: each [`Download`]'s state and logic (`state.rs`), the chunks in
//! transit assembled block by block (`assembly.rs`), which chunk to ask of whom
//! (`scheduler.rs`); and here the set of them with what they share: the chunks handed to
//! the driver to verify and store, and the peers banned per content.

pub mod assembly;
pub mod scheduler;
mod state;

use std::collections::{BTreeMap, BTreeSet};

pub(crate) use state::{Candidate, PieceOutcome};
pub use state::{Download, DownloadPhase, PreparedChunks};

use crate::ids::{ContentId, PeerId};

/// A chunk handed to the driver to verify and store.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingStore {
    pub(crate) content_id: ContentId,
    pub(crate) chunk_index: u32,
    pub(crate) from: PeerId,
}

#[derive(Default)]
pub(crate) struct Downloads {
    by_content: BTreeMap<ContentId, Download>,
    /// Peers banned per content: they sent a chunk that failed its hash.
    banned: BTreeMap<ContentId, BTreeSet<PeerId>>,
    /// Chunks with the driver to verify and store, by token.
    stores: BTreeMap<u64, PendingStore>,
}

impl Downloads {
    pub(crate) fn get(&self, content_id: ContentId) -> Option<&Download> {
        self.by_content.get(&content_id)
    }

    pub(crate) fn get_mut(&mut self, content_id: ContentId) -> Option<&mut Download> {
        self.by_content.get_mut(&content_id)
    }

    pub(crate) fn insert(&mut self, download: Download) {
        self.by_content.insert(download.content_id, download);
    }

    pub(crate) fn remove(&mut self, content_id: ContentId) -> Option<Download> {
        self.by_content.remove(&content_id)
    }

    pub(crate) fn is_running(&self, content_id: ContentId) -> bool {
        self.get(content_id).is_some_and(|d| !d.is_finished())
    }

    /// Every download's content id, finished or not.
    pub(crate) fn ids(&self) -> Vec<ContentId> {
        self.by_content.keys().copied().collect()
    }

    /// The downloads still running.
    pub(crate) fn running_ids(&self) -> Vec<ContentId> {
        self.by_content
            .iter()
            .filter(|(_, d)| !d.is_finished())
            .map(|(id, _)| *id)
            .collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Download> {
        self.by_content.values()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Download> {
        self.by_content.values_mut()
    }

    pub(crate) fn banned(&self, content_id: ContentId) -> Option<&BTreeSet<PeerId>> {
        self.banned.get(&content_id)
    }

    pub(crate) fn is_banned(&self, content_id: ContentId, peer: PeerId) -> bool {
        self.banned
            .get(&content_id)
            .is_some_and(|b| b.contains(&peer))
    }

    /// Bans `peer` from a content; true the first time (several bad chunks from one peer
    /// may be in flight: one ban, one notice).
    pub(crate) fn ban(&mut self, content_id: ContentId, peer: PeerId, chunk_index: u32) -> bool {
        let newly_banned = self.banned.entry(content_id).or_default().insert(peer);
        if let Some(download) = self.by_content.get_mut(&content_id) {
            download.ban_peer(peer, chunk_index);
        }
        newly_banned
    }

    pub(crate) fn store_started(&mut self, token: u64, store: PendingStore) {
        self.stores.insert(token, store);
    }

    pub(crate) fn store_finished(&mut self, token: u64) -> Option<PendingStore> {
        self.stores.remove(&token)
    }

    /// Chunks with the driver to verify and store, over all downloads.
    pub(crate) fn stores_in_flight(&self) -> usize {
        self.stores.len()
    }
}
