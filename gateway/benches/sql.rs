//! What reading SQL costs per statement: PostgreSQL's grammar (libpg_query: split, then its
//! summary or a full parse) and sqlparser's second reading, separately and together, for the
//! statements pgbench sends and for a catalog query of the kind psql's `\d` sends; and one
//! 1 MiB message of 116,508 statements (the old splitter was quadratic on such a message).
//!
//! `cargo bench -p warden-gateway --bench sql`. Results and the machine are in BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use warden::command::sql::{self, describe, server};

const STATEMENTS: &[(&str, &str)] = &[
    (
        "pgbench -S select",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
    ),
    (
        "pgbench update",
        "UPDATE pgbench_accounts SET abalance = abalance + -4030 WHERE aid = 48213;",
    ),
    (
        "pgbench insert",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (3, 1, 48213, -4030, CURRENT_TIMESTAMP);",
    ),
    (
        "psql \\d catalog query",
        "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), \
         (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) FROM pg_catalog.pg_attrdef d \
          WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef), a.attnotnull, \
         (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t \
          WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation \
         FROM pg_catalog.pg_attribute a WHERE a.attrelid = '16384' AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum;",
    ),
];

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("sql per statement");
    for (name, text) in STATEMENTS {
        g.bench_with_input(
            BenchmarkId::new("libpg_query split + read", name),
            text,
            |b, t| {
                b.iter(|| {
                    for piece in server::split(black_box(t)).unwrap() {
                        black_box(server::read(piece).unwrap());
                    }
                })
            },
        );
        let piece = server::split(text).unwrap()[0];
        g.bench_with_input(
            BenchmarkId::new("sqlparser describe", name),
            piece,
            |b, t| b.iter(|| black_box(describe::describe(black_box(t)))),
        );
        g.bench_with_input(
            BenchmarkId::new("both, with checks (sql::parse)", name),
            text,
            |b, t| b.iter(|| black_box(sql::parse(black_box(t)).unwrap())),
        );
    }
    g.finish();

    let long = "select 1;".repeat((1 << 20) / 9);
    let mut g = c.benchmark_group("sql 1 MiB message");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(long.len() as u64));
    g.bench_function("116,508 statements (sql::parse)", |b| {
        b.iter(|| black_box(sql::parse(black_box(&long)).unwrap().len()))
    });
    g.finish();
    c.final_summary();
}
