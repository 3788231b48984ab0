//! Manifests: what a file is (name, size, chunk size, one hash per chunk) and the content
//! id derived from it.
//!
//! A chunk's hash is SHA-256's chaining value after the file's bytes up to the end of that
//! chunk (the state a streaming SHA-256 of the whole file holds there), and the last
//! chunk's hash is the SHA-256 of the whole file. Each chunk is still checked on its own:
//! from the previous chunk's value (the SHA-256 initial value for chunk 0), compress the
//! chunk and compare. Hashing every chunk this way costs what hashing chunks separately
//! would, and a getter that checked every chunk has, by that computation itself, the
//! file's SHA-256: it prints it without reading the file again, and a publisher cannot
//! make it print anything else. Forging a chunk means a second preimage of SHA-256's
//! compression function over a fixed number of blocks.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use sha2::digest::block_buffer;
use sha2::digest::consts::U64;
use sha2::{Digest, Sha256};

use crate::ids::{ContentId, Sha256Digest, sha256};

/// SHA-256 works on blocks of this many bytes: every chunk but the last is a whole number
/// of them, so a chunk starts exactly where a chaining value is.
pub(crate) const SHA256_BLOCK: u32 = 64;
/// Smallest chunk size a manifest may use.
pub const CHUNK_SIZE_MIN: u32 = 16 * 1024;
/// Largest chunk size a manifest may use.
pub(crate) const CHUNK_SIZE_MAX: u32 = 64 * 1024 * 1024;
/// Chunk size used when the user does not choose one.
pub const CHUNK_SIZE_DEFAULT: u32 = 1024 * 1024;
/// Most chunks one manifest may list: bounds a manifest to 16 MiB of hashes, which is
/// 8 GiB at the smallest chunk size and 32 TiB at the largest.
pub(crate) const CHUNK_COUNT_MAX: u32 = 512 * 1024;
/// Longest display name, in bytes of UTF-8.
pub(crate) const NAME_LEN_MAX: usize = 255;

/// Domain separation for the content id, so a manifest hash can never collide with the hash
/// of some other structure that happens to share its bytes.
/// Version 2: chunk hashes are chaining values (version 1 hashed each chunk on its own).
const CONTENT_ID_DOMAIN: &[u8] = b"p2p manifest v2\0";
/// Domain of a collection's content id: never equal to a single file's, whatever the bytes.
const COLLECTION_ID_DOMAIN: &[u8] = b"p2p collection v1\0";

/// SHA-256's initial chaining value (FIPS 180-4, section 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// What a file is: enough to verify every chunk of it and to name it.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The display name the publisher gave. Untrusted: sanitise before using as a path.
    pub name: String,
    /// File size in bytes.
    pub size: u64,
    /// Every chunk but the last is exactly this long.
    pub chunk_size: u32,
    /// For each chunk, SHA-256's chaining value after it; for the last, the file's SHA-256.
    /// Shared: a manifest is cloned into every reply that carries it, and a flood of
    /// requests for a large one must not copy it each time.
    pub chunk_hashes: Arc<[Sha256Digest]>,
    /// For a collection (a directory, or several files), its encoded file table (see
    /// `collection`): the chunks are then those of its content stream. `None` for a single
    /// file. Untrusted: only `FileTable::decode` turns it into paths.
    pub file_table: Option<Bytes>,
}

/// Why a manifest is unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestError {
    ChunkSize(u32),
    TooManyChunks(u64),
    ChunkCount {
        expected: u64,
        found: usize,
    },
    NameTooLong(usize),
    FileTableTooLong(usize),
    Collection(crate::collection::CollectionError),
    IdMismatch {
        expected: ContentId,
        found: ContentId,
    },
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::ChunkSize(size) => write!(
                f,
                "chunk size {size} is not a multiple of {SHA256_BLOCK} in {CHUNK_SIZE_MIN}..={CHUNK_SIZE_MAX} bytes"
            ),
            ManifestError::TooManyChunks(n) => {
                write!(f, "{n} chunks is more than the limit of {CHUNK_COUNT_MAX}")
            }
            ManifestError::ChunkCount { expected, found } => {
                write!(
                    f,
                    "the size needs {expected} chunk hashes but {found} are listed"
                )
            }
            ManifestError::NameTooLong(len) => {
                write!(f, "name is {len} bytes long, more than {NAME_LEN_MAX}")
            }
            ManifestError::FileTableTooLong(len) => write!(
                f,
                "file table is {len} bytes long, more than {}",
                crate::collection::FILE_TABLE_LEN_MAX
            ),
            ManifestError::Collection(e) => write!(f, "{e}"),
            ManifestError::IdMismatch { expected, found } => {
                write!(
                    f,
                    "manifest hashes to {found}, not the requested {expected}"
                )
            }
        }
    }
}

impl std::error::Error for ManifestError {}

/// Checks a chunk size against the limits.
pub fn check_chunk_size(chunk_size: u32) -> Result<(), ManifestError> {
    if (CHUNK_SIZE_MIN..=CHUNK_SIZE_MAX).contains(&chunk_size)
        && chunk_size.is_multiple_of(SHA256_BLOCK)
    {
        Ok(())
    } else {
        Err(ManifestError::ChunkSize(chunk_size))
    }
}

/// Number of chunks a file of `size` bytes has at `chunk_size`.
pub(crate) fn chunk_count_for(size: u64, chunk_size: u32) -> u64 {
    size.div_ceil(u64::from(chunk_size.max(1)))
}

impl Manifest {
    /// Number of chunks.
    pub fn chunk_count(&self) -> u32 {
        // Validated manifests hold at most CHUNK_COUNT_MAX hashes.
        self.chunk_hashes.len() as u32
    }

    /// Length of chunk `index` (the last one may be short). Zero past the end.
    pub fn chunk_len(&self, index: u32) -> u32 {
        let start = u64::from(index) * u64::from(self.chunk_size);
        if start >= self.size {
            return 0;
        }
        (self.size - start).min(u64::from(self.chunk_size)) as u32
    }

    /// Byte offset of chunk `index` in the file.
    pub fn chunk_offset(&self, index: u32) -> u64 {
        u64::from(index) * u64::from(self.chunk_size)
    }

    /// Checks every structural rule: chunk size in range, hash count matching the size,
    /// bounded counts and name.
    pub fn validate(&self) -> Result<(), ManifestError> {
        check_chunk_size(self.chunk_size)?;
        if self.name.len() > NAME_LEN_MAX {
            return Err(ManifestError::NameTooLong(self.name.len()));
        }
        // Only the length here: the paths are checked where they are used (see
        // `collection`), so a getter can say why it refuses a collection.
        if let Some(table) = &self.file_table
            && table.len() > crate::collection::FILE_TABLE_LEN_MAX
        {
            return Err(ManifestError::FileTableTooLong(table.len()));
        }
        let expected = chunk_count_for(self.size, self.chunk_size);
        if expected > u64::from(CHUNK_COUNT_MAX) {
            return Err(ManifestError::TooManyChunks(expected));
        }
        if expected != self.chunk_hashes.len() as u64 {
            return Err(ManifestError::ChunkCount {
                expected,
                found: self.chunk_hashes.len(),
            });
        }
        Ok(())
    }

    /// How to check chunk `index` (`None` past the end).
    pub fn chunk_check(&self, index: u32) -> Option<ChunkCheck> {
        let expected = *self.chunk_hashes.get(index as usize)?;
        let start = match index.checked_sub(1) {
            Some(previous) => self.chunk_hashes[previous as usize],
            None => state_bytes(&SHA256_IV),
        };
        let last = index as usize + 1 == self.chunk_hashes.len();
        Some(ChunkCheck {
            start,
            len: self.chunk_len(index),
            file_size: last.then_some(self.size),
            expected,
        })
    }

    /// Which chunks to fetch from an origin to check that this manifest describes the file
    /// there (a URL-to-content hint from the tracker is only a hint): the last chunk, whose
    /// check also covers the file's length and SHA-256, and `count - 1` others drawn at
    /// random with `seed`, distinct, in order. All of them when the file has no more.
    ///
    /// Content wholly unlike the origin's fails on any chunk; content differing in a share
    /// g of its chunks passes with probability about (1 - g)^count. Only `--sha256` (the
    /// whole file's hash) excludes every difference.
    pub fn chunks_to_check(&self, count: u32, seed: u64) -> Vec<u32> {
        use rand::{Rng, SeedableRng};
        let chunks = self.chunk_count();
        let Some(last) = chunks.checked_sub(1) else {
            return Vec::new();
        };
        let others = count.saturating_sub(1).min(last) as usize;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut picked = std::collections::BTreeSet::new();
        if others == last as usize {
            picked.extend(0..last);
        }
        // Fewer than all: distinct draws end quickly (at most half are taken when it matters).
        while picked.len() < others {
            picked.insert(rng.random_range(0..last));
        }
        let mut picked: Vec<u32> = picked.into_iter().collect();
        picked.push(last);
        picked
    }

    /// SHA-256 of the whole file: the last chunk's hash. A download that checked every
    /// chunk has computed exactly this over the bytes it wrote.
    pub fn file_sha256(&self) -> Sha256Digest {
        self.chunk_hashes
            .last()
            .copied()
            .unwrap_or_else(|| sha256(b""))
    }

    /// SHA-256 over the canonical encoding of size, chunk size and chunk hashes, and for a
    /// collection its file table (paths, kinds, sizes, places in the stream) too.
    pub fn content_id(&self) -> ContentId {
        let mut hasher = Sha256::new();
        match &self.file_table {
            None => hasher.update(CONTENT_ID_DOMAIN),
            Some(table) => {
                hasher.update(COLLECTION_ID_DOMAIN);
                hasher.update((table.len() as u64).to_be_bytes());
                hasher.update(table);
            }
        }
        hasher.update(self.size.to_be_bytes());
        hasher.update(self.chunk_size.to_be_bytes());
        hasher.update((self.chunk_hashes.len() as u64).to_be_bytes());
        for hash in self.chunk_hashes.iter() {
            hasher.update(hash);
        }
        ContentId(hasher.finalize().into())
    }

    /// Whether this is a collection (a directory, or several files).
    pub fn is_collection(&self) -> bool {
        self.file_table.is_some()
    }

    /// Validates the manifest and checks that it is the one `expected` names. Every manifest
    /// received from anyone goes through this before use.
    pub fn verify(&self, expected: ContentId) -> Result<(), ManifestError> {
        self.validate()?;
        let found = self.content_id();
        if found != expected {
            return Err(ManifestError::IdMismatch { expected, found });
        }
        Ok(())
    }
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("chunk_size", &self.chunk_size)
            .field("chunks", &self.chunk_hashes.len())
            .field("file_table_len", &self.file_table.as_ref().map(|t| t.len()))
            .finish()
    }
}

/// Everything needed to check one chunk on its own, wherever it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkCheck {
    /// Chaining value before the chunk.
    start: Sha256Digest,
    len: u32,
    /// Set for the last chunk: SHA-256 is finished there, with the file's length.
    file_size: Option<u64>,
    /// The manifest's hash of the chunk.
    pub expected: Sha256Digest,
}

impl ChunkCheck {
    /// Whether `data` is the chunk the manifest describes.
    pub fn matches(&self, data: &[u8]) -> bool {
        if data.len() != self.len as usize {
            return false;
        }
        let mut state = state_words(&self.start);
        let found = match self.file_size {
            Some(size) => finish(state, data, size),
            None if data.len().is_multiple_of(SHA256_BLOCK as usize) => {
                compress_blocks(&mut state, data);
                state_bytes(&state)
            }
            None => return false,
        };
        found == self.expected
    }
}

fn state_bytes(state: &[u32; 8]) -> Sha256Digest {
    let mut out = [0u8; 32];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn state_words(bytes: &Sha256Digest) -> [u32; 8] {
    let mut state = [0u32; 8];
    for (word, bytes) in state.iter_mut().zip(bytes.chunks_exact(4)) {
        *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    state
}

/// Bytes not yet compressed: less than a block.
type BlockBuffer = block_buffer::BlockBuffer<U64, block_buffer::Eager>;

/// SHA-256's compression over `data`, a whole number of blocks.
fn compress_blocks(state: &mut [u32; 8], data: &[u8]) {
    debug_assert!(data.len().is_multiple_of(SHA256_BLOCK as usize));
    // The buffer hands whole blocks over in place, and none are left in it.
    BlockBuffer::default().digest_blocks(data, |blocks| sha2::compress256(state, blocks));
}

/// Finishes SHA-256 of a message whose bytes before `tail` (a whole number of blocks) left
/// `state`, and whose length is `total_len`: FIPS 180-4's padding, then the state as the digest.
fn finish(mut state: [u32; 8], tail: &[u8], total_len: u64) -> Sha256Digest {
    let block = SHA256_BLOCK as usize;
    let whole = tail.len() - tail.len() % block;
    compress_blocks(&mut state, &tail[..whole]);
    let rest = &tail[whole..];
    let mut padded = [0u8; 128];
    padded[..rest.len()].copy_from_slice(rest);
    padded[rest.len()] = 0x80;
    // The length (in bits) takes the last 8 bytes: a second block when they do not fit.
    let end = if rest.len() < block - 8 {
        block
    } else {
        2 * block
    };
    padded[end - 8..end].copy_from_slice(&total_len.wrapping_mul(8).to_be_bytes());
    compress_blocks(&mut state, &padded[..end]);
    state_bytes(&state)
}

/// Builds a manifest from a stream of bytes fed in pieces of any size. Memory is one
/// SHA-256 state plus 32 bytes per finished chunk: the file is never held.
pub struct ManifestBuilder {
    name: String,
    chunk_size: u32,
    size: u64,
    filled_in_chunk: u32,
    state: [u32; 8],
    pending: BlockBuffer,
    chunk_hashes: Vec<Sha256Digest>,
}

impl ManifestBuilder {
    pub fn new(name: impl Into<String>, chunk_size: u32) -> Result<ManifestBuilder, ManifestError> {
        check_chunk_size(chunk_size)?;
        let name = name.into();
        if name.len() > NAME_LEN_MAX {
            return Err(ManifestError::NameTooLong(name.len()));
        }
        Ok(ManifestBuilder {
            name,
            chunk_size,
            size: 0,
            filled_in_chunk: 0,
            state: SHA256_IV,
            pending: BlockBuffer::default(),
            chunk_hashes: Vec::new(),
        })
    }

    /// Feeds the next bytes of the file.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            // Never past the end of a chunk, so its chaining value can be taken there.
            let room = (self.chunk_size - self.filled_in_chunk) as usize;
            let (now, rest) = data.split_at(room.min(data.len()));
            self.compress(now);
            self.filled_in_chunk += now.len() as u32;
            self.size += now.len() as u64;
            data = rest;
            if self.filled_in_chunk == self.chunk_size {
                // A chunk is whole blocks: nothing is pending here.
                self.chunk_hashes.push(state_bytes(&self.state));
                self.filled_in_chunk = 0;
            }
        }
    }

    fn compress(&mut self, data: &[u8]) {
        let state = &mut self.state;
        self.pending
            .digest_blocks(data, |blocks| sha2::compress256(state, blocks));
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Finishes a collection's manifest: the bytes fed were the content stream `table` lays
    /// out (its distinct contents, in order). Checked as a getter will check it.
    pub fn finish_collection(
        self,
        table: &crate::collection::FileTable,
    ) -> Result<Manifest, ManifestError> {
        let mut manifest = self.finish()?;
        let encoded = table.encode();
        crate::collection::FileTable::decode(&encoded, manifest.size)
            .map_err(ManifestError::Collection)?;
        manifest.file_table = Some(Bytes::from(encoded));
        manifest.validate()?;
        Ok(manifest)
    }

    /// Finishes the last partial chunk and checks the result.
    pub fn finish(mut self) -> Result<Manifest, ManifestError> {
        let file_sha256 = finish(self.state, self.pending.get_data(), self.size);
        if self.filled_in_chunk > 0 {
            self.chunk_hashes.push(file_sha256);
        } else if let Some(last) = self.chunk_hashes.last_mut() {
            // The file ends with a whole chunk: its hash is the finished SHA-256 too.
            *last = file_sha256;
        }
        let manifest = Manifest {
            name: self.name,
            size: self.size,
            chunk_size: self.chunk_size,
            chunk_hashes: self.chunk_hashes.into(),
            file_table: None,
        };
        manifest.validate()?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::sha256;

    #[test]
    fn chunks_to_check_are_distinct_include_the_last_and_follow_the_seed() {
        let mut builder = ManifestBuilder::new("f", CHUNK_SIZE_MIN).unwrap();
        builder.update(&data(CHUNK_SIZE_MIN as usize * 50 + 7));
        let manifest = builder.finish().unwrap();
        let picked = manifest.chunks_to_check(4, 9);
        assert_eq!(picked.len(), 4);
        assert_eq!(*picked.last().unwrap(), 50);
        assert!(picked.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(picked, manifest.chunks_to_check(4, 9));
        assert_ne!(picked, manifest.chunks_to_check(4, 10));
        // A file of two chunks: both.
        let mut builder = ManifestBuilder::new("f", CHUNK_SIZE_MIN).unwrap();
        builder.update(&data(CHUNK_SIZE_MIN as usize + 1));
        assert_eq!(builder.finish().unwrap().chunks_to_check(4, 1), vec![0, 1]);
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn last_hash_is_the_file_sha256_for_any_length_and_split() {
        let cs = CHUNK_SIZE_MIN as usize;
        for len in [
            0,
            1,
            55,
            56,
            63,
            64,
            65,
            119,
            120,
            cs - 1,
            cs,
            cs + 56,
            3 * cs,
            3 * cs + 100,
        ] {
            let bytes = data(len);
            for split in [1usize, 7, 64, 4096, 50000] {
                let mut builder = ManifestBuilder::new("f", CHUNK_SIZE_MIN).unwrap();
                for piece in bytes.chunks(split) {
                    builder.update(piece);
                }
                let manifest = builder.finish().unwrap();
                assert_eq!(manifest.size, len as u64);
                assert_eq!(manifest.chunk_count() as usize, len.div_ceil(cs));
                assert_eq!(
                    manifest.file_sha256(),
                    sha256(&bytes),
                    "len {len} split {split}"
                );
            }
        }
    }

    #[test]
    fn every_chunk_checks_on_its_own_and_nothing_else_does() {
        let cs = CHUNK_SIZE_MIN as usize;
        for len in [cs, 3 * cs, 3 * cs + 100, 2 * cs + 60] {
            let bytes = data(len);
            let mut builder = ManifestBuilder::new("f", CHUNK_SIZE_MIN).unwrap();
            builder.update(&bytes);
            let manifest = builder.finish().unwrap();
            let chunks: Vec<&[u8]> = bytes.chunks(cs).collect();
            for (index, chunk) in chunks.iter().enumerate() {
                let check = manifest.chunk_check(index as u32).unwrap();
                assert!(check.matches(chunk), "len {len} chunk {index}");
                let mut bad = chunk.to_vec();
                bad[chunk.len() / 2] ^= 1;
                assert!(!check.matches(&bad));
                assert!(!check.matches(&chunk[..chunk.len() - 1]));
                for (other, other_chunk) in chunks.iter().enumerate() {
                    if other_chunk != chunk {
                        assert!(
                            !check.matches(other_chunk),
                            "chunk {other} passes as {index}"
                        );
                    }
                }
            }
            assert!(manifest.chunk_check(chunks.len() as u32).is_none());
        }
    }

    #[test]
    fn content_id_ignores_name_and_detects_changes() {
        let mut a = ManifestBuilder::new("a", CHUNK_SIZE_MIN).unwrap();
        a.update(&data(40_000));
        let a = a.finish().unwrap();
        let mut b = a.clone();
        b.name = "b".into();
        assert_eq!(a.content_id(), b.content_id());
        assert!(b.verify(a.content_id()).is_ok());
        let mut hashes = b.chunk_hashes.to_vec();
        hashes[0][0] ^= 1;
        b.chunk_hashes = hashes.into();
        assert!(matches!(
            b.verify(a.content_id()),
            Err(ManifestError::IdMismatch { .. })
        ));
    }

    #[test]
    fn validate_rejects_bad_shapes() {
        assert!(ManifestBuilder::new("x", 1000).is_err());
        assert!(ManifestBuilder::new("x", CHUNK_SIZE_MAX * 2).is_err());
        assert!(ManifestBuilder::new("x", CHUNK_SIZE_MIN + 32).is_err());
        assert!(ManifestBuilder::new("x", CHUNK_SIZE_MIN + 64).is_ok());
        let bad = Manifest {
            name: "x".into(),
            size: 100,
            chunk_size: CHUNK_SIZE_MIN,
            chunk_hashes: Arc::new([]),
            file_table: None,
        };
        assert!(matches!(
            bad.validate(),
            Err(ManifestError::ChunkCount { .. })
        ));
        let empty = ManifestBuilder::new("e", CHUNK_SIZE_MIN)
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(empty.chunk_count(), 0);
    }
}
