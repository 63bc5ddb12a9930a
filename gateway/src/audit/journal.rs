//! The write-ahead journal: what makes an append durable for the price of one `fdatasync`.
//!
//! A redb commit with `Durability::Immediate` writes several scattered pages (the events tree,
//! the index tables, the allocator state, the header) and then syncs them: measured here at
//! about 1.8× one write+fdatasync into preallocated space. So the writer commits each group to
//! redb with `Durability::None` (visible to readers at once, durable later) and makes it
//! durable by appending its records here: one `pwrite` and one `fdatasync`, into space written
//! with zeros when the journal was created, so the sync carries no file-size metadata. Only
//! then are the appenders answered ("durable before forwarded" holds). When the journal is
//! half full, before retention prunes and at shutdown, one durable redb commit makes the
//! journal's content redundant and it starts over under a new generation.
//!
//! After a crash redb comes back at its last durable commit, and [`super::writer::replay`] puts
//! back the journal's records beyond it before anything else reads or writes. Which journal the
//! database needs is recorded in the database: every durable commit that starts the journal
//! over writes the new generation (a random number) to `meta`, and a clean stop removes it. A
//! journal that is missing, emptied, an older copy, or another database's (a copy of this one
//! included) is refused by [`load`], never read as "nothing to restore"; and each event must
//! continue the chain exactly. Starting over is two steps: the header first names the new
//! generation *and* the current one, then the durable commit names the new one in `meta`; a
//! crash between the two leaves a header whose previous generation is the database's, and the
//! current frames are still read.
//!
//! What the database cannot see: a journal rolled back within its generation (frames zeroed or
//! cut, or an older copy of the same generation put back), or frames forged with recomputed
//! checksums, by someone who can write the file. The same holds for the database itself; the
//! signed checkpoints bound what can go unnoticed (see docs/audit.md). A journal shorter than
//! the size its header says it was created with is refused.
//!
//! Layout: bytes 0..4096 are the header, `WARDENJ2 ‖ generation ‖ previous generation ‖ size ‖
//! crc32`.
//! Each sync writes one frame, padded to 16 bytes: `length (u32 LE) ‖ !length ‖
//! crc32(generation ‖ body) ‖ body`, the body being the batch's records, each `length (u32 LE) ‖
//! record`. Reading stops at the first frame that does not hold: the last one, torn by the
//! crash (never acknowledged), or the first of an older generation. A frame that does not hold
//! with a valid frame of the same generation after it is damage to what was acknowledged, and
//! is refused.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::AuditError;
use super::chain::Hash;

/// The journal of the database at `db`: beside it, `NAME.journal`.
pub(crate) fn path_for(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// Default size: room for ~80,000 typical events or a few thousand recording chunks between
/// durable redb commits.
pub(crate) const DEFAULT_SIZE: u64 = 32 << 20;

/// Set to `1` to go on when the journal a database needs is missing or not its own: the loss
/// is then recorded in the chain (by the gateway) or printed (by offline reads).
pub(crate) const ACCEPT_LOSS_ENV: &str = "WARDEN_ACCEPT_JOURNAL_LOSS";

const MAGIC: &[u8; 8] = b"WARDENJ2";
/// Frames start after one header block.
const HEADER: u64 = 4096;
/// Bytes before each frame's body: length, its complement, checksum.
const FRAME: usize = 12;
/// Frames start at page boundaries: a new frame never rewrites the page holding an
/// acknowledged one (a torn write on hardware without power-safe overwrite cannot damage it),
/// and a damaged frame's successors can be found.
const ALIGN: usize = 4096;
/// Largest journal file read: far above any the gateway writes; a bigger one is not a journal.
const MAX_FILE: u64 = 256 << 20;

const EVENT: u8 = 1;
const CHUNK: u8 = 2;

/// One durable change, as the writer made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// An event as stored: its chain hash and canonical bytes.
    Event {
        seq: u64,
        hash: Hash,
        bytes: Vec<u8>,
    },
    /// A recording chunk as stored, with the `seq` of the `recording` event that chains it.
    Chunk {
        seq: u64,
        session: String,
        chunk: u64,
        stored: Vec<u8>,
    },
}

impl Record {
    pub(crate) fn seq(&self) -> u64 {
        match self {
            Record::Event { seq, .. } | Record::Chunk { seq, .. } => *seq,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Event { seq, hash, bytes } => {
                out.push(EVENT);
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(hash);
                out.extend_from_slice(bytes);
            }
            Record::Chunk {
                seq,
                session,
                chunk,
                stored,
            } => {
                out.push(CHUNK);
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&chunk.to_le_bytes());
                // Session ids are the gateway's own, far below 4 GiB.
                out.extend_from_slice(&(session.len() as u32).to_le_bytes());
                out.extend_from_slice(session.as_bytes());
                out.extend_from_slice(stored);
            }
        }
    }

    fn decode(body: &[u8]) -> Option<Record> {
        let (&tag, rest) = body.split_first()?;
        let (seq, rest) = take_u64(rest)?;
        match tag {
            EVENT => {
                let (hash, bytes) = rest.split_first_chunk::<32>()?;
                Some(Record::Event {
                    seq,
                    hash: *hash,
                    bytes: bytes.to_vec(),
                })
            }
            CHUNK => {
                let (chunk, rest) = take_u64(rest)?;
                let (len, rest) = rest.split_first_chunk::<4>()?;
                let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
                let session = rest.get(..len)?;
                Some(Record::Chunk {
                    seq,
                    session: String::from_utf8(session.to_vec()).ok()?,
                    chunk,
                    stored: rest.get(len..)?.to_vec(),
                })
            }
            _ => None,
        }
    }
}

fn take_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (n, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*n), rest))
}

fn record_crc(generation: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&generation.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

fn header_bytes(generation: u64, previous: u64, size: u64) -> Vec<u8> {
    let mut header = vec![0u8; HEADER as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&generation.to_le_bytes());
    header[16..24].copy_from_slice(&previous.to_le_bytes());
    header[24..32].copy_from_slice(&size.to_le_bytes());
    let crc = crc32fast::hash(&header[..32]);
    header[32..36].copy_from_slice(&crc.to_le_bytes());
    header
}

/// A valid header's generation, previous generation and the file's size when it was made.
fn read_header(bytes: &[u8]) -> Option<(u64, u64, u64)> {
    let header = bytes.get(..36)?;
    let word = |at: usize| {
        let mut n = [0u8; 8];
        n.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(n)
    };
    let crc = u32::from_le_bytes([header[32], header[33], header[34], header[35]]);
    (&header[..8] == MAGIC && crc == crc32fast::hash(&header[..32]))
        .then(|| (word(8), word(16), word(24)))
}

/// A frame at `at`: its body and the offset after it (padded), if it holds for `generation`.
fn frame(bytes: &[u8], at: usize, generation: u64) -> Option<(&[u8], usize)> {
    let head = bytes.get(at..at + FRAME)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let not = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let crc = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if len == 0 || not != !len {
        return None;
    }
    let body = bytes.get(at + FRAME..at + FRAME + len as usize)?;
    (crc == record_crc(generation, body)).then(|| (body, padded(at + FRAME + len as usize)))
}

fn padded(at: usize) -> usize {
    at.div_ceil(ALIGN) * ALIGN
}

fn records_in(body: &[u8]) -> Option<Vec<Record>> {
    let mut records = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (len, after) = rest.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        records.push(Record::decode(after.get(..len)?)?);
        rest = &after[len..];
    }
    Some(records)
}

/// The records of `generation`'s frames, and what is wrong after them if anything. A frame
/// that does not hold is the end (a torn last write, or an older generation's data) unless a
/// valid frame of this generation follows it: then what was acknowledged is damaged, and that
/// is a problem, not a shorter journal. The records before the damage are returned either way.
fn frames(bytes: &[u8], generation: u64) -> (Vec<Record>, Option<String>) {
    let mut records = Vec::new();
    let mut at = HEADER as usize;
    while let Some((body, next)) = frame(bytes, at, generation) {
        let Some(found) = records_in(body) else {
            return (
                records,
                Some(format!(
                    "holds an unreadable record in the frame at byte {at}"
                )),
            );
        };
        records.extend(found);
        at = next;
    }
    // Every page after the end is checked for a frame of this generation. A forged file could
    // make each check hash up to its whole length: the work is bounded, and past the bound the
    // journal is treated as damaged.
    let mut budget = 4 * bytes.len() as u64 + (64 << 20);
    let mut later = padded(at + 1);
    while later + FRAME <= bytes.len() {
        let head = &bytes[later..later + FRAME];
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as u64;
        if budget < len {
            return (
                records,
                Some(format!(
                    "cannot be read past byte {at} (too many frame-like pages)"
                )),
            );
        }
        if frame(bytes, later, generation).is_some() {
            return (
                records,
                Some(format!(
                    "is damaged at byte {at}, with acknowledged events after it (at byte {later})"
                )),
            );
        }
        budget -= len.min(budget);
        later += ALIGN;
    }
    (records, None)
}

/// Why [`load`] refused a journal, with the records it could read before the problem (what an
/// operator who accepts the loss gets back).
#[derive(Debug)]
pub(crate) struct Refused {
    pub error: AuditError,
    pub usable: Vec<Record>,
}

/// What the database says about its journal: the generation it is writing, `None` after a
/// clean stop (it needs no journal).
pub(crate) type Expected = Option<u64>;

/// The records a journal's bytes hold for a database that `expected` this journal and whose
/// last durable event is `head`. A journal the database cannot vouch for is an error naming
/// what is wrong: acknowledged events may be lost, or foreign ones offered.
pub(crate) fn load(
    bytes: &[u8],
    path: &Path,
    expected: Expected,
    head: u64,
) -> Result<Vec<Record>, Refused> {
    let refuse = |problem: &str, usable: Vec<Record>| Refused {
        error: AuditError::Journal(format!(
            "{} {problem}: events acknowledged after the database's last durable commit (event \
             {head}) may be missing. Put back the journal written with this database; if it is \
             lost, set {ACCEPT_LOSS_ENV}=1 to go on (the gateway records the loss in the chain)",
            path.display()
        )),
        usable,
    };
    let header = read_header(bytes);
    if let Some((_, _, size)) = header
        && (bytes.len() as u64) < size
    {
        return Err(refuse(
            &format!(
                "was cut short ({} bytes of the {size} it was made with)",
                bytes.len()
            ),
            Vec::new(),
        ));
    }
    let generation = match (expected, header) {
        (None, None) => return Ok(Vec::new()),
        (None, Some((generation, _, _))) => {
            let (records, _) = frames(bytes, generation);
            if records.iter().any(|r| r.seq() > head) {
                return Err(Refused {
                    error: AuditError::Journal(format!(
                        "{} holds events this database never had (it was stopped cleanly at \
                         event {head}): it belongs to another database, or to a copy of this \
                         one. Move it aside",
                        path.display()
                    )),
                    usable: Vec::new(),
                });
            }
            return Ok(Vec::new());
        }
        (Some(_), None) => {
            return Err(refuse(
                "is missing, empty or unreadable while the database was not stopped cleanly",
                Vec::new(),
            ));
        }
        (Some(e), Some((generation, _, _))) if e == generation => e,
        // The header was rewritten for a next generation the database does not name yet (a
        // crash between the two steps of starting over): the current frames are still there,
        // unless the journal has moved on and written under the next one.
        (Some(e), Some((generation, previous, _)))
            if e == previous && frame(bytes, HEADER as usize, generation).is_none() =>
        {
            e
        }
        (Some(_), Some(_)) => {
            return Err(refuse(
                "is not the journal this database was writing (an older copy, or another \
                 database's)",
                Vec::new(),
            ));
        }
    };
    match frames(bytes, generation) {
        (records, None) => Ok(records),
        (usable, Some(problem)) => Err(refuse(&problem, usable)),
    }
}

/// A new random generation: no stale or foreign journal carries it by chance.
pub(crate) fn new_generation() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // No system randomness: the clock still differs from any earlier generation.
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
    }
    u64::from_le_bytes(bytes)
}

/// Whether `WARDEN_ACCEPT_JOURNAL_LOSS=1` was given.
pub(crate) fn accept_loss() -> bool {
    std::env::var_os(ACCEPT_LOSS_ENV).is_some_and(|v| v == "1")
}

/// Read the file at `path`: a regular file (not a link, device or pipe: those are refused
/// before they are opened), and no bigger than any journal is. `None` when there is none.
pub(crate) fn read_file(path: &Path) -> Result<Option<Vec<u8>>, AuditError> {
    let failed = |what: String| AuditError::Journal(format!("{}: {what}", path.display()));
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(e.to_string())),
        Ok(meta) if !meta.is_file() => return Err(failed("not a regular file".into())),
        Ok(meta) if meta.len() > MAX_FILE => {
            return Err(failed(format!("{} bytes: not a journal", meta.len())));
        }
        Ok(_) => {}
    }
    let file = File::open(path).map_err(|e| failed(e.to_string()))?;
    let meta = file.metadata().map_err(|e| failed(e.to_string()))?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return Err(failed("not a regular file of a journal's size".into()));
    }
    let mut bytes = Vec::new();
    file.take(meta.len())
        .read_to_end(&mut bytes)
        .map_err(|e| failed(e.to_string()))?;
    Ok(Some(bytes))
}

/// The journal file, owned by the writer thread.
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    /// The generation frames are written under.
    generation: u64,
    /// Where the next frame goes.
    offset: u64,
    size: u64,
    /// The batch being built: a frame's head, then its records.
    pending: Vec<u8>,
}

impl Journal {
    /// Open the journal at `path` for writing, creating it (0600, `size` bytes of zeros,
    /// synced) when missing. Call it after [`load`] accepted what the file held (`bytes`, as
    /// [`read_file`] read them), so a journal that is refused is left as it is. Frames are
    /// written only after [`Self::begin_reset`] and [`Self::finish_reset`].
    pub(crate) fn open(path: &Path, bytes: &[u8], size: u64) -> Result<Journal, AuditError> {
        let failed = |e: std::io::Error| AuditError::Journal(format!("{}: {e}", path.display()));
        super::store::private_file(path)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(failed)?;
        let size = size.max(HEADER * 2);
        if (bytes.len() as u64) < size {
            // Zeros written, not a hole or fallocate's unwritten extents: the appends then
            // overwrite allocated, written blocks and their fdatasync flushes data only.
            let zeros = vec![0u8; 1 << 20];
            let mut at = bytes.len() as u64;
            while at < size {
                let n = (size - at).min(zeros.len() as u64) as usize;
                file.write_all_at(&zeros[..n], at).map_err(failed)?;
                at += n as u64;
            }
            file.sync_all().map_err(failed)?;
            super::store::sync_dir(path)?;
        }
        Ok(Journal {
            file,
            path: path.to_path_buf(),
            generation: read_header(bytes).map_or(0, |(g, _, _)| g),
            offset: HEADER,
            size: size.max(bytes.len() as u64),
            pending: Vec::new(),
        })
    }

    /// The generation whose frames were read for the database (its `meta`), which a new header
    /// names as the previous one.
    pub(crate) fn adopt(&mut self, generation: u64) {
        self.generation = generation;
    }

    /// Queue a record for the next [`Self::sync`].
    pub(crate) fn push(&mut self, record: &Record) {
        if self.pending.is_empty() {
            self.pending.extend_from_slice(&[0; FRAME]);
        }
        let start = self.pending.len();
        self.pending.extend_from_slice(&[0; 4]);
        record.encode(&mut self.pending);
        let len = (self.pending.len() - start - 4) as u32;
        self.pending[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// Would what is queued fit in the space left?
    pub(crate) fn fits(&self) -> bool {
        self.offset + padded(self.pending.len()) as u64 <= self.size
    }

    /// Past half its space: time for a durable redb commit and a new generation.
    pub(crate) fn half_full(&self) -> bool {
        self.offset - HEADER > (self.size - HEADER) / 2
    }

    /// Drop what is queued (the caller made it durable another way).
    pub(crate) fn discard(&mut self) {
        self.pending.clear();
    }

    /// Write what is queued as one frame and `fdatasync` it: when this returns, it survives a
    /// crash.
    pub(crate) fn sync(&mut self) -> Result<(), AuditError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let len = (self.pending.len() - FRAME) as u32;
        let crc = record_crc(self.generation, &self.pending[FRAME..]);
        self.pending[..4].copy_from_slice(&len.to_le_bytes());
        self.pending[4..8].copy_from_slice(&(!len).to_le_bytes());
        self.pending[8..FRAME].copy_from_slice(&crc.to_le_bytes());
        self.pending.resize(padded(self.pending.len()), 0);
        let written = self
            .file
            .write_all_at(&self.pending, self.offset)
            .and_then(|()| self.file.sync_data());
        // Whether or not the write reached the disk, the space is not reused within this
        // generation: a failed write may have left part of it, which must not be read back as
        // the start of a later frame.
        self.offset += self.pending.len() as u64;
        self.pending.clear();
        written.map_err(|e| AuditError::Journal(format!("{}: {e}", self.path.display())))
    }

    /// Step one of starting over: the header names `next` and the current generation, synced.
    /// The current frames stay readable until the database names `next` (a durable commit);
    /// then [`Self::finish_reset`].
    pub(crate) fn begin_reset(&mut self, next: u64) -> Result<(), AuditError> {
        self.file
            .write_all_at(&header_bytes(next, self.generation, self.size), 0)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| AuditError::Journal(format!("{}: {e}", self.path.display())))
    }

    /// Step two: the database names `next`; frames are written under it from the start.
    pub(crate) fn finish_reset(&mut self, next: u64) {
        self.generation = next;
        self.pending.clear();
        self.offset = HEADER;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn event(seq: u64) -> Record {
        Record::Event {
            seq,
            hash: [seq as u8; 32],
            bytes: format!("{{\"seq\":{seq}}}").into_bytes(),
        }
    }

    fn chunk(seq: u64) -> Record {
        Record::Chunk {
            seq,
            session: "s-é".into(),
            chunk: 3,
            stored: vec![0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3],
        }
    }

    /// A journal under generation 7 (after a reset from nothing).
    fn fresh(path: &Path, size: u64) -> Journal {
        let mut journal = Journal::open(path, &[], size).unwrap();
        journal.begin_reset(7).unwrap();
        journal.finish_reset(7);
        journal
    }

    fn records(path: &Path, expected: Expected, head: u64) -> Result<Vec<Record>, AuditError> {
        let bytes = read_file(path).unwrap().unwrap_or_default();
        load(&bytes, path, expected, head).map_err(|refused| refused.error)
    }

    #[test]
    fn records_written_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb.journal");
        let mut journal = fresh(&path, 1 << 16);
        for record in [event(1), chunk(1), event(2)] {
            journal.push(&record);
        }
        journal.sync().unwrap();
        journal.push(&event(3));
        journal.sync().unwrap();
        drop(journal);
        assert_eq!(
            records(&path, Some(7), 0).unwrap(),
            vec![event(1), chunk(1), event(2), event(3)]
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 16);
    }

    #[test]
    fn a_torn_last_frame_is_the_end_but_damage_before_acknowledged_frames_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let mut journal = fresh(&path, 1 << 16);
        for seq in 1..=3 {
            journal.push(&event(seq));
            journal.sync().unwrap();
        }
        let clean = std::fs::read(&path).unwrap();
        let frame_at = |n: usize| {
            let mut at = HEADER as usize;
            for _ in 0..n {
                at = frame(&clean, at, 7).unwrap().1;
            }
            at
        };
        // A crash in the middle of the third frame's write: the first two are what was
        // acknowledged.
        let mut torn = clean.clone();
        torn[frame_at(2) + FRAME + 3] ^= 0xff;
        std::fs::write(&path, &torn).unwrap();
        assert_eq!(
            records(&path, Some(7), 0).unwrap(),
            vec![event(1), event(2)]
        );
        // The second frame damaged while the third holds: refused, not cut short.
        let mut damaged = clean.clone();
        damaged[frame_at(1) + FRAME + 3] ^= 0x01;
        std::fs::write(&path, &damaged).unwrap();
        let err = records(&path, Some(7), 0).unwrap_err().to_string();
        assert!(err.contains("acknowledged events after it"), "{err}");
        // Its length damaged: the same.
        let mut damaged = clean.clone();
        damaged[frame_at(1)] ^= 0x04;
        std::fs::write(&path, &damaged).unwrap();
        assert!(records(&path, Some(7), 0).is_err());
    }

    #[test]
    fn only_the_journal_the_database_names_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let mut journal = fresh(&path, 1 << 16);
        journal.push(&event(5));
        journal.sync().unwrap();
        // Another generation, missing, emptied, zeroed: refused while the database needs it.
        let err = records(&path, Some(8), 4).unwrap_err().to_string();
        assert!(
            err.contains("not the journal this database was writing"),
            "{err}"
        );
        let missing = dir.path().join("none");
        let err = records(&missing, Some(7), 4).unwrap_err().to_string();
        assert!(err.contains("is missing"), "{err}");
        std::fs::write(dir.path().join("zeros"), vec![0; 8192]).unwrap();
        assert!(records(&dir.path().join("zeros"), Some(7), 4).is_err());
        // After a clean stop none is needed, and one holding newer events is foreign.
        assert!(records(&missing, None, 4).unwrap().is_empty());
        let err = records(&path, None, 4).unwrap_err().to_string();
        assert!(err.contains("never had"), "{err}");
        assert!(records(&path, None, 5).unwrap().is_empty());
        // A device in its place is refused, not read forever.
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("dev")).unwrap();
        assert!(read_file(&dir.path().join("dev")).is_err());
    }

    #[test]
    fn a_journal_cut_short_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let mut journal = fresh(&path, 1 << 16);
        journal.push(&event(1));
        journal.sync().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for len in [36, 4096, 8192, (1 << 16) - 1] {
            std::fs::write(&path, &bytes[..len]).unwrap();
            let err = records(&path, Some(7), 0).unwrap_err().to_string();
            assert!(err.contains("cut short"), "{len}: {err}");
        }
    }

    #[test]
    fn starting_over_keeps_the_current_frames_until_the_database_names_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let mut journal = fresh(&path, 1 << 16);
        journal.push(&event(1));
        journal.sync().unwrap();
        journal.begin_reset(9).unwrap();
        // A crash here: the database still names 7, and its frames are read.
        assert_eq!(records(&path, Some(7), 0).unwrap(), vec![event(1)]);
        // The database named 9: nothing of 9 yet, and 7's frames are not 9's.
        assert!(records(&path, Some(9), 1).unwrap().is_empty());
        journal.finish_reset(9);
        journal.push(&event(2));
        journal.sync().unwrap();
        assert_eq!(records(&path, Some(9), 1).unwrap(), vec![event(2)]);
        // An older generation is not the database's any more.
        assert!(records(&path, Some(7), 1).is_err());
    }

    #[test]
    fn space_is_accounted() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = fresh(&dir.path().join("j"), 3 * HEADER);
        assert!(journal.fits() && !journal.half_full());
        journal.push(&Record::Chunk {
            seq: 1,
            session: "s".into(),
            chunk: 0,
            stored: vec![7; HEADER as usize + 100],
        });
        assert!(journal.fits());
        journal.sync().unwrap();
        assert!(journal.half_full());
        journal.push(&event(2));
        journal.push(&Record::Chunk {
            seq: 2,
            session: "s".into(),
            chunk: 1,
            stored: vec![7; HEADER as usize],
        });
        assert!(!journal.fits());
        journal.discard();
        journal.begin_reset(8).unwrap();
        journal.finish_reset(8);
        assert!(journal.fits() && !journal.half_full());
    }
}
