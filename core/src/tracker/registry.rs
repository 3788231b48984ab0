//! The content registry: per swarm, its peers and the contents they hold, each a
//! [`FileRecord`]; how `Announce`, `Have` and `Withdraw` change a session's holdings and the
//! records with them; and the manifest budget all records share.

use std::collections::{BTreeMap, BTreeSet};

use super::TrackerConfig;
use super::file_record::{FileRecord, holds_any};
use super::sessions::Session;
use crate::chunkset::ChunkSet;
use crate::ids::{ContentId, PeerId};
use crate::manifest::Manifest;
use crate::wire::FileEntry;

#[derive(Default)]
pub(super) struct Swarm {
    pub(super) peers: BTreeSet<PeerId>,
    pub(super) files: BTreeMap<ContentId, FileRecord>,
}

impl Swarm {
    pub(super) fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.files.is_empty()
    }
}

/// Every swarm with a live peer, and what their records cost.
#[derive(Default)]
pub(super) struct Registry {
    swarms: BTreeMap<String, Swarm>,
    /// Sum of `FileRecord::cost` over all records.
    manifest_bytes: usize,
}

/// Why an `Announce` is malformed (fatal), if it is.
pub(super) fn validate_announce(manifest: &Manifest, chunks: &ChunkSet) -> Result<(), String> {
    // The decoder validated both, but the simulator hands messages over undecoded.
    if let Err(e) = manifest.validate() {
        return Err(format!("invalid manifest: {e}"));
    }
    if chunks.len() != manifest.chunk_count() {
        return Err(format!(
            "chunk set covers {} chunks but the manifest has {}",
            chunks.len(),
            manifest.chunk_count()
        ));
    }
    Ok(())
}

impl Registry {
    pub(super) fn swarm(&self, name: &str) -> Option<&Swarm> {
        self.swarms.get(name)
    }

    pub(super) fn swarms(&self) -> impl Iterator<Item = (&String, &Swarm)> {
        self.swarms.iter()
    }

    pub(super) fn manifest_bytes(&self) -> usize {
        self.manifest_bytes
    }

    pub(super) fn record(&self, swarm: &str, content_id: ContentId) -> Option<&FileRecord> {
        self.swarms.get(swarm)?.files.get(&content_id)
    }

    pub(super) fn record_mut(
        &mut self,
        swarm: &str,
        content_id: ContentId,
    ) -> Option<&mut FileRecord> {
        self.swarms.get_mut(swarm)?.files.get_mut(&content_id)
    }

    /// The manifest of `content_id` as known in `swarm`.
    pub(super) fn manifest(&self, swarm: &str, content_id: ContentId) -> Option<&Manifest> {
        Some(&self.record(swarm, content_id)?.manifest)
    }

    /// The files of `swarm` that `ListFiles` lists (the live sources can supply them
    /// whole), by content id. Not truncated to a frame.
    pub(super) fn files(&self, swarm: &str) -> Vec<FileEntry> {
        self.swarms.get(swarm).map_or_else(Vec::new, |s| {
            s.files
                .iter()
                .filter(|(_, record)| record.is_complete())
                .map(|(&content_id, record)| record.entry(content_id))
                .collect()
        })
    }

    #[cfg(test)]
    /// Every content of `swarm` some live peer holds a chunk of, delisted ones included.
    pub(super) fn known_files(&self, swarm: &str) -> Vec<FileEntry> {
        self.swarms.get(swarm).map_or_else(Vec::new, |s| {
            s.files
                .iter()
                .map(|(&content_id, record)| record.entry(content_id))
                .collect()
        })
    }

    /// `peer` opened a session in `swarm`.
    pub(super) fn join(&mut self, swarm: &str, peer: PeerId) {
        self.swarms
            .entry(swarm.to_owned())
            .or_default()
            .peers
            .insert(peer);
    }

    /// `peer`'s session is gone: every chunk it held goes with it, and its swarm too once
    /// nobody is left in it.
    pub(super) fn leave(&mut self, peer: PeerId, session: &Session) {
        let Some(swarm) = self.swarms.get_mut(&session.swarm) else {
            return;
        };
        let is_source = session.is_source();
        for (content_id, chunks) in &session.holdings {
            Self::remove_holding(
                swarm,
                peer,
                *content_id,
                chunks,
                is_source,
                &mut self.manifest_bytes,
            );
        }
        swarm.peers.remove(&peer);
        if swarm.is_empty() {
            self.swarms.remove(&session.swarm);
        }
    }

    /// A valid `Announce`: replaces what `session` holds of the content. `Err` is why it was
    /// refused (a limit, not fatal); nothing changed then.
    pub(super) fn announce(
        &mut self,
        config: &TrackerConfig,
        peer: PeerId,
        session: &mut Session,
        manifest: Manifest,
        chunks: ChunkSet,
    ) -> Result<(), String> {
        let content_id = manifest.content_id();
        let Some(swarm) = self.swarms.get_mut(&session.swarm) else {
            return Ok(());
        };
        let holds = holds_any(&chunks);
        if holds {
            admit(config, self.manifest_bytes, session, swarm, &manifest)?;
        }
        let is_source = session.is_source();
        // An Announce states everything the peer holds of the content: replace the old set.
        if let Some(old) = session.holdings.remove(&content_id)
            && let Some(record) = swarm.files.get_mut(&content_id)
        {
            if is_source {
                record.remove_source(&old);
            }
            record.holders.remove(&peer);
        }
        if holds {
            let record = swarm.files.entry(content_id).or_insert_with(|| {
                self.manifest_bytes += FileRecord::cost(&manifest);
                FileRecord::new(manifest)
            });
            record.holders.insert(peer);
            if is_source {
                record.add_source(&chunks);
            }
            session.holdings.insert(content_id, chunks);
        } else {
            Self::release_if_unheld(swarm, content_id, &mut self.manifest_bytes);
        }
        Ok(())
    }

    /// A `Have`: adds chunks to a content `session` has announced.
    pub(super) fn have(
        &mut self,
        session: &mut Session,
        content_id: ContentId,
        chunk_indices: &[u32],
    ) {
        let is_source = session.is_source();
        // Unknown content: the peer has not announced it on this session; ignored (see the
        // module docs).
        let Some(chunks) = session.holdings.get_mut(&content_id) else {
            return;
        };
        let Some(record) = self
            .swarms
            .get_mut(&session.swarm)
            .and_then(|s| s.files.get_mut(&content_id))
        else {
            return;
        };
        let was_full = chunks.is_full();
        for &index in chunk_indices {
            // `insert` ignores indices out of range.
            if chunks.insert(index) && is_source {
                record.add_chunk(index);
            }
        }
        if is_source && !was_full && chunks.is_full() {
            record.full_sources += 1;
        }
    }

    /// A `Withdraw`: `session` no longer holds the content.
    pub(super) fn withdraw(&mut self, peer: PeerId, session: &mut Session, content_id: ContentId) {
        let Some(chunks) = session.holdings.remove(&content_id) else {
            return;
        };
        let is_source = session.is_source();
        if let Some(swarm) = self.swarms.get_mut(&session.swarm) {
            Self::remove_holding(
                swarm,
                peer,
                content_id,
                &chunks,
                is_source,
                &mut self.manifest_bytes,
            );
        }
    }

    fn remove_holding(
        swarm: &mut Swarm,
        peer: PeerId,
        content_id: ContentId,
        chunks: &ChunkSet,
        is_source: bool,
        manifest_bytes: &mut usize,
    ) {
        if let Some(record) = swarm.files.get_mut(&content_id) {
            if is_source {
                record.remove_source(chunks);
            }
            record.holders.remove(&peer);
        }
        Self::release_if_unheld(swarm, content_id, manifest_bytes);
    }

    /// Forgets a content (manifest too) once no live peer holds any of it.
    fn release_if_unheld(swarm: &mut Swarm, content_id: ContentId, manifest_bytes: &mut usize) {
        if swarm
            .files
            .get(&content_id)
            .is_some_and(|r| r.holders.is_empty())
            && let Some(record) = swarm.files.remove(&content_id)
        {
            *manifest_bytes = manifest_bytes.saturating_sub(FileRecord::cost(&record.manifest));
        }
    }
}

/// Whether an `Announce` that holds something is admitted; `Err` says why not: the session
/// holds as many contents
/// as it may, or a new manifest would overspend the budget.
fn admit(
    config: &TrackerConfig,
    manifest_bytes: usize,
    session: &Session,
    swarm: &Swarm,
    manifest: &Manifest,
) -> Result<(), String> {
    let content_id = manifest.content_id();
    let already_held = session.holdings.contains_key(&content_id);
    let known = swarm.files.contains_key(&content_id);
    if !already_held && session.holdings.len() >= config.contents_per_peer_max {
        Err(format!(
            "a peer may hold at most {} contents at once",
            config.contents_per_peer_max
        ))
    } else if !known && manifest_bytes + FileRecord::cost(manifest) > config.manifest_bytes_max {
        Err("the tracker's manifest budget is spent".to_owned())
    } else {
        Ok(())
    }
}
