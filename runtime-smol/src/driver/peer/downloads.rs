//! The driver's side of a download: where it goes, the resume record it keeps while chunks
//! arrive, and the steps of its finishing order (`finish`) carried out with real files.

use p2p_core::{ChunkSet, ContentId};

use super::DownloadOptions;
use super::finish::{Finish, FinishStep, NOT_PREPARED_REASON};
use super::{Driver, Event, RECORD_FLUSH_INTERVAL, UserEvent};
use crate::io::record::{self, Record};
use crate::io::selection::Selection;
use crate::io::store::{Destination, PartPaths, Storage};

/// The driver's side of one download: where it goes and what is on disk.
pub(super) struct DownloadFiles {
    /// Where it goes and what it takes; an expected SHA-256 refuses other content before
    /// its part file is made.
    options: DownloadOptions,
    /// Known once the download is prepared.
    paths: Option<PartPaths>,
    /// The file's SHA-256 (hex), known with the manifest, printed once every chunk checked.
    sha256: String,
    /// Chunks verified and written, as the next record will list them.
    record: Option<Record>,
    /// Where the download is on its way to its final name.
    finish: Finish,
}

impl DownloadFiles {
    pub(super) fn new(options: DownloadOptions) -> DownloadFiles {
        DownloadFiles {
            options,
            paths: None,
            sha256: String::new(),
            record: None,
            finish: Finish::new(),
        }
    }

    /// The download's paths, once prepared.
    pub(super) fn paths(&self) -> Option<&PartPaths> {
        self.paths.as_ref()
    }

    pub(super) fn destination(&self) -> &Destination {
        &self.options.destination
    }

    /// The paths to download out of a collection, when not all.
    pub(super) fn only(&self) -> Option<&Selection> {
        self.options.only.as_ref()
    }

    /// Whether a different file already at the destination may be replaced.
    pub(super) fn force(&self) -> bool {
        self.options.force
    }

    /// Refuses content whose SHA-256 (`sha256`, lowercase hex) is not the one the user
    /// expects, if they gave one.
    pub(super) fn refuse_unexpected_sha256(&self, sha256: &str) -> Result<(), String> {
        refuse_unexpected_sha256(sha256, self.options.expected_sha256.as_deref())
    }

    /// The part file is ready: its paths, whether the final file already holds the content
    /// (`in_place`), the file's SHA-256 and the chunks already verified on disk, from which
    /// the record starts.
    pub(super) fn prepared(
        &mut self,
        content_id: ContentId,
        paths: PartPaths,
        in_place: bool,
        sha256: String,
        have: ChunkSet,
    ) {
        self.paths = Some(paths);
        self.finish.prepared(in_place);
        self.sha256 = sha256;
        self.record = Some(Record {
            content_id,
            chunks: have,
        });
    }

    /// Whether the file is on its way to its final name: a stopping peer waits for it.
    pub(super) fn is_finishing(&self) -> bool {
        self.finish.is_finishing()
    }

    /// The record to write once more as the peer stops, and where, if one is wanted (see
    /// `Finish::record_wanted_at_shutdown`).
    pub(super) fn record_wanted_at_shutdown(&self) -> Option<(Record, PartPaths)> {
        if !self.finish.record_wanted_at_shutdown() {
            return None;
        }
        Some((self.record.clone()?, self.paths.clone()?))
    }
}

/// `get --sha256 HEX`: refuses content whose SHA-256 (`sha256`, lowercase hex, from its
/// manifest) is not the one the user expects, before anything is downloaded.
fn refuse_unexpected_sha256(sha256: &str, expected: Option<&str>) -> Result<(), String> {
    match expected {
        Some(expected) if expected != sha256 => Err(format!(
            "its SHA-256 is {sha256}, not the expected {expected}; nothing was downloaded"
        )),
        _ => Ok(()),
    }
}

impl Driver {
    pub(super) fn mark_stored(&mut self, content_id: ContentId, chunk_index: u32) {
        let Some(download) = self.downloads.get_mut(&content_id) else {
            return;
        };
        if let Some(record) = &mut download.record {
            record.chunks.insert(chunk_index);
            if download.finish.chunk_stored() {
                self.next_record_flush
                    .get_or_insert_with(|| std::time::Instant::now() + RECORD_FLUSH_INTERVAL);
            }
        }
    }

    /// Rewrites the records of downloads that gained chunks, one write per download at a
    /// time. A record may lag what is on disk; it never lists a chunk not yet written.
    pub(super) fn flush_records(&mut self) {
        self.next_record_flush = None;
        for (&content_id, download) in &mut self.downloads {
            let (Some(record), Some(paths)) = (download.record.clone(), download.paths.clone())
            else {
                continue;
            };
            match download.finish.flush_due() {
                FinishStep::WriteRecord => {}
                FinishStep::FlushLater => {
                    self.next_record_flush =
                        Some(std::time::Instant::now() + RECORD_FLUSH_INTERVAL);
                    continue;
                }
                _ => continue,
            }
            let events = self.events.clone();
            smol::spawn(async move {
                let path = paths.record.clone();
                if let Err(e) = smol::unblock(move || record::write_record(&path, &record)).await {
                    tracing::warn!(record = %paths.record.display(), "cannot save the resume record: {e}");
                }
                let _ = events.send(Event::RecordSaved { content_id }).await;
            })
            .detach();
        }
    }

    /// Feeds one input to a download's finishing order and carries out the step it asks
    /// for.
    pub(super) fn finish_step(
        &mut self,
        content_id: ContentId,
        input: impl FnOnce(&mut Finish) -> FinishStep,
    ) {
        let Some(download) = self.downloads.get_mut(&content_id) else {
            return;
        };
        let step = input(&mut download.finish);
        self.carry_out(content_id, step);
    }

    /// Every chunk is stored: sync, rename (which removes the record), then give the user
    /// the file's SHA-256, computed by checking every chunk. A record write in flight is
    /// waited for first (`finish`) so it cannot recreate the record after.
    fn carry_out(&mut self, content_id: ContentId, step: FinishStep) {
        let Some(download) = self.downloads.get(&content_id) else {
            return;
        };
        let user_event = match step {
            // Record writes are started by `flush_records`, the only input asking for them.
            FinishStep::Wait | FinishStep::WriteRecord | FinishStep::FlushLater => return,
            FinishStep::Sync => {
                let (Some(paths), Some(content)) =
                    (download.paths.clone(), self.files.get(&content_id).cloned())
                else {
                    // A sync that cannot start has failed: the finishing order says so.
                    let reason = NOT_PREPARED_REASON.to_string();
                    self.finish_step(content_id, |finish| finish.synced(Err(reason)));
                    return;
                };
                let events = self.events.clone();
                smol::spawn(async move {
                    let result = smol::unblock(move || content.storage.sync(&paths)).await;
                    let _ = events.send(Event::Synced { content_id, result }).await;
                })
                .detach();
                return;
            }
            FinishStep::Rename => {
                let Some(paths) = download.paths.clone() else {
                    return;
                };
                // A collection never replaces what is at its final name, even with --force:
                // a directory of the user's is not ours to remove.
                let is_tree = self
                    .files
                    .get(&content_id)
                    .is_some_and(|content| matches!(content.storage, Storage::Tree(_)));
                let force = download.options.force && !is_tree;
                let events = self.events.clone();
                smol::spawn(async move {
                    let result =
                        smol::unblock(move || crate::io::store::rename_part(&paths, force)).await;
                    let _ = events.send(Event::Renamed { content_id, result }).await;
                })
                .detach();
                return;
            }
            FinishStep::Done => {
                let Some(paths) = &download.paths else {
                    return;
                };
                UserEvent::Downloaded {
                    content_id,
                    path: paths.final_path.clone(),
                    sha256: download.sha256.clone(),
                }
            }
            FinishStep::Fail(reason) => UserEvent::DownloadFailed { content_id, reason },
        };
        let _ = self.user.try_send(user_event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256_A: &str = "aa";
    const SHA256_B: &str = "bb";

    #[test]
    fn no_expected_sha256_accepts_any_content() {
        assert_eq!(refuse_unexpected_sha256(SHA256_A, None), Ok(()));
    }

    #[test]
    fn the_expected_sha256_is_accepted() {
        assert_eq!(refuse_unexpected_sha256(SHA256_A, Some(SHA256_A)), Ok(()));
    }

    #[test]
    fn other_content_is_refused_with_both_hashes() {
        assert_eq!(
            refuse_unexpected_sha256(SHA256_A, Some(SHA256_B)),
            Err("its SHA-256 is aa, not the expected bb; nothing was downloaded".to_string())
        );
    }
}
