//! Session recordings end to end against a real redb file: a recorder writes a transcript,
//! `warden replay` renders it as psql would have, `warden sessions` lists the session, the
//! raw file holds no clear card number, and a full queue drops rows but keeps the rest. SSH
//! sessions replay as an exec transcript or a terminal playback, and export as asciicast
//! files that a real `asciinema` reads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::asciinema_cat;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use warden::audit::{
    AuditPrincipal, AuditStore, EventKind, NewEvent, SessionCounts, SessionEnd, SessionRecord,
    SessionStart,
};
use warden::cli::replay::{ReplayArgs, replay_to};
use warden::cli::sessions::{SessionsArgs, list_to};
use warden::protocol::Protocol;
use warden::recording::{Recorder, RecorderOptions};

/// Card numbers that must never reach the file in clear, in every spelling the tests use.
const CLEAR: [&str; 4] = [
    "4111111111111111",
    "4111 1111 1111 1111",
    "5555555555554444",
    "5555-5555-5555-4444",
];

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("audit.redb")
}

fn principal() -> AuditPrincipal {
    AuditPrincipal {
        subject: "agent-7".into(),
        issuer: "https://idp.example".into(),
        groups: vec!["payments-readers".into()],
        actors: vec!["alice".into(), "agent-7".into()],
    }
}

async fn start_session(store: &AuditStore, id: &str, target: &str) {
    start_session_as(store, id, target, Protocol::Postgres).await;
}

async fn start_session_as(store: &AuditStore, id: &str, target: &str, protocol: Protocol) {
    let start = SessionStart {
        protocol,
        target: target.into(),
        client_addr: "127.0.0.1:50123".into(),
        principal: principal(),
    };
    store
        .append(NewEvent::session(id, EventKind::SessionStart(start)))
        .await
        .unwrap();
}

async fn end_session(store: &AuditStore, id: &str, counts: SessionCounts) {
    let end = SessionEnd {
        reason: "client closed".into(),
        counts,
    };
    store
        .append(NewEvent::session(id, EventKind::SessionEnd(end)))
        .await
        .unwrap();
}

fn replay(path: &Path, session: &str, raw: bool) -> (ExitCode, String) {
    let mut out = Vec::new();
    let args = ReplayArgs {
        session: session.into(),
        db: Some(path.into()),
        raw,
        ..ReplayArgs::default()
    };
    let code = replay_to(&args, &mut out).unwrap();
    (code, String::from_utf8(out).unwrap())
}

fn row(cells: &[Option<&str>]) -> Vec<Option<String>> {
    cells.iter().map(|c| c.map(str::to_owned)).collect()
}

fn cols(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every kind of entry, clear PANs in a statement, a cell and an error message.
fn record_transcript(rec: &Recorder) {
    rec.command(
        "SELECT id, name, pan FROM cards WHERE pan = '4111111111111111';",
        "mask",
        Some("pci-mask"),
    );
    rec.columns_typed(&[("id".into(), 23), ("name".into(), 25), ("pan".into(), 25)]);
    rec.rows(&[
        row(&[Some("1"), Some("alice"), Some("**** **** **** 1111")]),
        // A cell the policy chain let through in clear (an allow-all target).
        row(&[Some("12"), None, Some("4111 1111 1111 1111")]),
    ]);
    rec.complete("SELECT 2");

    rec.command("SELECT note, b\nFROM notes;", "allow", None);
    rec.columns(&cols(&["note", "b"]));
    rec.rows(&[row(&[Some("first\nsecond"), Some("x")])]);
    rec.rows(&[row(&[None, Some("p\nq")])]);
    rec.complete("SELECT 2");

    rec.command(
        "DROP TABLE cards;",
        "deny",
        Some("sql-guard: DROP on cards is not allowed"),
    );
    rec.error("sql-guard: DROP on cards is not allowed");

    rec.command("DO $$ BEGIN RAISE NOTICE 'hello'; END $$;", "allow", None);
    rec.notice("hello");
    rec.complete("DO");

    rec.command(
        "INSERT INTO cards VALUES (3, 'carol', '5555-5555-5555-4444');",
        "allow",
        None,
    );
    rec.error(
        "duplicate key value violates unique constraint \"cards_pan_key\": Key (pan)=(5555555555554444) already exists.",
    );

    rec.command("UPDATE cards SET name = 'bob' WHERE id = 1;", "allow", None);
    rec.complete("UPDATE 1");

    rec.command("SELECT 'a' AS \"long header\" WHERE false;", "allow", None);
    rec.columns(&cols(&["long header"]));
    rec.complete("SELECT 0");
}

/// What psql 17 prints for the same results (checked against a real server), with warden's
/// verdict comments; line by line so trailing spaces are visible.
const EXPECTED: &[&str] = &[
    "payments=> SELECT id, name, pan FROM cards WHERE pan = '************1111';",
    "-- warden: mask (pci-mask)",
    " id | name  |         pan         ",
    "----+-------+---------------------",
    "  1 | alice | **** **** **** 1111",
    " 12 |       | **** **** **** 1111",
    "(2 rows)",
    "",
    "payments=> SELECT note, b",
    "payments-> FROM notes;",
    "  note  | b ",
    "--------+---",
    " first +| x",
    " second | ",
    "        | p+",
    "        | q",
    "(2 rows)",
    "",
    "payments=> DROP TABLE cards;",
    "-- warden: deny: sql-guard: DROP on cards is not allowed",
    "ERROR:  sql-guard: DROP on cards is not allowed",
    "payments=> DO $$ BEGIN RAISE NOTICE 'hello'; END $$;",
    "NOTICE:  hello",
    "DO",
    "payments=> INSERT INTO cards VALUES (3, 'carol', '****-****-****-4444');",
    "ERROR:  duplicate key value violates unique constraint \"cards_pan_key\": Key (pan)=(************4444) already exists.",
    "payments=> UPDATE cards SET name = 'bob' WHERE id = 1;",
    "UPDATE 1",
    "payments=> SELECT 'a' AS \"long header\" WHERE false;",
    " long header ",
    "-------------",
    "(0 rows)",
    "",
];

#[tokio::test]
async fn transcript_replays_as_psql_and_the_file_holds_no_clear_pan() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = AuditStore::open(&path).unwrap();
    start_session(&store, "ses-1", "payments").await;
    let rec = Recorder::start(store.clone(), "ses-1");
    record_transcript(&rec);
    let stats = rec.finish().await;
    assert_eq!(stats.dropped_rows, 0);
    assert_eq!(stats.failed_chunks, 0);
    assert!(stats.chunks >= 1);
    end_session(&store, "ses-1", SessionCounts::default()).await;
    store.close().unwrap();

    // The whole file, as an attacker with the disk would read it; recordings are stored
    // compressed, so their plain bytes are read back too.
    let bytes = std::fs::read(&path).unwrap();
    let store = AuditStore::open(&path).unwrap();
    let plain = store.recording("ses-1").unwrap().concat();
    store.close().unwrap();
    for pan in CLEAR {
        assert!(!contains(&bytes, pan), "clear PAN {pan} in the redb file");
        assert!(!contains(&plain, pan), "clear PAN {pan} in the recording");
    }
    assert!(
        contains(&plain, "**** **** **** 1111"),
        "the recording is in the file"
    );
    assert!(
        !contains(&bytes, "**** **** **** 1111"),
        "the recording is stored compressed"
    );

    let (code, out) = replay(&path, "ses-1", false);
    assert_eq!(code, ExitCode::SUCCESS);
    let expected = EXPECTED.join("\n") + "\n";
    assert_eq!(out, expected, "replay:\n{out}");

    let (code, raw) = replay(&path, "ses-1", true);
    assert_eq!(code, ExitCode::SUCCESS);
    let lines: Vec<serde_json::Value> = raw
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "start");
    assert_eq!(lines[1]["type"], "command");
    assert_eq!(lines[1]["verdict"], "mask");
    assert_eq!(lines[2]["types"], serde_json::json!([23, 25, 25]));
    assert_eq!(lines[3]["rows"][1][1], serde_json::Value::Null);
    let times: Vec<u64> = lines.iter().map(|l| l["t"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
}

#[tokio::test]
async fn small_chunks_and_the_timer_both_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = AuditStore::open(&path).unwrap();
    start_session(&store, "ses-2", "payments").await;
    let options = RecorderOptions {
        chunk_bytes: 128,
        flush_interval: Duration::from_millis(50),
        ..RecorderOptions::default()
    };
    let rec = Recorder::start_with(store.clone(), "ses-2", options);
    rec.command("SELECT 1;", "allow", None);
    // No flush: the interval alone must get it to disk.
    let mut waited = Duration::ZERO;
    while store.recording("ses-2").unwrap().is_empty() {
        assert!(
            waited < Duration::from_secs(5),
            "nothing written by the timer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    record_transcript(&rec);
    let stats = rec.finish().await;
    let chunks = store.recording("ses-2").unwrap();
    assert_eq!(chunks.len() as u64, stats.chunks);
    assert!(chunks.len() > 5, "{} chunks", chunks.len());
    assert!(
        chunks.iter().all(|c| c.ends_with(b"\n")),
        "chunks end on lines"
    );
    store.close().unwrap();

    let (_, out) = replay(&path, "ses-2", false);
    let expected = format!("payments=> SELECT 1;\n{}\n", EXPECTED.join("\n"));
    assert_eq!(out, expected);
}

#[tokio::test]
async fn a_full_queue_drops_rows_keeps_the_rest_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = AuditStore::open(&path).unwrap();
    start_session(&store, "ses-3", "db").await;
    let options = RecorderOptions {
        queue_bytes: 400,
        ..RecorderOptions::default()
    };
    let rec = Recorder::start_with(store.clone(), "ses-3", options);
    // The test runtime has one thread and nothing here awaits, so the writer task cannot
    // drain the queue meanwhile: it fills, as behind a slow disk.
    rec.command("SELECT v FROM big;", "allow", None);
    rec.columns(&cols(&["v"]));
    for i in 0..50 {
        rec.rows(&[row(&[Some(&format!("row-{i:02}"))])]);
    }
    rec.complete("SELECT 50");
    rec.error("canceling statement due to user request");
    rec.flush().await;
    // Drained: the next result is recorded whole.
    rec.command("SELECT 1 AS one;", "allow", None);
    rec.columns_typed(&[("one".into(), 23)]);
    rec.rows(&[row(&[Some("1")])]);
    rec.complete("SELECT 1");
    let stats = rec.finish().await;
    store.close().unwrap();

    let dropped = stats.dropped_rows;
    assert!(dropped > 0 && dropped < 50, "dropped {dropped}");
    let kept = 50 - dropped;
    let mut expected = String::from("db=> SELECT v FROM big;\n   v    \n--------\n");
    for i in 0..kept {
        expected += &format!(" row-{i:02}\n");
    }
    expected += &format!(
        "(50 rows)\n-- warden: {dropped} of these rows were not recorded (recording limit or full queue)\n\n"
    );
    expected += "ERROR:  canceling statement due to user request\n";
    expected += "db=> SELECT 1 AS one;\n one \n-----\n   1\n(1 row)\n\n";
    let (_, out) = replay(&path, "ses-3", false);
    assert_eq!(out, expected);

    let (_, raw) = replay(&path, "ses-3", true);
    assert!(
        raw.contains(&format!("\"type\":\"dropped\",\"rows\":{dropped}}}")),
        "{raw}"
    );
}

#[tokio::test]
async fn sessions_lists_principal_chain_target_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = AuditStore::open(&path).unwrap();
    // Ids sort the other way round from start order: the listing must follow start order.
    start_session(&store, "ses-b", "payments").await;
    start_session(&store, "ses-a", "orders").await;
    let counts = SessionCounts {
        commands: 5,
        allowed: 2,
        denied: 1,
        masked: 1,
        approvals: 1,
    };
    end_session(&store, "ses-b", counts).await;
    store.close().unwrap();

    let mut out = Vec::new();
    let args = SessionsArgs {
        db: Some(path.clone()),
        live: Default::default(),
        json: false,
        raw: false,
    };
    list_to(&args, &mut out).unwrap();
    let table = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    let header: Vec<&str> = lines[0].split('|').map(str::trim).collect();
    assert_eq!(
        header,
        [
            "id",
            "principal",
            "chain",
            "protocol",
            "target",
            "client",
            "started",
            "ended",
            "commands",
            "allowed",
            "denied",
            "masked",
            "approvals",
            "end reason"
        ]
    );
    let ended: Vec<&str> = lines[2].split('|').map(str::trim).collect();
    assert_eq!(
        ended[..6],
        [
            "ses-b",
            "agent-7",
            "alice > agent-7",
            "postgres",
            "payments",
            "127.0.0.1:50123"
        ]
    );
    assert!(
        ended[6].ends_with('Z') && ended[7].ends_with('Z'),
        "{ended:?}"
    );
    assert_eq!(ended[8..], ["5", "2", "1", "1", "1", "client closed"]);
    let open: Vec<&str> = lines[3].split('|').map(str::trim).collect();
    assert_eq!(open[0], "ses-a");
    assert_eq!(open[7], "open");
    assert!(open[8..].iter().all(|c| c.is_empty()), "{open:?}");
    assert_eq!(lines[4], "(2 sessions)");

    let mut out = Vec::new();
    let args = SessionsArgs {
        db: Some(path),
        live: Default::default(),
        json: true,
        raw: false,
    };
    list_to(&args, &mut out).unwrap();
    let records: Vec<SessionRecord> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["ses-b", "ses-a"]);
    assert_eq!(records[0].end.as_ref().unwrap().counts, counts);
    assert!(records[1].end.is_none());
}

/// What a terminal obeys rather than shows.
const HOSTILE: [&str; 5] = [
    "\u{1b}[2J\u{1b}[H",
    "\u{1b}]0;pwned-title\u{7}",
    "\u{1b}]52;c;ZXZpbA==\u{7}",
    "\u{9b}31m",
    "over\rwritten",
];

fn assert_inert(out: &str) {
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(!out.contains('\u{9b}'), "{out:?}");
    assert!(!out.contains('\r'), "{out:?}");
    assert!(out.contains("\\x1b[2J\\x1b[H"), "{out:?}");
    assert!(out.contains("\\x1b]0;pwned-title"), "{out:?}");
}

#[tokio::test]
async fn hostile_escape_sequences_reach_the_auditor_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = AuditStore::open(&path).unwrap();
    start_session(&store, "ses-x", "payments").await;
    let rec = Recorder::start(store.clone(), "ses-x");
    let all = HOSTILE.concat();
    rec.command(&format!("SELECT '{all}' AS \"{all}\";"), "allow", None);
    rec.columns(&cols(&[all.as_str()]));
    rec.rows(&[row(&[Some(all.as_str())])]);
    rec.complete("SELECT 1");
    rec.finish().await;
    // A token subject with escapes and a newline (the issue's `ali ESC[31m ce \n X`).
    let mut principal = principal();
    principal.subject = "ali \u{1b}[31m ce \n X".into();
    store
        .append(NewEvent::session(
            "ses-y",
            EventKind::SessionStart(SessionStart {
                protocol: Protocol::Ssh,
                target: "box".into(),
                client_addr: "127.0.0.1:1".into(),
                principal,
            }),
        ))
        .await
        .unwrap();
    store.close().unwrap();

    let (code, out) = replay(&path, "ses-x", false);
    assert_eq!(code, ExitCode::SUCCESS);
    assert_inert(&out);
    // --raw prints the stored JSON lines: the same values, nothing a terminal acts on.
    let (_, raw) = replay(&path, "ses-x", true);
    assert!(
        !raw.contains('\u{1b}') && !raw.contains('\u{9b}'),
        "{raw:?}"
    );
    assert!(raw.contains("\\u001b]0;pwned-title"), "{raw}");

    let mut out = Vec::new();
    let args = SessionsArgs {
        db: Some(path.clone()),
        live: Default::default(),
        json: false,
        raw: false,
    };
    list_to(&args, &mut out).unwrap();
    let table = String::from_utf8(out).unwrap();
    assert!(table.contains("ali \\x1b[31m ce \\n X"), "{table}");
    assert!(!table.contains('\u{1b}'), "{table:?}");
    // One row per session: the newline did not make a row of its own.
    assert!(table.ends_with("(2 sessions)\n"), "{table}");
    let mut out = Vec::new();
    list_to(
        &SessionsArgs {
            db: Some(path),
            live: Default::default(),
            json: false,
            raw: true,
        },
        &mut out,
    )
    .unwrap();
    assert!(String::from_utf8(out).unwrap().contains('\u{1b}'));
}

#[tokio::test]
async fn replaying_an_unknown_session_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = AuditStore::open(&path).unwrap();
    start_session(&store, "ses-quiet", "payments").await;
    store.close().unwrap();

    let args = ReplayArgs {
        session: "ses-nope".into(),
        db: Some(path.clone()),
        raw: false,
        ..ReplayArgs::default()
    };
    let err = replay_to(&args, &mut Vec::new()).unwrap_err().to_string();
    assert!(err.contains("no session `ses-nope`"), "{err}");

    // Known, but nothing recorded: not an error, and nothing on stdout.
    let (code, out) = replay(&path, "ses-quiet", false);
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(out, "");

    let args = ReplayArgs {
        session: "ses-1".into(),
        db: Some(dir.path().join("missing.redb")),
        raw: false,
        ..ReplayArgs::default()
    };
    let err = replay_to(&args, &mut Vec::new()).unwrap_err().to_string();
    assert!(err.contains("no audit database"), "{err}");
}

/// The argument types as `main.rs` mounts them: `warden replay ...`, `warden sessions ...`.
#[test]
fn cli_arguments_parse_as_subcommands() {
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }
    #[derive(Debug, clap::Subcommand)]
    enum Cmd {
        Replay(ReplayArgs),
        Sessions(SessionsArgs),
    }

    let cli =
        Cli::try_parse_from(["warden", "replay", "ses-1", "--db", "a.redb", "--raw"]).unwrap();
    let Cmd::Replay(args) = cli.cmd else {
        panic!("not replay")
    };
    assert_eq!(args.session, "ses-1");
    assert_eq!(args.db, Some(PathBuf::from("a.redb")));
    assert!(args.raw);

    let cli = Cli::try_parse_from(["warden", "sessions", "--db", "a.redb", "--json"]).unwrap();
    let Cmd::Sessions(args) = cli.cmd else {
        panic!("not sessions")
    };
    assert!(args.json);
    assert!(Cli::try_parse_from(["warden", "replay", "--db", "a.redb"]).is_err());

    let cli = Cli::try_parse_from(["warden", "replay", "s", "--db", "a.redb"]).unwrap();
    let Cmd::Replay(args) = cli.cmd else {
        panic!("not replay")
    };
    assert_eq!(
        (args.speed, args.idle_limit, args.no_wait),
        (1.0, None, false)
    );
    assert_eq!(args.asciicast, None);
    let cli = Cli::try_parse_from([
        "warden",
        "replay",
        "s",
        "--db",
        "a.redb",
        "--speed",
        "2.5",
        "--idle-limit",
        "0",
        "--no-wait",
        "--asciicast",
        "s.cast",
    ])
    .unwrap();
    let Cmd::Replay(args) = cli.cmd else {
        panic!("not replay")
    };
    assert_eq!(
        (args.speed, args.idle_limit, args.no_wait),
        (2.5, Some(0.0), true)
    );
    assert_eq!(args.asciicast, Some(PathBuf::from("s.cast")));
    for bad in [
        &["--speed", "0"][..],
        &["--speed", "-1"],
        &["--speed", "inf"],
        &["--idle-limit", "-2"],
        &["--raw", "--asciicast", "x.cast"],
    ] {
        let argv = ["warden", "replay", "s", "--db", "a.redb"]
            .iter()
            .chain(bad)
            .copied();
        assert!(Cli::try_parse_from(argv).is_err(), "{bad:?} accepted");
    }
}

fn replay_with(args: &ReplayArgs) -> (ExitCode, String) {
    let mut out = Vec::new();
    let code = replay_to(args, &mut out).unwrap();
    (code, String::from_utf8(out).unwrap())
}

/// Exec commands over SSH (no pty): output on both streams, a denial, a signal, a notice.
async fn record_exec_session(path: &Path, id: &str) {
    let store = AuditStore::open(path).unwrap();
    start_session_as(&store, id, "bastion", Protocol::Ssh).await;
    let rec = Recorder::start(store.clone(), id);
    rec.command("ls -l /srv", "allow", None);
    rec.output(false, b"total 0\n");
    rec.output(
        true,
        b"ls: cannot access '/srv/x': No such file or directory\n",
    );
    rec.exit(Some(2), None);
    rec.command(
        "cat /etc/shadow",
        "deny",
        Some("ssh-guard: /etc/shadow is off limits"),
    );
    // What the adapter shows the client (on stderr) and records for a refused exec.
    rec.error("warden: denied: ssh-guard: /etc/shadow is off limits");
    rec.command("cat cards.txt", "mask", Some("pci-mask"));
    // No newline at the end: the exit line must still start a line of its own.
    rec.output(false, b"alice 4111 1111 1111 1111");
    rec.exit(Some(0), None);
    rec.command("sftp open-write /tmp/x", "allow", None);
    rec.command("sleep 100", "allow", None);
    rec.exit(None, Some("TERM"));
    rec.notice("session closed by the gateway");
    rec.finish().await;
    end_session(&store, id, SessionCounts::default()).await;
    store.close().unwrap();
}

const EXEC_REPLAY: &[&str] = &[
    "$ ls -l /srv",
    "total 0",
    "ls: cannot access '/srv/x': No such file or directory",
    "# exit status 2",
    "$ cat /etc/shadow",
    "# warden: deny (ssh-guard: /etc/shadow is off limits)",
    "# warden: denied: ssh-guard: /etc/shadow is off limits",
    "$ cat cards.txt",
    "# warden: mask (pci-mask)",
    "alice **** **** **** 1111",
    "# exit status 0",
    "$ sftp open-write /tmp/x",
    "$ sleep 100",
    "# killed by signal TERM",
    "# warden: session closed by the gateway",
];

#[tokio::test]
async fn ssh_exec_sessions_replay_as_command_verdict_output_and_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    record_exec_session(&path, "ses-x").await;

    let (code, out) = replay(&path, "ses-x", false);
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(out, EXEC_REPLAY.join("\n") + "\n", "replay:\n{out}");
    // The denied command: its reason, and nothing it could have printed.
    let denied = out.find("$ cat /etc/shadow\n").unwrap();
    let rest = &out[denied..];
    assert!(
        rest.starts_with(
            "$ cat /etc/shadow\n# warden: deny (ssh-guard: /etc/shadow is off limits)\n\
             # warden: denied: ssh-guard: /etc/shadow is off limits\n$ "
        ),
        "{rest}"
    );

    // Exec sessions do not wait, whatever the pacing says.
    let args = ReplayArgs {
        session: "ses-x".into(),
        db: Some(path.clone()),
        speed: 0.001,
        idle_limit: Some(0.0),
        ..ReplayArgs::default()
    };
    assert_eq!(replay_with(&args).1, out);
}

/// An interactive shell, recorded as the SSH adapter does it: the shell echoes typed keys; at
/// Enter the line is judged (`command`), then recorded (`input`) when allowed; a refusal goes
/// to the terminal as an `error` and the typed line is abandoned with Ctrl-C. Real pauses
/// between steps. Returns what the client's screen showed, and the submitted lines.
async fn record_terminal_session(path: &Path, id: &str) -> (String, Vec<String>) {
    let store = AuditStore::open(path).unwrap();
    start_session_as(&store, id, "bastion", Protocol::Ssh).await;
    let rec = Recorder::start(store.clone(), id);
    let pause = || tokio::time::sleep(Duration::from_millis(15));
    let mut screen = String::new();
    let show = |screen: &mut String, text: &str| {
        rec.output(false, text.as_bytes());
        screen.push_str(text);
    };
    rec.terminal(100, 30, "xterm-256color");
    pause().await;
    show(&mut screen, "Welcome to bastion\r\n$ ");
    pause().await;
    show(&mut screen, "ls");
    rec.command("ls", "allow", None);
    rec.input("ls\r");
    show(&mut screen, "\r\ncards.txt  notes\r\n$ ");
    pause().await;
    rec.resize(120, 40);
    pause().await;
    show(&mut screen, "cat /etc/shadow");
    let reason = "ssh-guard: /etc/shadow is off limits";
    rec.command("cat /etc/shadow", "deny", Some(reason));
    let denied = format!("warden: denied: {reason}");
    rec.error(&denied);
    screen.push_str(&format!("{denied}\r\n"));
    show(&mut screen, "^C\r\n$ ");
    let held = "warden: held for approval ap-1: needs a second pair of eyes";
    rec.notice(held);
    screen.push_str(&format!("{held}\r\n"));
    pause().await;
    show(&mut screen, "exit");
    rec.command("exit", "allow", None);
    rec.input("exit\r");
    show(&mut screen, "\r\nlogout\r\n");
    rec.exit(Some(0), None);
    rec.finish().await;
    end_session(&store, id, SessionCounts::default()).await;
    store.close().unwrap();
    (screen, vec!["ls\r".to_owned(), "exit\r".to_owned()])
}

#[tokio::test]
async fn ssh_terminal_sessions_play_their_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let (screen, _) = record_terminal_session(&path, "ses-t").await;

    let args = ReplayArgs {
        session: "ses-t".into(),
        db: Some(path.clone()),
        no_wait: true,
        ..ReplayArgs::default()
    };
    let (code, out) = replay_with(&args);
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(out, screen);

    // Timed: ~60 ms of pauses played 10x faster; the pauses are unit-tested in
    // recording::terminal, this only shows the timed path writes the same screen.
    let args = ReplayArgs {
        speed: 10.0,
        no_wait: false,
        ..args
    };
    let started = std::time::Instant::now();
    let (code, out) = replay_with(&args);
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(out, screen);
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// Each line of an asciicast as JSON, after checking the header and that times never go back.
fn parse_cast(cast: &str) -> (serde_json::Value, Vec<(f64, String, String)>) {
    let mut lines = cast.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2, "{header}");
    let events: Vec<(f64, String, String)> = lines
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let times: Vec<f64> = events.iter().map(|e| e.0).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(times.iter().all(|&t| t >= 0.0), "{times:?}");
    (header, events)
}

fn of_kind(events: &[(f64, String, String)], code: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.1 == code)
        .map(|e| e.2.clone())
        .collect()
}

#[tokio::test]
async fn ssh_sessions_export_as_asciicast_v2() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let (screen, inputs) = record_terminal_session(&path, "ses-t").await;
    record_exec_session(&path, "ses-x").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let cast_file = dir.path().join("ses-t.cast");
    let args = ReplayArgs {
        session: "ses-t".into(),
        db: Some(path.clone()),
        asciicast: Some(cast_file.clone()),
        idle_limit: Some(1.5),
        ..ReplayArgs::default()
    };
    let (code, out) = replay_with(&args);
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(out, "", "the cast goes to the file");
    let cast = std::fs::read_to_string(&cast_file).unwrap();
    let (header, events) = parse_cast(&cast);
    assert_eq!(header["width"], 100);
    assert_eq!(header["height"], 30);
    assert_eq!(header["env"]["TERM"], "xterm-256color");
    assert_eq!(header["title"], "warden session ses-t bastion");
    assert_eq!(header["idle_time_limit"], 1.5);
    let started = header["timestamp"].as_u64().unwrap();
    assert!(started <= now && now - started < 600, "{started} vs {now}");
    assert_eq!(of_kind(&events, "o").concat(), screen);
    assert_eq!(of_kind(&events, "i"), inputs);
    assert_eq!(of_kind(&events, "r"), ["120x40"]);
    // The recorded pauses are kept: the last output is at least 4 x 15 ms in.
    assert!(events.last().unwrap().0 >= 0.06, "{events:?}");

    // An exec session: 80x24, no TERM, the transcript as output with terminal line endings.
    let args = ReplayArgs {
        session: "ses-x".into(),
        db: Some(path.clone()),
        asciicast: Some("-".into()),
        ..ReplayArgs::default()
    };
    let (code, cast) = replay_with(&args);
    assert_eq!(code, ExitCode::SUCCESS);
    let (header, events) = parse_cast(&cast);
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(80), Some(24))
    );
    assert!(header.get("env").is_none() && header.get("idle_time_limit").is_none());
    assert_eq!(header["title"], "warden session ses-x bastion");
    let text = of_kind(&events, "o").concat();
    assert_eq!(text, EXEC_REPLAY.join("\r\n") + "\r\n");
    assert!(of_kind(&events, "i").is_empty() && of_kind(&events, "r").is_empty());

    // A SQL session has no asciicast form.
    let store = AuditStore::open(&path).unwrap();
    start_session(&store, "ses-pg", "payments").await;
    let rec = Recorder::start(store.clone(), "ses-pg");
    rec.command("SELECT 1;", "allow", None);
    rec.finish().await;
    store.close().unwrap();
    let args = ReplayArgs {
        session: "ses-pg".into(),
        db: Some(path),
        asciicast: Some("-".into()),
        ..ReplayArgs::default()
    };
    let err = replay_to(&args, &mut Vec::new()).unwrap_err().to_string();
    assert!(err.contains("--asciicast is for SSH sessions"), "{err}");
}

#[tokio::test]
async fn asciinema_reads_the_exported_casts() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let (screen, _) = record_terminal_session(&path, "ses-t").await;
    record_exec_session(&path, "ses-x").await;
    // The pty may add carriage returns; what matters is every byte the client saw.
    let plain = |s: &str| s.replace('\r', "");
    for (id, expected) in [("ses-t", screen), ("ses-x", EXEC_REPLAY.join("\n") + "\n")] {
        let file = dir.path().join(format!("{id}.cast"));
        let args = ReplayArgs {
            session: id.into(),
            db: Some(path.clone()),
            asciicast: Some(file.clone()),
            ..ReplayArgs::default()
        };
        assert_eq!(replay_with(&args).0, ExitCode::SUCCESS);
        let shown = asciinema_cat(&file);
        assert!(
            plain(&shown).contains(&plain(&expected)),
            "asciinema cat {id} shows:\n{shown}\nexpected:\n{expected}"
        );
    }
}
