//! `warden policy test` as a security engineer runs it: the real binary against components
//! built from source and case files, with per-case PASS/FAIL, the diff, and the exit status.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

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

/// `warden policy new` makes a project that builds on its own and passes its own cases.
#[test]
fn new_rust_policy_builds_and_passes_its_cases() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("first-policy");
    let out = warden()
        .args(["policy", "new", "--lang", "rust", "first-policy", "--dir"])
        .arg(&project)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = dir.path().join("first.wasm");
    let build = Command::new(project.join("build.sh"))
        .arg(&wasm)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let test = warden()
        .args(["policy", "test"])
        .arg(&wasm)
        .arg(project.join("cases.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&test.stdout);
    assert!(test.status.success(), "{stdout}");
    assert!(stdout.ends_with("2 passed, 0 failed\n"), "{stdout}");
    // Refuses to overwrite, and refuses bad names.
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
