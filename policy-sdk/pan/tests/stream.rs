//! Streams cut into pieces: `split_safe_point` and `StreamMasker` against masking the whole
//! text at once, at every cut and with random pieces.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use warden_pan::{StreamMasker, mask_pans, split_safe_point, split_safe_point_bytes};

fn masked(text: &str) -> String {
    mask_pans(text).unwrap_or_else(|| text.to_string())
}

/// `pieces` through a fresh masker, concatenated.
fn stream(pieces: &[&str]) -> String {
    let mut masker = StreamMasker::new();
    let mut out: String = pieces.iter().map(|p| masker.push(p)).collect();
    out += &masker.finish();
    assert_eq!(masker.held(), "");
    out
}

/// Every way of cutting `text` in two at a char boundary.
fn halves(text: &str) -> impl Iterator<Item = (&str, &str)> {
    (0..=text.len())
        .filter(|&i| text.is_char_boundary(i))
        .map(|i| text.split_at(i))
}

/// `got` masks at least what `want` masks and changes nothing else ('*' is one char, so the
/// masked texts line up char by char with the input).
fn masks_at_least(input: &str, want: &str, got: &str) {
    let (i, w, g): (Vec<char>, Vec<char>, Vec<char>) = (
        input.chars().collect(),
        want.chars().collect(),
        got.chars().collect(),
    );
    assert_eq!(i.len(), g.len(), "{input:?} -> {got:?}");
    for k in 0..i.len() {
        assert!(g[k] == i[k] || g[k] == '*', "{input:?} -> {got:?}");
        if w[k] == '*' && i[k] != '*' {
            assert_eq!(g[k], '*', "{input:?}: {want:?} vs {got:?}");
        }
    }
}

#[test]
fn split_safe_point_holds_back_what_may_continue() {
    for (text, held) in [
        ("", ""),
        ("no digits\n", ""),
        ("total 12 items\n", ""),
        ("card 4111", "4111"),
        ("card 4111 1111 ", "4111 1111 "),
        ("card 4111 - ", "4111 - "),
        ("card 4111    ", ""), // four separators: the chain has ended
        ("card 4111 1111 x", ""),
        ("card 4111\x1b[01;3", "4111\x1b[01;3"),
        ("ls\n\x1b[01;3", "\x1b[01;3"), // a cut escape sequence on its own
        ("ls\n\x1b", "\x1b"),
        ("call +1 415", "+1 415"), // the `+` decides whether it is a phone number
        ("４１１１　", "４１１１　"),
        (
            "0123456789012345678901234567890123456789",
            "5678901234567890123456789",
        ),
    ] {
        let point = split_safe_point(text);
        assert_eq!(&text[point..], held, "{text:?}");
    }
}

#[test]
fn split_safe_point_bytes_skips_what_is_not_utf8() {
    for (bytes, held) in [
        (&b""[..], &b""[..]),
        (b"ok\n", b""),
        (b"\xff card 4111 1111", b"4111 1111"),
        (b"card 4111 \xff 1111", b"1111"),
        (b"4111 1111 \xff", b""),
        (b"card \xef\xbc", b"\xef\xbc"), // half a full-width digit
        (b"card 4111 \xe3\x80", b"4111 \xe3\x80"), // half an ideographic space
        (b"\x1b[01;3", b"\x1b[01;3"),
    ] {
        let point = split_safe_point_bytes(bytes);
        assert_eq!(
            &bytes[point..],
            held,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    // On text it is split_safe_point.
    for text in ["card 4111 1111 ", "x\x1b[0", "total 12\n", "４１１１　"] {
        assert_eq!(
            split_safe_point_bytes(text.as_bytes()),
            split_safe_point(text)
        );
    }
}

#[test]
fn a_pan_cut_anywhere_is_masked_as_a_whole() {
    for text in [
        "card 4111 1111 1111 1111 exp 12/29\n",
        "4111\x1b[01;31m1111\x1b[m11111111 and 5500-0055-5555-5559.",
        "カード ４１１１　１１１１　１１１１　１１１１ です",
        "ref 12 4111111111111111 7 +49 1512 3456787",
        "\x1b]0;pay 4111111111111111\x07$ 3782 822463 10005\r\n",
        "a 4111.1111-1111 1111 b 30569309025904",
    ] {
        let want = masked(text);
        for (a, b) in halves(text) {
            assert_eq!(stream(&[a, b]), want, "{a:?} | {b:?}");
        }
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(stream(&pieces), want, "one char at a time");
    }
}

#[test]
fn pans_glued_in_a_long_run_are_masked_across_cuts() {
    let text = "x 4111111111111111550000555555555960110009901394243530111333300000 y \
                0000000041111111111111110000000000";
    let want = masked(text);
    for (a, b) in halves(text) {
        masks_at_least(text, &want, &stream(&[a, b]));
    }
    let pieces: Vec<String> = text.chars().map(String::from).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    masks_at_least(text, &want, &stream(&pieces));
}

#[test]
fn the_held_tail_stays_small_in_an_endless_run() {
    let mut masker = StreamMasker::new();
    for _ in 0..1000 {
        masker.push("1234567890");
        assert!(masker.held().len() <= 25, "{}", masker.held().len());
    }
}

/// A tiny deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_texts_in_random_pieces_mask_at_least_what_the_whole_does() {
    const PARTS: [&str; 28] = [
        "4111111111111111",
        "5500 0055 5555 5559",
        "3782-822463-10005",
        "4111",
        "1111",
        "12",
        "0",
        "7",
        " ",
        "  ",
        "-",
        ".",
        "\t",
        "\u{A0}",
        "\u{200B}",
        "x",
        "card ",
        "\n",
        "\x1b[01;31m",
        "\x1b[m",
        "\x1b]0;",
        "\x07",
        "４１１１",
        "+",
        "0000000",
        "7070707070",
        "41111111111111115500005555555559",
        "6011",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let text: String = (0..rng.below(20))
            .map(|_| PARTS[rng.below(PARTS.len())])
            .collect();
        let want = masked(&text);
        let mut pieces = Vec::new();
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let mut cut = 1 + rng.below(rest.len());
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            let (piece, tail) = rest.split_at(cut);
            pieces.push(piece);
            rest = tail;
        }
        masks_at_least(&text, &want, &stream(&pieces));
    }
}
