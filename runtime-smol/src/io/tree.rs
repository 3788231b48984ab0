//! A collection's files on disk: the content stream of its manifest mapped onto the files
//! of a tree, so that chunks are read and written where they belong, across file
//! boundaries (a chunk of small files touches many, a large file many chunks).
//!
//! Only the first path of each distinct content is part of the stream; the other paths
//! with the same bytes are copied from it once every chunk is verified ([`Tree::finish`]).
//! A tree may hold only part of its collection (`get --only`, [`Tree::new_part`]): then
//! only the contents its chunks touch are on disk, and the files among them that were not
//! picked are removed when it finishes.
//! Every file and directory is opened beneath the tree's root one component at a time
//! without following links (`no_follow::open_beneath`), so a link already present in the
//! destination (or planted in a shared tree) is never written or read through.
//!
//! Every function here blocks: the peer task runs them on smol's blocking pool. Files are
//! opened per read or write, not kept open: a tree of 100,000 files would exceed the open
//! file limit.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use std::collections::BTreeSet;

use p2p_core::collection::{Content, Entry, EntryKind, FileTable, Part};

use crate::io::no_follow::{self, Create};

/// One distinct content: its place in the stream and the path (relative to the root) that
/// holds it.
#[derive(Clone, Debug)]
struct Placed {
    offset: u64,
    size: u64,
    path: String,
}

/// A collection's tree under one root directory.
#[derive(Debug)]
pub struct Tree {
    root: PathBuf,
    table: FileTable,
    /// Sorted by offset: the content stream, or the contents of it this tree holds.
    placed: Vec<Placed>,
    /// The entries (indices in the table) this tree ends with; `None`: all of them.
    picked: Option<BTreeSet<usize>>,
}

impl Tree {
    /// The tree `table` describes, under `root` (which must be a directory, not a link).
    pub fn new(root: PathBuf, table: FileTable) -> Tree {
        let contents = table.contents();
        Tree::with_contents(root, table, &contents, None)
    }

    /// The part of the tree `table` describes that `part` picks: it holds the contents the
    /// part's chunks touch, and ends with the picked paths only.
    pub fn new_part(root: PathBuf, table: FileTable, part: &Part) -> Tree {
        Tree::with_contents(root, table, &part.contents, Some(part.picked.clone()))
    }

    fn with_contents(
        root: PathBuf,
        table: FileTable,
        contents: &[Content],
        picked: Option<BTreeSet<usize>>,
    ) -> Tree {
        let placed = contents
            .iter()
            .map(|content| Placed {
                offset: content.offset,
                size: content.size,
                path: table.entries()[content.entry].path.clone(),
            })
            .collect();
        Tree {
            root,
            table,
            placed,
            picked,
        }
    }

    /// Whether the tree ends with `entry` (index in the table).
    fn keeps(&self, entry: usize) -> bool {
        self.picked
            .as_ref()
            .is_none_or(|picked| picked.contains(&entry))
    }

    /// The entries this tree ends with.
    fn kept_entries(&self) -> impl Iterator<Item = &Entry> {
        let entries = self.table.entries();
        (0..entries.len())
            .filter(|&i| self.keeps(i))
            .map(move |i| &entries[i])
    }

    pub fn table(&self) -> &FileTable {
        &self.table
    }

    /// The same tree under another root (after the rename to its final name).
    pub fn moved_to(&self, root: PathBuf) -> Tree {
        Tree {
            root,
            table: self.table.clone(),
            placed: self.placed.clone(),
            picked: self.picked.clone(),
        }
    }

    /// Each piece of the stream range `offset..offset + len`: the content holding it, the
    /// offset in that file, and the range of the caller's buffer.
    fn pieces(
        &self,
        offset: u64,
        len: usize,
    ) -> impl Iterator<Item = (&Placed, u64, std::ops::Range<usize>)> {
        let end = offset + len as u64;
        // The first content that ends after `offset`.
        let first = self.placed.partition_point(|p| p.offset + p.size <= offset);
        self.placed[first..]
            .iter()
            .take_while(move |p| p.offset < end)
            .map(move |p| {
                let start = offset.max(p.offset);
                let stop = end.min(p.offset + p.size);
                let in_buf = (start - offset) as usize..(stop - offset) as usize;
                (p, start - p.offset, in_buf)
            })
    }

    /// Reads `buf.len()` bytes of the stream at `offset`: an error past the end of the
    /// stream, or where a part does not hold the bytes.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut filled = 0;
        for (placed, file_offset, range) in self.pieces(offset, buf.len()) {
            if range.start != filled {
                break;
            }
            let file = no_follow::open_beneath(&self.root, &placed.path, Create::No)?;
            file.read_exact_at(&mut buf[range.clone()], file_offset)?;
            filled = range.end;
        }
        if filled != buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the collection, or of the part of it on disk",
            ));
        }
        Ok(())
    }

    /// Writes `data` into the stream at `offset` (the files exist: [`Tree::create`]).
    /// Bytes of contents a part does not hold are not written (a part only stores chunks
    /// whose contents it holds, so there are none).
    pub fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        for (placed, file_offset, range) in self.pieces(offset, data.len()) {
            let file = no_follow::open_beneath(&self.root, &placed.path, Create::No)?;
            file.write_all_at(&data[range], file_offset)?;
        }
        Ok(())
    }

    /// Creates every directory and file of the tree under the root (which exists), each
    /// file at its size with its mode, or takes the ones already there (a resumed
    /// download: their bytes are verified afterwards, not trusted). `fresh`: empty the files
    /// that exist, as nothing on disk belongs to this download.
    pub fn create(&self, fresh: bool) -> io::Result<()> {
        let stored: BTreeSet<&str> = self.placed.iter().map(|p| p.path.as_str()).collect();
        let entries = self.table.entries().iter().enumerate();
        for (_, entry) in
            entries.filter(|(i, e)| self.keeps(*i) || stored.contains(e.path.as_str()))
        {
            match entry.kind {
                EntryKind::Dir => {
                    no_follow::create_dirs_beneath(&self.root, &entry.path)?;
                }
                EntryKind::File | EntryKind::Executable => {
                    let file = open_entry(&self.root, entry)?;
                    if fresh {
                        file.set_len(0)?;
                    }
                    if file.metadata()?.len() != entry.size {
                        file.set_len(entry.size)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Every chunk is verified: copies each content to its other paths, removes the files
    /// a part holds but did not pick, then makes the tree durable before it gets its final
    /// name: one `syncfs` of the file system holding it, which writes back every file and
    /// directory of the tree at once (an `fsync` per file costs a journal commit each, and
    /// a tree may hold 100,000 files).
    pub fn finish(&self) -> io::Result<()> {
        let mut first_path_at: std::collections::HashMap<u64, &str> = Default::default();
        for placed in &self.placed {
            first_path_at.insert(placed.offset, &placed.path);
        }
        for entry in self.kept_entries() {
            if entry.kind.is_file()
                && entry.size > 0
                && let Some(&source) = first_path_at.get(&entry.offset)
                && source != entry.path
            {
                let file = open_entry(&self.root, entry)?;
                let mut from = no_follow::open_beneath(&self.root, source, Create::No)?;
                file.set_len(0)?;
                io::copy(&mut from, &mut &file)?;
            }
        }
        self.remove_unpicked()?;
        let root = File::open(&self.root)?;
        rustix::fs::syncfs(&root)?;
        Ok(())
    }
}

impl Tree {
    /// Removes the files a part holds only because its chunks touch them, and the
    /// directories made for them alone.
    fn remove_unpicked(&self) -> io::Result<()> {
        if self.picked.is_none() {
            return Ok(());
        }
        let kept: BTreeSet<&str> = self.kept_entries().map(|e| e.path.as_str()).collect();
        // Every directory on the way to a kept path, and kept empty directories.
        let mut kept_dirs: BTreeSet<&str> = BTreeSet::new();
        for entry in self.kept_entries() {
            if entry.kind == EntryKind::Dir {
                kept_dirs.insert(&entry.path);
            }
            kept_dirs.extend(parents(&entry.path));
        }
        let mut emptied = BTreeSet::new();
        for placed in self
            .placed
            .iter()
            .filter(|p| !kept.contains(p.path.as_str()))
        {
            match no_follow::remove_beneath(&self.root, &placed.path, false) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            emptied.extend(parents(&placed.path).filter(|dir| !kept_dirs.contains(dir)));
        }
        // Deepest first, so a parent is empty when its turn comes; best effort: a
        // directory holding anything else stays.
        for dir in emptied.iter().rev() {
            let _ = no_follow::remove_beneath(&self.root, dir, true);
        }
        Ok(())
    }
}

/// The directories `path` is in, deepest first (`a/b/c`: `a/b`, then `a`).
fn parents(path: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(path.rsplit_once('/').map(|(p, _)| p), |p| {
        p.rsplit_once('/').map(|(p, _)| p)
    })
}

/// The file of `entry`, created with its mode if missing (the umask applies, as for `cp`).
fn open_entry(root: &Path, entry: &Entry) -> io::Result<File> {
    let mode = match entry.kind {
        EntryKind::Executable => 0o777,
        _ => 0o666,
    };
    let file = no_follow::open_beneath(root, &entry.path, Create::WithDirs { mode })?;
    // A file made by an earlier run of the same download keeps the mode it was made with,
    // but one the user changed meanwhile gets the collection's executable bit back.
    use std::os::unix::fs::PermissionsExt;
    let permissions = file.metadata()?.permissions();
    let current = permissions.mode();
    let wanted = if entry.kind == EntryKind::Executable {
        current | ((current & 0o444) >> 2)
    } else {
        current & !0o111
    };
    if wanted != current {
        file.set_permissions(std::fs::Permissions::from_mode(wanted))?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_core::collection::SourceEntry;

    fn table() -> FileTable {
        let file = |path: &str, size, key: u8| SourceEntry {
            path: path.into(),
            kind: EntryKind::File,
            size,
            same_bytes_key: Some([key; 32]),
        };
        FileTable::lay_out(vec![
            file("a", 3, 1),
            file("b/c", 5, 2),
            file("b/d", 0, 0),
            file("e", 3, 1),
            file("f", 4, 3),
            SourceEntry {
                kind: EntryKind::Executable,
                ..file("x/run", 2, 4)
            },
        ])
        .unwrap()
    }

    #[test]
    fn the_stream_maps_onto_files_across_their_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::new(dir.path().to_path_buf(), table());
        tree.create(true).unwrap();
        // Stream: a (3) | b/c (5) | f (4) | x/run (2) = 14 bytes.
        let stream: Vec<u8> = (0..14).collect();
        tree.write_at(&stream[..7], 0).unwrap();
        tree.write_at(&stream[7..], 7).unwrap();
        let mut back = vec![0; 14];
        tree.read_at(&mut back, 0).unwrap();
        assert_eq!(back, stream);
        let mut middle = vec![0; 6];
        tree.read_at(&mut middle, 2).unwrap();
        assert_eq!(middle, &stream[2..8]);
        assert!(tree.read_at(&mut [0; 2], 13).is_err(), "past the end");
        tree.finish().unwrap();
        let read = |p: &str| std::fs::read(dir.path().join(p)).unwrap();
        assert_eq!(read("a"), [0, 1, 2]);
        assert_eq!(read("e"), [0, 1, 2], "the duplicate is copied");
        assert_eq!(read("b/c"), [3, 4, 5, 6, 7]);
        assert_eq!(read("b/d"), [] as [u8; 0]);
        assert_eq!(read("f"), [8, 9, 10, 11]);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
        };
        assert_ne!(mode("x/run") & 0o100, 0);
        assert_eq!(mode("a") & 0o111, 0);
    }

    #[test]
    fn a_link_in_the_destination_is_never_written_through() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("c"), b"precious").unwrap();
        symlink(outside.path(), dir.path().join("b")).unwrap();
        let tree = Tree::new(dir.path().to_path_buf(), table());
        assert!(tree.create(true).is_err());
        assert_eq!(
            std::fs::read(outside.path().join("c")).unwrap(),
            b"precious"
        );
        // A link at a file's own path is refused too.
        // (The first run created "a" before it met the link at "b".)
        std::fs::remove_file(dir.path().join("b")).unwrap();
        std::fs::remove_file(dir.path().join("a")).unwrap();
        symlink(outside.path().join("c"), dir.path().join("a")).unwrap();
        assert!(tree.create(true).is_err());
        assert_eq!(
            std::fs::read(outside.path().join("c")).unwrap(),
            b"precious"
        );
    }
}
