//! LAN discovery over mDNS (the `mdns-sd` crate, which runs a thread of its own): the
//! members of a swarm that run a tracker (`p2p share`, `p2p get --seed`) announce its port
//! on the local network, and a getter none of whose ticket's addresses answers looks for
//! them there.
//!
//! What goes on the air: the service type `_p2p2._tcp.local.`, an instance named
//! `LAN_NAME-NONCE` (the swarm's `SwarmSecret::lan_name`, 32 hex digits only members can
//! compute, and 8 random hex digits so that two members on one LAN never claim the same
//! name), a host name made of the same, this host's dialable addresses and the tracker's
//! port; no TXT data. An outsider on the LAN learns that some p2p swarm is there, how many
//! members announce it and where they listen; not the file, its name, its content id, the
//! secret nor the tag, and it gets past no handshake.
//!
//! Answers are hostile input: anyone on the LAN can announce anything, our instance
//! names included (they are seen on the air). So only an instance named for this swarm is
//! taken, at most `INSTANCES_MAX` of them and `ADDRS_MAX` addresses in all, only addresses
//! one may dial (`interfaces::ordered`: no loopback, multicast, unspecified or IPv6
//! link-local one), and an address is used only once it finished the swarm's handshake
//! (`first_answer`): whoever does not hold the secret gets a dial and nothing else. No
//! answer names a path or a file.
//!
//! On a host without multicast (or where the daemon cannot start) discovery does nothing
//! and says so at debug level only. Every wait here is bounded.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use p2p_core::secure::SwarmSecret;
use smol::{Timer, future};

use crate::io::{interfaces, keys};

/// The DNS-SD service type every swarm announces under; the swarm is in the instance name.
pub const SERVICE_TYPE: &str = "_p2p2._tcp.local.";
/// Longest a browse waits for answers.
pub const BROWSE_WAIT: Duration = Duration::from_secs(3);
/// After the first answer for our swarm, how long a browse waits for others (members
/// answer within a fraction of a second of each other).
pub const BROWSE_SETTLE: Duration = Duration::from_millis(500);
/// Most instances of our swarm a browse takes.
pub const INSTANCES_MAX: usize = 8;
/// Most addresses a browse returns, over all instances: each costs a dial.
pub const ADDRS_MAX: usize = 8;
/// Longest a stop waits for the daemon to send its goodbyes and end.
const STOP_WAIT: Duration = Duration::from_secs(1);
/// Random bytes that tell one member's instance from another's.
const NONCE_BYTES: usize = 4;

/// A tracker announced on the LAN; stopped (with goodbyes, so browsers forget it) by
/// `stop`, or when the process ends.
pub struct Announcement {
    daemon: ServiceDaemon,
    fullname: String,
}

/// Announces `secret`'s swarm with a tracker on `port`, at `bound`'s IP when it is a
/// specific one, else at this host's dialable addresses (IPv4 only for `0.0.0.0`). `None`
/// when there is nothing to announce (a loopback address: this machine only) or mDNS is
/// not available here.
pub fn announce(secret: &SwarmSecret, bound: SocketAddr) -> Option<Announcement> {
    let ips: Vec<IpAddr> = if bound.ip().is_unspecified() {
        interfaces::dialable_ips()
            .into_iter()
            .filter(|ip| bound.is_ipv6() || ip.is_ipv4())
            .collect()
    } else {
        interfaces::ordered([bound.ip()])
    };
    if ips.is_empty() {
        tracing::debug!("mdns: no address to announce (listening on {bound})");
        return None;
    }
    let nonce = keys::os_random::<NONCE_BYTES>();
    let instance = format!("{}-{}", secret.lan_name(), p2p_core::ids::to_hex(&nonce));
    let host = format!("{instance}.local.");
    let daemon = daemon()?;
    let info = match ServiceInfo::new(SERVICE_TYPE, &instance, &host, &ips[..], bound.port(), None)
    {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!("mdns: cannot describe the service: {e}");
            return None;
        }
    };
    let fullname = info.get_fullname().to_owned();
    if let Err(e) = daemon.register(info) {
        tracing::debug!("mdns: cannot announce: {e}");
        let _ = daemon.shutdown();
        return None;
    }
    tracing::info!(port = bound.port(), addrs = ?ips, "announced on the LAN (mDNS)");
    Some(Announcement { daemon, fullname })
}

impl Announcement {
    /// Withdraws the announcement (browsers hear a goodbye) and stops the daemon, waiting
    /// at most `STOP_WAIT` for each.
    pub async fn stop(self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = within(STOP_WAIT, done.recv_async()).await;
        }
        stop_daemon(&self.daemon).await;
    }
}

/// The addresses (`IP:PORT`) of trackers of `secret`'s swarm heard on the LAN, at most
/// `ADDRS_MAX`, in the order they were heard; after at most `BROWSE_WAIT` (and
/// `BROWSE_SETTLE` after the first). Empty also where mDNS is not available.
pub async fn browse(secret: &SwarmSecret) -> Vec<String> {
    let Some(daemon) = daemon() else {
        return Vec::new();
    };
    let events = match daemon.browse(SERVICE_TYPE) {
        Ok(events) => events,
        Err(e) => {
            tracing::debug!("mdns: cannot browse: {e}");
            stop_daemon(&daemon).await;
            return Vec::new();
        }
    };
    let prefix = format!("{}-", secret.lan_name());
    let mut found: Vec<String> = Vec::new();
    let mut instances: Vec<String> = Vec::new();
    let mut deadline = Instant::now() + BROWSE_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(Ok(event)) = within(left, events.recv_async()).await else {
            break;
        };
        let ServiceEvent::ServiceResolved(service) = event else {
            continue;
        };
        let Some(instance) = ours(&service.fullname, &prefix) else {
            tracing::debug!(name = %service.fullname, "mdns: not this swarm's; ignored");
            continue;
        };
        if instances.iter().any(|seen| seen == instance) {
            continue;
        }
        if instances.len() >= INSTANCES_MAX || service.port == 0 {
            continue;
        }
        instances.push(instance.to_owned());
        let ips = interfaces::ordered(service.addresses.iter().map(|ip| ip.to_ip_addr()));
        for ip in ips {
            let addr = SocketAddr::new(ip, service.port).to_string();
            if found.len() < ADDRS_MAX && !found.contains(&addr) {
                found.push(addr);
            }
        }
        tracing::debug!(%instance, addrs = ?found, "mdns: a member of this swarm");
        deadline = deadline.min(Instant::now() + BROWSE_SETTLE);
    }
    stop_daemon(&daemon).await;
    found
}

/// The instance part of `fullname` when it names a member of our swarm: exactly
/// `PREFIX` and `NONCE_BYTES` in hex, of our service type.
fn ours<'a>(fullname: &'a str, prefix: &str) -> Option<&'a str> {
    let instance = fullname.strip_suffix(SERVICE_TYPE)?.strip_suffix('.')?;
    let nonce = instance.strip_prefix(prefix)?;
    (nonce.len() == NONCE_BYTES * 2 && nonce.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(instance)
}

/// A new daemon, or `None` (said at debug level) where mDNS cannot run.
fn daemon() -> Option<ServiceDaemon> {
    match ServiceDaemon::new() {
        Ok(daemon) => Some(daemon),
        Err(e) => {
            tracing::debug!("mdns: not available on this host: {e}");
            None
        }
    }
}

async fn stop_daemon(daemon: &ServiceDaemon) {
    if let Ok(done) = daemon.shutdown() {
        let _ = within(STOP_WAIT, done.recv_async()).await;
    }
}

/// `work`'s output, or `None` after `wait`.
async fn within<T>(wait: Duration, work: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(work.await) }, async {
        Timer::after(wait).await;
        None
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_instances_named_for_our_swarm_are_taken() {
        let secret = keys::new_secret();
        let prefix = format!("{}-", secret.lan_name());
        let good = format!("{prefix}0a1b2c3d.{SERVICE_TYPE}");
        assert_eq!(ours(&good, &prefix), Some(&good[..prefix.len() + 8]));
        let other = keys::new_secret();
        for bad in [
            format!("{}-0a1b2c3d.{SERVICE_TYPE}", other.lan_name()),
            format!("{prefix}0a1b2c3d._http._tcp.local."),
            format!("{prefix}0a1b2c3.{SERVICE_TYPE}"),
            format!("{prefix}0a1b2c3dd.{SERVICE_TYPE}"),
            format!("{prefix}../../x.{SERVICE_TYPE}"),
            format!("{}.{SERVICE_TYPE}", secret.lan_name()),
        ] {
            assert_eq!(ours(&bad, &prefix), None, "{bad}");
        }
    }
}
