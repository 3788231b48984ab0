//! Operation sequences for the peer machine.
//!
//! The peer (id 100, listening at `self:1`, tracker `tracker:1`) publishes file A (2 chunks)
//! and downloads file B (3 chunks), both of the smallest chunk size, whose bytes the harness
//! knows. The first input byte chooses whether the download starts with B's manifest or must
//! fetch it. Then ops, each one byte (`op % OPS`) and its operands:
//! - `ACCEPT`: a remote peer connects;
//! - `CONNECTED sel ok`: an outgoing connect (pending `Connect`) succeeds or fails;
//! - `CLOSE sel`: the remote closes a connection;
//! - `FRAME sel len:u16 body`: a frame body arrives on a connection, if it decodes;
//! - `MESSAGE sel …`: a structured message, lies included (pieces never requested, wrong
//!   sizes, bitfields of the wrong length, pongs never pinged, out-of-range indices);
//! - `ANSWER k mode`: a remote answers the k-th outstanding `Request` (correct data, corrupt
//!   data, wrong length, wrong offset);
//! - `READ k mode`: the driver finishes a pending `ReadChunk` (right bytes, wrong length, error);
//! - `STORE k mode`: the driver finishes a pending `StoreChunk` honestly (hashing the data) or
//!   with an I/O error;
//! - `PREPARE mode`: the driver answers `PrepareDownload` (nothing on disk, some chunks
//!   verified on disk, a set of the wrong length, an error);
//! - `SENT sel`: the driver wrote a piece on a connection;
//! - `ADVANCE ms:u16`: time moves on; timers fire if due;
//! - `HANDSHAKE sel peer`: a valid `Hello`/`Welcome` on a connection (as the remote side);
//! - `PONG sel right`: a pong for the last ping on a connection, or with a wrong nonce.
//!
//! Checked after every op: connections named by `Send`/`Close` are open; every message sent
//! is decodable; a `ReadChunk` is only for a chunk held, within the chunk; a `StoreChunk`
//! carries the manifest's check for that index and a chunk of the right length; a
//! `PrepareDownload` carries a manifest that verifies; held chunks of B are only chunks the
//! driver stored (or found on disk); A stays fully held; `DownloadComplete` only when all of
//! B is stored.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use p2p_core::manifest::CHUNK_SIZE_MIN;
use p2p_core::peer::{Peer, PeerAction, PeerConfig, PeerNotice, PreparedChunks, StoreOutcome};
use p2p_core::secure::Remote;
use p2p_core::testkit::TestFile;
use p2p_core::wire::{PROTOCOL_VERSION, PeerChunks};
use p2p_core::{ChunkSet, ConnId, ContentId, Instant, Message, PeerId};

use crate::tracker_harness::ADDRS;
use crate::{be16, blob, byte, generate, through_wire};

pub const ACCEPT: u8 = 0;
pub const CONNECTED: u8 = 1;
pub const CLOSE: u8 = 2;
pub const FRAME: u8 = 3;
pub const MESSAGE: u8 = 4;
pub const ANSWER: u8 = 5;
pub const READ: u8 = 6;
pub const STORE: u8 = 7;
pub const PREPARE: u8 = 8;
pub const SENT: u8 = 9;
pub const ADVANCE: u8 = 10;
pub const HANDSHAKE: u8 = 11;
pub const PONG: u8 = 12;
const OPS: u8 = 13;

const STEPS_MAX: usize = 256;
pub const SELF_ID: PeerId = PeerId(100);
pub const SELF_ADDR: &str = "self:1";
pub const TRACKER_ADDR: &str = "tracker:1";
/// Remote peers 1..=4 listen at `pN:1`.
pub const REMOTES: u64 = 4;

pub fn remote_addr(peer: u64) -> String {
    format!("p{peer}:1")
}

/// Multiplier of the harness files' byte pattern: neighbouring offsets get unrelated bytes.
/// The committed corpora name these files by content id, so the pattern must not change.
const PATTERN_MULTIPLIER: u32 = 2_654_435_761;

/// A file of `len` patterned bytes (`salt` makes another), in chunks of the smallest size.
fn harness_file(name: &str, len: usize, salt: u8) -> TestFile {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(PATTERN_MULTIPLIER).to_be_bytes()[0] ^ salt)
        .collect();
    TestFile::new(name, CHUNK_SIZE_MIN, data)
}

/// File A (published, 2 chunks) and file B (downloaded, 3 chunks).
pub fn files() -> &'static (TestFile, TestFile) {
    static FILES: OnceLock<(TestFile, TestFile)> = OnceLock::new();
    FILES.get_or_init(|| {
        let cs = CHUNK_SIZE_MIN as usize;
        (
            harness_file("a.bin", cs + 500, 0xa5),
            harness_file("b.bin", 2 * cs + 1000, 0x5b),
        )
    })
}

#[derive(Clone, Debug)]
struct Conn {
    id: ConnId,
    /// `Some(addr)` for connections the peer opened.
    outgoing: Option<String>,
    connected: bool,
    open: bool,
}

#[derive(Clone, Debug)]
struct OutRequest {
    conn: ConnId,
    content_id: ContentId,
    chunk_index: u32,
    offset: u32,
    length: u32,
}

pub struct PeerHarness {
    pub peer: Peer,
    pub now: Instant,
    conns: Vec<Conn>,
    requests: Vec<OutRequest>,
    reads: Vec<(u64, ContentId, u32, u32, u32)>,
    stores: Vec<(u64, ContentId, u32, Bytes)>,
    preparing: bool,
    /// Chunks of B the driver verified (stored or found on disk).
    verified: BTreeSet<u32>,
    /// The chunks of B the download asks for (all three unless the last prepare took a
    /// valid part).
    wanted: BTreeSet<u32>,
    /// Last ping nonce per connection.
    pings: BTreeMap<ConnId, u64>,
    /// Connections with a piece handed to the driver and not yet reported sent.
    unsent_pieces: Vec<ConnId>,
    pub completed: bool,
}

/// Messages from the remote side of a peer or tracker connection, many of them lies.
fn remote_message(u: &mut Unstructured<'_>) -> Result<Message> {
    let (a, b) = files();
    let cid = |u: &mut Unstructured<'_>| -> Result<ContentId> {
        Ok(match u.int_in_range(0..=7)? {
            0..=2 => b.id,
            3..=5 => a.id,
            6 => ContentId([0; 32]),
            _ => generate::content_id(u)?,
        })
    };
    let index = |u: &mut Unstructured<'_>| -> Result<u32> {
        Ok(if u.ratio(1, 6)? {
            u.arbitrary()?
        } else {
            u.int_in_range(0..=4)?
        })
    };
    let small = |u: &mut Unstructured<'_>| -> Result<u32> {
        Ok(match u.int_in_range(0..=4)? {
            0 => 0,
            1 => u.int_in_range(1..=64)?,
            2 => CHUNK_SIZE_MIN,
            3 => 1000,
            _ => u.arbitrary()?,
        })
    };
    Ok(match u.int_in_range(0..=19)? {
        0 => Message::Interested {
            content_id: cid(u)?,
        },
        1 => Message::GetManifest {
            content_id: cid(u)?,
        },
        2 => Message::ManifestReply {
            manifest: match u.int_in_range(0..=3)? {
                0 => b.manifest.clone(),
                1 => a.manifest.clone(),
                2 => {
                    let mut m = b.manifest.clone();
                    m.name = generate::truncate(u.arbitrary()?, 255);
                    m
                }
                _ => generate::manifest(u)?,
            },
        },
        3 => Message::NotFound {
            content_id: cid(u)?,
        },
        4 | 5 => {
            let content_id = cid(u)?;
            let len = if u.ratio(3, 4)? {
                if content_id == a.id { 2 } else { 3 }
            } else {
                u.int_in_range(0..=20)?
            };
            let chunks = if u.ratio(1, 2)? {
                ChunkSet::full(len)
            } else {
                generate::chunkset_of_len(u, len)?
            };
            Message::Bitfield { content_id, chunks }
        }
        6 => {
            let content_id = cid(u)?;
            let n = u.int_in_range(0..=4)?;
            let mut chunk_indices = Vec::new();
            for _ in 0..n {
                chunk_indices.push(index(u)?);
            }
            Message::Have {
                content_id,
                chunk_indices,
            }
        }
        7 | 8 => Message::Request {
            content_id: cid(u)?,
            chunk_index: index(u)?,
            offset: small(u)?,
            length: small(u)?,
        },
        9 => Message::Cancel {
            content_id: cid(u)?,
            chunk_index: index(u)?,
            offset: small(u)?,
            length: small(u)?,
        },
        10 => {
            let content_id = cid(u)?;
            let len = small(u)?.min(70_000) as usize;
            Message::Piece {
                content_id,
                chunk_index: index(u)?,
                offset: small(u)?,
                data: Bytes::from(vec![byte(u); len]),
            }
        }
        11 => Message::Reject {
            content_id: cid(u)?,
            chunk_index: index(u)?,
            offset: small(u)?,
            length: small(u)?,
        },
        12 => Message::Ping {
            nonce: u.arbitrary()?,
        },
        13 => Message::Pong {
            nonce: u.arbitrary()?,
        },
        14 => {
            let content_id = cid(u)?;
            let n = u.int_in_range(0..=4)?;
            let mut peers = Vec::new();
            for _ in 0..n {
                let p = u.int_in_range(1..=REMOTES + 1)?;
                let id = if p > REMOTES { SELF_ID } else { PeerId(p) };
                let addr = if u.ratio(1, 5)? {
                    generate::string(u)?
                } else {
                    remote_addr(p)
                };
                peers.push((id, addr));
            }
            Message::PeerExchange { content_id, peers }
        }
        15 | 16 => {
            let content_id = cid(u)?;
            let n = u.int_in_range(0..=4)?;
            let mut peers = Vec::new();
            for _ in 0..n {
                let p = u.int_in_range(1..=REMOTES + 1)?;
                let (peer_id, listen_addr) = if p > REMOTES {
                    (SELF_ID, SELF_ADDR.to_string())
                } else {
                    (PeerId(p), remote_addr(p))
                };
                let len = if u.ratio(3, 4)? {
                    3
                } else {
                    u.int_in_range(0..=9)?
                };
                let chunks = if u.ratio(1, 2)? {
                    ChunkSet::full(len)
                } else {
                    generate::chunkset_of_len(u, len)?
                };
                peers.push(PeerChunks {
                    peer_id,
                    listen_addr,
                    chunks,
                });
            }
            Message::Located { content_id, peers }
        }
        17 => Message::Hello {
            version: if u.ratio(1, 4)? {
                u.arbitrary()?
            } else {
                PROTOCOL_VERSION
            },
            peer_id: PeerId(u.int_in_range(1..=REMOTES + 1)?),
            listen_addr: remote_addr(u.int_in_range(1..=REMOTES)?),
            swarm: if u.ratio(1, 4)? {
                "other".into()
            } else {
                "default".into()
            },
        },
        18 => Message::Welcome {
            version: if u.ratio(1, 4)? {
                u.arbitrary()?
            } else {
                PROTOCOL_VERSION
            },
            peer_id: {
                let p = u.int_in_range(0..=REMOTES + 1)?;
                if p > REMOTES { SELF_ID } else { PeerId(p) }
            },
        },
        _ => generate::message(u)?,
    })
}

impl PeerHarness {
    pub fn new(with_manifest: bool) -> PeerHarness {
        let (a, b) = files();
        let now = Instant::from_nanos(1_000_000_000);
        let config = PeerConfig {
            peer_id: SELF_ID,
            listen_addr: SELF_ADDR.into(),
            trackers: vec![TRACKER_ADDR.into()],
            ..PeerConfig::default()
        };
        let mut h = PeerHarness {
            peer: Peer::new(config, now),
            now,
            conns: Vec::new(),
            requests: Vec::new(),
            reads: Vec::new(),
            stores: Vec::new(),
            preparing: false,
            verified: BTreeSet::new(),
            wanted: (0..3).collect(),
            pings: BTreeMap::new(),
            unsent_pieces: Vec::new(),
            completed: false,
        };
        h.peer.publish(now, a.manifest.clone());
        h.drain_and_check();
        h.peer
            .download(now, b.id, with_manifest.then(|| b.manifest.clone()));
        h.drain_and_check();
        h.peer.handle_timeout(now);
        h.drain_and_check();
        h
    }

    /// The key a connection's handshake proved: one of the remotes (or the peer's own id),
    /// so a `Hello` sometimes matches it and sometimes claims another's id.
    fn remote(&self, sel: u8) -> Remote {
        Remote {
            peer_id: PeerId(1 + u64::from(sel) % (REMOTES + 1)),
            swarm: self.peer.swarm().to_string(),
        }
    }

    fn pick(&self, sel: u8) -> Option<ConnId> {
        if self.conns.is_empty() {
            None
        } else {
            Some(self.conns[sel as usize % self.conns.len()].id)
        }
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.iter_mut().find(|c| c.id == id)
    }

    fn deliver(&mut self, conn: ConnId, message: Message) {
        if let Some(message) = through_wire(&message) {
            self.peer.handle_message(self.now, conn, message);
        }
    }

    /// Runs one op; `false` when the input is used up.
    pub fn step(&mut self, u: &mut Unstructured<'_>) -> bool {
        if u.is_empty() {
            return false;
        }
        let (_, b) = files();
        let now = self.now;
        match byte(u) % OPS {
            ACCEPT => {
                let remote = self.remote(byte(u));
                // From any of the addresses (or none) the driver could report.
                let from = (*u.choose(&ADDRS).unwrap_or(&"")).to_string();
                if let Some(id) = self.peer.accept(now, remote, from) {
                    assert!(self.conns.iter().all(|c| c.id != id), "accept reused {id}");
                    self.conns.push(Conn {
                        id,
                        outgoing: None,
                        connected: true,
                        open: true,
                    });
                }
            }
            CONNECTED => {
                let sel = byte(u);
                let ok = !byte(u).is_multiple_of(4);
                let pending: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|c| c.open && !c.connected)
                    .map(|c| c.id)
                    .collect();
                if !pending.is_empty() {
                    let id = pending[sel as usize % pending.len()];
                    let c = self.conn_mut(id).unwrap();
                    if ok {
                        c.connected = true;
                        let remote = self.remote(sel);
                        self.peer.handle_connected(now, id, remote);
                    } else {
                        c.open = false;
                        self.peer.handle_closed(now, id);
                    }
                }
            }
            CLOSE => {
                if let Some(id) = self.pick(byte(u)) {
                    if let Some(c) = self.conn_mut(id) {
                        c.open = false;
                    }
                    self.peer.handle_closed(now, id);
                }
            }
            FRAME => {
                let sel = byte(u);
                let body = blob(u);
                if let (Some(id), Some(message)) = (self.pick(sel), crate::decode_body(body)) {
                    self.peer.handle_message(now, id, message);
                }
            }
            MESSAGE => {
                let sel = byte(u);
                let Ok(message) = remote_message(u) else {
                    return false;
                };
                if let Some(id) = self.pick(sel) {
                    self.deliver(id, message);
                }
            }
            ANSWER => {
                let k = byte(u) as usize;
                let mode = byte(u) % 5;
                if !self.requests.is_empty() {
                    let r = self.requests[k % self.requests.len()].clone();
                    let file = if r.content_id == b.id { b } else { &files().0 };
                    let chunk = file.chunk(r.chunk_index);
                    let start = (r.offset as usize).min(chunk.len());
                    let end = (r.offset as usize + r.length as usize).min(chunk.len());
                    let mut data = chunk[start..end].to_vec();
                    let mut offset = r.offset;
                    match mode {
                        0 | 1 => {}
                        2 => {
                            if let Some(x) = data.first_mut() {
                                *x ^= 1;
                            }
                        }
                        3 => {
                            if byte(u) & 1 == 0 {
                                data.pop();
                            } else {
                                data.push(0);
                            }
                        }
                        _ => offset = offset.wrapping_add(1 + u32::from(byte(u))),
                    }
                    if mode <= 2 {
                        self.requests.retain(|q| {
                            !(q.conn == r.conn
                                && q.chunk_index == r.chunk_index
                                && q.offset == r.offset
                                && q.content_id == r.content_id)
                        });
                    }
                    self.deliver(
                        r.conn,
                        Message::Piece {
                            content_id: r.content_id,
                            chunk_index: r.chunk_index,
                            offset,
                            data: Bytes::from(data),
                        },
                    );
                }
            }
            READ => {
                let k = byte(u) as usize;
                let mode = byte(u) % 4;
                if !self.reads.is_empty() {
                    let (token, cid, index, offset, length) =
                        self.reads.remove(k % self.reads.len());
                    let (a, b) = files();
                    let file = if cid == a.id { a } else { b };
                    let chunk = file.chunk(index);
                    let data = &chunk[offset as usize..(offset + length) as usize];
                    let result = match mode {
                        0 | 1 => Ok(Bytes::copy_from_slice(data)),
                        2 => Ok(Bytes::copy_from_slice(&data[..data.len() / 2])),
                        _ => Err("disk on fire".to_string()),
                    };
                    self.peer.handle_read(now, token, result);
                }
            }
            STORE => {
                let k = byte(u) as usize;
                let mode = byte(u) % 5;
                if !self.stores.is_empty() {
                    let (token, cid, index, data) = self.stores.remove(k % self.stores.len());
                    let outcome = if mode == 4 {
                        StoreOutcome::Io("disk full".into())
                    } else if b
                        .manifest
                        .chunk_check(index)
                        .is_some_and(|c| c.matches(&data))
                    {
                        assert_eq!(cid, b.id);
                        self.verified.insert(index);
                        StoreOutcome::Stored
                    } else {
                        StoreOutcome::HashMismatch
                    };
                    self.peer.handle_stored(now, token, outcome);
                }
            }
            PREPARE => {
                let mode = byte(u) % 5;
                let bits = byte(u);
                if self.preparing {
                    self.preparing = false;
                    let result = match mode {
                        0 | 1 => Ok(ChunkSet::new(3)),
                        2 => {
                            let mut have = ChunkSet::new(3);
                            for i in 0..3 {
                                if bits & (1 << i) != 0 {
                                    have.insert(i);
                                    self.verified.insert(i);
                                }
                            }
                            Ok(have)
                        }
                        3 => Ok(ChunkSet::new(u32::from(bits % 8))),
                        _ => Err("no space".to_string()),
                    };
                    if let Ok(have) = &result
                        && have.len() != 3
                    {
                        // The peer must refuse it; nothing becomes verified.
                        for i in have.iter() {
                            let _ = i;
                        }
                    }
                    // The high bits pick a part of the content to want (as `get --only`
                    // does), including sets of the wrong length, which the peer refuses.
                    let wanted = match bits >> 3 {
                        0..=15 => None,
                        w => {
                            let len = if w >= 30 { u32::from(w % 5) } else { 3 };
                            let mut wanted = ChunkSet::new(len);
                            for i in 0..len {
                                if w & (1 << i) != 0 {
                                    wanted.insert(i);
                                }
                            }
                            Some(wanted)
                        }
                    };
                    if let (Ok(have), Some(wanted)) = (&result, &wanted)
                        && have.len() == 3
                        && wanted.len() == 3
                    {
                        self.wanted = wanted.iter().collect();
                    }
                    let result = result.map(|have| PreparedChunks { have, wanted });
                    self.peer.download_prepared(now, b.id, result);
                }
            }
            SENT => {
                let sel = byte(u) as usize;
                if !self.unsent_pieces.is_empty() {
                    let id = self.unsent_pieces.remove(sel % self.unsent_pieces.len());
                    self.peer.handle_sent(now, id);
                } else if let Some(id) = self.pick(sel as u8) {
                    // A spurious report: must be harmless.
                    self.peer.handle_sent(now, id);
                }
            }
            ADVANCE => {
                let ms = be16(u);
                self.now = self.now + Duration::from_millis(u64::from(ms));
                if self.peer.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.peer.handle_timeout(self.now);
                }
            }
            HANDSHAKE => {
                let sel = byte(u);
                let p = u64::from(byte(u)) % REMOTES + 1;
                if let Some(id) = self.pick(sel) {
                    let c = self.conns.iter().find(|c| c.id == id).unwrap();
                    let message = if c.outgoing.is_some() {
                        Message::Welcome {
                            version: PROTOCOL_VERSION,
                            peer_id: if c.outgoing.as_deref() == Some(TRACKER_ADDR) {
                                PeerId(0)
                            } else {
                                PeerId(p)
                            },
                        }
                    } else {
                        Message::Hello {
                            version: PROTOCOL_VERSION,
                            peer_id: PeerId(p),
                            listen_addr: remote_addr(p),
                            swarm: "default".into(),
                        }
                    };
                    self.deliver(id, message);
                }
            }
            _ => {
                let sel = byte(u);
                let right = !byte(u).is_multiple_of(4);
                if let Some(id) = self.pick(sel) {
                    let nonce = self.pings.get(&id).copied().unwrap_or(0);
                    let nonce = if right { nonce } else { nonce.wrapping_add(1) };
                    self.deliver(id, Message::Pong { nonce });
                }
            }
        }
        self.drain_and_check();
        true
    }

    fn is_open(&self, id: ConnId) -> bool {
        self.conns.iter().any(|c| c.id == id && c.open)
    }

    pub fn drain_and_check(&mut self) {
        let (a, b) = files();
        while let Some(action) = self.peer.poll_action() {
            match action {
                PeerAction::Connect { conn, addr } => {
                    assert!(
                        self.conns.iter().all(|c| c.id != conn),
                        "Connect reuses {conn}"
                    );
                    self.conns.push(Conn {
                        id: conn,
                        outgoing: Some(addr),
                        connected: false,
                        open: true,
                    });
                }
                PeerAction::Send { conn, message } => {
                    assert!(self.is_open(conn), "Send on closed {conn}: {message:?}");
                    crate::assert_sendable(&message);
                    match message {
                        Message::Request {
                            content_id,
                            chunk_index,
                            offset,
                            length,
                        } => {
                            assert_eq!(content_id, b.id, "requested content it does not download");
                            let chunk_len = b.manifest.chunk_len(chunk_index);
                            assert!(
                                length > 0
                                    && u64::from(offset) + u64::from(length)
                                        <= u64::from(chunk_len),
                                "request outside chunk {chunk_index}: {offset}+{length}"
                            );
                            self.requests.push(OutRequest {
                                conn,
                                content_id,
                                chunk_index,
                                offset,
                                length,
                            });
                        }
                        Message::Ping { nonce } => {
                            self.pings.insert(conn, nonce);
                        }
                        Message::Piece { .. } => self.unsent_pieces.push(conn),
                        _ => {}
                    }
                }
                PeerAction::Close { conn } => {
                    assert!(self.is_open(conn), "Close of closed {conn}");
                    self.conn_mut(conn).unwrap().open = false;
                    self.requests.retain(|r| r.conn != conn);
                }
                PeerAction::ReadChunk {
                    token,
                    content_id,
                    chunk_index,
                    offset,
                    length,
                } => {
                    let held = self
                        .peer
                        .held_chunks(content_id)
                        .is_some_and(|c| c.contains(chunk_index));
                    assert!(held, "ReadChunk of chunk {chunk_index} not held");
                    let manifest = if content_id == a.id {
                        &a.manifest
                    } else {
                        &b.manifest
                    };
                    assert!(
                        length > 0
                            && u64::from(offset) + u64::from(length)
                                <= u64::from(manifest.chunk_len(chunk_index)),
                        "ReadChunk outside chunk {chunk_index}: {offset}+{length}"
                    );
                    self.reads
                        .push((token, content_id, chunk_index, offset, length));
                }
                PeerAction::StoreChunk {
                    token,
                    content_id,
                    chunk_index,
                    check,
                    data,
                } => {
                    assert_eq!(content_id, b.id, "StoreChunk for content not downloaded");
                    assert_eq!(
                        Some(check),
                        b.manifest.chunk_check(chunk_index),
                        "StoreChunk check is not the manifest's for chunk {chunk_index}"
                    );
                    assert_eq!(
                        data.len(),
                        b.manifest.chunk_len(chunk_index) as usize,
                        "StoreChunk of the wrong length"
                    );
                    self.stores.push((token, content_id, chunk_index, data));
                }
                PeerAction::PrepareDownload {
                    content_id,
                    manifest,
                } => {
                    assert_eq!(content_id, b.id);
                    manifest
                        .verify(content_id)
                        .expect("PrepareDownload with a manifest that does not verify");
                    assert!(!self.preparing, "PrepareDownload twice");
                    self.preparing = true;
                }
                PeerAction::Notify(notice) => match notice {
                    PeerNotice::DownloadComplete { content_id } => {
                        assert_eq!(content_id, b.id);
                        assert!(
                            self.wanted.is_subset(&self.verified),
                            "complete with wanted chunks unverified"
                        );
                        self.completed = true;
                    }
                    PeerNotice::Progress {
                        chunks_have,
                        chunk_count,
                        bytes_have,
                        size,
                        ..
                    } => {
                        assert!(chunks_have <= chunk_count && bytes_have <= size);
                    }
                    _ => {}
                },
                // Cooperative origin download actions (and any added later) are out of scope.
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        assert!(
            self.peer.held_chunks(a.id).is_some_and(|c| c.is_full()),
            "published file no longer fully held"
        );
        if let Some(held) = self.peer.held_chunks(b.id) {
            for i in held.iter() {
                assert!(
                    self.verified.contains(&i),
                    "chunk {i} held but never verified"
                );
            }
        }
        if let Some(t) = self.peer.poll_timeout() {
            let _ = t;
        }
    }
}

/// Runs a whole input.
pub fn run(data: &[u8]) -> PeerHarness {
    let mut u = Unstructured::new(data);
    let with_manifest = byte(&mut u) & 1 == 1;
    let mut h = PeerHarness::new(with_manifest);
    for _ in 0..STEPS_MAX {
        if !h.step(&mut u) {
            break;
        }
    }
    h
}

/// Encoders for seed inputs.
pub mod ops {
    pub use super::*;

    pub fn op(out: &mut Vec<u8>, op: u8, args: &[u8]) {
        out.push(op);
        out.extend_from_slice(args);
    }
    pub fn frame(out: &mut Vec<u8>, sel: u8, message: &Message) {
        out.extend_from_slice(&[FRAME, sel]);
        crate::put_blob(out, &message.to_frame()[4..]);
    }
    pub fn advance(out: &mut Vec<u8>, ms: u16) {
        out.push(ADVANCE);
        out.extend_from_slice(&ms.to_be_bytes());
    }
}

/// Seed inputs from valid traffic.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    use ops::*;
    let (a, b) = files();
    let mut seeds = Vec::new();

    // Download B from peer 1 found through the tracker: conn 0 is the tracker.
    for with_manifest in [0u8, 1] {
        let mut s = vec![with_manifest];
        op(&mut s, CONNECTED, &[0, 1]); // tracker connect succeeds
        op(&mut s, HANDSHAKE, &[0, 0]); // tracker Welcome
        if with_manifest == 0 {
            frame(
                &mut s,
                0,
                &Message::ManifestReply {
                    manifest: b.manifest.clone(),
                },
            );
        }
        frame(
            &mut s,
            0,
            &Message::Located {
                content_id: b.id,
                peers: vec![PeerChunks {
                    peer_id: PeerId(1),
                    listen_addr: remote_addr(1),
                    chunks: ChunkSet::full(3),
                }],
            },
        );
        op(&mut s, PREPARE, &[0, 0]);
        op(&mut s, CONNECTED, &[0, 1]); // the connect to p1
        op(&mut s, HANDSHAKE, &[1, 0]); // p1's Welcome
        frame(
            &mut s,
            1,
            &Message::Bitfield {
                content_id: b.id,
                chunks: ChunkSet::full(3),
            },
        );
        for _ in 0..3 {
            op(&mut s, ANSWER, &[0, 0]);
            op(&mut s, STORE, &[0, 0]);
        }
        op(&mut s, PONG, &[1, 1]);
        advance(&mut s, 200);
        advance(&mut s, 3000);
        seeds.push((format!("download-{with_manifest}"), s));
    }

    // Serve A to an incoming peer, with a corrupt and a short answer on the side.
    let mut s = vec![1u8];
    op(&mut s, ACCEPT, &[]);
    frame(
        &mut s,
        1,
        &Message::Hello {
            version: PROTOCOL_VERSION,
            peer_id: PeerId(2),
            listen_addr: remote_addr(2),
            swarm: "default".into(),
        },
    );
    frame(&mut s, 1, &Message::Interested { content_id: a.id });
    frame(&mut s, 1, &Message::GetManifest { content_id: a.id });
    for index in 0..2u32 {
        frame(
            &mut s,
            1,
            &Message::Request {
                content_id: a.id,
                chunk_index: index,
                offset: 0,
                length: a.manifest.chunk_len(index),
            },
        );
        op(&mut s, READ, &[0, 0]);
        op(&mut s, SENT, &[0]);
    }
    frame(&mut s, 1, &Message::Ping { nonce: 5 });
    frame(
        &mut s,
        1,
        &Message::Bitfield {
            content_id: b.id,
            chunks: ChunkSet::full(3),
        },
    );
    op(&mut s, PREPARE, &[2, 0b101]);
    op(&mut s, ANSWER, &[0, 2]);
    op(&mut s, STORE, &[0, 0]);
    op(&mut s, ANSWER, &[0, 3, 0]);
    advance(&mut s, 40000);
    frame(&mut s, 1, &Message::Goodbye);
    seeds.push(("serve".into(), s));
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_seeds_complete_the_download() {
        for (name, seed) in seeds() {
            let h = run(&seed);
            if name.starts_with("download") {
                assert!(h.completed, "{name} did not complete");
            }
        }
    }
}
