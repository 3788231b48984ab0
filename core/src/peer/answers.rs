//! A peer answers the tracker's questions (`ListFiles`, `Locate`, `ListPeers`) from what
//! it knows (issue 15): the contents it holds, and which of its connected peers hold what.
//! So once every tracker of a swarm is gone, any member still up can tell a newcomer what
//! the swarm offers and who holds it; the newcomer reaches that member through its ticket,
//! the LAN or the peers it met before.
//!
//! The view is this peer's own: the holders it knows are itself and the sources of its
//! downloads (whose chunks their bitfields told it); a seeder knows only itself. Counters
//! it does not have (another peer's transfer totals, when it was last seen) are zero.
//! Every list is cut to fit one frame, as the tracker's are.

use std::collections::BTreeMap;

use super::Peer;
use crate::chunkset::ChunkSet;
use crate::collection::tree_summary;
use crate::ids::{ConnId, ContentId, PeerId};
use crate::manifest::Manifest;
use crate::tracker::frame::{
    FILE_LIST_HEADER_LEN, LOCATED_HEADER_LEN, PEER_LIST_HEADER_LEN, file_entry_len,
    peer_chunks_len, peer_entry_len, truncate_to_frame,
};
use crate::wire::{FileEntry, LIST_LEN_MAX, Message, PEERS_LEN_MAX, PeerChunks, PeerEntry};

impl Peer {
    /// Answers one of the tracker's questions asked on a peer connection.
    pub(super) fn answer_question(&mut self, conn: ConnId, question: Message) {
        let answer = match question {
            Message::ListFiles => self.file_list(),
            Message::Locate { content_id } => self.located(content_id),
            Message::ListPeers => self.peer_list(),
            _ => return,
        };
        self.out.send(conn, answer);
    }

    /// Who is known to hold chunks of `content_id`: this peer (when it holds any and
    /// listens), then its download's sources, with the chunks each holds.
    fn holders(&self, content_id: ContentId) -> Vec<PeerChunks> {
        let mut holders = Vec::new();
        if let Some(held) = self.serving.held.get(&content_id)
            && !held.chunks.is_empty()
            && !self.config.listen_addr.is_empty()
        {
            holders.push(PeerChunks {
                peer_id: self.config.peer_id,
                listen_addr: self.config.listen_addr.clone(),
                chunks: held.chunks.clone(),
            });
        }
        let Some(scheduler) = self
            .downloads
            .get(content_id)
            .and_then(|d| d.scheduler.as_ref())
        else {
            return holders;
        };
        for (peer_id, chunks) in scheduler.peers_chunks() {
            let Some(addr) = self.conns.addr_of(peer_id).filter(|a| !a.is_empty()) else {
                continue;
            };
            if !chunks.is_empty() {
                holders.push(PeerChunks {
                    peer_id,
                    listen_addr: addr,
                    chunks: chunks.clone(),
                });
            }
        }
        holders
    }

    fn located(&self, content_id: ContentId) -> Message {
        let mut peers = self.holders(content_id);
        peers.truncate(PEERS_LEN_MAX);
        truncate_to_frame(
            &mut peers,
            PEERS_LEN_MAX,
            LOCATED_HEADER_LEN,
            peer_chunks_len,
        );
        Message::Located { content_id, peers }
    }

    fn file_list(&self) -> Message {
        let mut files: Vec<FileEntry> = self
            .serving
            .held
            .iter()
            .map(|(&content_id, held)| {
                file_entry(content_id, &held.manifest, &self.holders(content_id))
            })
            .collect();
        truncate_to_frame(
            &mut files,
            LIST_LEN_MAX,
            FILE_LIST_HEADER_LEN,
            file_entry_len,
        );
        Message::FileList { files }
    }

    /// This peer (when it listens) and every connected peer that listens, with what this
    /// peer knows each holds.
    fn peer_list(&self) -> Message {
        // Per peer: contents and chunks known held.
        let mut known: BTreeMap<PeerId, (u32, u64)> = BTreeMap::new();
        for download in self.downloads.iter() {
            let Some(scheduler) = download.scheduler.as_ref() else {
                continue;
            };
            for (peer_id, chunks) in scheduler.peers_chunks() {
                if !chunks.is_empty() {
                    let entry = known.entry(peer_id).or_default();
                    entry.0 += 1;
                    entry.1 += u64::from(chunks.count());
                }
            }
        }
        let mut peers = Vec::new();
        if !self.config.listen_addr.is_empty() {
            let held = self.serving.held.values().filter(|h| !h.chunks.is_empty());
            let (files, chunks) = held.fold((0u32, 0u64), |(f, c), h| {
                (f + 1, c + u64::from(h.chunks.count()))
            });
            peers.push(PeerEntry {
                peer_id: self.config.peer_id,
                listen_addr: self.config.listen_addr.clone(),
                files,
                chunks_held: chunks,
                uploaded_bytes: self.uploaded_bytes,
                downloaded_bytes: self.downloaded_bytes,
                last_seen_ms_ago: 0,
            });
        }
        for (peer_id, listen_addr) in self.conns.listening_peers() {
            let (files, chunks_held) = known.get(&peer_id).copied().unwrap_or_default();
            peers.push(PeerEntry {
                peer_id,
                listen_addr,
                files,
                chunks_held,
                uploaded_bytes: 0,
                downloaded_bytes: 0,
                last_seen_ms_ago: 0,
            });
        }
        truncate_to_frame(
            &mut peers,
            LIST_LEN_MAX,
            PEER_LIST_HEADER_LEN,
            peer_entry_len,
        );
        Message::PeerList { peers }
    }
}

/// `content_id`'s entry, counted over the `holders` known.
fn file_entry(content_id: ContentId, manifest: &Manifest, holders: &[PeerChunks]) -> FileEntry {
    let chunk_count = manifest.chunk_count();
    let mut union = ChunkSet::new(chunk_count);
    for holder in holders {
        for index in holder.chunks.iter() {
            union.insert(index);
        }
    }
    let full = holders.iter().filter(|h| h.chunks.is_full()).count();
    FileEntry {
        content_id,
        name: manifest.name.clone(),
        size: manifest.size,
        chunk_size: manifest.chunk_size,
        chunk_count,
        full_sources: u32::try_from(full).unwrap_or(u32::MAX),
        peers: u32::try_from(holders.len()).unwrap_or(u32::MAX),
        complete: !holders.is_empty() && union.is_full(),
        tree: tree_summary(manifest),
    }
}
