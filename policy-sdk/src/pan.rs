//! Card-number (PAN) helpers for policies: detection and masking come from the `warden-pan`
//! crate the gateway shares (one detector for what policies mask and what the host scrubs);
//! this module adds the row edits a `mask-rows` answer is made of.

pub use warden_pan::*;

use crate::{CellEdit, Row};

/// Edits that mask every PAN in `rows`, each tagged with `rule` for the audit log. NULL cells
/// and cells without a PAN are left alone.
pub fn mask_rows(rows: &[Row], rule: &str) -> Vec<CellEdit> {
    mask_rows_where(rows, rule, |_| true)
}

/// Like [`mask_rows`], but only in the columns (by index) for which `mask_column` returns
/// true: for policies that exempt some columns, for example by name or by type.
pub fn mask_rows_where(
    rows: &[Row],
    rule: &str,
    mask_column: impl Fn(usize) -> bool,
) -> Vec<CellEdit> {
    let mut edits = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let Some(text) = cell else { continue };
            if !mask_column(c) {
                continue;
            }
            if let Some(masked) = mask_pans(text) {
                edits.push(CellEdit {
                    // Batches and rows are far below 4 billion; saturate rather than panic.
                    row: u32::try_from(r).unwrap_or(u32::MAX),
                    column: u32::try_from(c).unwrap_or(u32::MAX),
                    value: Some(masked),
                    rule: rule.to_string(),
                });
            }
        }
    }
    edits
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn mask_rows_edits_only_cells_with_pans() {
        let rows: Vec<Row> = vec![
            vec![Some("alice".into()), Some("4111 1111 1111 1111".into())],
            vec![Some("bob".into()), None],
            vec![
                Some("5500005555555559".into()),
                Some("4111111111111112".into()),
            ],
        ];
        let edits = mask_rows(&rows, "pan");
        let got: Vec<_> = edits
            .iter()
            .map(|e| (e.row, e.column, e.value.as_deref(), e.rule.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (0, 1, Some("**** **** **** 1111"), "pan"),
                (2, 0, Some("************5559"), "pan"),
            ]
        );
    }

    #[test]
    fn mask_rows_where_skips_exempt_columns() {
        let rows: Vec<Row> = vec![vec![
            Some("4111111111111111".into()),
            Some("4111111111111111".into()),
        ]];
        let edits = mask_rows_where(&rows, "pan", |c| c != 0);
        assert_eq!(edits.len(), 1);
        assert_eq!(edits[0].column, 1);
    }
}
