//! The audit store: sessions, hash-chained events, approvals and recordings in redb.

use serde::Deserialize;
use std::path::PathBuf;

/// `[audit]` in warden.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The redb database file.
    pub path: PathBuf,
}
