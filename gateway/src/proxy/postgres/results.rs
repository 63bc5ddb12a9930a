//! Result rows and COPY lines of one relayed session: counted against the result budget,
//! recorded, and — under a `mask` verdict — held in a bounded batch, read by the server's
//! description of their columns (`rows.rs`, `cells/`, `copy.rs`), masked by the policy chain
//! and sent on. Nothing of a result reaches the client before its masking succeeded.

use super::relay::{End, Expect, Relay};
use super::rows::{self, RowBatch};
use super::wire::{self, Frame, sqlstate};
use crate::command::sql::CopyOut;
use bytes::BytesMut;

impl Relay {
    /// A COPY line under masking: by its columns' types when they are known, else as one
    /// text cell. A line that is not a row (a header, the binary trailer) goes out after the
    /// rows before it, its card numbers masked.
    pub(super) async fn on_copy_line(&mut self, frame: Frame) -> Result<(), End> {
        let payload = frame.raw.slice(5..);
        // Borrow the result's COPY description and the row batch side by side: no per-line
        // copies of either.
        let Relay { expect, rows, .. } = &mut *self;
        let Some(Expect::Query(r) | Expect::Execute(r)) = expect.front_mut() else {
            return Ok(());
        };
        let first = r.copy_lines == 0;
        r.copy_lines += 1;
        let Some((spec, fields)) = &r.copy_typing else {
            rows.push_copy_line(payload);
            return self.maybe_flush_rows().await;
        };
        let row = super::copy::split(spec, &payload, first);
        match row {
            Some((prefix, cells)) => {
                rows.push_copy_row(cells, fields, copy_formats(spec), payload, prefix);
                self.maybe_flush_rows().await
            }
            None => {
                self.flush_rows().await?;
                let line = match std::str::from_utf8(&payload)
                    .ok()
                    .and_then(warden_pan::mask_pans)
                {
                    Some(masked) => bytes::Bytes::from(masked),
                    None => payload,
                };
                self.to_client.extend_from_slice(&wire::copy_data(&line));
                self.flush_client_if_idle().await
            }
        }
    }

    /// An answer to the gateway's own description of a COPY's columns: kept, never sent.
    pub(super) fn on_copy_types(&mut self, frame: Frame) -> Result<(), End> {
        match frame.tag {
            b'T' => {
                let described = wire::parse_row_description(frame.body())
                    .map_err(|e| End::Error(e.to_string()))?;
                if let Some(Expect::CopyTypes { fields, .. }) = self.expect.front_mut() {
                    *fields = described;
                }
            }
            b'Z' => {
                self.status = frame.body().first().copied().unwrap_or(self.status);
                if let Some(Expect::CopyTypes { stmt, spec, fields }) = self.expect.pop_front()
                    && !fields.is_empty()
                {
                    let query = self.expect.iter_mut().find_map(|e| match e {
                        Expect::Query(r) => Some(r),
                        _ => None,
                    });
                    if let Some(r) = query {
                        r.copy_types.push((stmt, spec, fields));
                    }
                }
            }
            // ParseComplete, ParameterDescription, NoData; an error (the query could not be
            // described: the COPY is then masked line by line).
            _ => {}
        }
        Ok(())
    }

    pub(super) async fn on_data_row(&mut self, frame: Frame) -> Result<(), End> {
        let Some(r) = self.results() else {
            self.to_client.extend_from_slice(&frame.raw);
            return self.flush_client_if_idle().await;
        };
        if r.swallow || self.over_read_budget(&frame).await? {
            return Ok(());
        }
        let Some(r) = self.results() else {
            return Ok(());
        };
        if r.mask_decision().is_none() {
            self.record_plain_row(&frame);
            self.to_client.extend_from_slice(&frame.raw);
            return self.flush_client_if_idle().await;
        }
        // Borrow the result's columns and the row batch side by side: no per-row copies.
        let Relay { expect, rows, .. } = &mut *self;
        if let Some(Expect::Query(r) | Expect::Execute(r)) = expect.front() {
            rows.push_data_row(&frame.raw, &r.fields, &r.formats)
                .map_err(|e| End::Error(e.to_string()))?;
        }
        self.maybe_flush_rows().await
    }

    /// Count a row (or COPY line) of the current result against its budget; `true` when it
    /// must not reach the client: the result was cut at a `truncate` limit (a NOTICE says so),
    /// or refused at its limit (an ERROR, and the rest of the result is dropped).
    pub(super) async fn over_read_budget(&mut self, frame: &Frame) -> Result<bool, End> {
        let Some(r) = self.results_mut() else {
            return Ok(false);
        };
        if r.cut {
            return Ok(true);
        }
        let Some(budget) = &r.read_budget else {
            return Ok(false);
        };
        let (rows, bytes) = (r.returned.0 + 1, r.returned.1 + frame.raw.len() as u64);
        let over = budget.rows_returned.is_some_and(|max| rows > max)
            || budget.bytes_returned.is_some_and(|max| bytes > max);
        if !over {
            r.returned = (rows, bytes);
            return Ok(false);
        }
        let truncate = budget.truncate_results;
        let limit = budget.describe();
        if truncate {
            r.cut = true;
        } else {
            r.swallow = true;
        }
        let sent = r.returned.0;
        self.flush_rows().await?;
        let msg = format!("warden: the result reached its budget after {sent} rows ({limit})");
        if truncate {
            self.session.recorder().notice(&msg);
            self.to_client.extend_from_slice(&wire::notice(&msg, None));
        } else {
            self.session.recorder().error(&msg);
            self.to_client
                .extend_from_slice(&wire::error("ERROR", sqlstate::PROGRAM_LIMIT, &msg));
        }
        Ok(true)
    }

    /// Whether the next `n` rows of the current result go into the recording (up to the
    /// per-result cap; the rest are counted as not recorded).
    pub(super) fn take_recording_quota(&mut self, n: u64) -> bool {
        let cap = self.cfg.recorded_rows_per_result;
        let Some(r) = self.results_mut() else {
            return false;
        };
        let keep = r.recorded < cap;
        r.recorded += n;
        if !keep {
            self.session.recorder().omit_rows(n);
        }
        keep
    }

    pub(super) fn record_plain_row(&mut self, frame: &Frame) {
        if !self.take_recording_quota(1) {
            return;
        }
        let Some(r) = self.results() else { return };
        let row = rows::sent_rows(&frame.raw, &r.fields, &r.formats, false);
        self.session.recorder().rows(&row);
    }

    pub(super) async fn maybe_flush_rows(&mut self) -> Result<(), End> {
        if self.rows.len() >= self.cfg.mask_batch_rows
            || self.rows.bytes() as u64 >= self.cfg.mask_batch_bytes.0
        {
            self.flush_rows().await?;
        }
        self.flush_client_if_idle().await
    }

    /// Mask the held rows and queue them for the client; a policy failure refuses the result.
    pub(super) async fn flush_rows(&mut self) -> Result<(), End> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let Some(r) = self.expect.front() else {
            return Ok(());
        };
        let r = match r {
            Expect::Query(r) | Expect::Execute(r) => r,
            _ => return Ok(()),
        };
        let Some((seq, decision)) = r.mask_decision() else {
            return Ok(());
        };
        let decision = decision.clone();
        let typing = r.copy_typing.clone();
        let (fields, formats, copy) = match &typing {
            Some((spec, fields)) => (fields.clone(), copy_formats(spec).to_vec(), false),
            None => (r.fields.clone(), r.formats.clone(), r.copy),
        };
        let mode = match (&typing, copy) {
            (Some((spec, _)), _) => rows::Copy::Typed(spec),
            (None, true) => rows::Copy::Lines,
            (None, false) => rows::Copy::No,
        };
        let columns = if copy {
            vec![crate::policy::Column {
                name: "copy".into(),
                type_name: "text".into(),
            }]
        } else {
            rows::columns(&fields)
        };
        let mut text = std::mem::take(&mut self.rows.text);
        let unreadable = self.rows.unreadable.take();
        let masked = match unreadable {
            Some(e) => Err(format!("the gateway: {e}")),
            None => self
                .session
                .mask(seq, &decision, &columns, &mut text)
                .await
                .map_err(|f| f.to_string()),
        };
        let masked = match masked {
            Ok(edited) => {
                let n = text.len() as u64;
                self.rows.text = text;
                let mut out = BytesMut::new();
                match self.rows.encode(&edited, &fields, &formats, mode, &mut out) {
                    Ok(()) => {
                        if self.take_recording_quota(n) {
                            // The recording keeps what the client got.
                            let lines = mode != rows::Copy::No;
                            let sent = rows::sent_rows(&out, &fields, &formats, lines);
                            self.session.recorder().rows(&sent);
                        }
                        self.to_client.extend_from_slice(&out);
                        Ok(())
                    }
                    Err(e) => Err(format!("an edit invalid for its type: {e}")),
                }
            }
            Err(failure) => Err(failure),
        };
        match masked {
            Ok(()) => Ok(()),
            Err(failure) => {
                // Nothing of this result may reach the client: refuse it and drop the rest.
                self.rows = RowBatch::default();
                if let Some(r) = self.results_mut() {
                    r.swallow = true;
                }
                let msg = format!("warden: result refused by {failure}");
                self.session.recorder().error(&msg);
                self.to_client.extend_from_slice(&wire::error(
                    "ERROR",
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    &msg,
                ));
                Ok(())
            }
        }
    }
}

/// The cell formats of a typed COPY's lines: binary for binary COPY, else text.
fn copy_formats(spec: &CopyOut) -> &'static [i16] {
    match spec.format {
        crate::command::sql::CopyFormat::Binary => &[1],
        _ => &[],
    }
}
