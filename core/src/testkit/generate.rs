//! Structured generators from fuzzer bytes (`arbitrary`): every value they return is valid
//! for the encoder (strings within `STRING_LEN_MAX`, valid manifests, lists within their
//! limits), so encode→decode must give it back unchanged. The fuzz targets and harnesses
//! draw their messages here; the committed fuzz corpora are bytes read by these functions,
//! so the order in which they draw must not change.

use arbitrary::{Result, Unstructured};
use bytes::Bytes;

use crate::chunkset::ChunkSet;
use crate::ids::{ContentId, PeerId};
use crate::manifest::{CHUNK_SIZE_MAX, CHUNK_SIZE_MIN, Manifest, NAME_LEN_MAX, SHA256_BLOCK};
use crate::wire::{FileEntry, Message, MessageKind, PeerChunks, PeerEntry, STRING_LEN_MAX};

// Sizes of generated values: small, so a case stays fast; the codec's own limits are tested
// at their edges in `wire/tests.rs`.
/// Most chunks in a generated chunk set of any length.
const CHUNKSET_LEN_MAX: u32 = 80;
/// Most chunks in a generated manifest.
const MANIFEST_CHUNKS_MAX: u32 = 12;
/// Most indices in a generated `Have`.
const HAVE_INDICES_MAX: usize = 64;
/// Most entries in any other generated list.
const LIST_ENTRIES_MAX: usize = 8;

/// Truncates at a char boundary at or below `max` bytes.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

pub fn string(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(truncate(u.arbitrary()?, STRING_LEN_MAX))
}

pub fn content_id(u: &mut Unstructured<'_>) -> Result<ContentId> {
    u.arbitrary()
}

pub fn peer_id(u: &mut Unstructured<'_>) -> Result<PeerId> {
    u.arbitrary()
}

/// A set over `len` chunks with arbitrary members.
pub fn chunkset_of_len(u: &mut Unstructured<'_>, len: u32) -> Result<ChunkSet> {
    let mut set = ChunkSet::new(len);
    // Draw bits a byte at a time; a short input leaves the rest empty.
    for i in 0..len {
        if i % 8 == 0 && u.is_empty() {
            break;
        }
        if u.arbitrary::<bool>()? {
            set.insert(i);
        }
    }
    Ok(set)
}

pub fn chunkset(u: &mut Unstructured<'_>) -> Result<ChunkSet> {
    let len = u.int_in_range(0..=CHUNKSET_LEN_MAX)?;
    chunkset_of_len(u, len)
}

/// A valid manifest of up to `max_chunks` chunks.
pub fn manifest_upto(u: &mut Unstructured<'_>, max_chunks: u32) -> Result<Manifest> {
    let name = truncate(u.arbitrary()?, NAME_LEN_MAX);
    let chunk_size = if u.arbitrary()? {
        CHUNK_SIZE_MIN
    } else {
        // Whole SHA-256 blocks, as `validate` asks.
        u.int_in_range(CHUNK_SIZE_MIN / SHA256_BLOCK..=CHUNK_SIZE_MAX / SHA256_BLOCK)?
            * SHA256_BLOCK
    };
    let count = u.int_in_range(0..=max_chunks)?;
    let size = if count == 0 {
        0
    } else {
        u64::from(count - 1) * u64::from(chunk_size) + u64::from(u.int_in_range(1..=chunk_size)?)
    };
    let mut chunk_hashes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        chunk_hashes.push(u.arbitrary()?);
    }
    let manifest = Manifest {
        name,
        size,
        chunk_size,
        chunk_hashes: chunk_hashes.into(),
        // Any bytes within the limit: the codec carries a table without reading it.
        file_table: if u.arbitrary()? {
            let len = u.int_in_range(0..=64usize)?;
            Some(bytes::Bytes::from(u.bytes(len)?.to_vec()))
        } else {
            None
        },
    };
    debug_assert!(manifest.validate().is_ok());
    Ok(manifest)
}

pub fn manifest(u: &mut Unstructured<'_>) -> Result<Manifest> {
    manifest_upto(u, MANIFEST_CHUNKS_MAX)
}

fn bulk(u: &mut Unstructured<'_>) -> Result<Bytes> {
    Ok(Bytes::from(u.arbitrary::<Vec<u8>>()?))
}

fn list<T>(
    u: &mut Unstructured<'_>,
    max: usize,
    mut element: impl FnMut(&mut Unstructured<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let n = u.int_in_range(0..=max)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(element(u)?);
    }
    Ok(out)
}

/// Number of message kinds [`message`] chooses among: one arm each below, numbered in the
/// order of `Message`'s variants.
pub const MESSAGE_VARIANTS: u32 = MessageKind::ALL.len() as u32;

/// Any message the encoder can send.
pub fn message(u: &mut Unstructured<'_>) -> Result<Message> {
    use Message::*;
    let variant = u.int_in_range(0..=MESSAGE_VARIANTS - 1)?;
    Ok(match variant {
        0 => Hello {
            version: u.arbitrary()?,
            peer_id: peer_id(u)?,
            listen_addr: string(u)?,
            swarm: string(u)?,
        },
        1 => Welcome {
            version: u.arbitrary()?,
            peer_id: peer_id(u)?,
        },
        2 => Error {
            code: u.arbitrary()?,
            message: string(u)?,
        },
        3 => Goodbye,
        4 => Heartbeat {
            uploaded_bytes: u.arbitrary()?,
            downloaded_bytes: u.arbitrary()?,
        },
        5 => {
            let manifest = manifest(u)?;
            let chunks = chunkset_of_len(u, manifest.chunk_count())?;
            Announce { manifest, chunks }
        }
        6 => Have {
            content_id: content_id(u)?,
            chunk_indices: list(u, HAVE_INDICES_MAX, |u| u.arbitrary())?,
        },
        7 => Withdraw {
            content_id: content_id(u)?,
        },
        8 => ListFiles,
        9 => Locate {
            content_id: content_id(u)?,
        },
        10 => ListPeers,
        11 => GetManifest {
            content_id: content_id(u)?,
        },
        12 => FileList {
            files: list(u, LIST_ENTRIES_MAX, |u| {
                Ok(FileEntry {
                    content_id: content_id(u)?,
                    name: string(u)?,
                    size: u.arbitrary()?,
                    chunk_size: u.arbitrary()?,
                    chunk_count: u.arbitrary()?,
                    full_sources: u.arbitrary()?,
                    peers: u.arbitrary()?,
                    complete: u.arbitrary()?,
                    tree: u
                        .arbitrary::<Option<(u32, u64)>>()?
                        .map(|(files, size)| crate::wire::TreeSummary { files, size }),
                })
            })?,
        },
        13 => Located {
            content_id: content_id(u)?,
            peers: list(u, LIST_ENTRIES_MAX, |u| {
                Ok(PeerChunks {
                    peer_id: peer_id(u)?,
                    listen_addr: string(u)?,
                    chunks: chunkset(u)?,
                })
            })?,
        },
        14 => PeerList {
            peers: list(u, LIST_ENTRIES_MAX, |u| {
                Ok(PeerEntry {
                    peer_id: peer_id(u)?,
                    listen_addr: string(u)?,
                    files: u.arbitrary()?,
                    chunks_held: u.arbitrary()?,
                    uploaded_bytes: u.arbitrary()?,
                    downloaded_bytes: u.arbitrary()?,
                    last_seen_ms_ago: u.arbitrary()?,
                })
            })?,
        },
        15 => ManifestReply {
            manifest: manifest(u)?,
        },
        16 => NotFound {
            content_id: content_id(u)?,
        },
        17 => Interested {
            content_id: content_id(u)?,
        },
        18 => Bitfield {
            content_id: content_id(u)?,
            chunks: chunkset(u)?,
        },
        19 => Request {
            content_id: content_id(u)?,
            chunk_index: u.arbitrary()?,
            offset: u.arbitrary()?,
            length: u.arbitrary()?,
        },
        20 => Piece {
            content_id: content_id(u)?,
            chunk_index: u.arbitrary()?,
            offset: u.arbitrary()?,
            data: bulk(u)?,
        },
        21 => Reject {
            content_id: content_id(u)?,
            chunk_index: u.arbitrary()?,
            offset: u.arbitrary()?,
            length: u.arbitrary()?,
        },
        22 => Cancel {
            content_id: content_id(u)?,
            chunk_index: u.arbitrary()?,
            offset: u.arbitrary()?,
            length: u.arbitrary()?,
        },
        23 => Ping {
            nonce: u.arbitrary()?,
        },
        24 => Pong {
            nonce: u.arbitrary()?,
        },
        25 => PeerExchange {
            content_id: content_id(u)?,
            peers: list(u, LIST_ENTRIES_MAX, |u| Ok((peer_id(u)?, string(u)?)))?,
        },
        26 => OfferJob {
            job_id: u.arbitrary()?,
            url: string(u)?,
            validator: string(u)?,
            size: u.arbitrary()?,
            range_len: u.arbitrary()?,
        },
        27 => TakeWork {
            job_id: u.arbitrary()?,
        },
        28 => AssignRange {
            job_id: u.arbitrary()?,
            range_index: u.arbitrary()?,
            offset: u.arbitrary()?,
            length: u.arbitrary()?,
        },
        29 => DeliverRange {
            job_id: u.arbitrary()?,
            range_index: u.arbitrary()?,
            offset: u.arbitrary()?,
            data: bulk(u)?,
        },
        30 => RangeFailed {
            job_id: u.arbitrary()?,
            range_index: u.arbitrary()?,
            fatal: u.arbitrary()?,
            reason: string(u)?,
        },
        31 => NoWork {
            job_id: u.arbitrary()?,
        },
        32 => EndJob {
            job_id: u.arbitrary()?,
            reason: string(u)?,
        },
        33 => CancelRange {
            job_id: u.arbitrary()?,
            range_index: u.arbitrary()?,
        },
        34 => SetOrigin {
            content_id: content_id(u)?,
            origin: string(u)?,
        },
        35 => FindOrigin { origin: string(u)? },
        _ => OriginResult {
            origin: string(u)?,
            content_id: if u.arbitrary()? {
                Some(content_id(u)?)
            } else {
                None
            },
        },
    })
}
