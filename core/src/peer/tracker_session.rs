//! The peer's session with its tracker: connecting (trying each address in turn, backing
//! off after failures), the heartbeat, and what the tracker has been told on this session
//! (contents announced, chunks gained but not yet reported, origins).
//!
//! The tracker's state is soft: after every (re)connect the facade tells it everything
//! again. This part owns only the session; what to re-tell is the facade's to gather.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::action::{PeerAction, PeerNotice};
use super::config::PeerConfig;
use super::output::Output;
use super::serving::Held;
use crate::ids::{ConnId, ContentId};
use crate::time::Instant;
use crate::wire::Message;

/// Far future: the retry time of a session that must never reconnect.
const NEVER: Instant = Instant::from_nanos(u64::MAX);

/// Most doublings of the reconnect backoff: bounds the shift, the max caps the wait anyway.
const BACKOFF_DOUBLINGS_MAX: u32 = 16;

/// The tracker session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TrackerState {
    /// Not connected; the next attempt is at `retry_at`.
    Idle {
        retry_at: Instant,
    },
    Connecting {
        conn: ConnId,
    },
    AwaitingWelcome {
        conn: ConnId,
    },
    Ready {
        conn: ConnId,
    },
}

pub(crate) struct TrackerSession {
    state: TrackerState,
    /// Tracker addresses, tried in turn; emptied by a shutdown.
    addrs: Vec<String>,
    addr_index: usize,
    failures: u32,
    next_heartbeat_at: Instant,
    /// Contents announced on the current tracker session: the tracker ignores a `Have` for
    /// a content not announced first, so the first chunk of a download goes as an `Announce`.
    announced: BTreeSet<ContentId>,
    /// Chunks gained and not yet told to the tracker.
    unsent_haves: BTreeMap<ContentId, Vec<u32>>,
    haves_flush_at: Option<Instant>,
    /// Origins (URL and validator) of held contents, told to the tracker on every session.
    origins: BTreeMap<ContentId, String>,
}

impl TrackerSession {
    pub(crate) fn new(now: Instant, addrs: Vec<String>) -> TrackerSession {
        TrackerSession {
            state: TrackerState::Idle { retry_at: now },
            addrs,
            addr_index: 0,
            failures: 0,
            next_heartbeat_at: now,
            announced: BTreeSet::new(),
            unsent_haves: BTreeMap::new(),
            haves_flush_at: None,
            origins: BTreeMap::new(),
        }
    }

    pub(crate) fn conn(&self) -> Option<ConnId> {
        match self.state {
            TrackerState::Idle { .. } => None,
            TrackerState::Connecting { conn }
            | TrackerState::AwaitingWelcome { conn }
            | TrackerState::Ready { conn } => Some(conn),
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        matches!(self.state, TrackerState::Ready { .. })
    }

    pub(crate) fn is_awaiting_welcome(&self) -> bool {
        matches!(self.state, TrackerState::AwaitingWelcome { .. })
    }

    /// When the session next needs the timer: a reconnect, or a heartbeat.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.state {
            TrackerState::Idle { retry_at } if !self.addrs.is_empty() => Some(retry_at),
            TrackerState::Ready { .. } => Some(self.next_heartbeat_at),
            _ => None,
        }
    }

    /// When the batched haves go out, if any wait.
    pub(crate) fn haves_deadline(&self) -> Option<Instant> {
        self.haves_flush_at
    }

    /// Sends on the session if it is ready; otherwise the next session re-tells it.
    pub(crate) fn send(&mut self, out: &mut Output, message: Message) {
        if let TrackerState::Ready { conn } = self.state {
            out.send(conn, message);
        }
    }

    /// Reconnects or sends the heartbeat, whichever is due.
    pub(crate) fn on_timer(
        &mut self,
        now: Instant,
        config: &PeerConfig,
        out: &mut Output,
        uploaded_bytes: u64,
        downloaded_bytes: u64,
    ) {
        match self.state {
            TrackerState::Idle { retry_at } if now >= retry_at => self.connect(out),
            TrackerState::Ready { conn } if now >= self.next_heartbeat_at => {
                self.next_heartbeat_at = now + config.heartbeat_interval;
                let heartbeat = Message::Heartbeat {
                    uploaded_bytes,
                    downloaded_bytes,
                };
                out.send(conn, heartbeat);
            }
            _ => {}
        }
    }

    fn connect(&mut self, out: &mut Output) {
        if self.addrs.is_empty() {
            self.state = TrackerState::Idle { retry_at: NEVER };
            return;
        }
        let addr = self.current_addr();
        let conn = out.new_conn_id();
        self.state = TrackerState::Connecting { conn };
        out.push(PeerAction::Connect { conn, addr });
    }

    /// The connection to the tracker is open: say hello. False when `conn` is not ours.
    pub(crate) fn connected(&mut self, conn: ConnId, hello: Message, out: &mut Output) -> bool {
        if self.state != (TrackerState::Connecting { conn }) {
            return false;
        }
        self.state = TrackerState::AwaitingWelcome { conn };
        out.send(conn, hello);
        true
    }

    /// The tracker welcomed us. Everything it was told is forgotten: the caller tells it
    /// all again.
    pub(crate) fn welcomed(
        &mut self,
        now: Instant,
        conn: ConnId,
        config: &PeerConfig,
        out: &mut Output,
    ) {
        self.state = TrackerState::Ready { conn };
        self.failures = 0;
        self.next_heartbeat_at = now + config.heartbeat_interval;
        let addr = self.current_addr();
        out.notify(PeerNotice::TrackerConnected { addr });
        self.announced.clear();
    }

    /// The origins to tell a new session, after the contents are announced.
    pub(crate) fn retell_origins(&mut self, out: &mut Output) {
        let origins: Vec<(ContentId, String)> =
            self.origins.iter().map(|(c, o)| (*c, o.clone())).collect();
        for (content_id, origin) in origins {
            self.send(out, Message::SetOrigin { content_id, origin });
        }
    }

    /// Haves gained before this session are covered by its announces.
    pub(crate) fn drop_unsent_haves(&mut self) {
        self.unsent_haves.clear();
        self.haves_flush_at = None;
    }

    /// The tracker connection failed or broke: back off (exponentially, with jitter) and
    /// try the next tracker address.
    pub(crate) fn lost(
        &mut self,
        now: Instant,
        config: &PeerConfig,
        rng: &mut ChaCha8Rng,
        out: &mut Output,
    ) {
        if self.is_ready() {
            let addr = self.current_addr();
            out.notify(PeerNotice::TrackerLost { addr });
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        self.addr_index = self.addr_index.wrapping_add(1);
        let exponent = self.failures.saturating_sub(1).min(BACKOFF_DOUBLINGS_MAX);
        let base = config
            .tracker_backoff_min
            .saturating_mul(1 << exponent)
            .min(config.tracker_backoff_max);
        // Jitter in [base/2, base): peers that lost the same tracker do not all come back
        // in the same instant.
        let jitter = rng.random_range(0.5..1.0);
        let wait = base.mul_f64(jitter);
        self.state = TrackerState::Idle {
            retry_at: now + wait,
        };
    }

    fn current_addr(&self) -> String {
        if self.addrs.is_empty() {
            return String::new();
        }
        self.addrs[self.addr_index % self.addrs.len()].clone()
    }

    /// Tells the tracker this peer holds (some of) a content.
    pub(crate) fn announce(
        &mut self,
        content_id: ContentId,
        held: Option<&Held>,
        out: &mut Output,
    ) {
        let Some(held) = held else {
            return;
        };
        // An empty announce would read as a withdrawal: wait for the first chunk.
        if held.chunks.is_empty() || !self.is_ready() {
            return;
        }
        let message = Message::Announce {
            manifest: held.manifest.clone(),
            chunks: held.chunks.clone(),
        };
        self.unsent_haves.remove(&content_id);
        self.announced.insert(content_id);
        self.send(out, message);
    }

    pub(crate) fn withdraw(&mut self, content_id: ContentId, out: &mut Output) {
        self.announced.remove(&content_id);
        self.send(out, Message::Withdraw { content_id });
    }

    pub(crate) fn set_origin(&mut self, content_id: ContentId, origin: String, out: &mut Output) {
        self.origins.insert(content_id, origin.clone());
        self.send(out, Message::SetOrigin { content_id, origin });
    }

    /// Asks where a download's content is (and its manifest, if it lacks one).
    pub(crate) fn locate(&mut self, content_id: ContentId, needs_manifest: bool, out: &mut Output) {
        self.send(out, Message::Locate { content_id });
        if needs_manifest {
            self.send(out, Message::GetManifest { content_id });
        }
    }

    /// Queues a chunk gained for the next batch of haves. `now` is the latest time the
    /// machine was given: the batch deadline need not be precise.
    pub(crate) fn record_have(
        &mut self,
        now: Instant,
        config: &PeerConfig,
        content_id: ContentId,
        chunk_index: u32,
    ) {
        self.unsent_haves
            .entry(content_id)
            .or_default()
            .push(chunk_index);
        if self.haves_flush_at.is_none() {
            self.haves_flush_at = Some(now + config.have_batch_delay);
        }
    }

    /// Sends the batched haves; a content not yet announced on this session is announced.
    pub(crate) fn flush_haves(&mut self, held: &BTreeMap<ContentId, Held>, out: &mut Output) {
        self.haves_flush_at = None;
        for (content_id, chunk_indices) in std::mem::take(&mut self.unsent_haves) {
            if self.announced.contains(&content_id) {
                self.send(
                    out,
                    Message::Have {
                        content_id,
                        chunk_indices,
                    },
                );
            } else {
                self.announce(content_id, held.get(&content_id), out);
            }
        }
    }

    /// Goodbye to the tracker; no reconnect after a shutdown.
    pub(crate) fn shutdown(&mut self, held: &BTreeMap<ContentId, Held>, out: &mut Output) {
        if let Some(conn) = self.conn() {
            self.flush_haves(held, out);
            out.send(conn, Message::Goodbye);
            out.push(PeerAction::Close { conn });
        }
        self.state = TrackerState::Idle { retry_at: NEVER };
        self.addrs.clear();
    }
}
