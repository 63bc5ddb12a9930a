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
        let exempt = config
            .exempt_columns
            .iter()
            .map(|c| c.to_lowercase())
            .collect();
        Ok(PciMask {
            rule: config.rule,
            exempt,
        })
    }

    fn check(&self, _session: &Session, command: &Command) -> Verdict {
        match command {
            Command::Sql(s) if !sql::may_return_rows(s) => Verdict::Allow,
            _ => Verdict::Mask,
        }
    }

    fn mask_rows(
        &self,
        _: &Session,
        columns: &[Column],
        rows: &[Row],
    ) -> Result<Vec<CellEdit>, String> {
        let mut edits = pan::mask_rows(rows, &self.rule);
        if !self.exempt.is_empty() {
            edits.retain(|e| {
                columns
                    .get(e.column as usize)
                    .is_none_or(|c| !self.exempt.contains(&c.name.to_lowercase()))
            });
        }
        Ok(edits)
    }
}

export_policy!(PciMask);
