//! Seeds that once failed, kept by name. Each says what broke and where it was fixed.

use p2p_sim::{Scale, Scenario};

fn assert_passes(seed: u64, scenario: Scenario, scale: Scale) {
    p2p_sim::install_panic_hook();
    let report = p2p_sim::run(seed, scenario, scale, false);
    assert!(report.passed(), "{report}");
}

/// A flash crowd larger than the seeder's `connections_max` (185 peers, limit 128): peers
/// that started empty sent an empty `Announce` (ignored by the tracker) and then `Have`s
/// for a content the tracker did not know them to hold (also ignored), so the tracker never
/// listed them as sources and the 57 peers the seeder refused found no source at all
/// (liveness). Fixed in core by announcing on the first verified chunk (a402664).
#[test]
fn flash_crowd_beyond_seeder_connection_limit_seed_238() {
    assert_passes(238, Scenario::FlashCrowd, Scale::Full);
}
