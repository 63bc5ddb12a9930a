//! Crash recovery: sessions the store still shows open when the gateway starts were cut off by
//! a crash (`kill -9`, power loss, an OOM kill). Before any listener opens, each gets an
//! audited `session_end` saying so, with the time of its last event and its counts as the
//! chain shows them, so no session is left open forever (THREATS.md invariant 7).

use std::collections::HashMap;

use super::event::{AuditVerdict, EventKind, NewEvent, SessionCounts, SessionEnd, Timestamp};
use super::schema::EVENTS;
use super::texts::{expand, open_texts};
use super::{AuditError, AuditStore};

/// One session closed by [`AuditStore::close_orphans`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub session: String,
    /// When its last event was written (its start, if nothing followed).
    pub last_event: Timestamp,
    pub counts: SessionCounts,
}

impl AuditStore {
    /// Close every session left open by a gateway that stopped without closing it: one
    /// `session_end` each, reason "gateway stopped unexpectedly (last event at T)". Reads the
    /// chain backwards only as far as the oldest open session's start.
    pub async fn close_orphans(&self) -> Result<Vec<Orphan>, AuditError> {
        let open: Vec<_> = self
            .sessions()?
            .into_iter()
            .filter(|s| s.end.is_none())
            .collect();
        if open.is_empty() {
            return Ok(Vec::new());
        }
        let oldest = open.iter().map(|s| s.start_seq).min().unwrap_or(0);
        let mut found: HashMap<String, Orphan> = open
            .iter()
            .map(|s| {
                let orphan = Orphan {
                    session: s.id.clone(),
                    last_event: s.started,
                    counts: SessionCounts::default(),
                };
                (s.id.clone(), orphan)
            })
            .collect();
        let mut seen_last = std::collections::HashSet::new();
        {
            let txn = self.read()?;
            let table = txn.open_table(EVENTS)?;
            let texts = open_texts(&txn)?;
            for entry in table.range(oldest..)?.rev() {
                let (_, value) = entry?;
                let (_, row) = value.value();
                let event: super::Event = serde_json::from_slice(&expand(row, texts.as_ref())?)?;
                let Some(orphan) = event.session.as_ref().and_then(|id| found.get_mut(id)) else {
                    continue;
                };
                // Walking backwards: the first event met is the session's last.
                if seen_last.insert(orphan.session.clone()) {
                    orphan.last_event = event.time;
                }
                if let EventKind::Command(c) = &event.kind {
                    let n = &mut orphan.counts;
                    n.commands += 1;
                    match c.verdict {
                        AuditVerdict::Allow => n.allowed += 1,
                        AuditVerdict::Mask => n.masked += 1,
                        AuditVerdict::Deny => n.denied += 1,
                        AuditVerdict::RequireApproval => n.approvals += 1,
                    }
                }
            }
        }
        let mut closed: Vec<Orphan> = found.into_values().collect();
        closed.sort_by(|a, b| a.session.cmp(&b.session));
        for orphan in &closed {
            let end = SessionEnd {
                reason: format!(
                    "gateway stopped unexpectedly (last event at {})",
                    orphan.last_event
                ),
                counts: orphan.counts,
            };
            self.append(NewEvent::session(
                &orphan.session,
                EventKind::SessionEnd(end),
            ))
            .await?;
        }
        Ok(closed)
    }
}
