//! Private swarms: who may talk to whom, and records nobody else can read or forge.
//!
//! Every connection, peer↔peer and peer↔tracker, starts with a Noise handshake
//! ([`NOISE_PARAMS`], the `snow` crate) keyed by the swarm's secret, then carries AEAD
//! records. Whoever lacks the secret cannot finish a handshake, so nothing they send ever
//! reaches a machine above this layer; and since a peer's id is derived from its static
//! key ([`StaticKey::peer_id`]), no one can speak under another peer's id.
//!
//! On the wire, each side sends length-prefixed messages, `u16 length | bytes`:
//!
//! ```text
//! initiator → responder   Noise message 1 (e; payload: "p2p2" and the swarm tag, readable
//!                         by anyone: its key comes from e alone)
//! responder → initiator   Noise message 2 (e, ee, s, es)
//! initiator → responder   Noise message 3 (s, se, psk), then records
//! responder → initiator   records
//! ```
//!
//! The swarm tag in message 1 is a hash of the secret: it lets a responder that serves
//! several swarms (a tracker) pick the pre-shared key, and it tells an onlooker only that
//! two connections belong to the same swarm. The initiator counts as connected once it
//! has sent message 3; only a responder that knows the secret can read what follows, and
//! everything the initiator reads after that proves the responder knew it too.
//!
//! Like the machines, this layer is sans-IO: the driver feeds received bytes in and sends
//! what comes out. Its randomness (the ephemeral keys) comes from a seed the driver draws
//! from its own seeded RNG, so a simulated handshake is as deterministic as the rest.

mod handshake;
pub mod keys;
pub mod record;
#[cfg(test)]
mod tests;

/// Two ends of a session made in memory with another Noise cipher than ours, for
/// `examples/cipher_speed.rs` to measure the record layer with each (`ChaChaPoly`,
/// `AESGCM`).
#[cfg(feature = "testkit")]
pub fn session_pair_with_cipher(cipher: &str) -> Result<(Session, Session), SecureError> {
    let params = format!("Noise_XXpsk3_25519_{cipher}_SHA256");
    let secret = SwarmSecret::from_bytes([1; 32]);
    let ring = Keyring::of(secret.clone());
    let mut i =
        Handshake::initiate_with(&params, &StaticKey::from_private([2; 32]), &secret, [3; 32]);
    let mut r = Handshake::respond_with(&params, &StaticKey::from_private([4; 32]), [5; 32]);
    while !(i.is_finished() && r.is_finished()) {
        let sent = i.take_transmit();
        r.handle_input(sent.as_deref().unwrap_or_default(), &ring)?;
        let sent = r.take_transmit();
        i.handle_input(sent.as_deref().unwrap_or_default(), &Keyring::new())?;
    }
    Ok((i.into_session()?, r.into_session()?))
}

use std::fmt;

pub use handshake::{Handshake, Session};
pub use keys::{Keyring, Remote, SecretError, StaticKey, SwarmSecret, SwarmTag};
pub use record::{Opener, Sealer};

/// The Noise protocol: `XX` (both sides send their static keys, encrypted), a pre-shared
/// key from the swarm secret mixed in at the third message, X25519, SHA-256. The cipher
/// was chosen by measurement on our machines (see the README's Performance section).
pub const NOISE_PARAMS: &str = "Noise_XXpsk3_25519_AESGCM_SHA256";
/// The first bytes of message 1's payload: the protocol and its version.
pub(crate) const PROTOCOL_MAGIC: &[u8; 4] = b"p2p2";
/// Largest Noise message (and so record) on the wire, tag included: Noise's own limit.
pub const RECORD_LEN_MAX: usize = 65535;
/// AEAD tag appended to every record.
pub const TAG_LEN: usize = 16;
/// Most plaintext bytes one record carries.
pub const RECORD_PLAINTEXT_MAX: usize = RECORD_LEN_MAX - TAG_LEN;
/// Length prefix of every handshake message and record.
pub(crate) const LEN_PREFIX: usize = 2;
/// How long a driver lets a handshake take before it closes the connection.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a handshake or a record was refused. The connection is closed; nothing of it
/// reaches the machines. Drivers log these at debug level: they are what an outsider or
/// a broken link produces, not our failures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecureError {
    /// A handshake message of a length this protocol never sends.
    BadLength(usize),
    /// Message 1 did not start with our protocol's magic (an old client, random bytes).
    NotOurProtocol,
    /// Message 1 named a swarm this side does not hold the secret of.
    UnknownSwarm(SwarmTag),
    /// A handshake message or record failed to decrypt or authenticate: a wrong secret, a
    /// garbled, replayed or reordered record.
    Decrypt,
    /// Bytes arrived where none are expected (after the handshake's last message but before
    /// the session was taken, or more than one message's worth during it).
    Unexpected,
    /// The other side's static key is not a valid X25519 public key.
    BadRemoteKey,
    /// The record counter ran out (after 2^64 records): never in practice.
    Exhausted,
    /// The caller's buffer has no room for what a record layer call writes: a driver's
    /// bug, never the remote's doing.
    BufferTooSmall,
}

impl fmt::Display for SecureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecureError::BadLength(len) => write!(f, "handshake message of {len} bytes"),
            SecureError::NotOurProtocol => f.write_str("not a p2p2 handshake"),
            SecureError::UnknownSwarm(tag) => write!(f, "swarm {tag} is not served here"),
            SecureError::Decrypt => {
                f.write_str("could not authenticate (wrong swarm secret or garbled data)")
            }
            SecureError::Unexpected => f.write_str("bytes out of turn in the handshake"),
            SecureError::BadRemoteKey => f.write_str("the remote's static key is malformed"),
            SecureError::Exhausted => f.write_str("record counter exhausted"),
            SecureError::BufferTooSmall => f.write_str("buffer too small for the record"),
        }
    }
}

impl std::error::Error for SecureError {}

impl From<snow::Error> for SecureError {
    fn from(e: snow::Error) -> Self {
        match e {
            snow::Error::Decrypt => SecureError::Decrypt,
            snow::Error::State(snow::error::StateProblem::Exhausted) => SecureError::Exhausted,
            // Anything else snow reports on remote input is still a message it refused.
            _ => SecureError::Decrypt,
        }
    }
}
