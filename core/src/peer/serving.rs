//! Serving: the contents this peer holds, the requests other peers queue on each
//! connection, which one goes next (ranking), and the caps on blocks in flight per
//! connection and in total.
//!
//! A request is read from disk by the driver (`ReadChunk`), sent as a `Piece`, and counted
//! in flight until the driver reports it written to the socket (`handle_sent`).
//!
//! A requester that stops reading keeps its blocks in flight forever. So the uplink's
//! budget counts only connections whose blocks move: one that has written nothing for a
//! whole [`STALL_CHECK_INTERVAL`] is stalled (its blocks leave the total, and it gets no
//! more until one is written), and one stalled for [`STALLED_CHECKS_TO_CLOSE`] checks in a
//! row is closed. A non-reading member of the swarm can so hold at most its own share,
//! never everyone's.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use super::action::PeerAction;
use super::config::PeerConfig;
use super::output::Output;
use crate::chunkset::ChunkSet;
use crate::ids::{ConnId, ContentId};
use crate::manifest::Manifest;
use crate::time::Instant;
use crate::wire::{BLOCK_LEN_MAX, Message};

/// Only the head of each queue is ranked beyond this: bounds the work per block whatever a
/// requester queues.
const RANKED_PER_QUEUE: usize = 32;
/// How often connections with blocks in flight are checked for progress. A connection
/// that wrote no block during a whole interval (under 1 MiB in 2 s: a slow link, or one
/// not read) is stalled until it writes one: it keeps what it has, and the budget it held
/// goes to the others meanwhile.
pub(crate) const STALL_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Checks in a row a connection may stay stalled before it is closed (a minute: under
/// 1 MiB a minute is not a link anyone downloads over).
pub(crate) const STALLED_CHECKS_TO_CLOSE: u32 = 30;

/// A request we are serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ServeRequest {
    pub(crate) content_id: ContentId,
    pub(crate) chunk_index: u32,
    pub(crate) offset: u32,
    pub(crate) length: u32,
}

impl ServeRequest {
    fn reject(&self) -> Message {
        Message::Reject {
            content_id: self.content_id,
            chunk_index: self.chunk_index,
            offset: self.offset,
            length: self.length,
        }
    }
}

/// A content this peer holds some verified chunks of (or is about to).
pub(crate) struct Held {
    pub(crate) manifest: Manifest,
    pub(crate) chunks: ChunkSet,
    /// How many times this peer has started sending each chunk: serving prefers the chunks
    /// it has sent least, so a seeder hands out every chunk once before any twice.
    times_served: Vec<u32>,
}

impl Held {
    pub(crate) fn new(manifest: Manifest, chunks: ChunkSet) -> Held {
        let times_served = vec![0; chunks.len() as usize];
        Held {
            manifest,
            chunks,
            times_served,
        }
    }

    /// Serving order of a request: lower goes first. The rest of a chunk already begun
    /// comes before any new chunk.
    fn serve_rank(&self, request: &ServeRequest) -> u32 {
        if request.offset > 0 {
            return 0;
        }
        self.times_served
            .get(request.chunk_index as usize)
            .map_or(0, |&n| n.saturating_add(1))
    }

    fn is_valid(&self, request: &ServeRequest) -> bool {
        let chunk_len = self.manifest.chunk_len(request.chunk_index);
        self.chunks.contains(request.chunk_index)
            && request.length > 0
            && request.length <= BLOCK_LEN_MAX
            && u64::from(request.offset) + u64::from(request.length) <= u64::from(chunk_len)
    }
}

/// What one connection has asked of us.
#[derive(Default)]
struct ConnQueue {
    requests: VecDeque<ServeRequest>,
    /// Reads in flight plus pieces handed to the driver and not yet written.
    blocks_in_flight: u32,
    /// A piece was written since the last stall check.
    sent_since_check: bool,
    /// Stall checks in a row that found blocks in flight and none written.
    stalled_checks: u32,
}

impl ConnQueue {
    /// Whether the connection is stalled: its blocks leave the uplink's budget.
    fn is_stalled(&self) -> bool {
        self.stalled_checks > 0
    }
}

pub(crate) struct Serving {
    pub(crate) held: BTreeMap<ContentId, Held>,
    /// Per connection that has ever asked for something; gone when the connection is.
    queues: BTreeMap<ConnId, ConnQueue>,
    /// Reads handed to the driver, by token.
    reads: BTreeMap<u64, (ConnId, ServeRequest)>,
    /// The connection served last: serving goes round the connections from there.
    cursor: ConnId,
    /// When connections with blocks in flight are next checked for progress.
    stall_check_at: Option<Instant>,
}

impl Serving {
    pub(crate) fn new() -> Serving {
        Serving {
            held: BTreeMap::new(),
            queues: BTreeMap::new(),
            reads: BTreeMap::new(),
            cursor: ConnId(0),
            stall_check_at: None,
        }
    }

    /// Blocks being read or written out on connections that are not stalled: what the
    /// uplink's budget counts.
    fn moving_blocks(&self) -> u32 {
        self.queues
            .values()
            .filter(|q| !q.is_stalled())
            .map(|q| q.blocks_in_flight)
            .sum()
    }

    fn any_in_flight(&self) -> bool {
        self.queues.values().any(|q| q.blocks_in_flight > 0)
    }

    /// When the stall check is due, if any block is in flight.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.stall_check_at.filter(|_| self.any_in_flight())
    }

    /// Schedules the stall check once blocks are in flight (after anything that may
    /// have sent some).
    pub(crate) fn arm_stall_check(&mut self, now: Instant) {
        if self.any_in_flight() {
            self.stall_check_at
                .get_or_insert(now + STALL_CHECK_INTERVAL);
        } else {
            self.stall_check_at = None;
        }
    }

    /// The stall check: marks the connections that wrote nothing since the last one as
    /// stalled, and returns those to close: stalled too long, or stalled longest while
    /// stalled connections hold more blocks than the budget (the driver's buffers for
    /// blocks are sized for the budget twice: moving and stalled).
    pub(crate) fn check_stalls(&mut self, now: Instant, config: &PeerConfig) -> Vec<ConnId> {
        let mut to_close = Vec::new();
        for (&conn, queue) in &mut self.queues {
            if queue.blocks_in_flight > 0 && !queue.sent_since_check {
                queue.stalled_checks += 1;
                if queue.stalled_checks >= STALLED_CHECKS_TO_CLOSE {
                    to_close.push(conn);
                }
            } else {
                queue.stalled_checks = 0;
            }
            queue.sent_since_check = false;
        }
        let mut stalled: Vec<(u32, ConnId, u32)> = self
            .queues
            .iter()
            .filter(|(conn, q)| q.is_stalled() && !to_close.contains(conn))
            .map(|(&conn, q)| (q.stalled_checks, conn, q.blocks_in_flight))
            .collect();
        // Longest stalled last, so they are closed first.
        stalled.sort_by_key(|&(checks, conn, _)| (checks, std::cmp::Reverse(conn)));
        let mut held: u32 = stalled.iter().map(|s| s.2).sum();
        while held > config.serve_blocks_in_flight_total_max {
            let Some((_, conn, blocks)) = stalled.pop() else {
                break;
            };
            held -= blocks;
            to_close.push(conn);
        }
        self.stall_check_at = None;
        self.arm_stall_check(now);
        to_close
    }

    /// The bitfield, or `NotFound`, answering an `Interested`.
    pub(crate) fn bitfield_reply(&self, content_id: ContentId) -> Message {
        match self.held.get(&content_id) {
            Some(held) => Message::Bitfield {
                content_id,
                chunks: held.chunks.clone(),
            },
            None => Message::NotFound { content_id },
        }
    }

    /// The manifest, or `NotFound`, answering a `GetManifest`.
    pub(crate) fn manifest_reply(&self, content_id: ContentId) -> Message {
        match self.held.get(&content_id) {
            Some(held) => Message::ManifestReply {
                manifest: held.manifest.clone(),
            },
            None => Message::NotFound { content_id },
        }
    }

    /// A peer asks for a block: queue it, or turn it away.
    pub(crate) fn on_request(
        &mut self,
        conn: ConnId,
        request: ServeRequest,
        config: &PeerConfig,
        out: &mut Output,
    ) {
        let valid = self
            .held
            .get(&request.content_id)
            .is_some_and(|held| held.is_valid(&request));
        // A chunk this peer already sent can come from whoever got it: while other peers'
        // requests wait here, the repeat is turned away, so the requester asks another holder and
        // this peer's uplink goes to what only it may have (see `pump`).
        let repeat = valid && self.is_repeat(&request) && self.others_waiting(conn);
        let queue = self.queues.entry(conn).or_default();
        if !valid || repeat || queue.requests.len() >= config.serve_queue_max {
            out.send(conn, request.reject());
            return;
        }
        queue.requests.push_back(request);
        self.pump(config, out);
    }

    /// The remote no longer wants a block it asked for.
    pub(crate) fn on_cancel(&mut self, conn: ConnId, cancelled: ServeRequest) {
        if let Some(queue) = self.queues.get_mut(&conn) {
            queue.requests.retain(|r| *r != cancelled);
        }
    }

    /// The driver wrote a piece on `conn` to the socket: room for another read.
    pub(crate) fn on_sent(&mut self, conn: ConnId, config: &PeerConfig, out: &mut Output) {
        if let Some(queue) = self.queues.get_mut(&conn)
            && queue.blocks_in_flight > 0
        {
            queue.blocks_in_flight -= 1;
            queue.sent_since_check = true;
            queue.stalled_checks = 0;
        }
        self.pump(config, out);
    }

    /// A read finished: send the piece, or reject the request. Returns the bytes sent.
    pub(crate) fn on_read(
        &mut self,
        token: u64,
        result: Result<Bytes, String>,
        config: &PeerConfig,
        out: &mut Output,
    ) -> u64 {
        let Some((conn, request)) = self.reads.remove(&token) else {
            return 0;
        };
        let Some(queue) = self.queues.get_mut(&conn) else {
            return 0;
        };
        match result {
            Ok(data) if data.len() == request.length as usize => {
                let sent = data.len() as u64;
                // Stays counted in flight until the driver reports the piece written.
                out.send(
                    conn,
                    Message::Piece {
                        content_id: request.content_id,
                        chunk_index: request.chunk_index,
                        offset: request.offset,
                        data,
                    },
                );
                sent
            }
            _ => {
                queue.blocks_in_flight = queue.blocks_in_flight.saturating_sub(1);
                out.send(conn, request.reject());
                self.pump(config, out);
                0
            }
        }
    }

    /// A connection is gone: its queue goes, and its blocks in flight will never be
    /// reported sent.
    pub(crate) fn conn_closed(&mut self, conn: ConnId) {
        self.queues.remove(&conn);
        self.reads.retain(|_, (c, _)| *c != conn);
    }

    /// Every connection is gone at once (a shutdown): nothing more is served.
    pub(crate) fn conns_cleared(&mut self) {
        self.queues.clear();
    }

    /// Issues reads for queued requests, one block at a time, while the uplink has room.
    /// Few blocks in the uplink at once means each one goes out at full speed and reaches
    /// its requester early, who can then serve it on; many at once would share the uplink
    /// and all arrive late together. The next block is the queued one whose chunk this peer
    /// has sent least (see [`Held::serve_rank`]), ties going round the connections, so a
    /// seeder hands every chunk out once before any twice.
    pub(crate) fn pump(&mut self, config: &PeerConfig, out: &mut Output) {
        while self.moving_blocks() < config.serve_blocks_in_flight_total_max {
            let Some((rank, conn, position)) = self.best_queued(config) else {
                return;
            };
            let others_wait = self.others_waiting(conn);
            self.cursor = conn;
            let Some(queue) = self.queues.get_mut(&conn) else {
                return;
            };
            let Some(request) = queue.requests.remove(position) else {
                return;
            };
            if rank > 1 && others_wait {
                // Only repeats are left: serving them one at a time to whoever asked last
                // and turning the others away makes every chunk spread from each new
                // holder at once, instead of from this peer to a queue of everyone.
                out.send(conn, request.reject());
                continue;
            }
            if request.offset == 0
                && let Some(held) = self.held.get_mut(&request.content_id)
                && let Some(n) = held.times_served.get_mut(request.chunk_index as usize)
            {
                *n = n.saturating_add(1);
            }
            queue.blocks_in_flight += 1;
            let token = out.next_token();
            self.reads.insert(token, (conn, request));
            out.push(PeerAction::ReadChunk {
                token,
                content_id: request.content_id,
                chunk_index: request.chunk_index,
                offset: request.offset,
                length: request.length,
            });
        }
    }

    /// Whether a connection other than `conn` has requests waiting to be served.
    fn others_waiting(&self, conn: ConnId) -> bool {
        // A stalled connection gets nothing until it writes a block: its queue is waiting
        // for itself, not for our uplink (else members that ask for everything and never
        // read would turn every repeat away).
        self.queues
            .iter()
            .any(|(&id, q)| id != conn && !q.requests.is_empty() && !q.is_stalled())
    }

    /// Whether `request` starts a chunk this peer has sent before.
    fn is_repeat(&self, request: &ServeRequest) -> bool {
        self.held
            .get(&request.content_id)
            .is_some_and(|held| held.serve_rank(request) > 1)
    }

    /// The best-ranked queued request (rank, connection, queue position) on a connection
    /// that may take another block now, going round the connections from the last one
    /// served.
    fn best_queued(&self, config: &PeerConfig) -> Option<(u32, ConnId, usize)> {
        let per_conn_max = config.serve_blocks_in_flight_max;
        let cursor = self.cursor;
        let mut best: Option<(u32, ConnId, usize)> = None;
        let round = self
            .queues
            .range(ConnId(cursor.0 + 1)..)
            .chain(self.queues.range(..=cursor));
        for (&id, queue) in round {
            if queue.blocks_in_flight >= per_conn_max || queue.is_stalled() {
                continue;
            }
            for (position, request) in queue.requests.iter().take(RANKED_PER_QUEUE).enumerate() {
                let rank = self
                    .held
                    .get(&request.content_id)
                    .map_or(0, |held| held.serve_rank(request));
                if best.is_none_or(|(b, _, _)| rank < b) {
                    best = Some((rank, id, position));
                    if rank <= 1 {
                        // Nothing beats a new chunk never sent or the rest of one begun.
                        return best;
                    }
                }
            }
        }
        best
    }
}
