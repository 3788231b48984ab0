//! The recovery checker: after a tracker restart (and after the heal, if the tracker ever
//! restarted), every live peer undisturbed since is known to the tracker again within
//! `recovery_bound_ms`.
//!
//! A value the world tells of each restart (it answers when to check) and feeds each check
//! as it comes due; the run is not done while a check is pending.

use crate::event_queue::{NANOS_PER_MS, Nanos};
use crate::violations::{FailureKind, Violations};
use crate::world::network::Network;
use crate::world::node::{Life, Node, Role, TRACKER_NODE};

pub(crate) struct Recovery {
    recovery_bound_ms: u64,
    /// Checks scheduled and not yet run.
    checks_pending: u32,
    /// Whether the tracker restarted at least once: then the heal is checked as well.
    pub tracker_ever_restarted: bool,
}

impl Recovery {
    pub fn new(recovery_bound_ms: u64) -> Recovery {
        Recovery {
            recovery_bound_ms,
            checks_pending: 0,
            tracker_ever_restarted: false,
        }
    }

    /// A check of everything undisturbed since `now` is due: returns when.
    pub fn expect(&mut self, now: Nanos) -> Nanos {
        self.checks_pending += 1;
        now + self.recovery_bound_ms * NANOS_PER_MS
    }

    pub fn all_checked(&self) -> bool {
        self.checks_pending == 0
    }

    /// A check came due; `current` says whether the tracker is the incarnation it was
    /// scheduled for (a check of an older one is dropped).
    pub fn check(
        &mut self,
        violations: &mut Violations,
        now: Nanos,
        (restarted_at, current): (Nanos, bool),
        nodes: &[Node],
        network: &Network,
    ) {
        self.checks_pending = self.checks_pending.saturating_sub(1);
        if current {
            self.check_known(violations, now, restarted_at, nodes, network);
        }
    }

    /// Every live peer that was up and reachable since `restarted_at` is known.
    fn check_known(
        &self,
        violations: &mut Violations,
        now: Nanos,
        restarted_at: Nanos,
        nodes: &[Node],
        network: &Network,
    ) {
        let tracker_node = &nodes[TRACKER_NODE];
        let Some(tracker) = tracker_node.machine.as_ref().and_then(|m| m.tracker()) else {
            return;
        };
        if tracker_node.disrupted_at > restarted_at {
            return;
        }
        let unknown: Vec<String> = nodes
            .iter()
            .enumerate()
            .filter(|&(index, n)| {
                n.role != Role::Tracker
                    && n.life == Life::Up
                    && n.machine.is_some()
                    && n.disrupted_at <= restarted_at
                    && network.reachable(index, TRACKER_NODE)
            })
            .filter(|(_, n)| !tracker.is_peer_known(n.peer_id))
            .map(|(_, n)| n.addr.clone())
            .collect();
        if !unknown.is_empty() {
            let bound = self.recovery_bound_ms;
            violations.push(
                FailureKind::Recovery,
                now,
                format!(
                    "{} live peers unknown to the tracker {bound} ms after its restart: {}",
                    unknown.len(),
                    unknown.join(", ")
                ),
            );
        }
    }
}
