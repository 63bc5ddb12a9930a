//! Client messages: every statement is judged before a byte of it reaches the server.
//!
//! Simple Query (here): all statements of the message are checked; one refusal refuses the
//! message and nothing of it is forwarded. The extended protocol is in `extended.rs`.
//!
//! The gateway keeps the server's state, not the client's wishes: a prepared statement or portal
//! is bound to its verdict only once the server confirms it (ParseComplete, BindComplete, a
//! PREPARE's CommandComplete), so a Parse the server refuses never replaces a name's verdict.
//! SQL `EXECUTE name` is judged as the statement it runs. A refusal fails the server's
//! transaction as a server error would (see [`Relay::fail_upstream`]).

use super::budget;
use super::decode::ClientMessage;
use super::relay::{End, Expect, Portal, Prepared, Relay, Results};
use super::wire::{self, Frame, WireError, sqlstate};
use crate::command::sql::{self, PreparedOp, Statement, Unreadable};
use crate::policy::{Budget, Command, Sql, Verdict};
use crate::session::{Client, Ending, Interrupt, Judged, Refused, Ruling};
use bytes::BytesMut;
use std::collections::HashMap;
use std::sync::Arc;

/// The extended-protocol batch since the last Sync: what to undo if it is refused.
#[derive(Default)]
pub(super) struct Batch {
    /// Expectations this batch queued that have not gone to the server yet (the last ones in
    /// the queue: earlier ones leave from the front as their answers come, so a position
    /// would not stay true).
    pub(super) unsent: usize,
    /// Whether part of it already went to the server (a Flush): that part will be answered,
    /// refusal or not.
    pub(super) forwarded: bool,
    /// A refusal happened: discard client messages until Sync.
    pub(super) skipping: bool,
    /// An Execute in it runs under a write budget (the combined limits), and the statement's
    /// text for the audit: the batch is measured at its Sync.
    pub(super) budget: Option<Budget>,
    pub(super) text: String,
    /// It executes transaction control (which would end the gateway's measuring transaction),
    /// or COPY ... FROM STDIN (whose data would have to flow while results are held). A BEGIN
    /// before any measured statement is not counted: it went to the server at once (`begun`),
    /// and the batch's writes are measured inside the block it opened.
    pub(super) controls_transaction: bool,
    pub(super) begun: bool,
    /// Send what is held, with a Flush, once the current message is queued.
    pub(super) flush_after: bool,
    pub(super) copies: bool,
    pub(super) open: bool,
}

pub(super) fn decode<M: ClientMessage>(frame: &Frame) -> Result<M, End> {
    M::from_body(frame.body()).map_err(|e| End::Malformed(e.to_string()))
}

impl Relay {
    /// One client message.
    pub(super) async fn on_client(&mut self, frame: Frame) -> Result<(), End> {
        tracing::trace!(tag = %(frame.tag as char), skipping = self.batch.skipping, "client message");
        if self.batch.skipping && frame.tag != b'S' {
            return Ok(());
        }
        if self.failed && self.batch.open && frame.tag != b'S' {
            // The server failed the flushed part of this batch and discards the rest of it up
            // to the Sync, a Query included: so does the gateway, answering nothing (the
            // server would not), judging nothing (none of it will run).
            return self.refuse_batch().await;
        }
        match frame.tag {
            b'Q' => self.on_query(frame).await,
            b'P' | b'B' | b'D' | b'E' | b'C' | b'H' | b'S' => self.on_extended(frame).await,
            b'd' | b'c' | b'f' if self.copy_in || self.copy_expected => {
                if self.batch.budget.is_some() {
                    // COPY data would send a batch to be measured before its measuring starts.
                    self.refuse(sqlstate::FEATURE_NOT_SUPPORTED, UNMEASURABLE);
                    return self.refuse_batch().await;
                }
                if frame.tag != b'd' {
                    self.client_copying = false;
                }
                // COPY data may come before the server's CopyInResponse (pgx pipelines it):
                // the server reads it in order once it is ready. An open batch goes with it.
                if self.batch.open {
                    self.batch.forwarded = true;
                    self.batch.unsent = 0;
                }
                self.to_upstream.extend_from_slice(&frame.raw);
                self.flush_upstream().await
            }
            b'd' | b'c' | b'f' => Ok(()), // stray COPY data: the server ignores it too
            b'X' => {
                self.to_upstream.extend_from_slice(&frame.raw);
                let _ = self.flush_upstream().await;
                Err(End::ClientClosed)
            }
            other => {
                let msg = format!("unsupported message type `{}`", other as char);
                let _ = self.fatal(sqlstate::PROTOCOL_VIOLATION, &msg).await;
                Err(End::Error(msg))
            }
        }
    }

    async fn on_query(&mut self, frame: Frame) -> Result<(), End> {
        // Exactly one NUL, at the end, as the server requires; anything else would be read
        // differently by the server than by the gateway.
        let body = frame.body();
        if body.last() != Some(&0) || body[..body.len() - 1].contains(&0) {
            return Err(End::Malformed(
                "malformed Query: the text must end with its one NUL terminator".into(),
            ));
        }
        let text = wire::cstring(body);
        if self.batch.open
            && !self.batch.skipping
            && (self.batch.unsent > 0 || self.batch.budget.is_some())
        {
            // A Query while an extended batch holds messages (before its Sync or a Flush) would
            // take them to the server with it, and the server commits the batch's implicit
            // transaction at the end of the Query: what the batch writes would not be measured
            // as one, and the gateway's readings would interleave with the client's. No driver
            // does this; the batch is refused and the client's messages are skipped up to its
            // Sync (this Query too), as the server skips them after an error. (A Query after a
            // batch that was flushed whole is the server's to run, as drivers do.)
            let u = Unreadable {
                code: sqlstate::FEATURE_NOT_SUPPORTED,
                reason: "warden: a Query inside an extended-protocol batch is refused; end the \
                         batch with Sync first"
                    .into(),
            };
            self.refuse_unreadable(&text, &u).await?;
            return self.refuse_batch().await;
        }
        let statements = match read(&text, &self.views)
            .await
            .and_then(|s| self.check_sql(s, None))
        {
            Ok(s) => s,
            Err(u) => {
                self.refuse_unreadable(&text, &u).await?;
                return self.fail_upstream(None).await;
            }
        };
        if statements.is_empty() {
            // Only whitespace or comments: the server answers EmptyQueryResponse.
            self.expect.push_back(Expect::Query(Results::new(None)));
            self.to_upstream.extend_from_slice(&frame.raw);
            return self.flush_upstream().await;
        }
        let commands: Vec<Command> = statements
            .iter()
            .map(|s| Command::Sql(s.sql.clone()))
            .collect();
        let Some(ruling) = self.judge(&text, &commands).await? else {
            return self.fail_upstream(None).await;
        };
        let ruling = Arc::new(ruling);
        let mask = ruling.needs_mask().then(|| ruling.clone());
        let budget = ruling.budget();
        let mut results = Results::new(mask).with_read_budget(budget.as_ref());
        results.prepares = statements
            .iter()
            .enumerate()
            .map(|(i, s)| match (&s.prepared, &s.inner) {
                (PreparedOp::Prepare(name), Some(inner)) => Some((
                    name.clone(),
                    Prepared {
                        ruling: ruling.clone(),
                        stmt: i,
                        fields: Vec::new(),
                        sql: Some(inner.clone()),
                        declares: None,
                        judged: false,
                    },
                )),
                _ => None,
            })
            .collect();
        results.declares = statements
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let name = s.cursor.clone().filter(|n| !n.is_empty() && declares(s))?;
                Some((i, name, Portal::cursor(ruling.clone(), i, &s.sql.text)))
            })
            .collect();
        self.forgets(&statements);
        let budget = budget.filter(Budget::limits_writes);
        if let Some(budget) = budget.filter(|_| {
            statements
                .iter()
                .any(|s| budget::can_write(&s.sql, &self.plain_tables))
        }) {
            // Measured as one transaction of the gateway's: the message may not end or start
            // one itself, and COPY data would have to flow while results are held.
            let unmeasurable = statements
                .iter()
                .any(|s| controls_transaction(&s.sql, &self.plain_tables) || copy_in(&s.sql));
            if unmeasurable {
                let u = Unreadable {
                    code: sqlstate::FEATURE_NOT_SUPPORTED,
                    reason: UNMEASURABLE.into(),
                };
                self.refuse_unreadable(&text, &u).await?;
                return self.fail_upstream(None).await;
            }
            self.expect.push_back(Expect::Query(results));
            return self
                .run_within(frame.raw.to_vec(), 1, &text, &budget, false, false)
                .await;
        }
        self.copy_expected |= copies_in(&statements);
        self.client_copying |= copies_in(&statements);
        self.describe_copies(&statements, &ruling);
        self.expect.push_back(Expect::Query(results));
        self.to_upstream.extend_from_slice(&frame.raw);
        self.flush_upstream().await
    }

    /// Before a Query with a masked `COPY ... TO STDOUT`, ask the server for the types of its
    /// columns (Parse and Describe of an equivalent SELECT on the unnamed statement, which the
    /// Query replaces anyway, then Sync): its lines are then masked cell by cell like rows.
    /// Not inside a client's unsynced batch, whose Sync the gateway's would pre-empt.
    fn describe_copies(&mut self, statements: &[Statement], ruling: &Ruling) {
        if self.batch.unsent > 0 || self.batch.forwarded {
            return;
        }
        for (i, s) in statements.iter().enumerate() {
            let Some(spec) = &s.copy_out else { continue };
            if ruling.mask_for(i).is_none() {
                continue;
            }
            self.to_upstream
                .extend_from_slice(&wire::parse("", &spec.select));
            self.to_upstream
                .extend_from_slice(&wire::describe_statement(""));
            self.to_upstream.extend_from_slice(&wire::sync());
            self.expect.push_back(Expect::CopyTypes {
                stmt: i,
                spec: spec.clone(),
                fields: Vec::new(),
            });
        }
    }

    /// Check what the gateway itself guards in a message's statements: the pinned lexing
    /// settings, and that every EXECUTE names a statement the server confirmed (or one
    /// PREPAREd earlier in the same message), described as the statement it runs. `parse`:
    /// the protocol Parse this text came in, where PREPARE cannot be followed.
    pub(super) fn check_sql(
        &self,
        mut statements: Vec<Statement>,
        parse: Option<&str>,
    ) -> Result<Vec<Statement>, Unreadable> {
        let mut earlier: HashMap<String, Sql> = HashMap::new();
        let mut declared: Vec<String> = Vec::new();
        for s in &mut statements {
            super::params::check_statement(&s.sql)?;
            if let Some(name) = s.cursor.as_ref().filter(|_| declares(s)) {
                declared.push(name.clone());
            }
            if let Some(name) = &s.fetches
                && !declared.contains(name)
            {
                self.check_cursor(name)?;
            }
            match &s.prepared {
                PreparedOp::Prepare(_) if parse.is_some() => {
                    return Err(Unreadable {
                        code: sqlstate::FEATURE_NOT_SUPPORTED,
                        reason: "warden: PREPARE inside a protocol-level Parse is not supported; send it as a simple query".into(),
                    });
                }
                PreparedOp::Prepare(name) => {
                    if let Some(inner) = &s.inner {
                        earlier.insert(name.clone(), inner.clone());
                    }
                }
                PreparedOp::Execute(name) => {
                    let inner = earlier
                        .get(name)
                        .cloned()
                        .or_else(|| self.statement(name).and_then(|p| p.sql.clone()));
                    let Some(inner) = inner else {
                        return Err(Unreadable {
                            code: sqlstate::INVALID_STATEMENT_NAME,
                            reason: format!(
                                "warden: prepared statement \"{name}\" does not exist or was refused by policy"
                            ),
                        });
                    };
                    runs(&mut s.sql, &inner);
                }
                _ => {}
            }
        }
        Ok(statements)
    }

    /// A statement the server has (or will have, when its Parse is still in flight: a
    /// pipelined Bind uses it; should that Parse fail, the server skips the Bind too).
    pub(super) fn statement(&self, name: &str) -> Option<&Prepared> {
        self.expect
            .iter()
            .rev()
            .find_map(|e| match e {
                Expect::Parse(Some((n, p))) if n == name => Some(p),
                _ => None,
            })
            .or_else(|| self.statements.get(name))
    }

    /// [`Self::statement`], to change.
    pub(super) fn statement_mut(&mut self, name: &str) -> Option<&mut Prepared> {
        let queued = self
            .expect
            .iter()
            .rposition(|e| matches!(e, Expect::Parse(Some((n, _))) if n == name));
        match queued {
            Some(i) => match self.expect.get_mut(i) {
                Some(Expect::Parse(Some((_, p)))) => Some(p),
                _ => None,
            },
            None => self.statements.get_mut(name),
        }
    }

    /// Rows read through a cursor (FETCH, MOVE, a protocol Execute) are judged by the query
    /// that declared it, so that query must be one this gateway judged under the policies in
    /// force:
    /// - declared before the policies changed (a reloaded chain, a hot-loaded module): refused
    ///   (55000), audited; declaring it again judges it anew;
    /// - never seen declared: refused (34000). A cursor a function opened, or one a failed
    ///   DECLARE or CLOSE left the gateway unsure of, would otherwise be read unjudged.
    pub(super) fn check_cursor(&self, name: &str) -> Result<(), Unreadable> {
        match self.portal(name) {
            Some(p) if p.ruling.seq != 0 && !self.session.is_current(&p.ruling) => {
                Err(Unreadable {
                    code: sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    reason: format!(
                        "warden: the gateway's policies changed since \"{name}\" was bound; \
                         declare the cursor (or bind the portal) again"
                    ),
                })
            }
            Some(_) => Ok(()),
            // Declared by a statement still in flight (pipelined), judged just now.
            None if self.expect.iter().any(|e| match e {
                Expect::Query(r) | Expect::Execute(r) => r.declares.iter().any(|d| d.1 == name),
                _ => false,
            }) =>
            {
                Ok(())
            }
            None => Err(Unreadable {
                code: sqlstate::INVALID_CURSOR_NAME,
                reason: format!(
                    "warden: cursor \"{name}\" was not declared through this gateway (or its \
                     DECLARE failed): only a cursor whose query the gateway judged can be read"
                ),
            }),
        }
    }

    /// A portal, the same way.
    pub(super) fn portal(&self, name: &str) -> Option<&Portal> {
        self.expect
            .iter()
            .rev()
            .find_map(|e| match e {
                Expect::Bind(Some((n, p))) if n == name => Some(p),
                _ => None,
            })
            .or_else(|| self.portals.get(name))
    }

    /// DEALLOCATE / DISCARD ALL: forget at once. Should the server refuse, a later use is
    /// refused by the gateway too: forgetting early only ever narrows what can run.
    pub(super) fn forgets(&mut self, statements: &[Statement]) {
        for s in statements {
            // SQL cursors are portals: DECLARE replaces one, CLOSE removes it.
            match s.cursor.as_deref() {
                Some("") => self.portals.clear(),
                Some(name) => {
                    self.portals.remove(name);
                }
                None => {}
            }
            match &s.prepared {
                PreparedOp::Deallocate(name) => {
                    self.statements.remove(name);
                }
                PreparedOp::DeallocateAll => self.statements.clear(),
                _ => {}
            }
        }
    }

    /// Audit and answer a message the gateway refuses before any policy (a syntax error, a
    /// differential, a pinned setting, an unknown prepared statement).
    pub(super) async fn refuse_unreadable(
        &mut self,
        text: &str,
        u: &Unreadable,
    ) -> Result<(), End> {
        if let Err(e) = self.session.refuse(text, "sql", &u.reason).await {
            let msg = format!("warden: cannot record the refusal: {e}");
            let _ = self.fatal(sqlstate::INTERNAL_ERROR, &msg).await;
            return Err(End::Error(msg));
        }
        self.refuse(u.code, &u.reason);
        Ok(())
    }

    /// Judge a message through the session path's one judge. `None`: refused (the client
    /// has the error). Before a hold, earlier results are settled so the client has seen
    /// everything that came before the held statement.
    pub(super) async fn judge(
        &mut self,
        text: &str,
        commands: &[Command],
    ) -> Result<Option<Ruling>, End> {
        let decided = self.session.decide(text, commands).await;
        self.carry(text, decided).await
    }

    /// Carry out a decision (see [`Relay::judge`]).
    pub(super) async fn carry(
        &mut self,
        text: &str,
        decided: Result<Ruling, crate::session::SessionError>,
    ) -> Result<Option<Ruling>, End> {
        if let Ok(r) = &decided
            && matches!(r.decision.verdict, Verdict::RequireApproval(_))
        {
            self.settle().await?;
        }
        let Relay {
            session,
            to_client,
            client_w,
            client_r,
            expect,
            cancel,
            ..
        } = self;
        let mut client = PgClient {
            recorder: session.recorder(),
            to_client,
            client_w,
            client_r,
            expect,
            cancel,
            held: Vec::new(),
            held_bytes: 0,
        };
        let judged = match decided {
            Ok(ruling) => session.carry_out(text, ruling, &mut client).await,
            Err(e) => session.undecided(e, &mut client).await,
        };
        // What the client sent while its statement was held (the rest of its pipeline: Bind,
        // Execute, Sync...) is handled next, in order, before anything new is read.
        let held = std::mem::take(&mut client.held);
        self.pending.extend(held);
        match judged {
            Judged::Forward(ruling) => Ok(Some(ruling)),
            Judged::Refused => Ok(None),
            Judged::End(Ending::Shutdown) => {
                let _ = self.fatal(sqlstate::ADMIN_SHUTDOWN, "terminating connection due to administrator command (warden is shutting down)").await;
                Err(End::Shutdown)
            }
            Judged::End(Ending::ClientGone) => Err(End::ClientClosed),
            Judged::End(Ending::Fatal(e)) => Err(End::Error(e)),
        }
    }

    pub(super) fn refuse(&mut self, code: &str, text: &str) {
        self.session.recorder().error(text);
        self.local(wire::error("ERROR", code, text));
    }
}

/// The PostgreSQL client as the one judge speaks to it: refusals are `ERROR`s queued behind
/// the responses still owed (42501, or 57014 for a withdrawn statement), notices go out at
/// once, and a client waiting for an approver may cancel (a CancelRequest), terminate or
/// leave — anything else breaks the protocol.
struct PgClient<'a> {
    recorder: &'a crate::recording::Recorder,
    to_client: &'a mut BytesMut,
    client_w: &'a mut tokio::io::WriteHalf<crate::proxy::BoxedIo>,
    client_r: &'a mut wire::FrameReader<tokio::io::ReadHalf<crate::proxy::BoxedIo>>,
    expect: &'a mut std::collections::VecDeque<Expect>,
    cancel: &'a tokio::sync::Notify,
    /// Messages the client sent while waiting, kept for after the wait.
    held: Vec<Frame>,
    held_bytes: usize,
}

/// What the gateway sends the server to fail its transaction after a refusal: it fails while
/// it is parsed (a literal that is not an integer). The gateway's own statements start with
/// `/* warden: ` (the server's log shows them).
pub(super) const FAILING: &str = "/* warden: a refusal fails the transaction */ SELECT 'warden: statement refused'::pg_catalog.int4";

/// Why a message under a write budget cannot be measured as it is.
pub(super) const UNMEASURABLE: &str = "warden: under a write budget, send transaction control and COPY ... FROM STDIN in messages (or batches) of their own";

/// Messages longer than this are parsed off the async workers.
const LONG_MESSAGE: usize = 64 * 1024;

/// Messages (and bytes) a client may send while its statement waits for an approver: its
/// pipeline's rest; far more is not a pipeline.
const MAX_HELD_MESSAGES: usize = 4096;
const MAX_HELD_BYTES: usize = 4 << 20;

impl Client for PgClient<'_> {
    async fn refused(&mut self, why: Refused, message: &str) {
        self.recorder.error(message);
        let code = match why {
            Refused::Denied => sqlstate::INSUFFICIENT_PRIVILEGE,
            Refused::Cancelled => sqlstate::QUERY_CANCELED,
        };
        super::relay::queue_local(
            self.expect,
            self.to_client,
            wire::error("ERROR", code, message),
        );
    }

    async fn notice(&mut self, message: &str, hint: Option<&str>) {
        self.recorder.notice(message);
        self.to_client
            .extend_from_slice(&wire::notice(message, hint));
        let out = self.to_client.split();
        let _ = tokio::io::AsyncWriteExt::write_all(self.client_w, &out).await;
    }

    async fn interrupted(&mut self) -> Interrupt {
        loop {
            tokio::select! {
                _ = self.cancel.notified() => return Interrupt::Cancel,
                frame = self.client_r.next() => match frame {
                    Err(WireError::Closed) | Ok(Frame { tag: b'X', .. }) => return Interrupt::Gone,
                    Ok(f) => {
                        self.held_bytes += f.raw.len();
                        if self.held.len() >= MAX_HELD_MESSAGES || self.held_bytes > MAX_HELD_BYTES {
                            return Interrupt::Fatal(
                                "too many messages while waiting for approval".into(),
                            );
                        }
                        self.held.push(f);
                    }
                    Err(e) => return Interrupt::Fatal(e.to_string()),
                },
            }
        }
    }
}

/// Read a message's SQL as the server will, following the target's `views`. A long message is
/// read on a blocking thread: its parse must not hold up the other sessions this worker serves.
pub(super) async fn read(
    text: &str,
    views: &Arc<sql::Views>,
) -> Result<Vec<Statement>, Unreadable> {
    let parse_following = |text: &str, views: &sql::Views| {
        sql::parse(text).map(|mut s| {
            views.follow_all(&mut s);
            s
        })
    };
    if text.len() <= LONG_MESSAGE {
        return parse_following(text, views);
    }
    let owned = text.to_string();
    let views = Arc::clone(views);
    tokio::task::spawn_blocking(move || parse_following(&owned, &views))
        .await
        .unwrap_or_else(|_| {
            Err(Unreadable {
                code: sqlstate::INTERNAL_ERROR,
                reason: "warden: the SQL reader failed on this message".into(),
            })
        })
}

/// Whether a statement would escape the measuring of writes: transaction control (it would end
/// the gateway's transaction), or a cursor over a statement that can write (its rows, and its
/// writes, come later: at FETCH, or at COMMIT for WITH HOLD).
pub(super) fn controls_transaction(s: &Sql, plain: &std::collections::HashSet<String>) -> bool {
    matches!(s.kind.as_str(), "begin" | "commit" | "rollback")
        || (s.statement_type == "DeclareCursorStmt" && budget::can_write(s, plain))
}

/// Whether a statement is `COPY ... FROM STDIN`.
pub(super) fn copy_in(s: &Sql) -> bool {
    s.copy
        .as_ref()
        .is_some_and(|c| c.is_from && c.target == crate::policy::CopyTarget::Stdio)
}

pub(super) fn copies_in(statements: &[Statement]) -> bool {
    statements.iter().any(|s| copy_in(&s.sql))
}

/// EXECUTE runs a prepared statement: policies judge what it runs. At the top level the
/// record becomes the prepared statement's (the text and `ExecuteStmt` stay); inside EXPLAIN
/// ANALYZE or CREATE TABLE AS its tables, writes and calls are added.
pub(super) fn runs(sql: &mut Sql, inner: &Sql) {
    if sql.statement_type == "ExecuteStmt" {
        sql.kind = inner.kind.clone();
        sql.has_where = inner.has_where;
        sql.limit = inner.limit;
        sql.copy = inner.copy.clone();
    }
    sql::join(&mut sql.tables, &inner.tables);
    sql::join(&mut sql.functions, &inner.functions);
    sql.writes.extend(inner.writes.iter().cloned());
    // What the prepared query does with each column (sent as is, transformed, used to filter):
    // a policy that reads lineage judges EXECUTE by the query it runs, whenever it was
    // prepared (a chain reloaded since the PREPARE judges it now).
    for c in &inner.columns {
        if !sql.columns.contains(c) {
            sql.columns.push(c.clone());
        }
    }
}

/// The ruling of an empty statement: nothing to mask.
pub(super) fn empty_ruling() -> Ruling {
    Ruling {
        decision: crate::policy::Decision::combine_all(&[]),
        per_command: Vec::new(),
        seq: 0,
        generation: crate::session::Generation::default(),
        commands: std::sync::Arc::from(Vec::new()),
    }
}

/// Whether a statement opens a SQL cursor (its `cursor` names it); CLOSE names one too.
pub(super) fn declares(s: &Statement) -> bool {
    s.sql.statement_type == "DeclareCursorStmt"
}
