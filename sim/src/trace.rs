//! The trace digest: a hash of every event the run processed and every action the machines
//! asked for, in order. Two runs of one seed must give the same digest; a test checks it.

use std::hash::Hasher;

use bytes::BytesMut;
use p2p_core::wire::Message;

/// 64-bit FNV-1a: tiny, fast, and stable across platforms and builds (unlike `DefaultHasher`).
#[derive(Clone, Copy, Debug)]
pub struct Digest(u64);

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for Digest {
    fn default() -> Self {
        Digest(FNV_OFFSET)
    }
}

impl Hasher for Digest {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }
}

impl Digest {
    pub fn mix(&mut self, values: &[u64]) {
        for &v in values {
            self.write_u64(v);
        }
    }

    /// Mixes one record: its tag, then its values. The bytes are those of
    /// `mix(&[tag as u64, values...])`, the form every pinned digest was recorded with.
    pub fn mix_tagged(&mut self, tag: DigestTag, values: &[u64]) {
        self.write_u64(tag as u64);
        self.mix(values);
    }
}

/// What a digest record is about. The discriminants are the numbers the records were mixed
/// with before they had names: changing one changes every digest, so they are fixed.
/// Grouped by tens: events (1-8), disk actions (20-23), notices (30-36), connection actions
/// (40-43), deliveries (50-51), faults (60-66).
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
pub enum DigestTag {
    Wake = 1,
    Connected = 2,
    ConnectFailed = 3,
    Broken = 4,
    DiskRead = 5,
    DiskStored = 6,
    Prepared = 7,
    Join = 8,
    ReadChunk = 20,
    StoreChunk = 21,
    PrepareDownload = 22,
    /// A cooperative origin action (`FetchRange`, `WriteRange`, `CancelFetch`): carried out
    /// in a coop run (`world/origin.rs`, `world/coop.rs`), dropped in any other.
    OriginAction = 23,
    DownloadComplete = 30,
    DownloadFailed = 31,
    PeerBanned = 32,
    TrackerConnected = 33,
    TrackerLost = 34,
    Progress = 35,
    /// Any notice of a cooperative origin download.
    OriginNotice = 36,
    Connect = 40,
    Accept = 41,
    Send = 42,
    Close = 43,
    HandshakeSend = 44,
    SynAck = 47,
    HandshakeRefused = 45,
    HandshakeTimeout = 46,
    Receive = 50,
    ClosedByRemote = 51,
    PeerCrash = 60,
    PeerRestart = 61,
    PeerLeave = 62,
    TrackerDown = 63,
    TrackerRestart = 64,
    Regroup = 65,
    Heal = 66,
}

/// A short description of a message for traces: never the bulk bytes.
pub fn describe(message: &Message) -> String {
    match message {
        Message::Piece {
            chunk_index,
            offset,
            data,
            ..
        } => format!("Piece(chunk {chunk_index} +{offset} len {})", data.len()),
        Message::DeliverRange {
            range_index, data, ..
        } => {
            format!("DeliverRange(range {range_index} len {})", data.len())
        }
        Message::Announce { chunks, .. } => format!("Announce({chunks:?})"),
        Message::ManifestReply { manifest } => {
            format!("ManifestReply({} chunks)", manifest.chunk_count())
        }
        Message::Located { peers, .. } => format!("Located({} peers)", peers.len()),
        other => {
            let mut text = format!("{other:?}");
            text.truncate(160);
            text
        }
    }
}

/// The message's variant name (`Have`, `Piece`, ...), for the per-kind counts: from the
/// wire module's one table of kinds.
pub fn message_name(message: &Message) -> String {
    message.kind().name().to_string()
}

/// The message's wire kind byte and its exact encoded size, from the real encoding. A bulk
/// message's data is not copied: only its header is encoded. `scratch` is reused from call
/// to call so that sizing a message allocates nothing.
pub fn wire_facts(message: &Message, scratch: &mut BytesMut) -> (u8, u64) {
    if let Some((header, data)) = message.split_bulk() {
        return (header[4], (header.len() + data.len()) as u64);
    }
    scratch.clear();
    message.encode(scratch);
    (scratch[4], scratch.len() as u64)
}
