//! What a message from another peer leads to: the handshake's end (one connection per
//! peer, interests, coop offers), then every message on a ready connection handed to the
//! part it is for (serving, downloads, peer exchange, pings, coop).

use bytes::Bytes;

use super::conns::Handshake;
use super::download::{PendingStore, PieceOutcome};
use super::exchange;
use super::serving::ServeRequest;
use super::{Peer, PeerAction};
use crate::chunkset::ChunkSet;
use crate::ids::{ConnId, ContentId, PeerId};
use crate::time::Instant;
use crate::wire::{Message, error_code};

impl Peer {
    // ------------------------------------------------------------------ peer messages

    pub(super) fn on_peer_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        let handshake = self
            .conns
            .on_message(now, conn, message, &self.config, &mut self.out);
        match handshake {
            None => {}
            Some(Handshake::Identified(peer_id)) => self.identified(now, conn, peer_id),
            Some(Handshake::Refused(reason)) => self.refuse(conn, reason),
            Some(Handshake::Impostor(reason)) => {
                self.refuse_with(conn, error_code::IDENTITY_MISMATCH, reason)
            }
            Some(Handshake::Ready(message)) => self.on_ready_message(now, conn, message),
        }
    }

    /// The handshake finished: `conn` leads to `peer_id`.
    fn identified(&mut self, now: Instant, conn: ConnId, peer_id: PeerId) {
        if peer_id == self.config.peer_id {
            self.close(conn);
            return;
        }
        if let Some(loser) = self
            .conns
            .duplicate_to_close(conn, peer_id, self.config.peer_id)
        {
            self.close(loser);
            if loser == conn {
                return;
            }
        }
        if !self.conns.mark_ready(now, conn, peer_id) {
            return;
        }
        for content_id in self.downloads.running_ids() {
            self.express_interest(conn, content_id);
        }
        let (coop, mut ctx) = self.coop_parts();
        coop.offer_jobs(&mut ctx, conn);
    }

    /// Tells the remote we want `content_id` (and asks for the manifest if we lack it).
    pub(super) fn express_interest(&mut self, conn: ConnId, content_id: ContentId) {
        if !self.conns.add_our_interest(conn, content_id) {
            return;
        }
        self.out.send(conn, Message::Interested { content_id });
        let needs_manifest = self
            .downloads
            .get(content_id)
            .is_some_and(|d| d.needs_manifest());
        if needs_manifest {
            self.out.send(conn, Message::GetManifest { content_id });
        }
    }

    /// A message on a ready connection, handed to the part it is for.
    fn on_ready_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        let Some(remote) = self.conns.remote(conn) else {
            return;
        };
        match message {
            Message::Interested { .. }
            | Message::GetManifest { .. }
            | Message::Request { .. }
            | Message::Cancel { .. } => self.on_serving_message(conn, remote, message),
            Message::ManifestReply { .. }
            | Message::NotFound { .. }
            | Message::Bitfield { .. }
            | Message::Have { .. }
            | Message::Piece { .. }
            | Message::Reject { .. }
            | Message::PeerExchange { .. } => self.on_download_message(now, conn, remote, message),
            Message::ListFiles | Message::Locate { .. } | Message::ListPeers => {
                self.answer_question(conn, message)
            }
            Message::Ping { nonce } => self.out.send(conn, Message::Pong { nonce }),
            Message::Pong { nonce } => {
                if let Some(rtt) = self.conns.on_pong(now, conn, nonce) {
                    for download in self.downloads.iter_mut() {
                        download.record_rtt(remote, rtt);
                    }
                }
            }
            Message::Goodbye | Message::Error { .. } => self.close(conn),
            message @ (Message::OfferJob { .. }
            | Message::TakeWork { .. }
            | Message::AssignRange { .. }
            | Message::DeliverRange { .. }
            | Message::RangeFailed { .. }
            | Message::NoWork { .. }
            | Message::EndJob { .. }
            | Message::CancelRange { .. }) => {
                let moves_data = matches!(
                    message,
                    Message::AssignRange { .. } | Message::DeliverRange { .. }
                );
                let (coop, mut ctx) = self.coop_parts();
                match coop.on_message(&mut ctx, now, conn, remote, message) {
                    Err(reason) => self.refuse(conn, reason),
                    Ok(()) if moves_data => self.conns.moved_data(now, conn),
                    Ok(()) => {}
                }
            }
            _ => self.refuse(conn, "message not valid between peers".into()),
        }
    }

    /// What a remote asks of what we hold.
    fn on_serving_message(&mut self, conn: ConnId, remote: PeerId, message: Message) {
        match message {
            Message::Interested { content_id } => {
                let reply = self.serving.bitfield_reply(content_id);
                let first_time = self.conns.add_remote_interest(conn, content_id);
                self.out.send(conn, reply);
                // Peers are named once per connection; a repeated `Interested` (a bitfield
                // resync) only wants the bitfield.
                if first_time
                    && let Some(exchange) = exchange::offer(&self.conns, remote, content_id)
                {
                    self.out.send(conn, exchange);
                }
            }
            Message::GetManifest { content_id } => {
                let reply = self.serving.manifest_reply(content_id);
                self.out.send(conn, reply);
            }
            Message::Request {
                content_id,
                chunk_index,
                offset,
                length,
            } => {
                let request = ServeRequest {
                    content_id,
                    chunk_index,
                    offset,
                    length,
                };
                self.serving
                    .on_request(conn, request, &self.config, &mut self.out);
            }
            Message::Cancel {
                content_id,
                chunk_index,
                offset,
                length,
            } => {
                let cancelled = ServeRequest {
                    content_id,
                    chunk_index,
                    offset,
                    length,
                };
                self.serving.on_cancel(conn, cancelled);
            }
            _ => {}
        }
    }

    /// What a remote tells us about a content we download.
    fn on_download_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: PeerId,
        message: Message,
    ) {
        match message {
            Message::ManifestReply { manifest } => self.on_manifest(manifest),
            Message::Bitfield { content_id, chunks } => {
                self.on_bitfield(conn, remote, content_id, chunks)
            }
            Message::Have {
                content_id,
                chunk_indices,
            } => {
                if let Some(download) = self.downloads.get_mut(content_id) {
                    download.on_have(remote, chunk_indices);
                }
            }
            Message::Piece {
                content_id,
                chunk_index,
                offset,
                data,
            } => self.on_piece(now, conn, remote, content_id, (chunk_index, offset), data),
            Message::Reject {
                content_id,
                chunk_index,
                ..
            } => {
                if let Some(download) = self.downloads.get_mut(content_id) {
                    let pending = download.on_reject(remote, chunk_index);
                    // The other blocks of that chunk are not wanted from this peer now.
                    self.send_cancels(remote, content_id, chunk_index, &pending);
                }
            }
            Message::PeerExchange { content_id, peers } => {
                if let Some(download) = self.downloads.get_mut(content_id) {
                    exchange::take(download, peers, self.config.peer_id);
                    self.connect_candidates(now, content_id);
                }
            }
            _ => {}
        }
    }

    fn on_bitfield(
        &mut self,
        conn: ConnId,
        remote: PeerId,
        content_id: ContentId,
        chunks: ChunkSet,
    ) {
        if self.downloads.is_banned(content_id, remote) {
            return;
        }
        let Some(download) = self.downloads.get_mut(content_id) else {
            return;
        };
        if !download.on_bitfield(remote, chunks) {
            self.refuse(conn, "bitfield length does not match the manifest".into());
        }
    }

    /// A block arrived; `at` is its (chunk index, offset).
    fn on_piece(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: PeerId,
        content_id: ContentId,
        at: (u32, u32),
        data: Bytes,
    ) {
        let (chunk_index, offset) = at;
        let Some(download) = self.downloads.get_mut(content_id) else {
            return;
        };
        let chunk = match download.on_piece(now, remote, chunk_index, offset, data) {
            PieceOutcome::Ignored => return,
            PieceOutcome::WrongLength => {
                self.refuse(conn, "piece length does not match the request".into());
                return;
            }
            PieceOutcome::Taken { bytes, chunk } => {
                self.conns.moved_data(now, conn);
                self.downloaded_bytes += bytes;
                chunk
            }
        };
        let Some(chunk) = chunk else {
            return;
        };
        for (loser, chunk_index, blocks) in chunk.cancels {
            self.send_cancels(loser, content_id, chunk_index, &blocks);
        }
        let token = self.out.next_token();
        let store = PendingStore {
            content_id,
            chunk_index,
            from: remote,
        };
        self.downloads.store_started(token, store);
        self.out.push(PeerAction::StoreChunk {
            token,
            content_id,
            chunk_index,
            check: chunk.check,
            data: chunk.data,
        });
    }

    pub(super) fn send_cancels(
        &mut self,
        peer: PeerId,
        content_id: ContentId,
        chunk_index: u32,
        blocks: &[(u32, u32)],
    ) {
        let Some(conn) = self.conns.conn_of(peer) else {
            return;
        };
        for &(offset, length) in blocks {
            self.out.send(
                conn,
                Message::Cancel {
                    content_id,
                    chunk_index,
                    offset,
                    length,
                },
            );
        }
    }
}
