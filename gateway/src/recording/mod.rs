//! Session recordings: what a client saw, masked, kept in the audit store for replay.
//!
//! A [`Recorder`] per session turns the adapter's calls (a command and its verdict, result
//! columns, rows, the completion tag, errors, notices) into a transcript and hands it to
//! [`AuditStore::append_recording`](crate::audit::AuditStore::append_recording) in chunks,
//! from a background task, so recording never makes the relay wait (`recorder.rs`).
//! `warden replay` reads the chunks back and shows them as psql would have (`psql.rs`, drawn
//! with the aligned-table printer in `table.rs`, which `warden sessions` shares).
//!
//! # No clear card numbers
//! Callers pass what the client received, so masked rows are already masked. The recorder
//! scrubs every text it stores again (statement, reason, column names, cells, tags, errors,
//! notices) with the PAN detector `pci-mask` uses: a target whose chain allows everything still
//! records no clear PAN. Scrubbing happens before a text is encoded, so what JSON escapes in a
//! number (a tab, a colour code between its digits) was masked first.
//!
//! # Transcript format (SQL; HTTP will add its own types)
//! JSON lines, UTF-8, one entry per line. Every entry has `t`, microseconds since the recorder
//! started, and `type`. Chunks always end on a line boundary, so the concatenated chunks are
//! the transcript.
//! ```text
//! {"t":0,"type":"start","version":1,"time":"2025-06-01T10:00:00.000000Z"}
//! {"t":812,"type":"command","text":"SELECT id, pan FROM cards;","verdict":"mask","reason":"pci-mask"}
//! {"t":2310,"type":"columns","names":["id","pan"],"types":[23,25]}
//! {"t":2402,"type":"rows","rows":[["1","************1111"],["2",null]]}
//! {"t":2455,"type":"dropped","rows":5000}
//! {"t":2460,"type":"complete","tag":"SELECT 5002"}
//! {"t":3100,"type":"notice","message":"..."}
//! {"t":3200,"type":"error","message":"..."}
//! ```
//! - `start`: written once by the recorder; `time` is the wall-clock start (RFC 3339, UTC).
//! - `command`: the statement as the client sent it and the combined verdict (`allow`, `mask`,
//!   `deny`, `require-approval`); `reason` when the chain gave one.
//! - `columns`: a result's column names; `types` (optional) their Postgres type OIDs, which
//!   replay uses to right-align numbers as psql does.
//! - `rows`: cells as text, `null` for SQL NULL, exactly as the client received them.
//! - `dropped`: that many rows were sent to the client but not recorded, because the recording
//!   queue was full (see [`RecorderOptions::queue_bytes`]). Commands, verdicts, columns,
//!   completions, errors and notices are never dropped.
//! - `complete`: the CommandComplete tag (`SELECT 3`, `INSERT 0 1`).
//! - `error`, `notice`: the message text the client was shown.
//!
//! # Transcript format (SSH additions)
//! ```text
//! {"t":10,"type":"terminal","width":80,"height":24,"term":"xterm-256color"}
//! {"t":900,"type":"output","stream":"o","data":"total 8\r\n"}
//! {"t":950,"type":"input","data":"ls -l\r"}
//! {"t":990,"type":"resize","width":120,"height":40}
//! {"t":2000,"type":"exit","status":0}
//! ```
//! - `terminal`: a pty was granted (an interactive session, or `ssh -t host cmd`).
//! - `output`: bytes the client was shown, as text (invalid UTF-8 replaced), after masking;
//!   `stream` is `o` (stdout, or the terminal) or `e` (stderr).
//! - `input`: a line the user submitted in a terminal, recorded at Enter (scrubbed as a whole
//!   line, so a card number typed one key at a time is still caught); keystrokes of a line that
//!   was never submitted are not recorded.
//! - `resize`: the client's window changed.
//! - `exit`: the command's exit status, or the signal that ended it.
//! - `command` also carries SSH exec lines, interactive lines and SFTP operations.
//!
//! Readers skip entries whose `type` they do not know, so new types can be added without
//! breaking older `warden replay` binaries; fields are only ever added, never renamed.

mod psql;
mod recorder;
pub mod table;
pub mod terminal;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::audit::Timestamp;

pub use psql::render_psql;
pub use recorder::{Recorder, RecorderOptions, RecordingStats};

/// Version written in the `start` entry; bumped only if an existing field changes meaning.
pub const FORMAT_VERSION: u32 = 1;

/// One line of a transcript: its time offset and what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line<'a> {
    /// Microseconds since the recorder started.
    pub t: u64,
    #[serde(flatten)]
    pub entry: Entry<'a>,
}

/// A transcript entry, tagged by `type` (see the module docs for the JSON).
///
/// Text borrows when it can: the recorder encodes straight from the caller's data unless a
/// PAN had to be scrubbed. Decoding always yields owned text (`Entry<'static>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry<'a> {
    Start {
        version: u32,
        time: Timestamp,
    },
    Command {
        text: Cow<'a, str>,
        verdict: Cow<'a, str>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<Cow<'a, str>>,
    },
    Columns {
        names: Vec<Cow<'a, str>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        types: Vec<u32>,
    },
    Rows {
        rows: Vec<Vec<Option<Cow<'a, str>>>>,
    },
    Dropped {
        rows: u64,
    },
    Complete {
        tag: Cow<'a, str>,
    },
    Error {
        message: Cow<'a, str>,
    },
    Notice {
        message: Cow<'a, str>,
    },
    Terminal {
        width: u32,
        height: u32,
        term: Cow<'a, str>,
    },
    Output {
        stream: Cow<'a, str>,
        data: Cow<'a, str>,
    },
    Input {
        data: Cow<'a, str>,
    },
    Resize {
        width: u32,
        height: u32,
    },
    Exit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<Cow<'a, str>>,
    },
    /// A `type` this version does not know (written by a newer gateway): skipped on replay.
    #[serde(other)]
    Unknown,
}

/// A transcript line that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("recording line {line}: {source}")]
pub struct LineError {
    /// 1-based line number within the concatenated chunks.
    pub line: usize,
    #[source]
    pub source: serde_json::Error,
}

/// Decode a session's recording chunks (as [`crate::audit::AuditStore::recording`] returns
/// them) into lines. A line that does not decode is returned as an error in its place, so a
/// reader can show everything else.
pub fn parse_transcript(chunks: &[Vec<u8>]) -> Vec<Result<Line<'static>, LineError>> {
    transcript_lines(chunks)
        .map(|(line, bytes)| {
            serde_json::from_slice::<Line<'static>>(bytes)
                .map_err(|source| LineError { line, source })
        })
        .collect()
}

/// The non-empty lines of the concatenated chunks, numbered from 1.
pub fn transcript_lines(chunks: &[Vec<u8>]) -> impl Iterator<Item = (usize, &[u8])> {
    // Chunks end on line boundaries, so splitting each chunk on its own is the same as
    // splitting their concatenation, without copying the whole recording.
    chunks
        .iter()
        .flat_map(|chunk| chunk.split(|&b| b == b'\n'))
        .filter(|line| !line.is_empty())
        .enumerate()
        .map(|(i, line)| (i + 1, line))
}

/// Replace every card number in `text` with its masked form, borrowing when there is none.
pub(crate) fn scrub(text: &str) -> Cow<'_, str> {
    warden_pan::scrub(text)
}
