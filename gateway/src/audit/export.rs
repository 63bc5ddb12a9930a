//! Export for compliance: one JSON object per line, checkable without warden or redb.
//!
//! ```text
//! {"seq":7,"prev":"<hex hash of event 6>","hash":"<hex hash of event 7>","event":{...}}
//! ```
//! `event` is always the last key and its value is the stored canonical bytes, copied verbatim,
//! so `hash = sha256(hex_decode(prev) ‖ bytes between ,"event": and the final })`. Do not
//! re-serialise `event` before hashing: a JSON tool may reorder or re-escape it.
//! [`verify_export`] does exactly this check. An export only proves itself consistent: compare
//! its last hash with a head recorded elsewhere to show nothing was cut from its end.

use std::io::{BufRead, Write};

use redb::ReadTransaction;
use serde::Deserialize;

use super::AuditError;
use super::chain::{EventHeader, GENESIS, Hash, chain_hash, parse_hash};
use super::schema::EVENTS;
use super::verify::{ChainProblem, ProblemKind, VerifyReport};

const EVENT_KEY: &str = ",\"event\":";

/// Write events with `seq >= from` to `out`; returns how many.
pub(crate) fn export_events(
    txn: &ReadTransaction,
    from: u64,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    let table = txn.open_table(EVENTS)?;
    let from = from.max(1);
    // The first line's `prev` is the stored hash before it, so a partial export still chains.
    let mut prev = match from {
        1 => GENESIS,
        _ => table
            .get(from - 1)?
            .map_or(GENESIS, |guard| guard.value().0),
    };
    let mut count = 0;
    for entry in table.range(from..)? {
        let (key, value) = entry?;
        let (hash, bytes) = value.value();
        let seq = key.value();
        write!(
            out,
            "{{\"seq\":{seq},\"prev\":\"{}\",\"hash\":\"{}\"",
            hex::encode(prev),
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
        prev = hash;
        count += 1;
    }
    out.flush()?;
    Ok(count)
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
pub fn verify_export(input: impl BufRead) -> Result<VerifyReport, AuditError> {
    let mut report = VerifyReport::default();
    let mut expected: Option<(u64, Hash)> = None;
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        match check_line(&line, expected) {
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

fn check_line(line: &str, expected: Option<(u64, Hash)>) -> Result<(u64, Hash), LineProblem> {
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
