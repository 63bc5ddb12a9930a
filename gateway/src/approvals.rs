//! Commands held for approval: the in-memory registry the session path parks a
//! `require-approval` command in, and the rules for who may decide it.
//!
//! Every state change goes to the audit store first and takes effect only once it is durable:
//! `approval_requested` before an approver can see the request, `approval_decided` before the
//! waiting session is woken. A request that nobody decides is closed by an `approval_decided`
//! event as well, with `approved: false` and a reserved `system:` approver, so the audit's
//! approval index never keeps a request open that nobody can decide any more:
//!
//! | how it ended                         | `approver`         |
//! |--------------------------------------|--------------------|
//! | `approval_timeout` passed            | `system:timeout`   |
//! | the client went away (future dropped) | `system:withdrawn` |
//! | the gateway restarted meanwhile      | `system:restart`   |
//!
//! Tokens whose subject starts with `system:` can never decide, so these cannot be forged.
//!
//! Who may decide: a principal in one of `[admin] approver_groups`, holding its own token (no
//! `act` chain: a human check that an agent can perform on a human's behalf is no check), whose
//! chain shares no party with the requester's chain. The last rule covers self-approval, an
//! agent approving for the human it works for, and an agent approving its own request while
//! acting for someone else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::audit::{
    ApprovalDecided, ApprovalRequested, AuditError, AuditStore, EventKind, NewEvent, Requester,
    Timestamp,
};
use crate::config::AdminConfig;
use crate::identity::Principal;

/// The approver recorded when `approval_timeout` passed without a decision.
pub const TIMEOUT_APPROVER: &str = "system:timeout";
/// The approver recorded when the held command's client went away first.
pub const WITHDRAWN_APPROVER: &str = "system:withdrawn";
/// The approver recorded by [`Approvals::close_stale`] for requests of an earlier process.
pub const RESTART_APPROVER: &str = "system:restart";
/// Subjects with this prefix are the gateway's own and may not decide anything.
const RESERVED_PREFIX: &str = "system:";
/// Longest reason accepted from an approver: it is written to the audit log forever.
pub const MAX_REASON_LEN: usize = 4096;

/// The registry of held commands. Cheap to clone: clones share one registry.
#[derive(Debug, Clone)]
pub struct Approvals {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    audit: AuditStore,
    approver_groups: Vec<String>,
    timeout: Duration,
    /// When this registry was made: requests older than this belong to another process.
    started: Timestamp,
    pending: Mutex<HashMap<String, Entry>>,
}

/// One held command. Whoever removes it from the map owns its resolution.
#[derive(Debug)]
struct Entry {
    info: PendingInfo,
    deadline: Instant,
    tx: oneshot::Sender<Resolution>,
}

/// What the waiter is told.
#[derive(Debug)]
enum Resolution {
    /// Recorded durably by the decider.
    Decided(ApprovalOutcome),
    /// A decider held the entry past its deadline and could not record its decision: the waiter
    /// records the timeout.
    Expired,
}

/// A command the session path wants approved.
#[derive(Debug, Clone)]
pub struct ApprovalRequest {
    pub session_id: String,
    /// The target's name from warden.toml.
    pub target: String,
    pub requester: Principal,
    /// The held command, already PAN-masked by the caller: it is shown to approvers and logged.
    pub command: String,
    /// The policy's reason for asking.
    pub reason: String,
}

/// A pending request as approvers see it (`GET /v1/approvals`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingInfo {
    pub id: String,
    pub session_id: String,
    pub target: String,
    /// The requester's subject and delegation chain (subject first).
    pub requester: Requester,
    pub command: String,
    pub reason: String,
    pub requested_at: Timestamp,
    pub expires_at: Timestamp,
}

/// How a held command was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalOutcome {
    Approved {
        approver: String,
        reason: String,
    },
    Denied {
        approver: String,
        reason: String,
    },
    /// Nobody decided within `approval_timeout` (treat as a denial).
    TimedOut,
}

/// Why a request or a decision was refused. Messages are shown to approvers as they are.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("no pending approval `{0}` (unknown, already decided or withdrawn)")]
    NotFound(String),
    #[error("approval `{0}` has expired")]
    Expired(String),
    #[error("a non-empty reason is required")]
    EmptyReason,
    #[error("the reason is longer than {MAX_REASON_LEN} bytes")]
    ReasonTooLong,
    #[error("`{0}` is in none of the approver groups")]
    NotAnApprover(String),
    #[error("subjects starting with `system:` are reserved for the gateway")]
    ReservedApprover,
    #[error("`{0}` cannot decide their own request")]
    SelfApproval(String),
    #[error("`{approver}` is in the requester's delegation chain ({chain}) and cannot decide it")]
    ApproverInRequesterChain { approver: String, chain: String },
    #[error("the requester `{requester}` is in the approver's delegation chain ({chain})")]
    RequesterInApproverChain { requester: String, chain: String },
    #[error("`{party}` acts in both the requester's and the approver's delegation chain")]
    SharedAgent { party: String },
    #[error("approvals must be decided with the approver's own token, not through agents ({0})")]
    DelegatedApprover(String),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("background task failed: {0}")]
    Background(#[from] tokio::task::JoinError),
}

impl Approvals {
    pub fn new(audit: AuditStore, config: &AdminConfig) -> Approvals {
        Approvals {
            inner: Arc::new(Inner {
                audit,
                approver_groups: config.approver_groups.clone(),
                timeout: config.approval_timeout,
                started: Timestamp::now(),
                pending: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Hold a command: record `approval_requested` durably, then make it visible to approvers.
    /// The caller tells its client the returned id and awaits [`PendingApproval::wait`].
    pub async fn request(&self, req: ApprovalRequest) -> Result<PendingApproval, ApprovalError> {
        let id = self.fresh_id();
        let requester = Requester {
            subject: req.requester.subject.clone(),
            actors: req.requester.actors.clone(),
        };
        let requested_at = Timestamp::now();
        let event = EventKind::ApprovalRequested(ApprovalRequested {
            approval_id: id.clone(),
            command: req.command.clone(),
            reason: req.reason.clone(),
            // Scrubbed for the trail only: the parties check compares the claims as issued.
            requester: Requester {
                subject: crate::session::scrub(&requester.subject),
                actors: requester
                    .actors
                    .iter()
                    .map(|a| crate::session::scrub(a))
                    .collect(),
            },
        });
        self.inner
            .audit
            .append(NewEvent::session(req.session_id.clone(), event))
            .await?;
        // The clock starts once the request is visible, so approvers get the whole timeout.
        let deadline = Instant::now() + self.inner.timeout;
        let expires_at = Timestamp::from_system_time(SystemTime::now() + self.inner.timeout);
        let info = PendingInfo {
            id: id.clone(),
            session_id: req.session_id.clone(),
            target: req.target,
            requester,
            command: req.command,
            reason: req.reason,
            requested_at,
            expires_at,
        };
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id.clone(), Entry { info, deadline, tx });
        Ok(PendingApproval {
            id: id.clone(),
            expires_at,
            waiter: Waiter {
                approvals: self.clone(),
                id,
                session_id: req.session_id,
                deadline,
                rx,
            },
        })
    }

    /// The requests awaiting a decision, oldest first.
    pub fn pending(&self) -> Vec<PendingInfo> {
        let mut list: Vec<PendingInfo> = self.lock().values().map(|e| e.info.clone()).collect();
        list.sort_by(|a, b| (a.requested_at, &a.id).cmp(&(b.requested_at, &b.id)));
        list
    }

    /// Whether `principal` is in one of the approver groups. An empty `approver_groups` makes
    /// nobody an approver: approvals then always time out, which fails closed.
    pub fn is_approver(&self, principal: &Principal) -> bool {
        principal
            .groups
            .iter()
            .any(|g| self.inner.approver_groups.contains(g))
    }

    /// Decide request `id`. The decision is durable in the audit log before the waiting
    /// session is woken; if it cannot be recorded the request stays pending and the error is
    /// returned, so the approver can retry.
    pub async fn decide(
        &self,
        id: &str,
        approver: &Principal,
        approve: bool,
        reason: String,
    ) -> Result<(), ApprovalError> {
        if !self.is_approver(approver) {
            return Err(ApprovalError::NotAnApprover(approver.subject.clone()));
        }
        if approver.subject.starts_with(RESERVED_PREFIX) {
            return Err(ApprovalError::ReservedApprover);
        }
        let reason = reason.trim().to_owned();
        if reason.is_empty() {
            return Err(ApprovalError::EmptyReason);
        }
        if reason.len() > MAX_REASON_LEN {
            return Err(ApprovalError::ReasonTooLong);
        }
        let entry = match self.claim(id, approver) {
            Ok(entry) => entry,
            Err((refusal, Some(session))) => {
                self.note_refusal(session, id, approver, &refusal).await;
                return Err(refusal);
            }
            Err((refusal, None)) => return Err(refusal),
        };
        let session = Some(entry.info.session_id.clone());
        let event = decided(session, id, &approver.subject, approve, &reason);
        let appended = self.inner.audit.append(event).await;
        if let Err(err) = appended {
            self.restore(entry);
            return Err(err.into());
        }
        crate::metrics::approval_decided(if approve { "granted" } else { "denied" });
        let approver = approver.subject.clone();
        let outcome = if approve {
            ApprovalOutcome::Approved { approver, reason }
        } else {
            ApprovalOutcome::Denied { approver, reason }
        };
        if entry.tx.send(Resolution::Decided(outcome)).is_err() {
            // The client left while the decision was being written: recorded, nothing to run.
            tracing::info!(approval = %id, "decision recorded after the requester went away");
        }
        Ok(())
    }

    /// Close requests that the audit index still shows as pending but that an earlier process
    /// made: their waiters are gone. Call at start-up; safe later too, since requests of this
    /// registry are never touched. Returns how many were closed.
    pub async fn close_stale(&self) -> Result<usize, ApprovalError> {
        let audit = self.inner.audit.clone();
        let records = tokio::task::spawn_blocking(move || audit.approvals()).await??;
        let mut closed = 0;
        for record in records {
            if !record.is_pending() || record.requested >= self.inner.started {
                continue;
            }
            let why = "the gateway restarted while the request was pending";
            let event = decided(record.session, &record.id, RESTART_APPROVER, false, why);
            self.inner.audit.append(event).await?;
            closed += 1;
        }
        Ok(closed)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Nothing panics while holding the lock; if something did, the map is still consistent.
        self.inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `apr-` and 64 random bits from the thread-local CSPRNG: ids are shown to requesters, and
    /// must not let one guess another's.
    fn fresh_id(&self) -> String {
        let pending = self.lock();
        loop {
            let id = format!("apr-{:016x}", rand::random::<u64>());
            if !pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// Take entry `id` out of the map for `approver` to decide, after the party checks. On
    /// refusal, also returns the session to note it against when the request exists.
    fn claim(
        &self,
        id: &str,
        approver: &Principal,
    ) -> Result<Entry, (ApprovalError, Option<String>)> {
        let mut pending = self.lock();
        let entry = pending
            .get(id)
            .ok_or_else(|| (ApprovalError::NotFound(id.to_owned()), None))?;
        if Instant::now() >= entry.deadline {
            return Err((ApprovalError::Expired(id.to_owned()), None));
        }
        if let Err(refusal) = check_parties(&entry.info.requester, approver) {
            return Err((refusal, Some(entry.info.session_id.clone())));
        }
        pending
            .remove(id)
            .ok_or_else(|| (ApprovalError::NotFound(id.to_owned()), None))
    }

    /// Put back an entry whose decision could not be recorded. If its deadline passed
    /// meanwhile, its waiter may already be waiting on the channel alone: tell it to time out.
    fn restore(&self, entry: Entry) {
        if entry.tx.is_closed() {
            return;
        }
        if Instant::now() >= entry.deadline {
            let _ = entry.tx.send(Resolution::Expired);
            return;
        }
        let mut pending = self.lock();
        pending.insert(entry.info.id.clone(), entry);
    }

    fn take(&self, id: &str) -> Option<Entry> {
        self.lock().remove(id)
    }

    /// Record that `approver` tried to decide a request they are party to: compliance wants
    /// to see attempts, not only decisions. Best effort: the refusal stands either way.
    async fn note_refusal(
        &self,
        session: String,
        id: &str,
        approver: &Principal,
        refusal: &ApprovalError,
    ) {
        tracing::warn!(approval = %id, approver = %approver.subject, "approval refused: {refusal}");
        let note = EventKind::Note(crate::audit::Note {
            topic: "approval-refused".to_owned(),
            message: format!(
                "{} ({}) on {id}: {refusal}",
                approver.subject,
                chain(&approver.actors)
            ),
        });
        if let Err(err) = self
            .inner
            .audit
            .append(NewEvent::session(session, note))
            .await
        {
            tracing::error!(approval = %id, "cannot record a refused approval: {err}");
        }
    }

    /// The client went away before a decision: close the request in the audit log, in the
    /// background since this runs from `Drop`.
    fn withdraw(&self, id: &str, session: &str) {
        if self.take(id).is_none() {
            return;
        }
        let why = "the client went away before a decision";
        let event = decided(Some(session.to_owned()), id, WITHDRAWN_APPROVER, false, why);
        let audit = self.inner.audit.clone();
        let id = id.to_owned();
        let report = move |result: Result<u64, AuditError>| {
            if let Err(err) = result {
                tracing::error!(approval = %id, "cannot record a withdrawn approval: {err}");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { report(audit.append(event).await) });
            }
            Err(_) => report(audit.append_blocking(event)),
        }
    }
}

/// `alice > agent-7`: a delegation chain for messages.
pub fn chain(actors: &[String]) -> String {
    actors.join(" > ")
}

/// The `approval_decided` event, for people and for the gateway's own `system:` closings.
fn decided(
    session: Option<String>,
    id: &str,
    approver: &str,
    approved: bool,
    reason: &str,
) -> NewEvent {
    NewEvent {
        session,
        // What a person typed, and a token's subject, never reach the trail with a clear
        // card number in them.
        kind: EventKind::ApprovalDecided(ApprovalDecided {
            approval_id: id.to_owned(),
            approver: crate::session::scrub(approver),
            approved,
            reason: Some(crate::session::scrub(reason)),
        }),
    }
}

/// Nobody may decide a request that they, or anyone acting with them, made.
fn check_parties(requester: &Requester, approver: &Principal) -> Result<(), ApprovalError> {
    let in_requester =
        |name: &str| name == requester.subject || requester.actors.iter().any(|a| a == name);
    if approver.subject == requester.subject {
        return Err(ApprovalError::SelfApproval(approver.subject.clone()));
    }
    if in_requester(&approver.subject) {
        return Err(ApprovalError::ApproverInRequesterChain {
            approver: approver.subject.clone(),
            chain: chain(&requester.actors),
        });
    }
    if approver.in_chain(&requester.subject) {
        return Err(ApprovalError::RequesterInApproverChain {
            requester: requester.subject.clone(),
            chain: chain(&approver.actors),
        });
    }
    if let Some(party) = approver.actors.iter().find(|a| in_requester(a)) {
        return Err(ApprovalError::SharedAgent {
            party: party.clone(),
        });
    }
    if approver.actors.iter().any(|a| *a != approver.subject) {
        return Err(ApprovalError::DelegatedApprover(chain(&approver.actors)));
    }
    Ok(())
}

/// A held command's handle. Await [`Self::wait`]; dropping it (or the `wait` future) before
/// a decision withdraws the request.
#[derive(Debug)]
pub struct PendingApproval {
    /// The id approvers decide by: tell it to the client.
    pub id: String,
    pub expires_at: Timestamp,
    waiter: Waiter,
}

#[derive(Debug)]
struct Waiter {
    approvals: Approvals,
    id: String,
    session_id: String,
    deadline: Instant,
    rx: oneshot::Receiver<Resolution>,
}

impl PendingApproval {
    /// Wait for a decision, or for `approval_timeout`; a timeout is recorded before this
    /// returns [`ApprovalOutcome::TimedOut`].
    pub async fn wait(self) -> ApprovalOutcome {
        let PendingApproval { mut waiter, .. } = self;
        waiter.wait().await
    }
}

impl Waiter {
    async fn wait(&mut self) -> ApprovalOutcome {
        let resolution = tokio::select! {
            r = &mut self.rx => r.ok(),
            () = tokio::time::sleep_until(self.deadline) => {
                if self.approvals.take(&self.id).is_some() {
                    None
                } else {
                    // A decider holds the entry: its decision, or its failure, is on the way.
                    (&mut self.rx).await.ok()
                }
            }
        };
        match resolution {
            Some(Resolution::Decided(outcome)) => outcome,
            // `None`: timed out here, or (never expected) the sender vanished: fail closed.
            Some(Resolution::Expired) | None => {
                crate::metrics::approval_decided("expired");
                self.record_timeout().await;
                ApprovalOutcome::TimedOut
            }
        }
    }

    async fn record_timeout(&self) {
        let timeout = humantime::format_duration(self.approvals.inner.timeout);
        let why = format!("no decision within {timeout}");
        let session = Some(self.session_id.clone());
        let event = decided(session, &self.id, TIMEOUT_APPROVER, false, &why);
        // The command is refused either way; a lost record only leaves the index pending.
        if let Err(err) = self.approvals.inner.audit.append(event).await {
            tracing::error!(approval = %self.id, "cannot record an approval timeout: {err}");
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        // A no-op when the request was resolved: it is no longer in the map.
        self.approvals.withdraw(&self.id, &self.session_id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn parties_must_be_disjoint() {
        let names = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let req = Requester {
            subject: "alice".into(),
            actors: names(&["alice", "agent-7"]),
        };
        let check = |a: &[&str]| {
            let approver = Principal {
                subject: a[0].to_owned(),
                issuer: "iss".into(),
                groups: vec![],
                actors: names(a),
                expires_at: 0,
                targets: None,
            };
            check_parties(&req, &approver).map_err(|e| format!("{e:?}"))
        };
        assert_eq!(check(&["carol"]), Ok(()));
        let refused = |a: &[&str], variant: &str| {
            assert!(check(a).unwrap_err().starts_with(variant), "{a:?}");
        };
        refused(&["alice"], "SelfApproval");
        refused(&["agent-7"], "ApproverInRequesterChain");
        refused(&["carol", "alice"], "RequesterInApproverChain");
        refused(&["carol", "agent-7"], "SharedAgent");
        refused(&["carol", "agent-9"], "DelegatedApprover");
    }
}
