//! Shared pieces of the fuzz targets: the operation-sequence harnesses that drive the
//! tracker and peer machines, and byte readers for their inputs. The structured message
//! generators live in core's test kit (`p2p_core::testkit::generate`), re-exported here as
//! `generate`.
//!
//! The op-sequence inputs are a simple byte format (see [`tracker_harness`] and
//! [`peer_harness`]) so that seed corpora can be written from valid traffic by
//! `examples/gen_corpus.rs`, and so a crashing input can be replayed in a plain test.

pub mod coop_harness;
pub mod peer_harness;
pub mod tracker_harness;

pub use p2p_core::testkit::generate;

use arbitrary::Unstructured;
use bytes::{Bytes, BytesMut};
use p2p_core::Message;
use p2p_core::wire::{FRAME_LEN_MAX, LENGTH_PREFIX_LEN};

/// Reads one byte (0 when the input is exhausted).
pub fn byte(u: &mut Unstructured<'_>) -> u8 {
    u.bytes(1).map(|b| b[0]).unwrap_or(0)
}

/// Reads a big-endian u16 (0 when the input is exhausted).
pub fn be16(u: &mut Unstructured<'_>) -> u16 {
    u.bytes(2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .unwrap_or(0)
}

/// Reads a `u16` length then that many bytes (fewer when the input runs out).
pub fn blob<'a>(u: &mut Unstructured<'a>) -> &'a [u8] {
    let len = be16(u) as usize;
    let len = len.min(u.len());
    u.bytes(len).unwrap_or(&[])
}

/// Appends a `u16` length and `data` in the format [`blob`] reads.
pub fn put_blob(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// Passes a message through the wire as a remote would send it: encode, then decode.
/// `None` when the receiver's decoder would refuse it (so the machines only ever see
/// messages that can really arrive).
pub fn through_wire(message: &Message) -> Option<Message> {
    let mut out = BytesMut::new();
    message.encode(&mut out);
    if out.len() > LENGTH_PREFIX_LEN + FRAME_LEN_MAX as usize {
        return None;
    }
    Message::decode(out.freeze().slice(LENGTH_PREFIX_LEN..)).ok()
}

/// A frame body (kind and payload, no length prefix) as the decoder would see it.
pub fn decode_body(body: &[u8]) -> Option<Message> {
    Message::decode(Bytes::copy_from_slice(body)).ok()
}

/// Asserts that a message a machine sends is one the other side can decode, unchanged.
pub fn assert_sendable(message: &Message) {
    let frame = message.to_frame();
    assert!(
        frame.len() <= LENGTH_PREFIX_LEN + FRAME_LEN_MAX as usize,
        "machine sent a frame of {} bytes, over the limit: {message:?}",
        frame.len()
    );
    let decoded = Message::decode(frame.slice(LENGTH_PREFIX_LEN..))
        .unwrap_or_else(|e| panic!("machine sent an undecodable message ({e}): {message:?}"));
    assert_eq!(
        &decoded, message,
        "machine sent a message that does not round-trip"
    );
}
