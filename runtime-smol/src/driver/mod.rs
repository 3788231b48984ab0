//! The drivers of the two machines of `p2p_core`: each owns one machine in a smol task,
//! feeds it every event (sockets, timers, disk and HTTP completions, user commands) and
//! carries out the actions it drains from it.
//!
//! Both keep the core's drain rule the way the simulator does: after an input, every
//! queued action is drained first, then carried out; an action that fails at once (a
//! closed connection, a missing file) becomes a later input, never a call into the machine
//! while its actions are still being drained.

pub mod peer;
pub mod tracker;
