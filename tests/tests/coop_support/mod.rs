//! Shared by the cooperative origin download tests and benchmark: a test origin (the WAN
//! test origin with a per-connection rate limit: `Range`, `If-Range`, `ETag`, a byte counter
//! and a switch that changes the file mid-job), the `p2p` binary, and processes that die with the test.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use p2p_tests::wan_origin::{WanConfig, WanOrigin};

// ------------------------------------------------------------------ the p2p binary

/// The `p2p` binary (the e2e harness builds it once per test process; `P2P_BIN` overrides).
pub fn p2p_bin() -> &'static Path {
    p2p_tests::p2p_bin()
}

/// A child process killed (and reaped) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the exit, at most `limit`; kills it and panics past that.
    pub fn wait_for(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!("{} did not finish within {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `stderr` until a line containing `marker`, then returns the word after `marker`
/// (an address); keeps draining it on a thread so the child never blocks on a full pipe.
fn address_after(stderr: ChildStderr, marker: &'static str, what: &str) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines();
        let mut sent = false;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if !sent && let Some(rest) = line.split_once(marker).map(|(_, r)| r) {
                let word = rest
                    .split([' ', ',', ';'])
                    .find(|w| !w.is_empty())
                    .unwrap_or("")
                    .to_string();
                let _ = tx.send(word);
                sent = true;
            }
        }
    });
    let word = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{what} did not print its address"));
    word.parse()
        .unwrap_or_else(|e| panic!("{what} printed '{word}': {e}"))
}

/// `p2p tracker` serving the swarm of the secret file `swarm`.
pub fn start_tracker(swarm: &str) -> (Proc, SocketAddr) {
    let mut child = Command::new(p2p_bin())
        .args(["tracker", "--listen", "127.0.0.1:0", "--secret-file", swarm])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let proc = Proc {
        child,
        name: "tracker".into(),
    };
    let addr = address_after(stderr, "listening on ", "the tracker");
    (proc, addr)
}

/// `p2p helper` in `swarm`, allowed to fetch from the test origin at `origin` (on
/// loopback, which its origin policy refuses otherwise).
pub fn start_helper(tracker: SocketAddr, swarm: &str, origin: SocketAddr) -> (Proc, SocketAddr) {
    let mut child = Command::new(p2p_bin())
        .args([
            "helper",
            "--tracker",
            &tracker.to_string(),
            "--secret-file",
            swarm,
            "--allow-origin",
            &origin.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let proc = Proc {
        child,
        name: "helper".into(),
    };
    let addr = address_after(stderr, " on ", "a helper");
    (proc, addr)
}

/// Waits until the tracker lists at least `count` peers in `swarm`.
pub fn wait_for_peers(tracker: SocketAddr, swarm: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(p2p_bin())
            .args([
                "peers",
                "--json",
                "--tracker",
                &tracker.to_string(),
                "--secret-file",
                swarm,
            ])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&out.stdout).lines().count();
        if listed >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the tracker lists {listed} peers, not {count}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `p2p fetch URL -o OUT --json ...extra`; stdout is piped (JSON lines).
pub fn start_fetch(
    tracker: SocketAddr,
    swarm: &str,
    url: &str,
    out: &Path,
    extra: &[&str],
) -> Proc {
    let child = Command::new(p2p_bin())
        .args([
            "fetch",
            url,
            "--json",
            "--tracker",
            &tracker.to_string(),
            "--secret-file",
            swarm,
        ])
        .arg("-o")
        .arg(out)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Proc {
        child,
        name: "fetch".into(),
    }
}

/// What a finished `p2p fetch --json` said.
pub struct FetchOutput {
    pub success: bool,
    pub events: Vec<serde_json::Value>,
    pub stderr: String,
}

impl FetchOutput {
    pub fn of(&self, kind: &str) -> Vec<&serde_json::Value> {
        self.events.iter().filter(|e| e["event"] == kind).collect()
    }

    /// Who fetched ranges (the `by` of every `range` event).
    pub fn range_takers(&self) -> std::collections::BTreeMap<String, u32> {
        let mut takers = std::collections::BTreeMap::new();
        for e in self.of("range") {
            *takers
                .entry(e["by"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
        }
        takers
    }
}

/// Waits for a fetch to exit (at most `limit`) and collects what it printed.
pub fn finish_fetch(mut proc: Proc, limit: Duration) -> FetchOutput {
    let mut stdout = proc.child.stdout.take().unwrap();
    let mut stderr = proc.child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = proc.wait_for(limit);
    let out = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    let events = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    FetchOutput {
        success: status.success(),
        events,
        stderr,
    }
}

/// Deterministic bytes that differ at every offset (and between seeds).
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

// ------------------------------------------------------------------ the test origin

/// How the origin behaves.
#[derive(Clone, Debug)]
pub struct OriginConfig {
    /// Bytes per second per response (one connection serves one response at a time);
    /// 0: no limit.
    pub rate: u64,
    /// `Accept-Ranges: bytes` and 206s; false: every GET gets the whole file with a 200.
    pub ranges: bool,
}

/// The file's `ETag` until it changes.
pub const ETAG: &str = "\"v1\"";
/// Its `ETag` after [`Origin::change_after`].
const CHANGED_ETAG: &str = "\"v2\"";
/// The seed of its bytes after [`Origin::change_after`] ([`test_bytes`]).
pub const CHANGED_SEED: u64 = 0x0C4A_96ED;

/// An HTTP origin on 127.0.0.1: the WAN test origin (`p2p_tests::wan_origin`, one thread
/// per connection) with a cap per connection instead of per client address, since every
/// client here has the same; stops when dropped.
pub struct Origin {
    pub addr: SocketAddr,
    inner: WanOrigin,
}

impl Origin {
    pub fn start(data: Vec<u8>, config: OriginConfig) -> Origin {
        let wan = WanConfig {
            rate_per_connection: config.rate,
            ranges: config.ranges,
            etag: ETAG.into(),
            ..WanConfig::default()
        };
        let inner = WanOrigin::start("127.0.0.1:0", data, wan).unwrap();
        Origin {
            addr: inner.addr,
            inner,
        }
    }

    pub fn url(&self, name: &str) -> String {
        self.inner.url(name)
    }

    /// Body bytes served so far.
    pub fn served(&self) -> u64 {
        self.inner.served()
    }

    pub fn gets(&self) -> u64 {
        self.inner.gets()
    }

    /// The file changes (other bytes, other ETag) once `bytes` have been served.
    pub fn change_after(&self, bytes: u64) {
        let len = self.inner.size() as usize;
        self.inner
            .change_after(bytes, test_bytes(len, CHANGED_SEED), CHANGED_ETAG);
    }

    pub fn changed(&self) -> bool {
        self.inner.changed()
    }
}
