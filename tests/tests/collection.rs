//! Issue 16: a directory shared as one collection. A nested tree with empty directories,
//! an empty file, an executable, two identical files, a name with spaces and non-ASCII
//! letters and many small files is shared once and fetched by two getters: `diff -r` is
//! clean and the executable bits are equal. A getter killed halfway resumes to an exact
//! tree, and nothing exists under the final name before it is complete.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use p2p_tests::*;

/// Builds the test tree under `root` (which must not exist); `big` files of 1 MiB make it
/// as long as a test needs.
fn make_tree(root: &Path, big: usize) {
    let mkdir = |p: &str| std::fs::create_dir_all(root.join(p)).unwrap();
    mkdir("a/b/c");
    mkdir("a/empty dir");
    mkdir("empty/nested/deeper");
    mkdir("small");
    mkdir("docs");
    write_file(&root.join("a/b/c/deep.bin"), 300 * 1024 + 17, 1);
    std::fs::write(root.join("empty.txt"), b"").unwrap();
    std::fs::write(root.join("a/also empty"), b"").unwrap();
    std::fs::write(root.join("run.sh"), b"#!/bin/sh\necho hello\n").unwrap();
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let same = write_file(&root.join("same.bin"), 200 * 1024 + 3, 2);
    std::fs::write(root.join("docs/same copy.bin"), &same).unwrap();
    write_file(&root.join("docs/naïve résumé ü 名前.txt"), 5000, 3);
    for i in 0..200 {
        write_file(
            &root.join(format!("small/f{i:03}")),
            100 + i * 37,
            100 + i as u64,
        );
    }
    for i in 0..big {
        write_file(
            &root.join(format!("big{i:02}.bin")),
            1024 * 1024 + i,
            500 + i as u64,
        );
    }
}

/// `diff -r` finds no difference, and every file has the same executable bits.
fn assert_same_tree(expected: &Path, got: &Path) {
    let diff = Command::new("diff")
        .arg("-r")
        .arg(expected)
        .arg(got)
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "diff -r {} {}:\n{}{}",
        expected.display(),
        got.display(),
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
    let mut dirs = vec![std::path::PathBuf::new()];
    while let Some(relative) = dirs.pop() {
        for entry in std::fs::read_dir(expected.join(&relative)).unwrap() {
            let relative = relative.join(entry.unwrap().file_name());
            let want = std::fs::symlink_metadata(expected.join(&relative)).unwrap();
            let have = std::fs::symlink_metadata(got.join(&relative))
                .unwrap_or_else(|e| panic!("{}: {e}", relative.display()));
            assert_eq!(want.file_type(), have.file_type(), "{}", relative.display());
            if want.is_dir() {
                dirs.push(relative);
            } else {
                assert_eq!(
                    want.permissions().mode() & 0o111,
                    have.permissions().mode() & 0o111,
                    "{}: executable bits",
                    relative.display()
                );
            }
        }
    }
}

#[test]
fn a_tree_is_shared_once_and_fetched_exactly_by_two_getters() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    let tree = dir.path().join("my tree");
    make_tree(&tree, 2);
    // A link inside the tree is skipped, not followed.
    std::os::unix::fs::symlink("/etc/passwd", tree.join("a/link")).unwrap();

    let (_tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);
    let mut seeder = start_seeder("seeder", dir.path(), &swarm, &tree, tracker_addr, &[]);
    seeder.proc.wait_stderr("the link skipped", |line| {
        line.contains("not shared").then_some(())
    });
    std::fs::remove_file(tree.join("a/link")).unwrap();

    let outs: Vec<_> = (1..=2)
        .map(|i| dir.path().join(format!("out{i}")))
        .collect();
    let mut getters: Vec<Proc> = outs
        .iter()
        .enumerate()
        .map(|(i, out)| {
            std::fs::create_dir(out).unwrap();
            let name = format!("getter-{}", i + 1);
            start_getter(&name, dir.path(), &swarm, &seeder.ticket, out, &[])
        })
        .collect();
    for (getter, out) in getters.iter_mut().zip(&outs) {
        let (path, _) = wait_complete(getter);
        assert!(getter.wait_exit(WAIT).success(), "{}", getter.describe());
        assert_eq!(path, out.join("my tree"));
        assert_same_tree(&tree, &path);
        // Only the tree: no part directory or record left beside it.
        let left: Vec<_> = std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("my tree")]);
    }
}

#[test]
fn a_getter_killed_halfway_resumes_to_an_exact_tree() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    let tree = dir.path().join("tree");
    make_tree(&tree, 24);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let final_path = out.join("tree");
    let part_path = out.join("tree.part");

    let (_tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);
    let seeder = start_seeder(
        "seeder",
        dir.path(),
        &swarm,
        &tree,
        tracker_addr,
        &["--upload-limit", &(4 * 1024 * 1024).to_string()],
    );
    let mut first = start_getter("getter-1", dir.path(), &swarm, &seeder.ticket, &out, &[]);
    wait_for("40% of the tree", WAIT, || {
        assert!(
            !final_path.exists(),
            "{} exists mid-download\n{}",
            final_path.display(),
            first.describe()
        );
        assert!(first.try_status().is_none(), "{}", first.describe());
        let have = first.json_lines().iter().filter_map(progress_bytes).max();
        have.is_some_and(|b| b >= 10 * 1024 * 1024).then_some(())
    });
    first.kill9();
    assert!(part_path.is_dir(), "the part directory is kept");
    assert!(!final_path.exists(), "nothing under the final name");

    let mut second = start_getter("getter-2", dir.path(), &swarm, &seeder.ticket, &out, &[]);
    let (path, _) = wait_complete(&mut second);
    assert!(second.wait_exit(WAIT).success(), "{}", second.describe());
    assert_eq!(path, final_path);
    // The chunks verified on disk count from the start: it resumed, not restarted.
    let resumed_from = second.json_lines().iter().filter_map(progress_bytes).min();
    assert!(
        resumed_from.is_some_and(|b| b >= 5 * 1024 * 1024),
        "the second run resumed (first progress {resumed_from:?})\n{}",
        second.describe()
    );
    assert_same_tree(&tree, &final_path);
    assert!(!part_path.exists());
    assert!(!out.join("tree.part.p2p").exists());
}
