//! The SFTP subsystem (which `sftp` and, since OpenSSH 9, `scp` use): client packets are read
//! just far enough to name each file operation and its paths (SFTP v3, draft-ietf-secsh-filexfer-02
//! plus OpenSSH's extensions). Operations that name a path are commands for the policy chain;
//! a refused one is answered with an SSH_FXP_STATUS "permission denied" carrying the reason, and
//! never reaches the host. A change of attributes through an open handle (FSETSTAT: chmod,
//! chown, utime, truncate) is checked as a `setstat` of the path the handle was opened on,
//! which [`Handles`] learns from the host's replies. Reads on a handle whose open was answered
//! `mask` are masked (see [`Handles::read`]); other reads and writes on handles already opened,
//! and the host's other replies, pass through untouched.

use crate::policy::{Decision, FileOp};
use std::sync::Arc;

const INIT: u8 = 1;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const READ: u8 = 5;
const WRITE: u8 = 6;
const FSTAT: u8 = 8;
const LSTAT: u8 = 7;
const SETSTAT: u8 = 9;
const FSETSTAT: u8 = 10;
const OPENDIR: u8 = 11;
const READDIR: u8 = 12;
const REMOVE: u8 = 13;
const MKDIR: u8 = 14;
const RMDIR: u8 = 15;
const REALPATH: u8 = 16;
const STAT: u8 = 17;
const RENAME: u8 = 18;
const READLINK: u8 = 19;
const SYMLINK: u8 = 20;
const EXTENDED: u8 = 200;
const STATUS: u8 = 101;
const VERSION: u8 = 2;
const HANDLE: u8 = 102;
const DATA: u8 = 103;
const NAME: u8 = 104;
const EXTENDED_REPLY: u8 = 201;

/// SSH_FX_EOF.
pub const EOF: u32 = 1;
/// SSH_FX_FAILURE.
pub const FAILURE: u32 = 4;

/// SSH_FX_PERMISSION_DENIED.
pub const PERMISSION_DENIED: u32 = 3;
/// SSH_FX_OP_UNSUPPORTED.
pub const OP_UNSUPPORTED: u32 = 8;

/// SSH_FXF_* open flags that may change the file.
const WRITE_FLAGS: u32 = 0x02 | 0x04 | 0x08 | 0x10;

/// The largest packet accepted from a client (OpenSSH's sftp-server allows 256 KiB).
pub const MAX_PACKET: usize = 1 << 20;

/// One client packet, classified.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet {
    /// No path in it (INIT, READ, WRITE, CLOSE, FSTAT, READDIR, ...): forward.
    Forward(Vec<u8>),
    /// A file operation to check before forwarding.
    Check { id: u32, op: FileOp, bytes: Vec<u8> },
    /// FSETSTAT: attributes changed through an open handle, checked as a `setstat` of the
    /// path the handle was opened on.
    CheckHandle {
        id: u32,
        handle: Vec<u8>,
        bytes: Vec<u8>,
    },
    /// An extension the gateway does not know how to check: refused without asking.
    Unsupported { id: u32, name: String },
    /// `copy-data` (a host-side copy from a read handle): refused when that handle's reads
    /// are masked, since the copy could then be read back in pieces no mask would see.
    CopyFrom {
        id: u32,
        handle: Vec<u8>,
        bytes: Vec<u8>,
    },
    /// CLOSE: the handle is forgotten (the host may hand its number out again for the next
    /// open, whose answer may come after a read of it), then forwarded.
    Close {
        id: u32,
        handle: Vec<u8>,
        bytes: Vec<u8>,
    },
    /// `limits@openssh.com`: forwarded; its answer's read limit is lowered to what a masked
    /// read can return whole.
    Limits { id: u32, bytes: Vec<u8> },
    /// READDIR: forwarded; the names it is answered with are masked when the directory's
    /// open was answered `mask`.
    ReadDir {
        id: u32,
        handle: Vec<u8>,
        bytes: Vec<u8>,
    },
    /// READ: forwarded, or widened and masked when its handle's open was answered `mask`.
    Read {
        id: u32,
        handle: Vec<u8>,
        offset: u64,
        len: u32,
        bytes: Vec<u8>,
    },
}

impl Packet {
    /// The request id (none for INIT).
    pub fn id(&self) -> Option<u32> {
        match self {
            Packet::Forward(bytes) => match bytes.get(4..9) {
                Some([kind, a, b, c, d]) if *kind != INIT => {
                    Some(u32::from_be_bytes([*a, *b, *c, *d]))
                }
                _ => None,
            },
            Packet::Check { id, .. }
            | Packet::CheckHandle { id, .. }
            | Packet::Unsupported { id, .. }
            | Packet::CopyFrom { id, .. }
            | Packet::Close { id, .. }
            | Packet::Limits { id, .. }
            | Packet::ReadDir { id, .. }
            | Packet::Read { id, .. } => Some(*id),
        }
    }
}

/// Reassembles client packets from channel data.
#[derive(Default)]
pub struct Reader {
    buf: Vec<u8>,
}

impl Reader {
    /// Add channel data; returns the complete packets. `Err` ends the subsystem (a malformed
    /// or oversized packet).
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Packet>, String> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        // Consumed packets are dropped from the buffer once, at the end: draining each one
        // would move the rest of the chunk per packet, quadratic in a chunk of tiny packets.
        let mut at = 0;
        while let Some(&[a, b, c, d]) = self.buf.get(at..at + 4) {
            let len = u32::from_be_bytes([a, b, c, d]) as usize;
            if len == 0 || len > MAX_PACKET {
                return Err(format!("sftp packet of {len} bytes refused"));
            }
            let Some(bytes) = self.buf.get(at..at + 4 + len) else {
                break;
            };
            out.push(classify(bytes.to_vec())?);
            at += 4 + len;
        }
        self.buf.drain(..at);
        Ok(out)
    }
}

fn classify(bytes: Vec<u8>) -> Result<Packet, String> {
    let mut r = Fields(&bytes[4..]);
    let kind = r.u8()?;
    if kind == INIT {
        return Ok(Packet::Forward(bytes));
    }
    let id = r.u32()?;
    let op = |op: &str, path: String, to: Option<String>| FileOp {
        op: op.to_string(),
        path,
        to,
    };
    let op = match kind {
        WRITE | FSTAT => return Ok(Packet::Forward(bytes)),
        READDIR => {
            let handle = r.bytes()?.to_vec();
            return Ok(Packet::ReadDir { id, handle, bytes });
        }
        CLOSE => {
            let handle = r.bytes()?.to_vec();
            return Ok(Packet::Close { id, handle, bytes });
        }
        READ => {
            let handle = r.bytes()?.to_vec();
            let offset = r.u64()?;
            let len = r.u32()?;
            return Ok(Packet::Read {
                id,
                handle,
                offset,
                len,
                bytes,
            });
        }
        OPEN => {
            let path = r.string()?;
            let flags = r.u32()?;
            let name = if flags & WRITE_FLAGS != 0 {
                "open-write"
            } else {
                "open-read"
            };
            op(name, path, None)
        }
        OPENDIR => op("list", r.string()?, None),
        REMOVE => op("remove", r.string()?, None),
        MKDIR => op("mkdir", r.string()?, None),
        RMDIR => op("rmdir", r.string()?, None),
        SETSTAT => op("setstat", r.string()?, None),
        FSETSTAT => {
            let handle = r.bytes()?.to_vec();
            return Ok(Packet::CheckHandle { id, handle, bytes });
        }
        STAT | LSTAT => op("stat", r.string()?, None),
        REALPATH => op("realpath", r.string()?, None),
        READLINK => op("readlink", r.string()?, None),
        RENAME => {
            let from = r.string()?;
            op("rename", from, Some(r.string()?))
        }
        SYMLINK => {
            // OpenSSH sends (target, link) although the draft says (link, target): the path
            // checked is the link to be created, `to` what it points at.
            let target = r.string()?;
            let link = r.string()?;
            op("symlink", link, Some(target))
        }
        EXTENDED => {
            let name = r.string()?;
            match name.as_str() {
                "posix-rename@openssh.com" => {
                    let from = r.string()?;
                    op("rename", from, Some(r.string()?))
                }
                "hardlink@openssh.com" => {
                    let from = r.string()?;
                    let to = r.string()?;
                    op("link", to, Some(from))
                }
                "statvfs@openssh.com" => op("stat", r.string()?, None),
                "lsetstat@openssh.com" => op("setstat", r.string()?, None),
                "expand-path@openssh.com" => op("realpath", r.string()?, None),
                "copy-data" => {
                    let handle = r.bytes()?.to_vec();
                    return Ok(Packet::CopyFrom { id, handle, bytes });
                }
                // On handles already checked at open, or no path at all (the host's account
                // names for uids and gids, which `sftp ls -l` asks for).
                "limits@openssh.com" => return Ok(Packet::Limits { id, bytes }),
                "fsync@openssh.com" | "fstatvfs@openssh.com" | "users-groups-by-id@openssh.com" => {
                    return Ok(Packet::Forward(bytes));
                }
                _ => return Ok(Packet::Unsupported { id, name }),
            }
        }
        // A type SFTP v3 does not define: the host would not answer it (its id would wait
        // for ever), so the gateway does.
        _ => {
            return Ok(Packet::Unsupported {
                id,
                name: format!("packet type {kind}"),
            });
        }
    };
    Ok(Packet::Check { id, op, bytes })
}

/// Whether the answers to file operation `op` can be masked when a policy says `mask`: what
/// is read through an opened file, and the names a listing (`list`), `realpath` or
/// `readlink` is answered with. (STAT answers attributes only; the rest, a status.)
pub fn answer_is_masked(op: &str) -> bool {
    matches!(
        op,
        "open-read" | "open-write" | "list" | "realpath" | "readlink"
    )
}

/// An SSH_FXP_STATUS reply.
pub fn status(id: u32, code: u32, message: &str) -> Vec<u8> {
    let mut body = vec![STATUS];
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&code.to_be_bytes());
    for s in [message.as_bytes(), b"en"] {
        body.extend_from_slice(&(s.len() as u32).to_be_bytes());
        body.extend_from_slice(s);
    }
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// A cursor over a packet's fields.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated sftp packet".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, String> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }
}

/// Most opens awaiting the host's answer, handles remembered and masked reads in flight: a
/// client cannot grow them without bound. A handle not remembered cannot be checked, so
/// FSETSTAT on it is refused.
const MAX_HANDLES: usize = 4096;

/// Context read on each side of a masked read: at least what decides whether a digit belongs to
/// a card number ([`warden_pan::MAX_CONTEXT`]: 26 digits with the widest gaps of separators and
/// escape sequences between them), so a card number that straddles the edge of what a read
/// returns is seen whole, however small the read.
pub const OVERLAP: usize = 16 * 1024;
const _: () = assert!(OVERLAP >= warden_pan::MAX_CONTEXT);

/// The most a masked read returns: with its context, exactly what OpenSSH's sftp-server reads
/// at most (255 KiB), so a short answer from the host means the end of the file (draft-02 6.4).
/// The gateway tells clients that ask (`limits@openssh.com`) to read no more than this: a
/// client given short reads in the middle of a file asks again out of order, and OpenSSH's scp
/// then truncates the file it writes at the first gap.
const MAX_MASKED_READ: usize = 261_120 - 2 * OVERLAP;

/// How a handle's reads are masked: the open's audit sequence number and decision.
pub type Mask = Arc<(u64, Decision)>;

/// A masked read sent to the host as a wider one: `lead` bytes of context before the client's
/// offset, then the `want` bytes it returns, then [`OVERLAP`] more; `asked` in all.
#[derive(Clone)]
pub struct MaskedRead {
    pub lead: usize,
    pub want: usize,
    pub asked: usize,
    pub mask: Mask,
}

/// What to do with a client's READ.
pub enum ReadPlan {
    Forward,
    /// Send this (wider) READ instead.
    Widened(Vec<u8>),
    /// Answer it with a failure.
    Refuse(&'static str),
}

/// The host's channel data, as it goes on to the client.
pub enum HostPiece {
    /// Bytes passed on as they came.
    Pass(Vec<u8>),
    /// The data the host returned for a masked read (the whole window): mask it, then answer
    /// with [`read_reply`].
    Read {
        id: u32,
        read: MaskedRead,
        window: Vec<u8>,
    },
    /// A NAME reply (whole) to a request whose names are masked: mask its names with
    /// [`names_of`] and [`with_names`].
    Names {
        id: u32,
        mask: Mask,
        packet: Vec<u8>,
    },
    /// A reply to be masked that cannot be (too large to hold): answer a failure.
    Fail { id: u32 },
}

/// Which path each open handle of the session is on, and whether its reads are masked: the
/// relay notes each open it forwards (request id, path, mask), and the host's HANDLE reply to
/// that id names the handle. The host's packets are read, and changed only where they answer a
/// masked read.
#[derive(Default)]
pub struct Handles {
    /// Request id → path and mask; `None` when the client reused an id still waiting for its
    /// answer (which open the answer is for is then unknown).
    pending: std::collections::HashMap<u32, Option<(String, Option<Mask>)>>,
    open: std::collections::HashMap<Vec<u8>, (String, Option<Mask>)>,
    /// Masked reads waiting for the host's answer, by request id.
    reads: std::collections::HashMap<u32, MaskedRead>,
    /// Requests whose NAME answer is masked (READDIR of a masked directory, REALPATH and
    /// READLINK answered `mask`), by request id.
    names: std::collections::HashMap<u32, Mask>,
    /// Every request id forwarded and not answered yet: a request reusing one is refused, so
    /// no answer can be taken for another's (an open's handle, a masked read's data).
    inflight: std::collections::HashSet<u32>,
    /// The mask of the last open answered `mask`: a handle whose open cannot be attributed is
    /// read under it (fail closed).
    last_mask: Option<Mask>,
    /// `limits@openssh.com` requests waiting for their answer.
    limits: std::collections::HashSet<u32>,
    /// The start of a host packet not yet complete: its header, a whole HANDLE reply, or the
    /// whole answer to a masked read.
    head: Vec<u8>,
    /// Bytes of the current host packet still to pass (a packet that is not read), or to drop.
    skip: usize,
    dropping: bool,
}

impl Handles {
    /// An open (or opendir) of `path` with request `id` was forwarded; `mask`: its reads are
    /// masked.
    pub fn opening(&mut self, id: u32, path: &str, mask: Option<Mask>) {
        if mask.is_some() {
            self.last_mask.clone_from(&mask);
        }
        if let Some(known) = self.pending.get_mut(&id) {
            *known = None;
        } else if self.pending.len() < MAX_HANDLES {
            self.pending.insert(id, Some((path.to_string(), mask)));
        }
    }

    /// The path `handle` was opened on, if the host gave it for an open the relay forwarded.
    pub fn path(&self, handle: &[u8]) -> Option<&str> {
        self.open.get(handle).map(|(p, _)| p.as_str())
    }

    /// Why a request with this id cannot go to the host now: its id is still waiting for an
    /// answer (two answers could not be told apart), or too many requests are.
    pub fn refuse_id(&self, id: u32) -> Option<&'static str> {
        if self.inflight.contains(&id)
            || self.reads.contains_key(&id)
            || self.names.contains_key(&id)
        {
            Some("warden: a request with this id is still waiting for its answer")
        } else if self.inflight.len() >= MAX_HANDLES {
            Some("warden: too many requests waiting for their answers")
        } else {
            None
        }
    }

    /// A request with this id goes to the host.
    pub fn sent(&mut self, id: u32) {
        self.inflight.insert(id);
    }

    /// The names request `id` is answered with are masked under `mask` (a REALPATH or
    /// READLINK answered `mask`).
    pub fn naming(&mut self, id: u32, mask: Mask) {
        self.names.insert(id, mask);
    }

    /// A READDIR of `handle`: its names are masked as the directory's open says (or, for a
    /// handle whose open is unknown, under the last mask any open got).
    pub fn read_dir(&mut self, id: u32, handle: &[u8]) {
        if let Some(mask) = self.mask_of(handle) {
            self.names.insert(id, mask);
        }
    }

    /// A `limits@openssh.com` request with this id goes to the host.
    pub fn asking_limits(&mut self, id: u32) {
        self.limits.insert(id);
    }

    /// The client closes `handle`: forgotten, so until the host hands the number out again
    /// (and says for which open), a read of it is masked as a handle of unknown origin.
    pub fn closing(&mut self, handle: &[u8]) {
        self.open.remove(handle);
    }

    /// How reads through `handle` are masked: its open's mask, or for a handle whose open is
    /// unknown, the last mask any open got (fail closed).
    pub fn mask_of(&self, handle: &[u8]) -> Option<Mask> {
        match self.open.get(handle) {
            Some((_, mask)) => mask.clone(),
            None => self.last_mask.clone(),
        }
    }

    /// A client READ of `len` bytes at `offset` on `handle`. On a masked handle it is widened
    /// by [`OVERLAP`] on each side (less before the start of the file) and its answer masked
    /// as a whole, so what it returns was masked with the text around it.
    pub fn read(&mut self, id: u32, handle: &[u8], offset: u64, len: u32) -> ReadPlan {
        let Some(mask) = self.mask_of(handle) else {
            return ReadPlan::Forward;
        };
        if self.reads.len() >= MAX_HANDLES {
            return ReadPlan::Refuse("warden: too many masked reads in flight");
        }
        let lead = offset.min(OVERLAP as u64) as usize;
        let want = (len as usize).min(MAX_MASKED_READ);
        let asked = lead + want + OVERLAP;
        let mut body = vec![READ];
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&(handle.len() as u32).to_be_bytes());
        body.extend_from_slice(handle);
        body.extend_from_slice(&(offset - lead as u64).to_be_bytes());
        body.extend_from_slice(&(asked as u32).to_be_bytes());
        let mut packet = (body.len() as u32).to_be_bytes().to_vec();
        packet.extend_from_slice(&body);
        self.reads.insert(
            id,
            MaskedRead {
                lead,
                want,
                asked,
                mask,
            },
        );
        ReadPlan::Widened(packet)
    }

    /// Bytes the host sent on the channel: read for HANDLE replies and the answers to masked
    /// reads, and returned as what goes on to the client.
    pub fn host_data(&mut self, mut data: &[u8]) -> Vec<HostPiece> {
        let mut out = Vec::new();
        let mut pass = Vec::new();
        loop {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                if !self.dropping {
                    pass.extend_from_slice(&data[..n]);
                }
                self.skip -= n;
                data = &data[n..];
                if self.skip > 0 {
                    break;
                }
                self.dropping = false;
            }
            let want = self.wanted();
            if self.head.len() < want {
                if data.is_empty() {
                    break;
                }
                let n = (want - self.head.len()).min(data.len());
                self.head.extend_from_slice(&data[..n]);
                data = &data[n..];
                continue;
            }
            let total = 4 + self.packet_len();
            if self.head.get(4) != Some(&VERSION)
                && let Some(id) = self.head_id()
            {
                self.inflight.remove(&id);
            }
            if let Some((id, answer)) = self.masked_answer() {
                if !pass.is_empty() {
                    out.push(HostPiece::Pass(std::mem::take(&mut pass)));
                }
                let whole = self.head.len() == total;
                let piece = match answer {
                    Answer::Read(read) => whole
                        .then(|| Fields(&self.head[9..]).bytes().ok().map(<[u8]>::to_vec))
                        .flatten()
                        .map(|window| HostPiece::Read { id, read, window }),
                    Answer::Names(mask) => whole.then(|| HostPiece::Names {
                        id,
                        mask,
                        packet: self.head.clone(),
                    }),
                };
                match piece {
                    Some(piece) => out.push(piece),
                    None => {
                        out.push(HostPiece::Fail { id });
                        self.dropping = true;
                    }
                }
            } else {
                self.reply();
                self.lower_read_limit();
                pass.extend_from_slice(&self.head);
            }
            self.skip = total.saturating_sub(self.head.len());
            self.dropping &= self.skip > 0;
            self.head.clear();
        }
        if !pass.is_empty() {
            out.push(HostPiece::Pass(pass));
        }
        out
    }

    /// How much of the current packet is read: its length, then its type and request id,
    /// and all of a HANDLE reply (a handle is at most 256 bytes) or of the answer to a masked
    /// read.
    fn wanted(&self) -> usize {
        if self.head.len() < 4 {
            return 4;
        }
        let total = 4 + self.packet_len();
        match self.head.get(4) {
            Some(&HANDLE) if total <= 4 + 1024 => total,
            Some(&EXTENDED_REPLY)
                if total <= 4 + 64
                    && self.head_id().is_some_and(|id| self.limits.contains(&id)) =>
            {
                total
            }
            Some(&DATA)
                if total <= 4 + 13 + MAX_MASKED_READ + 2 * OVERLAP
                    && self
                        .head_id()
                        .is_some_and(|id| self.reads.contains_key(&id)) =>
            {
                total
            }
            Some(&NAME)
                if total <= 4 + MAX_PACKET
                    && self
                        .head_id()
                        .is_some_and(|id| self.names.contains_key(&id)) =>
            {
                total
            }
            _ => total.min(9),
        }
    }

    fn packet_len(&self) -> usize {
        u32::from_be_bytes([self.head[0], self.head[1], self.head[2], self.head[3]]) as usize
    }

    fn head_id(&self) -> Option<u32> {
        let b = self.head.get(5..9)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The current packet answers a masked read or a request whose names are masked: its id
    /// and what it answers (no longer waiting). Only what such a request is answered with ends
    /// the wait: DATA or NAME (masked) or STATUS (passes).
    fn masked_answer(&mut self) -> Option<(u32, Answer)> {
        let kind = *self.head.get(4)?;
        if kind != DATA && kind != NAME && kind != STATUS {
            return None;
        }
        let id = self.head_id()?;
        if kind != NAME
            && let Some(read) = self.reads.remove(&id)
        {
            return (kind == DATA).then_some((id, Answer::Read(read)));
        }
        if kind != DATA
            && let Some(mask) = self.names.remove(&id)
        {
            return (kind == NAME).then_some((id, Answer::Names(mask)));
        }
        None
    }

    /// The answer to `limits@openssh.com` (max packet, read, write lengths, open handles, each
    /// a u64): its read length lowered to [`MAX_MASKED_READ`] (0 means no limit).
    fn lower_read_limit(&mut self) {
        if self.head.get(4) != Some(&EXTENDED_REPLY) {
            return;
        }
        let Some(id) = self.head_id() else { return };
        if !self.limits.remove(&id) {
            return;
        }
        if let Some(field) = self.head.get_mut(17..25) {
            let mut b = [0u8; 8];
            b.copy_from_slice(field);
            let read = u64::from_be_bytes(b);
            if read == 0 || read > MAX_MASKED_READ as u64 {
                field.copy_from_slice(&(MAX_MASKED_READ as u64).to_be_bytes());
            }
        }
    }

    /// A complete header (or a complete HANDLE reply) in `head`.
    fn reply(&mut self) {
        let mut r = Fields(&self.head[4..]);
        let (Ok(kind), Ok(id)) = (r.u8(), r.u32()) else {
            return;
        };
        // Not pending (an id reused after its answer) or reused before it: no path.
        let path = self.pending.remove(&id).flatten();
        if kind != HANDLE {
            return;
        }
        let Ok(handle) = r.bytes() else {
            // A handle too long to read (the spec caps them at 256 bytes): which one it is
            // cannot be known, so none is trusted any more.
            self.open.clear();
            return;
        };
        match path {
            // Handles are reused after a close: the latest open wins.
            Some(path) if self.open.len() < MAX_HANDLES || self.open.contains_key(handle) => {
                self.open.insert(handle.to_vec(), path);
            }
            // Which open this handle is for is unknown: it is forgotten, so FSETSTAT on it
            // is refused (and its reads, never seen opened, are not masked: see `opening`).
            _ => {
                self.open.remove(handle);
            }
        }
    }
}

/// What a reply held for masking answers.
enum Answer {
    Read(MaskedRead),
    Names(Mask),
}

/// Attribute flags of SFTP v3 (draft-02 5).
const ATTR_SIZE: u32 = 0x1;
const ATTR_UIDGID: u32 = 0x2;
const ATTR_PERMISSIONS: u32 = 0x4;
const ATTR_ACMODTIME: u32 = 0x8;
const ATTR_EXTENDED: u32 = 0x8000_0000;

/// One entry of a NAME reply: its file name, long name (`ls -l` line) and attributes as sent.
struct NameEntry<'a> {
    filename: &'a [u8],
    longname: &'a [u8],
    attrs: &'a [u8],
}

/// The entries of a whole NAME `packet`; `Err` for a packet that does not read as one to its
/// last byte (then it cannot be masked, and is refused).
fn name_entries(packet: &[u8]) -> Result<(u32, Vec<NameEntry<'_>>), String> {
    let mut r = Fields(packet.get(4..).ok_or("short NAME reply")?);
    if r.u8()? != NAME {
        return Err("not a NAME reply".into());
    }
    let id = r.u32()?;
    let count = r.u32()?;
    let mut entries = Vec::new();
    for _ in 0..count {
        let filename = r.bytes()?;
        let longname = r.bytes()?;
        let start = r.0;
        let flags = r.u32()?;
        if flags & !(ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME | ATTR_EXTENDED)
            != 0
        {
            return Err(format!(
                "attribute flags {flags:#x} SFTP v3 does not define"
            ));
        }
        // size u64; uid, gid u32; permissions u32; atime, mtime u32.
        let fixed: usize = [
            (ATTR_SIZE, 8),
            (ATTR_UIDGID, 8),
            (ATTR_PERMISSIONS, 4),
            (ATTR_ACMODTIME, 8),
        ]
        .iter()
        .filter(|(flag, _)| flags & flag != 0)
        .map(|(_, bytes)| bytes)
        .sum();
        r.take(fixed)?;
        if flags & ATTR_EXTENDED != 0 {
            for _ in 0..r.u32()? {
                r.bytes()?;
                r.bytes()?;
            }
        }
        let attrs = &start[..start.len() - r.0.len()];
        entries.push(NameEntry {
            filename,
            longname,
            attrs,
        });
    }
    if !r.0.is_empty() {
        return Err("bytes after the last name".into());
    }
    Ok((id, entries))
}

/// The names of a whole NAME `packet`, each entry's file name then its long name.
pub fn names_of(packet: &[u8]) -> Result<Vec<&[u8]>, String> {
    let (_, entries) = name_entries(packet)?;
    Ok(entries
        .iter()
        .flat_map(|e| [e.filename, e.longname])
        .collect())
}

/// The NAME `packet` with its names replaced by `names` (as [`names_of`] lists them).
pub fn with_names(packet: &[u8], names: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let (id, entries) = name_entries(packet)?;
    if names.len() != 2 * entries.len() {
        return Err("a name for each name".into());
    }
    let mut body = vec![NAME];
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (entry, pair) in entries.iter().zip(names.chunks(2)) {
        for name in pair {
            body.extend_from_slice(&(name.len() as u32).to_be_bytes());
            body.extend_from_slice(name);
        }
        body.extend_from_slice(entry.attrs);
    }
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    Ok(out)
}

/// The client's answer to a masked read, from the `window` the host returned for it and its
/// `masked` form (as many bytes): the part the client asked for, or EOF when the file ends
/// before it. A window shorter than asked ended at the end of the file, so all of it was masked
/// in full context — but a file still being written may go on: digits at its end that could
/// begin a card number, and that no mask touched, go out starred (`star`), never as a clear
/// first half.
pub fn read_reply(
    id: u32,
    read: &MaskedRead,
    window: &[u8],
    masked: &[u8],
    star: impl Fn(&[u8]) -> Vec<u8>,
) -> Vec<u8> {
    let end = (read.lead + read.want).min(masked.len());
    if read.lead >= end {
        return status(id, EOF, "End of file");
    }
    let mut data = masked[read.lead..end].to_vec();
    if window.len() < read.asked && window.len() == masked.len() {
        let safe = super::readings::safe_cut(window).max(read.lead);
        if safe < end && masked[safe..end] == window[safe..end] {
            let from = safe - read.lead;
            let starred = star(&data[from..]);
            data.truncate(from);
            data.extend_from_slice(&starred);
        }
    }
    let data = &data[..];
    let mut body = vec![DATA];
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&(data.len() as u32).to_be_bytes());
    body.extend_from_slice(data);
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::super::output::star_digits;
    use super::*;

    fn packet(kind: u8, id: u32, fields: &[&[u8]], tail: &[u8]) -> Vec<u8> {
        let mut body = vec![kind];
        body.extend_from_slice(&id.to_be_bytes());
        for f in fields {
            body.extend_from_slice(&(f.len() as u32).to_be_bytes());
            body.extend_from_slice(f);
        }
        body.extend_from_slice(tail);
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    fn op(o: &str, path: &str, to: Option<&str>) -> FileOp {
        FileOp {
            op: o.into(),
            path: path.into(),
            to: to.map(Into::into),
        }
    }

    #[test]
    fn classifies_operations_across_chunk_boundaries() {
        let open_r = packet(OPEN, 1, &[b"/etc/passwd"], &[0, 0, 0, 1, 0, 0, 0, 0]);
        let open_w = packet(OPEN, 2, &[b"up.bin"], &[0, 0, 0, 0x1a, 0, 0, 0, 0]);
        let rename = packet(RENAME, 3, &[b"a", b"b"], &[]);
        let read = packet(5, 4, &[b"handle"], &[0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0x80, 0]);
        let ext = packet(EXTENDED, 5, &[b"posix-rename@openssh.com", b"x", b"y"], &[]);
        let odd = packet(EXTENDED, 6, &[b"frobnicate@example.com"], &[]);
        let all: Vec<u8> = [&open_r[..], &open_w, &rename, &read, &ext, &odd].concat();
        let mut r = Reader::default();
        let mut got = Vec::new();
        for chunk in all.chunks(7) {
            got.extend(r.push(chunk).unwrap_or_default());
        }
        assert_eq!(
            got,
            vec![
                Packet::Check {
                    id: 1,
                    op: op("open-read", "/etc/passwd", None),
                    bytes: open_r
                },
                Packet::Check {
                    id: 2,
                    op: op("open-write", "up.bin", None),
                    bytes: open_w
                },
                Packet::Check {
                    id: 3,
                    op: op("rename", "a", Some("b")),
                    bytes: rename
                },
                Packet::Read {
                    id: 4,
                    handle: b"handle".to_vec(),
                    offset: 9,
                    len: 0x8000,
                    bytes: read
                },
                Packet::Check {
                    id: 5,
                    op: op("rename", "x", Some("y")),
                    bytes: ext
                },
                Packet::Unsupported {
                    id: 6,
                    name: "frobnicate@example.com".into()
                },
            ]
        );
    }

    #[test]
    fn fsetstat_is_checked_as_a_setstat_of_the_handles_path() {
        let mut h = Handles::default();
        h.opening(7, "/etc/passwd", None);
        h.opening(8, "/nope", None);
        // The host's replies, cut anywhere: a DATA reply, the HANDLE for 7, a STATUS for 8.
        let data = packet(103, 3, &[&[0x55; 3000]], &[]);
        let handle = packet(HANDLE, 7, &[b"\0\0\0\x01"], &[]);
        let failed = packet(STATUS, 8, &[], &[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
        let all = [&data[..], &handle, &failed].concat();
        for chunk in all.chunks(5) {
            let _ = h.host_data(chunk);
        }
        assert_eq!(h.path(b"\0\0\0\x01"), Some("/etc/passwd"));
        assert!(h.pending.is_empty());
        assert_eq!(h.path(b"other"), None);
        // An id reused before its answer: the handle it gets is no path's.
        h.opening(11, "/srv/protected", None);
        h.opening(11, "/tmp/harmless", None);
        let _ = h.host_data(&packet(HANDLE, 11, &[b"\0\0\0\x02"], &[]));
        assert_eq!(h.path(b"\0\0\0\x02"), None);
        let fsetstat = packet(
            FSETSTAT,
            9,
            &[b"\0\0\0\x01"],
            &[0, 0, 0, 4, 0, 0, 0o7, 0o377],
        );
        let mut r = Reader::default();
        assert_eq!(
            r.push(&fsetstat).unwrap_or_default(),
            vec![Packet::CheckHandle {
                id: 9,
                handle: b"\0\0\0\x01".to_vec(),
                bytes: fsetstat.clone()
            }]
        );
    }

    fn mask() -> Mask {
        Arc::new((
            1,
            Decision {
                verdict: crate::policy::Verdict::Mask,
                decided_by: None,
                policies: Vec::new(),
                shadow: Vec::new(),
            },
        ))
    }

    /// Reads on a masked handle go to the host wider (context on each side); the answers
    /// come back whole, however the host's bytes are cut, and are cut to what was asked.
    /// Everything else passes byte for byte, and an id in flight cannot be reused.
    #[test]
    #[allow(clippy::panic, clippy::unwrap_used)]
    fn masked_reads_are_widened_answered_whole_and_cut_back() {
        let mut h = Handles::default();
        h.opening(1, "/srv/cards.csv", Some(mask()));
        h.opening(2, "/srv/other", None);
        let handle = |id: u32, name: &[u8]| packet(HANDLE, id, &[name], &[]);
        let opened = [handle(1, b"h1"), handle(2, b"h2")].concat();
        let pieces = h.host_data(&opened);
        assert!(matches!(&pieces[..], [HostPiece::Pass(b)] if *b == opened));
        // Unmasked handle: the READ goes as it came.
        assert!(matches!(h.read(5, b"h2", 0, 100), ReadPlan::Forward));
        // Masked: OVERLAP before (less at the start of the file), OVERLAP after.
        let ReadPlan::Widened(p) = h.read(6, b"h1", 40_000, 32_768) else {
            panic!("not widened")
        };
        let fields = &p[9 + 4 + 2..];
        assert_eq!(
            u64::from_be_bytes(fields[..8].try_into().unwrap()),
            40_000 - OVERLAP as u64
        );
        assert_eq!(
            u32::from_be_bytes(fields[8..12].try_into().unwrap()),
            (OVERLAP + 32_768 + OVERLAP) as u32
        );
        let ReadPlan::Widened(_) = h.read(7, b"h1", 100, 1 << 20) else {
            panic!("not widened")
        };
        assert!(h.refuse_id(6).is_some() && h.refuse_id(7).is_some());
        // The host answers: a STATUS for 5 (passes), DATA for 6 (full window), a short DATA
        // for 7 (the file ends), cut every 1000 bytes.
        let status5 = packet(STATUS, 5, &[], &[0, 0, 0, 0]);
        let window6: Vec<u8> = (0..OVERLAP + 32_768 + OVERLAP)
            .map(|i| (i % 251) as u8)
            .collect();
        let window7 = vec![b'x'; 5000];
        let all = [
            status5.clone(),
            packet(DATA, 6, &[&window6], &[]),
            packet(DATA, 7, &[&window7], &[]),
        ]
        .concat();
        let (mut passed, mut answered) = (Vec::new(), Vec::new());
        for chunk in all.chunks(1000) {
            for piece in h.host_data(chunk) {
                match piece {
                    HostPiece::Pass(b) => passed.extend_from_slice(&b),
                    HostPiece::Read { id, read, window } => {
                        answered.push((id, read_reply(id, &read, &window, &window, star_digits)))
                    }
                    HostPiece::Fail { .. } => panic!("nothing too large"),
                    HostPiece::Names { .. } => panic!("no names asked for"),
                }
            }
        }
        assert_eq!(passed, status5);
        assert_eq!(
            answered[0],
            (
                6,
                packet(DATA, 6, &[&window6[OVERLAP..OVERLAP + 32_768]], &[])
            )
        );
        // 7 asked at 100 (lead 100) for 1 MiB (capped); the file had 4900 bytes more.
        assert_eq!(answered[1], (7, packet(DATA, 7, &[&window7[100..]], &[])));
        assert!(h.refuse_id(6).is_none() && h.refuse_id(7).is_none());
        // Past the end of the file: EOF.
        let ReadPlan::Widened(_) = h.read(8, b"h1", 9_000, 100) else {
            panic!("not widened")
        };
        let pieces = h.host_data(&packet(DATA, 8, &[&[b'y'; 4000]], &[]));
        let [
            HostPiece::Read {
                id: 8,
                read,
                window,
            },
        ] = &pieces[..]
        else {
            panic!("not one answer")
        };
        assert_eq!(read_reply(8, read, window, window, star_digits)[4], STATUS);
        // A host answer too large to hold is refused, and dropped whole; what follows passes.
        let ReadPlan::Widened(_) = h.read(9, b"h1", 0, 10) else {
            panic!("not widened")
        };
        let huge = packet(DATA, 9, &[&vec![0u8; 300_000]], &[]);
        let after = packet(STATUS, 10, &[], &[0, 0, 0, 0]);
        let (mut failed, mut passed) = (Vec::new(), Vec::new());
        for chunk in [huge, after.clone()].concat().chunks(7000) {
            for piece in h.host_data(chunk) {
                match piece {
                    HostPiece::Pass(b) => passed.extend_from_slice(&b),
                    HostPiece::Fail { id } => failed.push(id),
                    HostPiece::Read { .. } | HostPiece::Names { .. } => {
                        panic!("too large to mask")
                    }
                }
            }
        }
        assert_eq!((failed, passed), (vec![9], after));
    }

    /// What the attack found: an answer of another kind with a masked read's id does not end
    /// its wait; a handle whose open is unknown is read masked once any open was; ids waiting
    /// for an answer are refused; a file that ends inside what may be a card number gives its
    /// last digits starred.
    #[test]
    #[allow(clippy::panic)]
    fn masked_reads_cannot_be_answered_by_another_request() {
        let mut h = Handles::default();
        h.opening(1, "/srv/cards.csv", Some(mask()));
        h.sent(1);
        let _ = h.host_data(&packet(HANDLE, 1, &[b"h1"], &[]));
        assert!(h.refuse_id(1).is_none(), "answered");
        // A client FSTAT with id 7 is in flight; a READ reusing 7 is refused.
        h.sent(7);
        assert!(h.refuse_id(7).is_some());
        // Even if it got through, an ATTRS answer for 7 leaves the masked read waiting.
        let ReadPlan::Widened(_) = h.read(9, b"h1", 0, 64) else {
            panic!("not widened")
        };
        let attrs = packet(105, 9, &[], &[0, 0, 0, 0]);
        let data = packet(DATA, 9, &[b"card 4111 1111 1111"], &[]);
        let pieces = h.host_data(&[attrs.clone(), data].concat());
        assert!(matches!(&pieces[0], HostPiece::Pass(b) if *b == attrs));
        let HostPiece::Read {
            id: 9,
            read,
            window,
        } = &pieces[1]
        else {
            panic!("the DATA was not taken as the masked answer")
        };
        // The file ends in 12 digits: starred, never a clear first half.
        let reply = read_reply(9, read, window, window, star_digits);
        assert!(reply.ends_with(b"card **** **** ****"), "{reply:?}");
        // The same in Latin-1 (no-break spaces) and in UTF-16: read so, it may go on too.
        for (end, starred) in [
            (
                &b"card 4111\xa01111\xa01111"[..],
                &b"card ****\xa0****\xa0****"[..],
            ),
            (
                b"4\x001\x001\x001\x00 \x001\x00",
                b"*\x00*\x00*\x00*\x00 \x00*\x00",
            ),
        ] {
            let reply = read_reply(9, read, end, end, star_digits);
            assert!(reply.ends_with(starred), "{reply:?}");
        }
        // A handle never seen opened (an answer that could not be attributed) reads masked.
        assert!(matches!(
            h.read(10, b"unknown", 0, 64),
            ReadPlan::Widened(_)
        ));
        // A VERSION answer (a second INIT) frees no id.
        h.sent(3);
        let _ = h.host_data(&packet(VERSION, 3, &[], &[]));
        assert!(h.refuse_id(3).is_some());
    }

    /// A NAME reply of `entries` (file name, long name, attributes).
    fn name_reply(id: u32, entries: &[(&[u8], &[u8], &[u8])]) -> Vec<u8> {
        let mut tail = (entries.len() as u32).to_be_bytes().to_vec();
        for (name, long, attrs) in entries {
            for s in [name, long] {
                tail.extend_from_slice(&(s.len() as u32).to_be_bytes());
                tail.extend_from_slice(s);
            }
            tail.extend_from_slice(attrs);
        }
        packet(NAME, id, &[], &tail)
    }

    /// Names are read past every kind of attribute and put back with the attributes as sent;
    /// a reply that does not read as SFTP v3 to its last byte is an error.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn name_replies_are_read_and_rebuilt() {
        let all = [
            &(ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME | ATTR_EXTENDED)
                .to_be_bytes()[..],
            &[0; 8],       // size
            &[0; 8],       // uid, gid
            &[0; 4],       // permissions
            &[0; 8],       // atime, mtime
            &[0, 0, 0, 1], // one extended pair
            &[0, 0, 0, 1, b'k', 0, 0, 0, 1, b'v'],
        ]
        .concat();
        let none = [0u8; 4];
        let reply = name_reply(
            7,
            &[
                (
                    b"4111111111111111.csv",
                    b"-rw-r--r-- 1 4111111111111111.csv",
                    &all,
                ),
                (b"plain", b"-rw plain", &none),
            ],
        );
        let names = names_of(&reply).unwrap();
        assert_eq!(
            names,
            [
                &b"4111111111111111.csv"[..],
                b"-rw-r--r-- 1 4111111111111111.csv",
                b"plain",
                b"-rw plain"
            ]
        );
        let masked: Vec<Vec<u8>> = ["************1111.csv", "l1", "plain", "l2"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let rebuilt = with_names(&reply, &masked).unwrap();
        assert_eq!(
            rebuilt,
            name_reply(
                7,
                &[
                    (b"************1111.csv", b"l1", &all),
                    (b"plain", b"l2", &none)
                ]
            )
        );
        assert!(with_names(&reply, &masked[..2]).is_err());
        // Undefined attribute flags, bytes after the last entry, a short reply.
        let odd = name_reply(7, &[(b"a", b"b", &0x10u32.to_be_bytes())]);
        assert!(names_of(&odd).is_err());
        let trailing = [name_reply(7, &[(b"a", b"b", &none)]), vec![0]].concat();
        let trailing = [
            &((trailing.len() - 4) as u32).to_be_bytes()[..],
            &trailing[4..],
        ]
        .concat();
        assert!(names_of(&trailing).is_err());
        assert!(names_of(&reply[..reply.len() - 1]).is_err());
    }

    /// READDIR of a masked directory, and a REALPATH answered `mask`: their NAME answers are
    /// held whole, however cut, and handed over for masking; a STATUS ends the wait; a NAME
    /// for another request passes.
    #[test]
    #[allow(clippy::panic)]
    fn names_of_masked_requests_are_held_for_masking() {
        let mut h = Handles::default();
        h.opening(1, "/srv", Some(mask()));
        h.sent(1);
        let _ = h.host_data(&packet(HANDLE, 1, &[b"d1"], &[]));
        h.read_dir(2, b"d1");
        h.sent(2);
        h.naming(3, mask());
        h.sent(3);
        h.sent(4);
        assert!(h.refuse_id(2).is_some(), "waiting");
        let listing = name_reply(2, &[(b"4111111111111111", b"l", &[0; 4])]);
        let other = name_reply(4, &[(b"4111111111111111", b"l", &[0; 4])]);
        let status = packet(STATUS, 3, &[], &[0, 0, 0, 2]);
        let bytes = [listing.clone(), other.clone(), status.clone()].concat();
        let mut pieces = Vec::new();
        for chunk in bytes.chunks(5) {
            pieces.extend(h.host_data(chunk));
        }
        let mut names = Vec::new();
        let mut passed = Vec::new();
        for piece in pieces {
            match piece {
                HostPiece::Names { id, packet, .. } => names.push((id, packet)),
                HostPiece::Pass(b) => passed.extend(b),
                _ => panic!("unexpected piece"),
            }
        }
        assert_eq!(names, [(2, listing)]);
        assert_eq!(passed, [other, status].concat());
        assert!(h.refuse_id(2).is_none() && h.refuse_id(3).is_none());
        // An unmasked directory's listing passes.
        h.opening(5, "/tmp", None);
        h.sent(5);
        let _ = h.host_data(&packet(HANDLE, 5, &[b"d2"], &[]));
        h.read_dir(6, b"d2");
        h.sent(6);
        let plain = name_reply(6, &[(b"x", b"y", &[0; 4])]);
        assert!(matches!(&h.host_data(&plain)[..], [HostPiece::Pass(b)] if *b == plain));
    }

    #[test]
    fn malformed_and_oversized_packets_are_errors() {
        let mut r = Reader::default();
        assert!(r.push(&[0, 0, 0, 5, OPEN, 0, 0, 0, 1]).is_err());
        let mut r = Reader::default();
        assert!(r.push(&[0x7f, 0, 0, 0]).is_err());
        let mut r = Reader::default();
        assert!(r.push(&[0, 0, 0, 0]).is_err());
    }

    #[test]
    fn status_reply_layout() {
        let s = status(7, PERMISSION_DENIED, "no");
        assert_eq!(&s[..4], &(s.len() as u32 - 4).to_be_bytes());
        assert_eq!(s[4], STATUS);
        assert_eq!(&s[5..9], &7u32.to_be_bytes());
        assert_eq!(&s[9..13], &3u32.to_be_bytes());
    }
}

/// Property tests of the packet reader: any bytes, cut anywhere, never panic, give the same
/// packets, and leave no more buffered than one packet within the limit. `PROPTEST_CASES` sets
/// the number of cases.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// A framed packet: a known kind with well-formed string fields, or any kind with any body.
    fn packet() -> impl Strategy<Value = Vec<u8>> {
        let kinds = prop_oneof![
            Just(INIT),
            Just(OPEN),
            Just(LSTAT),
            Just(SETSTAT),
            Just(FSETSTAT),
            Just(OPENDIR),
            Just(REMOVE),
            Just(MKDIR),
            Just(RMDIR),
            Just(REALPATH),
            Just(STAT),
            Just(RENAME),
            Just(READLINK),
            Just(SYMLINK),
            Just(EXTENDED),
            any::<u8>(),
        ];
        let field = prop_oneof![
            Just(b"posix-rename@openssh.com".to_vec()),
            Just(b"hardlink@openssh.com".to_vec()),
            Just(b"statvfs@openssh.com".to_vec()),
            vec(any::<u8>(), 0..12),
        ];
        let body = prop_oneof![
            (any::<u32>(), vec(field, 0..4), vec(any::<u8>(), 0..8)).prop_map(
                |(id, fields, tail)| {
                    let mut b = id.to_be_bytes().to_vec();
                    for f in fields {
                        b.extend_from_slice(&(f.len() as u32).to_be_bytes());
                        b.extend_from_slice(&f);
                    }
                    b.extend_from_slice(&tail);
                    b
                }
            ),
            vec(any::<u8>(), 0..24),
        ];
        (kinds, body).prop_map(|(kind, body)| {
            let mut p = ((body.len() + 1) as u32).to_be_bytes().to_vec();
            p.push(kind);
            p.extend_from_slice(&body);
            p
        })
    }

    /// Packets, sometimes followed by junk (an oversized or zero length, a stray byte).
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        (
            vec(packet(), 0..6),
            proptest::option::of(vec(any::<u8>(), 0..9)),
        )
            .prop_map(|(ps, junk)| [ps.concat(), junk.unwrap_or_default()].concat())
    }

    /// Push `data` cut at `cuts`: the packets until the first error, and whether one came.
    fn run(data: &[u8], cuts: &[usize]) -> (Vec<Packet>, bool) {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut r = Reader::default();
        let (mut got, mut from) = (Vec::new(), 0);
        for to in cuts.into_iter().chain([data.len()]) {
            match r.push(&data[from..to]) {
                Ok(ps) => got.extend(ps),
                Err(_) => return (got, true),
            }
            // What stays buffered is one incomplete packet within the limit.
            if let Some(&[a, b, c, d]) = r.buf.get(..4) {
                let len = u32::from_be_bytes([a, b, c, d]) as usize;
                assert!(len <= MAX_PACKET && r.buf.len() < 4 + len);
            }
            from = to;
        }
        (got, false)
    }

    /// The host's bytes as [`Handles`] reads them, cut at `cuts`, after opens with ids 0..8.
    #[allow(clippy::panic)]
    fn handles(data: &[u8], cuts: &[usize]) -> Vec<(Vec<u8>, String)> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut h = Handles::default();
        for id in 0..8 {
            h.opening(id, &format!("/p{id}"), None);
        }
        let (mut from, mut passed) = (0, Vec::new());
        for to in cuts.into_iter().chain([data.len()]) {
            for piece in h.host_data(&data[from..to]) {
                match piece {
                    HostPiece::Pass(b) => passed.extend_from_slice(&b),
                    _ => panic!("no read is masked here"),
                }
            }
            from = to;
        }
        // Nothing masked: every byte passes, unchanged, but for the start of a packet whose
        // type and id are not known yet.
        assert_eq!(passed, data[..data.len() - h.head.len()]);
        assert!(h.head.len() < 9 || h.head[4] == HANDLE);
        let mut out: Vec<_> = h.open.into_iter().map(|(h, (p, _))| (h, p)).collect();
        out.sort();
        out
    }

    /// Host replies: HANDLE or STATUS to a small id, or anything.
    fn replies() -> impl Strategy<Value = Vec<u8>> {
        let reply = (
            prop_oneof![Just(HANDLE), Just(STATUS), any::<u8>()],
            0u32..10,
            vec(any::<u8>(), 0..16),
        )
            .prop_map(|(kind, id, handle)| {
                let mut body = vec![kind];
                body.extend_from_slice(&id.to_be_bytes());
                body.extend_from_slice(&(handle.len() as u32).to_be_bytes());
                body.extend_from_slice(&handle);
                [(body.len() as u32).to_be_bytes().to_vec(), body].concat()
            });
        vec(reply, 0..8).prop_map(|r| r.concat())
    }

    proptest! {
        #[test]
        fn host_replies_read_the_same_however_cut(data in replies(), junk in vec(any::<u8>(), 0..16), cuts in vec(any::<usize>(), 0..8)) {
            let whole = handles(&data, &[]);
            let every: Vec<usize> = (0..data.len()).collect();
            prop_assert_eq!(&whole, &handles(&data, &every));
            prop_assert_eq!(&whole, &handles(&data, &cuts));
            // Junk after the replies never panics.
            let _ = handles(&[data, junk].concat(), &cuts);
        }

        #[test]
        fn name_replies_never_panic_and_rebuild_as_sent(id in any::<u32>(), rest in vec(any::<u8>(), 0..96)) {
            let mut body = vec![NAME];
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&rest);
            let packet = [&(body.len() as u32).to_be_bytes()[..], &body].concat();
            if let Ok(names) = names_of(&packet) {
                let owned: Vec<Vec<u8>> = names.iter().map(|n| n.to_vec()).collect();
                prop_assert_eq!(with_names(&packet, &owned).ok(), Some(packet.clone()));
            }
        }

        #[test]
        fn any_bytes_never_panic(data in vec(any::<u8>(), 0..256), cuts in vec(any::<usize>(), 0..4)) {
            let _ = run(&data, &cuts);
        }

        #[test]
        fn splitting_changes_nothing(data in stream(), cuts in vec(any::<usize>(), 0..8)) {
            let (whole, failed) = run(&data, &[]);
            let every: Vec<usize> = (0..data.len()).collect();
            let (bytewise, bytewise_failed) = run(&data, &every);
            let (split, split_failed) = run(&data, &cuts);
            prop_assert_eq!(failed, bytewise_failed);
            prop_assert_eq!(failed, split_failed);
            if failed {
                // Packets pushed before the error are returned, those in the failing push are
                // not: a coarser split yields a prefix of the bytewise packets.
                prop_assert!(bytewise.starts_with(&split));
                prop_assert!(bytewise.starts_with(&whole));
            } else {
                prop_assert_eq!(&split, &whole);
                prop_assert_eq!(bytewise, whole);
            }
        }
    }
}
