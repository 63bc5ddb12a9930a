//! Moving one channel's bytes both ways once the host side is open: client input to the host
//! (line by line through the chain in a shell, operation by operation under SFTP), host output
//! to the client (masked line by line when a verdict said `mask`), window changes, signals, EOF,
//! exit status and exit signal passed on as they come. Output and submitted lines are recorded.

use super::channel::{finish, judge, stderr};
use super::output::Lines;
use super::sftp::{self, Packet};
use super::terminal::{Key, LineEditor};
use super::{Conn, REFUSED_EXIT};
use crate::policy::{Command, Decision, Verdict};
use crate::session::Ruling;
use russh::server::{Handle, Msg};
use russh::{Channel, ChannelMsg, client};
use std::sync::Arc;
use std::time::Duration;

/// How long a partial output line waits for its end before it is masked and sent anyway (a
/// prompt, a progress bar).
const PARTIAL_LINE_WAIT: Duration = Duration::from_millis(50);

/// What runs on the channel.
pub enum Mode {
    Exec,
    Shell(Box<LineEditor>),
    Sftp(Box<sftp::Reader>),
}

pub struct Relay {
    conn: Arc<Conn>,
    client: Channel<Msg>,
    server: Handle,
    up: Channel<client::Msg>,
    mode: Mode,
    /// The ruling whose `mask` applies to output (`seq`, decision), if any.
    mask: Option<(u64, Decision)>,
    lines: [Lines; 2],
    /// Output bytes still to be recorded for the current command.
    record_budget: usize,
    unrecorded: u64,
    crlf: bool,
    /// Client messages to handle before reading more.
    backlog: std::collections::VecDeque<ChannelMsg>,
    /// The last bytes of terminal output.
    tail: Vec<u8>,
}

/// Output bytes kept to recognise a prompt.
const TAIL: usize = 128;

/// Whether the terminal's last output is a password prompt (`Password:`, `[sudo] password for
/// x:`, `Enter passphrase for key ...:`), after which typed text is a secret.
fn at_password_prompt(tail: &[u8]) -> bool {
    let text = String::from_utf8_lossy(tail).to_lowercase();
    let last = text.rsplit(['\n', '\r']).next().unwrap_or("").trim_end();
    last.ends_with(':')
        && ["password", "passphrase", "passcode"]
            .iter()
            .any(|w| last.contains(w))
}

enum Flow {
    Go,
    End,
}

impl Relay {
    pub fn new(
        conn: Arc<Conn>,
        client: Channel<Msg>,
        server: Handle,
        up: Channel<client::Msg>,
        mode: Mode,
        ruling: Option<Ruling>,
    ) -> Relay {
        let max_line = conn.max_line();
        let record_budget = conn.recorded_output_budget();
        let crlf = matches!(mode, Mode::Shell(_));
        let mut relay = Relay {
            conn,
            client,
            server,
            up,
            mode,
            mask: None,
            lines: [Lines::new(max_line), Lines::new(max_line)],
            record_budget,
            unrecorded: 0,
            crlf,
            backlog: std::collections::VecDeque::new(),
            tail: Vec::new(),
        };
        if let Some(r) = ruling {
            relay.apply(&r);
        }
        relay
    }

    /// A new ruling's `mask` (or its absence) governs the output that follows.
    fn apply(&mut self, ruling: &Ruling) {
        if ruling.needs_mask() {
            self.mask = Some((ruling.seq, ruling.decision.clone()));
        } else if matches!(self.mode, Mode::Exec) {
            self.mask = None;
        }
        // In a shell, once a line's output had to be masked, later output stays masked: the
        // relay cannot tell which command's output a byte belongs to.
    }

    /// Relay until either side closes; `held` is client input that arrived while the command
    /// waited for approval, relayed first.
    pub async fn run(mut self, held: Vec<ChannelMsg>) {
        self.backlog.extend(held);
        loop {
            if let Some(msg) = self.backlog.pop_front() {
                if let Flow::End = self.on_client(Some(msg)).await {
                    break;
                }
                continue;
            }
            let partial = self.mask.is_some() && self.lines.iter().any(Lines::can_flush);
            let flow = tokio::select! {
                msg = self.client.wait() => self.on_client(msg).await,
                msg = self.up.wait() => self.on_host(msg).await,
                _ = tokio::time::sleep(PARTIAL_LINE_WAIT), if partial => self.flush_partial(false).await,
            };
            if matches!(flow, Flow::End) {
                break;
            }
        }
        if self.unrecorded > 0 {
            self.conn.recorder.notice(&format!(
                "{} more output bytes were shown but not recorded",
                self.unrecorded
            ));
        }
    }

    async fn on_client(&mut self, msg: Option<ChannelMsg>) -> Flow {
        match msg {
            Some(ChannelMsg::Data { data }) => match &mut self.mode {
                Mode::Exec => self.send_host(&data).await,
                Mode::Shell(editor) => {
                    let keys = editor.feed(&data);
                    for key in keys {
                        if let Flow::End = self.key(key).await {
                            return Flow::End;
                        }
                    }
                    Flow::Go
                }
                Mode::Sftp(reader) => match reader.push(&data) {
                    Ok(packets) => {
                        for p in packets {
                            if let Flow::End = self.sftp_packet(p).await {
                                return Flow::End;
                            }
                        }
                        Flow::Go
                    }
                    Err(e) => {
                        tracing::info!("sftp: {e}");
                        let _ = self.up.close().await;
                        finish(&self.client, REFUSED_EXIT).await;
                        Flow::End
                    }
                },
            },
            Some(ChannelMsg::Eof) => {
                let _ = self.up.eof().await;
                Flow::Go
            }
            Some(ChannelMsg::WindowChange {
                col_width,
                row_height,
                pix_width,
                pix_height,
            }) => {
                self.conn.recorder.resize(col_width, row_height);
                let _ = self
                    .up
                    .window_change(col_width, row_height, pix_width, pix_height)
                    .await;
                Flow::Go
            }
            Some(ChannelMsg::Signal { signal }) => {
                let _ = self.up.signal(signal).await;
                Flow::Go
            }
            Some(ChannelMsg::Close) | None => {
                let _ = self.up.close().await;
                Flow::End
            }
            Some(_) => Flow::Go,
        }
    }

    async fn on_host(&mut self, msg: Option<ChannelMsg>) -> Flow {
        match msg {
            Some(ChannelMsg::Data { data }) => self.output(false, &data).await,
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => self.output(true, &data).await,
            Some(ChannelMsg::Eof) => {
                if let Flow::End = self.flush_partial(true).await {
                    return Flow::End;
                }
                let _ = self.client.eof().await;
                Flow::Go
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                if let Flow::End = self.flush_partial(true).await {
                    return Flow::End;
                }
                self.conn.recorder.exit(Some(exit_status), None);
                let _ = self.client.exit_status(exit_status).await;
                Flow::Go
            }
            Some(ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            }) => {
                if let Flow::End = self.flush_partial(true).await {
                    return Flow::End;
                }
                self.conn
                    .recorder
                    .exit(None, Some(&format!("{signal_name:?}")));
                let _ = self
                    .server
                    .exit_signal_request(
                        self.client.id(),
                        signal_name,
                        core_dumped,
                        error_message,
                        lang_tag,
                    )
                    .await;
                Flow::Go
            }
            Some(ChannelMsg::Close) | None => {
                let _ = self.flush_partial(true).await;
                let _ = self.client.close().await;
                Flow::End
            }
            Some(_) => Flow::Go,
        }
    }

    async fn send_host(&mut self, data: &[u8]) -> Flow {
        match self.up.data(data).await {
            Ok(()) => Flow::Go,
            Err(_) => {
                let _ = self.client.close().await;
                Flow::End
            }
        }
    }

    /// Host output: masked by lines when a verdict said so, then sent and recorded.
    async fn output(&mut self, is_stderr: bool, data: &[u8]) -> Flow {
        let Some((seq, decision)) = &self.mask else {
            return self.send(is_stderr, data.to_vec()).await;
        };
        let lines = self.lines[usize::from(is_stderr)].push(data);
        if lines.is_empty() {
            return Flow::Go;
        }
        let (seq, decision) = (*seq, decision.clone());
        self.masked(seq, &decision, is_stderr, lines).await
    }

    async fn masked(
        &mut self,
        seq: u64,
        decision: &Decision,
        is_stderr: bool,
        lines: Vec<Vec<u8>>,
    ) -> Flow {
        match self.conn.mask(seq, decision, is_stderr, lines).await {
            Ok(bytes) => self.send(is_stderr, bytes).await,
            Err(refused) => {
                // Fail closed: nothing of the batch is sent, and the command is stopped.
                let msg = format!("warden: output refused: {}", refused.0);
                let _ = stderr(&self.conn, &self.client, &msg, self.crlf).await;
                let _ = self.up.close().await;
                finish(&self.client, REFUSED_EXIT).await;
                Flow::End
            }
        }
    }

    /// Send held partial lines: after a pause (`at_end` false) only what cannot be part of a
    /// number; at EOF, exit or close, everything.
    async fn flush_partial(&mut self, at_end: bool) -> Flow {
        let Some((seq, decision)) = self.mask.clone() else {
            return Flow::Go;
        };
        for is_stderr in [false, true] {
            if let Some(partial) = self.lines[usize::from(is_stderr)].take_partial(at_end)
                && let Flow::End = self.masked(seq, &decision, is_stderr, vec![partial]).await
            {
                return Flow::End;
            }
        }
        Flow::Go
    }

    async fn send(&mut self, is_stderr: bool, bytes: Vec<u8>) -> Flow {
        if bytes.is_empty() {
            return Flow::Go;
        }
        if matches!(self.mode, Mode::Shell(_)) {
            // The end of what the terminal shows, to tell a password prompt.
            self.tail
                .extend_from_slice(&bytes[bytes.len().saturating_sub(TAIL)..]);
            let excess = self.tail.len().saturating_sub(TAIL);
            self.tail.drain(..excess);
        }
        let keep = bytes.len().min(self.record_budget);
        if !matches!(self.mode, Mode::Sftp(_)) {
            self.conn.recorder.output(is_stderr, &bytes[..keep]);
            self.record_budget -= keep;
            self.unrecorded += (bytes.len() - keep) as u64;
        }
        let sent = if is_stderr {
            self.client.extended_data(1, &bytes[..]).await
        } else {
            self.client.data(&bytes[..]).await
        };
        match sent {
            Ok(()) => Flow::Go,
            Err(_) => {
                let _ = self.up.close().await;
                Flow::End
            }
        }
    }

    /// A keystroke batch in a shell: forwarded, or (Enter) checked first.
    async fn key(&mut self, key: Key) -> Flow {
        match key {
            Key::Forward(bytes) => self.send_host(&bytes).await,
            Key::Submit {
                line,
                uncertain,
                enter,
            } => {
                if line.trim().is_empty() {
                    return self.send_host(&enter).await;
                }
                // A line typed at a password prompt is still checked (a fake prompt must not
                // open a way around the chain), but its text is kept out of the audit trail and
                // the recording.
                let secret = at_password_prompt(&self.tail);
                let shown = if secret {
                    "(typed at a password prompt; not recorded)".to_string()
                } else {
                    line.clone()
                };
                let allowed = if uncertain {
                    let reason = "warden: this line was edited with keys the gateway cannot follow \
                                  (history, completion, cursor movement); type it out in full";
                    let _ = self.conn.refuse(&shown, "shell", reason).await;
                    let _ = stderr(&self.conn, &self.client, reason, true).await;
                    None
                } else {
                    let command = Command::Shell(crate::command::shell(&line, true));
                    let judged =
                        judge(&self.conn, &mut self.client, &shown, command, self.crlf).await;
                    if judged.closed {
                        let _ = self.up.close().await;
                        return Flow::End;
                    }
                    self.backlog.extend(judged.held);
                    judged.ruling
                };
                match allowed {
                    Some(ruling) => {
                        self.conn.recorder.input(&format!("{shown}\r"));
                        self.apply(&ruling);
                        // A new command: its output gets a fresh recording budget.
                        self.record_budget = self.conn.recorded_output_budget();
                        self.send_host(&enter).await
                    }
                    // Abandon the typed line on the host: Ctrl-C clears it in any shell.
                    None => self.send_host(b"\x03").await,
                }
            }
        }
    }

    /// One SFTP request: forwarded, or checked first.
    async fn sftp_packet(&mut self, packet: Packet) -> Flow {
        match packet {
            Packet::Forward(bytes) => self.send_host(&bytes).await,
            Packet::Unsupported { id, name } => {
                let reason = format!("warden: the sftp extension `{name}` cannot be checked");
                let _ = self
                    .conn
                    .refuse(&format!("sftp extended {name}"), "sftp:extended", &reason)
                    .await;
                self.sftp_reply(sftp::status(id, sftp::OP_UNSUPPORTED, &reason))
                    .await
            }
            Packet::Check { id, op, bytes } => {
                let text = Command::File(op.clone()).text();
                let ruling = match self.conn.decide(&text, Command::File(op)).await {
                    Ok(r) => r,
                    Err(e) => {
                        let reason = format!("warden: refused: {e}");
                        return self
                            .sftp_reply(sftp::status(id, sftp::PERMISSION_DENIED, &reason))
                            .await;
                    }
                };
                let refusal = match &ruling.decision.verdict {
                    Verdict::Allow => None,
                    // File transfers are bytes, not rows: a `mask` cannot be honoured.
                    Verdict::Mask => Some(format!(
                        "warden: {} asked to mask a file transfer, which cannot be masked",
                        ruling.decision.display_reason()
                    )),
                    Verdict::Deny(_) => Some(format!(
                        "warden: denied: {}",
                        ruling.decision.display_reason()
                    )),
                    Verdict::RequireApproval(_) => Some(format!(
                        "warden: needs approval, which sftp cannot wait for; run it with ssh: {}",
                        ruling.decision.display_reason()
                    )),
                };
                match refusal {
                    None => self.send_host(&bytes).await,
                    Some(reason) => {
                        self.conn.recorder.error(&reason);
                        self.sftp_reply(sftp::status(id, sftp::PERMISSION_DENIED, &reason))
                            .await
                    }
                }
            }
        }
    }

    async fn sftp_reply(&mut self, bytes: Vec<u8>) -> Flow {
        match self.client.data(&bytes[..]).await {
            Ok(()) => Flow::Go,
            Err(_) => {
                let _ = self.up.close().await;
                Flow::End
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::at_password_prompt;

    #[test]
    fn password_prompts_are_recognised() {
        for prompt in [
            "[sudo] password for alice: ",
            "Password:",
            "last line\r\nEnter passphrase for key '/root/.ssh/id': ",
        ] {
            assert!(at_password_prompt(prompt.as_bytes()), "{prompt}");
        }
        for prompt in ["root@web-1:~# ", "password changed\r\n$ ", "Name: "] {
            assert!(!at_password_prompt(prompt.as_bytes()), "{prompt}");
        }
    }
}
