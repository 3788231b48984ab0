//! Finding a swarm to talk to, shared by `get`, `ls` and `peers`: the addresses given (a
//! ticket's, `--tracker`), all dialled at once, the first to finish the handshake kept;
//! when none answers, a tracker of the swarm found on the LAN (mDNS); else a member met in
//! an earlier run (`io/address_book`), which answers from what it knows.

use p2p_core::secure::SwarmSecret;
use p2p_core::{PeerId, Ticket};

use crate::UsageError;
use crate::io::address_book::AddressBook;
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
    let remembered = AddressBook::for_swarm(secret)
        .map(|book| book.load())
        .unwrap_or_default();
    let met = remembered_rendezvous(remembered, secret).await;
    if let MetBefore::Answered(peers) = met {
        let addr = peers[0].1.clone();
        eprintln!(
            "no address {source} answered; asking {addr}, a peer of the swarm met in an earlier \
             run: it answers from what it knows"
        );
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
        first_answer::none_answered(&failures, source, &format!("{lan}{met}"))
    )
}

/// What the address book made of a swarm none of whose trackers answered.
pub enum MetBefore {
    /// Nobody remembered (or no state directory).
    Nobody,
    /// These peers are remembered, the first of them answered the handshake.
    Answered(Vec<(PeerId, String)>),
    NoneAnswered(usize),
}

impl std::fmt::Display for MetBefore {
    /// Follows `LanDiscovery`'s sentence in the error message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetBefore::Nobody | MetBefore::Answered(_) => Ok(()),
            MetBefore::NoneAnswered(1) => {
                write!(
                    f,
                    "; the one peer met in an earlier run did not answer either"
                )
            }
            MetBefore::NoneAnswered(n) => {
                write!(
                    f,
                    "; none of the {n} peers met in earlier runs answered either"
                )
            }
        }
    }
}

/// Dials the peers of the address book at once: when one finishes the handshake, all are
/// returned, that one first, for the download to dial (the dead ones cost a failed
/// connect each).
pub async fn remembered_rendezvous(
    mut peers: Vec<(PeerId, String)>,
    secret: &SwarmSecret,
) -> MetBefore {
    if peers.is_empty() {
        return MetBefore::Nobody;
    }
    let addrs: Vec<String> = peers.iter().map(|(_, addr)| addr.clone()).collect();
    match first_answer::first_to_answer(&addrs, secret).await {
        Ok(index) => {
            let first = peers.remove(index);
            peers.insert(0, first);
            MetBefore::Answered(peers)
        }
        Err(_) => MetBefore::NoneAnswered(peers.len()),
    }
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
