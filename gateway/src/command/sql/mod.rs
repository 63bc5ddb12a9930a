//! SQL text → one [`Statement`] per statement, read twice.
//!
//! PostgreSQL's own grammar ([`server`], libpg_query) decides: where the text splits into
//! statements, what each statement is (`kind`, `statement-type`), the settings it changes and
//! the prepared statements it makes or runs. Its tables and functions are joined with those
//! sqlparser finds ([`describe`]), which also reports each write with its WHERE, the top-level
//! WHERE and LIMIT and COPY's endpoint. Where the two readings disagree on something a policy
//! relies on — a statement the server reads as a write that sqlparser does not, a WHERE one
//! sees and the other does not — the message is refused: a differential between the gateway
//! and the server is how SQL gets past a policy, so it fails closed.

mod copy;
pub mod describe;
mod lineage;
pub mod server;
pub mod views;

pub use copy::{CopyFormat, CopyOut};
pub use server::PreparedOp;
pub use views::Views;

use crate::policy::{Sql, SqlWrite};

/// One statement of a message, as policies and the PostgreSQL adapter see it.
#[derive(Debug, Clone)]
pub struct Statement {
    /// The record policies get.
    pub sql: Sql,
    /// What it does to the session's prepared statements.
    pub prepared: PreparedOp,
    /// For PREPARE: the record of the statement it prepares (what EXECUTE will run).
    pub inner: Option<Sql>,
    /// The cursor (portal) DECLARE opens or CLOSE closes; empty for CLOSE ALL.
    pub cursor: Option<String>,
    /// The cursor FETCH or MOVE reads.
    pub fetches: Option<String>,
    /// A `COPY ... TO STDOUT`: the query of its columns and its line format.
    pub copy_out: Option<CopyOut>,
}

/// Why a message is refused before any policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The SQLSTATE the server would give (42601 for a syntax error; 0A000 otherwise).
    pub code: &'static str,
    pub reason: String,
}

/// A record of `kind` for `text` with nothing else known (filled in by the readings).
pub fn record(text: &str, kind: &str) -> Sql {
    Sql {
        text: text.to_string(),
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

/// Stack for every thread that reads SQL (the gateway's runtime threads). Reading recurses once
/// per level of nesting — libpg_query's result decoding (up to prost's depth limit of 100,
/// beyond which the text is refused), the JSON tree, the walks over it — and an unoptimised
/// build overflows the default 2 MiB at fifteen nested subqueries: the whole process aborts.
pub const READER_STACK: usize = 32 << 20;

const SYNTAX_ERROR: &str = "42601";
const NOT_SUPPORTED: &str = "0A000";

/// Split and describe every statement of `text`. A message of only whitespace and comments
/// gives no statements.
pub fn parse(text: &str) -> Result<Vec<Statement>, Unreadable> {
    let pieces = server::split(text).map_err(|e| Unreadable {
        code: SYNTAX_ERROR,
        reason: format!("warden: {e} (PostgreSQL's grammar; nothing was run)"),
    })?;
    pieces.into_iter().map(statement).collect()
}

fn statement(text: &str) -> Result<Statement, Unreadable> {
    let described = describe::describe(text);
    let mut sql = described.sql;
    let read = if sql.parse_error.is_some() {
        server::read_in_full
    } else {
        server::read
    };
    let sv = read(text).map_err(|e| Unreadable {
        code: SYNTAX_ERROR,
        reason: format!("warden: {e} (PostgreSQL's grammar; nothing was run)"),
    })?;
    disagreement(&sv, &sql).map_or(Ok(()), |what| {
        Err(Unreadable {
            code: NOT_SUPPORTED,
            reason: format!(
                "warden: refused: the gateway cannot read this statement the way the server would ({what}); rewrite it plainly"
            ),
        })
    })?;
    from_server_alone(&sv, &mut sql);
    let kind = match (server::kind_of(&sv), sql.kind.as_str()) {
        // SELECT ... INTO creates a table; GrantStmt is also REVOKE.
        ("select", "create") => "create",
        ("grant", "revoke") => "revoke",
        (k, _) => k,
    };
    sql.kind = kind.to_string();
    sql.statement_type = sv.statement_type.clone();
    sql.settings = sv.settings.clone();
    join(&mut sql.tables, &sv.tables);
    join(&mut sql.functions, &sv.functions);
    sql.columns = sv.columns.iter().map(lineage::to_wit).collect();
    let inner = described.inner.map(|mut inner| {
        inner.statement_type = sv.inner_type.clone().unwrap_or_default();
        inner.kind = server::kind_of(&server::ServerStatement {
            statement_type: inner.statement_type.clone(),
            ..Default::default()
        })
        .to_string();
        inner.tables = sql.tables.clone();
        inner.functions = sql.functions.clone();
        inner.columns = sql.columns.clone();
        inner
    });
    Ok(Statement {
        sql,
        prepared: sv.prepared,
        inner,
        cursor: sv.cursor,
        fetches: sv.fetches,
        copy_out: sv.copy_out,
    })
}

/// Statement types whose facts the server's tree gives in full: their writes (at any depth,
/// with their WHERE) and their top-level WHERE. COPY and the other utility statements keep
/// facts only the second parser finds (COPY's endpoint).
const READ_BY_SERVER_ALONE: &[&str] = &[
    "SelectStmt",
    "InsertStmt",
    "UpdateStmt",
    "DeleteStmt",
    "MergeStmt",
    "ExplainStmt",
];

/// When the second parser cannot read a statement the server's grammar accepts (sqlparser
/// lags the server's syntax: pg_dump and psql write `x OPERATOR(pg_catalog.=) ANY (...)`),
/// the server's own tree supplies `writes` and `has_where` for the statement types it
/// describes in full, and the statement is no longer unreadable. `limit` stays unknown (an
/// unbounded read, the strict answer), and the server's tree is the one the server runs, so
/// there is no second reading to disagree with.
fn from_server_alone(sv: &server::ServerStatement, sql: &mut Sql) {
    let (Some(_), Some(writes), Some(has_where)) = (&sql.parse_error, &sv.writes, sv.has_where)
    else {
        return;
    };
    if !READ_BY_SERVER_ALONE.contains(&sv.statement_type.as_str()) {
        return;
    }
    sql.writes = writes
        .iter()
        .map(|(kind, table, has_where)| SqlWrite {
            kind: (*kind).to_string(),
            table: table.clone(),
            has_where: *has_where,
        })
        .collect();
    sql.has_where = has_where;
    sql.limit = None;
    sql.parse_error = None;
}

/// What the two readings disagree on, if anything a policy relies on. sqlparser may see more
/// tables and functions than the server (they are joined); it must not miss a write, invent a
/// WHERE or read another statement kind for a write.
fn disagreement(sv: &server::ServerStatement, sql: &Sql) -> Option<String> {
    if sql.parse_error.is_some() {
        // Nothing from sqlparser is used but its (empty) extras; the server's facts stand.
        return None;
    }
    let server_kind = server::kind_of(sv);
    let writes_kind = ["insert", "update", "delete", "merge"];
    if writes_kind.contains(&server_kind) && sql.kind != server_kind {
        return Some(format!(
            "the server reads {server_kind}, the second parser {}",
            sql.kind
        ));
    }
    let copy_from = sql.copy.as_ref().is_some_and(|c| c.is_from);
    for table in &sv.written {
        let seen = sql.writes.iter().any(|w| same_name(&w.table, table))
            || (copy_from && sql.tables.iter().any(|t| same_name(t, table)));
        if !seen {
            return Some(format!("a write to {table} the second parser does not see"));
        }
    }
    if let Some(writes) = &sv.writes {
        for (kind, table, has_where) in writes {
            let matched = sql.writes.iter().any(|w| {
                w.kind == *kind && same_name(&w.table, table) && w.has_where == *has_where
            });
            if !matched {
                let clause = if *has_where { "with" } else { "without" };
                return Some(format!(
                    "the server reads {} on {table} {clause} WHERE",
                    kind.to_uppercase()
                ));
            }
        }
    }
    None
}

/// Whether two possibly-qualified names are the same object as far as the texts tell: equal,
/// or one is the other with a schema (or catalog) in front.
fn same_name(a: &str, b: &str) -> bool {
    a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))
}

/// Add the names the other list has that this one lacks, after its own (order of appearance).
pub fn join(ours: &mut Vec<String>, server: &[String]) {
    for s in server {
        if !ours.iter().any(|o| same_name(o, s)) {
            ours.push(s.clone());
        }
    }
}

#[cfg(test)]
mod tests;
