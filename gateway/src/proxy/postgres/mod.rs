//! The PostgreSQL adapter: psql, pgbench, libpq, JDBC and tokio-postgres clients connect here
//! with their token as password; the database name picks the target; the gateway logs in to
//! the real server with its own credentials and relays the session through the policy chain.
//!
//! Files: `startup.rs` (TLS and start-up), `upstream.rs` (the gateway's login to the server),
//! `decode.rs` (checked decoding of extended-protocol client messages), `frontend.rs` (judging
//! client messages), `relay.rs` (the session loop and server messages), `rows.rs` (masking
//! result rows), `wire.rs` (framing and composed messages).

mod decode;
mod frontend;
mod relay;
mod rows;
mod startup;
mod upstream;
mod wire;

use crate::config::PostgresUpstream;
use crate::policy::Protocol;
use crate::session::{Gateway, Session, SessionError};
use relay::{End, Relay};
use startup::Opening;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
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

/// Accept PostgreSQL clients until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    gw: Arc<Gateway>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let Some(cfg) = gw.config.postgres.clone() else {
        return;
    };
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => match crate::proxy::tls::acceptor(cert, key) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::error!("postgres TLS disabled: {e}");
                None
            }
        },
        _ => None,
    };
    let cancels = CancelMap::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, addr)) => {
                    let (gw, tls, cancels) = (gw.clone(), tls.clone(), cancels.clone());
                    tokio::spawn(async move {
                        if let Err(e) = handle(tcp, addr, gw, tls, cancels).await {
                            tracing::info!(client = %addr, "postgres connection ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => return,
        }
    }
}

/// One client connection, from its first byte to its session's end.
async fn handle(
    tcp: TcpStream,
    addr: SocketAddr,
    gw: Arc<Gateway>,
    tls: Option<TlsAcceptor>,
    cancels: CancelMap,
) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    let Some(cfg) = gw.config.postgres.clone() else {
        return Ok(());
    };
    let opening = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        startup::open(tcp, tls.as_ref()),
    )
    .await
    .map_err(|_| "start-up timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let (mut io, is_tls, params) = match opening {
        Opening::Cancel {
            process_id,
            secret_key,
        } => return cancel(&cancels, process_id, secret_key).await,
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
    let principal = match gw.verifier.verify(&token) {
        Ok(p) => p,
        Err(e) => {
            let _ = io
                .write_all(&fatal(
                    sqlstate::INVALID_PASSWORD,
                    &format!("token rejected: {e}"),
                ))
                .await;
            return Err(format!("token rejected: {e}"));
        }
    };
    let session = match Session::open(
        gw.clone(),
        principal,
        &database,
        Protocol::Postgres,
        addr.to_string(),
    )
    .await
    {
        Ok(s) => s,
        Err(e @ (SessionError::UnknownTarget(_) | SessionError::WrongProtocol { .. })) => {
            let msg = format!("database \"{database}\" does not exist ({e})");
            let _ = io.write_all(&fatal(sqlstate::INVALID_CATALOG, &msg)).await;
            return Err(e.to_string());
        }
        Err(e) => {
            let _ = io
                .write_all(&fatal(
                    sqlstate::CONNECTION_FAILURE,
                    "warden: audit store unavailable",
                ))
                .await;
            return Err(e.to_string());
        }
    };
    let Some(up_cfg) = gw
        .config
        .targets
        .get(&database)
        .and_then(|t| t.postgres.clone())
    else {
        session.close("target has no upstream").await;
        return Err("no upstream".into());
    };
    let forward: std::collections::BTreeMap<String, String> = params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "user" | "database"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let max = usize::try_from(cfg.max_message_size.0).unwrap_or(usize::MAX);
    let up = match upstream::connect(&up_cfg, &forward, max).await {
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

    // Our own cancel key for this session, mapped to the server's.
    let notify = Arc::new(Notify::new());
    let key = loop {
        let key: (i32, i32) = (rand::random(), rand::random());
        let mut map = cancels.0.lock().map_err(|_| "cancel map poisoned")?;
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
        cancels.0.lock().map(|mut m| m.remove(&key)).ok();
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
        rows: Default::default(),
        copy_in: false,
        cancel: notify,
    };
    let end = relay.run().await;
    let _ = relay.flush_client().await;
    cancels.0.lock().map(|mut m| m.remove(&key)).ok();
    let reason = end.reason();
    relay.session.close(&reason).await;
    match end {
        End::ClientClosed | End::Idle | End::Shutdown => Ok(()),
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
