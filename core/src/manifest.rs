//! Manifests: what a file is (name, size, chunk size, one SHA-256 per chunk) and the
//! content id derived from it.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::ids::{ContentId, Sha256Digest};

/// Smallest chunk size a manifest may use.
pub const CHUNK_SIZE_MIN: u32 = 16 * 1024;
/// Largest chunk size a manifest may use.
pub const CHUNK_SIZE_MAX: u32 = 64 * 1024 * 1024;
/// Chunk size used when the user does not choose one.
pub const CHUNK_SIZE_DEFAULT: u32 = 1024 * 1024;
/// Most chunks one manifest may list: bounds a manifest to 16 MiB of hashes, which is
/// 8 GiB at the smallest chunk size and 32 TiB at the largest.
pub const CHUNK_COUNT_MAX: u32 = 512 * 1024;
/// Longest display name, in bytes of UTF-8.
pub const NAME_LEN_MAX: usize = 255;

/// Domain separation for the content id, so a manifest hash can never collide with the hash
/// of some other structure that happens to share its bytes.
const CONTENT_ID_DOMAIN: &[u8] = b"p2p manifest v1\0";

/// What a file is: enough to verify every chunk of it and to name it.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The display name the publisher gave. Untrusted: sanitise before using as a path.
    pub name: String,
    /// File size in bytes.
    pub size: u64,
    /// Every chunk but the last is exactly this long.
    pub chunk_size: u32,
    /// SHA-256 of each chunk, in order.
    pub chunk_hashes: Vec<Sha256Digest>,
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
                "chunk size {size} is outside {CHUNK_SIZE_MIN}..={CHUNK_SIZE_MAX} bytes"
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
    if (CHUNK_SIZE_MIN..=CHUNK_SIZE_MAX).contains(&chunk_size) {
        Ok(())
    } else {
        Err(ManifestError::ChunkSize(chunk_size))
    }
}

/// Number of chunks a file of `size` bytes has at `chunk_size`.
pub fn chunk_count_for(size: u64, chunk_size: u32) -> u64 {
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

    /// SHA-256 over the canonical encoding of size, chunk size and chunk hashes.
    pub fn content_id(&self) -> ContentId {
        let mut hasher = Sha256::new();
        hasher.update(CONTENT_ID_DOMAIN);
        hasher.update(self.size.to_be_bytes());
        hasher.update(self.chunk_size.to_be_bytes());
        hasher.update((self.chunk_hashes.len() as u64).to_be_bytes());
        for hash in &self.chunk_hashes {
            hasher.update(hash);
        }
        ContentId(hasher.finalize().into())
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
            .finish()
    }
}

/// Builds a manifest from a stream of bytes fed in pieces of any size. Memory is one
/// chunk-hasher state plus 32 bytes per finished chunk: the file is never held.
pub struct ManifestBuilder {
    name: String,
    chunk_size: u32,
    size: u64,
    filled_in_chunk: u32,
    hasher: Sha256,
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
            hasher: Sha256::new(),
            chunk_hashes: Vec::new(),
        })
    }

    /// Feeds the next bytes of the file.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (self.chunk_size - self.filled_in_chunk) as usize;
            let take = room.min(data.len());
            self.hasher.update(&data[..take]);
            self.filled_in_chunk += take as u32;
            self.size += take as u64;
            data = &data[take..];
            if self.filled_in_chunk == self.chunk_size {
                self.finish_chunk();
            }
        }
    }

    /// Feeds one whole chunk whose hash is already known (a hash computed elsewhere, for
    /// instance on a worker thread). Only valid at a chunk boundary.
    pub fn push_chunk_hash(&mut self, chunk_len: u32, hash: Sha256Digest) {
        debug_assert_eq!(
            self.filled_in_chunk, 0,
            "push_chunk_hash between chunks only"
        );
        self.size += u64::from(chunk_len);
        self.chunk_hashes.push(hash);
    }

    fn finish_chunk(&mut self) {
        let hasher = std::mem::replace(&mut self.hasher, Sha256::new());
        self.chunk_hashes.push(hasher.finalize().into());
        self.filled_in_chunk = 0;
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Finishes the last partial chunk and checks the result.
    pub fn finish(mut self) -> Result<Manifest, ManifestError> {
        if self.filled_in_chunk > 0 {
            self.finish_chunk();
        }
        let manifest = Manifest {
            name: self.name,
            size: self.size,
            chunk_size: self.chunk_size,
            chunk_hashes: self.chunk_hashes,
        };
        manifest.validate()?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::sha256;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn builder_matches_direct_hashing_for_any_split() {
        let bytes = data(CHUNK_SIZE_MIN as usize * 3 + 100);
        let expected: Vec<_> = bytes.chunks(CHUNK_SIZE_MIN as usize).map(sha256).collect();
        for split in [1usize, 7, 4096, 16384, 50000] {
            let mut builder = ManifestBuilder::new("f", CHUNK_SIZE_MIN).unwrap();
            for piece in bytes.chunks(split) {
                builder.update(piece);
            }
            let manifest = builder.finish().unwrap();
            assert_eq!(manifest.chunk_hashes, expected, "split {split}");
            assert_eq!(manifest.size, bytes.len() as u64);
            assert_eq!(manifest.chunk_len(3), 100);
            assert_eq!(manifest.chunk_len(4), 0);
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
        b.chunk_hashes[0][0] ^= 1;
        assert!(matches!(
            b.verify(a.content_id()),
            Err(ManifestError::IdMismatch { .. })
        ));
    }

    #[test]
    fn validate_rejects_bad_shapes() {
        assert!(ManifestBuilder::new("x", 1000).is_err());
        assert!(ManifestBuilder::new("x", CHUNK_SIZE_MAX * 2).is_err());
        let bad = Manifest {
            name: "x".into(),
            size: 100,
            chunk_size: CHUNK_SIZE_MIN,
            chunk_hashes: vec![],
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
