//! `warden replay`: show a recorded session as its client saw it. SQL sessions come out as a
//! psql transcript (prompt, statement, result tables, errors and notices, and warden's verdict
//! as a `-- warden:` comment when it was not a plain allow). SSH sessions with a terminal play
//! back in this terminal with their original timing; exec sessions print as `$ command`,
//! verdict, output and exit status (see [`crate::recording::terminal`]). `--asciicast FILE`
//! writes an SSH session as an asciicast v2 file for `asciinema play`; `--raw` prints the stored
//! JSON lines (format in [`crate::recording`]).
//!
//! Recordings hold masked data only; replay shows what was stored and unmasks nothing. What
//! agents wrote reaches the auditor's terminal escaped (`cli::escape`): transcripts show
//! control characters as `\x1b`; terminal playback keeps colours and cursor movement and
//! escapes what a terminal would act on beyond its screen.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::admin_client::{LiveArgs, encode};
use super::escape::{self, TerminalFilter};
use super::sessions::{NO_SOURCE, open_db};
use crate::audit::SessionRecord;
use crate::protocol::Protocol;
use crate::recording::terminal::{self, CastOptions, Pacing, TerminalInfo, Transcript};
use crate::recording::{parse_transcript, render_psql, transcript_lines};

/// Pauses in a terminal playback are capped at this many seconds unless `--idle-limit` says.
const DEFAULT_IDLE_LIMIT: f64 = 2.0;

/// `warden replay SESSION --db PATH [--raw | --asciicast FILE | --speed F --idle-limit SECS
/// --no-wait]`
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The session id, as `warden sessions` lists it.
    pub session: String,
    /// The audit database (`[audit] path` in warden.toml).
    #[arg(long)]
    pub db: Option<PathBuf>,
    #[command(flatten)]
    pub live: LiveArgs,
    /// Print the recording's JSON lines as stored instead of rendering them.
    #[arg(long, conflicts_with = "asciicast")]
    pub raw: bool,
    /// Terminal playback: play this many times as fast as recorded (0.5 = half speed).
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0, value_parser = positive)]
    pub speed: f64,
    /// Terminal playback: cap every pause at this many seconds (default 2; 0 keeps every
    /// pause). With --asciicast, written to the file as its idle_time_limit.
    #[arg(long, value_name = "SECS", value_parser = not_negative)]
    pub idle_limit: Option<f64>,
    /// Terminal playback: print everything at once, without pauses.
    #[arg(long)]
    pub no_wait: bool,
    /// SSH sessions: write an asciicast v2 file (for `asciinema play FILE`) instead of
    /// replaying; `-` writes it to standard output. Times are as recorded.
    #[arg(long, value_name = "FILE")]
    pub asciicast: Option<PathBuf>,
}

impl Default for ReplayArgs {
    fn default() -> Self {
        ReplayArgs {
            session: String::new(),
            db: None,
            live: LiveArgs::default(),
            raw: false,
            speed: 1.0,
            idle_limit: None,
            no_wait: false,
            asciicast: None,
        }
    }
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err("expected a number greater than 0 (e.g. 2 or 0.5)".into()),
    }
}

fn not_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err("expected seconds, 0 or more (e.g. 2 or 0.5)".into()),
    }
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
    let (record, chunks) = read_session(args)?;
    if record.is_none() && chunks.is_empty() {
        anyhow::bail!(
            "no session `{}` there (`warden sessions` lists them)",
            escape::cell(&args.session)
        );
    }
    if chunks.is_empty() {
        eprintln!("warden: session `{}` has no recording", args.session);
        return Ok(ExitCode::SUCCESS);
    }
    if args.raw {
        write_raw(&chunks, out)?;
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
    let protocol = match record.as_ref().map(|r| r.protocol) {
        Some(protocol) => protocol,
        None if terminal::looks_like_ssh(&lines) => Protocol::Ssh,
        None => Protocol::Postgres,
    };
    match protocol {
        Protocol::Ssh => replay_ssh(args, target, &lines, out)?,
        _ if args.asciicast.is_some() => anyhow::bail!(
            "--asciicast is for SSH sessions; this {} session replays as text without it",
            protocol.as_str()
        ),
        Protocol::Postgres => {
            out.write_all(escape::text(&render_psql(&lines, target)).as_bytes())?;
        }
        Protocol::Http => {
            eprintln!("warden: no renderer for this protocol yet; printing the raw recording");
            write_raw(&chunks, out)?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    let unreadable = lines.iter().filter(|l| l.is_err()).count();
    if unreadable > 0 {
        eprintln!("warden: {unreadable} recording lines could not be read (see --raw)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The session's record and recording, from the file or the running gateway.
fn read_session(args: &ReplayArgs) -> anyhow::Result<(Option<SessionRecord>, Vec<Vec<u8>>)> {
    if let Some(live) = args.live.live(args.db.as_deref())? {
        // Session ids are the gateway's own (`[A-Za-z0-9._-]`); anything else would change the
        // path, so it never reaches the URL.
        if args.session.is_empty()
            || !args
                .session
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            anyhow::bail!("`{}` is not a session id", escape::cell(&args.session));
        }
        let id = encode(&args.session);
        let record = match live.get_optional(&format!("/v1/sessions/{id}"))? {
            Some(bytes) => Some(serde_json::from_slice(&bytes).context("reading the session")?),
            None => None,
        };
        let chunks = match live.get_optional(&format!("/v1/sessions/{id}/recording"))? {
            Some(bytes) if !bytes.is_empty() => vec![bytes.to_vec()],
            _ => Vec::new(),
        };
        return Ok((record, chunks));
    }
    let Some(db) = &args.db else {
        anyhow::bail!("{NO_SOURCE}");
    };
    let store = open_db(db)?;
    let read = store
        .session(&args.session)
        .and_then(|record| Ok((record, store.recording(&args.session)?)))
        .context("reading the session");
    store.close().context("closing the audit database")?;
    read
}

/// The stored JSON lines. JSON already escapes C0 controls; C1 controls and bidi overrides are
/// rewritten as `\uXXXX` escapes of the same value.
fn write_raw(chunks: &[Vec<u8>], out: &mut dyn Write) -> std::io::Result<()> {
    for (_, line) in transcript_lines(chunks) {
        out.write_all(escape::json_line(&String::from_utf8_lossy(line)).as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// An SSH session: an asciicast file, a timed terminal playback, or an exec transcript.
fn replay_ssh(
    args: &ReplayArgs,
    target: &str,
    lines: &Transcript,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if let Some(path) = &args.asciicast {
        let title = format!("warden session {} {target}", args.session);
        let options = CastOptions {
            idle_time_limit: args.idle_limit.filter(|&secs| secs > 0.0),
            title: Some(&title),
            ..CastOptions::default()
        };
        let cast = terminal::asciicast(lines, &options)?;
        return write_cast(path, &cast, out);
    }
    match terminal::terminal_info(lines).filter(|_| !args.no_wait) {
        // No pty: nothing to animate; the transcript reads best all at once.
        None => {
            let mut filter = TerminalFilter::new();
            out.write_all(filter.push(&terminal::render_ssh(lines)).as_bytes())?;
            out.write_all(filter.finish().as_bytes())?;
        }
        Some(info) => play_terminal(args, &info, lines, out)?,
    }
    Ok(())
}

/// Play a terminal session with its pauses (scaled and capped as the arguments say).
fn play_terminal(
    args: &ReplayArgs,
    info: &TerminalInfo,
    lines: &Transcript,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let idle_limit = args.idle_limit.unwrap_or(DEFAULT_IDLE_LIMIT);
    let pacing = Pacing {
        speed: args.speed,
        idle_limit: (idle_limit > 0.0).then(|| Duration::from_secs_f64(idle_limit)),
    };
    eprintln!(
        "warden: playing a {}x{} {} session at {}x speed{} (--no-wait prints it at once)",
        info.width,
        info.height,
        info.term,
        args.speed,
        match pacing.idle_limit {
            Some(_) => format!(", pauses capped at {idle_limit}s"),
            None => String::new(),
        }
    );
    play(&terminal::playback(lines), pacing, out)?;
    Ok(())
}

/// Write each piece after its pause, flushing first so the screen is current while waiting.
/// What the session's programs sent the terminal passes the playback filter: colours and
/// cursor movement as recorded, anything a terminal would act on beyond the screen escaped.
fn play(frames: &[(u64, String)], pacing: Pacing, out: &mut dyn Write) -> std::io::Result<()> {
    let delays = terminal::delays(frames.iter().map(|(t, _)| *t), pacing);
    let mut filter = TerminalFilter::new();
    for ((_, text), delay) in frames.iter().zip(delays) {
        if !delay.is_zero() {
            out.flush()?;
            std::thread::sleep(delay);
        }
        out.write_all(filter.push(text).as_bytes())?;
    }
    out.write_all(filter.finish().as_bytes())?;
    out.flush()
}

fn write_cast(path: &Path, cast: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    if path == Path::new("-") {
        out.write_all(escape::json_line(cast).as_bytes())?;
        return Ok(());
    }
    std::fs::write(path, cast).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "warden: wrote {} (play it with `asciinema play {}`)",
        path.display(),
        path.display()
    );
    Ok(())
}
