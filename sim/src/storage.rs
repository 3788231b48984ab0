//! The storage model: the source file every chunk is checked against, and each peer's disk.
//!
//! A disk records which verified chunks a node has written and whether each is byte-identical
//! to the source; it survives a crash (memory does not). Bytes themselves are never copied
//! per node: the file exists once, and a read hands out a zero-copy slice of it. The
//! checkers compare every stored chunk to the source, so a chunk that passed a hash the
//! peer got wrong is still caught.

use std::collections::BTreeMap;

use bytes::Bytes;
use p2p_core::ChunkSet;
use p2p_core::collection::FileTable;
use p2p_core::ids::ContentId;
use p2p_core::manifest::{ChunkCheck, Manifest, ManifestBuilder};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The file being shared: its bytes, generated from a seed, and its manifest.
pub struct SourceFile {
    pub data: Bytes,
    pub manifest: Manifest,
    pub content_id: ContentId,
    /// A collection's file table (its manifest carries it encoded).
    pub table: Option<FileTable>,
}

impl SourceFile {
    /// A file of `size` pseudo-random bytes drawn from `data_seed`.
    pub fn generate(name: &str, size: u64, chunk_size: u32, data_seed: u64) -> SourceFile {
        SourceFile::build(name, size, chunk_size, data_seed, None)
    }

    /// A collection laid out by `table`: its content stream (each distinct content once)
    /// of pseudo-random bytes drawn from `data_seed`.
    pub fn generate_collection(
        name: &str,
        table: &FileTable,
        chunk_size: u32,
        data_seed: u64,
    ) -> SourceFile {
        let size = crate::collection::stream_len(table);
        SourceFile::build(name, size, chunk_size, data_seed, Some(table))
    }

    fn build(
        name: &str,
        size: u64,
        chunk_size: u32,
        data_seed: u64,
        table: Option<&FileTable>,
    ) -> SourceFile {
        let mut bytes = vec![0u8; size as usize];
        ChaCha8Rng::seed_from_u64(data_seed).fill_bytes(&mut bytes);
        let mut builder = ManifestBuilder::new(name, chunk_size)
            .expect("scenario chunk sizes are within the manifest limits");
        builder.update(&bytes);
        let manifest = match table {
            None => builder.finish(),
            Some(table) => builder.finish_collection(table),
        }
        .expect("scenario files are within the manifest limits");
        let content_id = manifest.content_id();
        SourceFile {
            data: Bytes::from(bytes),
            manifest,
            content_id,
            table: table.cloned(),
        }
    }

    pub fn chunk_count(&self) -> u32 {
        self.manifest.chunk_count()
    }

    /// The bytes of a whole chunk (zero copy).
    pub fn chunk(&self, chunk_index: u32) -> Bytes {
        let start = self.manifest.chunk_offset(chunk_index) as usize;
        let len = self.manifest.chunk_len(chunk_index) as usize;
        self.data.slice(start..start + len)
    }

    /// Bytes `offset..offset+length` of a chunk, or `None` when out of range.
    pub fn block(&self, chunk_index: u32, offset: u32, length: u32) -> Option<Bytes> {
        let chunk_len = self.manifest.chunk_len(chunk_index);
        if chunk_index >= self.chunk_count()
            || u64::from(offset) + u64::from(length) > u64::from(chunk_len)
        {
            return None;
        }
        let start = self.manifest.chunk_offset(chunk_index) as usize + offset as usize;
        Some(self.data.slice(start..start + length as usize))
    }

    /// Whether `data` is exactly chunk `chunk_index`. A slice of the source itself is
    /// recognised without comparing bytes (the common case, and what keeps N=1000 fast).
    pub fn is_chunk(&self, chunk_index: u32, data: &Bytes) -> bool {
        if chunk_index >= self.chunk_count() {
            return false;
        }
        let source = self.chunk(chunk_index);
        if source.len() != data.len() {
            return false;
        }
        source.as_ptr() == data.as_ptr() || source[..] == data[..]
    }
}

/// What verify-and-store decided, and whether what was written is really the source's chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreVerdict {
    /// Hash matched: written. `identical` says whether it equals the source's chunk.
    Written {
        identical: bool,
    },
    Mismatch,
}

/// Does what the runtime does for `StoreChunk`: check the data as the peer asks. Skips the
/// hashing when the data is byte-identical to the source and the check is the source's
/// (it would match by construction).
pub fn verify(
    source: &SourceFile,
    chunk_index: u32,
    check: &ChunkCheck,
    data: &Bytes,
) -> StoreVerdict {
    let identical = source.is_chunk(chunk_index, data);
    let check_is_source = source.manifest.chunk_check(chunk_index).as_ref() == Some(check);
    if identical && check_is_source {
        return StoreVerdict::Written { identical: true };
    }
    if check.matches(data) {
        StoreVerdict::Written { identical }
    } else {
        StoreVerdict::Mismatch
    }
}

/// A node's disk: the chunks it has written, per content, and which of them are wrong.
#[derive(Default)]
pub struct Disk {
    contents: BTreeMap<ContentId, DiskFile>,
}

struct DiskFile {
    written: ChunkSet,
    /// Chunks written whose bytes differ from the source (must stay empty).
    corrupt: ChunkSet,
}

impl Disk {
    /// A disk holding every chunk of `source` (the seeder's).
    pub fn with_full(source: &SourceFile) -> Disk {
        let mut disk = Disk::default();
        let n = source.chunk_count();
        disk.contents.insert(
            source.content_id,
            DiskFile {
                written: ChunkSet::full(n),
                corrupt: ChunkSet::new(n),
            },
        );
        disk
    }

    /// Makes room for a download (`NAME.part`); keeps what is already there.
    pub fn prepare(&mut self, content_id: ContentId, chunk_count: u32) -> ChunkSet {
        self.contents
            .entry(content_id)
            .or_insert_with(|| DiskFile {
                written: ChunkSet::new(chunk_count),
                corrupt: ChunkSet::new(chunk_count),
            })
            .written
            .clone()
    }

    pub fn write(
        &mut self,
        content_id: ContentId,
        chunk_count: u32,
        chunk_index: u32,
        identical: bool,
    ) {
        let file = self.contents.entry(content_id).or_insert_with(|| DiskFile {
            written: ChunkSet::new(chunk_count),
            corrupt: ChunkSet::new(chunk_count),
        });
        file.written.insert(chunk_index);
        if identical {
            file.corrupt.remove(chunk_index);
        } else {
            file.corrupt.insert(chunk_index);
        }
    }

    pub fn written(&self, content_id: ContentId) -> Option<&ChunkSet> {
        self.contents.get(&content_id).map(|f| &f.written)
    }

    pub fn has(&self, content_id: ContentId, chunk_index: u32) -> bool {
        self.written(content_id)
            .is_some_and(|w| w.contains(chunk_index))
    }

    pub fn is_complete(&self, content_id: ContentId) -> bool {
        self.written(content_id).is_some_and(|w| w.is_full())
    }

    /// Chunks written that differ from the source.
    pub fn corrupt_chunks(&self, content_id: ContentId) -> Vec<u32> {
        self.contents
            .get(&content_id)
            .map(|f| f.corrupt.iter().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_accepts_source_and_rejects_flipped() {
        let source = SourceFile::generate("f", 40_000, 16 * 1024, 7);
        let hash = source.manifest.chunk_check(1).unwrap();
        let good = source.chunk(1);
        assert_eq!(
            verify(&source, 1, &hash, &good),
            StoreVerdict::Written { identical: true }
        );
        let mut bad = good.to_vec();
        bad[3] ^= 1;
        assert_eq!(
            verify(&source, 1, &hash, &Bytes::from(bad)),
            StoreVerdict::Mismatch
        );
        // A copy (not a slice of the source) is still recognised as identical.
        let copy = Bytes::from(good.to_vec());
        assert_eq!(
            verify(&source, 1, &hash, &copy),
            StoreVerdict::Written { identical: true }
        );
        assert_eq!(source.chunk(2).len(), 40_000 - 2 * 16 * 1024);
    }
}
