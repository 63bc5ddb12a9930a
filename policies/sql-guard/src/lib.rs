//! `sql-guard`: refuses SQL that destroys data or escapes the database, and holds code,
//! privilege and configuration changes for an approver.
//!
//! Denied, each with a reason a person understands:
//! - DROP, TRUNCATE, ALTER, GRANT, REVOKE (by `kind`, whatever the object);
//! - DELETE or UPDATE without WHERE anywhere in the statement, data-changing CTEs included;
//! - COPY ... TO/FROM PROGRAM (runs a program on the database server), and COPY ... TO/FROM a
//!   server file (`copy_file`: reads or writes the server's files; COPY ... STDIN/STDOUT is fine);
//! - calls of server-side functions that run SQL given as text (the `query_to_xml` family,
//!   `ts_stat`), read tables named in a string (`table_to_xml`, ...), read or write the server's
//!   files (`pg_read_*`, `pg_ls_*`, `lo_import`, `lo_export`, ...), reach other servers
//!   (`dblink*`), stop other sessions, or change replication, WAL, backup or server-wide state.
//!   The list is [`functions::DENIED_FUNCTIONS`]; a name is compared by its last part
//!   (`pg_catalog.x` is `x`) ignoring ASCII case, and an entry ending in `*` covers every name
//!   starting so (`dblink*`: `dblink`, `dblink_exec`, ...). Set-returning functions are looked
//!   for among `tables` too, in case the host reports one there. `pg_advisory_*` locks are fine;
//! - `set_config` of a protected setting (`role`, `session_authorization`,
//!   `session_replication_role`, or a name that is not a literal, `*`): the function form
//!   hides inside a query what `SET ROLE` says plainly, so only the SET form is held for
//!   approval; `set_config` of any other setting (`search_path`, ...) is fine;
//! - a statement the gateway's second parser cannot read (`parse_error`: its writes, WHERE
//!   clauses and COPY target are then unknown), unless it is a code change, which is judged by
//!   its statement type alone (so a DO block is held, not refused).
//!
//! Held for approval by default, because they define code or change privileges or configuration
//! (`code_changes` makes them denied or allowed); matched on `statement_type`, PostgreSQL's own
//! name for the statement, listed in [`changes::CODE_CHANGES`]:
//! - code: CREATE [OR REPLACE] / ALTER FUNCTION and PROCEDURE, DO blocks, triggers and event
//!   triggers, rules, extensions, languages, casts, aggregates, operators and their classes and
//!   families, base types (`DefineStmt`), transforms, conversions, access methods, LOAD;
//! - reaching outside: foreign-data wrappers, servers, user mappings, foreign tables, IMPORT
//!   FOREIGN SCHEMA, subscriptions, publications;
//! - privileges: CREATE / ALTER / DROP ROLE, ALTER ROLE ... SET, ALTER ... OWNER TO, REASSIGN
//!   OWNED, DROP OWNED, ALTER DEFAULT PRIVILEGES, CREATE / ALTER POLICY, SECURITY LABEL;
//! - configuration: CREATE / ALTER / DROP DATABASE, ALTER DATABASE ... SET, ALTER SYSTEM,
//!   CREATE TABLESPACE; SET / SET LOCAL / RESET of a protected setting (`role`,
//!   `session_authorization`, `session_replication_role`; [`changes::PROTECTED_SETTINGS`]) and
//!   RESET ALL, matched on `settings`;
//! - LOCK: an explicit table lock can block every other session.
//!
//! Which rule wins: a statement gets the strictest verdict among the rules it breaks, so every
//! denial above comes before a hold. ALTER ROLE, ALTER SYSTEM, ALTER FUNCTION and the like are
//! kind `alter` (and DROP ROLE, DROP DATABASE kind `drop`): denied while `allow` does not list
//! that kind (the reason names the statement: "ALTER ROLE is not allowed: ..."), held (or as
//! `code_changes` says) once it does. `allow = ["alter"]` is meant for schema changes such as
//! ALTER TABLE ... ADD COLUMN; it should not quietly let a role or the server's configuration
//! change too. GRANT and REVOKE stay under their own `grant` / `revoke`
//! rules: listing them in `allow` is already an explicit choice about privileges.
//!
//! What the guard cannot see: the bodies of functions (which is why defining them is held), and
//! the subcommands of ALTER TABLE: `ALTER TABLE ... OWNER TO`, `DISABLE ROW LEVEL SECURITY` and
//! `DISABLE TRIGGER` share the statement type `AlterTableStmt` with `ADD COLUMN`, so only the
//! `alter` rule covers them. `settings` does not tell SET from RESET, so `RESET ROLE` is held
//! like `SET ROLE`. DISCARD ALL is allowed: the host does not report it as a setting change,
//! since it only returns the session to its start (connection pools send it). EXECUTE arrives
//! described as the prepared statement it runs, so it is judged as that statement. Everything
//! else, and every non-SQL command, is allowed.
//!
//! Config (optional JSON; warden.toml tables arrive as JSON; unknown keys are refused):
//! `{ "allow": ["alter"], "deny_functions": ["my_fn", "my_ext_*"],
//!    "allow_functions": ["pg_cancel_backend"], "code_changes": "deny",
//!    "allow_statements": ["LockStmt"], "allow_settings": ["role"] }`
//! - `allow`: rules to switch off: `drop`, `truncate`, `alter`, `grant`, `revoke`, `copy_file`;
//! - `deny_functions`: more functions to refuse: bare names (no schema), compared ignoring ASCII
//!   case; a trailing `*` refuses every name starting so;
//! - `allow_functions`: takes functions off the default list: an entry as listed (`dblink*`
//!   takes the whole family off) or one function an entry covers (`dblink_fetch`);
//! - `code_changes`: the verdict for the code, privilege and configuration changes above:
//!   `"require-approval"` (default), `"deny"`, or `"allow"` (the check is off);
//! - `allow_statements`: statement types to take off [`changes::CODE_CHANGES`], spelled as
//!   PostgreSQL names them (`["LockStmt"]` for an application that locks tables itself);
//! - `allow_settings`: settings to take off [`changes::PROTECTED_SETTINGS`], for SET and
//!   `set_config` alike (`["role"]` for an application that switches roles itself);
//! - `write_budget`: how many rows a statement that may write can change, measured by the
//!   gateway (see [`budget`]); by default 1,000 rows in any one table, more held for approval;
//! - `result_budget`: rows and bytes one result may return, cut off or refused (off by default).

mod budget;
pub mod changes;
mod config;
pub mod functions;
#[cfg(test)]
mod tests;

use config::{Action, Config, Denied};
use warden_policy::sql::unqualified;
use warden_policy::{Command, CopyTarget, Policy, Session, Sql, Verdict, export_policy, sql};

struct SqlGuard {
    denied_kinds: Vec<(&'static str, &'static str)>,
    deny_copy_file: bool,
    denied_functions: Vec<Denied>,
    /// `allow_functions` as configured: default entries or single names they cover.
    allowed_functions: Vec<String>,
    code_changes: Action,
    /// Statement types taken off the code-change list.
    allowed_statements: Vec<String>,
    /// Settings taken off the protected list (lower case).
    allowed_settings: Vec<String>,
    write_budget: Option<budget::WriteBudget>,
    result_budget: budget::ResultBudget,
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
    /// The verdict for one statement: every denial (in the order of the crate docs) before the
    /// code-change rule.
    fn check_sql(&self, s: &Sql) -> Verdict {
        let denial = self
            .denied_kind(s)
            .or_else(|| self.write_without_where(s))
            .or_else(|| self.copy_outside(s))
            .or_else(|| self.denied_function(s))
            .or_else(|| self.protected_set_config(s));
        if let Some(reason) = denial {
            return Verdict::Deny(reason);
        }
        let Some((what, why)) = self.code_change(s) else {
            return match &s.parse_error {
                Some(error) => Verdict::Deny(format!(
                    "the gateway cannot read this statement fully ({error}), so what it writes is unknown; only SQL the gateway can read is forwarded"
                )),
                None => self.allow(s),
            };
        };
        match self.code_changes {
            Action::RequireApproval => {
                Verdict::RequireApproval(format!("{what} needs approval: {why}"))
            }
            Action::Deny => Verdict::Deny(format!("{what} is not allowed: {why}")),
            Action::Allow => self.allow(s),
        }
    }

    /// Allowed: within the write budget when the statement may write, and within the result
    /// budget when one is set.
    fn allow(&self, s: &Sql) -> Verdict {
        let write = self.write_budget.as_ref().and_then(|w| w.for_statement(s));
        match self.result_budget.add_to(write) {
            Some(b) => Verdict::AllowWithin(b),
            None => Verdict::Allow,
        }
    }

    fn denied_kind(&self, s: &Sql) -> Option<String> {
        let (kind, why) = self.denied_kinds.iter().find(|(k, _)| *k == s.kind)?;
        // `ALTER ROLE` is kind `alter`, but "ALTER changes the schema" would not say why it
        // matters: name the statement and its own reason.
        if let Some((what, why)) = changes::code_change(&s.statement_type) {
            return Some(format!("{what} is not allowed: {why}"));
        }
        let on = if s.tables.is_empty() {
            String::new()
        } else {
            format!(" on {}", s.tables.join(", "))
        };
        Some(format!("{}{on} is not allowed: {why}", kind.to_uppercase()))
    }

    fn write_without_where(&self, s: &Sql) -> Option<String> {
        let w = sql::writes_without_where(s).next()?;
        let what = if w.kind == "delete" {
            "delete"
        } else {
            "change"
        };
        Some(format!(
            "{} on {} without WHERE would {what} every row; add a WHERE clause",
            w.kind.to_uppercase(),
            w.table
        ))
    }

    /// COPY that runs a program or touches a file on the database server.
    fn copy_outside(&self, s: &Sql) -> Option<String> {
        let copy = s.copy.as_ref()?;
        let dir = if copy.is_from { "FROM" } else { "TO" };
        match &copy.target {
            CopyTarget::Program(program) => Some(format!(
                "COPY ... {dir} PROGRAM runs `{program}` on the database server; use COPY ... TO STDOUT / FROM STDIN"
            )),
            CopyTarget::File(path) if self.deny_copy_file => {
                let rw = if copy.is_from { "reads" } else { "writes" };
                Some(format!(
                    "COPY ... {dir} '{path}' {rw} a file on the database server; use COPY ... TO STDOUT / FROM STDIN (psql: \\copy)"
                ))
            }
            _ => None,
        }
    }

    fn denied_function(&self, s: &Sql) -> Option<String> {
        // A set-returning function in FROM (`FROM pg_ls_dir('/')`) may be reported as a table;
        // look there too. A real table with such a name is not worth the hole.
        s.functions.iter().chain(&s.tables).find_map(|f| {
            let allowed = self
                .allowed_functions
                .iter()
                .any(|a| a.eq_ignore_ascii_case(unqualified(f)));
            self.denied_functions
                .iter()
                .find(|d| functions::matches(&d.pattern, f) && (d.configured || !allowed))
                .map(|d| format!("function {f} is not allowed: {}", d.why))
        })
    }

    /// The first protected setting `s` changes that `allow_settings` does not free, with why.
    fn protected_setting<'a>(&self, s: &'a Sql) -> Option<(&'a str, &'static str)> {
        s.settings.iter().find_map(|setting| {
            let why = changes::protected(setting)?;
            let freed = self
                .allowed_settings
                .iter()
                .any(|a| a.eq_ignore_ascii_case(setting));
            (!freed).then_some((setting.as_str(), why))
        })
    }

    /// `set_config` of a protected setting: denied whatever `code_changes` says.
    fn protected_set_config(&self, s: &Sql) -> Option<String> {
        if s.statement_type == "VariableSetStmt" || !sql::calls(s, "set_config") {
            return None;
        }
        let (setting, why) = self.protected_setting(s)?;
        let what = if setting == "*" {
            "set_config with a setting name that is not a literal".to_string()
        } else {
            format!("set_config of {setting}")
        };
        Some(format!(
            "{what} is not allowed: {why} (protected settings change only through SET / RESET)"
        ))
    }

    /// What makes `s` a code, privilege or configuration change, and why that matters.
    fn code_change(&self, s: &Sql) -> Option<(String, &'static str)> {
        if let Some((what, why)) = changes::code_change(&s.statement_type)
            && !self.allowed_statements.contains(&s.statement_type)
        {
            return Some((what.to_string(), why));
        }
        let (setting, why) = self.protected_setting(s)?;
        let what = match setting {
            "all" => "RESET ALL".to_string(),
            "*" => "changing a setting whose name is computed".to_string(),
            name => format!("changing {name}"),
        };
        Some((what, why))
    }
}

export_policy!(SqlGuard);
