//! Collections: a directory (or several files) shared as one content.
//!
//! A collection is a manifest like any other (size, chunk size, chunk hashes) over the
//! **content stream**: the bytes of every distinct file content of the tree, one after the
//! other, each once. Its **file table** lists every path with its kind, size and where its
//! bytes start in that stream; two files with the same bytes point at the same place, so
//! they cross the wire once and are written to every path. Chunks are cut from the stream
//! as for a single file, so one chunk may cover many small files (no request per file) and
//! a large file spans many chunks; every machine (scheduler, serving, tracker, simulator)
//! sees one content of `size` bytes, and only the runtime maps stream offsets to files.
//!
//! The content id covers the chunk hashes and the encoded table (see
//! `Manifest::content_id`), so paths, modes and contents are all what the publisher made.
//! That does not make them safe: the publisher may be hostile. [`FileTable::decode`] is the
//! one way a table becomes paths, and it refuses anything that could escape the
//! destination, collide with another path, or cost more than the limits below, before
//! the caller creates anything.
//!
//! Encoding (big-endian): `u32 entry count`, then per entry `u8 kind` (0 file, 1
//! executable file, 2 directory), `u16 path length`, the path (UTF-8, components joined by
//! `/`), and for files `u64 size`, `u64 offset` in the content stream. Entries are sorted by
//! path bytes, each path at most once; directories are listed only when empty (others are
//! implied by their files), empty files have offset 0, and distinct contents appear in the
//! stream in the order of their first path, back to back from offset 0 to the end. So a tree
//! has exactly one table, and a table exactly one encoding.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use unicode_normalization::UnicodeNormalization;

use crate::filename::is_safe_file_name;

/// Most entries (files and empty directories) in one collection. A table claiming more is
/// refused before anything is allocated for its entries.
pub const COLLECTION_ENTRIES_MAX: usize = 200_000;
/// Largest total size of a collection's files, duplicates counted at every path: what the
/// getter's disk must hold. Bounds a table whose many paths point at one large content.
pub const COLLECTION_SIZE_MAX: u64 = 4 << 40;
/// Longest path in a collection, in bytes of UTF-8 (Linux's `PATH_MAX`).
pub const PATH_LEN_MAX: usize = 4096;
/// Most components in one path.
pub const PATH_DEPTH_MAX: usize = 64;
/// Largest encoded file table: fits 200,000 entries with paths of about 20 bytes, and
/// 100,000 of about 60. Bounds what one manifest frame carries beyond its hashes.
pub const FILE_TABLE_LEN_MAX: usize = 8 * 1024 * 1024;

/// Bytes of an entry before its path: kind and path length.
const ENTRY_HEAD_LEN: usize = 3;

/// What a path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryKind {
    File,
    /// A file with the executable bit (set for every class that may read it).
    Executable,
    /// An empty directory (a non-empty one is implied by its files).
    Dir,
}

impl EntryKind {
    fn byte(self) -> u8 {
        match self {
            EntryKind::File => 0,
            EntryKind::Executable => 1,
            EntryKind::Dir => 2,
        }
    }

    fn from_byte(byte: u8) -> Option<EntryKind> {
        match byte {
            0 => Some(EntryKind::File),
            1 => Some(EntryKind::Executable),
            2 => Some(EntryKind::Dir),
            _ => None,
        }
    }

    pub fn is_file(self) -> bool {
        self != EntryKind::Dir
    }
}

/// One path of a collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Components joined by `/`; each one a safe file name (see [`FileTable::decode`]).
    pub path: String,
    pub kind: EntryKind,
    /// Zero for a directory.
    pub size: u64,
    /// Where the file's bytes start in the content stream; zero for a directory or an
    /// empty file.
    pub offset: u64,
}

/// One distinct file content: where it lies in the stream and the first path holding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    pub offset: u64,
    pub size: u64,
    /// Index in [`FileTable::entries`] of the first path with these bytes: the one the
    /// stream is read from and written to.
    pub entry: usize,
}

/// The paths of a collection, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileTable {
    entries: Vec<Entry>,
}

/// Why a file table is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CollectionError {
    /// Shorter than its fields say, or longer.
    Truncated,
    TrailingBytes,
    TableTooLong(usize),
    TooManyEntries(u64),
    UnknownKind(u8),
    PathTooLong(usize),
    PathTooDeep(String),
    NotUtf8,
    /// A component that is empty, `.`, `..`, a reserved device name, or holds a separator,
    /// a control character or a character file systems refuse.
    UnsafeComponent {
        path: String,
        component: String,
    },
    /// Not in strictly ascending order of path bytes (a path twice, or unsorted).
    Unsorted(String),
    /// Two paths that some file systems would take for one (case, Unicode normalisation).
    Collision {
        first: String,
        second: String,
    },
    /// A path both a file and a directory (`a` a file, `a/b` another).
    FileAsDirectory(String),
    /// A file's bytes lie outside the content stream, overlap another content's, leave a
    /// gap, or are not in first-path order.
    BadLayout(String),
    /// A directory listed as empty with paths under it.
    EmptyDirNotEmpty(String),
    TotalTooLarge,
}

impl fmt::Display for CollectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CollectionError::Truncated => write!(f, "the file table is truncated"),
            CollectionError::TrailingBytes => write!(f, "the file table has trailing bytes"),
            CollectionError::TableTooLong(len) => write!(
                f,
                "the file table is {len} bytes, more than the limit of {FILE_TABLE_LEN_MAX}"
            ),
            CollectionError::TooManyEntries(n) => write!(
                f,
                "the collection lists {n} paths, more than the limit of {COLLECTION_ENTRIES_MAX}"
            ),
            CollectionError::UnknownKind(kind) => write!(f, "unknown entry kind {kind}"),
            CollectionError::PathTooLong(len) => {
                write!(f, "a path is {len} bytes, more than {PATH_LEN_MAX}")
            }
            CollectionError::PathTooDeep(path) => write!(
                f,
                "the path '{}' has more than {PATH_DEPTH_MAX} components",
                path.escape_debug()
            ),
            CollectionError::NotUtf8 => write!(f, "a path is not UTF-8"),
            CollectionError::UnsafeComponent { path, component } => write!(
                f,
                "the path '{}' has the unsafe component '{}' (empty, '.', '..', absolute, a \
                 device name, or a control or reserved character)",
                path.escape_debug(),
                component.escape_debug()
            ),
            CollectionError::Unsorted(path) => write!(
                f,
                "the path '{}' is listed twice or out of order",
                path.escape_debug()
            ),
            CollectionError::Collision { first, second } => write!(
                f,
                "the paths '{}' and '{}' differ only by case or Unicode normalisation, and \
                 would be one file on some file systems",
                first.escape_debug(),
                second.escape_debug()
            ),
            CollectionError::FileAsDirectory(path) => write!(
                f,
                "'{}' is listed as a file and as a directory",
                path.escape_debug()
            ),
            CollectionError::BadLayout(path) => write!(
                f,
                "the bytes of '{}' are not where the content stream has room for them",
                path.escape_debug()
            ),
            CollectionError::EmptyDirNotEmpty(path) => write!(
                f,
                "'{}' is listed as an empty directory but has paths under it",
                path.escape_debug()
            ),
            CollectionError::TotalTooLarge => write!(
                f,
                "the files add up to more than the limit of {COLLECTION_SIZE_MAX} bytes"
            ),
        }
    }
}

impl std::error::Error for CollectionError {}

/// A file of a tree being shared: what the publisher knows before laying the table out.
#[derive(Clone, Debug)]
pub struct SourceEntry {
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Files with the same key (and size) hold the same bytes and are stored once; `None`
    /// for a file that shares its bytes with no other (the caller hashes only files whose
    /// size another file has).
    pub same_bytes_key: Option<[u8; 32]>,
}

impl FileTable {
    /// Lays a tree out: sorts its paths, gives each distinct content its place in the
    /// stream (in the order of its first path), and checks the result as a getter will.
    pub fn lay_out(mut sources: Vec<SourceEntry>) -> Result<FileTable, CollectionError> {
        sources.sort_by(|a, b| a.path.cmp(&b.path));
        let mut placed: BTreeMap<(u64, [u8; 32]), u64> = BTreeMap::new();
        let mut stream_len = 0u64;
        let mut entries = Vec::with_capacity(sources.len());
        for source in sources {
            let offset = if !source.kind.is_file() || source.size == 0 {
                0
            } else if let Some(key) = source.same_bytes_key
                && let Some(&offset) = placed.get(&(source.size, key))
            {
                offset
            } else {
                let offset = stream_len;
                stream_len = stream_len.saturating_add(source.size);
                if let Some(key) = source.same_bytes_key {
                    placed.insert((source.size, key), offset);
                }
                offset
            };
            let size = if source.kind.is_file() {
                source.size
            } else {
                0
            };
            entries.push(Entry {
                path: source.path,
                kind: source.kind,
                size,
                offset,
            });
        }
        let table = FileTable { entries };
        // The same checks a getter makes: a tree it would refuse is refused here, with the
        // same reason, before anything is published.
        FileTable::decode(&table.encode(), stream_len)
    }

    /// Decodes and checks a file table received from anyone, for a content stream of
    /// `stream_len` bytes (the manifest's size). Every limit is checked before memory is
    /// reserved for it, and every path goes through the sanitiser: an `Ok` table's paths are
    /// relative, each component a safe file name, no two alike under case folding or
    /// Unicode normalisation, no file where another path needs a directory.
    pub fn decode(bytes: &[u8], stream_len: u64) -> Result<FileTable, CollectionError> {
        if bytes.len() > FILE_TABLE_LEN_MAX {
            return Err(CollectionError::TableTooLong(bytes.len()));
        }
        let mut reader = Reader { bytes };
        let count = u64::from(reader.u32()?);
        if count > COLLECTION_ENTRIES_MAX as u64 {
            return Err(CollectionError::TooManyEntries(count));
        }
        // Each entry takes at least its head: a lying count cannot reserve memory.
        if (count as usize).saturating_mul(ENTRY_HEAD_LEN) > reader.bytes.len() {
            return Err(CollectionError::Truncated);
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let kind_byte = reader.u8()?;
            let kind =
                EntryKind::from_byte(kind_byte).ok_or(CollectionError::UnknownKind(kind_byte))?;
            let path_len = reader.u16()? as usize;
            if path_len > PATH_LEN_MAX {
                return Err(CollectionError::PathTooLong(path_len));
            }
            let path = std::str::from_utf8(reader.take(path_len)?)
                .map_err(|_| CollectionError::NotUtf8)?
                .to_string();
            let (size, offset) = if kind.is_file() {
                (reader.u64()?, reader.u64()?)
            } else {
                (0, 0)
            };
            if let Some(previous) = entries.last()
                && previous.path.as_bytes() >= path.as_bytes()
            {
                return Err(CollectionError::Unsorted(path));
            }
            entries.push(Entry {
                path,
                kind,
                size,
                offset,
            });
        }
        if !reader.bytes.is_empty() {
            return Err(CollectionError::TrailingBytes);
        }
        let table = FileTable { entries };
        table.check_paths()?;
        table.check_layout(stream_len)?;
        Ok(table)
    }

    /// The canonical encoding (see the module's doc).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.entries.len() * 32);
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for entry in &self.entries {
            out.push(entry.kind.byte());
            out.extend_from_slice(&(entry.path.len() as u16).to_be_bytes());
            out.extend_from_slice(entry.path.as_bytes());
            if entry.kind.is_file() {
                out.extend_from_slice(&entry.size.to_be_bytes());
                out.extend_from_slice(&entry.offset.to_be_bytes());
            }
        }
        out
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Number of files (empty directories not counted).
    pub fn file_count(&self) -> usize {
        self.entries.iter().filter(|e| e.kind.is_file()).count()
    }

    /// Bytes of every file, duplicates counted at every path: what the tree takes on disk.
    pub fn total_size(&self) -> u64 {
        // Checked against COLLECTION_SIZE_MAX when decoded: cannot overflow.
        self.entries.iter().map(|e| e.size).sum()
    }

    /// The distinct contents in stream order, each with the first path holding it. Empty
    /// files hold none.
    pub fn contents(&self) -> Vec<Content> {
        let mut seen = BTreeSet::new();
        let mut contents = Vec::new();
        for (index, entry) in self.entries.iter().enumerate() {
            if entry.kind.is_file() && entry.size > 0 && seen.insert(entry.offset) {
                contents.push(Content {
                    offset: entry.offset,
                    size: entry.size,
                    entry: index,
                });
            }
        }
        contents
    }

    /// Every component safe; no two paths (directories implied by files included) alike
    /// once folded; nothing both a file and a directory; an empty directory empty.
    fn check_paths(&self) -> Result<(), CollectionError> {
        #[derive(Clone, Copy, PartialEq, Eq)]
        enum Seen {
            File,
            EmptyDir,
            ParentDir,
        }
        // Folded path -> the path as spelled, and what it is.
        let mut seen: BTreeMap<String, (&str, Seen)> = BTreeMap::new();
        for entry in &self.entries {
            let components: Vec<&str> = entry.path.split('/').collect();
            if components.len() > PATH_DEPTH_MAX {
                return Err(CollectionError::PathTooDeep(entry.path.clone()));
            }
            if let Some(bad) = components.iter().find(|c| !is_safe_file_name(c)) {
                return Err(CollectionError::UnsafeComponent {
                    path: entry.path.clone(),
                    component: bad.to_string(),
                });
            }
            let mut end = 0;
            for (depth, component) in components.iter().enumerate() {
                end += component.len() + usize::from(depth > 0);
                let spelled = &entry.path[..end];
                let is_self = depth + 1 == components.len();
                let folded = fold(spelled);
                match seen.get(&folded) {
                    Some(&(other, _)) if other != spelled => {
                        return Err(CollectionError::Collision {
                            first: other.to_string(),
                            second: spelled.to_string(),
                        });
                    }
                    // Sorted, unique paths list a path before anything under it, so an
                    // entry's own path cannot have been seen in its own spelling.
                    Some(_) if is_self => {
                        return Err(CollectionError::Unsorted(entry.path.clone()));
                    }
                    Some(&(_, Seen::ParentDir)) => {}
                    Some(&(_, Seen::File)) => {
                        return Err(CollectionError::FileAsDirectory(spelled.to_string()));
                    }
                    Some(&(_, Seen::EmptyDir)) => {
                        return Err(CollectionError::EmptyDirNotEmpty(spelled.to_string()));
                    }
                    None => {
                        let what = match (is_self, entry.kind) {
                            (false, _) => Seen::ParentDir,
                            (true, EntryKind::Dir) => Seen::EmptyDir,
                            (true, _) => Seen::File,
                        };
                        seen.insert(folded, (spelled, what));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every file's bytes inside the stream; distinct contents back to back from 0 to the
    /// end, in the order of their first paths; every path at one place holding the same
    /// length; empty files and directories at 0; the total within the limit.
    fn check_layout(&self, stream_len: u64) -> Result<(), CollectionError> {
        let mut total = 0u64;
        let mut sizes_at: BTreeMap<u64, u64> = BTreeMap::new();
        let mut stream_end = 0u64;
        for entry in &self.entries {
            total = total
                .checked_add(entry.size)
                .filter(|&t| t <= COLLECTION_SIZE_MAX)
                .ok_or(CollectionError::TotalTooLarge)?;
            let bad = || CollectionError::BadLayout(entry.path.clone());
            if entry.size == 0 {
                if entry.offset != 0 {
                    return Err(bad());
                }
                continue;
            }
            match sizes_at.get(&entry.offset) {
                Some(&size) if size == entry.size => {}
                Some(_) => return Err(bad()),
                // A new content starts exactly where the stream so far ends.
                None if entry.offset == stream_end => {
                    sizes_at.insert(entry.offset, entry.size);
                    stream_end = stream_end.checked_add(entry.size).ok_or_else(bad)?;
                    if stream_end > stream_len {
                        return Err(bad());
                    }
                }
                None => return Err(bad()),
            }
        }
        if stream_end != stream_len {
            return Err(CollectionError::BadLayout(String::new()));
        }
        Ok(())
    }
}

/// A path as the most forgiving file system would see it: compatibility-normalised, lower
/// case, normalised again. Coarser than any real one (so some names two file systems would
/// keep apart are refused together), never finer.
fn fold(path: &str) -> String {
    path.nfkc()
        .flat_map(char::to_lowercase)
        .collect::<String>()
        .nfkc()
        .collect()
}

/// A cursor that turns every short read into `Truncated`.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CollectionError> {
        if self.bytes.len() < n {
            return Err(CollectionError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, CollectionError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, CollectionError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, CollectionError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, CollectionError> {
        let mut out = [0u8; 8];
        out.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(out))
    }
}

mod part;
#[cfg(test)]
mod tests;

pub use part::Part;

/// A collection's file count and size, as listings show it (`p2p ls`); `None` for a single
/// file, or a table that does not decode (getters refuse it; a listing shows the stream).
pub(crate) fn tree_summary(
    manifest: &crate::manifest::Manifest,
) -> Option<crate::wire::TreeSummary> {
    manifest
        .file_table
        .as_ref()
        .and_then(|table| FileTable::decode(table, manifest.size).ok())
        .map(|table| crate::wire::TreeSummary {
            files: u32::try_from(table.file_count()).unwrap_or(u32::MAX),
            size: table.total_size(),
        })
}
