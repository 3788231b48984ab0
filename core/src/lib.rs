//! The sans-IO core of p2p: the wire protocol, manifests, and the tracker, peer, scheduler
//! and downloader state machines.
//!
//! No machine here does I/O, reads a clock or draws OS randomness. Each takes events with
//! `handle_*(now, …)`, answers with `poll_action()` (drain it after every input until it
//! returns `None`), and says when it next wants to be woken with `poll_timeout()`; the
//! driver then calls `handle_timeout(now)`. The smol runtime and the simulator are two such
//! drivers of the very same code.

pub mod chunkset;
pub mod filename;
pub mod ids;
pub mod manifest;
pub mod peer;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod ticket;
pub mod time;
pub mod tracker;
pub mod wire;

// The peer machine's parts live under `peer/`; these keep their former paths working for
// the runtime, the simulator, the fuzzers and the tests until the public surface shrinks.
pub use peer::coop;
pub use peer::download as downloader;
pub use peer::download::scheduler;

pub use chunkset::ChunkSet;
pub use ids::{ConnId, ContentId, PeerId, Sha256Digest};
pub use manifest::{ChunkCheck, Manifest, ManifestBuilder};
pub use ticket::Ticket;
pub use time::Instant;
pub use wire::{FrameDecoder, Message, WireError};
