//! The PostgreSQL path end to end: a real PostgreSQL server started by the test, the real
//! `warden serve`, and real clients (tokio-postgres and psql) through it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateway::{
    self, Extra, GATEWAY_PASSWORD, GATEWAY_ROLE, Gateway, connect, psql, warden_as,
};
use common::pg::PgServer;
use std::time::Duration;

fn server() -> PgServer {
    gateway::card_server()
}

fn direct(pg: &PgServer) -> String {
    format!(
        "host=127.0.0.1 port={} dbname=payments user={GATEWAY_ROLE} password={GATEWAY_PASSWORD}",
        pg.port
    )
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_statements_match_a_direct_connection() {
    let pg = server();
    let gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &["agent-7"], &["agents"]);
    let through = connect(&gw.conninfo("open", &token)).await.unwrap();
    let straight = connect(&direct(&pg)).await.unwrap();
    for sql in [
        "SELECT id, name, email, customer_no FROM owners ORDER BY id",
        "SELECT count(*)::int8, sum(amount)::text FROM cards",
        "SELECT 1 AS one, NULL::text AS nothing, 'x'::varchar AS v",
    ] {
        // Extended protocol with binary results (tokio-postgres' query).
        let a = through.query(sql, &[]).await.unwrap();
        let b = straight.query(sql, &[]).await.unwrap();
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "{sql}");
        // Simple protocol with text results.
        let a = through.simple_query(sql).await.unwrap();
        let b = straight.simple_query(sql).await.unwrap();
        assert_eq!(format!("{a:?}").len(), format!("{b:?}").len(), "{sql}");
    }
    // Parameters, prepared statements reused, a transaction.
    let stmt = through
        .prepare("SELECT name FROM owners WHERE id = $1")
        .await
        .unwrap();
    for id in 1..3i32 {
        let a: Vec<String> = through
            .query(&stmt, &[&id])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let b: Vec<String> = straight
            .query("SELECT name FROM owners WHERE id = $1", &[&id])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(a, b);
    }
    through
        .batch_execute("BEGIN; UPDATE owners SET note = 'x' WHERE id = 1; ROLLBACK")
        .await
        .unwrap();

    // psql, through the gateway and direct, prints the same thing.
    let (ok, out_gw, err) = psql(
        &gw.conninfo("open", &token),
        "SELECT name, phone FROM owners ORDER BY id",
        &[],
    );
    assert!(ok, "{err}");
    let (_, out_direct, _) = psql(
        &direct(&pg),
        "SELECT name, phone FROM owners ORDER BY id",
        &[],
    );
    assert_eq!(out_gw, out_direct);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destructive_statements_are_refused_and_nothing_reaches_the_server() {
    let pg = server();
    let gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &["agent-7"], &["agents"]);
    let c = connect(&gw.conninfo("payments", &token)).await.unwrap();
    for sql in [
        "DROP TABLE cards",
        "TRUNCATE cards",
        "DELETE FROM owners",
        "UPDATE cards SET pan = NULL",
    ] {
        let e = c.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e:?}");
        let msg = e.as_db_error().unwrap().message().to_string();
        assert!(msg.contains("sql-guard"), "{msg}");
        // The connection stays usable.
        c.simple_query("SELECT 1").await.unwrap();
    }
    // Extended protocol: refused at Parse.
    let e = c.prepare("DROP TABLE cards").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    c.query("SELECT 1", &[]).await.unwrap();
    // A multi-statement message with one bad statement runs nothing.
    let e = c
        .batch_execute("INSERT INTO owners (name) VALUES ('mallory'); DROP TABLE cards")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e:?}");

    // Checked as the superuser, so the gateway role's statement log holds only what it sent.
    let n = pg.psql_db(
        "payments",
        "SELECT count(*) FROM owners WHERE name = 'mallory'",
    );
    assert_eq!(n.trim(), "0", "no part of the refused message ran");
    let n: i64 = pg
        .psql_db(
            "payments",
            "SELECT count(*) FROM cards WHERE pan IS NOT NULL",
        )
        .trim()
        .parse()
        .unwrap();
    assert!(n > 10, "cards untouched");
    let logged = pg.statements_by(GATEWAY_ROLE).join("\n");
    for bad in ["DROP TABLE", "TRUNCATE", "mallory", "DELETE FROM owners"] {
        assert!(
            !logged.contains(bad),
            "`{bad}` reached the server:\n{logged}"
        );
    }
}

/// Syntax the gateway's second parser lacks (pg_dump's and psql's `x OPERATOR(pg_catalog.=)
/// ANY (...)`) is judged from the server's own tree: the catalog query runs, and a write
/// hidden in the same syntax is still found and refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_only_the_servers_grammar_reads_are_judged_from_its_tree() {
    let pg = server();
    let gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &["agent-7"], &["agents"]);
    let c = connect(&gw.conninfo("payments", &token)).await.unwrap();
    let rows = c
        .simple_query(
            "SELECT c.relname FROM pg_catalog.pg_class c \
             LEFT JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
             WHERE c.relkind OPERATOR(pg_catalog.=) ANY (array['r', 'p']) \
             AND c.relname OPERATOR(pg_catalog.~) '^(cards)$' COLLATE pg_catalog.default",
        )
        .await
        .unwrap();
    let names: Vec<_> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["cards"]);
    let hidden = "WITH d AS (DELETE FROM owners RETURNING 1) \
                  SELECT count(*) FROM d WHERE 1 OPERATOR(pg_catalog.=) ANY (array[1])";
    let e = c.simple_query(hidden).await.unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    let msg = e.as_db_error().unwrap().message().to_string();
    assert!(msg.contains("DELETE on owners without WHERE"), "{msg}");
    let n = pg.psql_db("payments", "SELECT count(*) FROM owners");
    assert_ne!(n.trim(), "0", "owners untouched");
    assert!(
        !pg.statements_by(GATEWAY_ROLE)
            .join("\n")
            .contains("DELETE FROM owners")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_numbers_are_masked_in_every_result_path() {
    let pg = server();
    let gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &["agent-7"], &["agents"]);
    let c = connect(&gw.conninfo("payments", &token)).await.unwrap();
    let sql = "SELECT holder, pan, pan_varchar, pan_char, note, amount::text FROM cards ORDER BY id LIMIT 5";
    // Extended protocol, binary results.
    let rows = c.query(sql, &[]).await.unwrap();
    let pan: Vec<Option<String>> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(pan[0].as_deref(), Some("************1111"));
    assert_eq!(pan[1].as_deref(), Some("**** **** **** 5559"));
    assert_eq!(pan[2].as_deref(), Some("****-******-*0005"));
    let varchar: Option<String> = rows[1].get(2);
    assert_eq!(varchar.as_deref(), Some("****-****-****-5559"));
    let fixed: Option<String> = rows[0].get(3);
    assert!(fixed.unwrap().starts_with("************1111"));
    let amount: Option<String> = rows[0].get(5);
    assert_eq!(amount.as_deref(), Some("12.50"), "non-PAN values unchanged");
    // Simple protocol, text results; PAN inside longer text; NULLs and look-alikes unchanged.
    let text = c.simple_query("SELECT pan, note FROM cards WHERE holder IN ('Heidi Notes', 'Frank Lookalike', 'Grace Pending') ORDER BY id LIMIT 5").await.unwrap();
    let rows: Vec<_> = text
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((r.get(0).map(str::to_string), r.get(1).map(str::to_string)))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        rows[0].0.as_deref(),
        Some("4111111111111112"),
        "Luhn-invalid look-alike kept"
    );
    assert_eq!(rows[1].0, None, "NULL kept");
    assert!(
        rows[1].1.as_deref().unwrap().contains("+1 415 555 0100"),
        "phone kept"
    );
    assert_eq!(
        rows[2].1.as_deref(),
        Some("customer called from +1 415 555 0132 about card ************1881 on 2024-03-14")
    );
    // COPY TO STDOUT through psql.
    let (ok, out, err) = psql(
        &gw.conninfo("payments", &token),
        "COPY (SELECT pan, note FROM cards ORDER BY id LIMIT 5) TO STDOUT",
        &[],
    );
    assert!(ok, "{err}");
    assert!(out.contains("************1111"), "{out}");
    assert!(!out.contains("4111111111111111"), "{out}");
    // psql's own output.
    let (ok, out, err) = psql(
        &gw.conninfo("payments", &token),
        "SELECT pan FROM cards ORDER BY id LIMIT 3",
        &["-At"],
    );
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "************1111\n**** **** **** 5559\n****-******-*0005\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_statement_runs_after_approval_and_fails_after_denial() {
    let pg = server();
    let gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            approval_timeout: "2s",
            ..Extra::default()
        },
    );
    let token = gw.token("alice", &["agent-7"], &["agents"]);
    let approver = gw.token("bob", &[], &["approvers"]);
    let conninfo = gw.conninfo("payments", &token);
    let admin = format!("http://127.0.0.1:{}", gw.admin_port);

    let approvals = |args: &[&str], tok: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["approvals", "--admin", &admin, "--token", tok])
            .args(args)
            .output()
            .unwrap()
    };
    let pending_id = || -> String {
        for _ in 0..100 {
            let out = approvals(&["list"], &approver);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            if let Some(id) = text.split_whitespace().find(|w| w.starts_with("apr-")) {
                return id.to_string();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no pending approval appeared");
    };

    // Approve: the held SELECT (no LIMIT on a cardholder table) returns its (masked) rows.
    let held = {
        let conninfo = conninfo.clone();
        std::thread::spawn(move || {
            psql(
                &conninfo,
                "SELECT holder, pan FROM cards ORDER BY id",
                &["-At"],
            )
        })
    };
    let id = pending_id();
    // The requester (or an agent of its chain) cannot approve.
    let own = approvals(&["approve", &id, "--reason", "mine"], &token);
    assert!(!own.status.success());
    let agent = gw.token("agent-7", &[], &["approvers"]);
    assert!(
        !approvals(&["approve", &id, "--reason", "agent"], &agent)
            .status
            .success()
    );
    let ok = approvals(
        &["approve", &id, "--reason", "quarterly reconciliation"],
        &approver,
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let (ok, out, err) = held.join().unwrap();
    assert!(ok, "{err}");
    assert!(err.contains("held for approval"), "{err}");
    assert!(out.contains("Alice Example|************1111"), "{out}");

    // The extended protocol (tokio-postgres prepares, then binds and executes, pipelining the
    // rest behind the held Parse): approved, it gets its rows; the session is not dropped.
    let held = {
        let conninfo = conninfo.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let c = common::gateway::connect(&conninfo).await.unwrap();
                let rows = c
                    .query("SELECT holder, pan FROM cards ORDER BY id", &[])
                    .await
                    .map_err(|e| e.to_string())?;
                let after = c.simple_query("SELECT 1").await.map_err(|e| e.to_string());
                Ok::<_, String>((rows.len(), rows[0].get::<_, String>(1), after.is_ok()))
            })
        })
    };
    let id = pending_id();
    assert!(
        approvals(&["approve", &id, "--reason", "extended"], &approver)
            .status
            .success()
    );
    let (n, pan, after) = held.join().unwrap().unwrap();
    assert!(n > 1);
    assert_eq!(pan, "************1111");
    assert!(after, "the session goes on after the held statement");

    // Deny: an error.
    let held = {
        let conninfo = conninfo.clone();
        std::thread::spawn(move || psql(&conninfo, "SELECT holder FROM cards", &["-At"]))
    };
    let id = pending_id();
    assert!(
        approvals(&["deny", &id, "--reason", "not today"], &approver)
            .status
            .success()
    );
    let (ok, _, err) = held.join().unwrap();
    assert!(!ok);
    assert!(err.contains("denied by bob: not today"), "{err}");

    // Timeout: an error.
    let (ok, _, err) = psql(&conninfo, "SELECT holder FROM cards", &["-At"]);
    assert!(!ok);
    assert!(err.contains("timed out"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_policies_refuse_everything_and_other_targets_keep_working() {
    let pg = server();
    let targets = [
        gateway::target(
            "trapping",
            &pg,
            "payments",
            r#"{ module = "misbehave", config = "check:trap" }"#,
        ),
        gateway::target(
            "looping",
            &pg,
            "payments",
            r#"{ module = "misbehave", config = "check:loop" }"#,
        ),
        gateway::target(
            "masktrap",
            &pg,
            "payments",
            r#"{ module = "misbehave", config = "mask:trap" }"#,
        ),
    ]
    .concat();
    let gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            targets: &targets,
            policies: &["misbehave"],
            ..Extra::default()
        },
    );
    let token = gw.token("alice", &[], &[]);
    for target in ["trapping", "looping"] {
        let c = connect(&gw.conninfo(target, &token)).await.unwrap();
        for _ in 0..3 {
            let e = c.simple_query("SELECT 1").await.unwrap_err();
            assert_eq!(sqlstate(&e), "42501", "{target}");
        }
    }
    // A policy that fails while masking refuses the result instead of sending it unmasked.
    let c = connect(&gw.conninfo("masktrap", &token)).await.unwrap();
    let e = c.simple_query("SELECT pan FROM cards").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    let open = connect(&gw.conninfo("open", &token)).await.unwrap();
    open.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_changes_the_next_verdict_in_an_open_session() {
    let pg = server();
    let gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &[], &[]);
    let c = connect(&gw.conninfo("open", &token)).await.unwrap();
    c.simple_query("SELECT count(*) FROM merchants")
        .await
        .unwrap();
    // Replace allow-all with sql-guard under the same name: DROP is now refused.
    common::install("sql-guard", &gw.policy_dir(), "allow-all.wasm");
    let mut refused = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match c.simple_query("DROP TABLE IF EXISTS no_such_table").await {
            Err(e) if sqlstate(&e) == "42501" => {
                refused = true;
                break;
            }
            _ => {}
        }
    }
    assert!(refused, "the reloaded policy never took effect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_executed_statement_was_audited_first_and_no_pan_is_stored() {
    let pg = server();
    let mut gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &["agent-7"], &["agents"]);
    let c = connect(&gw.conninfo("payments", &token)).await.unwrap();
    c.simple_query("SELECT holder, pan, note FROM cards ORDER BY id LIMIT 5")
        .await
        .unwrap();
    c.query(
        "SELECT pan FROM cards WHERE pan = $1 LIMIT 1",
        &[&"4111111111111111"],
    )
    .await
    .unwrap();
    c.simple_query("UPDATE owners SET note = 'card 4111111111111111' WHERE id = 2")
        .await
        .unwrap();
    let _ = c.simple_query("DROP TABLE cards").await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.stop();

    let audit = warden::audit::AuditStore::open(gw.audit_path()).unwrap();
    let report = audit.verify().unwrap();
    assert!(report.problem.is_none(), "{report:?}");
    let mut export = Vec::new();
    audit.export(None, &mut export).unwrap();
    let export = String::from_utf8(export).unwrap();
    drop(audit);
    // Every statement the server ran for the gateway's role appears (PAN-masked) in the audit.
    let ran = pg.statements_by(GATEWAY_ROLE);
    assert!(ran.iter().any(|s| s.contains("UPDATE owners")), "{ran:?}");
    // The gateway's own statements (the privilege check at each upstream login, the failing
    // statement after a refusal) are not a client's.
    for s in ran.iter().filter(|s| !s.starts_with("/* warden: ")) {
        let key = warden::session::scrub(s);
        let key = key.split_whitespace().take(4).collect::<Vec<_>>().join(" ");
        assert!(
            export.contains(&key.replace('"', "\\\"")),
            "no audit event for `{s}`"
        );
    }
    assert!(
        export.contains("\"type\":\"masked\""),
        "masked-cell counts recorded"
    );
    for pan in [
        "4111111111111111",
        "5500 0055 5555 5559",
        "3782-822463-10005",
    ] {
        assert!(
            !gateway::file_contains(&gw.audit_path(), pan),
            "clear PAN {pan} in the audit DB"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_statements_are_stored_as_head_and_digest_and_a_full_disk_turns_sessions_away() {
    let pg = server();
    let mut gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            audit: "text_cap = 4096",
            ..Extra::default()
        },
    );
    let token = gw.token("alice", &["agent-7"], &["agents"]);
    let c = connect(&gw.conninfo("open", &token)).await.unwrap();
    // The issue's growth attack: three 1 MB statements that return nothing.
    let filler = "x".repeat(1 << 20);
    let sql = format!("SELECT '{filler}' AS f WHERE false");
    let before = std::fs::metadata(gw.audit_path()).unwrap().len();
    for _ in 0..3 {
        c.simple_query(&sql).await.unwrap();
    }
    drop(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.stop();
    let grown = std::fs::metadata(gw.audit_path())
        .unwrap()
        .len()
        .saturating_sub(before);
    let traffic = 3 * sql.len() as u64;
    assert!(
        grown * 2 <= traffic,
        "the audit grew {grown} bytes for {traffic} bytes of statements"
    );
    let audit = warden::audit::AuditStore::open(gw.audit_path()).unwrap();
    let digest = warden::audit::sha256_hex(sql.as_bytes());
    let commands: Vec<String> = audit
        .events(..)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event.kind {
            warden::audit::EventKind::Command(c) if c.command.starts_with("SELECT 'xxx") => {
                Some(c.command)
            }
            _ => None,
        })
        .collect();
    audit.close().unwrap();
    assert_eq!(commands.len(), 3);
    for command in &commands {
        assert!(command.len() < 4096 + 200, "{}", command.len());
        assert!(command.starts_with("SELECT 'xxx"), "{}", &command[..40]);
        assert!(
            command.contains(&format!("{} bytes in all,", sql.len()))
                && command.contains(&format!("sha256 {digest}]")),
            "{}",
            &command[2000..2300]
        );
        assert!(
            command.ends_with("xxx' AS f WHERE false"),
            "the tail is kept"
        );
    }

    // With less free space than min_free, a new session is refused with a clear error and
    // the gateway stays up.
    let mut gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            audit: "min_free = \"1000000GiB\"",
            ..Extra::default()
        },
    );
    let token = gw.token("alice", &["agent-7"], &["agents"]);
    let err = connect(&gw.conninfo("open", &token)).await.unwrap_err();
    let message = err
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("disk is nearly full"), "{err:?}");
    let (ok, _, stderr) = psql(&gw.conninfo("open", &token), "SELECT 1", &[]);
    assert!(!ok && stderr.contains("disk is nearly full"), "{stderr}");
    gw.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_read_a_running_gateway_and_the_report_lists_what_happened() {
    let pg = server();
    let keys = tempfile::tempdir().unwrap();
    let (key, public, checkpoints) = (
        keys.path().join("k.pem"),
        keys.path().join("k.pub.pem"),
        keys.path().join("cp.jsonl"),
    );
    warden::audit::checkpoint::generate_key(&key, &public).unwrap();
    let audit = format!(
        "[audit.checkpoints]\nkey = \"{}\"\nfile = \"{}\"\ninterval = \"1s\"\n",
        key.display(),
        checkpoints.display()
    );
    let mut gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            audit: &audit,
            ..Extra::default()
        },
    );
    let token = gw.token("alice", &["planner", "agent-7"], &["agents"]);
    let c = connect(&gw.conninfo("payments", &token)).await.unwrap();
    c.simple_query("SELECT holder, pan FROM cards ORDER BY id LIMIT 3")
        .await
        .unwrap();
    let denied = c.simple_query("DROP TABLE cards").await.unwrap_err();
    assert!(denied.as_db_error().is_some(), "{denied:?}");
    drop(c);
    // A login refused: a token for nobody the targets allow... and a malformed one.
    assert!(
        connect(&gw.conninfo("payments", "not-a-token"))
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let admin = format!("http://127.0.0.1:{}", gw.admin_port);
    let auditor = gw.token("dora", &[], &["auditors"]);
    // Someone outside [admin] auditor_groups is refused.
    let agent = gw.token("mallory", &[], &["agents"]);
    let (ok, _, err) = warden_as(&agent, &["sessions", "--admin", &admin]);
    assert!(!ok && err.contains("may not read the audit trail"), "{err}");

    // Live, while the gateway holds the file.
    let (ok, listing, err) = warden_as(&auditor, &["sessions", "--admin", &admin]);
    assert!(ok, "{err}");
    assert!(listing.contains("alice > planner > agent-7"), "{listing}");
    let (_, json, _) = warden_as(&auditor, &["sessions", "--admin", &admin, "--json"]);
    let id = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|s| s["target"] == "payments")
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .unwrap();
    let (ok, replay, err) = warden_as(&auditor, &["replay", &id, "--admin", &admin]);
    assert!(ok, "{err}");
    assert!(replay.contains("DROP TABLE cards"), "{replay}");
    assert!(!replay.contains("4111111111111111"), "{replay}");
    let (ok, verify, err) = warden_as(&auditor, &["audit", "verify", "--admin", &admin]);
    assert!(ok && verify.starts_with("audit chain OK"), "{verify}{err}");
    // With the signed checkpoints, checked on the auditor's side against the whole export
    // (the first is signed within the interval, 1 s here, of the first events).
    for _ in 0..100 {
        if std::fs::metadata(&checkpoints).is_ok_and(|m| m.len() > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, verify, err) = warden_as(
        &auditor,
        &[
            "audit",
            "verify",
            "--admin",
            &admin,
            "--checkpoints",
            checkpoints.to_str().unwrap(),
            "--pubkey",
            public.to_str().unwrap(),
        ],
    );
    assert!(ok && verify.contains("\ncheckpoints OK"), "{verify}{err}");
    let (ok, denied, _) = warden_as(
        &auditor,
        &[
            "audit",
            "export",
            "--admin",
            &admin,
            "--verdict",
            "deny",
            "--actor",
            "planner",
        ],
    );
    assert!(ok);
    assert_eq!(denied.lines().count(), 1, "{denied}");
    assert!(denied.contains("DROP TABLE cards"), "{denied}");
    let (ok, live_report, err) = warden_as(&auditor, &["audit", "report", "--admin", &admin]);
    assert!(ok, "{err}");
    gw.stop();

    // The same report from the file, once the gateway is gone; closed cleanly, the file needs
    // no recovery, and its checkpoints hold.
    let db = gw.audit_path();
    let (ok, verify, err) = warden_as(
        "",
        &[
            "audit",
            "verify",
            "--db",
            db.to_str().unwrap(),
            "--checkpoints",
            checkpoints.to_str().unwrap(),
            "--pubkey",
            public.to_str().unwrap(),
        ],
    );
    assert!(ok && verify.contains("\ncheckpoints OK"), "{verify}{err}");
    assert!(!err.contains("needs recovery"), "{err}");
    let (ok, report, err) = warden_as("", &["audit", "report", "--db", db.to_str().unwrap()]);
    assert!(ok, "{err}");
    for report in [&live_report, &report] {
        assert!(report.contains("The hash chain verifies"), "{report}");
        assert!(
            report.contains("| alice | alice > planner > agent-7 | 1 | payments |"),
            "{report}"
        );
        assert!(report.contains("`DROP TABLE cards`"), "{report}");
        // pci-mask masked the pan column of the SELECT.
        assert!(
            report.lines().any(|l| l.starts_with("| pci-mask | pan |")),
            "{report}"
        );
        assert!(report.contains("## Logins refused"), "{report}");
        assert!(report.contains("login from"), "{report}");
    }
    let (ok, json, _) = warden_as(
        "",
        &["audit", "report", "--db", db.to_str().unwrap(), "--json"],
    );
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["verification"]["ok"], true);
    assert_eq!(json["refused"][0]["verdict"], "deny");
    assert!(!json["logins_refused"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_clients_get_clear_errors_and_the_gateway_stays_up() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pg = server();
    let mut gw = Gateway::start(&pg, "payments", Extra::default());
    let addr = format!("127.0.0.1:{}", gw.pg_port);
    // Garbage, truncated and oversized messages.
    for bytes in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0, 0, 0],
        vec![0, 0, 0, 8, 0, 3, 0],
        vec![0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0],
    ] {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        let _ = s.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
    }
    // A wrong token, an expired-looking token, an unknown database.
    let e = connect(&gw.conninfo("payments", "not-a-token"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "28P01");
    let other = tempfile::tempdir().unwrap();
    std::fs::write(
        other.path().join("s"),
        "another-secret-0123456789-abcdefghijkl",
    )
    .unwrap();
    let mut id = gw.identity();
    id.hs256_secret_file = Some(other.path().join("s"));
    let forged = warden::identity::mint(&id, &warden::identity::MintRequest::new("alice")).unwrap();
    let e = connect(&gw.conninfo("payments", &forged))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "28P01");
    let token = gw.token("alice", &[], &[]);
    let e = connect(&gw.conninfo("nope", &token)).await.unwrap_err();
    assert_eq!(sqlstate(&e), "3D000");
    // Oversized query: refused, session closed, gateway alive.
    let c = connect(&gw.conninfo("open", &token)).await.unwrap();
    let huge = format!("SELECT '{}'", "x".repeat(70 << 20));
    assert!(c.simple_query(&huge).await.is_err());
    assert!(gw.alive());
    let c = connect(&gw.conninfo("open", &token)).await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
}
