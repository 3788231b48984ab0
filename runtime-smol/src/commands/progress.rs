//! Showing a download's progress: a bar on a terminal (standard error), JSON lines on
//! standard output with `--json`, nothing otherwise (logs still say what happens).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use p2p_core::peer::PeerNotice;
use serde_json::json;

use crate::driver::peer::UserEvent;

/// JSON progress lines are written at most this often (the last one always is).
const JSON_PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// How often a progress bar redraws itself (its spinner turns even when no bytes arrive).
pub const BAR_TICK_INTERVAL: Duration = Duration::from_millis(200);

const BAR_TEMPLATE: &str = "{prefix}{spinner:.green} [{elapsed_precise}] [{wide_bar:.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}";

/// The style of every progress bar.
pub fn bar_style() -> ProgressStyle {
    // The template is a constant that is known to parse.
    ProgressStyle::with_template(BAR_TEMPLATE)
        .unwrap()
        .progress_chars("=> ")
}

/// Whether progress bars should be drawn: only on a terminal.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Progress of one `p2p get`.
pub struct Reporter {
    bar: Option<ProgressBar>,
    /// The connected peers' short key fingerprints, for the bar.
    peers_shown: String,
    json: bool,
    last_json_at: Option<Instant>,
}

impl Reporter {
    pub fn new(json: bool) -> Reporter {
        let bar = (!json && stderr_is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(bar_style());
            bar.set_message("looking for peers");
            bar.enable_steady_tick(BAR_TICK_INTERVAL);
            bar
        });
        Reporter {
            bar,
            peers_shown: String::new(),
            json,
            last_json_at: None,
        }
    }

    pub fn on_event(&mut self, event: &UserEvent) {
        match event {
            UserEvent::Notice(PeerNotice::Progress {
                content_id,
                chunks_have,
                chunk_count,
                bytes_have,
                size,
                sources,
            }) => {
                if let Some(bar) = &self.bar {
                    bar.set_length(*size);
                    bar.set_position(*bytes_have);
                    bar.set_message(format!("{sources} peers{}", self.peers_shown));
                }
                let done = chunks_have == chunk_count;
                let due = self
                    .last_json_at
                    .is_none_or(|at| at.elapsed() >= JSON_PROGRESS_INTERVAL);
                if self.json && (due || done) {
                    self.last_json_at = Some(Instant::now());
                    print_json(&json!({
                        "event": "progress",
                        "content_id": content_id.to_string(),
                        "chunks_have": chunks_have,
                        "chunk_count": chunk_count,
                        "bytes_have": bytes_have,
                        "size": size,
                        "sources": sources,
                    }));
                }
            }
            UserEvent::Notice(PeerNotice::TrackerConnected { addr }) => {
                self.json_event(json!({"event": "tracker_connected", "addr": addr}));
            }
            UserEvent::Notice(PeerNotice::TrackerLost { addr }) => {
                self.json_event(json!({"event": "tracker_lost", "addr": addr}));
            }
            UserEvent::Notice(PeerNotice::PeerBanned {
                content_id,
                peer_id,
                addr,
            }) => {
                self.json_event(json!({
                    "event": "peer_banned",
                    "content_id": content_id.to_string(),
                    "peer_id": peer_id.to_string(),
                    "key_fingerprint": crate::commands::query::fingerprint(*peer_id),
                    "addr": addr,
                }));
            }
            UserEvent::Notice(_) => {}
            UserEvent::Peers { peer_ids } => {
                self.peers_shown = short_fingerprints(peer_ids);
            }
            UserEvent::TrackerRefused { addr } => {
                self.json_event(json!({"event": "tracker_refused", "addr": addr}));
            }
            UserEvent::Downloaded {
                content_id,
                path,
                sha256,
            } => {
                if let Some(bar) = &self.bar {
                    bar.finish_and_clear();
                }
                if self.json {
                    print_json(&json!({
                        "event": "complete",
                        "content_id": content_id.to_string(),
                        "path": path.display().to_string(),
                        "sha256": sha256,
                    }));
                }
            }
            UserEvent::DownloadFailed { content_id, reason } => {
                if let Some(bar) = &self.bar {
                    bar.abandon();
                }
                if self.json {
                    print_json(&json!({
                        "event": "failed",
                        "content_id": content_id.to_string(),
                        "reason": reason,
                    }));
                }
            }
        }
    }

    fn json_event(&self, value: serde_json::Value) {
        if self.json {
            print_json(&value);
        }
    }

    /// Removes the bar (an interrupted download).
    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Fingerprints shown on a bar.
const BAR_FINGERPRINTS_MAX: usize = 4;
/// Hex digits of a fingerprint on a bar: enough to tell a few peers apart.
const BAR_FINGERPRINT_LEN: usize = 8;

/// ` (keys ab12cd34 9f0e1d2c …)`: the first hex digits of each peer's key fingerprint.
fn short_fingerprints(peer_ids: &[p2p_core::PeerId]) -> String {
    if peer_ids.is_empty() {
        return String::new();
    }
    let mut shown: Vec<String> = peer_ids
        .iter()
        .take(BAR_FINGERPRINTS_MAX)
        .map(|id| crate::commands::query::fingerprint(*id)[..BAR_FINGERPRINT_LEN].to_string())
        .collect();
    if peer_ids.len() > BAR_FINGERPRINTS_MAX {
        shown.push("…".into());
    }
    format!(" (keys {})", shown.join(" "))
}

/// One JSON value on its own line of standard output. A closed pipe is not an error here:
/// the consumer went away, and the download goes on.
pub fn print_json(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Bars for several downloads at once (the demo), or none off a terminal.
pub struct MultiBars {
    multi: Option<MultiProgress>,
}

impl MultiBars {
    pub fn new() -> MultiBars {
        MultiBars {
            multi: stderr_is_terminal()
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// A bar labelled `label`, or `None` off a terminal.
    pub fn add(&self, label: &str, size: u64) -> Option<ProgressBar> {
        let multi = self.multi.as_ref()?;
        let bar = multi.add(ProgressBar::new(size));
        bar.set_style(bar_style());
        bar.set_prefix(format!("{label:>8} "));
        bar.enable_steady_tick(BAR_TICK_INTERVAL);
        Some(bar)
    }

    /// Prints a line above the bars (or plainly off a terminal).
    pub fn println(&self, line: &str) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}
