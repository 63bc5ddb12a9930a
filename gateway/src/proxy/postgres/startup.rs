//! The client's side of connection start-up: SSLRequest (TLS via rustls, or `N`),
//! GSSENCRequest (always `N`), CancelRequest, and the StartupMessage with its parameters; then
//! the password exchange, whose password is the client's JWT.

use super::wire::{self, Frame, FrameReader, WireError, sqlstate};
use crate::proxy::BoxedIo;
use std::collections::BTreeMap;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

const SSL_REQUEST: i32 = 80877103;
const GSSENC_REQUEST: i32 = 80877104;
const CANCEL_REQUEST: i32 = 80877102;
const PROTOCOL_3_0: i32 = 196608;
/// Start-up messages are small; a bigger one is an attack or garbage.
const MAX_STARTUP: usize = 10_000;

/// What a new connection turned out to be.
pub enum Opening {
    /// A client that wants a session: its stream (TLS or not) and startup parameters.
    Startup {
        io: BoxedIo,
        tls: bool,
        params: BTreeMap<String, String>,
    },
    /// A cancel request for the session holding this key.
    Cancel { process_id: i32, secret_key: i32 },
}

/// Why start-up failed; the client has been told when it could be.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("{0}")]
    Protocol(String),
}

/// Read the opening messages of a connection, upgrading to TLS when asked and configured.
pub async fn open(tcp: TcpStream, tls: Option<&TlsAcceptor>) -> Result<Opening, StartupError> {
    let mut io: BoxedIo = Box::new(tcp);
    let mut is_tls = false;
    loop {
        let mut reader = FrameReader::new(&mut io, MAX_STARTUP);
        let frame = reader.next_startup().await?;
        let leftover = reader.buffered();
        let body = frame.body();
        if body.len() < 4 {
            return Err(StartupError::Protocol("short start-up message".into()));
        }
        let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        match code {
            SSL_REQUEST if !is_tls => {
                if leftover > 0 {
                    // Bytes after SSLRequest before the handshake would be read in the clear.
                    return Err(StartupError::Protocol("data after SSLRequest".into()));
                }
                match tls {
                    Some(acceptor) => {
                        io.write_all(b"S").await.map_err(WireError::Io)?;
                        let stream = acceptor.accept(io).await.map_err(StartupError::Tls)?;
                        io = Box::new(stream);
                        is_tls = true;
                    }
                    None => io.write_all(b"N").await.map_err(WireError::Io)?,
                }
            }
            GSSENC_REQUEST if !is_tls => io.write_all(b"N").await.map_err(WireError::Io)?,
            CANCEL_REQUEST if body.len() >= 12 => {
                let pid = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                let key = i32::from_be_bytes([body[8], body[9], body[10], body[11]]);
                return Ok(Opening::Cancel {
                    process_id: pid,
                    secret_key: key,
                });
            }
            PROTOCOL_3_0 => {
                if leftover > 0 {
                    return Err(StartupError::Protocol("data after StartupMessage".into()));
                }
                let params = match parse_startup_params(body) {
                    Ok(params) => params,
                    Err(e) => {
                        // As the server does: a silent close would look like a network fault.
                        let msg = e.to_string();
                        let fatal = wire::error("FATAL", sqlstate::PROTOCOL_VIOLATION, &msg);
                        let _ = io.write_all(&fatal).await;
                        return Err(e);
                    }
                };
                return Ok(Opening::Startup {
                    io,
                    tls: is_tls,
                    params,
                });
            }
            other => {
                let msg = format!("unsupported frontend protocol or request code {other}");
                let _ = io
                    .write_all(&wire::error("FATAL", sqlstate::PROTOCOL_VIOLATION, &msg))
                    .await;
                return Err(StartupError::Protocol(msg));
            }
        }
    }
}

/// A StartupMessage body (protocol 3.0, then `key\0value\0...\0`) into its parameters. Pure, so
/// it is tested and fuzzed without a socket. As the server does, nothing may follow the final
/// NUL; a repeated key keeps its last value, as the server's own reading does.
pub(super) fn parse_startup_params(body: &[u8]) -> Result<BTreeMap<String, String>, StartupError> {
    let (version, mut b) = body
        .split_first_chunk::<4>()
        .ok_or_else(|| StartupError::Protocol("short start-up message".into()))?;
    if i32::from_be_bytes(*version) != PROTOCOL_3_0 {
        return Err(StartupError::Protocol(
            "not a protocol 3.0 StartupMessage".into(),
        ));
    }
    let mut params = BTreeMap::new();
    let next = |b: &mut &[u8]| -> Result<String, StartupError> {
        let end = b
            .iter()
            .position(|&c| c == 0)
            .ok_or_else(|| StartupError::Protocol("unterminated start-up parameter".into()))?;
        let s = String::from_utf8(b[..end].to_vec())
            .map_err(|_| StartupError::Protocol("start-up parameter is not UTF-8".into()))?;
        *b = &b[end + 1..];
        Ok(s)
    };
    loop {
        let key = next(&mut b)?;
        if key.is_empty() {
            if !b.is_empty() {
                return Err(StartupError::Protocol(
                    "bytes after the start-up parameters' terminator".into(),
                ));
            }
            return Ok(params);
        }
        let value = next(&mut b)?;
        params.insert(key, value);
    }
}

/// Ask for the password and read it: the client's token.
pub async fn read_password(io: &mut BoxedIo) -> Result<String, StartupError> {
    io.write_all(&wire::auth_cleartext_request())
        .await
        .map_err(WireError::Io)?;
    let mut reader = FrameReader::new(io, MAX_STARTUP * 2);
    let frame: Frame = reader.next().await?;
    if frame.tag != b'p' {
        return Err(StartupError::Protocol(format!(
            "expected a password message, got `{}`",
            frame.tag as char
        )));
    }
    Ok(wire::cstring(frame.body()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A StartupMessage body with `params` after the protocol version.
    pub(super) fn body(params: &[u8]) -> Vec<u8> {
        [&PROTOCOL_3_0.to_be_bytes()[..], params].concat()
    }

    #[test]
    fn params_parse() {
        let p = parse_startup_params(&body(b"user\0alice\0database\0payments\0\0")).unwrap();
        assert_eq!(p["user"], "alice");
        assert_eq!(p["database"], "payments");
        assert!(parse_startup_params(&body(b"user\0alice")).is_err());
        assert!(parse_startup_params(&body(b"\0")).unwrap().is_empty());
    }

    #[test]
    fn malformed_start_up_bodies_are_errors() {
        for bad in [
            &b""[..],
            b"\0\x03\0",
            // Protocol 2.0.
            b"\0\x02\0\0user\0a\0\0",
            // No terminator, a key without a value, bytes after the terminator, not UTF-8.
            &body(b"")[..],
            &body(b"user\0")[..],
            &body(b"user\0a\0\0x")[..],
            &body(b"user\0\xff\0\0")[..],
        ] {
            assert!(parse_startup_params(bad).is_err(), "{bad:?}");
        }
        let p = parse_startup_params(&body(b"user\0a\0user\0b\0\0")).unwrap();
        assert_eq!(p["user"], "b");
    }
}

/// Property tests of the StartupMessage parser. `PROPTEST_CASES` sets the number of cases.
#[cfg(test)]
mod fuzz {
    #![allow(clippy::unwrap_used)]
    use super::tests::body;
    use super::*;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_body_never_panics(raw in vec(any::<u8>(), 0..128), params in vec(any::<u8>(), 0..128)) {
            let _ = parse_startup_params(&raw);
            let _ = parse_startup_params(&body(&params));
        }

        #[test]
        fn parameters_round_trip(params in btree_map("[^\u{0}]{1,16}", "[^\u{0}]{0,24}", 0..6)) {
            let mut list = Vec::new();
            for (k, v) in &params {
                list.extend_from_slice(k.as_bytes());
                list.push(0);
                list.extend_from_slice(v.as_bytes());
                list.push(0);
            }
            list.push(0);
            prop_assert_eq!(parse_startup_params(&body(&list)).unwrap(), params);
        }
    }
}
