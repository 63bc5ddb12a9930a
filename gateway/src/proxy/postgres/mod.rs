//! The PostgreSQL adapter: psql, pgbench, libpq, JDBC and tokio-postgres clients connect here
//! with their token as password; the database name picks the target; the gateway logs in to
//! the real server with its own credentials and relays the session through the policy chain.
//!
//! Files: `startup.rs` (TLS and start-up), `upstream.rs` (the gateway's login to the server),
//! `decode.rs` (checked decoding of extended-protocol client messages), `frontend.rs` (judging
//! client messages), `relay.rs` (the session loop and server messages), `rows.rs` (masking
//! result rows), `wire.rs` (framing and composed messages).

mod budget;
mod cells;
pub(crate) use cells::type_name;
pub mod config;
mod copy;
mod decode;
mod extended;
mod frontend;
mod leaks;
mod params;
mod relay;
mod results;
mod rows;
mod startup;
mod upstream;
mod wire;

use crate::policy::Protocol;
use crate::proxy::accept::{Adapter, Incoming};
use crate::session::{Credential, Gateway, Login, RefusalKind};
use config::PostgresListener;
use config::PostgresUpstream;
use relay::{End, Relay};
use startup::Opening;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use wire::sqlstate;

/// Where a cancel key leads: the server backend to cancel, and the session's own notifier
/// (to cancel an approval wait, which the server knows nothing of).
struct CancelTarget {
    upstream: PostgresUpstream,
    process_id: i32,
    secret_key: i32,
    notify: Arc<Notify>,
}

/// The gateway's BackendKeyData → the real one. Clients only ever see the gateway's keys.
#[derive(Default, Clone)]
struct CancelMap(Arc<Mutex<HashMap<(i32, i32), CancelTarget>>>);

/// At start: log in once to each PostgreSQL target's server, and refuse to start when the
/// gateway's role there is a superuser (unless the target allows it). A server that cannot be
/// reached now is only warned about: every later login makes the same check.
pub async fn check_upstreams(config: &crate::config::Config) -> anyhow::Result<()> {
    for (name, target) in &config.targets {
        let Some(up) = &target.postgres else { continue };
        let none = std::collections::BTreeMap::new();
        let probe = upstream::connect(up, &none, 1 << 20, target.allow_privileged_upstream);
        match tokio::time::timeout(std::time::Duration::from_secs(5), probe).await {
            Ok(Ok(_)) => {}
            Ok(Err(e @ upstream::UpstreamError::Privileged(..))) => {
                anyhow::bail!("target `{name}`: {e}")
            }
            Ok(Err(e)) => tracing::warn!(target = %name, "upstream not reachable at start: {e}"),
            Err(_) => tracing::warn!(target = %name, "upstream not reachable at start: timed out"),
        }
    }
    Ok(())
}

/// The PostgreSQL adapter behind the front door ([`crate::proxy::accept`]).
pub struct Postgres {
    gw: Arc<Gateway>,
    cfg: PostgresListener,
    tls: Option<TlsAcceptor>,
    cancels: CancelMap,
}

impl Postgres {
    /// The adapter for `[postgres]`; TLS material is loaded here, so a bad certificate stops
    /// the gateway at start-up.
    pub fn new(gw: Arc<Gateway>) -> anyhow::Result<Option<Postgres>> {
        let Some(cfg) = gw.config().postgres.clone() else {
            return Ok(None);
        };
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(cert), Some(key)) => Some(
                crate::proxy::tls::acceptor(cert, key)
                    .map_err(|e| anyhow::anyhow!("[postgres] TLS: {e}"))?,
            ),
            _ => None,
        };
        Ok(Some(Postgres {
            gw,
            cfg,
            tls,
            cancels: CancelMap::default(),
        }))
    }
}

impl Adapter for Postgres {
    fn protocol(&self) -> &'static str {
        "postgres"
    }

    async fn serve(self: Arc<Self>, conn: Incoming) {
        let addr = conn.addr;
        if let Err(e) = handle(&self, conn).await {
            tracing::info!(client = %addr, "postgres connection ended: {e}");
        }
    }

    /// An ErrorResponse in place of the answer to SSLRequest or the start-up packet: libpq
    /// reads and shows an error there.
    fn refusal_now(&self, why: &str) -> Vec<u8> {
        let msg = format!("sorry, too many clients already: {why}");
        wire::error("FATAL", sqlstate::TOO_MANY_CONNECTIONS, &msg).to_vec()
    }

    /// As the server says it when `max_connections` is reached: after TLS and start-up, a
    /// `FATAL 53300`, so libpq shows the reason.
    async fn refuse(self: Arc<Self>, tcp: TcpStream, why: String) {
        if let Ok(Opening::Startup { mut io, .. }) = startup::open(tcp, self.tls.as_ref()).await {
            let msg = format!("sorry, too many clients already: {why}");
            let _ = io
                .write_all(&wire::error("FATAL", sqlstate::TOO_MANY_CONNECTIONS, &msg))
                .await;
            let _ = io.shutdown().await;
        }
    }
}

/// One client connection, from its first byte to its session's end.
async fn handle(pg: &Postgres, conn: Incoming) -> Result<(), String> {
    let Incoming {
        tcp,
        addr,
        admission,
    } = conn;
    let (gw, cfg) = (&pg.gw, &pg.cfg);
    let opening = startup::open(tcp, pg.tls.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let (mut io, is_tls, params) = match opening {
        Opening::Cancel {
            process_id,
            secret_key,
        } => return cancel(&pg.cancels, process_id, secret_key).await,
        Opening::Startup { io, tls, params } => (io, tls, params),
    };
    let fatal = |code: &str, msg: &str| wire::error("FATAL", code, msg);
    if params.contains_key("replication") {
        let _ = io
            .write_all(&fatal(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "replication connections are not proxied",
            ))
            .await;
        return Err("replication refused".into());
    }
    if !is_tls && !cfg.allow_plaintext_password {
        let msg = "warden requires TLS: connect with sslmode=require (the password is a token)";
        let _ = io
            .write_all(&fatal(sqlstate::INVALID_AUTHORIZATION, msg))
            .await;
        return Err("plaintext refused".into());
    }
    let database = params
        .get("database")
        .or_else(|| params.get("user"))
        .cloned()
        .unwrap_or_default();
    let token = startup::read_password(&mut io)
        .await
        .map_err(|e| e.to_string())?;
    let login = Login {
        protocol: Protocol::Postgres,
        target: &database,
        client_addr: addr.to_string(),
        credential: Credential::Token(&token),
    };
    let session = match gw.authenticate(login).await {
        Ok(s) => s,
        Err(refusal) => {
            let (code, msg) = match refusal.kind {
                RefusalKind::Credential => (sqlstate::INVALID_PASSWORD, refusal.message.clone()),
                RefusalKind::UnknownTarget => (
                    sqlstate::INVALID_CATALOG,
                    format!("database \"{database}\" does not exist ({refusal})"),
                ),
                RefusalKind::NotPermitted => {
                    (sqlstate::INVALID_AUTHORIZATION, refusal.message.clone())
                }
                RefusalKind::TooManySessions => {
                    (sqlstate::TOO_MANY_CONNECTIONS, refusal.message.clone())
                }
                RefusalKind::Unavailable => {
                    (sqlstate::CANNOT_CONNECT_NOW, format!("warden: {refusal}"))
                }
            };
            let _ = io.write_all(&fatal(code, &msg)).await;
            return Err(refusal.message);
        }
    };
    if !admission.authenticated() {
        // The deadline passed while the login was checked: the front door is closing this.
        session
            .close("authenticated after the pre-auth deadline")
            .await;
        return Err("pre-auth deadline passed".into());
    }
    let Some(up_cfg) = gw
        .config()
        .targets
        .get(&database)
        .and_then(|t| t.postgres.clone())
    else {
        session.close("target has no upstream").await;
        return Err("no upstream".into());
    };
    let forward = match params::startup(&params, up_cfg.allow_options) {
        Ok(forward) => forward,
        Err(msg) => {
            let _ = io
                .write_all(&fatal(sqlstate::FEATURE_NOT_SUPPORTED, &msg))
                .await;
            session.close(&msg).await;
            return Err(msg);
        }
    };
    let max = usize::try_from(cfg.max_message_size.0).unwrap_or(usize::MAX);
    let privileged_ok = gw
        .config()
        .targets
        .get(&database)
        .is_some_and(|t| t.allow_privileged_upstream);
    let up = match upstream::connect(&up_cfg, &forward, max, privileged_ok).await {
        Ok(up) => up,
        Err(e) => {
            tracing::error!(target = %database, "upstream login failed: {e}");
            let _ = io
                .write_all(&fatal(
                    sqlstate::CONNECTION_FAILURE,
                    "warden: cannot reach the database",
                ))
                .await;
            session.close(&format!("upstream: {e}")).await;
            return Err(e.to_string());
        }
    };

    let (up_process_id, up_secret_key) = (up.process_id, up.secret_key);
    // Our own cancel key for this session, mapped to the server's.
    let notify = Arc::new(Notify::new());
    let key = loop {
        let key: (i32, i32) = (rand::random(), rand::random());
        let mut map = pg.cancels.0.lock().map_err(|_| "cancel map poisoned")?;
        if let std::collections::hash_map::Entry::Vacant(slot) = map.entry(key) {
            slot.insert(CancelTarget {
                upstream: up_cfg.clone(),
                process_id: up.process_id,
                secret_key: up.secret_key,
                notify: notify.clone(),
            });
            break key;
        }
    };
    let mut hello = bytes::BytesMut::new();
    hello.extend_from_slice(&wire::auth_ok());
    hello.extend_from_slice(&upstream::concat(&up.parameters));
    hello.extend_from_slice(&wire::backend_key_data(key.0, key.1));
    hello.extend_from_slice(&wire::ready_for_query(b'I'));
    if io.write_all(&hello).await.is_err() {
        pg.cancels.0.lock().map(|mut m| m.remove(&key)).ok();
        session.close("client closed").await;
        return Ok(());
    }

    let (client_r, client_w) = tokio::io::split(io);
    let mut relay = Relay {
        session,
        cfg: cfg.clone(),
        client_r: wire::FrameReader::new(client_r, max),
        client_w,
        up_r: up.reader,
        up_w: up.writer,
        to_client: bytes::BytesMut::with_capacity(64 * 1024),
        to_upstream: bytes::BytesMut::new(),
        expect: Default::default(),
        statements: Default::default(),
        portals: Default::default(),
        batch: Default::default(),
        status: b'I',
        failed: false,
        rows: Default::default(),
        copy_in: false,
        copy_expected: false,
        client_copying: false,
        plain_tables: up.plain_tables,
        views: up.views,
        hold: false,
        cancel: notify,
        privileged_ok,
        pending: Default::default(),
    };
    let end = relay.run().await;
    let _ = relay.flush_client().await;
    // The gateway ended a session with a statement still running (expiry, shutdown, idle, a
    // protocol error): cancel it, so nothing the session started goes on (or commits) after
    // its end. The connection's close then rolls back any open transaction.
    if !relay.expect.is_empty() && !matches!(end, End::ServerClosed(_)) {
        let (pid, secret) = (up_process_id, up_secret_key);
        if let Err(e) = upstream::cancel(&up_cfg, pid, secret).await {
            tracing::warn!(target = %database, "cannot cancel the running statement: {e}");
        }
    }
    pg.cancels.0.lock().map(|mut m| m.remove(&key)).ok();
    let reason = end.reason();
    relay.session.close(&reason).await;
    match end {
        End::ClientClosed | End::Idle | End::Shutdown | End::Expired => Ok(()),
        End::ServerClosed(e) | End::Error(e) | End::Malformed(e) => Err(e),
    }
}

/// Relay a CancelRequest: wake an approval wait, and cancel the server's running statement.
async fn cancel(cancels: &CancelMap, process_id: i32, secret_key: i32) -> Result<(), String> {
    let target = cancels
        .0
        .lock()
        .map_err(|_| "cancel map poisoned")?
        .get(&(process_id, secret_key))
        .map(|t| {
            t.notify.notify_waiters();
            (t.upstream.clone(), t.process_id, t.secret_key)
        });
    match target {
        Some((cfg, pid, key)) => upstream::cancel(&cfg, pid, key)
            .await
            .map_err(|e| e.to_string()),
        // An unknown key gets no answer, as with the server itself.
        None => Ok(()),
    }
}
