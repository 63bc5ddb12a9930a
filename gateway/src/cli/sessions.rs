//! `warden sessions`: list the sessions in an audit database, oldest first, as a table or as
//! JSON lines.
//!
//! With `--db` it opens the file, which redb locks to one process: for a running gateway use
//! `--admin URL` (and an auditor's token), which reads through the gateway's admin API.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::admin_client::LiveArgs;
use super::escape;
use crate::audit::{AuditError, AuditStore, SessionRecord, Timestamp};
use crate::recording::table::{Align, Table};

/// `warden sessions (--db PATH | --admin URL) [--json]`
#[derive(Debug, clap::Args)]
pub struct SessionsArgs {
    /// The audit database (`[audit] path` in warden.toml).
    #[arg(long)]
    pub db: Option<PathBuf>,
    #[command(flatten)]
    pub live: LiveArgs,
    /// One JSON object per line (the stored session records) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Print cells as stored, control characters included (the default shows them escaped:
    /// subjects and addresses come from clients).
    #[arg(long)]
    pub raw: bool,
}

/// List the sessions on standard output.
pub fn run(args: SessionsArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    list_to(&args, &mut out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// [`run`], writing to `out`.
pub fn list_to(args: &SessionsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut sessions = match (args.live.live(args.db.as_deref())?, &args.db) {
        (Some(live), _) => {
            #[derive(serde::Deserialize)]
            struct Listing {
                sessions: Vec<SessionRecord>,
            }
            live.get_json::<Listing>("/v1/sessions")?.sessions
        }
        (None, Some(db)) => {
            let store = open_db(db)?;
            let listed = store.sessions().context("reading sessions");
            store.close().context("closing the audit database")?;
            listed?
        }
        (None, None) => anyhow::bail!("{NO_SOURCE}"),
    };
    // Ids are random; the order people expect is the order sessions started in.
    sessions.sort_by_key(|s| s.start_seq);
    if args.json {
        for session in &sessions {
            let line = serde_json::to_string(session)?;
            out.write_all(escape::json_line(&line).as_bytes())?;
            out.write_all(b"\n")?;
        }
        return Ok(());
    }
    out.write_all(render_table(&sessions, args.raw).as_bytes())?;
    Ok(())
}

const HEADERS: [&str; 14] = [
    "id",
    "principal",
    "chain",
    "protocol",
    "target",
    "client",
    "started",
    "ended",
    "commands",
    "allowed",
    "denied",
    "masked",
    "approvals",
    "end reason",
];

/// The sessions as a psql-style table with a `(N sessions)` footer.
pub fn render_table(sessions: &[SessionRecord], raw: bool) -> String {
    let headers: Vec<String> = HEADERS.iter().map(|h| (*h).to_owned()).collect();
    let mut aligns = vec![Align::Left; HEADERS.len()];
    for align in &mut aligns[8..13] {
        *align = Align::Right;
    }
    let mut rows: Vec<Vec<Option<String>>> = sessions.iter().map(row).collect();
    if !raw {
        for cell in rows.iter_mut().flatten().flatten() {
            *cell = escape::cell(cell).into_owned();
        }
    }
    let mut out = String::new();
    Table {
        headers: Some(&headers),
        aligns: &aligns,
        rows: &rows,
    }
    .draw(&mut out);
    out.push_str(&match sessions.len() {
        1 => "(1 session)\n".to_owned(),
        n => format!("({n} sessions)\n"),
    });
    out
}

fn row(s: &SessionRecord) -> Vec<Option<String>> {
    let mut cells = vec![
        Some(s.id.clone()),
        Some(s.principal.subject.clone()),
        Some(chain(s)),
        Some(s.protocol.as_str().to_owned()),
        Some(s.target.clone()),
        Some(s.client_addr.clone()),
        Some(time(s.started)),
    ];
    match &s.end {
        Some(end) => {
            let c = end.counts;
            cells.push(Some(time(end.ended)));
            cells.extend(
                [c.commands, c.allowed, c.denied, c.masked, c.approvals]
                    .map(|n| Some(n.to_string())),
            );
            cells.push(Some(end.reason.clone()));
        }
        // Counts are written with the end event; a session still running has none yet.
        None => cells.push(Some("open".to_owned())),
    }
    cells
}

/// `alice > agent-7`: who handed work to whom, outermost first.
fn chain(s: &SessionRecord) -> String {
    if s.principal.actors.is_empty() {
        s.principal.subject.clone()
    } else {
        s.principal.actors.join(" > ")
    }
}

/// Seconds are enough to find a session; `--json` has the microseconds.
fn time(t: Timestamp) -> String {
    humantime::format_rfc3339_seconds(t.to_system_time()).to_string()
}

/// What every reading command says when given neither source.
pub(crate) const NO_SOURCE: &str =
    "say where to read: --db PATH (a database file) or --admin URL (a running gateway)";

/// Open an existing database for reading (every `--db` command goes through here): never create one (a mistyped path must not list as
/// empty), and say plainly when the gateway holds the lock.
pub(crate) fn open_db(path: &Path) -> anyhow::Result<AuditStore> {
    if !path.is_file() {
        anyhow::bail!("no audit database at {}", path.display());
    }
    match AuditStore::open_evidence(path) {
        Ok((store, recovered)) => {
            if recovered {
                eprintln!(
                    "warden: {} needs recovery (copied while a gateway wrote it?): reading a \
                     recovered private copy; the file itself is not changed",
                    path.display()
                );
            }
            Ok(store)
        }
        Err(err @ AuditError::Locked(_)) => Err(err.into()),
        Err(err) => Err(anyhow::Error::new(err).context(format!("opening {}", path.display()))),
    }
}
