//! Which files a command writes, program by program, and the rules on them: nothing under the
//! write-protected paths (`/etc`, `/boot`), no device but the harmless ones, no
//! `/proc/sysrq-trigger`.
//!
//! A path only known at run time is checked with its unknown parts empty (`/etc/$f` is
//! `/etc/`, still under `/etc`); a program that writes where it is run (`tar -x`, `curl -O`)
//! writes `DIR/*`.

use crate::config::Guard;
use crate::expand::{Arg, Ctx};
use crate::findings::{Findings, Rule};
use crate::opts::{Spec, parse};
use crate::wrappers::basename;

/// Devices writing to which harms nothing (and `/dev/tcp`, `/dev/udp`: network, not disks).
const HARMLESS_DEVICES: &[&str] = &[
    "null", "zero", "full", "random", "urandom", "stdin", "stdout", "stderr", "tty", "ptmx",
];
const HARMLESS_DEVICE_DIRS: &[&str] = &["fd/", "pts/", "shm/", "mqueue/", "tcp/", "udp/"];

/// Editors: every file operand may be written.
const EDITORS: &[&str] = &[
    "vi",
    "vim",
    "nvim",
    "nano",
    "pico",
    "emacs",
    "emacsclient",
    "joe",
    "jed",
    "mcedit",
    "micro",
    "ed",
    "ex",
    "kak",
    "hx",
    "helix",
    "mg",
    "ne",
];
/// Account tools: they rewrite `/etc/passwd` and friends.
const ACCOUNT_TOOLS: &[&str] = &[
    "useradd", "userdel", "usermod", "groupadd", "groupdel", "groupmod", "adduser", "deluser",
    "addgroup", "delgroup", "chpasswd", "newusers", "vipw", "vigr",
];
/// `systemctl` verbs that write unit links or overrides under `/etc/systemd`.
const SYSTEMCTL_WRITES: &[&str] = &[
    "enable",
    "disable",
    "reenable",
    "mask",
    "unmask",
    "edit",
    "set-default",
    "link",
    "preset",
    "preset-all",
    "revert",
    "add-wants",
    "add-requires",
    "set-property",
];

fn arg(s: &str) -> Arg {
    Arg::plain(s)
}

/// `DIR/tail` for every alternative of `dir`.
fn under(dir: &Arg, tail: &str) -> Arg {
    Arg {
        alts: dir.alts.iter().map(|d| format!("{d}/{tail}")).collect(),
        ..dir.clone()
    }
}

fn last_if_many(ops: &[Arg]) -> Vec<Arg> {
    if ops.len() >= 2 {
        ops.last().cloned().into_iter().collect()
    } else {
        Vec::new()
    }
}

/// A `host:path` or `rsync://` operand names another machine.
pub(crate) fn is_remote(a: &Arg) -> bool {
    let t = a.text();
    t.contains("://") || t.split_once(':').is_some_and(|(h, _)| !h.contains('/'))
}

/// The paths `prog args` writes.
pub fn written(prog: &str, args: &[Arg]) -> Vec<Arg> {
    let spec = |short, long| Spec {
        short,
        long,
        ..Spec::default()
    };
    match prog {
        "tee" | "rmdir" | "rm" | "unlink" | "sponge" | "truncate" | "touch" | "mkdir"
        | "mkfifo" | "shred" | "setfacl" => {
            let short = match prog {
                "truncate" => "sr",
                "touch" => "drt",
                "mkdir" | "mkfifo" => "m",
                "shred" => "ns",
                "setfacl" => "mMxX",
                _ => "",
            };
            parse(
                args,
                spec(short, &["--size", "--reference", "--date", "--mode"]),
            )
            .operands
        }
        "mknod" => parse(args, spec("mZ", &["--mode"]))
            .operands
            .into_iter()
            .take(1)
            .collect(),
        "cp" | "install" | "mv" | "ln" => {
            let p = parse(
                args,
                spec(
                    "StgmoZ",
                    &[
                        "--target-directory",
                        "--suffix",
                        "--mode",
                        "--owner",
                        "--group",
                    ],
                ),
            );
            // `mv` takes its sources away; a link, hard or symbolic, makes its source writable
            // through the new name.
            let link = prog == "ln";
            if let Some(t) = p.value(&["-t", "--target-directory"]) {
                let mut v = vec![t.clone()];
                if prog == "mv" || link {
                    v.extend(p.operands.iter().cloned());
                }
                return v;
            }
            match prog {
                "mv" => p.operands,
                "ln" if p.operands.len() >= 2 => p.operands,
                "install" if p.has(&["-d", "--directory"]) => p.operands,
                "ln" if p.operands.len() == 1 => {
                    vec![arg(&basename(p.operands[0].text())), p.operands[0].clone()]
                }
                _ => last_if_many(&p.operands),
            }
        }
        "rsync" | "scp" => {
            let p = parse(
                args,
                spec(
                    "eBfTcFiJlPoS",
                    &[
                        "--rsh",
                        "--filter",
                        "--exclude",
                        "--include",
                        "--temp-dir",
                        "--chmod",
                    ],
                ),
            );
            last_if_many(&p.operands)
                .into_iter()
                .filter(|a| !is_remote(a))
                .collect()
        }
        "sed" | "perl" => {
            let p = parse(
                args,
                Spec {
                    short: if prog == "sed" { "efl" } else { "eEIMm" },
                    attached: if prog == "sed" { "i" } else { "ilx0C" },
                    long: &["--expression", "--file", "--line-length"],
                    posix: false,
                },
            );
            if !p
                .opts
                .iter()
                .any(|(o, _)| o == "-i" || o.starts_with("--in-place"))
            {
                return Vec::new();
            }
            let scripted = p.has(&["-e", "-E", "-f", "--expression", "--file"]);
            p.operands
                .into_iter()
                .skip(usize::from(!scripted))
                .collect()
        }
        "chmod" => {
            // A mode such as `-x` or `+w` looks like an option but is the first operand.
            let mut ops: Vec<Arg> = args
                .iter()
                .filter(|a| {
                    !(a.text().starts_with('-')
                        && a.text()[1..].chars().all(|c| "Rcfv".contains(c))
                        && a.text().len() > 1)
                })
                .filter(|a| !a.text().starts_with("--"))
                .cloned()
                .collect();
            if !args.iter().any(|a| a.text().starts_with("--reference")) && !ops.is_empty() {
                ops.remove(0);
            }
            ops
        }
        "chown" | "chgrp" => {
            let p = parse(args, spec("", &[]));
            let skip = usize::from(!p.opts.iter().any(|(o, _)| o == "--reference"));
            p.operands.into_iter().skip(skip).collect()
        }
        "chattr" => args
            .iter()
            .filter(|a| {
                let t = a.text();
                !(t.starts_with(['+', '=', '-']))
            })
            .cloned()
            .collect(),
        "dd" => args
            .iter()
            .filter_map(|a| a.text().strip_prefix("of=").map(arg))
            .collect(),
        "curl" => {
            let p = parse(
                args,
                spec(
                    "AbcCdDeEFHKmoPQrtTuUwxXyYz",
                    &[
                        "--output",
                        "--output-dir",
                        "--dump-header",
                        "--cookie-jar",
                        "--data",
                        "--data-raw",
                        "--data-binary",
                        "--header",
                        "--user-agent",
                        "--user",
                        "--request",
                        "--url",
                        "--cookie",
                        "--config",
                        "--form",
                        "--upload-file",
                        "--write-out",
                        "--proxy",
                        "--max-time",
                        "--trace",
                        "--trace-ascii",
                    ],
                ),
            );
            let mut v: Vec<Arg> = p
                .values(&[
                    "-o",
                    "--output",
                    "-D",
                    "--dump-header",
                    "-c",
                    "--cookie-jar",
                    "--trace",
                    "--trace-ascii",
                ])
                .filter(|a| a.text() != "-")
                .cloned()
                .collect();
            if p.has(&["-O", "--remote-name", "--remote-name-all"]) {
                let dir = p
                    .value(&["--output-dir"])
                    .cloned()
                    .unwrap_or_else(|| arg("."));
                v.push(under(&dir, "*"));
            }
            v
        }
        "wget" => {
            let p = parse(
                args,
                spec(
                    "aABDeilOoPQRtTUwY",
                    &[
                        "--output-document",
                        "--directory-prefix",
                        "--output-file",
                        "--append-output",
                        "--user-agent",
                        "--header",
                        "--user",
                        "--password",
                        "--input-file",
                        "--execute",
                        "--post-data",
                        "--post-file",
                    ],
                ),
            );
            let mut v: Vec<Arg> = p
                .values(&["-o", "--output-file", "-a", "--append-output"])
                .cloned()
                .collect();
            match p.value(&["-O", "--output-document"]) {
                Some(o) if o.text() == "-" => {}
                Some(o) => v.push(o.clone()),
                None => {
                    let dir = p
                        .value(&["-P", "--directory-prefix"])
                        .cloned()
                        .unwrap_or_else(|| arg("."));
                    v.push(under(&dir, "*"));
                }
            }
            v
        }
        "tar" | "bsdtar" => {
            let extract = args.iter().enumerate().any(|(i, a)| {
                let t = a.text();
                t == "--extract"
                    || t == "--get"
                    || (t.starts_with('-') && !t.starts_with("--") && t.contains('x'))
                    || (i == 0 && !t.starts_with('-') && t.contains('x'))
            });
            let p = parse(args, spec("fCTXbgKNVLFH", &["--directory", "--file"]));
            if !extract {
                // Creating an archive writes the archive file.
                let creates = args.iter().enumerate().any(|(i, a)| {
                    let t = a.text();
                    ["--create", "--append", "--update"].contains(&t)
                        || (t.starts_with('-')
                            && !t.starts_with("--")
                            && t.contains(['c', 'r', 'u']))
                        || (i == 0 && !t.starts_with('-') && t.contains(['c', 'r', 'u']))
                });
                let file = p.value(&["-f", "--file"]).or_else(|| {
                    // Old style `tar cf FILE ...`: the archive is the first operand after the
                    // cluster.
                    args.first()
                        .filter(|a| !a.text().starts_with('-') && a.text().contains('f'))
                        .and_then(|_| args.get(1))
                });
                return match file {
                    Some(f) if creates && f.text() != "-" => vec![f.clone()],
                    _ => Vec::new(),
                };
            }
            let dir = p
                .value(&["-C", "--directory"])
                .cloned()
                .unwrap_or_else(|| arg("."));
            vec![under(&dir, "*")]
        }
        "unzip" => {
            let p = parse(args, spec("dP", &[]));
            let dir = p.value(&["-d"]).cloned().unwrap_or_else(|| arg("."));
            vec![under(&dir, "*")]
        }
        "sort" => parse(
            args,
            spec("okStT", &["--output", "--key", "--field-separator"]),
        )
        .values(&["-o", "--output"])
        .cloned()
        .collect(),
        "uniq" => parse(args, spec("fsw", &[]))
            .operands
            .into_iter()
            .skip(1)
            .take(1)
            .collect(),
        "openssl" => args
            .windows(2)
            .filter(|w| w[0].text() == "-out")
            .map(|w| w[1].clone())
            .collect(),
        "patch" => {
            let p = parse(
                args,
                spec("pioBDFgrVYzd", &["--input", "--output", "--directory"]),
            );
            if let Some(o) = p.value(&["-o", "--output"]) {
                return vec![o.clone()];
            }
            if let Some(f) = p.operands.first() {
                return vec![f.clone()];
            }
            let dir = p
                .value(&["-d", "--directory"])
                .cloned()
                .unwrap_or_else(|| arg("."));
            vec![under(&dir, "*")]
        }
        "mount" => last_if_many(&parse(args, spec("tLUoOB", &["--types", "--options"])).operands),
        "visudo" => {
            let p = parse(args, spec("f", &["--file"]));
            if p.has(&["-c", "--check"]) {
                return Vec::new();
            }
            vec![
                p.value(&["-f", "--file"])
                    .cloned()
                    .unwrap_or_else(|| arg("/etc/sudoers")),
            ]
        }
        p if ACCOUNT_TOOLS.contains(&p) => vec![arg("/etc/passwd")],
        "passwd" | "chage" | "gpasswd" | "chsh" | "chfn" => {
            if args
                .iter()
                .any(|a| matches!(a.text(), "-S" | "--status" | "-l" | "--list"))
                && prog != "passwd"
                || (prog == "passwd" && args.iter().any(|a| matches!(a.text(), "-S" | "--status")))
            {
                Vec::new()
            } else {
                vec![arg("/etc/shadow")]
            }
        }
        "git" => {
            // `git clone URL DIR` writes DIR.
            let p = parse(args, spec("Cc", &["--git-dir", "--work-tree"]));
            match p.operands.as_slice() {
                [sub, _, dir, ..] if sub.text() == "clone" => vec![dir.clone()],
                _ => Vec::new(),
            }
        }
        p if EDITORS.contains(&p) => {
            if args.iter().any(|a| a.text() == "-R" || a.text() == "-M") {
                return Vec::new();
            }
            parse(args, spec("cSuTtqiwWs", &[]))
                .operands
                .into_iter()
                .filter(|a| !a.text().starts_with('+'))
                .collect()
        }
        "hostnamectl" | "timedatectl" | "localectl" => {
            let p = parse(args, spec("HM", &["--host", "--machine"]));
            let file = match prog {
                "hostnamectl" => "/etc/hostname",
                "timedatectl" => "/etc/localtime",
                _ => "/etc/locale.conf",
            };
            match p.operands.first() {
                Some(v) if v.text().starts_with("set-") => vec![arg(file)],
                _ => Vec::new(),
            }
        }
        "systemctl" => {
            let p = parse(
                args,
                spec(
                    "tpsnHMo",
                    &[
                        "--type",
                        "--property",
                        "--signal",
                        "--host",
                        "--machine",
                        "--root",
                    ],
                ),
            );
            let user = p.has(&["--user", "--runtime", "--global"]);
            match p.operands.first() {
                Some(v) if !user && SYSTEMCTL_WRITES.contains(&v.text()) => {
                    vec![arg("/etc/systemd/system")]
                }
                // A user's units start at every login of that user.
                Some(v) if SYSTEMCTL_WRITES.contains(&v.text()) => {
                    vec![arg("~/.config/systemd/user")]
                }
                _ => Vec::new(),
            }
        }
        // Installs, edits or removes a user's schedule; only listing it writes nothing.
        "crontab" => {
            let p = parse(args, spec("u", &[]));
            let list = p.has(&["-l"])
                && p.operands.is_empty()
                && p.opts.iter().all(|(o, _)| o == "-l" || o == "-u")
                && !args.iter().any(|a| a.dynamic);
            if list {
                Vec::new()
            } else {
                vec![arg("/var/spool/cron/crontabs")]
            }
        }
        "update-alternatives" => {
            if args.iter().any(|a| {
                matches!(
                    a.text(),
                    "--install"
                        | "--set"
                        | "--remove"
                        | "--remove-all"
                        | "--config"
                        | "--auto"
                        | "--all"
                )
            }) {
                vec![arg("/etc/alternatives")]
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

/// Apply the write rules to one written path.
pub fn check(g: &Guard, ctx: &Ctx, path: &Arg, shown: &str, out: &mut Findings) {
    if path.opaque {
        return;
    }
    // The first alternative has every unknown part empty: `/etc/$f` → `/etc/`.
    let Some(alt) = path.alts.first().filter(|a| !a.is_empty()) else {
        return;
    };
    for cand in ctx.resolve(alt) {
        if let Some(dev) = cand.strip_prefix("/dev/") {
            if !(HARMLESS_DEVICES.contains(&dev)
                || HARMLESS_DEVICE_DIRS.iter().any(|d| dev.starts_with(d)))
            {
                out.deny(Rule::DiskWrite, || {
                    format!("`{shown}` writes to the device {cand}, which can destroy a disk")
                });
            }
        } else if cand == "/proc/sysrq-trigger" {
            out.deny(Rule::Power, || {
                format!("`{shown}` writes /proc/sysrq-trigger, which can reboot or halt the host")
            });
        } else if let Some(e) = g.write_protected.containing(&cand) {
            out.deny(Rule::ProtectedWrite, || {
                if cand == e {
                    format!("`{shown}` writes {e}, which is write-protected")
                } else {
                    format!("`{shown}` writes {cand}, under the write-protected {e}")
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(prog: &str, a: &str) -> Vec<String> {
        let args: Vec<Arg> = a
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(Arg::plain)
            .collect();
        written(prog, &args)
            .iter()
            .map(|a| a.text().to_string())
            .collect()
    }

    #[test]
    fn written_paths_by_program() {
        assert_eq!(w("cp", "-r a b /etc/x"), ["/etc/x"]);
        assert_eq!(w("cp", "-t /etc a b"), ["/etc"]);
        assert_eq!(w("mv", "/etc/a /tmp"), ["/etc/a", "/tmp"]);
        assert_eq!(w("sed", "-i s/a/b/ /etc/x"), ["/etc/x"]);
        assert_eq!(w("sed", "-i.bak -e s/a/b/ f"), ["f"]);
        assert!(w("sed", "s/a/b/ /etc/x").is_empty());
        assert_eq!(w("perl", "-pi -e s/a/b/ /etc/x"), ["/etc/x"]);
        assert_eq!(w("chmod", "-R -x /etc/x"), ["/etc/x"]);
        assert_eq!(w("chown", "root:root /etc/x"), ["/etc/x"]);
        assert_eq!(w("dd", "if=x of=/dev/sda bs=1M"), ["/dev/sda"]);
        assert_eq!(w("tee", "-a /etc/hosts"), ["/etc/hosts"]);
        assert_eq!(w("tar", "xzf a.tgz -C /etc"), ["/etc/*"]);
        assert_eq!(w("tar", "-czf a.tgz /etc"), ["a.tgz"]);
        assert_eq!(w("curl", "-fsSL -o /etc/x https://h"), ["/etc/x"]);
        assert_eq!(w("wget", "-qO- https://h"), Vec::<String>::new());
        assert_eq!(w("rsync", "-a x host:/etc/"), Vec::<String>::new());
        assert_eq!(w("vim", "+10 /etc/hosts"), ["/etc/hosts"]);
        assert_eq!(w("systemctl", "enable nginx"), ["/etc/systemd/system"]);
        assert!(w("systemctl", "status nginx").is_empty());
        assert_eq!(
            w("systemctl", "--user enable x"),
            ["~/.config/systemd/user"]
        );
        assert_eq!(w("crontab", "/tmp/evil"), ["/var/spool/cron/crontabs"]);
        assert_eq!(w("crontab", "-"), ["/var/spool/cron/crontabs"]);
        assert_eq!(w("crontab", "-e"), ["/var/spool/cron/crontabs"]);
        assert!(w("crontab", "-l").is_empty());
        assert!(w("crontab", "-u www -l").is_empty());
        assert_eq!(w("ln", "-s /etc/shadow x"), ["/etc/shadow", "x"]);
    }
}
