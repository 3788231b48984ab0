//! The secure session of a connection, over a socket: the Noise handshake of
//! `p2p_core::secure` run on a `TcpStream` (bounded in time and bytes), and the two halves
//! of its record layer for the reader and writer tasks.
//!
//! Every connection runs the handshake before any machine hears of it; a failure closes
//! the socket and is logged at debug level only (it is what outsiders and broken links
//! produce, not our failure).

use async_net::TcpStream;
use bytes::BytesMut;
use p2p_core::secure::{
    HANDSHAKE_TIMEOUT, Handshake, Keyring, Opener, Remote, Sealer, SecureError, Session, StaticKey,
    SwarmSecret,
};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Timer, future};

use crate::io::keys;

/// Benchmark-only: `P2P_BENCH_PLAINTEXT_RECORDS=1` keeps the handshake but sends frames
/// unsealed after it, to measure what the record layer costs with the same build. Both ends
/// must set it. Never a user option: it gives up confidentiality and integrity.
pub const PLAINTEXT_RECORDS_VAR: &str = "P2P_BENCH_PLAINTEXT_RECORDS";
/// Largest handshake message we accept (ours are under 100 bytes): bounds what an outsider
/// makes us read before the handshake fails.
const HANDSHAKE_MESSAGE_LEN_MAX: usize = 256;
/// Bytes of a handshake message's length prefix.
const LEN_PREFIX: usize = 2;

/// What a process proves and accepts in handshakes.
pub struct Security {
    /// This process's static key: its peer id is derived from it.
    pub key: StaticKey,
    /// The swarm this side dials into (a peer's one swarm); `None` for a tracker, which
    /// never dials.
    pub secret: Option<SwarmSecret>,
    /// The swarms whose handshakes this side answers.
    pub keyring: Keyring,
    /// Frames go unsealed after the handshake (see [`PLAINTEXT_RECORDS_VAR`]).
    pub plaintext_records: bool,
}

impl Security {
    /// A peer's: dials and answers in the one swarm of `secret`.
    pub fn peer(key: StaticKey, secret: SwarmSecret) -> Security {
        Security {
            key,
            keyring: Keyring::of(secret.clone()),
            secret: Some(secret),
            plaintext_records: plaintext_records_from_env(),
        }
    }

    /// A tracker's: answers in every swarm of `keyring`.
    pub fn tracker(key: StaticKey, keyring: Keyring) -> Security {
        Security {
            key,
            secret: None,
            keyring,
            plaintext_records: plaintext_records_from_env(),
        }
    }
}

/// Whether this process runs with the record layer off ([`PLAINTEXT_RECORDS_VAR`]).
pub fn plaintext_records() -> bool {
    std::env::var_os(PLAINTEXT_RECORDS_VAR).is_some_and(|v| v == "1")
}

/// The same, said once per machine so that a benchmark run is never mistaken for a real one.
fn plaintext_records_from_env() -> bool {
    let on = plaintext_records();
    if on {
        tracing::warn!(
            "{PLAINTEXT_RECORDS_VAR}=1: frames are sent unsealed after the handshake (benchmarks only)"
        );
    }
    on
}

/// Why a handshake on a socket failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// The other side closed the connection (or it broke) before the handshake was done:
    /// for a responder that does not serve our swarm, this is how it refuses.
    Closed(String),
    /// The other side sent what the protocol refuses.
    Refused(SecureError),
    TimedOut,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Closed(why) => write!(f, "closed during the handshake ({why})"),
            HandshakeError::Refused(e) => write!(f, "handshake refused: {e}"),
            HandshakeError::TimedOut => write!(
                f,
                "handshake took longer than {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ),
        }
    }
}

/// The record layer of a finished handshake, split for the writer and the reader.
pub struct Records {
    pub remote: Remote,
    pub sealing: Sealing,
    pub opening: Opening,
}

/// Runs the initiator's handshake in `secret`'s swarm on a fresh outgoing connection.
pub async fn initiate(
    stream: &mut TcpStream,
    key: &StaticKey,
    secret: &SwarmSecret,
    plaintext_records: bool,
) -> Result<Records, HandshakeError> {
    let handshake = Handshake::initiate(key, secret, keys::os_random());
    run(stream, handshake, &Keyring::new(), plaintext_records).await
}

/// Runs the responder's handshake on an accepted connection, for any swarm of `keyring`.
pub async fn respond(
    stream: &mut TcpStream,
    key: &StaticKey,
    keyring: &Keyring,
    plaintext_records: bool,
) -> Result<Records, HandshakeError> {
    let handshake = Handshake::respond(key, keys::os_random());
    run(stream, handshake, keyring, plaintext_records).await
}

/// Drives `handshake` on `stream` within the handshake timeout. Reads exactly one
/// message at a time, so nothing after the last one is taken from the socket: the reader
/// task gets every record (and the opener holds no leftover bytes).
async fn run(
    stream: &mut TcpStream,
    mut handshake: Handshake,
    keyring: &Keyring,
    plaintext_records: bool,
) -> Result<Records, HandshakeError> {
    let work = async {
        loop {
            if let Some(out) = handshake.take_transmit() {
                stream
                    .write_all(&out)
                    .await
                    .map_err(|e| HandshakeError::Closed(e.to_string()))?;
            }
            if handshake.is_finished() {
                break;
            }
            // The prefix first: the handshake refuses a length it never sends before we
            // wait for a single byte of the body.
            let closed = |e: std::io::Error| HandshakeError::Closed(e.to_string());
            let mut prefix = [0u8; LEN_PREFIX];
            stream.read_exact(&mut prefix).await.map_err(closed)?;
            handshake
                .handle_input(&prefix, keyring)
                .map_err(HandshakeError::Refused)?;
            let len = usize::from(u16::from_be_bytes(prefix));
            if len > HANDSHAKE_MESSAGE_LEN_MAX {
                return Err(HandshakeError::Refused(SecureError::BadLength(len)));
            }
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).await.map_err(closed)?;
            handshake
                .handle_input(&body, keyring)
                .map_err(HandshakeError::Refused)?;
        }
        let Session {
            sealer,
            opener,
            remote,
            ..
        } = handshake.into_session().map_err(HandshakeError::Refused)?;
        Ok(if plaintext_records {
            Records {
                remote,
                sealing: Sealing::Plain,
                opening: Opening::Plain,
            }
        } else {
            Records {
                remote,
                sealing: Sealing::Sealed(sealer),
                opening: Opening::Sealed(opener),
            }
        })
    };
    let timeout = async {
        Timer::after(HANDSHAKE_TIMEOUT).await;
        Err(HandshakeError::TimedOut)
    };
    future::or(work, timeout).await
}

/// The writer's half: plaintext in, records out.
pub enum Sealing {
    Sealed(Sealer),
    /// Benchmarks only ([`PLAINTEXT_RECORDS_VAR`]).
    Plain,
}

impl Sealing {
    /// Appends `plaintext` to `out` as it goes on the wire.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), SecureError> {
        match self {
            Sealing::Sealed(sealer) => sealer.seal(plaintext, out),
            Sealing::Plain => {
                out.extend_from_slice(plaintext);
                Ok(())
            }
        }
    }
}

/// The reader's half: bytes from the wire in, plaintext out.
pub enum Opening {
    Sealed(Opener),
    /// Benchmarks only ([`PLAINTEXT_RECORDS_VAR`]).
    Plain,
}

impl Opening {
    /// Appends the plaintext of the complete records of `input` (after what came before)
    /// to `out`. An error means the connection must be closed.
    pub fn open(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), SecureError> {
        match self {
            Opening::Sealed(opener) => opener.open(input, out),
            Opening::Plain => {
                out.extend_from_slice(input);
                Ok(())
            }
        }
    }
}
