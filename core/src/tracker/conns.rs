//! Accepted connections: the session each one carries once its `Hello` was accepted, and the
//! deadline by which something must arrive on it, indexed earliest first for `poll_timeout`.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{ConnId, PeerId};
use crate::secure::Remote;
use crate::time::Instant;

/// One accepted connection.
struct Conn {
    /// Who the secure handshake proved is at the other end: its `Hello` must say the same.
    remote: Remote,
    /// The address the connection came from, as the driver saw it.
    from: String,
    /// The local IP the connection arrived at (empty: unknown), for `as_reached_at`.
    reached_ip: String,
    /// The session, once `Hello` was accepted.
    peer: Option<PeerId>,
    /// When the connection is dropped unless something arrives first.
    deadline: Instant,
}

#[derive(Default)]
pub(super) struct Connections {
    next_conn: u64,
    conns: BTreeMap<ConnId, Conn>,
    /// Every connection's deadline, earliest first.
    deadlines: BTreeSet<(Instant, ConnId)>,
}

impl Connections {
    /// A new connection from `remote`, with no session yet, dropped at `deadline` unless
    /// it speaks.
    pub(super) fn accept(
        &mut self,
        deadline: Instant,
        remote: Remote,
        from: String,
        reached_ip: String,
    ) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            conn,
            Conn {
                remote,
                from,
                reached_ip,
                peer: None,
                deadline,
            },
        );
        self.deadlines.insert((deadline, conn));
        conn
    }

    /// `None` for a connection we do not know (or already closed), else its session.
    pub(super) fn session_of(&self, conn: ConnId) -> Option<Option<PeerId>> {
        self.conns.get(&conn).map(|state| state.peer)
    }

    /// Who is at the other end of `conn`, as its handshake proved, and the address the
    /// connection came from.
    pub(super) fn remote_of(&self, conn: ConnId) -> Option<(&Remote, &str)> {
        self.conns
            .get(&conn)
            .map(|state| (&state.remote, state.from.as_str()))
    }

    /// The local IP `conn` arrived at, empty when the driver did not say.
    pub(super) fn reached_ip(&self, conn: ConnId) -> &str {
        self.conns.get(&conn).map_or("", |state| &state.reached_ip)
    }

    /// Something arrived on `conn`: push its deadline back.
    pub(super) fn push_deadline(&mut self, conn: ConnId, deadline: Instant) {
        if let Some(state) = self.conns.get_mut(&conn) {
            self.deadlines.remove(&(state.deadline, conn));
            state.deadline = deadline;
            self.deadlines.insert((deadline, conn));
        }
    }

    /// `conn` now carries `peer`'s session.
    pub(super) fn bind(&mut self, conn: ConnId, peer: PeerId) {
        if let Some(state) = self.conns.get_mut(&conn) {
            state.peer = Some(peer);
        }
    }

    /// Forgets `conn`: `None` if it was not known, else the session it carried.
    pub(super) fn remove(&mut self, conn: ConnId) -> Option<Option<PeerId>> {
        let state = self.conns.remove(&conn)?;
        self.deadlines.remove(&(state.deadline, conn));
        Some(state.peer)
    }

    /// The earliest connection deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(deadline, _)| deadline)
    }

    /// A connection whose deadline has passed by `now`, earliest first.
    pub(super) fn expired(&self, now: Instant) -> Option<ConnId> {
        self.deadlines
            .first()
            .filter(|&&(deadline, _)| deadline <= now)
            .map(|&(_, conn)| conn)
    }

    pub(super) fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether the deadline index agrees with the connections (for `check_invariants`).
    pub(super) fn deadlines_agree(&self) -> bool {
        let deadlines: BTreeSet<_> = self.conns.iter().map(|(&c, s)| (s.deadline, c)).collect();
        deadlines == self.deadlines
    }
}
