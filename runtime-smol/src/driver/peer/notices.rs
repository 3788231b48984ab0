//! What the peer tells its user: the machine's notices, turned into `UserEvent`s and logs.
//! A completed download goes on to its finishing order (`finish`) first.

use p2p_core::peer::PeerNotice;

use super::{Driver, PROGRESS_BACKLOG_MAX, UserEvent};

impl Driver {
    pub(super) fn notify(&mut self, notice: PeerNotice) {
        match notice {
            PeerNotice::DownloadComplete { content_id } => {
                // A download over before the next look would remember no one.
                self.remember_peers(true);
                self.finish_step(content_id, |finish| finish.complete())
            }
            PeerNotice::DownloadFailed {
                content_id,
                reason,
                missing_chunks,
            } => {
                let reason = if missing_chunks.is_empty() {
                    reason
                } else {
                    format!(
                        "{reason}; missing chunks: {}",
                        describe_chunks(&missing_chunks)
                    )
                };
                let _ = self
                    .user
                    .try_send(UserEvent::DownloadFailed { content_id, reason });
            }
            PeerNotice::FetchComplete { job_id } | PeerNotice::FetchFailed { job_id, .. } => {
                self.fetch_files.remove(&job_id);
                let _ = self.user.try_send(UserEvent::Notice(notice));
            }
            PeerNotice::Progress { .. } | PeerNotice::FetchProgress { .. } => {
                if self.user.len() < PROGRESS_BACKLOG_MAX {
                    let _ = self.user.try_send(UserEvent::Notice(notice));
                }
            }
            other => {
                match &other {
                    PeerNotice::TrackerConnected { addr } => {
                        tracing::info!(%addr, "tracker connected")
                    }
                    PeerNotice::TrackerLost { addr } => tracing::warn!(%addr, "tracker lost"),
                    PeerNotice::PeerBanned {
                        content_id,
                        peer_id,
                        addr,
                    } => {
                        tracing::warn!(%content_id, %peer_id, %addr, "peer banned: it sent a chunk that failed its hash")
                    }
                    _ => {}
                }
                let _ = self.user.try_send(UserEvent::Notice(other));
            }
        }
    }
}

/// "3 (0, 5, 9)" or "120 (0, 1, 2, …)": enough to say which, short enough to read.
fn describe_chunks(chunks: &[u32]) -> String {
    const SHOWN: usize = 8;
    let mut shown: Vec<String> = chunks.iter().take(SHOWN).map(u32::to_string).collect();
    if chunks.len() > SHOWN {
        shown.push("…".into());
    }
    format!("{} ({})", chunks.len(), shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_chunks_shows_a_few_then_an_ellipsis() {
        assert_eq!(describe_chunks(&[0, 5, 9]), "3 (0, 5, 9)");
        let many: Vec<u32> = (0..120).collect();
        assert_eq!(describe_chunks(&many), "120 (0, 1, 2, 3, 4, 5, 6, 7, …)");
    }
}
