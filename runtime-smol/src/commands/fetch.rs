//! `p2p fetch URL`: a cooperative origin download.
//!
//! `HEAD` gives the size, the validator (`ETag` or `Last-Modified`) and range support. If the
//! swarm already has the file at that URL and validator (the tracker's `FindOrigin`), it
//! comes from peers as with `p2p get`, and the origin sees nothing. Otherwise the peer
//! machine runs a fetch job: this peer and every helper of the swarm take byte ranges, fetch
//! them with `Range`/`If-Range` (see `http`), and the bytes are written in place into
//! `NAME.part`. When every range is written: the optional `--sha256` check, sync, rename,
//! then the file's manifest is published and tied to the URL and validator
//! (`set_origin`), so the next fetch of the same URL in the swarm comes from peers.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget};
use p2p_core::ids::to_hex;
use p2p_core::manifest::CHUNK_SIZE_DEFAULT;
use p2p_core::peer::FetchSpec;
use p2p_core::peer::PeerNotice;
use p2p_core::{ChunkSet, ContentId, Manifest};
use serde_json::json;
use sha2::{Digest, Sha256};
use smol::future;

use crate::UsageError;
use crate::cli::{FetchArgs, GetArgs};
use crate::commands::progress::{self, print_json};
use crate::commands::{get, tracker_client};
use crate::driver::peer::{self, PeerHandle, PeerOptions, UserEvent};
use crate::io::http::{self, OriginInfo};
use crate::io::signals::{Stop, StopSignals};
use crate::io::store::{self, Destination, PartPaths};

/// JSON progress lines at most this often.
const JSON_PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
/// Whole chunks fetched from the origin to check a URL-to-content hint before the
/// content comes from peers (the last one and three at random): at most this many times
/// [`MAPPING_CHECK_CHUNK_LEN_MAX`] origin bytes per fetch served by the swarm.
const MAPPING_CHECK_CHUNKS: u32 = 4;
/// Largest chunk a hint's content may have to be checked (what `p2p fetch` publishes
/// with); larger ones are not checked, and the file comes from the origin.
const MAPPING_CHECK_CHUNK_LEN_MAX: u32 = CHUNK_SIZE_DEFAULT;
/// How long after a range settles the resume record is saved (one sync for the ranges
/// that settle meanwhile).
const RECORD_SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// `--range-size` bounds (the core clamps to the same).
const RANGE_SIZE_MIN: u32 = p2p_core::peer::RANGE_LEN_MIN;
const RANGE_SIZE_MAX: u32 = p2p_core::wire::BLOCK_LEN_MAX;

pub async fn run(args: FetchArgs, signals: &mut StopSignals) -> anyhow::Result<ExitCode> {
    let url = validated_url(&args)?;
    let secret = crate::io::keys::read_one_secret(&args.secret_file)?;
    let info = head(&url, args.json).await?;
    let origin = info.origin_key(&url);

    // The swarm first: a complete copy of this exact version means no origin traffic.
    if let Some(get_args) = from_swarm(&args, &secret, &url, &origin, &info).await {
        return get::run(get_args, signals).await;
    }

    let final_path = final_path(args.output.as_deref(), &url);
    let paths = PartPaths::for_final(final_path);
    let (file, record) = open_part(&args, &url, &info, &paths).await?;
    let file = Arc::new(file);
    let peer = peer::start(PeerOptions {
        secret,
        listen: Some(args.listen),
        advertise_host: None,
        trackers: vec![args.tracker.clone()],
        more_trackers: Vec::new(),
        upload_limit: None,
        locate_interval: None,
        help_others: false,
        origin_connections: Some(args.origin_connections),
        origin_policy: Default::default(),
        address_book: None,
    })
    .await?;

    let started = Instant::now();
    let resumable = record.is_some();
    let fetched_by = match download(&peer, &args, &url, &info, file.clone(), record, signals).await
    {
        Ok(fetched_by) => fetched_by,
        Err(failure) => return give_up(peer, &args, &url, &paths, failure, resumable).await,
    };
    let elapsed = started.elapsed();

    let finished = check_and_finalize(&paths, file.clone(), args.force, args.sha256.clone()).await;
    drop(file);
    let (manifest, sha256) = match finished {
        Ok(finished) => finished,
        Err(reason) => {
            peer.shutdown().await;
            return fail(&args, &url, &reason);
        }
    };
    report_participants(&fetched_by, info.size, elapsed);

    // Publish, keyed also by URL and validator, so the next fetch comes from peers.
    let content_id = manifest.content_id();
    let published = peer::open_published(&paths.final_path)?;
    peer.publish(manifest, published).await;
    if !info.validator.is_empty() {
        peer.set_origin(content_id, origin).await;
    }

    report_complete(
        &args,
        &paths,
        content_id,
        &sha256,
        &info,
        elapsed,
        &fetched_by,
    );
    seed_or_stop(peer, &args, &paths, content_id, signals).await
}

/// The URL to fetch, once it and `--range-size` are known to be usable.
fn validated_url(args: &FetchArgs) -> anyhow::Result<String> {
    let url = args.url.trim().to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(UsageError(format!("'{url}' is not an http:// or https:// URL")).into());
    }
    if !(RANGE_SIZE_MIN..=RANGE_SIZE_MAX).contains(&args.range_size) {
        return Err(UsageError(format!(
            "--range-size must be between {RANGE_SIZE_MIN} and {RANGE_SIZE_MAX} bytes"
        ))
        .into());
    }
    Ok(url)
}

/// `HEAD`: the file's size, validator and range support.
async fn head(url: &str, json: bool) -> anyhow::Result<OriginInfo> {
    let head_url = url.to_string();
    let info = smol::unblock(move || http::head(&head_url)).await?;
    tracing::info!(%url, size = info.size, validator = %info.validator, ranges = info.ranges, "HEAD");
    if json {
        print_json(&json!({
            "event": "head",
            "url": url,
            "size": info.size,
            "validator": info.validator,
            "ranges": info.ranges,
        }));
    }
    Ok(info)
}

/// Asks the tracker whether the swarm has this URL at this validator; if it does, the
/// arguments of the `p2p get` that downloads it from peers.
async fn from_swarm(
    args: &FetchArgs,
    secret: &p2p_core::secure::SwarmSecret,
    url: &str,
    origin: &str,
    info: &OriginInfo,
) -> Option<GetArgs> {
    if info.validator.is_empty() {
        tracing::warn!(
            "the origin gives no ETag or Last-Modified: the swarm cannot tell versions apart, so it is not asked"
        );
        return None;
    }
    if !info.ranges {
        // Without ranges the hint cannot be checked against the origin but by a whole GET.
        return None;
    }
    let content_id = match tracker_client::find_origin(&args.tracker, secret, origin).await {
        Ok(Some(content_id)) => content_id,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!("{e:#}; fetching from the origin");
            return None;
        }
    };
    // The tracker's word is a hint, which any member could have planted: the content
    // must be the origin's, checked by a few whole chunks, before a byte comes from peers.
    if let Err(reason) = check_mapping(args, secret, url, info, content_id).await {
        eprintln!(
            "warning: the swarm ties {url} to {content_id}, which is not the origin's file \
             ({reason}); fetching from the origin instead"
        );
        if args.json {
            print_json(&json!({
                "event": "false_mapping",
                "content_id": content_id.to_string(),
                "reason": reason,
            }));
        }
        return None;
    }
    eprintln!("the swarm already has {url} ({content_id}); downloading it from peers");
    if args.json {
        print_json(&json!({"event": "from_swarm", "content_id": content_id.to_string()}));
    }
    // The name comes from the URL or `-o`, never from the content's manifest.
    let output = final_path(args.output.as_deref(), url);
    Some(GetArgs {
        target: content_id.to_string(),
        output: Some(output),
        tracker: Some(args.tracker.clone()),
        secret_file: Some(args.secret_file.clone()),
        listen: args.listen,
        seed: args.seed,
        only: Vec::new(),
        json: args.json,
        force: args.force,
        upload_limit: None,
        sha256: args.sha256.clone(),
        // A fetch names its tracker: the swarm is not looked for on the LAN.
        no_mdns: true,
    })
}

/// Whether the content the tracker ties to the URL is the origin's file: the same size,
/// then with `--sha256` that hash, else [`MAPPING_CHECK_CHUNKS`] whole chunks (the last
/// and others at random, chosen with OS randomness so a planter cannot guess them) fetched
/// from the origin matching the manifest's chain values. The validator matched already:
/// it is part of the key the tracker found the content by.
async fn check_mapping(
    args: &FetchArgs,
    secret: &p2p_core::secure::SwarmSecret,
    url: &str,
    info: &OriginInfo,
    content_id: ContentId,
) -> Result<(), String> {
    let manifest = tracker_client::get_manifest(&args.tracker, secret, content_id)
        .await
        .map_err(|e| format!("{e:#}"))?;
    if manifest.size != info.size {
        return Err(format!(
            "it is {} bytes, the origin's file {}",
            manifest.size, info.size
        ));
    }
    if let Some(expected) = &args.sha256 {
        // The strong check, and free: the manifest's last chain value is the file's
        // SHA-256, and every chunk from peers is checked against the manifest.
        let found = to_hex(&manifest.file_sha256());
        return if &found == expected {
            Ok(())
        } else {
            Err(format!("its SHA-256 is {found}, not the --sha256 given"))
        };
    }
    if manifest.chunk_size > MAPPING_CHECK_CHUNK_LEN_MAX {
        return Err(format!(
            "its chunks of {} bytes are too large to check against the origin",
            manifest.chunk_size
        ));
    }
    let mut seed = [0u8; 8];
    getrandom::getrandom(&mut seed).map_err(|e| format!("no OS randomness: {e}"))?;
    let chunks = manifest.chunks_to_check(MAPPING_CHECK_CHUNKS, u64::from_le_bytes(seed));
    for chunk_index in chunks {
        let Some(check) = manifest.chunk_check(chunk_index) else {
            return Err(format!("its manifest has no chunk {chunk_index}"));
        };
        let (offset, length) = (
            manifest.chunk_offset(chunk_index),
            manifest.chunk_len(chunk_index),
        );
        let (fetch_url, validator) = (url.to_string(), info.validator.clone());
        let never_cancelled = std::sync::atomic::AtomicBool::new(false);
        let data = smol::unblock(move || {
            http::fetch_range(&fetch_url, &validator, offset, length, &never_cancelled)
        })
        .await
        .map_err(|e| {
            format!(
                "cannot fetch chunk {chunk_index} from the origin: {}",
                e.reason
            )
        })?;
        if !check.matches(&data) {
            return Err(format!(
                "chunk {chunk_index} (bytes {offset}-{}) differs from the origin's",
                offset + u64::from(length) - 1
            ));
        }
    }
    Ok(())
}

/// The resume record of a cooperative fetch, kept beside `NAME.part`: the ranges written
/// and synced, under a key of what makes them valid (URL, validator, size, range length).
struct FetchRecord {
    key: ContentId,
    paths: PartPaths,
    ranges: ChunkSet,
}

/// The key of a fetch's record: another validator (the file changed at the origin), size
/// or range length makes the ranges on disk worthless, and the fetch starts over.
fn fetch_key(url: &str, info: &OriginInfo, range_len: u32) -> ContentId {
    let mut hash = Sha256::new();
    for part in [
        url,
        &info.validator,
        &info.size.to_string(),
        &range_len.to_string(),
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    ContentId(hash.finalize().into())
}

/// `NAME.part` and, when the fetch can resume (the origin takes ranges and names its
/// version with a validator), its record: the ranges an earlier run left on disk when its
/// record matches, else none and a fresh part file.
async fn open_part(
    args: &FetchArgs,
    url: &str,
    info: &OriginInfo,
    paths: &PartPaths,
) -> anyhow::Result<(File, Option<FetchRecord>)> {
    let range_len = args.range_size;
    let range_count = u32::try_from(info.size.div_ceil(u64::from(range_len))).ok();
    let Some(range_count) = range_count.filter(|_| info.ranges && !info.validator.is_empty())
    else {
        return Ok((create_part(paths, info.size, args.force).await?, None));
    };
    let key = fetch_key(url, info, range_len);
    let (size, force, part_paths) = (info.size, args.force, paths.clone());
    let (file, on_disk) =
        smol::unblock(move || store::open_fetch_part(&part_paths, size, force, key, range_count))
            .await
            .map_err(anyhow::Error::msg)?;
    if let Some(on_disk) = &on_disk {
        eprintln!(
            "resuming {}: {} of {range_count} ranges already on disk",
            paths.part.display(),
            on_disk.count()
        );
    }
    let record = FetchRecord {
        key,
        paths: paths.clone(),
        ranges: on_disk.unwrap_or_else(|| ChunkSet::new(range_count)),
    };
    Ok((file, Some(record)))
}

/// Refuses to replace an existing file without `--force`, then creates `NAME.part` at its
/// full size, for ranges to be written in place (never through a link: see `store`).
async fn create_part(paths: &PartPaths, size: u64, force: bool) -> anyhow::Result<File> {
    let paths = paths.clone();
    smol::unblock(move || store::create_part(&paths, size, force))
        .await
        .map_err(anyhow::Error::msg)
}

/// Every byte into the part file: with the swarm's helpers when the origin takes ranges,
/// else alone.
async fn download(
    peer: &PeerHandle,
    args: &FetchArgs,
    url: &str,
    info: &OriginInfo,
    file: Arc<File>,
    record: Option<FetchRecord>,
    signals: &mut StopSignals,
) -> Result<FetchedBy, Failure> {
    if info.ranges {
        cooperative(peer, args, url, info, file, record, signals).await
    } else {
        eprintln!(
            "warning: the origin does not accept byte ranges (no 'Accept-Ranges: bytes'); downloading alone with one plain GET"
        );
        alone(args, url, info, file, signals).await
    }
}

/// A download that ended early: the peer stopped, and the user told why. The part file is
/// removed, unless a signal stopped a fetch that can resume (as `p2p get` does, it is kept
/// with its record for the same command to resume).
async fn give_up(
    peer: PeerHandle,
    args: &FetchArgs,
    url: &str,
    paths: &PartPaths,
    failure: Failure,
    resumable: bool,
) -> anyhow::Result<ExitCode> {
    let keep = resumable && matches!(failure, Failure::Stopped(_));
    if !keep {
        // The record first: one left without its part file would be worthless.
        let _ = std::fs::remove_file(&paths.record);
        let _ = std::fs::remove_file(&paths.part);
    }
    peer.shutdown().await;
    match failure {
        Failure::Stopped(stop) => {
            let what = match stop {
                Stop::Interrupt => "interrupted",
                Stop::Terminate => "terminated",
            };
            if keep {
                eprintln!("{what}; run the same command again to resume");
            } else {
                eprintln!("{what}; removed {}", paths.part.display());
            }
            if args.json {
                print_json(&json!({"event": what}));
            }
            Ok(stop.exit_code())
        }
        Failure::Failed(reason) => fail(args, url, &reason),
    }
}

/// Check, sync, rename: a file under its final name is always complete. One read of
/// the file gives both its manifest (to publish) and its SHA-256 (the last chunk's hash).
async fn check_and_finalize(
    paths: &PartPaths,
    file: Arc<File>,
    force: bool,
    expected_sha256: Option<String>,
) -> Result<(Manifest, String), String> {
    let paths = paths.clone();
    smol::unblock(move || -> Result<(Manifest, String), String> {
        let name = paths
            .final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Through the handle the ranges were written through, not the name.
        let manifest = store::hash_open_file(&file, &name, CHUNK_SIZE_DEFAULT)
            .map_err(|e| format!("cannot read {} back: {e:#}", paths.part.display()))?;
        let sha256 = to_hex(&manifest.file_sha256());
        if let Some(expected) = expected_sha256
            && sha256 != expected
        {
            let _ = std::fs::remove_file(&paths.part);
            return Err(format!(
                "SHA-256 mismatch: expected {expected}, got {sha256}; the download was removed"
            ));
        }
        store::finalize(&file, &paths, force)?;
        Ok((manifest, sha256))
    })
    .await
}

/// Stops the peer, or (`--seed`) serves the file until told to stop.
async fn seed_or_stop(
    peer: PeerHandle,
    args: &FetchArgs,
    paths: &PartPaths,
    content_id: ContentId,
    signals: &mut StopSignals,
) -> anyhow::Result<ExitCode> {
    if !args.seed {
        peer.shutdown().await;
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "seeding {} ({content_id}); Ctrl-C to stop",
        paths.final_path.display()
    );
    let stop = signals.next().await;
    peer.shutdown().await;
    Ok(stop.exit_code())
}

/// The file is complete: a JSON line, or its SHA-256 and path as `sha256sum` prints them.
fn report_complete(
    args: &FetchArgs,
    paths: &PartPaths,
    content_id: ContentId,
    sha256: &str,
    info: &OriginInfo,
    elapsed: Duration,
    fetched_by: &FetchedBy,
) {
    if args.json {
        let by: serde_json::Map<String, serde_json::Value> = fetched_by
            .iter()
            .map(|(who, (bytes, ranges))| (who.clone(), json!({"bytes": bytes, "ranges": ranges})))
            .collect();
        print_json(&json!({
            "event": "complete",
            "content_id": content_id.to_string(),
            "path": paths.final_path.display().to_string(),
            "sha256": sha256,
            "size": info.size,
            "seconds": elapsed.as_secs_f64(),
            "fetched_by": by,
        }));
    } else {
        // sha256sum's format, as `p2p get` prints it.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{sha256}  {}", paths.final_path.display());
        let _ = out.flush();
    }
}

/// How a download ended early.
enum Failure {
    Stopped(Stop),
    Failed(String),
}

/// Bytes and ranges per participant ("local" or a helper's address).
type FetchedBy = BTreeMap<String, (u64, u32)>;

fn fail(args: &FetchArgs, url: &str, reason: &str) -> anyhow::Result<ExitCode> {
    eprintln!("error: fetch of {url} failed: {reason}");
    if args.json {
        print_json(&json!({"event": "failed", "reason": reason}));
    }
    Ok(ExitCode::FAILURE)
}

/// The file's final path: `-o` as `p2p get` reads it, the URL's last path segment for a
/// directory.
fn final_path(output: Option<&Path>, url: &str) -> PathBuf {
    let destination = Destination::from_output(output);
    match destination {
        Destination::File(path) => path,
        Destination::Dir(dir) => {
            let path = url.split(['?', '#']).next().unwrap_or(url);
            let after_scheme = path.split_once("://").map_or(path, |(_, rest)| rest);
            let segment = after_scheme
                .split_once('/')
                .map_or("", |(_, p)| p)
                .rsplit('/')
                .next()
                .unwrap_or("");
            let name = p2p_core::filename::sanitize_file_name(segment)
                .unwrap_or_else(|_| "download".to_string());
            dir.join(name)
        }
    }
}

fn new_bar(json: bool, size: u64) -> Option<ProgressBar> {
    (!json && progress::stderr_is_terminal()).then(|| {
        let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
        bar.set_style(progress::bar_style());
        bar.enable_steady_tick(progress::BAR_TICK_INTERVAL);
        bar
    })
}

/// "local 3.0 MiB, 127.0.0.1:4001 2.0 MiB"
fn describe_participants(by: &[(String, u64)]) -> String {
    by.iter()
        .map(|(who, bytes)| format!("{who} {}", HumanBytes(*bytes)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn report_participants(fetched_by: &FetchedBy, size: u64, elapsed: Duration) {
    let secs = elapsed.as_secs_f64().max(1e-3);
    eprintln!(
        "fetched {} in {:.2} s ({}/s) by {} participant(s):",
        HumanBytes(size),
        secs,
        HumanBytes((size as f64 / secs) as u64),
        fetched_by.len()
    );
    for (who, (bytes, ranges)) in fetched_by {
        eprintln!(
            "  {who:<24} {ranges:>6} ranges {:>11}",
            HumanBytes(*bytes).to_string()
        );
    }
}

/// Runs the cooperative job to its end.
async fn cooperative(
    peer: &PeerHandle,
    args: &FetchArgs,
    url: &str,
    info: &OriginInfo,
    file: Arc<File>,
    mut record: Option<FetchRecord>,
    signals: &mut StopSignals,
) -> Result<FetchedBy, Failure> {
    let spec = FetchSpec {
        url: url.to_string(),
        validator: info.validator.clone(),
        size: info.size,
        range_len: args.range_size,
        // `--sha256` checks every byte once the file is whole: spot checks would only
        // cost origin bytes.
        spot_checks: args.sha256.is_none(),
    };
    let on_disk = record.as_ref().map(|r| r.ranges.clone());
    let job_id = peer
        .fetch(spec, file.clone(), on_disk)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let mut watch = JobWatch::new(job_id, args.json, info.size);
    // When the record is next saved: a while after a range settled, so that one sync
    // covers many ranges.
    let mut save_at: Option<Instant> = None;
    loop {
        let save_due = async {
            match save_at {
                Some(at) => smol::Timer::at(at).await,
                None => future::pending().await,
            };
            Next::SaveRecord
        };
        let next = future::or(
            future::or(
                async { Next::Event(peer.user_events.recv().await.ok()) },
                async { Next::Stop(signals.next().await) },
            ),
            save_due,
        )
        .await;
        let event = match next {
            Next::Event(Some(event)) => event,
            Next::Event(None) => {
                return Err(Failure::Failed("the peer stopped unexpectedly".into()));
            }
            Next::Stop(stop) => {
                if let Some(bar) = &watch.bar {
                    bar.finish_and_clear();
                }
                peer.cancel_fetch(job_id).await;
                if let Some(record) = &record {
                    save_record(&file, record).await;
                }
                return Err(Failure::Stopped(stop));
            }
            Next::SaveRecord => {
                save_at = None;
                if let Some(record) = &record {
                    save_record(&file, record).await;
                }
                continue;
            }
        };
        let UserEvent::Notice(notice) = event else {
            continue;
        };
        let (settled, range_index) = match notice {
            PeerNotice::RangeSettled {
                job_id: j,
                range_index,
            } if j == job_id => (true, range_index),
            PeerNotice::RangeDropped {
                job_id: j,
                range_index,
            } if j == job_id => (false, range_index),
            notice => {
                if let Some(end) = watch.on_notice(notice) {
                    return end;
                }
                continue;
            }
        };
        if let Some(record) = &mut record {
            if settled {
                record.ranges.insert(range_index);
            } else {
                record.ranges.remove(range_index);
            }
            save_at.get_or_insert_with(|| Instant::now() + RECORD_SAVE_INTERVAL);
        }
    }
}

/// What the cooperative loop wakes for.
enum Next {
    Event(Option<UserEvent>),
    Stop(Stop),
    SaveRecord,
}

/// Syncs the part file and saves the record; a failure only costs resuming.
async fn save_record(file: &Arc<File>, record: &FetchRecord) {
    let (file, paths, key, ranges) = (
        file.clone(),
        record.paths.clone(),
        record.key,
        record.ranges.clone(),
    );
    if let Err(e) =
        smol::unblock(move || store::save_fetch_record(&file, &paths, key, ranges)).await
    {
        tracing::warn!("cannot save the resume record: {e}");
    }
}

/// What the user sees of a cooperative job: its progress bar or JSON lines, and the
/// bytes and ranges each participant fetched.
struct JobWatch {
    job_id: u64,
    json: bool,
    bar: Option<ProgressBar>,
    fetched_by: FetchedBy,
    last_json: Option<Instant>,
}

impl JobWatch {
    fn new(job_id: u64, json: bool, size: u64) -> JobWatch {
        let bar = new_bar(json, size);
        if let Some(bar) = &bar {
            bar.set_message("local");
        }
        JobWatch {
            job_id,
            json,
            bar,
            fetched_by: FetchedBy::new(),
            last_json: None,
        }
    }

    /// Shows one notice of the peer; returns how the job ended once it has.
    fn on_notice(&mut self, notice: PeerNotice) -> Option<Result<FetchedBy, Failure>> {
        let job_id = self.job_id;
        match notice {
            PeerNotice::RangeFetched {
                job_id: j,
                range_index,
                offset,
                length,
                by,
            } if j == job_id => self.on_range_fetched(range_index, offset, length, by),
            PeerNotice::FetchProgress {
                job_id: j,
                bytes_done,
                size,
                by_participant,
            } if j == job_id => self.on_progress(bytes_done, size, by_participant),
            PeerNotice::HelperCaught {
                job_id: j,
                helper,
                reason,
                ranges_refetched,
                ..
            } if j == job_id => self.on_helper_caught(helper, reason, ranges_refetched),
            PeerNotice::HelperLeft {
                job_id: j,
                helper,
                reason,
            } if j == job_id => {
                tracing::warn!(%helper, "{reason}");
                if self.json {
                    print_json(
                        &json!({"event": "helper_left", "helper": helper, "reason": reason}),
                    );
                }
            }
            PeerNotice::FetchComplete { job_id: j } if j == job_id => {
                if let Some(bar) = &self.bar {
                    bar.finish_and_clear();
                }
                return Some(Ok(std::mem::take(&mut self.fetched_by)));
            }
            PeerNotice::FetchFailed { job_id: j, reason } if j == job_id => {
                if let Some(bar) = &self.bar {
                    bar.abandon();
                }
                return Some(Err(Failure::Failed(reason)));
            }
            _ => {}
        }
        None
    }

    /// A helper delivered bytes the origin does not have: what it fetched no longer
    /// counts, and the user hears of it whatever the verbosity.
    fn on_helper_caught(&mut self, helper: String, reason: String, ranges_refetched: u32) {
        self.fetched_by.remove(&helper);
        let line = format!(
            "warning: helper {helper} delivered bytes the origin does not have ({reason}); \
             banned from this fetch, its {ranges_refetched} range(s) fetched again"
        );
        match &self.bar {
            Some(bar) => bar.println(&line),
            None => eprintln!("{line}"),
        }
        if self.json {
            print_json(&json!({
                "event": "helper_caught",
                "helper": helper,
                "reason": reason,
                "ranges_refetched": ranges_refetched,
            }));
        }
    }

    fn on_range_fetched(&mut self, range_index: u32, offset: u64, length: u32, by: String) {
        tracing::info!(range = range_index, offset, length, by = %by, "range fetched");
        let entry = self.fetched_by.entry(by.clone()).or_default();
        entry.0 += u64::from(length);
        entry.1 += 1;
        if self.json {
            print_json(&json!({
                "event": "range",
                "index": range_index,
                "offset": offset,
                "length": length,
                "by": by,
            }));
        }
    }

    fn on_progress(&mut self, bytes_done: u64, size: u64, by_participant: Vec<(String, u64)>) {
        if let Some(bar) = &self.bar {
            bar.set_position(bytes_done);
            bar.set_message(describe_participants(&by_participant));
        }
        let due = self
            .last_json
            .is_none_or(|at| at.elapsed() >= JSON_PROGRESS_INTERVAL);
        if self.json && (due || bytes_done == size) {
            self.last_json = Some(Instant::now());
            let by: serde_json::Map<String, serde_json::Value> = by_participant
                .into_iter()
                .map(|(who, bytes)| (who, json!(bytes)))
                .collect();
            print_json(&json!({
                "event": "progress",
                "bytes_done": bytes_done,
                "size": size,
                "by": by,
            }));
        }
    }
}

/// An origin without ranges: one plain `GET`, this peer alone.
async fn alone(
    args: &FetchArgs,
    url: &str,
    info: &OriginInfo,
    file: Arc<File>,
    signals: &mut StopSignals,
) -> Result<FetchedBy, Failure> {
    let bar = new_bar(args.json, info.size);
    let (url_owned, info_owned) = (url.to_string(), info.clone());
    let progress_bar = bar.clone();
    let work = smol::unblock(move || {
        http::fetch_whole(&url_owned, &info_owned, &file, |done| {
            if let Some(bar) = &progress_bar {
                bar.set_position(done);
            }
        })
    });
    let result = future::or(async { Ok(work.await) }, async {
        Err(signals.next().await)
    })
    .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(Ok(bytes)) => {
            let mut by = FetchedBy::new();
            by.insert("local".into(), (bytes, 1));
            Ok(by)
        }
        Ok(Err(e)) => Err(Failure::Failed(format!("{e:#}"))),
        Err(stop) => Err(Failure::Stopped(stop)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_url() {
        let dir = Path::new("/nonexistent-dir-for-test/");
        assert_eq!(
            final_path(Some(dir), "http://h:1/a/b/file.iso?x=1"),
            dir.join("file.iso")
        );
        assert_eq!(final_path(Some(dir), "http://h:1/"), dir.join("download"));
        assert_eq!(final_path(Some(dir), "http://h:1"), dir.join("download"));
        assert_eq!(final_path(Some(dir), "http://h/..%2f"), dir.join("..%2f"));
    }
}
