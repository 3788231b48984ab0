//! The WAN-like test origin (`p2p_tests::wan_origin`) does what the benchmark relies on:
//! ranges and `If-Range`, a delay before every response, and one cap per client IP shared
//! by all its connections. Only lower bounds on time are asserted (a cap and a delay can
//! only make things slower), never speed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use p2p_tests::wan_origin::{ETAG, WanConfig, WanOrigin};

/// One request on a new connection: (status, headers, body).
fn get(origin: &WanOrigin, extra: &str) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(origin.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let request = format!("GET /f HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn ranges_and_if_range_are_honoured() {
    let file = data(100_000);
    let config = WanConfig {
        rate_per_ip: 0,
        request_delay: Duration::ZERO,
        ..WanConfig::default()
    };
    let origin = WanOrigin::start("127.0.0.1:0", file.clone(), config).unwrap();
    let (status, head, body) = get(&origin, "Range: bytes=10-19\r\n");
    assert_eq!(status, 206);
    assert!(head.contains("bytes 10-19/100000"), "{head}");
    assert_eq!(body, &file[10..20]);
    let (status, _, body) = get(&origin, &format!("Range: bytes=5-\r\nIf-Range: {ETAG}\r\n"));
    assert_eq!((status, body.as_slice()), (206, &file[5..]));
    // Another validator: the file changed, so the whole (current) file with a 200.
    let (status, _, body) = get(&origin, "Range: bytes=5-9\r\nIf-Range: \"old\"\r\n");
    assert_eq!((status, body.len()), (200, file.len()));
    let (status, _, _) = get(&origin, "Range: bytes=200000-\r\n");
    assert_eq!(status, 416);
    assert_eq!(origin.gets(), 4);
}

#[test]
fn every_response_waits_for_the_delay() {
    let config = WanConfig {
        rate_per_ip: 0,
        request_delay: Duration::from_millis(150),
        ..WanConfig::default()
    };
    let origin = WanOrigin::start("127.0.0.1:0", data(10), config).unwrap();
    let started = Instant::now();
    let (status, _, _) = get(&origin, "");
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[test]
fn one_clients_connections_share_its_cap() {
    const RATE: u64 = 1_000_000;
    const EACH: usize = 300_000;
    let config = WanConfig {
        rate_per_ip: RATE,
        request_delay: Duration::ZERO,
        ..WanConfig::default()
    };
    let origin = WanOrigin::start("127.0.0.1:0", data(2 * EACH), config).unwrap();
    let origin = std::sync::Arc::new(origin);
    let started = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|i| {
            let origin = origin.clone();
            std::thread::spawn(move || {
                let range = format!("Range: bytes={}-{}\r\n", i * EACH, (i + 1) * EACH - 1);
                get(&origin, &range).2.len()
            })
        })
        .collect();
    let got: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(got, 2 * EACH);
    // Two connections from 127.0.0.1 together at most RATE: 600 kB take 0.6 s at least
    // (a per-connection cap would let them through in 0.3 s).
    let floor = Duration::from_secs_f64((2 * EACH) as f64 / RATE as f64 * 0.95);
    assert!(started.elapsed() >= floor, "{:?}", started.elapsed());
    assert_eq!(origin.served(), (2 * EACH) as u64);
}
