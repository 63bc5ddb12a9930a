//! Validated decoding of the client's extended-protocol messages (Parse, Bind, Describe,
//! Execute, Close) into pgwire's message types, so no client bytes can panic a session task.
//!
//! pgwire's own `decode_body` trusts the counts and lengths it reads: a Bind announcing 30 000
//! parameters in ten bytes of body, or an empty Describe, panics inside `bytes`. Here every
//! count and length is checked against the bytes that remain before anything is allocated or
//! read, and a message is read the way PostgreSQL reads it (`pq_getmsg*` in `tcop/postgres.c`):
//! counts are unsigned 16-bit, a parameter length is -1 (NULL) or a byte count, a Describe or
//! Close names `S` or `P`, and nothing may follow the last field. What the server would reject
//! as malformed is malformed here too, so the gateway never acts on a reading the server does
//! not share. The server answers such a message with an ERROR and waits for Sync; the gateway
//! ends the session with FATAL 08P01 instead, rather than unwind a half-judged batch for a
//! client that is broken or probing.
//!
//! Statement and portal names must be UTF-8: they key the gateway's tables of what the
//! policies allowed, and a lossy decoding would let two names the server keeps apart (say
//! `s\xff` and `s\xfe` under a LATIN1 client encoding) share one entry and one ruling. Query
//! text is decoded as pgwire and the simple-query path decode it (invalid bytes become U+FFFD).

use bytes::Bytes;
use pgwire::messages::extendedquery::{Bind, Close, Describe, Execute, Parse};

/// A client message whose body did not decode; the session ends with 08P01.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {message}: {problem}")]
pub struct DecodeError {
    /// The message type, as the protocol documentation names it.
    pub message: &'static str,
    pub problem: Problem,
}

/// What was wrong with a message body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{field} cut short ({left} of {needed} bytes)")]
    Truncated {
        field: &'static str,
        needed: usize,
        left: usize,
    },
    #[error("{field} has no NUL terminator")]
    Unterminated { field: &'static str },
    #[error("{field} is not valid UTF-8")]
    NotUtf8 { field: &'static str },
    #[error("{announced} {what} announced, {present} present")]
    Count {
        what: &'static str,
        announced: usize,
        present: usize,
    },
    #[error("parameter value {index} announces {announced} bytes, {present} present")]
    ValueLength {
        index: usize,
        announced: usize,
        present: usize,
    },
    #[error("parameter value {index} has length {length} (only -1, NULL, may be negative)")]
    NegativeLength { index: usize, length: i32 },
    #[error("target type {:?}, expected 'S' or 'P'", char::from(*.0))]
    Target(u8),
    #[error("{0} bytes after the last field")]
    Trailing(usize),
}

/// An extended-protocol message the gateway decodes from a client.
pub trait ClientMessage: Sized {
    /// Decode a message body (what follows the tag and length).
    fn from_body(body: &[u8]) -> Result<Self, DecodeError>;
}

/// A cursor over one message body; every read checks what is left first.
struct Body<'a> {
    rest: &'a [u8],
    message: &'static str,
}

impl<'a> Body<'a> {
    fn new(message: &'static str, body: &'a [u8]) -> Body<'a> {
        Body {
            rest: body,
            message,
        }
    }

    fn error(&self, problem: Problem) -> DecodeError {
        DecodeError {
            message: self.message,
            problem,
        }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let Some((head, rest)) = self.rest.split_at_checked(n) else {
            return Err(self.error(Problem::Truncated {
                field,
                needed: n,
                left: self.rest.len(),
            }));
        };
        self.rest = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// The bytes of a NUL-terminated string, without the NUL.
    fn cstr(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let Some(end) = self.rest.iter().position(|&b| b == 0) else {
            return Err(self.error(Problem::Unterminated { field }));
        };
        let s = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        Ok(s)
    }

    /// A statement or portal name; empty is the unnamed one (`None`, as pgwire has it).
    fn name(&mut self, field: &'static str) -> Result<Option<String>, DecodeError> {
        let raw = self.cstr(field)?;
        let name = std::str::from_utf8(raw).map_err(|_| self.error(Problem::NotUtf8 { field }))?;
        Ok((!name.is_empty()).then(|| name.to_string()))
    }

    /// A 16-bit count of fixed-size elements, all of which must be present.
    fn count(&mut self, what: &'static str, size: usize) -> Result<usize, DecodeError> {
        let announced = usize::from(self.u16(what)?);
        let present = self.rest.len() / size;
        if announced > present {
            return Err(self.error(Problem::Count {
                what,
                announced,
                present,
            }));
        }
        Ok(announced)
    }

    fn i16s(&mut self, what: &'static str) -> Result<Vec<i16>, DecodeError> {
        let n = self.count(what, 2)?;
        (0..n).map(|_| self.i16(what)).collect()
    }

    fn target(&mut self) -> Result<u8, DecodeError> {
        match self.u8("target type")? {
            t @ (b'S' | b'P') => Ok(t),
            t => Err(self.error(Problem::Target(t))),
        }
    }

    /// The server rejects a message with bytes after its last field, and so do we.
    fn finish(self) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(self.error(Problem::Trailing(n))),
        }
    }
}

impl ClientMessage for Parse {
    fn from_body(body: &[u8]) -> Result<Parse, DecodeError> {
        let mut b = Body::new("Parse", body);
        let name = b.name("statement name")?;
        let query = String::from_utf8_lossy(b.cstr("query")?).into_owned();
        let n = b.count("parameter types", 4)?;
        let type_oids = (0..n)
            .map(|_| b.u32("parameter types"))
            .collect::<Result<_, _>>()?;
        b.finish()?;
        Ok(Parse::new(name, query, type_oids))
    }
}

impl ClientMessage for Bind {
    fn from_body(body: &[u8]) -> Result<Bind, DecodeError> {
        let mut b = Body::new("Bind", body);
        let portal = b.name("portal name")?;
        let statement = b.name("statement name")?;
        let param_formats = b.i16s("parameter format codes")?;
        let announced = usize::from(b.u16("parameter count")?);
        // Every value needs at least its 4-byte length: never reserve more than could fit.
        let mut params = Vec::with_capacity(announced.min(b.rest.len() / 4));
        for index in 0..announced {
            if b.rest.len() < 4 {
                return Err(b.error(Problem::Count {
                    what: "parameter values",
                    announced,
                    present: index,
                }));
            }
            let length = b.i32("parameter length")?;
            let value = match usize::try_from(length) {
                Ok(len) if len <= b.rest.len() => {
                    Some(Bytes::copy_from_slice(b.take(len, "parameter value")?))
                }
                Ok(len) => {
                    return Err(b.error(Problem::ValueLength {
                        index: index + 1,
                        announced: len,
                        present: b.rest.len(),
                    }));
                }
                Err(_) if length == -1 => None,
                Err(_) => {
                    return Err(b.error(Problem::NegativeLength {
                        index: index + 1,
                        length,
                    }));
                }
            };
            params.push(value);
        }
        let result_formats = b.i16s("result format codes")?;
        b.finish()?;
        Ok(Bind::new(
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        ))
    }
}

impl ClientMessage for Describe {
    fn from_body(body: &[u8]) -> Result<Describe, DecodeError> {
        let mut b = Body::new("Describe", body);
        let target = b.target()?;
        let name = b.name("name")?;
        b.finish()?;
        Ok(Describe::new(target, name))
    }
}

impl ClientMessage for Execute {
    fn from_body(body: &[u8]) -> Result<Execute, DecodeError> {
        let mut b = Body::new("Execute", body);
        let name = b.name("portal name")?;
        let max_rows = b.i32("row limit")?;
        b.finish()?;
        Ok(Execute::new(name, max_rows))
    }
}

impl ClientMessage for Close {
    fn from_body(body: &[u8]) -> Result<Close, DecodeError> {
        let mut b = Body::new("Close", body);
        let target = b.target()?;
        let name = b.name("name")?;
        b.finish()?;
        Ok(Close::new(target, name))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use bytes::BytesMut;
    use pgwire::messages::Message;

    /// The body of `m` as pgwire encodes it (tag and length stripped).
    pub(super) fn body_of(m: &impl Message) -> Vec<u8> {
        let mut buf = BytesMut::new();
        m.encode(&mut buf).unwrap();
        buf[5..].to_vec()
    }

    fn problem<M: ClientMessage + std::fmt::Debug>(body: &[u8]) -> Problem {
        M::from_body(body).unwrap_err().problem
    }

    #[test]
    fn parse_round_trips() {
        for m in [
            Parse::new(Some("s1".into()), "SELECT $1::int".into(), vec![23]),
            Parse::new(None, "SELECT 'é'".into(), vec![]),
            Parse::new(None, String::new(), vec![0, u32::MAX]),
        ] {
            assert_eq!(Parse::from_body(&body_of(&m)).unwrap(), m);
        }
    }

    #[test]
    fn bind_round_trips() {
        for m in [
            Bind::new(
                Some("p".into()),
                Some("s1".into()),
                vec![0, 1],
                vec![Some(Bytes::from_static(b"42")), None],
                vec![1],
            ),
            Bind::new(None, None, vec![], vec![Some(Bytes::new())], vec![]),
            Bind::new(None, None, vec![], vec![], vec![0, 1, 0]),
        ] {
            assert_eq!(Bind::from_body(&body_of(&m)).unwrap(), m);
        }
    }

    #[test]
    fn describe_execute_close_round_trip() {
        for m in [
            Describe::new(b'S', Some("s1".into())),
            Describe::new(b'P', None),
        ] {
            assert_eq!(Describe::from_body(&body_of(&m)).unwrap(), m);
        }
        for m in [Execute::new(Some("p".into()), 10), Execute::new(None, 0)] {
            assert_eq!(Execute::from_body(&body_of(&m)).unwrap(), m);
        }
        for m in [Close::new(b'P', Some("p".into())), Close::new(b'S', None)] {
            assert_eq!(Close::from_body(&body_of(&m)).unwrap(), m);
        }
    }

    #[test]
    fn bind_with_a_huge_parameter_count_is_an_error() {
        // Two empty names, no format codes, 30000 parameters, then 10 bytes: one 3-byte value
        // and 3 bytes that cannot hold the next one's length.
        let mut body = vec![0, 0, 0, 0, 0x75, 0x30];
        body.extend_from_slice(&[0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0]);
        let e = Bind::from_body(&body).unwrap_err();
        assert_eq!(
            e.problem,
            Problem::Count {
                what: "parameter values",
                announced: 30000,
                present: 1
            }
        );
        assert_eq!(
            e.to_string(),
            "malformed Bind: 30000 parameter values announced, 1 present"
        );
        // A huge format-code count fails before anything is reserved for it.
        let body = [0, 0, 0xff, 0xff, 0, 0];
        assert!(matches!(
            problem::<Bind>(&body),
            Problem::Count {
                announced: 65535,
                present: 1,
                ..
            }
        ));
    }

    #[test]
    fn bind_with_a_huge_or_bad_parameter_length_is_an_error() {
        let mut body = vec![0, 0, 0, 0, 0, 1];
        body.extend_from_slice(&i32::MAX.to_be_bytes());
        body.extend_from_slice(b"abc");
        assert_eq!(
            problem::<Bind>(&body),
            Problem::ValueLength {
                index: 1,
                announced: i32::MAX as usize,
                present: 3
            }
        );
        let mut body = vec![0, 0, 0, 0, 0, 1];
        body.extend_from_slice(&(-2i32).to_be_bytes());
        body.extend_from_slice(&[0, 0]);
        assert_eq!(
            problem::<Bind>(&body),
            Problem::NegativeLength {
                index: 1,
                length: -2
            }
        );
    }

    #[test]
    fn empty_or_cut_bind_is_an_error() {
        assert_eq!(
            problem::<Bind>(&[]),
            Problem::Unterminated {
                field: "portal name"
            }
        );
        let good = body_of(&Bind::new(
            None,
            Some("s".into()),
            vec![1],
            vec![Some(Bytes::from_static(b"1234"))],
            vec![1],
        ));
        for cut in 0..good.len() {
            assert!(Bind::from_body(&good[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn parse_without_terminator_or_with_a_huge_type_count_is_an_error() {
        assert_eq!(
            problem::<Parse>(b"\0SELECT 1"),
            Problem::Unterminated { field: "query" }
        );
        assert_eq!(
            problem::<Parse>(b"s1"),
            Problem::Unterminated {
                field: "statement name"
            }
        );
        assert_eq!(
            problem::<Parse>(b"\0SELECT 1\0\xff\xff\0\0\0\x17"),
            Problem::Count {
                what: "parameter types",
                announced: 65535,
                present: 1
            }
        );
        assert!(matches!(
            problem::<Parse>(b"\0SELECT 1\0"),
            Problem::Truncated { .. }
        ));
        assert!(Parse::from_body(b"\0SELECT 1\0\0\0").is_ok());
    }

    #[test]
    fn empty_describe_short_execute_empty_close_are_errors() {
        assert!(matches!(
            problem::<Describe>(&[]),
            Problem::Truncated {
                needed: 1,
                left: 0,
                ..
            }
        ));
        assert!(matches!(
            problem::<Close>(&[]),
            Problem::Truncated {
                needed: 1,
                left: 0,
                ..
            }
        ));
        assert!(matches!(
            problem::<Execute>(b"\0\0\0"),
            Problem::Truncated {
                needed: 4,
                left: 2,
                ..
            }
        ));
        assert!(matches!(
            problem::<Execute>(&[]),
            Problem::Unterminated { .. }
        ));
        assert_eq!(
            problem::<Describe>(b"S"),
            Problem::Unterminated { field: "name" }
        );
    }

    #[test]
    fn the_server_reading_is_kept() {
        // Trailing bytes, an unknown target, and names that are not UTF-8.
        let mut body = body_of(&Execute::new(None, 0));
        body.push(0);
        assert_eq!(problem::<Execute>(&body), Problem::Trailing(1));
        assert_eq!(problem::<Describe>(b"X\0"), Problem::Target(b'X'));
        assert_eq!(problem::<Close>(b"s\0"), Problem::Target(b's'));
        assert_eq!(
            problem::<Parse>(b"s\xff\0SELECT 1\0\0\0"),
            Problem::NotUtf8 {
                field: "statement name"
            }
        );
        assert_eq!(
            problem::<Bind>(b"\0s\xfe\0\0\0\0\0\0\0"),
            Problem::NotUtf8 {
                field: "statement name"
            }
        );
        // Query text stays lossy, as on the simple-query path.
        let p = Parse::from_body(b"\0SELECT '\xff'\0\0\0").unwrap();
        assert_eq!(p.query, "SELECT '\u{fffd}'");
    }
}

/// Property tests: no body panics a decoder, and what decodes is what pgwire would write.
#[cfg(test)]
mod fuzz;
