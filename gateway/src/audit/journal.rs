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
//! back the journal's records beyond it before anything else reads or writes. Each event must
//! continue the chain exactly (the next `seq`, the hash of the previous hash and its bytes), so
//! a journal that does not belong to the database is refused, never applied.
//!
//! Layout: bytes 0..4096 are the header, `WARDENJ1 ‖ generation (u64 LE) ‖ crc32`; records
//! follow, each `length (u32 LE) ‖ crc32(generation ‖ body) (u32 LE) ‖ body`. Reading stops at
//! the first record whose length or checksum does not hold: one torn by the crash (never
//! acknowledged), or the first of an older generation.

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

const MAGIC: &[u8; 8] = b"WARDENJ1";
/// Records start after one header block.
const HEADER: u64 = 4096;
/// Bytes before each record's body: length and checksum.
const FRAME: usize = 8;

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

fn header_bytes(generation: u64) -> Vec<u8> {
    let mut header = vec![0u8; HEADER as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&header[..16]);
    header[16..20].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The generation a valid header names.
fn read_generation(bytes: &[u8]) -> Option<u64> {
    let magic = bytes.get(..8)?;
    let generation = u64::from_le_bytes(*bytes.get(8..16)?.first_chunk::<8>()?);
    let crc = u32::from_le_bytes(*bytes.get(16..20)?.first_chunk::<4>()?);
    (magic == MAGIC && crc == crc32fast::hash(&bytes[..16])).then_some(generation)
}

/// The records of the current generation, and where the next one goes.
fn parse(bytes: &[u8]) -> (Option<u64>, Vec<Record>, u64) {
    let Some(generation) = read_generation(bytes) else {
        return (None, Vec::new(), HEADER);
    };
    let mut records = Vec::new();
    let mut at = HEADER as usize;
    while let Some(frame) = bytes.get(at..at + FRAME) {
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let Some(body) = bytes.get(at + FRAME..at + FRAME + len) else {
            break;
        };
        if len == 0 || crc != record_crc(generation, body) {
            break;
        }
        let Some(record) = Record::decode(body) else {
            break;
        };
        records.push(record);
        at += FRAME + len;
    }
    (Some(generation), records, at as u64)
}

/// The journal file, owned by the writer thread.
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    generation: u64,
    /// Where the next record goes.
    offset: u64,
    size: u64,
    /// Encoded records not yet written.
    pending: Vec<u8>,
}

impl Journal {
    /// Open the journal at `path`, creating it (0600, `size` bytes of zeros, synced) when
    /// missing, and read the records of its current generation for replay.
    pub(crate) fn open(path: &Path, size: u64) -> Result<(Journal, Vec<Record>), AuditError> {
        super::store::private_file(path)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (generation, records, offset) = parse(&bytes);
        let size = size.max(HEADER * 2);
        if (bytes.len() as u64) < size {
            // Zeros written, not a hole or fallocate's unwritten extents: the appends then
            // overwrite allocated, written blocks and their fdatasync flushes data only.
            let zeros = vec![0u8; 1 << 20];
            let mut at = bytes.len() as u64;
            while at < size {
                let n = (size - at).min(zeros.len() as u64) as usize;
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            file.sync_all()?;
            sync_dir(path)?;
        }
        let size = size.max(bytes.len() as u64);
        let mut journal = Journal {
            file,
            path: path.to_path_buf(),
            // A journal without a valid header starts at a generation no stale record can
            // carry by chance.
            generation: generation.unwrap_or_else(fresh_generation),
            offset,
            size,
            pending: Vec::new(),
        };
        if generation.is_none() {
            journal.write_header()?;
        }
        Ok((journal, records))
    }

    /// The records of the journal beside a database, without writing anything (offline reads
    /// of evidence). None when there is no journal.
    pub(crate) fn read(path: &Path) -> Result<Vec<Record>, AuditError> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(parse(&bytes).1),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Queue a record for the next [`Self::sync`].
    pub(crate) fn push(&mut self, record: &Record) {
        let start = self.pending.len();
        self.pending.extend_from_slice(&[0; FRAME]);
        record.encode(&mut self.pending);
        let body = &self.pending[start + FRAME..];
        let len = body.len() as u32;
        let crc = record_crc(self.generation, body);
        self.pending[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.pending[start + 4..start + FRAME].copy_from_slice(&crc.to_le_bytes());
    }

    /// Would what is queued fit in the space left?
    pub(crate) fn fits(&self) -> bool {
        self.offset + self.pending.len() as u64 <= self.size
    }

    /// Past half its space: time for a durable redb commit and a new generation.
    pub(crate) fn half_full(&self) -> bool {
        self.offset - HEADER > (self.size - HEADER) / 2
    }

    /// Drop what is queued (the caller made it durable another way).
    pub(crate) fn discard(&mut self) {
        self.pending.clear();
    }

    /// Write what is queued and `fdatasync` it: when this returns, it survives a crash.
    pub(crate) fn sync(&mut self) -> Result<(), AuditError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = self
            .file
            .write_all_at(&self.pending, self.offset)
            .and_then(|()| self.file.sync_data());
        // Whether or not the write reached the disk, the space is not reused within this
        // generation: a failed write may have left part of it, which must not be read back as
        // the start of a later record.
        self.offset += self.pending.len() as u64;
        self.pending.clear();
        Ok(written?)
    }

    /// Start over (everything journaled so far is durable in redb): a new generation, so the
    /// old records no longer read as current.
    pub(crate) fn reset(&mut self) -> Result<(), AuditError> {
        self.generation = self.generation.wrapping_add(1);
        self.pending.clear();
        self.offset = HEADER;
        self.write_header()
    }

    fn write_header(&mut self) -> Result<(), AuditError> {
        self.file.write_all_at(&header_bytes(self.generation), 0)?;
        self.file.sync_data()?;
        Ok(())
    }
}

fn fresh_generation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// A new file's directory entry must survive a crash too.
fn sync_dir(path: &Path) -> Result<(), AuditError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()?;
    Ok(())
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

    #[test]
    fn records_written_are_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb.journal");
        let (mut journal, found) = Journal::open(&path, 1 << 16).unwrap();
        assert!(found.is_empty());
        for record in [event(1), chunk(1), event(2)] {
            journal.push(&record);
        }
        journal.sync().unwrap();
        journal.push(&event(3));
        journal.sync().unwrap();
        drop(journal);
        assert_eq!(
            Journal::read(&path).unwrap(),
            vec![event(1), chunk(1), event(2), event(3)]
        );
        let (_, found) = Journal::open(&path, 1 << 16).unwrap();
        assert_eq!(found.len(), 4);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 16);
    }

    #[test]
    fn a_torn_tail_and_older_generations_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut journal, _) = Journal::open(&path, 1 << 16).unwrap();
        for seq in 1..=3 {
            journal.push(&event(seq));
        }
        journal.sync().unwrap();
        // A crash in the middle of the third record's write.
        let mut bytes = std::fs::read(&path).unwrap();
        let end = parse(&bytes).2 as usize;
        bytes[end - 3] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Journal::read(&path).unwrap(), vec![event(1), event(2)]);

        // After a reset the old records are still on disk, and not read.
        let (mut journal, _) = Journal::open(&path, 1 << 16).unwrap();
        journal.reset().unwrap();
        assert!(Journal::read(&path).unwrap().is_empty());
        journal.push(&event(9));
        journal.sync().unwrap();
        assert_eq!(Journal::read(&path).unwrap(), vec![event(9)]);
    }

    #[test]
    fn a_damaged_header_reads_as_empty_and_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut journal, _) = Journal::open(&path, 1 << 16).unwrap();
        journal.push(&event(1));
        journal.sync().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[9] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(Journal::read(&path).unwrap().is_empty());
        let (mut journal, found) = Journal::open(&path, 1 << 16).unwrap();
        assert!(found.is_empty());
        journal.push(&event(2));
        journal.sync().unwrap();
        assert_eq!(Journal::read(&path).unwrap(), vec![event(2)]);
    }

    #[test]
    fn space_is_accounted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(&dir.path().join("j"), 3 * HEADER).unwrap();
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
        journal.push(&event(2).clone());
        journal.push(&Record::Chunk {
            seq: 2,
            session: "s".into(),
            chunk: 1,
            stored: vec![7; HEADER as usize],
        });
        assert!(!journal.fits());
        journal.discard();
        journal.reset().unwrap();
        assert!(journal.fits() && !journal.half_full());
        assert!(Journal::read(journal.path()).unwrap().is_empty());
    }
}
