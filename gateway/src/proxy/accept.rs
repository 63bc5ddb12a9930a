//! The front door every listener shares: one accept loop per listener, with a global cap, a
//! per-listener cap, a per-client-address cap and a pre-authentication deadline. A connection
//! over a cap is answered in its protocol's own words (PostgreSQL `FATAL 53300`, an SSH
//! disconnect "too many connections") and closed; it is never left hanging, and `accept` never
//! runs out of file descriptors, because the caps are held below the process's fd limit.
//!
//! An adapter implements [`Adapter`]: it names its protocol, serves one admitted connection
//! (calling [`Admission::authenticated`] once the client has proven who it is, which lifts the
//! pre-auth deadline), and says "too many" in its protocol. Adding a protocol is one folder
//! under `proxy/` implementing the trait, plus its config section.

use futures_util::FutureExt;
use serde::Deserialize;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// `[connections]`: bounds shared by every listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Connections held at once over all listeners (lowered at start to what the process's
    /// file-descriptor limit can carry: each connection may hold a client and an upstream fd).
    pub max: usize,
    /// Connections one client address may hold at once.
    pub per_address: usize,
    /// Time a client has to authenticate (TLS, start-up, token) before it is disconnected.
    #[serde(with = "humantime_serde")]
    pub preauth_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max: 4096,
            per_address: 256,
            preauth_timeout: Duration::from_secs(10),
        }
    }
}

impl ConnectionLimits {
    pub fn validate(&self) -> Result<(), String> {
        if self.max == 0 || self.per_address == 0 {
            return Err("max and per_address must be at least 1".into());
        }
        if self.preauth_timeout.is_zero() {
            return Err("preauth_timeout must be greater than zero".into());
        }
        Ok(())
    }
}

/// The default `max_connections` of a listener.
pub fn default_listener_max() -> usize {
    1024
}

/// Refusals explained at a time (each may take a TLS handshake and a start-up packet); past
/// this, an over-cap client gets the refusal's bytes written at once without reading anything
/// from it (a flood must not make the gateway spend itself on explaining).
const MAX_REFUSING: usize = 64;

/// Such quick refusals lingering at a time: written, then the client's own bytes read and
/// dropped until it closes (at most [`LINGER`]), so the close is a FIN after the refusal, not a
/// reset that could destroy it. Past this, the refusal is written and the socket dropped.
const MAX_LINGERING: usize = 256;
const LINGER: Duration = Duration::from_millis(500);

/// File descriptors kept back from connections: the audit database, policy files and their
/// directory, the compile cache, logs (about 64), the admin API's connections (64), and the
/// refusals in progress.
const RESERVED_FDS: u64 = 64 + 64 + MAX_REFUSING as u64 + MAX_LINGERING as u64;

/// How long a refusal may take (TLS and start-up for PostgreSQL, the banner for SSH).
const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// A protocol adapter behind the front door.
pub trait Adapter: Send + Sync + 'static {
    /// Its name in logs and audit notes: `postgres`, `ssh`.
    fn protocol(&self) -> &'static str;
    /// Serve one admitted connection to its end.
    fn serve(self: Arc<Self>, conn: Incoming) -> impl Future<Output = ()> + Send;
    /// Tell a client over a cap why it cannot connect, in the protocol's words, then close.
    fn refuse(self: Arc<Self>, tcp: TcpStream, why: String) -> impl Future<Output = ()> + Send;
    /// The same refusal as bytes to write at once, without reading anything from the client
    /// (when too many refusals are already in progress).
    fn refusal_now(&self, why: &str) -> Vec<u8>;
}

/// An admitted connection, handed to [`Adapter::serve`].
pub struct Incoming {
    pub tcp: TcpStream,
    pub addr: SocketAddr,
    pub admission: Admission,
}

/// The pre-auth deadline's switch, shared by the adapter and the front door: whichever
/// comes first wins — the client logging in ([`Admission::authenticated`]) or the deadline.
#[derive(Clone)]
pub struct Admission(Arc<AtomicU8>);

const PENDING: u8 = 0;
const AUTHENTICATED: u8 = 1;
const LATE: u8 = 2;

impl Admission {
    /// The client has logged in: the pre-auth deadline no longer applies. `false` when the
    /// deadline already passed: the login must be refused (the connection is being closed).
    pub fn authenticated(&self) -> bool {
        match self
            .0
            .compare_exchange(PENDING, AUTHENTICATED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(state) => state == AUTHENTICATED,
        }
    }

    /// Whether the deadline has passed without a login.
    pub fn is_late(&self) -> bool {
        self.0.load(Ordering::SeqCst) == LATE
    }

    /// The deadline passed: `true` unless the client logged in first.
    fn expire(&self) -> bool {
        self.0
            .compare_exchange(PENDING, LATE, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

/// The shared state of the front door: the global cap and the per-address counts.
pub struct FrontDoor {
    limits: ConnectionLimits,
    global: Arc<Semaphore>,
    per_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
    refusing: Arc<Semaphore>,
    lingering: Arc<Semaphore>,
}

impl FrontDoor {
    /// Raise `RLIMIT_NOFILE` to its hard limit and size the global cap to fit under it.
    pub fn new(limits: &ConnectionLimits) -> FrontDoor {
        let mut limits = limits.clone();
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(nofile) => {
                let fit = usize::try_from(nofile.saturating_sub(RESERVED_FDS) / 2)
                    .unwrap_or(usize::MAX)
                    .max(1);
                if fit < 64 {
                    tracing::warn!(
                        "the file-descriptor limit {nofile} leaves room for only {fit} connections; raise it (ulimit -n)"
                    );
                }
                if fit < limits.max {
                    tracing::warn!(
                        "[connections] max = {} does not fit the file-descriptor limit {nofile}; using {fit}",
                        limits.max
                    );
                    limits.max = fit;
                }
                tracing::info!(nofile, max = limits.max, "connection limits");
            }
            Err(e) => tracing::warn!("cannot raise RLIMIT_NOFILE: {e}"),
        }
        FrontDoor {
            global: Arc::new(Semaphore::new(limits.max)),
            per_address: Arc::new(Mutex::new(HashMap::new())),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            lingering: Arc::new(Semaphore::new(MAX_LINGERING)),
            limits,
        }
    }

    /// The global cap in force (after fitting it to the fd limit).
    pub fn max(&self) -> usize {
        self.limits.max
    }

    /// Accept connections for `adapter` on `listener` until `shutdown` resolves.
    pub async fn serve<A: Adapter>(
        self: Arc<Self>,
        listener: TcpListener,
        max_listener: usize,
        adapter: Arc<A>,
        shutdown: impl Future<Output = ()>,
    ) {
        let local = Arc::new(Semaphore::new(max_listener.max(1)));
        tokio::pin!(shutdown);
        let mut accept_errors = 0u64;
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, addr)) => {
                        let _ = tcp.set_nodelay(true);
                        self.dispatch(tcp, addr, &local, max_listener, &adapter);
                    }
                    Err(e) => {
                        // Should not happen with the caps under the fd limit; never spin.
                        accept_errors += 1;
                        if accept_errors.is_power_of_two() {
                            tracing::warn!(protocol = adapter.protocol(), "accept failed ({accept_errors} times): {e}");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = &mut shutdown => return,
            }
        }
    }

    fn dispatch<A: Adapter>(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
        local: &Arc<Semaphore>,
        max_listener: usize,
        adapter: &Arc<A>,
    ) {
        let protocol = adapter.protocol();
        let permits = match self.admit(addr.ip(), local) {
            Ok(p) => p,
            Err(which) => {
                let why = match which {
                    Cap::Global => format!(
                        "too many connections to warden ({} at once)",
                        self.limits.max
                    ),
                    Cap::Listener => {
                        format!("too many {protocol} connections ({max_listener} at once)")
                    }
                    Cap::Address => format!(
                        "too many connections from {} ({} at once)",
                        addr.ip(),
                        self.limits.per_address
                    ),
                };
                tracing::info!(client = %addr, protocol, "connection refused: {why}");
                let cap = match which {
                    Cap::Global => "gateway-cap",
                    Cap::Listener => "listener-cap",
                    Cap::Address => "address-cap",
                };
                crate::metrics::connection_refused(protocol, cap);
                match self.refusing.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let adapter = adapter.clone();
                        tokio::spawn(async move {
                            let _permit = permit;
                            let _ =
                                tokio::time::timeout(REFUSAL_TIME, adapter.refuse(tcp, why)).await;
                        });
                    }
                    Err(_) => {
                        let bytes = adapter.refusal_now(&why);
                        match self.lingering.clone().try_acquire_owned() {
                            Ok(permit) => {
                                tokio::spawn(async move {
                                    let _permit = permit;
                                    refuse_and_linger(tcp, &bytes).await;
                                });
                            }
                            Err(_) => {
                                // Best effort: a fresh socket's send buffer takes this at once.
                                let _ = tcp.try_write(&bytes);
                            }
                        }
                    }
                }
                return;
            }
        };
        let admission = Admission(Arc::new(AtomicU8::new(PENDING)));
        let conn = Incoming {
            tcp,
            addr,
            admission: admission.clone(),
        };
        let preauth = self.limits.preauth_timeout;
        let fut = adapter.clone().serve(conn);
        tokio::spawn(async move {
            let _permits = permits;
            // A panic that escapes an adapter is logged here; the session it held (if any)
            // audits its own end when it is dropped (`Session`'s `Drop`).
            let fut = std::panic::AssertUnwindSafe(fut).catch_unwind();
            tokio::pin!(fut);
            tokio::select! {
                r = &mut fut => return report(protocol, addr, r),
                _ = tokio::time::sleep(preauth) => {
                    if admission.expire() {
                        // Dropping the adapter's future closes what it owns; an adapter that
                        // runs tasks of its own (SSH) stops them when dropped, and refuses a
                        // login that completes after this (`authenticated` is then false).
                        tracing::info!(client = %addr, protocol, "not authenticated within {preauth:?}: disconnected");
                        return;
                    }
                }
            }
            report(protocol, addr, fut.await);
        });
    }

    fn admit(&self, ip: IpAddr, local: &Arc<Semaphore>) -> Result<Permits, Cap> {
        let global = self
            .global
            .clone()
            .try_acquire_owned()
            .map_err(|_| Cap::Global)?;
        let listener = local
            .clone()
            .try_acquire_owned()
            .map_err(|_| Cap::Listener)?;
        let mut counts = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_default();
        if *n >= self.limits.per_address {
            return Err(Cap::Address);
        }
        *n += 1;
        Ok(Permits {
            _global: global,
            _listener: listener,
            _address: AddressSlot {
                ip,
                counts: self.per_address.clone(),
            },
        })
    }
}

/// Write `bytes`, end our side, and read what the client sends until it closes or [`LINGER`]
/// passes: closing with its bytes unread would reset the connection and could destroy the
/// refusal before the client reads it.
pub async fn refuse_and_linger(mut tcp: TcpStream, bytes: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if tcp.write_all(bytes).await.is_err() {
        return;
    }
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = tcp.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

fn report(protocol: &str, addr: SocketAddr, r: Result<(), Box<dyn std::any::Any + Send>>) {
    if let Err(panic) = r {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(client = %addr, protocol, "connection task panicked: {what}");
    }
}

enum Cap {
    Global,
    Listener,
    Address,
}

/// What one admitted connection holds; dropping it frees its place under every cap.
struct Permits {
    _global: OwnedSemaphorePermit,
    _listener: OwnedSemaphorePermit,
    _address: AddressSlot,
}

struct AddressSlot {
    ip: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}
