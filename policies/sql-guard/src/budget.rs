//! sql-guard's write budget: statements that can write run under limits the gateway measures by
//! their effect (rows the server counts as inserted, updated or deleted, including by functions
//! and triggers), so `DELETE ... WHERE id = id`, MERGE, ON CONFLICT, writable CTEs and
//! functions that delete are bounded by what they actually change, whatever their text says.
//!
//! Config key `write_budget` (defaults shown):
//! `{ "per_table": 1000, "rows": null, "tables": {"cards": 10}, "over": "require-approval" }`
//! - `per_table`: rows any one table may have written by one statement (`null`: no limit);
//! - `rows`: rows in all tables together (`null`: no limit);
//! - `tables`: limits for named tables (with or without schema), on top of `per_table`;
//! - `over`: `require-approval` (the writes wait, uncommitted, for an approver) or `refuse`
//!   (rolled back, SQLSTATE 42501).
//!
//! Config key `result_budget` (off by default): `{ "rows": 10000, "bytes": 10485760, "over":
//! "truncate" }` limits what one result of a read may return: `truncate` cuts it at the limit
//! with a NOTICE, `refuse` ends it with an error. Masked rows count as they leave.
//!
//! `"write_budget": false` switches the write budget off (TOML has no null: `write_budget =
//! false`). With no limit at all the statement is simply allowed.

use serde::Deserialize;
use std::collections::BTreeMap;
use warden_policy::sql::unqualified;
use warden_policy::{Budget, OverBudget, Sql, TableBudget};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriteBudget {
    per_table: Option<u64>,
    rows: Option<u64>,
    tables: BTreeMap<String, u64>,
    over: Over,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Over {
    #[default]
    RequireApproval,
    Refuse,
}

/// `write_budget` as configured: limits, or `false` for none.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum WriteBudgetConfig {
    Switch(bool),
    Limits(WriteBudget),
}

impl Default for WriteBudgetConfig {
    fn default() -> Self {
        WriteBudgetConfig::Limits(WriteBudget::default())
    }
}

impl WriteBudgetConfig {
    /// The limits in force (`None`: switched off). `true` means the defaults.
    pub fn limits(self) -> Result<Option<WriteBudget>, String> {
        match self {
            WriteBudgetConfig::Switch(false) => Ok(None),
            WriteBudgetConfig::Switch(true) => Ok(Some(WriteBudget::default())),
            WriteBudgetConfig::Limits(l) => Ok(Some(l)),
        }
    }
}

impl Default for WriteBudget {
    fn default() -> Self {
        WriteBudget {
            per_table: Some(1000),
            rows: None,
            tables: BTreeMap::new(),
            over: Over::RequireApproval,
        }
    }
}

/// Kinds that write; with calls of functions (which may write) and writable CTEs, a statement
/// gets the budget. The gateway measures only statements that can write.
const WRITE_KINDS: &[&str] = &["insert", "update", "delete", "merge", "call"];

/// Functions too common in reads to make a statement count as a possible write: the gateway's
/// own list decides finally; this only keeps budgets off plain reads in the audit trail.
const READS: &[&str] = &[
    "count", "sum", "avg", "min", "max", "lower", "upper", "now", "length",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResultBudget {
    rows: Option<u64>,
    bytes: Option<u64>,
    over: ReadOver,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ReadOver {
    #[default]
    Refuse,
    Truncate,
}

impl ResultBudget {
    /// Add the result limits to a statement's budget (or make one), when any is set.
    pub fn add_to(&self, budget: Option<Budget>) -> Option<Budget> {
        if self.rows.is_none() && self.bytes.is_none() {
            return budget;
        }
        let mut b = budget.unwrap_or(Budget {
            rows_written: None,
            tables: Vec::new(),
            rows_returned: None,
            bytes_returned: None,
            over: OverBudget::Refuse,
            truncate_results: false,
        });
        b.rows_returned = self.rows;
        b.bytes_returned = self.bytes;
        b.truncate_results = self.over == ReadOver::Truncate;
        Some(b)
    }
}

impl WriteBudget {
    /// The budget for a statement, when it may write and a limit is set.
    pub fn for_statement(&self, s: &Sql) -> Option<Budget> {
        // Reading a view can write (it may call a function that does): a statement naming any
        // relation gets the budget; the gateway measures only those that read something other
        // than plain tables, call functions or write.
        let may_write = WRITE_KINDS.contains(&s.kind.as_str())
            || !s.writes.is_empty()
            || !s.tables.is_empty()
            || s.functions
                .iter()
                .any(|f| !READS.iter().any(|r| unqualified(f).eq_ignore_ascii_case(r)));
        if !may_write {
            return None;
        }
        let mut tables: Vec<TableBudget> = self
            .tables
            .iter()
            .map(|(table, n)| TableBudget {
                table: table.clone(),
                rows_written: *n,
            })
            .collect();
        if let Some(n) = self.per_table {
            tables.push(TableBudget {
                table: "*".into(),
                rows_written: n,
            });
        }
        if tables.is_empty() && self.rows.is_none() {
            return None;
        }
        Some(Budget {
            rows_written: self.rows,
            tables,
            rows_returned: None,
            bytes_returned: None,
            over: match self.over {
                Over::RequireApproval => OverBudget::RequireApproval,
                Over::Refuse => OverBudget::Refuse,
            },
            truncate_results: false,
        })
    }
}
