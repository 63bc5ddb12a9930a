//! What-if replay: every recorded command of a target is judged again by the target's chain as
//! it stands and by the chain with a candidate policy added or swapped in, and the differences
//! are grouped for a security engineer: which verdicts change, why, for whom, with examples.
//! Recorded result rows (the masked rows recordings keep) go through the candidate's
//! `mask-rows` to show which columns it would newly mask.
//!
//! Commands are rebuilt from the audit trail's texts with the gateway's own parsers (SQL as
//! PostgreSQL reads it, shell lines, SFTP operations, forwards), so what a policy sees here is
//! what it would see live, with two exceptions, counted and reported rather than guessed at:
//! commands the gateway refused on its own (no policy was asked) and texts the store capped.
//! View definitions are not followed offline (the live path asks the server for them).
//!
//! Both chains are judged now, with the same modules, so a change in the report is the
//! candidate's alone; where the recorded verdict differs from the current chain's, the trail
//! has drifted (a policy changed since, an approval, a budget) and that is counted as well.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::audit::{AuditPrincipal, AuditVerdict, CommandEvent, Event, SessionRecord};
use crate::policy::{
    self, Column, Command, Decision, FileOp, Forward, PolicyEngine, PolicyRef, Protocol, Verdict,
};
use crate::recording::{Entry, parse_transcript};

/// Examples kept per group of changes.
const EXAMPLES: usize = 3;
/// Longest example text shown (the audit keeps the whole, masked, text).
const EXAMPLE_TEXT: usize = 200;

/// The chain as it stands and as it would be with the candidate.
#[derive(Debug, Clone)]
pub struct Chains {
    pub before: Vec<PolicyRef>,
    pub after: Vec<PolicyRef>,
}

impl Chains {
    /// The candidate, loaded as `loaded_as`, appended to `chain` (enforced), or in place of
    /// every entry of module `replace` (keeping that entry's config unless `config` is given).
    pub fn new(
        chain: &[PolicyRef],
        loaded_as: &str,
        config: Option<&str>,
        replace: Option<&str>,
    ) -> Result<Chains, String> {
        let mut after = chain.to_vec();
        match replace {
            Some(name) => {
                let mut found = false;
                for r in after.iter_mut().filter(|r| r.module == name) {
                    found = true;
                    r.module = loaded_as.to_string();
                    // What-if asks what the candidate would do enforced.
                    r.shadow = false;
                    if let Some(c) = config {
                        r.config = c.into();
                    }
                }
                if !found {
                    return Err(format!(
                        "--replace {name}: the target's chain has no such policy"
                    ));
                }
            }
            None => after.push(PolicyRef {
                module: loaded_as.to_string(),
                config: config.unwrap_or_default().into(),
                shadow: false,
            }),
        }
        Ok(Chains {
            before: chain.to_vec(),
            after,
        })
    }
}

/// What the replay found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub target: String,
    /// Command events judged again.
    pub commands: u64,
    pub sessions: u64,
    /// Earliest and latest replayed command (RFC 3339).
    pub first: Option<String>,
    pub last: Option<String>,
    /// Commands whose verdict the candidate changes, grouped.
    pub changes: Vec<Change>,
    /// Commands the current chain lets through (allow, mask) that the candidate would refuse
    /// or hold: the exit status is 1 when this is not zero.
    pub newly_refused: u64,
    /// Columns whose recorded (already masked) cells the candidate would change.
    pub newly_masked: Vec<MaskedColumn>,
    /// Recorded rows run through `mask-rows`.
    pub rows_checked: u64,
    /// Commands whose recorded verdict differs from the current chain's verdict now.
    pub drift: u64,
    pub skipped: Skipped,
}

impl Report {
    /// Commands a policy would have judged that could not be judged again: the answer does not
    /// cover them (the exit status says so).
    pub fn unreplayed(&self) -> u64 {
        let s = &self.skipped;
        s.capped + s.unreadable + s.no_session
    }
}

/// Commands not replayed, by why.
#[derive(Debug, Default, Serialize)]
pub struct Skipped {
    /// Refused by the gateway itself (no policy was asked): unchanged by any policy.
    pub gateway_refusals: u64,
    /// Stored capped (head and tail of a long text): cannot be parsed again.
    pub capped: u64,
    /// The gateway's parser refuses the text now (it was refused then too, or the parser changed).
    pub unreadable: u64,
    /// Of a session whose record is gone (retention) or of another protocol.
    pub no_session: u64,
}

/// One group: same verdict change, same deciding policy.
#[derive(Debug, Serialize)]
pub struct Change {
    pub from: AuditVerdict,
    pub to: AuditVerdict,
    /// The policy whose verdict now decides (the one that decided before, for a looser one).
    pub policy: String,
    pub count: u64,
    /// The reasons it gave (a reason often names the object: one per table), most first.
    pub reasons: Vec<Reason>,
    /// Who sent them: subject and delegation chain, with counts, most first.
    pub principals: Vec<Affected>,
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reason {
    /// `None` for a verdict without one (allow, mask).
    pub reason: Option<String>,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Affected {
    pub subject: String,
    /// The delegation chain, outermost first, as `a > b > c`.
    pub chain: String,
    pub commands: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Example {
    pub seq: u64,
    pub session: String,
    pub time: String,
    /// As the audit stored it: card numbers masked; long texts cut here.
    pub command: String,
}

#[derive(Debug, Serialize)]
pub struct MaskedColumn {
    pub column: String,
    /// The rules the candidate named for its edits of this column.
    pub rules: Vec<String>,
    /// Cells whose recorded value the candidate would change.
    pub cells: u64,
    pub commands: u64,
}

#[derive(Default)]
struct Group {
    count: u64,
    reasons: BTreeMap<Option<String>, u64>,
    principals: BTreeMap<(String, String), u64>,
    examples: Vec<Example>,
}

#[derive(Default)]
struct ColumnTally {
    rules: BTreeSet<String>,
    cells: u64,
    commands: BTreeSet<u64>,
}

/// One session being replayed.
struct Replaying {
    info: policy::Session,
    principal: AuditPrincipal,
    /// An `(interactive shell)` was opened: later shell lines are typed at a prompt.
    interactive: bool,
    /// Each replayed command's text (as a hash: a session can hold many), `seq` and, when the
    /// candidate masks it, the candidate's part of its decision.
    commands: Vec<(u64, u64, Option<Box<Decision>>)>,
}

/// The replay: feed it events in `seq` order, then recordings, then take the report.
pub struct WhatIf<'e> {
    engine: &'e PolicyEngine,
    protocol: Protocol,
    chains: Chains,
    report: Report,
    sessions: HashMap<String, Option<Replaying>>,
    groups: BTreeMap<(AuditVerdict, AuditVerdict, String), Group>,
    columns: BTreeMap<String, ColumnTally>,
}

impl<'e> WhatIf<'e> {
    pub fn new(engine: &'e PolicyEngine, target: &str, protocol: Protocol, chains: Chains) -> Self {
        WhatIf {
            engine,
            protocol,
            chains,
            report: Report {
                target: target.to_string(),
                ..Report::default()
            },
            sessions: HashMap::new(),
            groups: BTreeMap::new(),
            columns: BTreeMap::new(),
        }
    }

    /// Judge one command event again. `record` looks up its session (called once per session).
    pub async fn command(
        &mut self,
        event: &Event,
        command: &CommandEvent,
        record: impl FnOnce(&str) -> Option<SessionRecord>,
    ) {
        let Some(id) = &event.session else {
            return;
        };
        if command.policies.is_empty() {
            self.report.skipped.gateway_refusals += 1;
            return;
        }
        if crate::audit::is_capped(&command.command) {
            self.report.skipped.capped += 1;
            return;
        }
        let protocol = self.protocol;
        let target = self.report.target.clone();
        let session = self.sessions.entry(id.clone()).or_insert_with(|| {
            let r = record(id).filter(|r| r.protocol == protocol && r.target == target)?;
            Some(Replaying {
                info: policy::Session {
                    id: r.id.clone(),
                    protocol: r.protocol,
                    target: r.target.clone(),
                    principal: policy::Principal {
                        subject: r.principal.subject.clone(),
                        issuer: r.principal.issuer.clone(),
                        groups: r.principal.groups.clone(),
                        actors: r.principal.actors.clone(),
                    },
                    client_addr: r.client_addr.clone(),
                },
                principal: r.principal,
                interactive: false,
                commands: Vec::new(),
            })
        });
        let Some(session) = session else {
            self.report.skipped.no_session += 1;
            return;
        };
        let Some(commands) = rebuild(protocol, command, &mut session.interactive) else {
            self.report.skipped.unreadable += 1;
            return;
        };
        let engine = self.engine;
        let before = Decision::combine_all(
            &engine
                .check_all(&self.chains.before, &session.info, &commands)
                .await,
        );
        let per_command = engine
            .check_all(&self.chains.after, &session.info, &commands)
            .await;
        let after = Decision::combine_all(&per_command);
        // Only the candidate's masking runs on recorded rows: the chain's own already did.
        let masks = per_command.iter().find_map(|d| {
            let mut d = d.clone();
            d.policies
                .retain(|p| p.verdict == Verdict::Mask && is_candidate(&p.policy));
            (!d.policies.is_empty()).then(|| Box::new(d))
        });
        session
            .commands
            .push((text_hash(&command.command), event.seq, masks));

        let report = &mut self.report;
        report.commands += 1;
        let time = event.time.to_string();
        report.first.get_or_insert_with(|| time.clone());
        report.last = Some(time.clone());
        let (was, now) = (verdict(&before.verdict), verdict(&after.verdict));
        if was != command.verdict {
            report.drift += 1;
        }
        if was == now {
            return;
        }
        if before.verdict.rank() <= 1 && after.verdict.rank() >= 2 {
            report.newly_refused += 1;
        }
        let decider = if after.verdict.rank() > before.verdict.rank() {
            &after
        } else {
            &before
        };
        let key = (was, now, decider.decided_by.clone().unwrap_or_default());
        let group = self.groups.entry(key).or_default();
        group.count += 1;
        *group
            .reasons
            .entry(decider.verdict.reason().map(str::to_string))
            .or_default() += 1;
        let p = &session.principal;
        *group
            .principals
            .entry((p.subject.clone(), p.actors.join(" > ")))
            .or_default() += 1;
        if group.examples.len() < EXAMPLES {
            group.examples.push(Example {
                seq: event.seq,
                session: id.clone(),
                time,
                command: shorten(&command.command),
            });
        }
    }

    /// Sessions with commands the candidate masks: their recordings are worth reading.
    pub fn sessions_to_mask(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.as_ref()
                    .is_some_and(|s| s.commands.iter().any(|c| c.2.is_some()))
            })
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Run a session's recorded rows through the candidate's `mask-rows`, for the commands it
    /// masks. Recorded commands are matched to replayed ones by their text, in order.
    pub async fn recording(&mut self, id: &str, chunks: &[Vec<u8>]) {
        let Some(Some(session)) = self.sessions.get(id) else {
            return;
        };
        let mut next = 0usize;
        let mut current: Option<(u64, &Decision)> = None;
        let mut columns: Vec<Column> = Vec::new();
        for line in parse_transcript(chunks).into_iter().flatten() {
            match line.entry {
                Entry::Command { text, .. } => {
                    current = None;
                    columns.clear();
                    let hash = text_hash(&text);
                    if let Some(offset) = session.commands[next..]
                        .iter()
                        .position(|(t, _, _)| *t == hash)
                    {
                        let (_, seq, masks) = &session.commands[next + offset];
                        current = masks.as_deref().map(|d| (*seq, d));
                        next += offset + 1;
                    }
                }
                Entry::Columns { names, types } => {
                    columns = names
                        .iter()
                        .enumerate()
                        .map(|(i, name)| Column {
                            name: name.to_string(),
                            type_name: types.get(i).map_or_else(
                                || "text".to_string(),
                                |oid| crate::proxy::postgres::type_name(*oid),
                            ),
                        })
                        .collect();
                }
                Entry::Rows { rows } => {
                    let Some((seq, decision)) = current else {
                        continue;
                    };
                    let recorded: Vec<policy::Row> = rows
                        .into_iter()
                        .map(|r| r.into_iter().map(|c| c.map(|c| c.into_owned())).collect())
                        .collect();
                    let mut masked = recorded.clone();
                    self.report.rows_checked += recorded.len() as u64;
                    let Ok(summary) = self
                        .engine
                        .mask_rows(decision, &session.info, &columns, &mut masked)
                        .await
                    else {
                        continue;
                    };
                    for (r, c) in summary.edited {
                        let (r, c) = (r as usize, c as usize);
                        let changed = recorded.get(r).and_then(|row| row.get(c))
                            != masked.get(r).and_then(|row| row.get(c));
                        if !changed {
                            continue;
                        }
                        let name = columns
                            .get(c)
                            .map_or_else(|| format!("#{c}"), |c| c.name.clone());
                        let tally = self.columns.entry(name.clone()).or_default();
                        tally.cells += 1;
                        tally.commands.insert(seq);
                        for (column, rule) in summary.cells.keys() {
                            if *column == name {
                                tally.rules.insert(rule.clone());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    pub fn finish(mut self) -> Report {
        self.report.sessions = self.sessions.values().filter(|s| s.is_some()).count() as u64;
        let mut changes: Vec<Change> = self
            .groups
            .into_iter()
            .map(|((from, to, policy), g)| {
                let mut reasons: Vec<Reason> = g
                    .reasons
                    .into_iter()
                    .map(|(reason, count)| Reason { reason, count })
                    .collect();
                reasons.sort_by_key(|r| std::cmp::Reverse(r.count));
                let mut principals: Vec<Affected> = g
                    .principals
                    .into_iter()
                    .map(|((subject, chain), commands)| Affected {
                        subject,
                        chain,
                        commands,
                    })
                    .collect();
                principals.sort_by_key(|p| std::cmp::Reverse(p.commands));
                Change {
                    from,
                    to,
                    policy,
                    count: g.count,
                    reasons,
                    principals,
                    examples: g.examples,
                }
            })
            .collect();
        changes.sort_by_key(|c| std::cmp::Reverse(c.count));
        self.report.changes = changes;
        self.report.newly_masked = self
            .columns
            .into_iter()
            .map(|(column, t)| MaskedColumn {
                column,
                rules: t.rules.into_iter().collect(),
                cells: t.cells,
                commands: t.commands.len() as u64,
            })
            .collect();
        self.report
    }
}

/// The name a candidate module is loaded under: never one a chain already uses.
pub fn candidate_name(stem: &str) -> String {
    format!("{stem}{CANDIDATE}")
}

const CANDIDATE: &str = "@candidate";

fn is_candidate(policy: &str) -> bool {
    policy.ends_with(CANDIDATE)
}

/// The commands a recorded event stood for, as the adapter built them; `None` when the text
/// cannot be read again.
fn rebuild(
    protocol: Protocol,
    event: &CommandEvent,
    interactive: &mut bool,
) -> Option<Vec<Command>> {
    let text = event.command.as_str();
    match protocol {
        Protocol::Postgres => {
            let statements = crate::command::sql::parse(text).ok()?;
            // EXECUTE runs a statement prepared earlier, which live judging merges in; the
            // trail holds only the name: not replayed (and so counted as not covered).
            if statements
                .iter()
                .any(|s| s.sql.statement_type == "ExecuteStmt")
            {
                return None;
            }
            (!statements.is_empty()).then(|| {
                statements
                    .into_iter()
                    .map(|s| Command::Sql(s.sql))
                    .collect()
            })
        }
        Protocol::Ssh => {
            let kind = event.kind.as_str();
            if kind == "shell" {
                if text == "(interactive shell)" {
                    *interactive = true;
                    return Some(vec![Command::Shell(crate::command::shell("", true))]);
                }
                return Some(vec![Command::Shell(crate::command::shell(
                    text,
                    *interactive,
                ))]);
            }
            if let Some(op) = kind.strip_prefix("sftp:") {
                let rest = text.strip_prefix(&format!("sftp {op} "))?;
                // Two paths are separated by a space; a first path with spaces cannot be told
                // apart from the second, so the last space is taken.
                let (path, to) = match op {
                    "rename" | "symlink" | "link" => {
                        let (p, t) = rest.rsplit_once(' ')?;
                        (p.to_string(), Some(t.to_string()))
                    }
                    _ => (rest.to_string(), None),
                };
                return Some(vec![Command::File(FileOp {
                    op: op.to_string(),
                    path,
                    to,
                })]);
            }
            if let Some(direction) = kind.strip_prefix("forward:") {
                let rest = text.strip_prefix(&format!("forward {direction} "))?;
                let (host, port) = rest.rsplit_once(':')?;
                return Some(vec![Command::Forward(Forward {
                    direction: direction.to_string(),
                    host: host.to_string(),
                    port: port.parse().ok()?,
                })]);
            }
            None
        }
        _ => None,
    }
}

fn text_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn verdict(v: &Verdict) -> AuditVerdict {
    match v {
        Verdict::Allow | Verdict::AllowWithin(_) => AuditVerdict::Allow,
        Verdict::Mask | Verdict::MaskWithin(_) => AuditVerdict::Mask,
        Verdict::Deny(_) => AuditVerdict::Deny,
        Verdict::RequireApproval(_) => AuditVerdict::RequireApproval,
    }
}

fn shorten(text: &str) -> String {
    if text.len() <= EXAMPLE_TEXT {
        return text.to_string();
    }
    let mut end = EXAMPLE_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} …", &text[..end])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn event(kind: &str, text: &str) -> CommandEvent {
        CommandEvent {
            command: text.into(),
            kind: kind.into(),
            verdict: AuditVerdict::Allow,
            reason: None,
            policies: Vec::new(),
            shadow_verdict: None,
            shadow_reason: None,
        }
    }

    #[test]
    fn recorded_texts_become_the_commands_adapters_built() {
        let mut interactive = false;
        let sql = rebuild(
            Protocol::Postgres,
            &event("select", "select 1; drop table t"),
            &mut interactive,
        )
        .unwrap();
        assert_eq!(sql.len(), 2);
        assert_eq!(sql[1].kind(), "drop");
        let op = FileOp {
            op: "rename".into(),
            path: "a b".into(),
            to: Some("c".into()),
        };
        let text = Command::File(op.clone()).text();
        let back = rebuild(
            Protocol::Ssh,
            &event("sftp:rename", &text),
            &mut interactive,
        )
        .unwrap();
        assert_eq!(back[0].text(), text);
        let fwd = Forward {
            direction: "local".into(),
            host: "db.internal".into(),
            port: 5432,
        };
        let text = Command::Forward(fwd).text();
        let back = rebuild(
            Protocol::Ssh,
            &event("forward:local", &text),
            &mut interactive,
        )
        .unwrap();
        assert_eq!(back[0].text(), text);
        assert!(!interactive);
        rebuild(
            Protocol::Ssh,
            &event("shell", "(interactive shell)"),
            &mut interactive,
        )
        .unwrap();
        assert!(interactive);
        assert!(
            rebuild(
                Protocol::Postgres,
                &event("sql", "selec 1 frm"),
                &mut interactive
            )
            .is_none()
        );
        let execute = event("execute", "EXECUTE p(1)");
        assert!(
            rebuild(Protocol::Postgres, &execute, &mut interactive).is_none(),
            "EXECUTE needs the statement it runs"
        );
    }

    #[test]
    fn the_candidate_is_appended_or_swapped_in() {
        let chain = vec![
            PolicyRef {
                module: "a".into(),
                config: "x".into(),
                shadow: false,
            },
            PolicyRef {
                module: "b".into(),
                config: "y".into(),
                shadow: false,
            },
        ];
        let c = Chains::new(&chain, "new@candidate", None, None).unwrap();
        assert_eq!(c.after.len(), 3);
        let c = Chains::new(&chain, "b@candidate", None, Some("b")).unwrap();
        assert_eq!(c.after[1].module, "b@candidate");
        assert_eq!(&*c.after[1].config, "y");
        assert!(Chains::new(&chain, "z@candidate", None, Some("z")).is_err());
        let mut shadowed = chain.clone();
        shadowed[1].shadow = true;
        let c = Chains::new(&shadowed, "b@candidate", None, Some("b")).unwrap();
        assert!(
            !c.after[1].shadow,
            "a replaced shadow entry is judged as enforced"
        );
    }
}
