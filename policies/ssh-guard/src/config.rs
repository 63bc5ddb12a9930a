//! `ssh-guard`'s config (JSON; warden.toml tables arrive as JSON) and the checked form the
//! policy keeps. Unknown keys and bad values are refused, so a typo never loosens the guard.

use crate::findings::Rule;
use crate::paths::PathList;
use serde::Deserialize;

/// System paths a recursive delete must not take away (nor any directory holding one).
/// `X/*` protects each directory right under `X`.
pub const PROTECTED_PATHS: &[&str] = &[
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/home/*", "/lib*", "/media", "/mnt", "/opt",
    "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/usr", "/usr/*", "/var", "/var/*", "~",
];
/// Paths nothing may be written under (redirections, `tee`, `cp`, `sed -i`, ...): the system's
/// configuration, and every place a write there would outlive the session — code run on a
/// schedule, programs and libraries other users run — and [`HOME_PERSISTENCE`] in every home.
pub const WRITE_PROTECTED_PATHS: &[&str] = &[
    "/etc",
    "/boot",
    // Schedules and services.
    "/var/spool/cron",
    "/var/spool/at",
    "/usr/lib/systemd",
    "/lib/systemd",
    "/run/systemd",
    // Programs and libraries.
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/usr/lib",
    "/lib",
    "/lib64",
    "/usr/lib64",
    "/usr/libexec",
];
/// Paths in a home directory a write to which would outlive the session: keys that let a
/// client in without the gateway, code run at login or by every shell, user units, programs.
/// Write-protected in every home (`~`, `/root`, `/home/*`): the guard does not know which
/// account the gateway logs in as, and a write names a home by its path as often as by `~`.
pub const HOME_PERSISTENCE: &[&str] = &[
    ".ssh",
    ".profile",
    ".bash_profile",
    ".bash_login",
    ".bashrc",
    ".bash_logout",
    ".zshrc",
    ".zprofile",
    ".zshenv",
    ".zlogin",
    ".config/fish",
    ".pam_environment",
    ".config/autostart",
    ".config/environment.d",
    ".config/systemd",
    "bin",
    ".local/bin",
];
/// Paths SFTP may neither read nor write under.
pub const SFTP_DENIED_PATHS: &[&str] = &[
    "/etc",
    "/boot",
    "/root/.ssh",
    "~/.ssh",
    "/home/*/.ssh",
    "/proc",
    "/sys",
    "/dev",
];
/// Programs that run a command as another user: held for approval.
pub const APPROVAL_COMMANDS: &[&str] = &["sudo", "su", "doas", "pkexec", "run0"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `denylist` (the default: what the rules refuse is refused, the rest runs) or
    /// `allowlist` (only the vetted read-only commands of `allowlist.rs` run; the rest is held
    /// for approval).
    pub mode: Option<String>,
    /// Rules to switch off, by name.
    pub allow: Vec<String>,
    /// Added to [`PROTECTED_PATHS`].
    pub protected_paths: Vec<String>,
    /// Added to [`WRITE_PROTECTED_PATHS`].
    pub write_protected_paths: Vec<String>,
    /// Replaces [`APPROVAL_COMMANDS`].
    pub approval_commands: Option<Vec<String>>,
    /// More programs to refuse outright.
    pub deny_commands: Vec<String>,
    pub allow_sftp: bool,
    pub sftp_read_only: bool,
    /// Added to [`SFTP_DENIED_PATHS`].
    pub sftp_denied_paths: Vec<String>,
    /// `host:port` patterns (`*` wildcards) local forwards may reach.
    pub allow_forwarding: Vec<String>,
    pub allow_remote_forwarding: bool,
}

/// The checked config.
#[derive(Debug)]
pub struct Guard {
    /// Allowlist mode: commands not on the allowlist are held for approval.
    pub allowlist: bool,
    pub allowed: Vec<Rule>,
    pub protected: PathList,
    pub write_protected: PathList,
    pub approval: Vec<String>,
    pub deny_commands: Vec<String>,
    pub sftp: Option<Sftp>,
    pub forwards: Vec<(String, String)>,
    pub remote_forwarding: bool,
}

#[derive(Debug)]
pub struct Sftp {
    pub read_only: bool,
    pub denied: PathList,
}

impl Guard {
    pub fn from_json(text: &str) -> Result<Guard, String> {
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_json::from_str(text).map_err(|e| format!("ssh-guard config: {e}"))?
        };
        Guard::new(config).map_err(|e| format!("ssh-guard config: {e}"))
    }

    pub fn new(c: Config) -> Result<Guard, String> {
        let mut allowed = Vec::new();
        for name in &c.allow {
            match Rule::SWITCHABLE.iter().find(|r| r.name() == name) {
                Some(r) => allowed.push(*r),
                None => {
                    let known: Vec<_> = Rule::SWITCHABLE.iter().map(|r| r.name()).collect();
                    return Err(format!("cannot allow `{name}`: `allow` takes {known:?}"));
                }
            }
        }
        let paths = |key: &str, defaults: &[&str], extra: &[String]| {
            let mut l = PathList::new(defaults)?;
            l.extend(PathList::new(extra).map_err(|e| format!("`{key}`: {e}"))?);
            Ok::<_, String>(l)
        };
        let protected = paths("protected_paths", PROTECTED_PATHS, &c.protected_paths)?;
        let mut write_protected = paths(
            "write_protected_paths",
            WRITE_PROTECTED_PATHS,
            &c.write_protected_paths,
        )?;
        let homes: Vec<String> = HOME_PERSISTENCE
            .iter()
            .flat_map(|p| {
                [
                    format!("~/{p}"),
                    format!("/root/{p}"),
                    format!("/home/*/{p}"),
                ]
            })
            .collect();
        write_protected.extend(PathList::new(&homes)?);
        let sftp_denied = paths("sftp_denied_paths", SFTP_DENIED_PATHS, &c.sftp_denied_paths)?;
        let approval = c
            .approval_commands
            .unwrap_or_else(|| APPROVAL_COMMANDS.iter().map(|s| s.to_string()).collect());
        for (key, names) in [
            ("approval_commands", &approval),
            ("deny_commands", &c.deny_commands),
        ] {
            if let Some(n) = names.iter().find(|n| n.is_empty() || n.contains('/')) {
                return Err(format!(
                    "`{key}` entry `{n}` must be a program name (no path)"
                ));
            }
        }
        if c.sftp_read_only && !c.allow_sftp {
            return Err("`sftp_read_only` needs `allow_sftp = true`".to_string());
        }
        let allowlist = match c.mode.as_deref() {
            None | Some("denylist") => false,
            Some("allowlist") => true,
            Some(m) => return Err(format!("`mode` is `denylist` or `allowlist`, not `{m}`")),
        };
        // With no forwarding allowed, a connection from the host is a tunnel around it.
        if !c.allow_forwarding.is_empty() || c.allow_remote_forwarding {
            allowed.push(Rule::Network);
        }
        let mut forwards = Vec::new();
        for p in &c.allow_forwarding {
            forwards.push(forward_pattern(p)?);
        }
        Ok(Guard {
            allowlist,
            allowed,
            protected,
            write_protected,
            approval,
            deny_commands: c.deny_commands,
            sftp: c.allow_sftp.then_some(Sftp {
                read_only: c.sftp_read_only,
                denied: sftp_denied,
            }),
            forwards,
            remote_forwarding: c.allow_remote_forwarding,
        })
    }

    /// Whether `prog` is held for approval (`sudoedit` counts as `sudo`).
    pub fn needs_approval(&self, prog: &str) -> bool {
        let prog = if prog == "sudoedit" { "sudo" } else { prog };
        self.approval.iter().any(|a| a == prog)
    }
}

/// `host:port` → (lower-case host without brackets, port); either may be `*`.
fn forward_pattern(p: &str) -> Result<(String, String), String> {
    let bad = || format!("`allow_forwarding` entry `{p}` must be `host:port` (`*` wildcards)");
    let (host, port) = p.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || !(port == "*" || port.parse::<u16>().is_ok()) {
        return Err(bad());
    }
    Ok((host.to_ascii_lowercase(), port.to_string()))
}
