//! Programs that run another command — `sudo`, `env`, `nohup`, `timeout`, `xargs`, `eval`,
//! `su -c`, `ssh host cmd`, ... — and what they run. Each is described by how it takes its
//! options, so `sudo -u www -- /bin/rm -rf /` and `timeout -s 9 10 nice -n 5 rm -rf /` both
//! come down to `rm -rf /`.

use crate::expand::Arg;
use crate::lex::is_name;
use crate::opts::{Spec, parse};

/// What a wrapper runs.
#[derive(Debug, PartialEq, Eq)]
pub enum Unwrapped {
    /// Not a wrapper.
    No,
    /// Runs no command (or only an interactive shell, like `sudo -i` or `su -`).
    Nothing,
    /// Runs this command, maybe in another directory, maybe with more arguments read from
    /// standard input (`xargs`).
    Run {
        argv: Vec<Arg>,
        cwd: Option<Arg>,
        from_stdin: bool,
    },
    /// Runs this text as shell code (joined with spaces).
    Script(Vec<Arg>),
    /// Edits these files (`sudoedit`, `sudo -e`).
    Edit(Vec<Arg>),
}

/// The program a path names: `/usr/bin/rm` → `rm`.
pub fn basename(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

fn run(argv: Vec<Arg>) -> Unwrapped {
    if argv.is_empty() {
        Unwrapped::Nothing
    } else {
        Unwrapped::Run {
            argv,
            cwd: None,
            from_stdin: false,
        }
    }
}

fn posix(short: &'static str, long: &'static [&'static str]) -> Spec {
    Spec {
        short,
        long,
        posix: true,
        ..Spec::default()
    }
}

pub fn unwrap(prog: &str, args: &[Arg]) -> Unwrapped {
    match prog {
        "sudo" => {
            let p = parse(
                args,
                posix(
                    "ugpCDhrtTU",
                    &[
                        "--user",
                        "--group",
                        "--prompt",
                        "--close-from",
                        "--chdir",
                        "--host",
                        "--role",
                        "--type",
                        "--command-timeout",
                        "--other-user",
                    ],
                ),
            );
            if p.has(&["-e", "--edit"]) {
                return Unwrapped::Edit(p.rest);
            }
            if p.has(&[
                "-l",
                "--list",
                "-v",
                "--validate",
                "-V",
                "--version",
                "--help",
            ]) {
                return Unwrapped::Nothing;
            }
            if p.has(&["-s", "--shell", "-i", "--login"]) && !p.rest.is_empty() {
                return Unwrapped::Script(p.rest);
            }
            let cwd = p.value(&["-D", "--chdir"]).cloned();
            match run(p.rest) {
                Unwrapped::Run { argv, .. } => Unwrapped::Run {
                    argv,
                    cwd,
                    from_stdin: false,
                },
                other => other,
            }
        }
        "sudoedit" => Unwrapped::Edit(parse(args, posix("ugpCDhrtTU", &[])).rest),
        "su" | "runuser" => {
            // GNU su takes options anywhere: `su - root -c cmd`.
            let p = parse(
                args,
                Spec {
                    short: "cgGsuw",
                    ..Spec::default()
                }
                .with_long(&[
                    "--command",
                    "--session-command",
                    "--group",
                    "--supp-group",
                    "--shell",
                    "--user",
                    "--whitelist-environment",
                ]),
            );
            if let Some(c) = p.value(&["-c", "--command", "--session-command"]) {
                return Unwrapped::Script(vec![c.clone()]);
            }
            if p.has(&["-u", "--user"]) {
                // `runuser -u USER [--] COMMAND...`
                return run(parse(args, posix("gGsuw", &["--user"])).rest);
            }
            Unwrapped::Nothing
        }
        "doas" => run(parse(args, posix("uC", &[])).rest),
        "pkexec" => run(parse(args, posix("", &["--user"])).rest),
        "env" => {
            let p = parse(
                args,
                posix(
                    "uCSP",
                    &["--unset", "--chdir", "--split-string", "--block-signal"],
                ),
            );
            let mut rest = p.rest.clone();
            while rest
                .first()
                .is_some_and(|a| a.text().split_once('=').is_some_and(|(n, _)| is_name(n)))
            {
                rest.remove(0);
            }
            if let Some(s) = p.value(&["-S", "--split-string"]) {
                let mut text = vec![s.clone()];
                text.extend(rest);
                return Unwrapped::Script(text);
            }
            match run(rest) {
                Unwrapped::Run { argv, .. } => Unwrapped::Run {
                    argv,
                    cwd: p.value(&["-C", "--chdir"]).cloned(),
                    from_stdin: false,
                },
                other => other,
            }
        }
        "nohup" | "setsid" | "builtin" | "unbuffer" | "exec" | "coproc" | "caffeinate" => {
            run(parse(args, posix("a", &[])).rest)
        }
        "command" => {
            let p = parse(args, posix("", &[]));
            if p.has(&["-v", "-V"]) {
                Unwrapped::Nothing
            } else {
                run(p.rest)
            }
        }
        "time" => run(parse(args, posix("fo", &["--format", "--output"])).rest),
        "nice" => run(parse(args, posix("n", &["--adjustment"])).rest),
        "ionice" => {
            let p = parse(args, posix("cnpPu", &["--class", "--classdata"]));
            if p.has(&["-p", "-P", "-u", "--pid", "--pgid", "--uid"]) {
                Unwrapped::Nothing
            } else {
                run(p.rest)
            }
        }
        "stdbuf" => run(parse(args, posix("ioe", &["--input", "--output", "--error"])).rest),
        "strace" | "ltrace" => run(parse(args, posix("abeEIoOpPsSuUX", &[])).rest),
        "timeout" => {
            let p = parse(args, posix("sk", &["--signal", "--kill-after"]));
            run(p.rest.into_iter().skip(1).collect())
        }
        "taskset" => {
            let p = parse(args, posix("", &[]));
            if p.has(&["-p", "--pid"]) {
                Unwrapped::Nothing
            } else {
                run(p.rest.into_iter().skip(1).collect())
            }
        }
        "chroot" => {
            let p = parse(args, posix("", &["--userspec", "--groups"]));
            run(p.rest.into_iter().skip(1).collect())
        }
        "flock" => {
            // `flock FILE -c CMD` takes its options after the file too.
            const LONG: &[&str] = &["--wait", "--timeout", "--conflict-exit-code", "--command"];
            let any = parse(
                args,
                Spec {
                    short: "wEc",
                    long: LONG,
                    ..Spec::default()
                },
            );
            if let Some(c) = any.value(&["-c", "--command"]) {
                return Unwrapped::Script(vec![c.clone()]);
            }
            run(parse(args, posix("wE", LONG))
                .rest
                .into_iter()
                .skip(1)
                .collect())
        }
        "screen" => {
            let p = parse(args, posix("ScthpXeTs", &[]));
            if p.has(&["-X", "-r", "-R", "-x", "-ls", "-list", "-wipe"]) {
                Unwrapped::Nothing
            } else {
                run(p.rest)
            }
        }
        "tmux" => {
            // `tmux [opts] new-session [opts] [shell-command]` and friends; `send-keys` types
            // into a shell.
            let p = parse(args, posix("cfLST", &[]));
            let Some((sub, rest)) = p.rest.split_first() else {
                return Unwrapped::Nothing;
            };
            let cmd = parse(rest, posix("censtxyFlpSwEb", &[])).rest;
            match sub.text() {
                "new" | "new-session" | "new-window" | "neww" | "split-window" | "splitw"
                | "respawn-pane" | "respawnp" | "respawn-window" | "respawnw" | "run-shell"
                | "run" | "send-keys" | "send"
                    if !cmd.is_empty() =>
                {
                    Unwrapped::Script(
                        cmd.into_iter()
                            .filter(|a| !matches!(a.text(), "Enter" | "C-m" | "KPEnter"))
                            .collect(),
                    )
                }
                _ => Unwrapped::Nothing,
            }
        }
        "xargs" => {
            let p = parse(
                args,
                Spec {
                    short: "adEILnPs",
                    attached: "eil",
                    long: &[
                        "--arg-file",
                        "--delimiter",
                        "--eof",
                        "--replace",
                        "--max-lines",
                        "--max-args",
                        "--max-procs",
                        "--max-chars",
                        "--process-slot-var",
                    ],
                    posix: true,
                },
            );
            let argv = if p.rest.is_empty() {
                vec![Arg::plain("echo")]
            } else {
                p.rest
            };
            Unwrapped::Run {
                argv,
                cwd: None,
                from_stdin: true,
            }
        }
        "watch" => {
            let p = parse(args, posix("n", &["--interval"]));
            if p.has(&["-x", "--exec"]) {
                run(p.rest)
            } else if p.rest.is_empty() {
                Unwrapped::Nothing
            } else {
                Unwrapped::Script(p.rest)
            }
        }
        "busybox" | "toybox" => run(args.to_vec()),
        "run0" => run(parse(
            args,
            posix(
                "ugD",
                &[
                    "--user",
                    "--group",
                    "--chdir",
                    "--unit",
                    "--property",
                    "--description",
                    "--slice",
                    "--nice",
                    "--setenv",
                    "--machine",
                ],
            ),
        )
        .rest),
        "nsenter" | "unshare" => run(parse(
            args,
            Spec {
                short: "tSGe",
                attached: "mUinpCTrwu",
                long: &[
                    "--target",
                    "--setuid",
                    "--setgid",
                    "--map-user",
                    "--map-group",
                    "--propagation",
                    "--setgroups",
                ],
                posix: true,
            },
        )
        .rest),
        "sg" => {
            // `sg GROUP [-c] COMMAND`
            let rest: Vec<Arg> = args
                .iter()
                .skip(1)
                .filter(|a| a.text() != "-c")
                .cloned()
                .collect();
            if rest.is_empty() {
                Unwrapped::Nothing
            } else {
                Unwrapped::Script(rest)
            }
        }
        "parallel" => {
            // `parallel [options] COMMAND ::: ARGS`: the command gets each argument (or each
            // line of standard input).
            let p = parse(args, posix("jSa", &["--jobs", "--sshlogin", "--arg-file"]));
            let sep = p.rest.iter().position(|a| a.text().starts_with(":::"));
            let (cmd, inputs) = p.rest.split_at(sep.unwrap_or(p.rest.len()));
            let mut argv = cmd.to_vec();
            argv.extend(
                inputs
                    .iter()
                    .filter(|a| !a.text().starts_with(":::"))
                    .cloned(),
            );
            match run(argv) {
                Unwrapped::Run { argv, .. } => Unwrapped::Run {
                    argv,
                    cwd: None,
                    from_stdin: sep.is_none(),
                },
                other => other,
            }
        }
        "systemd-run" => run(parse(
            args,
            posix(
                "pEuMH",
                &[
                    "--unit",
                    "--property",
                    "--setenv",
                    "--uid",
                    "--gid",
                    "--nice",
                    "--working-directory",
                    "--machine",
                    "--host",
                    "--description",
                    "--slice",
                    "--service-type",
                    "--on-active",
                    "--on-boot",
                    "--on-calendar",
                ],
            ),
        )
        .rest),
        "script" => {
            let p = parse(
                args,
                Spec {
                    short: "cEIOBTm",
                    long: &[
                        "--command",
                        "--log-in",
                        "--log-out",
                        "--log-io",
                        "--log-timing",
                    ],
                    ..Spec::default()
                },
            );
            match p.value(&["-c", "--command"]) {
                Some(c) => Unwrapped::Script(vec![c.clone()]),
                None => Unwrapped::Nothing,
            }
        }
        "ssh" => {
            let p = parse(args, posix("BbcDEeFIiJLlmOoPpQRSWw", &[]));
            let remote: Vec<Arg> = p.rest.into_iter().skip(1).collect();
            if remote.is_empty() {
                Unwrapped::Nothing
            } else {
                Unwrapped::Script(remote)
            }
        }
        "eval" => {
            if args.is_empty() {
                Unwrapped::Nothing
            } else {
                Unwrapped::Script(args.to_vec())
            }
        }
        "alias" => {
            let values: Vec<Arg> = args
                .iter()
                .filter_map(|a| {
                    let (_, v) = a.text().split_once('=')?;
                    Some(Arg {
                        alts: vec![v.to_string()],
                        ..a.clone()
                    })
                })
                .collect();
            if values.is_empty() {
                Unwrapped::Nothing
            } else {
                Unwrapped::Script(values)
            }
        }
        "trap" => {
            let p = parse(args, posix("", &[]));
            match p.rest.first() {
                Some(a)
                    if !(a.known() == Some("-") || a.known() == Some("")) && p.rest.len() > 1 =>
                {
                    Unwrapped::Script(vec![a.clone()])
                }
                _ => Unwrapped::Nothing,
            }
        }
        _ => Unwrapped::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Arg> {
        s.split(' ').map(Arg::plain).collect()
    }

    fn inner(prog: &str, a: &str) -> Vec<String> {
        match unwrap(prog, &args(a)) {
            Unwrapped::Run { argv, .. } | Unwrapped::Script(argv) | Unwrapped::Edit(argv) => {
                argv.iter().map(|a| a.text().to_string()).collect()
            }
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn wrappers_come_down_to_the_command() {
        assert_eq!(
            inner("sudo", "-u www -- /bin/rm -rf /"),
            ["/bin/rm", "-rf", "/"]
        );
        assert_eq!(inner("env", "-i A=1 B=2 rm x"), ["rm", "x"]);
        assert_eq!(
            inner("timeout", "-s 9 10 nice -n 5 rm"),
            ["nice", "-n", "5", "rm"]
        );
        assert_eq!(inner("xargs", "-I {} -n1 rm -rf {}"), ["rm", "-rf", "{}"]);
        assert_eq!(inner("xargs", "-0"), ["echo"]);
        assert_eq!(inner("su", "- root -c reboot"), ["reboot"]);
        assert_eq!(inner("ssh", "-p 22 host rm -rf /"), ["rm", "-rf", "/"]);
        assert_eq!(inner("sudo", "-e /etc/hosts"), ["/etc/hosts"]);
        assert_eq!(inner("alias", "ll=ls x=reboot"), ["ls", "reboot"]);
        assert_eq!(unwrap("sudo", &args("-i")), Unwrapped::Nothing);
        assert_eq!(unwrap("command", &args("-v rm")), Unwrapped::Nothing);
        assert_eq!(unwrap("ls", &args("-l")), Unwrapped::No);
        assert_eq!(basename("/usr/bin/rm"), "rm");
    }
}
