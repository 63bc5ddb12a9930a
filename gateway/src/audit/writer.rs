//! Group commit: one thread owns every write transaction. Appenders queue a request with a reply
//! channel; the writer takes everything queued (up to a bound), chains and writes it in one
//! transaction, commits once with `Durability::Immediate`, and only then answers each appender.
//!
//! Why a thread and not a task: a commit ends in a blocking fsync, and redb allows one write
//! transaction at a time anyway, so a dedicated thread is the honest shape. Why it helps: an
//! fsync costs the same for one event or five hundred, so N sessions logging at once pay for
//! about one fsync each round instead of N.
//!
//! With a journal (the gateway's default, `journal.rs`) the redb commit is not durable itself:
//! the batch's records are appended to the journal and synced, and that sync is what the
//! appenders wait for. Batches that prune commit durably in redb instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, Durability, ReadableTable, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::AuditError;
use super::chain::{Hash, canonical_bytes, chain_hash};
use super::checkpoint::Checkpointer;
use super::event::{CheckpointEvent, Event, EventKind, NewEvent, Note, RecordingChunk, Timestamp};
use super::journal::{self, Journal, Record};
use super::records::{TableIndex, index_event};
use super::retention;
use super::schema::{
    APPROVALS, EVENTS, HEAD, JOURNAL, META, RECORDINGS, SESSIONS, TEXT_LAST, TEXTS,
};
use super::texts;

/// Something to make durable.
pub(crate) enum Op {
    /// Answered with the event's `seq`.
    Append(NewEvent),
    /// Answered with the chunk's number within the session's recording. The chunk is stored
    /// as given (compressed by the caller) and chained by a `recording` event with its digest.
    Recording(StoredChunk),
    /// Sign the head and chain the signature; answered with the checkpoint event's `seq`, or 0
    /// when nothing was appended since the last checkpoint.
    Checkpoint,
    /// Retention: remove what is older than this (see `retention.rs`); answered with the
    /// `pruned` event's `seq`, or 0 when nothing was due.
    Prune(Timestamp),
}

/// Where the answer goes: an async appender awaits a oneshot; a blocking one waits on a std
/// channel (a oneshot's `blocking_recv` panics inside a runtime, this does not).
pub(crate) enum Reply {
    Async(oneshot::Sender<Result<u64, AuditError>>),
    Blocking(std::sync::mpsc::SyncSender<Result<u64, AuditError>>),
}

impl Reply {
    fn send(self, result: Result<u64, AuditError>) {
        // The appender may have given up (its future dropped); what it asked for is durable
        // regardless, so there is nothing to do about a closed channel.
        match self {
            Reply::Async(tx) => {
                let _ = tx.send(result);
            }
            Reply::Blocking(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

/// A recording chunk ready to store: compressed, with the digest of its plain bytes.
pub(crate) struct StoredChunk {
    pub session: String,
    pub stored: Vec<u8>,
    pub bytes: u64,
    pub sha256: String,
}

pub(crate) struct Request {
    pub op: Op,
    pub reply: Reply,
}

/// Counters for tests, metrics and the benchmark figures.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub commits: AtomicU64,
    pub requests: AtomicU64,
    pub events: AtomicU64,
    pub largest_batch: AtomicU64,
    pub failed_commits: AtomicU64,
    pub journal_syncs: AtomicU64,
    pub flushes: AtomicU64,
}

/// A snapshot of the writer's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// Transactions committed: with group commit, fewer than `requests` under load.
    pub commits: u64,
    /// Requests made durable (events and recording chunks).
    pub requests: u64,
    /// Events among them.
    pub events: u64,
    pub largest_batch: u64,
    /// Commits that failed; every request in them was answered with an error.
    pub failed_commits: u64,
    /// Batches made durable by a journal write and fdatasync.
    pub journal_syncs: u64,
    /// Durable redb commits that emptied the journal.
    pub flushes: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> WriterStats {
        WriterStats {
            commits: self.commits.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
            failed_commits: self.failed_commits.load(Ordering::Relaxed),
            journal_syncs: self.journal_syncs.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
        }
    }
}

/// The end of the chain as committed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChainHead {
    pub seq: u64,
    pub hash: Hash,
}

pub(crate) struct Writer {
    pub db: Arc<Database>,
    pub rx: mpsc::UnboundedReceiver<Request>,
    pub head: ChainHead,
    pub max_batch: usize,
    pub counters: Arc<Counters>,
    pub checkpointer: Option<Arc<Checkpointer>>,
    /// The `seq` of the last checkpoint event this writer appended.
    pub last_checkpoint: u64,
    /// Where batches are made durable; `None`: by durable redb commits.
    pub journal: Option<Journal>,
    /// A batch committed to redb could not be made durable: until a durable redb commit
    /// succeeds, every batch is one (the journal must not hold events that chain from events
    /// it lacks).
    pub needs_durable: bool,
}

impl Writer {
    /// Runs until every sender is gone, answering what was queued before that.
    pub(crate) fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(first) = self.rx.blocking_recv() {
            batch.push(first);
            while batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch);
            if self.journal.as_ref().is_some_and(Journal::half_full) {
                // After the answers, so no appender waits for it.
                if let Err(err) = self.flush(false) {
                    tracing::error!(error = %err, "durable audit commit failed");
                }
            }
        }
        // Leave the database durable on its own and marked as needing no journal: a clean stop
        // needs no replay, and offline readers of the file need no recovery.
        if let Err(err) = self.flush(true) {
            tracing::error!(error = %err, "final durable audit commit failed");
        }
        tracing::debug!(head = self.head.seq, "audit writer stopped");
    }

    /// One durable redb commit (which makes every earlier non-durable one durable too) naming
    /// the journal's next generation (`clean`: naming none, at a clean stop), then the journal
    /// starts over under it.
    fn flush(&mut self, clean: bool) -> Result<(), AuditError> {
        let Some(journal) = &mut self.journal else {
            return Ok(());
        };
        let next = journal::new_generation();
        journal.begin_reset(next)?;
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut meta = txn.open_table(META)?;
            if clean {
                meta.remove(JOURNAL)?;
            } else {
                meta.insert(JOURNAL, journal_meta(next))?;
            }
        }
        txn.commit()?;
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        journal.finish_reset(next);
        Ok(())
    }

    /// Make a committed batch durable through the journal: one write and one fdatasync. A
    /// batch too big for the space left, or a journal that cannot be written, is made durable
    /// by a durable redb commit instead.
    fn make_durable(&mut self, records: &[Record]) -> Result<(), AuditError> {
        let Some(journal) = &mut self.journal else {
            return Ok(());
        };
        for record in records {
            journal.push(record);
        }
        if !journal.fits() {
            journal.discard();
            return self.flush(false);
        }
        match journal.sync() {
            Ok(()) => {
                self.counters.journal_syncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(err) => {
                tracing::error!(error = %err, "audit journal write failed: committing durably instead");
                self.flush(false)
            }
        }
    }

    fn commit_batch(&mut self, batch: &mut Vec<Request>) {
        let size = batch.len() as u64;
        match self.write(batch) {
            Ok(committed) => {
                self.head = committed.head;
                let c = &self.counters;
                c.commits.fetch_add(1, Ordering::Relaxed);
                c.requests.fetch_add(size, Ordering::Relaxed);
                c.events.fetch_add(committed.events, Ordering::Relaxed);
                c.largest_batch.fetch_max(size, Ordering::Relaxed);
                crate::metrics::audit_commit(size, true);
                for (request, result) in batch.drain(..).zip(committed.results) {
                    request.reply.send(result);
                }
            }
            Err(err) => {
                // Nothing of the batch is durable: every appender hears the failure. (The next
                // batch chains from the head the database has: the old one if the commit
                // failed, this batch's if only the journal and the durable fallback did.)
                tracing::error!(error = %err, batch = size, "audit commit failed");
                self.counters.failed_commits.fetch_add(1, Ordering::Relaxed);
                crate::metrics::audit_commit(size, false);
                let message = err.to_string();
                for request in batch.drain(..) {
                    request
                        .reply
                        .send(Err(AuditError::CommitFailed(message.clone())));
                }
            }
        }
    }

    /// Write the whole batch in one transaction. A request that cannot be encoded fails alone
    /// (before anything of it is written); a storage failure fails the batch.
    fn write(&mut self, batch: &[Request]) -> Result<Committed, AuditError> {
        // Retention removes more than a journal record can say: such a batch commits durably,
        // which also makes everything journaled before it durable.
        let journaled = self.journal.is_some()
            && !self.needs_durable
            && !batch.iter().any(|r| matches!(r.op, Op::Prune(_)));
        let mut txn = self.db.begin_write()?;
        txn.set_durability(if journaled {
            Durability::None
        } else {
            Durability::Immediate
        })?;
        let mut head = self.head;
        let mut events = 0;
        let mut results = Vec::with_capacity(batch.len());
        let mut checkpointed = None;
        let records;
        // A durable commit starts the journal over, naming its next generation.
        let next = match &mut self.journal {
            Some(journal) if !journaled => {
                let next = journal::new_generation();
                journal.begin_reset(next)?;
                Some(next)
            }
            _ => None,
        };
        {
            let mut tables = Tables::open(&txn, journaled)?;
            if let Some(next) = next {
                tables.meta.insert(JOURNAL, journal_meta(next))?;
            }
            for request in batch {
                let result = match &request.op {
                    Op::Append(new) => {
                        let result = tables.append(&mut head, new);
                        if result.is_ok() {
                            events += 1;
                        }
                        result
                    }
                    Op::Recording(chunk) => {
                        let result = tables.recording(&mut head, chunk);
                        if result.is_ok() {
                            events += 1;
                        }
                        result
                    }
                    Op::Prune(before) => {
                        let result = retention::prune(
                            &mut tables,
                            &mut head,
                            *before,
                            self.checkpointer.as_deref(),
                        );
                        if matches!(result, Ok(seq) if seq > 0) {
                            events += 1;
                        }
                        result
                    }
                    Op::Checkpoint => match &self.checkpointer {
                        None => Err(AuditError::Checkpoint(
                            "no checkpoint key is configured ([audit.checkpoints])".into(),
                        )),
                        Some(_) if head.seq == self.last_checkpoint => Ok(0),
                        Some(signer) => {
                            let signed = signer.sign(head.seq, &head.hash);
                            let seq = tables.append_kind(
                                &mut head,
                                None,
                                EventKind::Checkpoint(CheckpointEvent { head: signed }),
                            )?;
                            events += 1;
                            checkpointed = Some(seq);
                            Ok(seq)
                        }
                    },
                };
                match result {
                    Err(AuditError::Encoding(err)) => results.push(Err(AuditError::Encoding(err))),
                    Err(err @ AuditError::Checkpoint(_)) => results.push(Err(err)),
                    Err(other) => return Err(other),
                    Ok(value) => results.push(Ok(value)),
                }
            }
            if head.seq != self.head.seq {
                tables.meta.insert(HEAD, (head.seq, head.hash))?;
            }
            records = tables.records.take().unwrap_or_default();
        }
        txn.commit()?;
        if let Some(seq) = checkpointed {
            self.last_checkpoint = seq;
        }
        if journaled {
            if let Err(err) = self.make_durable(&records) {
                // In the database but not durable: the appenders hear it failed. The head moves
                // on (the events are there for readers and the next batch chains from them),
                // and the next batches commit durably until one succeeds, which makes these
                // durable too (evidence of commands refused because the audit failed).
                self.head = head;
                self.needs_durable = true;
                return Err(err);
            }
        } else {
            if let (Some(journal), Some(next)) = (&mut self.journal, next) {
                // A durable commit: what the journal held is in the database now.
                journal.finish_reset(next);
            }
            self.needs_durable = false;
        }
        Ok(Committed {
            results,
            head,
            events,
        })
    }
}

/// What one committed batch did.
struct Committed {
    /// One per request, in batch order.
    results: Vec<Result<u64, AuditError>>,
    head: ChainHead,
    events: u64,
}

/// The tables one batch writes to, opened once per transaction.
pub(crate) struct Tables<'txn> {
    pub events: redb::Table<'txn, u64, (Hash, &'static [u8])>,
    pub sessions: redb::Table<'txn, &'static str, &'static [u8]>,
    pub approvals: redb::Table<'txn, &'static str, &'static [u8]>,
    pub recordings: redb::Table<'txn, (&'static str, u64), &'static [u8]>,
    pub meta: redb::Table<'txn, &'static str, (u64, Hash)>,
    pub texts: redb::Table<'txn, Hash, &'static [u8]>,
    pub text_last: redb::Table<'txn, Hash, u64>,
    /// What this batch wrote, for the journal; `None` when it is not journaled.
    records: Option<Vec<Record>>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction, journaled: bool) -> Result<Tables<'txn>, AuditError> {
        Ok(Tables {
            events: txn.open_table(EVENTS)?,
            sessions: txn.open_table(SESSIONS)?,
            approvals: txn.open_table(APPROVALS)?,
            recordings: txn.open_table(RECORDINGS)?,
            meta: txn.open_table(META)?,
            texts: txn.open_table(TEXTS)?,
            text_last: txn.open_table(TEXT_LAST)?,
            records: journaled.then(Vec::new),
        })
    }

    /// Chain one event onto `head` and advance it. Encoding happens before any write, so an
    /// encoding failure leaves the transaction untouched.
    fn append(&mut self, head: &mut ChainHead, new: &NewEvent) -> Result<u64, AuditError> {
        self.append_kind(head, new.session.clone(), new.kind.clone())
    }

    pub(crate) fn append_kind(
        &mut self,
        head: &mut ChainHead,
        session: Option<String>,
        kind: EventKind,
    ) -> Result<u64, AuditError> {
        let seq = head.seq + 1;
        let event = Event {
            seq,
            time: Timestamp::now(),
            session,
            kind,
        };
        let bytes = canonical_bytes(&event)?;
        let hash = chain_hash(&head.hash, &bytes);
        self.put(Some(&event), seq, hash, bytes)?;
        *head = ChainHead { seq, hash };
        Ok(seq)
    }

    /// Store one chained event and update the indexes derived from it (`event` is its decoded
    /// form, `None` for a kind this build cannot read: stored, not indexed).
    fn put(
        &mut self,
        event: Option<&Event>,
        seq: u64,
        hash: Hash,
        bytes: Vec<u8>,
    ) -> Result<(), AuditError> {
        match texts::long_text(&bytes) {
            Some(range) => {
                let (row, digest) = texts::compact(&bytes, range.clone());
                if self.texts.get(digest)?.is_none() {
                    let stored = texts::store_text(&bytes[range])?;
                    self.texts.insert(digest, stored.as_slice())?;
                }
                self.text_last.insert(digest, seq)?;
                self.events.insert(seq, (hash, row.as_slice()))?;
            }
            None => {
                self.events.insert(seq, (hash, bytes.as_slice()))?;
            }
        }
        if let Some(event) = event {
            let mut index = TableIndex {
                sessions: &mut self.sessions,
                approvals: &mut self.approvals,
            };
            match index_event(event, &mut index) {
                // The indexes are conveniences derived from the chain: an undecodable old
                // record must not stop the evidence from being written.
                Err(AuditError::Encoding(err)) => {
                    tracing::error!(seq, error = %err, "audit index not updated");
                }
                other => other?,
            }
        }
        if let Some(records) = &mut self.records {
            records.push(Record::Event { seq, hash, bytes });
        }
        Ok(())
    }

    /// Store a recording chunk after the session's last one, and chain its digest.
    fn recording(&mut self, head: &mut ChainHead, chunk: &StoredChunk) -> Result<u64, AuditError> {
        let session = chunk.session.as_str();
        let next = match self
            .recordings
            .range((session, 0u64)..=(session, u64::MAX))?
            .next_back()
        {
            Some(last) => last?.0.value().1 + 1,
            None => 0,
        };
        let kind = EventKind::Recording(RecordingChunk {
            chunk: next,
            bytes: chunk.bytes,
            sha256: chunk.sha256.clone(),
        });
        let seq = self.append_kind(head, Some(chunk.session.clone()), kind)?;
        self.recordings
            .insert((session, next), chunk.stored.as_slice())?;
        if let Some(records) = &mut self.records {
            records.push(Record::Chunk {
                seq,
                session: chunk.session.clone(),
                chunk: next,
                stored: chunk.stored.clone(),
            });
        }
        Ok(next)
    }
}

/// How [`JOURNAL`] is stored: the generation, in a `(u64, Hash)` slot.
pub(crate) fn journal_meta(generation: u64) -> (u64, Hash) {
    (generation, [0; 32])
}

/// How a replay goes.
pub(crate) struct Replay<'a> {
    pub records: &'a [Record],
    /// The journal generation the durable commit names, if any.
    pub next: Option<u64>,
    /// The operator accepted a journal loss (`WARDEN_ACCEPT_JOURNAL_LOSS=1`): records that do
    /// not continue the chain end the replay instead of refusing it, and `lost` (why) goes into
    /// the chain as an `audit-journal-lost` note in the same commit (when `record_loss`: the
    /// gateway's database, not an auditor's private copy).
    pub lost: Option<String>,
    pub record_loss: bool,
}

/// Put back what a journal holds beyond the database's last durable commit (after a crash),
/// in one durable commit that also names the journal's next generation, if given; returns
/// how many events were restored. Every event must continue the chain from the database's
/// head, and those the database already has must be the same: a journal that disagrees is
/// refused, and nothing is applied (unless a loss was accepted: see [`Replay::lost`]).
pub(crate) fn replay(db: &Database, replay: Replay<'_>) -> Result<u64, AuditError> {
    let Replay {
        records,
        next,
        mut lost,
        record_loss,
    } = replay;
    if records.is_empty() && next.is_none() && lost.is_none() {
        return Ok(0);
    }
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    let mut restored = 0;
    {
        let mut tables = Tables::open(&txn, false)?;
        let mut head = match tables.meta.get(HEAD)?.map(|g| g.value()) {
            Some((seq, hash)) => ChainHead { seq, hash },
            None => match tables.events.last()? {
                Some((key, value)) => ChainHead {
                    seq: key.value(),
                    hash: value.value().0,
                },
                None => ChainHead {
                    seq: 0,
                    hash: super::chain::GENESIS,
                },
            },
        };
        let durable = head.seq;
        let disagree = |seq: u64, what: &str| {
            AuditError::Journal(format!(
                "does not continue this database at event {seq} ({what}); nothing was \
                 restored from it"
            ))
        };
        for record in records {
            let problem = match record {
                Record::Event { seq, hash, .. } if *seq <= durable => {
                    let stored = tables.events.get(*seq)?.map(|g| g.value().0);
                    (stored != Some(*hash))
                        .then(|| disagree(*seq, "a different event is stored there"))
                }
                Record::Event { seq, .. } if *seq != head.seq + 1 => {
                    Some(disagree(*seq, "not the next event"))
                }
                Record::Event { seq, hash, bytes } if chain_hash(&head.hash, bytes) != *hash => {
                    Some(disagree(*seq, "its hash does not chain"))
                }
                Record::Event { seq, hash, bytes } => {
                    let event: Option<Event> = serde_json::from_slice(bytes).ok();
                    tables.put(event.as_ref(), *seq, *hash, bytes.clone())?;
                    head = ChainHead {
                        seq: *seq,
                        hash: *hash,
                    };
                    restored += 1;
                    None
                }
                Record::Chunk { seq, .. } if *seq <= durable => None,
                Record::Chunk { seq, .. } if *seq != head.seq => {
                    Some(disagree(*seq, "a recording chunk without its event"))
                }
                Record::Chunk {
                    session,
                    chunk,
                    stored,
                    ..
                } => {
                    tables
                        .recordings
                        .insert((session.as_str(), *chunk), stored.as_slice())?;
                    None
                }
            };
            if let Some(err) = problem {
                match &mut lost {
                    // Accepted loss: keep what chained, stop at the first that does not.
                    Some(why) => {
                        why.push_str(&format!("; restoring stopped: {err}"));
                        break;
                    }
                    None => return Err(err),
                }
            }
        }
        if let Some(why) = lost.as_ref().filter(|_| record_loss) {
            // In the same durable commit as what was restored: the loss is in the chain
            // before anything else is appended.
            let note = Note {
                topic: "audit-journal-lost".into(),
                message: format!(
                    "started without the journal's events ({}=1): {why}",
                    journal::ACCEPT_LOSS_ENV
                ),
            };
            tables.append_kind(&mut head, None, EventKind::Note(note))?;
        }
        if head.seq != durable {
            tables.meta.insert(HEAD, (head.seq, head.hash))?;
        }
        if let Some(next) = next {
            tables.meta.insert(JOURNAL, journal_meta(next))?;
        }
    }
    txn.commit()?;
    Ok(restored)
}
