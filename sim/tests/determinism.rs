//! The same seed gives the same run, bit for bit: equal trace digests, twice over.

use p2p_sim::{Scale, Scenario};

#[test]
fn same_seed_same_digest() {
    p2p_sim::install_panic_hook();
    let mix = [1u64, 2, 3, 4, 5, 6, 7, 42].map(|seed| (seed, Scenario::for_seed(seed)));
    let coop = [1u64, 46].map(|seed| (seed, Scenario::Coop));
    let collection = [3u64, 4].map(|seed| (seed, Scenario::Collection));
    for (seed, scenario) in mix.into_iter().chain(coop).chain(collection) {
        let first = p2p_sim::run(seed, scenario, Scale::Small, false);
        let second = p2p_sim::run(seed, scenario, Scale::Small, false);
        assert_eq!(
            first.digest, second.digest,
            "seed {seed} ({scenario}) replayed differently: {:016x} then {:016x}",
            first.digest, second.digest
        );
        assert_eq!(
            first.completions, second.completions,
            "seed {seed}: completion times differ"
        );
        assert_eq!(
            first.stats.events, second.stats.events,
            "seed {seed}: event counts differ"
        );
        assert_eq!(
            first.coop.map(|c| c.origin.bytes_sent),
            second.coop.map(|c| c.origin.bytes_sent),
            "seed {seed}: the origin sent different byte counts"
        );
    }
}

#[test]
fn different_seeds_differ() {
    p2p_sim::install_panic_hook();
    let a = p2p_sim::run(10, Scenario::Random, Scale::Small, false);
    let b = p2p_sim::run(11, Scenario::Random, Scale::Small, false);
    assert_ne!(a.digest, b.digest);
}
