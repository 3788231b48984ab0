//! A node's disk in memory: the verified chunks it holds, by content and index.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::chunkset::ChunkSet;
use crate::ids::ContentId;
use crate::manifest::Manifest;

/// Verified chunks held by one node.
#[derive(Default)]
pub struct MemoryDisk {
    chunks: BTreeMap<(ContentId, u32), Bytes>,
}

impl MemoryDisk {
    /// Puts a whole file on the disk, chunk by chunk, as a publisher has it.
    pub fn put_file(&mut self, manifest: &Manifest, data: &[u8]) {
        let content_id = manifest.content_id();
        for (index, chunk) in data.chunks(manifest.chunk_size as usize).enumerate() {
            self.chunks
                .insert((content_id, index as u32), Bytes::copy_from_slice(chunk));
        }
    }

    /// Stores one verified chunk.
    pub fn put_chunk(&mut self, content_id: ContentId, chunk_index: u32, data: Bytes) {
        self.chunks.insert((content_id, chunk_index), data);
    }

    /// `length` bytes at `offset` of a chunk, as a `ReadChunk` asks; an error when the
    /// chunk is not on the disk.
    pub fn read(
        &self,
        content_id: ContentId,
        chunk_index: u32,
        offset: u32,
        length: u32,
    ) -> Result<Bytes, String> {
        self.chunks
            .get(&(content_id, chunk_index))
            .map(|chunk| chunk.slice(offset as usize..(offset + length) as usize))
            .ok_or_else(|| "not on disk".to_string())
    }

    /// Which of a content's `chunk_count` chunks are on the disk, as `PrepareDownload` asks.
    pub fn held(&self, content_id: ContentId, chunk_count: u32) -> ChunkSet {
        let mut have = ChunkSet::new(chunk_count);
        for (cid, index) in self.chunks.keys() {
            if *cid == content_id {
                have.insert(*index);
            }
        }
        have
    }

    /// The first `chunk_count` chunks of a content, concatenated: the file as written.
    /// Panics when one is missing: the caller expects a complete file.
    pub fn file(&self, content_id: ContentId, chunk_count: u32) -> Vec<u8> {
        (0..chunk_count)
            .flat_map(|i| self.chunks[&(content_id, i)].to_vec())
            .collect()
    }
}
