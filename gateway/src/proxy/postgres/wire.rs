//! PostgreSQL wire framing and the few backend messages the gateway writes itself.
//!
//! Messages are read as raw frames (tag, length, body) and forwarded as the bytes they arrived
//! as; only what the gateway must understand is decoded: client messages by `decode.rs` into
//! pgwire's types, server messages with postgres-protocol's parser and the helpers below. The backend messages the gateway composes
//! (errors, notices, ReadyForQuery, authentication, masked DataRows) are encoded here, each
//! with a round-trip test against postgres-protocol's parser.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// One framed message: `tag` (0 for the untagged startup family) and its whole raw bytes.
#[derive(Debug, Clone)]
pub struct Frame {
    pub tag: u8,
    /// The complete message, tag and length included, exactly as received.
    pub raw: Bytes,
}

impl Frame {
    /// The body after the tag and length.
    pub fn body(&self) -> &[u8] {
        let header = if self.tag == 0 { 4 } else { 5 };
        &self.raw[header.min(self.raw.len())..]
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error("message of {0} bytes exceeds the limit of {1}")]
    TooLarge(usize, usize),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The most a frame header alone makes the reader reserve: the rest of a large message is
/// allocated as its bytes arrive, so a 5-byte header announcing the size limit costs nothing.
const RESERVE_AHEAD: usize = 256 * 1024;

/// A buffered reader of frames from one side of the connection.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max: usize) -> FrameReader<R> {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(16 * 1024),
            max,
        }
    }

    /// A tagged message (`tag`, `i32` length including itself, body).
    pub async fn next(&mut self) -> Result<Frame, WireError> {
        loop {
            if let Some(frame) = self.try_frame(true)? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    /// An untagged startup-family message (`i32` length, body): StartupMessage, SSLRequest,
    /// GSSENCRequest, CancelRequest.
    pub async fn next_startup(&mut self) -> Result<Frame, WireError> {
        loop {
            if let Some(frame) = self.try_frame(false)? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    /// Whether a whole tagged frame is already buffered (then `next` returns without I/O).
    pub fn has_frame(&self) -> bool {
        if self.buf.len() < 5 {
            return false;
        }
        let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        len >= 4 && self.buf.len() > len as usize
    }

    /// Bytes already read past the last frame (must be none before a TLS upgrade).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn try_frame(&mut self, tagged: bool) -> Result<Option<Frame>, WireError> {
        let header = if tagged { 5 } else { 4 };
        if self.buf.len() < header {
            return Ok(None);
        }
        let off = usize::from(tagged);
        let len = i32::from_be_bytes([
            self.buf[off],
            self.buf[off + 1],
            self.buf[off + 2],
            self.buf[off + 3],
        ]);
        if len < 4 {
            return Err(WireError::Malformed(format!("length {len}")));
        }
        let total = len as usize + off;
        if total > self.max {
            return Err(WireError::TooLarge(total, self.max));
        }
        if self.buf.len() < total {
            self.buf
                .reserve((total - self.buf.len()).min(RESERVE_AHEAD));
            return Ok(None);
        }
        let tag = if tagged { self.buf[0] } else { 0 };
        Ok(Some(Frame {
            tag,
            raw: self.buf.split_to(total).freeze(),
        }))
    }

    async fn fill(&mut self) -> Result<(), WireError> {
        if self.buf.capacity() - self.buf.len() < 8192 {
            self.buf.reserve(8192);
        }
        let n = self.inner.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(WireError::Closed);
        }
        Ok(())
    }
}

/// SQLSTATE codes the gateway answers with.
pub mod sqlstate {
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const INVALID_CATALOG: &str = "3D000";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const QUERY_CANCELED: &str = "57014";
    pub const IDLE_TIMEOUT: &str = "57P05";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const INVALID_STATEMENT_NAME: &str = "26000";
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    pub const INVALID_CURSOR_NAME: &str = "34000";
    pub const PROGRAM_LIMIT: &str = "54000";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    pub const INTERNAL_ERROR: &str = "XX000";
}

fn message(tag: u8, body: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_u8(tag);
    b.put_i32(0);
    body(&mut b);
    let len = (b.len() - 1) as i32;
    b[1..5].copy_from_slice(&len.to_be_bytes());
    b.freeze()
}

fn cstr(b: &mut BytesMut, s: &str) {
    // A NUL inside would end the field early and desynchronise the client.
    b.put_slice(s.replace('\0', " ").as_bytes());
    b.put_u8(0);
}

fn fields(b: &mut BytesMut, severity: &str, code: &str, text: &str, hint: Option<&str>) {
    for (t, v) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', text),
    ] {
        b.put_u8(t);
        cstr(b, v);
    }
    if let Some(h) = hint {
        b.put_u8(b'H');
        cstr(b, h);
    }
    b.put_u8(0);
}

/// ErrorResponse; `severity` is `ERROR` (the connection goes on) or `FATAL`.
pub fn error(severity: &str, code: &str, text: &str) -> Bytes {
    message(b'E', |b| fields(b, severity, code, text, None))
}

/// NoticeResponse with an optional hint.
pub fn notice(text: &str, hint: Option<&str>) -> Bytes {
    message(b'N', |b| fields(b, "NOTICE", "00000", text, hint))
}

/// ReadyForQuery with a transaction status (`I`, `T` or `E`).
/// A CommandComplete with `tag` (`SELECT 5`), as a frame the relay handles like the server's.
pub fn command_complete(tag: &str) -> Frame {
    Frame {
        tag: b'C',
        raw: message(b'C', |b| cstr(b, tag)),
    }
}

pub fn ready_for_query(status: u8) -> Bytes {
    message(b'Z', |b| b.put_u8(status))
}

pub fn auth_cleartext_request() -> Bytes {
    message(b'R', |b| b.put_i32(3))
}

pub fn auth_ok() -> Bytes {
    message(b'R', |b| b.put_i32(0))
}

pub fn backend_key_data(pid: i32, secret: i32) -> Bytes {
    message(b'K', |b| {
        b.put_i32(pid);
        b.put_i32(secret);
    })
}

/// A DataRow; `None` cells are NULL.
pub fn data_row(cells: &[Option<&[u8]>]) -> Bytes {
    message(b'D', |b| {
        b.put_i16(cells.len() as i16);
        for c in cells {
            match c {
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.put_slice(v);
                }
                None => b.put_i32(-1),
            }
        }
    })
}

/// Parse of `sql` as the statement `name`, without parameter types.
pub fn parse(name: &str, sql: &str) -> Bytes {
    message(b'P', |b| {
        cstr(b, name);
        cstr(b, sql);
        b.put_i16(0);
    })
}

/// Describe of the prepared statement `name`.
pub fn describe_statement(name: &str) -> Bytes {
    message(b'D', |b| {
        b.put_u8(b'S');
        cstr(b, name);
    })
}

/// Sync.
pub fn sync() -> Bytes {
    message(b'S', |_| {})
}

/// Bind of the prepared statement `statement` (no parameters, text results) to the portal
/// `portal`.
pub fn bind(portal: &str, statement: &str) -> Bytes {
    message(b'B', |b| {
        cstr(b, portal);
        cstr(b, statement);
        b.put_i16(0);
        b.put_i16(0);
        b.put_i16(0);
    })
}

/// Execute of the portal `name`, every row.
pub fn execute(name: &str) -> Bytes {
    message(b'E', |b| {
        cstr(b, name);
        b.put_i32(0);
    })
}

/// Close of a prepared statement (`kind` b'S') or portal (b'P').
pub fn close(kind: u8, name: &str) -> Bytes {
    message(b'C', |b| {
        b.put_u8(kind);
        cstr(b, name);
    })
}

/// Flush.
pub fn flush() -> Bytes {
    message(b'H', |_| {})
}

/// Describe of the portal `name`.
pub fn describe_portal(name: &str) -> Bytes {
    message(b'D', |b| {
        b.put_u8(b'P');
        cstr(b, name);
    })
}

/// CopyData carrying `data`.
pub fn copy_data(data: &[u8]) -> Bytes {
    message(b'd', |b| b.put_slice(data))
}

/// Cells of a DataRow body (`None` = NULL).
pub fn parse_data_row(body: &[u8]) -> Result<Vec<Option<&[u8]>>, WireError> {
    let mut b = body;
    if b.len() < 2 {
        return Err(WireError::Malformed("short DataRow".into()));
    }
    let n = b.get_i16();
    // Each cell takes at least its 4-byte length: reserve no more than the body can hold.
    let mut cells = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(b.len() / 4));
    for _ in 0..n {
        if b.len() < 4 {
            return Err(WireError::Malformed("short DataRow cell".into()));
        }
        let len = b.get_i32();
        if len < 0 {
            cells.push(None);
            continue;
        }
        let len = len as usize;
        if b.len() < len {
            return Err(WireError::Malformed("DataRow cell past the end".into()));
        }
        cells.push(Some(&b[..len]));
        b = &b[len..];
    }
    Ok(cells)
}

/// One column of a RowDescription: its name and type OID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDesc {
    pub name: String,
    pub type_oid: u32,
    pub format: i16,
}

/// Columns of a RowDescription body.
pub fn parse_row_description(body: &[u8]) -> Result<Vec<FieldDesc>, WireError> {
    let mut b = body;
    let bad = || WireError::Malformed("RowDescription".into());
    if b.len() < 2 {
        return Err(bad());
    }
    let n = b.get_i16();
    // Each field takes at least 19 bytes (an empty name's NUL and 18 of attributes).
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(b.len() / 19));
    for _ in 0..n {
        let end = b.iter().position(|&c| c == 0).ok_or_else(bad)?;
        let name = String::from_utf8_lossy(&b[..end]).into_owned();
        b = &b[end + 1..];
        if b.len() < 18 {
            return Err(bad());
        }
        let _table = b.get_u32();
        let _attnum = b.get_i16();
        let type_oid = b.get_u32();
        let _len = b.get_i16();
        let _typmod = b.get_i32();
        let format = b.get_i16();
        out.push(FieldDesc {
            name,
            type_oid,
            format,
        });
    }
    Ok(out)
}

/// The `SQLSTATE` and message of an ErrorResponse body, for logs and recordings.
pub fn parse_error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut text) = (String::new(), String::new());
    let mut b = body;
    while let Some((&t, rest)) = b.split_first() {
        if t == 0 {
            break;
        }
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        let v = String::from_utf8_lossy(&rest[..end]).into_owned();
        match t {
            b'C' => code = v,
            b'M' => text = v,
            _ => {}
        }
        b = rest.get(end + 1..).unwrap_or(&[]);
    }
    (code, text)
}

/// The NUL-terminated string at the start of `body` (CommandComplete's tag).
pub fn cstring(body: &[u8]) -> String {
    let end = body.iter().position(|&c| c == 0).unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use fallible_iterator::FallibleIterator;
    use postgres_protocol::message::backend::{ErrorFields, Message};

    fn parse(b: Bytes) -> Message {
        let mut buf = BytesMut::from(&b[..]);
        let m = Message::parse(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty(), "whole message consumed");
        m
    }

    fn fields_of(f: ErrorFields<'_>) -> Vec<(u8, String)> {
        f.map(|f| {
            Ok((
                f.type_(),
                String::from_utf8_lossy(f.value_bytes()).into_owned(),
            ))
        })
        .collect()
        .unwrap()
    }

    #[test]
    fn error_and_notice_round_trip() {
        let Message::ErrorResponse(e) = parse(error("ERROR", "42501", "sql-guard: DROP\0x")) else {
            panic!()
        };
        let f = fields_of(e.fields());
        assert!(f.contains(&(b'C', "42501".into())));
        assert!(f.contains(&(b'M', "sql-guard: DROP x".into())));
        let raw = error("ERROR", "42501", "m");
        let frame = Frame { tag: b'E', raw };
        assert_eq!(
            parse_error_fields(frame.body()),
            ("42501".into(), "m".into())
        );
        let Message::NoticeResponse(n) = parse(notice("held", Some("warden approvals approve x")))
        else {
            panic!()
        };
        assert!(fields_of(n.fields()).contains(&(b'H', "warden approvals approve x".into())));
    }

    #[test]
    fn small_messages_round_trip() {
        let Message::ReadyForQuery(r) = parse(ready_for_query(b'T')) else {
            panic!()
        };
        assert_eq!(r.status(), b'T');
        assert!(matches!(parse(auth_ok()), Message::AuthenticationOk));
        assert!(matches!(
            parse(auth_cleartext_request()),
            Message::AuthenticationCleartextPassword
        ));
        let Message::BackendKeyData(k) = parse(backend_key_data(7, -9)) else {
            panic!()
        };
        assert_eq!((k.process_id(), k.secret_key()), (7, -9));
        let Message::CopyData(c) = parse(copy_data(b"a\tb\n")) else {
            panic!()
        };
        assert_eq!(c.data(), b"a\tb\n");
    }

    #[test]
    fn data_row_round_trip() {
        let raw = data_row(&[Some(b"4111"), None, Some(b"")]);
        let frame = Frame {
            tag: b'D',
            raw: raw.clone(),
        };
        assert_eq!(
            parse_data_row(frame.body()).unwrap(),
            vec![Some(&b"4111"[..]), None, Some(&b""[..])]
        );
        let Message::DataRow(d) = parse(raw) else {
            panic!()
        };
        let ranges: Vec<_> = d.ranges().collect().unwrap();
        assert_eq!(ranges.len(), 3);
        assert!(ranges[1].is_none());
        assert!(parse_data_row(&[0, 2, 0, 0, 0, 9, b'x']).is_err());
    }

    #[tokio::test]
    async fn frames_are_split_and_bounded() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&ready_for_query(b'I'));
        bytes.extend_from_slice(&data_row(&[Some(b"x")]));
        let mut r = FrameReader::new(&bytes[..], 1024);
        assert_eq!(r.next().await.unwrap().tag, b'Z');
        let d = r.next().await.unwrap();
        assert_eq!((d.tag, d.body().len()), (b'D', 2 + 4 + 1));
        assert!(matches!(r.next().await, Err(WireError::Closed)));

        let big = data_row(&[Some(&[0u8; 2000])]);
        let mut r = FrameReader::new(&big[..], 1024);
        assert!(matches!(r.next().await, Err(WireError::TooLarge(..))));
        let bad = [b'Q', 0, 0, 0, 1];
        let mut r = FrameReader::new(&bad[..], 1024);
        assert!(matches!(r.next().await, Err(WireError::Malformed(_))));
    }

    #[test]
    fn a_header_alone_reserves_little() {
        // Announces a message of exactly the 64 MiB limit, then sends nothing more.
        let mut r = FrameReader::new(&[][..], 64 << 20);
        r.buf.extend_from_slice(&[b'Q', 0x03, 0xff, 0xff, 0xff]);
        assert!(r.try_frame(true).unwrap().is_none());
        assert!(r.buf.capacity() <= 16 * 1024 + RESERVE_AHEAD);
    }
}

/// Property tests of the framing and the server-message helpers: any bytes, cut anywhere,
/// never panic and frame the same way. `PROPTEST_CASES` sets the number of cases.
#[cfg(test)]
mod fuzz {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Frames read from `data` delivered in chunks cut at `cuts`, and the first error if any.
    fn frames(data: &[u8], cuts: &[usize], tagged: bool) -> (Vec<Frame>, Option<String>) {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut r = FrameReader::new(&[][..], 1024);
        let (mut out, mut from) = (Vec::new(), 0);
        for to in cuts.into_iter().chain([data.len()]) {
            r.buf.extend_from_slice(&data[from..to]);
            from = to;
            loop {
                match r.try_frame(tagged) {
                    Ok(Some(f)) => out.push(f),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e.to_string())),
                }
            }
            // A header alone never reserves more than the read-ahead.
            assert!(r.buf.capacity() <= 16 * 1024 + RESERVE_AHEAD + data.len());
        }
        (out, None)
    }

    /// Mostly well-framed messages, with lengths sometimes wrong.
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let msg = (
            any::<u8>(),
            vec(any::<u8>(), 0..40),
            prop_oneof![4 => Just(None), 1 => proptest::option::of(any::<i32>())],
        )
            .prop_map(|(tag, body, len)| {
                let len = len.unwrap_or((body.len() + 4) as i32);
                [&[tag][..], &len.to_be_bytes(), &body].concat()
            });
        vec(msg, 0..6).prop_map(|m| m.concat())
    }

    proptest! {
        #[test]
        fn framing_does_not_depend_on_chunking(data in stream(), cuts in vec(any::<usize>(), 0..8)) {
            for tagged in [true, false] {
                let (whole, err) = frames(&data, &[], tagged);
                let (split, split_err) = frames(&data, &cuts, tagged);
                let raw = |fs: &[Frame]| fs.iter().map(|f| (f.tag, f.raw.clone())).collect::<Vec<_>>();
                prop_assert_eq!(raw(&split), raw(&whole));
                prop_assert_eq!(split_err, err);
            }
        }

        #[test]
        fn server_message_helpers_never_panic(body in vec(any::<u8>(), 0..128)) {
            let _ = parse_data_row(&body);
            let _ = parse_row_description(&body);
            let _ = parse_error_fields(&body);
            let _ = cstring(&body);
            let _ = has_frame_of(&body);
        }

        #[test]
        fn data_rows_round_trip(cells in vec(proptest::option::of(vec(any::<u8>(), 0..16)), 0..8)) {
            let cells: Vec<Option<&[u8]>> = cells.iter().map(|c| c.as_deref()).collect();
            let raw = data_row(&cells);
            let frame = Frame { tag: b'D', raw };
            prop_assert_eq!(parse_data_row(frame.body()).unwrap(), cells);
        }
    }

    /// `has_frame` over a buffer holding `bytes`.
    fn has_frame_of(bytes: &[u8]) -> bool {
        let mut r = FrameReader::new(&[][..], 1024);
        r.buf.extend_from_slice(bytes);
        r.has_frame()
    }
}
