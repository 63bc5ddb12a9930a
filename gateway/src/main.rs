//! The `warden` command line: parses arguments and hands each subcommand to `warden::cli`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use warden::cli;

/// Warden: a policy-enforcing gateway for agents reaching production data.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the gateway.
    Serve(cli::serve::ServeArgs),
    /// List, approve and deny held commands.
    Approvals(cli::approvals::ApprovalsArgs),
    /// List recorded sessions.
    Sessions(cli::sessions::SessionsArgs),
    /// Replay a session's recording.
    Replay(cli::replay::ReplayArgs),
    /// Test and inspect policy modules.
    #[command(subcommand)]
    Policy(cli::policy::PolicyCmd),
    /// Verify and export the audit trail.
    #[command(subcommand)]
    Audit(cli::audit::AuditCmd),
    /// Mint and verify development tokens.
    #[command(subcommand)]
    Token(cli::token::TokenCmd),
}

fn main() -> ExitCode {
    let args = Args::parse();
    // `warden serve` says what it does (sessions, refusals, reloads) at `info`; the other
    // commands print their own results and log only warnings. WARDEN_LOG overrides either.
    let (default, json) = match &args.command {
        Cmd::Serve(serve) => (
            "warn,warden=info",
            serve.log_format == cli::serve::LogFormat::Json,
        ),
        _ => ("warn", false),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a person at a terminal: a log file gets plain text.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        logs.json()
            .with_current_span(false)
            .with_span_list(false)
            .init();
    } else {
        logs.init();
    }
    // A panic that a session contains is one log line, not a backtrace per malformed message
    // (WARDEN_BACKTRACE=1 brings the default report back, for debugging).
    if std::env::var_os("WARDEN_BACKTRACE").is_none() {
        // A command whose output was piped into something that stopped reading (`| head`) ends
        // quietly, as a shell tool does, instead of reporting a panic.
        let serving = matches!(args.command, Cmd::Serve(_));
        std::panic::set_hook(Box::new(move |info| {
            if !serving && info.to_string().contains("Broken pipe") {
                std::process::exit(141);
            }
            tracing::error!("panic: {info}");
        }));
    }
    let result = match args.command {
        Cmd::Serve(args) => cli::serve::run(args),
        Cmd::Approvals(args) => cli::approvals::run(args),
        Cmd::Sessions(args) => cli::sessions::run(args),
        Cmd::Replay(args) => cli::replay::run(args),
        Cmd::Policy(cmd) => cli::policy::run(cmd),
        Cmd::Audit(cmd) => cli::audit::run(cmd),
        Cmd::Token(cmd) => cli::token::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("warden: {e:#}");
            ExitCode::from(2)
        }
    }
}
