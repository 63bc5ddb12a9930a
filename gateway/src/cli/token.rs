//! `warden token`: mint development tokens and check tokens against a warden.toml.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Deserialize;

use crate::identity::{IdentityConfig, MintRequest, Verifier, mint};

/// `warden token ...`
#[derive(Debug, clap::Subcommand)]
pub enum TokenCmd {
    /// Print a development HS256 token signed with `[identity] hs256_secret_file`.
    Mint {
        /// The warden.toml whose `[identity]` section to use.
        #[arg(long)]
        config: PathBuf,
        /// The subject (`sub`): on whose behalf the token acts.
        #[arg(long)]
        sub: String,
        /// A group; repeat for several.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// An agent in the delegation chain, outermost first; repeat for several. The last one
        /// is the agent that holds the token.
        #[arg(long = "act")]
        actors: Vec<String>,
        /// Lifetime, for example `15m` or `1h` (at most 24h, and at most `max_ttl`).
        #[arg(long, default_value = "15m")]
        ttl: humantime::Duration,
        /// A target the token may reach (the `targets` claim); repeat for several. Without
        /// it, each target's allow list decides alone.
        #[arg(long = "target")]
        targets: Vec<String>,
    },
    /// Verify a token and print its principal as JSON; exit status 1 when it is rejected.
    Verify {
        /// The warden.toml whose `[identity]` section to use.
        #[arg(long)]
        config: PathBuf,
        /// The token. Read from standard input when absent, which keeps it out of the
        /// process list and shell history.
        #[arg(long)]
        token: Option<String>,
    },
}

/// Run a `warden token` subcommand. Configuration problems are errors; a rejected token is
/// reported on stderr with exit status 1.
pub fn run(cmd: TokenCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCmd::Mint {
            config,
            sub,
            groups,
            actors,
            ttl,
            targets,
        } => {
            let identity = load_identity(&config)?;
            let request = MintRequest {
                subject: sub,
                groups,
                actors,
                ttl: ttl.into(),
                targets,
            };
            let token = mint(&identity, &request)?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        TokenCmd::Verify { config, token } => {
            let identity = load_identity(&config)?;
            let verifier = Verifier::from_config(&identity)?;
            let token = match token {
                Some(token) => token,
                None => {
                    let mut input = String::new();
                    std::io::stdin()
                        .read_to_string(&mut input)
                        .context("reading the token from standard input")?;
                    input
                }
            };
            match verifier.verify(token.trim()) {
                Ok(principal) => {
                    println!("{}", serde_json::to_string_pretty(&principal)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => {
                    eprintln!("token rejected: {err}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// Only `[identity]` of a warden.toml; the other sections are not this command's business
/// (serde ignores unknown top-level keys here, while `[identity]` itself stays strict).
#[derive(Deserialize)]
struct OnlyIdentity {
    identity: IdentityConfig,
}

/// Read `[identity]` from the config file at `path`, with relative key paths resolved against
/// the file's directory.
fn load_identity(path: &Path) -> anyhow::Result<IdentityConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut identity = toml::from_str::<OnlyIdentity>(&text)
        .with_context(|| format!("parsing [identity] in {}", path.display()))?
        .identity;
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty());
    identity.resolve_relative_to(dir.unwrap_or(Path::new(".")));
    Ok(identity)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_the_identity_table_and_resolves_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.toml");
        std::fs::write(
            &path,
            r#"
[listen]
postgres = "127.0.0.1:6432"

[identity]
issuer = "warden-dev"
audience = "warden"
hs256_secret_file = "secret"
"#,
        )
        .unwrap();
        let identity = load_identity(&path).unwrap();
        assert_eq!(identity.hs256_secret_file, Some(dir.path().join("secret")));
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: TokenCmd,
    }

    #[test]
    fn arguments_parse() {
        use clap::{CommandFactory, Parser};
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "warden",
            "mint",
            "--config",
            "w.toml",
            "--sub",
            "alice",
            "--group",
            "dba",
            "--act",
            "planner",
            "--act",
            "sql-agent",
        ])
        .unwrap();
        let TokenCmd::Mint {
            actors,
            groups,
            ttl,
            ..
        } = cli.cmd
        else {
            panic!("not mint");
        };
        assert_eq!(actors, ["planner", "sql-agent"]);
        assert_eq!(groups, ["dba"]);
        assert_eq!(std::time::Duration::from(ttl).as_secs(), 15 * 60);
        let cli = Cli::try_parse_from(["warden", "verify", "--config", "w.toml"]).unwrap();
        assert!(matches!(cli.cmd, TokenCmd::Verify { token: None, .. }));
    }

    #[test]
    fn mint_then_verify() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "x".repeat(40)).unwrap();
        let path = dir.path().join("warden.toml");
        std::fs::write(
            &path,
            "[identity]\nissuer = \"i\"\naudience = \"a\"\nhs256_secret_file = \"secret\"\n",
        )
        .unwrap();
        let code = run(TokenCmd::Mint {
            config: path.clone(),
            sub: "alice".into(),
            groups: vec![],
            actors: vec!["agent".into()],
            ttl: "5m".parse().unwrap(),
            targets: vec!["payments".into()],
        })
        .unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        let code = run(TokenCmd::Verify {
            config: path,
            token: Some("not.a.token".into()),
        })
        .unwrap();
        assert_eq!(code, ExitCode::FAILURE);
    }
}
