//! `sql-guard`: refuses SQL that destroys data, changes privileges or escapes the database.
//!
//! Denied, each with a reason a person understands:
//! - DROP, TRUNCATE, ALTER, GRANT, REVOKE (whatever the object);
//! - DELETE or UPDATE without WHERE anywhere in the statement, data-changing CTEs included;
//! - COPY ... TO/FROM PROGRAM (runs a program on the database server), and COPY ... TO/FROM a
//!   server file (`copy_file`: reads or writes the server's files; COPY ... STDIN/STDOUT is fine);
//! - calls of server-side functions that read or write the server's files, reach other servers,
//!   stop other sessions or change server-wide state (the list is [`DENIED_FUNCTIONS`]);
//! - SQL that does not parse: what the gateway cannot read, it does not forward. That includes
//!   `DO` blocks, which the parser does not know and which would hide their body anyway.
//!
//! `set_config` is not on the list: it is the function form of `SET`, which is allowed. The guard
//! cannot see into user-defined functions or prepared statements; keep EXECUTE rights narrow.
//! Everything else, and every non-SQL command, is allowed.
//!
//! Config (optional JSON; warden.toml tables arrive as JSON; unknown keys are refused):
//! `{ "allow": ["alter"], "deny_functions": ["my_fn"], "allow_functions": ["pg_cancel_backend"] }`
//! - `allow`: rules to switch off: `drop`, `truncate`, `alter`, `grant`, `revoke`, `copy_file`;
//! - `deny_functions`: more functions to refuse (names as the host reports them: lower case);
//! - `allow_functions`: functions to take off the default list.

use serde::Deserialize;
use warden_policy::{Command, CopyTarget, Policy, Session, Sql, Verdict, export_policy, sql};

/// Statement kinds denied unless `allow` lists them, with why.
const DENIED_KINDS: &[(&str, &str)] = &[
    ("drop", "DROP removes database objects and their data"),
    ("truncate", "TRUNCATE deletes every row of a table"),
    ("alter", "ALTER changes the schema"),
    ("grant", "GRANT changes privileges"),
    ("revoke", "REVOKE changes privileges"),
];

/// The rule for COPY to or from a file on the database server.
const COPY_FILE: &str = "copy_file";

/// Server-side functions refused by default, with what they do.
pub const DENIED_FUNCTIONS: &[(&str, &str)] = &[
    ("pg_read_file", READS_FILES),
    ("pg_read_binary_file", READS_FILES),
    ("pg_ls_dir", READS_FILES),
    ("pg_stat_file", READS_FILES),
    ("pg_ls_logdir", READS_FILES),
    ("pg_ls_waldir", READS_FILES),
    ("pg_ls_tmpdir", READS_FILES),
    ("pg_ls_archive_statusdir", READS_FILES),
    ("lo_import", READS_FILES),
    ("lo_export", WRITES_FILES),
    ("pg_file_write", WRITES_FILES),
    ("pg_file_rename", WRITES_FILES),
    ("pg_file_unlink", WRITES_FILES),
    ("dblink", OTHER_SERVERS),
    ("dblink_exec", OTHER_SERVERS),
    ("dblink_connect", OTHER_SERVERS),
    ("dblink_connect_u", OTHER_SERVERS),
    ("dblink_send_query", OTHER_SERVERS),
    ("dblink_open", OTHER_SERVERS),
    ("pg_terminate_backend", OTHER_SESSIONS),
    ("pg_cancel_backend", OTHER_SESSIONS),
    ("pg_reload_conf", SERVER_STATE),
    ("pg_rotate_logfile", SERVER_STATE),
    ("pg_promote", SERVER_STATE),
];
const READS_FILES: &str = "it reads files on the database server";
const WRITES_FILES: &str = "it writes files on the database server";
const OTHER_SERVERS: &str = "it connects from the database server to other servers";
const OTHER_SESSIONS: &str = "it stops other sessions' work";
const SERVER_STATE: &str = "it changes server-wide state";
const CONFIGURED: &str = "it is denied by this gateway's configuration";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    allow: Vec<String>,
    deny_functions: Vec<String>,
    allow_functions: Vec<String>,
}

struct SqlGuard {
    denied_kinds: Vec<(&'static str, &'static str)>,
    deny_copy_file: bool,
    /// Function name (lower case, no schema) and why it is refused.
    denied_functions: Vec<(String, &'static str)>,
}

impl Policy for SqlGuard {
    fn init(config: &str) -> Result<Self, String> {
        let config: Config = if config.trim().is_empty() {
            Config::default()
        } else {
            serde_json::from_str(config).map_err(|e| format!("sql-guard config: {e}"))?
        };
        SqlGuard::new(config).map_err(|e| format!("sql-guard config: {e}"))
    }

    fn check(&self, _session: &Session, command: &Command) -> Verdict {
        match command {
            Command::Sql(s) => self.check_sql(s),
            _ => Verdict::Allow,
        }
    }
}

impl SqlGuard {
    fn new(config: Config) -> Result<SqlGuard, String> {
        for rule in &config.allow {
            if rule != COPY_FILE && !DENIED_KINDS.iter().any(|(k, _)| k == rule) {
                let mut known: Vec<_> = DENIED_KINDS.iter().map(|(k, _)| *k).collect();
                known.push(COPY_FILE);
                return Err(format!("cannot allow `{rule}`: `allow` takes {known:?}"));
            }
        }
        for f in &config.allow_functions {
            if !DENIED_FUNCTIONS.iter().any(|(d, _)| d == f) {
                return Err(format!(
                    "`allow_functions` names `{f}`, which is not on the default list"
                ));
            }
        }
        if let Some(f) = config
            .deny_functions
            .iter()
            .find(|f| f.is_empty() || f.contains('.'))
        {
            return Err(format!(
                "`deny_functions` entry `{f}` must be a bare function name (no schema)"
            ));
        }
        let denied_kinds = DENIED_KINDS
            .iter()
            .copied()
            .filter(|(k, _)| !config.allow.iter().any(|a| a == k))
            .collect();
        let denied_functions = DENIED_FUNCTIONS
            .iter()
            .filter(|(f, _)| !config.allow_functions.iter().any(|a| a == f))
            .map(|(f, why)| (f.to_string(), *why))
            .chain(
                config
                    .deny_functions
                    .iter()
                    .map(|f| (f.to_lowercase(), CONFIGURED)),
            )
            .collect();
        Ok(SqlGuard {
            denied_kinds,
            deny_copy_file: !config.allow.iter().any(|a| a == COPY_FILE),
            denied_functions,
        })
    }

    /// The verdict for one statement: the first rule it breaks, in the order of the crate docs.
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
        if let Some(copy) = &s.copy {
            let dir = if copy.is_from { "FROM" } else { "TO" };
            match &copy.target {
                CopyTarget::Program(program) => {
                    return Verdict::Deny(format!(
                        "COPY ... {dir} PROGRAM runs `{program}` on the database server; use COPY ... TO STDOUT / FROM STDIN"
                    ));
                }
                CopyTarget::File(path) if self.deny_copy_file => {
                    let rw = if copy.is_from { "reads" } else { "writes" };
                    return Verdict::Deny(format!(
                        "COPY ... {dir} '{path}' {rw} a file on the database server; use COPY ... TO STDOUT / FROM STDIN (psql: \\copy)"
                    ));
                }
                _ => {}
            }
        }
        // The host reports a set-returning function in FROM (`SELECT * FROM pg_ls_dir('/')`,
        // `FROM dblink(...)`) as a table, not a function; look there too. A real table with
        // such a name is not worth the hole.
        for f in s.functions.iter().chain(&s.tables) {
            let name = f.rsplit_once('.').map_or(f.as_str(), |(_, n)| n);
            if let Some((_, why)) = self.denied_functions.iter().find(|(d, _)| d == name) {
                return Verdict::Deny(format!("function {f} is not allowed: {why}"));
            }
        }
        Verdict::Allow
    }
}

export_policy!(SqlGuard);

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use super::*;
    use warden_policy::{SqlCopy, SqlWrite, sql::blank};

    fn guard(config: &str) -> SqlGuard {
        SqlGuard::init(config).unwrap_or_else(|e| panic!("init({config}): {e}"))
    }

    fn stmt(kind: &str, tables: &[&str]) -> Sql {
        let mut s = blank(kind);
        s.tables = tables.iter().map(|t| t.to_string()).collect();
        s
    }

    fn write(kind: &str, table: &str, has_where: bool) -> SqlWrite {
        SqlWrite {
            kind: kind.into(),
            table: table.into(),
            has_where,
        }
    }

    fn copy(is_from: bool, target: CopyTarget) -> Sql {
        let mut s = stmt("copy", &["cards"]);
        s.copy = Some(SqlCopy { is_from, target });
        s
    }

    /// The deny reason, or a panic naming the verdict.
    fn denied(g: &SqlGuard, s: &Sql) -> String {
        match g.check_sql(s) {
            Verdict::Deny(reason) => reason,
            v => panic!("{s:?}: expected deny, got {v:?}"),
        }
    }

    fn allowed(g: &SqlGuard, s: &Sql) -> bool {
        matches!(g.check_sql(s), Verdict::Allow)
    }

    #[test]
    fn schema_and_privilege_changes_are_denied() {
        let g = guard("");
        assert_eq!(
            denied(&g, &stmt("drop", &["cards"])),
            "DROP on cards is not allowed: DROP removes database objects and their data"
        );
        for kind in ["truncate", "alter", "grant", "revoke"] {
            assert!(denied(&g, &stmt(kind, &["cards"])).starts_with(&kind.to_uppercase()));
        }
        assert!(denied(&g, &stmt("drop", &[])).starts_with("DROP is not allowed"));
    }

    #[test]
    fn allow_switches_rules_off() {
        let g = guard(r#"{"allow": ["alter", "copy_file"]}"#);
        assert!(allowed(&g, &stmt("alter", &["cards"])));
        assert!(allowed(&g, &copy(false, CopyTarget::File("/tmp/x".into()))));
        assert!(!allowed(&g, &stmt("drop", &["cards"])));
        assert!(!allowed(&g, &copy(true, CopyTarget::Program("cat".into()))));
    }

    #[test]
    fn update_and_delete_without_where_are_denied_also_in_ctes() {
        let g = guard("");
        let mut s = stmt("select", &["cards"]);
        s.writes.push(write("delete", "cards", false));
        assert_eq!(
            denied(&g, &s),
            "DELETE on cards without WHERE would delete every row; add a WHERE clause"
        );
        let mut s = stmt("update", &["Cards"]);
        s.writes.push(write("update", "Cards", false));
        assert!(denied(&g, &s).starts_with("UPDATE on Cards without WHERE would change every row"));

        let mut s = stmt("update", &["cards"]);
        s.has_where = true;
        s.writes.push(write("update", "cards", true));
        assert!(allowed(&g, &s));
        let mut s = stmt("insert", &["cards"]);
        s.writes.push(write("insert", "cards", true));
        assert!(allowed(&g, &s));
    }

    #[test]
    fn copy_to_programs_and_server_files_is_denied_stdio_is_allowed() {
        let g = guard("");
        let r = denied(&g, &copy(false, CopyTarget::Program("curl -T - x".into())));
        assert!(r.contains("TO PROGRAM runs `curl -T - x`"), "{r}");
        let r = denied(
            &g,
            &copy(true, CopyTarget::Program("cat /etc/passwd".into())),
        );
        assert!(r.contains("FROM PROGRAM"), "{r}");
        let r = denied(&g, &copy(true, CopyTarget::File("/etc/passwd".into())));
        assert!(r.contains("FROM '/etc/passwd' reads a file"), "{r}");
        assert!(allowed(&g, &copy(false, CopyTarget::Stdio)));
        assert!(allowed(&g, &copy(true, CopyTarget::Stdio)));
    }

    #[test]
    fn dangerous_functions_are_denied_by_bare_or_qualified_name() {
        let g =
            guard(r#"{"deny_functions": ["Pg_Sleep"], "allow_functions": ["pg_cancel_backend"]}"#);
        let mut s = stmt("select", &[]);
        s.functions = vec!["lower".into(), "pg_catalog.pg_read_file".into()];
        assert_eq!(
            denied(&g, &s),
            "function pg_catalog.pg_read_file is not allowed: it reads files on the database server"
        );
        s.functions = vec!["pg_sleep".into()];
        assert!(denied(&g, &s).contains("configuration"));
        s.functions = vec!["pg_cancel_backend".into(), "now".into()];
        assert!(allowed(&g, &s));
        s.functions = vec!["set_config".into()];
        assert!(allowed(&g, &s));
        let from = stmt("select", &["pg_catalog.pg_ls_dir"]);
        assert!(denied(&g, &from).contains("pg_ls_dir is not allowed"));
    }

    #[test]
    fn unparsed_sql_is_denied_everything_else_allowed() {
        let g = guard("");
        let mut s = blank("unknown");
        s.parse_error = Some("Expected: an SQL statement, found: SELEC".into());
        assert!(denied(&g, &s).contains("does not parse"));
        for kind in [
            "select", "insert", "begin", "set", "show", "create", "other",
        ] {
            assert!(allowed(&g, &stmt(kind, &["cards"])), "{kind}");
        }
    }

    #[test]
    fn bad_config_is_refused_with_what_is_accepted() {
        for (bad, says) in [
            (r#"{"allow": ["delete"]}"#, "cannot allow `delete`"),
            (r#"{"deny": ["drop"]}"#, "unknown field"),
            (
                r#"{"allow_functions": ["lower"]}"#,
                "not on the default list",
            ),
            (r#"{"deny_functions": ["public.f"]}"#, "bare function name"),
            ("drop", "sql-guard config"),
        ] {
            match SqlGuard::init(bad) {
                Err(e) => assert!(e.contains(says), "{bad}: {e}"),
                Ok(_) => panic!("{bad} was accepted"),
            }
        }
    }
}
