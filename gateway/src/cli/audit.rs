//! `warden audit`: verify the hash chain of an audit database (and its signed checkpoints),
//! export it for compliance, and make checkpoint keys.
//!
//! These open the database file themselves, and redb locks it to one process: stop the gateway
//! first, or point `--db` at a copy.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::admin_client::LiveArgs;
use super::export::ExportArgs;
use super::report::ReportArgs;
use super::sessions::open_db;
use crate::audit::checkpoint::{self, CheckpointReport};
use crate::audit::{AuditStore, VerifyReport, verify_export};

/// `warden audit ...`
#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// Walk the hash chain and check every record and recording chunk against it; with
    /// `--checkpoints`, also prove the chain was not rewritten since its last signed
    /// checkpoint. Exit status 1 at the first problem.
    Verify {
        /// The audit database (`[audit] path` in warden.toml).
        #[arg(long)]
        db: Option<PathBuf>,
        #[command(flatten)]
        live: LiveArgs,
        /// The checkpoint file the gateway writes (`[audit.checkpoints] file`).
        #[arg(long, requires = "pubkey")]
        checkpoints: Option<PathBuf>,
        /// The checkpoint key's public half (PEM, or 64 hex digits).
        #[arg(long, requires = "checkpoints")]
        pubkey: Option<PathBuf>,
    },
    /// Make an Ed25519 key pair for signed checkpoints: the private key (PKCS#8 PEM, mode 0600)
    /// for `[audit.checkpoints] key`, the public key for `verify --pubkey`.
    Keygen {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        pubkey: PathBuf,
    },
    /// Write events to standard output as JSON lines (`seq`, `prev`, `hash`, `event`) or CSV,
    /// filtered by time, session, actor, target, verdict or type.
    Export(ExportArgs),
    /// A PCI DSS evidence report for a period (Markdown, or JSON with --json): sessions per
    /// principal and delegation chain, denied and held commands with approvers and reasons,
    /// masked cells per policy and column, logins refused, and the verification result with
    /// the checkpoints it relied on.
    Report(ReportArgs),
    /// Check a JSON-lines export on its own; exit status 1 if it does not chain.
    VerifyExport {
        /// The JSON-lines file `warden audit export` wrote.
        #[arg(long)]
        file: PathBuf,
        /// The export was filtered: sequence numbers may skip; each line is checked alone.
        #[arg(long, conflicts_with = "checkpoints")]
        filtered: bool,
        /// Also check the signed checkpoints against the export (a whole export: an edited
        /// and rehashed one chains on its own, but not to what the key signed).
        #[arg(long, requires = "pubkey")]
        checkpoints: Option<PathBuf>,
        #[arg(long, requires = "checkpoints")]
        pubkey: Option<PathBuf>,
    },
}

/// Run a `warden audit` subcommand. A file that cannot be opened is an error; a broken chain
/// is reported on stdout with exit status 1.
pub fn run(cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCmd::Verify {
            db,
            live,
            checkpoints,
            pubkey,
        } => {
            let checkpoints = checkpoints.as_deref().zip(pubkey.as_deref());
            if let Some(live) = live.live(db.as_deref())? {
                return super::live_audit::verify(&live, checkpoints);
            }
            let store = open_db(&source(db.as_deref())?)?;
            let checked = verify_store(&store, checkpoints);
            store.close().context("closing the audit database")?;
            checked
        }
        AuditCmd::Report(args) => super::report::run(args),
        AuditCmd::Keygen { key, pubkey } => {
            let public = crate::audit::checkpoint::generate_key(&key, &pubkey)?;
            println!(
                "wrote {} (private, 0600) and {}",
                key.display(),
                pubkey.display()
            );
            println!("public key {public}");
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Export(args) => {
            if let Some(live) = args.live.live(args.db.as_deref())? {
                return super::export::run_live(&args, &live);
            }
            let store = open_db(&source(args.db.as_deref())?)?;
            let exported = super::export::run(args, &store);
            store.close().context("closing the audit database")?;
            exported
        }
        AuditCmd::VerifyExport {
            file,
            filtered,
            checkpoints,
            pubkey,
        } => {
            if let Some((cp, key)) = checkpoints.as_deref().zip(pubkey.as_deref()) {
                let export =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                return super::live_audit::check_export(&export, cp, key);
            }
            let input = File::open(&file).with_context(|| format!("opening {}", file.display()))?;
            let report = verify_export(BufReader::new(input), filtered)
                .with_context(|| format!("reading {}", file.display()))?;
            Ok(print_report(&report))
        }
    }
}

/// Verify the chain, then (given a checkpoint file and public key) the checkpoints.
pub fn verify_store(
    store: &AuditStore,
    checkpoints: Option<(&Path, &Path)>,
) -> anyhow::Result<ExitCode> {
    let report = store.verify().context("reading the audit chain")?;
    let code = print_report(&report);
    if code != ExitCode::SUCCESS {
        return Ok(code);
    }
    if report.pruned_through > 0 {
        println!(
            "  events 1..={} were removed by retention; the chain starts from that cut",
            report.pruned_through
        );
    }
    let Some((file, pubkey)) = checkpoints else {
        return Ok(code);
    };
    let public = checkpoint::load_public_key(pubkey)?;
    let lines = checkpoint::read_checkpoints(file)?;
    let in_chain = store.checkpoint_events()?;
    let checked =
        checkpoint::check_checkpoints(&lines, &in_chain, &public, store.base()?, &mut |seq| {
            store.hash_at(seq)
        })?;
    Ok(print_checkpoints(&checked, report.head_seq, file))
}

pub(crate) fn print_checkpoints(checked: &CheckpointReport, head: u64, file: &Path) -> ExitCode {
    if let Some(problem) = &checked.problem {
        println!("checkpoints FAILED: {}", super::escape::cell(problem));
        return ExitCode::FAILURE;
    }
    let Some(last) = &checked.last else {
        println!(
            "checkpoints FAILED: {} holds no checkpoint of this chain",
            file.display()
        );
        return ExitCode::FAILURE;
    };
    println!(
        "checkpoints OK: {} signed checkpoints match the chain, the last at event {} ({}); {} \
         checkpoint events in the chain are signed by this key",
        checked.matched, last.seq, last.time, checked.in_chain
    );
    if checked.before_cut > 0 {
        println!(
            "  {} older checkpoints precede the retention cut",
            checked.before_cut
        );
    }
    // The event after a checkpoint's head is the checkpoint event itself.
    if head > last.seq + 1 {
        println!(
            "  events {}..={head} are newer than the last checkpoint: not yet covered",
            last.seq + 2
        );
    }
    ExitCode::SUCCESS
}

/// `--db`, or the error saying what to give.
pub(crate) fn source(db: Option<&Path>) -> anyhow::Result<PathBuf> {
    db.map(Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("{}", super::sessions::NO_SOURCE))
}

/// The stable, greppable verdict lines the brief and runbooks refer to.
pub(crate) fn print_report(report: &VerifyReport) -> ExitCode {
    match &report.problem {
        None => {
            println!(
                "audit chain OK: {} events, head {}",
                report.events,
                report.head_hex()
            );
            println!(
                "  {} session and approval records and {} recording chunks match their events",
                report.records, report.chunks
            );
            ExitCode::SUCCESS
        }
        Some(problem) => {
            let message = super::escape::cell(&problem.message);
            println!("audit chain BROKEN at event {}: {message}", problem.seq);
            ExitCode::FAILURE
        }
    }
}
