//! [`AuditStore`]: the handle the gateway holds. Opening starts the group-commit writer; writes
//! go through it and are durable when they return; reads use their own snapshot transactions.
//!
//! redb locks the file for the process that opens it: while the gateway runs, no other process
//! (`warden audit verify` included) can open the database. Verify a copy, or stop the gateway.

use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, DatabaseError, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    TableError,
};
use tokio::sync::{mpsc, oneshot};

use super::blob;
use super::chain::{GENESIS, Hash};
use super::checkpoint::Checkpointer;
use super::event::{Event, EventKind, NewEvent, Pruned, SignedHead, Timestamp};
use super::export::{ExportOptions, export_events};
use super::journal::{self, Journal};
use super::query::{ExportFilter, SessionContext, Sessions};
use super::records::{ApprovalRecord, SessionRecord, get_json};
use super::schema::{
    APPROVALS, BASE, EVENTS, HEAD, JOURNAL, META, RECORDINGS, SESSIONS, TEXT_LAST, TEXTS,
};
use super::texts::{expand, open_texts};
use super::verify::{VerifyReport, verify_chain};
use super::writer::{ChainHead, Counters, Op, Replay, Reply, Request, Writer, WriterStats};
use super::{AuditConfig, AuditError};

/// How to open a store. [`AuditConfig`] gives the gateway's; the CLI opens existing files only.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Create the file when it does not exist.
    pub create: bool,
    /// Most requests one group commit takes. Bounds a transaction's size and the latency the
    /// last appender of a big batch sees.
    pub max_batch: usize,
    /// Check every page's checksum on open: slow on a big file, meant for `warden audit verify`,
    /// where a file altered outside redb must be reported rather than trusted.
    pub check_integrity: bool,
    /// Signs checkpoints ([`AuditStore::checkpoint`]); none: checkpoints are refused.
    pub checkpointer: Option<Arc<Checkpointer>>,
    /// See [`super::AuditConfig::text_cap`].
    pub text_cap: usize,
    /// See [`super::AuditConfig::min_free`] (0: no guard).
    pub min_free: u64,
    /// Size of the write-ahead journal beside the file (`journal.rs`); 0: every batch is a
    /// durable redb commit instead.
    pub journal_size: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            create: true,
            max_batch: super::DEFAULT_MAX_BATCH,
            check_integrity: false,
            checkpointer: None,
            text_cap: super::DEFAULT_TEXT_CAP,
            min_free: 0,
            journal_size: journal::DEFAULT_SIZE,
        }
    }
}

/// What [`AuditStore::for_each_event`] calls for each event it selects.
pub type EventVisitor<'a> =
    dyn FnMut(&Event, Option<&SessionContext>) -> Result<(), AuditError> + 'a;

/// A cheap-to-clone handle on the audit database, shared by every session task.
#[derive(Clone)]
pub struct AuditStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    tx: mpsc::UnboundedSender<Request>,
    /// `None` for a store opened read-only.
    writer: Option<std::thread::JoinHandle<()>>,
    counters: Arc<Counters>,
    path: PathBuf,
    checkpointer: Option<Arc<Checkpointer>>,
    text_cap: usize,
    min_free: u64,
}

/// The database: the gateway's, which its writer thread writes, or a read-only view that never
/// changes a byte of the file (for auditors' offline reads of evidence copies).
enum Db {
    Writable(Arc<Database>),
    ReadOnly(ReadOnlyDatabase),
}

impl Db {
    fn begin_read(&self) -> Result<ReadTransaction, redb::TransactionError> {
        match self {
            Db::Writable(db) => db.begin_read(),
            Db::ReadOnly(db) => db.begin_read(),
        }
    }
}

/// A stored event with its chain hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedEvent {
    pub event: Event,
    pub hash: Hash,
}

impl std::fmt::Debug for AuditStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl AuditStore {
    /// Open the database at `path`, creating it when missing, and start the writer.
    pub fn open(path: impl AsRef<Path>) -> Result<AuditStore, AuditError> {
        AuditStore::open_with(path, &StoreOptions::default())
    }

    /// Open as `[audit]` in warden.toml says.
    pub fn from_config(config: &AuditConfig) -> Result<AuditStore, AuditError> {
        let checkpointer = match &config.checkpoints {
            Some(c) => Some(Arc::new(Checkpointer::from_config(c)?)),
            None => None,
        };
        let store = AuditStore::open_with(
            &config.path,
            &StoreOptions {
                max_batch: config.max_batch,
                checkpointer,
                text_cap: usize::try_from(config.text_cap.0).unwrap_or(usize::MAX),
                min_free: config.min_free.0,
                ..StoreOptions::default()
            },
        )?;
        store.check_against_checkpoints()?;
        Ok(store)
    }

    /// Before the gateway writes on a database, check it against its own checkpoint file: a
    /// database rolled back or replaced (older than what the key signed), or a checkpoint file
    /// cut or removed while the chain holds checkpoints, is refused rather than continued and
    /// signed over.
    fn check_against_checkpoints(&self) -> Result<(), AuditError> {
        let Some(signer) = &self.inner.checkpointer else {
            return Ok(());
        };
        let own = |h: &SignedHead| h.key == signer.public_hex();
        let in_chain: Vec<_> = self.checkpoint_events()?.into_iter().filter(own).collect();
        // A checkpoint the chain holds and the file lacks (the gateway stopped between the
        // two writes, or the file lost it): the chain's signed copy is put back, loudly. A file
        // gone altogether while the chain holds checkpoints is refused: with it went the proof
        // that this database is not a rolled-back copy.
        let present = signer.lines()?;
        if present.is_empty() && !in_chain.is_empty() {
            return Err(AuditError::Checkpoint(format!(
                "the checkpoint file is missing or empty while {} holds {} checkpoints: restore \
                 the file (from its off-host copy or syslog) before starting on this database",
                self.inner.path.display(),
                in_chain.len()
            )));
        }
        for head in &in_chain {
            if !present.iter().any(|l| l.head.as_ref() == Ok(head)) {
                tracing::warn!(
                    seq = head.seq,
                    "checkpoint missing from the checkpoint file: restored from the chain"
                );
                signer.publish(head)?;
            }
        }
        let lines: Vec<_> = signer
            .lines()?
            .into_iter()
            .filter(|l| l.head.as_ref().is_ok_and(own))
            .collect();
        let public = hex::decode(signer.public_hex())
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or_else(|| AuditError::Checkpoint("bad public key".into()))?;
        let checked = super::checkpoint::check_checkpoints(
            &lines,
            &in_chain,
            &public,
            self.base()?,
            &mut |seq| self.hash_at(seq),
        )?;
        match checked.problem {
            None => Ok(()),
            Some(problem) => Err(AuditError::Checkpoint(format!(
                "{} does not match its checkpoints: {problem}. Refusing to write on it; \
                 investigate with `warden audit verify --checkpoints`",
                self.inner.path.display()
            ))),
        }
    }

    pub fn open_with(
        path: impl AsRef<Path>,
        options: &StoreOptions,
    ) -> Result<AuditStore, AuditError> {
        let path = path.as_ref();
        let builder = builder(options.check_integrity);
        if options.create && !path.exists() {
            let db = create_new(&builder, path)?;
            return AuditStore::start(db, path, options);
        }
        let opened = if options.create {
            private_file(path)?;
            builder.create(path)
        } else {
            builder.open(path)
        };
        let db = match opened {
            Ok(db) => db,
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                return Err(AuditError::Locked(path.display().to_string()));
            }
            Err(err) => return Err(err.into()),
        };
        AuditStore::start(db, path, options)
    }

    /// Start the writer on an opened database, after putting back what its journal holds
    /// beyond the last durable commit (a crash).
    fn start(db: Database, path: &Path, options: &StoreOptions) -> Result<AuditStore, AuditError> {
        ensure_tables(&db)?;
        let journal = if options.journal_size > 0 {
            let (needed, bytes) = journal_needed(path, &db.begin_read()?)?;
            let path = journal::path_for(path);
            let mut journal = Journal::open(&path, &bytes, options.journal_size)?;
            if let Some(generation) = needed.generation {
                journal.adopt(generation);
            }
            // The header names the next generation first, then the durable commit of what is
            // put back names it in the database.
            let next = journal::new_generation();
            journal.begin_reset(next)?;
            let restored = super::writer::replay(
                &db,
                Replay {
                    records: &needed.records,
                    next: Some(next),
                    lost: needed.lost,
                    record_loss: true,
                },
            )?;
            journal.finish_reset(next);
            if restored > 0 {
                tracing::warn!(
                    restored,
                    journal = %path.display(),
                    "audit events restored from the journal after an unclean stop"
                );
            }
            Some(journal)
        } else {
            None
        };
        let head = load_head(&db)?;
        let db = Arc::new(db);
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            db: db.clone(),
            rx,
            head,
            max_batch: options.max_batch.max(1),
            counters: counters.clone(),
            checkpointer: options.checkpointer.clone(),
            last_checkpoint: last_checkpoint(&db)?,
            journal,
            needs_durable: false,
        };
        let handle = std::thread::Builder::new()
            .name("warden-audit-writer".into())
            .spawn(move || writer.run())?;
        Ok(AuditStore {
            inner: Arc::new(Inner {
                db: Db::Writable(db),
                tx,
                writer: Some(handle),
                counters,
                path: path.to_path_buf(),
                checkpointer: options.checkpointer.clone(),
                text_cap: options.text_cap.max(64),
                min_free: options.min_free,
            }),
        })
    }

    /// Open an existing database without writing to it: not a byte of the file changes (its
    /// digest stays the evidence's), and it may sit on read-only or immutable storage. Appends
    /// fail. A file that needs recovery (copied while a gateway was writing it) is refused
    /// with [`AuditError::NeedsRecovery`]: recover a copy instead.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<AuditStore, AuditError> {
        let path = path.as_ref();
        let db = match builder(false).open_read_only(path) {
            Ok(db) => db,
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                return Err(AuditError::Locked(path.display().to_string()));
            }
            Err(DatabaseError::RepairAborted) => {
                return Err(AuditError::NeedsRecovery(path.display().to_string()));
            }
            Err(DatabaseError::Storage(redb::StorageError::Io(e))) => return Err(e.into()),
            Err(err) => {
                return Err(AuditError::NeedsRecovery(format!(
                    "{}: {err}",
                    path.display()
                )));
            }
        };
        // Events acknowledged after the file's last durable commit are in the journal (the
        // gateway stopped without closing): reading them needs a recovered copy. A journal the
        // database needs and cannot have is refused here too.
        let (needed, _) = journal_needed(path, &db.begin_read()?)?;
        if needed.records.iter().any(|r| r.seq() > needed.head) {
            return Err(AuditError::NeedsRecovery(format!(
                "{} (its journal holds newer events)",
                path.display()
            )));
        }
        // Nobody listens: a write request fails at once with `WriterGone`.
        let (tx, _) = mpsc::unbounded_channel();
        Ok(AuditStore {
            inner: Arc::new(Inner {
                db: Db::ReadOnly(db),
                tx,
                writer: None,
                counters: Arc::new(Counters::default()),
                path: path.to_path_buf(),
                checkpointer: None,
                text_cap: super::DEFAULT_TEXT_CAP,
                min_free: 0,
            }),
        })
    }

    /// For reading evidence: [`Self::open_read_only`], or, when the file needs recovery, a
    /// private copy recovered and read instead (the original is never written). The second
    /// value says which. The copy is an unlinked 0600 file in the temp dir (`TMPDIR`): nothing
    /// is left behind however the command ends, and a file larger than the space there (less
    /// [`super::DEFAULT_MIN_FREE`]) is refused before anything is copied.
    pub fn open_evidence(path: impl AsRef<Path>) -> Result<(AuditStore, bool), AuditError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = path.as_ref();
        match AuditStore::open_read_only(path) {
            Err(AuditError::NeedsRecovery(_)) => {}
            other => return other.map(|store| (store, false)),
        }
        let size = std::fs::metadata(path)?.len();
        let dir = std::env::temp_dir();
        let stat = rustix::fs::statvfs(&dir)
            .map_err(|e| AuditError::Io(std::io::Error::from_raw_os_error(e.raw_os_error())))?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        if size.saturating_add(super::DEFAULT_MIN_FREE) > free {
            return Err(AuditError::DiskFull(format!(
                "recovering a copy of {} needs {} MiB in {} ({} MiB free, {} MiB kept free): \
                 point TMPDIR at a larger disk",
                path.display(),
                size >> 20,
                dir.display(),
                free >> 20,
                super::DEFAULT_MIN_FREE >> 20
            )));
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = dir.join(format!(
            "warden-recovered-{}-{nanos}.redb",
            std::process::id()
        ));
        let mut copy = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&name)?;
        // Unlinked at once: the open file is all there is.
        std::fs::remove_file(&name)?;
        std::io::copy(&mut std::fs::File::open(path)?, &mut copy)?;
        let backend = redb::backends::FileBackend::new(copy)?;
        let db = builder(true).create_with_backend(backend)?;
        // The original's journal, read and applied to the copy only.
        let (needed, _) = journal_needed(path, &db.begin_read()?)?;
        super::writer::replay(
            &db,
            Replay {
                records: &needed.records,
                next: None,
                lost: needed.lost,
                record_loss: false,
            },
        )?;
        let options = StoreOptions {
            journal_size: 0,
            ..StoreOptions::default()
        };
        let store = AuditStore::start(db, path, &options)?;
        Ok((store, true))
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Append an event; returns its `seq` once it is durable on disk. Concurrent appends share
    /// one commit. If the future is dropped after the request was queued, the event is still
    /// written: an audit record is never lost because its caller gave up waiting.
    /// A `session_start` is refused (before anything is written) while the disk is nearly full:
    /// see [`Self::check_space`].
    pub async fn append(&self, event: NewEvent) -> Result<u64, AuditError> {
        if matches!(event.kind, EventKind::SessionStart(_)) {
            self.check_space()?;
        }
        self.request(Op::Append(event)).await
    }

    /// Is there room for a new session? Refuses while the file system holding the store has
    /// less than `[audit] min_free` available, so sessions are turned away cleanly at the door
    /// instead of a command finding the store unable to write.
    pub fn check_space(&self) -> Result<(), AuditError> {
        if self.inner.min_free == 0 {
            return Ok(());
        }
        let stat = rustix::fs::statvfs(dir_of(&self.inner.path))
            .map_err(|e| AuditError::Io(std::io::Error::from_raw_os_error(e.raw_os_error())))?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        if free < self.inner.min_free {
            return Err(AuditError::DiskFull(format!(
                "{} MiB free where the audit store is, below [audit] min_free ({} MiB)",
                free >> 20,
                self.inner.min_free >> 20
            )));
        }
        Ok(())
    }

    /// A command text as the store keeps it: whole up to `[audit] text_cap` bytes, else its
    /// head plus the whole text's length and sha256.
    pub fn cap<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        blob::cap_text(text, self.inner.text_cap)
    }

    /// [`Self::append`] for threads outside the runtime. Blocks until durable. Safe to call from
    /// inside a runtime too, but it then blocks that worker thread.
    pub fn append_blocking(&self, event: NewEvent) -> Result<u64, AuditError> {
        self.request_blocking(Op::Append(event))
    }

    /// Append a chunk to a session's recording, durably; returns its chunk number (from 0). The
    /// bytes must already be masked. The chunk is stored compressed, and a `recording` event
    /// with its digest chains it. Compression runs here, on the caller's thread, not the
    /// writer's.
    pub async fn append_recording(&self, session: &str, chunk: Vec<u8>) -> Result<u64, AuditError> {
        self.request(Op::Recording(blob::store_chunk(session, &chunk)?))
            .await
    }

    /// Sign the head with the checkpoint key, chain the signature and write it to the sinks.
    /// `None` when nothing was appended since the last checkpoint. Fails without a key.
    pub async fn checkpoint(&self) -> Result<Option<SignedHead>, AuditError> {
        let seq = self.request(Op::Checkpoint).await?;
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.publish_checkpoint(seq))
            .await
            .map_err(|e| AuditError::CommitFailed(e.to_string()))?
    }

    /// [`Self::checkpoint`] outside a runtime.
    pub fn checkpoint_blocking(&self) -> Result<Option<SignedHead>, AuditError> {
        let seq = self.request_blocking(Op::Checkpoint)?;
        self.publish_checkpoint(seq)
    }

    /// Retention: remove events older than `before` with the sessions they began, their
    /// recordings and approvals, leaving a signed cut the rest chains from and a `pruned`
    /// event (see `retention.rs`). `None` when nothing was due.
    pub fn prune_blocking(&self, before: Timestamp) -> Result<Option<Pruned>, AuditError> {
        let seq = self.request_blocking(Op::Prune(before))?;
        if seq == 0 {
            return Ok(None);
        }
        let pruned = match self.events(seq..=seq)?.pop().map(|e| e.event.kind) {
            Some(EventKind::Pruned(p)) => p,
            _ => return Err(AuditError::Corrupt(format!("pruned event {seq} not found"))),
        };
        if let (Some(signed), Some(checkpointer)) = (&pruned.signed, &self.inner.checkpointer) {
            checkpointer.publish(signed)?;
        }
        Ok(Some(pruned))
    }

    /// [`Self::prune_blocking`] from async code.
    pub async fn prune(&self, before: Timestamp) -> Result<Option<Pruned>, AuditError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.prune_blocking(before))
            .await
            .map_err(|e| AuditError::CommitFailed(e.to_string()))?
    }

    /// How often the gateway checkpoints, when a key is configured.
    pub fn checkpoint_interval(&self) -> Option<std::time::Duration> {
        self.inner.checkpointer.as_ref().map(|c| c.interval)
    }

    fn publish_checkpoint(&self, seq: u64) -> Result<Option<SignedHead>, AuditError> {
        if seq == 0 {
            return Ok(None);
        }
        let signed = match self.events(seq..=seq)?.pop().map(|e| e.event.kind) {
            Some(EventKind::Checkpoint(c)) => c.head,
            _ => {
                return Err(AuditError::Corrupt(format!(
                    "checkpoint event {seq} not found"
                )));
            }
        };
        if let Some(checkpointer) = &self.inner.checkpointer {
            checkpointer.publish(&signed)?;
        }
        Ok(Some(signed))
    }

    async fn request(&self, op: Op) -> Result<u64, AuditError> {
        let started = std::time::Instant::now();
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Request {
                op,
                reply: Reply::Async(tx),
            })
            .map_err(|_| AuditError::WriterGone)?;
        let answer = rx.await.map_err(|_| AuditError::WriterGone)?;
        crate::metrics::audit_append(started.elapsed());
        answer
    }

    fn request_blocking(&self, op: Op) -> Result<u64, AuditError> {
        let started = std::time::Instant::now();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.inner
            .tx
            .send(Request {
                op,
                reply: Reply::Blocking(tx),
            })
            .map_err(|_| AuditError::WriterGone)?;
        let answer = rx.recv().map_err(|_| AuditError::WriterGone)?;
        crate::metrics::audit_append(started.elapsed());
        answer
    }

    /// Group-commit counters since open.
    pub fn stats(&self) -> WriterStats {
        self.inner.counters.snapshot()
    }

    // Readers. Each runs in its own read transaction (a consistent snapshot, concurrent with the
    // writer). They block on disk reads: from async code, call them in `spawn_blocking`.

    /// The last committed event's `seq` and hash (`(0, GENESIS)` when empty).
    pub fn head(&self) -> Result<(u64, Hash), AuditError> {
        let head = read_head(&self.read()?)?;
        Ok(head.map_or((0, GENESIS), |h| (h.seq, h.hash)))
    }

    /// Events whose `seq` is in `range`, in order: `store.events(100..)`, `store.events(..)`.
    pub fn events(&self, range: impl RangeBounds<u64>) -> Result<Vec<ChainedEvent>, AuditError> {
        let txn = self.read()?;
        let table = txn.open_table(EVENTS)?;
        let texts = open_texts(&txn)?;
        let mut out = Vec::new();
        for entry in
            table.range::<u64>((range.start_bound().cloned(), range.end_bound().cloned()))?
        {
            let (_, value) = entry?;
            let (hash, row) = value.value();
            out.push(ChainedEvent {
                event: serde_json::from_slice(&expand(row, texts.as_ref())?)?,
                hash,
            });
        }
        Ok(out)
    }

    pub fn session(&self, id: &str) -> Result<Option<SessionRecord>, AuditError> {
        let txn = self.read()?;
        get_json(&txn.open_table(SESSIONS)?, id)
    }

    /// Every session, ordered by id.
    pub fn sessions(&self) -> Result<Vec<SessionRecord>, AuditError> {
        all_json(&self.read()?, SESSIONS)
    }

    pub fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, AuditError> {
        let txn = self.read()?;
        get_json(&txn.open_table(APPROVALS)?, id)
    }

    /// Every approval, ordered by id.
    pub fn approvals(&self) -> Result<Vec<ApprovalRecord>, AuditError> {
        all_json(&self.read()?, APPROVALS)
    }

    /// A session's recording chunks, in order (empty when nothing was recorded).
    pub fn recording(&self, session: &str) -> Result<Vec<Vec<u8>>, AuditError> {
        let txn = self.read()?;
        let table = txn.open_table(RECORDINGS)?;
        let mut chunks = Vec::new();
        for entry in table.range((session, 0u64)..=(session, u64::MAX))? {
            chunks.push(blob::load_chunk(entry?.1.value())?);
        }
        Ok(chunks)
    }

    /// Walk the whole chain; see [`VerifyReport`]. Runs against a snapshot, so it may run while
    /// the gateway appends.
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        verify_chain(&self.read()?)
    }

    /// The stored chain hash of event `seq` (after a successful [`Self::verify`], the verified
    /// one); `None` when there is no such event.
    pub fn hash_at(&self, seq: u64) -> Result<Option<Hash>, AuditError> {
        let txn = self.read()?;
        let table = txn.open_table(EVENTS)?;
        Ok(table.get(seq)?.map(|guard| guard.value().0))
    }

    /// The retention cut the chain starts after: `(seq, hash)`, `(0, GENESIS)` when none.
    pub fn base(&self) -> Result<(u64, Hash), AuditError> {
        Ok(read_base(&self.read()?)?.map_or((0, GENESIS), |b| (b.seq, b.hash)))
    }

    /// Every checkpoint event in the chain, oldest first.
    pub fn checkpoint_events(&self) -> Result<Vec<SignedHead>, AuditError> {
        let txn = self.read()?;
        let table = txn.open_table(EVENTS)?;
        let texts = open_texts(&txn)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            let row = value.value().1;
            if !is_checkpoint(row) {
                continue;
            }
            if let Ok(Event {
                kind: EventKind::Checkpoint(c),
                ..
            }) = serde_json::from_slice(&expand(row, texts.as_ref())?)
            {
                out.push(c.head);
            }
        }
        Ok(out)
    }

    /// Write events from `from` (default 1) as JSON lines; returns how many. See
    /// [`super::verify_export`] for the line format.
    pub fn export(
        &self,
        from: Option<u64>,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, AuditError> {
        let options = ExportOptions {
            filter: ExportFilter {
                from_seq: from,
                ..ExportFilter::default()
            },
            ..ExportOptions::default()
        };
        self.export_with(&options, out, &mut |_| {})
    }

    /// Call `f` with each readable event `filter` selects, in order, with its session's
    /// context, from one snapshot (events are decoded one at a time, not all held).
    pub fn for_each_event(
        &self,
        filter: &ExportFilter,
        f: &mut EventVisitor<'_>,
    ) -> Result<(), AuditError> {
        let txn = self.read()?;
        let table = txn.open_table(EVENTS)?;
        let texts = open_texts(&txn)?;
        let mut sessions = Sessions::new(&txn);
        for entry in table.range(filter.from_seq.unwrap_or(0)..)? {
            let (_, value) = entry?;
            let bytes = expand(value.value().1, texts.as_ref())?;
            let Ok(event) = serde_json::from_slice::<Event>(&bytes) else {
                continue;
            };
            let context = sessions.context(&event)?;
            if filter.matches(&event, context.as_ref()) {
                f(&event, context.as_ref())?;
            }
        }
        Ok(())
    }

    /// Write the events `options` selects, as JSON lines or CSV; returns how many. `progress`
    /// hears each `seq` read. Runs against one snapshot, so it may run while the gateway
    /// appends.
    pub fn export_with(
        &self,
        options: &ExportOptions,
        out: &mut dyn std::io::Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, AuditError> {
        export_events(&self.read()?, options, out, progress)
    }

    pub(super) fn read(&self) -> Result<ReadTransaction, AuditError> {
        Ok(self.inner.db.begin_read()?)
    }

    /// [`Self::close`] once this is the last handle, waiting up to `wait` for the others (tasks
    /// being torn down) to go. A database closed so needs no recovery when next opened; after
    /// the wait it is dropped instead (redb recovers it on the next open).
    pub async fn close_when_alone(self, wait: std::time::Duration) -> Result<(), AuditError> {
        let deadline = tokio::time::Instant::now() + wait;
        while Arc::strong_count(&self.inner) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::task::spawn_blocking(move || self.close())
            .await
            .map_err(|e| AuditError::CommitFailed(e.to_string()))?
    }

    /// Stop the writer after it has answered everything queued, and close the file, releasing
    /// its lock. Fails with [`AuditError::InUse`] while other clones of this handle exist.
    /// Dropping the last handle also stops the writer, but without waiting for it.
    pub fn close(self) -> Result<(), AuditError> {
        let inner = Arc::try_unwrap(self.inner)
            .map_err(|inner| AuditError::InUse(Arc::strong_count(&inner) - 1))?;
        let Inner { db, tx, writer, .. } = inner;
        drop(tx);
        // The writer answers everything already queued before it sees the channel close.
        if writer.is_some_and(|w| w.join().is_err()) {
            tracing::error!("audit writer thread panicked");
        }
        match db {
            Db::Writable(db) => match Arc::try_unwrap(db) {
                Ok(db) => db.close()?,
                // Only the writer shares it, and it has stopped; if not, dropping closes it later.
                Err(_) => tracing::warn!("audit database still referenced at close"),
            },
            Db::ReadOnly(db) => drop(db),
        }
        Ok(())
    }
}

/// A new database, made whole under a temporary name and then renamed into place: a crash
/// while redb writes its first pages leaves no half-made file where the database goes (which
/// every later start would refuse as "not a redb database").
fn create_new(builder: &redb::Builder, path: &Path) -> Result<Database, AuditError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".creating");
    let creating = PathBuf::from(name);
    match std::fs::remove_file(&creating) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    private_file(&creating)?;
    let db = builder.create(&creating)?;
    ensure_tables(&db)?;
    // The open file keeps its lock across the rename.
    std::fs::rename(&creating, path)?;
    sync_dir(path)?;
    Ok(db)
}

/// The directory holding `path` (`.` for a bare file name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A new file's directory entry must survive a crash too.
pub(crate) fn sync_dir(path: &Path) -> Result<(), AuditError> {
    std::fs::File::open(dir_of(path))?.sync_all()?;
    Ok(())
}

/// How every store opens its file.
fn builder(check_integrity: bool) -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_check_integrity_on_open(check_integrity);
    // redb's default cache (1 GiB) would grow with every recording written; the store is
    // append-mostly and read rarely, so a small cache costs nothing.
    builder.set_cache_size(64 << 20);
    builder
}

/// Create the tables on a new file. Skipped when they exist, so opening an existing database
/// (as `warden audit verify` does) writes nothing.
fn ensure_tables(db: &Database) -> Result<(), AuditError> {
    let txn = db.begin_read()?;
    let missing = [
        table_missing(txn.open_table(SESSIONS))?,
        table_missing(txn.open_table(EVENTS))?,
        table_missing(txn.open_table(APPROVALS))?,
        table_missing(txn.open_table(RECORDINGS))?,
        table_missing(txn.open_table(META))?,
        table_missing(txn.open_table(TEXTS))?,
        table_missing(txn.open_table(TEXT_LAST))?,
    ];
    drop(txn);
    if !missing.contains(&true) {
        return Ok(());
    }
    let txn = db.begin_write()?;
    txn.open_table(SESSIONS)?;
    txn.open_table(EVENTS)?;
    txn.open_table(APPROVALS)?;
    txn.open_table(RECORDINGS)?;
    txn.open_table(META)?;
    txn.open_table(TEXTS)?;
    txn.open_table(TEXT_LAST)?;
    txn.commit()?;
    Ok(())
}

fn table_missing<T>(opened: Result<T, TableError>) -> Result<bool, AuditError> {
    match opened {
        Ok(_) => Ok(false),
        Err(TableError::TableDoesNotExist(_)) => Ok(true),
        Err(err) => Err(err.into()),
    }
}

/// What a database needs from its journal.
struct Needed {
    records: Vec<journal::Record>,
    /// The generation read (the database's), to name as the previous one.
    generation: Option<u64>,
    /// The database's last durable event.
    head: u64,
    /// Why the journal could not be used, when the operator accepted that.
    lost: Option<String>,
}

/// The journal records the database at `db` (read through `txn`) needs put back, or the
/// refusal (see [`journal::load`]), with the journal's bytes. With
/// `WARDEN_ACCEPT_JOURNAL_LOSS=1` a refusal is logged and what chains before it is kept.
fn journal_needed(db: &Path, txn: &ReadTransaction) -> Result<(Needed, Vec<u8>), AuditError> {
    let path = journal::path_for(db);
    let bytes = journal::read_file(&path)?.unwrap_or_default();
    let needed = journal_records(&path, &bytes, txn)?;
    Ok((needed, bytes))
}

fn journal_records(path: &Path, bytes: &[u8], txn: &ReadTransaction) -> Result<Needed, AuditError> {
    let expected = match txn.open_table(META) {
        Ok(meta) => meta.get(JOURNAL)?.map(|g| g.value().0),
        Err(TableError::TableDoesNotExist(_)) => None,
        Err(err) => return Err(err.into()),
    };
    let head = read_head(txn)?.map_or(0, |h| h.seq);
    match journal::load(bytes, path, expected, head) {
        Ok(records) => Ok(Needed {
            records,
            generation: expected,
            head,
            lost: None,
        }),
        Err(refused) if journal::accept_loss() => {
            let message = refused.error.to_string();
            tracing::error!(
                "{message} (going on with the {} records before the problem: {}=1)",
                refused.usable.len(),
                journal::ACCEPT_LOSS_ENV
            );
            Ok(Needed {
                records: refused.usable,
                generation: expected,
                head,
                lost: Some(message),
            })
        }
        Err(refused) => Err(refused.error),
    }
}

pub(crate) fn read_head(txn: &ReadTransaction) -> Result<Option<ChainHead>, AuditError> {
    read_meta(txn, HEAD)
}

/// The retention cut the chain starts from, if retention has run.
pub(crate) fn read_base(txn: &ReadTransaction) -> Result<Option<ChainHead>, AuditError> {
    read_meta(txn, BASE)
}

fn read_meta(txn: &ReadTransaction, key: &str) -> Result<Option<ChainHead>, AuditError> {
    let meta = txn.open_table(META)?;
    Ok(meta.get(key)?.map(|guard| {
        let (seq, hash) = guard.value();
        ChainHead { seq, hash }
    }))
}

/// Where the writer continues the chain. The head in `meta` is authoritative (it is written with
/// the events); if it disagrees with the events table the file was altered, which `verify`
/// reports in detail. The writer still starts, from the head, so the gateway keeps running and
/// the evidence of the alteration stays in place.
fn load_head(db: &Database) -> Result<ChainHead, AuditError> {
    let txn = db.begin_read()?;
    let head = read_head(&txn)?;
    let last = {
        let events = txn.open_table(EVENTS)?;
        events.last()?.map(|(key, value)| ChainHead {
            seq: key.value(),
            hash: value.value().0,
        })
    };
    match (head, last) {
        (Some(head), Some(last)) if head.seq != last.seq || head.hash != last.hash => {
            tracing::error!(
                head = head.seq,
                last = last.seq,
                "audit chain head disagrees with the last stored event: run `warden audit verify`"
            );
            Ok(head)
        }
        (Some(head), _) => Ok(head),
        (None, Some(last)) => {
            tracing::error!(
                last = last.seq,
                "audit chain head is missing: continuing from the last event"
            );
            Ok(last)
        }
        (None, None) => Ok(ChainHead {
            seq: 0,
            hash: GENESIS,
        }),
    }
}

/// The `seq` of the newest checkpoint event: the writer does not sign the same head twice.
fn last_checkpoint(db: &Database) -> Result<u64, AuditError> {
    let txn = db.begin_read()?;
    let events = txn.open_table(EVENTS)?;
    // Checkpoints are frequent; looking back a few thousand events finds the newest one.
    for entry in events.iter()?.rev().take(4096) {
        let (key, value) = entry?;
        if is_checkpoint(value.value().1) {
            return Ok(key.value());
        }
    }
    Ok(0)
}

/// A cheap test on an event's bytes. Inside a JSON string the quotes would be escaped, so the
/// pattern only matches the event's own `type`.
fn is_checkpoint(bytes: &[u8]) -> bool {
    const TAG: &[u8] = b"\"type\":\"checkpoint\"";
    bytes.windows(TAG.len()).any(|w| w == TAG)
}

fn all_json<T: for<'de> serde::Deserialize<'de>>(
    txn: &ReadTransaction,
    table: redb::TableDefinition<&str, &[u8]>,
) -> Result<Vec<T>, AuditError> {
    let table = txn.open_table(table)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        out.push(serde_json::from_slice(entry?.1.value())?);
    }
    Ok(out)
}

/// The audit trail is readable by the gateway's user only (0600), whatever the umask: created
/// so, or narrowed when it was not (a file someone else owns is left as it is, with a warning).
pub(crate) fn private_file(path: &Path) -> Result<(), AuditError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let private = std::fs::Permissions::from_mode(0o600);
            if let Err(e) = std::fs::set_permissions(path, private) {
                tracing::warn!(path = %path.display(), "audit store left with its mode: {e}");
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
