//! Result rows under a `mask` verdict: DataRows (and COPY OUT lines) are held in a bounded
//! batch, shown to the policy chain as text, and re-encoded with the edits applied. Rows never
//! reach the client before the policies have seen them.
//!
//! Each cell is shown in PostgreSQL's text form whatever its format (`cells.rs` decodes binary
//! integers, numerics, jsonb, arrays and records), and an edit goes back valid for the cell's
//! type in the client's format, or the result is refused.

use super::cells::{self, Applied};
use super::wire::{self, FieldDesc};
use crate::policy::{Column, Row};
use bytes::{Bytes, BytesMut};

/// Columns for the policies from a RowDescription.
pub fn columns(fields: &[FieldDesc]) -> Vec<Column> {
    fields
        .iter()
        .map(|f| Column {
            name: f.name.clone(),
            type_name: cells::type_name(f.type_oid),
        })
        .collect()
}

/// The format of column `i` (format codes as in Bind: none = as described, one = all).
fn format_of(fields: &[FieldDesc], formats: &[i16], i: usize) -> i16 {
    match formats.len() {
        0 => fields.get(i).map_or(0, |f| f.format),
        1 => formats[0],
        _ => formats.get(i).copied().unwrap_or(0),
    }
}

/// The type OID of column `i` (`0`, unknown, past the described columns).
fn oid_of(fields: &[FieldDesc], i: usize) -> u32 {
    fields.get(i).map_or(0, |f| f.type_oid)
}

/// The rows in `encoded` (DataRow or CopyData messages) as text, as the client will read them:
/// what the recording keeps.
pub fn sent_rows(encoded: &[u8], fields: &[FieldDesc], formats: &[i16], copy: bool) -> Vec<Row> {
    let mut out = Vec::new();
    let mut rest = encoded;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let Some(body) = rest.get(5..1 + len) else {
            break;
        };
        if copy {
            out.push(vec![Some(String::from_utf8_lossy(body).into_owned())]);
        } else if let Ok(row) = wire::parse_data_row(body) {
            out.push(
                row.iter()
                    .enumerate()
                    .map(|(i, c)| {
                        c.map(|v| {
                            cells::show(oid_of(fields, i), format_of(fields, formats, i), v)
                                .unwrap_or_else(|| format!("<{} binary bytes>", v.len()))
                        })
                    })
                    .collect(),
            );
        }
        rest = &rest[1 + len..];
    }
    out
}

/// What a batch's rows are on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Copy<'a> {
    /// DataRows.
    No,
    /// COPY lines whose columns' types are unknown: each line is one text cell.
    Lines,
    /// COPY lines read by their columns' types.
    Typed(&'a crate::command::sql::CopyOut),
}

/// A batch of rows waiting for their masking.
#[derive(Default)]
pub struct RowBatch {
    /// Original cells, to send unchanged when a policy did not edit them.
    raw: Vec<Vec<Option<Bytes>>>,
    /// The cells as the policies see them (edited in place by the masking).
    pub text: Vec<Row>,
    /// Typed COPY lines: each row's line as it came and the bytes that go before it.
    lines: Vec<(Bytes, Vec<u8>)>,
    /// A cell that should have decoded did not (a malformed binary value): the result is
    /// refused rather than sent unread.
    pub unreadable: Option<String>,
    bytes: usize,
}

impl RowBatch {
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Add a DataRow (its whole frame, so cells are zero-copy slices of it).
    pub fn push_data_row(
        &mut self,
        frame: &Bytes,
        fields: &[FieldDesc],
        formats: &[i16],
    ) -> Result<(), wire::WireError> {
        let body = frame.slice(5..);
        let cells = wire::parse_data_row(&body)?;
        let raw = cells
            .into_iter()
            .map(|c| c.map(|v| body.slice_ref(v)))
            .collect();
        self.push_cells(raw, fields, formats);
        self.bytes += frame.len();
        Ok(())
    }

    /// Add one typed COPY line: its cells, and the line as it came (sent as is if no cell of
    /// it is edited) with what goes before it (the binary COPY header).
    pub fn push_copy_row(
        &mut self,
        cells: Vec<Option<Vec<u8>>>,
        fields: &[FieldDesc],
        formats: &[i16],
        line: Bytes,
        prefix: Vec<u8>,
    ) {
        self.bytes += line.len();
        self.lines.push((line, prefix));
        self.push_cells(
            cells.into_iter().map(|c| c.map(Bytes::from)).collect(),
            fields,
            formats,
        );
    }

    fn push_cells(&mut self, raw: Vec<Option<Bytes>>, fields: &[FieldDesc], formats: &[i16]) {
        let mut text = Vec::with_capacity(raw.len());
        for (i, cell) in raw.iter().enumerate() {
            match cell {
                None => text.push(None),
                Some(v) => {
                    let (oid, format) = (oid_of(fields, i), format_of(fields, formats, i));
                    let shown = cells::show(oid, format, v);
                    if shown.is_none() && !cells::may_be_unread(oid) && self.unreadable.is_none() {
                        let name = fields.get(i).map_or("?", |f| f.name.as_str());
                        self.unreadable = Some(format!(
                            "column {name:?}: a {} value the gateway could not decode",
                            cells::type_name(oid)
                        ));
                    }
                    text.push(shown);
                }
            }
        }
        self.raw.push(raw);
        self.text.push(text);
    }

    /// Add one COPY OUT line (a CopyData payload) as a one-cell row.
    pub fn push_copy_line(&mut self, payload: Bytes) {
        self.bytes += payload.len();
        self.text
            .push(vec![Some(String::from_utf8_lossy(&payload).into_owned())]);
        self.raw.push(vec![Some(payload)]);
    }

    /// Encode the batch with `edited` cells (row, column) taken from `text`, into `out`; the
    /// batch is emptied. `copy` encodes CopyData lines instead of DataRows. An edit that cannot
    /// be made valid for its column's type fails the whole batch: nothing of it is written.
    pub fn encode(
        &mut self,
        edited: &[(u32, u32)],
        fields: &[FieldDesc],
        formats: &[i16],
        copy: Copy<'_>,
        out: &mut BytesMut,
    ) -> Result<(), String> {
        let mut changed = vec![Vec::new(); self.raw.len()];
        for &(r, c) in edited {
            if let Some(row) = changed.get_mut(r as usize) {
                row.push(c as usize);
            }
        }
        let mut encoded = BytesMut::new();
        for (r, raw) in self.raw.iter().enumerate() {
            let text = &self.text[r];
            if let (Copy::Typed(_), true) = (copy, changed[r].is_empty()) {
                encoded.extend_from_slice(&wire::copy_data(&self.lines[r].0));
                continue;
            }
            if copy == Copy::Lines {
                let line = match changed[r].is_empty() {
                    true => raw.first().cloned().flatten().unwrap_or_default(),
                    false => {
                        let original = raw.first().cloned().flatten().unwrap_or_default();
                        let masked = text.first().cloned().flatten().unwrap_or_default();
                        let original = String::from_utf8_lossy(&original);
                        Bytes::from(cells::zero_numbers(&original, &masked))
                    }
                };
                encoded.extend_from_slice(&wire::copy_data(&line));
                continue;
            }
            if changed[r].is_empty() {
                let cells: Vec<Option<&[u8]>> = raw.iter().map(|c| c.as_deref()).collect();
                encoded.extend_from_slice(&wire::data_row(&cells));
                continue;
            }
            let mut cells: Vec<Option<std::borrow::Cow<'_, [u8]>>> = raw
                .iter()
                .map(|c| c.as_deref().map(std::borrow::Cow::Borrowed))
                .collect();
            for &c in &changed[r] {
                let Some(cell) = cells.get_mut(c) else {
                    continue;
                };
                let original = raw[c].as_deref().unwrap_or_default();
                let (oid, format) = (oid_of(fields, c), format_of(fields, formats, c));
                // What the policy saw, derived again for the few cells it edited rather than
                // kept for every cell of every row.
                let shown = raw[c].as_deref().and_then(|v| cells::show(oid, format, v));
                let applied =
                    cells::apply(oid, format, original, shown.as_deref(), text[c].as_deref())
                        .map_err(|e| {
                            let name = fields.get(c).map_or("?", |f| f.name.as_str());
                            format!("column {name:?} ({}): {e}", cells::type_name(oid))
                        })?;
                if let Applied::Value(v) = applied {
                    *cell = v.map(std::borrow::Cow::Owned);
                }
            }
            let cells: Vec<Option<&[u8]>> = cells.iter().map(|c| c.as_deref()).collect();
            match copy {
                Copy::Typed(spec) => {
                    let line = super::copy::join(spec, &self.lines[r].1, &cells);
                    encoded.extend_from_slice(&wire::copy_data(&line));
                }
                _ => encoded.extend_from_slice(&wire::data_row(&cells)),
            }
        }
        self.lines.clear();
        self.raw.clear();
        self.text.clear();
        self.bytes = 0;
        out.extend_from_slice(&encoded);
        Ok(())
    }
}
