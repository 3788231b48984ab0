//! The resume record of a download: which chunks of `NAME.part` are verified, kept beside
//! it as `NAME.part.p2p` so that a download stopped in any way resumes where it was.

use std::io;
use std::path::Path;

use p2p_core::{ChunkSet, ContentId};

use crate::io::no_follow;

/// First bytes of a resume record, with its format version.
const RECORD_MAGIC: &[u8; 8] = b"p2prec1\n";
/// Bytes of the content id that follows the magic.
const CONTENT_ID_LEN: usize = 32;
/// Bytes of the chunk count that follows the content id.
const CHUNK_COUNT_LEN: usize = 4;

/// What a download has verified so far: `NAME.part.p2p`, beside the part file.
/// Format: magic, content id (32 bytes), chunk count (u32, big-endian), bitfield.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub content_id: ContentId,
    pub chunks: ChunkSet,
}

/// Writes the record atomically, never through a planted link
/// (`no_follow::write_atomically`).
pub fn write_record(path: &Path, record: &Record) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(
        RECORD_MAGIC.len() + CONTENT_ID_LEN + CHUNK_COUNT_LEN + record.chunks.as_bitfield().len(),
    );
    bytes.extend_from_slice(RECORD_MAGIC);
    bytes.extend_from_slice(&record.content_id.0);
    bytes.extend_from_slice(&record.chunks.len().to_be_bytes());
    bytes.extend_from_slice(record.chunks.as_bitfield());
    no_follow::write_atomically(path, &bytes)
}

/// Reads a record. `Ok(None)` when there is none or it is not a record this version wrote;
/// an error for a link at `path` (never followed).
pub fn read_record(path: &Path) -> io::Result<Option<Record>> {
    let bytes = match no_follow::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(rest) = bytes.strip_prefix(RECORD_MAGIC.as_slice()) else {
        return Ok(None);
    };
    if rest.len() < CONTENT_ID_LEN + CHUNK_COUNT_LEN {
        return Ok(None);
    }
    let (id, rest) = rest.split_at(CONTENT_ID_LEN);
    let (count, bitfield) = rest.split_at(CHUNK_COUNT_LEN);
    // Both splits are of exactly the lengths checked above.
    let content_id = ContentId(id.try_into().unwrap());
    let count = u32::from_be_bytes(count.try_into().unwrap());
    Ok(ChunkSet::from_bitfield(count, bitfield).map(|chunks| Record { content_id, chunks }))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn record_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.part.p2p");
        let mut chunks = ChunkSet::new(21);
        chunks.insert(0);
        chunks.insert(20);
        let record = Record {
            content_id: ContentId([7; 32]),
            chunks,
        };
        write_record(&path, &record).unwrap();
        assert_eq!(read_record(&path).unwrap(), Some(record));
        assert_eq!(read_record(&dir.path().join("missing")).unwrap(), None);
        fs::write(&path, b"not a record").unwrap();
        assert_eq!(read_record(&path).unwrap(), None);
    }

    #[test]
    fn a_planted_link_is_neither_read_nor_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        fs::write(&target, b"precious").unwrap();
        let path = dir.path().join("f.part.p2p");
        let record = Record {
            content_id: ContentId([7; 32]),
            chunks: ChunkSet::new(3),
        };
        // At the record's own name: refused when read, replaced (the link, not its target)
        // when written.
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(read_record(&path).is_err());
        write_record(&path, &record).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        assert_eq!(read_record(&path).unwrap(), Some(record.clone()));
        // At the temporary file's name.
        std::os::unix::fs::symlink(&target, dir.path().join("f.part.p2p.tmp")).unwrap();
        write_record(&path, &record).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        assert_eq!(read_record(&path).unwrap(), Some(record));
    }
}
