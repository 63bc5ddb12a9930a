//! The second reading of one statement, by sqlparser (PostgreSQL dialect): what the server's
//! grammar does not summarise cheaply — each write with its WHERE, the top-level WHERE and
//! LIMIT, COPY's direction and endpoint — plus its own list of tables and functions, which
//! `mod.rs` joins with the server's. The text is one statement as the server split it.

use crate::policy::{CopyTarget, Sql, SqlCopy, SqlWrite};
use sqlparser::ast::{
    self, Expr, LimitClause, ObjectName, ObjectNamePart, Query, SetExpr, Statement, Value, Visit,
    Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use std::collections::HashSet;
use std::ops::ControlFlow;

/// One statement as sqlparser reads it; for PREPARE also the statement it prepares.
pub struct Described {
    pub sql: Sql,
    pub inner: Option<Sql>,
}

/// Binary operators the second parser may nest, at most (see [`describe`]).
const MAX_OPERATORS: usize = 5000;

/// Operator tokens and AND / OR / NOT keywords in the text (sqlparser's tokenizer is iterative;
/// a text that does not tokenize counts nothing and fails in the parser).
fn count_operators(text: &str) -> usize {
    use sqlparser::keywords::Keyword;
    use sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, text).tokenize() else {
        return 0;
    };
    tokens
        .iter()
        .filter(|t| match t {
            Token::Word(w) => matches!(w.keyword, Keyword::AND | Keyword::OR | Keyword::NOT),
            Token::Whitespace(_)
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::Comma
            | Token::LParen
            | Token::RParen
            | Token::Period
            | Token::SemiColon
            | Token::EOF => false,
            _ => true,
        })
        .count()
}

/// Describe one statement's text.
pub fn describe(text: &str) -> Described {
    // sqlparser nests a chain of binary operators one level per operator, and walking or
    // dropping 40,000 levels overflows the stack (the server's grammar flattens AND/OR
    // chains). Beyond MAX_OPERATORS the second reading is not attempted.
    // (At least two characters per operator: a shorter text cannot have too many.)
    let operators = if text.len() > 2 * MAX_OPERATORS {
        count_operators(text)
    } else {
        0
    };
    if operators > MAX_OPERATORS {
        let e =
            format!("{operators} operators: more than the second parser reads ({MAX_OPERATORS})");
        return Described {
            sql: unparsed(text, e),
            inner: None,
        };
    }
    let statement = match Parser::parse_sql(&PostgreSqlDialect {}, text) {
        Ok(mut v) if v.len() == 1 => v.remove(0),
        Ok(v) => {
            let e = format!("expected one statement, found {}", v.len());
            return Described {
                sql: unparsed(text, e),
                inner: None,
            };
        }
        Err(e) => {
            return Described {
                sql: unparsed(text, e.to_string()),
                inner: None,
            };
        }
    };
    let inner = match &statement {
        Statement::Prepare { statement, .. } => Some(describe_statement(text, statement)),
        _ => None,
    };
    Described {
        sql: describe_statement(text, &statement),
        inner,
    }
}

fn describe_statement(text: &str, statement: &Statement) -> Sql {
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
    let (has_where, limit) = top_level_filters(statement);
    Sql {
        text: text.to_string(),
        kind: kind(statement).to_string(),
        statement_type: String::new(),
        settings: Vec::new(),
        tables,
        writes: facts.writes,
        has_where,
        limit,
        functions: dedup(facts.functions),
        copy: copy_of(statement),
        parse_error: None,
        columns: Vec::new(),
    }
}

fn unparsed(text: &str, error: String) -> Sql {
    Sql {
        parse_error: Some(error),
        ..super::record(text, "unknown")
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
            (has_where, bounded_limit(q))
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
            (has_where, bounded_limit(q))
        }
        _ => (false, None),
    }
}

/// Per-row functions: they cannot fold rows into one, so a LIMIT still bounds what is read.
const PER_ROW: &[&str] = &[
    "lower",
    "upper",
    "length",
    "char_length",
    "substr",
    "substring",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "coalesce",
    "nullif",
    "to_char",
    "date_trunc",
    "round",
    "abs",
    "concat",
    "left",
    "right",
    "now",
    "md5",
    "replace",
    "split_part",
    "lpad",
    "rpad",
    "initcap",
];

/// The literal LIMIT, when it bounds the rows read from the tables: a plain SELECT without
/// WITH, subqueries, set operations, grouping, `WITH TIES`/`PERCENT`, or functions that are
/// not known per-row scalars (an aggregate, a window or a recursive CTE can fold a whole
/// table into the few rows a LIMIT lets through).
fn bounded_limit(q: &Query) -> Option<u64> {
    if q.with.is_some() || q.fetch.as_ref().is_some_and(|f| f.with_ties || f.percent) {
        return None;
    }
    let SetExpr::Select(select) = &*q.body else {
        return None;
    };
    let grouped = match &select.group_by {
        ast::GroupByExpr::All(_) => true,
        ast::GroupByExpr::Expressions(e, _) => !e.is_empty(),
    };
    if grouped || select.having.is_some() {
        return None;
    }
    struct Plain {
        queries: usize,
        other_functions: bool,
    }
    impl Visitor for Plain {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.queries += 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = e {
                let name = object_name(&f.name);
                let bare = name.rsplit('.').next().unwrap_or(&name);
                if f.over.is_some() || !PER_ROW.contains(&bare) {
                    self.other_functions = true;
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut plain = Plain {
        queries: 0,
        other_functions: false,
    };
    let _ = q.visit(&mut plain);
    if plain.queries > 1 || plain.other_functions {
        return None;
    }
    literal_limit(q)
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
