//! The runtime's I/O: connections (`net`), files on disk (`store`), the block buffers both
//! share (`buffer_pool`), HTTP to an origin (`http`) and the stop signals (`signals`).
//!
//! Nothing here knows the machines' logic: these are the hands the drivers use.

pub mod buffer_pool;
pub mod http;
pub mod net;
pub mod record;
pub mod signals;
pub mod store;
