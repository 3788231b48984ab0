//! The knobs of a collection run (`Scenario::Collection`): the tree the seeder shares (many
//! small files, some large ones, copies, empty files and directories, executables) and how
//! many downloading peers want only part of it (`p2p get --only`). Drawn from the seed in a
//! fixed order, after everything the other scenarios draw.
//!
//! The tree itself is laid out from `tree_seed` by [`CollectionKnobs::table`], a pure
//! function, so the configuration stays small and the world builds the same tree.

use std::fmt;

use p2p_core::ChunkSet;
use p2p_core::collection::{EntryKind, FileTable, SourceEntry};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::Scale;

/// Directories the small files are spread over.
const DIRS_MAX: u32 = 8;
/// Large files: each spans chunks.
const BIG_FILES_MAX_SMALL: u32 = 3;
const BIG_FILES_MAX_FULL: u32 = 6;

#[derive(Clone, Debug, PartialEq)]
pub struct CollectionKnobs {
    /// Files smaller than a chunk (a fifth of them empty): several share each chunk.
    pub small_files: u32,
    /// Files of one to four chunks.
    pub big_files: u32,
    /// Extra paths holding the same bytes as another file (stored once in the stream).
    pub copies: u32,
    pub empty_dirs: u32,
    /// Chance that a downloading peer wants only part of the tree, and then the chance
    /// that each path is picked.
    pub part_probability: f64,
    pub pick_probability: f64,
    /// Seeds the tree's layout (paths, sizes, kinds): see [`CollectionKnobs::table`].
    pub tree_seed: u64,
}

impl CollectionKnobs {
    pub fn generate(scale: Scale, rng: &mut ChaCha8Rng) -> CollectionKnobs {
        let (small_max, big_max) = match scale {
            Scale::Small => (60, BIG_FILES_MAX_SMALL),
            Scale::Full => (400, BIG_FILES_MAX_FULL),
        };
        CollectionKnobs {
            small_files: rng.random_range(1..=small_max),
            big_files: rng.random_range(0..=big_max),
            copies: rng.random_range(0..=6),
            empty_dirs: rng.random_range(0..=3),
            part_probability: rng.random_range(0.0..=0.8),
            pick_probability: rng.random_range(0.05..=0.5),
            tree_seed: rng.random(),
        }
    }

    /// The tree these knobs describe, for chunks of `chunk_size` bytes.
    pub fn table(&self, chunk_size: u32) -> FileTable {
        let mut rng = ChaCha8Rng::seed_from_u64(self.tree_seed);
        let chunk = u64::from(chunk_size);
        let mut entries = Vec::new();
        let mut key = 0u32;
        let mut next_key = || {
            key += 1;
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&key.to_le_bytes());
            bytes
        };
        for i in 0..self.small_files {
            let dir = rng.random_range(0..DIRS_MAX);
            let size = if rng.random_bool(0.2) {
                0
            } else {
                rng.random_range(1..=chunk / 3)
            };
            let kind = if rng.random_bool(0.1) {
                EntryKind::Executable
            } else {
                EntryKind::File
            };
            entries.push(SourceEntry {
                path: format!("d{dir}/small {i}"),
                kind,
                size,
                same_bytes_key: Some(next_key()),
            });
        }
        for i in 0..self.big_files {
            let size = rng.random_range(chunk..=4 * chunk);
            entries.push(SourceEntry {
                path: format!("big/b{i}.bin"),
                kind: EntryKind::File,
                size,
                same_bytes_key: Some(next_key()),
            });
        }
        // Copies of files already listed: the same size and key, so one place in the
        // stream and several paths.
        for i in 0..self.copies {
            let of = entries[rng.random_range(0..entries.len())].clone();
            entries.push(SourceEntry {
                path: format!("copies/c{i}"),
                ..of
            });
        }
        for i in 0..self.empty_dirs {
            entries.push(SourceEntry {
                path: format!("empty{i}"),
                kind: EntryKind::Dir,
                size: 0,
                same_bytes_key: None,
            });
        }
        // A tree of nothing but empty files has no stream to share: one byte at least.
        if entries.iter().all(|e| e.size == 0) {
            entries.push(SourceEntry {
                path: "one byte".into(),
                kind: EntryKind::File,
                size: 1,
                same_bytes_key: Some(next_key()),
            });
        }
        FileTable::lay_out(entries).expect("generated trees are within the collection limits")
    }

    /// Draws whether a downloading peer wants part of the tree and which: the chunks it
    /// asks for, as `get --only` computes them (`None`: the whole tree).
    pub fn draw_part(
        &self,
        table: &FileTable,
        chunk_size: u32,
        chunk_count: u32,
        rng: &mut ChaCha8Rng,
    ) -> Option<ChunkSet> {
        if !rng.random_bool(self.part_probability.clamp(0.0, 1.0)) {
            return None;
        }
        let picked: Vec<&str> = table
            .entries()
            .iter()
            .filter(|_| rng.random_bool(self.pick_probability.clamp(0.0, 1.0)))
            .map(|e| e.path.as_str())
            .collect();
        let part = table.part(chunk_size, chunk_count, |path| picked.contains(&path));
        Some(part.chunks)
    }
}

/// The length of the content stream `table` lays out: the manifest's size.
pub fn stream_len(table: &FileTable) -> u64 {
    table.contents().iter().map(|c| c.size).sum()
}

impl fmt::Display for CollectionKnobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "small_files={} big_files={} copies={} empty_dirs={} part_probability={:.2} \
             pick_probability={:.2} tree_seed={}",
            self.small_files,
            self.big_files,
            self.copies,
            self.empty_dirs,
            self.part_probability,
            self.pick_probability,
            self.tree_seed,
        )
    }
}
