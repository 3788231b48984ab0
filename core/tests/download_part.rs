//! A download of part of a content (`get --only` picks some paths of a collection): the
//! peer asks only for the wanted chunks, reports progress over them, and is complete when
//! it holds them, while the rest of the content stays unasked.

use bytes::Bytes;
use p2p_core::peer::{Peer, PeerAction, PeerNotice, PreparedChunks, StoreOutcome};
use p2p_core::testkit::remote::{connect_remote, drain, local_peer};
use p2p_core::testkit::{TestFile, file_bytes};
use p2p_core::wire::Message;
use p2p_core::{ChunkSet, Instant};

const CHUNK: u32 = 16 * 1024;
const CHUNKS: u32 = 6;
const WANTED: [u32; 2] = [1, 4];

/// A peer downloading `file` with nothing on disk and `wanted` the chunks it asks for,
/// the driver's answer to its preparation just given.
fn downloader(file: &TestFile, wanted: ChunkSet) -> Peer {
    let content_id = file.manifest.content_id();
    let mut peer = local_peer();
    peer.download(Instant::ZERO, content_id, Some(file.manifest.clone()));
    drain(&mut peer);
    let prepared = PreparedChunks {
        have: ChunkSet::new(CHUNKS),
        wanted: Some(wanted),
    };
    peer.download_prepared(Instant::ZERO, content_id, Ok(prepared));
    peer
}

#[test]
fn a_part_download_asks_only_for_its_chunks_and_completes_with_them() {
    let file = TestFile::new("set", CHUNK, file_bytes((CHUNKS * CHUNK) as usize, 7));
    let content_id = file.manifest.content_id();
    let mut wanted = ChunkSet::new(CHUNKS);
    for c in WANTED {
        wanted.insert(c);
    }
    let mut peer = downloader(&file, wanted);
    drain(&mut peer);

    let conn = connect_remote(&mut peer, 2);
    let bitfield = Message::Bitfield {
        content_id,
        chunks: ChunkSet::full(CHUNKS),
    };
    peer.handle_message(Instant::ZERO, conn, bitfield);

    let mut asked = Vec::new();
    let mut last_progress = None;
    let mut complete = false;
    let mut actions = drain(&mut peer);
    for _round in 0..100 {
        if actions.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for action in actions {
            match action {
                PeerAction::Send {
                    message:
                        Message::Request {
                            chunk_index,
                            offset,
                            length,
                            ..
                        },
                    ..
                } => {
                    asked.push(chunk_index);
                    let start = offset as usize;
                    let data = file.chunk(chunk_index)[start..start + length as usize].to_vec();
                    let piece = Message::Piece {
                        content_id,
                        chunk_index,
                        offset,
                        data: Bytes::from(data),
                    };
                    peer.handle_message(Instant::ZERO, conn, piece);
                    next.extend(drain(&mut peer));
                }
                PeerAction::StoreChunk { token, .. } => {
                    peer.handle_stored(Instant::ZERO, token, StoreOutcome::Stored);
                    next.extend(drain(&mut peer));
                }
                PeerAction::Notify(PeerNotice::Progress {
                    chunks_have,
                    chunk_count,
                    bytes_have,
                    size,
                    ..
                }) => last_progress = Some((chunks_have, chunk_count, bytes_have, size)),
                PeerAction::Notify(PeerNotice::DownloadComplete { .. }) => complete = true,
                _ => {}
            }
        }
        actions = next;
    }
    asked.sort_unstable();
    asked.dedup();
    assert_eq!(
        asked,
        WANTED.to_vec(),
        "only the wanted chunks are asked for"
    );
    assert!(complete, "holding the wanted chunks completes the download");
    let part = u64::from(CHUNK) * WANTED.len() as u64;
    assert_eq!(
        last_progress,
        Some((2, 2, part, part)),
        "progress is over the part"
    );
}

#[test]
fn a_wanted_set_of_another_length_fails_the_download() {
    let file = TestFile::new("set", CHUNK, file_bytes((CHUNKS * CHUNK) as usize, 8));
    let mut peer = downloader(&file, ChunkSet::full(CHUNKS + 1));
    let failed = drain(&mut peer)
        .into_iter()
        .any(|a| matches!(a, PeerAction::Notify(PeerNotice::DownloadFailed { .. })));
    assert!(failed);
}
