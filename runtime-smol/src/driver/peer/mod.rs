//! The peer task: owns one `p2p_core::peer::Peer`, feeds it every event (sockets, timers,
//! disk completions, user commands) and carries out its actions.
//!
//! Everything that can take time runs elsewhere: sockets in their reader and writer tasks
//! (`net`), chunk reads, hashing and writes on smol's blocking pool (`store`). The task
//! itself only moves events in and actions out, so it keeps up with the network.
//!
//! Its parts: the user's end (`handle`), how the events become inputs (`events`), the
//! actions and how they are carried out (`actions`), the notices for the user (`notices`),
//! a download's files and resume record (`downloads`) and the pure finishing order they
//! follow (`finish`), and stopping (`shutdown`). The `Event` enum lives here, since every
//! part sends or receives events: a part that only needs it then depends on no sibling.

mod actions;
mod downloads;
mod events;
mod finish;
mod handle;
mod notices;
mod shutdown;

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use p2p_core::peer::{
    FetchSpec, Peer, PeerConfig, PeerNotice, RangeError, StoreOutcome, helper_fetches_max,
};
use p2p_core::secure::SwarmSecret;
use p2p_core::{ChunkSet, ConnId, ContentId, Manifest, PeerId};
use smol::channel::{Receiver, Sender};
use smol::{Timer, future};

use self::actions::Deferred;
use self::downloads::DownloadFiles;
pub use self::handle::{DownloadOptions, PeerHandle};
use crate::io::address_book::AddressBook;
use crate::io::conn_limits::ConnLimits;
use crate::io::net::{self, Accepted, ConnHandle, NetEvent, WriterDone};
use crate::io::origin_policy::OriginPolicy;
use crate::io::rate_limit::RateLimiter;
use crate::io::secure::Security;
use crate::io::store::{Prepared, Storage};
use crate::io::{clock, keys};

/// How often the resume record of a running download is rewritten (at most).
const RECORD_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// On shutdown, how long to wait for chunk writes in flight and for goodbyes to be sent.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Progress events waiting for the user beyond this many are dropped (the next one says
/// the same, more recently).
const PROGRESS_BACKLOG_MAX: usize = 256;

/// How to run a peer.
#[derive(Clone, Debug)]
pub struct PeerOptions {
    /// The swarm's secret: every connection, to peers and trackers, proves it holds it.
    pub secret: SwarmSecret,
    /// Where to accept peer connections (port 0: any free port). `None`: accept none, so
    /// this peer only downloads and serves no one.
    pub listen: Option<SocketAddr>,
    /// The host others reach this peer at, when it is not one of its own addresses (a
    /// NAT's, `share --advertise`): claimed with the listening port in every `Hello`.
    pub advertise_host: Option<String>,
    pub trackers: Vec<String>,
    /// Other trackers announced to as well, each with its addresses (a seeding getter's
    /// own tracker).
    pub more_trackers: Vec<Vec<String>>,
    /// Upload cap in bytes per second, all connections together.
    pub upload_limit: Option<u64>,
    /// How often a running download asks the tracker for more peers (`None`: the core's
    /// default, suited to large files).
    pub locate_interval: Option<Duration>,
    /// Take ranges of other peers' cooperative origin downloads.
    pub help_others: bool,
    /// Requests kept in flight to an origin (as fetcher or helper); `None`: the core's
    /// default (1).
    pub origin_connections: Option<u32>,
    /// What this peer may fetch when helping others (the strict default when it does not).
    pub origin_policy: OriginPolicy,
    /// Where to remember the swarm's members this peer meets (`get`), so that a later run
    /// finds them when its trackers are gone.
    pub address_book: Option<AddressBook>,
}

/// Everything the peer task reacts to.
enum Event {
    Net(NetEvent),
    /// Boxed: the record layer's state would make every event as large.
    Accepted(Box<Accepted>),
    Publish {
        manifest: Manifest,
        storage: Storage,
    },
    Download {
        content_id: ContentId,
        manifest: Option<Manifest>,
        /// Boxed: a selection's globs would make every event as large.
        options: Box<DownloadOptions>,
    },
    Shutdown,
    ReadDone {
        token: u64,
        result: Result<Bytes, String>,
    },
    StoreDone {
        token: u64,
        content_id: ContentId,
        chunk_index: u32,
        outcome: StoreOutcome,
    },
    Prepared {
        content_id: ContentId,
        /// Boxed: it is the largest event by far, and rare.
        result: Result<Box<Prepared>, String>,
    },
    RecordSaved {
        content_id: ContentId,
    },
    /// The part file of a complete download was synced (or could not be).
    Synced {
        content_id: ContentId,
        result: Result<(), String>,
    },
    /// The synced part file was renamed to its final name (or could not be).
    Renamed {
        content_id: ContentId,
        result: Result<(), String>,
    },
    Fetch {
        spec: FetchSpec,
        file: Arc<File>,
        /// Ranges an earlier run left in `file` (a resumed fetch).
        on_disk: Option<ChunkSet>,
        reply: Sender<u64>,
    },
    CancelFetch {
        job_id: u64,
    },
    SetOrigin {
        content_id: ContentId,
        origin: String,
    },
    RangeFetched {
        token: u64,
        result: Result<Bytes, RangeError>,
    },
    RangeWritten {
        token: u64,
        result: Result<(), String>,
    },
}

impl From<NetEvent> for Event {
    fn from(event: NetEvent) -> Event {
        Event::Net(event)
    }
}

/// What the peer tells its user.
#[derive(Clone, Debug)]
pub enum UserEvent {
    /// Progress, tracker connection changes, bans.
    Notice(PeerNotice),
    /// The file is complete, synced and under its final name.
    Downloaded {
        content_id: ContentId,
        path: PathBuf,
        sha256: String,
    },
    DownloadFailed {
        content_id: ContentId,
        reason: String,
    },
    /// The tracker at `addr` closed our connection during the handshake or before it said
    /// anything: it does not serve this swarm (a wrong secret), or it is not a p2p2 tracker.
    TrackerRefused { addr: String },
    /// The peers connected now, by their key's id (each proved by its handshake).
    Peers { peer_ids: Vec<PeerId> },
}

/// Transfer totals of a peer, reported when it stops.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerStats {
    pub uploaded_bytes: u64,
    pub downloaded_bytes: u64,
}

/// A file (or a collection's tree) the peer reads chunks from (and, while downloading,
/// writes them to).
struct ContentFile {
    storage: Storage,
    chunk_size: u32,
    /// Whether the file's pages are unlikely to be in the page cache: a download's chunks
    /// are written with direct I/O. Blocks to serve are then read direct at once.
    uncached: bool,
}

/// How often the connected peers are compared with the address book.
const REMEMBER_EVERY: Duration = Duration::from_secs(1);

/// The address book of the swarm, and who of this run is already in it.
struct Remembering {
    book: AddressBook,
    remembered: BTreeSet<(PeerId, String)>,
    next_look: std::time::Instant,
}

impl Remembering {
    fn new(book: AddressBook) -> Remembering {
        Remembering {
            book,
            remembered: BTreeSet::new(),
            next_look: std::time::Instant::now(),
        }
    }

    /// Writes the book when `peer` is connected to someone not remembered yet in this run:
    /// as many writes as peers met, whatever the churn. Looks at most every
    /// `REMEMBER_EVERY` unless `now_anyway`.
    fn look(&mut self, peer: &Peer, now_anyway: bool) {
        let now = std::time::Instant::now();
        if !now_anyway && now < self.next_look {
            return;
        }
        self.next_look = now + REMEMBER_EVERY;
        let connected = peer.connected_peers();
        if connected.iter().all(|p| self.remembered.contains(p)) {
            return;
        }
        self.book.remember(&connected);
        self.remembered.extend(connected);
    }
}

struct Driver {
    peer: Peer,
    events: Sender<Event>,
    user: Sender<UserEvent>,
    limiter: Option<Arc<RateLimiter>>,
    /// This peer's key and swarm, for every connection's handshake.
    security: Arc<Security>,
    conns: HashMap<ConnId, ConnHandle>,
    /// The trackers' addresses, and the outgoing connections to them: a refusal there is
    /// told to the user.
    trackers: Vec<String>,
    tracker_conns: HashMap<ConnId, String>,
    /// Trackers that refused our handshake at least once (each is warned about once).
    refused_by: std::collections::HashSet<String>,
    /// The peer connections open now, with the id their handshake proved (for the user).
    peer_keys: std::collections::BTreeMap<ConnId, PeerId>,
    files: HashMap<ContentId, Arc<ContentFile>>,
    downloads: HashMap<ContentId, DownloadFiles>,
    next_record_flush: Option<std::time::Instant>,
    stores_in_flight: usize,
    /// Writers of connections closed during shutdown, to wait for.
    closing: Vec<WriterDone>,
    /// The part files of running cooperative downloads, by job id.
    fetch_files: HashMap<u64, Arc<File>>,
    /// A flag per origin fetch running, by token: set, the fetch stops (`CancelFetch`).
    fetch_cancels: HashMap<u64, Arc<AtomicBool>>,
    /// Inputs that actions produced at once, fed to the machine after the drain.
    deferred: Vec<Deferred>,
    /// How ranges are fetched for other peers' jobs.
    helping: Helping,
    /// `None`: this peer remembers nobody.
    remembering: Option<Remembering>,
}

/// Fetching for others: an agent bound by the origin policy, and as many permits as the
/// machine may ask for fetches at once, so network input never makes the blocking pool
/// grow past them even if the machine asked for more.
struct Helping {
    agent: ureq::Agent,
    permits: Arc<smol::lock::Semaphore>,
}

/// Binds the listener (when asked) and starts the peer task.
pub async fn start(options: PeerOptions) -> anyhow::Result<PeerHandle> {
    let (events, events_rx) = smol::channel::bounded(net::EVENT_QUEUE_MAX);
    let key = keys::new_static_key();
    // The machine's id must be the key's: the handshake proves that one to others.
    let peer_id = key.peer_id();
    let swarm = options.secret.tag().name();
    let security = Arc::new(Security::peer(key, options.secret.clone()));
    let listen_addr = match options.listen {
        Some(addr) => Some(
            net::listen(
                addr,
                events.clone(),
                |accepted| Event::Accepted(Box::new(accepted)),
                security.clone(),
                ConnLimits::peer(),
            )
            .await?,
        ),
        None => None,
    };
    let mut config = PeerConfig {
        peer_id,
        swarm,
        listen_addr: match (listen_addr, &options.advertise_host) {
            (Some(bound), Some(host)) => format!("{host}:{}", bound.port()),
            (Some(bound), None) => bound.to_string(),
            (None, _) => String::new(),
        },
        trackers: options.trackers.clone(),
        more_trackers: options.more_trackers.clone(),
        rng_seed: clock::random_u64(),
        ..PeerConfig::default()
    };
    if let Some(interval) = options.locate_interval {
        config.locate_interval = interval;
    }
    config.help_others = options.help_others;
    if let Some(n) = options.origin_connections {
        config.origin_connections = n.max(1);
    }
    tracing::info!(%peer_id, listen = %config.listen_addr, trackers = ?config.trackers, "peer starting");
    // A peer that reaches its tracker over loopback is listed at a loopback address; the
    // tracker gives it to peers on other hosts at the address they reached the tracker's
    // host at (`Tracker::accept_at`), which is this host too.
    let helping = Helping {
        agent: crate::io::http::helping_agent(options.origin_policy.clone()),
        permits: Arc::new(smol::lock::Semaphore::new(helper_fetches_max(
            config.origin_connections,
        ))),
    };
    let (user, user_events) = smol::channel::unbounded();
    let driver = Driver {
        peer: Peer::new(config, clock::now()),
        events: events.clone(),
        user,
        limiter: options.upload_limit.map(RateLimiter::new),
        security,
        conns: HashMap::new(),
        trackers: options
            .trackers
            .iter()
            .chain(options.more_trackers.iter().flatten())
            .cloned()
            .collect(),
        tracker_conns: HashMap::new(),
        refused_by: Default::default(),
        peer_keys: Default::default(),
        files: HashMap::new(),
        downloads: HashMap::new(),
        next_record_flush: None,
        stores_in_flight: 0,
        closing: Vec::new(),
        fetch_files: HashMap::new(),
        fetch_cancels: HashMap::new(),
        deferred: Vec::new(),
        helping,
        remembering: options.address_book.map(Remembering::new),
    };
    let task = smol::spawn(driver.run(events_rx));
    Ok(PeerHandle {
        events,
        user_events,
        listen_addr,
        task,
    })
}

/// Opens a file to publish.
pub fn open_published(path: &std::path::Path) -> anyhow::Result<Storage> {
    File::open(path)
        .map(Storage::File)
        .with_context(|| format!("cannot open {}", path.display()))
}

enum Wake {
    Event(Event),
    Timer,
    Closed,
}

impl Driver {
    async fn run(mut self, events: Receiver<Event>) -> PeerStats {
        self.drain();
        loop {
            let deadline = self.peer.poll_timeout();
            let record_flush = self.next_record_flush;
            let wake = future::or(
                async {
                    match events.recv().await {
                        Ok(event) => Wake::Event(event),
                        Err(_) => Wake::Closed,
                    }
                },
                async {
                    let machine = clock::timer_for(deadline);
                    let record = match record_flush {
                        Some(at) => Timer::at(at),
                        None => Timer::never(),
                    };
                    future::or(machine, record).await;
                    Wake::Timer
                },
            )
            .await;
            match wake {
                Wake::Event(Event::Shutdown) | Wake::Closed => break,
                Wake::Event(event) => self.handle(event),
                Wake::Timer => {}
            }
            let now = clock::now();
            if self.peer.poll_timeout().is_some_and(|at| at <= now) {
                self.peer.handle_timeout(now);
            }
            if self
                .next_record_flush
                .is_some_and(|at| at <= std::time::Instant::now())
            {
                self.flush_records();
            }
            self.drain();
            self.remember_peers(false);
        }
        self.shutdown(&events).await
    }

    /// Remembers the peers connected now (see `Remembering::look`).
    fn remember_peers(&mut self, now_anyway: bool) {
        if let Some(remembering) = &mut self.remembering {
            remembering.look(&self.peer, now_anyway);
        }
    }

    /// Carries out every action the machine has queued: all of them are drained first,
    /// then carried out, and the inputs they produced at once are fed afterwards (their
    /// own actions drained the same way), as the simulator does. The machine is never
    /// called while its actions are being drained.
    fn drain(&mut self) {
        loop {
            let actions: Vec<_> = std::iter::from_fn(|| self.peer.poll_action()).collect();
            for action in actions {
                self.act(action);
            }
            if self.deferred.is_empty() {
                return;
            }
            for input in std::mem::take(&mut self.deferred) {
                self.feed(input);
            }
        }
    }
}
