//! Allowlist mode (`"mode": "allowlist"`): a vetted set of read-only programs, each with its
//! arguments checked, runs without approval; every other program, and every write to a file,
//! is held for approval (the deny rules still apply first: a destructive command is denied,
//! not held). The list is what an operator looks at a host with: files (`ls`, `cat`, `head`,
//! `tail`, `grep`, `find` without actions), processes and resources (`ps`, `df`, `du`, `free`,
//! `uptime`), services and logs (`systemctl status`, `journalctl`), the network's state (`ss`,
//! `ip addr`), and text tools that write nothing but standard output. Programs that can run
//! other programs, write files or reach the network are not on it, however they are called
//! (`awk`, `sed`, `less`, `vi`, interpreters, `curl`), unless a form that cannot is named below.
//!
//! A program runs another only through the wrappers [`WRAPPERS`] lists (the command they run
//! is checked in turn) or a shell given its code (`sh -c '...'`, checked line by line); a
//! shell or interpreter reading code from a file or standard input is held.

use crate::expand::Arg;
use crate::opts::{Spec, parse};
use crate::rules::SHELLS;

/// Programs that only read and print, with any arguments.
const READERS: &[&str] = &[
    // Files and text.
    "ls",
    "dir",
    "vdir",
    "cat",
    "tac",
    "head",
    "tail",
    "wc",
    "grep",
    "egrep",
    "fgrep",
    "rgrep",
    "zgrep",
    "zcat",
    "bzcat",
    "xzcat",
    "zstdcat",
    "cut",
    "tr",
    "nl",
    "od",
    "hexdump",
    "strings",
    "stat",
    "du",
    "df",
    "cmp",
    "diff",
    "comm",
    "column",
    "fold",
    "fmt",
    "expand",
    "unexpand",
    "paste",
    "join",
    "rev",
    "tree",
    "basename",
    "dirname",
    "realpath",
    "readlink",
    "pwd",
    "md5sum",
    "sha1sum",
    "sha224sum",
    "sha256sum",
    "sha384sum",
    "sha512sum",
    "b2sum",
    "cksum",
    "base64",
    "base32",
    "jq",
    "seq",
    "echo",
    "printf",
    "true",
    "false",
    "test",
    "[",
    ":",
    "sleep",
    "which",
    "whereis",
    "type",
    "getent",
    "locale",
    "printenv",
    // Processes, users and resources.
    "ps",
    "pgrep",
    "pidof",
    "free",
    "uptime",
    "id",
    "whoami",
    "groups",
    "w",
    "who",
    "users",
    "last",
    "lastlog",
    "uname",
    "arch",
    "nproc",
    "lscpu",
    "lsmem",
    "lsblk",
    "lspci",
    "lsusb",
    "lsof",
    "vmstat",
    "iostat",
    "mpstat",
    "findmnt",
    "blkid",
    "ss",
    "netstat",
    // Shell builtins that only set the shell's own state.
    "cd",
    "pushd",
    "popd",
    "dirs",
    "export",
    "declare",
    "typeset",
    "local",
    "readonly",
    "read",
    "mapfile",
    "readarray",
    "unset",
    "shift",
    "set",
    "exit",
    "return",
    "wait",
    "jobs",
];

/// Readers with an option that writes or acts, checked below.
const CHECKED_READERS: &[&str] = &["tree", "blkid", "ss"];

/// Wrappers that run the command they are given and do nothing else that matters: that
/// command is checked instead ([`crate::wrappers`] finds it). `sudo` and the like are held for
/// approval by their own rule.
const WRAPPERS: &[&str] = &[
    "env", "nohup", "setsid", "builtin", "exec", "command", "time", "nice", "ionice", "stdbuf",
    "timeout", "taskset", "xargs", "watch", "eval", "busybox", "toybox",
];

/// Why `prog args` is not on the allowlist, to follow the command in a message (`None`: it
/// is). `approval`: programs held by their own rule (`sudo`), which need no second reason.
pub fn refused(prog: &str, args: &[Arg], approval: bool, from_stdin: bool) -> Option<String> {
    let why = |s: &str| Some(s.to_string());
    if approval {
        return None;
    }
    // More arguments come from standard input (`xargs`): they could be any option, so only a
    // program whose every option is harmless may take them.
    let any_args_harmless = READERS.contains(&prog) && !CHECKED_READERS.contains(&prog);
    if from_stdin && !any_args_harmless {
        return why("takes more arguments from standard input (xargs), which could be any option");
    }
    if any_args_harmless {
        return None;
    }
    match prog {
        // `tree -o FILE` writes its listing; `blkid -c FILE` its cache; `ss -K` kills sockets.
        "tree" if has(args, &["-o"], &[], "LPIoH") => return why("with -o writes a file"),
        "blkid" if has(args, &["-c"], &["--cache-file"], "cosStLUp") => {
            return why("with -c writes a cache file");
        }
        "ss" if has(args, &["-K"], &["--kill"], "fAF") => return why("with -K kills sockets"),
        "tree" | "blkid" | "ss" => return None,
        _ => {}
    }
    if WRAPPERS.contains(&prog) {
        // `time -o FILE` writes its report.
        if prog == "time" && has(args, &["-o"], &["--output"], "fo") {
            return why("with -o writes a file");
        }
        return None;
    }
    if SHELLS.contains(&prog) {
        // `sh -c CODE` (the guard checks CODE); without `-c` a shell reads its code from a
        // file or standard input.
        let code = args
            .iter()
            .take_while(|a| a.text().starts_with('-') && !a.dynamic)
            .any(|a| !a.text().starts_with("--") && a.text().contains('c'));
        return if code {
            None
        } else {
            why("reads its code from a file or standard input, which the guard cannot read")
        };
    }
    let bad_opt =
        |short: &str, long: &[&str], takes: &'static str| has(args, &[short], long, takes);
    let operands = |takes: &'static str| parse(args, spec(takes)).operands;
    let refusal = match prog {
        "sort" if has(args, &["-o"], &["--output", "--compress-program"], "kotST") => {
            "with -o or --compress-program writes a file or runs a program"
        }
        "sort" => return None,
        // `uniq IN OUT`, `xxd IN OUT`: the second operand is written.
        "uniq" | "xxd" if operands(if prog == "uniq" { "fsw" } else { "cglos" }).len() > 1 => {
            "with two file operands writes the second"
        }
        "uniq" | "xxd" => return None,
        "file" if bad_opt("-C", &["--compile"], "emfFP") => "with -C writes a file",
        "file" => return None,
        "date"
            if bad_opt("-s", &["--set"], "dfrsI")
                || operands("dfrs").iter().any(|a| !a.text().starts_with('+')) =>
        {
            "with -s or a date operand sets the clock"
        }
        "date" => return None,
        "hostname" if !operands("F").is_empty() || bad_opt("-F", &["--file", "--boot"], "F") => {
            "with an operand sets the host name"
        }
        "hostname" => return None,
        "dmesg"
            if has(
                args,
                &["-c", "-C", "-D", "-E", "-n"],
                &[
                    "--clear",
                    "--read-clear",
                    "--console-off",
                    "--console-on",
                    "--console-level",
                ],
                "fFlns",
            ) =>
        {
            "with -c, -C, -D, -E or -n changes the kernel's log"
        }
        "dmesg" => return None,
        "mount" if !args.is_empty() && args.iter().any(|a| a.text() != "-l") => {
            "with arguments mounts a file system"
        }
        "mount" => return None,
        "sysctl"
            if has(args, &["-w", "-p"], &["--write", "--load", "--system"], "p")
                || args.iter().any(|a| a.dynamic || a.text().contains('=')) =>
        {
            "with -w, -p or NAME=VALUE changes the kernel"
        }
        "sysctl" => return None,
        "top" if !has(args, &["-b"], &["--batch"], "dnopuUw") => {
            "runs interactively (its keys kill and renice processes); `top -b` does not"
        }
        "top" => return None,
        "find" => match args
            .iter()
            .find(|a| a.dynamic || FIND_ACTIONS.contains(&a.text()))
        {
            Some(a) if a.dynamic => "with an argument only known at run time may run or write",
            Some(_) => "with -exec, -ok, -delete or -fprint runs programs or writes files",
            None => return None,
        },
        "systemctl" => systemctl_refused(args)?,
        "journalctl"
            if has(
                args,
                &[],
                &[
                    "--vacuum-size",
                    "--vacuum-time",
                    "--vacuum-files",
                    "--rotate",
                    "--flush",
                    "--sync",
                    "--relinquish-var",
                    "--smart-relinquish-var",
                    "--setup-keys",
                    "--update-catalog",
                ],
                "bcDFgIkMnopSuUt",
            ) =>
        {
            "with --vacuum, --rotate, --flush or --setup-keys changes the journal"
        }
        "journalctl" => return None,
        "ip" => ip_refused(args)?,
        _ => "is not on the allowlist of read-only commands",
    };
    why(refusal)
}

/// Programs whose operands name programs without running them.
const NAMERS: &[&str] = &[
    "man",
    "info",
    "whatis",
    "apropos",
    "help",
    "tldr",
    "which",
    "whereis",
    "type",
    "command",
    "hash",
    "dpkg",
    "dpkg-query",
    "rpm",
    "apt",
    "apt-get",
    "apt-cache",
    "dnf",
    "yum",
    "zypper",
    "apk",
    "pacman",
    "snap",
    "flatpak",
    "pip",
    "pip3",
    "npm",
    "brew",
    "kill",
    "pkill",
    "killall",
    "pgrep",
    "pidof",
    "git",
    "complete",
    "compgen",
    "unalias",
    "update-alternatives",
];

/// Programs the guard has rules for, or that run code: an unknown program given one of these
/// as an operand probably runs it.
const RULED: &[&str] = &[
    "rm",
    "rmdir",
    "unlink",
    "shred",
    "touch",
    "mkdir",
    "cp",
    "mv",
    "ln",
    "install",
    "tee",
    "dd",
    "truncate",
    "chmod",
    "chown",
    "chgrp",
    "chattr",
    "setfacl",
    "sed",
    "awk",
    "gawk",
    "mawk",
    "perl",
    "ruby",
    "node",
    "php",
    "lua",
    "tar",
    "unzip",
    "rsync",
    "curl",
    "wget",
    "mount",
    "umount",
    "mkfs",
    "mke2fs",
    "mkswap",
    "wipefs",
    "fdisk",
    "sfdisk",
    "parted",
    "shutdown",
    "reboot",
    "halt",
    "poweroff",
    "init",
    "telinit",
    "systemctl",
    "crontab",
    "useradd",
    "usermod",
    "userdel",
    "passwd",
    "chpasswd",
    "visudo",
    "vi",
    "vim",
    "nano",
    "ed",
    "ex",
    "emacs",
    "nc",
    "ncat",
    "socat",
    "ssh",
    "scp",
    "sudo",
    "su",
    "doas",
    "env",
    "xargs",
    "busybox",
    "kill",
    "eval",
    "exec",
    "sshpass",
];

/// Directories whose files are programs.
const BIN_DIRS: &[&str] = &[
    "/bin/",
    "/sbin/",
    "/usr/bin/",
    "/usr/sbin/",
    "/usr/local/bin/",
    "/usr/local/sbin/",
    "/usr/libexec/",
    "/usr/games/",
];

/// In denylist mode, a program the guard does not know that is given another program as an
/// operand (`chrt -o 0 rm -rf /srv`, `prlimit --cpu=1 touch /etc/x`, `setpriv ... sh`,
/// `/lib64/ld-linux-x86-64.so.2 /bin/rm`): it probably runs it, unseen, so it is held. What it
/// names, to follow the command in a message.
pub fn unknown_wrapper(prog: &str, args: &[Arg]) -> Option<String> {
    if READERS.contains(&prog) || WRAPPERS.contains(&prog) || NAMERS.contains(&prog) {
        return None;
    }
    let named = args.iter().map(Arg::text).find(|t| {
        let base = t.rsplit('/').next().unwrap_or(t);
        RULED.contains(&base)
            || SHELLS.contains(&base)
            || base.starts_with("python")
            || base.starts_with("mkfs.")
            || base.starts_with("ld-linux")
            || (t.starts_with('/') && BIN_DIRS.iter().any(|d| t.starts_with(d)))
    })?;
    Some(format!(
        "runs `{named}` in a way the guard cannot follow (`{prog}` is not a wrapper it knows); on this target that needs approval"
    ))
}

/// `find` expressions that run programs or write files.
const FIND_ACTIONS: &[&str] = &[
    "-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0", "-fprintf", "-fls",
];

/// `systemctl` verbs that only show.
const SYSTEMCTL_SHOW: &[&str] = &[
    "status",
    "show",
    "cat",
    "list-units",
    "list-unit-files",
    "list-timers",
    "list-sockets",
    "list-dependencies",
    "list-jobs",
    "list-machines",
    "list-automounts",
    "list-paths",
    "is-active",
    "is-enabled",
    "is-failed",
    "is-system-running",
    "help",
    "get-default",
    "show-environment",
];

fn systemctl_refused(args: &[Arg]) -> Option<&'static str> {
    if has(args, &["-H", "-M"], &["--host", "--machine"], "HMnopst") {
        return Some("with -H or -M acts on another host or container");
    }
    let p = parse(args, spec("HMnopst"));
    match p.operands.first() {
        None => None,
        Some(v) if !v.dynamic && SYSTEMCTL_SHOW.contains(&v.text()) => None,
        Some(_) => Some("changes services (only status, show, cat, list-* and is-* only show)"),
    }
}

/// `ip OBJECT [show|list|get ...]` for the objects that only show so.
fn ip_refused(args: &[Arg]) -> Option<&'static str> {
    const OBJECTS: &[&str] = &[
        "a",
        "addr",
        "address",
        "l",
        "link",
        "r",
        "route",
        "n",
        "neigh",
        "neighbour",
        "neighbor",
        "rule",
        "ru",
        "maddr",
        "maddress",
        "m",
        "netconf",
        "token",
        "tunnel",
        "tun",
        "ntable",
    ];
    const VERBS: &[&str] = &["show", "sh", "list", "ls", "lst", "get", "g"];
    let bad = Some("changes the network (only `ip OBJECT show|list|get` only shows)");
    // `-b FILE` and `-batch` run the commands a file holds; `-n NS` enters a namespace.
    if args.iter().any(|a| {
        a.dynamic
            || matches!(
                a.text(),
                "-b" | "-batch" | "-force" | "-n" | "-netns" | "-all" | "-a"
            )
    }) {
        return bad;
    }
    let words: Vec<&str> = args
        .iter()
        .map(Arg::text)
        .filter(|t| !t.starts_with('-'))
        .collect();
    match words.as_slice() {
        [] => None,
        [object] if OBJECTS.contains(object) => None,
        [object, verb, ..] if OBJECTS.contains(object) && VERBS.contains(verb) => None,
        _ => bad,
    }
}

fn spec(takes: &'static str) -> Spec {
    Spec {
        short: takes,
        ..Spec::default()
    }
}

/// Whether `args` hold one of `short` (as parsed with `takes`, the short options taking a
/// value) or a long option that is one of `long` or a prefix GNU getopt would take for one
/// (`--out` for `--output`), or an argument only known at run time, which could be any of them.
fn has(args: &[Arg], short: &[&str], long: &[&str], takes: &'static str) -> bool {
    if args.iter().any(|a| a.dynamic) {
        return true;
    }
    let p = parse(args, spec(takes));
    p.opts.iter().any(|(o, _)| {
        short.contains(&o.as_str())
            || (o.starts_with("--")
                && o.len() > 2
                && long.iter().any(|l| l.starts_with(o.as_str())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(line: &str) -> Option<String> {
        let mut words = line.split(' ').filter(|s| !s.is_empty());
        let prog = words.next().unwrap_or_default();
        let args: Vec<Arg> = words.map(Arg::plain).collect();
        refused(prog, &args, false, false)
    }

    #[test]
    fn read_only_forms_pass_and_the_rest_is_held() {
        for ok in [
            "ls -la /etc",
            "cat /var/log/syslog",
            "tail -f -n 100 /var/log/app.log",
            "grep -r error /var/log",
            "sort -k2 -t , data.csv",
            "uniq -c",
            "find / -name '*.conf' -type f -print",
            "systemctl status nginx",
            "systemctl",
            "systemctl list-units --failed",
            "journalctl -u nginx -n 50 --no-pager",
            "ip addr",
            "ip -br link show",
            "ip route get 1.1.1.1",
            "date +%s",
            "hostname",
            "dmesg -T",
            "top -b -n 1",
            "sysctl net.ipv4.ip_forward",
            "df -h",
            "ps aux",
            "sh -c ls",
            "time ls",
        ] {
            assert_eq!(r(ok), None, "{ok}: {:?}", r(ok));
        }
        for held in [
            "sort -o /tmp/x data",
            "sort --out=/tmp/x data",
            "sort --compress-prog=sh data",
            "uniq a b",
            "xxd -r a b",
            "find / -delete",
            "find . -exec rm {} ;",
            "find / -fprint /tmp/x",
            "systemctl restart nginx",
            "systemctl -H other status",
            "journalctl --vacuum-time=1s",
            "journalctl --rot",
            "ip addr add 10.0.0.1/24 dev eth0",
            "ip -b cmds",
            "ip link set eth0 down",
            "date -s 2020-01-01",
            "date 010100002020",
            "hostname evil",
            "dmesg -C",
            "mount /dev/sdb1 /mnt",
            "sysctl -w kernel.x=1",
            "sysctl kernel.x=1",
            "top",
            "file -C",
            "time -o /tmp/x ls",
            "awk {system(\"id\")}",
            "sed -n 1e\\ id",
            "less /etc/passwd",
            "vi /tmp/x",
            "python3 -c print(1)",
            "sh",
            "bash script.sh",
            "curl http://x",
            "nc 127.0.0.1 22",
            "tee /tmp/x",
            "chrt -o 0 id",
            "strace -o /tmp/x id",
            "script -c id /tmp/x",
            "touch /tmp/x",
            "tree -o /tmp/x /etc",
            "blkid -c /tmp/x",
            "ss -K dst 127.0.0.1",
        ] {
            assert!(r(held).is_some(), "{held}");
        }
        // A value only known at run time could be any option.
        let dynamic = Arg {
            dynamic: true,
            ..Arg::plain("")
        };
        assert!(refused("sort", std::slice::from_ref(&dynamic), false, false).is_some());
        assert!(refused("find", &[Arg::plain("/"), dynamic], false, false).is_some());
        assert_eq!(refused("sudo", &[], true, false), None);
        // Arguments from standard input (xargs): only programs whose every option is harmless.
        assert_eq!(refused("grep", &[Arg::plain("x")], false, true), None);
        for prog in ["find", "sort", "uniq", "env", "tree", "date"] {
            assert!(refused(prog, &[], false, true).is_some(), "xargs {prog}");
        }
    }

    #[test]
    fn unknown_programs_given_a_program_are_wrappers() {
        let w = |line: &str| {
            let mut words = line.split(' ');
            let prog = words.next().unwrap_or_default();
            let args: Vec<Arg> = words.map(Arg::plain).collect();
            unknown_wrapper(prog, &args)
        };
        for held in [
            "chrt -o 0 touch /etc/x",
            "prlimit --nofile=10 rm -rf /srv",
            "setpriv --reuid=0 sh",
            "setarch x86_64 bash",
            "valgrind /usr/bin/id",
            "gdb --args python3 -c x",
            "start-stop-daemon --start --exec /bin/sh",
            "/lib64/ld-linux-x86-64.so.2 /bin/rm",
            "docker exec web rm -rf /",
        ] {
            let prog = held.split(' ').next().unwrap_or_default();
            let prog = prog.rsplit('/').next().unwrap_or(prog);
            let line = held.replacen(held.split(' ').next().unwrap_or_default(), prog, 1);
            assert!(w(&line).is_some(), "{held}");
        }
        for fine in [
            "man rm",
            "which python3",
            "grep rm notes.txt",
            "apt-get install curl",
            "git log --grep rm",
            "kill 1234",
            "myapp --port 8080",
        ] {
            assert_eq!(w(fine), None, "{fine}");
        }
    }
}
