//! The cooperative download in the simulator (`Scenario::Coop`, issue 17): seeds whose
//! runs show one behaviour each, checked beyond "every checker passed".

use p2p_sim::{RunReport, Scale, Scenario};

fn run_coop(seed: u64) -> RunReport {
    p2p_sim::install_panic_hook();
    let report = p2p_sim::run(seed, Scenario::Coop, Scale::Small, false);
    assert!(report.passed(), "{report}");
    report
}

/// Four helpers (some slow), crashing four times and split off by partitions while they
/// held ranges: those ranges are fetched again by others (counted as retried bytes), the
/// fetcher's file is exact, and the three getters, arriving after the fetch, get the file
/// from peers.
#[test]
fn helper_crashes_cost_only_their_ranges_seed_52() {
    let report = run_coop(52);
    let coop = report.coop.as_ref().unwrap();
    assert_eq!(coop.outcome, "complete", "{report}");
    let size = report.config.file_size_bytes;
    assert_eq!(coop.origin.new_bytes, size, "{report}");
    assert!(coop.origin.retried_bytes > 0, "{report}");
    assert_eq!(coop.origin.wasted_bytes, 0, "{report}");
    assert!(report.stats.crashes >= 1, "{report}");
    assert_eq!(report.completions.len(), 3, "{report}");
    assert!(report.completions.iter().all(Option::is_some), "{report}");
}

/// The origin's file changes mid-fetch: the job fails (If-Range refuses every old range)
/// instead of completing with bytes of two versions, and the getters never come.
#[test]
fn validator_change_ends_the_fetch_seed_33() {
    let report = run_coop(33);
    let coop = report.coop.as_ref().unwrap();
    assert!(coop.outcome.starts_with("failed"), "{report}");
    assert!(coop.outcome.contains("validator changed"), "{report}");
    assert!(report.completions.iter().all(Option::is_none), "{report}");
}
