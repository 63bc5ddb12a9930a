//! `warden.toml`: plain serde types, unknown keys rejected, durations in human form. Each
//! subsystem owns its section's type ([`PolicyConfig`], [`AuditConfig`], [`IdentityConfig`]);
//! this file composes them with the targets and resolves relative paths against the file.

use crate::audit::AuditConfig;
use crate::identity::IdentityConfig;
use crate::policy::{PolicyConfig, PolicyRef, Protocol};
use crate::proxy::accept::ConnectionLimits;
use crate::proxy::postgres::config::{PostgresListener, PostgresUpstream, UpstreamTls};
use crate::proxy::ssh::config::{SshListener, SshUpstream};
use crate::session::SessionLimits;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A whole `warden.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Policy modules and the limits they run under.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The audit database.
    pub audit: AuditConfig,
    /// How client tokens are verified.
    pub identity: IdentityConfig,
    /// The PostgreSQL listener (absent: no PostgreSQL listener).
    #[serde(default)]
    pub postgres: Option<PostgresListener>,
    /// The SSH listener (absent: no SSH listener).
    #[serde(default)]
    pub ssh: Option<SshListener>,
    /// Approvals and the local admin API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Bounds on connections, shared by every listener (`[connections]`).
    #[serde(default)]
    pub connections: ConnectionLimits,
    /// Bounds on authenticated sessions (`[sessions]`).
    #[serde(default)]
    pub sessions: SessionLimits,
    /// What clients can reach, by name (the Postgres database name, the SSH login's target,
    /// the HTTP route).
    #[serde(default, rename = "targets")]
    pub targets: BTreeMap<String, TargetConfig>,
}

/// One target: its protocol and its policy chain, in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// `postgres`, `ssh` or `http`.
    pub protocol: Protocol,
    /// The chain asked about every command, most important first. An empty chain denies
    /// everything: use the `allow-all` policy to opt out of checks explicitly.
    #[serde(default)]
    pub policies: Vec<PolicyEntry>,
    /// Where a `postgres` target's connections go, with the gateway's own credentials.
    #[serde(default)]
    pub postgres: Option<PostgresUpstream>,
    /// Where an `ssh` target's sessions go, with the gateway's own key or password.
    #[serde(default)]
    pub ssh: Option<SshUpstream>,
    /// Who may reach the target: a principal in one of these token groups ...
    #[serde(default)]
    pub allow_groups: Vec<String>,
    /// ... or with one of these subjects (`sub`). `["*"]` in either admits every verified
    /// token. A target must name at least one: none reaches it by default.
    #[serde(default)]
    pub allow_subjects: Vec<String>,
    /// Sessions open on this target at once, all principals together (absent: unbounded
    /// beyond the connection caps).
    #[serde(default)]
    pub max_sessions: Option<usize>,
    /// Sessions one principal (`sub`) may hold on this target at once; overrides
    /// `[sessions] max_per_principal`.
    #[serde(default)]
    pub max_sessions_per_principal: Option<usize>,
    /// Let the gateway log in upstream as a PostgreSQL superuser or as SSH `root`. Off:
    /// such an upstream is refused (at start for SSH `root`, at login for a superuser role),
    /// because a privileged upstream makes every policy and approval bypassable.
    #[serde(default)]
    pub allow_privileged_upstream: bool,
}

impl TargetConfig {
    /// Whether `principal` may reach this target by its allow lists (the token's own
    /// `targets` claim is checked separately, by the session path).
    pub fn admits(&self, principal: &crate::identity::Principal) -> bool {
        let any = |list: &[String], has: &dyn Fn(&str) -> bool| {
            list.iter().any(|entry| entry == "*" || has(entry))
        };
        any(&self.allow_subjects, &|s| s == principal.subject)
            || any(&self.allow_groups, &|g| {
                principal.groups.iter().any(|pg| pg == g)
            })
    }
}

/// `[admin]`: approvals and the local admin API (`warden approvals ...` talks to it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin API: loopback, unless `tls_cert` and `tls_key` are set (bearer
    /// tokens must not cross a network in the clear).
    pub listen: std::net::SocketAddr,
    /// PEM certificate chain the admin API serves HTTPS with.
    pub tls_cert: Option<PathBuf>,
    /// Its PEM private key.
    pub tls_key: Option<PathBuf>,
    /// Token groups allowed to decide approvals.
    pub approver_groups: Vec<String>,
    /// Token groups allowed to read the audit trail through the admin API (sessions,
    /// recordings, exports, verification, reports).
    pub auditor_groups: Vec<String>,
    /// Who may scrape `GET /metrics`: absent, anyone who reaches the admin listener (labels
    /// hold only names from this file, never a principal or a command); set, a bearer token
    /// in one of these groups.
    pub metrics_groups: Option<Vec<String>>,
    /// How long a held command waits for a decision before it is refused.
    #[serde(with = "humantime_serde")]
    pub approval_timeout: std::time::Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9190)),
            tls_cert: None,
            tls_key: None,
            approver_groups: vec!["approvers".to_string()],
            auditor_groups: vec!["auditors".to_string()],
            metrics_groups: None,
            approval_timeout: std::time::Duration::from_secs(300),
        }
    }
}

/// One entry of a chain: `{ module = "pci-mask", config = { rule = "pan" } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// The module's name: its file name in the policy directory without `.wasm`.
    pub module: String,
    /// Passed to the module's `init`: a string as is, a table or array as JSON.
    #[serde(default)]
    pub config: Option<toml::Value>,
    /// `enforce` (the default) or `shadow`: a shadow policy is asked about every command and
    /// its verdict audited beside the enforced one, but it never changes what the client gets
    /// (its failures are recorded, never a deny). Switching modes is picked up by hot reload.
    #[serde(default)]
    pub mode: PolicyMode,
}

/// How a chain entry's verdict counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    #[default]
    Enforce,
    Shadow,
}

impl PolicyEntry {
    /// The string the module's `init` receives.
    pub fn config_string(&self) -> String {
        match &self.config {
            None => String::new(),
            Some(toml::Value::String(s)) => s.clone(),
            Some(other) => serde_json::to_string(other).unwrap_or_default(),
        }
    }

    pub fn to_ref(&self) -> PolicyRef {
        PolicyRef {
            module: self.module.clone(),
            config: Arc::from(self.config_string()),
            shadow: self.mode == PolicyMode::Shadow,
        }
    }
}

impl TargetConfig {
    /// The chain as the engine takes it.
    pub fn chain(&self) -> Vec<PolicyRef> {
        self.policies.iter().map(PolicyEntry::to_ref).collect()
    }
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Read, parse, validate, and make relative paths relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.policy.dir);
        if let Some(dir) = &mut self.policy.cache_dir {
            fix(dir);
        }
        fix(&mut self.audit.path);
        self.admin
            .tls_cert
            .iter_mut()
            .chain(self.admin.tls_key.iter_mut())
            .for_each(fix);
        if let Some(c) = &mut self.audit.checkpoints {
            fix(&mut c.key);
            fix(&mut c.file);
        }
        self.identity.resolve_relative_to(base);
        if let Some(pg) = &mut self.postgres {
            pg.paths_mut().for_each(&fix);
        }
        if let Some(ssh) = &mut self.ssh {
            ssh.paths_mut().for_each(&fix);
        }
        for target in self.targets.values_mut() {
            if let Some(up) = &mut target.ssh {
                up.paths_mut().for_each(&fix);
            }
            if let Some(up) = &mut target.postgres {
                up.paths_mut().for_each(&fix);
            }
        }
    }

    fn validate(&self) -> Result<(), String> {
        self.identity
            .validate()
            .map_err(|e| format!("[identity]: {e}"))?;
        self.audit.validate().map_err(|e| format!("[audit]: {e}"))?;
        if let Some(pg) = &self.postgres {
            pg.validate().map_err(|e| format!("[postgres]: {e}"))?;
        }
        self.connections
            .validate()
            .map_err(|e| format!("[connections]: {e}"))?;
        self.sessions
            .validate()
            .map_err(|e| format!("[sessions]: {e}"))?;
        if let Some(ssh) = &self.ssh {
            ssh.validate().map_err(|e| format!("[ssh]: {e}"))?;
        }
        match (&self.admin.tls_cert, &self.admin.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err("[admin]: tls_cert and tls_key go together".into());
            }
            (None, None) if !self.admin.listen.ip().is_loopback() => {
                return Err(
                    "[admin]: listen must be a loopback address unless tls_cert and \
                     tls_key are set (tokens must not cross a network in the clear)"
                        .into(),
                );
            }
            _ => {}
        }
        if self.policy.deadline.is_zero() {
            return Err("policy.deadline must be greater than zero".into());
        }
        for (name, target) in &self.targets {
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '@') {
                return Err(format!(
                    "target name `{name}` must be non-empty, without spaces or `@`"
                ));
            }
            if target.protocol == Protocol::Postgres && target.postgres.is_none() {
                return Err(format!(
                    "target `{name}`: a postgres target needs [targets.{name}.postgres]"
                ));
            }
            if !target.policies.is_empty()
                && target.policies.iter().all(|p| p.mode == PolicyMode::Shadow)
            {
                return Err(format!(
                    "target `{name}`: every policy is mode = \"shadow\", so nothing is enforced \
                     and every command would be denied; enforce at least one (allow-all to \
                     enforce nothing)"
                ));
            }
            for entry in &target.policies {
                if entry.module.is_empty() || entry.module.contains(['/', '\\']) {
                    return Err(format!(
                        "target `{name}`: invalid policy module name `{}`",
                        entry.module
                    ));
                }
            }
            if target.protocol == Protocol::Ssh {
                let up = target.ssh.as_ref().ok_or_else(|| {
                    format!("target `{name}`: an ssh target needs [targets.{name}.ssh]")
                })?;
                up.validate()
                    .map_err(|e| format!("[targets.{name}.ssh]: {e}"))?;
            }
            if target
                .postgres
                .as_ref()
                .is_some_and(|u| u.tls == UpstreamTls::Verify && u.ca_file.is_none())
            {
                return Err(format!("target `{name}`: tls = \"verify\" needs ca_file"));
            }
            if target.allow_groups.is_empty() && target.allow_subjects.is_empty() {
                return Err(format!(
                    "target `{name}`: say who may reach it with allow_groups and/or \
                     allow_subjects (`[\"*\"]` admits every verified token)"
                ));
            }
            if target.max_sessions == Some(0) || target.max_sessions_per_principal == Some(0) {
                return Err(format!(
                    "target `{name}`: a session cap of 0 would refuse every session"
                ));
            }
            if target.protocol == Protocol::Ssh
                && !target.allow_privileged_upstream
                && target.ssh.as_ref().is_some_and(|u| u.user == "root")
            {
                return Err(format!(
                    "target `{name}`: the gateway would log in to the host as root, which makes \
                     every policy and approval bypassable; use an unprivileged user (with sudo \
                     rules for what needs approval) or set allow_privileged_upstream = true"
                ));
            }
        }
        Ok(())
    }

    /// Every (module, config) pair some target uses: what the engine initialises at load.
    pub fn all_policy_refs(&self) -> Vec<PolicyRef> {
        self.targets
            .values()
            .flat_map(TargetConfig::chain)
            .collect()
    }
}
