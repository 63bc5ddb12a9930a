//! Card-number (PAN) detection and masking (PCI DSS 3.4).
//!
//! A PAN here is 13 to 19 digits, written contiguously or in groups separated by single spaces
//! or dashes (`4111 1111 1111 1111`, `3782-822463-10005`), passing the Luhn check, and not part
//! of a longer digit run. It is found anywhere in a text, also inside longer text. Masking keeps
//! at most the last four digits and every separator: `**** **** **** 1111`.
//!
//! The common case, a cell without a card number, costs one pass over its bytes and no
//! allocation: cells with fewer than 13 digits are rejected before any parsing.

use crate::{CellEdit, Row};
use std::ops::Range;

/// Fewest and most digits a PAN has (ISO/IEC 7812).
const MIN_DIGITS: usize = 13;
const MAX_DIGITS: usize = 19;
/// Digits left visible by masking.
const KEEP_LAST: usize = 4;
/// The masking character.
const MASK: u8 = b'*';

/// Whether the ASCII digits pass the Luhn check.
pub fn luhn_valid(digits: &[u8]) -> bool {
    if digits.is_empty() {
        return false;
    }
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        if !d.is_ascii_digit() {
            return false;
        }
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Byte ranges of every PAN in `text`, in order. Each range starts and ends on a digit.
pub fn find_pans(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    if count_digits(bytes) < MIN_DIGITS {
        return found;
    }
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let (groups, end) = digit_groups(bytes, i);
        find_in_run(bytes, &groups, &mut found);
        i = end;
    }
    found
}

/// The text with every PAN masked, or `None` when it holds no PAN (no allocation then).
pub fn mask_pans(text: &str) -> Option<String> {
    let pans = find_pans(text);
    if pans.is_empty() {
        return None;
    }
    let mut out = text.as_bytes().to_vec();
    for range in pans {
        let digits = out[range.clone()]
            .iter()
            .filter(|b| b.is_ascii_digit())
            .count();
        let mut to_mask = digits.saturating_sub(KEEP_LAST);
        for b in &mut out[range] {
            if to_mask == 0 {
                break;
            }
            if b.is_ascii_digit() {
                *b = MASK;
                to_mask -= 1;
            }
        }
    }
    // Only ASCII digits were replaced by an ASCII character, so the bytes are still UTF-8.
    String::from_utf8(out).ok()
}

/// Edits that mask every PAN in `rows`, each tagged with `rule`. NULL cells are left alone.
pub fn mask_rows(rows: &[Row], rule: &str) -> Vec<CellEdit> {
    let mut edits = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            if let Some(masked) = cell.as_deref().and_then(mask_pans) {
                edits.push(CellEdit {
                    row: r as u32,
                    column: c as u32,
                    value: Some(masked),
                    rule: rule.to_string(),
                });
            }
        }
    }
    edits
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| b.is_ascii_digit()).count()
}

/// A maximal run of digit groups starting at `start`, joined by single spaces or dashes.
/// Returns the groups' byte ranges and the index just past the run.
fn digit_groups(bytes: &[u8], start: usize) -> (Vec<Range<usize>>, usize) {
    let mut groups = Vec::new();
    let mut i = start;
    loop {
        let group_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        groups.push(group_start..i);
        let joined = i + 1 < bytes.len()
            && (bytes[i] == b' ' || bytes[i] == b'-')
            && bytes[i + 1].is_ascii_digit();
        if !joined {
            return (groups, i);
        }
        i += 1;
    }
}

/// PANs within one run: whole consecutive groups holding 13–19 digits that pass Luhn. The run
/// as a whole is tried first; longer runs are searched left to right, longest match first, so
/// `4111111111111111 5500005555555559` yields both cards.
fn find_in_run(bytes: &[u8], groups: &[Range<usize>], found: &mut Vec<Range<usize>>) {
    let mut digits = [0u8; MAX_DIGITS];
    let mut s = 0;
    while s < groups.len() {
        let mut best: Option<usize> = None;
        let mut n = 0;
        for e in s..groups.len() {
            n += groups[e].len();
            if n > MAX_DIGITS {
                break;
            }
            if n >= MIN_DIGITS && luhn_valid(collect(bytes, &groups[s..=e], &mut digits)) {
                best = Some(e);
            }
        }
        match best {
            Some(e) => {
                found.push(groups[s].start..groups[e].end);
                s = e + 1;
            }
            None => s += 1,
        }
    }
}

/// Copy the digits of `groups` into `buf` (at most [`MAX_DIGITS`]; callers check).
fn collect<'a>(bytes: &[u8], groups: &[Range<usize>], buf: &'a mut [u8; MAX_DIGITS]) -> &'a [u8] {
    let mut n = 0;
    for g in groups {
        for &b in &bytes[g.clone()] {
            if n < MAX_DIGITS {
                buf[n] = b;
                n += 1;
            }
        }
    }
    &buf[..n]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn masked(s: &str) -> String {
        mask_pans(s).unwrap_or_else(|| s.to_string())
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid(b"4111111111111111"));
        assert!(luhn_valid(b"378282246310005"));
        assert!(!luhn_valid(b"4111111111111112"));
        assert!(!luhn_valid(b""));
        assert!(!luhn_valid(b"41111a1111111111"));
    }

    #[test]
    fn card_formats() {
        assert_eq!(masked("4111111111111111"), "************1111");
        assert_eq!(masked("4111 1111 1111 1111"), "**** **** **** 1111");
        assert_eq!(masked("4111-1111-1111-1111"), "****-****-****-1111");
        assert_eq!(masked("5500 0055 5555 5559"), "**** **** **** 5559");
        assert_eq!(masked("3782-822463-10005"), "****-******-*0005");
        assert_eq!(masked("378282246310005"), "***********0005");
        assert_eq!(masked("6011111111111117"), "************1117");
        assert_eq!(masked("4222222222222"), "*********2222"); // 13-digit Visa
        assert_eq!(masked("6011000000000000001"), "***************0001"); // 19 digits
    }

    #[test]
    fn not_cards() {
        for s in [
            "4111111111111112",        // Luhn-invalid look-alike
            "4111 1111 1111 1112",     // grouped, Luhn-invalid
            "123456789012",            // 12 digits
            "+1 415 555 0100",         // phone number
            "2024-01-15 12:30:00",     // timestamp
            "41111111111111110000000", // 23-digit id containing a valid prefix
            "",
            "no digits at all",
        ] {
            assert_eq!(mask_pans(s), None, "{s}");
        }
    }

    #[test]
    fn embedded_and_adjacent() {
        assert_eq!(
            masked("card 4111-1111-1111-1111 exp 12/29"),
            "card ****-****-****-1111 exp 12/29"
        );
        assert_eq!(
            masked("4111111111111111 5500005555555559"),
            "************1111 ************5559"
        );
        assert_eq!(masked("pan=4111111111111111;"), "pan=************1111;");
        assert_eq!(masked("é 4111111111111111 ü"), "é ************1111 ü");
        assert_eq!(masked("1234-4111111111111111"), "1234-************1111");
        // Two separators in a row end the run: no grouping across them.
        assert_eq!(mask_pans("4111  1111  1111  1111"), None);
    }

    #[test]
    fn rows_skip_nulls_and_keep_positions() {
        let rows = vec![
            vec![Some("alice".into()), Some("4111111111111111".into()), None],
            vec![
                Some("bob".into()),
                None,
                Some("ref 5500 0055 5555 5559".into()),
            ],
        ];
        let edits = mask_rows(&rows, "pan");
        assert_eq!(edits.len(), 2);
        assert_eq!((edits[0].row, edits[0].column), (0, 1));
        assert_eq!(edits[1].value.as_deref(), Some("ref **** **** **** 5559"));
        assert_eq!(edits[1].rule, "pan");
    }
}
