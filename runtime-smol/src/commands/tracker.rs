//! `p2p tracker`: run a tracker for the swarms whose secrets it is given, until stopped;
//! and `p2p new-secret`, which makes such a secret.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use p2p_core::secure::Keyring;

use crate::UsageError;
use crate::driver::tracker::{self, ListedAddresses};
use crate::io::keys;
use crate::io::signals::StopSignals;

pub async fn run(
    listen: SocketAddr,
    secret_files: &[PathBuf],
    addresses: ListedAddresses,
    signals: &mut StopSignals,
) -> anyhow::Result<ExitCode> {
    let keyring = keyring_of(secret_files)?;
    let tracker = tracker::start(listen, keyring.clone(), addresses).await?;
    if addresses == ListedAddresses::Claimed {
        tracing::warn!(
            "--trust-claimed-addresses: peers are listed at the addresses they claim; any member can point the others at any address"
        );
    }
    eprintln!(
        "tracker listening on {}; serving {} swarm(s); Ctrl-C to stop",
        tracker.addr,
        keyring.len()
    );
    for tag in keyring.tags() {
        tracing::info!(%tag, "serving swarm");
    }
    let stop = signals.next().await;
    tracker.stop().await;
    Ok(stop.exit_code())
}

/// Every secret of every file. A tracker without one would refuse every connection: we
/// decided against an open mode (a tracker cannot tell a first announce of a new swarm
/// from an outsider's without a key it already shares with that swarm).
fn keyring_of(secret_files: &[PathBuf]) -> anyhow::Result<Keyring> {
    if secret_files.is_empty() {
        return Err(UsageError(
            "a tracker serves only the swarms whose secrets it is given: pass --secret-file FILE \
             (make one with `p2p new-secret FILE`, and give the same file to the swarm's peers); \
             `p2p share` without --tracker runs a tracker of its own instead"
                .into(),
        )
        .into());
    }
    let mut keyring = Keyring::new();
    for path in secret_files {
        for secret in keys::read_secret_file(path)? {
            keyring.insert(secret);
        }
    }
    Ok(keyring)
}

/// `p2p new-secret FILE`.
pub fn new_secret(path: &Path) -> anyhow::Result<ExitCode> {
    let secret = keys::new_secret();
    keys::write_secret_file(path, &secret)?;
    eprintln!(
        "wrote a new swarm secret to {} (swarm tag {}); keep it private: whoever has it can join the swarm",
        path.display(),
        secret.tag()
    );
    Ok(ExitCode::SUCCESS)
}
