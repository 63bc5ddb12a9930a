//! The front door and the one `authenticate`, with real servers and real clients: target
//! allow lists and the token's `targets` claim, session caps, connection caps and the
//! pre-auth deadline (answered in each protocol's words, never a hang), sessions ended at
//! token expiry, crash recovery after `kill -9`, and refused privileged upstreams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateway::{self, Extra, Gateway, card_server, connect, psql};
use common::ssh::{SshGateway, Sshd};
use std::io::Read;
use std::time::{Duration, Instant};

/// The SSH fixture's directory lacks the PostgreSQL fixture's password file; the gateway
/// reads it at each upstream login, so writing it after start is enough.
fn pg_password(gw: &SshGateway) {
    std::fs::write(
        gw.dir().join("pg-password"),
        format!("{}\n", gateway::GATEWAY_PASSWORD),
    )
    .unwrap();
}
use warden::audit::{AuditStore, EventKind};
use warden::identity::MintRequest;

const ALLOW: &str = r#"{ module = "allow-all" }"#;

/// Every `login-refused` note in the audit store, as text.
fn refused_logins(path: &std::path::Path) -> Vec<String> {
    let store = AuditStore::open(path).unwrap();
    store
        .events(..)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event.kind {
            EventKind::Note(n) if n.topic == "login-refused" => Some(n.message),
            _ => None,
        })
        .collect()
}

fn mint(dir: &std::path::Path, sub: &str, groups: &[&str], targets: &[&str], ttl: u64) -> String {
    let mut req = MintRequest::new(sub);
    req.groups = groups.iter().map(|s| s.to_string()).collect();
    req.targets = targets.iter().map(|s| s.to_string()).collect();
    req.ttl = Duration::from_secs(ttl);
    common::serve::mint(dir, &req)
}

/// A postgres target on `pg` whose access is given by `access` (TOML lines).
fn pg_target(name: &str, pg: &common::pg::PgServer, access: &str) -> String {
    gateway::target(name, pg, "payments", ALLOW).replacen(
        "allow_subjects = [\"*\"]\n",
        &format!("{access}\n"),
        1,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_reach_only_their_targets_and_every_refusal_is_audited() {
    let pg = card_server();
    let sshd = Sshd::start();
    let ledger = pg_target("ledger", &pg, "allow_subjects = [\"bob\"]");
    let cash = pg_target("cash", &pg, "allow_groups = [\"agents\"]");
    let extra = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\nallow_plaintext_password = true\n{ledger}{cash}{}",
        common::ssh::ssh_target(
            "web-2",
            &sshd,
            ALLOW,
            &format!("known_hosts = \"{}\"", sshd.known_hosts.display())
        )
        .replacen("allow_subjects = [\"*\"]", "allow_groups = [\"ops\"]", 1)
    );
    let mut gw = SshGateway::start(&sshd, ALLOW, &["allow-all"], &extra);
    pg_password(&gw);
    let port = gw.pg_port.unwrap();
    let conninfo = |target: &str, token: &str| {
        format!(
            "host=127.0.0.1 port={port} dbname={target} user=agent password={token} sslmode=disable"
        )
    };
    let alice = mint(gw.dir(), "alice", &["agents"], &[], 300);
    // The target's allow lists decide.
    let (ok, out, _) = psql(&conninfo("cash", &alice), "SELECT 1 AS one", &[]);
    assert!(ok, "{out}");
    let (ok, _, err) = psql(&conninfo("ledger", &alice), "SELECT 1", &[]);
    assert!(!ok);
    assert!(err.contains("may not reach target `ledger`"), "{err}");
    // A token naming its targets reaches only those, whatever the allow lists say.
    let bob_cash_only = mint(gw.dir(), "bob", &["agents"], &["cash"], 300);
    let (ok, _, err) = psql(&conninfo("ledger", &bob_cash_only), "SELECT 1", &[]);
    assert!(!ok);
    assert!(err.contains("is for other targets"), "{err}");
    let (ok, _, err) = psql(&conninfo("cash", &bob_cash_only), "SELECT 1", &[]);
    assert!(ok, "{err}");
    let bob = mint(gw.dir(), "bob", &[], &[], 300);
    let (ok, _, err) = psql(&conninfo("ledger", &bob), "SELECT 1", &[]);
    assert!(ok, "{err}");
    // A bad token is refused and audited too (it used to leave no trace on PostgreSQL).
    let (ok, _, err) = psql(&conninfo("cash", "not.a.token"), "SELECT 1", &[]);
    assert!(!ok && err.contains("token rejected"), "{err}");
    // A token typed into the database name is not written down anywhere.
    let (ok, _, _) = psql(&conninfo(&alice, "not.a.token"), "SELECT 1", &[]);
    assert!(!ok);
    // Over SSH: alice is not in `ops`; a token scoped to `cash` cannot reach web-1.
    let o = gw.ssh_as(&alice, "web-2", &[], &["true"], None);
    assert_eq!(o.status.code(), Some(255));
    let o = gw.ssh_as(&alice, "web-1", &[], &["echo in"], None);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "in");
    let o = gw.ssh_as(&bob_cash_only, "web-1", &[], &["true"], None);
    assert_eq!(o.status.code(), Some(255));
    gw.stop();

    let notes = refused_logins(&gw.audit_path());
    let has = |needle: &[&str]| notes.iter().any(|n| needle.iter().all(|x| n.contains(x)));
    assert!(has(&["postgres login", "`ledger`", "alice"]), "{notes:#?}");
    assert!(
        has(&["postgres login", "`ledger`", "other targets"]),
        "{notes:#?}"
    );
    assert!(has(&["postgres login", "token rejected"]), "{notes:#?}");
    assert!(has(&["ssh login", "`web-2`", "alice"]), "{notes:#?}");
    assert!(
        has(&["ssh login", "`web-1`", "other targets"]),
        "{notes:#?}"
    );
    assert!(has(&["shaped like a token", "withheld"]), "{notes:#?}");
    assert!(!gateway::file_contains(&gw.audit_path(), &alice));
    assert!(!gateway::file_contains(&gw.audit_path(), &bob_cash_only));
}

#[tokio::test(flavor = "multi_thread")]
async fn session_caps_refuse_with_53300_and_free_on_close() {
    let pg = card_server();
    let capped = pg_target(
        "capped",
        &pg,
        "allow_groups = [\"agents\"]\nmax_sessions = 3\nmax_sessions_per_principal = 2",
    );
    let gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            targets: &capped,
            ..Default::default()
        },
    );
    let alice = mint(gw.dir(), "alice", &["agents"], &[], 300);
    let bob = mint(gw.dir(), "bob", &["agents"], &[], 300);
    let a1 = connect(&gw.conninfo("capped", &alice)).await.unwrap();
    let a2 = connect(&gw.conninfo("capped", &alice)).await.unwrap();
    let e = connect(&gw.conninfo("capped", &alice)).await.err().unwrap();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "53300", "{db:?}");
    assert!(
        db.message().contains("too many sessions for `alice`"),
        "{db:?}"
    );
    // Another principal is not locked out by alice's cap ...
    let b1 = connect(&gw.conninfo("capped", &bob)).await.unwrap();
    // ... but the target's own cap holds for everyone.
    let e = connect(&gw.conninfo("capped", &bob)).await.err().unwrap();
    assert_eq!(e.as_db_error().unwrap().code().code(), "53300");
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("too many sessions on target")
    );
    // Other targets are not affected.
    let other = connect(&gw.conninfo("open", &bob)).await.unwrap();
    other.simple_query("SELECT 1").await.unwrap();
    // A closed session gives its slot back.
    drop(a1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match connect(&gw.conninfo("capped", &alice)).await {
            Ok(c) => {
                c.simple_query("SELECT 1").await.unwrap();
                break;
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("slot not given back: {e}"),
        }
    }
    a2.simple_query("SELECT 1").await.unwrap();
    b1.simple_query("SELECT 1").await.unwrap();
}

/// Idle TCP connections that never authenticate hold their place only until the pre-auth
/// deadline; past the per-address cap, psql and ssh are told "too many", never left hanging.
#[test]
fn connection_caps_answer_in_protocol_words_and_preauth_deadline_frees_them() {
    let pg = card_server();
    let sshd = Sshd::start();
    let extra = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\nallow_plaintext_password = true\n\
         [connections]\nper_address = 4\npreauth_timeout = \"2s\"\n{}",
        gateway::target("payments", &pg, "payments", ALLOW)
    );
    let gw = SshGateway::start(&sshd, ALLOW, &["allow-all"], &extra);
    pg_password(&gw);
    let port = gw.pg_port.unwrap();
    // Three idle PostgreSQL connections and one SSH connection that sends only its
    // identification line, then stalls in key exchange: four from this address.
    let idle: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let mut ssh_idle = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    std::io::Write::write_all(&mut ssh_idle, b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let token = gw.token("alice", &["agent-7"], &[]);
    let conninfo = format!(
        "host=127.0.0.1 port={port} dbname=payments user=agent password={token} sslmode=disable connect_timeout=10"
    );
    let started = Instant::now();
    let (ok, _, err) = psql(&conninfo, "SELECT 1", &[]);
    assert!(!ok);
    assert!(err.contains("too many clients already"), "{err}");
    assert!(err.contains("too many connections from 127.0.0.1"), "{err}");
    let o = gw.ssh("web-1", &["-o", "ConnectTimeout=10"], &["true"], None);
    assert_eq!(o.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("too many connections"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refusals must be prompt"
    );
    // The idle connections are cut at the pre-auth deadline; the door opens again. So is an
    // SSH client that sent only its identification (russh runs it in a task of its own).
    ssh_idle
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match ssh_idle.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) => {
                break !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    };
    assert!(
        closed,
        "an SSH connection that never logs in is closed at the deadline"
    );
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed by the gateway");
    }
    let (ok, out, err) = psql(&conninfo, "SELECT 41 + 1 AS answer", &[]);
    assert!(ok && out.contains("42"), "{out}{err}");
}

/// A session ends when its token expires (plus the leeway), on both protocols, with a reason
/// the client can read and an audited end.
#[tokio::test(flavor = "multi_thread")]
async fn expired_tokens_end_open_sessions_on_both_protocols() {
    let pg = card_server();
    let sshd = Sshd::start();
    let extra = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\nallow_plaintext_password = true\n{}",
        gateway::target("payments", &pg, "payments", ALLOW)
    );
    let mut gw = SshGateway::start_with(&sshd, ALLOW, &["allow-all"], &extra, "leeway = \"1s\"");
    pg_password(&gw);
    let port = gw.pg_port.unwrap();
    let short = mint(gw.dir(), "alice", &[], &[], 4);
    let client = connect(&format!(
        "host=127.0.0.1 port={port} dbname=payments user=agent password={short} sslmode=disable"
    ))
    .await
    .unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    pg.psql_db(
        "payments",
        &format!(
            "CREATE TABLE late (n int); GRANT INSERT, SELECT ON late TO {}",
            gateway::GATEWAY_ROLE
        ),
    );
    // A statement still running at expiry is cancelled: it never commits.
    let slow = connect(&format!(
        "host=127.0.0.1 port={port} dbname=payments user=agent password={short} sslmode=disable"
    ))
    .await
    .unwrap();
    let running = tokio::spawn(async move {
        slow.simple_query("INSERT INTO late SELECT 4242 FROM pg_sleep(12)")
            .await
            .map(|_| ())
    });
    // ssh keeps a command running past the token's life.
    let started = Instant::now();
    let o = gw.ssh_as(&short, "web-1", &[], &["sleep 30; echo survived"], None);
    let ssh_took = started.elapsed();
    assert!(!String::from_utf8_lossy(&o.stdout).contains("survived"));
    assert!(ssh_took < Duration::from_secs(20), "{ssh_took:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("token expired"), "{stderr}");
    // By now the PostgreSQL session has been ended too.
    let err = client.simple_query("SELECT 1").await.err().unwrap();
    assert!(
        err.to_string().contains("token expired")
            || err
                .as_db_error()
                .is_some_and(|d| d.message().contains("token expired"))
            || err.is_closed(),
        "{err}"
    );
    assert!(running.await.unwrap().is_err(), "the slow insert was ended");
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        pg.psql_db("payments", "SELECT count(*) FROM late").trim(),
        "0"
    );
    gw.stop();
    let store = AuditStore::open(gw.audit_path()).unwrap();
    let ends: Vec<String> = store
        .sessions()
        .unwrap()
        .into_iter()
        .map(|s| s.end.map(|e| e.reason).unwrap_or_default())
        .collect();
    assert_eq!(
        ends.iter().filter(|r| *r == "token expired").count(),
        3,
        "{ends:?}"
    );
}

/// After `kill -9` with sessions open, the next start gives each an audited end before it
/// listens, and the chain still verifies.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_under_load_leaves_no_session_open() {
    let pg = card_server();
    let mut gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &["agent-7"], &[]);
    let mut clients = Vec::new();
    for _ in 0..6 {
        let c = connect(&gw.conninfo("open", &token)).await.unwrap();
        c.simple_query("SELECT count(*) FROM cards").await.unwrap();
        clients.push(std::sync::Arc::new(c));
    }
    // Load while it dies.
    let busy: Vec<_> = clients
        .iter()
        .map(|c| {
            let c = c.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    if c.simple_query("SELECT 1").await.is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.kill9();
    for b in busy {
        let _ = b.await;
    }
    drop(clients);
    gw.restart();
    gw.stop();
    let store = AuditStore::open(gw.audit_path()).unwrap();
    let sessions = store.sessions().unwrap();
    assert_eq!(sessions.len(), 6);
    for s in &sessions {
        let end = s
            .end
            .as_ref()
            .unwrap_or_else(|| panic!("{} still open", s.id));
        assert!(
            end.reason
                .starts_with("gateway stopped unexpectedly (last event at "),
            "{}",
            end.reason
        );
        assert!(end.counts.commands >= 1, "{:?}", end.counts);
    }
    assert!(store.verify().unwrap().is_ok(), "chain verifies");
}

/// Every statement the server ran before a SIGKILL has its audit event afterwards, read offline
/// before any restart and after one: each was durable (in the journal) before it was
/// forwarded, and the journal is put back on the next read or start.
#[test]
fn statements_run_before_a_sigkill_are_in_the_audit_offline_and_after_restart() {
    let pg = card_server();
    let mut gw = Gateway::start(&pg, "payments", Extra::default());
    let token = gw.token("alice", &[], &[]);
    let markers: Vec<String> = (0..12).map(|i| format!("journal_marker_{i:02}")).collect();
    for marker in &markers {
        let (ok, _, err) = psql(
            &gw.conninfo("open", &token),
            &format!("SELECT 1 AS {marker}"),
            &[],
        );
        assert!(ok, "{err}");
    }
    gw.kill9();
    // Ground truth: the server ran every one of them.
    let log = pg.log_text();
    for marker in &markers {
        assert!(
            log.contains(marker.as_str()),
            "{marker} not in the server's log"
        );
    }
    let db = gw.audit_path();
    let export = || {
        let (ok, out, err) =
            gateway::warden_as("", &["audit", "export", "--db", db.to_str().unwrap()]);
        assert!(ok, "{err}");
        out
    };
    let offline = export();
    for marker in &markers {
        assert!(
            offline.contains(marker.as_str()),
            "{marker} missing from the audit after SIGKILL"
        );
    }
    gw.restart();
    gw.stop();
    let after = export();
    for marker in &markers {
        assert_eq!(after.matches(marker.as_str()).count(), 1, "{marker}");
    }
    let store = AuditStore::open(gw.audit_path()).unwrap();
    assert!(store.verify().unwrap().is_ok());
}

/// A gateway whose PostgreSQL role is a superuser does not start, unless the target allows it.
#[test]
fn a_superuser_upstream_is_refused_at_start() {
    let pg = card_server();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), common::serve::SECRET).unwrap();
    std::fs::write(dir.path().join("pg-password"), format!("{}\n", pg.password)).unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    let target = gateway::target_as(
        "payments",
        &pg,
        "payments",
        ALLOW,
        common::pg::SUPERUSER,
        Some("pg-password"),
    );
    let config = |allow: bool| {
        format!(
            "[policy]\ndir = \"policies\"\n[audit]\npath = \"audit.redb\"\n[identity]\nissuer = \"i\"\naudience = \"a\"\nhs256_secret_file = \"secret\"\n\
             [postgres]\nlisten = \"127.0.0.1:0\"\nallow_plaintext_password = true\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
            target.replacen(
                "allow_subjects = [\"*\"]\n",
                &format!("allow_subjects = [\"*\"]\nallow_privileged_upstream = {allow}\n"),
                1
            )
        )
    };
    let path = dir.path().join("warden.toml");
    std::fs::write(&path, config(false)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is privileged (a superuser)"), "{err}");
    // Not a superuser itself, but able to become one, or to grant itself the roles that run
    // programs on the server: refused the same way.
    for (role, grant) in [
        ("becomes_su", "GRANT postgres TO becomes_su"),
        ("makes_roles", "ALTER ROLE makes_roles CREATEROLE"),
        (
            "runs_programs",
            "GRANT pg_execute_server_program TO runs_programs",
        ),
    ] {
        pg.create_role(role, "pw-not-for-clients", common::pg::Auth::Scram);
        pg.psql(grant);
        std::fs::write(dir.path().join("pg-password"), "pw-not-for-clients\n").unwrap();
        let cfg = config(false).replace(
            &format!("user = \"{}\"", common::pg::SUPERUSER),
            &format!("user = \"{role}\""),
        );
        std::fs::write(&path, cfg).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["serve", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{role}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("`{role}` is privileged")),
            "{role}: {err}"
        );
    }
    std::fs::write(dir.path().join("pg-password"), format!("{}\n", pg.password)).unwrap();
    // Allowed explicitly, it starts (and says so in its log).
    std::fs::write(&path, config(true)).unwrap();
    let (mut child, ports) = common::serve::start(&path);
    assert!(ports.contains_key("postgres"));
    let _ = child.kill();
    let _ = child.wait();
}

/// A flood of idle connections far past the file-descriptor limit: the gateway never fails
/// `accept` for want of descriptors, and a legitimate psql and ssh get in or get the
/// protocol's "too many" answer within seconds, never a hang.
#[test]
fn a_flood_past_the_fd_limit_never_locks_out_or_hangs_a_legitimate_client() {
    let _ = rlimit::increase_nofile_limit(8192);
    let pg = card_server();
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("policies")).unwrap();
    common::install("allow-all", &d.join("policies"), "allow-all.wasm");
    std::fs::write(d.join("secret"), common::serve::SECRET).unwrap();
    std::fs::write(
        d.join("pg-password"),
        format!("{}\n", gateway::GATEWAY_PASSWORD),
    )
    .unwrap();
    let config = format!(
        r#"
[policy]
dir = "policies"
deadline = "250ms"
[audit]
path = "audit.redb"
[identity]
issuer = "{issuer}"
audience = "{audience}"
hs256_secret_file = "secret"
[postgres]
listen = "127.0.0.1:0"
allow_plaintext_password = true
[ssh]
listen = "127.0.0.1:0"
host_key = "host_key"
[admin]
listen = "127.0.0.1:0"
[connections]
per_address = 100000
preauth_timeout = "20s"
{pg_target}{ssh_target}"#,
        issuer = common::serve::ISSUER,
        audience = common::serve::AUDIENCE,
        pg_target = gateway::target("payments", &pg, "payments", ALLOW),
        ssh_target = common::ssh::ssh_target(
            "web-1",
            &sshd,
            ALLOW,
            &format!("known_hosts = \"{}\"", sshd.known_hosts.display())
        ),
    );
    let path = d.join("warden.toml");
    std::fs::write(&path, config).unwrap();
    let log = d.join("warden.log");
    let (mut child, ports) = common::serve::start_limited(&path, 512, &log);
    let (pg_port, ssh_port) = (ports["postgres"], ports["ssh"]);
    // 1,100 connections that never say a word, on both listeners.
    let mut flood = Vec::new();
    for i in 0..1100 {
        let port = if i % 2 == 0 { pg_port } else { ssh_port };
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            flood.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let token = mint(d, "alice", &[], &[], 300);
    let conninfo = format!(
        "host=127.0.0.1 port={pg_port} dbname=payments user=agent password={token} sslmode=disable connect_timeout=15"
    );
    let started = Instant::now();
    let (ok, out, err) = psql(&conninfo, "SELECT 41 + 1 AS answer", &[]);
    assert!(
        (ok && out.contains("42")) || err.contains("too many clients already"),
        "{out}{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "psql waited {:?}",
        started.elapsed()
    );
    let askpass = d.join("askpass.sh");
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{token}'\n")).unwrap();
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let started = Instant::now();
    let o = std::process::Command::new("setsid")
        .args([
            "-w",
            "ssh",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args([
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "ConnectTimeout=15",
            "-p",
        ])
        .arg(ssh_port.to_string())
        .arg("web-1@127.0.0.1")
        .arg("echo in")
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env_remove("DISPLAY")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        String::from_utf8_lossy(&o.stdout).trim() == "in"
            || stderr.contains("too many connections"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "ssh waited {:?}",
        started.elapsed()
    );
    // The flood goes; the door opens for the same clients.
    drop(flood);
    std::thread::sleep(Duration::from_millis(500));
    let (ok, out, err) = psql(&conninfo, "SELECT 41 + 1 AS answer", &[]);
    assert!(ok && out.contains("42"), "{out}{err}");
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("Too many open files"), "{log}");
}

/// A listener's own cap bounds that listener only: past `[postgres] max_connections`, psql is
/// told so, while the SSH listener keeps serving.
#[test]
fn a_listener_cap_bounds_only_its_listener() {
    let pg = card_server();
    let sshd = Sshd::start();
    let extra = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\nallow_plaintext_password = true\nmax_connections = 2\n{}",
        gateway::target("payments", &pg, "payments", ALLOW)
    );
    let gw = SshGateway::start(&sshd, ALLOW, &["allow-all"], &extra);
    pg_password(&gw);
    let port = gw.pg_port.unwrap();
    let _idle: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let token = gw.token("alice", &["agent-7"], &[]);
    let conninfo = format!(
        "host=127.0.0.1 port={port} dbname=payments user=agent password={token} sslmode=disable connect_timeout=10"
    );
    let (ok, _, err) = psql(&conninfo, "SELECT 1", &[]);
    assert!(!ok);
    assert!(
        err.contains("too many postgres connections (2 at once)"),
        "{err}"
    );
    let o = gw.ssh("web-1", &[], &["echo still-in"], None);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "still-in");
}
