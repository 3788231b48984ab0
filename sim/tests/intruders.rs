//! Intruders in every scenario: an outsider (another swarm's secret) is refused at the
//! handshake, and an impostor (a member claiming another live peer's id) is refused by the
//! tracker and by peers, while the run passes every checker: the trust checker (no session
//! with, or message from, an outsider; the impostor's victim never evicted from the
//! tracker, never welcomed under its id) and the safety checker (no honest peer banned).

use p2p_sim::{RunReport, Scale, Scenario};

/// Seeds per scenario: enough that the impostor reaches the tracker and some peer.
const SEEDS_PER_SCENARIO: u64 = 4;

/// Runs `SEEDS_PER_SCENARIO` seeds of `scenario` with one outsider and one impostor
/// dialling every 100 ms, all of which must pass.
fn runs(scenario: Scenario) -> Vec<RunReport> {
    p2p_sim::install_panic_hook();
    (0..SEEDS_PER_SCENARIO)
        .map(|seed| {
            let (mut config, rng) = p2p_sim::configure(seed, scenario, Scale::Small);
            config.faults.outsider_count = 1;
            config.faults.impostor_count = 1;
            config.faults.intruder_dial_interval_ms = 100;
            let report = p2p_sim::run_config(config, rng, false);
            assert!(report.passed(), "{scenario} seed {seed}:\n{report}");
            report
        })
        .collect()
}

#[test]
fn outsider_is_refused_in_every_scenario() {
    for scenario in Scenario::ALL {
        for report in runs(scenario) {
            let stats = &report.stats;
            assert!(
                stats.outsider_handshakes_refused > 0,
                "{scenario}: no outsider handshake was refused\n{report}"
            );
            // Every refused handshake was an outsider's: members always get in.
            assert_eq!(
                stats.handshakes_refused, stats.outsider_handshakes_refused,
                "{scenario}: a member's handshake was refused\n{report}"
            );
        }
    }
}

#[test]
fn impostor_is_refused_by_tracker_and_peers_in_every_scenario() {
    for scenario in Scenario::ALL {
        let reports = runs(scenario);
        let by_tracker: u64 = reports
            .iter()
            .map(|r| r.stats.impostor_refused_by_tracker)
            .sum();
        let by_peers: u64 = reports
            .iter()
            .map(|r| r.stats.impostor_refused_by_peers)
            .sum();
        assert!(
            by_tracker > 0,
            "{scenario}: the tracker never refused the impostor"
        );
        assert!(
            by_peers > 0,
            "{scenario}: no peer ever refused the impostor"
        );
    }
}
