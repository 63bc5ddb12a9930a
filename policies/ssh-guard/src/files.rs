//! SFTP file operations, file transfers run as commands (`scp -t`, `rsync --server`,
//! `sftp-server`), and port forwards. All are refused unless the config allows them.
//!
//! SFTP paths are as the client sent them; a relative path is relative to the login directory,
//! which is taken to be a home directory (`/root` or `/home/USER`), and `..` is applied
//! lexically — so `../../etc/shadow` is `/etc/shadow`. Symbolic links already on the host are
//! invisible to the policy; creating one that points into a denied path is refused.

use crate::config::{Guard, Sftp};
use crate::expand::{Arg, Ctx};
use crate::findings::{Findings, Rule};
use crate::opts::{Spec, parse};
use crate::paths::{HOMES, resolve};
use warden_policy::{FileOp, Forward};

const READS: &[&str] = &["open-read", "list", "readlink", "stat", "realpath"];
const WRITES: &[&str] = &[
    "open-write",
    "remove",
    "rename",
    "mkdir",
    "rmdir",
    "setstat",
    "symlink",
    "link",
];

fn off(out: &mut Findings, what: &str) {
    out.deny(Rule::Sftp, || {
        format!("{what}: sftp is not allowed on this target")
    });
}

/// One SFTP operation.
pub fn check_file(g: &Guard, f: &FileOp) -> Findings {
    let mut out = Findings::new(&g.allowed);
    let Some(sftp) = &g.sftp else {
        off(&mut out, &format!("sftp {} {}", f.op, f.path));
        return out;
    };
    let op = f.op.as_str();
    if !READS.contains(&op) && !WRITES.contains(&op) {
        out.deny(Rule::Sftp, || format!("unknown sftp operation `{op}`"));
        return out;
    }
    let path = if f.path.is_empty() { "." } else { &f.path };
    match op {
        // Metadata only: harmless even on denied paths.
        "stat" | "realpath" | "readlink" => {}
        "open-read" | "list" => read(sftp, op, path, &mut out),
        _ => {
            if sftp.read_only {
                out.deny(Rule::SftpReadOnly, || {
                    format!("sftp {op} {path}: sftp is read-only on this target")
                });
                return out;
            }
            write(g, sftp, op, path, &mut out);
            if let Some(to) = &f.to {
                // The new name of a rename is written; a link target can be read (or, for a
                // hard link, written) through the link.
                write(g, sftp, op, to, &mut out);
            }
        }
    }
    out
}

fn candidates(path: &str) -> Vec<String> {
    let homes: Vec<String> = HOMES.iter().map(|h| h.to_string()).collect();
    resolve(path, &homes, &homes)
}

fn read(sftp: &Sftp, op: &str, path: &str, out: &mut Findings) {
    for cand in candidates(path) {
        if let Some(e) = sftp.denied.containing(&cand) {
            out.deny(Rule::SftpPath, || {
                format!("sftp {op} {path}: {cand} is under the denied path {e}")
            });
        }
    }
}

fn write(g: &Guard, sftp: &Sftp, op: &str, path: &str, out: &mut Findings) {
    read(sftp, op, path, out);
    for cand in candidates(path) {
        if let Some(e) = g.write_protected.containing(&cand) {
            out.deny(Rule::ProtectedWrite, || {
                format!("sftp {op} {path}: {cand} is under the write-protected {e}")
            });
        }
        let (takes_away, rule) = match op {
            "remove" | "rmdir" | "rename" => (true, Rule::RecursiveDelete),
            "setstat" => (true, Rule::RecursiveChmod),
            _ => (false, Rule::RecursiveDelete),
        };
        // SFTP paths are not globs: a name with `*` in it is just a name.
        if takes_away
            && !cand.contains(['*', '?', '['])
            && let Some(e) = g.protected.deleted_by(&cand)
        {
            out.deny(rule, || {
                format!("sftp {op} {path}: it is the protected path {e}")
            });
        }
    }
}

/// File transfers run as commands: the gateway sees their bytes as a command's output, not as
/// SFTP operations, so they follow the SFTP settings here. Returns whether `prog` was one.
pub fn shell_transfer(
    g: &Guard,
    ctx: &Ctx,
    prog: &str,
    args: &[Arg],
    shown: &str,
    out: &mut Findings,
) -> bool {
    match prog {
        "sftp-server" | "internal-sftp" => {
            out.deny(Rule::Sftp, || {
                format!("`{shown}` runs an sftp server inside a command, where the gateway cannot check its file operations; use the sftp subsystem")
            });
            true
        }
        "scp" => {
            let p = parse(
                args,
                Spec {
                    short: "cFiJloPSDX",
                    ..Spec::default()
                },
            );
            let (sink, source) = (p.has(&["-t"]), p.has(&["-f"]));
            if !(sink || source) {
                return false;
            }
            transfer(
                g,
                ctx,
                if sink { "open-write" } else { "open-read" },
                &p.operands,
                shown,
                out,
            );
            true
        }
        "rsync" if args.iter().any(|a| a.text() == "--server") => {
            let p = parse(args, Spec::default());
            let op = if p.has(&["--sender"]) {
                "open-read"
            } else {
                "open-write"
            };
            let paths: Vec<Arg> = p.operands.into_iter().filter(|a| a.text() != ".").collect();
            transfer(g, ctx, op, &paths, shown, out);
            true
        }
        _ => false,
    }
}

fn transfer(g: &Guard, ctx: &Ctx, op: &str, paths: &[Arg], shown: &str, out: &mut Findings) {
    let Some(sftp) = &g.sftp else {
        off(out, &format!("`{shown}` transfers files"));
        return;
    };
    if op == "open-write" && sftp.read_only {
        out.deny(Rule::SftpReadOnly, || {
            format!("`{shown}` writes files: sftp is read-only on this target")
        });
        return;
    }
    for p in paths {
        for alt in &p.alts {
            for cand in ctx.resolve(alt) {
                if op == "open-read" {
                    read(sftp, op, &cand, out);
                } else {
                    write(g, sftp, op, &cand, out);
                }
            }
        }
    }
}

/// One port-forwarding request.
pub fn check_forward(g: &Guard, f: &Forward) -> Findings {
    let mut out = Findings::new(&g.allowed);
    let host = f
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    match f.direction.as_str() {
        "local" => {
            let allowed = g
                .forwards
                .iter()
                .any(|(h, p)| wildcard(h, &host) && (p == "*" || *p == f.port.to_string()));
            if !allowed {
                out.deny(Rule::Forward, || {
                    format!(
                        "port forwarding to {}:{} is not allowed on this target",
                        f.host, f.port
                    )
                });
            }
        }
        "remote" => {
            if !g.remote_forwarding {
                out.deny(Rule::RemoteForward, || {
                    format!(
                        "remote port forwarding (listening on {}:{}) is not allowed on this target",
                        f.host, f.port
                    )
                });
            }
        }
        other => out.deny(Rule::Forward, || {
            format!("unknown forwarding direction `{other}`")
        }),
    }
    out
}

/// `*` matches any run of characters; everything else itself.
fn wildcard(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            let Some(rest) = s.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| wildcard(tail, &rest[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use super::*;
    use warden_policy::Verdict;

    fn guard(config: &str) -> Guard {
        Guard::from_json(config).unwrap_or_else(|e| panic!("{config}: {e}"))
    }

    fn file(g: &Guard, op: &str, path: &str, to: Option<&str>) -> Verdict {
        let f = FileOp {
            op: op.to_string(),
            path: path.to_string(),
            to: to.map(str::to_string),
        };
        check_file(g, &f).verdict()
    }

    fn forward(g: &Guard, direction: &str, host: &str, port: u32) -> Verdict {
        let f = Forward {
            direction: direction.to_string(),
            host: host.to_string(),
            port,
        };
        check_forward(g, &f).verdict()
    }

    fn deny_rule(v: Verdict) -> String {
        match v {
            Verdict::Deny(r) => r
                .rsplit_once("(ssh-guard ")
                .map_or(r.clone(), |(_, n)| n.trim_end_matches(')').to_string()),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn sftp_is_off_by_default() {
        let g = guard("");
        assert_eq!(deny_rule(file(&g, "stat", ".", None)), "allow_sftp");
        assert_eq!(deny_rule(file(&g, "open-read", "x", None)), "allow_sftp");
    }

    #[test]
    fn sftp_paths_are_normalised_and_checked() {
        let g = guard(r#"{"allow_sftp": true}"#);
        assert!(matches!(
            file(&g, "open-read", "notes.txt", None),
            Verdict::Allow
        ));
        assert!(matches!(
            file(&g, "stat", "/etc/shadow", None),
            Verdict::Allow
        ));
        assert!(matches!(
            file(&g, "open-write", "/srv/www/index.html", None),
            Verdict::Allow
        ));
        for (op, path, to, rule) in [
            ("open-read", "/etc/shadow", None, "sftp_denied_paths"),
            ("open-read", "../../etc/shadow", None, "sftp_denied_paths"),
            ("list", "//root/./.ssh", None, "sftp_denied_paths"),
            (
                "open-write",
                ".ssh/authorized_keys",
                None,
                "sftp_denied_paths",
            ),
            ("rename", "a", Some("/etc/cron.d/x"), "sftp_denied_paths"),
            ("symlink", "link", Some("/etc/shadow"), "sftp_denied_paths"),
            ("rmdir", "/usr", None, "recursive_delete"),
            ("setstat", "/", None, "recursive_chmod"),
            ("frobnicate", "x", None, "allow_sftp"),
        ] {
            assert_eq!(deny_rule(file(&g, op, path, to)), rule, "{op} {path}");
        }
        let ro = guard(r#"{"allow_sftp": true, "sftp_read_only": true}"#);
        assert_eq!(deny_rule(file(&ro, "mkdir", "new", None)), "sftp_read_only");
        assert!(matches!(file(&ro, "open-read", "x", None), Verdict::Allow));
    }

    #[test]
    fn forwards_need_a_matching_pattern() {
        let g = guard(r#"{"allow_forwarding": ["db.internal:5432", "*.svc:*", "[::1]:8080"]}"#);
        assert!(matches!(
            forward(&g, "local", "db.internal", 5432),
            Verdict::Allow
        ));
        assert!(matches!(
            forward(&g, "local", "api.svc", 443),
            Verdict::Allow
        ));
        assert!(matches!(
            forward(&g, "local", "[::1]", 8080),
            Verdict::Allow
        ));
        assert_eq!(
            deny_rule(forward(&g, "local", "db.internal", 5433)),
            "allow_forwarding"
        );
        assert_eq!(
            deny_rule(forward(&g, "remote", "0.0.0.0", 80)),
            "allow_remote_forwarding"
        );
        let r = guard(r#"{"allow_remote_forwarding": true}"#);
        assert!(matches!(
            forward(&r, "remote", "localhost", 9000),
            Verdict::Allow
        ));
        assert_eq!(deny_rule(forward(&r, "local", "x", 1)), "allow_forwarding");
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*.internal", "db.internal"));
        assert!(wildcard("db", "db"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("*.internal", "db.internal.evil.com"));
        assert!(!wildcard("db", "db2"));
    }
}
