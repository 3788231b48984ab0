//! [`Swarm`]: tracker and peer machines in memory, on a virtual clock. Every input to a
//! machine is followed by draining its actions (carried out at once: sends go on the
//! [`MemoryNet`], disk work on the node's [`MemoryDisk`], range fetches to the
//! [`MemoryOrigin`]) and by re-arming its timer from `poll_timeout`, as a real driver must.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

use super::{MemoryDisk, MemoryNet, MemoryOrigin};
use crate::chunkset::ChunkSet;
use crate::ids::{ConnId, ContentId};
use crate::manifest::Manifest;
use crate::peer::RangeError;
use crate::peer::{Peer, PeerAction, PeerNotice, StoreOutcome};
use crate::secure::Remote;
use crate::time::Instant;
use crate::tracker::{Tracker, TrackerAction};
use crate::wire::Message;

/// Most steps [`Swarm::drive`] takes before deciding the swarm never goes quiet.
pub const DRIVE_STEPS_MAX: usize = 1_000_000;

enum Machine {
    Tracker(Box<Tracker>),
    Peer(Box<Peer>),
}

impl Machine {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Machine::Tracker(t) => t.poll_timeout(),
            Machine::Peer(p) => p.poll_timeout(),
        }
    }
}

/// A node: its machine, its timer, its disk, and what it told the user.
struct Node {
    machine: Machine,
    /// When the machine wants `handle_timeout`, as of its last drain.
    timer: Option<Instant>,
    disk: MemoryDisk,
    notices: Vec<PeerNotice>,
    /// Whether this node flips a byte of every piece it serves.
    corrupt: bool,
    /// The file of a cooperative fetch, as written.
    fetched: Vec<u8>,
}

/// An origin response on its way: to which node, for which token, with what.
type OriginReply = (String, u64, Result<Bytes, RangeError>);

/// What carrying out a peer action gave back to the peer: delivered as an input once the
/// drain that produced it is over.
enum ActionResult {
    Connected(ConnId, Remote),
    Refused(ConnId),
    /// A piece left: the peer may serve the next block.
    Sent(ConnId),
    Read(u64, Result<Bytes, String>),
    Stored(u64, StoreOutcome),
    Prepared(ContentId, ChunkSet),
    RangeWritten(u64),
}

impl ActionResult {
    fn deliver(self, peer: &mut Peer, now: Instant) {
        match self {
            ActionResult::Connected(conn, remote) => peer.handle_connected(now, conn, remote),
            ActionResult::Refused(conn) => peer.handle_closed(now, conn),
            ActionResult::Sent(conn) => peer.handle_sent(now, conn),
            ActionResult::Read(token, result) => peer.handle_read(now, token, result),
            ActionResult::Stored(token, outcome) => peer.handle_stored(now, token, outcome),
            ActionResult::Prepared(content_id, have) => {
                peer.download_prepared(now, content_id, Ok(have.into()))
            }
            ActionResult::RangeWritten(token) => peer.handle_range_written(now, token, Ok(())),
        }
    }
}

/// Machines by address, the network between them and an HTTP origin.
#[derive(Default)]
pub struct Swarm {
    now: Instant,
    nodes: BTreeMap<String, Node>,
    net: MemoryNet,
    pub origin: MemoryOrigin,
    /// Origin responses in flight, by arrival time and request order.
    origin_replies: BTreeMap<(Instant, u64), OriginReply>,
    origin_requests: u64,
    /// Nodes whose origin responses take this many times longer (a slow or stalled link).
    origin_slowdown: BTreeMap<String, u32>,
    /// Origin fetches each node cancelled (`CancelFetch` of a fetch still running).
    fetches_cancelled: BTreeMap<String, u32>,
}

impl Swarm {
    pub fn new() -> Swarm {
        Swarm::default()
    }

    /// The virtual clock.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Starts a tracker at `addr` (replacing a crashed one: a restart with empty state).
    pub fn add_tracker(&mut self, addr: &str, tracker: Tracker) {
        self.add_node(addr, Machine::Tracker(Box::new(tracker)));
    }

    /// Starts a peer at `addr`; it listens there.
    pub fn add_peer(&mut self, addr: &str, peer: Peer) {
        self.add_node(addr, Machine::Peer(Box::new(peer)));
    }

    fn add_node(&mut self, addr: &str, machine: Machine) {
        let timer = machine.poll_timeout();
        let node = Node {
            machine,
            timer,
            disk: MemoryDisk::default(),
            notices: Vec::new(),
            corrupt: false,
            fetched: Vec::new(),
        };
        self.nodes.insert(addr.into(), node);
    }

    /// Whether a node runs at `addr`.
    pub fn is_up(&self, addr: &str) -> bool {
        self.nodes.contains_key(addr)
    }

    /// The peer at `addr`, to read. Panics when there is none: the test's own mistake.
    pub fn peer(&self, addr: &str) -> &Peer {
        match &self.nodes[addr].machine {
            Machine::Peer(p) => p,
            Machine::Tracker(_) => panic!("{addr} is a tracker"),
        }
    }

    /// The tracker at `addr`, to read.
    pub fn tracker(&self, addr: &str) -> &Tracker {
        match &self.nodes[addr].machine {
            Machine::Tracker(t) => t,
            Machine::Peer(_) => panic!("{addr} is a peer"),
        }
    }

    fn peer_mut(&mut self, addr: &str) -> &mut Peer {
        let node = self
            .nodes
            .get_mut(addr)
            .expect("no node at that address: the test's mistake");
        match &mut node.machine {
            Machine::Peer(p) => p,
            Machine::Tracker(_) => panic!("{addr} is a tracker"),
        }
    }

    /// Gives the peer at `addr` an input (`input(peer, now)`), then drains it: the only way
    /// in for a test, so the drain rule cannot be forgotten.
    pub fn input<T>(&mut self, addr: &str, input: impl FnOnce(&mut Peer, Instant) -> T) -> T {
        let now = self.now;
        let result = input(self.peer_mut(addr), now);
        self.drain(addr);
        result
    }

    /// What the peer at `addr` told the user, in order.
    pub fn notices(&self, addr: &str) -> &[PeerNotice] {
        &self.nodes[addr].notices
    }

    /// The node's disk.
    pub fn disk(&self, addr: &str) -> &MemoryDisk {
        &self.nodes[addr].disk
    }

    /// The file the node's cooperative fetch wrote.
    pub fn fetched(&self, addr: &str) -> &[u8] {
        &self.nodes[addr].fetched
    }

    /// From now on the node at `addr` flips the last byte of every piece it serves.
    pub fn corrupt_pieces(&mut self, addr: &str) {
        self.nodes
            .get_mut(addr)
            .expect("no node at that address: the test's mistake")
            .corrupt = true;
    }

    /// Puts a whole file on the peer's disk and publishes it.
    pub fn seed(&mut self, addr: &str, manifest: &Manifest, data: &[u8]) {
        self.nodes
            .get_mut(addr)
            .expect("no node at that address: the test's mistake")
            .disk
            .put_file(manifest, data);
        self.input(addr, |peer, now| peer.publish(now, manifest.clone()));
    }

    /// From now on, origin responses to `addr` take `factor` times as long (its link to the
    /// origin is slow; a large factor stalls it).
    pub fn slow_origin_for(&mut self, addr: &str, factor: u32) {
        self.origin_slowdown.insert(addr.to_string(), factor);
    }

    /// Origin fetches the node at `addr` cancelled while they were running.
    pub fn fetches_cancelled(&self, addr: &str) -> u32 {
        self.fetches_cancelled.get(addr).copied().unwrap_or(0)
    }

    /// A node vanishes: every connection to it breaks, and what was on its way to it is lost.
    pub fn crash(&mut self, addr: &str) {
        self.nodes.remove(addr);
        for (end, other) in self.net.links_of(addr) {
            self.net.unlink(&end);
            self.closed(&other.0, other.1);
        }
        self.net.drop_frames_to(addr);
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

    fn close(&mut self, addr: &str, conn: ConnId) {
        if let Some(other) = self.net.unlink(&(addr.to_string(), conn)) {
            self.closed(&other.0, other.1);
        }
    }

    /// Carries out every action the node at `addr` has queued, then feeds it what those
    /// actions gave (a connection opened, a block read, a chunk stored), and so on until it
    /// queues nothing more; then re-arms its timer. The machine is never given an input
    /// while it is being drained: results wait for the end of the drain, as the crate's
    /// contract asks of every driver.
    fn drain(&mut self, addr: &str) {
        loop {
            let mut results = Vec::new();
            loop {
                let now = self.now;
                let Some(node) = self.nodes.get_mut(addr) else {
                    return;
                };
                match &mut node.machine {
                    Machine::Tracker(t) => match t.poll_action() {
                        None => break,
                        Some(TrackerAction::Send { conn, message }) => {
                            self.net
                                .send(now, &(addr.to_string(), conn), message.to_frame())
                        }
                        Some(TrackerAction::Close { conn }) => self.close(addr, conn),
                    },
                    Machine::Peer(p) => {
                        let Some(action) = p.poll_action() else {
                            break;
                        };
                        if let Some(result) = self.peer_action(addr, now, action) {
                            results.push(result);
                        }
                    }
                }
            }
            if results.is_empty() {
                break;
            }
            let now = self.now;
            let peer = self.peer_mut(addr);
            for result in results {
                result.deliver(peer, now);
            }
        }
        self.rearm(addr);
    }

    /// Reads the node's next wakeup after an input.
    fn rearm(&mut self, addr: &str) {
        if let Some(node) = self.nodes.get_mut(addr) {
            node.timer = node.machine.poll_timeout();
        }
    }

    /// Carries out one action of the peer at `addr`; what it gave back to the peer is
    /// returned, to be delivered once the drain is over.
    fn peer_action(
        &mut self,
        addr: &str,
        now: Instant,
        action: PeerAction,
    ) -> Option<ActionResult> {
        // Unwrap: `drain` found this node an instant ago.
        let node = self.nodes.get_mut(addr).unwrap();
        match action {
            PeerAction::Connect { conn, addr: to } => Some(self.connect(addr, now, conn, &to)),
            PeerAction::Send { conn, message } => {
                let is_piece = matches!(message, Message::Piece { .. });
                let mut frame = message.to_frame();
                if is_piece && node.corrupt {
                    let mut bytes = BytesMut::from(&frame[..]);
                    let last = bytes.len() - 1;
                    bytes[last] ^= 0xff;
                    frame = bytes.freeze();
                }
                self.net.send(now, &(addr.to_string(), conn), frame);
                is_piece.then_some(ActionResult::Sent(conn))
            }
            PeerAction::Close { conn } => {
                self.close(addr, conn);
                None
            }
            PeerAction::ReadChunk {
                token,
                content_id,
                chunk_index,
                offset,
                length,
            } => {
                let result = node.disk.read(content_id, chunk_index, offset, length);
                Some(ActionResult::Read(token, result))
            }
            PeerAction::StoreChunk {
                token,
                content_id,
                chunk_index,
                check,
                data,
            } => {
                let outcome = if check.matches(&data) {
                    node.disk.put_chunk(content_id, chunk_index, data);
                    StoreOutcome::Stored
                } else {
                    StoreOutcome::HashMismatch
                };
                Some(ActionResult::Stored(token, outcome))
            }
            PeerAction::PrepareDownload {
                content_id,
                manifest,
            } => {
                let have = node.disk.held(content_id, manifest.chunk_count());
                Some(ActionResult::Prepared(content_id, have))
            }
            PeerAction::FetchRange {
                token,
                url,
                validator,
                offset,
                length,
                ..
            } => {
                let result = self.origin.fetch(&url, &validator, offset, length);
                let slowdown = self.origin_slowdown.get(addr).copied().unwrap_or(1);
                let due = now + MemoryOrigin::response_time(length) * slowdown;
                self.origin_requests += 1;
                self.origin_replies.insert(
                    (due, self.origin_requests),
                    (addr.to_string(), token, result),
                );
                None
            }
            PeerAction::CancelFetch { token } => {
                // The origin stops sending: the fetch ends now, with an error. Its bytes were
                // counted when it was asked for (an upper bound of what a real origin sent).
                let key = self
                    .origin_replies
                    .iter()
                    .find(|(_, (to, t, _))| to == addr && *t == token)
                    .map(|(key, _)| *key);
                if let Some(key) = key {
                    // Unwrap: the key was found in the map just above.
                    let (to, token, _) = self.origin_replies.remove(&key).unwrap();
                    let cancelled = Err(RangeError {
                        fatal: false,
                        refused: false,
                        reason: "cancelled".into(),
                    });
                    self.origin_requests += 1;
                    self.origin_replies
                        .insert((now, self.origin_requests), (to, token, cancelled));
                    *self.fetches_cancelled.entry(addr.to_string()).or_default() += 1;
                }
                None
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
                Some(ActionResult::RangeWritten(token))
            }
            PeerAction::Notify(notice) => {
                node.notices.push(notice);
                None
            }
        }
    }

    /// An outgoing connection from `addr`: accepted at once by the node listening at `to`,
    /// refused when there is none or it is full.
    ///
    /// The kit runs no secure handshake: each side is told the other's configured id and
    /// the dialer's swarm, as an honest handshake would prove them (the simulator runs the
    /// real handshakes).
    fn connect(&mut self, addr: &str, now: Instant, conn: ConnId, to: &str) -> ActionResult {
        let dialer = match self.nodes.get(addr).map(|n| &n.machine) {
            Some(Machine::Peer(p)) => Remote {
                peer_id: p.peer_id(),
                swarm: p.swarm().to_string(),
            },
            _ => return ActionResult::Refused(conn),
        };
        let mut acceptor = dialer.clone();
        let accepted = match self.nodes.get_mut(to).map(|n| &mut n.machine) {
            Some(Machine::Tracker(t)) => {
                acceptor.peer_id = t.config().tracker_id;
                // The dialer's own address: the kit's connections come from where peers
                // listen.
                Some(t.accept(now, dialer, addr.to_string()))
            }
            Some(Machine::Peer(p)) => {
                acceptor.peer_id = p.peer_id();
                p.accept(now, dialer, addr.to_string())
            }
            None => None,
        };
        // Accepting is an input too: the acceptor's wakeup may have moved.
        self.rearm(to);
        match accepted {
            Some(remote) => {
                self.net
                    .link((addr.to_string(), conn), (to.to_string(), remote));
                ActionResult::Connected(conn, acceptor)
            }
            None => ActionResult::Refused(conn),
        }
    }

    /// Whether no frame and no origin response is on its way: only timers are left.
    pub fn is_quiet(&self) -> bool {
        self.net.is_quiet() && self.origin_replies.is_empty()
    }

    /// Jumps to the next event and handles it: an origin response, a frame, or every timer
    /// due then, whichever comes first (an origin response wins ties, then a frame).
    /// `false` when nothing at all is scheduled.
    pub fn step(&mut self) -> bool {
        let next_timer = self.nodes.values().filter_map(|n| n.timer).min();
        let next_frame = self.net.next_delivery_at();
        if let Some(&(due, seq)) = self.origin_replies.keys().next()
            && next_timer.is_none_or(|t| due <= t)
            && next_frame.is_none_or(|at| due <= at)
        {
            // Unwrap: the key was read from the map just above.
            let (addr, token, result) = self.origin_replies.remove(&(due, seq)).unwrap();
            self.now = self.now.max(due);
            if self.nodes.contains_key(&addr) {
                self.input(&addr, |peer, now| {
                    peer.handle_range_fetched(now, token, result)
                });
            }
            return true;
        }
        let frame_first = match (next_frame, next_timer) {
            (Some(frame), Some(timer)) => frame <= timer,
            (frame, _) => frame.is_some(),
        };
        if frame_first {
            // Unwrap: `next_frame` is `Some`, so a delivery is waiting.
            let (at, (to, conn), messages) = self.net.deliver_next().unwrap();
            self.now = self.now.max(at);
            self.deliver(&to, conn, messages);
            return true;
        }
        let Some(next) = next_timer else {
            return false;
        };
        self.now = self.now.max(next);
        self.fire_timers();
        true
    }

    fn deliver(&mut self, to: &str, conn: ConnId, messages: Vec<Message>) {
        let now = self.now;
        for message in messages {
            let Some(node) = self.nodes.get_mut(to) else {
                return;
            };
            match &mut node.machine {
                Machine::Tracker(t) => t.handle_message(now, conn, message),
                Machine::Peer(p) => p.handle_message(now, conn, message),
            }
            self.drain(to);
        }
    }

    /// Wakes every machine whose timer is due, in address order.
    fn fire_timers(&mut self) {
        let now = self.now;
        let addrs: Vec<String> = self.nodes.keys().cloned().collect();
        for addr in addrs {
            let Some(node) = self.nodes.get_mut(&addr) else {
                continue;
            };
            if node.timer.is_some_and(|at| at <= now) {
                match &mut node.machine {
                    Machine::Tracker(t) => t.handle_timeout(now),
                    Machine::Peer(p) => p.handle_timeout(now),
                }
            }
            self.drain(&addr);
        }
    }

    /// Whether the swarm is idle: quiet, and no machine's timer is due now. What is left
    /// are wakeups in the future (heartbeats, pings, retries).
    pub fn is_idle(&self) -> bool {
        self.is_quiet()
            && self
                .nodes
                .values()
                .all(|n| n.timer.is_none_or(|at| at > self.now))
    }

    /// Steps until the swarm is idle, at most `steps_max` times; whether it got idle.
    pub fn drive_bounded(&mut self, steps_max: usize) -> bool {
        for _ in 0..steps_max {
            if self.is_idle() {
                return true;
            }
            self.step();
        }
        self.is_idle()
    }

    /// Steps until the swarm is idle. Panics after [`DRIVE_STEPS_MAX`] steps: traffic that
    /// never stops is a livelock.
    pub fn drive(&mut self) {
        assert!(
            self.drive_bounded(DRIVE_STEPS_MAX),
            "the swarm was still busy after {DRIVE_STEPS_MAX} steps"
        );
    }

    /// Steps until `done` holds, at most `steps_max` times; whether it came to hold.
    pub fn drive_until(&mut self, steps_max: usize, mut done: impl FnMut(&Swarm) -> bool) -> bool {
        for _ in 0..steps_max {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PeerId;
    use crate::peer::PeerConfig;
    use crate::testkit::{TestFile, file_bytes};
    use crate::tracker::TrackerConfig;

    const TRACKER: &str = "tracker:1";
    const CHUNK_SIZE: u32 = 16 * 1024;
    const STEPS_MAX: usize = 100_000;

    fn peer(swarm: &Swarm, addr: &str, id: u64) -> Peer {
        let config = PeerConfig {
            peer_id: PeerId(id),
            listen_addr: addr.into(),
            trackers: vec![TRACKER.into()],
            rng_seed: id,
            ..PeerConfig::default()
        };
        Peer::new(config, swarm.now())
    }

    #[test]
    fn drive_goes_quiet_and_a_download_completes_through_the_kit() {
        let file = TestFile::new(
            "kit.bin",
            CHUNK_SIZE,
            file_bytes(5 * CHUNK_SIZE as usize, 1),
        );
        let mut swarm = Swarm::new();
        swarm.add_tracker(TRACKER, Tracker::new(TrackerConfig::default()));
        swarm.add_peer("seeder:1", peer(&swarm, "seeder:1", 1));
        swarm.add_peer("getter:1", peer(&swarm, "getter:1", 2));
        swarm.seed("seeder:1", &file.manifest, &file.data);
        // Joining the tracker is a burst of traffic that ends.
        swarm.drive();
        assert!(swarm.is_idle());
        assert_eq!(swarm.tracker(TRACKER).peer_count(), 2);
        swarm.input("getter:1", |peer, now| peer.download(now, file.id, None));
        let complete = PeerNotice::DownloadComplete {
            content_id: file.id,
        };
        assert!(swarm.drive_until(STEPS_MAX, |s| s.notices("getter:1").contains(&complete)));
        assert_eq!(swarm.disk("getter:1").file(file.id, 5), file.data);
    }
}
