//! Carrying out the `Peer` machine's actions: connections, chunk reads and verified
//! writes, preparing a download's part file, origin ranges over HTTP.
//!
//! Anything that takes time runs in a task of its own and comes back as an `Event`. An
//! action that fails at once (a closed connection, a file we do not have) becomes a
//! [`Deferred`] input, fed to the machine once the drain is over: the machine is never
//! called while its actions are being drained.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use p2p_core::ids::to_hex;
use p2p_core::peer::{PeerAction, StoreOutcome};
use p2p_core::{ChunkCheck, ConnId, ContentId, Manifest, Message};

use super::{Driver, Event};
use crate::io::{clock, http, net, store};

/// An input for the machine that an action produced at once: fed after the drain.
pub(super) enum Deferred {
    Closed {
        conn: ConnId,
    },
    ReadFailed {
        token: u64,
        reason: String,
    },
    StoreFailed {
        token: u64,
        outcome: StoreOutcome,
    },
    PrepareFailed {
        content_id: ContentId,
        reason: String,
    },
    RangeWriteFailed {
        token: u64,
        reason: String,
    },
}

impl Driver {
    /// Feeds the machine an input an action produced.
    pub(super) fn feed(&mut self, input: Deferred) {
        let now = clock::now();
        match input {
            Deferred::Closed { conn } => self.peer.handle_closed(now, conn),
            Deferred::ReadFailed { token, reason } => {
                self.peer.handle_read(now, token, Err(reason))
            }
            Deferred::StoreFailed { token, outcome } => {
                self.peer.handle_stored(now, token, outcome)
            }
            Deferred::PrepareFailed { content_id, reason } => {
                self.peer.download_prepared(now, content_id, Err(reason))
            }
            Deferred::RangeWriteFailed { token, reason } => {
                self.peer.handle_range_written(now, token, Err(reason))
            }
        }
    }

    pub(super) fn act(&mut self, action: PeerAction) {
        match action {
            PeerAction::Connect { conn, addr } => {
                tracing::debug!(%conn, %addr, "connecting");
                if self.trackers.contains(&addr) {
                    self.tracker_conns.insert(conn, addr.clone());
                }
                let handle = net::connect(
                    conn,
                    addr,
                    self.events.clone(),
                    self.limiter.clone(),
                    self.security.clone(),
                );
                self.conns.insert(conn, handle);
            }
            PeerAction::Send { conn, message } => self.send(conn, message),
            PeerAction::Close { conn } => {
                tracing::debug!(%conn, "machine closes");
                self.tracker_conns.remove(&conn);
                if self.peer_keys.remove(&conn).is_some() {
                    self.tell_peers();
                }
                if let Some(handle) = self.conns.remove(&conn) {
                    self.closing.push(handle.close());
                }
            }
            PeerAction::ReadChunk {
                token,
                content_id,
                chunk_index,
                offset,
                length,
            } => self.read_chunk(token, content_id, chunk_index, offset, length),
            PeerAction::StoreChunk {
                token,
                content_id,
                chunk_index,
                check,
                data,
            } => self.store_chunk(token, content_id, chunk_index, check, data),
            PeerAction::PrepareDownload {
                content_id,
                manifest,
            } => self.prepare_download(content_id, manifest),
            PeerAction::FetchRange {
                token,
                url,
                validator,
                offset,
                length,
                helping,
            } => self.fetch_range(token, url, validator, offset, length, helping),
            PeerAction::CancelFetch { token } => {
                if let Some(cancel) = self.fetch_cancels.get(&token) {
                    cancel.store(true, Ordering::Relaxed);
                }
            }
            PeerAction::WriteRange {
                token,
                job_id,
                offset,
                data,
            } => self.write_range(token, job_id, offset, data),
            PeerAction::Notify(notice) => self.notify(notice),
        }
    }

    fn send(&mut self, conn: ConnId, message: Message) {
        let Some(handle) = self.conns.get(&conn) else {
            return;
        };
        if let Err(why) = handle.send(message) {
            tracing::warn!(%conn, "closing: {why}");
            if let Some(handle) = self.conns.remove(&conn) {
                self.closing.push(handle.close());
            }
            self.deferred.push(Deferred::Closed { conn });
        }
    }

    fn read_chunk(
        &mut self,
        token: u64,
        content_id: ContentId,
        chunk_index: u32,
        offset: u32,
        length: u32,
    ) {
        let Some(content) = self.files.get(&content_id).cloned() else {
            let reason = "content not on disk".into();
            self.deferred.push(Deferred::ReadFailed { token, reason });
            return;
        };
        let events = self.events.clone();
        smol::spawn(async move {
            let position =
                u64::from(chunk_index) * u64::from(content.chunk_size) + u64::from(offset);
            let result =
                smol::unblock(move || content.storage.read_at(position, length, content.uncached))
                    .await
                    .map_err(|e| e.to_string());
            let _ = events.send(Event::ReadDone { token, result }).await;
        })
        .detach();
    }

    fn prepare_download(&mut self, content_id: ContentId, manifest: Manifest) {
        let Some(download) = self.downloads.get(&content_id) else {
            let reason = "no destination for this download".into();
            self.deferred
                .push(Deferred::PrepareFailed { content_id, reason });
            return;
        };
        let sha256 = to_hex(&manifest.file_sha256());
        if let Err(reason) = download.refuse_unexpected_sha256(&sha256) {
            self.deferred
                .push(Deferred::PrepareFailed { content_id, reason });
            return;
        }
        let destination = download.destination().clone();
        let force = download.force();
        let only = download.only().cloned();
        let events = self.events.clone();
        smol::spawn(async move {
            let result = smol::unblock(move || {
                store::prepare_download(&destination, force, content_id, &manifest, only.as_ref())
            })
            .await;
            let result = result.map(Box::new);
            let _ = events.send(Event::Prepared { content_id, result }).await;
        })
        .detach();
    }

    fn store_chunk(
        &mut self,
        token: u64,
        content_id: ContentId,
        chunk_index: u32,
        check: ChunkCheck,
        data: Bytes,
    ) {
        let Some(content) = self.files.get(&content_id).cloned() else {
            let outcome = StoreOutcome::Io("no file for this content".into());
            self.deferred.push(Deferred::StoreFailed { token, outcome });
            return;
        };
        self.stores_in_flight += 1;
        let events = self.events.clone();
        smol::spawn(async move {
            let position = u64::from(chunk_index) * u64::from(content.chunk_size);
            let outcome =
                smol::unblock(move || content.storage.store_verified(position, &check, &data))
                    .await;
            let done = Event::StoreDone {
                token,
                content_id,
                chunk_index,
                outcome,
            };
            let _ = events.send(done).await;
        })
        .detach();
    }

    fn fetch_range(
        &mut self,
        token: u64,
        url: String,
        validator: String,
        offset: u64,
        length: u32,
        helping: bool,
    ) {
        tracing::debug!(%url, offset, length, helping, "fetching a range from the origin");
        let events = self.events.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        self.fetch_cancels.insert(token, cancel.clone());
        if helping {
            let agent = self.helping.agent.clone();
            let permits = self.helping.permits.clone();
            smol::spawn(async move {
                // Waits (a task, not a thread) if the machine ever asked for more than
                // its bound; it does not, so this never waits.
                let _permit = permits.acquire_arc().await;
                let result = smol::unblock(move || {
                    http::fetch_range_helping(&agent, &url, &validator, offset, length, &cancel)
                })
                .await;
                let _ = events.send(Event::RangeFetched { token, result }).await;
            })
            .detach();
            return;
        }
        smol::spawn(async move {
            let result =
                smol::unblock(move || http::fetch_range(&url, &validator, offset, length, &cancel))
                    .await;
            if let Err(e) = &result {
                tracing::warn!(
                    offset,
                    length,
                    fatal = e.fatal,
                    "range failed: {}",
                    e.reason
                );
            }
            let _ = events.send(Event::RangeFetched { token, result }).await;
        })
        .detach();
    }

    fn write_range(&mut self, token: u64, job_id: u64, offset: u64, data: Bytes) {
        let Some(file) = self.fetch_files.get(&job_id).cloned() else {
            let reason = "no file for this fetch".into();
            self.deferred
                .push(Deferred::RangeWriteFailed { token, reason });
            return;
        };
        let events = self.events.clone();
        smol::spawn(async move {
            let result = smol::unblock(move || {
                use std::os::unix::fs::FileExt;
                file.write_all_at(&data, offset).map_err(|e| e.to_string())
            })
            .await;
            let _ = events.send(Event::RangeWritten { token, result }).await;
        })
        .detach();
    }
}
