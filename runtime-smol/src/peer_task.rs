//! The peer task: owns one `p2p_core::peer::Peer`, feeds it every event (sockets, timers,
//! disk completions, user commands) and carries out its actions.
//!
//! Everything that can take time runs elsewhere: sockets in their reader and writer tasks
//! (`net`), chunk reads, hashing and writes on smol's blocking pool (`store`). The task
//! itself only moves events in and actions out, so it keeps up with the network.

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_net::TcpStream;
use bytes::Bytes;
use p2p_core::coop::{FetchSpec, RangeError};
use p2p_core::ids::to_hex;
use p2p_core::peer::{Peer, PeerAction, PeerConfig, PeerNotice, StoreOutcome};
use p2p_core::{ConnId, ContentId, Manifest, PeerId};
use smol::channel::{Receiver, Sender};
use smol::{Task, Timer, future};

use crate::http;
use crate::net::{self, ConnEvent, ConnHandle, NetEvent, RateLimiter, WriterDone};
use crate::store::{self, Destination, PartPaths, Prepared, Record};

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
    pub swarm: String,
    /// Where to accept peer connections (port 0: any free port). `None`: accept none, so
    /// this peer only downloads and serves no one.
    pub listen: Option<SocketAddr>,
    pub trackers: Vec<String>,
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
}

/// Transfer totals of a peer, reported when it stops.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerStats {
    pub uploaded_bytes: u64,
    pub downloaded_bytes: u64,
}

/// The user's end of a running peer.
pub struct PeerHandle {
    events: Sender<Event>,
    pub user_events: Receiver<UserEvent>,
    /// The address other peers reach this one at, when it listens.
    pub listen_addr: Option<SocketAddr>,
    task: Task<PeerStats>,
}

impl PeerHandle {
    /// Starts serving a complete file, already open.
    pub async fn publish(&self, manifest: Manifest, file: File) {
        let _ = self.events.send(Event::Publish { manifest, file }).await;
    }

    /// Starts a download; its outcome arrives as a `UserEvent`.
    pub async fn download(
        &self,
        content_id: ContentId,
        manifest: Option<Manifest>,
        destination: Destination,
        force: bool,
        expected_sha256: Option<String>,
    ) {
        let command = Event::Download {
            content_id,
            manifest,
            destination,
            force,
            expected_sha256,
        };
        let _ = self.events.send(command).await;
    }

    /// Starts a cooperative origin download into `file` (the preallocated `NAME.part`);
    /// returns its job id, which the `Fetch*` notices carry.
    pub async fn fetch(&self, spec: FetchSpec, file: Arc<File>) -> anyhow::Result<u64> {
        let (reply, job_id) = smol::channel::bounded(1);
        self.events
            .send(Event::Fetch { spec, file, reply })
            .await
            .map_err(|_| anyhow::anyhow!("the peer stopped"))?;
        job_id
            .recv()
            .await
            .map_err(|_| anyhow::anyhow!("the peer stopped"))
    }

    /// Stops a cooperative download; helpers are told.
    pub async fn cancel_fetch(&self, job_id: u64) {
        let _ = self.events.send(Event::CancelFetch { job_id }).await;
    }

    /// Tells the tracker that a published content is the file at `origin` ("URL validator").
    pub async fn set_origin(&self, content_id: ContentId, origin: String) {
        let _ = self
            .events
            .send(Event::SetOrigin { content_id, origin })
            .await;
    }

    /// Says goodbye to the tracker and peers, saves resume records, and stops.
    pub async fn shutdown(self) -> PeerStats {
        let _ = self.events.send(Event::Shutdown).await;
        self.task.await
    }
}

/// Everything the peer task reacts to.
enum Event {
    Net(NetEvent),
    Accepted(TcpStream),
    Publish {
        manifest: Manifest,
        file: File,
    },
    Download {
        content_id: ContentId,
        manifest: Option<Manifest>,
        destination: Destination,
        force: bool,
        /// The file's SHA-256 the user expects (lowercase hex).
        expected_sha256: Option<String>,
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
        result: Result<Prepared, String>,
    },
    RecordSaved {
        content_id: ContentId,
    },
    Finalized {
        content_id: ContentId,
        result: Result<(PathBuf, String), String>,
    },
    Fetch {
        spec: FetchSpec,
        file: Arc<File>,
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

/// A file the peer reads chunks from (and, while downloading, writes them to).
struct ContentFile {
    file: File,
    chunk_size: u32,
    /// Whether the file's pages are unlikely to be in the page cache: a download's chunks
    /// are written with direct I/O. Blocks to serve are then read direct at once.
    uncached: bool,
}

/// The driver's side of one download: where it goes and what is on disk.
struct DownloadFiles {
    destination: Destination,
    force: bool,
    /// The file's SHA-256 the user expects (lowercase hex): any other content is refused
    /// before its part file is made.
    expected_sha256: Option<String>,
    /// Known once the download is prepared.
    paths: Option<PartPaths>,
    in_place: bool,
    /// The file's SHA-256 (hex), known with the manifest, printed once every chunk checked.
    sha256: String,
    /// Chunks verified and written, as the next record will list them.
    record: Option<Record>,
    record_dirty: bool,
    record_write_in_flight: bool,
    /// Complete: waiting for a record write to finish before the rename.
    finalize_waiting: bool,
    finalizing: bool,
}

struct Driver {
    peer: Peer,
    events: Sender<Event>,
    user: Sender<UserEvent>,
    limiter: Option<Arc<RateLimiter>>,
    conns: HashMap<ConnId, ConnHandle>,
    files: HashMap<ContentId, Arc<ContentFile>>,
    downloads: HashMap<ContentId, DownloadFiles>,
    next_record_flush: Option<std::time::Instant>,
    stores_in_flight: usize,
    /// Writers of connections closed during shutdown, to wait for.
    closing: Vec<WriterDone>,
    /// The part files of running cooperative downloads, by job id.
    fetch_files: HashMap<u64, Arc<File>>,
}

/// Binds the listener (when asked) and starts the peer task.
pub async fn start(options: PeerOptions) -> anyhow::Result<PeerHandle> {
    let (events, events_rx) = smol::channel::bounded(net::EVENT_QUEUE_MAX);
    let listen_addr = match options.listen {
        Some(addr) => Some(net::listen(addr, events.clone(), Event::Accepted).await?),
        None => None,
    };
    let peer_id = PeerId(net::random_u64());
    let mut config = PeerConfig {
        peer_id,
        swarm: options.swarm.clone(),
        listen_addr: listen_addr.map(|a| a.to_string()).unwrap_or_default(),
        trackers: options.trackers.clone(),
        rng_seed: net::random_u64(),
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
    if let Some(listen) = listen_addr.filter(|a| a.ip().is_unspecified())
        && let Some(tracker) = options.trackers.iter().find(|t| is_loopback_addr(t))
    {
        // The tracker lists a peer on every interface at the address its connection came
        // from: here a loopback one, which no other machine can dial.
        tracing::warn!(
            "serving on {listen} for other machines, but the tracker {tracker} is reached over loopback, so it lists this peer at a loopback address only this machine can reach; give the tracker's LAN address (--tracker HOST:PORT)"
        );
    }
    let (user, user_events) = smol::channel::unbounded();
    let driver = Driver {
        peer: Peer::new(config, net::now()),
        events: events.clone(),
        user,
        limiter: options.upload_limit.map(RateLimiter::new),
        conns: HashMap::new(),
        files: HashMap::new(),
        downloads: HashMap::new(),
        next_record_flush: None,
        stores_in_flight: 0,
        closing: Vec::new(),
        fetch_files: HashMap::new(),
    };
    let task = smol::spawn(driver.run(events_rx));
    Ok(PeerHandle {
        events,
        user_events,
        listen_addr,
        task,
    })
}

/// Whether `addr` (`IP:PORT` or `HOST:PORT`) names this machine's loopback interface.
fn is_loopback_addr(addr: &str) -> bool {
    match addr.parse::<SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => addr
            .rsplit_once(':')
            .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
    }
}

/// Opens a file to publish, with the chunk size its manifest uses.
pub fn open_published(path: &std::path::Path) -> anyhow::Result<File> {
    File::open(path).with_context(|| format!("cannot open {}", path.display()))
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
                    let machine = net::timer_for(deadline);
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
            let now = net::now();
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
        }
        self.shutdown(&events).await
    }

    fn handle(&mut self, event: Event) {
        let now = net::now();
        match event {
            Event::Net(NetEvent { conn, event }) => {
                if !self.conns.contains_key(&conn) {
                    // A late event of a connection the machine already closed.
                    return;
                }
                match event {
                    ConnEvent::Connected => self.peer.handle_connected(now, conn),
                    ConnEvent::Message(message) => self.peer.handle_message(now, conn, message),
                    ConnEvent::Sent => self.peer.handle_sent(now, conn),
                    ConnEvent::Closed => {
                        self.conns.remove(&conn);
                        self.peer.handle_closed(now, conn);
                    }
                }
            }
            Event::Accepted(stream) => match self.peer.accept(now) {
                Some(conn) => {
                    let handle =
                        net::attach(conn, stream, self.events.clone(), self.limiter.clone());
                    self.conns.insert(conn, handle);
                }
                None => tracing::debug!("connection refused: at the connection limit"),
            },
            Event::Publish { manifest, file } => {
                let content_id = manifest.content_id();
                let chunk_size = manifest.chunk_size;
                self.files.insert(
                    content_id,
                    Arc::new(ContentFile {
                        file,
                        chunk_size,
                        uncached: false,
                    }),
                );
                self.peer.publish(now, manifest);
            }
            Event::Download {
                content_id,
                manifest,
                destination,
                force,
                expected_sha256,
            } => {
                self.downloads.insert(
                    content_id,
                    DownloadFiles {
                        destination,
                        force,
                        expected_sha256,
                        paths: None,
                        in_place: false,
                        sha256: String::new(),
                        record: None,
                        record_dirty: false,
                        record_write_in_flight: false,
                        finalize_waiting: false,
                        finalizing: false,
                    },
                );
                self.peer.download(now, content_id, manifest);
            }
            Event::Shutdown => {}
            Event::ReadDone { token, result } => self.peer.handle_read(now, token, result),
            Event::StoreDone {
                token,
                content_id,
                chunk_index,
                outcome,
            } => {
                self.stores_in_flight -= 1;
                if outcome == StoreOutcome::Stored {
                    self.mark_stored(content_id, chunk_index);
                }
                self.peer.handle_stored(now, token, outcome);
            }
            Event::Prepared { content_id, result } => {
                let result = match (result, self.downloads.get_mut(&content_id)) {
                    (Ok(prepared), Some(download)) => {
                        tracing::info!(
                            part = %prepared.paths.part.display(),
                            "download prepared: {} of {} chunks on disk",
                            prepared.have.count(),
                            prepared.have.len()
                        );
                        download.paths = Some(prepared.paths);
                        download.in_place = prepared.in_place;
                        download.sha256 = prepared.sha256;
                        download.record = Some(Record {
                            content_id,
                            chunks: prepared.have.clone(),
                        });
                        self.files.insert(
                            content_id,
                            Arc::new(ContentFile {
                                file: prepared.file,
                                chunk_size: prepared.chunk_size,
                                uncached: true,
                            }),
                        );
                        Ok(prepared.have)
                    }
                    (Ok(_), None) => Err("the download was cancelled".to_string()),
                    (Err(e), _) => Err(e),
                };
                self.peer.download_prepared(now, content_id, result);
            }
            Event::RecordSaved { content_id } => {
                let Some(download) = self.downloads.get_mut(&content_id) else {
                    return;
                };
                download.record_write_in_flight = false;
                if download.finalize_waiting {
                    download.finalize_waiting = false;
                    self.start_finalize(content_id);
                }
            }
            Event::Finalized { content_id, result } => {
                let event = match result {
                    Ok((path, sha256)) => UserEvent::Downloaded {
                        content_id,
                        path,
                        sha256,
                    },
                    Err(reason) => UserEvent::DownloadFailed { content_id, reason },
                };
                let _ = self.user.try_send(event);
            }
            Event::Fetch { spec, file, reply } => {
                let job_id = self.peer.fetch(now, spec);
                self.fetch_files.insert(job_id, file);
                let _ = reply.try_send(job_id);
            }
            Event::CancelFetch { job_id } => self.peer.cancel_fetch(now, job_id),
            Event::SetOrigin { content_id, origin } => {
                self.peer.set_origin(now, content_id, origin)
            }
            Event::RangeFetched { token, result } => {
                self.peer.handle_range_fetched(now, token, result)
            }
            Event::RangeWritten { token, result } => {
                self.peer.handle_range_written(now, token, result)
            }
        }
    }

    /// Carries out every action the machine has queued.
    fn drain(&mut self) {
        while let Some(action) = self.peer.poll_action() {
            self.act(action);
        }
    }

    fn act(&mut self, action: PeerAction) {
        let now = net::now();
        match action {
            PeerAction::Connect { conn, addr } => {
                tracing::debug!(%conn, %addr, "connecting");
                let handle = net::connect(conn, addr, self.events.clone(), self.limiter.clone());
                self.conns.insert(conn, handle);
            }
            PeerAction::Send { conn, message } => {
                let Some(handle) = self.conns.get(&conn) else {
                    return;
                };
                if let Err(why) = handle.send(message) {
                    tracing::warn!(%conn, "closing: {why}");
                    if let Some(handle) = self.conns.remove(&conn) {
                        self.closing.push(handle.close());
                    }
                    self.peer.handle_closed(now, conn);
                }
            }
            PeerAction::Close { conn } => {
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
            } => {
                let Some(content) = self.files.get(&content_id).cloned() else {
                    self.peer
                        .handle_read(now, token, Err("content not on disk".into()));
                    return;
                };
                let events = self.events.clone();
                smol::spawn(async move {
                    let position =
                        u64::from(chunk_index) * u64::from(content.chunk_size) + u64::from(offset);
                    let result = smol::unblock(move || {
                        store::read_at(&content.file, position, length, content.uncached)
                    })
                    .await
                    .map_err(|e| e.to_string());
                    let _ = events.send(Event::ReadDone { token, result }).await;
                })
                .detach();
            }
            PeerAction::StoreChunk {
                token,
                content_id,
                chunk_index,
                check,
                data,
            } => {
                let Some(content) = self.files.get(&content_id).cloned() else {
                    self.peer.handle_stored(
                        now,
                        token,
                        StoreOutcome::Io("no file for this content".into()),
                    );
                    return;
                };
                self.stores_in_flight += 1;
                let events = self.events.clone();
                smol::spawn(async move {
                    let position = u64::from(chunk_index) * u64::from(content.chunk_size);
                    let outcome = smol::unblock(move || {
                        store::store_verified(&content.file, position, &check, &data)
                    })
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
            PeerAction::PrepareDownload {
                content_id,
                manifest,
            } => {
                let Some(download) = self.downloads.get(&content_id) else {
                    self.peer.download_prepared(
                        now,
                        content_id,
                        Err("no destination for this download".into()),
                    );
                    return;
                };
                let sha256 = to_hex(&manifest.file_sha256());
                if let Some(expected) = &download.expected_sha256
                    && *expected != sha256
                {
                    let reason = format!(
                        "its SHA-256 is {sha256}, not the expected {expected}; nothing was downloaded"
                    );
                    self.peer.download_prepared(now, content_id, Err(reason));
                    return;
                }
                let destination = download.destination.clone();
                let force = download.force;
                let events = self.events.clone();
                smol::spawn(async move {
                    let result = smol::unblock(move || {
                        store::prepare_download(&destination, force, content_id, &manifest)
                    })
                    .await;
                    let _ = events.send(Event::Prepared { content_id, result }).await;
                })
                .detach();
            }
            PeerAction::FetchRange {
                token,
                url,
                validator,
                offset,
                length,
            } => {
                tracing::debug!(%url, offset, length, "fetching a range from the origin");
                let events = self.events.clone();
                smol::spawn(async move {
                    let result =
                        smol::unblock(move || http::fetch_range(&url, &validator, offset, length))
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
            PeerAction::WriteRange {
                token,
                job_id,
                offset,
                data,
            } => {
                let Some(file) = self.fetch_files.get(&job_id).cloned() else {
                    self.peer.handle_range_written(
                        now,
                        token,
                        Err("no file for this fetch".into()),
                    );
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
            PeerAction::Notify(notice) => self.notify(notice),
        }
    }

    fn notify(&mut self, notice: PeerNotice) {
        match notice {
            PeerNotice::DownloadComplete { content_id } => self.start_finalize(content_id),
            PeerNotice::DownloadFailed {
                content_id,
                reason,
                missing_chunks,
            } => {
                let reason = if missing_chunks.is_empty() {
                    reason
                } else {
                    format!(
                        "{reason}; missing chunks: {}",
                        describe_chunks(&missing_chunks)
                    )
                };
                let _ = self
                    .user
                    .try_send(UserEvent::DownloadFailed { content_id, reason });
            }
            PeerNotice::FetchComplete { job_id } | PeerNotice::FetchFailed { job_id, .. } => {
                self.fetch_files.remove(&job_id);
                let _ = self.user.try_send(UserEvent::Notice(notice));
            }
            PeerNotice::Progress { .. } | PeerNotice::FetchProgress { .. } => {
                if self.user.len() < PROGRESS_BACKLOG_MAX {
                    let _ = self.user.try_send(UserEvent::Notice(notice));
                }
            }
            other => {
                match &other {
                    PeerNotice::TrackerConnected { addr } => {
                        tracing::info!(%addr, "tracker connected")
                    }
                    PeerNotice::TrackerLost { addr } => tracing::warn!(%addr, "tracker lost"),
                    PeerNotice::PeerBanned {
                        content_id,
                        peer_id,
                        addr,
                    } => {
                        tracing::warn!(%content_id, %peer_id, %addr, "peer banned: it sent a chunk that failed its hash")
                    }
                    _ => {}
                }
                let _ = self.user.try_send(UserEvent::Notice(other));
            }
        }
    }

    fn mark_stored(&mut self, content_id: ContentId, chunk_index: u32) {
        let Some(download) = self.downloads.get_mut(&content_id) else {
            return;
        };
        if let Some(record) = &mut download.record {
            record.chunks.insert(chunk_index);
            download.record_dirty = true;
            self.next_record_flush
                .get_or_insert_with(|| std::time::Instant::now() + RECORD_FLUSH_INTERVAL);
        }
    }

    /// Rewrites the records of downloads that gained chunks, one write per download at a
    /// time. A record may lag what is on disk; it never lists a chunk not yet written.
    fn flush_records(&mut self) {
        self.next_record_flush = None;
        for (&content_id, download) in &mut self.downloads {
            if !download.record_dirty || download.finalizing {
                continue;
            }
            if download.record_write_in_flight {
                self.next_record_flush = Some(std::time::Instant::now() + RECORD_FLUSH_INTERVAL);
                continue;
            }
            let (Some(record), Some(paths)) = (download.record.clone(), download.paths.clone())
            else {
                continue;
            };
            download.record_dirty = false;
            download.record_write_in_flight = true;
            let events = self.events.clone();
            smol::spawn(async move {
                let path = paths.record.clone();
                if let Err(e) = smol::unblock(move || store::write_record(&path, &record)).await {
                    tracing::warn!(record = %paths.record.display(), "cannot save the resume record: {e}");
                }
                let _ = events.send(Event::RecordSaved { content_id }).await;
            })
            .detach();
        }
    }

    /// Every chunk is stored: sync, rename, remove the record, hash the whole file for the
    /// user. Waits for a record write in flight so it cannot recreate the record after.
    fn start_finalize(&mut self, content_id: ContentId) {
        let Some(download) = self.downloads.get_mut(&content_id) else {
            return;
        };
        if download.record_write_in_flight {
            download.finalize_waiting = true;
            return;
        }
        if download.finalizing {
            return;
        }
        download.finalizing = true;
        let (Some(paths), Some(content)) =
            (download.paths.clone(), self.files.get(&content_id).cloned())
        else {
            let reason = "the content was already complete here".to_string();
            let _ = self
                .user
                .try_send(UserEvent::DownloadFailed { content_id, reason });
            return;
        };
        let in_place = download.in_place;
        let force = download.force;
        let sha256 = download.sha256.clone();
        let events = self.events.clone();
        smol::spawn(async move {
            let result = smol::unblock(move || {
                if !in_place {
                    store::finalize(&content.file, &paths, force)?;
                }
                Ok((paths.final_path, sha256))
            })
            .await;
            let _ = events.send(Event::Finalized { content_id, result }).await;
        })
        .detach();
    }

    /// Goodbye to everyone, let chunk writes in flight finish (and record them), save the
    /// records, and give the writers a moment to send the goodbyes.
    async fn shutdown(mut self, events: &Receiver<Event>) -> PeerStats {
        self.peer.shutdown(net::now());
        self.drain();
        let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
        while self.stores_in_flight > 0 {
            let next = future::or(async { events.recv().await.ok() }, async {
                Timer::at(deadline).await;
                None
            })
            .await;
            match next {
                Some(Event::StoreDone {
                    content_id,
                    chunk_index,
                    outcome,
                    ..
                }) => {
                    self.stores_in_flight -= 1;
                    if outcome == StoreOutcome::Stored {
                        self.mark_stored(content_id, chunk_index);
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
        for download in self.downloads.values() {
            if download.finalizing || download.record_write_in_flight {
                continue;
            }
            if let (Some(record), Some(paths)) = (download.record.clone(), download.paths.clone()) {
                let _ = smol::unblock(move || store::write_record(&paths.record, &record)).await;
            }
        }
        for (_, handle) in self.conns.drain() {
            self.closing.push(handle.close());
        }
        let writers = std::mem::take(&mut self.closing);
        future::or(
            async {
                for writer in writers {
                    writer.wait().await;
                }
            },
            async {
                Timer::at(deadline).await;
            },
        )
        .await;
        PeerStats {
            uploaded_bytes: self.peer.uploaded_bytes(),
            downloaded_bytes: self.peer.downloaded_bytes(),
        }
    }
}

/// "3 (0, 5, 9)" or "120 (0, 1, 2, …)": enough to say which, short enough to read.
fn describe_chunks(chunks: &[u32]) -> String {
    const SHOWN: usize = 8;
    let mut shown: Vec<String> = chunks.iter().take(SHOWN).map(u32::to_string).collect();
    if chunks.len() > SHOWN {
        shown.push("…".into());
    }
    format!("{} ({})", chunks.len(), shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_tracker_addresses() {
        for addr in [
            "127.0.0.1:7070",
            "127.0.1.1:7070",
            "[::1]:7070",
            "localhost:7070",
        ] {
            assert!(is_loopback_addr(addr), "{addr}");
        }
        for addr in [
            "10.0.0.5:7070",
            "[fe80::1]:7070",
            "tracker.lan:7070",
            "",
            "localhost",
        ] {
            assert!(!is_loopback_addr(addr), "{addr}");
        }
    }
}
