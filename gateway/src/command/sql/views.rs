//! Views followed: a statement that reads a view reads the view's tables, so the view's
//! definition (read from the target's catalog at login, `proxy/postgres/upstream.rs`) is put in
//! its place as a subquery before column lineage is worked out. `SELECT reverse(pan) FROM
//! cards_view` is then a transformed use of `cards.pan`, as `SELECT reverse(pan) FROM (SELECT
//! ... FROM cards) v` is; the view's tables join the statement's `tables` (a policy about
//! `cards` sees a read of it through a view), and the statement's `limit` is dropped (an
//! aggregate inside the view can fold a whole table into the rows a LIMIT lets through).
//!
//! A view inside a view is followed too, [`MAX_DEPTH`] deep. The names are the catalog's at
//! login: a view created later by another session is not followed (one created through the
//! gateway over a sensitive column is refused by lineage as a write of it elsewhere).

use super::lineage;
use super::server;
use crate::policy::Sql;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Views inside views followed at most, and views put in place in one statement at most
/// (a view naming another view five times, eight deep, would be 390,625 copies). Past either,
/// the rest are not put in place: their tables are added as read, and the statement gets a
/// transformed use of every column of its tables (`""`, `*`), which a policy refusing
/// transformed card numbers refuses (fail closed).
pub const MAX_DEPTH: usize = 8;
pub const MAX_INLINED: usize = 64;

/// One view's definition: its query's parse tree and the tables it names.
#[derive(Debug, Clone)]
struct Definition {
    tree: Value,
    tables: Vec<String>,
}

/// The target's views (and materialized views), by `schema.name` and by `name`.
#[derive(Debug, Default)]
pub struct Views {
    by_name: HashMap<String, Definition>,
}

impl Views {
    /// From `(schema, name, definition)` rows (`pg_get_viewdef`). A definition that does not
    /// parse is left out (the server wrote it, so it does; the gateway's reader may lag).
    pub fn new(rows: impl IntoIterator<Item = (String, String, String)>) -> Views {
        let mut by_name = HashMap::new();
        let mut unqualified: HashMap<String, Vec<Definition>> = HashMap::new();
        for (schema, name, text) in rows {
            let Some(def) = definition(&text) else {
                continue;
            };
            by_name.insert(format!("{schema}.{name}"), def.clone());
            unqualified.entry(name).or_default().push(def);
        }
        // An unqualified name is whichever view the session's search_path finds, which the
        // gateway does not follow: it reads as all views of that name at once (a UNION).
        for (name, defs) in unqualified {
            by_name.insert(name, union(defs));
        }
        Views { by_name }
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// A view by name as written: `v`, `schema.v`, or `database.schema.v`.
    fn get(&self, name: &str) -> Option<&Definition> {
        self.by_name.get(name).or_else(|| {
            let parts: Vec<&str> = name.split('.').collect();
            match parts.as_slice() {
                [.., schema, rel] if parts.len() > 2 => {
                    self.by_name.get(&format!("{schema}.{rel}"))
                }
                _ => None,
            }
        })
    }

    /// Follow the views each statement reads (see [`Views::follow`]).
    pub fn follow_all(&self, statements: &mut [super::Statement]) {
        for s in statements {
            if !self.follow(&mut s.sql) {
                continue;
            }
            // What PREPARE prepares is described by the same tree (`mod.rs`).
            if let Some(inner) = &mut s.inner {
                inner.columns.clone_from(&s.sql.columns);
                inner.tables.clone_from(&s.sql.tables);
                inner.limit = None;
            }
        }
    }

    /// Follow the views `sql` reads: its lineage worked out again with each view's query in
    /// its place, the views' tables added to its tables, its `limit` dropped. Nothing changes
    /// for a statement that names no view. Whether it named one.
    pub fn follow(&self, sql: &mut Sql) -> bool {
        if self.is_empty() || !sql.tables.iter().any(|t| self.get(t).is_some()) {
            return false;
        }
        let Some(mut tree) = server::tree(&sql.text) else {
            return false;
        };
        let mut tables = sql.tables.clone();
        let mut budget = MAX_INLINED;
        let mut unfollowed = false;
        self.inline(&mut tree, &mut tables, 0, &mut budget, &mut unfollowed);
        sql.columns = lineage::uses(&tree, &tables)
            .iter()
            .map(lineage::to_wit)
            .collect();
        if unfollowed {
            sql.columns.push(crate::policy::ColumnUse {
                table: String::new(),
                column: "*".into(),
                usage: crate::policy::ColumnUsage::Transformed,
            });
        }
        sql.tables = tables;
        sql.limit = None;
        true
    }

    /// Put each view read in `v` in its place as a subquery, `depth` views deep, at most
    /// `budget` more in all; its tables go to `tables`. `unfollowed`: a view was left in place
    /// (too deep, or over the budget).
    fn inline(
        &self,
        v: &mut Value,
        tables: &mut Vec<String>,
        depth: usize,
        budget: &mut usize,
        unfollowed: &mut bool,
    ) {
        match v {
            Value::Object(map) => {
                // A RangeVar node in FROM (a write's target is a plain `relation` field, and
                // what is written is transformed whatever the view).
                if let Some(view) = map
                    .get("node")
                    .and_then(|n| n.get("RangeVar"))
                    .and_then(|r| self.get(&server::range_var(r)).map(|d| (r, d)))
                {
                    let (range_var, def) = view;
                    if depth >= MAX_DEPTH || *budget == 0 {
                        *unfollowed = true;
                        self.all_tables(def, tables);
                        return;
                    }
                    *budget -= 1;
                    let name = range_var
                        .get("alias")
                        .and_then(|a| a.get("aliasname"))
                        .and_then(Value::as_str)
                        .or_else(|| range_var.get("relname").and_then(Value::as_str))
                        .unwrap_or_default()
                        .to_string();
                    let colnames = range_var
                        .get("alias")
                        .and_then(|a| a.get("colnames"))
                        .cloned()
                        .unwrap_or(Value::Array(Vec::new()));
                    for t in &def.tables {
                        if !tables.contains(t) {
                            tables.push(t.clone());
                        }
                    }
                    let mut subquery = def.tree.clone();
                    self.inline(&mut subquery, tables, depth + 1, budget, unfollowed);
                    *v = json!({"node": {"RangeSubselect": {
                        "lateral": false,
                        "subquery": subquery,
                        "alias": {"aliasname": name, "colnames": colnames},
                    }}});
                    return;
                }
                map.values_mut()
                    .for_each(|v| self.inline(v, tables, depth, budget, unfollowed));
            }
            Value::Array(items) => items
                .iter_mut()
                .for_each(|i| self.inline(i, tables, depth, budget, unfollowed)),
            _ => {}
        }
    }

    /// Every table `def` reads, through views in views (each view once).
    fn all_tables(&self, def: &Definition, tables: &mut Vec<String>) {
        let mut todo = vec![def];
        let mut seen = std::collections::HashSet::new();
        while let Some(d) = todo.pop() {
            for t in &d.tables {
                if !tables.contains(t) {
                    tables.push(t.clone());
                }
                if seen.insert(t.clone())
                    && let Some(inner) = self.get(t)
                {
                    todo.push(inner);
                }
            }
        }
    }
}

/// Several views' queries as one: a UNION ALL of them (a view's query is a SelectStmt node;
/// one that is not is left out of the union, its tables kept).
fn union(mut defs: Vec<Definition>) -> Definition {
    let Some(first) = defs.pop() else {
        return Definition {
            tree: Value::Null,
            tables: Vec::new(),
        };
    };
    defs.into_iter().fold(first, |acc, d| {
        let mut tables = acc.tables;
        for t in d.tables {
            if !tables.contains(&t) {
                tables.push(t);
            }
        }
        let select = |v: &Value| v.get("node").and_then(|n| n.get("SelectStmt")).cloned();
        let tree = match (select(&acc.tree), select(&d.tree)) {
            (Some(l), Some(r)) => json!({"node": {"SelectStmt": {
                "op": pg_query::protobuf::SetOperation::SetopUnion as i32,
                "all": true,
                "larg": l,
                "rarg": r,
            }}}),
            _ => acc.tree,
        };
        Definition { tree, tables }
    })
}

/// A view's query as a parse-tree node, and the tables it names.
fn definition(text: &str) -> Option<Definition> {
    let text = text.trim().trim_end_matches(';');
    Some(Definition {
        tree: server::tree(text)?,
        tables: server::read(text).ok()?.tables,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::policy::ColumnUsage;

    /// The views of a small schema, as `pg_get_viewdef` writes them.
    fn views() -> Views {
        let row = |schema: &str, name: &str, def: &str| {
            (schema.to_string(), name.to_string(), def.to_string())
        };
        Views::new([
            row(
                "public",
                "cards_view",
                " SELECT cards.id,\n    cards.holder,\n    cards.pan\n   FROM cards;",
            ),
            row(
                "public",
                "wrapped",
                " SELECT v.id, v.pan AS card\n   FROM cards_view v;",
            ),
            row(
                "public",
                "reversed",
                " SELECT reverse(cards.pan) AS r FROM cards;",
            ),
            row(
                "billing",
                "totals",
                " SELECT count(*) AS n, max(o.amount) AS top FROM orders o;",
            ),
            row("public", "broken", "not sql at all"),
        ])
    }

    /// How `cards.pan` is used by `text` once views are followed (o, t, f), and the tables.
    fn followed(text: &str) -> (String, Vec<String>, Option<u64>) {
        let mut statements = super::super::parse(text).unwrap();
        views().follow_all(&mut statements);
        let sql = &statements[0].sql;
        let usage = super::super::tests::pan_usage_in(&sql.columns);
        (usage, sql.tables.clone(), sql.limit)
    }

    #[test]
    fn a_view_is_read_as_its_query() {
        // Through a view, an expression over the card number is a transformed use of it.
        let (u, tables, _) = followed("SELECT reverse(pan) FROM cards_view");
        assert!(u.contains('t'), "{u}");
        assert_eq!(tables, ["cards_view", "cards"]);
        assert!(
            followed("SELECT upper(v.pan) FROM cards_view v")
                .0
                .contains('t')
        );
        assert!(
            followed("SELECT md5(card) FROM wrapped").0.contains('t'),
            "two views deep"
        );
        assert!(
            followed("SELECT id FROM cards_view WHERE pan LIKE '4%'")
                .0
                .contains('f')
        );
        // As it is: output only (masked by content), and the view's tables are read.
        let (u, tables, limit) = followed("SELECT holder, pan FROM cards_view LIMIT 1");
        assert_eq!(u, "o");
        assert!(tables.contains(&"cards".to_string()));
        assert_eq!(limit, None, "a view can fold its tables into one row");
        // A view that transforms the number is a transformed use whatever is selected.
        assert!(followed("SELECT 1 FROM reversed").0.contains('t'));
        // Schema-qualified, and another schema's view.
        assert!(
            followed("SELECT n FROM billing.totals")
                .1
                .contains(&"orders".to_string())
        );
        // PREPARE: what EXECUTE runs is described the same way.
        let mut s =
            super::super::parse("PREPARE p AS SELECT reverse(pan) FROM cards_view").unwrap();
        views().follow_all(&mut s);
        let inner = s[0].inner.as_ref().unwrap();
        // (A column a subquery passes on may come back without its table: policies then
        // match it against the statement's tables, which hold the view's.)
        assert!(inner.columns.iter().any(|c| c.column == "pan"
            && (c.table == "cards" || c.table.is_empty())
            && c.usage == ColumnUsage::Transformed));
        assert!(inner.tables.contains(&"cards".to_string()));
    }

    #[test]
    fn statements_without_views_are_unchanged() {
        // A PREPARE keeps what it prepares as it was, LIMIT included.
        let mut s = super::super::parse("PREPARE p AS SELECT pan FROM cards LIMIT 1").unwrap();
        views().follow_all(&mut s);
        assert_eq!(s[0].inner.as_ref().unwrap().limit, Some(1));
        let (u, tables, limit) = followed("SELECT pan FROM cards LIMIT 3");
        assert_eq!(
            (u.as_str(), tables.as_slice(), limit),
            ("o", &["cards".to_string()][..], Some(3))
        );
        // A definition that does not parse is not a view the gateway knows.
        assert_eq!(followed("SELECT 1 FROM broken LIMIT 1").2, Some(1));
    }

    #[test]
    fn views_are_followed_only_so_deep() {
        let mut rows = vec![(
            "public".to_string(),
            "v0".to_string(),
            "SELECT cards.pan FROM cards".to_string(),
        )];
        for i in 1..=MAX_DEPTH + 1 {
            rows.push((
                "public".into(),
                format!("v{i}"),
                format!("SELECT v{}.pan FROM v{}", i - 1, i - 1),
            ));
        }
        let views = Views::new(rows);
        // (its tables; whether some view was left in place, reported as a transformed use of
        // every column)
        let deepest = |n: usize| {
            let mut s = super::super::parse(&format!("SELECT id FROM v{n}")).unwrap();
            views.follow_all(&mut s);
            let sql = &s[0].sql;
            let blanket = sql.columns.iter().any(|c| {
                c.table.is_empty() && c.column == "*" && c.usage == ColumnUsage::Transformed
            });
            (sql.tables.contains(&"cards".to_string()), blanket)
        };
        assert_eq!(deepest(MAX_DEPTH - 1), (true, false));
        // Too deep: the tables are still found, and the statement fails closed.
        assert_eq!(deepest(MAX_DEPTH + 1), (true, true));
        // A view naming another five times, four deep: 625 copies, over the budget.
        let fan = |i: usize| {
            let from: Vec<String> = (0..5).map(|k| format!("f{} a{k}", i - 1)).collect();
            format!("SELECT a0.pan FROM {}", from.join(", "))
        };
        let mut rows = vec![(
            "public".to_string(),
            "f0".to_string(),
            "SELECT cards.pan FROM cards".to_string(),
        )];
        rows.extend((1..=4).map(|i| ("public".to_string(), format!("f{i}"), fan(i))));
        let views = Views::new(rows);
        let mut s = super::super::parse("SELECT 1 FROM f4").unwrap();
        views.follow_all(&mut s);
        assert!(s[0].sql.tables.contains(&"cards".to_string()));
        assert!(
            s[0].sql
                .columns
                .iter()
                .any(|c| c.table.is_empty() && c.column == "*")
        );
    }

    /// A view named with its database, and a name two schemas use (the server's search_path
    /// picks one; the gateway reads both).
    #[test]
    fn views_by_any_name() {
        assert!(
            followed("SELECT reverse(pan) FROM payments.public.cards_view")
                .0
                .contains('t')
        );
        let row =
            |schema: &str, def: &str| ("".to_string() + schema, "dup".to_string(), def.to_string());
        let views = Views::new([
            row("public", "SELECT cards.holder AS x FROM cards"),
            row("reports", "SELECT cards.pan AS x FROM cards"),
        ]);
        let mut s = super::super::parse("SELECT reverse(x) FROM dup").unwrap();
        views.follow_all(&mut s);
        assert!(
            s[0].sql.columns.iter().any(|c| c.column == "pan"
                && (c.table == "cards" || c.table.is_empty())
                && c.usage == ColumnUsage::Transformed),
            "{:?}",
            s[0].sql.columns
        );
    }
}
