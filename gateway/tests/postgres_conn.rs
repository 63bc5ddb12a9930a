//! PostgreSQL connection handling through the gateway: TLS to clients, every upstream login
//! method, cancel requests, the idle timeout, and what `warden sessions` / `warden replay`
//! show afterwards. Real server, real gateway, real clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateway::{self, Extra, GATEWAY_ROLE, Gateway, connect, psql};
use common::pg::{Auth, PgServer};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

fn server() -> PgServer {
    gateway::card_server()
}

#[test]
fn clients_use_tls_and_plaintext_tokens_are_refused() {
    let pg = server();
    let certs = tempfile::tempdir().unwrap();
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(certs.path().join("key.pem"))
        .arg("-out")
        .arg(certs.path().join("cert.pem"))
        .output()
        .unwrap();
    assert!(status.status.success());
    let listener = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        certs.path().join("cert.pem").display(),
        certs.path().join("key.pem").display()
    );
    let gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            listener: &listener,
            plaintext: false,
            ..Extra::default()
        },
    );
    let token = gw.token("alice", &[], &[]);
    let tls = gw
        .conninfo("open", &token)
        .replace("sslmode=disable", "sslmode=require");
    let (ok, out, err) = psql(
        &tls,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &["-At"],
    );
    assert!(ok, "{err}");
    // The gateway's own connection to this server is plain; the client's leg was TLS.
    assert_eq!(out.trim(), "f");
    let (ok, out, err) = psql(&tls, "SHOW ssl", &["-At"]);
    assert!(ok && !out.is_empty(), "{err}");
    let (ok, _, err) = psql(&gw.conninfo("open", &token), "SELECT 1", &[]);
    assert!(!ok);
    assert!(err.contains("requires TLS"), "{err}");
}

/// The admin API over HTTPS (what lets it listen beyond loopback): auditors and approvers
/// reach it with `--admin https://... --admin-ca`, curl with `--cacert`; a client that does
/// not verify the certificate against the right CA sends no token.
#[test]
fn the_admin_api_serves_https_verified_against_its_ca() {
    let pg = server();
    // A CA and a certificate it signed for 127.0.0.1; a second CA that signed nothing here.
    let (certs, others) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ca, cert, key) = ca_and_server(certs.path());
    let (other, _, _) = ca_and_server(others.path());
    let admin = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        cert.display(),
        key.display()
    );
    let gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            admin: &admin,
            ..Extra::default()
        },
    );
    let (ok, _, err) = psql(
        &gw.conninfo("open", &gw.token("alice", &[], &[])),
        "SELECT 1",
        &[],
    );
    assert!(ok, "{err}");
    let url = format!("https://127.0.0.1:{}", gw.admin_port);
    let warden = |args: &[&str], token: &str| {
        let (ok, out, err) = gateway::warden_as(token, args);
        (ok, format!("{out}{err}"))
    };
    let auditor = gw.token("erin", &[], &["auditors"]);
    let ca_arg = ca.to_str().unwrap();
    let (ok, out) = warden(
        &["sessions", "--admin", &url, "--admin-ca", ca_arg],
        &auditor,
    );
    assert!(ok, "{out}");
    assert!(out.contains("alice"), "{out}");
    let (ok, out) = warden(
        &["audit", "verify", "--admin", &url, "--admin-ca", ca_arg],
        &auditor,
    );
    assert!(ok && out.contains("audit chain OK"), "{out}");
    let approver = gw.token("carol", &[], &["approvers"]);
    let (ok, out) = warden(
        &["approvals", "--admin", &url, "--admin-ca", ca_arg, "list"],
        &approver,
    );
    assert!(ok, "{out}");
    // Not verified, or verified against the wrong CA: refused before any token is sent.
    let (ok, out) = warden(&["sessions", "--admin", &url], &auditor);
    assert!(!ok && out.contains("--admin-ca"), "{out}");
    let (ok, out) = warden(
        &[
            "sessions",
            "--admin",
            &url,
            "--admin-ca",
            other.to_str().unwrap(),
        ],
        &auditor,
    );
    assert!(!ok && out.contains("TLS"), "{out}");
    // Plain HTTP to the TLS listener gets nowhere.
    let plain = format!("http://127.0.0.1:{}", gw.admin_port);
    let (ok, _) = warden(&["sessions", "--admin", &plain], &auditor);
    assert!(!ok);
    // curl, as a SIEM or a script would.
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, body) = curl(&["--cacert", ca_arg, &format!("{url}/v1/health")]);
    assert!(ok && body.contains("ok"), "{body}");
    let (ok, _) = curl(&[
        "--cacert",
        other.to_str().unwrap(),
        &format!("{url}/v1/health"),
    ]);
    assert!(!ok);

    // Beyond loopback only with TLS: the same config listening on every address without its
    // certificate, or with half of it, does not start.
    let config = std::fs::read_to_string(&gw.config_path).unwrap();
    let admin_section = config.find("[admin]").unwrap();
    let (before, after) = config.split_at(admin_section);
    let wide = format!(
        "{before}{}",
        after.replacen("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:0\"", 1)
    );
    let cert_line = wide
        .lines()
        .find(|l| l.starts_with("tls_cert"))
        .unwrap()
        .to_owned();
    let key_line = wide
        .lines()
        .find(|l| l.starts_with("tls_key"))
        .unwrap()
        .to_owned();
    for (config, expected) in [
        (
            wide.replace(&cert_line, "").replace(&key_line, ""),
            "listen must be a loopback address unless tls_cert and",
        ),
        (
            wide.replace(&key_line, ""),
            "tls_cert and tls_key go together",
        ),
    ] {
        let path = gw.dir.path().join("wide.toml");
        std::fs::write(&path, config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["serve", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_logins_with_scram_md5_and_trust() {
    let pg = server();
    pg.create_role("gw_md5", "md5-secret", Auth::Md5);
    pg.create_role("gw_trust", "", Auth::Trust);
    pg.psql_db("payments", "GRANT SELECT ON owners TO gw_md5, gw_trust");
    let targets = [
        gateway::target_as(
            "md5",
            &pg,
            "payments",
            r#"{ module = "allow-all" }"#,
            "gw_md5",
            Some("md5-password"),
        ),
        gateway::target_as(
            "trust",
            &pg,
            "payments",
            r#"{ module = "allow-all" }"#,
            "gw_trust",
            None,
        ),
    ]
    .concat();
    let gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            targets: &targets,
            ..Extra::default()
        },
    );
    std::fs::write(gw.dir.path().join("md5-password"), "md5-secret\n").unwrap();
    let token = gw.token("alice", &[], &[]);
    for target in ["open", "md5", "trust"] {
        let c = connect(&gw.conninfo(target, &token)).await.unwrap();
        let n: i64 = c
            .query_one("SELECT count(*) FROM owners", &[])
            .await
            .unwrap()
            .get(0);
        assert!(n > 0, "{target}");
    }
    assert!(
        pg.authenticated(GATEWAY_ROLE)
            .iter()
            .any(|m| m == "scram-sha-256")
    );
    assert!(pg.authenticated("gw_md5").iter().any(|m| m == "md5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_requests_reach_the_server_through_the_gateway() {
    let pg = server();
    let gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &[], &[]);
    let c = connect(&gw.conninfo("open", &token)).await.unwrap();
    let cancel = c.cancel_token();
    let started = Instant::now();
    let sleeper = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel.cancel_query(NoTls).await.unwrap();
    let e = sleeper.await.unwrap().unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_closed() {
    let pg = server();
    let gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            listener: "idle_timeout = \"1s\"",
            ..Extra::default()
        },
    );
    let token = gw.token("alice", &[], &[]);
    let c = connect(&gw.conninfo("open", &token)).await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(c.simple_query("SELECT 1").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_sessions_with_an_audited_end() {
    let pg = server();
    let mut gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &[], &[]);
    let c = connect(&gw.conninfo("open", &token)).await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
    // A second session waits for an approver (a read of cards without LIMIT).
    let waiting = connect(&gw.conninfo("payments", &token)).await.unwrap();
    let held = tokio::spawn(async move { waiting.simple_query("SELECT holder FROM cards").await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // SIGTERM with the sessions open: the clients are told (57P01), each end is audited.
    let stopping = std::thread::spawn(move || {
        gw.stop();
        gw
    });
    let err = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Err(e) = c.simple_query("SELECT 1").await {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the session outlived the gateway");
    let gw = stopping.join().unwrap();
    let code = err.as_db_error().map(|d| d.code().code().to_string());
    assert!(
        code.as_deref() == Some("57P01") || err.is_closed(),
        "{err:?}"
    );
    let held = tokio::time::timeout(Duration::from_secs(20), held)
        .await
        .expect("the held statement outlived the gateway")
        .unwrap();
    let err = held.expect_err("a held statement ran during shutdown");
    let code = err.as_db_error().map(|d| d.code().code().to_string());
    assert!(
        code.as_deref() == Some("57P01") || err.is_closed(),
        "{err:?}"
    );
    let audit = warden::audit::AuditStore::open(gw.audit_path()).unwrap();
    let mut export = Vec::new();
    audit.export(None, &mut export).unwrap();
    let export = String::from_utf8(export).unwrap();
    assert_eq!(
        export.matches("gateway shutting down").count(),
        2,
        "both sessions' ends are audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_replay_show_what_happened() {
    let pg = server();
    let mut gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &["agent-7"], &["agents"]);
    let c = connect(&gw.conninfo("payments", &token)).await.unwrap();
    c.simple_query("SELECT holder, pan FROM cards ORDER BY id LIMIT 2")
        .await
        .unwrap();
    let _ = c.simple_query("DROP TABLE cards").await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.stop();

    let db = gw.audit_path();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["sessions", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let sessions = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{sessions}");
    assert!(sessions.contains("alice > agent-7"), "{sessions}");
    assert!(sessions.contains("payments"), "{sessions}");
    let id = sessions
        .split_whitespace()
        .find(|w| w.starts_with("ses-"))
        .unwrap()
        .to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["replay", &id, "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let replay = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{replay}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        replay.contains("payments=> SELECT holder, pan FROM cards ORDER BY id LIMIT 2"),
        "{replay}"
    );
    assert!(replay.contains("************1111"), "{replay}");
    assert!(!replay.contains("4111111111111111"), "{replay}");
    assert!(replay.contains("(2 rows)"), "{replay}");
    assert!(replay.contains("DROP"), "{replay}");
    assert!(replay.contains("ERROR:"), "{replay}");
}

#[test]
fn copy_from_stdin_loads_through_the_gateway() {
    let pg = server();
    let gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &[], &[]);
    let mut out = Command::new("psql")
        .arg(gw.conninfo("payments", &token))
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "COPY merchants (name, city) FROM STDIN",
        ])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(b"Copy Shop\tBerlin\nSecond Shop\tParis\n\\.\n");
    let out = out.take().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        pg.psql_db(
            "payments",
            "SELECT count(*) FROM merchants WHERE name LIKE '% Shop'"
        )
        .trim(),
        "2"
    );
}

/// Spawn with piped stdin, write it all, wait for the output.
trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> Option<std::process::Output>;
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> Option<std::process::Output> {
        use std::io::Write;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        child.stdin.take()?.write_all(input).ok()?;
        child.wait_with_output().ok()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_can_cancel_while_its_statement_waits_for_approval() {
    let pg = server();
    let gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &[], &[]);
    let c = connect(&gw.conninfo("payments", &token)).await.unwrap();
    let cancel = c.cancel_token();
    let held = tokio::spawn(async move { c.simple_query("SELECT * FROM cards").await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    cancel.cancel_query(NoTls).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e:?}");
}

fn openssl(args: &[&str], dir: &std::path::Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`: (ca, cert, key).
fn ca_and_server(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=warden-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        dir,
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.crt",
        ],
        dir,
    );
    (
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_is_used_and_the_server_certificate_is_pinned() {
    let pg = server();
    // Turn TLS on in the server with its own certificate (owned by the server's OS user).
    let (ca, cert, key) = ca_and_server(pg.dir.path());
    for f in [&cert, &key] {
        assert!(
            Command::new("chown")
                .arg("postgres")
                .arg(f)
                .status()
                .unwrap()
                .success()
        );
    }
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    pg.psql(&format!(
        "ALTER SYSTEM SET ssl_cert_file = '{}'",
        cert.display()
    ));
    pg.psql(&format!(
        "ALTER SYSTEM SET ssl_key_file = '{}'",
        key.display()
    ));
    pg.psql("ALTER SYSTEM SET ssl = on");
    pg.psql("SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(500));
    let other = tempfile::tempdir().unwrap();
    let (wrong_ca, _, _) = ca_and_server(other.path());
    let tls_target = |name: &str, mode: &str, ca: Option<&std::path::Path>| {
        let mut t = gateway::target(name, &pg, "payments", r#"{ module = "allow-all" }"#);
        t.push_str(&format!("tls = \"{mode}\"\n"));
        if let Some(ca) = ca {
            t.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
        }
        t
    };
    let targets = [
        tls_target("required", "require", None),
        tls_target("pinned", "verify", Some(&ca)),
        tls_target("mismatch", "verify", Some(&wrong_ca)),
    ]
    .concat();
    let gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            targets: &targets,
            ..Extra::default()
        },
    );
    let token = gw.token("alice", &[], &[]);
    for target in ["required", "pinned"] {
        let c = connect(&gw.conninfo(target, &token)).await.unwrap();
        let ssl: bool = c
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(ssl, "{target}: the gateway's leg to the server is TLS");
    }
    // A server certificate that does not chain to the pinned CA: refused, nothing forwarded.
    let e = connect(&gw.conninfo("mismatch", &token)).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("08006"), "{e:?}");
    let c = connect(&gw.conninfo("open", &token)).await.unwrap();
    let ssl: bool = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!ssl, "tls = disable stays plain");
}
