//! A peer machine publishing one file and downloading another, fed arbitrary messages from
//! several remote peers (lies included), reads, stores and timer ticks (see
//! `p2p_fuzz::peer_harness`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = p2p_fuzz::peer_harness::run(data);
});
