//! `check_invariants`: every derived counter and index recomputed from the sessions and
//! compared with the one kept, for tests and the simulator's checkers.

use super::conns::Connections;
use super::file_record::{FileRecord, holds_any};
use super::registry::{Registry, Swarm};
use super::sessions::{Session, Sessions};
use crate::ids::{ContentId, PeerId};

/// `Err` names the first disagreement. O(all state).
pub(super) fn check(
    conns: &Connections,
    sessions: &Sessions,
    registry: &Registry,
) -> Result<(), String> {
    let mut manifest_bytes = 0;
    for (name, swarm) in registry.swarms() {
        manifest_bytes += check_swarm(sessions, name, swarm)?;
    }
    if manifest_bytes != registry.manifest_bytes() {
        return Err(format!(
            "manifest bytes {} but records cost {manifest_bytes}",
            registry.manifest_bytes()
        ));
    }
    for (peer_id, session) in sessions {
        check_session(conns, registry, *peer_id, session)?;
    }
    if !conns.deadlines_agree() {
        return Err("deadline index disagrees with the connections".to_owned());
    }
    Ok(())
}

/// One swarm: kept only while not empty, listing only its own sessions, every record's
/// counters true. `Ok` is what its records cost.
fn check_swarm(sessions: &Sessions, name: &str, swarm: &Swarm) -> Result<usize, String> {
    if swarm.is_empty() {
        return Err(format!("swarm {name:?} is empty but kept"));
    }
    for peer_id in &swarm.peers {
        if sessions.get(peer_id).is_none_or(|s| s.swarm != name) {
            return Err(format!(
                "swarm {name:?} lists {peer_id} without its session"
            ));
        }
    }
    let mut manifest_bytes = 0;
    for (content_id, record) in &swarm.files {
        manifest_bytes += FileRecord::cost(&record.manifest);
        check_record(sessions, name, swarm, *content_id, record)?;
    }
    Ok(manifest_bytes)
}

/// One record's holders and counters against a recount over the swarm's sessions.
fn check_record(
    sessions: &Sessions,
    name: &str,
    swarm: &Swarm,
    content_id: ContentId,
    record: &FileRecord,
) -> Result<(), String> {
    let mut expected = FileRecord::new(record.manifest.clone());
    for peer_id in &swarm.peers {
        let session = &sessions[peer_id];
        if let Some(chunks) = session.holdings.get(&content_id) {
            expected.holders.insert(*peer_id);
            if session.is_source() {
                expected.add_source(chunks);
            }
        }
    }
    if expected.holders.is_empty() {
        return Err(format!("{content_id} kept with no holder"));
    }
    if (
        &expected.holders,
        &expected.availability,
        expected.uncovered,
        expected.sources,
        expected.full_sources,
    ) != (
        &record.holders,
        &record.availability,
        record.uncovered,
        record.sources,
        record.full_sources,
    ) {
        return Err(format!("counters of {content_id} in {name:?} disagree"));
    }
    Ok(())
}

/// One session: on its own connection, listed in its swarm, no empty holding kept.
fn check_session(
    conns: &Connections,
    registry: &Registry,
    peer_id: PeerId,
    session: &Session,
) -> Result<(), String> {
    if conns.session_of(session.conn).flatten() != Some(peer_id) {
        return Err(format!("session {peer_id} on a connection not its own"));
    }
    if !registry
        .swarm(&session.swarm)
        .is_some_and(|s| s.peers.contains(&peer_id))
    {
        return Err(format!("session {peer_id} missing from its swarm"));
    }
    for (content_id, chunks) in &session.holdings {
        if !holds_any(chunks) {
            return Err(format!("{peer_id} keeps an empty holding of {content_id}"));
        }
    }
    Ok(())
}
