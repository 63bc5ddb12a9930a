//! Verdicts and how a target's chain of policies combines them into one decision.
//!
//! The most restrictive verdict wins: deny > require-approval > mask > allow. Every policy's own
//! verdict is kept, with the module's sha256 and the call's latency, for the audit trail.
//! Budgets (`allow-within`, `mask-within`) are taken apart at the call: the verdict is `allow` or
//! `mask` and the budget rides beside it; a decision's budget is the smallest of each limit.

use super::bindings::{Budget, OverBudget, TableBudget, Verdict};
use super::error::PolicyError;
use super::module::PolicyModule;
use std::sync::Arc;
use std::time::Duration;

impl Verdict {
    /// Strictness rank: higher wins when a chain is combined.
    pub fn rank(&self) -> u8 {
        match self {
            Verdict::Allow | Verdict::AllowWithin(_) => 0,
            Verdict::Mask | Verdict::MaskWithin(_) => 1,
            Verdict::RequireApproval(_) => 2,
            Verdict::Deny(_) => 3,
        }
    }

    /// The lower-case name used in the audit trail and case files.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Allow | Verdict::AllowWithin(_) => "allow",
            Verdict::Mask | Verdict::MaskWithin(_) => "mask",
            Verdict::RequireApproval(_) => "require-approval",
            Verdict::Deny(_) => "deny",
        }
    }

    /// The reason a deny or require-approval carries.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Deny(reason) | Verdict::RequireApproval(reason) => Some(reason),
            Verdict::Allow | Verdict::Mask | Verdict::AllowWithin(_) | Verdict::MaskWithin(_) => {
                None
            }
        }
    }
}

/// One policy's answer within a decision.
#[derive(Debug, Clone)]
pub struct PolicyVerdict {
    /// The policy module's name (its file name without `.wasm`).
    pub policy: String,
    /// sha256 of the module that answered (empty when the module was missing).
    pub sha256: String,
    /// What it said; a failed call is a `Deny` carrying the cause. Never `allow-within` or
    /// `mask-within`: those arrive as `allow` / `mask` with `budget` set.
    pub verdict: Verdict,
    /// The limits an `allow-within` / `mask-within` set.
    pub budget: Option<Budget>,
    /// Wall time of the call, including taking an instance from the pool.
    pub latency: Duration,
    /// Set when the policy failed closed (trap, deadline, memory cap, init error, missing, ...).
    pub failure: Option<PolicyError>,
    /// The exact module version and config that answered, so `mask-rows` for this command runs
    /// on the same version even if a hot reload swaps the module meanwhile.
    pub(crate) module: Option<(Arc<PolicyModule>, Arc<str>)>,
}

/// The combined answer of a target's policy chain for one command.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The winning (most restrictive) verdict.
    pub verdict: Verdict,
    /// Which policy's verdict won (the first of the strictest); `None` for an empty chain.
    pub decided_by: Option<String>,
    /// Every policy's own verdict, in chain order.
    pub policies: Vec<PolicyVerdict>,
    /// What the chain's shadow policies (`mode = "shadow"`) said, in chain order: audited,
    /// never enforced. A shadow policy that failed is here as a `Deny` with its `failure`.
    pub shadow: Vec<PolicyVerdict>,
}

impl Budget {
    /// The smaller of two budgets, limit by limit; the stricter of their `over`.
    pub fn tighten(&self, other: &Budget) -> Budget {
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut tables = self.tables.clone();
        for t in &other.tables {
            match tables.iter_mut().find(|x| x.table == t.table) {
                Some(x) => x.rows_written = x.rows_written.min(t.rows_written),
                None => tables.push(t.clone()),
            }
        }
        let strict = |o: OverBudget| match o {
            OverBudget::Refuse => 1,
            OverBudget::RequireApproval => 0,
        };
        Budget {
            rows_written: min(self.rows_written, other.rows_written),
            tables,
            rows_returned: min(self.rows_returned, other.rows_returned),
            bytes_returned: min(self.bytes_returned, other.bytes_returned),
            over: if strict(other.over) > strict(self.over) {
                other.over
            } else {
                self.over
            },
            // Cutting a result is the looser answer: it takes every policy to agree.
            truncate_results: self.truncate_results && other.truncate_results,
        }
    }

    /// Whether it limits writes.
    pub fn limits_writes(&self) -> bool {
        self.rows_written.is_some() || !self.tables.is_empty()
    }

    /// A short description for audit records and messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.rows_written {
            parts.push(format!("{n} rows written"));
        }
        for TableBudget {
            table,
            rows_written,
        } in &self.tables
        {
            parts.push(format!("{rows_written} rows written in {table}"));
        }
        if let Some(n) = self.rows_returned {
            parts.push(format!("{n} rows returned"));
        }
        if let Some(n) = self.bytes_returned {
            parts.push(format!("{n} bytes returned"));
        }
        let over = match self.over {
            OverBudget::Refuse => "refuse",
            OverBudget::RequireApproval => "require approval",
        };
        let results = if self.truncate_results {
            "; results over: cut"
        } else {
            ""
        };
        format!("at most {}; over: {over}{results}", parts.join(", "))
    }
}

impl Decision {
    /// The combined budget of every policy that set one (`None`: no limits).
    pub fn budget(&self) -> Option<Budget> {
        self.policies
            .iter()
            .filter_map(|p| p.budget.as_ref())
            .fold(None, |acc: Option<Budget>, b| {
                Some(acc.map_or_else(|| b.clone(), |a| a.tighten(b)))
            })
    }
}

impl Decision {
    /// Combine per-policy verdicts. An empty chain denies: a target with no policy is closed.
    pub fn combine(policies: Vec<PolicyVerdict>) -> Decision {
        let mut winner: Option<usize> = None;
        for (i, p) in policies.iter().enumerate() {
            let stricter = match winner {
                None => true,
                Some(w) => p.verdict.rank() > policies[w].verdict.rank(),
            };
            if stricter {
                winner = Some(i);
            }
        }
        match winner {
            Some(w) => Decision {
                verdict: policies[w].verdict.clone(),
                decided_by: Some(policies[w].policy.clone()),
                policies,
                shadow: Vec::new(),
            },
            None => Decision {
                verdict: Verdict::Deny("no policy is configured for this target".to_string()),
                decided_by: None,
                policies,
                shadow: Vec::new(),
            },
        }
    }

    /// The shadow verdicts of `decisions` (a message's statements) stricter than the enforced
    /// `verdict`: what would have changed for the client had they been enforced. Strictest
    /// first; the first of equal strictness, in chain order, leads.
    pub fn stricter_shadows<'d>(
        verdict: &Verdict,
        decisions: &'d [Decision],
    ) -> Vec<&'d PolicyVerdict> {
        let mut stricter: Vec<&PolicyVerdict> = decisions
            .iter()
            .flat_map(|d| &d.shadow)
            .filter(|p| p.verdict.rank() > verdict.rank())
            .collect();
        stricter.sort_by_key(|p| std::cmp::Reverse(p.verdict.rank()));
        stricter
    }

    /// Combine the decisions for several statements of one message (a multi-statement query):
    /// the strictest wins, so one denied statement refuses the whole message.
    /// Borrows the decisions: the caller keeps each statement's own (masking needs them) and
    /// only the winner is copied.
    pub fn combine_all(decisions: &[Decision]) -> Decision {
        let mut best: Option<&Decision> = None;
        for d in decisions {
            best = match best {
                Some(b) if b.verdict.rank() >= d.verdict.rank() => Some(b),
                _ => Some(d),
            };
        }
        best.cloned()
            .unwrap_or_else(|| Decision::combine(Vec::new()))
    }

    /// The reason to show a client: `policy: reason`.
    pub fn display_reason(&self) -> String {
        match (&self.decided_by, self.verdict.reason()) {
            (Some(policy), Some(reason)) => format!("{policy}: {reason}"),
            (None, Some(reason)) => reason.to_string(),
            (_, None) => self.verdict.name().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_verdicts_never_change_the_decision() {
        let mut d = Decision::combine(vec![pv("a", Verdict::Mask)]);
        let names = |d: &Decision| -> Vec<String> {
            Decision::stricter_shadows(&d.verdict, std::slice::from_ref(d))
                .iter()
                .map(|p| p.policy.clone())
                .collect()
        };
        assert!(names(&d).is_empty());
        d.shadow = vec![pv("s1", Verdict::Allow), pv("s2", Verdict::Mask)];
        assert!(names(&d).is_empty(), "as strict as enforced: no change");
        d.shadow
            .push(pv("s3", Verdict::RequireApproval("x".into())));
        d.shadow.push(pv("s4", Verdict::Deny("no".into())));
        d.shadow.push(pv("s5", Verdict::Deny("later".into())));
        assert_eq!(names(&d), ["s4", "s5", "s3"]);
        assert_eq!(d.verdict, Verdict::Mask);
        assert_eq!(Decision::combine_all(&[d]).verdict, Verdict::Mask);
    }

    fn pv(name: &str, verdict: Verdict) -> PolicyVerdict {
        PolicyVerdict {
            policy: name.to_string(),
            sha256: String::new(),
            verdict,
            budget: None,
            latency: Duration::ZERO,
            failure: None,
            module: None,
        }
    }

    fn budget(rows: Option<u64>, tables: &[(&str, u64)], over: OverBudget) -> Budget {
        Budget {
            rows_written: rows,
            tables: tables
                .iter()
                .map(|(t, n)| TableBudget {
                    table: t.to_string(),
                    rows_written: *n,
                })
                .collect(),
            rows_returned: None,
            bytes_returned: Some(1000),
            over,
            truncate_results: true,
        }
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn budgets_combine_to_the_smallest_limit_and_strictest_over() {
        let mut a = pv("a", Verdict::Allow);
        a.budget = Some(budget(
            Some(100),
            &[("cards", 5), ("*", 50)],
            OverBudget::Refuse,
        ));
        let mut b = pv("b", Verdict::Mask);
        b.budget = Some(budget(None, &[("cards", 3)], OverBudget::RequireApproval));
        let d = Decision::combine(vec![a, b, pv("c", Verdict::Allow)]);
        assert_eq!(d.verdict, Verdict::Mask);
        let combined = d.budget().unwrap();
        assert_eq!(combined.rows_written, Some(100));
        assert_eq!(combined.bytes_returned, Some(1000));
        assert_eq!(combined.over, OverBudget::Refuse);
        assert!(combined.truncate_results);
        let cards = combined.tables.iter().find(|t| t.table == "cards").unwrap();
        assert_eq!(cards.rows_written, 3);
        assert!(combined.limits_writes());
        assert!(combined.describe().contains("3 rows written in cards"));
        assert!(
            Decision::combine(vec![pv("x", Verdict::Allow)])
                .budget()
                .is_none()
        );
    }

    #[test]
    fn strictest_verdict_wins_and_all_are_kept() {
        let d = Decision::combine(vec![
            pv("a", Verdict::Allow),
            pv("m", Verdict::Mask),
            pv("r", Verdict::RequireApproval("big read".into())),
            pv("m2", Verdict::Mask),
        ]);
        assert_eq!(d.verdict, Verdict::RequireApproval("big read".into()));
        assert_eq!(d.decided_by.as_deref(), Some("r"));
        assert_eq!(d.policies.len(), 4);

        let d = Decision::combine(vec![
            pv("r", Verdict::RequireApproval("x".into())),
            pv("d", Verdict::Deny("no".into())),
            pv("m", Verdict::Mask),
        ]);
        assert_eq!(d.verdict, Verdict::Deny("no".into()));
        assert_eq!(d.display_reason(), "d: no");

        let d = Decision::combine(vec![pv("a", Verdict::Allow), pv("m", Verdict::Mask)]);
        assert_eq!(d.verdict, Verdict::Mask);
        let d = Decision::combine(vec![pv("a", Verdict::Allow), pv("b", Verdict::Allow)]);
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.decided_by.as_deref(), Some("a"));
    }

    #[test]
    fn first_of_equally_strict_verdicts_gives_the_reason() {
        let d = Decision::combine(vec![
            pv("first", Verdict::Deny("one".into())),
            pv("second", Verdict::Deny("two".into())),
        ]);
        assert_eq!(d.display_reason(), "first: one");
    }

    #[test]
    fn empty_chain_denies() {
        let d = Decision::combine(Vec::new());
        assert!(matches!(d.verdict, Verdict::Deny(_)));
    }

    #[test]
    fn one_denied_statement_refuses_the_message() {
        let ok = Decision::combine(vec![pv("g", Verdict::Allow)]);
        let bad = Decision::combine(vec![pv("g", Verdict::Deny("DROP".into()))]);
        let masked = Decision::combine(vec![pv("p", Verdict::Mask)]);
        let d = Decision::combine_all(&[ok, bad, masked]);
        assert_eq!(d.verdict, Verdict::Deny("DROP".into()));
    }
}
