//! The subcommands of `p2p`, one file each (`ls` and `peers` share `query`), and what
//! several of them use: the one-shot tracker client, finding a swarm to ask
//! (`find_swarm`) and the progress display.
//!
//! A command turns its validated arguments into work for the drivers (`crate::driver`) and
//! says what happened; it never touches a machine of `p2p_core` itself.

pub mod demo;
pub mod fetch;
pub mod find_swarm;
pub mod get;
pub mod helper;
pub mod progress;
pub mod query;
pub mod share;
pub mod tracker;
pub mod tracker_client;
