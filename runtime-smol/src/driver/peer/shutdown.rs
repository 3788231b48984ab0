//! Stopping a peer politely: goodbyes to the tracker and peers, chunk writes in flight
//! finished and recorded, completed downloads synced and renamed, resume records saved, and a moment for the goodbyes to leave.

use p2p_core::peer::StoreOutcome;
use smol::channel::Receiver;
use smol::{Timer, future};

use super::{Driver, Event, PeerStats, SHUTDOWN_GRACE};
use crate::io::{clock, record};

impl Driver {
    /// Goodbye to everyone, let chunk writes in flight finish (and record them), save the
    /// records, and give the writers a moment to send the goodbyes.
    pub(super) async fn shutdown(mut self, events: &Receiver<Event>) -> PeerStats {
        self.peer.shutdown(clock::now());
        self.drain();
        let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
        while self.stores_in_flight > 0 || self.downloads.values().any(|d| d.is_finishing()) {
            let next = future::or(async { events.recv().await.ok() }, async {
                Timer::at(deadline).await;
                None
            })
            .await;
            match next {
                Some(Event::StoreDone {
                    content_id,
                    chunk_index,
                    outcome,
                    ..
                }) => {
                    self.stores_in_flight -= 1;
                    if outcome == StoreOutcome::Stored {
                        self.mark_stored(content_id, chunk_index);
                    }
                }
                // A completed download still gets its sync and rename.
                Some(Event::RecordSaved { content_id }) => {
                    self.finish_step(content_id, |finish| finish.record_written())
                }
                Some(Event::Synced { content_id, result }) => {
                    self.finish_step(content_id, |finish| finish.synced(result))
                }
                Some(Event::Renamed { content_id, result }) => {
                    self.finish_step(content_id, |finish| finish.renamed(result))
                }
                Some(_) => {}
                None => break,
            }
        }
        for download in self.downloads.values() {
            if let Some((record, paths)) = download.record_wanted_at_shutdown() {
                let _ = smol::unblock(move || record::write_record(&paths.record, &record)).await;
            }
        }
        for (_, handle) in self.conns.drain() {
            self.closing.push(handle.close());
        }
        let writers = std::mem::take(&mut self.closing);
        future::or(
            async {
                for writer in writers {
                    writer.wait().await;
                }
            },
            async {
                Timer::at(deadline).await;
            },
        )
        .await;
        PeerStats {
            uploaded_bytes: self.peer.uploaded_bytes(),
            downloaded_bytes: self.peer.downloaded_bytes(),
        }
    }
}
