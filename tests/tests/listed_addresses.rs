//! Issue 14, identities and addresses: `p2p tracker` lists a member at the IP its
//! connection came from with the port it claims (as claimed with
//! `--trust-claimed-addresses`), and a member with another key cannot take over a live
//! member's session by claiming its id.

use std::net::SocketAddr;
use std::time::Duration;

use p2p_core::Message;
use p2p_core::secure::StaticKey;
use p2p_tests::*;

/// A port no one listens on here: the claimed address is never dialled.
const CLAIMED: &str = "10.9.9.9:7123";

/// `p2p tracker` with `extra` arguments: the process and its address.
fn tracker(cwd: &std::path::Path, swarm: &str, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut args = vec!["tracker", "--listen", "127.0.0.1:0", "--secret-file", swarm];
    args.extend_from_slice(extra);
    let mut proc = Proc::spawn("tracker", cwd, &args);
    let addr = proc.wait_stderr("'tracker listening on'", |line| {
        line.strip_prefix("tracker listening on ")
            .and_then(|rest| rest.split([';', ' ']).next())
            .and_then(|a| a.parse::<SocketAddr>().ok())
    });
    (proc, addr)
}

/// A member of the swarm with a key of its own, saying `Hello` as `claimed_id` (its own
/// id when `None`) listening at `listen_addr`: the session and the tracker's answer.
fn member(
    tracker: SocketAddr,
    swarm: &str,
    key: &StaticKey,
    claimed_id: Option<p2p_core::PeerId>,
    listen_addr: &str,
) -> (SecureStream, Option<Message>) {
    let secret = read_secret(swarm);
    let mut session = SecureStream::connect(tracker, key, &secret).unwrap();
    let id = claimed_id.unwrap_or(key.peer_id());
    session
        .send(&hello(id, listen_addr, &secret.tag().name()))
        .unwrap();
    let answer = session.read_message(Duration::from_secs(10)).ok().flatten();
    (session, answer)
}

/// The `listen_addr` the tracker lists `key`'s peer at.
fn listed_at(dir: &std::path::Path, swarm: &str, tracker: SocketAddr, key: &StaticKey) -> String {
    let peers = query_json(dir, swarm, "peers", tracker).expect("p2p peers");
    let id = key.peer_id().to_string();
    let entry = peers
        .iter()
        .find(|p| p["peer_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {peers:?}"));
    entry["listen_addr"].as_str().unwrap().to_string()
}

#[test]
fn a_claimed_address_is_listed_at_the_connections_ip_unless_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    for (extra, expected) in [
        (&[][..], "127.0.0.1:7123"),
        (&["--trust-claimed-addresses"][..], CLAIMED),
    ] {
        let (_tracker, addr) = tracker(dir.path(), &swarm, extra);
        let key = StaticKey::from_private(test_seed());
        let (_session, answer) = member(addr, &swarm, &key, None, CLAIMED);
        assert!(
            matches!(answer, Some(Message::Welcome { .. })),
            "{answer:?}"
        );
        assert_eq!(
            listed_at(dir.path(), &swarm, addr, &key),
            expected,
            "{extra:?}"
        );
    }
}

#[test]
fn another_key_cannot_take_a_live_members_session() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    let (_tracker, addr) = tracker(dir.path(), &swarm, &[]);
    let real = StaticKey::from_private(test_seed());
    let (_real_session, answer) = member(addr, &swarm, &real, None, "127.0.0.1:7001");
    assert!(
        matches!(answer, Some(Message::Welcome { .. })),
        "{answer:?}"
    );
    let thief = StaticKey::from_private(test_seed());
    let (_thief_session, answer) =
        member(addr, &swarm, &thief, Some(real.peer_id()), "127.0.0.1:7002");
    match answer {
        Some(Message::Error { message, .. }) => {
            assert!(message.contains("claims peer"), "{message}")
        }
        other => panic!("the thief's Hello was answered with {other:?}"),
    }
    assert_eq!(
        listed_at(dir.path(), &swarm, addr, &real),
        "127.0.0.1:7001",
        "the real member keeps its session and address"
    );
}
