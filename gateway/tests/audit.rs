//! The audit store against real redb files: group commit under concurrency, tamper detection by
//! editing the file behind the store's back, a writer killed mid-append, and the record tables.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use warden::audit::schema::{APPROVALS, EVENTS, HEAD, META, RECORDINGS, SESSIONS};
use warden::audit::{
    ApprovalDecided, ApprovalRequested, AuditError, AuditPrincipal, AuditStore, AuditVerdict,
    CommandEvent, EventKind, MaskedCells, MaskedEvent, NewEvent, Note, PolicyDecision, ProblemKind,
    Requester, SessionCounts, SessionEnd, SessionStart, verify_export,
};
use warden::audit::{StoreOptions, Timestamp, checkpoint};
use warden::cli::audit::{AuditCmd, run};
use warden::protocol::Protocol;

fn note(message: impl Into<String>) -> NewEvent {
    NewEvent::global(EventKind::Note(Note {
        topic: "test".into(),
        message: message.into(),
    }))
}

fn command(session: &str, text: &str, verdict: AuditVerdict) -> NewEvent {
    NewEvent::session(
        session,
        EventKind::Command(CommandEvent {
            command: text.into(),
            kind: "select".into(),
            verdict,
            reason: None,
            policies: vec![PolicyDecision {
                policy: "allow-all".into(),
                module_sha256: Some("ab".repeat(32)),
                verdict,
                reason: None,
                latency_us: 17,
                error: None,
                shadow: false,
            }],
            shadow_verdict: None,
            shadow_reason: None,
        }),
    )
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("audit.redb")
}

/// A closed database holding `n` note events.
fn closed_db_with(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = AuditStore::open(&path).unwrap();
    for i in 1..=n {
        assert_eq!(
            store.append_blocking(note(format!("event {i}"))).unwrap(),
            i
        );
    }
    store.close().unwrap();
    (dir, path)
}

/// Edit the events table directly, as someone with access to the file could.
fn tamper(path: &Path, edit: impl FnOnce(&mut redb::Table<'_, u64, ([u8; 32], &[u8])>)) {
    let db = Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut events = txn.open_table(EVENTS).unwrap();
        edit(&mut events);
    }
    txn.commit().unwrap();
}

fn stored(table: &redb::Table<'_, u64, ([u8; 32], &[u8])>, seq: u64) -> ([u8; 32], Vec<u8>) {
    let guard = table.get(seq).unwrap().unwrap();
    let (hash, bytes) = guard.value();
    (hash, bytes.to_vec())
}

fn verify_file(path: &Path) -> warden::audit::VerifyReport {
    let store = AuditStore::open(path).unwrap();
    let report = store.verify().unwrap();
    store.close().unwrap();
    report
}

fn cli_verify(path: &Path) -> ExitCode {
    run(AuditCmd::Verify {
        db: Some(path.into()),
        live: Default::default(),
        checkpoints: None,
        pubkey: None,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_chain_without_gaps_and_share_commits() {
    const TASKS: u64 = 32;
    const EACH: u64 = 50;
    let dir = tempfile::tempdir().unwrap();
    let store = AuditStore::open(db_path(&dir)).unwrap();

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..EACH {
                let event = command(
                    &format!("s{t}"),
                    &format!("select {i}"),
                    AuditVerdict::Allow,
                );
                seqs.push(store.append(event).await.unwrap());
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.extend(task.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=TASKS * EACH).collect::<Vec<_>>());

    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problem);
    assert_eq!(report.events, TASKS * EACH);
    assert_eq!(store.head().unwrap(), (report.head_seq, report.head_hash));

    let stats = store.stats();
    eprintln!("{stats:?}");
    assert_eq!(stats.events, TASKS * EACH);
    assert!(
        stats.commits < stats.events,
        "group commit should batch: {} commits for {} events",
        stats.commits,
        stats.events
    );
    assert!(stats.largest_batch > 1);
    store.close().unwrap();
}

#[test]
fn a_reopened_store_continues_the_chain() {
    let (_dir, path) = closed_db_with(3);
    let store = AuditStore::open(&path).unwrap();
    assert_eq!(store.append_blocking(note("after reopen")).unwrap(), 4);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problem);
    assert_eq!(report.events, 4);
    store.close().unwrap();
    assert_eq!(cli_verify(&path), ExitCode::SUCCESS);
}

#[test]
fn a_changed_event_is_detected_at_its_seq() {
    let (_dir, path) = closed_db_with(10);
    tamper(&path, |events| {
        let (hash, bytes) = stored(events, 5);
        let text = String::from_utf8(bytes)
            .unwrap()
            .replace("event 5", "event 6");
        events.insert(5, (hash, text.as_bytes())).unwrap();
    });
    let problem = verify_file(&path).problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (5, ProblemKind::Changed),
        "{problem}"
    );
    assert_eq!(cli_verify(&path), ExitCode::FAILURE);
}

#[test]
fn a_changed_stored_hash_is_detected() {
    let (_dir, path) = closed_db_with(10);
    tamper(&path, |events| {
        let (mut hash, bytes) = stored(events, 7);
        hash[0] ^= 1;
        events.insert(7, (hash, bytes.as_slice())).unwrap();
    });
    let problem = verify_file(&path).problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (7, ProblemKind::HashChanged),
        "{problem}"
    );
}

#[test]
fn a_deleted_event_is_detected() {
    let (_dir, path) = closed_db_with(10);
    tamper(&path, |events| {
        events.remove(4).unwrap().unwrap();
    });
    let report = verify_file(&path);
    let problem = report.problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (4, ProblemKind::Missing),
        "{problem}"
    );
    assert_eq!(report.events, 3);
}

#[test]
fn swapped_events_are_detected() {
    let (_dir, path) = closed_db_with(10);
    tamper(&path, |events| {
        let (hash3, bytes3) = stored(events, 3);
        let (hash8, bytes8) = stored(events, 8);
        events.insert(3, (hash8, bytes8.as_slice())).unwrap();
        events.insert(8, (hash3, bytes3.as_slice())).unwrap();
    });
    let problem = verify_file(&path).problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (3, ProblemKind::Reordered),
        "{problem}"
    );
}

#[test]
fn a_truncated_tail_is_detected() {
    let (_dir, path) = closed_db_with(10);
    tamper(&path, |events| {
        events.remove(10).unwrap().unwrap();
    });
    let problem = verify_file(&path).problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (10, ProblemKind::Truncated),
        "{problem}"
    );
    assert_eq!(cli_verify(&path), ExitCode::FAILURE);
}

#[test]
fn a_truncated_tail_with_a_forged_head_is_detected() {
    let (_dir, path) = closed_db_with(10);
    let db = Database::open(&path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut events = txn.open_table(EVENTS).unwrap();
        events.remove(10).unwrap().unwrap();
        // Point the head at the new last event, but without its hash (which needs recomputing
        // the chain): the head hash check catches it.
        txn.open_table(META)
            .unwrap()
            .insert(HEAD, (9u64, [7u8; 32]))
            .unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    let problem = verify_file(&path).problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (9, ProblemKind::HeadMismatch),
        "{problem}"
    );
}

#[test]
fn an_empty_database_verifies_and_a_missing_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    AuditStore::open(&path).unwrap().close().unwrap();
    assert_eq!(cli_verify(&path), ExitCode::SUCCESS);
    // A typo must not verify as an empty chain.
    assert!(
        run(AuditCmd::Verify {
            db: Some(dir.path().join("nope.redb")),
            live: Default::default(),
            checkpoints: None,
            pubkey: None,
        })
        .is_err()
    );
    assert!(!dir.path().join("nope.redb").exists());
}

#[test]
fn the_file_is_locked_while_a_store_has_it_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = AuditStore::open(&path).unwrap();
    assert!(matches!(
        AuditStore::open(&path),
        Err(AuditError::Locked(_))
    ));
    let clone = store.clone();
    assert!(matches!(store.close(), Err(AuditError::InUse(1))));
    clone.close().unwrap();
    AuditStore::open(&path).unwrap().close().unwrap();
}

#[tokio::test]
async fn sessions_approvals_and_recordings_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = AuditStore::open(db_path(&dir)).unwrap();
    let principal = AuditPrincipal {
        subject: "alice".into(),
        issuer: "https://idp.test".into(),
        groups: vec!["dba".into()],
        actors: vec!["alice".into(), "agent-7".into()],
    };
    let start = store
        .append(NewEvent::session(
            "s1",
            EventKind::SessionStart(SessionStart {
                protocol: Protocol::Postgres,
                target: "orders".into(),
                client_addr: "127.0.0.1:40000".into(),
                principal: principal.clone(),
            }),
        ))
        .await
        .unwrap();
    let cmd = store
        .append(command("s1", "select pan from cards", AuditVerdict::Mask))
        .await
        .unwrap();
    store
        .append(NewEvent::session(
            "s1",
            EventKind::Masked(MaskedEvent {
                command_seq: cmd,
                cells: vec![MaskedCells {
                    column: "pan".into(),
                    rule: "pan".into(),
                    count: 3,
                }],
            }),
        ))
        .await
        .unwrap();
    let requester = Requester {
        subject: "alice".into(),
        actors: principal.actors.clone(),
    };
    let requested = store
        .append(NewEvent::session(
            "s1",
            EventKind::ApprovalRequested(ApprovalRequested {
                approval_id: "ap-1".into(),
                command: "drop table cards".into(),
                reason: "ddl needs a second person".into(),
                requester: requester.clone(),
            }),
        ))
        .await
        .unwrap();
    let pending = store.approval("ap-1").unwrap().unwrap();
    assert!(pending.is_pending());
    assert_eq!(pending.requested_seq, requested);
    assert_eq!(pending.session.as_deref(), Some("s1"));
    let decided = store
        .append(NewEvent::session(
            "s1",
            EventKind::ApprovalDecided(ApprovalDecided {
                approval_id: "ap-1".into(),
                approver: "carol".into(),
                approved: false,
                reason: Some("not today".into()),
            }),
        ))
        .await
        .unwrap();
    let counts = SessionCounts {
        commands: 2,
        allowed: 0,
        denied: 1,
        masked: 1,
        approvals: 1,
    };
    let end = store
        .append(NewEvent::session(
            "s1",
            EventKind::SessionEnd(SessionEnd {
                reason: "client closed".into(),
                counts,
            }),
        ))
        .await
        .unwrap();

    // Sessions: start indexed, end filled in.
    let session = store.session("s1").unwrap().unwrap();
    assert_eq!(session.principal, principal);
    assert_eq!(session.protocol, Protocol::Postgres);
    assert_eq!(session.start_seq, start);
    let ended = session.end.unwrap();
    assert_eq!(
        (ended.end_seq, ended.counts, ended.reason.as_str()),
        (end, counts, "client closed")
    );
    assert!(ended.ended >= session.started);
    assert_eq!(store.sessions().unwrap().len(), 1);
    assert!(store.session("nope").unwrap().is_none());

    // Approvals: decided through the event, and one put directly.
    let decision = store.approval("ap-1").unwrap().unwrap().decision.unwrap();
    assert_eq!(
        (
            decision.approver.as_str(),
            decision.approved,
            decision.decided_seq
        ),
        ("carol", false, decided)
    );
    let ids: Vec<_> = store
        .approvals()
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, ["ap-1"]);

    // Recordings: chunks in order, per session; a session id that is a prefix of another's
    // does not see its chunks.
    for chunk in ["one", "two", "three"] {
        store
            .append_recording("s1", chunk.as_bytes().to_vec())
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .append_recording("s10", b"other".to_vec())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.recording("s1").unwrap(),
        [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
    assert_eq!(store.recording("s10").unwrap(), [b"other".to_vec()]);
    assert!(store.recording("none").unwrap().is_empty());

    // Events read back as written, with their hashes.
    let events = store.events(cmd..=cmd + 1).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].event.seq, cmd);
    assert!(
        matches!(&events[0].event.kind, EventKind::Command(c) if c.verdict == AuditVerdict::Mask)
    );
    assert!(matches!(&events[1].event.kind, EventKind::Masked(m) if m.command_seq == cmd));
    // Six events, and one `recording` event chaining each of the four chunks.
    assert_eq!(store.events(..).unwrap().len(), 10);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.events, report.chunks), (10, 4));
    store.close().unwrap();
}

/// A closed database holding one whole session: start, a held command approved by carol, two
/// recording chunks, end. Returns the seqs of (session_start, first recording, approval_decided).
fn closed_db_with_a_session() -> (tempfile::TempDir, PathBuf, [u64; 3]) {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = AuditStore::open(&path).unwrap();
    let principal = AuditPrincipal {
        subject: "agent-7".into(),
        issuer: "idp".into(),
        groups: vec![],
        actors: vec!["alice".into(), "agent-7".into()],
    };
    let start = store
        .append_blocking(NewEvent::session(
            "s1",
            EventKind::SessionStart(SessionStart {
                protocol: Protocol::Ssh,
                target: "box".into(),
                client_addr: "127.0.0.1:1".into(),
                principal,
            }),
        ))
        .unwrap();
    store
        .append_blocking(command("s1", "id", AuditVerdict::RequireApproval))
        .unwrap();
    store
        .append_blocking(NewEvent::session(
            "s1",
            EventKind::ApprovalRequested(ApprovalRequested {
                approval_id: "ap-1".into(),
                command: "id".into(),
                reason: "needs a human".into(),
                requester: Requester {
                    subject: "agent-7".into(),
                    actors: vec!["alice".into(), "agent-7".into()],
                },
            }),
        ))
        .unwrap();
    let decided = store
        .append_blocking(NewEvent::session(
            "s1",
            EventKind::ApprovalDecided(ApprovalDecided {
                approval_id: "ap-1".into(),
                approver: "carol".into(),
                approved: false,
                reason: Some("not today".into()),
            }),
        ))
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for chunk in [
            "{\"t\":0,\"type\":\"output\",\"data\":\"uid=0(root) gid=0(root)\"}\n",
            "{\"t\":9,\"type\":\"exit\",\"status\":0}\n",
        ] {
            store
                .append_recording("s1", chunk.as_bytes().to_vec())
                .await
                .unwrap();
        }
    });
    let first_chunk = decided + 1;
    store
        .append_blocking(NewEvent::session(
            "s1",
            EventKind::SessionEnd(SessionEnd {
                reason: "client closed".into(),
                counts: SessionCounts::default(),
            }),
        ))
        .unwrap();
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.records, report.chunks), (2, 2));
    store.close().unwrap();
    (dir, path, [start, first_chunk, decided])
}

/// Edit one of the record tables directly.
fn tamper_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    path: &Path,
    table: redb::TableDefinition<K, V>,
    edit: impl FnOnce(&mut redb::Table<'_, K, V>),
) {
    let db = Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut opened = txn.open_table(table).unwrap();
        edit(&mut opened);
    }
    txn.commit().unwrap();
}

fn edited_json(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.contains(from), "{text}");
    text.replace(from, to).into_bytes()
}

#[test]
fn a_forged_recording_chunk_is_found_at_its_recording_event() {
    let (_dir, path, [_, chunk_seq, _]) = closed_db_with_a_session();
    // The attack from the issue: the chunk rewritten so replay shows another user.
    tamper_table(&path, RECORDINGS, |t| {
        let forged = "{\"t\":0,\"type\":\"output\",\"data\":\"uid=1000(alice) gid=1000(alice)\"}\n";
        t.insert(("s1", 0), forged.as_bytes()).unwrap();
    });
    let report = verify_file(&path);
    let problem = report.problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (chunk_seq, ProblemKind::RecordChanged)
    );
    assert!(
        problem.message.contains("recording chunk 0 of session s1"),
        "{problem}"
    );
    assert_eq!(cli_verify(&path), ExitCode::FAILURE);
}

#[test]
fn a_removed_or_added_recording_chunk_is_found() {
    let (_dir, path, [_, chunk_seq, _]) = closed_db_with_a_session();
    tamper_table(&path, RECORDINGS, |t| {
        t.remove(("s1", 1)).unwrap();
    });
    let problem = verify_file(&path).problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (chunk_seq + 1, ProblemKind::RecordRemoved)
    );

    let (_dir, path, _) = closed_db_with_a_session();
    tamper_table(&path, RECORDINGS, |t| {
        t.insert(
            ("s1", 2),
            b"{\"t\":10,\"type\":\"output\",\"data\":\"more\"}\n".as_slice(),
        )
        .unwrap();
    });
    let problem = verify_file(&path).problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::RecordAdded);
    assert!(
        problem.message.contains("recording chunk 2 of session s1"),
        "{problem}"
    );
}

#[test]
fn an_edited_session_record_is_found_at_its_start() {
    let (_dir, path, [start, _, _]) = closed_db_with_a_session();
    tamper_table(&path, SESSIONS, |t| {
        let bytes = t.get("s1").unwrap().unwrap().value().to_vec();
        let forged = edited_json(&bytes, "\"alice\"", "\"mallory\"");
        t.insert("s1", forged.as_slice()).unwrap();
    });
    let problem = verify_file(&path).problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (start, ProblemKind::RecordChanged)
    );
    assert!(problem.message.contains("session record s1"), "{problem}");
    assert_eq!(cli_verify(&path), ExitCode::FAILURE);

    // A session no event started.
    let (_dir, path, _) = closed_db_with_a_session();
    tamper_table(&path, SESSIONS, |t| {
        let bytes = t.get("s1").unwrap().unwrap().value().to_vec();
        let forged = edited_json(&bytes, "\"s1\"", "\"s2\"");
        t.insert("s2", forged.as_slice()).unwrap();
    });
    let problem = verify_file(&path).problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::RecordAdded);
    assert!(problem.message.contains("session record s2"), "{problem}");
}

#[test]
fn an_edited_approval_decision_is_found_at_its_decision() {
    let (_dir, path, [_, _, decided]) = closed_db_with_a_session();
    // carol's refusal turned into an approval.
    tamper_table(&path, APPROVALS, |t| {
        let bytes = t.get("ap-1").unwrap().unwrap().value().to_vec();
        let forged = edited_json(&bytes, "\"approved\":false", "\"approved\":true");
        t.insert("ap-1", forged.as_slice()).unwrap();
    });
    let problem = verify_file(&path).problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (decided, ProblemKind::RecordChanged)
    );
    assert!(
        problem.message.contains("approval record ap-1"),
        "{problem}"
    );

    let (_dir, path, [_, _, _]) = closed_db_with_a_session();
    tamper_table(&path, APPROVALS, |t| {
        t.remove("ap-1").unwrap();
    });
    let problem = verify_file(&path).problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::RecordRemoved);
}

/// A store that signs checkpoints with a fresh key in `dir`; returns it with the checkpoint
/// file and public key paths.
fn store_with_checkpoints(dir: &Path) -> (AuditStore, PathBuf, PathBuf) {
    let key = dir.join("checkpoint.pem");
    let public = dir.join("checkpoint.pub.pem");
    checkpoint::generate_key(&key, &public).unwrap();
    let file = dir.join("elsewhere-checkpoints.jsonl");
    let signer = checkpoint::Checkpointer::from_config(&checkpoint::CheckpointConfig {
        key,
        file: file.clone(),
        interval: Duration::from_secs(300),
        syslog: None,
    })
    .unwrap();
    let options = StoreOptions {
        checkpointer: Some(std::sync::Arc::new(signer)),
        ..StoreOptions::default()
    };
    let store = AuditStore::open_with(dir.join("audit.redb"), &options).unwrap();
    (store, file, public)
}

fn cli_verify_checkpoints(path: &Path, file: &Path, public: &Path) -> ExitCode {
    run(AuditCmd::Verify {
        db: Some(path.into()),
        live: Default::default(),
        checkpoints: Some(file.into()),
        pubkey: Some(public.into()),
    })
    .unwrap()
}

/// Rehash every event from `from` on, and the head, as a rewriter with write access would.
fn rehash_from(path: &Path, from: u64) {
    let db = Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut events = txn.open_table(EVENTS).unwrap();
        let mut prev = if from == 1 {
            [0u8; 32]
        } else {
            stored(&events, from - 1).0
        };
        let last = events.last().unwrap().unwrap().0.value();
        for seq in from..=last {
            let (_, bytes) = stored(&events, seq);
            let hash = warden::audit::chain_hash(&prev, &bytes);
            events.insert(seq, (hash, bytes.as_slice())).unwrap();
            prev = hash;
        }
        let mut meta = txn.open_table(META).unwrap();
        meta.insert(HEAD, (last, prev)).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn a_whole_chain_rewrite_verifies_alone_but_fails_against_the_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (store, file, public) = store_with_checkpoints(dir.path());
    store.append_blocking(note("start")).unwrap();
    let denied = store
        .append_blocking(command("s1", "drop table cards", AuditVerdict::Deny))
        .unwrap();
    let first = store.checkpoint_blocking().unwrap().unwrap();
    assert_eq!(first.seq, denied);
    // Nothing new: no second signature of the same head.
    assert!(store.checkpoint_blocking().unwrap().is_none());
    store.append_blocking(note("later")).unwrap();
    let second = store.checkpoint_blocking().unwrap().unwrap();
    store.close().unwrap();
    let path = dir.path().join("audit.redb");
    assert_eq!(
        cli_verify_checkpoints(&path, &file, &public),
        ExitCode::SUCCESS
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 2);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // The attack from the issue: the deny becomes a mask and every later event is rehashed.
    tamper(&path, |events| {
        let (hash, bytes) = stored(events, denied);
        let text = String::from_utf8(bytes)
            .unwrap()
            .replace("\"deny\"", "\"mask\"");
        events.insert(denied, (hash, text.as_bytes())).unwrap();
    });
    rehash_from(&path, denied);
    // The chain alone cannot tell...
    assert!(verify_file(&path).is_ok());
    assert_eq!(cli_verify(&path), ExitCode::SUCCESS);
    // ...the signed checkpoints can.
    assert_eq!(
        cli_verify_checkpoints(&path, &file, &public),
        ExitCode::FAILURE
    );
    let store = AuditStore::open(&path).unwrap();
    let report = checkpoint::check_checkpoints(
        &checkpoint::read_checkpoints(&file).unwrap(),
        &store.checkpoint_events().unwrap(),
        &checkpoint::load_public_key(&public).unwrap(),
        store.base().unwrap(),
        &mut |seq| store.hash_at(seq),
    )
    .unwrap();
    store.close().unwrap();
    let problem = report.problem.unwrap();
    assert!(
        problem.contains(&format!("signed event {denied}")),
        "{problem}"
    );
    assert!(problem.contains("rewritten"), "{problem}");
    let _ = second;
}

#[test]
fn a_cut_tail_and_a_foreign_key_fail_checkpoint_verification() {
    let dir = tempfile::tempdir().unwrap();
    let (store, file, public) = store_with_checkpoints(dir.path());
    for i in 0..5 {
        store.append_blocking(note(format!("n{i}"))).unwrap();
    }
    let signed = store.checkpoint_blocking().unwrap().unwrap();
    store.close().unwrap();
    let path = dir.path().join("audit.redb");
    // Remove the tail, the checkpoint event with it, and point the head at what is left.
    tamper(&path, |events| {
        for seq in 4..=signed.seq + 1 {
            events.remove(seq).unwrap();
        }
    });
    rehash_from(&path, 3);
    assert!(verify_file(&path).is_ok());
    assert_eq!(
        cli_verify_checkpoints(&path, &file, &public),
        ExitCode::FAILURE
    );

    // A checkpoint file checked with another key proves nothing.
    let other = tempfile::tempdir().unwrap();
    let other_public = other.path().join("p.pem");
    checkpoint::generate_key(&other.path().join("k.pem"), &other_public).unwrap();
    let (_d, fresh) = closed_db_with(3);
    assert_eq!(
        cli_verify_checkpoints(&fresh, &file, &other_public),
        ExitCode::FAILURE
    );
}

#[test]
fn an_export_verifies_on_its_own_and_shows_tampering() {
    let (_dir, path) = closed_db_with(8);
    let store = AuditStore::open(&path).unwrap();
    let report = store.verify().unwrap();
    let mut full = Vec::new();
    assert_eq!(store.export(None, &mut full).unwrap(), 8);
    let mut tail = Vec::new();
    assert_eq!(store.export(Some(5), &mut tail).unwrap(), 4);
    store.close().unwrap();

    let checked = verify_export(full.as_slice(), false).unwrap();
    assert!(checked.is_ok(), "{:?}", checked.problem);
    assert_eq!((checked.events, checked.head_hash), (8, report.head_hash));
    let checked = verify_export(tail.as_slice(), false).unwrap();
    assert!(checked.is_ok(), "{:?}", checked.problem);
    assert_eq!((checked.events, checked.head_hash), (4, report.head_hash));

    let text = String::from_utf8(full).unwrap();
    assert_eq!(text.lines().count(), 8);
    let changed = text.replace("event 3", "event X");
    let problem = verify_export(changed.as_bytes(), false)
        .unwrap()
        .problem
        .unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (3, ProblemKind::Changed),
        "{problem}"
    );
    let dropped: String = text
        .lines()
        .filter(|line| !line.starts_with("{\"seq\":6,"))
        .map(|line| format!("{line}\n"))
        .collect();
    let problem = verify_export(dropped.as_bytes(), false)
        .unwrap()
        .problem
        .unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (6, ProblemKind::Missing),
        "{problem}"
    );
}

const CHILD_ENV: &str = "WARDEN_AUDIT_TEST_CHILD_DB";
const CHILD_TEST: &str = "child_appends_until_killed";

/// Not a test on its own: the body of the process `a_killed_writer_leaves_a_verifiable_database`
/// starts and kills. Without the env var it does nothing.
#[test]
fn child_appends_until_killed() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let store = AuditStore::open(PathBuf::from(path)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut tasks = Vec::new();
        // Several appenders, so the kill lands in the middle of multi-event commits.
        for t in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let seq = store
                        .append(command(&format!("k{t}"), "select 1", AuditVerdict::Allow))
                        .await
                        .unwrap();
                    // Printed only once durable: the parent counts on every seq up to here.
                    println!("durable {seq}");
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}

#[test]
fn a_killed_writer_leaves_a_verifiable_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    // Three crashes in a row on the same file: each restart recovers and continues the chain.
    let mut on_disk = 0;
    for round in 1..=3 {
        let durable = run_child_until(&path, on_disk + 300);
        let report = verify_file(&path);
        assert!(report.is_ok(), "round {round}: {:?}", report.problem);
        assert!(
            report.events >= durable,
            "round {round}: {} events survived, but {durable} were reported durable",
            report.events
        );
        eprintln!(
            "round {round}: killed after {durable} reported durable; {} on disk",
            report.events
        );
        on_disk = report.events;
    }
    let store = AuditStore::open(&path).unwrap();
    assert_eq!(
        store.append_blocking(note("after the crashes")).unwrap(),
        on_disk + 1
    );
    assert!(store.verify().unwrap().is_ok());
    store.close().unwrap();
}

/// Start the appending child, SIGKILL it once it reports `seq >= kill_at` durable, and return
/// the highest seq it reported.
fn run_child_until(path: &Path, kill_at: u64) -> u64 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--nocapture", "--include-ignored"])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let parse = |line: &str| {
        line.strip_prefix("durable ")
            .and_then(|n| n.parse::<u64>().ok())
    };
    let mut durable = 0u64;
    for line in lines.by_ref() {
        if let Some(seq) = parse(&line.unwrap()) {
            durable = durable.max(seq);
            if durable >= kill_at {
                break;
            }
        }
    }
    assert!(
        durable >= kill_at,
        "the child stopped before event {kill_at}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // Lines the child printed before it died still count: each was durable when printed.
    for line in lines {
        if let Some(seq) = parse(&line.unwrap()) {
            durable = durable.max(seq);
        }
    }
    durable
}

/// Throughput figures for group commit; run with
/// `cargo test --release -p warden-gateway --test audit -- --ignored --nocapture append_rate`.
#[test]
#[ignore = "a measurement, not a check"]
fn append_rate() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // The floors: one 300-byte write and fdatasync on the same file system, appending (the
    // file grows, so the sync carries its size too) and into space written beforehand (what
    // the journal does).
    for preallocated in [false, true] {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("probe")).unwrap();
        if preallocated {
            file.write_all_at(&vec![0; 1 << 20], 0).unwrap();
            file.sync_all().unwrap();
        }
        let started = Instant::now();
        for i in 0..1000u64 {
            file.write_all_at(&[b'x'; 300], i * 300).unwrap();
            file.sync_data().unwrap();
        }
        let each = started.elapsed() / 1000;
        println!(
            "   raw write+fdatasync ({}): {:.0} µs each = {:.0} per second",
            if preallocated {
                "preallocated"
            } else {
                "appending"
            },
            each.as_secs_f64() * 1e6,
            1.0 / each.as_secs_f64()
        );
    }
    for (mode, journal_size) in [
        ("redb commits", 0),
        ("journal", StoreOptions::default().journal_size),
    ] {
        for appenders in [1u64, 8, 32, 128] {
            let dir = tempfile::tempdir().unwrap();
            let options = StoreOptions {
                journal_size,
                ..StoreOptions::default()
            };
            let store = AuditStore::open_with(db_path(&dir), &options).unwrap();
            let per_task = (2_000 / appenders).max(20);
            let total = per_task * appenders;
            let started = Instant::now();
            runtime.block_on(async {
                let mut tasks = Vec::new();
                for t in 0..appenders {
                    let store = store.clone();
                    tasks.push(tokio::spawn(async move {
                        for i in 0..per_task {
                            let text = format!("select * from t where id = {i}");
                            store
                                .append(command(&format!("s{t}"), &text, AuditVerdict::Allow))
                                .await
                                .unwrap();
                        }
                    }));
                }
                for task in tasks {
                    task.await.unwrap();
                }
            });
            let elapsed = started.elapsed();
            let stats = store.stats();
            println!(
                "{mode:>12}, {appenders:>3} appenders: {total} events in {:.2?} = {:.0} appends/s, {:.0} µs each alone, {} commits ({:.1} events/commit)",
                elapsed,
                total as f64 / elapsed.as_secs_f64(),
                elapsed.as_secs_f64() * 1e6 / (total / appenders) as f64,
                stats.commits,
                stats.events as f64 / stats.commits as f64,
            );
            store.close().unwrap();
        }
    }
}

/// The audit store is the gateway's alone (issue 13.9): created 0600 whatever the umask, and
/// an existing store with a wider mode is narrowed when the gateway opens it.
#[test]
fn the_audit_store_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = AuditStore::open(&path).unwrap();
    store.append_blocking(note("one")).unwrap();
    store.close().unwrap();
    assert_eq!(mode(&path), 0o600);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = AuditStore::open(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(store.append_blocking(note("two")).unwrap(), 2);
    store.close().unwrap();
}

/// `warden ARGS` on the built binary: (exit code, stdout).
fn warden(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

fn start(store: &AuditStore, id: &str, target: &str, actors: &[&str]) {
    let principal = AuditPrincipal {
        subject: actors.last().unwrap().to_string(),
        issuer: "idp".into(),
        groups: vec![],
        actors: actors.iter().map(|a| a.to_string()).collect(),
    };
    store
        .append_blocking(NewEvent::session(
            id,
            EventKind::SessionStart(SessionStart {
                protocol: Protocol::Postgres,
                target: target.into(),
                client_addr: "127.0.0.1:2".into(),
                principal,
            }),
        ))
        .unwrap();
}

fn seqs(jsonl: &str) -> Vec<u64> {
    jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// A known trail: two sessions, the first three agents deep, commands of each verdict, a
/// pause between the two halves for the time filter.
fn known_trail(dir: &Path) -> (PathBuf, Timestamp, Vec<u64>) {
    let path = dir.join("audit.redb");
    let store = AuditStore::open(&path).unwrap();
    start(&store, "s1", "payments", &["alice", "planner", "sql-agent"]);
    let deny1 = store
        .append_blocking(command("s1", "DROP TABLE cards", AuditVerdict::Deny))
        .unwrap();
    store
        .append_blocking(command("s1", "SELECT 1", AuditVerdict::Allow))
        .unwrap();
    start(&store, "s2", "orders", &["bob", "reporter"]);
    store
        .append_blocking(command(
            "s2",
            "=HYPERLINK(\"http://x\")",
            AuditVerdict::Allow,
        ))
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let cut = Timestamp::now();
    std::thread::sleep(Duration::from_millis(30));
    let deny2 = store
        .append_blocking(command("s1", "DELETE FROM cards", AuditVerdict::Deny))
        .unwrap();
    store
        .append_blocking(command("s2", "SELECT 'a,\"b\"\nc'", AuditVerdict::Mask))
        .unwrap();
    store.close().unwrap();
    (path, cut, vec![deny1, deny2])
}

#[test]
fn export_filters_select_by_time_actor_depth_and_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let (path, cut, denies) = known_trail(dir.path());
    let db = path.to_str().unwrap();
    let (code, all) = warden(&["audit", "export", "--db", db]);
    assert_eq!(code, 0);
    assert_eq!(seqs(&all), (1..=7).collect::<Vec<_>>());

    // Depth 2 of s1's chain (alice > planner > sql-agent): s1's events only.
    let (_, planner) = warden(&["audit", "export", "--db", db, "--actor", "planner"]);
    assert_eq!(seqs(&planner), [1, 2, 3, 6]);
    let (_, denied) = warden(&["audit", "export", "--db", db, "--verdict", "deny"]);
    assert_eq!(seqs(&denied), denies);
    let from = cut.to_string();
    let (_, late) = warden(&["audit", "export", "--db", db, "--from", &from]);
    assert_eq!(seqs(&late), [6, 7]);
    let (_, early) = warden(&["audit", "export", "--db", db, "--to", &from]);
    assert_eq!(seqs(&early), [1, 2, 3, 4, 5]);
    let (_, both) = warden(&[
        "audit", "export", "--db", db, "--target", "orders", "--type", "command",
    ]);
    assert_eq!(seqs(&both), [5, 7]);

    // A filtered export still checks line by line; as a whole chain it has gaps.
    let file = dir.path().join("planner.jsonl");
    std::fs::write(&file, &planner).unwrap();
    let f = file.to_str().unwrap();
    assert_eq!(
        warden(&["audit", "verify-export", "--file", f, "--filtered"]).0,
        0
    );
    assert_eq!(warden(&["audit", "verify-export", "--file", f]).0, 1);
}

#[test]
fn csv_export_reads_in_python_with_the_same_rows_as_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) = known_trail(dir.path());
    let db = path.to_str().unwrap();
    let (_, jsonl) = warden(&["audit", "export", "--db", db]);
    let (code, csv) = warden(&["audit", "export", "--db", db, "--format", "csv"]);
    assert_eq!(code, 0);
    std::fs::write(dir.path().join("a.jsonl"), &jsonl).unwrap();
    std::fs::write(dir.path().join("a.csv"), &csv).unwrap();
    let script = r#"
import csv, json, sys
d = sys.argv[1]
lines = [json.loads(l) for l in open(d + "/a.jsonl")]
with open(d + "/a.csv", newline="") as f:
    rows = list(csv.DictReader(f))
assert len(rows) == len(lines), (len(rows), len(lines))
for row, line in zip(rows, lines):
    assert int(row["seq"]) == line["seq"]
    assert row["hash"] == line["hash"] and row["prev"] == line["prev"]
    assert json.loads(row["event"]) == line["event"], (row["event"], line["event"])
    ev = line["event"]
    if ev["type"] == "command":
        # The formula guard adds a quote to what a spreadsheet would run; nothing else changes.
        cmd = row["command"]
        if ev["command"][0] in "=+-@":
            assert cmd == "'" + ev["command"], cmd
        else:
            assert cmd == ev["command"], cmd
        assert row["verdict"] == ev["verdict"]
print("rows", len(rows), "chains", sorted({r["chain"] for r in rows}))
"#;
    let out = Command::new("python3")
        .args(["-c", script, dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("rows 7"), "{stdout}");
    assert!(stdout.contains("alice > planner > sql-agent"), "{stdout}");
    // --raw leaves the formula as the agent wrote it.
    let (_, raw) = warden(&["audit", "export", "--db", db, "--format", "csv", "--raw"]);
    assert!(
        raw.contains("\n5,") && raw.contains(",\"=HYPERLINK("),
        "{raw}"
    );
}

/// A whole session: start, a command, a recording chunk, end.
fn whole_session(store: &AuditStore, rt: &tokio::runtime::Runtime, id: &str, end: bool) {
    start(store, id, "payments", &["alice", id]);
    store
        .append_blocking(command(id, "SELECT 1", AuditVerdict::Allow))
        .unwrap();
    rt.block_on(store.append_recording(
        id,
        format!("{{\"t\":0,\"type\":\"output\",\"data\":\"{id}\"}}\n").into_bytes(),
    ))
    .unwrap();
    if end {
        end_session(store, id);
    }
}

fn end_session(store: &AuditStore, id: &str) {
    store
        .append_blocking(NewEvent::session(
            id,
            EventKind::SessionEnd(SessionEnd {
                reason: "client closed".into(),
                counts: SessionCounts::default(),
            }),
        ))
        .unwrap();
}

#[test]
fn pruning_keeps_what_remains_verifiable_and_is_itself_in_the_chain() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, file, public) = store_with_checkpoints(dir.path());
    whole_session(&store, &rt, "s-old", true);
    // Started before the cut and still open after it: the cut must not split it.
    whole_session(&store, &rt, "s-across", false);
    store.checkpoint_blocking().unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let cut = Timestamp::now();
    std::thread::sleep(Duration::from_millis(30));
    end_session(&store, "s-across");
    whole_session(&store, &rt, "s-new", true);
    let old_start = store.session("s-old").unwrap().unwrap().start_seq;
    let across_start = store.session("s-across").unwrap().unwrap().start_seq;
    assert_eq!(old_start, 1);

    let pruned = store.prune_blocking(cut).unwrap().unwrap();
    // Everything before s-across's start went, nothing after.
    assert_eq!(pruned.through, across_start - 1);
    assert_eq!((pruned.sessions, pruned.chunks), (1, 1));
    assert!(pruned.signed.is_some());
    assert!(store.session("s-old").unwrap().is_none());
    assert!(store.recording("s-old").unwrap().is_empty());
    assert!(store.session("s-across").unwrap().is_some());
    assert_eq!(store.recording("s-new").unwrap().len(), 1);
    // Nothing more is due: a second run removes nothing.
    assert!(store.prune_blocking(cut).unwrap().is_none());
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.pruned_through, pruned.through);
    let last = store.events(..).unwrap().pop().unwrap();
    assert!(matches!(last.event.kind, EventKind::Pruned(_)));
    assert_eq!(store.events(..).unwrap()[0].event.seq, pruned.through + 1);
    store.checkpoint_blocking().unwrap().unwrap();
    store.close().unwrap();

    let path = dir.path().join("audit.redb");
    assert_eq!(cli_verify(&path), ExitCode::SUCCESS);
    // The checkpoints (the one before the cut included) still hold against what remains.
    assert_eq!(
        cli_verify_checkpoints(&path, &file, &public),
        ExitCode::SUCCESS
    );
    // Tampering after a prune is still found.
    tamper_table(&path, SESSIONS, |t| {
        let bytes = t.get("s-new").unwrap().unwrap().value().to_vec();
        let forged = edited_json(&bytes, "\"alice\"", "\"mallory\"");
        t.insert("s-new", forged.as_slice()).unwrap();
    });
    assert_eq!(cli_verify(&path), ExitCode::FAILURE);
}

/// A statement long enough to be stored once (`texts.rs`: 512 bytes and up).
fn long_statement(tag: &str) -> String {
    format!(
        "SELECT {} FROM orders WHERE tag = '{tag}'",
        (0..400)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Bytes a store grows by for 2000 appends of `text`, checking what reads back.
fn growth_for_repeats(text: &str) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = AuditStore::open(&path).unwrap();
    store.append_blocking(note("warm-up")).unwrap();
    store.close().unwrap();
    let empty = std::fs::metadata(&path).unwrap().len();
    let store = AuditStore::open(&path).unwrap();
    for _ in 0..2000 {
        store
            .append_blocking(command("s1", text, AuditVerdict::Allow))
            .unwrap();
    }
    let events = store.events(2..).unwrap();
    assert_eq!(events.len(), 2000);
    assert!(events.iter().all(|e| matches!(
        &e.event.kind,
        EventKind::Command(c) if c.command == text
    )));
    assert!(store.verify().unwrap().is_ok());
    store.close().unwrap();
    // Exports carry the whole text.
    let (code, jsonl) = warden(&["audit", "export", "--db", path.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(jsonl.matches(text).count(), 2000);
    std::fs::metadata(&path).unwrap().len() - empty
}

#[test]
fn a_repeated_long_statement_is_stored_once_and_read_back_whole() {
    let short = long_statement("a");
    let long = format!("{short} {}", "-- padding ".repeat(700));
    assert!(short.len() > 2000 && long.len() > 9000);
    let (small, big) = (growth_for_repeats(&short), growth_for_repeats(&long));
    let traffic = 2000 * long.len() as u64;
    eprintln!(
        "2000 × {} bytes: {small} bytes stored; 2000 × {} bytes: {big} bytes stored ({:.3}×)",
        short.len(),
        long.len(),
        big as f64 / traffic as f64
    );
    // What each repeat costs does not depend on the text's length: it is stored once.
    assert!(big < small + small / 2, "{big} vs {small}");
    assert!(big * 10 < traffic, "{big} bytes for {traffic}");
}

#[test]
fn a_changed_stored_text_is_found_at_the_first_event_using_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = AuditStore::open(&path).unwrap();
    store.append_blocking(note("first")).unwrap();
    let text = long_statement("drop-me");
    for _ in 0..3 {
        store
            .append_blocking(command("s1", &text, AuditVerdict::Deny))
            .unwrap();
    }
    store.close().unwrap();
    assert_eq!(cli_verify(&path), ExitCode::SUCCESS);
    // The stored text edited (`drop-me` → `select1`, same length), recompressed.
    tamper_table(&path, warden::audit::schema::TEXTS, |t| {
        let (digest, stored) = {
            let (k, v) = t.iter().unwrap().next().unwrap().unwrap();
            (k.value(), v.value().to_vec())
        };
        let plain = zstd::bulk::decompress(&stored, 1 << 20).unwrap();
        let forged = edited_json(&plain, "drop-me", "select1");
        let forged = zstd::bulk::compress(&forged, 3).unwrap();
        t.insert(digest, forged.as_slice()).unwrap();
    });
    let report = verify_file(&path);
    let problem = report.problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (2, ProblemKind::Changed),
        "{problem:?}"
    );
    // Removed altogether: the same.
    tamper_table(&path, warden::audit::schema::TEXTS, |t| {
        let digest = t.iter().unwrap().next().unwrap().unwrap().0.value();
        t.remove(digest).unwrap();
    });
    let problem = verify_file(&path).problem.unwrap();
    assert_eq!(
        (problem.seq, problem.kind),
        (2, ProblemKind::Changed),
        "{problem:?}"
    );
}

#[test]
fn retention_removes_a_text_with_the_last_event_that_used_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = AuditStore::open(&path).unwrap();
    let (shared, old_only) = (long_statement("shared"), long_statement("old-only"));
    start(&store, "s-old", "payments", &["alice"]);
    for text in [&shared, &old_only] {
        store
            .append_blocking(command("s-old", text, AuditVerdict::Allow))
            .unwrap();
    }
    end_session(&store, "s-old");
    std::thread::sleep(Duration::from_millis(30));
    let cut = Timestamp::now();
    std::thread::sleep(Duration::from_millis(30));
    whole_session(&store, &rt, "s-new", false);
    store
        .append_blocking(command("s-new", &shared, AuditVerdict::Allow))
        .unwrap();
    end_session(&store, "s-new");
    store.prune_blocking(cut).unwrap().unwrap();
    assert!(store.verify().unwrap().is_ok());
    let kept = store.events(..).unwrap();
    assert!(kept.iter().any(|e| matches!(
        &e.event.kind,
        EventKind::Command(c) if c.command == shared
    )));
    store.close().unwrap();
    let db = Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let texts = txn.open_table(warden::audit::schema::TEXTS).unwrap();
    let last = txn.open_table(warden::audit::schema::TEXT_LAST).unwrap();
    // Only the text a remaining event uses is left.
    assert_eq!(texts.len().unwrap(), 1);
    assert_eq!(last.len().unwrap(), 1);
}

#[test]
fn a_cut_set_by_hand_to_hide_old_events_is_found() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, file, public) = store_with_checkpoints(dir.path());
    whole_session(&store, &rt, "s-1", true);
    whole_session(&store, &rt, "s-2", true);
    store.checkpoint_blocking().unwrap().unwrap();
    let s2 = store.session("s-2").unwrap().unwrap().start_seq;
    store.close().unwrap();
    let path = dir.path().join("audit.redb");
    // Delete s-1 and everything before s-2 as retention would, but by hand: the base moved,
    // no pruned event, no signed cut.
    let base_hash = {
        let store = AuditStore::open(&path).unwrap();
        let h = store.hash_at(s2 - 1).unwrap().unwrap();
        store.close().unwrap();
        h
    };
    tamper(&path, |events| {
        for seq in 1..s2 {
            events.remove(seq).unwrap();
        }
    });
    tamper_table(&path, SESSIONS, |t| {
        t.remove("s-1").unwrap();
    });
    tamper_table(&path, RECORDINGS, |t| {
        t.remove(("s-1", 0)).unwrap();
    });
    tamper_table(&path, META, |t| {
        t.insert(warden::audit::schema::BASE, (s2 - 1, base_hash))
            .unwrap();
    });
    let problem = verify_file(&path).problem.unwrap();
    assert!(problem.message.contains("no pruned event"), "{problem}");
    assert_eq!(cli_verify(&path), ExitCode::FAILURE);
    assert_eq!(
        cli_verify_checkpoints(&path, &file, &public),
        ExitCode::FAILURE
    );
}

/// The file's bytes, for "did reading it change it?".
fn digest(path: &Path) -> String {
    warden::audit::sha256_hex(&std::fs::read(path).unwrap())
}

fn journal_of(db: &Path) -> PathBuf {
    PathBuf::from(format!("{}.journal", db.display()))
}

/// What a crash leaves, or a copy taken while the store is open: the database as of its last
/// durable commit (redb writes its header only then) and the journal holding what was
/// acknowledged since.
fn crash_copy(path: &Path, to: &Path) {
    std::fs::copy(path, to).unwrap();
    std::fs::copy(journal_of(path), journal_of(to)).unwrap();
}

#[test]
fn acknowledged_events_survive_a_crash_through_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = AuditStore::open(&path).unwrap();
    let mut acknowledged = 0;
    for i in 0..50 {
        let text = format!("select {i}");
        acknowledged = store
            .append_blocking(command("s1", &text, AuditVerdict::Allow))
            .unwrap();
    }
    let chunk = br#"{"t":0,"type":"rows"}"#.repeat(100);
    assert_eq!(
        rt.block_on(store.append_recording("s1", chunk.clone()))
            .unwrap(),
        0
    );
    acknowledged += 1;
    assert!(store.stats().journal_syncs >= 51, "{:?}", store.stats());
    let crashed = dir.path().join("crashed.redb");
    crash_copy(&path, &crashed);
    store.close().unwrap();

    // The database file alone is behind what was acknowledged: the journal made it durable,
    // and without it the file is refused rather than read as complete.
    let bare = dir.path().join("bare.redb");
    std::fs::copy(&crashed, &bare).unwrap();
    let err = AuditStore::open_evidence(&bare).unwrap_err().to_string();
    assert!(err.contains("is missing"), "{err}");
    let (code, out) = warden(&["audit", "verify", "--db", bare.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}");
    // An operator who accepts the loss reads what there is, and is told.
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["audit", "verify", "--db", bare.to_str().unwrap()])
        .env("WARDEN_ACCEPT_JOURNAL_LOSS", "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        !stdout.contains(&format!("{acknowledged} events")),
        "{stdout}"
    );
    assert!(stderr.contains("is missing"), "{stderr}");

    // Offline reads of what the crash left see every acknowledged event, and change nothing.
    let digests = || (digest(&crashed), digest(&journal_of(&crashed)));
    let before = digests();
    let (evidence, recovered) = AuditStore::open_evidence(&crashed).unwrap();
    assert!(recovered);
    assert_eq!(evidence.head().unwrap().0, acknowledged);
    assert!(evidence.verify().unwrap().is_ok());
    assert_eq!(evidence.recording("s1").unwrap(), vec![chunk.clone()]);
    drop(evidence);
    let (code, out) = warden(&["audit", "verify", "--db", crashed.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("{acknowledged} events")), "{out}");
    assert_eq!(digests(), before);

    // The gateway opening them puts the journal's events back and continues the chain.
    let store = AuditStore::open(&crashed).unwrap();
    assert_eq!(store.head().unwrap().0, acknowledged);
    assert!(store.verify().unwrap().is_ok());
    assert_eq!(store.recording("s1").unwrap(), vec![chunk]);
    assert_eq!(
        store.append_blocking(note("after the crash")).unwrap(),
        acknowledged + 1
    );
    store.close().unwrap();
    // Closed cleanly, the database holds everything on its own.
    std::fs::remove_file(journal_of(&crashed)).unwrap();
    let (alone, recovered) = AuditStore::open_evidence(&crashed).unwrap();
    assert!(!recovered);
    assert_eq!(alone.head().unwrap().0, acknowledged + 1);
}

const OPEN_ENV: &str = "WARDEN_TEST_OPEN_STORE";

/// Not a test on its own: opens the store named by `OPEN_ENV` as the gateway would, in a
/// process of its own (so its environment is its own), and closes it.
#[test]
fn child_opens_a_store() {
    let Some(path) = std::env::var_os(OPEN_ENV) else {
        return;
    };
    AuditStore::open(PathBuf::from(path))
        .unwrap()
        .close()
        .unwrap();
}

#[test]
fn a_gateway_accepting_a_lost_journal_records_the_loss_in_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = AuditStore::open(&path).unwrap();
    for i in 0..5 {
        store.append_blocking(note(format!("n{i}"))).unwrap();
    }
    let crashed = dir.path().join("crashed.redb");
    std::fs::copy(&path, &crashed).unwrap();
    store.close().unwrap();
    let open = |accept: bool| {
        let mut child = Command::new(std::env::current_exe().unwrap());
        child
            .args(["--exact", "child_opens_a_store", "--nocapture"])
            .env(OPEN_ENV, &crashed)
            .env_remove("WARDEN_ACCEPT_JOURNAL_LOSS");
        if accept {
            child.env("WARDEN_ACCEPT_JOURNAL_LOSS", "1");
        }
        child.output().unwrap()
    };
    let refused = open(false);
    assert!(!refused.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(said.contains("is missing"), "{said}");
    assert!(open(true).status.success());
    let (store, _) = AuditStore::open_evidence(&crashed).unwrap();
    assert!(store.verify().unwrap().is_ok());
    let notes: Vec<_> = store
        .events(..)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event.kind {
            EventKind::Note(n) if n.topic == "audit-journal-lost" => Some(n.message),
            _ => None,
        })
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("is missing"), "{}", notes[0]);
}

/// A crash while redb writes a new database's first pages (the attack: 3 of 24 kills in the
/// first start left a file every later start refused) leaves only a `.creating` file, which the
/// next start replaces.
#[test]
fn a_database_is_created_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let creating = PathBuf::from(format!("{}.creating", path.display()));
    std::fs::write(&creating, vec![0x5a; 73_728]).unwrap();
    let store = AuditStore::open(&path).unwrap();
    assert!(!creating.exists());
    store.append_blocking(note("first")).unwrap();
    store.close().unwrap();
    let store = AuditStore::open(&path).unwrap();
    assert_eq!(store.head().unwrap().0, 1);
    store.close().unwrap();
}

#[test]
fn a_journal_the_database_did_not_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = AuditStore::open(&path).unwrap();
    for i in 0..5 {
        store.append_blocking(note(format!("n{i}"))).unwrap();
    }
    let crashed = dir.path().join("crashed.redb");
    crash_copy(&path, &crashed);
    // A copy of this database that went on on its own (a fork): its journal, beside the
    // original's database, continues the same chain but is not the one the original wrote.
    let fork = dir.path().join("fork.redb");
    crash_copy(&crashed, &fork);
    let forked = AuditStore::open(&fork).unwrap();
    for i in 0..3 {
        forked.append_blocking(note(format!("forked {i}"))).unwrap();
    }
    let fork_crashed = dir.path().join("fork-crashed.redb");
    crash_copy(&fork, &fork_crashed);
    forked.close().unwrap();
    store.close().unwrap();
    let original_journal = std::fs::read(journal_of(&crashed)).unwrap();
    std::fs::copy(journal_of(&fork_crashed), journal_of(&crashed)).unwrap();
    let err = AuditStore::open(&crashed).unwrap_err().to_string();
    assert!(
        err.contains("not the journal this database was writing"),
        "{err}"
    );
    let err = AuditStore::open_evidence(&crashed).unwrap_err().to_string();
    assert!(
        err.contains("not the journal this database was writing"),
        "{err}"
    );
    // Missing, emptied or zeroed: refused as well, while the database needs it.
    for replacement in [None, Some(Vec::new()), Some(vec![0u8; 1 << 16])] {
        match replacement {
            None => std::fs::remove_file(journal_of(&crashed)).unwrap(),
            Some(bytes) => std::fs::write(journal_of(&crashed), bytes).unwrap(),
        }
        let err = AuditStore::open_evidence(&crashed).unwrap_err().to_string();
        assert!(err.contains("is missing, empty or unreadable"), "{err}");
    }
    // A device in its place: refused at once, not read forever.
    std::fs::remove_file(journal_of(&crashed)).unwrap();
    std::os::unix::fs::symlink("/dev/zero", journal_of(&crashed)).unwrap();
    let started = Instant::now();
    let (code, out) = warden(&["audit", "verify", "--db", crashed.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(out.contains("not a regular file") || started.elapsed() < Duration::from_secs(20));
    // Its own journal back: every event.
    std::fs::remove_file(journal_of(&crashed)).unwrap();
    std::fs::write(journal_of(&crashed), original_journal).unwrap();
    let (store, _) = AuditStore::open_evidence(&crashed).unwrap();
    assert_eq!(store.head().unwrap().0, 5);
    drop(store);

    // A database stopped cleanly needs no journal, and refuses one holding events it never had.
    let (_other_dir, other) = closed_db_with(3);
    std::fs::copy(journal_of(&fork_crashed), journal_of(&other)).unwrap();
    let err = AuditStore::open(&other).unwrap_err().to_string();
    assert!(err.contains("never had"), "{err}");
    std::fs::remove_file(journal_of(&other)).unwrap();
    let (store, recovered) = AuditStore::open_evidence(&other).unwrap();
    assert!(!recovered);
    assert_eq!(store.head().unwrap().0, 3);
}

#[test]
fn an_older_copy_of_the_journal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let options = StoreOptions {
        journal_size: 16 << 10,
        ..StoreOptions::default()
    };
    let store = AuditStore::open_with(&path, &options).unwrap();
    store.append_blocking(note("first")).unwrap();
    let old = std::fs::read(journal_of(&path)).unwrap();
    // Past a durable commit or two, then events only the current journal holds.
    let mut n = 0;
    while store.stats().flushes < 2 {
        n += 1;
        store
            .append_blocking(note(format!("n{n} {}", "x".repeat(200))))
            .unwrap();
    }
    for i in 0..3 {
        store.append_blocking(note(format!("latest {i}"))).unwrap();
    }
    let crashed = dir.path().join("crashed.redb");
    crash_copy(&path, &crashed);
    let head = store.head().unwrap().0;
    store.close().unwrap();
    let current = std::fs::read(journal_of(&crashed)).unwrap();
    std::fs::write(journal_of(&crashed), &old).unwrap();
    let err = AuditStore::open_evidence(&crashed).unwrap_err().to_string();
    assert!(
        err.contains("not the journal this database was writing"),
        "{err}"
    );
    let (code, _) = warden(&["audit", "verify", "--db", crashed.to_str().unwrap()]);
    assert_ne!(code, 0);
    std::fs::write(journal_of(&crashed), &current).unwrap();
    let (store, _) = AuditStore::open_evidence(&crashed).unwrap();
    assert_eq!(store.head().unwrap().0, head);
}

#[test]
fn a_small_journal_starts_over_often_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let options = StoreOptions {
        journal_size: 16 << 10,
        ..StoreOptions::default()
    };
    let store = AuditStore::open_with(&path, &options).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..100 {
                    let text = format!("select {t}, {i}");
                    store
                        .append(command(&format!("s{t}"), &text, AuditVerdict::Allow))
                        .await
                        .unwrap();
                }
                // A chunk bigger than the whole journal is made durable by redb instead.
                let big: Vec<u8> = (0..200_000u32).flat_map(|n| n.to_le_bytes()).collect();
                store.append_recording(&format!("s{t}"), big).await.unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    let stats = store.stats();
    assert!(stats.flushes >= 3, "{stats:?}");
    assert!(stats.journal_syncs > 0, "{stats:?}");
    let crashed = dir.path().join("crashed.redb");
    crash_copy(&path, &crashed);
    store.close().unwrap();
    let store = AuditStore::open(&crashed).unwrap();
    assert_eq!(store.head().unwrap().0, 808);
    assert!(store.verify().unwrap().is_ok());
    for t in 0..8 {
        assert_eq!(store.recording(&format!("s{t}")).unwrap()[0].len(), 800_000);
    }
}

#[test]
fn reading_evidence_never_changes_the_file() {
    let (dir, path, _) = closed_db_with_a_session();
    let before = digest(&path);
    let db = path.to_str().unwrap();
    for args in [
        vec!["audit", "verify", "--db", db],
        vec!["sessions", "--db", db],
        vec!["audit", "export", "--db", db, "--format", "csv"],
        vec!["audit", "report", "--db", db],
        vec!["replay", "s1", "--db", db, "--raw"],
    ] {
        let (code, _) = warden(&args);
        assert_eq!(code, 0, "{args:?}");
        assert_eq!(digest(&path), before, "{args:?} changed the evidence file");
    }
    // A copy taken while a gateway was writing needs recovery: it is read from a private,
    // recovered copy and the evidence file itself stays as it was.
    let live = dir.path().join("live.redb");
    let store = AuditStore::open(&live).unwrap();
    for i in 0..20 {
        store.append_blocking(note(format!("n{i}"))).unwrap();
    }
    let copy = dir.path().join("copied-while-open.redb");
    crash_copy(&live, &copy);
    store.close().unwrap();
    let copied = digest(&copy);
    let scratch = dir.path().join("tmp");
    std::fs::create_dir(&scratch).unwrap();
    let verify = |db: &Path| {
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["audit", "verify", "--db", db.to_str().unwrap()])
            .env("TMPDIR", &scratch)
            .output()
            .unwrap()
    };
    let out = verify(&copy);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("audit chain OK: 20 events"), "{stdout}");
    assert!(stderr.contains("needs recovery"), "{stderr}");
    assert_eq!(digest(&copy), copied);
    // The private copy was never left in the temp dir.
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    // A file padded past the temp dir's free space is refused before anything is copied.
    let padded = dir.path().join("padded.redb");
    std::fs::copy(&copy, &padded).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&padded)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let out = verify(&padded);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("point TMPDIR at a larger disk"), "{stderr}");
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
}

#[test]
fn a_checkpoint_of_the_cut_event_does_not_authorise_a_cut_and_a_cut_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (store, file, public) = store_with_checkpoints(dir.path());
    for i in 0..4 {
        store.append_blocking(note(format!("n{i}"))).unwrap();
    }
    let signed = store.checkpoint_blocking().unwrap().unwrap();
    store.append_blocking(note("later")).unwrap();
    let last = store.checkpoint_blocking().unwrap().unwrap();
    let hash = store.hash_at(signed.seq).unwrap().unwrap();
    let in_chain = store.checkpoint_events().unwrap();
    store.close().unwrap();
    let public_key = checkpoint::load_public_key(&public).unwrap();
    let lines = checkpoint::read_checkpoints(&file).unwrap();
    // Events 1..=4 removed by someone without the key, the base set at the checkpointed
    // event: an ordinary checkpoint of event 4 is not a signed cut.
    let report = checkpoint::check_checkpoints(
        &lines,
        &in_chain,
        &public_key,
        (signed.seq, hash),
        &mut |_| Ok(Some(hash)),
    )
    .unwrap();
    let problem = report.problem.unwrap();
    assert!(
        problem.contains("a cut no checkpoint in the file signs"),
        "{problem}"
    );

    // The file loses its last line: the chain still holds that checkpoint.
    let path = dir.path().join("audit.redb");
    assert_eq!(
        cli_verify_checkpoints(&path, &file, &public),
        ExitCode::SUCCESS
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains(&last.signature))
        .collect();
    assert_eq!(kept.len(), 1);
    std::fs::write(&file, kept.join("\n") + "\n").unwrap();
    assert_eq!(
        cli_verify_checkpoints(&path, &file, &public),
        ExitCode::FAILURE
    );
}

#[test]
fn a_rehashed_export_chains_alone_but_not_to_the_signed_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (store, file, public) = store_with_checkpoints(dir.path());
    store.append_blocking(note("start")).unwrap();
    store
        .append_blocking(command("s1", "drop table cards", AuditVerdict::Deny))
        .unwrap();
    store.append_blocking(note("after")).unwrap();
    store.checkpoint_blocking().unwrap().unwrap();
    store.close().unwrap();
    let db = dir.path().join("audit.redb");
    let (_, export) = warden(&["audit", "export", "--db", db.to_str().unwrap()]);
    // Rewrite the deny as a mask and rehash every line from there, as sha256 alone allows.
    let mut prev = [0u8; 32];
    let mut forged = String::new();
    for line in export.lines() {
        let at = line.find(",\"event\":").unwrap();
        let event = line[at + 9..line.len() - 1].replace("\"deny\"", "\"mask\"");
        let seq = serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"]
            .as_u64()
            .unwrap();
        let hash = warden::audit::chain_hash(&prev, event.as_bytes());
        forged += &format!(
            "{{\"seq\":{seq},\"prev\":\"{}\",\"hash\":\"{}\",\"event\":{event}}}\n",
            hex::encode(prev),
            hex::encode(hash)
        );
        prev = hash;
    }
    assert_ne!(forged, export);
    let path = dir.path().join("forged.jsonl");
    std::fs::write(&path, &forged).unwrap();
    let p = path.to_str().unwrap();
    assert_eq!(warden(&["audit", "verify-export", "--file", p]).0, 0);
    let (code, out) = warden(&[
        "audit",
        "verify-export",
        "--file",
        p,
        "--checkpoints",
        file.to_str().unwrap(),
        "--pubkey",
        public.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoints FAILED"), "{out}");
    // The genuine export passes the same check.
    std::fs::write(&path, &export).unwrap();
    let (code, out) = warden(&[
        "audit",
        "verify-export",
        "--file",
        p,
        "--checkpoints",
        file.to_str().unwrap(),
        "--pubkey",
        public.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn the_gateway_refuses_a_rolled_back_database_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    checkpoint::generate_key(&key, &dir.path().join("k.pub.pem")).unwrap();
    let config = warden::audit::AuditConfig {
        path: dir.path().join("audit.redb"),
        max_batch: 16,
        text_cap: warden::units::ByteSize(16384),
        min_free: warden::units::ByteSize(0),
        retain: None,
        retain_below_pci_minimum: false,
        checkpoints: Some(checkpoint::CheckpointConfig {
            key,
            file: dir.path().join("cp.jsonl"),
            interval: Duration::from_secs(300),
            syslog: None,
        }),
    };
    let store = AuditStore::from_config(&config).unwrap();
    store.append_blocking(note("one")).unwrap();
    store.checkpoint_blocking().unwrap().unwrap();
    store.close().unwrap();
    let old = dir.path().join("old.redb");
    std::fs::copy(&config.path, &old).unwrap();
    // Later work, signed.
    let store = AuditStore::from_config(&config).unwrap();
    store.append_blocking(note("two")).unwrap();
    store.checkpoint_blocking().unwrap().unwrap();
    store.close().unwrap();
    // Roll the database back: the gateway refuses to continue on it.
    std::fs::copy(&old, &config.path).unwrap();
    let err = AuditStore::from_config(&config).unwrap_err();
    assert!(
        err.to_string().contains("does not match its checkpoints"),
        "{err}"
    );
    // A checkpoint file that lost its lines is put back from the chain, and the gateway starts.
    let mut fresh = config.clone();
    fresh.path = dir.path().join("fresh.redb");
    fresh.checkpoints.as_mut().unwrap().file = dir.path().join("fresh-cp.jsonl");
    let store = AuditStore::from_config(&fresh).unwrap();
    store.append_blocking(note("x")).unwrap();
    store.checkpoint_blocking().unwrap().unwrap();
    store.close().unwrap();
    // One checkpoint lost from the file (the gateway stopped between its two writes): put
    // back from the chain.
    let store = AuditStore::from_config(&fresh).unwrap();
    store.append_blocking(note("y")).unwrap();
    store.checkpoint_blocking().unwrap().unwrap();
    store.close().unwrap();
    let cp = dir.path().join("fresh-cp.jsonl");
    let first = std::fs::read_to_string(&cp)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(&cp, format!("{first}\n")).unwrap();
    let store = AuditStore::from_config(&fresh).unwrap();
    store.close().unwrap();
    assert_eq!(std::fs::read_to_string(&cp).unwrap().lines().count(), 2);
    // The file gone altogether: refused (it was the proof against a rolled-back copy).
    std::fs::remove_file(&cp).unwrap();
    let err = AuditStore::from_config(&fresh).unwrap_err();
    assert!(
        err.to_string().contains("checkpoint file is missing"),
        "{err}"
    );
}
