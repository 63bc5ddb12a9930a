//! `cardholder-approval`: holds large reads of cardholder tables for a human approver.
//!
//! A read (SELECT without data-changing CTEs, COPY ... TO, EXPLAIN) that touches a configured
//! table and has no literal LIMIT at or below `max_limit` gets `require-approval`, with a
//! reason naming the table and the limit. Smaller reads, writes, other tables and non-SQL
//! commands are allowed (other policies judge those).
//!
//! Config (JSON, required): `{ "tables": ["cards", "billing.accounts"], "max_limit": 100 }` —
//! `tables` (names match with or without a schema: `cards` also covers `public.cards`),
//! `max_limit` (default 100). Unknown keys are refused.

use serde::Deserialize;
use warden_policy::{Command, Policy, Session, Verdict, export_policy, sql};

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

struct CardholderApproval {
    tables: Vec<String>,
    max_limit: u64,
}

impl Policy for CardholderApproval {
    fn init(config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config).map_err(|e| {
            format!("cardholder-approval config: {e} (expected {{\"tables\": [\"cards\"], \"max_limit\": 100}})")
        })?;
        if config.tables.is_empty() {
            return Err(
                "cardholder-approval config: `tables` must name at least one table".to_string(),
            );
        }
        let tables = config.tables.iter().map(|t| t.to_lowercase()).collect();
        Ok(CardholderApproval {
            tables,
            max_limit: config.max_limit,
        })
    }

    fn check(&self, _session: &Session, command: &Command) -> Verdict {
        let Command::Sql(s) = command else {
            return Verdict::Allow;
        };
        if !sql::is_read(s) || s.limit.is_some_and(|l| l <= self.max_limit) {
            return Verdict::Allow;
        }
        match self.tables.iter().find(|t| sql::touches_table(s, t)) {
            Some(table) => Verdict::RequireApproval(match s.limit {
                Some(l) => format!(
                    "reads up to {l} rows of cardholder table {table}; more than {} needs approval",
                    self.max_limit
                ),
                None => format!(
                    "reads cardholder table {table} without LIMIT; reads of more than {} rows need approval",
                    self.max_limit
                ),
            }),
            None => Verdict::Allow,
        }
    }
}

export_policy!(CardholderApproval);
