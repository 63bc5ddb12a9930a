//! The SSH path end to end: real OpenSSH `sshd` (started here on a free loopback port), the
//! real `warden serve`, and real clients: OpenSSH `ssh`, `scp`, `sftp`, and a russh client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateway::file_contains;
use common::ssh::{SshGateway, Sshd, run, ssh_target};
use std::process::Output;
use std::time::Duration;

const ALLOW: &str = r#"{ module = "allow-all" }"#;
const MASK: &str = r#"{ module = "allow-all" }, { module = "pci-mask" }"#;
const GUARD: &str = r#"{ module = "ssh-guard" }, { module = "pci-mask" }"#;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Text without its CSI escape sequences (`ESC [ ... final`).
fn strip_csi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.next();
            for f in chars.by_ref() {
                if ('@'..='~').contains(&f) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// The audit trail as JSON lines (the gateway must be stopped).
/// The first session listed by `warden sessions`: its id and `warden replay --raw` events.
fn first_recording(gw: &SshGateway) -> (String, String) {
    let db = gw.audit_path();
    let db = db.to_str().unwrap();
    let sessions = gw.warden(&["sessions", "--db", db]);
    let listing = text(&sessions.stdout);
    let id = listing
        .split_whitespace()
        .find(|w| w.starts_with("ses-"))
        .unwrap_or_else(|| panic!("no session in {listing}: {}", show(&sessions)))
        .to_string();
    let raw = text(&gw.warden(&["replay", &id, "--db", db, "--raw"]).stdout);
    (id, raw)
}

fn export(gw: &SshGateway) -> String {
    let audit = warden::audit::AuditStore::open(gw.audit_path()).unwrap();
    let report = audit.verify().unwrap();
    assert!(report.problem.is_none(), "{report:?}");
    let mut out = Vec::new();
    audit.export(None, &mut out).unwrap();
    // Release the file before a `warden` subcommand opens it.
    audit.close().unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn exec_through_warden_matches_a_direct_connection() {
    let sshd = Sshd::start();
    let gw = SshGateway::start(&sshd, ALLOW, &["allow-all"], "");
    let input: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let cases: Vec<(Vec<&str>, Option<&[u8]>)> = vec![
        (vec!["echo hello"], None),
        (
            vec!["printf 'a\\nb'; printf 'to stderr\\n' >&2; exit 7"],
            None,
        ),
        (vec!["seq 1 200000"], None),
        (vec!["cat"], Some(&input)),
        (vec!["wc", "-c"], Some(&input)),
        (vec!["sh", "-c", "'kill -TERM $$'"], None),
        (vec!["echo \"$0 quoted 'args'\" | tr a-z A-Z"], None),
    ];
    for (remote, stdin) in cases {
        let direct = sshd.direct(&remote, stdin);
        let through = gw.ssh("web-1", &[], &remote, stdin);
        assert_eq!(through.stdout, direct.stdout, "stdout of {remote:?}");
        assert_eq!(
            text(&through.stderr),
            text(&direct.stderr),
            "stderr of {remote:?}"
        );
        assert_eq!(
            through.status.code(),
            direct.status.code(),
            "status of {remote:?}"
        );
    }
}

#[test]
fn a_denied_command_never_runs_and_the_client_sees_why() {
    let sshd = Sshd::start();
    let gw = SshGateway::start(&sshd, GUARD, &["ssh-guard", "pci-mask"], "");
    let marker = sshd.dir.path().join("marker");
    // Writing under /etc is denied; the marker is created first in the same line, so it would
    // exist if any of the line ran.
    let line = format!(
        "touch {} && echo x > /etc/warden-test-marker",
        marker.display()
    );
    let o = gw.ssh("web-1", &[], &[&line], None);
    assert_eq!(o.status.code(), Some(126), "{}", show(&o));
    assert!(text(&o.stderr).contains("warden: denied"), "{}", show(&o));
    assert!(text(&o.stderr).contains("ssh-guard"), "{}", show(&o));
    assert!(!marker.exists(), "the denied line ran");
    assert!(!std::path::Path::new("/etc/warden-test-marker").exists());
    assert!(
        !sshd.log().contains("warden-test-marker"),
        "sshd saw the denied command"
    );
    // A continuation is judged as the shell reads it: `$\<newline>'` opens `$'…'`, where `\'`
    // does not close, so the rest of the line runs (the attack ran this one).
    let marker2 = sshd.dir.path().join("marker2");
    let line = format!(
        "echo $\\\n'x\\'\n'; touch {}; echo x > /etc/warden-test-marker2 #'",
        marker2.display()
    );
    let o = gw.ssh("web-1", &[], &[&line], None);
    assert!(text(&o.stderr).contains("warden: denied"), "{}", show(&o));
    assert!(!marker2.exists(), "the continued line ran");
    // An allowed command on the same connection path still works.
    let o = gw.ssh("web-1", &[], &["echo allowed"], None);
    assert_eq!(text(&o.stdout), "allowed\n", "{}", show(&o));
}

/// Environment requests (`ssh -o SetEnv=…`) are judged and audited as the `export` that would
/// set them; a refused one never reaches the host, an allowed one does.
#[test]
fn environment_requests_are_judged_and_audited() {
    let sshd = Sshd::start_with("AcceptEnv LC_WARDEN PROMPT_COMMAND\n");
    let mut gw = SshGateway::start(&sshd, GUARD, &["ssh-guard", "pci-mask"], "");
    let o = gw.ssh(
        "web-1",
        &["-o", "SetEnv=LC_WARDEN=hello"],
        &["echo env-$LC_WARDEN"],
        None,
    );
    assert_eq!(text(&o.stdout), "env-hello\n", "{}", show(&o));
    let evil = "SetEnv=PROMPT_COMMAND=\"echo x > /etc/warden-env-marker\"";
    let o = gw.ssh("web-1", &["-o", evil], &["echo env-$PROMPT_COMMAND"], None);
    assert!(
        !text(&o.stdout).contains("warden-env-marker"),
        "the refused variable reached the host: {}",
        show(&o)
    );
    assert!(text(&o.stderr).contains("warden: denied"), "{}", show(&o));
    gw.stop();
    let audit = export(&gw);
    assert!(audit.contains("export LC_WARDEN=hello"), "{audit}");
    assert!(audit.contains("export PROMPT_COMMAND="), "{audit}");
}

/// Shell input with no terminal is code: `printf '…' | ssh -T gw` and `… | ssh gw sh` feed
/// the host's shell a script, where a line once sent cannot be abandoned. Each command is
/// judged whole before a byte of it reaches the host; a refused one is dropped, the rest run.
/// Continuation lines, quotes across lines and here-documents are judged as the command the
/// shell will run; NUL bytes are dropped as the shell drops them; a here-document delimiter
/// that is not a plain word is refused. (The attack's findings: each of m6–m9 ran before.)
/// Ground truth: marker files and the host's sshd log.
#[test]
fn shell_input_without_a_terminal_is_judged_command_by_command() {
    let sshd = Sshd::start();
    let mut gw = SshGateway::start(&sshd, GUARD, &["ssh-guard", "pci-mask"], "");
    let dir = sshd.dir.path().display().to_string();
    let script = format!(
        "touch {dir}/before\n\
         touch {dir}/m1; echo x > /etc/warden-stdin-1\n\
         touch {dir}/m2; echo x > /etc/\\\nwarden-stdin-2\n\
         echo 'a\ntouch {dir}/m3; echo x > /etc/warden-stdin-3' | bash\n\
         bash <<EOF\ntouch {dir}/m4; echo x > /etc/warden-stdin-4\nEOF\n\
         cat <<\\\nE\necho '$(touch {dir}/m6; echo x > /etc/warden-stdin-6)'\nE\n\
         tou\0ch {dir}/m7; echo x > /etc/warden-stdin-7\n\
         echo $\\\n'x\\'\n'; touch {dir}/m8; echo x > /etc/warden-stdin-8 #'\n\
         ((x=1<<2))\ntouch {dir}/m9; echo x > /etc/warden-stdin-9\n2\n\
         touch {dir}/after\n\
         touch {dir}/m5; echo x > /etc/warden-stdin-5"
    );
    let check = |how: &str, o: &Output| {
        assert!(
            text(&o.stderr).contains("warden: denied"),
            "{how}: {}",
            show(o)
        );
        for m in ["before", "after"] {
            let p = sshd.dir.path().join(m);
            assert!(
                p.exists(),
                "{how}: an allowed command did not run: {}",
                show(o)
            );
            std::fs::remove_file(p).unwrap();
        }
        for n in 1..=9 {
            assert!(
                !sshd.dir.path().join(format!("m{n}")).exists(),
                "{how}: command {n} ran"
            );
            assert!(!std::path::Path::new(&format!("/etc/warden-stdin-{n}")).exists());
        }
    };
    // A shell session without a terminal.
    let o = gw.ssh("web-1", &["-T"], &[], Some(script.as_bytes()));
    check("ssh -T", &o);
    // A shell exec'd to read stdin, directly and through wrappers.
    for exec in [
        "sh",
        "bash -s",
        "env LC_ALL=C sh -",
        "/bin/bash --norc -i",
        "cat | sh",
        "bash <(cat)",
        "source /dev/stdin",
    ] {
        let o = gw.ssh("web-1", &[], &[exec], Some(script.as_bytes()));
        check(exec, &o);
    }
    // Data on stdin of a command that is not a shell passes as it is.
    let o = gw.ssh("web-1", &[], &["cat"], Some(script.as_bytes()));
    assert_eq!(text(&o.stdout), script, "{}", show(&o));
    gw.stop();
    assert!(
        !sshd.log().contains("warden-stdin-"),
        "sshd saw a refused command"
    );
    let audit = export(&gw);
    assert!(
        audit.contains("warden-stdin-2"),
        "the continued command is audited whole"
    );
}

/// Deadlines count the CPU time a policy call uses, not the wall clock: 20 clients at once, ten
/// commands each, on a busy machine (each `ssh` handshake, the debug-built gateway and four
/// spinning threads competing for the cores) are delayed, never denied, under a deadline of
/// 3 ms, far above what a call computes (≈ 0.1 ms) and far below what it waits for a core.
#[test]
fn a_busy_machine_delays_policy_calls_rather_than_denying_them() {
    let sshd = Sshd::start();
    let limits = "\n[policy.modules.ssh-guard]\ndeadline = \"3ms\"\n\
                  [policy.modules.pci-mask]\ndeadline = \"3ms\"\n";
    let mut gw = SshGateway::start(&sshd, GUARD, &["ssh-guard", "pci-mask"], limits);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
        }
        let runs: Vec<_> = (0..20)
            .map(|i| {
                let gw = &gw;
                // Two principals: one principal's sessions on a target are capped at 16.
                let token = gw.token(if i % 2 == 0 { "alice" } else { "bob" }, &[], &[]);
                // Ten commands each, judged one by one (a shell without a terminal).
                let script: String = (0..10).map(|k| format!("echo hello-{i}-{k}\n")).collect();
                scope.spawn(move || {
                    gw.ssh_as(&token, "web-1", &["-T"], &[], Some(script.as_bytes()))
                })
            })
            .collect();
        let outputs = runs.into_iter().map(|r| r.join().unwrap()).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        outputs
    });
    for (i, o) in outputs.iter().enumerate() {
        let want: String = (0..10).map(|k| format!("hello-{i}-{k}\n")).collect();
        assert_eq!(text(&o.stdout), want, "{}", show(o));
    }
    gw.stop();
    let audit = export(&gw);
    assert!(!audit.contains("deadline"), "a deadline deny: {audit}");
}

#[test]
fn card_numbers_in_output_are_masked_and_never_recorded() {
    let sshd = Sshd::start();
    let mut gw = SshGateway::start(&sshd, MASK, &["allow-all", "pci-mask"], "");
    let file = sshd.dir.path().join("payments.log");
    let mut body = String::new();
    for i in 0..3000 {
        body.push_str(&format!(
            "{i} charge card 4111 1111 1111 1111 amount 12.50\n"
        ));
    }
    body.push_str("stderr-free tail 5500005555555559 without newline");
    std::fs::write(&file, &body).unwrap();
    let cat = format!("cat {}", file.display());
    let direct = sshd.direct(&[&cat], None);
    assert!(text(&direct.stdout).contains("4111 1111 1111 1111"));
    let o = gw.ssh("web-1", &[], &[&cat], None);
    assert!(o.status.success(), "{}", show(&o));
    let out = text(&o.stdout);
    let clear = out.lines().find(|l| l.contains("4111 1111 1111 1111"));
    assert!(clear.is_none(), "clear PAN through warden: {clear:?}");
    assert!(
        !out.contains("5500005555555559"),
        "clear PAN in the partial last line"
    );
    assert_eq!(out.lines().count(), 3001);
    assert!(
        out.contains("0 charge card **** **** **** 1111 amount 12.50\n"),
        "{}",
        &out[..200]
    );
    assert!(out.ends_with("stderr-free tail ************5559 without newline"));
    // Binary output passes byte for byte when there is nothing to mask.
    let bin = gw.ssh(
        "web-1",
        &[],
        &["head -c 100000 /dev/zero | tr '\\0' '\\377'"],
        None,
    );
    assert_eq!(bin.stdout, vec![0xff; 100000]);
    gw.stop();
    let audit = export(&gw);
    assert!(
        audit.contains("\"type\":\"masked\""),
        "masked-cell counts audited"
    );
    assert!(!file_contains(&gw.audit_path(), "4111 1111 1111 1111"));
    assert!(!file_contains(&gw.audit_path(), "5500005555555559"));
    // The scan reaches into the compressed recording: the masked output is found there.
    assert!(file_contains(
        &gw.audit_path(),
        "stderr-free tail ************5559"
    ));
}

/// sshd sends `exit-status` as soon as the command exits, ahead of output still to come: from
/// a background process that keeps stdout open, or held back by the SSH window (a slow
/// reader). A line is not ended by the exit status, only by EOF; taken as ended there, a card
/// number cut across two writes passed as two harmless halves.
#[test]
fn output_after_the_exit_status_is_masked_whole() {
    let sshd = Sshd::start();
    let mut gw = SshGateway::start(&sshd, MASK, &["allow-all", "pci-mask"], "");
    let late = "printf 'card 4111 1111 '; (sleep 1; printf '1111 1111 end\\n') & sleep 0.3";
    let direct = sshd.direct(&[late], None);
    assert_eq!(text(&direct.stdout), "card 4111 1111 1111 1111 end\n");
    let o = gw.ssh("web-1", &[], &[late], None);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(text(&o.stdout), "card **** **** **** 1111 end\n");
    gw.stop();
    // The recording keeps what the client saw, the exit after the output.
    let (_, raw) = first_recording(&gw);
    let events: Vec<&str> = raw.lines().collect();
    let output: Vec<&&str> = events.iter().filter(|e| e.contains("\"output\"")).collect();
    assert!(output.iter().all(|e| !e.contains("4111")), "{raw}");
    let shown = events
        .iter()
        .position(|e| e.contains("**** **** **** 1111 end"));
    let exit = events.iter().position(|e| e.contains("\"exit\""));
    assert!(shown.is_some() && shown < exit, "{raw}");
}

/// A shell `printf` of `bytes`, every byte as an octal escape.
fn printf(bytes: &[u8]) -> String {
    let escaped: String = bytes.iter().map(|b| format!("\\{b:03o}")).collect();
    format!("printf '{escaped}'")
}

/// A program that pauses in the middle of a card number: what goes out at the pause is only
/// what cannot be part of it, in every encoding the number can be read in, and a number inside
/// a run of digits longer than a stream holds back is masked from both sides of the cut (the
/// piece before the pause was once masked alone: all sixteen digits left clear). What the host
/// prints is the ground truth.
#[test]
fn a_pause_inside_a_card_number_sends_none_of_it_clear() {
    let sshd = Sshd::start();
    let mut gw = SshGateway::start(&sshd, MASK, &["allow-all", "pci-mask"], "");
    let le = |t: &str| -> Vec<u8> { t.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let cases: [(Vec<u8>, Vec<u8>, Vec<u8>); 3] = [
        // Latin-1: the no-break space is one byte, 0xA0, not UTF-8.
        (
            b"card 4111\xa01111\xa01111".to_vec(),
            b"\xa01111 end\n".to_vec(),
            b"card ****\xa0****\xa0****\xa01111 end\n".to_vec(),
        ),
        // UTF-16 (little-endian), as `iconv -t UTF-16LE` writes it.
        (
            le("card 4111 1111 1111 "),
            [le("1111 end"), b"\n".to_vec()].concat(),
            [le("card **** **** **** 1111 end"), b"\n".to_vec()].concat(),
        ),
        // 30 digits before the pause, the card number first: more than is held back.
        (
            b"run 411111111111111133333333333333".to_vec(),
            b"3 end\n".to_vec(),
            warden_pan::scrub("run 4111111111111111333333333333333 end\n")
                .into_owned()
                .into_bytes(),
        ),
    ];
    for (before, after, masked) in cases {
        let command = format!("{}; sleep 0.5; {}", printf(&before), printf(&after));
        let direct = sshd.direct(&[&command], None);
        assert_eq!(direct.stdout, [&before[..], &after].concat(), "{command}");
        let o = gw.ssh("web-1", &[], &[&command], None);
        assert!(o.status.success(), "{}", show(&o));
        assert_eq!(text(&o.stdout), text(&masked), "{command}");
        assert!(text(&o.stdout).contains('*'), "{command}");
    }
    gw.stop();
}

/// What terminals and people write: colour codes between the digits (`grep --color=always`),
/// other separators, full-width digits, stderr, and a number across the 64 KiB line bound.
#[test]
fn card_numbers_are_found_as_written_on_stdout_and_stderr() {
    let sshd = Sshd::start();
    let mut gw = SshGateway::start(&sshd, MASK, &["allow-all", "pci-mask"], "");
    let file = sshd.dir.path().join("cards.txt");
    std::fs::write(&file, "card 4111111111111111 ok\n").unwrap();
    let grep = format!("grep --color=always 1111 {}", file.display());
    let direct = sshd.direct(&[&grep], None);
    let colour = text(&direct.stdout);
    assert!(
        colour.contains('\u{1b}'),
        "grep coloured its match: {colour:?}"
    );
    let o = gw.ssh("web-1", &[], &[&grep], None);
    let out = text(&o.stdout);
    let digits: String = strip_csi(&out)
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    assert!(
        !digits.contains("41111111"),
        "a clear PAN between colour codes: {out:?}"
    );
    assert_eq!(digits, "1111", "only the last four stay: {out:?}");

    let printf = "printf '4111.1111.1111.1111 \\342\\200\\2174111_1111_1111_1111\\n' >&2; printf '\\357\\274\\224111 1111 1111 1111\\n'";
    let o = gw.ssh("web-1", &[], &[printf], None);
    let err = text(&o.stderr);
    assert!(
        err.contains("****.****.****.1111"),
        "stderr masked: {err:?}"
    );
    assert!(!err.contains("4111_1111"), "{err:?}");
    let out = text(&o.stdout);
    assert!(
        !out.contains("111 1111 1111 1111"),
        "full-width digits: {out:?}"
    );
    // A zero-width space and a combining mark at odd places: the number still looks whole.
    let o = gw.ssh(
        "web-1",
        &[],
        &["printf '41\\342\\200\\2131111111\\314\\2011111111\\n'"],
        None,
    );
    let out = text(&o.stdout);
    let digits: String = out.chars().filter(char::is_ascii_digit).collect();
    assert_eq!(digits, "1111", "only the last four stay: {out:?}");

    // A card number right across the line bound (64 KiB without a newline).
    let long = "head -c 65530 /dev/zero | tr '\\0' x; printf '4111111111111111\\n'";
    let o = gw.ssh("web-1", &[], &[long], None);
    let out = text(&o.stdout);
    assert_eq!(out.len(), 65530 + 17, "nothing lost");
    assert!(!out.contains("4111111111111111"));
    assert!(out.ends_with("************1111\n"), "{:?}", &out[65500..]);
    gw.stop();
    assert!(!file_contains(&gw.audit_path(), "4111111111111111"));
}

#[test]
fn scp_and_sftp_transfer_byte_identical_files_with_each_operation_audited() {
    let sshd = Sshd::start();
    let mut gw = SshGateway::start(&sshd, ALLOW, &["allow-all"], "");
    let local = gw.dir.path().join("big.bin");
    let data: Vec<u8> = (0..48_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&local, &data).unwrap();
    let remote = sshd.dir.path().join("uploaded.bin");
    let token = gw.token("alice", &["agent-7"], &[]);
    // scp upload and download (OpenSSH 9 scp speaks SFTP).
    let mut up = gw.with_token("scp", &token);
    up.args(["-P", &gw.port.to_string()])
        .arg(&local)
        .arg(format!("web-1@127.0.0.1:{}", remote.display()));
    let o = run(up, None);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(std::fs::read(&remote).unwrap(), data);
    let back = gw.dir.path().join("back.bin");
    let mut down = gw.with_token("scp", &token);
    down.args(["-P", &gw.port.to_string()])
        .arg(format!("web-1@127.0.0.1:{}", remote.display()))
        .arg(&back);
    let o = run(down, None);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(std::fs::read(&back).unwrap(), data);
    // sftp in batch mode with the registered key: put, get, rename, mkdir, rm.
    let got = gw.dir.path().join("got.bin");
    let dir = sshd.dir.path();
    let batch = format!(
        "put {local} {d}/sf.bin\nget {d}/sf.bin {got}\nrename {d}/sf.bin {d}/sf2.bin\nmkdir {d}/newdir\nrm {d}/sf2.bin\n",
        local = local.display(),
        d = dir.display(),
        got = got.display()
    );
    let batch_file = gw.dir.path().join("batch");
    std::fs::write(&batch_file, batch).unwrap();
    let mut sftp = gw.with_key("sftp");
    sftp.args(["-P", &gw.port.to_string(), "-b"])
        .arg(&batch_file)
        .arg("web-1@127.0.0.1");
    let o = run(sftp, None);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(std::fs::read(&got).unwrap(), data);
    assert!(dir.join("newdir").is_dir());
    assert!(!dir.join("sf2.bin").exists());
    gw.stop();
    let audit = export(&gw);
    for op in [
        format!("sftp open-write {}", remote.display()),
        format!("sftp open-read {}", remote.display()),
        format!("sftp open-write {}/sf.bin", dir.display()),
        format!("sftp rename {d}/sf.bin {d}/sf2.bin", d = dir.display()),
        format!("sftp mkdir {}/newdir", dir.display()),
        format!("sftp remove {}/sf2.bin", dir.display()),
    ] {
        assert!(audit.contains(&op), "no audit event for `{op}`");
    }
    // The key's principal is on the sftp session.
    assert!(audit.contains("deploy-bot"));
}

/// A file read over SFTP (`sftp get`, and `scp`, which speaks SFTP since OpenSSH 9) under
/// pci-mask is masked as command output is: card numbers starred in place, every other byte
/// where it was (the same length, so the client's offsets stay true), numbers across the
/// client's read boundaries seen whole whatever its buffer size; a file without card numbers
/// arrives byte for byte, binary or not, through sftp and scp.
#[test]
fn files_read_over_sftp_are_masked_in_place() {
    let sshd = Sshd::start();
    let mut gw = SshGateway::start(&sshd, MASK, &["allow-all", "pci-mask"], "");
    let dir = sshd.dir.path();
    // Lines of ordinary text, and card numbers in three formats, one straddling each 4 KiB
    // boundary (the smallest buffer below) and so every 32 KiB one (the default).
    let (pans, masked) = (
        [
            "4111 1111 1111 1111",
            "4111111111111111",
            "5500-0000-0000-0004",
        ],
        [
            "**** **** **** 1111",
            "************1111",
            "****-****-****-0004",
        ],
    );
    let filler = "order 12345 shipped 2026-12-05 10:31 to 10 Downing St, 3 items\n";
    let (mut clear, mut expected) = (String::new(), String::new());
    for i in 0..40 {
        loop {
            let room = (4096 - (clear.len() + 8) % 4096) % 4096;
            let c = match room {
                0 => break,
                n if n > filler.len() => filler.to_string(),
                n => format!("{} ", "x".repeat(n - 1)),
            };
            clear.push_str(&c);
            expected.push_str(&c);
        }
        clear.push_str(pans[i % 3]);
        expected.push_str(masked[i % 3]);
    }
    clear.push_str("\nlast card 4111111111111111");
    expected.push_str("\nlast card ************1111");
    let cards = dir.join("cards.txt");
    std::fs::write(&cards, &clear).unwrap();
    let binary: Vec<u8> = (0..4_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("plain.bin"), &binary).unwrap();
    let token = gw.token("alice", &["agent-7"], &[]);
    let local = gw.dir.path().to_path_buf();
    let batch = local.join("batch");
    std::fs::write(
        &batch,
        format!(
            "get {d}/cards.txt {l}/sftp.txt\nget {d}/plain.bin {l}/plain.bin\n",
            d = dir.display(),
            l = local.display()
        ),
    )
    .unwrap();
    for buffer in ["4096", "32768", "261120"] {
        // Batch mode asks for no password: the registered key.
        let mut sftp = gw.with_key("sftp");
        sftp.args(["-P", &gw.port.to_string(), "-B", buffer, "-b"])
            .arg(&batch)
            .arg("web-1@127.0.0.1");
        let o = run(sftp, None);
        assert!(o.status.success(), "{}", show(&o));
        let got = std::fs::read_to_string(local.join("sftp.txt")).unwrap();
        assert!(
            got == expected,
            "sftp -B {buffer}: the file differs from the masked original"
        );
        assert!(
            std::fs::read(local.join("plain.bin")).unwrap() == binary,
            "-B {buffer}"
        );
    }
    let mut scp = gw.with_token("scp", &token);
    scp.args(["-P", &gw.port.to_string()])
        .arg(format!("web-1@127.0.0.1:{}", cards.display()))
        .arg(local.join("scp.txt"));
    let o = run(scp, None);
    assert!(o.status.success(), "{}", show(&o));
    assert!(std::fs::read_to_string(local.join("scp.txt")).unwrap() == expected);
    // A large file through scp, which reads 255 KiB at a time and pipelines: given short reads
    // it asked again out of order and truncated what it wrote at the first gap (64 KiB of 4 MB).
    let mut scp = gw.with_token("scp", &token);
    scp.args(["-P", &gw.port.to_string()])
        .arg(format!(
            "web-1@127.0.0.1:{}",
            dir.join("plain.bin").display()
        ))
        .arg(local.join("scp.bin"));
    let o = run(scp, None);
    assert!(o.status.success(), "{}", show(&o));
    let got = std::fs::read(local.join("scp.bin")).unwrap();
    assert!(
        got == binary,
        "scp: {} of {} bytes, or different",
        got.len(),
        binary.len()
    );
    // Legacy scp (`scp -O`, an exec of `scp -f` whose output is masked as output): its stream
    // frames the file by byte count, so masking keeps the length — full-width digits included
    // (one `*` per three-byte digit used to leave the client waiting for bytes forever).
    let wide = dir.join("wide.txt");
    let wide_text = "fw \u{ff14}\u{ff11}\u{ff11}\u{ff11} \u{ff11}\u{ff11}\u{ff11}\u{ff11} \
                     \u{ff11}\u{ff11}\u{ff11}\u{ff11} \u{ff11}\u{ff11}\u{ff11}\u{ff11}\n";
    std::fs::write(&wide, wide_text).unwrap();
    let mut legacy = gw.with_token("scp", &token);
    legacy
        .args(["-O", "-P", &gw.port.to_string()])
        .arg(format!("web-1@127.0.0.1:{}", wide.display()))
        .arg(local.join("wide.txt"))
        .stdin(std::process::Stdio::null());
    let mut child = legacy.spawn().unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("scp -O of full-width digits hung");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "scp -O failed");
    let got = std::fs::read(local.join("wide.txt")).unwrap();
    assert_eq!(got.len(), wide_text.len());
    assert!(!text(&got).contains('\u{ff14}'), "{}", text(&got));
    // The host's file is untouched; the audit holds the masked opens, never a number.
    assert_eq!(std::fs::read_to_string(&cards).unwrap(), clear);
    gw.stop();
    let audit = export(&gw);
    assert!(audit.contains(&format!("sftp open-read {}", cards.display())));
    assert!(!file_contains(&gw.audit_path(), "4111111111111111"));
}

/// Text files in other encodings: a Latin-1 file whose separator is the one byte 0xA0 (no-break
/// space), and a UTF-16 file (NUL bytes between the digits), read over SFTP and with `cat`.
#[test]
fn latin1_and_utf16_files_are_masked() {
    let sshd = Sshd::start();
    let gw = SshGateway::start(&sshd, MASK, &["allow-all", "pci-mask"], "");
    let dir = sshd.dir.path();
    let le = |t: &str| -> Vec<u8> { t.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let be = |t: &str| -> Vec<u8> { t.encode_utf16().flat_map(u16::to_be_bytes).collect() };
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "latin1.txt",
            b"Karte 4111\xa01111\xa01111\xa01111 g\xfcltig\n".to_vec(),
        ),
        ("utf16.txt", le("card 5500 0000 0000 0004\n")),
        // What the attack got through: anything but ASCII between the digits of UTF-16 text.
        ("zwsp.txt", le("pay 41111111\u{200B}11111111 ok\n")),
        ("wj.txt", le("4111\u{2060}1111\u{2060}1111\u{2060}1111\n")),
        ("ideo.txt", le("4111\u{3000}1111\u{3000}1111\u{3000}1111\n")),
        (
            "fullwidth.txt",
            le(
                "\u{FF14}\u{FF11}\u{FF11}\u{FF11} \u{FF11}\u{FF11}\u{FF11}\u{FF11} \u{FF11}\u{FF11}\u{FF11}\u{FF11} \u{FF11}\u{FF11}\u{FF11}\u{FF11}\n",
            ),
        ),
        (
            "be.txt",
            be("card 5500\u{3000}0000\u{3000}0000\u{3000}0004\n"),
        ),
        // An ASCII number the UTF-8 reading masks, and a UTF-16 one only the UTF-16 reading
        // sees, in one line: both masked (the second attack's G6).
        (
            "both.txt",
            le("4111111111111111 and 5500\u{3000}0000\u{3000}0000\u{3000}0004\n"),
        ),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    // The digits a reader of the file sees: in its encoding, of any script.
    let digits = |name: &str, b: &[u8]| -> String {
        let text = match name {
            "latin1.txt" => b.iter().copied().map(char::from).collect::<String>(),
            "be.txt" => String::from_utf16_lossy(
                &b.chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect::<Vec<_>>(),
            ),
            _ => String::from_utf16_lossy(
                &b.chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect::<Vec<_>>(),
            ),
        };
        text.chars()
            .filter_map(|c| match c {
                '\u{FF10}'..='\u{FF19}' => char::from_u32(c as u32 - 0xFF10 + 0x30),
                c if c.is_ascii_digit() => Some(c),
                _ => None,
            })
            .collect()
    };
    let local = gw.dir.path().to_path_buf();
    let batch = local.join("batch");
    let gets: String = files
        .iter()
        .map(|(name, _)| format!("get {}/{name} {}/{name}\n", dir.display(), local.display()))
        .collect();
    std::fs::write(&batch, gets).unwrap();
    let mut sftp = gw.with_key("sftp");
    sftp.args(["-P", &gw.port.to_string(), "-b"])
        .arg(&batch)
        .arg("web-1@127.0.0.1");
    let o = run(sftp, None);
    assert!(o.status.success(), "{}", show(&o));
    for (name, clear) in &files {
        // The last four of each number.
        let all = digits(name, clear);
        let last = if *name == "both.txt" {
            format!("{}{}", &all[12..16], &all[28..])
        } else {
            all[12..].to_string()
        };
        let last = last.as_str();
        let got = std::fs::read(local.join(name)).unwrap();
        assert_eq!(got.len(), clear.len(), "{name}: length kept");
        assert_eq!(
            digits(name, &got),
            last,
            "{name}: only the last four stay: {got:?}"
        );
        let o = gw.ssh(
            "web-1",
            &[],
            &[&format!("cat {}/{name}", dir.display())],
            None,
        );
        assert_eq!(digits(name, &o.stdout), last, "cat {name}: {:?}", o.stdout);
    }
}

/// Names are data too: a file named after a card number is listed masked by `sftp ls` and
/// `ls -l` (OpenSSH's sftp), and READLINK / REALPATH answer with masked names (raw client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_in_listings_and_links_are_masked() {
    let sshd = Sshd::start();
    let gw = SshGateway::start(&sshd, MASK, &["allow-all", "pci-mask"], "");
    let dir = sshd.dir.path().join("exports");
    std::fs::create_dir(&dir).unwrap();
    for name in [
        "4111111111111111.csv",
        "card 5500-0000-0000-0004.txt",
        "plain.txt",
    ] {
        std::fs::write(dir.join(name), "x\n").unwrap();
    }
    std::os::unix::fs::symlink(dir.join("4111111111111111.csv"), dir.join("latest")).unwrap();
    let local = gw.dir.path().to_path_buf();
    let batch = local.join("batch");
    let d = dir.display();
    std::fs::write(&batch, format!("ls -1 {d}\nls -l {d}\n")).unwrap();
    let listing = {
        let batch = batch.clone();
        let mut sftp = gw.with_key("sftp");
        sftp.args(["-P", &gw.port.to_string(), "-b"])
            .arg(&batch)
            .arg("web-1@127.0.0.1");
        tokio::task::spawn_blocking(move || run(sftp, None))
            .await
            .unwrap()
    };
    assert!(listing.status.success(), "{}", show(&listing));
    let out = text(&listing.stdout);
    for clear in ["4111111111111111", "5500-0000-0000-0004", "41111111"] {
        assert!(!out.contains(clear), "{clear} listed in clear:\n{out}");
    }
    assert!(out.contains("************1111.csv"), "{out}");
    assert!(out.contains("card ****-****-****-0004.txt"), "{out}");
    assert!(
        out.contains("plain.txt"),
        "names without a number stay: {out}"
    );
    // `ls -l` asks for the owners' names (users-groups-by-id@openssh.com): answered.
    assert!(
        !text(&listing.stderr).contains("cannot be checked"),
        "{}",
        show(&listing)
    );

    let (_h, mut ch) = sftp_session(&gw, &sshd).await;
    let mut buf = Vec::new();
    let link = dir.join("latest");
    ch.data(&sftp_packet(19, 1, &[link.to_str().unwrap().as_bytes()], &[])[..])
        .await
        .unwrap();
    let (kind, payload) = sftp_reply(&mut ch, &mut buf, 1).await;
    assert_eq!(kind, 104, "READLINK answers NAME: {payload:?}");
    let answer = text(&payload);
    assert!(!answer.contains("41111111"), "{answer:?}");
    assert!(answer.contains("************1111.csv"), "{answer:?}");
    let target = dir.join("4111111111111111.csv");
    ch.data(&sftp_packet(16, 2, &[target.to_str().unwrap().as_bytes()], &[])[..])
        .await
        .unwrap();
    let (kind, payload) = sftp_reply(&mut ch, &mut buf, 2).await;
    assert_eq!(kind, 104, "REALPATH answers NAME: {payload:?}");
    assert!(!text(&payload).contains("41111111"), "{:?}", text(&payload));
    // The host's names are untouched.
    assert!(dir.join("4111111111111111.csv").exists());
}

#[test]
fn sftp_and_port_forwarding_are_denied_unless_a_policy_allows() {
    let sshd = Sshd::start();
    let mut gw = SshGateway::start(&sshd, GUARD, &["ssh-guard", "pci-mask"], "");
    // sftp: the first operation is refused with the reason.
    let batch_file = gw.dir.path().join("batch");
    std::fs::write(&batch_file, "ls /\n").unwrap();
    let mut sftp = gw.with_key("sftp");
    sftp.args(["-P", &gw.port.to_string(), "-b"])
        .arg(&batch_file)
        .arg("web-1@127.0.0.1");
    let o = run(sftp, None);
    assert!(!o.status.success(), "{}", show(&o));
    // Local forwarding: the channel open is refused.
    let local_port = common::pg::free_port();
    let mut fwd = gw.with_key("ssh");
    fwd.args(["-p", &gw.port.to_string(), "-N", "-L"])
        .arg(format!("{local_port}:127.0.0.1:{}", sshd.port))
        .arg("web-1@127.0.0.1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = fwd.spawn().unwrap();
    let mut banner = Vec::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", local_port)) {
            use std::io::Read;
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.read_to_end(&mut banner);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !text(&banner).starts_with("SSH-"),
        "the forward reached sshd: {}",
        text(&banner)
    );
    gw.stop();
    let audit = export(&gw);
    assert!(
        audit.contains(&format!("forward local 127.0.0.1:{}", sshd.port)),
        "forward audited"
    );
    assert!(audit.contains("sftp "), "sftp operation audited");
}

/// One SFTP packet: type, request id, string fields, then raw bytes.
fn sftp_packet(kind: u8, id: u32, fields: &[&[u8]], tail: &[u8]) -> Vec<u8> {
    let mut body = vec![kind];
    body.extend_from_slice(&id.to_be_bytes());
    for f in fields {
        body.extend_from_slice(&(f.len() as u32).to_be_bytes());
        body.extend_from_slice(f);
    }
    body.extend_from_slice(tail);
    [(body.len() as u32).to_be_bytes().to_vec(), body].concat()
}

/// Read SFTP replies from `ch` until one for `id`; (type, payload after the id).
async fn sftp_reply(
    ch: &mut russh::Channel<russh::client::Msg>,
    buf: &mut Vec<u8>,
    id: u32,
) -> (u8, Vec<u8>) {
    loop {
        while buf.len() >= 4 {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if buf.len() < 4 + len {
                break;
            }
            let packet: Vec<u8> = buf.drain(..4 + len).collect();
            if packet[5..9] == id.to_be_bytes() {
                return (packet[4], packet[9..].to_vec());
            }
        }
        match ch.wait().await {
            Some(russh::ChannelMsg::Data { data }) => buf.extend_from_slice(&data),
            Some(_) => {}
            None => panic!("the sftp channel closed"),
        }
    }
}

/// A raw SFTP session through the gateway (a russh client logged in with a token), past INIT.
async fn sftp_session(
    gw: &SshGateway,
    sshd: &Sshd,
) -> (
    russh::client::Handle<Client>,
    russh::Channel<russh::client::Msg>,
) {
    let (gw_key, _) = host_keys(gw, sshd);
    let token = gw.token("alice", &["agent-7"], &[]);
    let config = std::sync::Arc::new(russh::client::Config::default());
    let mut h = russh::client::connect(config, ("127.0.0.1", gw.port), Client { expect: gw_key })
        .await
        .unwrap();
    assert!(
        h.authenticate_password("web-1", &token)
            .await
            .unwrap()
            .success()
    );
    let mut ch = h.channel_open_session().await.unwrap();
    ch.request_subsystem(true, "sftp").await.unwrap();
    let mut buf = Vec::new();
    // INIT (no request id: version 3 in its place).
    ch.data(&[0, 0, 0, 5, 1, 0, 0, 0, 3][..]).await.unwrap();
    loop {
        if buf.len() >= 5 && buf[4] == 2 {
            break;
        }
        if let Some(russh::ChannelMsg::Data { data }) = ch.wait().await {
            buf.extend_from_slice(&data);
        }
    }
    (h, ch)
}

/// A card number spread wide — sixteen 32-byte escape sequences between each two digits,
/// which a terminal shows as `4111111111111111` — read one byte at a time at each digit: every
/// read is masked with enough text around it to see the whole number (the attack got all
/// sixteen digits when the context was 4 KiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_byte_reads_of_a_wide_card_number_are_masked() {
    let sshd = Sshd::start();
    let gw = SshGateway::start(&sshd, MASK, &["allow-all", "pci-mask"], "");
    let sgr = format!("\x1b[{}0m", "0;".repeat(14));
    assert_eq!(sgr.len(), 32);
    let digits = "4111111111111111";
    let wide = digits
        .chars()
        .map(String::from)
        .collect::<Vec<_>>()
        .join(&sgr.repeat(16));
    let file = sshd.dir.path().join("wide.txt");
    std::fs::write(&file, format!("{wide}\n")).unwrap();
    let (_h, mut ch) = sftp_session(&gw, &sshd).await;
    let mut buf = Vec::new();
    let path = file.to_str().unwrap().as_bytes();
    ch.data(&sftp_packet(3, 1, &[path], &[0, 0, 0, 1, 0, 0, 0, 0])[..])
        .await
        .unwrap();
    let (kind, payload) = sftp_reply(&mut ch, &mut buf, 1).await;
    assert_eq!(kind, 102, "{payload:?}");
    let handle = payload[4..].to_vec();
    let mut got = String::new();
    for (k, _) in digits.char_indices() {
        let offset = (k * (1 + 16 * 32)) as u64;
        let id = 10 + k as u32;
        let tail = [&offset.to_be_bytes()[..], &1u32.to_be_bytes()].concat();
        ch.data(&sftp_packet(5, id, &[&handle], &tail)[..])
            .await
            .unwrap();
        let (kind, payload) = sftp_reply(&mut ch, &mut buf, id).await;
        assert_eq!(kind, 103, "DATA for the byte at {offset}: {payload:?}");
        got.push_str(&text(&payload[4..]));
    }
    assert_eq!(got, "************1111");
}

/// What cold attacks on masked SFTP reads found, with a raw client: an FSTAT and a READ
/// sharing an id (the FSTAT's answer ended the masked read's wait and its data passed in
/// clear), a host-side `copy-data` of the first twelve digits, a file read while it is being
/// written that ends inside a number, a closed handle's number read before the host's answer
/// to the next open, and packet types the host never answers. None may give a clear card number
/// or leave an id waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_sftp_reads_hold_against_a_raw_client() {
    let sshd = Sshd::start();
    let gw = SshGateway::start(&sshd, MASK, &["allow-all", "pci-mask"], "");
    let dir = sshd.dir.path();
    let cards = dir.join("cards.txt");
    std::fs::write(&cards, "visa 4111111111111111\n").unwrap();
    let log = dir.join("app.log");
    std::fs::write(&log, "payment card 4111 1111 1111").unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().as_bytes().to_vec();
    let (_h, mut ch) = sftp_session(&gw, &sshd).await;
    let mut buf = Vec::new();
    let open =
        |id: u32, p: &[u8], flags: u8| sftp_packet(3, id, &[p], &[0, 0, 0, flags, 0, 0, 0, 0]);
    let read = |id: u32, h: &[u8], off: u64, len: u32| {
        sftp_packet(
            5,
            id,
            &[h],
            &[&off.to_be_bytes()[..], &len.to_be_bytes()].concat(),
        )
    };
    ch.data(&open(1, &path(&cards), 1)[..]).await.unwrap();
    let (kind, payload) = sftp_reply(&mut ch, &mut buf, 1).await;
    assert_eq!(kind, 102, "{payload:?}");
    let handle = payload[4..].to_vec();
    // FSTAT and READ with one id, in one write: two answers, neither in clear.
    let both = [
        sftp_packet(8, 7, &[&handle], &[]),
        read(7, &handle, 0, 4096),
    ]
    .concat();
    ch.data(&both[..]).await.unwrap();
    let first = sftp_reply(&mut ch, &mut buf, 7).await;
    let second = sftp_reply(&mut ch, &mut buf, 7).await;
    for (kind, payload) in [&first, &second] {
        assert!(
            !text(payload).contains("4111111111111111"),
            "answer {kind}: {}",
            text(payload)
        );
    }
    // copy-data of the first twelve digits into a new file: refused, nothing copied.
    let piece = dir.join("piece.txt");
    ch.data(&open(2, &path(&piece), 0x1a)[..]).await.unwrap();
    let (kind, payload) = sftp_reply(&mut ch, &mut buf, 2).await;
    assert_eq!(kind, 102, "{payload:?}");
    let write_handle = payload[4..].to_vec();
    let copy = sftp_packet(
        200,
        3,
        &[b"copy-data", &handle],
        &[
            &5u64.to_be_bytes()[..],
            &12u64.to_be_bytes(),
            &(write_handle.len() as u32).to_be_bytes(),
            &write_handle,
            &0u64.to_be_bytes(),
        ]
        .concat(),
    );
    ch.data(&copy[..]).await.unwrap();
    let (kind, payload) = sftp_reply(&mut ch, &mut buf, 3).await;
    assert_eq!(
        (kind, &payload[..4]),
        (101, &[0, 0, 0, 3][..]),
        "{}",
        text(&payload)
    );
    assert_eq!(std::fs::read(&piece).unwrap(), b"");
    // A log that ends inside a number, read, then appended to and read on.
    ch.data(&open(4, &path(&log), 1)[..]).await.unwrap();
    let (_, payload) = sftp_reply(&mut ch, &mut buf, 4).await;
    let log_handle = payload[4..].to_vec();
    ch.data(&read(5, &log_handle, 0, 32768)[..]).await.unwrap();
    let (kind, first) = sftp_reply(&mut ch, &mut buf, 5).await;
    assert_eq!(kind, 103, "{}", text(&first));
    let first = first[4..].to_vec();
    assert_eq!(text(&first), "payment card **** **** ****");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b" 1111 ok\n"))
        .unwrap();
    ch.data(&read(6, &log_handle, first.len() as u64, 32768)[..])
        .await
        .unwrap();
    let (_, rest) = sftp_reply(&mut ch, &mut buf, 6).await;
    assert_eq!(text(&rest[4..]), " 1111 ok\n");
    // The re-attack: a directory handle (not masked) closed, the card file opened (the host
    // hands out the same number) and that number read, in one write, before the host's answer
    // to the open says which handle it is.
    ch.data(&sftp_packet(11, 20, &[&path(dir)], &[])[..])
        .await
        .unwrap();
    let (kind, payload) = sftp_reply(&mut ch, &mut buf, 20).await;
    assert_eq!(kind, 102, "{payload:?}");
    let dir_handle = payload[4..].to_vec();
    let race = [
        sftp_packet(4, 21, &[&dir_handle], &[]),
        open(22, &path(&cards), 1),
        read(23, &dir_handle, 0, 4096),
    ]
    .concat();
    ch.data(&race[..]).await.unwrap();
    for id in [21, 22, 23] {
        let (kind, payload) = sftp_reply(&mut ch, &mut buf, id).await;
        assert!(
            !text(&payload).contains("4111111111111111"),
            "answer {kind} to {id}: {}",
            text(&payload)
        );
    }
    // A packet type SFTP does not define is answered by the gateway (the host would never
    // answer it, and its id would wait for ever).
    ch.data(&sftp_packet(99, 30, &[], &[])[..]).await.unwrap();
    let (kind, payload) = sftp_reply(&mut ch, &mut buf, 30).await;
    assert_eq!(
        (kind, &payload[..4]),
        (101, &[0, 0, 0, 8][..]),
        "{}",
        text(&payload)
    );
}

/// Read-only SFTP means read-only: attributes changed through a handle opened for reading
/// (FSETSTAT: chmod 4777, truncate) are checked as a `setstat` of the handle's path and
/// refused; the file on the host keeps its mode and size. Driven with raw SFTP packets (a
/// stock `sftp` never sends FSETSTAT on a read handle; an attacker's client does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_read_only_holds_for_attributes_changed_through_a_handle() {
    use std::os::unix::fs::PermissionsExt;
    let sshd = Sshd::start();
    let chain =
        r#"{ module = "ssh-guard", config = { allow_sftp = true, sftp_read_only = true } }"#;
    let gw = SshGateway::start(&sshd, chain, &["ssh-guard"], "");
    let file = sshd.dir.path().join("report.txt");
    std::fs::write(&file, "quarterly numbers\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = file.to_str().unwrap().as_bytes().to_vec();
    let (h, mut ch) = sftp_session(&gw, &sshd).await;
    let mut buf = Vec::new();
    // OPEN for reading is allowed; the host answers with a handle.
    let open = sftp_packet(3, 1, &[&path], &[0, 0, 0, 1, 0, 0, 0, 0]);
    ch.data(&open[..]).await.unwrap();
    let (kind, payload) = sftp_reply(&mut ch, &mut buf, 1).await;
    assert_eq!(kind, 102, "a handle: {payload:?}");
    let handle = payload[4..].to_vec();
    // FSETSTAT chmod 4777 on it: refused with permission denied (status 3).
    let chmod = sftp_packet(10, 2, &[&handle], &[0, 0, 0, 4, 0, 0, 0o7, 0o377]);
    ch.data(&chmod[..]).await.unwrap();
    let (kind, payload) = sftp_reply(&mut ch, &mut buf, 2).await;
    assert_eq!(
        (kind, &payload[..4]),
        (101, &[0, 0, 0, 3][..]),
        "{:?}",
        text(&payload)
    );
    // FSETSTAT size 0 (truncate): refused too.
    let truncate = sftp_packet(10, 3, &[&handle], &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    ch.data(&truncate[..]).await.unwrap();
    let (kind, payload) = sftp_reply(&mut ch, &mut buf, 3).await;
    assert_eq!(
        (kind, &payload[..4]),
        (101, &[0, 0, 0, 3][..]),
        "{:?}",
        text(&payload)
    );
    // A handle the host never gave: refused without asking the host.
    let forged = sftp_packet(10, 4, &[b"\0\0\0\x09"], &[0, 0, 0, 4, 0, 0, 0o7, 0o377]);
    ch.data(&forged[..]).await.unwrap();
    let (kind, payload) = sftp_reply(&mut ch, &mut buf, 4).await;
    assert_eq!(
        (kind, &payload[..4]),
        (101, &[0, 0, 0, 3][..]),
        "{:?}",
        text(&payload)
    );
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o644,
        "the mode changed"
    );
    assert_eq!(meta.len(), 18, "the file was truncated");
    let _ = ch.close().await;
    drop(h);
    let mut gw = gw;
    gw.stop();
    let audit = export(&gw);
    assert!(
        audit.contains(&format!("sftp setstat {}", file.display())),
        "{audit}"
    );
    assert!(
        audit.contains("sftp fsetstat"),
        "the unknown handle is audited"
    );
}

#[test]
fn refused_logins_and_targets() {
    let sshd = Sshd::start();
    // Pinned to another key: a mismatch refuses the session.
    let other = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(other.path().join("k"))
        .status()
        .unwrap();
    assert!(status.success());
    let other_pub = std::fs::read_to_string(other.path().join("k.pub")).unwrap();
    let wrong = other.path().join("known_hosts");
    let other_pub: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    std::fs::write(
        &wrong,
        format!("[127.0.0.1]:{} {}\n", sshd.port, other_pub.join(" ")),
    )
    .unwrap();
    let extra = ssh_target(
        "web-bad",
        &sshd,
        ALLOW,
        &format!("known_hosts = \"{}\"", wrong.display()),
    ) + &ssh_target(
        "web-fp",
        &sshd,
        ALLOW,
        &format!("host_key_fingerprint = \"{}\"", fingerprint(&sshd)),
    ) + "\n[targets.db]\nprotocol = \"postgres\"\npolicies = []\nallow_subjects = [\"*\"]\n[targets.db.postgres]\nhost = \"127.0.0.1\"\ndatabase = \"x\"\nuser = \"x\"\n";
    let mut gw = SshGateway::start(&sshd, ALLOW, &["allow-all"], &extra);
    let marker = sshd.dir.path().join("mismatch-marker");
    let cmd = format!("touch {}", marker.display());
    let o = gw.ssh("web-bad", &[], &[&cmd], None);
    assert_eq!(o.status.code(), Some(255), "{}", show(&o));
    assert!(
        text(&o.stderr).contains("does not match") || text(&o.stderr).contains("refused"),
        "{}",
        show(&o)
    );
    assert!(!marker.exists());
    // The fingerprint pin works.
    let o = gw.ssh("web-fp", &[], &["echo pinned"], None);
    assert_eq!(text(&o.stdout), "pinned\n", "{}", show(&o));
    // Wrong token, expired token, unknown target, a target of another protocol.
    for (token, target) in [
        ("not-a-token".to_string(), "web-1"),
        (expired_token(&gw), "web-1"),
        (gw.token("alice", &[], &[]), "nope"),
        (gw.token("alice", &[], &[]), "db"),
    ] {
        let o = gw.ssh_as(
            &token,
            target,
            &["-o", "NumberOfPasswordPrompts=1"],
            &["echo no"],
            None,
        );
        assert_eq!(o.status.code(), Some(255), "{target}: {}", show(&o));
        assert!(
            text(&o.stderr).contains("Permission denied"),
            "{}",
            show(&o)
        );
        assert!(o.stdout.is_empty());
    }
    // Refused logins are audited (PCI DSS 10.2.4), without the token.
    gw.stop();
    let audit = export(&gw);
    let refused: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("login-refused"))
        .collect();
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(
        refused
            .iter()
            .any(|l| l.contains("no ssh target named `nope`"))
    );
    assert!(
        refused
            .iter()
            .any(|l| l.contains("no ssh target named `db`"))
    );
    assert!(refused.iter().any(|l| l.contains("token rejected")));
    assert!(!audit.contains("not-a-token"));
}

fn fingerprint(sshd: &Sshd) -> String {
    let o = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(sshd.dir.path().join("host_ed25519.pub"))
        .output()
        .unwrap();
    text(&o.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

fn expired_token(gw: &SshGateway) -> String {
    use jsonwebtoken::{EncodingKey, Header};
    let secret = std::fs::read_to_string(gw.dir.path().join("secret")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "sub": "alice", "iss": common::ssh::ISSUER, "aud": common::ssh::AUDIENCE,
        "iat": now - 7200, "exp": now - 3600,
    });
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.trim_end().as_bytes()),
    )
    .unwrap()
}

/// Keys typed into `ssh -tt ARGS` (a terminal session unless ARGS run a command), each batch
/// after a pause so the one before has been answered.
fn typed(gw: &SshGateway, args: &[&str], keys: &[&str]) -> Output {
    let token = gw.token("alice", &["agent-7"], &[]);
    let mut cmd = gw.with_token("ssh", &token);
    cmd.args(["-tt", "-p", &gw.port.to_string(), "web-1@127.0.0.1"]);
    cmd.args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        std::thread::sleep(Duration::from_millis(1500));
        for k in keys {
            // The session may have ended (a refused command): the rest is not typed.
            if stdin
                .write_all(k.as_bytes())
                .and_then(|_| stdin.flush())
                .is_err()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(700));
        }
        stdin
    });
    let _stdin = writer.join().unwrap();
    child.wait_with_output().unwrap()
}

/// The gateway owns the line (issue 12.1): what the editor made of the keys is judged whole
/// and sent whole; keys typed while a command runs never reach it; history expansion and
/// programs that read the terminal are refused. The host's files and its ForceCommand log are
/// the ground truth.
#[test]
fn a_terminal_session_runs_only_judged_lines() {
    let (sshd, _logs, log) = logged_sshd();
    let mut gw = SshGateway::start(&sshd, GUARD, &["ssh-guard", "pci-mask"], "");
    let dir = sshd.dir.path().display().to_string();
    // Commands in a file the shell could be pointed at (`exec < file`): never read.
    std::fs::write(sshd.dir.path().join("cmds"), format!("touch {dir}/m4\n")).unwrap();
    let o = typed(
        &gw,
        &[],
        &[
            &format!("exec < {dir}/cmds\n"),
            "echo first-$((6*7))\n",
            // Edited into a denied line: the line judged is the line that would run.
            &format!("echo hi\x15touch {dir}/m1 && echo x > /etc/warden-tty-marker\n"),
            // Edited into a comment: nothing runs.
            &format!("touch {dir}/m2\x01# \n"),
            "echo card 4111111111111111\n",
            "cd /tmp\n",
            "echo !!\n",
            "for i in 1 2; do\n",
            "echo loop-$i; done\n",
            "vim /etc/passwd\n",
            "stty intr a\n",
            // Quoting does not hide stty (the attack's F1: istrip made the host read `»` as `;`).
            "st\"\"ty istrip\n",
            // The second attack: a trap run after the reset, and `exec` behind a variable.
            "set -T; trap 'stty istrip' RETURN\n",
            &format!("e=exec; $e 0<<<'touch {dir}/m5'\n"),
            // Set by a program the gateway cannot read: undone before the next line is read.
            "python3 -c 'import termios; a = termios.tcgetattr(0); a[0] |= termios.ISTRIP | termios.IUCLC; termios.tcsetattr(0, termios.TCSANOW, a)'\n",
            "printf 'got-%s\\n' »X\n",
            // A card number in the working directory is masked in the gateway's prompt too.
            &format!("mkdir -p {dir}/4111111111111111 && cd {dir}/4111111111111111\n"),
            "cd /tmp\n",
            // `read` gets no keys: what is typed meanwhile waits, and Ctrl-C drops it.
            "read x; echo got-$x\n",
            &format!("touch {dir}/m3\n"),
            "\x03",
            "echo after-$((2*3))\n",
            "exit\n",
        ],
    );
    let out = text(&o.stdout);
    let plain = strip_csi(&out);
    assert!(out.contains("first-42"), "{}", show(&o));
    assert!(out.contains("warden: denied"), "{}", show(&o));
    // The host's answer is masked; the client's own typing is echoed as typed (by the
    // gateway: the host does not echo).
    assert!(out.contains("card ************1111"), "{}", show(&o));
    // Typed in `echo card ...` and twice in `mkdir ... && cd ...`: nowhere else.
    assert_eq!(out.matches("4111111111111111").count(), 3, "{}", show(&o));
    assert!(plain.contains("web-1:/tmp$ "), "{plain}");
    assert!(out.contains("history expansion"), "{}", show(&o));
    assert!(out.contains("loop-1\r\nloop-2"), "{}", show(&o));
    assert!(out.contains("`vim` reads the terminal"), "{}", show(&o));
    assert_eq!(
        out.matches("line editing are the gateway's").count(),
        3,
        "{}",
        show(&o)
    );
    // ISTRIP and IUCLC, set by the program, were undone before this line was read.
    assert!(out.contains("got-»X\r\n"), "{}", show(&o));
    assert!(!plain.contains("4111111111111111$ "), "{plain}");
    assert!(plain.contains("1111$ "), "{plain}");
    // `read` never got a key: neither the typed line nor an empty one after Ctrl-C.
    assert!(
        !out.contains("got-touch") && !out.contains("got-\r"),
        "{}",
        show(&o)
    );
    assert!(out.contains("after-6"), "{}", show(&o));
    assert_eq!(
        out.matches("point the shell's input elsewhere").count(),
        2,
        "{}",
        show(&o)
    );
    for m in ["m1", "m2", "m3", "m4", "m5"] {
        assert!(
            !sshd.dir.path().join(m).exists(),
            "{m} was made: {}",
            show(&o)
        );
    }
    assert!(!std::path::Path::new("/etc/warden-tty-marker").exists());
    // The host ran one thing: the gateway's shell; every line went through it, judged.
    let ran = std::fs::read_to_string(&log).unwrap();
    assert_eq!(ran.matches("exec bash --noprofile").count(), 1, "{ran}");
    gw.stop();
    let audit = export(&gw);
    for judged in [
        "(interactive shell)",
        "echo first-$((6*7))",
        "/etc/warden-tty-marker",
        "# touch",
        "echo !!",
        "for i in 1 2; do",
        "vim /etc/passwd",
        "read x; echo got-$x",
    ] {
        assert!(audit.contains(judged), "`{judged}` not audited");
    }
    assert!(
        !audit.contains(&format!("touch {dir}/m3")),
        "type-ahead dropped by Ctrl-C was sent"
    );
    // The recording holds the session as the client saw it, masked.
    let (id, raw) = first_recording(&gw);
    assert!(raw.contains("\"type\":\"terminal\""), "{raw}");
    assert!(raw.contains("\"type\":\"input\""), "{raw}");
    assert!(!file_contains(&gw.audit_path(), "4111111111111111"));
    let db = gw.audit_path();
    let replay = gw.warden(&["replay", &id, "--db", db.to_str().unwrap(), "--no-wait"]);
    assert!(replay.status.success(), "{}", show(&replay));
    let replay = text(&replay.stdout);
    for shown in [
        "web-1:~$ echo first-$((6*7))",
        "first-42",
        "web-1:/tmp$ echo !!",
        "loop-2",
    ] {
        assert!(replay.contains(shown), "replay lacks `{shown}`: {replay}");
    }
    let cast = gw.dir.path().join("session.cast");
    let export = gw.warden(&[
        "replay",
        &id,
        "--db",
        db.to_str().unwrap(),
        "--asciicast",
        cast.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "{}", show(&export));
    let played = common::asciinema_cat(&cast);
    assert!(
        played.contains("first-42") && played.contains("warden: denied"),
        "{played}"
    );
}

/// A program the target names in `terminal_programs` gets the keys, recorded, run as itself
/// only; a shell started with a terminal (`ssh -t host bash`) is refused.
#[test]
fn named_terminal_programs_get_keys_and_exec_shells_get_whole_commands() {
    let sshd = Sshd::start();
    let mut gw = SshGateway::start(
        &sshd,
        GUARD,
        &["ssh-guard", "pci-mask"],
        "terminal_programs = [\"cat\"]\n",
    );
    let o = typed(
        &gw,
        &[],
        &[
            "cat\n",
            "typed-through\n",
            "\x03",
            "echo after-cat\n",
            "exit\n",
        ],
    );
    let out = text(&o.stdout);
    assert!(out.contains("typed-through"), "{}", show(&o));
    assert!(out.contains("after-cat"), "{}", show(&o));
    // `ssh -t host CMD`: a named program gets the keys, an editor not named is refused, and
    // any other command gets only the signal keys.
    let o = typed(&gw, &["cat"], &["keys-to-cat\n", "\x03"]);
    assert!(
        text(&o.stdout).contains("keys-to-cat\r\nkeys-to-cat"),
        "{}",
        show(&o)
    );
    let vimmed = sshd.dir.path().join("vimmed");
    let o = typed(
        &gw,
        &["vim", "/tmp/warden-notes"],
        &[&format!(":!touch {}\n", vimmed.display())],
    );
    assert!(
        text(&o.stdout).contains("`vim` reads the terminal"),
        "{}",
        show(&o)
    );
    assert!(!vimmed.exists());
    let o = typed(&gw, &["read x; echo got-$x"], &["secret\n", "\x03"]);
    assert!(!text(&o.stdout).contains("got-secret"), "{}", show(&o));
    // A shell started with a terminal would edit what it reads with its own line editor (a
    // `bind` macro turns a judged line into another): refused, nothing runs.
    let dir = sshd.dir.path().display().to_string();
    let o = typed(&gw, &["bash"], &[&format!("touch {dir}/t1\n"), "exit\n"]);
    assert!(
        text(&o.stdout).contains("a shell started with a terminal"),
        "{}",
        show(&o)
    );
    assert!(!sshd.dir.path().join("t1").exists());
    // A named terminal program runs only as itself: `env -u LESSSECURE less` would undo
    // what makes `less` safe to name.
    let o = typed(&gw, &["env", "-u", "X", "cat"], &["x\n", "\x03"]);
    assert!(
        text(&o.stdout).contains("runs only as itself"),
        "{}",
        show(&o)
    );
    gw.stop();
    let (_, raw) = first_recording(&gw);
    assert!(raw.contains("typed-through"), "{raw}");
}

/// `warden approvals ARGS` against `gw`'s admin API, as the approver bob.
fn approvals(gw: &SshGateway, args: &[&str]) -> Output {
    let admin = format!("http://127.0.0.1:{}", gw.admin_port);
    let approver = gw.token("bob", &[], &["approvers"]);
    std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["approvals", "--admin", &admin, "--token", &approver])
        .args(args)
        .output()
        .unwrap()
}

/// The id of the first pending approval, once there is one.
fn pending_id(gw: &SshGateway) -> String {
    for _ in 0..200 {
        let out = text(&approvals(gw, &["list"]).stdout);
        if let Some(id) = out.split_whitespace().find(|w| w.starts_with("apr-")) {
            return id.to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no pending approval appeared");
}

/// `line` run by alice over ssh on a thread (it may wait for an approver).
fn ssh_in_background(gw: &SshGateway, line: &str) -> std::thread::JoinHandle<Output> {
    let token = gw.token("alice", &["agent-7"], &[]);
    let line = line.to_string();
    let port = gw.port;
    let mut cmd = gw.with_token("ssh", &token);
    std::thread::spawn(move || {
        cmd.args(["-p", &port.to_string(), "web-1@127.0.0.1", &line]);
        run(cmd, None)
    })
}

#[test]
fn sudo_waits_for_an_approver() {
    let sshd = Sshd::start();
    let gw = SshGateway::start(&sshd, GUARD, &["ssh-guard", "pci-mask"], "");
    let marker = sshd.dir.path().join("sudo-marker");
    let line = format!(
        "sudo -n true 2>/dev/null; touch {}; echo ran",
        marker.display()
    );
    for (decision, reason) in [("approve", "maintenance window"), ("deny", "not now")] {
        let held = ssh_in_background(&gw, &line);
        let id = pending_id(&gw);
        assert!(!marker.exists(), "ran before approval");
        let o = approvals(&gw, &[decision, &id, "--reason", reason]);
        assert!(o.status.success(), "{}", show(&o));
        let o = held.join().unwrap();
        assert!(
            text(&o.stderr).contains("held for approval"),
            "{}",
            show(&o)
        );
        if decision == "approve" {
            assert_eq!(text(&o.stdout), "ran\n", "{}", show(&o));
            assert!(marker.exists());
            std::fs::remove_file(&marker).unwrap();
        } else {
            assert_eq!(o.status.code(), Some(126), "{}", show(&o));
            assert!(
                text(&o.stderr).contains("denied by bob: not now"),
                "{}",
                show(&o)
            );
            assert!(!marker.exists());
        }
    }
}

/// An sshd whose ForceCommand logs each command, with the time in nanoseconds, before it runs
/// it: the host's own record of what ran (`ran.log` in the returned directory).
fn logged_sshd() -> (Sshd, tempfile::TempDir, std::path::PathBuf) {
    let wrapper_dir = tempfile::tempdir().unwrap();
    let log = wrapper_dir.path().join("ran.log");
    let wrapper = wrapper_dir.path().join("wrapper.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\t%s\\n' \"$(date +%s%N)\" \"$SSH_ORIGINAL_COMMAND\" >> {log}\nexec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let sshd = Sshd::start_with(&format!("ForceCommand {}", wrapper.display()));
    (sshd, wrapper_dir, log)
}

#[test]
fn every_command_the_host_ran_was_audited_first() {
    let (sshd, _logs, log) = logged_sshd();
    let mut gw = SshGateway::start(&sshd, GUARD, &["ssh-guard", "pci-mask"], "");
    for line in [
        "echo one",
        "uname -s",
        "echo x > /etc/nope",
        "ls / | wc -l",
        "reboot",
        "echo 4111111111111111",
    ] {
        let _ = gw.ssh("web-1", &[], &[line], None);
    }
    gw.stop();
    let audit = export(&gw);
    let ran = std::fs::read_to_string(&log).unwrap();
    assert_eq!(ran.lines().count(), 4, "{ran}");
    assert!(
        !ran.contains("/etc/nope") && !ran.contains("reboot"),
        "{ran}"
    );
    for line in ran.lines() {
        let (nanos, command) = line.split_once('\t').unwrap();
        let ran_at: u128 = nanos.parse().unwrap();
        let command = warden::session::scrub(command);
        let event = audit
            .lines()
            .find(|l| {
                l.contains("\"type\":\"command\"")
                    && l.contains(&format!("\"command\":\"{command}\""))
            })
            .unwrap_or_else(|| panic!("no audit event for `{command}`"));
        let v: serde_json::Value = serde_json::from_str(event).unwrap();
        let time = v["event"]["time"].as_str().unwrap();
        let audited_at = humantime::parse_rfc3339(time)
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        assert!(
            audited_at < ran_at,
            "`{command}` ran before its audit event"
        );
    }
    assert!(!file_contains(&gw.audit_path(), "4111111111111111"));
}

/// Leaving the gateway behind, as the attack on issue 12 did: a key appended to
/// authorized_keys (then a direct login with no policy and no audit), a tunnel from the host
/// to its own sshd (`/dev/tcp`, `nc` as a ProxyCommand), writes through `/proc/self/root`, an
/// unknown wrapper, a Python program on stdin. The host's ForceCommand log is the ground truth:
/// none of them ran. Then the
/// quickstart's allowlist mode: read-only commands run, anything else waits for an approver,
/// and one denied never runs.
#[test]
fn persistence_tunnels_and_unknown_programs_never_reach_the_host() {
    let (sshd, _logs, log) = logged_sshd();
    let gw = SshGateway::start(&sshd, GUARD, &["ssh-guard", "pci-mask"], "");
    let port = sshd.port;
    let refused = [
        "echo 'ssh-ed25519 AAAA evil' >> ~/.ssh/authorized_keys".to_string(),
        format!("bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}; head -c 20 <&3'"),
        format!("nc 127.0.0.1 {port}"),
        "touch /proc/self/root/etc/warden-x".to_string(),
        "echo '* * * * * id' | crontab -".to_string(),
        "ln -s /etc /tmp/warden-etc".to_string(),
        // xargs runs what standard input names (the fourth attack's F3).
        "xargs env".to_string(),
    ];
    for line in &refused {
        let o = gw.ssh("web-1", &[], &[line], None);
        assert_eq!(o.status.code(), Some(126), "{line}: {}", show(&o));
        assert!(
            text(&o.stderr).contains("ssh-guard"),
            "{line}: {}",
            show(&o)
        );
    }
    // Another language's program on standard input waits for an approver; denied, it never
    // starts.
    let held = ssh_in_background(&gw, "python3 -");
    let id = pending_id(&gw);
    let o = approvals(&gw, &["deny", &id, "--reason", "no REPLs"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = held.join().unwrap();
    assert_eq!(o.status.code(), Some(126), "{}", show(&o));
    assert!(text(&o.stderr).contains("stdin_code"), "{}", show(&o));
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(ran.is_empty(), "the host ran: {ran}");
    assert!(!std::path::Path::new("/etc/warden-x").exists());
    assert!(!std::path::Path::new("/tmp/warden-etc").exists());

    // Allowlist mode: read-only commands run; a write waits, and one denied never runs.
    drop(gw);
    let allowlist =
        r#"{ module = "ssh-guard", config = { mode = "allowlist" } }, { module = "pci-mask" }"#;
    let gw = SshGateway::start(&sshd, allowlist, &["ssh-guard", "pci-mask"], "");
    let o = gw.ssh("web-1", &[], &["uname -s && ls / | wc -l"], None);
    assert!(o.status.success(), "{}", show(&o));
    assert!(text(&o.stdout).starts_with("Linux\n"), "{}", show(&o));
    let marker = sshd.dir.path().join("allowlist-marker");
    let held = ssh_in_background(&gw, &format!("touch {}", marker.display()));
    let id = pending_id(&gw);
    let listed = text(&approvals(&gw, &["list"]).stdout);
    assert!(listed.contains("allowlist"), "{listed}");
    let o = approvals(&gw, &["deny", &id, "--reason", "not on the list"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = held.join().unwrap();
    assert_eq!(o.status.code(), Some(126), "{}", show(&o));
    assert!(!marker.exists());
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ran.lines().count(), 1, "{ran}");
    assert!(ran.contains("uname -s"), "{ran}");
}

/// The gateway's host key (what clients must see) and the host's own (what they must not).
fn host_keys(gw: &SshGateway, sshd: &Sshd) -> (russh::keys::PublicKey, russh::keys::PublicKey) {
    let gw_key = russh::keys::load_secret_key(gw.dir.path().join("host_key"), None)
        .unwrap()
        .public_key()
        .clone();
    let host_key = russh::keys::PublicKey::from_openssh(&sshd.host_pub).unwrap();
    (gw_key, host_key)
}

/// A russh client: accepts the key it is given to expect.
struct Client {
    expect: russh::keys::PublicKey,
}

impl russh::client::Handler for Client {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(
            matches!(key, russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } if key.key_data() == self.expect.key_data()),
        )
    }
}

/// Run `command` over russh; (stdout, stderr, exit status).
async fn russh_exec(
    port: u16,
    expect: russh::keys::PublicKey,
    login: impl AsyncFnOnce(&mut russh::client::Handle<Client>) -> bool,
    command: &str,
) -> (Vec<u8>, Vec<u8>, Option<u32>) {
    let config = std::sync::Arc::new(russh::client::Config::default());
    let mut h = russh::client::connect(config, ("127.0.0.1", port), Client { expect })
        .await
        .unwrap();
    assert!(login(&mut h).await, "login refused");
    let mut ch = h.channel_open_session().await.unwrap();
    ch.exec(true, command).await.unwrap();
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), None);
    while let Some(msg) = ch.wait().await {
        match msg {
            russh::ChannelMsg::Data { data } => out.extend_from_slice(&data),
            russh::ChannelMsg::ExtendedData { data, ext: 1 } => err.extend_from_slice(&data),
            russh::ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            _ => {}
        }
    }
    (out, err, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_russh_client_gets_what_a_direct_connection_gets() {
    let sshd = Sshd::start();
    let gw = SshGateway::start(&sshd, ALLOW, &["allow-all"], "");
    // The client sees the gateway's host key, never the host's.
    let (gw_key, host_key) = host_keys(&gw, &sshd);
    assert_ne!(gw_key.key_data(), host_key.key_data());
    let token = gw.token("alice", &["agent-7"], &[]);
    let cmd = "echo out; seq 1 50000 | tail -1; echo err >&2; exit 5";
    let through = russh_exec(
        gw.port,
        gw_key.clone(),
        async |h| {
            h.authenticate_password("web-1", &token)
                .await
                .unwrap()
                .success()
        },
        cmd,
    )
    .await;
    let key = std::sync::Arc::new(russh::keys::load_secret_key(&sshd.gw_key, None).unwrap());
    let direct = russh_exec(
        sshd.port,
        host_key,
        async |h| {
            h.authenticate_publickey("root", russh::keys::PrivateKeyWithHashAlg::new(key, None))
                .await
                .unwrap()
                .success()
        },
        cmd,
    )
    .await;
    assert_eq!(through, direct);
    assert_eq!(through.2, Some(5));
    // The token as the answer of keyboard-interactive authentication.
    let kbd = russh_exec(
        gw.port,
        gw_key,
        async |h| {
            use russh::client::KeyboardInteractiveAuthResponse as R;
            let start = h
                .authenticate_keyboard_interactive_start("web-1", None::<String>)
                .await
                .unwrap();
            let R::InfoRequest { prompts, .. } = start else {
                return false;
            };
            assert_eq!(prompts.len(), 1);
            let done = h
                .authenticate_keyboard_interactive_respond(vec![token.clone()])
                .await
                .unwrap();
            matches!(done, R::Success)
        },
        cmd,
    )
    .await;
    assert_eq!(kbd, direct);
}

/// What a russh client saw on one channel.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    out: Vec<u8>,
    status: Option<u32>,
    signal: Option<String>,
}

/// Run `command` on a fresh channel and act on it meanwhile: `pty` asks for a 80x24 terminal
/// first, then after 300 ms the window becomes 100x40 and `signal` (if any) is sent.
async fn russh_channel(
    h: &russh::client::Handle<Client>,
    command: &str,
    pty: bool,
    signal: Option<russh::Sig>,
) -> Seen {
    let mut ch = h.channel_open_session().await.unwrap();
    if pty {
        ch.request_pty(true, "xterm", 80, 24, 0, 0, &[])
            .await
            .unwrap();
    }
    ch.exec(true, command).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    ch.window_change(100, 40, 0, 0).await.unwrap();
    if let Some(sig) = signal {
        ch.signal(sig).await.unwrap();
    }
    let mut seen = Seen::default();
    while let Some(msg) = ch.wait().await {
        match msg {
            russh::ChannelMsg::Data { data } => seen.out.extend_from_slice(&data),
            russh::ChannelMsg::ExitStatus { exit_status } => seen.status = Some(exit_status),
            russh::ChannelMsg::ExitSignal { signal_name, .. } => {
                seen.signal = Some(format!("{signal_name:?}"))
            }
            _ => {}
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_changes_signals_and_eof_pass_through_as_directly() {
    let sshd = Sshd::start();
    let gw = SshGateway::start(&sshd, ALLOW, &["allow-all"], "");
    let (gw_key, host_key) = host_keys(&gw, &sshd);
    let config = std::sync::Arc::new(russh::client::Config::default());
    let mut through = russh::client::connect(
        config.clone(),
        ("127.0.0.1", gw.port),
        Client { expect: gw_key },
    )
    .await
    .unwrap();
    let token = gw.token("alice", &["agent-7"], &[]);
    assert!(
        through
            .authenticate_password("web-1", &token)
            .await
            .unwrap()
            .success()
    );
    let mut direct = russh::client::connect(
        config,
        ("127.0.0.1", sshd.port),
        Client { expect: host_key },
    )
    .await
    .unwrap();
    let key = std::sync::Arc::new(russh::keys::load_secret_key(&sshd.gw_key, None).unwrap());
    assert!(
        direct
            .authenticate_publickey("root", russh::keys::PrivateKeyWithHashAlg::new(key, None))
            .await
            .unwrap()
            .success()
    );
    // Several channels on one connection, each compared with the direct connection.
    for (command, pty, signal) in [
        ("sleep 1; stty size", true, None),
        // Whatever the host does with a signal request (this sshd ignores it), the client
        // sees the same through Warden.
        ("sleep 2; echo after", false, Some(russh::Sig::TERM)),
        ("sleep 2; echo after", true, Some(russh::Sig::INT)),
        ("kill -TERM $$", false, None),
        ("echo ok; exit 3", false, None),
    ] {
        let a = russh_channel(&through, command, pty, signal.clone()).await;
        let b = russh_channel(&direct, command, pty, signal).await;
        assert_eq!(a, b, "{command}");
    }
    let resized = russh_channel(&through, "sleep 1; stty size", true, None).await;
    assert!(text(&resized.out).contains("40 100"), "{resized:?}");
}

#[test]
fn shutdown_ends_open_ssh_sessions_with_an_audited_end() {
    let sshd = Sshd::start();
    let mut gw = SshGateway::start(&sshd, GUARD, &["ssh-guard", "pci-mask"], "");
    let spawn = |remote: &str| {
        let token = gw.token("alice", &["agent-7"], &[]);
        let mut cmd = gw.with_token("ssh", &token);
        cmd.args(["-p", &gw.port.to_string(), "web-1@127.0.0.1", remote])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    // One command running, one held for an approver.
    let running = spawn("echo started; sleep 30");
    let held = spawn("sudo -n true");
    std::thread::sleep(Duration::from_millis(2000));
    let started = std::time::Instant::now();
    gw.stop();
    let running = running.wait_with_output().unwrap();
    let held = held.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a client outlived the gateway"
    );
    assert_eq!(text(&running.stdout), "started\n", "{}", show(&running));
    assert!(!running.status.success());
    assert!(
        text(&held.stderr).contains("held for approval"),
        "{}",
        show(&held)
    );
    assert!(
        text(&held.stderr).contains("shutting down"),
        "{}",
        show(&held)
    );
    assert!(!held.status.success());
    let audit = export(&gw);
    let ends = audit.matches("gateway shutting down").count();
    assert_eq!(ends, 2, "both sessions' ends are audited");
}
