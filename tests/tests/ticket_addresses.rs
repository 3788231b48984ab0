//! A ticket lists several addresses, and a getter cannot know which it can reach: it dials
//! them all at once and keeps the first to finish the handshake (issue 15). Here, on
//! loopback: a ticket whose first addresses are dead (a closed port, and a port that
//! accepts but never says a word) completes as fast as the live one alone; a ticket whose
//! addresses are all dead fails at once, naming each and why.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use p2p_tests::*;

/// What a download of a small file from a live address takes at most on a busy machine;
/// far below what one dead address could cost (the silent one: a 10 s handshake timeout).
const LIVE_ONLY_WITHIN: Duration = Duration::from_secs(5);

/// `ticket` with its address list replaced by `addrs`.
fn with_addresses(ticket: &str, addrs: &[String]) -> String {
    let mut ticket = ticket.parse::<p2p_core::Ticket>().unwrap();
    ticket.trackers = addrs.to_vec();
    ticket.to_string()
}

/// A loopback port with nothing listening.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    addr
}

/// The embedded tracker's address, from the ticket `p2p share --listen 127.0.0.1:0`
/// printed (its only address).
fn tracker_of(ticket: &str) -> String {
    let addrs = ticket.parse::<p2p_core::Ticket>().unwrap().trackers;
    assert_eq!(addrs.len(), 1, "one address expected: {ticket}");
    addrs[0].clone()
}

#[test]
fn dead_addresses_before_a_live_one_cost_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("small.bin");
    let data = write_file(&src, 1024 * 1024 + 5, 21);
    let (sharer, ticket) = spawn_sharer(
        "sharer",
        dir.path(),
        &["share", src.to_str().unwrap(), "--listen", "127.0.0.1:0"],
    );
    let live = tracker_of(&ticket);
    // Accepts connections (the kernel completes them) and never reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let addrs = vec![closed_port(), silent_addr.clone(), live.clone()];
    let ticket = with_addresses(&ticket, &addrs);

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let started = Instant::now();
    let mut getter = Proc::spawn(
        "getter",
        dir.path(),
        &[
            "get",
            &ticket,
            "-o",
            out.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let status = getter.wait_exit(WAIT);
    let took = started.elapsed();
    assert!(status.success(), "{}", getter.describe());
    assert_file_eq(&out.join("small.bin"), &data);
    assert!(
        took < LIVE_ONLY_WITHIN,
        "took {took:?} with dead addresses first: they were waited for\n{}",
        getter.describe()
    );
    eprintln!("complete in {took:?} past {} and {silent_addr}", addrs[0]);
    drop((sharer, silent));
}

#[test]
fn when_no_address_answers_get_says_which_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f.bin");
    write_file(&src, 4096, 3);
    let (sharer, ticket) = spawn_sharer(
        "sharer",
        dir.path(),
        &["share", src.to_str().unwrap(), "--listen", "127.0.0.1:0"],
    );
    drop(sharer);
    let dead = [closed_port(), closed_port()];
    let ticket = with_addresses(&ticket, &dead);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let started = Instant::now();
    let (status, _, stderr) = run(
        dir.path(),
        &[
            "get",
            &ticket,
            "-o",
            out.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert!(!status.success(), "{stderr}");
    assert!(
        started.elapsed() < LIVE_ONLY_WITHIN,
        "refused ports answer at once"
    );
    let expected = format!(
        "none of the 2 addresses in the ticket answered ({} refused, {} refused); is the \
         sharer still running",
        dead[0], dead[1]
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(files_under(&out), Vec::<std::path::PathBuf>::new());
}

/// Behind a NAT a sharer is reached at an address none of its interfaces has:
/// `--advertise HOST` puts HOST in the ticket and makes its embedded tracker list the
/// sharer's peer at HOST too (with the peer's own port), not where the tracker saw it.
/// Here HOST is 127.0.0.2, which this host answers at but the sharer's own connection to
/// its tracker (over 127.0.0.1) never shows.
#[test]
fn an_advertised_host_is_where_the_sharer_is_listed_and_reached() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("natted.bin");
    let data = write_file(&src, 1024 * 1024 + 9, 23);
    let (mut sharer, ticket) = spawn_sharer(
        "sharer",
        dir.path(),
        &[
            "share",
            src.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
            "--advertise",
            "127.0.0.2",
        ],
    );
    let serving_port = sharer.wait_stderr("'serving on'", |line| {
        line.strip_prefix("serving on ")
            .and_then(|rest| rest.split([',', ' ']).next())
            .and_then(|addr| addr.rsplit_once(':'))
            .map(|(_, port)| port.to_string())
    });
    assert!(
        tracker_of(&ticket).starts_with("127.0.0.2:"),
        "the ticket lists the advertised host: {ticket}"
    );
    let (status, stdout, stderr) = run(dir.path(), &["peers", &ticket, "--json"]);
    assert!(status.success(), "peers: {stderr}");
    let listed: Vec<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["listen_addr"].to_string())
        .collect();
    assert_eq!(listed, [format!("\"127.0.0.2:{serving_port}\"")]);

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut getter = Proc::spawn(
        "getter",
        dir.path(),
        &[
            "get",
            &ticket,
            "-o",
            out.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert!(getter.wait_exit(WAIT).success(), "{}", getter.describe());
    assert_file_eq(&out.join("natted.bin"), &data);
    drop(sharer);
}
