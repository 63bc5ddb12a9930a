//! The rules on one command once wrappers are peeled off: recursive deletes of protected
//! paths, disk tools, power, recursive permission changes, shells wired to the network, and
//! the written-path rules of [`crate::writes`]. Also what counts as a download, a decoder or
//! an interpreter, for the pipeline rules in [`crate::walk`].

use crate::config::Guard;
use crate::expand::{Arg, Ctx};
use crate::findings::{Findings, Rule};
use crate::opts::{Spec, parse};
use crate::writes;

/// Shells: text they read is shell code the guard can check.
pub const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh", "fish", "csh", "tcsh",
];
/// Programs that fetch data from the network.
const DOWNLOADERS: &[&str] = &[
    "curl",
    "wget",
    "fetch",
    "aria2c",
    "http",
    "https",
    "xh",
    "lwp-request",
    "lwp-download",
    "GET",
    "POST",
    "nc",
    "ncat",
    "netcat",
    "socat",
    "telnet",
    "ftp",
    "tftp",
    "openssl",
];
/// Stop (or reboot) the host.
const POWER: &[&str] = &[
    "shutdown", "reboot", "halt", "poweroff", "kexec", "killall5",
];
/// `systemctl` / `loginctl` verbs and targets that stop the host.
const POWER_VERBS: &[&str] = &[
    "reboot",
    "poweroff",
    "halt",
    "kexec",
    "soft-reboot",
    "suspend",
    "hibernate",
    "hybrid-sleep",
    "suspend-then-hibernate",
    "rescue",
    "emergency",
];
const POWER_TARGETS: &[&str] = &[
    "reboot.target",
    "poweroff.target",
    "halt.target",
    "kexec.target",
    "rescue.target",
    "emergency.target",
    "shutdown.target",
    "ctrl-alt-del.target",
    "runlevel0.target",
    "runlevel6.target",
    "runlevel1.target",
];

/// Whether `prog` runs code (as opposed to data) it is given as text.
pub fn is_interpreter(prog: &str) -> bool {
    SHELLS.contains(&prog)
        || [
            "perl", "ruby", "node", "nodejs", "php", "lua", "luajit", "deno", "bun", "tclsh",
        ]
        .contains(&prog)
        || prog.starts_with("python")
        || prog.starts_with("pypy")
}

/// Where an interpreter takes its program from.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    /// `sh -c TEXT`.
    Command(Arg),
    /// `python -c`, `perl -e`, ...: code the guard cannot read.
    Inline,
    /// A script file (or `/dev/fd/N` from `<(...)`).
    File(Arg),
    /// Standard input.
    Stdin,
}

pub fn source(prog: &str, args: &[Arg]) -> Source {
    let from_file = |a: &Arg| match a.text() {
        "-" | "/dev/stdin" => Source::Stdin,
        _ => Source::File(a.clone()),
    };
    if SHELLS.contains(&prog) {
        let p = parse(
            args,
            Spec {
                short: "oO",
                long: &["--rcfile", "--init-file"],
                posix: true,
                ..Spec::default()
            },
        );
        if p.opts.iter().any(|(o, _)| o == "-c") {
            return p
                .rest
                .first()
                .map_or(Source::Inline, |a| Source::Command(a.clone()));
        }
        if p.has(&["-s"]) {
            return Source::Stdin;
        }
        return p.rest.first().map_or(Source::Stdin, from_file);
    }
    let p = parse(
        args,
        Spec {
            short: "cmWXQeErIM",
            long: &["--eval", "--print", "--require"],
            posix: true,
            ..Spec::default()
        },
    );
    if p.has(&["-c", "-m", "-e", "-E", "-r", "-p", "--eval", "--print"]) {
        return Source::Inline;
    }
    // `python3 --version`: no program at all.
    if p.rest.is_empty() && p.has(&["-V", "--version", "-h", "--help"]) {
        return Source::Inline;
    }
    p.rest.first().map_or(Source::Stdin, from_file)
}

/// What a producer in a pipeline feeds the next stage, when it matters.
pub fn is_download(prog: &str, args: &[Arg]) -> bool {
    DOWNLOADERS.contains(&prog)
        && (prog != "openssl" || args.first().is_some_and(|a| a.text() == "s_client"))
}

/// Programs that turn unreadable text into code: `base64 -d`, `xxd -r`, `rev`, `gunzip`, ...
pub fn is_decoder(prog: &str, args: &[Arg]) -> bool {
    let flag = |names: &[&str]| {
        args.iter().any(|a| {
            let t = a.text();
            names.contains(&t)
                || (t.starts_with('-')
                    && !t.starts_with("--")
                    && names
                        .iter()
                        .any(|n| n.len() == 2 && t[1..].contains(&n[1..])))
        })
    };
    match prog {
        "base64" | "base32" | "basenc" => flag(&["-d", "--decode", "-D"]),
        "xxd" => flag(&["-r", "-revert"]),
        "openssl" => {
            flag(&["-d", "-base64", "-a"]) || args.first().is_some_and(|a| a.text() == "base64")
        }
        "gzip" | "bzip2" | "xz" | "zstd" | "lz4" => flag(&["-d", "--decompress"]),
        "uudecode" | "rev" | "tr" | "zcat" | "gunzip" | "bzcat" | "bunzip2" | "xzcat" | "unxz"
        | "zstdcat" | "unzstd" | "lz4cat" | "rot13" => true,
        _ => false,
    }
}

/// Every rule on one unwrapped command. `from_stdin`: it gets more arguments from standard
/// input (`xargs`).
pub fn check(
    g: &Guard,
    ctx: &Ctx,
    prog: &str,
    args: &[Arg],
    from_stdin: bool,
    shown: &str,
    out: &mut Findings,
) {
    disk(prog, args, shown, out);
    power(prog, args, shown, out);
    deletes(g, ctx, prog, args, from_stdin, shown, out);
    network_shell(prog, args, shown, out);
    for path in writes::written(prog, args) {
        writes::check(g, ctx, &path, shown, out);
    }
}

fn disk(prog: &str, args: &[Arg], shown: &str, out: &mut Findings) {
    let has = |names: &[&str]| args.iter().any(|a| names.contains(&a.text()));
    let destroys = match prog {
        p if p.starts_with("mkfs") => true,
        "mke2fs" | "mkswap" | "wipefs" | "blkdiscard" | "lvremove" | "vgremove" | "pvremove" => {
            true
        }
        "fdisk" | "gdisk" => !has(&["-l", "--list"]),
        "sfdisk" => !has(&[
            "-l",
            "--list",
            "-d",
            "--dump",
            "-s",
            "--show-size",
            "-V",
            "--verify",
        ]),
        "sgdisk" => !has(&["-p", "--print", "-i", "--info", "-v", "--verify"]),
        "parted" => {
            let p = parse(args, Spec::default());
            !(p.has(&["-l", "--list"])
                || p.operands.iter().skip(1).all(|a| a.text() == "print") && p.operands.len() >= 2)
        }
        "cryptsetup" => has(&["luksFormat", "erase", "luksErase", "reencrypt"]),
        _ => false,
    };
    if destroys {
        out.deny(Rule::DiskWrite, || {
            format!("`{shown}` can destroy a disk, partition table or filesystem")
        });
    }
}

fn power(prog: &str, args: &[Arg], shown: &str, out: &mut Findings) {
    let texts: Vec<&str> = args.iter().map(Arg::text).collect();
    let stops = match prog {
        "shutdown" => !texts.iter().any(|t| ["-c", "--help", "-k"].contains(t)),
        p if POWER.contains(&p) => !texts.contains(&"--help"),
        "init" | "telinit" => texts.iter().any(|t| ["0", "6", "1", "s", "S"].contains(t)),
        "systemctl" | "loginctl" => {
            let p = parse(
                args,
                Spec {
                    short: "tpsnHMo",
                    ..Spec::default()
                },
            );
            let ops: Vec<&str> = p.operands.iter().map(Arg::text).collect();
            ops.first().is_some_and(|v| POWER_VERBS.contains(v))
                || (ops
                    .first()
                    .is_some_and(|v| ["start", "isolate", "restart"].contains(v))
                    && ops.iter().skip(1).any(|t| {
                        POWER_TARGETS.contains(t)
                            || POWER_TARGETS.contains(&format!("{t}.target").as_str())
                    }))
        }
        "kill" => {
            // `kill [-SIG | -s SIG | -n N] [--] PID...`: PID 1 is init, -1 is every process.
            let mut rest = &texts[..];
            match rest.first() {
                Some(&"-s" | &"-n") => rest = rest.get(2..).unwrap_or(&[]),
                Some(t) if t.starts_with('-') && *t != "--" => rest = &rest[1..],
                _ => {}
            }
            if rest.first() == Some(&"--") {
                rest = &rest[1..];
            }
            rest.iter().any(|t| *t == "1" || *t == "-1")
        }
        _ => false,
    };
    if stops {
        out.deny(Rule::Power, || {
            format!("`{shown}` can shut down or reboot the host")
        });
    }
}

/// A recursive delete (or move away) of `target` must not take a protected path.
pub fn check_delete(g: &Guard, ctx: &Ctx, target: &Arg, shown: &str, out: &mut Findings) {
    if target.opaque {
        out.deny(Rule::RecursiveDelete, || {
            format!("`{shown}` deletes recursively a path only known at run time")
        });
        return;
    }
    for alt in target.alts.iter().filter(|a| !a.is_empty()) {
        for cand in ctx.resolve(alt) {
            if let Some(e) = g.protected.deleted_by(&cand) {
                out.deny(Rule::RecursiveDelete, || {
                    if cand == e {
                        format!("`{shown}` deletes the protected path {e}")
                    } else {
                        format!("`{shown}` deletes {cand}, which takes the protected path {e}")
                    }
                });
                return;
            }
        }
    }
}

fn deletes(
    g: &Guard,
    ctx: &Ctx,
    prog: &str,
    args: &[Arg],
    from_stdin: bool,
    shown: &str,
    out: &mut Findings,
) {
    match prog {
        "rm" => {
            let p = parse(args, Spec::default());
            let recursive = p.has(&["-r", "-R", "--recursive"]);
            // `rm $opts /`: an unknown argument may be `-r`.
            let maybe = args.iter().any(|a| a.dynamic);
            for t in &p.operands {
                if recursive || (maybe && !t.dynamic) {
                    check_delete(g, ctx, t, shown, out);
                }
            }
            if recursive && from_stdin {
                out.deny(Rule::RecursiveDelete, || {
                    format!("`{shown}` deletes recursively what it reads from standard input, which the guard cannot check")
                });
            }
        }
        "mv" => {
            let p = parse(
                args,
                Spec {
                    short: "St",
                    long: &["--target-directory"],
                    ..Spec::default()
                },
            );
            let n = if p.has(&["-t", "--target-directory"]) {
                p.operands.len()
            } else {
                p.operands.len().saturating_sub(1)
            };
            for t in &p.operands[..n] {
                check_delete(g, ctx, t, shown, out);
            }
        }
        "rsync" if args.iter().any(|a| a.text().starts_with("--delete")) => {
            let p = parse(
                args,
                Spec {
                    short: "eBfT",
                    long: &["--rsh", "--filter", "--exclude", "--include"],
                    ..Spec::default()
                },
            );
            if p.operands.len() >= 2
                && let Some(dest) = p.operands.last()
            {
                check_delete(g, ctx, dest, shown, out);
            }
        }
        "chmod" | "chown" | "chgrp" | "setfacl" | "chattr"
            if args.iter().any(|a| {
                a.text() == "--recursive"
                    || (a.text().starts_with('-')
                        && !a.text().starts_with("--")
                        && a.text().contains('R'))
            }) =>
        {
            for t in writes::written(prog, args) {
                if t.opaque {
                    continue;
                }
                for alt in t.alts.iter().filter(|a| !a.is_empty()) {
                    for cand in ctx.resolve(alt) {
                        if let Some(e) = g.protected.deleted_by(&cand) {
                            out.deny(Rule::RecursiveChmod, || {
                                format!("`{shown}` changes ownership or permissions across the protected path {e}")
                            });
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// `nc -e /bin/sh`, `socat exec:bash`: a shell wired to the network.
fn network_shell(prog: &str, args: &[Arg], shown: &str, out: &mut Findings) {
    let wired = match prog {
        "nc" | "ncat" | "netcat" => args.iter().any(|a| {
            let t = a.text();
            ["--exec", "--sh-exec", "--lua-exec"]
                .iter()
                .any(|o| t.starts_with(o))
                || (t.starts_with('-')
                    && !t.starts_with("--")
                    && (t.contains('e') || t.contains('c')))
        }),
        "socat" => args.iter().any(|a| {
            let t = a.text().to_ascii_lowercase();
            t.contains("exec:") || t.contains("system:")
        }),
        _ => false,
    };
    if wired {
        out.deny(Rule::DownloadExec, || {
            format!("`{shown}` connects a program to the network (a remote shell)")
        });
    }
}
