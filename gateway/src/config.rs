//! `warden.toml`: plain serde types, unknown keys rejected, durations in human form. Each
//! subsystem owns its section's type ([`PolicyConfig`], [`AuditConfig`], [`IdentityConfig`]);
//! this file composes them with the targets and resolves relative paths against the file.

use crate::audit::AuditConfig;
use crate::identity::IdentityConfig;
use crate::policy::{PolicyConfig, PolicyRef, Protocol};
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
    pub protocol: ProtocolName,
    /// The chain asked about every command, most important first. An empty chain denies
    /// everything: use the `allow-all` policy to opt out of checks explicitly.
    #[serde(default)]
    pub policies: Vec<PolicyEntry>,
}

/// The protocol names accepted in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolName {
    Postgres,
    Ssh,
    Http,
}

impl From<ProtocolName> for Protocol {
    fn from(p: ProtocolName) -> Protocol {
        match p {
            ProtocolName::Postgres => Protocol::Postgres,
            ProtocolName::Ssh => Protocol::Ssh,
            ProtocolName::Http => Protocol::Http,
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
        self.identity.resolve_relative_to(base);
    }

    fn validate(&self) -> Result<(), String> {
        self.identity
            .validate()
            .map_err(|e| format!("[identity]: {e}"))?;
        if self.policy.deadline.is_zero() {
            return Err("policy.deadline must be greater than zero".into());
        }
        for (name, target) in &self.targets {
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '@') {
                return Err(format!(
                    "target name `{name}` must be non-empty, without spaces or `@`"
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
