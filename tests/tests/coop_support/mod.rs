//! Shared by the cooperative origin download tests and benchmark: a test origin (HTTP with
//! `Range`, `If-Range`, `ETag`, a per-connection rate limit, a byte counter and a switch that
//! changes the file mid-job), the `p2p` binary, and processes that die with the test.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tiny_http::{Header, Method, Response, Server, StatusCode};

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

struct Content {
    data: Arc<Vec<u8>>,
    etag: String,
}

struct State {
    config: OriginConfig,
    content: Mutex<Content>,
    /// Body bytes handed to the network.
    served: AtomicU64,
    gets: AtomicU64,
    /// Once `served` reaches this, the file changes (new bytes, new ETag).
    change_after: AtomicU64,
    changed: AtomicBool,
}

/// An HTTP origin on 127.0.0.1, one thread per request; stops when dropped.
pub struct Origin {
    pub addr: SocketAddr,
    state: Arc<State>,
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

impl Origin {
    pub fn start(data: Vec<u8>, config: OriginConfig) -> Origin {
        let server = Arc::new(Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let state = Arc::new(State {
            config,
            content: Mutex::new(Content {
                data: Arc::new(data),
                etag: "\"v1\"".into(),
            }),
            served: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            change_after: AtomicU64::new(u64::MAX),
            changed: AtomicBool::new(false),
        });
        let thread = {
            let server = server.clone();
            let state = state.clone();
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    let state = state.clone();
                    std::thread::spawn(move || handle(&state, request));
                }
            })
        };
        Origin {
            addr,
            state,
            server,
            thread: Some(thread),
        }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    /// Body bytes served so far.
    pub fn served(&self) -> u64 {
        self.state.served.load(Ordering::SeqCst)
    }

    pub fn gets(&self) -> u64 {
        self.state.gets.load(Ordering::SeqCst)
    }

    /// The file changes (other bytes, other ETag) once `bytes` have been served.
    pub fn change_after(&self, bytes: u64) {
        self.state.change_after.store(bytes, Ordering::SeqCst);
    }

    pub fn changed(&self) -> bool {
        self.state.changed.load(Ordering::SeqCst)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap()
}

/// `bytes=A-B` or `bytes=A-` → (A, B) within `size`.
fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let first: u64 = a.trim().parse().ok()?;
    let last: u64 = match b.trim() {
        "" => size.checked_sub(1)?,
        b => b.parse::<u64>().ok()?.min(size.checked_sub(1)?),
    };
    (first <= last).then_some((first, last))
}

fn handle(state: &Arc<State>, request: tiny_http::Request) {
    let (data, etag) = {
        let content = state.content.lock().unwrap();
        (content.data.clone(), content.etag.clone())
    };
    let size = data.len() as u64;
    let mut headers = vec![header("ETag", &etag)];
    if state.config.ranges {
        headers.push(header("Accept-Ranges", "bytes"));
    }
    let find = |name: &'static str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().to_string())
    };
    match request.method() {
        Method::Head => {
            let mut response = Response::new(
                StatusCode(200),
                headers,
                std::io::empty(),
                Some(size as usize),
                None,
            )
            .with_chunked_threshold(usize::MAX);
            response.add_header(header("Content-Type", "application/octet-stream"));
            let _ = request.respond(response);
        }
        Method::Get => {
            state.gets.fetch_add(1, Ordering::SeqCst);
            let range = find("Range").filter(|_| state.config.ranges);
            let if_range_ok = find("If-Range").is_none_or(|v| v == etag);
            let (status, first, last) = match range.as_deref().map(|r| parse_range(r, size)) {
                Some(Some((a, b))) if if_range_ok => (206, a, b),
                Some(None) => {
                    headers.push(header("Content-Range", &format!("bytes */{size}")));
                    let response =
                        Response::new(StatusCode(416), headers, std::io::empty(), Some(0), None);
                    let _ = request.respond(response);
                    return;
                }
                _ => (200, 0, size.saturating_sub(1)),
            };
            if status == 206 {
                headers.push(header(
                    "Content-Range",
                    &format!("bytes {first}-{last}/{size}"),
                ));
            }
            let len = if size == 0 { 0 } else { last - first + 1 };
            let body = Body {
                data,
                pos: first,
                end: first + len,
                state: state.clone(),
                started: Instant::now(),
                sent: 0,
            };
            // Content-Length, never chunked: clients check the length.
            let response =
                Response::new(StatusCode(status), headers, body, Some(len as usize), None)
                    .with_chunked_threshold(usize::MAX);
            let _ = request.respond(response);
        }
        _ => {
            let _ = request.respond(Response::empty(405));
        }
    }
}

/// A response body that keeps to the rate limit, counts what it hands out, and pulls the
/// switch that changes the file.
struct Body {
    data: Arc<Vec<u8>>,
    pos: u64,
    end: u64,
    state: Arc<State>,
    started: Instant,
    sent: u64,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.end {
            return Ok(0);
        }
        let rate = self.state.config.rate;
        // Small steps keep the rate smooth.
        let step = (buf.len() as u64).min(self.end - self.pos).min(16 * 1024) as usize;
        if rate > 0 {
            let due = self.started + Duration::from_secs_f64(self.sent as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let start = self.pos as usize;
        buf[..step].copy_from_slice(&self.data[start..start + step]);
        self.pos += step as u64;
        self.sent += step as u64;
        let served = self.state.served.fetch_add(step as u64, Ordering::SeqCst) + step as u64;
        if served >= self.state.change_after.load(Ordering::SeqCst)
            && !self.state.changed.swap(true, Ordering::SeqCst)
        {
            let mut content = self.state.content.lock().unwrap();
            let len = content.data.len();
            content.data = Arc::new(test_bytes(len, 0x0C4A_96ED));
            content.etag = "\"v2\"".into();
        }
        Ok(step)
    }
}
