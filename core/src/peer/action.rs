//! What the peer machine asks of its driver ([`PeerAction`]), what it tells the user
//! ([`PeerNotice`]), and how the driver reports a store back ([`StoreOutcome`]): the
//! vocabulary between the machine and whoever runs it.

use bytes::Bytes;

use crate::ids::{ConnId, ContentId, PeerId};
use crate::manifest::{ChunkCheck, Manifest};
use crate::wire::Message;

/// How storing a chunk went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Verified against its hash and written.
    Stored,
    /// The data does not match the expected hash: nothing was written.
    HashMismatch,
    /// A local failure (disk full, permissions).
    Io(String),
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerAction {
    /// Open a connection to `addr`; report `handle_connected` or `handle_closed`.
    Connect {
        conn: ConnId,
        addr: String,
    },
    Send {
        conn: ConnId,
        message: Message,
    },
    /// Close the connection. No `handle_closed` is needed for it.
    Close {
        conn: ConnId,
    },
    /// Read bytes of a held chunk; report `handle_read`.
    ReadChunk {
        token: u64,
        content_id: ContentId,
        chunk_index: u32,
        offset: u32,
        length: u32,
    },
    /// Write `data` only if `check.matches` it; report `handle_stored`.
    StoreChunk {
        token: u64,
        content_id: ContentId,
        chunk_index: u32,
        check: ChunkCheck,
        data: Bytes,
    },
    /// Make room for the download (`NAME.part`), check which chunks are already on disk,
    /// and report `download_prepared`.
    PrepareDownload {
        content_id: ContentId,
        manifest: Manifest,
    },
    /// Fetch `length` bytes at `offset` of `url` with `Range` and `If-Range: validator`;
    /// report `handle_range_fetched`.
    FetchRange {
        token: u64,
        url: String,
        validator: String,
        offset: u64,
        length: u32,
        /// For another peer's job, at a URL that peer chose: the driver fetches only what
        /// its origin policy allows. `false`: this peer's own fetch, of the user's URL.
        helping: bool,
    },
    /// The machine no longer wants the bytes of `FetchRange` `token` (another participant
    /// delivered that range first, or the job ended): the driver may stop fetching them.
    /// It still reports `handle_range_fetched` for the token (any result): until then the
    /// fetch counts against the machine's bounds.
    CancelFetch {
        token: u64,
    },
    /// Write a fetched range of a cooperative download at `offset` of its file; report
    /// `handle_range_written`.
    WriteRange {
        token: u64,
        job_id: u64,
        offset: u64,
        data: Bytes,
    },
    /// Something for the user.
    Notify(PeerNotice),
}

/// Events a driver shows to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerNotice {
    TrackerConnected {
        addr: String,
    },
    TrackerLost {
        addr: String,
    },
    Progress {
        content_id: ContentId,
        chunks_have: u32,
        chunk_count: u32,
        bytes_have: u64,
        size: u64,
        sources: usize,
    },
    /// Every chunk is verified and stored: the driver syncs and renames the file.
    DownloadComplete {
        content_id: ContentId,
    },
    DownloadFailed {
        content_id: ContentId,
        reason: String,
        missing_chunks: Vec<u32>,
    },
    PeerBanned {
        content_id: ContentId,
        peer_id: PeerId,
        addr: String,
    },
    /// A range of a cooperative download is written and trusted: fetched by the fetcher
    /// itself, or by a helper and not spot-checked or its check passed. A driver may list it
    /// in a resume record once the file is synced.
    RangeSettled {
        job_id: u64,
        range_index: u32,
    },
    /// A range said settled is to be fetched again (its helper was caught delivering other
    /// bytes than the origin's): a resume record must no longer list it.
    RangeDropped {
        job_id: u64,
        range_index: u32,
    },
    /// A range of a cooperative download is written; `by` is who fetched it.
    RangeFetched {
        job_id: u64,
        range_index: u32,
        offset: u64,
        length: u32,
        by: String,
    },
    FetchProgress {
        job_id: u64,
        bytes_done: u64,
        size: u64,
        /// Bytes delivered per participant ("local" or a helper's address).
        by_participant: Vec<(String, u64)>,
    },
    /// A spot check found that a helper delivered bytes the origin does not have: it is
    /// banned from the job and every range it delivered is fetched again.
    HelperCaught {
        job_id: u64,
        peer_id: PeerId,
        /// Its address (its id if unknown).
        helper: String,
        reason: String,
        ranges_refetched: u32,
    },
    /// A helper takes no more ranges of the job (it reported a fatal failure, or too many):
    /// the job goes on without it.
    HelperLeft {
        job_id: u64,
        helper: String,
        reason: String,
    },
    /// Every range is written and every spot check passed: the driver verifies, syncs and
    /// renames the file.
    FetchComplete {
        job_id: u64,
    },
    FetchFailed {
        job_id: u64,
        reason: String,
    },
}
