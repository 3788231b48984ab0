//! The sans-IO core of p2p: the wire protocol, manifests and tickets, and the tracker and
//! peer state machines (the peer's downloads, scheduler and cooperative origin downloads
//! live under [`peer`]).
//!
//! No machine here does I/O, reads a clock or draws OS randomness. The smol runtime
//! (`runtime-smol`) and the simulator (`sim`) are two drivers of the very same code, and
//! they keep the same contract:
//!
//! # The drain rule
//!
//! Inputs are `handle_*(now, …)` calls and user commands (`publish`, `download`, …). After
//! every input the driver calls `poll_action()` until it returns `None`, carrying out each
//! action in order. Actions are queued inside the machine, so nothing is lost if the driver
//! drains late, but a driver that stops early leaves work undone until its next input.
//!
//! # No re-entry
//!
//! While it drains, a driver gives the machine no input: the result of an action (a
//! connection opened, a block read, a chunk stored) is a later input, given after the
//! drain. Both drivers do this: the simulator schedules results as future events, the
//! runtime collects the drained actions first and acts on them afterwards. A machine's
//! methods could cope with re-entry (actions go to the back of one queue), but then the
//! order of actions would depend on the driver, and the simulator would no longer run what
//! the runtime runs.
//!
//! # The timer rule
//!
//! After draining, the driver asks `poll_timeout()` (its answer changes only after an
//! input) and calls `handle_timeout(now)` once `now` has reached that instant. An early or
//! extra call is safe: a timer fires only once its deadline has passed (the few checks that
//! run on every wakeup, listed in the peer's `timer.rs`, are idempotent).
//! Time is [`Instant`], a count of nanoseconds from an origin the driver chooses.
//!
//! # Errors and panics
//!
//! After str0m's policy:
//! - Anything from the network is input, and bad input is an error, never a panic: a
//!   malformed frame or a message out of place closes that connection (with `Error` where
//!   the protocol has one), a chunk that fails its hash bans its sender for that content.
//!   Every length read from the network is bounded before anything is allocated for it.
//! - A panic means one of our own invariants is broken: a bug, not a condition to handle.
//! - Every `unwrap`/`expect` says in a comment why it cannot fail.
//! - Local failures the driver reports (a disk full, an origin refusing) come back as
//!   inputs (`StoreOutcome::Io`, `RangeError`) and end as notices to the user.
//!
//! # The surface
//!
//! Only what the runtime, the simulator, the fuzzers and the tests use is public: the
//! machines ([`peer::Peer`], [`tracker::Tracker`]) with their configs, actions and notices;
//! the codec ([`wire`]); manifests, tickets, ids, time and the file-name sanitiser. The
//! peer's parts (connections, serving, downloads and their scheduler, the cooperative
//! download) are private modules under `peer/`. The in-memory driver and message samples
//! for tests are in [`testkit`], behind the `testkit` feature.

mod chunkset;
pub mod collection;
pub mod filename;
pub mod ids;
mod listed_addr;
pub mod manifest;
pub mod peer;
pub mod secure;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod ticket;
pub mod time;
pub mod tracker;
pub mod wire;

pub use chunkset::ChunkSet;
pub use ids::{ConnId, ContentId, PeerId};
pub use manifest::{ChunkCheck, Manifest, ManifestBuilder};
pub use ticket::Ticket;
pub use time::Instant;
pub use wire::{FrameDecoder, Message, WireError};
