//! Behaviour pinned by trace digests: 112 seeds, 16 of each scenario, must replay exactly as
//! recorded in `pinned_digests.txt`. A restructuring that keeps behaviour keeps every
//! digest; a change that means to alter behaviour re-records the file in the same commit and
//! says why in its message:
//!
//! ```sh
//! P2P_SIM_BLESS=1 cargo test -p p2p-sim --test pinned_digests
//! ```
//!
//! The digest hashes every event and every action in order (message kinds and sizes, not
//! their `Debug` text), so it moves when the machines do something different, not when a
//! name or a module changes.

use std::fmt::Write as _;
use std::path::PathBuf;

use p2p_sim::{Scale, Scenario};

/// Seeds per scenario; `Scenario::for_seed` cycles through all of them.
const SEEDS_PER_SCENARIO: u64 = 16;

fn pinned_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pinned_digests.txt")
}

/// One line per seed: `seed scenario digest`.
fn current_digests() -> String {
    let seeds = SEEDS_PER_SCENARIO * Scenario::ALL.len() as u64;
    let lines: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..seeds)
            .map(|seed| {
                s.spawn(move || {
                    let scenario = Scenario::for_seed(seed);
                    let report = p2p_sim::run(seed, scenario, Scale::Small, false);
                    format!("{seed} {scenario} {:016x}", report.digest)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    lines.iter().fold(String::new(), |mut out, line| {
        let _ = writeln!(out, "{line}");
        out
    })
}

#[test]
fn digests_match_the_pinned_file() {
    p2p_sim::install_panic_hook();
    let current = current_digests();
    // The simulator's hook keeps panic texts for its reports and prints nothing; this
    // test's own failure must be printed.
    drop(std::panic::take_hook());
    let path = pinned_path();
    if std::env::var_os("P2P_SIM_BLESS").is_some() {
        std::fs::write(&path, &current).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let pinned = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; record it with P2P_SIM_BLESS=1",
            path.display()
        )
    });
    let changed: Vec<String> = pinned
        .lines()
        .zip(current.lines())
        .filter(|(want, got)| want != got)
        .map(|(want, got)| format!("  pinned {want}\n  now    {got}"))
        .collect();
    assert!(
        changed.is_empty() && pinned.lines().count() == current.lines().count(),
        "{} of {} seeds replay differently from {} (behaviour changed; if on purpose, \
         re-record with P2P_SIM_BLESS=1 and say why in the commit):\n{}",
        changed.len(),
        current.lines().count(),
        path.display(),
        changed.join("\n")
    );
}
