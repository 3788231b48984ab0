//! `p2p tracker`: run a tracker until stopped.

use std::net::SocketAddr;
use std::process::ExitCode;

use crate::driver::tracker;
use crate::io::signals::StopSignals;

pub async fn run(listen: SocketAddr, signals: &mut StopSignals) -> anyhow::Result<ExitCode> {
    let tracker = tracker::start(listen).await?;
    eprintln!("tracker listening on {}; Ctrl-C to stop", tracker.addr);
    let stop = signals.next().await;
    tracker.stop().await;
    Ok(stop.exit_code())
}
