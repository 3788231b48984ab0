//! `p2p helper`: a peer that serves no files of its own and takes ranges of the swarm's
//! cooperative origin downloads (`p2p fetch`), fetching them over its own link.

use std::net::SocketAddr;
use std::process::ExitCode;

use p2p_core::secure::SwarmSecret;

use crate::driver::peer::{self, PeerOptions};
use crate::io::signals::StopSignals;

pub async fn run(
    tracker: String,
    listen: SocketAddr,
    origin_connections: u32,
    secret: SwarmSecret,
    signals: &mut StopSignals,
) -> anyhow::Result<ExitCode> {
    let swarm = secret.tag();
    let peer = peer::start(PeerOptions {
        secret,
        listen: Some(listen),
        trackers: vec![tracker.clone()],
        upload_limit: None,
        locate_interval: None,
        help_others: true,
        origin_connections: Some(origin_connections),
    })
    .await?;
    let addr = peer.listen_addr.map(|a| a.to_string()).unwrap_or_default();
    eprintln!(
        "helping swarm {swarm} on {addr}, tracker {tracker}, {origin_connections} origin connection(s); Ctrl-C to stop"
    );
    let stop = signals.next().await;
    peer.shutdown().await;
    eprintln!("stopped");
    Ok(stop.exit_code())
}
