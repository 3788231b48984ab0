//! A test origin that behaves like a server across a WAN, for the cooperative download's
//! tests and benchmark: HTTP/1.1 with keep-alive, `Range` and `If-Range` on one file, a
//! delay before every response's head (the round trip a request costs), and a cap in bytes
//! per second per **client IP**, shared by all of that client's connections (one token
//! bucket per IP, as one host's uplink is shared by all its connections).
//!
//! It also serves the loopback tests (`tests/coop_support`), where every client has the same
//! address: there a cap per **connection** ([`WanConfig::rate_per_connection`]) stands in
//! for separate uplinks, and the file can be switched mid-job ([`WanOrigin::change_after`]).
//! One thread per connection, so a connection kept alive never delays another's.
//! `GET /_stats` answers `served BYTES gets N`: body bytes sent and ranged or whole `GET`s.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes a body hands out per step: small steps keep each client's rate smooth and let
/// its connections share its bucket fairly.
const BODY_STEP: usize = 16 * 1024;
/// Longest request head read: a longer one closes the connection.
const HEAD_LEN_MAX: u64 = 16 * 1024;
/// Most connections served at once; more are closed at once.
pub const CONNECTIONS_MAX: usize = 1024;
/// A connection idle this long between requests is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most client IPs with a bucket: past this, buckets of idle clients are dropped, and a new
/// client's body is cut off while every bucket is busy.
pub const CLIENTS_MAX: usize = 4096;
/// Link time a client may bank while its senders are late (a thread woken late by a busy
/// machine): without it the cap would lose what scheduling delays cost; it is short, so a
/// quiet client still starts at about the cap, not above.
const BURST: Duration = Duration::from_millis(20);
/// The `ETag` of the file (it never changes here).
pub const ETAG: &str = "\"wan-v1\"";

/// How the origin behaves.
#[derive(Clone, Debug)]
pub struct WanConfig {
    /// Bytes per second per client IP, over all its connections; 0: no cap.
    pub rate_per_ip: u64,
    /// Client IPs with a cap of their own instead (a slower uplink).
    pub rate_of_ip: Vec<(IpAddr, u64)>,
    /// Added before every response's head: the round trip a request costs.
    pub request_delay: Duration,
    /// Bytes per second of each response body, counted from its first byte; 0: no cap.
    pub rate_per_connection: u64,
    /// `Accept-Ranges: bytes` and 206s; false: every `GET` gets the whole file with a 200.
    pub ranges: bool,
    /// The file's `ETag` until [`WanOrigin::change_after`] switches it.
    pub etag: String,
}

impl Default for WanConfig {
    /// No cap, no delay, ranges, [`ETAG`].
    fn default() -> WanConfig {
        WanConfig {
            rate_per_ip: 0,
            rate_of_ip: Vec::new(),
            request_delay: Duration::ZERO,
            rate_per_connection: 0,
            ranges: true,
            etag: ETAG.into(),
        }
    }
}

/// When a client's link is next free: a byte sent then leaves at the cap's pace.
struct Buckets {
    free_at: HashMap<IpAddr, Instant>,
}

impl Buckets {
    /// Reserves `bytes` of `ip`'s link; returns when they have crossed it (the caller sleeps
    /// until then). At most [`BURST`] of idle time is banked.
    fn reserve(&mut self, ip: IpAddr, bytes: u64, rate: u64, now: Instant) -> Option<Instant> {
        if !self.free_at.contains_key(&ip) && self.free_at.len() >= CLIENTS_MAX {
            self.free_at.retain(|_, at| *at > now);
            if self.free_at.len() >= CLIENTS_MAX {
                return None;
            }
        }
        let at = self.free_at.entry(ip).or_insert(now);
        let start = (*at).max(now.checked_sub(BURST).unwrap_or(now));
        *at = start + Duration::from_secs_f64(bytes as f64 / rate as f64);
        Some(*at)
    }
}

/// The file served now and its `ETag`.
struct Content {
    data: Arc<Vec<u8>>,
    etag: String,
}

struct State {
    config: WanConfig,
    content: Mutex<Content>,
    /// Once `served` reaches this, the file becomes `replacement`.
    change_after: AtomicU64,
    replacement: Mutex<Option<Content>>,
    changed: AtomicBool,
    buckets: Mutex<Buckets>,
    served: AtomicU64,
    gets: AtomicU64,
    connections: AtomicU64,
    stop: AtomicBool,
}

/// The origin, serving one file at every path but `/_stats`; stops accepting when dropped.
pub struct WanOrigin {
    pub addr: SocketAddr,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl WanOrigin {
    /// Listens on `listen` (say `127.0.0.1:0`), one thread per connection.
    pub fn start(listen: &str, data: Vec<u8>, config: WanConfig) -> std::io::Result<WanOrigin> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let content = Mutex::new(Content {
            data: Arc::new(data),
            etag: config.etag.clone(),
        });
        let state = Arc::new(State {
            config,
            content,
            change_after: AtomicU64::new(u64::MAX),
            replacement: Mutex::new(None),
            changed: AtomicBool::new(false),
            buckets: Mutex::new(Buckets {
                free_at: HashMap::new(),
            }),
            served: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let thread = {
            let state = state.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if state.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    if state.connections.fetch_add(1, Ordering::SeqCst) >= CONNECTIONS_MAX as u64 {
                        state.connections.fetch_sub(1, Ordering::SeqCst);
                        continue;
                    }
                    let state = state.clone();
                    std::thread::spawn(move || {
                        drop(serve(&state, stream));
                        state.connections.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            })
        };
        Ok(WanOrigin {
            addr,
            state,
            thread: Some(thread),
        })
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    /// Body bytes served so far.
    pub fn served(&self) -> u64 {
        self.state.served.load(Ordering::SeqCst)
    }

    /// Bytes of the file served now.
    pub fn size(&self) -> u64 {
        self.state
            .content
            .lock()
            .map_or(0, |content| content.data.len() as u64)
    }

    /// `GET`s answered so far (`/_stats` aside).
    pub fn gets(&self) -> u64 {
        self.state.gets.load(Ordering::SeqCst)
    }

    /// Once `bytes` have been served, the file becomes `data` with `ETag` `etag` (responses
    /// already started finish with the old bytes).
    pub fn change_after(&self, bytes: u64, data: Vec<u8>, etag: &str) {
        if let Ok(mut replacement) = self.state.replacement.lock() {
            *replacement = Some(Content {
                data: Arc::new(data),
                etag: etag.into(),
            });
        }
        self.state.change_after.store(bytes, Ordering::SeqCst);
    }

    /// The file was switched.
    pub fn changed(&self) -> bool {
        self.state.changed.load(Ordering::SeqCst)
    }
}

impl Drop for WanOrigin {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        drop(TcpStream::connect(self.addr));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `bytes=A-B` or `bytes=A-` → (A, B) within `size`; one range only.
pub fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
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

/// One request's head: method, path and the headers this origin reads.
struct RequestHead {
    method: String,
    path: String,
    range: Option<String>,
    if_range: Option<String>,
    close: bool,
}

/// Reads one request head; `None` at the end of the connection or on a malformed or
/// oversized head (the connection is then closed).
fn read_head(reader: &mut BufReader<TcpStream>) -> Option<RequestHead> {
    let mut limited = Read::take(reader, HEAD_LEN_MAX);
    let mut line = String::new();
    limited.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let (method, path) = (words.next()?.to_string(), words.next()?.to_string());
    let mut head = RequestHead {
        method,
        path,
        range: None,
        if_range: None,
        close: false,
    };
    loop {
        line.clear();
        if limited.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some(head);
        }
        let (name, value) = line.split_once(':')?;
        let value = value.trim().to_string();
        match name.trim().to_ascii_lowercase().as_str() {
            "range" => head.range = Some(value),
            "if-range" => head.if_range = Some(value),
            "connection" => head.close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
}

/// Serves requests on one connection until it closes.
fn serve(state: &Arc<State>, stream: TcpStream) -> std::io::Result<()> {
    let ip = stream.peer_addr()?.ip();
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some(head) = read_head(&mut reader) {
        respond(state, ip, &head, &mut writer)?;
        if head.close {
            break;
        }
    }
    Ok(())
}

fn respond(
    state: &Arc<State>,
    ip: IpAddr,
    head: &RequestHead,
    out: &mut TcpStream,
) -> std::io::Result<()> {
    if head.path == "/_stats" {
        let text = format!(
            "served {} gets {}\n",
            state.served.load(Ordering::SeqCst),
            state.gets.load(Ordering::SeqCst)
        );
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        return out.write_all(reply.as_bytes());
    }
    // The round trip: the request's way here and the head's way back.
    std::thread::sleep(state.config.request_delay);
    let (data, etag) = {
        let content = state
            .content
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        (content.data.clone(), content.etag.clone())
    };
    let size = data.len() as u64;
    let accept = if state.config.ranges {
        "Accept-Ranges: bytes\r\n"
    } else {
        ""
    };
    let common = format!("ETag: {etag}\r\n{accept}");
    match head.method.as_str() {
        "HEAD" => {
            let reply = format!("HTTP/1.1 200 OK\r\n{common}Content-Length: {size}\r\n\r\n");
            out.write_all(reply.as_bytes())
        }
        "GET" => {
            state.gets.fetch_add(1, Ordering::SeqCst);
            // `If-Range` with another validator: the whole file, as RFC 9110 says.
            let if_range_ok = head.if_range.as_deref().is_none_or(|v| v == etag);
            let range = head
                .range
                .as_deref()
                .filter(|_| if_range_ok && state.config.ranges);
            let (first, last) = match range.map(|r| parse_range(r, size)) {
                Some(Some((first, last))) => {
                    let reply = format!(
                        "HTTP/1.1 206 Partial Content\r\n{common}Content-Range: bytes {first}-{last}/{size}\r\nContent-Length: {}\r\n\r\n",
                        last - first + 1
                    );
                    out.write_all(reply.as_bytes())?;
                    (first, last + 1)
                }
                Some(None) => {
                    let reply = format!(
                        "HTTP/1.1 416 Range Not Satisfiable\r\n{common}Content-Range: bytes */{size}\r\nContent-Length: 0\r\n\r\n"
                    );
                    return out.write_all(reply.as_bytes());
                }
                None => {
                    let reply =
                        format!("HTTP/1.1 200 OK\r\n{common}Content-Length: {size}\r\n\r\n");
                    out.write_all(reply.as_bytes())?;
                    (0, size)
                }
            };
            send_body(state, &data, ip, first, last, out)
        }
        _ => out.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n"),
    }
}

/// Bytes `start..end` of `data`, each step after its client's bucket (and its connection's
/// cap) allows it.
fn send_body(
    state: &Arc<State>,
    data: &[u8],
    ip: IpAddr,
    start: u64,
    end: u64,
    out: &mut TcpStream,
) -> std::io::Result<()> {
    let mut pos = start;
    let started = Instant::now();
    while pos < end {
        let step = (end - pos).min(BODY_STEP as u64);
        let rate = (state.config.rate_of_ip.iter())
            .find(|(of, _)| *of == ip)
            .map_or(state.config.rate_per_ip, |(_, rate)| *rate);
        if rate > 0 {
            let due = state
                .buckets
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .reserve(ip, step, rate, Instant::now())
                .ok_or_else(|| std::io::Error::other("too many clients"))?;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let per_connection = state.config.rate_per_connection;
        if per_connection > 0 {
            let due =
                started + Duration::from_secs_f64((pos - start) as f64 / per_connection as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        out.write_all(&data[pos as usize..(pos + step) as usize])?;
        pos += step;
        let served = state.served.fetch_add(step, Ordering::SeqCst) + step;
        if served >= state.change_after.load(Ordering::SeqCst)
            && !state.changed.swap(true, Ordering::SeqCst)
        {
            let replacement = state.replacement.lock().ok().and_then(|mut r| r.take());
            if let (Some(next), Ok(mut content)) = (replacement, state.content.lock()) {
                *content = next;
            }
        }
    }
    Ok(())
}
