//! `p2p demo`: a tracker, a seeder and N peers in this process on loopback distribute a
//! generated file; every copy is verified; then the same work is timed with the peers not
//! serving each other (each gets everything from the seeder alone), for comparison.
//!
//! Loopback has no bandwidth limit worth the name, so every peer's upload is capped (by
//! default) to stand in for a network link: that is the resource a swarm multiplies. The
//! baseline uses the same cap, the same code and the same seeder: only the getters' serving
//! is switched off (they do not listen, so the tracker gives nobody their address).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{HumanBytes, ProgressBar};
use p2p_core::Manifest;
use p2p_core::peer::PeerNotice;
use p2p_core::secure::{Keyring, SwarmSecret};
use smol::channel::Receiver;
use smol::future;

use crate::commands::progress::MultiBars;
use crate::commands::share;
use crate::driver::peer::{self, DownloadOptions, PeerHandle, PeerOptions, PeerStats, UserEvent};
use crate::driver::tracker;
use crate::io::keys;
use crate::io::signals::StopSignals;
use crate::io::store::{self, Destination};

pub struct DemoOptions {
    pub peers: usize,
    pub size: u64,
    pub upload_limit: Option<u64>,
    pub chunk_size: u32,
    pub baseline: bool,
}

/// A round that takes longer than this has failed.
const ROUND_TIMEOUT: Duration = Duration::from_secs(300);
/// Peers of the demo look for each other this often: its files take seconds, not the
/// minutes the core's default interval is tuned for.
const DEMO_LOCATE_INTERVAL: Duration = Duration::from_millis(250);
/// Most peers a demo runs (each has sockets and a task; beyond this it proves nothing more).
const PEERS_MAX: usize = 64;
/// Every peer and the tracker of the demo listen on loopback, on any free port.
const LOOPBACK_ANY: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
/// How long the seeder may take to reach the demo's own tracker on loopback.
const TRACKER_WAIT: Duration = Duration::from_secs(10);

/// How one round went.
struct Round {
    elapsed: Duration,
    getters: Vec<PeerStats>,
    seeder: PeerStats,
}

pub async fn run(options: DemoOptions, signals: &mut StopSignals) -> anyhow::Result<ExitCode> {
    if options.peers == 0 || options.peers > PEERS_MAX {
        return Err(crate::UsageError(format!("--peers must be 1 to {PEERS_MAX}")).into());
    }
    p2p_core::manifest::check_chunk_size(options.chunk_size)
        .map_err(|e| crate::UsageError(format!("--chunk-size: {e}")))?;
    let dir = tempfile::Builder::new().prefix("p2p-demo-").tempdir()?;
    let source = dir.path().join("demo.bin");
    let size = options.size;
    let cap = match options.upload_limit {
        Some(limit) => format!("uploads capped at {}/s per peer", HumanBytes(limit)),
        None => "no upload cap".to_string(),
    };
    eprintln!(
        "p2p demo: 1 seeder and {} peers on 127.0.0.1, a {} file, {cap}; working in {}",
        options.peers,
        HumanBytes(size),
        dir.path().display()
    );
    let generated = source.clone();
    smol::unblock(move || generate(&generated, size)).await?;
    let manifest = share::hash(&source, options.chunk_size).await?;
    let expected_sha = {
        let source = source.clone();
        smol::unblock(move || store::sha256_file(&source)).await?
    };

    let work = async {
        let swarm = run_round(
            &options,
            &manifest,
            &source,
            &expected_sha,
            dir.path(),
            "swarm",
            true,
        )
        .await?;
        let baseline = if options.baseline {
            Some(
                run_round(
                    &options,
                    &manifest,
                    &source,
                    &expected_sha,
                    dir.path(),
                    "alone",
                    false,
                )
                .await?,
            )
        } else {
            None
        };
        anyhow::Ok((swarm, baseline))
    };
    let outcome = future::or(async { Ok(work.await) }, async {
        Err(signals.next().await)
    })
    .await;
    let (swarm, baseline) = match outcome {
        Ok(result) => result?,
        Err(stop) => {
            eprintln!("demo interrupted");
            return Ok(stop.exit_code());
        }
    };

    let peer_uploads: u64 = swarm.getters.iter().map(|s| s.uploaded_bytes).sum();
    let peer_downloads: u64 = swarm.getters.iter().map(|s| s.downloaded_bytes).sum();
    println!();
    println!(
        "every copy verified: {} peers × {}, sha256 {expected_sha}",
        options.peers,
        HumanBytes(size)
    );
    println!(
        "swarm:             {:>7.2} s  (peers received {}: {} from the seeder, {} from each other)",
        swarm.elapsed.as_secs_f64(),
        HumanBytes(peer_downloads),
        HumanBytes(swarm.seeder.uploaded_bytes),
        HumanBytes(peer_uploads)
    );
    if let Some(baseline) = baseline {
        println!(
            "one seeder alone:  {:>7.2} s  (seeder uploaded {}; peers not serving)",
            baseline.elapsed.as_secs_f64(),
            HumanBytes(baseline.seeder.uploaded_bytes)
        );
        println!(
            "speed-up:          {:>7.2}×",
            baseline.elapsed.as_secs_f64() / swarm.elapsed.as_secs_f64().max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One distribution: a fresh tracker and seeder, N getters started at once; returns when
/// every getter has the file and its SHA-256 matched.
async fn run_round(
    options: &DemoOptions,
    manifest: &Manifest,
    source: &Path,
    expected_sha: &str,
    dir: &Path,
    label: &str,
    getters_serve: bool,
) -> anyhow::Result<Round> {
    // A swarm of its own per round, as `p2p share` makes.
    let secret = keys::new_secret();
    let keyring = Keyring::of(secret.clone());
    let tracker = tracker::start(LOOPBACK_ANY, keyring, tracker::ListedAddresses::Observed).await?;
    let trackers = vec![tracker.addr.to_string()];
    let seeder = start_seeder(options, manifest, source, &trackers, &secret).await?;

    let bars = MultiBars::new();
    bars.println(&format!(
        "{label}: {} peers {}",
        options.peers,
        if getters_serve {
            "downloading from the seeder and from each other"
        } else {
            "each downloading from the seeder alone"
        }
    ));
    let started = Instant::now();
    let getters = start_getters(
        options,
        manifest,
        dir,
        label,
        getters_serve,
        &trackers,
        &secret,
    )
    .await?;
    let merged = merge_events(&getters);
    let progress: Vec<_> = (0..options.peers)
        .map(|i| bars.add(&format!("peer {i}"), manifest.size))
        .collect();
    let deadline = async {
        smol::Timer::after(ROUND_TIMEOUT).await;
        None
    };
    let collect = async {
        Some(verify_copies(options.peers, &merged, &progress, started, expected_sha).await)
    };
    let result = future::or(collect, deadline).await;
    let elapsed = started.elapsed();

    let stopping: Vec<_> = getters
        .into_iter()
        .map(|peer| smol::spawn(peer.shutdown()))
        .collect();
    let mut getter_stats = Vec::new();
    for stop in stopping {
        getter_stats.push(stop.await);
    }
    let seeder_stats = seeder.shutdown().await;
    tracker.stop().await;
    match result {
        Some(Ok(())) => {}
        Some(Err(e)) => return Err(e),
        None => bail!(
            "{label}: not every peer finished within {} s",
            ROUND_TIMEOUT.as_secs()
        ),
    }
    bars.println(&format!(
        "{label}: all {} copies verified in {:.2} s",
        options.peers,
        elapsed.as_secs_f64()
    ));
    Ok(Round {
        elapsed,
        getters: getter_stats,
        seeder: seeder_stats,
    })
}

/// The seeder of a round, serving the source file and known to the tracker.
async fn start_seeder(
    options: &DemoOptions,
    manifest: &Manifest,
    source: &Path,
    trackers: &[String],
    secret: &SwarmSecret,
) -> anyhow::Result<PeerHandle> {
    let seeder = peer::start(PeerOptions {
        secret: secret.clone(),
        listen: Some(LOOPBACK_ANY),
        advertise_host: None,
        trackers: trackers.to_vec(),
        more_trackers: Vec::new(),
        upload_limit: options.upload_limit,
        locate_interval: Some(DEMO_LOCATE_INTERVAL),
        help_others: false,
        origin_connections: None,
        origin_policy: Default::default(),
        address_book: None,
    })
    .await?;
    seeder
        .publish(manifest.clone(), peer::open_published(source)?)
        .await;
    wait_for_tracker(&seeder.user_events).await?;
    Ok(seeder)
}

/// The getters of a round, each downloading into a directory of its own; they listen (and
/// so serve each other) only when `getters_serve`.
async fn start_getters(
    options: &DemoOptions,
    manifest: &Manifest,
    dir: &Path,
    label: &str,
    getters_serve: bool,
    trackers: &[String],
    secret: &SwarmSecret,
) -> anyhow::Result<Vec<PeerHandle>> {
    let content_id = manifest.content_id();
    let mut getters = Vec::new();
    for i in 0..options.peers {
        let out: PathBuf = dir.join(format!("{label}-{i}"));
        std::fs::create_dir_all(&out)?;
        let peer = peer::start(PeerOptions {
            secret: secret.clone(),
            listen: getters_serve.then_some(LOOPBACK_ANY),
            advertise_host: None,
            trackers: trackers.to_vec(),
            more_trackers: Vec::new(),
            upload_limit: options.upload_limit,
            locate_interval: Some(DEMO_LOCATE_INTERVAL),
            help_others: false,
            origin_connections: None,
            origin_policy: Default::default(),
            address_book: None,
        })
        .await?;
        let options = DownloadOptions::into(Destination::Dir(out));
        peer.download(content_id, None, options).await;
        getters.push(peer);
    }
    Ok(getters)
}

/// Every getter's events into one stream, tagged with the getter's index.
fn merge_events(getters: &[PeerHandle]) -> Receiver<(usize, UserEvent)> {
    let (merged_tx, merged) = smol::channel::unbounded();
    for (i, peer) in getters.iter().enumerate() {
        let events = peer.user_events.clone();
        let tx = merged_tx.clone();
        smol::spawn(async move {
            while let Ok(event) = events.recv().await {
                if tx.send((i, event)).await.is_err() {
                    return;
                }
            }
        })
        .detach();
    }
    drop(merged_tx);
    merged
}

/// Shows the getters' progress until each of the `peers` has its copy, checking every
/// copy's SHA-256.
async fn verify_copies(
    peers: usize,
    merged: &Receiver<(usize, UserEvent)>,
    progress: &[Option<ProgressBar>],
    started: Instant,
    expected_sha: &str,
) -> anyhow::Result<()> {
    let mut done = vec![None::<Duration>; peers];
    while done.iter().any(Option::is_none) {
        let Ok((i, event)) = merged.recv().await else {
            return Err(anyhow::anyhow!("a peer stopped unexpectedly"));
        };
        match event {
            UserEvent::Notice(PeerNotice::Progress {
                bytes_have,
                sources,
                ..
            }) => {
                if let Some(bar) = &progress[i] {
                    bar.set_position(bytes_have);
                    bar.set_message(format!("{sources} sources"));
                }
            }
            UserEvent::Downloaded { path, sha256, .. } => {
                if sha256 != expected_sha {
                    return Err(anyhow::anyhow!(
                        "peer {i}: {} has sha256 {sha256}, expected {expected_sha}",
                        path.display()
                    ));
                }
                let elapsed = started.elapsed();
                done[i] = Some(elapsed);
                match &progress[i] {
                    Some(bar) => bar
                        .finish_with_message(format!("verified in {:.2} s", elapsed.as_secs_f64())),
                    None => eprintln!(
                        "  peer {i}: {} verified in {:.2} s",
                        path.display(),
                        elapsed.as_secs_f64()
                    ),
                }
            }
            UserEvent::DownloadFailed { reason, .. } => {
                return Err(anyhow::anyhow!("peer {i}: download failed: {reason}"));
            }
            UserEvent::Notice(_) | UserEvent::TrackerRefused { .. } | UserEvent::Peers { .. } => {}
        }
    }
    Ok(())
}

/// Waits until the seeder's announce has gone to the tracker, so getters find it at once.
async fn wait_for_tracker(events: &Receiver<UserEvent>) -> anyhow::Result<()> {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(UserEvent::Notice(PeerNotice::TrackerConnected { .. })) => return Ok(()),
                Ok(_) => {}
                Err(_) => bail!("the seeder stopped"),
            }
        }
    };
    let timeout = async {
        smol::Timer::after(TRACKER_WAIT).await;
        bail!(
            "the seeder did not reach the demo tracker within {} s",
            TRACKER_WAIT.as_secs()
        )
    };
    future::or(wait, timeout).await
}

/// Writes `size` pseudo-random bytes (xorshift: fast, and no two chunks alike).
fn generate(path: &Path, size: u64) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1024 * 1024, file);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut written = 0u64;
    let mut block = vec![0u8; 64 * 1024];
    while written < size {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let take = (size - written).min(block.len() as u64) as usize;
        out.write_all(&block[..take])?;
        written += take as u64;
    }
    out.flush()?;
    Ok(())
}
