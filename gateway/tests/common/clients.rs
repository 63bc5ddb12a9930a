//! The PostgreSQL client matrix (`tests/clients/`): real drivers, installed by
//! `tests/clients/install.sh`, run against a real PostgreSQL loaded with the matrix fixture —
//! first directly (their expected values are the server's), then through a gateway whose target
//! is the quickstart's chain: `sql-guard` measuring writes against a budget, `pci-mask` masking
//! and refusing transformed card numbers by lineage (pg_dump: with explicit locks allowed,
//! see `clients_pg_dump.rs`). Each script checks
//! what it reads itself and exits non-zero at the first difference.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::gateway::{Extra, GATEWAY_PASSWORD, GATEWAY_ROLE, Gateway, target};
use super::pg::{Auth, PgServer};
use std::path::PathBuf;
use std::process::Command;

/// A statement the matrix target refuses (42501): a card number through an expression.
pub const DENIED: &str = "SELECT reverse(pan) FROM matrix_cards";

pub struct Matrix {
    pub pg: PgServer,
    pub gw: Gateway,
    /// Direct to the server as the gateway's role (what the scripts expect in `direct` mode).
    pub direct: String,
    /// Through the gateway with a token.
    pub masked: String,
}

/// Where the installed clients live (`target/clients`), or a panic that says how to get them.
pub fn clients_dir() -> PathBuf {
    let dir = super::workspace_root().join("target/clients");
    assert!(
        dir.join("venv/bin/python").exists(),
        "the client matrix is not installed: run tests/clients/install.sh (tests/run.sh does)"
    );
    dir
}

pub fn script(name: &str) -> PathBuf {
    super::workspace_root().join("tests/clients").join(name)
}

/// The quickstart's chain: every write measured against a budget (the gateway's own
/// statements go between the client's), card numbers masked and refused by lineage. (DROP
/// allowed: the scripts drop their scratch tables.)
pub const QUICKSTART: &str = r#"{ module = "sql-guard", config = { allow = ["drop"], write_budget = { per_table = 1000 } } },
   { module = "pci-mask", config = { sensitive_columns = ["matrix_cards.pan"] } }"#;

impl Matrix {
    pub fn start() -> Matrix {
        Matrix::start_with(QUICKSTART)
    }

    pub fn start_with(chain: &str) -> Matrix {
        let pg = PgServer::start();
        pg.create_role(GATEWAY_ROLE, GATEWAY_PASSWORD, Auth::Scram);
        pg.psql(&format!("CREATE DATABASE matrix OWNER {GATEWAY_ROLE}"));
        pg.psql_file("matrix", &script("fixture.sql"), &[]);
        pg.psql_db(
            "matrix",
            &format!(
                "ALTER TABLE matrix_types OWNER TO {GATEWAY_ROLE};
                 ALTER TABLE matrix_cards OWNER TO {GATEWAY_ROLE};
                 ALTER TABLE matrix_orders OWNER TO {GATEWAY_ROLE};"
            ),
        );
        let targets = target("matrix", &pg, "matrix", chain);
        let gw = Gateway::start(
            &pg,
            "matrix",
            Extra {
                targets: &targets,
                ..Extra::default()
            },
        );
        let token = gw.token("alice", &["agent-7"], &[]);
        let direct = pg.conn_str(GATEWAY_ROLE, Some(GATEWAY_PASSWORD), "matrix");
        let masked = gw.conninfo("matrix", &token);
        Matrix {
            pg,
            gw,
            direct,
            masked,
        }
    }

    /// Run a client in both modes; panics with its output when either fails. `program` and
    /// `args` come before the common `--dsn --mode --denied-sql` arguments.
    pub fn run(&self, program: &str, args: &[&str]) {
        self.run_mode(program, args, &self.direct, "direct", &[]);
        self.run_mode(
            program,
            args,
            &self.masked,
            "masked",
            &["--denied-sql", DENIED],
        );
    }

    pub fn run_mode(&self, program: &str, args: &[&str], dsn: &str, mode: &str, extra: &[&str]) {
        let out = Command::new(program)
            .args(args)
            .args(["--dsn", dsn, "--mode", mode])
            .args(extra)
            .env("PGCONNECT_TIMEOUT", "20")
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{program} {args:?} --mode {mode} failed:\n{stdout}\n{stderr}\n--- server log ---\n{}",
            self.pg.log_tail(30)
        );
        assert!(stdout.contains("ok "), "{program}: no ok line:\n{stdout}");
        eprintln!("{mode}: {}", stdout.trim());
    }

    /// A Python client from the matrix venv.
    pub fn python(&self, name: &str) {
        let python = clients_dir().join("venv/bin/python");
        let s = script(name);
        self.run(python.to_str().unwrap(), &[s.to_str().unwrap()]);
    }
}
