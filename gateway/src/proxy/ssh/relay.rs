//! Client → host: what the client sends, passed on once it may be. Exec input goes straight
//! through; in a terminal shell the gateway's editor has the line, and each complete command is
//! judged and sent whole (`terminal.rs`); shell input without a terminal (and the stdin of an
//! exec'd shell) is held until it forms a command, which is judged and sent whole
//! (`script.rs`); under SFTP each file operation is checked.
//! Window changes, signals and EOF are passed on. The host → client direction runs in its own
//! task (`downstream.rs`), so neither direction waits on the other.

use super::REFUSED_EXIT;
use super::channel::{ClientRx, judge, stderr};
use super::downstream::{self, Shared, lock};
use super::prompt::Chunk;
use super::script::{Piece, Script, TooLong};
use super::sftp::{self, Packet, ReadPlan};
use super::terminal::{self, Step, Terminal};
use crate::policy::{Command, FileOp};
use crate::session::{Judged, OneShot, Ruling};
use russh::ChannelMsg;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// How long the host side may take to wind down after the client closed.
const HOST_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Which keys of an exec'd command's stdin reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// No terminal: stdin is data, passed as it comes.
    All,
    /// A terminal program the target names: every key, recorded as input.
    Recorded,
    /// Another command under a terminal: only Ctrl-C, Ctrl-\ and Ctrl-Z (signals).
    Signals,
}

/// What runs on the channel.
pub enum Mode {
    Exec(Keys),
    /// A terminal shell: the gateway's editor has the line; prompts come from the host's
    /// output (`prompt.rs`).
    Terminal(Box<Terminal>, tokio::sync::mpsc::UnboundedReceiver<Chunk>),
    /// A shell reading commands from stdin with no terminal: the gateway owns the input.
    Script(Box<Script>),
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

/// Where the shell a command goes to reads it from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Typed {
    /// No terminal: the shell reads a script, where every byte is text.
    NoTerminal,
    /// The gateway's terminal session: a control character or a tab could be a key to
    /// whatever reads the terminal (a line editor the host's shell turned on, a program), not
    /// text.
    Terminal,
}

/// Why a command cannot be sent as it was judged, if it cannot: history expansion (`!!`,
/// `!$`, `^a^b`) would have the shell run another text than the one judged; `exec < file`
/// would have it read commands from somewhere else; in a terminal, a control character would
/// be read as a key, and new terminal settings would cut later lines.
fn unsendable(command: &str, typed: Typed) -> Option<&'static str> {
    if super::script::history_expansion(command) {
        return Some(
            "warden: history expansion (`!`, `^`) is not sent: the shell would run another \
             command than the one judged; write the command out",
        );
    }
    if super::script::replaces_stdin(command) {
        return Some(
            "warden: `exec` may not point the shell's input elsewhere: the shell would run \
             what it reads there, unjudged",
        );
    }
    if typed != Typed::NoTerminal && terminal::settings_changed(command) {
        return Some(
            "warden: the terminal's settings and line editing are the gateway's: `stty` may \
             only show them (stty -a, stty size), may not be redefined, and `set -o \
             emacs|vi` and traps are not sent",
        );
    }
    let control = |c: char| typed == Typed::Terminal && c.is_control() && c != '\n';
    if command.chars().any(control) {
        return Some("warden: control characters and tabs in a command line are not sent");
    }
    None
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
                Some(chunk) = host_prompt(&mut input.mode) => input.host_prompt(chunk).await,
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

/// The host's next prompt, in a terminal shell (never, otherwise).
async fn host_prompt(mode: &mut Mode) -> Option<Chunk> {
    match mode {
        Mode::Terminal(_, prompts) => prompts.recv().await,
        _ => std::future::pending().await,
    }
}

impl Input {
    async fn on_client(&mut self, msg: Option<ChannelMsg>) -> Flow {
        match msg {
            Some(ChannelMsg::Data { data }) => match &mut self.mode {
                Mode::Exec(Keys::All) => self.send_host(&data).await,
                Mode::Exec(Keys::Recorded) => {
                    self.program_input(&data);
                    self.send_host(&data).await
                }
                Mode::Exec(Keys::Signals) => {
                    let signals: Vec<u8> = data
                        .iter()
                        .copied()
                        .filter(|b| [0x03, 0x1c, 0x1a].contains(b))
                        .collect();
                    if signals.is_empty() {
                        Flow::Go
                    } else {
                        self.send_host(&signals).await
                    }
                }
                Mode::Terminal(term, _) => {
                    let now = term.input(&data);
                    if term.in_program() {
                        self.program_input(&now);
                    }
                    if !now.is_empty()
                        && let Flow::End = self.send_host(&now).await
                    {
                        return Flow::End;
                    }
                    self.terminal_steps().await
                }
                Mode::Script(script) => match script.feed(&data) {
                    Ok(pieces) => {
                        for piece in pieces {
                            let flow = match piece {
                                Piece::Command(c) => self.script_command(c).await,
                                Piece::Unreadable { bytes, why } => {
                                    self.script_unreadable(&bytes, why).await
                                }
                            };
                            if let Flow::End = flow {
                                return Flow::End;
                            }
                        }
                        Flow::Go
                    }
                    Err(TooLong) => {
                        let reason = format!(
                            "warden: more than {} bytes of input without a complete command",
                            super::script::MAX_COMMAND
                        );
                        let s = &self.shared;
                        let _ = s
                            .conn
                            .session
                            .refuse("(shell input)", "shell", &reason)
                            .await;
                        let _ = stderr(&s.conn, &s.client, &reason, s.pty).await;
                        let _ = s.up.close().await;
                        super::channel::finish(&s.client, REFUSED_EXIT).await;
                        Flow::End
                    }
                },
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
            // In a terminal, EOF is Ctrl-D: at an empty prompt it ends the shell.
            Some(ChannelMsg::Eof) if matches!(self.mode, Mode::Terminal(..)) => {
                self.backlog.push_back(ChannelMsg::Data {
                    data: b"\x04".as_slice().into(),
                });
                Flow::Go
            }
            Some(ChannelMsg::Eof) => {
                // A shell runs an unterminated last command at EOF: it is judged first.
                if let Mode::Script(script) = &mut self.mode
                    && let Some(rest) = script.finish()
                    && let Flow::End = self.script_command(rest).await
                {
                    return Flow::End;
                }
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
                if let Mode::Terminal(term, _) = &mut self.mode {
                    term.resize(col_width);
                }
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

    /// Keys typed into a named terminal program: recorded as typed, or as hidden input after
    /// a password prompt.
    fn program_input(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let recorder = &self.shared.conn.recorder;
        if at_password_prompt(&self.shared.tail()) {
            recorder.input("(hidden input)");
        } else {
            recorder.input(&String::from_utf8_lossy(data));
        }
    }

    /// The host's shell showed a prompt, or asks for a continuation line.
    async fn host_prompt(&mut self, chunk: Chunk) -> Flow {
        let Mode::Terminal(term, _) = &mut self.mode else {
            return Flow::Go;
        };
        let mut out = Vec::new();
        match chunk {
            Chunk::Prompt(dir) => term.prompt(dir, &mut out),
            Chunk::Continue => term.continuation(&mut out),
            Chunk::Out(_) => {}
        }
        if let Flow::End = self.echo(&out).await {
            return Flow::End;
        }
        self.terminal_steps().await
    }

    /// The editor's drawing, to the client only (the recording gets each line as submitted).
    async fn echo(&self, out: &[u8]) -> Flow {
        if out.is_empty() || self.shared.client.data(out).await.is_ok() {
            Flow::Go
        } else {
            let _ = self.shared.up.close().await;
            Flow::End
        }
    }

    /// Run the editor over type-ahead; judge, and send or refuse, each complete command.
    async fn terminal_steps(&mut self) -> Flow {
        loop {
            let Mode::Terminal(term, _) = &mut self.mode else {
                return Flow::Go;
            };
            let mut out = Vec::new();
            let step = term.step(&mut out);
            let shown = term.take_shown();
            if let Flow::End = self.echo(&out).await {
                return Flow::End;
            }
            self.shared.conn.recorder.output(false, shown.as_bytes());
            let flow = match step {
                None => return Flow::Go,
                Some(Step::Interrupt) => self.send_host(b"\x03").await,
                Some(Step::Refuse(text, why)) => self.terminal_refuse(&text, why).await,
                Some(Step::Judge(command)) => self.terminal_command(command).await,
            };
            if let Flow::End = flow {
                return Flow::End;
            }
        }
    }

    /// A command refused before any policy is asked: audited, the client told, a fresh prompt.
    async fn terminal_refuse(&mut self, text: &str, why: &str) -> Flow {
        let s = &self.shared;
        let _ = s.conn.session.refuse(text, "shell", why).await;
        let _ = stderr(&s.conn, &s.client, why, true).await;
        self.terminal_prompt_again().await
    }

    async fn terminal_prompt_again(&mut self) -> Flow {
        let Mode::Terminal(term, _) = &mut self.mode else {
            return Flow::Go;
        };
        let mut out = Vec::new();
        term.refused(&mut out);
        self.echo(&out).await
    }

    /// A complete command typed at the gateway's prompt: judged, then sent whole, or not at
    /// all.
    async fn terminal_command(&mut self, command: String) -> Flow {
        if command.trim().is_empty() {
            return self.terminal_prompt_again().await;
        }
        if let Some(why) = unsendable(&command, Typed::Terminal) {
            return self.terminal_refuse(&command, why).await;
        }
        let program =
            match terminal::terminal_program(&command, self.shared.conn.terminal_programs()) {
                Ok(program) => program,
                Err(why) => {
                    let why = format!("warden: {why}; run commands that do not wait for keys");
                    return self.terminal_refuse(&command, &why).await;
                }
            };
        match self.judge_shell(&command, &command).await {
            None => Flow::End,
            Some(None) => self.terminal_prompt_again().await,
            Some(Some(ruling)) => {
                self.ran(&format!("{command}\r"), &ruling);
                if let Mode::Terminal(term, _) = &mut self.mode {
                    term.ran(&command, program);
                }
                self.send_host(format!("{command}\n").as_bytes()).await
            }
        }
    }

    /// Judge one shell command (shown in the audit as `shown`); `None` when the client went
    /// away while it waited for an approver.
    async fn judge_shell(&mut self, shown: &str, line: &str) -> Option<Option<Ruling>> {
        let command = Command::Shell(crate::command::shell(line, true));
        let s = &self.shared;
        let judged = judge(&s.conn, &s.client, &mut self.rx, shown, command, s.pty).await;
        if judged.closed {
            let _ = self.shared.up.close().await;
            return None;
        }
        self.backlog.extend(judged.held);
        Some(judged.ruling)
    }

    /// A command goes to the host under `ruling`: recorded as typed, its output masked when
    /// the ruling says so, with a fresh recording budget.
    fn ran(&self, typed: &str, ruling: &Ruling) {
        self.shared.conn.recorder.input(typed);
        if let Some((seq, decision)) = ruling.mask() {
            self.shared.mask_with(seq, decision);
        }
        self.shared.new_command();
    }

    /// One complete command of terminal-less shell input: sent whole once allowed, or
    /// dropped (the host never sees a byte of it).
    async fn script_command(&mut self, bytes: Vec<u8>) -> Flow {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let line = text.strip_suffix('\n').unwrap_or(&text);
        if line.trim().is_empty() {
            return self.send_host(&bytes).await;
        }
        if let Some(why) = unsendable(line, Typed::NoTerminal) {
            return self.script_unreadable(&bytes, why).await;
        }
        match self.judge_shell(line, line).await {
            None => Flow::End,
            Some(Some(ruling)) => {
                self.ran(&text, &ruling);
                self.send_host(&bytes).await
            }
            Some(None) => Flow::Go,
        }
    }

    /// A command the gateway cannot read as the shell will: refused (audited), never sent.
    async fn script_unreadable(&mut self, bytes: &[u8], why: &str) -> Flow {
        let text = String::from_utf8_lossy(bytes);
        let line = text.strip_suffix('\n').unwrap_or(&text);
        let s = &self.shared;
        let _ = s.conn.session.refuse(line, "shell", why).await;
        let _ = stderr(&s.conn, &s.client, why, s.pty).await;
        Flow::Go
    }

    /// One SFTP request: forwarded, or checked first.
    async fn sftp_packet(&mut self, packet: Packet) -> Flow {
        let id = packet.id();
        let refused = id.and_then(|id| {
            lock(&self.shared.sftp_handles)
                .refuse_id(id)
                .map(|w| (id, w))
        });
        if let Some((id, why)) = refused {
            return self.sftp_reply(sftp::status(id, sftp::FAILURE, why)).await;
        }
        match packet {
            Packet::Forward(bytes) => self.sftp_forward(id, &bytes).await,
            Packet::Read {
                id,
                handle,
                offset,
                len,
                bytes,
            } => {
                let plan = lock(&self.shared.sftp_handles).read(id, &handle, offset, len);
                match plan {
                    ReadPlan::Forward => self.sftp_forward(Some(id), &bytes).await,
                    ReadPlan::Widened(packet) => self.sftp_forward(Some(id), &packet).await,
                    ReadPlan::Refuse(why) => {
                        self.sftp_reply(sftp::status(id, sftp::FAILURE, why)).await
                    }
                }
            }
            Packet::ReadDir { id, handle, bytes } => {
                lock(&self.shared.sftp_handles).read_dir(id, &handle);
                self.sftp_forward(Some(id), &bytes).await
            }
            Packet::Limits { id, bytes } => {
                lock(&self.shared.sftp_handles).asking_limits(id);
                self.sftp_forward(Some(id), &bytes).await
            }
            Packet::Close { id, handle, bytes } => {
                lock(&self.shared.sftp_handles).closing(&handle);
                self.sftp_forward(Some(id), &bytes).await
            }
            Packet::CopyFrom { id, handle, bytes } => {
                if lock(&self.shared.sftp_handles).mask_of(&handle).is_none() {
                    return self.sftp_forward(Some(id), &bytes).await;
                }
                let reason = "warden: copying from a file whose reads are masked is refused \
                              (the copy could be read back in pieces)";
                let _ = self
                    .shared
                    .conn
                    .session
                    .refuse("sftp extended copy-data", "sftp:extended", reason)
                    .await;
                self.sftp_reply(sftp::status(id, sftp::PERMISSION_DENIED, reason))
                    .await
            }
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
                let opens = matches!(op.op.as_str(), "open-read" | "open-write" | "list")
                    .then(|| op.path.clone());
                match self.judge_file(op).await {
                    Ok(mask) => {
                        {
                            let mut handles = lock(&self.shared.sftp_handles);
                            match (opens, mask) {
                                (Some(path), mask) => handles.opening(id, &path, mask),
                                // REALPATH, READLINK: the name they are answered with.
                                (None, Some(mask)) => handles.naming(id, mask),
                                (None, None) => {}
                            }
                        }
                        self.sftp_forward(Some(id), &bytes).await
                    }
                    Err(reason) => {
                        self.sftp_reply(sftp::status(id, sftp::PERMISSION_DENIED, &reason))
                            .await
                    }
                }
            }
            Packet::CheckHandle { id, handle, bytes } => {
                let path = lock(&self.shared.sftp_handles)
                    .path(&handle)
                    .map(str::to_string);
                let judged = match path {
                    Some(path) => {
                        let op = FileOp {
                            op: "setstat".to_string(),
                            path,
                            to: None,
                        };
                        self.judge_file(op).await
                    }
                    None => {
                        let reason = "warden: the attributes of a handle the gateway did not \
                                      see opened cannot be checked";
                        let session = &self.shared.conn.session;
                        let _ = session
                            .refuse("sftp fsetstat", "sftp:fsetstat", reason)
                            .await;
                        self.shared.conn.recorder.error(reason);
                        Err(reason.to_string())
                    }
                };
                match judged {
                    Ok(_) => self.sftp_forward(Some(id), &bytes).await,
                    Err(reason) => {
                        self.sftp_reply(sftp::status(id, sftp::PERMISSION_DENIED, &reason))
                            .await
                    }
                }
            }
        }
    }

    /// Judge one file operation (audited): how reads through the handle it opens are masked,
    /// if they are; `Err` carries the refusal the client is sent.
    async fn judge_file(&mut self, op: FileOp) -> Result<Option<sftp::Mask>, String> {
        let text = Command::File(op.clone()).text();
        // What is read through an opened file is masked (see `sftp::Handles::read`), and so
        // are the names a listing, REALPATH or READLINK is answered with; other operations
        // carry nothing to mask.
        let mut client = OneShot {
            refusal: None,
            masks: sftp::answer_is_masked(&op.op),
        };
        let session = &self.shared.conn.session;
        match session
            .judge(&text, &[Command::File(op)], &mut client)
            .await
        {
            Judged::Forward(ruling) => Ok(ruling
                .mask()
                .map(|(seq, d)| std::sync::Arc::new((seq, d.clone())))),
            _ => {
                let reason = client.refusal.unwrap_or_else(|| "warden: refused".into());
                self.shared.conn.recorder.error(&reason);
                Err(reason)
            }
        }
    }

    /// Forward an SFTP request to the host, its id noted as waiting for an answer.
    async fn sftp_forward(&mut self, id: Option<u32>, bytes: &[u8]) -> Flow {
        if let Some(id) = id {
            lock(&self.shared.sftp_handles).sent(id);
        }
        self.send_host(bytes).await
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
