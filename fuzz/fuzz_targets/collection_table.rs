//! Untrusted file tables of collections: the bytes a hostile publisher puts in a manifest,
//! with a content stream length from the first 8 input bytes. Decoding never panics, and a
//! table that decodes is safe to create: every component a safe file name, no two paths
//! alike under case folding, contents back to back over the whole stream, sizes within the
//! limits; and it re-encodes to exactly the bytes it came from (one table, one encoding).
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_core::collection::{COLLECTION_SIZE_MAX, FileTable, PATH_DEPTH_MAX};
use p2p_core::filename::is_safe_file_name;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (len, bytes) = data.split_at(8);
    // Small stream lengths most of the time, so layouts can match.
    let stream_len = u64::from_be_bytes(len.try_into().unwrap()) % 4096;
    let Ok(table) = FileTable::decode(bytes, stream_len) else {
        return;
    };
    assert_eq!(table.encode(), bytes, "a table with two encodings");
    let mut lowered = std::collections::BTreeSet::new();
    for entry in table.entries() {
        let components: Vec<&str> = entry.path.split('/').collect();
        assert!(components.len() <= PATH_DEPTH_MAX);
        assert!(
            components.iter().all(|c| is_safe_file_name(c)),
            "{:?}",
            entry.path
        );
        assert!(
            lowered.insert(entry.path.to_lowercase()),
            "two paths alike under case: {:?}",
            entry.path
        );
    }
    assert!(table.total_size() <= COLLECTION_SIZE_MAX);
    let mut end = 0;
    for content in table.contents() {
        assert_eq!(content.offset, end, "a gap or an overlap in the stream");
        end += content.size;
    }
    assert_eq!(end, stream_len, "the stream is not covered");
});
