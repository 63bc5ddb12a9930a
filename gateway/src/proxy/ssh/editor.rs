//! The gateway's own line editor for terminal sessions (issue 12.1): the client edits a line
//! here, and only the finished line is judged and sent to the host, so no keystroke reaches
//! the host's shell before the policy has seen the whole line it belongs to.
//!
//! Keys (emacs-style, as readline's defaults): printable text and UTF-8, Left/Right (Ctrl-B /
//! Ctrl-F), Ctrl-Left/Right and Alt-B/Alt-F (a word), Home/End (Ctrl-A / Ctrl-E), Backspace,
//! Delete (Ctrl-D on a non-empty line), Ctrl-U / Ctrl-K (kill to the start / end), Ctrl-W and
//! Alt-Backspace (kill a word back), Alt-D (kill a word forward), Ctrl-Y (yank the last kill),
//! Up/Down (Ctrl-P / Ctrl-N: this session's history), Ctrl-L (clear the screen), Ctrl-C
//! (abandon the line), Ctrl-D on an empty line (end the session), bracketed paste (a pasted
//! newline submits the line so far, as it would in a shell). Not offered, because they need
//! the host's state: Tab completion and reverse search (Ctrl-R) ring the bell.
//!
//! No line-editing crate fits here: rustyline, reedline and termwiz's editor all own a local
//! terminal device, while this editor reads bytes from an SSH channel and writes its echo back
//! to one. The drawing is the multi-line scheme of linenoise: move to the prompt's first row,
//! clear below, draw prompt and text, place the cursor.

use std::collections::VecDeque;
use unicode_width::UnicodeWidthChar;

/// Lines of history kept per session.
const HISTORY: usize = 500;
/// Characters one line may hold (a pasted blob beyond it is cut, with the bell).
pub const MAX_LINE: usize = 64 << 10;

/// What a key did that the session must act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Enter: the line, as typed (no newline).
    Line(String),
    /// Ctrl-C: the line is abandoned.
    Cancel,
    /// Ctrl-D on an empty line: the user is done.
    Eof,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Esc {
    #[default]
    None,
    /// After ESC.
    Start,
    /// In a CSI sequence (ESC `[` parameters final).
    Csi,
    /// After ESC `O`: one more byte.
    Ss3,
    /// In a string a terminal sends as an answer (OSC, DCS, APC, PM: ESC `]`, `P`, `_`, `^`
    /// up to BEL or ESC `\`): dropped whole, so an answer to a query a host program printed is
    /// never typed into the line.
    Str,
    /// ESC inside such a string (ESC `\` ends it).
    StrEnd,
}

/// The line being edited, and how it is drawn.
#[derive(Debug)]
pub struct Editor {
    buf: Vec<char>,
    pos: usize,
    prompt: String,
    prompt_width: usize,
    cols: usize,
    /// The cursor's row, counted from the prompt's first row, as last drawn.
    cursor_row: usize,
    history: VecDeque<String>,
    /// Which history entry is shown (Up/Down), and the line being typed before.
    browsing: Option<usize>,
    draft: Vec<char>,
    killed: Vec<char>,
    esc: Esc,
    params: Vec<u8>,
    utf8: Vec<u8>,
    paste: bool,
    last_cr: bool,
    /// The line changed since it was drawn: drawn once per batch of input, not per key.
    dirty: bool,
}

impl Editor {
    /// An editor for a terminal `cols` wide (0, unknown, counts as 80).
    pub fn new(cols: u32) -> Editor {
        Editor {
            buf: Vec::new(),
            pos: 0,
            prompt: String::new(),
            prompt_width: 0,
            cols: columns(cols),
            cursor_row: 0,
            history: VecDeque::new(),
            browsing: None,
            draft: Vec::new(),
            killed: Vec::new(),
            esc: Esc::None,
            params: Vec::new(),
            utf8: Vec::new(),
            paste: false,
            last_cr: false,
            dirty: false,
        }
    }

    /// The client's terminal is `cols` wide now.
    pub fn resize(&mut self, cols: u32) {
        self.cols = columns(cols);
    }

    /// Start a line after `prompt` (text without control characters): draws the prompt and
    /// asks the terminal to bracket pastes.
    pub fn start(&mut self, prompt: &str, out: &mut Vec<u8>) {
        self.prompt = prompt.to_string();
        self.prompt_width = width(prompt.chars());
        self.buf.clear();
        self.pos = 0;
        self.browsing = None;
        self.cursor_row = 0;
        out.extend_from_slice(b"\x1b[?2004h");
        self.refresh(out);
    }

    /// Feed client input. Stops at the first event, returning how many bytes it used; the
    /// rest belongs after the event (type-ahead).
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> (usize, Option<Event>) {
        for (i, &b) in data.iter().enumerate() {
            if let Some(event) = self.byte(b, out) {
                return (i + 1, Some(event));
            }
        }
        if self.dirty {
            self.refresh(out);
        }
        (data.len(), None)
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) -> Option<Event> {
        let was_cr = std::mem::take(&mut self.last_cr);
        if self.esc != Esc::None {
            return self.escape(b);
        }
        if !self.utf8.is_empty() || b >= 0x80 {
            self.utf8.push(b);
            match std::str::from_utf8(&self.utf8) {
                Ok(s) => {
                    let c = s.chars().next().unwrap_or('\u{fffd}');
                    self.utf8.clear();
                    self.insert(&[c], out);
                }
                // Incomplete: wait for the rest.
                Err(e) if e.error_len().is_none() && self.utf8.len() < 4 => {}
                Err(_) => {
                    self.utf8.clear();
                    out.push(0x07);
                }
            }
            return None;
        }
        if self.paste {
            return match b {
                b'\n' if was_cr => None,
                b'\r' | b'\n' => {
                    self.last_cr = b == b'\r';
                    Some(self.submit(out))
                }
                b'\t' => {
                    self.insert(&['\t'], out);
                    None
                }
                0x1b => {
                    self.esc = Esc::Start;
                    None
                }
                // Other control bytes in a paste are dropped: they are no part of a command.
                0x00..=0x1f | 0x7f => None,
                _ => {
                    self.insert(&[b as char], out);
                    None
                }
            };
        }
        match b {
            b'\n' if was_cr => None,
            b'\r' | b'\n' => {
                self.last_cr = b == b'\r';
                Some(self.submit(out))
            }
            0x01 => self.move_to(0),
            0x02 => self.move_to(self.pos.saturating_sub(1)),
            0x03 => {
                self.end_line(out);
                out.extend_from_slice(b"^C\r\n\x1b[?2004l");
                self.buf.clear();
                self.pos = 0;
                Some(Event::Cancel)
            }
            0x04 if self.buf.is_empty() => {
                self.end_line(out);
                out.extend_from_slice(b"\r\n\x1b[?2004l");
                Some(Event::Eof)
            }
            0x04 => self.delete(self.pos, self.pos + 1, false),
            0x05 => self.move_to(self.buf.len()),
            0x06 => self.move_to((self.pos + 1).min(self.buf.len())),
            0x08 | 0x7f => self.delete(self.pos.saturating_sub(1), self.pos, false),
            0x0b => self.delete(self.pos, self.buf.len(), true),
            0x0c => {
                out.extend_from_slice(b"\x1b[H\x1b[2J");
                self.cursor_row = 0;
                self.refresh(out);
                None
            }
            0x0e => self.history_step(false),
            0x10 => self.history_step(true),
            0x15 => self.delete(0, self.pos, true),
            0x17 => self.delete(self.word_back(), self.pos, true),
            0x19 => {
                let killed = self.killed.clone();
                self.insert(&killed, out);
                None
            }
            0x1b => {
                self.esc = Esc::Start;
                None
            }
            // Tab completion, reverse search and the rest need the host's state.
            0x00..=0x1f => {
                out.push(0x07);
                None
            }
            _ => {
                self.insert(&[b as char], out);
                None
            }
        }
    }

    fn escape(&mut self, b: u8) -> Option<Event> {
        match self.esc {
            Esc::Start => {
                self.esc = Esc::None;
                match b {
                    b'[' => {
                        self.esc = Esc::Csi;
                        self.params.clear();
                    }
                    b'O' => self.esc = Esc::Ss3,
                    b']' | b'P' | b'_' | b'^' => self.esc = Esc::Str,
                    b'b' | b'B' => return self.move_to(self.word_back()),
                    b'f' | b'F' => return self.move_to(self.word_forward()),
                    b'd' | b'D' => return self.delete(self.pos, self.word_forward(), true),
                    0x7f | 0x08 => return self.delete(self.word_back(), self.pos, true),
                    // ESC ESC: the first was the Escape key alone.
                    0x1b => self.esc = Esc::Start,
                    _ => {}
                }
                None
            }
            Esc::Ss3 => {
                self.esc = Esc::None;
                self.key(b, b"")
            }
            Esc::Csi => {
                if (0x40..=0x7e).contains(&b) {
                    self.esc = Esc::None;
                    let params = std::mem::take(&mut self.params);
                    self.key(b, &params)
                } else if self.params.len() < 16 {
                    self.params.push(b);
                    None
                } else {
                    // Not a key any terminal sends: dropped.
                    self.esc = Esc::None;
                    None
                }
            }
            Esc::Str => {
                match b {
                    0x07 => self.esc = Esc::None,
                    0x1b => self.esc = Esc::StrEnd,
                    _ => {}
                }
                None
            }
            Esc::StrEnd => {
                self.esc = if b == b'\\' { Esc::None } else { Esc::Str };
                None
            }
            Esc::None => None,
        }
    }

    /// A cursor or function key: CSI / SS3 `final` with `params`.
    fn key(&mut self, last: u8, params: &[u8]) -> Option<Event> {
        let ctrl = params.ends_with(b";5");
        match (last, params) {
            (b'~', b"200") => self.paste = true,
            (b'~', b"201") => self.paste = false,
            (b'~', b"1" | b"7") | (b'H', _) => return self.move_to(0),
            (b'~', b"4" | b"8") | (b'F', _) => return self.move_to(self.buf.len()),
            (b'~', b"3") => return self.delete(self.pos, self.pos + 1, false),
            (b'A', _) => return self.history_step(true),
            (b'B', _) => return self.history_step(false),
            (b'C', _) if ctrl => return self.move_to(self.word_forward()),
            (b'D', _) if ctrl => return self.move_to(self.word_back()),
            (b'C', _) => return self.move_to((self.pos + 1).min(self.buf.len())),
            (b'D', _) => return self.move_to(self.pos.saturating_sub(1)),
            _ => {}
        }
        None
    }

    fn insert(&mut self, chars: &[char], out: &mut Vec<u8>) {
        let room = MAX_LINE.saturating_sub(self.buf.len());
        if room < chars.len() {
            out.push(0x07);
        }
        let chars = &chars[..chars.len().min(room)];
        self.buf.splice(self.pos..self.pos, chars.iter().copied());
        self.pos += chars.len();
        self.dirty = true;
    }

    fn delete(&mut self, from: usize, to: usize, kill: bool) -> Option<Event> {
        let to = to.min(self.buf.len());
        if from < to {
            let gone: Vec<char> = self.buf.drain(from..to).collect();
            if kill {
                self.killed = gone;
            }
            self.pos = from;
            self.dirty = true;
        }
        None
    }

    fn move_to(&mut self, pos: usize) -> Option<Event> {
        if pos != self.pos {
            self.pos = pos;
            self.dirty = true;
        }
        None
    }

    fn word_back(&self) -> usize {
        let mut i = self.pos;
        while i > 0 && !is_word(self.buf[i - 1]) {
            i -= 1;
        }
        while i > 0 && is_word(self.buf[i - 1]) {
            i -= 1;
        }
        i
    }

    fn word_forward(&self) -> usize {
        let mut i = self.pos;
        while i < self.buf.len() && !is_word(self.buf[i]) {
            i += 1;
        }
        while i < self.buf.len() && is_word(self.buf[i]) {
            i += 1;
        }
        i
    }

    fn history_step(&mut self, back: bool) -> Option<Event> {
        let len = self.history.len();
        let next = match (self.browsing, back) {
            (None, true) if len > 0 => Some(len - 1),
            (Some(i), true) => Some(i.saturating_sub(1)),
            (Some(i), false) if i + 1 < len => Some(i + 1),
            (Some(_), false) => None,
            _ => return None,
        };
        if self.browsing.is_none() {
            self.draft = self.buf.clone();
        }
        self.browsing = next;
        self.buf = match next {
            Some(i) => self.history[i].chars().collect(),
            None => std::mem::take(&mut self.draft),
        };
        self.pos = self.buf.len();
        self.dirty = true;
        None
    }

    fn submit(&mut self, out: &mut Vec<u8>) -> Event {
        self.end_line(out);
        out.extend_from_slice(b"\r\n\x1b[?2004l");
        let line: String = self.buf.iter().collect();
        if !line.trim().is_empty() && self.history.back() != Some(&line) {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(line.clone());
        }
        self.buf.clear();
        self.pos = 0;
        self.browsing = None;
        self.paste = false;
        Event::Line(line)
    }

    /// Put the cursor after the line's last character (before a newline is written).
    fn end_line(&mut self, out: &mut Vec<u8>) {
        if self.pos != self.buf.len() {
            self.pos = self.buf.len();
            self.dirty = true;
        }
        if self.dirty {
            self.refresh(out);
        }
    }

    /// Redraw prompt and line, and put the cursor where it belongs.
    fn refresh(&mut self, out: &mut Vec<u8>) {
        let cols = self.cols;
        if self.cursor_row > 0 {
            out.extend_from_slice(format!("\x1b[{}A", self.cursor_row).as_bytes());
        }
        out.extend_from_slice(b"\r\x1b[J");
        out.extend_from_slice(self.prompt.as_bytes());
        let mut text = String::with_capacity(self.buf.len());
        // A tab is drawn as one space: its width would depend on the terminal's tab stops.
        text.extend(self.buf.iter().map(|&c| if c == '\t' { ' ' } else { c }));
        out.extend_from_slice(text.as_bytes());
        let end = self.prompt_width + width(self.buf.iter().copied());
        // At the right margin the terminal waits to wrap: move to the next row ourselves.
        if end > 0 && end.is_multiple_of(cols) {
            out.extend_from_slice(b"\r\n");
        }
        let at = self.prompt_width + width(self.buf[..self.pos].iter().copied());
        let (end_row, row, col) = (end / cols, at / cols, at % cols);
        if end_row > row {
            out.extend_from_slice(format!("\x1b[{}A", end_row - row).as_bytes());
        }
        out.push(b'\r');
        if col > 0 {
            out.extend_from_slice(format!("\x1b[{col}C").as_bytes());
        }
        self.cursor_row = row;
        self.dirty = false;
    }
}

/// A terminal width as the client gave it; a client without a terminal says 0.
fn columns(cols: u32) -> usize {
    if cols == 0 { 80 } else { cols as usize }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Columns `chars` take on a terminal (a tab counts one: it is drawn as a space).
fn width(chars: impl Iterator<Item = char>) -> usize {
    chars.map(|c| c.width().unwrap_or(1)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feed everything, collecting events (the editor is restarted after each, as the session
    /// does at its next prompt).
    fn run(data: &[u8]) -> Vec<Event> {
        run_parts(&[data])
    }

    /// `run` with the input arriving in these packets.
    fn run_parts(parts: &[&[u8]]) -> Vec<Event> {
        let mut e = Editor::new(80);
        let mut out = Vec::new();
        e.start("$ ", &mut out);
        let mut events = Vec::new();
        for part in parts {
            let mut rest = *part;
            while !rest.is_empty() {
                let (used, event) = e.feed(rest, &mut out);
                rest = &rest[used..];
                if let Some(ev) = event {
                    events.push(ev);
                    e.start("$ ", &mut out);
                }
            }
        }
        events
    }

    fn line(s: &str) -> Event {
        Event::Line(s.to_string())
    }

    #[test]
    fn typing_and_enter() {
        assert_eq!(run(b"ls -l\r"), vec![line("ls -l")]);
        assert_eq!(run(b"a\r\nb\n"), vec![line("a"), line("b")]);
        assert_eq!(run("écho ✓\r".as_bytes()), vec![line("écho ✓")]);
    }

    #[test]
    fn editing_keys() {
        // Backspace, Ctrl-U, Ctrl-W, Ctrl-K after moving left, Ctrl-A insertion, Ctrl-Y.
        assert_eq!(run(b"lx\x7fs\r"), vec![line("ls")]);
        assert_eq!(run(b"rm -rf /\x15ls\r"), vec![line("ls")]);
        assert_eq!(run(b"ls /etc\x17tmp\r"), vec![line("ls /tmp")]);
        assert_eq!(run(b"ls /etc\x1b[D\x1b[D\x0b\r"), vec![line("ls /e")]);
        assert_eq!(run(b"/tmp\x01ls \r"), vec![line("ls /tmp")]);
        assert_eq!(run(b"echo a\x17\x19\x19\r"), vec![line("echo aa")]);
        // Alt-B, Alt-D, Home/End, Delete, Ctrl-Left.
        assert_eq!(
            run(b"cat one two\x1bb\x1bd\x1b[F x\r"),
            vec![line("cat one  x")]
        );
        assert_eq!(run(b"xls\x1b[H\x1b[3~\r"), vec![line("ls")]);
        assert_eq!(run(b"ab cd\x1b[1;5Dx\r"), vec![line("ab xcd")]);
        // Ctrl-C abandons; Ctrl-D on an empty line ends; on a non-empty one deletes.
        assert_eq!(run(b"rm x\x03ls\r"), vec![Event::Cancel, line("ls")]);
        assert_eq!(run(b"lsx\x02\x04\r\x04"), vec![line("ls"), Event::Eof]);
        // Tab and Ctrl-R only ring the bell.
        assert_eq!(run(b"l\ts\x12\r"), vec![line("ls")]);
        // A terminal's answer to a query (a colour, a title, a cursor position) types nothing.
        assert_eq!(
            run(b"l\x1b]11;rgb:0000/0000/0000\x07s\x1bP1$r0m\x1b\\\x1b[12;5R\r"),
            vec![line("ls")]
        );
    }

    #[test]
    fn history_recalls_this_sessions_lines() {
        assert_eq!(
            run(b"one\rtwo\r\x1b[A\x1b[A\r\x10\x10\x10\x0e\r"),
            vec![line("one"), line("two"), line("one"), line("two")]
        );
        // Down past the newest entry gives back the line being typed.
        assert_eq!(
            run(b"one\rdraft\x1b[A\x1b[B!\r"),
            vec![line("one"), line("draft!")]
        );
    }

    #[test]
    fn pasted_text_is_text() {
        // Control keys inside a paste are not editing keys; a pasted newline submits.
        assert_eq!(
            run(b"\x1b[200~echo a\x15b\r\nls\x1b[201~\r"),
            vec![line("echo ab"), line("ls")]
        );
        assert_eq!(run(b"\x1b[200~a\tb\x1b[201~\r"), vec![line("a\tb")]);
    }

    #[test]
    fn long_lines_are_drawn_on_several_rows() {
        let mut e = Editor::new(10);
        let mut out = Vec::new();
        e.start("$ ", &mut out);
        e.feed(b"0123456789abcdef", &mut out);
        // 18 columns on a 10-column terminal: the cursor is on the second row.
        assert_eq!(e.cursor_row, 1);
        out.clear();
        e.feed(b"\x01", &mut out);
        // Back to the prompt's row: one row up, then to column 2.
        assert!(out.starts_with(b"\x1b[1A\r\x1b[J$ 0123"), "{out:?}");
        assert_eq!(e.cursor_row, 0);
        assert!(out.ends_with(b"\r\x1b[2C"), "{out:?}");
    }

    fn input() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(b"abc /;'\"\\-".to_vec()).prop_map(|b| vec![b]),
                prop::sample::select(vec![
                    b"\r".to_vec(),
                    b"\x7f".to_vec(),
                    b"\x15".to_vec(),
                    b"\x17".to_vec(),
                    b"\x01".to_vec(),
                    b"\x0b".to_vec(),
                    b"\x1b[D".to_vec(),
                    b"\x1b[A".to_vec(),
                    b"\x1bb".to_vec(),
                    b"\x1b[200~".to_vec(),
                    b"\x1b[201~".to_vec(),
                    "é".as_bytes().to_vec(),
                ]),
            ],
            0..60,
        )
        .prop_map(|v| v.concat())
    }

    proptest! {
        /// However the input is split into packets, the same lines come out.
        #[test]
        fn splitting_changes_nothing(data in input(), cut in any::<prop::sample::Index>()) {
            let whole = run(&data);
            let at = cut.index(data.len() + 1);
            let events = run_parts(&[&data[..at], &data[at..]]);
            prop_assert_eq!(events, whole);
        }
    }
}
