//! Retention (`[audit] retain`, PCI DSS 10.5.1: keep at least 12 months): remove old events,
//! the sessions they began, their recordings and approvals, in one transaction, and leave the
//! chain verifiable. What remains chains from the last removed event's hash, kept as the
//! chain's base in `meta`; that cut is signed with the checkpoint key (and published like any
//! checkpoint), and a `pruned` event records what was removed, so the removal is itself in
//! the chain.
//!
//! The cut never splits a session: it moves back to just before the first session still open
//! across it, so every session is kept or removed whole (records, chunks and the events that
//! derive them), and `verify` can still derive every record it finds.

use redb::ReadableTable;

use super::AuditError;
use super::chain::EventHeader;
use super::checkpoint::Checkpointer;
use super::event::{EventKind, Pruned, Timestamp};
use super::records::{ApprovalRecord, SessionRecord};
use super::schema::BASE;
use super::texts::expand;
use super::writer::{ChainHead, Tables};

/// Remove what is older than `before`; returns the `pruned` event's `seq`, or 0 when nothing
/// was due. `signer` signs the cut when a checkpoint key is configured.
pub(crate) fn prune(
    tables: &mut Tables<'_>,
    head: &mut ChainHead,
    before: Timestamp,
    signer: Option<&Checkpointer>,
) -> Result<u64, AuditError> {
    let base = tables.meta.get(BASE)?.map_or(0, |g| g.value().0);
    let mut cut = due_before(tables, base, before)?;
    // Sessions and approvals: which go, and where the cut must stop so none is split.
    let mut sessions = Vec::new();
    for entry in tables.sessions.iter()? {
        let (key, value) = entry?;
        let Ok(record) = serde_json::from_slice::<SessionRecord>(value.value()) else {
            continue;
        };
        sessions.push((key.value().to_owned(), record));
    }
    for (_, record) in &sessions {
        let open_across = record.end.as_ref().is_none_or(|end| end.end_seq > cut);
        if record.start_seq <= cut && open_across {
            cut = cut.min(record.start_seq.saturating_sub(1));
        }
    }
    if cut <= base {
        return Ok(0);
    }
    let cut_hash = match tables.events.get(cut)? {
        Some(guard) => guard.value().0,
        None => return Err(AuditError::Corrupt(format!("event {cut} is missing"))),
    };

    let mut removed = Pruned {
        before,
        through: cut,
        hash: hex::encode(cut_hash),
        signed: signer.map(|s| s.sign_cut(cut, &cut_hash)),
        events: 0,
        sessions: 0,
        approvals: 0,
        chunks: 0,
    };
    for (id, _) in sessions.iter().filter(|(_, r)| r.start_seq <= cut) {
        tables.sessions.remove(id.as_str())?;
        removed.sessions += 1;
        let session = id.as_str();
        let chunks: Vec<u64> = tables
            .recordings
            .range((session, 0u64)..=(session, u64::MAX))?
            .map(|entry| entry.map(|(key, _)| key.value().1))
            .collect::<Result<_, _>>()?;
        for n in chunks {
            tables.recordings.remove((session, n))?;
            removed.chunks += 1;
        }
    }
    let mut approvals = Vec::new();
    for entry in tables.approvals.iter()? {
        let (key, value) = entry?;
        if serde_json::from_slice::<ApprovalRecord>(value.value())
            .is_ok_and(|a| a.requested_seq <= cut)
        {
            approvals.push(key.value().to_owned());
        }
    }
    for id in approvals {
        tables.approvals.remove(id.as_str())?;
        removed.approvals += 1;
    }
    for seq in base + 1..=cut {
        if tables.events.remove(seq)?.is_some() {
            removed.events += 1;
        }
    }
    // Texts no event after the cut uses any more.
    let mut unused = Vec::new();
    for entry in tables.text_last.iter()? {
        let (digest, last) = entry?;
        if last.value() <= cut {
            unused.push(digest.value());
        }
    }
    for digest in unused {
        tables.text_last.remove(digest)?;
        tables.texts.remove(digest)?;
    }
    tables.meta.insert(BASE, (cut, cut_hash))?;
    tracing::info!(
        through = cut,
        events = removed.events,
        sessions = removed.sessions,
        "audit retention removed what was due"
    );
    tables.append_kind(head, None, EventKind::Pruned(removed))
}

/// The last event (after `base`) older than `before`. Events are in time order up to clock
/// steps; the scan stops at the first one that is not due, so a clock stepping back can only
/// keep more, never remove an event written after a younger one.
fn due_before(tables: &Tables<'_>, base: u64, before: Timestamp) -> Result<u64, AuditError> {
    #[derive(serde::Deserialize)]
    struct Time {
        time: Timestamp,
    }
    let mut cut = base;
    for entry in tables.events.range(base + 1..)? {
        let (key, value) = entry?;
        let Ok(bytes) = expand(value.value().1, Some(&tables.texts)) else {
            break;
        };
        let due = EventHeader::parse(&bytes).is_ok()
            && serde_json::from_slice::<Time>(&bytes).is_ok_and(|t| t.time < before);
        if !due {
            break;
        }
        cut = key.value();
    }
    Ok(cut)
}
