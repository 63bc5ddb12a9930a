//! The policy engine against real components built from source: verdict chains, fail-closed
//! behaviour for misbehaving modules, the sandbox, the compile cache, and hot reload under load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{install, policy_wasm, pref, session};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use warden::policy::{
    Column, Command, LoadSource, PolicyConfig, PolicyEngine, PolicyError, PolicyRef, Verdict,
};

fn select() -> Command {
    Command::Sql(
        warden::command::sql::parse("SELECT name FROM cards WHERE id = 1")
            .unwrap()
            .remove(0)
            .sql,
    )
}

fn limits(dir: &Path) -> PolicyConfig {
    PolicyConfig {
        dir: dir.to_path_buf(),
        cache_dir: Some(dir.join(".cache")),
        reload_interval: Duration::ZERO,
        ..PolicyConfig::default()
    }
}

async fn engine_with(dir: &Path, modules: &[(&str, &str)], chains: &[PolicyRef]) -> PolicyEngine {
    for (crate_name, file) in modules {
        install(crate_name, dir, &format!("{file}.wasm"));
    }
    PolicyEngine::start(&limits(dir), chains).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_combines_and_records_every_policy() {
    let dir = tempfile::tempdir().unwrap();
    let chain = vec![pref("allow-all", ""), pref("misbehave", "check:error")];
    let engine = engine_with(
        dir.path(),
        &[("allow-all", "allow-all"), ("misbehave", "misbehave")],
        &chain,
    )
    .await;
    let d = engine.check(&chain, &session(), &select()).await;
    assert_eq!(
        d.verdict,
        Verdict::Deny("misbehave: deliberate error".into())
    );
    assert_eq!(d.decided_by.as_deref(), Some("misbehave"));
    assert_eq!(d.policies.len(), 2);
    assert_eq!(d.policies[0].verdict, Verdict::Allow);
    for p in &d.policies {
        assert_eq!(
            p.sha256.len(),
            64,
            "every verdict names its module's sha256"
        );
        assert!(p.failure.is_none());
    }
    // The allow-all module alone allows.
    let d = engine.check(&chain[..1], &session(), &select()).await;
    assert_eq!(d.verdict, Verdict::Allow);
    // An empty chain denies.
    let d = engine.check(&[], &session(), &select()).await;
    assert!(matches!(d.verdict, Verdict::Deny(_)));
}

/// Each misbehaviour yields a deny with its cause, and the engine keeps answering afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_policies_fail_closed() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        ("check:loop", "deadline"),
        ("check:alloc", "memory-cap"),
        ("check:trap", "trap"),
        ("check:recurse", "trap"),
        ("init:error", "init"),
        ("init:loop", "deadline"),
        ("init:alloc", "memory-cap"),
        ("init:trap", "trap"),
    ];
    let mut chains: Vec<PolicyRef> = cases.iter().map(|(c, _)| pref("misbehave", c)).collect();
    chains.push(pref("allow-all", ""));
    for (crate_name, file) in [("allow-all", "allow-all"), ("misbehave", "misbehave")] {
        install(crate_name, dir.path(), &format!("{file}.wasm"));
    }
    // The deadline is wall time: on a loaded 2-core machine, filling 16 MiB can take longer
    // than 10 ms and would be stopped by the deadline instead of the cap. A longer deadline
    // keeps each misbehaviour's own cause observable.
    let config = PolicyConfig {
        deadline: Duration::from_millis(500),
        ..limits(dir.path())
    };
    let engine = PolicyEngine::start(&config, &chains).await.unwrap();
    let good = [pref("allow-all", "")];
    for (config, cause) in cases {
        let chain = [pref("misbehave", config)];
        // Twice: a failed instance is dropped, and a fresh one fails the same way.
        for round in 0..2 {
            let d = engine.check(&chain, &session(), &select()).await;
            let failure = d.policies[0].failure.clone();
            assert!(
                matches!(d.verdict, Verdict::Deny(_)),
                "{config} round {round}: {:?}",
                d.verdict
            );
            assert_eq!(
                failure.map(|f| f.cause()),
                Some(*cause),
                "{config} round {round}"
            );
            assert_eq!(
                engine.check(&good, &session(), &select()).await.verdict,
                Verdict::Allow
            );
        }
        let module = engine.module("misbehave").unwrap();
        assert_eq!(
            module.idle_instances(config),
            0,
            "{config}: a failed instance is never reused"
        );
    }
    // The stack-overflow trap says so.
    let d = engine
        .check(&[pref("misbehave", "check:recurse")], &session(), &select())
        .await;
    assert!(
        d.verdict.reason().unwrap().contains("stack"),
        "{:?}",
        d.verdict
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_answers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let chains = [
        pref("misbehave", "check:huge"),
        pref("misbehave", "mask:huge"),
        pref("misbehave", "mask:bad-edit"),
        pref("misbehave", "mask:error"),
        pref("misbehave", "mask:loop"),
    ];
    let engine = engine_with(dir.path(), &[("misbehave", "misbehave")], &chains).await;
    // An 8 MiB deny reason is cut to a readable size.
    let d = engine.check(&chains[..1], &session(), &select()).await;
    assert!(d.verdict.reason().unwrap().len() <= 1100);

    let columns = vec![Column {
        name: "pan".into(),
        type_name: "text".into(),
    }];
    for (chain, cause) in [
        (&chains[1], "malformed"),
        (&chains[2], "malformed"),
        (&chains[3], "refused"),
        (&chains[4], "deadline"),
    ] {
        let chain = std::slice::from_ref(chain);
        let d = engine.check(chain, &session(), &select()).await;
        assert_eq!(d.verdict, Verdict::Mask);
        let mut rows = vec![vec![Some("4111111111111111".to_string())]];
        let err = engine
            .mask_rows(&d, &session(), &columns, &mut rows)
            .await
            .unwrap_err();
        assert_eq!(err.error.cause(), cause, "{}: {err}", chain[0].config);
        assert_eq!(err.policy, "misbehave");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_module_denies_and_others_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let chain = [pref("allow-all", ""), pref("not-there", "")];
    let engine = engine_with(dir.path(), &[("allow-all", "allow-all")], &chain).await;
    let d = engine.check(&chain, &session(), &select()).await;
    assert_eq!(
        d.policies[1].failure,
        Some(PolicyError::Missing("not-there".into()))
    );
    assert!(matches!(d.verdict, Verdict::Deny(ref r) if r.contains("not loaded")));
    assert_eq!(
        engine
            .check(&chain[..1], &session(), &select())
            .await
            .verdict,
        Verdict::Allow
    );
}

/// The sandbox grants nothing: no files, no environment, a frozen clock, no sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_get_no_files_env_clock_or_network() {
    let dir = tempfile::tempdir().unwrap();
    let chain = [pref("misbehave", "check:sandbox")];
    let engine = engine_with(dir.path(), &[("misbehave", "misbehave")], &chain).await;
    let d = engine.check(&chain, &session(), &select()).await;
    let report = d.verdict.reason().unwrap().to_string();
    assert!(report.contains("file=Err("), "{report}");
    assert!(report.contains("dir=Err("), "{report}");
    assert!(report.contains("env=0"), "{report}");
    assert!(report.contains("clock=0"), "{report}");
    assert!(report.contains("socket=Err("), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_artifacts_are_cached_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let chain = [pref("allow-all", "")];
    let first = engine_with(dir.path(), &[("allow-all", "allow-all")], &chain).await;
    assert_eq!(first.startup_report().loaded[0].2, LoadSource::Compiled);
    drop(first);
    let second = PolicyEngine::start(&limits(dir.path()), &chain)
        .await
        .unwrap();
    assert_eq!(second.startup_report().loaded[0].2, LoadSource::Cache);
    assert_eq!(
        second.check(&chain, &session(), &select()).await.verdict,
        Verdict::Allow
    );
}

/// Replace a module while tasks call it: no call fails, and once a task sees the new sha256 it
/// never sees the old one again. A broken or init-failing replacement is rejected and the
/// working version stays; removing the file unloads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load() {
    let dir = tempfile::tempdir().unwrap();
    install("allow-all", dir.path(), "p.wasm");
    let chain = vec![pref("p", "check:error")];
    let mut config = limits(dir.path());
    config.reload_interval = Duration::from_millis(50);
    // The deadline is wall time; on a loaded 2-core machine a preempted call could miss 10 ms.
    // This test is about reload, so give calls room.
    config.deadline = Duration::from_millis(500);
    let engine = Arc::new(PolicyEngine::start(&config, &chain).await.unwrap());
    let old_sha = engine.module("p").unwrap().sha256().to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (engine, chain, stop, calls) =
            (engine.clone(), chain.clone(), stop.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen_new = false;
            let mut shas = HashSet::new();
            while !stop.load(Ordering::Relaxed) {
                let d = engine.check(&chain, &session(), &select()).await;
                calls.fetch_add(1, Ordering::Relaxed);
                let p = &d.policies[0];
                assert!(
                    p.failure.is_none(),
                    "a call failed during reload: {:?}",
                    p.failure
                );
                if seen_new {
                    assert_ne!(
                        p.verdict,
                        Verdict::Allow,
                        "old version answered after the new one"
                    );
                }
                if p.verdict != Verdict::Allow {
                    seen_new = true;
                }
                shas.insert(p.sha256.clone());
                tokio::task::yield_now().await;
            }
            shas
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    install("misbehave", dir.path(), "p.wasm");
    let new_sha = wait_for_sha_change(&engine, &old_sha).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = HashSet::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert!(calls.load(Ordering::Relaxed) > 100);
    assert_eq!(all, HashSet::from([old_sha.clone(), new_sha.clone()]));
    let d = engine.check(&chain, &session(), &select()).await;
    assert_eq!(
        d.verdict,
        Verdict::Deny("misbehave: deliberate error".into())
    );

    // A file that is not a component, then a module whose init refuses the target's config:
    // both rejected, the working version stays. (A second engine without a watcher, so the
    // rescan reports deterministically.)
    let q_chain = vec![pref("q", "init:error")];
    install("allow-all", dir.path(), "q.wasm");
    let engine2 = PolicyEngine::start(&limits(dir.path()), &q_chain)
        .await
        .unwrap();
    let q_sha = engine2.module("q").unwrap().sha256().to_string();
    std::fs::write(dir.path().join("q.wasm"), b"not wasm").unwrap();
    let report = engine2.rescan().await;
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert_eq!(engine2.module("q").unwrap().sha256(), q_sha);
    install("misbehave", dir.path(), "q.wasm");
    let report = engine2.rescan().await;
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert!(report.rejected[0].1.contains("init"), "{report:?}");
    assert_eq!(engine2.module("q").unwrap().sha256(), q_sha);
    assert_eq!(
        engine2.check(&q_chain, &session(), &select()).await.verdict,
        Verdict::Allow
    );

    // Removing the file unloads the module: its targets deny.
    std::fs::remove_file(dir.path().join("p.wasm")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = engine.check(&chain, &session(), &select()).await;
    assert_eq!(
        d.policies[0].failure,
        Some(PolicyError::Missing("p".into()))
    );
}

async fn wait_for_sha_change(engine: &PolicyEngine, old: &str) -> String {
    for _ in 0..200 {
        if let Some(m) = engine.module("p")
            && m.sha256() != old
        {
            return m.sha256().to_string();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("hot reload did not pick up the new module within 5 s");
}

#[test]
fn policies_build_from_source() {
    assert!(policy_wasm("allow-all").exists());
}

/// `[policy.modules.NAME]` overrides one module's limits and leaves the others alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_module_limits_override_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    install("misbehave", dir.path(), "slow.wasm");
    install("misbehave", dir.path(), "fast.wasm");
    let mut config = limits(dir.path());
    config.deadline = Duration::from_millis(20);
    config.modules.insert(
        "slow".into(),
        warden::policy::ModuleLimits {
            deadline: Some(Duration::from_millis(300)),
            ..Default::default()
        },
    );
    let chains = [pref("slow", "check:loop"), pref("fast", "check:loop")];
    let engine = PolicyEngine::start(&config, &chains).await.unwrap();
    let d = engine.check(&chains[..1], &session(), &select()).await;
    assert_eq!(
        d.policies[0].failure,
        Some(PolicyError::Deadline(Duration::from_millis(300)))
    );
    let d = engine.check(&chains[1..], &session(), &select()).await;
    assert_eq!(
        d.policies[0].failure,
        Some(PolicyError::Deadline(Duration::from_millis(20)))
    );
}
