//! The keys of a private swarm: its secret (and the tag and pre-shared key derived from
//! it), a peer's static key (and the peer id derived from that), and a responder's ring of
//! secrets.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::ids::{HexError, PeerId, from_hex, sha256, to_hex};

/// Bytes in a swarm secret.
pub const SECRET_LEN: usize = 32;
/// Bytes in a swarm tag.
pub const TAG_BYTES: usize = 16;
/// Bytes of a swarm's LAN name (`SwarmSecret::lan_name`), before hex: 128 bits, so no two
/// swarms on one network share a name by chance.
pub const LAN_NAME_BYTES: usize = 16;

/// A swarm's secret: 32 random bytes made by the runtime (from the OS) when a file is first
/// shared, carried in tickets. Whoever holds it is a member of the swarm.
#[derive(Clone, PartialEq, Eq)]
pub struct SwarmSecret([u8; SECRET_LEN]);

impl SwarmSecret {
    /// The secret made of `bytes`, which must come from a cryptographic RNG.
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> SwarmSecret {
        SwarmSecret(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// The swarm's public name: sent in the clear in handshakes, used as the swarm name
    /// in `Hello`. Learning it gives no way to the secret.
    pub fn tag(&self) -> SwarmTag {
        let digest = derive(b"p2p2 swarm tag", &self.0);
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&digest[..TAG_BYTES]);
        SwarmTag(tag)
    }

    /// The Noise pre-shared key: a different hash of the secret than the tag, so the tag
    /// says nothing about it.
    pub(crate) fn psk(&self) -> [u8; 32] {
        derive(b"p2p2 swarm psk", &self.0)
    }

    /// The swarm's name on the local network, under which its members announce and look
    /// for each other over mDNS: `LAN_NAME_BYTES` of a hash of the secret under a label of
    /// its own, in hex. Anyone on the LAN sees it; only a member can compute it, and it
    /// says nothing about the secret, the tag (seen in handshakes) or the contents: an
    /// outsider learns only that the same swarm is there again.
    pub fn lan_name(&self) -> String {
        let digest = derive(b"p2p2 lan discovery", &self.0);
        to_hex(&digest[..LAN_NAME_BYTES])
    }
}

/// SHA-256 of a domain label and the secret: one key per purpose, none revealing another.
fn derive(label: &[u8], secret: &[u8; SECRET_LEN]) -> [u8; 32] {
    let mut input = Vec::with_capacity(label.len() + 1 + SECRET_LEN);
    input.extend_from_slice(label);
    input.push(0);
    input.extend_from_slice(secret);
    sha256(&input)
}

/// Never printed: a secret in a log line is a secret given away.
impl fmt::Debug for SwarmSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SwarmSecret(tag {})", self.tag())
    }
}

/// What is wrong with a secret's text (64 hex digits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretError(pub HexError);

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a swarm secret is 64 hex digits: {}", self.0)
    }
}

impl std::error::Error for SecretError {}

impl FromStr for SwarmSecret {
    type Err = SecretError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        from_hex::<SECRET_LEN>(s.trim())
            .map(SwarmSecret)
            .map_err(SecretError)
    }
}

impl SwarmSecret {
    /// The secret as 64 hex digits, for tickets and secret files.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }
}

/// A swarm's public name, derived from its secret.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SwarmTag(pub [u8; TAG_BYTES]);

impl SwarmTag {
    /// The swarm's name in `Hello` and in the machines' configs: the tag in hex.
    pub fn name(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for SwarmTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl fmt::Debug for SwarmTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SwarmTag({})", &to_hex(&self.0)[..8])
    }
}

/// A peer's (or tracker's) static X25519 key pair. The runtime makes the private half from
/// OS randomness at start; the simulator from its seed.
#[derive(Clone)]
pub struct StaticKey {
    private: [u8; 32],
    public: [u8; 32],
}

impl StaticKey {
    /// The key pair whose private half is `private` (any 32 bytes; X25519 clamps them).
    pub fn from_private(private: [u8; 32]) -> StaticKey {
        let public = x25519_public(&private);
        StaticKey { private, public }
    }

    pub(crate) fn private(&self) -> &[u8; 32] {
        &self.private
    }

    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    /// The id this key speaks under.
    pub fn peer_id(&self) -> PeerId {
        peer_id_of(&self.public)
    }
}

impl fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StaticKey({})", self.peer_id())
    }
}

/// The public half of an X25519 key pair, through snow's own Diffie-Hellman.
fn x25519_public(private: &[u8; 32]) -> [u8; 32] {
    use snow::resolvers::CryptoResolver;
    let mut dh = snow::resolvers::DefaultResolver
        .resolve_dh(&snow::params::DHChoice::Curve25519)
        // Cannot fail: snow's default resolver always has Curve25519 (feature enabled).
        .expect("snow provides Curve25519");
    dh.set(private);
    let mut public = [0u8; 32];
    public.copy_from_slice(dh.pubkey());
    public
}

/// A peer id is the first 8 bytes of a hash of the static public key. Speaking under a
/// given id means finding a key whose hash starts with it: about 2^64 key generations.
pub fn peer_id_of(public: &[u8; 32]) -> PeerId {
    let digest = derive(b"p2p2 peer id", public);
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    PeerId(u64::from_be_bytes(id))
}

/// Who is at the other end of a connection, as its handshake proved: the id of its static
/// key and the swarm whose secret it holds, by the name the machines use for it (the
/// tag in hex, [`SwarmTag::name`]). Drivers hand it to the machines with the connection;
/// a `Hello` that claims anything else is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    pub peer_id: PeerId,
    pub swarm: String,
}

/// The secrets a responder accepts handshakes for, by tag. A peer holds its one swarm's;
/// a tracker every swarm it serves.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    by_tag: BTreeMap<SwarmTag, SwarmSecret>,
}

impl Keyring {
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// A ring holding one secret.
    pub fn of(secret: SwarmSecret) -> Keyring {
        let mut ring = Keyring::new();
        ring.insert(secret);
        ring
    }

    pub fn insert(&mut self, secret: SwarmSecret) {
        self.by_tag.insert(secret.tag(), secret);
    }

    pub fn get(&self, tag: &SwarmTag) -> Option<&SwarmSecret> {
        self.by_tag.get(tag)
    }

    pub fn len(&self) -> usize {
        self.by_tag.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_tag.is_empty()
    }

    /// The tags of every swarm in the ring, in order.
    pub fn tags(&self) -> impl Iterator<Item = &SwarmTag> {
        self.by_tag.keys()
    }
}

#[cfg(test)]
impl Keyring {
    /// Files `secret` under another swarm's tag: a responder that believes a wrong secret.
    pub(super) fn insert_as(&mut self, tag: SwarmTag, secret: SwarmSecret) {
        self.by_tag.insert(tag, secret);
    }
}
