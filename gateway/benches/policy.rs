//! Policy engine benchmarks: one `check` of a typical SQL statement through the shipped Rust
//! policies, `mask-rows` throughput of `pci-mask` over 5-column rows, and what instance reuse
//! saves over a fresh instance per call. Policies are built from source first.
//!
//! `cargo bench -p warden-gateway --bench policy`; prints p50/p99 latencies, then criterion's
//! figures. Results and the machine they came from are recorded in BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::{pref, session};
use criterion::{Criterion, Throughput};
use std::path::Path;
use std::time::{Duration, Instant};
use warden::policy::{Command, PolicyConfig, PolicyEngine, PolicyRef};

fn statement() -> Command {
    let sql =
        "SELECT id, name, pan, email, note FROM cards WHERE owner_id = $1 ORDER BY id LIMIT 50";
    Command::Sql(warden::command::sql::parse(sql).unwrap().remove(0).sql)
}

async fn engine(dir: &Path, chain: &[PolicyRef], max_idle: usize) -> PolicyEngine {
    for r in chain {
        common::install(&r.module, dir, &format!("{}.wasm", r.module));
    }
    let config = PolicyConfig {
        dir: dir.to_path_buf(),
        reload_interval: Duration::ZERO,
        max_idle_instances: max_idle,
        ..PolicyConfig::default()
    };
    PolicyEngine::start(&config, chain).await.unwrap()
}

/// p50 / p99 of `n` sequential checks, as a user of the engine sees them (one task).
async fn percentiles(engine: &PolicyEngine, chain: &[PolicyRef], n: usize) -> (Duration, Duration) {
    let (s, c) = (session(), statement());
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(engine.check(chain, &s, &c).await);
        lat.push(t.elapsed());
    }
    lat.sort();
    (lat[n / 2], lat[n * 99 / 100])
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shipped = vec![
        pref("sql-guard", ""),
        pref(
            "cardholder-approval",
            r#"{"tables":["cards"],"max_limit":100}"#,
        ),
        pref("pci-mask", ""),
    ];
    let allow = vec![pref("allow-all", "")];
    let mask = vec![pref("pci-mask", "")];
    let (engine, fresh) = rt.block_on(async {
        let all: Vec<PolicyRef> = shipped.iter().chain(&allow).cloned().collect();
        let reused = engine(dir.path(), &all, 16).await;
        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh = engine(fresh_dir.path(), &allow, 0).await;
        std::mem::forget(fresh_dir);
        (reused, fresh)
    });

    rt.block_on(async {
        for (name, chain, eng, n) in [
            ("allow-all (reused instance)", &allow, &engine, 200_000),
            (
                "sql-guard + cardholder-approval + pci-mask",
                &shipped,
                &engine,
                200_000,
            ),
            ("allow-all (fresh instance per call)", &allow, &fresh, 5_000),
        ] {
            let (p50, p99) = percentiles(eng, chain, n).await;
            println!("check latency, {name}: p50 {p50:?}  p99 {p99:?}  ({n} calls)");
        }
        let (columns, batch) = common::card_rows(1000);
        let decision = engine.assume_mask(&mask);
        let started = Instant::now();
        let mut total = 0usize;
        while started.elapsed() < Duration::from_secs(3) {
            let mut b = batch.clone();
            engine
                .mask_rows(&decision, &session(), &columns, &mut b)
                .await
                .unwrap();
            total += b.len();
        }
        let rate = total as f64 / started.elapsed().as_secs_f64();
        println!(
            "mask-rows through pci-mask, 1000-row batches of 5 columns: {rate:.0} rows/s (one core)"
        );
    });

    let mut c = Criterion::default().configure_from_args();
    let (s, cmd) = (session(), statement());
    let mut g = c.benchmark_group("check");
    g.bench_function("allow-all", |b| {
        b.iter(|| rt.block_on(engine.check(&allow, &s, &cmd)))
    });
    g.bench_function("shipped-chain", |b| {
        b.iter(|| rt.block_on(engine.check(&shipped, &s, &cmd)))
    });
    g.bench_function("allow-all-fresh-instance", |b| {
        b.iter(|| rt.block_on(fresh.check(&allow, &s, &cmd)))
    });
    g.finish();

    let mut g = c.benchmark_group("mask-rows");
    for n in [100usize, 1000] {
        let (columns, batch) = common::card_rows(n);
        let decision = engine.assume_mask(&mask);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("pci-mask/{n}x5"), |b| {
            b.iter_batched(
                || batch.clone(),
                |mut rows| {
                    rt.block_on(engine.mask_rows(&decision, &s, &columns, &mut rows))
                        .unwrap()
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
    c.final_summary();
}
