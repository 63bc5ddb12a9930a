//! `warden approvals`: list, approve and deny held commands through a running gateway's admin
//! API (`admin/`): plain HTTP to a loopback address, or HTTPS verified against `--admin-ca`
//! (the bearer token must not cross a network in the clear).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use hyper::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin_client::{Endpoint, call};
use crate::approvals::{PendingInfo, chain};

/// Widest command and reason shown by `list`; the full text is in `GET /v1/approvals`.
const MAX_CELL: usize = 60;

/// `warden approvals [--admin URL] [--token TOKEN] ...`
#[derive(Debug, clap::Args)]
pub struct ApprovalsArgs {
    /// The gateway's admin API (`[admin] listen`).
    #[arg(
        long,
        env = "WARDEN_ADMIN",
        default_value = "http://127.0.0.1:9190",
        global = true
    )]
    pub admin: String,
    /// Your bearer token (required). Prefer the environment variable: arguments show in the
    /// process list. Optional to clap only because clap refuses required global arguments.
    #[arg(long, env = "WARDEN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// For an https:// --admin: the PEM file of the CA that signed its certificate.
    #[arg(long, env = "WARDEN_ADMIN_CA", global = true)]
    pub admin_ca: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub cmd: ApprovalsCmd,
}

/// `warden approvals ...`
#[derive(Debug, clap::Subcommand)]
pub enum ApprovalsCmd {
    /// Show the commands waiting for a decision (the table cuts long commands: decide on the
    /// whole text, with --full).
    List {
        /// Also print every pending command whole (control characters escaped).
        #[arg(long)]
        full: bool,
    },
    /// Let a held command run.
    Approve {
        /// The approval id (`apr-...`), as `list` shows it.
        id: String,
        /// Why: recorded in the audit log with your identity.
        #[arg(long)]
        reason: String,
    },
    /// Refuse a held command.
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

/// Run a `warden approvals` subcommand, printing to stdout and stderr.
pub fn run(args: ApprovalsArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    run_with(args, &mut stdout.lock(), &mut stderr.lock())
}

/// [`run`] with its output streams given, for tests. A refusal by the gateway (any 4xx) is
/// printed to `err` with exit status 1; an unreachable gateway or a 5xx is an `Err`.
pub fn run_with(
    args: ApprovalsArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let endpoint = Endpoint::parse(&args.admin, args.admin_ca.as_deref())?;
    let Some(token) = args.token.as_deref().filter(|t| !t.trim().is_empty()) else {
        bail!("a token is required: set WARDEN_TOKEN or pass --token");
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (path, method, body) = match &args.cmd {
        ApprovalsCmd::List { .. } => ("/v1/approvals".to_owned(), Method::GET, None),
        ApprovalsCmd::Approve { id, reason } => {
            (decide_path(id, "approve")?, Method::POST, Some(reason))
        }
        ApprovalsCmd::Deny { id, reason } => (decide_path(id, "deny")?, Method::POST, Some(reason)),
    };
    let body = body.map(|reason| json!({ "reason": reason }));
    let (status, value) = runtime.block_on(call(&endpoint, &path, method, token, body))?;
    if !status.is_success() {
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no error message");
        if status.is_server_error() {
            bail!("the gateway failed: {message} (HTTP {})", status.as_u16());
        }
        writeln!(err, "refused: {message} (HTTP {})", status.as_u16())?;
        return Ok(ExitCode::FAILURE);
    }
    match args.cmd {
        ApprovalsCmd::List { full } => {
            #[derive(Deserialize)]
            struct Listing {
                approvals: Vec<PendingInfo>,
            }
            let listing: Listing =
                serde_json::from_value(value).context("reading the gateway's answer")?;
            print_table(out, &listing.approvals, SystemTime::now())?;
            if full {
                for a in &listing.approvals {
                    writeln!(out, "\n{} ({} bytes):", clean(&a.id), a.command.len())?;
                    writeln!(out, "{}", super::escape::text(&a.command))?;
                }
            }
        }
        ApprovalsCmd::Approve { id, .. } | ApprovalsCmd::Deny { id, .. } => {
            let decision = value
                .get("decision")
                .and_then(Value::as_str)
                .unwrap_or("decided");
            let reason = value
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default();
            writeln!(out, "{} {decision}: {}", clean(&id), clean(reason))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Ids are `apr-` and hex; anything else would change the path, so it never reaches the URL.
fn decide_path(id: &str, action: &str) -> anyhow::Result<String> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("`{}` is not an approval id", clean(id));
    }
    Ok(format!("/v1/approvals/{id}/{action}"))
}

fn print_table(
    out: &mut dyn Write,
    approvals: &[PendingInfo],
    now: SystemTime,
) -> std::io::Result<()> {
    if approvals.is_empty() {
        return writeln!(out, "no pending approvals");
    }
    let header = [
        "ID",
        "TARGET",
        "REQUESTER",
        "AGE",
        "EXPIRES IN",
        "COMMAND",
        "REASON",
    ];
    let rows: Vec<[String; 7]> = approvals
        .iter()
        .map(|a| {
            let since = |t: SystemTime, u: SystemTime| u.duration_since(t).unwrap_or_default();
            [
                clean(&a.id),
                clean(&a.target),
                clean(&chain(&a.requester.actors)),
                short_duration(since(a.requested_at.to_system_time(), now)),
                short_duration(since(now, a.expires_at.to_system_time())),
                truncate(&clean(&a.command), MAX_CELL),
                truncate(&clean(&a.reason), MAX_CELL),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    writeln!(out, "{}", line(&header))?;
    for row in &rows {
        writeln!(out, "{}", line(&row.each_ref().map(String::as_str)))?;
    }
    Ok(())
}

/// `42s`, `3m05s`, `2h10m`: ages at a glance.
fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// Commands and reasons come from agents: control characters (terminal escapes, newlines) are
/// shown escaped so they cannot rewrite the approver's screen or forge table rows.
fn clean(text: &str) -> String {
    super::escape::cell(text).into_owned()
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::audit::{Requester, Timestamp};
    use std::path::Path;

    #[test]
    fn admin_is_loopback_http_or_verified_https() {
        let parse = |url: &str| Endpoint::parse(url, None);
        assert_eq!(
            parse("http://127.0.0.1:9190/").unwrap().base,
            "http://127.0.0.1:9190"
        );
        assert!(parse("http://localhost:9190").is_ok());
        assert!(parse("http://[::1]:9190").is_ok());
        assert!(parse("http://10.0.0.1:9190").is_err());
        assert!(parse("http://gateway.example:9190").is_err());
        assert!(parse("http://127.0.0.1:9190/v1").is_err());
        assert!(parse("ftp://127.0.0.1:9190").is_err());
        // https needs the CA to verify the gateway with.
        let err = parse("https://gateway.example:9190")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--admin-ca"), "{err}");
        let missing = Some(Path::new("/nonexistent/ca.pem"));
        assert!(Endpoint::parse("https://gateway.example:9190", missing).is_err());
    }

    #[test]
    fn arguments_parse_anywhere() {
        use clap::{CommandFactory, Parser};
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(subcommand)]
            cmd: Top,
        }
        #[derive(Debug, clap::Subcommand)]
        enum Top {
            Approvals(ApprovalsArgs),
        }
        Cli::command().debug_assert();
        let parse = |args: &[&str]| {
            let Top::Approvals(args) = Cli::try_parse_from(args).unwrap().cmd;
            args
        };
        let args = parse(&[
            "warden",
            "approvals",
            "approve",
            "apr-1",
            "--reason",
            "ok",
            "--token",
            "t",
        ]);
        assert_eq!(args.token.as_deref(), Some("t"));
        assert!(matches!(args.cmd, ApprovalsCmd::Approve { ref id, .. } if id == "apr-1"));
        let args = parse(&["warden", "approvals", "--admin", "http://[::1]:1", "list"]);
        assert_eq!(args.admin, "http://[::1]:1");
        assert!(Cli::try_parse_from(["warden", "approvals", "deny", "apr-1"]).is_err());
    }

    #[test]
    fn ids_cannot_change_the_path() {
        assert!(decide_path("apr-00ff", "approve").is_ok());
        assert!(decide_path("../audit/verify", "approve").is_err());
        assert!(decide_path("a?b", "deny").is_err());
        assert!(decide_path("", "deny").is_err());
    }

    #[test]
    fn table_shows_chain_age_and_clean_text() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |secs: u64| {
            Timestamp::from_system_time(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        };
        let info = PendingInfo {
            id: "apr-0123456789abcdef".into(),
            session_id: "s1".into(),
            target: "orders".into(),
            requester: Requester {
                subject: "alice".into(),
                actors: vec!["alice".into(), "agent-7".into()],
            },
            command: "delete from orders\n\u{1b}[2J".into(),
            reason: "bulk delete".into(),
            requested_at: at(1_000_000 - 125),
            expires_at: at(1_000_000 + 60),
        };
        let mut out = Vec::new();
        print_table(&mut out, &[info], now).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("ID"));
        assert!(lines[1].contains("alice > agent-7"));
        assert!(lines[1].contains("2m05s"));
        assert!(lines[1].contains("1m00s"));
        assert!(!text.contains('\u{1b}'));
        assert!(lines[1].ends_with("bulk delete"));

        let mut out = Vec::new();
        print_table(&mut out, &[], now).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "no pending approvals\n");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(Duration::from_secs(42)), "42s");
        assert_eq!(short_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(short_duration(Duration::from_secs(7800)), "2h10m");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
