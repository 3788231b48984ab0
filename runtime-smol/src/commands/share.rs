//! `p2p share`: hash the files (a directory, or `--collection NAME` with several paths, as
//! one collection), make sure a tracker is there (an embedded one when none is given),
//! publish, print one ticket per file or collection, serve until stopped.
//!
//! Without flags everything listens on every interface, and the ticket lists this host's
//! addresses (`interfaces`) with the embedded tracker's port. The sharer reaches its own
//! tracker over loopback; the tracker tells each getter the sharer's address as the one
//! that getter reached the host at (`Tracker::accept_at`), so the ticket needs to carry
//! tracker addresses only.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{HumanBytes, ProgressBar};
use p2p_core::secure::{Keyring, SwarmSecret};
use p2p_core::ticket::TRACKERS_MAX;
use p2p_core::{ContentId, Manifest, Ticket};

use crate::cli::DEFAULT_TRACKER_ADDR;
use crate::commands::progress;
use crate::driver::peer::{self, PeerOptions};
use crate::driver::tracker;
use crate::io::origin_policy::OriginPolicy;
use crate::io::signals::StopSignals;
use crate::io::store::Storage;
use crate::io::{interfaces, keys, mdns, store, tree_hash};

pub struct ShareOptions {
    pub files: Vec<PathBuf>,
    /// Share every path together as one collection of this name.
    pub collection: Option<String>,
    pub tracker: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub listen: SocketAddr,
    /// Addresses to list in tickets instead of this host's (`HOST` or `HOST:PORT`).
    pub advertise: Vec<String>,
    pub chunk_size: u32,
    pub upload_limit: Option<u64>,
    /// Take ranges of other peers' cooperative origin downloads.
    pub help_others: bool,
    pub origin_connections: Option<u32>,
    /// What it may fetch when helping.
    pub origin_policy: OriginPolicy,
    /// Announce the embedded tracker on the LAN (mDNS).
    pub lan_discovery: bool,
}

pub async fn run(options: ShareOptions, signals: &mut StopSignals) -> anyhow::Result<ExitCode> {
    p2p_core::manifest::check_chunk_size(options.chunk_size)
        .map_err(|e| crate::UsageError(format!("--chunk-size: {e}")))?;
    let secret = swarm_secret(&options)?;
    check_advertised(&options.advertise)?;
    let mut published = Vec::new();
    if let Some(name) = &options.collection {
        published.push(hash_collection(&options.files, name, options.chunk_size).await?);
    } else {
        for path in &options.files {
            if path.is_dir() {
                let name = dir_name(path)?;
                published.push(
                    hash_collection(std::slice::from_ref(path), &name, options.chunk_size).await?,
                );
            } else {
                let manifest = hash(path, options.chunk_size).await?;
                let storage = peer::open_published(path)?;
                let shown = format!(
                    "{} ({}, {} chunks)",
                    path.display(),
                    HumanBytes(manifest.size),
                    manifest.chunk_count()
                );
                published.push((manifest, storage, shown));
            }
        }
    }
    let (tracker_addr, embedded) = match &options.tracker {
        Some(addr) => (addr.clone(), None),
        None => {
            // Behind a NAT the sharer claims the advertised host; only its own
            // tracker, which it reaches over loopback, lists it there.
            let addresses = if options.advertise.is_empty() {
                tracker::ListedAddresses::Observed
            } else {
                tracker::ListedAddresses::ClaimedOverLoopback
            };
            let tracker = start_embedded_tracker(&secret, options.listen.ip(), addresses).await?;
            (own_tracker_addr(tracker.addr), Some(tracker))
        }
    };
    let ticket_addrs = ticket_addresses(
        &options.advertise,
        embedded.as_ref().map(|t| t.addr),
        &tracker_addr,
    );
    let peer = peer::start(PeerOptions {
        secret: secret.clone(),
        listen: Some(options.listen),
        advertise_host: advertise_host(&options.advertise),
        trackers: vec![tracker_addr.clone()],
        more_trackers: Vec::new(),
        upload_limit: options.upload_limit,
        locate_interval: None,
        help_others: options.help_others,
        origin_connections: options.origin_connections,
        origin_policy: options.origin_policy.clone(),
        address_book: None,
    })
    .await?;
    let serving = peer.listen_addr.map(|a| a.to_string()).unwrap_or_default();
    for (manifest, storage, shown) in published {
        let ticket = Ticket {
            content_id: manifest.content_id(),
            secret: secret.clone(),
            name: manifest.name.clone(),
            trackers: ticket_addrs.clone(),
        };
        eprintln!("sharing {shown} as {}", manifest.content_id());
        peer.publish(manifest, storage).await;
        // The ticket alone on its line of standard output, so scripts can take it.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{ticket}");
        let _ = out.flush();
    }
    // Only a tracker of our own is announced: a standalone one is the operator's to make
    // known, and its address is not ours to put on the air.
    let announcement = match &embedded {
        Some(tracker) if options.lan_discovery => mdns::announce(&secret, tracker.addr),
        _ => None,
    };
    let tracker_kind = match &embedded {
        Some(tracker) => format!("{} (embedded)", tracker.addr),
        None => tracker_addr.clone(),
    };
    eprintln!(
        "serving on {serving}, tracker {tracker_kind}; the ticket lists {}; Ctrl-C to stop",
        ticket_addrs.join(", ")
    );
    let stop = signals.next().await;
    if let Some(announcement) = announcement {
        announcement.stop().await;
    }
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

/// A directory's name, as its collection's.
fn dir_name(path: &Path) -> anyhow::Result<String> {
    let canonical =
        std::fs::canonicalize(path).with_context(|| format!("cannot read {}", path.display()))?;
    canonical
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .with_context(|| format!("{} has no UTF-8 name to share it under", path.display()))
}

/// The manifest of a collection of `paths` (one directory's entries, or the paths given
/// together), hashed on the blocking pool, with its tree and a line saying what it holds.
async fn hash_collection(
    paths: &[PathBuf],
    name: &str,
    chunk_size: u32,
) -> anyhow::Result<(Manifest, Storage, String)> {
    let (root, items) = tree_hash::root_and_items(paths)?;
    tracing::info!(root = %root.display(), "hashing a collection");
    let owned_name = name.to_string();
    // On a terminal, a bar over the bytes to hash (a tree of many files takes a while).
    let bar = progress::stderr_is_terminal().then(|| {
        let bar = ProgressBar::new(0).with_style(progress::bar_style());
        bar.set_message(format!("hashing {name}/"));
        bar.enable_steady_tick(progress::BAR_TICK_INTERVAL);
        bar
    });
    let shown_bar = bar.clone();
    let on_hashed = move |done, total| {
        if let Some(bar) = &shown_bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let hashed = smol::unblock(move || {
        tree_hash::hash_tree(&root, &items, &owned_name, chunk_size, on_hashed)
    })
    .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let hashed = hashed.with_context(|| format!("cannot share {name}"))?;
    if !hashed.skipped.is_empty() {
        eprintln!(
            "warning: not shared (symbolic links and special files are skipped): {}",
            hashed.skipped.join(", ")
        );
    }
    let table = hashed.tree.table();
    let shown = format!(
        "{name}/ ({} files, {}, {} chunks of {} stored once)",
        table.file_count(),
        HumanBytes(table.total_size()),
        hashed.manifest.chunk_count(),
        HumanBytes(hashed.manifest.size)
    );
    Ok((hashed.manifest, Storage::Tree(Box::new(hashed.tree)), shown))
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

/// An in-process tracker serving `secret`'s swarm on `ip` (every interface for `[::]`),
/// port 7070, or any free port when that is taken. It lists peers at the IP their
/// connection came from, as a standalone tracker does by default, and a peer on this host
/// (this sharer) at the address each asker reached it at; there is no case for trusting
/// claims it cannot check.
pub(crate) async fn start_embedded_tracker(
    secret: &SwarmSecret,
    ip: IpAddr,
    addresses: tracker::ListedAddresses,
) -> anyhow::Result<tracker::TrackerHandle> {
    // The default address is a constant that parses.
    let port = DEFAULT_TRACKER_ADDR.parse::<SocketAddr>().unwrap().port();
    let keyring = Keyring::of(secret.clone());
    match tracker::start(SocketAddr::new(ip, port), keyring.clone(), addresses).await {
        Ok(tracker) => Ok(tracker),
        Err(e) => {
            tracing::info!("{e:#}; the embedded tracker takes a free port instead");
            tracker::start(SocketAddr::new(ip, 0), keyring, addresses).await
        }
    }
}

/// Where this sharer's own peer reaches its embedded tracker bound at `bound`: over
/// loopback when it listens on every interface (IPv4 is always among them).
pub(crate) fn own_tracker_addr(bound: SocketAddr) -> String {
    if bound.ip().is_unspecified() {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), bound.port()).to_string()
    } else {
        bound.to_string()
    }
}

/// The addresses a ticket lists: `--advertise`'s; else, for an embedded tracker on every
/// interface, this host's dialable addresses (likeliest first, at most `TRACKERS_MAX`,
/// loopback when there are none) with its port; else the one tracker address.
fn ticket_addresses(
    advertise: &[String],
    embedded: Option<SocketAddr>,
    tracker_addr: &str,
) -> Vec<String> {
    let tracker_port = embedded.map(|a| a.port()).or_else(|| {
        let (_, port) = tracker_addr.rsplit_once(':')?;
        port.parse().ok()
    });
    if !advertise.is_empty() {
        return advertise
            .iter()
            .map(|addr| with_port(addr, tracker_port.unwrap_or(0)))
            .collect();
    }
    let Some(bound) = embedded.filter(|a| a.ip().is_unspecified()) else {
        return vec![tracker_addr.to_owned()];
    };
    let ipv6_too = bound.is_ipv6();
    let mut addrs: Vec<String> = interfaces::dialable_ips()
        .into_iter()
        .filter(|ip| ipv6_too || ip.is_ipv4())
        .map(|ip| SocketAddr::new(ip, bound.port()).to_string())
        .collect();
    if addrs.len() > TRACKERS_MAX {
        tracing::info!(
            "this host has {} addresses; the ticket lists the first {TRACKERS_MAX}: {}",
            addrs.len(),
            addrs[TRACKERS_MAX..].join(", ")
        );
        addrs.truncate(TRACKERS_MAX);
    }
    if addrs.is_empty() {
        tracing::warn!(
            "this host has no network address but loopback: the ticket works on this machine only"
        );
        addrs.push(own_tracker_addr(bound));
    }
    addrs
}

/// `addr` (an `--advertise` value: `HOST`, `IP`, `[IPV6]` or any of them with `:PORT`)
/// with `port` when it has none.
fn with_port(addr: &str, port: u16) -> String {
    if addr.parse::<SocketAddr>().is_ok() {
        return addr.to_owned();
    }
    if let Ok(ip) = addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return SocketAddr::new(ip, port).to_string();
    }
    if addr.contains(':') {
        addr.to_owned()
    } else {
        format!("{addr}:{port}")
    }
}

/// The host of the first `--advertise` value (`HOST`, `IP`, `[IPV6]`, with or without
/// `:PORT`): where the sharer's peer says it is reached, at its own listening port.
fn advertise_host(advertise: &[String]) -> Option<String> {
    let first = advertise.first()?;
    let host = match first.parse::<SocketAddr>() {
        Ok(addr) => SocketAddr::new(addr.ip(), 0).to_string(),
        Err(_) => with_port(first, 0),
    };
    host.rsplit_once(':').map(|(host, _)| host.to_owned())
}

/// `--advertise` values must fit a ticket: checked before any file is hashed.
fn check_advertised(advertise: &[String]) -> Result<(), crate::UsageError> {
    let ticket = Ticket {
        content_id: ContentId([0; 32]),
        secret: SwarmSecret::from_bytes([0; 32]),
        name: String::new(),
        // Any port: only the form is checked here.
        trackers: advertise.iter().map(|a| with_port(a, 1)).collect(),
    };
    ticket.validate().map_err(|e| {
        crate::UsageError(format!(
            "--advertise: {e}; give HOST, IP or HOST:PORT, at most {TRACKERS_MAX} times"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_addresses_get_the_trackers_port_when_they_have_none() {
        assert_eq!(with_port("files.lan", 7070), "files.lan:7070");
        assert_eq!(with_port("files.lan:80", 7070), "files.lan:80");
        assert_eq!(with_port("203.0.113.7", 7070), "203.0.113.7:7070");
        assert_eq!(with_port("2001:db8::7", 7070), "[2001:db8::7]:7070");
        assert_eq!(with_port("[2001:db8::7]", 7070), "[2001:db8::7]:7070");
        assert_eq!(with_port("[2001:db8::7]:80", 7070), "[2001:db8::7]:80");
        let advertised = ["files.lan".to_owned(), "10.0.0.5:9000".to_owned()];
        assert_eq!(
            ticket_addresses(&advertised, Some("[::]:7070".parse().unwrap()), ""),
            vec!["files.lan:7070".to_owned(), "10.0.0.5:9000".to_owned()]
        );
        assert!(check_advertised(&advertised).is_ok());
        assert_eq!(advertise_host(&advertised), Some("files.lan".to_owned()));
        let ips = ["[fd00::5]:9000".to_owned(), "10.0.0.5".to_owned()];
        assert_eq!(advertise_host(&ips), Some("[fd00::5]".to_owned()));
        assert_eq!(advertise_host(&ips[1..]), Some("10.0.0.5".to_owned()));
        assert_eq!(advertise_host(&[]), None);
        assert!(check_advertised(&["bad host".to_owned()]).is_err());
        assert!(check_advertised(&vec!["h".to_owned(); TRACKERS_MAX + 1]).is_err());
    }

    #[test]
    fn a_tracker_on_one_address_is_listed_as_it_is() {
        let bound = "127.0.0.1:7070".parse().unwrap();
        assert_eq!(
            ticket_addresses(&[], Some(bound), "127.0.0.1:7070"),
            vec!["127.0.0.1:7070"]
        );
        assert_eq!(
            ticket_addresses(&[], None, "10.0.0.5:7070"),
            vec!["10.0.0.5:7070"]
        );
        assert_eq!(
            own_tracker_addr("[::]:7071".parse().unwrap()),
            "127.0.0.1:7071"
        );
    }
}
