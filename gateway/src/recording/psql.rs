//! Replay of a SQL transcript as psql would have shown it: the prompt and statement, warden's
//! verdict as a SQL comment when it was not a plain allow, then the result, the command tag,
//! `ERROR:` and `NOTICE:` lines, in psql's aligned format.
//!
//! Where psql shows less than the transcript holds, replay follows psql and says so in a
//! `-- warden:` comment: rows dropped by a full recording queue, rows discarded because an
//! error ended their result, a result the session ended in the middle of.

use std::fmt::Write as _;

use super::table::{Align, Table, pg_align, rows_footer};
use super::{Entry, Line, LineError};

/// Render decoded transcript lines (see [`super::parse_transcript`]) with `database` in the
/// prompt (`payments=> `). Undecodable lines become `-- warden:` comments in place.
pub fn render_psql(lines: &[Result<Line<'static>, LineError>], database: &str) -> String {
    let mut r = Renderer {
        out: String::new(),
        database,
        result: None,
    };
    for line in lines {
        match line {
            Ok(line) => r.entry(&line.entry),
            Err(err) => {
                r.finish_result(End::Interrupted);
                r.comment(&format!("unreadable {err}"));
            }
        }
    }
    r.finish_result(End::SessionEnded);
    r.out
}

/// A result being collected: psql prints a result only once it is complete.
#[derive(Default)]
struct Pending {
    names: Option<Vec<String>>,
    aligns: Vec<Align>,
    rows: Vec<Vec<Option<String>>>,
    dropped: u64,
}

/// How a pending result ended.
enum End<'t> {
    /// CommandComplete with this tag.
    Complete(&'t str),
    /// An error: libpq discards the partial result, so psql shows only the error.
    Error,
    /// The next command (or an unreadable line) came without a completion in between.
    Interrupted,
    /// The transcript ended.
    SessionEnded,
}

struct Renderer<'d> {
    out: String,
    database: &'d str,
    result: Option<Pending>,
}

impl Renderer<'_> {
    fn entry(&mut self, entry: &Entry<'static>) {
        match entry {
            Entry::Command {
                text,
                verdict,
                reason,
            } => {
                self.finish_result(End::Interrupted);
                self.prompt(text);
                self.verdict(verdict, reason.as_deref());
            }
            Entry::Columns { names, types } => {
                self.finish_result(End::Interrupted);
                self.result = Some(Pending {
                    names: Some(names.iter().map(|n| n.to_string()).collect()),
                    aligns: types.iter().map(|&oid| pg_align(oid)).collect(),
                    ..Pending::default()
                });
            }
            Entry::Rows { rows } => {
                let pending = self.result.get_or_insert_with(Pending::default);
                pending.rows.extend(rows.iter().map(|row| {
                    row.iter()
                        .map(|c| c.as_ref().map(|c| c.to_string()))
                        .collect()
                }));
            }
            Entry::Dropped { rows } => match &mut self.result {
                Some(pending) => pending.dropped += rows,
                None => self.comment(&format!(
                    "{rows} rows not recorded (recording limit or full queue)"
                )),
            },
            Entry::Complete { tag } => self.finish_result(End::Complete(tag)),
            Entry::Error { message } => {
                self.finish_result(End::Error);
                self.message("ERROR", message);
            }
            // psql prints notices as they arrive, before the result they came with.
            Entry::Notice { message } => self.message("NOTICE", message),
            // Terminal entries come from SSH sessions, which have their own renderer.
            Entry::Start { .. }
            | Entry::Terminal { .. }
            | Entry::Output { .. }
            | Entry::Input { .. }
            | Entry::Resize { .. }
            | Entry::Exit { .. }
            | Entry::Unknown => {}
        }
    }

    /// `payments=> SELECT ...`, with psql's continuation prompt on further lines.
    fn prompt(&mut self, text: &str) {
        for (i, line) in text.trim_end().split('\n').enumerate() {
            let mark = if i == 0 { '=' } else { '-' };
            let _ = writeln!(self.out, "{}{mark}> {line}", self.database);
        }
    }

    /// `-- warden: mask (pci-mask)`, `-- warden: deny: sql-guard: ...`; nothing for allow.
    fn verdict(&mut self, verdict: &str, reason: Option<&str>) {
        let line = match (verdict, reason) {
            ("allow", None) => return,
            ("mask", Some(reason)) => format!("mask ({reason})"),
            (verdict, Some(reason)) => format!("{verdict}: {reason}"),
            (verdict, None) => verdict.to_owned(),
        };
        self.comment(&line);
    }

    fn finish_result(&mut self, end: End<'_>) {
        let Some(pending) = self.result.take() else {
            // A statement without a result: psql prints its tag (`INSERT 0 1`, `CREATE TABLE`).
            if let End::Complete(tag) = end
                && !tag.is_empty()
            {
                let _ = writeln!(self.out, "{tag}");
            }
            return;
        };
        if let End::Error = end {
            let n = pending.rows.len() as u64 + pending.dropped;
            if n > 0 {
                self.comment(&format!(
                    "{n} rows sent before the error are not shown (see --raw)"
                ));
            }
            return;
        }
        Table {
            headers: pending.names.as_deref(),
            aligns: &pending.aligns,
            rows: &pending.rows,
        }
        .draw(&mut self.out);
        self.out
            .push_str(&rows_footer(pending.rows.len() as u64 + pending.dropped));
        self.out.push('\n');
        if pending.dropped > 0 {
            self.comment(&format!(
                "{} of these rows were not recorded (recording limit or full queue)",
                pending.dropped
            ));
        }
        self.out.push('\n');
        match end {
            // psql also shows the status of a data-modifying statement with RETURNING.
            End::Complete(tag) if is_dml(tag) => {
                let _ = writeln!(self.out, "{tag}");
            }
            End::Complete(_) | End::Error => {}
            End::Interrupted => self.comment("no completion was recorded for this result"),
            End::SessionEnded => self.comment("the recording ends before this result completed"),
        }
    }

    /// `ERROR:  message`: psql's two spaces after the severity; further lines as they are.
    fn message(&mut self, severity: &str, message: &str) {
        let _ = writeln!(self.out, "{severity}:  {}", message.trim_end());
    }

    fn comment(&mut self, text: &str) {
        let _ = writeln!(self.out, "-- warden: {text}");
    }
}

fn is_dml(tag: &str) -> bool {
    ["INSERT", "UPDATE", "DELETE", "MERGE"]
        .iter()
        .any(|verb| tag.starts_with(verb))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::super::parse_transcript;
    use super::*;

    fn render(jsonl: &str) -> String {
        render_psql(&parse_transcript(&[jsonl.as_bytes().to_vec()]), "db")
    }

    #[test]
    fn returning_shows_table_and_tag() {
        let out = render(concat!(
            r#"{"t":1,"type":"command","text":"INSERT INTO t VALUES (1) RETURNING a;","verdict":"allow"}"#,
            "\n",
            r#"{"t":2,"type":"columns","names":["a"],"types":[23]}"#,
            "\n",
            r#"{"t":3,"type":"rows","rows":[["1"]]}"#,
            "\n",
            r#"{"t":4,"type":"complete","tag":"INSERT 0 1"}"#,
            "\n",
        ));
        assert_eq!(
            out,
            "db=> INSERT INTO t VALUES (1) RETURNING a;\n a \n---\n 1\n(1 row)\n\nINSERT 0 1\n"
        );
    }

    #[test]
    fn unknown_types_are_skipped_and_garbage_is_reported() {
        let out = render(concat!(
            r#"{"t":1,"type":"hologram","x":1}"#,
            "\n",
            "not json\n",
            r#"{"t":2,"type":"command","text":"SELECT\n1;","verdict":"require-approval","reason":"bulk"}"#,
            "\n",
        ));
        assert!(
            out.starts_with("-- warden: unreadable recording line 2: "),
            "{out}"
        );
        assert!(
            out.ends_with("db=> SELECT\ndb-> 1;\n-- warden: require-approval: bulk\n"),
            "{out}"
        );
    }

    #[test]
    fn an_error_discards_the_partial_result() {
        let out = render(concat!(
            r#"{"t":1,"type":"columns","names":["a"]}"#,
            "\n",
            r#"{"t":2,"type":"rows","rows":[["1"],["2"]]}"#,
            "\n",
            r#"{"t":3,"type":"error","message":"division by zero"}"#,
            "\n",
        ));
        assert_eq!(
            out,
            "-- warden: 2 rows sent before the error are not shown (see --raw)\nERROR:  division by zero\n"
        );
    }
}
