//! The tracker target's sequences, beside a thousand sessions already open (see
//! `p2p_fuzz::tracker_harness::run_crowded`): replies, expiries and invariants at scale.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    p2p_fuzz::tracker_harness::run_crowded(data);
});
