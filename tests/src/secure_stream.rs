//! A blocking secure session over std TCP, for the test's own harness peer: the same
//! handshake and records as `p2p` (from `p2p_core::secure`), so the harness is a member of
//! the swarm like any other.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use p2p_core::secure::{
    HANDSHAKE_TIMEOUT, Handshake, Keyring, Opener, Remote, Sealer, StaticKey, SwarmSecret,
};
use p2p_core::{FrameDecoder, Message};

use crate::pseudo_random;

/// A seed for a key or a handshake: tests need distinct values, not secret ones.
pub fn test_seed() -> [u8; 32] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = nanos ^ (u64::from(std::process::id()) << 32) ^ n.wrapping_mul(0x9E37_79B9);
    pseudo_random(32, seed).try_into().unwrap()
}

/// A connection after its handshake.
pub struct SecureStream {
    pub stream: TcpStream,
    pub remote: Remote,
    sealer: Sealer,
    opener: Opener,
    decoder: FrameDecoder,
}

impl SecureStream {
    /// Dials `addr` and runs the initiator's handshake in `secret`'s swarm.
    pub fn connect(addr: SocketAddr, key: &StaticKey, secret: &SwarmSecret) -> io::Result<Self> {
        Self::initiate(TcpStream::connect(addr)?, key, secret)
    }

    /// Runs the initiator's handshake in `secret`'s swarm on a connection already open.
    pub fn initiate(stream: TcpStream, key: &StaticKey, secret: &SwarmSecret) -> io::Result<Self> {
        Self::handshake(
            stream,
            Handshake::initiate(key, secret, test_seed()),
            &Keyring::new(),
        )
    }

    /// Runs the responder's handshake on an accepted connection.
    pub fn accept(stream: TcpStream, key: &StaticKey, keyring: &Keyring) -> io::Result<Self> {
        Self::handshake(stream, Handshake::respond(key, test_seed()), keyring)
    }

    fn handshake(
        mut stream: TcpStream,
        mut handshake: Handshake,
        keyring: &Keyring,
    ) -> io::Result<Self> {
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let refused = |e| io::Error::new(io::ErrorKind::InvalidData, format!("{e}"));
        loop {
            if let Some(out) = handshake.take_transmit() {
                stream.write_all(&out)?;
            }
            if handshake.is_finished() {
                break;
            }
            let mut prefix = [0u8; 2];
            stream.read_exact(&mut prefix)?;
            handshake.handle_input(&prefix, keyring).map_err(refused)?;
            let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
            stream.read_exact(&mut body)?;
            handshake.handle_input(&body, keyring).map_err(refused)?;
        }
        let session = handshake.into_session().map_err(refused)?;
        Ok(SecureStream {
            stream,
            remote: session.remote,
            sealer: session.sealer,
            opener: session.opener,
            decoder: FrameDecoder::new(),
        })
    }

    /// Seals and sends one message.
    pub fn send(&mut self, message: &Message) -> io::Result<()> {
        let mut wire = BytesMut::new();
        self.sealer
            .seal(&message.to_frame(), &mut wire)
            .map_err(io::Error::other)?;
        self.stream.write_all(&wire)
    }

    /// The next message within `within`: `Ok(None)` when none came in time, `Err` when the
    /// connection ended or broke. Sets a short read timeout on the stream.
    pub fn read_message(&mut self, within: Duration) -> io::Result<Option<Message>> {
        let deadline = Instant::now() + within;
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(100)));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(message) = self.decoder.next_message().map_err(io::Error::other)? {
                return Ok(Some(message));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self
                    .opener
                    .open(&buf[..n], self.decoder.buffer_mut())
                    .map_err(io::Error::other)?,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}
