//! Arbitrary sequences of connects, disconnects, messages from several peers and timer ticks
//! into the tracker machine; invariants asserted after every step (see
//! `p2p_fuzz::tracker_harness`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    p2p_fuzz::tracker_harness::run(data);
});
