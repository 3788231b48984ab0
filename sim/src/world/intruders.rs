//! Intruders: nodes without a machine, driven by the world, that try to get into the
//! swarm during the fault phase. Each dials a random node (the tracker or a peer) every
//! `intruder_dial_interval_ms`, with the real handshake (`secure.rs`):
//!
//! - an *outsider* holds another swarm's secret: every handshake must be refused, and no
//!   machine may ever accept its connection or read a message of it;
//! - an *impostor* holds the swarm's secret and its own key, so its handshakes succeed;
//!   then it sends a `Hello` claiming another live peer's id. Tracker and peers must
//!   refuse it (an `Error`, then a close); the peer it names must keep its tracker session and
//!   never be banned.
//!
//! The trust checker (`trust.rs`) and the safety checker's ban rule judge the outcome; the
//! counters in `Stats` show the intruders were really refused (the tests require it).

use p2p_core::ids::{ConnId, PeerId};
use p2p_core::wire::{Message, PROTOCOL_VERSION};
use rand::Rng;

use crate::event_queue::NANOS_PER_MS;
use crate::world::World;
use crate::world::event::Event;
use crate::world::node::{Life, Role, TRACKER_NODE};

impl World {
    /// The intruder `node` is up (its key drawn): it starts dialling.
    pub(crate) fn start_intruder(&mut self, node: usize) {
        let now = self.now();
        self.queue.schedule(now, Event::IntruderDial { node });
    }

    /// An intruder dials a random member node, and again after the interval, until the
    /// fault phase ends.
    pub(crate) fn on_intruder_dial(&mut self, node: usize) {
        let now = self.now();
        if now >= self.heal_at {
            return;
        }
        let members = self.config.peer_count as usize + 2;
        let target = self.rng.random_range(0..members);
        let addr = self.nodes[target].addr.clone();
        let local = ConnId(self.next_intruder_conn);
        self.next_intruder_conn += 1;
        self.stats.intruder_dials += 1;
        self.connect(node, local, &addr);
        let interval = self.config.faults.intruder_dial_interval_ms.max(1) * NANOS_PER_MS;
        self.queue
            .schedule(now + interval, Event::IntruderDial { node });
    }

    /// An intruder's handshake as dialler succeeded (only an impostor's can): it sends a
    /// `Hello` claiming a live peer's id, address and swarm.
    pub(crate) fn intruder_connected(&mut self, node: usize, local: ConnId) {
        if self.nodes[node].role != Role::Impostor {
            return;
        }
        let Some(victim) = self.pick_victim() else {
            self.close(node, local);
            return;
        };
        let hello = Message::Hello {
            version: PROTOCOL_VERSION,
            peer_id: self.nodes[victim].peer_id,
            listen_addr: self.nodes[victim].addr.clone(),
            swarm: self.swarm_secret.tag().name(),
        };
        self.send(node, local, hello);
    }

    /// A live peer to impersonate (the seeder or a downloader), at random.
    fn pick_victim(&mut self) -> Option<usize> {
        let live: Vec<usize> = (TRACKER_NODE + 1..self.config.peer_count as usize + 2)
            .filter(|&n| self.nodes[n].life == Life::Up && self.nodes[n].machine.is_some())
            .collect();
        if live.is_empty() {
            return None;
        }
        Some(live[self.rng.random_range(0..live.len())])
    }

    /// A message reached an intruder: whatever it is, the intruder is done with that
    /// connection. An `Error` is the refusal of its `Hello` (`IDENTITY_MISMATCH`, from the
    /// tracker and from peers alike); a `Welcome` would mean its claim was believed.
    pub(crate) fn intruder_heard(
        &mut self,
        (node, local): (usize, ConnId),
        from: usize,
        message: &Message,
    ) {
        let now = self.now();
        match message {
            Message::Error { .. } => {
                if from == TRACKER_NODE {
                    self.stats.impostor_refused_by_tracker += 1;
                } else {
                    self.stats.impostor_refused_by_peers += 1;
                }
            }
            Message::Welcome { .. } => {
                self.trust
                    .on_impostor_welcomed(&mut self.violations, now, &self.nodes[node]);
            }
            _ => {}
        }
        self.close(node, local);
    }

    /// Whether the tracker (if up) has a session for `peer_id`.
    pub(crate) fn tracker_knows(&self, peer_id: PeerId) -> bool {
        self.nodes[TRACKER_NODE]
            .machine
            .as_ref()
            .and_then(|m| m.tracker())
            .is_some_and(|t| t.is_peer_known(peer_id))
    }
}
