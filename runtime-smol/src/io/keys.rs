//! The keys a process holds, from OS randomness (the core never draws any): its static key,
//! new swarm secrets, handshake seeds; and secret files, one or more secrets of 64 hex
//! digits, one per line, `#` comments.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use p2p_core::secure::{StaticKey, SwarmSecret};

/// Permissions of a secret file this program writes: the owner's alone.
const SECRET_FILE_MODE: u32 = 0o600;
/// Largest secret file read: a few thousand secrets; anything larger is not one.
const SECRET_FILE_LEN_MAX: u64 = 1024 * 1024;

/// `N` bytes from the OS's cryptographic RNG.
pub fn os_random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // Fails only where the OS has no RNG at all; there is no safe way on without one.
    getrandom::getrandom(&mut bytes).expect("the OS random number generator works");
    bytes
}

/// A new static key for this process: its peer id is derived from it.
pub fn new_static_key() -> StaticKey {
    StaticKey::from_private(os_random())
}

/// A new swarm secret.
pub fn new_secret() -> SwarmSecret {
    SwarmSecret::from_bytes(os_random())
}

/// The secrets in `text`: 64 hex digits per line; blank lines and `#` comments (whole
/// lines or after a secret) are skipped. At least one.
pub fn parse_secrets(text: &str) -> Result<Vec<SwarmSecret>, String> {
    let mut secrets = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let secret = line
            .parse::<SwarmSecret>()
            .map_err(|e| format!("line {}: {e}", i + 1))?;
        secrets.push(secret);
    }
    if secrets.is_empty() {
        return Err("it holds no secret (64 hex digits per line)".into());
    }
    Ok(secrets)
}

/// Every secret in the file at `path`.
pub fn read_secret_file(path: &Path) -> anyhow::Result<Vec<SwarmSecret>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read the secret file {}", path.display()))?
        .len();
    if len > SECRET_FILE_LEN_MAX {
        anyhow::bail!(
            "{} is {len} bytes long: not a secret file (64 hex digits per line)",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secret file {}", path.display()))?;
    parse_secrets(&text).map_err(|e| anyhow::anyhow!("secret file {}: {e}", path.display()))
}

/// The one secret of the file at `path` (a client belongs to one swarm).
pub fn read_one_secret(path: &Path) -> anyhow::Result<SwarmSecret> {
    let mut secrets = read_secret_file(path)?;
    if secrets.len() > 1 {
        anyhow::bail!(
            "secret file {} holds {} secrets; a peer belongs to one swarm: give it a file with one",
            path.display(),
            secrets.len()
        );
    }
    // `read_secret_file` returns at least one.
    Ok(secrets.remove(0))
}

/// The text of a new secret file: a comment saying what it is, then the secret.
pub fn secret_file_text(secret: &SwarmSecret) -> String {
    format!(
        "# p2p swarm secret (tag {}): whoever holds it can join the swarm. Keep it private.\n{}\n",
        secret.tag(),
        secret.to_hex()
    )
}

/// Writes a new secret file at `path`, readable by its owner alone; refuses to replace one.
pub fn write_secret_file(path: &Path, secret: &SwarmSecret) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(SECRET_FILE_MODE)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(secret_file_text(secret).as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_round_trip_and_say_what_is_wrong() {
        let secret = new_secret();
        assert_ne!(secret, new_secret(), "two draws from the OS differ");
        let text = secret_file_text(&secret);
        assert_eq!(parse_secrets(&text), Ok(vec![secret.clone()]));

        let other = new_secret();
        let two = format!(
            "\n# two swarms\n{}  # first\n\n{}\n",
            secret.to_hex(),
            other.to_hex()
        );
        assert_eq!(parse_secrets(&two), Ok(vec![secret, other]));

        assert!(
            parse_secrets("# nothing\n\n")
                .unwrap_err()
                .contains("no secret")
        );
        let bad = parse_secrets("abc\n").unwrap_err();
        assert!(
            bad.starts_with("line 1: a swarm secret is 64 hex digits"),
            "{bad}"
        );
    }

    #[test]
    fn a_written_secret_file_is_private_and_never_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swarm.key");
        let secret = new_secret();
        write_secret_file(&path, &secret).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_one_secret(&path).unwrap(), secret);
        assert!(write_secret_file(&path, &new_secret()).is_err());
        assert_eq!(read_one_secret(&path).unwrap(), secret);
    }
}
