//! Small helpers over the host-parsed [`Sql`] statement.
//!
//! The host fills [`Sql`] with sqlparser's PostgreSQL dialect: `kind` is the lower-case
//! top-level statement kind, `tables` every table read or written (lower-cased unless quoted,
//! schema-qualified when written so), `writes` every insert/update/delete/merge including those
//! inside CTEs. A multi-statement message arrives as one `check` per statement.

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
/// `audit.cards`.
pub fn touches_table(sql: &Sql, table: &str) -> bool {
    sql.tables.iter().any(|t| same_table(t, table))
}

/// Whether two table names denote the same table, allowing either side to omit the schema.
pub fn same_table(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let base = |s: &str| {
        s.rsplit_once('.')
            .map_or(s.to_string(), |(_, t)| t.to_string())
    };
    let qualified = |s: &str| s.contains('.');
    match (qualified(a), qualified(b)) {
        (true, true) => false,
        _ => base(a) == base(b),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqlCopy;

    fn sql(kind: &str, tables: &[&str]) -> Sql {
        Sql {
            text: String::new(),
            kind: kind.into(),
            tables: tables.iter().map(|t| t.to_string()).collect(),
            writes: Vec::new(),
            has_where: false,
            limit: None,
            functions: Vec::new(),
            copy: None,
            parse_error: None,
        }
    }

    #[test]
    fn table_names_match_with_or_without_schema() {
        let s = sql("select", &["public.cards", "owners"]);
        assert!(touches_table(&s, "cards"));
        assert!(touches_table(&s, "public.cards"));
        assert!(!touches_table(&s, "audit.cards"));
        assert!(touches_table(&s, "public.owners"));
        assert!(!touches_table(&s, "card"));
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
}
