//! Client matrix, node-postgres: text and binary results, named prepared statements —
//! directly, then through the masking gateway (`common/clients.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::clients::{Matrix, clients_dir, script};

#[test]
fn node_postgres() {
    // The script finds `pg` in target/clients/node.
    clients_dir();
    let m = Matrix::start();
    let js = script("node_pg.js");
    m.run("node", &[js.to_str().unwrap()]);
}
