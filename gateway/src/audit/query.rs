//! Selecting events for export and reports: by time, sequence, session, actor (at any depth of
//! the delegation chain), target, verdict and kind. Events carry their session's id only; who
//! and where come from the session's record, looked up once per session.

use std::collections::HashMap;

use redb::ReadTransaction;

use super::AuditError;
use super::event::{AuditPrincipal, Event, EventKind, Timestamp};
use super::records::{SessionRecord, get_json};
use super::schema::SESSIONS;

/// Which events to take. Every field set must match; an empty filter takes everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportFilter {
    /// First `seq` to consider.
    pub from_seq: Option<u64>,
    /// Events at or after this time.
    pub from: Option<Timestamp>,
    /// Events before this time.
    pub to: Option<Timestamp>,
    pub session: Option<String>,
    /// A principal anywhere in the event's session's delegation chain (or its subject); for
    /// approval events, also the requester's chain and the approver.
    pub actor: Option<String>,
    pub target: Option<String>,
    /// `allow`, `mask`, `deny`, `require-approval`: command events with that combined verdict.
    pub verdict: Option<String>,
    /// Event types (`command`, `session_start`, ...); empty: all.
    pub kinds: Vec<String>,
    /// Only commands a shadow policy would have judged more strictly than the chain did.
    pub shadow_diff: bool,
}

impl ExportFilter {
    /// Only a starting `seq` (or nothing): the export is a contiguous piece of the chain.
    pub fn is_contiguous(&self) -> bool {
        ExportFilter {
            from_seq: None,
            ..self.clone()
        } == ExportFilter::default()
    }
}

/// What an event's session says about it: its target and principal.
#[derive(Debug, Clone)]
pub struct SessionContext {
    pub target: String,
    pub principal: AuditPrincipal,
}

/// Session records, read once each.
pub(crate) struct Sessions<'t> {
    txn: &'t ReadTransaction,
    cache: HashMap<String, Option<SessionContext>>,
}

impl<'t> Sessions<'t> {
    pub(crate) fn new(txn: &'t ReadTransaction) -> Sessions<'t> {
        Sessions {
            txn,
            cache: HashMap::new(),
        }
    }

    pub(crate) fn context(&mut self, event: &Event) -> Result<Option<SessionContext>, AuditError> {
        let Some(id) = &event.session else {
            return Ok(None);
        };
        if let Some(found) = self.cache.get(id) {
            return Ok(found.clone());
        }
        let table = self.txn.open_table(SESSIONS)?;
        // An unreadable record is the verifier's business; here it just gives no context.
        let record: Option<SessionRecord> = get_json(&table, id).unwrap_or(None);
        let context = record.map(|r| SessionContext {
            target: r.target,
            principal: r.principal,
        });
        self.cache.insert(id.clone(), context.clone());
        Ok(context)
    }
}

impl ExportFilter {
    /// Does `event` (with its session's context) pass?
    pub fn matches(&self, event: &Event, context: Option<&SessionContext>) -> bool {
        if self.from.is_some_and(|from| event.time < from)
            || self.to.is_some_and(|to| event.time >= to)
        {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.iter().any(|k| k == event.kind.name()) {
            return false;
        }
        if let Some(session) = &self.session
            && event.session.as_ref() != Some(session)
        {
            return false;
        }
        if let Some(target) = &self.target
            && context.is_none_or(|c| &c.target != target)
        {
            return false;
        }
        if self.shadow_diff {
            match &event.kind {
                EventKind::Command(c) if c.shadow_verdict.is_some_and(|s| s != c.verdict) => {}
                _ => return false,
            }
        }
        if let Some(verdict) = &self.verdict {
            match &event.kind {
                EventKind::Command(c) if c.verdict.as_str() == verdict => {}
                _ => return false,
            }
        }
        if let Some(actor) = &self.actor
            && !involves(event, context, actor)
        {
            return false;
        }
        true
    }
}

/// Is `actor` the session's subject or in its delegation chain, or (for approvals) in the
/// requester's chain or the approver?
fn involves(event: &Event, context: Option<&SessionContext>, actor: &str) -> bool {
    let in_principal =
        |p: &AuditPrincipal| p.subject == actor || p.actors.iter().any(|a| a == actor);
    if context.is_some_and(|c| in_principal(&c.principal)) {
        return true;
    }
    match &event.kind {
        EventKind::SessionStart(start) => in_principal(&start.principal),
        EventKind::ApprovalRequested(req) => {
            req.requester.subject == actor || req.requester.actors.iter().any(|a| a == actor)
        }
        EventKind::ApprovalDecided(decided) => decided.approver == actor,
        _ => false,
    }
}
