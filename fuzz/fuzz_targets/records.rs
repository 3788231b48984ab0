//! The record decoder on hostile bytes: a real session whose sealed stream is delivered
//! split, with records corrupted, dropped, repeated or bytes injected, as the input says.
//! Whatever happens: no panic, and what the opener outputs is always a prefix of what the
//! sealer sealed (nothing forged, replayed or reordered ever comes out). Untouched, it is
//! all of it.
#![no_main]

use arbitrary::Unstructured;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use p2p_core::secure::{Handshake, Keyring, Session, StaticKey, SwarmSecret};
use p2p_fuzz::{be16, blob, byte};

fn session_pair() -> (Session, Session) {
    let secret = SwarmSecret::from_bytes([9; 32]);
    let ring = Keyring::of(secret.clone());
    let mut i = Handshake::initiate(&StaticKey::from_private([1; 32]), &secret, [3; 32]);
    let mut r = Handshake::respond(&StaticKey::from_private([2; 32]), [4; 32]);
    for _ in 0..2 {
        if let Some(bytes) = i.take_transmit() {
            r.handle_input(&bytes, &ring).expect("genuine message");
        }
        if let Some(bytes) = r.take_transmit() {
            i.handle_input(&bytes, &Keyring::new())
                .expect("genuine message");
        }
    }
    (
        i.into_session().expect("finished"),
        r.into_session().expect("finished"),
    )
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (mut i, mut r) = session_pair();
    let mut sealed_plain = Vec::new();
    let mut opened = BytesMut::new();
    let mut tampered = false;
    let mut failed = false;
    // A few writes per input keep each run short (fuzzing wants many runs).
    for _ in 0..16 {
        if u.is_empty() || failed {
            break;
        }
        // One write: a plaintext of chosen length (patterned by its offset), sealed; now
        // and then one over a record's worth, so records split a write.
        let n = usize::from(byte(&mut u));
        let len = if n == 255 { 70_000 } else { n * 7 };
        let plain: Vec<u8> = (sealed_plain.len()..sealed_plain.len() + len)
            .map(|n| (n % 251) as u8)
            .collect();
        sealed_plain.extend_from_slice(&plain);
        let mut wire = BytesMut::new();
        i.sealer.seal(&plain, &mut wire).expect("seals");
        let mut wire = wire.to_vec();
        match byte(&mut u) % 6 {
            0 | 1 => {}
            2 if !wire.is_empty() => {
                let at = usize::from(be16(&mut u)) % wire.len();
                wire[at] ^= 1 << (byte(&mut u) % 8);
                tampered = true;
            }
            3 => {
                wire.truncate(usize::from(be16(&mut u)) % (wire.len() + 1));
                tampered = true;
            }
            4 => {
                let at = usize::from(be16(&mut u)) % (wire.len() + 1);
                let junk = blob(&mut u).to_vec();
                wire.splice(at..at, junk);
                tampered = true;
            }
            _ => {
                let again = wire.clone();
                wire.extend_from_slice(&again);
                tampered = true;
            }
        }
        // Delivered in pieces.
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let take = (usize::from(byte(&mut u)) * 97 + 1).min(rest.len());
            if r.opener.open(&rest[..take], &mut opened).is_err() {
                failed = true;
                break;
            }
            rest = &rest[take..];
        }
        assert!(
            sealed_plain.starts_with(&opened),
            "the opener output bytes that were never sealed in that order"
        );
    }
    if !tampered && !failed {
        assert_eq!(
            &opened[..],
            &sealed_plain[..],
            "untouched, everything opens"
        );
    }
});
