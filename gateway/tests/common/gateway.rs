//! A running `warden serve` for end-to-end tests: policies built from source into a temp
//! policy dir, a config pointing at a real PostgreSQL, ports chosen by the OS (`:0`) and read
//! back from the gateway's stdout, tokens minted with the same secret.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::pg::{Auth, PgServer};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use warden::identity::IdentityConfig;

pub use super::serve::{AUDIENCE, ISSUER};
/// The gateway's own login on the test server.
pub const GATEWAY_ROLE: &str = "warden_gw";
pub const GATEWAY_PASSWORD: &str = "gw-secret-not-for-clients";

pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub pg_port: u16,
    pub admin_port: u16,
    child: Option<Child>,
    pub config_path: PathBuf,
}

/// Extra `[targets.*]` TOML and policy crates to install, on top of the standard `payments`
/// (sql-guard, cardholder-approval with max_limit 5, pci-mask) and `open` (allow-all) targets.
pub struct Extra<'a> {
    pub targets: &'a str,
    pub policies: &'a [&'a str],
    pub approval_timeout: &'a str,
    /// More `[postgres]` lines (TLS, idle timeout...).
    pub listener: &'a str,
    /// `allow_plaintext_password`.
    pub plaintext: bool,
    /// More `[identity]` lines (`leeway = "1s"`).
    pub identity: &'a str,
    /// More `[audit]` lines (`min_free = "1GiB"`).
    pub audit: &'a str,
    /// More `[admin]` lines (`tls_cert = ...`).
    pub admin: &'a str,
    /// Serve with `--log-format json` at the default level, the log in `gateway.log`.
    pub json_log: bool,
}

impl Default for Extra<'_> {
    fn default() -> Self {
        Extra {
            targets: "",
            policies: &[],
            approval_timeout: "30s",
            listener: "",
            plaintext: true,
            identity: "",
            audit: "",
            admin: "",
            json_log: false,
        }
    }
}

/// A target block for `database` on the test server with the given chain.
pub fn target(name: &str, pg: &PgServer, database: &str, chain: &str) -> String {
    target_as(name, pg, database, chain, GATEWAY_ROLE, Some("pg-password"))
}

/// A target block logging in as `user` (with `password_file`, or none for trust).
pub fn target_as(
    name: &str,
    pg: &PgServer,
    database: &str,
    chain: &str,
    user: &str,
    password_file: Option<&str>,
) -> String {
    let password = password_file
        .map(|f| format!("password_file = \"{f}\""))
        .unwrap_or_default();
    format!(
        r#"
[targets.{name}]
protocol = "postgres"
policies = [{chain}]
allow_subjects = ["*"]
[targets.{name}.postgres]
host = "127.0.0.1"
port = {port}
database = "{database}"
user = "{user}"
{password}
"#,
        port = pg.port
    )
}

impl Gateway {
    pub fn start(pg: &PgServer, database: &str, extra: Extra<'_>) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        for p in ["allow-all", "pci-mask", "sql-guard", "cardholder-approval"]
            .iter()
            .chain(extra.policies)
        {
            super::install(p, &policies, &format!("{p}.wasm"));
        }
        std::fs::write(dir.path().join("secret"), super::serve::SECRET).unwrap();
        std::fs::write(
            dir.path().join("pg-password"),
            format!("{GATEWAY_PASSWORD}\n"),
        )
        .unwrap();
        let mut config = format!(
            r#"
[policy]
dir = "policies"
cache_dir = "{cache}"
reload_interval = "100ms"
# Wall-clock deadline: generous, because these tests run a debug build on a shared 2-core
# machine; the deadline's own behaviour is tested in engine.rs.
deadline = "250ms"
[audit]
path = "audit.redb"
{audit}
[identity]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
hs256_secret_file = "secret"
{identity}
[postgres]
listen = "127.0.0.1:0"
allow_plaintext_password = {plaintext}
mask_batch_rows = 3
{listener}
[admin]
listen = "127.0.0.1:0"
approver_groups = ["approvers"]
approval_timeout = "{timeout}"
{admin}
"#,
            timeout = extra.approval_timeout,
            cache = super::compile_cache().display(),
            plaintext = extra.plaintext,
            listener = extra.listener,
            identity = extra.identity,
            audit = extra.audit,
            admin = extra.admin,
        );
        config.push_str(&target(
            "payments",
            pg,
            database,
            r#"{ module = "sql-guard" }, { module = "cardholder-approval", config = { tables = ["cards"], max_limit = 5 } }, { module = "pci-mask" }"#,
        ));
        config.push_str(&target("open", pg, database, r#"{ module = "allow-all" }"#));
        config.push_str(extra.targets);
        let config_path = dir.path().join("warden.toml");
        std::fs::write(&config_path, config).unwrap();

        let (child, ports) = if extra.json_log {
            super::serve::start_json(&config_path, &dir.path().join("gateway.log"))
        } else {
            super::serve::start(&config_path)
        };
        let (pg_port, admin_port) = (ports["postgres"], ports["admin"]);
        Gateway {
            dir,
            pg_port,
            admin_port,
            child: Some(child),
            config_path,
        }
    }

    /// A token for `sub` acting through `actors`, with `groups`.
    pub fn token(&self, sub: &str, actors: &[&str], groups: &[&str]) -> String {
        super::serve::token(self.dir.path(), sub, actors, groups)
    }

    pub fn identity(&self) -> IdentityConfig {
        super::serve::identity(self.dir.path())
    }

    /// libpq-style connection string through the gateway to `target`.
    pub fn conninfo(&self, target: &str, token: &str) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={target} user=agent password={token} sslmode=disable",
            self.pg_port
        )
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.redb")
    }

    pub fn policy_dir(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    /// Stop the gateway (SIGTERM, then wait) so its audit database can be opened.
    pub fn stop(&mut self) {
        super::serve::stop(&mut self.child);
    }

    /// Kill the gateway with SIGKILL: no shutdown, no session ends.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Start the gateway again on the same config and audit database.
    pub fn restart(&mut self) {
        self.stop();
        let (child, ports) = super::serve::start(&self.config_path);
        self.pg_port = ports["postgres"];
        self.admin_port = ports["admin"];
        self.child = Some(child);
    }

    /// The directory holding the config, secret and audit database.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the gateway process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `warden ARGS` with `WARDEN_TOKEN` set to `token` and no `WARDEN_ADMIN`/`WARDEN_ADMIN_CA`
/// from the environment: (success, stdout, stderr).
pub fn warden_as(token: &str, args: &[&str]) -> (bool, String, String) {
    let (code, out, err) = warden_code(token, args);
    (code == 0, out, err)
}

/// [`warden_as`] with the exit code: (exit code, stdout, stderr).
pub fn warden_code(token: &str, args: &[&str]) -> (i32, String, String) {
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

/// Run `psql` with a conninfo and SQL; returns (success, stdout, stderr).
pub fn psql(conninfo: &str, sql: &str, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new("psql")
        .arg(conninfo)
        .args(["-X", "-v", "ON_ERROR_STOP=1"])
        .args(extra)
        .args(["-c", sql])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Scan a file's bytes for `needle`, and the plain bytes of every zstd frame in it: the audit
/// store keeps recordings compressed, so a clear card number in one would not show in the raw
/// bytes. Works while the gateway holds the file open.
pub fn file_contains(path: &Path, needle: &str) -> bool {
    // The audit store's journal holds what was acknowledged since its last durable commit:
    // it is part of the store, and scanned with it.
    let journal = PathBuf::from(format!("{}.journal", path.display()));
    bytes_contain(&std::fs::read(path).unwrap(), needle)
        || std::fs::read(journal).is_ok_and(|bytes| bytes_contain(&bytes, needle))
}

fn bytes_contain(bytes: &[u8], needle: &str) -> bool {
    use std::io::Read;
    let found = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    if found(bytes) {
        return true;
    }
    const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
    let frames = bytes.windows(4).enumerate().filter(|(_, w)| *w == MAGIC);
    for (at, _) in frames {
        let Ok(decoder) = zstd::stream::read::Decoder::with_buffer(&bytes[at..]) else {
            continue;
        };
        let mut plain = Vec::new();
        // A damaged or cut frame still yields what it decoded before the error.
        let _ = decoder
            .single_frame()
            .take(256 << 20)
            .read_to_end(&mut plain);
        if found(&plain) {
            return true;
        }
    }
    false
}

/// A server with the sample card data (examples/cards.sql) in `payments`, owned by the
/// gateway's role, so a DROP that reached the server would succeed: refusals must come from
/// the gateway.
pub fn card_server() -> PgServer {
    let pg = PgServer::start();
    pg.create_role(GATEWAY_ROLE, GATEWAY_PASSWORD, Auth::Scram);
    pg.create_database("payments");
    let cards = super::workspace_root().join("examples/cards.sql");
    pg.psql_file("payments", &cards, &[("gateway_role", GATEWAY_ROLE)]);
    pg.psql_db(
        "payments",
        &format!("ALTER TABLE cards OWNER TO {GATEWAY_ROLE}; ALTER TABLE owners OWNER TO {GATEWAY_ROLE}; ALTER TABLE merchants OWNER TO {GATEWAY_ROLE}"),
    );
    pg
}

/// A tokio-postgres client (no TLS) whose connection task runs in the background.
pub async fn connect(conninfo: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}
