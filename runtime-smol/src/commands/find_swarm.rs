//! Finding a swarm to talk to, shared by `get`, `ls` and `peers`: the addresses given (a
//! ticket's, `--tracker`), all dialled at once, the first to finish the handshake kept;
//! when none answers, a tracker of the swarm found on the LAN (mDNS).

use p2p_core::Ticket;
use p2p_core::secure::SwarmSecret;

use crate::UsageError;
use crate::io::first_answer::{self, NoAnswer};
use crate::io::mdns;

/// The ticket in `text`, or a usage error that says what is wrong with it.
pub fn parse_ticket(text: &str) -> Result<Ticket, UsageError> {
    text.parse::<Ticket>().map_err(|e| match e {
        p2p_core::ticket::TicketError::OldVersion => UsageError(e.to_string()),
        e => UsageError(format!(
            "malformed ticket '{text}': {e}; pass the whole line `p2p share` printed"
        )),
    })
}

/// The first of `trackers` (named `source` in messages: "in the ticket", "given") to
/// finish the handshake in `secret`'s swarm; else, unless `no_mdns`, a tracker of the swarm
/// found on the LAN; else an error naming each address and why it did not answer.
pub async fn find_tracker(
    trackers: &[String],
    secret: &SwarmSecret,
    no_mdns: bool,
    source: &str,
) -> anyhow::Result<String> {
    let failures = match first_answer::first_to_answer(trackers, secret).await {
        Ok(index) => return Ok(trackers[index].clone()),
        Err(failures) => failures,
    };
    let lan = if no_mdns {
        LanDiscovery::Off
    } else {
        lan_rendezvous(secret).await
    };
    if let LanDiscovery::Answered(addr) = lan {
        tracing::info!(tracker = %addr, "found on the LAN (mDNS)");
        return Ok(addr);
    }
    if let Some((addr, _)) = failures.iter().find(|(_, why)| why.is_refusal()) {
        anyhow::bail!(
            "{}",
            crate::commands::tracker_client::refused_message(addr, "the")
        );
    }
    anyhow::bail!(
        "{}",
        first_answer::none_answered(&failures, source, &lan.to_string())
    )
}

/// What LAN discovery made of a swarm whose given addresses did not answer.
pub enum LanDiscovery {
    /// `--no-mdns`.
    Off,
    /// This tracker of the swarm, found on the LAN, finished the handshake.
    Answered(String),
    /// Nothing of this swarm was heard (or mDNS is not available here).
    NothingFound,
    /// These were heard, and none finished the handshake.
    NoneAnswered(Vec<(String, NoAnswer)>),
}

impl std::fmt::Display for LanDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LanDiscovery::Off => write!(f, "LAN discovery is off (--no-mdns or P2P_NO_MDNS)"),
            LanDiscovery::Answered(addr) => write!(f, "LAN discovery found {addr}"),
            LanDiscovery::NothingFound => write!(f, "LAN discovery found no peer of this swarm"),
            LanDiscovery::NoneAnswered(failures) => {
                let each: Vec<String> = failures
                    .iter()
                    .map(|(addr, why)| format!("{addr} {why}"))
                    .collect();
                write!(
                    f,
                    "LAN discovery heard of {} address(es) of this swarm, and none answered ({})",
                    failures.len(),
                    each.join(", ")
                )
            }
        }
    }
}

/// Looks for a tracker of `secret`'s swarm on the LAN (bounded by `mdns::BROWSE_WAIT`),
/// then dials what it heard (bounded by the dial timeout): only an address that finishes
/// the handshake is used.
pub async fn lan_rendezvous(secret: &SwarmSecret) -> LanDiscovery {
    let found = mdns::browse(secret).await;
    if found.is_empty() {
        return LanDiscovery::NothingFound;
    }
    match first_answer::first_to_answer(&found, secret).await {
        Ok(index) => LanDiscovery::Answered(found[index].clone()),
        Err(failures) => LanDiscovery::NoneAnswered(failures),
    }
}
