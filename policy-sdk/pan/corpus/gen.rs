//! The corpus generator: true PANs written every way the detector must read, and realistic
//! numbers that are not PANs, deterministic from a seed (a tiny xorshift, no dependencies).
//! Shared by the corpus test (`corpus/main.rs`) and the speed bench (`benches/speed.rs`).
#![allow(dead_code)] // each user takes what it needs

use std::ops::Range;

/// xorshift64*: small, fast, and the same sequence everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// A number in `range`.
    pub fn within(&mut self, range: Range<usize>) -> usize {
        range.start + self.below(range.end - range.start)
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
    /// Random ASCII digits, as many as a number in `range`.
    pub fn some_digits(&mut self, range: Range<usize>) -> String {
        let n = self.within(range);
        self.digits(n)
    }
    /// `n` random ASCII digits.
    pub fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

/// Whether `digits` (ASCII) pass Luhn; written out again here so the corpus does not trust the
/// code it measures.
pub fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(k, b)| {
            let d = u32::from(b - b'0');
            if k % 2 == 1 {
                if d > 4 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// `prefix` completed with random digits and a Luhn check digit to `len` digits.
pub fn luhn_complete(rng: &mut Rng, prefix: &str, len: usize) -> String {
    let mut body = prefix.to_string();
    body += &rng.digits(len - 1 - prefix.len());
    for check in '0'..='9' {
        let candidate = format!("{body}{check}");
        if luhn(&candidate) {
            return candidate;
        }
    }
    unreachable!("one check digit always fits")
}

// ---------------------------------------------------------------------------------------------
// True PANs
// ---------------------------------------------------------------------------------------------

/// Published test card numbers of each brand.
pub const TEST_CARDS: [&str; 28] = [
    "4111111111111111",    // Visa
    "4012888888881881",    // Visa
    "4222222222222",       // Visa, 13 digits
    "4242424242424242",    // Visa
    "4000056655665556",    // Visa debit
    "4917610000000000",    // Visa Electron
    "4111111111111111110", // Visa, 19 digits
    "5555555555554444",    // Mastercard
    "5105105105105100",    // Mastercard
    "5200828282828210",    // Mastercard debit
    "2223003122003222",    // Mastercard 2-series
    "378282246310005",     // Amex
    "371449635398431",     // Amex
    "378734493671000",     // Amex Corporate
    "6011111111111117",    // Discover
    "6011000990139424",    // Discover
    "6011981111111113",    // Discover
    "3056930009020004",    // Diners, 16 digits
    "36227206271667",      // Diners, 14 digits
    "30569309025904",      // Diners, 14 digits
    "3566002020360505",    // JCB
    "3530111333300000",    // JCB
    "6200000000000005",    // UnionPay
    "6759649826438453",    // Maestro
    "6799990100000000019", // Maestro, 19 digits
    "5019717010103742",    // Dankort
    "6304000000000000",    // Laser
    "135412345678911",     // UATP
];

/// Real issuer prefixes and the lengths they issue.
const SCHEMES: [(&[&str], &[usize]); 14] = [
    (&["4"], &[16, 16, 16, 13, 19]), // Visa
    (
        &["51", "52", "53", "54", "55", "2221", "2720", "2300"],
        &[16],
    ), // Mastercard
    (&["34", "37"], &[15]),          // Amex
    (&["6011", "644", "649", "65"], &[16, 19]), // Discover
    (&["3528", "3530", "3566", "3589"], &[16, 19]), // JCB
    (&["300", "305", "36", "38", "39"], &[14, 16]), // Diners
    (&["62"], &[16, 17, 18, 19]),    // UnionPay
    (
        &["50", "56", "58", "6304", "6759", "6761", "6799"],
        &[13, 16, 19],
    ), // Maestro
    (&["2200", "2204"], &[16]),      // Mir
    (&["60", "65", "81", "82", "508"], &[16]), // RuPay
    (&["1"], &[15]),                 // UATP
    (&["9792"], &[16]),              // Troy
    (&["8600", "9860"], &[16]),      // Uzcard, Humo
    (&["606282"], &[16]),            // Hipercard
];

/// A random valid PAN with a real issuer prefix.
pub fn random_pan(rng: &mut Rng) -> String {
    let (prefixes, lengths) = SCHEMES[rng.below(SCHEMES.len())];
    let prefix = rng.pick(prefixes);
    let len = lengths[rng.below(lengths.len())];
    luhn_complete(rng, prefix, len)
}

/// A test card or a random PAN.
pub fn any_pan(rng: &mut Rng) -> String {
    if rng.chance(20) {
        TEST_CARDS[rng.below(TEST_CARDS.len())].to_string()
    } else {
        random_pan(rng)
    }
}

/// The usual printed grouping of a PAN of `len` digits.
pub fn grouping(len: usize) -> &'static [usize] {
    match len {
        13 => &[4, 4, 5],
        14 => &[4, 6, 4],
        15 => &[4, 6, 5],
        16 => &[4, 4, 4, 4],
        17 => &[4, 4, 4, 5],
        18 => &[4, 4, 4, 6],
        _ => &[4, 4, 4, 4, 3],
    }
}

/// `pan` split in its printed groups.
pub fn groups(pan: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut at = 0;
    for &n in grouping(pan.len()) {
        out.push(&pan[at..(at + n).min(pan.len())]);
        at += n;
    }
    out
}

pub const ASCII_SEPARATORS: [&str; 7] = [" ", "-", ".", "/", "_", "\t", "+"];
pub const UNICODE_SEPARATORS: [&str; 20] = [
    "\u{A0}", "\u{2009}", "\u{202F}", "\u{3000}", "\u{2002}", "\u{200B}", "\u{200C}", "\u{200D}",
    "\u{2060}", "\u{FEFF}", "\u{2013}", "\u{2212}", "\u{1680}", "\u{205F}", "\u{B7}", "\u{2E3A}",
    "\u{FE63}", "\u{30FB}", "\u{2044}", "\u{FF0B}",
];

/// What a terminal does not show: zero-width characters, direction marks, combining marks,
/// variation selectors, tags, control characters.
pub const INVISIBLES: [&str; 12] = [
    "\u{200B}",
    "\u{AD}",
    "\u{200E}",
    "\u{202E}",
    "\u{2066}",
    "\u{301}",
    "\u{FE0F}",
    "\u{20E3}",
    "\u{E0041}",
    "\u{85}",
    "\u{7F}",
    "\u{1}",
];

/// A separator run of one to three characters of any kind.
pub fn mixed_separator(rng: &mut Rng) -> String {
    (0..rng.within(1..4))
        .map(|_| {
            if rng.chance(70) {
                rng.pick(&ASCII_SEPARATORS)
            } else {
                rng.pick(&UNICODE_SEPARATORS)
            }
        })
        .collect()
}

/// `pan` in one of the ways people and programs write it, ASCII digits.
pub fn written(rng: &mut Rng, pan: &str) -> String {
    match rng.below(4) {
        0 => pan.to_string(),
        1 => groups(pan).join(rng.pick(&ASCII_SEPARATORS)),
        2 => groups(pan).join(rng.pick(&UNICODE_SEPARATORS)),
        _ => {
            let mut out = String::new();
            for (k, g) in groups(pan).iter().enumerate() {
                if k > 0 {
                    out += &mixed_separator(rng);
                }
                out += g;
            }
            out
        }
    }
}

/// `text` with its ASCII digits written in the script whose zero is `zero`.
pub fn in_script(text: &str, zero: char) -> String {
    text.chars()
        .map(|c| match c.to_digit(10) {
            Some(d) => char::from_u32(u32::from(zero) + d).unwrap_or(c),
            None => c,
        })
        .collect()
}

/// Zeros of the scripts the corpus writes PANs in.
pub const SCRIPT_ZEROS: [char; 9] = [
    '\u{FF10}',  // full-width
    '\u{660}',   // Arabic-Indic
    '\u{6F0}',   // Extended Arabic-Indic (Persian)
    '\u{966}',   // Devanagari
    '\u{9E6}',   // Bengali
    '\u{E50}',   // Thai
    '\u{1040}',  // Myanmar
    '\u{1D7CE}', // mathematical bold
    '\u{1D7F6}', // mathematical monospace
];

/// A text with PANs in it and where their digits are, as char indices (the masked text has
/// the same chars, so they line up).
pub struct Sample {
    pub text: String,
    pub pans: Vec<Vec<usize>>,
}

/// Builds a [`Sample`] piece by piece.
#[derive(Default)]
pub struct Builder {
    text: String,
    chars: usize,
    pans: Vec<Vec<usize>>,
}

impl Builder {
    /// Text that holds no PAN digits.
    pub fn plain(&mut self, s: &str) -> &mut Self {
        self.text += s;
        self.chars += s.chars().count();
        self
    }
    /// The PAN starts: the digits pushed with [`Self::digit_text`] until the next call belong
    /// to it.
    pub fn pan(&mut self) -> &mut Self {
        self.pans.push(Vec::new());
        self
    }
    /// Text that belongs to the current PAN: its digits are recorded.
    pub fn digit_text(&mut self, s: &str) -> &mut Self {
        for c in s.chars() {
            if c.is_numeric()
                && let Some(pan) = self.pans.last_mut()
            {
                pan.push(self.chars);
            }
            self.text.push(c);
            self.chars += 1;
        }
        self
    }
    /// Text inside the current PAN that holds no PAN digits (an escape sequence).
    pub fn invisible(&mut self, s: &str) -> &mut Self {
        self.plain(s)
    }
    pub fn build(&mut self) -> Sample {
        Sample {
            text: std::mem::take(&mut self.text),
            pans: std::mem::take(&mut self.pans),
        }
    }
}

/// A sample holding the single PAN `written` between `before` and `after`.
pub fn one(before: &str, written: &str, after: &str) -> Sample {
    Builder::default()
        .plain(before)
        .pan()
        .digit_text(written)
        .plain(after)
        .build()
}

const SENTENCES: [(&str, &str); 12] = [
    ("Please charge card ", " for order 1234."),
    ("card number: ", ""),
    ("Customer paid with ", " on 2026-12-05 at 09:31."),
    ("", ""),
    ("pan=", "&exp=1229&cvv=123"),
    ("<td>", "</td>"),
    ("Kartennummer ", " gültig bis 12/29"),
    ("ref 12 ", " ok"),
    ("card ", " 12/29 cvv 123"),
    ("UPDATE cards SET pan = '", "' WHERE id = 42;"),
    (
        "2026-12-05 09:31:06.123 INFO charge card=",
        " amount=12.00 EUR",
    ),
    ("Numéro de carte : ", ". Merci !"),
];

/// The true-PAN categories: name and generator.
pub type PanGen = fn(&mut Rng) -> Sample;

pub const PAN_CATEGORIES: [(&str, PanGen); 16] = [
    ("test cards, contiguous", |rng| {
        one("", TEST_CARDS[rng.below(TEST_CARDS.len())], "")
    }),
    ("random PANs, contiguous", |rng| {
        one("", &random_pan(rng), "")
    }),
    ("grouped, ASCII separator", |rng| {
        let pan = any_pan(rng);
        one("", &groups(&pan).join(rng.pick(&ASCII_SEPARATORS)), "")
    }),
    ("grouped, Unicode separator", |rng| {
        let pan = any_pan(rng);
        one("", &groups(&pan).join(rng.pick(&UNICODE_SEPARATORS)), "")
    }),
    ("grouped, mixed 1-3 separators", |rng| {
        let pan = any_pan(rng);
        let mut w = String::new();
        for (k, g) in groups(&pan).iter().enumerate() {
            if k > 0 {
                w += &mixed_separator(rng);
            }
            w += g;
        }
        one("", &w, "")
    }),
    ("in sentences", |rng| {
        let (before, after) = SENTENCES[rng.below(SENTENCES.len())];
        let pan = any_pan(rng);
        one(before, &written(rng, &pan), after)
    }),
    ("in JSON", |rng| {
        let pan = any_pan(rng);
        let w = written(rng, &pan).replace('\t', " ");
        one(
            &format!(r#"{{"id":{},"card":""#, rng.digits(5)),
            &w,
            r#"","exp":"12/29","amount":12.5}"#,
        )
    }),
    ("glued: string_agg of 2-6", |rng| {
        let mut b = Builder::default();
        b.plain("{");
        for _ in 0..rng.within(2..7) {
            b.pan().digit_text(&any_pan(rng));
        }
        b.plain("}").build()
    }),
    ("glued: padded in a 26+ digit id", |rng| {
        let pan = any_pan(rng);
        let mut left = rng.below(9);
        let right = rng.below(9);
        left += 26usize.saturating_sub(pan.len() + left + right);
        let (l, r) = (rng.digits(left), rng.digits(right));
        one(&format!("txn {l}"), &pan, &format!("{r} ok"))
    }),
    ("glued: zero-padded field (14-25 digits)", |rng| {
        let pan = any_pan(rng);
        let zeros = "0".repeat(rng.within(1..26 - pan.len()));
        one(&format!("{} {zeros}", rng.digits(4)), &pan, " ok")
    }),
    ("ANSI colour (grep, ls, SGR)", |rng| {
        let pan = any_pan(rng);
        let mut b = Builder::default();
        b.plain("$ ");
        match rng.below(4) {
            0 => {
                b.plain("\x1b[01;31m\x1b[K")
                    .pan()
                    .digit_text(&written(rng, &pan))
                    .plain("\x1b[m\x1b[K");
            }
            1 => {
                // grep highlighting a part of the number.
                let i = rng.within(1..pan.len() - 1);
                let j = rng.within(i + 1..pan.len());
                b.pan()
                    .digit_text(&pan[..i])
                    .invisible("\x1b[01;31m\x1b[K")
                    .digit_text(&pan[i..j])
                    .invisible("\x1b[m\x1b[K")
                    .digit_text(&pan[j..]);
            }
            2 => {
                b.pan();
                for (k, g) in groups(&pan).iter().enumerate() {
                    if k > 0 {
                        b.digit_text(" ");
                    }
                    b.invisible(&format!("\x1b[3{}m", rng.below(8)))
                        .digit_text(g)
                        .invisible("\x1b[0m");
                }
            }
            _ => {
                b.plain("\x1b[0m\x1b[01;34m")
                    .pan()
                    .digit_text(&pan)
                    .plain("\x1b(B\x1b[m\r\n");
            }
        }
        b.build()
    }),
    ("invisible characters anywhere in the number", |rng| {
        let pan = any_pan(rng);
        let mut b = Builder::default();
        b.plain("card ").pan();
        for (k, d) in pan.char_indices() {
            b.digit_text(&pan[k..k + d.len_utf8()]);
            if k + 1 < pan.len() && rng.chance(30) {
                for _ in 0..rng.within(1..4) {
                    b.invisible(rng.pick(&INVISIBLES));
                }
            }
        }
        b.plain(" ok").build()
    }),
    ("full-width (+ ideographic space)", |rng| {
        let pan = any_pan(rng);
        let w = if rng.chance(50) {
            pan.clone()
        } else {
            groups(&pan).join(rng.pick(&["\u{3000}", " ", "－", "\u{FF0E}"]))
        };
        one("カード番号：", &in_script(&w, '\u{FF10}'), " です。")
    }),
    ("other scripts (Arabic, Devanagari, Thai, math)", |rng| {
        let pan = any_pan(rng);
        let zero = SCRIPT_ZEROS[1 + rng.below(SCRIPT_ZEROS.len() - 1)];
        one("card ", &in_script(&written(rng, &pan), zero), " ok")
    }),
    ("OSC window title (zsh sets it to the command)", |rng| {
        let pan = any_pan(rng);
        one("\x1b]0;curl -d card=", &written(rng, &pan), " pay\x07$ ")
    }),
    ("several per text, mixed styles", |rng| {
        let mut b = Builder::default();
        for _ in 0..rng.within(2..5) {
            let (before, after) = SENTENCES[rng.below(SENTENCES.len())];
            let pan = any_pan(rng);
            b.plain(before)
                .pan()
                .digit_text(&written(rng, &pan))
                .plain(after);
            b.plain("\n");
        }
        b.build()
    }),
];

/// Categories reported but not asserted: what the rules knowingly give up.
pub const PAN_LIMITS: [(&str, PanGen); 3] = [
    ("limit: other digits glued on, run of 20-25", |rng| {
        let pan = any_pan(rng);
        let run = rng.within(20..26);
        let left = rng.below(run - pan.len() + 1);
        let right = run - pan.len() - left;
        // Not zeros on the left: zero padding is found (asserted above).
        let l = format!("{}{}", 1 + rng.below(9), rng.digits(left)).split_off(1);
        one(
            &format!("txn {l}"),
            &pan,
            &format!("{} ok", rng.digits(right)),
        )
    }),
    ("limit: 1-3 digits glued on, run of 14-19", |rng| {
        let pan = luhn_complete(rng, "4", 16);
        let extra = rng.some_digits(1..4);
        one("id ", &pan, &format!("{extra} ok"))
    }),
    ("limit: written right after '+'", |rng| {
        let pan = any_pan(rng);
        one("amount +", &pan, "")
    }),
];

// ---------------------------------------------------------------------------------------------
// Look-alikes: numbers that are not PANs
// ---------------------------------------------------------------------------------------------

pub type TextGen = fn(&mut Rng) -> String;

fn two(rng: &mut Rng, lo: usize, hi: usize) -> String {
    format!("{:02}", rng.within(lo..hi + 1))
}

/// A random date-time as (year, month, day, hour, minute, second).
fn datetime(rng: &mut Rng) -> (usize, String, String, String, String, String) {
    (
        rng.within(1990..2040),
        two(rng, 1, 12),
        two(rng, 1, 28),
        two(rng, 0, 23),
        two(rng, 0, 59),
        two(rng, 0, 59),
    )
}

/// An IBAN of `country` and `bban` with valid check digits (ISO 13616: mod 97 of the BBAN,
/// the country and `00`, letters as 10..35).
fn iban(country: &str, bban: &str) -> String {
    let numeric: String = format!("{bban}{country}00")
        .chars()
        .map(|c| match c.to_digit(36) {
            Some(v) => v.to_string(),
            None => String::new(),
        })
        .collect();
    let rem = numeric
        .bytes()
        .fold(0u32, |r, b| (r * 10 + u32::from(b - b'0')) % 97);
    format!("{country}{:02}{bban}", 98 - rem)
}

/// Groups of four, as IBANs are printed.
fn by_four(s: &str) -> String {
    s.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ")
}

pub const LOOK_ALIKES: [(&str, TextGen); 18] = [
    ("order numbers", |rng| match rng.below(5) {
        0 => format!("Order #{}", rng.some_digits(5..11)),
        1 => format!(
            "order {}-{}-{}",
            rng.pick(&[
                "111", "112", "113", "114", "202", "203", "401", "402", "701"
            ]),
            rng.digits(7),
            rng.digits(7)
        ),
        2 => format!("PO {}", rng.digits(10)),
        3 => format!("SO-{}-{}", rng.within(2015..2030), rng.digits(6)),
        _ => format!(
            "invoice {}/{}",
            rng.within(2015..2030),
            rng.some_digits(4..9)
        ),
    }),
    ("random ids, 13-19 digits", |rng| {
        let len = rng.within(13..20);
        format!("id {}", rng.digits(len))
    }),
    ("snowflake ids (Discord/Twitter)", |rng| {
        format!("user {}{}", rng.within(100..200), rng.some_digits(15..17))
    }),
    ("phone numbers (+E.164, national)", |rng| {
        match rng.below(8) {
            0 => format!(
                "+1 {} {} {}",
                rng.within(201..990),
                rng.digits(3),
                rng.digits(4)
            ),
            1 => format!(
                "({}) {}-{}",
                rng.within(201..990),
                rng.digits(3),
                rng.digits(4)
            ),
            2 => format!("+1{}{}", rng.within(201..990), rng.digits(7)),
            3 => format!("+44 20 {} {}", rng.digits(4), rng.digits(4)),
            4 => format!("+49 15{} {}", rng.digits(2), rng.digits(7)),
            5 => format!("+86 1{} {} {}", rng.digits(2), rng.digits(4), rng.digits(4)),
            6 => format!("0049 15{} {}", rng.digits(2), rng.digits(7)),
            _ => format!(
                "tel +33 6 {} {} {} {}, +33 1 {} {} {} {}",
                rng.digits(2),
                rng.digits(2),
                rng.digits(2),
                rng.digits(2),
                rng.digits(2),
                rng.digits(2),
                rng.digits(2),
                rng.digits(2)
            ),
        }
    }),
    ("timestamps (compact, ISO, epoch)", |rng| {
        let (y, mo, d, h, mi, s) = datetime(rng);
        match rng.below(7) {
            0 => format!("{y}{mo}{d}{h}{mi}{s}{}", rng.digits(3)),
            1 => format!("{y}{mo}{d}{h}{mi}{s}"),
            2 => format!("{y}-{mo}-{d}T{h}:{mi}:{s}.{}Z", rng.digits(6)),
            3 => format!("{y}-{mo}-{d} {h}:{mi}:{s}.{}", rng.digits(6)),
            4 => format!("ts={}{}", rng.within(1_600..1_800), rng.digits(9)),
            5 => format!("ts={}{}", rng.within(1_600..1_800), rng.digits(12)),
            _ => format!("ts={}{}", rng.within(1_600..1_800), rng.digits(15)),
        }
    }),
    ("timestamps with microseconds (20 digits)", |rng| {
        let (y, mo, d, h, mi, s) = datetime(rng);
        format!("{y}{mo}{d}{h}{mi}{s}{}", rng.digits(6))
    }),
    ("UUIDs", |rng| {
        let hex = |rng: &mut Rng, n: usize| -> String {
            (0..n)
                .map(|_| char::from(b"0123456789abcdef"[rng.below(16)]))
                .collect()
        };
        format!(
            "{}-{}-4{}-{}{}-{}",
            hex(rng, 8),
            hex(rng, 4),
            hex(rng, 3),
            rng.pick(&["8", "9", "a", "b"]),
            hex(rng, 3),
            hex(rng, 12)
        )
    }),
    ("IBANs, grouped", |rng| {
        let (country, bban) = iban_parts(rng);
        by_four(&iban(country, &bban))
    }),
    ("IBANs, compact", |rng| {
        let (country, bban) = iban_parts(rng);
        iban(country, &bban)
    }),
    ("tracking numbers (UPS, FedEx, USPS)", |rng| {
        match rng.below(5) {
            0 => format!("1Z{}{}", rng.digits(3), rng.digits(13)),
            1 => rng.digits(12),
            2 => format!("96{}", rng.digits(20)),
            3 => format!(
                "{}{}",
                rng.pick(&["9400", "9205", "9361", "9470"]),
                rng.digits(18)
            ),
            _ => by_four(&format!(
                "{}{}",
                rng.pick(&["9400", "9205", "9361"]),
                rng.digits(18)
            )),
        }
    }),
    ("ISBN-13", |rng| {
        let body = format!("{}{}", rng.pick(&["978", "979"]), rng.digits(9));
        let sum: u32 = body
            .bytes()
            .enumerate()
            .map(|(k, b)| u32::from(b - b'0') * if k % 2 == 0 { 1 } else { 3 })
            .sum();
        let isbn = format!("{body}{}", (10 - sum % 10) % 10);
        if rng.chance(50) {
            isbn
        } else {
            format!(
                "ISBN {}-{}-{}-{}-{}",
                &isbn[..3],
                &isbn[3..4],
                &isbn[4..7],
                &isbn[7..12],
                &isbn[12..]
            )
        }
    }),
    ("IMEI (Luhn-valid, TAC 35/86/01/99)", |rng| {
        let tac = rng.pick(&["35", "35", "35", "35", "86", "86", "01", "99"]);
        let imei = luhn_complete(rng, tac, 15);
        if rng.chance(50) {
            imei
        } else {
            format!(
                "IMEI: {}-{}-{}-{}",
                &imei[..2],
                &imei[2..8],
                &imei[8..14],
                &imei[14..]
            )
        }
    }),
    ("dates and date ranges", |rng| {
        let (y, mo, d, ..) = datetime(rng);
        let (y2, mo2, d2, ..) = datetime(rng);
        match rng.below(4) {
            0 => format!("{d}/{mo}/{y} - {d2}/{mo2}/{y2}"),
            1 => format!("{y}-{mo}-{d} {y2}-{mo2}-{d2}"),
            2 => format!("{y}/{mo}/{d} {y2}/{mo2}/{d2}"),
            _ => format!("{d}.{mo}.{y} {d2}.{mo2}.{y2}"),
        }
    }),
    ("IPv4 addresses (lists)", |rng| {
        let mut ip = || {
            format!(
                "{}.{}.{}.{}",
                rng.within(1..256),
                rng.below(256),
                rng.below(256),
                rng.within(1..255)
            )
        };
        format!("{} {} {}", ip(), ip(), ip())
    }),
    ("amounts", |rng| match rng.below(4) {
        0 => format!(
            "{},{},{}.{:02}",
            rng.within(1..1000),
            rng.digits(3),
            rng.digits(3),
            rng.below(100)
        ),
        1 => format!("EUR {}.{:02}", rng.some_digits(6..12), rng.below(100)),
        2 => format!(
            "{} {} {} {},{:02} €",
            rng.within(1..1000),
            rng.digits(3),
            rng.digits(3),
            rng.digits(3),
            rng.below(100)
        ),
        _ => format!(
            "total\u{A0}{}\u{A0}{}\u{A0}{}\u{A0}{}\u{A0}{}",
            rng.within(1..1000),
            rng.digits(3),
            rng.digits(3),
            rng.digits(3),
            rng.digits(3)
        ),
    }),
    ("version strings", |rng| match rng.below(4) {
        0 => format!("v{}.{}.{}", rng.below(20), rng.below(100), rng.below(1000)),
        1 => format!("10.0.{}.{}", rng.within(10000..30000), rng.within(1..9999)),
        2 => format!("5.{}.0-{}-generic", rng.below(20), rng.within(10..200)),
        _ => format!(
            "rustc 1.{}.{} ({:09x} {}-{}-{})",
            rng.below(100),
            rng.below(10),
            rng.next() >> 28,
            rng.within(2015..2030),
            two(rng, 1, 12),
            two(rng, 1, 28)
        ),
    }),
    ("log lines (pids, ports, sizes)", |rng| {
        let (y, mo, d, h, mi, s) = datetime(rng);
        format!(
            "{y}-{mo}-{d} {h}:{mi}:{s}.{} [pid {}] 10.{}.{}.{}:{} GET /api/v1/items/{} 200 {} bytes {} ms",
            rng.digits(3),
            rng.within(100..99999),
            rng.below(256),
            rng.below(256),
            rng.below(256),
            rng.within(1024..65535),
            rng.some_digits(1..10),
            rng.within(100..9_999_999),
            rng.within(1..999)
        )
    }),
    ("long random digit runs (20-64)", |rng| {
        let len = rng.within(20..65);
        rng.digits(len)
    }),
];

/// A country and BBAN (digits, and letters where the country has them).
fn iban_parts(rng: &mut Rng) -> (&'static str, String) {
    match rng.below(6) {
        0 => ("DE", rng.digits(18)),
        1 => ("PL", rng.digits(24)),
        2 => ("ES", rng.digits(20)),
        3 => ("FR", format!("{}{}", rng.digits(21), rng.digits(2))),
        4 => (
            "NL",
            format!("{}{}", rng.pick(&["ABNA", "INGB", "RABO"]), rng.digits(10)),
        ),
        _ => (
            "GB",
            format!("{}{}", rng.pick(&["WEST", "NWBK", "BARC"]), rng.digits(14)),
        ),
    }
}
