//! Session and approval records: the tables `warden sessions` and `warden approvals` list. They
//! are indexes derived from the events (the events are the evidence, hash-chained; these are
//! not), kept up to date by the writer in the same transaction as the event they come from.

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

/// Update the session and approval indexes for one event about to be committed.
pub(crate) fn index_event(
    event: &Event,
    sessions: &mut JsonTable<'_>,
    approvals: &mut JsonTable<'_>,
) -> Result<(), AuditError> {
    match &event.kind {
        EventKind::SessionStart(start) => {
            let Some(id) = &event.session else {
                tracing::warn!(
                    seq = event.seq,
                    "session_start without a session id: not indexed"
                );
                return Ok(());
            };
            let record = SessionRecord {
                id: id.clone(),
                protocol: start.protocol,
                target: start.target.clone(),
                client_addr: start.client_addr.clone(),
                principal: start.principal.clone(),
                started: event.time,
                start_seq: event.seq,
                end: None,
            };
            put_json(sessions, id, &record)
        }
        EventKind::SessionEnd(end) => {
            let Some(id) = &event.session else {
                tracing::warn!(
                    seq = event.seq,
                    "session_end without a session id: not indexed"
                );
                return Ok(());
            };
            let Some(mut record) = get_json::<SessionRecord>(sessions, id)? else {
                // The event itself is still chained; only the listing misses it.
                tracing::warn!(
                    seq = event.seq,
                    session = %id,
                    "session_end for an unknown session"
                );
                return Ok(());
            };
            record.end = Some(SessionEndRecord {
                ended: event.time,
                end_seq: event.seq,
                reason: end.reason.clone(),
                counts: end.counts,
            });
            put_json(sessions, id, &record)
        }
        EventKind::ApprovalRequested(req) => {
            let record = ApprovalRecord {
                id: req.approval_id.clone(),
                session: event.session.clone(),
                command: req.command.clone(),
                reason: req.reason.clone(),
                requester: req.requester.clone(),
                requested: event.time,
                requested_seq: event.seq,
                decision: None,
            };
            put_json(approvals, &req.approval_id, &record)
        }
        EventKind::ApprovalDecided(decided) => {
            let Some(mut record) = get_json::<ApprovalRecord>(approvals, &decided.approval_id)?
            else {
                tracing::warn!(
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
            put_json(approvals, &decided.approval_id, &record)
        }
        EventKind::Command(_) | EventKind::Masked(_) | EventKind::Note(_) => Ok(()),
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
