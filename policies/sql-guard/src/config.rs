//! sql-guard's config: the JSON a target gives it, checked and turned into the rules it applies.

use serde::Deserialize;

use crate::SqlGuard;
use crate::changes::{CODE_CHANGES, PROTECTED_SETTINGS};
use crate::functions::{CONFIGURED, DENIED_FUNCTIONS, matches, valid_pattern};

/// Statement kinds denied unless `allow` lists them, with why.
pub const DENIED_KINDS: &[(&str, &str)] = &[
    ("drop", "DROP removes database objects and their data"),
    ("truncate", "TRUNCATE deletes every row of a table"),
    ("alter", "ALTER changes the schema"),
    ("grant", "GRANT changes privileges"),
    ("revoke", "REVOKE changes privileges"),
];

/// The rule for COPY to or from a file on the database server.
pub const COPY_FILE: &str = "copy_file";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    allow: Vec<String>,
    deny_functions: Vec<String>,
    allow_functions: Vec<String>,
    code_changes: Action,
    allow_statements: Vec<String>,
    allow_settings: Vec<String>,
    write_budget: crate::budget::WriteBudgetConfig,
    result_budget: crate::budget::ResultBudget,
}

/// What happens to a code, privilege or configuration change.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Hold it for an approver.
    #[default]
    RequireApproval,
    /// Refuse it.
    Deny,
    /// Let it through.
    Allow,
}

/// One denied function name or family.
pub struct Denied {
    pub pattern: String,
    pub why: &'static str,
    /// From `deny_functions`: `allow_functions` does not take it off.
    pub configured: bool,
}

impl SqlGuard {
    pub fn new(config: Config) -> Result<SqlGuard, String> {
        for rule in &config.allow {
            if rule != COPY_FILE && !DENIED_KINDS.iter().any(|(k, _)| k == rule) {
                let mut known: Vec<_> = DENIED_KINDS.iter().map(|(k, _)| *k).collect();
                known.push(COPY_FILE);
                return Err(format!("cannot allow `{rule}`: `allow` takes {known:?}"));
            }
        }
        for f in &config.allow_functions {
            let listed = DENIED_FUNCTIONS.iter().any(|(p, _)| p == f)
                || (valid_pattern(f)
                    && !f.ends_with('*')
                    && DENIED_FUNCTIONS.iter().any(|(p, _)| matches(p, f)));
            if !listed {
                return Err(format!(
                    "`allow_functions` names `{f}`, which is not on the default list (an entry as listed, such as `dblink*`, or one function an entry covers, such as `dblink_fetch`)"
                ));
            }
        }
        if let Some(f) = config.deny_functions.iter().find(|f| !valid_pattern(f)) {
            return Err(format!(
                "`deny_functions` entry `{f}` must be a bare function name (no schema), optionally ending in `*` for every name starting so"
            ));
        }
        if let Some(t) = config
            .allow_statements
            .iter()
            .find(|t| !CODE_CHANGES.iter().any(|(c, _, _)| c == t))
        {
            let known: Vec<_> = CODE_CHANGES.iter().map(|(c, _, _)| *c).collect();
            return Err(format!(
                "`allow_statements` names `{t}`, which is not a code change; it takes PostgreSQL statement types from {known:?}"
            ));
        }
        if let Some(s) = config.allow_settings.iter().find(|s| {
            !PROTECTED_SETTINGS
                .iter()
                .any(|(p, _)| p.eq_ignore_ascii_case(s))
        }) {
            let known: Vec<_> = PROTECTED_SETTINGS.iter().map(|(p, _)| *p).collect();
            return Err(format!(
                "`allow_settings` names `{s}`, which is not protected; it takes {known:?}"
            ));
        }

        let denied_kinds = DENIED_KINDS
            .iter()
            .copied()
            .filter(|(k, _)| !config.allow.iter().any(|a| a == k))
            .collect();
        let denied_functions = DENIED_FUNCTIONS
            .iter()
            .filter(|(p, _)| !config.allow_functions.iter().any(|a| a == p))
            .map(|(p, why)| Denied {
                pattern: p.to_string(),
                why,
                configured: false,
            })
            .chain(config.deny_functions.iter().map(|f| Denied {
                pattern: f.to_lowercase(),
                why: CONFIGURED,
                configured: true,
            }))
            .collect();
        Ok(SqlGuard {
            denied_kinds,
            deny_copy_file: !config.allow.iter().any(|a| a == COPY_FILE),
            denied_functions,
            allowed_functions: config.allow_functions,
            code_changes: config.code_changes,
            allowed_statements: config.allow_statements,
            allowed_settings: config
                .allow_settings
                .iter()
                .map(|s| s.to_lowercase())
                .collect(),
            write_budget: config.write_budget.limits()?,
            result_budget: config.result_budget,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use super::*;
    use warden_policy::Policy;

    #[test]
    fn bad_config_is_refused_with_what_is_accepted() {
        for (bad, says) in [
            (r#"{"allow": ["delete"]}"#, "cannot allow `delete`"),
            (r#"{"deny": ["drop"]}"#, "unknown field"),
            (
                r#"{"allow_functions": ["lower"]}"#,
                "not on the default list",
            ),
            (
                r#"{"allow_functions": ["dblink_*"]}"#,
                "not on the default list",
            ),
            (r#"{"deny_functions": ["public.f"]}"#, "bare function name"),
            (r#"{"deny_functions": ["*"]}"#, "bare function name"),
            (r#"{"deny_functions": [""]}"#, "bare function name"),
            (r#"{"code_changes": "hold"}"#, "require-approval"),
            (r#"{"code_changes": true}"#, "sql-guard config"),
            (
                r#"{"allow_statements": ["SelectStmt"]}"#,
                "not a code change",
            ),
            (r#"{"allow_settings": ["search_path"]}"#, "not protected"),
            ("drop", "sql-guard config"),
        ] {
            match SqlGuard::init(bad) {
                Err(e) => assert!(e.contains(says), "{bad}: {e}"),
                Ok(_) => panic!("{bad} was accepted"),
            }
        }
    }

    #[test]
    fn good_config_is_read() {
        let g = SqlGuard::init(
            r#"{"allow": ["alter", "copy_file"], "deny_functions": ["My_Fn", "ext_*"],
                "allow_functions": ["dblink*", "pg_cancel_backend", "pg_ls_dir"],
                "code_changes": "deny", "allow_statements": ["LockStmt"],
                "allow_settings": ["Role"]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!g.denied_kinds.iter().any(|(k, _)| *k == "alter"));
        assert!(!g.deny_copy_file);
        assert!(!g.denied_functions.iter().any(|d| d.pattern == "dblink*"));
        assert!(g.denied_functions.iter().any(|d| d.pattern == "pg_ls_*"));
        assert!(
            g.denied_functions
                .iter()
                .any(|d| d.pattern == "my_fn" && d.configured)
        );
        assert_eq!(g.code_changes, Action::Deny);
        assert_eq!(g.allowed_settings, ["role"]);
        for empty in ["", "  ", "{}"] {
            let g = SqlGuard::init(empty).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(g.code_changes, Action::RequireApproval);
        }
        for action in ["require-approval", "deny", "allow"] {
            let config = format!(r#"{{"code_changes": "{action}"}}"#);
            assert!(SqlGuard::init(&config).is_ok(), "{config}");
        }
    }
}
