//! `p2p helper`: a peer that serves no files of its own and takes ranges of the swarm's
//! cooperative origin downloads (`p2p fetch`), fetching them over its own link.

use std::net::SocketAddr;
use std::process::ExitCode;

use p2p_core::secure::SwarmSecret;

use crate::driver::peer::{self, PeerOptions};
use crate::io::origin_policy::OriginPolicy;
use crate::io::signals::StopSignals;

pub struct HelperOptions {
    pub tracker: String,
    pub listen: SocketAddr,
    pub origin_connections: u32,
    /// What it may fetch for others.
    pub origin_policy: OriginPolicy,
}

pub async fn run(
    options: HelperOptions,
    secret: SwarmSecret,
    signals: &mut StopSignals,
) -> anyhow::Result<ExitCode> {
    let HelperOptions {
        tracker,
        listen,
        origin_connections,
        origin_policy,
    } = options;
    let swarm = secret.tag();
    let private = if origin_policy.allow_private {
        "public and private origins"
    } else {
        "public origins"
    };
    let extra = if origin_policy.allowed_origins.is_empty() {
        String::new()
    } else {
        format!(" and {}", origin_policy.allowed_origins.join(", "))
    };
    let peer = peer::start(PeerOptions {
        secret,
        listen: Some(listen),
        advertise_host: None,
        trackers: vec![tracker.clone()],
        more_trackers: Vec::new(),
        upload_limit: None,
        locate_interval: None,
        help_others: true,
        origin_connections: Some(origin_connections),
        origin_policy,
        address_book: None,
    })
    .await?;
    let addr = peer.listen_addr.map(|a| a.to_string()).unwrap_or_default();
    eprintln!(
        "helping swarm {swarm} on {addr}, tracker {tracker}, {origin_connections} origin connection(s); Ctrl-C to stop"
    );
    eprintln!("fetching for others from {private}{extra} only");
    let stop = signals.next().await;
    peer.shutdown().await;
    eprintln!("stopped");
    Ok(stop.exit_code())
}
