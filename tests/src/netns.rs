//! Hosts on one LAN for the multi-host tests: network namespaces joined by a bridge, which
//! the tests create (they need root and iproute2; without them a test says "skipped" and
//! passes). Every packet of such a test stays inside its namespaces, multicast included.

use std::process::Command;

/// LANs one test process may make at once, told apart by a number below this.
pub const LANS_PER_PROCESS: u32 = 8;

/// Hosts on one LAN: namespace `host_ns[i]` at `10.232.N.(i+1)` and `fd23:0:N::(i+1)`,
/// joined through a bridge in namespace `switch`; all deleted on drop (their links go
/// with them).
pub struct Lan {
    pub switch: String,
    pub hosts: Vec<String>,
    n: u32,
}

impl Lan {
    /// `test`: a number of the test's own, so the tests of one process (one process id)
    /// make LANs of different names and subnets.
    pub fn create(count: usize, test: u32) -> Result<Lan, String> {
        if !is_root() {
            return Err("not root".into());
        }
        let id = format!("{test}{}", std::process::id());
        let lan = Lan {
            switch: format!("p2pzS{id}"),
            hosts: (0..count).map(|i| format!("p2pz{i}{id}")).collect(),
            n: (std::process::id() * LANS_PER_PROCESS + test % LANS_PER_PROCESS) % 250 + 1,
        };
        // Left by an earlier run that was killed with this process id (best effort).
        lan.clean_up();
        ip(&["netns", "add", &lan.switch])?;
        ip(&["-n", &lan.switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &lan.switch, "link", "set", "br0", "up"])?;
        for (i, ns) in lan.hosts.iter().enumerate() {
            let (host_end, switch_end) = (format!("p2zh{i}{id}"), format!("p2zs{i}{id}"));
            ip(&["netns", "add", ns])?;
            ip(&[
                "link",
                "add",
                &host_end,
                "type",
                "veth",
                "peer",
                "name",
                &switch_end,
            ])?;
            ip(&["link", "set", &host_end, "netns", ns])?;
            ip(&["link", "set", &switch_end, "netns", &lan.switch])?;
            ip(&[
                "-n",
                &lan.switch,
                "link",
                "set",
                &switch_end,
                "master",
                "br0",
            ])?;
            ip(&["-n", &lan.switch, "link", "set", &switch_end, "up"])?;
            let v4 = format!("{}/24", lan.ipv4(i));
            let v6 = format!("{}/64", lan.ipv6(i));
            ip(&["-n", ns, "addr", "add", &v4, "dev", &host_end])?;
            // No duplicate address detection: usable at once.
            ip(&["-n", ns, "addr", "add", &v6, "dev", &host_end, "nodad"])?;
            ip(&["-n", ns, "link", "set", &host_end, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(lan)
    }

    pub fn ipv4(&self, host: usize) -> String {
        format!("10.232.{}.{}", self.n, host + 1)
    }

    pub fn ipv6(&self, host: usize) -> String {
        format!("fd23:0:{}::{}", self.n, host + 1)
    }

    /// An address on the LAN where no host is: a dial there gets no answer.
    pub fn nobody(&self) -> String {
        format!("10.232.{}.99", self.n)
    }

    fn clean_up(&self) {
        for ns in self.hosts.iter().chain([&self.switch]) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.clean_up();
    }
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

pub fn ip(args: &[&str]) -> Result<(), String> {
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

/// The LAN, or `None` (the test is skipped, saying why) without root or iproute2.
pub fn lan_or_skip(count: usize, test: u32) -> Option<Lan> {
    match Lan::create(count, test) {
        Ok(lan) => Some(lan),
        Err(why)
            if why == "not root"
                || why.contains("cannot run ip")
                || why.contains("Operation not permitted")
                || why.contains("Permission denied") =>
        {
            eprintln!("skipped: network namespaces need root and iproute2 ({why})");
            None
        }
        Err(why) => panic!("cannot make the LAN: {why}"),
    }
}
