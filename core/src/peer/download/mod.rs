//! One download's state: the manifest (once verified), the scheduler, and the blocks of
//! chunks being received, assembled until the chunk can be verified.

pub mod scheduler;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use self::scheduler::{Scheduler, SchedulerConfig};
use crate::chunkset::ChunkSet;
use crate::ids::{ContentId, PeerId};
use crate::manifest::Manifest;
use crate::time::Instant;
use crate::wire::BLOCK_LEN_MAX;

/// Where a download stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownloadPhase {
    /// Asking the tracker and peers for the manifest.
    AwaitingManifest,
    /// The driver is preparing `NAME.part` and checking what is already on disk.
    Preparing,
    /// Requesting chunks.
    Active,
    /// Every chunk verified and stored.
    Complete,
    /// Given up; the reason was reported.
    Failed,
}

/// A chunk being received from one peer, block by block.
pub struct ChunkAssembly {
    /// Blocks requested and not yet received, by offset within the chunk.
    pub pending_blocks: BTreeMap<u32, u32>,
    /// The chunk's bytes as they arrive. A chunk of one block skips this (zero copy).
    pub buffer: Option<BytesMut>,
    /// The data of a single-block chunk, kept as the received `Bytes`.
    pub single_block: Option<Bytes>,
}

/// One download.
pub struct Download {
    pub content_id: ContentId,
    pub phase: DownloadPhase,
    pub manifest: Option<Manifest>,
    pub scheduler: Option<Scheduler>,
    /// Peers known (from the tracker or peer exchange) to hold some of the content.
    pub candidates: BTreeMap<PeerId, String>,
    /// Bitfields that arrived before the manifest, applied once it is verified.
    pub early_bitfields: BTreeMap<PeerId, ChunkSet>,
    /// Chunks in transit, by (chunk, peer): in endgame one chunk may come from two peers.
    pub assemblies: BTreeMap<(u32, PeerId), ChunkAssembly>,
    pub started_at: Instant,
    /// When the next `Locate` goes to the tracker.
    pub next_locate_at: Instant,
    /// Locates sent so far: early ones come quickly (a crowd that arrives together finds
    /// itself fast), later ones at the configured interval.
    pub locates_sent: u32,
    /// Since when some needed chunk (or the manifest) has had no source.
    pub stalled_since: Option<Instant>,
    /// The earliest time connected peers may be asked for their bitfields again.
    pub next_resync_at: Instant,
}

impl Download {
    pub fn new(now: Instant, content_id: ContentId) -> Download {
        Download {
            content_id,
            phase: DownloadPhase::AwaitingManifest,
            manifest: None,
            scheduler: None,
            candidates: BTreeMap::new(),
            early_bitfields: BTreeMap::new(),
            assemblies: BTreeMap::new(),
            started_at: now,
            next_locate_at: now,
            locates_sent: 0,
            stalled_since: None,
            next_resync_at: now,
        }
    }

    /// Starts scheduling once the driver says which chunks are already on disk.
    pub fn activate(&mut self, config: SchedulerConfig, have: ChunkSet, rng_seed: u64) {
        let Some(manifest) = &self.manifest else {
            return;
        };
        let mut scheduler = Scheduler::new(
            config,
            manifest.chunk_count(),
            manifest.chunk_size,
            have,
            rng_seed,
        );
        for (peer, chunks) in std::mem::take(&mut self.early_bitfields) {
            scheduler.add_peer(peer, chunks);
        }
        self.scheduler = Some(scheduler);
        self.phase = DownloadPhase::Active;
    }

    /// The blocks (offset, length) chunk `chunk_index` is requested in.
    pub fn blocks_of(manifest: &Manifest, chunk_index: u32) -> Vec<(u32, u32)> {
        let chunk_len = manifest.chunk_len(chunk_index);
        let mut blocks = Vec::new();
        let mut offset = 0;
        while offset < chunk_len {
            let length = (chunk_len - offset).min(BLOCK_LEN_MAX);
            blocks.push((offset, length));
            offset += length;
        }
        blocks
    }

    /// Starts assembling `chunk_index` from `peer`; returns the blocks to request.
    pub fn begin_chunk(&mut self, chunk_index: u32, peer: PeerId) -> Vec<(u32, u32)> {
        let Some(manifest) = &self.manifest else {
            return Vec::new();
        };
        let blocks = Self::blocks_of(manifest, chunk_index);
        let buffer =
            (blocks.len() > 1).then(|| BytesMut::zeroed(manifest.chunk_len(chunk_index) as usize));
        self.assemblies.insert(
            (chunk_index, peer),
            ChunkAssembly {
                pending_blocks: blocks.iter().copied().collect(),
                buffer,
                single_block: None,
            },
        );
        blocks
    }

    /// Takes a received block. `Ok(Some(data))` when it completes the chunk, `Ok(None)` when
    /// more blocks are due, `Err(())` when nothing of ours matches it (a block we never asked
    /// for, or cancelled: dropped without blame) .
    pub fn accept_block(
        &mut self,
        chunk_index: u32,
        peer: PeerId,
        offset: u32,
        data: Bytes,
    ) -> Result<Option<Bytes>, BlockMismatch> {
        let Some(assembly) = self.assemblies.get_mut(&(chunk_index, peer)) else {
            return Err(BlockMismatch::NotRequested);
        };
        let Some(&expected_len) = assembly.pending_blocks.get(&offset) else {
            return Err(BlockMismatch::NotRequested);
        };
        if data.len() != expected_len as usize {
            return Err(BlockMismatch::WrongLength);
        }
        assembly.pending_blocks.remove(&offset);
        match &mut assembly.buffer {
            Some(buffer) => {
                let start = offset as usize;
                buffer[start..start + data.len()].copy_from_slice(&data);
            }
            None => assembly.single_block = Some(data),
        }
        if !assembly.pending_blocks.is_empty() {
            return Ok(None);
        }
        // Present: looked up above.
        let assembly = self.assemblies.remove(&(chunk_index, peer)).unwrap();
        Ok(Some(match assembly.buffer {
            Some(buffer) => buffer.freeze(),
            None => assembly.single_block.unwrap_or_default(),
        }))
    }

    /// Drops a chunk in transit from `peer`; returns the blocks that were still pending, to
    /// cancel.
    pub fn abandon_chunk(&mut self, chunk_index: u32, peer: PeerId) -> Vec<(u32, u32)> {
        self.assemblies
            .remove(&(chunk_index, peer))
            .map(|a| a.pending_blocks.into_iter().collect())
            .unwrap_or_default()
    }

    /// Drops every chunk in transit from `peer` (it disconnected).
    pub fn abandon_peer(&mut self, peer: PeerId) {
        self.assemblies.retain(|(_, p), _| *p != peer);
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, DownloadPhase::Complete | DownloadPhase::Failed)
    }

    /// How long the download has had no source for something it needs.
    pub fn stalled_for(&self, now: Instant) -> Duration {
        self.stalled_since
            .map(|since| now.saturating_since(since))
            .unwrap_or_default()
    }
}

/// Why a received block was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockMismatch {
    /// Not requested from this peer, or already cancelled: harmless, dropped.
    NotRequested,
    /// Requested, but of another length: the peer is broken or lying.
    WrongLength,
}
