//! `[ssh]` (the listener) and `[targets.NAME.ssh]` (a host behind a target): the SSH adapter's
//! part of `warden.toml`. Loaded by [`crate::config`], which resolves relative paths.

use serde::Deserialize;
use std::path::PathBuf;

/// `[ssh]`: where clients connect with ssh, scp and sftp (`ssh -p PORT TARGET@gateway`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshListener {
    /// `ip:port` to listen on.
    pub listen: std::net::SocketAddr,
    /// The gateway's host key (OpenSSH format). Created (ed25519) on first start if missing;
    /// its fingerprint is logged so clients can pin it.
    pub host_key: PathBuf,
    /// Public keys that log in without a token, each registered to a principal.
    #[serde(default)]
    pub keys: Vec<KeyPrincipal>,
    /// Close a connection with no traffic for this long.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: std::time::Duration,
    /// Under a `mask` verdict, output is masked line by line; a line longer than this is cut
    /// and masked in pieces, each cut placed where no card number is split (at least 4 KiB).
    #[serde(default = "default_max_line")]
    pub mask_max_line: crate::units::ByteSize,
    /// Output bytes of each command kept in the session recording (the rest are counted).
    #[serde(default = "default_recorded_output")]
    pub recorded_output_per_command: crate::units::ByteSize,
    /// Connections this listener holds at once (authenticated or not); one more is sent an
    /// SSH disconnect, "too many connections".
    #[serde(default = "crate::proxy::accept::default_listener_max")]
    pub max_connections: usize,
}

/// `[[ssh.keys]]`: `key = "ssh-ed25519 AAAA... comment"`, the principal it logs in as.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPrincipal {
    /// The public key, as a line of `authorized_keys` (options are not supported).
    pub key: String,
    /// The principal's subject, as a token's `sub` would give it.
    pub subject: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

fn default_idle_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(30 * 60)
}
fn default_max_line() -> crate::units::ByteSize {
    crate::units::ByteSize(64 << 10)
}
fn default_recorded_output() -> crate::units::ByteSize {
    crate::units::ByteSize(256 << 10)
}

/// `[targets.NAME.ssh]`: the real host behind an `ssh` target, with the gateway's own login.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshUpstream {
    pub host: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// The login on the host; clients never learn it.
    pub user: String,
    /// The gateway's private key for this host (OpenSSH format).
    pub key_file: Option<PathBuf>,
    /// Or a file holding the password.
    pub password_file: Option<PathBuf>,
    /// The host's pinned key: a `known_hosts` file (entries for `host` / `[host]:port`) ...
    pub known_hosts: Option<PathBuf>,
    /// ... or its fingerprint as `ssh-keygen -lf` prints it (`SHA256:...`). A host whose key
    /// matches neither is refused; there is no trust on first use.
    pub host_key_fingerprint: Option<String>,
    /// Programs that may read the terminal in an interactive session (`top`, `less`): while
    /// one runs, keys go to it as typed, and are recorded. Others get no keys, and a line
    /// running a known terminal program not named here is refused (docs/ssh.md).
    #[serde(default)]
    pub terminal_programs: Vec<String>,
}

fn default_ssh_port() -> u16 {
    22
}

impl SshUpstream {
    /// Config errors a target's `ssh` table can have.
    pub fn validate(&self) -> Result<(), String> {
        if self.key_file.is_none() == self.password_file.is_none() {
            return Err("needs exactly one of key_file and password_file".into());
        }
        if self.known_hosts.is_none() && self.host_key_fingerprint.is_none() {
            return Err(
                "needs known_hosts or host_key_fingerprint (the host key is pinned, never trusted on first use)"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        [
            &mut self.key_file,
            &mut self.password_file,
            &mut self.known_hosts,
        ]
        .into_iter()
        .flatten()
    }
}

impl SshListener {
    /// Config errors the `[ssh]` section can have: every registered key must parse.
    pub fn validate(&self) -> Result<(), String> {
        for k in &self.keys {
            russh::keys::PublicKey::from_openssh(k.key.trim())
                .map_err(|e| format!("key of `{}` is not an OpenSSH public key: {e}", k.subject))?;
        }
        Ok(())
    }

    pub fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        std::iter::once(&mut self.host_key)
    }
}
