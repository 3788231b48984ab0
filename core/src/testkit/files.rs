//! Test files: bytes that differ from chunk to chunk (so a chunk served in the wrong place
//! fails its hash) with the manifest describing them.

use crate::ids::ContentId;
use crate::manifest::{Manifest, ManifestBuilder};

/// A file's bytes, its manifest and its content id.
pub struct TestFile {
    pub data: Vec<u8>,
    pub manifest: Manifest,
    pub id: ContentId,
}

impl TestFile {
    /// Hashes `data` into a manifest named `name` with chunks of `chunk_size` bytes.
    /// Panics on a chunk size the manifest refuses: a test's own mistake.
    pub fn new(name: &str, chunk_size: u32, data: Vec<u8>) -> TestFile {
        let mut builder = ManifestBuilder::new(name, chunk_size).expect("a valid chunk size");
        builder.update(&data);
        let manifest = builder
            .finish()
            .expect("a file within the manifest's limits");
        let id = manifest.content_id();
        TestFile { data, manifest, id }
    }

    /// The bytes of chunk `index`.
    pub fn chunk(&self, index: u32) -> &[u8] {
        let start = self.manifest.chunk_offset(index) as usize;
        &self.data[start..start + self.manifest.chunk_len(index) as usize]
    }
}

/// Multiplier of the byte pattern (Knuth's multiplicative hash): neighbouring offsets get
/// unrelated bytes.
const PATTERN_MULTIPLIER: u64 = 2_654_435_761;
/// Bits dropped from the product, so the byte comes from its middle rather than its low
/// bits, which would repeat with a short period.
const PATTERN_SHIFT: u32 = 7;

/// `len` bytes of a pattern that never repeats within a chunk; `salt` makes another file.
pub fn file_bytes(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(PATTERN_MULTIPLIER) >> PATTERN_SHIFT) as u8 ^ salt)
        .collect()
}
