//! `p2p`: the smol runtime that drives the core machines with real sockets, timers and
//! files, and the command people use.

mod cli;
mod commands;
mod driver;
mod io;

use std::fmt;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};
use crate::commands::{demo, fetch, get, helper, progress, query, share, tracker};
use crate::driver::tracker::ListedAddresses;
use crate::io::keys;
use crate::io::signals::StopSignals;

/// A mistake in how the command was called (like clap's own): exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// glibc's malloc tunable that keeps chunk buffers out of its arenas (see `fixed_mmap_threshold`).
const MMAP_THRESHOLD_VAR: &str = "MALLOC_MMAP_THRESHOLD_";
/// Buffers this large or larger get their own mapping, returned to the OS when freed.
const MMAP_THRESHOLD_BYTES: &str = "131072";

fn main() -> ExitCode {
    fixed_mmap_threshold();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    raise_open_files_limit();
    match run(cli) {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Every connection is a file descriptor, and a tracker holds one per member of its
/// swarms: the soft limit (often 1,024) goes up to the hard one, as far as it is allowed.
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some() && limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!("could not raise the open files limit: {e}");
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut signals = StopSignals::install()?;
    smol::block_on(async {
        match cli.command {
            Command::Tracker {
                listen,
                secret_files,
                trust_claimed_addresses,
            } => {
                let addresses = if trust_claimed_addresses {
                    ListedAddresses::Claimed
                } else {
                    ListedAddresses::Observed
                };
                tracker::run(listen, &secret_files, addresses, &mut signals).await
            }
            Command::NewSecret { file } => tracker::new_secret(&file),
            Command::Share {
                files,
                collection,
                tracker,
                secret_file,
                listen,
                advertise,
                chunk_size,
                upload_limit,
                no_help,
                origin_connections,
                origins,
                no_mdns,
            } => {
                let options = share::ShareOptions {
                    files,
                    collection,
                    tracker,
                    secret_file,
                    listen,
                    advertise,
                    chunk_size,
                    upload_limit,
                    help_others: !no_help,
                    origin_connections,
                    origin_policy: origins.policy(),
                    lan_discovery: !no_mdns,
                };
                share::run(options, &mut signals).await
            }
            Command::Get(args) => get::run(args, &mut signals).await,
            Command::Fetch(args) => fetch::run(args, &mut signals).await,
            Command::Helper {
                tracker,
                secret_file,
                listen,
                origin_connections,
                origins,
            } => {
                let secret = keys::read_one_secret(&secret_file)?;
                let options = helper::HelperOptions {
                    tracker,
                    listen,
                    origin_connections,
                    origin_policy: origins.policy(),
                };
                helper::run(options, secret, &mut signals).await
            }
            Command::Ls(args) => query::ls(args).await,
            Command::Peers(args) => query::peers(args).await,
            Command::Demo {
                peers,
                size,
                upload_limit,
                chunk_size,
                no_baseline,
            } => {
                let options = demo::DemoOptions {
                    peers,
                    size,
                    upload_limit: (upload_limit > 0).then_some(upload_limit),
                    chunk_size,
                    baseline: !no_baseline,
                };
                demo::run(options, &mut signals).await
            }
        }
    })
}

/// Chunk buffers (1 MiB) are allocated on the executor thread and freed on blocking-pool
/// threads. glibc raises its mmap threshold each time such a buffer is freed, after which
/// they come from per-thread arenas that never shrink: a 1 GiB download peaked at 540 MB of
/// RSS that way, and at 17 MB with the threshold fixed. The threshold can only be fixed
/// before the first allocation (without `unsafe`): through the environment, so the process
/// re-executes itself once with the variable set. Same pid, same arguments; if the exec
/// fails, we simply go on.
fn fixed_mmap_threshold() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(MMAP_THRESHOLD_VAR).is_some() || !cfg!(target_env = "gnu") {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let error = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env(MMAP_THRESHOLD_VAR, MMAP_THRESHOLD_BYTES)
        .exec();
    tracing::debug!("cannot re-execute with a fixed mmap threshold: {error}");
}

/// Logs to standard error: warnings by default, more with -v; RUST_LOG wins.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,p2p=debug,p2p_core=debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(progress::stderr_is_terminal())
        .with_target(false)
        .init();
}
