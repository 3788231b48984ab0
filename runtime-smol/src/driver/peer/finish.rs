//! The finishing order of one download, as a pure state machine: which step the driver
//! carries out next so that a finished file is durable before it has its final name, and a
//! resume record never lists a chunk the part file lost.
//!
//! The order: chunks are stored and recorded while the download runs (the record is
//! rewritten at most once per flush, one write at a time); once every chunk is stored, a
//! record write still in flight is waited for (else it could recreate the record after the
//! rename removed it), then the part file is synced, then renamed to its final name. A file
//! already in place with the right content needs neither.
//!
//! No I/O here: the driver feeds inputs (`complete`, `record_written`, `synced`, ...) and
//! carries out the [`FinishStep`] each returns, reporting its outcome as the next input.

/// What the driver does next for one download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinishStep {
    /// Nothing until the next input.
    Wait,
    /// Write the resume record now, then call [`Finish::record_written`] (whether or not
    /// the write worked: a record is only a hint, re-verified on resume).
    WriteRecord,
    /// A record write is in flight: ask again at a later flush.
    FlushLater,
    /// Sync the part file, then call [`Finish::synced`].
    Sync,
    /// Rename the synced part file to its final name, then call [`Finish::renamed`].
    Rename,
    /// The file is complete, durable and under its final name: tell the user.
    Done,
    /// The download cannot finish: tell the user why.
    Fail(String),
}

/// Where a download is on its way to its final name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No part file yet (or none of ours: the content may already be complete here).
    Preparing,
    /// Chunks arrive and are recorded.
    Downloading,
    /// Every chunk is stored; a record write is in flight and must land first.
    WaitingForRecord,
    Syncing,
    Renaming,
    Done,
    Failed,
}

/// The finishing state of one download.
#[derive(Clone, Debug)]
pub struct Finish {
    phase: Phase,
    /// The final file already holds exactly this content: nothing to sync or rename.
    in_place: bool,
    /// Chunks were stored since the record was last written.
    record_dirty: bool,
    record_write_in_flight: bool,
}

/// Why a download that has no part file of ours cannot be finished by us.
pub const NOT_PREPARED_REASON: &str = "the content was already complete here";

impl Default for Finish {
    fn default() -> Self {
        Finish::new()
    }
}

impl Finish {
    /// A download whose part file is not prepared yet.
    pub fn new() -> Finish {
        Finish {
            phase: Phase::Preparing,
            in_place: false,
            record_dirty: false,
            record_write_in_flight: false,
        }
    }

    /// The part file (or, `in_place`, the final file) is ready and its record written.
    pub fn prepared(&mut self, in_place: bool) {
        if self.phase == Phase::Preparing {
            self.phase = Phase::Downloading;
            self.in_place = in_place;
        }
    }

    /// Whether the record has a part file to describe.
    fn is_prepared(&self) -> bool {
        self.phase != Phase::Preparing
    }

    /// Whether the file is being (or has been) synced and renamed: the record is done with.
    fn is_finalizing(&self) -> bool {
        matches!(
            self.phase,
            Phase::Syncing | Phase::Renaming | Phase::Done | Phase::Failed
        )
    }

    /// A chunk was stored. Returns whether the record now needs a flush (it does not
    /// before the download is prepared: there is no record to update yet).
    pub fn chunk_stored(&mut self) -> bool {
        if !self.is_prepared() {
            return false;
        }
        self.record_dirty = true;
        true
    }

    /// The flush timer fired: write the record if it changed and no write is in flight.
    pub fn flush_due(&mut self) -> FinishStep {
        if !self.record_dirty || self.is_finalizing() || !self.is_prepared() {
            return FinishStep::Wait;
        }
        if self.record_write_in_flight {
            return FinishStep::FlushLater;
        }
        self.record_dirty = false;
        self.record_write_in_flight = true;
        FinishStep::WriteRecord
    }

    /// The record write asked for ended (written or failed).
    pub fn record_written(&mut self) -> FinishStep {
        self.record_write_in_flight = false;
        if self.phase == Phase::WaitingForRecord {
            self.phase = Phase::Downloading;
            return self.complete();
        }
        FinishStep::Wait
    }

    /// Every chunk is stored.
    pub fn complete(&mut self) -> FinishStep {
        match self.phase {
            Phase::Preparing => {
                self.phase = Phase::Failed;
                FinishStep::Fail(NOT_PREPARED_REASON.to_string())
            }
            Phase::Downloading if self.record_write_in_flight => {
                self.phase = Phase::WaitingForRecord;
                FinishStep::Wait
            }
            Phase::Downloading if self.in_place => {
                self.phase = Phase::Done;
                FinishStep::Done
            }
            Phase::Downloading => {
                self.phase = Phase::Syncing;
                FinishStep::Sync
            }
            // Already on its way (or finished): a repeated notice changes nothing.
            Phase::WaitingForRecord
            | Phase::Syncing
            | Phase::Renaming
            | Phase::Done
            | Phase::Failed => FinishStep::Wait,
        }
    }

    /// The sync asked for ended.
    pub fn synced(&mut self, result: Result<(), String>) -> FinishStep {
        if self.phase != Phase::Syncing {
            return FinishStep::Wait;
        }
        match result {
            Ok(()) => {
                self.phase = Phase::Renaming;
                FinishStep::Rename
            }
            Err(reason) => {
                self.phase = Phase::Failed;
                FinishStep::Fail(reason)
            }
        }
    }

    /// The rename asked for ended.
    pub fn renamed(&mut self, result: Result<(), String>) -> FinishStep {
        if self.phase != Phase::Renaming {
            return FinishStep::Wait;
        }
        match result {
            Ok(()) => {
                self.phase = Phase::Done;
                FinishStep::Done
            }
            Err(reason) => {
                self.phase = Phase::Failed;
                FinishStep::Fail(reason)
            }
        }
    }

    /// Whether the file is on its way to its final name (waiting for its last record
    /// write, syncing or renaming): a peer that stops lets it get there first, so that a
    /// download that completed is never left as a part file.
    pub fn is_finishing(&self) -> bool {
        matches!(
            self.phase,
            Phase::WaitingForRecord | Phase::Syncing | Phase::Renaming
        )
    }

    /// Whether the record should be written once more as the peer stops: not while a
    /// write is in flight (two writers), and not once the file is being finalized (it
    /// would recreate a record the rename removes).
    pub fn record_wanted_at_shutdown(&self) -> bool {
        self.is_prepared() && !self.is_finalizing() && !self.record_write_in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn downloading() -> Finish {
        let mut finish = Finish::new();
        finish.prepared(false);
        finish
    }

    /// A download with a record write in flight.
    fn writing_record() -> Finish {
        let mut finish = downloading();
        assert!(finish.chunk_stored());
        assert_eq!(finish.flush_due(), FinishStep::WriteRecord);
        finish
    }

    #[test]
    fn complete_with_no_write_in_flight_syncs_then_renames() {
        let mut finish = downloading();
        assert!(finish.record_wanted_at_shutdown());
        assert!(!finish.is_finishing());
        assert_eq!(finish.complete(), FinishStep::Sync);
        assert!(!finish.record_wanted_at_shutdown());
        assert!(finish.is_finishing(), "a stopping peer waits for the sync");
        assert_eq!(finish.synced(Ok(())), FinishStep::Rename);
        assert!(
            finish.is_finishing(),
            "a stopping peer waits for the rename"
        );
        assert_eq!(finish.renamed(Ok(())), FinishStep::Done);
        assert!(!finish.record_wanted_at_shutdown());
        assert!(!finish.is_finishing());
    }

    #[test]
    fn complete_during_a_record_write_waits_for_it() {
        let mut finish = writing_record();
        assert_eq!(finish.complete(), FinishStep::Wait);
        assert!(
            finish.is_finishing(),
            "a stopping peer waits for the record write"
        );
        assert!(
            !finish.record_wanted_at_shutdown(),
            "a write is in flight: no second writer"
        );
        // A repeated notice while waiting starts nothing.
        assert_eq!(finish.complete(), FinishStep::Wait);
        assert_eq!(finish.record_written(), FinishStep::Sync);
        assert_eq!(finish.synced(Ok(())), FinishStep::Rename);
        assert_eq!(finish.renamed(Ok(())), FinishStep::Done);
    }

    #[test]
    fn a_failed_record_write_still_lets_the_file_finish() {
        // The driver reports a failed write as written: the record is only a hint.
        let mut finish = writing_record();
        assert_eq!(finish.complete(), FinishStep::Wait);
        assert!(
            finish.is_finishing(),
            "a stopping peer waits for the record write"
        );
        assert_eq!(finish.record_written(), FinishStep::Sync);
    }

    #[test]
    fn record_write_ending_before_complete_changes_nothing() {
        let mut finish = writing_record();
        assert_eq!(finish.record_written(), FinishStep::Wait);
        assert_eq!(finish.complete(), FinishStep::Sync);
    }

    #[test]
    fn flushes_write_only_changed_records_one_at_a_time() {
        let mut finish = downloading();
        assert_eq!(finish.flush_due(), FinishStep::Wait, "nothing changed");
        assert!(finish.chunk_stored());
        assert_eq!(finish.flush_due(), FinishStep::WriteRecord);
        assert_eq!(finish.flush_due(), FinishStep::Wait, "nothing new since");
        assert!(finish.chunk_stored());
        assert_eq!(
            finish.flush_due(),
            FinishStep::FlushLater,
            "one write at a time"
        );
        assert_eq!(finish.record_written(), FinishStep::Wait);
        assert_eq!(finish.flush_due(), FinishStep::WriteRecord);
    }

    #[test]
    fn chunks_stored_during_a_waited_write_are_not_flushed_after_the_sync_starts() {
        let mut finish = writing_record();
        assert!(finish.chunk_stored());
        assert_eq!(finish.complete(), FinishStep::Wait);
        assert_eq!(finish.flush_due(), FinishStep::FlushLater);
        assert_eq!(finish.record_written(), FinishStep::Sync);
        assert_eq!(finish.flush_due(), FinishStep::Wait);
        assert!(finish.chunk_stored());
        assert_eq!(finish.flush_due(), FinishStep::Wait);
    }

    #[test]
    fn before_preparation_nothing_is_recorded_and_completion_fails() {
        let mut finish = Finish::new();
        assert!(!finish.chunk_stored());
        assert_eq!(finish.flush_due(), FinishStep::Wait);
        assert!(!finish.record_wanted_at_shutdown(), "no record to write");
        assert_eq!(
            finish.complete(),
            FinishStep::Fail(NOT_PREPARED_REASON.to_string())
        );
        assert_eq!(finish.complete(), FinishStep::Wait, "reported once");
    }

    #[test]
    fn in_place_content_is_done_without_sync_or_rename() {
        let mut finish = Finish::new();
        finish.prepared(true);
        assert_eq!(finish.complete(), FinishStep::Done);
        assert_eq!(finish.synced(Ok(())), FinishStep::Wait);
        assert_eq!(finish.renamed(Ok(())), FinishStep::Wait);
    }

    #[test]
    fn a_failed_sync_fails_without_a_rename() {
        let mut finish = downloading();
        assert_eq!(finish.complete(), FinishStep::Sync);
        assert_eq!(
            finish.synced(Err("disk full".into())),
            FinishStep::Fail("disk full".into())
        );
        assert_eq!(finish.renamed(Ok(())), FinishStep::Wait);
        assert_eq!(finish.complete(), FinishStep::Wait);
        assert!(!finish.record_wanted_at_shutdown());
        assert!(
            !finish.is_finishing(),
            "a stopping peer does not wait for a failure"
        );
    }

    #[test]
    fn a_failed_rename_fails() {
        let mut finish = downloading();
        assert_eq!(finish.complete(), FinishStep::Sync);
        assert_eq!(finish.synced(Ok(())), FinishStep::Rename);
        assert_eq!(
            finish.renamed(Err("appeared".into())),
            FinishStep::Fail("appeared".into())
        );
        assert_eq!(finish.record_written(), FinishStep::Wait);
    }

    #[test]
    fn out_of_order_reports_are_ignored() {
        let mut finish = downloading();
        assert_eq!(finish.synced(Ok(())), FinishStep::Wait);
        assert_eq!(finish.renamed(Ok(())), FinishStep::Wait);
        assert_eq!(finish.complete(), FinishStep::Sync);
        assert_eq!(finish.renamed(Ok(())), FinishStep::Wait, "not synced yet");
        assert_eq!(finish.synced(Ok(())), FinishStep::Rename);
        assert_eq!(finish.synced(Ok(())), FinishStep::Wait, "synced once");
        assert_eq!(finish.renamed(Ok(())), FinishStep::Done);
    }
}
