//! Client matrix, pgjdbc (Debian's libpostgresql-jdbc-java): text for the first executions,
//! binary once the driver prepares on the server — directly, then through the masking gateway
//! (`common/clients.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::clients::{Matrix, clients_dir, script};

#[test]
fn pgjdbc() {
    clients_dir();
    let m = Matrix::start();
    let java = script("PgJdbc.java");
    m.run(
        "java",
        &[
            "-cp",
            "/usr/share/java/postgresql.jar",
            java.to_str().unwrap(),
        ],
    );
}
