//! Server messages other than rows that can carry a value out: ErrorResponse and
//! NoticeResponse fields (`value "4111…" is out of range`, a function's RAISE), a
//! NotificationResponse payload (`pg_notify('ch', pan)`), a ParameterStatus value
//! (`set_config('application_name', pan, false)`) and RowDescription column names (an alias
//! that is a card number). Whatever the verdict, every card number in them is masked with the
//! detector policies and the audit share (`warden-pan`), before the relay reads them, so the
//! recording and the audit get the same masked text the client does.
//!
//! A message without a card number is forwarded as the bytes it arrived as.

use super::wire::Frame;
use bytes::{BufMut, BytesMut};

/// `frame` with the card numbers in its text fields masked (the same frame when none).
pub fn mask(frame: Frame) -> Frame {
    let body = frame.body();
    let masked = match frame.tag {
        b'E' | b'N' => fields(body),
        b'A' => notification(body),
        b'S' => strings(body, 0),
        b'T' => row_description(body),
        _ => None,
    };
    match masked {
        Some(body) => {
            let mut b = BytesMut::with_capacity(body.len() + 5);
            b.put_u8(frame.tag);
            b.put_i32(body.len() as i32 + 4);
            b.put_slice(&body);
            Frame {
                tag: frame.tag,
                raw: b.freeze(),
            }
        }
        None => frame,
    }
}

/// A NUL-terminated string at the start of `b` and the bytes after it.
fn cstring(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|&c| c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}

/// The string masked, or `None` when it holds no card number.
fn masked(s: &[u8]) -> Option<String> {
    warden_pan::mask_pans(std::str::from_utf8(s).ok()?)
}

/// Append a string (masked if it must be) and its NUL; true if it changed.
fn put(out: &mut Vec<u8>, s: &[u8]) -> bool {
    let m = masked(s);
    out.extend_from_slice(m.as_ref().map_or(s, |m| m.as_bytes()));
    out.push(0);
    m.is_some()
}

/// Error and notice fields: a type byte and a string each, then a NUL.
fn fields(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    let mut changed = false;
    while let Some((&t, after)) = rest.split_first() {
        if t == 0 {
            break;
        }
        let (s, after) = cstring(after)?;
        out.push(t);
        changed |= put(&mut out, s);
        rest = after;
    }
    out.push(0);
    changed.then_some(out)
}

/// `skip` bytes as they are, then NUL-terminated strings to the end.
fn strings(body: &[u8], skip: usize) -> Option<Vec<u8>> {
    let mut out = body.get(..skip)?.to_vec();
    let mut rest = body.get(skip..)?;
    let mut changed = false;
    while !rest.is_empty() {
        let (s, after) = cstring(rest)?;
        changed |= put(&mut out, s);
        rest = after;
    }
    changed.then_some(out)
}

/// Process id, channel, payload.
fn notification(body: &[u8]) -> Option<Vec<u8>> {
    strings(body, 4)
}

/// Field count, then per field its name and 18 bytes of attributes.
fn row_description(body: &[u8]) -> Option<Vec<u8>> {
    let n = i16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    let mut out = body[..2].to_vec();
    let mut rest = &body[2..];
    let mut changed = false;
    for _ in 0..n {
        let (name, after) = cstring(rest)?;
        changed |= put(&mut out, name);
        out.extend_from_slice(after.get(..18)?);
        rest = &after[18..];
    }
    out.extend_from_slice(rest);
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::Bytes;

    fn frame(tag: u8, body: &[u8]) -> Frame {
        let mut b = vec![tag];
        b.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        b.extend_from_slice(body);
        Frame {
            tag,
            raw: Bytes::from(b),
        }
    }

    #[test]
    fn error_fields_are_masked() {
        let e = super::super::wire::error(
            "ERROR",
            "22003",
            "value \"4111111111111111\" is out of range for type integer",
        );
        let f = mask(Frame { tag: b'E', raw: e });
        let (code, text) = super::super::wire::parse_error_fields(f.body());
        assert_eq!(code, "22003");
        assert_eq!(
            text,
            "value \"************1111\" is out of range for type integer"
        );
    }

    #[test]
    fn notification_parameter_status_and_column_names() {
        let mut body = 42i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"ch\x004111 1111 1111 1111\x00");
        let f = mask(frame(b'A', &body));
        assert!(f.body().ends_with(b"ch\x00**** **** **** 1111\x00"));
        assert_eq!(&f.body()[..4], &42i32.to_be_bytes());

        let f = mask(frame(b'S', b"application_name\x004111111111111111\x00"));
        assert_eq!(f.body(), b"application_name\x00************1111\x00");

        let mut body = 1i16.to_be_bytes().to_vec();
        body.extend_from_slice(b"4111111111111111\x00");
        body.extend_from_slice(&[7u8; 18]);
        let f = mask(frame(b'T', &body));
        let fields = super::super::wire::parse_row_description(f.body()).unwrap();
        assert_eq!(fields[0].name, "************1111");

        // Nothing to mask: the same bytes.
        let f = frame(b'S', b"TimeZone\x00UTC\x00");
        assert_eq!(mask(f.clone()).raw, f.raw);
    }
}
