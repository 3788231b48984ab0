//! The machines wired together in memory, with no sockets: a tiny driver carries each
//! machine's actions to the others as events, through the real wire encoding, on a virtual
//! clock.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use p2p_core::coop::{FetchSpec, RangeError};
use p2p_core::peer::{Peer, PeerAction, PeerConfig, PeerNotice, StoreOutcome};
use p2p_core::tracker::{Tracker, TrackerAction, TrackerConfig};
use p2p_core::{
    ChunkSet, ConnId, ContentId, FrameDecoder, Instant, Manifest, ManifestBuilder, PeerId,
};

const SWARM: &str = "test";
const TRACKER: &str = "tracker:1";
const CHUNK_SIZE: u32 = 16 * 1024;

enum Machine {
    Tracker(Box<Tracker>),
    Peer(Box<Peer>),
}

/// A node: its machine, its disk of verified chunks, and what it told the user.
struct Node {
    machine: Machine,
    disk: BTreeMap<(ContentId, u32), Bytes>,
    notices: Vec<PeerNotice>,
    /// Whether this node serves corrupted bytes.
    corrupt: bool,
    /// The file of a cooperative fetch, as written.
    fetched: Vec<u8>,
}

impl Node {
    fn new(machine: Machine) -> Node {
        Node {
            machine,
            disk: BTreeMap::new(),
            notices: Vec::new(),
            corrupt: false,
            fetched: Vec::new(),
        }
    }
}

/// Carries frames between nodes; every delivery and timer runs at the virtual `now`.
struct World {
    now: Instant,
    nodes: BTreeMap<String, Node>,
    links: BTreeMap<(String, ConnId), (String, ConnId)>,
    decoders: BTreeMap<(String, ConnId), FrameDecoder>,
    /// Frames on the wire, by delivery time and send order.
    in_flight: BTreeMap<(Instant, u64), (String, ConnId, Bytes)>,
    sent_frames: u64,
    /// When each node's uplink is free again: frames leave one after another.
    upload_free_at: BTreeMap<String, Instant>,
    /// An HTTP origin: url → (validator, bytes), and what it has served.
    origin: BTreeMap<String, (String, Bytes)>,
    origin_bytes_served: u64,
    /// Origin responses in flight: (due, seq) → (node, token, result).
    origin_replies: BTreeMap<(Instant, u64), OriginReply>,
}

/// An origin response on its way: to which node, for which token, with what.
type OriginReply = (String, u64, Result<Bytes, RangeError>);

/// How fast the origin sends one response: slow, so that helpers' ranges add up.
const ORIGIN_BYTES_PER_S: u64 = 1024 * 1024;

/// Every node's uplink, in bytes per second, and the one-way latency of every link: slow
/// enough that a seeder cannot serve everyone at once, so sharing between getters matters.
const UPLOAD_BYTES_PER_S: u64 = 8 * 1024 * 1024;
const LATENCY: Duration = Duration::from_millis(2);

impl World {
    fn new() -> World {
        let mut world = World {
            now: Instant::ZERO,
            nodes: BTreeMap::new(),
            links: BTreeMap::new(),
            decoders: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            sent_frames: 0,
            upload_free_at: BTreeMap::new(),
            origin: BTreeMap::new(),
            origin_bytes_served: 0,
            origin_replies: BTreeMap::new(),
        };
        world.restart_tracker();
        world
    }

    fn add_peer(&mut self, addr: &str, id: u64) {
        let config = PeerConfig {
            peer_id: PeerId(id),
            swarm: SWARM.into(),
            listen_addr: addr.into(),
            trackers: vec![TRACKER.into()],
            rng_seed: id,
            ..PeerConfig::default()
        };
        let peer = Peer::new(config, self.now);
        self.nodes
            .insert(addr.into(), Node::new(Machine::Peer(Box::new(peer))));
    }

    fn peer(&mut self, addr: &str) -> &mut Peer {
        match &mut self.nodes.get_mut(addr).unwrap().machine {
            Machine::Peer(p) => p,
            Machine::Tracker(_) => panic!("{addr} is the tracker"),
        }
    }

    fn tracker(&self) -> &Tracker {
        match &self.nodes[TRACKER].machine {
            Machine::Tracker(t) => t,
            Machine::Peer(_) => panic!("not a tracker"),
        }
    }

    /// Puts a whole file on a node's disk and publishes it.
    fn seed(&mut self, addr: &str, manifest: &Manifest, data: &[u8]) {
        let content_id = manifest.content_id();
        let node = self.nodes.get_mut(addr).unwrap();
        for (index, chunk) in data.chunks(CHUNK_SIZE as usize).enumerate() {
            node.disk
                .insert((content_id, index as u32), Bytes::copy_from_slice(chunk));
        }
        let now = self.now;
        self.peer(addr).publish(now, manifest.clone());
        self.drain(addr);
    }

    /// A node vanishes: every connection to it breaks.
    fn crash(&mut self, addr: &str) {
        self.nodes.remove(addr);
        let broken: Vec<_> = self
            .links
            .iter()
            .filter(|((from, _), _)| from == addr)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (from, to) in broken {
            self.links.remove(&from);
            self.links.remove(&to);
            self.closed(&to.0, to.1);
        }
        self.in_flight.retain(|_, (to, _, _)| to != addr);
        self.origin_replies.retain(|_, (to, _, _)| to != addr);
    }

    fn closed(&mut self, addr: &str, conn: ConnId) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(addr) else {
            return;
        };
        match &mut node.machine {
            Machine::Tracker(t) => t.handle_closed(now, conn),
            Machine::Peer(p) => p.handle_closed(now, conn),
        }
        self.drain(addr);
    }

    fn send(&mut self, from: &str, conn: ConnId, frame: Bytes) {
        if let Some((to, to_conn)) = self.links.get(&(from.to_string(), conn)) {
            let free_at = self.upload_free_at.entry(from.to_string()).or_default();
            let start = (*free_at).max(self.now);
            let transmit =
                Duration::from_nanos(frame.len() as u64 * 1_000_000_000 / UPLOAD_BYTES_PER_S);
            *free_at = start + transmit;
            let deliver_at = start + transmit + LATENCY;
            self.sent_frames += 1;
            self.in_flight.insert(
                (deliver_at, self.sent_frames),
                (to.clone(), *to_conn, frame),
            );
        }
    }

    fn close(&mut self, from: &str, conn: ConnId) {
        if let Some(other) = self.links.remove(&(from.to_string(), conn)) {
            self.links.remove(&other);
            self.closed(&other.0, other.1);
        }
    }

    /// Carries out every action a node has queued.
    fn drain(&mut self, addr: &str) {
        loop {
            let now = self.now;
            let Some(node) = self.nodes.get_mut(addr) else {
                return;
            };
            match &mut node.machine {
                Machine::Tracker(t) => match t.poll_action() {
                    None => return,
                    Some(TrackerAction::Send { conn, message }) => {
                        self.send(addr, conn, message.to_frame())
                    }
                    Some(TrackerAction::Close { conn }) => self.close(addr, conn),
                },
                Machine::Peer(p) => {
                    let Some(action) = p.poll_action() else {
                        return;
                    };
                    self.peer_action(addr, now, action);
                }
            }
        }
    }

    fn peer_action(&mut self, addr: &str, now: Instant, action: PeerAction) {
        let node = self.nodes.get_mut(addr).unwrap();
        let Machine::Peer(peer) = &mut node.machine else {
            unreachable!()
        };
        match action {
            PeerAction::Connect { conn, addr: to } => {
                let accepted = match self.nodes.get_mut(&to).map(|n| &mut n.machine) {
                    Some(Machine::Tracker(t)) => Some(t.accept(now)),
                    Some(Machine::Peer(p)) => p.accept(now),
                    None => None,
                };
                match accepted {
                    Some(remote) => {
                        self.links
                            .insert((addr.to_string(), conn), (to.clone(), remote));
                        self.links
                            .insert((to.clone(), remote), (addr.to_string(), conn));
                        self.peer(addr).handle_connected(now, conn);
                    }
                    None => self.peer(addr).handle_closed(now, conn),
                }
            }
            PeerAction::Send { conn, message } => {
                let is_piece = matches!(message, p2p_core::Message::Piece { .. });
                let mut frame = message.to_frame();
                if is_piece && node.corrupt {
                    let mut bytes = BytesMut::from(&frame[..]);
                    let last = bytes.len() - 1;
                    bytes[last] ^= 0xff;
                    frame = bytes.freeze();
                }
                self.send(addr, conn, frame);
                if is_piece {
                    self.peer(addr).handle_sent(now, conn);
                }
            }
            PeerAction::Close { conn } => self.close(addr, conn),
            PeerAction::ReadChunk {
                token,
                content_id,
                chunk_index,
                offset,
                length,
            } => {
                let result = node
                    .disk
                    .get(&(content_id, chunk_index))
                    .map(|chunk| chunk.slice(offset as usize..(offset + length) as usize))
                    .ok_or_else(|| "not on disk".to_string());
                peer.handle_read(now, token, result);
            }
            PeerAction::StoreChunk {
                token,
                content_id,
                chunk_index,
                check,
                data,
            } => {
                let outcome = if check.matches(&data) {
                    node.disk.insert((content_id, chunk_index), data);
                    StoreOutcome::Stored
                } else {
                    StoreOutcome::HashMismatch
                };
                peer.handle_stored(now, token, outcome);
            }
            PeerAction::PrepareDownload {
                content_id,
                manifest,
            } => {
                let mut have = ChunkSet::new(manifest.chunk_count());
                for (cid, index) in node.disk.keys() {
                    if *cid == content_id {
                        have.insert(*index);
                    }
                }
                peer.download_prepared(now, content_id, Ok(have));
            }
            PeerAction::FetchRange {
                token,
                url,
                validator,
                offset,
                length,
            } => {
                let result = match self.origin.get(&url) {
                    Some((current, _)) if *current != validator => Err(RangeError {
                        fatal: true,
                        reason: "the origin's validator changed".into(),
                    }),
                    Some((_, bytes)) => {
                        let end = (offset + u64::from(length)).min(bytes.len() as u64);
                        self.origin_bytes_served += end - offset;
                        Ok(bytes.slice(offset as usize..end as usize))
                    }
                    None => Err(RangeError {
                        fatal: true,
                        reason: "404".into(),
                    }),
                };
                let due = now
                    + Duration::from_nanos(u64::from(length) * 1_000_000_000 / ORIGIN_BYTES_PER_S);
                self.sent_frames += 1;
                self.origin_replies
                    .insert((due, self.sent_frames), (addr.to_string(), token, result));
            }
            PeerAction::WriteRange {
                token,
                offset,
                data,
                ..
            } => {
                let end = offset as usize + data.len();
                if node.fetched.len() < end {
                    node.fetched.resize(end, 0);
                }
                node.fetched[offset as usize..end].copy_from_slice(&data);
                peer.handle_range_written(now, token, Ok(()));
            }
            PeerAction::Notify(notice) => node.notices.push(notice),
        }
    }

    /// Delivers the next frame or fires the next timer, whichever is due first. One step.
    fn step(&mut self) {
        let next_timer = self
            .nodes
            .values()
            .filter_map(|n| match &n.machine {
                Machine::Tracker(t) => t.poll_timeout(),
                Machine::Peer(p) => p.poll_timeout(),
            })
            .min();
        if let Some(&(due, seq)) = self.origin_replies.keys().next()
            && next_timer.is_none_or(|t| due <= t)
            && self
                .in_flight
                .keys()
                .next()
                .is_none_or(|(at, _)| due <= *at)
        {
            let (addr, token, result) = self.origin_replies.remove(&(due, seq)).unwrap();
            self.now = self.now.max(due);
            let now = self.now;
            if self.nodes.contains_key(&addr) {
                self.peer(&addr).handle_range_fetched(now, token, result);
                self.drain(&addr);
            }
            return;
        }
        let next_frame = self.in_flight.keys().next().map(|(at, _)| *at);
        let frame_first = match (next_frame, next_timer) {
            (Some(frame), Some(timer)) => frame <= timer,
            (frame, _) => frame.is_some(),
        };
        if frame_first {
            let ((at, _), (to, conn, frame)) = self.in_flight.pop_first().unwrap();
            self.now = self.now.max(at);
            let now = self.now;
            let key = (to.clone(), conn);
            let decoder = self.decoders.entry(key).or_default();
            decoder.feed(&frame);
            let mut messages = Vec::new();
            while let Ok(Some(message)) = decoder.next_message() {
                messages.push(message);
            }
            for message in messages {
                let Some(node) = self.nodes.get_mut(&to) else {
                    return;
                };
                match &mut node.machine {
                    Machine::Tracker(t) => t.handle_message(now, conn, message),
                    Machine::Peer(p) => p.handle_message(now, conn, message),
                }
                self.drain(&to);
            }
            return;
        }
        let Some(next) = next_timer else {
            return;
        };
        self.now = self.now.max(next);
        let now = self.now;
        let addrs: Vec<String> = self.nodes.keys().cloned().collect();
        for addr in addrs {
            let node = self.nodes.get_mut(&addr).unwrap();
            match &mut node.machine {
                Machine::Tracker(t) => {
                    if t.poll_timeout().is_some_and(|at| at <= now) {
                        t.handle_timeout(now)
                    }
                }
                Machine::Peer(p) => {
                    if p.poll_timeout().is_some_and(|at| at <= now) {
                        p.handle_timeout(now)
                    }
                }
            }
            self.drain(&addr);
        }
    }

    fn disk_file(&self, addr: &str, content_id: ContentId, chunks: u32) -> Vec<u8> {
        let node = &self.nodes[addr];
        (0..chunks)
            .flat_map(|i| node.disk[&(content_id, i)].to_vec())
            .collect()
    }
}

fn file_bytes(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2654435761) >> 7) as u8 ^ salt)
        .collect()
}

fn manifest_of(name: &str, data: &[u8]) -> Manifest {
    let mut builder = ManifestBuilder::new(name, CHUNK_SIZE).unwrap();
    builder.update(data);
    builder.finish().unwrap()
}

fn completed(world: &World, addr: &str, content_id: ContentId) -> bool {
    world.nodes[addr]
        .notices
        .contains(&PeerNotice::DownloadComplete { content_id })
}

#[test]
fn download_survives_a_seeder_vanishing_halfway() {
    let data = file_bytes(40 * CHUNK_SIZE as usize - 123, 7);
    let manifest = manifest_of("forty.bin", &data);
    let content_id = manifest.content_id();
    assert_eq!(manifest.chunk_count(), 40);

    let mut world = World::new();
    world.add_peer("seeder1:1", 1);
    world.add_peer("seeder2:1", 2);
    world.add_peer("downloader:1", 3);
    world.seed("seeder1:1", &manifest, &data);
    world.seed("seeder2:1", &manifest, &data);
    let now = world.now;
    world.peer("downloader:1").download(now, content_id, None);
    world.drain("downloader:1");

    let mut crashed = false;
    for _ in 0..200_000 {
        world.step();
        let have = world
            .peer("downloader:1")
            .held_chunks(content_id)
            .map_or(0, |c| c.count());
        if !crashed && have >= 20 {
            world.crash("seeder1:1");
            crashed = true;
        }
        if completed(&world, "downloader:1", content_id) {
            break;
        }
    }
    assert!(crashed, "the download never reached halfway");
    assert!(
        completed(&world, "downloader:1", content_id),
        "download did not complete; notices: {:?}",
        world.nodes["downloader:1"].notices
    );
    assert_eq!(world.disk_file("downloader:1", content_id, 40), data);
    assert!(
        world.peer("seeder2:1").uploaded_bytes() > 0,
        "the second seeder served nothing"
    );

    // Let haves reach the tracker, then read its state: seeder2 and the downloader (now a
    // full source itself) are listed; seeder1 is gone.
    for _ in 0..1000 {
        world.step();
    }
    let now = world.now;
    let peers = world.tracker().peers(now, SWARM);
    let addrs: Vec<&str> = peers.iter().map(|p| p.listen_addr.as_str()).collect();
    assert!(
        addrs.contains(&"seeder2:1") && addrs.contains(&"downloader:1"),
        "{addrs:?}"
    );
    assert!(!addrs.contains(&"seeder1:1"), "{addrs:?}");
    let downloader = peers
        .iter()
        .find(|p| p.listen_addr == "downloader:1")
        .unwrap();
    assert_eq!(downloader.chunks_held, 40);
    let files = world.tracker().files(SWARM);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].full_sources, 2);
    assert!(files[0].complete);
}

#[test]
fn corrupt_seeder_is_banned_and_file_is_exact() {
    let data = file_bytes(12 * CHUNK_SIZE as usize, 3);
    let manifest = manifest_of("twelve.bin", &data);
    let content_id = manifest.content_id();

    let mut world = World::new();
    world.add_peer("liar:1", 1);
    world.add_peer("honest:1", 2);
    world.add_peer("downloader:1", 3);
    world.seed("liar:1", &manifest, &data);
    world.nodes.get_mut("liar:1").unwrap().corrupt = true;
    world.seed("honest:1", &manifest, &data);
    let now = world.now;
    world.peer("downloader:1").download(now, content_id, None);
    world.drain("downloader:1");
    for _ in 0..200_000 {
        world.step();
        if completed(&world, "downloader:1", content_id) {
            break;
        }
    }
    assert!(completed(&world, "downloader:1", content_id));
    assert_eq!(world.disk_file("downloader:1", content_id, 12), data);
    let banned = world.nodes["downloader:1"]
        .notices
        .iter()
        .any(|n| matches!(n, PeerNotice::PeerBanned { peer_id, .. } if *peer_id == PeerId(1)));
    assert!(banned, "the corrupt seeder was not banned");
}

#[test]
fn download_fails_with_reason_when_no_source_exists() {
    let data = file_bytes(4 * CHUNK_SIZE as usize, 1);
    let manifest = manifest_of("lost.bin", &data);
    let content_id = manifest.content_id();
    let mut world = World::new();
    world.add_peer("downloader:1", 3);
    let now = world.now;
    world
        .peer("downloader:1")
        .download(now, content_id, Some(manifest));
    world.drain("downloader:1");
    for _ in 0..100_000 {
        world.step();
        if world.now > Instant::from_nanos(0) + Duration::from_secs(600) {
            break;
        }
    }
    let failure = world.nodes["downloader:1"]
        .notices
        .iter()
        .find_map(|n| match n {
            PeerNotice::DownloadFailed {
                reason,
                missing_chunks,
                ..
            } => Some((reason.clone(), missing_chunks.clone())),
            _ => None,
        });
    let (reason, missing) = failure.expect("the download should have failed");
    assert_eq!(missing, vec![0, 1, 2, 3]);
    assert!(reason.contains("no reachable peer holds 4"), "{reason}");
}

impl World {
    /// The tracker process dies: its connections break and its state is gone.
    fn crash_tracker(&mut self) {
        self.crash(TRACKER);
    }

    /// A new tracker, with empty state, starts on the same address.
    fn restart_tracker(&mut self) {
        let tracker = Tracker::new(TrackerConfig {
            peer_timeout: Duration::from_secs(5),
            ..TrackerConfig::default()
        });
        self.nodes.insert(
            TRACKER.into(),
            Node::new(Machine::Tracker(Box::new(tracker))),
        );
    }

    fn run_until(&mut self, steps: usize, mut done: impl FnMut(&mut World) -> bool) -> bool {
        for _ in 0..steps {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }
}

#[test]
fn getters_share_with_each_other() {
    let data = file_bytes(64 * CHUNK_SIZE as usize, 9);
    let manifest = manifest_of("shared.bin", &data);
    let content_id = manifest.content_id();
    let mut world = World::new();
    world.add_peer("seeder:1", 1);
    world.seed("seeder:1", &manifest, &data);
    let getters: Vec<String> = (0..5).map(|i| format!("getter{i}:1")).collect();
    for (i, getter) in getters.iter().enumerate() {
        world.add_peer(getter, 10 + i as u64);
        let now = world.now;
        world.peer(getter).download(now, content_id, None);
        world.drain(getter);
    }
    let all_done = world.run_until(500_000, |w| {
        getters.iter().all(|g| completed(w, g, content_id))
    });
    assert!(all_done, "not every getter completed");
    let mut getter_upload = 0;
    for getter in &getters {
        assert_eq!(world.disk_file(getter, content_id, 64), data);
        getter_upload += world.peer(getter).uploaded_bytes();
    }
    assert!(getter_upload > 0, "getters never served each other");
}

#[test]
fn download_survives_tracker_outage_and_tracker_recovers() {
    let data = file_bytes(48 * CHUNK_SIZE as usize, 5);
    let manifest = manifest_of("outage.bin", &data);
    let content_id = manifest.content_id();
    let mut world = World::new();
    world.add_peer("seeder:1", 1);
    world.add_peer("getter:1", 2);
    world.seed("seeder:1", &manifest, &data);
    let now = world.now;
    world.peer("getter:1").download(now, content_id, None);
    world.drain("getter:1");

    let started = world.run_until(100_000, |w| {
        w.peer("getter:1")
            .held_chunks(content_id)
            .is_some_and(|c| c.count() >= 4)
    });
    assert!(started);
    world.crash_tracker();
    let outage_began = world.now;
    assert!(world.run_until(500_000, |w| completed(w, "getter:1", content_id)));
    assert_eq!(world.disk_file("getter:1", content_id, 48), data);
    assert!(!world.peer("getter:1").is_tracker_ready());

    // Keep the tracker down a while, then start an empty one on the same address: the
    // peers find it (with backoff) and re-announce, and it is whole again.
    world.run_until(100_000, |w| w.now >= outage_began + Duration::from_secs(20));
    world.restart_tracker();
    let restarted_at = world.now;
    let recovered = world.run_until(100_000, |w| {
        let files = w.tracker().files(SWARM);
        files.len() == 1 && files[0].full_sources == 2
    });
    assert!(recovered, "the restarted tracker never relearned the swarm");
    assert!(
        world.now - restarted_at <= Duration::from_secs(6),
        "recovery took {:?}",
        world.now - restarted_at
    );
    assert!(world.tracker().is_peer_known(PeerId(1)));
    assert!(world.tracker().is_peer_known(PeerId(2)));
}

fn fetch_notice(world: &World, addr: &str) -> Option<Result<(), String>> {
    world.nodes[addr].notices.iter().find_map(|n| match n {
        PeerNotice::FetchComplete { .. } => Some(Ok(())),
        PeerNotice::FetchFailed { reason, .. } => Some(Err(reason.clone())),
        _ => None,
    })
}

/// A fetcher and three helpers, all in the swarm; the origin serves 40 ranges slowly.
fn coop_world(size: usize) -> (World, Vec<u8>, FetchSpec) {
    let data = file_bytes(size, 11);
    let mut world = World::new();
    let url = "http://origin.test/big.iso".to_string();
    world
        .origin
        .insert(url.clone(), ("\"v1\"".into(), Bytes::from(data.clone())));
    for (i, addr) in ["fetcher:1", "helper1:1", "helper2:1", "helper3:1"]
        .iter()
        .enumerate()
    {
        world.add_peer(addr, 100 + i as u64);
    }
    // Let everyone join the tracker first.
    world.run_until(10_000, |w| w.tracker().peer_count() == 4);
    let spec = FetchSpec {
        url,
        validator: "\"v1\"".into(),
        size: data.len() as u64,
        range_len: 16 * 1024,
    };
    (world, data, spec)
}

#[test]
fn cooperative_fetch_adds_up_helpers_and_is_exact() {
    let (mut world, data, spec) = coop_world(40 * 16 * 1024 - 1000);
    let now = world.now;
    world.peer("fetcher:1").fetch(now, spec);
    world.drain("fetcher:1");
    let finished = world.run_until(200_000, |w| fetch_notice(w, "fetcher:1").is_some());
    assert!(
        finished,
        "at {:?}: {:?}",
        world.now, &world.nodes["fetcher:1"].notices
    );
    assert_eq!(fetch_notice(&world, "fetcher:1"), Some(Ok(())));
    assert_eq!(world.nodes["fetcher:1"].fetched, data);
    // Every participant fetched at least one range, and the origin sent the file once.
    let by: Vec<String> = world.nodes["fetcher:1"]
        .notices
        .iter()
        .filter_map(|n| match n {
            PeerNotice::RangeFetched { by, .. } => Some(by.clone()),
            _ => None,
        })
        .collect();
    for who in ["local", "helper1:1", "helper2:1", "helper3:1"] {
        assert!(by.iter().any(|b| b == who), "{who} fetched nothing: {by:?}");
    }
    assert_eq!(world.origin_bytes_served, data.len() as u64);
}

#[test]
fn cooperative_fetch_survives_a_helper_crash() {
    let (mut world, data, spec) = coop_world(40 * 16 * 1024);
    let now = world.now;
    world.peer("fetcher:1").fetch(now, spec);
    world.drain("fetcher:1");
    world.run_until(200_000, |w| {
        w.nodes["fetcher:1"]
            .notices
            .iter()
            .filter(|n| matches!(n, PeerNotice::RangeFetched { .. }))
            .count()
            >= 8
    });
    world.crash("helper2:1");
    assert!(world.run_until(400_000, |w| fetch_notice(w, "fetcher:1").is_some()));
    assert_eq!(fetch_notice(&world, "fetcher:1"), Some(Ok(())));
    assert_eq!(world.nodes["fetcher:1"].fetched, data);
}

#[test]
fn cooperative_fetch_aborts_when_the_origin_changes() {
    let (mut world, _data, spec) = coop_world(40 * 16 * 1024);
    let url = spec.url.clone();
    let now = world.now;
    world.peer("fetcher:1").fetch(now, spec);
    world.drain("fetcher:1");
    world.run_until(200_000, |w| {
        w.nodes["fetcher:1"]
            .notices
            .iter()
            .any(|n| matches!(n, PeerNotice::RangeFetched { .. }))
    });
    world.origin.insert(
        url,
        ("\"v2\"".into(), Bytes::from(file_bytes(40 * 16 * 1024, 12))),
    );
    assert!(world.run_until(200_000, |w| fetch_notice(w, "fetcher:1").is_some()));
    let result = fetch_notice(&world, "fetcher:1").unwrap();
    assert!(
        result
            .as_ref()
            .is_err_and(|r| r.contains("validator changed")),
        "{result:?}"
    );
}
