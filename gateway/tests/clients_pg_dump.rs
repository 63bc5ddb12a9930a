//! Client matrix, pg_dump / pg_restore: a custom-format dump through the gateway restores into
//! an empty database, keys and foreign keys included; through the masking gateway it holds
//! only masked card numbers, each still valid for its column's type (`common/clients.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::clients::{DENIED, MASK_ONLY, Matrix, script};

/// Through pci-mask alone: sql-guard holds each `LOCK TABLE ... IN ACCESS SHARE MODE` pg_dump
/// sends for approval, since the WIT does not tell a policy the lock's mode (its catalog
/// queries, `OPERATOR(pg_catalog.=) ANY`, are read from the server's tree and pass).
#[test]
fn pg_dump_and_pg_restore() {
    let m = Matrix::start_with(MASK_ONLY);
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
