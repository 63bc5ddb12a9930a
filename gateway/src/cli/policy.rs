//! `warden policy`: test a module offline against a case file, and list what a config loads.

use crate::cases::{self, CaseFile};
use crate::config::Config;
use crate::policy::{PolicyConfig, PolicyEngine};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCmd {
    /// Run MODULE (a .wasm component) against the cases in CASES and report pass/fail per case
    /// with what differed. Exits non-zero when any case fails.
    Test {
        /// The policy component (.wasm).
        module: PathBuf,
        /// The case file (TOML); see policies/README.md for its format.
        cases: PathBuf,
        /// Deadline per call (default 10ms, as in production).
        #[arg(long, default_value = "10ms")]
        deadline: humantime::Duration,
        /// Memory cap per instance (default 16MiB, as in production).
        #[arg(long, default_value = "16MiB")]
        memory_limit: String,
        /// Keep compiled components in DIR (by the module's sha256), as the gateway does, so
        /// testing the same module again skips compiling it (a Python or JavaScript
        /// component takes tens of seconds). Default: compile every run.
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
    },
    /// Create a new policy project NAME in Rust, Python, JavaScript or C (in ./NAME, or --dir):
    /// a starter policy that denies SQL DROP, the WIT, a build.sh that installs its toolchain
    /// on first use, and a cases.toml the built module passes unchanged.
    New {
        /// The language of the policy.
        #[arg(long, value_enum)]
        lang: super::scaffold::Lang,
        /// The policy's name (lower-case letters, digits, dashes).
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Replay a target's recorded commands (from --db or --admin) through its chain with a
    /// candidate module added (or swapped in with --replace) and print what would change:
    /// verdicts by rule with counts, principals and examples, and columns newly masked in
    /// recorded rows. Exits 1 when a command the chain lets through now would be refused or
    /// held.
    Whatif(super::whatif::WhatifArgs),
    /// Load the policy directory of a config and print every module with its sha256, and each
    /// target's chain.
    List {
        #[arg(long, default_value = "warden.toml")]
        config: PathBuf,
    },
}

pub fn run(cmd: PolicyCmd) -> anyhow::Result<ExitCode> {
    let cmd = match cmd {
        PolicyCmd::Whatif(args) => return super::whatif::run(args),
        other => other,
    };
    if let PolicyCmd::New { lang, name, dir } = &cmd {
        let dir = dir.clone().unwrap_or_else(|| PathBuf::from(name));
        super::scaffold::create(&dir, name, *lang)?;
        println!(
            "created {}; build and test it with:\n  cd {} && ./build.sh && warden policy test {name}.wasm cases.toml",
            dir.display(),
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(crate::command::sql::READER_STACK)
        .build()?;
    rt.block_on(async {
        match cmd {
            PolicyCmd::Test {
                module,
                cases,
                deadline,
                memory_limit,
                cache,
            } => {
                let file = CaseFile::load(&cases)?;
                let limits = PolicyConfig {
                    deadline: deadline.into(),
                    memory_limit: crate::units::ByteSize::parse(&memory_limit)
                        .map_err(anyhow::Error::msg)?,
                    // Compiled fresh unless asked: the cache is keyed by the module's sha256
                    // and wasmtime checks an artifact's engine, so it cannot go stale, but it
                    // is native code and only a directory the user names is trusted with it.
                    cache_dir: Some(cache.unwrap_or_default()),
                    reload_interval: std::time::Duration::ZERO,
                    ..PolicyConfig::default()
                };
                let results = cases::run(&limits, &module, &file).await?;
                print!("{}", cases::report(&results));
                let failed = results.iter().any(|r| !r.diffs.is_empty());
                Ok(if failed || results.is_empty() {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            }
            // Handled above, without this runtime.
            PolicyCmd::New { .. } | PolicyCmd::Whatif(_) => Ok(ExitCode::SUCCESS),
            PolicyCmd::List { config } => {
                let config = Config::load(&config)?;
                let refs = config.all_policy_refs();
                let mut policy = config.policy.clone();
                policy.reload_interval = std::time::Duration::ZERO;
                let engine = PolicyEngine::start(&policy, &refs).await?;
                let mut missing = false;
                for (name, target) in &config.targets {
                    println!("target {name} ({:?})", target.protocol);
                    for r in target.chain() {
                        let mode = if r.shadow { " (shadow)" } else { "" };
                        match engine.module(&r.module) {
                            Some(m) => {
                                println!("  {:<24} sha256 {}{mode}", r.module, m.sha256())
                            }
                            None => {
                                missing = true;
                                println!(
                                    "  {:<24} NOT LOADED (the target denies everything)",
                                    r.module
                                )
                            }
                        }
                    }
                }
                Ok(if missing {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            }
        }
    })
}
