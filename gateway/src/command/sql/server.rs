//! The server's reading of SQL text. libpg_query is PostgreSQL's own lexer and grammar, compiled
//! from the server's sources, so it splits a message into statements exactly where the server
//! does and names each statement as the server will run it: its parse node, the tables it
//! touches and the functions it calls, with `U&"..."` escapes, quoting and SQL-syntax calls
//! (`substring(x FROM 1)`) resolved.
//!
//! Lexing depends on two settings the gateway pins upstream (`standard_conforming_strings =
//! on`, `client_encoding = UTF8`; see `proxy/postgres/params.rs`), so the default parser
//! options read the text as the server does.
//!
//! Cost: splitting and libpg_query's own summary walk are linear and cheap (a 1 MiB message of
//! small statements in tens of milliseconds). Data-manipulation statements are described by
//! that summary, whose walker is the server's own `raw_expression_tree_walker`; every other
//! statement (utility statements, whose clauses that walker does not enter) gets a full parse
//! and a walk over every node of its tree, as does any statement calling `set_config`.

use pg_query::protobuf::summary_result::Context;
use pg_query::protobuf::{self, VariableSetKind};
use serde_json::Value;

/// One statement as the server reads it.
#[derive(Debug, Clone, Default)]
pub struct ServerStatement {
    /// The parse node of the statement (`SelectStmt`, `CreateFunctionStmt`, ...).
    pub statement_type: String,
    /// Tables named anywhere in the statement, schema-qualified when written so.
    pub tables: Vec<String>,
    /// Tables the statement writes (INSERT / UPDATE / DELETE / MERGE targets, at any depth).
    pub written: Vec<String>,
    /// Functions called anywhere in the statement.
    pub functions: Vec<String>,
    /// Settings changed (see the WIT's `settings`).
    pub settings: Vec<String>,
    /// What the statement does to the session's prepared statements.
    pub prepared: PreparedOp,
    /// For PREPARE: the parse node of the prepared statement.
    pub inner_type: Option<String>,
    /// For a TransactionStmt: begin, commit or rollback.
    pub transaction: Option<&'static str>,
    /// The SQL cursor (a portal, in the protocol's one namespace) that DECLARE opens or CLOSE
    /// closes; empty for CLOSE ALL.
    pub cursor: Option<String>,
    /// The SQL cursor FETCH or MOVE reads from.
    pub fetches: Option<String>,
    /// A `COPY ... TO STDOUT`: the query of its columns and its line format.
    pub copy_out: Option<super::copy::CopyOut>,
    /// Every INSERT / UPDATE / DELETE / MERGE in the tree (kind, table, has WHERE), when the
    /// statement was read in full (any UPDATE, DELETE or MERGE is).
    pub writes: Option<Vec<(&'static str, String, bool)>>,
    /// Every use of a table column (see `lineage.rs`).
    pub columns: Vec<super::lineage::Use>,
    /// Whether the top-level SELECT, UPDATE or DELETE (or the one EXPLAIN shows) has a WHERE,
    /// when the statement was read in full.
    pub has_where: Option<bool>,
    /// A `SELECT ... INTO new_table` (it creates a table), when read in full.
    pub select_into: bool,
}

/// A statement's effect on the session's SQL-level prepared statements, which share one
/// namespace with the protocol's named statements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PreparedOp {
    #[default]
    None,
    /// `PREPARE name AS ...`.
    Prepare(String),
    /// `EXECUTE name`, at the top or inside EXPLAIN / CREATE TABLE AS.
    Execute(String),
    /// `DEALLOCATE name`.
    Deallocate(String),
    /// `DEALLOCATE ALL`, `DISCARD ALL`.
    DeallocateAll,
}

/// Statement types whose every clause libpg_query's summary walker enters.
const SUMMARISED: &[&str] = &[
    "SelectStmt",
    "InsertStmt",
    "UpdateStmt",
    "DeleteStmt",
    "MergeStmt",
];

/// Run one libpg_query call, turning a panic in the binding's decoding into an error: text
/// the gateway cannot read is refused, never a crash.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("the SQL parser failed on this text".into()))
}

/// Split `text` into its statements where the server will (empty statements are dropped;
/// leading comments and whitespace are trimmed). An error is the server's own syntax error.
pub fn split(text: &str) -> Result<Vec<&str>, String> {
    guarded(|| pg_query::split_with_parser(text).map_err(clean)).map(|v| {
        v.into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    })
}

/// Read one statement (a piece [`split`] returned).
pub fn read(stmt: &str) -> Result<ServerStatement, String> {
    read_with(stmt, false)
}

/// Read one statement and walk its whole tree whatever its type, so that `writes` and
/// `has_where` are known: for a statement the second parser cannot read (`mod.rs`).
pub fn read_in_full(stmt: &str) -> Result<ServerStatement, String> {
    read_with(stmt, true)
}

fn read_with(stmt: &str, in_full: bool) -> Result<ServerStatement, String> {
    let summary = guarded(|| pg_query::summary(stmt, 0, -1).map_err(clean))?;
    let statement_type = summary
        .statement_types
        .first()
        .cloned()
        .ok_or_else(|| "no statement".to_string())?;
    let mut out = ServerStatement {
        statement_type,
        ..Default::default()
    };
    // Names as the server resolved them, unquoted (the summary's `name` re-quotes them).
    let qualified = |schema: &str, name: &str| match schema {
        "" => name.to_string(),
        s => format!("{s}.{name}"),
    };
    for t in &summary.tables {
        let name = qualified(&t.schema_name, &t.table_name);
        if t.context == Context::Dml {
            push_unique(&mut out.written, name.clone());
        }
        push_unique(&mut out.tables, name);
    }
    for f in &summary.functions {
        if f.context == Context::Call {
            let schema = f.schema_name.as_deref().unwrap_or("");
            push_unique(&mut out.functions, qualified(schema, &f.function_name));
        }
    }
    let from_summary = out.tables.len();
    let calls_set_config = out.functions.iter().any(|f| last_part(f) == "set_config");
    // Where an UPDATE, DELETE or MERGE appears, each one's WHERE is checked against the
    // server's tree (a comment the other parser reads differently must not invent a WHERE).
    let changes_rows = summary
        .statement_types
        .iter()
        .any(|t| matches!(t.as_str(), "UpdateStmt" | "DeleteStmt" | "MergeStmt"));
    let full = in_full
        || !SUMMARISED.contains(&out.statement_type.as_str())
        || calls_set_config
        || changes_rows;
    // Column lineage needs the tree of any statement that names a table.
    if full || !out.tables.is_empty() {
        let (tree, copy_out) = parse_tree(stmt)?;
        out.copy_out = copy_out;
        out.columns = super::lineage::uses(&tree, &out.tables);
        if !full {
            return Ok(out);
        }
        out.writes = Some(Vec::new());
        let mut ctes = Vec::new();
        walk(&tree, &mut out, &mut ctes);
        // The walk does not know scopes: a reference to a CTE looks like a table. The summary
        // told CTEs from tables; drop what the walk added under a CTE's name.
        let mut i = 0;
        out.tables.retain(|t| {
            i += 1;
            i <= from_summary || !ctes.contains(t)
        });
        top_level(&tree, &mut out);
    }
    Ok(out)
}

/// The parse tree of one statement, as JSON (`None` for text that does not parse).
pub fn tree(stmt: &str) -> Option<Value> {
    parse_tree(stmt).ok().map(|(tree, _)| tree)
}

/// One statement's full parse: its tree as JSON, and for `COPY ... TO STDOUT` its columns'
/// query and line format.
fn parse_tree(stmt: &str) -> Result<(Value, Option<super::copy::CopyOut>), String> {
    guarded(|| {
        let parsed = pg_query::parse(stmt, 0).map_err(clean)?;
        let raw = parsed
            .protobuf
            .stmts
            .first()
            .and_then(|s| s.stmt.as_ref())
            .ok_or_else(|| "no statement".to_string())?;
        let tree = serde_json::to_value(raw).map_err(|e| e.to_string())?;
        Ok((tree, super::copy::copy_out(raw)))
    })
}

/// The last dot-separated part of a (possibly schema-qualified) name.
pub fn last_part(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(_, n)| n)
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

/// libpg_query's messages carry a prefix of its own; the server says just the message.
fn clean(e: pg_query::Error) -> String {
    let s = e.to_string();
    s.strip_prefix("Invalid statement: ")
        .or_else(|| s.strip_prefix("Error splitting statements: "))
        .unwrap_or(&s)
        .to_string()
}

/// A node as serde renders the protobuf tree: `{"node": {"FuncCall": {...}}}`.
fn node(v: &Value) -> Option<(&str, &Value)> {
    let inner = v.get("node")?.as_object()?;
    inner.iter().next().map(|(k, v)| (k.as_str(), v))
}

/// The strings of a name list (`[{"node": {"String": {"sval": "pg_catalog"}}}, ...]`).
fn name_list(v: &Value) -> Option<String> {
    let parts: Vec<&str> = v
        .as_array()?
        .iter()
        .filter_map(|n| match node(n) {
            Some(("String", s)) => s.get("sval")?.as_str(),
            _ => None,
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("."))
}

/// Every FuncCall and RangeVar anywhere in the tree, and the settings `set_config` changes.
fn walk(v: &Value, out: &mut ServerStatement, ctes: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            // A RangeVar is a node in some places and a plain field (`relation`) in others:
            // recognise it by its fields.
            if map.contains_key("relname") && map.contains_key("relpersistence") {
                let name = range_var(v);
                if !name.is_empty() {
                    push_unique(&mut out.tables, name);
                }
            }
            for (key, value) in map {
                match key.as_str() {
                    "FuncCall" => {
                        if let Some(name) = value.get("funcname").and_then(name_list) {
                            if last_part(&name) == "set_config" {
                                let setting = value
                                    .get("args")
                                    .and_then(|a| a.get(0))
                                    .and_then(string_constant)
                                    .map_or_else(|| "*".to_string(), |s| s.to_lowercase());
                                push_unique(&mut out.settings, setting);
                            }
                            push_unique(&mut out.functions, name);
                        }
                    }
                    "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                        let kind = match key.as_str() {
                            "InsertStmt" => "insert",
                            "UpdateStmt" => "update",
                            "DeleteStmt" => "delete",
                            _ => "merge",
                        };
                        let table = value.get("relation").map(range_var).unwrap_or_default();
                        let has_where = kind == "insert"
                            || kind == "merge"
                            || value.get("where_clause").is_some_and(|w| !w.is_null());
                        if let Some(w) = out.writes.as_mut() {
                            w.push((kind, table, has_where));
                        }
                    }
                    "CommonTableExpr" => {
                        if let Some(name) = value.get("ctename").and_then(Value::as_str) {
                            ctes.push(name.to_string());
                        }
                    }
                    "ExecuteStmt" => {
                        if let Some(name) = value.get("name").and_then(Value::as_str) {
                            out.prepared = PreparedOp::Execute(name.to_string());
                        }
                    }
                    _ => {}
                }
                walk(value, out, ctes);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, out, ctes)),
        _ => {}
    }
}

/// A RangeVar's name, schema-qualified when written so (a `relation` field holds the RangeVar
/// itself, not a node).
pub(super) fn range_var(v: &Value) -> String {
    let rel = v.get("relname").and_then(Value::as_str).unwrap_or("");
    match v.get("schemaname").and_then(Value::as_str) {
        Some(s) if !s.is_empty() && !rel.is_empty() => format!("{s}.{rel}"),
        _ => rel.to_string(),
    }
}

/// A string literal argument (`'client_encoding'`, or one cast: `'x'::text`).
fn string_constant(arg: &Value) -> Option<&str> {
    match node(arg)? {
        ("AConst", c) => c.get("val")?.get("Sval")?.get("sval")?.as_str(),
        ("TypeCast", c) => string_constant(c.get("arg")?),
        _ => None,
    }
}

/// What the top-level node says about settings, prepared statements and transactions.
fn top_level(tree: &Value, out: &mut ServerStatement) {
    let Some((kind, stmt)) = node(tree) else {
        return;
    };
    let str_field = |f: &str| stmt.get(f).and_then(Value::as_str).unwrap_or("");
    let int_field = |f: &str| stmt.get(f).and_then(Value::as_i64).unwrap_or(0);
    out.has_where = Some(top_where(tree));
    out.select_into = kind == "SelectStmt" && stmt.get("into_clause").is_some_and(|v| !v.is_null());
    match kind {
        "VariableSetStmt" => {
            let k = int_field("kind");
            let name = str_field("name").to_lowercase();
            if k == VariableSetKind::VarResetAll as i64 {
                push_unique(&mut out.settings, "all".into());
            } else if k == VariableSetKind::VarSetMulti as i64 {
                // SET TRANSACTION / SET SESSION CHARACTERISTICS: transaction modes only.
                push_unique(&mut out.settings, name.replace(' ', "_"));
            } else if !name.is_empty() {
                push_unique(&mut out.settings, name);
            }
        }
        // pg_dump (since 15.8) sets a setting by a name read from pg_settings, where the
        // WHERE names it: `SELECT set_config(name, 'view, foreign-table', false) FROM
        // pg_settings WHERE name = 'restrict_nonsystem_relation_kind'`. The name is that
        // literal, not "any setting".
        "SelectStmt" if out.settings.iter().any(|s| s == "*") => {
            if let Some(name) = named_by_where(stmt) {
                out.settings.retain(|s| s != "*");
                push_unique(&mut out.settings, name);
            }
        }
        "PrepareStmt" => {
            out.prepared = PreparedOp::Prepare(str_field("name").to_string());
            out.inner_type = stmt.get("query").and_then(node).map(|(t, _)| t.to_string());
        }
        "DeclareCursorStmt" | "ClosePortalStmt" => {
            out.cursor = Some(str_field("portalname").to_string());
        }
        "FetchStmt" => {
            out.fetches = Some(str_field("portalname").to_string());
        }
        "DeallocateStmt" => {
            out.prepared = if stmt.get("isall").and_then(Value::as_bool) == Some(true) {
                PreparedOp::DeallocateAll
            } else {
                PreparedOp::Deallocate(str_field("name").to_string())
            };
        }
        // DISCARD ALL also resets settings to the session's start, which only undoes a
        // session's own changes (the gateway's pins are start-up values): poolers send it.
        "DiscardStmt" if int_field("target") == protobuf::DiscardMode::DiscardAll as i64 => {
            out.prepared = PreparedOp::DeallocateAll;
        }
        "TransactionStmt" => {
            use protobuf::TransactionStmtKind as K;
            let k = int_field("kind");
            out.transaction = Some(
                if [K::TransStmtBegin, K::TransStmtStart, K::TransStmtSavepoint]
                    .iter()
                    .any(|x| *x as i64 == k)
                {
                    "begin"
                } else if [
                    K::TransStmtRollback,
                    K::TransStmtRollbackTo,
                    K::TransStmtRollbackPrepared,
                ]
                .iter()
                .any(|x| *x as i64 == k)
                {
                    "rollback"
                } else {
                    "commit"
                },
            );
        }
        _ => {}
    }
}

/// Whether the top-level SELECT, UPDATE or DELETE has a WHERE clause (the statement EXPLAIN
/// shows, for EXPLAIN). A set operation (`UNION`) has none of its own.
fn top_where(tree: &Value) -> bool {
    match node(tree) {
        Some(("SelectStmt" | "UpdateStmt" | "DeleteStmt", stmt)) => {
            stmt.get("where_clause").is_some_and(|w| !w.is_null())
        }
        Some(("ExplainStmt", stmt)) => stmt.get("query").is_some_and(top_where),
        _ => false,
    }
}

/// The setting a `SELECT set_config(name, ...) FROM pg_settings WHERE name = 'x'` changes:
/// `x`, when every set_config call's name is the column `name`, the only relation is
/// `pg_settings` and the WHERE is exactly `name = 'x'`.
fn named_by_where(select: &Value) -> Option<String> {
    let from = select.get("from_clause")?.as_array()?;
    let [only] = from.as_slice() else { return None };
    let ("RangeVar", rel) = node(only)? else {
        return None;
    };
    let schema = rel.get("schemaname").and_then(Value::as_str).unwrap_or("");
    if range_var(rel) != "pg_settings"
        && !(schema == "pg_catalog" && last_part(&range_var(rel)) == "pg_settings")
    {
        return None;
    }
    let is_name = |v: &Value| match node(v) {
        Some(("ColumnRef", c)) => name_list(c.get("fields")?).map(|n| n == "name"),
        _ => Some(false),
    };
    let ("AExpr", cond) = node(select.get("where_clause")?)? else {
        return None;
    };
    if name_list(cond.get("name")?)? != "=" || !is_name(cond.get("lexpr")?)? {
        return None;
    }
    let value = string_constant(cond.get("rexpr")?)?.to_lowercase();
    // Every set_config in the select list takes its name from the `name` column.
    for target in select.get("target_list")?.as_array()? {
        let ("ResTarget", t) = node(target)? else {
            return None;
        };
        let ("FuncCall", f) = node(t.get("val")?)? else {
            return None;
        };
        if last_part(&name_list(f.get("funcname")?)?) != "set_config"
            || !is_name(f.get("args")?.get(0)?)?
        {
            return None;
        }
    }
    Some(value)
}

/// The kind policies match on (the WIT's vocabulary) for a parse node.
pub fn kind_of(s: &ServerStatement) -> &'static str {
    let t = s.statement_type.as_str();
    match t {
        "SelectStmt" if s.select_into => "create",
        "SelectStmt" => "select",
        "InsertStmt" => "insert",
        "UpdateStmt" => "update",
        "DeleteStmt" => "delete",
        "MergeStmt" => "merge",
        "CopyStmt" => "copy",
        "TruncateStmt" => "truncate",
        "GrantStmt" | "GrantRoleStmt" => "grant",
        "VariableSetStmt" => "set",
        "VariableShowStmt" => "show",
        "TransactionStmt" => s.transaction.unwrap_or("commit"),
        "ExplainStmt" => "explain",
        "CallStmt" => "call",
        "PrepareStmt" => "prepare",
        "ExecuteStmt" => "execute",
        "DeallocateStmt" => "deallocate",
        "DiscardStmt" => "discard",
        "ListenStmt" | "UnlistenStmt" => "listen",
        "NotifyStmt" => "notify",
        "RenameStmt" | "ReassignOwnedStmt" => "alter",
        "DefineStmt" | "ViewStmt" | "IndexStmt" | "RuleStmt" | "CompositeTypeStmt"
        | "CreatedbStmt" => "create",
        t if t.starts_with("Create") => "create",
        t if t.starts_with("Alter") => "alter",
        t if t.starts_with("Drop") => "drop",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn splits_where_the_server_does() {
        // The COPY trick: the server runs the DROP after the COPY statement.
        assert_eq!(
            split("COPY t FROM STDIN;\nDROP TABLE victim;").unwrap(),
            ["COPY t FROM STDIN", "DROP TABLE victim"]
        );
        // Backslashes are not escapes in standard-conforming strings (pinned upstream): the
        // rest is a comment, for the server as for the gateway.
        assert_eq!(
            split(r"SELECT 'a\' -- '; DROP TABLE victim; --")
                .unwrap()
                .len(),
            1
        );
        assert_eq!(split("SELECT E'a\\' -- '").unwrap().len(), 1);
        // Nested comments, as the server nests them.
        assert_eq!(
            split("DELETE FROM t /* /* */ WHERE id = 1 -- */\n").unwrap(),
            ["DELETE FROM t /* /* */ WHERE id = 1 -- */"]
        );
        assert!(split("  -- nothing\n ;; ").unwrap().is_empty());
        assert!(split("SELEC 1").unwrap_err().contains("syntax error"));
    }

    #[test]
    fn resolves_names_as_the_server_does() {
        let s = read(r#"SELECT U&"pg\005fread\005ffile"('/etc/hostname')"#).unwrap();
        assert_eq!(s.functions, ["pg_read_file"]);
        let s = read("SELECT substring('a' FROM 1), \"Lo_Export\"(1, 'x')").unwrap();
        assert!(s.functions.contains(&"pg_catalog.substring".to_string()));
        assert!(s.functions.contains(&"Lo_Export".to_string()));
        // Utility statements are walked in full.
        let s = read("DECLARE c CURSOR FOR SELECT pg_read_file('/x') FROM cards").unwrap();
        assert_eq!(
            (s.tables.as_slice(), s.functions.as_slice()),
            (
                &["cards".to_string()][..],
                &["pg_read_file".to_string()][..]
            )
        );
        let s = read("ALTER TABLE t ADD COLUMN c int DEFAULT lo_import('/x')").unwrap();
        assert!(s.functions.contains(&"lo_import".to_string()));
        let s = read("UPDATE t SET a = 1 WHERE id IN (SELECT 1 FROM u)").unwrap();
        assert_eq!(s.written, ["t"]);
        assert_eq!(kind_of(&s), "update");
    }

    #[test]
    fn settings_prepared_statements_and_transactions() {
        // pg_dump's way of naming a setting: the WHERE names it.
        assert_eq!(
            read("SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'").unwrap().settings,
            ["restrict_nonsystem_relation_kind"]
        );
        for any in [
            "SELECT set_config(name, 'off', false) FROM pg_settings WHERE name = 'x' OR true",
            "SELECT set_config(name, 'off', false) FROM pg_settings WHERE name LIKE 'standard%'",
            "SELECT set_config(setting, 'off', false) FROM pg_settings WHERE name = 'x'",
            "SELECT set_config(name, 'off', false) FROM pg_settings, t WHERE name = 'x'",
            "SELECT set_config(name, 'off', false), set_config(n, 'x', false) FROM pg_settings WHERE name = 'x'",
        ] {
            assert_eq!(read(any).unwrap().settings, ["*"], "{any}");
        }
        assert_eq!(
            read("SET NAMES 'SJIS'").unwrap().settings,
            ["client_encoding"]
        );
        assert_eq!(read("set LOCAL Role = bob").unwrap().settings, ["role"]);
        assert_eq!(
            read("SET SESSION AUTHORIZATION bob").unwrap().settings,
            ["session_authorization"]
        );
        assert_eq!(read("RESET ALL").unwrap().settings, ["all"]);
        assert_eq!(
            read("SELECT pg_catalog.set_config('Standard_Conforming_Strings', 'off', false)")
                .unwrap()
                .settings,
            ["standard_conforming_strings"]
        );
        assert_eq!(
            read("SELECT set_config(name, 'x', false) FROM v")
                .unwrap()
                .settings,
            ["*"]
        );
        let p = read("PREPARE s(int) AS SELECT pan FROM cards WHERE id = $1").unwrap();
        assert_eq!(p.prepared, PreparedOp::Prepare("s".into()));
        assert_eq!(p.inner_type.as_deref(), Some("SelectStmt"));
        assert_eq!(p.tables, ["cards"]);
        let e = read("EXPLAIN ANALYZE EXECUTE s(pg_read_file('x'))").unwrap();
        assert_eq!(e.prepared, PreparedOp::Execute("s".into()));
        assert_eq!(e.functions, ["pg_read_file"]);
        assert_eq!(
            read("DEALLOCATE ALL").unwrap().prepared,
            PreparedOp::DeallocateAll
        );
        assert_eq!(
            read("DISCARD ALL").unwrap().prepared,
            PreparedOp::DeallocateAll
        );
        assert_eq!(
            read("DEALLOCATE PREPARE s").unwrap().prepared,
            PreparedOp::Deallocate("s".into())
        );
        for (sql, kind) in [
            ("BEGIN", "begin"),
            ("START TRANSACTION", "begin"),
            ("SAVEPOINT a", "begin"),
            ("END", "commit"),
            ("RELEASE a", "commit"),
            ("ROLLBACK TO a", "rollback"),
            ("ABORT", "rollback"),
        ] {
            assert_eq!(kind_of(&read(sql).unwrap()), kind, "{sql}");
        }
    }
}
