//! Connections to other peers: opening and accepting them, the handshake (`Hello` /
//! `Welcome`), keeping one connection per remote peer, pings and idle timeouts, and what
//! each side said it wants on each connection.
//!
//! What flows over a ready connection (serving, downloads, coop) belongs to those parts;
//! this one only knows who is at the other end and whether the connection is alive.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::action::PeerAction;
use super::config::PeerConfig;
use super::output::Output;
use crate::ids::{ConnId, ContentId, PeerId};
use crate::listed_addr::listed_addr;
use crate::time::Instant;
use crate::wire::{Message, PROTOCOL_VERSION};

/// Where a connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    /// Outgoing, waiting for the driver's `handle_connected`.
    Connecting,
    /// Outgoing, `Hello` sent, waiting for `Welcome`.
    AwaitingWelcome,
    /// Incoming, waiting for `Hello`.
    AwaitingHello,
    Ready,
}

/// A connection to another peer.
pub(crate) struct PeerConn {
    state: ConnState,
    outgoing: bool,
    /// The id of the remote's static key, as the secure handshake below the machine proved
    /// it: known once the driver reports the connection open. `Hello`/`Welcome` must
    /// claim this id.
    authenticated: Option<PeerId>,
    /// Known after the `Hello`/`Welcome` exchange (equal to `authenticated`).
    pub(crate) remote: Option<PeerId>,
    /// Where others are told to dial the remote: the address we dialled, or for an accepted
    /// connection the port its `Hello` claims at the IP it came from.
    pub(crate) addr: String,
    /// Where an accepted connection came from (`IP:PORT`, the driver's word); empty when
    /// we dialled.
    from: String,
    opened_at: Instant,
    last_received: Instant,
    /// When a block or a cooperative range last moved on this connection, either way (or
    /// when it opened): pings keep a connection alive, not useful.
    last_useful: Instant,
    next_ping_at: Instant,
    /// Nonce and send time of the ping in flight.
    ping_in_flight: Option<(u64, Instant)>,
    /// Contents the remote said it wants: it gets our `Have`s for them.
    remote_interests: BTreeSet<ContentId>,
    /// Contents we said we want on this connection.
    our_interests: BTreeSet<ContentId>,
}

impl PeerConn {
    fn new(now: Instant, outgoing: bool, addr: String) -> PeerConn {
        PeerConn {
            authenticated: None,
            state: if outgoing {
                ConnState::Connecting
            } else {
                ConnState::AwaitingHello
            },
            outgoing,
            remote: None,
            addr,
            from: String::new(),
            opened_at: now,
            last_received: now,
            last_useful: now,
            next_ping_at: now,
            ping_in_flight: None,
            remote_interests: BTreeSet::new(),
            our_interests: BTreeSet::new(),
        }
    }

    /// When this connection next needs the timer: its ping or idle deadline once ready, its
    /// handshake deadline before.
    fn deadline(&self, timeouts: &ConnTimeouts) -> Instant {
        match self.state {
            ConnState::Ready => self.next_ping_at.min(self.idle_deadline(timeouts)),
            _ => self.handshake_deadline(timeouts),
        }
    }

    /// When a ready connection that heard nothing since is dropped.
    fn idle_deadline(&self, timeouts: &ConnTimeouts) -> Instant {
        self.last_received + timeouts.idle
    }

    /// When a connection still in its handshake is dropped.
    fn handshake_deadline(&self, timeouts: &ConnTimeouts) -> Instant {
        self.opened_at + timeouts.handshake
    }

    fn is_ready(&self) -> bool {
        self.state == ConnState::Ready
    }

    /// A refusal when the remote claims an id that is not its key's: it would speak (and
    /// be banned) as another peer.
    fn claims_other_id(&self, claimed: PeerId) -> Option<Handshake> {
        match self.authenticated {
            Some(id) if id == claimed => None,
            Some(id) => Some(Handshake::Impostor(format!(
                "claims peer id {claimed}, but its key is {id}'s"
            ))),
            None => Some(Handshake::Impostor("no authenticated key".into())),
        }
    }
}

/// What a handshake message on a connection led to.
pub(crate) enum Handshake {
    /// The remote is `peer_id`: the handshake is done on this side.
    Identified(PeerId),
    /// The remote broke the protocol or is not of our swarm.
    Refused(String),
    /// The remote claimed an id its key is not: refused with `IDENTITY_MISMATCH`, as the
    /// tracker refuses such a `Hello`, so the other side can tell an impostor's refusal
    /// from a protocol error.
    Impostor(String),
    /// The connection is ready: the message is for the other parts.
    Ready(Message),
}

/// What became of the connections after a timer.
pub(crate) struct ConnTimers {
    /// Connections whose handshake or silence ran out: to close.
    pub(crate) expired: Vec<ConnId>,
}

/// The configured limits a connection's deadline is computed from, copied from the config
/// once. They are the only copy connections read: both the sorted deadlines and the expiry
/// checks of [`Connections::on_timer`] use them, so the two cannot disagree (a connection
/// filed under a deadline the timer does not treat as expired would wake the peer again
/// and again at that instant).
struct ConnTimeouts {
    handshake: Duration,
    idle: Duration,
}

pub(crate) struct Connections {
    conns: BTreeMap<ConnId, PeerConn>,
    /// Every connection's deadline, earliest first: the timer needs only the first, and a
    /// timeout visits only the connections due instead of all of them (a peer of a large
    /// swarm holds hundreds). Whatever moves a deadline goes through [`Self::moving`].
    deadlines: BTreeSet<(Instant, ConnId)>,
    timeouts: ConnTimeouts,
    /// Ready connections by remote peer id.
    by_peer: BTreeMap<PeerId, ConnId>,
}

impl Connections {
    pub(crate) fn new(config: &PeerConfig) -> Connections {
        Connections {
            conns: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            timeouts: ConnTimeouts {
                handshake: config.handshake_timeout,
                idle: config.connection_idle_timeout,
            },
            by_peer: BTreeMap::new(),
        }
    }

    /// The earliest deadline of any connection.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Changes a connection with `change`, keeping its deadline in [`Self::deadlines`] right.
    fn moving<R>(&mut self, conn: ConnId, change: impl FnOnce(&mut PeerConn) -> R) -> Option<R> {
        let c = self.conns.get_mut(&conn)?;
        self.deadlines.remove(&(c.deadline(&self.timeouts), conn));
        let result = change(c);
        self.deadlines.insert((c.deadline(&self.timeouts), conn));
        Some(result)
    }

    fn insert(&mut self, conn: ConnId, c: PeerConn) {
        self.deadlines.insert((c.deadline(&self.timeouts), conn));
        self.conns.insert(conn, c);
    }

    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    pub(crate) fn contains(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// The remote peer of a ready connection.
    pub(crate) fn remote(&self, conn: ConnId) -> Option<PeerId> {
        self.conns.get(&conn).and_then(|c| c.remote)
    }

    /// The ready connection to `peer`.
    pub(crate) fn conn_of(&self, peer: PeerId) -> Option<ConnId> {
        self.by_peer.get(&peer).copied()
    }

    /// The address `peer` listens at, if connected ("" when unknown).
    pub(crate) fn addr_of(&self, peer: PeerId) -> Option<String> {
        self.by_peer
            .get(&peer)
            .and_then(|c| self.conns.get(c))
            .map(|c| c.addr.clone())
    }

    pub(crate) fn ready(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.conns
            .iter()
            .filter(|(_, c)| c.is_ready())
            .map(|(id, _)| *id)
    }

    /// Ready connections whose remote said it wants `content_id`.
    pub(crate) fn wanting(&self, content_id: ContentId) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.is_ready() && c.remote_interests.contains(&content_id))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Ready connections we told we want `content_id`.
    pub(crate) fn interested_in(&self, content_id: ContentId) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.is_ready() && c.our_interests.contains(&content_id))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Ready remotes (id and address) that want or hold `content_id`, but `asker`: whom to
    /// name in a peer exchange.
    pub(crate) fn sharing(
        &self,
        content_id: ContentId,
        asker: PeerId,
    ) -> impl Iterator<Item = (PeerId, String)> + '_ {
        self.conns
            .values()
            .filter(|c| c.is_ready() && !c.addr.is_empty())
            .filter(move |c| {
                c.remote_interests.contains(&content_id) || c.our_interests.contains(&content_id)
            })
            .filter_map(|c| c.remote.map(|id| (id, c.addr.clone())))
            .filter(move |(id, _)| *id != asker)
    }

    /// Connections serving `content_id` to us, or still opening (they may).
    pub(crate) fn sourcing_or_opening(&self, content_id: ContentId) -> usize {
        self.conns
            .values()
            .filter(|c| c.our_interests.contains(&content_id) || !c.is_ready())
            .count()
    }

    /// Whether `peer` (or whoever listens at `addr`) is connected or being dialled.
    /// Ready connections to peers that listen: each peer's id and address.
    pub(crate) fn listening_peers(&self) -> impl Iterator<Item = (PeerId, String)> + '_ {
        self.conns
            .values()
            .filter(|c| c.is_ready() && !c.addr.is_empty())
            .filter_map(|c| c.remote.map(|id| (id, c.addr.clone())))
    }

    pub(crate) fn knows(&self, peer: PeerId, addr: &str) -> bool {
        self.by_peer.contains_key(&peer) || self.conns.values().any(|c| c.addr == addr)
    }

    pub(crate) fn hello(config: &PeerConfig) -> Message {
        Message::Hello {
            version: PROTOCOL_VERSION,
            peer_id: config.peer_id,
            listen_addr: config.listen_addr.clone(),
            swarm: config.swarm.clone(),
        }
    }

    /// A peer of key `remote` connected to us from `from` (`IP:PORT`); `None` at the
    /// connection limit.
    pub(crate) fn accept(
        &mut self,
        now: Instant,
        remote: PeerId,
        from: String,
        config: &PeerConfig,
        out: &mut Output,
    ) -> Option<ConnId> {
        if self.conns.len() >= config.connections_max {
            return None;
        }
        let conn = out.new_conn_id();
        let mut c = PeerConn::new(now, false, String::new());
        c.authenticated = Some(remote);
        c.from = from;
        self.insert(conn, c);
        Some(conn)
    }

    /// The incoming connection that has heard nothing for longest, if for at least
    /// `silence`: the one a newcomer takes the place of when we are full. Live connections
    /// hear a ping answered every `ping_interval`, so only dead or idle-holding ones go.
    pub(crate) fn longest_silent(&self, now: Instant, silence: Duration) -> Option<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| !c.outgoing && now - c.last_received >= silence)
            .min_by_key(|(id, c)| (c.last_received, **id))
            .map(|(id, _)| *id)
    }

    /// The incoming connection that has moved no data for longest, if for at least `idle`:
    /// when none is silent, a newcomer takes its place. Members that answer pings and ask
    /// for nothing would otherwise hold every slot.
    pub(crate) fn longest_unproductive(&self, now: Instant, idle: Duration) -> Option<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| !c.outgoing && now - c.last_useful >= idle)
            .min_by_key(|(id, c)| (c.last_useful, **id))
            .map(|(id, _)| *id)
    }

    /// A block or a range moved on `conn`.
    pub(crate) fn moved_data(&mut self, now: Instant, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.last_useful = now;
        }
    }

    pub(crate) fn is_full(&self, config: &PeerConfig) -> bool {
        self.conns.len() >= config.connections_max
    }

    /// Dials `addr`.
    pub(crate) fn open(&mut self, now: Instant, addr: String, out: &mut Output) {
        let conn = out.new_conn_id();
        self.insert(conn, PeerConn::new(now, true, addr.clone()));
        out.push(PeerAction::Connect { conn, addr });
    }

    /// An outgoing connection is open to the peer of key `remote`: say hello.
    pub(crate) fn connected(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: PeerId,
        hello: Message,
        out: &mut Output,
    ) {
        let opened = self.moving(conn, |c| {
            let connecting = c.state == ConnState::Connecting;
            if connecting {
                c.state = ConnState::AwaitingWelcome;
                c.last_received = now;
                c.authenticated = Some(remote);
            }
            connecting
        });
        if opened == Some(true) {
            out.send(conn, hello);
        }
    }

    /// A message arrived on `conn`: it is alive; during the handshake the message is
    /// taken here (a `Hello` answered), once ready it is handed back.
    pub(crate) fn on_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        message: Message,
        config: &PeerConfig,
        out: &mut Output,
    ) -> Option<Handshake> {
        self.moving(conn, |c| c.last_received = now)?;
        let c = self.conns.get_mut(&conn)?;
        Some(match (c.state, message) {
            (
                ConnState::AwaitingHello,
                Message::Hello {
                    version,
                    peer_id,
                    listen_addr,
                    swarm,
                },
            ) => {
                if version != PROTOCOL_VERSION {
                    return Some(Handshake::Refused(format!(
                        "protocol version {version} is not {PROTOCOL_VERSION}"
                    )));
                }
                if swarm != config.swarm {
                    return Some(Handshake::Refused(format!(
                        "swarm '{swarm}' is not '{}'",
                        config.swarm
                    )));
                }
                if let Some(refusal) = c.claims_other_id(peer_id) {
                    return Some(refusal);
                }
                // Named to others (peer exchange) where it was seen, never where it says.
                c.addr = match listed_addr(&listen_addr, &c.from, false) {
                    Ok(addr) => addr,
                    Err(refusal) => return Some(Handshake::Refused(refusal)),
                };
                let welcome = Message::Welcome {
                    version: PROTOCOL_VERSION,
                    peer_id: config.peer_id,
                };
                out.send(conn, welcome);
                Handshake::Identified(peer_id)
            }
            (ConnState::AwaitingWelcome, Message::Welcome { version, peer_id }) => {
                if version != PROTOCOL_VERSION {
                    return Some(Handshake::Refused(format!(
                        "protocol version {version} is not {PROTOCOL_VERSION}"
                    )));
                }
                if let Some(refusal) = c.claims_other_id(peer_id) {
                    return Some(refusal);
                }
                Handshake::Identified(peer_id)
            }
            (ConnState::Ready, message) => Handshake::Ready(message),
            (_, _) => Handshake::Refused("unexpected message during the handshake".into()),
        })
    }

    /// Two connections to one peer (both dialled at once, or a stale one): keep the one
    /// opened by the lower peer id, so both ends keep the same one; of two in the same
    /// direction keep the newer. Returns the connection to close, if any.
    pub(crate) fn duplicate_to_close(
        &self,
        conn: ConnId,
        peer_id: PeerId,
        me: PeerId,
    ) -> Option<ConnId> {
        let other = self.conn_of(peer_id)?;
        let other_outgoing = self.conns.get(&other).is_some_and(|c| c.outgoing);
        let this_outgoing = self.conns.get(&conn).is_some_and(|c| c.outgoing);
        let keep_outgoing = me < peer_id;
        let keep_this = this_outgoing == other_outgoing || this_outgoing == keep_outgoing;
        Some(if keep_this { other } else { conn })
    }

    /// The handshake finished: `conn` leads to `peer_id`. False if `conn` is gone.
    pub(crate) fn mark_ready(&mut self, now: Instant, conn: ConnId, peer_id: PeerId) -> bool {
        let ready = self.moving(conn, |c| {
            c.state = ConnState::Ready;
            c.remote = Some(peer_id);
            c.next_ping_at = now;
        });
        if ready.is_none() {
            return false;
        }
        self.by_peer.insert(peer_id, conn);
        true
    }

    /// Records that we told the remote we want `content_id`; false if already told or
    /// not ready.
    pub(crate) fn add_our_interest(&mut self, conn: ConnId, content_id: ContentId) -> bool {
        self.conns
            .get_mut(&conn)
            .is_some_and(|c| c.is_ready() && c.our_interests.insert(content_id))
    }

    /// Records that the remote wants `content_id`; true the first time.
    pub(crate) fn add_remote_interest(&mut self, conn: ConnId, content_id: ContentId) -> bool {
        self.conns
            .get_mut(&conn)
            .is_some_and(|c| c.remote_interests.insert(content_id))
    }

    /// A pong: the round-trip time, if it answers the ping in flight (others are ignored).
    pub(crate) fn on_pong(&mut self, now: Instant, conn: ConnId, nonce: u64) -> Option<Duration> {
        let c = self.conns.get_mut(&conn)?;
        let (expected, sent_at) = c.ping_in_flight?;
        if expected != nonce {
            return None;
        }
        c.ping_in_flight = None;
        Some(now.saturating_since(sent_at))
    }

    /// Pings connections that are due, and lists those whose handshake or silence ran out.
    pub(crate) fn on_timer(
        &mut self,
        now: Instant,
        config: &PeerConfig,
        rng: &mut ChaCha8Rng,
        out: &mut Output,
    ) -> ConnTimers {
        let mut expired = Vec::new();
        let mut pings = Vec::new();
        // In connection order, as pings draw their nonces from the shared RNG.
        let mut due: Vec<ConnId> = self
            .deadlines
            .range(..=(now, ConnId(u64::MAX)))
            .map(|(_, id)| *id)
            .collect();
        due.sort_unstable();
        for id in due {
            let Some(c) = self.conns.get(&id) else {
                continue;
            };
            match c.state {
                ConnState::Ready => {
                    if now >= c.idle_deadline(&self.timeouts) {
                        expired.push(id);
                    } else if now >= c.next_ping_at {
                        let nonce = rng.random();
                        self.moving(id, |c| {
                            c.next_ping_at = now + config.ping_interval;
                            c.ping_in_flight = Some((nonce, now));
                        });
                        pings.push((id, nonce));
                    }
                }
                _ => {
                    if now >= c.handshake_deadline(&self.timeouts) {
                        expired.push(id);
                    }
                }
            }
        }
        for (conn, nonce) in pings {
            out.send(conn, Message::Ping { nonce });
        }
        ConnTimers { expired }
    }

    /// Forgets a connection. Returns it, and whether it was the one its remote was known
    /// by (its downloads' state goes with it then).
    pub(crate) fn remove(&mut self, conn: ConnId) -> Option<(PeerConn, bool)> {
        let c = self.conns.remove(&conn)?;
        self.deadlines.remove(&(c.deadline(&self.timeouts), conn));
        let current = c
            .remote
            .is_some_and(|remote| self.by_peer.get(&remote) == Some(&conn));
        if current && let Some(remote) = c.remote {
            self.by_peer.remove(&remote);
        }
        Some((c, current))
    }

    /// Goodbye and close on every connection; all are forgotten.
    pub(crate) fn shutdown(&mut self, out: &mut Output) {
        for &conn in self.conns.keys() {
            out.send(conn, Message::Goodbye);
            out.push(PeerAction::Close { conn });
        }
        self.conns.clear();
        self.deadlines.clear();
        self.by_peer.clear();
    }
}

#[cfg(test)]
mod tests {
    use crate::ids::PeerId;
    use crate::peer::PeerAction;
    use crate::secure::Remote;
    use crate::testkit::remote::{accept_as, hello, local_peer};
    use crate::time::Instant;
    use crate::wire::{Message, error_code};

    /// A `Hello` under another id than the connection's key is refused with the code the
    /// tracker uses for it, not as a malformed message.
    #[test]
    fn an_impostors_hello_is_refused_with_identity_mismatch() {
        let mut peer = local_peer();
        let key_of_3 = Remote {
            peer_id: PeerId(3),
            swarm: "s".into(),
        };
        let (conn, actions) = accept_as(
            &mut peer,
            Instant::ZERO,
            key_of_3,
            hello(PeerId(2), "x:1", "s"),
        )
        .unwrap();
        assert!(
            matches!(
                actions.as_slice(),
                [
                    PeerAction::Send {
                        conn: c1,
                        message: Message::Error { code: error_code::IDENTITY_MISMATCH, message },
                    },
                    PeerAction::Close { conn: c2 },
                ] if *c1 == conn && *c2 == conn && message.contains("claims peer id")
            ),
            "{actions:?}"
        );
    }
}
