//! Issue 16: `p2p ls` shows a shared directory's file count and size, and `--json` its
//! paths; `get --only PATTERN` downloads part of it. The picked paths
//! arrive exact and nothing else is left under the destination: not the files sharing
//! a chunk with them, not the first path a picked duplicate's bytes travel under, not
//! directories made for those. A pattern that matches nothing, `--only` on a single
//! file, and `--only` with `--seed` are refused, saying why, with nothing created.

use std::path::{Path, PathBuf};

use p2p_tests::*;

/// Builds the shared tree; returns its root. `a-first/shard copy.bin` holds the bytes of
/// `weights/shard-1.bin` and sorts first, so those bytes travel under its path.
fn make_tree(dir: &Path) -> PathBuf {
    let root = dir.join("model");
    for sub in ["a-first", "docs", "weights", "logs"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let shard = write_file(&root.join("weights/shard-1.bin"), 1536 * 1024 + 5, 1);
    std::fs::write(root.join("a-first/shard copy.bin"), &shard).unwrap();
    write_file(&root.join("weights/shard-2.bin"), 1536 * 1024 + 9, 2);
    write_file(&root.join("docs/readme.txt"), 5000, 3);
    write_file(&root.join("docs/guide.txt"), 7000, 4);
    write_file(&root.join("config.json"), 300, 5);
    write_file(&root.join("tokenizer.json"), 900, 6);
    root
}

/// Every file and directory under `root`, relative, sorted.
fn listing(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = files_under(root)
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn only_the_picked_paths_arrive_and_nothing_else_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    let tree = make_tree(dir.path());
    let (_tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);
    let seeder = start_seeder("seeder", dir.path(), &swarm, &tree, tracker_addr, &[]);

    // `ls`: the collection with its files and their size, each copy counted.
    let files_size: u64 = files_under(&tree)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let listed = wait_for("the collection listed", WAIT, || {
        query_json(dir.path(), &swarm, "ls", tracker_addr).filter(|files| files.len() == 1)
    });
    assert_eq!(listed[0]["name"], "model");
    assert_eq!(listed[0]["files"], 7);
    assert_eq!(listed[0]["files_size"], files_size);
    let mut paths: Vec<(String, String)> = listed[0]["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap().to_string(),
                p["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 8, "{paths:?}");
    assert!(paths.contains(&("logs".into(), "dir".into())), "{paths:?}");
    assert!(
        paths.contains(&("weights/shard-2.bin".into(), "file".into())),
        "{paths:?}"
    );
    let tracker = tracker_addr.to_string();
    let (status, table, _) = run(
        dir.path(),
        &["ls", "--tracker", &tracker, "--secret-file", &swarm],
    );
    assert!(status.success());
    let row = table
        .lines()
        .find(|l| l.starts_with("model/"))
        .expect(&table);
    assert_eq!(
        row.split_whitespace().nth(3),
        Some("7"),
        "the FILES column: {table}"
    );

    let cases: [(&[&str], &[&str]); 2] = [
        (
            &["--only", "weights/shard-1.bin", "--only", "*.json"],
            &["config.json", "tokenizer.json", "weights/shard-1.bin"],
        ),
        (&["--only", "docs/"], &["docs/guide.txt", "docs/readme.txt"]),
    ];
    for (i, (only, expected)) in cases.iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        std::fs::create_dir(&out).unwrap();
        let name = format!("getter-{i}");
        let mut getter = start_getter(&name, dir.path(), &swarm, &seeder.ticket, &out, only);
        let (path, _) = wait_complete(&mut getter);
        assert!(getter.wait_exit(WAIT).success(), "{}", getter.describe());
        assert_eq!(path, out.join("model"));
        let got = listing(&path);
        let mut want: Vec<String> = expected.iter().map(|p| p.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "{}", getter.describe());
        for relative in *expected {
            let want = std::fs::read(tree.join(relative)).unwrap();
            assert_file_eq(&path.join(relative), &want);
        }
        // No directory beyond the picked files' own.
        for sub in ["a-first", "logs"] {
            assert!(!path.join(sub).exists(), "{sub} left in {}", path.display());
        }
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("model")]);
        // Progress counted the part, not the whole collection.
        let last = getter.json_lines().iter().filter_map(progress_bytes).max();
        let part: u64 = expected
            .iter()
            .map(|p| std::fs::metadata(tree.join(p)).unwrap().len())
            .sum();
        assert!(
            last.is_some_and(|b| b >= part && b < 3 * 1024 * 1024 + part),
            "progress {last:?} for a part of {part} bytes"
        );
    }
}

#[test]
fn an_only_that_cannot_be_met_is_refused_with_nothing_created() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    let tree = make_tree(dir.path());
    let single = dir.path().join("single.bin");
    write_file(&single, 4096, 9);
    let (_tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);
    let seeder = start_seeder("seeder", dir.path(), &swarm, &tree, tracker_addr, &[]);
    let single_seeder = start_seeder("single", dir.path(), &swarm, &single, tracker_addr, &[]);

    let cases = [
        (
            &seeder.ticket,
            vec!["--only", "nothing/*.bin"],
            "matches none of the",
        ),
        (
            &single_seeder.ticket,
            vec!["--only", "x"],
            "is a single file",
        ),
        (
            &seeder.ticket,
            vec!["--only", "docs", "--seed"],
            "--seed serves the whole",
        ),
        (
            &seeder.ticket,
            vec!["--only", "a["],
            "is not a valid pattern",
        ),
    ];
    for (i, (ticket, extra, says)) in cases.iter().enumerate() {
        let out = dir.path().join(format!("refused{i}"));
        std::fs::create_dir(&out).unwrap();
        let mut getter = start_getter(
            &format!("getter-{i}"),
            dir.path(),
            &swarm,
            ticket,
            &out,
            extra,
        );
        let status = getter.wait_exit(WAIT);
        assert!(!status.success(), "{}", getter.describe());
        assert!(
            getter.describe().contains(says),
            "wanted '{says}' in:\n{}",
            getter.describe()
        );
        let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
        assert!(left.is_empty(), "{left:?} left\n{}", getter.describe());
    }
}
