//! `cardholder-approval`: holds large reads of cardholder tables for a human approver.
//!
//! A SQL statement that reads a configured table and has no literal LIMIT at or below
//! `max_limit` gets `require-approval`, with a reason naming the table and the limit. So does
//! one that reads such a table and calls an aggregate that folds rows into one value, whatever
//! its LIMIT: `SELECT string_agg(pan, ',') FROM cards LIMIT 1` returns one row holding every
//! card. Everything else is allowed: smaller reads, writes, other tables, non-SQL commands
//! (other policies judge those; `sql-guard` refuses destructive SQL).
//!
//! "Reads" is meant broadly, since rows can leave a table by more ways than SELECT: any statement
//! naming the table reads it, except
//! - statements that move no rows: DROP, TRUNCATE, ALTER, GRANT, REVOKE, session and
//!   transaction control;
//! - `COPY ... FROM` (it loads the table);
//! - INSERT, UPDATE, DELETE and MERGE into that very table (writes, not reads, though RETURNING
//!   can show the rows written: `pci-mask` masks those).
//!
//! So `SELECT`, `COPY ... TO`, `EXPLAIN SELECT`, `CREATE TABLE x AS SELECT ... FROM cards`,
//! `INSERT INTO x SELECT ... FROM cards` and `WITH d AS (DELETE FROM cards ... RETURNING *)
//! SELECT * FROM d` all read `cards`. Only SELECT (and EXPLAIN of one) carries the top-level
//! LIMIT the host reports (`LIMIT n` or `FETCH FIRST n ROWS`); the other reads always need
//! approval. Any other statement naming the table needs approval too (`CREATE INDEX`, `CREATE
//! VIEW`, `CREATE RULE`): a view or rule over the table reads it later under another name, and
//! holding the rest is the safe side. `EXECUTE` of a prepared statement arrives
//! described as the statement it runs (`kind`, `tables`, `limit`, `functions`), so it is judged
//! like that statement; `PREPARE` itself reads nothing.
//!
//! The planner's statistics hold samples of every column (`pg_stats.histogram_bounds`,
//! `most_common_vals`): reading `pg_stats`, `pg_stats_ext`, `pg_stats_ext_exprs` or
//! `pg_statistic*` needs approval as a read of every listed table. And `limit` is reported by
//! the host only when it bounds the rows read (a plain SELECT: no WITH, subquery, grouping,
//! `WITH TIES` or function that folds rows), so a LIMIT over a recursive CTE or an ordered-set
//! aggregate does not let a whole table through.
//!
//! Aggregates that fold rows into one value ([`FOLDING_AGGREGATES`], compared by the last part
//! of the name, so `pg_catalog.string_agg` counts): `string_agg`, `array_agg`, `json_agg`,
//! `json_agg_strict`, `jsonb_agg`, `jsonb_agg_strict`, the `json_object_agg*` and
//! `jsonb_object_agg*` families (`_strict`, `_unique`, `_unique_strict`), `xmlagg`,
//! `json_arrayagg`, `json_objectagg`, and `array` (the `ARRAY(SELECT ...)` constructor). The
//! host does not say which table an aggregate reads, so one anywhere in a statement that reads a
//! listed table counts. Aggregates a user defines, and functions that read a table by a name
//! given in a string (`table_to_xml`, `query_to_xml`), are not seen here: `sql-guard` holds
//! `CREATE AGGREGATE` / `CREATE FUNCTION` and refuses those functions, so chain both.
//!
//! Config (JSON, required; unknown keys are refused):
//! `{ "tables": ["cards", "billing.accounts"], "max_limit": 100 }` — `tables` (names match with
//! or without a schema and in any case: `cards` also covers `public.cards`), `max_limit`
//! (default 100).

use serde::Deserialize;
use warden_policy::{Command, Policy, Session, Sql, Verdict, export_policy, sql};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    tables: Vec<String>,
    #[serde(default = "default_max_limit")]
    max_limit: u64,
}

fn default_max_limit() -> u64 {
    100
}

/// Statement kinds that move no rows anywhere (besides [`sql::CONTROL_KINDS`]).
const NO_ROWS_MOVED: &[&str] = &["drop", "truncate", "alter", "grant", "revoke"];

/// Statement kinds that write into their target table.
const WRITE_KINDS: &[&str] = &["insert", "update", "delete", "merge"];

/// Aggregates (and the `ARRAY(subquery)` constructor, reported as `array`) that fold any number
/// of rows into one value, so a LIMIT on the rows returned does not bound what they read. An
/// entry ending in `*` covers every name starting so.
pub const FOLDING_AGGREGATES: &[&str] = &[
    "string_agg",
    "array_agg",
    "json_agg",
    "json_agg_strict",
    "jsonb_agg",
    "jsonb_agg_strict",
    "json_object_agg*",
    "jsonb_object_agg*",
    "xmlagg",
    "json_arrayagg",
    "json_objectagg",
    "array",
];

const EXAMPLE: &str = r#"expected {"tables": ["cards"], "max_limit": 100}"#;

struct CardholderApproval {
    tables: Vec<String>,
    max_limit: u64,
}

impl Policy for CardholderApproval {
    fn init(config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config)
            .map_err(|e| format!("cardholder-approval config: {e} ({EXAMPLE})"))?;
        if config.tables.is_empty() || config.tables.iter().any(|t| t.trim().is_empty()) {
            return Err(format!(
                "cardholder-approval config: `tables` must name at least one table, none empty ({EXAMPLE})"
            ));
        }
        Ok(CardholderApproval {
            tables: config.tables,
            max_limit: config.max_limit,
        })
    }

    fn check(&self, _session: &Session, command: &Command) -> Verdict {
        match command {
            Command::Sql(s) => self.check_sql(s),
            _ => Verdict::Allow,
        }
    }
}

impl CardholderApproval {
    fn check_sql(&self, s: &Sql) -> Verdict {
        let Some(table) = self.read_table(s) else {
            return Verdict::Allow;
        };
        if let Some(f) = folding_aggregate(s) {
            return Verdict::RequireApproval(format!(
                "reads cardholder table {table} through {f}, which folds any number of rows into one value (a LIMIT does not bound it); reads of more than {} rows need approval",
                self.max_limit
            ));
        }
        if s.limit.is_some_and(|l| l <= self.max_limit) {
            return Verdict::Allow;
        }
        Verdict::RequireApproval(match s.limit {
            Some(l) => format!(
                "reads up to {l} rows of cardholder table {table}; more than {} needs approval",
                self.max_limit
            ),
            None => format!(
                "reads cardholder table {table} without LIMIT; reads of more than {} rows need approval",
                self.max_limit
            ),
        })
    }

    /// The first configured table the statement reads (see the crate docs for "reads").
    fn read_table(&self, s: &Sql) -> Option<&str> {
        let kind = s.kind.as_str();
        if NO_ROWS_MOVED.contains(&kind) || sql::CONTROL_KINDS.contains(&kind) {
            return None;
        }
        if s.copy.as_ref().is_some_and(|c| c.is_from) {
            return None;
        }
        let written = |t: &str| {
            WRITE_KINDS.contains(&kind) && s.writes.iter().any(|w| sql::same_table(&w.table, t))
        };
        // The statistics views sample every column of every table.
        let statistics = s.tables.iter().any(|t| {
            let t = sql::unqualified(t).to_ascii_lowercase();
            t == "pg_stats" || t.starts_with("pg_stats_ext") || t.starts_with("pg_statistic")
        });
        self.tables
            .iter()
            .map(String::as_str)
            .find(|t| statistics || (sql::touches_table(s, t) && !written(t)))
    }
}

/// The first function of `s` on [`FOLDING_AGGREGATES`], as the host spelled it.
fn folding_aggregate(s: &Sql) -> Option<&str> {
    s.functions.iter().map(String::as_str).find(|f| {
        let name = sql::unqualified(f);
        FOLDING_AGGREGATES
            .iter()
            .any(|a| match a.strip_suffix('*') {
                Some(prefix) => name
                    .get(..prefix.len())
                    .is_some_and(|start| start.eq_ignore_ascii_case(prefix)),
                None => name.eq_ignore_ascii_case(a),
            })
    })
}

export_policy!(CardholderApproval);

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use super::*;
    use warden_policy::{CopyTarget, SqlCopy, SqlWrite, sql::blank};

    fn policy() -> CardholderApproval {
        CardholderApproval::init(r#"{"tables": ["cards"], "max_limit": 100}"#)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn stmt(kind: &str, tables: &[&str], limit: Option<u64>) -> Sql {
        let mut s = blank(kind);
        s.tables = tables.iter().map(|t| t.to_string()).collect();
        s.limit = limit;
        s
    }

    fn with_write(mut s: Sql, kind: &str, table: &str) -> Sql {
        s.writes.push(SqlWrite {
            kind: kind.into(),
            table: table.into(),
            has_where: true,
        });
        s
    }

    fn approval(s: &Sql) -> Option<String> {
        match policy().check_sql(s) {
            Verdict::RequireApproval(reason) => Some(reason),
            Verdict::Allow => None,
            v => panic!("{s:?}: unexpected {v:?}"),
        }
    }

    #[test]
    fn reads_without_a_small_limit_need_approval() {
        assert_eq!(
            approval(&stmt("select", &["cards"], None)).as_deref(),
            Some(
                "reads cardholder table cards without LIMIT; reads of more than 100 rows need approval"
            )
        );
        assert_eq!(
            approval(&stmt("select", &["cards"], Some(5000))).as_deref(),
            Some("reads up to 5000 rows of cardholder table cards; more than 100 needs approval")
        );
        assert_eq!(approval(&stmt("select", &["cards"], Some(100))), None);
        assert_eq!(approval(&stmt("select", &["cards"], Some(0))), None);
        assert!(approval(&stmt("explain", &["cards"], None)).is_some());
    }

    #[test]
    fn names_match_qualified_joined_and_in_any_case() {
        assert!(approval(&stmt("select", &["public.cards"], None)).is_some());
        assert!(approval(&stmt("select", &["owners", "cards"], None)).is_some());
        assert!(approval(&stmt("select", &["Cards"], None)).is_some());
        assert_eq!(approval(&stmt("select", &["owners"], None)), None);
        assert_eq!(approval(&stmt("select", &["audit.cards_log"], None)), None);
    }

    #[test]
    fn copy_to_reads_copy_from_loads() {
        let mut s = stmt("copy", &["cards"], None);
        s.copy = Some(SqlCopy {
            is_from: false,
            target: CopyTarget::Stdio,
        });
        assert!(approval(&s).is_some());
        s.copy = Some(SqlCopy {
            is_from: true,
            target: CopyTarget::Stdio,
        });
        assert_eq!(approval(&s), None);
    }

    #[test]
    fn writes_into_cards_are_not_reads_but_copying_cards_elsewhere_is() {
        let insert = with_write(stmt("insert", &["cards"], None), "insert", "cards");
        assert_eq!(approval(&insert), None);
        let update = with_write(
            stmt("update", &["public.cards"], None),
            "update",
            "public.cards",
        );
        assert_eq!(approval(&update), None);
        let archive = with_write(
            stmt("insert", &["archive", "cards"], None),
            "insert",
            "archive",
        );
        assert!(approval(&archive).is_some());
        let ctas = stmt("create", &["archive", "cards"], None);
        assert!(approval(&ctas).is_some());
        let cte = with_write(stmt("select", &["cards"], None), "delete", "cards");
        assert!(
            approval(&cte).is_some(),
            "rows returned from a DML CTE are read"
        );
    }

    fn calling(mut s: Sql, functions: &[&str]) -> Sql {
        s.functions = functions.iter().map(|f| f.to_string()).collect();
        s
    }

    #[test]
    fn folding_aggregates_are_unbounded_reads_whatever_the_limit() {
        let s = calling(stmt("select", &["cards"], Some(1)), &["string_agg"]);
        assert_eq!(
            approval(&s).as_deref(),
            Some(
                "reads cardholder table cards through string_agg, which folds any number of rows into one value (a LIMIT does not bound it); reads of more than 100 rows need approval"
            )
        );
        for f in [
            "array_agg",
            "pg_catalog.json_agg",
            "jsonb_agg",
            "json_agg_strict",
            "json_object_agg",
            "json_object_agg_unique_strict",
            "jsonb_object_agg_strict",
            "xmlagg",
            "json_arrayagg",
            "json_objectagg",
            "array",
            "STRING_AGG",
        ] {
            let s = calling(
                stmt("select", &["owners", "public.cards"], Some(5)),
                &["lower", f],
            );
            let r = approval(&s).unwrap_or_else(|| panic!("{f} was allowed"));
            assert!(r.contains(&format!("through {f}")), "{r}");
        }
        // Ordinary aggregates return one value per group: the LIMIT bounds them.
        for f in [
            "count",
            "max",
            "sum",
            "avg",
            "array_length",
            "arrayx",
            "string_agg2",
        ] {
            let s = calling(stmt("select", &["cards"], Some(5)), &[f]);
            assert_eq!(approval(&s), None, "{f}");
        }
        // Other tables may fold freely; writes into cards are still writes.
        assert_eq!(
            approval(&calling(
                stmt("select", &["owners"], Some(1)),
                &["string_agg"]
            )),
            None
        );
        let insert = with_write(stmt("insert", &["cards"], None), "insert", "cards");
        assert_eq!(approval(&calling(insert, &["array_agg"])), None);
        // A COPY ... TO of a folding query reads too.
        let mut copy = calling(stmt("copy", &["cards"], None), &["json_agg"]);
        copy.copy = Some(SqlCopy {
            is_from: false,
            target: CopyTarget::Stdio,
        });
        assert!(approval(&copy).is_some_and(|r| r.contains("json_agg")));
    }

    #[test]
    fn execute_is_judged_as_the_prepared_statement_it_runs() {
        let mut s = stmt("select", &["cards"], None);
        s.statement_type = "ExecuteStmt".into();
        assert!(approval(&s).is_some_and(|r| r.contains("cards without LIMIT")));
        s.limit = Some(10);
        assert_eq!(approval(&s), None);
        s.functions.push("string_agg".into());
        assert!(approval(&s).is_some());
        // PREPARE itself reads nothing.
        let mut p = stmt("prepare", &["cards"], None);
        p.statement_type = "PrepareStmt".into();
        assert_eq!(approval(&p), None);
    }

    #[test]
    fn statements_that_move_no_rows_are_allowed() {
        for kind in [
            "drop", "truncate", "alter", "grant", "revoke", "begin", "set",
        ] {
            assert_eq!(approval(&stmt(kind, &["cards"], None)), None, "{kind}");
        }
    }

    #[test]
    fn config_is_validated() {
        for bad in [
            "",
            "{}",
            r#"{"tables": []}"#,
            r#"{"tables": [""]}"#,
            r#"{"tables": ["cards"], "max_limt": 5}"#,
            r#"{"tables": ["cards"], "max_limit": -1}"#,
        ] {
            assert!(CardholderApproval::init(bad).is_err(), "{bad}");
        }
        let p = CardholderApproval::init(r#"{"tables": ["cards"]}"#);
        assert_eq!(p.map(|p| p.max_limit).ok(), Some(100));
    }
}
