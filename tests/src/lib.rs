//! End-to-end tests of the real `p2p` binary on loopback: helpers shared by the test files
//! in `tests/tests/` (one file per behaviour).
//!
//! Every process a test starts is a [`Proc`]: its standard output and error are collected
//! line by line on reader threads, and dropping it kills and reaps it, so a failing test
//! leaves nothing running. Every wait has a deadline. Every address is 127.0.0.1 with a
//! port the kernel chose.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use p2p_core::secure::{Keyring, StaticKey, SwarmSecret};
use p2p_core::wire::PROTOCOL_VERSION;
use p2p_core::{ChunkSet, Manifest, ManifestBuilder, Message, PeerId};
use sha2::{Digest, Sha256};

pub mod netns;
mod secure_stream;
pub mod wan_origin;
pub use secure_stream::{SecureStream, test_seed};

/// The environment variable that turns off the binary's LAN discovery (mDNS).
pub const NO_MDNS_ENV: &str = "P2P_NO_MDNS";
/// Where `p2p` keeps what it remembers between runs.
pub const STATE_DIR_ENV: &str = "P2P_STATE_DIR";

/// The state directory of the processes named `name` in a test whose directory is `cwd`.
/// Characters of `name` other than letters, digits, `-` and `_` become `_`; at most
/// `STATE_DIR_NAME_MAX` are kept.
pub fn state_dir(cwd: &Path, name: &str) -> PathBuf {
    const STATE_DIR_NAME_MAX: usize = 64;
    let name: String = name
        .chars()
        .take(STATE_DIR_NAME_MAX)
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    cwd.join("p2p-state").join(name)
}
/// The default bound on any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(60);
/// After a process exits, how long its output pipes may take to be read to their end.
const PIPE_DRAIN_WAIT: Duration = Duration::from_secs(5);

// ------------------------------------------------------------------ the binary

/// The `p2p` binary of this build, built once per test process with the profile the tests
/// were built with (so `cargo test` from a clean clone works). `P2P_BIN` overrides.
pub fn p2p_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("P2P_BIN") {
            return PathBuf::from(bin);
        }
        // target/<profile-dir>/deps/<test> → target/<profile-dir>/p2p
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in target/<profile>/deps")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        // `cargo test` builds with the `test` profile (output in `debug/`), `cargo test
        // --release` with `bench`'s parent `release` (output in `release/`).
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("release") => "release",
            Some("debug") => "test",
            Some(other) => other,
            None => "test",
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let started = std::time::Instant::now();
        let status = Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "p2p",
                "--bin",
                "p2p",
                "--profile",
                profile,
            ])
            .arg("--manifest-path")
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target_dir)
            .status()
            .expect("run cargo build for the p2p binary");
        assert!(status.success(), "cargo build -p p2p failed");
        eprintln!(
            "p2p binary ready in {:?} (cargo build --profile {profile})",
            started.elapsed()
        );
        let bin = profile_dir.join(format!("p2p{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "no p2p binary at {}", bin.display());
        bin
    })
}

// ------------------------------------------------------------------ processes

/// Lines a process wrote, collected as they come.
#[derive(Clone, Default)]
pub struct Lines {
    lines: Arc<Mutex<Vec<String>>>,
    /// Set once the pipe reached its end: every line is in.
    ended: Arc<AtomicBool>,
}

impl Lines {
    fn collect(reader: impl Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let sink = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                sink.lines.lock().unwrap().push(line);
            }
            sink.ended.store(true, Ordering::Release);
        });
        lines
    }

    /// Waits (bounded by `within`) until the pipe has ended.
    fn wait_ended(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.ended.load(Ordering::Acquire) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn text(&self) -> String {
        self.snapshot().join("\n")
    }
}

/// A running `p2p` process; killed and reaped on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `p2p ARGS` in `cwd` (a test's temp dir), with logs at `RUST_LOG` unset and
    /// LAN discovery off (`P2P_NO_MDNS`): on this host's own network no test announces or
    /// browses over mDNS, which would reach beyond 127.0.0.0/8.
    pub fn spawn(name: &str, cwd: &Path, args: &[&str]) -> Proc {
        Proc::spawn_env(name, cwd, &[], args)
    }

    /// Starts `p2p ARGS` with `env` set (after `P2P_NO_MDNS=1`, which `env` may undo).
    /// Each process name has its own state directory (`P2P_STATE_DIR`) in `cwd`: what a
    /// process remembers of a swarm (`io/address_book`) reaches the next one of its name
    /// alone, never the home directory.
    pub fn spawn_env(name: &str, cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Proc {
        let mut command = Command::new(p2p_bin());
        command
            .args(args)
            .env(NO_MDNS_ENV, "1")
            .env(STATE_DIR_ENV, state_dir(cwd, name))
            .envs(env.iter().copied());
        Proc::spawn_command(name, cwd, command)
    }

    /// Starts another program (a capture tool, say) the same way, so it dies with the test.
    pub fn spawn_program(name: &str, cwd: &Path, program: &str, args: &[&str]) -> Proc {
        let mut command = Command::new(program);
        command.args(args);
        Proc::spawn_command(name, cwd, command)
    }

    /// Starts `p2p ARGS` inside the network namespace `netns` (`ip netns exec`), LAN
    /// discovery on: multicast there stays on the test's own links.
    pub fn spawn_in_netns(name: &str, cwd: &Path, netns: &str, args: &[&str]) -> Proc {
        let mut command = Command::new("ip");
        command
            .env_remove(NO_MDNS_ENV)
            .env(STATE_DIR_ENV, state_dir(cwd, name))
            .args(["netns", "exec", netns])
            .arg(p2p_bin())
            .args(args);
        Proc::spawn_command(name, cwd, command)
    }

    fn spawn_command(name: &str, cwd: &Path, mut command: Command) -> Proc {
        let shown = format!("{command:?}");
        let mut child = command
            .current_dir(cwd)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
        let stdout = Lines::collect(child.stdout.take().unwrap());
        let stderr = Lines::collect(child.stderr.take().unwrap());
        Proc {
            name: name.to_string(),
            child,
            stdout,
            stderr,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_status() {
                // Every line written is read before the caller looks.
                self.stdout.wait_ended(PIPE_DRAIN_WAIT);
                self.stderr.wait_ended(PIPE_DRAIN_WAIT);
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not exit within {within:?}\n{}",
                    self.name,
                    self.describe()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`, and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
    }

    /// Sends SIGTERM (a clean stop) through `kill`, then waits for the exit.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        self.wait_exit(within)
    }

    /// Waits until a line of standard error satisfies `pick`; returns what it picked.
    pub fn wait_stderr<T>(&mut self, what: &str, pick: impl FnMut(&str) -> Option<T>) -> T {
        let lines = self.stderr.clone();
        self.wait_lines(&lines, what, pick)
    }

    /// Waits until a line of standard output satisfies `pick`; returns what it picked.
    pub fn wait_stdout<T>(&mut self, what: &str, pick: impl FnMut(&str) -> Option<T>) -> T {
        let lines = self.stdout.clone();
        self.wait_lines(&lines, what, pick)
    }

    fn wait_lines<T>(
        &mut self,
        lines: &Lines,
        what: &str,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + WAIT;
        let mut seen = 0;
        loop {
            let snapshot = lines.snapshot();
            for line in &snapshot[seen..] {
                if let Some(found) = pick(line) {
                    return found;
                }
            }
            seen = snapshot.len();
            if let Some(status) = self.try_status() {
                // One last look after the pipes drained.
                thread::sleep(Duration::from_millis(100));
                let snapshot = lines.snapshot();
                for line in &snapshot[seen..] {
                    if let Some(found) = pick(line) {
                        return found;
                    }
                }
                panic!(
                    "{} exited ({status}) before {what}\n{}",
                    self.name,
                    self.describe()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: no {what} within {WAIT:?}\n{}",
                    self.name,
                    self.describe()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a JSON line on standard output (from `--json`) that satisfies `pick`.
    pub fn wait_json<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&serde_json::Value) -> Option<T>,
    ) -> T {
        self.wait_stdout(what, |line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| pick(&v))
        })
    }

    /// Every JSON line printed so far.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .snapshot()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// What the process printed, for failure messages.
    pub fn describe(&self) -> String {
        let tail = |lines: Vec<String>| {
            let skip = lines.len().saturating_sub(40);
            lines[skip..].join("\n")
        };
        format!(
            "--- {} stdout (tail)\n{}\n--- {} stderr (tail)\n{}",
            self.name,
            tail(self.stdout.snapshot()),
            self.name,
            tail(self.stderr.snapshot())
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `p2p ARGS` to its end (bounded by [`WAIT`]): exit status, stdout, stderr.
pub fn run(cwd: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let mut proc = Proc::spawn(&format!("p2p {}", args.join(" ")), cwd, args);
    let status = proc.wait_exit(WAIT);
    (status, proc.stdout.text(), proc.stderr.text())
}

// ------------------------------------------------------------------ the roles

/// A free port on 127.0.0.1 (bound, then released): for a process that must be restarted
/// on the same address.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A swarm of its own for a test: `p2p new-secret DIR/swarm.key`. Returns the secret
/// file's path, which the helpers below pass as `--secret-file`.
pub fn new_swarm(dir: &Path) -> String {
    let path = dir.join("swarm.key");
    let path = path.to_str().unwrap().to_string();
    let (status, _, stderr) = run(dir, &["new-secret", &path]);
    assert!(status.success(), "p2p new-secret failed: {stderr}");
    path
}

/// The one secret in a secret file.
pub fn read_secret(secret_file: &str) -> SwarmSecret {
    let text = std::fs::read_to_string(secret_file).unwrap();
    text.lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .find(|l| !l.is_empty())
        .expect("a secret in the file")
        .parse()
        .unwrap()
}

/// `p2p tracker --listen ADDR --secret-file SWARM` (port 0 by default): the process and
/// its bound address.
pub fn start_tracker(cwd: &Path, swarm: &str, listen: Option<SocketAddr>) -> (Proc, SocketAddr) {
    let listen = listen.map_or("127.0.0.1:0".to_string(), |a| a.to_string());
    let mut proc = Proc::spawn(
        "tracker",
        cwd,
        &["tracker", "--listen", &listen, "--secret-file", swarm],
    );
    let addr = proc.wait_stderr("'tracker listening on'", |line| {
        line.strip_prefix("tracker listening on ")
            .and_then(|rest| rest.split([';', ' ']).next())
            .and_then(|a| a.parse::<SocketAddr>().ok())
    });
    (proc, addr)
}

/// A running `p2p share`.
pub struct Seeder {
    pub proc: Proc,
    pub ticket: String,
    /// Where it serves peers.
    pub addr: SocketAddr,
}

/// `p2p share FILE --tracker T --secret-file SWARM --listen 127.0.0.1:0 [EXTRA]`: waits for
/// the ticket and the serving address.
pub fn start_seeder(
    name: &str,
    cwd: &Path,
    swarm: &str,
    file: &Path,
    tracker: SocketAddr,
    extra: &[&str],
) -> Seeder {
    let file = file.to_str().unwrap();
    let tracker = tracker.to_string();
    let mut args = vec![
        "share",
        file,
        "--tracker",
        &tracker,
        "--secret-file",
        swarm,
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let mut proc = Proc::spawn(name, cwd, &args);
    let ticket = proc.wait_stdout("a ticket", |line| {
        line.starts_with("p2p").then(|| line.trim().to_string())
    });
    let addr = proc.wait_stderr("'serving on'", |line| {
        line.strip_prefix("serving on ")
            .and_then(|rest| rest.split([',', ' ']).next())
            .and_then(|a| a.parse::<SocketAddr>().ok())
    });
    Seeder { proc, ticket, addr }
}

/// `p2p get TARGET -o OUT --json --listen 127.0.0.1:0 [EXTRA]` (not waited for), with
/// `--secret-file SWARM` unless TARGET is a ticket (which carries its secret).
pub fn start_getter(
    name: &str,
    cwd: &Path,
    swarm: &str,
    target: &str,
    out: &Path,
    extra: &[&str],
) -> Proc {
    let out = out.to_str().unwrap();
    let mut args = vec![
        "get",
        target,
        "-o",
        out,
        "--json",
        "--listen",
        "127.0.0.1:0",
    ];
    if !target.starts_with("p2p2:") {
        args.extend_from_slice(&["--secret-file", swarm]);
    }
    args.extend_from_slice(extra);
    Proc::spawn(name, cwd, &args)
}

/// `p2p ARGS` (a `share` with its embedded tracker): the process and the ticket it prints.
pub fn spawn_sharer(name: &str, cwd: &Path, args: &[&str]) -> (Proc, String) {
    let mut sharer = Proc::spawn(name, cwd, args);
    let ticket = sharer.wait_stdout("a ticket", |line| {
        line.starts_with("p2p2:").then(|| line.trim().to_string())
    });
    (sharer, ticket)
}

/// The `bytes_have` of a `--json` progress line.
pub fn progress_bytes(v: &serde_json::Value) -> Option<u64> {
    (v["event"] == "progress")
        .then(|| v["bytes_have"].as_u64())
        .flatten()
}

/// Waits for the `complete` event of a `get --json`; returns (path, sha256).
pub fn wait_complete(getter: &mut Proc) -> (PathBuf, String) {
    getter.wait_json("a complete event", |v| {
        if v["event"] == "failed" {
            panic!("download failed: {v}");
        }
        (v["event"] == "complete").then(|| {
            (
                PathBuf::from(v["path"].as_str().unwrap()),
                v["sha256"].as_str().unwrap().to_string(),
            )
        })
    })
}

/// `p2p ls --json` or `p2p peers --json` against `tracker`: the JSON lines, or `None` when
/// the command failed (tracker not up yet).
pub fn query_json(
    cwd: &Path,
    swarm: &str,
    what: &str,
    tracker: SocketAddr,
) -> Option<Vec<serde_json::Value>> {
    let tracker = tracker.to_string();
    let (status, stdout, _) = run(
        cwd,
        &[
            what,
            "--tracker",
            &tracker,
            "--secret-file",
            swarm,
            "--json",
        ],
    );
    status.success().then(|| {
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("ls/peers --json line"))
            .collect()
    })
}

/// Polls `check` every 100 ms until it gives `Some`, for at most `within`.
pub fn wait_for<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check() {
            return found;
        }
        if Instant::now() > deadline {
            panic!("no {what} within {within:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

// ------------------------------------------------------------------ files

/// Deterministic pseudo-random bytes (splitmix64), so no two chunks are alike.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `len` pseudo-random bytes to `path`; returns them.
pub fn write_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let data = pseudo_random(len, seed);
    File::create(path).unwrap().write_all(&data).unwrap();
    data
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Asserts the file at `path` holds exactly `expected` (without printing megabytes).
pub fn assert_file_eq(path: &Path, expected: &[u8]) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(got.len(), expected.len(), "{}: size", path.display());
    if got != expected {
        let first = got.iter().zip(expected).position(|(a, b)| a != b).unwrap();
        panic!("{}: content differs from byte {first}", path.display());
    }
}

/// The manifest `p2p share` would make of `data` under `name` (default chunk size).
pub fn manifest_of(name: &str, data: &[u8]) -> Manifest {
    let mut builder = ManifestBuilder::new(name, p2p_core::manifest::CHUNK_SIZE_DEFAULT).unwrap();
    builder.update(data);
    builder.finish().unwrap()
}

// ------------------------------------------------------------------ a harness peer

/// A test-only peer speaking the protocol over std TCP on 127.0.0.1, with the swarm's
/// secret and a key of its own like any member: it publishes one manifest to a tracker and
/// serves its chunks, honestly or with every byte flipped.
pub struct HarnessPeer {
    pub addr: SocketAddr,
    /// Its key's id, as the handshake proves it.
    pub peer_id: PeerId,
    /// `Piece`s sent so far.
    pub pieces_sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl HarnessPeer {
    /// Listens on 127.0.0.1:0, says hello to `tracker` in the swarm of the secret file
    /// `swarm`, announces `manifest` with every chunk, heartbeats, and serves `data`
    /// (flipped when `corrupt`).
    pub fn start(
        tracker: SocketAddr,
        swarm: &str,
        manifest: Manifest,
        data: Vec<u8>,
        corrupt: bool,
    ) -> HarnessPeer {
        let secret = read_secret(swarm);
        let key = StaticKey::from_private(test_seed());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let peer_id = key.peer_id();
        let stop = Arc::new(AtomicBool::new(false));
        let pieces_sent = Arc::new(AtomicU64::new(0));
        let data = Arc::new(data);
        let manifest = Arc::new(manifest);
        let mut threads = Vec::new();

        // The tracker session: handshake, hello, welcome, announce, heartbeats.
        let mut session = SecureStream::connect(tracker, &key, &secret).unwrap();
        session
            .send(&hello(peer_id, &addr.to_string(), &secret.tag().name()))
            .unwrap();
        match session.read_message(Duration::from_secs(10)) {
            Ok(Some(Message::Welcome { .. })) => {}
            other => panic!("harness: tracker answered hello with {other:?}"),
        }
        let announce = Message::Announce {
            manifest: (*manifest).clone(),
            chunks: ChunkSet::full(manifest.chunk_count()),
        };
        session.send(&announce).unwrap();
        {
            let stop = stop.clone();
            let sent = pieces_sent.clone();
            threads.push(thread::spawn(move || {
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    // Drain whatever the tracker says; a closed session ends the thread.
                    if session.read_message(Duration::from_millis(200)).is_err() {
                        break;
                    }
                    if last.elapsed() >= Duration::from_secs(1) {
                        last = Instant::now();
                        let heartbeat = Message::Heartbeat {
                            uploaded_bytes: sent.load(Ordering::Relaxed),
                            downloaded_bytes: 0,
                        };
                        if session.send(&heartbeat).is_err() {
                            break;
                        }
                    }
                }
                let _ = session.send(&Message::Goodbye);
            }));
        }

        // Serving peers.
        {
            let stop = stop.clone();
            let sent = pieces_sent.clone();
            let keyring = Keyring::of(secret);
            threads.push(thread::spawn(move || {
                let mut conns = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let stop = stop.clone();
                            let sent = sent.clone();
                            let data = data.clone();
                            let manifest = manifest.clone();
                            let key = key.clone();
                            let keyring = keyring.clone();
                            conns.push(thread::spawn(move || {
                                let Ok(stream) = SecureStream::accept(stream, &key, &keyring)
                                else {
                                    return;
                                };
                                serve(stream, peer_id, &manifest, &data, corrupt, &sent, &stop)
                            }));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
                for conn in conns {
                    let _ = conn.join();
                }
            }));
        }
        HarnessPeer {
            addr,
            peer_id,
            pieces_sent,
            stop,
            threads,
        }
    }
}

impl Drop for HarnessPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A `Hello` as the real peer sends it (`swarm`: the swarm's tag in hex).
pub fn hello(peer_id: PeerId, listen_addr: &str, swarm: &str) -> Message {
    Message::Hello {
        version: PROTOCOL_VERSION,
        peer_id,
        listen_addr: listen_addr.to_string(),
        swarm: swarm.to_string(),
    }
}

/// One incoming peer connection of the harness.
fn serve(
    mut stream: SecureStream,
    peer_id: PeerId,
    manifest: &Manifest,
    data: &[u8],
    corrupt: bool,
    sent: &AtomicU64,
    stop: &AtomicBool,
) {
    let content_id = manifest.content_id();
    while !stop.load(Ordering::Relaxed) {
        let message = match stream.read_message(Duration::from_millis(200)) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(_) => return,
        };
        let reply = match message {
            Message::Hello { .. } => Some(Message::Welcome {
                version: PROTOCOL_VERSION,
                peer_id,
            }),
            Message::Interested { content_id: c } if c == content_id => Some(Message::Bitfield {
                content_id,
                chunks: ChunkSet::full(manifest.chunk_count()),
            }),
            Message::GetManifest { content_id: c } if c == content_id => {
                Some(Message::ManifestReply {
                    manifest: manifest.clone(),
                })
            }
            Message::Interested { content_id } | Message::GetManifest { content_id } => {
                Some(Message::NotFound { content_id })
            }
            Message::Request {
                content_id: c,
                chunk_index,
                offset,
                length,
            } if c == content_id => {
                let start = manifest.chunk_offset(chunk_index) as usize + offset as usize;
                let end = start + length as usize;
                if end > data.len() {
                    return;
                }
                let mut block = data[start..end].to_vec();
                if corrupt {
                    for b in &mut block {
                        *b ^= 0xff;
                    }
                }
                sent.fetch_add(1, Ordering::Relaxed);
                Some(Message::Piece {
                    content_id,
                    chunk_index,
                    offset,
                    data: bytes::Bytes::from(block),
                })
            }
            Message::Ping { nonce } => Some(Message::Pong { nonce }),
            Message::Goodbye | Message::Error { .. } => return,
            _ => None,
        };
        if let Some(reply) = reply
            && stream.send(&reply).is_err()
        {
            return;
        }
    }
}

// ------------------------------------------------------------------ raw sockets

/// Sends `bytes` to `addr` and waits (bounded) for the other side to close the connection.
/// Returns whether it closed within `within`.
pub fn send_and_expect_close(addr: SocketAddr, bytes: &[u8], within: Duration) -> bool {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // The far end may close before taking everything: a write error is a close too.
    if stream.write_all(bytes).is_err() {
        return true;
    }
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // an Error frame, say: keep reading until the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true, // reset
        }
    }
    false
}

/// Sends `bytes` to `addr`, then reads until the other side closes (bounded by `within`).
/// Returns whether it closed in time and every byte it sent back.
pub fn send_and_collect(addr: SocketAddr, bytes: &[u8], within: Duration) -> (bool, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut received = Vec::new();
    // The far end may close before taking everything: a write error is a close too.
    let _ = stream.write_all(bytes);
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (true, received),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (true, received), // reset
        }
    }
    (false, received)
}

/// Every file under `dir`, recursively (to check what a command left on disk).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}
