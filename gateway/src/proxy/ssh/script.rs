//! Shell input without a terminal (`ssh -T host`, `echo cmds | ssh host sh`): the host's shell
//! reads it as a script, and with no line discipline there is no way to abandon a line once its
//! bytes are sent. So the gateway owns the input: it is held until it forms a complete command,
//! which is judged whole and then sent whole, or dropped.
//!
//! A command is complete at a newline that is outside quotes (`'…'`, `"…"`, `$'…'`), not
//! escaped by a backslash (a continuation line belongs to the same command), and after the
//! bodies of the here-documents it opened (`cat <<EOF` … `EOF`): the shell reads all of that
//! before it runs any of it. A `#` comment is read to its end, so a quote inside it opens
//! nothing. At EOF what is left is a command too (shells run an unterminated last line).
//!
//! Compound commands that span lines (`if …; then` / `fi`, a function body) are judged line by
//! line: each line is judged as written, so a command inside one is judged on its own.

/// The most input held for one command: a client cannot make the gateway hold more.
pub const MAX_COMMAND: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct Script {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned, and the scanner's state there.
    scanned: usize,
    state: Scan,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Scan {
    quote: Quote,
    /// After a backslash (outside single quotes).
    escaped: bool,
    /// In a `#` comment.
    comment: bool,
    /// Where a word may start (a `#` there begins a comment).
    word_start: bool,
    /// Where here-document operators (`<<`) stand on the current command's lines (read when
    /// the line is complete), and the delimiters whose bodies are being read, first first:
    /// `(word, strip_tabs)`.
    opened: Vec<usize>,
    bodies: Vec<(Vec<u8>, bool)>,
    /// The start of the current line in `buf`.
    line_start: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Quote {
    #[default]
    None,
    Single,
    Double,
    /// `$'…'`: backslash escapes inside.
    Ansi,
}

/// Input that cannot be held: longer than [`MAX_COMMAND`] without forming a command.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLong;

impl Script {
    /// Add client input; returns the complete commands, in order, each with its newline.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, TooLong> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(end) = self.complete() {
            out.push(self.buf.drain(..end).collect());
            self.scanned = 0;
            self.state = Scan {
                word_start: true,
                ..Scan::default()
            };
        }
        if self.buf.len() > MAX_COMMAND {
            return Err(TooLong);
        }
        Ok(out)
    }

    /// At EOF: the unterminated rest, if any.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        self.scanned = 0;
        self.state = Scan::default();
        (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf))
    }

    /// Scan on from where the last call stopped; the end of the first complete command.
    fn complete(&mut self) -> Option<usize> {
        if self.scanned == 0 {
            self.state.word_start = true;
        }
        while self.scanned < self.buf.len() {
            let i = self.scanned;
            let b = self.buf[i];
            self.scanned += 1;
            if b == b'\n' && self.newline(i) {
                return Some(i + 1);
            }
            if b != b'\n' {
                self.byte(i, b);
            }
        }
        None
    }

    /// A newline at `i`: whether the command ends here.
    fn newline(&mut self, i: usize) -> bool {
        let s = &mut self.state;
        let line = &self.buf[s.line_start..i];
        s.line_start = i + 1;
        s.comment = false;
        s.word_start = true;
        if let Some((word, strip)) = s.bodies.first() {
            // A line of a here-document body: it ends the body when it is the delimiter.
            let text = if *strip { trim_tabs(line) } else { line };
            if text == word.as_slice() {
                s.bodies.remove(0);
            }
            return s.bodies.is_empty();
        }
        if std::mem::take(&mut s.escaped) {
            return false; // a continuation line
        }
        if s.quote != Quote::None {
            return false;
        }
        // The here-documents this line opened: their bodies follow.
        let buf = &self.buf;
        s.bodies = std::mem::take(&mut s.opened)
            .into_iter()
            .filter_map(|at| here_doc(buf, at))
            .collect();
        s.bodies.is_empty()
    }

    /// One byte other than a newline at `i`.
    fn byte(&mut self, i: usize, b: u8) {
        let s = &mut self.state;
        if !s.bodies.is_empty() || s.comment {
            return;
        }
        if std::mem::take(&mut s.escaped) {
            s.word_start = false;
            return;
        }
        match s.quote {
            Quote::Single => {
                if b == b'\'' {
                    s.quote = Quote::None;
                }
                return;
            }
            Quote::Double | Quote::Ansi => {
                let close = if s.quote == Quote::Double {
                    b'"'
                } else {
                    b'\''
                };
                if b == b'\\' {
                    s.escaped = true;
                } else if b == close {
                    s.quote = Quote::None;
                }
                return;
            }
            Quote::None => {}
        }
        let word_start = std::mem::replace(
            &mut s.word_start,
            matches!(b, b' ' | b'\t' | b';' | b'&' | b'|' | b'(' | b')'),
        );
        match b {
            b'\\' => s.escaped = true,
            b'\'' => {
                let ansi = i > 0 && self.buf[i - 1] == b'$';
                s.quote = if ansi { Quote::Ansi } else { Quote::Single };
            }
            b'"' => s.quote = Quote::Double,
            b'#' if word_start => s.comment = true,
            b'<' => s.opened.push(i),
            _ => {}
        }
    }
}

/// A here-document operator whose second `<` is `buf[i]` (`<<WORD`, `<<-WORD`, `<< 'WORD'`,
/// not `<<<`): its delimiter, unquoted, and whether body lines have leading tabs stripped.
/// Read once the line is complete, so the whole word is there.
fn here_doc(buf: &[u8], i: usize) -> Option<(Vec<u8>, bool)> {
    // The second `<` of exactly two.
    if i == 0 || buf[i - 1] != b'<' || (i >= 2 && buf[i - 2] == b'<') {
        return None;
    }
    if buf.get(i + 1) == Some(&b'<') {
        return None;
    }
    let mut j = i + 1;
    let strip = buf.get(j) == Some(&b'-');
    if strip {
        j += 1;
    }
    while matches!(buf.get(j), Some(b' ' | b'\t')) {
        j += 1;
    }
    let mut word = Vec::new();
    let mut quote = None;
    while let Some(&c) = buf.get(j) {
        match (quote, c) {
            (None, b'\'' | b'"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, b'\\') => {}
            (None, b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')') => {
                break;
            }
            (_, c) => word.push(c),
        }
        j += 1;
    }
    (!word.is_empty()).then_some((word, strip))
}

fn trim_tabs(line: &[u8]) -> &[u8] {
    let n = line.iter().take_while(|&&b| b == b'\t').count();
    &line[n..]
}

/// Shells: run as an exec command without `-c` or a script file, they read their commands
/// from stdin, which is then judged like a terminal-less shell session's input.
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "ash", "zsh", "ksh", "ksh93", "mksh", "pdksh", "yash", "posh", "fish",
    "csh", "tcsh", "rbash", "busybox",
];

/// Programs that run the program named after their own options (`env sh`, `sudo -u x bash`),
/// and the options among theirs that take a value.
const WRAPPERS: &[(&str, &[&str])] = &[
    ("exec", &["-a"]),
    ("command", &[]),
    ("builtin", &[]),
    ("env", &["-u", "-C", "-S"]),
    ("nice", &["-n"]),
    ("nohup", &[]),
    ("setsid", &[]),
    ("stdbuf", &["-i", "-o", "-e"]),
    ("timeout", &["-s", "-k"]),
    (
        "sudo",
        &["-u", "-g", "-C", "-D", "-h", "-p", "-R", "-T", "-U"],
    ),
    ("doas", &["-u", "-C"]),
    ("time", &["-f", "-o"]),
    ("ionice", &["-c", "-n", "-p"]),
    ("chrt", &[]),
    ("taskset", &[]),
];

/// Whether the exec command line `line` runs a shell that reads its commands from stdin:
/// `sh`, `bash -s`, `bash -i`, `sudo -u app bash`, `env LC_ALL=C sh -`. A shell given `-c` or a
/// script file reads stdin as data, not code. (Other interpreters reading code from stdin,
/// `python3 -`, `perl`, are the policy's to refuse; see docs/ssh.md.)
pub fn reads_commands_from_stdin(line: &str) -> bool {
    let Ok(argv) = shell_words::split(line) else {
        return false;
    };
    let mut args = argv.iter().map(String::as_str).peekable();
    // Past wrappers, their options and, for `env`, the assignments; `timeout` takes a duration
    // and `nice`/`chrt`/`taskset` may take a number first.
    let program = loop {
        let Some(word) = args.next() else {
            return false;
        };
        let name = word.rsplit('/').next().unwrap_or(word);
        let Some((_, valued)) = WRAPPERS.iter().find(|(w, _)| *w == name) else {
            break name;
        };
        while let Some(&next) = args.peek() {
            let numeric = next.chars().next().is_some_and(|c| c.is_ascii_digit());
            if next == "--" {
                args.next();
                break;
            } else if next.starts_with('-') {
                args.next();
                if valued.contains(&next) {
                    args.next();
                }
            } else if next.contains('=') || numeric {
                args.next();
            } else {
                break;
            }
        }
    };
    if !SHELLS.contains(&program) {
        return false;
    }
    let mut stdin = false;
    while let Some(arg) = args.next() {
        if ["-o", "+o", "-O", "+O", "--rcfile", "--init-file"].contains(&arg) {
            args.next();
            continue;
        }
        if arg == "-" || arg == "--" {
            return true;
        }
        if let Some(flags) = arg.strip_prefix('-').filter(|f| !f.starts_with('-')) {
            if flags.contains('c') {
                return false;
            }
            stdin |= flags.contains('s') || flags.contains('i');
        } else if arg.starts_with('+') || arg.starts_with("--") {
            // `+o option`, `--norc`: options.
        } else if !stdin && program != "busybox" {
            return false; // a script file
        } else if program == "busybox" && !SHELLS.contains(&arg) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commands of `input` fed in one piece and byte by byte (they must agree), and the
    /// rest at EOF.
    fn commands(input: &str) -> (Vec<String>, Option<String>) {
        let text = |v: Vec<u8>| String::from_utf8_lossy(&v).into_owned();
        let mut whole = Script::default();
        let got: Vec<String> = whole
            .feed(input.as_bytes())
            .unwrap_or_default()
            .into_iter()
            .map(text)
            .collect();
        let mut bytewise = Script::default();
        let mut each = Vec::new();
        for b in input.as_bytes() {
            each.extend(
                bytewise
                    .feed(&[*b])
                    .unwrap_or_default()
                    .into_iter()
                    .map(text),
            );
        }
        assert_eq!(got, each, "cut differently: {input:?}");
        let rest = whole.finish().map(text);
        assert_eq!(rest, bytewise.finish().map(text));
        (got, rest)
    }

    #[test]
    fn a_command_ends_at_a_newline_outside_quotes_and_continuations() {
        assert_eq!(
            commands("id\necho a; ls\n"),
            (vec!["id\n".into(), "echo a; ls\n".into()], None)
        );
        // Continuation lines and quotes spanning lines are one command.
        assert_eq!(commands("touch /etc/\\\nx\n").0, ["touch /etc/\\\nx\n"]);
        assert_eq!(
            commands("echo 'a\ntouch /etc/x'\n").0,
            ["echo 'a\ntouch /etc/x'\n"]
        );
        assert_eq!(commands("echo \"a\\\"\nb\"\n").0, ["echo \"a\\\"\nb\"\n"]);
        assert_eq!(commands("echo $'it\\'s\nx'\n").0, ["echo $'it\\'s\nx'\n"]);
        // A quote in a comment opens nothing; a `#` inside a word is no comment.
        assert_eq!(commands("# don't\nid\n").0, ["# don't\n", "id\n"]);
        assert_eq!(commands("echo a#'b\nc'\n").0, ["echo a#'b\nc'\n"]);
        // The unterminated last line is a command at EOF.
        assert_eq!(
            commands("id\ntouch /etc/x"),
            (vec!["id\n".into()], Some("touch /etc/x".into()))
        );
    }

    #[test]
    fn a_here_document_body_belongs_to_its_command() {
        let input = "bash <<EOF\ntouch /etc/x\nEOF\nid\n";
        assert_eq!(
            commands(input).0,
            ["bash <<EOF\ntouch /etc/x\nEOF\n", "id\n"]
        );
        let input = "cat <<-'END' > f; cat <<B\n\tdon't\n\tEND\nx\nB\nid\n";
        assert_eq!(
            commands(input).0,
            ["cat <<-'END' > f; cat <<B\n\tdon't\n\tEND\nx\nB\n", "id\n"]
        );
        // `<<<` is a here-string, not a here-document.
        assert_eq!(commands("cat <<<EOF\nid\n").0, ["cat <<<EOF\n", "id\n"]);
        // Never closed: held to EOF, then judged whole.
        assert_eq!(
            commands("sh <<X\nrm -rf /\n"),
            (vec![], Some("sh <<X\nrm -rf /\n".into()))
        );
    }

    #[test]
    fn shells_reading_stdin_are_told_apart_from_shells_given_code() {
        for line in [
            "sh",
            "bash",
            "/bin/bash --norc -i",
            "bash -s",
            "bash -s arg1",
            "sh -",
            "env LC_ALL=C sh",
            "sudo -u app bash",
            "exec /usr/bin/zsh",
            "nice -n 5 dash",
            "timeout 60 sh",
            "busybox sh",
            "bash -o posix",
        ] {
            assert!(reads_commands_from_stdin(line), "{line}");
        }
        for line in [
            "sh -c 'id'",
            "bash -ec true",
            "bash script.sh",
            "cat",
            "python3",
            "env",
            "busybox ls",
            "bash -c",
            "shellcheck x",
        ] {
            assert!(!reads_commands_from_stdin(line), "{line}");
        }
    }

    #[test]
    fn input_that_never_forms_a_command_is_bounded() {
        let mut s = Script::default();
        assert!(s.feed(b"echo '").is_ok());
        assert_eq!(s.feed(&vec![b'a'; MAX_COMMAND]), Err(TooLong));
    }
}

/// Property tests: shell input cut anywhere gives the same commands, and nothing is lost or
/// reordered. `PROPTEST_CASES` sets the number of cases.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn run(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut s = Script::default();
        let (mut out, mut from) = (Vec::new(), 0);
        for to in cuts.into_iter().chain([data.len()]) {
            out.extend(s.feed(&data[from..to]).unwrap_or_default());
            from = to;
        }
        out.extend(s.finish());
        out
    }

    /// Text made of what the scanner cares about.
    fn input() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"\n".to_vec()),
            Just(b"'".to_vec()),
            Just(b"\"".to_vec()),
            Just(b"\\".to_vec()),
            Just(b"$'".to_vec()),
            Just(b" #".to_vec()),
            Just(b"<<E".to_vec()),
            Just(b"<<-E".to_vec()),
            Just(b"\tE\n".to_vec()),
            Just(b"E\n".to_vec()),
            Just(b"<<<".to_vec()),
            Just(b"echo a; ".to_vec()),
            vec(any::<u8>(), 0..4),
        ];
        vec(piece, 0..24).prop_map(|p| p.concat())
    }

    proptest! {
        #[test]
        fn cutting_changes_nothing_and_loses_nothing(data in input(), cuts in vec(any::<usize>(), 0..8)) {
            let whole = run(&data, &[]);
            prop_assert_eq!(whole.concat(), data.clone());
            let every: Vec<usize> = (0..data.len()).collect();
            prop_assert_eq!(&whole, &run(&data, &every));
            prop_assert_eq!(&whole, &run(&data, &cuts));
        }
    }
}
