//! `warden audit export`: the events an auditor asks for, as JSON lines or CSV, filtered by
//! time, session, actor (any depth of the delegation chain), target, verdict and type. A
//! progress bar shows on a terminal; output to a terminal is escaped unless `--raw` (a file or
//! pipe gets the bytes as stored, so the lines still verify).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;

use super::admin_client::{Live, LiveArgs};
use super::escape;
use crate::audit::{AuditStore, ExportFilter, ExportFormat, ExportOptions, Timestamp};

/// Which events: shared by `export` and `report`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SelectArgs {
    /// Events at or after this time: RFC 3339 (`2026-12-01T00:00:00Z`), a date (`2026-12-01`,
    /// UTC midnight), or a span back from now (`24h`, `7d`).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<Timestamp>,
    /// Events before this time (same forms as --from).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<Timestamp>,
    /// One session's events.
    #[arg(long)]
    pub session: Option<String>,
    /// Events of sessions this principal took part in, at any depth of the delegation chain
    /// (and approvals it requested or decided).
    #[arg(long)]
    pub actor: Option<String>,
    /// Events of sessions to this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Commands with this combined verdict.
    #[arg(long, value_parser = ["allow", "mask", "deny", "require-approval"])]
    pub verdict: Option<String>,
    /// Events of this type (repeatable): command, session_start, session_end,
    /// approval_requested, approval_decided, masked, recording, checkpoint, pruned, note.
    #[arg(long = "type", value_name = "TYPE")]
    pub kinds: Vec<String>,
    /// Only commands whose verdict a shadow policy (`mode = "shadow"`) would have changed had
    /// it been enforced: each line's `shadow_verdict` and `shadow_reason` say to what and why.
    #[arg(long)]
    pub shadow_diff: bool,
}

impl SelectArgs {
    pub fn filter(&self, from_seq: Option<u64>) -> ExportFilter {
        ExportFilter {
            from_seq,
            from: self.from,
            to: self.to,
            session: self.session.clone(),
            actor: self.actor.clone(),
            target: self.target.clone(),
            verdict: self.verdict.clone(),
            kinds: self.kinds.clone(),
            shadow_diff: self.shadow_diff,
        }
    }
}

/// `warden audit export ...`
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// The audit database (`[audit] path` in warden.toml).
    #[arg(long)]
    pub db: Option<PathBuf>,
    #[command(flatten)]
    pub live: LiveArgs,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// First event to export, by sequence number.
    #[arg(long)]
    pub from_seq: Option<u64>,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Write what is stored as it is: no escaping on a terminal, no formula guard in CSV.
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

/// Parse a time as `--from`/`--to` take it.
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(Timestamp::from_system_time(t));
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(&format!("{text} 00:00:00")) {
        return Ok(Timestamp::from_system_time(t));
    }
    if let Ok(span) = humantime::parse_duration(text) {
        let then = SystemTime::now()
            .checked_sub(span)
            .ok_or("that span reaches before 1970")?;
        return Ok(Timestamp::from_system_time(then));
    }
    Err(format!(
        "`{text}` is not a time: use RFC 3339 (2026-12-01T00:00:00Z), a date (2026-12-01) or a \
         span back from now (24h, 7d)"
    ))
}

/// Export from a database file to standard output.
pub fn run(args: ExportArgs, store: &AuditStore) -> anyhow::Result<ExitCode> {
    let options = ExportOptions {
        filter: args.select.filter(args.from_seq),
        format: match args.format {
            Format::Jsonl => ExportFormat::Jsonl,
            Format::Csv => ExportFormat::Csv,
        },
        guard_formulas: !args.raw,
    };
    let (head, _) = store.head().context("reading the chain head")?;
    let bar = progress_bar(head);
    let mut out = stdout_for(&args);
    let count = store
        .export_with(&options, &mut out, &mut |seq| bar.set_position(seq))
        .context("exporting events")?;
    out.flush()?;
    bar.finish_and_clear();
    if std::io::stderr().is_terminal() {
        eprintln!("warden: exported {count} events");
    }
    Ok(ExitCode::SUCCESS)
}

/// Standard output, escaped line by line when it is a terminal (unless `--raw`).
fn stdout_for(args: &ExportArgs) -> Box<dyn Write> {
    let stdout = std::io::stdout();
    if stdout.is_terminal() && !args.raw {
        Box::new(EscapingWriter::new(stdout.lock(), args.format))
    } else {
        Box::new(std::io::BufWriter::new(stdout.lock()))
    }
}

/// Export through a running gateway's admin API.
pub fn run_live(args: &ExportArgs, live: &Live) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/audit/events?{}", export_query(args));
    let bytes = live.get(&path)?;
    let mut out = stdout_for(args);
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The admin API's query string for these arguments (see `admin/audit.rs`).
pub fn export_query(args: &ExportArgs) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if args.format == Format::Csv {
        query.append_pair("format", "csv");
    }
    if args.raw {
        query.append_pair("raw", "1");
    }
    if let Some(seq) = args.from_seq {
        query.append_pair("from_seq", &seq.to_string());
    }
    let s = &args.select;
    if let Some(t) = s.from {
        query.append_pair("from", &t.to_string());
    }
    if let Some(t) = s.to {
        query.append_pair("to", &t.to_string());
    }
    for (key, value) in [
        ("session", &s.session),
        ("actor", &s.actor),
        ("target", &s.target),
        ("verdict", &s.verdict),
    ] {
        if let Some(value) = value {
            query.append_pair(key, value);
        }
    }
    for kind in &s.kinds {
        query.append_pair("type", kind);
    }
    if s.shadow_diff {
        query.append_pair("shadow_diff", "1");
    }
    query.finish()
}

/// A bar on standard error, drawn only when that is a terminal.
pub fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// Escapes each line before it reaches a terminal: JSON lines keep their value (C1 and bidi
/// as `\uXXXX`), CSV shows controls escaped.
struct EscapingWriter<W: Write> {
    inner: W,
    format: Format,
    line: Vec<u8>,
}

impl<W: Write> EscapingWriter<W> {
    fn new(inner: W, format: Format) -> Self {
        EscapingWriter {
            inner,
            format,
            line: Vec::new(),
        }
    }

    fn emit(&mut self) -> std::io::Result<()> {
        let text = String::from_utf8_lossy(&self.line);
        let (body, newline) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        let safe = match self.format {
            Format::Jsonl => escape::json_line(body),
            Format::Csv => escape::text(body),
        };
        self.inner.write_all(safe.as_bytes())?;
        self.inner.write_all(newline.as_bytes())?;
        self.line.clear();
        Ok(())
    }
}

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            self.line.push(b);
            if b == b'\n' {
                self.emit()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.line.is_empty() {
            self.emit()?;
        }
        self.inner.flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_the_forms_auditors_type() {
        let t = parse_time("2026-12-01T00:00:00Z").unwrap();
        assert_eq!(t, parse_time("2026-12-01").unwrap());
        assert_eq!(t.to_string(), "2026-12-01T00:00:00.000000Z");
        let day_ago = parse_time("24h").unwrap();
        let now = Timestamp::now();
        let diff = now.unix_micros() - day_ago.unix_micros();
        assert!((86_399_000_000..=86_401_000_000).contains(&diff), "{diff}");
        assert!(parse_time("yesterday-ish").is_err());
    }

    #[test]
    fn terminal_output_is_escaped_line_by_line() {
        let mut out = Vec::new();
        {
            let mut w = EscapingWriter::new(&mut out, Format::Csv);
            w.write_all(b"1,\"a\x1b]0;t\x07\nb\"\n2,c").unwrap();
            w.flush().unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1,\"a\\x1b]0;t\\x07\nb\"\n2,c"
        );
    }
}
