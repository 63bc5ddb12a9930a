//! `warden policy new --lang rust|python|js|c NAME`: a policy project that builds with its own
//! `build.sh` and passes its own `cases.toml` unchanged. What the project needs from this
//! repository (the WIT; for Rust, the SDK; for JS, the lock file of `kube-guard-js`) is embedded
//! in the `warden` binary and written into it, so the project builds anywhere.
//!
//! The templates are the files under `scaffold/`, modelled on the shipped policies of each
//! language and pinned to the same tool versions (the tests below keep the pins in step).
//! `__POLICY_NAME__`, `__CRATE_NAME__` and `__TYPE_NAME__` stand for the policy's name, its
//! Rust crate name and its Rust type name. Files that tools would take for the real thing inside
//! this repository are stored under another name (`Cargo.toml.tmpl`, `gitignore`).

use std::borrow::Cow;
use std::path::Path;

/// Languages `policy new` can scaffold. (The doc comments are the `--help` text.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust and the Warden policy SDK (vendored); needs rustup
    Rust,
    /// Python, componentize-py 0.25.1 (build.sh installs it); needs python3 >= 3.9 with venv
    Python,
    /// JavaScript, ComponentizeJS 0.23.0 (build.sh runs npm ci); needs node >= 18 and npm
    Js,
    /// C, wit-bindgen 0.61.1 and wasm-tools (build.sh cargo-installs them); needs clang, lld, wasi-libc
    C,
}

/// One file of a new project: where it goes, and its text before the names are filled in.
type Template = (&'static str, Cow<'static, str>);

macro_rules! template {
    ($path:literal, $file:literal) => {
        (
            $path,
            Cow::Borrowed(include_str!(concat!("scaffold/", $file))),
        )
    };
}

/// The WIT and the Rust SDK this binary was built with.
const WIT: &str = include_str!("../../../wit/policy.wit");
const SDK_LIB: &str = include_str!("../../../policy-sdk/src/lib.rs");
const SDK_PAN: &str = include_str!("../../../policy-sdk/src/pan.rs");
const SDK_SQL: &str = include_str!("../../../policy-sdk/src/sql.rs");
const PAN_LIB: &str = include_str!("../../../policy-sdk/pan/src/lib.rs");
/// The case file of the Rust, JS and C starters (they decide alike).
const CASES: &str = include_str!("scaffold/cases.toml");
/// The lock file of the shipped JS policy: the scaffold pins exactly what it was built with.
const JS_LOCK: &str = include_str!("../../../policies/kube-guard-js/package-lock.json");
const JS_LOCK_NAME: &str = "\"warden-policy-kube-guard-js\"";

/// Every file of a new `lang` project.
fn templates(lang: Lang) -> Vec<Template> {
    let mut files = vec![("wit/policy.wit", Cow::Borrowed(WIT))];
    match lang {
        Lang::Rust => files.extend([
            template!("Cargo.toml", "rust/Cargo.toml.tmpl"),
            template!("src/lib.rs", "rust/lib.rs"),
            template!("build.sh", "rust/build.sh"),
            template!(".gitignore", "rust/gitignore"),
            ("cases.toml", Cow::Borrowed(CASES)),
            // The SDK's bindings read `../wit` from its own directory.
            template!("warden-policy-sdk/Cargo.toml", "rust/sdk.Cargo.toml.tmpl"),
            ("warden-policy-sdk/src/lib.rs", Cow::Borrowed(SDK_LIB)),
            ("warden-policy-sdk/src/pan.rs", Cow::Borrowed(SDK_PAN)),
            ("warden-policy-sdk/src/sql.rs", Cow::Borrowed(SDK_SQL)),
            template!("warden-pan/Cargo.toml", "rust/pan.Cargo.toml.tmpl"),
            ("warden-pan/src/lib.rs", Cow::Borrowed(PAN_LIB)),
        ]),
        Lang::Python => files.extend([
            template!("app.py", "python/app.py"),
            template!("build.sh", "python/build.sh"),
            template!(".gitignore", "python/gitignore"),
            template!("cases.toml", "python/cases.toml"),
        ]),
        Lang::Js => files.extend([
            template!("policy.js", "js/policy.js"),
            template!("build.mjs", "js/build.mjs"),
            template!("build.sh", "js/build.sh"),
            template!("package.json", "js/package.json"),
            (
                "package-lock.json",
                Cow::Owned(JS_LOCK.replace(JS_LOCK_NAME, "\"warden-policy-__POLICY_NAME__\"")),
            ),
            template!(".gitignore", "js/gitignore"),
            ("cases.toml", Cow::Borrowed(CASES)),
        ]),
        Lang::C => files.extend([
            template!("policy.c", "c/policy.c"),
            template!("build.sh", "c/build.sh"),
            template!(".gitignore", "c/gitignore"),
            ("cases.toml", Cow::Borrowed(CASES)),
        ]),
    }
    files
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
    let written = templates(lang)
        .iter()
        .try_for_each(|(rel, text)| write(dir, rel, &render(text, name)));
    if written.is_err() {
        // The directory did not exist before: leave nothing half-made behind.
        let _ = std::fs::remove_dir_all(dir);
    }
    written
}

/// `text` with the name placeholders filled in.
fn render(text: &str, name: &str) -> String {
    text.replace("__POLICY_NAME__", name)
        .replace("__CRATE_NAME__", &name.replace('-', "_"))
        .replace("__TYPE_NAME__", &type_name(name))
}

fn write(dir: &Path, rel: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, text)?;
    #[cfg(unix)]
    if rel.ends_with(".sh") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use clap::ValueEnum;

    /// The line of `script` that sets `var`, e.g. `COMPONENTIZE_PY_VERSION=0.25.1`.
    fn pin<'a>(script: &'a str, var: &str) -> &'a str {
        script
            .lines()
            .find(|l| l.starts_with(&format!("{var}=")))
            .unwrap_or_else(|| panic!("no {var}= line"))
    }

    fn file(lang: Lang, path: &str) -> String {
        let (_, text) = templates(lang)
            .into_iter()
            .find(|(p, _)| *p == path)
            .unwrap_or_else(|| panic!("{lang:?} has no {path}"));
        render(&text, "my-first-policy")
    }

    #[test]
    fn every_project_is_complete_and_fully_rendered() {
        for lang in Lang::value_variants() {
            let files = templates(*lang);
            for needed in ["wit/policy.wit", "build.sh", "cases.toml", ".gitignore"] {
                assert!(
                    files.iter().any(|(p, _)| *p == needed),
                    "{lang:?} lacks {needed}"
                );
            }
            for (path, text) in &files {
                let text = render(text, "my-first-policy");
                for placeholder in ["__POLICY_NAME__", "__CRATE_NAME__", "__TYPE_NAME__"] {
                    assert!(
                        !text.contains(placeholder),
                        "{lang:?} {path}: {placeholder}"
                    );
                }
            }
            assert!(file(*lang, "build.sh").contains("my-first-policy.wasm"));
        }
        assert!(file(Lang::Rust, "src/lib.rs").contains("struct MyFirstPolicy;"));
        assert!(file(Lang::Rust, "build.sh").contains("release/my_first_policy.wasm"));
    }

    /// The starters use the toolchains the shipped policies are built and tested with.
    #[test]
    fn pins_match_the_shipped_policies() {
        let py = include_str!("../../../policies/pci-mask-py/build.sh");
        let var = "COMPONENTIZE_PY_VERSION";
        assert_eq!(pin(&file(Lang::Python, "build.sh"), var), pin(py, var));

        let c = include_str!("../../../policies/allowlist-c/build.sh");
        for var in ["WIT_BINDGEN_VERSION", "WASM_TOOLS_VERSION"] {
            assert_eq!(pin(&file(Lang::C, "build.sh"), var), pin(c, var));
        }

        let shipped: serde_json::Value =
            serde_json::from_str(include_str!("../../../policies/kube-guard-js/package.json"))
                .unwrap();
        let ours: serde_json::Value =
            serde_json::from_str(&file(Lang::Js, "package.json")).unwrap();
        let lock: serde_json::Value =
            serde_json::from_str(&file(Lang::Js, "package-lock.json")).unwrap();
        let deps = &shipped["devDependencies"];
        assert!(deps.is_object());
        assert_eq!(&ours["devDependencies"], deps);
        assert_eq!(&lock["packages"][""]["devDependencies"], deps);
        assert_eq!(lock["name"], "warden-policy-my-first-policy");
        assert_eq!(
            lock["packages"][""]["name"],
            "warden-policy-my-first-policy"
        );
        assert_eq!(ours["name"], "warden-policy-my-first-policy");
    }

    #[test]
    fn creates_an_executable_build_script_and_refuses_bad_names_and_existing_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        create(&dir, "p-1", Lang::C).unwrap();
        assert!(dir.join("policy.c").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("build.sh"))
                .unwrap()
                .permissions();
            assert_eq!(mode.mode() & 0o111, 0o111);
        }
        assert!(create(&dir, "p-1", Lang::C).is_err());
        for bad in ["Bad", "1st", "-x", "a_b", "a b", ""] {
            assert!(
                create(&tmp.path().join("q"), bad, Lang::Js).is_err(),
                "{bad:?}"
            );
        }
        assert!(!tmp.path().join("q").exists());
    }

    #[test]
    fn type_names() {
        assert_eq!(type_name("first-policy"), "FirstPolicy");
        assert_eq!(type_name("a--b2"), "AB2");
    }
}
