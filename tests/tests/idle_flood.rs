//! Issue 14: a thousand connections opened and left idle, to a tracker and to a seeder,
//! from a thousand loopback addresses (so no per-address cap stops them), half of them by
//! members of the swarm that finish the handshake and say hello, half raw sockets that
//! never start it. Real peers are still served: a full listener evicts the oldest
//! handshake under way or the longest-silent connection, and a full peer machine the
//! longest-silent incoming connection.
//!
//! Without eviction the getter below is locked out until the idle members time out
//! (30 s): the deadline it must finish within is well under that.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use p2p_core::secure::{StaticKey, SwarmSecret};
use p2p_tests::*;
use socket2::{Domain, Socket, Type};

const SIZE: usize = 8 * 1024 * 1024;
/// Connections per kind (members, raw) per target.
const EACH: usize = 500;
/// How long the getter may take. The seeder evicts members once silent for 6 s.
const GETTER_DEADLINE: Duration = Duration::from_secs(20);

/// A TCP connection to `to` from loopback address 127.`net`.`i / 250`.`i % 250 + 1`.
fn connect_from(net: u8, i: usize, to: SocketAddr) -> std::io::Result<TcpStream> {
    let from = Ipv4Addr::new(127, net, (i / 250) as u8, (i % 250 + 1) as u8);
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddrV4::new(from, 0).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

/// Members that finish the handshake, say hello and then neither send nor read.
fn idle_members(net: u8, to: SocketAddr, secret: &SwarmSecret) -> Vec<SecureStream> {
    (0..EACH)
        .filter_map(|i| {
            let key = StaticKey::from_private(test_seed());
            let stream = connect_from(net, i, to).ok()?;
            let mut session = SecureStream::initiate(stream, &key, secret).ok()?;
            session
                .send(&hello(key.peer_id(), "", &secret.tag().name()))
                .ok()?;
            Some(session)
        })
        .collect()
}

/// Sockets that never start their handshake.
fn idle_raw(net: u8, to: SocketAddr) -> Vec<TcpStream> {
    (0..EACH)
        .filter_map(|i| connect_from(net, i, to).ok())
        .collect()
}

fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
}

#[test]
fn a_thousand_idle_connections_leave_real_peers_served() {
    raise_open_files_limit();
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    let secret = read_secret(&swarm);
    let src = dir.path().join("file.bin");
    let data = write_file(&src, SIZE, 14);
    let (_tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);

    // The tracker first: members hold sessions, raw sockets hold every handshake slot.
    let tracker_members = idle_members(1, tracker_addr, &secret);
    let tracker_raw = idle_raw(2, tracker_addr);
    assert!(
        tracker_members.len() + tracker_raw.len() >= EACH,
        "the flood could not connect to the tracker"
    );

    // The seeder announces through the flooded tracker.
    let seeder = start_seeder("seeder", dir.path(), &swarm, &src, tracker_addr, &[]);
    let seeder_members = idle_members(3, seeder.addr, &secret);
    assert!(
        seeder_members.len() >= 128,
        "{} members connected: the seeder's machine is not full",
        seeder_members.len()
    );
    // Silent long enough to be evicted (3 pings of 2 s), then the raw sockets.
    std::thread::sleep(Duration::from_millis(6500));
    let seeder_raw = idle_raw(4, seeder.addr);

    let started = Instant::now();
    let out = dir.path().join("got.bin");
    let mut getter = start_getter("getter", dir.path(), &swarm, &seeder.ticket, &out, &[]);
    let status = getter.wait_exit(GETTER_DEADLINE);
    assert!(status.success(), "getter failed: {}", getter.describe());
    assert_file_eq(&out, &data);
    eprintln!(
        "getter done in {:.1} s beside {} + {} idle connections to the tracker and {} + {} \
         to the seeder",
        started.elapsed().as_secs_f64(),
        tracker_members.len(),
        tracker_raw.len(),
        seeder_members.len(),
        seeder_raw.len()
    );
}
