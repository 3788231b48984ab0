//! The trust checker: the handshake is the only way into a swarm, and a stolen id is
//! useless. No machine opens a session with, or hears a message from, a node that does
//! not hold the swarm secret; a session's proven id is the key of the node really at the
//! other end; and an impostor's `Hello` (a member claiming another live peer's id) never
//! evicts that peer from the tracker. (That no peer bans an impostor's victim is the
//! safety checker's rule that no honest peer is ever banned.)
//!
//! Like the other checkers it is a value fed observations. It judges by the world's own
//! records of who holds which secret and key, not by what the handshake said, so a
//! handshake that let the wrong party in would show here.

use p2p_core::ids::PeerId;
use p2p_core::secure::{Remote, SwarmSecret};

use crate::event_queue::Nanos;
use crate::violations::{FailureKind, Violations};
use crate::world::node::Node;

pub(crate) struct Trust {
    secret: SwarmSecret,
}

impl Trust {
    /// Judges membership by `secret`, the swarm's.
    pub fn new(secret: SwarmSecret) -> Trust {
        Trust { secret }
    }

    fn is_member(&self, node: &Node) -> bool {
        node.secret == self.secret
    }

    /// A handshake finished at `local`, with `remote` (proven as `proven`) at the other end.
    pub fn on_session(
        &self,
        violations: &mut Violations,
        now: Nanos,
        (local, remote): (&Node, &Node),
        proven: &Remote,
    ) {
        if !self.is_member(remote) {
            violations.push(
                FailureKind::Safety,
                now,
                format!(
                    "{} opened a session with {}, which does not hold the swarm secret",
                    local.addr, remote.addr
                ),
            );
        }
        let key_id = remote.key.as_ref().map(|k| k.peer_id());
        if key_id != Some(proven.peer_id) {
            violations.push(
                FailureKind::Safety,
                now,
                format!(
                    "{}'s session names peer {} at the other end, but {}'s key is {key_id:?}",
                    local.addr, proven.peer_id, remote.addr
                ),
            );
        }
    }

    /// A message from `from` was handed to `to`'s machine.
    pub fn on_message(&self, violations: &mut Violations, now: Nanos, (to, from): (&Node, &Node)) {
        if !self.is_member(from) {
            violations.push(
                FailureKind::Safety,
                now,
                format!(
                    "{} got a message from {}, which does not hold the swarm secret",
                    to.addr, from.addr
                ),
            );
        }
    }

    /// An impostor got a `Welcome`: someone believed its claim.
    pub fn on_impostor_welcomed(&self, violations: &mut Violations, now: Nanos, impostor: &Node) {
        violations.push(
            FailureKind::Safety,
            now,
            format!(
                "{} was welcomed under another peer's id, without its key",
                impostor.addr
            ),
        );
    }

    /// The tracker handled an impostor's `Hello` claiming `victim`'s id: if the tracker
    /// knew the victim before, it still does.
    pub fn on_impostor_hello(
        &self,
        violations: &mut Violations,
        now: Nanos,
        (impostor, victim): (&Node, PeerId),
        known: (bool, bool),
    ) {
        let (before, after) = known;
        if before && !after {
            violations.push(
                FailureKind::Safety,
                now,
                format!(
                    "the tracker evicted peer {victim} on a Hello from {}, which does not hold its key",
                    impostor.addr
                ),
            );
        }
    }
}
