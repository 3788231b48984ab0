//! Peer exchange: peers tell each other about the other peers they know that want or hold a
//! content, so a crowd that arrives at once meshes without waiting for the tracker to list
//! them all.

use super::conns::Connections;
use super::download::{Candidate, Download};
use crate::ids::{ContentId, PeerId};
use crate::wire::{Message, PEERS_LEN_MAX};

/// Most peers named in one `PeerExchange` we send.
const PEER_EXCHANGE_MAX: usize = 32;

/// The `PeerExchange` for a peer that wants `content_id`: other peers here that want or
/// hold it. `None` when there is nobody to name.
pub(crate) fn offer(conns: &Connections, asker: PeerId, content_id: ContentId) -> Option<Message> {
    let peers: Vec<(PeerId, String)> = conns
        .sharing(content_id, asker)
        .take(PEER_EXCHANGE_MAX)
        .collect();
    (!peers.is_empty()).then_some(Message::PeerExchange { content_id, peers })
}

/// Takes the peers a remote named as candidates of a download, up to the usual bound.
pub(crate) fn take(download: &mut Download, peers: Vec<(PeerId, String)>, me: PeerId) {
    for (peer_id, addr) in peers.into_iter().take(PEERS_LEN_MAX) {
        if peer_id != me && download.candidates.len() < PEERS_LEN_MAX {
            download
                .candidates
                .entry(peer_id)
                .or_insert(Candidate { addr, chunks: None });
        }
    }
}
