//! Group commit: one thread owns every write transaction. Appenders queue a request with a reply
//! channel; the writer takes everything queued (up to a bound), chains and writes it in one
//! transaction, commits once with `Durability::Immediate`, and only then answers each appender.
//!
//! Why a thread and not a task: a redb commit is a blocking fsync, and redb allows one write
//! transaction at a time anyway, so a dedicated thread is the honest shape. Why it helps: an
//! fsync costs the same for one event or five hundred, so N sessions logging at once pay for
//! about one fsync each round instead of N.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, Durability, ReadableTable, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::AuditError;
use super::chain::{Hash, canonical_bytes, chain_hash};
use super::checkpoint::Checkpointer;
use super::event::{CheckpointEvent, Event, EventKind, NewEvent, RecordingChunk, Timestamp};
use super::records::{TableIndex, index_event};
use super::retention;
use super::schema::{APPROVALS, EVENTS, HEAD, META, RECORDINGS, SESSIONS};

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
}

impl Counters {
    pub(crate) fn snapshot(&self) -> WriterStats {
        WriterStats {
            commits: self.commits.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
            failed_commits: self.failed_commits.load(Ordering::Relaxed),
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
        }
        tracing::debug!(head = self.head.seq, "audit writer stopped");
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
                for (request, result) in batch.drain(..).zip(committed.results) {
                    request.reply.send(result);
                }
            }
            Err(err) => {
                // Nothing of the batch was committed and the head did not move: every appender
                // hears the failure, and the next batch chains from the old head.
                tracing::error!(error = %err, batch = size, "audit commit failed");
                self.counters.failed_commits.fetch_add(1, Ordering::Relaxed);
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
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let mut head = self.head;
        let mut events = 0;
        let mut results = Vec::with_capacity(batch.len());
        let mut checkpointed = None;
        {
            let mut tables = Tables::open(&txn)?;
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
        }
        txn.commit()?;
        if let Some(seq) = checkpointed {
            self.last_checkpoint = seq;
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
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Tables<'txn>, AuditError> {
        Ok(Tables {
            events: txn.open_table(EVENTS)?,
            sessions: txn.open_table(SESSIONS)?,
            approvals: txn.open_table(APPROVALS)?,
            recordings: txn.open_table(RECORDINGS)?,
            meta: txn.open_table(META)?,
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
        self.events.insert(seq, (hash, bytes.as_slice()))?;
        let mut index = TableIndex {
            sessions: &mut self.sessions,
            approvals: &mut self.approvals,
        };
        match index_event(&event, &mut index) {
            // The indexes are conveniences derived from the chain: an undecodable old record
            // must not stop the evidence from being written.
            Err(AuditError::Encoding(err)) => {
                tracing::error!(seq, error = %err, "audit index not updated");
            }
            other => other?,
        }
        *head = ChainHead { seq, hash };
        Ok(seq)
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
        self.append_kind(head, Some(chunk.session.clone()), kind)?;
        self.recordings
            .insert((session, next), chunk.stored.as_slice())?;
        Ok(next)
    }
}
