//! Issue 14: helpers are not proxies, and do only the work they asked for. A member of the
//! swarm speaking the real protocol over the secure session offers a real `p2p share` peer
//! jobs for URLs on the peer's loopback, a redirect into it, and a flood of range
//! assignments: the secret stays where it is, the failures say nothing about what is there,
//! and the origin sees no more requests than the peer's slots.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use p2p_core::Message;
use p2p_core::secure::{StaticKey, SwarmSecret};
use p2p_tests::*;
use tiny_http::{Header, Response, Server, StatusCode};

const SECRET: &[u8] = b"the-helper's-own-secret: 7f3a9c2e";
const REFUSED: &str = "refused by origin policy";
const ORIGIN_ERROR: &str = "origin error";

/// A tiny HTTP server on 127.0.0.1 answering every request with `answer(path, range)`
/// after `delay`; it counts the requests, and the most it was answering at once.
struct TestServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    most_at_once: Arc<AtomicUsize>,
}

type Answer = fn(&str, Option<(u64, u64)>, SocketAddr) -> Response<std::io::Cursor<Vec<u8>>>;

impl TestServer {
    fn start(delay: Duration, answer: Answer, target: SocketAddr) -> TestServer {
        let server = Arc::new(Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let most_at_once = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        let (count, most) = (requests.clone(), most_at_once.clone());
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                let (count, most, now) = (count.clone(), most.clone(), now.clone());
                std::thread::spawn(move || {
                    count.fetch_add(1, Ordering::SeqCst);
                    let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(running, Ordering::SeqCst);
                    std::thread::sleep(delay);
                    let range = request
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("Range"))
                        .and_then(|h| parse_range(h.value.as_str()));
                    let response = answer(request.url(), range, target);
                    now.fetch_sub(1, Ordering::SeqCst);
                    let _ = request.respond(response);
                });
            }
        });
        TestServer {
            addr,
            requests,
            most_at_once,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn parse_range(value: &str) -> Option<(u64, u64)> {
    let (first, last) = value.strip_prefix("bytes=")?.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap()
}

/// Serves `SECRET` with ranges, as an internal service that would hand it to anyone asking.
fn serve_secret(
    _path: &str,
    range: Option<(u64, u64)>,
    _: SocketAddr,
) -> Response<std::io::Cursor<Vec<u8>>> {
    let (first, last) = range.unwrap_or((0, SECRET.len() as u64 - 1));
    let last = last.min(SECRET.len() as u64 - 1);
    let body = SECRET[first as usize..=last as usize].to_vec();
    let total = SECRET.len();
    Response::from_data(body)
        .with_status_code(StatusCode(206))
        .with_header(header(
            "Content-Range",
            &format!("bytes {first}-{last}/{total}"),
        ))
        .with_header(header("Accept-Ranges", "bytes"))
}

/// Redirects everything to the secret at `target`.
fn redirect(
    _: &str,
    _: Option<(u64, u64)>,
    target: SocketAddr,
) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_data(Vec::new())
        .with_status_code(StatusCode(302))
        .with_header(header("Location", &format!("http://{target}/secret.txt")))
}

/// A member of the swarm with a key of its own, after `Hello` and `Welcome`.
fn member(addr: SocketAddr, secret: &SwarmSecret) -> SecureStream {
    let key = StaticKey::from_private(test_seed());
    let mut session = SecureStream::connect(addr, &key, secret).unwrap();
    session
        .send(&hello(key.peer_id(), "127.0.0.1:9", &secret.tag().name()))
        .unwrap();
    let welcome = next(&mut session, "a Welcome", |m| {
        matches!(m, Message::Welcome { .. }).then_some(())
    });
    welcome.expect("the peer closed instead of welcoming a member");
    session
}

/// The first message `pick` takes within 15 s, skipping others; `None` if the connection
/// closed first.
fn next<T>(
    session: &mut SecureStream,
    what: &str,
    mut pick: impl FnMut(&Message) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        match session.read_message(Duration::from_millis(200)) {
            Ok(Some(message)) => {
                if let Some(found) = pick(&message) {
                    return Some(found);
                }
            }
            Ok(None) => {}
            Err(_) => return None,
        }
    }
    panic!("no {what} within 15 s");
}

fn offer(job_id: u64, url: &str, size: u64) -> Message {
    Message::OfferJob {
        job_id,
        url: url.into(),
        validator: String::new(),
        size,
        range_len: 16 * 1024,
    }
}

/// Offers a job for `url`, takes the helper's ask and assigns the whole secret's length;
/// returns what came back: the delivered bytes or the failure's reason. Ends the job, as a
/// fetcher does, so the helper has room for the next.
fn try_job(session: &mut SecureStream, job_id: u64, url: &str) -> Result<Vec<u8>, String> {
    let outcome = job_outcome(session, job_id, url);
    let end = Message::EndJob {
        job_id,
        reason: "done".into(),
    };
    session.send(&end).unwrap();
    outcome
}

fn job_outcome(session: &mut SecureStream, job_id: u64, url: &str) -> Result<Vec<u8>, String> {
    let size = SECRET.len() as u64;
    session.send(&offer(job_id, url, size)).unwrap();
    next(session, "a TakeWork", |m| {
        matches!(m, Message::TakeWork { job_id: j } if *j == job_id).then_some(())
    })
    .expect("the peer closed instead of asking for work");
    session
        .send(&Message::AssignRange {
            job_id,
            range_index: 0,
            offset: 0,
            length: size as u32,
        })
        .unwrap();
    next(session, "the range's outcome", |m| match m {
        Message::DeliverRange {
            job_id: j, data, ..
        } if *j == job_id => Some(Ok(data.to_vec())),
        Message::RangeFailed {
            job_id: j, reason, ..
        } if *j == job_id => Some(Err(reason.clone())),
        _ => None,
    })
    .expect("the peer closed instead of answering the range")
}

/// A swarm with a tracker and a `p2p share` peer started with `extra` arguments.
struct Swarm {
    dir: tempfile::TempDir,
    swarm: String,
    _tracker: Proc,
    seeder: Seeder,
    data: Vec<u8>,
}

fn swarm_with_sharer(extra: &[&str]) -> Swarm {
    let dir = tempfile::tempdir().unwrap();
    let swarm = new_swarm(dir.path());
    let src = dir.path().join("shared.bin");
    let data = write_file(&src, 2 * 1024 * 1024, 41);
    let (tracker, tracker_addr) = start_tracker(dir.path(), &swarm, None);
    let seeder = start_seeder("sharer", dir.path(), &swarm, &src, tracker_addr, extra);
    Swarm {
        dir,
        swarm,
        _tracker: tracker,
        seeder,
        data,
    }
}

#[test]
fn a_sharer_does_not_fetch_its_own_loopback_for_a_member_and_says_only_refused() {
    let secret_server = TestServer::start(Duration::ZERO, serve_secret, free_addr());
    let s = secret_server.addr;
    let port = s.port();
    let closed = free_addr();
    // Not HTTP: a port that greets with a banner, as an SSH or SMTP server does.
    let banner = TcpListener::bind("127.0.0.1:0").unwrap();
    let banner_addr = banner.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in banner.incoming().flatten() {
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n");
            let mut sink = [0u8; 1024];
            let _ = stream.read(&mut sink);
        }
    });
    let sw = swarm_with_sharer(&[]);
    let secret = read_secret(&sw.swarm);
    let mut session = member(sw.seeder.addr, &secret);
    let urls = [
        format!("http://127.0.0.1:{port}/secret.txt"),
        format!("http://localhost:{port}/secret.txt"),
        format!("http://127.1:{port}/secret.txt"),
        format!("http://0.0.0.0:{port}/secret.txt"),
        format!("http://[::ffff:127.0.0.1]:{port}/secret.txt"),
        format!("http://[::1]:{port}/secret.txt"),
        format!("https://127.0.0.1:{port}/secret.txt"),
        format!("http://{closed}/"),
        format!("http://{banner_addr}/"),
        "file:///etc/passwd".to_string(),
        "gopher://127.0.0.1:70/".to_string(),
    ];
    for (job_id, url) in urls.iter().enumerate() {
        let outcome = try_job(&mut session, 100 + job_id as u64, url);
        match outcome {
            Ok(bytes) => panic!("{url}: the sharer delivered {bytes:?}"),
            Err(reason) => assert_eq!(reason, REFUSED, "{url}"),
        }
    }
    assert_eq!(secret_server.requests(), 0, "the secret's server was asked");
    // The same member is still served: the refusals cost it nothing else.
    session.send(&Message::Ping { nonce: 5 }).unwrap();
    next(&mut session, "a Pong", |m| {
        matches!(m, Message::Pong { nonce: 5 }).then_some(())
    })
    .expect("the sharer closed the member's connection");
}

#[test]
fn a_redirect_into_the_sharers_loopback_is_refused() {
    let secret_server = TestServer::start(Duration::ZERO, serve_secret, free_addr());
    let redirector = TestServer::start(Duration::ZERO, redirect, secret_server.addr);
    // Origins the operator allowed: the redirector (what it points to is not allowed), a
    // server with nothing secret, and a closed port.
    let public_server = TestServer::start(Duration::ZERO, serve_secret, free_addr());
    let closed = free_addr();
    let allowed = [redirector.addr, public_server.addr, closed].map(|a| a.to_string());
    let sw = swarm_with_sharer(&[
        "--allow-origin",
        &allowed[0],
        "--allow-origin",
        &allowed[1],
        "--allow-origin",
        &allowed[2],
    ]);
    let secret = read_secret(&sw.swarm);
    let mut session = member(sw.seeder.addr, &secret);
    let url = format!("http://{}/go", redirector.addr);
    match try_job(&mut session, 1, &url) {
        Ok(bytes) => panic!("the sharer followed the redirect and delivered {bytes:?}"),
        Err(reason) => assert_eq!(reason, REFUSED),
    }
    assert!(
        redirector.requests() >= 1,
        "the allowed origin was not asked"
    );
    assert_eq!(secret_server.requests(), 0, "the redirect was followed");
    // An allowed origin is fetched for the member, and a failure to reach one is coarse.
    let direct = format!("http://{}/file", public_server.addr);
    assert_eq!(try_job(&mut session, 2, &direct).unwrap(), SECRET);
    let failed = try_job(&mut session, 3, &format!("http://{closed}/x"));
    assert_eq!(failed, Err(ORIGIN_ERROR.to_string()));
}

#[test]
fn a_flood_of_assignments_opens_no_more_origin_requests_than_the_slots() {
    // Each answer takes a while, so a helper that took every assignment would have them all
    // open at once.
    let origin = TestServer::start(Duration::from_millis(500), serve_secret, free_addr());
    let allowed = origin.addr.to_string();
    let sw = swarm_with_sharer(&["--allow-origin", &allowed]);
    let secret = read_secret(&sw.swarm);
    let mut session = member(sw.seeder.addr, &secret);
    let url = format!("http://{}/secret.txt", origin.addr);
    let job_id = 9;
    session
        .send(&offer(job_id, &url, SECRET.len() as u64))
        .unwrap();
    let mut asks = 0;
    next(&mut session, "a TakeWork", |m| {
        matches!(m, Message::TakeWork { .. }).then(|| asks += 1)
    })
    .expect("the peer closed instead of asking for work");
    let assign = Message::AssignRange {
        job_id,
        range_index: 0,
        offset: 0,
        length: SECRET.len() as u32,
    };
    let mut sent = 0;
    for _ in 0..2000 {
        if session.send(&assign).is_err() {
            break; // closed by the sharer: the rest of the flood goes nowhere
        }
        sent += 1;
    }
    // Whatever came back, the connection ends: an assignment nobody asked for is refused.
    let deadline = Instant::now() + Duration::from_secs(15);
    let closed = loop {
        match session.read_message(Duration::from_millis(200)) {
            Err(_) => break true,
            Ok(_) if Instant::now() > deadline => break false,
            Ok(_) => {}
        }
    };
    assert!(
        closed,
        "the sharer kept a connection that flooded it ({sent} sent)"
    );
    std::thread::sleep(Duration::from_secs(1));
    // One slot (the default --origin-connections 1), so `RANGES_PER_SLOT` asks: the flood
    // answers them, and no more requests than that reach the origin.
    let per_slot = u64::from(p2p_core::peer::RANGES_PER_SLOT);
    assert_eq!(
        origin.requests() as u64,
        per_slot,
        "{asks} ask(s), {sent} assignments sent"
    );
    assert_eq!(origin.most_at_once.load(Ordering::SeqCst) as u64, per_slot);

    // And the sharer still serves its file at once.
    let out = sw.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut getter = start_getter(
        "getter",
        sw.dir.path(),
        &sw.swarm,
        &sw.seeder.ticket,
        &out,
        &[],
    );
    let (path, _) = wait_complete(&mut getter);
    assert_file_eq(&path, &sw.data);
}
