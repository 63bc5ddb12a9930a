//! The SFTP subsystem (which `sftp` and, since OpenSSH 9, `scp` use): client packets are read
//! just far enough to name each file operation and its paths (SFTP v3, draft-ietf-secsh-filexfer-02
//! plus OpenSSH's extensions). Operations that name a path are commands for the policy chain;
//! a refused one is answered with an SSH_FXP_STATUS "permission denied" carrying the reason, and
//! never reaches the host. A change of attributes through an open handle (FSETSTAT: chmod,
//! chown, utime, truncate) is checked as a `setstat` of the path the handle was opened on,
//! which [`Handles`] learns from the host's replies. Reads and writes on handles already
//! opened, and the host's replies, pass through untouched.

use crate::policy::FileOp;

const INIT: u8 = 1;
const OPEN: u8 = 3;
const LSTAT: u8 = 7;
const SETSTAT: u8 = 9;
const FSETSTAT: u8 = 10;
const OPENDIR: u8 = 11;
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
const HANDLE: u8 = 102;

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
                // On handles already checked at open, or no path at all.
                "fsync@openssh.com"
                | "fstatvfs@openssh.com"
                | "limits@openssh.com"
                | "copy-data" => return Ok(Packet::Forward(bytes)),
                _ => return Ok(Packet::Unsupported { id, name }),
            }
        }
        _ => return Ok(Packet::Forward(bytes)),
    };
    Ok(Packet::Check { id, op, bytes })
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

impl Fields<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
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
    fn bytes(&mut self) -> Result<&[u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, String> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }
}

/// Most opens awaiting the host's answer, and most handles remembered: a client cannot grow
/// them without bound. A handle not remembered cannot be checked, so FSETSTAT on it is refused.
const MAX_HANDLES: usize = 4096;

/// Which path each open handle of the session is on: the relay notes each open it forwards
/// (request id and path), and the host's HANDLE reply to that id names the handle. The
/// host's packets are only read, never changed.
#[derive(Default)]
pub struct Handles {
    /// Request id → path; `None` when the client reused an id still waiting for its answer
    /// (which open the answer is for is then unknown).
    pending: std::collections::HashMap<u32, Option<String>>,
    open: std::collections::HashMap<Vec<u8>, String>,
    /// The start of a host packet not yet complete: its header, or a whole HANDLE reply.
    head: Vec<u8>,
    /// Bytes of the current host packet still to pass (a packet that is not read).
    skip: usize,
}

impl Handles {
    /// An open (or opendir) of `path` with request `id` was forwarded.
    pub fn opening(&mut self, id: u32, path: &str) {
        if let Some(known) = self.pending.get_mut(&id) {
            *known = None;
        } else if self.pending.len() < MAX_HANDLES {
            self.pending.insert(id, Some(path.to_string()));
        }
    }

    /// The path `handle` was opened on, if the host gave it for an open the relay forwarded.
    pub fn path(&self, handle: &[u8]) -> Option<&str> {
        self.open.get(handle).map(String::as_str)
    }

    /// Bytes the host sent on the channel, read for HANDLE and STATUS replies.
    pub fn host_data(&mut self, mut data: &[u8]) {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                if self.skip > 0 {
                    return;
                }
            }
            let want = self.wanted();
            if self.head.len() < want {
                if data.is_empty() {
                    return;
                }
                let n = (want - self.head.len()).min(data.len());
                self.head.extend_from_slice(&data[..n]);
                data = &data[n..];
                continue;
            }
            self.reply();
            self.skip = (4 + self.packet_len()).saturating_sub(self.head.len());
            self.head.clear();
        }
    }

    /// How much of the current packet is read: its length, then its type and request id,
    /// and all of a HANDLE reply (a handle is at most 256 bytes).
    fn wanted(&self) -> usize {
        if self.head.len() < 4 {
            return 4;
        }
        let total = 4 + self.packet_len();
        if self.head.get(4) == Some(&HANDLE) && total <= 4 + 1024 {
            total
        } else {
            total.min(9)
        }
    }

    fn packet_len(&self) -> usize {
        u32::from_be_bytes([self.head[0], self.head[1], self.head[2], self.head[3]]) as usize
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
            // is refused.
            _ => {
                self.open.remove(handle);
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
        let read = packet(5, 4, &[b"handle"], &[0; 12]);
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
                Packet::Forward(read),
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
        h.opening(7, "/etc/passwd");
        h.opening(8, "/nope");
        // The host's replies, cut anywhere: a DATA reply, the HANDLE for 7, a STATUS for 8.
        let data = packet(103, 3, &[&[0x55; 3000]], &[]);
        let handle = packet(HANDLE, 7, &[b"\0\0\0\x01"], &[]);
        let failed = packet(STATUS, 8, &[], &[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
        let all = [&data[..], &handle, &failed].concat();
        for chunk in all.chunks(5) {
            h.host_data(chunk);
        }
        assert_eq!(h.path(b"\0\0\0\x01"), Some("/etc/passwd"));
        assert!(h.pending.is_empty());
        assert_eq!(h.path(b"other"), None);
        // An id reused before its answer: the handle it gets is no path's.
        h.opening(11, "/srv/protected");
        h.opening(11, "/tmp/harmless");
        h.host_data(&packet(HANDLE, 11, &[b"\0\0\0\x02"], &[]));
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
    fn handles(data: &[u8], cuts: &[usize]) -> Vec<(Vec<u8>, String)> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut h = Handles::default();
        for id in 0..8 {
            h.opening(id, &format!("/p{id}"));
        }
        let mut from = 0;
        for to in cuts.into_iter().chain([data.len()]) {
            h.host_data(&data[from..to]);
            from = to;
        }
        let mut out: Vec<_> = h.open.into_iter().collect();
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
