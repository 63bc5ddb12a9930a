//! Command output under a `mask` verdict: cut into lines (bounded length), each line a one-cell
//! row for `mask-rows`, sent on masked or as it came. Bytes that are not UTF-8 (binary output)
//! are shown to the policy with replacement characters; a line the policy does not edit goes
//! out byte for byte, an edited one as the policy's text.

use crate::policy::{Column, Decision, Row};
use crate::session::Session;

/// Splits one stream (stdout or stderr) into lines.
pub struct Lines {
    buf: Vec<u8>,
    max_line: usize,
}

impl Lines {
    pub fn new(max_line: usize) -> Lines {
        Lines {
            buf: Vec::new(),
            max_line: max_line.max(1),
        }
    }

    /// Add output; returns the complete lines (with their `\n`), and lines cut at the bound.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(i) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + i + 1;
            let mut from = start;
            while end - from > self.max_line {
                out.push(self.buf[from..from + self.max_line].to_vec());
                from += self.max_line;
            }
            out.push(self.buf[from..end].to_vec());
            start = end;
        }
        self.buf.drain(..start);
        while self.buf.len() > self.max_line {
            out.push(self.buf.drain(..self.max_line).collect());
        }
        out
    }

    /// The partial line held back (a prompt, or output at EOF).
    pub fn take_partial(&mut self) -> Option<Vec<u8>> {
        (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf))
    }

    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }
}

/// Why output could not be masked: nothing of it may be sent.
pub struct MaskRefused(pub String);

/// Mask `lines` (one stream's) under `decision`; returns the bytes to send.
pub async fn mask_lines(
    session: &mut Session,
    seq: u64,
    decision: &Decision,
    stderr: bool,
    lines: Vec<Vec<u8>>,
) -> Result<Vec<u8>, MaskRefused> {
    let columns = [Column {
        name: if stderr { "stderr" } else { "stdout" }.to_string(),
        type_name: "text".to_string(),
    }];
    // Keep each line's terminator out of the cell: policies see the text of the line.
    let split: Vec<(&[u8], &[u8])> = lines.iter().map(|l| split_eol(l)).collect();
    let mut rows: Vec<Row> = split
        .iter()
        .map(|(body, _)| vec![Some(String::from_utf8_lossy(body).into_owned())])
        .collect();
    let edited = session
        .mask(seq, decision, &columns, &mut rows)
        .await
        .map_err(|f| {
            MaskRefused(format!(
                "policy `{}` failed to mask output: {}",
                f.policy, f.error
            ))
        })?;
    let mut changed = vec![false; rows.len()];
    for (row, _) in edited {
        if let Some(c) = changed.get_mut(row as usize) {
            *c = true;
        }
    }
    let mut out = Vec::with_capacity(lines.iter().map(Vec::len).sum());
    for ((row, (body, eol)), changed) in rows.into_iter().zip(split).zip(changed) {
        if changed {
            if let Some(Some(text)) = row.into_iter().next() {
                out.extend_from_slice(text.as_bytes());
            }
        } else {
            out.extend_from_slice(body);
        }
        out.extend_from_slice(eol);
    }
    Ok(out)
}

/// `(text, "\r\n" | "\n" | "")`.
fn split_eol(line: &[u8]) -> (&[u8], &[u8]) {
    let n = if line.ends_with(b"\r\n") {
        2
    } else if line.ends_with(b"\n") {
        1
    } else {
        0
    };
    line.split_at(line.len() - n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_hold_partial_and_cut_long() {
        let mut l = Lines::new(8);
        assert_eq!(l.push(b"ab\ncd"), vec![b"ab\n".to_vec()]);
        assert!(l.has_partial());
        assert_eq!(l.push(b"e\r\n"), vec![b"cde\r\n".to_vec()]);
        assert_eq!(
            l.push(b"0123456789abcdefXY\n"),
            vec![b"01234567".to_vec(), b"89abcdef".to_vec(), b"XY\n".to_vec()]
        );
        assert_eq!(l.push(b"0123456789"), vec![b"01234567".to_vec()]);
        assert_eq!(l.take_partial(), Some(b"89".to_vec()));
        assert_eq!(l.take_partial(), None);
    }

    #[test]
    fn eol_is_kept_out_of_the_cell() {
        assert_eq!(split_eol(b"a\r\n"), (&b"a"[..], &b"\r\n"[..]));
        assert_eq!(split_eol(b"a\n"), (&b"a"[..], &b"\n"[..]));
        assert_eq!(split_eol(b"a"), (&b"a"[..], &b""[..]));
    }
}
