//! The WAN-like test origin as a program, to run on a host of its own (a network namespace):
//!
//! ```text
//! wan_origin --listen 10.0.0.1:8080 --file big.bin --rate 10000000 --delay-ms 40
//! ```
//!
//! Serves `--file` at every path (`/_stats`: bytes served), `--rate` bytes per second per
//! client IP (`--ip-rate IP=B/s` for one IP of its own, repeatable), `--delay-ms` before
//! every response. Prints `wan origin listening on ADDR`.

use std::time::Duration;

use p2p_tests::wan_origin::{WanConfig, WanOrigin};

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut file, mut rate, mut delay_ms) =
        ("127.0.0.1:0".to_string(), None, 0u64, 0u64);
    let mut rate_of_ip = Vec::new();
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--listen" => listen = value,
            "--file" => file = Some(value),
            "--rate" => rate = value.parse().unwrap_or(0),
            "--delay-ms" => delay_ms = value.parse().unwrap_or(0),
            "--ip-rate" => {
                let parsed = value
                    .split_once('=')
                    .and_then(|(ip, rate)| Some((ip.parse().ok()?, rate.parse().ok()?)));
                match parsed {
                    Some(ip_rate) => rate_of_ip.push(ip_rate),
                    None => {
                        eprintln!("wan_origin: --ip-rate takes IP=B/s, not {value}");
                        return std::process::ExitCode::from(2);
                    }
                }
            }
            _ => {
                eprintln!(
                    "usage: wan_origin --listen ADDR --file PATH [--rate B/s] [--delay-ms N] [--ip-rate IP=B/s]..."
                );
                return std::process::ExitCode::from(2);
            }
        }
    }
    let Some(file) = file else {
        eprintln!("wan_origin: --file is required");
        return std::process::ExitCode::from(2);
    };
    let data = match std::fs::read(&file) {
        Ok(data) => data,
        Err(e) => {
            eprintln!("wan_origin: {file}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let config = WanConfig {
        rate_per_ip: rate,
        rate_of_ip,
        request_delay: Duration::from_millis(delay_ms),
        ..WanConfig::default()
    };
    let origin = match WanOrigin::start(&listen, data, config) {
        Ok(origin) => origin,
        Err(e) => {
            eprintln!("wan_origin: cannot listen on {listen}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!("wan origin listening on {}", origin.addr);
    loop {
        std::thread::park();
    }
}
