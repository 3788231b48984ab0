//! The test kit: everything a test or a fuzzer needs to drive the real machines in memory,
//! in one place, so that `core/tests`, the fuzz harnesses and new tests share one driver.
//!
//! Compiled for core's own tests and, for other crates, with the `testkit` feature (core's
//! integration tests get it through core's dev-dependency on itself). It is pure like the
//! rest of core: virtual time, no sockets, no files, no threads.
//!
//! - [`Swarm`]: tracker and peer machines wired through a memory network ([`MemoryNet`],
//!   with latency and an uplink rate) and memory disks ([`MemoryDisk`]), plus an HTTP origin
//!   ([`MemoryOrigin`]) for cooperative fetches. `step()` jumps to the next event,
//!   `drive()` runs until nothing is in flight and no timer is due, `drive_bounded(n)`
//!   caps the steps, `drive_until(n, done)` stops when `done` holds.
//! - [`remote`]: driving one peer by hand, the test playing the remote side.
//! - [`TestFile`]: a file's bytes with its manifest.
//! - [`samples`]: one valid message of every kind; with the `arbitrary` feature,
//!   [`generate`] draws any valid message from fuzzer bytes.

mod disk;
mod files;
#[cfg(feature = "arbitrary")]
pub mod generate;
mod net;
mod origin;
pub mod remote;
mod samples;
mod swarm;

pub use disk::MemoryDisk;
pub use files::{TestFile, file_bytes};
pub use net::{LATENCY, MemoryNet, UPLOAD_BYTES_PER_S};
pub use origin::{MemoryOrigin, ORIGIN_BYTES_PER_S};
pub use samples::{cid, collection_of, manifest_of, samples};
pub use swarm::{DRIVE_STEPS_MAX, Swarm};
