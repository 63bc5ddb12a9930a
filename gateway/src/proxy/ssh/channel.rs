//! One session channel: collect pty and env requests, then judge what the client starts. An
//! `exec` line is a command for the chain before anything runs upstream; a `shell` is checked
//! as an interactive session, then line by line; the `sftp` subsystem operation by operation.
//! Refusals reach the client the way a failing command would: a reason on stderr and a
//! non-zero exit status.

use super::downstream::Shared;
use super::relay::{self, Keys, Mode};
use super::{Conn, REFUSED_EXIT, UNREACHABLE_EXIT};
use crate::policy::Command;
use crate::session::{Client, Ending, Interrupt, Judged, Refused, Ruling};
use russh::server::{Handle, Msg};
use russh::{Channel, ChannelMsg, Pty};
use std::sync::Arc;

/// The client's side of a channel, split: reading and writing go on in different tasks.
pub type ClientTx = russh::ChannelWriteHalf<Msg>;
pub type ClientRx = russh::ChannelReadHalf;

/// A pty as the client asked for it.
#[derive(Debug, Clone)]
pub struct PtyRequest {
    pub term: String,
    pub cols: u32,
    pub rows: u32,
    pub pix_width: u32,
    pub pix_height: u32,
    pub modes: Vec<(Pty, u32)>,
}

/// Run one session channel to its end.
pub async fn run(conn: Arc<Conn>, mut client: Channel<Msg>, server: Handle) {
    let id = client.id();
    let mut pty: Option<PtyRequest> = None;
    let mut env: Vec<(String, String)> = Vec::new();
    while let Some(msg) = client.wait().await {
        match msg {
            ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                pix_width,
                pix_height,
                terminal_modes,
                ..
            } => {
                pty = Some(PtyRequest {
                    term,
                    cols: col_width,
                    rows: row_height,
                    pix_width,
                    pix_height,
                    modes: terminal_modes,
                });
                let _ = server.channel_success(id).await;
            }
            ChannelMsg::SetEnv {
                variable_name,
                variable_value,
                ..
            } => {
                // Passed on; the host's AcceptEnv decides (clients get no error either way).
                env.push((variable_name, variable_value));
                let _ = server.channel_success(id).await;
            }
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                ..
            } => {
                if let Some(p) = &mut pty {
                    p.cols = col_width;
                    p.rows = row_height;
                }
            }
            ChannelMsg::Exec { command, .. } => {
                let _ = server.channel_success(id).await;
                // Judged and run as the host's shell reads it (`bash -c`): continuations
                // removed, NUL bytes dropped, so no reader can take the line otherwise.
                let raw = super::script::normalise(&command);
                let line = String::from_utf8_lossy(&raw).into_owned();
                let start = Start::Exec { line, raw };
                return start.run(conn, client, server, pty, env).await;
            }
            ChannelMsg::RequestShell { .. } => {
                let _ = server.channel_success(id).await;
                return Start::Shell.run(conn, client, server, pty, env).await;
            }
            ChannelMsg::RequestSubsystem { name, .. } => {
                if name == "sftp" {
                    let _ = server.channel_success(id).await;
                    return Start::Sftp.run(conn, client, server, pty, env).await;
                }
                let _ = conn
                    .session
                    .refuse(
                        &format!("subsystem {name}"),
                        "subsystem",
                        "warden: only the sftp subsystem is supported",
                    )
                    .await;
                let _ = server.channel_failure(id).await;
            }
            // X11 forwarding is not carried (agent forwarding is refused by the handler).
            ChannelMsg::RequestX11 { .. } => {
                let _ = server.channel_failure(id).await;
            }
            ChannelMsg::Eof | ChannelMsg::Close => return,
            _ => {}
        }
    }
}

/// What the client started on the channel.
enum Start {
    Exec { line: String, raw: Vec<u8> },
    Shell,
    Sftp,
}

impl Start {
    async fn run(
        self,
        conn: Arc<Conn>,
        client: Channel<Msg>,
        server: Handle,
        pty: Option<PtyRequest>,
        env: Vec<(String, String)>,
    ) {
        let id = client.id();
        let (mut rx, client) = client.split();
        let recorder = conn.recorder.clone();
        if let Some(p) = &pty {
            recorder.terminal(p.cols, p.rows, &p.term);
        }
        // Environment requests (`SetEnv`, `SendEnv`) change what the command runs with (`LANG`
        // changes how a line is read; `BASH_ENV` runs a file): each is judged, and audited, as
        // the `export` that would set it; only allowed ones are passed on.
        let mut allowed_env = Vec::new();
        let mut held_early = Vec::new();
        for (name, value) in env {
            let line = format!("export {name}={}", shell_words::quote(&value));
            let identifier = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !identifier {
                let why = "warden: an environment variable whose name is not an identifier";
                let _ = conn.session.refuse(&line, "env", why).await;
                continue;
            }
            let command = Command::Shell(crate::command::shell(&line, false));
            let judged = judge(&conn, &client, &mut rx, &line, command, pty.is_some()).await;
            if judged.closed {
                return;
            }
            held_early.extend(judged.held);
            if judged.ruling.is_some() {
                allowed_env.push((name, value));
            }
        }
        // The exec line, or the interactive session itself, is judged before the host sees
        // anything. SFTP is judged per operation.
        let opening = match &self {
            Start::Exec { line, .. } => Some((line.as_str(), crate::command::shell(line, false))),
            Start::Shell => Some(("(interactive shell)", crate::command::shell("", true))),
            Start::Sftp => None,
        };
        let (ruling, held) = match opening {
            None => (None, Vec::new()),
            Some((text, command)) => {
                let crlf = pty.is_some();
                let judged =
                    judge(&conn, &client, &mut rx, text, Command::Shell(command), crlf).await;
                if judged.closed {
                    return;
                }
                match judged.ruling {
                    Some(r) => (Some(r), judged.held),
                    None => return finish(&client, REFUSED_EXIT).await,
                }
            }
        };
        held_early.extend(held);
        let held = held_early;
        // A command run with a terminal gets keys only when the target names it as a terminal
        // program (a program that reads the terminal may run commands of its own: `vim`'s
        // `:!`); a known one not named is refused rather than left waiting for keys.
        // A shell started with a terminal (`ssh -t host bash`, `sudo -i`) would read what the
        // gateway sends with its own line editor, where a `bind` macro or `~/.inputrc` turns a
        // judged line into another: refused; `ssh TARGET` gives the gateway's editor.
        let mut keys = Keys::All;
        if let (Start::Exec { line, .. }, Some(_)) = (&self, &pty) {
            let refused = if crate::command::shell::reads_commands_from_stdin(line) {
                Err(
                    "a shell started with a terminal would edit what it reads itself; use \
                     `ssh TARGET` for an interactive shell (the gateway's editor), or pipe \
                     commands without -t"
                        .to_string(),
                )
            } else {
                super::terminal::terminal_program(line, conn.terminal_programs())
            };
            keys = match refused {
                Ok(true) => Keys::Recorded,
                Ok(false) => Keys::Signals,
                Err(why) => {
                    let why = format!("warden: {why}");
                    let _ = conn.session.refuse(line, "shell", &why).await;
                    let _ = stderr(&conn, &client, &why, true).await;
                    return finish(&client, REFUSED_EXIT).await;
                }
            };
        }
        let upstream = match conn.upstream().await {
            Ok(u) => u,
            Err(e) => {
                let _ = stderr(
                    &conn,
                    &client,
                    &format!("warden: cannot reach {}: {e}", conn.target),
                    pty.is_some(),
                )
                .await;
                return finish(&client, UNREACHABLE_EXIT).await;
            }
        };
        let up = match upstream.channel_open_session().await {
            Ok(c) => c,
            Err(e) => {
                let _ = stderr(
                    &conn,
                    &client,
                    &format!("warden: {}: {e}", conn.target),
                    pty.is_some(),
                )
                .await;
                return finish(&client, UNREACHABLE_EXIT).await;
            }
        };
        let mut ok = true;
        if let Some(p) = &pty {
            ok &= up
                .request_pty(
                    false,
                    &p.term,
                    p.cols,
                    p.rows,
                    p.pix_width,
                    p.pix_height,
                    &p.modes,
                )
                .await
                .is_ok();
        }
        for (k, v) in allowed_env {
            ok &= up.set_env(false, k, v).await.is_ok();
        }
        let mut markers = None;
        let mode = match self {
            // A shell that reads its commands from stdin gets each command judged whole and
            // sent whole (`script.rs`); with a terminal, keys are held until Enter.
            Start::Exec { raw, line } => {
                ok &= up.exec(false, raw).await.is_ok();
                if crate::command::shell::reads_commands_from_stdin(&line) {
                    Mode::Script(Box::default())
                } else {
                    Mode::Exec(keys)
                }
            }
            // With a terminal, the gateway owns the line: the host runs the gateway's bash,
            // whose prompts are markers (`prompt.rs`, `terminal.rs`).
            Start::Shell => match &pty {
                Some(p) => {
                    let m = super::prompt::Markers::new();
                    ok &= up.exec(false, m.shell_command()).await.is_ok();
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    markers = Some((m, tx));
                    let term = super::terminal::Terminal::new(&conn.target, p.cols);
                    Mode::Terminal(Box::new(term), rx)
                }
                None => {
                    ok &= up.request_shell(false).await.is_ok();
                    Mode::Script(Box::default())
                }
            },
            Start::Sftp => {
                ok &= up.request_subsystem(false, "sftp").await.is_ok();
                Mode::Sftp(Box::default())
            }
        };
        if !ok {
            let _ = stderr(
                &conn,
                &client,
                &format!("warden: {} closed the channel", conn.target),
                pty.is_some(),
            )
            .await;
            return finish(&client, UNREACHABLE_EXIT).await;
        }
        let (up_rx, up) = up.split();
        let sftp = matches!(mode, Mode::Sftp(_));
        let mut shared = Shared::new(conn, client, up, server, id, pty.is_some(), sftp);
        if let Some((m, tx)) = markers {
            shared.watch_prompts(m, tx);
        }
        relay::run(shared, rx, up_rx, mode, ruling, held).await;
    }
}

/// What came of judging one command.
pub(super) struct Judgement {
    /// The ruling, when the command may run.
    pub ruling: Option<Ruling>,
    /// Client messages that arrived while the command waited for an approver (stdin data, EOF,
    /// window changes), to be relayed once it runs.
    pub held: Vec<ChannelMsg>,
    /// The client went away meanwhile (the approval request was withdrawn).
    pub closed: bool,
}

/// The SSH client as the one judge speaks to it: refusals and notices are lines on stderr (or
/// the terminal), recorded as shown; a client waiting for an approver may keep typing (kept
/// for later), press Ctrl-C in a terminal (withdraws), or close the channel.
struct SshClient<'a> {
    conn: &'a Conn,
    client: &'a ClientTx,
    rx: &'a mut ClientRx,
    crlf: bool,
    held: Vec<ChannelMsg>,
}

impl Client for SshClient<'_> {
    async fn refused(&mut self, _why: Refused, message: &str) {
        let _ = stderr(self.conn, self.client, message, self.crlf).await;
    }

    async fn notice(&mut self, message: &str, hint: Option<&str>) {
        let line = match hint {
            Some(h) => format!("{message} ({h})"),
            None => message.to_string(),
        };
        let _ = stderr(self.conn, self.client, &line, self.crlf).await;
    }

    async fn interrupted(&mut self) -> Interrupt {
        loop {
            match self.rx.wait().await {
                Some(ChannelMsg::Close) | None => return Interrupt::Gone,
                // Ctrl-C in a terminal abandons the held line.
                Some(ChannelMsg::Data { data }) if self.crlf && data.contains(&0x03) => {
                    return Interrupt::Cancel;
                }
                Some(msg) => self.held.push(msg),
            }
        }
    }
}

/// Judge one command through the session path's one judge; no ruling when it may not run
/// (the client has been told why).
pub(super) async fn judge(
    conn: &Conn,
    client: &ClientTx,
    rx: &mut ClientRx,
    text: &str,
    command: Command,
    crlf: bool,
) -> Judgement {
    let mut ssh = SshClient {
        conn,
        client,
        rx,
        crlf,
        held: Vec::new(),
    };
    let judged = conn.session.judge(text, &[command], &mut ssh).await;
    let mut out = Judgement {
        ruling: None,
        held: std::mem::take(&mut ssh.held),
        closed: false,
    };
    match judged {
        Judged::Forward(ruling) => out.ruling = Some(ruling),
        Judged::Refused => {}
        Judged::End(Ending::ClientGone) => out.closed = true,
        Judged::End(Ending::Shutdown) => {
            let msg = "warden: approval withdrawn: warden is shutting down";
            let _ = stderr(conn, client, msg, crlf).await;
        }
        Judged::End(Ending::Fatal(e)) => {
            let _ = stderr(conn, client, &format!("warden: {e}"), crlf).await;
        }
    }
    out
}

/// A line for the client: on stderr, or in a terminal on the terminal itself (as the host's
/// own messages are: a pty has one stream), starting on a line of its own (the user's line was
/// echoed without its Enter) and ending in CR LF. Recorded as shown.
pub(super) async fn stderr(
    conn: &Conn,
    client: &ClientTx,
    line: &str,
    pty: bool,
) -> Result<(), russh::Error> {
    if pty {
        let text = format!("\r\n{line}\r\n");
        conn.recorder.output(false, text.as_bytes());
        client.data(text.as_bytes()).await
    } else {
        let text = format!("{line}\n");
        conn.recorder.output(true, text.as_bytes());
        client.extended_data(1, text.as_bytes()).await
    }
}

/// End the channel with an exit status.
pub(super) async fn finish(client: &ClientTx, status: u32) {
    let _ = client.exit_status(status).await;
    let _ = client.eof().await;
    let _ = client.close().await;
}
