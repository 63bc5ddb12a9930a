//! Client matrix, pgx v4 (Go, binary format for known types, binary COPY) — directly, then
//! through the masking gateway (`common/clients.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::clients::{Matrix, clients_dir};

#[test]
fn pgx() {
    let bin = clients_dir().join("pgx_client");
    assert!(
        bin.exists(),
        "run tests/clients/install.sh: it builds pgx_client"
    );
    Matrix::start().run(bin.to_str().unwrap(), &[]);
}
