//! What a checker reports: a broken property (a [`Violation`]), its [`FailureKind`] (which
//! decides the exit code), and the bounded list a run collects. The checkers themselves are
//! in `world/` (`safety.rs`, `liveness.rs`, `recovery.rs`), one per property, outside the
//! machines, reading only what a driver or an observer could see (the disks, the network,
//! the machines' inspection methods).

use std::fmt;

use crate::event_queue::{NANOS_PER_S, Nanos};

/// What kind of property broke. Ordered by how bad it is: the worst decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureKind {
    /// A machine panicked or livelocked, or the simulator itself broke.
    Crash,
    Safety,
    Liveness,
    Recovery,
}

impl FailureKind {
    /// Exit codes are distinct per kind (2 is kept for usage errors).
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::Crash => 1,
            FailureKind::Safety => 3,
            FailureKind::Liveness => 4,
            FailureKind::Recovery => 5,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Crash => "crash",
            FailureKind::Safety => "safety",
            FailureKind::Liveness => "liveness",
            FailureKind::Recovery => "recovery",
        }
    }
}

/// One broken property, with the virtual time it was seen at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: FailureKind,
    pub at: Nanos,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{} at t={:.6}s] {}",
            self.kind.name(),
            self.at as f64 / NANOS_PER_S as f64,
            self.message
        )
    }
}

/// Collected violations. Only the first few of each kind are kept: one is enough to fail,
/// and a broken invariant tends to break a thousand times.
#[derive(Default)]
pub struct Violations {
    list: Vec<Violation>,
    dropped: u64,
}

const VIOLATIONS_KEPT_MAX: usize = 20;

impl Violations {
    pub fn push(&mut self, kind: FailureKind, at: Nanos, message: String) {
        if self.list.len() >= VIOLATIONS_KEPT_MAX {
            self.dropped += 1;
            return;
        }
        self.list.push(Violation { kind, at, message });
    }

    pub fn has(&self, kind: FailureKind) -> bool {
        self.list.iter().any(|v| v.kind == kind)
    }

    pub fn into_list(self) -> (Vec<Violation>, u64) {
        (self.list, self.dropped)
    }
}
