//! One valid message of every kind, with small fixed values: the codec's round-trip tests,
//! the fuzz seed corpora and any test that needs "every message" start from this list.

use bytes::Bytes;

use crate::chunkset::ChunkSet;
use crate::ids::{ContentId, PeerId};
use crate::manifest::{CHUNK_SIZE_MIN, Manifest};
use crate::wire::{FileEntry, Message, PROTOCOL_VERSION, PeerChunks, PeerEntry};

/// Chunks of the sample manifest: more than 8, so its bitfields span two bytes with padding.
const SAMPLE_CHUNKS: u32 = 10;

/// A content id of 32 equal bytes.
pub fn cid(byte: u8) -> ContentId {
    ContentId([byte; 32])
}

/// A valid manifest of `chunk_count` full chunks of the smallest size. Its hashes are made
/// up: no bytes hash to them, which the codec does not need.
pub fn manifest_of(name: &str, chunk_count: u32) -> Manifest {
    Manifest {
        name: name.to_owned(),
        size: u64::from(chunk_count) * u64::from(CHUNK_SIZE_MIN),
        chunk_size: CHUNK_SIZE_MIN,
        chunk_hashes: (0..chunk_count).map(|i| [(i % 251) as u8; 32]).collect(),
        file_table: None,
    }
}

/// A valid collection manifest: three files (two with the same bytes), an empty file and
/// an empty directory, over a content stream of two small chunks (made-up hashes).
pub fn collection_of(name: &str) -> Manifest {
    use crate::collection::{EntryKind, FileTable, SourceEntry};
    let file = |path: &str, kind, size, key: u8| SourceEntry {
        path: path.into(),
        kind,
        size,
        same_bytes_key: Some([key; 32]),
    };
    let table = FileTable::lay_out(vec![
        file("bin/run", EntryKind::Executable, 1000, 1),
        file("docs/a.txt", EntryKind::File, 20_000, 2),
        file("docs/copy of a.txt", EntryKind::File, 20_000, 2),
        file("empty", EntryKind::File, 0, 0),
        file("logs", EntryKind::Dir, 0, 0),
    ])
    .expect("a valid sample tree");
    let mut manifest = manifest_of(name, 2);
    manifest.size = 21_000;
    manifest.file_table = Some(table.encode().into());
    manifest
}

/// At least one message of every kind (`OriginResult` twice: with and without a content),
/// each valid for the encoder, with small fixed values.
pub fn samples() -> Vec<Message> {
    use Message::*;
    let manifest = manifest_of("file.bin", SAMPLE_CHUNKS);
    let mut chunks = ChunkSet::new(SAMPLE_CHUNKS);
    chunks.insert(0);
    chunks.insert(SAMPLE_CHUNKS - 1);
    vec![
        Hello {
            version: PROTOCOL_VERSION,
            peer_id: PeerId(7),
            listen_addr: "10.0.0.1:4000".into(),
            swarm: "lab".into(),
        },
        Welcome {
            version: PROTOCOL_VERSION,
            peer_id: PeerId(8),
        },
        Error {
            code: 3,
            message: "nope".into(),
        },
        Goodbye,
        Heartbeat {
            uploaded_bytes: 1,
            downloaded_bytes: 2,
        },
        Announce {
            manifest: manifest.clone(),
            chunks: chunks.clone(),
        },
        Have {
            content_id: cid(1),
            chunk_indices: vec![1, 2, 3],
        },
        Withdraw { content_id: cid(2) },
        ListFiles,
        Locate { content_id: cid(3) },
        ListPeers,
        GetManifest { content_id: cid(4) },
        FileList {
            files: vec![FileEntry {
                content_id: cid(5),
                name: "a".into(),
                size: 10,
                chunk_size: CHUNK_SIZE_MIN,
                chunk_count: 1,
                full_sources: 1,
                peers: 2,
                complete: true,
                tree: Some(crate::wire::TreeSummary { files: 3, size: 12 }),
            }],
        },
        Located {
            content_id: cid(6),
            peers: vec![PeerChunks {
                peer_id: PeerId(9),
                listen_addr: "h:1".into(),
                chunks: chunks.clone(),
            }],
        },
        PeerList {
            peers: vec![PeerEntry {
                peer_id: PeerId(10),
                listen_addr: "h:2".into(),
                files: 1,
                chunks_held: 2,
                uploaded_bytes: 3,
                downloaded_bytes: 4,
                last_seen_ms_ago: 5,
            }],
        },
        ManifestReply { manifest },
        ManifestReply {
            manifest: collection_of("tree"),
        },
        NotFound { content_id: cid(7) },
        Interested { content_id: cid(8) },
        Bitfield {
            content_id: cid(9),
            chunks,
        },
        Request {
            content_id: cid(10),
            chunk_index: 1,
            offset: 2,
            length: 3,
        },
        Piece {
            content_id: cid(11),
            chunk_index: 1,
            offset: 2,
            data: Bytes::from_static(b"piece data"),
        },
        Reject {
            content_id: cid(12),
            chunk_index: 1,
            offset: 2,
            length: 3,
        },
        Cancel {
            content_id: cid(13),
            chunk_index: 1,
            offset: 2,
            length: 3,
        },
        Ping { nonce: 42 },
        Pong { nonce: 42 },
        PeerExchange {
            content_id: cid(14),
            peers: vec![(PeerId(1), "h:3".into())],
        },
        OfferJob {
            job_id: 1,
            url: "https://example.com/f".into(),
            validator: "\"etag\"".into(),
            size: 1 << 40,
            range_len: 1 << 20,
        },
        TakeWork { job_id: 1 },
        AssignRange {
            job_id: 1,
            range_index: 2,
            offset: 3,
            length: 4,
        },
        DeliverRange {
            job_id: 1,
            range_index: 2,
            offset: 3,
            data: Bytes::from_static(b"range data"),
        },
        RangeFailed {
            job_id: 1,
            range_index: 2,
            fatal: true,
            reason: "404".into(),
        },
        SetOrigin {
            content_id: ContentId([7; 32]),
            origin: "http://origin/file \"etag\"".into(),
        },
        FindOrigin {
            origin: "http://origin/file \"etag\"".into(),
        },
        OriginResult {
            origin: "o".into(),
            content_id: Some(ContentId([8; 32])),
        },
        OriginResult {
            origin: "o".into(),
            content_id: None,
        },
        NoWork { job_id: 1 },
        EndJob {
            job_id: 1,
            reason: "done".into(),
        },
        CancelRange {
            job_id: 1,
            range_index: 2,
        },
    ]
}
