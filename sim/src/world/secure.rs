//! Private swarms in the simulator: every connection runs the real Noise handshake
//! (`p2p_core::secure::Handshake`) before either machine hears of it.
//!
//! A connection's life: the SYN reaches a listening node, which starts the responder's half
//! and sends the SYN-ACK; when that is back, the dialler starts the initiator's half and
//! sends message 1. The three handshake messages travel as packets of their real sizes
//! over the same links, latency and jitter as everything else. The dialler's machine gets
//! `handle_connected` once it has sent message 3 (as the runtime's does); the acceptor's
//! machine gets `accept` once message 3 is read and accepted. Both are told who is at the
//! other end as the handshake proved it (`Session::remote`), never as the simulator knows
//! it. A handshake refused by either side closes the connection (the dialler's machine
//! hears a close); one not done within [`HANDSHAKE_TIMEOUT`] of the SYN breaks it.
//! Keys: every process (a peer's, the tracker's) draws a new static key from the world's
//! RNG at start, and its id is the key's; handshake seeds come from the same RNG.
//!
//! The record layer is not run. After the handshake a machine's message is counted on the
//! wire as [`record_wire_size`] of its frame (the AEAD tag and length prefix of every
//! record), so bandwidth and timing are modelled, but its bytes are not sealed and opened.
//! Why: sealing is exercised by the core's unit tests, the record-decoder fuzz target and
//! the end-to-end tests over real sockets; running AES-GCM over the gigabytes of chunks a
//! sweep moves would dominate the simulator's time and change nothing it checks (a record
//! either opens to the very frame that was sealed or closes the connection, and who may
//! send records at all is decided by the handshake, which is the real one).

use std::collections::BTreeMap;

use p2p_core::secure::record::sealed_len;
use p2p_core::secure::{HANDSHAKE_TIMEOUT, Handshake, Keyring, Remote, SecureError, StaticKey};
use rand::RngCore;

use crate::trace::DigestTag;
use crate::world::World;
use crate::world::connection::Data;
use crate::world::event::Event;
use crate::world::node::{Machine, Role};

/// Bytes a frame of `frame_len` bytes takes on the wire once sealed into records.
pub(crate) fn record_wire_size(frame_len: u64) -> u64 {
    sealed_len(frame_len as usize) as u64
}

/// The handshakes in progress, by simulator connection.
#[derive(Default)]
pub(crate) struct Handshakes {
    by_conn: BTreeMap<u64, Pending>,
}

/// The two halves of one connection's handshake; each is taken when its side is done.
#[derive(Default)]
struct Pending {
    /// `None` until the SYN-ACK is back, and again once message 3 is sent.
    dialler: Option<Handshake>,
    acceptor: Option<Handshake>,
}

/// Which end of a connection: 0 dialled, 1 accepted (as in `connection.rs`).
const DIALLER: usize = 0;
const ACCEPTOR: usize = 1;

impl World {
    /// A new process's static key.
    pub(crate) fn draw_key(&mut self) -> StaticKey {
        let mut private = [0u8; 32];
        self.rng.fill_bytes(&mut private);
        StaticKey::from_private(private)
    }

    fn draw_handshake_seed(&mut self) -> [u8; 32] {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        seed
    }

    /// Node `node` took connection `id`'s SYN: its half of the handshake waits for
    /// message 1, and the handshake's deadline starts.
    pub(crate) fn handshake_begin(&mut self, id: u64, node: usize) {
        let seed = self.draw_handshake_seed();
        let Some(key) = self.nodes[node].key.as_ref() else {
            return;
        };
        let pending = Pending {
            dialler: None,
            acceptor: Some(Handshake::respond(key, seed)),
        };
        self.handshakes.by_conn.insert(id, pending);
        let deadline = self.now() + HANDSHAKE_TIMEOUT.as_nanos() as u64;
        self.queue
            .schedule(deadline, Event::HandshakeTimeout { conn: id });
    }

    /// The SYN-ACK is back at `node`, the dialler: message 1 goes out.
    pub(crate) fn handshake_dial(&mut self, id: u64, node: usize) {
        let seed = self.draw_handshake_seed();
        let n = &self.nodes[node];
        let (Some(key), Some(pending)) = (n.key.as_ref(), self.handshakes.by_conn.get_mut(&id))
        else {
            return;
        };
        let mut handshake = Handshake::initiate(key, &n.secret, seed);
        let message_1 = handshake.take_transmit();
        pending.dialler = Some(handshake);
        if let Some(bytes) = message_1 {
            self.send_handshake(node, (id, DIALLER), bytes);
        }
    }

    /// A handshake message arrived at end `end` of connection `id`.
    pub(crate) fn on_handshake_bytes(&mut self, id: u64, end: usize, bytes: Vec<u8>) {
        let Some(at) = self.network.end(id, end) else {
            return;
        };
        let node = at.node;
        let Some(pending) = self.handshakes.by_conn.get_mut(&id) else {
            // Timed out meanwhile: the connection is already broken.
            return;
        };
        let half = if end == DIALLER {
            &mut pending.dialler
        } else {
            &mut pending.acceptor
        };
        let Some(handshake) = half.as_mut() else {
            return;
        };
        // A dialler accepts only the swarm it asked for; a responder those of its keyring.
        let no_keyring = Keyring::new();
        let keyring = if end == DIALLER {
            &no_keyring
        } else {
            &self.nodes[node].keyring
        };
        if let Err(error) = handshake.handle_input(&bytes, keyring) {
            self.handshake_failed(id, end, error);
            return;
        }
        let reply = handshake.take_transmit();
        let finished = handshake.is_finished().then(|| half.take()).flatten();
        if end == ACCEPTOR && finished.is_some() {
            self.handshakes.by_conn.remove(&id);
        }
        if let Some(bytes) = reply {
            self.send_handshake(node, (id, end), bytes);
        }
        if let Some(handshake) = finished {
            match handshake.into_session() {
                Ok(session) => self.session_opened(id, end, session.remote),
                Err(error) => self.handshake_failed(id, end, error),
            }
        }
    }

    fn send_handshake(&mut self, node: usize, (id, end): (u64, usize), bytes: Vec<u8>) {
        let size = bytes.len() as u64;
        self.stats.handshake_messages += 1;
        self.stats.bytes_sent += size;
        self.digest
            .mix_tagged(DigestTag::HandshakeSend, &[node as u64, id, size]);
        self.network.send(
            node,
            (id, end),
            size,
            Data::Handshake(bytes),
            &mut self.queue,
        );
    }

    /// End `end` of connection `id` finished its handshake with `remote` at the other end:
    /// its machine hears of the connection.
    fn session_opened(&mut self, id: u64, end: usize, remote: Remote) {
        let now = self.now();
        let (Some(here), Some(there)) = (self.network.end(id, end), self.network.end(id, 1 - end))
        else {
            return;
        };
        let node = here.node;
        self.trust.on_session(
            &mut self.violations,
            now,
            (&self.nodes[node], &self.nodes[there.node]),
            &remote,
        );
        self.trace(|| format!("node{node} session {id} with {}", remote.peer_id));
        if end == ACCEPTOR {
            let mut accepted = None;
            // Trackers and peers list the dialler at its node's address (the port it claims).
            let from = self.nodes[there.node].addr.clone();
            self.drive(node, |m, now| accepted = m.accept(now, remote, from));
            self.digest
                .mix_tagged(DigestTag::Accept, &[id, accepted.map_or(0, |c| c.0)]);
            match accepted {
                Some(local) => self.network.accepted(id, local),
                // Refused (a peer at its connection limit): the dialler hears a close.
                None => self
                    .network
                    .close_end(node, (id, ACCEPTOR), &mut self.queue),
            }
        } else if let Some(local) = here.local {
            self.digest.mix_tagged(DigestTag::Connected, &[id]);
            if self.nodes[node].role.is_intruder() {
                self.intruder_connected(node, local);
                return;
            }
            self.drive(node, |m, now| {
                if let Machine::Peer(p) = m {
                    p.handle_connected(now, local, remote);
                }
            });
        }
    }

    /// One side refused the handshake: the connection is closed, and a dialling machine
    /// hears so. Nothing of it reached a machine before.
    fn handshake_failed(&mut self, id: u64, end: usize, error: SecureError) {
        self.handshakes.by_conn.remove(&id);
        self.stats.handshakes_refused += 1;
        let dialler = self.network.end(id, DIALLER).map(|e| e.node);
        if dialler.is_some_and(|d| self.nodes[d].role == Role::Outsider) {
            self.stats.outsider_handshakes_refused += 1;
        }
        self.digest
            .mix_tagged(DigestTag::HandshakeRefused, &[id, end as u64]);
        let Some(at) = self.network.end(id, end) else {
            return;
        };
        let node = at.node;
        self.trace(|| format!("node{node} handshake {id} refused: {error}"));
        match at.local {
            Some(local) => {
                self.network.close(node, local, &mut self.queue);
                self.drive(node, |m, now| m.handle_closed(now, local));
            }
            None => self.network.close_end(node, (id, end), &mut self.queue),
        }
    }

    /// A handshake still not done [`HANDSHAKE_TIMEOUT`] after its SYN: the connection breaks.
    pub(crate) fn on_handshake_timeout(&mut self, id: u64) {
        if self.handshakes.by_conn.remove(&id).is_none() {
            return;
        }
        self.stats.handshakes_timed_out += 1;
        self.digest.mix_tagged(DigestTag::HandshakeTimeout, &[id]);
        self.trace(|| format!("handshake {id} timed out"));
        self.network
            .break_conn(id, false, &self.nodes, &mut self.queue, &mut self.rng);
    }
}
