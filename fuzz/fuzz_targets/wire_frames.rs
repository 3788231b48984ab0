//! Arbitrary bytes fed to the incremental decoder in arbitrary splits. The split decoding
//! must give exactly what one-shot decoding gives, never panic, never buffer past a frame,
//! and every decoded message must re-encode to something that decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_core::wire::{FRAME_LEN_MAX, LENGTH_PREFIX_LEN};
use p2p_core::{FrameDecoder, Message, WireError};

/// Feeds `stream` in pieces whose sizes cycle through `cuts` (each byte + 1), draining after
/// every feed; stops at the first error, as a connection would.
fn decode(stream: &[u8], cuts: &[u8]) -> Vec<Result<Message, WireError>> {
    let mut decoder = FrameDecoder::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < stream.len() {
        let step = if cuts.is_empty() {
            stream.len()
        } else {
            cuts[i % cuts.len()] as usize + 1
        };
        i += 1;
        let end = (at + step).min(stream.len());
        decoder.feed(&stream[at..end]);
        at = end;
        loop {
            assert!(decoder.wanted_len() >= 1);
            match decoder.next_message() {
                Ok(Some(message)) => out.push(Ok(message)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
        // Nothing but the rest of one frame may stay buffered after draining.
        assert!(decoder.buffered_len() <= LENGTH_PREFIX_LEN + FRAME_LEN_MAX as usize);
        assert!(
            decoder.buffer_mut().capacity() <= 4 * 1024 * 1024 + 4 * stream.len(),
            "decoder reserved {} bytes for a {}-byte stream",
            decoder.buffer_mut().capacity(),
            stream.len()
        );
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // [n][n cut bytes][stream]
    let (cuts, stream) = match data.split_first() {
        Some((&n, rest)) => rest.split_at((n as usize % 16).min(rest.len())),
        None => (&[][..], data),
    };
    let whole = decode(stream, &[]);
    let split = decode(stream, cuts);
    assert_eq!(
        whole, split,
        "split decoding differs from one-shot decoding"
    );
    for message in whole.into_iter().flatten() {
        let frame = message.to_frame();
        let again = Message::decode(frame.slice(LENGTH_PREFIX_LEN..))
            .unwrap_or_else(|e| panic!("re-encoded {message:?} does not decode: {e}"));
        assert_eq!(again, message);
        if let Some((header, data)) = message.split_bulk() {
            let mut joined = header.to_vec();
            joined.extend_from_slice(data);
            assert_eq!(&joined[..], &frame[..], "split_bulk differs from to_frame");
        }
    }
});
