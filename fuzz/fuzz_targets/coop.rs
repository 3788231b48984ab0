//! A peer helping (and sometimes fetching) in cooperative origin downloads, fed arbitrary
//! coop messages from several remotes, floods of assignments, and the driver's fetch and
//! write results (see `p2p_fuzz::coop_harness`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = p2p_fuzz::coop_harness::run(data);
});
