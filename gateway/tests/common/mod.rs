//! Shared test support: builds the policy components from source (never committed `.wasm`)
//! and hands out their paths.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod clients;
pub mod gateway;
pub mod pg;
pub mod raw;
pub mod serve;
pub mod ssh;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use warden::policy::{Column, PolicyRef, Principal, Protocol, Row, Session};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A compiled-component cache shared by the tests (`$WARDEN_POLICY_CACHE`, default
/// `target/test-policy-cache`): artifacts are keyed by the module's sha256 and written
/// atomically, so tests and test processes share them safely, and each multi-megabyte Python
/// or JavaScript component is compiled once per run instead of once per test. Tests about
/// compiling or caching itself use a directory of their own. `tests/run.sh` empties it first.
pub fn compile_cache() -> PathBuf {
    std::env::var_os("WARDEN_POLICY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-policy-cache"))
}

/// Build one policy crate for wasm32-wasip2 (once per test process; cargo makes repeat builds
/// no-ops) into a separate target dir, so it never waits on the outer cargo's lock.
///
/// `tests/run.sh` builds every shipped policy from source with `policies/build.sh` just before
/// the tests, with the same profile, and names that directory in `WARDEN_BUILT_POLICIES`: a
/// policy found there is used as built, so CI does not compile each one twice.
pub fn policy_wasm(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("WARDEN_BUILT_POLICIES") {
        let built = PathBuf::from(dir).join(format!("{name}.wasm"));
        if built.exists() {
            return built;
        }
    }
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let root = workspace_root();
    let target = root.join("target").join("test-policies");
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "--quiet",
                "--profile",
                "policy",
                "--target",
                "wasm32-wasip2",
                "-p",
                name,
            ])
            .arg("--target-dir")
            .arg(&target)
            .status()
            .expect("run cargo to build a policy");
        assert!(status.success(), "building policy {name} failed");
        built.push(name.to_string());
    }
    let path = target
        .join("wasm32-wasip2")
        .join("policy")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Copy a policy into `dir` under `file_name`, atomically (write elsewhere, then rename) as an
/// operator installing a module should.
pub fn install(name: &str, dir: &Path, file_name: &str) {
    let tmp = dir.join(format!(".{file_name}.tmp"));
    std::fs::copy(policy_wasm(name), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(file_name)).unwrap();
}

/// A Postgres session for alice, driven by agent-7.
pub fn session() -> Session {
    Session {
        id: "s-1".into(),
        protocol: Protocol::Postgres,
        target: "payments".into(),
        principal: Principal {
            subject: "alice".into(),
            issuer: "test".into(),
            groups: vec!["agents".into()],
            actors: vec!["alice".into(), "agent-7".into()],
        },
        client_addr: "127.0.0.1:5555".into(),
    }
}

/// A chain entry.
pub fn pref(module: &str, config: &str) -> PolicyRef {
    PolicyRef {
        module: module.into(),
        config: config.into(),
        shadow: false,
    }
}

/// `asciinema cat FILE`, under `script` because asciinema opens /dev/tty, which a test run
/// (CI, cargo's harness) does not have. A missing asciinema fails the test: CI installs it.
pub fn asciinema_cat(file: &Path) -> String {
    let found = std::process::Command::new("asciinema")
        .arg("--version")
        .output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "`asciinema` is not installed: this test checks that a real player reads warden's \
         asciicast files (Debian: apt-get install asciinema)"
    );
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("asciinema cat '{}'", file.display()),
            "/dev/null",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("`script` (util-linux / bsdutils) runs asciinema under a pty");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "asciinema cat {} failed: {}\n{stdout}{}",
        file.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Result rows for masking benchmarks: 5 text columns (id, name, pan, email, note), one card
/// number per row in rotating formats; the note has digits but no card number.
pub fn card_rows(n: usize) -> (Vec<Column>, Vec<Row>) {
    let columns = ["id", "name", "pan", "email", "note"]
        .iter()
        .map(|n| Column {
            name: n.to_string(),
            type_name: "text".into(),
        })
        .collect();
    let pans = [
        "4111111111111111",
        "5500 0055 5555 5559",
        "3782-822463-10005",
        "6011111111111117",
    ];
    let rows = (0..n)
        .map(|i| {
            vec![
                Some(i.to_string()),
                Some(format!("Customer {i}")),
                Some(pans[i % pans.len()].to_string()),
                Some(format!("customer{i}@example.com")),
                Some(format!(
                    "order 2024-{:02}-{:02}, ref {}",
                    i % 12 + 1,
                    i % 28 + 1,
                    100000 + i
                )),
            ]
        })
        .collect();
    (columns, rows)
}
