//! `pci-mask`: masks every card number (PAN) in every result (PCI DSS 3.4).
//!
//! `check` answers `mask` for every SQL statement that can return rows (including writes with
//! RETURNING), every shell command (its output is masked) and every HTTP request (its JSON
//! body is masked); transaction control and SET are allowed as is. `mask-rows` replaces the
//! digits of each PAN in any cell, also inside longer text, keeping the last four and the
//! separators (`**** **** **** 1111`). NULLs, non-PAN numbers and Luhn-invalid look-alikes are
//! left alone.
//!
//! Content scanning cannot see a card number the query's author transformed (`reverse(pan)`,
//! `substr` pieces, `encode(...)`, `pan::bigint + 1`). For the columns named in
//! `sensitive_columns`, `check` therefore goes by lineage (the host's `sql.columns`): such a
//! column may leave only as itself (then masked by content and type); an expression over it in
//! what is sent or written is refused, naming the column. Using it to choose rows (WHERE,
//! JOIN, ORDER BY) stays allowed unless `refuse_filters` is set.
//!
//! Config (optional JSON; warden.toml tables arrive as JSON):
//! `{ "rule": "pan", "exempt_columns": ["card_last4"], "sensitive_columns": ["cards.pan"],
//! "refuse_filters": false }` — `rule` names the rule in the masked-data log (default `pan`);
//! `exempt_columns` lists result columns never masked (exact, case-insensitive names);
//! `sensitive_columns` lists `table.column` (or `schema.table.column`) names; a table without
//! a schema matches it in any schema. Unknown keys are refused.

use serde::Deserialize;
use warden_policy::{
    CellEdit, Column, ColumnUsage, Command, Policy, Row, Session, Verdict, export_policy, pan, sql,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    rule: String,
    exempt_columns: Vec<String>,
    sensitive_columns: Vec<String>,
    refuse_filters: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rule: "pan".to_string(),
            exempt_columns: Vec::new(),
            sensitive_columns: Vec::new(),
            refuse_filters: false,
        }
    }
}

struct PciMask {
    rule: String,
    exempt: Vec<String>,
    /// (table, column), lower-cased.
    sensitive: Vec<(String, String)>,
    refuse_filters: bool,
}

impl Policy for PciMask {
    fn init(config: &str) -> Result<Self, String> {
        let config: Config = if config.trim().is_empty() {
            Config::default()
        } else {
            serde_json::from_str(config).map_err(|e| format!("pci-mask config: {e}"))?
        };
        if config.rule.is_empty() {
            return Err("pci-mask config: `rule` must not be empty".to_string());
        }
        let mut sensitive = Vec::new();
        for name in &config.sensitive_columns {
            match name.to_lowercase().rsplit_once('.') {
                Some((table, column)) if !table.is_empty() && !column.is_empty() => {
                    sensitive.push((table.to_string(), column.to_string()));
                }
                _ => {
                    return Err(format!(
                        "pci-mask config: sensitive column {name:?} must be written table.column"
                    ));
                }
            }
        }
        Ok(PciMask {
            rule: config.rule,
            exempt: config.exempt_columns,
            sensitive,
            refuse_filters: config.refuse_filters,
        })
    }

    fn check(&self, _session: &Session, command: &Command) -> Verdict {
        if let Command::Sql(s) = command
            && let Some(reason) = self.transformed(s)
        {
            return Verdict::Deny(reason);
        }
        match command {
            Command::Sql(s) if !sql::may_return_rows(s) => Verdict::Allow,
            // A file opened over SFTP (for reading, or for writing, which may read too): what
            // is read through it is masked, as command output is; so are the names a listing,
            // REALPATH or READLINK returns (a file named after a card number). Other file
            // operations and port forwards carry no content: nothing to mask. A policy that
            // must keep card files in place denies the open instead.
            Command::File(f)
                if f.op.starts_with("open-")
                    || matches!(f.op.as_str(), "list" | "realpath" | "readlink") =>
            {
                Verdict::Mask
            }
            Command::File(_) | Command::Forward(_) => Verdict::Allow,
            _ => Verdict::Mask,
        }
    }

    fn mask_rows(
        &self,
        _: &Session,
        columns: &[Column],
        rows: &[Row],
    ) -> Result<Vec<CellEdit>, String> {
        if self.exempt.is_empty() {
            return Ok(pan::mask_rows(rows, &self.rule));
        }
        // Decide once per batch which columns to scan, so exempt cells are never scanned and
        // no name is compared per cell. A cell beyond the described columns is masked.
        let scan: Vec<bool> = columns
            .iter()
            .map(|c| !self.exempt.iter().any(|e| e.eq_ignore_ascii_case(&c.name)))
            .collect();
        Ok(pan::mask_rows_where(rows, &self.rule, |c| {
            scan.get(c).copied().unwrap_or(true)
        }))
    }
}

impl PciMask {
    /// Why the statement is refused by lineage: a sensitive column used through an
    /// expression (or, with `refuse_filters`, to choose rows); code whose body the gateway
    /// cannot read that names one; or a catalog that holds other statements' values.
    fn transformed(&self, s: &warden_policy::Sql) -> Option<String> {
        if self.sensitive.is_empty() {
            return None;
        }
        if let Some(t) = s
            .tables
            .iter()
            .find(|t| LEAKING_CATALOGS.contains(&sql::unqualified(t)))
        {
            return Some(format!(
                "pci-mask: {t} holds values of other statements and of the card-number columns; it is not readable here"
            ));
        }
        if OPAQUE_CODE.contains(&s.statement_type.as_str()) {
            let text = s.text.to_lowercase();
            if let Some((table, column)) = self.sensitive.iter().find(|(_, c)| mentions(&text, c)) {
                return Some(format!(
                    "pci-mask: this code names {column} ({table}.{column} holds card numbers) in a body the gateway cannot read"
                ));
            }
            // `FOR r IN SELECT * FROM cards ... RAISE NOTICE '%', translate(r::text, ...)`
            // reads the column without naming it.
            if let Some((table, column)) = self
                .sensitive
                .iter()
                .find(|(t, _)| mentions(&text, sql::unqualified(t)))
            {
                return Some(format!(
                    "pci-mask: this code reads {table} ({table}.{column} holds card numbers) in a body the gateway cannot read"
                ));
            }
            // Statements built at run time can name anything.
            if mentions(&text, "execute") {
                return Some(
                    "pci-mask: this code builds statements at run time (EXECUTE) in a body the gateway cannot read, and card-number columns are protected here"
                        .to_string(),
                );
            }
        }
        for u in &s.columns {
            let refused = match u.usage {
                ColumnUsage::Transformed => true,
                ColumnUsage::Filter => self.refuse_filters,
                ColumnUsage::Output => false,
            };
            if !refused {
                continue;
            }
            let Some((table, column)) = self.sensitive.iter().find(|(t, c)| {
                (u.column == *c || u.column == "*") && table_matches(&u.table, t, &s.tables)
            }) else {
                continue;
            };
            let how = match u.usage {
                ColumnUsage::Filter => "to choose rows",
                _ => "through an expression (a function, operator, cast or aggregate)",
            };
            return Some(format!(
                "pci-mask: {table}.{column} holds card numbers and may leave only as itself, masked; this statement uses it {how}"
            ));
        }
        None
    }
}

/// Catalogs that show values: column statistics (most common values, histogram bounds) and
/// other sessions' statement texts (every session shares the gateway's upstream role).
const LEAKING_CATALOGS: &[&str] = &[
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic",
    "pg_statistic_ext_data",
    "pg_stat_activity",
    "pg_stat_statements",
];

/// Statements whose bodies are text to the gateway (PL/pgSQL, SQL function bodies, rules).
const OPAQUE_CODE: &[&str] = &[
    "DoStmt",
    "CreateFunctionStmt",
    "CreateTrigStmt",
    "RuleStmt",
    "CreateEventTrigStmt",
];

/// Whether `text` (lower-cased) has `word` as a whole identifier.
fn mentions(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// Whether a use's table (`""`: unqualified among several tables) is the sensitive `table`.
fn table_matches(used: &str, table: &str, tables: &[String]) -> bool {
    let same = |a: &str| a == table || (!table.contains('.') && sql::unqualified(a) == table);
    if used.is_empty() {
        tables.iter().any(|t| same(t))
    } else {
        same(used)
    }
}

export_policy!(PciMask);

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use super::*;
    use warden_policy::{Principal, Protocol, Shell, sql::blank};

    fn session() -> Session {
        Session {
            id: "s1".into(),
            protocol: Protocol::Postgres,
            target: "payments".into(),
            principal: Principal {
                subject: "alice".into(),
                issuer: "test".into(),
                groups: Vec::new(),
                actors: vec!["alice".into()],
            },
            client_addr: "127.0.0.1:5000".into(),
        }
    }

    fn policy(config: &str) -> PciMask {
        match PciMask::init(config) {
            Ok(p) => p,
            Err(e) => panic!("init({config}): {e}"),
        }
    }

    fn text_columns(names: &[&str]) -> Vec<Column> {
        names
            .iter()
            .map(|n| Column {
                name: n.to_string(),
                type_name: "text".into(),
            })
            .collect()
    }

    #[test]
    fn row_returning_statements_are_masked_control_is_allowed() {
        let p = policy("");
        for kind in [
            "select", "copy", "insert", "update", "delete", "merge", "explain", "show", "execute",
            "call", "other", "unknown",
        ] {
            let v = p.check(&session(), &Command::Sql(blank(kind)));
            assert!(matches!(v, Verdict::Mask), "{kind}: {v:?}");
        }
        for kind in ["begin", "commit", "rollback", "set", "prepare", "discard"] {
            let v = p.check(&session(), &Command::Sql(blank(kind)));
            assert!(matches!(v, Verdict::Allow), "{kind}: {v:?}");
        }
        let shell = Command::Shell(Shell {
            line: "cat log".into(),
            argv: vec!["cat".into(), "log".into()],
            interactive: false,
            stdin_kind: warden_policy::StdinKind::Data,
        });
        assert!(matches!(p.check(&session(), &shell), Verdict::Mask));
    }

    #[test]
    fn masks_pans_with_the_configured_rule() {
        let p = policy(r#"{"rule": "card"}"#);
        let rows = vec![
            vec![Some("alice".into()), Some("4111 1111 1111 1111".into())],
            vec![Some("bob".into()), None],
        ];
        let edits = p
            .mask_rows(&session(), &text_columns(&["name", "pan"]), &rows)
            .unwrap_or_default();
        assert_eq!(edits.len(), 1);
        assert_eq!(edits[0].value.as_deref(), Some("**** **** **** 1111"));
        assert_eq!(edits[0].rule, "card");
    }

    #[test]
    fn exempt_columns_are_not_masked() {
        let p = policy(r#"{"exempt_columns": ["Token"]}"#);
        let rows = vec![vec![
            Some("4111111111111111".into()),
            Some("4111111111111111".into()),
            Some("5500005555555559".into()),
        ]];
        let edits = p
            .mask_rows(&session(), &text_columns(&["token", "pan"]), &rows)
            .unwrap_or_default();
        let cols: Vec<_> = edits.iter().map(|e| e.column).collect();
        assert_eq!(
            cols,
            [1, 2],
            "column 0 is exempt; an undescribed column is masked"
        );
    }

    #[test]
    fn bad_config_is_refused() {
        for bad in [
            r#"{"rules": "pan"}"#,
            r#"{"rule": ""}"#,
            "pan",
            r#"{"exempt_columns": "x"}"#,
        ] {
            assert!(PciMask::init(bad).is_err(), "{bad}");
        }
        assert!(PciMask::init("  ").is_ok());
        assert!(PciMask::init("{}").is_ok());
    }
}
