//! Untrusted manifests: the bytes after the kind byte of a `ManifestReply` (or of an
//! `Announce`, selected by the first input byte). A manifest that decodes must be valid,
//! verify against its own id and no other, describe its size exactly, re-encode to itself,
//! and its name must sanitise to a safe file name or be refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_core::filename::{is_safe_file_name, sanitize_file_name};
use p2p_core::{ContentId, Manifest, Message};
use p2p_fuzz::decode_body;

/// Kind bytes of `ManifestReply` and `Announce` (wire.rs `kind` module).
const MANIFEST_REPLY: u8 = 23;
const ANNOUNCE: u8 = 10;

fn check(manifest: &Manifest, other_id: ContentId) {
    manifest.validate().expect("decoded manifest is invalid");
    let id = manifest.content_id();
    manifest
        .verify(id)
        .expect("manifest does not verify against its own id");
    if other_id != id {
        assert!(
            manifest.verify(other_id).is_err(),
            "verified against a foreign id"
        );
    }
    let count = manifest.chunk_count();
    let mut total = 0u64;
    for i in 0..count {
        let len = manifest.chunk_len(i);
        assert!(
            len > 0 && len <= manifest.chunk_size,
            "chunk {i} has length {len}"
        );
        assert_eq!(manifest.chunk_offset(i), total);
        total += u64::from(len);
    }
    assert_eq!(
        total, manifest.size,
        "chunk lengths do not add up to the size"
    );
    assert_eq!(manifest.chunk_len(count), 0);
    // Renaming does not change the id.
    let mut renamed = manifest.clone();
    renamed.name = "x".into();
    assert_eq!(renamed.content_id(), id);
    match sanitize_file_name(&manifest.name) {
        Ok(safe) => {
            assert!(
                is_safe_file_name(&safe),
                "sanitised {:?} to unsafe {safe:?}",
                manifest.name
            );
            assert!(!safe.contains('/') && !safe.contains('\\') && safe != ".." && safe != ".");
            assert_eq!(
                sanitize_file_name(&safe).as_deref(),
                Ok(safe.as_str()),
                "not idempotent"
            );
        }
        Err(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut other_id = [0u8; 32];
    let n = rest.len().min(32);
    other_id[..n].copy_from_slice(&rest[..n]);
    let kind = if selector & 1 == 0 {
        MANIFEST_REPLY
    } else {
        ANNOUNCE
    };
    let mut body = vec![kind];
    body.extend_from_slice(rest);
    let message = match decode_body(&body) {
        Some(m) => m,
        None => return,
    };
    let manifest = match &message {
        Message::ManifestReply { manifest } => manifest,
        Message::Announce { manifest, chunks } => {
            assert_eq!(chunks.len(), manifest.chunk_count());
            manifest
        }
        other => panic!("kind {kind} decoded as {other:?}"),
    };
    check(manifest, ContentId(other_id));
    let again = decode_body(&message.to_frame()[4..]).expect("re-encoded manifest does not decode");
    assert_eq!(again, message);
});
