//! psql's aligned table format (the default, `\pset border 1`), drawn the way psql draws it so
//! that a replayed result reads exactly like the client's screen. `warden sessions` uses it
//! too, so every table warden prints looks the same.
//!
//! Rules, from psql's `print_aligned_text`: a column is as wide as its widest line (header
//! included); headers are centred and every header line ends with a space; cells are
//! left-aligned, numbers right-aligned; the last column of a data line is not padded; a cell
//! with several lines continues on the next line with `+` at the right edge of the column;
//! NULL shows as nothing. Widths count characters; psql counts display columns, which differs
//! for wide (CJK) and zero-width characters.

use std::fmt::Write as _;

/// How a column's cells sit in its width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Align {
    #[default]
    Left,
    Right,
}

/// psql's alignment for a Postgres type OID: numbers right, everything else left.
pub fn pg_align(type_oid: u32) -> Align {
    // int8, int2, int4, oid, xid, cid, float4, float8, money, numeric, xid8: psql's
    // `column_type_alignment`.
    match type_oid {
        20 | 21 | 23 | 26 | 28 | 29 | 700 | 701 | 790 | 1700 | 5069 => Align::Right,
        _ => Align::Left,
    }
}

/// A table to draw: `headers` `None` draws rows only (a result whose columns were not
/// recorded). Missing alignments are left; short rows are padded with NULLs.
#[derive(Debug, Clone, Default)]
pub struct Table<'a> {
    pub headers: Option<&'a [String]>,
    pub aligns: &'a [Align],
    pub rows: &'a [Vec<Option<String>>],
}

impl Table<'_> {
    /// Append the table (header, separator, rows; no footer) to `out`.
    pub fn draw(&self, out: &mut String) {
        let ncols = self
            .rows
            .iter()
            .map(Vec::len)
            .chain(self.headers.map(<[String]>::len))
            .max()
            .unwrap_or(0);
        if ncols == 0 {
            // What psql prints for a result without columns (`SELECT;`): a bare rule.
            if self.headers.is_some() {
                out.push_str("--\n");
            }
            return;
        }
        let widths = self.widths(ncols);
        if let Some(headers) = self.headers {
            let cells: Vec<Option<&str>> = (0..ncols)
                .map(|j| Some(headers.get(j).map_or("", String::as_str)))
                .collect();
            draw_lines(out, &cells, &widths, |_| Align::Left, true);
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
            out.push_str(&rule.join("+"));
            out.push('\n');
        }
        for row in self.rows {
            let cells: Vec<Option<&str>> = (0..ncols)
                .map(|j| row.get(j).and_then(Option::as_deref))
                .collect();
            draw_lines(out, &cells, &widths, |j| self.align(j), false);
        }
    }

    fn align(&self, column: usize) -> Align {
        self.aligns.get(column).copied().unwrap_or_default()
    }

    fn widths(&self, ncols: usize) -> Vec<usize> {
        let mut widths = vec![0; ncols];
        let all = self
            .headers
            .into_iter()
            .map(|h| h.iter().map(|s| Some(s.as_str())).collect::<Vec<_>>())
            .chain(
                self.rows
                    .iter()
                    .map(|r| r.iter().map(Option::as_deref).collect()),
            );
        for cells in all {
            for (j, cell) in cells.into_iter().enumerate() {
                let w = cell.map_or(0, |c| c.split('\n').map(width).max().unwrap_or(0));
                if let Some(slot) = widths.get_mut(j) {
                    *slot = (*slot).max(w);
                }
            }
        }
        widths
    }
}

/// The footer psql prints under a result: `(1 row)`, `(N rows)`.
pub fn rows_footer(n: u64) -> String {
    if n == 1 {
        "(1 row)".to_owned()
    } else {
        format!("({n} rows)")
    }
}

/// Draw one header or data row, which is several screen lines when a cell holds newlines.
fn draw_lines(
    out: &mut String,
    cells: &[Option<&str>],
    widths: &[usize],
    align: impl Fn(usize) -> Align,
    header: bool,
) {
    let lines: Vec<Vec<&str>> = cells
        .iter()
        .map(|c| c.map_or_else(|| vec![""], |c| c.split('\n').collect()))
        .collect();
    let height = lines.iter().map(Vec::len).max().unwrap_or(1);
    let last = cells.len().saturating_sub(1);
    for k in 0..height {
        for (j, cell_lines) in lines.iter().enumerate() {
            let w = widths.get(j).copied().unwrap_or(0);
            let more = k + 1 < cell_lines.len();
            out.push(' ');
            match cell_lines.get(k) {
                Some(text) if header => {
                    let pad = w.saturating_sub(width(text));
                    pad_to(out, pad / 2);
                    out.push_str(text);
                    pad_to(out, pad - pad / 2);
                }
                Some(text) => {
                    let pad = w.saturating_sub(width(text));
                    if align(j) == Align::Right {
                        pad_to(out, pad);
                        out.push_str(text);
                    } else {
                        out.push_str(text);
                        if j < last || more {
                            pad_to(out, pad);
                        }
                    }
                }
                // This cell has no more lines: blank, and nothing at all at the end of a line.
                None if j < last || header => pad_to(out, w),
                None => {}
            }
            if more {
                out.push('+');
            } else if j < last || header {
                out.push(' ');
            }
            if j < last {
                out.push('|');
            }
        }
        out.push('\n');
    }
}

fn pad_to(out: &mut String, n: usize) {
    let _ = write!(out, "{:n$}", "");
}

fn width(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn draw(headers: &[&str], aligns: &[Align], rows: &[&[Option<&str>]]) -> String {
        let headers: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
        let rows: Vec<Vec<Option<String>>> = rows
            .iter()
            .map(|r| r.iter().map(|c| c.map(str::to_owned)).collect())
            .collect();
        let mut out = String::new();
        Table {
            headers: Some(&headers),
            aligns,
            rows: &rows,
        }
        .draw(&mut out);
        out
    }

    #[test]
    fn numbers_right_text_left_header_centred() {
        let out = draw(
            &["id", "name"],
            &[Align::Right, Align::Left],
            &[&[Some("1"), Some("alice")], &[Some("12"), None]],
        );
        assert_eq!(out, " id | name  \n----+-------\n  1 | alice\n 12 | \n");
    }

    #[test]
    fn multi_line_cells_continue_with_plus() {
        let out = draw(
            &["a", "b"],
            &[],
            &[&[Some("x\ny"), Some("long")], &[Some("z"), Some("p\nq")]],
        );
        assert_eq!(
            out,
            " a |  b   \n---+------\n x+| long\n y | \n z | p   +\n   | q\n"
        );
    }

    #[test]
    fn pg_numeric_types_align_right() {
        assert_eq!(pg_align(23), Align::Right);
        assert_eq!(pg_align(1700), Align::Right);
        assert_eq!(pg_align(25), Align::Left);
    }
}
