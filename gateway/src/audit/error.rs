//! Why an audit operation failed. Any failure to append means the command must not be forwarded:
//! the gateway fails closed when it cannot prove what it did.

/// An audit store failure.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// redb refused: I/O, corruption, a lock held by another process, a full disk.
    #[error("audit database: {0}")]
    Db(#[from] redb::Error),
    /// The file is held open by another process (or another store in this one). redb locks the
    /// whole file, so `warden audit verify` cannot run against a database the gateway has open.
    #[error("audit database {0} is open elsewhere (stop the gateway, or verify a copy)")]
    Locked(String),
    /// An event or record could not be encoded or decoded.
    #[error("audit record encoding: {0}")]
    Encoding(#[from] serde_json::Error),
    /// Reading an export, or writing one.
    #[error("audit I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The group commit this request was part of failed; nothing of it was written.
    #[error("audit commit failed: {0}")]
    CommitFailed(String),
    /// The background writer is gone (it panicked, or the store was closed): nothing can be made
    /// durable any more.
    #[error("audit writer is not running")]
    WriterGone,
    /// Opened read-only, the file turned out to need recovery (it was copied while a gateway
    /// was writing it); recovering would change the evidence file, so it is refused.
    #[error(
        "audit database {0} needs recovery (copied while in use?); reading it read-only is refused"
    )]
    NeedsRecovery(String),
    /// Stored data that cannot be what the gateway wrote (a forged or damaged record).
    #[error("audit data damaged: {0}")]
    Corrupt(String),
    /// The checkpoint key or a signature: missing, unreadable, or not Ed25519.
    #[error("audit checkpoint: {0}")]
    Checkpoint(String),
    /// The disk holding the audit store is nearly full: new sessions are refused before a
    /// command can find the store unable to write.
    #[error("audit disk nearly full: {0}")]
    DiskFull(String),
    /// The write-ahead journal beside the database: unreadable, damaged, or not the one the
    /// database was writing (acknowledged events may be missing).
    #[error("audit journal {0}")]
    Journal(String),
    /// `close` was called while other handles to the store were still alive.
    #[error("audit store is still in use by {0} other handle(s)")]
    InUse(usize),
}

/// redb has one error type per operation; they all fold into [`redb::Error`] so callers see one
/// variant, [`AuditError::Db`].
macro_rules! from_redb {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for AuditError {
            fn from(err: $ty) -> Self {
                AuditError::Db(err.into())
            }
        }
    )*};
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
);
