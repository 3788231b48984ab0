//! Where the machines meet the network model: a machine's `Connect`, `Send` and `Close`
//! handed to the network (with what the simulator does to a message on its way: corrupt
//! peers flip a bit, `--codec-roundtrip` re-decodes it, the safety checker looks at it),
//! and the network's events handed to the machines as `handle_message`, `handle_sent` and
//! `handle_closed` (a connection's handshake, which ends in `accept` and
//! `handle_connected`, is `secure.rs`).

use bytes::Bytes;
use p2p_core::ids::ConnId;
use p2p_core::wire::Message;
use rand::Rng;

use crate::trace::{DigestTag, describe, message_name, wire_facts};
use crate::violations::FailureKind;
use crate::world::World;
use crate::world::connection::{Data, LinkSide};
use crate::world::event::{Event, LINK_DONE, LINK_DONE_EARLY, LINK_DONE_STALE};
use crate::world::network::Delivery;
use crate::world::node::{Life, Machine, Role, TRACKER_NODE};
use crate::world::secure::record_wire_size;

// ---------------------------------------------------------------------- machine → network

impl World {
    pub(crate) fn connect(&mut self, node: usize, local: ConnId, addr: &str) {
        self.stats.connections_opened += 1;
        let incarnation = self.nodes[node].incarnation;
        let target = self.network.connect(
            node,
            incarnation,
            local,
            addr,
            &mut self.queue,
            &mut self.rng,
        );
        self.digest.mix_tagged(
            DigestTag::Connect,
            &[node as u64, local.0, target.map_or(u64::MAX, |t| t as u64)],
        );
        self.trace(|| format!("node{node} connect {local} to {addr}"));
    }

    pub(crate) fn send(&mut self, node: usize, local: ConnId, mut message: Message) {
        let now = self.now();
        let Some(conn) = self.network.local_conn(node, local) else {
            // The connection is already gone: the bytes go nowhere, as on a dead socket.
            return;
        };
        self.safety
            .on_send(&mut self.violations, now, &self.nodes[node], &message);
        self.maybe_corrupt(node, &mut message);
        if self.config.codec_roundtrip {
            self.codec_roundtrip(&mut message);
        }
        let (kind, frame_len) = wire_facts(&message, &mut self.frame_scratch);
        let size = record_wire_size(frame_len);
        self.stats.messages_sent += 1;
        self.stats
            .messages_by_kind
            .entry(kind)
            .or_insert_with(|| (message_name(&message), 0))
            .1 += 1;
        self.stats.bytes_sent += size;
        self.digest.mix_tagged(
            DigestTag::Send,
            &[node as u64, local.0, u64::from(kind), size],
        );
        self.trace(|| format!("node{node} send {local} {}", describe(&message)));
        let pieces_queued =
            self.network
                .send(node, conn, size, Data::Message(message), &mut self.queue);
        if let Some(queued) = pieces_queued {
            self.safety
                .on_pieces_queued(&mut self.violations, now, &self.nodes[node], queued);
        }
    }

    /// A corrupt peer flips one bit of a `Piece` it sends, with `corrupt_piece_probability`.
    fn maybe_corrupt(&mut self, node: usize, message: &mut Message) {
        let Message::Piece { data, .. } = message else {
            return;
        };
        self.stats.pieces_sent += 1;
        if self.nodes[node].corrupt
            && !data.is_empty()
            && self
                .rng
                .random_bool(self.config.faults.corrupt_piece_probability.clamp(0.0, 1.0))
        {
            let mut bytes = data.to_vec();
            let at = self.rng.random_range(0..bytes.len());
            bytes[at] ^= 1 << self.rng.random_range(0..8);
            *data = Bytes::from(bytes);
            self.stats.pieces_corrupted += 1;
        }
    }

    /// `--codec-roundtrip`: the message is encoded and decoded, and must come back equal.
    fn codec_roundtrip(&mut self, message: &mut Message) {
        let frame = message.to_frame();
        let mut decoder = p2p_core::wire::FrameDecoder::new();
        decoder.feed(&frame);
        match decoder.next_message() {
            Ok(Some(decoded)) if decoded == *message => *message = decoded,
            other => {
                self.violations.push(
                    FailureKind::Crash,
                    self.now(),
                    format!("codec round trip changed {}: {other:?}", describe(message)),
                );
                self.stopped = true;
            }
        }
    }

    pub(crate) fn close(&mut self, node: usize, local: ConnId) {
        if !self.network.close(node, local, &mut self.queue) {
            return;
        }
        self.digest
            .mix_tagged(DigestTag::Close, &[node as u64, local.0]);
        self.trace(|| format!("node{node} close {local}"));
    }
}

// ---------------------------------------------------------------------- network → machine

impl World {
    /// A SYN reached its target: if it listens, the handshake starts; otherwise the dialler
    /// hears of a failure.
    pub(crate) fn on_syn(&mut self, id: u64) {
        let now = self.now();
        let Some((from, to)) = self.network.syn_arrived(id) else {
            return;
        };
        let up = self.nodes[to].life == Life::Up && self.nodes[to].machine.is_some();
        let back = self.network.latency(to, from.node, &mut self.rng);
        if !up || !self.network.reachable(from.node, to) {
            // Refused (down) or lost (partitioned): either way the dialler hears of it.
            self.queue
                .schedule(now + back, Event::ConnectFailed { conn: id });
            return;
        }
        let incarnation = self.nodes[to].incarnation;
        self.network.syn_taken(id, to, incarnation);
        self.handshake_begin(id, to);
        self.queue.schedule(now + back, Event::SynAck { conn: id });
    }

    pub(crate) fn on_syn_ack(&mut self, id: u64) {
        let Some(end) = self.network.syn_ack_arrived(id) else {
            return;
        };
        self.digest.mix_tagged(DigestTag::SynAck, &[id]);
        self.trace(|| format!("node{} syn-ack {id}", end.node));
        self.handshake_dial(id, end.node);
    }

    pub(crate) fn on_connect_failed(&mut self, id: u64) {
        let Some(end) = self.network.connect_failed(id) else {
            return;
        };
        self.digest.mix_tagged(DigestTag::ConnectFailed, &[id]);
        if let Some(local) = end.local {
            self.trace(|| format!("node{} connect failed {local}", end.node));
            self.drive(end.node, |m, now| m.handle_closed(now, local));
        }
    }

    pub(crate) fn on_broken(&mut self, node: usize, incarnation: u32, local: ConnId) {
        if self.nodes[node].incarnation != incarnation {
            return;
        }
        self.digest
            .mix_tagged(DigestTag::Broken, &[node as u64, local.0]);
        self.trace(|| format!("node{node} broken {local}"));
        self.drive(node, |m, now| m.handle_closed(now, local));
    }

    /// A link's event came due: every packet that finished on it is handed on.
    pub(crate) fn on_link_done(&mut self, node: usize, side: LinkSide, generation: u64) {
        let now = self.now();
        let Some(mut done) = self.network.link_due(node, side, generation, now) else {
            self.stats.recount(LINK_DONE, LINK_DONE_STALE);
            return;
        };
        if done.is_empty() {
            self.stats.recount(LINK_DONE, LINK_DONE_EARLY);
        }
        for ((conn, dir), size, packet) in done.drain(..) {
            match side {
                LinkSide::Upload => self.uploaded((conn, dir as usize), size, packet),
                LinkSide::Download => {
                    let delivery =
                        self.network
                            .left_download((conn, dir as usize), packet, &mut self.queue);
                    if let Some(delivery) = delivery {
                        self.deliver(delivery);
                    }
                }
            }
        }
        self.network.link_handled(node, side, done, &mut self.queue);
    }

    /// A packet left the sender's upload link: the sender hears a `Piece` is out, then the
    /// packet travels.
    fn uploaded(
        &mut self,
        (id, dir): (u64, usize),
        size: u64,
        packet: crate::world::connection::Packet,
    ) {
        let Some(departure) = self.network.left_upload(id, dir, &packet) else {
            return;
        };
        if let Some(local) = departure.piece_sent_on {
            self.drive(departure.sender, |m, now| {
                if let Machine::Peer(p) = m {
                    p.handle_sent(now, local);
                }
            });
        }
        self.network.travel(
            (id, dir),
            &departure,
            size,
            packet,
            &mut self.queue,
            &mut self.rng,
        );
    }

    /// A packet left the receiver's download link: the machine gets it.
    fn deliver(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Handshake { conn, end, bytes } => {
                self.on_handshake_bytes(conn, end, bytes);
            }
            Delivery::Message {
                node,
                local,
                from,
                message,
            } => {
                self.digest
                    .mix_tagged(DigestTag::Receive, &[node as u64, local.0]);
                self.trace(|| format!("node{node} recv {local} {}", describe(&message)));
                let now = self.now();
                self.trust.on_message(
                    &mut self.violations,
                    now,
                    (&self.nodes[node], &self.nodes[from]),
                );
                if self.nodes[node].role.is_intruder() {
                    self.intruder_heard((node, local), from, &message);
                    return;
                }
                // An impostor's claim must leave the peer it names known to the tracker.
                let claimed = match &message {
                    Message::Hello { peer_id, .. }
                        if node == TRACKER_NODE && self.nodes[from].role == Role::Impostor =>
                    {
                        Some((*peer_id, self.tracker_knows(*peer_id)))
                    }
                    _ => None,
                };
                self.drive(node, |m, now| m.handle_message(now, local, message));
                if let Some((victim, before)) = claimed {
                    let after = self.tracker_knows(victim);
                    self.trust.on_impostor_hello(
                        &mut self.violations,
                        now,
                        (&self.nodes[from], victim),
                        (before, after),
                    );
                }
            }
            Delivery::Closed { node, local } => {
                self.digest
                    .mix_tagged(DigestTag::ClosedByRemote, &[node as u64, local.0]);
                self.trace(|| format!("node{node} closed by remote {local}"));
                self.drive(node, |m, now| m.handle_closed(now, local));
            }
        }
    }
}
