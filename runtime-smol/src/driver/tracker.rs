//! The tracker task: owns one `p2p_core::tracker::Tracker`, accepts connections for it,
//! feeds it their messages and its timer, and carries out its sends and closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use p2p_core::ConnId;
use p2p_core::secure::Keyring;
use p2p_core::tracker::{Tracker, TrackerAction, TrackerConfig};
use smol::channel::Sender;
use smol::{Task, future};

use crate::io::conn_limits::ConnLimits;
use crate::io::net::{self, Accepted, ConnEvent, ConnHandle, NetEvent};
use crate::io::secure::Security;
use crate::io::{clock, keys};

enum Event {
    Net(NetEvent),
    /// Boxed: the record layer's state would make every event as large.
    Accepted(Box<Accepted>),
    Stop,
}

impl From<NetEvent> for Event {
    fn from(event: NetEvent) -> Event {
        Event::Net(event)
    }
}

/// A running tracker.
pub struct TrackerHandle {
    /// The address it listens on (the actual port when 0 was asked for).
    pub addr: SocketAddr,
    events: Sender<Event>,
    task: Task<()>,
}

impl TrackerHandle {
    /// Stops the tracker; its connections are closed.
    pub async fn stop(self) {
        let _ = self.events.send(Event::Stop).await;
        self.task.await;
    }
}

/// Where a tracker lists a peer (see `TrackerConfig::trust_claimed_addresses`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListedAddresses {
    /// At the IP its connection came from, with the port it claims: the default.
    Observed,
    /// At the address it claims (`p2p tracker --trust-claimed-addresses`).
    Claimed,
    /// At the address it claims when it connects over loopback, else as `Observed`: the
    /// embedded tracker of `p2p share --advertise`, whose sharer knows the address it is
    /// reached at from outside (a NAT's).
    ClaimedOverLoopback,
}

/// Binds `listen` and starts a tracker there, serving the swarms of `keyring`: a
/// connection whose handshake names another swarm is closed before the tracker hears of it.
pub async fn start(
    listen: SocketAddr,
    keyring: Keyring,
    addresses: ListedAddresses,
) -> anyhow::Result<TrackerHandle> {
    let (events, events_rx) = smol::channel::bounded(net::EVENT_QUEUE_MAX);
    let key = keys::new_static_key();
    let tracker_id = key.peer_id();
    let security = Arc::new(Security::tracker(key, keyring));
    let addr = net::listen(
        listen,
        events.clone(),
        |accepted| Event::Accepted(Box::new(accepted)),
        security,
        ConnLimits::tracker(),
    )
    .await?;
    let config = TrackerConfig {
        rng_seed: clock::random_u64(),
        tracker_id,
        trust_claimed_addresses: addresses == ListedAddresses::Claimed,
        trust_loopback_claims: addresses == ListedAddresses::ClaimedOverLoopback,
        ..TrackerConfig::default()
    };
    let mut tracker = Tracker::new(config);
    let sender = events.clone();
    let task = smol::spawn(async move {
        let mut conns: HashMap<ConnId, ConnHandle> = HashMap::new();
        loop {
            let deadline = tracker.poll_timeout();
            let next = future::or(async { events_rx.recv().await.ok() }, async {
                clock::timer_for(deadline).await;
                None
            })
            .await;
            let now = clock::now();
            match next {
                Some(Event::Stop) => break,
                Some(Event::Accepted(accepted)) => {
                    // A socket that cannot say where it comes from is already broken:
                    // dropped, it is closed.
                    if let Some(from) = accepted.peer_addr() {
                        let conn = tracker.accept_at(
                            now,
                            accepted.remote().clone(),
                            net::observed(from),
                            accepted.reached_ip(),
                        );
                        conns.insert(conn, net::attach(conn, *accepted, sender.clone(), None));
                    }
                }
                Some(Event::Net(NetEvent { conn, event })) if conns.contains_key(&conn) => {
                    match event {
                        ConnEvent::Message(message) => tracker.handle_message(now, conn, message),
                        ConnEvent::Closed | ConnEvent::Refused => {
                            conns.remove(&conn);
                            tracker.handle_closed(now, conn);
                        }
                        ConnEvent::Connected(_) | ConnEvent::Sent => {}
                    }
                }
                // A late event of a connection already closed.
                Some(Event::Net(_)) => {}
                None => {}
            }
            if tracker.poll_timeout().is_some_and(|at| at <= now) {
                tracker.handle_timeout(now);
            }
            drain(&mut tracker, &mut conns);
        }
        for (_, handle) in conns.drain() {
            drop(handle.close());
        }
    });
    tracing::info!(%addr, "tracker listening");
    Ok(TrackerHandle { addr, events, task })
}

/// Carries out every action the tracker has queued: all of them are drained first, then
/// carried out; a connection found closed on the way is told to the tracker afterwards
/// (its own actions drained the same way), as the simulator does. The tracker is never
/// called while its actions are being drained.
fn drain(tracker: &mut Tracker, conns: &mut HashMap<ConnId, ConnHandle>) {
    loop {
        let actions: Vec<_> = std::iter::from_fn(|| tracker.poll_action()).collect();
        let mut closed = Vec::new();
        for action in actions {
            match action {
                TrackerAction::Send { conn, message } => {
                    let failed = conns.get(&conn).map(|h| h.send(message)).transpose().err();
                    if let Some(why) = failed {
                        tracing::warn!(%conn, "closing: {why}");
                        if let Some(handle) = conns.remove(&conn) {
                            drop(handle.close());
                        }
                        closed.push(conn);
                    }
                }
                TrackerAction::Close { conn } => {
                    if let Some(handle) = conns.remove(&conn) {
                        drop(handle.close());
                    }
                }
            }
        }
        if closed.is_empty() {
            return;
        }
        let now = clock::now();
        for conn in closed {
            tracker.handle_closed(now, conn);
        }
    }
}
