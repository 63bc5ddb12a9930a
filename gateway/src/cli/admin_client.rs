//! The CLI's side of the admin API: one place for the address rule (`http://` to loopback only,
//! or `https://` verified against `--admin-ca`: the bearer token must not cross a network in
//! the clear), the bearer header (marked sensitive, never logged) and timeouts. `warden approvals` and the live audit reads
//! (`sessions`, `replay`, `audit verify|export|report` with `--admin`) go through here.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde_json::Value;
use std::path::Path;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::proxy::postgres::config::UpstreamTls;

/// How long one admin API call may take before the CLI gives up (exports can be long).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// `--admin URL` and the caller's token, for commands that read a running gateway.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LiveArgs {
    /// Read through a running gateway's admin API (`[admin] listen`) instead of a database
    /// file; needs a token in one of `[admin] auditor_groups`. `--db`, when given, wins.
    #[arg(long, env = "WARDEN_ADMIN")]
    pub admin: Option<String>,
    /// Your bearer token, for --admin. Prefer the environment variable: arguments show in the
    /// process list.
    #[arg(long, env = "WARDEN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// For an https:// --admin: the PEM file of the CA that signed its certificate.
    #[arg(long, env = "WARDEN_ADMIN_CA")]
    pub admin_ca: Option<std::path::PathBuf>,
}

/// A running gateway to read from.
pub struct Live {
    endpoint: Endpoint,
    token: String,
    runtime: tokio::runtime::Runtime,
}

impl LiveArgs {
    /// `Some` when the command should read through the admin API: `--admin` (or
    /// `WARDEN_ADMIN`) given and no database file (`db`).
    pub fn live(&self, db: Option<&std::path::Path>) -> anyhow::Result<Option<Live>> {
        let Some(admin) = self.admin.as_ref().filter(|_| db.is_none()) else {
            return Ok(None);
        };
        let Some(token) = self.token.as_deref().filter(|t| !t.trim().is_empty()) else {
            bail!("--admin needs a token: set WARDEN_TOKEN or pass --token");
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        Ok(Some(Live {
            endpoint: Endpoint::parse(admin, self.admin_ca.as_deref())?,
            token: token.to_owned(),
            runtime,
        }))
    }
}

impl Live {
    /// GET `path`; a 4xx or 5xx is an error carrying the gateway's message.
    pub fn get(&self, path: &str) -> anyhow::Result<Bytes> {
        let (status, bytes) = self.request(path)?;
        self.success(status, bytes)
    }

    fn request(&self, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        self.runtime.block_on(request(
            &self.endpoint,
            path,
            Method::GET,
            &self.token,
            None,
        ))
    }

    /// The body of a successful answer, or the gateway's message as the error.
    fn success(&self, status: StatusCode, bytes: Bytes) -> anyhow::Result<Bytes> {
        if status.is_success() {
            return Ok(bytes);
        }
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "no error message".into());
        bail!(
            "{}: {} (HTTP {})",
            self.endpoint.base,
            super::escape::cell(&message),
            status.as_u16()
        );
    }

    /// GET `path` as JSON.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let bytes = self.get(path)?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("reading {}{path}", self.endpoint.base))
    }

    /// `404` answers as `None`.
    pub fn get_optional(&self, path: &str) -> anyhow::Result<Option<Bytes>> {
        match self.request(path)? {
            (StatusCode::NOT_FOUND, _) => Ok(None),
            (status, bytes) => self.success(status, bytes).map(Some),
        }
    }
}

/// A path segment or query value, percent-encoded.
pub fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A gateway's admin API: where it is and how to reach it.
#[derive(Clone)]
pub struct Endpoint {
    /// `http(s)://host:port`, as given (for messages).
    pub base: String,
    host: String,
    port: u16,
    /// For `https://`: the connector trusting `--admin-ca`, and the name to verify.
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)
    }
}

impl Endpoint {
    /// `--admin URL`: `http://` to a loopback host, or `https://` to any host, its certificate
    /// verified against `ca` (`--admin-ca`, PEM). The token must not cross a network in the
    /// clear, nor go to a server nobody verified.
    pub fn parse(admin: &str, ca: Option<&Path>) -> anyhow::Result<Endpoint> {
        let uri: Uri = admin
            .parse()
            .with_context(|| format!("--admin `{admin}` is not a URL"))?;
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            bail!("--admin takes the gateway's address only, like http://127.0.0.1:9190");
        }
        let host = uri.host().unwrap_or_default();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let (tls, default_port) = match uri.scheme_str() {
            Some("http") => {
                let loopback = host.eq_ignore_ascii_case("localhost")
                    || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
                if !loopback {
                    bail!(
                        "--admin http:// must be a loopback address: the token would cross the \
                         network in the clear (use https:// with --admin-ca)"
                    );
                }
                (None, 80)
            }
            Some("https") => {
                let Some(ca) = ca else {
                    bail!(
                        "--admin https:// needs --admin-ca (or WARDEN_ADMIN_CA): the PEM file of \
                         the CA that signed the admin API's certificate"
                    );
                };
                let connector = crate::proxy::tls::client(UpstreamTls::Verify, Some(ca))
                    .map_err(|e| anyhow::anyhow!("--admin-ca: {e}"))?;
                let name = crate::proxy::tls::server_name(bare)
                    .map_err(|e| anyhow::anyhow!("--admin host `{host}`: {e}"))?;
                (Some((connector, name)), 443)
            }
            _ => bail!("--admin must be an http:// (loopback) or https:// URL"),
        };
        Ok(Endpoint {
            base: admin.trim_end_matches('/').to_owned(),
            host: bare.to_owned(),
            port: uri.port_u16().unwrap_or(default_port),
            tls,
        })
    }

    fn authority(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

/// Tries of a GET that could not get an answer (the connection refused, reset or dropped).
const GET_TRIES: u32 = 5;

/// One request; the answer's status and body. A GET whose connection fails is tried again a
/// few times (reads are safe to repeat): the admin API makes room for new connections by
/// closing the oldest unauthenticated one, so a local flood of anonymous requests (health,
/// metrics) can close an approver's or auditor's connection before its first request is read.
/// A decision (POST) is sent once: repeating one the gateway did take would answer with an error.
pub async fn request(
    endpoint: &Endpoint,
    path: &str,
    method: Method,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let tries = if method == Method::GET { GET_TRIES } else { 1 };
    let mut wait = std::time::Duration::from_millis(50);
    for _ in 1..tries {
        match request_once(endpoint, path, method.clone(), token, body.clone()).await {
            Ok(answer) => return Ok(answer),
            Err(err) if err.downcast_ref::<tokio::time::error::Elapsed>().is_some() => {
                return Err(err);
            }
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
    request_once(endpoint, path, method, token, body).await
}

async fn request_once(
    endpoint: &Endpoint,
    path: &str,
    method: Method,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let base = &endpoint.base;
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
        .context("the token contains characters not allowed in a header")?;
    auth.set_sensitive(true);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, endpoint.authority())
        .header(header::AUTHORIZATION, auth);
    let body = match body {
        Some(body) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(body.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    let request = request.body(body).context("building the request")?;
    let exchange = async {
        let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
        match &endpoint.tls {
            None => exchange(stream, request).await,
            Some((connector, name)) => {
                let stream = connector.connect(name.clone(), stream).await.context(
                    "TLS with the admin API failed: is --admin-ca the CA that signed its \
                         certificate (not the certificate itself), and is the certificate issued \
                         to this host name or address?",
                )?;
                exchange(stream, request).await
            }
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .with_context(|| {
            format!(
                "no answer from {base} within {}s",
                REQUEST_TIMEOUT.as_secs()
            )
        })?
        .with_context(|| format!("cannot reach the admin API at {base}"))
}

/// One HTTP/1.1 exchange on a connected stream.
async fn exchange<S>(
    stream: S,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<(StatusCode, Bytes)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    drop(sender);
    connection.abort();
    Ok((status, bytes))
}

/// [`request`], the answer read as JSON.
pub async fn call(
    endpoint: &Endpoint,
    path: &str,
    method: Method,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let (status, bytes) = request(endpoint, path, method, token, body).await?;
    let value = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} answered HTTP {} without JSON",
            endpoint.base,
            status.as_u16()
        )
    })?;
    Ok((status, value))
}
