//! `pci-mask`: masks every card number (PAN) in every result (PCI DSS 3.4).
//!
//! `check` answers `mask` for every SQL statement that can return rows (including writes with
//! RETURNING), every shell command (its output is masked) and every HTTP request (its JSON
//! body is masked); transaction control and SET are allowed as is. `mask-rows` replaces the
//! digits of each PAN in any cell, also inside longer text, keeping the last four and the
//! separators (`**** **** **** 1111`). NULLs, non-PAN numbers and Luhn-invalid look-alikes are
//! left alone.
//!
//! Config (optional JSON; warden.toml tables arrive as JSON):
//! `{ "rule": "pan", "exempt_columns": ["card_last4"] }` — `rule` names the rule in the
//! masked-data log (default `pan`); `exempt_columns` lists result columns never masked (exact,
//! case-insensitive names). Unknown keys are refused.

use serde::Deserialize;
use warden_policy::{
    CellEdit, Column, Command, Policy, Row, Session, Verdict, export_policy, pan, sql,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    rule: String,
    exempt_columns: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rule: "pan".to_string(),
            exempt_columns: Vec::new(),
        }
    }
}

struct PciMask {
    rule: String,
    exempt: Vec<String>,
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
        Ok(PciMask {
            rule: config.rule,
            exempt: config.exempt_columns,
        })
    }

    fn check(&self, _session: &Session, command: &Command) -> Verdict {
        match command {
            Command::Sql(s) if !sql::may_return_rows(s) => Verdict::Allow,
            // SFTP transfers and port forwards are byte streams, not rows: nothing to mask.
            // A policy that must keep card files in place denies the `open-read` instead.
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
