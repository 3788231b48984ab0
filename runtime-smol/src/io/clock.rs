//! The clock the machines are given (nanoseconds since the process started, as
//! `p2p_core::Instant`), their deadlines as smol timers, and the random seeds they start
//! from.

use std::sync::OnceLock;
use std::time::Duration;

use smol::Timer;

fn epoch() -> std::time::Instant {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    *START.get_or_init(std::time::Instant::now)
}

/// Now, as the machines count time: nanoseconds since the process started.
pub fn now() -> p2p_core::Instant {
    let nanos = u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX);
    p2p_core::Instant::from_nanos(nanos)
}

/// A machine deadline as a timer. `None` (or a deadline past any real time) never fires.
pub fn timer_for(deadline: Option<p2p_core::Instant>) -> Timer {
    match deadline {
        Some(at) => match epoch().checked_add(Duration::from_nanos(at.as_nanos())) {
            Some(at) => Timer::at(at),
            None => Timer::never(),
        },
        None => Timer::never(),
    }
}

/// A random 64-bit value from the OS-seeded hasher keys std keeps: enough for a peer id or
/// a machine's RNG seed, without another dependency.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one((std::process::id(), now().as_nanos()))
}
