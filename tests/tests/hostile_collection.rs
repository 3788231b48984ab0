//! Issue 16: hostile collections. A harness peer publishes a collection whose manifest (its
//! content id matching, so the getter takes it) lists `..`, an absolute path, two names
//! equal under case folding, or a billion entries; or the destination holds a link where
//! the collection's part directory goes. Each is refused with a clear error before
//! anything is created: nothing outside the output directory, nothing under the final
//! name, nothing written through the link.

use std::path::Path;

use p2p_core::Manifest;
use p2p_tests::*;

const NAME: &str = "evil";

/// A file table as the format says (see `p2p_core::collection`), with no check at all:
/// `(kind, path, size, offset)`, kind 0 file, 1 executable, 2 directory.
fn table(count: u32, entries: &[(u8, &str, u64, u64)]) -> Vec<u8> {
    let mut out = count.to_be_bytes().to_vec();
    for &(kind, path, size, offset) in entries {
        out.push(kind);
        out.extend_from_slice(&(path.len() as u16).to_be_bytes());
        out.extend_from_slice(path.as_bytes());
        if kind != 2 {
            out.extend_from_slice(&size.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
        }
    }
    out
}

/// A collection manifest over `data` with the file table `table`.
fn collection(data: &[u8], table: Vec<u8>) -> Manifest {
    let mut manifest = manifest_of(NAME, data);
    manifest.file_table = Some(table.into());
    manifest
}

/// Publishes `manifest` from a harness peer, runs a getter by content id into `out`, and
/// returns its standard error once it has failed.
fn refused(dir: &Path, out: &Path, manifest: Manifest, data: Vec<u8>) -> String {
    let swarm = new_swarm(dir);
    let content_id = manifest.content_id().to_string();
    let (_tracker, tracker_addr) = start_tracker(dir, &swarm, None);
    let _publisher = HarnessPeer::start(tracker_addr, &swarm, manifest, data, false);
    wait_for("the collection listed", WAIT, || {
        let files = query_json(dir, &swarm, "ls", tracker_addr)?;
        files
            .iter()
            .any(|f| f["content_id"] == content_id.as_str())
            .then_some(())
    });
    let tracker = tracker_addr.to_string();
    let mut getter = start_getter(
        "getter",
        dir,
        &swarm,
        &content_id,
        out,
        &["--tracker", &tracker],
    );
    let status = getter.wait_exit(WAIT);
    assert!(!status.success(), "{}", getter.describe());
    getter.describe()
}

/// Runs one hostile table: refused with `expected` in the message, nothing created.
fn assert_refused(entries_count: u32, entries: &[(u8, &str, u64, u64)], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    // Output at <tmp>/a/b/out: a `..` climbing out would land in <tmp>.
    let out = dir.path().join("a/b/out");
    std::fs::create_dir_all(&out).unwrap();
    let data = pseudo_random(10, 1);
    let manifest = collection(&data, table(entries_count, entries));
    let stderr = refused(dir.path(), &out, manifest, data);
    assert!(
        stderr.contains("refusing the collection") && stderr.contains(expected),
        "expected a refusal saying '{expected}':\n{stderr}"
    );
    assert!(
        files_under(&out).is_empty() && std::fs::read_dir(&out).unwrap().next().is_none(),
        "something was created in the output directory: {:?}",
        std::fs::read_dir(&out).unwrap().collect::<Vec<_>>()
    );
    for escaped in ["a/escape", "a/b/escape", "escape", "a/evil", "evil"] {
        assert!(!dir.path().join(escaped).exists(), "{escaped} exists");
    }
}

#[test]
fn dot_dot_is_refused() {
    assert_refused(1, &[(0, "../../escape", 10, 0)], "'..'");
}

#[test]
fn an_absolute_path_is_refused() {
    let absolute = std::env::temp_dir().join("p2p-absolute-escape");
    let path = absolute.to_str().unwrap();
    assert_refused(1, &[(0, path, 10, 0)], "unsafe component");
    assert!(!absolute.exists(), "{} was created", absolute.display());
}

#[test]
fn names_equal_under_case_folding_are_refused() {
    assert_refused(
        2,
        &[(0, "README", 5, 0), (0, "readme", 5, 5)],
        "differ only by case",
    );
}

#[test]
fn a_billion_entries_are_refused_before_anything_is_created() {
    assert_refused(1_000_000_000, &[(0, "a", 10, 0)], "1000000000 paths");
}

#[test]
fn a_link_at_the_part_directory_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join(format!("{NAME}.part"))).unwrap();
    let data = pseudo_random(10, 1);
    let manifest = collection(&data, table(1, &[(0, "inside", 10, 0)]));
    let stderr = refused(dir.path(), &out, manifest, data);
    assert!(
        stderr.contains("symbolic link") && stderr.contains("remove"),
        "{stderr}"
    );
    assert!(
        std::fs::read_dir(&elsewhere).unwrap().next().is_none(),
        "written through the link"
    );
    assert!(!out.join(NAME).exists());
}
