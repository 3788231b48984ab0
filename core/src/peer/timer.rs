//! The peer's timers: one [`Timer`] kind per thing that wakes the peer, and a
//! [`TimerTable`] of their deadlines indexed by kind. `poll_timeout` is the table's
//! earliest deadline; `handle_timeout` runs the kinds that are due, in [`Timer::ALL`]'s
//! order, reading each kind's deadline just before running it (an earlier kind may have
//! moved it). A new timer is a new kind here: the facade's `match`es on the kind then do not
//! compile until it says when the timer is due and what it does.
//!
//! The table is filled from the parts' own deadlines when it is needed, so no deadline is
//! kept in two places. Connections keep theirs sorted (one per connection, see `conns`),
//! and each download has one; their kinds hold the earliest.

use crate::time::Instant;

/// What wakes the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The tracker session: a reconnect, or a heartbeat.
    TrackerSession,
    /// Chunks gained are told to the tracker in a batch.
    HavesFlush,
    /// The earliest handshake, ping or idle deadline of any connection.
    Connections,
    /// The earliest deadline of any download: request timeouts, re-locates, a stall.
    Downloads,
    /// Coop ranges out with helpers, and the fetcher's own retry.
    Coop,
    /// A running fetch asks the tracker for helpers that joined since.
    HelperScan,
    /// Connections with blocks in flight are checked for progress (see `serving`).
    ServingStalls,
}

impl Timer {
    /// Every kind, in the order `handle_timeout` runs them.
    pub(crate) const ALL: [Timer; 7] = [
        Timer::TrackerSession,
        Timer::HavesFlush,
        Timer::Connections,
        Timer::Downloads,
        Timer::Coop,
        Timer::HelperScan,
        Timer::ServingStalls,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// Whether the kind runs on every wakeup, not only once its own deadline passed.
    /// Downloads check on every timer whether some needed chunk lost its last source (a
    /// scan too costly for every message), and the fetcher takes ranges freed since its
    /// last step; both are paced by the other timers.
    fn runs_on_every_wakeup(self) -> bool {
        matches!(self, Timer::Downloads | Timer::Coop)
    }

    /// Whether the kind is to run at `now`. `deadline` is asked only for kinds that wait
    /// for theirs, so a kind that runs anyway costs no deadline computation.
    pub(crate) fn is_due(self, now: Instant, deadline: impl FnOnce() -> Option<Instant>) -> bool {
        self.runs_on_every_wakeup() || deadline().is_some_and(|at| now >= at)
    }
}

/// A deadline per timer kind.
#[derive(Clone, Debug, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, deadline: Option<Instant>) {
        self.deadlines[timer.index()] = deadline;
    }

    /// The earliest deadline of any kind.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(nanos: u64) -> Instant {
        Instant::from_nanos(nanos)
    }

    #[test]
    fn kinds_index_the_table_in_order() {
        for (position, timer) in Timer::ALL.iter().enumerate() {
            assert_eq!(timer.index(), position);
        }
    }

    #[test]
    fn next_timeout_is_the_earliest_set_deadline() {
        let mut table = TimerTable::default();
        assert_eq!(table.next_timeout(), None);
        table.set(Timer::HavesFlush, Some(at(30)));
        table.set(Timer::Connections, Some(at(10)));
        table.set(Timer::HelperScan, Some(at(20)));
        assert_eq!(table.next_timeout(), Some(at(10)));
        table.set(Timer::Connections, None);
        assert_eq!(table.next_timeout(), Some(at(20)));
    }

    #[test]
    fn a_kind_is_due_once_its_deadline_passed() {
        assert!(!Timer::TrackerSession.is_due(at(9), || Some(at(10))));
        assert!(Timer::TrackerSession.is_due(at(10), || Some(at(10))));
        assert!(!Timer::HavesFlush.is_due(at(10), || None));
    }

    #[test]
    fn downloads_and_coop_run_on_every_wakeup_without_asking_their_deadline() {
        let unasked = || -> Option<Instant> { panic!("deadline asked of a kind that always runs") };
        assert!(Timer::Downloads.is_due(at(0), unasked));
        assert!(Timer::Coop.is_due(at(0), unasked));
    }
}
