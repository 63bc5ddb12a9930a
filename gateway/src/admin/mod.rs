//! The admin API: HTTP/1.1 on a loopback address, or HTTPS on any address (`[admin] tls_cert`,
//! `tls_key`), for `warden approvals` and compliance.
//!
//! | route                              | who                        | answer                      |
//! |------------------------------------|----------------------------|-----------------------------|
//! | `GET /v1/health`                   | anyone                     | `{"status":"ok"}`           |
//! | `GET /metrics`                     | anyone, or `metrics_groups` | OpenMetrics text (`metrics.rs`) |
//! | `GET /v1/approvals`                | approvers                  | `{"approvals":[PendingInfo]}` |
//! | `POST /v1/approvals/{id}/approve`  | approvers, not the parties | `{"id",..,"decision"}`      |
//! | `POST /v1/approvals/{id}/deny`     | approvers, not the parties | `{"id",..,"decision"}`      |
//! | `GET /v1/audit/...`, `/v1/sessions...` | auditors                 | see `audit.rs`              |
//!
//! Everything but health needs `Authorization: Bearer <JWT>`, checked by the gateway's own
//! [`Verifier`]. Decision bodies are `{"reason": "..."}`, at most [`MAX_BODY`] bytes. Errors
//! are `{"error": "..."}` with 400, 401, 403, 404, 405, 410, 413 or 500. Tokens are never
//! logged. The pending list is for approvers only: it shows other principals' commands.
//!
//! The audit reads exist because redb locks the database to the gateway's process: while the
//! gateway runs, this is how compliance reads and checks the trail without stopping it or
//! copying the file.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};

mod audit;

use audit::AuditRoute;

use crate::approvals::{ApprovalError, Approvals};
use crate::audit::{AuditStore, VerifyReport};
use crate::identity::{Principal, Verifier};

/// Largest request body read.
pub const MAX_BODY: usize = 64 * 1024;
/// A client that has not sent its headers by then is dropped: slow clients cannot pin slots.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent connections; past it, the oldest connection no approver or auditor has used is
/// closed to make room.
const MAX_CONNECTIONS: usize = 64;
/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub approvals: Approvals,
    pub verifier: Arc<Verifier>,
    pub audit: AuditStore,
    /// `[admin] auditor_groups`.
    pub auditors: Arc<Vec<String>>,
    /// `[admin] metrics_groups`: `None` serves `/metrics` without a token (its labels hold
    /// only names from warden.toml), `Some` asks for a token in one of these groups.
    pub metrics_groups: Option<Arc<Vec<String>>>,
    /// Values read at scrape time: idle instances per module (none when not serving).
    pub gateway: Option<Arc<crate::session::Gateway>>,
}

/// Why the admin API could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "the admin API must listen on a loopback address, not {0}, unless it serves TLS \
         ([admin] tls_cert and tls_key)"
    )]
    NotLoopback(SocketAddr),
    #[error("admin API TLS: {0}")]
    Tls(String),
    #[error("admin API: {0}")]
    Io(#[from] std::io::Error),
}

/// The TLS acceptor `[admin]` asks for, if any.
pub fn tls(config: &crate::config::AdminConfig) -> Result<Option<TlsAcceptor>, AdminError> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(
            crate::proxy::tls::acceptor(cert, key).map_err(AdminError::Tls)?,
        )),
        _ => Ok(None),
    }
}

/// Bind `[admin] listen`, refusing anything but loopback without TLS (config validation checks
/// it too; this keeps the rule where the socket is made).
pub async fn bind(addr: SocketAddr, tls: bool) -> Result<TcpListener, AdminError> {
    if !tls && !addr.ip().is_loopback() {
        return Err(AdminError::NotLoopback(addr));
    }
    Ok(TcpListener::bind(addr).await?)
}

/// Serve until `shutdown` resolves, then let requests in flight finish (up to a few seconds).
/// Spawn it: `tokio::spawn(admin::serve(listener, state, tls, shutdown))`.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AdminError> {
    let local = listener.local_addr()?;
    if tls.is_none() && !local.ip().is_loopback() {
        return Err(AdminError::NotLoopback(local));
    }
    tracing::info!(%local, tls = tls.is_some(), "admin API listening");
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    // Connections no approver or auditor has used yet, oldest first: when every slot is taken,
    // the oldest of these makes room. A local process holding idle or unauthenticated
    // connections cannot lock approvers and auditors out.
    let mut untrusted: VecDeque<(AbortHandle, Arc<AtomicBool>)> = VecDeque::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    untrusted.retain(|(task, trusted)| {
                        !task.is_finished() && !trusted.load(Ordering::Relaxed)
                    });
                    if connections.len() >= MAX_CONNECTIONS {
                        match untrusted.pop_front() {
                            Some((oldest, _)) => oldest.abort(),
                            None => {
                                tracing::warn!("admin API: every connection is in use by approvers or auditors, closing a new one");
                                continue;
                            }
                        }
                    }
                    let trusted = Arc::new(AtomicBool::new(false));
                    let task = connections.spawn(connection(
                        stream,
                        tls.clone(),
                        state.clone(),
                        stop_rx.clone(),
                        trusted.clone(),
                    ));
                    untrusted.push_back((task, trusted));
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("admin API accept: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    Ok(())
}

async fn connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    state: AdminState,
    stop: watch::Receiver<bool>,
    trusted: Arc<AtomicBool>,
) {
    let Some(acceptor) = tls else {
        return http(stream, state, stop, trusted).await;
    };
    // The handshake has the same bound as the headers: a client that opens a connection and
    // says nothing does not keep its slot.
    match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => http(stream, state, stop, trusted).await,
        Ok(Err(err)) => tracing::debug!("admin API TLS handshake: {err}"),
        Err(_) => tracing::debug!("admin API TLS handshake timed out"),
    }
}

/// HTTP/1.1 on one connection, plain or TLS.
async fn http<S>(
    stream: S,
    state: AdminState,
    mut stop: watch::Receiver<bool>,
    trusted: Arc<AtomicBool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        let trusted = trusted.clone();
        async move { Ok::<_, Infallible>(handle(&state, req, &trusted).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!("admin API connection: {err}");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

type Reply = Response<Full<Bytes>>;

enum Route<'a> {
    Health,
    Metrics,
    List,
    Decide { id: &'a str, approve: bool },
    Audit(AuditRoute<'a>),
}

async fn handle(state: &AdminState, req: Request<Incoming>, trusted: &AtomicBool) -> Reply {
    let path = req.uri().path().to_owned();
    let route = match route(req.method(), &path) {
        Ok(route) => route,
        Err(RouteError::NotFound) => return error(StatusCode::NOT_FOUND, "no such endpoint"),
        Err(RouteError::Method(allowed)) => {
            let mut reply = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            reply
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allowed));
            return reply;
        }
    };
    if let Route::Health = route {
        return reply(StatusCode::OK, &json!({"status": "ok"}));
    }
    if let (Route::Metrics, None) = (&route, &state.metrics_groups) {
        return metrics(state);
    }
    let principal = match authenticate(&state.verifier, req.headers()) {
        Ok(principal) => principal,
        Err(message) => {
            let mut reply = error(StatusCode::UNAUTHORIZED, &message);
            reply
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return reply;
        }
    };
    if state.approvals.is_approver(&principal) || audit::is_auditor(state, &principal) {
        trusted.store(true, Ordering::Relaxed);
    }
    match route {
        Route::Health => reply(StatusCode::OK, &json!({"status": "ok"})),
        Route::Metrics => {
            let groups = state
                .metrics_groups
                .as_deref()
                .map_or(&[][..], Vec::as_slice);
            if principal.groups.iter().any(|g| groups.contains(g)) {
                metrics(state)
            } else {
                error(
                    StatusCode::FORBIDDEN,
                    "metrics are for [admin] metrics_groups only",
                )
            }
        }
        Route::List => list(state, &principal),
        Route::Decide { id, approve } => decide(state, &principal, id, approve, req).await,
        Route::Audit(read) => audit::handle(state, &principal, read, req.uri().query()).await,
    }
}

#[derive(Debug)]
enum RouteError {
    NotFound,
    /// The path exists with this method only.
    Method(&'static str),
}

fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, RouteError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (route, allowed) = match segments.as_slice() {
        ["v1", "health"] => (Route::Health, Method::GET),
        ["metrics"] => (Route::Metrics, Method::GET),
        ["v1", "approvals"] => (Route::List, Method::GET),
        ["v1", "approvals", id, "approve"] if !id.is_empty() => {
            (Route::Decide { id, approve: true }, Method::POST)
        }
        ["v1", "approvals", id, "deny"] if !id.is_empty() => {
            (Route::Decide { id, approve: false }, Method::POST)
        }
        ["v1", "audit", "verify"] => (Route::Audit(AuditRoute::Verify), Method::GET),
        ["v1", "audit", "events"] => (Route::Audit(AuditRoute::Events), Method::GET),
        ["v1", "audit", "report"] => (Route::Audit(AuditRoute::Report), Method::GET),
        ["v1", "sessions"] => (Route::Audit(AuditRoute::Sessions), Method::GET),
        ["v1", "sessions", id] if !id.is_empty() => {
            (Route::Audit(AuditRoute::Session(id)), Method::GET)
        }
        ["v1", "sessions", id, "recording"] if !id.is_empty() => {
            (Route::Audit(AuditRoute::Recording(id)), Method::GET)
        }
        _ => return Err(RouteError::NotFound),
    };
    if *method != allowed {
        return Err(RouteError::Method(if allowed == Method::GET {
            "GET"
        } else {
            "POST"
        }));
    }
    Ok(route)
}

/// The bearer token's principal, or why not (for a 401). The token itself goes nowhere but
/// the verifier.
fn authenticate(verifier: &Verifier, headers: &HeaderMap) -> Result<Principal, String> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or("missing Authorization: Bearer token")?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or("the Authorization header must be `Bearer <token>`")?;
    verifier
        .verify(token)
        .map_err(|err| format!("token rejected: {err}"))
}

fn metrics(state: &AdminState) -> Reply {
    let idle = state
        .gateway
        .as_ref()
        .map(|gw| gw.engine().idle_instances())
        .unwrap_or_default();
    let text = crate::metrics::render(idle, state.approvals.pending().len());
    let mut answer = Response::new(Full::new(Bytes::from(text)));
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    answer
}

fn list(state: &AdminState, principal: &Principal) -> Reply {
    if !state.approvals.is_approver(principal) {
        let err = ApprovalError::NotAnApprover(principal.subject.clone());
        return error(StatusCode::FORBIDDEN, &err.to_string());
    }
    reply(
        StatusCode::OK,
        &json!({ "approvals": state.approvals.pending() }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    reason: String,
}

async fn decide(
    state: &AdminState,
    principal: &Principal,
    id: &str,
    approve: bool,
    req: Request<Incoming>,
) -> Reply {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            let message = format!("request body larger than {MAX_BODY} bytes");
            return error(StatusCode::PAYLOAD_TOO_LARGE, &message);
        }
        Err(_) => return error(StatusCode::BAD_REQUEST, "cannot read the request body"),
    };
    let body: DecideBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => {
            let message = format!("the body must be {{\"reason\": \"...\"}}: {err}");
            return error(StatusCode::BAD_REQUEST, &message);
        }
    };
    let reason = body.reason.trim().to_owned();
    match state
        .approvals
        .decide(id, principal, approve, reason.clone())
        .await
    {
        Ok(()) => {
            let decision = if approve { "approved" } else { "denied" };
            tracing::info!(approval = %id, approver = %principal.subject, decision, "approval decided");
            reply(
                StatusCode::OK,
                &json!({
                    "id": id,
                    "decision": decision,
                    "approver": principal.subject,
                    "reason": crate::session::scrub(&reason),
                }),
            )
        }
        Err(err) => error(status_of(&err), &err.to_string()),
    }
}

fn status_of(err: &ApprovalError) -> StatusCode {
    match err {
        ApprovalError::NotFound(_) => StatusCode::NOT_FOUND,
        ApprovalError::Expired(_) => StatusCode::GONE,
        ApprovalError::EmptyReason | ApprovalError::ReasonTooLong => StatusCode::BAD_REQUEST,
        ApprovalError::NotAnApprover(_)
        | ApprovalError::ReservedApprover
        | ApprovalError::SelfApproval(_)
        | ApprovalError::ApproverInRequesterChain { .. }
        | ApprovalError::RequesterInApproverChain { .. }
        | ApprovalError::SharedAgent { .. }
        | ApprovalError::DelegatedApprover(_) => StatusCode::FORBIDDEN,
        ApprovalError::Audit(_) | ApprovalError::Background(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The report as JSON: `ok` is the verdict; `head_hash` is what to anchor outside the file.
pub fn report_json(report: &VerifyReport) -> Value {
    let problem = report.problem.as_ref().map(|p| {
        json!({
            "seq": p.seq,
            "kind": snake_case(&format!("{:?}", p.kind)),
            "message": p.message,
        })
    });
    json!({
        "ok": report.is_ok(),
        "events": report.events,
        "head_seq": report.head_seq,
        "head_hash": report.head_hex(),
        "pruned_through": report.pruned_through,
        "records": report.records,
        "chunks": report.chunks,
        "problem": problem,
    })
}

/// `HashChanged` → `hash_changed`, for JSON readers.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn reply(status: StatusCode, body: &Value) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body.to_string())));
    *reply.status_mut() = status;
    let headers = reply.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Pending commands and chain heads are not for caches.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

fn error(status: StatusCode, message: &str) -> Reply {
    reply(status, &json!({ "error": message }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(
            route(&Method::GET, "/v1/health"),
            Ok(Route::Health)
        ));
        assert!(matches!(
            route(&Method::POST, "/v1/approvals/apr-1/deny"),
            Ok(Route::Decide {
                id: "apr-1",
                approve: false
            })
        ));
        assert!(matches!(
            route(&Method::GET, "/v1/approvals/apr-1/approve"),
            Err(RouteError::Method("POST"))
        ));
        assert!(matches!(
            route(&Method::POST, "/v1/approvals//approve"),
            Err(RouteError::NotFound)
        ));
    }

    #[test]
    fn problem_kinds_are_snake_case() {
        assert_eq!(snake_case("HashChanged"), "hash_changed");
        assert_eq!(snake_case("Missing"), "missing");
    }
}
