//! russh's server callbacks for one connection: authentication (token as password or as the
//! keyboard-interactive answer, or a registered public key), the target from the login name,
//! session channels handed to [`super::channel`], and port-forwarding requests checked as
//! commands.

use super::Conn;
use crate::identity::Principal;
use crate::policy::{Command, Forward, Protocol};
use crate::proxy::accept::Admission;
use crate::session::{Credential, Gateway, Login};
use russh::server::{Auth, ChannelOpenHandle, Msg, Response, Session as SshSession};
use russh::{Channel, ChannelOpenFailure, MethodKind, MethodSet};
use std::net::SocketAddr;
use std::sync::Arc;

/// Where the connection task finds the authenticated connection when the client is gone.
#[derive(Clone, Default)]
pub struct Slot(Arc<std::sync::Mutex<Option<Arc<Conn>>>>);

impl Slot {
    fn set(&self, conn: Arc<Conn>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
    }
    pub fn take(&self) -> Option<Arc<Conn>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
    pub fn peek(&self) -> Option<Arc<Conn>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub struct Handler {
    gw: Arc<Gateway>,
    peer: SocketAddr,
    slot: Slot,
    conn: Option<Arc<Conn>>,
    admission: Admission,
    /// Resolves when the session's token expires (set at login).
    expiry: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl Handler {
    pub fn new(gw: Arc<Gateway>, peer: SocketAddr, slot: Slot, admission: Admission) -> Handler {
        Handler {
            gw,
            peer,
            slot,
            conn: None,
            admission,
            expiry: None,
        }
    }

    /// The login name is the target; it must be an `ssh` target.
    fn target(&self, user: &str) -> Option<super::config::SshUpstream> {
        let t = self.gw.config().targets.get(user)?;
        (t.protocol == Protocol::Ssh)
            .then(|| t.ssh.clone())
            .flatten()
    }

    /// Open the audited session through the session path's one `authenticate` (which audits
    /// a refusal with its reason, never the token).
    async fn login(&mut self, user: &str, credential: Credential<'_>) -> Auth {
        if self.conn.is_some() || self.admission.is_late() {
            return Auth::reject();
        }
        let login = Login {
            protocol: Protocol::Ssh,
            target: user,
            client_addr: self.peer.to_string(),
            credential,
        };
        let session = match self.gw.authenticate(login).await {
            Ok(s) => s,
            Err(_) => return Auth::reject(),
        };
        let Some(upstream) = self.target(user) else {
            session.close("target has no upstream").await;
            return Auth::reject();
        };
        self.expiry = Some(Box::pin(session.expired()));
        let conn = Arc::new(Conn::new(
            self.gw.clone(),
            user.to_string(),
            upstream,
            session,
        ));
        if !self.admission.authenticated() {
            // Too late: the front door has given up on this connection.
            conn.close("authenticated after the pre-auth deadline")
                .await;
            return Auth::reject();
        }
        self.slot.set(conn.clone());
        self.conn = Some(conn);
        Auth::Accept
    }

    async fn login_token(&mut self, user: &str, token: &str) -> Auth {
        self.login(user, Credential::Token(token)).await
    }

    fn registered(&self, key: &russh::keys::PublicKey) -> Option<&super::config::KeyPrincipal> {
        let listener = self.gw.config().ssh.as_ref()?;
        listener.keys.iter().find(|k| {
            russh::keys::PublicKey::from_openssh(k.key.trim())
                .is_ok_and(|registered| registered.key_data() == key.key_data())
        })
    }
}

impl russh::server::Handler for Handler {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(self.login_token(user, password).await)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let Some(mut response) = response else {
            return Ok(Auth::Partial {
                name: "warden".into(),
                instructions: "Paste your access token.".into(),
                prompts: vec![("Token: ".into(), false)].into(),
            });
        };
        let token = response
            .next()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        Ok(self.login_token(user, &token).await)
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Spare the signature when the key would be refused anyway.
        Ok(
            if self.registered(offer.public_key).is_some() && self.target(user).is_some() {
                Auth::Accept
            } else {
                Auth::reject()
            },
        )
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let Some(registered) = self.registered(key.public_key).cloned() else {
            return Ok(Auth::reject());
        };
        let principal = Principal {
            subject: registered.subject.clone(),
            issuer: "warden:ssh-key".to_string(),
            groups: registered.groups.clone(),
            actors: vec![registered.subject.clone()],
            expires_at: u64::MAX,
            targets: None,
        };
        Ok(self.login(user, Credential::Registered(principal)).await)
    }

    async fn auth_succeeded(&mut self, session: &mut SshSession) -> Result<(), Self::Error> {
        // Sessions must not outlive the token that opened them (plus the leeway).
        if let (Some(expiry), Some(conn)) = (self.expiry.take(), self.conn.as_ref()) {
            let handle = session.handle();
            // Weak: a connection that ends first is not kept alive by this timer.
            let conn = Arc::downgrade(conn);
            tokio::spawn(async move {
                expiry.await;
                let Some(conn) = conn.upgrade() else { return };
                conn.expired
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = handle
                    .disconnect(
                        russh::Disconnect::ByApplication,
                        "warden: the access token expired; reconnect with a fresh token".into(),
                        String::new(),
                    )
                    .await;
            });
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let Some(conn) = self.conn.clone() else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        reply.accept().await;
        let (id, handle) = (channel.id(), session.handle());
        tokio::spawn(async move {
            use futures_util::FutureExt;
            let run = super::channel::run(conn, channel, handle.clone());
            // A panic in a channel task ends that channel as a failed command would (a reason
            // on stderr, exit status 126), never as a silent hang; other channels go on.
            if std::panic::AssertUnwindSafe(run)
                .catch_unwind()
                .await
                .is_err()
            {
                tracing::error!("ssh channel task panicked");
                let msg = "warden: internal error on this channel; it is closed\n";
                let _ = handle.extended_data(id, 1, msg.as_bytes().to_vec()).await;
                let _ = handle.exit_status_request(id, super::REFUSED_EXIT).await;
                let _ = handle.eof(id).await;
                let _ = handle.close(id).await;
            }
        });
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let Some(conn) = self.conn.clone() else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        if !forward_allowed(&conn, "local", host_to_connect, port_to_connect).await {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        let upstream = match conn.upstream().await {
            Ok(u) => u,
            Err(_) => {
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
                return Ok(());
            }
        };
        match upstream
            .channel_open_direct_tcpip(
                host_to_connect,
                port_to_connect,
                originator_address,
                originator_port,
            )
            .await
        {
            Ok(up) => {
                reply.accept().await;
                tokio::spawn(async move {
                    let mut a = channel.into_stream();
                    let mut b = up.into_stream();
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                });
            }
            Err(_) => reply.reject(ChannelOpenFailure::ConnectFailed).await,
        }
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut SshSession,
    ) -> Result<bool, Self::Error> {
        let Some(conn) = self.conn.clone() else {
            return Ok(false);
        };
        if forward_allowed(&conn, "remote", address, *port).await {
            // Allowed by policy, but the gateway does not carry remote forwards (yet).
            tracing::warn!("remote port forwarding allowed by policy but not supported");
        }
        Ok(false)
    }
}

/// Check (and audit) a port-forwarding request; only a plain `allow` lets it through (a
/// forwarded stream can be neither masked nor held).
async fn forward_allowed(conn: &Conn, direction: &str, host: &str, port: u32) -> bool {
    let forward = Forward {
        direction: direction.to_string(),
        host: host.to_string(),
        port,
    };
    let command = Command::Forward(forward);
    let mut client = crate::session::OneShot::default();
    let text = command.text();
    match conn.session.judge(&text, &[command], &mut client).await {
        crate::session::Judged::Forward(_) => true,
        _ => {
            let why = client.refusal.unwrap_or_default();
            conn.recorder.error(&why);
            tracing::info!("ssh forward refused: {why}");
            false
        }
    }
}

/// Methods offered to clients.
pub fn methods() -> MethodSet {
    [
        MethodKind::Password,
        MethodKind::PublicKey,
        MethodKind::KeyboardInteractive,
    ]
    .as_slice()
    .into()
}
