//! Files on disk: hashing a file into a manifest, the `NAME.part` file a download writes
//! into (its resume record is `record`), positional chunk reads and verified writes, and
//! the final sync and rename. The part file and its record are opened and renamed through
//! `no_follow`: a link planted at their names is refused, never written through.
//!
//! Every function here blocks: the peer task runs them on smol's blocking pool. Reads and
//! writes are positional (`read_exact_at`, `write_all_at`) on a shared `File`, so any
//! number of them can run at once without seeking, and no function holds more than one
//! chunk (or one 1 MiB buffer) in memory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use p2p_core::ids::to_hex;
use p2p_core::manifest::Manifest;
use p2p_core::peer::StoreOutcome;
use p2p_core::{ChunkCheck, ChunkSet, ContentId, ManifestBuilder};
use sha2::{Digest, Sha256};

use crate::io::buffer_pool::{DIRECT_ALIGN, send_pool};
use crate::io::no_follow;
use crate::io::record::{Record, read_record, write_record};
use crate::io::selection::Selection;
use crate::io::tree::Tree;

/// Bytes read at once when hashing a file.
const HASH_READ_LEN: usize = 1024 * 1024;
/// Suffix of a download in progress.
pub const PART_SUFFIX: &str = ".part";
/// Suffix (after `.part`) of the resume record.
pub const RECORD_SUFFIX: &str = ".p2p";

// ------------------------------------------------------------------ hashing

/// Hashes `path` into a manifest named `name`. One pass on one thread: a chunk's hash
/// continues from the previous chunk's (see `p2p_core::manifest`), so chunks cannot be
/// hashed apart.
pub fn hash_file(path: &Path, name: &str, chunk_size: u32) -> anyhow::Result<Manifest> {
    hash_open_file(&File::open(path)?, name, chunk_size)
}

/// [`hash_file`] of a file already open: a part file is hashed through the handle it was
/// written through, not by a name someone may have pointed elsewhere since. Positional
/// reads from the start, whatever the handle's cursor.
pub fn hash_open_file(file: &File, name: &str, chunk_size: u32) -> anyhow::Result<Manifest> {
    let mut builder = ManifestBuilder::new(name, chunk_size)?;
    let mut buf = vec![0u8; HASH_READ_LEN];
    let mut offset = 0u64;
    loop {
        let n = file.read_at(&mut buf, offset)?;
        if n == 0 {
            break;
        }
        builder.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(builder.finish()?)
}

/// SHA-256 of a whole file, as lowercase hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_READ_LEN];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(to_hex(&hasher.finalize()))
}

// ------------------------------------------------------------------ chunk I/O

/// Where a content's bytes are: one file, or a collection's tree of files.
#[derive(Debug)]
pub enum Storage {
    File(File),
    /// Boxed: a tree's table would make every event carrying a storage as large.
    Tree(Box<Tree>),
}

impl Storage {
    /// Reads `length` bytes of the content at `offset` into a buffer of the send pool (see
    /// [`read_at`]; a tree's files are read buffered: their pieces are rarely aligned).
    pub fn read_at(&self, offset: u64, length: u32, uncached: bool) -> io::Result<Bytes> {
        match self {
            Storage::File(file) => read_at(file, offset, length, uncached),
            Storage::Tree(tree) => {
                let mut buf = send_pool().take_blocking(length as usize);
                tree.read_at(buf.as_mut(), offset)?;
                Ok(buf.into_bytes())
            }
        }
    }

    /// Reads `buf.len()` bytes at `offset` (to verify what is on disk).
    fn read_into(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Storage::File(file) => file.read_exact_at(buf, offset),
            Storage::Tree(tree) => tree.read_at(buf, offset),
        }
    }

    /// Checks `data` and writes it at `offset` only if it is the chunk `check` describes.
    pub fn store_verified(&self, offset: u64, check: &ChunkCheck, data: &[u8]) -> StoreOutcome {
        match self {
            Storage::File(file) => store_verified(file, offset, check, data),
            Storage::Tree(_) if !check.matches(data) => StoreOutcome::HashMismatch,
            Storage::Tree(tree) => match tree.write_at(data, offset) {
                Ok(()) => StoreOutcome::Stored,
                Err(e) => StoreOutcome::Io(e.to_string()),
            },
        }
    }

    /// Makes a complete download durable: syncs the file; for a tree, first copies each
    /// content to its other paths, then syncs every file and directory.
    pub fn sync(&self, paths: &PartPaths) -> Result<(), String> {
        match self {
            Storage::File(file) => sync_part(file, paths),
            Storage::Tree(tree) => tree
                .finish()
                .map_err(|e| format!("cannot finish {}: {e}", paths.part.display())),
        }
    }
}

/// Reads `length` bytes at `offset` of the file, into a buffer of the send pool (waiting
/// for one: this runs on the blocking pool). `uncached`: the file's pages are unlikely to
/// be in the page cache (a download's chunks are written with direct I/O), so the block is
/// read with direct I/O when it is aligned for it; otherwise, and for a published file
/// (usually cached: it was just hashed), buffered.
pub fn read_at(file: &File, offset: u64, length: u32, uncached: bool) -> io::Result<Bytes> {
    let mut buf = send_pool().take_blocking(length as usize);
    if !(uncached && read_direct(file, buf.as_mut(), offset)) {
        file.read_exact_at(buf.as_mut(), offset)?;
    }
    Ok(buf.into_bytes())
}

/// Reads `buf` at `offset` with direct I/O when it is aligned for it: straight from the
/// disk, without filling the page cache. A chunk this peer downloaded was written that way
/// (see [`write_direct`]), so it is not cached, and a buffered read would first allocate
/// fresh page-cache pages for it: here that costs more than the read (512 MiB written with
/// `O_DIRECT` reads back buffered at 534 MB/s, with `O_DIRECT` at 1.4 GB/s).
fn read_direct(file: &File, buf: &mut [u8], offset: u64) -> bool {
    if !is_direct_aligned(buf, offset) {
        return false;
    }
    let Some(direct) = open_direct(file, false) else {
        return false;
    };
    direct.read_exact_at(buf, offset).is_ok()
}

/// Checks `data` and writes it at `offset` only if it is the chunk `check` describes.
pub fn store_verified(file: &File, offset: u64, check: &ChunkCheck, data: &[u8]) -> StoreOutcome {
    if !check.matches(data) {
        return StoreOutcome::HashMismatch;
    }
    if write_direct(file, data, offset) {
        return StoreOutcome::Stored;
    }
    match file.write_all_at(data, offset) {
        Ok(()) => {
            written_back_early(file, data.len());
            StoreOutcome::Stored
        }
        Err(e) => StoreOutcome::Io(e.to_string()),
    }
}

#[cfg(target_os = "linux")]
const O_DIRECT: i32 = if cfg!(any(target_arch = "aarch64", target_arch = "arm")) {
    0o200000
} else {
    0o40000
};

/// A second handle on the file `file` is open on, with `O_DIRECT` (Linux: through
/// `/proc/self/fd`). `None` where the system or file system has no direct I/O.
#[cfg(target_os = "linux")]
fn open_direct(file: &File, write: bool) -> Option<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(O_DIRECT)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_file: &File, _write: bool) -> Option<File> {
    None
}

fn is_direct_aligned(data: &[u8], offset: u64) -> bool {
    data.as_ptr().align_offset(DIRECT_ALIGN) == 0
        && offset.is_multiple_of(DIRECT_ALIGN as u64)
        && data.len().is_multiple_of(DIRECT_ALIGN)
        && !data.is_empty()
}

/// Writes `data` at `offset` with direct I/O when it is aligned for it: straight from the
/// received buffer to the disk, without passing through (and filling) the page cache.
/// Writing fresh page-cache pages is this machine's slowest memory operation (a buffered
/// 1 GiB write: 155 MB/s; direct: 1.7 GB/s), and the download syncs the file at the end
/// anyway. `false`: not written (unaligned, or no direct I/O here); write it buffered.
fn write_direct(file: &File, data: &[u8], offset: u64) -> bool {
    if !is_direct_aligned(data, offset) {
        return false;
    }
    let Some(direct) = open_direct(file, true) else {
        return false;
    };
    direct.write_all_at(data, offset).is_ok()
}

/// Bytes stored between two early write-backs.
const EARLY_SYNC_BYTES: u64 = 64 * 1024 * 1024;

/// Starts writing stored chunks back to the disk while the download goes on (one
/// `fdatasync` on a thread of its own every [`EARLY_SYNC_BYTES`], never two at once), so
/// the sync before the final rename finds little left to write instead of the whole file.
/// Only an optimisation: the final sync is what makes the file durable.
fn written_back_early(file: &File, len: usize) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    static UNSYNCED: AtomicU64 = AtomicU64::new(0);
    static SYNCING: AtomicBool = AtomicBool::new(false);
    let unsynced = UNSYNCED.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
    if unsynced < EARLY_SYNC_BYTES || SYNCING.swap(true, Ordering::AcqRel) {
        return;
    }
    UNSYNCED.store(0, Ordering::Relaxed);
    let Ok(file) = file.try_clone() else {
        SYNCING.store(false, Ordering::Release);
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("p2p-writeback".into())
        .spawn(move || {
            let _ = file.sync_data();
            SYNCING.store(false, Ordering::Release);
        });
    if spawned.is_err() {
        SYNCING.store(false, Ordering::Release);
    }
}

// ------------------------------------------------------------------ destinations

/// Where the user wants a download to go.
#[derive(Clone, Debug)]
pub enum Destination {
    /// Into this directory, under the (sanitised) name from the manifest.
    Dir(PathBuf),
    /// At exactly this path.
    File(PathBuf),
}

impl Destination {
    /// `-o PATH`: a directory (existing, or written with a trailing slash) receives the
    /// file under its own name; anything else is the file's path. No `-o`: the current
    /// directory.
    pub fn from_output(output: Option<&Path>) -> Destination {
        match output {
            None => Destination::Dir(PathBuf::from(".")),
            Some(path) if path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/') => {
                Destination::Dir(path.to_path_buf())
            }
            Some(path) => Destination::File(path.to_path_buf()),
        }
    }

    /// The final path for a file whose manifest is named `name` (untrusted: sanitised;
    /// a name with nothing usable left gives way to the content id).
    pub fn final_path(&self, name: &str, content_id: ContentId) -> PathBuf {
        match self {
            Destination::Dir(dir) => {
                let safe = p2p_core::filename::sanitize_file_name(name).unwrap_or_else(|e| {
                    tracing::warn!(name = %name.escape_debug(), "{e}; saving under the content id");
                    content_id.to_string()
                });
                dir.join(safe)
            }
            Destination::File(path) => path.clone(),
        }
    }
}

/// The paths of one download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartPaths {
    pub final_path: PathBuf,
    pub part: PathBuf,
    pub record: PathBuf,
}

impl PartPaths {
    pub fn for_final(final_path: PathBuf) -> PartPaths {
        let mut part = final_path.clone().into_os_string();
        part.push(PART_SUFFIX);
        let mut record = part.clone();
        record.push(RECORD_SUFFIX);
        PartPaths {
            final_path,
            part: part.into(),
            record: record.into(),
        }
    }
}

/// A download ready to receive chunks.
#[derive(Debug)]
pub struct Prepared {
    pub storage: Storage,
    /// Chunks verified on disk.
    pub have: ChunkSet,
    pub paths: PartPaths,
    /// The manifest's chunk size, to place chunks in the file.
    pub chunk_size: u32,
    /// The final file already exists with exactly this content: nothing to rename.
    pub in_place: bool,
    /// The whole file's SHA-256, as lowercase hex: what checking every chunk computes.
    pub sha256: String,
    /// The chunks to download when only part of a collection is (`get --only`); `None`:
    /// every chunk.
    pub wanted: Option<ChunkSet>,
}

/// Makes room for a download: a collection's tree ([`prepare_collection`]), or a single
/// file: finds the final path, refuses to replace a different file
/// there without `force`, resumes from `NAME.part` when its record is for this content (the
/// chunks it lists are verified again, not trusted), or else creates a preallocated part
/// file and a fresh record. A link at `NAME.part` or `NAME.part.p2p` is refused.
pub fn prepare_download(
    destination: &Destination,
    force: bool,
    content_id: ContentId,
    manifest: &Manifest,
    only: Option<&Selection>,
) -> Result<Prepared, String> {
    if manifest.is_collection() {
        return prepare_collection(destination, content_id, manifest, only);
    }
    if only.is_some() {
        return Err(format!(
            "--only picks paths of a shared directory, and '{}' is a single file; run again \
             without --only",
            manifest.name.escape_debug()
        ));
    }
    let final_path = destination.final_path(&manifest.name, content_id);
    let paths = PartPaths::for_final(final_path);
    let shown = paths.final_path.display().to_string();
    if let Some(parent) = paths.final_path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
    {
        return Err(format!("directory {} does not exist", parent.display()));
    }
    let chunk_count = manifest.chunk_count();
    // A link at the final path counts as something there, even one pointing nowhere: the
    // final rename would replace it.
    if fs::symlink_metadata(&paths.final_path).is_ok() {
        let meta = fs::metadata(&paths.final_path).ok();
        if meta.as_ref().is_some_and(|meta| meta.is_dir()) {
            return Err(format!("{shown} is a directory"));
        }
        // Same bytes already there (a second get into the same place): nothing to do.
        if let Some(meta) = meta
            && meta.len() == manifest.size
        {
            let file =
                File::open(&paths.final_path).map_err(|e| format!("cannot open {shown}: {e}"))?;
            let storage = Storage::File(file);
            let have = verify_chunks(&storage, manifest, 0..chunk_count);
            if have.is_full() {
                return Ok(Prepared {
                    storage,
                    have,
                    paths,
                    chunk_size: manifest.chunk_size,
                    in_place: true,
                    sha256: to_hex(&manifest.file_sha256()),
                    wanted: None,
                });
            }
        }
        if !force {
            return Err(format!(
                "{shown} already exists with other content; use --force to replace it, or -o to choose another path"
            ));
        }
    }
    // The record first, so that a link there is refused before anything is created.
    let record = match read_record(&paths.record) {
        Ok(record) => record,
        Err(_) if no_follow::is_link(&paths.record) => {
            return Err(no_follow::link_refused(&paths.record));
        }
        // An unreadable record is no record: the download starts over.
        Err(_) => None,
    };
    let (file, existed) = no_follow::open_or_create(&paths.part)
        .map_err(|e| no_follow::describe_open_error(&paths.part, "open", &e))?;
    let resumable = existed
        && record
            .as_ref()
            .is_some_and(|r| r.content_id == content_id && r.chunks.len() == chunk_count)
        && file.metadata().is_ok_and(|m| m.len() == manifest.size);
    let storage = Storage::File(file);
    let have = if resumable {
        // `resumable` checked the record exists.
        let listed = record.map(|r| r.chunks).unwrap_or_default();
        let have = verify_chunks(&storage, manifest, listed.iter());
        tracing::info!(
            part = %paths.part.display(),
            "resuming: {} of {} chunks listed, {} verified",
            listed.count(),
            chunk_count,
            have.count()
        );
        have
    } else {
        if let Storage::File(file) = &storage {
            preallocate(file, &paths.part, manifest.size)?;
        }
        ChunkSet::new(chunk_count)
    };
    recorded(paths, storage, have, content_id, manifest)
}

/// Writes the resume record of a download about to start with `have` verified, and hands
/// back what the download needs.
fn recorded(
    paths: PartPaths,
    storage: Storage,
    have: ChunkSet,
    content_id: ContentId,
    manifest: &Manifest,
) -> Result<Prepared, String> {
    write_record(
        &paths.record,
        &Record {
            content_id,
            chunks: have.clone(),
        },
    )
    .map_err(|e| format!("cannot write {}: {e}", paths.record.display()))?;
    Ok(Prepared {
        storage,
        have,
        paths,
        chunk_size: manifest.chunk_size,
        in_place: false,
        sha256: to_hex(&manifest.file_sha256()),
        wanted: None,
    })
}

/// Empties a part file (a stale one may hold anything) and gives it its full size.
fn preallocate(file: &File, part: &Path, size: u64) -> Result<(), String> {
    file.set_len(0)
        .and_then(|()| file.set_len(size))
        .map_err(|e| format!("cannot preallocate {}: {e}", part.display()))
}

/// The part file of a cooperative fetch, which does not resume: refuses a final path where
/// something exists without `force`, then creates `NAME.part` (or empties the regular file
/// left there) at its full size. A link at `NAME.part` is refused.
pub fn create_part(paths: &PartPaths, size: u64, force: bool) -> Result<File, String> {
    if !force && fs::symlink_metadata(&paths.final_path).is_ok() {
        return Err(format!(
            "{} already exists; --force replaces it, or -o chooses another path",
            paths.final_path.display()
        ));
    }
    let (file, _) = no_follow::open_or_create(&paths.part)
        .map_err(|e| no_follow::describe_open_error(&paths.part, "create", &e))?;
    preallocate(&file, &paths.part, size)?;
    Ok(file)
}

/// The record beside a part file: none when absent or unreadable (the download starts
/// over); a link there is refused, never followed.
fn read_record_refusing_links(paths: &PartPaths) -> Result<Option<Record>, String> {
    match read_record(&paths.record) {
        Ok(record) => Ok(record),
        Err(_) if no_follow::is_link(&paths.record) => Err(no_follow::link_refused(&paths.record)),
        Err(_) => Ok(None),
    }
}

/// The part file of a cooperative fetch that may resume: when `NAME.part` is there with a
/// record for this very fetch (`key`: its URL, validator, size and range length) listing
/// `range_count` ranges, the file is kept and the ranges it lists are returned; otherwise
/// any record is removed first (it is no longer true) and the part created empty, as by
/// [`create_part`]. A link at either name is refused, never followed.
pub fn open_fetch_part(
    paths: &PartPaths,
    size: u64,
    force: bool,
    key: ContentId,
    range_count: u32,
) -> Result<(File, Option<ChunkSet>), String> {
    if !force && fs::symlink_metadata(&paths.final_path).is_ok() {
        return Err(format!(
            "{} already exists; --force replaces it, or -o chooses another path",
            paths.final_path.display()
        ));
    }
    let record = read_record_refusing_links(paths)?;
    let (file, existed) = no_follow::open_or_create(&paths.part)
        .map_err(|e| no_follow::describe_open_error(&paths.part, "create", &e))?;
    let same_size = file.metadata().is_ok_and(|m| m.len() == size);
    let ranges = record
        .filter(|r| existed && same_size && r.content_id == key && r.chunks.len() == range_count)
        .map(|r| r.chunks);
    if ranges.is_some() {
        return Ok((file, ranges));
    }
    match fs::remove_file(&paths.record) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(format!("cannot remove {}: {e}", paths.record.display()));
        }
        _ => {}
    }
    preallocate(&file, &paths.part, size)?;
    Ok((file, None))
}

/// Syncs a fetch's part file, then records `ranges` as on disk: the record never lists a
/// range whose bytes a crash could lose.
pub fn save_fetch_record(
    file: &File,
    paths: &PartPaths,
    key: ContentId,
    ranges: ChunkSet,
) -> Result<(), String> {
    file.sync_data()
        .map_err(|e| format!("cannot sync {}: {e}", paths.part.display()))?;
    let record = Record {
        content_id: key,
        chunks: ranges,
    };
    write_record(&paths.record, &record)
        .map_err(|e| format!("cannot write {}: {e}", paths.record.display()))
}

/// Makes room for a collection: checks its file table (every path through the sanitiser,
/// every limit) before anything is created, refuses a final path that exists, then makes
/// the tree under `NAME.part/` (or resumes the one there when its record is for this
/// content: the chunks it lists are verified again, not trusted). A link at `NAME.part`,
/// at its record, or anywhere inside the tree is refused, never followed.
fn prepare_collection(
    destination: &Destination,
    content_id: ContentId,
    manifest: &Manifest,
    only: Option<&Selection>,
) -> Result<Prepared, String> {
    let name = &manifest.name;
    let encoded = manifest.file_table.as_deref().unwrap_or_default();
    let table = p2p_core::collection::FileTable::decode(encoded, manifest.size).map_err(|e| {
        format!(
            "refusing the collection '{}': {e}; nothing was created",
            name.escape_debug()
        )
    })?;
    let chunk_count = manifest.chunk_count();
    let part = only.map(|only| table.part(manifest.chunk_size, chunk_count, |p| only.picks(p)));
    if let (Some(only), Some(part)) = (only, &part)
        && part.picked.is_empty()
    {
        return Err(format!(
            "--only {} matches none of the {} paths of '{}'; nothing was created (`p2p ls \
             --json` lists them)",
            only.describe(),
            table.entries().len(),
            name.escape_debug()
        ));
    }
    let paths = PartPaths::for_final(destination.final_path(name, content_id));
    if let Some(parent) = paths.final_path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
    {
        return Err(format!("directory {} does not exist", parent.display()));
    }
    if fs::symlink_metadata(&paths.final_path).is_ok() {
        return Err(format!(
            "{} already exists; a collection never replaces anything: remove it, or choose \
             another directory with -o",
            paths.final_path.display()
        ));
    }
    let record = read_record_refusing_links(&paths)?;
    let part_dir = &paths.part;
    let resumable = match fs::symlink_metadata(part_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir(part_dir)
                .map_err(|e| format!("cannot create {}: {e}", part_dir.display()))?;
            false
        }
        Err(e) => return Err(format!("cannot examine {}: {e}", part_dir.display())),
        Ok(meta) if meta.file_type().is_symlink() => return Err(no_follow::link_refused(part_dir)),
        Ok(meta) if !meta.is_dir() => {
            return Err(format!(
                "{} exists and is not a directory; remove it and run again",
                part_dir.display()
            ));
        }
        Ok(_)
            if record
                .as_ref()
                .is_some_and(|r| r.content_id == content_id && r.chunks.len() == chunk_count) =>
        {
            true
        }
        Ok(_) => {
            return Err(format!(
                "{} exists but is not a download of this collection (no resume record for \
                 it); remove it and run again",
                part_dir.display()
            ));
        }
    };
    let wanted = part.as_ref().map(|part| part.chunks.clone());
    let tree = match &part {
        Some(part) => Tree::new_part(part_dir.clone(), table, part),
        None => Tree::new(part_dir.clone(), table),
    };
    tree.create(!resumable).map_err(|e| {
        format!(
            "cannot create the collection's files in {}: {e} (p2p never writes through a \
             symbolic link; remove any link there and run again)",
            part_dir.display()
        )
    })?;
    let storage = Storage::Tree(Box::new(tree));
    let have = match record.filter(|_| resumable) {
        Some(record) => {
            let have = verify_chunks(&storage, manifest, record.chunks.iter());
            tracing::info!(
                part = %part_dir.display(),
                "resuming: {} of {} chunks listed, {} verified",
                record.chunks.count(),
                chunk_count,
                have.count()
            );
            have
        }
        None => ChunkSet::new(chunk_count),
    };
    let mut prepared = recorded(paths, storage, have, content_id, manifest)?;
    prepared.wanted = wanted;
    Ok(prepared)
}

/// Which of `candidates` hash to what the manifest says.
fn verify_chunks(
    storage: &Storage,
    manifest: &Manifest,
    candidates: impl Iterator<Item = u32>,
) -> ChunkSet {
    let mut have = ChunkSet::new(manifest.chunk_count());
    // One chunk at a time, as a download holds one while checking it.
    let mut buf = Vec::new();
    for chunk_index in candidates {
        let Some(check) = manifest.chunk_check(chunk_index) else {
            continue;
        };
        buf.resize(manifest.chunk_len(chunk_index) as usize, 0);
        let offset = manifest.chunk_offset(chunk_index);
        if storage.read_into(&mut buf, offset).is_ok() && check.matches(&buf) {
            have.insert(chunk_index);
        }
    }
    have
}

/// Makes a finished download durable and gives it its final name: [`sync_part`], then
/// [`rename_part`].
pub fn finalize(file: &File, paths: &PartPaths, force: bool) -> Result<(), String> {
    sync_part(file, paths)?;
    rename_part(paths, force)
}

/// Syncs the part file: its bytes are on the disk before it gets its final name.
pub fn sync_part(file: &File, paths: &PartPaths) -> Result<(), String> {
    file.sync_all()
        .map_err(|e| format!("cannot sync {}: {e}", paths.part.display()))
}

/// Renames a synced part file to its final name (refusing to replace anything that appeared
/// there meanwhile, even a link, unless `force`), syncs the directory, and removes the
/// record.
pub fn rename_part(paths: &PartPaths, force: bool) -> Result<(), String> {
    let renamed = if force {
        fs::rename(&paths.part, &paths.final_path)
    } else {
        no_follow::rename_no_replace(&paths.part, &paths.final_path)
    };
    renamed.map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            return format!(
                "{} appeared while downloading; the download is kept in {}",
                paths.final_path.display(),
                paths.part.display()
            );
        }
        format!(
            "cannot rename {} to {}: {e}",
            paths.part.display(),
            paths.final_path.display()
        )
    })?;
    if let Some(dir) = paths.final_path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        // Best effort: some file systems refuse to sync a directory.
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    let _ = fs::remove_file(&paths.record);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::buffer_pool::recv_pool;

    fn file_of(prepared: &Prepared) -> &File {
        match &prepared.storage {
            Storage::File(file) => file,
            Storage::Tree(_) => panic!("a single file's download"),
        }
    }

    fn manifest_of(data: &[u8], name: &str) -> Manifest {
        let mut builder = ManifestBuilder::new(name, p2p_core::manifest::CHUNK_SIZE_MIN).unwrap();
        builder.update(data);
        builder.finish().unwrap()
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn read_at_returns_the_bytes_from_cache_disk_or_unaligned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let data = sample(3 * 65536 + 100);
        fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        // Aligned (read direct when `uncached`), unaligned (buffered), and a short last
        // block.
        for (offset, len, uncached) in [
            (65536, 65536, false),
            (65536, 65536, true),
            (4096 + 1, 5000, false),
            (4096 + 1, 5000, true),
            (3 * 65536, 100, false),
        ] {
            let got = read_at(&file, offset as u64, len as u32, uncached).unwrap();
            assert_eq!(&got[..], &data[offset..offset + len], "at {offset}+{len}");
        }
        // Past the end is an error, not a short block.
        assert!(read_at(&file, 3 * 65536, 4096, false).is_err());
        assert!(read_at(&file, 3 * 65536, 4096, true).is_err());
    }

    #[test]
    fn a_chunk_stored_direct_reads_back_direct() {
        let dir = tempfile::tempdir().unwrap();
        let data = sample(3 * 65536);
        let manifest = manifest_of(&data, "data");
        let path = dir.path().join("data");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(data.len() as u64).unwrap();
        let chunk_size = manifest.chunk_size as usize;
        for index in 0..manifest.chunk_count() {
            let range = index as usize * chunk_size..(index as usize + 1) * chunk_size;
            // From a pooled (aligned) buffer, as received blocks are: written direct.
            let mut block = recv_pool().take_blocking(chunk_size);
            block.as_mut().copy_from_slice(&data[range]);
            let check = manifest.chunk_check(index).unwrap();
            let offset = index as u64 * chunk_size as u64;
            let outcome = store_verified(&file, offset, &check, block.as_ref());
            assert_eq!(outcome, StoreOutcome::Stored);
        }
        for (offset, len) in [(0, chunk_size), (chunk_size, 2 * chunk_size), (100, 4000)] {
            let got = read_at(&file, offset as u64, len as u32, true).unwrap();
            assert_eq!(&got[..], &data[offset..offset + len], "at {offset}+{len}");
        }
    }

    #[test]
    fn read_direct_reads_aligned_blocks_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let data = sample(4 * DIRECT_ALIGN);
        fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let mut pooled = send_pool().take_blocking(2 * DIRECT_ALIGN);
        let buf = pooled.as_mut();
        if read_direct(&file, buf, DIRECT_ALIGN as u64) {
            assert_eq!(buf, &data[DIRECT_ALIGN..3 * DIRECT_ALIGN]);
        }
        assert!(
            !read_direct(&file, buf, 1),
            "an unaligned offset is not read direct"
        );
        assert!(
            !read_direct(&file, &mut buf[..100], 0),
            "nor an unaligned length"
        );
    }

    #[test]
    fn hash_file_matches_builder_and_sha256() {
        let dir = tempfile::tempdir().unwrap();
        // More than one read buffer, and a short last chunk.
        let data = sample(HASH_READ_LEN + 5 * 16 * 1024 + 123);
        let path = dir.path().join("data");
        fs::write(&path, &data).unwrap();
        let manifest = hash_file(&path, "data", p2p_core::manifest::CHUNK_SIZE_MIN).unwrap();
        assert_eq!(manifest, manifest_of(&data, "data"));
        assert_eq!(to_hex(&manifest.file_sha256()), sha256_file(&path).unwrap());
    }

    #[test]
    fn refuses_to_overwrite_a_different_file() {
        let dir = tempfile::tempdir().unwrap();
        let data = sample(40_000);
        let manifest = manifest_of(&data, "f");
        let content_id = manifest.content_id();
        let destination = Destination::Dir(dir.path().to_path_buf());
        fs::write(dir.path().join("f"), b"something else").unwrap();
        let err = prepare_download(&destination, false, content_id, &manifest, None).unwrap_err();
        assert!(err.contains("--force"), "{err}");
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"something else");
        assert!(prepare_download(&destination, true, content_id, &manifest, None).is_ok());
        // The same content already in place is accepted as done, without --force.
        fs::write(dir.path().join("f"), &data).unwrap();
        let prepared = prepare_download(&destination, false, content_id, &manifest, None).unwrap();
        assert!(prepared.in_place && prepared.have.is_full());
    }

    #[test]
    fn a_linked_part_or_record_is_refused_and_its_target_untouched() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("precious");
        fs::write(&target, b"precious bytes").unwrap();
        let data = sample(40_000);
        let manifest = manifest_of(&data, "f");
        let content_id = manifest.content_id();
        let destination = Destination::Dir(dir.path().to_path_buf());
        let paths = PartPaths::for_final(dir.path().join("f"));
        for link in [&paths.part, &paths.record] {
            symlink(&target, link).unwrap();
            for force in [false, true] {
                let err =
                    prepare_download(&destination, force, content_id, &manifest, None).unwrap_err();
                assert!(
                    err.contains("symbolic link") && err.contains("remove"),
                    "{err}"
                );
            }
            let size = data.len() as u64;
            if link == &paths.part {
                let err = create_part(&paths, size, false).unwrap_err();
                assert!(err.contains("symbolic link"), "{err}");
            }
            assert_eq!(fs::read(&target).unwrap(), b"precious bytes");
            fs::remove_file(link).unwrap();
        }
        assert!(!paths.final_path.exists());
    }

    #[test]
    fn a_link_at_the_final_path_is_not_replaced_without_force() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let data = sample(40_000);
        let manifest = manifest_of(&data, "f");
        let content_id = manifest.content_id();
        let destination = Destination::Dir(dir.path().to_path_buf());
        let final_path = dir.path().join("f");
        // Dangling: `exists()` says no, but the rename would replace it.
        symlink(dir.path().join("nowhere"), &final_path).unwrap();
        let err = prepare_download(&destination, false, content_id, &manifest, None).unwrap_err();
        assert!(err.contains("--force"), "{err}");
        let err = create_part(&PartPaths::for_final(final_path.clone()), 10, false).unwrap_err();
        assert!(err.contains("--force"), "{err}");
        // Appearing during the download: the part file is kept, the link too.
        fs::remove_file(&final_path).unwrap();
        let prepared = prepare_download(&destination, false, content_id, &manifest, None).unwrap();
        symlink(dir.path().join("nowhere"), &final_path).unwrap();
        let err = finalize(file_of(&prepared), &prepared.paths, false).unwrap_err();
        assert!(err.contains("appeared while downloading"), "{err}");
        assert!(prepared.paths.part.exists() && no_follow::is_link(&final_path));
        // With force, the link itself is replaced; nothing is written where it pointed.
        finalize(file_of(&prepared), &prepared.paths, true).unwrap();
        assert!(!no_follow::is_link(&final_path) && !dir.path().join("nowhere").exists());
    }

    #[test]
    fn a_stale_part_without_a_record_is_emptied_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = sample(40_000);
        let manifest = manifest_of(&data, "f");
        let destination = Destination::Dir(dir.path().to_path_buf());
        fs::write(dir.path().join("f.part"), b"stale").unwrap();
        let prepared =
            prepare_download(&destination, false, manifest.content_id(), &manifest, None).unwrap();
        assert!(prepared.have.is_empty());
        let mut head = [0u8; 5];
        file_of(&prepared).read_exact_at(&mut head, 0).unwrap();
        assert_eq!(head, [0; 5]);
    }

    #[test]
    fn resume_verifies_listed_chunks_only() {
        let dir = tempfile::tempdir().unwrap();
        let data = sample(3 * 16 * 1024);
        let manifest = manifest_of(&data, "f");
        let content_id = manifest.content_id();
        let destination = Destination::Dir(dir.path().to_path_buf());
        let prepared = prepare_download(&destination, false, content_id, &manifest, None).unwrap();
        assert!(prepared.have.is_empty());
        assert_eq!(
            file_of(&prepared).metadata().unwrap().len(),
            data.len() as u64
        );
        // Chunk 0 written and recorded; chunk 1 recorded but corrupt; chunk 2 written but
        // not recorded (it is fetched again, not trusted).
        for chunk in [0u32, 2] {
            let range =
                manifest.chunk_offset(chunk) as usize..(manifest.chunk_offset(chunk + 1) as usize);
            let outcome = store_verified(
                file_of(&prepared),
                range.start as u64,
                &manifest.chunk_check(chunk).unwrap(),
                &data[range],
            );
            assert_eq!(outcome, StoreOutcome::Stored);
        }
        let mut listed = ChunkSet::new(3);
        listed.insert(0);
        listed.insert(1);
        write_record(
            &prepared.paths.record,
            &Record {
                content_id,
                chunks: listed,
            },
        )
        .unwrap();
        drop(prepared);
        let resumed = prepare_download(&destination, false, content_id, &manifest, None).unwrap();
        assert_eq!(resumed.have.iter().collect::<Vec<_>>(), vec![0]);
        assert_eq!(
            store_verified(
                file_of(&resumed),
                0,
                &manifest.chunk_check(1).unwrap(),
                &data[..100]
            ),
            StoreOutcome::HashMismatch
        );
        finalize(file_of(&resumed), &resumed.paths, false).unwrap();
        assert!(dir.path().join("f").exists());
        assert!(!resumed.paths.part.exists() && !resumed.paths.record.exists());
    }
}
