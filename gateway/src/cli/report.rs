//! `warden audit report`: the PCI DSS evidence report for a period, from a database file or a
//! running gateway (`--admin`), as Markdown (for people) or JSON (for tools). The report's
//! content is built in `audit::report`; this file picks the source and prints.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::admin_client::LiveArgs;
use super::audit::source;
use super::escape;
use super::export::parse_time;
use super::sessions::open_db;
use crate::audit::checkpoint;
use crate::audit::{ExportFilter, Timestamp, report};

/// `warden audit report (--db PATH | --admin URL) [--from T] [--to T] [--json]`
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// The audit database (`[audit] path` in warden.toml).
    #[arg(long)]
    pub db: Option<PathBuf>,
    #[command(flatten)]
    pub live: LiveArgs,
    /// The period's start (RFC 3339, a date, or a span back from now like `30d`).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<Timestamp>,
    /// The period's end (same forms).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<Timestamp>,
    /// JSON instead of Markdown.
    #[arg(long)]
    pub json: bool,
    /// Check the chain against this checkpoint file too (with --pubkey; --db only).
    #[arg(long, requires = "pubkey")]
    pub checkpoints: Option<PathBuf>,
    #[arg(long, requires = "checkpoints")]
    pub pubkey: Option<PathBuf>,
    /// Write the report to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let text = match args.live.live(args.db.as_deref())? {
        Some(live) => {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(t) = args.from {
                query.append_pair("from", &t.to_string());
            }
            if let Some(t) = args.to {
                query.append_pair("to", &t.to_string());
            }
            if !args.json {
                query.append_pair("format", "markdown");
            }
            if args.checkpoints.is_some() {
                anyhow::bail!(
                    "--checkpoints is checked against a database file (--db): the gateway does \
                     not read your checkpoint copy"
                );
            }
            let bytes = live.get(&format!("/v1/audit/report?{}", query.finish()))?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        None => {
            let store = open_db(&source(args.db.as_deref())?)?;
            let built = build(&args, &store);
            store.close().context("closing the audit database")?;
            let report = built?;
            if args.json {
                serde_json::to_string_pretty(&report)?
            } else {
                report.markdown()
            }
        }
    };
    // Markdown cells are escaped as they are written; JSON keeps its value.
    let text = escape::json_line(&text).into_owned();
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("warden: wrote {}", path.display());
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn build(args: &ReportArgs, store: &crate::audit::AuditStore) -> anyhow::Result<report::Report> {
    let checked = match args.checkpoints.as_deref().zip(args.pubkey.as_deref()) {
        Some((file, pubkey)) => {
            let public = checkpoint::load_public_key(pubkey)?;
            let lines = checkpoint::read_checkpoints(file)?;
            Some(checkpoint::check_checkpoints(
                &lines,
                &store.checkpoint_events()?,
                &public,
                store.base()?,
                &mut |seq| store.hash_at(seq),
            )?)
        }
        None => None,
    };
    let filter = ExportFilter {
        from: args.from,
        to: args.to,
        ..ExportFilter::default()
    };
    Ok(report::build(store, &filter, checked.as_ref())?)
}
