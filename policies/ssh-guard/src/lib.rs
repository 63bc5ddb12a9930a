//! `ssh-guard`: refuses destructive shell commands on SSH targets, holds commands run as
//! another user for approval, and keeps SFTP and port forwarding off unless configured.
//!
//! Shell lines (`exec` requests and lines typed in an interactive shell) are read with a small
//! shell parser (`lex`, `grammar`) and walked in execution order (`walk`): every simple command —
//! inside `;`, `&&`, `|`, `$(...)`, backticks, `<(...)`, functions, `sh -c '...'`, `eval`,
//! `xargs`, `find -exec`, `sudo`/`env`/`nohup`/`timeout`/... wrappers, and text piped into a
//! shell — is checked after quote removal, brace expansion and the variables the line itself
//! sets (`r''m`, `\rm`, `/bin/rm`, `$'\x72m'`, `r{m,}`, `X=/; rm -rf $X` are all `rm`).
//!
//! Denied, each reason naming its rule (`(ssh-guard RULE)`):
//! - `recursive_delete`: `rm -r`, `find -delete`, `rsync --delete`, `mv` taking away a
//!   protected path, an ancestor of one or all of one's contents (`/`, `/*`, `~`, `/usr`,
//!   `/var/*`, ...), or a path only known at run time;
//! - `recursive_chmod`: `chmod`/`chown`/`chgrp`/`setfacl`/`chattr -R` across a protected path;
//! - `disk_write`: `mkfs*`, `wipefs`, partitioners (listing is fine), `dd of=/dev/sda`,
//!   `> /dev/nvme0n1` and any other write to a device but `/dev/null` and the like;
//! - `power`: `shutdown`, `reboot`, `halt`, `poweroff`, `init 0|6`, `systemctl reboot`, `kill 1`,
//!   `echo b > /proc/sysrq-trigger`;
//! - `download_exec`: downloaded code run by an interpreter (`curl ... | sh`,
//!   `sh <(curl ...)`, `bash -c "$(wget -O- ...)"`), and shells wired to the network
//!   (`bash -i >& /dev/tcp/...`, `nc -e /bin/sh`);
//! - `decoded_exec`: decoded text run as code (`base64 -d | sh`);
//! - `protected_write`: writes under `/etc` and `/boot` (redirections, `tee`, `cp`, `mv`,
//!   `ln`, `install`, `sed -i`, `truncate`, `chmod`, `chown`, editors, `tar -x -C`, account
//!   tools, `systemctl enable`, ...);
//! - `fork_bomb`: a function calling itself in a pipeline or the background;
//! - `dynamic_command`: a program, `sh -c` string or `eval` text only known at run time;
//! - `unparseable`: a line that does not parse (unbalanced quotes): fail closed;
//! - `deny_commands`: programs the config refuses;
//! - `network`: while the target allows no port forwarding, connections from the host
//!   (`/dev/tcp`, `nc`, `socat`, `ssh`, ...), which would tunnel around the gateway.
//!
//! `protected_write` covers persistence too: `~/.ssh`, login scripts, cron and at spools,
//! systemd unit directories, binary and library directories; a path through
//! `/proc/PID/root` or `/proc/PID/cwd` counts as what it names, a link as its target too.
//!
//! In allowlist mode (`"mode": "allowlist"`, `allowlist.rs`) only vetted read-only commands
//! run without approval; every other program and every write to a file is held.
//!
//! `sudo`, `su`, `doas`, `pkexec` and `run0` need approval (`approval_commands`); the command
//! they run is checked too, and a destructive one is denied. SFTP operations (`files`) and port
//! forwards are denied unless `allow_sftp` / `allow_forwarding` / `allow_remote_forwarding`
//! say otherwise. SQL and HTTP are not this policy's business: allowed. Nothing is masked
//! (chain `pci-mask` for command output).
//!
//! Config (JSON; warden.toml tables arrive as JSON; unknown keys are refused); see
//! `config.rs` and the README for the defaults:
//! `{ "mode": "allowlist", "allow": ["power"], "protected_paths": ["/data"], "write_protected_paths": ["/usr/local"],
//!    "approval_commands": ["sudo"], "deny_commands": ["nmap"], "allow_sftp": true,
//!    "sftp_read_only": true, "sftp_denied_paths": ["/srv/secrets"],
//!    "allow_forwarding": ["db.internal:5432"], "allow_remote_forwarding": false }`

mod allowlist;
mod ast;
mod builtins;
mod config;
mod escapes;
mod expand;
mod feed;
mod files;
mod findings;
mod grammar;
mod lex;
mod network;
mod opts;
mod paths;
mod rules;
mod walk;
mod wrappers;
mod writes;

use config::Guard;
use findings::Rule;
use warden_policy::{Command, Policy, Session, StdinKind, Verdict, export_policy};

struct SshGuard {
    guard: Guard,
}

impl Policy for SshGuard {
    fn init(config: &str) -> Result<Self, String> {
        Ok(SshGuard {
            guard: Guard::from_json(config)?,
        })
    }

    fn check(&self, _session: &Session, command: &Command) -> Verdict {
        match command {
            Command::Shell(s) => {
                let mut found = walk::check_line(&self.guard, &s.line, s.interactive);
                // The gateway's reading agrees or adds: another language's program on stdin
                // is held whatever the walk made of the line.
                if s.stdin_kind == StdinKind::Code {
                    found.hold(Rule::StdinCode, || {
                        format!(
                            "`{}` reads its program from standard input (or the terminal), which no policy can see",
                            s.line
                        )
                    });
                }
                found.verdict()
            }
            Command::File(f) => files::check_file(&self.guard, f).verdict(),
            Command::Forward(f) => files::check_forward(&self.guard, f).verdict(),
            Command::Sql(_) | Command::Http(_) => Verdict::Allow,
        }
    }
}

export_policy!(SshGuard);
