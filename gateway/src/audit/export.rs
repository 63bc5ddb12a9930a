//! Export for compliance: one JSON object per line, checkable without warden or redb.
//!
//! ```text
//! {"seq":7,"prev":"<hex hash of event 6>","hash":"<hex hash of event 7>","event":{...}}
//! ```
//! `event` is always the last key and its value is the stored canonical bytes, copied verbatim,
//! so `hash = sha256(hex_decode(prev) ‖ bytes between ,"event": and the final })`. Do not
//! re-serialise `event` before hashing: a JSON tool may reorder or re-escape it.
//! [`verify_export`] does exactly this check. An export only proves itself consistent: compare
//! its last hash with a head recorded elsewhere (a signed checkpoint) to show nothing was cut
//! from its end. A filtered export (by time, actor, verdict, ...) leaves gaps: each of its
//! lines still checks on its own (`verify-export --filtered`).
//!
//! CSV (`--format csv`) carries the same events, a row each, with the columns people filter on
//! in a spreadsheet and the verbatim event JSON last.

use std::io::{BufRead, Write};

use redb::ReadTransaction;
use serde::Deserialize;

use super::AuditError;
use super::chain::{EventHeader, GENESIS, Hash, chain_hash, parse_hash};
use super::event::{Event, EventKind};
use super::query::{ExportFilter, SessionContext, Sessions};
use super::schema::EVENTS;
use super::store::read_base;
use super::texts::{expand, open_texts};
use super::verify::{ChainProblem, ProblemKind, VerifyReport};

const EVENT_KEY: &str = ",\"event\":";

/// How exported events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportFormat {
    /// One `{"seq","prev","hash","event"}` object per line (see the module docs).
    #[default]
    Jsonl,
    /// A header row, then one row per event: [`CSV_COLUMNS`]. The `event` column holds the
    /// same verbatim event JSON as the JSON-lines export, so each row can be checked the same
    /// way.
    Csv,
}

/// The CSV export's columns.
pub const CSV_COLUMNS: [&str; 13] = [
    "seq",
    "time",
    "type",
    "session",
    "target",
    "principal",
    "chain",
    "verdict",
    "command",
    "reason",
    "prev",
    "hash",
    "event",
];

/// How an export is made.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    pub filter: ExportFilter,
    pub format: ExportFormat,
    /// CSV: a cell an agent wrote that starts with `=`, `+`, `-`, `@`, tab or CR gets a leading
    /// `'`, so a spreadsheet shows it instead of running it as a formula (OWASP's CSV
    /// injection advice). The `event` column is never changed.
    pub guard_formulas: bool,
}

/// Write the events `options` selects to `out`; returns how many. `progress` hears each
/// event's `seq` as it is read (for a progress bar).
pub(crate) fn export_events(
    txn: &ReadTransaction,
    options: &ExportOptions,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, AuditError> {
    let table = txn.open_table(EVENTS)?;
    let texts = open_texts(txn)?;
    let base = read_base(txn)?;
    let from = options
        .filter
        .from_seq
        .unwrap_or(1)
        .max(base.map_or(1, |b| b.seq + 1));
    // The first line's `prev` is the stored hash before it, so a partial export still chains.
    let mut prev = match (from, base) {
        (1, _) => GENESIS,
        (from, Some(b)) if b.seq == from - 1 => b.hash,
        _ => table
            .get(from - 1)?
            .map_or(GENESIS, |guard| guard.value().0),
    };
    let needs_event = !options.filter.is_contiguous() || options.format == ExportFormat::Csv;
    let mut sessions = Sessions::new(txn);
    let mut sink = match options.format {
        ExportFormat::Jsonl => Sink::Jsonl(out),
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(CSV_COLUMNS).map_err(csv_error)?;
            Sink::Csv(Box::new(w))
        }
    };
    let mut count = 0;
    for entry in table.range(from..)? {
        let (key, value) = entry?;
        let (hash, row) = value.value();
        let bytes = &*expand(row, texts.as_ref())?;
        let seq = key.value();
        progress(seq);
        let this_prev = std::mem::replace(&mut prev, hash);
        let parsed = if needs_event {
            serde_json::from_slice::<Event>(bytes).ok()
        } else {
            None
        };
        let context = match &parsed {
            Some(event) => sessions.context(event)?,
            None => None,
        };
        if needs_event {
            // An event this build cannot read passes only a filter that asks for nothing.
            let keep = match &parsed {
                Some(event) => options.filter.matches(event, context.as_ref()),
                None => options.filter.is_contiguous(),
            };
            if !keep {
                continue;
            }
        }
        count += 1;
        let out = match &mut sink {
            Sink::Jsonl(out) => out,
            Sink::Csv(w) => {
                let row = csv_row(
                    seq,
                    &this_prev,
                    &hash,
                    bytes,
                    parsed.as_ref(),
                    context.as_ref(),
                );
                let guarded: Vec<String> = row
                    .into_iter()
                    .enumerate()
                    .map(|(i, cell)| {
                        if options.guard_formulas && i < CSV_COLUMNS.len() - 1 {
                            guard_formula(cell)
                        } else {
                            cell
                        }
                    })
                    .collect();
                w.write_record(&guarded).map_err(csv_error)?;
                continue;
            }
        };
        write!(
            out,
            "{{\"seq\":{seq},\"prev\":\"{}\",\"hash\":\"{}\"",
            hex::encode(this_prev),
            hex::encode(hash)
        )?;
        if is_single_line_json(bytes) {
            out.write_all(EVENT_KEY.as_bytes())?;
            out.write_all(bytes)?;
        } else {
            // Bytes that would break the line format (only possible if the file was altered):
            // keep them, as hex, so the export still shows what is there.
            write!(out, ",\"event_hex\":\"{}\"", hex::encode(bytes))?;
        }
        out.write_all(b"}\n")?;
    }
    match sink {
        Sink::Jsonl(out) => out.flush()?,
        Sink::Csv(mut w) => w.flush()?,
    }
    Ok(count)
}

/// Where rows go: JSON lines straight out, CSV through its writer's quoting.
enum Sink<'a> {
    Jsonl(&'a mut dyn Write),
    Csv(Box<csv::Writer<&'a mut dyn Write>>),
}

fn csv_error(err: csv::Error) -> AuditError {
    AuditError::Io(std::io::Error::other(err.to_string()))
}

/// One CSV row, in [`CSV_COLUMNS`] order.
fn csv_row(
    seq: u64,
    prev: &Hash,
    hash: &Hash,
    bytes: &[u8],
    event: Option<&Event>,
    context: Option<&SessionContext>,
) -> Vec<String> {
    let text = |s: &str| s.to_owned();
    let mut principal = context.map(|c| c.principal.clone());
    let (mut verdict, mut command, mut reason) = (String::new(), String::new(), String::new());
    if let Some(event) = event {
        match &event.kind {
            EventKind::SessionStart(start) => principal = Some(start.principal.clone()),
            EventKind::SessionEnd(end) => reason = text(&end.reason),
            EventKind::Command(c) => {
                verdict = text(c.verdict.as_str());
                command = text(&c.command);
                reason = c.reason.clone().unwrap_or_default();
            }
            EventKind::ApprovalRequested(r) => {
                command = text(&r.command);
                reason = text(&r.reason);
            }
            EventKind::ApprovalDecided(d) => {
                verdict = text(if d.approved { "approved" } else { "denied" });
                reason = d.reason.clone().unwrap_or_default();
            }
            EventKind::Note(n) => reason = text(&n.message),
            EventKind::Masked(_)
            | EventKind::Recording(_)
            | EventKind::Checkpoint(_)
            | EventKind::Pruned(_) => {}
        }
    }
    vec![
        seq.to_string(),
        event.map(|e| e.time.to_string()).unwrap_or_default(),
        event.map(|e| e.kind.name().to_owned()).unwrap_or_default(),
        event.and_then(|e| e.session.clone()).unwrap_or_default(),
        context.map(|c| c.target.clone()).unwrap_or_default(),
        principal
            .as_ref()
            .map(|p| p.subject.clone())
            .unwrap_or_default(),
        principal.map(|p| p.actors.join(" > ")).unwrap_or_default(),
        verdict,
        command,
        reason,
        hex::encode(prev),
        hex::encode(hash),
        String::from_utf8_lossy(bytes).into_owned(),
    ]
}

/// Spreadsheets skip leading whitespace before reading a formula, so look past it.
fn guard_formula(cell: String) -> String {
    match cell.trim_start().chars().next() {
        Some('=' | '+' | '-' | '@') => format!("'{cell}"),
        _ if cell.starts_with(['\t', '\r', '\n']) => format!("'{cell}"),
        _ => cell,
    }
}

fn is_single_line_json(bytes: &[u8]) -> bool {
    !bytes.contains(&b'\n') && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

#[derive(Deserialize)]
struct LineHeader {
    seq: u64,
    prev: String,
    hash: String,
}

/// Check an export: each line's hash recomputed from its `prev` and verbatim event bytes, each
/// `prev` equal to the line before's hash, `seq`s contiguous, and each event's own `seq` equal
/// to its line's. An export starting at 1 must start from genesis; one starting later is
/// trusted for its first `prev`.
///
/// `filtered`: the export was filtered (`--from` time, `--actor`, ...), so `seq`s may skip;
/// each line is still checked on its own, and lines that do follow each other must chain.
pub fn verify_export(input: impl BufRead, filtered: bool) -> Result<VerifyReport, AuditError> {
    let mut report = VerifyReport::default();
    let mut expected: Option<(u64, Hash)> = None;
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        match check_line(&line, expected, filtered) {
            Ok((seq, hash)) => {
                report.events += 1;
                report.head_seq = seq;
                report.head_hash = hash;
                expected = Some((seq + 1, hash));
            }
            Err((seq, kind, message)) => {
                report.problem = Some(ChainProblem {
                    seq,
                    kind,
                    message: format!("line {}: {message}", index + 1),
                });
                break;
            }
        }
    }
    Ok(report)
}

type LineProblem = (u64, ProblemKind, String);

fn check_line(
    line: &str,
    expected: Option<(u64, Hash)>,
    filtered: bool,
) -> Result<(u64, Hash), LineProblem> {
    let next_seq = expected.map_or(1, |(seq, _)| seq);
    let unreadable = |what: String| (next_seq, ProblemKind::Unreadable, what);
    let header: LineHeader =
        serde_json::from_str(line).map_err(|e| unreadable(format!("not an export line: {e}")))?;
    let seq = header.seq;
    let (Some(prev), Some(hash)) = (parse_hash(&header.prev), parse_hash(&header.hash)) else {
        return Err(unreadable("`prev` or `hash` is not a hex sha256".into()));
    };
    // `event` is the last key, so its bytes run from the first `,"event":` to the final `}`.
    let bytes = line
        .find(EVENT_KEY)
        .and_then(|at| line.get(at + EVENT_KEY.len()..line.len().saturating_sub(1)))
        .filter(|_| line.ends_with('}'))
        .ok_or_else(|| unreadable(format!("event {seq} has no verbatim `event` value")))?;
    match expected {
        // A gap a filter made: nothing to chain this line to.
        Some((want, _)) if filtered && seq > want => {}
        Some((want, _)) if seq != want => {
            let kind = if seq > want {
                ProblemKind::Missing
            } else {
                ProblemKind::Reordered
            };
            return Err((want, kind, format!("expected event {want}, found {seq}")));
        }
        Some((_, want_prev)) if prev != want_prev => {
            return Err((
                seq,
                ProblemKind::HashChanged,
                format!("event {seq}'s prev does not match event {}'s hash", seq - 1),
            ));
        }
        None if seq == 1 && prev != GENESIS => {
            return Err((
                1,
                ProblemKind::Changed,
                "event 1 does not chain from genesis".into(),
            ));
        }
        _ => {}
    }
    if chain_hash(&prev, bytes.as_bytes()) != hash {
        return Err((
            seq,
            ProblemKind::Changed,
            format!("event {seq} does not match its hash"),
        ));
    }
    match EventHeader::parse(bytes.as_bytes()) {
        Ok(event) if event.seq == seq => Ok((seq, hash)),
        Ok(event) => Err((
            seq,
            ProblemKind::Reordered,
            format!("line for event {seq} holds event {}", event.seq),
        )),
        Err(e) => Err((seq, ProblemKind::Unreadable, format!("event {seq}: {e}"))),
    }
}
