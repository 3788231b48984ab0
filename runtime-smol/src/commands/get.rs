//! `p2p get`: find the content (ticket, content id or name), download it into `NAME.part`
//! with progress, then print its SHA-256 and path; `--seed` keeps serving afterwards.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use p2p_core::peer::PeerNotice;
use p2p_core::secure::SwarmSecret;
use p2p_core::{ContentId, PeerId, Ticket};
use smol::future;

use crate::UsageError;
use crate::cli::{DEFAULT_TRACKER_ADDR, GetArgs};
use crate::commands::find_swarm::{self, LanDiscovery, MetBefore};
use crate::commands::progress::Reporter;
use crate::commands::{progress, share, tracker_client};
use crate::driver::peer::{self, DownloadOptions, PeerHandle, PeerOptions, UserEvent};
use crate::driver::tracker::TrackerHandle;
use crate::io::address_book::AddressBook;
use crate::io::first_answer::{self, NoAnswer};
use crate::io::selection::Selection;
use crate::io::signals::{Stop, StopSignals};
use crate::io::store::Destination;
use crate::io::{keys, mdns};

/// Refusals of the handshake by one tracker, with no tracker ever accepting ours, after
/// which the download fails: the secret is not one the tracker serves, and trying again
/// will not change that. Two, not one, so a tracker that restarts mid-handshake is not
/// taken for a refusal; the peer retries within a fraction of a second, so this costs
/// little time.
const TRACKER_REFUSALS_FATAL: u32 = 2;

/// What the user asked for.
enum Target {
    Ticket(Ticket),
    ContentId(ContentId),
    Name(String),
}

fn parse_target(text: &str) -> Result<Target, UsageError> {
    let text = text.trim();
    if let Ok(content_id) = text.parse::<ContentId>() {
        return Ok(Target::ContentId(content_id));
    }
    if text.is_empty() {
        return Err(UsageError("empty ticket, content id or name".into()));
    }
    if p2p_core::ticket::looks_like_ticket(text) {
        return find_swarm::parse_ticket(text).map(Target::Ticket);
    }
    Ok(Target::Name(text.to_string()))
}

pub async fn run(args: GetArgs, signals: &mut StopSignals) -> anyhow::Result<ExitCode> {
    let target = parse_target(&args.target)?;
    let only = match args.only.as_slice() {
        [] => None,
        _ if args.seed => {
            return Err(UsageError(
                "--seed serves the whole content, and --only downloads part of it; run \
                 again without one of them"
                    .into(),
            )
            .into());
        }
        patterns => Some(Selection::new(patterns).map_err(UsageError)?),
    };
    let (secret, whose) = swarm_secret(&args, &target)?;
    let book = AddressBook::for_swarm(&secret);
    let Rendezvous {
        trackers,
        peers: known_peers,
    } = rendezvous(
        trackers(&args, &target),
        &secret,
        &args,
        &target,
        book.as_ref(),
    )
    .await?;
    let content_id = match &target {
        Target::Ticket(ticket) => ticket.content_id,
        Target::ContentId(content_id) => *content_id,
        Target::Name(_) if !known_peers.is_empty() => anyhow::bail!(
            "no tracker of this swarm answered, and only a tracker can look a name up; pass \
             the ticket, or the content id with --secret-file, to download from the peers met \
             in earlier runs"
        ),
        Target::Name(name) => resolve_name(&trackers[0], &secret, name).await?,
    };
    let destination = Destination::from_output(args.output.as_deref());
    let own_tracker = if seeds_a_tracker(&args, &target) {
        Some(
            share::start_embedded_tracker(
                &secret,
                args.listen.ip(),
                crate::driver::tracker::ListedAddresses::Observed,
            )
            .await?,
        )
    } else {
        None
    };
    // The peer announces to its own tracker too: the swarm's other members find it at the
    // swarm's tracker, and once that is gone getters find this one's on the LAN.
    let more_trackers: Vec<Vec<String>> = own_tracker
        .iter()
        .map(|tracker| vec![share::own_tracker_addr(tracker.addr)])
        .collect();
    let seeding = Seeding {
        secret: secret.clone(),
        tracker: own_tracker,
    };
    let peer = peer::start(PeerOptions {
        secret,
        listen: Some(args.listen),
        advertise_host: None,
        trackers,
        more_trackers,
        upload_limit: args.upload_limit,
        locate_interval: None,
        help_others: false,
        origin_connections: None,
        origin_policy: Default::default(),
        address_book: book,
    })
    .await?;
    let options = DownloadOptions {
        destination,
        force: args.force,
        expected_sha256: args.sha256.clone(),
        only,
        known_peers,
    };
    peer.download(content_id, None, options).await;
    let mut reporter = Reporter::new(args.json);
    let mut refusals: HashMap<String, u32> = HashMap::new();
    let mut tracker_accepted = false;
    loop {
        let next = future::or(async { Ok(peer.user_events.recv().await.ok()) }, async {
            Err(signals.next().await)
        })
        .await;
        match next {
            Ok(Some(event)) => {
                reporter.on_event(&event);
                match event {
                    UserEvent::Downloaded { path, sha256, .. } => {
                        return downloaded(peer, &args, &path, &sha256, seeding, signals).await;
                    }
                    UserEvent::DownloadFailed { reason, .. } => {
                        peer.shutdown().await;
                        seeding.stop().await;
                        eprintln!("error: download of {content_id} failed: {reason}");
                        return Ok(ExitCode::FAILURE);
                    }
                    UserEvent::Notice(PeerNotice::TrackerConnected { .. }) => {
                        tracker_accepted = true;
                    }
                    UserEvent::Notice(_) | UserEvent::Peers { .. } => {}
                    UserEvent::TrackerRefused { addr } => {
                        let count = refusals.entry(addr.clone()).or_default();
                        *count += 1;
                        if *count >= TRACKER_REFUSALS_FATAL && !tracker_accepted {
                            reporter.clear();
                            peer.shutdown().await;
                            seeding.stop().await;
                            let reason = tracker_client::refused_message(&addr, whose);
                            if args.json {
                                progress::print_json(&serde_json::json!({
                                    "event": "failed",
                                    "content_id": content_id.to_string(),
                                    "reason": reason,
                                }));
                            }
                            eprintln!("error: {reason}");
                            return Ok(ExitCode::FAILURE);
                        }
                    }
                }
            }
            Ok(None) => anyhow::bail!("the peer stopped unexpectedly"),
            Err(stop) => {
                seeding.stop().await;
                return stopped(peer, &args, &reporter, stop).await;
            }
        }
    }
}

/// The swarm's secret, and where it came from (for messages): the ticket's, or
/// `--secret-file` for a content id or a name.
fn swarm_secret(args: &GetArgs, target: &Target) -> anyhow::Result<(SwarmSecret, &'static str)> {
    match (target, &args.secret_file) {
        (Target::Ticket(ticket), None) => Ok((ticket.secret.clone(), "the ticket's")),
        (Target::Ticket(_), Some(_)) => Err(UsageError(
            "a ticket carries its swarm's secret: --secret-file is for a content id or a name"
                .into(),
        )
        .into()),
        (_, Some(path)) => Ok((keys::read_one_secret(path)?, "the secret file's")),
        (_, None) => Err(UsageError(
            "a content id or a file name needs --secret-file FILE, the swarm's secret; \
             or pass the whole ticket `p2p share` printed, which carries it"
                .into(),
        )
        .into()),
    }
}

/// The trackers to ask: `--tracker`, then the ticket's, else the default one.
fn trackers(args: &GetArgs, target: &Target) -> Vec<String> {
    let mut trackers: Vec<String> = args.tracker.iter().cloned().collect();
    if let Target::Ticket(ticket) = target {
        for addr in &ticket.trackers {
            if !trackers.contains(addr) {
                trackers.push(addr.clone());
            }
        }
    }
    if trackers.is_empty() {
        trackers.push(DEFAULT_TRACKER_ADDR.to_string());
    }
    trackers
}

/// Where the swarm was found: the trackers to keep a session with (the one that answered
/// first), and, when no tracker answered, the members met in earlier runs to dial.
struct Rendezvous {
    trackers: Vec<String>,
    peers: Vec<(PeerId, String)>,
}

/// Finds the swarm: `trackers` (all dialled at once) with the first to answer moved to the
/// front, the others kept as fall-backs in their order; when none answers, a tracker found
/// on the LAN; else the peers in the address book, if one of them answers (the trackers
/// stay, should they come back). When nothing answers, an error that says why for each;
/// unless a tracker refused the handshake: then the peer meets that refusal itself, and
/// `run` says what it means for the ticket.
async fn rendezvous(
    mut trackers: Vec<String>,
    secret: &SwarmSecret,
    args: &GetArgs,
    target: &Target,
    book: Option<&AddressBook>,
) -> anyhow::Result<Rendezvous> {
    let found = |trackers, peers| Ok(Rendezvous { trackers, peers });
    match first_answer::first_to_answer(&trackers, secret).await {
        Ok(index) => {
            let first = trackers.remove(index);
            tracing::info!(tracker = %first, "first to answer");
            trackers.insert(0, first);
            found(trackers, Vec::new())
        }
        Err(failures) if failures.iter().any(|(_, why)| why.is_refusal()) => {
            found(trackers, Vec::new())
        }
        Err(failures) => {
            let lan = if args.no_mdns {
                LanDiscovery::Off
            } else {
                find_swarm::lan_rendezvous(secret).await
            };
            if let LanDiscovery::Answered(addr) = lan {
                eprintln!(
                    "no address in the ticket answered; found a tracker of the swarm on the LAN \
                     (mDNS): {addr}"
                );
                // The ticket's stay as fall-backs, should they come back.
                trackers.insert(0, addr);
                return found(trackers, Vec::new());
            }
            let remembered = book.map(AddressBook::load).unwrap_or_default();
            let met = find_swarm::remembered_rendezvous(remembered, secret).await;
            if let MetBefore::Answered(peers) = met {
                eprintln!(
                    "no address in the ticket answered; found the swarm through a peer met in \
                     an earlier run ({}); {lan}",
                    peers[0].1
                );
                return found(trackers, peers);
            }
            let source = match target {
                Target::Ticket(_) if args.tracker.is_none() => "in the ticket",
                _ => "given",
            };
            let elsewhere = format!("{lan}{met}");
            let reason = first_answer::none_answered(&failures, source, &elsewhere);
            if args.json {
                progress::print_json(&serde_json::json!({
                    "event": "failed",
                    "reason": reason,
                    "unanswered": failures
                        .iter()
                        .map(|(addr, why): &(String, NoAnswer)| {
                            serde_json::json!({"addr": addr, "why": why.to_string()})
                        })
                        .collect::<Vec<_>>(),
                }));
            }
            anyhow::bail!("{reason}")
        }
    }
}

/// Whether this getter runs a tracker of its own, announced on the LAN once it seeds, so
/// that the swarm outlives its sharer: with `--seed`, LAN discovery on, a ticket's
/// addresses as the rendezvous (not an operator's `--tracker`, which is the fixed one)
/// and a listening address others can reach.
fn seeds_a_tracker(args: &GetArgs, target: &Target) -> bool {
    args.seed
        && !args.no_mdns
        && args.tracker.is_none()
        && matches!(target, Target::Ticket(_))
        && !args.listen.ip().is_loopback()
}

/// What a getter runs besides its peer to seed: its own tracker, if any, and the secret
/// it announces that tracker under.
struct Seeding {
    secret: SwarmSecret,
    tracker: Option<TrackerHandle>,
}

impl Seeding {
    async fn stop(self) {
        if let Some(tracker) = self.tracker {
            tracker.stop().await;
        }
    }
}

/// The file is complete under its final name: print it, then stop or (`--seed`) serve it
/// until told to stop.
async fn downloaded(
    peer: PeerHandle,
    args: &GetArgs,
    path: &Path,
    sha256: &str,
    seeding: Seeding,
    signals: &mut StopSignals,
) -> anyhow::Result<ExitCode> {
    if !args.json {
        // sha256sum's format: `sha256sum -c` can check it.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{sha256}  {}", path.display());
        let _ = out.flush();
    }
    if !args.seed {
        peer.shutdown().await;
        seeding.stop().await;
        return Ok(ExitCode::SUCCESS);
    }
    // Announced only now: until the file is complete this tracker would list nobody.
    let announcement = seeding
        .tracker
        .as_ref()
        .and_then(|tracker| mdns::announce(&seeding.secret, tracker.addr));
    eprintln!("seeding {}; Ctrl-C to stop", path.display());
    let stop = signals.next().await;
    if let Some(announcement) = announcement {
        announcement.stop().await;
    }
    peer.shutdown().await;
    seeding.stop().await;
    Ok(stop.exit_code())
}

/// Ctrl-C or a termination signal: the peer stops, keeping the part file and its record so
/// the same command resumes.
async fn stopped(
    peer: PeerHandle,
    args: &GetArgs,
    reporter: &Reporter,
    stop: Stop,
) -> anyhow::Result<ExitCode> {
    reporter.clear();
    peer.shutdown().await;
    let what = match stop {
        Stop::Interrupt => "interrupted",
        Stop::Terminate => "terminated",
    };
    eprintln!("{what}; run the same command again to resume");
    if args.json {
        progress::print_json(&serde_json::json!({"event": what}));
    }
    Ok(stop.exit_code())
}

/// The content id of the one file the tracker lists under `name`.
async fn resolve_name(
    tracker: &str,
    secret: &SwarmSecret,
    name: &str,
) -> anyhow::Result<ContentId> {
    let files = tracker_client::list_files(tracker, secret).await?;
    let mut matches: Vec<_> = files.iter().filter(|f| f.name == name).collect();
    matches.dedup_by_key(|f| f.content_id);
    match matches.as_slice() {
        [one] => Ok(one.content_id),
        [] => anyhow::bail!(
            "tracker {tracker} lists no file named '{name}' (`p2p ls --tracker {tracker}` shows what it has)"
        ),
        several => {
            let ids: Vec<String> = several.iter().map(|f| f.content_id.to_string()).collect();
            anyhow::bail!(
                "tracker {tracker} lists {} different files named '{name}'; choose one by content id:\n  {}",
                several.len(),
                ids.join("\n  ")
            )
        }
    }
}
