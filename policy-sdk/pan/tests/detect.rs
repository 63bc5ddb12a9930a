//! What the detector finds and how it masks, through the public API: one test per rule of
//! the crate docs, with the exact masked text wherever it matters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use warden_pan::{find_pans, luhn_valid, mask_pans, scrub};

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
        "2223003122003222",
        "378282246310005",
        "6011111111111117",
        "3530111333300000",
        "30569309025904",
        "6011000000000000001",
        "6200000000000005",    // UnionPay
        "6759649826438453",    // Maestro
        "2200000000000004",    // Mir
        "8600000000000007",    // Uzcard: a national scheme
        "135412345678911",     // UATP
        "4111111111111111110", // Visa, 19 digits
    ] {
        assert!(luhn_valid(pan.as_bytes()), "{pan}");
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
    assert_eq!(
        pans(r#"{"card":"4111 1111 1111 1111","exp":"12/29"}"#),
        ["4111 1111 1111 1111"]
    );
    // `12/29` joins the chain now (`/` is a separator), yet the PAN is found as whole groups.
    assert_eq!(pans("4111 1111 1111 1111 12/29"), ["4111 1111 1111 1111"]);
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
fn finds_a_pan_next_to_a_short_number() {
    assert_eq!(pans("ref 12 4111111111111111"), ["4111111111111111"]);
    assert_eq!(pans("4111111111111111 7"), ["4111111111111111"]);
}

#[test]
fn finds_pans_with_every_separator() {
    for sep in [
        " ",
        "-",
        ".",
        "/",
        "_",
        "\t",
        "+",
        "  ",
        " - ",
        "\u{A0}",
        "\u{2009}",
        "\u{202F}",
        "\u{3000}",
        "\u{200B}",
        "\u{200C}",
        "\u{200D}",
        "\u{2060}",
        "\u{FEFF}",
        "\u{2013}",
        "\u{2212}",
        "\u{FF0D}",
        "\u{AD}",
        "\u{2002}\u{200B}",
        "\u{1680}",
        "\u{205F}",
        "\u{2E3A}",
        "\u{FE63}",
        "\u{B7}",
        "\u{30FB}",
        "\u{2044}",
        "\u{FF0B}",
        " \u{200E} ",
        "\u{2022}",
        "\u{2800}",
    ] {
        let text = ["4111", "1111", "1111", "1111"].join(sep);
        assert_eq!(pans(&text), [text.as_str()], "{sep:?}");
        assert_eq!(
            masked(&text),
            ["****", "****", "****", "1111"].join(sep),
            "{sep:?}"
        );
    }
}

#[test]
fn finds_pans_with_mixed_separators() {
    for text in [
        "4111.1111-1111 1111",
        "4111  1111\t1111_1111",
        "4111 -1111- 1111/1111",
        "3782 822463-10005",
    ] {
        assert_eq!(pans(text), [text]);
    }
    assert_eq!(masked("4111.1111-1111 1111"), "****.****-**** 1111");
    assert_eq!(masked("4111.1111.1111.1111"), "****.****.****.1111");
    assert_eq!(masked("4111  1111\t1111_1111"), "****  ****\t****_1111");
}

#[test]
fn a_gap_of_more_than_three_separators_ends_the_chain() {
    for text in [
        "4111    1111    1111    1111",
        "4111 -- 1111 -- 1111 -- 1111",
        "4111\t\t\t\t1111\t\t\t\t1111\t\t\t\t1111",
    ] {
        assert!(pans(text).is_empty(), "{text:?}");
    }
    // Other punctuation ends a chain at once.
    assert!(pans("4111,1111,1111,1111").is_empty());
    assert!(pans("4111:1111:1111:1111").is_empty());
}

#[test]
fn finds_and_masks_digits_of_other_scripts() {
    // Full-width digits with ideographic spaces, as typed in a Japanese form.
    assert_eq!(
        masked("カード番号 ４１１１　１１１１　１１１１　１１１１ です"),
        "カード番号 ****　****　****　１１１１ です"
    );
    assert_eq!(
        masked("４１１１１１１１１１１１１１１１"),
        "************１１１１"
    );
    // Arabic-Indic, Extended Arabic-Indic, Devanagari, Bengali, Thai.
    for (zero, name) in [
        ('\u{660}', "Arabic-Indic"),
        ('\u{6F0}', "Extended Arabic-Indic"),
        ('\u{966}', "Devanagari"),
        ('\u{9E6}', "Bengali"),
        ('\u{E50}', "Thai"),
        ('\u{1D7CE}', "mathematical bold"),
        ('\u{1D7F6}', "mathematical monospace"),
    ] {
        let script = |ascii: &str| -> String {
            ascii
                .chars()
                .map(|c| match c.to_digit(10) {
                    Some(d) => char::from_u32(u32::from(zero) + d).unwrap(),
                    None => c,
                })
                .collect()
        };
        let text = script("card 4111 1111 1111 1111.");
        assert_eq!(pans(&text).len(), 1, "{name}");
        assert_eq!(
            masked(&text),
            format!("card **** **** **** {}.", script("1111")),
            "{name}"
        );
    }
    // Scripts mixed in one number.
    assert_eq!(masked("４111１111١١١١1111"), "************1111");
}

#[test]
fn finds_windows_inside_longer_runs() {
    // Four PANs glued together (string_agg without a separator).
    let run = "4111111111111111550000555555555960110009901394243530111333300000";
    assert_eq!(find_pans(run).iter().map(|r| r.len()).sum::<usize>(), 64);
    // The first PAN overlaps no other window: its last four stay. Later windows overlap (for
    // example 5555555559601100 crosses the second and third PAN), so all their digits go.
    assert_eq!(masked(run), format!("************1111{}", "*".repeat(48)));
    // Windows that touch but do not overlap keep their last four each.
    assert_eq!(
        masked("41111111111111114111111111111111"),
        "************1111************1111"
    );
    // A PAN glued into an id of 26 digits or more.
    assert_eq!(
        masked("txn 70707070704111111111111111"),
        "txn 7070707070************1111"
    );
    // When a window inside the padding overlaps the PAN, both go entirely.
    assert_eq!(
        masked("txn 98765432104111111111111111"),
        "txn 987***********************"
    );
}

#[test]
fn finds_zero_padded_pans_in_shorter_runs() {
    // A right-aligned, zero-filled fixed-width field: the zeros are padding.
    assert_eq!(masked("0004111111111111111"), "000************1111");
    assert_eq!(masked("00004111111111111111"), "0000************1111");
    assert_eq!(
        masked("TXN-000000004111111111111111-01"),
        "TXN-00000000************1111-01"
    );
}

#[test]
fn runs_of_14_to_25_digits_are_not_searched_inside() {
    // A run of 13 to 19 digits is judged whole, a run of 20 to 25 holds a PAN only after
    // zeros: about half of all 20-digit numbers (64-bit ids, timestamps with microseconds)
    // hold a window that passes Luhn and fits a scheme.
    for text in [
        "41111111111111117",
        "41111111111111110000",
        "12345678901234567890123",
        "20261205093106123456",
        "1234567894111111111111111",
    ] {
        assert!(pans(text).is_empty(), "{text}");
    }
}

#[test]
fn long_runs_are_searched_so_some_long_ids_are_masked() {
    // The price of finding glued PANs: most random runs of 26 digits or more hold a window
    // that passes Luhn and fits a scheme (see the corpus figures).
    assert_eq!(
        masked("id 123456789012345678901234567890"),
        "id 123***************901234567890"
    );
}

#[test]
fn windows_inside_runs_must_fit_a_card_scheme() {
    // 13 zeros pass Luhn, but no card starts with 0 (nor with 7).
    assert!(pans(&"0".repeat(40)).is_empty());
    assert!(pans(&"7".repeat(40)).is_empty());
}

#[test]
fn skips_terminal_escape_sequences() {
    // grep --color marking part of the number.
    let text = "4111\x1b[01;31m1111\x1b[m11111111";
    assert_eq!(pans(text), [text]);
    assert_eq!(masked(text), "****\x1b[01;31m****\x1b[m****1111");
    // grep --color around the whole number, with erase-line sequences.
    assert_eq!(
        masked("x: \x1b[01;31m\x1b[K4111111111111111\x1b[m\x1b[K\n"),
        "x: \x1b[01;31m\x1b[K************1111\x1b[m\x1b[K\n"
    );
    // Between groups, next to separators; the escape parameters are not taken for digits.
    assert_eq!(
        masked("4111 \x1b[38;5;196m1111\x1b[0m 1111 1111"),
        "**** \x1b[38;5;196m****\x1b[0m **** 1111"
    );
    // tput sgr0 (`ESC(B ESC[m`), a two-byte sequence and BEL.
    assert_eq!(
        masked("4111\x1b(B\x1b[m1111\x1b7\x071111\x1b81111"),
        "****\x1b(B\x1b[m****\x1b7\x07****\x1b81111"
    );
    // OSC: introducer and terminator are skipped, the title is text, so a PAN in a window
    // title (shells put the command line there) is masked.
    assert_eq!(
        masked("\x1b]0;pay 4111111111111111\x07$ "),
        "\x1b]0;pay ************1111\x07$ "
    );
    assert_eq!(
        masked("\x1b]8;;https://x/\x1b\\4111 1111 1111 1111\x1b]8;;\x1b\\"),
        "\x1b]8;;https://x/\x1b\\**** **** **** 1111\x1b]8;;\x1b\\"
    );
}

/// What a terminal does not show, anywhere between the digits, does not split a group: the
/// number looks whole, so it is read whole.
#[test]
fn skips_characters_a_terminal_does_not_show() {
    for invisible in [
        "\u{200B}",                       // zero-width space
        "\u{200C}\u{200D}",               // joiners
        "\u{AD}",                         // soft hyphen
        "\u{200E}",                       // left-to-right mark
        "\u{202E}\u{202C}",               // right-to-left override, pop
        "\u{2066}",                       // isolate
        "\u{FEFF}",                       // BOM
        "\u{FE0F}",                       // variation selector
        "\u{301}\u{302}\u{303}",          // combining marks on the digit before
        "\u{20E3}",                       // combining keycap
        "\u{E0041}",                      // tag
        "\u{85}",                         // C1 control (NEL)
        "\u{0}",                          // NUL
        "\u{7F}",                         // DEL
        "\u{1F}",                         // unit separator
        "\x1b[31m\u{200B}\x1b[m\u{2060}", // mixed with escapes
        "\u{2065}",                       // unassigned, in the invisible block
        "\u{FFF0}",                       // unassigned special
        "\u{9B}31m",                      // 8-bit CSI: its parameters are not digits
    ] {
        // At odd places, so that no group is four digits long.
        let text = format!("41{invisible}1111111{invisible}1111111");
        assert_eq!(pans(&text), [text.as_str()], "{invisible:?}");
        assert_eq!(
            masked(&text),
            format!("**{invisible}*******{invisible}***1111"),
            "{invisible:?}"
        );
    }
    // Sixteen between two digits are still read through.
    let many = "\u{301}".repeat(16);
    assert_eq!(pans(&format!("4{many}111111111111111")).len(), 1);
}

#[test]
fn escape_sequences_that_do_not_parse_end_the_chain() {
    // Seventeen invisibles between two digits are too many.
    let text = format!("4111{}111111111111", "\x1b[m".repeat(17));
    assert!(pans(&text).is_empty());
    // A lone ESC is text.
    assert!(pans("4111\x1b 1111 1111 1111").is_empty());
}

#[test]
fn a_number_after_plus_is_a_phone_number() {
    assert!(luhn_valid(b"4915123456787"));
    assert_eq!(pans("4915123456787"), ["4915123456787"]);
    assert!(pans("+4915123456787").is_empty());
    assert!(pans("+49 1512 3456787").is_empty());
    // A PAN after a phone number in the same chain is still found.
    assert_eq!(
        pans("+1 212 555 0123 4111 1111 1111 1111"),
        ["4111 1111 1111 1111"]
    );
    // `+` between groups is a separator (form-encoded bodies).
    assert_eq!(
        pans("card=4111+1111+1111+1111&exp=1229"),
        ["4111+1111+1111+1111"]
    );
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
fn ignores_luhn_valid_numbers_that_fit_no_card_scheme() {
    for text in [
        "490154203237518",         // IMEI, Luhn-valid, 15 digits: Visa has no 15
        "356938035643809",         // IMEI from TAC 35: JCB has no 15
        "861234567890127",         // IMEI from TAC 86
        "012345678901237",         // IMEI from TAC 01
        "IMEI 35-693803-564380-9", // the same, grouped
        "20261205093106125",       // a timestamp
        "1122334455667786",        // a snowflake-style id
        "2026/12/05 2026/12/09",   // two dates
        "0000000000000",           // zeros
        "7000000000000009",        // MII 7
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
        "+14155552671",
        "123456789012",               // 12 digits
        "2024-05-17 12:00:00.123456", // timestamp
        "2026-12-05T09:31:06.123456789Z",
        "amount 1234567.89 EUR",
        "1,234,567,890,123.45",
        "GB82 WEST 1234 5698 7654 32",
        "DE89 3704 0044 0532 0130 00",
        "550e8400-e29b-41d4-a716-446655440000",
        "00000000-0000-0000-0000-000000000000", // no card starts with 0
        "978-3-16-148410-0",
        "9781234567897",
        "1Z999AA10123456784",
        "192.168.100.200 10.0.0.1",
        "10.0.19045.3693",
    ] {
        assert!(pans(text).is_empty(), "{text}");
    }
}

#[test]
fn a_uuid_can_hold_a_pan() {
    // Hex groups that happen to be all digits, grouped like a card: the gateway keeps uuid
    // columns as they are whatever the detector says, and tests that with this one.
    assert_eq!(
        masked("41111111-1111-1111-0000-000000000000"),
        "********-****-1111-0000-000000000000"
    );
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
    assert_eq!(
        masked("ref 12 4111 1111 1111 1111 ok"),
        "ref 12 **** **** **** 1111 ok"
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
    assert_eq!(
        mask_pans("こんにちは、世界。これは長い日本語の文章です。"),
        None
    );
    assert!(matches!(
        scrub("plain"),
        std::borrow::Cow::Borrowed("plain")
    ));
}

#[test]
fn found_ranges_are_ordered_disjoint_and_on_digits() {
    let text = "a 4111 1111 1111 1111 b 00004111111111111111 c ４１１１１１１１１１１１１１１１ \
                d 4111111111111111550000555555555960110009901394243530111333300000";
    let found = find_pans(text);
    assert_eq!(found.len(), 5);
    for pair in found.windows(2) {
        assert!(pair[0].end <= pair[1].start);
    }
    for r in &found {
        let pan = &text[r.clone()];
        assert!(pan.chars().next().unwrap().is_numeric(), "{pan}");
        assert!(pan.chars().last().unwrap().is_numeric(), "{pan}");
    }
}
