//! Chunks in transit: each is requested from one peer in blocks of at most
//! [`BLOCK_LEN_MAX`] and assembled here until whole, when it goes to the driver to verify
//! and store. In endgame one chunk may be assembled from two peers at once.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

use crate::ids::PeerId;
use crate::manifest::Manifest;
use crate::wire::BLOCK_LEN_MAX;

/// A chunk being received from one peer, block by block.
pub struct ChunkAssembly {
    /// Blocks requested and not yet received, by offset within the chunk.
    pub pending_blocks: BTreeMap<u32, u32>,
    /// The chunk's bytes as they arrive. A chunk of one block skips this (zero copy).
    pub buffer: Option<BytesMut>,
    /// The data of a single-block chunk, kept as the received `Bytes`.
    pub single_block: Option<Bytes>,
}

/// Why a received block was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockMismatch {
    /// Not requested from this peer, or already cancelled: harmless, dropped.
    NotRequested,
    /// Requested, but of another length: the peer is broken or lying.
    WrongLength,
}

/// Chunks in transit, by (chunk, peer).
#[derive(Default)]
pub struct Assemblies {
    by_chunk_and_peer: BTreeMap<(u32, PeerId), ChunkAssembly>,
}

impl Assemblies {
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
    pub fn begin(
        &mut self,
        manifest: &Manifest,
        chunk_index: u32,
        peer: PeerId,
    ) -> Vec<(u32, u32)> {
        let blocks = Self::blocks_of(manifest, chunk_index);
        let buffer =
            (blocks.len() > 1).then(|| BytesMut::zeroed(manifest.chunk_len(chunk_index) as usize));
        self.by_chunk_and_peer.insert(
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
    /// more blocks are due, `Err` when nothing of ours matches it (a block we never asked
    /// for, or cancelled: dropped without blame) or its length is wrong.
    pub fn accept(
        &mut self,
        chunk_index: u32,
        peer: PeerId,
        offset: u32,
        data: Bytes,
    ) -> Result<Option<Bytes>, BlockMismatch> {
        let Some(assembly) = self.by_chunk_and_peer.get_mut(&(chunk_index, peer)) else {
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
        let Some(assembly) = self.by_chunk_and_peer.remove(&(chunk_index, peer)) else {
            // Present: looked up above.
            return Err(BlockMismatch::NotRequested);
        };
        Ok(Some(match assembly.buffer {
            Some(buffer) => buffer.freeze(),
            None => assembly.single_block.unwrap_or_default(),
        }))
    }

    /// Drops a chunk in transit from `peer`; returns the blocks that were still pending, to
    /// cancel.
    pub fn abandon_chunk(&mut self, chunk_index: u32, peer: PeerId) -> Vec<(u32, u32)> {
        self.by_chunk_and_peer
            .remove(&(chunk_index, peer))
            .map(|a| a.pending_blocks.into_iter().collect())
            .unwrap_or_default()
    }

    /// Drops every chunk in transit from `peer` (it disconnected).
    pub fn abandon_peer(&mut self, peer: PeerId) {
        self.by_chunk_and_peer.retain(|(_, p), _| *p != peer);
    }

    /// Every (chunk, peer) in transit.
    pub fn in_transit(&self) -> Vec<(u32, PeerId)> {
        self.by_chunk_and_peer.keys().copied().collect()
    }

    pub fn clear(&mut self) {
        self.by_chunk_and_peer.clear();
    }
}
