//! `p2p ls` and `p2p peers`: what a tracker of the swarm knows, as a table or JSON lines.
//! The swarm is named by a ticket or a secret file; its tracker is found by `find_swarm`.

use std::process::ExitCode;

use indicatif::HumanBytes;
use p2p_core::collection::{EntryKind, FileTable};
use p2p_core::secure::SwarmSecret;
use p2p_core::{ContentId, PeerId};
use serde_json::json;

use crate::UsageError;
use crate::cli::{DEFAULT_TRACKER_ADDR, QueryArgs};
use crate::commands::progress::print_json;
use crate::commands::{find_swarm, tracker_client};
use crate::io::keys;

/// The swarm to ask about and the tracker of it that answered: the ticket's secret and
/// addresses (after `--tracker`), or `--secret-file` and `--tracker` (127.0.0.1:7070 by
/// default); a tracker found on the LAN when none of those answers.
async fn find(args: &QueryArgs) -> anyhow::Result<(SwarmSecret, String)> {
    let given: Vec<String> = args.tracker.iter().cloned().collect();
    let (secret, trackers, source) = match (&args.ticket, &args.secret_file) {
        (Some(_), Some(_)) => {
            return Err(UsageError(
                "a ticket carries its swarm's secret: pass the ticket or --secret-file, not both"
                    .into(),
            )
            .into());
        }
        (Some(text), None) => {
            let ticket = find_swarm::parse_ticket(text.trim())?;
            let mut trackers = given;
            for addr in &ticket.trackers {
                if !trackers.contains(addr) {
                    trackers.push(addr.clone());
                }
            }
            let source = if args.tracker.is_some() {
                "given"
            } else {
                "in the ticket"
            };
            (ticket.secret, trackers, source)
        }
        (None, Some(path)) => {
            let trackers = if given.is_empty() {
                vec![DEFAULT_TRACKER_ADDR.to_string()]
            } else {
                given
            };
            (keys::read_one_secret(path)?, trackers, "given")
        }
        (None, None) => {
            return Err(UsageError(
                "which swarm? pass a ticket from `p2p share`, or --secret-file FILE (and \
                 --tracker ADDR) for a swarm of your own"
                    .into(),
            )
            .into());
        }
    };
    if trackers.is_empty() {
        return Err(UsageError(
            "the ticket lists no address: pass --tracker ADDR, the swarm's tracker".into(),
        )
        .into());
    }
    let tracker = find_swarm::find_tracker(&trackers, &secret, args.no_mdns, source).await?;
    Ok((secret, tracker))
}

pub async fn ls(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let (secret, tracker) = find(&args).await?;
    let (tracker, secret, json) = (tracker.as_str(), &secret, args.json);
    let files = tracker_client::list_files(tracker, secret).await?;
    if json {
        for f in &files {
            let mut line = json!({
                "content_id": f.content_id.to_string(),
                "name": f.name,
                "size": f.size,
                "chunk_size": f.chunk_size,
                "chunk_count": f.chunk_count,
                "full_sources": f.full_sources,
                "peers": f.peers,
                "complete": f.complete,
            });
            if let Some(tree) = f.tree {
                line["files"] = json!(tree.files);
                line["files_size"] = json!(tree.size);
                line["paths"] = paths(tracker, secret, f.content_id).await;
            }
            print_json(&line);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if files.is_empty() {
        eprintln!("tracker {tracker} lists no files in swarm {}", secret.tag());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<32} {:>11} {:>7} {:>7} {:>8} {:>6} {:<9} CONTENT_ID",
        "NAME", "SIZE", "FILES", "CHUNKS", "SOURCES", "PEERS", "COMPLETE"
    );
    for f in &files {
        // A collection shows its files' size, each copy counted: what it takes on disk.
        let (name, size, count) = match f.tree {
            Some(tree) => (format!("{}/", f.name), tree.size, tree.files.to_string()),
            None => (f.name.clone(), f.size, "-".to_string()),
        };
        println!(
            "{:<32} {:>11} {:>7} {:>7} {:>8} {:>6} {:<9} {}",
            name,
            HumanBytes(size).to_string(),
            count,
            f.chunk_count,
            f.full_sources,
            f.peers,
            if f.complete { "yes" } else { "NO" },
            f.content_id
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A collection's paths as JSON (`[{"path", "kind", "size"}]`), from its manifest at the
/// tracker, checked as a getter checks it; on failure, an object that says why.
async fn paths(tracker: &str, secret: &SwarmSecret, content_id: ContentId) -> serde_json::Value {
    let manifest = match tracker_client::get_manifest(tracker, secret, content_id).await {
        Ok(manifest) => manifest,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let table = manifest.file_table.as_deref().unwrap_or_default();
    match FileTable::decode(table, manifest.size) {
        Ok(table) => table
            .entries()
            .iter()
            .map(|entry| {
                let kind = match entry.kind {
                    EntryKind::File => "file",
                    EntryKind::Executable => "executable",
                    EntryKind::Dir => "dir",
                };
                json!({"path": entry.path, "kind": kind, "size": entry.size})
            })
            .collect(),
        Err(e) => json!({"error": format!("the collection's table is refused: {e}")}),
    }
}

pub async fn peers(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let (secret, tracker) = find(&args).await?;
    let (tracker, secret, json) = (tracker.as_str(), &secret, args.json);
    let peers = tracker_client::list_peers(tracker, secret).await?;
    if json {
        for p in &peers {
            print_json(&json!({
                "peer_id": p.peer_id.to_string(),
                "key_fingerprint": fingerprint(p.peer_id),
                "listen_addr": p.listen_addr,
                "files": p.files,
                "chunks_held": p.chunks_held,
                "uploaded_bytes": p.uploaded_bytes,
                "downloaded_bytes": p.downloaded_bytes,
                "last_seen_ms_ago": p.last_seen_ms_ago,
            }));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if peers.is_empty() {
        eprintln!("tracker {tracker} knows no peers in swarm {}", secret.tag());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:<22} {:>5} {:>8} {:>11} {:>11} {:>10}",
        "KEY", "ADDRESS", "FILES", "CHUNKS", "UPLOADED", "DOWNLOADED", "LAST_SEEN"
    );
    for p in &peers {
        let addr = if p.listen_addr.is_empty() {
            "(not serving)"
        } else {
            &p.listen_addr
        };
        println!(
            "{:<16} {:<22} {:>5} {:>8} {:>11} {:>11} {:>8.1} s",
            fingerprint(p.peer_id),
            addr,
            p.files,
            p.chunks_held,
            HumanBytes(p.uploaded_bytes).to_string(),
            HumanBytes(p.downloaded_bytes).to_string(),
            p.last_seen_ms_ago as f64 / 1000.0
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A peer's short key fingerprint: its id, which is derived from its static public key
/// (the handshake proves it), in hex. Two peers showing the same fingerprint hold the same
/// key.
pub fn fingerprint(peer_id: PeerId) -> String {
    peer_id.to_string()
}
