//! Benchmark of the cooperative origin download at WAN latency (not a timed test; ignored by
//! default; needs root for network namespaces). It makes an origin host and N participant
//! hosts, each a namespace with its own address on one bridge (in a namespace of its own too,
//! so no traffic touches the machine's own network). The origin is `wan_origin`: it caps each
//! client IP (each host's uplink) and delays every response by a round trip. In one run,
//! alternated, medians of the rounds:
//!
//! - `curl` alone on one host;
//! - the ceiling: every host `curl -r`s its share at once;
//! - `p2p fetch` alone (its own tracker, no helpers);
//! - `p2p fetch` with `p2p helper` on every other host;
//! - origin bytes served per file size, for the cooperative runs.
//!
//! ```text
//! cargo test --release -p p2p-tests --test wan_bench -- --ignored --nocapture
//! WAN_BENCH_MIB=64 WAN_BENCH_RATE=10000000 WAN_BENCH_DELAY_MS=40 WAN_BENCH_HOSTS=4 \
//!   WAN_BENCH_ROUNDS=3 WAN_BENCH_SLOW_HOST=1 P2P_BIN=/path/to/other/p2p \
//!   cargo test --release ...  # knobs
//! ```
//!
//! `WAN_BENCH_SLOW_HOST=1`: the last host (a helper) has a quarter of the others' rate.
//! The ceiling is then what the hosts can do together: each `curl -r`s a share in
//! proportion to its rate, so all finish at once.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use p2p_tests::*;

const MIB: u64 = 1024 * 1024;
/// Longest any one download of the benchmark may take.
const RUN_WAIT: Duration = Duration::from_secs(300);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
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

/// The namespaces: a switch (a bridge), the origin host and the participant hosts, each
/// host joined to the bridge by a veth pair. Deleted on drop (the veths go with them).
struct Hosts {
    switch: String,
    origin: String,
    origin_ip: String,
    participants: Vec<(String, String)>,
}

impl Hosts {
    fn create(count: usize) -> Result<Hosts, String> {
        let id = std::process::id();
        let net = format!("10.234.{}", id % 250 + 1);
        let hosts = Hosts {
            switch: format!("p2pwS{id}"),
            origin: format!("p2pwO{id}"),
            origin_ip: format!("{net}.1"),
            participants: (1..=count)
                .map(|k| (format!("p2pw{k}x{id}"), format!("{net}.{}", 10 + k)))
                .collect(),
        };
        hosts.clean_up();
        ip(&["netns", "add", &hosts.switch])?;
        ip(&["-n", &hosts.switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hosts.switch, "link", "set", "br0", "up"])?;
        let all = std::iter::once((hosts.origin.clone(), hosts.origin_ip.clone()))
            .chain(hosts.participants.iter().cloned());
        for (k, (ns, addr)) in all.enumerate() {
            let (near, far) = (format!("pwh{k}x{id}"), format!("pws{k}x{id}"));
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &near, "type", "veth", "peer", "name", &far])?;
            ip(&["link", "set", &near, "netns", &ns])?;
            ip(&["link", "set", &far, "netns", &hosts.switch])?;
            ip(&["-n", &hosts.switch, "link", "set", &far, "master", "br0"])?;
            ip(&["-n", &hosts.switch, "link", "set", &far, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &near,
            ])?;
            ip(&["-n", &ns, "link", "set", &near, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }

    fn clean_up(&self) {
        for (ns, _) in &self.participants {
            drop(ip(&["netns", "del", ns]));
        }
        drop(ip(&["netns", "del", &self.origin]));
        drop(ip(&["netns", "del", &self.switch]));
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.clean_up();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// `curl` in namespace `ns`.
fn curl(dir: &Path, ns: &str, args: &[&str]) -> Proc {
    let mut all = vec!["netns", "exec", ns, "curl", "-sS", "--fail"];
    all.extend_from_slice(args);
    Proc::spawn_program("curl", dir, "ip", &all)
}

fn finish(mut proc: Proc) {
    finish_ref(&mut proc);
}

/// Body bytes the origin has served.
fn origin_served(dir: &Path, hosts: &Hosts, stats_url: &str) -> u64 {
    let mut proc = curl(dir, &hosts.participants[0].0, &[stats_url]);
    finish_ref(&mut proc);
    let text = proc.stdout.text();
    text.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("origin stats: {text}"))
}

fn finish_ref(proc: &mut Proc) {
    let status = proc.wait_exit(RUN_WAIT);
    assert!(status.success(), "{}", proc.describe());
}

fn check_file(path: &Path, data: &[u8]) {
    assert!(std::fs::read(path).unwrap() == data, "{path:?} differs");
}

struct Bench<'a> {
    dir: &'a Path,
    hosts: &'a Hosts,
    url: String,
    stats_url: String,
    data: &'a [u8],
    extra: Vec<String>,
    /// The last host has a quarter of the others' rate.
    slow_last: bool,
}

impl Bench<'_> {
    fn curl_alone(&self) -> f64 {
        let out = self.dir.join("curl.bin");
        let started = Instant::now();
        let ns = &self.hosts.participants[0].0;
        finish(curl(
            self.dir,
            ns,
            &["-o", out.to_str().unwrap(), &self.url],
        ));
        let secs = started.elapsed().as_secs_f64();
        check_file(&out, self.data);
        secs
    }

    fn ceiling(&self) -> f64 {
        let count = self.hosts.participants.len() as u64;
        let size = self.data.len() as u64;
        // Shares in proportion to each host's rate: in quarters of a normal host's.
        let weights: Vec<u64> = (0..count)
            .map(|k| {
                if self.slow_last && k + 1 == count {
                    1
                } else {
                    4
                }
            })
            .collect();
        let total: u64 = weights.iter().sum();
        let bounds: Vec<u64> = (0..=count as usize)
            .map(|k| size * weights[..k].iter().sum::<u64>() / total)
            .collect();
        let started = Instant::now();
        let procs: Vec<_> = self
            .hosts
            .participants
            .iter()
            .enumerate()
            .map(|(k, (ns, _))| {
                let first = bounds[k];
                let last = bounds[k + 1] - 1;
                let out = self.dir.join(format!("part{k}"));
                let range = format!("{first}-{last}");
                curl(
                    self.dir,
                    ns,
                    &["-r", &range, "-o", out.to_str().unwrap(), &self.url],
                )
            })
            .collect();
        procs.into_iter().for_each(finish);
        let secs = started.elapsed().as_secs_f64();
        let mut whole = Vec::new();
        for k in 0..count {
            whole.extend(std::fs::read(self.dir.join(format!("part{k}"))).unwrap());
        }
        assert!(whole == self.data, "the ceiling's parts differ");
        secs
    }

    /// `p2p fetch` on the first host with helpers on the next `helpers` hosts; seconds and
    /// origin bytes served.
    fn p2p(&self, helpers: usize) -> (f64, u64) {
        let dir = tempfile::tempdir_in(self.dir).unwrap();
        let swarm = new_swarm(dir.path());
        let (first_ns, first_ip) = &self.hosts.participants[0];
        let listen = format!("{first_ip}:0");
        let mut tracker = Proc::spawn_in_netns(
            "tracker",
            dir.path(),
            first_ns,
            &["tracker", "--listen", &listen, "--secret-file", &swarm],
        );
        let tracker_addr = tracker.wait_stderr("'tracker listening on'", |line| {
            line.strip_prefix("tracker listening on ")
                .and_then(|rest| rest.split([';', ' ']).next())
                .map(str::to_string)
        });
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let helper_procs: Vec<Proc> = self.hosts.participants[1..=helpers]
            .iter()
            .map(|(ns, addr)| {
                let listen = format!("{addr}:0");
                let mut args = vec![
                    "helper",
                    "--tracker",
                    &tracker_addr,
                    "--secret-file",
                    &swarm,
                    "--listen",
                    &listen,
                    "--allow-private-origins",
                ];
                args.extend_from_slice(&extra);
                Proc::spawn_in_netns("helper", dir.path(), ns, &args)
            })
            .collect();
        wait_for("helpers listed", WAIT, || {
            let mut peers = Proc::spawn_in_netns(
                "peers",
                dir.path(),
                first_ns,
                &[
                    "peers",
                    "--json",
                    "--tracker",
                    &tracker_addr,
                    "--secret-file",
                    &swarm,
                ],
            );
            peers.wait_exit(WAIT);
            (peers.stdout.text().lines().count() >= helpers).then_some(())
        });
        let out = dir.path().join("fetched.bin");
        let before = origin_served(self.dir, self.hosts, &self.stats_url);
        let started = Instant::now();
        let mut args = vec![
            "fetch",
            &self.url,
            "--json",
            "--tracker",
            &tracker_addr,
            "--secret-file",
            &swarm,
            "--listen",
            &listen,
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(&extra);
        let mut fetch = Proc::spawn_in_netns("fetch", dir.path(), first_ns, &args);
        finish_ref(&mut fetch);
        let secs = started.elapsed().as_secs_f64();
        if std::env::var_os("WAN_BENCH_SHOW").is_some() {
            // What each participant said, to look into a slow run.
            for proc in helper_procs.iter().chain([&fetch]) {
                eprintln!("{}", proc.describe());
            }
        }
        let served = origin_served(self.dir, self.hosts, &self.stats_url) - before;
        check_file(&out, self.data);
        drop((helper_procs, tracker));
        (secs, served)
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture, as root"]
fn wan_bench() {
    if !is_root() {
        eprintln!("skipped: the benchmark's hosts are network namespaces, which need root");
        return;
    }
    let size = env_u64("WAN_BENCH_MIB", 64) * MIB;
    let rate = env_u64("WAN_BENCH_RATE", 10_000_000);
    let delay_ms = env_u64("WAN_BENCH_DELAY_MS", 40);
    let count = env_u64("WAN_BENCH_HOSTS", 4) as usize;
    let rounds = env_u64("WAN_BENCH_ROUNDS", 3) as usize;
    let slow_last = env_u64("WAN_BENCH_SLOW_HOST", 0) == 1;
    let extra: Vec<String> = std::env::var("WAN_BENCH_P2P_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let hosts = Hosts::create(count).unwrap_or_else(|e| panic!("cannot make the hosts: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let data = write_file(&dir.path().join("origin.bin"), size as usize, 17);
    let listen = format!("{}:8080", hosts.origin_ip);
    // Unused unless a host is slow: an address no host has gets the normal rate.
    let slow_ip_rate = match (slow_last, hosts.participants.last()) {
        (true, Some((_, ip))) => format!("{ip}={}", rate / 4),
        _ => format!("{}={rate}", hosts.origin_ip),
    };
    let origin_file = dir.path().join("origin.bin");
    let mut origin = Proc::spawn_program(
        "wan_origin",
        dir.path(),
        "ip",
        &[
            "netns",
            "exec",
            &hosts.origin,
            env!("CARGO_BIN_EXE_wan_origin"),
            "--listen",
            &listen,
            "--file",
            origin_file.to_str().unwrap(),
            "--rate",
            &rate.to_string(),
            "--delay-ms",
            &delay_ms.to_string(),
            "--ip-rate",
            &slow_ip_rate,
        ],
    );
    origin.wait_stderr("'wan origin listening'", |l| {
        l.contains("wan origin listening").then_some(())
    });
    eprintln!(
        "{count} hosts, {} MiB, {rate} B/s per host{}, {delay_ms} ms per request, p2p {:?} {extra:?}",
        size / MIB,
        if slow_last {
            " (the last a quarter)"
        } else {
            ""
        },
        p2p_bin()
    );
    let bench = Bench {
        dir: dir.path(),
        hosts: &hosts,
        url: format!("http://{listen}/file.bin"),
        stats_url: format!("http://{listen}/_stats"),
        data: &data,
        extra,
        slow_last,
    };
    let (mut curl1, mut ceiling, mut alone, mut coop, mut coop_bytes) =
        (vec![], vec![], vec![], vec![], vec![]);
    if std::env::var_os("WAN_BENCH_COOP_ONLY").is_some() {
        for round in 0..rounds {
            let (secs, served) = bench.p2p(count - 1);
            eprintln!("coop round {round}: {secs:.2} s, {served} bytes from the origin");
        }
        return;
    }
    for round in 0..rounds {
        curl1.push(bench.curl_alone());
        ceiling.push(bench.ceiling());
        alone.push(bench.p2p(0).0);
        let (secs, served) = bench.p2p(count - 1);
        coop.push(secs);
        coop_bytes.push(served as f64 / size as f64);
        eprintln!(
            "round {round}: curl {:.2} s, ceiling {:.2} s, p2p alone {:.2} s, p2p + {} helpers {:.2} s ({:.3} of the file from the origin)",
            curl1[round],
            ceiling[round],
            alone[round],
            count - 1,
            coop[round],
            coop_bytes[round]
        );
    }
    let (curl1, ceiling) = (median(&mut curl1), median(&mut ceiling));
    let (alone, coop, bytes) = (
        median(&mut alone),
        median(&mut coop),
        median(&mut coop_bytes),
    );
    eprintln!("| what | time (s) | ratio |");
    eprintln!("| --- | ---: | ---: |");
    eprintln!("| `curl` alone | {curl1:.2} | 1.00× curl |");
    eprintln!(
        "| {count} hosts `curl -r` a share each (ceiling) | {ceiling:.2} | {:.2}× curl |",
        curl1 / ceiling
    );
    // What the hosts' rates allow together, for a whole file: one round trip, then every
    // byte at the sum of the rates.
    let rate_total = if slow_last {
        rate * (count as u64 - 1) + rate / 4
    } else {
        rate * count as u64
    };
    let computed = delay_ms as f64 / 1000.0 + size as f64 / rate_total as f64;
    eprintln!("| computed ceiling (the rates' sum, one round trip) | {computed:.2} | |");
    eprintln!(
        "| `p2p fetch` alone | {alone:.2} | {:.2}× curl |",
        curl1 / alone
    );
    eprintln!(
        "| `p2p fetch` + {} helpers | {coop:.2} | {:.2} of the ceiling |",
        count - 1,
        ceiling / coop
    );
    eprintln!("| origin bytes / file size (cooperative) | {bytes:.3} | |");
}
