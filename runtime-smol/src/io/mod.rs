//! The runtime's I/O: connections (`net`) and their secure sessions (`secure`), keys and
//! secret files (`keys`), the machines' clock and seeds (`clock`), the
//! upload cap (`rate_limit`), files on disk (`store`) and a download's resume record
//! (`record`), the block buffers sockets and files share (`buffer_pool`), HTTP to an
//! origin (`http`) and what a helper may fetch from one (`origin_policy`), and the stop
//! signals (`signals`).
//!
//! Nothing here knows the machines' logic: these are the hands the drivers use.

pub mod buffer_pool;
pub mod clock;
pub mod http;
pub mod keys;
pub mod net;
pub mod origin_policy;
pub mod rate_limit;
pub mod record;
pub mod secure;
pub mod signals;
pub mod store;
