//! Codec tests: every message round-trips through the incremental decoder in any split,
//! hostile bytes never panic or balloon the buffer, and every limit is enforced with the
//! error that names it.

use super::*;
use crate::testkit::{cid, manifest_of, samples};

use arbitrary::Unstructured;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestRunner;

use crate::testkit::generate;

use crate::manifest::{CHUNK_COUNT_MAX, CHUNK_SIZE_MIN, NAME_LEN_MAX};

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// Most fuzzer bytes behind one generated message: enough for the kit's largest lists and
/// payloads, so every kind comes out at its full range of sizes.
const GEN_BYTES_MAX: usize = 4096;

/// Any message the encoder can send, drawn by the test kit's generator (the one the fuzzers
/// use) from bytes proptest chooses, so the codec is tested against one generator. Proptest
/// shrinks the bytes, and with them the message.
fn message() -> BoxedStrategy<Message> {
    proptest::collection::vec(any::<u8>(), 0..GEN_BYTES_MAX)
        .prop_filter_map("the generator ran out of bytes", |bytes| {
            generate::message(&mut Unstructured::new(&bytes)).ok()
        })
        .boxed()
}

fn is_bulk(message: &Message) -> bool {
    matches!(
        message,
        Message::Piece { .. } | Message::DeliverRange { .. }
    )
}

/// Written in two parts, its bulk from a shared buffer (`split_bulk`).
fn is_split_on_write(message: &Message) -> bool {
    is_bulk(message) || matches!(message, Message::ManifestReply { .. })
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Feeds `bytes` in pieces ending at `cuts` (positions, any order, duplicates allowed) and
/// drains the decoder after every feed. Returns the messages, or the first error.
fn decode_in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<Vec<Message>, WireError> {
    let mut ends: Vec<usize> = cuts.iter().map(|&cut| cut.min(bytes.len())).collect();
    ends.push(bytes.len());
    ends.sort_unstable();
    let mut decoder = FrameDecoder::new();
    let mut messages = Vec::new();
    let mut start = 0;
    for end in ends {
        decoder.feed(&bytes[start..end]);
        start = end;
        while let Some(message) = decoder.next_message()? {
            messages.push(message);
        }
    }
    assert_eq!(
        decoder.buffered_len(),
        0,
        "whole frames leave nothing behind"
    );
    Ok(messages)
}

/// A frame with `kind` and `payload`, length prefix included.
fn raw_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(LENGTH_PREFIX_LEN + 1 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32 + 1).to_be_bytes());
    frame.push(kind);
    frame.extend_from_slice(payload);
    frame
}

/// Decodes exactly one frame through a `FrameDecoder`.
fn decode_one(frame: &[u8]) -> Result<Option<Message>, WireError> {
    let mut decoder = FrameDecoder::new();
    decoder.feed(frame);
    decoder.next_message()
}

// ---------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------

#[test]
fn samples_cover_every_variant_and_round_trip() {
    let samples = samples();
    let mut seen = std::collections::BTreeSet::new();
    for message in &samples {
        seen.insert(message.kind());
        let frame = message.to_frame();
        assert_eq!(decode_one(&frame), Ok(Some(message.clone())), "{message:?}");
    }
    let missing: Vec<_> = MessageKind::ALL
        .iter()
        .filter(|k| !seen.contains(k))
        .collect();
    assert!(missing.is_empty(), "kinds without a sample: {missing:?}");
}

/// Draws behind the coverage check: with about twenty kinds drawn alike, the chance that
/// one is never drawn is far below one in a billion (and the runner is deterministic).
const COVERAGE_DRAWS: usize = 2000;

/// The property tests find a codec bug of a kind only if the generator draws that kind.
#[test]
fn the_message_strategy_draws_every_kind() {
    let strategy = message();
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..COVERAGE_DRAWS {
        let tree = strategy
            .new_tree(&mut runner)
            .expect("the generator runs out of bytes too often to draw a message");
        seen.insert(tree.current().kind());
    }
    let missing: Vec<_> = MessageKind::ALL
        .iter()
        .filter(|k| !seen.contains(k))
        .collect();
    assert!(missing.is_empty(), "kinds never drawn: {missing:?}");
}

#[test]
fn all_samples_in_one_stream_decode_with_one_byte_feeds() {
    let samples = samples();
    let mut stream = BytesMut::new();
    for message in &samples {
        message.encode(&mut stream);
    }
    let cuts: Vec<usize> = (0..stream.len()).collect();
    assert_eq!(decode_in_pieces(&stream, &cuts), Ok(samples));
}

#[test]
fn largest_announce_fits_in_a_frame() {
    // The biggest manifest the limits allow, announced with its full bitfield and the
    // longest name: the decoder must accept what a conforming sender can produce.
    let manifest = manifest_of(&"n".repeat(NAME_LEN_MAX), CHUNK_COUNT_MAX);
    assert_eq!(manifest.validate(), Ok(()));
    let message = Message::Announce {
        chunks: ChunkSet::full(manifest.chunk_count()),
        manifest,
    };
    let frame = message.to_frame();
    assert!(frame.len() - LENGTH_PREFIX_LEN <= FRAME_LEN_MAX as usize);
    assert_eq!(decode_one(&frame), Ok(Some(message)));
}

#[test]
fn largest_block_round_trips_and_one_more_byte_is_rejected() {
    let data = Bytes::from(vec![0xa5; BLOCK_LEN_MAX as usize]);
    let piece = Message::Piece {
        content_id: cid(1),
        chunk_index: 0,
        offset: 0,
        data,
    };
    assert_eq!(decode_one(&piece.to_frame()), Ok(Some(piece.clone())));

    let oversize = BLOCK_LEN_MAX as usize + 1;
    for message in [
        Message::Piece {
            content_id: cid(1),
            chunk_index: 0,
            offset: 0,
            data: Bytes::from(vec![0; oversize]),
        },
        Message::DeliverRange {
            job_id: 1,
            range_index: 0,
            offset: 0,
            data: Bytes::from(vec![0; oversize]),
        },
    ] {
        assert_eq!(
            decode_one(&message.to_frame()),
            Err(WireError::BlockTooLong { length: oversize })
        );
    }
}

#[test]
fn split_bulk_is_for_bulk_messages_and_manifest_replies_only() {
    for message in samples() {
        assert_eq!(
            message.split_bulk().is_some(),
            is_split_on_write(&message),
            "{message:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Zero copy
// ---------------------------------------------------------------------------------------

/// Whether `inner` lies wholly within `outer`. Compares addresses only: no pointer is
/// dereferenced, so this is sound whatever the allocations are.
fn lies_within(inner: &[u8], outer: &[u8]) -> bool {
    let outer_range = outer.as_ptr_range();
    let inner_range = inner.as_ptr_range();
    (outer_range.start as usize) <= (inner_range.start as usize)
        && (inner_range.end as usize) <= (outer_range.end as usize)
}

#[test]
fn decoded_piece_shares_the_receive_buffer() {
    let payload = Bytes::from((0..=255u8).cycle().take(10_000).collect::<Vec<u8>>());
    let piece = Message::Piece {
        content_id: cid(3),
        chunk_index: 4,
        offset: 5,
        data: payload.clone(),
    };
    let mut decoder = FrameDecoder::new();
    // Two frames, so the piece is not the only thing in the buffer.
    decoder.feed(&Message::Ping { nonce: 1 }.to_frame());
    decoder.feed(&piece.to_frame());
    // The decoder's buffer as it stands once every byte is in: the piece's data must be a
    // view into this region, not a copy of it.
    let receive_region = decoder.buffer_mut().as_ptr_range();
    let receive_region = (receive_region.start as usize, receive_region.end as usize);
    assert_eq!(decoder.next_message(), Ok(Some(Message::Ping { nonce: 1 })));
    let Ok(Some(Message::Piece { data, .. })) = decoder.next_message() else {
        panic!("expected a piece");
    };
    assert_eq!(data, payload);
    let data_range = data.as_ptr_range();
    assert!(
        receive_region.0 <= data_range.start as usize
            && data_range.end as usize <= receive_region.1,
        "piece data {data_range:?} was copied out of the receive buffer {receive_region:x?}"
    );
}

#[test]
fn decode_slices_bulk_data_out_of_the_frame() {
    for message in samples().into_iter().filter(is_bulk) {
        let frame = message.to_frame().slice(LENGTH_PREFIX_LEN..);
        let decoded = Message::decode(frame.clone()).unwrap();
        let (Message::Piece { data, .. } | Message::DeliverRange { data, .. }) = &decoded else {
            panic!("expected bulk, got {decoded:?}");
        };
        assert!(lies_within(data, &frame), "{decoded:?} copied its data");
        assert_eq!(decoded, message);
    }
}

// ---------------------------------------------------------------------------------------
// Framing limits
// ---------------------------------------------------------------------------------------

#[test]
fn four_gib_length_prefix_fails_at_once_without_reserving() {
    let mut decoder = FrameDecoder::new();
    decoder.feed(&[0xff; LENGTH_PREFIX_LEN]);
    assert_eq!(
        decoder.next_message(),
        Err(WireError::FrameTooLong {
            length: u32::MAX,
            max: FRAME_LEN_MAX,
        })
    );
    assert_eq!(decoder.buffered_len(), LENGTH_PREFIX_LEN);
    // Nothing was reserved for the body that was announced.
    assert!(decoder.buffer_mut().capacity() < 1024 * 1024);
}

#[test]
fn length_prefix_just_over_the_limit_fails_and_at_the_limit_waits() {
    let mut decoder = FrameDecoder::new();
    decoder.feed(&(FRAME_LEN_MAX + 1).to_be_bytes());
    assert_eq!(
        decoder.next_message(),
        Err(WireError::FrameTooLong {
            length: FRAME_LEN_MAX + 1,
            max: FRAME_LEN_MAX,
        })
    );

    let mut decoder = FrameDecoder::new();
    decoder.feed(&FRAME_LEN_MAX.to_be_bytes());
    assert_eq!(decoder.next_message(), Ok(None));
    assert_eq!(decoder.wanted_len(), FRAME_LEN_MAX as usize);
}

#[test]
fn partial_length_prefix_waits() {
    let mut decoder = FrameDecoder::new();
    assert_eq!(decoder.wanted_len(), LENGTH_PREFIX_LEN);
    decoder.feed(&[0, 0, 0]);
    assert_eq!(decoder.next_message(), Ok(None));
    assert_eq!(decoder.wanted_len(), 1);
    decoder.feed(&[9]);
    assert_eq!(decoder.next_message(), Ok(None));
    assert_eq!(decoder.wanted_len(), 9);
}

#[test]
fn empty_frame_and_unknown_kinds_are_rejected() {
    assert_eq!(decode_one(&0u32.to_be_bytes()), Err(WireError::EmptyFrame));
    assert_eq!(Message::decode(Bytes::new()), Err(WireError::EmptyFrame));
    for unknown in [0u8, 6, 9, 17, 25, 39, 49, 58, 255] {
        assert_eq!(
            decode_one(&raw_frame(unknown, &[])),
            Err(WireError::UnknownKind(unknown))
        );
    }
}

// ---------------------------------------------------------------------------------------
// Field limits
// ---------------------------------------------------------------------------------------

/// An `Error` frame whose message field declares `declared` bytes and carries `body`.
fn error_frame_with_string(declared: u16, body: &[u8]) -> Vec<u8> {
    let mut payload = vec![0, 1];
    payload.extend_from_slice(&declared.to_be_bytes());
    payload.extend_from_slice(body);
    raw_frame(MessageKind::Error.byte(), &payload)
}

#[test]
fn strings_at_the_limit_pass_and_over_it_fail() {
    let at_limit = "x".repeat(STRING_LEN_MAX);
    assert_eq!(
        decode_one(&error_frame_with_string(
            STRING_LEN_MAX as u16,
            at_limit.as_bytes()
        )),
        Ok(Some(Message::Error {
            code: 1,
            message: at_limit,
        }))
    );
    let over = STRING_LEN_MAX + 1;
    assert_eq!(
        decode_one(&error_frame_with_string(over as u16, &vec![b'x'; over])),
        Err(WireError::StringTooLong { length: over })
    );
    // The limit is checked before the body is awaited or read.
    assert_eq!(
        decode_one(&error_frame_with_string(u16::MAX, &[])),
        Err(WireError::StringTooLong {
            length: u16::MAX as usize,
        })
    );
}

#[test]
fn encoder_truncates_oversize_strings_at_a_char_boundary() {
    // A local caller that exceeds the limit must not produce a frame the peer rejects.
    let long = "é".repeat(STRING_LEN_MAX); // two bytes each
    let frame = Message::Error {
        code: 0,
        message: long,
    }
    .to_frame();
    let Ok(Some(Message::Error { message, .. })) = decode_one(&frame) else {
        panic!("oversize string must still encode to a valid frame");
    };
    assert_eq!(message.len(), STRING_LEN_MAX);
    assert!(message.chars().all(|c| c == 'é'));
}

#[test]
fn invalid_utf8_is_rejected() {
    assert_eq!(
        decode_one(&error_frame_with_string(2, &[0xc3, 0x28])),
        Err(WireError::InvalidUtf8)
    );
}

#[test]
fn oversize_lists_are_rejected_before_reading_entries() {
    let over_list = (LIST_LEN_MAX + 1) as u32;
    let over_peers = (PEERS_LEN_MAX + 1) as u32;
    let list_too_long = |length: u32, max: usize| WireError::ListTooLong {
        length: length as usize,
        max,
    };

    let mut have = cid(1).0.to_vec();
    have.extend_from_slice(&over_list.to_be_bytes());
    assert_eq!(
        decode_one(&raw_frame(MessageKind::Have.byte(), &have)),
        Err(list_too_long(over_list, LIST_LEN_MAX))
    );

    for list_kind in [MessageKind::FileList.byte(), MessageKind::PeerList.byte()] {
        assert_eq!(
            decode_one(&raw_frame(list_kind, &over_list.to_be_bytes())),
            Err(list_too_long(over_list, LIST_LEN_MAX))
        );
    }

    for peers_kind in [
        MessageKind::Located.byte(),
        MessageKind::PeerExchange.byte(),
    ] {
        let mut payload = cid(1).0.to_vec();
        payload.extend_from_slice(&over_peers.to_be_bytes());
        assert_eq!(
            decode_one(&raw_frame(peers_kind, &payload)),
            Err(list_too_long(over_peers, PEERS_LEN_MAX))
        );
    }

    // A bitfield over more chunks than any manifest may have.
    let mut bitfield = cid(1).0.to_vec();
    bitfield.extend_from_slice(&(CHUNK_COUNT_MAX + 1).to_be_bytes());
    assert_eq!(
        decode_one(&raw_frame(MessageKind::Bitfield.byte(), &bitfield)),
        Err(list_too_long(CHUNK_COUNT_MAX + 1, CHUNK_COUNT_MAX as usize))
    );
}

#[test]
fn list_count_within_limit_but_beyond_the_frame_is_truncated() {
    // A count the frame cannot hold is refused before any entry is allocated.
    let mut have = cid(1).0.to_vec();
    have.extend_from_slice(&(LIST_LEN_MAX as u32).to_be_bytes());
    assert_eq!(
        decode_one(&raw_frame(MessageKind::Have.byte(), &have)),
        Err(WireError::Truncated {
            kind: MessageKind::Have.byte()
        })
    );
}

/// A `Bitfield` frame over `len` chunks with `bits` as its bitfield.
fn bitfield_frame(len: u32, bits: &[u8]) -> Vec<u8> {
    let mut payload = cid(1).0.to_vec();
    payload.extend_from_slice(&len.to_be_bytes());
    payload.extend_from_slice(bits);
    raw_frame(MessageKind::Bitfield.byte(), &payload)
}

#[test]
fn bitfields_with_set_padding_bits_are_rejected() {
    assert_eq!(
        decode_one(&bitfield_frame(10, &[0xff, 0xc0])),
        Ok(Some(Message::Bitfield {
            content_id: cid(1),
            chunks: ChunkSet::full(10),
        }))
    );
    for padding in [0x20u8, 0x10, 0x01, 0x3f] {
        assert_eq!(
            decode_one(&bitfield_frame(10, &[0xff, 0xc0 | padding])),
            Err(WireError::BadBitfield),
            "padding bits {padding:#04x}"
        );
    }
    // Whole bytes have no padding: every bit is a chunk.
    assert!(decode_one(&bitfield_frame(16, &[0xff, 0xff])).is_ok());
    // Too few bytes for the declared length.
    assert_eq!(
        decode_one(&bitfield_frame(10, &[0xff])),
        Err(WireError::Truncated {
            kind: MessageKind::Bitfield.byte(),
        })
    );
}

#[test]
fn announce_bitfield_must_match_the_manifest() {
    let manifest = manifest_of("f", 10);
    let mut stream = BytesMut::new();
    Message::Announce {
        manifest,
        chunks: ChunkSet::full(9),
    }
    .encode(&mut stream);
    assert_eq!(decode_one(&stream), Err(WireError::BadBitfield));
}

/// A `ManifestReply` frame carrying `manifest` as it is, valid or not.
fn manifest_reply_frame(manifest: &Manifest) -> Bytes {
    Message::ManifestReply {
        manifest: manifest.clone(),
    }
    .to_frame()
}

#[test]
fn invalid_manifests_are_rejected() {
    use crate::manifest::ManifestError;

    let mut bad_chunk_size = manifest_of("f", 1);
    bad_chunk_size.chunk_size = CHUNK_SIZE_MIN - 1;
    assert_eq!(
        decode_one(&manifest_reply_frame(&bad_chunk_size)),
        Err(WireError::BadManifest(ManifestError::ChunkSize(
            CHUNK_SIZE_MIN - 1
        )))
    );

    let mut wrong_count = manifest_of("f", 3);
    wrong_count.size += 1;
    assert_eq!(
        decode_one(&manifest_reply_frame(&wrong_count)),
        Err(WireError::BadManifest(ManifestError::ChunkCount {
            expected: 4,
            found: 3,
        }))
    );

    let long_name = manifest_of(&"n".repeat(NAME_LEN_MAX + 1), 1);
    assert_eq!(
        decode_one(&manifest_reply_frame(&long_name)),
        Err(WireError::BadManifest(ManifestError::NameTooLong(
            NAME_LEN_MAX + 1
        )))
    );

    let mut too_many = manifest_of("f", 0);
    too_many.size = u64::from(CHUNK_COUNT_MAX + 1) * u64::from(CHUNK_SIZE_MIN);
    assert_eq!(
        decode_one(&manifest_reply_frame(&too_many)),
        Err(WireError::BadManifest(ManifestError::TooManyChunks(
            u64::from(CHUNK_COUNT_MAX) + 1
        )))
    );
}

#[test]
fn trailing_bytes_are_rejected_for_every_fixed_shape_message() {
    for message in samples().into_iter().filter(|m| !is_bulk(m)) {
        let mut body = message.to_frame().slice(LENGTH_PREFIX_LEN..).to_vec();
        let kind = body[0];
        body.extend_from_slice(&[0, 0, 0]);
        let frame = raw_frame(kind, &body[1..]);
        assert_eq!(
            decode_one(&frame),
            Err(WireError::TrailingBytes { kind, extra: 3 }),
            "{message:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

/// One piece of hostile input: noise, a valid frame, or a valid frame with a byte changed.
fn hostile_segment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        message().prop_map(|m| m.to_frame().to_vec()),
        (message(), any::<Index>(), any::<u8>()).prop_map(|(m, at, byte)| {
            let mut frame = m.to_frame().to_vec();
            let i = at.index(frame.len());
            frame[i] = byte;
            frame
        }),
        // A frame whose length prefix was shortened: its body ends early.
        (message(), any::<Index>()).prop_map(|(m, cut)| {
            let frame = m.to_frame();
            let body = &frame[LENGTH_PREFIX_LEN..];
            let kept = &body[..cut.index(body.len())];
            let mut out = (kept.len() as u32).to_be_bytes().to_vec();
            out.extend_from_slice(kept);
            out
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_message_round_trips(message in message()) {
        let frame = message.to_frame();

        let mut encoded = BytesMut::new();
        message.encode(&mut encoded);
        prop_assert_eq!(&encoded[..], &frame[..]);

        let declared = u32::from_be_bytes(frame[..LENGTH_PREFIX_LEN].try_into().unwrap());
        prop_assert_eq!(declared as usize, frame.len() - LENGTH_PREFIX_LEN);
        prop_assert!(declared <= FRAME_LEN_MAX);

        prop_assert_eq!(decode_one(&frame), Ok(Some(message.clone())));
        prop_assert_eq!(
            Message::decode(frame.slice(LENGTH_PREFIX_LEN..)),
            Ok(message.clone())
        );
        // Send queues count messages by the estimate: it must never fall short.
        prop_assert!(message.encoded_len_estimate() >= frame.len());
    }

    #[test]
    fn split_bulk_header_and_data_equal_the_frame(message in message()) {
        match message.split_bulk() {
            Some((header, data)) => {
                let mut joined = header.to_vec();
                joined.extend_from_slice(data);
                prop_assert_eq!(&joined[..], &message.to_frame()[..]);
            }
            None => prop_assert!(!is_split_on_write(&message)),
        }
    }

    #[test]
    fn a_stream_decodes_the_same_in_any_split(
        messages in proptest::collection::vec(message(), 1..12),
        cuts in proptest::collection::vec(any::<Index>(), 0..40),
    ) {
        let mut stream = BytesMut::new();
        for message in &messages {
            message.encode(&mut stream);
        }
        let cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(stream.len() + 1)).collect();
        prop_assert_eq!(decode_in_pieces(&stream, &cuts), Ok(messages.clone()));
        let every_byte: Vec<usize> = (0..stream.len()).collect();
        prop_assert_eq!(decode_in_pieces(&stream, &every_byte), Ok(messages));
    }

    #[test]
    fn strict_prefixes_of_fixed_shape_messages_are_truncated(
        message in message().prop_filter("fixed shape", |m| !is_bulk(m)),
        cut in any::<Index>(),
    ) {
        let frame = message.to_frame();
        let body = frame.slice(LENGTH_PREFIX_LEN..);
        let payload_len = body.len() - 1;
        prop_assume!(payload_len > 0);
        let kept = 1 + cut.index(payload_len);
        prop_assert_eq!(
            Message::decode(body.slice(..kept)),
            Err(WireError::Truncated { kind: body[0] })
        );
    }

    #[test]
    fn hostile_bytes_never_panic_and_stay_bounded(
        segments in proptest::collection::vec(hostile_segment(), 1..8),
        cuts in proptest::collection::vec(any::<Index>(), 0..24),
    ) {
        let bytes = segments.concat();
        let mut ends: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
        ends.push(bytes.len());
        ends.sort_unstable();
        let mut decoder = FrameDecoder::new();
        let mut start = 0;
        'feeding: for end in ends {
            let feed = &bytes[start..end];
            start = end;
            decoder.feed(feed);
            prop_assert!(
                decoder.buffered_len() <= FRAME_LEN_MAX as usize + LENGTH_PREFIX_LEN + feed.len()
            );
            loop {
                let _ = decoder.wanted_len();
                match decoder.next_message() {
                    Ok(Some(message)) => {
                        // Whatever decodes must re-encode to a frame that decodes the same.
                        prop_assert_eq!(decode_one(&message.to_frame()), Ok(Some(message)));
                    }
                    Ok(None) => break,
                    // The driver closes the connection: nothing more is fed.
                    Err(_) => break 'feeding,
                }
            }
            prop_assert!(
                decoder.buffered_len() < FRAME_LEN_MAX as usize + LENGTH_PREFIX_LEN
            );
        }
    }
}
