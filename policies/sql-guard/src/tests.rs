//! sql-guard's verdicts, rule by rule, on statements built as the host would describe them.

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

/// A statement of `kind` and PostgreSQL statement type `statement_type`.
fn typed(kind: &str, statement_type: &str) -> Sql {
    let mut s = blank(kind);
    s.statement_type = statement_type.into();
    s
}

/// A SET / RESET changing `settings`.
fn set(settings: &[&str]) -> Sql {
    let mut s = typed("set", "VariableSetStmt");
    s.settings = settings.iter().map(|t| t.to_string()).collect();
    s
}

/// `SELECT set_config(...)` changing `setting`.
fn set_config(setting: &str) -> Sql {
    let mut s = typed("select", "SelectStmt");
    s.functions = vec!["pg_catalog.set_config".into()];
    s.settings = vec![setting.into()];
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

/// The approval reason, or a panic naming the verdict.
fn held(g: &SqlGuard, s: &Sql) -> String {
    match g.check_sql(s) {
        Verdict::RequireApproval(reason) => reason,
        v => panic!("{s:?}: expected require-approval, got {v:?}"),
    }
}

/// Allowed, within a budget or not.
fn allowed(g: &SqlGuard, s: &Sql) -> bool {
    matches!(g.check_sql(s), Verdict::Allow | Verdict::AllowWithin(_))
}

#[test]
fn statements_that_may_write_get_the_write_budget() {
    use warden_policy::{OverBudget, SqlWrite};
    let g = guard("");
    let mut s = stmt("delete", &["cards"]);
    s.has_where = true;
    s.writes.push(SqlWrite {
        kind: "delete".into(),
        table: "cards".into(),
        has_where: true,
    });
    let Verdict::AllowWithin(b) = g.check_sql(&s) else {
        panic!("no budget: {:?}", g.check_sql(&s));
    };
    assert_eq!(
        (b.tables[0].table.as_str(), b.tables[0].rows_written),
        ("*", 1000)
    );
    assert_eq!(b.over, OverBudget::RequireApproval);
    // A function may write, and so may a read of a view (the host measures only what can):
    // a statement naming a table gets the budget; one naming none and calling nothing not.
    assert!(matches!(
        g.check_sql(&calling(&["wipe_all"])),
        Verdict::AllowWithin(_)
    ));
    assert!(matches!(
        g.check_sql(&stmt("select", &["cards"])),
        Verdict::AllowWithin(_)
    ));
    assert!(matches!(g.check_sql(&stmt("select", &[])), Verdict::Allow));

    let g = guard(
        r#"{"write_budget": {"per_table": null, "tables": {"cards": 10}, "rows": 50, "over": "refuse"}}"#,
    );
    let Verdict::AllowWithin(b) = g.check_sql(&s) else {
        panic!("no budget");
    };
    assert_eq!((b.rows_written, b.over), (Some(50), OverBudget::Refuse));
    assert_eq!(
        (b.tables[0].table.as_str(), b.tables[0].rows_written),
        ("cards", 10)
    );
    let off = guard(r#"{"write_budget": {"per_table": null}}"#);
    assert!(matches!(off.check_sql(&s), Verdict::Allow));
    let off = guard(r#"{"write_budget": false}"#);
    assert!(matches!(off.check_sql(&s), Verdict::Allow));
}

fn calling(functions: &[&str]) -> Sql {
    let mut s = typed("select", "SelectStmt");
    s.functions = functions.iter().map(|f| f.to_string()).collect();
    s
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
    let g = guard(r#"{"deny_functions": ["Pg_Sleep"], "allow_functions": ["pg_cancel_backend"]}"#);
    let s = calling(&["lower", "pg_catalog.pg_read_file"]);
    assert_eq!(
        denied(&g, &s),
        "function pg_catalog.pg_read_file is not allowed: it reads files on the database server"
    );
    assert!(denied(&g, &calling(&["pg_sleep"])).contains("configuration"));
    assert!(allowed(&g, &calling(&["pg_cancel_backend", "now"])));
    assert!(allowed(&g, &calling(&["set_config"])));
    let from = stmt("select", &["pg_catalog.pg_ls_dir"]);
    assert!(denied(&g, &from).contains("pg_ls_dir is not allowed"));
}

#[test]
fn functions_that_run_sql_text_or_reach_outside_are_denied() {
    let g = guard("");
    for (f, says) in [
        ("query_to_xml", "runs SQL given as text"),
        (
            "pg_catalog.query_to_xml_and_xmlschema",
            "runs SQL given as text",
        ),
        ("query_to_xmlschema", "runs SQL given as text"),
        ("cursor_to_xml", "cursor"),
        ("table_to_xml", "tables named in a string"),
        ("schema_to_xml_and_xmlschema", "tables named in a string"),
        ("database_to_xml", "tables named in a string"),
        ("ts_stat", "runs SQL given as text"),
        ("dblink_get_result", "other servers"),
        ("dblink_connect_u", "other servers"),
        ("lo_import", "reads files"),
        ("pg_read_binary_file", "reads files"),
        ("pg_ls_logicalmapdir", "reads files"),
        ("pg_file_sync", "reads or writes files"),
        ("pg_signal_backend", "other sessions"),
        ("pg_create_logical_replication_slot", "replication"),
        ("pg_logical_slot_get_changes", "replication"),
        ("pg_copy_physical_replication_slot", "replication"),
        ("pg_logical_emit_message", "replication"),
        ("pg_switch_wal", "write-ahead log"),
        ("pg_backup_start", "backups"),
        ("pg_wal_replay_pause", "recovery"),
        ("pg_create_restore_point", "write-ahead log"),
        ("pg_promote", "server-wide state"),
        ("PG_RELOAD_CONF", "server-wide state"),
    ] {
        let r = denied(&g, &calling(&["count", f]));
        assert!(
            r.starts_with(&format!("function {f} is not allowed")),
            "{r}"
        );
        assert!(r.contains(says), "{f}: {r}");
    }
    for f in [
        "pg_advisory_lock",
        "pg_try_advisory_xact_lock",
        "lo_get",
        "xmlagg",
    ] {
        assert!(allowed(&g, &calling(&[f])), "{f}");
    }
    // The host reports `FROM dblink(...)` as a function; a table named so is refused too.
    assert!(denied(&g, &stmt("select", &["dblink_fetch"])).contains("other servers"));
}

#[test]
fn families_and_single_functions_can_be_taken_off_or_added() {
    let g = guard(r#"{"allow_functions": ["dblink*", "pg_ls_dir"], "deny_functions": ["my_*"]}"#);
    assert!(allowed(&g, &calling(&["dblink_exec", "public.dblink"])));
    assert!(allowed(&g, &calling(&["pg_ls_dir"])));
    assert!(denied(&g, &calling(&["pg_ls_waldir"])).contains("reads files"));
    assert!(denied(&g, &calling(&["app.My_Export"])).contains("configuration"));
    assert!(allowed(&g, &calling(&["mysql_like"])));
    // A configured denial stands even for a name `allow_functions` frees from the defaults.
    let g = guard(r#"{"allow_functions": ["pg_ls_dir"], "deny_functions": ["pg_ls_*"]}"#);
    assert!(denied(&g, &calling(&["pg_ls_dir"])).contains("configuration"));
}

#[test]
fn code_changes_are_held_with_what_and_why() {
    let g = guard("");
    assert_eq!(
        held(&g, &typed("create", "CreateFunctionStmt")),
        "CREATE FUNCTION / PROCEDURE needs approval: it defines code that runs inside the database server whenever it is called"
    );
    for (kind, t, says) in [
        ("other", "DoStmt", "a DO block needs approval"),
        ("create", "CreateTrigStmt", "CREATE TRIGGER"),
        ("create", "CreateEventTrigStmt", "EVENT TRIGGER"),
        ("create", "RuleStmt", "CREATE RULE"),
        ("create", "CreateExtensionStmt", "CREATE EXTENSION"),
        ("create", "CreateFdwStmt", "FOREIGN DATA WRAPPER"),
        ("create", "CreateForeignServerStmt", "CREATE SERVER"),
        ("create", "CreateUserMappingStmt", "credentials"),
        ("create", "CreateForeignTableStmt", "CREATE FOREIGN TABLE"),
        ("other", "ImportForeignSchemaStmt", "IMPORT FOREIGN SCHEMA"),
        ("create", "CreatePLangStmt", "CREATE LANGUAGE"),
        ("create", "CreateRoleStmt", "CREATE ROLE"),
        ("create", "CreatedbStmt", "CREATE DATABASE"),
        ("create", "CreateCastStmt", "CREATE CAST"),
        ("create", "DefineStmt", "AGGREGATE / OPERATOR"),
        ("create", "CreatePolicyStmt", "row-level security"),
        ("create", "CreateSubscriptionStmt", "another server"),
        (
            "other",
            "LockStmt",
            "LOCK needs approval: an explicit table lock",
        ),
        ("other", "LoadStmt", "shared library"),
        ("other", "SecLabelStmt", "SECURITY LABEL"),
    ] {
        let r = held(&g, &typed(kind, t));
        assert!(r.contains(says), "{t}: {r}");
    }
    for t in [
        "SelectStmt",
        "CreateStmt",
        "IndexStmt",
        "ViewStmt",
        "DiscardStmt",
        "",
    ] {
        assert!(allowed(&g, &typed("create", t)), "{t}");
    }
}

#[test]
fn alter_and_drop_kinds_are_denied_first_and_held_once_allowed() {
    let g = guard("");
    assert_eq!(
        denied(&g, &typed("alter", "AlterRoleStmt")),
        "ALTER ROLE is not allowed: it creates, changes or removes a role and its privileges"
    );
    for (t, says) in [
        ("AlterSystemStmt", "ALTER SYSTEM is not allowed"),
        (
            "AlterFunctionStmt",
            "ALTER FUNCTION / PROCEDURE is not allowed",
        ),
        ("AlterOwnerStmt", "ALTER ... OWNER TO is not allowed"),
        ("ReassignOwnedStmt", "REASSIGN OWNED is not allowed"),
    ] {
        assert!(denied(&g, &typed("alter", t)).starts_with(says), "{t}");
    }
    assert!(denied(&g, &typed("drop", "DropRoleStmt")).starts_with("DROP ROLE is not allowed"));
    let mut table = typed("alter", "AlterTableStmt");
    table.tables.push("cards".into());
    assert!(
        denied(&g, &table).starts_with("ALTER on cards is not allowed: ALTER changes the schema")
    );
    let g = guard(r#"{"allow": ["alter", "drop"]}"#);
    assert!(allowed(&g, &typed("alter", "AlterTableStmt")));
    for (t, says) in [
        ("AlterRoleStmt", "ALTER ROLE"),
        ("AlterRoleSetStmt", "every future session of a role"),
        ("AlterSystemStmt", "configuration file"),
        ("AlterFunctionStmt", "SECURITY DEFINER"),
        ("AlterExtensionStmt", "extension"),
        ("AlterDatabaseSetStmt", "every future session in a database"),
        ("AlterDefaultPrivilegesStmt", "every object created later"),
        ("AlterOwnerStmt", "who owns objects"),
        ("AlterPolicyStmt", "row-level security"),
    ] {
        assert!(held(&g, &typed("alter", t)).contains(says), "{t}");
    }
    assert!(held(&g, &typed("drop", "DropRoleStmt")).starts_with("DROP ROLE needs approval"));
    assert!(allowed(&g, &typed("drop", "DropStmt")));
    // GRANT keeps its own rule: once allowed, it is allowed.
    let g = guard(r#"{"allow": ["grant"]}"#);
    assert!(allowed(&g, &typed("grant", "GrantRoleStmt")));
}

#[test]
fn protected_settings_are_held_when_set_or_reset() {
    let g = guard("");
    assert_eq!(
        held(&g, &set(&["role"])),
        "changing role needs approval: it switches to another role's privileges"
    );
    assert!(held(&g, &set(&["session_authorization"])).contains("another user"));
    assert!(held(&g, &set(&["session_replication_role"])).contains("foreign-key checks"));
    assert!(held(&g, &set(&["all"])).starts_with("RESET ALL needs approval"));
    assert!(allowed(&g, &typed("discard", "DiscardStmt")));
    for other in [&["search_path"][..], &["statement_timeout"], &[]] {
        assert!(allowed(&g, &set(other)), "{other:?}");
    }
}

#[test]
fn set_config_of_a_protected_setting_is_denied() {
    let g = guard("");
    let r = denied(&g, &set_config("role"));
    assert_eq!(
        r,
        "set_config of role is not allowed: it switches to another role's privileges (protected settings change only through SET / RESET)"
    );
    assert!(denied(&g, &set_config("session_authorization")).contains("another user"));
    assert!(denied(&g, &set_config("*")).contains("not a literal"));
    assert!(allowed(&g, &set_config("search_path")));
    // Even when code changes are allowed: the SET form is the one to use.
    let g = guard(r#"{"code_changes": "allow"}"#);
    assert!(allowed(&g, &set(&["role"])));
    assert!(!allowed(&g, &set_config("role")));
}

#[test]
fn code_changes_config_denies_or_allows_them() {
    let g = guard(r#"{"code_changes": "deny"}"#);
    assert_eq!(
        denied(&g, &typed("other", "DoStmt")),
        "a DO block is not allowed: it runs procedural code the gateway cannot read"
    );
    assert!(denied(&g, &set(&["role"])).starts_with("changing role is not allowed"));
    assert!(allowed(&g, &typed("select", "SelectStmt")));
    let g = guard(r#"{"code_changes": "allow"}"#);
    assert!(allowed(&g, &typed("create", "CreateFunctionStmt")));
    assert!(allowed(&g, &set(&["all"])));
    // Denials stay.
    assert!(denied(&g, &typed("alter", "AlterRoleStmt")).starts_with("ALTER ROLE"));
    assert!(!allowed(&g, &calling(&["dblink"])));
}

#[test]
fn statements_and_settings_can_be_taken_off_the_lists() {
    let g = guard(r#"{"allow_statements": ["LockStmt"], "allow_settings": ["role", "*"]}"#);
    assert!(allowed(&g, &typed("other", "LockStmt")));
    assert!(allowed(&g, &set(&["role"])));
    assert!(allowed(&g, &set_config("role")));
    assert!(allowed(&g, &set_config("*")));
    assert!(held(&g, &set(&["role", "session_authorization"])).contains("session_authorization"));
    assert!(!allowed(&g, &set_config("session_replication_role")));
    assert!(held(&g, &typed("other", "LoadStmt")).contains("LOAD"));
}

#[test]
fn a_denial_wins_over_a_hold() {
    let g = guard("");
    // A code change that calls a denied function, and one with a write without WHERE.
    let mut s = calling(&["pg_read_file"]);
    s.statement_type = "CreateFunctionStmt".into();
    assert!(denied(&g, &s).contains("pg_read_file"));
    let mut s = typed("create", "RuleStmt");
    s.writes.push(write("delete", "cards", false));
    assert!(denied(&g, &s).contains("without WHERE"));
}

#[test]
fn statements_the_gateway_cannot_read_fully_are_denied_unless_a_code_change() {
    let g = guard("");
    let mut s = typed("delete", "DeleteStmt");
    s.tables.push("cards".into());
    s.parse_error = Some("Expected: end of statement, found: USING".into());
    let r = denied(&g, &s);
    assert!(
        r.contains("cannot read this statement fully (Expected"),
        "{r}"
    );
    // A DO block the second parser does not know is held like any DO block.
    let mut s = typed("other", "DoStmt");
    s.parse_error = Some("Expected: an SQL statement, found: DO".into());
    assert!(held(&g, &s).starts_with("a DO block"));
    assert!(denied(&guard(r#"{"code_changes": "deny"}"#), &s).starts_with("a DO block"));
    // The kind and functions come from the server's grammar: still checked.
    let mut s = typed("select", "SelectStmt");
    s.functions.push("lo_export".into());
    s.parse_error = Some("x".into());
    assert!(denied(&g, &s).contains("lo_export"));
}

#[test]
fn everything_else_is_allowed() {
    let g = guard("");
    for kind in [
        "select", "insert", "begin", "set", "show", "create", "other", "execute",
    ] {
        assert!(allowed(&g, &stmt(kind, &["cards"])), "{kind}");
    }
    let mut s = typed("select", "ExecuteStmt");
    s.tables.push("cards".into());
    assert!(allowed(&g, &s));
}
