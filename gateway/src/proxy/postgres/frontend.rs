//! Client messages: every statement is judged before a byte of it reaches the server.
//!
//! Simple Query: all statements of the message are checked; one refusal refuses the message and
//! nothing of it is forwarded. Extended protocol: messages are held until Sync (or Flush); the
//! verdict is taken on Parse, and Bind / Describe / Execute of a statement that was not allowed
//! are refused; a refusal drops the held batch and discards the client's messages up to its
//! Sync, exactly as the server would after an error.
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
use pgwire::messages::extendedquery::{Bind, Close, Describe, Execute, Parse};
use std::collections::HashMap;
use std::sync::Arc;

/// The extended-protocol batch since the last Sync: what to undo if it is refused.
#[derive(Default)]
pub(super) struct Batch {
    /// Expectations this batch queued that have not gone to the server yet (the last ones in
    /// the queue: earlier ones leave from the front as their answers come, so a position
    /// would not stay true).
    unsent: usize,
    /// Whether part of it already went to the server (a Flush): that part will be answered,
    /// refusal or not.
    forwarded: bool,
    /// A refusal happened: discard client messages until Sync.
    skipping: bool,
    /// An Execute in it runs under a write budget (the combined limits), and the statement's
    /// text for the audit: the batch is measured at its Sync.
    budget: Option<Budget>,
    text: String,
    /// It executes transaction control (which would end the gateway's measuring transaction),
    /// or COPY ... FROM STDIN (whose data would have to flow while results are held).
    controls_transaction: bool,
    copies: bool,
    open: bool,
}

fn decode<M: ClientMessage>(frame: &Frame) -> Result<M, End> {
    M::from_body(frame.body()).map_err(|e| End::Malformed(e.to_string()))
}

impl Relay {
    /// One client message.
    pub(super) async fn on_client(&mut self, frame: Frame) -> Result<(), End> {
        tracing::trace!(tag = %(frame.tag as char), skipping = self.batch.skipping, "client message");
        if self.batch.skipping && frame.tag != b'S' {
            return Ok(());
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
        let statements = match read(&text).await.and_then(|s| self.check_sql(s, None)) {
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
            return self.run_within(frame.raw.to_vec(), 1, &text, &budget).await;
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
    fn check_sql(
        &self,
        mut statements: Vec<Statement>,
        parse: Option<&str>,
    ) -> Result<Vec<Statement>, Unreadable> {
        let mut earlier: HashMap<String, Sql> = HashMap::new();
        for s in &mut statements {
            super::params::check_statement(&s.sql)?;
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
    fn statement(&self, name: &str) -> Option<&Prepared> {
        self.expect
            .iter()
            .rev()
            .find_map(|e| match e {
                Expect::Parse(Some((n, p))) if n == name => Some(p),
                _ => None,
            })
            .or_else(|| self.statements.get(name))
    }

    /// A portal, the same way.
    fn portal(&self, name: &str) -> Option<&Portal> {
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
    fn forgets(&mut self, statements: &[Statement]) {
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
    async fn refuse_unreadable(&mut self, text: &str, u: &Unreadable) -> Result<(), End> {
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
    async fn judge(&mut self, text: &str, commands: &[Command]) -> Result<Option<Ruling>, End> {
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

    fn refuse(&mut self, code: &str, text: &str) {
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
const UNMEASURABLE: &str = "warden: under a write budget, send transaction control and COPY ... FROM STDIN in messages (or batches) of their own";

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

impl Relay {
    async fn on_extended(&mut self, frame: Frame) -> Result<(), End> {
        if !self.batch.open {
            self.batch = super::frontend::Batch {
                unsent: 0,
                open: true,
                ..Default::default()
            };
        }
        match frame.tag {
            b'P' => {
                let parse: Parse = decode(&frame)?;
                let name = parse.name.unwrap_or_default();
                if name.is_empty() {
                    // The server drops the unnamed statement before it reads the new one.
                    self.statements.remove("");
                }
                let statements = match read(&parse.query)
                    .await
                    .and_then(|s| self.check_sql(s, Some(&name)))
                {
                    Ok(s) => s,
                    Err(u) => {
                        self.refuse_unreadable(&parse.query, &u).await?;
                        return self.refuse_batch().await;
                    }
                };
                let commands: Vec<Command> = statements
                    .iter()
                    .map(|s| Command::Sql(s.sql.clone()))
                    .collect();
                let ruling = if commands.is_empty() {
                    None
                } else {
                    match self.judge(&parse.query, &commands).await? {
                        Some(r) => Some(r),
                        None => return self.refuse_batch().await,
                    }
                };
                self.forgets(&statements);
                let ruling = Arc::new(ruling.unwrap_or_else(empty_ruling));
                let prepared = Prepared {
                    ruling,
                    stmt: 0,
                    fields: Vec::new(),
                    sql: statements.first().map(|s| s.sql.clone()),
                    declares: statements
                        .first()
                        .filter(|s| declares(s))
                        .and_then(|s| s.cursor.clone())
                        .filter(|n| !n.is_empty()),
                    judged: true,
                };
                self.expect.push_back(Expect::Parse(Some((name, prepared))));
                self.batch.unsent += 1;
            }
            b'B' => {
                let bind: Bind = decode(&frame)?;
                let statement = bind.statement_name.unwrap_or_default();
                let Some(prepared) = self.statement(&statement).cloned() else {
                    return self.unknown_statement(&statement).await;
                };
                let (ruling, stmt) = if prepared.judged {
                    (prepared.ruling.clone(), prepared.stmt)
                } else {
                    // A SQL-PREPAREd statement bound by the protocol: judged as EXECUTE is.
                    let text = format!("EXECUTE {statement}");
                    let Some(mut sql) = prepared.sql.clone() else {
                        return self.unknown_statement(&statement).await;
                    };
                    sql.text = text.clone();
                    sql.statement_type = "ExecuteStmt".into();
                    match self.judge(&text, &[Command::Sql(sql)]).await? {
                        Some(r) => (Arc::new(r), 0),
                        None => return self.refuse_batch().await,
                    }
                };
                // The portal keeps the verdict of the statement it was bound from, whatever
                // later happens to that name.
                let budget = ruling.budget();
                let write_budget = budget.clone().filter(Budget::limits_writes).filter(|_| {
                    prepared
                        .sql
                        .as_ref()
                        .is_some_and(|s| budget::can_write(s, &self.plain_tables))
                });
                let portal = Portal {
                    budget,
                    controls_transaction: prepared
                        .sql
                        .as_ref()
                        .is_some_and(|s| controls_transaction(s, &self.plain_tables)),
                    text: prepared
                        .sql
                        .as_ref()
                        .map(|s| s.text.clone())
                        .unwrap_or_default(),
                    write_budget,
                    ruling,
                    stmt,
                    copies_in: prepared.sql.as_ref().is_some_and(copy_in),
                    formats: bind.result_column_format_codes,
                    fields: prepared.fields.clone(),
                    declares: prepared.declares.clone(),
                };
                let name = bind.portal_name.unwrap_or_default();
                self.expect.push_back(Expect::Bind(Some((name, portal))));
                self.batch.unsent += 1;
            }
            b'D' => {
                let d: Describe = decode(&frame)?;
                let name = d.name.unwrap_or_default();
                if d.target_type == b'S' {
                    if self.statement(&name).is_none() {
                        return self.unknown_statement(&name).await;
                    }
                    self.expect.push_back(Expect::DescribeStatement(name));
                    self.batch.unsent += 1;
                } else {
                    if self.portal(&name).is_none() {
                        return self.unknown_statement(&format!("portal {name}")).await;
                    }
                    self.expect.push_back(Expect::DescribePortal(name));
                    self.batch.unsent += 1;
                }
            }
            b'E' => {
                let e: Execute = decode(&frame)?;
                let name = e.name.unwrap_or_default();
                let Some(portal) = self.portal(&name) else {
                    return self.unknown_statement(&format!("portal {name}")).await;
                };
                self.batch.controls_transaction |= portal.controls_transaction;
                let Some(portal) = self.portal(&name) else {
                    return self.unknown_statement(&format!("portal {name}")).await;
                };
                if let Some((b, text)) = portal
                    .write_budget
                    .clone()
                    .map(|b| (b, portal.text.clone()))
                {
                    if self.batch.forwarded {
                        let msg = "warden: a statement under a write budget must be executed in a batch that was not flushed before it (send Sync, not Flush)";
                        self.refuse(sqlstate::FEATURE_NOT_SUPPORTED, msg);
                        return self.refuse_batch().await;
                    }
                    self.batch.budget = Some(match self.batch.budget.take() {
                        Some(old) => old.tighten(&b),
                        None => b,
                    });
                    if !self.batch.text.is_empty() {
                        self.batch.text.push_str("; ");
                    }
                    self.batch.text.push_str(&text);
                }
                let Some(portal) = self.portal(&name) else {
                    return self.unknown_statement(&format!("portal {name}")).await;
                };
                let mut results =
                    Results::new(portal.ruling.needs_mask().then(|| portal.ruling.clone()))
                        .with_read_budget(portal.budget.as_ref());
                results.stmt = portal.stmt;
                results.fields = portal.fields.clone();
                if let Some(name) = &portal.declares {
                    let cursor = Portal::cursor(portal.ruling.clone(), portal.stmt, &portal.text);
                    results.declares.push((portal.stmt, name.clone(), cursor));
                }
                results.formats = portal.formats.clone();
                let copies = portal.copies_in;
                self.copy_expected |= copies;
                self.client_copying |= copies;
                self.batch.copies |= copies;
                if !results.fields.is_empty() {
                    let cols: Vec<(String, u32)> = results
                        .fields
                        .iter()
                        .map(|f| (f.name.clone(), f.type_oid))
                        .collect();
                    self.session.recorder().columns_typed(&cols);
                }
                // Masking reads each cell by its type and format, which only the server's
                // description of the portal tells: ask for it right before the Execute
                // (its answer is the gateway's, never the client's) unless it is known.
                if results.ruling.is_some() && results.fields.is_empty() {
                    self.to_upstream
                        .extend_from_slice(&wire::describe_portal(&name));
                    self.expect.push_back(Expect::Described);
                    self.batch.unsent += 1;
                }
                self.expect.push_back(Expect::Execute(results));
                self.batch.unsent += 1;
            }
            b'C' => {
                let c: Close = decode(&frame)?;
                let name = c.name.unwrap_or_default();
                if c.target_type == b'S' {
                    self.statements.remove(&name);
                } else {
                    self.portals.remove(&name);
                }
                self.expect.push_back(Expect::Close);
                self.batch.unsent += 1;
            }
            // A batch to be measured waits for its Sync (its results are held until then).
            b'H' if self.batch.budget.is_some() => return Ok(()),
            b'H' => {
                self.to_upstream.extend_from_slice(&frame.raw);
                self.batch.forwarded = true;
                self.batch.unsent = 0;
                return self.flush_upstream().await;
            }
            _ => {
                // Sync ends the batch.
                let batch = std::mem::take(&mut self.batch);
                if batch.skipping {
                    // Fail the server's transaction as the error would have, then Sync.
                    return self.fail_upstream(Some(&frame.raw)).await;
                }
                if batch.budget.is_some() && (batch.controls_transaction || batch.copies) {
                    self.to_upstream.clear();
                    self.drop_unsent(batch.unsent);
                    let u = Unreadable {
                        code: sqlstate::FEATURE_NOT_SUPPORTED,
                        reason: UNMEASURABLE.into(),
                    };
                    self.refuse_unreadable(&batch.text, &u).await?;
                    return self.fail_upstream(Some(&frame.raw)).await;
                }
                if let Some(budget) = batch.budget {
                    let mut payload = self.to_upstream.split().to_vec();
                    payload.extend_from_slice(&frame.raw);
                    self.expect.push_back(Expect::Sync);
                    return self
                        .run_within(payload, batch.unsent + 1, &batch.text, &budget)
                        .await;
                }
                self.to_upstream.extend_from_slice(&frame.raw);
                self.expect.push_back(if self.client_copying {
                    Expect::SyncInCopy
                } else {
                    Expect::Sync
                });
                return self.flush_upstream().await;
            }
        }
        self.to_upstream.extend_from_slice(&frame.raw);
        Ok(())
    }

    async fn unknown_statement(&mut self, name: &str) -> Result<(), End> {
        self.refuse(
            sqlstate::INVALID_STATEMENT_NAME,
            &format!(
                "warden: prepared statement \"{name}\" does not exist or was refused by policy"
            ),
        );
        self.refuse_batch().await
    }

    /// Undo the held batch (nothing of it is forwarded) and skip to the client's Sync.
    async fn refuse_batch(&mut self) -> Result<(), End> {
        // What was flushed is the server's; nothing queued since may follow it.
        self.to_upstream.clear();
        // Drop what this batch expected from the server (its unconfirmed statements and
        // portals with it), keeping composed responses (the refusal itself) in their place.
        self.drop_unsent(self.batch.unsent);
        self.batch.unsent = 0;
        self.batch.skipping = true;
        self.flush_local().await
    }

    /// Remove the last `n` expectations that are not composed responses (those of messages
    /// that will not be sent), keeping composed ones in their place.
    fn drop_unsent(&mut self, mut n: usize) {
        let mut kept = std::collections::VecDeque::new();
        while n > 0 {
            match self.expect.pop_back() {
                Some(Expect::Local(bytes)) => kept.push_front(Expect::Local(bytes)),
                Some(_) => n -= 1,
                None => break,
            }
        }
        self.expect.extend(kept);
    }

    /// After a refusal, make the server's transaction fail as the refused statement's error
    /// would have: send it a statement that fails while being parsed (a literal that is not
    /// an integer), whose error the client never sees. Inside a transaction block the server
    /// then answers later statements 25P02 and COMMIT with ROLLBACK, exactly as after its own
    /// errors; outside one it changes nothing. The server's ReadyForQuery (with its status)
    /// answers the client's Query or Sync. `sync`: the client's Sync (extended protocol).
    pub(super) async fn fail_upstream(&mut self, sync: Option<&[u8]>) -> Result<(), End> {
        if self.copy_in {
            // The server is reading COPY data: any other message fails the COPY (and its
            // transaction) by itself, so the gateway answers in turn, as before.
            let rfq = wire::ready_for_query(self.status);
            self.local(rfq);
            return self.flush_local().await;
        }
        let mut buf = BytesMut::new();
        match sync {
            None => postgres_protocol::message::frontend::query(FAILING, &mut buf),
            Some(_) => postgres_protocol::message::frontend::parse("", FAILING, [], &mut buf),
        }
        .map_err(|e| End::Error(e.to_string()))?;
        // Its failure drops the unnamed statement; the gateway forgets it too.
        self.statements.remove("");
        if let Some(sync) = sync {
            buf.extend_from_slice(sync);
        }
        self.expect.push_back(Expect::Abort);
        self.to_upstream.extend_from_slice(&buf);
        self.flush_local().await?;
        self.flush_upstream().await
    }
}

/// Read a message's SQL as the server will. A long message is read on a blocking thread: its
/// parse must not hold up the other sessions this worker serves.
async fn read(text: &str) -> Result<Vec<Statement>, Unreadable> {
    if text.len() <= LONG_MESSAGE {
        return sql::parse(text);
    }
    let owned = text.to_string();
    tokio::task::spawn_blocking(move || sql::parse(&owned))
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
fn controls_transaction(s: &Sql, plain: &std::collections::HashSet<String>) -> bool {
    matches!(s.kind.as_str(), "begin" | "commit" | "rollback")
        || (s.statement_type == "DeclareCursorStmt" && budget::can_write(s, plain))
}

/// Whether a statement is `COPY ... FROM STDIN`.
fn copy_in(s: &Sql) -> bool {
    s.copy
        .as_ref()
        .is_some_and(|c| c.is_from && c.target == crate::policy::CopyTarget::Stdio)
}

fn copies_in(statements: &[Statement]) -> bool {
    statements.iter().any(|s| copy_in(&s.sql))
}

/// EXECUTE runs a prepared statement: policies judge what it runs. At the top level the
/// record becomes the prepared statement's (the text and `ExecuteStmt` stay); inside EXPLAIN
/// ANALYZE or CREATE TABLE AS its tables, writes and calls are added.
fn runs(sql: &mut Sql, inner: &Sql) {
    if sql.statement_type == "ExecuteStmt" {
        sql.kind = inner.kind.clone();
        sql.has_where = inner.has_where;
        sql.limit = inner.limit;
        sql.copy = inner.copy.clone();
    }
    sql::join(&mut sql.tables, &inner.tables);
    sql::join(&mut sql.functions, &inner.functions);
    sql.writes.extend(inner.writes.iter().cloned());
}

/// The ruling of an empty statement: nothing to mask.
fn empty_ruling() -> Ruling {
    Ruling {
        decision: crate::policy::Decision::combine_all(&[]),
        per_command: Vec::new(),
        seq: 0,
    }
}

/// Whether a statement opens a SQL cursor (its `cursor` names it); CLOSE names one too.
fn declares(s: &Statement) -> bool {
    s.sql.statement_type == "DeclareCursorStmt"
}
