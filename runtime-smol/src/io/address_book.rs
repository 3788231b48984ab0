//! The peers of a swarm this host has met, remembered between runs (issue 15): when every
//! address a ticket lists is gone and LAN discovery finds nobody, a getter that met other
//! members before (an interrupted download, an earlier file of the same swarm) dials them.
//! The swarm's state stays soft: this is a hint, checked by a handshake before use.
//!
//! One file per swarm, `STATE_DIR/swarms/LAN_NAME.peers` (the swarm's LAN name, which
//! names the swarm without revealing its secret): one `PEER_ID ADDR` per line, the most
//! recently seen first, at most `BOOK_PEERS_MAX`. The state directory is `P2P_STATE_DIR`,
//! else `$XDG_STATE_HOME/p2p`, else `~/.local/state/p2p`; with none of them, nothing is
//! remembered. The file is read and written without following links, and a file that is
//! too large or garbled is a file with nothing in it.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use p2p_core::PeerId;
use p2p_core::secure::SwarmSecret;

use crate::io::no_follow;

/// Most peers remembered per swarm: enough that one of them is likely still there, few
/// enough that dialling them all costs nothing.
pub const BOOK_PEERS_MAX: usize = 32;
/// Longest address kept (a DNS name's limit); longer lines are skipped.
const ADDR_LEN_MAX: usize = 255;
/// Largest book read: `BOOK_PEERS_MAX` lines of the longest kind fit with room to spare.
const BOOK_LEN_MAX: u64 = 16 * 1024;
/// The state directory's permissions: the owner's alone (it says which swarms this user
/// is in).
const STATE_DIR_MODE: u32 = 0o700;
/// Names the state directory outright (tests, or a user who wants it elsewhere).
pub const STATE_DIR_ENV: &str = "P2P_STATE_DIR";

/// The remembered peers of one swarm.
#[derive(Clone, Debug)]
pub struct AddressBook {
    path: PathBuf,
}

impl AddressBook {
    /// The book of `secret`'s swarm in this user's state directory; `None` when there is
    /// no state directory.
    pub fn for_swarm(secret: &SwarmSecret) -> Option<AddressBook> {
        let dir = state_dir()?;
        Some(AddressBook::in_dir(&dir, secret))
    }

    fn in_dir(dir: &Path, secret: &SwarmSecret) -> AddressBook {
        let path = dir
            .join("swarms")
            .join(format!("{}.peers", secret.lan_name()));
        AddressBook { path }
    }

    /// The remembered peers, most recently seen first. Nothing when the book is missing,
    /// too large, or a link; garbled lines are skipped.
    pub fn load(&self) -> Vec<(PeerId, String)> {
        let bytes = match no_follow::read_bounded(&self.path, BOOK_LEN_MAX) {
            Ok(bytes) => bytes,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::debug!(book = %self.path.display(), "address book not read: {e}");
                }
                return Vec::new();
            }
        };
        parse(&String::from_utf8_lossy(&bytes))
    }

    /// Puts `seen` (peers met just now) first, keeps the others already remembered after
    /// them, and writes the book (a temporary file renamed over it). Errors are logged:
    /// forgetting is never fatal.
    pub fn remember(&self, seen: &[(PeerId, String)]) {
        if seen.is_empty() {
            return;
        }
        let merged = merge(seen, self.load());
        if let Err(e) = self.write(&merged) {
            tracing::debug!(book = %self.path.display(), "address book not written: {e}");
        }
    }

    fn write(&self, peers: &[(PeerId, String)]) -> io::Result<()> {
        let Some(dir) = self.path.parent() else {
            return Ok(());
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(STATE_DIR_MODE)
            .create(dir)?;
        let mut text = String::new();
        for (peer_id, addr) in peers {
            text.push_str(&format!("{peer_id} {addr}\n"));
        }
        no_follow::write_atomically(&self.path, text.as_bytes())
    }
}

/// `P2P_STATE_DIR`, else `$XDG_STATE_HOME/p2p`, else `$HOME/.local/state/p2p`.
fn state_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty(STATE_DIR_ENV) {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = non_empty("XDG_STATE_HOME") {
        return Some(PathBuf::from(dir).join("p2p"));
    }
    non_empty("HOME").map(|home| PathBuf::from(home).join(".local/state/p2p"))
}

fn parse(text: &str) -> Vec<(PeerId, String)> {
    let mut peers: Vec<(PeerId, String)> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(id), Some(addr), None) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Ok(id) = u64::from_str_radix(id, 16) else {
            continue;
        };
        if addr.len() > ADDR_LEN_MAX || peers.iter().any(|(p, a)| p.0 == id || a == addr) {
            continue;
        }
        peers.push((PeerId(id), addr.to_string()));
        if peers.len() == BOOK_PEERS_MAX {
            break;
        }
    }
    peers
}

/// `seen` first, then the `known` ones not among them, at most `BOOK_PEERS_MAX`: a peer
/// met again moves to the front; one that restarted (new id, same address) replaces its
/// old entry.
fn merge(seen: &[(PeerId, String)], known: Vec<(PeerId, String)>) -> Vec<(PeerId, String)> {
    let mut merged: Vec<(PeerId, String)> = Vec::new();
    for (peer_id, addr) in seen.iter().cloned().chain(known) {
        let duplicate = merged.iter().any(|(p, a)| *p == peer_id || *a == addr);
        if !duplicate && !addr.is_empty() && addr.len() <= ADDR_LEN_MAX {
            merged.push((peer_id, addr));
        }
        if merged.len() == BOOK_PEERS_MAX {
            break;
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, addr: &str) -> (PeerId, String) {
        (PeerId(id), addr.to_string())
    }

    fn book(dir: &Path) -> AddressBook {
        AddressBook::in_dir(dir, &SwarmSecret::from_bytes([9; 32]))
    }

    #[test]
    fn remembers_the_latest_first_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let book = book(dir.path());
        assert!(book.load().is_empty());
        book.remember(&[peer(1, "10.0.0.1:7000"), peer(2, "10.0.0.2:7000")]);
        book.remember(&[peer(3, "10.0.0.3:7000"), peer(1, "10.0.0.1:7000")]);
        assert_eq!(
            book.load(),
            vec![
                peer(3, "10.0.0.3:7000"),
                peer(1, "10.0.0.1:7000"),
                peer(2, "10.0.0.2:7000")
            ]
        );
        // A peer that restarted at the same address replaces its old entry.
        book.remember(&[peer(4, "10.0.0.2:7000")]);
        assert_eq!(book.load()[0], peer(4, "10.0.0.2:7000"));
        assert_eq!(book.load().len(), 3);
    }

    #[test]
    fn keeps_at_most_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let book = book(dir.path());
        let many: Vec<_> = (0..BOOK_PEERS_MAX as u64 + 5)
            .map(|i| peer(i, &format!("10.0.1.{i}:7000")))
            .collect();
        book.remember(&many);
        let loaded = book.load();
        assert_eq!(loaded.len(), BOOK_PEERS_MAX);
        assert_eq!(loaded[0], peer(0, "10.0.1.0:7000"));
    }

    #[test]
    fn a_garbled_oversized_or_linked_book_is_empty_and_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let book = book(dir.path());
        fs::create_dir_all(book.path.parent().unwrap()).unwrap();
        let long = "x".repeat(ADDR_LEN_MAX + 1);
        fs::write(
            &book.path,
            format!(
                "zz 1.2.3.4:5\n1 2 3\n\n00000000000000ff {long}\n00000000000000aa 10.0.0.9:7\n"
            ),
        )
        .unwrap();
        assert_eq!(book.load(), vec![peer(0xaa, "10.0.0.9:7")]);
        fs::write(&book.path, vec![b'a'; BOOK_LEN_MAX as usize + 1]).unwrap();
        assert!(book.load().is_empty());
        // A link at the book's name is neither read nor written through.
        let target = dir.path().join("precious");
        fs::write(&target, "00000000000000aa 10.0.0.9:7\n").unwrap();
        fs::remove_file(&book.path).unwrap();
        std::os::unix::fs::symlink(&target, &book.path).unwrap();
        assert!(book.load().is_empty());
        book.remember(&[peer(1, "10.0.0.1:7000")]);
        assert_eq!(
            fs::read_to_string(&target).unwrap(),
            "00000000000000aa 10.0.0.9:7\n"
        );
        assert_eq!(book.load(), vec![peer(1, "10.0.0.1:7000")]);
    }
}
