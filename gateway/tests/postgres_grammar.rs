//! The gateway reads SQL as the server does, keeps the server's state and semantics, and
//! refuses what it cannot read the server's way (issue 10). Each attack runs against a real
//! PostgreSQL through the real gateway with sql-guard in the chain; the server's own statement
//! log (`log_statement = all`) and its tables are the proof that nothing refused ran.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateway::{self, Extra, GATEWAY_ROLE, Gateway, connect};
use common::raw::{
    bind, execute, login, message, parse, pbe, query, round_trip, round_trip_within, sync,
    try_login,
};
use std::time::Duration;

/// Whether the server ran a statement containing `needle` for the gateway's role.
fn ran(pg: &common::pg::PgServer, needle: &str) -> bool {
    pg.statements_by(GATEWAY_ROLE)
        .iter()
        .any(|s| s.contains(needle))
}

fn merchants(pg: &common::pg::PgServer) -> String {
    pg.psql_db("payments", "SELECT count(*) FROM merchants")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parser_differentials_are_closed() {
    let pg = gateway::card_server();
    let gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &["agent-7"], &[]);
    let before = merchants(&pg);
    let mut s = login(gw.pg_port, "payments", &token).await;

    // COPY ... FROM STDIN; then a DROP in the same message: the server would run the DROP
    // after the COPY; the gateway splits where the server does, and sql-guard refuses it.
    let r = round_trip(
        &mut s,
        &query("COPY merchants FROM STDIN;\nDROP TABLE merchants;"),
        1,
    )
    .await;
    assert_eq!(r.errors(), ["42501"], "{r:?}");
    assert!(r.error_texts()[0].contains("DROP"), "{r:?}");

    // The function the server calls, however it is spelled.
    for spelled in [
        r#"SELECT U&"pg\005fread\005ffile"('/etc/hostname')"#,
        r#"SELECT "pg_read_file"('/etc/hostname')"#,
        r#"SELECT pg_catalog.pg_read_file('/etc/hostname')"#,
    ] {
        let r = round_trip(&mut s, &query(spelled), 1).await;
        assert_eq!(r.errors(), ["42501"], "{spelled}: {r:?}");
        assert!(
            r.error_texts()[0].contains("pg_read_file"),
            "{spelled}: {r:?}"
        );
    }

    // Lexing settings are pinned: every way of changing them is refused, and the session
    // still reads `\'` as the end of a string.
    for change in [
        "SET standard_conforming_strings = off",
        "SET SESSION standard_conforming_strings TO off",
        "SET LOCAL standard_conforming_strings = off",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
        "SELECT pg_catalog.set_config(name, 'off', false) FROM pg_settings WHERE name LIKE 'standard%'",
        "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
        "SET NAMES 'SJIS'",
        "SET client_encoding TO 'GBK'",
        "SELECT set_config('client_encoding', 'BIG5', false)",
    ] {
        let r = round_trip(&mut s, &query(change), 1).await;
        assert_eq!(r.errors(), ["42501"], "{change}: {r:?}");
        assert!(
            r.error_texts()[0].contains("pinned") || r.error_texts()[0].contains("pg_settings"),
            "{change}: {r:?}"
        );
    }
    // RESET ALL goes back to the session's start-up values, which the gateway set (sql-guard
    // holds RESET ALL for approval; the `open` target lets it through).
    let mut open = login(gw.pg_port, "open", &token).await;
    let r = round_trip(
        &mut open,
        &query("RESET ALL; SHOW standard_conforming_strings; SHOW client_encoding"),
        1,
    )
    .await;
    assert_eq!(r.rows(), [["on"], ["UTF8"]], "{r:?}");
    let r = round_trip(
        &mut s,
        &query(r"SELECT 'a\' , ' ; TRUNCATE merchants; --'"),
        1,
    )
    .await;
    assert!(r.errors().is_empty(), "{r:?}");
    assert_eq!(r.rows(), [[r"a\", " ; TRUNCATE merchants; --"]]);

    // A nested comment reads differently to a parser that does not nest them: the server's
    // reading decides (no WHERE here), so sql-guard refuses a DELETE of every row.
    let r = round_trip(
        &mut s,
        &query("DELETE FROM merchants /* /* */ WHERE id = 1 -- */\n"),
        1,
    )
    .await;
    assert_eq!(r.errors().len(), 1, "{r:?}");

    // Start-up parameters: the pins cannot be changed there either, nor `options` passed.
    for (k, v) in [
        ("standard_conforming_strings", "off"),
        ("client_encoding", "SJIS"),
        ("options", "-c log_statement=none"),
        ("options", "-c standard_conforming_strings=off"),
    ] {
        let e = try_login(gw.pg_port, "payments", &token, &[(k, v)])
            .await
            .err()
            .unwrap_or_else(|| panic!("{k}={v} was accepted"));
        assert!(e.contains(&(b'S', "FATAL".into())), "{k}={v}: {e:?}");
    }
    // A client in a C locale (psql sends SQL_ASCII) gets UTF8 and is told so.
    let mut c = try_login(
        gw.pg_port,
        "payments",
        &token,
        &[("client_encoding", "SQL_ASCII")],
    )
    .await
    .unwrap();
    let r = round_trip(&mut c, &query("SHOW client_encoding"), 1).await;
    assert_eq!(r.rows(), [["UTF8"]]);

    assert_eq!(merchants(&pg), before);
    for needle in [
        "DROP TABLE",
        "pg_read_file",
        "set_config",
        "SJIS",
        "GBK",
        "/* /* */",
    ] {
        assert!(
            !ran(&pg, needle),
            "the server ran {needle}: {:?}",
            pg.statements_by(GATEWAY_ROLE)
        );
    }
    let truncated = pg
        .statements_by(GATEWAY_ROLE)
        .iter()
        .any(|s| s.trim_start().to_uppercase().starts_with("TRUNCATE"));
    assert!(!truncated);
    // Nothing turned the server's statement log off for the gateway's sessions.
    assert!(ran(&pg, "SHOW client_encoding"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_follow_the_server_not_the_client() {
    let pg = gateway::card_server();
    let gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &["agent-7"], &[]);
    let mut s = login(gw.pg_port, "payments", &token).await;
    let clear = "4111111111111111";

    // s1 is a masked read; reusing its name for BEGIN is refused by the server (42P05), and
    // the gateway keeps s1's verdict: its rows stay masked.
    let r = round_trip(
        &mut s,
        &[
            parse("s1", "SELECT pan FROM cards WHERE id = 1 LIMIT 1"),
            sync(),
        ]
        .concat(),
        1,
    )
    .await;
    assert!(r.errors().is_empty(), "{r:?}");
    let r = round_trip(&mut s, &[parse("s1", "BEGIN"), sync()].concat(), 1).await;
    assert_eq!(r.errors(), ["42P05"], "{r:?}");
    let r = round_trip(&mut s, &[bind("", "s1"), execute(""), sync()].concat(), 1).await;
    assert_eq!(r.rows().len(), 1, "{r:?}");
    assert!(!r.rows()[0][0].contains(clear), "clear PAN: {r:?}");
    assert!(r.rows()[0][0].ends_with("1111"), "{r:?}");

    // The same through SQL PREPARE, which shares the namespace.
    let r = round_trip(
        &mut s,
        &query("PREPARE s2 AS SELECT pan FROM cards WHERE id = 1 LIMIT 1"),
        1,
    )
    .await;
    assert!(r.errors().is_empty(), "{r:?}");
    let r = round_trip(&mut s, &[parse("s2", "BEGIN"), sync()].concat(), 1).await;
    assert_eq!(r.errors(), ["42P05"], "{r:?}");
    let r = round_trip(&mut s, &[bind("", "s2"), execute(""), sync()].concat(), 1).await;
    assert!(!r.rows()[0][0].contains(clear), "clear PAN: {r:?}");
    let r = round_trip(&mut s, &query("EXECUTE s2"), 1).await;
    assert!(!r.rows()[0][0].contains(clear), "clear PAN: {r:?}");

    // EXECUTE is judged as what it runs: a prepared DELETE of every row is refused at PREPARE
    // by sql-guard; EXECUTE of a name the server does not have (or refused) is refused.
    let r = round_trip(&mut s, &query("PREPARE wipe AS DELETE FROM merchants"), 1).await;
    assert_eq!(r.errors(), ["42501"], "{r:?}");
    let r = round_trip(&mut s, &query("EXECUTE wipe"), 1).await;
    assert_eq!(r.errors(), ["26000"], "{r:?}");
    let r = round_trip(&mut s, &[bind("", "nope"), execute(""), sync()].concat(), 1).await;
    assert_eq!(r.errors(), ["26000"], "{r:?}");
    // After DEALLOCATE the name is gone for the gateway too.
    let r = round_trip(&mut s, &query("DEALLOCATE s2; EXECUTE s2"), 1).await;
    assert_eq!(r.errors(), ["26000"], "{r:?}");
    assert!(!ran(&pg, "DELETE FROM merchants"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_fails_the_transaction_as_a_server_error_would() {
    let pg = gateway::card_server();
    let gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &["agent-7"], &[]);
    let before = merchants(&pg);

    // Simple protocol: BEGIN; INSERT; refused DROP; later statements fail (25P02); COMMIT
    // answers ROLLBACK; the INSERT is not saved.
    let mut s = login(gw.pg_port, "payments", &token).await;
    let r = round_trip(&mut s, &query("BEGIN"), 1).await;
    assert_eq!(r.status(), b'T');
    let r = round_trip(
        &mut s,
        &query("INSERT INTO merchants (name) VALUES ('tx-simple')"),
        1,
    )
    .await;
    assert!(r.errors().is_empty(), "{r:?}");
    let r = round_trip(&mut s, &query("DROP TABLE merchants"), 1).await;
    assert_eq!(
        (r.errors(), r.status()),
        (vec!["42501".to_string()], b'E'),
        "{r:?}"
    );
    let r = round_trip(&mut s, &query("SELECT 1"), 1).await;
    assert_eq!(r.errors(), ["25P02"], "{r:?}");
    let r = round_trip(&mut s, &query("COMMIT"), 1).await;
    assert_eq!(
        (r.completions(), r.status()),
        (vec!["ROLLBACK".to_string()], b'I'),
        "{r:?}"
    );

    // Extended protocol, one pipeline per statement, as drivers send them.
    let r = round_trip(&mut s, &[pbe("BEGIN"), sync()].concat(), 1).await;
    assert_eq!(r.status(), b'T');
    let r = round_trip(
        &mut s,
        &[
            pbe("INSERT INTO merchants (name) VALUES ('tx-extended')"),
            sync(),
        ]
        .concat(),
        1,
    )
    .await;
    assert!(r.errors().is_empty(), "{r:?}");
    let r = round_trip(&mut s, &[pbe("DROP TABLE merchants"), sync()].concat(), 1).await;
    assert_eq!(
        (r.errors(), r.status()),
        (vec!["42501".to_string()], b'E'),
        "{r:?}"
    );
    let r = round_trip(&mut s, &[pbe("SELECT 1"), sync()].concat(), 1).await;
    assert_eq!(r.errors(), ["25P02"], "{r:?}");
    let r = round_trip(&mut s, &[pbe("COMMIT"), sync()].concat(), 1).await;
    assert_eq!(
        (r.completions(), r.status()),
        (vec!["ROLLBACK".to_string()], b'I'),
        "{r:?}"
    );

    // A driver sees the same (tokio-postgres, extended protocol).
    let c = connect(&gw.conninfo("payments", &token)).await.unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    c.execute("INSERT INTO merchants (name) VALUES ('tx-driver')", &[])
        .await
        .unwrap();
    let e = c.execute("DROP TABLE merchants", &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e}");
    let e = c.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("25P02"), "{e}");
    c.batch_execute("ROLLBACK").await.unwrap();

    // Outside a transaction a refusal changes nothing: the session goes on in autocommit.
    let r = round_trip(&mut s, &query("DROP TABLE merchants"), 1).await;
    assert_eq!(
        (r.errors(), r.status()),
        (vec!["42501".to_string()], b'I'),
        "{r:?}"
    );
    let r = round_trip(&mut s, &query("SELECT 1"), 1).await;
    assert!(r.errors().is_empty(), "{r:?}");
    assert_eq!(merchants(&pg), before);
}

/// pgx's CopyFrom sends its COPY data right behind the COPY statement, before the server's
/// CopyInResponse: the data is kept in order and the COPY completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_data_sent_before_copy_in_response_is_forwarded() {
    let pg = gateway::card_server();
    let gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &["agent-7"], &[]);
    let mut s = login(gw.pg_port, "payments", &token).await;
    let rows = "pipelined-1\tOslo\npipelined-2\tBergen\n";
    let pipelined = [
        query("COPY merchants (name, city) FROM STDIN"),
        message(b'd', rows.as_bytes()),
        message(b'c', b""),
    ]
    .concat();
    let r = round_trip(&mut s, &pipelined, 1).await;
    assert_eq!(r.completions(), ["COPY 2"], "{r:?}");
    // The extended protocol too (pgx v5 sends it this way).
    let pipelined = [
        pbe("COPY merchants (name, city) FROM STDIN"),
        message(b'd', b"pipelined-3\tTromso\n"),
        message(b'c', b""),
        sync(),
    ]
    .concat();
    let r = round_trip(&mut s, &pipelined, 1).await;
    assert_eq!(r.completions(), ["COPY 1"], "{r:?}");
    let n = pg.psql_db(
        "payments",
        "SELECT count(*) FROM merchants WHERE name LIKE 'pipelined-%'",
    );
    assert_eq!(n.trim(), "3");
    // Data for a COPY that was refused is not forwarded (and does not hang the session).
    let refused = [
        query("COPY merchants FROM PROGRAM 'id'"),
        message(b'd', b"x\n"),
        message(b'c', b""),
        query("SELECT 1"),
    ]
    .concat();
    let r = round_trip(&mut s, &refused, 2).await;
    assert_eq!(r.errors(), ["42501"], "{r:?}");
    assert_eq!(r.rows(), [["1"]]);
}

/// The server ignores a Sync sent while it reads COPY data; the gateway must not expect an
/// answer to it, or every later answer is matched to the wrong request (masking and verdicts
/// with it). And after a refusal, nothing queued behind a Flush reaches the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_copy_and_flush_keep_requests_and_answers_in_step() {
    let pg = gateway::card_server();
    let gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &["agent-7"], &[]);
    let mut s = login(gw.pg_port, "payments", &token).await;
    let copy = [
        pbe("COPY merchants (name) FROM STDIN"),
        sync(),
        message(b'd', b"phantom\n"),
        message(b'c', b""),
        sync(),
    ]
    .concat();
    let r = round_trip(&mut s, &copy, 1).await;
    assert_eq!(r.completions(), ["COPY 1"], "{r:?}");
    for _ in 0..2 {
        let r = round_trip(
            &mut s,
            &query("SELECT pan FROM cards WHERE id = 1 LIMIT 1"),
            1,
        )
        .await;
        assert_eq!(r.rows().len(), 1, "{r:?}");
        assert!(
            !r.rows()[0][0].contains("4111111111111111"),
            "clear PAN after COPY: {r:?}"
        );
    }

    let burst = [
        pbe("SELECT 1"),
        message(b'H', b""),
        pbe("SELECT id, pan FROM cards WHERE id = 2 LIMIT 1"),
        parse("", "DROP TABLE merchants"),
        sync(),
    ]
    .concat();
    let r = round_trip(&mut s, &burst, 1).await;
    assert_eq!(r.errors(), ["42501"], "only the refusal: {r:?}");
    assert!(
        !r.rows().iter().flatten().any(|c| c.contains("5500")),
        "{r:?}"
    );
    assert!(
        !ran(&pg, "WHERE id = 2 LIMIT 1"),
        "a statement queued behind the Flush ran"
    );
    let r = round_trip(&mut s, &query("SELECT 1"), 1).await;
    assert_eq!(r.rows(), [["1"]]);

    // 40,000 ANDs: the server's grammar flattens them; the second parser is not asked (its
    // tree would overflow the stack), and the server's tree describes the statement. The
    // gateway answers and goes on.
    let chain = format!(
        "SELECT 1 FROM merchants WHERE {}",
        vec!["id > 0"; 40_000].join(" AND ")
    );
    let mut open = login(gw.pg_port, "open", &token).await;
    // The server plans 40,000 quals slowly; a debug gateway reads them in seconds too.
    let long = Duration::from_secs(90);
    let r = round_trip_within(&mut open, &query(&chain), 1, long).await;
    assert!(r.errors().is_empty(), "{:?}", r.error_texts());
    let r = round_trip_within(&mut s, &query(&chain), 1, long).await;
    assert!(
        r.errors().is_empty(),
        "sql-guard judges it from the server's tree: {:?}",
        r.error_texts()
    );
    let r = round_trip(&mut open, &query("SELECT 2"), 1).await;
    assert_eq!(r.rows(), [["2"]]);
}

/// A 1 MiB message of statements is read in one pass (the old splitter was quadratic: 20,000
/// statements on one line took a minute and stalled other sessions), and another session is
/// served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_statement_list_is_judged_and_other_sessions_go_on() {
    let pg = gateway::card_server();
    let gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &["agent-7"], &[]);
    let mut big = login(gw.pg_port, "open", &token).await;
    let mut other = login(gw.pg_port, "open", &token).await;
    let text = "select 1;".repeat((1 << 20) / 9);
    let long = tokio::spawn(async move {
        let r = round_trip_within(&mut big, &query(&text), 1, Duration::from_secs(300)).await;
        (r.errors(), r.completions().len())
    });
    for i in 0..20 {
        let r = round_trip(&mut other, &query(&format!("SELECT {i}")), 1).await;
        assert_eq!(r.rows(), [[i.to_string()]]);
    }
    let (errors, completed) = tokio::time::timeout(Duration::from_secs(120), long)
        .await
        .unwrap()
        .unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(completed, (1 << 20) / 9);
}
