//! Part of a collection: the paths `get --only` picks, the chunks that carry their bytes,
//! and the contents those chunks touch.
//!
//! Chunks are cut from the content stream without regard to files, so a chunk holding a
//! picked file's bytes may hold other files' bytes too. Those bytes must be on disk as long
//! as the chunk is (to verify it on resume and to serve it), so the part lists every
//! content such a chunk touches; the files not picked among them are removed once the part
//! is complete.

use std::collections::BTreeSet;

use super::{Content, FileTable};
use crate::chunkset::ChunkSet;

/// What a download of part of a collection fetches and keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Indices in [`FileTable::entries`] of the picked paths (files and empty directories).
    pub picked: BTreeSet<usize>,
    /// The chunks holding a byte of a picked file.
    pub chunks: ChunkSet,
    /// Every content one of `chunks` touches, in stream order: the bytes on disk while the
    /// part downloads (picked or not).
    pub contents: Vec<Content>,
}

impl FileTable {
    /// The part of this collection made of the paths `is_picked` accepts, for a stream cut
    /// into `chunk_count` chunks of `chunk_size` bytes (the manifest's).
    pub fn part(
        &self,
        chunk_size: u32,
        chunk_count: u32,
        is_picked: impl Fn(&str) -> bool,
    ) -> Part {
        let chunk_size = u64::from(chunk_size.max(1));
        let chunks_of = |content: &Content| {
            let first = content.offset / chunk_size;
            let last = (content.offset + content.size - 1) / chunk_size;
            // A decoded table lies inside the stream; clamp anyway rather than trust it.
            let end = u64::from(chunk_count.saturating_sub(1));
            (first.min(end) as u32)..=(last.min(end) as u32)
        };
        let picked: BTreeSet<usize> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| is_picked(&entry.path))
            .map(|(index, _)| index)
            .collect();
        let picked_offsets: BTreeSet<u64> = picked
            .iter()
            .map(|&index| &self.entries[index])
            .filter(|entry| entry.kind.is_file() && entry.size > 0)
            .map(|entry| entry.offset)
            .collect();
        let all = self.contents();
        let mut chunks = ChunkSet::new(chunk_count);
        for content in all.iter().filter(|c| picked_offsets.contains(&c.offset)) {
            for chunk in chunks_of(content) {
                chunks.insert(chunk);
            }
        }
        let contents = all
            .into_iter()
            .filter(|content| chunks_of(content).any(|chunk| chunks.contains(chunk)))
            .collect();
        Part {
            picked,
            chunks,
            contents,
        }
    }
}
