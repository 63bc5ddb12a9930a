//! A policy written in C: `policies/allowlist-c`, built by its own `build.sh` (clang for
//! wasm32-wasi, wit-bindgen's C bindings, `wasm-tools component new`), checked against its case
//! file by the real `warden policy test`, run many times on one instance to show it frees what
//! the canonical ABI hands it, and a C probe that reaches for files, the environment and the
//! clock through wasi-libc and then spins: it gets nothing and the deadline stops it.
//!
//! Needs what `policies/allowlist-c/build.sh` installs when missing: clang, lld, wasi-libc,
//! libclang-rt-dev-wasm32 (apt, as root), wit-bindgen-cli and wasm-tools (cargo install into
//! target/toolchains/c, minutes the first time).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::session;
use std::path::PathBuf;
use std::process::Command as Process;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use warden::policy::{Command, PolicyConfig, PolicyEngine, Protocol, Verdict};
use warden::units::ByteSize;

/// Build the policy (or, with `probe`, the sandbox probe) with build.sh into
/// target/test-policies. One build at a time: the tests of this file run in parallel.
fn build(probe: bool) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = common::workspace_root();
    let file = if probe {
        "allowlist-c-probe.wasm"
    } else {
        "allowlist-c.wasm"
    };
    let out = root.join("target").join("test-policies").join(file);
    let mut build = Process::new("bash");
    build.arg(root.join("policies/allowlist-c/build.sh"));
    if probe {
        build.arg("--probe");
    }
    let output = build
        .arg(&out)
        .output()
        .expect("run policies/allowlist-c/build.sh");
    assert!(
        output.status.success(),
        "policies/allowlist-c/build.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.exists(), "{} was not built", out.display());
    out
}

fn sql(text: &str) -> Command {
    let mut statements = warden::command::sql::parse(text).unwrap();
    assert_eq!(statements.len(), 1, "one statement: {text}");
    Command::Sql(statements.remove(0).sql)
}

/// The deadline is wall time and the machine may be busy with other tests: calls that are
/// meant to finish get room, the spin test uses the default 10 ms.
fn limits(deadline: Duration) -> PolicyConfig {
    PolicyConfig {
        cache_dir: Some(PathBuf::new()),
        reload_interval: Duration::ZERO,
        deadline,
        ..PolicyConfig::default()
    }
}

const CONFIG: &str = r#"{"allow": ["select", "show"], "targets": {"payments": ["select", "insert"], "archive": []}}"#;

#[test]
fn allowlist_c_passes_its_case_file() {
    let wasm = build(false);
    let cases = common::workspace_root().join("policies/allowlist-c/cases.toml");
    let out = Process::new(env!("CARGO_BIN_EXE_warden"))
        .args(["policy", "test"])
        .arg(&wasm)
        .arg(&cases)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    assert!(
        stdout.matches("PASS ").count() >= 20,
        "the case file covers every rule: {stdout}"
    );
}

/// The verdicts through the engine, and every call on one reused instance: if the C code did
/// not free the arguments the canonical ABI hands it (a 6 KiB statement each time), 3000 calls
/// would leak ~18 MiB and hit the 4 MiB memory cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_c_decides_per_target_and_frees_its_arguments() {
    let wasm = build(false);
    let config = PolicyConfig {
        memory_limit: ByteSize(4 << 20),
        ..limits(Duration::from_millis(500))
    };
    let (engine, policy) = PolicyEngine::single(&config, &wasm, CONFIG).await.unwrap();
    let chain = [policy];
    let check = |target: &str, command: Command| {
        let mut on = session();
        on.target = target.into();
        let (engine, chain) = (&engine, &chain);
        async move { engine.check(chain, &on, &command).await }
    };

    let d = check("payments", sql("INSERT INTO orders (id) VALUES (1)")).await;
    assert_eq!(d.verdict, Verdict::Allow);
    let d = check("payments", sql("DROP TABLE cards")).await;
    assert_eq!(
        d.verdict,
        Verdict::Deny("statement kind drop is not in the allow-list for target payments".into())
    );
    assert!(d.policies[0].failure.is_none(), "a verdict, not a failure");
    let d = check("reporting", sql("SHOW search_path")).await;
    assert_eq!(
        d.verdict,
        Verdict::Allow,
        "an unlisted target gets the default"
    );
    let d = check("archive", sql("SELECT 1")).await;
    assert!(matches!(d.verdict, Verdict::Deny(_)), "{:?}", d.verdict);
    let d = check(
        "payments",
        sql("WITH d AS (DELETE FROM cards RETURNING id) SELECT * FROM d"),
    )
    .await;
    assert_eq!(
        d.verdict.reason(),
        Some(
            "statement kind delete, nested in a statement of kind select, is not in the allow-list for target payments"
        )
    );
    // The server's grammar reads it; the second parser does not, and for COPY the server's
    // tree does not stand in (`parse-error`).
    let d = check(
        "payments",
        sql("COPY (SELECT xmlelement(name card, pan) FROM cards) TO STDOUT"),
    )
    .await;
    assert!(
        d.verdict
            .reason()
            .unwrap()
            .starts_with("SQL that does not parse is denied: "),
        "{:?}",
        d.verdict
    );
    let shell = Command::Shell(warden::command::shell("ls", false));
    let mut ssh = session();
    ssh.protocol = Protocol::Ssh;
    assert_eq!(
        engine.check(&chain, &ssh, &shell).await.verdict,
        Verdict::Allow
    );

    let columns: Vec<String> = (0..200).map(|i| format!("column_{i:03}")).collect();
    let big_select = sql(&format!(
        "SELECT {} FROM orders WHERE id = 1",
        columns.join(", ")
    ));
    let big_drop = sql(&format!("DROP TABLE {}", columns.join(", ")));
    let mut latencies = Vec::new();
    for i in 0..3000 {
        let (command, allow) = if i % 2 == 0 {
            (big_select.clone(), true)
        } else {
            (big_drop.clone(), false)
        };
        let d = check("payments", command).await;
        assert!(
            d.policies[0].failure.is_none(),
            "call {i}: {:?} (a memory-cap failure means the policy leaks)",
            d.policies[0].failure
        );
        assert_eq!(
            matches!(d.verdict, Verdict::Allow),
            allow,
            "call {i}: {:?}",
            d.verdict
        );
        latencies.push(d.policies[0].latency);
    }
    latencies.sort();
    eprintln!(
        "allowlist-c, a {}-byte SELECT and a 200-table DROP in turn: p50 {:?}, p99 {:?}",
        command_len(&big_select),
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100]
    );
}

fn command_len(c: &Command) -> usize {
    match c {
        Command::Sql(s) => s.text.len(),
        _ => 0,
    }
}

/// `init` refuses a config it cannot read; the module then denies everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_c_refuses_a_bad_config() {
    let wasm = build(false);
    for (config, message) in [
        ("", "the config is empty"),
        (
            r#"{"allow": ["selct"]}"#,
            "unknown statement kind \"selct\"",
        ),
        (
            r#"{"allow": ["select"], "tragets": {}}"#,
            "unknown key \"tragets\"",
        ),
        (r#"{"allow": ["select"]"#, "expected ',' or '}'"),
    ] {
        let (engine, policy) =
            PolicyEngine::single(&limits(Duration::from_millis(500)), &wasm, config)
                .await
                .unwrap();
        let d = engine.check(&[policy], &session(), &sql("SELECT 1")).await;
        let failure = d.policies[0].failure.clone();
        assert_eq!(
            failure.as_ref().map(|f| f.cause()),
            Some("init"),
            "{config}"
        );
        assert!(
            d.verdict.reason().unwrap().contains(message),
            "{config}: {:?}",
            d.verdict
        );
    }
}

/// A C policy calling fopen, getenv, environ and time gets no file, no variable and a clock
/// frozen at the epoch; spinning forever is cut off by the (default 10 ms) deadline, and the
/// engine keeps answering afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_probe_gets_nothing_and_is_stopped_by_the_deadline() {
    let wasm = build(true);
    // The test process itself has PATH and HOME, and /etc/passwd exists.
    assert!(std::env::var_os("PATH").is_some());

    let (engine, report) =
        PolicyEngine::single(&limits(Duration::from_millis(500)), &wasm, "report")
            .await
            .unwrap();
    let d = engine.check(&[report], &session(), &sql("SELECT 1")).await;
    assert!(
        d.policies[0].failure.is_none(),
        "{:?}",
        d.policies[0].failure
    );
    let got = d.verdict.reason().unwrap().to_string();
    for expected in [
        "file=none(",
        "cwd-file=none(",
        "PATH=none",
        "HOME=none",
        "environ=0",
        "clock=0",
    ] {
        assert!(got.contains(expected), "{expected} in {got}");
    }

    let (engine, spin) = PolicyEngine::single(&limits(Duration::from_millis(10)), &wasm, "spin")
        .await
        .unwrap();
    for round in 0..2 {
        let started = Instant::now();
        let d = engine
            .check(std::slice::from_ref(&spin), &session(), &sql("SELECT 1"))
            .await;
        let elapsed = started.elapsed();
        assert!(matches!(d.verdict, Verdict::Deny(_)), "{:?}", d.verdict);
        assert_eq!(
            d.policies[0].failure.as_ref().map(|f| f.cause()),
            Some("deadline"),
            "round {round}: {:?} (a \"leak:\" reason means a probe got something)",
            d.verdict
        );
        assert!(
            elapsed < Duration::from_secs(5),
            "round {round}: stopped only after {elapsed:?}"
        );
    }
}
