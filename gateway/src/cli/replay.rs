//! `warden replay`: show a recorded session as its client saw it. SQL sessions come out as a
//! psql transcript (prompt, statement, result tables, errors and notices, and warden's verdict
//! as a `-- warden:` comment when it was not a plain allow); `--raw` prints the stored JSON
//! lines (format in [`crate::recording`]).
//!
//! Recordings hold masked data only; replay shows what was stored and unmasks nothing.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::sessions::open_db;
use crate::audit::AuditProtocol;
use crate::recording::{parse_transcript, render_psql, transcript_lines};

/// `warden replay SESSION --db PATH [--raw]`
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The session id, as `warden sessions` lists it.
    pub session: String,
    /// The audit database (`[audit] path` in warden.toml).
    #[arg(long)]
    pub db: PathBuf,
    /// Print the recording's JSON lines as stored instead of rendering them.
    #[arg(long)]
    pub raw: bool,
}

/// Replay to standard output. Exit status 1 when some of the recording could not be read
/// (the rest is still shown).
pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let code = replay_to(&args, &mut out)?;
    out.flush()?;
    Ok(code)
}

/// [`run`], writing to `out`.
pub fn replay_to(args: &ReplayArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let store = open_db(&args.db)?;
    let read = store
        .session(&args.session)
        .and_then(|record| Ok((record, store.recording(&args.session)?)))
        .context("reading the session");
    store.close().context("closing the audit database")?;
    let (record, chunks) = read?;
    if record.is_none() && chunks.is_empty() {
        anyhow::bail!(
            "no session `{}` in {} (`warden sessions --db {}` lists them)",
            args.session,
            args.db.display(),
            args.db.display()
        );
    }
    if chunks.is_empty() {
        eprintln!("warden: session `{}` has no recording", args.session);
        return Ok(ExitCode::SUCCESS);
    }
    let protocol = record.as_ref().map(|r| r.protocol);
    if args.raw || !matches!(protocol, Some(AuditProtocol::Postgres) | None) {
        if !args.raw {
            eprintln!("warden: no renderer for this protocol yet; printing the raw recording");
        }
        for (_, line) in transcript_lines(&chunks) {
            out.write_all(line)?;
            out.write_all(b"\n")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let target = match &record {
        Some(record) => record.target.as_str(),
        None => {
            // Recorded, but its session_start was never indexed: replay what there is.
            eprintln!("warden: session `{}` has no session record", args.session);
            "unknown"
        }
    };
    let lines = parse_transcript(&chunks);
    out.write_all(render_psql(&lines, target).as_bytes())?;
    if lines.iter().any(Result::is_err) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
