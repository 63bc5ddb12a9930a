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

/// Views inside views followed at most; deeper ones are not put in place.
pub const MAX_DEPTH: usize = 8;

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
        for (schema, name, text) in rows {
            let Some(def) = definition(&text) else {
                continue;
            };
            by_name.insert(format!("{schema}.{name}"), def.clone());
            // An unqualified name: the view in `public` wins over one of another schema.
            if schema == "public" || !by_name.contains_key(&name) {
                by_name.insert(name, def);
            }
        }
        Views { by_name }
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    fn get(&self, name: &str) -> Option<&Definition> {
        self.by_name.get(name)
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
        self.inline(&mut tree, &mut tables, 0);
        sql.columns = lineage::uses(&tree, &tables)
            .iter()
            .map(lineage::to_wit)
            .collect();
        sql.tables = tables;
        sql.limit = None;
        true
    }

    /// Put each view read in `v` in its place as a subquery, `depth` views deep; its tables go
    /// to `tables`.
    fn inline(&self, v: &mut Value, tables: &mut Vec<String>, depth: usize) {
        match v {
            Value::Object(map) => {
                // A RangeVar node in FROM (a write's target is a plain `relation` field, and
                // what is written is transformed whatever the view).
                if let Some(view) = map
                    .get("node")
                    .and_then(|n| n.get("RangeVar"))
                    .filter(|_| depth < MAX_DEPTH)
                    .and_then(|r| self.get(&server::range_var(r)).map(|d| (r, d)))
                {
                    let (range_var, def) = view;
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
                    self.inline(&mut subquery, tables, depth + 1);
                    *v = json!({"node": {"RangeSubselect": {
                        "lateral": false,
                        "subquery": subquery,
                        "alias": {"aliasname": name, "colnames": colnames},
                    }}});
                    return;
                }
                map.values_mut().for_each(|v| self.inline(v, tables, depth));
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.inline(i, tables, depth)),
            _ => {}
        }
    }
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
        let mut u: Vec<char> = sql
            .columns
            .iter()
            .filter(|c| c.column == "pan" && (c.table == "cards" || c.table.is_empty()))
            .map(|c| match c.usage {
                ColumnUsage::Output => 'o',
                ColumnUsage::Transformed => 't',
                ColumnUsage::Filter => 'f',
            })
            .collect();
        u.sort_unstable();
        u.dedup();
        (u.into_iter().collect(), sql.tables.clone(), sql.limit)
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
        let deepest = |n: usize| {
            let mut s = super::super::parse(&format!("SELECT reverse(pan) FROM v{n}")).unwrap();
            views.follow_all(&mut s);
            s[0].sql.tables.contains(&"cards".to_string())
        };
        assert!(deepest(MAX_DEPTH - 1));
        assert!(!deepest(MAX_DEPTH + 1));
    }
}
