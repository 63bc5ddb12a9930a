//! `warden audit report`: the evidence a PCI DSS assessor asks for over a period, built from the
//! chain alone: who connected, through which delegation chains (10.2.1, 10.2.2); what was
//! refused or held and who decided (10.2.1.2, 10.2.2); what was masked, by which policy and
//! column (3.4); which logins were refused (10.2.1.4); and whether the trail verifies, with the
//! checkpoints that proof relied on (10.3). JSON for tools, Markdown for people.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::checkpoint::CheckpointReport;
use super::event::{AuditVerdict, EventKind, SignedHead, Timestamp};
use super::query::ExportFilter;
use super::{AuditError, AuditStore};

/// Longest command text shown in a report row; the export has the whole.
const SHOWN: usize = 160;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub generated: Timestamp,
    pub verification: Verification,
    /// Sessions started in the period, per principal and delegation chain.
    pub principals: Vec<PrincipalSessions>,
    /// Commands denied or held for approval, in order.
    pub refused: Vec<RefusedCommand>,
    /// Approval requests made in the period and what became of them.
    pub approvals: Vec<ApprovalLine>,
    /// Masked cells per policy, column and rule.
    pub masked: Vec<MaskedLine>,
    pub logins_refused: Vec<LoginRefused>,
    /// Events in the period, by type.
    pub events: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub ok: bool,
    pub events: u64,
    pub head_seq: u64,
    pub head_hash: String,
    pub pruned_through: u64,
    pub problem: Option<String>,
    /// Checkpoint events in the chain (signed heads), newest last.
    pub checkpoints_in_chain: Vec<SignedHead>,
    /// When a checkpoint file and public key were given: what checking them found.
    pub checkpoints_checked: Option<CheckpointSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointSummary {
    pub matched: u64,
    pub last: Option<SignedHead>,
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrincipalSessions {
    pub subject: String,
    pub chain: Vec<String>,
    pub sessions: u64,
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefusedCommand {
    pub seq: u64,
    pub time: Timestamp,
    pub session: Option<String>,
    pub chain: Vec<String>,
    pub target: String,
    pub verdict: AuditVerdict,
    pub command: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApprovalLine {
    pub id: String,
    pub requested: Timestamp,
    pub requester: Vec<String>,
    pub command: String,
    pub reason: String,
    pub approver: Option<String>,
    pub approved: Option<bool>,
    pub decision_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MaskedLine {
    pub policy: String,
    pub column: String,
    pub rule: String,
    pub cells: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoginRefused {
    pub seq: u64,
    pub time: Timestamp,
    pub message: String,
}

fn short(text: &str) -> String {
    if text.chars().count() <= SHOWN {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(SHOWN - 1).collect();
    s.push('…');
    s
}

/// Build the report for `filter`'s period (only its times are used).
pub fn build(
    store: &AuditStore,
    filter: &ExportFilter,
    checkpoints: Option<&CheckpointReport>,
) -> Result<Report, AuditError> {
    let verified = store.verify()?;
    let period = ExportFilter {
        from: filter.from,
        to: filter.to,
        ..ExportFilter::default()
    };
    let mut principals: BTreeMap<(String, Vec<String>), (u64, Vec<String>)> = BTreeMap::new();
    let mut refused = Vec::new();
    let mut approvals: BTreeMap<String, ApprovalLine> = BTreeMap::new();
    let mut masked: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    let mut logins_refused = Vec::new();
    let mut events: BTreeMap<String, u64> = BTreeMap::new();
    // Which policies masked each command's result: `masked` events point at their command.
    let mut maskers: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut checkpoints_in_chain = Vec::new();

    store.for_each_event(&period, &mut |event, context| {
        *events.entry(event.kind.name().to_owned()).or_default() += 1;
        let chain = context
            .map(|c| c.principal.actors.clone())
            .unwrap_or_default();
        let target = context.map(|c| c.target.clone()).unwrap_or_default();
        match &event.kind {
            EventKind::SessionStart(start) => {
                let key = (
                    start.principal.subject.clone(),
                    start.principal.actors.clone(),
                );
                let entry = principals.entry(key).or_default();
                entry.0 += 1;
                if !entry.1.contains(&start.target) {
                    entry.1.push(start.target.clone());
                }
            }
            EventKind::Command(c) => {
                let masking: Vec<String> = c
                    .policies
                    .iter()
                    .filter(|p| p.verdict == AuditVerdict::Mask)
                    .map(|p| p.policy.clone())
                    .collect();
                if !masking.is_empty() {
                    maskers.insert(event.seq, masking);
                }
                if matches!(
                    c.verdict,
                    AuditVerdict::Deny | AuditVerdict::RequireApproval
                ) {
                    refused.push(RefusedCommand {
                        seq: event.seq,
                        time: event.time,
                        session: event.session.clone(),
                        chain,
                        target,
                        verdict: c.verdict,
                        command: short(&c.command),
                        reason: c.reason.clone(),
                    });
                }
            }
            EventKind::ApprovalRequested(r) => {
                approvals.insert(
                    r.approval_id.clone(),
                    ApprovalLine {
                        id: r.approval_id.clone(),
                        requested: event.time,
                        requester: r.requester.actors.clone(),
                        command: short(&r.command),
                        reason: r.reason.clone(),
                        approver: None,
                        approved: None,
                        decision_reason: None,
                    },
                );
            }
            EventKind::ApprovalDecided(d) => {
                if let Some(line) = approvals.get_mut(&d.approval_id) {
                    line.approver = Some(d.approver.clone());
                    line.approved = Some(d.approved);
                    line.decision_reason = d.reason.clone();
                }
            }
            EventKind::Masked(m) => {
                let policy = maskers
                    .get(&m.command_seq)
                    .map_or_else(|| "(unknown)".to_owned(), |p| p.join("+"));
                for cells in &m.cells {
                    *masked
                        .entry((policy.clone(), cells.column.clone(), cells.rule.clone()))
                        .or_default() += cells.count;
                }
            }
            EventKind::Note(n) if n.topic == "login-refused" => {
                logins_refused.push(LoginRefused {
                    seq: event.seq,
                    time: event.time,
                    message: n.message.clone(),
                });
            }
            EventKind::Checkpoint(c) => checkpoints_in_chain.push(c.head.clone()),
            _ => {}
        }
        Ok(())
    })?;

    Ok(Report {
        from: filter.from,
        to: filter.to,
        generated: Timestamp::now(),
        verification: Verification {
            ok: verified.is_ok(),
            events: verified.events,
            head_seq: verified.head_seq,
            head_hash: verified.head_hex(),
            pruned_through: verified.pruned_through,
            problem: verified
                .problem
                .map(|p| format!("event {}: {}", p.seq, p.message)),
            checkpoints_in_chain,
            checkpoints_checked: checkpoints.map(|c| CheckpointSummary {
                matched: c.matched,
                last: c.last.clone(),
                problem: c.problem.clone(),
            }),
        },
        principals: principals
            .into_iter()
            .map(
                |((subject, chain), (sessions, targets))| PrincipalSessions {
                    subject,
                    chain,
                    sessions,
                    targets,
                },
            )
            .collect(),
        refused,
        approvals: approvals.into_values().collect(),
        masked: masked
            .into_iter()
            .map(|((policy, column, rule), cells)| MaskedLine {
                policy,
                column,
                rule,
                cells,
            })
            .collect(),
        logins_refused,
        events,
    })
}

/// A Markdown table cell: one line, pipes escaped, controls shown escaped, and nothing a
/// renderer would turn into HTML, a link or an image (agents wrote it).
fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            // `>` cannot open a tag, and a cell never starts a line (no blockquote).
            '<' => out.push_str("&lt;"),
            '&' => out.push_str("&amp;"),
            '[' | ']' | '!' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            _ => push_code_char(&mut out, c),
        }
    }
    out
}

/// Text for a code span inside a table cell: literal there, so only what ends the span, the
/// cell or the line needs care.
fn md_code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_code_char(&mut out, c);
    }
    out
}

fn push_code_char(out: &mut String, c: char) {
    match c {
        '|' => out.push_str("\\|"),
        '\n' => out.push_str("\\n"),
        '`' => out.push('\''),
        c if c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
        {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

fn when(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "(open)".to_owned(), |t| t.to_string())
}

impl Report {
    /// The report for people.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let v = &self.verification;
        let _ = writeln!(s, "# Warden audit evidence report\n");
        let _ = writeln!(
            s,
            "Period: {} to {}. Generated {}.\n",
            when(self.from),
            when(self.to),
            self.generated
        );
        let _ = writeln!(s, "## Integrity of the trail (PCI DSS 10.3)\n");
        match &v.problem {
            None => {
                let _ = writeln!(
                    s,
                    "The hash chain verifies: {} events, head event {} `{}`; every session and \
                     approval record and every recording chunk matches its events.",
                    v.events, v.head_seq, v.head_hash
                );
            }
            Some(problem) => {
                let _ = writeln!(s, "**The chain does not verify**: {}.", md(problem));
            }
        }
        if v.pruned_through > 0 {
            let _ = writeln!(
                s,
                "\nEvents 1..={} were removed by retention (PCI DSS 10.5.1); the chain verifies \
                 from that cut (signed when a checkpoint key was configured: check it with \
                 `--checkpoints`).",
                v.pruned_through
            );
        }
        match &v.checkpoints_checked {
            Some(c) => match (&c.problem, &c.last) {
                (Some(p), _) => {
                    let _ = writeln!(s, "\n**Checkpoint verification failed**: {}.", md(p));
                }
                (None, Some(last)) => {
                    let _ = writeln!(
                        s,
                        "\n{} signed checkpoints from the external file match the chain; the \
                         last signs event {} at {} (key `{}`).",
                        c.matched, last.seq, last.time, last.key
                    );
                }
                (None, None) => {
                    let _ = writeln!(s, "\nThe checkpoint file held no checkpoint of this chain.");
                }
            },
            None => {
                let _ = writeln!(
                    s,
                    "\nCheckpoints were not checked against an external file (pass \
                     `--checkpoints FILE --pubkey KEY`)."
                );
            }
        }
        if !v.checkpoints_in_chain.is_empty() {
            let _ = writeln!(
                s,
                "\n| checkpoint of event | hash | signed at |\n|---|---|---|"
            );
            for c in &v.checkpoints_in_chain {
                let _ = writeln!(s, "| {} | `{}` | {} |", c.seq, c.hash, c.time);
            }
        }

        let _ = writeln!(
            s,
            "\n## Sessions per principal and delegation chain (10.2.1, 10.2.2)\n"
        );
        let _ = writeln!(
            s,
            "| principal | delegation chain | sessions | targets |\n|---|---|---|---|"
        );
        for p in &self.principals {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                md(&p.subject),
                md(&p.chain.join(" > ")),
                p.sessions,
                md(&p.targets.join(", "))
            );
        }

        let _ = writeln!(s, "\n## Commands denied or held for approval\n");
        let _ = writeln!(
            s,
            "| seq | time | chain | target | verdict | command | reason |\n|---|---|---|---|---|---|---|"
        );
        for r in &self.refused {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | `{}` | {} |",
                r.seq,
                r.time,
                md(&r.chain.join(" > ")),
                md(&r.target),
                r.verdict.as_str(),
                md_code(&r.command),
                md(r.reason.as_deref().unwrap_or(""))
            );
        }

        let _ = writeln!(s, "\n## Approvals\n");
        let _ = writeln!(
            s,
            "| id | requested | requester | command | decision | approver | reason |\n|---|---|---|---|---|---|---|"
        );
        for a in &self.approvals {
            let decision = match a.approved {
                Some(true) => "approved",
                Some(false) => "denied",
                None => "pending",
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | `{}` | {} | {} | {} |",
                md(&a.id),
                a.requested,
                md(&a.requester.join(" > ")),
                md_code(&a.command),
                decision,
                md(a.approver.as_deref().unwrap_or("")),
                md(a.decision_reason.as_deref().unwrap_or(""))
            );
        }

        let _ = writeln!(s, "\n## Masked cells per policy and column (PCI DSS 3.4)\n");
        let _ = writeln!(s, "| policy | column | rule | cells |\n|---|---|---|---|");
        for m in &self.masked {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                md(&m.policy),
                md(&m.column),
                md(&m.rule),
                m.cells
            );
        }

        let _ = writeln!(s, "\n## Logins refused (10.2.1.4)\n");
        let _ = writeln!(s, "| seq | time | what |\n|---|---|---|");
        for l in &self.logins_refused {
            let _ = writeln!(s, "| {} | {} | {} |", l.seq, l.time, md(&l.message));
        }

        let _ = writeln!(s, "\n## Events in the period\n");
        let _ = writeln!(s, "| type | events |\n|---|---|");
        for (kind, n) in &self.events {
            let _ = writeln!(s, "| {kind} | {n} |");
        }
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn cells_cannot_break_the_table_or_become_html_or_links() {
        let hostile =
            "a|b\n| forged | row |<img src=x onerror=alert(1)>[click](javascript:x)`\u{1b}[2J";
        let cell = md(hostile);
        assert!(!cell.contains('\n') && !cell.contains('<') && !cell.contains('\u{1b}'));
        assert!(!cell.contains("](") || cell.contains("\\]("), "{cell}");
        assert_eq!(
            cell.matches('|').count(),
            cell.matches("\\|").count(),
            "{cell}"
        );
        let code = md_code(hostile);
        assert!(!code.contains('`') && !code.contains('\n'), "{code}");
        assert_eq!(
            code.matches('|').count(),
            code.matches("\\|").count(),
            "{code}"
        );
    }
}
