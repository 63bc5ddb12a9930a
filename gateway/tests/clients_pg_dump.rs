//! Client matrix, pg_dump / pg_restore: a custom-format dump through the gateway restores into
//! an empty database, keys and foreign keys included; through the masking gateway it holds
//! only masked card numbers, each still valid for its column's type (`common/clients.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::clients::{DENIED, Matrix, script};

/// The quickstart's chain with one change: sql-guard holds an explicit LOCK for approval, and
/// pg_dump sends `LOCK TABLE ... IN ACCESS SHARE MODE` for every table it dumps (the WIT does
/// not tell a policy the lock's mode), so a target for dumps allows `LockStmt`. Its catalog
/// queries (`x OPERATOR(pg_catalog.=) ANY (...)`, which the second SQL parser cannot read) are
/// judged from the server's own tree.
const DUMPS: &str = r#"{ module = "sql-guard", config = { allow = ["drop"], allow_statements = ["LockStmt"], write_budget = { per_table = 1000 } } },
   { module = "pci-mask", config = { sensitive_columns = ["matrix_cards.pan"] } }"#;

#[test]
fn pg_dump_and_pg_restore() {
    let m = Matrix::start_with(DUMPS);
    m.pg.psql("CREATE DATABASE restored_direct");
    m.pg.psql("CREATE DATABASE restored_masked");
    let s = script("pg_dump.sh");
    let s = s.to_str().unwrap();
    let direct_restore = m.pg.superuser_conn_str("restored_direct");
    let masked_restore = m.pg.superuser_conn_str("restored_masked");
    m.run_mode(
        s,
        &["--restore-dsn", &direct_restore],
        &m.direct,
        "direct",
        &[],
    );
    m.run_mode(
        s,
        &["--restore-dsn", &masked_restore],
        &m.masked,
        "masked",
        &["--denied-sql", DENIED],
    );
}
