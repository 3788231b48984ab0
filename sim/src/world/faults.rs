//! The fault plan carried out: each planned [`Fault`] (drawn up front by `crate::faults`)
//! done to the nodes and the network when it comes due, and the heal that ends the fault
//! phase (partitions and spikes end, crashed peers and the tracker restart; peers that left
//! for good stay gone).

use rand::RngCore;

use crate::event_queue::NANOS_PER_S;
use crate::faults::Fault;
use crate::trace::DigestTag;
use crate::world::World;
use crate::world::event::Event;
use crate::world::node::{Life, Machine, TRACKER_NODE};

impl World {
    pub(crate) fn on_fault(&mut self, fault: Fault) {
        if self.healed {
            // The fault phase is over (a swizzle may have been planned to run past it).
            return;
        }
        self.trace(|| format!("fault {fault:?}"));
        match fault {
            Fault::PeerCrash { node } => {
                if self.nodes[node].life == Life::Up {
                    self.digest.mix_tagged(DigestTag::PeerCrash, &[node as u64]);
                    self.stats.crashes += 1;
                    self.crash(node);
                }
            }
            Fault::PeerRestart { node } => {
                if self.nodes[node].life == Life::Down {
                    self.digest
                        .mix_tagged(DigestTag::PeerRestart, &[node as u64]);
                    self.start(node);
                }
            }
            Fault::PeerLeave { node, graceful } => self.leave(node, graceful),
            Fault::TrackerDown => {
                if self.nodes[TRACKER_NODE].life == Life::Up {
                    self.digest.mix_tagged(DigestTag::TrackerDown, &[]);
                    self.crash(TRACKER_NODE);
                }
            }
            Fault::TrackerUp => self.restart_tracker(),
            Fault::Partition { nodes } => {
                let group = self.rng.next_u32() | 1;
                self.set_groups(&nodes, group);
            }
            Fault::PartitionHeal { nodes } => self.set_groups(&nodes, 0),
            Fault::Isolate { node } => {
                let group = self.rng.next_u32() | 1;
                self.set_groups(&[node], group);
            }
            Fault::Rejoin { node } => self.set_groups(&[node], 0),
            Fault::LatencySpike { node, factor } => self.network.set_latency_factor(node, factor),
            Fault::LatencySpikeEnd { node } => self.network.set_latency_factor(node, 1),
        }
    }

    /// A peer leaves for good: saying goodbye first when `graceful`, else as in a crash.
    fn leave(&mut self, node: usize, graceful: bool) {
        let now = self.now();
        if self.nodes[node].life == Life::Departed {
            return;
        }
        self.digest
            .mix_tagged(DigestTag::PeerLeave, &[node as u64, graceful as u64]);
        if graceful && self.nodes[node].life == Life::Up {
            self.drive(node, |m, now| {
                if let Machine::Peer(p) = m {
                    p.shutdown(now);
                }
            });
            // The machine stays until its goodbyes are out, then goes.
            let incarnation = self.nodes[node].incarnation;
            self.queue
                .schedule(now + NANOS_PER_S, Event::Depart { node, incarnation });
            self.nodes[node].life = Life::Departed;
        } else {
            if self.nodes[node].life == Life::Up {
                self.crash(node);
            }
            self.nodes[node].life = Life::Departed;
        }
    }

    fn restart_tracker(&mut self) {
        let now = self.now();
        if self.nodes[TRACKER_NODE].life != Life::Down {
            return;
        }
        self.digest.mix_tagged(DigestTag::TrackerRestart, &[]);
        self.stats.tracker_restarts += 1;
        self.recovery.tracker_ever_restarted = true;
        self.start(TRACKER_NODE);
        self.expect_recovery(now);
    }

    /// Schedules a recovery check of everything undisturbed since `now`.
    fn expect_recovery(&mut self, now: u64) {
        let due = self.recovery.expect(now);
        let tracker_incarnation = self.nodes[TRACKER_NODE].incarnation;
        self.queue.schedule(
            due,
            Event::RecoveryCheck {
                tracker_incarnation,
                restarted_at: now,
            },
        );
    }

    /// Moves nodes to a partition group and breaks every connection that now crosses one.
    fn set_groups(&mut self, nodes: &[usize], group: u32) {
        let now = self.now();
        self.digest
            .mix_tagged(DigestTag::Regroup, &[group as u64, nodes.len() as u64]);
        for &node in nodes {
            if self.network.set_group(node, group) {
                self.nodes[node].disrupted_at = now;
            }
        }
        for id in self.network.crossing_conns() {
            self.network
                .break_conn(id, false, &self.nodes, &mut self.queue, &mut self.rng);
        }
    }

    /// The fault phase is over: everything comes back and stays up.
    pub(crate) fn heal(&mut self) {
        let now = self.now();
        self.digest.mix_tagged(DigestTag::Heal, &[]);
        self.trace(|| "heal: every partition, crash and spike ends".into());
        self.healed = true;
        self.heal_at = now;
        self.deadline = now + self.config.liveness_bound_ms * crate::event_queue::NANOS_PER_MS;
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.set_groups(&all, 0);
        for node in 0..self.nodes.len() {
            self.network.set_latency_factor(node, 1);
        }
        if self.nodes[TRACKER_NODE].life == Life::Down {
            self.restart_tracker();
        }
        for node in 1..self.nodes.len() {
            if self.nodes[node].life == Life::Down {
                self.start(node);
            }
        }
        if self.recovery.tracker_ever_restarted {
            // Once healed, every live peer must be known again, whatever happened before.
            self.expect_recovery(now);
        }
        self.check_done();
    }
}
