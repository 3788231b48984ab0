//! Two hosts made of network namespaces this test creates (it needs root; without it, it
//! says so and does nothing). Host A runs a tracker and a sharer that listens on every
//! interface (`--listen 0.0.0.0:0`); host B a getter. The sharer cannot know which of its
//! addresses B reaches it at: the tracker must list it at the one its connection came
//! from, or B dials `0.0.0.0` (itself) and never gets the file.

use std::process::Command;

use p2p_tests::*;

/// Two namespaces joined by a veth pair, `10.231.N.1` (A) and `10.231.N.2` (B); deleted on
/// drop (the veth pair goes with them).
struct TwoHosts {
    a: String,
    b: String,
    a_ip: String,
}

impl TwoHosts {
    fn create() -> Result<TwoHosts, String> {
        if !is_root() {
            return Err("not root".into());
        }
        let id = std::process::id();
        let n = id % 250 + 1;
        let hosts = TwoHosts {
            a: format!("p2pA{id}"),
            b: format!("p2pB{id}"),
            a_ip: format!("10.231.{n}.1"),
        };
        let (va, vb) = (format!("p2va{id}"), format!("p2vb{id}"));
        // Left by an earlier run that was killed with this process id (best effort).
        drop(hosts.clean_up());
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", &hosts.a],
            vec!["netns", "add", &hosts.b],
            vec!["link", "add", &va, "type", "veth", "peer", "name", &vb],
            vec!["link", "set", &va, "netns", &hosts.a],
            vec!["link", "set", &vb, "netns", &hosts.b],
        ];
        let a_cidr = format!("{}/24", hosts.a_ip);
        let b_cidr = format!("10.231.{n}.2/24");
        let inside: Vec<(&str, Vec<&str>)> = vec![
            (&hosts.a, vec!["addr", "add", &a_cidr, "dev", &va]),
            (&hosts.a, vec!["link", "set", &va, "up"]),
            (&hosts.a, vec!["link", "set", "lo", "up"]),
            (&hosts.b, vec!["addr", "add", &b_cidr, "dev", &vb]),
            (&hosts.b, vec!["link", "set", &vb, "up"]),
            (&hosts.b, vec!["link", "set", "lo", "up"]),
        ];
        for step in &steps {
            ip(step)?;
        }
        for (ns, step) in &inside {
            let mut args = vec!["-n", ns];
            args.extend_from_slice(step);
            ip(&args)?;
        }
        Ok(hosts)
    }
}

impl TwoHosts {
    /// Deletes the namespaces (their veth ends go with them) and a veth end left outside.
    fn clean_up(&self) -> Result<(), String> {
        let id = std::process::id();
        let link = ip(&["link", "del", &format!("p2va{id}")]);
        let a = ip(&["netns", "del", &self.a]);
        let b = ip(&["netns", "del", &self.b]);
        link.or(a).or(b)
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        drop(self.clean_up());
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[test]
fn a_sharer_listening_on_every_interface_is_reached_from_another_host() {
    let hosts = match TwoHosts::create() {
        Ok(hosts) => hosts,
        Err(why)
            if why == "not root"
                || why.contains("cannot run ip")
                || why.contains("Operation not permitted")
                || why.contains("Permission denied") =>
        {
            eprintln!("skipped: network namespaces need root and iproute2 ({why})");
            return;
        }
        Err(why) => panic!("cannot make the two hosts: {why}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    let src = dir.path().join("lan.bin");
    let data = write_file(&src, 5 * 1024 * 1024 + 3, 9);

    let listen = format!("{}:0", hosts.a_ip);
    let mut tracker = Proc::spawn_in_netns(
        "tracker",
        dir.path(),
        &hosts.a,
        &["tracker", "--listen", &listen, "--secret-file", &swarm],
    );
    let tracker_addr = tracker.wait_stderr("'tracker listening on'", |line| {
        line.strip_prefix("tracker listening on ")
            .and_then(|rest| rest.split([';', ' ']).next())
            .map(str::to_string)
    });
    let mut sharer = Proc::spawn_in_netns(
        "sharer",
        dir.path(),
        &hosts.a,
        &[
            "share",
            src.to_str().unwrap(),
            "--tracker",
            &tracker_addr,
            "--secret-file",
            &swarm,
            "--listen",
            "0.0.0.0:0",
        ],
    );
    let ticket = sharer.wait_stdout("a ticket", |line| {
        line.starts_with("p2p").then(|| line.trim().to_string())
    });

    // Listed at host A's address, as seen from host B.
    let peers_addr = wait_for("the sharer listed at host A's address", WAIT, || {
        let mut peers = Proc::spawn_in_netns(
            "peers",
            dir.path(),
            &hosts.b,
            &["peers", "--tracker", &tracker_addr, "--secret-file", &swarm],
        );
        peers.wait_exit(WAIT);
        let text = peers.stdout.text();
        assert!(!text.contains("0.0.0.0"), "listed unreachable: {text}");
        text.split_whitespace()
            .find(|word| word.starts_with(&format!("{}:", hosts.a_ip)))
            .map(str::to_string)
    });
    eprintln!("sharer listed at {peers_addr}");

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut getter = Proc::spawn_in_netns(
        "getter",
        dir.path(),
        &hosts.b,
        &[
            "get",
            &ticket,
            "-o",
            out.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ],
    );
    let status = getter.wait_exit(WAIT);
    assert!(
        status.success(),
        "get exited {status}\n{}",
        getter.describe()
    );
    assert_file_eq(&out.join("lan.bin"), &data);
    assert!(
        getter.stdout.text().starts_with(&sha256_hex(&data)),
        "{}",
        getter.describe()
    );
    drop((sharer, tracker));
}
