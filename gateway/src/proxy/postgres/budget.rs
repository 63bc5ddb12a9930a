//! Budgets: judging a statement by what it did, not by how it is written.
//!
//! A policy's `allow-within` / `mask-within` sets limits. Writes are measured by the server: a
//! statement that can write runs inside a transaction (the gateway's own BEGIN … COMMIT in
//! autocommit, or the client's transaction block), and the gateway reads
//! `pg_stat_xact_user_tables` just before and just after it: rows inserted, updated and deleted,
//! by the statement itself and by the functions and triggers it set off. (Two readings, because
//! the backend's counts still include earlier transactions it has not reported yet.) Over a
//! limit the writes are rolled back and the statement refused, or they wait uncommitted for an
//! approver, as the budget says. Everything the server sent for the statement is held
//! meanwhile, so a refused statement shows nothing but its error.
//!
//! Reads are measured as they flow: rows and bytes of each result, cut off with an error or (for
//! `truncate`) a NOTICE at the limit (see `relay.rs`).
//!
//! Not measured: `COPY ... FROM STDIN` (its rows come from the client), and statements whose
//! functions are all known not to write. The gateway's own statements begin `/* warden: `.

use super::relay::{End, Expect, Relay};
use super::wire::{self, sqlstate};
use crate::command::sql::server::last_part;
use crate::policy::{Budget, Decision, OverBudget, Sql, Verdict};
use std::collections::{HashMap, HashSet};

/// Built-in functions that cannot write a table's rows (read-only or volatile without table
/// writes). Any other function may (user-defined functions and procedures: a statement calling
/// one is measured). Names compare by their last part.
const READ_ONLY: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "every",
    "string_agg",
    "array_agg",
    "json_agg",
    "jsonb_agg",
    "now",
    "current_timestamp",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timeofday",
    "lower",
    "upper",
    "length",
    "char_length",
    "octet_length",
    "substring",
    "substr",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "position",
    "strpos",
    "replace",
    "concat",
    "concat_ws",
    "format",
    "left",
    "right",
    "lpad",
    "rpad",
    "repeat",
    "reverse",
    "split_part",
    "regexp_replace",
    "regexp_match",
    "regexp_matches",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_number",
    "date_trunc",
    "date_part",
    "extract",
    "timezone",
    "age",
    "abs",
    "round",
    "ceil",
    "ceiling",
    "floor",
    "trunc",
    "mod",
    "power",
    "sqrt",
    "random",
    "md5",
    "encode",
    "decode",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "generate_series",
    "unnest",
    "array_length",
    "array_to_string",
    "string_to_array",
    "cardinality",
    "jsonb_build_object",
    "json_build_object",
    "jsonb_build_array",
    "json_build_array",
    "to_json",
    "to_jsonb",
    "row_to_json",
    "jsonb_array_elements",
    "json_array_elements",
    "jsonb_each",
    "json_each",
    "jsonb_object_keys",
    "version",
    "current_database",
    "current_schema",
    "current_schemas",
    "current_user",
    "session_user",
    "current_setting",
    "pg_backend_pid",
    "format_type",
    "pg_get_expr",
    "pg_get_userbyid",
    "pg_table_is_visible",
    "pg_type_is_visible",
    "pg_function_is_visible",
    "pg_get_indexdef",
    "pg_get_constraintdef",
    "pg_get_viewdef",
    "pg_get_triggerdef",
    "pg_get_functiondef",
    "obj_description",
    "col_description",
    "shobj_description",
    "pg_encoding_to_char",
    "quote_ident",
    "quote_literal",
    "has_table_privilege",
    "has_schema_privilege",
    "has_database_privilege",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_size_pretty",
    "pg_has_role",
    "array_position",
    "nextval",
    "currval",
    "setval",
    "gen_random_uuid",
    "uuid_generate_v4",
    "pg_sleep",
];

/// Whether a statement can change rows the server counts: a write anywhere in it, a write
/// kind, a call of a function not known to be read-only, or a read of a relation not known to
/// be a plain table (`plain`: a view can call a function that writes). COPY FROM STDIN is
/// apart (its rows come from the client).
pub(super) fn can_write(sql: &Sql, plain: &HashSet<String>) -> bool {
    if sql.copy.as_ref().is_some_and(|c| c.is_from) {
        return false;
    }
    !sql.writes.is_empty()
        || sql.tables.iter().any(|t| !plain.contains(last_part(t)))
        || matches!(
            sql.kind.as_str(),
            "insert" | "update" | "delete" | "merge" | "call"
        )
        || sql.parse_error.is_some()
        || sql.functions.iter().any(|f| {
            !READ_ONLY
                .iter()
                .any(|r| last_part(f).eq_ignore_ascii_case(r))
        })
}

/// Rows written per table (`schema.table`) in the current transaction.
type Counts = HashMap<String, u64>;

/// Rows written per table, partitions counted under their partitioned table (a budget names
/// the table, and a statement must not spread its writes over partitions to stay under it).
/// The counters are read per relation from `pg_class` (user tables, as in
/// `pg_stat_xact_user_tables`) rather than through that view, whose grouping over `pg_index`
/// made each reading cost about 1.4 ms on pgbench's database (0.8 ms this way).
const COUNTS: &str = "/* warden: write budget */ SELECT n.nspname || '.' || r.relname, sum(w.n) \
     FROM (SELECT c.oid, pg_catalog.pg_stat_get_xact_tuples_inserted(c.oid) \
       + pg_catalog.pg_stat_get_xact_tuples_updated(c.oid) \
       + pg_catalog.pg_stat_get_xact_tuples_deleted(c.oid) AS n \
       FROM pg_catalog.pg_class c WHERE c.relkind IN ('r', 'p', 'm') \
       AND c.relnamespace NOT IN ('pg_catalog'::pg_catalog.regnamespace, \
         'information_schema'::pg_catalog.regnamespace, 'pg_toast'::pg_catalog.regnamespace)) w \
     JOIN pg_catalog.pg_class r ON r.oid = coalesce(pg_catalog.pg_partition_root(w.oid), w.oid) \
     JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace \
     WHERE w.n > 0 GROUP BY 1";

/// Output held for a measured statement beyond this is not kept: the statement is refused.
const HOLD_CAP: usize = 16 << 20;

/// What the statement wrote (after − before) over the budget, if anything: the reason.
fn over_budget(before: &Counts, after: &Counts, budget: &Budget) -> Option<String> {
    let wrote: Vec<(&String, u64)> = after
        .iter()
        .map(|(t, n)| (t, n.saturating_sub(before.get(t).copied().unwrap_or(0))))
        .filter(|(_, n)| *n > 0)
        .collect();
    for limit in &budget.tables {
        if limit.table == "*" {
            // Any one table.
            if let Some((t, n)) = wrote.iter().find(|(_, n)| *n > limit.rows_written) {
                return Some(format!(
                    "the statement wrote {n} rows in {t}, over its budget of {} per table",
                    limit.rows_written
                ));
            }
            continue;
        }
        let n: u64 = wrote
            .iter()
            .filter(|(t, _)| same_table(t, &limit.table))
            .map(|(_, n)| n)
            .sum();
        if n > limit.rows_written {
            return Some(format!(
                "the statement wrote {n} rows in {}, over its budget of {}",
                limit.table, limit.rows_written
            ));
        }
    }
    let total: u64 = wrote.iter().map(|(_, n)| n).sum();
    match budget.rows_written {
        Some(max) if total > max => {
            let most = wrote
                .iter()
                .max_by_key(|(_, n)| *n)
                .map(|(t, n)| format!(" ({n} in {t})"))
                .unwrap_or_default();
            Some(format!(
                "the statement wrote {total} rows{most}, over its budget of {max}"
            ))
        }
        _ => None,
    }
}

/// `public.cards` against a budget's `cards` or `public.cards`.
fn same_table(qualified: &str, budget: &str) -> bool {
    if budget.contains('.') {
        qualified.eq_ignore_ascii_case(budget)
    } else {
        last_part(qualified).eq_ignore_ascii_case(budget)
    }
}

impl Relay {
    /// Run `payload` (a Query, or an extended batch ending in its Sync, whose `count`
    /// expectations are the last ones queued) with its writes measured against `budget`. The
    /// client sees the payload's results only if it stays within budget (or an approver lets
    /// it). `mid_batch`: part of the client's batch already went to the server (a Flush, as
    /// asyncpg sends after Parse and Describe), so the server is inside the batch's implicit
    /// transaction and the reading before must not end it. `begun`: that part opened a
    /// transaction block (pgjdbc's BEGIN in the batch of the first statement).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_within(
        &mut self,
        payload: Vec<u8>,
        count: usize,
        text: &str,
        budget: &Budget,
        mid_batch: bool,
        begun: bool,
    ) -> Result<(), End> {
        // Everything before it is answered first: the gateway's statements go in between.
        let ours = self
            .expect
            .split_off(self.expect.len().saturating_sub(count));
        self.settle().await?;
        self.expect.extend(ours);
        if self.status == b'E' {
            // A failed transaction refuses the statement anyway: nothing to measure.
            self.to_upstream.extend_from_slice(&payload);
            return self.flush_upstream().await;
        }
        if self.failed {
            // The flushed part of the batch failed: the server discards everything up to the
            // Sync, which alone answers (nothing of the statement runs).
            let sync = self.expect.pop_back();
            self.drop_unsent(count - 1);
            self.expect.extend(sync);
            self.to_upstream.extend_from_slice(&wire::sync());
            return self.flush_upstream().await;
        }
        let in_block = self.status == b'T' || begun;
        // The counts are the backend's pending ones: earlier transactions may still be in
        // them, so there is always a reading before (with the BEGIN, in one round trip).
        let before = self.counts(!in_block, mid_batch).await?;
        self.hold = true;
        let mut too_big = false;
        self.to_upstream.extend_from_slice(&payload);
        self.flush_upstream().await?;
        let status = loop {
            let frame = self.server_message().await?;
            if frame.tag == b'Z'
                && matches!(self.expect.front(), Some(Expect::Query(_) | Expect::Sync))
            {
                self.expect.pop_front();
                self.copy_in = false;
                self.copy_expected = false;
                self.failed = false;
                break frame.body().first().copied().unwrap_or(b'E');
            }
            self.on_server(frame).await?;
            if self.to_client.len() > HOLD_CAP {
                too_big = true;
                self.to_client.clear();
            }
        };
        if too_big {
            self.to_client.clear();
            let reason = format!(
                "warden: the statement's results passed {} MiB while its writes were measured; it is refused (fetch less at a time)",
                HOLD_CAP >> 20
            );
            return self
                .refuse_over_budget(text, &reason, in_block, status)
                .await;
        }
        if status == b'I' && !in_block {
            // Transaction control is refused in measured messages, so this should not happen.
            tracing::error!(
                "a measured statement ended the gateway's transaction itself; its writes were not measured"
            );
        }
        if status != b'T' {
            // It failed (its error is in what is held), or it ended the transaction itself.
            let status = if status == b'E' && !in_block {
                self.own("/* warden: write budget */ ROLLBACK").await?
            } else {
                status
            };
            return self.release(status).await;
        }
        let after = self.counts(false, false).await?;
        let Some(reason) = over_budget(&before, &after, budget) else {
            return self.keep(in_block).await;
        };
        let reason = format!("warden: {reason} ({})", budget.describe());
        if budget.over == OverBudget::RequireApproval {
            // The held results wait aside while the approver decides; notices go out at once.
            let held = self.to_client.split();
            self.hold = false;
            let approved = self.approve_over_budget(text, &reason).await?;
            let refusal = self.to_client.split();
            self.hold = true;
            if approved {
                self.to_client.unsplit(held);
                return self.keep(in_block).await;
            }
            self.to_client.unsplit(refusal);
            return self.undo(in_block).await;
        }
        self.refuse_over_budget(text, &reason, in_block, status)
            .await
    }

    /// Refuse a measured statement: audit it, tell the client (nothing else of it), undo.
    async fn refuse_over_budget(
        &mut self,
        text: &str,
        reason: &str,
        in_block: bool,
        status: u8,
    ) -> Result<(), End> {
        self.to_client.clear();
        if let Err(e) = self.session.refuse(text, "sql", reason).await {
            let msg = format!("warden: cannot record the refusal: {e}");
            self.hold = false;
            let _ = self.fatal(sqlstate::INTERNAL_ERROR, &msg).await;
            return Err(End::Error(msg));
        }
        self.session.recorder().error(reason);
        self.to_client.extend_from_slice(&wire::error(
            "ERROR",
            sqlstate::INSUFFICIENT_PRIVILEGE,
            reason,
        ));
        if status != b'T' {
            // It failed or ended by itself: only the gateway's transaction is left to undo.
            let status = if in_block || status == b'I' {
                status
            } else {
                self.own("/* warden: write budget */ ROLLBACK").await?
            };
            return self.release(status).await;
        }
        self.undo(in_block).await
    }

    /// Roll back the gateway's transaction, or fail the client's as an error would.
    async fn undo(&mut self, in_block: bool) -> Result<(), End> {
        let status = if in_block {
            self.own(super::frontend::FAILING).await?
        } else {
            self.own("/* warden: write budget */ ROLLBACK").await?
        };
        self.release(status).await
    }

    /// Within budget: commit the gateway's transaction (its error, a deferred constraint say,
    /// is the client's) and let the results out.
    async fn keep(&mut self, in_block: bool) -> Result<(), End> {
        let status = if in_block {
            b'T'
        } else {
            self.own_forwarding_errors("/* warden: write budget */ COMMIT")
                .await?
        };
        self.release(status).await
    }

    /// Send what was held, then ReadyForQuery with `status`.
    async fn release(&mut self, status: u8) -> Result<(), End> {
        self.hold = false;
        self.status = status;
        self.to_client
            .extend_from_slice(&wire::ready_for_query(status));
        self.flush_local().await
    }

    /// Hold the over-budget writes for an approver; `true` when approved. A refusal is queued
    /// for the client.
    async fn approve_over_budget(&mut self, text: &str, reason: &str) -> Result<bool, End> {
        let decision = Decision {
            verdict: Verdict::RequireApproval(reason.to_string()),
            decided_by: Some("write budget".into()),
            policies: Vec::new(),
            shadow: Vec::new(),
        };
        let decided = self.session.decide_as(text, "sql", decision).await;
        Ok(self.carry(text, decided).await?.is_some())
    }

    /// Rows written per table, as the backend counts them now; `begin`: start the gateway's
    /// transaction first, in the same round trip. `mid_batch`: inside the client's extended
    /// batch (see [`Relay::own_in_batch`]).
    async fn counts(&mut self, begin: bool, mid_batch: bool) -> Result<Counts, End> {
        let mut counts = Counts::new();
        let rows = match (begin, mid_batch) {
            (true, false) => {
                self.own_rows(&format!("/* warden: write budget */ BEGIN; {COUNTS}"))
                    .await?
            }
            (false, false) => self.own_rows(COUNTS).await?,
            (true, true) => {
                self.own_in_batch(&["/* warden: write budget */ BEGIN", COUNTS])
                    .await?
            }
            (false, true) => self.own_in_batch(&[COUNTS]).await?,
        };
        for row in rows {
            if let [Some(table), Some(n)] = &row[..] {
                counts.insert(table.clone(), n.parse().unwrap_or(u64::MAX));
            }
        }
        Ok(counts)
    }

    /// Run one of the gateway's own statements; its status. Its messages are not the client's.
    async fn own(&mut self, sql: &str) -> Result<u8, End> {
        Ok(self.own_query(sql, false).await?.0)
    }

    async fn own_rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, End> {
        Ok(self.own_query(sql, false).await?.1)
    }

    /// [`Relay::own`], but an error it gets is the client's to see (COMMIT's).
    async fn own_forwarding_errors(&mut self, sql: &str) -> Result<u8, End> {
        Ok(self.own_query(sql, true).await?.0)
    }

    /// Run the gateway's own statements inside the client's extended batch, after its
    /// Flush: as a named Parse, Bind and Execute each, then Flush — a Query or Sync would end
    /// the batch's implicit transaction (and a Query drops the client's unnamed statement),
    /// and the names are the gateway's, so no statement or portal of the client's changes.
    /// The rows of all of them. An error ends the session: the server would then discard the
    /// client's messages up to its Sync, and nothing could be measured.
    async fn own_in_batch(&mut self, sqls: &[&str]) -> Result<Vec<Vec<Option<String>>>, End> {
        const NAME: &str = "warden.write-budget";
        for sql in sqls {
            self.to_upstream.extend_from_slice(&wire::parse(NAME, sql));
            self.to_upstream.extend_from_slice(&wire::bind(NAME, NAME));
            self.to_upstream.extend_from_slice(&wire::execute(NAME));
            self.to_upstream.extend_from_slice(&wire::close(b'P', NAME));
            self.to_upstream.extend_from_slice(&wire::close(b'S', NAME));
        }
        self.to_upstream.extend_from_slice(&wire::flush());
        self.flush_upstream().await?;
        let (mut rows, mut closed) = (Vec::new(), 0);
        while closed < 2 * sqls.len() {
            let frame = self.server_message().await?;
            match frame.tag {
                b'D' => rows.extend(text_row(frame.body())),
                b'3' => closed += 1,
                b'E' => {
                    let (_, text) = wire::parse_error_fields(frame.body());
                    return Err(End::Error(format!(
                        "measuring a statement's writes failed: {text}"
                    )));
                }
                _ => {}
            }
        }
        Ok(rows)
    }

    async fn own_query(
        &mut self,
        sql: &str,
        forward_errors: bool,
    ) -> Result<(u8, Vec<Vec<Option<String>>>), End> {
        let mut buf = bytes::BytesMut::new();
        postgres_protocol::message::frontend::query(sql, &mut buf)
            .map_err(|e| End::Error(e.to_string()))?;
        self.to_upstream.extend_from_slice(&buf);
        self.flush_upstream().await?;
        let mut rows = Vec::new();
        loop {
            let frame = self.server_message().await?;
            match frame.tag {
                b'D' => rows.extend(text_row(frame.body())),
                b'E' if forward_errors => self.to_client.extend_from_slice(&frame.raw),
                b'Z' => return Ok((frame.body().first().copied().unwrap_or(b'E'), rows)),
                _ => {}
            }
        }
    }
}

/// A DataRow of the gateway's own statements, as text.
fn text_row(body: &[u8]) -> Option<Vec<Option<String>>> {
    let cells = wire::parse_data_row(body).ok()?;
    Some(
        cells
            .iter()
            .map(|c| c.map(|v| String::from_utf8_lossy(v).into_owned()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::policy::TableBudget;

    fn budget(total: Option<u64>, tables: &[(&str, u64)]) -> Budget {
        Budget {
            rows_written: total,
            tables: tables
                .iter()
                .map(|(t, n)| TableBudget {
                    table: t.to_string(),
                    rows_written: *n,
                })
                .collect(),
            rows_returned: None,
            bytes_returned: None,
            over: OverBudget::Refuse,
            truncate_results: false,
        }
    }

    fn counts(kv: &[(&str, u64)]) -> Counts {
        kv.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn budgets_count_what_changed_since_before() {
        let before = counts(&[("public.cards", 5)]);
        let after = counts(&[("public.cards", 8), ("public.owners", 2)]);
        assert_eq!(over_budget(&before, &after, &budget(Some(5), &[])), None);
        let r = over_budget(&before, &after, &budget(Some(4), &[])).unwrap();
        assert!(r.contains("wrote 5 rows (3 in public.cards)"), "{r}");
        let r = over_budget(&before, &after, &budget(None, &[("owners", 1)])).unwrap();
        assert!(r.contains("2 rows in owners"), "{r}");
        assert_eq!(
            over_budget(&before, &after, &budget(None, &[("audit.owners", 1)])),
            None
        );
        let r = over_budget(&before, &after, &budget(None, &[("*", 2)])).unwrap();
        assert!(
            r.contains("3 rows in public.cards, over its budget of 2 per table"),
            "{r}"
        );
        assert_eq!(
            over_budget(&before, &after, &budget(None, &[("*", 3)])),
            None
        );
    }

    #[test]
    fn what_can_write() {
        let sql = |text: &str| crate::command::sql::parse(text).unwrap().remove(0).sql;
        let plain: HashSet<String> = ["cards".to_string(), "owners".to_string()].into();
        let can = |text: &str| can_write(&sql(text), &plain);
        assert!(!can("SELECT count(*), lower(holder) FROM cards"));
        assert!(can("SELECT wipe_cards()"));
        assert!(can("DELETE FROM cards WHERE id = id"));
        assert!(can("WITH d AS (DELETE FROM cards RETURNING 1) SELECT 1"));
        assert!(!can("COPY cards FROM STDIN"));
        assert!(can("CALL p()"));
        // A view (or anything not known to be a plain table) may call a function that writes.
        assert!(can("SELECT * FROM v_wipe"));
        assert!(!can("SELECT * FROM public.cards JOIN owners ON true"));
    }
}
