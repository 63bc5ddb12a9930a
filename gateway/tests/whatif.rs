//! `warden policy whatif` end to end: recorded psql and ssh traffic from real servers judged
//! again with a candidate added or swapped in, read through the admin API and from the file;
//! the groups, principals, examples, newly masked columns and exit statuses it reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateway::{self, Extra, GATEWAY_ROLE, Gateway, psql, warden_code as warden};
use common::ssh::{SshGateway, Sshd};
use serde_json::Value;
use std::path::Path;

/// sql-guard with every rule off but `drop` (and DELETE/UPDATE without WHERE): the candidate
/// "deny DROP" of a policy repository.
const DENY_DROP: &str =
    r#"{"allow":["truncate","alter","grant","revoke","copy_file"],"code_changes":"allow"}"#;

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
