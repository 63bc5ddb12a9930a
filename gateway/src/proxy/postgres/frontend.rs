//! Client messages: every statement is judged before a byte of it reaches the server.
//!
//! Simple Query: all statements of the message are checked; one refusal refuses the message and
//! nothing is forwarded. Extended protocol: messages are held until Sync (or Flush); the verdict
//! is taken on Parse, and Bind / Describe / Execute of a statement that was not allowed are
//! refused; a refusal drops the held batch and discards the client's messages up to its Sync,
//! exactly as the server would after an error.

use super::decode::ClientMessage;
use super::relay::{End, Expect, Portal, Prepared, Relay, Results};
use super::wire::{self, Frame, WireError, sqlstate};
use crate::command;
use crate::policy::{Command, Verdict};
use crate::session::{Client, Ending, Interrupt, Judged, Refused, Ruling};
use bytes::BytesMut;
use pgwire::messages::extendedquery::{Bind, Close, Describe, Execute, Parse};
use std::sync::Arc;

/// The extended-protocol batch since the last Sync: what to undo if it is refused.
#[derive(Default)]
pub(super) struct Batch {
    /// Length of the expectation queue when the batch began.
    expect_mark: usize,
    /// Statement and portal names this batch registered.
    statements: Vec<String>,
    portals: Vec<String>,
    /// Whether part of it already went to the server (a Flush).
    forwarded: bool,
    /// A refusal happened: discard client messages until Sync.
    skipping: bool,
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
            b'd' | b'c' | b'f' if self.copy_in => {
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
        let statements = command::sql::parse(&text);
        if statements.is_empty() {
            // Only whitespace or comments: the server answers EmptyQueryResponse.
            self.expect.push_back(Expect::Query(Results::new(None)));
            self.to_upstream.extend_from_slice(&frame.raw);
            return self.flush_upstream().await;
        }
        let commands: Vec<Command> = statements.into_iter().map(Command::Sql).collect();
        let Some(ruling) = self.judge(&text, &commands).await? else {
            let rfq = wire::ready_for_query(self.status);
            self.local(rfq);
            return self.flush_local().await;
        };
        let ruling = Arc::new(ruling);
        let mask = ruling.needs_mask().then(|| ruling.clone());
        self.expect.push_back(Expect::Query(Results::new(mask)));
        self.to_upstream.extend_from_slice(&frame.raw);
        self.flush_upstream().await
    }

    /// Judge a message through the session path's one judge. `None`: refused (the client
    /// has the error). Before a hold, earlier results are settled so the client has seen
    /// everything that came before the held statement.
    async fn judge(&mut self, text: &str, commands: &[Command]) -> Result<Option<Ruling>, End> {
        let decided = self.session.decide(text, commands).await;
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
                expect_mark: self.expect.len(),
                open: true,
                ..Default::default()
            };
        }
        match frame.tag {
            b'P' => {
                let parse: Parse = decode(&frame)?;
                let name = parse.name.unwrap_or_default();
                let statements = command::sql::parse(&parse.query);
                let commands: Vec<Command> = statements.into_iter().map(Command::Sql).collect();
                let ruling = if commands.is_empty() {
                    None
                } else {
                    match self.judge(&parse.query, &commands).await? {
                        Some(r) => Some(r),
                        None => return self.refuse_batch().await,
                    }
                };
                let ruling = Arc::new(ruling.unwrap_or_else(empty_ruling));
                self.statements.insert(
                    name.clone(),
                    Prepared {
                        ruling,
                        fields: Vec::new(),
                    },
                );
                self.batch.statements.push(name);
                self.expect.push_back(Expect::Parse);
            }
            b'B' => {
                let bind: Bind = decode(&frame)?;
                let statement = bind.statement_name.unwrap_or_default();
                if !self.statements.contains_key(&statement) {
                    return self.unknown_statement(&statement).await;
                }
                let portal = bind.portal_name.unwrap_or_default();
                let formats = bind.result_column_format_codes;
                self.portals.insert(
                    portal.clone(),
                    Portal {
                        statement,
                        formats,
                        fields: None,
                    },
                );
                self.batch.portals.push(portal);
                self.expect.push_back(Expect::Bind);
            }
            b'D' => {
                let d: Describe = decode(&frame)?;
                let name = d.name.unwrap_or_default();
                if d.target_type == b'S' {
                    if !self.statements.contains_key(&name) {
                        return self.unknown_statement(&name).await;
                    }
                    self.expect.push_back(Expect::DescribeStatement(name));
                } else {
                    self.expect.push_back(Expect::DescribePortal(name));
                }
            }
            b'E' => {
                let e: Execute = decode(&frame)?;
                let name = e.name.unwrap_or_default();
                let Some(portal) = self.portals.get(&name) else {
                    return self.unknown_statement(&format!("portal {name}")).await;
                };
                let Some(prepared) = self.statements.get(&portal.statement) else {
                    return self.unknown_statement(&portal.statement.clone()).await;
                };
                let mut results = Results::new(
                    prepared
                        .ruling
                        .needs_mask()
                        .then(|| prepared.ruling.clone()),
                );
                results.fields = portal
                    .fields
                    .clone()
                    .unwrap_or_else(|| prepared.fields.clone());
                results.formats = portal.formats.clone();
                if !results.fields.is_empty() {
                    let cols: Vec<(String, u32)> = results
                        .fields
                        .iter()
                        .map(|f| (f.name.clone(), f.type_oid))
                        .collect();
                    self.session.recorder().columns_typed(&cols);
                }
                self.expect.push_back(Expect::Execute(results));
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
            }
            b'H' => {
                self.to_upstream.extend_from_slice(&frame.raw);
                self.batch.forwarded = true;
                return self.flush_upstream().await;
            }
            _ => {
                // Sync ends the batch.
                let skipping = self.batch.skipping;
                let forwarded = self.batch.forwarded;
                self.batch = Batch::default();
                if skipping && !forwarded {
                    // Nothing reached the server: answer the Sync ourselves, in turn (and now,
                    // when nothing is owed before it: no server message will come to send it).
                    let rfq = wire::ready_for_query(self.status);
                    self.local(rfq);
                    return self.flush_local().await;
                }
                self.to_upstream.extend_from_slice(&frame.raw);
                self.expect.push_back(Expect::Sync);
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
        if !self.batch.forwarded {
            self.to_upstream.clear();
        }
        // Drop what this batch expected from the server, keeping composed responses (the
        // refusal itself) in their place.
        let tail: Vec<Expect> = self
            .expect
            .drain(self.batch.expect_mark.min(self.expect.len())..)
            .collect();
        self.expect
            .extend(tail.into_iter().filter(|e| matches!(e, Expect::Local(_))));
        for s in std::mem::take(&mut self.batch.statements) {
            self.statements.remove(&s);
        }
        for p in std::mem::take(&mut self.batch.portals) {
            self.portals.remove(&p);
        }
        self.batch.skipping = true;
        self.flush_local().await
    }
}

/// The ruling of an empty statement: nothing to mask.
fn empty_ruling() -> Ruling {
    Ruling {
        decision: crate::policy::Decision::combine_all(&[]),
        per_command: Vec::new(),
        seq: 0,
    }
}
