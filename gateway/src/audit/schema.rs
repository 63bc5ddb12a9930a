//! The on-disk layout: redb table definitions. Public so that tools (and the tamper tests) can
//! read and write the raw file; the gateway itself goes through [`super::AuditStore`].
//!
//! Records other than events are JSON (`serde_json`) so that a future field is one
//! `#[serde(default)]` away; events keep the exact bytes the hash chain covers.

use redb::TableDefinition;

use super::chain::Hash;

/// Session id → JSON [`super::SessionRecord`]. An index over the events, maintained by the writer
/// in the same transaction as the `session_start` / `session_end` event it derives from.
pub const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");

/// Sequence number (from 1) → (chain hash, canonical event bytes).
pub const EVENTS: TableDefinition<u64, (Hash, &[u8])> = TableDefinition::new("events");

/// Approval id → JSON [`super::ApprovalRecord`].
pub const APPROVALS: TableDefinition<&str, &[u8]> = TableDefinition::new("approvals");

/// (Session id, chunk number from 0) → recording bytes, masked by the caller.
pub const RECORDINGS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("recordings");

/// sha256 of a long text cut out of events → the text, zstd-compressed (`texts.rs`).
pub const TEXTS: TableDefinition<Hash, &[u8]> = TableDefinition::new("texts");

/// sha256 of a text in [`TEXTS`] → `seq` of the newest event stored with it (for retention).
pub const TEXT_LAST: TableDefinition<Hash, u64> = TableDefinition::new("text_last");

/// Name → (sequence number, hash). See [`HEAD`].
pub const META: TableDefinition<&str, (u64, Hash)> = TableDefinition::new("meta");

/// Key in [`META`]: the last event written and its hash. Updated in the same transaction as the
/// events, so an event removed from the tail later shows up as a head pointing past the end.
pub const HEAD: &str = "head";

/// Key in [`META`]: the generation of the journal the database is writing (`journal.rs`), and
/// the previous one's in the first 8 bytes of the hash slot. Absent after a clean stop: the
/// database then needs no journal.
pub const JOURNAL: &str = "journal";

/// Key in [`META`]: where the chain starts after retention removed its beginning: the last
/// removed event's `seq` and hash. Absent until the first pruning.
pub const BASE: &str = "base";
