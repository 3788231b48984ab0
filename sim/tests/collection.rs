//! Collections in the simulator (`Scenario::Collection`, issue 16): a tree of many small
//! files, some large ones, copies, empty files and directories, shared under the random
//! mix's faults, with some peers wanting only part of it. Checked beyond "every checker
//! passed": the runs really hold parts, and the parts finish.

use p2p_sim::{Scale, Scenario};

/// Over a range of seeds every run passes, and many peers that want a part, asking for
/// fewer chunks than the tree has, finish it, some while faults strike. (The safety checker
/// fails a run in which a part peer stores a chunk outside its part, and the liveness
/// checker one in which it does not finish.)
#[test]
fn parts_of_a_tree_complete_under_faults() {
    let mut part_peers = 0;
    let mut partial_parts = 0;
    let mut runs_with_crashes_and_parts = 0;
    for seed in 0..30 {
        let report = p2p_sim::run(seed, Scenario::Collection, Scale::Small, false);
        assert!(report.passed(), "{report}");
        let collection = report.collection.as_ref().expect("a collection run");
        assert!(collection.paths >= 1, "{report}");
        // Finished parts (a peer that left for good, or had no live source, is exempt from
        // finishing, as the liveness checker says).
        part_peers += collection.parts.iter().filter(|(_, done)| *done).count();
        partial_parts += collection
            .parts
            .iter()
            .filter(|&&(asked, done)| done && asked < collection.chunk_count)
            .count();
        if !collection.parts.is_empty() && report.stats.crashes > 0 {
            runs_with_crashes_and_parts += 1;
        }
    }
    assert!(part_peers >= 30, "{part_peers} peers finished a part");
    assert!(
        partial_parts >= 20,
        "{partial_parts} finished parts smaller than the tree"
    );
    assert!(
        runs_with_crashes_and_parts >= 5,
        "{runs_with_crashes_and_parts} runs crashed peers while parts downloaded"
    );
}

/// A collection's configuration is drawn from its seed alone: the same tree, the same
/// parts, the same run.
#[test]
fn a_collection_run_is_deterministic() {
    let first = p2p_sim::run(7, Scenario::Collection, Scale::Small, false);
    let second = p2p_sim::run(7, Scenario::Collection, Scale::Small, false);
    assert_eq!(first.digest, second.digest);
    let parts = |r: &p2p_sim::RunReport| r.collection.as_ref().map(|c| c.parts.clone());
    assert_eq!(parts(&first), parts(&second));
}
