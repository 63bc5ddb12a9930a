//! How bytes of output are read as text for the detector and the policies. A line is shown
//! as UTF-8 (with replacement characters for stray bytes) and, when it may hold a card number
//! that reading does not see, as Latin-1 and as UTF-16; each reading's edit goes back into the
//! line's bytes in place, and the edits of a line are merged. Where a stream may be cut is
//! decided over the same readings ([`safe_cut`]), so no reading's number is split.

use crate::policy::Row;

/// How a row shows its line's bytes to the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    Utf8,
    /// ISO 8859-1 (and the printable part of Windows-1252).
    Latin1,
    /// UTF-16, little- or big-endian, from byte `skip` (a line cut at the `\n` of a
    /// little-endian newline starts with its other byte).
    Utf16 {
        le: bool,
        skip: usize,
    },
    /// EBCDIC (code page 037 and its kin: 1047, 500, 1140), as mainframe extracts are
    /// written: digits are 0xF0-0xF9.
    Ebcdic,
}

/// The UTF-16 readings, by byte order and first byte.
const UTF16: [(bool, usize); 4] = [(true, 0), (true, 1), (false, 0), (false, 1)];

/// Lines as one-cell rows in each of their readings, and which line and reading each row
/// shows.
pub struct Shown {
    pub rows: Vec<Row>,
    shows: Vec<(usize, Reading)>,
}

/// Each line as UTF-8 (with replacement characters for stray bytes), and in the other readings
/// that hold a card number ([`other_readings`]).
pub fn show(lines: &[&[u8]]) -> Shown {
    let mut rows: Vec<Row> = Vec::with_capacity(lines.len());
    let mut shows = Vec::with_capacity(lines.len());
    for (i, body) in lines.iter().enumerate() {
        let text = String::from_utf8_lossy(body);
        let utf8 = matches!(text, std::borrow::Cow::Borrowed(_));
        rows.push(vec![Some(text.into_owned())]);
        shows.push((i, Reading::Utf8));
        for (reading, text) in other_readings(body, utf8) {
            rows.push(vec![Some(text)]);
            shows.push((i, reading));
        }
    }
    Shown { rows, shows }
}

impl Shown {
    /// The edit of each line from the rows a policy `edited` (their cells changed in place):
    /// each reading's edit is put back in that reading's bytes ([`back`]), and the edits of a
    /// line are merged, every byte any of them changed changed, so a number one reading masks
    /// and another does not see stays masked. An edit that is not as long as the line (the
    /// UTF-8 reading's, with replacement characters) is kept as it is: the caller then stars
    /// every digit of the line. `None` for a line no policy changed.
    pub fn edits(
        mut self,
        lines: &[&[u8]],
        edited: impl IntoIterator<Item = usize>,
    ) -> Vec<Option<Vec<u8>>> {
        let mut edits: Vec<Option<Vec<u8>>> = vec![None; lines.len()];
        for row in edited {
            let (Some(&(line, reading)), Some(text)) = (
                self.shows.get(row),
                self.rows
                    .get_mut(row)
                    .and_then(|cells| cells.first_mut())
                    .and_then(Option::take),
            ) else {
                continue;
            };
            let body = lines[line];
            let new = back(body, reading, text);
            edits[line] = Some(match edits[line].take() {
                Some(mut merged) if merged.len() == body.len() && new.len() == body.len() => {
                    for ((m, n), b) in merged.iter_mut().zip(&new).zip(body.iter()) {
                        if n != b {
                            *m = *n;
                        }
                    }
                    merged
                }
                // One of them is not as long as the line: it is starred whole.
                Some(merged) if merged.len() != body.len() => merged,
                _ => new,
            });
        }
        edits
    }
}

/// The readings of a line besides UTF-8, each only when the shared detector finds a card
/// number in it (so binary data is not masked several times over): Latin-1 for a line that is
/// not UTF-8 (a file in ISO 8859-1 or Windows-1252, whose no-break space is the one byte 0xA0);
/// EBCDIC for a line that is not UTF-8 with 13 EBCDIC digits;
/// UTF-16 for a line that is not UTF-8 or holds a NUL, with 13 ASCII or full-width digits in
/// that reading (a number with anything but ASCII between its digits, or full-width digits,
/// which the UTF-8 reading does not see; digits of other scripts in UTF-16 are not looked for).
pub fn other_readings(body: &[u8], utf8: bool) -> Vec<(Reading, String)> {
    let mut out = Vec::new();
    if !utf8 {
        let latin1 = latin1(body);
        if !warden_pan::find_pans(&latin1).is_empty() {
            out.push((Reading::Latin1, latin1));
        }
        // EBCDIC only when it holds the 13 digits of the shortest card number.
        if body.iter().filter(|b| (0xF0..=0xF9).contains(*b)).count() >= 13 {
            let text = ebcdic(body);
            if !warden_pan::find_pans(&text).is_empty() {
                out.push((Reading::Ebcdic, text));
            }
        }
    }
    if !utf8 || body.contains(&0) {
        for (le, skip) in UTF16 {
            // Read so only when it holds the 13 digits of the shortest card number, ASCII
            // (U+0030-0039) or full-width (U+FF10-FF19), counted on the units before anything
            // is built: a binary file's lines, or a stream of NULs, almost never do.
            let digits = utf16_units(body, le, skip)
                .filter(|&u| utf16_digit(u))
                .count();
            if digits < 13 {
                continue;
            }
            let text = utf16_text(body, le, skip);
            if !warden_pan::find_pans(&text).is_empty() {
                out.push((Reading::Utf16 { le, skip }, text));
            }
        }
    }
    out
}

/// Bytes at the end of a stream that [`safe_cut`] reads: more than the widest tail it holds
/// back in the UTF-8 and Latin-1 readings ([`warden_pan::MAX_CONTEXT`]). A UTF-16 tail of 25
/// digits with the widest gaps of escape sequences can be longer; it is then held from here.
const CUT_WINDOW: usize = warden_pan::MAX_CONTEXT + 64;

/// How much of `bytes` (the start of a line, its end still to come) can be masked now: all of
/// it, unless in one of the readings it ends in what may be the start of a card number that
/// goes on (digits, the separators and escape sequences the detector reads through, half a
/// character); then everything before the earliest such start. The detector's rule
/// ([`warden_pan::split_safe_point`]) applied to each reading, so a number cut across two
/// writes, a pause or the line bound is seen whole whatever its encoding.
pub fn safe_cut(bytes: &[u8]) -> usize {
    // Only the end can hold a number that goes on. Starting later changes nothing but the
    // cost: a chain that starts before `from` is only held back further. Even, so UTF-16
    // units stay aligned.
    let from = bytes.len().saturating_sub(CUT_WINDOW) & !1;
    let tail = &bytes[from..];
    let mut cut = warden_pan::split_safe_point_bytes(tail);
    let utf8 = std::str::from_utf8(tail).is_ok();
    if !utf8 {
        // One character per byte: the point's characters are its bytes.
        for text in [latin1(tail), ebcdic(tail)] {
            let point = warden_pan::split_safe_point(&text);
            cut = cut.min(text[..point].chars().count());
        }
    }
    if !utf8 || tail.contains(&0) {
        for (le, skip) in UTF16 {
            if skip >= tail.len() {
                continue;
            }
            let text = utf16_text(tail, le, skip);
            let point = warden_pan::split_safe_point(&text);
            if point < text.len() {
                let units: usize = text[..point].chars().map(char::len_utf16).sum();
                cut = cut.min(skip + 2 * units);
            }
            // A last odd byte that may be the first half of a little-endian digit, the half
            // that tells which digit: held too. (A big-endian digit's first byte, 0x00 or
            // 0xFF, tells nothing; holding it would stall a protocol whose last byte is a NUL,
            // such as `scp -f` waiting for its acknowledgement.)
            let odd = (tail.len() - skip) % 2 == 1;
            let last = tail[tail.len() - 1];
            let half_digit = le && matches!(last, b'0'..=b'9' | 0x10..=0x19);
            if odd && half_digit {
                cut = cut.min(tail.len() - 1);
            }
        }
    }
    from + cut
}

/// How many bytes at the start of `bytes`, a stretch cut out of the middle of a line, to keep
/// out of the detector's sight: a `+` right before a digit makes the chain it starts a phone
/// number, and one the cut put there must not (NULs around it: its UTF-16 forms).
pub fn cut_start(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|&b| b != b'+' && b != 0)
        .unwrap_or(bytes.len())
}

fn latin1(body: &[u8]) -> String {
    body.iter().copied().map(char::from).collect()
}

/// `body` read as EBCDIC (code page 037): one character per byte. What the detector needs is
/// read as such (digits, letters, space and the separators, line ends, tab; NUL and the other
/// controls as controls); any other byte is U+FFFD, which ends a chain.
fn ebcdic(body: &[u8]) -> String {
    body.iter().map(|&b| ebcdic_char(b)).collect()
}

fn ebcdic_char(b: u8) -> char {
    let from = |first: u8, base: u8| char::from(base + (b - first));
    match b {
        0xF0..=0xF9 => from(0xF0, b'0'),
        0xC1..=0xC9 => from(0xC1, b'A'),
        0xD1..=0xD9 => from(0xD1, b'J'),
        0xE2..=0xE9 => from(0xE2, b'S'),
        0x81..=0x89 => from(0x81, b'a'),
        0x91..=0x99 => from(0x91, b'j'),
        0xA2..=0xA9 => from(0xA2, b's'),
        0x40 => ' ',
        0x41 => '\u{a0}',
        0x4B => '.',
        0x4E => '+',
        0x5C => '*',
        0x5E => ';',
        0x60 => '-',
        0x61 => '/',
        0x6B => ',',
        0x6D => '_',
        0x7A => ':',
        0x05 => '\t',
        0x15 | 0x25 => '\n',
        0x0D => '\r',
        0x00..=0x3F => '\u{1}',
        _ => char::REPLACEMENT_CHARACTER,
    }
}

/// An ASCII (U+0030-0039) or full-width (U+FF10-FF19) digit.
fn utf16_digit(unit: u16) -> bool {
    matches!(unit, 0x30..=0x39 | 0xFF10..=0xFF19)
}

/// The UTF-16 units of `body` from byte `skip` (a last odd byte is left out).
fn utf16_units(body: &[u8], le: bool, skip: usize) -> impl Iterator<Item = u16> + '_ {
    body.get(skip..)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(move |b| {
            if le {
                u16::from_le_bytes([b[0], b[1]])
            } else {
                u16::from_be_bytes([b[0], b[1]])
            }
        })
}

/// `body` read as UTF-16, one U+FFFD for each unpaired surrogate (one unit, as it was).
fn utf16_text(body: &[u8], le: bool, skip: usize) -> String {
    char::decode_utf16(utf16_units(body, le, skip))
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// A policy's edit of one reading of `body`, as bytes of the line.
fn back(body: &[u8], reading: Reading, edited: String) -> Vec<u8> {
    match reading {
        Reading::Utf8 => edited.into_bytes(),
        Reading::Latin1 => edited
            .chars()
            .map(|c| u8::try_from(c).ok())
            .collect::<Option<Vec<u8>>>()
            .unwrap_or_else(|| edited.into_bytes()),
        Reading::Utf16 { le, skip } => utf16_back(body, le, skip, &edited),
        Reading::Ebcdic => ebcdic_back(body, &edited),
    }
}

/// `body` with the characters an edit of its EBCDIC reading changed written back in place as
/// EBCDIC `*` (0x5C); when the edit is not as many characters, every EBCDIC digit starred. As
/// long as `body` either way.
fn ebcdic_back(body: &[u8], edited: &str) -> Vec<u8> {
    const STAR: u8 = 0x5C;
    if edited.chars().count() != body.len() {
        return body
            .iter()
            .map(|&b| if (0xF0..=0xF9).contains(&b) { STAR } else { b })
            .collect();
    }
    body.iter()
        .zip(edited.chars())
        .map(|(&b, c)| if c != ebcdic_char(b) { STAR } else { b })
        .collect()
}

/// `body` with the UTF-16 units an edit changed written back in place, or, when the edit is
/// not as many units, with every digit's units starred; as long as `body` either way.
fn utf16_back(body: &[u8], le: bool, skip: usize, edited: &str) -> Vec<u8> {
    let units: Vec<u16> = utf16_units(body, le, skip).collect();
    let new: Vec<u16> = edited.encode_utf16().collect();
    let mut out = body.to_vec();
    let mut put = |k: usize, u: u16| {
        let b = if le { u.to_le_bytes() } else { u.to_be_bytes() };
        out[skip + 2 * k..skip + 2 * k + 2].copy_from_slice(&b);
    };
    if new.len() == units.len() {
        for (k, (&old, &n)) in units.iter().zip(&new).enumerate() {
            // An unpaired surrogate was shown as U+FFFD: it stays as it was.
            if old != n && !(0xD800..=0xDFFF).contains(&old) {
                put(k, n);
            }
        }
    } else {
        let mut k = 0;
        for r in char::decode_utf16(units.iter().copied()) {
            let n = r.as_ref().map_or(1, |c| c.len_utf16());
            if r.is_ok_and(|c| c.is_numeric()) {
                (k..k + n).for_each(|j| put(j, u16::from(b'*')));
            }
            k += n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_edits_go_back_in_place() {
        let le = |t: &str| -> Vec<u8> { t.encode_utf16().flat_map(u16::to_le_bytes).collect() };
        let body = le("a 4111\u{3000}1111\u{3000}1111\u{3000}1111");
        let masked = "a ****\u{3000}****\u{3000}****\u{3000}1111";
        assert_eq!(utf16_back(&body, true, 0, masked), le(masked));
        // An edit of another length: every digit starred, the length kept.
        let all = le("a ****\u{3000}****\u{3000}****\u{3000}****");
        assert_eq!(utf16_back(&body, true, 0, "[card]"), all);
        // A line that starts with the second byte of a little-endian newline.
        let shifted = [&[0][..], &body].concat();
        assert_eq!(utf16_back(&shifted, true, 1, masked)[1..], le(masked)[..]);
        // Readings offered: the UTF-16 ones that hold a number (the UTF-8 one does not).
        let readings = other_readings(&body, true);
        assert!(
            readings
                .iter()
                .any(|(r, _)| *r == Reading::Utf16 { le: true, skip: 0 }),
            "{readings:?}"
        );
        assert!(other_readings(b"plain text, no NUL", true).is_empty());
    }

    #[test]
    fn ebcdic_text_is_read_and_masked_in_place() {
        // `card 4111 1111 1111 1111` as `iconv -t EBCDIC-US` writes it.
        let to_ebcdic = |t: &str| -> Vec<u8> {
            t.bytes()
                .map(|c| match c {
                    b'0'..=b'9' => 0xF0 + (c - b'0'),
                    b' ' => 0x40,
                    b'*' => 0x5C,
                    b'c' => 0x83,
                    b'a' => 0x81,
                    b'r' => 0x99,
                    b'd' => 0x84,
                    _ => 0x6F,
                })
                .collect()
        };
        let body = to_ebcdic("card 4111 1111 1111 1111");
        let readings = other_readings(&body, false);
        let ebcdic = readings.iter().find(|(r, _)| *r == Reading::Ebcdic);
        assert_eq!(
            ebcdic.map(|(_, t)| t.as_str()),
            Some("card 4111 1111 1111 1111"),
            "{readings:?}"
        );
        let masked = warden_pan::mask_pans("card 4111 1111 1111 1111").unwrap_or_default();
        assert_eq!(
            back(&body, Reading::Ebcdic, masked),
            to_ebcdic("card **** **** **** 1111")
        );
        // Held back at a pause inside the number.
        let half = to_ebcdic("card 4111 1111 11");
        assert_eq!(safe_cut(&half), 5);
    }
}
