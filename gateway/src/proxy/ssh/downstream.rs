//! Host → client: one task per channel reads everything the host sends and passes it on,
//! masked line by line when a verdict said `mask`, recorded, with EOF, exit status, exit signal
//! and close. It runs apart from the client → host direction (`relay.rs`), so a side that waits
//! for window space never stops the other side's messages from being read.

use super::channel::{ClientTx, finish, stderr};
use super::output::{self, Lines};
use super::prompt::{Chunk, Markers};
use super::sftp::{self, HostPiece};
use super::{Conn, REFUSED_EXIT};
use crate::policy::Decision;
use russh::server::Handle;
use russh::{ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, client};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long a partial output line waits for its end before it is masked and sent anyway (a
/// prompt, a progress bar).
const PARTIAL_LINE_WAIT: Duration = Duration::from_millis(50);
/// How long the host's EOF is held for its exit status: a client that sees EOF may close the
/// channel, after which the status could no longer be sent. sshd sends both together.
const EOF_HOLD: Duration = Duration::from_millis(200);
/// Output bytes kept to recognise a prompt.
const TAIL: usize = 128;

pub type UpTx = ChannelWriteHalf<client::Msg>;

/// What both directions of a channel share.
pub struct Shared {
    pub conn: Arc<Conn>,
    pub client: ClientTx,
    pub up: UpTx,
    pub server: Handle,
    pub id: ChannelId,
    /// A terminal: messages go to the terminal, lines end in CR LF.
    pub pty: bool,
    pub sftp: bool,
    /// The ruling whose `mask` applies to output (`seq`, decision), if any. Shared, not
    /// copied, per output chunk.
    mask: Mutex<Option<Arc<(u64, Decision)>>>,
    /// The last bytes of terminal output (to tell a password prompt).
    tail: Mutex<Vec<u8>>,
    /// SFTP: the path each open handle is on (FSETSTAT is checked as a setstat of it).
    pub sftp_handles: Mutex<super::sftp::Handles>,
    /// Output bytes still to be recorded for the current command, and those shown beyond.
    budget: AtomicUsize,
    unrecorded: AtomicU64,
    /// A terminal shell: the host's prompt markers, taken out of the output and handed to the
    /// client → host side.
    prompts: Option<(Mutex<Markers>, tokio::sync::mpsc::UnboundedSender<Chunk>)>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn new(
        conn: Arc<Conn>,
        client: ClientTx,
        up: UpTx,
        server: Handle,
        id: ChannelId,
        pty: bool,
        sftp: bool,
    ) -> Shared {
        Shared {
            budget: AtomicUsize::new(conn.recorded_output_budget()),
            conn,
            client,
            up,
            server,
            id,
            pty,
            sftp,
            mask: Mutex::new(None),
            tail: Mutex::new(Vec::new()),
            sftp_handles: Mutex::new(super::sftp::Handles::default()),
            unrecorded: AtomicU64::new(0),
            prompts: None,
        }
    }

    /// Find `markers` in the output and send each prompt to `to`.
    pub fn watch_prompts(
        &mut self,
        markers: Markers,
        to: tokio::sync::mpsc::UnboundedSender<Chunk>,
    ) {
        self.prompts = Some((Mutex::new(markers), to));
    }

    /// Output from now on is masked under this ruling. Nothing unmasks it again: in a shell
    /// the relay cannot tell which command's output a byte belongs to.
    pub fn mask_with(&self, seq: u64, decision: &Decision) {
        *lock(&self.mask) = Some(Arc::new((seq, decision.clone())));
    }

    /// A new command: its output gets a fresh recording budget.
    pub fn new_command(&self) {
        self.budget
            .store(self.conn.recorded_output_budget(), Ordering::Relaxed);
    }

    pub fn tail(&self) -> Vec<u8> {
        lock(&self.tail).clone()
    }

    /// Send output to the client, recorded within the budget. `false` when the client is gone.
    async fn send(&self, is_stderr: bool, bytes: &[u8]) -> bool {
        if bytes.is_empty() {
            return true;
        }
        if self.pty {
            let mut tail = lock(&self.tail);
            tail.extend_from_slice(&bytes[bytes.len().saturating_sub(TAIL)..]);
            let excess = tail.len().saturating_sub(TAIL);
            tail.drain(..excess);
        }
        if !self.sftp {
            let budget = self.budget.load(Ordering::Relaxed);
            let keep = bytes.len().min(budget);
            self.conn.recorder.output(is_stderr, &bytes[..keep]);
            self.budget.store(budget - keep, Ordering::Relaxed);
            self.unrecorded
                .fetch_add((bytes.len() - keep) as u64, Ordering::Relaxed);
        }
        let sent = if is_stderr {
            self.client.extended_data(1, bytes).await
        } else {
            self.client.data(bytes).await
        };
        sent.is_ok()
    }
}

/// Relay the host's side of the channel until the host closes it (or the client is gone).
pub async fn run(shared: Arc<Shared>, mut rx: ChannelReadHalf) {
    let max_line = shared.conn.max_line();
    let mut out = Output {
        lines: [Lines::new(max_line), Lines::new(max_line)],
        host_eof: false,
        eof_due: None,
        exit: None,
        shared,
    };
    loop {
        let partial = out.masking().is_some() && out.lines.iter().any(Lines::can_flush);
        let eof_due = out.eof_due;
        let go = tokio::select! {
            biased;
            msg = rx.wait() => out.on_host(msg).await,
            _ = tokio::time::sleep(PARTIAL_LINE_WAIT), if partial => out.flush(false).await,
            _ = tokio::time::sleep_until(eof_due.unwrap_or_else(Instant::now)), if eof_due.is_some() => {
                out.send_eof().await;
                true
            }
        };
        if !go {
            break;
        }
    }
    let unrecorded = out.shared.unrecorded.load(Ordering::Relaxed);
    if unrecorded > 0 {
        out.shared.conn.recorder.notice(&format!(
            "{unrecorded} more output bytes were shown but not recorded"
        ));
    }
}

struct Output {
    shared: Arc<Shared>,
    lines: [Lines; 2],
    /// The host sent EOF: its output is complete.
    host_eof: bool,
    /// The host's EOF, held until its exit status arrives or this instant.
    eof_due: Option<Instant>,
    /// The exit status or signal, held until the output is complete.
    exit: Option<Exit>,
}

/// How the host's command ended.
enum Exit {
    Status(u32),
    Signal {
        signal_name: russh::Sig,
        core_dumped: bool,
        error_message: String,
        lang_tag: String,
    },
}

impl Output {
    fn masking(&self) -> Option<Arc<(u64, Decision)>> {
        lock(&self.shared.mask).clone()
    }

    /// One message from the host; `false` ends the relay.
    async fn on_host(&mut self, msg: Option<ChannelMsg>) -> bool {
        match msg {
            Some(ChannelMsg::Data { data }) => self.output(false, &data).await,
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => self.output(true, &data).await,
            Some(ChannelMsg::Eof) => {
                // Only now is the output complete: what is held back of a line is its end.
                if !self.flush(true).await {
                    return false;
                }
                self.host_eof = true;
                self.eof_due = Some(Instant::now() + EOF_HOLD);
                if self.exit.is_some() {
                    self.send_exit().await;
                    self.send_eof().await;
                }
                true
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                self.on_exit(Exit::Status(exit_status)).await;
                true
            }
            Some(ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            }) => {
                let signal = Exit::Signal {
                    signal_name,
                    core_dumped,
                    error_message,
                    lang_tag,
                };
                self.on_exit(signal).await;
                true
            }
            Some(ChannelMsg::Close) | None => {
                let _ = self.flush(true).await;
                self.send_exit().await;
                self.send_eof().await;
                let _ = self.shared.client.close().await;
                false
            }
            Some(_) => true,
        }
    }

    /// The command's exit status or signal. sshd sends it as soon as the command exits, ahead
    /// of output that the SSH window still holds back (a slow reader) or that a background
    /// process still writes: it is passed on once the output is complete (the host's EOF or
    /// close), so a line is never taken as ended while its end is still to come.
    async fn on_exit(&mut self, exit: Exit) {
        self.exit = Some(exit);
        if self.host_eof {
            self.send_exit().await;
            self.send_eof().await;
        }
    }

    /// Record and pass on the held exit status or signal, if any.
    async fn send_exit(&mut self) {
        let s = &self.shared;
        match self.exit.take() {
            None => {}
            Some(Exit::Status(status)) => {
                s.conn.recorder.exit(Some(status), None);
                let _ = s.client.exit_status(status).await;
            }
            Some(Exit::Signal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            }) => {
                s.conn
                    .recorder
                    .exit(None, Some(&format!("{signal_name:?}")));
                let _ = s
                    .server
                    .exit_signal_request(s.id, signal_name, core_dumped, error_message, lang_tag)
                    .await;
            }
        }
    }

    async fn send_eof(&mut self) {
        if self.eof_due.take().is_some() {
            let _ = self.shared.client.eof().await;
        }
    }

    /// Host output: prompt markers taken out, masked by lines when a verdict said so, then
    /// sent and recorded.
    async fn output(&mut self, is_stderr: bool, data: &[u8]) -> bool {
        if self.shared.sftp && !is_stderr {
            return self.sftp_output(data).await;
        }
        let shared = self.shared.clone();
        if let (false, Some((markers, to))) = (is_stderr, &shared.prompts) {
            let chunks = lock(markers).scan(data);
            for chunk in chunks {
                let go = match chunk {
                    Chunk::Out(bytes) => self.shown(false, &bytes).await,
                    // A prompt: the command's output is complete; all of it goes out first.
                    prompt => {
                        let flushed = self.flush(true).await;
                        let _ = to.send(prompt);
                        flushed
                    }
                };
                if !go {
                    return false;
                }
            }
            return true;
        }
        self.shown(is_stderr, data).await
    }

    /// Output as the client sees it: masked by lines when a verdict said so.
    async fn shown(&mut self, is_stderr: bool, data: &[u8]) -> bool {
        let Some(mask) = self.masking() else {
            return self.sent(self.shared.send(is_stderr, data).await).await;
        };
        let lines = self.lines[usize::from(is_stderr)].push(data);
        if lines.is_empty() {
            return true;
        }
        let (seq, decision) = &*mask;
        self.masked(*seq, decision, is_stderr, lines).await
    }

    /// The host's SFTP replies: passed on, except the answers to masked reads, which are
    /// masked and cut to what the client asked for.
    async fn sftp_output(&mut self, data: &[u8]) -> bool {
        let pieces = lock(&self.shared.sftp_handles).host_data(data);
        for piece in pieces {
            let bytes = match piece {
                HostPiece::Pass(bytes) => bytes,
                HostPiece::Read { id, read, window } => {
                    let (seq, decision) = &*read.mask;
                    let session = &self.shared.conn.session;
                    let mid_file = read.lead == sftp::OVERLAP;
                    match output::mask_exact(session, *seq, decision, &window, mid_file).await {
                        Ok(masked) => {
                            sftp::read_reply(id, &read, &window, &masked, output::star_digits)
                        }
                        Err(output::MaskRefused(why)) => {
                            let why = format!("warden: {why}; the read is refused");
                            self.shared.conn.recorder.error(&why);
                            sftp::status(id, sftp::FAILURE, &why)
                        }
                    }
                }
                HostPiece::Names { id, mask, packet } => {
                    self.masked_names(id, &mask, &packet).await
                }
                HostPiece::Fail { id } => sftp::status(
                    id,
                    sftp::FAILURE,
                    "warden: the host's answer is too large to mask",
                ),
            };
            if !self.sent(self.shared.send(false, &bytes).await).await {
                return false;
            }
        }
        true
    }

    /// A NAME reply (a directory listing, a REALPATH or READLINK answer) with its file names
    /// and long names masked; a failure status when it cannot be.
    async fn masked_names(&self, id: u32, mask: &sftp::Mask, packet: &[u8]) -> Vec<u8> {
        let (seq, decision) = &**mask;
        let session = &self.shared.conn.session;
        let why = match sftp::names_of(packet) {
            Ok(names) => match output::mask_names(session, *seq, decision, &names).await {
                Ok(masked) => match sftp::with_names(packet, &masked) {
                    Ok(reply) => return reply,
                    Err(e) => e,
                },
                Err(output::MaskRefused(why)) => why,
            },
            Err(e) => format!("the host's list of names does not read ({e})"),
        };
        let why = format!("warden: {why}; the names are refused");
        self.shared.conn.recorder.error(&why);
        sftp::status(id, sftp::FAILURE, &why)
    }

    async fn masked(
        &mut self,
        seq: u64,
        decision: &Decision,
        is_stderr: bool,
        lines: Vec<output::Piece>,
    ) -> bool {
        match self.shared.conn.mask(seq, decision, is_stderr, lines).await {
            Ok(bytes) => self.sent(self.shared.send(is_stderr, &bytes).await).await,
            Err(refused) => {
                // Fail closed: nothing of the batch is sent, and the command is stopped.
                let msg = format!("warden: output refused: {}", refused.0);
                let s = &self.shared;
                let _ = stderr(&s.conn, &s.client, &msg, s.pty).await;
                let _ = s.up.close().await;
                finish(&s.client, REFUSED_EXIT).await;
                false
            }
        }
    }

    /// After a send: when the client is gone, close the host side too.
    async fn sent(&self, ok: bool) -> bool {
        if !ok {
            let _ = self.shared.up.close().await;
        }
        ok
    }

    /// Send held partial lines: after a pause (`at_end` false) only what cannot be part of a
    /// number; at EOF, exit or close, everything.
    async fn flush(&mut self, at_end: bool) -> bool {
        let Some(mask) = self.masking() else {
            return true;
        };
        let (seq, decision) = &*mask;
        for is_stderr in [false, true] {
            if let Some(partial) = self.lines[usize::from(is_stderr)].take_partial(at_end)
                && !self.masked(*seq, decision, is_stderr, vec![partial]).await
            {
                return false;
            }
        }
        true
    }
}
