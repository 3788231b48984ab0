//! Answers to a session's queries: `ListFiles`, `ListPeers`, `GetManifest`, and `Locate`
//! with its seeded sampling of sources. Every list is cut to fit one frame.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::file_record::FileRecord;
use super::frame::{
    FILE_LIST_HEADER_LEN, LOCATED_HEADER_LEN, PEER_LIST_HEADER_LEN, file_entry_len,
    peer_chunks_len, peer_entry_len, truncate_to_frame,
};
use super::registry::Registry;
use super::sessions::Sessions;
use crate::ids::{ContentId, PeerId};
use crate::listed_addr::as_reached_at;
use crate::time::Instant;
use crate::wire::{LIST_LEN_MAX, Message, PEERS_LEN_MAX, PeerChunks, PeerEntry};

/// `FileList` for an asker in `swarm` (none: an empty list).
pub(super) fn file_list(registry: &Registry, swarm: Option<&str>) -> Message {
    let mut files = swarm.map_or_else(Vec::new, |s| registry.files(s));
    truncate_to_frame(
        &mut files,
        LIST_LEN_MAX,
        FILE_LIST_HEADER_LEN,
        file_entry_len,
    );
    Message::FileList { files }
}

/// `PeerList` for an asker in `swarm` (none: an empty list) whose connection arrived at
/// `reached_ip` (see `as_reached_at`).
pub(super) fn peer_list(
    now: Instant,
    sessions: &Sessions,
    registry: &Registry,
    swarm: Option<&str>,
    reached_ip: &str,
) -> Message {
    let mut peers = swarm.map_or_else(Vec::new, |s| peers(now, sessions, registry, s));
    for peer in &mut peers {
        peer.listen_addr = as_reached_at(&peer.listen_addr, reached_ip);
    }
    truncate_to_frame(
        &mut peers,
        LIST_LEN_MAX,
        PEER_LIST_HEADER_LEN,
        peer_entry_len,
    );
    Message::PeerList { peers }
}

/// `ManifestReply`, or `NotFound` when no live peer of `swarm` holds the content.
pub(super) fn manifest_reply(
    registry: &Registry,
    swarm: Option<&str>,
    content_id: ContentId,
) -> Message {
    match swarm.and_then(|s| registry.manifest(s, content_id)) {
        Some(manifest) => Message::ManifestReply {
            manifest: manifest.clone(),
        },
        None => Message::NotFound { content_id },
    }
}

/// The peers of `swarm` that `ListPeers` lists (those with a listen address), by peer id.
/// Not truncated to a frame.
pub(super) fn peers(
    now: Instant,
    sessions: &Sessions,
    registry: &Registry,
    swarm: &str,
) -> Vec<PeerEntry> {
    let Some(s) = registry.swarm(swarm) else {
        return Vec::new();
    };
    s.peers
        .iter()
        .filter_map(|peer_id| {
            let session = sessions.get(peer_id)?;
            session.is_source().then(|| PeerEntry {
                peer_id: *peer_id,
                listen_addr: session.listen_addr.clone(),
                files: u32::try_from(session.holdings.len()).unwrap_or(u32::MAX),
                chunks_held: session
                    .holdings
                    .values()
                    .map(|c| u64::from(c.count()))
                    .sum(),
                uploaded_bytes: session.uploaded_bytes,
                downloaded_bytes: session.downloaded_bytes,
                last_seen_ms_ago: u64::try_from(
                    now.saturating_since(session.last_seen).as_millis(),
                )
                .unwrap_or(u64::MAX),
            })
        })
        .collect()
}

/// Where `Locate` looks and how many it may answer with.
pub(super) struct LocateCtx<'a> {
    pub(super) rng: &'a mut ChaCha8Rng,
    pub(super) sessions: &'a Sessions,
    pub(super) registry: &'a Registry,
    /// `locate_peers_max` from the config.
    pub(super) peers_max: usize,
    /// The local IP the asker's connection arrived at (see `as_reached_at`).
    pub(super) reached_ip: &'a str,
}

/// Up to `locate_peers_max` live sources of the asker's swarm holding a chunk of
/// `content_id`, the asker excluded. When there are more, a random sample that gives
/// half the places to full sources (they can serve any chunk) and half to partial
/// holders (spreads load off the seeders, which is how a swarm scales); places one side
/// cannot fill go to the other.
pub(super) fn locate(ctx: LocateCtx<'_>, asker: PeerId, content_id: ContentId) -> Vec<PeerChunks> {
    let record = ctx
        .sessions
        .get(&asker)
        .and_then(|s| ctx.registry.record(&s.swarm, content_id));
    let (full, partial) = record.map_or_else(Default::default, |record| {
        sources(ctx.sessions, record, asker, content_id)
    });
    let max = ctx.peers_max.min(PEERS_LEN_MAX);
    let chosen = sample(ctx.rng, max, full, partial);
    let mut peers: Vec<PeerChunks> = chosen
        .into_iter()
        .filter_map(|peer_id| {
            let session = ctx.sessions.get(&peer_id)?;
            Some(PeerChunks {
                peer_id,
                listen_addr: as_reached_at(&session.listen_addr, ctx.reached_ip),
                chunks: session.holdings.get(&content_id)?.clone(),
            })
        })
        .collect();
    truncate_to_frame(
        &mut peers,
        PEERS_LEN_MAX,
        LOCATED_HEADER_LEN,
        peer_chunks_len,
    );
    peers
}

/// The record's holders that can serve (sources), the asker excluded: full ones, then
/// partial ones, by peer id.
fn sources(
    sessions: &Sessions,
    record: &FileRecord,
    asker: PeerId,
    content_id: ContentId,
) -> (Vec<PeerId>, Vec<PeerId>) {
    let mut full = Vec::new();
    let mut partial = Vec::new();
    for &peer_id in &record.holders {
        if peer_id == asker {
            continue;
        }
        let Some(session) = sessions.get(&peer_id) else {
            continue;
        };
        let Some(chunks) = session.holdings.get(&content_id) else {
            continue;
        };
        if !session.is_source() {
            continue;
        }
        if chunks.is_full() {
            full.push(peer_id);
        } else {
            partial.push(peer_id);
        }
    }
    (full, partial)
}

/// At most `max` of the sources, half full and half partial where both sides can fill
/// their half, in random order.
fn sample(
    rng: &mut ChaCha8Rng,
    max: usize,
    mut full: Vec<PeerId>,
    mut partial: Vec<PeerId>,
) -> Vec<PeerId> {
    shuffle(rng, &mut full);
    shuffle(rng, &mut partial);
    let full_take = full
        .len()
        .min(max.div_ceil(2).max(max.saturating_sub(partial.len())));
    let partial_take = partial.len().min(max - full_take);
    full.truncate(full_take);
    full.extend_from_slice(&partial[..partial_take]);
    let mut chosen = full;
    // Mix full and partial so a client that tries peers in order spreads its load.
    shuffle(rng, &mut chosen);
    chosen
}

/// Fisher–Yates with the tracker's seeded RNG (deterministic for the simulator).
fn shuffle<T>(rng: &mut ChaCha8Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
}
