//! `p2p ls` and `p2p peers` take a ticket (issue 15): its secret names the swarm, its
//! addresses are dialled at once (a dead one first costs nothing), and when none answers
//! the error names each and why.

use p2p_tests::*;

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a --json line"))
        .collect()
}

#[test]
fn ls_and_peers_answer_for_the_swarm_a_ticket_names() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("listed file.bin");
    write_file(&src, 2 * 1024 * 1024 + 3, 8);
    let (mut sharer, ticket) = spawn_sharer(
        "sharer",
        dir.path(),
        &["share", src.to_str().unwrap(), "--listen", "127.0.0.1:0"],
    );
    let serving = sharer.wait_stderr("'serving on'", |line| {
        line.strip_prefix("serving on ")
            .and_then(|rest| rest.split([',', ' ']).next())
            .map(str::to_string)
    });
    // A dead address before the live one: the live one answers.
    let mut parsed = ticket.parse::<p2p_core::Ticket>().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    parsed
        .trackers
        .insert(0, closed.local_addr().unwrap().to_string());
    drop(closed);
    let ticket = parsed.to_string();

    let (status, stdout, stderr) = run(dir.path(), &["ls", &ticket, "--json"]);
    assert!(status.success(), "ls: {stderr}");
    let files = json_lines(&stdout);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0]["name"], "listed file.bin");
    assert_eq!(files[0]["size"], 2 * 1024 * 1024 + 3);
    assert_eq!(files[0]["content_id"], parsed.content_id.to_string());

    let (status, stdout, stderr) = run(dir.path(), &["peers", &ticket, "--json"]);
    assert!(status.success(), "peers: {stderr}");
    let peers = json_lines(&stdout);
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0]["listen_addr"], serving);

    // A ticket and a secret file at once, or neither: a usage error that says what to pass.
    let (status, _, stderr) = run(dir.path(), &["ls", &ticket, "--secret-file", "x.key"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not both"), "{stderr}");
    let (status, _, stderr) = run(dir.path(), &["peers"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pass a ticket"), "{stderr}");

    // The sharer gone, nothing answers, and `ls` says so for each address.
    sharer.kill9();
    let (status, stdout, stderr) = run(dir.path(), &["ls", &ticket]);
    assert!(!status.success(), "ls with every address dead: {stdout}");
    assert!(
        stderr.contains("none of the 2 addresses in the ticket answered")
            && stderr.contains(&parsed.trackers[1]),
        "unclear message: {stderr}"
    );
}
