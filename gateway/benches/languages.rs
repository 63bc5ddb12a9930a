//! Policies per language, all figures from one run of one process: a Rust (`sql-guard`,
//! `pci-mask`), C (`allowlist-c`), JavaScript (`kube-guard-js`) and Python (`pci-mask-py`)
//! policy in one engine — component size, cold compile, cached load, instantiate + `init`,
//! memory per instance, `check` p50/p99, and `mask-rows` rows/s (the Rust and the Python
//! `pci-mask` on the same rows, with the same edits).
//!
//! `cargo bench -p warden-gateway --bench languages`. Builds every policy from source first
//! with `policies/build.sh` (into target/policies), then prints Markdown tables for
//! BENCHMARKS.md. No criterion: most figures are one-off (a compile, a load), and the call
//! latencies are percentiles over a fixed number of calls, as in the `policy` bench.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command as Process;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden::policy::{
    Command, Http, Kube, LoadSource, ModuleLimits, PolicyConfig, PolicyEngine, PolicyRef,
    Principal, Protocol, Row, Session,
};
use warden::units::ByteSize;

/// Timed `check` calls per module, after [`WARMUP`] untimed ones.
const CALLS: usize = 10_000;
const WARMUP: usize = 1_000;
/// Instances created (and kept idle) per module to time instantiation and measure RSS.
const INSTANCES: usize = 20;
/// Rows per `mask-rows` batch (5 text columns, one card number per row).
const BATCH: usize = 1_000;
/// How long each module masks batches.
const MASK_FOR: Duration = Duration::from_secs(3);

/// One policy under test: its module, the config its target gives it, and the command that
/// is typical for it.
struct Subject {
    language: &'static str,
    module: &'static str,
    config: &'static str,
    /// What the command is, for the table.
    what: &'static str,
    session: Session,
    command: Command,
}

fn subjects() -> Vec<Subject> {
    let sql = statement();
    vec![
        Subject {
            language: "Rust",
            module: "sql-guard",
            config: "",
            what: "SQL SELECT",
            session: common::session(),
            command: sql.clone(),
        },
        Subject {
            language: "Rust",
            module: "pci-mask",
            config: "",
            what: "SQL SELECT",
            session: common::session(),
            command: sql.clone(),
        },
        Subject {
            language: "C",
            module: "allowlist-c",
            config: r#"{"allow": ["select", "show"], "targets": {"payments": ["select", "insert"]}}"#,
            what: "SQL SELECT",
            session: common::session(),
            command: sql.clone(),
        },
        Subject {
            language: "JavaScript",
            module: "kube-guard-js",
            config: r#"{"secret_namespaces":["dev"],"protected_paths":["/admin"]}"#,
            what: "Kubernetes list pods",
            session: http_session(),
            command: list_pods(),
        },
        Subject {
            language: "Python",
            module: "pci-mask-py",
            config: "",
            what: "SQL SELECT",
            session: common::session(),
            command: sql,
        },
    ]
}

/// The statement of the `policy` bench: what an application typically sends.
fn statement() -> Command {
    let sql =
        "SELECT id, name, pan, email, note FROM cards WHERE owner_id = $1 ORDER BY id LIMIT 50";
    Command::Sql(warden::command::sql::parse(sql).unwrap().remove(0).sql)
}

fn http_session() -> Session {
    Session {
        id: "s-http".into(),
        protocol: Protocol::Http,
        target: "prod-cluster".into(),
        principal: Principal {
            subject: "alice".into(),
            issuer: "test".into(),
            groups: vec!["agents".into()],
            actors: vec!["alice".into(), "agent-7".into()],
        },
        client_addr: "127.0.0.1:5555".into(),
    }
}

/// `kubectl get pods -n prod`, as the HTTP adapter hands it to a policy.
fn list_pods() -> Command {
    Command::Http(Http {
        method: "GET".into(),
        path: "/api/v1/namespaces/prod/pods".into(),
        query: "limit=500".into(),
        headers: vec![
            ("accept".into(), "application/json".into()),
            ("user-agent".into(), "kubectl/v1.31.0 (linux/amd64)".into()),
        ],
        body: Vec::new(),
        kube: Some(Kube {
            verb: "list".into(),
            api_group: String::new(),
            resource: "pods".into(),
            subresource: String::new(),
            namespace: "prod".into(),
            name: String::new(),
        }),
    })
}

/// The process's resident set, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn engine_config(dir: &Path) -> PolicyConfig {
    // The call deadline only guards here: a generous one, so a slow batch is measured, not
    // cut off. The Python module gets the memory it is documented to need.
    PolicyConfig {
        dir: dir.to_path_buf(),
        cache_dir: Some(dir.join(".cache")),
        reload_interval: Duration::ZERO,
        deadline: Duration::from_secs(1),
        max_idle_instances: 64,
        modules: BTreeMap::from([(
            "pci-mask-py".to_string(),
            ModuleLimits {
                memory_limit: Some(ByteSize::parse("24MiB").unwrap()),
                ..ModuleLimits::default()
            },
        )]),
        ..PolicyConfig::default()
    }
}

/// Figures of one module, filled in as the run goes.
#[derive(Default)]
struct Figures {
    size: u64,
    artifact: u64,
    cold: Duration,
    cached: Duration,
    instantiate: Duration,
    memory_init: usize,
    memory_after_checks: usize,
    memory_after_mask: usize,
    rss_per_instance: i64,
    p50: Duration,
    p99: Duration,
    rows_per_s: f64,
    edits: usize,
    /// Calls run again on a fresh instance after a reused one met the memory cap: during the
    /// checks, during mask-rows.
    retries: (u64, u64),
}

fn main() {
    let root = common::workspace_root();
    let built = root.join("target/policies");
    let started = Instant::now();
    let status = Process::new(root.join("policies/build.sh"))
        .arg(&built)
        // build.sh copies the Rust components from <workspace>/target, wherever cargo's own
        // target directory is.
        .env_remove("CARGO_TARGET_DIR")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run policies/build.sh");
    assert!(status.success(), "policies/build.sh failed");
    eprintln!("built the policies in {:.1?}", started.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let subjects = subjects();
    let mut figures: Vec<Figures> = subjects.iter().map(|_| Figures::default()).collect();
    for (s, f) in subjects.iter().zip(&mut figures) {
        let to = dir.path().join(format!("{}.wasm", s.module));
        std::fs::copy(built.join(format!("{}.wasm", s.module)), &to).unwrap();
        f.size = std::fs::metadata(&to).unwrap().len();
    }
    let chains: Vec<PolicyRef> = subjects
        .iter()
        .map(|s| common::pref(s.module, s.config))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = engine_config(dir.path());

    // Cold: an empty cache, every module compiled (one at a time, each on both cores).
    let (cold_total, cached_total);
    {
        let t = Instant::now();
        let engine = rt.block_on(PolicyEngine::start(&config, &chains)).unwrap();
        cold_total = t.elapsed();
        for (s, f) in subjects.iter().zip(&mut figures) {
            let m = engine.module(s.module).unwrap();
            f.cold = m.load_time();
            let artifact = dir
                .path()
                .join(".cache")
                .join(format!("{}.cwasm", m.sha256()));
            f.artifact = std::fs::metadata(artifact).map_or(0, |m| m.len());
        }
        let report = engine.startup_report();
        assert!(report.loaded.iter().all(|l| l.2 == LoadSource::Compiled));
        assert!(report.rejected.is_empty(), "{report:?}");
    }
    // Cached: a second engine over the same cache, as after a restart. This one is measured.
    let t = Instant::now();
    let engine = Arc::new(rt.block_on(PolicyEngine::start(&config, &chains)).unwrap());
    cached_total = t.elapsed();
    assert!(
        engine
            .startup_report()
            .loaded
            .iter()
            .all(|l| l.2 == LoadSource::Cache)
    );
    for (s, f) in subjects.iter().zip(&mut figures) {
        f.cached = engine.module(s.module).unwrap().load_time();
    }

    rt.block_on(async {
        for (s, f) in subjects.iter().zip(&mut figures) {
            let module = engine.module(s.module).unwrap();
            // Instantiate + init: INSTANCES new instances, each under its own config string
            // (the same config with trailing spaces), all kept idle.
            let before = rss();
            let mut times = Vec::new();
            let mut first: Option<Arc<str>> = None;
            for i in 1..=INSTANCES {
                let variant: Arc<str> = format!("{}{}", s.config, " ".repeat(i)).into();
                let t = Instant::now();
                module.warm(&variant).await.unwrap();
                times.push(t.elapsed());
                first.get_or_insert(variant);
            }
            f.rss_per_instance = (rss() as i64 - before as i64) / INSTANCES as i64;
            times.sort();
            f.instantiate = times[INSTANCES / 2];
            f.memory_init = module.idle_memory(first.as_deref().unwrap_or(""))[0];

            // check: one task, sequential calls on the reused instance.
            let chain = [common::pref(s.module, s.config)];
            let mut lat = Vec::with_capacity(CALLS);
            for i in 0..WARMUP + CALLS {
                let t = Instant::now();
                let d = engine.check(&chain, &s.session, &s.command).await;
                let took = t.elapsed();
                assert!(
                    d.policies[0].failure.is_none(),
                    "{}: {:?}",
                    s.module,
                    d.policies
                );
                if i >= WARMUP {
                    lat.push(took);
                }
            }
            lat.sort();
            f.p50 = lat[CALLS / 2];
            f.p99 = lat[CALLS * 99 / 100];
            f.memory_after_checks = max(&module.idle_memory(s.config));
            f.retries.0 = module.fresh_retries();
        }

        // mask-rows: every module on the same batches (the non-masking ones return no edits,
        // which shows what passing 5,000 cells costs by itself).
        let (columns, batch) = common::card_rows(BATCH);
        let mut masked: BTreeMap<&str, Vec<Row>> = BTreeMap::new();
        for (s, f) in subjects.iter().zip(&mut figures) {
            let chain = [common::pref(s.module, s.config)];
            let decision = engine.assume_mask(&chain);
            let session = common::session();
            let t = Instant::now();
            let mut done = 0usize;
            while t.elapsed() < MASK_FOR || done < 3 * BATCH {
                let mut b = batch.clone();
                let summary = engine
                    .mask_rows(&decision, &session, &columns, &mut b)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", s.module));
                f.edits = summary.edited.len();
                done += b.len();
                masked.insert(s.module, b);
            }
            f.rows_per_s = done as f64 / t.elapsed().as_secs_f64();
            let module = engine.module(s.module).unwrap();
            f.memory_after_mask = max(&module.idle_memory(s.config));
            f.retries.1 = module.fresh_retries() - f.retries.0;
        }
        assert!(
            masked["pci-mask"] == masked["pci-mask-py"],
            "the Rust and the Python pci-mask masked the batch differently"
        );
        assert_eq!(figures[1].edits, BATCH, "one card number per row");
    });

    // Also the JavaScript policy on the SQL statement, which it lets through at its first
    // line: the cost of a call into SpiderMonkey with almost no JS run.
    let js_sql = rt.block_on(async {
        let chain = [common::pref(subjects[3].module, subjects[3].config)];
        let sql = statement();
        let mut lat = Vec::with_capacity(CALLS);
        for i in 0..WARMUP + CALLS {
            let t = Instant::now();
            engine.check(&chain, &common::session(), &sql).await;
            if i >= WARMUP {
                lat.push(t.elapsed());
            }
        }
        lat.sort();
        (lat[CALLS / 2], lat[CALLS * 99 / 100])
    });

    println!(
        "\nEngine start, all five modules (compile or load, then one instance each): \
         {cold_total:.2?} with an empty cache, {cached_total:.2?} over the cache.\n"
    );
    println!(
        "| language | module | component | compiled artifact | cold compile | cached load | \
         instantiate + init | linear memory after init | after {CALLS} checks | after mask-rows | \
         RSS per idle instance |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (s, f) in subjects.iter().zip(&figures) {
        println!(
            "| {} | `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.language,
            s.module,
            mb(f.size),
            mb(f.artifact),
            dur(f.cold),
            dur(f.cached),
            dur(f.instantiate),
            mib(f.memory_init as u64),
            mib(f.memory_after_checks as u64),
            mib(f.memory_after_mask as u64),
            mib(f.rss_per_instance.max(0) as u64),
        );
    }
    println!(
        "\n| language | module | `check` command | p50 | p99 | `mask-rows`, {BATCH}×5 rows/s | \
         memory-cap retries (check / mask-rows) |"
    );
    println!("|---|---|---|---:|---:|---:|---:|");
    for (s, f) in subjects.iter().zip(&figures) {
        let note = if f.edits == 0 { " (no edits)" } else { "" };
        println!(
            "| {} | `{}` | {} | {} | {} | {:.0}{note} | {} / {} |",
            s.language,
            s.module,
            s.what,
            dur(f.p50),
            dur(f.p99),
            f.rows_per_s,
            f.retries.0,
            f.retries.1,
        );
    }
    println!(
        "| JavaScript | `kube-guard-js` | SQL SELECT (not its business: returns at once) | {} | {} | | |",
        dur(js_sql.0),
        dur(js_sql.1)
    );
}

fn max(v: &[usize]) -> usize {
    v.iter().copied().max().unwrap_or(0)
}

fn dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn mb(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.2} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.0} KB", bytes as f64 / 1e3)
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / f64::from(1u32 << 20))
}
