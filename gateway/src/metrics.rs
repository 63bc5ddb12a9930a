//! Prometheus metrics, served by the admin listener at `GET /metrics` in the OpenMetrics text
//! format (`prometheus-client`). One process-wide set: the code that sees an event counts it
//! here with one call, without a handle threaded through every layer.
//!
//! # Labels
//! Only names the operator wrote (targets and policy modules from warden.toml) and fixed
//! vocabularies (protocols, verdicts, reasons, modes) become label values. Nothing a client
//! chose does: no command text, principal, database or user name, column name or card number
//! can reach a label, so neither a secret nor an unbounded number of series can be scraped.
//! A login to a target that does not exist is counted without its name for the same reason.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::audit::AuditVerdict;
use crate::policy::{PolicyRef, PolicyVerdict};

/// Label pairs: keys are fixed names, values operator-written or from a fixed vocabulary.
type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// The content type of [`render`]'s answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct Metrics {
    registry: Registry,
    sessions_opened: Family<Labels, Counter>,
    sessions_open: Family<Labels, Gauge>,
    logins_refused: Family<Labels, Counter>,
    connections_refused: Family<Labels, Counter>,
    commands: Family<Labels, Counter>,
    policy_verdicts: Family<Labels, Counter>,
    policy_failures: Family<Labels, Counter>,
    policy_seconds: Histograms,
    shadow_disagreements: Family<Labels, Counter>,
    instances_idle: Family<Labels, Gauge>,
    masked_cells: Family<Labels, Counter>,
    approvals_pending: Gauge,
    approvals_decided: Family<Labels, Counter>,
    audit_append_seconds: Histogram,
    audit_batch_size: Histogram,
    audit_commits: Counter,
    audit_failed_commits: Counter,
}

fn latency_buckets() -> Histogram {
    Histogram::new([
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        1.0,
    ])
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("warden");
    let m = Metrics {
        sessions_opened: Family::default(),
        sessions_open: Family::default(),
        logins_refused: Family::default(),
        connections_refused: Family::default(),
        commands: Family::default(),
        policy_verdicts: Family::default(),
        policy_failures: Family::default(),
        policy_seconds: Family::new_with_constructor(latency_buckets),
        shadow_disagreements: Family::default(),
        instances_idle: Family::default(),
        masked_cells: Family::default(),
        approvals_pending: Gauge::default(),
        approvals_decided: Family::default(),
        audit_append_seconds: latency_buckets(),
        audit_batch_size: Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        audit_commits: Counter::default(),
        audit_failed_commits: Counter::default(),
        registry: Registry::default(),
    };
    let r = &mut registry;
    r.register(
        "sessions_opened",
        "Sessions opened, by protocol and target",
        m.sessions_opened.clone(),
    );
    r.register(
        "sessions_open",
        "Sessions open now, by protocol and target",
        m.sessions_open.clone(),
    );
    r.register(
        "logins_refused",
        "Logins refused, by protocol and reason",
        m.logins_refused.clone(),
    );
    r.register(
        "connections_refused",
        "Connections refused at the door before any login, by listener and reason",
        m.connections_refused.clone(),
    );
    r.register(
        "commands",
        "Commands judged, by protocol, target, combined verdict and the policy that decided \
         (`warden` for the gateway's own refusals)",
        m.commands.clone(),
    );
    r.register(
        "policy_verdicts",
        "Verdicts of each policy of a chain, by target, policy, mode and verdict",
        m.policy_verdicts.clone(),
    );
    r.register(
        "policy_failures",
        "Policy calls that failed (deny when enforced, recorded when shadow), by policy, mode \
         and cause",
        m.policy_failures.clone(),
    );
    r.register(
        "policy_call_seconds",
        "Wall time of one policy call, by policy and mode",
        m.policy_seconds.clone(),
    );
    r.register(
        "shadow_disagreements",
        "Commands whose verdict a shadow policy would have made stricter, by target and policy",
        m.shadow_disagreements.clone(),
    );
    r.register(
        "policy_instances_idle",
        "Initialised policy instances kept idle, by policy",
        m.instances_idle.clone(),
    );
    r.register(
        "masked_cells",
        "Result cells masked, by target",
        m.masked_cells.clone(),
    );
    r.register(
        "approvals_pending",
        "Commands held for an approver now",
        m.approvals_pending.clone(),
    );
    r.register(
        "approvals_decided",
        "Held commands decided, by outcome (granted, denied, expired)",
        m.approvals_decided.clone(),
    );
    r.register(
        "audit_append_seconds",
        "Time from handing an event to the audit store until it is durable",
        m.audit_append_seconds.clone(),
    );
    r.register(
        "audit_batch_size",
        "Requests made durable together by one audit commit",
        m.audit_batch_size.clone(),
    );
    r.register(
        "audit_commits",
        "Audit commits (each one journal sync or durable database commit)",
        m.audit_commits.clone(),
    );
    r.register(
        "audit_failed_commits",
        "Audit commits that failed; every request in them was answered with an error",
        m.audit_failed_commits.clone(),
    );
    Metrics { registry, ..m }
});

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// Everything, in the OpenMetrics text format. `idle` (idle instances per loaded module) and
/// `pending` (held commands) are read at scrape time.
pub fn render(idle: impl IntoIterator<Item = (String, usize)>, pending: usize) -> String {
    // One scrape at a time: the scrape-time gauges are cleared and set, then encoded.
    static SCRAPE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = SCRAPE.lock().unwrap_or_else(|p| p.into_inner());
    let m = &*METRICS;
    m.approvals_pending
        .set(i64::try_from(pending).unwrap_or(i64::MAX));
    m.instances_idle.clear();
    for (policy, n) in idle {
        m.instances_idle
            .get_or_create(&labels([("policy", &policy)]))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &m.registry);
    out
}

pub fn session_opened(protocol: &str, target: &str) {
    let l = labels([("protocol", protocol), ("target", target)]);
    METRICS.sessions_opened.get_or_create(&l).inc();
    METRICS.sessions_open.get_or_create(&l).inc();
}

pub fn session_closed(protocol: &str, target: &str) {
    let l = labels([("protocol", protocol), ("target", target)]);
    METRICS.sessions_open.get_or_create(&l).dec();
}

/// `reason` is a fixed word (`credential`, `unknown-target`, `not-permitted`, ...).
pub fn login_refused(protocol: &str, reason: &str) {
    let l = labels([("protocol", protocol), ("reason", reason)]);
    METRICS.logins_refused.get_or_create(&l).inc();
}

/// `listener` is the protocol; `reason` a fixed word (`gateway-cap`, `listener-cap`,
/// `address-cap`).
pub fn connection_refused(listener: &str, reason: &str) {
    let l = labels([("listener", listener), ("reason", reason)]);
    METRICS.connections_refused.get_or_create(&l).inc();
}

pub fn command(protocol: &str, target: &str, verdict: AuditVerdict, decided_by: &str) {
    let l = labels([
        ("protocol", protocol),
        ("target", target),
        ("verdict", verdict.as_str()),
        ("decided_by", decided_by),
    ]);
    METRICS.commands.get_or_create(&l).inc();
}

/// One policy call of a chain: its verdict, latency and failure.
pub fn policy_call(target: &str, r: &PolicyRef, answer: &PolicyVerdict) {
    let mode = if r.shadow { "shadow" } else { "enforce" };
    let m = &*METRICS;
    m.policy_verdicts
        .get_or_create(&labels([
            ("target", target),
            ("policy", &r.module),
            ("mode", mode),
            ("verdict", answer.verdict.name()),
        ]))
        .inc();
    m.policy_seconds
        .get_or_create(&labels([("policy", &r.module), ("mode", mode)]))
        .observe(answer.latency.as_secs_f64());
    if let Some(failure) = &answer.failure {
        m.policy_failures
            .get_or_create(&labels([
                ("policy", &r.module),
                ("mode", mode),
                ("cause", failure.cause()),
            ]))
            .inc();
    }
}

pub fn shadow_disagreement(target: &str, policy: &str) {
    let l = labels([("target", target), ("policy", policy)]);
    METRICS.shadow_disagreements.get_or_create(&l).inc();
}

pub fn masked_cells(target: &str, cells: u64) {
    let l = labels([("target", target)]);
    METRICS.masked_cells.get_or_create(&l).inc_by(cells);
}

/// `outcome`: `granted`, `denied` or `expired`.
pub fn approval_decided(outcome: &str) {
    let l = labels([("outcome", outcome)]);
    METRICS.approvals_decided.get_or_create(&l).inc();
}

pub fn audit_append(waited: Duration) {
    METRICS.audit_append_seconds.observe(waited.as_secs_f64());
}

pub fn audit_commit(batch: u64, ok: bool) {
    METRICS.audit_batch_size.observe(batch as f64);
    if ok {
        METRICS.audit_commits.inc();
    } else {
        METRICS.audit_failed_commits.inc();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_families_and_ends_with_eof() {
        session_opened("postgres", "unit-target");
        login_refused("ssh", "credential");
        let text = render([("pci-mask".to_string(), 3)], 2);
        assert!(text.contains(
            "warden_sessions_opened_total{protocol=\"postgres\",target=\"unit-target\"}"
        ));
        assert!(text.contains("warden_policy_instances_idle{policy=\"pci-mask\"} 3"));
        assert!(text.contains("# TYPE warden_audit_append_seconds histogram"));
        assert!(text.contains("warden_approvals_pending 2"));
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
