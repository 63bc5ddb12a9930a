//! Safe output: stored data (commands, cells, column names, token subjects, reasons, terminal
//! output) is written by agents and reaches an auditor's terminal through `replay`, `sessions`,
//! `approvals`, `audit export` and `audit report`. A terminal obeys what it is sent: `ESC[2J`
//! clears the screen, `ESC]0;…BEL` retitles the window, OSC 52 writes the clipboard, a carriage
//! return overwrites the line just printed, bidi overrides reorder what is read. So every
//! command that prints stored data passes it through one of these, unless the caller asks for
//! `--raw`:
//!
//! - [`text`]: control characters shown as `\x1b`, `\r`, `\u{202e}`; newlines and tabs kept.
//! - [`cell`]: the same, newlines and tabs escaped too (one table cell, one line).
//! - [`json_line`]: JSON whose strings hold C1 controls or bidi overrides, rewritten with
//!   `\uXXXX` escapes: the same JSON value, harmless to print.
//! - [`TerminalFilter`]: a recorded terminal session played back: cursor movement, erasing and
//!   colours pass (the session looks as it did); strings a terminal acts on (OSC, DCS, APC, PM,
//!   SOS), queries it would answer into the auditor's input, and anything unknown are escaped.

use std::borrow::Cow;
use std::fmt::Write;

/// Is `c` something a terminal acts on rather than shows (newline and tab aside)?
fn dangerous(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\r' => out.push_str("\\r"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x100 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

fn escape_where(s: &str, escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if escape(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Multi-line text: newlines and tabs kept, every other control escaped.
pub fn text(s: &str) -> Cow<'_, str> {
    escape_where(s, dangerous)
}

/// One line of a table: newlines and tabs escaped too.
pub fn cell(s: &str) -> Cow<'_, str> {
    escape_where(s, |c| dangerous(c) || c == '\n' || c == '\t')
}

/// The same JSON value, with C1 controls, DEL and bidi overrides as `\uXXXX` (serde_json
/// already escapes the C0 controls, and none of these can appear outside a string).
pub fn json_line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(dangerous) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if dangerous(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// CSI final bytes a playback may send: cursor moves, erase, insert/delete, scroll region,
/// SGR (colours), modes (`h`/`l`: the alternate screen, cursor visibility). Not `n`, `c`, `t`,
/// `x`, `q`, `p`: reports and window operations a terminal answers by typing into its input.
const CSI_PASS: &[u8] = b"@ABCDEFGHIJKLMPSTXZ`abdefghlmrsu";

/// Escapes a terminal session for playback, across pieces: a sequence split between two
/// pieces is judged whole.
#[derive(Debug, Default)]
pub struct TerminalFilter {
    /// An escape sequence begun and not yet ended.
    pending: String,
}

impl TerminalFilter {
    pub fn new() -> TerminalFilter {
        TerminalFilter::default()
    }

    /// Filter the next piece of output.
    pub fn push(&mut self, piece: &str) -> String {
        let mut out = String::with_capacity(piece.len());
        for c in piece.chars() {
            if self.pending.is_empty() {
                match c {
                    '\u{1b}' => self.pending.push(c),
                    // Newline, tab, carriage return, backspace, bell: what terminal output is made of.
                    '\n' | '\t' | '\r' | '\u{8}' | '\u{7}' => out.push(c),
                    c if dangerous(c) => push_escaped(&mut out, c),
                    c => out.push(c),
                }
                continue;
            }
            self.pending.push(c);
            if let Some(done) = self.judge() {
                out.push_str(&done);
                self.pending.clear();
            }
        }
        out
    }

    /// What is left at the end (an unfinished sequence), escaped.
    pub fn finish(&mut self) -> String {
        let rest = cell(&self.pending).into_owned();
        self.pending.clear();
        rest
    }

    /// `Some(output)` once the pending sequence is complete (passed or escaped), `None` while
    /// it may go on.
    fn judge(&self) -> Option<String> {
        let seq = self.pending.as_str();
        let bytes = seq.as_bytes();
        let escaped = || Some(cell(seq).into_owned());
        match bytes.get(1) {
            None => None,
            Some(b'[') => {
                let last = *bytes.last()?;
                if bytes.len() == 2 {
                    return None;
                }
                match last {
                    // Parameters and intermediates: keep reading (bounded).
                    0x20..=0x3f if bytes.len() < 64 => None,
                    0x40..=0x7e => {
                        let params = &bytes[2..bytes.len() - 1];
                        let plain = params
                            .iter()
                            .all(|b| b.is_ascii_digit() || *b == b';' || *b == b'?');
                        if plain && CSI_PASS.contains(&last) {
                            Some(seq.to_owned())
                        } else {
                            escaped()
                        }
                    }
                    _ => escaped(),
                }
            }
            // Save/restore cursor, keypad modes, index, reverse index, reset-to-next-line.
            Some(b'7' | b'8' | b'=' | b'>' | b'D' | b'E' | b'M') => Some(seq.to_owned()),
            // Character set designation: one more byte.
            Some(b'(' | b')') => match bytes.get(2) {
                None => None,
                Some(b'B' | b'0' | b'A') => Some(seq.to_owned()),
                Some(_) => escaped(),
            },
            // OSC, DCS, APC, PM, SOS and everything else: escaped as soon as seen (their
            // payload then prints as text, escaped where it holds controls).
            Some(_) => escaped(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn text_and_cells_escape_what_a_terminal_would_obey() {
        let hostile = "a\u{1b}[2J\u{1b}[Hb\u{1b}]0;pwned-title\u{7}c\rd\u{9b}e\u{202e}f";
        assert_eq!(
            text(hostile),
            "a\\x1b[2J\\x1b[Hb\\x1b]0;pwned-title\\x07c\\rd\\x9be\\u{202e}f"
        );
        assert_eq!(text("two\nlines\tok"), "two\nlines\tok");
        assert_eq!(cell("ali \u{1b}[31m ce \n X"), "ali \\x1b[31m ce \\n X");
        assert!(matches!(text("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_lines_stay_the_same_json() {
        let value = serde_json::json!({"command": "x\u{9b}31m\u{202e}y\u{7f}"});
        let line = serde_json::to_string(&value).unwrap();
        let safe = json_line(&line);
        assert!(!safe.chars().any(dangerous), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn playback_keeps_colours_and_movement_and_escapes_the_rest() {
        let mut f = TerminalFilter::new();
        let shown = f.push("\u{1b}[1;31mred\u{1b}[0m \u{1b}[2J\u{1b}[H\u{1b}[?1049h");
        assert_eq!(
            shown,
            "\u{1b}[1;31mred\u{1b}[0m \u{1b}[2J\u{1b}[H\u{1b}[?1049h"
        );
        // A title, a clipboard write, a status query, a DCS.
        for hostile in [
            "\u{1b}]0;pwned\u{7}",
            "\u{1b}]52;c;ZXZpbA==\u{7}",
            "\u{1b}[6n",
            "\u{1b}[21t",
            "\u{1b}P+q544e\u{1b}\\",
        ] {
            let shown = TerminalFilter::new().push(hostile);
            assert!(!shown.contains('\u{1b}'), "{hostile:?} -> {shown:?}");
        }
    }

    #[test]
    fn a_sequence_split_across_pieces_is_judged_whole() {
        let mut f = TerminalFilter::new();
        let mut shown = f.push("ok \u{1b}");
        shown += &f.push("]0;pw");
        shown += &f.push("ned\u{7} \u{1b}[3");
        shown += &f.push("2mgreen");
        shown += &f.finish();
        assert_eq!(shown, "ok \\x1b]0;pwned\u{7} \u{1b}[32mgreen");
        let mut f = TerminalFilter::new();
        assert_eq!(f.push("end\u{1b}["), "end");
        assert_eq!(f.finish(), "\\x1b[");
    }
}
