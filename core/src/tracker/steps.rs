//! The steps behind the facade's inputs that need several parts: a `Hello` opening a
//! session (and replacing an older one), a session's messages handed to the part they are
//! for (queries, the content registry, origins), and closing a connection with its session.

use super::registry::validate_announce;
use super::sessions::Session;
use super::{Tracker, TrackerAction, origins, queries};
use crate::chunkset::ChunkSet;
use crate::ids::{ConnId, PeerId};
use crate::listed_addr::{is_loopback_addr, listed_addr};
use crate::manifest::Manifest;
use crate::time::Instant;
use crate::wire::{Message, PROTOCOL_VERSION, error_code};

impl Tracker {
    pub(super) fn on_hello(
        &mut self,
        now: Instant,
        conn: ConnId,
        version: u16,
        peer_id: PeerId,
        listen_addr: String,
        swarm: String,
    ) {
        if version != PROTOCOL_VERSION {
            self.fail(
                conn,
                error_code::VERSION_MISMATCH,
                format!(
                    "protocol version {version} is not supported: this tracker speaks version {PROTOCOL_VERSION}"
                ),
            );
            return;
        }
        let Some((remote, from)) = self.conns.remote_of(conn) else {
            return;
        };
        let (remote, from) = (remote.clone(), from.to_owned());
        if peer_id != remote.peer_id || swarm != remote.swarm {
            // Only the holder of a key speaks under its id, and only in the swarm whose
            // secret it proved: a claim to anything else is refused, and the session of
            // the peer it names is left alone.
            self.fail(
                conn,
                error_code::IDENTITY_MISMATCH,
                format!(
                    "Hello claims peer {peer_id} in swarm '{swarm}', but the connection's key is peer {} of swarm {}",
                    remote.peer_id, remote.swarm
                ),
            );
            return;
        }
        let trusted = self.config.trust_claimed_addresses
            || (self.config.trust_loopback_claims && is_loopback_addr(&from));
        let listen_addr = match listed_addr(&listen_addr, &from, trusted) {
            Ok(addr) => addr,
            Err(reason) => {
                self.fail(conn, error_code::BAD_MESSAGE, reason);
                return;
            }
        };
        self.replace_session(peer_id);
        self.conns.bind(conn, peer_id);
        self.registry.join(&swarm, peer_id);
        self.sessions
            .insert(peer_id, Session::new(now, conn, swarm, listen_addr));
        self.send(
            conn,
            Message::Welcome {
                version: PROTOCOL_VERSION,
                peer_id: self.config.tracker_id,
            },
        );
    }

    /// Closes `peer_id`'s session on its older connection, if it has one.
    fn replace_session(&mut self, peer_id: PeerId) {
        if let Some(old) = self.sessions.get(&peer_id) {
            // The peer reconnected before we noticed its old connection die: the newest
            // connection wins. Only the holder of the id's key gets here.
            let old_conn = old.conn;
            self.fail(
                old_conn,
                error_code::SESSION_REPLACED,
                format!("peer {peer_id} said Hello on another connection"),
            );
        }
    }

    pub(super) fn on_session_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: PeerId,
        message: Message,
    ) {
        match self.answer(now, conn, peer, message) {
            Ok(reply) => self.send(conn, reply),
            Err(message) => self.on_update(conn, peer, message),
        }
    }

    /// The reply to a query; `Err` gives back a message that is not one.
    fn answer(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: PeerId,
        message: Message,
    ) -> Result<Message, Message> {
        let swarm = self.sessions.get(&peer).map(|s| s.swarm.as_str());
        let reached_ip = self.conns.reached_ip(conn);
        Ok(match message {
            Message::ListFiles => queries::file_list(&self.registry, swarm),
            Message::ListPeers => {
                queries::peer_list(now, &self.sessions, &self.registry, swarm, reached_ip)
            }
            Message::Locate { content_id } => {
                let ctx = queries::LocateCtx {
                    rng: &mut self.rng,
                    sessions: &self.sessions,
                    registry: &self.registry,
                    peers_max: self.config.locate_peers_max,
                    reached_ip,
                };
                let peers = queries::locate(ctx, peer, content_id);
                Message::Located { content_id, peers }
            }
            Message::GetManifest { content_id } => {
                queries::manifest_reply(&self.registry, swarm, content_id)
            }
            Message::FindOrigin { origin } => {
                let content_id =
                    swarm.and_then(|s| origins::find_origin(&self.registry, s, &origin));
                Message::OriginResult { origin, content_id }
            }
            other => return Err(other),
        })
    }

    /// A message that changes the session's state (or ends it), or one out of place.
    fn on_update(&mut self, conn: ConnId, peer: PeerId, message: Message) {
        match message {
            Message::Heartbeat {
                uploaded_bytes,
                downloaded_bytes,
            } => {
                if let Some(session) = self.sessions.get_mut(&peer) {
                    session.heartbeat(uploaded_bytes, downloaded_bytes);
                }
            }
            Message::Goodbye => self.close(conn),
            // The peer reports a problem; if it closes, `handle_closed` follows.
            Message::Error { .. } => {}
            Message::Announce { manifest, chunks } => {
                self.on_announce(conn, peer, manifest, chunks)
            }
            Message::Have {
                content_id,
                chunk_indices,
            } => {
                if let Some(session) = self.sessions.get_mut(&peer) {
                    self.registry.have(session, content_id, &chunk_indices);
                }
            }
            Message::Withdraw { content_id } => {
                if let Some(session) = self.sessions.get_mut(&peer) {
                    self.registry.withdraw(peer, session, content_id);
                }
            }
            Message::SetOrigin { content_id, origin } => {
                if let Some(session) = self.sessions.get(&peer) {
                    origins::set_origin(&mut self.registry, session, content_id, origin);
                }
            }
            Message::Hello { .. } => self.fail(
                conn,
                error_code::UNEXPECTED_MESSAGE,
                "second Hello on one connection".to_owned(),
            ),
            other => self.fail(
                conn,
                error_code::UNEXPECTED_MESSAGE,
                format!("the tracker does not accept {}", other.kind()),
            ),
        }
    }

    /// A malformed `Announce` is fatal; one past a limit is refused and the session goes on.
    fn on_announce(&mut self, conn: ConnId, peer: PeerId, manifest: Manifest, chunks: ChunkSet) {
        if let Err(reason) = validate_announce(&manifest, &chunks) {
            self.fail(conn, error_code::BAD_MESSAGE, reason);
            return;
        }
        let content_id = manifest.content_id();
        let Some(session) = self.sessions.get_mut(&peer) else {
            return;
        };
        let announced = self
            .registry
            .announce(&self.config, peer, session, manifest, chunks);
        if let Err(reason) = announced {
            self.send(
                conn,
                Message::Error {
                    code: error_code::LIMIT_EXCEEDED,
                    message: format!("announce of {content_id} refused: {reason}"),
                },
            );
        }
    }

    // ---- bookkeeping ----

    /// Something arrived on `conn`: push its deadline back.
    pub(super) fn touch(&mut self, now: Instant, conn: ConnId, peer: Option<PeerId>) {
        let deadline = now + self.config.peer_timeout;
        self.conns.push_deadline(conn, deadline);
        if let Some(session) = peer.and_then(|p| self.sessions.get_mut(&p)) {
            session.last_seen = now;
        }
    }

    pub(super) fn send(&mut self, conn: ConnId, message: Message) {
        self.actions
            .push_back(TrackerAction::Send { conn, message });
    }

    /// Fatal: tell the other side why, close, forget.
    pub(super) fn fail(&mut self, conn: ConnId, code: u16, message: String) {
        self.send(conn, Message::Error { code, message });
        self.close(conn);
    }

    pub(super) fn close(&mut self, conn: ConnId) {
        if self.forget_conn(conn) {
            self.actions.push_back(TrackerAction::Close { conn });
        }
    }

    /// Forgets `conn` and its session; whether it was known.
    pub(super) fn forget_conn(&mut self, conn: ConnId) -> bool {
        let Some(peer) = self.conns.remove(conn) else {
            return false;
        };
        if let Some(peer) = peer {
            self.drop_session(peer, conn);
        }
        true
    }

    /// Drops `peer`'s session (if it is still the one on `conn`) with every chunk it held.
    fn drop_session(&mut self, peer: PeerId, conn: ConnId) {
        if self.sessions.get(&peer).is_none_or(|s| s.conn != conn) {
            return;
        }
        let Some(session) = self.sessions.remove(&peer) else {
            return;
        };
        self.registry.leave(peer, &session);
    }
}
