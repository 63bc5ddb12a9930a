//! Shell command lines as policies see them ([`shell`]), and what the gateway reads from a
//! line's plain words: the simple commands it runs ([`simple_commands`]) and what its standard
//! input is to it ([`stdin_kind`]). These are readings of the words, not a shell: policies that
//! must be exact parse the line themselves (ssh-guard does).

use crate::policy::{Shell, StdinKind};

/// A shell command line, split with POSIX shell-words rules (an unbalanced quote leaves
/// `argv` empty: the policy still sees the raw line).
pub fn shell(line: &str, interactive: bool) -> Shell {
    Shell {
        line: line.to_string(),
        argv: shell_words::split(line).unwrap_or_default(),
        interactive,
        stdin_kind: stdin_kind(line),
    }
}

/// Shells: what they read is shell code.
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "ash", "zsh", "ksh", "ksh93", "mksh", "pdksh", "yash", "posh", "fish",
    "csh", "tcsh", "rbash", "busybox",
];

/// Other words that, anywhere in an exec line, may turn its stdin into code: stdin named as a
/// file (`source /dev/stdin`, `bash /proc/self/fd/0`), and `system` (awk, perl or python
/// one-liners that run what they read).
const STDIN_AS_CODE: &[&str] = &[
    "/dev/stdin",
    "/dev/fd/0",
    "/proc/self/fd/0",
    "system",
    // `script` runs the login's shell on a new terminal and types its stdin into it.
    "script",
];

/// Whether the stdin of the exec command line `line` may reach a shell as code, so that it is
/// judged command by command: the line names a shell anywhere, not only as its program
/// (`sh`, `bash -s`, `cat | sh`, `bash <(cat)`, `env -S sh`, `script -qc bash`, `find -exec
/// sh`, `sudo -u app bash`), or one of [`STDIN_AS_CODE`]. Deliberately broad: data piped to
/// such a line (`bash -c 'cat > f' < file`) is judged as commands too, and refused where it is
/// not one; a transfer goes through a command that names no shell (`cat > f`, `tar x`, sftp).
/// (Other interpreters reading code from stdin, `python3 -`, `perl`, are [`StdinKind::Code`].)
pub fn reads_commands_from_stdin(line: &str) -> bool {
    line.split(|c: char| !(c.is_alphanumeric() || "_./+-".contains(c)))
        .any(|word| {
            let name = base_name(word);
            SHELLS.contains(&name) || STDIN_AS_CODE.contains(&word)
        })
        || awk_runs_commands(line)
}

/// Whether an awk program in `line` pipes to or from a command (`print | $0`, `cmd | getline`,
/// `|&`): awk hands that command to `sh -c`, so what it reads may become shell commands.
fn awk_runs_commands(line: &str) -> bool {
    simple_commands(line).iter().any(|simple| {
        AWKS.contains(&base_name(&simple.words[0]))
            && simple.words[1..].iter().any(|w| w.contains('|'))
    }) || {
        // The line is cut at `|` before words are read: an awk program holding one is seen
        // in the raw text.
        let awk = line
            .split(|c: char| c.is_whitespace() || c == ';')
            .any(|w| AWKS.contains(&base_name(w)));
        awk && line
            .split('\'')
            .skip(1)
            .step_by(2)
            .any(|quoted| quoted.contains('|'))
    }
}

/// A word's last path component: the program `/usr/bin/stty` runs is `stty`.
pub fn base_name(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// Commands that run another command: the program after them is the one that matters. With
/// each, its options that take a value as the next word, and how many plain words come before
/// the command (`timeout 5 cmd`, `taskset 0x3 cmd`).
const RUNS_ANOTHER: &[(&str, &[&str], usize)] = &[
    (
        "sudo",
        &["-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-R"],
        0,
    ),
    ("doas", &["-u", "-C"], 0),
    ("env", &["-u", "-C", "--unset", "--chdir"], 0),
    ("nice", &["-n", "--adjustment"], 0),
    ("ionice", &["-c", "-n", "-p", "--class", "--classdata"], 0),
    ("nohup", &[], 0),
    ("time", &["-f", "-o", "--format", "--output"], 0),
    ("exec", &["-a"], 0),
    ("command", &[], 0),
    ("stdbuf", &["-i", "-o", "-e"], 0),
    ("timeout", &["-s", "-k", "--signal", "--kill-after"], 1),
    ("chrt", &[], 1),
    ("taskset", &[], 1),
    (
        "xargs",
        &["-I", "-n", "-P", "-d", "-E", "-L", "-s", "-a"],
        0,
    ),
    ("setsid", &[], 0),
    ("unbuffer", &[], 0),
];

/// One simple command of a line, as plain words tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simple {
    /// Its words from the program on.
    pub words: Vec<String>,
    /// Variable assignments or a command that runs another came first (`env -u X prog`,
    /// `LANG=C prog`, `sudo prog`).
    pub wrapped: bool,
}

/// Each simple command of `line`, from its program on (variable assignments and commands that
/// run another, with their options, left out), as far as plain words tell: the line is cut at
/// `|`, `;`, `&`, parentheses, braces, backquotes and newlines.
pub fn simple_commands(line: &str) -> Vec<Simple> {
    let mut found = Vec::new();
    for part in line.split(['|', ';', '&', '(', ')', '\n', '`', '{', '}']) {
        let words = shell_words::split(part)
            .unwrap_or_else(|_| part.split_whitespace().map(str::to_string).collect());
        // The wrapper whose options are being read, and words still to skip.
        let mut wrapper: Option<&(&str, &[&str], usize)> = None;
        let mut skip = 0;
        let start = words.iter().position(|word| {
            if skip > 0 {
                skip -= 1;
                return false;
            }
            let name = base_name(word);
            let assignment = word
                .split_once('=')
                .is_some_and(|(name, _)| !name.is_empty() && !name.contains(['-', ' ']));
            if assignment || word.starts_with('$') {
                return false;
            }
            if word.starts_with('-') {
                if wrapper.is_some_and(|w| w.1.contains(&word.as_str())) {
                    skip = 1;
                }
                return false;
            }
            if let Some(w) = RUNS_ANOTHER.iter().find(|w| w.0 == name) {
                wrapper = Some(w);
                skip = w.2;
                return false;
            }
            !word.chars().all(|c| c.is_ascii_digit())
        });
        if let Some(start) = start {
            found.push(Simple {
                words: words[start..].to_vec(),
                wrapped: start > 0,
            });
        }
    }
    found
}

/// Interpreters of other languages, with the options that give them their program inline (so
/// that stdin is data). Without one, and without a script operand (or with `-`), the program
/// comes from stdin.
const INTERPRETERS: &[(&str, &[&str])] = &[
    ("python", &["-c", "-m"]),
    ("python2", &["-c", "-m"]),
    ("python3", &["-c", "-m"]),
    ("pypy3", &["-c", "-m"]),
    ("perl", &["-e", "-E"]),
    ("ruby", &["-e"]),
    ("irb", &[]),
    ("node", &["-e", "-p", "--eval", "--print"]),
    ("nodejs", &["-e", "-p", "--eval", "--print"]),
    ("deno", &["eval"]),
    ("php", &["-r"]),
    ("lua", &["-e"]),
    ("luajit", &["-e"]),
    ("Rscript", &["-e"]),
    ("R", &["-e"]),
    ("tclsh", &[]),
    ("wish", &[]),
    ("guile", &["-c"]),
    ("sbcl", &["--eval"]),
    ("jshell", &[]),
    ("gdb", &["-ex", "--batch", "-batch"]),
    ("ed", &[]),
    ("ex", &[]),
    ("dc", &["-e"]),
    ("sqlite3", &[]),
    ("expect", &["-c"]),
];

/// vim in ex mode (`vim -es`, `vi -e`) reads its commands from stdin.
fn vim_ex_mode(words: &[String]) -> bool {
    let name = base_name(&words[0]);
    ["vim", "vi", "nvim", "view", "vimdiff"].contains(&name)
        && words[1..]
            .iter()
            .any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains(['e', 'E']))
}

/// awk and its kin: the program is inline unless `-f` names a file.
const AWKS: &[&str] = &["awk", "gawk", "mawk", "nawk", "busybox"];

/// Whether `-f FILE` / `-fFILE` / `--file=FILE` among `args` names stdin (`sed -f -`, `awk -f
/// /dev/stdin`): the program is then read from stdin.
fn reads_program_file_from_stdin(args: &[String]) -> bool {
    args.iter().enumerate().any(|(i, a)| {
        let file = if a == "-f" || a == "--file" {
            args.get(i + 1).map(String::as_str)
        } else {
            a.strip_prefix("--file=").or_else(|| a.strip_prefix("-f"))
        };
        file.is_some_and(|f| STDIN_NAMES.contains(&f))
    })
}

/// Operands that name stdin as the program.
const STDIN_NAMES: &[&str] = &["-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"];

/// What `line` does with its standard input, as far as its words tell: another language's
/// program first (the stricter answer: `ruby /dev/stdin` is code, though the gateway also
/// judges that stdin as shell commands), then shell commands, else data.
pub fn stdin_kind(line: &str) -> StdinKind {
    let code = simple_commands(line).iter().any(|simple| {
        program_from_stdin(&simple.words) == Some(true) || vim_ex_mode(&simple.words)
    });
    if code {
        StdinKind::Code
    } else if reads_commands_from_stdin(line) {
        StdinKind::Commands
    } else {
        StdinKind::Data
    }
}

/// For a simple command (`words` from its program on) whose program is an interpreter of
/// another language: whether it reads its program from stdin (no script, no inline program,
/// or `-`). `None` for other programs.
pub fn program_from_stdin(words: &[String]) -> Option<bool> {
    {
        let name = base_name(&words[0]);
        if AWKS.contains(&name) || ["sed", "make", "gmake"].contains(&name) {
            return Some(reads_program_file_from_stdin(&words[1..]));
        }

        let version = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        let (_, inline) = INTERPRETERS
            .iter()
            .find(|(n, _)| *n == name || (n.starts_with("python") && *n == version))?;
        let args = &words[1..];
        if args.iter().any(|a| {
            inline
                .iter()
                .any(|o| a == o || (o.len() == 2 && a.starts_with(o)))
        }) {
            return Some(false);
        }
        Some(
            match args.iter().find(|a| !a.starts_with('-') || *a == "-") {
                None => true,
                Some(operand) => STDIN_NAMES.contains(&operand.as_str()),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_line_that_names_a_shell_has_its_stdin_judged() {
        for line in [
            "sh",
            "/bin/bash --norc -i",
            "env LC_ALL=C sh -",
            "sudo -u app bash",
            "cat | sh",
            "tee /dev/null|bash",
            "bash <(cat)",
            "/usr/bin/env -S 'bash -s'",
            "script -qc bash /dev/null",
            "find /tmp -maxdepth 0 -exec sh \\;",
            "xargs -0 sh -c",
            "source /dev/stdin",
            ". /proc/self/fd/0",
            "awk '{system($0)}'",
            "busybox sh",
            "bash -c 'exec bash'",
        ] {
            assert!(reads_commands_from_stdin(line), "{line}");
        }
        for line in [
            "cat > f",
            "tar xf - -C /tmp",
            "shellcheck x",
            "git-receive-pack 'repo.git'",
            "rsync --server -e.LsfxC . /tmp/x",
            "python3",
        ] {
            assert!(!reads_commands_from_stdin(line), "{line}");
        }
    }

    #[test]
    fn interpreters_reading_their_program_from_stdin_are_code() {
        for line in [
            "python3",
            "python3 -",
            "python3.11 -u",
            "echo 'print(1)' | python3",
            "perl",
            "node -",
            "ruby /dev/stdin",
            "sudo -u app python3",
            "sqlite3",
            "sed -f - /etc/hosts",
            "awk -f /dev/stdin x",
            "sed -f/proc/self/fd/0 x",
            "make -s -f -",
            "vim -es",
        ] {
            assert_eq!(stdin_kind(line), StdinKind::Code, "{line}");
        }
        for line in [
            "python3 -c 'print(1)'",
            "python3 app.py",
            "python3 -m http.server",
            "perl -e 'print 1'",
            "perl -ne 'print' f",
            "cat f | grep x",
            "python3 --version x",
        ] {
            assert_eq!(stdin_kind(line), StdinKind::Data, "{line}");
        }
        assert_eq!(stdin_kind("cat | sh"), StdinKind::Commands);
        assert_eq!(stdin_kind("awk '{printf \"\" | $0}'"), StdinKind::Commands);
        assert_eq!(stdin_kind("awk '{print $1}' f | sort"), StdinKind::Data);
        assert_eq!(stdin_kind("sed -n 1p f"), StdinKind::Data);
        assert_eq!(stdin_kind("script -q /dev/null"), StdinKind::Commands);
        assert_eq!(stdin_kind("make -C src"), StdinKind::Data);
    }
}
