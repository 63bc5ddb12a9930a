//! `warden audit`: verify the hash chain of an audit database, and export it for compliance.
//!
//! These open the database file themselves, and redb locks it to one process: stop the gateway
//! first, or point `--db` at a copy.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::audit::{AuditError, AuditStore, StoreOptions, VerifyReport, verify_export};

/// `warden audit ...`
#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// Walk the hash chain; exit status 1 at the first altered, missing or moved event.
    Verify {
        /// The audit database (`[audit] path` in warden.toml).
        #[arg(long)]
        db: PathBuf,
    },
    /// Write events as JSON lines (`seq`, `prev`, `hash`, `event`) to standard output.
    Export {
        #[arg(long)]
        db: PathBuf,
        /// First event to export (default: the first).
        #[arg(long)]
        from: Option<u64>,
    },
    /// Check an export file on its own; exit status 1 if it does not chain.
    VerifyExport {
        /// The JSON-lines file `warden audit export` wrote.
        #[arg(long)]
        file: PathBuf,
    },
}

/// Run a `warden audit` subcommand. A file that cannot be opened is an error; a broken chain
/// is reported on stdout with exit status 1.
pub fn run(cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCmd::Verify { db } => {
            let store = open_existing(&db)?;
            let report = store.verify().context("reading the audit chain")?;
            store.close().context("closing the audit database")?;
            Ok(print_report(&report))
        }
        AuditCmd::Export { db, from } => {
            let store = open_existing(&db)?;
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            store.export(from, &mut out).context("exporting events")?;
            out.flush()?;
            drop(out);
            store.close().context("closing the audit database")?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::VerifyExport { file } => {
            let input = File::open(&file).with_context(|| format!("opening {}", file.display()))?;
            let report = verify_export(BufReader::new(input))
                .with_context(|| format!("reading {}", file.display()))?;
            Ok(print_report(&report))
        }
    }
}

/// The stable, greppable verdict lines the brief and runbooks refer to.
fn print_report(report: &VerifyReport) -> ExitCode {
    match &report.problem {
        None => {
            println!(
                "audit chain OK: {} events, head {}",
                report.events,
                report.head_hex()
            );
            ExitCode::SUCCESS
        }
        Some(problem) => {
            println!("audit chain BROKEN at event {}: {}", problem.seq, problem);
            ExitCode::FAILURE
        }
    }
}

/// Open without creating (a mistyped path must not verify as an empty, valid chain) and with
/// redb's page checksums checked, so a file edited outside redb is an error, not trusted.
fn open_existing(path: &Path) -> anyhow::Result<AuditStore> {
    if !path.is_file() {
        anyhow::bail!("no audit database at {}", path.display());
    }
    let options = StoreOptions {
        create: false,
        check_integrity: true,
        ..StoreOptions::default()
    };
    match AuditStore::open_with(path, &options) {
        Ok(store) => Ok(store),
        Err(err @ AuditError::Locked(_)) => Err(err.into()),
        Err(err) => Err(anyhow::Error::new(err).context(format!("opening {}", path.display()))),
    }
}
