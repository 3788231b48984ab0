//! The wire protocol: length-prefixed binary frames, `u32 length | u8 kind | payload`, all
//! integers big-endian. `length` counts the kind byte and the payload.
//!
//! Decoding is incremental ([`FrameDecoder`]: feed any split of bytes, take whole messages)
//! and bounded: every length field is checked against a named limit before anything is
//! allocated, and a chunk payload is a `Bytes` slice of the receive buffer, never a copy.
//!
//! One file on purpose: it is the table of every message, its encoding beside its decoding,
//! read top to bottom; splitting it would put the two halves of one format apart. The kinds
//! are listed once in `kind.rs`; the codec's tests are in `tests.rs`.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::chunkset::ChunkSet;
use crate::ids::{ContentId, PeerId, Sha256Digest};
use crate::manifest::{self, Manifest};

mod kind;
pub use kind::MessageKind;

/// Protocol version spoken in `Hello`. A peer with another version is refused.
pub const PROTOCOL_VERSION: u16 = 2;
/// Set in a manifest's chunk count when a collection's file table follows it. Counts are
/// far below this bit, so a single file's manifest is encoded as before collections
/// existed, and a peer that predates them refuses a collection's as a list too long.
const FILE_TABLE_FLAG: u32 = 1 << 31;
/// Largest block of a chunk one `Piece` carries; larger chunks are requested in blocks.
pub const BLOCK_LEN_MAX: u32 = 1024 * 1024;
/// Largest frame (kind byte plus payload). Fits the largest `Announce`: every chunk hash of
/// the largest manifest (its hashes and a collection's file table) plus its full bitfield,
/// with room for the name and fixed fields.
pub const FRAME_LEN_MAX: u32 = manifest::CHUNK_COUNT_MAX * 32
    + crate::collection::FILE_TABLE_LEN_MAX as u32
    + manifest::CHUNK_COUNT_MAX.div_ceil(8)
    + 64 * 1024;
/// Longest string field (names, addresses, URLs, reasons), in bytes.
pub(crate) const STRING_LEN_MAX: usize = 4096;
/// Most entries in one list (files, peers, chunk indices in a `Have`).
pub(crate) const LIST_LEN_MAX: usize = 64 * 1024;
/// Most peers in one `Located` or `PeerExchange`.
pub(crate) const PEERS_LEN_MAX: usize = 1024;
/// Most bytes the decoder reserves ahead of data actually received.
const RESERVE_STEP_MAX: usize = 256 * 1024;
/// Bytes of the length prefix.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// Codes carried in `Message::Error`. An `Error` followed by the sender closing the
/// connection is fatal; an `Error` alone refuses one request and the session goes on.
pub(crate) mod error_code {
    /// The `Hello` named a protocol version this side does not speak.
    pub const VERSION_MISMATCH: u16 = 1;
    /// A message other than `Hello` came first on the connection.
    pub const HELLO_REQUIRED: u16 = 2;
    /// A message this side never accepts here (a second `Hello`, a peer↔peer message sent
    /// to the tracker, a reply sent as a request).
    pub const UNEXPECTED_MESSAGE: u16 = 3;
    /// A message whose fields contradict each other (e.g. an announced chunk set whose
    /// length is not the manifest's chunk count).
    pub const BAD_MESSAGE: u16 = 4;
    /// A limit of the receiver refused this request; the connection stays open.
    pub const LIMIT_EXCEEDED: u16 = 5;
    /// Another connection said `Hello` with the same peer id and took over the session.
    pub const SESSION_REPLACED: u16 = 6;
    /// Nothing was heard on the connection within the receiver's timeout.
    pub const TIMED_OUT: u16 = 7;
    /// A `Hello` claimed a peer id (or swarm) other than the one the connection's secure
    /// handshake proved.
    pub const IDENTITY_MISMATCH: u16 = 8;
}

/// A peer's entry in `Located`: where it listens and which chunks it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerChunks {
    pub peer_id: PeerId,
    pub listen_addr: String,
    pub chunks: ChunkSet,
}

/// A file's entry in `FileList`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub content_id: ContentId,
    pub name: String,
    pub size: u64,
    pub chunk_size: u32,
    pub chunk_count: u32,
    /// Live peers holding every chunk.
    pub full_sources: u32,
    /// Live peers holding at least one chunk.
    pub peers: u32,
    /// Whether the live peers together hold every chunk.
    pub complete: bool,
    /// For a collection (a shared directory): its files and their total size, each copy
    /// counted (`size` is the content stream's, identical files once).
    pub tree: Option<TreeSummary>,
}

/// A collection's size as `p2p ls` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeSummary {
    pub files: u32,
    pub size: u64,
}

/// A peer's entry in `PeerList`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    pub peer_id: PeerId,
    pub listen_addr: String,
    /// Contents of which the peer holds at least one chunk.
    pub files: u32,
    /// Chunks held, summed over contents.
    pub chunks_held: u64,
    /// Bytes the peer says it has uploaded to other peers.
    pub uploaded_bytes: u64,
    /// Bytes the peer says it has downloaded from other peers.
    pub downloaded_bytes: u64,
    /// Milliseconds since the tracker last heard from the peer.
    pub last_seen_ms_ago: u64,
}

/// Every message of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    // ---- handshake, both peer↔tracker and peer↔peer ----
    /// First message on every connection, from the side that opened it.
    Hello {
        version: u16,
        peer_id: PeerId,
        /// Where the sender accepts peer connections ("" for none).
        listen_addr: String,
        swarm: String,
    },
    /// Answer to `Hello`: the other side's version and id.
    Welcome {
        version: u16,
        peer_id: PeerId,
    },
    /// A refusal or failure (codes in [`error_code`]); followed by a close when fatal.
    Error {
        code: u16,
        message: String,
    },
    /// The sender is leaving on purpose.
    Goodbye,
    /// Keeps a tracker session alive; carries the sender's transfer counters.
    Heartbeat {
        uploaded_bytes: u64,
        downloaded_bytes: u64,
    },

    // ---- peer → tracker ----
    /// The sender holds `chunks` of the file `manifest` describes (all of them, when publishing).
    Announce {
        manifest: Manifest,
        chunks: ChunkSet,
    },
    /// The sender gained these chunks (batched).
    Have {
        content_id: ContentId,
        chunk_indices: Vec<u32>,
    },
    /// The sender no longer holds any of this content.
    Withdraw {
        content_id: ContentId,
    },
    ListFiles,
    /// Which live peers hold which chunks of `content_id`.
    Locate {
        content_id: ContentId,
    },
    ListPeers,
    /// Ask for a manifest (of the tracker or of a peer).
    GetManifest {
        content_id: ContentId,
    },

    // ---- tracker → peer ----
    FileList {
        files: Vec<FileEntry>,
    },
    Located {
        content_id: ContentId,
        peers: Vec<PeerChunks>,
    },
    PeerList {
        peers: Vec<PeerEntry>,
    },
    ManifestReply {
        manifest: Manifest,
    },
    /// The content is not known here (answer to `GetManifest` or `Interested`).
    NotFound {
        content_id: ContentId,
    },

    // ---- peer ↔ peer ----
    /// The sender wants this content: answer with a `Bitfield` and then `Have`s.
    Interested {
        content_id: ContentId,
    },
    Bitfield {
        content_id: ContentId,
        chunks: ChunkSet,
    },
    Request {
        content_id: ContentId,
        chunk_index: u32,
        offset: u32,
        length: u32,
    },
    Piece {
        content_id: ContentId,
        chunk_index: u32,
        offset: u32,
        data: Bytes,
    },
    Reject {
        content_id: ContentId,
        chunk_index: u32,
        offset: u32,
        length: u32,
    },
    Cancel {
        content_id: ContentId,
        chunk_index: u32,
        offset: u32,
        length: u32,
    },
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
    /// Other peers the sender knows for a content id.
    PeerExchange {
        content_id: ContentId,
        peers: Vec<(PeerId, String)>,
    },

    // ---- cooperative origin download ----
    /// A fetcher offers a job: `size` bytes at `url`, cut into ranges of `range_len`.
    OfferJob {
        job_id: u64,
        url: String,
        /// `ETag` or `Last-Modified` the ranges must match (sent as `If-Range`).
        validator: String,
        size: u64,
        range_len: u32,
    },
    /// A helper asks for a range of a job (it has a free slot).
    TakeWork {
        job_id: u64,
    },
    /// The fetcher assigns a range to a helper.
    AssignRange {
        job_id: u64,
        range_index: u32,
        offset: u64,
        length: u32,
    },
    /// A helper delivers a range it fetched (or part of one, in order).
    DeliverRange {
        job_id: u64,
        range_index: u32,
        offset: u64,
        data: Bytes,
    },
    /// A helper could not fetch a range. `fatal` when retrying cannot help (the origin's
    /// file changed, or it refused with a 4xx): the fetcher aborts the job.
    RangeFailed {
        job_id: u64,
        range_index: u32,
        fatal: bool,
        reason: String,
    },
    /// Nothing left to assign now.
    NoWork {
        job_id: u64,
    },
    /// The job is over (done or aborted): helpers drop it.
    EndJob {
        job_id: u64,
        reason: String,
    },
    /// The fetcher no longer wants a range it assigned to this helper (another participant
    /// delivered it first, in the endgame): the helper stops fetching it and delivers
    /// nothing for it.
    CancelRange {
        job_id: u64,
        range_index: u32,
    },

    // ---- origin keys (peer ↔ tracker) ----
    /// `content_id` is the file at `origin` (a URL and its validator): a later fetch of the
    /// same origin can come from the swarm.
    SetOrigin {
        content_id: ContentId,
        origin: String,
    },
    /// Which content, if any, is the file at `origin`.
    FindOrigin {
        origin: String,
    },
    OriginResult {
        origin: String,
        content_id: Option<ContentId>,
    },
}

/// Why bytes could not be decoded. Any of them closes the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    FrameTooLong { length: u32, max: u32 },
    EmptyFrame,
    UnknownKind(u8),
    Truncated { kind: u8 },
    TrailingBytes { kind: u8, extra: usize },
    StringTooLong { length: usize },
    InvalidUtf8,
    ListTooLong { length: usize, max: usize },
    BadBitfield,
    BadManifest(manifest::ManifestError),
    BlockTooLong { length: usize },
    BadFlag { kind: u8 },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::FrameTooLong { length, max } => {
                write!(f, "frame of {length} bytes exceeds the limit of {max}")
            }
            WireError::EmptyFrame => write!(f, "frame has no kind byte"),
            WireError::UnknownKind(kind) => write!(f, "unknown message kind {kind}"),
            WireError::Truncated { kind } => write!(f, "message of kind {kind} is truncated"),
            WireError::TrailingBytes { kind, extra } => {
                write!(f, "message of kind {kind} has {extra} trailing bytes")
            }
            WireError::StringTooLong { length } => {
                write!(
                    f,
                    "string of {length} bytes exceeds the limit of {STRING_LEN_MAX}"
                )
            }
            WireError::InvalidUtf8 => write!(f, "string is not valid UTF-8"),
            WireError::ListTooLong { length, max } => {
                write!(f, "list of {length} entries exceeds the limit of {max}")
            }
            WireError::BadBitfield => write!(f, "bitfield length or padding is wrong"),
            WireError::BadManifest(e) => write!(f, "invalid manifest: {e}"),
            WireError::BadFlag { kind } => {
                write!(
                    f,
                    "message of kind {kind} has a flag that is neither 0 nor 1"
                )
            }
            WireError::BlockTooLong { length } => {
                write!(
                    f,
                    "block of {length} bytes exceeds the limit of {BLOCK_LEN_MAX}"
                )
            }
        }
    }
}

impl std::error::Error for WireError {}

impl Message {
    /// Appends this message as one frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u32(0); // length, patched below
        out.put_u8(self.kind().byte());
        self.encode_payload(out);
        let length = (out.len() - start - LENGTH_PREFIX_LEN) as u32;
        out[start..start + LENGTH_PREFIX_LEN].copy_from_slice(&length.to_be_bytes());
    }

    /// This message as one frame.
    pub fn to_frame(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len_estimate());
        self.encode(&mut out);
        out.freeze()
    }

    /// For a `Piece` or `DeliverRange`, the frame header alone (everything before the data)
    /// and the data, so a driver can write both without copying the data; for a
    /// `ManifestReply`, everything before the chunk hashes and the hashes, which stay in
    /// the manifest's one shared buffer (a flood of requests for a large manifest costs no
    /// copy of it per reply).
    pub fn split_bulk(&self) -> Option<(Bytes, &[u8])> {
        let mut header = BytesMut::with_capacity(64);
        header.put_u32(0);
        header.put_u8(self.kind().byte());
        let data: &[u8] = match self {
            Message::Piece { data, .. } | Message::DeliverRange { data, .. } => {
                self.encode_fields(&mut header);
                data
            }
            Message::ManifestReply { manifest } => {
                put_manifest_head(&mut header, manifest);
                manifest.chunk_hashes.as_flattened()
            }
            _ => return None,
        };
        let length = (header.len() - LENGTH_PREFIX_LEN + data.len()) as u32;
        header[..LENGTH_PREFIX_LEN].copy_from_slice(&length.to_be_bytes());
        Some((header.freeze(), data))
    }

    /// At least the size of the encoded frame, cheaply (no encoding): what a send queue
    /// counts a message for, and the capacity to reserve to encode it.
    pub fn encoded_len_estimate(&self) -> usize {
        // Every fixed-size field of a message, or of one list element, fits in these.
        const FIXED: usize = 128;
        const ELEMENT: usize = 64;
        match self {
            Message::Piece { data, .. } | Message::DeliverRange { data, .. } => FIXED + data.len(),
            Message::Announce { manifest, chunks } => {
                FIXED
                    + manifest.name.len()
                    + manifest.chunk_hashes.len() * 32
                    + manifest.file_table.as_ref().map_or(0, |t| t.len())
                    + chunks.as_bitfield().len()
            }
            Message::ManifestReply { manifest } => {
                FIXED
                    + manifest.name.len()
                    + manifest.chunk_hashes.len() * 32
                    + manifest.file_table.as_ref().map_or(0, |t| t.len())
            }
            Message::Bitfield { chunks, .. } => FIXED + chunks.as_bitfield().len(),
            Message::Have { chunk_indices, .. } => FIXED + chunk_indices.len() * 4,
            Message::FileList { files } => {
                FIXED + files.iter().map(|f| ELEMENT + f.name.len()).sum::<usize>()
            }
            Message::Located { peers, .. } => {
                let each =
                    |p: &PeerChunks| ELEMENT + p.listen_addr.len() + p.chunks.as_bitfield().len();
                FIXED + peers.iter().map(each).sum::<usize>()
            }
            Message::PeerList { peers } => {
                FIXED
                    + peers
                        .iter()
                        .map(|p| ELEMENT + p.listen_addr.len())
                        .sum::<usize>()
            }
            Message::PeerExchange { peers, .. } => {
                FIXED
                    + peers
                        .iter()
                        .map(|(_, addr)| ELEMENT + addr.len())
                        .sum::<usize>()
            }
            Message::Hello {
                listen_addr, swarm, ..
            } => FIXED + listen_addr.len() + swarm.len(),
            Message::OfferJob { url, validator, .. } => FIXED + url.len() + validator.len(),
            Message::Error { message: text, .. }
            | Message::RangeFailed { reason: text, .. }
            | Message::EndJob { reason: text, .. }
            | Message::SetOrigin { origin: text, .. }
            | Message::FindOrigin { origin: text }
            | Message::OriginResult { origin: text, .. } => FIXED + text.len(),
            _ => FIXED,
        }
    }

    fn encode_payload(&self, out: &mut BytesMut) {
        self.encode_fields(out);
        if let Message::Piece { data, .. } | Message::DeliverRange { data, .. } = self {
            out.put_slice(data);
        }
    }

    /// Every field but the trailing bulk data of `Piece` and `DeliverRange`.
    fn encode_fields(&self, out: &mut BytesMut) {
        use Message::*;
        match self {
            Hello {
                version,
                peer_id,
                listen_addr,
                swarm,
            } => {
                out.put_u16(*version);
                out.put_u64(peer_id.0);
                put_str(out, listen_addr);
                put_str(out, swarm);
            }
            Welcome { version, peer_id } => {
                out.put_u16(*version);
                out.put_u64(peer_id.0);
            }
            Error { code, message } => {
                out.put_u16(*code);
                put_str(out, message);
            }
            Goodbye | ListFiles | ListPeers => {}
            Heartbeat {
                uploaded_bytes,
                downloaded_bytes,
            } => {
                out.put_u64(*uploaded_bytes);
                out.put_u64(*downloaded_bytes);
            }
            Announce { manifest, chunks } => {
                put_manifest(out, manifest);
                put_chunkset(out, chunks);
            }
            Have {
                content_id,
                chunk_indices,
            } => {
                out.put_slice(&content_id.0);
                out.put_u32(chunk_indices.len() as u32);
                for index in chunk_indices {
                    out.put_u32(*index);
                }
            }
            Withdraw { content_id }
            | Locate { content_id }
            | GetManifest { content_id }
            | NotFound { content_id }
            | Interested { content_id } => out.put_slice(&content_id.0),
            FileList { files } => {
                out.put_u32(files.len() as u32);
                for file in files {
                    out.put_slice(&file.content_id.0);
                    put_str(out, &file.name);
                    out.put_u64(file.size);
                    out.put_u32(file.chunk_size);
                    out.put_u32(file.chunk_count);
                    out.put_u32(file.full_sources);
                    out.put_u32(file.peers);
                    out.put_u8(u8::from(file.complete));
                    out.put_u8(u8::from(file.tree.is_some()));
                    if let Some(tree) = &file.tree {
                        out.put_u32(tree.files);
                        out.put_u64(tree.size);
                    }
                }
            }
            Located { content_id, peers } => {
                out.put_slice(&content_id.0);
                out.put_u32(peers.len() as u32);
                for peer in peers {
                    out.put_u64(peer.peer_id.0);
                    put_str(out, &peer.listen_addr);
                    put_chunkset(out, &peer.chunks);
                }
            }
            PeerList { peers } => {
                out.put_u32(peers.len() as u32);
                for peer in peers {
                    out.put_u64(peer.peer_id.0);
                    put_str(out, &peer.listen_addr);
                    out.put_u32(peer.files);
                    out.put_u64(peer.chunks_held);
                    out.put_u64(peer.uploaded_bytes);
                    out.put_u64(peer.downloaded_bytes);
                    out.put_u64(peer.last_seen_ms_ago);
                }
            }
            ManifestReply { manifest } => put_manifest(out, manifest),
            Bitfield { content_id, chunks } => {
                out.put_slice(&content_id.0);
                put_chunkset(out, chunks);
            }
            Request {
                content_id,
                chunk_index,
                offset,
                length,
            }
            | Reject {
                content_id,
                chunk_index,
                offset,
                length,
            }
            | Cancel {
                content_id,
                chunk_index,
                offset,
                length,
            } => {
                out.put_slice(&content_id.0);
                out.put_u32(*chunk_index);
                out.put_u32(*offset);
                out.put_u32(*length);
            }
            Piece {
                content_id,
                chunk_index,
                offset,
                data: _,
            } => {
                out.put_slice(&content_id.0);
                out.put_u32(*chunk_index);
                out.put_u32(*offset);
            }
            Ping { nonce } | Pong { nonce } => out.put_u64(*nonce),
            PeerExchange { content_id, peers } => {
                out.put_slice(&content_id.0);
                out.put_u32(peers.len() as u32);
                for (peer_id, addr) in peers {
                    out.put_u64(peer_id.0);
                    put_str(out, addr);
                }
            }
            OfferJob {
                job_id,
                url,
                validator,
                size,
                range_len,
            } => {
                out.put_u64(*job_id);
                put_str(out, url);
                put_str(out, validator);
                out.put_u64(*size);
                out.put_u32(*range_len);
            }
            TakeWork { job_id } | NoWork { job_id } => out.put_u64(*job_id),
            AssignRange {
                job_id,
                range_index,
                offset,
                length,
            } => {
                out.put_u64(*job_id);
                out.put_u32(*range_index);
                out.put_u64(*offset);
                out.put_u32(*length);
            }
            DeliverRange {
                job_id,
                range_index,
                offset,
                data: _,
            } => {
                out.put_u64(*job_id);
                out.put_u32(*range_index);
                out.put_u64(*offset);
            }
            RangeFailed {
                job_id,
                range_index,
                fatal,
                reason,
            } => {
                out.put_u64(*job_id);
                out.put_u32(*range_index);
                out.put_u8(u8::from(*fatal));
                put_str(out, reason);
            }
            CancelRange {
                job_id,
                range_index,
            } => {
                out.put_u64(*job_id);
                out.put_u32(*range_index);
            }
            SetOrigin { content_id, origin } => {
                out.put_slice(&content_id.0);
                put_str(out, origin);
            }
            FindOrigin { origin } => put_str(out, origin),
            OriginResult { origin, content_id } => {
                put_str(out, origin);
                match content_id {
                    Some(id) => {
                        out.put_u8(1);
                        out.put_slice(&id.0);
                    }
                    None => out.put_u8(0),
                }
            }
            EndJob { job_id, reason } => {
                out.put_u64(*job_id);
                put_str(out, reason);
            }
        }
    }

    /// Decodes one frame body (kind byte and payload, without the length prefix). Bulk data
    /// is sliced out of `frame` without copying.
    pub fn decode(mut frame: Bytes) -> Result<Message, WireError> {
        if frame.is_empty() {
            return Err(WireError::EmptyFrame);
        }
        let kind = frame.get_u8();
        let mut r = Reader { buf: frame, kind };
        let message = r.message()?;
        if !r.buf.is_empty() {
            return Err(WireError::TrailingBytes {
                kind,
                extra: r.buf.len(),
            });
        }
        Ok(message)
    }
}

fn put_str(out: &mut BytesMut, s: &str) {
    // Senders keep strings within STRING_LEN_MAX; truncate at a char boundary if not, so an
    // oversize local string can never produce a frame the other side must reject.
    let mut end = s.len().min(STRING_LEN_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u16(end as u16);
    out.put_slice(&s.as_bytes()[..end]);
}

fn put_chunkset(out: &mut BytesMut, set: &ChunkSet) {
    out.put_u32(set.len());
    out.put_slice(set.as_bitfield());
}

fn put_manifest(out: &mut BytesMut, manifest: &Manifest) {
    put_manifest_head(out, manifest);
    out.put_slice(manifest.chunk_hashes.as_flattened());
}

/// A manifest's fields before its chunk hashes (which end it): name, size, chunk size, the
/// hash count, and for a collection (flagged in the count) its file table, `u32 length |
/// bytes`.
fn put_manifest_head(out: &mut BytesMut, manifest: &Manifest) {
    put_str(out, &manifest.name);
    out.put_u64(manifest.size);
    out.put_u32(manifest.chunk_size);
    let count = manifest.chunk_hashes.len() as u32;
    match &manifest.file_table {
        None => out.put_u32(count),
        Some(table) => {
            out.put_u32(count | FILE_TABLE_FLAG);
            out.put_u32(table.len() as u32);
            out.put_slice(table);
        }
    }
}

/// A cursor over one frame's payload that turns every short read into `Truncated`.
struct Reader {
    buf: Bytes,
    kind: u8,
}

impl Reader {
    fn need(&self, n: usize) -> Result<(), WireError> {
        if self.buf.remaining() < n {
            Err(WireError::Truncated { kind: self.kind })
        } else {
            Ok(())
        }
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    /// A boolean: exactly 0 or 1, so every message has one encoding.
    fn flag(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::BadFlag { kind: self.kind }),
        }
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        self.need(8)?;
        Ok(self.buf.get_u64())
    }

    fn digest(&mut self) -> Result<Sha256Digest, WireError> {
        self.need(32)?;
        let mut out = [0u8; 32];
        self.buf.copy_to_slice(&mut out);
        Ok(out)
    }

    fn content_id(&mut self) -> Result<ContentId, WireError> {
        self.digest().map(ContentId)
    }

    fn peer_id(&mut self) -> Result<PeerId, WireError> {
        self.u64().map(PeerId)
    }

    fn string(&mut self) -> Result<String, WireError> {
        let length = self.u16()? as usize;
        if length > STRING_LEN_MAX {
            return Err(WireError::StringTooLong { length });
        }
        self.need(length)?;
        let bytes = self.buf.split_to(length);
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::InvalidUtf8)
    }

    /// A list count, checked against `max` and against the bytes left (each entry takes at
    /// least `min_entry_len`), so a lying count cannot make us reserve memory.
    fn count(&mut self, max: usize, min_entry_len: usize) -> Result<usize, WireError> {
        let length = self.u32()? as usize;
        if length > max {
            return Err(WireError::ListTooLong { length, max });
        }
        self.need(length.saturating_mul(min_entry_len))?;
        Ok(length)
    }

    fn chunkset(&mut self) -> Result<ChunkSet, WireError> {
        let len = self.u32()?;
        if len > manifest::CHUNK_COUNT_MAX {
            return Err(WireError::ListTooLong {
                length: len as usize,
                max: manifest::CHUNK_COUNT_MAX as usize,
            });
        }
        let byte_len = ChunkSet::byte_len(len);
        self.need(byte_len)?;
        let bytes = self.buf.split_to(byte_len);
        ChunkSet::from_bitfield(len, &bytes).ok_or(WireError::BadBitfield)
    }

    fn manifest(&mut self) -> Result<Manifest, WireError> {
        let name = self.string()?;
        let size = self.u64()?;
        let chunk_size = self.u32()?;
        let flagged_count = self.u32()?;
        let count = (flagged_count & !FILE_TABLE_FLAG) as usize;
        let file_table = if flagged_count & FILE_TABLE_FLAG != 0 {
            let length = self.u32()? as usize;
            if length > crate::collection::FILE_TABLE_LEN_MAX {
                return Err(WireError::BadManifest(
                    manifest::ManifestError::FileTableTooLong(length),
                ));
            }
            self.need(length)?;
            Some(self.buf.split_to(length))
        } else {
            None
        };
        let max = manifest::CHUNK_COUNT_MAX as usize;
        if count > max {
            return Err(WireError::ListTooLong { length: count, max });
        }
        self.need(count * 32)?;
        let mut chunk_hashes = Vec::with_capacity(count);
        for _ in 0..count {
            chunk_hashes.push(self.digest()?);
        }
        let manifest = Manifest {
            name,
            size,
            chunk_size,
            chunk_hashes: chunk_hashes.into(),
            file_table,
        };
        manifest.validate().map_err(WireError::BadManifest)?;
        Ok(manifest)
    }

    fn bulk(&mut self) -> Result<Bytes, WireError> {
        let length = self.buf.len();
        if length > BLOCK_LEN_MAX as usize {
            return Err(WireError::BlockTooLong { length });
        }
        Ok(self.buf.split_to(length))
    }

    fn message(&mut self) -> Result<Message, WireError> {
        use Message::*;
        let kind = MessageKind::from_byte(self.kind).ok_or(WireError::UnknownKind(self.kind))?;
        Ok(match kind {
            MessageKind::Hello => Hello {
                version: self.u16()?,
                peer_id: self.peer_id()?,
                listen_addr: self.string()?,
                swarm: self.string()?,
            },
            MessageKind::Welcome => Welcome {
                version: self.u16()?,
                peer_id: self.peer_id()?,
            },
            MessageKind::Error => Error {
                code: self.u16()?,
                message: self.string()?,
            },
            MessageKind::Goodbye => Goodbye,
            MessageKind::Heartbeat => Heartbeat {
                uploaded_bytes: self.u64()?,
                downloaded_bytes: self.u64()?,
            },
            MessageKind::Announce => {
                let manifest = self.manifest()?;
                let chunks = self.chunkset()?;
                if chunks.len() != manifest.chunk_count() {
                    return Err(WireError::BadBitfield);
                }
                Announce { manifest, chunks }
            }
            MessageKind::Have => {
                let content_id = self.content_id()?;
                let count = self.count(LIST_LEN_MAX, 4)?;
                let mut chunk_indices = Vec::with_capacity(count);
                for _ in 0..count {
                    chunk_indices.push(self.u32()?);
                }
                Have {
                    content_id,
                    chunk_indices,
                }
            }
            MessageKind::Withdraw => Withdraw {
                content_id: self.content_id()?,
            },
            MessageKind::ListFiles => ListFiles,
            MessageKind::Locate => Locate {
                content_id: self.content_id()?,
            },
            MessageKind::ListPeers => ListPeers,
            MessageKind::GetManifest => GetManifest {
                content_id: self.content_id()?,
            },
            MessageKind::FileList => {
                let count = self.count(LIST_LEN_MAX, 32 + 2 + 8 + 16 + 2)?;
                let mut files = Vec::with_capacity(count);
                for _ in 0..count {
                    files.push(FileEntry {
                        content_id: self.content_id()?,
                        name: self.string()?,
                        size: self.u64()?,
                        chunk_size: self.u32()?,
                        chunk_count: self.u32()?,
                        full_sources: self.u32()?,
                        peers: self.u32()?,
                        complete: self.flag()?,
                        tree: match self.flag()? {
                            true => Some(TreeSummary {
                                files: self.u32()?,
                                size: self.u64()?,
                            }),
                            false => None,
                        },
                    });
                }
                FileList { files }
            }
            MessageKind::Located => {
                let content_id = self.content_id()?;
                let count = self.count(PEERS_LEN_MAX, 8 + 2 + 4)?;
                let mut peers = Vec::with_capacity(count);
                for _ in 0..count {
                    peers.push(PeerChunks {
                        peer_id: self.peer_id()?,
                        listen_addr: self.string()?,
                        chunks: self.chunkset()?,
                    });
                }
                Located { content_id, peers }
            }
            MessageKind::PeerList => {
                let count = self.count(LIST_LEN_MAX, 8 + 2 + 4 + 32)?;
                let mut peers = Vec::with_capacity(count);
                for _ in 0..count {
                    peers.push(PeerEntry {
                        peer_id: self.peer_id()?,
                        listen_addr: self.string()?,
                        files: self.u32()?,
                        chunks_held: self.u64()?,
                        uploaded_bytes: self.u64()?,
                        downloaded_bytes: self.u64()?,
                        last_seen_ms_ago: self.u64()?,
                    });
                }
                PeerList { peers }
            }
            MessageKind::ManifestReply => ManifestReply {
                manifest: self.manifest()?,
            },
            MessageKind::NotFound => NotFound {
                content_id: self.content_id()?,
            },
            MessageKind::Interested => Interested {
                content_id: self.content_id()?,
            },
            MessageKind::Bitfield => Bitfield {
                content_id: self.content_id()?,
                chunks: self.chunkset()?,
            },
            MessageKind::Request | MessageKind::Reject | MessageKind::Cancel => {
                let content_id = self.content_id()?;
                let chunk_index = self.u32()?;
                let offset = self.u32()?;
                let length = self.u32()?;
                match kind {
                    MessageKind::Request => Request {
                        content_id,
                        chunk_index,
                        offset,
                        length,
                    },
                    MessageKind::Reject => Reject {
                        content_id,
                        chunk_index,
                        offset,
                        length,
                    },
                    _ => Cancel {
                        content_id,
                        chunk_index,
                        offset,
                        length,
                    },
                }
            }
            MessageKind::Piece => Piece {
                content_id: self.content_id()?,
                chunk_index: self.u32()?,
                offset: self.u32()?,
                data: self.bulk()?,
            },
            MessageKind::Ping => Ping { nonce: self.u64()? },
            MessageKind::Pong => Pong { nonce: self.u64()? },
            MessageKind::PeerExchange => {
                let content_id = self.content_id()?;
                let count = self.count(PEERS_LEN_MAX, 8 + 2)?;
                let mut peers = Vec::with_capacity(count);
                for _ in 0..count {
                    peers.push((self.peer_id()?, self.string()?));
                }
                PeerExchange { content_id, peers }
            }
            MessageKind::OfferJob => OfferJob {
                job_id: self.u64()?,
                url: self.string()?,
                validator: self.string()?,
                size: self.u64()?,
                range_len: self.u32()?,
            },
            MessageKind::TakeWork => TakeWork {
                job_id: self.u64()?,
            },
            MessageKind::AssignRange => AssignRange {
                job_id: self.u64()?,
                range_index: self.u32()?,
                offset: self.u64()?,
                length: self.u32()?,
            },
            MessageKind::DeliverRange => DeliverRange {
                job_id: self.u64()?,
                range_index: self.u32()?,
                offset: self.u64()?,
                data: self.bulk()?,
            },
            MessageKind::RangeFailed => RangeFailed {
                job_id: self.u64()?,
                range_index: self.u32()?,
                fatal: self.flag()?,
                reason: self.string()?,
            },
            MessageKind::SetOrigin => SetOrigin {
                content_id: self.content_id()?,
                origin: self.string()?,
            },
            MessageKind::FindOrigin => FindOrigin {
                origin: self.string()?,
            },
            MessageKind::OriginResult => OriginResult {
                origin: self.string()?,
                content_id: if self.flag()? {
                    Some(self.content_id()?)
                } else {
                    None
                },
            },
            MessageKind::NoWork => NoWork {
                job_id: self.u64()?,
            },
            MessageKind::EndJob => EndJob {
                job_id: self.u64()?,
                reason: self.string()?,
            },
            MessageKind::CancelRange => CancelRange {
                job_id: self.u64()?,
                range_index: self.u32()?,
            },
        })
    }
}

/// Incremental frame decoder: feed bytes as they arrive, in any split, and take whole
/// messages. Never buffers more than one frame plus what was fed past it, and refuses a
/// length prefix over [`FRAME_LEN_MAX`] before reading its body.
#[derive(Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The buffer to read the socket into directly (avoids one copy): reserve, read into
    /// its spare capacity, then the bytes are buffered.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes buffered and not yet taken as frames.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// How many more bytes the current frame needs (at least one when nothing is buffered);
    /// a driver can size its next read with it.
    pub fn wanted_len(&self) -> usize {
        if self.buf.len() < LENGTH_PREFIX_LEN {
            return LENGTH_PREFIX_LEN - self.buf.len();
        }
        // The first four bytes exist: checked just above.
        let length = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
        (LENGTH_PREFIX_LEN + length)
            .saturating_sub(self.buf.len())
            .max(1)
    }

    /// Takes the next whole message, `Ok(None)` when more bytes are needed. After an error
    /// the stream is out of sync and the connection must be closed.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        if self.buf.len() < LENGTH_PREFIX_LEN {
            return Ok(None);
        }
        // The first four bytes exist: checked just above.
        let length = u32::from_be_bytes(self.buf[..4].try_into().unwrap());
        if length > FRAME_LEN_MAX {
            return Err(WireError::FrameTooLong {
                length,
                max: FRAME_LEN_MAX,
            });
        }
        let total = LENGTH_PREFIX_LEN + length as usize;
        if self.buf.len() < total {
            // Reserve for the rest of this frame, but in steps: a 4-byte prefix alone must
            // not make us allocate a whole maximum-size frame.
            self.buf
                .reserve((total - self.buf.len()).min(RESERVE_STEP_MAX));
            return Ok(None);
        }
        self.buf.advance(LENGTH_PREFIX_LEN);
        let frame = self.buf.split_to(length as usize).freeze();
        Message::decode(frame).map(Some)
    }
}

#[cfg(test)]
mod tests;
