//! Rolling a policy out without fear, end to end against real servers and clients: shadow
//! policies beside the enforced chain and their switch to enforce by hot reload (statements
//! prepared, cursors declared and commands held before it included), `/metrics` scraped during
//! a pgbench run and read by Prometheus' own parser, and JSON logs. What-if replay: whatif.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateway::{
    self, Extra, GATEWAY_PASSWORD, GATEWAY_ROLE, Gateway, connect, psql, warden_code as warden,
};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

/// A target with `chain`, allowed to everyone, on the card server's `payments`.
fn target(name: &str, pg: &common::pg::PgServer, chain: &str) -> String {
    gateway::target(name, pg, "payments", chain)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_policies_are_audited_never_enforced_and_switch_on_by_reload() {
    let pg = gateway::card_server();
    let denier = r#"{ module = "allow-all" }, { module = "misbehave", config = "check:error", mode = "shadow" }"#;
    let trapper = r#"{ module = "allow-all" }, { module = "misbehave", config = "check:trap", mode = "shadow" }"#;
    let targets = format!(
        "{}{}",
        target("shadowed", &pg, denier),
        target("trapped", &pg, trapper)
    );
    let gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            policies: &["misbehave"],
            targets: &targets,
            ..Extra::default()
        },
    );
    let alice = gw.token("alice", &["agent-7"], &["agents"]);
    let auditor = gw.token("erin", &[], &["auditors"]);
    let admin = format!("http://127.0.0.1:{}", gw.admin_port);
    let shadowed = gw.conninfo("shadowed", &alice);
    // Clients see nothing of the shadow: every statement runs.
    for sql in [
        "SELECT holder FROM cards ORDER BY id LIMIT 2",
        "CREATE TEMP TABLE t (x int); INSERT INTO t VALUES (1)",
        "DROP TABLE IF EXISTS scratch_shadow",
    ] {
        let (ok, _, err) = psql(&shadowed, sql, &[]);
        assert!(ok, "{sql}: {err}");
    }
    let (ok, out, err) = psql(&gw.conninfo("trapped", &alice), "SELECT 41 + 1", &["-At"]);
    assert!(
        ok && out.trim() == "42",
        "a trapping shadow refuses nothing: {err}"
    );
    let ran = pg.statements_by(GATEWAY_ROLE);
    for sql in [
        "SELECT holder FROM cards ORDER BY id LIMIT 2",
        "DROP TABLE IF EXISTS scratch_shadow",
        "SELECT 41 + 1",
    ] {
        assert!(
            ran.iter().any(|s| s == sql),
            "{sql} reached the server: {ran:?}"
        );
    }

    // The audit has every shadow deny beside the enforced allow.
    let export = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec![
            "audit",
            "export",
            "--admin",
            admin.as_str(),
            "--type",
            "command",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = warden(&auditor, &args);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
            .collect()
    };
    let diff = export(&["--shadow-diff"]);
    assert_eq!(diff.len(), 4, "{diff:#?}");
    for event in &diff {
        assert_eq!(event["verdict"], "allow");
        assert_eq!(event["shadow_verdict"], "deny");
        let shadow: Vec<&Value> = event["policies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["shadow"] == true)
            .collect();
        assert!(!shadow.is_empty(), "{event}");
        assert!(shadow.iter().all(|p| p["policy"] == "misbehave"), "{event}");
    }
    let trapped = diff
        .iter()
        .find(|e| e["command"] == "SELECT 41 + 1")
        .unwrap();
    let trap = trapped["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["shadow"] == true)
        .unwrap();
    assert_eq!(trap["error"], "trap", "the trap is recorded: {trapped}");
    let denied = diff
        .iter()
        .find(|e| e["command"] == "DROP TABLE IF EXISTS scratch_shadow")
        .unwrap();
    assert_eq!(
        denied["shadow_reason"],
        "misbehave: misbehave: deliberate error"
    );
    // The enforcing chain of `payments` has no shadow: its commands never show in the diff.
    let (ok, _, _) = psql(&gw.conninfo("payments", &alice), "SELECT 1", &[]);
    assert!(ok);
    assert_eq!(export(&["--shadow-diff"]).len(), 4);

    // Switch the shadow to enforce: an open session is refused at its next command.
    let client = connect(&shadowed).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    let config = std::fs::read_to_string(&gw.config_path).unwrap();
    // Waits until the gateway has refused one more reload (its audited note).
    let refusals = || {
        export(&["--type", "note"])
            .iter()
            .filter(|n| n["topic"] == "config-reload")
            .filter(|n| {
                n["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("refused"))
            })
            .count()
    };
    let refused_again = |before: usize| {
        let started = Instant::now();
        while refusals() == before {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the reload was never refused"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // First a broken edit: refused, the running chains stay.
    let before = refusals();
    std::fs::write(&gw.config_path, format!("{config}\n[nonsense\n")).unwrap();
    refused_again(before);
    client
        .simple_query("SELECT 2")
        .await
        .expect("a refused reload changes nothing");
    let enforced = config.replace(
        r#"{ module = "misbehave", config = "check:error", mode = "shadow" }"#,
        r#"{ module = "misbehave", config = "check:error", mode = "enforce" }"#,
    );
    assert_ne!(enforced, config);
    std::fs::write(&gw.config_path, enforced).unwrap();
    let started = Instant::now();
    let refused = loop {
        match client.simple_query("SELECT 3").await {
            Err(e) => break e,
            Ok(_) if started.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Ok(_) => panic!("the reloaded chain never applied"),
        }
    };
    let message = refused
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("deliberate error"), "{refused:?}");
    let (ok, _, err) = psql(&shadowed, "SELECT 4", &[]);
    assert!(!ok && err.contains("deliberate error"), "{err}");
    let notes = export(&["--type", "note"]);
    let notes: Vec<&str> = notes
        .iter()
        .filter(|n| n["topic"] == "config-reload")
        .map(|n| n["message"].as_str().unwrap())
        .collect();
    assert!(notes.iter().any(|m| m.starts_with("refused")), "{notes:?}");
    assert!(
        notes
            .iter()
            .any(|m| m
                .contains("shadowed: allow-all (enforce), misbehave (enforce) config check:error")),
        "the note names each entry's config: {notes:?}"
    );
    // A module name with a typo, or a config its policy refuses, is refused whole: the running
    // chain stays (rather than a target that denies everything).
    let enforced = std::fs::read_to_string(&gw.config_path).unwrap();
    let chain = r#"{ module = "allow-all" }, { module = "misbehave", config = "check:error", mode = "enforce" }"#;
    for broken in [
        enforced.replace(chain, r#"{ module = "allow-al" }"#),
        enforced.replace(
            chain,
            r#"{ module = "sql-guard", config = { no_such_key = 1 } }"#,
        ),
    ] {
        assert_ne!(broken, enforced);
        let before = refusals();
        std::fs::write(&gw.config_path, broken).unwrap();
        refused_again(before);
        let (ok, _, err) = psql(&shadowed, "SELECT 5", &[]);
        assert!(
            !ok && err.contains("deliberate error"),
            "the running chain stays: {err}"
        );
    }
    let notes = export(&["--type", "note"]);
    let refused: Vec<&str> = notes
        .iter()
        .filter(|n| n["topic"] == "config-reload")
        .filter_map(|n| n["message"].as_str())
        .filter(|m| m.starts_with("refused"))
        .collect();
    assert!(
        refused
            .iter()
            .any(|m| m.contains("allow-al") && m.contains("not loaded")),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|m| m.contains("sql-guard") && m.contains("init")),
        "{refused:?}"
    );
    // An edit outside the chains is said to wait for a restart, not silently dropped.
    assert!(enforced.contains(r#"approval_timeout = "30s""#));
    std::fs::write(
        &gw.config_path,
        enforced.replace(r#"approval_timeout = "30s""#, r#"approval_timeout = "31s""#),
    )
    .unwrap();
    let started = Instant::now();
    while !export(&["--type", "note"]).iter().any(|n| {
        n["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("changes outside the targets' policies ([admin])"))
    }) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no restart-only note"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `/metrics` parsed by the Prometheus client library's OpenMetrics parser: `{name{labels}:
/// value}` for every sample.
fn scrape(admin_port: u16) -> std::collections::HashMap<String, f64> {
    let text = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{admin_port}/metrics")])
        .output()
        .unwrap();
    assert!(text.status.success(), "scrape failed");
    let python = common::clients::clients_dir().join("venv/bin/python");
    let parser = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new(python)
        .args(["-c", parser])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&text.stdout).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the exposition does not parse: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&text.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample(m: &std::collections::HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

#[test]
fn metrics_move_as_a_pgbench_run_says() {
    let pg = gateway::card_server();
    let init = Command::new(pg.bin().join("pgbench"))
        .args(["-i", "-q", "-s", "1"])
        .arg(pg.superuser_conn_str("payments"))
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    pg.psql_db(
        "payments",
        &format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {GATEWAY_ROLE}"),
    );
    let gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &["agent-7"], &["agents"]);
    let before = scrape(gw.admin_port);

    let run = {
        let (port, token, bin) = (gw.pg_port, token.clone(), pg.bin().join("pgbench"));
        std::thread::spawn(move || {
            Command::new(bin)
                .args([
                    "-n",
                    "-S",
                    "-T",
                    "3",
                    "-c",
                    "2",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "agent",
                    "open",
                ])
                .env("PGPASSWORD", token)
                .output()
                .unwrap()
        })
    };
    let mut open_seen = 0.0f64;
    while !run.is_finished() {
        let during = scrape(gw.admin_port);
        open_seen = open_seen.max(sample(
            &during,
            "warden_sessions_open{protocol=postgres,target=open}",
        ));
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = run.join().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let transactions: f64 = report
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.split('/').next())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(transactions > 10.0, "{report}");
    // A refused login, counted by reason.
    let (ok, _, _) = psql(&gw.conninfo("open", "not-a-token"), "SELECT 1", &[]);
    assert!(!ok);
    let after = scrape(gw.admin_port);
    let delta = |key: &str| sample(&after, key) - sample(&before, key);

    assert_eq!(open_seen, 2.0, "two pgbench clients were open at once");
    assert_eq!(
        sample(
            &after,
            "warden_sessions_open{protocol=postgres,target=open}"
        ),
        0.0
    );
    let opened = delta("warden_sessions_opened_total{protocol=postgres,target=open}");
    assert!(
        (2.0..=3.0).contains(&opened),
        "{opened} sessions (2 clients and pgbench's setup)"
    );
    let allowed = delta(
        "warden_commands_total{decided_by=allow-all,protocol=postgres,target=open,verdict=allow}",
    );
    assert!(
        allowed >= transactions,
        "{allowed} commands for {transactions} transactions"
    );
    assert!(
        allowed <= transactions + 20.0,
        "{allowed} commands for {transactions} transactions"
    );
    let calls = delta("warden_policy_call_seconds_count{mode=enforce,policy=allow-all}");
    assert_eq!(calls, allowed, "one allow-all call per command");
    assert_eq!(
        delta(
            "warden_policy_verdicts_total{mode=enforce,policy=allow-all,target=open,verdict=allow}"
        ),
        allowed
    );
    assert!(delta("warden_audit_append_seconds_count{}") >= allowed + opened * 2.0);
    assert!(delta("warden_audit_commits_total{}") >= 1.0);
    assert_eq!(
        delta("warden_logins_refused_total{protocol=postgres,reason=credential}"),
        1.0
    );
    assert!(sample(&after, "warden_policy_instances_idle{policy=allow-all}") >= 1.0);
    assert_eq!(sample(&after, "warden_approvals_pending{}"), 0.0);
    // No principal, statement or token in any series.
    let text = String::from_utf8(
        Command::new("curl")
            .args([
                "-sf",
                &format!("http://127.0.0.1:{}/metrics", gw.admin_port),
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for secret in [
        "alice",
        "agent-7",
        "pgbench_accounts",
        "not-a-token",
        &token,
        GATEWAY_PASSWORD,
    ] {
        assert!(!text.contains(secret), "{secret} in /metrics");
    }
}

#[test]
fn metrics_can_require_a_group() {
    let pg = gateway::card_server();
    let gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            admin: r#"metrics_groups = ["monitoring"]"#,
            ..Extra::default()
        },
    );
    let url = format!("http://127.0.0.1:{}/metrics", gw.admin_port);
    let code = |token: Option<&str>| {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url]);
        if let Some(t) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        String::from_utf8(cmd.output().unwrap().stdout).unwrap()
    };
    assert_eq!(code(None), "401");
    assert_eq!(code(Some(&gw.token("alice", &[], &["agents"]))), "403");
    assert_eq!(code(Some(&gw.token("prom", &[], &["monitoring"]))), "200");
}

#[test]
fn json_logs_say_who_and_what_without_secrets() {
    let pg = gateway::card_server();
    let mut gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            json_log: true,
            ..Extra::default()
        },
    );
    let token = gw.token("alice", &["agent-7"], &["agents"]);
    let conninfo = gw.conninfo("payments", &token);
    let (ok, _, _) = psql(&conninfo, "SELECT 1", &[]);
    assert!(ok);
    let (ok, _, err) = psql(&conninfo, "DROP TABLE cards", &[]);
    assert!(!ok, "{err}");
    let (ok, _, _) = psql(&gw.conninfo("payments", "eyJ.not.valid"), "SELECT 1", &[]);
    assert!(!ok);
    // Client-chosen names and token claims shaped like card numbers.
    let (ok, _, _) = psql(
        &gw.conninfo("card4111111111111111", &token),
        "SELECT 1",
        &[],
    );
    assert!(!ok);
    let pan_sub = gw.token("5500005555555559", &["6011111111111117"], &["agents"]);
    let (ok, _, err) = psql(&gw.conninfo("payments", &pan_sub), "SELECT 1", &[]);
    assert!(ok, "{err}");
    gw.stop();
    let (code, trail, err) = warden(
        "",
        &["audit", "export", "--db", gw.audit_path().to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    for pan in ["4111111111111111", "5500005555555559", "6011111111111117"] {
        assert!(!trail.contains(pan), "{pan} in the audit trail");
    }
    assert!(
        trail.contains(r#""subject":"************5559""#),
        "the claim is kept masked"
    );
    let log = std::fs::read_to_string(gw.dir().join("gateway.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    let with = |message: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["fields"]["message"] == message)
            .collect()
    };
    let started = with("session started");
    assert_eq!(started.len(), 3, "{log}");
    let f = &started[0]["fields"];
    assert_eq!(
        (
            f["subject"].as_str(),
            f["target"].as_str(),
            f["protocol"].as_str()
        ),
        (Some("alice"), Some("payments"), Some("postgres"))
    );
    assert_eq!(f["actors"], "alice > agent-7");
    assert_eq!(started[0]["level"], "INFO");
    let refused = with("command refused");
    assert_eq!(refused.len(), 1, "{log}");
    let f = &refused[0]["fields"];
    assert_eq!(
        (
            f["verdict"].as_str(),
            f["decided_by"].as_str(),
            f["kind"].as_str()
        ),
        (Some("deny"), Some("sql-guard"), Some("drop"))
    );
    assert_eq!(with("session ended").len(), 3, "{log}");
    assert!(!log.contains('\u{1b}'), "no colour codes in a log file");
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("login refused"))),
        "{log}"
    );
    for secret in [
        "DROP TABLE cards",
        &token,
        "eyJ.not.valid",
        GATEWAY_PASSWORD,
        "4111111111111111",
        "5500005555555559",
        "6011111111111117",
    ] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

/// A reload reaches what was prepared before it: a statement prepared under allow-all is
/// judged again (audited) at its next Bind and masked by the chain now in force; a portal
/// bound before the reload is refused rather than run under the old verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reaches_statements_prepared_before_it() {
    let pg = gateway::card_server();
    let targets = target("rollout", &pg, r#"{ module = "allow-all" }"#);
    let gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            targets: &targets,
            ..Extra::default()
        },
    );
    let alice = gw.token("alice", &["agent-7"], &["agents"]);
    let auditor = gw.token("erin", &[], &["auditors"]);
    let conninfo = gw.conninfo("rollout", &alice);
    let mut client = connect(&conninfo).await.unwrap();
    let pan = client
        .prepare("SELECT pan FROM cards WHERE id = $1")
        .await
        .unwrap();
    let row = client.query_one(&pan, &[&1i32]).await.unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "4111111111111111",
        "allow-all: as stored"
    );
    // Before the reload: a cursor kept across transactions, a SQL PREPARE of a transformed
    // card number, and an empty statement.
    client
        .batch_execute(
            "BEGIN; DECLARE hc CURSOR WITH HOLD FOR SELECT pan FROM cards ORDER BY id; COMMIT; \
             PREPARE rp AS SELECT reverse(pan) FROM cards WHERE id = 1",
        )
        .await
        .unwrap();
    let empty = client.prepare("").await.unwrap();
    let tx = client.transaction().await.unwrap();
    let portal = tx.bind(&pan, &[&2i32]).await.unwrap();

    let config = std::fs::read_to_string(&gw.config_path).unwrap();
    let masked = config.replace(
        r#"policies = [{ module = "allow-all" }]
allow_subjects = ["*"]
[targets.rollout.postgres]"#,
        r#"policies = [{ module = "allow-all" }, { module = "pci-mask", config = { sensitive_columns = ["cards.pan"] } }]
allow_subjects = ["*"]
[targets.rollout.postgres]"#,
    );
    assert_ne!(masked, config);
    std::fs::write(&gw.config_path, masked).unwrap();
    let started = Instant::now();
    loop {
        let (ok, out, err) = psql(&conninfo, "SELECT pan FROM cards WHERE id = 1", &["-At"]);
        assert!(ok, "{err}");
        if out.trim() == "************1111" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the reload never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The portal bound under the old chain is refused, not run under its old verdict.
    let refused = tx.query_portal(&portal, 1).await.unwrap_err();
    let db = refused.as_db_error().unwrap();
    assert_eq!(db.code().code(), "55000", "{db:?}");
    assert!(db.message().contains("policies changed"), "{db:?}");
    drop(tx);
    // The cursor declared under the old chain is not read under its old verdict.
    let refused = client.simple_query("FETCH 1 FROM hc").await.unwrap_err();
    let db = refused.as_db_error().unwrap();
    assert_eq!(db.code().code(), "55000", "{db:?}");
    // A DECLARE of the same name that the server refuses does not re-arm it, and a cursor the
    // gateway never saw declared (a function's) is not read unjudged.
    let failed = client
        .simple_query("DECLARE hc CURSOR WITH HOLD FOR SELECT 1")
        .await
        .unwrap_err();
    assert_eq!(failed.as_db_error().unwrap().code().code(), "42P03");
    for fetch in ["FETCH 1 FROM hc", "FETCH 1 FROM never_declared"] {
        let refused = client.simple_query(fetch).await.unwrap_err();
        let code = refused.as_db_error().unwrap().code().code().to_string();
        assert!(
            ["55000", "34000"].contains(&code.as_str()),
            "{fetch}: {refused:?}"
        );
    }
    assert!(
        !pg.statements_logged()
            .iter()
            .any(|s| s.starts_with("FETCH")),
        "no FETCH reached the server"
    );
    // EXECUTE of a SQL PREPARE is judged by the query it runs, under the chain now in force.
    let refused = client.simple_query("EXECUTE rp").await.unwrap_err();
    let db = refused.as_db_error().unwrap();
    assert!(db.message().contains("pci-mask"), "{db:?}");
    // A statement with nothing in it has no verdict to age.
    client.query(&empty, &[]).await.unwrap();
    // The statement prepared under the old chain is judged again and masked.
    let row = client.query_one(&pan, &[&1i32]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "************1111");
    let row = client.query_one(&pan, &[&2i32]).await.unwrap();
    assert!(
        row.get::<_, String>(0).starts_with("****"),
        "still masked on its next use"
    );
    let admin = format!("http://127.0.0.1:{}", gw.admin_port);
    let (code, out, err) = warden(
        &auditor,
        &[
            "audit", "export", "--admin", &admin, "--target", "rollout", "--type", "command",
            "--type", "note",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .collect();
    let judged: Vec<&str> = events
        .iter()
        .filter(|e| e["command"] == "SELECT pan FROM cards WHERE id = $1")
        .map(|e| e["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(
        judged,
        ["allow", "deny", "mask"],
        "prepared, portal refused, judged again: {events:#?}"
    );
}
