//! The gateway's own connection to the real PostgreSQL server: TCP, optional TLS (with the
//! server certificate pinned to a CA file, or not checked for test setups), and the login with
//! the gateway's credentials — SCRAM-SHA-256, md5, cleartext or trust. Clients never see these
//! credentials; they only see the server's ParameterStatus messages.

use super::config::{PostgresUpstream, UpstreamTls};
use super::wire::{Frame, FrameReader, WireError};
use crate::proxy::{BoxedIo, tls};
use bytes::{Bytes, BytesMut};
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::{backend, frontend};
use std::collections::BTreeMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

/// Why the upstream login failed. Messages are for the gateway's log; clients get a generic
/// "cannot reach the database" so they learn nothing about the gateway's credentials.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("the server refused TLS")]
    TlsRefused,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot read the password file: {0}")]
    PasswordFile(std::io::Error),
    #[error("the server asks for a password and none is configured")]
    NoPassword,
    #[error("unsupported authentication request from the server ({0})")]
    UnsupportedAuth(String),
    #[error("login refused: {0}")]
    Refused(String),
    #[error(
        "the upstream role `{0}` is privileged ({1}): every policy could be bypassed through it; \
         use an unprivileged role or set allow_privileged_upstream = true on the target"
    )]
    Privileged(String, String),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A logged-in upstream connection.
pub struct Upstream {
    pub reader: FrameReader<ReadHalf<BoxedIo>>,
    pub writer: WriteHalf<BoxedIo>,
    /// The server's ParameterStatus frames, to replay to the client.
    pub parameters: Vec<Frame>,
    pub process_id: i32,
    pub secret_key: i32,
    /// See [`plain_tables`].
    pub plain_tables: std::collections::HashSet<String>,
    /// See [`views`].
    pub views: std::sync::Arc<crate::command::sql::Views>,
}

/// Whether a ParameterStatus frame says `is_superuser = on`.
pub fn is_superuser(frame: &Frame) -> bool {
    let mut parts = frame.body().split(|&b| b == 0);
    parts.next() == Some(b"is_superuser") && parts.next() == Some(b"on")
}

/// Connect and log in. `params` are the client's startup parameters to pass on (encoding,
/// DateStyle, application_name, options...), without `user` and `database`.
pub async fn connect(
    cfg: &PostgresUpstream,
    params: &BTreeMap<String, String>,
    max_message: usize,
    allow_privileged: bool,
) -> Result<Upstream, UpstreamError> {
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let mut tcp = TcpStream::connect(&addr)
        .await
        .map_err(|source| UpstreamError::Connect {
            addr: addr.clone(),
            source,
        })?;
    tcp.set_nodelay(true)?;
    let io: BoxedIo = match cfg.tls {
        UpstreamTls::Disable => Box::new(tcp),
        UpstreamTls::Require | UpstreamTls::Verify => {
            let mut buf = BytesMut::new();
            frontend::ssl_request(&mut buf);
            tcp.write_all(&buf).await?;
            let answer = tcp.read_u8().await?;
            if answer != b'S' {
                return Err(UpstreamError::TlsRefused);
            }
            let connector =
                tls::client(cfg.tls, cfg.ca_file.as_deref()).map_err(UpstreamError::Tls)?;
            let name = tls::server_name(&cfg.host).map_err(UpstreamError::Tls)?;
            Box::new(
                connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| UpstreamError::Tls(e.to_string()))?,
            )
        }
    };
    let (r, mut writer) = tokio::io::split(io);
    let mut reader = FrameReader::new(r, max_message);

    let mut startup: Vec<(&str, &str)> = vec![("user", &cfg.user), ("database", &cfg.database)];
    startup.extend(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut buf = BytesMut::new();
    frontend::startup_message(startup, &mut buf)?;
    writer.write_all(&buf).await?;

    let password = match &cfg.password_file {
        Some(path) => Some(read_password(path)?),
        None => None,
    };
    authenticate(&mut reader, &mut writer, &cfg.user, password.as_deref()).await?;

    let mut parameters = Vec::new();
    let (mut process_id, mut secret_key) = (0, 0);
    loop {
        let frame = reader.next().await?;
        match frame.tag {
            b'S' => {
                // The server reports `is_superuser` at login: the gateway's own role must not
                // be one unless the target says so.
                if !allow_privileged && is_superuser(&frame) {
                    return Err(UpstreamError::Privileged(
                        cfg.user.clone(),
                        "a superuser".into(),
                    ));
                }
                parameters.push(frame)
            }
            b'K' => {
                if let Some(backend::Message::BackendKeyData(k)) = parse(&frame)? {
                    process_id = k.process_id();
                    secret_key = k.secret_key();
                }
            }
            b'Z' => break,
            b'E' => {
                return Err(UpstreamError::Refused(
                    super::wire::parse_error_fields(frame.body()).1,
                ));
            }
            _ => {} // NoticeResponse during start-up: nothing the client needs
        }
    }
    if !allow_privileged {
        let held = privileges(&mut reader, &mut writer).await?;
        if !held.is_empty() {
            return Err(UpstreamError::Privileged(cfg.user.clone(), held.join(", ")));
        }
    }
    let plain_tables = plain_tables(&mut reader, &mut writer).await?;
    let views = views(&mut reader, &mut writer).await?;
    Ok(Upstream {
        plain_tables,
        views,
        reader,
        writer,
        parameters,
        process_id,
        secret_key,
    })
}

/// What makes a role able to step around every policy: being or becoming (by membership) a
/// superuser, creating roles (CREATEROLE can grant itself the server-program roles), replication,
/// bypassing row security, or membership in the roles that run programs and read or write
/// files on the server.
const PRIVILEGES: &str = "/* warden: upstream privilege check */ SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolreplication, r.rolbypassrls \
     FROM pg_catalog.pg_roles r \
     WHERE pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER') \
       AND (r.rolsuper OR r.rolcreaterole OR r.rolreplication OR r.rolbypassrls \
            OR r.rolname IN ('pg_execute_server_program', 'pg_read_server_files', 'pg_write_server_files'))";

/// Ask the server what privileges the gateway's role holds or can take on (see
/// [`PRIVILEGES`]); empty when none. One round trip at each upstream login.
async fn privileges(
    reader: &mut FrameReader<ReadHalf<BoxedIo>>,
    writer: &mut WriteHalf<BoxedIo>,
) -> Result<Vec<String>, UpstreamError> {
    let rows = rows(reader, writer, PRIVILEGES).await?;
    Ok(rows
        .iter()
        .map(|cells| {
            let cell = |i: usize| cells.get(i).map(String::as_str).unwrap_or_default();
            let attrs: Vec<&str> = [
                (1, "superuser"),
                (2, "createrole"),
                (3, "replication"),
                (4, "bypassrls"),
            ]
            .into_iter()
            .filter(|(i, _)| cell(*i) == "t")
            .map(|(_, a)| a)
            .collect();
            if attrs.is_empty() {
                format!("member of {}", cell(0))
            } else {
                format!("{}: {}", cell(0), attrs.join(" "))
            }
        })
        .collect())
}

/// Relation names that are plain tables (or catalog relations) wherever they occur: reading
/// one cannot write. A view, materialized view or foreign table can (a view may call a
/// function that writes), and so can a name the server does not know yet.
const PLAIN_TABLES: &str = "/* warden: which relations are plain tables */ \
     SELECT c.relname FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') GROUP BY c.relname \
     HAVING bool_and(c.relkind IN ('r', 'p') OR n.nspname IN ('pg_catalog', 'information_schema'))";

/// See [`PLAIN_TABLES`].
pub async fn plain_tables(
    reader: &mut FrameReader<ReadHalf<BoxedIo>>,
    writer: &mut WriteHalf<BoxedIo>,
) -> Result<std::collections::HashSet<String>, UpstreamError> {
    let rows = rows(reader, writer, PLAIN_TABLES).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect())
}

/// Every view and materialized view outside the system schemas, with its definition: column
/// lineage follows a view to its tables (`command/sql/views.rs`). Read once per connection.
const VIEWS: &str = "/* warden: view definitions, for column lineage */ \
     SELECT n.nspname, c.relname, pg_catalog.pg_get_viewdef(c.oid) \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('v', 'm') \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

/// See [`VIEWS`].
pub async fn views(
    reader: &mut FrameReader<ReadHalf<BoxedIo>>,
    writer: &mut WriteHalf<BoxedIo>,
) -> Result<std::sync::Arc<crate::command::sql::Views>, UpstreamError> {
    let rows = rows(reader, writer, VIEWS).await?;
    let views = rows
        .into_iter()
        .filter_map(|r| match <[String; 3]>::try_from(r) {
            Ok([schema, name, def]) => Some((schema, name, def)),
            Err(_) => None,
        });
    Ok(std::sync::Arc::new(crate::command::sql::Views::new(views)))
}

/// Run one query of the gateway's own during login; its rows as text (NULL as empty).
async fn rows(
    reader: &mut FrameReader<ReadHalf<BoxedIo>>,
    writer: &mut WriteHalf<BoxedIo>,
    sql: &str,
) -> Result<Vec<Vec<String>>, UpstreamError> {
    let mut buf = BytesMut::new();
    frontend::query(sql, &mut buf)?;
    writer.write_all(&buf).await?;
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        let frame = reader.next().await?;
        match frame.tag {
            b'D' => {
                let cells = super::wire::parse_data_row(frame.body())?;
                rows.push(
                    cells
                        .iter()
                        .map(|c| {
                            c.map(|v| String::from_utf8_lossy(v).into_owned())
                                .unwrap_or_default()
                        })
                        .collect(),
                );
            }
            b'E' => error = Some(super::wire::parse_error_fields(frame.body()).1),
            b'Z' => {
                return match error {
                    Some(e) => Err(UpstreamError::Refused(e)),
                    None => Ok(rows),
                };
            }
            _ => {}
        }
    }
}

async fn authenticate(
    reader: &mut FrameReader<ReadHalf<BoxedIo>>,
    writer: &mut WriteHalf<BoxedIo>,
    user: &str,
    password: Option<&[u8]>,
) -> Result<(), UpstreamError> {
    let mut scram: Option<sasl::ScramSha256> = None;
    loop {
        let frame = reader.next().await?;
        if frame.tag == b'E' {
            return Err(UpstreamError::Refused(
                super::wire::parse_error_fields(frame.body()).1,
            ));
        }
        let mut buf = BytesMut::new();
        match parse(&frame)? {
            Some(backend::Message::AuthenticationOk) => return Ok(()),
            Some(backend::Message::AuthenticationCleartextPassword) => {
                frontend::password_message(password.ok_or(UpstreamError::NoPassword)?, &mut buf)?;
            }
            Some(backend::Message::AuthenticationMd5Password(body)) => {
                let hash = md5_hash(
                    user.as_bytes(),
                    password.ok_or(UpstreamError::NoPassword)?,
                    body.salt(),
                );
                frontend::password_message(hash.as_bytes(), &mut buf)?;
            }
            Some(backend::Message::AuthenticationSasl(body)) => {
                let mut mechanisms = body.mechanisms();
                let mut has_scram = false;
                while let Some(m) = fallible_iterator::FallibleIterator::next(&mut mechanisms)? {
                    has_scram |= m == sasl::SCRAM_SHA_256;
                }
                if !has_scram {
                    return Err(UpstreamError::UnsupportedAuth(
                        "SASL without SCRAM-SHA-256".into(),
                    ));
                }
                // Channel binding is not offered: TLS to the upstream, when used, is verified
                // separately, and plain loopback has no channel to bind.
                let s = sasl::ScramSha256::new(
                    password.ok_or(UpstreamError::NoPassword)?,
                    sasl::ChannelBinding::unsupported(),
                );
                frontend::sasl_initial_response(sasl::SCRAM_SHA_256, s.message(), &mut buf)?;
                scram = Some(s);
            }
            Some(backend::Message::AuthenticationSaslContinue(body)) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| UpstreamError::UnsupportedAuth("SASL out of order".into()))?;
                s.update(body.data())?;
                frontend::sasl_response(s.message(), &mut buf)?;
            }
            Some(backend::Message::AuthenticationSaslFinal(body)) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| UpstreamError::UnsupportedAuth("SASL out of order".into()))?;
                // Verifies the server's signature: a server that does not know the password
                // cannot complete the exchange.
                s.finish(body.data())?;
                continue;
            }
            _ => {
                return Err(UpstreamError::UnsupportedAuth(format!(
                    "message `{}`",
                    frame.tag as char
                )));
            }
        }
        writer.write_all(&buf).await?;
    }
}

fn parse(frame: &Frame) -> Result<Option<backend::Message>, UpstreamError> {
    let mut b = BytesMut::from(&frame.raw[..]);
    Ok(backend::Message::parse(&mut b)?)
}

fn read_password(path: &std::path::Path) -> Result<Vec<u8>, UpstreamError> {
    let mut p = std::fs::read(path).map_err(UpstreamError::PasswordFile)?;
    while p.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
        p.pop();
    }
    Ok(p)
}

/// Send a CancelRequest for an upstream backend (a new connection, as the protocol wants).
pub async fn cancel(
    cfg: &PostgresUpstream,
    process_id: i32,
    secret_key: i32,
) -> std::io::Result<()> {
    let mut tcp = TcpStream::connect((cfg.host.as_str(), cfg.port)).await?;
    let mut buf = BytesMut::new();
    frontend::cancel_request(process_id, secret_key, &mut buf);
    tcp.write_all(&buf).await?;
    // The server closes the connection when done; wait for that briefly.
    let mut sink = [0u8; 1];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), tcp.read(&mut sink)).await;
    Ok(())
}

/// Raw bytes of frames, for writing.
pub fn concat(frames: &[Frame]) -> Bytes {
    let mut b = BytesMut::new();
    for f in frames {
        b.extend_from_slice(&f.raw);
    }
    b.freeze()
}
