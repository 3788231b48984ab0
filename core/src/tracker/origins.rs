//! Origins: holders tell the tracker which URL (and validator) a content is the file at
//! (`SetOrigin`), so a peer about to fetch that URL can ask for the content instead
//! (`FindOrigin`). Kept in each [`FileRecord`](super::file_record::FileRecord), bounded.

use super::registry::Registry;
use super::sessions::Session;
use crate::ids::ContentId;

/// Most origins remembered per file.
pub(crate) const ORIGINS_PER_FILE_MAX: usize = 16;

/// Records that a holder's content is the file at `origin`. Only a peer holding the
/// content may say so, and each file keeps a bounded number of origins.
pub(super) fn set_origin(
    registry: &mut Registry,
    session: &Session,
    content_id: ContentId,
    origin: String,
) {
    if !session.holdings.contains_key(&content_id) {
        return;
    }
    let Some(record) = registry.record_mut(&session.swarm, content_id) else {
        return;
    };
    if record.origins.len() < ORIGINS_PER_FILE_MAX {
        record.origins.insert(origin);
    }
}

/// A listed (wholly available) file of `swarm` known to be the file at `origin`.
pub(super) fn find_origin(registry: &Registry, swarm: &str, origin: &str) -> Option<ContentId> {
    registry
        .swarm(swarm)?
        .files
        .iter()
        .find(|(_, record)| record.is_complete() && record.origins.contains(origin))
        .map(|(content_id, _)| *content_id)
}
