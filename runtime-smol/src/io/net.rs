//! Sockets for the machines: one reader task and one writer task per TCP connection, and
//! a listener task per listening machine.
//!
//! Every connection runs the secure handshake (`secure`) before its machine hears of it,
//! then carries records: the writer seals, the reader opens. A machine task never touches
//! a socket. Readers decode frames and send them to the
//! machine's event channel (bounded, so a slow machine slows its readers and TCP pushes back
//! on the senders); writers take messages from a bounded queue per connection, which the
//! machine fills with `try_send` so that it never waits on a slow remote.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_net::{TcpListener, TcpStream};
use bytes::{Buf, BytesMut};
use p2p_core::secure::record::sealed_len;
use p2p_core::secure::{Remote, TAG_LEN};
use p2p_core::{ConnId, FrameDecoder, Message};
use smol::channel::{Receiver, Sender};
use smol::io::AsyncWriteExt;
use smol::{Timer, future};

use crate::io::conn_limits::{Closer, ConnLimits, ConnSlot};
use crate::io::rate_limit::RateLimiter;
use crate::io::record_reader::RecordReader;
use crate::io::secure::{self, HandshakeError, Records, Sealing, Security};
use crate::io::send_queue::{SendQueue, SendQueueRx, send_queue};
use crate::io::{bind, buffer_pool};

/// Events queued for a machine task from all its sockets and workers.
pub const EVENT_QUEUE_MAX: usize = 1024;
/// How long an outgoing connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames this long or longer (pieces) are read into a pooled buffer of their own.
const BULK_FRAME_MIN: usize = 64 * 1024;
/// A bulk frame holds one of the process's few receive buffers while it arrives: it must
/// come at this rate at least (after a grace of `BULK_FRAME_GRACE`), or the connection is
/// closed. A 1 MiB block gets 74 s: a trickle cannot hold a buffer for long, and a slow
/// link (128 kbit/s on this one connection) still delivers.
const BULK_FRAME_RATE_MIN: u64 = 16 * 1024;
const BULK_FRAME_GRACE: Duration = Duration::from_secs(10);
/// Small frames are gathered into one write up to this many bytes.
const WRITE_BATCH_MAX: usize = 64 * 1024;
/// A writer's plaintext buffer grown past this (by one large message) is released.
const PLAIN_KEPT_MAX: usize = 4 * WRITE_BATCH_MAX;
/// Most bytes of plaintext sealed before they are written: bounds the writer's buffer.
const SEALED_WRITE_MAX: usize = 256 * 1024;
/// A writer's ciphertext buffer grown past this (by blocks) is released once its queue is
/// empty.
const WIRE_KEPT_MAX: usize = 2 * WRITE_BATCH_MAX;
/// After a machine closes a connection and its queue is written (a goodbye, an error),
/// how long the remote has to close its side before the socket is cut.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// After a machine closes a connection, how long what is queued has to be written: a
/// remote that does not read (the usual reason to close it) must not keep the socket and
/// the blocks queued for it.
const CLOSE_FLUSH_MAX: Duration = Duration::from_secs(5);
/// After a failed accept (out of file descriptors and the like), how long the listener
/// waits before it tries again.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

// ------------------------------------------------------------------ connections

/// What happened on a connection, for the machine that owns it.
#[derive(Debug)]
pub enum ConnEvent {
    /// An outgoing connect and its handshake succeeded: the other end is `Remote`.
    Connected(Remote),
    Message(Message),
    /// A `Piece` was written to the socket (flow control for the serving side).
    Sent,
    /// The connection failed to open, was closed by the remote, or broke.
    Closed,
    /// An outgoing connection was closed by the other side during the handshake or before
    /// it sent a single record: what a responder that does not serve our swarm does (a
    /// wrong secret). For the machine this is `Closed`; the driver may tell the user.
    Refused,
}

/// An event on connection `conn`.
#[derive(Debug)]
pub struct NetEvent {
    pub conn: ConnId,
    pub event: ConnEvent,
}

/// An incoming connection whose handshake is done: the machine may take it.
pub struct Accepted {
    stream: TcpStream,
    records: Records,
    /// Its place among the listener's connections, held until its tasks end.
    slot: ConnSlot,
}

impl Accepted {
    /// Who the handshake proved is at the other end.
    pub fn remote(&self) -> &Remote {
        &self.records.remote
    }

    /// The address the connection came from; `None` if the socket cannot say (it broke).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.stream.peer_addr().ok()
    }

    /// The local IP the connection arrived at, as a tracker takes it (see
    /// `Tracker::accept_at`): an IPv4 one as such, IPv6 in brackets; empty when the socket
    /// cannot say, or for an IPv6 link-local address, which names nothing without the
    /// asker's own scope.
    pub fn reached_ip(&self) -> String {
        match self.stream.local_addr().map(|a| a.ip().to_canonical()) {
            Ok(ip @ IpAddr::V4(_)) => ip.to_string(),
            Ok(IpAddr::V6(v6)) if !v6.is_unicast_link_local() => format!("[{v6}]"),
            _ => String::new(),
        }
    }
}

/// The address a connection came from, as the machines take it: an IPv4 client
/// of a listener on `[::]` (`::ffff:a.b.c.d`) as the IPv4 address it is; IPv6 in brackets,
/// with its scope (a link-local address needs it).
pub fn observed(from: SocketAddr) -> String {
    match from.ip().to_canonical() {
        ip @ IpAddr::V4(_) => SocketAddr::new(ip, from.port()).to_string(),
        IpAddr::V6(_) => from.to_string(),
    }
}

/// The machine's end of a connection: a queue to its writer.
pub struct ConnHandle {
    queue: SendQueue,
    /// Closed when the writer task ends, so a shutdown can wait for goodbyes to go out.
    writer_done: Receiver<()>,
}

impl ConnHandle {
    /// Queues a message. `Err` when the queue is full (the remote is not reading) or the
    /// writer is gone: the caller closes the connection.
    pub fn send(&self, message: Message) -> Result<(), &'static str> {
        self.queue.try_send(message)
    }

    /// Closes the connection once what is queued is written. The returned handle tells
    /// when the writer is done (a shutdown waits on it so goodbyes go out); dropping it is
    /// fine.
    pub fn close(self) -> WriterDone {
        self.queue.close();
        WriterDone(self.writer_done)
    }
}

/// Resolves when a closed connection's writer has finished.
pub struct WriterDone(Receiver<()>);

impl WriterDone {
    pub async fn wait(self) {
        // The writer never sends: `recv` returns once its sender is dropped.
        let _ = self.0.recv().await;
    }
}

/// Opens an outgoing connection in the background and runs the initiator's handshake in
/// the swarm of `security`. Reports `Connected` (or `Closed`, or `Refused`), then its
/// messages. Messages queued before the connect finishes are sent after it.
pub fn connect<E>(
    conn: ConnId,
    addr: String,
    events: Sender<E>,
    limiter: Option<Arc<RateLimiter>>,
    security: Arc<Security>,
) -> ConnHandle
where
    E: From<NetEvent> + Send + 'static,
{
    let (queue, queue_rx) = send_queue();
    let (done_tx, writer_done) = smol::channel::bounded(1);
    smol::spawn(async move {
        let failed = |event| {
            let events = events.clone();
            async move {
                let _ = events.send(NetEvent::new(conn, event).into()).await;
            }
        };
        let connecting = async { Some(TcpStream::connect(addr.as_str()).await) };
        let timeout = async {
            Timer::after(CONNECT_TIMEOUT).await;
            None
        };
        let mut stream = match future::or(connecting, timeout).await {
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                tracing::debug!(%conn, %addr, "connect failed: {e}");
                return failed(ConnEvent::Closed).await;
            }
            None => {
                tracing::debug!(%conn, %addr, "connect timed out");
                return failed(ConnEvent::Closed).await;
            }
        };
        let _ = stream.set_nodelay(true);
        let Some(secret) = &security.secret else {
            tracing::debug!(%conn, %addr, "no swarm secret to dial with");
            return failed(ConnEvent::Closed).await;
        };
        let records = secure::initiate(
            &mut stream,
            &security.key,
            secret,
            security.plaintext_records,
        )
        .await;
        let records = match records {
            Ok(records) => records,
            Err(e) => {
                tracing::debug!(%conn, %addr, "{e}");
                let _ = stream.shutdown(std::net::Shutdown::Both);
                let event = match e {
                    HandshakeError::TimedOut => ConnEvent::Closed,
                    HandshakeError::Closed(_) | HandshakeError::Refused(_) => ConnEvent::Refused,
                };
                return failed(event).await;
            }
        };
        let remote = records.remote.clone();
        if events
            .send(NetEvent::new(conn, ConnEvent::Connected(remote)).into())
            .await
            .is_err()
        {
            return;
        }
        let streams = Streams {
            conn,
            stream,
            records,
            outgoing: true,
            slot: None,
        };
        streams.run(events, queue_rx, done_tx, limiter);
    })
    .detach();
    ConnHandle { queue, writer_done }
}

/// Takes over an accepted connection whose handshake is done.
pub fn attach<E>(
    conn: ConnId,
    accepted: Accepted,
    events: Sender<E>,
    limiter: Option<Arc<RateLimiter>>,
) -> ConnHandle
where
    E: From<NetEvent> + Send + 'static,
{
    let (queue, queue_rx) = send_queue();
    let (done_tx, writer_done) = smol::channel::bounded(1);
    let streams = Streams {
        conn,
        stream: accepted.stream,
        records: accepted.records,
        outgoing: false,
        slot: Some(Arc::new(accepted.slot)),
    };
    streams.run(events, queue_rx, done_tx, limiter);
    ConnHandle { queue, writer_done }
}

impl NetEvent {
    fn new(conn: ConnId, event: ConnEvent) -> NetEvent {
        NetEvent { conn, event }
    }
}

/// A connection after its handshake, before its reader and writer tasks start.
struct Streams {
    conn: ConnId,
    stream: TcpStream,
    records: Records,
    /// Whether we dialed it: only then can a close before any record mean a refusal.
    outgoing: bool,
    /// An incoming connection's place among its listener's, for as long as a task runs.
    slot: Option<Arc<ConnSlot>>,
}

impl Streams {
    fn run<E>(
        self,
        events: Sender<E>,
        queue: SendQueueRx,
        done_tx: Sender<()>,
        limiter: Option<Arc<RateLimiter>>,
    ) where
        E: From<NetEvent> + Send + 'static,
    {
        let Streams {
            conn,
            stream,
            records,
            outgoing,
            slot,
        } = self;
        let reader_slot = slot.clone();
        let Records {
            sealing, opening, ..
        } = records;
        let reader = RecordReader::new(stream.clone(), opening);
        let reader_events = events.clone();
        smol::spawn(async move {
            let _slot = reader_slot;
            let mut reader = reader;
            let why = read_loop(conn, &mut reader, &reader_events, _slot.as_deref()).await;
            tracing::debug!(%conn, "reader ended: {why}");
            let _ = reader.stream().shutdown(std::net::Shutdown::Both);
            let event = if outgoing && !reader.got_plaintext() {
                ConnEvent::Refused
            } else {
                ConnEvent::Closed
            };
            let _ = reader_events.send(NetEvent::new(conn, event).into()).await;
        })
        .detach();
        smol::spawn(async move {
            let _slot = slot;
            let writing = write_loop(conn, stream.clone(), sealing, &events, &queue, limiter);
            let flush_deadline = async {
                queue.closed().await;
                Timer::after(CLOSE_FLUSH_MAX).await;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "closed, and what was queued was not read in time",
                ))
            };
            let result = future::or(writing, flush_deadline).await;
            match result {
                Ok(()) => {
                    // The machine closed the connection and what was queued is written: end
                    // our side, and give the remote a moment to end its own before cutting.
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                    drop(done_tx);
                    Timer::after(CLOSE_LINGER).await;
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    return;
                }
                Err(e) => {
                    tracing::debug!(%conn, "writer failed: {e}");
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    let _ = events
                        .send(NetEvent::new(conn, ConnEvent::Closed).into())
                        .await;
                }
            }
            drop(done_tx);
        })
        .detach();
    }
}

/// Decodes frames until the stream ends or breaks the protocol; says why it stopped.
/// Every frame is news that the connection is alive, for its listener's `slot` (an
/// incoming connection's).
async fn read_loop<E>(
    conn: ConnId,
    reader: &mut RecordReader,
    events: &Sender<E>,
    slot: Option<&ConnSlot>,
) -> String
where
    E: From<NetEvent>,
{
    let mut decoder = FrameDecoder::new();
    loop {
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => {
                    if let Some(slot) = slot {
                        slot.heard();
                    }
                    let event = NetEvent::new(conn, ConnEvent::Message(message));
                    if events.send(event.into()).await.is_err() {
                        return "machine gone".into();
                    }
                }
                Ok(None) => break,
                Err(e) => return format!("protocol error: {e}"),
            }
        }
        if let Some(len) = bulk_frame_len(&mut decoder) {
            let message = match read_bulk_frame(reader, decoder.buffer_mut(), len).await {
                Ok(message) => message,
                Err(why) => return why,
            };
            if let Some(slot) = slot {
                slot.heard();
            }
            let event = NetEvent::new(conn, ConnEvent::Message(message));
            if events.send(event.into()).await.is_err() {
                return "machine gone".into();
            }
            continue;
        }
        match reader.fill(decoder.buffer_mut()).await {
            Ok(true) => {}
            Ok(false) => return "end of stream".into(),
            Err(why) => return why,
        }
    }
}

/// The length of the frame under way when it is a bulk one (a block of data) that a
/// pooled buffer takes, its prefix received and its body not yet whole.
fn bulk_frame_len(decoder: &mut FrameDecoder) -> Option<usize> {
    let buf = decoder.buffer_mut();
    let prefix: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let len = u32::from_be_bytes(prefix) as usize;
    (BULK_FRAME_MIN..=buffer_pool::POOL_BUF_LEN)
        .contains(&len)
        .then_some(len)
}

/// Where a `Piece`'s data starts in its frame (after the length prefix): a received frame
/// is placed so that its data is aligned for direct I/O.
fn piece_data_offset() -> usize {
    static OFFSET: OnceLock<usize> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        let piece = Message::Piece {
            content_id: p2p_core::ContentId([0; 32]),
            chunk_index: 0,
            offset: 0,
            data: bytes::Bytes::from_static(&[0; 16]),
        };
        piece
            .split_bulk()
            .map_or(0, |(header, _)| header.len().saturating_sub(4))
    })
}

/// Reads the rest of a bulk frame of `len` bytes into a pooled buffer (no reallocation of
/// the decoder's buffer) and decodes it. `buf` is the decoder's buffer, holding the frame's
/// prefix and first bytes: they are taken out of it; the rest of the frame is opened
/// straight into the pooled buffer (anything past the frame goes back to `buf`).
async fn read_bulk_frame(
    reader: &mut RecordReader,
    buf: &mut BytesMut,
    len: usize,
) -> Result<Message, String> {
    // Room for a record's tag past the frame: the last record opens in place too.
    let mut frame = buffer_pool::recv_pool()
        .take_aligned(len + TAG_LEN, piece_data_offset())
        .await;
    buf.advance(4);
    let have = buf.len().min(len);
    frame.as_mut()[..have].copy_from_slice(&buf[..have]);
    buf.advance(have);
    if have < len {
        let filling = reader.fill_exact(&mut frame.as_mut()[have..], len - have, buf);
        let allowed = BULK_FRAME_GRACE + Duration::from_secs(len as u64 / BULK_FRAME_RATE_MIN);
        let late = async {
            Timer::after(allowed).await;
            Err(format!(
                "a {len}-byte frame took over {} s to arrive",
                allowed.as_secs()
            ))
        };
        future::or(filling, late).await?;
    }
    frame.truncate(len);
    Message::decode(frame.into_bytes()).map_err(|e| format!("protocol error: {e}"))
}

/// Writes queued messages until the queue is closed (`Ok`) or the socket fails. Small
/// messages are encoded into one plaintext batch, sealed once per write; a `Piece`'s data
/// is sealed straight from its buffer, a few records per write.
async fn write_loop<E>(
    conn: ConnId,
    mut stream: TcpStream,
    mut sealing: Sealing,
    events: &Sender<E>,
    queue: &SendQueueRx,
    limiter: Option<Arc<RateLimiter>>,
) -> io::Result<()>
where
    E: From<NetEvent>,
{
    let mut plain = BytesMut::with_capacity(WRITE_BATCH_MAX);
    // Grows to what is sealed at once (at most a batch, or SEALED_WRITE_MAX of a block),
    // so connections that carry small messages keep small buffers; released when a burst
    // of blocks has been written.
    let mut wire = Vec::new();
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            if let Some((header, data)) = message.split_bulk() {
                if let Some(limiter) = &limiter {
                    limiter.acquire(data.len()).await;
                }
                plain.extend_from_slice(&header);
                write_sealed(&mut stream, &mut sealing, &plain, &mut wire).await?;
                plain.clear();
                write_sealed(&mut stream, &mut sealing, data, &mut wire).await?;
                if matches!(message, Message::Piece { .. }) {
                    let _ = events
                        .send(NetEvent::new(conn, ConnEvent::Sent).into())
                        .await;
                }
            } else {
                message.encode(&mut plain);
                if plain.len() >= WRITE_BATCH_MAX {
                    write_sealed(&mut stream, &mut sealing, &plain, &mut wire).await?;
                    plain.clear();
                }
            }
            next = queue.try_recv();
        }
        if !plain.is_empty() {
            write_sealed(&mut stream, &mut sealing, &plain, &mut wire).await?;
            plain.clear();
        }
        stream.flush().await?;
        if plain.capacity() > PLAIN_KEPT_MAX {
            // A large reply (a manifest) grew it: give the memory back.
            plain = BytesMut::with_capacity(WRITE_BATCH_MAX);
        }
        if wire.capacity() > WIRE_KEPT_MAX {
            // Blocks grew it and the queue is empty: an idle connection keeps no block's
            // worth of ciphertext (128 of them would hold 32 MiB).
            wire = Vec::new();
        }
    }
    Ok(())
}

/// Seals `plaintext` and writes it, at most [`SEALED_WRITE_MAX`] bytes of it at a time, so
/// `wire` (reused) stays small whatever the size of a block. Unsealed (benchmarks) it is
/// written as it is.
async fn write_sealed(
    stream: &mut TcpStream,
    sealing: &mut Sealing,
    plaintext: &[u8],
    wire: &mut Vec<u8>,
) -> io::Result<()> {
    let Sealing::Sealed(sealer) = sealing else {
        return stream.write_all(plaintext).await;
    };
    for piece in plaintext.chunks(SEALED_WRITE_MAX) {
        let need = sealed_len(piece.len());
        if wire.len() < need {
            wire.resize(need, 0);
        }
        let n = sealer.seal_into(piece, wire).map_err(io::Error::other)?;
        stream.write_all(&wire[..n]).await?;
    }
    Ok(())
}

/// Binds a listener (`[::]:PORT`: every interface, see `bind`); each accepted connection
/// (within `limits`, in total and per address, shared by the sockets of every interface)
/// runs the responder's handshake in a task of its own (at most
/// `HANDSHAKES_IN_PROGRESS_MAX` at once, within the handshake timeout; see `conn_limits`
/// for who makes room when the listener is full), and only then is
/// forwarded to the machine as `wrap(accepted)`. A connection whose
/// handshake fails is closed; the machine never hears of it. Returns the bound address
/// (the actual port when 0 was asked for; `[::]:PORT` for every interface, `0.0.0.0:PORT`
/// when that came down to IPv4 alone).
pub async fn listen<E>(
    addr: SocketAddr,
    events: Sender<E>,
    wrap: fn(Accepted) -> E,
    security: Arc<Security>,
    limits: Arc<ConnLimits>,
) -> anyhow::Result<SocketAddr>
where
    E: Send + 'static,
{
    let sockets = bind::bind(addr)?;
    let mut bound = sockets[0].local_addr()?;
    if sockets.len() > 1 {
        bound = SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), bound.port());
    }
    for socket in sockets {
        let listener = TcpListener::try_from(socket)?;
        smol::spawn(accept_loop(
            listener,
            events.clone(),
            wrap,
            security.clone(),
            limits.clone(),
        ))
        .detach();
    }
    Ok(bound)
}

/// Accepts connections on one socket until the machine's event channel closes.
async fn accept_loop<E>(
    listener: TcpListener,
    events: Sender<E>,
    wrap: fn(Accepted) -> E,
    security: Arc<Security>,
    limits: Arc<ConnLimits>,
) where
    E: Send + 'static,
{
    loop {
        if events.is_closed() {
            return;
        }
        match listener.accept().await {
            Ok((stream, from)) => {
                let socket = stream.clone();
                let close: Closer = Box::new(move || {
                    let _ = socket.shutdown(std::net::Shutdown::Both);
                });
                let slot = match limits.try_take(from.ip(), close) {
                    Ok(slot) => slot,
                    Err(why) => {
                        tracing::debug!(%from, "closed: {why}");
                        continue;
                    }
                };
                let events = events.clone();
                let security = security.clone();
                smol::spawn(async move {
                    let mut stream = stream;
                    let _ = stream.set_nodelay(true);
                    let records = secure::respond(
                        &mut stream,
                        &security.key,
                        &security.keyring,
                        security.plaintext_records,
                    )
                    .await;
                    slot.handshake_done();
                    match records {
                        Ok(records) => {
                            tracing::trace!(%from, remote = ?records.remote, "accepted");
                            let accepted = Accepted {
                                stream,
                                records,
                                slot,
                            };
                            let _ = events.send(wrap(accepted)).await;
                        }
                        Err(e) => {
                            tracing::debug!(%from, "incoming connection closed: {e}");
                            let _ = stream.shutdown(std::net::Shutdown::Both);
                        }
                    }
                })
                .detach();
            }
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!("accept failed: {e}");
                Timer::after(ACCEPT_RETRY_DELAY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_addresses_are_canonical_and_keep_their_scope() {
        let seen = |addr: &str| observed(addr.parse().unwrap());
        assert_eq!(seen("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(seen("[::ffff:10.1.2.3]:5000"), "10.1.2.3:5000");
        assert_eq!(seen("[fe80::1%2]:5000"), "[fe80::1%2]:5000");
    }
}
