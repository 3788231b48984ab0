//! The network model: every node's two links, its distance to the network core and its
//! partition group, and the connections between nodes. It moves packets and schedules their
//! events; what a packet means to a machine is the world's business (`sockets.rs`).
//!
//! The model, in one paragraph: a message first queues on the sender's *upload* link, a
//! processor-sharing server (see `link.rs`) where every connection with data waiting gets an
//! equal share of the node's upload capacity and messages of one connection go in order.
//! When its last byte is out, it travels for the link's one-way latency (the sum of both
//! nodes' distances to the network core, times any latency spike, plus jitter; never
//! overtaking an earlier message of the same connection), then queues the same way on the
//! receiver's *download* link, and is handed to the receiving machine when its last byte is
//! in. So no node sends faster than its upload or receives faster than its download capacity,
//! and concurrent transfers share both. Connections are reliable and ordered; a close sends
//! a FIN behind the queued data; a crash or a partition breaks a connection on both ends.
//!
//! Longer than its siblings on purpose: one model read top to bottom (the interfaces, then a
//! connection's life, then a packet's way over the two links).

use std::collections::{BTreeMap, BTreeSet};

use p2p_core::ids::ConnId;
use p2p_core::wire::Message;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::event_queue::{EventQueue, NANOS_PER_MS, Nanos};
use crate::link::{FlowKey, Link};
use crate::world::connection::{Conn, Data, End, FIN_SIZE_BYTES, LinkSide, Packet};
use crate::world::event::Event;
use crate::world::node::Node;

/// A node's network interface: its links, where it sits, and its sockets.
struct Interface {
    upload: Link<Packet>,
    download: Link<Packet>,
    /// (generation, time) of the live completion event of each link: the one event that
    /// counts, due at or before the link's next completion (see [`Network::arm_link`]).
    link_timer: [(u64, Option<Nanos>); 2],
    /// Nodes reach each other only within one group; 0 is the main network.
    group: u32,
    latency_half: Nanos,
    latency_factor: u32,
    /// Local connection id → (simulator connection, which end this node is).
    local_conns: BTreeMap<ConnId, (u64, usize)>,
    /// Connections this node took a SYN for whose handshake is not done: its end has no
    /// machine id yet, but a crash or a partition must break it all the same.
    handshaking: BTreeSet<u64>,
}

/// What the network hands the world when a packet is off the receiver's download link.
pub(crate) enum Delivery {
    /// A handshake message, for end `end` of connection `conn` (which may have no machine
    /// id yet).
    Handshake {
        conn: u64,
        end: usize,
        bytes: Vec<u8>,
    },
    Message {
        node: usize,
        local: ConnId,
        /// The node at the other end, for the trust checker.
        from: usize,
        message: Message,
    },
    /// The remote end closed, after everything it sent.
    Closed { node: usize, local: ConnId },
}

/// A packet just off the sender's upload link, before it travels.
pub(crate) struct Departure {
    pub sender: usize,
    pub receiver: usize,
    /// The sender's connection to tell `handle_sent` (a `Piece` on an open end).
    pub piece_sent_on: Option<ConnId>,
}

pub(crate) struct Network {
    interfaces: Vec<Interface>,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    addr_to_node: BTreeMap<String, usize>,
    jitter_ns_max: Nanos,
    /// Reused on every link event instead of allocated: a link's finished packets.
    finished_scratch: Vec<(FlowKey, u64, Packet)>,
}

impl Network {
    pub fn new(jitter_ms_max: u64) -> Network {
        Network {
            interfaces: Vec::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            addr_to_node: BTreeMap::new(),
            jitter_ns_max: jitter_ms_max * NANOS_PER_MS,
            finished_scratch: Vec::new(),
        }
    }

    /// Adds the next node; nodes are numbered in the order they are added.
    pub fn add_node(&mut self, addr: &str, latency_half: Nanos, upload: u64, download: u64) {
        self.addr_to_node
            .insert(addr.to_string(), self.interfaces.len());
        self.interfaces.push(Interface {
            upload: Link::new(upload),
            download: Link::new(download),
            link_timer: [(0, None), (0, None)],
            group: 0,
            latency_half,
            latency_factor: 1,
            local_conns: BTreeMap::new(),
            handshaking: BTreeSet::new(),
        });
    }

    /// One-way delay from `a` to `b`, jitter drawn from `rng`.
    pub fn latency(&self, a: usize, b: usize, rng: &mut ChaCha8Rng) -> Nanos {
        let (na, nb) = (&self.interfaces[a], &self.interfaces[b]);
        let factor = u64::from(na.latency_factor.max(nb.latency_factor));
        let base = (na.latency_half + nb.latency_half) * factor;
        let jitter = if self.jitter_ns_max == 0 {
            0
        } else {
            rng.random_range(0..=self.jitter_ns_max)
        };
        base + jitter
    }

    pub fn reachable(&self, a: usize, b: usize) -> bool {
        self.interfaces[a].group == self.interfaces[b].group
    }

    /// Moves `node` to `group`; says whether it moved.
    pub fn set_group(&mut self, node: usize, group: u32) -> bool {
        let moved = self.interfaces[node].group != group;
        self.interfaces[node].group = group;
        moved
    }

    pub fn set_latency_factor(&mut self, node: usize, factor: u32) {
        self.interfaces[node].latency_factor = factor;
    }

    /// Taken connections (accepted, or in their handshake) whose two ends can no longer
    /// reach each other.
    pub fn crossing_conns(&self) -> Vec<u64> {
        self.conns
            .iter()
            .filter(|(_, c)| {
                let taken = c.ends[1].local.is_some() || c.ends[1].open;
                taken && !self.reachable(c.ends[0].node, c.ends[1].node)
            })
            .map(|(&id, _)| id)
            .collect()
    }

    /// The simulator connection and end behind a machine's connection id.
    pub fn local_conn(&self, node: usize, local: ConnId) -> Option<(u64, usize)> {
        self.interfaces[node].local_conns.get(&local).copied()
    }
}

// ---------------------------------------------------------------------- connections

impl Network {
    /// Opens a connection from `node` (whose machine calls it `local`) to `addr`, and
    /// schedules its SYN, or its failure when nobody listens there. Returns the target.
    pub fn connect(
        &mut self,
        node: usize,
        incarnation: u32,
        local: ConnId,
        addr: &str,
        queue: &mut EventQueue<Event>,
        rng: &mut ChaCha8Rng,
    ) -> Option<usize> {
        let now = queue.now();
        let id = self.next_conn;
        self.next_conn += 1;
        let target = self.addr_to_node.get(addr).copied();
        let conn = Conn::new(
            End {
                node,
                incarnation,
                local: Some(local),
                open: true,
            },
            target.unwrap_or(node),
        );
        self.conns.insert(id, conn);
        self.interfaces[node].local_conns.insert(local, (id, 0));
        match target {
            Some(target) if target != node => {
                let delay = self.latency(node, target, rng);
                queue.schedule(now + delay, Event::Syn { conn: id });
            }
            _ => queue.schedule(now + NANOS_PER_MS, Event::ConnectFailed { conn: id }),
        }
        target
    }

    /// A SYN reached its target: the dialling end and the target node, unless the dialler
    /// gave up meanwhile (then the connection is forgotten).
    pub fn syn_arrived(&mut self, id: u64) -> Option<(End, usize)> {
        let conn = self.conns.get(&id)?;
        let (from, to) = (conn.ends[0], conn.ends[1].node);
        if !from.open {
            self.conns.remove(&id);
            return None;
        }
        Some((from, to))
    }

    /// The target took the SYN: its end is open, and its handshake starts. Its machine
    /// hears of the connection only when the handshake is done ([`Network::accepted`]).
    pub fn syn_taken(&mut self, id: u64, node: usize, incarnation: u32) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.ends[1] = End {
                node,
                incarnation,
                local: None,
                open: true,
            };
            self.interfaces[node].handshaking.insert(id);
        }
    }

    /// The target's machine accepted the connection as `local`, its handshake done.
    pub fn accepted(&mut self, id: u64, local: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let node = conn.ends[1].node;
        conn.ends[1].local = Some(local);
        self.interfaces[node].handshaking.remove(&id);
        self.interfaces[node].local_conns.insert(local, (id, 1));
    }

    /// The SYN-ACK is back: the dialling end, if it is still open.
    pub fn syn_ack_arrived(&self, id: u64) -> Option<End> {
        let end = self.conns.get(&id)?.ends[0];
        end.open.then_some(end)
    }

    /// End `end` (0 dialled, 1 accepted) of connection `id`, while the connection lives.
    pub fn end(&self, id: u64, end: usize) -> Option<End> {
        self.conns.get(&id).map(|c| c.ends[end])
    }

    /// The connection was refused or lost: forgotten; the dialling end, if still open.
    pub fn connect_failed(&mut self, id: u64) -> Option<End> {
        let end = self.conns.remove(&id)?.ends[0];
        if !end.open {
            return None;
        }
        if let Some(local) = end.local {
            self.interfaces[end.node].local_conns.remove(&local);
        }
        Some(end)
    }

    /// Queues `data` on the sender's upload link. Returns, for a `Piece`, how many pieces
    /// are now queued on that connection in that direction.
    pub fn send(
        &mut self,
        node: usize,
        (id, end): (u64, usize),
        size: u64,
        data: Data,
        queue: &mut EventQueue<Event>,
    ) -> Option<u32> {
        let now = queue.now();
        let is_piece = matches!(data, Data::Message(Message::Piece { .. }));
        let mut pieces_queued = None;
        if is_piece && let Some(conn) = self.conns.get_mut(&id) {
            conn.pieces_queued[end] += 1;
            pieces_queued = Some(conn.pieces_queued[end]);
        }
        self.interfaces[node]
            .upload
            .push(now, (id, end as u8), size, Packet::Data(Box::new(data)));
        self.arm_link(node, LinkSide::Upload, queue);
        pieces_queued
    }

    /// `node`'s machine closes `local`: the FIN follows what it queued. Returns whether the
    /// connection was still known to the node.
    pub fn close(&mut self, node: usize, local: ConnId, queue: &mut EventQueue<Event>) -> bool {
        let Some((id, end)) = self.interfaces[node].local_conns.remove(&local) else {
            return false;
        };
        self.close_end(node, (id, end), queue);
        true
    }

    /// `node` closes its end `end` of connection `id` (by its machine, or by the world when
    /// a handshake fails): the FIN follows what it queued.
    pub fn close_end(
        &mut self,
        node: usize,
        (id, end): (u64, usize),
        queue: &mut EventQueue<Event>,
    ) {
        let now = queue.now();
        self.interfaces[node].handshaking.remove(&id);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if !conn.ends[end].open {
            return;
        }
        conn.ends[end].open = false;
        let other = conn.ends[1 - end];
        // Whatever the other side still sends us is discarded (our socket is gone).
        let incoming = (id, (1 - end) as u8);
        if other.open {
            self.interfaces[other.node]
                .upload
                .remove_flow(now, incoming);
            self.arm_link(other.node, LinkSide::Upload, queue);
        }
        self.interfaces[node].download.remove_flow(now, incoming);
        self.arm_link(node, LinkSide::Download, queue);
        if other.open {
            // What we queued still goes out, then the FIN.
            self.interfaces[node]
                .upload
                .push(now, (id, end as u8), FIN_SIZE_BYTES, Packet::Fin);
            self.arm_link(node, LinkSide::Upload, queue);
        } else {
            self.conns.remove(&id);
        }
    }

    /// The connection dies under both ends (crash or partition); every open end on a live
    /// machine hears `handle_closed` (after one link delay when `crash`, at once otherwise).
    pub fn break_conn(
        &mut self,
        id: u64,
        crash: bool,
        nodes: &[Node],
        queue: &mut EventQueue<Event>,
        rng: &mut ChaCha8Rng,
    ) {
        let now = queue.now();
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        self.interfaces[conn.ends[1].node].handshaking.remove(&id);
        for dir in 0..2 {
            let flow = (id, dir as u8);
            let sender = conn.ends[dir].node;
            let receiver = conn.ends[1 - dir].node;
            self.interfaces[sender].upload.remove_flow(now, flow);
            self.interfaces[receiver].download.remove_flow(now, flow);
            self.arm_link(sender, LinkSide::Upload, queue);
            self.arm_link(receiver, LinkSide::Download, queue);
        }
        for e in 0..2 {
            let end = conn.ends[e];
            let Some(local) = end.local else {
                continue;
            };
            if !end.open || nodes[end.node].incarnation != end.incarnation {
                continue;
            }
            self.interfaces[end.node].local_conns.remove(&local);
            if nodes[end.node].machine.is_none() {
                continue;
            }
            let delay = if crash {
                self.latency(end.node, conn.ends[1 - e].node, rng)
            } else {
                0
            };
            queue.schedule(
                now + delay,
                Event::Broken {
                    node: end.node,
                    incarnation: end.incarnation,
                    local,
                },
            );
        }
    }

    /// `node` crashed (its machine already gone): every connection breaks and both links
    /// drop what they held.
    pub fn break_node(
        &mut self,
        node: usize,
        nodes: &[Node],
        queue: &mut EventQueue<Event>,
        rng: &mut ChaCha8Rng,
    ) {
        let now = queue.now();
        let interface = &mut self.interfaces[node];
        let mut conns: Vec<u64> = interface.local_conns.values().map(|&(c, _)| c).collect();
        conns.extend(std::mem::take(&mut interface.handshaking));
        for conn in conns {
            self.break_conn(conn, true, nodes, queue, rng);
        }
        let interface = &mut self.interfaces[node];
        interface.local_conns.clear();
        interface.upload.clear(now);
        interface.download.clear(now);
        self.arm_link(node, LinkSide::Upload, queue);
        self.arm_link(node, LinkSide::Download, queue);
    }
}

// ---------------------------------------------------------------------- links

impl Network {
    /// Makes sure an event is due no later than the next completion of one link, after it
    /// changed.
    ///
    /// At most one event per link is live. When the completion moves earlier (a short message
    /// on an idle flow, a flow removed) a new event is scheduled and the old one, now of an
    /// older generation, is dropped when it comes due. When it moves later (more flows share
    /// the link) the pending event is kept: it fires early, finds nothing finished, and
    /// re-arms from there. Either way every packet is handed on at exactly the instant the
    /// processor-sharing model says, and a link that changes many times between two
    /// completions (every new flow delays the head) costs one extra event, not one per change.
    pub fn arm_link(&mut self, node: usize, side: LinkSide, queue: &mut EventQueue<Event>) {
        let interface = &mut self.interfaces[node];
        let next = match side {
            LinkSide::Upload => interface.upload.next_completion(),
            LinkSide::Download => interface.download.next_completion(),
        };
        let Some(next) = next else {
            // Nothing queued: a pending event finds nothing when it fires; leave it.
            return;
        };
        let slot = side as usize;
        let timer = &mut interface.link_timer[slot];
        if timer.1.is_some_and(|pending| pending <= next) {
            return;
        }
        timer.0 += 1;
        timer.1 = Some(next);
        let generation = timer.0;
        queue.schedule(
            next,
            Event::LinkDone {
                node,
                side,
                generation,
            },
        );
    }

    /// A link event came due: the packets that finished on that link, or `None` when the
    /// event was superseded (stale). Hand the list back with [`Network::link_handled`].
    pub fn link_due(
        &mut self,
        node: usize,
        side: LinkSide,
        generation: u64,
        now: Nanos,
    ) -> Option<Vec<(FlowKey, u64, Packet)>> {
        let slot = side as usize;
        let interface = &mut self.interfaces[node];
        if interface.link_timer[slot].0 != generation {
            return None;
        }
        interface.link_timer[slot].1 = None;
        let mut done = std::mem::take(&mut self.finished_scratch);
        match side {
            LinkSide::Upload => interface.upload.take_finished(now, &mut done),
            LinkSide::Download => interface.download.take_finished(now, &mut done),
        }
        Some(done)
    }

    /// The packets of [`Network::link_due`] were handed on: re-arm the link, keep the buffer.
    pub fn link_handled(
        &mut self,
        node: usize,
        side: LinkSide,
        done: Vec<(FlowKey, u64, Packet)>,
        queue: &mut EventQueue<Event>,
    ) {
        self.finished_scratch = done;
        self.arm_link(node, side, queue);
    }

    /// A packet left the sender's upload link. `None` when the connection is gone (the
    /// packet with it).
    pub fn left_upload(&mut self, id: u64, dir: usize, packet: &Packet) -> Option<Departure> {
        let conn = self.conns.get_mut(&id)?;
        let sender = conn.ends[dir];
        let receiver = conn.ends[1 - dir];
        let mut piece_sent_on = None;
        if let Packet::Data(data) = packet
            && let Data::Message(Message::Piece { .. }) = **data
        {
            conn.pieces_queued[dir] = conn.pieces_queued[dir].saturating_sub(1);
            if sender.open {
                piece_sent_on = sender.local;
            }
        }
        Some(Departure {
            sender: sender.node,
            receiver: receiver.node,
            piece_sent_on,
        })
    }

    /// The packet travels, then queues at the receiver.
    pub fn travel(
        &mut self,
        (id, dir): (u64, usize),
        departure: &Departure,
        size: u64,
        packet: Packet,
        queue: &mut EventQueue<Event>,
        rng: &mut ChaCha8Rng,
    ) {
        let now = queue.now();
        let delay = self.latency(departure.sender, departure.receiver, rng);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        // Jitter never reorders one connection: TCP delivers in order.
        let arrive = (now + delay).max(conn.last_arrival[dir]);
        conn.last_arrival[dir] = arrive;
        queue.schedule(
            arrive,
            Event::Arrive {
                conn: id,
                dir,
                size,
                packet,
            },
        );
    }

    /// A packet reached the receiver: it queues on its download link.
    pub fn arrive(
        &mut self,
        (id, dir): (u64, usize),
        size: u64,
        packet: Packet,
        queue: &mut EventQueue<Event>,
    ) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        let receiver = c.ends[1 - dir];
        if !receiver.open {
            return;
        }
        self.interfaces[receiver.node]
            .download
            .push(queue.now(), (id, dir as u8), size, packet);
        self.arm_link(receiver.node, LinkSide::Download, queue);
    }

    /// A packet left the receiver's download link: what its machine gets, if its end is
    /// still open.
    pub fn left_download(
        &mut self,
        (id, dir): (u64, usize),
        packet: Packet,
        queue: &mut EventQueue<Event>,
    ) -> Option<Delivery> {
        let now = queue.now();
        let conn = self.conns.get_mut(&id)?;
        let receiver = conn.ends[1 - dir];
        if !receiver.open {
            return None;
        }
        let node = receiver.node;
        match packet {
            Packet::Data(data) => match *data {
                Data::Handshake(bytes) => Some(Delivery::Handshake {
                    conn: id,
                    end: 1 - dir,
                    bytes,
                }),
                Data::Message(message) => Some(Delivery::Message {
                    node,
                    local: receiver.local?,
                    from: conn.ends[dir].node,
                    message,
                }),
            },
            Packet::Fin => {
                conn.ends[1 - dir].open = false;
                let both_closed = !conn.ends[dir].open;
                if both_closed {
                    self.conns.remove(&id);
                }
                // Our queued bytes to a closed peer are dropped (it answers with RST).
                let outgoing = (id, (1 - dir) as u8);
                self.interfaces[node].upload.remove_flow(now, outgoing);
                self.arm_link(node, LinkSide::Upload, queue);
                self.interfaces[node].handshaking.remove(&id);
                // An end still in its handshake has no machine to tell.
                let local = receiver.local?;
                self.interfaces[node].local_conns.remove(&local);
                Some(Delivery::Closed { node, local })
            }
        }
    }
}
