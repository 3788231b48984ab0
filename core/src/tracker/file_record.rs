//! One content of a swarm as the tracker sees it: its manifest, who holds it, and the
//! per-chunk availability counters behind `ListFiles` and `FileEntry`.

use std::collections::BTreeSet;

use crate::chunkset::ChunkSet;
use crate::collection::tree_summary;
use crate::ids::{ContentId, PeerId};
use crate::manifest::Manifest;
use crate::wire::{FileEntry, TreeSummary};

/// A content some live peer of a swarm holds, with counters kept up to date on every change
/// so `ListFiles` never has to union chunk sets.
pub(super) struct FileRecord {
    /// From the first announcer while the record lives: a later peer cannot rename a file
    /// others publish, and the listing does not flicker when peers re-announce.
    pub(super) manifest: Manifest,
    /// Every session holding a chunk, sources or not.
    pub(super) holders: BTreeSet<PeerId>,
    /// Per chunk, how many sources hold it.
    pub(super) availability: Vec<u32>,
    /// Chunks no source holds.
    pub(super) uncovered: u32,
    /// Sources holding at least one chunk.
    pub(super) sources: u32,
    /// Sources holding every chunk.
    pub(super) full_sources: u32,
    /// Origins (URL and validator) this content is known to be the file at. Soft state like
    /// the rest: holders re-send them after a reconnect.
    pub(super) origins: BTreeSet<String>,
    /// A collection's file count and size, for listings; `None` for a single file (or a
    /// table that does not decode: the getters refuse it, the listing shows the stream).
    tree: Option<TreeSummary>,
}

impl FileRecord {
    pub(super) fn new(manifest: Manifest) -> FileRecord {
        let chunk_count = manifest.chunk_count();
        let tree = tree_summary(&manifest);
        FileRecord {
            tree,
            manifest,
            holders: BTreeSet::new(),
            availability: vec![0; chunk_count as usize],
            uncovered: chunk_count,
            sources: 0,
            full_sources: 0,
            origins: BTreeSet::new(),
        }
    }

    /// Bytes charged against `manifest_bytes_max`: the hashes, the name, a collection's
    /// file table and the counters.
    pub(super) fn cost(manifest: &Manifest) -> usize {
        let table = manifest.file_table.as_ref().map_or(0, |table| table.len());
        manifest.chunk_hashes.len() * (32 + size_of::<u32>()) + manifest.name.len() + table
    }

    pub(super) fn add_chunk(&mut self, index: u32) {
        if let Some(count) = self.availability.get_mut(index as usize) {
            if *count == 0 {
                self.uncovered -= 1;
            }
            *count += 1;
        }
    }

    fn remove_chunk(&mut self, index: u32) {
        if let Some(count) = self.availability.get_mut(index as usize)
            && *count > 0
        {
            *count -= 1;
            if *count == 0 {
                self.uncovered += 1;
            }
        }
    }

    pub(super) fn add_source(&mut self, chunks: &ChunkSet) {
        for index in chunks.iter() {
            self.add_chunk(index);
        }
        self.sources += 1;
        if chunks.is_full() {
            self.full_sources += 1;
        }
    }

    pub(super) fn remove_source(&mut self, chunks: &ChunkSet) {
        for index in chunks.iter() {
            self.remove_chunk(index);
        }
        self.sources = self.sources.saturating_sub(1);
        if chunks.is_full() {
            self.full_sources = self.full_sources.saturating_sub(1);
        }
    }

    /// The live sources together hold every chunk (an empty file needs one source).
    pub(super) fn is_complete(&self) -> bool {
        self.uncovered == 0 && self.sources > 0
    }

    pub(super) fn entry(&self, content_id: ContentId) -> FileEntry {
        FileEntry {
            content_id,
            name: self.manifest.name.clone(),
            size: self.manifest.size,
            chunk_size: self.manifest.chunk_size,
            chunk_count: self.manifest.chunk_count(),
            full_sources: self.full_sources,
            peers: self.sources,
            complete: self.is_complete(),
            tree: self.tree,
        }
    }
}

/// Whether a chunk set counts as holding the content: at least one chunk, or the whole of
/// an empty (zero-chunk) file.
pub(super) fn holds_any(chunks: &ChunkSet) -> bool {
    // `is_full` is true of the zero-length set, and implies a chunk for any other.
    !chunks.is_empty() || chunks.is_full()
}
