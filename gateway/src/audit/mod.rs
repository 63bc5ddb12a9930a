//! The audit store: sessions, hash-chained events, approvals and recordings in redb.
//!
//! The gateway opens one [`AuditStore`] at start-up and clones it into every session. Before a
//! command is forwarded, its verdict goes in with [`AuditStore::append`], which returns once the
//! event is durable; concurrent sessions share fsyncs through one group-commit writer
//! (`writer.rs`). Every event extends a sha256 chain (`chain.rs`) that [`AuditStore::verify`]
//! and `warden audit verify` walk; [`AuditStore::export`] writes it as JSON lines an auditor can
//! check without warden (`export.rs`, [`verify_export`]).
//!
//! Files: `event.rs` is the record format auditors read, `records.rs` the session and approval
//! listings derived from it, [`schema`] the redb tables, `store.rs` the handle and its readers,
//! `verify.rs` the chain walk, `journal.rs` the write-ahead journal that makes appends durable.
//!
//! redb locks the database file to the process that opens it. While the gateway runs, another
//! process (such as `warden audit verify`) cannot open it: verify a copy, or use the running
//! gateway's own [`AuditStore::verify`].

mod blob;
mod chain;
pub mod checkpoint;
mod error;
mod event;
mod export;
mod journal;
mod query;
mod records;
mod recover;
pub mod report;
mod retention;
pub mod schema;
mod store;
mod texts;
mod verify;
mod writer;

use serde::Deserialize;
use std::path::PathBuf;

pub use blob::{cap_text, is_capped, sha256_hex};
pub use chain::{GENESIS, Hash, canonical_bytes, chain_hash, parse_hash};
pub use error::AuditError;
pub use event::{
    ApprovalDecided, ApprovalRequested, AuditPrincipal, AuditVerdict, CheckpointEvent,
    CommandEvent, Event, EventKind, MaskedCells, MaskedEvent, NewEvent, Note, PolicyDecision,
    Pruned, RecordingChunk, Requester, SessionCounts, SessionEnd, SessionStart, SignedHead,
    Timestamp,
};
pub use export::{CSV_COLUMNS, ExportFormat, ExportOptions, verify_export};
pub use query::{ExportFilter, SessionContext};
pub use records::{ApprovalDecision, ApprovalRecord, SessionEndRecord, SessionRecord};
pub use recover::Orphan;
pub use store::{AuditStore, ChainedEvent, StoreOptions};
pub use verify::{ChainProblem, ProblemKind, VerifyReport};
pub use writer::WriterStats;

/// Default for [`AuditConfig::max_batch`].
pub const DEFAULT_MAX_BATCH: usize = 512;

/// `[audit]` in warden.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The redb database file.
    pub path: PathBuf,
    /// Most requests (events, recording chunks) one group commit takes.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Command texts longer than this many bytes are stored as their head plus the whole
    /// text's length and sha256 (in events, approval requests and recordings).
    #[serde(default = "default_text_cap")]
    pub text_cap: crate::units::ByteSize,
    /// New sessions are refused while the audit store's file system has less free space than
    /// this (sessions already open keep going): `"1GiB"`, `"512MiB"`, or a byte count.
    #[serde(default = "default_min_free")]
    pub min_free: crate::units::ByteSize,
    /// Keep events, sessions and recordings this long, then remove them (leaving a signed cut
    /// the rest still verifies from). PCI DSS 10.5.1 asks for at least 12 months (`"400d"`).
    /// Unset: keep everything.
    #[serde(default, with = "humantime_serde")]
    pub retain: Option<std::time::Duration>,
    /// A `retain` shorter than 365 days is refused unless this says it is meant (a test
    /// environment, a non-PCI deployment): a config edit must not be a quiet way to remove
    /// evidence.
    #[serde(default)]
    pub retain_below_pci_minimum: bool,
    /// Signed checkpoints of the chain's head (`[audit.checkpoints]`).
    #[serde(default)]
    pub checkpoints: Option<checkpoint::CheckpointConfig>,
}

fn default_max_batch() -> usize {
    DEFAULT_MAX_BATCH
}

/// PCI DSS 10.5.1: keep audit history at least 12 months.
pub const PCI_MIN_RETAIN: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);

impl AuditConfig {
    /// Refuse a retention shorter than [`PCI_MIN_RETAIN`] unless acknowledged.
    pub fn validate(&self) -> Result<(), String> {
        match self.retain {
            Some(retain) if retain < PCI_MIN_RETAIN && !self.retain_below_pci_minimum => {
                Err(format!(
                    "retain = \"{}\" is shorter than the 12 months PCI DSS 10.5.1 asks for; set \
                 retain_below_pci_minimum = true if that is meant",
                    humantime::format_duration(retain)
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Default for [`AuditConfig::text_cap`]: whole statements of any ordinary size.
pub const DEFAULT_TEXT_CAP: usize = 16 << 10;

fn default_text_cap() -> crate::units::ByteSize {
    crate::units::ByteSize(DEFAULT_TEXT_CAP as u64)
}

/// Default for [`AuditConfig::min_free`].
pub const DEFAULT_MIN_FREE: u64 = 512 << 20;

fn default_min_free() -> crate::units::ByteSize {
    crate::units::ByteSize(DEFAULT_MIN_FREE)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> AuditConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn a_retention_under_twelve_months_needs_saying_so() {
        assert!(config("path = \"a\"\nretain = \"400d\"").validate().is_ok());
        assert!(config("path = \"a\"").validate().is_ok());
        let short = config("path = \"a\"\nretain = \"1s\"");
        assert!(short.validate().unwrap_err().contains("12 months"));
        let acknowledged = config("path = \"a\"\nretain = \"1s\"\nretain_below_pci_minimum = true");
        assert!(acknowledged.validate().is_ok());
    }
}
