//! Client matrix, Python drivers: psycopg 3 (text and binary cursors, prepared statements,
//! server-side cursors, COPY), psycopg2, asyncpg (binary protocol, binary COPY) and SQLAlchemy
//! over psycopg 3 — each directly, then through the masking gateway (`common/clients.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::clients::Matrix;

#[test]
fn psycopg3() {
    Matrix::start().python("psycopg3.py");
}

#[test]
fn psycopg2() {
    Matrix::start().python("psycopg2_client.py");
}

#[test]
fn asyncpg() {
    Matrix::start().python("asyncpg_client.py");
}

#[test]
fn sqlalchemy() {
    Matrix::start().python("sqlalchemy_client.py");
}
