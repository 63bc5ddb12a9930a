//! A raw PostgreSQL protocol client for tests whose attack needs exact messages: pipelines,
//! start-up parameters, prepared-statement names, COPY data before the server asks for it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One frontend message: tag, length, body.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let len = i32::try_from(body.len() + 4).unwrap();
    [&[tag][..], &len.to_be_bytes(), body].concat()
}

/// One backend message, or `None` at end of stream.
pub async fn read_message(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await.ok()?;
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    let mut body = vec![0u8; usize::try_from(len - 4).unwrap()];
    s.read_exact(&mut body).await.ok()?;
    Some((head[0], body))
}

/// Start up with `params` besides user and database, the token as the cleartext password.
/// `Ok` at ReadyForQuery; `Err` with the ErrorResponse's fields when the login is refused.
pub async fn try_login(
    port: u16,
    database: &str,
    token: &str,
    params: &[(&str, &str)],
) -> Result<TcpStream, Vec<(u8, String)>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut body = 196608i32.to_be_bytes().to_vec();
    for (k, v) in [("user", "agent"), ("database", database)]
        .iter()
        .chain(params)
    {
        body.extend_from_slice(format!("{k}\0{v}\0").as_bytes());
    }
    body.push(0);
    let len = i32::try_from(body.len() + 4).unwrap();
    s.write_all(&[&len.to_be_bytes()[..], &body].concat())
        .await
        .unwrap();
    let (tag, body) = read_message(&mut s).await.unwrap();
    assert_eq!(
        (tag, &body[..]),
        (b'R', &3i32.to_be_bytes()[..]),
        "cleartext"
    );
    s.write_all(&message(b'p', format!("{token}\0").as_bytes()))
        .await
        .unwrap();
    loop {
        match read_message(&mut s).await {
            Some((b'Z', _)) => return Ok(s),
            Some((b'E', body)) => return Err(fields(&body)),
            Some(_) => {}
            None => panic!("closed during login"),
        }
    }
}

/// [`try_login`] with no more parameters; a refusal panics.
pub async fn login(port: u16, database: &str, token: &str) -> TcpStream {
    try_login(port, database, token, &[])
        .await
        .unwrap_or_else(|e| panic!("login refused: {e:?}"))
}

/// The fields of an ErrorResponse or NoticeResponse body by type byte.
pub fn fields(body: &[u8]) -> Vec<(u8, String)> {
    body.split(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| (f[0], String::from_utf8_lossy(&f[1..]).into_owned()))
        .collect()
}

/// A simple Query message.
pub fn query(sql: &str) -> Vec<u8> {
    message(b'Q', format!("{sql}\0").as_bytes())
}

/// Parse of `sql` as statement `name`.
pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    message(
        b'P',
        &[
            name.as_bytes(),
            b"\0",
            sql.as_bytes(),
            b"\0",
            &0i16.to_be_bytes(),
        ]
        .concat(),
    )
}

/// Bind of statement `statement` to portal `portal`, no parameters, text results.
pub fn bind(portal: &str, statement: &str) -> Vec<u8> {
    bind_with_formats(portal, statement, &[])
}

/// Bind with the given result format codes (none: all text).
fn bind_with_formats(portal: &str, statement: &str, formats: &[i16]) -> Vec<u8> {
    let mut body = [portal.as_bytes(), b"\0", statement.as_bytes(), b"\0"].concat();
    body.extend_from_slice(&0i16.to_be_bytes()); // parameter formats
    body.extend_from_slice(&0i16.to_be_bytes()); // parameters
    body.extend_from_slice(&(formats.len() as i16).to_be_bytes());
    for f in formats {
        body.extend_from_slice(&f.to_be_bytes());
    }
    message(b'B', &body)
}

/// Bind asking for every result column in binary.
pub fn bind_binary(portal: &str, statement: &str) -> Vec<u8> {
    bind_with_formats(portal, statement, &[1])
}

/// Describe of `portal`.
pub fn describe_portal(portal: &str) -> Vec<u8> {
    message(b'D', &[b"P", portal.as_bytes(), b"\0"].concat())
}

/// Execute of `portal`, all rows.
pub fn execute(portal: &str) -> Vec<u8> {
    message(
        b'E',
        &[portal.as_bytes(), b"\0", &0i32.to_be_bytes()].concat(),
    )
}

pub fn sync() -> Vec<u8> {
    message(b'S', b"")
}

pub fn flush() -> Vec<u8> {
    message(b'H', b"")
}

/// Describe of the prepared statement `name`.
pub fn describe_statement(name: &str) -> Vec<u8> {
    message(b'D', &[b"S", name.as_bytes(), b"\0"].concat())
}

/// Send `bytes` (ending in a Flush) and read the tags of the next `n` messages (20 s at most).
pub async fn flushed(s: &mut TcpStream, bytes: &[u8], n: usize) -> Vec<u8> {
    s.write_all(bytes).await.unwrap();
    let mut tags = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while tags.len() < n {
            let (tag, _) = read_message(s).await.expect("connection open");
            tags.push(tag);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {tags:?} after the Flush"));
    tags
}

/// Parse / Bind / Execute with the statement text (unnamed statement and portal).
pub fn pbe(sql: &str) -> Vec<u8> {
    [parse("", sql), bind("", ""), execute("")].concat()
}

/// What one round trip returned: every message up to and including ReadyForQuery.
#[derive(Debug, Default)]
pub struct Reply {
    pub messages: Vec<(u8, Vec<u8>)>,
}

impl Reply {
    /// SQLSTATEs of the ErrorResponses, in order.
    pub fn errors(&self) -> Vec<String> {
        self.of(b'E')
            .map(|b| {
                fields(b)
                    .into_iter()
                    .find(|(t, _)| *t == b'C')
                    .map(|(_, c)| c)
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The message texts of the ErrorResponses.
    pub fn error_texts(&self) -> Vec<String> {
        self.of(b'E')
            .map(|b| {
                fields(b)
                    .into_iter()
                    .find(|(t, _)| *t == b'M')
                    .map(|(_, m)| m)
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Every DataRow's cells as text (NULL as "NULL").
    pub fn rows(&self) -> Vec<Vec<String>> {
        self.of(b'D')
            .map(|b| {
                let n = i16::from_be_bytes([b[0], b[1]]);
                let mut at = 2;
                (0..n)
                    .map(|_| {
                        let len = i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
                        at += 4;
                        if len < 0 {
                            return "NULL".to_string();
                        }
                        let len = usize::try_from(len).unwrap();
                        let cell = String::from_utf8_lossy(&b[at..at + len]).into_owned();
                        at += len;
                        cell
                    })
                    .collect()
            })
            .collect()
    }

    /// CommandComplete tags.
    pub fn completions(&self) -> Vec<String> {
        self.of(b'C')
            .map(|b| String::from_utf8_lossy(&b[..b.len().saturating_sub(1)]).into_owned())
            .collect()
    }

    /// The transaction status of the final ReadyForQuery.
    pub fn status(&self) -> u8 {
        self.messages
            .iter()
            .rev()
            .find(|(t, _)| *t == b'Z')
            .map(|(_, b)| b[0])
            .unwrap_or(0)
    }

    pub fn of(&self, tag: u8) -> impl Iterator<Item = &[u8]> {
        self.messages
            .iter()
            .filter(move |(t, _)| *t == tag)
            .map(|(_, b)| b.as_slice())
    }
}

/// Send `bytes` and read until `n` ReadyForQuery messages arrived (20 s at most).
pub async fn round_trip(s: &mut TcpStream, bytes: &[u8], n: usize) -> Reply {
    round_trip_within(s, bytes, n, Duration::from_secs(20)).await
}

/// [`round_trip`] with a longer wait (a message of 100,000 statements on a busy machine).
pub async fn round_trip_within(s: &mut TcpStream, bytes: &[u8], n: usize, wait: Duration) -> Reply {
    s.write_all(bytes).await.unwrap();
    let mut reply = Reply::default();
    let mut left = n;
    tokio::time::timeout(wait, async {
        while left > 0 {
            let Some((tag, body)) = read_message(s).await else {
                panic!("closed: {reply:?}");
            };
            if tag == b'Z' {
                left -= 1;
            }
            reply.messages.push((tag, body));
        }
    })
    .await
    .unwrap_or_else(|_| {
        let last: Vec<_> = reply.messages.iter().rev().take(5).collect();
        panic!(
            "no ReadyForQuery within {wait:?}; {} messages, the last: {last:?}",
            reply.messages.len()
        )
    });
    reply
}
