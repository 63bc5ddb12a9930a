//! `verify`: walk the chain from genesis (or from the retention cut), recompute every hash from
//! the stored bytes, then check every other piece of evidence against the events: the session
//! and approval records are derived again and compared, and every recording chunk is hashed and
//! compared with the digest its `recording` event holds. The first thing that is not as the
//! writer left it is reported, whatever table it is in.
//!
//! What it proves: nothing was changed, removed, inserted or moved since it was written, by
//! anyone who could not also recompute every later hash and the head. What it cannot prove on
//! its own: that someone with write access did not rewrite the whole chain consistently. That
//! needs the head anchored outside this file: the signed checkpoints (`checkpoint.rs`).

use redb::{ReadTransaction, ReadableTable};

use std::collections::BTreeMap;

use super::AuditError;
use super::blob::{load_chunk, sha256_hex};
use super::chain::{EventHeader, GENESIS, Hash, chain_hash};
use super::event::{Event, EventKind, RecordingChunk};
use super::records::{ApprovalRecord, MemoryIndex, SessionRecord, index_event};
use super::schema::{APPROVALS, EVENTS, RECORDINGS, SESSIONS};
use super::store::{read_base, read_head};
use super::texts::{expand, open_texts};
use std::borrow::Cow;

/// The outcome of a verification: counts and head when sound, else the first problem found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Events that verified (before the problem, if any).
    pub events: u64,
    /// The last verified event's `seq` (0 when none).
    pub head_seq: u64,
    /// Its hash, recomputed ([`GENESIS`] when none).
    pub head_hash: Hash,
    /// Retention removed events up to this one; the chain was walked from its hash (0: none).
    pub pruned_through: u64,
    /// Records and recording chunks checked against the events (when the chain verified).
    pub records: u64,
    pub chunks: u64,
    pub problem: Option<ChainProblem>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }

    pub fn head_hex(&self) -> String {
        hex::encode(self.head_hash)
    }
}

/// Where and how the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainProblem {
    /// The event the problem is at (for a truncated tail: the first missing one).
    pub seq: u64,
    pub kind: ProblemKind,
    /// For people: what was found, in a sentence.
    pub message: String,
}

impl std::fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// An event's content no longer matches its hash.
    Changed,
    /// An event's stored hash was changed; its content still chains.
    HashChanged,
    /// A `seq` is absent from the middle of the chain.
    Missing,
    /// An event sits under another event's `seq`.
    Reordered,
    /// The head records more events than are stored: the tail was removed.
    Truncated,
    /// Events exist beyond the head: added outside the writer.
    Extra,
    /// The head record is missing or its hash disagrees with the last event.
    HeadMismatch,
    /// Stored bytes that match their hash but are not an event.
    Unreadable,
    /// A session or approval record, or a recording chunk, differs from what the events say.
    RecordChanged,
    /// A record or chunk the events say exists is gone.
    RecordRemoved,
    /// A record or chunk exists that no event accounts for.
    RecordAdded,
}

/// Verify the chain as of `txn`'s snapshot.
pub(crate) fn verify_chain(txn: &ReadTransaction) -> Result<VerifyReport, AuditError> {
    let table = txn.open_table(EVENTS)?;
    let texts = open_texts(txn)?;
    let mut entries = table
        .iter()?
        .map(|entry| {
            entry.map(|(key, value)| {
                let (hash, row) = value.value();
                // A row whose stored text is gone or damaged keeps its stored form, which
                // then fails its hash: the event reads as changed.
                let bytes =
                    expand(row, texts.as_ref()).map_or_else(|_| row.to_vec(), Cow::into_owned);
                (key.value(), hash, bytes)
            })
        })
        .peekable();
    let stored_head = read_head(txn)?;
    let base = read_base(txn)?;
    let mut walk = Walk {
        prev: base.map_or(GENESIS, |b| b.hash),
        count: base.map_or(0, |b| b.seq),
        base: base.map_or(0, |b| b.seq),
    };
    let mut evidence = Evidence::default();

    while let Some(entry) = entries.next() {
        let (seq, stored, bytes) = entry?;
        let expected = walk.count + 1;
        if seq != expected {
            let message = if seq > expected {
                format!("event {expected} is missing (the next stored event is {seq})")
            } else {
                format!("an event is stored under the invalid seq {seq}")
            };
            return Ok(walk.broken(expected, ProblemKind::Missing, message));
        }
        let computed = chain_hash(&walk.prev, &bytes);
        let header = EventHeader::parse(&bytes);
        if let Ok(header) = &header
            && header.seq != seq
        {
            let message = format!(
                "the event stored as {seq} is event {}: events were moved or reordered",
                header.seq
            );
            return Ok(walk.broken(seq, ProblemKind::Reordered, message));
        }
        if computed != stored {
            // Which of the two was altered? The next link (or the head, at the end) was built
            // from the original hash: if it chains from the stored hash, the content changed;
            // if it chains from the recomputed one, only the stored hash did.
            let next_from = match entries.peek() {
                Some(Ok((next_seq, next_hash, next_bytes))) if *next_seq == seq + 1 => Some((
                    chain_hash(&stored, next_bytes) == *next_hash,
                    chain_hash(&computed, next_bytes) == *next_hash,
                )),
                _ => stored_head
                    .filter(|head| head.seq == seq)
                    .map(|head| (head.hash == stored, head.hash == computed)),
            };
            let (kind, message) = match next_from {
                Some((false, true)) => (
                    ProblemKind::HashChanged,
                    format!("the stored hash of event {seq} was changed (its content is intact)"),
                ),
                _ => (
                    ProblemKind::Changed,
                    format!("event {seq} was changed: its content no longer matches its hash"),
                ),
            };
            return Ok(walk.broken(seq, kind, message));
        }
        if let Err(err) = header {
            let message = format!("event {seq} matches its hash but is not an event: {err}");
            return Ok(walk.broken(seq, ProblemKind::Unreadable, message));
        }
        // A kind this build does not know still verifies; it just derives nothing.
        if let Ok(event) = serde_json::from_slice::<Event>(&bytes) {
            evidence.note(&event);
        }
        walk.prev = computed;
        walk.count = seq;
    }

    let last = walk.count;
    let problem = match stored_head {
        None if last == 0 => None,
        None => Some((
            last,
            ProblemKind::HeadMismatch,
            "the chain head record is missing".to_owned(),
        )),
        Some(head) if head.seq > last => Some((
            last + 1,
            ProblemKind::Truncated,
            format!(
                "{} removed from the end: the head records {} events, the chain ends at {last}",
                span(last + 1, head.seq),
                head.seq
            ),
        )),
        Some(head) if head.seq < last => Some((
            head.seq + 1,
            ProblemKind::Extra,
            format!(
                "{} added after the head ({}) outside the audit writer",
                span(head.seq + 1, last),
                head.seq
            ),
        )),
        Some(head) if head.hash != walk.prev => Some((
            last,
            ProblemKind::HeadMismatch,
            format!("the head hash does not match event {last}"),
        )),
        Some(_) => None,
    };
    if let Some((seq, kind, message)) = problem {
        return Ok(walk.broken(seq, kind, message));
    }
    // A chain that starts after a cut must say so itself: the newest `pruned` event names the
    // cut and its hash. A base set by hand (to hide deleted events) has none.
    if let Some(base) = base {
        let accounted = evidence
            .last_prune
            .as_ref()
            .is_some_and(|(through, hash)| *through == base.seq && *hash == hex::encode(base.hash));
        if !accounted {
            let message = format!(
                "the chain starts after event {} but no pruned event records that cut: events \
                 were removed outside retention",
                base.seq
            );
            return Ok(walk.broken(base.seq + 1, ProblemKind::Missing, message));
        }
    }
    let checked = evidence.check(txn, walk.base > 0)?;
    let mut report = walk.report(checked.problem);
    report.records = checked.records;
    report.chunks = checked.chunks;
    Ok(report)
}

/// What the events say the other tables hold.
#[derive(Default)]
struct Evidence {
    index: MemoryIndex,
    /// (session, chunk) → (seq of its `recording` event, what it recorded).
    chunks: BTreeMap<(String, u64), (u64, RecordingChunk)>,
    /// The newest `pruned` event's cut: (through, hex hash).
    last_prune: Option<(u64, String)>,
}

/// The outcome of [`Evidence::check`].
struct Checked {
    records: u64,
    chunks: u64,
    problem: Option<ChainProblem>,
}

impl Evidence {
    fn note(&mut self, event: &Event) {
        // The writer indexed this event the same way; a failure here is a failure there, and
        // the comparison below reports the record it left behind.
        let _ = index_event(event, &mut self.index);
        if let EventKind::Pruned(p) = &event.kind {
            self.last_prune = Some((p.through, p.hash.clone()));
        }
        if let (EventKind::Recording(chunk), Some(session)) = (&event.kind, &event.session) {
            self.chunks
                .insert((session.clone(), chunk.chunk), (event.seq, chunk.clone()));
        }
    }

    /// Compare every stored record and chunk with its derivation. Each problem is placed at
    /// the event the item comes from (items no event accounts for, after the chain's end), and
    /// the earliest is reported. `pruned`: retention ran, so chunks of sessions whose start was
    /// removed may be gone with them.
    fn check(self, txn: &ReadTransaction, pruned: bool) -> Result<Checked, AuditError> {
        let mut problems: Vec<ChainProblem> = Vec::new();
        let mut report = |seq: u64, kind: ProblemKind, message: String| {
            problems.push(ChainProblem { seq, kind, message });
        };
        let Evidence {
            index, mut chunks, ..
        } = self;
        let mut records = 0;
        let seen: std::collections::BTreeSet<String> = index.sessions.keys().cloned().collect();

        let mut derived = index.sessions;
        for entry in txn.open_table(SESSIONS)?.iter()? {
            let (key, value) = entry?;
            let id = key.value().to_owned();
            records += 1;
            let stored = serde_json::from_slice::<SessionRecord>(value.value());
            match (derived.remove(&id), stored) {
                (Some(want), Ok(got)) if want == got => {}
                (Some(want), _) => report(
                    want.start_seq,
                    ProblemKind::RecordChanged,
                    format!(
                        "session record {id} was changed: it no longer matches its events \
                         (session_start {})",
                        want.start_seq
                    ),
                ),
                (None, _) => report(
                    u64::MAX,
                    ProblemKind::RecordAdded,
                    format!(
                        "session record {id} has no session_start event: added outside the audit writer"
                    ),
                ),
            }
        }
        for (id, want) in derived {
            report(
                want.start_seq,
                ProblemKind::RecordRemoved,
                format!(
                    "session record {id} was removed (session_start {})",
                    want.start_seq
                ),
            );
        }

        let mut derived = index.approvals;
        for entry in txn.open_table(APPROVALS)?.iter()? {
            let (key, value) = entry?;
            let id = key.value().to_owned();
            records += 1;
            let stored = serde_json::from_slice::<ApprovalRecord>(value.value());
            match (derived.remove(&id), stored) {
                (Some(want), Ok(got)) if want == got => {}
                (Some(want), _) => report(
                    approval_seq(&want),
                    ProblemKind::RecordChanged,
                    format!(
                        "approval record {id} was changed: it no longer matches its events \
                         (approval_requested {}{})",
                        want.requested_seq,
                        want.decision
                            .as_ref()
                            .map(|d| format!(", approval_decided {}", d.decided_seq))
                            .unwrap_or_default()
                    ),
                ),
                (None, _) => report(
                    u64::MAX,
                    ProblemKind::RecordAdded,
                    format!(
                        "approval record {id} has no approval_requested event: added outside the audit writer"
                    ),
                ),
            }
        }
        for (id, want) in derived {
            report(
                want.requested_seq,
                ProblemKind::RecordRemoved,
                format!(
                    "approval record {id} was removed (approval_requested {})",
                    want.requested_seq
                ),
            );
        }

        let mut checked_chunks = 0;
        for entry in txn.open_table(RECORDINGS)?.iter()? {
            let (key, value) = entry?;
            let (session, n) = key.value();
            checked_chunks += 1;
            let item = format!("recording chunk {n} of session {session}");
            let Some((seq, want)) = chunks.remove(&(session.to_owned(), n)) else {
                report(
                    u64::MAX,
                    ProblemKind::RecordAdded,
                    format!("{item} has no recording event: added outside the audit writer"),
                );
                continue;
            };
            let intact = load_chunk(value.value())
                .map(|plain| plain.len() as u64 == want.bytes && sha256_hex(&plain) == want.sha256)
                .unwrap_or(false);
            if !intact {
                report(
                    seq,
                    ProblemKind::RecordChanged,
                    format!("{item} was changed: it no longer matches the digest in event {seq}"),
                );
            }
        }
        for ((session, n), (seq, _)) in chunks {
            if pruned && !seen.contains(&session) {
                continue;
            }
            report(
                seq,
                ProblemKind::RecordRemoved,
                format!(
                    "recording chunk {n} of session {session} was removed (recorded in event {seq})"
                ),
            );
        }

        let problem = problems.into_iter().min_by_key(|p| p.seq);
        Ok(Checked {
            records,
            chunks: checked_chunks,
            problem,
        })
    }
}

/// The event an approval record's latest state comes from.
fn approval_seq(record: &ApprovalRecord) -> u64 {
    record
        .decision
        .as_ref()
        .map_or(record.requested_seq, |d| d.decided_seq)
}

/// "event 7 was" or "events 7..=9 were".
fn span(first: u64, last: u64) -> String {
    if first == last {
        format!("event {first} was")
    } else {
        format!("events {first}..={last} were")
    }
}

/// The verified prefix so far.
struct Walk {
    prev: Hash,
    /// Also the `seq` of the last verified event: the chain starts after `base` without gaps.
    count: u64,
    /// The retention cut (0: none).
    base: u64,
}

impl Walk {
    fn report(&self, problem: Option<ChainProblem>) -> VerifyReport {
        VerifyReport {
            events: self.count - self.base,
            head_seq: self.count,
            head_hash: self.prev,
            pruned_through: self.base,
            records: 0,
            chunks: 0,
            problem,
        }
    }

    fn broken(&self, seq: u64, kind: ProblemKind, message: String) -> VerifyReport {
        self.report(Some(ChainProblem { seq, kind, message }))
    }
}
