//! The PostgreSQL test harness (`common::pg`) against a real server with real clients
//! (tokio-postgres and psql): it starts and stops cleanly, makes SCRAM, md5 and trust logins that
//! really use those methods, rewrites pg_hba.conf, logs every statement the server ran, and the
//! quickstart's sample data and config load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::pg::{Auth, PgServer};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

async fn connect(conn: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conn, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The error of a connection attempt that must fail.
async fn connect_err(conn: &str, why: &str) -> tokio_postgres::Error {
    match connect(conn).await {
        Ok(_) => panic!("connected, but {why}"),
        Err(e) => e,
    }
}

async fn current_user(client: &Client) -> String {
    client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn starts_with_logging_on_loopback_and_answers_psql_and_tcp() {
    let pg = PgServer::start();
    assert_eq!(pg.psql("SELECT current_user"), "postgres");
    assert_eq!(pg.psql("SHOW log_statement"), "all");
    assert_eq!(pg.psql("SHOW log_connections"), "on");
    assert_eq!(pg.psql("SHOW listen_addresses"), "127.0.0.1");
    assert_eq!(pg.psql("SHOW fsync"), "off");
    assert_eq!(
        pg.psql("SHOW unix_socket_directories"),
        pg.socket_dir().display().to_string()
    );
    // The superuser over TCP needs its password.
    let client = connect(&pg.superuser_conn_str("postgres")).await.unwrap();
    assert_eq!(current_user(&client).await, "postgres");
    let err = connect_err(
        &pg.conn_str("postgres", Some("wrong"), "postgres"),
        "a wrong superuser password must fail",
    )
    .await;
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
    // psql answers multi-row output as lines.
    assert_eq!(pg.psql("SELECT g FROM generate_series(1, 3) g"), "1\n2\n3");
    assert!(
        pg.try_psql_db("postgres", "SELECT * FROM no_such_table")
            .is_err()
    );
}

#[tokio::test]
async fn scram_role_logs_in_with_scram() {
    let pg = PgServer::start();
    pg.create_role("gw_scram", "scram-pw", Auth::Scram);
    let stored = pg.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'gw_scram'");
    assert!(stored.starts_with("SCRAM-SHA-256$"), "{stored}");

    let client = connect(&pg.conn_str("gw_scram", Some("scram-pw"), "postgres"))
        .await
        .unwrap();
    assert_eq!(current_user(&client).await, "gw_scram");
    assert_eq!(pg.authenticated("gw_scram"), ["scram-sha-256"]);

    let err = connect_err(
        &pg.conn_str("gw_scram", Some("nope"), "postgres"),
        "a wrong password must fail",
    )
    .await;
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
}

#[tokio::test]
async fn md5_role_logs_in_with_md5() {
    let pg = PgServer::start();
    pg.create_role("gw_md5", "md5-pw", Auth::Md5);
    let stored = pg.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'gw_md5'");
    assert!(stored.starts_with("md5") && stored.len() == 35, "{stored}");

    let client = connect(&pg.conn_str("gw_md5", Some("md5-pw"), "postgres"))
        .await
        .unwrap();
    assert_eq!(current_user(&client).await, "gw_md5");
    // The server used the MD5 exchange, not SCRAM.
    assert_eq!(pg.authenticated("gw_md5"), ["md5"]);

    let err = connect_err(
        &pg.conn_str("gw_md5", Some("nope"), "postgres"),
        "a wrong password must fail",
    )
    .await;
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
    // Other roles still need SCRAM.
    assert_eq!(
        pg.psql("SELECT count(*) FROM pg_hba_file_rules WHERE auth_method = 'md5'"),
        "2"
    );
}

#[tokio::test]
async fn trust_role_needs_no_password() {
    let pg = PgServer::start();
    pg.create_role("gw_trust", "", Auth::Trust);
    let client = connect(&pg.conn_str("gw_trust", None, "postgres"))
        .await
        .unwrap();
    assert_eq!(current_user(&client).await, "gw_trust");
    // A trust login has no authenticated identity to log.
    assert!(pg.authenticated("gw_trust").is_empty());
    assert!(
        pg.log_text()
            .contains("connection authorized: user=gw_trust")
    );

    // A password role without its password is refused.
    pg.create_role("gw_pw", "pw", Auth::Scram);
    let err = connect_err(
        &pg.conn_str("gw_pw", None, "postgres"),
        "no password must fail",
    )
    .await;
    assert!(format!("{err:?}").contains("password"), "{err:?}");
    assert!(!pg.log_text().contains("connection authorized: user=gw_pw"));
}

#[tokio::test]
async fn statements_logged_shows_what_ran_and_nothing_else() {
    let pg = PgServer::start();
    pg.create_role("gw", "pw", Auth::Scram);
    let client = connect(&pg.conn_str("gw", Some("pw"), "postgres"))
        .await
        .unwrap();
    // Simple query protocol.
    client.simple_query("SELECT 'marker-simple'").await.unwrap();
    // Extended protocol (parse/bind/execute), with a parameter.
    let row = client
        .query_one("SELECT 'marker-extended-' || $1::text", &[&"p1"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "marker-extended-p1");
    // A statement over several lines comes back whole.
    client
        .simple_query("SELECT 1 AS a,\n       'marker-multi' AS b")
        .await
        .unwrap();
    // A failing statement still ran (and is logged).
    assert!(
        client
            .simple_query("SELECT * FROM marker_missing")
            .await
            .is_err()
    );

    let all = pg.statements_logged();
    assert!(
        all.iter().any(|s| s == "SELECT 'marker-simple'"),
        "{all:#?}"
    );
    assert!(
        all.iter()
            .any(|s| s == "SELECT 'marker-extended-' || $1::text"),
        "{all:#?}"
    );
    assert!(
        all.iter()
            .any(|s| s == "SELECT 1 AS a,\n       'marker-multi' AS b"),
        "{all:#?}"
    );
    assert!(
        all.iter().any(|s| s == "SELECT * FROM marker_missing"),
        "{all:#?}"
    );
    assert!(!all.iter().any(|s| s.contains("DROP")), "{all:#?}");

    // Per role: the harness's own psql calls are not the gateway's.
    let by_gw = pg.statements_by("gw");
    assert_eq!(by_gw.len(), 4, "{by_gw:#?}");
    assert!(by_gw.iter().all(|s| s.contains("marker")), "{by_gw:#?}");
    let log = pg.statement_log();
    let simple = log
        .iter()
        .find(|s| s.text == "SELECT 'marker-simple'")
        .unwrap();
    assert_eq!(
        (simple.user.as_str(), simple.database.as_str()),
        ("gw", "postgres")
    );
    assert!(
        pg.statements_by("postgres")
            .iter()
            .any(|s| s.contains("CREATE ROLE"))
    );
}

#[tokio::test]
async fn hba_rewrite_locks_tcp_out_but_not_the_harness() {
    let pg = PgServer::start();
    pg.hba(&["host all all 127.0.0.1/32 reject"]);
    let err = connect_err(&pg.superuser_conn_str("postgres"), "reject must refuse").await;
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{err}"
    );
    // The harness keeps its unix-socket trust line.
    assert_eq!(pg.psql("SELECT 1"), "1");

    pg.hba(&["host all all 127.0.0.1/32 scram-sha-256"]);
    let client = connect(&pg.superuser_conn_str("postgres")).await.unwrap();
    assert_eq!(current_user(&client).await, "postgres");
}

#[tokio::test]
async fn sample_cards_schema_loads_and_the_gateway_role_reads_but_cannot_drop() {
    let pg = PgServer::start();
    pg.create_role("warden", "gw-pw", Auth::Scram);
    pg.create_database("payments");
    let sql = common::workspace_root().join("examples/cards.sql");
    pg.psql_file("payments", &sql, &[("gateway_role", "warden")]);
    // It starts over when run again.
    pg.psql_file("payments", &sql, &[("gateway_role", "warden")]);

    let client = connect(&pg.conn_str("warden", Some("gw-pw"), "payments"))
        .await
        .unwrap();
    let count: i64 = client
        .query_one("SELECT count(*) FROM cards", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 20);
    let merchants: i64 = client
        .query_one("SELECT count(*) FROM merchants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(merchants, 5);
    // Formats the masking demo relies on.
    let pans: Vec<String> = client
        .query(
            "SELECT pan FROM cards WHERE pan IS NOT NULL ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for expected in [
        "4111111111111111",
        "5500 0055 5555 5559",
        "3782-822463-10005",
        "6011111111111117",
        "6011000000000000001",
        "4111111111111112",
    ] {
        assert!(
            pans.iter().any(|p| p == expected),
            "{expected} missing: {pans:?}"
        );
    }
    let nulls: i64 = client
        .query_one("SELECT count(*) FROM cards WHERE pan IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(nulls >= 1);
    // The gateway's login can write rows...
    client
        .execute("INSERT INTO merchants (name) VALUES ('Test Shop')", &[])
        .await
        .unwrap();
    // ...but owns nothing: a DROP that got past the policies would still fail.
    let Err(err) = client.simple_query("DROP TABLE cards").await else {
        panic!("warden must not own the tables");
    };
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    assert_eq!(pg.psql_db("payments", "SELECT count(*) FROM cards"), "20");
}

#[test]
fn dropping_the_server_stops_it_and_removes_its_dir() {
    let pg = PgServer::start();
    let port = pg.port;
    let dir = pg.dir.path().to_path_buf();
    let data_pid = dir.join("data").join("postmaster.pid");
    let pid = std::fs::read_to_string(&data_pid).unwrap();
    let pid = pid.lines().next().unwrap().trim().to_string();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(pg);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something still listens on {port}"
    );
    // Gone, or a zombie waiting for its reaper.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let running = state
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'));
        if !running {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "postmaster {pid} still runs: {state}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn two_servers_run_side_by_side() {
    let a = PgServer::start();
    let b = PgServer::start();
    assert_ne!(a.port, b.port);
    a.create_database("only_in_a");
    assert_eq!(
        a.psql("SELECT count(*) FROM pg_database WHERE datname = 'only_in_a'"),
        "1"
    );
    assert_eq!(
        b.psql("SELECT count(*) FROM pg_database WHERE datname = 'only_in_a'"),
        "0"
    );
}

#[test]
fn quickstart_config_loads() {
    let path = common::workspace_root().join("examples/quickstart.toml");
    let config = warden::config::Config::load(&path).unwrap();
    let payments = &config.targets["payments"];
    let modules: Vec<String> = payments.chain().iter().map(|r| r.module.clone()).collect();
    assert_eq!(modules, ["sql-guard", "cardholder-approval", "pci-mask"]);
    let approval: serde_json::Value = serde_json::from_str(&payments.chain()[1].config).unwrap();
    assert_eq!(approval["tables"][0], "cards");
    assert_eq!(approval["max_limit"], 5);
    let upstream = payments.postgres.as_ref().unwrap();
    assert_eq!(
        (upstream.database.as_str(), upstream.user.as_str()),
        ("payments", "warden")
    );
    let listener = config.postgres.as_ref().unwrap();
    assert!(listener.allow_plaintext_password);
    assert!(listener.listen.ip().is_loopback());
    assert_eq!(config.admin.approver_groups, ["approvers"]);
}
