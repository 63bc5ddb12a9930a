//! Malformed extended-protocol messages through the real gateway: each one, on its own raw
//! connection, gets a FATAL 08P01 ErrorResponse (not a silent close), its session's end is
//! audited, and the gateway goes on serving a normal client. Real server, real gateway.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateway::{self, Extra, Gateway, connect};
use common::raw::{fields, login, message, pbe, read_message, sync};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// What each case sends (tag, body) and what the audited end reason must say.
struct Case {
    what: &'static str,
    tag: u8,
    body: Vec<u8>,
    reason: &'static str,
}

fn cases() -> Vec<Case> {
    let case = |what, tag, body: &[u8], reason| Case {
        what,
        tag,
        body: body.to_vec(),
        reason,
    };
    // Bind bodies: portal and statement names (empty), format codes, parameter count, values.
    let mut huge_length = vec![0, 0, 0, 0, 0, 1];
    huge_length.extend_from_slice(&i32::MAX.to_be_bytes());
    huge_length.extend_from_slice(b"abc\0\0");
    vec![
        case(
            "Bind announcing 30000 parameters",
            b'B',
            &[0, 0, 0, 0, 0x75, 0x30, 0, 0, 0, 1, b'x', 0, 0, 0],
            "malformed Bind: 30000 parameter values announced, 1 present",
        ),
        case(
            "Bind with a 2 GiB parameter",
            b'B',
            &huge_length,
            "malformed Bind: parameter value 1 announces 2147483647 bytes",
        ),
        case("empty Bind", b'B', &[], "malformed Bind: portal name"),
        case(
            "Parse without a NUL after its query",
            b'P',
            b"\0SELECT 1",
            "malformed Parse: query has no NUL terminator",
        ),
        case(
            "Parse announcing 65535 parameter types",
            b'P',
            b"\0SELECT 1\0\xff\xff\0\0\0\x17",
            "malformed Parse: 65535 parameter types announced, 1 present",
        ),
        case(
            "empty Describe",
            b'D',
            &[],
            "malformed Describe: target type",
        ),
        case(
            "short Execute",
            b'E',
            &[0, 0, 0],
            "malformed Execute: row limit",
        ),
        case("empty Close", b'C', &[], "malformed Close: target type"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_a_fatal_protocol_violation_and_an_audited_end() {
    let pg = gateway::card_server();
    let mut gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &[], &[]);
    let cases = cases();
    for case in &cases {
        let mut s = login(gw.pg_port, "open", &token).await;
        s.write_all(&message(case.tag, &case.body)).await.unwrap();
        // Everything the gateway sends until it closes the connection.
        let got = tokio::time::timeout(Duration::from_secs(20), async {
            let mut got = Vec::new();
            while let Some(m) = read_message(&mut s).await {
                got.push(m);
            }
            got
        })
        .await
        .unwrap_or_else(|_| panic!("{}: the connection stayed open", case.what));
        let errors: Vec<Vec<(u8, String)>> = got
            .iter()
            .filter(|(tag, _)| *tag == b'E')
            .map(|(_, body)| fields(body))
            .collect();
        let [error] = &errors[..] else {
            panic!("{}: expected one ErrorResponse, got {got:?}", case.what);
        };
        assert!(
            error.contains(&(b'S', "FATAL".into())),
            "{}: {error:?}",
            case.what
        );
        assert!(
            error.contains(&(b'C', "08P01".into())),
            "{}: {error:?}",
            case.what
        );
        let text = error.iter().find(|(t, _)| *t == b'M').unwrap();
        assert!(text.1.contains(case.reason), "{}: {error:?}", case.what);
    }

    // The gateway is up and serves a normal client, extended protocol included.
    assert!(gw.alive());
    let c = connect(&gw.conninfo("open", &token)).await.unwrap();
    let n: i32 = c
        .query_one("SELECT $1::int + 1", &[&41])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 42);
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.stop();

    // Every malformed session ended with its reason on record, and the good one ended too.
    let audit = warden::audit::AuditStore::open(gw.audit_path()).unwrap();
    let sessions = audit.sessions().unwrap();
    assert_eq!(sessions.len(), cases.len() + 1, "{sessions:?}");
    for case in &cases {
        let ended = sessions.iter().filter(|s| {
            s.end
                .as_ref()
                .is_some_and(|e| e.reason.contains(case.reason))
        });
        assert_eq!(ended.count(), 1, "{}: {sessions:?}", case.what);
    }
    assert!(sessions.iter().all(|s| s.end.is_some()), "{sessions:?}");
}

/// A pipeline (one batch up to Sync) with a denied statement in it: the client gets the
/// refusal and ReadyForQuery at once, in order, nothing of the batch runs, and the session goes
/// on. (It used to hang until the client sent another message.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pipeline_is_answered_at_once_and_nothing_of_it_runs() {
    let pg = gateway::card_server();
    let gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &["agent-7"], &[]);
    let mut s = login(gw.pg_port, "payments", &token).await;
    let batch = [
        pbe("INSERT INTO merchants (name) VALUES ('pipelined')"),
        pbe("DROP TABLE cards"),
        sync(),
    ]
    .concat();
    s.write_all(&batch).await.unwrap();
    let mut seen = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some((tag, body)) = read_message(&mut s).await {
            seen.push((tag, fields(&body)));
            if tag == b'Z' {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        answered,
        Ok(true),
        "answered without another message: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(t, f)| *t == b'E' && f.contains(&(b'C', "42501".to_string()))),
        "{seen:?}"
    );
    // The session goes on, and the statement refused with it never ran.
    let q = "SELECT count(*) FROM merchants WHERE name = 'pipelined'\0";
    s.write_all(&message(b'Q', q.as_bytes())).await.unwrap();
    let mut count = None;
    while let Some((tag, body)) = read_message(&mut s).await {
        if tag == b'D' {
            count = Some(String::from_utf8_lossy(&body[6..]).into_owned());
        }
        if tag == b'Z' {
            break;
        }
    }
    assert_eq!(count.as_deref(), Some("0"));
    assert!(
        !pg.statements_logged()
            .iter()
            .any(|l| l.contains("pipelined')"))
    );
}

/// Deeply nested SQL (scalar subqueries, function calls) is answered — run, or refused with an
/// error — and never takes the gateway down: an unoptimised build used to overflow a runtime
/// thread's stack reading fifteen nested subqueries, which aborted the whole process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_sql_never_takes_the_gateway_down() {
    let pg = gateway::card_server();
    let gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &["agent-7"], &["agents"]);
    let nested =
        |n: usize, inner: &str| format!("SELECT {}{inner}{}", "(SELECT ".repeat(n), ")".repeat(n));
    for sql in [
        nested(15, "id FROM owners LIMIT 1"),
        nested(40, "id FROM owners LIMIT 1"),
        nested(200, "1"),
        format!("SELECT {}1{}", "abs(".repeat(60), ")".repeat(60)),
        format!("SELECT {}1{}", "abs(".repeat(2000), ")".repeat(2000)),
    ] {
        let c = connect(&gw.conninfo("payments", &token)).await.unwrap();
        // Either answer is fine; the connection and the gateway must live.
        let _ = c.simple_query(&sql).await;
        c.simple_query("SELECT 1").await.unwrap();
    }
    let c = connect(&gw.conninfo("payments", &token)).await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
}
