//! Small helpers over the host-parsed [`Sql`] statement.
//!
//! The host reads each statement with PostgreSQL's own grammar (libpg_query): `kind` is the
//! lower-case top-level statement kind, `statement_type` PostgreSQL's parse-node name
//! (`SelectStmt`, `CreateFunctionStmt`, ...), `settings` the run-time settings it changes,
//! `tables` every table read or written (lower-cased unless quoted, schema-qualified when
//! written so), `functions` every function called. A second parser fills `writes` (every
//! insert/update/delete/merge, including those inside CTEs), `has_where`, `limit` and `copy`;
//! when it cannot read a statement, `parse_error` says so and those fields are empty. A
//! multi-statement message arrives as one `check` per statement.

use crate::{CopyTarget, Sql, SqlWrite};

/// Statement kinds that only change session or transaction state: they never return rows
/// and never touch data.
pub const CONTROL_KINDS: &[&str] = &[
    "begin",
    "commit",
    "rollback",
    "set",
    "deallocate",
    "discard",
    "listen",
    "notify",
    "prepare",
];

/// Whether the statement reads data: a SELECT (with no data-changing CTE), `COPY ... TO`, or
/// an EXPLAIN / SHOW.
pub fn is_read(sql: &Sql) -> bool {
    match sql.kind.as_str() {
        "select" => sql.writes.is_empty(),
        "copy" => sql.copy.as_ref().is_some_and(|c| !c.is_from),
        "explain" | "show" => true,
        _ => false,
    }
}

/// Whether the statement can return rows to the client (reads, and writes with RETURNING).
pub fn may_return_rows(sql: &Sql) -> bool {
    !CONTROL_KINDS.contains(&sql.kind.as_str())
}

/// Whether `table` appears in the statement. Names match with or without a schema: `cards`
/// matches `cards` and `public.cards`; `public.cards` matches `cards` and `public.cards` but not
/// `audit.cards`. ASCII case is ignored (see [`same_table`]).
pub fn touches_table(sql: &Sql, table: &str) -> bool {
    sql.tables.iter().any(|t| same_table(t, table))
}

/// The last part of a possibly schema-qualified name: `pg_catalog.pg_read_file` →
/// `pg_read_file`. Function and table names arrive qualified when the client wrote them so;
/// compare this part with the names a policy knows.
pub fn unqualified(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(_, n)| n)
}

/// Whether the statement calls `function` (a bare name, compared with the last part of each
/// called name, ignoring ASCII case): `calls(s, "set_config")` is true for
/// `pg_catalog.set_config(...)`.
pub fn calls(sql: &Sql, function: &str) -> bool {
    sql.functions
        .iter()
        .any(|f| unqualified(f).eq_ignore_ascii_case(function))
}

/// Whether two table names denote the same table, allowing either side to omit the schema.
///
/// ASCII case is ignored: PostgreSQL tells `cards` from a quoted `"Cards"`, but a policy
/// configured with either spelling should rather cover both than miss the one it meant.
pub fn same_table(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    // Two qualified names that differ are different tables; otherwise compare the bare names.
    // (Checked on every statement, so no allocation.)
    !(a.contains('.') && b.contains('.')) && unqualified(a).eq_ignore_ascii_case(unqualified(b))
}

/// UPDATE and DELETE operations without a WHERE clause, anywhere in the statement.
pub fn writes_without_where(sql: &Sql) -> impl Iterator<Item = &SqlWrite> {
    sql.writes
        .iter()
        .filter(|w| (w.kind == "update" || w.kind == "delete") && !w.has_where)
}

/// The program of a `COPY ... TO PROGRAM` / `COPY ... FROM PROGRAM`.
pub fn copy_program(sql: &Sql) -> Option<&str> {
    match &sql.copy.as_ref()?.target {
        CopyTarget::Program(p) => Some(p),
        _ => None,
    }
}

/// A statement of `kind` with every other field empty (`statement_type` too), for unit tests
/// of policies: set the fields a test needs on the result.
///
/// ```
/// let mut s = warden_policy::sql::blank("select");
/// s.statement_type = "SelectStmt".into();
/// s.tables.push("cards".into());
/// assert!(warden_policy::sql::is_read(&s));
/// ```
pub fn blank(kind: &str) -> Sql {
    Sql {
        text: String::new(),
        kind: kind.to_string(),
        statement_type: String::new(),
        settings: Vec::new(),
        tables: Vec::new(),
        writes: Vec::new(),
        has_where: false,
        limit: None,
        functions: Vec::new(),
        copy: None,
        parse_error: None,
        columns: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqlCopy;

    fn sql(kind: &str, tables: &[&str]) -> Sql {
        let mut s = blank(kind);
        s.tables = tables.iter().map(|t| t.to_string()).collect();
        s
    }

    #[test]
    fn table_names_match_with_or_without_schema() {
        let s = sql("select", &["public.cards", "owners"]);
        assert!(touches_table(&s, "cards"));
        assert!(touches_table(&s, "public.cards"));
        assert!(!touches_table(&s, "audit.cards"));
        assert!(touches_table(&s, "public.owners"));
        assert!(!touches_table(&s, "card"));
        assert!(touches_table(&sql("select", &["cards"]), "public.cards"));
        assert!(!touches_table(&sql("select", &["cards"]), "ards"));
        assert!(!touches_table(&sql("select", &["xcards"]), "public.cards"));
        assert!(!same_table("a.cards", "b.cards"));
        assert!(same_table("a.cards", "a.cards"));
        assert!(same_table("Cards", "public.cards"));
        assert!(same_table("PUBLIC.CARDS", "public.cards"));
    }

    #[test]
    fn reads_writes_and_copy() {
        let mut s = sql("select", &["cards"]);
        assert!(is_read(&s));
        s.writes.push(SqlWrite {
            kind: "delete".into(),
            table: "cards".into(),
            has_where: false,
        });
        assert!(!is_read(&s), "a data-changing CTE is not a read");
        assert_eq!(writes_without_where(&s).count(), 1);

        let mut c = sql("copy", &["cards"]);
        c.copy = Some(SqlCopy {
            is_from: false,
            target: CopyTarget::Program("gzip".into()),
        });
        assert!(is_read(&c));
        assert_eq!(copy_program(&c), Some("gzip"));
        c.copy = Some(SqlCopy {
            is_from: true,
            target: CopyTarget::Stdio,
        });
        assert!(!is_read(&c));
        assert_eq!(copy_program(&c), None);
        assert!(!may_return_rows(&sql("begin", &[])));
        assert!(may_return_rows(&sql("insert", &["cards"])));
    }

    #[test]
    fn only_update_and_delete_without_where_are_reported() {
        let mut s = sql("select", &["cards", "log"]);
        for (kind, table, has_where) in [
            ("insert", "log", true),
            ("update", "cards", true),
            ("delete", "log", false),
            ("merge", "cards", true),
            ("update", "cards", false),
        ] {
            s.writes.push(SqlWrite {
                kind: kind.into(),
                table: table.into(),
                has_where,
            });
        }
        let found: Vec<_> = writes_without_where(&s)
            .map(|w| (w.kind.as_str(), w.table.as_str()))
            .collect();
        assert_eq!(found, [("delete", "log"), ("update", "cards")]);
    }

    #[test]
    fn names_compare_by_their_last_part() {
        assert_eq!(unqualified("pg_catalog.pg_read_file"), "pg_read_file");
        assert_eq!(unqualified("lower"), "lower");
        let mut s = sql("select", &[]);
        s.functions = vec!["pg_catalog.Set_Config".into(), "lower".into()];
        assert!(calls(&s, "set_config"));
        assert!(calls(&s, "lower"));
        assert!(!calls(&s, "config"));
        assert!(!calls(&sql("select", &[]), "lower"));
    }

    #[test]
    fn unknown_and_other_kinds_may_return_rows() {
        // Fail closed: a kind not known to be row-less (FETCH is `other`) may return rows.
        for kind in [
            "select", "other", "unknown", "fetch", "execute", "call", "explain",
        ] {
            assert!(may_return_rows(&sql(kind, &[])), "{kind}");
        }
        for kind in ["commit", "rollback", "set", "prepare"] {
            assert!(!may_return_rows(&sql(kind, &[])), "{kind}");
        }
        assert!(is_read(&sql("show", &[])));
        assert!(!is_read(&sql("insert", &["cards"])));
    }
}
