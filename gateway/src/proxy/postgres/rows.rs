//! Result rows under a `mask` verdict: DataRows (and COPY OUT lines) are held in a bounded
//! batch, shown to the policy chain as text, and re-encoded with the edits applied. Rows never
//! reach the client before the policies have seen them.
//!
//! Text-format cells are text. Binary-format cells of text types (text, varchar, char, name,
//! json, unknown) carry the same bytes as text, so they are masked the same way; other binary
//! cells are shown to policies as NULL and, if a policy edits them, become NULL on the wire
//! (a masked value cannot be re-encoded as, say, a binary numeric).

use super::wire::{self, FieldDesc};
use crate::policy::{Column, Row};
use bytes::{Bytes, BytesMut};

/// Type OIDs whose binary representation is their text.
const TEXTLIKE_OIDS: &[u32] = &[25, 1043, 1042, 19, 705, 114];

/// The type name policies see for a type OID.
pub fn type_name(oid: u32) -> String {
    let name = match oid {
        16 => "bool",
        17 => "bytea",
        19 => "name",
        20 => "int8",
        21 => "int2",
        23 => "int4",
        25 => "text",
        114 => "json",
        700 => "float4",
        701 => "float8",
        705 => "unknown",
        1042 => "bpchar",
        1043 => "varchar",
        1082 => "date",
        1114 => "timestamp",
        1184 => "timestamptz",
        1700 => "numeric",
        2950 => "uuid",
        3802 => "jsonb",
        other => return format!("oid:{other}"),
    };
    name.to_string()
}

/// Columns for the policies from a RowDescription and the result formats a Bind asked for.
pub fn columns(fields: &[FieldDesc]) -> Vec<Column> {
    fields
        .iter()
        .map(|f| Column {
            name: f.name.clone(),
            type_name: type_name(f.type_oid),
        })
        .collect()
}

/// Whether column `i` arrives as text (format codes as in Bind: none = all text, one = all).
fn is_text(fields: &[FieldDesc], formats: &[i16], i: usize) -> bool {
    let format = match formats.len() {
        0 => fields.get(i).map_or(0, |f| f.format),
        1 => formats[0],
        _ => formats.get(i).copied().unwrap_or(0),
    };
    format == 0
        || fields
            .get(i)
            .is_some_and(|f| TEXTLIKE_OIDS.contains(&f.type_oid))
}

/// A batch of rows waiting for their masking.
#[derive(Default)]
pub struct RowBatch {
    /// Original cells, to send unchanged when a policy did not edit them.
    raw: Vec<Vec<Option<Bytes>>>,
    /// The cells as the policies see them.
    pub text: Vec<Row>,
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
        let mut raw = Vec::with_capacity(cells.len());
        let mut text = Vec::with_capacity(cells.len());
        for (i, cell) in cells.into_iter().enumerate() {
            match cell {
                None => {
                    raw.push(None);
                    text.push(None);
                }
                Some(v) => {
                    raw.push(Some(body.slice_ref(v)));
                    text.push(
                        is_text(fields, formats, i)
                            .then(|| String::from_utf8_lossy(v).into_owned()),
                    );
                }
            }
        }
        self.bytes += frame.len();
        self.raw.push(raw);
        self.text.push(text);
        Ok(())
    }

    /// Add one COPY OUT line (a CopyData payload) as a one-cell row.
    pub fn push_copy_line(&mut self, payload: Bytes) {
        self.bytes += payload.len();
        self.text
            .push(vec![Some(String::from_utf8_lossy(&payload).into_owned())]);
        self.raw.push(vec![Some(payload)]);
    }

    /// Encode the batch with `edited` cells (row, column) taken from `text`, into `out`; the
    /// batch is emptied. `copy` encodes CopyData lines instead of DataRows.
    pub fn encode(
        &mut self,
        edited: &[(u32, u32)],
        fields: &[FieldDesc],
        formats: &[i16],
        copy: bool,
        out: &mut BytesMut,
    ) {
        let mut changed = vec![Vec::new(); self.raw.len()];
        for &(r, c) in edited {
            if let Some(row) = changed.get_mut(r as usize) {
                row.push(c as usize);
            }
        }
        for (r, raw) in self.raw.iter().enumerate() {
            let text = &self.text[r];
            if copy {
                let line = match changed[r].is_empty() {
                    true => raw.first().cloned().flatten().unwrap_or_default(),
                    false => Bytes::from(text.first().cloned().flatten().unwrap_or_default()),
                };
                out.extend_from_slice(&wire::copy_data(&line));
                continue;
            }
            if changed[r].is_empty() {
                let cells: Vec<Option<&[u8]>> = raw.iter().map(|c| c.as_deref()).collect();
                out.extend_from_slice(&wire::data_row(&cells));
                continue;
            }
            let cells: Vec<Option<&[u8]>> = raw
                .iter()
                .enumerate()
                .map(|(c, cell)| {
                    if changed[r].contains(&c) {
                        // A text cell gets the policy's text; an edited binary non-text cell
                        // becomes NULL, since text cannot stand in for its binary encoding.
                        match &text[c] {
                            Some(t) if is_text(fields, formats, c) => Some(t.as_bytes()),
                            _ => None,
                        }
                    } else {
                        cell.as_deref()
                    }
                })
                .collect();
            out.extend_from_slice(&wire::data_row(&cells));
        }
        self.raw.clear();
        self.text.clear();
        self.bytes = 0;
    }
}
