//! The secure handshake under a man in the middle: a real initiator and a real responder,
//! and every handshake message in transit passed, split, corrupted, cut, replaced or
//! repeated as the input says. Whatever happens: no panic; a responder that finishes has
//! heard only the initiator's own messages and names the initiator's key; a session that
//! both ends finish carries records both ways.
#![no_main]

use arbitrary::Unstructured;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use p2p_core::secure::{Handshake, Keyring, StaticKey, SwarmSecret};
use p2p_fuzz::{blob, byte};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let secret = SwarmSecret::from_bytes([byte(&mut u); 32]);
    // Sometimes the responder holds another swarm's secret: it must never finish.
    let ring = if byte(&mut u) % 8 == 0 {
        Keyring::of(SwarmSecret::from_bytes([0x5a; 32]))
    } else {
        Keyring::of(secret.clone())
    };
    let knows_secret = ring.get(&secret.tag()).is_some();
    let key_i = StaticKey::from_private([1; 32]);
    let mut initiator = Handshake::initiate(&key_i, &secret, [byte(&mut u); 32]);
    let mut responder = Handshake::respond(&StaticKey::from_private([2; 32]), [3; 32]);
    let none = Keyring::new();
    let (mut i_failed, mut r_failed, mut tampered) = (false, false, false);

    for _ in 0..8 {
        // Initiator → responder, through the middle.
        if let Some(genuine) = initiator.take_transmit() {
            let (delivered, changed) = middle(&mut u, genuine);
            tampered |= changed;
            for piece in delivered {
                if !r_failed && responder.handle_input(&piece, &ring).is_err() {
                    r_failed = true;
                }
            }
        }
        // Responder → initiator, through the middle.
        if let Some(genuine) = responder.take_transmit() {
            let (delivered, _) = middle(&mut u, genuine);
            for piece in delivered {
                if !i_failed && initiator.handle_input(&piece, &none).is_err() {
                    i_failed = true;
                }
            }
        }
        if u.is_empty() {
            break;
        }
    }

    if responder.is_finished() && !r_failed {
        assert!(knows_secret, "finished without the swarm secret");
        assert!(!tampered, "finished on messages the initiator did not send");
        let mut r = responder
            .into_session()
            .expect("a finished handshake has a session");
        assert_eq!(r.remote.peer_id, key_i.peer_id(), "a key it did not hear");
        if initiator.is_finished() && !i_failed {
            let mut i = initiator.into_session().expect("a session");
            let mut wire = BytesMut::new();
            i.sealer.seal(b"ping", &mut wire).expect("seals");
            let mut plain = BytesMut::new();
            // Bytes the middle added after message 3 went to the opener and may fail it.
            if r.opener.open(&wire, &mut plain).is_ok() {
                assert!(plain.ends_with(b"ping"));
            }
        }
    }
    // Raw bytes at a fresh responder: never a panic, never a finished handshake.
    let mut fresh = Handshake::respond(&StaticKey::from_private([2; 32]), [4; 32]);
    let _ = fresh.handle_input(blob(&mut u), &ring);
    assert!(!fresh.is_finished());
});

/// What the middle delivers of one flight (in pieces), and whether the receiver could have
/// read anything but the genuine bytes first (a flight repeated after itself is not
/// tampering: the first copy is genuine).
fn middle(u: &mut Unstructured<'_>, genuine: Vec<u8>) -> (Vec<Vec<u8>>, bool) {
    let delivered = deliver(u, genuine.clone());
    let tampered = !delivered.concat().starts_with(&genuine);
    (delivered, tampered)
}

fn deliver(u: &mut Unstructured<'_>, mut genuine: Vec<u8>) -> Vec<Vec<u8>> {
    match byte(u) % 8 {
        // Passed whole (most of the time).
        0..=2 => vec![genuine],
        // Split in two deliveries.
        3 => {
            let at = usize::from(byte(u)) % (genuine.len() + 1);
            let tail = genuine.split_off(at);
            vec![genuine, tail]
        }
        // One bit flipped.
        4 => {
            let at = usize::from(byte(u)) % genuine.len().max(1);
            if let Some(b) = genuine.get_mut(at) {
                *b ^= 1 << (byte(u) % 8);
            }
            vec![genuine]
        }
        // Cut short.
        5 => {
            let keep = usize::from(byte(u)) % genuine.len().max(1);
            genuine.truncate(keep);
            vec![genuine]
        }
        // Replaced by the input's bytes.
        6 => vec![blob(u).to_vec()],
        // Sent twice.
        _ => vec![genuine.clone(), genuine],
    }
}
