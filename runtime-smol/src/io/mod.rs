//! The runtime's I/O: connections (`net`), the sockets they are accepted on (`bind`) and
//! how many a listener keeps (`conn_limits`), which of several addresses answers first
//! (`first_answer`),
//! their secure sessions (`secure`), the
//! reading of their records (`record_reader`) and their bounded send queues
//! (`send_queue`), keys and secret files (`keys`), the machines' clock and seeds
//! (`clock`), the upload cap (`rate_limit`), files on disk (`store`), a download's resume
//! record (`record`) and how both are opened without following planted links
//! (`no_follow`), this host's addresses others may dial (`interfaces`), LAN discovery
//! of a swarm's trackers (`mdns`), the swarm members met in earlier runs (`address_book`), the block buffers sockets and files share (`buffer_pool`), HTTP to an
//! origin (`http`) and what a helper may fetch from one (`origin_policy`), and the stop
//! signals (`signals`).
//!
//! A collection's files are `tree`, hashed by `tree_hash`; `selection` is the paths
//! `get --only` picks.
//!
//! Nothing here knows the machines' logic: these are the hands the drivers use.

pub mod address_book;
pub mod bind;
pub mod buffer_pool;
pub mod clock;
pub mod conn_limits;
pub mod first_answer;
pub mod http;
pub mod interfaces;
pub mod keys;
pub mod mdns;
pub mod net;
pub mod no_follow;
pub mod origin_policy;
pub mod rate_limit;
pub mod record;
pub mod record_reader;
pub mod secure;
pub mod selection;
pub mod send_queue;
pub mod signals;
pub mod store;
pub mod tree;
pub mod tree_hash;
