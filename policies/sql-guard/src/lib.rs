//! `sql-guard`: refuses SQL that destroys data, changes privileges or escapes the database.
//!
//! Denied, each with a reason a person understands: DROP, TRUNCATE, ALTER, GRANT, REVOKE;
//! DELETE or UPDATE without WHERE anywhere in the statement (CTEs included); COPY ... TO/FROM
//! PROGRAM; calls of server-side functions that read files, run programs, reach other servers
//! or kill sessions; and SQL that does not parse (what the gateway cannot read, it does not
//! forward). Everything else, and every non-SQL command, is allowed.
//!
//! Config (optional JSON): `{ "allow": ["alter"], "deny_functions": ["my_danger"] }` —
//! `allow` re-permits statement kinds otherwise denied (`drop`, `truncate`, `alter`, `grant`,
//! `revoke`); `deny_functions` adds functions to the default list. Unknown keys are refused.

use serde::Deserialize;
use warden_policy::{Command, Policy, Session, Sql, Verdict, export_policy, sql};

/// Statement kinds denied unless the config allows them, with why.
const DENIED_KINDS: &[(&str, &str)] = &[
    ("drop", "DROP removes database objects and their data"),
    ("truncate", "TRUNCATE deletes every row of a table"),
    ("alter", "ALTER changes the schema"),
    ("grant", "GRANT changes privileges"),
    ("revoke", "REVOKE changes privileges"),
];

/// Server-side functions that reach outside the database or disrupt it.
const DENIED_FUNCTIONS: &[&str] = &[
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_file_write",
    "lo_import",
    "lo_export",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    allow: Vec<String>,
    deny_functions: Vec<String>,
}

struct SqlGuard {
    denied_kinds: Vec<(&'static str, &'static str)>,
    denied_functions: Vec<String>,
}

impl Policy for SqlGuard {
    fn init(config: &str) -> Result<Self, String> {
        let config: Config = if config.trim().is_empty() {
            Config::default()
        } else {
            serde_json::from_str(config).map_err(|e| format!("sql-guard config: {e}"))?
        };
        for kind in &config.allow {
            if !DENIED_KINDS.iter().any(|(k, _)| k == kind) {
                let known: Vec<_> = DENIED_KINDS.iter().map(|(k, _)| *k).collect();
                return Err(format!(
                    "sql-guard config: cannot allow `{kind}` (one of {known:?})"
                ));
            }
        }
        let denied_kinds = DENIED_KINDS
            .iter()
            .copied()
            .filter(|(k, _)| !config.allow.iter().any(|a| a == k))
            .collect();
        let mut denied_functions: Vec<String> =
            DENIED_FUNCTIONS.iter().map(|f| f.to_string()).collect();
        denied_functions.extend(config.deny_functions.iter().map(|f| f.to_lowercase()));
        Ok(SqlGuard {
            denied_kinds,
            denied_functions,
        })
    }

    fn check(&self, _session: &Session, command: &Command) -> Verdict {
        match command {
            Command::Sql(s) => self.check_sql(s),
            _ => Verdict::Allow,
        }
    }
}

impl SqlGuard {
    fn check_sql(&self, s: &Sql) -> Verdict {
        if let Some(error) = &s.parse_error {
            return Verdict::Deny(format!(
                "the statement does not parse as PostgreSQL SQL ({error}); only SQL the gateway can read is forwarded"
            ));
        }
        if let Some((kind, why)) = self.denied_kinds.iter().find(|(k, _)| *k == s.kind) {
            let on = if s.tables.is_empty() {
                String::new()
            } else {
                format!(" on {}", s.tables.join(", "))
            };
            return Verdict::Deny(format!("{}{on} is not allowed: {why}", kind.to_uppercase()));
        }
        if let Some(w) = sql::writes_without_where(s).next() {
            let what = if w.kind == "delete" {
                "delete"
            } else {
                "change"
            };
            return Verdict::Deny(format!(
                "{} on {} without WHERE would {what} every row; add a WHERE clause",
                w.kind.to_uppercase(),
                w.table
            ));
        }
        if let Some(program) = sql::copy_program(s) {
            return Verdict::Deny(format!(
                "COPY ... PROGRAM runs `{program}` on the database server; use COPY ... TO STDOUT / FROM STDIN"
            ));
        }
        if let Some(f) = s
            .functions
            .iter()
            .find(|f| self.denied_functions.iter().any(|d| d == base(f)))
        {
            return Verdict::Deny(format!(
                "function {f} reaches outside the database or disrupts it"
            ));
        }
        Verdict::Allow
    }
}

/// `pg_catalog.pg_read_file` → `pg_read_file`.
fn base(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(_, f)| f)
}

export_policy!(SqlGuard);
