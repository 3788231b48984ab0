//! Structured messages (built from the fuzz input with `arbitrary`, always within the
//! encoder's limits) encoded and decoded back: equal, in one piece and byte by byte.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use p2p_core::wire::LENGTH_PREFIX_LEN;
use p2p_core::{FrameDecoder, Message};
use p2p_fuzz::generate;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut messages = Vec::new();
    while messages.len() < 8 && !u.is_empty() {
        let Ok(message) = generate::message(&mut u) else {
            break;
        };
        messages.push(message);
    }
    let mut stream = Vec::new();
    for message in &messages {
        let frame = message.to_frame();
        let length = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(
            length + LENGTH_PREFIX_LEN,
            frame.len(),
            "length prefix is wrong"
        );
        let decoded = Message::decode(frame.slice(LENGTH_PREFIX_LEN..))
            .unwrap_or_else(|e| panic!("{message:?} does not decode: {e}"));
        assert_eq!(&decoded, message);
        if let Some((header, data)) = message.split_bulk() {
            let mut joined = header.to_vec();
            joined.extend_from_slice(data);
            assert_eq!(&joined[..], &frame[..], "split_bulk differs from to_frame");
        }
        stream.extend_from_slice(&frame);
    }
    // The whole stream, in pieces of 1..=7 bytes.
    let mut decoder = FrameDecoder::new();
    let mut decoded = Vec::new();
    for (i, piece) in stream.chunks(1 + messages.len() % 7).enumerate() {
        decoder.feed(piece);
        while let Some(message) = decoder
            .next_message()
            .unwrap_or_else(|e| panic!("stream fails at piece {i}: {e}"))
        {
            decoded.push(message);
        }
    }
    assert_eq!(decoded, messages);
    assert_eq!(decoder.buffered_len(), 0);
});
