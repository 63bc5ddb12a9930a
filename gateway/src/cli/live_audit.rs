//! `warden audit verify --admin URL`: verification of a running gateway's trail. The gateway
//! walks its chain and records (`GET /v1/audit/verify`); with `--checkpoints`, this side also
//! downloads the whole export, checks that it chains on its own, and checks the signed
//! checkpoints against it, so that proof does not rest on the gateway's word.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use serde::Deserialize;

use super::admin_client::Live;
use super::audit::{print_checkpoints, print_report};
use super::escape;
use crate::audit::checkpoint;
use crate::audit::{EventKind, SignedHead, VerifyReport, parse_hash, verify_export};

#[derive(Deserialize)]
struct Answer {
    ok: bool,
    events: u64,
    head_seq: u64,
    head_hash: String,
    #[serde(default)]
    pruned_through: u64,
    #[serde(default)]
    records: u64,
    #[serde(default)]
    chunks: u64,
    problem: Option<Problem>,
}

#[derive(Deserialize)]
struct Problem {
    seq: u64,
    message: String,
}

pub fn verify(live: &Live, checkpoints: Option<(&Path, &Path)>) -> anyhow::Result<ExitCode> {
    let answer: Answer = live.get_json("/v1/audit/verify")?;
    if let Some(problem) = &answer.problem {
        println!(
            "audit chain BROKEN at event {}: {}",
            problem.seq,
            escape::cell(&problem.message)
        );
        return Ok(ExitCode::FAILURE);
    }
    if !answer.ok {
        println!("audit chain BROKEN: the gateway reported a problem without details");
        return Ok(ExitCode::FAILURE);
    }
    let report = VerifyReport {
        events: answer.events,
        head_seq: answer.head_seq,
        head_hash: parse_hash(&answer.head_hash).unwrap_or_default(),
        pruned_through: answer.pruned_through,
        records: answer.records,
        chunks: answer.chunks,
        problem: None,
    };
    let code = print_report(&report);
    let Some((file, pubkey)) = checkpoints else {
        return Ok(code);
    };

    // The whole export, checked here.
    let export = live.get("/v1/audit/events")?;
    check_export(&export, file, pubkey)
}

/// Check a whole JSON-lines export on its own, then the signed checkpoints against it: the
/// proof needs only the export, the checkpoint file and the public key.
pub fn check_export(export: &[u8], file: &Path, pubkey: &Path) -> anyhow::Result<ExitCode> {
    let chained = verify_export(export, false)?;
    if let Some(problem) = &chained.problem {
        println!(
            "export BROKEN at event {}: {}",
            problem.seq,
            escape::cell(&problem.message)
        );
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "export OK: {} events chain, head {}",
        chained.events,
        chained.head_hex()
    );
    #[derive(Deserialize)]
    struct Line {
        seq: u64,
        prev: String,
        hash: String,
        event: Option<serde_json::Value>,
    }
    let mut hashes = HashMap::new();
    let mut in_chain: Vec<SignedHead> = Vec::new();
    let mut base = (0, [0u8; 32]);
    for (i, text) in export.split(|b| *b == b'\n').enumerate() {
        if text.is_empty() {
            continue;
        }
        let line: Line = serde_json::from_slice(text)?;
        if i == 0 && line.seq > 1 {
            base = (line.seq - 1, parse_hash(&line.prev).unwrap_or_default());
        }
        hashes.insert(line.seq, parse_hash(&line.hash).unwrap_or_default());
        let kind = line
            .event
            .and_then(|v| serde_json::from_value::<crate::audit::Event>(v).ok())
            .map(|e| e.kind);
        if let Some(EventKind::Checkpoint(c)) = kind {
            in_chain.push(c.head);
        }
    }
    let public = checkpoint::load_public_key(pubkey)?;
    let lines = checkpoint::read_checkpoints(file)?;
    let checked = checkpoint::check_checkpoints(&lines, &in_chain, &public, base, &mut |seq| {
        Ok(hashes.get(&seq).copied())
    })?;
    Ok(print_checkpoints(&checked, chained.head_seq, file))
}
