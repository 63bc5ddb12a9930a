//! `warden policy test` as a security engineer runs it: the real binary against components
//! built from source and case files, with per-case PASS/FAIL, the diff, and the exit status;
//! and `warden policy new` projects in every language, built and passing their cases unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

/// Every shipped Rust policy passes its own case file.
#[test]
fn shipped_policies_pass_their_case_files() {
    let root = common::workspace_root();
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("policies")).unwrap() {
        let dir = entry.unwrap().path();
        let cases = dir.join("cases.toml");
        // Policies in other languages are built and checked by their own tests (lang_*.rs).
        if !cases.exists() || !dir.join("Cargo.toml").exists() {
            continue;
        }
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let out = warden()
            .arg("policy")
            .arg("test")
            .arg(common::policy_wasm(&name))
            .arg(&cases)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(" passed, 0 failed"), "{name}: {stdout}");
        checked += 1;
    }
    assert!(
        checked >= 4,
        "expected case files for the shipped policies, found {checked}"
    );
}

/// A failing case is reported with what was expected and what came back, and the exit status
/// says so.
#[test]
fn failures_show_the_diff_and_fail_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.toml");
    std::fs::write(
        &cases,
        r#"
config = "check:error"
[[case]]
name = "expects allow but the policy denies"
sql = "SELECT 1"
expect = "allow"
[[case]]
name = "deny with the right reason"
shell = "ls"
expect = "deny"
reason = "deliberate"
[[case]]
name = "rows left alone"
columns = ["a", { name = "b", type = "varchar" }]
rows = [['x', '\N']]
expect_rows = [['y', '\N']]
"#,
    )
    .unwrap();
    let out = warden()
        .args(["policy", "test"])
        .arg(common::policy_wasm("misbehave"))
        .arg(&cases)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("FAIL  expects allow but the policy denies"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"verdict: expected allow, got deny "misbehave: deliberate error""#),
        "{stdout}"
    );
    assert!(
        stdout.contains("PASS  deny with the right reason"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"row 0: expected ["y", "\\N"], got ["x", "\\N"]"#),
        "{stdout}"
    );
    assert!(stdout.ends_with("1 passed, 2 failed\n"), "{stdout}");
}

/// A module that cannot load is an error, not a pass.
#[test]
fn unloadable_module_fails() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("junk.wasm");
    std::fs::write(&module, b"\0asm junk").unwrap();
    let cases = dir.path().join("cases.toml");
    std::fs::write(
        &cases,
        "[[case]]\nname = \"x\"\nsql = \"SELECT 1\"\nexpect = \"allow\"\n",
    )
    .unwrap();
    let out = warden()
        .args(["policy", "test"])
        .arg(&module)
        .arg(&cases)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot load the policy"));
}

/// `warden policy new --lang LANG NAME` in a temporary directory, then the project's own
/// `build.sh` (with `env`, which points it at shared toolchains and caches), then `warden policy test` on
/// the project's own `cases.toml`, unchanged: every case must pass. Returns the directory that
/// holds the project (`NAME/`) and the module (`NAME.wasm`).
///
/// One scaffold at a time: each compiles a toolchain's worth of code or a multi-megabyte
/// component, and the case runs keep the production call deadline (10 ms), which a 2-core
/// machine busy with another build could miss.
fn scaffold_builds_and_passes(
    lang: &str,
    name: &str,
    env: &[(&str, PathBuf)],
    cases: usize,
) -> tempfile::TempDir {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join(name);
    let out = warden()
        .args(["policy", "new", "--lang", lang, name, "--dir"])
        .arg(&project)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(project.join("wit/policy.wit").exists());

    let wasm = dir.path().join(format!("{name}.wasm"));
    let started = Instant::now();
    let build = Command::new(project.join("build.sh"))
        .arg(&wasm)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{lang}: build.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    eprintln!(
        "{lang}: build.sh took {:.1?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&build.stdout).trim()
    );

    let started = Instant::now();
    let test = warden()
        .args(["policy", "test"])
        .arg(&wasm)
        .arg(project.join("cases.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success(),
        "{lang}:\n{stdout}\n{}",
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(
        stdout.ends_with(&format!("{cases} passed, 0 failed\n")),
        "{lang}: {stdout}"
    );
    eprintln!(
        "{lang}: warden policy test took {:.1?}: {}",
        started.elapsed(),
        stdout.lines().last().unwrap_or_default()
    );
    // The project holds nothing the build generated (a scaffold is meant to be committed).
    let mut files: Vec<String> = walk(&project)
        .into_iter()
        .map(|p| p.strip_prefix(&project).unwrap().display().to_string())
        .collect();
    files.retain(|f| !f.starts_with("target/") && f != "Cargo.lock");
    assert!(
        files
            .iter()
            .all(|f| !f.ends_with(".wasm") && !f.contains("__pycache__")),
        "{lang}: {files:?}"
    );
    dir
}

/// Every file under `dir`, skipping `node_modules` and `.toolchain`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name == "node_modules" || name == ".toolchain" {
            continue;
        }
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A toolchain shared with the shipped policy of the same language (tests/run.sh builds those
/// first, so it is normally installed): the variable's value if set, else `target/toolchains/DIR`.
/// When it is missing, the project's build.sh installs it there.
fn toolchain(var: &'static str, dir: &str) -> (&'static str, PathBuf) {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| common::workspace_root().join("target/toolchains").join(dir));
    (var, path)
}

/// `warden policy new --lang rust` makes a project that builds on its own and passes its own
/// cases; `policy new` refuses to overwrite and refuses bad names.
#[test]
fn new_rust_policy_builds_and_passes_its_cases() {
    // A target dir that outlives the temporary project, so wit-bindgen is compiled once.
    let target = common::workspace_root().join("target/test-policies/scaffold-rust");
    let dir =
        scaffold_builds_and_passes("rust", "first-policy", &[("CARGO_TARGET_DIR", target)], 4);
    let project = dir.path().join("first-policy");
    let again = warden()
        .args(["policy", "new", "--lang", "rust", "first-policy", "--dir"])
        .arg(&project)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let bad = warden()
        .args(["policy", "new", "--lang", "rust", "Bad Name"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(!dir.path().join("Bad Name").exists());
}

/// `--lang python`: componentize-py, a policy that masks as well as denies.
#[test]
fn new_python_policy_builds_and_passes_its_cases() {
    let env = [toolchain("WARDEN_PY_TOOLCHAIN", "python")];
    scaffold_builds_and_passes("python", "py-policy", &env, 5);
}

/// `--lang js`: ComponentizeJS, installed once into a shared `target/toolchains/js`.
#[test]
fn new_js_policy_builds_and_passes_its_cases() {
    let env = [toolchain("WARDEN_JS_TOOLCHAIN", "js")];
    scaffold_builds_and_passes("js", "js-policy", &env, 4);
}

/// `--lang c`: clang for wasm32-wasi, wit-bindgen's C bindings, `wasm-tools component new`.
#[test]
fn new_c_policy_builds_and_passes_its_cases() {
    let env = [toolchain("WARDEN_C_TOOLCHAIN", "c")];
    scaffold_builds_and_passes("c", "c-policy", &env, 4);
}

/// A case file can state the limits its policy needs; they apply to the run.
#[test]
fn case_file_limits_apply() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.toml");
    std::fs::write(
        &cases,
        "config = \"check:loop\"\n[limits]\ndeadline = \"300ms\"\n[[case]]\nname = \"runaway\"\nsql = \"SELECT 1\"\nexpect = \"deny\"\nreason = \"300ms deadline\"\n",
    )
    .unwrap();
    let out = warden()
        .args(["policy", "test"])
        .arg(common::policy_wasm("misbehave"))
        .arg(&cases)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
}
