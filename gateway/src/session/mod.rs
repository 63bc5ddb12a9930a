//! The session path every protocol adapter drives: open (audited) → for each command: decide
//! (policy chain, then a durable audit event) → the adapter forwards, refuses or holds → results
//! pass through masking → close (audited). Adapters know their wire format; this file knows
//! the order of things and nothing of wires.
//!
//! Nothing reaches the audit store or a recording with a clear card number: command texts are
//! scrubbed with the same PAN detector `pci-mask` uses, whatever the target's policies say.

use crate::approvals::{ApprovalOutcome, ApprovalRequest, PendingApproval};
use crate::audit::{
    AuditError, AuditPrincipal, AuditVerdict, CommandEvent, EventKind, MaskedCells, MaskedEvent,
    NewEvent, PolicyDecision, SessionCounts, SessionEnd, SessionStart,
};
use crate::identity::Principal;
use crate::policy::{self, Column, Command, Decision, MaskFailure, Protocol, Row, Verdict};
use crate::recording::Recorder;
use std::collections::BTreeMap;
use std::sync::Arc;

mod admit;
mod gateway;
mod judge;

pub use admit::{Credential, Login, Refusal, RefusalKind, SessionLimits, Slot};
pub use gateway::{Gateway, Generation, Lifecycle};
pub use judge::{Client, Ending, Interrupt, Judged, OneShot, Refused};

/// Why a session could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("unknown target `{0}`")]
    UnknownTarget(String),
    #[error("target `{target}` is not a {protocol} target")]
    WrongProtocol {
        target: String,
        protocol: &'static str,
    },
    #[error("audit store unavailable: {0}")]
    Audit(#[from] AuditError),
    /// A held command too long to show an approver whole: refused rather than approved blind.
    #[error(
        "the command is {0} bytes: longer than an approver can be shown whole ({APPROVAL_TEXT_MAX} bytes)"
    )]
    TooLongToApprove(usize),
}

/// Longest command held for approval. An approver decides on the whole text, never on a
/// capped one (padding around a statement would hide it), so a longer one is refused.
pub const APPROVAL_TEXT_MAX: usize = 256 << 10;

/// The ruling on one client message (one or more commands).
#[derive(Debug, Clone)]
pub struct Ruling {
    /// The strictest decision over all commands of the message.
    pub decision: Decision,
    /// Each command's own decision, in order (masking uses the one of its statement).
    pub per_command: Vec<Decision>,
    /// The audit event's sequence number, to tie masked-cell counts to it.
    pub seq: u64,
    /// The policies it was taken under (read before the chain was).
    pub generation: Generation,
    /// The commands judged, to judge them again should the policies change before the
    /// ruling is used (an approval granted after a reload).
    pub commands: Arc<[Command]>,
}

impl Ruling {
    /// Whether results must go through `mask-rows`: some policy answered `mask`. After an
    /// approval this still holds: approving a read does not unmask it.
    pub fn needs_mask(&self) -> bool {
        // Every statement's decision counts: when another statement of the message wins with
        // require-approval, a SELECT's `mask` must still apply once the message is approved.
        std::iter::once(&self.decision)
            .chain(&self.per_command)
            .flat_map(|d| &d.policies)
            .any(|p| p.verdict == Verdict::Mask)
    }

    /// What [`Session::mask`] needs for the results of command `index` of the message: the
    /// event's `seq` and that command's own decision, when it masks. Where the target split
    /// the message differently than the gateway (no such index), any decision that masks
    /// applies: stricter, never looser.
    pub fn mask_for(&self, index: usize) -> Option<(u64, &Decision)> {
        let masks = |d: &Decision| d.policies.iter().any(|p| p.verdict == Verdict::Mask);
        let d = match self.per_command.get(index) {
            Some(d) => d,
            None => self.per_command.iter().find(|d| masks(d))?,
        };
        masks(d).then_some((self.seq, d))
    }

    /// The limits the message runs under: for every command, the smallest of each limit any
    /// policy set (`None`: no policy set a budget).
    pub fn budget(&self) -> Option<policy::Budget> {
        std::iter::once(&self.decision)
            .chain(&self.per_command)
            .filter_map(Decision::budget)
            .fold(None, |acc: Option<policy::Budget>, b| {
                Some(acc.map_or_else(|| b.clone(), |a| a.tighten(&b)))
            })
    }

    /// [`Ruling::mask_for`] a one-command message (a shell line): the combined decision.
    pub fn mask(&self) -> Option<(u64, &Decision)> {
        self.needs_mask().then_some((self.seq, &self.decision))
    }
}

/// One client connection's session.
pub struct Session {
    gw: Arc<Gateway>,
    /// What policies see.
    pub info: policy::Session,
    pub principal: Principal,
    recorder: Recorder,
    /// Counters and pending masked-cell counts, shared by the connection's tasks (SSH
    /// channels run concurrently; HTTP keep-alive and Kubernetes watches will too). Held only
    /// between awaits, never across one.
    state: std::sync::Mutex<State>,
    /// When the session must end: the token's `exp` plus the verifier's leeway (`None`: a
    /// credential without expiry, such as a registered SSH key).
    ends_at: Option<std::time::SystemTime>,
    /// The session cap slot, given back when the session goes.
    _slot: Slot,
    /// Set by [`Session::close`]; a session dropped without it (a panicking task) still gets
    /// an audited end from `Drop`.
    closed: std::sync::atomic::AtomicBool,
    /// Set once the session stopped counting as open ([`Session::ended`]), whichever of
    /// `close` and `Drop` got there: a `close` cancelled half-way still ends it in `Drop`.
    ended: std::sync::atomic::AtomicBool,
}

/// What a session counts while it runs.
#[derive(Default)]
struct State {
    counts: SessionCounts,
    /// Masked cells per command (`seq`), per (column, rule), not yet written.
    masked: BTreeMap<u64, BTreeMap<(String, String), u64>>,
}

impl Session {
    /// Open a session for an authenticated, authorized principal on `target`; audited before
    /// it returns. Adapters come in through [`Gateway::authenticate`].
    async fn open(
        gw: Arc<Gateway>,
        principal: Principal,
        target: &str,
        protocol: Protocol,
        client_addr: String,
        slot: Slot,
    ) -> Result<Session, SessionError> {
        let t = gw
            .config
            .targets
            .get(target)
            .ok_or_else(|| SessionError::UnknownTarget(target.to_string()))?;
        if t.protocol != protocol {
            return Err(SessionError::WrongProtocol {
                target: target.to_string(),
                protocol: protocol.as_str(),
            });
        }
        let id = new_session_id();
        let info = policy::Session {
            id: id.clone(),
            protocol,
            target: target.to_string(),
            principal: policy::Principal::from(&principal),
            client_addr: client_addr.clone(),
        };
        let start = SessionStart {
            protocol,
            target: target.to_string(),
            client_addr,
            principal: audit_principal(&principal),
        };
        gw.audit
            .append(NewEvent::session(&id, EventKind::SessionStart(start)))
            .await?;
        // From here on the session counts as open: a failure below still ends it (Drop).
        let recorder = Recorder::start(gw.audit.clone(), &id);
        gw.lifecycle.opened();
        crate::metrics::session_opened(protocol.as_str(), target);
        // The subject and actors come from a token: escaped, so a newline or a terminal
        // control in a claim cannot forge a log line or reach an operator's terminal.
        tracing::info!(
            session = %id,
            protocol = protocol.as_str(),
            target,
            subject = %log_safe(&principal.subject),
            actors = %log_safe(&principal.actors.join(" > ")),
            client = %info.client_addr,
            "session started"
        );
        let ends_at = (principal.expires_at != u64::MAX).then(|| {
            let leeway = gw.config.identity.leeway;
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(principal.expires_at) + leeway
        });
        Ok(Session {
            gw,
            info,
            principal,
            recorder,
            state: std::sync::Mutex::new(State::default()),
            ends_at,
            _slot: slot,
            closed: std::sync::atomic::AtomicBool::new(false),
            ended: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Resolves when the session's token has expired (plus the verifier's leeway); never for
    /// a credential without expiry. Adapters end the session then, in their protocol's words,
    /// with [`EXPIRED`] as the reason.
    pub fn expired(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let left = self.ends_at.map(|at| {
            at.duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
        });
        async move {
            match left {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        }
    }

    pub fn id(&self) -> &str {
        &self.info.id
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gw
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Ask the chain about every command of one message and write the decision to the audit
    /// store. Returns only once the event is durable: the caller may then forward (or refuse).
    /// `text` is the message as the client sent it (scrubbed of PANs before it is stored).
    pub async fn decide(&self, text: &str, commands: &[Command]) -> Result<Ruling, SessionError> {
        self.flush_masked().await?;
        let generation = self.gw.generation();
        let chain = self.gw.chain(&self.info.target);
        let per_command = self.gw.engine.check_all(&chain, &self.info, commands).await;
        let kind = commands
            .iter()
            .map(Command::kind)
            .collect::<Vec<_>>()
            .join(";");
        let mut ruling = self
            .record_decision(text, kind, per_command, generation)
            .await?;
        // Kept only for a hold: an approval granted after a policy change judges them again.
        // Copying every command's record on the per-command path would serve nothing else.
        if matches!(ruling.decision.verdict, Verdict::RequireApproval(_)) {
            ruling.commands = commands.into();
        }
        Ok(ruling)
    }

    /// Whether `ruling` was taken under the policies in force now. A verdict kept for later
    /// (a prepared statement's) that is not must be taken again before it is used.
    pub fn is_current(&self, ruling: &Ruling) -> bool {
        ruling.generation == self.gw.generation()
    }

    /// A decision the gateway itself takes about a command that already ran (a write over its
    /// budget, held for an approver), audited like a policy's: `decided_by` names the rule.
    pub async fn decide_as(
        &self,
        text: &str,
        kind: &str,
        decision: Decision,
    ) -> Result<Ruling, SessionError> {
        self.flush_masked().await?;
        let generation = self.gw.generation();
        self.record_decision(text, kind.to_string(), vec![decision], generation)
            .await
    }

    async fn record_decision(
        &self,
        text: &str,
        kind: String,
        per_command: Vec<Decision>,
        generation: Generation,
    ) -> Result<Ruling, SessionError> {
        let decision = Decision::combine_all(&per_command);
        let policies = per_command
            .iter()
            .flat_map(|d| {
                let enforced = d.policies.iter().map(|p| policy_decision(p, false));
                enforced.chain(d.shadow.iter().map(|p| policy_decision(p, true)))
            })
            .collect();
        let stricter = Decision::stricter_shadows(&decision.verdict, &per_command);
        let shadow = stricter.first().copied();
        let event = CommandEvent {
            command: self.gw.audit.cap(&scrub(text)).into_owned(),
            kind,
            verdict: audit_verdict(&decision.verdict),
            reason: decision
                .verdict
                .reason()
                .map(|_| scrub(&decision.display_reason())),
            policies,
            shadow_verdict: shadow.map(|p| audit_verdict(&p.verdict)),
            shadow_reason: shadow.and_then(|p| {
                p.verdict
                    .reason()
                    .map(|r| scrub(&format!("{}: {r}", p.policy)))
            }),
        };
        let shown = match &decision.verdict {
            Verdict::Mask => decision.decided_by.clone(),
            v => v.reason().map(|_| decision.display_reason()),
        };
        let decided_by = decision.decided_by.as_deref().unwrap_or("warden");
        let seq = self
            .record_command(text, event, shown.as_deref(), decided_by)
            .await?;
        // Counted once the event is durable, once per shadow policy that disagreed.
        let mut counted = std::collections::BTreeSet::new();
        for p in stricter {
            if counted.insert(p.policy.as_str()) {
                crate::metrics::shadow_disagreement(&self.info.target, &p.policy);
            }
        }
        Ok(Ruling {
            decision,
            per_command,
            seq,
            generation,
            commands: Arc::from(Vec::new()),
        })
    }

    /// Refuse a command the gateway itself cannot let through (an editing sequence it could
    /// not follow, an extension it cannot check), without asking the chain; audited like a
    /// policy's deny, with `warden` as the one deciding.
    pub async fn refuse(&self, text: &str, kind: &str, reason: &str) -> Result<u64, SessionError> {
        self.flush_masked().await?;
        let event = CommandEvent {
            command: self.gw.audit.cap(&scrub(text)).into_owned(),
            kind: kind.to_string(),
            verdict: AuditVerdict::Deny,
            reason: Some(scrub(reason)),
            policies: Vec::new(),
            shadow_verdict: None,
            shadow_reason: None,
        };
        self.record_command(text, event, Some(reason), "warden")
            .await
    }

    /// Append a command's event (durable before this returns), count its verdict, and put it
    /// in the recording with the reason the client was shown.
    async fn record_command(
        &self,
        text: &str,
        event: CommandEvent,
        shown: Option<&str>,
        decided_by: &str,
    ) -> Result<u64, SessionError> {
        let verdict = event.verdict;
        let kind = event.kind.clone();
        let seq = self
            .gw
            .audit
            .append(NewEvent::session(self.id(), EventKind::Command(event)))
            .await?;
        crate::metrics::command(
            self.info.protocol.as_str(),
            &self.info.target,
            verdict,
            decided_by,
        );
        if matches!(verdict, AuditVerdict::Deny | AuditVerdict::RequireApproval) {
            // No command text or reason: either may carry what the client typed (a password
            // in an ALTER ROLE, a token in a curl line). The audit event has both.
            tracing::info!(
                session = %self.info.id,
                target = %self.info.target,
                kind = %kind,
                verdict = verdict.as_str(),
                decided_by = %decided_by,
                seq,
                "command refused"
            );
        }
        {
            let counts = &mut self.state().counts;
            counts.commands += 1;
            match verdict {
                AuditVerdict::Allow => counts.allowed += 1,
                AuditVerdict::Mask => counts.masked += 1,
                AuditVerdict::Deny => counts.denied += 1,
                AuditVerdict::RequireApproval => counts.approvals += 1,
            }
        }
        self.recorder
            .command(&self.gw.audit.cap(text), verdict.as_str(), shown);
        Ok(seq)
    }

    /// Hold a command for an approver (the request is audited before this returns the id).
    pub async fn request_approval(
        &self,
        text: &str,
        ruling: &Ruling,
    ) -> Result<PendingApproval, SessionError> {
        let reason = ruling.decision.display_reason();
        let command = scrub(text);
        if command.len() > APPROVAL_TEXT_MAX {
            return Err(SessionError::TooLongToApprove(command.len()));
        }
        let request = ApprovalRequest {
            session_id: self.id().to_string(),
            target: self.info.target.clone(),
            requester: self.principal.clone(),
            command,
            reason: scrub(&reason),
        };
        self.gw
            .approvals
            .request(request)
            .await
            .map_err(|e| match e {
                crate::approvals::ApprovalError::Audit(a) => SessionError::Audit(a),
                other => {
                    SessionError::Audit(AuditError::Io(std::io::Error::other(other.to_string())))
                }
            })
    }

    /// Record what an approval wait came to.
    pub fn note_approval(&self, outcome: &ApprovalOutcome) {
        let line = match outcome {
            ApprovalOutcome::Approved { approver, reason } => {
                format!("approved by {approver}: {reason}")
            }
            ApprovalOutcome::Denied { approver, reason } => {
                format!("denied by {approver}: {reason}")
            }
            ApprovalOutcome::TimedOut => "approval timed out".to_string(),
        };
        self.recorder.notice(&line);
    }

    /// Mask one batch of result rows under `decision` (the statement's own); returns the edited
    /// cells as (row, column). On error nothing of the batch may be sent. Cell counts are written to the audit when the next command
    /// starts or the session ends.
    pub async fn mask(
        &self,
        seq: u64,
        decision: &Decision,
        columns: &[Column],
        rows: &mut [Row],
    ) -> Result<Vec<(u32, u32)>, MaskFailure> {
        let summary = self
            .gw
            .engine
            .mask_rows(decision, &self.info, columns, rows)
            .await?;
        if !summary.cells.is_empty() {
            crate::metrics::masked_cells(&self.info.target, summary.cells.values().sum());
            let mut state = self.state();
            let per_command = state.masked.entry(seq).or_default();
            for (key, n) in summary.cells {
                *per_command.entry(key).or_default() += n;
            }
        }
        Ok(summary.edited)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write the pending masked-cell counts (column, rule, count; never values), one event
    /// per command.
    async fn flush_masked(&self) -> Result<(), SessionError> {
        let pending = std::mem::take(&mut self.state().masked);
        for (seq, cells) in pending {
            let cells = cells
                .into_iter()
                .map(|((column, rule), count)| MaskedCells {
                    column,
                    rule,
                    count,
                })
                .collect();
            let event = MaskedEvent {
                command_seq: seq,
                cells,
            };
            self.gw
                .audit
                .append(NewEvent::session(self.id(), EventKind::Masked(event)))
                .await?;
        }
        Ok(())
    }

    /// End the session: pending counts, the recording and the end event, all durable. Only
    /// the first call counts (a connection's tasks may race to close it).
    pub async fn close(&self, reason: &str) {
        if self.closed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.flush_masked().await {
            tracing::error!(session = %self.info.id, "cannot write masked counts: {e}");
        }
        // Durable before the end event; the writer task ends when the last clone goes.
        self.recorder.flush().await;
        let end = SessionEnd {
            reason: reason.to_string(),
            counts: self.state().counts,
        };
        tracing::info!(
            session = %self.info.id,
            target = %self.info.target,
            reason = %log_safe(reason),
            commands = end.counts.commands,
            denied = end.counts.denied,
            masked = end.counts.masked,
            approvals = end.counts.approvals,
            "session ended"
        );
        if let Err(e) = self
            .gw
            .audit
            .append(NewEvent::session(&self.info.id, EventKind::SessionEnd(end)))
            .await
        {
            tracing::error!(session = %self.info.id, "cannot write session end: {e}");
        }
        self.ended();
    }

    /// The session no longer counts as open: once, from `close` or `Drop`.
    fn ended(&self) {
        if !self.ended.swap(true, std::sync::atomic::Ordering::SeqCst) {
            crate::metrics::session_closed(self.info.protocol.as_str(), &self.info.target);
            self.gw.lifecycle.ended();
        }
    }
}

/// The end reason of a session whose token expired.
pub const EXPIRED: &str = "token expired";

impl Drop for Session {
    /// A session dropped without [`Session::close`]: its task panicked or was aborted. The end
    /// is still audited (from a task of its own: `Drop` cannot wait), so no session is left
    /// open and `warden serve` does not wait for it at shutdown.
    fn drop(&mut self) {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            // A close that was cancelled before it finished still stops counting.
            self.ended();
            return;
        }
        if self.ended.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        crate::metrics::session_closed(self.info.protocol.as_str(), &self.info.target);
        let gw = self.gw.clone();
        let id = self.info.id.clone();
        let end = SessionEnd {
            reason: "session task failed (internal error); connection closed".to_string(),
            counts: self.state().counts,
        };
        tracing::error!(session = %id, "session ended without a close: auditing its end");
        let write = async move {
            if let Err(e) = gw
                .audit
                .append(NewEvent::session(&id, EventKind::SessionEnd(end)))
                .await
            {
                tracing::error!(session = %id, "cannot write session end: {e}");
            }
            gw.lifecycle.ended();
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(write);
            }
            Err(_) => self.gw.lifecycle.ended(),
        }
    }
}

/// `text` as one log field: card numbers scrubbed, controls, newlines and bidi overrides
/// escaped.
pub fn log_safe(text: &str) -> String {
    crate::cli::escape::cell(&scrub(text)).into_owned()
}

/// Replace every PAN in `text` (defence in depth for audit records and recordings).
pub fn scrub(text: &str) -> String {
    warden_pan::scrub(text).into_owned()
}

fn new_session_id() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("ses-{n:016x}")
}

fn policy_decision(p: &policy::PolicyVerdict, shadow: bool) -> PolicyDecision {
    PolicyDecision {
        shadow,
        policy: p.policy.clone(),
        module_sha256: (!p.sha256.is_empty()).then(|| p.sha256.clone()),
        verdict: audit_verdict(&p.verdict),
        // An allow or mask within a budget records the budget as its reason.
        reason: p.verdict.reason().map(scrub).or_else(|| {
            p.budget
                .as_ref()
                .map(|b| format!("within budget: {}", b.describe()))
        }),
        latency_us: p.latency.as_micros() as u64,
        error: p.failure.as_ref().map(|f| f.cause().to_string()),
    }
}

fn audit_verdict(v: &Verdict) -> AuditVerdict {
    match v {
        Verdict::Allow | Verdict::AllowWithin(_) => AuditVerdict::Allow,
        Verdict::Mask | Verdict::MaskWithin(_) => AuditVerdict::Mask,
        Verdict::Deny(_) => AuditVerdict::Deny,
        Verdict::RequireApproval(_) => AuditVerdict::RequireApproval,
    }
}

/// The principal as the trail keeps it: a claim shaped like a card number is masked there
/// like any other text (the identity provider issued it, but the trail holds no clear PAN).
fn audit_principal(p: &Principal) -> AuditPrincipal {
    let all = |v: &[String]| v.iter().map(|s| scrub(s)).collect();
    AuditPrincipal {
        subject: scrub(&p.subject),
        issuer: scrub(&p.issuer),
        groups: all(&p.groups),
        actors: all(&p.actors),
    }
}
