//! The `p2p-sim` command line: `run`, `sweep` and `bench`.

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant as WallInstant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use p2p_sim::bench::{self, BenchCase, BenchResult};
use p2p_sim::{NANOS_PER_S, Nanos, RunOptions, RunReport, Scale, Scenario};

#[derive(Parser)]
#[command(
    name = "p2p-sim",
    about = "Deterministic simulator for the p2p core machines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one seed and prints its knobs, its findings and its trace digest.
    Run {
        #[arg(long)]
        seed: u64,
        /// flash-crowd, churn, tracker-outage, partition, corrupt-peers, slow-peers or random
        /// (default: the one a sweep would pick for this seed).
        #[arg(long)]
        scenario: Option<String>,
        /// small (as in the test suite) or full.
        #[arg(long, default_value = "full")]
        scale: String,
        /// Prints every event.
        #[arg(long)]
        trace: bool,
        /// With --trace: prints only the events from this simulated second on.
        #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
        trace_from_s: f64,
        /// Gives up (as not converging) after this many events, to look at a livelock
        /// without waiting for the usual limit.
        #[arg(long)]
        events_max: Option<u64>,
        /// Passes every message through the wire codec.
        #[arg(long)]
        codec_roundtrip: bool,
    },
    /// Runs a range of seeds; prints one replay command per failure.
    Sweep {
        /// A..B (B excluded).
        #[arg(long)]
        seeds: String,
        #[arg(long)]
        scenario: Option<String>,
        #[arg(long, default_value = "full")]
        scale: String,
        /// Worker threads (each run is single-threaded and deterministic).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Homogeneous swarms against the fluid lower bound.
    Bench {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Runs only this swarm size, in this process.
        #[arg(long)]
        n: Option<u32>,
        /// With --n: another seed than the reported figures' (to compare a change over
        /// several seeds).
        #[arg(long, requires = "n", default_value_t = bench::BENCH_SEED)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    p2p_sim::install_panic_hook();
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("p2p-sim: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            seed,
            scenario,
            scale,
            trace,
            trace_from_s,
            events_max,
            codec_roundtrip,
        } => {
            let scenario = parse_scenario(scenario.as_deref(), seed)?;
            let scale: Scale = scale.parse().map_err(anyhow::Error::msg)?;
            let (mut config, rng) = p2p_sim::configure(seed, scenario, scale);
            config.codec_roundtrip = codec_roundtrip;
            println!("{config}");
            let mut options = RunOptions {
                tracing: trace,
                trace_from: (trace_from_s.max(0.0) * NANOS_PER_S as f64) as Nanos,
                ..RunOptions::default()
            };
            if let Some(events_max) = events_max {
                options.events_max = events_max;
            }
            let report = p2p_sim::run_config_with(config, rng, options);
            println!("{report}");
            Ok(ExitCode::from(report.exit_code()))
        }
        Command::Sweep {
            seeds,
            scenario,
            scale,
            jobs,
        } => sweep(&seeds, scenario.as_deref(), &scale, jobs),
        Command::Bench { json, n, seed } => bench_command(json, n, seed),
    }
}

fn parse_scenario(name: Option<&str>, seed: u64) -> anyhow::Result<Scenario> {
    match name {
        Some(name) => name.parse().map_err(anyhow::Error::msg),
        None => Ok(Scenario::for_seed(seed)),
    }
}

fn parse_range(text: &str) -> anyhow::Result<(u64, u64)> {
    let (a, b) = text.split_once("..").context("--seeds takes A..B")?;
    let a: u64 = a.parse().context("--seeds: A is not a number")?;
    let b: u64 = b.parse().context("--seeds: B is not a number")?;
    if b <= a {
        bail!("--seeds {a}..{b} is empty");
    }
    Ok((a, b))
}

fn sweep(
    seeds: &str,
    scenario: Option<&str>,
    scale: &str,
    jobs: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let (start, end) = parse_range(seeds)?;
    let fixed = match scenario {
        Some(name) => Some(name.parse::<Scenario>().map_err(anyhow::Error::msg)?),
        None => None,
    };
    let scale: Scale = scale.parse().map_err(anyhow::Error::msg)?;
    let jobs = jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let started = WallInstant::now();
    let next = AtomicU64::new(start);
    let failures: Mutex<Vec<(u64, RunReport)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let scenario = fixed.unwrap_or_else(|| Scenario::for_seed(seed));
                    let report = p2p_sim::run(seed, scenario, scale, false);
                    if !report.passed() {
                        let kind = report.failure().map_or("?", |k| k.name());
                        let first = report
                            .violations
                            .first()
                            .map(|v| v.to_string())
                            .unwrap_or_default();
                        let first = first.lines().next().unwrap_or_default().to_string();
                        println!(
                            "FAIL seed {seed} [{kind}] {first}\n  replay: {}",
                            report.config.replay_command()
                        );
                        // Unwrap: a worker never panics while holding the lock.
                        failures.lock().unwrap().push((seed, report));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|(seed, _)| *seed);
    let total = end - start;
    let failed = failures.len() as u64;
    println!(
        "sweep {start}..{end} ({}): {} passed, {} failed in {:.1} s",
        fixed.map_or("all scenarios".to_string(), |s| s.name().to_string()),
        total - failed,
        failed,
        started.elapsed().as_secs_f64()
    );
    for (seed, report) in &failures {
        println!("  seed {seed}: {}", report.config.replay_command());
    }
    println!("{} passed, {} failed", total - failed, failed);
    let worst = failures.iter().filter_map(|(_, r)| r.failure()).min();
    Ok(ExitCode::from(worst.map_or(0, |k| k.exit_code())))
}

fn bench_command(json: bool, n: Option<u32>, seed: u64) -> anyhow::Result<ExitCode> {
    let results: Vec<BenchResult> = match n {
        Some(n) => vec![bench::run_case(BenchCase::for_peer_count(n), seed)],
        None => {
            // Each swarm in its own process, so each peak memory figure is its own.
            let exe = std::env::current_exe().context("cannot find the p2p-sim executable")?;
            let mut results = Vec::new();
            for case in bench::CASES {
                let output = std::process::Command::new(&exe)
                    .args(["bench", "--json", "--n", &case.peer_count.to_string()])
                    .output()
                    .context("cannot run a bench child process")?;
                let text = String::from_utf8_lossy(&output.stdout);
                let value: serde_json::Value =
                    serde_json::from_str(text.trim()).with_context(|| {
                        format!(
                            "bench child for n={} printed no result: {text}",
                            case.peer_count
                        )
                    })?;
                results
                    .push(BenchResult::from_json(&value).context("malformed bench child result")?);
                if !json {
                    eprintln!("n={} done", case.peer_count);
                }
            }
            results
        }
    };
    if json {
        for r in &results {
            println!("{}", r.to_json());
        }
    } else {
        println!("{}", BenchResult::TABLE_HEADER);
        for r in &results {
            println!("{}", r.table_row());
        }
        for r in &results {
            println!("n={} events={}\n{}", r.n, r.events, r.kinds);
        }
    }
    let failed = results
        .iter()
        .any(|r| r.failure.is_some() || r.p50_ratio < 1.0);
    Ok(ExitCode::from(if failed { 1 } else { 0 }))
}
