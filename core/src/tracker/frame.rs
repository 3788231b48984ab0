//! Fitting a reply into one frame: the encoded length of each list entry, and the cut that
//! keeps a `FileList`, `Located` or `PeerList` within `FRAME_LEN_MAX` and its count limit.

use crate::wire::{FRAME_LEN_MAX, FileEntry, PeerChunks, PeerEntry, STRING_LEN_MAX};

/// Encoded bytes of a string field (`put_str` truncates at `STRING_LEN_MAX`).
fn str_len(s: &str) -> usize {
    2 + s.len().min(STRING_LEN_MAX)
}

/// Frame bytes (kind and payload) of a list reply before its entries.
pub(crate) const FILE_LIST_HEADER_LEN: usize = 1 + 4;
pub(crate) const LOCATED_HEADER_LEN: usize = 1 + 32 + 4;
pub(crate) const PEER_LIST_HEADER_LEN: usize = 1 + 4;

pub(crate) fn file_entry_len(entry: &FileEntry) -> usize {
    32 + str_len(&entry.name) + 8 + 4 + 4 + 4 + 4 + 1
}

pub(crate) fn peer_chunks_len(entry: &PeerChunks) -> usize {
    8 + str_len(&entry.listen_addr) + 4 + entry.chunks.as_bitfield().len()
}

pub(crate) fn peer_entry_len(entry: &PeerEntry) -> usize {
    8 + str_len(&entry.listen_addr) + 4 + 8 * 4
}

/// Keeps the longest prefix of `items` that has at most `count_max` entries and encodes
/// within `FRAME_LEN_MAX`, so a reply is never a frame the receiver must reject.
pub(crate) fn truncate_to_frame<T>(
    items: &mut Vec<T>,
    count_max: usize,
    header_len: usize,
    entry_len: impl Fn(&T) -> usize,
) {
    let mut total = header_len;
    let mut keep = 0;
    for item in items.iter().take(count_max) {
        total += entry_len(item);
        if total > FRAME_LEN_MAX as usize {
            break;
        }
        keep += 1;
    }
    items.truncate(keep);
}
