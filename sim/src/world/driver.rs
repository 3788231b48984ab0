//! Driving the machines: one input, then every action drained and carried out, then the
//! timer re-armed; what each action and notice does to the world; and a node's machine
//! started (from its disk) or lost in a crash.

use p2p_core::peer::{Peer, PeerAction, PeerConfig, PeerNotice};
use p2p_core::time::Instant;
use p2p_core::tracker::{Tracker, TrackerConfig};
use rand::RngCore;

use crate::trace::DigestTag;
use crate::violations::FailureKind;
use crate::world::World;
use crate::world::event::{Event, OriginRequest};
use crate::world::node::{Life, Machine, Role, TRACKER_NODE, panic_message};

impl World {
    /// Gives `node`'s machine one input, then carries out everything it asks for.
    pub(crate) fn drive(&mut self, node: usize, input: impl FnOnce(&mut Machine, Instant)) {
        let now = self.now();
        let Some(machine) = self.nodes[node].machine.as_mut() else {
            return;
        };
        let at = Instant::from_nanos(now);
        let mut actions = std::mem::take(&mut self.actions_scratch);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            input(machine, at);
            while let Some(action) = machine.poll_action() {
                actions.push(action);
            }
            (actions, machine.poll_timeout())
        }));
        let (mut actions, timeout) = match result {
            Ok(r) => r,
            Err(panic) => {
                let message = panic_message(&panic);
                let addr = self.nodes[node].addr.clone();
                self.violations.push(
                    FailureKind::Crash,
                    now,
                    format!("{addr}: the core machine panicked: {message}"),
                );
                self.stopped = true;
                return;
            }
        };
        for action in actions.drain(..) {
            self.perform(node, action);
        }
        self.actions_scratch = actions;
        let wake = timeout.map(|t| t.as_nanos().max(now));
        let n = &mut self.nodes[node];
        if wake != n.wake_at {
            n.wake_at = wake;
            if let Some(at) = wake {
                let incarnation = n.incarnation;
                self.queue.schedule(at, Event::Wake { node, incarnation });
            }
        }
    }

    fn perform(&mut self, node: usize, action: PeerAction) {
        match action {
            PeerAction::Connect { conn, addr } => self.connect(node, conn, &addr),
            PeerAction::Send { conn, message } => self.send(node, conn, message),
            PeerAction::Close { conn } => self.close(node, conn),
            PeerAction::ReadChunk {
                token,
                content_id,
                chunk_index,
                offset,
                length,
            } => self.read_chunk(node, token, content_id, (chunk_index, offset, length)),
            PeerAction::StoreChunk {
                token,
                content_id,
                chunk_index,
                check,
                data,
            } => self.store_chunk(node, token, content_id, chunk_index, check, data),
            PeerAction::PrepareDownload {
                content_id,
                manifest,
            } => self.prepare_download(node, content_id, manifest.chunk_count()),
            PeerAction::Notify(notice) => self.on_notice(node, notice),
            // Only a coop run has an origin (see `origin.rs`, `coop.rs`); elsewhere these
            // are dropped.
            PeerAction::FetchRange {
                token,
                url: _,
                validator,
                offset,
                length,
                helping,
            } => {
                let request = OriginRequest {
                    node,
                    incarnation: 0,
                    token,
                    validator,
                    offset,
                    length,
                    helping,
                    failed: false,
                    written_when_asked: 0,
                };
                self.fetch_range(node, request);
            }
            PeerAction::WriteRange {
                token,
                offset,
                data,
                ..
            } => self.write_range(node, token, offset, data),
            PeerAction::CancelFetch { token } => {
                self.digest
                    .mix_tagged(DigestTag::OriginAction, &[node as u64, token]);
                self.cancel_fetch(node, token);
            }
        }
    }

    fn on_notice(&mut self, node: usize, notice: PeerNotice) {
        let now = self.now();
        let node_tag = node as u64;
        self.trace(|| format!("node{node} notice {notice:?}"));
        match notice {
            PeerNotice::DownloadComplete { content_id } => {
                self.digest
                    .mix_tagged(DigestTag::DownloadComplete, &[node_tag]);
                self.safety.on_complete(
                    &mut self.violations,
                    now,
                    &self.nodes[node],
                    content_id,
                    &self.source,
                );
                let n = &mut self.nodes[node];
                if n.completed_at.is_none() && n.role == Role::Leecher {
                    n.completed_at = Some(now);
                }
                n.failed = None;
                self.check_done();
            }
            PeerNotice::DownloadFailed {
                reason,
                missing_chunks,
                ..
            } => {
                self.digest
                    .mix_tagged(DigestTag::DownloadFailed, &[node_tag]);
                self.nodes[node].failed = Some(format!(
                    "{reason} (missing chunks: {})",
                    missing_chunks.len()
                ));
            }
            PeerNotice::PeerBanned { peer_id, .. } => {
                self.digest
                    .mix_tagged(DigestTag::PeerBanned, &[node_tag, peer_id.0]);
                self.stats.peers_banned += 1;
                let culprit = self.peer_owner.get(&peer_id).map(|&c| &self.nodes[c]);
                self.safety.on_ban(
                    &mut self.violations,
                    now,
                    (&self.nodes[node], peer_id),
                    culprit,
                );
            }
            PeerNotice::TrackerConnected { .. } => self
                .digest
                .mix_tagged(DigestTag::TrackerConnected, &[node_tag]),
            PeerNotice::TrackerLost { .. } => {
                self.digest.mix_tagged(DigestTag::TrackerLost, &[node_tag])
            }
            PeerNotice::Progress { chunks_have, .. } => self
                .digest
                .mix_tagged(DigestTag::Progress, &[node_tag, u64::from(chunks_have)]),
            PeerNotice::FetchComplete { .. } => {
                self.digest.mix_tagged(DigestTag::OriginNotice, &[node_tag]);
                self.on_fetch_complete(node);
            }
            PeerNotice::FetchFailed { reason, .. } => {
                self.digest.mix_tagged(DigestTag::OriginNotice, &[node_tag]);
                self.on_fetch_failed(node, reason);
            }
            PeerNotice::RangeFetched { .. }
            | PeerNotice::RangeSettled { .. }
            | PeerNotice::RangeDropped { .. }
            | PeerNotice::FetchProgress { .. }
            | PeerNotice::HelperCaught { .. }
            | PeerNotice::HelperLeft { .. } => {
                self.digest.mix_tagged(DigestTag::OriginNotice, &[node_tag])
            }
        }
    }

    /// Starts (or restarts, from its disk) the machine of `node`.
    pub(crate) fn start(&mut self, node: usize) {
        let now = self.now();
        let rng_seed = self.rng.next_u64();
        // A new process makes a new static key, and speaks under its id.
        let key = self.draw_key();
        let peer_id = key.peer_id();
        self.peer_owner.insert(peer_id, node);
        let n = &mut self.nodes[node];
        n.peer_id = peer_id;
        n.key = Some(key);
        n.life = Life::Up;
        n.disrupted_at = now;
        n.wake_at = None;
        n.same_instant_wakes = 0;
        if n.role.is_intruder() {
            self.start_intruder(node);
            return;
        }
        if n.role == Role::Tracker {
            let config = TrackerConfig {
                peer_timeout: self.tracker_peer_timeout,
                rng_seed,
                tracker_id: peer_id,
                ..TrackerConfig::default()
            };
            n.machine = Some(Machine::Tracker(Box::new(Tracker::new(config))));
            self.drive(node, |_, _| {});
            return;
        }
        self.start_peer(node, rng_seed);
    }

    /// A peer's new process: its machine, then it shares or downloads from its disk.
    fn start_peer(&mut self, node: usize, rng_seed: u64) {
        let at = Instant::from_nanos(self.now());
        let tracker_addr = self.nodes[TRACKER_NODE].addr.clone();
        let config = PeerConfig {
            peer_id: self.nodes[node].peer_id,
            swarm: self.nodes[node].secret.tag().name(),
            listen_addr: self.nodes[node].addr.clone(),
            trackers: vec![tracker_addr],
            rng_seed,
            ..self.peer_config_template.clone()
        };
        self.nodes[node].machine = Some(Machine::Peer(Box::new(Peer::new(config, at))));
        match self.nodes[node].role {
            // A helper only waits for jobs to be offered.
            Role::Helper => return self.drive(node, |_, _| {}),
            Role::Fetcher if !self.nodes[node].disk.is_complete(self.source.content_id) => {
                return self.start_fetch(node);
            }
            Role::Fetcher => return self.publish_fetched(node),
            _ => {}
        }
        let content_id = self.source.content_id;
        let full = self.nodes[node].disk.is_complete(content_id);
        let manifest = self.source.manifest.clone();
        if full {
            // A node with the whole file on disk shares it, as `p2p share` would.
            self.drive(node, |m, now| {
                if let Machine::Peer(p) = m {
                    p.publish(now, manifest);
                }
            });
        } else {
            let known = self.nodes[node].has_manifest.then_some(manifest);
            self.drive(node, |m, now| {
                if let Machine::Peer(p) = m {
                    p.download(now, content_id, known);
                }
            });
        }
    }

    /// The node's process dies: memory and connections gone, disk kept.
    pub(crate) fn crash(&mut self, node: usize) {
        let now = self.now();
        let n = &mut self.nodes[node];
        n.machine = None;
        n.incarnation += 1;
        n.life = Life::Down;
        n.wake_at = None;
        n.disrupted_at = now;
        self.network
            .break_node(node, &self.nodes, &mut self.queue, &mut self.rng);
    }
}
