//! Session and approval records: the tables `warden sessions` and `warden approvals` list. They
//! are derived from the events, kept up to date by the writer in the same transaction as the
//! event they come from. The events are chained; the records are checked by deriving them again
//! (`verify`), so an edited record is found as surely as an edited event.

use std::collections::BTreeMap;

use redb::{ReadableTable, Table};
use serde::{Deserialize, Serialize};

use super::AuditError;
use super::event::{AuditPrincipal, Event, EventKind, Requester, SessionCounts, Timestamp};

/// One session, as listed by `warden sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub protocol: crate::protocol::Protocol,
    pub target: String,
    pub client_addr: String,
    pub principal: AuditPrincipal,
    pub started: Timestamp,
    /// The `seq` of its `session_start` event.
    pub start_seq: u64,
    /// Filled in by its `session_end` event; `None` while it runs (or if the gateway died).
    #[serde(default)]
    pub end: Option<SessionEndRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEndRecord {
    pub ended: Timestamp,
    pub end_seq: u64,
    pub reason: String,
    pub counts: SessionCounts,
}

/// One approval request and, once given, its decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    pub id: String,
    #[serde(default)]
    pub session: Option<String>,
    pub command: String,
    pub reason: String,
    pub requester: Requester,
    pub requested: Timestamp,
    /// The `seq` of its `approval_requested` event (0 when the record was put directly).
    #[serde(default)]
    pub requested_seq: u64,
    #[serde(default)]
    pub decision: Option<ApprovalDecision>,
}

impl ApprovalRecord {
    pub fn is_pending(&self) -> bool {
        self.decision.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    pub approver: String,
    pub approved: bool,
    #[serde(default)]
    pub reason: Option<String>,
    pub decided: Timestamp,
    /// The `seq` of its `approval_decided` event (0 when the record was put directly).
    #[serde(default)]
    pub decided_seq: u64,
}

type JsonTable<'txn> = Table<'txn, &'static str, &'static [u8]>;

/// Where the derived records live: the redb tables (the writer keeps them) or maps (`verify`
/// derives them again from the events and compares).
pub(crate) trait Index {
    fn session(&self, id: &str) -> Result<Option<SessionRecord>, AuditError>;
    fn put_session(&mut self, record: SessionRecord) -> Result<(), AuditError>;
    fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, AuditError>;
    fn put_approval(&mut self, record: ApprovalRecord) -> Result<(), AuditError>;
}

/// The writer's index: the two tables of the transaction being written.
pub(crate) struct TableIndex<'a, 'txn> {
    pub sessions: &'a mut JsonTable<'txn>,
    pub approvals: &'a mut JsonTable<'txn>,
}

impl Index for TableIndex<'_, '_> {
    fn session(&self, id: &str) -> Result<Option<SessionRecord>, AuditError> {
        get_json(self.sessions, id)
    }
    fn put_session(&mut self, record: SessionRecord) -> Result<(), AuditError> {
        put_json(self.sessions, &record.id, &record)
    }
    fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, AuditError> {
        get_json(self.approvals, id)
    }
    fn put_approval(&mut self, record: ApprovalRecord) -> Result<(), AuditError> {
        put_json(self.approvals, &record.id, &record)
    }
}

/// The records as the events say they should be.
#[derive(Debug, Default)]
pub(crate) struct MemoryIndex {
    pub sessions: BTreeMap<String, SessionRecord>,
    pub approvals: BTreeMap<String, ApprovalRecord>,
}

impl Index for MemoryIndex {
    fn session(&self, id: &str) -> Result<Option<SessionRecord>, AuditError> {
        Ok(self.sessions.get(id).cloned())
    }
    fn put_session(&mut self, record: SessionRecord) -> Result<(), AuditError> {
        self.sessions.insert(record.id.clone(), record);
        Ok(())
    }
    fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, AuditError> {
        Ok(self.approvals.get(id).cloned())
    }
    fn put_approval(&mut self, record: ApprovalRecord) -> Result<(), AuditError> {
        self.approvals.insert(record.id.clone(), record);
        Ok(())
    }
}

/// Update the session and approval records for one event about to be committed.
pub(crate) fn index_event(event: &Event, index: &mut impl Index) -> Result<(), AuditError> {
    match &event.kind {
        EventKind::SessionStart(start) => {
            let Some(id) = &event.session else {
                tracing::warn!(
                    seq = event.seq,
                    "session_start without a session id: not indexed"
                );
                return Ok(());
            };
            index.put_session(SessionRecord {
                id: id.clone(),
                protocol: start.protocol,
                target: start.target.clone(),
                client_addr: start.client_addr.clone(),
                principal: start.principal.clone(),
                started: event.time,
                start_seq: event.seq,
                end: None,
            })
        }
        EventKind::SessionEnd(end) => {
            let Some(id) = &event.session else {
                tracing::warn!(
                    seq = event.seq,
                    "session_end without a session id: not indexed"
                );
                return Ok(());
            };
            let Some(mut record) = index.session(id)? else {
                // The event itself is still chained; only the listing misses it (or retention
                // removed the session's start).
                tracing::debug!(seq = event.seq, session = %id, "session_end for an unknown session");
                return Ok(());
            };
            record.end = Some(SessionEndRecord {
                ended: event.time,
                end_seq: event.seq,
                reason: end.reason.clone(),
                counts: end.counts,
            });
            index.put_session(record)
        }
        EventKind::ApprovalRequested(req) => index.put_approval(ApprovalRecord {
            id: req.approval_id.clone(),
            session: event.session.clone(),
            command: req.command.clone(),
            reason: req.reason.clone(),
            requester: req.requester.clone(),
            requested: event.time,
            requested_seq: event.seq,
            decision: None,
        }),
        EventKind::ApprovalDecided(decided) => {
            let Some(mut record) = index.approval(&decided.approval_id)? else {
                tracing::debug!(
                    seq = event.seq,
                    approval = %decided.approval_id,
                    "approval_decided for an unknown approval"
                );
                return Ok(());
            };
            record.decision = Some(ApprovalDecision {
                approver: decided.approver.clone(),
                approved: decided.approved,
                reason: decided.reason.clone(),
                decided: event.time,
                decided_seq: event.seq,
            });
            index.put_approval(record)
        }
        EventKind::Command(_)
        | EventKind::Masked(_)
        | EventKind::Recording(_)
        | EventKind::Checkpoint(_)
        | EventKind::Pruned(_)
        | EventKind::Note(_) => Ok(()),
    }
}

pub(crate) fn put_json<T: Serialize>(
    table: &mut JsonTable<'_>,
    key: &str,
    value: &T,
) -> Result<(), AuditError> {
    let bytes = serde_json::to_vec(value)?;
    table.insert(key, bytes.as_slice())?;
    Ok(())
}

pub(crate) fn get_json<T: for<'de> Deserialize<'de>>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, AuditError> {
    match table.get(key)? {
        Some(guard) => Ok(Some(serde_json::from_slice(guard.value())?)),
        None => Ok(None),
    }
}
