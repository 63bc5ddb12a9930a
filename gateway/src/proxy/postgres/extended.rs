//! The extended protocol (Parse, Bind, Describe, Execute, Close, Flush, Sync): messages are
//! held until Sync (or Flush); the verdict is taken on Parse, and Bind / Describe / Execute of
//! a statement that was not allowed are refused; a refusal drops the held batch and discards
//! the client's messages up to its Sync, exactly as the server would after an error.

use super::budget;
use super::frontend::{
    FAILING, UNMEASURABLE, controls_transaction, copy_in, declares, decode, empty_ruling, read,
};
use super::relay::{End, Expect, Portal, Prepared, Relay, Results};
use super::wire::{self, Frame, sqlstate};
use crate::command::sql::Unreadable;
use crate::policy::{Budget, Command};
use bytes::BytesMut;
use pgwire::messages::extendedquery::{Bind, Close, Describe, Execute, Parse};
use std::sync::Arc;

impl Relay {
    pub(super) async fn on_extended(&mut self, frame: Frame) -> Result<(), End> {
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
                if let Some(refused) = self.reserved(&name).await {
                    return refused;
                }
                if name.is_empty() {
                    // The server drops the unnamed statement before it reads the new one.
                    self.statements.remove("");
                }
                let statements = match read(&parse.query, &self.views)
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
                // A statement with nothing to judge (empty, only comments) has no verdict to age.
                let current = prepared.sql.is_none() || self.session.is_current(&prepared.ruling);
                let (ruling, stmt) = if prepared.judged && current {
                    (prepared.ruling.clone(), prepared.stmt)
                } else if prepared.judged {
                    // Prepared before the policies changed (a reloaded chain, a hot-loaded
                    // module): judged again, audited, under the policies now in force; the
                    // statement keeps the new verdict for its later uses.
                    let Some(sql) = prepared.sql.clone() else {
                        return self.unknown_statement(&statement).await;
                    };
                    let text = sql.text.clone();
                    let Some(r) = self.judge(&text, &[Command::Sql(sql)]).await? else {
                        return self.refuse_batch().await;
                    };
                    let ruling = Arc::new(r);
                    if let Some(p) = self.statement_mut(&statement) {
                        p.ruling = ruling.clone();
                        p.stmt = 0;
                    }
                    (ruling, 0)
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
                    begins: prepared.sql.as_ref().is_some_and(|s| s.kind == "begin"),
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
                if let Some(refused) = self.reserved(&name).await {
                    return refused;
                }
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
                if let Err(u) = self.check_cursor(&name) {
                    let text = portal.text.clone();
                    self.refuse_unreadable(&text, &u).await?;
                    return self.refuse_batch().await;
                }
                if portal.controls_transaction {
                    if portal.begins && self.batch.budget.is_none() {
                        // A driver that opens its transaction in the batch of the first
                        // statement (pgjdbc): the BEGIN goes to the server now, so what the
                        // batch writes after it is measured inside the client's block.
                        self.batch.begun = true;
                        self.batch.flush_after = true;
                    } else {
                        self.batch.controls_transaction = true;
                    }
                }
                let Some(portal) = self.portal(&name) else {
                    return self.unknown_statement(&format!("portal {name}")).await;
                };
                if let Some((b, text)) = portal
                    .write_budget
                    .clone()
                    .map(|b| (b, portal.text.clone()))
                {
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
                if results.ruling.is_some() && results.fields.is_empty() && !copies {
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
                        .run_within(
                            payload,
                            batch.unsent + 1,
                            &batch.text,
                            &budget,
                            batch.forwarded,
                            batch.begun,
                        )
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
        if std::mem::take(&mut self.batch.flush_after) {
            // As if the client had sent a Flush after it.
            self.to_upstream.extend_from_slice(&wire::flush());
            self.batch.forwarded = true;
            self.batch.unsent = 0;
            return self.flush_upstream().await;
        }
        Ok(())
    }

    /// A statement or portal name the gateway keeps for its own (`warden.`…): refused with the
    /// batch, so the client cannot collide with the gateway's readings.
    async fn reserved(&mut self, name: &str) -> Option<Result<(), End>> {
        if !name.starts_with("warden.") {
            return None;
        }
        let msg = format!("warden: the name \"{name}\" is reserved for the gateway");
        self.refuse(sqlstate::INVALID_STATEMENT_NAME, &msg);
        Some(self.refuse_batch().await)
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
    pub(super) async fn refuse_batch(&mut self) -> Result<(), End> {
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
    pub(super) fn drop_unsent(&mut self, mut n: usize) {
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
