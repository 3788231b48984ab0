//! The command line, as clap parses it. `main` turns it into work; nothing here does any.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Where a tracker listens, and where clients look for one, unless told otherwise.
pub const DEFAULT_TRACKER_ADDR: &str = "127.0.0.1:7070";
/// Where peers listen unless told otherwise: loopback, any free port.
pub const DEFAULT_PEER_LISTEN: &str = "127.0.0.1:0";

#[derive(Parser, Debug)]
#[command(
    name = "p2p",
    version,
    about = "Peer-to-peer file distribution: share a file once, and every machine that gets it serves it too.",
    after_help = "\
Examples:
  p2p demo                                  # see it work: 1 seeder, 5 peers, one process
  p2p share big.iso                         # prints a ticket; keep it running
  p2p get 'p2p:...ticket...' -o ~/Downloads # on another shell or machine
  p2p tracker --listen 0.0.0.0:7070         # a standalone tracker for a LAN
  p2p ls --tracker 10.0.0.5:7070            # what the swarm offers
  p2p peers --json                          # who is in it

Logs go to standard error: -v for more, or RUST_LOG=p2p=debug,p2p_core=debug."
)]
pub struct Cli {
    /// More logging (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Swarm name: peers and trackers only talk within one swarm.
    #[arg(long, global = true, default_value = "default", value_name = "NAME")]
    pub swarm: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a tracker: it keeps track of peers and who holds which chunks.
    #[command(after_help = "\
Examples:
  p2p tracker                          # 127.0.0.1:7070
  p2p tracker --listen 0.0.0.0:7070    # reachable from the LAN")]
    Tracker {
        /// Address to listen on.
        #[arg(long, default_value = DEFAULT_TRACKER_ADDR, value_name = "ADDR")]
        listen: SocketAddr,
    },

    /// Publish files and serve them until stopped (Ctrl-C). Prints one ticket per file on
    /// standard output.
    #[command(after_help = "\
Examples:
  p2p share movie.mkv                      # embedded tracker; the ticket says where
  p2p share a.bin b.bin --tracker 10.0.0.5:7070 --listen 0.0.0.0:7000
  TICKET=$(p2p share big.iso | head -1)    # tickets alone on standard output")]
    Share {
        /// Files to publish.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Tracker to announce to. Without it an embedded tracker runs in this process.
        #[arg(long, value_name = "ADDR")]
        tracker: Option<String>,
        /// Address to serve peers on (port 0: any free port).
        #[arg(long, default_value = DEFAULT_PEER_LISTEN, value_name = "ADDR")]
        listen: SocketAddr,
        /// Chunk size in bytes (16 KiB to 64 MiB).
        #[arg(long, default_value_t = p2p_core::manifest::CHUNK_SIZE_DEFAULT, value_name = "BYTES")]
        chunk_size: u32,
        /// Cap on upload speed, bytes per second.
        #[arg(long, value_name = "BYTES_PER_SEC")]
        upload_limit: Option<u64>,
    },

    /// Download a file from the swarm, then print its path and SHA-256.
    #[command(after_help = "\
Examples:
  p2p get 'p2p:...'                    # the ticket `p2p share` printed
  p2p get 3f2a...c9 --tracker 10.0.0.5:7070 -o /tmp/
  p2p get big.iso                      # by name, as `p2p ls` shows it
  p2p get 'p2p:...' --seed             # keep serving when done
  p2p get 'p2p:...' --json | jq .      # progress as JSON lines")]
    Get(GetArgs),

    /// List the files a tracker knows.
    Ls {
        #[arg(long, default_value = DEFAULT_TRACKER_ADDR, value_name = "ADDR")]
        tracker: String,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },

    /// List the peers a tracker knows.
    Peers {
        #[arg(long, default_value = DEFAULT_TRACKER_ADDR, value_name = "ADDR")]
        tracker: String,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },

    /// Run a tracker, a seeder and N peers in this process on loopback, distribute a
    /// generated file, verify every copy, and compare with one seeder serving everyone.
    #[command(after_help = "\
Examples:
  p2p demo                                  # 5 peers, 64 MiB, uploads capped at 100 MiB/s
  p2p demo --peers 10 --size 268435456
  p2p demo --upload-limit 0                 # no cap: loopback speed, CPU-bound")]
    Demo {
        /// Downloading peers.
        #[arg(long, default_value_t = 5, value_name = "N")]
        peers: usize,
        /// Size of the generated file, in bytes.
        #[arg(long, default_value_t = 64 * 1024 * 1024, value_name = "BYTES")]
        size: u64,
        /// Per-peer upload cap in bytes per second, standing in for a network link
        /// (loopback has none). 0: no cap.
        #[arg(long, default_value_t = 100 * 1024 * 1024, value_name = "BYTES_PER_SEC")]
        upload_limit: u64,
        /// Chunk size in bytes.
        #[arg(long, default_value_t = p2p_core::manifest::CHUNK_SIZE_DEFAULT, value_name = "BYTES")]
        chunk_size: u32,
        /// Skip the baseline run (one seeder serving every peer alone).
        #[arg(long)]
        no_baseline: bool,
    },
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// A ticket from `p2p share`, a content id (64 hex digits), or a file name as `p2p ls`
    /// shows it.
    #[arg(value_name = "TICKET|CONTENT_ID|NAME")]
    pub target: String,
    /// Where to write: a directory (existing, or ending in '/') or a file path. Default: the
    /// current directory, under the file's own name.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Tracker to use (instead of, or without, the ticket's).
    #[arg(long, value_name = "ADDR")]
    pub tracker: Option<String>,
    /// Address to serve other peers on while downloading (port 0: any free port).
    #[arg(long, default_value = DEFAULT_PEER_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Keep serving the file after the download (until Ctrl-C).
    #[arg(long)]
    pub seed: bool,
    /// Progress and the result as JSON lines on standard output.
    #[arg(long)]
    pub json: bool,
    /// Replace an existing file with other content at the destination.
    #[arg(long)]
    pub force: bool,
    /// Cap on upload speed, bytes per second.
    #[arg(long, value_name = "BYTES_PER_SEC")]
    pub upload_limit: Option<u64>,
}
