//! Card-number (PAN) detection and masking (PCI DSS 3.4), in one small crate shared by the
//! gateway (which scrubs audit records, recordings, logs and terminal output with it) and the
//! policy SDK (which masks result cells with it): one detector, so what a policy masks and what
//! the host scrubs are the same numbers. No dependencies; it builds for the host and for wasm32.
//! It is one file on purpose: `warden policy new` vendors exactly this file into new projects.
//!
//! # What is a PAN here
//! The text is read as a sequence of *digits* (ASCII or any other Unicode decimal digit:
//! full-width, Arabic-Indic, Devanagari, Thai, mathematical…), *separators* (space, tab, `-`,
//! `.`, `/`, `_`, `+`, every Unicode space and dash, the minus sign, middle and other dots,
//! fraction and division slashes, full-width forms), *invisibles* (what a terminal or a text
//! view does not show: escape sequences — CSI such as `ESC[01;31m`, two-byte and charset
//! sequences such as `ESC(B`, OSC/DCS introducers and terminators —, C0 and C1 control
//! characters other than tab, newline, CR, BS, VT and FF, the soft hyphen, zero-width
//! characters and joiners, direction marks and embeddings, variation selectors, combining
//! marks, tags) and anything else: `,` `;` `:` end a chain, so lists of numbers do not join. A **chain** is a run of digits in which each two neighbours are at most
//! [`MAX_GAP`] separators apart (any mix, plus up to [`MAX_GAP_INVISIBLES`] invisibles); a
//! **group** is a part of a chain with no separator inside (invisibles do not split groups).
//!
//! A chain of 13 to 19 digits is a PAN when it passes the Luhn check, its leading digits and
//! length fit a card scheme (see *Card schemes* below) and, if it has several groups, they are
//! grouped as cards are printed: every group of four digits or more, the last of three or more
//! (`4111 1111 1111 1111`, `3782 822463 10005`; not dates, IP addresses, amounts). Otherwise the
//! chain is searched for **windows** of 13 to 19 digits that pass the same three tests:
//! - made of whole groups: `12 4111 1111 1111 1111`, `4111111111111111 5500005555555559`;
//! - anywhere inside a group of at least [`MIN_SEARCHED_RUN`] (26) digits: a `string_agg` of
//!   PANs, an id with a PAN glued in. Every such run is searched the same way, whatever its
//!   length: seven constant-time Luhn checks per digit, so the cost stays linear;
//! - at the end of a shorter group after nothing but zeros: `0004111111111111111`, a
//!   right-aligned zero-filled field. A group of 14 to 25 digits is otherwise judged whole:
//!   searched at every offset, about half of all 20-digit numbers (64-bit ids, timestamps with
//!   microseconds, USPS tracking numbers) would hold a window that passes Luhn and fits a
//!   scheme, and a PAN glued to other digits in such a run is rare.
//!
//! Not PANs, whatever their digits: a chain right after `+` (a phone number, E.164); a chain
//! that completes an IBAN (`GB82 WEST 1234 5698 7654 32`, `DE89370400440532013000`: letters,
//! check digits and the ISO 13616 mod-97 check); a chain glued to `1Z` (a UPS tracking number).
//!
//! ## Card schemes
//! The leading digits must fit one of these (the length in digits in brackets); anything else
//! is not a card (MII 0 and 7 are never cards here):
//! `1` UATP [15] · `2200–2204` Mir [16–19] · `2221–2720` Mastercard [16] · `300–305`, `36`,
//! `38`, `39` Diners [14–19] · `34`, `37` Amex [15] · `3528–3589` JCB [16–19] · `4` Visa
//! [13, 16, 19] · `50`, `56–69` Maestro [13–19], which covers Discover `6011`, `644–649`, `65`,
//! UnionPay `62`, RuPay `60`, `65`, `508` · `51–55` Mastercard [16] · `8`, `9` national schemes
//! (Uzcard, Humo, Troy, Belkart…) [16]. The rule holds for stand-alone numbers too: measured on
//! the corpus (`corpus/`), Luhn alone flags every IMEI (15 digits, Luhn-valid by design, from
//! TACs `35`, `86`, `01`, `99`: no scheme issues 15 digits there), one ISBN, snowflake id and
//! date pair in ten and 7% of timestamps; with the schemes, none. It costs only PANs of schemes
//! not in the list.
//!
//! # Masking
//! Every digit of a PAN but the last four becomes `*` (one `*` per digit, whatever its script);
//! the last four digits, separators and escape sequences stay as written:
//! `4111.1111.1111.1111` → `****.****.****.1111`, `４１１１　１１１１　１１１１　１１１１` →
//! `****　****　****　１１１１`, `4111␛[01;31m1111␛[m11111111` → `****␛[01;31m****␛[m****1111`.
//! Windows that overlap (inside a long run) are merged into one range and *all* its digits are
//! masked: the last four of one window can be the middle of another. Windows that only touch
//! keep their last four each (`4111111111111111` + `5500005555555559` glued together →
//! `************1111************5559`).
//!
//! # Streams
//! Text that arrives in pieces (terminal output cut at 64 KiB) goes through a
//! [`StreamMasker`], which holds back the end of each piece that could be the start of a PAN
//! continuing in the next one (see [`split_safe_point`]).
//!
//! # Cost
//! A text with fewer than 13 digits is rejected after one counting pass over its bytes that
//! the compiler vectorises, without allocating: nearly every cell. Only found PANs allocate.
//! Figures (`cargo bench -p warden-pan --bench speed`) are in `BENCHMARKS.md` beside this
//! crate's `Cargo.toml`.

use std::borrow::Cow;
use std::ops::Range;

/// Fewest digits in a PAN (ISO/IEC 7812).
const MIN_DIGITS: usize = 13;
/// Most digits in a PAN (ISO/IEC 7812).
const MAX_DIGITS: usize = 19;
/// Most separator characters between two digits of a chain: enough for `4111 - 1111`, few
/// enough that numbers in a table or a sentence do not join.
pub const MAX_GAP: usize = 3;
/// Most invisibles (escape sequences, control characters, zero-width and combining
/// characters) between two digits of a chain: grep `--color` puts four between two groups
/// (`ESC[m ESC[K ESC[01;31m ESC[K`), and a digit may carry a few combining marks. The bound
/// keeps what a stream holds back small.
pub const MAX_GAP_INVISIBLES: usize = 16;
/// Longest escape sequence taken as one (longer ones are text): keeps a stray ESC from
/// swallowing the text after it.
const MAX_ESCAPE: usize = 32;
/// Digits of the chain kept in the window search's ring: more than a window.
const RING: usize = 32;
/// Shortest run of digits (no separator inside) searched for PANs at every offset: two of the
/// shortest PANs glued together. A shorter run (14 to 25 digits) is a PAN as a whole, or
/// holds one padded with zeros only; searched at every offset, about half of all 20-digit
/// numbers (64-bit ids, timestamps with microseconds, tracking numbers) would hold a window
/// that passes Luhn and fits a scheme.
pub const MIN_SEARCHED_RUN: usize = 2 * MIN_DIGITS;
/// The most bytes [`MIN_SEARCHED_RUN`] digits can span with the widest gaps between them: a digit
/// of at most 4 bytes, a gap of [`MAX_GAP`] separators of at most 4 bytes and
/// [`MAX_GAP_INVISIBLES`] escape sequences of at most `MAX_ESCAPE` bytes. Whether a digit belongs
/// to a card number is decided by at most this much text on each side of it: a reader of a
/// stretch of a larger text (an SFTP read) must see this much around it, and a stream never
/// holds back more.
pub const MAX_CONTEXT: usize =
    MIN_SEARCHED_RUN * 4 + (MIN_SEARCHED_RUN - 1) * (MAX_GAP * 4 + MAX_GAP_INVISIBLES * MAX_ESCAPE);

/// Digits of a run a stream holds back when it is cut inside it: every PAN that ends in the
/// next piece starts in them, and with one more digit they are a run that is searched.
const HOLD_DIGITS: usize = MIN_SEARCHED_RUN - 1;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

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
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    // Summed mod 10 as it goes: no length can overflow it.
    let sum = digits.iter().rev().enumerate().fold(0u8, |sum, (k, &b)| {
        (sum + luhn_term(b - b'0', k % 2 == 1)) % 10
    });
    sum == 0
}

/// Byte ranges of every PAN in `text`, in order, not overlapping.
///
/// Each range starts at the PAN's first digit and ends after its last, so it includes the
/// separators and escape sequences between them. Overlapping windows found inside a long run
/// of digits come back as one range (their union).
///
/// ```
/// use warden_pan::find_pans;
/// let text = "card 4111-1111-1111-1111 exp 12/29";
/// let found = find_pans(text);
/// assert_eq!(found.len(), 1);
/// assert_eq!(&text[found[0].clone()], "4111-1111-1111-1111");
/// ```
pub fn find_pans(text: &str) -> Vec<Range<usize>> {
    find(text).into_iter().map(|f| f.range).collect()
}

/// `text` with every PAN masked (see the crate docs for the exact rule); `None` when `text`
/// holds no PAN, so the common case neither allocates nor copies.
///
/// ```
/// use warden_pan::mask_pans;
/// assert_eq!(mask_pans("4111 1111 1111 1111").as_deref(), Some("**** **** **** 1111"));
/// assert_eq!(mask_pans("order 1234"), None);
/// ```
pub fn mask_pans(text: &str) -> Option<String> {
    if !may_hold_pan(text) {
        return None;
    }
    let found = scan(text);
    if found.is_empty() {
        return None;
    }
    let mut masked = String::with_capacity(text.len());
    let mut copied = 0;
    for f in &found {
        each_digit(text, f, |start, end, hide| {
            if hide {
                masked.push_str(text.get(copied..start).unwrap_or_default());
                masked.push('*');
                copied = end;
            }
        });
    }
    masked.push_str(text.get(copied..).unwrap_or_default());
    Some(masked)
}

/// `text` with every PAN masked, borrowed when there was none: what the gateway stores.
///
/// ```
/// assert_eq!(warden_pan::scrub("card 4111111111111111"), "card ************1111");
/// ```
pub fn scrub(text: &str) -> Cow<'_, str> {
    match mask_pans(text) {
        Some(masked) => Cow::Owned(masked),
        None => Cow::Borrowed(text),
    }
}

/// Where a piece of a stream may be cut: `text[..point]` cannot change by what comes next,
/// `text[point..]` might be the start of a PAN (or of an escape sequence) that continues in
/// the next piece, so a caller holds it back and puts it in front of the next piece.
///
/// The held-back tail is the last chain when nothing after it has ended it yet (the text ends
/// on a digit, on at most [`MAX_GAP`] separators after one, or inside an escape sequence), and
/// an escape sequence the text ends inside. A chain of more than 25 digits is held back from
/// its 25th-last digit only, so the tail stays small (25 digits and their gaps) however long
/// the run: every PAN that ends in the next piece starts inside it, and with one more digit
/// they are a run long enough to be searched. A PAN found in `text` that runs past `point`
/// must stay masked in the tail although the next piece no longer sees its start: that is
/// what [`StreamMasker`] does; prefer it to calling this directly.
///
/// ```
/// use warden_pan::split_safe_point;
/// assert_eq!(split_safe_point("total 12 items\n"), 15);
/// assert_eq!(split_safe_point("card 4111 1111 "), 5); // may go on: "1111 1111"
/// assert_eq!(split_safe_point("card 4111 1111 x"), 16);
/// ```
pub fn split_safe_point(text: &str) -> usize {
    safe_point(text).0
}

/// [`split_safe_point`] for bytes that may not all be UTF-8 (terminal output): only the text
/// after the last byte that is not UTF-8 can hold a chain that goes on, and a UTF-8 sequence
/// the bytes end inside of is held back too.
///
/// ```
/// use warden_pan::split_safe_point_bytes;
/// assert_eq!(split_safe_point_bytes(b"\xff\xfe card 4111 1111 "), 8);
/// assert_eq!(split_safe_point_bytes(b"ok \xef\xbc"), 3); // half a full-width digit
/// assert_eq!(split_safe_point_bytes(b"ok\n"), 3);
/// ```
pub fn split_safe_point_bytes(bytes: &[u8]) -> usize {
    let mut from = 0;
    loop {
        let rest = &bytes[from..];
        match std::str::from_utf8(rest) {
            Ok(text) => return from + split_safe_point(text),
            Err(e) => {
                let valid = rest.get(..e.valid_up_to()).unwrap_or_default();
                let text = std::str::from_utf8(valid).unwrap_or_default();
                match e.error_len() {
                    // Cut inside a char at the end: what comes before it may go on through it.
                    None => return from + split_safe_point(text),
                    Some(bad) => from += e.valid_up_to() + bad,
                }
            }
        }
    }
}

/// [`split_safe_point`], and whether the point cuts a chain (of more than 25 digits).
fn safe_point(text: &str) -> (usize, bool) {
    let bytes = text.as_bytes();
    let mut last = None;
    each_chain(text, |chain| last = Some(*chain));
    if let Some(chain) = last.filter(|c| c.open) {
        return hold_from(text, &chain);
    }
    // No chain may go on, but an escape sequence may (ESC, or the 8-bit CSI: 0xC2 0x9B): hold
    // it so it is read whole next time.
    let from = bytes.len().saturating_sub(MAX_ESCAPE);
    let start = bytes[from..]
        .iter()
        .enumerate()
        .rev()
        .map(|(k, &b)| (from + k, b))
        .find(|&(k, b)| b == ESC || (b == 0xC2 && bytes.get(k + 1) == Some(&0x9B)));
    match start {
        Some((k, _)) if atom_at(text, k).0 == Atom::Cut => (k, false),
        _ => (bytes.len(), false),
    }
}

/// Masks a stream that arrives in pieces (terminal output, a log read in blocks), finding PANs
/// that straddle the cuts.
///
/// Each [`push`](Self::push) returns the masked text that is final and keeps back the tail
/// that may continue (see [`split_safe_point`]; at most 25 digits and their gaps, usually a
/// few bytes); [`finish`](Self::finish) returns the rest at the end of the stream. The
/// concatenated output masks every digit that masking the whole stream at once would; near a
/// cut inside a run of more than 25 digits it may mask a few more.
///
/// For terminal output: feed it each chunk as it is relayed (as `&str`: hold back an
/// incomplete UTF-8 sequence at the end of a byte chunk yourself), and call `finish` when the
/// channel closes or after an idle pause, so a number typed last is not held forever. A relay
/// that cuts raw bytes into lines for a policy to mask uses [`split_safe_point_bytes`] to
/// choose where to cut instead.
///
/// ```
/// use warden_pan::StreamMasker;
/// let mut stream = StreamMasker::new();
/// let mut out = stream.push("card 4111 1111 ");
/// out += &stream.push("1111 1111 ok\n");
/// out += &stream.finish();
/// assert_eq!(out, "card **** **** **** 1111 ok\n");
/// ```
#[derive(Debug, Default, Clone)]
pub struct StreamMasker {
    /// The tail of the text so far that may continue in the next piece, not yet masked.
    held: String,
    /// PANs found in `held` (byte ranges into it) while it was read after the text before it.
    /// When the tail was cut out of a longer run, the next piece cannot see that context
    /// again, so they are carried over and merged with what it finds.
    carried: Vec<Found>,
}

impl StreamMasker {
    /// A masker at the start of a stream.
    pub const fn new() -> Self {
        Self {
            held: String::new(),
            carried: Vec::new(),
        }
    }

    /// Takes the next piece; returns the masked text that can be passed on now.
    pub fn push(&mut self, piece: &str) -> String {
        self.held.push_str(piece);
        let text = std::mem::take(&mut self.held);
        let (point, cuts_chain) = safe_point(&text);
        let carried = std::mem::take(&mut self.carried);
        // A chain held back whole is searched again whole with the next piece; one cut inside
        // is not, so what was found in its held part is carried (and so is what was carried
        // before, when it is held again).
        let found = merge_found(carried.clone(), find(&text));
        let carry = if cuts_chain { &found } else { &carried };
        self.carried = carry
            .iter()
            .filter(|f| f.range.end > point)
            .map(|f| clip_found(&text, f, point))
            .collect();
        let mut out = String::with_capacity(point);
        write_masked(&text, &masked_digits(&text, &found), point, &mut out);
        self.held = text.get(point..).unwrap_or_default().to_owned();
        out
    }

    /// Ends the stream: the held-back tail, masked. The masker can then start a new stream.
    pub fn finish(&mut self) -> String {
        let text = std::mem::take(&mut self.held);
        let found = merge_found(std::mem::take(&mut self.carried), find(&text));
        let mut out = String::with_capacity(text.len());
        write_masked(&text, &masked_digits(&text, &found), text.len(), &mut out);
        out
    }

    /// The tail held back so far (unmasked).
    pub fn held(&self) -> &str {
        &self.held
    }
}

/// The part of `f` from `point` on, as a range of `text[point..]`, masking the same digits.
fn clip_found(text: &str, f: &Found, point: usize) -> Found {
    let mut first = f.range.start.max(point);
    let mut before = 0;
    let mut i = f.range.start;
    while i < f.range.end {
        let (atom, next) = atom_at(text, i);
        if let Atom::Digit(_) = atom {
            if i >= point {
                first = i;
                break;
            }
            before += 1;
        }
        i = next;
    }
    Found {
        range: first - point..f.range.end - point,
        digits: f.digits.saturating_sub(before),
        merged: f.merged,
    }
}

/// Two ordered lists of PANs as one: the same window found twice counts once, overlapping
/// ones merge as in [`push_window`].
fn merge_found(a: Vec<Found>, b: Vec<Found>) -> Vec<Found> {
    if a.is_empty() {
        return b;
    }
    let mut all = a;
    all.extend(b);
    all.sort_by_key(|f| (f.range.start, f.range.end));
    let mut merged: Vec<Found> = Vec::with_capacity(all.len());
    for f in all {
        match merged.last_mut() {
            Some(last) if *last == f => {}
            Some(last) if f.range.start < last.range.end => {
                last.range.end = last.range.end.max(f.range.end);
                last.merged = true;
            }
            _ => merged.push(f),
        }
    }
    merged
}

// ---------------------------------------------------------------------------------------------
// Characters: digits of every script, separators, escape sequences
// ---------------------------------------------------------------------------------------------

/// The zero of every block of Unicode decimal digits (general category Nd, Unicode 17): each
/// block is ten consecutive code points, zero to nine. `char::to_digit` knows ASCII only.
const ND_ZEROS: [u32; 77] = [
    0x0030, 0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
    0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80,
    0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0,
    0xFF10, 0x104A0, 0x10D30, 0x10D40, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450,
    0x114D0, 0x11650, 0x116C0, 0x116D0, 0x116DA, 0x11730, 0x118E0, 0x11950, 0x11BF0, 0x11C50,
    0x11D50, 0x11DA0, 0x11DE0, 0x11F50, 0x16130, 0x16A60, 0x16AC0, 0x16B50, 0x16D70, 0x1CCF0,
    0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E5F1, 0x1E950,
    0x1FBF0,
];

const ESC: u8 = 0x1B;

/// The value of `c` if it is a decimal digit of any script.
fn digit_value(c: char) -> Option<u8> {
    let c = u32::from(c);
    let zero = ND_ZEROS[ND_ZEROS.partition_point(|&z| z <= c).checked_sub(1)?];
    u8::try_from(c - zero).ok().filter(|&v| v < 10)
}

/// What the scanner sees at one place in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Atom {
    /// A decimal digit of any script, with its value.
    Digit(u8),
    /// A character that may stand between the digits of a PAN.
    Separator,
    /// Something a terminal does not show: an escape sequence, BEL, SI, SO.
    Invisible,
    /// An escape sequence that the text ends inside of (only streams care).
    Cut,
    /// Anything else: it ends a chain.
    Other,
}

/// The atom at byte `i` of `text` (a char boundary) and the byte after it. Every walk of the
/// scanner goes through it, so the ASCII case is inlined and the rest is not.
#[inline(always)]
fn atom_at(text: &str, i: usize) -> (Atom, usize) {
    let bytes = text.as_bytes();
    let Some(&b) = bytes.get(i) else {
        return (Atom::Other, i + 1);
    };
    if b.is_ascii() {
        let atom = match b {
            b'0'..=b'9' => Atom::Digit(b - b'0'),
            // `+` is a space in form-encoded bodies (`4111+1111+…`).
            b' ' | b'\t' | b'-' | b'.' | b'/' | b'_' | b'+' => Atom::Separator,
            ESC => return escape_at(bytes, i),
            // Control characters a terminal shows nothing for (BEL, SO, SI, NUL, ...). Not
            // BS, CR, VT or FF, which move the cursor, or tab and newline.
            0x00..=0x07 | 0x0E..=0x1A | 0x1C..=0x1F | 0x7F => Atom::Invisible,
            _ => Atom::Other,
        };
        return (atom, i + 1);
    }
    char_atom_at(text, i)
}

/// [`atom_at`] for a char that is not ASCII.
#[inline(never)]
fn char_atom_at(text: &str, i: usize) -> (Atom, usize) {
    let c = text
        .get(i..)
        .and_then(|s| s.chars().next())
        .unwrap_or(char::REPLACEMENT_CHARACTER);
    if c == C1_CSI {
        // The one-character CSI introducer: its parameters are not digits either.
        return match sequence_end(text.as_bytes(), i, i + c.len_utf8(), CSI_MIDDLE, CSI_LAST) {
            (Atom::Other, _) => (Atom::Other, i + c.len_utf8()),
            found => found,
        };
    }
    let atom = match c {
        // Every Unicode space (Zs) and dash (Pd), the minus sign, dots, slashes, low lines and
        // plus signs of other widths: what people print between groups of digits.
        '\u{A0}'
        | '\u{1680}'
        | '\u{2000}'..='\u{200A}'
        | '\u{202F}'
        | '\u{205F}'
        | '\u{3000}'
        | '\u{58A}'
        | '\u{5BE}'
        | '\u{1400}'
        | '\u{1806}'
        | '\u{2010}'..='\u{2015}'
        | '\u{2E17}'
        | '\u{2E1A}'
        | '\u{2E3A}'
        | '\u{2E3B}'
        | '\u{2E40}'
        | '\u{2E5D}'
        | '\u{301C}'
        | '\u{3030}'
        | '\u{30A0}'
        | '\u{FE31}'
        | '\u{FE32}'
        | '\u{FE58}'
        | '\u{FE63}'
        | '\u{FF0D}'
        | '\u{10EAD}'
        | '\u{2212}'
        | '\u{B7}'
        | '\u{2024}'
        | '\u{2027}'
        | '\u{2219}'
        | '\u{22C5}'
        | '\u{3002}'
        | '\u{30FB}'
        | '\u{FE52}'
        | '\u{FF0E}'
        | '\u{FF61}'
        | '\u{FF65}'
        | '\u{2044}'
        | '\u{2215}'
        | '\u{FF0F}'
        | '\u{FE4D}'..='\u{FE4F}'
        | '\u{FF3F}'
        | '\u{FF0B}'
        // Bullet and braille blank. (Not the replacement character `�`: a reading of bytes
        // that are not UTF-8 puts one for every stray byte, and the gateway reads such text
        // as Latin-1 as well, where its separators are what they are.)
        | '\u{2022}'
        | '\u{2800}' => Atom::Separator,
        // What a terminal or a text view does not show: C1 controls, soft hyphen, zero-width
        // characters, joiners, direction marks and embeddings, invisible operators, fillers,
        // variation selectors, combining marks (a digit with an accent still reads as the
        // digit), format controls and tags. Unlike a separator they do not split a group:
        // `41<ZWSP>11111111111111` looks like `4111111111111111`.
        '\u{80}'..='\u{9F}'
        | '\u{AD}'
        | '\u{300}'..='\u{36F}'
        | '\u{61C}'
        | '\u{115F}'
        | '\u{1160}'
        | '\u{17B4}'
        | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{20D0}'..='\u{20FF}'
        | '\u{3164}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{FE20}'..='\u{FE2F}'
        | '\u{FEFF}'
        | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFFB}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}' => Atom::Invisible,
        _ => digit_value(c).map_or(Atom::Other, Atom::Digit),
    };
    (atom, i + c.len_utf8())
}

/// The escape sequence starting at `bytes[i] == ESC`: CSI (`ESC [` parameters, intermediates,
/// a final byte 0x40–0x7E); an OSC introducer with its selector (`ESC]0;`, `ESC]8;`); or
/// `ESC`, intermediates 0x20–0x2F, a final byte 0x30–0x7E (`ESC(B`, `ESC7`, `ESC=`, the DCS
/// introducer `ESCP` and the string terminator `ESC\`). An OSC's text (a window title, a
/// hyperlink) is read as text on purpose: shells put the command line in the title, and a PAN
/// typed there must be masked too.
#[inline(never)]
fn escape_at(bytes: &[u8], i: usize) -> (Atom, usize) {
    let csi = bytes.get(i + 1) == Some(&b'[');
    let limit = bytes.len().min(i + MAX_ESCAPE);
    if bytes.get(i + 1) == Some(&b']') {
        // OSC: the selector (`0;` title, `8;` hyperlink) goes with the introducer, or it
        // would be taken for a digit next to the text it introduces.
        let digits = bytes[(i + 2).min(limit)..limit]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let j = i + 2 + digits;
        return match bytes.get(j) {
            _ if j >= limit && j < bytes.len() => (Atom::Other, i + 1),
            None => (Atom::Cut, bytes.len()),
            Some(b';') => (Atom::Invisible, j + 1),
            Some(_) => (Atom::Invisible, j),
        };
    }
    if csi {
        sequence_end(bytes, i, i + 2, CSI_MIDDLE, CSI_LAST)
    } else {
        sequence_end(bytes, i, i + 1, 0x20..=0x2F, 0x30..=0x7E)
    }
}

/// The 8-bit CSI introducer (U+009B), which some terminals take for `ESC[`.
const C1_CSI: char = '\u{9B}';
/// A CSI's parameter and intermediate bytes, and its final byte.
const CSI_MIDDLE: std::ops::RangeInclusive<u8> = 0x20..=0x3F;
const CSI_LAST: std::ops::RangeInclusive<u8> = 0x40..=0x7E;

/// The end of an escape sequence that starts at `i` and whose introducer ends at `j`: bytes of
/// `middle`, then one of `last`, all within [`MAX_ESCAPE`] bytes of `i`. `Other` for the first
/// byte when it does not end so (a stray introducer is text), `Cut` when the text ends first.
fn sequence_end(
    bytes: &[u8],
    i: usize,
    mut j: usize,
    middle: std::ops::RangeInclusive<u8>,
    last: std::ops::RangeInclusive<u8>,
) -> (Atom, usize) {
    let limit = bytes.len().min(i + MAX_ESCAPE);
    while j < limit {
        let b = bytes[j];
        if middle.contains(&b) {
            j += 1;
        } else if last.contains(&b) {
            return (Atom::Invisible, j + 1);
        } else {
            return (Atom::Other, i + 1);
        }
    }
    if j >= bytes.len() {
        (Atom::Cut, bytes.len())
    } else {
        (Atom::Other, i + 1)
    }
}

// ---------------------------------------------------------------------------------------------
// Chains
// ---------------------------------------------------------------------------------------------

/// Digits joined by short gaps: where PANs are looked for.
#[derive(Clone, Copy, Debug)]
struct Chain {
    /// The first digit.
    start: usize,
    /// After the last digit.
    end: usize,
    digits: usize,
    /// The text ended before anything ended the chain: it may go on in a next piece.
    open: bool,
    /// Where the search for the next chain goes on.
    resume: usize,
}

/// The cheap pre-check: a text with fewer than [`MIN_DIGITS`] digits cannot hold a PAN.
#[inline]
fn may_hold_pan(text: &str) -> bool {
    let bytes = text.as_bytes();
    // One branch-free pass the compiler vectorises: ASCII digits, and the bytes that start a
    // multi-byte char (only those can be other digits). Counted in bytes per chunk of at most
    // 255, so that the vector lanes stay bytes wide.
    if bytes.len() < MIN_DIGITS {
        return false;
    }
    let candidates: usize = bytes
        .chunks(255)
        .map(|chunk| {
            let n = chunk.iter().fold(0u8, |n, &b| {
                n.wrapping_add(u8::from(b.is_ascii_digit() | (b >= 0xC0)))
            });
            usize::from(n)
        })
        .sum();
    if candidates < MIN_DIGITS {
        return false;
    }
    // Enough candidates; when some are multi-byte chars, count the real digits.
    text.is_ascii()
        || text
            .chars()
            .filter(|&c| c.is_ascii_digit() || !c.is_ascii() && digit_value(c).is_some())
            .count()
            >= MIN_DIGITS
}

/// Calls `each` with every chain of `text`, left to right.
fn each_chain(text: &str, mut each: impl FnMut(&Chain)) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // A chain starts at a digit: skip the bytes that cannot start one, but read escape
        // sequences whole, so that their parameters are not taken for digits.
        match bytes[i..]
            .iter()
            .position(|&b| b.is_ascii_digit() || b >= 0xC0 || b == ESC)
        {
            Some(k) => i += k,
            None => return,
        }
        let (atom, next) = atom_at(text, i);
        if let Atom::Digit(_) = atom {
            let chain = chain_at(text, i);
            each(&chain);
            i = chain.resume;
        } else {
            i = next;
        }
    }
}

/// The chain whose first digit is at `start`.
fn chain_at(text: &str, start: usize) -> Chain {
    let mut chain = Chain {
        start,
        end: start,
        digits: 0,
        open: false,
        resume: text.len(),
    };
    let mut i = start;
    // Each turn reads one digit and the gap after it.
    loop {
        let (_, next) = atom_at(text, i);
        chain.digits += 1;
        chain.end = next;
        i = next;
        let (mut separators, mut invisibles) = (0, 0);
        loop {
            if i >= text.len() {
                chain.open = true;
                return chain;
            }
            let (atom, next) = atom_at(text, i);
            match atom {
                Atom::Digit(_) => break,
                Atom::Separator if separators < MAX_GAP => separators += 1,
                Atom::Invisible if invisibles < MAX_GAP_INVISIBLES => invisibles += 1,
                Atom::Cut => {
                    chain.open = true;
                    return chain;
                }
                // No digit can be in what was skipped: the next chain starts after it.
                _ => {
                    chain.resume = i;
                    return chain;
                }
            }
            i = next;
        }
    }
}

/// Where a stream holds back an open chain: at its start (and a `+` right before it, which
/// decides whether it is a phone number), or at its [`HOLD_DIGITS`]th-last digit when it is
/// longer; and whether that cuts the chain.
fn hold_from(text: &str, chain: &Chain) -> (usize, bool) {
    if chain.digits <= HOLD_DIGITS {
        let plus = chain.start > 0 && text.as_bytes().get(chain.start - 1) == Some(&b'+');
        return (chain.start - usize::from(plus), false);
    }
    let skip = chain.digits - HOLD_DIGITS;
    let mut seen = 0;
    let mut i = chain.start;
    while i < chain.end {
        let (atom, next) = atom_at(text, i);
        if let Atom::Digit(_) = atom {
            if seen == skip {
                return (i, true);
            }
            seen += 1;
        }
        i = next;
    }
    (chain.start, false)
}

// ---------------------------------------------------------------------------------------------
// The window search
// ---------------------------------------------------------------------------------------------

/// A PAN found, or the union of overlapping ones.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Found {
    /// First digit .. after the last.
    range: Range<usize>,
    /// Digits in `range`.
    digits: usize,
    /// Several overlapping windows: every digit is masked.
    merged: bool,
}

impl Found {
    /// Whether the `k`th digit of the range is masked.
    fn masks(&self, k: usize) -> bool {
        self.merged || k + 4 < self.digits
    }
}

/// One digit of the chain being searched. Small (16 bytes), as the ring is set up per chain.
///
/// The group counts saturate at 255: a window compares them with numbers below 26 only while
/// its group is shorter than [`MIN_SEARCHED_RUN`], and in a longer group every window is
/// searched anyway; a window of whole groups never holds a group of 20 digits or more.
#[derive(Clone, Copy, Default)]
struct Slot {
    /// Where the digit starts, and its length in bytes.
    start: usize,
    len: u8,
    value: u8,
    /// Luhn sums (mod 10) of the chain's digits before this one: `[0]` with even-indexed digits
    /// taken as they are and odd-indexed ones doubled, `[1]` the other way round. A window
    /// passes Luhn when the sum of the parity of its last digit is the same after its last
    /// digit as before its first: no window is summed digit by digit.
    sums: [u8; 2],
    /// The digit's index in its group, the group's length and the zeros it starts with.
    in_group: u8,
    group_len: u8,
    leading_zeros: u8,
}

impl Slot {
    fn end(&self) -> usize {
        self.start + usize::from(self.len)
    }
}

/// A group's length and the zeros it starts with.
#[derive(Clone, Copy, Default)]
struct Group {
    len: usize,
    leading_zeros: usize,
}

/// `n`, or 255 when it is more.
fn saturate(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

/// The PANs of `text`, in order; empty (and no allocation) when there are none.
fn find(text: &str) -> Vec<Found> {
    if may_hold_pan(text) {
        scan(text)
    } else {
        Vec::new()
    }
}

/// [`find`] without the pre-check.
fn scan(text: &str) -> Vec<Found> {
    let mut found = Vec::new();
    each_chain(text, |chain| {
        if chain.digits >= MIN_DIGITS {
            search_chain(text, chain, &mut found);
        }
    });
    found
}

/// Adds the PANs of `chain` to `found`.
fn search_chain(text: &str, chain: &Chain, found: &mut Vec<Found>) {
    let after_plus = chain.start > 0 && text.as_bytes().get(chain.start - 1) == Some(&b'+');
    if part_of_an_id(text, chain) {
        return;
    }
    let long = chain.digits > MAX_DIGITS;
    let mut ring = [Slot::default(); RING];
    let mut sums = [0u8; 2];
    let (mut k, mut in_group, mut new_group) = (0, 0, true);
    let mut group = Group::default();
    let mut i = chain.start;
    while i < chain.end {
        let (atom, next) = atom_at(text, i);
        match atom {
            Atom::Digit(value) => {
                if new_group {
                    (in_group, group, new_group) = (0, group_at(text, i, chain.end), false);
                }
                ring[k % RING] = Slot {
                    start: i,
                    len: saturate(next - i),
                    value,
                    sums,
                    in_group: saturate(in_group),
                    group_len: saturate(group.len),
                    leading_zeros: saturate(group.leading_zeros),
                };
                in_group += 1;
                for (parity, sum) in sums.iter_mut().enumerate() {
                    *sum = (*sum + luhn_term(value, k % 2 != parity)) % 10;
                }
                if long {
                    search_windows_ending_at(&ring, k, after_plus, found);
                }
                k += 1;
            }
            Atom::Separator => new_group = true,
            _ => {}
        }
        i = next;
    }
    if long {
        return;
    }
    // 13 to 19 digits: the chain as a whole first, then its windows of whole groups.
    let (first, last) = (&ring[0], &ring[(k - 1) % RING]);
    if !after_plus
        && luhn_sum_after(last, k - 1) == first.sums[(k - 1) % 2]
        && scheme_fits(&ring, 0, k)
        && grouped_like_a_card(&ring, 0, k - 1)
    {
        push_window(found, first.start..last.end(), k);
        return;
    }
    for end in 0..k {
        search_windows_ending_at(&ring, end, after_plus, found);
    }
}

/// The group that starts with the digit at `i`: up to the next separator or `end`.
fn group_at(text: &str, mut i: usize, end: usize) -> Group {
    let mut group = Group::default();
    while i < end {
        let (atom, next) = atom_at(text, i);
        match atom {
            Atom::Digit(d) => {
                group.len += 1;
                if d == 0 && group.leading_zeros + 1 == group.len {
                    group.leading_zeros += 1;
                }
            }
            Atom::Separator => break,
            _ => {}
        }
        i = next;
    }
    group
}

/// Whether the chain is the digits of an alphanumeric identifier: an IBAN (letters, digits
/// and single spaces back to a word start where `CCdd` begins, with the ISO 13616 check,
/// mod 97, holding over it and the chain) or a UPS tracking number (`1Z` glued on). Compact
/// IBANs are long runs of digits, grouped ones groups of four: without this, many would hold a
/// window that passes Luhn and fits a scheme.
fn part_of_an_id(text: &str, chain: &Chain) -> bool {
    let bytes = text.as_bytes();
    let word_start = |at: usize| at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
    if chain.start >= 2
        && &bytes[chain.start - 2..chain.start] == b"1Z"
        && word_start(chain.start - 2)
    {
        return true;
    }
    let mut from = chain.start;
    while from > 0 && chain.start - from < 40 {
        let b = bytes[from - 1];
        let single_space = b == b' ' && from >= 2 && bytes[from - 2] != b' ';
        if !(b.is_ascii_uppercase() || b.is_ascii_digit() || single_space) {
            break;
        }
        from -= 1;
    }
    (from..chain.start).any(|at| word_start(at) && iban_at(bytes, at, chain.end))
}

/// Whether `bytes[at..end]` is an IBAN (single spaces allowed between its groups).
fn iban_at(bytes: &[u8], at: usize, end: usize) -> bool {
    let Some(&[c0, c1, d0, d1]) = bytes.get(at..at + 4) else {
        return false;
    };
    if !(c0.is_ascii_uppercase()
        && c1.is_ascii_uppercase()
        && d0.is_ascii_digit()
        && d1.is_ascii_digit())
    {
        return false;
    }
    // The country and check digits move behind the account number; letters count 10 to 35.
    let mut remainder = 0u32;
    let mut len = 4;
    for &b in bytes.get(at + 4..end).unwrap_or_default() {
        remainder = match b {
            b'0'..=b'9' => (remainder * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => (remainder * 100 + u32::from(b - b'A') + 10) % 97,
            b' ' => continue,
            _ => return false,
        };
        len += 1;
    }
    for v in [
        u32::from(c0 - b'A') + 10,
        u32::from(c1 - b'A') + 10,
        u32::from(d0 - b'0') * 10 + u32::from(d1 - b'0'),
    ] {
        remainder = (remainder * 100 + v) % 97;
    }
    (15..=34).contains(&len) && remainder == 1
}

/// Whether the whole groups from the `first`th digit to the `last`th are grouped as cards are
/// printed: every group of four digits or more, the last of three or more (`4111 1111 1111
/// 1111`, `3782 822463 10005`, `6011 0000 0000 0000 001`). Dates, IP addresses, amounts and
/// version strings have shorter groups.
fn grouped_like_a_card(ring: &[Slot; RING], first: usize, last: usize) -> bool {
    // `first` starts a group, and so does the digit after each group.
    let mut k = first;
    loop {
        let len = usize::from(ring[k % RING].group_len);
        if k + len > last {
            return len >= 3;
        }
        if len < 4 {
            return false;
        }
        k += len;
    }
}

/// Looks for PANs ending at the `last`th digit of the chain (in `ring`).
fn search_windows_ending_at(
    ring: &[Slot; RING],
    last: usize,
    after_plus: bool,
    found: &mut Vec<Found>,
) {
    let end = &ring[last % RING];
    let ends_group = end.in_group.checked_add(1) == Some(end.group_len);
    let sum = luhn_sum_after(end, last);
    for len in (MIN_DIGITS..=MAX_DIGITS).rev() {
        let Some(first) = (last + 1).checked_sub(len) else {
            continue;
        };
        let start = &ring[first % RING];
        let inside_one_group = usize::from(end.in_group) >= len - 1;
        let allowed = if inside_one_group {
            // Anywhere in a run long enough to hold two PANs (`string_agg`); in a shorter run
            // only at its end after zeros (a right-aligned, zero-padded fixed-width field).
            usize::from(end.group_len) >= MIN_SEARCHED_RUN
                || ends_group && start.in_group <= end.leading_zeros
        } else {
            // Whole groups (`12 4111 1111 1111 1111`).
            start.in_group == 0 && ends_group && grouped_like_a_card(ring, first, last)
        };
        if allowed
            && !(first == 0 && after_plus)
            && start.sums[last % 2] == sum
            && scheme_fits(ring, first, len)
        {
            push_window(found, start.start..end.end(), len);
        }
    }
}

/// The Luhn sum (of the parity that leaves `slot` undoubled) after the `k`th digit `slot`.
fn luhn_sum_after(slot: &Slot, k: usize) -> u8 {
    (slot.sums[k % 2] + slot.value) % 10
}

/// A digit's share of a Luhn sum.
fn luhn_term(d: u8, doubled: bool) -> u8 {
    match (doubled, d) {
        (false, _) => d,
        (true, 0..=4) => d * 2,
        (true, _) => d * 2 - 9,
    }
}

/// Adds a window; windows come in order of their ends, so one that overlaps earlier ones
/// overlaps the last ones found, and they merge.
fn push_window(found: &mut Vec<Found>, range: Range<usize>, digits: usize) {
    let mut window = Found {
        range,
        digits,
        merged: false,
    };
    while let Some(last) = found.last() {
        if window.range.start >= last.range.end {
            break;
        }
        window.range.start = window.range.start.min(last.range.start);
        window.range.end = window.range.end.max(last.range.end);
        window.merged = true;
        found.pop();
    }
    found.push(window);
}

// ---------------------------------------------------------------------------------------------
// Card schemes
// ---------------------------------------------------------------------------------------------

/// Whether the `len` digits of the chain from the `first`th (in `ring`) start like a card of
/// that length (the table is in the crate docs).
fn scheme_fits(ring: &[Slot; RING], first: usize, len: usize) -> bool {
    let lead = (first..first + 4).fold(0u16, |n, k| n * 10 + u16::from(ring[k % RING].value));
    iin_fits(lead, len)
}

/// Whether a card number of `len` digits may start with the four digits `lead`.
fn iin_fits(lead: u16, len: usize) -> bool {
    let two = lead / 100;
    let three = lead / 10;
    match lead / 1000 {
        1 => len == 15,
        2 => {
            (2221..=2720).contains(&lead) && len == 16 || (2200..=2204).contains(&lead) && len >= 16
        }
        3 => {
            matches!(two, 34 | 37) && len == 15
                || ((300..=305).contains(&three) || matches!(two, 36 | 38 | 39)) && len >= 14
                || (3528..=3589).contains(&lead) && len >= 16
        }
        4 => matches!(len, 13 | 16 | 19),
        5 => matches!(two, 50 | 56..=59) || len == 16,
        6 => true,
        8 | 9 => len == 16,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Masking
// ---------------------------------------------------------------------------------------------

/// Calls `each(start, end, masked)` for every digit of `f`, in order.
fn each_digit(text: &str, f: &Found, mut each: impl FnMut(usize, usize, bool)) {
    let mut k = 0;
    let mut i = f.range.start;
    while i < f.range.end {
        let (atom, next) = atom_at(text, i);
        if let Atom::Digit(_) = atom {
            each(i, next, f.masks(k));
            k += 1;
        }
        i = next;
    }
}

/// Byte ranges of the digits `found` masks, in order (what a stream masks in a piece).
fn masked_digits(text: &str, found: &[Found]) -> Vec<Range<usize>> {
    let mut masked = Vec::new();
    for f in found {
        each_digit(text, f, |start, end, hide| {
            if hide {
                masked.push(start..end);
            }
        });
    }
    masked
}

/// Appends `text[..upto]` to `out` with a `*` for each of the `masked` digits (in order).
fn write_masked(text: &str, masked: &[Range<usize>], upto: usize, out: &mut String) {
    let mut copied = 0;
    for digit in masked.iter().take_while(|d| d.start < upto) {
        out.push_str(text.get(copied..digit.start).unwrap_or_default());
        out.push('*');
        copied = digit.end;
    }
    out.push_str(text.get(copied..upto).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    //! The internals; the behaviour is tested through the public API in `tests/`.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn digit_blocks_are_ten_digits_from_zero() {
        assert!(ND_ZEROS.is_sorted());
        for &zero in &ND_ZEROS {
            for v in 0..10u8 {
                let c = char::from_u32(zero + u32::from(v)).unwrap();
                assert_eq!(digit_value(c), Some(v), "{:X}", zero + u32::from(v));
                // Rust knows them as numeric, at least.
                assert!(c.is_numeric(), "{:X}", zero + u32::from(v));
            }
        }
        for c in [
            'a',
            '/',
            '¹',
            '½',
            'Ⅳ',
            '一',
            '\u{2070}',
            '\u{1D7CD}',
            '\u{FF1A}',
        ] {
            assert_eq!(digit_value(c), None, "{c}");
        }
    }

    #[test]
    fn escape_sequences_are_read_whole() {
        let at = |s: &str| escape_at(s.as_bytes(), 0);
        assert_eq!(at("\x1b[01;31mX"), (Atom::Invisible, 8));
        assert_eq!(at("\x1b[mX"), (Atom::Invisible, 3));
        assert_eq!(at("\x1b[KX"), (Atom::Invisible, 3));
        assert_eq!(at("\x1b(BX"), (Atom::Invisible, 3));
        assert_eq!(at("\x1b7X"), (Atom::Invisible, 2));
        assert_eq!(at("\x1b]0;title\x07"), (Atom::Invisible, 4));
        assert_eq!(at("\x1b]8;;https://x\x1b\\"), (Atom::Invisible, 4));
        assert_eq!(at("\x1b]104\x07"), (Atom::Invisible, 5));
        assert_eq!(at("\x1b]10"), (Atom::Cut, 4));
        assert_eq!(at("\x1b\\"), (Atom::Invisible, 2));
        assert_eq!(at("\x1b[01;3"), (Atom::Cut, 6));
        assert_eq!(at("\x1b"), (Atom::Cut, 1));
        assert_eq!(at("\x1b\x01"), (Atom::Other, 1));
        assert_eq!(at("\x1b[1é"), (Atom::Other, 1));
        let long = format!("\x1b[{}m", "1;".repeat(MAX_ESCAPE));
        assert_eq!(at(&long), (Atom::Other, 1));
    }

    #[test]
    fn schemes_fix_the_length() {
        assert!(iin_fits(4111, 16) && iin_fits(4111, 13) && iin_fits(4111, 19));
        assert!(!iin_fits(4111, 15) && !iin_fits(4111, 14));
        assert!(iin_fits(3782, 15) && !iin_fits(3782, 16));
        assert!(iin_fits(5500, 16) && !iin_fits(5500, 15));
        assert!(iin_fits(5018, 15) && iin_fits(6759, 13));
        assert!(iin_fits(2221, 16) && iin_fits(2720, 16) && !iin_fits(2721, 16));
        assert!(iin_fits(2200, 19) && !iin_fits(2026, 16) && !iin_fits(2026, 17));
        assert!(iin_fits(3530, 16) && !iin_fits(3527, 16) && !iin_fits(3530, 15));
        assert!(iin_fits(3056, 14) && iin_fits(3600, 14) && !iin_fits(3100, 16));
        assert!(iin_fits(1234, 15) && !iin_fits(1733, 13));
        assert!(iin_fits(8600, 16) && iin_fits(9792, 16) && !iin_fits(8612, 15));
        assert!(!iin_fits(123, 16) && !iin_fits(7071, 16));
    }

    #[test]
    fn luhn_sums_match_luhn_valid() {
        // Every window of a run, summed by prefix, agrees with luhn_valid.
        let run = "0004111111111111111155000055555555593782822463100056011000990139424";
        let mut found = Vec::new();
        let chain = chain_at(run, 0);
        search_chain(run, &chain, &mut found);
        let text = |f: &Found| &run[f.range.clone()];
        assert!(
            found
                .iter()
                .all(|f| f.merged || luhn_valid(text(f).as_bytes()))
        );
        assert!(!found.is_empty());
    }
}
