//! `verify`: walk the chain from genesis, recompute every hash from the stored bytes, and report
//! the first thing that is not as the writer left it.
//!
//! What it proves: no event was changed, removed, inserted or moved since it was written, by
//! anyone who could not also recompute every later hash and the head. What it cannot prove on
//! its own: that someone with write access did not rewrite the whole chain consistently. That
//! needs the head anchored outside this file (printed by verify, exported, shipped to a log
//! collector) and compared later.

use redb::{ReadTransaction, ReadableTable};

use super::AuditError;
use super::chain::{EventHeader, GENESIS, Hash, chain_hash};
use super::schema::EVENTS;
use super::store::read_head;

/// The outcome of a verification: counts and head when sound, else the first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events that verified (before the problem, if any).
    pub events: u64,
    /// The last verified event's `seq` (0 when none).
    pub head_seq: u64,
    /// Its hash, recomputed ([`GENESIS`] when none).
    pub head_hash: Hash,
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
}

/// Verify the chain as of `txn`'s snapshot.
pub(crate) fn verify_chain(txn: &ReadTransaction) -> Result<VerifyReport, AuditError> {
    let table = txn.open_table(EVENTS)?;
    let mut entries = table
        .iter()?
        .map(|entry| {
            entry.map(|(key, value)| {
                let (hash, bytes) = value.value();
                (key.value(), hash, bytes.to_vec())
            })
        })
        .peekable();
    let stored_head = read_head(txn)?;
    let mut walk = Walk {
        prev: GENESIS,
        count: 0,
    };

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
    Ok(match problem {
        Some((seq, kind, message)) => walk.broken(seq, kind, message),
        None => walk.report(None),
    })
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
    /// Also the `seq` of the last verified event: the chain starts at 1 without gaps.
    count: u64,
}

impl Walk {
    fn report(&self, problem: Option<ChainProblem>) -> VerifyReport {
        VerifyReport {
            events: self.count,
            head_seq: self.count,
            head_hash: self.prev,
            problem,
        }
    }

    fn broken(&self, seq: u64, kind: ProblemKind, message: String) -> VerifyReport {
        self.report(Some(ChainProblem { seq, kind, message }))
    }
}
