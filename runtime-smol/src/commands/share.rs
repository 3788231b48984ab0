//! `p2p share`: hash the files, make sure a tracker is there (an embedded one when none is
//! given), publish, print one ticket per file, serve until stopped.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use indicatif::HumanBytes;
use p2p_core::secure::{Keyring, SwarmSecret};
use p2p_core::{Manifest, Ticket};

use crate::cli::DEFAULT_TRACKER_ADDR;
use crate::driver::peer::{self, PeerOptions};
use crate::driver::tracker;
use crate::io::origin_policy::OriginPolicy;
use crate::io::signals::StopSignals;
use crate::io::{keys, store};

pub struct ShareOptions {
    pub files: Vec<PathBuf>,
    pub tracker: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub listen: SocketAddr,
    pub chunk_size: u32,
    pub upload_limit: Option<u64>,
    /// Take ranges of other peers' cooperative origin downloads.
    pub help_others: bool,
    pub origin_connections: Option<u32>,
    /// What it may fetch when helping.
    pub origin_policy: OriginPolicy,
}

pub async fn run(options: ShareOptions, signals: &mut StopSignals) -> anyhow::Result<ExitCode> {
    p2p_core::manifest::check_chunk_size(options.chunk_size)
        .map_err(|e| crate::UsageError(format!("--chunk-size: {e}")))?;
    let secret = swarm_secret(&options)?;
    let mut published = Vec::new();
    for path in &options.files {
        let manifest = hash(path, options.chunk_size).await?;
        published.push((manifest, path.clone()));
    }
    let (tracker_addr, embedded) = match &options.tracker {
        Some(addr) => (addr.clone(), None),
        None => {
            let tracker = start_embedded_tracker(&secret).await?;
            (tracker.addr.to_string(), Some(tracker))
        }
    };
    let peer = peer::start(PeerOptions {
        secret: secret.clone(),
        listen: Some(options.listen),
        trackers: vec![tracker_addr.clone()],
        upload_limit: options.upload_limit,
        locate_interval: None,
        help_others: options.help_others,
        origin_connections: options.origin_connections,
        origin_policy: options.origin_policy.clone(),
    })
    .await?;
    let serving = peer.listen_addr.map(|a| a.to_string()).unwrap_or_default();
    for (manifest, path) in published {
        let file = peer::open_published(&path)?;
        let ticket = Ticket {
            content_id: manifest.content_id(),
            secret: secret.clone(),
            name: manifest.name.clone(),
            trackers: vec![tracker_addr.clone()],
        };
        eprintln!(
            "sharing {} ({}, {} chunks) as {}",
            path.display(),
            HumanBytes(manifest.size),
            manifest.chunk_count(),
            manifest.content_id()
        );
        peer.publish(manifest, file).await;
        // The ticket alone on its line of standard output, so scripts can take it.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{ticket}");
        let _ = out.flush();
    }
    let tracker_kind = if embedded.is_some() {
        " (embedded)"
    } else {
        ""
    };
    eprintln!("serving on {serving}, tracker {tracker_addr}{tracker_kind}; Ctrl-C to stop");
    let stop = signals.next().await;
    let stats = peer.shutdown().await;
    if let Some(tracker) = embedded {
        tracker.stop().await;
    }
    eprintln!("stopped; uploaded {}", HumanBytes(stats.uploaded_bytes));
    Ok(stop.exit_code())
}

/// The manifest of a file, hashed on the blocking pool.
pub async fn hash(path: &Path, chunk_size: u32) -> anyhow::Result<Manifest> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no file name", path.display()))?;
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        anyhow::bail!("{} is not a regular file", path.display());
    }
    let owned = path.to_path_buf();
    tracing::info!(path = %path.display(), size = meta.len(), "hashing");
    smol::unblock(move || store::hash_file(&owned, &name, chunk_size))
        .await
        .with_context(|| format!("cannot hash {}", path.display()))
}

/// The swarm's secret: from `--secret-file`, else a new one (a new swarm), which only the
/// embedded tracker can serve: a standalone tracker must have been given it.
fn swarm_secret(options: &ShareOptions) -> anyhow::Result<SwarmSecret> {
    match (&options.secret_file, &options.tracker) {
        (Some(path), _) => keys::read_one_secret(path),
        (None, None) => Ok(keys::new_secret()),
        (None, Some(tracker)) => Err(crate::UsageError(format!(
            "--tracker {tracker} needs --secret-file FILE: a standalone tracker serves only the \
             swarms whose secrets it was given (`p2p new-secret FILE` makes one; pass the same \
             file to `p2p tracker --secret-file`)"
        ))
        .into()),
    }
}

/// An in-process tracker serving `secret`'s swarm, on the default address, or on any free
/// port when that is taken. It lists peers at the IP their connection came from, as a
/// standalone tracker does by default: it listens on loopback, where that IP is the one
/// they claim anyway, and there is no case for trusting claims it cannot check.
async fn start_embedded_tracker(secret: &SwarmSecret) -> anyhow::Result<tracker::TrackerHandle> {
    // The default address is a constant that parses.
    let default: SocketAddr = DEFAULT_TRACKER_ADDR.parse().unwrap();
    let keyring = Keyring::of(secret.clone());
    let addresses = tracker::ListedAddresses::Observed;
    match tracker::start(default, keyring.clone(), addresses).await {
        Ok(tracker) => Ok(tracker),
        Err(e) => {
            tracing::info!("{e:#}; the embedded tracker takes a free port instead");
            tracker::start(SocketAddr::from(([127, 0, 0, 1], 0)), keyring, addresses).await
        }
    }
}
