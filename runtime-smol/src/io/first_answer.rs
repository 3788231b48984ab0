//! Which of several addresses answers: a ticket lists every address of the sharer's host,
//! and a getter cannot know which of them it can reach (another LAN's, an IPv6 one on an
//! IPv4-only network, a firewalled one). So all are dialled at once, and the first to
//! finish the secure handshake wins; the others are dropped. An address that never answers
//! costs at most `DIAL_TIMEOUT`, and only when no other one answers first.
//!
//! The handshake, not the TCP connect, decides: a port that accepts but is not this
//! swarm's tracker (a wrong secret, another program) does not win over one that is.

use std::io;
use std::time::Duration;

use async_net::TcpStream;
use p2p_core::secure::SwarmSecret;
use smol::{Timer, future};

use crate::io::keys;
use crate::io::secure::{self, HandshakeError};

/// How long a connect to one address may take before it counts as not answering. Short:
/// on a LAN or in a datacenter a live address answers in milliseconds, and a dead one
/// (no host there, a firewall dropping packets) never does.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an address did not answer.
#[derive(Debug)]
pub enum NoAnswer {
    /// The TCP connect failed (refused, unreachable, the name did not resolve).
    Connect(io::Error),
    /// Nothing within `DIAL_TIMEOUT`.
    ConnectTimedOut,
    /// The other end closed or refused the handshake: not this swarm's tracker.
    HandshakeRefused,
    HandshakeTimedOut,
}

impl NoAnswer {
    /// Whether the address answered, but not as this swarm: the secret may be wrong.
    pub fn is_refusal(&self) -> bool {
        matches!(self, NoAnswer::HandshakeRefused)
    }
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoAnswer::Connect(e) => match e.kind() {
                io::ErrorKind::ConnectionRefused => write!(f, "refused"),
                io::ErrorKind::HostUnreachable => write!(f, "host unreachable"),
                io::ErrorKind::NetworkUnreachable => write!(f, "network unreachable"),
                io::ErrorKind::TimedOut => write!(f, "timed out"),
                _ => write!(f, "{e}"),
            },
            NoAnswer::ConnectTimedOut => {
                write!(f, "no answer within {} s", DIAL_TIMEOUT.as_secs())
            }
            NoAnswer::HandshakeRefused => write!(
                f,
                "refused the handshake (not a tracker of the ticket's swarm)"
            ),
            NoAnswer::HandshakeTimedOut => write!(
                f,
                "did not finish the handshake within {} s",
                p2p_core::secure::HANDSHAKE_TIMEOUT.as_secs()
            ),
        }
    }
}

/// The index in `addrs` of the first address to finish the handshake in `secret`'s
/// swarm, or why each one did not (in `addrs`' order). `addrs` must not be empty.
pub async fn first_to_answer(
    addrs: &[String],
    secret: &SwarmSecret,
) -> Result<usize, Vec<(String, NoAnswer)>> {
    let (results, results_rx) = smol::channel::bounded(addrs.len().max(1));
    // Dropping a task cancels it: once one answers, the others are abandoned mid-dial.
    let _dials: Vec<smol::Task<()>> = addrs
        .iter()
        .enumerate()
        .map(|(index, addr)| {
            let (addr, secret, results) = (addr.clone(), secret.clone(), results.clone());
            smol::spawn(async move {
                let _ = results.send((index, dial(&addr, &secret).await)).await;
            })
        })
        .collect();
    let mut failures: Vec<Option<NoAnswer>> = addrs.iter().map(|_| None).collect();
    let mut failed = 0;
    while failed < addrs.len() {
        // Every task sends once before it ends, and `results` is held here: never closed.
        let Ok((index, result)) = results_rx.recv().await else {
            break;
        };
        match result {
            Ok(()) => return Ok(index),
            Err(why) => {
                failures[index] = Some(why);
                failed += 1;
            }
        }
    }
    Err(addrs
        .iter()
        .zip(failures)
        .filter_map(|(addr, why)| Some((addr.clone(), why?)))
        .collect())
}

/// Connects to `addr` and runs the handshake; the session is then closed (the peer opens
/// its own).
async fn dial(addr: &str, secret: &SwarmSecret) -> Result<(), NoAnswer> {
    let connect = async { Some(TcpStream::connect(addr).await) };
    let timeout = async {
        Timer::after(DIAL_TIMEOUT).await;
        None
    };
    let mut stream = match future::or(connect, timeout).await {
        Some(Ok(stream)) => stream,
        Some(Err(e)) => return Err(NoAnswer::Connect(e)),
        None => return Err(NoAnswer::ConnectTimedOut),
    };
    let key = keys::new_static_key();
    let plaintext = secure::plaintext_records();
    match secure::initiate(&mut stream, &key, secret, plaintext).await {
        Ok(_) => Ok(()),
        Err(HandshakeError::TimedOut) => Err(NoAnswer::HandshakeTimedOut),
        Err(e) => {
            tracing::debug!(%addr, "handshake: {e}");
            Err(NoAnswer::HandshakeRefused)
        }
    }
}

/// Says that none of `failures` (every address tried) answered, each with why, and what
/// to do about it. `source`: where the addresses came from ("in the ticket"); `lan`: what
/// LAN discovery found ("LAN discovery found no peer of this swarm").
pub fn none_answered(failures: &[(String, NoAnswer)], source: &str, lan: &str) -> String {
    let each: Vec<String> = failures
        .iter()
        .map(|(addr, why)| format!("{addr} {why}"))
        .collect();
    let subject = match failures.len() {
        1 => format!("the address {source} did not answer"),
        n => format!("none of the {n} addresses {source} answered"),
    };
    format!(
        "{subject} ({}); is the sharer still running, and can this machine reach it? {lan}. \
         `p2p share` prints the addresses it listens on; `p2p share --advertise HOST` lists \
         the ones others should dial",
        each.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_each_address_and_why() {
        let failures = vec![
            (
                "10.0.0.5:7070".to_owned(),
                NoAnswer::Connect(io::ErrorKind::ConnectionRefused.into()),
            ),
            ("[fd00::5]:7070".to_owned(), NoAnswer::ConnectTimedOut),
            ("192.168.1.4:7070".to_owned(), NoAnswer::HandshakeRefused),
        ];
        let lan = "LAN discovery found no peer of this swarm";
        let message = none_answered(&failures, "in the ticket", lan);
        assert!(
            message.starts_with(
                "none of the 3 addresses in the ticket answered (10.0.0.5:7070 refused, \
                 [fd00::5]:7070 no answer within 3 s, 192.168.1.4:7070 refused the handshake"
            ),
            "{message}"
        );
        assert!(
            message.contains(
                "is the sharer still running, and can this machine reach it? \
                              LAN discovery found no peer of this swarm."
            ),
            "{message}"
        );
        let one = none_answered(&failures[..1], "in the ticket", lan);
        assert!(
            one.starts_with("the address in the ticket did not answer (10.0.0.5:7070 refused)"),
            "{one}"
        );
    }

    #[test]
    fn a_live_address_wins_over_dead_ones_without_waiting_for_them() {
        smol::block_on(async {
            // Nothing listens on the first port once its listener is dropped.
            let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let dead_addr = dead.local_addr().unwrap().to_string();
            drop(dead);
            let secret = keys::new_secret();
            let keyring = p2p_core::secure::Keyring::of(secret.clone());
            let live = async_net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let live_addr = live.local_addr().unwrap().to_string();
            let responder = smol::spawn(async move {
                let (mut stream, _) = live.accept().await.unwrap();
                let key = keys::new_static_key();
                let _ = secure::respond(&mut stream, &key, &keyring, false).await;
            });
            let addrs = vec![dead_addr.clone(), live_addr];
            assert_eq!(first_to_answer(&addrs, &secret).await.unwrap(), 1);
            responder.await;

            let failures = first_to_answer(&addrs[..1], &secret).await.unwrap_err();
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].0, dead_addr);
            assert!(matches!(&failures[0].1, NoAnswer::Connect(e)
                if e.kind() == io::ErrorKind::ConnectionRefused));
        });
    }
}
