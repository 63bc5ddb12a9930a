//! A terminal session (`ssh TARGET` with a pty), where the gateway owns the line (issue 12.1):
//! the client types into the gateway's editor (`editor.rs`); a complete command (`script.rs`
//! decides, as for input without a terminal) is judged whole and only then sent whole to the
//! host's shell, which reads it with its own echo and editing off (`prompt.rs`).
//!
//! While a command runs, keys are kept as type-ahead for the next prompt: only Ctrl-C, Ctrl-\
//! and Ctrl-Z are passed on (the host's terminal turns them into signals; Ctrl-C also drops the
//! type-ahead, as a terminal flushes its input). So a program that reads the terminal (an
//! editor, a pager, a REPL, a password prompt, `read`) gets no input, unless the target names
//! it in `terminal_programs`: then everything typed while it runs goes to it as typed, and is
//! recorded (as hidden input at a password prompt). A line that runs a program known to read
//! the terminal, and not named, is refused with a message saying so, rather than left waiting.

use super::editor::{Editor, Event};
use super::script::{Piece, Script, TooLong};
use crate::command::shell::{base_name, simple_commands};

/// Type-ahead kept while a command runs.
const TYPEAHEAD: usize = 64 << 10;

/// Programs that read the terminal and are no use without keys, or that would read commands
/// the gateway does not see (a shell, a REPL). The check is a courtesy, not the boundary: a
/// program missing here gets no keys either.
const READS_TERMINAL: &[&str] = &[
    "vi",
    "vim",
    "nvim",
    "view",
    "vimdiff",
    "rvim",
    "ex",
    "nano",
    "pico",
    "emacs",
    "mg",
    "joe",
    "micro",
    "ed",
    "less",
    "more",
    "most",
    "pg",
    "man",
    "info",
    "top",
    "htop",
    "atop",
    "btop",
    "iotop",
    "iftop",
    "nmon",
    "watch",
    "tmux",
    "screen",
    "mc",
    "ranger",
    "nnn",
    "dialog",
    "whiptail",
    "python",
    "python2",
    "python3",
    "ipython",
    "node",
    "irb",
    "pry",
    "ghci",
    "lua",
    "R",
    "sqlite3",
    "psql",
    "mysql",
    "mariadb",
    "mongo",
    "mongosh",
    "redis-cli",
    "ftp",
    "telnet",
    "ssh",
    "su",
    "passwd",
    "vipw",
    "visudo",
    "sudoedit",
    "script",
    "expect",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The shell has not shown its first prompt yet.
    Starting,
    /// The gateway's editor has the line.
    Prompt,
    /// A command runs: keys are type-ahead, signals pass.
    Running,
    /// A named terminal program runs: keys pass as typed.
    Program,
}

/// What the session must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Judge this complete command (its lines joined by `\n`, no final newline) and, allowed,
    /// send it with a newline.
    Judge(String),
    /// Refuse this input without asking a policy: the text, and why.
    Refuse(String, &'static str),
    /// Ctrl-C while the host's shell reads a continuation: pass the Ctrl-C on.
    Interrupt,
}

pub struct Terminal {
    editor: Editor,
    state: State,
    typeahead: Vec<u8>,
    /// Lines of a command not yet complete (an open quote, a here-document).
    script: Script,
    /// The host's shell reads the rest of a compound command (`for ...; do` was sent).
    host_continues: bool,
    /// Continuation prompts the host will print while it reads a multi-line command the
    /// gateway sent (they are not the user's turn).
    skip_continues: usize,
    target: String,
    dir: String,
    /// The prompt the editor shows now.
    prompt: String,
    /// What the client was shown of lines submitted since the last `take_shown`: prompt,
    /// line, newline (for the recording; the host no longer echoes).
    shown: String,
}

impl Terminal {
    pub fn new(target: &str, cols: u32) -> Terminal {
        Terminal {
            editor: Editor::new(cols),
            state: State::Starting,
            typeahead: Vec::new(),
            script: Script::default(),
            host_continues: false,
            skip_continues: 0,
            target: target.chars().filter(|c| !c.is_control()).collect(),
            dir: String::new(),
            prompt: String::new(),
            shown: String::new(),
        }
    }

    pub fn resize(&mut self, cols: u32) {
        self.editor.resize(cols);
    }

    /// Whether keys go to a named terminal program.
    pub fn in_program(&self) -> bool {
        self.state == State::Program
    }

    /// Client input: what to pass to the host now (signals, or everything for a terminal
    /// program); the rest waits for the editor.
    pub fn input(&mut self, data: &[u8]) -> Vec<u8> {
        match self.state {
            State::Program => return data.to_vec(),
            State::Running => {
                let mut now = Vec::new();
                for &b in data {
                    match b {
                        0x03 => {
                            self.typeahead.clear();
                            now.push(b);
                        }
                        0x1c | 0x1a => now.push(b),
                        _ if self.typeahead.len() < TYPEAHEAD => self.typeahead.push(b),
                        _ => {}
                    }
                }
                return now;
            }
            State::Starting | State::Prompt => {}
        }
        let room = TYPEAHEAD.saturating_sub(self.typeahead.len());
        self.typeahead
            .extend_from_slice(&data[..data.len().min(room)]);
        Vec::new()
    }

    /// The host's shell showed a prompt: the editor takes the line.
    pub fn prompt(&mut self, dir: String, out: &mut Vec<u8>) {
        self.dir = dir;
        self.host_continues = false;
        self.skip_continues = 0;
        self.script = Script::default();
        self.state = State::Prompt;
        self.start(self.prompt_text(), out);
    }

    fn start(&mut self, prompt: String, out: &mut Vec<u8>) {
        self.editor.start(&prompt, out);
        self.prompt = prompt;
    }

    /// What the client was shown of the lines submitted since the last call.
    pub fn take_shown(&mut self) -> String {
        std::mem::take(&mut self.shown)
    }

    /// The host's shell reads a continuation line (PS2).
    pub fn continuation(&mut self, out: &mut Vec<u8>) {
        if self.skip_continues > 0 {
            self.skip_continues -= 1;
            return;
        }
        self.host_continues = true;
        self.state = State::Prompt;
        self.start("> ".into(), out);
    }

    fn prompt_text(&self) -> String {
        format!("{}:{}$ ", self.target, self.dir)
    }

    /// Edit type-ahead at the prompt until a step is due.
    pub fn step(&mut self, out: &mut Vec<u8>) -> Option<Step> {
        while self.state == State::Prompt && !self.typeahead.is_empty() {
            let (used, event) = self.editor.feed(&self.typeahead, out);
            self.typeahead.drain(..used);
            match &event {
                Some(Event::Line(line)) => {
                    self.shown += &format!("{}{line}\r\n", self.prompt);
                }
                Some(Event::Cancel) => self.shown += &format!("{}^C\r\n", self.prompt),
                _ => {}
            }
            match event {
                None => {}
                Some(Event::Cancel) => {
                    self.script = Script::default();
                    if self.host_continues {
                        self.state = State::Running;
                        return Some(Step::Interrupt);
                    }
                    self.start(self.prompt_text(), out);
                }
                // Ctrl-D at an empty prompt ends the shell, as `exit` would (and is judged as
                // one).
                Some(Event::Eof) => {
                    self.script = Script::default();
                    return Some(Step::Judge("exit".into()));
                }
                Some(Event::Line(line)) => {
                    let mut bytes = line.clone().into_bytes();
                    bytes.push(b'\n');
                    match self.script.feed(&bytes) {
                        Err(TooLong) => {
                            self.script = Script::default();
                            return Some(Step::Refuse(line, "warden: the command is too long"));
                        }
                        Ok(pieces) => match pieces.into_iter().next() {
                            None => self.start("> ".into(), out),
                            Some(Piece::Command(c)) => {
                                let text = String::from_utf8_lossy(&c);
                                let text = text.strip_suffix('\n').unwrap_or(&text);
                                return Some(Step::Judge(text.to_string()));
                            }
                            Some(Piece::Unreadable { bytes, why }) => {
                                let text = String::from_utf8_lossy(&bytes).into_owned();
                                return Some(Step::Refuse(text, why));
                            }
                        },
                    }
                }
            }
        }
        None
    }

    /// The judged command was sent: keys go to it when it runs a named terminal program.
    pub fn ran(&mut self, command: &str, program: bool) {
        self.state = if program {
            State::Program
        } else {
            State::Running
        };
        self.host_continues = false;
        self.skip_continues = command.matches('\n').count();
    }

    /// The command was refused: a fresh prompt (the host's shell still waits for the rest of
    /// a compound command, if it did).
    pub fn refused(&mut self, out: &mut Vec<u8>) {
        self.state = State::Prompt;
        let prompt = if self.host_continues {
            "> ".to_string()
        } else {
            self.prompt_text()
        };
        self.start(prompt, out);
    }
}

/// Whether `line` runs a terminal program that `named` lets read the terminal (`Ok(true)`),
/// or none (`Ok(false)`); `Err` says why it may not run: a known terminal program not named,
/// or a named one run under a wrapper or with variables (`env -u LESSSECURE less` would undo
/// what makes it safe to name).
pub fn terminal_program(line: &str, named: &[String]) -> Result<bool, String> {
    let mut program = false;
    for simple in simple_commands(line) {
        let first = &simple.words[0];
        let name = base_name(first);
        if named.iter().any(|n| n == name) {
            if simple.wrapped {
                return Err(format!(
                    "`{name}` is a terminal program here, and runs only as itself: not under \
                     env, sudo or another wrapper, nor with variables set"
                ));
            }
            program = true;
        } else if READS_TERMINAL.contains(&name)
            // An interpreter given a script or inline code does not read the terminal.
            && crate::command::shell::program_from_stdin(&simple.words) != Some(false)
        {
            return Err(format!(
                "`{name}` reads the terminal, and this target does not name it in \
                 terminal_programs"
            ));
        }
    }
    Ok(program)
}

/// What `stty` may be given in a terminal session: options that only show settings.
const STTY_SHOWS: &[&str] = &["-a", "--all", "-g", "--save", "size", "speed"];

/// Whether `line` could change how the host's terminal reads later lines: `stty` with a
/// setting (`stty intr a` makes every `a` of a later line a Ctrl-C that cuts it), or `stty`
/// shadowed by a function, alias or hash entry (the gateway's prompt resets the mode with it),
/// or the shell's own line editor turned on (`set -o emacs`, `set -o vi`), or a function named
/// by a path, or a trap set (it runs code at a time no one judged, such as after the reset).
/// Quotes and backslashes are read through.
/// Programs that set the mode through other means (a Python `termios` call) are the policy's
/// to hold, as any code is.
pub fn settings_changed(line: &str) -> bool {
    // Quotes and backslashes do not change a word's meaning here (`st""ty`, `'stty'`, `st\ty`).
    let line: String = line
        .replace("$'", "'")
        .replace("$\"", "\"")
        .chars()
        .filter(|c| !matches!(c, '\'' | '"' | '\\'))
        .collect();
    // Separators stay words of their own, so that stty's arguments end at them.
    let spaced: String = line
        .chars()
        .flat_map(|c| {
            if ";|&`".contains(c) {
                vec![' ', ';', ' ']
            } else {
                vec![c]
            }
        })
        .collect();
    let words: Vec<&str> = spaced.split_whitespace().collect();
    // `set -o emacs` / `set -o vi` (`shopt -so vi`) would turn the shell's own line editor on,
    // which reads keys in what the gateway sends.
    if words.windows(2).any(|w| {
        w[0].starts_with(['-', '+']) && w[0].contains('o') && ["emacs", "vi"].contains(&w[1])
    }) {
        return true;
    }
    // A trap runs code at a time no one judged: after the prompt's reset (`set -T; trap ...
    // RETURN`), at a window change or a finished job while the shell waits for a line.
    if words.iter().enumerate().any(|(i, w)| {
        *w == "trap"
            && words[i + 1..]
                .iter()
                .take_while(|a| **a != ";")
                .any(|a| !["-p", "-l"].contains(a))
    }) {
        return true;
    }
    // A function named by a path (`function /usr/bin/stty`, `/bin/stty() {`): the prompt
    // runs stty by its path, which bash looks up as a function first.
    let path_function = words.iter().enumerate().any(|(i, w)| {
        w.contains('/')
            && (w.contains("()")
                || words.get(i + 1).is_some_and(|n| n.starts_with("()"))
                || (i > 0 && words[i - 1] == "function"))
    });
    if path_function {
        return true;
    }
    // A builtin that can give the name `stty` another meaning, anywhere on the line.
    let defining = words.iter().any(|w| {
        [
            "function", "alias", "unalias", "unset", "hash", "enable", "declare", "typeset",
            "readonly", "local", "export",
        ]
        .contains(w)
    });
    words.iter().enumerate().any(|(i, raw)| {
        let w = raw.trim_matches(|c| c == '\'' || c == '"' || c == '(' || c == ')' || c == '{');
        let name = base_name(w);
        let Some(rest) = name.strip_prefix("stty") else {
            return false;
        };
        if !(rest.is_empty() || rest.starts_with(['=', '('])) {
            return false;
        }
        let defines = !rest.is_empty()
            || raw.contains("stty(")
            || words.get(i + 1).is_some_and(|next| next.starts_with('('))
            || defining;
        let sets = words[i + 1..]
            .iter()
            .take_while(|a| !a.starts_with([';', '>', '<', '(', ')', '{', '}']))
            .any(|a| !STTY_SHOWS.contains(a) && !a.starts_with("2"));
        defines || sets
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_wait_while_a_command_runs_and_signals_pass() {
        let mut t = Terminal::new("web-1", 80);
        let mut out = Vec::new();
        assert!(t.input(b"ls\r").is_empty());
        t.prompt("~".into(), &mut out);
        assert!(String::from_utf8_lossy(&out).contains("web-1:~$ "));
        assert_eq!(t.step(&mut out), Some(Step::Judge("ls".into())));
        t.ran("ls", false);
        // Typed while `ls` runs: kept; Ctrl-C passes and drops what was typed before it.
        assert_eq!(t.input(b"rm x\x03pwd\r"), b"\x03");
        assert_eq!(t.step(&mut out), None);
        t.prompt("~".into(), &mut out);
        assert_eq!(t.step(&mut out), Some(Step::Judge("pwd".into())));
    }

    #[test]
    fn a_command_is_judged_when_complete() {
        let mut t = Terminal::new("web-1", 80);
        let mut out = Vec::new();
        t.prompt("~".into(), &mut out);
        t.input(b"echo 'a\rb'\r");
        assert_eq!(t.step(&mut out), Some(Step::Judge("echo 'a\nb'".into())));
        t.ran("echo 'a\nb'", false);
        // The host's continuation prompt while it reads the second line is not the user's.
        out.clear();
        t.continuation(&mut out);
        assert!(out.is_empty());
        t.prompt("~".into(), &mut out);
        // A compound command the host continues: its continuation prompt is the user's, and
        // Ctrl-C there interrupts the host's shell.
        t.input(b"for i in 1; do\r");
        assert_eq!(t.step(&mut out), Some(Step::Judge("for i in 1; do".into())));
        t.ran("for i in 1; do", false);
        t.continuation(&mut out);
        t.input(b"\x03");
        assert_eq!(t.step(&mut out), Some(Step::Interrupt));
    }

    #[test]
    fn terminal_settings_are_the_gateways() {
        for line in [
            "stty intr a",
            "stty -isig; ls",
            "/bin/stty raw",
            "stty() { :; }",
            "function stty { :; }",
            "alias stty=true",
            "hash -p /tmp/x stty",
            "/usr/bin/stty() { :; }",
            "ls && stty sane",
            "set -o vi",
            "set +o emacs; ls",
            "st\"\"ty istrip",
            "'stty' iuclc",
            "st\\ty -isig",
            "$'stty' raw",
            "function /usr/local/bin/x { :; }",
            "shopt -so vi",
            "set -T; trap 'stty istrip' RETURN",
            "tr''ap 'x' WINCH",
            "/tmp/y() { :; }",
        ] {
            assert!(settings_changed(line), "{line}");
        }
        for line in [
            "find /tmp ( -name a -o -name b )",
            "stty -a",
            "stty size",
            "ls /etc/stty.conf",
            "echo sttyx",
            "stty -g > /dev/null",
            "stty -a | grep intr",
            "stty size; ls -l",
            "trap -p; trap",
        ] {
            assert!(!settings_changed(line), "{line}");
        }
    }

    #[test]
    fn programs_that_read_the_terminal_are_named_or_refused() {
        let named = vec!["top".to_string()];
        assert_eq!(terminal_program("ls -l | grep x", &named), Ok(false));
        assert_eq!(terminal_program("top -d 1", &named), Ok(true));
        assert!(terminal_program("sudo -n /usr/bin/top", &named).is_err());
        assert!(terminal_program("env -u LESSSECURE top", &named).is_err());
        assert!(matches!(terminal_program("cat f | less", &named), Err(e) if e.contains("`less`")));
        assert!(terminal_program("LANG=C timeout 5 vim x", &named).is_err());
        assert_eq!(terminal_program("echo vim", &named), Ok(false));
        assert_eq!(terminal_program("python3 -c 'print(1)'", &named), Ok(false));
        assert!(terminal_program("python3", &named).is_err());
    }
}
