//! Column lineage from the server's parse tree: for each table column a statement names, how
//! it reaches the statement — sent as it is (`output`), sent or written through an expression
//! (`transformed`), or only read to choose rows (`filter`). Content scanning masks what is
//! sent as it is; an expression (`reverse(pan)`, `encode(...)`, `pan + 1`) makes something
//! no scanner recognises, so a policy refuses it by lineage instead (THREATS.md invariant 5).
//!
//! The walk is conservative: inside an expression everything is `transformed`, inside a
//! filter everything is `filter`; names a subquery or CTE passes on are followed back to their
//! sources by name, whatever scope they are used in.

use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// How a column reaches the statement (the WIT's `column-usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    Output,
    Transformed,
    Filter,
}

/// One use: table (empty when unknown), column (`*` for the whole row), usage.
pub type Use = (String, String, Usage);

/// A use as policies get it.
pub fn to_wit((table, column, usage): &Use) -> crate::policy::ColumnUse {
    use crate::policy::ColumnUsage;
    crate::policy::ColumnUse {
        table: table.clone(),
        column: column.clone(),
        usage: match usage {
            Usage::Output => ColumnUsage::Output,
            Usage::Transformed => ColumnUsage::Transformed,
            Usage::Filter => ColumnUsage::Filter,
        },
    }
}

/// The column uses of a parsed statement (`tree`: one statement node as JSON). `tables`: the
/// statement's tables, for unqualified columns.
pub fn uses(tree: &Value, tables: &[String]) -> Vec<Use> {
    // Every table the tree names, besides those given: a summary can miss one (a subquery in
    // an UPDATE's RETURNING list), and an unqualified column must not then be taken for the
    // only other table's.
    let mut all = tables.to_vec();
    let mut named = Vec::new();
    range_vars(tree, &mut named);
    for t in named {
        if !all.contains(&t) {
            all.push(t);
        }
    }
    let mut l = Lineage {
        tables: &all,
        aliases: HashMap::new(),
        derived: HashMap::new(),
        groups: Vec::new(),
        expanded: HashSet::new(),
        seen: HashSet::new(),
        out: Vec::new(),
    };
    l.collect(tree);
    l.walk(tree, Usage::Output);
    l.out
}

struct Lineage<'a> {
    tables: &'a [String],
    /// Alias or table name (last part) → table.
    aliases: HashMap<String, String>,
    /// A name a subquery or CTE passes on (its alias, or an output column) → the groups of
    /// columns it came from (indices into `groups`). Groups are shared, not copied: a column
    /// list of N names over N columns is N references to one group, not N² entries.
    derived: HashMap<String, Vec<usize>>,
    groups: Vec<Vec<(String, String)>>,
    /// Groups already emitted, with the usage: each is walked once per usage, so N references
    /// to a group of N columns cost N, not N².
    expanded: HashSet<(usize, Usage)>,
    seen: HashSet<Use>,
    out: Vec<Use>,
}

fn node(v: &Value) -> Option<(&str, &Value)> {
    let inner = v.get("node")?.as_object()?;
    inner.iter().next().map(|(k, v)| (k.as_str(), v))
}

fn string(v: &Value) -> Option<&str> {
    match node(v)? {
        ("String", s) => s.get("sval")?.as_str(),
        _ => None,
    }
}

impl Lineage<'_> {
    /// First pass: table aliases, and what subqueries and CTEs pass on.
    fn collect(&mut self, v: &Value) {
        match v {
            Value::Object(map) => {
                if map.contains_key("relname") && map.contains_key("relpersistence") {
                    let table = super::server::range_var(v);
                    let rel = map.get("relname").and_then(Value::as_str).unwrap_or("");
                    let alias = map
                        .get("alias")
                        .and_then(|a| a.get("aliasname"))
                        .and_then(Value::as_str)
                        .unwrap_or(rel);
                    self.aliases.insert(alias.to_string(), table.clone());
                    // `cards c(i, h, x)` renames the columns in order: whatever `x` is, it is
                    // one of the table's columns.
                    let whole = self.group(vec![(table.clone(), "*".into())]);
                    for col in alias_columns(map.get("alias")) {
                        self.derived.entry(col).or_default().push(whole);
                    }
                    self.aliases.insert(rel.to_string(), table);
                }
                // `(a JOIN b USING (id)) AS x(i, h, p)`: the join's alias and its column names
                // pass on every column of every table inside the join.
                if let Some(join) = map.get("JoinExpr")
                    && let Some(alias) = join.get("alias").filter(|a| !a.is_null())
                {
                    let mut inside = Vec::new();
                    range_vars(join, &mut inside);
                    let whole = self.group(inside.into_iter().map(|t| (t, "*".into())).collect());
                    let names = alias_columns(Some(alias)).into_iter().chain(
                        alias
                            .get("aliasname")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    );
                    for name in names {
                        self.derived.entry(name).or_default().push(whole);
                    }
                }
                let passed_on = match (map.get("RangeSubselect"), map.get("CommonTableExpr")) {
                    (Some(r), _) => Some((
                        r.get("alias").and_then(|a| a.get("aliasname")),
                        r.get("subquery"),
                        alias_columns(r.get("alias")),
                    )),
                    (_, Some(c)) => Some((
                        c.get("ctename"),
                        c.get("ctequery"),
                        names(c.get("aliascolnames")),
                    )),
                    _ => None,
                };
                // Inside first, so the subquery's own aliases are known when what it passes on
                // is resolved: `(SELECT c AS x FROM cards c) s` passes on the whole row of
                // `cards` under `x`, not a column named `c`.
                map.values().for_each(|v| self.collect(v));
                if let Some((Some(Value::String(name)), Some(query), renamed)) = passed_on {
                    self.pass_on(name, query, &renamed);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.collect(i)),
            _ => {}
        }
    }

    /// Record what the select lists of `query` pass on, under each output name and `name`;
    /// a column list (`s(x, y)`) and the `columnN` names of VALUES pass on everything the
    /// query reads (names only: a conservative superset).
    fn pass_on(&mut self, name: &str, query: &Value, renamed: &[String]) {
        let mut everything = Vec::new();
        column_refs(query, &mut everything);
        let everything: Vec<(String, String)> =
            everything.iter().map(|r| self.resolve(r)).collect();
        let everything = self.group(everything);
        let width = query
            .get("SelectStmt")
            .or_else(|| node(query).map(|(_, s)| s))
            .and_then(|s| s.get("values_lists"))
            .and_then(Value::as_array)
            .and_then(|rows| rows.first())
            .and_then(|row| node(row).and_then(|(_, l)| l.get("items")))
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let values_names = (1..=width).map(|i| format!("column{i}"));
        for n in renamed.iter().cloned().chain(values_names) {
            self.derived.entry(n).or_default().push(everything);
        }
        // A set operation's columns are named by its first branch: the k-th column of every
        // branch passes on under the k-th name of the first.
        let mut lists = Vec::new();
        find_target_lists(query, &mut lists);
        let mut first_names: Vec<Option<String>> = Vec::new();
        for list in lists {
            let targets = list.as_array().map(Vec::as_slice).unwrap_or_default();
            // (A set operation's own select list is empty: the first branch with one names.)
            let first_branch = first_names.is_empty();
            for (k, target) in targets.iter().enumerate() {
                let Some(("ResTarget", t)) = node(target) else {
                    continue;
                };
                let mut refs = Vec::new();
                column_refs(t.get("val").unwrap_or(&Value::Null), &mut refs);
                let sources: Vec<(String, String)> = refs.iter().map(|r| self.resolve(r)).collect();
                let own_name = t
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| refs.first().map(|r| self.resolve(r).1));
                if first_branch {
                    first_names.push(own_name.clone());
                }
                let group = self.group(sources);
                let first = first_names.get(k).cloned().flatten();
                let names = own_name.into_iter().chain(first);
                for n in names.chain(std::iter::once(name.to_string())) {
                    self.derived.entry(n).or_default().push(group);
                }
            }
        }
    }

    /// A new group of source columns; its index.
    fn group(&mut self, columns: Vec<(String, String)>) -> usize {
        self.groups.push(columns);
        self.groups.len() - 1
    }

    /// The table and column a ColumnRef's fields name.
    fn resolve(&self, fields: &[Option<String>]) -> (String, String) {
        let star = || "*".to_string();
        match fields {
            [None] => (String::new(), star()),
            [Some(col)] => match self.aliases.get(col) {
                // A bare relation name is its whole row.
                Some(t) => (t.clone(), star()),
                None => (self.only_table(), col.clone()),
            },
            [.., Some(q), col] => {
                let table = self.aliases.get(q).cloned().unwrap_or_default();
                (table, col.clone().unwrap_or_else(star))
            }
            [.., None, col] => (String::new(), col.clone().unwrap_or_else(star)),
            [] => (String::new(), star()),
        }
    }

    fn only_table(&self) -> String {
        match self.tables {
            [t] => t.clone(),
            _ => String::new(),
        }
    }

    fn emit(&mut self, table: String, column: String, usage: Usage) {
        let u = (table, column, usage);
        if self.seen.insert(u.clone()) {
            self.out.push(u);
        }
    }

    /// A column reference used as `usage`, and whatever it was passed on from.
    fn reference(&mut self, fields: &[Option<String>], usage: Usage) {
        let (table, column) = self.resolve(fields);
        if fields == [None] {
            // `SELECT *`: every column of every table.
            for t in self.tables {
                self.emit(t.clone(), "*".into(), usage);
            }
        } else {
            self.emit(table, column.clone(), usage);
        }
        if usage == Usage::Output {
            // What a subquery passed on as it is was recorded where it was selected.
            return;
        }
        let mut names: Vec<&str> = Vec::new();
        if let [.., Some(q), _] = fields {
            names.push(q);
        }
        if let Some(Some(last)) = fields.last() {
            names.push(last);
        }
        let groups: Vec<usize> = names
            .iter()
            .filter_map(|n| self.derived.get(*n))
            .flatten()
            .copied()
            .filter(|g| self.expanded.insert((*g, usage)))
            .collect();
        for g in groups {
            for (t, c) in self.groups[g].clone() {
                self.emit(t, c, usage);
            }
        }
    }

    /// Second pass: every column reference with its usage.
    fn walk(&mut self, v: &Value, usage: Usage) {
        match v {
            Value::Object(map) => {
                if let Some(c) = map.get("ColumnRef") {
                    let fields = ref_fields(c);
                    self.reference(&fields, usage);
                    return;
                }
                self.by_output(map, usage);
                // SELECT ... INTO writes its select list into a new table.
                let into = map.get("into_clause").is_some_and(|i| !i.is_null());
                for (key, value) in map {
                    match key.as_str() {
                        "target_list" if into => self.targets(value, Usage::Transformed),
                        // What a statement writes is laundered out of the column's lineage:
                        // a later read of the copy no longer names it.
                        "InsertStmt" | "UpdateStmt" | "MergeStmt" | "CreateTableAsStmt"
                        | "ViewStmt" => self.write(value, usage),
                        // In a filter a column may only be compared: a function, cast or
                        // operator over it can turn its value into an error message or a
                        // side effect (`set_config`, `pg_notify`).
                        k if usage == Usage::Filter && !compares(k, value) => {
                            self.walk(value, Usage::Transformed);
                        }
                        "target_list" | "returning_list" => self.targets(value, usage),
                        "returning_clause" => {
                            self.targets(value.get("exprs").unwrap_or(&Value::Null), usage);
                        }
                        "where_clause"
                        | "having_clause"
                        | "quals"
                        | "group_clause"
                        | "sort_clause"
                        | "distinct_clause"
                        | "limit_count"
                        | "limit_offset"
                        | "window_clause"
                        | "join_using_alias"
                        | "using_clause"
                        | "merge_join_condition" => self.walk(value, narrowed(usage)),
                        "JoinExpr" => {
                            self.join_columns(value, usage);
                            self.walk(value, usage);
                        }
                        // A function in FROM makes rows out of its arguments.
                        "RangeFunction" | "RangeTableFunc" => {
                            self.walk(value, widened(usage));
                        }
                        _ => self.walk(value, usage),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.walk(i, usage)),
            _ => {}
        }
    }

    /// A writing statement: the values it writes are `transformed` (they leave the column's
    /// lineage), its WHERE is a filter, its RETURNING is output.
    fn write(&mut self, stmt: &Value, usage: Usage) {
        let Some(map) = stmt.as_object() else { return };
        for (key, value) in map {
            match key.as_str() {
                // PostgreSQL 18 wraps the list (`RETURNING OLD.x, NEW.y`) in a clause.
                "returning_list" => self.targets(value, usage),
                "returning_clause" => {
                    self.targets(value.get("exprs").unwrap_or(&Value::Null), usage);
                }
                "where_clause" | "join_condition" => self.walk(value, narrowed(usage)),
                "target_list" => self.targets(value, Usage::Transformed),
                "select_stmt" | "query" | "merge_when_clauses" | "values_lists" => {
                    self.walk(value, Usage::Transformed);
                }
                _ => self.walk(value, usage),
            }
        }
    }

    /// `ORDER BY 2`, `ORDER BY p` (an output column's name), `GROUP BY 1`, `DISTINCT ON (2)`:
    /// the select list's column, named by position or name, chooses rows as the expression it
    /// stands for (the fourth attack ordered a guess row against a card by position).
    fn by_output(&mut self, select: &serde_json::Map<String, Value>, usage: Usage) {
        let Some(targets) = select.get("target_list").and_then(Value::as_array) else {
            return;
        };
        let name_of = |t: &Value| {
            node(t)
                .and_then(|(_, t)| t.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let mut chosen = Vec::new();
        for key in ["sort_clause", "group_clause", "distinct_clause"] {
            for item in select
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                // A SortBy's expression is its field `node`; the other clauses list nodes.
                let expr = match node(item) {
                    Some(("SortBy", s)) => s.get("node").and_then(node),
                    other => other,
                };
                let target = match expr {
                    Some(("AConst", c)) => c
                        .get("val")
                        .and_then(|v| v.get("Ival"))
                        .and_then(|i| i.get("ival"))
                        .and_then(Value::as_u64)
                        .and_then(|k| targets.get(usize::try_from(k).ok()?.checked_sub(1)?)),
                    Some(("ColumnRef", c)) => match ref_fields(c).as_slice() {
                        [Some(n)] => targets.iter().find(|t| name_of(t).as_deref() == Some(n)),
                        _ => None,
                    },
                    _ => None,
                };
                if let Some(val) = target.and_then(node).and_then(|(_, t)| t.get("val")) {
                    chosen.push(val.clone());
                }
            }
        }
        for val in chosen {
            self.walk(&val, narrowed(usage));
        }
    }

    /// `JOIN ... USING (a)` compares `a` of the tables on both sides without a column
    /// reference in the tree; `NATURAL JOIN` compares the columns they share, which only the
    /// catalog knows: every column. Both choose rows (the fourth attack on issue 11: `cards c
    /// JOIN cards d USING (pan)` against inserted guesses spelled a number out).
    fn join_columns(&mut self, join: &Value, usage: Usage) {
        let natural = join
            .get("is_natural")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let using = names(join.get("using_clause"));
        if using.is_empty() && !natural {
            return;
        }
        let mut tables = Vec::new();
        range_vars(join, &mut tables);
        let usage = narrowed(usage);
        for t in tables {
            if natural {
                self.emit(t.clone(), "*".into(), usage);
            }
            for n in &using {
                self.emit(t.clone(), n.clone(), usage);
            }
        }
    }

    /// A select list, RETURNING list or UPDATE's SET list: a bare reference goes out as it
    /// is; anything else is an expression.
    fn targets(&mut self, list: &Value, usage: Usage) {
        for target in list.as_array().into_iter().flatten() {
            let Some(("ResTarget", t)) = node(target) else {
                self.walk(target, widened(usage));
                continue;
            };
            let val = t.get("val").unwrap_or(&Value::Null);
            match node(val) {
                Some(("ColumnRef", c)) => {
                    let fields = ref_fields(c);
                    self.reference(&fields, usage);
                }
                _ => self.walk(val, widened(usage)),
            }
        }
    }
}

/// Whether a node keeps a filter a filter: a field of a node, a node that only combines or
/// compares (AND/OR/NOT, IS NULL, comparison and pattern operators, IN, BETWEEN, a subquery),
/// or a constant. Any other node (a function, a cast, arithmetic, CASE...) over a column in a
/// filter computes something from its value.
fn compares(key: &str, value: &Value) -> bool {
    if !key.starts_with(|c: char| c.is_ascii_uppercase()) {
        return true;
    }
    match key {
        "BoolExpr" | "NullTest" | "BooleanTest" | "SubLink" | "SelectStmt" | "List" | "AConst"
        | "ParamRef" | "SortBy" | "RangeVar" | "JoinExpr" | "RangeSubselect" | "ResTarget"
        | "String" | "Integer" | "Float" | "Boolean" | "AStar" | "GroupingSet" | "WindowDef"
        | "CommonTableExpr" | "WithClause" | "Alias" => true,
        "AExpr" => {
            let op = value
                .get("name")
                .and_then(Value::as_array)
                .and_then(|n| n.last())
                .and_then(string)
                .unwrap_or("");
            use pg_query::protobuf::AExprKind as K;
            let kind = value.get("kind").and_then(Value::as_i64).unwrap_or(0);
            let is = |k: K| kind == k as i64;
            [
                K::AexprIn,
                K::AexprLike,
                K::AexprIlike,
                K::AexprBetween,
                K::AexprNotBetween,
                K::AexprDistinct,
                K::AexprNotDistinct,
            ]
            .into_iter()
            .any(is)
                || ([K::AexprOp, K::AexprOpAny, K::AexprOpAll]
                    .into_iter()
                    .any(is)
                    && matches!(
                        op,
                        "=" | "<>" | "!=" | "<" | ">" | "<=" | ">=" | "~~" | "!~~" | "~~*" | "!~~*"
                    ))
        }
        _ => false,
    }
}

/// Inside a filter, a column is read to choose rows — unless the filter is itself inside an
/// expression that is sent (a scalar subquery in a select list): then it is what is sent.
fn narrowed(usage: Usage) -> Usage {
    match usage {
        Usage::Transformed => Usage::Transformed,
        _ => Usage::Filter,
    }
}

/// Inside an expression, what is sent is transformed; inside a filter, it stays a filter.
fn widened(usage: Usage) -> Usage {
    match usage {
        Usage::Filter => Usage::Filter,
        _ => Usage::Transformed,
    }
}

/// A ColumnRef's fields: names lower-cased by the parser (unless quoted), `None` for `*`.
fn ref_fields(c: &Value) -> Vec<Option<String>> {
    c.get("fields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|f| string(f).map(str::to_string))
        .collect()
}

/// Every ColumnRef's fields inside `v`.
fn column_refs(v: &Value, out: &mut Vec<Vec<Option<String>>>) {
    match v {
        Value::Object(map) => {
            if let Some(c) = map.get("ColumnRef") {
                out.push(ref_fields(c));
                return;
            }
            map.values().for_each(|v| column_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|i| column_refs(i, out)),
        _ => {}
    }
}

/// The select lists of a query (both sides of a UNION too), not of nested subqueries.
fn find_target_lists<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    let select = match node(v) {
        Some(("SelectStmt", s)) => s,
        _ => match v.get("SelectStmt") {
            Some(s) => s,
            None => return,
        },
    };
    select_lists(select, out);
}

fn select_lists<'a>(select: &'a Value, out: &mut Vec<&'a Value>) {
    if let Some(list) = select.get("target_list") {
        out.push(list);
    }
    for side in ["larg", "rarg"] {
        if let Some(s) = select.get(side) {
            select_lists(s, out);
        }
    }
}

/// The tables (RangeVars) anywhere inside `v`.
fn range_vars(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if map.contains_key("relname") && map.contains_key("relpersistence") {
                out.push(super::server::range_var(v));
            }
            map.values().for_each(|v| range_vars(v, out));
        }
        Value::Array(items) => items.iter().for_each(|i| range_vars(i, out)),
        _ => {}
    }
}

/// The column names of an `alias` (`c(i, h, x)`).
fn alias_columns(alias: Option<&Value>) -> Vec<String> {
    names(alias.and_then(|a| a.get("colnames")))
}

/// The strings of a list of String nodes.
fn names(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|n| string(n).map(str::to_string))
        .collect()
}
