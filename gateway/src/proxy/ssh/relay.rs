//! Client → host: what the client sends, passed on once it may be. Exec input goes straight
//! through; in a shell each line is checked at Enter; under SFTP each file operation is checked.
//! Window changes, signals and EOF are passed on. The host → client direction runs in its own
//! task (`downstream.rs`), so neither direction waits on the other.

use super::REFUSED_EXIT;
use super::channel::{ClientRx, judge, stderr};
use super::downstream::{self, Shared};
use super::sftp::{self, Packet};
use super::terminal::{Key, LineEditor};
use crate::policy::Command;
use crate::session::{Judged, OneShot, Ruling};
use russh::ChannelMsg;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// How long the host side may take to wind down after the client closed.
const HOST_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What runs on the channel.
pub enum Mode {
    Exec,
    Shell(Box<LineEditor>),
    Sftp(Box<sftp::Reader>),
}

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

/// Relay a channel both ways until it closes. `ruling` is the one the command ran under (its
/// `mask` applies to the output); `held` is client input that arrived while it waited for
/// approval, passed on first.
pub async fn run(
    shared: Shared,
    rx: ClientRx,
    up_rx: russh::ChannelReadHalf,
    mode: Mode,
    ruling: Option<Ruling>,
    held: Vec<ChannelMsg>,
) {
    if let Some((seq, decision)) = ruling.as_ref().and_then(Ruling::mask) {
        shared.mask_with(seq, decision);
    }
    let shared = Arc::new(shared);
    shared.conn.track(&shared);
    let mut host = tokio::spawn(downstream::run(shared.clone(), up_rx));
    let mut input = Input {
        shared,
        rx,
        mode,
        backlog: held.into(),
    };
    loop {
        let flow = if let Some(msg) = input.backlog.pop_front() {
            input.on_client(Some(msg)).await
        } else {
            tokio::select! {
                msg = input.rx.wait() => input.on_client(msg).await,
                // The host closed the channel (and the client was told): nothing more to pass.
                _ = &mut host => return,
            }
        };
        if let Flow::End = flow {
            break;
        }
    }
    if tokio::time::timeout(HOST_CLOSE_WAIT, &mut host)
        .await
        .is_err()
    {
        host.abort();
    }
}

struct Input {
    shared: Arc<Shared>,
    rx: ClientRx,
    mode: Mode,
    /// Client messages to handle before reading more.
    backlog: VecDeque<ChannelMsg>,
}

impl Input {
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
                        let _ = self.shared.up.close().await;
                        super::channel::finish(&self.shared.client, REFUSED_EXIT).await;
                        Flow::End
                    }
                },
            },
            Some(ChannelMsg::Eof) => {
                let _ = self.shared.up.eof().await;
                Flow::Go
            }
            Some(ChannelMsg::WindowChange {
                col_width,
                row_height,
                pix_width,
                pix_height,
            }) => {
                self.shared.conn.recorder.resize(col_width, row_height);
                let _ = self
                    .shared
                    .up
                    .window_change(col_width, row_height, pix_width, pix_height)
                    .await;
                Flow::Go
            }
            Some(ChannelMsg::Signal { signal }) => {
                let _ = self.shared.up.signal(signal).await;
                Flow::Go
            }
            Some(ChannelMsg::Close) | None => {
                let _ = self.shared.up.close().await;
                Flow::End
            }
            Some(_) => Flow::Go,
        }
    }

    async fn send_host(&mut self, data: &[u8]) -> Flow {
        match self.shared.up.data(data).await {
            Ok(()) => Flow::Go,
            Err(_) => {
                let _ = self.shared.client.close().await;
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
                let secret = at_password_prompt(&self.shared.tail());
                let shown = if secret {
                    "(typed at a password prompt; not recorded)".to_string()
                } else {
                    line.clone()
                };
                let allowed = if uncertain {
                    let reason = "warden: this line was edited with keys the gateway cannot follow \
                                  (history, completion, cursor movement); type it out in full";
                    let _ = self
                        .shared
                        .conn
                        .session
                        .refuse(&shown, "shell", reason)
                        .await;
                    let s = &self.shared;
                    let _ = stderr(&s.conn, &s.client, reason, s.pty).await;
                    None
                } else {
                    let command = Command::Shell(crate::command::shell(&line, true));
                    let s = &self.shared;
                    let judged =
                        judge(&s.conn, &s.client, &mut self.rx, &shown, command, s.pty).await;
                    if judged.closed {
                        let _ = self.shared.up.close().await;
                        return Flow::End;
                    }
                    self.backlog.extend(judged.held);
                    judged.ruling
                };
                match allowed {
                    Some(ruling) => {
                        self.shared.conn.recorder.input(&format!("{shown}\r"));
                        if let Some((seq, decision)) = ruling.mask() {
                            self.shared.mask_with(seq, decision);
                        }
                        self.shared.new_command();
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
                    .shared
                    .conn
                    .session
                    .refuse(&format!("sftp extended {name}"), "sftp:extended", &reason)
                    .await;
                self.sftp_reply(sftp::status(id, sftp::OP_UNSUPPORTED, &reason))
                    .await
            }
            Packet::Check { id, op, bytes } => {
                let text = Command::File(op.clone()).text();
                let mut client = OneShot::default();
                let session = &self.shared.conn.session;
                match session
                    .judge(&text, &[Command::File(op)], &mut client)
                    .await
                {
                    Judged::Forward(_) => self.send_host(&bytes).await,
                    _ => {
                        let reason = client.refusal.unwrap_or_else(|| "warden: refused".into());
                        self.shared.conn.recorder.error(&reason);
                        self.sftp_reply(sftp::status(id, sftp::PERMISSION_DENIED, &reason))
                            .await
                    }
                }
            }
        }
    }

    async fn sftp_reply(&mut self, bytes: Vec<u8>) -> Flow {
        match self.shared.client.data(&bytes[..]).await {
            Ok(()) => Flow::Go,
            Err(_) => {
                let _ = self.shared.up.close().await;
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
