//! `warden policy whatif`: what a candidate policy would have done to a target's recorded
//! traffic, read from a database file or a running gateway (replay logic in
//! [`crate::whatif`]). Prints the verdict changes grouped by rule with counts, principals and
//! masked examples, and the columns newly masked; `--json` for tooling. Exit status 1 when a
//! command the current chain lets through would be refused or held, so a policy repository's
//! CI can gate on it; 3 when none would but some recorded commands could not be judged again
//! (stored capped, unreadable, session gone): the answer does not cover them, and padding a
//! statement past the cap must not pass a gate; 2 on errors.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::admin_client::{Live, LiveArgs, encode};
use super::escape;
use super::export::{parse_time, progress_bar};
use super::sessions::{NO_SOURCE, open_db};
use crate::audit::{AuditStore, Event, EventKind, ExportFilter, SessionRecord, Timestamp};
use crate::config::Config;
use crate::policy::PolicyEngine;
use crate::whatif::{Chains, Report, WhatIf, candidate_name};

#[derive(Debug, clap::Args)]
pub struct WhatifArgs {
    /// The gateway's configuration: the target's chain and the policy directory.
    #[arg(long, default_value = "warden.toml")]
    pub config: PathBuf,
    /// The target whose recorded commands are replayed.
    #[arg(long)]
    pub target: String,
    /// The candidate policy component (.wasm).
    #[arg(long)]
    pub module: PathBuf,
    /// The string the candidate's `init` gets (default: the replaced entry's, or empty).
    #[arg(long)]
    pub module_config: Option<String>,
    /// Swap the candidate in for this policy of the chain instead of adding it at the end.
    #[arg(long, value_name = "POLICY")]
    pub replace: Option<String>,
    /// The audit database file (`[audit] path`); or --admin for a running gateway.
    #[arg(long)]
    pub db: Option<PathBuf>,
    #[command(flatten)]
    pub live: LiveArgs,
    /// Commands at or after this time (RFC 3339, a date, or a span back from now: `7d`).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<Timestamp>,
    /// Commands before this time (same forms as --from).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<Timestamp>,
    /// One session's commands.
    #[arg(long)]
    pub session: Option<String>,
    /// Commands of sessions this principal took part in, at any depth of the delegation chain.
    #[arg(long)]
    pub actor: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Where recorded traffic comes from.
enum Source {
    File(AuditStore),
    Live(Live),
}

impl Source {
    fn record(&self, id: &str) -> Option<SessionRecord> {
        match self {
            Source::File(store) => store.session(id).ok().flatten(),
            Source::Live(live) => {
                let bytes = live
                    .get_optional(&format!("/v1/sessions/{}", encode(id)))
                    .ok()??;
                serde_json::from_slice(&bytes).ok()
            }
        }
    }

    fn recording(&self, id: &str) -> anyhow::Result<Vec<Vec<u8>>> {
        Ok(match self {
            Source::File(store) => store.recording(id)?,
            Source::Live(live) => {
                match live.get_optional(&format!("/v1/sessions/{}/recording", encode(id)))? {
                    Some(bytes) => vec![bytes.to_vec()],
                    None => Vec::new(),
                }
            }
        })
    }
}

pub fn run(args: WhatifArgs) -> anyhow::Result<ExitCode> {
    // SQL is parsed on this thread: give it the stack the gateway's workers have.
    std::thread::Builder::new()
        .name("warden-whatif".into())
        .stack_size(crate::command::sql::READER_STACK)
        .spawn(move || replay(args))
        .context("starting the replay thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the replay thread panicked"))?
}

fn replay(args: WhatifArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let Some(target) = config.targets.get(&args.target) else {
        bail!(
            "no target `{}` in {}",
            escape::cell(&args.target),
            args.config.display()
        );
    };
    let source = match args.live.live(args.db.as_deref())? {
        Some(live) => Source::Live(live),
        None => match &args.db {
            Some(db) => Source::File(open_db(db)?),
            None => bail!("{NO_SOURCE}"),
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let chain = target.chain();
    let mut policy = config.policy.clone();
    policy.reload_interval = std::time::Duration::ZERO;
    let engine = rt.block_on(PolicyEngine::start(&policy, &chain))?;
    let stem = args
        .module
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("candidate");
    let loaded_as = candidate_name(args.replace.as_deref().unwrap_or(stem));
    let sha256 = rt
        .block_on(engine.add_module(&loaded_as, &args.module))
        .with_context(|| format!("loading {}", args.module.display()))?;
    let chains = Chains::new(
        &chain,
        &loaded_as,
        args.module_config.as_deref(),
        args.replace.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    let shown = |c: &[crate::policy::PolicyRef]| {
        c.iter()
            .map(|r| match r.shadow {
                true => format!("{} (shadow)", r.module),
                false => r.module.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (before, after) = (shown(&chains.before), shown(&chains.after));
    let mut whatif = WhatIf::new(&engine, &args.target, target.protocol, chains);

    let filter = ExportFilter {
        from: args.from,
        to: args.to,
        session: args.session.clone(),
        actor: args.actor.clone(),
        target: Some(args.target.clone()),
        kinds: vec!["command".into()],
        ..ExportFilter::default()
    };
    let mut records: HashMap<String, Option<SessionRecord>> = HashMap::new();
    let mut judge = |event: &Event, bar: &indicatif::ProgressBar| {
        bar.inc(1);
        let (Some(id), EventKind::Command(command)) = (&event.session, &event.kind) else {
            return;
        };
        let record = records
            .entry(id.clone())
            .or_insert_with(|| source.record(id))
            .clone();
        rt.block_on(whatif.command(event, command, |_| record));
    };
    match &source {
        Source::File(store) => {
            let (head, _) = store.head()?;
            let bar = bar(head);
            store.for_each_event(&filter, &mut |event, _| {
                bar.set_position(event.seq.saturating_sub(1));
                judge(event, &bar);
                Ok(())
            })?;
            bar.finish_and_clear();
        }
        Source::Live(live) => {
            let bytes = live.get(&format!("/v1/audit/events?{}", query(&filter)))?;
            let lines: Vec<&[u8]> = bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            let bar = bar(lines.len() as u64);
            for line in lines {
                let line: ExportLine =
                    serde_json::from_slice(line).context("reading an exported event")?;
                judge(&line.event, &bar);
            }
            bar.finish_and_clear();
        }
    }
    for id in whatif.sessions_to_mask() {
        let chunks = source.recording(&id)?;
        rt.block_on(whatif.recording(&id, &chunks));
    }
    let report = whatif.finish();
    if let Source::File(store) = source {
        store.close().context("closing the audit database")?;
    }
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["candidate"] = serde_json::json!({
            "module": loaded_as,
            "file": args.module.display().to_string(),
            "sha256": sha256,
            "replaces": args.replace,
        });
        println!("{}", escape::json_line(&serde_json::to_string(&value)?));
    } else {
        print!("{}", text(&report, &before, &after, &loaded_as, &sha256));
    }
    Ok(if report.newly_refused > 0 {
        ExitCode::FAILURE
    } else if report.unreplayed() > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// One line of the admin API's export (`audit/export.rs`): the event beside its chain hashes.
#[derive(serde::Deserialize)]
struct ExportLine {
    event: Event,
}

fn bar(total: u64) -> indicatif::ProgressBar {
    if std::io::stderr().is_terminal() {
        progress_bar(total)
    } else {
        indicatif::ProgressBar::hidden()
    }
}

/// The admin API's query for `filter` (the keys `admin/audit.rs` reads).
fn query(filter: &ExportFilter) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (key, value) in [
        ("target", &filter.target),
        ("session", &filter.session),
        ("actor", &filter.actor),
    ] {
        if let Some(value) = value {
            q.append_pair(key, value);
        }
    }
    for (key, time) in [("from", filter.from), ("to", filter.to)] {
        if let Some(t) = time {
            q.append_pair(key, &t.to_string());
        }
    }
    q.append_pair("type", "command");
    q.finish()
}

/// The report for people; every recorded text is escaped for the terminal.
fn text(report: &Report, before: &str, after: &str, candidate: &str, sha256: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let span = match (&report.first, &report.last) {
        (Some(a), Some(b)) => format!(", {a} … {b}"),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "what-if on target {}: {} recorded commands in {} sessions{span}",
        escape::cell(&report.target),
        report.commands,
        report.sessions
    );
    let _ = writeln!(out, "  chain now:       {before}");
    let _ = writeln!(out, "  chain candidate: {after}");
    let _ = writeln!(out, "  {candidate}: sha256 {sha256}");
    let _ = writeln!(out);
    if report.changes.is_empty() {
        let _ = writeln!(out, "no verdict changes");
    }
    for c in &report.changes {
        let _ = writeln!(
            out,
            "{:>6} {} → {}  {}",
            c.count,
            c.from.as_str(),
            c.to.as_str(),
            escape::cell(&c.policy)
        );
        for r in c.reasons.iter().filter(|r| r.reason.is_some()).take(5) {
            let reason = r.reason.as_deref().unwrap_or_default();
            let _ = writeln!(out, "       {:>6}× {}", r.count, escape::cell(reason));
        }
        let more = c.reasons.len().saturating_sub(5);
        if more > 0 {
            let _ = writeln!(
                out,
                "              and {more} more reasons (--json lists them)"
            );
        }
        let who: Vec<String> = c
            .principals
            .iter()
            .take(5)
            .map(|p| {
                format!(
                    "{} via {} ({})",
                    escape::cell(&p.subject),
                    escape::cell(&p.chain),
                    p.commands
                )
            })
            .collect();
        let more = c.principals.len().saturating_sub(5);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        let _ = writeln!(out, "       principals: {}{more}", who.join(", "));
        for e in &c.examples {
            let _ = writeln!(
                out,
                "       e.g. #{} {} {}  {}",
                e.seq,
                escape::cell(&e.session),
                e.time,
                escape::cell(&e.command)
            );
        }
    }
    if !report.newly_masked.is_empty() {
        let _ = writeln!(
            out,
            "\nnewly masked columns (from {} recorded rows):",
            report.rows_checked
        );
        for m in &report.newly_masked {
            let _ = writeln!(
                out,
                "  {:<24} {} cells in {} commands (rule {})",
                escape::cell(&m.column),
                m.cells,
                m.commands,
                escape::cell(&m.rules.join(", "))
            );
        }
    }
    let s = &report.skipped;
    let _ = writeln!(
        out,
        "\nnot replayed: {} refused by the gateway itself, {} stored capped, {} unreadable, {} without their session",
        s.gateway_refusals, s.capped, s.unreadable, s.no_session
    );
    if report.drift > 0 {
        let _ = writeln!(
            out,
            "{} recorded verdicts differ from the current chain's (policies changed since, budgets, approvals)",
            report.drift
        );
    }
    if report.unreplayed() > 0 {
        let _ = writeln!(
            out,
            "{} recorded commands could not be judged again: this answer does not cover them",
            report.unreplayed()
        );
    }
    let _ = match report.newly_refused {
        0 => writeln!(
            out,
            "nothing the current chain lets through would be refused or held"
        ),
        1 => writeln!(
            out,
            "1 command the current chain lets through would be refused or held"
        ),
        n => writeln!(
            out,
            "{n} commands the current chain lets through would be refused or held"
        ),
    };
    out
}
