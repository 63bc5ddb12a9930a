//! The per-session [`Recorder`]: encodes entries on the caller's task, queues them, and a
//! background task batches them into recording chunks.
//!
//! Why this shape: the relay must never wait on the disk for a recording. Each call encodes
//! its entry (scrubbing PANs first) and pushes the bytes onto an in-memory queue; one task per
//! session drains the queue into a buffer and writes a chunk when the buffer reaches
//! [`RecorderOptions::chunk_bytes`], when [`RecorderOptions::flush_interval`] has passed since
//! its first entry, or on [`Recorder::flush`] / [`Recorder::finish`]. While a chunk commits,
//! new entries wait in the queue, so a slow disk makes chunks bigger, not the relay slower.
//!
//! # When the queue is full
//! The queue is bounded in bytes ([`RecorderOptions::queue_bytes`]). Only row data can grow
//! without limit (one statement may return millions of rows), so only rows are refused: a
//! `rows` entry that does not fit is dropped and counted, and a `dropped` entry with the count
//! is written in its place before the next entry that is queued. Everything else (command and
//! verdict, columns, completion, error, notice) is always queued: those arrive at the pace of
//! commands, and each command already waits for its durable audit event before it is
//! forwarded, so they cannot outrun the writer by much.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Entry, FORMAT_VERSION, scrub};
use crate::audit::{AuditStore, Timestamp};

/// Tuning for one recorder. The defaults suit the gateway; tests shrink them.
#[derive(Debug, Clone)]
pub struct RecorderOptions {
    /// Most bytes of encoded entries waiting for the background task before rows are dropped.
    /// Bounds a session's recording memory (plus one chunk being written).
    pub queue_bytes: usize,
    /// A chunk is written once this many bytes are buffered.
    pub chunk_bytes: usize,
    /// ... or once the oldest buffered entry is this old, whichever comes first.
    pub flush_interval: Duration,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        RecorderOptions {
            queue_bytes: 1 << 20,
            chunk_bytes: 64 << 10,
            flush_interval: Duration::from_millis(200),
        }
    }
}

/// What a recorder did, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordingStats {
    /// Entries queued (markers included).
    pub entries: u64,
    /// Chunks made durable, and their bytes.
    pub chunks: u64,
    pub bytes: u64,
    /// Rows not recorded because the queue was full.
    pub dropped_rows: u64,
    /// Chunks the audit store failed to write (logged; their entries are lost).
    pub failed_chunks: u64,
}

#[derive(Debug, Default)]
struct Counters {
    entries: AtomicU64,
    chunks: AtomicU64,
    bytes: AtomicU64,
    dropped_rows: AtomicU64,
    failed_chunks: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> RecordingStats {
        RecordingStats {
            entries: self.entries.load(Ordering::Relaxed),
            chunks: self.chunks.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            dropped_rows: self.dropped_rows.load(Ordering::Relaxed),
            failed_chunks: self.failed_chunks.load(Ordering::Relaxed),
        }
    }
}

enum Msg {
    /// One encoded entry, newline included.
    Line(Vec<u8>),
    /// Write what is buffered, then answer.
    Flush(oneshot::Sender<()>),
}

/// Records one session's transcript. Cheap to clone; every clone appends to the same
/// recording. Dropping the last clone still writes what is queued (if the runtime lives on);
/// [`Recorder::finish`] also waits until it is durable.
#[derive(Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
}

struct Shared {
    /// `None` when there was no runtime to run the writer task on (see [`Recorder::start`]).
    tx: Option<mpsc::UnboundedSender<Msg>>,
    /// The writer task, awaited by the last [`Recorder::finish`] so that its clone of the
    /// audit store is gone when `finish` returns (the store can then be closed).
    task: Option<tokio::task::JoinHandle<()>>,
    session: String,
    started: Instant,
    queue_limit: usize,
    /// Bytes in the channel, not yet taken by the task.
    queued: Arc<AtomicUsize>,
    /// Rows dropped since the last `dropped` marker was queued.
    unreported_drops: AtomicU64,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("session", &self.shared.session)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Start recording `session_id` with the default options. Must be called on a tokio
    /// runtime; the writer task runs there.
    pub fn start(audit: AuditStore, session_id: &str) -> Recorder {
        Recorder::start_with(audit, session_id, RecorderOptions::default())
    }

    pub fn start_with(audit: AuditStore, session_id: &str, options: RecorderOptions) -> Recorder {
        let counters = Arc::new(Counters::default());
        let queued = Arc::new(AtomicUsize::new(0));
        let (tx, task) = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let task = WriterTask {
                    audit,
                    session: session_id.to_owned(),
                    rx,
                    queued: queued.clone(),
                    counters: counters.clone(),
                    options: options.clone(),
                };
                (Some(tx), Some(runtime.spawn(task.run())))
            }
            Err(_) => {
                // A programming error, but not one worth killing a session over: the session
                // goes on, its audit events are still written, and the gap is loud in the log.
                tracing::error!(session = %session_id, "recorder started outside a tokio runtime: not recording");
                (None, None)
            }
        };
        let recorder = Recorder {
            shared: Arc::new(Shared {
                tx,
                task,
                session: session_id.to_owned(),
                started: Instant::now(),
                queue_limit: options.queue_bytes,
                queued,
                unreported_drops: AtomicU64::new(0),
                counters,
            }),
        };
        recorder.push(
            &Entry::Start {
                version: FORMAT_VERSION,
                time: Timestamp::now(),
            },
            0,
        );
        recorder
    }

    /// A statement as the client sent it, with the combined verdict (`allow`, `mask`, `deny`,
    /// `require-approval`) and the reason shown for it, if any.
    pub fn command(&self, text: &str, verdict: &str, reason: Option<&str>) {
        self.push(
            &Entry::Command {
                text: scrub(text),
                verdict: scrub(verdict),
                reason: reason.map(scrub),
            },
            0,
        );
    }

    /// The column names of the result that follows.
    pub fn columns(&self, names: &[String]) {
        self.push(
            &Entry::Columns {
                names: names.iter().map(|n| scrub(n)).collect(),
                types: Vec::new(),
            },
            0,
        );
    }

    /// [`Self::columns`] with each column's Postgres type OID, so replay aligns numbers right.
    pub fn columns_typed(&self, columns: &[(String, u32)]) {
        self.push(
            &Entry::Columns {
                names: columns.iter().map(|(n, _)| scrub(n)).collect(),
                types: columns.iter().map(|(_, oid)| *oid).collect(),
            },
            0,
        );
    }

    /// Result rows as the client received them (masked), cells as text, `None` for NULL.
    /// Dropped, and counted, when the queue is full.
    pub fn rows(&self, rows: &[Vec<Option<String>>]) {
        if rows.is_empty() {
            return;
        }
        let count = rows.len() as u64;
        // Refuse before encoding: when the queue is full, encoding would be wasted work.
        if self.queue_is_full(0) {
            self.drop_rows(count);
            return;
        }
        let entry = Entry::Rows {
            rows: rows
                .iter()
                .map(|row| row.iter().map(|cell| cell.as_deref().map(scrub)).collect())
                .collect(),
        };
        self.push(&entry, count);
    }

    /// The CommandComplete tag, e.g. `SELECT 3`.
    pub fn complete(&self, tag: &str) {
        self.push(&Entry::Complete { tag: scrub(tag) }, 0);
    }

    /// An error the client was shown (from the server, or the gateway's own refusal).
    pub fn error(&self, message: &str) {
        self.push(
            &Entry::Error {
                message: scrub(message),
            },
            0,
        );
    }

    /// A notice the client was shown.
    pub fn notice(&self, message: &str) {
        self.push(
            &Entry::Notice {
                message: scrub(message),
            },
            0,
        );
    }

    /// A pty was granted: its size and terminal type.
    pub fn terminal(&self, width: u32, height: u32, term: &str) {
        self.push(
            &Entry::Terminal {
                width,
                height,
                term: scrub(term),
            },
            0,
        );
    }

    /// Output the client was shown (already masked where the verdict said so); `stderr`
    /// selects the stream. Scrubbed again like every text.
    pub fn output(&self, stderr: bool, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(data);
        self.push(
            &Entry::Output {
                stream: Cow::Borrowed(if stderr { "e" } else { "o" }),
                data: scrub(&text),
            },
            0,
        );
    }

    /// A line the user submitted in a terminal.
    pub fn input(&self, line: &str) {
        self.push(&Entry::Input { data: scrub(line) }, 0);
    }

    /// The client's terminal changed size.
    pub fn resize(&self, width: u32, height: u32) {
        self.push(&Entry::Resize { width, height }, 0);
    }

    /// How a command ended: its exit status, or the signal that ended it.
    pub fn exit(&self, status: Option<u32>, signal: Option<&str>) {
        self.push(
            &Entry::Exit {
                status,
                signal: signal.map(Cow::Borrowed),
            },
            0,
        );
    }

    /// Wait until everything recorded so far (by any clone) is durable.
    pub async fn flush(&self) {
        self.report_drops();
        let Some(tx) = &self.shared.tx else { return };
        let (ack, done) = oneshot::channel();
        if tx.send(Msg::Flush(ack)).is_ok() {
            // An error means the task is gone (runtime shutting down); nothing left to wait for.
            let _ = done.await;
        }
    }

    /// Flush, durably, and let go of this handle. Other clones may go on recording; when this
    /// is the last one, also wait for the writer task to end, so it no longer holds the store.
    pub async fn finish(self) -> RecordingStats {
        self.flush().await;
        match Arc::try_unwrap(self.shared) {
            Ok(Shared {
                tx, task, counters, ..
            }) => {
                drop(tx);
                if let Some(task) = task
                    && let Err(err) = task.await
                {
                    tracing::error!(error = %err, "recording writer task failed");
                }
                counters.snapshot()
            }
            Err(shared) => shared.counters.snapshot(),
        }
    }

    pub fn stats(&self) -> RecordingStats {
        self.shared.counters.snapshot()
    }

    pub fn session_id(&self) -> &str {
        &self.shared.session
    }

    /// Whether `extra` more bytes would overflow the queue. An empty queue takes any entry, so
    /// a single batch bigger than the limit is still recorded.
    fn queue_is_full(&self, extra: usize) -> bool {
        let queued = self.shared.queued.load(Ordering::Relaxed);
        queued > 0 && queued.saturating_add(extra) > self.shared.queue_limit
    }

    /// Rows the client received that the caller chose not to record (a per-result cap);
    /// replay reports them like rows dropped by a full queue.
    pub fn omit_rows(&self, count: u64) {
        self.drop_rows(count);
    }

    fn drop_rows(&self, count: u64) {
        self.shared
            .unreported_drops
            .fetch_add(count, Ordering::Relaxed);
        self.shared
            .counters
            .dropped_rows
            .fetch_add(count, Ordering::Relaxed);
    }

    /// Encode and queue one entry. `rows` > 0 marks a droppable `rows` entry of that many rows.
    fn push(&self, entry: &Entry<'_>, rows: u64) {
        let Some(tx) = &self.shared.tx else { return };
        let t = self.elapsed_micros();
        let bytes = match encode(t, entry) {
            Ok(bytes) => bytes,
            Err(err) => {
                // Only a serde_json bug could get here: every field is a string or a number.
                tracing::error!(session = %self.shared.session, error = %err, "recording entry not encoded");
                return;
            }
        };
        if rows > 0 && self.queue_is_full(bytes.len()) {
            self.drop_rows(rows);
            return;
        }
        self.report_drops_at(t);
        self.send(tx, bytes);
    }

    /// Queue a `dropped` marker for rows dropped since the last one, if any.
    fn report_drops(&self) {
        self.report_drops_at(self.elapsed_micros());
    }

    fn report_drops_at(&self, t: u64) {
        let Some(tx) = &self.shared.tx else { return };
        let rows = self.shared.unreported_drops.swap(0, Ordering::Relaxed);
        if rows == 0 {
            return;
        }
        if let Ok(bytes) = encode(t, &Entry::Dropped { rows }) {
            self.send(tx, bytes);
        }
    }

    fn send(&self, tx: &mpsc::UnboundedSender<Msg>, bytes: Vec<u8>) {
        let len = bytes.len();
        self.shared.queued.fetch_add(len, Ordering::Relaxed);
        if tx.send(Msg::Line(bytes)).is_err() {
            // The task is gone only when the runtime is shutting down.
            self.shared.queued.fetch_sub(len, Ordering::Relaxed);
            return;
        }
        self.shared.counters.entries.fetch_add(1, Ordering::Relaxed);
    }

    fn elapsed_micros(&self) -> u64 {
        u64::try_from(self.shared.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// [`Line`] by reference, so encoding copies no cell.
#[derive(serde::Serialize)]
struct LineRef<'e, 'a> {
    t: u64,
    #[serde(flatten)]
    entry: &'e Entry<'a>,
}

fn encode(t: u64, entry: &Entry<'_>) -> Result<Vec<u8>, serde_json::Error> {
    let mut bytes = serde_json::to_vec(&LineRef { t, entry })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The background half: owns the buffer and talks to the audit store.
struct WriterTask {
    audit: AuditStore,
    session: String,
    rx: mpsc::UnboundedReceiver<Msg>,
    queued: Arc<AtomicUsize>,
    counters: Arc<Counters>,
    options: RecorderOptions,
}

impl WriterTask {
    /// Runs until every [`Recorder`] clone is gone, then writes what is left.
    async fn run(mut self) {
        let mut buf: Vec<u8> = Vec::new();
        // When the oldest buffered entry must be written by; `None` while the buffer is empty.
        let mut deadline: Option<Instant> = None;
        loop {
            let msg = match deadline {
                Some(at) => tokio::select! {
                    msg = self.rx.recv() => msg,
                    () = tokio::time::sleep_until(at) => {
                        self.write(&mut buf).await;
                        deadline = None;
                        continue;
                    }
                },
                None => self.rx.recv().await,
            };
            match msg {
                Some(Msg::Line(line)) => {
                    self.queued.fetch_sub(line.len(), Ordering::Relaxed);
                    if buf.is_empty() {
                        deadline = Some(Instant::now() + self.options.flush_interval);
                    }
                    buf.extend_from_slice(&line);
                    if buf.len() >= self.options.chunk_bytes {
                        self.write(&mut buf).await;
                        deadline = None;
                    }
                }
                Some(Msg::Flush(ack)) => {
                    self.write(&mut buf).await;
                    deadline = None;
                    let _ = ack.send(());
                }
                None => break,
            }
        }
        self.write(&mut buf).await;
    }

    /// Write the buffer as one chunk (nothing when empty) and clear it, success or not: a
    /// failed chunk is logged and counted, not retried, as the store has already reported that
    /// its commit failed and recordings are not the evidence (the audit events are).
    async fn write(&self, buf: &mut Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        let chunk = std::mem::take(buf);
        let len = chunk.len() as u64;
        match self.audit.append_recording(&self.session, chunk).await {
            Ok(_) => {
                self.counters.chunks.fetch_add(1, Ordering::Relaxed);
                self.counters.bytes.fetch_add(len, Ordering::Relaxed);
            }
            Err(err) => {
                self.counters.failed_chunks.fetch_add(1, Ordering::Relaxed);
                tracing::error!(session = %self.session, bytes = len, error = %err, "recording chunk lost");
            }
        }
    }
}
