//! Keys: the gateway's host key (created on first start), the gateway's own login key for a
//! host, and the check of a host's key against its pin (known_hosts file or fingerprint).

use russh::keys::ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, private::Ed25519Keypair};
use std::path::Path;

/// Load the host key, or create an ed25519 key there (mode 0600) when the file is missing.
pub fn load_or_create_host_key(path: &Path) -> anyhow::Result<PrivateKey> {
    if path.exists() {
        return russh::keys::load_secret_key(path, None)
            .map_err(|e| anyhow::anyhow!("cannot read host key {}: {e}", path.display()));
    }
    let mut seed = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut seed);
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let pem = key.to_openssh(LineEnding::LF)?;
    write_private(path, pem.as_bytes())?;
    tracing::info!(path = %path.display(), "created a new SSH host key");
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// `SHA256:...`, as `ssh-keygen -lf` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A host's pinned key.
#[derive(Debug, Clone)]
pub enum Pin {
    /// Entries of a known_hosts file for `host` / `[host]:port`.
    KnownHosts {
        path: std::path::PathBuf,
        host: String,
        port: u16,
    },
    /// `SHA256:...`.
    Fingerprint(String),
}

impl Pin {
    /// Whether `key` is the pinned one; `Err` says why not (logged, never shown with secrets).
    pub fn check(&self, key: &PublicKey) -> Result<(), String> {
        match self {
            Pin::Fingerprint(want) => {
                let got = fingerprint(key);
                if got == want.trim() {
                    Ok(())
                } else {
                    Err(format!("host key {got} does not match the pinned {want}"))
                }
            }
            Pin::KnownHosts { path, host, port } => {
                match russh::keys::check_known_hosts_path(host, *port, key, path) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(format!(
                        "host key {} is not in {} for {host}:{port}",
                        fingerprint(key),
                        path.display()
                    )),
                    Err(e) => Err(format!(
                        "host key {} refused by {}: {e}",
                        fingerprint(key),
                        path.display()
                    )),
                }
            }
        }
    }
}
