//! The swarm outlives its sharer through the peers a getter met before (issue 15): A
//! shares, B gets with `--seed`, C gets (and so meets A and B); A is killed. C, run again
//! with A's ticket, whose only address is dead, and with LAN discovery off, dials the
//! peers it remembers from its first run, finds B, and completes from B alone; `ls` and
//! `peers` with that ticket are answered by B. A getter that remembers nobody fails with a
//! message that says what it tried.

use p2p_tests::*;

const SIZE: usize = 3 * 1024 * 1024 + 17;

#[test]
fn a_getter_finds_the_swarm_again_through_the_peers_it_met_before() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("outlived.bin");
    let data = write_file(&src, SIZE, 15);
    let (mut sharer, ticket) = spawn_sharer(
        "sharer-a",
        dir.path(),
        &["share", src.to_str().unwrap(), "--listen", "127.0.0.1:0"],
    );

    let out_b = dir.path().join("out-b");
    let mut b = start_getter("seeder-b", dir.path(), "", &ticket, &out_b, &["--seed"]);
    let (path_b, _) = wait_complete(&mut b);
    assert_file_eq(&path_b, &data);

    // C's first run meets A and B (both hold the whole file).
    let out_c = dir.path().join("out-c");
    let mut c = start_getter("getter-c", dir.path(), "", &ticket, &out_c, &[]);
    let (path_c, _) = wait_complete(&mut c);
    assert!(c.wait_exit(WAIT).success(), "{}", c.describe());
    assert_file_eq(&path_c, &data);
    let book = state_dir(dir.path(), "getter-c").join("swarms");
    let remembered: String = std::fs::read_dir(&book)
        .unwrap_or_else(|e| panic!("no address book under {}: {e}", book.display()))
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    assert!(
        remembered.lines().count() >= 2,
        "C remembers A and B: {remembered:?}"
    );

    // A leaves; its ticket's address is dead. C starts over (its copy removed).
    sharer.kill9();
    std::fs::remove_file(&path_c).unwrap();
    let mut c = start_getter("getter-c", dir.path(), "", &ticket, &out_c, &[]);
    let (path_c, sha) = wait_complete(&mut c);
    assert!(c.wait_exit(WAIT).success(), "{}", c.describe());
    assert_eq!(sha, sha256_hex(&data));
    assert_file_eq(&path_c, &data);
    let said = c.stderr.text();
    assert!(
        said.contains("through a peer met in an earlier run"),
        "C does not say how it found the swarm: {said}"
    );

    // B answers the tracker's questions for the swarm: `ls` and `peers` with the old
    // ticket, run where C remembers B, list the file and B.
    let query = |what: &str| {
        let mut proc = Proc::spawn("getter-c", dir.path(), &[what, &ticket, "--json"]);
        let status = proc.wait_exit(WAIT);
        assert!(status.success(), "{what}: {}", proc.describe());
        let lines: Vec<serde_json::Value> = proc
            .stdout
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines, proc.stderr.text())
    };
    let (files, said) = query("ls");
    assert!(said.contains("met in an earlier run"), "{said}");
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0]["name"], "outlived.bin");
    assert_eq!(
        files[0]["full_sources"], 1,
        "B alone holds it now: {files:?}"
    );
    let (peers, _) = query("peers");
    assert!(
        peers.iter().any(|p| p["listen_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))),
        "{peers:?}"
    );

    // A getter that met nobody before has nothing to fall back on, and says so.
    let out_d = dir.path().join("out-d");
    let mut d = start_getter("getter-d", dir.path(), "", &ticket, &out_d, &[]);
    let status = d.wait_exit(WAIT);
    assert!(
        !status.success(),
        "D completed with A gone: {}",
        d.describe()
    );
    let stderr = d.stderr.text();
    assert!(
        stderr.contains("did not answer") && stderr.contains("LAN discovery is off"),
        "unclear message: {stderr}"
    );
    drop(b);
}
