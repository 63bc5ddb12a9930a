//! `[postgres]` (the listener) and `[targets.NAME.postgres]` (the server behind a target): the
//! PostgreSQL adapter's part of `warden.toml`. Loaded by [`crate::config`], which resolves
//! relative paths.

use crate::units::ByteSize;
use serde::Deserialize;
use std::path::PathBuf;

/// `[postgres]`: where clients connect with psql, pgbench or any libpq driver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresListener {
    /// `ip:port` to listen on.
    pub listen: std::net::SocketAddr,
    /// PEM certificate chain and private key for TLS (SSLRequest). Without them, TLS is refused.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Accept the token as a cleartext password without TLS. Only for loopback demos: the token
    /// would cross the network in the clear.
    #[serde(default)]
    pub allow_plaintext_password: bool,
    /// Close a session idle this long.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: std::time::Duration,
    /// Largest client message accepted; larger ones end the session with an error.
    #[serde(default = "default_max_message")]
    pub max_message_size: ByteSize,
    /// Result rows per `mask-rows` batch, and bytes per batch, whichever fills first.
    #[serde(default = "default_batch_rows")]
    pub mask_batch_rows: usize,
    #[serde(default = "default_batch_bytes")]
    pub mask_batch_bytes: ByteSize,
    /// Rows of each result kept in the session recording (the rest are counted, not stored):
    /// recordings are evidence of what was seen, not a copy of the database.
    #[serde(default = "default_recorded_rows")]
    pub recorded_rows_per_result: u64,
    /// Connections this listener holds at once (authenticated or not); one more is answered
    /// `FATAL 53300 too_many_connections`.
    #[serde(default = "crate::proxy::accept::default_listener_max")]
    pub max_connections: usize,
}

fn default_recorded_rows() -> u64 {
    1000
}

fn default_idle_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(30 * 60)
}
fn default_max_message() -> ByteSize {
    ByteSize(64 << 20)
}
// Small enough that one `mask-rows` call stays well inside the default 10 ms deadline on a
// busy machine with a card number in every row (512 rows missed it under load once the
// detector read separators, other scripts and escape codes).
fn default_batch_rows() -> usize {
    128
}
fn default_batch_bytes() -> ByteSize {
    ByteSize(256 << 10)
}

/// `[targets.NAME.postgres]`: the real server behind a target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresUpstream {
    pub host: String,
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// The database on the server (the client's database name picks the target instead).
    pub database: String,
    /// The gateway's own login on the server; clients never learn it.
    pub user: String,
    /// File holding the password (SCRAM-SHA-256 or md5); absent for `trust`.
    pub password_file: Option<PathBuf>,
    /// `disable` (default), `require` (TLS, any certificate: test setups only) or `verify`
    /// (TLS with the server certificate checked against `ca_file`).
    #[serde(default)]
    pub tls: UpstreamTls,
    pub ca_file: Option<PathBuf>,
    /// Pass a client's start-up `options` (server switches such as `-c geqo=off`) to the
    /// server. Off by default: `-c log_statement=none` would silence the server's own log of
    /// the session. Settings the gateway pins are refused either way.
    #[serde(default)]
    pub allow_options: bool,
}

impl PostgresUpstream {
    pub fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        [&mut self.password_file, &mut self.ca_file]
            .into_iter()
            .flatten()
    }
}

impl PostgresListener {
    pub fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        [&mut self.tls_cert, &mut self.tls_key]
            .into_iter()
            .flatten()
    }

    /// Config errors the `[postgres]` section can have.
    pub fn validate(&self) -> Result<(), String> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key go together".into());
        }
        if self.tls_cert.is_none() && !self.allow_plaintext_password {
            return Err(
                "without tls_cert/tls_key, tokens would cross the network in the clear; \
                        configure TLS or set allow_plaintext_password = true (loopback demos only)"
                    .into(),
            );
        }
        Ok(())
    }
}

fn default_pg_port() -> u16 {
    5432
}

/// TLS towards a PostgreSQL upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamTls {
    #[default]
    Disable,
    Require,
    Verify,
}
