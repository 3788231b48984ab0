use bytes::BytesMut;

use super::*;
use crate::secure::handshake::{MSG1_LEN, MSG2_LEN, MSG3_LEN};

fn secret(byte: u8) -> SwarmSecret {
    SwarmSecret::from_bytes([byte; 32])
}

fn key(byte: u8) -> StaticKey {
    StaticKey::from_private([byte; 32])
}

/// Runs a handshake to its end, passing bytes whole; returns (initiator, responder).
fn pair(secret_i: &SwarmSecret, ring: &Keyring) -> Result<(Session, Session), SecureError> {
    let mut initiator = Handshake::initiate(&key(1), secret_i, [7; 32]);
    let mut responder = Handshake::respond(&key(2), [8; 32]);
    let none = Keyring::new();
    for _ in 0..4 {
        if let Some(bytes) = initiator.take_transmit() {
            responder.handle_input(&bytes, ring)?;
        }
        if let Some(bytes) = responder.take_transmit() {
            initiator.handle_input(&bytes, &none)?;
        }
    }
    assert!(initiator.is_finished() && responder.is_finished());
    Ok((initiator.into_session()?, responder.into_session()?))
}

#[test]
fn params_parse() {
    assert!(NOISE_PARAMS.parse::<snow::params::NoiseParams>().is_ok());
}

#[test]
fn same_secret_authenticates_both_ends() {
    let (i, r) = pair(&secret(9), &Keyring::of(secret(9))).unwrap();
    assert_eq!(i.remote.peer_id, key(2).peer_id());
    assert_eq!(r.remote.peer_id, key(1).peer_id());
    assert_eq!(i.remote_key, *key(2).public());
    assert_eq!(i.swarm, secret(9).tag());
    assert_eq!(r.remote.swarm, secret(9).tag().name());
}

#[test]
fn messages_have_the_lengths_the_responder_insists_on() {
    let mut initiator = Handshake::initiate(&key(1), &secret(9), [7; 32]);
    let mut responder = Handshake::respond(&key(2), [8; 32]);
    let m1 = initiator.take_transmit().unwrap();
    assert_eq!(m1.len(), 2 + MSG1_LEN);
    responder
        .handle_input(&m1, &Keyring::of(secret(9)))
        .unwrap();
    let m2 = responder.take_transmit().unwrap();
    assert_eq!(m2.len(), 2 + MSG2_LEN);
    initiator.handle_input(&m2, &Keyring::new()).unwrap();
    let m3 = initiator.take_transmit().unwrap();
    assert_eq!(m3.len(), 2 + MSG3_LEN);
    assert!(initiator.is_finished() && !responder.is_finished());
}

#[test]
fn records_round_trip_in_both_directions_across_record_boundaries() {
    let (mut i, mut r) = pair(&secret(9), &Keyring::of(secret(9))).unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|n| (n % 251) as u8).collect();
    let mut wire = BytesMut::new();
    i.sealer.seal(&big, &mut wire).unwrap();
    i.sealer.seal(b"", &mut wire).unwrap();
    i.sealer.seal(b"tail", &mut wire).unwrap();
    assert_eq!(
        wire.len(),
        record::sealed_len(big.len()) + record::sealed_len(4)
    );
    // Fed in odd pieces, so records (and their length prefixes) split across inputs.
    let mut plain = BytesMut::new();
    let mut at = 0;
    for (n, len) in [1, 1, 3, 7919, 1, 65_537, 2]
        .into_iter()
        .cycle()
        .enumerate()
    {
        if at == wire.len() || n > 10_000 {
            break;
        }
        let end = (at + len).min(wire.len());
        r.opener.open(&wire[at..end], &mut plain).unwrap();
        at = end;
    }
    assert_eq!(r.opener.pending_len(), 0);
    assert_eq!(&plain[..big.len()], &big[..]);
    assert_eq!(&plain[big.len()..], b"tail");

    let mut back = BytesMut::new();
    r.sealer.seal(b"welcome", &mut back).unwrap();
    let mut plain = BytesMut::new();
    i.opener.open(&back, &mut plain).unwrap();
    assert_eq!(&plain[..], b"welcome");
}

#[test]
fn records_open_one_by_one_into_the_callers_buffer() {
    let (mut i, mut r) = pair(&secret(9), &Keyring::of(secret(9))).unwrap();
    let block: Vec<u8> = (0..100_000u32).map(|n| (n % 253) as u8).collect();
    let mut wire = vec![0u8; record::sealed_len(block.len())];
    let sealed = wire.len();
    let tight = i.sealer.seal_into(&block, &mut wire[..sealed - 1]);
    assert_eq!(tight, Err(SecureError::BufferTooSmall));
    assert_eq!(i.sealer.seal_into(&block, &mut wire), Ok(sealed));

    // Each record into the block's place, with room for the tag after its plaintext.
    let mut out = vec![0u8; block.len() + TAG_LEN];
    let (mut at, mut filled) = (0, 0);
    while at < wire.len() {
        let len = record::record_len(&wire[at..]).unwrap().unwrap();
        let plain = record::record_plaintext_len(len);
        let record = &wire[at..at + len];
        let no_room = r
            .opener
            .open_record(record, &mut out[filled..filled + plain]);
        assert_eq!(no_room, Err(SecureError::BufferTooSmall));
        assert_eq!(r.opener.open_record(record, &mut out[filled..]), Ok(plain));
        at += len;
        filled += plain;
    }
    assert_eq!(&out[..block.len()], &block[..]);
    // A prefix that no sealer writes (shorter than a tag), and one still incomplete.
    assert_eq!(record::record_len(&[0, 15]), Err(SecureError::Decrypt));
    assert_eq!(record::record_len(&[1]), Ok(None));
}

#[test]
fn the_first_records_may_arrive_with_the_last_handshake_message() {
    let ring = Keyring::of(secret(9));
    let mut initiator = Handshake::initiate(&key(1), &secret(9), [7; 32]);
    let mut responder = Handshake::respond(&key(2), [8; 32]);
    responder
        .handle_input(&initiator.take_transmit().unwrap(), &ring)
        .unwrap();
    initiator
        .handle_input(&responder.take_transmit().unwrap(), &Keyring::new())
        .unwrap();
    let mut flight = initiator.take_transmit().unwrap();
    let mut session = initiator.into_session().unwrap();
    let mut hello = BytesMut::new();
    session.sealer.seal(b"hello", &mut hello).unwrap();
    flight.extend_from_slice(&hello);
    responder.handle_input(&flight, &ring).unwrap();
    let mut r = responder.into_session().unwrap();
    let mut plain = BytesMut::new();
    r.opener.open(&[], &mut plain).unwrap();
    assert_eq!(&plain[..], b"hello");
}

#[test]
fn a_different_secret_is_refused_by_tag_and_a_wrong_key_under_the_tag_by_decryption() {
    let err = pair(&secret(9), &Keyring::of(secret(10))).err().unwrap();
    assert_eq!(err, SecureError::UnknownSwarm(secret(9).tag()));
    // A responder holding a different secret under the same tag: message 3 fails.
    let mut ring = Keyring::new();
    ring.insert_as(secret(9).tag(), secret(10));
    assert_eq!(pair(&secret(9), &ring).err(), Some(SecureError::Decrypt));
}

#[test]
fn plaintext_frames_and_random_bytes_are_not_a_handshake() {
    let ring = Keyring::of(secret(9));
    // A p2p1 frame starts with a u32 length: its first two bytes are zero.
    let mut old = BytesMut::new();
    crate::Message::Goodbye.encode(&mut old);
    let mut responder = Handshake::respond(&key(2), [8; 32]);
    assert_eq!(
        responder.handle_input(&old, &ring),
        Err(SecureError::BadLength(0))
    );
    // The right length, but not a Noise message at all.
    let mut junk = vec![0, MSG1_LEN as u8];
    junk.extend(std::iter::repeat_n(0xab, MSG1_LEN));
    let mut responder = Handshake::respond(&key(2), [8; 32]);
    assert_eq!(
        responder.handle_input(&junk, &ring),
        Err(SecureError::Decrypt)
    );
    assert!(
        responder.take_transmit().is_none(),
        "nothing is said to an outsider"
    );
}

#[test]
fn garbled_replayed_and_short_records_are_refused() {
    let (mut i, mut r) = pair(&secret(9), &Keyring::of(secret(9))).unwrap();
    let mut one = BytesMut::new();
    i.sealer.seal(b"first", &mut one).unwrap();
    let mut out = BytesMut::new();
    r.opener.open(&one, &mut out).unwrap();
    // The same record again: its nonce is spent.
    assert_eq!(r.opener.open(&one, &mut out), Err(SecureError::Decrypt));
    assert_eq!(&out[..], b"first", "nothing of a refused record is output");

    let (mut i, mut r) = pair(&secret(9), &Keyring::of(secret(9))).unwrap();
    let mut two = BytesMut::new();
    i.sealer.seal(b"second", &mut two).unwrap();
    let last = two.len() - 1;
    two[last] ^= 1;
    assert_eq!(
        r.opener.open(&two, &mut BytesMut::new()),
        Err(SecureError::Decrypt)
    );

    let (_, mut r) = pair(&secret(9), &Keyring::of(secret(9))).unwrap();
    assert_eq!(
        r.opener.open(&[0, 15], &mut BytesMut::new()),
        Err(SecureError::Decrypt)
    );
}

#[test]
fn same_seeds_give_the_same_bytes() {
    let run = || {
        let mut initiator = Handshake::initiate(&key(1), &secret(9), [7; 32]);
        initiator.take_transmit().unwrap()
    };
    assert_eq!(run(), run());
    let other = Handshake::initiate(&key(1), &secret(9), [6; 32])
        .take_transmit()
        .unwrap();
    assert_ne!(run(), other);
}

#[test]
fn an_id_comes_only_with_its_key() {
    assert_ne!(key(1).peer_id(), key(2).peer_id());
    assert_eq!(key(1).peer_id(), keys::peer_id_of(key(1).public()));
    let tag = secret(9).tag();
    assert_ne!(tag, secret(10).tag());
    assert_eq!(
        "zz".parse::<SwarmSecret>().err().map(|e| e.to_string()),
        Some("a swarm secret is 64 hex digits: expected 64 hex digits, found 2".into())
    );
    let text = secret(9).to_hex();
    assert_eq!(text.parse::<SwarmSecret>().unwrap(), secret(9));
    assert!(
        !format!("{:?}", secret(9)).contains(&text),
        "Debug hides the secret"
    );
}

#[test]
fn lan_name_is_the_secrets_own_and_names_nothing_else() {
    let name = secret(9).lan_name();
    assert_eq!(name, secret(9).lan_name(), "a pure function of the secret");
    assert_eq!(name.len(), keys::LAN_NAME_BYTES * 2);
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    // Different swarms, different names, even for secrets one bit apart.
    let mut near = [9u8; 32];
    near[31] ^= 1;
    let names: std::collections::BTreeSet<String> =
        [secret(9), secret(10), SwarmSecret::from_bytes(near)]
            .iter()
            .map(SwarmSecret::lan_name)
            .collect();
    assert_eq!(names.len(), 3);
    // Nothing an outsider could match it against: not the secret, not the tag a handshake
    // shows, not the key, not the content id of a file shared in the swarm.
    let mut builder = crate::ManifestBuilder::new("movie.mkv", 16 * 1024).unwrap();
    builder.update(b"content");
    let manifest = builder.finish().unwrap();
    let content_id = manifest.content_id().to_string();
    let secret_hex = secret(9).to_hex();
    let tag_hex = secret(9).tag().to_string();
    let psk_hex = crate::ids::to_hex(&secret(9).psk());
    for other in [&secret_hex, &tag_hex, &psk_hex, &content_id] {
        assert!(
            !other.contains(&name[..8]),
            "{other} shares a prefix with {name}"
        );
        assert!(
            !name.contains(&other[..8]),
            "{name} contains part of {other}"
        );
    }
}
