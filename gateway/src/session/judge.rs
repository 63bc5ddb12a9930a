//! The one judge: every adapter hands a command here and gets back what to do with it. The
//! chain is asked and the decision audited ([`Session::decide`]); then the verdict is carried
//! out in one place — a refusal told to the client, a hold for an approver (watching the
//! client's cancel, its departure and shutdown), a mask the client cannot honour refused — so
//! the wording, the order and the audit are the same on every protocol. Adapters say things
//! in their protocol's words through a small [`Client`] trait.

use super::{Ruling, Session};
use crate::approvals::ApprovalOutcome;
use crate::policy::{Command, Verdict};
use std::future::Future;

/// Why a command was refused, so the adapter can pick its protocol's code (PostgreSQL:
/// 42501 or 57014; SSH: a reason and exit status 126; SFTP: PERMISSION_DENIED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A policy, an approver, a timeout or the gateway itself said no.
    Denied,
    /// The client withdrew it while it waited (a cancel request, Ctrl-C).
    Cancelled,
}

/// What the client did while its command waited for an approver.
pub enum Interrupt {
    /// Withdrew the command (cancel request, Ctrl-C); the session goes on.
    Cancel,
    /// Left (closed, hung up); the session ends.
    Gone,
    /// Broke the protocol while waiting; the session ends with this reason.
    Fatal(String),
}

/// How the session path speaks to one client while it judges that client's command.
pub trait Client: Send {
    /// The command will not run: tell the client why.
    fn refused(&mut self, why: Refused, message: &str) -> impl Future<Output = ()> + Send;
    /// A line for the client while its command is held (`hint`: what an approver runs).
    fn notice(&mut self, message: &str, hint: Option<&str>) -> impl Future<Output = ()> + Send;
    /// Resolves when the client stops waiting; input it sends meanwhile is the adapter's to
    /// keep and pass on once the command runs.
    fn interrupted(&mut self) -> impl Future<Output = Interrupt> + Send;
    /// Whether the client can wait for an approver (SFTP and port forwards cannot).
    fn can_wait(&self) -> bool {
        true
    }
    /// Whether a `mask` verdict can be honoured (file transfers and forwarded streams are
    /// bytes, not rows or lines).
    fn can_mask(&self) -> bool {
        true
    }
}

/// What the adapter does with the command.
pub enum Judged {
    /// Forward it; the ruling carries what masking needs.
    Forward(Ruling),
    /// Do not forward it; the client has been told.
    Refused,
    /// The session ends (the client left or broke the protocol, or the gateway is shutting
    /// down); the adapter says so in its words and closes.
    End(Ending),
}

/// Why judging ended the session.
#[derive(Debug)]
pub enum Ending {
    ClientGone,
    Shutdown,
    Fatal(String),
}

impl Session {
    /// Judge one client message (one or more commands): decide, audit, and carry out the
    /// verdict. Nothing of the message may be forwarded unless this returns `Forward`.
    pub async fn judge<C: Client>(
        &self,
        text: &str,
        commands: &[Command],
        client: &mut C,
    ) -> Judged {
        match self.decide(text, commands).await {
            Ok(ruling) => self.carry_out(text, ruling, client).await,
            Err(e) => self.undecided(e, client).await,
        }
    }

    /// [`Session::decide`] failed (the audit store is down): nothing is forwarded.
    pub async fn undecided<C: Client>(&self, e: super::SessionError, client: &mut C) -> Judged {
        client
            .refused(Refused::Denied, &format!("warden: refused: {e}"))
            .await;
        Judged::Refused
    }

    /// Carry out a ruling [`Session::decide`] made. Adapters that must settle earlier results
    /// before a hold (PostgreSQL) decide first, settle, then call this.
    pub async fn carry_out<C: Client>(&self, text: &str, ruling: Ruling, client: &mut C) -> Judged {
        let reason = ruling.decision.display_reason();
        let refusal = match &ruling.decision.verdict {
            Verdict::Allow | Verdict::AllowWithin(_) => return Judged::Forward(ruling),
            Verdict::Mask | Verdict::MaskWithin(_) if client.can_mask() => {
                return Judged::Forward(ruling);
            }
            Verdict::Mask | Verdict::MaskWithin(_) => {
                format!("warden: {reason} asked to mask this, which cannot be masked here")
            }
            Verdict::Deny(_) => format!("warden: denied by {reason}"),
            Verdict::RequireApproval(_) if !client.can_wait() => {
                format!("warden: needs approval, which this client cannot wait for ({reason})")
            }
            Verdict::RequireApproval(_) => return self.hold(text, ruling, client).await,
        };
        self.refused(client, Refused::Denied, &refusal).await
    }

    /// An approved command runs under the policies in force when it runs: when they changed
    /// during the wait (a reload, a hot-loaded module), it is judged again, audited. A deny
    /// then stands over the approval; a hold does not ask again (this text was approved); an
    /// allow or mask runs under the new ruling.
    async fn approved<C: Client>(&self, text: &str, ruling: Ruling, client: &mut C) -> Judged {
        if self.is_current(&ruling) || ruling.commands.is_empty() {
            return Judged::Forward(ruling);
        }
        let commands = ruling.commands.clone();
        let again = match self.decide(text, &commands).await {
            Ok(again) => again,
            Err(e) => return self.undecided(e, client).await,
        };
        let reason = again.decision.display_reason();
        let refusal = match &again.decision.verdict {
            Verdict::Deny(_) => format!("warden: denied by {reason} (the policies changed)"),
            Verdict::Mask | Verdict::MaskWithin(_) if !client.can_mask() => {
                format!("warden: {reason} asked to mask this, which cannot be masked here")
            }
            _ => return Judged::Forward(again),
        };
        self.refused(client, Refused::Denied, &refusal).await
    }

    /// The client records what it was shown, in its recording's form.
    async fn refused<C: Client>(&self, client: &mut C, why: Refused, message: &str) -> Judged {
        client.refused(why, message).await;
        Judged::Refused
    }

    /// Wait for an approver. The request is audited before the client hears of it; leaving
    /// or shutdown withdraws it (the wait is dropped).
    async fn hold<C: Client>(&self, text: &str, ruling: Ruling, client: &mut C) -> Judged {
        let pending = match self.request_approval(text, &ruling).await {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("warden: cannot hold for approval: {e}");
                return self.refused(client, Refused::Denied, &msg).await;
            }
        };
        let id = pending.id.clone();
        let notice = format!(
            "warden: held for approval {id}: {}; waiting for an approver",
            ruling.decision.display_reason()
        );
        let hint =
            format!("an approver runs: warden approvals approve {id} --reason \"...\" (or deny)");
        client.notice(&notice, Some(&hint)).await;
        let gw = self.gw.clone();
        let wait = pending.wait();
        tokio::pin!(wait);
        let outcome = tokio::select! {
            outcome = &mut wait => outcome,
            _ = gw.lifecycle().stopping() => return Judged::End(Ending::Shutdown),
            interrupt = client.interrupted() => {
                return match interrupt {
                    Interrupt::Cancel => {
                        let msg = format!("warden: approval {id} withdrawn: canceling statement due to user request");
                        self.refused(client, Refused::Cancelled, &msg).await
                    }
                    Interrupt::Gone => Judged::End(Ending::ClientGone),
                    Interrupt::Fatal(e) => Judged::End(Ending::Fatal(e)),
                };
            }
        };
        self.note_approval(&outcome);
        match outcome {
            ApprovalOutcome::Approved { approver, .. } => {
                client
                    .notice(
                        &format!("warden: approval {id} granted by {approver}"),
                        None,
                    )
                    .await;
                self.approved(text, ruling, client).await
            }
            ApprovalOutcome::Denied { approver, reason } => {
                // What the approver typed reaches the agent as the trail keeps it: no clear PAN.
                let msg = super::scrub(&format!(
                    "warden: approval {id} denied by {approver}: {reason}"
                ));
                self.refused(client, Refused::Denied, &msg).await
            }
            ApprovalOutcome::TimedOut => {
                let msg = format!("warden: approval {id} timed out");
                self.refused(client, Refused::Denied, &msg).await
            }
        }
    }
}

/// A client that cannot wait, and gets its answer at once: an SFTP operation, a port forward.
/// The refusal is kept for the adapter to put in its own reply. `masks`: a `mask` verdict can
/// be honoured (the open of a file, whose reads the adapter masks); otherwise it refuses.
#[derive(Default)]
pub struct OneShot {
    pub refusal: Option<String>,
    pub masks: bool,
}

impl Client for OneShot {
    async fn refused(&mut self, _why: Refused, message: &str) {
        self.refusal = Some(message.to_string());
    }

    async fn notice(&mut self, _message: &str, _hint: Option<&str>) {}

    async fn interrupted(&mut self) -> Interrupt {
        // Never asked: a client that cannot wait is never held.
        std::future::pending().await
    }

    fn can_wait(&self) -> bool {
        false
    }

    fn can_mask(&self) -> bool {
        self.masks
    }
}
