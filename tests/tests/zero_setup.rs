//! Zero setup across machines (issue 15): hosts A, B and C are network namespaces this test
//! creates, on one bridge, each with an IPv4 and a unique local IPv6 address (it needs
//! root; without it, it says so and does nothing). A runs `p2p share FILE` with no flag;
//! B and C run `p2p get TICKET` with nothing else. Every packet stays inside those
//! namespaces.

use std::time::{Duration, Instant};

use p2p_tests::netns::{Lan, lan_or_skip};
use p2p_tests::*;

/// The addresses of a ticket.
fn addresses_of(ticket: &str) -> Vec<String> {
    ticket.parse::<p2p_core::Ticket>().unwrap().trackers
}

/// `ticket` with its address list replaced by `addrs`.
fn with_addresses(ticket: &str, addrs: &[String]) -> String {
    let mut ticket = ticket.parse::<p2p_core::Ticket>().unwrap();
    ticket.trackers = addrs.to_vec();
    ticket.to_string()
}

/// `p2p get TICKET -o OUT` and nothing else, on `host`.
fn get_on(lan: &Lan, host: usize, dir: &std::path::Path, ticket: &str, out: &str) -> Proc {
    Proc::spawn_in_netns(
        &format!("getter{host}"),
        dir,
        &lan.hosts[host],
        &["get", ticket, "-o", out],
    )
}

#[test]
fn share_with_no_flag_and_get_with_only_the_ticket_on_two_other_hosts() {
    let Some(lan) = lan_or_skip(3, 0) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("lan.bin");
    let data = write_file(&src, 6 * 1024 * 1024 + 7, 15);
    let mut sharer = Proc::spawn_in_netns(
        "sharer",
        dir.path(),
        &lan.hosts[0],
        &["share", src.to_str().unwrap()],
    );
    let ticket = sharer.wait_stdout("a ticket", |line| {
        line.starts_with("p2p2:").then(|| line.trim().to_string())
    });
    // Host A's addresses, IPv4 first, with the embedded tracker's default port; never
    // loopback, since there is more.
    assert_eq!(
        addresses_of(&ticket),
        vec![
            format!("{}:7070", lan.ipv4(0)),
            format!("[{}]:7070", lan.ipv6(0))
        ],
        "{ticket}"
    );

    let outs: Vec<String> = (1..=2)
        .map(|host| {
            let out = dir.path().join(format!("out{host}"));
            std::fs::create_dir(&out).unwrap();
            out.to_str().unwrap().to_string()
        })
        .collect();
    let mut getters: Vec<Proc> = (1..=2)
        .map(|host| get_on(&lan, host, dir.path(), &ticket, &outs[host - 1]))
        .collect();
    for (getter, out) in getters.iter_mut().zip(&outs) {
        let status = getter.wait_exit(WAIT);
        assert!(status.success(), "{}", getter.describe());
        assert_file_eq(&std::path::Path::new(out).join("lan.bin"), &data);
        assert!(
            getter.stdout.text().starts_with(&sha256_hex(&data)),
            "{}",
            getter.describe()
        );
    }
    drop(sharer);
}

#[test]
fn an_address_where_nobody_answers_costs_nothing_beside_one_that_does() {
    let Some(lan) = lan_or_skip(2, 1) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f.bin");
    let data = write_file(&src, 1024 * 1024 + 1, 16);
    let mut sharer = Proc::spawn_in_netns(
        "sharer",
        dir.path(),
        &lan.hosts[0],
        &["share", src.to_str().unwrap()],
    );
    let ticket = sharer.wait_stdout("a ticket", |line| {
        line.starts_with("p2p2:").then(|| line.trim().to_string())
    });
    let nobody = format!("{}:7070", lan.nobody());
    let mut addrs = vec![nobody.clone()];
    addrs.extend(addresses_of(&ticket));
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let started = Instant::now();
    let mut getter = get_on(
        &lan,
        1,
        dir.path(),
        &with_addresses(&ticket, &addrs),
        out.to_str().unwrap(),
    );
    let status = getter.wait_exit(WAIT);
    let took = started.elapsed();
    assert!(status.success(), "{}", getter.describe());
    assert_file_eq(&out.join("f.bin"), &data);
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}: the dead address first was waited for\n{}",
        getter.describe()
    );

    // Nobody there alone: get says so, naming the address, after the dial timeout and a
    // look on the LAN (where the sharer is gone too).
    drop(sharer);
    let lonely = with_addresses(&ticket, std::slice::from_ref(&nobody));
    let started = Instant::now();
    let mut getter = get_on(&lan, 1, dir.path(), &lonely, out.to_str().unwrap());
    let status = getter.wait_exit(WAIT);
    assert!(!status.success(), "{}", getter.describe());
    let stderr = getter.stderr.text();
    assert!(
        stderr.contains(&format!(
            "the address in the ticket did not answer ({nobody} "
        )) && stderr.contains("is the sharer still running"),
        "{stderr}"
    );
    assert!(
        stderr.contains("LAN discovery found no peer of this swarm"),
        "{stderr}"
    );
    // The dial timeout (3 s), then a look on the LAN (at most 3 s), then stop.
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
}
