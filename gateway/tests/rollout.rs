//! Rolling a policy out without fear, end to end against real servers and clients: what-if
//! replay of recorded psql and ssh traffic (`warden policy whatif`, from the file and through
//! the admin API), shadow policies beside the enforced chain and their switch to enforce by
//! hot reload, `/metrics` scraped during a pgbench run and read by Prometheus' own parser, and
//! JSON logs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateway::{self, Extra, GATEWAY_PASSWORD, GATEWAY_ROLE, Gateway, connect, psql};
use common::ssh::{SshGateway, Sshd};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// sql-guard with every rule off but `drop` (and DELETE/UPDATE without WHERE): the candidate
/// "deny DROP" of a policy repository.
const DENY_DROP: &str =
    r#"{"allow":["truncate","alter","grant","revoke","copy_file"],"code_changes":"allow"}"#;

/// `warden ARGS` with `WARDEN_TOKEN`: (exit code, stdout, stderr).
fn warden(token: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .env("WARDEN_TOKEN", token)
        .env_remove("WARDEN_ADMIN")
        .env_remove("WARDEN_ADMIN_CA")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn whatif(
    token: &str,
    config: &Path,
    target: &str,
    module: &Path,
    rest: &[&str],
) -> (i32, Value, String) {
    let mut args = vec![
        "policy",
        "whatif",
        "--config",
        config.to_str().unwrap(),
        "--target",
        target,
        "--module",
        module.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(rest);
    let (code, out, err) = warden(token, &args);
    let report = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, report, err)
}

fn changes(report: &Value) -> Vec<(String, String, String, u64)> {
    report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["from"].as_str().unwrap().to_string(),
                c["to"].as_str().unwrap().to_string(),
                c["policy"].as_str().unwrap().to_string(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn whatif_shows_what_a_candidate_would_change_on_recorded_psql_traffic() {
    let pg = gateway::card_server();
    let mut gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            policies: &["misbehave"],
            ..Extra::default()
        },
    );
    let alice = gw.token("alice", &["agent-7"], &["agents"]);
    let bob = gw.token("bob", &[], &["agents"]);
    let auditor = gw.token("erin", &[], &["auditors"]);
    let open = gw.conninfo("open", &alice);
    let (ok, holders, err) = psql(
        &open,
        "SELECT holder, amount FROM cards ORDER BY id",
        &["-At"],
    );
    assert!(ok, "{err}");
    let rows = holders.lines().count() as u64;
    assert!(rows > 3);
    for (conninfo, sql) in [
        (&open, "DROP TABLE IF EXISTS scratch_a"),
        (
            &gw.conninfo("open", &bob),
            "DROP TABLE IF EXISTS scratch_b; SELECT 1",
        ),
        (&open, "SELECT count(*) FROM merchants"),
    ] {
        let (ok, _, err) = psql(conninfo, sql, &[]);
        assert!(ok, "{sql}: {err}");
    }
    // A DROP padded past the store's text cap (16 KiB): kept as head and tail only.
    let carol = gw.token("carol", &[], &["agents"]);
    let pad = format!("/*{}*/", "x".repeat(17_000));
    let padded = format!("DROP TABLE IF EXISTS scratch_c {pad}");
    let (ok, _, err) = psql(&gw.conninfo("open", &carol), &padded, &[]);
    assert!(ok, "{err}");
    // Another target's traffic is not replayed.
    let (ok, _, _) = psql(&gw.conninfo("payments", &alice), "DROP TABLE cards", &[]);
    assert!(!ok);
    let drops = pg
        .statements_by(GATEWAY_ROLE)
        .iter()
        .filter(|s| s.starts_with("DROP TABLE IF EXISTS scratch"))
        .count();
    assert_eq!(drops, 3, "the recorded DROPs ran on the server");

    let config = gw.config_path.clone();
    let guard = common::policy_wasm("sql-guard");
    let admin = format!("http://127.0.0.1:{}", gw.admin_port);
    // Through the admin API, while the gateway runs.
    let (code, live, err) = whatif(
        &auditor,
        &config,
        "open",
        &guard,
        &["--module-config", DENY_DROP, "--admin", &admin],
    );
    assert_eq!(code, 1, "a newly refused command fails the run: {err}");
    assert_eq!(
        changes(&live),
        vec![(
            "allow".into(),
            "deny".into(),
            "sql-guard@candidate".into(),
            2
        )]
    );
    assert_eq!(live["newly_refused"], 2);
    assert_eq!(live["commands"], 4);
    assert_eq!(live["sessions"], 4);
    assert_eq!(
        live["skipped"]["capped"], 1,
        "the padded DROP could not be judged again"
    );
    // Alone, it cannot pass a gate: exit 3, the answer does not cover it.
    let (code, padded_only, err) = whatif(
        &auditor,
        &config,
        "open",
        &guard,
        &[
            "--module-config",
            DENY_DROP,
            "--admin",
            &admin,
            "--actor",
            "carol",
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert_eq!(padded_only["commands"], 0);
    let change = &live["changes"][0];
    let examples: Vec<&str> = change["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["command"].as_str().unwrap())
        .collect();
    assert_eq!(
        examples,
        [
            "DROP TABLE IF EXISTS scratch_a",
            "DROP TABLE IF EXISTS scratch_b; SELECT 1"
        ]
    );
    let reasons: Vec<&str> = change["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "one per table: {reasons:?}");
    assert!(
        reasons.iter().all(|r| r.starts_with("DROP on scratch_")),
        "{reasons:?}"
    );
    let who: Vec<(&str, &str)> = change["principals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["subject"].as_str().unwrap(), p["chain"].as_str().unwrap()))
        .collect();
    assert!(who.contains(&("alice", "alice > agent-7")), "{who:?}");
    assert!(who.contains(&("bob", "bob")), "{who:?}");
    // Without an auditor's token the gateway refuses to hand over the trail.
    let (code, _, err) = warden(
        &bob,
        &[
            "policy",
            "whatif",
            "--config",
            config.to_str().unwrap(),
            "--target",
            "open",
            "--module",
            guard.to_str().unwrap(),
            "--admin",
            &admin,
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("403"), "{err}");

    // A masking policy swapped in for allow-all: the recorded rows say which columns it would
    // newly mask.
    let misbehave = common::policy_wasm("misbehave");
    let (code, masked, err) = whatif(
        &auditor,
        &config,
        "open",
        &misbehave,
        &[
            "--replace",
            "allow-all",
            "--module-config",
            "mask:redact=holder",
            "--admin",
            &admin,
        ],
    );
    assert_eq!(
        code, 3,
        "masking refuses nothing; the padded DROP is not covered: {err}"
    );
    assert_eq!(
        changes(&masked),
        vec![(
            "allow".into(),
            "mask".into(),
            "allow-all@candidate".into(),
            4
        )]
    );
    let columns = masked["newly_masked"].as_array().unwrap();
    assert_eq!(columns.len(), 1, "{columns:?}");
    assert_eq!(columns[0]["column"], "holder");
    assert_eq!(columns[0]["cells"].as_u64(), Some(rows));
    assert_eq!(columns[0]["commands"], 1);
    assert_eq!(columns[0]["rules"][0], "redact");

    // The same answers from the database file once the gateway has stopped.
    gw.stop();
    let db = gw.audit_path();
    let db = db.to_str().unwrap();
    let (code, offline, err) = whatif(
        "",
        &config,
        "open",
        &guard,
        &["--module-config", DENY_DROP, "--db", db],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(offline["changes"], live["changes"]);
    let (code, offline, _) = whatif(
        "",
        &config,
        "open",
        &misbehave,
        &[
            "--replace",
            "allow-all",
            "--module-config",
            "mask:redact=holder",
            "--db",
            db,
        ],
    );
    assert_eq!(code, 3);
    assert_eq!(offline["newly_masked"], masked["newly_masked"]);
    // Time bounds select the traffic: nothing before the epoch's first day.
    let (code, none, _) = whatif(
        "",
        &config,
        "open",
        &guard,
        &[
            "--module-config",
            DENY_DROP,
            "--db",
            db,
            "--to",
            "1971-01-01",
        ],
    );
    assert_eq!((code, none["commands"].as_u64()), (0, Some(0)));
    // For people: grouped, with the rule and the examples.
    let (code, text, err) = warden(
        "",
        &[
            "policy",
            "whatif",
            "--config",
            config.to_str().unwrap(),
            "--target",
            "open",
            "--module",
            guard.to_str().unwrap(),
            "--module-config",
            DENY_DROP,
            "--db",
            db,
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        text.contains("     2 allow → deny  sql-guard@candidate\n"),
        "{text}"
    );
    assert!(
        text.contains("1× DROP on scratch_a is not allowed"),
        "{text}"
    );
    assert!(text.contains("DROP TABLE IF EXISTS scratch_a"), "{text}");
    assert!(
        text.contains("2 commands the current chain lets through would be refused or held"),
        "{text}"
    );
    // A candidate in place of a policy the chain does not have is an error, not a silent run.
    let (code, _, err) = warden(
        "",
        &[
            "policy",
            "whatif",
            "--config",
            config.to_str().unwrap(),
            "--target",
            "open",
            "--module",
            guard.to_str().unwrap(),
            "--replace",
            "nope",
            "--db",
            db,
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("no such policy"), "{err}");
}

#[test]
fn whatif_replays_recorded_ssh_commands() {
    let sshd = Sshd::start();
    let mut gw = SshGateway::start(&sshd, r#"{ module = "allow-all" }"#, &["allow-all"], "");
    for line in [
        "echo hello",
        "nmap -V >/dev/null 2>&1 || echo no-nmap",
        "uname -s",
    ] {
        let o = gw.ssh("web-1", &[], &[line], None);
        assert_eq!(o.status.code(), Some(0), "{line}: {o:?}");
    }
    let o = gw.ssh("web-1", &[], &["echo", "hello"], None);
    assert_eq!(o.stdout, b"hello\n", "the host ran what was recorded");
    gw.stop();
    let guard = common::policy_wasm("ssh-guard");
    let db = gw.audit_path();
    let (code, report, err) = whatif(
        "",
        &gw.config_path,
        "web-1",
        &guard,
        &[
            "--module-config",
            r#"{"deny_commands":["nmap"]}"#,
            "--db",
            db.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        changes(&report),
        vec![(
            "allow".into(),
            "deny".into(),
            "ssh-guard@candidate".into(),
            1
        )]
    );
    let example = &report["changes"][0]["examples"][0]["command"];
    assert_eq!(example, "nmap -V >/dev/null 2>&1 || echo no-nmap");
    assert_eq!(
        report["changes"][0]["principals"][0]["chain"],
        "alice > agent-7"
    );
    assert_eq!(report["skipped"]["unreadable"], 0);
}

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
