//! Every tracker the peer announces to (issue 15), one session each: the swarm's (a ticket's
//! addresses: one tracker, reached at whichever answers) and any other it was given (a
//! seeding getter's own tracker). What one is told, all are told, so a member is found at
//! each of them and the swarm keeps a rendezvous while any one is up; questions go to every
//! ready one, and their answers are merged by the caller.
//!
//! With one tracker (the usual case, and every simulated peer) this is that one session,
//! step for step.

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;

use super::config::PeerConfig;
use super::output::Output;
use super::serving::Held;
use super::tracker_session::TrackerSession;
use crate::ids::{ConnId, ContentId};
use crate::time::Instant;
use crate::wire::Message;

pub(crate) struct Trackers {
    /// The first is the swarm's tracker (`PeerConfig::trackers`, kept even when it has no
    /// address); then `PeerConfig::more_trackers`, in order.
    sessions: Vec<TrackerSession>,
}

impl Trackers {
    pub(crate) fn new(now: Instant, config: &PeerConfig) -> Trackers {
        let first = TrackerSession::new(now, config.trackers.clone());
        let others = config
            .more_trackers
            .iter()
            .filter(|addrs| !addrs.is_empty())
            .map(|addrs| TrackerSession::new(now, addrs.clone()));
        Trackers {
            sessions: std::iter::once(first).chain(others).collect(),
        }
    }

    /// How many trackers: with more than one, each answer is a part of the picture.
    pub(crate) fn count(&self) -> usize {
        self.sessions.len()
    }

    /// The session `conn` is the connection of.
    pub(crate) fn of_conn(&mut self, conn: ConnId) -> Option<&mut TrackerSession> {
        self.sessions.iter_mut().find(|s| s.conn() == Some(conn))
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.sessions.iter().any(TrackerSession::is_ready)
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.sessions.iter().filter_map(|s| s.deadline()).min()
    }

    pub(crate) fn haves_deadline(&self) -> Option<Instant> {
        self.sessions
            .iter()
            .filter_map(|s| s.haves_deadline())
            .min()
    }

    pub(crate) fn on_timer(
        &mut self,
        now: Instant,
        config: &PeerConfig,
        out: &mut Output,
        uploaded_bytes: u64,
        downloaded_bytes: u64,
    ) {
        for session in &mut self.sessions {
            session.on_timer(now, config, out, uploaded_bytes, downloaded_bytes);
        }
    }

    /// Sends on every ready session.
    pub(crate) fn send(&mut self, out: &mut Output, message: Message) {
        for session in &mut self.sessions {
            session.send(out, message.clone());
        }
    }

    /// Says hello on the session whose connection `conn` opened. False when it is none's.
    pub(crate) fn connected(&mut self, conn: ConnId, hello: Message, out: &mut Output) -> bool {
        self.sessions
            .iter_mut()
            .any(|s| s.connected(conn, hello.clone(), out))
    }

    pub(crate) fn announce(
        &mut self,
        content_id: ContentId,
        held: Option<&Held>,
        out: &mut Output,
    ) {
        for session in &mut self.sessions {
            session.announce(content_id, held, out);
        }
    }

    pub(crate) fn withdraw(&mut self, content_id: ContentId, out: &mut Output) {
        for session in &mut self.sessions {
            session.withdraw(content_id, out);
        }
    }

    pub(crate) fn set_origin(&mut self, content_id: ContentId, origin: String, out: &mut Output) {
        for session in &mut self.sessions {
            session.set_origin(content_id, origin.clone(), out);
        }
    }

    pub(crate) fn locate(&mut self, content_id: ContentId, needs_manifest: bool, out: &mut Output) {
        for session in &mut self.sessions {
            session.locate(content_id, needs_manifest, out);
        }
    }

    pub(crate) fn record_have(
        &mut self,
        now: Instant,
        config: &PeerConfig,
        content_id: ContentId,
        chunk_index: u32,
    ) {
        for session in &mut self.sessions {
            session.record_have(now, config, content_id, chunk_index);
        }
    }

    pub(crate) fn flush_haves(&mut self, held: &BTreeMap<ContentId, Held>, out: &mut Output) {
        for session in &mut self.sessions {
            session.flush_haves(held, out);
        }
    }

    /// The session of `conn` failed or broke: it backs off and tries again.
    pub(crate) fn lost(
        &mut self,
        now: Instant,
        conn: ConnId,
        config: &PeerConfig,
        rng: &mut ChaCha8Rng,
        out: &mut Output,
    ) {
        if let Some(session) = self.of_conn(conn) {
            session.lost(now, config, rng, out);
        }
    }

    pub(crate) fn shutdown(&mut self, held: &BTreeMap<ContentId, Held>, out: &mut Output) {
        for session in &mut self.sessions {
            session.shutdown(held, out);
        }
    }
}
