//! Line reconstruction for interactive sessions: every keystroke goes to the host at once (so
//! the host echoes and edits as usual), except Enter, which is held until the line typed so far
//! has been checked.
//!
//! What a relay can follow: printable text, backspace, Ctrl-U (kill line), Ctrl-W (kill word),
//! Ctrl-C (abandon the line), bracketed paste. What it cannot: history recall, tab completion,
//! cursor movement, reverse search and other readline editing, because their effect depends on
//! state only the host's shell has. A line that used any of them is marked `uncertain`; the
//! relay refuses it (fail closed) and asks the user to type the line out. Programs that read
//! lines themselves (an editor, a REPL, a password prompt) are seen as shell lines too.

/// What the relay should do with a piece of client input.
#[derive(Debug, PartialEq, Eq)]
pub enum Key {
    /// Send these bytes to the host now.
    Forward(Vec<u8>),
    /// Enter was pressed: check `line`; if it may run, send `enter` to the host.
    Submit {
        line: String,
        uncertain: bool,
        enter: Vec<u8>,
    },
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Esc {
    #[default]
    None,
    /// After ESC.
    Start,
    /// In a CSI sequence (ESC `[` params final).
    Csi,
    /// After ESC `O`: one more byte.
    Ss3,
}

/// The line being typed.
#[derive(Debug, Default)]
pub struct LineEditor {
    line: Vec<u8>,
    uncertain: bool,
    esc: Esc,
    csi: Vec<u8>,
    last_cr: bool,
}

impl LineEditor {
    #[cfg(test)]
    pub fn new() -> LineEditor {
        LineEditor::default()
    }

    /// Feed client input; returns what to forward and which lines to check, in order.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Key> {
        let mut keys = Vec::new();
        let mut pending = Vec::new();
        for &b in data {
            let was_cr = std::mem::take(&mut self.last_cr);
            if self.esc != Esc::None {
                pending.push(b);
                self.escape(b);
                continue;
            }
            match b {
                b'\r' | b'\n' if !(b == b'\n' && was_cr) => {
                    self.last_cr = b == b'\r';
                    if !pending.is_empty() {
                        keys.push(Key::Forward(std::mem::take(&mut pending)));
                    }
                    keys.push(Key::Submit {
                        line: String::from_utf8_lossy(&self.line).into_owned(),
                        uncertain: std::mem::take(&mut self.uncertain),
                        enter: vec![b],
                    });
                    self.line.clear();
                    continue;
                }
                b'\n' => {}
                0x1b => self.esc = Esc::Start,
                0x7f | 0x08 => self.backspace(),
                0x15 => {
                    self.line.clear();
                    self.uncertain = false;
                }
                0x17 => self.kill_word(),
                0x03 => {
                    self.line.clear();
                    self.uncertain = false;
                }
                0x04 | 0x0c | 0x07 => {}
                // Tab completion, Ctrl-A/B/E/F/K/N/P/R/T/Y and the rest: the host's line
                // editor does something the relay cannot see.
                0x00..=0x1f => self.uncertain = true,
                _ => self.line.push(b),
            }
            pending.push(b);
        }
        if !pending.is_empty() {
            keys.push(Key::Forward(pending));
        }
        keys
    }

    fn escape(&mut self, b: u8) {
        match self.esc {
            Esc::Start => match b {
                b'[' => {
                    self.esc = Esc::Csi;
                    self.csi.clear();
                }
                b'O' => self.esc = Esc::Ss3,
                _ => {
                    // Alt-key: readline word motions and the like.
                    self.uncertain = true;
                    self.esc = Esc::None;
                }
            },
            Esc::Csi => {
                if (0x40..=0x7e).contains(&b) {
                    self.esc = Esc::None;
                    // Bracketed paste markers carry no editing; everything else (arrows,
                    // Home/End, Delete) moves or edits where the relay cannot follow.
                    let paste = b == b'~' && (self.csi == b"200" || self.csi == b"201");
                    if !paste {
                        self.uncertain = true;
                    }
                } else if self.csi.len() < 32 {
                    self.csi.push(b);
                }
            }
            Esc::Ss3 => {
                self.uncertain = true;
                self.esc = Esc::None;
            }
            Esc::None => {}
        }
    }

    fn backspace(&mut self) {
        // Remove one UTF-8 character: continuation bytes, then the lead byte.
        while let Some(&b) = self.line.last() {
            self.line.pop();
            if b & 0xc0 != 0x80 {
                break;
            }
        }
    }

    fn kill_word(&mut self) {
        while self.line.last() == Some(&b' ') {
            self.line.pop();
        }
        while self.line.last().is_some_and(|&b| b != b' ') {
            self.line.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(line: &str, uncertain: bool, enter: &[u8]) -> Key {
        Key::Submit {
            line: line.to_string(),
            uncertain,
            enter: enter.to_vec(),
        }
    }

    #[test]
    fn typing_and_enter() {
        let mut e = LineEditor::new();
        assert_eq!(e.feed(b"ls -l"), vec![Key::Forward(b"ls -l".to_vec())]);
        assert_eq!(e.feed(b"\r"), vec![submit("ls -l", false, b"\r")]);
        assert_eq!(
            e.feed(b"echo a\nid\n"),
            vec![
                Key::Forward(b"echo a".to_vec()),
                submit("echo a", false, b"\n"),
                Key::Forward(b"id".to_vec()),
                submit("id", false, b"\n"),
            ]
        );
    }

    #[test]
    fn crlf_is_one_enter() {
        let mut e = LineEditor::new();
        let keys = e.feed(b"id\r\nwho\r\n");
        let submits: Vec<_> = keys
            .iter()
            .filter_map(|k| match k {
                Key::Submit { line, .. } => Some(line.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(submits, ["id", "who"]);
    }

    #[test]
    fn editing_keys_that_can_be_followed() {
        let mut e = LineEditor::new();
        e.feed(b"rm -rf /tmp/x\x7f\x7f\x7f\x7f\x7f\x7fsafe");
        assert_eq!(e.feed(b"\r"), vec![submit("rm -rf safe", false, b"\r")]);
        e.feed(b"reboot\x15echo hi");
        assert_eq!(e.feed(b"\r"), vec![submit("echo hi", false, b"\r")]);
        e.feed(b"cat /etc/passwd \x17ls");
        assert_eq!(e.feed(b"\r"), vec![submit("cat ls", false, b"\r")]);
        e.feed("é\x7fe".as_bytes());
        assert_eq!(e.feed(b"\r"), vec![submit("e", false, b"\r")]);
        e.feed(b"half\x03");
        assert_eq!(e.feed(b"\r"), vec![submit("", false, b"\r")]);
    }

    #[test]
    fn editing_keys_that_cannot_be_followed_make_the_line_uncertain() {
        for keys in [
            &b"\x1b[A"[..],
            b"rm\t",
            b"\x1b[D\x1b[D",
            b"\x12reb",
            b"\x1bb",
            b"\x1bOA",
        ] {
            let mut e = LineEditor::new();
            e.feed(keys);
            let last = e.feed(b"\r").pop();
            assert!(
                matches!(
                    last,
                    Some(Key::Submit {
                        uncertain: true,
                        ..
                    })
                ),
                "{keys:?}: {last:?}"
            );
            // The next line starts certain again.
            assert_eq!(e.feed(b"id\r").pop(), Some(submit("id", false, b"\r")));
        }
    }

    #[test]
    fn bracketed_paste_is_followed() {
        let mut e = LineEditor::new();
        e.feed(b"\x1b[200~echo pasted\x1b[201~");
        assert_eq!(e.feed(b"\r"), vec![submit("echo pasted", false, b"\r")]);
    }
}
