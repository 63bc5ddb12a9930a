//! Shell input without a terminal (`ssh -T host`, `echo cmds | ssh host sh`): the host's shell
//! reads it as a script, and with no line discipline there is no way to abandon a line once its
//! bytes are sent. So the gateway owns the input: it is held until it forms a complete command,
//! which is judged whole and then sent whole, or dropped.
//!
//! A command is complete at a newline that is outside quotes (`'…'`, `"…"`, `$'…'`), not
//! escaped by a backslash (a continuation line belongs to the same command; the gateway
//! removes the backslash and newline, as the shell does, from what it judges and sends), and
//! after the
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

/// One piece of input, complete.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// A command (with its newline, and its here-document bodies): judge it, then send it.
    Command(Vec<u8>),
    /// A command the gateway cannot read as the shell will (a here-document whose delimiter
    /// is not a plain word): refuse it, send nothing.
    Unreadable { bytes: Vec<u8>, why: &'static str },
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Scan {
    quote: Quote,
    /// After a backslash (outside single quotes): what `word_start` and `last` were before
    /// it, and whether a newline after it is a continuation the shell removes (outside
    /// quotes and in double quotes) as if neither byte were there.
    escaped: Option<(bool, u8, bool)>,
    /// Where the continuations (backslash, newline) of the current command stand: the
    /// gateway removes them from what it judges and sends, so no reader of the command can
    /// take them differently from the shell.
    continuations: Vec<usize>,
    /// In a `#` comment.
    comment: bool,
    /// Where a word may start (a `#` there begins a comment).
    word_start: bool,
    /// The last byte read, continuations skipped (`$` before `'` opens `$'…'`).
    last: u8,
    /// Parentheses open in an arithmetic `((…))` / `$((…))`, where `<<` is a shift.
    arith: u32,
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

/// Why a here-document's delimiter cannot be read.
const ODD_DELIMITER: &str = "warden: a here-document whose delimiter is not a plain word \
                             cannot be checked as the shell will read it";

impl Script {
    /// Add client input; returns the complete pieces, in order, each with its newline. NUL
    /// bytes are dropped, as the shell drops them: what is judged is what it runs.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Piece>, TooLong> {
        self.buf.extend(data.iter().filter(|&&b| b != 0));
        let mut out = Vec::new();
        while let Some((end, odd)) = self.complete() {
            let bytes = self.take(end);
            out.push(match odd {
                None => Piece::Command(bytes),
                Some(why) => Piece::Unreadable { bytes, why },
            });
            self.scanned = 0;
            self.state = Scan::default();
        }
        if self.buf.len() > MAX_COMMAND {
            return Err(TooLong);
        }
        Ok(out)
    }

    /// At EOF: the unterminated rest, if any.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let rest = self.take(self.buf.len());
        self.scanned = 0;
        self.state = Scan::default();
        (!rest.is_empty()).then_some(rest)
    }

    /// The first `end` bytes of the input, without their continuations (in order, so one
    /// pass: a command of a million continuations costs a million steps, not their square).
    fn take(&mut self, end: usize) -> Vec<u8> {
        let cuts = std::mem::take(&mut self.state.continuations);
        let mut out = Vec::with_capacity(end);
        let mut from = 0;
        for &c in &cuts {
            out.extend_from_slice(&self.buf[from..c]);
            from = c + 2;
        }
        out.extend_from_slice(&self.buf[from.min(end)..end]);
        self.buf.drain(..end);
        out
    }

    /// Scan on from where the last call stopped: the end of the first complete piece, and
    /// why it cannot be read, if so.
    fn complete(&mut self) -> Option<(usize, Option<&'static str>)> {
        if self.scanned == 0 {
            self.state.word_start = true;
        }
        while self.scanned < self.buf.len() {
            let i = self.scanned;
            let b = self.buf[i];
            self.scanned += 1;
            if b == b'\n' {
                match self.newline(i) {
                    Line::Goes => {}
                    Line::Ends => return Some((i + 1, None)),
                    Line::Odd(why) => return Some((i + 1, Some(why))),
                }
            } else {
                self.byte(i, b);
            }
        }
        None
    }

    /// A newline at `i`: whether the command ends here.
    fn newline(&mut self, i: usize) -> Line {
        let s = &mut self.state;
        if let Some((word_start, last, removed)) = s.escaped.take() {
            // A continuation: the shell removes the backslash and the newline.
            s.word_start = word_start;
            s.last = last;
            if removed {
                s.continuations.push(i - 1);
            }
            return Line::Goes;
        }
        let line = &self.buf[s.line_start..i];
        s.line_start = i + 1;
        s.comment = false;
        s.word_start = true;
        s.last = b'\n';
        if let Some((word, strip)) = s.bodies.first() {
            // A line of a here-document body: it ends the body when it is the delimiter.
            let text = if *strip { trim_tabs(line) } else { line };
            if text == word.as_slice() {
                s.bodies.remove(0);
            }
            return if s.bodies.is_empty() {
                Line::Ends
            } else {
                Line::Goes
            };
        }
        if s.quote != Quote::None || s.arith > 0 {
            return Line::Goes;
        }
        // The here-documents this line opened: their bodies follow.
        let mut bodies = Vec::new();
        for at in std::mem::take(&mut s.opened) {
            match here_doc(&self.buf, at) {
                Some(Some(doc)) => bodies.push(doc),
                Some(None) => return Line::Odd(ODD_DELIMITER),
                None => {}
            }
        }
        s.bodies = bodies;
        if s.bodies.is_empty() {
            Line::Ends
        } else {
            Line::Goes
        }
    }

    /// One byte other than a newline at `i`.
    fn byte(&mut self, i: usize, b: u8) {
        let s = &mut self.state;
        if !s.bodies.is_empty() || s.comment {
            return;
        }
        let last = std::mem::replace(&mut s.last, b);
        if s.escaped.take().is_some() {
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
                    s.escaped = Some((false, last, s.quote == Quote::Double));
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
            b'\\' => s.escaped = Some((word_start, last, true)),
            b'\'' if last == b'$' => s.quote = Quote::Ansi,
            b'\'' => s.quote = Quote::Single,
            b'"' => s.quote = Quote::Double,
            b'#' if word_start => s.comment = true,
            b'(' if s.arith > 0 => s.arith += 1,
            b'(' if last == b'(' => s.arith = 2,
            b')' if s.arith > 0 => s.arith -= 1,
            b'<' if s.arith == 0 => s.opened.push(i),
            _ => {}
        }
    }
}

/// What a newline does to the command being read.
enum Line {
    Goes,
    Ends,
    Odd(&'static str),
}

/// A here-document operator whose second `<` is `buf[i]` (`<<WORD`, `<<-WORD`, `<< 'WORD'`,
/// not `<<<`), read once its line is complete: `Some(Some((delimiter, strip_tabs)))`;
/// `Some(None)` when the delimiter is not a plain word (an expansion, a continuation inside
/// it, nothing at all), which the gateway does not guess at; `None` when it is no operator.
fn here_doc(buf: &[u8], i: usize) -> Option<Option<(Vec<u8>, bool)>> {
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
            (None, b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>') => break,
            (_, b'$' | b'`' | b'\n') | (None, b'(' | b')') => return Some(None),
            // `<<\EOF` quotes the E; a backslash before a newline continues the line.
            (None, b'\\') => match buf.get(j + 1) {
                Some(b'\n') | None => return Some(None),
                Some(&next) => {
                    word.push(next);
                    j += 1;
                }
            },
            (None, b'\'' | b'"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (_, c) => word.push(c),
        }
        j += 1;
    }
    if quote.is_some() || word.is_empty() {
        return Some(None);
    }
    Some(Some((word, strip)))
}

fn trim_tabs(line: &[u8]) -> &[u8] {
    let n = line.iter().take_while(|&&b| b == b'\t').count();
    &line[n..]
}

/// A command line as the shell will read it (an exec request, which the host runs with
/// `sh -c`): its continuations (backslash, newline) removed and NUL bytes dropped, as the shell
/// does, by the same scanner as terminal-less input.
pub fn normalise(line: &[u8]) -> Vec<u8> {
    let mut s = Script::default();
    let Ok(pieces) = s.feed(line) else {
        return line.to_vec(); // longer than any SSH packet; left as it came
    };
    let mut out = Vec::with_capacity(line.len());
    for piece in pieces {
        match piece {
            Piece::Command(b) | Piece::Unreadable { bytes: b, .. } => out.extend(b),
        }
    }
    out.extend(s.finish().unwrap_or_default());
    out
}

/// Whether bash's history expansion could change `text` (an interactive shell expands `!!`,
/// `!$`, `!-2`, `!cmd` and a line starting `^old^new` before it runs anything, so the command
/// it runs is not the one judged). A `!` followed by a blank, `=`, `(`, a closing `"` or the
/// end of the text does not expand, nor `$!` or `${!name}`, nor one inside single quotes or
/// after a backslash; a
/// quote the scan cannot follow counts as expanding (the gateway refuses rather than guesses).
pub fn history_expansion(text: &str) -> bool {
    if text.lines().any(|l| l.trim_start().starts_with('^')) {
        return true;
    }
    let chars: Vec<char> = text.chars().collect();
    let (mut single, mut double, mut escaped) = (false, false, false);
    for (i, &c) in chars.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            // `$!` and `${!name}` are parameters, not history.
            '!' if !(single
                || i > 0 && chars[i - 1] == '$'
                || i > 1 && chars[i - 2] == '$' && chars[i - 1] == '{') =>
            {
                match chars.get(i + 1) {
                    None | Some(' ' | '\t' | '\n' | '\r' | '=' | '(') => {}
                    Some('"') if double => {}
                    Some(_) => return true,
                }
            }
            _ => {}
        }
    }
    false
}

/// Whether `text` may point the shell's own standard input elsewhere (`exec < file`, `exec
/// 0<&3`, `exec <<< 'cmd'`, `exec < <(...)`): a shell that reads its commands from stdin (a
/// terminal session, `ssh host bash`) would then run what it reads there, unjudged. Read on the
/// raw text, quotes included (`eval 'exec < f'` counts), so it errs towards refusing.
pub fn replaces_stdin(text: &str) -> bool {
    exec_word_redirects_stdin(text) || unknown_program_redirects_stdin(text)
}

/// A command whose program is only known at run time (`$e`, `"$(echo exec)"`), or one that
/// runs a builtin (`builtin`, `command`, `eval`), with stdin redirected: it may be `exec`
/// (`e=exec; $e 0<<<'cmd'`).
fn unknown_program_redirects_stdin(text: &str) -> bool {
    text.split([';', '|', '&', '\n', '(', ')', '{', '}'])
        .any(|command| {
            let program = command
                .split_whitespace()
                .find(|w| !w.split_once('=').is_some_and(|(n, _)| is_name(n)));
            let unknown = program.is_some_and(|p| {
                p.contains(['$', '`']) || ["builtin", "command", "eval"].contains(&p)
            });
            unknown && fd0_input(command.as_bytes())
        })
}

fn is_name(word: &str) -> bool {
    !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `cmd` has an input redirection of fd 0 (`<`, `0<`, `<<<`, `<&`, `<>`).
fn fd0_input(cmd: &[u8]) -> bool {
    cmd.iter().enumerate().any(|(j, &b)| {
        if b != b'<' {
            return false;
        }
        let before = if j == 0 { b' ' } else { cmd[j - 1] };
        let zero = before == b'0' && (j < 2 || !cmd[j - 2].is_ascii_alphanumeric());
        before.is_ascii_whitespace() || before == b'\'' || before == b'"' || zero
    })
}

/// `exec` written out, anywhere in the text (quotes included), with stdin redirected.
fn exec_word_redirects_stdin(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("exec") {
        let start = i + at;
        let end = start + 4;
        i = end;
        let word_before =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let word_after = bytes
            .get(end)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        if word_before || word_after {
            continue;
        }
        let rest = &text[end..];
        let command = rest.split([';', '|', '&', '\n']).next().unwrap_or("");
        // `<` for fd 0: nothing before it but a blank, a quote or `0` (and `0` itself
        // starting the word); `3<file` and `{fd}<file` are other descriptors.
        if fd0_input(command.as_bytes()) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointing_the_shells_stdin_elsewhere_is_seen() {
        for text in [
            "exec < /tmp/cmds",
            "exec 0</tmp/cmds",
            "exec <<< 'touch /etc/x'",
            "exec < <(cat /tmp/x)",
            "exec 0<&3",
            "eval 'exec </tmp/c'",
            "true; exec <>/dev/tcp/127.0.0.1/22",
            "e=exec; $e 0<<<'echo x'",
            "\"$(echo exec)\" < f",
            "builtin exec <f",
            "command exec 0<f",
        ] {
            assert!(replaces_stdin(text), "{text}");
        }
        for text in [
            "exec 3</tmp/cmds",
            "exec {fd}<f",
            "exec >/tmp/log 2>&1",
            "cat < /tmp/x",
            "executor < f",
            "exec sleep 1",
            "x=1 cat < f",
            "$EDITOR f",
        ] {
            assert!(!replaces_stdin(text), "{text}");
        }
    }

    #[test]
    fn history_expansion_is_recognised() {
        for text in [
            "echo !!",
            "!!:1*",
            "ls !$",
            "!-2",
            "echo \"!ls\"",
            "^a^b",
            " ^x",
            "a\n!v",
        ] {
            assert!(history_expansion(text), "{text}");
        }
        for text in [
            "[ ! -f x ]",
            "test a != b",
            "echo 'hi!x'",
            "echo hi\\!x",
            "echo \"hi!\"",
            "echo !",
            "a=b; echo ${a}",
            "kill $!; echo ${!x}",
        ] {
            assert!(!history_expansion(text), "{text}");
        }
    }

    /// The commands of `input` fed in one piece and byte by byte (they must agree), and the
    /// rest at EOF.
    fn commands(input: &str) -> (Vec<String>, Option<String>) {
        let text = |v: Vec<u8>| String::from_utf8_lossy(&v).into_owned();
        let piece = |p: Piece| match p {
            Piece::Command(v) => text(v),
            Piece::Unreadable { bytes, .. } => format!("REFUSED {}", text(bytes)),
        };
        let mut whole = Script::default();
        let got: Vec<String> = whole
            .feed(input.as_bytes())
            .unwrap_or_default()
            .into_iter()
            .map(piece)
            .collect();
        let mut bytewise = Script::default();
        let mut each = Vec::new();
        for b in input.as_bytes() {
            each.extend(
                bytewise
                    .feed(&[*b])
                    .unwrap_or_default()
                    .into_iter()
                    .map(piece),
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
        // A continuation is removed: `touch /etc/x` is judged and sent.
        assert_eq!(commands("touch /etc/\\\nx\n").0, ["touch /etc/x\n"]);
        assert_eq!(
            commands("echo 'a\ntouch /etc/x'\n").0,
            ["echo 'a\ntouch /etc/x'\n"]
        );
        assert_eq!(commands("echo \"a\\\"\nb\"\n").0, ["echo \"a\\\"\nb\"\n"]);
        assert_eq!(commands("echo \"a\\\nb\"\n").0, ["echo \"ab\"\n"]);
        assert_eq!(commands("echo 'a\\\nb'\n").0, ["echo 'a\\\nb'\n"]);
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
    fn what_the_attack_found_is_read_as_bash_reads_it() {
        let cases: &[(&str, &[&str])] = &[
            // A delimiter continued onto the next line, or not a plain word: refused.
            ("cat <<\\\nE\nid\n", &["REFUSED cat <<E\n", "id\n"]),
            (
                "cat <<$(echo E)\nid\n",
                &["REFUSED cat <<$(echo E)\n", "id\n"],
            ),
            ("cat <<\\EOF\n$(x)\nEOF\n", &["cat <<\\EOF\n$(x)\nEOF\n"]),
            // NUL bytes are dropped, as bash drops them.
            ("tou\0ch /etc/x\n", &["touch /etc/x\n"]),
            // `$` and `'` joined by a continuation open `$'…'`, where `\'` does not close.
            (
                "echo $\\\n'x\\'\n'; touch /etc/x #'\nid\n",
                &["echo $'x\\'\n'; touch /etc/x #'\n", "id\n"],
            ),
            // A continuation is no word boundary: `a\<nl>#'` is `a#'`, a quote.
            ("echo a\\\n#'\nb'\nid\n", &["echo a#'\nb'\n", "id\n"]),
            // `<<` in arithmetic is a shift.
            (
                "((x=1<<2))\ntouch /etc/x\n2\n",
                &["((x=1<<2))\n", "touch /etc/x\n", "2\n"],
            ),
            ("echo $((1<<2))\nid\n", &["echo $((1<<2))\n", "id\n"]),
        ];
        for (input, want) in cases {
            assert_eq!(commands(input).0, *want, "{input:?}");
        }
        // The `$'…'` continuation at EOF too.
        let ansi = "echo $\\\n'x\\'\n'; touch /etc/x #'";
        assert_eq!(
            commands(ansi).1.as_deref(),
            Some("echo $'x\\'\n'; touch /etc/x #'")
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
    fn an_exec_line_is_normalised_as_the_shell_reads_it() {
        let line = b"echo $\\\n'x\\'\n'; touch /etc/x #'";
        assert_eq!(normalise(line), b"echo $'x\\'\n'; touch /etc/x #'".to_vec());
        assert_eq!(normalise(b"tou\0ch /etc/x"), b"touch /etc/x".to_vec());
        assert_eq!(normalise(b"echo 'a\\\nb'"), b"echo 'a\\\nb'".to_vec());
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

    fn run(data: &[u8], cuts: &[usize]) -> Vec<(Vec<u8>, bool)> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut s = Script::default();
        let (mut out, mut from) = (Vec::new(), 0);
        for to in cuts.into_iter().chain([data.len()]) {
            let pieces = s.feed(&data[from..to]).unwrap_or_default();
            out.extend(pieces.into_iter().map(|p| match p {
                Piece::Command(b) => (b, true),
                Piece::Unreadable { bytes, .. } => (bytes, false),
            }));
            from = to;
        }
        out.extend(s.finish().map(|b| (b, true)));
        out
    }

    /// Whether `to` is `from` with some backslash-newline pairs taken out.
    fn by_removing_continuations(from: &[u8], to: &[u8]) -> bool {
        // can[k][j]: to[j..] can be made from from[k..].
        let mut can = vec![vec![false; to.len() + 1]; from.len() + 1];
        can[from.len()][to.len()] = true;
        for k in (0..from.len()).rev() {
            for j in (0..=to.len()).rev() {
                let pair = from.get(k..k + 2) == Some(&b"\\\n"[..]) && can[k + 2][j];
                let same = j < to.len() && from[k] == to[j] && can[k + 1][j + 1];
                can[k][j] = pair || same;
            }
        }
        can[0][0]
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
            // Nothing but NULs and continuations (backslash, newline) is taken out.
            let kept: Vec<u8> = data.iter().copied().filter(|&b| b != 0).collect();
            let joined: Vec<u8> = whole.iter().flat_map(|(b, _)| b.clone()).collect();
            prop_assert!(by_removing_continuations(&kept, &joined), "{:?} from {:?}", joined, kept);
            let every: Vec<usize> = (0..data.len()).collect();
            prop_assert_eq!(&whole, &run(&data, &every));
            prop_assert_eq!(&whole, &run(&data, &cuts));
        }
    }
}
