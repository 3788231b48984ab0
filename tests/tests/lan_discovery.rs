//! LAN discovery over mDNS (issue 15): hosts in network namespaces this test creates, on
//! one bridge (it needs root; without it, it says "skipped" and passes). Multicast stays
//! on those links: nothing goes beyond the test's own namespaces.
//!
//! A swarm outlives its sharer: a seeding getter runs a tracker of its own and announces
//! it, and a getter with the sharer's old, dead ticket finds it there; a getter that met
//! the seeding getter before finds it without LAN discovery, among the peers it remembers. Two swarms on one
//! LAN each find only their own members.

use p2p_tests::netns::{Lan, lan_or_skip};
use p2p_tests::*;

/// A number per test of this file, for its LAN's names and subnet.
const OUTLIVES: u32 = 0;
const TWO_SWARMS: u32 = 1;

/// `p2p -v ARGS` on `host`.
fn p2p_on(lan: &Lan, host: usize, name: &str, dir: &std::path::Path, args: &[&str]) -> Proc {
    let mut all = vec!["-v"];
    all.extend_from_slice(args);
    Proc::spawn_in_netns(name, dir, &lan.hosts[host], &all)
}

/// `p2p share PATH` (no flag) on `host`: the process and its ticket.
fn share_on(
    lan: &Lan,
    host: usize,
    dir: &std::path::Path,
    path: &std::path::Path,
) -> (Proc, String) {
    let mut sharer = p2p_on(lan, host, "sharer", dir, &["share", path.to_str().unwrap()]);
    let ticket = sharer.wait_stdout("a ticket", |line| {
        line.starts_with("p2p2:").then(|| line.trim().to_string())
    });
    (sharer, ticket)
}

/// `ticket` with its address list replaced by `addrs`.
fn with_addresses(ticket: &str, addrs: &[String]) -> String {
    let mut ticket = ticket.parse::<p2p_core::Ticket>().unwrap();
    ticket.trackers = addrs.to_vec();
    ticket.to_string()
}

/// A new empty directory `name` in `dir`, as a string for `-o`.
fn out_dir(dir: &std::path::Path, name: &str) -> String {
    let out = dir.join(name);
    std::fs::create_dir(&out).unwrap();
    format!("{}/", out.display())
}

#[test]
fn the_swarm_outlives_its_sharer_through_lan_discovery() {
    let Some(lan) = lan_or_skip(5, OUTLIVES) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("kept.bin");
    let data = write_file(&src, 3 * 1024 * 1024 + 5, 41);
    // A shares; B gets it and seeds.
    let (mut sharer, ticket) = share_on(&lan, 0, dir.path(), &src);
    let out_b = out_dir(dir.path(), "b");
    let mut seeder = p2p_on(
        &lan,
        1,
        "seeder",
        dir.path(),
        &["get", &ticket, "-o", &out_b, "--seed"],
    );
    seeder.wait_stderr("'seeding'", |line| {
        line.starts_with("seeding ").then_some(())
    });
    assert_file_eq(&std::path::Path::new(&out_b).join("kept.bin"), &data);
    // E gets it too while A is there, without LAN discovery: it meets A and B.
    let out_e = out_dir(dir.path(), "e");
    let get_e = ["get", &ticket, "-o", &out_e, "--no-mdns"];
    let mut remembering = p2p_on(&lan, 4, "remembering", dir.path(), &get_e);
    assert!(
        remembering.wait_exit(WAIT).success(),
        "{}",
        remembering.describe()
    );
    // A leaves: every address of the ticket is dead from now on.
    sharer.kill9();
    let _ = sharer.wait_exit(WAIT);

    // C, with nothing but the old ticket, finds B on the LAN.
    let out_c = out_dir(dir.path(), "c");
    let mut getter = p2p_on(
        &lan,
        2,
        "getter",
        dir.path(),
        &["get", &ticket, "-o", &out_c],
    );
    let status = getter.wait_exit(WAIT);
    assert!(
        status.success(),
        "{}\n{}",
        getter.describe(),
        seeder.describe()
    );
    assert_file_eq(&std::path::Path::new(&out_c).join("kept.bin"), &data);
    let log = getter.stderr.text();
    assert!(
        log.contains("on the LAN (mDNS)") && log.contains(&lan.ipv4(1)),
        "C did not say it found B on the LAN:\n{log}"
    );

    // D, the same without LAN discovery: it stops, says why and what to do.
    let out_d = out_dir(dir.path(), "d");
    let mut lonely = p2p_on(
        &lan,
        3,
        "no-mdns",
        dir.path(),
        &["get", &ticket, "-o", &out_d, "--no-mdns"],
    );
    let status = lonely.wait_exit(WAIT);
    assert!(!status.success(), "{}", lonely.describe());
    let stderr = lonely.stderr.text();
    assert!(
        stderr.contains("none of the 2 addresses in the ticket answered (")
            && stderr.contains("is the sharer still running")
            && stderr.contains("LAN discovery is off (--no-mdns or P2P_NO_MDNS)"),
        "{stderr}"
    );
    assert!(!stderr.contains(&lan.ipv4(1)), "D dialled B: {stderr}");

    // E, again without LAN discovery and its copy gone, finds B through the peers it met
    // before (`io/address_book`): the other path the swarm outlives its sharer by.
    std::fs::remove_file(std::path::Path::new(&out_e).join("kept.bin")).unwrap();
    let mut remembering = p2p_on(&lan, 4, "remembering", dir.path(), &get_e);
    assert!(
        remembering.wait_exit(WAIT).success(),
        "{}\n{}",
        remembering.describe(),
        seeder.describe()
    );
    assert_file_eq(&std::path::Path::new(&out_e).join("kept.bin"), &data);
    let log = remembering.stderr.text();
    assert!(
        log.contains("through a peer met in an earlier run")
            && (log.contains(&lan.ipv4(1)) || log.contains(&lan.ipv6(1))),
        "E did not say it found B among the peers it met:\n{log}"
    );
    drop(seeder);
}

#[test]
fn two_swarms_on_one_lan_each_find_only_their_own() {
    let Some(lan) = lan_or_skip(4, TWO_SWARMS) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.bin");
    let two = dir.path().join("secret-plans.bin");
    write_file(&one, 256 * 1024 + 3, 42);
    let data_two = write_file(&two, 512 * 1024 + 9, 43);
    // Swarm 1's sharer on A has left; swarm 2's sharer on B is there and announcing.
    let (mut first, ticket_one) = share_on(&lan, 0, dir.path(), &one);
    first.kill9();
    let _ = first.wait_exit(WAIT);
    let (mut second, ticket_two) = share_on(&lan, 1, dir.path(), &two);
    second.wait_stderr("'serving on'", |line| {
        line.starts_with("serving on ").then_some(())
    });

    // A getter of swarm 1 hears swarm 2's announcement, ignores it, never dials B, and
    // learns nothing of swarm 2's file.
    let out = out_dir(dir.path(), "c");
    let mut getter = p2p_on(
        &lan,
        2,
        "getter1",
        dir.path(),
        &["get", &ticket_one, "-o", &out],
    );
    let status = getter.wait_exit(WAIT);
    assert!(!status.success(), "{}", getter.describe());
    let stderr = getter.stderr.text();
    assert!(
        stderr.contains("none of the 2 addresses in the ticket answered (")
            && stderr.contains("LAN discovery found no peer of this swarm"),
        "{stderr}"
    );
    assert!(
        stderr.contains("not this swarm's; ignored"),
        "swarm 2's announcement was never heard, so this shows nothing:\n{stderr}"
    );
    let content_two = ticket_two.parse::<p2p_core::Ticket>().unwrap().content_id;
    for never in [
        lan.ipv4(1),
        content_two.to_string(),
        "secret-plans".to_owned(),
    ] {
        assert!(!stderr.contains(&never), "{never} in:\n{stderr}");
    }

    // A getter of swarm 2 whose ticket names nobody finds B the same way.
    let nobody = vec![format!("{}:7070", lan.nobody())];
    let out = out_dir(dir.path(), "d");
    let mut getter = p2p_on(
        &lan,
        3,
        "getter2",
        dir.path(),
        &["get", &with_addresses(&ticket_two, &nobody), "-o", &out],
    );
    let status = getter.wait_exit(WAIT);
    assert!(status.success(), "{}", getter.describe());
    assert_file_eq(
        &std::path::Path::new(&out).join("secret-plans.bin"),
        &data_two,
    );
    drop(second);
}
