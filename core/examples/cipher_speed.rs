//! The record layer's speed with each AEAD Noise offers, on this machine: seal and open
//! 1 GiB through `Sealer` and `Opener` as the runtime uses them (ring's primitives, as the
//! handshake resolves them). Chose `NOISE_PARAMS`.
//!
//! cargo run --release -p p2p-core --features testkit --example cipher_speed

// A benchmark measures wall time: it runs beside the core, not in it, so the sans-IO
// clippy rules of `core/clippy.toml` do not apply here.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::Instant;

use bytes::BytesMut;
use p2p_core::secure::{RECORD_PLAINTEXT_MAX, session_pair_with_cipher};

const TOTAL: usize = 1 << 30;
/// What the runtime's writer seals at once (its batch limit).
const WRITE: usize = 256 * 1024;

fn main() {
    let plain = vec![0x5au8; WRITE];
    let writes = TOTAL / WRITE;
    let mib = (writes * WRITE) as f64 / (1 << 20) as f64;
    println!(
        "record layer, {mib:.0} MiB in {WRITE}-byte writes, records of {RECORD_PLAINTEXT_MAX} bytes"
    );
    for round in 1..=3 {
        for cipher in ["ChaChaPoly", "AESGCM"] {
            let (mut i, mut r) = session_pair_with_cipher(cipher).expect("a session");
            let mut wire = BytesMut::with_capacity(2 * WRITE);
            let mut out = BytesMut::with_capacity(2 * WRITE);
            let (mut seal, mut open) = (0.0, 0.0);
            for _ in 0..writes {
                wire.clear();
                out.clear();
                let start = Instant::now();
                i.sealer.seal(&plain, &mut wire).expect("seals");
                let sealed = Instant::now();
                r.opener.open(&wire, &mut out).expect("opens");
                seal += (sealed - start).as_secs_f64();
                open += sealed.elapsed().as_secs_f64();
            }
            assert_eq!(out.len(), WRITE);
            println!(
                "round {round} {cipher:>10}: seal {:5.0} MiB/s, open {:5.0} MiB/s",
                mib / seal,
                mib / open
            );
        }
    }
}
