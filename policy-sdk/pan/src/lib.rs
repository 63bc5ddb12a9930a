//! Card-number (PAN) detection and masking (PCI DSS 3.4), in one small crate shared by the
//! gateway (which scrubs audit records, recordings and logs with it) and the policy SDK
//! (which masks result rows with it): one detector, so what a policy masks and what the host
//! scrubs are the same numbers. No dependencies; it builds for the host and for wasm32.
//!
//! A PAN here is 13 to 19 ASCII digits that pass the Luhn check, written either contiguously
//! (`4111111111111111`) or in groups joined by one space or one dash, the same separator
//! throughout (`4111 1111 1111 1111`, `3782-822463-10005`). A digit right before or after the
//! candidate disqualifies it: it is then part of a longer number (an id, an amount).
//!
//! Masking keeps the last four digits and every separator (`**** **** **** 1111`), which is
//! what PCI DSS 3.4 allows to be shown.
//!
//! The scanner is written for the row-masking hot path: it walks bytes, never chars, never
//! allocates unless it found something, and gives up after one counting pass when the text
//! has fewer than 13 digits (the case for nearly every cell).

use std::ops::Range;

/// Fewest digits in a PAN (ISO/IEC 7812).
const MIN_DIGITS: usize = 13;
/// Most digits in a PAN (ISO/IEC 7812).
const MAX_DIGITS: usize = 19;

/// Whether `digits` (ASCII digits only) pass the Luhn (mod 10) check.
///
/// Returns `false` for an empty slice or one holding anything but `b'0'..=b'9'`.
///
/// ```
/// use warden_pan::luhn_valid;
/// assert!(luhn_valid(b"4111111111111111"));
/// assert!(!luhn_valid(b"4111111111111112"));
/// ```
pub fn luhn_valid(digits: &[u8]) -> bool {
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) && luhn_skipping(digits)
}

/// Luhn over the digits of `bytes`, ignoring anything else (the separators of a grouped PAN).
fn luhn_skipping(bytes: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut double = false;
    for &b in bytes.iter().rev() {
        if !b.is_ascii_digit() {
            continue;
        }
        let mut d = u32::from(b - b'0');
        if double {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        double = !double;
    }
    sum.is_multiple_of(10)
}

/// Byte ranges of every PAN in `text`, in order, not overlapping.
///
/// Each range starts at the PAN's first digit and ends after its last, so it includes the
/// separators between groups. Within a run of separator-joined digit groups the scan goes left
/// to right and, from each group, takes the longest sequence of whole groups that qualifies:
/// `"4111111111111111 5500005555555559"` gives two PANs, `"ref 12 4111111111111111"` one.
///
/// ```
/// use warden_pan::find_pans;
/// let text = "card 4111-1111-1111-1111 exp 12/29";
/// let found = find_pans(text);
/// assert_eq!(found.len(), 1);
/// assert_eq!(&text[found[0].clone()], "4111-1111-1111-1111");
/// ```
pub fn find_pans(text: &str) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    if has_enough_digits(text.as_bytes()) {
        scan(text.as_bytes(), |range| found.push(range));
    }
    found
}

/// `text` with every PAN's digits but the last four replaced by `*`, separators kept; `None`
/// when `text` holds no PAN, so the common case neither allocates nor copies.
///
/// ```
/// use warden_pan::mask_pans;
/// assert_eq!(mask_pans("4111 1111 1111 1111").as_deref(), Some("**** **** **** 1111"));
/// assert_eq!(mask_pans("order 1234"), None);
/// ```
pub fn mask_pans(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    if !has_enough_digits(bytes) {
        return None;
    }
    let mut out: Option<String> = None;
    let mut copied = 0;
    scan(bytes, |range| {
        let masked = out.get_or_insert_with(|| String::with_capacity(text.len()));
        // Ranges start and end on ASCII digits, so these slices fall on char boundaries.
        masked.push_str(text.get(copied..range.start).unwrap_or_default());
        let pan = &bytes[range.clone()];
        let mut to_hide = pan
            .iter()
            .filter(|b| b.is_ascii_digit())
            .count()
            .saturating_sub(4);
        for &b in pan {
            if b.is_ascii_digit() && to_hide > 0 {
                masked.push('*');
                to_hide -= 1;
            } else {
                masked.push(char::from(b));
            }
        }
        copied = range.end;
    });
    let mut masked = out?;
    masked.push_str(text.get(copied..).unwrap_or_default());
    Some(masked)
}

/// `text` with every PAN masked, borrowed when there was none: what the gateway stores.
///
/// ```
/// assert_eq!(warden_pan::scrub("card 4111111111111111"), "card ************1111");
/// ```
pub fn scrub(text: &str) -> std::borrow::Cow<'_, str> {
    match mask_pans(text) {
        Some(masked) => std::borrow::Cow::Owned(masked),
        None => std::borrow::Cow::Borrowed(text),
    }
}

/// The cheap pre-check: a text with fewer than [`MIN_DIGITS`] digits cannot hold a PAN.
fn has_enough_digits(bytes: &[u8]) -> bool {
    // Counting the whole slice (rather than stopping at 13) keeps the loop branch-free, which
    // the compiler turns into straight-line code; cells are short.
    bytes.len() >= MIN_DIGITS && bytes.iter().filter(|b| b.is_ascii_digit()).count() >= MIN_DIGITS
}

/// Calls `found` with the byte range of each PAN in `bytes`, left to right.
fn scan(bytes: &[u8], mut found: impl FnMut(Range<usize>)) {
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // `i` starts a digit group: the byte before it, if any, is not a digit.
        match longest_pan_at(bytes, i) {
            Some(end) => {
                found(i..end);
                i = end;
            }
            None => {
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
            }
        }
    }
}

/// The end of the longest PAN made of whole digit groups starting at `start` (the first digit
/// of a group), if any.
fn longest_pan_at(bytes: &[u8], start: usize) -> Option<usize> {
    // Ends of group sequences with 13..=19 digits, shortest first. Every group adds at least
    // one digit, so there are at most 7 of them.
    let mut ends = [0usize; MAX_DIGITS - MIN_DIGITS + 1];
    let mut n_ends = 0;
    let mut digits = 0;
    let mut separator = None;
    let mut i = start;
    loop {
        let group_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - group_start;
        if digits > MAX_DIGITS {
            break;
        }
        if digits >= MIN_DIGITS {
            ends[n_ends] = i;
            n_ends += 1;
        }
        // Continue only over one separator, the same one as before, followed by a digit.
        match (bytes.get(i), bytes.get(i + 1)) {
            (Some(&sep @ (b' ' | b'-')), Some(next))
                if next.is_ascii_digit() && separator.is_none_or(|s| s == sep) =>
            {
                separator = Some(sep);
                i += 1;
            }
            _ => break,
        }
    }
    ends[..n_ends]
        .iter()
        .rev()
        .copied()
        .find(|&end| luhn_skipping(&bytes[start..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PANs `find_pans` reports, as text.
    fn pans(text: &str) -> Vec<&str> {
        find_pans(text).into_iter().map(|r| &text[r]).collect()
    }

    fn masked(text: &str) -> String {
        mask_pans(text).unwrap_or_else(|| text.to_string())
    }

    #[test]
    fn luhn_accepts_test_numbers_and_rejects_changed_ones() {
        for good in [
            "4111111111111111",    // Visa
            "4012888888881881",    // Visa
            "4222222222222",       // Visa, 13 digits
            "5500005555555559",    // Mastercard
            "5555555555554444",    // Mastercard
            "2223003122003222",    // Mastercard 2-series
            "378282246310005",     // Amex
            "371449635398431",     // Amex
            "6011111111111117",    // Discover
            "6011000990139424",    // Discover
            "3530111333300000",    // JCB
            "30569309025904",      // Diners, 14 digits
            "6011000000000000001", // 19 digits
        ] {
            assert!(luhn_valid(good.as_bytes()), "{good}");
        }
        for bad in ["4111111111111112", "5500005555555558", "378282246310006"] {
            assert!(!luhn_valid(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn luhn_rejects_empty_and_non_digits() {
        assert!(!luhn_valid(b""));
        assert!(!luhn_valid(b"4111 1111 1111 1111"));
        assert!(!luhn_valid(b"411111111111111a"));
    }

    #[test]
    fn finds_contiguous_pans_of_every_brand_and_length() {
        for pan in [
            "4111111111111111",
            "4222222222222",
            "5500005555555559",
            "378282246310005",
            "6011111111111117",
            "30569309025904",
            "6011000000000000001",
        ] {
            assert_eq!(pans(pan), [pan]);
        }
    }

    #[test]
    fn finds_grouped_pans() {
        for pan in [
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5500 0055 5555 5559",
            "3782 822463 10005",
            "3782-822463-10005",
            "6011 0000 0000 0000 001",
        ] {
            assert_eq!(pans(pan), [pan]);
        }
    }

    #[test]
    fn finds_pans_inside_text() {
        assert_eq!(
            pans("card 4111-1111-1111-1111 exp 12/29"),
            ["4111-1111-1111-1111"]
        );
        assert_eq!(pans("pan=4111111111111111;"), ["4111111111111111"]);
        assert_eq!(pans("(5500 0055 5555 5559)"), ["5500 0055 5555 5559"]);
        assert_eq!(pans("x4111111111111111y"), ["4111111111111111"]);
    }

    #[test]
    fn finds_two_adjacent_pans() {
        assert_eq!(
            pans("4111111111111111 5500005555555559"),
            ["4111111111111111", "5500005555555559"]
        );
        assert_eq!(
            pans("4111 1111 1111 1111 5500 0055 5555 5559"),
            ["4111 1111 1111 1111", "5500 0055 5555 5559"]
        );
        assert_eq!(
            pans("4111111111111111,6011111111111117"),
            ["4111111111111111", "6011111111111117"]
        );
    }

    #[test]
    fn finds_a_pan_after_a_short_number() {
        assert_eq!(pans("ref 12 4111111111111111"), ["4111111111111111"]);
        assert_eq!(pans("4111111111111111 7"), ["4111111111111111"]);
    }

    #[test]
    fn ignores_luhn_invalid_look_alikes() {
        for text in [
            "4111111111111112",
            "4111 1111 1111 1112",
            "5500-0055-5555-5558",
            "3782 822463 10006",
            "1234567890123",
        ] {
            assert!(pans(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn ignores_other_numbers() {
        for text in [
            "",
            "hello",
            "+1 (555) 123-4567",
            "+44 20 7946 0958",
            "123456789012",               // 12 digits
            "41111111111111111111",       // 20 digits
            "00004111111111111111",       // a PAN inside a longer id
            "41111111111111110000",       // likewise
            "2024-05-17 12:00:00.123456", // timestamp
            "4111 1111-1111 1111",        // mixed separators
            "4111  1111  1111  1111",     // double spaces
            "4111_1111_1111_1111",
            "amount 1234567.89 EUR",
        ] {
            assert!(pans(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn masks_all_but_the_last_four_digits_keeping_separators() {
        assert_eq!(masked("4111111111111111"), "************1111");
        assert_eq!(masked("4111 1111 1111 1111"), "**** **** **** 1111");
        assert_eq!(masked("5500-0055-5555-5559"), "****-****-****-5559");
        assert_eq!(masked("3782-822463-10005"), "****-******-*0005");
        assert_eq!(masked("378282246310005"), "***********0005");
        assert_eq!(masked("6011000000000000001"), "***************0001");
    }

    #[test]
    fn masks_inside_text_and_several_pans() {
        assert_eq!(
            masked("card 4111-1111-1111-1111 exp 12/29"),
            "card ****-****-****-1111 exp 12/29"
        );
        assert_eq!(
            masked("4111111111111111 5500005555555559"),
            "************1111 ************5559"
        );
    }

    #[test]
    fn masks_around_unicode() {
        assert_eq!(
            masked("Kärtchen → 4111 1111 1111 1111 ✓ ok"),
            "Kärtchen → **** **** **** 1111 ✓ ok"
        );
        assert_eq!(masked("日本4111111111111111語"), "日本************1111語");
    }

    #[test]
    fn mask_pans_is_none_without_a_pan() {
        assert_eq!(mask_pans(""), None);
        assert_eq!(mask_pans("no digits here"), None);
        assert_eq!(mask_pans("4111111111111112"), None);
        assert_eq!(mask_pans("12345678901234567890123"), None);
    }
}
