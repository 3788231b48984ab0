//! The user's end of a running peer: commands go in as events of the peer task, and its
//! outcome comes back as `UserEvent`s.

use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;

use p2p_core::peer::FetchSpec;
use p2p_core::{ChunkSet, ContentId, Manifest, PeerId};
use smol::Task;
use smol::channel::{Receiver, Sender};

use super::{Event, PeerStats, UserEvent};
use crate::io::selection::Selection;
use crate::io::store::{Destination, Storage};

/// Where a download goes and what it takes.
#[derive(Clone, Debug)]
pub struct DownloadOptions {
    pub destination: Destination,
    /// Replace a different file at the destination.
    pub force: bool,
    /// The file's SHA-256 the user expects (lowercase hex): other content is refused.
    pub expected_sha256: Option<String>,
    /// The paths to download out of a collection (`get --only`); `None`: all.
    pub only: Option<Selection>,
    /// Peers of the swarm met in earlier runs, dialled at once (when no tracker answers).
    pub known_peers: Vec<(PeerId, String)>,
}

impl DownloadOptions {
    /// The whole content into `destination`, nothing replaced, no expected hash.
    pub fn into(destination: Destination) -> DownloadOptions {
        DownloadOptions {
            destination,
            force: false,
            expected_sha256: None,
            only: None,
            known_peers: Vec::new(),
        }
    }
}

/// The user's end of a running peer.
pub struct PeerHandle {
    pub(super) events: Sender<Event>,
    pub user_events: Receiver<UserEvent>,
    /// The address other peers reach this one at, when it listens.
    pub listen_addr: Option<SocketAddr>,
    pub(super) task: Task<PeerStats>,
}

impl PeerHandle {
    /// Starts serving a complete file, already open.
    pub async fn publish(&self, manifest: Manifest, storage: Storage) {
        let _ = self.events.send(Event::Publish { manifest, storage }).await;
    }

    /// Starts a download; its outcome arrives as a `UserEvent`.
    pub async fn download(
        &self,
        content_id: ContentId,
        manifest: Option<Manifest>,
        options: DownloadOptions,
    ) {
        let command = Event::Download {
            content_id,
            manifest,
            options: Box::new(options),
        };
        let _ = self.events.send(command).await;
    }

    /// Starts a cooperative origin download into `file` (the preallocated `NAME.part`);
    /// returns its job id, which the `Fetch*` notices carry.
    pub async fn fetch(
        &self,
        spec: FetchSpec,
        file: Arc<File>,
        on_disk: Option<ChunkSet>,
    ) -> anyhow::Result<u64> {
        let (reply, job_id) = smol::channel::bounded(1);
        self.events
            .send(Event::Fetch {
                spec,
                file,
                on_disk,
                reply,
            })
            .await
            .map_err(|_| anyhow::anyhow!("the peer stopped"))?;
        job_id
            .recv()
            .await
            .map_err(|_| anyhow::anyhow!("the peer stopped"))
    }

    /// Stops a cooperative download; helpers are told.
    pub async fn cancel_fetch(&self, job_id: u64) {
        let _ = self.events.send(Event::CancelFetch { job_id }).await;
    }

    /// Tells the tracker that a published content is the file at `origin` ("URL validator").
    pub async fn set_origin(&self, content_id: ContentId, origin: String) {
        let _ = self
            .events
            .send(Event::SetOrigin { content_id, origin })
            .await;
    }

    /// Says goodbye to the tracker and peers, saves resume records, and stops.
    pub async fn shutdown(self) -> PeerStats {
        let _ = self.events.send(Event::Shutdown).await;
        self.task.await
    }
}
