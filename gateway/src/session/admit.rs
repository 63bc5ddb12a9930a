//! The one way into a session, for every protocol: verify the credential, find the target,
//! check that the principal may reach it (the target's allow lists and the token's own
//! `targets` claim), take a session slot under the per-target and per-principal caps, and open
//! the audited session. Every refusal is audited with its reason (never the token) and
//! returned as a [`Refusal`] the adapter puts in its protocol's words.

use super::{Gateway, Session, SessionError};
use crate::identity::Principal;
use crate::policy::Protocol;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// `[sessions]`: bounds on authenticated sessions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionLimits {
    /// Sessions one principal (`sub`) may hold on one target at once, unless the target says
    /// otherwise (`max_sessions_per_principal`). One agent cannot take every upstream
    /// connection from the others.
    pub max_per_principal: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_per_principal: 16,
        }
    }
}

impl SessionLimits {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_per_principal == 0 {
            return Err("max_per_principal = 0 would refuse every session".into());
        }
        Ok(())
    }
}

/// How a client proved who it is.
pub enum Credential<'a> {
    /// A bearer token (a PostgreSQL password, an SSH password or keyboard-interactive answer).
    Token(&'a str),
    /// A principal the adapter already established (an SSH key registered to a subject).
    Registered(Principal),
}

/// A login attempt: who, where to, from where.
pub struct Login<'a> {
    pub protocol: Protocol,
    pub target: &'a str,
    pub client_addr: String,
    pub credential: Credential<'a>,
}

/// Why a login was refused; adapters choose the protocol's words by `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalKind {
    /// The token did not verify (bad signature, expired, wrong audience...).
    Credential,
    /// No such target, or not one of this protocol.
    UnknownTarget,
    /// The principal may not reach this target.
    NotPermitted,
    /// A session cap is reached.
    TooManySessions,
    /// The gateway cannot open a session now (audit store down, shutting down).
    Unavailable,
}

impl RefusalKind {
    /// A fixed word for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            RefusalKind::Credential => "credential",
            RefusalKind::UnknownTarget => "unknown-target",
            RefusalKind::NotPermitted => "not-permitted",
            RefusalKind::TooManySessions => "too-many-sessions",
            RefusalKind::Unavailable => "unavailable",
        }
    }
}

/// A refused login: what to tell the client. The same text is audited.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A target name as logs and audit notes quote it: in backquotes, cut short when long, card
/// numbers masked, and withheld when shaped like a token (a client that typed its token into
/// the wrong field must not have it written down).
fn shown(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    let token_like = parts.len() == 3
        && name.len() > 32
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '=')
        });
    if token_like {
        return format!(
            "(a name shaped like a token, {} bytes, withheld)",
            name.len()
        );
    }
    let scrubbed = super::scrub(name);
    let mut s: String = scrubbed
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if s.len() < scrubbed.len() {
        s.push('…');
    }
    format!("`{s}`")
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn names_shaped_like_tokens_are_withheld() {
        assert_eq!(shown("payments"), "`payments`");
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
        assert!(!shown(jwt).contains("eyJ"));
        assert!(shown(&"x".repeat(200)).len() < 80);
        assert_eq!(shown("a\0b"), "`ab…`");
    }
}

/// Open sessions per target and per (target, subject): what the caps count.
#[derive(Default)]
pub struct Slots {
    counts: Mutex<SlotCounts>,
}

#[derive(Default)]
struct SlotCounts {
    target: HashMap<String, usize>,
    principal: HashMap<(String, String), usize>,
}

/// A taken session slot; dropping it gives the slot back (also when a session task panics).
pub struct Slot {
    gw: Arc<Gateway>,
    target: String,
    subject: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self
            .gw
            .slots
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let key = (self.target.clone(), self.subject.clone());
        if let Some(n) = c.principal.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.principal.remove(&key);
            }
        }
        if let Some(n) = c.target.get_mut(&self.target) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.target.remove(&self.target);
            }
        }
    }
}

/// Refused logins audited one by one per client address and minute; more are counted.
const REFUSALS_NOTED_PER_MINUTE: u32 = 30;

/// The per-address rate of refused-login notes.
#[derive(Debug, Default)]
pub struct RefusalLog {
    windows: Mutex<HashMap<String, RefusalWindow>>,
}

#[derive(Debug)]
struct RefusalWindow {
    start: std::time::Instant,
    noted: u32,
    /// Refusals counted but not noted, not yet reported.
    suppressed: u64,
}

/// Whose allowance a client address draws on: every loopback address is one (a local process
/// can bind any of 127.0.0.0/8), IPv4 by /24, IPv6 by /64.
fn refusal_key(client_addr: &str) -> String {
    use std::net::IpAddr;
    match client_addr.parse::<std::net::SocketAddr>().map(|a| a.ip()) {
        Ok(ip) if ip.is_loopback() => "loopback".to_owned(),
        Ok(IpAddr::V4(v4)) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Err(_) => client_addr.to_owned(),
    }
}

impl RefusalLog {
    /// `Some(n)`: note this refusal, mentioning `n` earlier ones that were only counted;
    /// `None`: count it.
    pub fn admit(&self, client_addr: &str) -> Option<u64> {
        let key = refusal_key(client_addr);
        let now = std::time::Instant::now();
        let minute = std::time::Duration::from_secs(60);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > 10_000 {
            windows.retain(|_, w| now.duration_since(w.start) < minute || w.suppressed > 0);
        }
        let w = windows.entry(key).or_insert(RefusalWindow {
            start: now,
            noted: 0,
            suppressed: 0,
        });
        if now.duration_since(w.start) >= minute {
            w.start = now;
            w.noted = 0;
        }
        if w.noted < REFUSALS_NOTED_PER_MINUTE {
            w.noted += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            None
        }
    }

    /// Counts not yet reported, per address range, taken (for a periodic note).
    pub fn take_counts(&self) -> Vec<(String, u64)> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows
            .iter_mut()
            .filter(|(_, w)| w.suppressed > 0)
            .map(|(k, w)| (k.clone(), std::mem::take(&mut w.suppressed)))
            .collect()
    }
}

impl Gateway {
    /// Note the refused logins that were only counted (see [`RefusalLog`]): `warden serve`
    /// calls this every minute, so a count never waits for a next refusal.
    pub async fn note_refusal_counts(&self) {
        for (range, n) in self.refusals.take_counts() {
            self.note(
                "login-refused",
                format!(
                    "{n} more logins from {range} were refused with a bad credential (counted, \
                     not noted one by one)"
                ),
            )
            .await;
        }
    }

    /// Authenticate, authorize and open a session, or say why not (audited either way).
    pub async fn authenticate(self: &Arc<Self>, login: Login<'_>) -> Result<Session, Refusal> {
        let result = self.admit(&login).await;
        if let Err(refusal) = &result {
            crate::metrics::login_refused(login.protocol.as_str(), refusal.kind.as_str());
            tracing::info!(
                client = %login.client_addr,
                target = %shown(login.target),
                "{} login refused: {}",
                login.protocol.as_str(),
                super::log_safe(&refusal.message)
            );
            // Each refusal is audited, up to a rate per address: past it, refusals are counted
            // and the count goes into the address's next note, so a flood of bad logins cannot
            // grow the audit store without bound.
            // Refusals of a validly signed token are bounded by token issuance: always noted.
            let limited = refusal.kind == RefusalKind::Credential;
            let admitted = if limited {
                self.refusals.admit(&login.client_addr)
            } else {
                Some(0)
            };
            if let Some(suppressed) = admitted {
                let more = match suppressed {
                    0 => String::new(),
                    n => format!(
                        " ({n} earlier refused logins from this address were counted, not noted \
                         one by one)"
                    ),
                };
                self.note(
                    "login-refused",
                    format!(
                        "{} login from {} to target {} refused: {}{more}",
                        login.protocol.as_str(),
                        login.client_addr,
                        shown(login.target),
                        refusal.message
                    ),
                )
                .await;
            }
        }
        result
    }

    async fn admit(self: &Arc<Self>, login: &Login<'_>) -> Result<Session, Refusal> {
        let refuse = |kind, message: String| Refusal { kind, message };
        if self.lifecycle.is_stopping() {
            return Err(refuse(
                RefusalKind::Unavailable,
                "warden is shutting down".into(),
            ));
        }
        // The credential first: an unauthenticated client learns nothing of the targets.
        let principal = match &login.credential {
            Credential::Token(token) => self
                .verifier
                .verify(token.trim())
                .map_err(|e| refuse(RefusalKind::Credential, format!("token rejected: {e}")))?,
            Credential::Registered(p) => p.clone(),
        };
        let target = self
            .config
            .targets
            .get(login.target)
            .filter(|t| t.protocol == login.protocol)
            .ok_or_else(|| {
                refuse(
                    RefusalKind::UnknownTarget,
                    format!(
                        "no {} target named {}",
                        login.protocol.as_str(),
                        shown(login.target)
                    ),
                )
            })?;
        if !principal.token_allows(login.target) {
            return Err(refuse(
                RefusalKind::NotPermitted,
                format!(
                    "the token of `{}` is for other targets, not `{}`",
                    principal.subject, login.target
                ),
            ));
        }
        if !target.admits(&principal) {
            return Err(refuse(
                RefusalKind::NotPermitted,
                format!(
                    "`{}` may not reach target `{}` (not in its allow_subjects or allow_groups)",
                    principal.subject, login.target
                ),
            ));
        }
        let per_principal = target
            .max_sessions_per_principal
            .unwrap_or(self.config.sessions.max_per_principal);
        let slot = self
            .take_slot(
                login.target,
                &principal.subject,
                target.max_sessions,
                per_principal,
            )
            .map_err(|m| refuse(RefusalKind::TooManySessions, m))?;
        Session::open(
            self.clone(),
            principal,
            login.target,
            login.protocol,
            login.client_addr.clone(),
            slot,
        )
        .await
        .map_err(|e| match e {
            SessionError::Audit(crate::audit::AuditError::DiskFull(why)) => {
                tracing::error!("session refused: {why}");
                refuse(
                    RefusalKind::Unavailable,
                    "the audit store's disk is nearly full: new sessions are refused until an \
                     operator frees space"
                        .into(),
                )
            }
            SessionError::Audit(_) => refuse(
                RefusalKind::Unavailable,
                "the audit store is unavailable".into(),
            ),
            other => refuse(RefusalKind::Unavailable, other.to_string()),
        })
    }

    fn take_slot(
        self: &Arc<Self>,
        target: &str,
        subject: &str,
        max_target: Option<usize>,
        max_principal: usize,
    ) -> Result<Slot, String> {
        let mut c = self.slots.counts.lock().unwrap_or_else(|p| p.into_inner());
        let on_target = c.target.get(target).copied().unwrap_or(0);
        if let Some(max) = max_target
            && on_target >= max
        {
            return Err(format!(
                "too many sessions on target `{target}` ({on_target} of {max})"
            ));
        }
        let key = (target.to_string(), subject.to_string());
        let mine = c.principal.get(&key).copied().unwrap_or(0);
        if mine >= max_principal {
            return Err(format!(
                "too many sessions for `{subject}` on target `{target}` ({mine} of {max_principal})"
            ));
        }
        *c.target.entry(target.to_string()).or_default() += 1;
        *c.principal.entry(key).or_default() += 1;
        Ok(Slot {
            gw: self.clone(),
            target: target.to_string(),
            subject: subject.to_string(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod refusal_tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_is_noted_at_a_bounded_rate_and_counted() {
        let log = RefusalLog::default();
        let noted = (0..1000)
            .filter(|i| log.admit(&format!("127.0.0.1:{}", 1000 + i)).is_some())
            .count();
        assert_eq!(noted, REFUSALS_NOTED_PER_MINUTE as usize);
        // Every loopback address draws on the same allowance.
        assert_eq!(log.admit("127.8.9.10:5"), None);
        // Another network has its own.
        assert_eq!(log.admit("10.0.0.1:5"), Some(0));
        assert_eq!(log.admit("10.0.0.77:5"), Some(0));
        // The count is taken by the periodic note...
        assert_eq!(log.take_counts(), [("loopback".to_owned(), 1000 - 30 + 1)]);
        // ...or reaches the next note once the window has passed.
        assert_eq!(log.admit("127.0.0.1:1"), None);
        {
            let mut w = log.windows.lock().unwrap();
            w.get_mut("loopback").unwrap().start -= std::time::Duration::from_secs(61);
        }
        assert_eq!(log.admit("127.0.0.1:9"), Some(1));
    }
}
