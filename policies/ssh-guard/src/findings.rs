//! The rules, by name, and what a check found: the first deny and the first reason to hold.

use crate::expand::Arg;
use warden_policy::Verdict;

/// A rule a command can break. Its name is what deny reasons cite and what `allow` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    RecursiveDelete,
    RecursiveChmod,
    DiskWrite,
    Power,
    DownloadExec,
    DecodedExec,
    ProtectedWrite,
    ForkBomb,
    DynamicCommand,
    Unparseable,
    DeniedCommand,
    Sftp,
    SftpReadOnly,
    SftpPath,
    Forward,
    RemoteForward,
    Network,
    Allowlist,
    UnknownWrapper,
    StdinCode,
}

impl Rule {
    /// The rules `allow` may switch off (the others have keys of their own).
    pub const SWITCHABLE: &[Rule] = &[
        Rule::RecursiveDelete,
        Rule::RecursiveChmod,
        Rule::DiskWrite,
        Rule::Power,
        Rule::DownloadExec,
        Rule::DecodedExec,
        Rule::ProtectedWrite,
        Rule::ForkBomb,
        Rule::DynamicCommand,
        Rule::Unparseable,
        Rule::Network,
        Rule::UnknownWrapper,
        Rule::StdinCode,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rule::RecursiveDelete => "recursive_delete",
            Rule::RecursiveChmod => "recursive_chmod",
            Rule::DiskWrite => "disk_write",
            Rule::Power => "power",
            Rule::DownloadExec => "download_exec",
            Rule::DecodedExec => "decoded_exec",
            Rule::ProtectedWrite => "protected_write",
            Rule::ForkBomb => "fork_bomb",
            Rule::DynamicCommand => "dynamic_command",
            Rule::Unparseable => "unparseable",
            Rule::DeniedCommand => "deny_commands",
            Rule::Sftp => "allow_sftp",
            Rule::SftpReadOnly => "sftp_read_only",
            Rule::SftpPath => "sftp_denied_paths",
            Rule::Forward => "allow_forwarding",
            Rule::RemoteForward => "allow_remote_forwarding",
            Rule::Network => "network",
            Rule::Allowlist => "allowlist",
            Rule::UnknownWrapper => "unknown_wrapper",
            Rule::StdinCode => "stdin_code",
        }
    }
}

/// What checking one command found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Rules switched off by config: findings under them are dropped.
    allowed: Vec<Rule>,
    deny: Option<String>,
    approval: Option<String>,
}

impl Findings {
    pub fn new(allowed: &[Rule]) -> Findings {
        Findings {
            allowed: allowed.to_vec(),
            ..Findings::default()
        }
    }

    /// Record a deny under `rule` (the first one counts).
    pub fn deny(&mut self, rule: Rule, reason: impl FnOnce() -> String) {
        if self.deny.is_none() && !self.allowed.contains(&rule) {
            self.deny = Some(format!("{} (ssh-guard {})", reason(), rule.name()));
        }
    }

    pub fn approval(&mut self, reason: String) {
        if self.approval.is_none() {
            self.approval = Some(format!("{reason} (ssh-guard approval_commands)"));
        }
    }

    /// Record a reason to hold for approval under `rule` (the first one counts).
    pub fn hold(&mut self, rule: Rule, reason: impl FnOnce() -> String) {
        if self.approval.is_none() && !self.allowed.contains(&rule) {
            self.approval = Some(format!("{} (ssh-guard {})", reason(), rule.name()));
        }
    }

    pub fn denied(&self) -> bool {
        self.deny.is_some()
    }

    /// The strictest finding: a deny, else a hold, else allow.
    pub fn verdict(self) -> Verdict {
        match (self.deny, self.approval) {
            (Some(r), _) => Verdict::Deny(r),
            (None, Some(r)) => Verdict::RequireApproval(r),
            (None, None) => Verdict::Allow,
        }
    }
}

/// A command for messages: its arguments joined, cut at 80 characters.
pub fn show(args: &[Arg]) -> String {
    let mut words: Vec<String> = Vec::new();
    for (i, a) in args.iter().enumerate() {
        // The pieces of one word split at run time all show as that word: show it once.
        if a.raw.is_some() && i > 0 && args[i - 1].raw == a.raw {
            continue;
        }
        words.push(a.shown());
    }
    let s = words.join(" ");
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(77).collect::<String>())
    } else {
        s
    }
}
