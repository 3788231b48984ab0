//! The command line, as clap parses it. `main` turns it into work; nothing here does any.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Where a tracker listens, and where clients look for one, unless told otherwise.
pub const DEFAULT_TRACKER_ADDR: &str = "127.0.0.1:7070";
/// The environment variable that turns LAN discovery (mDNS) off, as `--no-mdns` does.
pub const NO_MDNS_ENV: &str = "P2P_NO_MDNS";
/// Where helpers and fetchers listen unless told otherwise: loopback, any free port.
pub const DEFAULT_PEER_LISTEN: &str = "127.0.0.1:0";
/// Where `p2p share` and `p2p get` listen unless told otherwise: every interface, IPv4
/// and IPv6, any free port (see `io::bind`). Swarms are private, so this is safe: a
/// connection that does not prove the swarm's secret is closed during its handshake.
pub const EVERY_INTERFACE: &str = "[::]:0";

#[derive(Parser, Debug)]
#[command(
    name = "p2p",
    version,
    about = "Peer-to-peer file distribution: share a file once, and every machine that gets it serves it too.",
    after_help = "\
Examples:
  p2p demo                                  # see it work: 1 seeder, 5 peers, one process
  p2p share big.iso                         # prints a ticket; keep it running
  p2p get p2p2:...ticket... -o ~/Downloads  # on any machine that can reach this one
  p2p new-secret swarm.key                  # a swarm of your own, for a standalone tracker
  p2p tracker --listen 0.0.0.0:7070 --secret-file swarm.key
  p2p ls p2p2:...ticket...                  # what the ticket's swarm offers
  p2p peers p2p2:...ticket... --json        # who is in it
  p2p ls --tracker 10.0.0.5:7070 --secret-file swarm.key

Every swarm is private: its secret (in every ticket, or in a secret file) is what lets a
machine in, and every connection is authenticated and encrypted with it. Whoever holds a
ticket can join its swarm; nobody else can list, download or announce anything.

Logs go to standard error: -v for more, or RUST_LOG=p2p=debug,p2p_core=debug."
)]
pub struct Cli {
    /// More logging (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a tracker for the swarms whose secrets it is given.
    ///
    /// It keeps track of their peers and who holds which chunks. A connection in any other
    /// swarm is closed during its handshake.
    #[command(after_help = "\
Examples:
  p2p new-secret swarm.key                                   # once; give it to every member
  p2p tracker --secret-file swarm.key                        # 127.0.0.1:7070
  p2p tracker --listen 0.0.0.0:7070 --secret-file office.key --secret-file lab.key
  p2p tracker --listen 0.0.0.0:7070 --secret-file swarm.key --trust-claimed-addresses

Secrets are read from files only (a secret on a command line shows in `ps`). The tracker
learns, for each of its swarms, the peers' key fingerprints and addresses and the names and
manifests of the files they publish; it never tells one swarm about another.

A peer is listed at the IP its connection came from, with the port it says it listens on:
a member cannot point the others at someone else's address.")]
    Tracker {
        /// Address to listen on.
        #[arg(long, default_value = DEFAULT_TRACKER_ADDR, value_name = "ADDR")]
        listen: SocketAddr,
        /// A file of swarm secrets to serve: 64 hex digits per line, `#` comments (made by
        /// `p2p new-secret`). Repeatable. At least one is needed.
        #[arg(long = "secret-file", value_name = "FILE")]
        secret_files: Vec<PathBuf>,
        /// List each peer at the address it claims. Without it, a peer is listed at the IP
        /// its connection came from, with the port it claims. Only for peers that reach this
        /// tracker through a proxy or NAT the other peers do not pass: with it, any member
        /// can point the others at any address.
        #[arg(long)]
        trust_claimed_addresses: bool,
    },

    /// Make a new random swarm secret and write it to FILE.
    ///
    /// The file is created readable by you alone and never replaced. Give it to a standalone
    /// tracker (`p2p tracker --secret-file`) and to the members of the swarm (`p2p share
    /// --secret-file` and the like): whoever has it can join the swarm.
    #[command(after_help = "\
Examples:
  p2p new-secret swarm.key
  p2p tracker --listen 0.0.0.0:7070 --secret-file swarm.key
  p2p share big.iso --tracker 10.0.0.5:7070 --secret-file swarm.key")]
    NewSecret {
        /// Where to write the secret.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },

    /// Publish files and directories and serve them until stopped (Ctrl-C). Prints one
    /// ticket per file or directory on standard output (one in all with --collection).
    #[command(after_help = "\
Examples:
  p2p share movie.mkv                      # new swarm, embedded tracker; the ticket says where
  p2p share movie.mkv --advertise files.lan         # the ticket names this host by DNS
  p2p share movie.mkv --listen 127.0.0.1:0 # this machine only
  p2p share a.bin b.bin --tracker 10.0.0.5:7070 --secret-file swarm.key --listen 0.0.0.0:7000
  TICKET=$(p2p share big.iso | head -1)    # tickets alone on standard output
  p2p share models/llama/                  # a directory: one ticket for the whole tree
  p2p share --collection set a.bin b.bin docs/   # several paths of one directory, one ticket
  p2p share a.iso --secret-file lan.key --tracker 10.0.0.5:7070 --allow-private-origins

The ticket carries the swarm's secret: whoever has it can download the file and join the
swarm. Without --secret-file, each run makes a new swarm (a new secret).

Without flags, the sharer listens on every interface (IPv4 and IPv6) and runs its tracker
there on port 7070 (any free port when that is taken), and the ticket lists this host's
addresses with the tracker's port, likeliest first: private IPv4, other IPv4, global IPv6,
unique local IPv6, IPv4 link-local (loopback only when there is nothing else; at most 8).
A getter dials them all at once and keeps the first that answers, and the tracker tells it
this sharer's address as the one it reached. Only members (the ticket's holders) get past
the handshake on any of them.

LAN discovery: the embedded tracker is also announced on the local network over mDNS,
under a name derived from the swarm's secret (an outsider on the LAN sees an opaque name,
this host's addresses and the port; never the file, its id or the secret), so getters on
the LAN find the swarm even when the ticket's addresses no longer answer. --no-mdns (or
P2P_NO_MDNS=1) turns it off; with --tracker or a loopback --listen nothing is announced.

A directory is shared as one collection: every file (the executable bit kept), empty files
and empty directories; files with the same bytes are sent once. Symbolic links, devices,
sockets and pipes inside it are skipped with a warning, never followed.

A sharer helps other members' `p2p fetch` downloads (unless --no-help), fetching only what
its origin policy allows: public http(s) origins; private ones with
--allow-private-origins; exactly the --allow-origin HOST:PORT ones whatever their address
(see `p2p helper --help`).")]
    Share {
        /// Files and directories to publish (a directory as one collection).
        #[arg(required = true, value_name = "PATH")]
        files: Vec<PathBuf>,
        /// Publish every PATH together as one collection named NAME (the paths must be in
        /// one directory).
        #[arg(long, value_name = "NAME")]
        collection: Option<String>,
        /// Tracker to announce to (needs --secret-file, a secret it serves). Without it an
        /// embedded tracker runs in this process.
        #[arg(long, value_name = "ADDR")]
        tracker: Option<String>,
        /// The swarm's secret (a file from `p2p new-secret`). Without it a new random secret
        /// is made, and only the embedded tracker can serve it.
        #[arg(long = "secret-file", value_name = "FILE")]
        secret_file: Option<PathBuf>,
        /// Address to serve peers on (port 0: any free port). `[::]:PORT`, the default, is
        /// every interface, IPv4 and IPv6. The embedded tracker listens on the same IP.
        #[arg(long, default_value = EVERY_INTERFACE, value_name = "ADDR")]
        listen: SocketAddr,
        /// An address others reach this sharer's tracker at, listed in the ticket instead
        /// of this host's interface addresses: HOST or HOST:PORT (the tracker's port when
        /// none is given). Repeatable, up to 8, tried by getters all at once. For a DNS name,
        /// or an address the interface list misses. (Through NAT, getters would also need
        /// this sharer's own port forwarded and advertised: not supported yet.)
        #[arg(long, value_name = "HOST[:PORT]")]
        advertise: Vec<String>,
        /// Chunk size in bytes (16 KiB to 64 MiB, a multiple of 64).
        #[arg(long, default_value_t = p2p_core::manifest::CHUNK_SIZE_DEFAULT, value_name = "BYTES")]
        chunk_size: u32,
        /// Cap on upload speed, bytes per second.
        #[arg(long, value_name = "BYTES_PER_SEC")]
        upload_limit: Option<u64>,
        /// Do not take ranges of other peers' cooperative origin downloads (`p2p fetch`).
        #[arg(long)]
        no_help: bool,
        /// Requests kept in flight to an origin when helping.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
        origin_connections: Option<u32>,
        #[command(flatten)]
        origins: OriginArgs,
        /// Do not announce this swarm's tracker on the local network (mDNS).
        #[arg(long, env = NO_MDNS_ENV, value_parser = clap::builder::FalseyValueParser::new())]
        no_mdns: bool,
    },

    /// Download a file from the swarm, then print its path and SHA-256.
    #[command(after_help = "\
Examples:
  p2p get p2p2:...                     # the ticket `p2p share` printed: nothing else needed
  p2p get 3f2a...c9 --tracker 10.0.0.5:7070 --secret-file swarm.key -o /tmp/
  p2p get big.iso --secret-file swarm.key   # by name, as `p2p ls` shows it
  p2p get p2p2:... --seed              # keep serving when done
  p2p get p2p2:... --sha256 9e1c...04  # refuse other content before downloading
  p2p get p2p2:... --json | jq .       # progress as JSON lines

The ticket's addresses are dialled all at once; the first to finish the handshake is the
tracker used (the others stay as fall-backs). An address that does not answer costs at
most 3 s; when none answers, get stops and says why for each. A tracker that refuses the
handshake twice (it does not serve the ticket's swarm: a wrong or stale ticket) ends the
download with an error before anything is written.

While it downloads, a getter serves the chunks it has verified to the other members (that
is what makes a swarm fast), on every interface, any free port (--listen to choose). It
closes that port when the download is done, unless --seed.

LAN discovery: when none of the addresses answers, get looks for the swarm on the local
network over mDNS for at most 3 s, under a name derived from the swarm's secret, and uses
a tracker it finds there (only one that proves the secret in the handshake). With --seed,
get also runs a tracker of its own (port 7070, or any free port) and, once the file is
complete, announces it the same way: the swarm outlives its first sharer. --no-mdns (or
P2P_NO_MDNS=1) turns both off.")]
    Get(GetArgs),

    /// Download an http(s) URL with the help of the swarm: every helper fetches byte ranges
    /// from the origin over its own link and hands them over. A URL already fetched in the
    /// swarm (same validator) comes from peers instead. Prints SHA-256 and path.
    #[command(after_help = "\
Examples:
  p2p fetch https://example.com/big.iso --tracker 10.0.0.5:7070 --secret-file swarm.key
  p2p fetch URL -o /tmp/ --sha256 3f2a...c9      # checked before it gets its name
  p2p fetch URL --seed                           # keep serving it (later fetches use peers)
  p2p fetch URL --json | jq .                    # progress and who fetched what")]
    Fetch(FetchArgs),

    /// Help other peers' cooperative origin downloads; serves no files of its own.
    #[command(after_help = "\
Examples:
  p2p helper --tracker 10.0.0.5:7070 --secret-file swarm.key --listen 0.0.0.0:0
  p2p helper --secret-file swarm.key --allow-private-origins       # origins on the LAN too
  p2p helper --secret-file swarm.key --allow-origin 127.0.0.1:3142 # and a local cache

What a helper fetches: the URL comes from another member, so only http(s) URLs whose
host resolves to public addresses, never loopback, link-local (cloud metadata), multicast
or broadcast ones; private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) only
with --allow-private-origins; an origin named by --allow-origin whatever its address. Every
redirect is checked the same way, https never leads to http, and the connection goes to
the address that was checked. A refused range tells the fetcher only 'refused by origin
policy'; the reason is in this helper's log.")]
    Helper {
        #[arg(long, default_value = DEFAULT_TRACKER_ADDR, value_name = "ADDR")]
        tracker: String,
        /// The swarm to help (a file from `p2p new-secret`).
        #[arg(long = "secret-file", value_name = "FILE")]
        secret_file: PathBuf,
        /// Address fetchers reach this helper at (port 0: any free port).
        #[arg(long, default_value = DEFAULT_PEER_LISTEN, value_name = "ADDR")]
        listen: SocketAddr,
        /// Requests kept in flight to an origin.
        #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
        origin_connections: u32,
        #[command(flatten)]
        origins: OriginArgs,
    },

    /// List the files a swarm offers: ask the ticket's addresses (or --tracker), else a
    /// tracker of the swarm found on the LAN.
    #[command(after_help = "\
Examples:
  p2p ls p2p2:...ticket...                          # what the ticket's swarm offers
  p2p ls --tracker 10.0.0.5:7070 --secret-file swarm.key --json")]
    Ls(QueryArgs),

    /// List the peers of a swarm, by their key's fingerprint: asked as `ls` asks.
    #[command(after_help = "\
Examples:
  p2p peers p2p2:...ticket...
  p2p peers --tracker 10.0.0.5:7070 --secret-file swarm.key --json")]
    Peers(QueryArgs),

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
    /// The swarm's secret, for a content id or a name (a ticket carries its own).
    #[arg(long = "secret-file", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Address to serve other members on while downloading (port 0: any free port).
    /// `[::]:0`, the default, is every interface, IPv4 and IPv6; `127.0.0.1:0` serves this
    /// machine only.
    #[arg(long, default_value = EVERY_INTERFACE, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Keep serving the file after the download (until Ctrl-C).
    #[arg(long)]
    pub seed: bool,
    /// Download only the paths of a shared directory that match PATTERN (repeatable): a
    /// glob on the path inside it, where `*` stays within one directory and `**` crosses
    /// them; a directory's name takes everything beneath it. E.g. `--only '*.json' --only
    /// weights/shard-0001.bin`, or `--only docs`.
    #[arg(long, value_name = "PATTERN")]
    pub only: Vec<String>,
    /// Progress and the result as JSON lines on standard output.
    #[arg(long)]
    pub json: bool,
    /// Replace an existing file with other content at the destination. Never writes
    /// through a symbolic link at NAME.part or NAME.part.p2p: those are refused.
    #[arg(long)]
    pub force: bool,
    /// Cap on upload speed, bytes per second.
    #[arg(long, value_name = "BYTES_PER_SEC")]
    pub upload_limit: Option<u64>,
    /// Expected SHA-256 of the whole file. Checked against the content's description before
    /// anything is downloaded (every chunk is then checked against that description).
    #[arg(long, value_name = "HEX", value_parser = parse_sha256)]
    pub sha256: Option<String>,
    /// No LAN discovery (mDNS): do not look for the swarm on the local network when no
    /// address answers, and with --seed do not announce it.
    #[arg(long, env = NO_MDNS_ENV, value_parser = clap::builder::FalseyValueParser::new())]
    pub no_mdns: bool,
}

/// Where `ls` and `peers` ask, and how they answer.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// A ticket from `p2p share`: its secret names the swarm, its addresses are asked.
    #[arg(value_name = "TICKET")]
    pub ticket: Option<String>,
    /// A tracker to ask (first, before the ticket's addresses). Default without a ticket:
    /// 127.0.0.1:7070.
    #[arg(long, value_name = "ADDR")]
    pub tracker: Option<String>,
    /// The swarm to list (a file from `p2p new-secret`), when no ticket is given.
    #[arg(long = "secret-file", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No LAN discovery (mDNS): ask only the addresses given.
    #[arg(long, env = NO_MDNS_ENV, value_parser = clap::builder::FalseyValueParser::new())]
    pub no_mdns: bool,
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// The http:// or https:// URL to download.
    #[arg(value_name = "URL")]
    pub url: String,
    /// Where to write: a directory (existing, or ending in '/') or a file path. Default: the
    /// current directory, under the URL's last path segment.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Tracker of the swarm whose peers help (and may already have the file).
    #[arg(long, default_value = DEFAULT_TRACKER_ADDR, value_name = "ADDR")]
    pub tracker: String,
    /// The swarm's secret (a file from `p2p new-secret`).
    #[arg(long = "secret-file", value_name = "FILE")]
    pub secret_file: PathBuf,
    /// Address to serve the file on once complete (port 0: any free port).
    #[arg(long, default_value = DEFAULT_PEER_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Bytes per range handed to a participant (16 KiB to 1 MiB).
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub range_size: u32,
    /// Expected SHA-256 of the whole file: checked before the file gets its final name.
    #[arg(long, value_name = "HEX", value_parser = parse_sha256)]
    pub sha256: Option<String>,
    /// Requests this peer keeps in flight to the origin (each helper keeps its own).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub origin_connections: u32,
    /// Keep serving the file after the download (until Ctrl-C).
    #[arg(long)]
    pub seed: bool,
    /// Progress, who fetched which range, and the result as JSON lines on standard output.
    #[arg(long)]
    pub json: bool,
    /// Replace an existing file at the destination. Never writes through a symbolic link
    /// at NAME.part: that is refused.
    #[arg(long)]
    pub force: bool,
}

/// What a helper may fetch for other peers (`p2p helper`, `p2p share`).
#[derive(Args, Debug)]
pub struct OriginArgs {
    /// When helping, also fetch from private networks (10/8, 172.16/12, 192.168/16,
    /// 100.64/10, fc00::/7): for origins on this LAN. Loopback and link-local stay refused.
    #[arg(long)]
    pub allow_private_origins: bool,
    /// When helping, fetch from this origin whatever its address, loopback included (a
    /// local artifact cache, say): exactly this host name or IP and port. Repeatable.
    #[arg(long = "allow-origin", value_name = "HOST:PORT", value_parser = crate::io::origin_policy::parse_allowed_origin)]
    pub allow_origin: Vec<String>,
}

impl OriginArgs {
    pub fn policy(self) -> crate::io::origin_policy::OriginPolicy {
        crate::io::origin_policy::OriginPolicy {
            allow_private: self.allow_private_origins,
            allowed_origins: self.allow_origin,
        }
    }
}

/// A SHA-256 as 64 hex digits, lowercased (how `p2p get` and `sha256sum` print it).
fn parse_sha256(text: &str) -> Result<String, String> {
    let hex = text.trim().to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err("a SHA-256 is 64 hex digits".into())
    }
}
