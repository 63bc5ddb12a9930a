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
//! `verify.rs` the chain walk.
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
mod query;
mod records;
mod recover;
pub mod report;
mod retention;
pub mod schema;
mod store;
mod verify;
mod writer;

use serde::Deserialize;
use std::path::PathBuf;

pub use blob::{cap_text, sha256_hex};
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
    /// Signed checkpoints of the chain's head (`[audit.checkpoints]`).
    #[serde(default)]
    pub checkpoints: Option<checkpoint::CheckpointConfig>,
}

fn default_max_batch() -> usize {
    DEFAULT_MAX_BATCH
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
