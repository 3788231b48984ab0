//! How each `Event` the peer task reacts to becomes an input of the `Peer` machine (or of
//! a download's finishing order, `finish`).

use std::sync::Arc;

use p2p_core::peer::{PreparedChunks, StoreOutcome};
use p2p_core::{ContentId, Instant, Manifest};

use super::downloads::DownloadFiles;
use super::{ContentFile, Driver, Event};
use crate::io::clock;
use crate::io::net::{self, Accepted, ConnEvent, NetEvent};
use crate::io::store::{Prepared, Storage};

impl Driver {
    pub(super) fn handle(&mut self, event: Event) {
        let now = clock::now();
        match event {
            Event::Net(net_event) => self.on_net(net_event),
            Event::Accepted(accepted) => {
                // A socket that cannot say where it comes from is already broken: dropped,
                // it is closed.
                let Some(from) = accepted.peer_addr() else {
                    return;
                };
                self.on_accepted(now, *accepted, net::observed(from));
            }
            Event::Publish { manifest, storage } => self.on_publish(manifest, storage),
            Event::Download {
                content_id,
                manifest,
                options,
            } => {
                let mut options = *options;
                let known_peers = std::mem::take(&mut options.known_peers);
                self.downloads
                    .insert(content_id, DownloadFiles::new(options));
                self.peer.download(now, content_id, manifest);
                if !known_peers.is_empty() {
                    self.peer.add_candidates(now, content_id, known_peers);
                }
            }
            Event::Shutdown => {}
            Event::ReadDone { token, result } => self.peer.handle_read(now, token, result),
            Event::StoreDone {
                token,
                content_id,
                chunk_index,
                outcome,
            } => self.on_store_done(token, content_id, chunk_index, outcome),
            Event::Prepared { content_id, result } => self.on_prepared(content_id, result),
            Event::RecordSaved { content_id } => {
                self.finish_step(content_id, |finish| finish.record_written())
            }
            Event::Synced { content_id, result } => {
                self.finish_step(content_id, |finish| finish.synced(result))
            }
            Event::Renamed { content_id, result } => {
                if result.is_ok() {
                    self.tree_renamed(content_id);
                }
                self.finish_step(content_id, |finish| finish.renamed(result))
            }
            Event::Fetch {
                spec,
                file,
                on_disk,
                reply,
            } => {
                let job_id = self.peer.fetch_resuming(now, spec, on_disk.as_ref());
                self.fetch_files.insert(job_id, file);
                let _ = reply.try_send(job_id);
            }
            Event::CancelFetch { job_id } => self.peer.cancel_fetch(now, job_id),
            Event::SetOrigin { content_id, origin } => {
                self.peer.set_origin(now, content_id, origin)
            }
            Event::RangeFetched { token, result } => {
                self.fetch_cancels.remove(&token);
                self.peer.handle_range_fetched(now, token, result)
            }
            Event::RangeWritten { token, result } => {
                self.peer.handle_range_written(now, token, result)
            }
        }
    }

    /// A connection that finished its secure handshake, from `from`: the machine takes it or
    /// refuses it (at its connection limit; the socket is dropped, so closed).
    fn on_accepted(&mut self, now: Instant, accepted: Accepted, from: String) {
        let Some(conn) = self.peer.accept(now, accepted.remote().clone(), from) else {
            tracing::debug!("connection refused: at the connection limit");
            return;
        };
        self.peer_keys.insert(conn, accepted.remote().peer_id);
        self.tell_peers();
        let handle = net::attach(conn, accepted, self.events.clone(), self.limiter.clone());
        self.conns.insert(conn, handle);
    }
    fn on_publish(&mut self, manifest: Manifest, storage: Storage) {
        let content_id = manifest.content_id();
        let chunk_size = manifest.chunk_size;
        self.files.insert(
            content_id,
            Arc::new(ContentFile {
                storage,
                chunk_size,
                uncached: false,
            }),
        );
        self.peer.publish(clock::now(), manifest);
    }

    fn on_store_done(
        &mut self,
        token: u64,
        content_id: ContentId,
        chunk_index: u32,
        outcome: StoreOutcome,
    ) {
        self.stores_in_flight -= 1;
        if outcome == StoreOutcome::Stored {
            self.mark_stored(content_id, chunk_index);
        }
        self.peer.handle_stored(clock::now(), token, outcome);
    }

    fn on_net(&mut self, NetEvent { conn, event }: NetEvent) {
        let now = clock::now();
        if !self.conns.contains_key(&conn) {
            // A late event of a connection the machine already closed.
            return;
        }
        match event {
            ConnEvent::Connected(remote) => {
                if !self.tracker_conns.contains_key(&conn) {
                    self.peer_keys.insert(conn, remote.peer_id);
                    self.tell_peers();
                }
                self.peer.handle_connected(now, conn, remote)
            }
            ConnEvent::Message(message) => self.peer.handle_message(now, conn, message),
            ConnEvent::Sent => self.peer.handle_sent(now, conn),
            ConnEvent::Closed => {
                self.conns.remove(&conn);
                self.tracker_conns.remove(&conn);
                if self.peer_keys.remove(&conn).is_some() {
                    self.tell_peers();
                }
                self.peer.handle_closed(now, conn);
            }
            ConnEvent::Refused => {
                self.conns.remove(&conn);
                if self.peer_keys.remove(&conn).is_some() {
                    self.tell_peers();
                }
                if let Some(addr) = self.tracker_conns.remove(&conn) {
                    // Our own tracker turning us away is the user's concern (a wrong secret
                    // file): said once per tracker, then retried quietly with backoff.
                    if self.refused_by.insert(addr.clone()) {
                        tracing::warn!(
                            "the tracker at {addr} refused the handshake: it does not serve this swarm's secret; retrying"
                        );
                    } else {
                        tracing::debug!(%addr, "the tracker refused the handshake");
                    }
                    let _ = self
                        .user
                        .try_send(super::UserEvent::TrackerRefused { addr });
                }
                self.peer.handle_closed(now, conn);
            }
        }
    }

    /// A collection's tree has its final name: its chunks are read from there now (a
    /// single file's open handle follows its rename by itself).
    fn tree_renamed(&mut self, content_id: ContentId) {
        let Some(final_path) = self
            .downloads
            .get(&content_id)
            .and_then(|d| d.paths())
            .map(|p| p.final_path.clone())
        else {
            return;
        };
        let Some(content) = self.files.get(&content_id) else {
            return;
        };
        if let Storage::Tree(tree) = &content.storage {
            let moved = ContentFile {
                storage: Storage::Tree(Box::new(tree.moved_to(final_path))),
                chunk_size: content.chunk_size,
                uncached: content.uncached,
            };
            self.files.insert(content_id, Arc::new(moved));
        }
    }

    /// Tells the user which peers are connected now.
    pub(super) fn tell_peers(&self) {
        let mut peer_ids: Vec<_> = self.peer_keys.values().copied().collect();
        peer_ids.sort_unstable();
        peer_ids.dedup();
        let _ = self.user.try_send(super::UserEvent::Peers { peer_ids });
    }

    /// A part file is ready (or could not be made): the download knows its paths, the peer
    /// can read and write its chunks, and the machine learns which chunks are on disk.
    fn on_prepared(&mut self, content_id: ContentId, result: Result<Box<Prepared>, String>) {
        let result = match (result, self.downloads.get_mut(&content_id)) {
            (Ok(prepared), Some(download)) => {
                tracing::info!(
                    part = %prepared.paths.part.display(),
                    "download prepared: {} of {} chunks on disk",
                    prepared.have.count(),
                    prepared.have.len()
                );
                let Prepared {
                    storage,
                    have,
                    paths,
                    chunk_size,
                    in_place,
                    sha256,
                    wanted,
                } = *prepared;
                download.prepared(content_id, paths, in_place, sha256, have.clone());
                self.files.insert(
                    content_id,
                    Arc::new(ContentFile {
                        storage,
                        chunk_size,
                        uncached: true,
                    }),
                );
                Ok(PreparedChunks { have, wanted })
            }
            (Ok(_), None) => Err("the download was cancelled".to_string()),
            (Err(e), _) => Err(e),
        };
        self.peer
            .download_prepared(clock::now(), content_id, result);
    }
}
