//! One session channel: collect pty and env requests, then judge what the client starts. An
//! `exec` line is a command for the chain before anything runs upstream; a `shell` is checked
//! as an interactive session, then line by line; the `sftp` subsystem operation by operation.
//! Refusals reach the client the way a failing command would: a reason on stderr and a
//! non-zero exit status.

use super::downstream::Shared;
use super::relay::{self, Mode};
use super::{Conn, REFUSED_EXIT, UNREACHABLE_EXIT};
use crate::approvals::ApprovalOutcome;
use crate::policy::{Command, Verdict};
use crate::session::Ruling;
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
                let line = String::from_utf8_lossy(&command).into_owned();
                let start = Start::Exec { line, raw: command };
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
        for (k, v) in env {
            ok &= up.set_env(false, k, v).await.is_ok();
        }
        let mode = match self {
            Start::Exec { raw, .. } => {
                ok &= up.exec(false, raw).await.is_ok();
                Mode::Exec
            }
            Start::Shell => {
                ok &= up.request_shell(false).await.is_ok();
                Mode::Shell(Box::default())
            }
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
        let shared = Shared::new(conn, client, up, server, id, pty.is_some(), sftp);
        relay::run(shared, rx, up_rx, mode, ruling, held).await;
    }
}

/// What came of judging one command.
pub(super) struct Judged {
    /// The ruling, when the command may run.
    pub ruling: Option<Ruling>,
    /// Client messages that arrived while the command waited for an approver (stdin data, EOF,
    /// window changes), to be relayed once it runs.
    pub held: Vec<ChannelMsg>,
    /// The client went away meanwhile (the approval request was withdrawn).
    pub closed: bool,
}

/// Ask the chain about one command; no ruling when it may not run (the client has been told
/// why). A held command waits here for its approver, while the client may still send input
/// (kept for later) or leave (which withdraws the request).
pub(super) async fn judge(
    conn: &Conn,
    client: &ClientTx,
    rx: &mut ClientRx,
    text: &str,
    command: Command,
    crlf: bool,
) -> Judged {
    let mut judged = Judged {
        ruling: None,
        held: Vec::new(),
        closed: false,
    };
    let ruling = match conn.decide(text, command).await {
        Ok(r) => r,
        Err(e) => {
            let _ = stderr(conn, client, &format!("warden: refused: {e}"), crlf).await;
            return judged;
        }
    };
    match &ruling.decision.verdict {
        Verdict::Allow | Verdict::Mask => judged.ruling = Some(ruling),
        Verdict::Deny(_) => {
            let msg = format!("warden: denied: {}", ruling.decision.display_reason());
            let _ = stderr(conn, client, &msg, crlf).await;
        }
        Verdict::RequireApproval(_) => {
            let pending = match conn.request_approval(text, &ruling).await {
                Ok(p) => p,
                Err(e) => {
                    let msg = format!("warden: cannot hold for approval: {e}");
                    let _ = stderr(conn, client, &msg, crlf).await;
                    return judged;
                }
            };
            let id = pending.id.clone();
            let notice = format!(
                "warden: held for approval {id}: {}; waiting for an approver \
                 (warden approvals approve {id} --reason \"...\")",
                ruling.decision.display_reason()
            );
            let _ = stderr(conn, client, &notice, crlf).await;
            let wait = pending.wait();
            tokio::pin!(wait);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut wait => break outcome,
                    // Shutting down: the request is withdrawn and the command never runs.
                    _ = conn.gw.lifecycle().stopping() => {
                        let msg = format!("warden: approval {id} withdrawn: warden is shutting down");
                        let _ = stderr(conn, client, &msg, crlf).await;
                        return judged;
                    }
                    msg = rx.wait() => match msg {
                        Some(ChannelMsg::Close) | None => {
                            // Dropping the wait withdraws the request.
                            judged.closed = true;
                            return judged;
                        }
                        // Ctrl-C in a terminal abandons the held line.
                        Some(ChannelMsg::Data { data }) if crlf && data.contains(&0x03) => {
                            let msg = format!("warden: approval {id} withdrawn");
                            let _ = stderr(conn, client, &msg, crlf).await;
                            return judged;
                        }
                        Some(msg) => judged.held.push(msg),
                    },
                }
            };
            conn.note_approval(&outcome).await;
            match outcome {
                ApprovalOutcome::Approved { approver, .. } => {
                    let msg = format!("warden: approval {id} granted by {approver}");
                    let _ = stderr(conn, client, &msg, crlf).await;
                    judged.ruling = Some(ruling);
                }
                ApprovalOutcome::Denied { approver, reason } => {
                    let msg = format!("warden: approval {id} denied by {approver}: {reason}");
                    let _ = stderr(conn, client, &msg, crlf).await;
                }
                ApprovalOutcome::TimedOut => {
                    let msg = format!("warden: approval {id} timed out");
                    let _ = stderr(conn, client, &msg, crlf).await;
                }
            }
        }
    }
    judged
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
