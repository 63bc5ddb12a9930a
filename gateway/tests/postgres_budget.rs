//! Budgets judge a statement by its effect: rows the server counts as written, by the statement,
//! by a function it calls and by a trigger it sets off; rows a result returns. Real PostgreSQL,
//! real gateway, sql-guard's `write_budget` / `result_budget`; the server's tables are the proof
//! that what was refused was rolled back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateway::{self, Extra, GATEWAY_ROLE, Gateway, connect, target};
use common::raw::{
    bind, describe_statement, execute, flush, flushed, login, parse, pbe, query, round_trip, sync,
};

fn ledger(pg: &common::pg::PgServer) -> String {
    pg.psql_db("payments", "SELECT count(*) FROM ledger")
        .trim()
        .to_string()
}

/// A table of 50 rows, a function that deletes them all, and a trigger on merchants that does.
fn setup(pg: &common::pg::PgServer) {
    pg.psql_db(
        "payments",
        &format!(
            "CREATE TABLE ledger (id serial PRIMARY KEY, v int);
             INSERT INTO ledger (v) SELECT g FROM generate_series(1, 50) g;
             ALTER TABLE ledger OWNER TO {GATEWAY_ROLE};
             CREATE FUNCTION wipe_ledger() RETURNS bigint LANGUAGE sql
               AS 'WITH d AS (DELETE FROM ledger RETURNING 1) SELECT count(*) FROM d';
             ALTER FUNCTION wipe_ledger() OWNER TO {GATEWAY_ROLE};
             CREATE FUNCTION wipe_on_insert() RETURNS trigger LANGUAGE plpgsql
               AS $$BEGIN DELETE FROM ledger; RETURN NEW; END$$;
             CREATE TRIGGER wipe AFTER INSERT ON merchants FOR EACH ROW EXECUTE FUNCTION wipe_on_insert();
             CREATE VIEW v_wipe AS SELECT wipe_ledger() AS wiped;
             ALTER VIEW v_wipe OWNER TO {GATEWAY_ROLE};
             CREATE TABLE pledger (id int, v int) PARTITION BY RANGE (id);
             CREATE TABLE pledger_a PARTITION OF pledger FOR VALUES FROM (0) TO (30);
             CREATE TABLE pledger_b PARTITION OF pledger FOR VALUES FROM (30) TO (60);
             INSERT INTO pledger SELECT g, g FROM generate_series(0, 59) g;
             ALTER TABLE pledger OWNER TO {GATEWAY_ROLE};
             ALTER TABLE pledger_a OWNER TO {GATEWAY_ROLE};
             ALTER TABLE pledger_b OWNER TO {GATEWAY_ROLE};"
        ),
    );
}

/// The server set up, a gateway whose target refuses over 10 rows written per table, and a
/// connection to it as alice.
async fn budgeted() -> (common::pg::PgServer, Gateway, tokio::net::TcpStream) {
    let pg = gateway::card_server();
    setup(&pg);
    let targets = target(
        "budgeted",
        &pg,
        "payments",
        r#"{ module = "sql-guard", config = { write_budget = { per_table = 10, over = "refuse" } } }"#,
    );
    let gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            targets: &targets,
            ..Extra::default()
        },
    );
    let token = gw.token("alice", &["agent-7"], &[]);
    let s = login(gw.pg_port, "budgeted", &token).await;
    (pg, gw, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_over_budget_are_rolled_back_and_refused_whoever_does_them() {
    let (pg, gw, mut s) = budgeted().await;
    let token = gw.token("alice", &["agent-7"], &[]);
    let merchants_before = pg.psql_db("payments", "SELECT count(*) FROM merchants");

    for (what, sql) in [
        (
            "a WHERE that matches every row",
            "DELETE FROM ledger WHERE id = id",
        ),
        ("a function that deletes", "SELECT wipe_ledger()"),
        (
            "a trigger that deletes",
            "INSERT INTO merchants (name) VALUES ('trigger')",
        ),
        (
            "MERGE ... ON true",
            "MERGE INTO ledger l USING (SELECT 1) s ON true WHEN MATCHED THEN DELETE",
        ),
        (
            "a writable CTE",
            "WITH d AS (DELETE FROM ledger WHERE v > 0 RETURNING *) SELECT count(*) FROM d",
        ),
        (
            "INSERT ... ON CONFLICT DO UPDATE over every row",
            "INSERT INTO ledger (id, v) SELECT id, 0 FROM ledger ON CONFLICT (id) DO UPDATE SET v = -1",
        ),
        (
            "a view over a function that deletes",
            "SELECT * FROM v_wipe",
        ),
        (
            "a partitioned table, 30 rows in each partition",
            "DELETE FROM pledger WHERE id = id",
        ),
    ] {
        let r = round_trip(&mut s, &query(sql), 1).await;
        assert_eq!(r.errors(), ["42501"], "{what}: {r:?}");
        let text = &r.error_texts()[0];
        assert!(
            text.contains("over its budget of 10 per table") && text.contains("ledger"),
            "{what}: {text}"
        );
        assert!(
            !text.contains("pledger_"),
            "partitions count under their table: {text}"
        );
        assert!(
            r.rows().is_empty() && r.completions().is_empty(),
            "{what}: nothing but the error: {r:?}"
        );
        assert_eq!(r.status(), b'I', "{what}");
        assert_eq!(ledger(&pg), "50", "{what} was rolled back");
    }
    assert_eq!(
        pg.psql_db("payments", "SELECT count(*) FROM merchants"),
        merchants_before
    );

    // Within budget: results and commit as usual.
    let r = round_trip(&mut s, &query("DELETE FROM ledger WHERE id <= 5"), 1).await;
    assert_eq!(
        (r.errors().len(), r.completions()),
        (0, vec!["DELETE 5".to_string()]),
        "{r:?}"
    );
    assert_eq!(ledger(&pg), "45");

    // Inside the client's transaction block the refusal fails the transaction.
    round_trip(&mut s, &query("BEGIN"), 1).await;
    let r = round_trip(&mut s, &query("UPDATE ledger SET v = 0 WHERE v = v"), 1).await;
    assert_eq!(
        (r.errors(), r.status()),
        (vec!["42501".to_string()], b'E'),
        "{r:?}"
    );
    let r = round_trip(&mut s, &query("COMMIT"), 1).await;
    assert_eq!(r.completions(), ["ROLLBACK"]);
    assert_eq!(
        pg.psql_db("payments", "SELECT count(*) FROM ledger WHERE v = 0")
            .trim(),
        "0"
    );

    // The extended protocol (a driver), as one pipeline and through tokio-postgres.
    let r = round_trip(
        &mut s,
        &[pbe("DELETE FROM ledger WHERE id > 0"), sync()].concat(),
        1,
    )
    .await;
    assert_eq!(
        (r.errors(), r.status()),
        (vec!["42501".to_string()], b'I'),
        "{r:?}"
    );
    // What would end or escape the measuring is refused whole: transaction control in the
    // batch, a savepoint after the writes, COPY data, a cursor over a function that writes.
    for batch in [
        [
            pbe("DELETE FROM ledger WHERE id > 0"),
            pbe("COMMIT"),
            sync(),
        ]
        .concat(),
        [
            pbe("DELETE FROM ledger WHERE id > 0"),
            pbe("SAVEPOINT s"),
            sync(),
        ]
        .concat(),
        [
            pbe("DELETE FROM ledger WHERE id > 0"),
            pbe("COPY merchants (name) FROM STDIN"),
            common::raw::message(b'd', b"copied\n"),
            common::raw::message(b'c', b""),
            sync(),
        ]
        .concat(),
    ] {
        let r = round_trip(&mut s, &batch, 1).await;
        assert_eq!(r.errors(), ["0A000"], "{r:?}");
        assert_eq!(ledger(&pg), "45");
    }
    for cursor in [
        "DECLARE c CURSOR WITH HOLD FOR SELECT wipe_ledger()",
        "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM v_wipe",
    ] {
        let r = round_trip(&mut s, &query(cursor), 1).await;
        assert_eq!(r.errors(), ["0A000"], "{cursor}: {r:?}");
    }
    assert_eq!(ledger(&pg), "45");
    assert_eq!(
        pg.psql_db("payments", "SELECT count(*) FROM pledger")
            .trim(),
        "60"
    );
    let c = connect(&gw.conninfo("budgeted", &token)).await.unwrap();
    let e = c
        .execute("DELETE FROM ledger WHERE id > $1", &[&0i32])
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e}");
    let n = c
        .execute("DELETE FROM ledger WHERE id <= $1", &[&8i32])
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(ledger(&pg), "42");

    // The refusals are in the audit trail, as warden's.
    drop(c);
    drop(s);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut gw = gw;
    gw.stop();
    let audit = warden::audit::AuditStore::open(gw.audit_path()).unwrap();
    let mut export = Vec::new();
    audit.export(None, &mut export).unwrap();
    let export = String::from_utf8(export).unwrap();
    assert!(
        export.contains("over its budget of 10 per table"),
        "budget refusals audited"
    );
    assert!(
        export.contains("within budget: at most 10 rows written in *"),
        "budgets audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_budget_writes_wait_for_an_approver_and_results_can_be_cut() {
    let pg = gateway::card_server();
    setup(&pg);
    let mut targets = target(
        "held",
        &pg,
        "payments",
        r#"{ module = "sql-guard", config = { write_budget = { per_table = 10 } } }"#,
    );
    targets.push_str(&target(
        "capped",
        &pg,
        "payments",
        r#"{ module = "sql-guard", config = { result_budget = { rows = 3, over = "truncate" } } }"#,
    ));
    targets.push_str(&target(
        "strict",
        &pg,
        "payments",
        r#"{ module = "sql-guard", config = { result_budget = { rows = 3 } } }"#,
    ));
    let gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            targets: &targets,
            approval_timeout: "2s",
            ..Extra::default()
        },
    );
    let token = gw.token("alice", &["agent-7"], &[]);

    // Held for approval (nobody approves: it times out), then rolled back.
    let mut s = login(gw.pg_port, "held", &token).await;
    let r = round_trip(&mut s, &query("DELETE FROM ledger WHERE id = id"), 1).await;
    assert_eq!(r.errors().len(), 1, "{r:?}");
    assert!(r.error_texts()[0].contains("approval"), "{r:?}");
    assert_eq!(ledger(&pg), "50");
    assert!(
        pg.statements_by(GATEWAY_ROLE)
            .iter()
            .any(|s| s.contains("/* warden: write budget */ ROLLBACK"))
    );

    // Results: cut at 3 rows with a NOTICE (truncate), or refused at the limit.
    let mut c = login(gw.pg_port, "capped", &token).await;
    let r = round_trip(&mut c, &query("SELECT id FROM ledger ORDER BY id"), 1).await;
    assert_eq!(r.rows(), [["1"], ["2"], ["3"]], "{r:?}");
    assert_eq!(r.completions(), ["SELECT 3"], "{r:?}");
    assert!(
        r.messages.iter().any(|(t, _)| *t == b'N'),
        "a NOTICE says why: {r:?}"
    );
    let mut c = login(gw.pg_port, "strict", &token).await;
    let r = round_trip(&mut c, &query("SELECT id FROM ledger ORDER BY id"), 1).await;
    assert_eq!(
        (r.rows().len(), r.errors()),
        (3, vec!["54000".to_string()]),
        "{r:?}"
    );
    let r = round_trip(&mut c, &query("SELECT 1"), 1).await;
    assert_eq!(r.rows(), [["1"]], "the session goes on");
}

/// A driver that sends Parse and Describe with a Flush, reads the statement's description, then
/// sends Bind, Execute and Sync (asyncpg does, with its statement cache off on the unnamed
/// statement): the statement's writes are measured all the same, the gateway's readings in the
/// middle of the batch neither end its implicit transaction nor drop the unnamed statement,
/// and a batch whose flushed part the server already failed is answered, not waited on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_measured_when_the_batch_was_flushed_before_its_execute() {
    let (pg, _gw, mut s) = budgeted().await;
    let described = |sql: &str| [parse("", sql), describe_statement(""), flush()].concat();
    let run = [bind("", ""), execute(""), sync()].concat();

    // Over budget: refused, nothing deleted, the connection usable.
    let tags = flushed(&mut s, &described("DELETE FROM ledger WHERE id > 0"), 3).await;
    assert_eq!(tags, b"1tn", "ParseComplete, ParameterDescription, NoData");
    let r = round_trip(&mut s, &run, 1).await;
    assert_eq!(
        (r.errors(), r.status()),
        (vec!["42501".to_string()], b'I'),
        "{r:?}"
    );
    assert!(r.error_texts()[0].contains("over its budget"), "{r:?}");
    assert_eq!(ledger(&pg), "50");

    // Within budget: the unnamed statement is still there to bind, and the delete commits.
    let tags = flushed(&mut s, &described("DELETE FROM ledger WHERE id <= 3"), 3).await;
    assert_eq!(tags, b"1tn");
    let r = round_trip(&mut s, &run, 1).await;
    assert_eq!(
        (r.errors(), r.completions(), r.status()),
        (Vec::<String>::new(), vec!["DELETE 3".to_string()], b'I'),
        "{r:?}"
    );
    assert_eq!(ledger(&pg), "47");

    // The flushed part fails on the server: the rest of the batch, measured or not, is
    // skipped as the server would, and its Sync answered.
    let tags = flushed(
        &mut s,
        &[parse("", "SELECT * FROM no_such_table"), flush()].concat(),
        1,
    )
    .await;
    assert_eq!(tags, b"E");
    let r = round_trip(
        &mut s,
        &[
            parse("w", "DELETE FROM ledger WHERE id > 40"),
            bind("", "w"),
            execute(""),
            sync(),
        ]
        .concat(),
        1,
    )
    .await;
    assert_eq!(
        (r.errors(), r.status()),
        (Vec::<String>::new(), b'I'),
        "{r:?}"
    );
    assert_eq!(ledger(&pg), "47");
    let r = round_trip(&mut s, &query("SELECT count(*) FROM ledger"), 1).await;
    assert_eq!(r.rows(), [["47"]], "{r:?}");

    // pgjdbc opens its transaction in the batch of the first statement (BEGIN, the statement,
    // Sync): the writes are measured inside that block. Over budget: refused, and the block
    // fails as after any error in it.
    let r = round_trip(
        &mut s,
        &[pbe("BEGIN"), pbe("DELETE FROM ledger WHERE id > 0"), sync()].concat(),
        1,
    )
    .await;
    assert_eq!(
        (r.errors(), r.completions(), r.status()),
        (vec!["42501".to_string()], vec!["BEGIN".to_string()], b'E'),
        "{r:?}"
    );
    let r = round_trip(&mut s, &query("ROLLBACK"), 1).await;
    assert_eq!(r.status(), b'I', "{r:?}");
    assert_eq!(ledger(&pg), "47");
    // Within budget: the block stays open, and the client's COMMIT commits.
    let r = round_trip(
        &mut s,
        &[
            pbe("BEGIN"),
            pbe("DELETE FROM ledger WHERE id <= 5"),
            sync(),
        ]
        .concat(),
        1,
    )
    .await;
    assert_eq!(
        (r.errors(), r.completions(), r.status()),
        (
            Vec::<String>::new(),
            vec!["BEGIN".to_string(), "DELETE 2".to_string()],
            b'T'
        ),
        "{r:?}"
    );
    assert_eq!(ledger(&pg), "47", "not committed yet");
    let r = round_trip(&mut s, &query("COMMIT"), 1).await;
    assert_eq!(r.status(), b'I', "{r:?}");
    assert_eq!(ledger(&pg), "45");

    // What the attack found: a Query inside a batch under a budget took the held messages to
    // the server, which committed them unmeasured at the end of the Query (50 rows over a
    // budget of 10). Refused now, the batch dropped, up to its Sync — with the Sync in the
    // same write (that one hung), or later.
    let wipe = pbe("DELETE FROM ledger WHERE id > 0");
    let r = round_trip(
        &mut s,
        &[wipe.clone(), query("SELECT 1"), sync()].concat(),
        1,
    )
    .await;
    assert_eq!(
        (r.errors(), r.status()),
        (vec!["0A000".to_string()], b'I'),
        "{r:?}"
    );
    let tags = flushed(&mut s, &[wipe, query("/* hi */")].concat(), 1).await;
    assert_eq!(tags, b"E");
    let r = round_trip(&mut s, &sync(), 1).await;
    assert_eq!(r.status(), b'I', "{r:?}");
    assert_eq!(ledger(&pg), "45");
    // The names the gateway uses for its own readings are not the client's.
    let r = round_trip(
        &mut s,
        &[parse("warden.write-budget", "SELECT 1"), sync()].concat(),
        1,
    )
    .await;
    assert_eq!(r.errors(), ["26000"], "{r:?}");
    let r = round_trip(&mut s, &query("SELECT count(*) FROM ledger"), 1).await;
    assert_eq!(r.rows(), [["45"]], "{r:?}");

    // After the server failed the flushed part of a batch it discards everything up to the
    // Sync, a Query included, and answers nothing but the Sync: so does the gateway (it used
    // to compose a second error, or wait for the Query's answer).
    let tags = flushed(
        &mut s,
        &[
            parse("s0", "SELECT 1/0"),
            bind("", "s0"),
            execute(""),
            parse("s1", "SELECT 2"),
            flush(),
        ]
        .concat(),
        2,
    )
    .await;
    // (1/0 is folded when the statement is planned: the Bind fails.)
    assert_eq!(tags, b"1E");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = round_trip(
        &mut s,
        &[bind("", "s1"), execute(""), query("SELECT 3"), sync()].concat(),
        1,
    )
    .await;
    assert_eq!(r.messages.len(), 1, "only ReadyForQuery: {r:?}");
    let r = round_trip(&mut s, &query("SELECT 4"), 1).await;
    assert_eq!(r.rows(), [["4"]], "{r:?}");
    // The re-attack: a Query before the batch's measured Execute (no budget attached yet)
    // hung the session with its rows locked, or showed the client the gateway's own readings.
    for q in ["SELECT 1", "   "] {
        let batch = [
            parse("d", "DELETE FROM ledger WHERE id > 0"),
            bind("p", "d"),
            query(q),
            bind("p", "d"),
            execute("p"),
            sync(),
        ]
        .concat();
        let r = round_trip(&mut s, &batch, 1).await;
        assert_eq!(
            (r.errors(), r.completions(), r.status()),
            (vec!["0A000".to_string()], Vec::<String>::new(), b'I'),
            "{q:?}: {r:?}"
        );
    }
    let r = round_trip(&mut s, &query("SELECT count(*) FROM ledger"), 1).await;
    assert_eq!(r.rows(), [["45"]], "{r:?}");
}
