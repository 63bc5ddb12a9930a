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

/// Property tests of the line assembler: any input, cut anywhere, gives the same lines and
/// forwards every byte exactly once. `PROPTEST_CASES` sets the number of cases.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Editing keys, escapes, line ends and a two-byte character: what the editor reacts to.
    const KEYS: &[u8] = b"\r\n\x1b[O~20\x7f\x15\x17\x03 \xc3\xa9";

    /// Any bytes, or bytes drawn mostly from `KEYS` and letters. (Mapped from plain bytes: a
    /// union strategy per byte makes generation, not the editor, most of the test's time.)
    fn input() -> impl Strategy<Value = Vec<u8>> {
        let keyed = vec(any::<u8>(), 0..256).prop_map(|raw| {
            raw.into_iter()
                .map(|b| match b {
                    0..=127 => KEYS[usize::from(b) % KEYS.len()],
                    128..=191 => b'a' + (b - 128) % 26,
                    _ => b,
                })
                .collect()
        });
        prop_oneof![keyed, vec(any::<u8>(), 0..256)]
    }

    /// Feed `data` in chunks cut at `cuts`; the submitted lines and every byte sent on.
    fn run(data: &[u8], cuts: &[usize]) -> (Vec<Key>, Vec<u8>) {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut e = LineEditor::default();
        let (mut submits, mut sent, mut from) = (Vec::new(), Vec::new(), 0);
        for to in cuts.into_iter().chain([data.len()]) {
            for key in e.feed(&data[from..to]) {
                match key {
                    Key::Forward(b) => sent.extend_from_slice(&b),
                    Key::Submit { ref enter, .. } => {
                        sent.extend_from_slice(enter);
                        submits.push(key);
                    }
                }
            }
            from = to;
        }
        (submits, sent)
    }

    proptest! {
        #[test]
        fn splitting_changes_nothing(data in input(), cuts in vec(any::<usize>(), 0..8)) {
            let (whole, sent) = run(&data, &[]);
            prop_assert_eq!(&sent, &data);
            let (split, sent) = run(&data, &cuts);
            prop_assert_eq!(&split, &whole);
            prop_assert_eq!(&sent, &data);
            let every: Vec<usize> = (0..data.len()).collect();
            let (bytewise, sent) = run(&data, &every);
            prop_assert_eq!(bytewise, whole);
            prop_assert_eq!(sent, data);
        }
    }
}
