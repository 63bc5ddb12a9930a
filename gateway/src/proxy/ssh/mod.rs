//! The SSH adapter: `ssh`, `scp`, `sftp` and any SSH library connect here with the target as
//! login name (`ssh -p 2222 web-1@gateway`) and a token as password (or a registered key); the
//! gateway logs in to the real host with its own key, the host's key pinned, and relays each
//! channel through the policy chain.
//!
//! Files: `config.rs` (its part of warden.toml), `keys.rs` (host key, pins), `upstream.rs`
//! (the gateway's login to the host), `handler.rs` (authentication, channel opens, port
//! forwarding), `channel.rs` (a session channel: exec, shell, subsystem), `relay.rs` (client to host:
//! line and SFTP checks), `downstream.rs` (host to client: masking, recording), `output.rs` (output lines for `mask-rows`),
//! `terminal.rs` (line reconstruction in a pty), `sftp.rs` (SFTP operations).

mod channel;
pub mod config;
mod downstream;
mod handler;
mod keys;
mod output;
mod relay;
mod sftp;
mod terminal;
mod upstream;

use crate::approvals::{ApprovalOutcome, PendingApproval};
use crate::config::{SshListener, SshUpstream};
use crate::policy::{Command, Decision};
use crate::recording::Recorder;
use crate::session::{Gateway, Ruling, Session};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use upstream::Upstream;

/// Exit status of a command the gateway refused (shells use 126 for "cannot execute").
pub const REFUSED_EXIT: u32 = 126;
/// Exit status when the target host cannot be reached (as `ssh` itself uses for its errors).
pub const UNREACHABLE_EXIT: u32 = 255;

/// The SSH server's settings, with the host key loaded (or created, on first start): done
/// before the listener is announced, so a bad key stops the gateway at start-up.
pub fn server_config(cfg: &SshListener) -> anyhow::Result<Arc<russh::server::Config>> {
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

/// Accept SSH clients until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    gw: Arc<Gateway>,
    config: Arc<russh::server::Config>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, addr)) => {
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(handle(tcp, addr, gw.clone(), config.clone()));
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

/// One client connection: run the SSH session, then close the warden session it opened.
async fn handle(
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
    gw: Arc<Gateway>,
    config: Arc<russh::server::Config>,
) {
    let slot = handler::Slot::default();
    let handler = handler::Handler::new(gw.clone(), addr, slot.clone());
    let mut stopped = false;
    let result = match russh::server::run_stream(config, tcp, handler).await {
        Ok(running) => {
            let ssh = running.handle();
            tokio::pin!(running);
            tokio::select! {
                r = &mut running => r,
                _ = gw.lifecycle.stopping() => {
                    stopped = true;
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
    let reason = match &result {
        _ if stopped => "gateway shutting down".to_string(),
        Ok(()) => "client closed the connection".to_string(),
        Err(e) => format!("connection ended: {e}"),
    };
    tracing::debug!(client = %addr, "ssh connection ended: {reason}");
    if let Some(conn) = slot.take() {
        conn.close(&reason).await;
    }
}

/// An authenticated connection: its warden session and its (lazily opened) upstream login.
pub(crate) struct Conn {
    gw: Arc<Gateway>,
    target: String,
    upstream_cfg: SshUpstream,
    session: tokio::sync::Mutex<Option<Session>>,
    recorder: Recorder,
    upstream: tokio::sync::OnceCell<Result<Arc<Upstream>, String>>,
}

impl Conn {
    fn new(gw: Arc<Gateway>, target: String, upstream_cfg: SshUpstream, session: Session) -> Conn {
        Conn {
            recorder: session.recorder().clone(),
            gw,
            target,
            upstream_cfg,
            session: tokio::sync::Mutex::new(Some(session)),
            upstream: tokio::sync::OnceCell::new(),
        }
    }

    fn listener(&self) -> Option<&SshListener> {
        self.gw.config.ssh.as_ref()
    }

    fn max_line(&self) -> usize {
        self.listener()
            .map_or(64 << 10, |l| l.mask_max_line.0 as usize)
    }

    fn recorded_output_budget(&self) -> usize {
        self.listener()
            .map_or(256 << 10, |l| l.recorded_output_per_command.0 as usize)
    }

    /// The upstream login, opened on first use and shared by the connection's channels. A
    /// failure (host key mismatch, login refused) is remembered: the session stays refused.
    async fn upstream(&self) -> Result<Arc<Upstream>, String> {
        self.upstream
            .get_or_init(|| async {
                let r = upstream::connect(&self.upstream_cfg).await.map(Arc::new);
                if let Err(e) = &r {
                    tracing::warn!(target = %self.target, "ssh upstream refused: {e}");
                    self.recorder.error(&format!("warden: upstream: {e}"));
                }
                r
            })
            .await
            .clone()
    }

    /// Check one command and audit the decision (see [`Session::decide`]).
    async fn decide(&self, text: &str, command: Command) -> Result<Ruling, String> {
        let mut guard = self.session.lock().await;
        let session = guard.as_mut().ok_or("session closed")?;
        session
            .decide(text, &[command])
            .await
            .map_err(|e| e.to_string())
    }

    /// Refuse without asking the chain (audited).
    async fn refuse(&self, text: &str, kind: &str, reason: &str) -> Result<u64, String> {
        let mut guard = self.session.lock().await;
        let session = guard.as_mut().ok_or("session closed")?;
        session
            .refuse(text, kind, reason)
            .await
            .map_err(|e| e.to_string())
    }

    async fn request_approval(
        &self,
        text: &str,
        ruling: &Ruling,
    ) -> Result<PendingApproval, String> {
        let mut guard = self.session.lock().await;
        let session = guard.as_mut().ok_or("session closed")?;
        session
            .request_approval(text, ruling)
            .await
            .map_err(|e| e.to_string())
    }

    async fn note_approval(&self, outcome: &ApprovalOutcome) {
        if let Some(session) = self.session.lock().await.as_ref() {
            session.note_approval(outcome);
        }
    }

    async fn mask(
        &self,
        seq: u64,
        decision: &Decision,
        stderr: bool,
        lines: Vec<Vec<u8>>,
    ) -> Result<Vec<u8>, output::MaskRefused> {
        let mut guard = self.session.lock().await;
        let Some(session) = guard.as_mut() else {
            return Err(output::MaskRefused("session closed".into()));
        };
        output::mask_lines(session, seq, decision, stderr, lines).await
    }

    async fn close(&self, reason: &str) {
        if let Some(Ok(up)) = self.upstream.get() {
            let _ = up
                .disconnect(russh::Disconnect::ByApplication, "", "")
                .await;
        }
        let session = self.session.lock().await.take();
        if let Some(session) = session {
            session.close(reason).await;
        }
    }
}
