//! A throwaway PostgreSQL server for tests: a fresh cluster in a temp dir on a free loopback
//! port, run as the `postgres` OS user (the server refuses root), stopped and removed on drop.
//!
//! ```ignore
//! let pg = PgServer::start();
//! pg.create_role("warden", "s3cret", Auth::Scram);
//! pg.create_database("payments");
//! pg.psql_db("payments", "CREATE TABLE t (x int); GRANT SELECT ON t TO warden");
//! // ... point the gateway at 127.0.0.1:{pg.port} as warden/s3cret ...
//! assert!(!pg.statements_logged().iter().any(|s| s.contains("DROP")));
//! ```
//!
//! The server runs with `log_statement=all` and `log_connections=on`, so a test can prove what
//! reached it ([`PgServer::statements_logged`]) and how a login authenticated
//! ([`PgServer::authenticated`]). Host connections need a password (SCRAM-SHA-256) unless a
//! role was made with [`Auth::Trust`]; the harness itself talks to the server over its unix
//! socket with `local` trust, which [`PgServer::hba`] always keeps, so a test can lock every TCP
//! client out and still inspect the server.
//!
//! Set `WARDEN_KEEP_PG=1` to keep the data directory and log after the test (its path is
//! printed), and `PG_BIN` to pick a PostgreSQL bin directory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The superuser's name.
pub const SUPERUSER: &str = "postgres";
/// The OS user the server runs as.
const OS_USER: &str = "postgres";
/// Longest a server start, stop or one psql call may take.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const PSQL_TIMEOUT_SECS: u32 = 60;
/// How a role logs in over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Password stored as SCRAM-SHA-256, `scram-sha-256` pg_hba line.
    Scram,
    /// Password stored as md5, `md5` pg_hba line (the server then really uses the MD5 exchange).
    Md5,
    /// No password: a `trust` pg_hba line for this role.
    Trust,
}

impl Auth {
    fn hba_method(self) -> &'static str {
        match self {
            Auth::Scram => "scram-sha-256",
            Auth::Md5 => "md5",
            Auth::Trust => "trust",
        }
    }
}

/// One statement the server logged (`log_statement = all`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedStatement {
    /// Role and database of the session that ran it.
    pub user: String,
    pub database: String,
    /// The SQL text: from `statement: ...` (simple query) or `execute NAME: ...` (extended).
    pub text: String,
}

/// A running PostgreSQL cluster.
pub struct PgServer {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Holds `data/` (the cluster), the unix socket, the log; removed on drop.
    pub dir: tempfile::TempDir,
    /// The superuser's password (user [`SUPERUSER`]).
    pub password: String,
    /// The server's log file.
    pub log: PathBuf,
    bin: PathBuf,
    data: PathBuf,
    /// `host` lines of pg_hba.conf, after the harness's own `local` trust line.
    hba_lines: Mutex<Vec<String>>,
}

/// The default `host` lines: every role needs a SCRAM password from loopback.
fn default_hba() -> Vec<String> {
    vec![
        "host all all 127.0.0.1/32 scram-sha-256".to_string(),
        "host all all ::1/128 scram-sha-256".to_string(),
    ]
}

/// The highest-versioned `/usr/lib/postgresql/*/bin` holding `initdb`, or `$PG_BIN`.
pub fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(version) = name
                .split('.')
                .map(str::parse::<u64>)
                .collect::<Result<Vec<_>, _>>()
            else {
                continue;
            };
            let bin = entry.path().join("bin");
            if bin.join("initdb").exists() && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    match best {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server found under /usr/lib/postgresql/*/bin (install it: \
             apt-get install -y postgresql), or set PG_BIN"
        ),
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Quote an SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quote an SQL string literal.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Run a command under `timeout`, so a hung server or client cannot hang the test.
fn run(
    secs: u32,
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    as_postgres: bool,
) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.arg("--kill-after=5").arg(secs.to_string());
    if as_postgres && is_root() {
        cmd.args(["runuser", "-u", OS_USER, "--"]);
    }
    cmd.arg(program).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Never pick up the caller's libpq settings.
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGSERVICE",
        "PGOPTIONS",
    ] {
        if !env.iter().any(|(k, _)| *k == var) {
            cmd.env_remove(var);
        }
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

fn is_root() -> bool {
    // `id -u` keeps this crate free of unsafe libc calls.
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Make `path` belong to the server's OS user (when we are root).
fn give_to_postgres(path: &Path) {
    if !is_root() {
        return;
    }
    let out = Command::new("chown")
        .arg("-R")
        .arg(format!("{OS_USER}:"))
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chown {OS_USER} {}: {} (is there a `{OS_USER}` user? apt-get install -y postgresql)",
        path.display(),
        text(&out.stderr)
    );
}

impl PgServer {
    /// initdb + start on a free port; waits until it accepts connections. Panics with the
    /// server log when anything fails.
    pub fn start() -> PgServer {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("warden-pg-")
            .tempdir()
            .unwrap();
        give_to_postgres(dir.path());
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        let password = format!("pg-{:016x}", rand::random::<u64>());
        let pwfile = dir.path().join("superuser.pw");
        std::fs::write(&pwfile, format!("{password}\n")).unwrap();
        give_to_postgres(&pwfile);

        let out = run(
            120,
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                SUPERUSER,
                &format!("--pwfile={}", pwfile.display()),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            &[],
            true,
        );
        std::fs::remove_file(&pwfile).ok();
        assert!(
            out.status.success(),
            "initdb failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );

        let mut server = PgServer {
            port: 0,
            dir,
            password,
            log,
            bin,
            data,
            hba_lines: Mutex::new(default_hba()),
        };
        server.write_hba();
        // A free port can be taken between our probe and the server's bind: retry a few times.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.try_start() {
                Ok(()) => {
                    server.wait_ready();
                    return server;
                }
                Err(e) => {
                    last = e;
                    if !last.contains("Address already in use") && !last.contains("could not bind")
                    {
                        break;
                    }
                }
            }
        }
        panic!(
            "PostgreSQL did not start:\n{last}\n--- server log ---\n{}",
            server.log_text()
        );
    }

    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c log_statement=all -c log_connections=on \
             -c log_disconnections=off -c log_line_prefix='%m [%p] %q%u@%d '",
            self.port,
            self.dir.path().display()
        );
        let out = run(
            START_TIMEOUT.as_secs() as u32 + 10,
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                self.log.to_str().unwrap(),
                "-w",
                "-t",
                &START_TIMEOUT.as_secs().to_string(),
                "-o",
                &options,
                "start",
            ],
            &[],
            true,
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl start: {}{}\n{}",
                text(&out.stdout),
                text(&out.stderr),
                self.log_text()
            ))
        }
    }

    /// pg_ctl -w already waited for the postmaster; check both the socket and TCP answer.
    fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let out = run(
                10,
                &self.bin.join("pg_isready"),
                &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "5"],
                &[],
                false,
            );
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL on port {} not ready: {}\n--- server log ---\n{}",
                self.port,
                text(&out.stdout),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(self.psql("SELECT 1"), "1");
    }

    /// The unix socket directory (`host=` for libpq).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The bin directory in use (initdb, pg_ctl, psql, pgbench).
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// A libpq / tokio-postgres connection string over TCP.
    pub fn conn_str(&self, user: &str, password: Option<&str>, dbname: &str) -> String {
        let mut s = format!(
            "host=127.0.0.1 port={} user={user} dbname={dbname} sslmode=disable connect_timeout=10",
            self.port
        );
        if let Some(p) = password {
            s.push_str(&format!(
                " password='{}'",
                p.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
        s
    }

    /// The superuser over TCP (SCRAM), for clients under test.
    pub fn superuser_conn_str(&self, dbname: &str) -> String {
        self.conn_str(SUPERUSER, Some(&self.password), dbname)
    }

    /// Run SQL as the superuser in `postgres` (psql -Atc, over the unix socket); returns the
    /// output trimmed. Panics with psql's error and the log tail on failure.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db("postgres", sql)
    }

    /// [`PgServer::psql`] in another database.
    pub fn psql_db(&self, dbname: &str, sql: &str) -> String {
        match self.try_psql_db(dbname, sql) {
            Ok(out) => out,
            Err(e) => panic!(
                "psql failed: {e}\nSQL: {sql}\n--- server log (tail) ---\n{}",
                self.log_tail(40)
            ),
        }
    }

    /// psql as the superuser; `Err(stderr)` when it failed.
    pub fn try_psql_db(&self, dbname: &str, sql: &str) -> Result<String, String> {
        let conninfo = format!(
            "host={} port={} user={SUPERUSER} dbname={dbname} connect_timeout=10",
            self.socket_dir().display(),
            self.port
        );
        let out = run(
            PSQL_TIMEOUT_SECS,
            &self.bin.join("psql"),
            &[
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-d",
                &conninfo,
                "-c",
                sql,
            ],
            &[],
            false,
        );
        if out.status.success() {
            Ok(text(&out.stdout).trim_end_matches('\n').to_string())
        } else {
            Err(format!("{}{}", text(&out.stdout), text(&out.stderr)))
        }
    }

    /// Run a whole SQL file as the superuser (psql -f) in `dbname`, with psql `-v` variables.
    pub fn psql_file(&self, dbname: &str, file: &Path, vars: &[(&str, &str)]) -> String {
        let conninfo = format!(
            "host={} port={} user={SUPERUSER} dbname={dbname} connect_timeout=10",
            self.socket_dir().display(),
            self.port
        );
        let file = file.to_str().unwrap().to_string();
        let var_args: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args: Vec<&str> = vec!["-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d", &conninfo];
        for v in &var_args {
            args.extend(["-v", v.as_str()]);
        }
        args.extend(["-f", file.as_str()]);
        let out = run(PSQL_TIMEOUT_SECS, &self.bin.join("psql"), &args, &[], false);
        assert!(
            out.status.success(),
            "psql -f {file} failed: {}{}\n--- server log (tail) ---\n{}",
            text(&out.stdout),
            text(&out.stderr),
            self.log_tail(40)
        );
        text(&out.stdout)
    }

    /// Create a login role (`password` is ignored for [`Auth::Trust`]) and the pg_hba line
    /// that makes it log in over TCP with that method; reloads the server.
    pub fn create_role(&self, name: &str, password: &str, auth: Auth) {
        let sql = match auth {
            Auth::Scram => format!(
                "SET password_encryption = 'scram-sha-256'; CREATE ROLE {} LOGIN PASSWORD {}",
                ident(name),
                literal(password)
            ),
            Auth::Md5 => format!(
                "SET password_encryption = 'md5'; CREATE ROLE {} LOGIN PASSWORD {}",
                ident(name),
                literal(password)
            ),
            Auth::Trust => format!("CREATE ROLE {} LOGIN", ident(name)),
        };
        self.psql(&sql);
        let role = if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            name.to_string()
        } else {
            ident(name)
        };
        {
            let mut lines = self.hba_lines.lock().unwrap_or_else(|e| e.into_inner());
            // Role lines go first: pg_hba.conf is first-match.
            lines.insert(0, format!("host all {role} ::1/128 {}", auth.hba_method()));
            lines.insert(
                0,
                format!("host all {role} 127.0.0.1/32 {}", auth.hba_method()),
            );
        }
        self.reload_hba();
    }

    /// `CREATE DATABASE name` (owned by the superuser).
    pub fn create_database(&self, name: &str) {
        self.psql(&format!("CREATE DATABASE {}", ident(name)));
    }

    /// Replace pg_hba.conf's `host` lines (a `local all all trust` line for the harness always
    /// stays first) and reload. Lines added by [`PgServer::create_role`] are replaced too.
    pub fn hba(&self, lines: &[&str]) {
        *self.hba_lines.lock().unwrap_or_else(|e| e.into_inner()) =
            lines.iter().map(|l| l.to_string()).collect();
        self.reload_hba();
    }

    fn write_hba(&self) {
        let lines = self
            .hba_lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut body =
            String::from("# written by gateway/tests/common/pg.rs\nlocal all all trust\n");
        for l in lines {
            body.push_str(&l);
            body.push('\n');
        }
        let path = self.data.join("pg_hba.conf");
        std::fs::write(&path, body).unwrap();
        give_to_postgres(&path);
    }

    /// Rewrite pg_hba.conf and wait until the postmaster has re-read it (its log says so).
    fn reload_hba(&self) {
        const RELOADED: &str = "received SIGHUP, reloading configuration files";
        let before = self.log_text().matches(RELOADED).count();
        self.write_hba();
        assert_eq!(self.psql("SELECT pg_reload_conf()"), "t");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log_text();
            if log.matches(RELOADED).count() > before {
                if log.contains("pg_hba.conf was not reloaded") {
                    panic!("pg_hba.conf was refused:\n{}", self.log_tail(20));
                }
                // The postmaster logs before it parses; give it the parse itself.
                std::thread::sleep(Duration::from_millis(50));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not reload:\n{}",
                self.log_tail(20)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let errors = self.psql("SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL");
        assert_eq!(
            errors,
            "0",
            "pg_hba.conf has errors:\n{}",
            self.psql("TABLE pg_hba_file_rules")
        );
    }

    /// The whole server log.
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| text(&b))
            .unwrap_or_default()
    }

    /// The last `n` lines of the server log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log_text();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Log records: (user@db prefix, message with continuation lines joined by `\n`).
    fn log_records(&self) -> Vec<(String, String, String)> {
        let log = self.log_text();
        let mut records: Vec<(String, String, String)> = Vec::new();
        for line in log.lines() {
            // Multi-line messages continue on lines that start with a tab.
            if let Some(cont) = line.strip_prefix('\t') {
                if let Some(last) = records.last_mut() {
                    last.2.push('\n');
                    last.2.push_str(cont);
                }
                continue;
            }
            // `%m [%p] user@db LEVEL:  message` (user@db absent for non-session processes).
            let Some(rest) = line.split_once("] ").map(|(_, r)| r) else {
                continue;
            };
            let (who, message) = match rest.split_once(' ') {
                Some((who, msg)) if who.contains('@') => (who, msg),
                _ => ("", rest),
            };
            let (user, db) = who.split_once('@').unwrap_or(("", ""));
            records.push((user.to_string(), db.to_string(), message.to_string()));
        }
        records
    }

    /// Every statement the server ran, in order, with who ran it: simple-query `statement:`
    /// lines and extended-protocol `execute NAME:` lines (`log_statement = all`).
    pub fn statement_log(&self) -> Vec<LoggedStatement> {
        self.log_records()
            .into_iter()
            .filter_map(|(user, database, msg)| {
                let msg = msg.strip_prefix("LOG:  ")?;
                let text = if let Some(s) = msg.strip_prefix("statement: ") {
                    s.to_string()
                } else if let Some(s) = msg.strip_prefix("execute ") {
                    // `execute <unnamed>: SELECT ...`, `execute s0: ...`, `execute fetch from ...`
                    s.split_once(": ")?.1.to_string()
                } else {
                    return None;
                };
                Some(LoggedStatement {
                    user,
                    database,
                    text,
                })
            })
            .collect()
    }

    /// The SQL text of every statement the server ran (see [`PgServer::statement_log`]).
    pub fn statements_logged(&self) -> Vec<String> {
        self.statement_log().into_iter().map(|s| s.text).collect()
    }

    /// Statements run by one role (for example the gateway's), leaving out the harness's own.
    pub fn statements_by(&self, user: &str) -> Vec<String> {
        self.statement_log()
            .into_iter()
            .filter(|s| s.user == user)
            .map(|s| s.text)
            .collect()
    }

    /// The pg_hba method of each password login of `user` (`connection authenticated:` lines,
    /// PostgreSQL 14+): `["scram-sha-256"]`, `["md5"]`. Trust logins do not appear.
    pub fn authenticated(&self, user: &str) -> Vec<String> {
        self.log_records()
            .into_iter()
            .filter_map(|(_, _, msg)| {
                let rest = msg.strip_prefix("LOG:  connection authenticated: ")?;
                let identity = rest.strip_prefix("identity=\"")?;
                let (who, rest) = identity.split_once('"')?;
                if who != user {
                    return None;
                }
                let method = rest.trim_start().strip_prefix("method=")?;
                Some(method.split_whitespace().next()?.to_string())
            })
            .collect()
    }

    /// Stop now (`pg_ctl -m immediate`). Drop does this too.
    fn stop(&self) {
        if !self.data.join("postmaster.pid").exists() {
            return;
        }
        let out = run(
            40,
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "-t",
                "30",
                "stop",
            ],
            &[],
            true,
        );
        if !out.status.success() {
            eprintln!(
                "pg_ctl stop (port {}): {}{}",
                self.port,
                text(&out.stdout),
                text(&out.stderr)
            );
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- PostgreSQL log ({}), last lines ---\n{}",
                self.log.display(),
                self.log_tail(30)
            );
        }
        if std::env::var_os("WARDEN_KEEP_PG").is_some() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("keeping PostgreSQL dir {}", kept.keep().display());
        }
    }
}
