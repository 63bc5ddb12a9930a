//! One relayed PostgreSQL session: a `select!` over client messages, server messages, the
//! idle timeout and shutdown. Client messages are judged in `frontend.rs`; server messages are
//! matched to what the client asked (a queue of expected responses) so result rows can be
//! masked per statement, and are otherwise forwarded as the bytes they arrived as.

use super::config::PostgresListener;
use super::rows::RowBatch;
use super::wire::{self, FieldDesc, Frame, FrameReader, WireError, sqlstate};
use crate::command::sql::CopyOut;
use crate::policy::Decision;
use crate::proxy::BoxedIo;
use crate::session::{Ruling, Session};
use bytes::BytesMut;
use futures_util::FutureExt;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Notify;

/// What a forwarded client message will get back, in order.
pub(super) enum Expect {
    /// A simple Query: results of each statement, then ReadyForQuery.
    Query(Results),
    /// The gateway's own Parse, Describe and Sync of a query with the columns of a
    /// `COPY ... TO STDOUT` that will be masked (statement `stmt` of the Query that follows):
    /// its answers are the gateway's, never the client's.
    CopyTypes {
        stmt: usize,
        spec: CopyOut,
        fields: Vec<FieldDesc>,
    },
    /// A Parse, with the statement to keep once the server confirms it (ParseComplete).
    Parse(Option<(String, Prepared)>),
    /// A Bind, with the portal to keep once the server confirms it (BindComplete).
    Bind(Option<(String, Portal)>),
    Close,
    DescribeStatement(String),
    DescribePortal(String),
    /// The gateway's own Describe of a portal about to be executed: its RowDescription gives
    /// the Execute that follows its columns, and the client never sees it.
    Described,
    Execute(Results),
    Sync,
    /// A Sync the client sent while its COPY ... FROM STDIN was under way: the server ignores
    /// Sync in copy-in mode, so once its CopyInResponse comes, nothing answers this one (and it
    /// is dropped); should the COPY fail before copy-in, the server answers it like any Sync.
    SyncInCopy,
    /// The failing statement the gateway sent after a refusal (`Relay::fail_upstream`): its
    /// error is not the client's; its ReadyForQuery answers the client's Query or Sync.
    Abort,
    /// A response the gateway composed (a refusal, a ReadyForQuery): sent when everything
    /// queued before it has been answered, so the client sees responses in request order.
    Local(bytes::Bytes),
}

/// How to treat the result rows of one Query or Execute.
pub(super) struct Results {
    /// The ruling, when some policy asked for masking.
    pub ruling: Option<Arc<Ruling>>,
    /// Statement index within a simple Query.
    pub stmt: usize,
    pub fields: Vec<FieldDesc>,
    /// Result format codes from Bind (empty: as the RowDescription says).
    pub formats: Vec<i16>,
    pub copy: bool,
    /// Refusing this result: drop server messages until it completes.
    pub swallow: bool,
    /// Rows of the current result recorded so far.
    pub recorded: u64,
    /// Per statement of a simple Query: the SQL-level prepared statement its PREPARE makes,
    /// kept once its CommandComplete confirms it.
    pub prepares: Vec<Option<(String, Prepared)>>,
    /// Per statement index: the SQL cursor (a portal) its DECLARE opens, kept once its
    /// CommandComplete confirms it.
    pub declares: Vec<(usize, String, Portal)>,
    /// Per statement index: a `COPY ... TO STDOUT` and its columns as the server described
    /// them (see `Expect::CopyTypes`).
    pub copy_types: Vec<(usize, CopyOut, Vec<FieldDesc>)>,
    /// The COPY under way is read by these types; `copy_lines`: lines of it seen so far.
    pub copy_typing: Option<(CopyOut, Vec<FieldDesc>)>,
    pub copy_lines: u64,
    /// Limits on each result's rows and bytes, from the ruling's budget.
    pub read_budget: Option<crate::policy::Budget>,
    /// Rows and bytes of the current result so far; `cut`: it reached a `truncate` limit and
    /// the rest of its rows are dropped.
    pub returned: (u64, u64),
    pub cut: bool,
}

impl Results {
    pub fn new(ruling: Option<Arc<Ruling>>) -> Results {
        Results {
            ruling,
            stmt: 0,
            fields: Vec::new(),
            formats: Vec::new(),
            copy: false,
            swallow: false,
            recorded: 0,
            prepares: Vec::new(),
            declares: Vec::new(),
            copy_types: Vec::new(),
            copy_typing: None,
            copy_lines: 0,
            read_budget: None,
            returned: (0, 0),
            cut: false,
        }
    }

    /// The budget's limits on rows and bytes returned (whether or not the ruling masks).
    pub fn with_read_budget(mut self, budget: Option<&crate::policy::Budget>) -> Results {
        self.read_budget = budget
            .filter(|b| b.rows_returned.is_some() || b.bytes_returned.is_some())
            .cloned();
        self
    }

    /// The decision whose masking applies to the current statement's rows.
    pub(super) fn mask_decision(&self) -> Option<(u64, &Decision)> {
        self.ruling.as_ref()?.mask_for(self.stmt)
    }
}

/// A prepared statement the policies allowed (protocol Parse or SQL PREPARE: one namespace).
#[derive(Clone)]
pub(super) struct Prepared {
    pub ruling: Arc<Ruling>,
    /// Its statement's index in the message the ruling judged (which decision masks it).
    pub stmt: usize,
    pub fields: Vec<FieldDesc>,
    /// The record of the statement, for judging a SQL `EXECUTE` of it.
    pub sql: Option<crate::policy::Sql>,
    /// The SQL cursor the statement declares (`DECLARE name CURSOR FOR ...`).
    pub declares: Option<String>,
    /// `ruling` judged this statement itself (a protocol Parse). A SQL PREPARE's ruling judged
    /// the PREPARE: binding it is judged as running it, like EXECUTE.
    pub judged: bool,
}

/// A bound portal: the verdict of the statement it was bound from, at Bind time.
pub(super) struct Portal {
    pub ruling: Arc<Ruling>,
    /// The limits its ruling sets (computed once, at Bind), and whether executing it can
    /// write (then the write limits apply).
    pub budget: Option<crate::policy::Budget>,
    pub write_budget: Option<crate::policy::Budget>,
    /// Its statement's text (for the audit of a budget decision).
    pub text: String,
    /// Its statement is transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT...); `begins`:
    /// one that leaves the session in a transaction block (BEGIN, START TRANSACTION,
    /// SAVEPOINT).
    pub controls_transaction: bool,
    pub begins: bool,
    pub stmt: usize,
    /// Executing it runs `COPY ... FROM STDIN`.
    pub copies_in: bool,
    pub formats: Vec<i16>,
    pub fields: Vec<FieldDesc>,
    /// Executing it declares this SQL cursor.
    pub declares: Option<String>,
}

impl Portal {
    /// The portal a `DECLARE` opens: its rows are the declared query's, under the verdict that
    /// judged the DECLARE (a cursor over a writing statement is never measured: see
    /// `frontend::controls_transaction`).
    pub fn cursor(ruling: Arc<Ruling>, stmt: usize, text: &str) -> Portal {
        Portal {
            budget: ruling.budget(),
            write_budget: None,
            text: text.to_string(),
            controls_transaction: false,
            begins: false,
            stmt,
            copies_in: false,
            // Executed by the protocol a cursor's rows are text, BINARY or not (only a simple
            // Query's FETCH sends them in binary, and its RowDescription says so).
            formats: Vec::new(),
            fields: Vec::new(),
            declares: None,
            ruling,
        }
    }
}

/// The state of one relayed session.
pub(super) struct Relay {
    pub session: Session,
    pub cfg: PostgresListener,
    pub client_r: FrameReader<ReadHalf<BoxedIo>>,
    pub client_w: WriteHalf<BoxedIo>,
    pub up_r: FrameReader<ReadHalf<BoxedIo>>,
    pub up_w: WriteHalf<BoxedIo>,
    pub to_client: BytesMut,
    pub to_upstream: BytesMut,
    pub expect: VecDeque<Expect>,
    pub statements: HashMap<String, Prepared>,
    pub portals: HashMap<String, Portal>,
    /// The extended-protocol batch being assembled (since the last Sync).
    pub batch: super::frontend::Batch,
    /// Last transaction status the server reported.
    pub status: u8,
    /// The server reported an error in the batch still open: it is skipping the client's
    /// messages until Sync.
    pub failed: bool,
    pub rows: RowBatch,
    pub copy_in: bool,
    /// A forwarded statement will start `COPY ... FROM STDIN`: the client's COPY data may
    /// already come (until the next ReadyForQuery).
    pub copy_expected: bool,
    /// The client started a COPY ... FROM STDIN and has not sent CopyDone or CopyFail yet.
    pub client_copying: bool,
    /// Relation names that are plain tables (read at login): reading any other relation may
    /// write (see `budget.rs`).
    pub plain_tables: std::collections::HashSet<String>,
    /// The target's views (read at login), followed by column lineage.
    pub views: Arc<crate::command::sql::Views>,
    pub cancel: Arc<Notify>,
    /// The target allows a privileged upstream role (`allow_privileged_upstream`).
    pub privileged_ok: bool,
    /// Client messages read while a statement was held, handled before reading more.
    pub pending: VecDeque<Frame>,
    /// Output for the client is held (a statement's writes are being measured against its
    /// budget): `to_client` fills and is not written.
    pub hold: bool,
}

/// How a session ended.
pub(super) enum End {
    ClientClosed,
    ServerClosed(String),
    Idle,
    /// The gateway is shutting down.
    Shutdown,
    /// The session's token expired.
    Expired,
    Error(String),
    /// A client message did not decode; `run` tells the client (FATAL 08P01) before ending.
    Malformed(String),
}

impl End {
    pub fn reason(&self) -> String {
        match self {
            End::ClientClosed => "client closed".into(),
            End::ServerClosed(e) => format!("server closed: {e}"),
            End::Idle => "idle timeout".into(),
            End::Shutdown => "gateway shutting down".into(),
            End::Expired => crate::session::EXPIRED.into(),
            End::Error(e) | End::Malformed(e) => e.clone(),
        }
    }
}

impl Relay {
    /// The relay loop.
    pub async fn run(&mut self) -> End {
        let idle = self.cfg.idle_timeout;
        let gw = self.session.gateway().clone();
        let expired = self.session.expired();
        tokio::pin!(expired);
        loop {
            if let Some(frame) = self.pending.pop_front() {
                if let Err(end) = self.on_client_guarded(frame).await {
                    return end;
                }
                continue;
            }
            let deadline = tokio::time::sleep(idle);
            tokio::select! {
                frame = self.client_r.next() => match frame {
                    Ok(frame) => {
                        if let Err(end) = self.on_client_guarded(frame).await {
                            return end;
                        }
                    }
                    Err(WireError::Closed) => return End::ClientClosed,
                    Err(e @ WireError::TooLarge(..)) => {
                        let _ = self.fatal(sqlstate::PROGRAM_LIMIT, &e.to_string()).await;
                        return End::Error(e.to_string());
                    }
                    Err(e) => {
                        let _ = self.fatal(sqlstate::PROTOCOL_VIOLATION, &e.to_string()).await;
                        return End::Error(e.to_string());
                    }
                },
                frame = self.up_r.next() => match frame {
                    Ok(frame) => {
                        if let Err(end) = self.on_server(frame).await {
                            return end;
                        }
                        if let Err(end) = self.drain_local().await {
                            return end;
                        }
                    }
                    Err(e) => {
                        let _ = self.fatal(sqlstate::CONNECTION_FAILURE, "the database closed the connection").await;
                        return End::ServerClosed(e.to_string());
                    }
                },
                _ = deadline => {
                    let _ = self.fatal(sqlstate::IDLE_TIMEOUT, "terminating connection due to idle timeout").await;
                    return End::Idle;
                }
                _ = gw.lifecycle().stopping() => {
                    let _ = self.fatal(sqlstate::ADMIN_SHUTDOWN, "terminating connection due to administrator command (warden is shutting down)").await;
                    return End::Shutdown;
                }
                _ = &mut expired => {
                    let _ = self.fatal(sqlstate::INVALID_AUTHORIZATION, "terminating connection: the access token expired; reconnect with a fresh token").await;
                    return End::Expired;
                }
            }
        }
    }

    /// One client message, with its failures said in the protocol's words: a malformed one
    /// gets FATAL 08P01, and a panic while handling it ends this session (audited) with
    /// FATAL XX000, never as a silent close.
    async fn on_client_guarded(&mut self, frame: Frame) -> Result<(), End> {
        let handled = std::panic::AssertUnwindSafe(self.on_client(frame))
            .catch_unwind()
            .await;
        match handled {
            Ok(Ok(())) => Ok(()),
            Ok(Err(end)) => {
                if let End::Malformed(e) = &end {
                    let _ = self.fatal(sqlstate::PROTOCOL_VIOLATION, e).await;
                }
                Err(end)
            }
            Err(_) => {
                let msg = "warden: internal error handling this message; the session is closed";
                let _ = self.fatal(sqlstate::INTERNAL_ERROR, msg).await;
                Err(End::Error("panic while handling a client message".into()))
            }
        }
    }

    /// Send the composed responses nothing is owed before, and the queued bytes.
    pub async fn flush_local(&mut self) -> Result<(), End> {
        self.drain_local().await?;
        self.flush_client().await
    }

    /// One server message: match it to the front expectation, mask rows when asked.
    pub(super) async fn on_server(&mut self, mut frame: Frame) -> Result<(), End> {
        tracing::trace!(tag = %(frame.tag as char), expect = self.expect.len(), "server message");
        if matches!(frame.tag, b'E' | b'N' | b'A' | b'S' | b'T') {
            frame = super::leaks::mask(frame);
        }
        if let Some(Expect::CopyTypes { .. }) = self.expect.front() {
            return self.on_copy_types(frame);
        }
        match frame.tag {
            b'D' => return self.on_data_row(frame).await,
            b'T' => {
                let fields = wire::parse_row_description(frame.body())
                    .map_err(|e| End::Error(e.to_string()))?;
                match self.expect.front_mut() {
                    Some(Expect::Query(r)) | Some(Expect::Execute(r)) => {
                        let cols: Vec<(String, u32)> = fields
                            .iter()
                            .map(|f| (f.name.clone(), f.type_oid))
                            .collect();
                        self.session.recorder().columns_typed(&cols);
                        r.fields = fields;
                    }
                    Some(Expect::DescribeStatement(name)) => {
                        let name = name.clone();
                        if let Some(p) = self.statements.get_mut(&name) {
                            p.fields = fields;
                        }
                        self.expect.pop_front();
                    }
                    Some(Expect::Described) => {
                        self.expect.pop_front();
                        if let Some(Expect::Execute(r)) = self.expect.front_mut() {
                            let cols: Vec<(String, u32)> = fields
                                .iter()
                                .map(|f| (f.name.clone(), f.type_oid))
                                .collect();
                            self.session.recorder().columns_typed(&cols);
                            r.fields = fields;
                        }
                        return Ok(());
                    }
                    Some(Expect::DescribePortal(name)) => {
                        let name = name.clone();
                        if let Some(p) = self.portals.get_mut(&name) {
                            p.fields = fields;
                        }
                        self.expect.pop_front();
                    }
                    _ => {}
                }
            }
            b'n' if matches!(self.expect.front(), Some(Expect::Described)) => {
                self.expect.pop_front();
                return Ok(());
            }
            b'n' => {
                if matches!(
                    self.expect.front(),
                    Some(Expect::DescribeStatement(_) | Expect::DescribePortal(_))
                ) {
                    self.expect.pop_front();
                }
            }
            b'1' | b'2' | b'3' => match self.expect.pop_front() {
                Some(Expect::Parse(Some((name, p)))) => {
                    self.statements.insert(name, p);
                }
                Some(Expect::Bind(Some((name, p)))) => {
                    self.portals.insert(name, p);
                }
                _ => {}
            },
            b'C' | b'I' | b's' => {
                self.flush_rows().await?;
                let swallowed = self.results().is_some_and(|r| r.swallow);
                // A result cut at its budget says how many rows the client got.
                let cut = self.results().filter(|r| r.cut).map(|r| r.returned.0);
                if let (b'C', Some(sent)) = (frame.tag, cut) {
                    let tag = wire::cstring(frame.body());
                    let verb = tag.split_whitespace().next().unwrap_or("SELECT");
                    frame = wire::command_complete(&format!("{verb} {sent}"));
                }
                if frame.tag == b'C' {
                    self.session
                        .recorder()
                        .complete(&wire::cstring(frame.body()));
                }
                match self.expect.front_mut() {
                    Some(Expect::Query(r)) => {
                        if let Some(Some((name, p))) = r.prepares.get_mut(r.stmt).map(Option::take)
                        {
                            self.statements.insert(name, p);
                        }
                        if let Some(i) = r.declares.iter().position(|d| d.0 == r.stmt) {
                            let (_, name, portal) = r.declares.swap_remove(i);
                            self.portals.insert(name, portal);
                        }
                        r.stmt += 1;
                        r.copy = false;
                        r.swallow = false;
                        r.cut = false;
                        r.copy_typing = None;
                        r.returned = (0, 0);
                        r.recorded = 0;
                        r.fields.clear();
                    }
                    Some(Expect::Execute(r)) => {
                        if let Some((_, name, portal)) = r.declares.pop() {
                            self.portals.insert(name, portal);
                        }
                        self.expect.pop_front();
                    }
                    _ => {}
                }
                if swallowed {
                    return Ok(());
                }
            }
            // The gateway's own failing statement: not the client's error.
            b'E' | b'N' if matches!(self.expect.front(), Some(Expect::Abort)) => return Ok(()),
            b'E' => {
                self.flush_rows().await?;
                let (_, text) = wire::parse_error_fields(frame.body());
                self.session.recorder().error(&text);
                // After an error the server skips the rest of the batch until Sync.
                while let Some(front) = self.expect.front() {
                    match front {
                        Expect::Sync | Expect::SyncInCopy | Expect::Query(_) => break,
                        _ => {
                            self.expect.pop_front();
                        }
                    }
                }
                // Nothing left to answer: the error is in the batch still open (its Sync not
                // sent), whose further messages the server will discard.
                self.failed = self.expect.is_empty();
                self.copy_in = false;
            }
            b'Z' => {
                self.flush_rows().await?;
                self.status = frame.body().first().copied().unwrap_or(b'I');
                self.failed = false;
                self.expect.pop_front();
                self.copy_in = false;
                self.copy_expected = false;
            }
            b'H' => {
                // CopyOutResponse: binary COPY cannot be masked line by line.
                let binary = frame.body().first() == Some(&1);
                if let Some(r) = self.results_mut() {
                    r.copy = true;
                    r.copy_lines = 0;
                    let stmt = r.stmt;
                    r.copy_typing = r
                        .copy_types
                        .iter()
                        .find(|t| t.0 == stmt)
                        .map(|(_, spec, fields)| (spec.clone(), fields.clone()));
                    if binary && r.mask_decision().is_some() && r.copy_typing.is_none() {
                        r.swallow = true;
                        self.to_client.extend_from_slice(&wire::error(
                            "ERROR",
                            sqlstate::FEATURE_NOT_SUPPORTED,
                            "warden: binary COPY cannot be masked; use the text or CSV format",
                        ));
                        return Ok(());
                    }
                }
            }
            b'd' => {
                if self.results().is_some_and(|r| r.swallow)
                    || self.over_read_budget(&frame).await?
                {
                    return Ok(());
                }
                if self.results().and_then(Results::mask_decision).is_some() {
                    return self.on_copy_line(frame).await;
                }
            }
            b'c' => {
                self.flush_rows().await?;
                if self.results().is_some_and(|r| r.swallow) {
                    return Ok(());
                }
            }
            b'G' => {
                self.copy_in = true;
                self.expect.retain(|e| !matches!(e, Expect::SyncInCopy));
            }
            b'N' => {
                let (_, text) = wire::parse_error_fields(frame.body());
                self.session.recorder().notice(&text);
            }
            // A pinned lexing setting changed, however it was done: end the session before
            // another statement is read the gateway's way and run the server's.
            b'S' if super::params::broken_pin(frame.body()).is_some() => {
                let msg = super::params::broken_pin(frame.body()).unwrap_or_default();
                let _ = self.fatal(sqlstate::INSUFFICIENT_PRIVILEGE, &msg).await;
                return Err(End::Error(msg));
            }
            // The session became a superuser (SET ROLE, SET SESSION AUTHORIZATION): the login
            // check makes this unreachable; should it happen anyway, end the session.
            b'S' if !self.privileged_ok && super::upstream::is_superuser(&frame) => {
                let msg = "warden: the session became a superuser upstream; terminating it";
                let _ = self.fatal(sqlstate::INSUFFICIENT_PRIVILEGE, msg).await;
                return Err(End::Error(msg.into()));
            }
            _ => {}
        }
        self.to_client.extend_from_slice(&frame.raw);
        self.flush_client_if_idle().await
    }

    /// Send composed responses that have reached the front of the queue.
    async fn drain_local(&mut self) -> Result<(), End> {
        let mut sent = false;
        while let Some(Expect::Local(_)) = self.expect.front() {
            if let Some(Expect::Local(bytes)) = self.expect.pop_front() {
                self.to_client.extend_from_slice(&bytes);
                sent = true;
            }
        }
        if sent {
            self.flush_client().await?;
        }
        Ok(())
    }

    /// Queue a composed response behind everything still expected from the server.
    pub fn local(&mut self, bytes: bytes::Bytes) {
        queue_local(&mut self.expect, &mut self.to_client, bytes);
    }

    /// Relay server messages until every expected response has arrived (before holding a
    /// statement for approval, so the client has seen all earlier results).
    /// The server's next message, waited for.
    pub(super) async fn server_message(&mut self) -> Result<Frame, End> {
        self.up_r
            .next()
            .await
            .map_err(|e| End::ServerClosed(e.to_string()))
    }

    pub async fn settle(&mut self) -> Result<(), End> {
        while !self.expect.is_empty() {
            let frame = self.server_message().await?;
            self.on_server(frame).await?;
            self.drain_local().await?;
        }
        self.flush_client().await
    }

    pub(super) fn results(&self) -> Option<&Results> {
        match self.expect.front() {
            Some(Expect::Query(r)) | Some(Expect::Execute(r)) => Some(r),
            _ => None,
        }
    }

    pub(super) fn results_mut(&mut self) -> Option<&mut Results> {
        match self.expect.front_mut() {
            Some(Expect::Query(r)) | Some(Expect::Execute(r)) => Some(r),
            _ => None,
        }
    }

    /// Write queued client bytes when no further server message is already buffered, so a
    /// stream of rows goes out in large writes.
    pub(super) async fn flush_client_if_idle(&mut self) -> Result<(), End> {
        if self.to_client.len() >= 64 * 1024 || !self.up_r.has_frame() {
            self.flush_client().await?;
        }
        Ok(())
    }

    pub async fn flush_client(&mut self) -> Result<(), End> {
        if !self.to_client.is_empty() && !self.hold {
            let out = self.to_client.split();
            self.client_w
                .write_all(&out)
                .await
                .map_err(|_| End::ClientClosed)?;
        }
        Ok(())
    }

    pub async fn flush_upstream(&mut self) -> Result<(), End> {
        if !self.to_upstream.is_empty() {
            let out = self.to_upstream.split();
            self.up_w
                .write_all(&out)
                .await
                .map_err(|e| End::ServerClosed(e.to_string()))?;
        }
        Ok(())
    }

    /// Tell the client why the session ends.
    pub async fn fatal(&mut self, code: &str, text: &str) -> Result<(), End> {
        // Whatever was held for a measured statement is not the client's to see now.
        if self.hold {
            self.hold = false;
            self.to_client.clear();
        }
        self.to_client
            .extend_from_slice(&wire::error("FATAL", code, text));
        self.flush_client().await
    }
}

/// Queue a composed response behind everything still expected from the server, so the client
/// sees responses in request order.
pub(super) fn queue_local(
    expect: &mut VecDeque<Expect>,
    to_client: &mut BytesMut,
    bytes: bytes::Bytes,
) {
    if expect.is_empty() {
        to_client.extend_from_slice(&bytes);
    } else {
        expect.push_back(Expect::Local(bytes));
    }
}
