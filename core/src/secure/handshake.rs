//! The Noise handshake as a sans-IO machine: bytes in, bytes out, a [`Session`] at the end.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use super::keys::{Keyring, Remote, StaticKey, SwarmSecret, SwarmTag, TAG_BYTES, peer_id_of};
use super::record::{Opener, Sealer};
use super::{LEN_PREFIX, NOISE_PARAMS, PROTOCOL_MAGIC, SecureError};

/// Message 1: the ephemeral key, then the magic and the swarm tag. In a psk pattern the
/// ephemeral key is mixed into the cipher at once, so this payload carries a tag too; but
/// its key comes from the ephemeral key alone, so the payload is readable by anyone.
const MSG1_PAYLOAD_LEN: usize = PROTOCOL_MAGIC.len() + TAG_BYTES;
pub(crate) const MSG1_LEN: usize = 32 + MSG1_PAYLOAD_LEN + 16;
/// Message 2: the ephemeral key, the encrypted static key (with tag), an empty payload's tag.
pub(crate) const MSG2_LEN: usize = 32 + 48 + 16;
/// Message 3: the encrypted static key (with tag), an empty payload's tag.
pub(crate) const MSG3_LEN: usize = 48 + 16;

/// A handshake in progress on one connection.
pub struct Handshake {
    noise: snow::HandshakeState,
    /// The message this side waits for next; `None` once finished.
    awaiting: Option<Awaiting>,
    /// Received bytes not yet taken: at most one message's worth during the handshake,
    /// and the first records once it is finished (they go to the session's opener).
    inbound: BytesMut,
    /// Bytes for the driver to send.
    outbound: Vec<u8>,
    /// The swarm, known to the initiator from the start, to the responder from message 1.
    swarm: Option<SwarmTag>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    Message1,
    Message2,
    Message3,
}

impl Awaiting {
    fn len(self) -> usize {
        match self {
            Awaiting::Message1 => MSG1_LEN,
            Awaiting::Message2 => MSG2_LEN,
            Awaiting::Message3 => MSG3_LEN,
        }
    }
}

/// A finished handshake: the record layer's two halves and who is at the other end.
pub struct Session {
    pub sealer: Sealer,
    pub opener: Opener,
    /// The id of the remote's key and the swarm it proved it belongs to.
    pub remote: Remote,
    pub swarm: SwarmTag,
    /// The remote's static public key (its id is derived from it).
    pub remote_key: [u8; 32],
}

impl Handshake {
    /// Starts a handshake into the swarm of `secret`; message 1 is ready to send at once.
    /// `seed` (from the driver's seeded RNG) makes the ephemeral key.
    pub fn initiate(local: &StaticKey, secret: &SwarmSecret, seed: [u8; 32]) -> Handshake {
        Self::initiate_with(NOISE_PARAMS, local, secret, seed)
    }

    pub(crate) fn initiate_with(
        params: &str,
        local: &StaticKey,
        secret: &SwarmSecret,
        seed: [u8; 32],
    ) -> Handshake {
        let psk = secret.psk();
        let noise = builder(params, seed)
            .local_private_key(local.private())
            .and_then(|b| b.psk(3, &psk))
            .and_then(|b| b.build_initiator())
            // Cannot fail: the key and psk have the lengths our params require.
            .expect("a valid initiator");
        let tag = secret.tag();
        let mut handshake = Handshake {
            noise,
            awaiting: Some(Awaiting::Message2),
            inbound: BytesMut::new(),
            outbound: Vec::new(),
            swarm: Some(tag),
        };
        let mut payload = Vec::with_capacity(MSG1_PAYLOAD_LEN);
        payload.extend_from_slice(PROTOCOL_MAGIC);
        payload.extend_from_slice(&tag.0);
        handshake
            .write(&payload)
            // Cannot fail: message 1 is the first message of a fresh initiator.
            .expect("message 1 writes");
        handshake
    }

    /// Waits for an initiator's message 1; accepts the swarms of the keyring given to
    /// [`Self::handle_input`].
    pub fn respond(local: &StaticKey, seed: [u8; 32]) -> Handshake {
        Self::respond_with(NOISE_PARAMS, local, seed)
    }

    pub(crate) fn respond_with(params: &str, local: &StaticKey, seed: [u8; 32]) -> Handshake {
        let noise = builder(params, seed)
            .local_private_key(local.private())
            .and_then(|b| b.build_responder())
            // Cannot fail: the key has the length our params require.
            .expect("a valid responder");
        Handshake {
            noise,
            awaiting: Some(Awaiting::Message1),
            inbound: BytesMut::new(),
            outbound: Vec::new(),
            swarm: None,
        }
    }

    /// The bytes to send now, if any.
    pub fn take_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.outbound.is_empty()).then(|| std::mem::take(&mut self.outbound))
    }

    /// Whether the handshake is done: [`Self::into_session`] may be called.
    pub fn is_finished(&self) -> bool {
        self.awaiting.is_none()
    }

    /// Feeds received bytes. An error means the connection must be closed.
    pub fn handle_input(&mut self, input: &[u8], keyring: &Keyring) -> Result<(), SecureError> {
        self.inbound.extend_from_slice(input);
        while let Some(awaiting) = self.awaiting {
            if self.inbound.len() < LEN_PREFIX {
                break;
            }
            let len = usize::from(u16::from_be_bytes([self.inbound[0], self.inbound[1]]));
            // Each message has one length: anything else is not our handshake, and is
            // refused before a byte more is buffered.
            if len != awaiting.len() {
                return Err(SecureError::BadLength(len));
            }
            if self.inbound.len() < LEN_PREFIX + len {
                break;
            }
            self.inbound.advance(LEN_PREFIX);
            let message = self.inbound.split_to(len);
            self.on_message(awaiting, &message, keyring)?;
        }
        if self.awaiting.is_some() && self.inbound.len() > LEN_PREFIX + MSG2_LEN {
            return Err(SecureError::Unexpected);
        }
        Ok(())
    }

    fn on_message(
        &mut self,
        awaiting: Awaiting,
        message: &[u8],
        keyring: &Keyring,
    ) -> Result<(), SecureError> {
        let mut payload = [0u8; MSG1_LEN];
        let payload_len = self.noise.read_message(message, &mut payload)?;
        match awaiting {
            Awaiting::Message1 => {
                let payload = &payload[..payload_len];
                if payload.len() != MSG1_PAYLOAD_LEN || !payload.starts_with(PROTOCOL_MAGIC) {
                    return Err(SecureError::NotOurProtocol);
                }
                let mut tag = SwarmTag([0; TAG_BYTES]);
                tag.0.copy_from_slice(&payload[PROTOCOL_MAGIC.len()..]);
                let secret = keyring.get(&tag).ok_or(SecureError::UnknownSwarm(tag))?;
                self.noise.set_psk(3, &secret.psk())?;
                self.swarm = Some(tag);
                self.write(&[])?;
                self.awaiting = Some(Awaiting::Message3);
            }
            Awaiting::Message2 => {
                if payload_len != 0 {
                    return Err(SecureError::Unexpected);
                }
                self.write(&[])?;
                self.awaiting = None;
            }
            Awaiting::Message3 => {
                if payload_len != 0 {
                    return Err(SecureError::Unexpected);
                }
                self.awaiting = None;
            }
        }
        Ok(())
    }

    /// Writes our next handshake message, length-prefixed, to the outbound bytes.
    fn write(&mut self, payload: &[u8]) -> Result<(), SecureError> {
        let mut message = [0u8; MSG2_LEN];
        let len = self.noise.write_message(payload, &mut message)?;
        // Cannot fail: our messages are at most MSG2_LEN bytes.
        let prefix = u16::try_from(len).expect("a handshake message fits a u16");
        self.outbound.extend_from_slice(&prefix.to_be_bytes());
        self.outbound.extend_from_slice(&message[..len]);
        Ok(())
    }

    /// The session of a finished handshake. Bytes received after the last handshake
    /// message (the first records) are already in its opener.
    pub fn into_session(self) -> Result<Session, SecureError> {
        if !self.is_finished() {
            return Err(SecureError::Unexpected);
        }
        let remote_key: [u8; 32] = self
            .noise
            .get_remote_static()
            .and_then(|key| key.try_into().ok())
            .ok_or(SecureError::BadRemoteKey)?;
        let swarm = self.swarm.ok_or(SecureError::Unexpected)?;
        let transport = Arc::new(self.noise.into_stateless_transport_mode()?);
        let remote = Remote {
            peer_id: peer_id_of(&remote_key),
            swarm: swarm.name(),
        };
        Ok(Session {
            swarm,
            sealer: Sealer::new(transport.clone()),
            opener: Opener::new(transport, self.inbound),
            remote,
            remote_key,
        })
    }
}

fn builder<'a>(params: &str, seed: [u8; 32]) -> snow::Builder<'a> {
    let params: NoiseParams = params
        .parse()
        // Cannot fail: our params are constants, parsed in the module's tests too.
        .expect("Noise params parse");
    snow::Builder::with_resolver(params, Box::new(SeededResolver { seed }))
}

/// ring's hash and AEAD (AES-GCM with AES-NI and CLMUL: 2.7x snow's pure-Rust one in
/// `examples/cipher_speed.rs`), snow's X25519 (ring offers none to snow), and randomness
/// from a seed instead of the OS.
struct SeededResolver {
    seed: [u8; 32],
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SeededRng(ChaCha20Rng::from_seed(self.seed))))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        RingResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        RingResolver.resolve_cipher(choice)
    }
}

struct SeededRng(ChaCha20Rng);

impl Random for SeededRng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}
