//! Hashing a directory (or several paths in one directory) into a collection's manifest:
//! walk the tree without following links, find the files with the same bytes, lay the
//! table out (`p2p_core::collection`), then hash the content stream in one pass.
//!
//! Finding duplicates costs a second read only of files whose size another file has: a
//! file of a size no other file has cannot share its bytes, so trees of distinct sizes
//! (weight shards, media) are read once; trees of many equal sizes are read twice.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use p2p_core::collection::{COLLECTION_ENTRIES_MAX, EntryKind, FileTable, SourceEntry};
use p2p_core::{Manifest, ManifestBuilder};
use sha2::{Digest, Sha256};

use crate::io::no_follow::{self, Create};
use crate::io::tree::Tree;

/// Bytes read at once when hashing.
const READ_LEN: usize = 1024 * 1024;

/// A collection ready to publish.
pub struct HashedTree {
    pub manifest: Manifest,
    pub tree: Tree,
    /// Paths not shared (links, devices, sockets), for a warning.
    pub skipped: Vec<String>,
}

/// Hashes the collection `name` of the entries `items` of the directory `root` (every
/// entry of a shared directory, or the paths given together), each with what is under it.
/// Symbolic links are skipped, not followed (a link's target may be outside the tree, or
/// anywhere on a getter's disk); so are devices, sockets and pipes. `on_hashed(done,
/// total)` hears how many bytes of the content stream are hashed, first with none done
/// once the tree is walked, then after every read: time goes with the bytes, not the
/// number of files.
pub fn hash_tree(
    root: &Path,
    items: &[String],
    name: &str,
    chunk_size: u32,
    mut on_hashed: impl FnMut(u64, u64),
) -> anyhow::Result<HashedTree> {
    let mut walk = Walk::default();
    for item in items {
        walk.visit(root, item)?;
    }
    let Walk { sources, skipped } = walk;
    let sources = mark_duplicates(root, sources)?;
    let table = FileTable::lay_out(sources)
        .map_err(|e| anyhow::anyhow!("{e}; rename it to share this tree"))?;
    let mut builder = ManifestBuilder::new(name, chunk_size)?;
    let mut buf = vec![0u8; READ_LEN];
    let contents = table.contents();
    let total = contents.iter().map(|c| c.size).sum();
    let mut done = 0;
    on_hashed(done, total);
    for content in contents {
        let path = &table.entries()[content.entry].path;
        let file = no_follow::open_beneath(root, path, Create::No)
            .with_context(|| format!("cannot open {path}"))?;
        let mut offset = 0u64;
        while offset < content.size {
            let want = (content.size - offset).min(READ_LEN as u64) as usize;
            read_exact_at(&file, &mut buf[..want], offset)
                .with_context(|| format!("{path} changed while it was hashed"))?;
            builder.update(&buf[..want]);
            offset += want as u64;
            done += want as u64;
            on_hashed(done, total);
        }
    }
    let manifest = builder.finish_collection(&table)?;
    Ok(HashedTree {
        manifest,
        tree: Tree::new(root.to_path_buf(), table),
        skipped,
    })
}

fn read_exact_at(file: &fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[derive(Default)]
struct Walk {
    sources: Vec<SourceEntry>,
    skipped: Vec<String>,
}

impl Walk {
    /// Adds `relative` (beneath `root`) and, for a directory, everything under it.
    fn visit(&mut self, root: &Path, relative: &str) -> anyhow::Result<()> {
        let full = root.join(relative);
        let meta = fs::symlink_metadata(&full)
            .with_context(|| format!("cannot read {}", full.display()))?;
        let file_type = meta.file_type();
        if self.sources.len() >= COLLECTION_ENTRIES_MAX {
            bail!(
                "{} holds more than {COLLECTION_ENTRIES_MAX} files and directories, the most \
                 one collection may list; share its parts separately",
                root.display()
            );
        }
        if file_type.is_file() {
            let kind = if meta.permissions().mode() & 0o111 != 0 {
                EntryKind::Executable
            } else {
                EntryKind::File
            };
            self.sources.push(SourceEntry {
                path: relative.to_string(),
                kind,
                size: meta.len(),
                same_bytes_key: None,
            });
        } else if file_type.is_dir() {
            let before = self.sources.len();
            let mut names = Vec::new();
            for child in
                fs::read_dir(&full).with_context(|| format!("cannot list {}", full.display()))?
            {
                let child = child?.file_name();
                let Some(child) = child.to_str() else {
                    bail!(
                        "{} holds a name that is not UTF-8 ({}); rename it to share this tree",
                        full.display(),
                        child.to_string_lossy()
                    );
                };
                names.push(format!("{relative}/{child}"));
            }
            for child in names {
                self.visit(root, &child)?;
            }
            // Nothing shared under it (empty, or only links): it is kept as empty.
            if self.sources.len() == before {
                self.sources.push(SourceEntry {
                    path: relative.to_string(),
                    kind: EntryKind::Dir,
                    size: 0,
                    same_bytes_key: None,
                });
            }
        } else {
            let what = if file_type.is_symlink() {
                "symbolic link"
            } else {
                "special file"
            };
            tracing::warn!("not sharing {}: a {what}", full.display());
            self.skipped.push(relative.to_string());
        }
        Ok(())
    }
}

/// Gives every file whose size another file has the SHA-256 of its bytes, so that files
/// with the same bytes are stored once.
fn mark_duplicates(root: &Path, mut sources: Vec<SourceEntry>) -> anyhow::Result<Vec<SourceEntry>> {
    let mut by_size: BTreeMap<u64, usize> = BTreeMap::new();
    for source in sources.iter().filter(|s| s.kind.is_file() && s.size > 0) {
        *by_size.entry(source.size).or_default() += 1;
    }
    let mut buf = vec![0u8; READ_LEN];
    for source in &mut sources {
        if !source.kind.is_file() || by_size.get(&source.size).is_none_or(|&n| n < 2) {
            continue;
        }
        let file = no_follow::open_beneath(root, &source.path, Create::No)
            .with_context(|| format!("cannot open {}", source.path))?;
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        while offset < source.size {
            let want = (source.size - offset).min(READ_LEN as u64) as usize;
            read_exact_at(&file, &mut buf[..want], offset)
                .with_context(|| format!("{} changed while it was hashed", source.path))?;
            hasher.update(&buf[..want]);
            offset += want as u64;
        }
        source.same_bytes_key = Some(hasher.finalize().into());
    }
    Ok(sources)
}

/// The directory and the entries in it that `paths` name: a directory's own entries when
/// it is the only path, else the paths themselves, which must then share one directory.
pub fn root_and_items(paths: &[PathBuf]) -> anyhow::Result<(PathBuf, Vec<String>)> {
    let canonical: Vec<PathBuf> = paths
        .iter()
        .map(|p| fs::canonicalize(p).with_context(|| format!("cannot read {}", p.display())))
        .collect::<anyhow::Result<_>>()?;
    if let [dir] = canonical.as_slice()
        && dir.is_dir()
    {
        let mut items = Vec::new();
        for child in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let child = child?.file_name();
            let Some(child) = child.to_str() else {
                bail!(
                    "{} holds a name that is not UTF-8 ({}); rename it to share this tree",
                    dir.display(),
                    child.to_string_lossy()
                );
            };
            items.push(child.to_string());
        }
        return Ok((dir.clone(), items));
    }
    let parent = canonical[0]
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut items = Vec::new();
    for path in &canonical {
        if path.parent() != Some(parent.as_path()) {
            bail!(
                "the paths of one collection must be in one directory ({} is not in {}); \
                 share their directory, or put them in one",
                path.display(),
                parent.display()
            );
        }
        let name = path.file_name().and_then(|n| n.to_str()).with_context(|| {
            format!(
                "{} has no UTF-8 name; rename it to share it",
                path.display()
            )
        })?;
        items.push(name.to_string());
    }
    Ok((parent, items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_hashed_with_duplicates_once_and_links_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("sub/empty")).unwrap();
        fs::write(root.join("a"), b"same bytes").unwrap();
        fs::write(root.join("sub/b"), b"same bytes").unwrap();
        fs::write(root.join("sub/c"), b"other byte").unwrap();
        fs::write(root.join("zero"), b"").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let (root, items) = root_and_items(&[root.to_path_buf()]).unwrap();
        let mut heard = Vec::new();
        let on_hashed = |done, total| heard.push((done, total));
        let hashed = hash_tree(
            &root,
            &items,
            "t",
            p2p_core::manifest::CHUNK_SIZE_MIN,
            on_hashed,
        )
        .unwrap();
        // Progress over the stream (duplicates once): from none, per file read, to all.
        assert_eq!(heard, vec![(0, 20), (10, 20), (20, 20)]);
        assert_eq!(hashed.skipped, vec!["link".to_string()]);
        let table = hashed.tree.table();
        let paths: Vec<&str> = table.entries().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["a", "sub/b", "sub/c", "sub/empty", "zero"]);
        // "same bytes" once, "other byte" once.
        assert_eq!(hashed.manifest.size, 20);
        let mut stream = vec![0; 20];
        hashed.tree.read_at(&mut stream, 0).unwrap();
        assert_eq!(&stream, b"same bytesother byte");
        assert_eq!(
            hashed.manifest.file_sha256(),
            p2p_core::ids::sha256(b"same bytesother byte")
        );
    }

    #[test]
    fn several_paths_must_share_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("a"), b"1").unwrap();
        fs::write(dir.path().join("d/b"), b"2").unwrap();
        let (root, items) = root_and_items(&[dir.path().join("a"), dir.path().join("d")]).unwrap();
        assert_eq!(items, vec!["a", "d"]);
        let hashed = hash_tree(
            &root,
            &items,
            "set",
            p2p_core::manifest::CHUNK_SIZE_MIN,
            |_, _| {},
        )
        .unwrap();
        assert_eq!(hashed.tree.table().file_count(), 2);
        let err = root_and_items(&[dir.path().join("a"), dir.path().join("d/b")]).unwrap_err();
        assert!(err.to_string().contains("one directory"), "{err}");
    }
}
