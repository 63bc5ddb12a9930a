//! The SSH adapter: `ssh`, `scp`, `sftp` and any SSH library connect here with the target as
//! login name (`ssh -p 2222 web-1@gateway`) and a token as password (or a registered key); the
//! gateway logs in to the real host with its own key, the host's key pinned, and relays each
//! channel through the policy chain.
//!
//! Files: `config.rs` (its part of warden.toml), `keys.rs` (host key, pins), `upstream.rs`
//! (the gateway's login to the host), `handler.rs` (authentication, channel opens, port
//! forwarding), `channel.rs` (a session channel: exec, shell, subsystem), `relay.rs` (client to host:
//! line and SFTP checks), `downstream.rs` (host to client: masking, recording), `output.rs` (output lines for `mask-rows`), `readings.rs` (the encodings a line is read in),
//! `terminal.rs` (line reconstruction in a pty), `sftp.rs` (SFTP operations).

mod channel;
pub mod config;
mod downstream;
mod editor;
mod handler;
mod keys;
mod output;
mod prompt;
mod readings;
mod relay;
mod script;
mod sftp;
mod stream;
mod terminal;
mod upstream;

use crate::policy::Decision;
use crate::proxy::accept::{Adapter, Incoming};
use crate::recording::Recorder;
use crate::session::{Gateway, Session};
use config::{SshListener, SshUpstream};
use std::sync::Arc;
use tokio::net::TcpStream;
use upstream::Upstream;

/// Exit status of a command the gateway refused (shells use 126 for "cannot execute").
pub const REFUSED_EXIT: u32 = 126;
/// Exit status when the target host cannot be reached (as `ssh` itself uses for its errors).
pub const UNREACHABLE_EXIT: u32 = 255;

/// The SSH server's settings, with the host key loaded (or created, on first start): done
/// before the listener is announced, so a bad key stops the gateway at start-up.
fn server_config(cfg: &SshListener) -> anyhow::Result<Arc<russh::server::Config>> {
    let key = keys::load_or_create_host_key(&cfg.host_key)?;
    tracing::info!(
        fingerprint = %keys::fingerprint(key.public_key()),
        "ssh host key"
    );
    Ok(Arc::new(russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-warden".into()),
        keys: vec![key],
        inactivity_timeout: Some(cfg.idle_timeout),
        keepalive_interval: Some(std::time::Duration::from_secs(60)),
        auth_rejection_time: std::time::Duration::from_millis(300),
        auth_rejection_time_initial: Some(std::time::Duration::from_millis(0)),
        nodelay: true,
        methods: handler::methods(),
        ..Default::default()
    }))
}

/// At start: log in once to each SSH target's host and refuse to start when the gateway's
/// login there is uid 0 under any name (unless the target allows it; `root` by name is
/// already refused by the config). A host that cannot be reached now is only warned about.
pub async fn check_upstreams(config: &crate::config::Config) -> anyhow::Result<()> {
    for (name, target) in &config.targets {
        let Some(up) = &target.ssh else { continue };
        if target.allow_privileged_upstream {
            continue;
        }
        let probe = async {
            let host = upstream::connect(up).await?;
            let uid = upstream::uid(&host).await;
            let _ = host
                .disconnect(russh::Disconnect::ByApplication, "", "")
                .await;
            uid
        };
        match tokio::time::timeout(std::time::Duration::from_secs(10), probe).await {
            Ok(Ok(uid)) if uid == "0" => anyhow::bail!(
                "target `{name}`: the gateway's login `{}` on {} is uid 0 (root): every policy and \
                 approval could be bypassed through it; use an unprivileged user or set \
                 allow_privileged_upstream = true",
                up.user,
                up.host
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(target = %name, "ssh upstream not reachable at start: {e}")
            }
            Err(_) => {
                tracing::warn!(target = %name, "ssh upstream not reachable at start: timed out")
            }
        }
    }
    Ok(())
}

/// The SSH adapter behind the front door ([`crate::proxy::accept`]).
pub struct Ssh {
    gw: Arc<Gateway>,
    config: Arc<russh::server::Config>,
}

impl Ssh {
    /// The adapter for `[ssh]`, its host key loaded (or created) now.
    pub fn new(gw: Arc<Gateway>) -> anyhow::Result<Option<Ssh>> {
        let Some(listener) = &gw.config().ssh else {
            return Ok(None);
        };
        let config = server_config(listener)?;
        Ok(Some(Ssh { gw, config }))
    }

    /// The host key's fingerprint, which clients pin (known_hosts).
    pub fn fingerprint(&self) -> Option<String> {
        self.config
            .keys
            .first()
            .map(|k| k.public_key().fingerprint(Default::default()).to_string())
    }
}

impl Adapter for Ssh {
    fn protocol(&self) -> &'static str {
        "ssh"
    }

    async fn serve(self: Arc<Self>, conn: Incoming) {
        handle(conn, self.gw.clone(), self.config.clone()).await
    }

    /// Our identification and the disconnect at once: a client reads the server's line first
    /// whatever it sends.
    fn refusal_now(&self, why: &str) -> Vec<u8> {
        let mut out = b"SSH-2.0-warden\r\n".to_vec();
        out.extend(disconnect_packet(
            DISCONNECT_TOO_MANY_CONNECTIONS,
            &format!("warden: {why}"),
        ));
        out
    }

    /// Before key exchange, as a server at its limit would: our identification and an
    /// unencrypted SSH_MSG_DISCONNECT "too many connections" (which `ssh` prints), then close.
    async fn refuse(self: Arc<Self>, tcp: TcpStream, why: String) {
        let bytes = self.refusal_now(&why);
        crate::proxy::accept::refuse_and_linger(tcp, &bytes).await;
    }
}

/// RFC 4253 §11.1: SSH_DISCONNECT_TOO_MANY_CONNECTIONS.
const DISCONNECT_TOO_MANY_CONNECTIONS: u32 = 12;

/// An SSH_MSG_DISCONNECT in the binary packet form used before keys are exchanged (no
/// encryption, no MAC): length, padding length, payload, at least 4 bytes of padding, the whole
/// a multiple of 8 (RFC 4253 §6).
fn disconnect_packet(reason: u32, description: &str) -> Vec<u8> {
    let mut payload = vec![1u8]; // SSH_MSG_DISCONNECT
    payload.extend_from_slice(&reason.to_be_bytes());
    payload.extend_from_slice(&(description.len() as u32).to_be_bytes());
    payload.extend_from_slice(description.as_bytes());
    payload.extend_from_slice(&0u32.to_be_bytes()); // language tag: empty
    let mut padding = 8 - (5 + payload.len()) % 8;
    if padding < 4 {
        padding += 8;
    }
    let length = (1 + payload.len() + padding) as u32;
    let mut out = Vec::with_capacity(4 + length as usize);
    out.extend_from_slice(&length.to_be_bytes());
    out.push(padding as u8);
    out.extend_from_slice(&payload);
    out.resize(out.len() + padding, 0);
    out
}

/// Cuts the client stream when dropped: russh's connection task then ends, whatever state
/// it is in (a client stalled in key exchange included).
struct StopOnDrop(stream::Cut);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cut();
    }
}

/// One client connection: run the SSH session, then close the warden session it opened.
async fn handle(conn: Incoming, gw: Arc<Gateway>, config: Arc<russh::server::Config>) {
    let Incoming {
        tcp,
        addr,
        admission,
    } = conn;
    let slot = handler::Slot::default();
    let handler = handler::Handler::new(gw.clone(), addr, slot.clone(), admission);
    let mut stopped = false;
    // russh runs the connection in a task of its own, which dropping `running` does not stop:
    // when the front door drops this future (the pre-auth deadline), the guard cuts the stream.
    let cut = stream::Cut::default();
    let _stop = StopOnDrop(cut.clone());
    let tcp = stream::Cuttable::new(tcp, cut);
    let result = match russh::server::run_stream(config, tcp, handler).await {
        Ok(running) => {
            let ssh = running.handle();
            tokio::pin!(running);
            tokio::select! {
                r = &mut running => r,
                _ = gw.lifecycle().stopping() => {
                    stopped = true;
                    if let Some(conn) = slot.peek() {
                        conn.stop_channels().await;
                    }
                    // A moment for the channels' own last words (a withdrawn approval).
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    let _ = ssh
                        .disconnect(
                            russh::Disconnect::ByApplication,
                            "warden is shutting down".into(),
                            String::new(),
                        )
                        .await;
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), running).await;
                    Ok(())
                }
            }
        }
        Err(e) => Err(e),
    };
    let conn = slot.take();
    let expired = conn
        .as_ref()
        .is_some_and(|c| c.expired.load(std::sync::atomic::Ordering::SeqCst));
    let reason = match &result {
        _ if stopped => "gateway shutting down".to_string(),
        _ if expired => crate::session::EXPIRED.to_string(),
        Ok(()) => "client closed the connection".to_string(),
        Err(e) => format!("connection ended: {e}"),
    };
    tracing::debug!(client = %addr, "ssh connection ended: {reason}");
    if let Some(conn) = conn {
        conn.close(&reason).await;
    }
}

/// An authenticated connection: its warden session and its (lazily opened) upstream login.
pub(crate) struct Conn {
    gw: Arc<Gateway>,
    target: String,
    upstream_cfg: SshUpstream,
    /// The warden session, shared by the connection's channels (it locks internally).
    session: Session,
    recorder: Recorder,
    upstream: tokio::sync::OnceCell<Result<Arc<Upstream>, String>>,
    /// The token expired and the connection was ended for it.
    expired: std::sync::atomic::AtomicBool,
    /// The connection's running channels (see [`Conn::stop_channels`]).
    channels: std::sync::Mutex<Vec<std::sync::Weak<downstream::Shared>>>,
}

impl Conn {
    fn new(gw: Arc<Gateway>, target: String, upstream_cfg: SshUpstream, session: Session) -> Conn {
        Conn {
            recorder: session.recorder().clone(),
            gw,
            target,
            upstream_cfg,
            session,
            upstream: tokio::sync::OnceCell::new(),
            expired: std::sync::atomic::AtomicBool::new(false),
            channels: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn listener(&self) -> Option<&SshListener> {
        self.gw.config().ssh.as_ref()
    }

    fn max_line(&self) -> usize {
        self.listener()
            .map_or(64 << 10, |l| l.mask_max_line.0 as usize)
    }

    /// What the target lets read the terminal in an interactive session.
    fn terminal_programs(&self) -> &[String] {
        &self.upstream_cfg.terminal_programs
    }

    fn recorded_output_budget(&self) -> usize {
        self.listener()
            .map_or(256 << 10, |l| l.recorded_output_per_command.0 as usize)
    }

    /// The upstream login, opened on first use and shared by the connection's channels. A
    /// failure (host key mismatch, login refused, a uid-0 login the target does not allow)
    /// is remembered: the session stays refused.
    async fn upstream(&self) -> Result<Arc<Upstream>, String> {
        self.upstream
            .get_or_init(|| async {
                let r = self.login_upstream().await.map(Arc::new);
                if let Err(e) = &r {
                    tracing::warn!(target = %self.target, "ssh upstream refused: {e}");
                    self.recorder.error(&format!("warden: upstream: {e}"));
                }
                r
            })
            .await
            .clone()
    }

    /// Log in to the host and, unless the target allows a privileged login, make sure it is
    /// not uid 0 (the start-up check can miss a host that was down then, or changed since).
    async fn login_upstream(&self) -> Result<Upstream, String> {
        let host = upstream::connect(&self.upstream_cfg).await?;
        let allowed = self
            .gw
            .config()
            .targets
            .get(&self.target)
            .is_some_and(|t| t.allow_privileged_upstream);
        if !allowed {
            let uid = upstream::uid(&host).await?;
            if uid == "0" {
                let _ = host
                    .disconnect(russh::Disconnect::ByApplication, "", "")
                    .await;
                return Err(format!(
                    "the gateway's login `{}` is uid 0 (root) on the host; refused (allow_privileged_upstream is off)",
                    self.upstream_cfg.user
                ));
            }
        }
        Ok(host)
    }

    /// Track a running channel, so a session the gateway ends stops what it runs.
    pub(super) fn track(&self, channel: &Arc<downstream::Shared>) {
        let mut live = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(channel));
    }

    /// The gateway ends the session (token expiry, shutdown): the commands it started are
    /// told to stop (SIGTERM) and their channels closed, as a cancelled statement is on
    /// PostgreSQL. Without this, a command without a terminal would go on running on the host.
    pub(super) async fn stop_channels(&self) {
        let live: Vec<_> = self
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .filter_map(|w| w.upgrade())
            .collect();
        for channel in live {
            let _ = channel.up.signal(russh::Sig::TERM).await;
            let _ = channel.up.eof().await;
            let _ = channel.up.close().await;
        }
    }

    async fn mask(
        &self,
        seq: u64,
        decision: &Decision,
        stderr: bool,
        pieces: Vec<output::Piece>,
    ) -> Result<Vec<u8>, output::MaskRefused> {
        output::mask_lines(&self.session, seq, decision, stderr, pieces).await
    }

    async fn close(&self, reason: &str) {
        if let Some(Ok(up)) = self.upstream.get() {
            let _ = up
                .disconnect(russh::Disconnect::ByApplication, "", "")
                .await;
        }
        self.session.close(reason).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::disconnect_packet;

    /// The packet parses as RFC 4253 frames it: the right length, padding of 4 or more, a
    /// multiple of 8, and the payload's fields in order.
    #[test]
    fn disconnect_packet_is_well_formed() {
        for why in ["", "x", "too many connections from 127.0.0.1 (64 at once)"] {
            let p = disconnect_packet(12, why);
            let len = u32::from_be_bytes(p[..4].try_into().unwrap()) as usize;
            assert_eq!(p.len(), 4 + len);
            assert_eq!(p.len() % 8, 0);
            let pad = p[4] as usize;
            assert!(pad >= 4);
            let payload = &p[5..p.len() - pad];
            assert_eq!(payload[0], 1);
            assert_eq!(u32::from_be_bytes(payload[1..5].try_into().unwrap()), 12);
            let n = u32::from_be_bytes(payload[5..9].try_into().unwrap()) as usize;
            assert_eq!(&payload[9..9 + n], why.as_bytes());
            assert_eq!(&payload[9 + n..], &[0, 0, 0, 0]);
        }
    }
}
