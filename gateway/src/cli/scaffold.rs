//! `warden policy new --lang rust NAME`: a policy project that builds and passes its own case
//! file unchanged. The SDK and the WIT are written into the project (embedded in the `warden`
//! binary), so the project builds anywhere, without this repository.

use std::path::Path;

/// The SDK and WIT this binary was built with.
const SDK_LIB: &str = include_str!("../../../policy-sdk/src/lib.rs");
const SDK_PAN: &str = include_str!("../../../policy-sdk/src/pan.rs");
const SDK_SQL: &str = include_str!("../../../policy-sdk/src/sql.rs");
const WIT: &str = include_str!("../../../wit/policy.wit");

/// Languages `policy new` can scaffold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
}

/// Write a new policy project into `dir` (which must not exist yet).
pub fn create(dir: &Path, name: &str, lang: Lang) -> anyhow::Result<()> {
    anyhow::ensure!(
        name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "policy names start with a letter and use lower-case letters, digits and dashes"
    );
    anyhow::ensure!(!dir.exists(), "{} already exists", dir.display());
    match lang {
        Lang::Rust => rust(dir, name),
    }
}

fn write(dir: &Path, rel: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, text)?;
    Ok(())
}

fn rust(dir: &Path, name: &str) -> anyhow::Result<()> {
    let crate_name = name.replace('-', "_");
    // The SDK's bindings read `../wit` from its own directory.
    write(dir, "wit/policy.wit", WIT)?;
    write(dir, "warden-policy-sdk/src/lib.rs", SDK_LIB)?;
    write(dir, "warden-policy-sdk/src/pan.rs", SDK_PAN)?;
    write(dir, "warden-policy-sdk/src/sql.rs", SDK_SQL)?;
    write(
        dir,
        "warden-policy-sdk/Cargo.toml",
        r#"[package]
name = "warden-policy-sdk"
version = "0.1.0"
edition = "2024"
description = "Write Warden policy modules in Rust (vendored by `warden policy new`)."

[lib]
name = "warden_policy"

[dependencies]
wit-bindgen = { version = "0.61", default-features = false, features = ["macros", "realloc"] }
"#,
    )?;
    write(
        dir,
        "Cargo.toml",
        &format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
warden-policy-sdk = {{ path = "warden-policy-sdk" }}

# A workspace of its own, so the project builds wherever it is put.
[workspace]

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
strip = true
"#
        ),
    )?;
    write(
        dir,
        "src/lib.rs",
        &format!(
            r#"//! `{name}`: a Warden policy. Edit `check` (and `mask_rows`) to decide; keep it a pure
//! function of its inputs. Build with `./build.sh`, test with the command it prints.

use warden_policy::{{Command, Policy, Session, Verdict, export_policy}};

struct {ty};

impl Policy for {ty} {{
    fn init(_config: &str) -> Result<Self, String> {{
        Ok({ty})
    }}

    fn check(&self, _session: &Session, command: &Command) -> Verdict {{
        match command {{
            Command::Sql(sql) if sql.kind == "drop" => {{
                Verdict::Deny("DROP is not allowed here".to_string())
            }}
            _ => Verdict::Allow,
        }}
    }}
}}

export_policy!({ty});
"#,
            ty = type_name(name)
        ),
    )?;
    write(
        dir,
        "cases.toml",
        r#"# Cases for `warden policy test`; see the Warden policies README for the format.
config = ""

[[case]]
name = "reads are allowed"
sql = "SELECT 1"
expect = "allow"

[[case]]
name = "DROP is denied"
sql = "DROP TABLE t"
expect = "deny"
reason = "DROP"
"#,
    )?;
    write(
        dir,
        "build.sh",
        &format!(
            r#"#!/usr/bin/env bash
# Build the policy component: ./build.sh [OUT.wasm]
set -euo pipefail
cd "$(dirname "$0")"
out=${{1:-{name}.wasm}}
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --quiet --release --target wasm32-wasip2
cp target/wasm32-wasip2/release/{crate_name}.wasm "$out"
echo "built $out; test it with: warden policy test $out cases.toml"
"#
        ),
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("build.sh"), std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// `my-policy` → `MyPolicy`.
fn type_name(name: &str) -> String {
    name.split('-')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}
