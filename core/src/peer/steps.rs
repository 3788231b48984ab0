//! The steps of the peer that need several parts at once: what a tracker message leads
//! to, dialling sources, a chunk verified or a peer banned, the periodic timers, handing out
//! requests and closing connections. The facade's inputs call these (messages from peers
//! are in `peer_messages`); each part's own logic stays in its module and is only
//! sequenced here.

use super::{Peer, PeerAction, PeerNotice};
use crate::ids::{ConnId, ContentId, PeerId};
use crate::manifest::Manifest;
use crate::time::Instant;
use crate::wire::{Message, PROTOCOL_VERSION, PeerChunks};

impl Peer {
    // ------------------------------------------------------------------ tracker session

    pub(super) fn on_tracker_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        let Some(session) = self.trackers.of_conn(conn) else {
            return;
        };
        let (awaiting_welcome, ready) = (session.is_awaiting_welcome(), session.is_ready());
        match message {
            Message::Welcome { version, .. } if awaiting_welcome && version == PROTOCOL_VERSION => {
                self.on_tracker_welcome(now, conn);
            }
            _ if !ready => self.drop_tracker(now, conn),
            Message::Located { content_id, peers } => self.on_located(now, content_id, peers),
            Message::ManifestReply { manifest } => self.on_manifest(manifest),
            Message::PeerList { peers } => {
                if self.coop.has_active_fetch() {
                    let helpers = peers
                        .into_iter()
                        .map(|p| (p.peer_id, p.listen_addr))
                        .collect();
                    self.connect_to(now, helpers);
                }
            }
            Message::NotFound { .. } | Message::OriginResult { .. } | Message::FileList { .. } => {}
            _ => self.drop_tracker(now, conn),
        }
    }

    /// A refusal, a goodbye or anything out of place: drop the session and reconnect later.
    fn drop_tracker(&mut self, now: Instant, conn: ConnId) {
        self.out.push(PeerAction::Close { conn });
        self.trackers
            .lost(now, conn, &self.config, &mut self.rng, &mut self.out);
    }

    fn on_tracker_welcome(&mut self, now: Instant, conn: ConnId) {
        let Some(session) = self.trackers.of_conn(conn) else {
            return;
        };
        session.welcomed(now, conn, &self.config, &mut self.out);
        // The tracker's state is soft: tell it everything again after every
        // (re)connect, then ask again about every running download.
        for (&content_id, held) in &self.serving.held {
            session.announce(content_id, Some(held), &mut self.out);
        }
        session.retell_origins(&mut self.out);
        if self.coop.has_active_fetch() {
            session.send(&mut self.out, Message::ListPeers);
        }
        session.drop_unsent_haves();
        for content_id in self.downloads.running_ids() {
            let needs_manifest = self
                .downloads
                .get(content_id)
                .is_some_and(|d| d.needs_manifest());
            session.locate(content_id, needs_manifest, &mut self.out);
        }
    }

    pub(super) fn announce(&mut self, content_id: ContentId) {
        self.trackers.announce(
            content_id,
            self.serving.held.get(&content_id),
            &mut self.out,
        );
    }

    pub(super) fn ask_tracker_about(&mut self, content_id: ContentId) {
        let Some(download) = self.downloads.get(content_id) else {
            return;
        };
        let needs_manifest = download.needs_manifest();
        self.trackers
            .locate(content_id, needs_manifest, &mut self.out);
    }

    fn on_located(&mut self, now: Instant, content_id: ContentId, peers: Vec<PeerChunks>) {
        let banned = self.downloads.banned(content_id).cloned();
        let Some(download) = self.downloads.get_mut(content_id) else {
            return;
        };
        // With several trackers each knows part of the swarm: their answers add up.
        let replace = self.trackers.count() == 1;
        download.set_candidates(peers, &self.config, banned.as_ref(), replace);
        self.connect_candidates(now, content_id);
    }

    pub(super) fn on_manifest(&mut self, manifest: Manifest) {
        let content_id = manifest.content_id();
        let Some(download) = self.downloads.get_mut(content_id) else {
            return;
        };
        if download.take_manifest(&manifest) {
            self.out.push(PeerAction::PrepareDownload {
                content_id,
                manifest,
            });
        }
    }

    // ------------------------------------------------------------------ dialling

    /// Opens connections to peers not yet connected (for a fetch's helpers), up to the limit.
    fn connect_to(&mut self, now: Instant, peers: Vec<(PeerId, String)>) {
        for (peer_id, addr) in peers {
            if self.conns.len() >= self.config.connections_max {
                break;
            }
            let known = peer_id == self.config.peer_id
                || addr.is_empty()
                || addr == self.config.listen_addr
                || self.conns.knows(peer_id, &addr);
            if !known {
                self.conns.open(now, addr, &mut self.out);
            }
        }
    }

    /// Opens connections to candidates of a download until it has enough sources, and to
    /// holders of any needed chunk that no connected source has, however many sources it
    /// has (within `connections_max`).
    pub(super) fn connect_candidates(&mut self, now: Instant, content_id: ContentId) {
        let Some(download) = self.downloads.get(content_id) else {
            return;
        };
        if download.is_finished() {
            return;
        }
        let room = self.config.connections_max.saturating_sub(self.conns.len());
        let mut to_connect = download.rescuers(|peer_id, addr| self.conns.knows(peer_id, addr));
        to_connect.truncate(room);
        let mut wanted = self
            .config
            .sources_per_download
            .saturating_sub(self.conns.sourcing_or_opening(content_id) + to_connect.len());
        // Each peer tries candidates in an order of its own: in one order (by id) a whole
        // crowd dials the same few peers, fills them and is refused there.
        let me = self.config.peer_id;
        let mut in_my_order: Vec<_> = download.candidates.iter().collect();
        in_my_order.sort_by_key(|(peer_id, _)| dial_order(me, **peer_id));
        for (peer_id, candidate) in in_my_order {
            if wanted == 0 || to_connect.len() >= room {
                break;
            }
            let addr = &candidate.addr;
            if !self.conns.knows(*peer_id, addr) && !addr.is_empty() && !to_connect.contains(addr) {
                to_connect.push(addr.clone());
                wanted -= 1;
            }
        }
        for addr in to_connect {
            self.conns.open(now, addr, &mut self.out);
        }
    }

    // ------------------------------------------------------------------ timers

    pub(super) fn conn_timers(&mut self, now: Instant) {
        let timers = self
            .conns
            .on_timer(now, &self.config, &mut self.rng, &mut self.out);
        for conn in timers.expired {
            self.close(conn);
        }
    }

    pub(super) fn download_timers(&mut self, now: Instant) {
        for content_id in self.downloads.ids() {
            self.download_timer(now, content_id);
        }
    }

    fn download_timer(&mut self, now: Instant, content_id: ContentId) {
        let Some(download) = self.downloads.get_mut(content_id) else {
            return;
        };
        if download.is_finished() {
            return;
        }
        let timers = download.on_timer(now, &self.config);
        for (peer, chunk_index, blocks) in timers.cancels {
            self.send_cancels(peer, content_id, chunk_index, &blocks);
        }
        if timers.locate_due {
            self.ask_tracker_about(content_id);
            self.connect_candidates(now, content_id);
        }
        if timers.resync {
            self.resync_bitfields(content_id);
        }
        if timers.stalled_out {
            self.give_up(content_id);
        }
    }

    /// Some needed chunk has no known source: what peers told us may be stale (a rejected
    /// request counts as "does not have"), so ask every connected peer for its bitfield
    /// again.
    fn resync_bitfields(&mut self, content_id: ContentId) {
        for conn in self.conns.interested_in(content_id) {
            self.out.send(conn, Message::Interested { content_id });
        }
    }

    fn give_up(&mut self, content_id: ContentId) {
        let Some(download) = self.downloads.get(content_id) else {
            return;
        };
        let reason = download.give_up_reason(&self.config, self.trackers.is_ready());
        self.fail_download(content_id, reason);
    }

    pub(super) fn fail_download(&mut self, content_id: ContentId, reason: String) {
        let Some(download) = self.downloads.get_mut(content_id) else {
            return;
        };
        if let Some(notice) = download.fail(reason) {
            self.out.notify(notice);
        }
    }

    // ------------------------------------------------------------------ chunks

    pub(super) fn chunk_verified(&mut self, content_id: ContentId, chunk_index: u32) {
        let scheduler = self
            .downloads
            .get_mut(content_id)
            .and_then(|d| d.scheduler.as_mut());
        if let Some(s) = scheduler {
            s.on_chunk_verified(chunk_index);
        }
        let Some(held) = self.serving.held.get_mut(&content_id) else {
            return;
        };
        if !held.chunks.insert(chunk_index) {
            return;
        }
        // Serve it at once: every peer that wants this content hears of it now (but one
        // that holds the chunk already: it will never ask), the tracker in a batch.
        let scheduler = self
            .downloads
            .get(content_id)
            .and_then(|d| d.scheduler.as_ref());
        for conn in self.conns.wanting(content_id) {
            let holds_it = scheduler
                .zip(self.conns.remote(conn))
                .is_some_and(|(s, remote)| s.peer_holds(remote, chunk_index));
            if holds_it {
                continue;
            }
            self.out.send(
                conn,
                Message::Have {
                    content_id,
                    chunk_indices: vec![chunk_index],
                },
            );
        }
        // Batching deadlines are measured from the latest time this machine was given:
        // `now` is not needed precisely, and is not threaded through every helper.
        self.trackers
            .record_have(self.now_hint, &self.config, content_id, chunk_index);
        self.report_progress(content_id);
        self.check_complete(content_id);
    }

    pub(super) fn ban(&mut self, content_id: ContentId, peer: PeerId, chunk_index: u32) {
        let newly_banned = self.downloads.ban(content_id, peer, chunk_index);
        let addr = self.conns.addr_of(peer).unwrap_or_default();
        if newly_banned {
            self.out.notify(PeerNotice::PeerBanned {
                content_id,
                peer_id: peer,
                addr,
            });
        }
    }

    pub(super) fn check_complete(&mut self, content_id: ContentId) {
        let Some(held) = self.serving.held.get(&content_id) else {
            return;
        };
        let Some(download) = self.downloads.get_mut(content_id) else {
            return;
        };
        if download.is_covered_by(&held.chunks) && download.complete() {
            self.trackers.flush_haves(&self.serving.held, &mut self.out);
            self.out.notify(PeerNotice::DownloadComplete { content_id });
        }
    }

    pub(super) fn report_progress(&mut self, content_id: ContentId) {
        let Some(held) = self.serving.held.get(&content_id) else {
            return;
        };
        let manifest = &held.manifest;
        let bytes_of = |chunks: &mut dyn Iterator<Item = u32>| -> (u32, u64) {
            chunks.fold((0, 0), |(n, bytes), i| {
                (n + 1, bytes + u64::from(manifest.chunk_len(i)))
            })
        };
        // With only part of the content wanted, progress is over that part.
        let wanted = self
            .downloads
            .get(content_id)
            .and_then(|d| d.wanted.as_ref());
        let ((chunks_have, bytes_have), (chunk_count, size)) = match wanted {
            Some(wanted) => (
                bytes_of(&mut held.chunks.iter().filter(|&c| wanted.contains(c))),
                bytes_of(&mut wanted.iter()),
            ),
            None => (
                bytes_of(&mut held.chunks.iter()),
                (manifest.chunk_count(), manifest.size),
            ),
        };
        let notice = PeerNotice::Progress {
            content_id,
            chunks_have,
            chunk_count,
            bytes_have,
            size,
            sources: self.source_count(content_id),
        };
        self.out.notify(notice);
    }

    /// Hands out requests for every active download, and tracks whether each has a source
    /// for everything it needs.
    pub(super) fn pump(&mut self, now: Instant) {
        self.now_hint = now;
        for content_id in self.downloads.ids() {
            self.pump_download(now, content_id);
        }
        self.serving.arm_stall_check(now);
    }

    fn pump_download(&mut self, now: Instant, content_id: ContentId) {
        // Verified-and-stored is the end of a chunk's life in memory: while too many wait
        // for the disk, ask for no more.
        let may_request = self.downloads.stores_in_flight() < self.config.stores_in_flight_max;
        let Some(download) = self.downloads.get_mut(content_id) else {
            return;
        };
        for (peer, chunk_index, blocks) in download.next_requests(now, may_request) {
            let Some(conn) = self.conns.conn_of(peer) else {
                continue;
            };
            for (offset, length) in blocks {
                self.out.send(
                    conn,
                    Message::Request {
                        content_id,
                        chunk_index,
                        offset,
                        length,
                    },
                );
            }
        }
    }

    // ------------------------------------------------------------------ closing

    /// Sends an error and closes: the remote broke the protocol or is not for us.
    pub(super) fn refuse(&mut self, conn: ConnId, reason: String) {
        self.refuse_with(conn, crate::wire::error_code::BAD_MESSAGE, reason);
    }

    /// [`Self::refuse`] with an error code other than `BAD_MESSAGE`.
    pub(super) fn refuse_with(&mut self, conn: ConnId, code: u16, reason: String) {
        self.out.send(
            conn,
            Message::Error {
                code,
                message: reason,
            },
        );
        self.close(conn);
    }

    pub(super) fn close(&mut self, conn: ConnId) {
        if self.conns.contains(conn) {
            self.out.push(PeerAction::Close { conn });
            self.drop_conn(conn);
        }
    }

    /// Forgets a connection: its requests go back to the scheduler, its reads are dropped.
    pub(super) fn drop_conn(&mut self, conn: ConnId) {
        let Some((closed, was_current)) = self.conns.remove(conn) else {
            return;
        };
        let (coop, mut ctx) = self.coop_parts();
        coop.conn_closed(&mut ctx, conn, closed.remote);
        self.serving.conn_closed(conn);
        if let (true, Some(remote)) = (was_current, closed.remote) {
            for download in self.downloads.iter_mut() {
                download.remove_peer(remote);
            }
        }
    }
}

/// Where `candidate` comes in `me`'s dialling order: a hash of both ids (splitmix64's
/// finaliser), so orders differ from peer to peer and stay the same over time.
fn dial_order(me: PeerId, candidate: PeerId) -> u64 {
    let mut z = me.0 ^ candidate.0.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
