//! Command output under a `mask` verdict: cut into lines (bounded length), each line a one-cell
//! row for `mask-rows`, sent on masked or as it came. A line that is not UTF-8 (binary output,
//! a Latin-1 file) is shown to the policy twice, with replacement characters and as Latin-1; a line the policy does not edit goes
//! out byte for byte, an edited one as the policy's text when that is as many bytes, else with
//! every digit starred: output keeps its length. Files read over SFTP are masked the same way
//! ([`mask_exact`]).

use crate::policy::{Column, Decision, Row};
use crate::session::Session;

/// The shortest line bound: longer than any tail that [`safe_cut`] holds back (25 digits and
/// the widest gaps between them, [`warden_pan::MAX_CONTEXT`]), so a cut at the bound always
/// finds a place outside a number.
pub const MIN_LINE: usize = 16 * 1024;
const _: () = assert!(MIN_LINE > warden_pan::MAX_CONTEXT);

/// Splits one stream (stdout or stderr) into lines.
pub struct Lines {
    buf: Vec<u8>,
    max_line: usize,
}

impl Lines {
    pub fn new(max_line: usize) -> Lines {
        Lines {
            buf: Vec::new(),
            max_line: max_line.max(MIN_LINE),
        }
    }

    /// Add output; returns the complete lines (with their `\n`), and pieces of lines longer
    /// than the bound, cut where no number is split when there is such a place.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut start = 0;
        loop {
            let rest = &self.buf[start..];
            let len = match rest.iter().position(|&b| b == b'\n') {
                Some(i) if i < self.max_line => i + 1,
                _ if rest.len() > self.max_line => match safe_cut(&rest[..self.max_line]) {
                    0 => self.max_line,
                    n => n,
                },
                _ => break,
            };
            out.push(rest[..len].to_vec());
            start += len;
        }
        self.buf.drain(..start);
        out
    }

    /// The partial line held back (a prompt, or output at EOF), up to where a number might go
    /// on: a card number printed in two writes with a pause between must not be masked as two
    /// harmless halves. `at_end` (EOF) takes everything.
    pub fn take_partial(&mut self, at_end: bool) -> Option<Vec<u8>> {
        let n = if at_end {
            self.buf.len()
        } else {
            safe_cut(&self.buf)
        };
        (n > 0).then(|| self.buf.drain(..n).collect())
    }

    /// Whether a pause would send something ([`Self::take_partial`] without `at_end`).
    pub fn can_flush(&self) -> bool {
        safe_cut(&self.buf) > 0
    }
}

/// How much of `bytes` can be masked on its own: all of it, unless it ends in what may be the
/// start of a card number that goes on (digits, the separators and escape sequences the
/// detector reads through, half a UTF-8 character); then everything before that. The
/// detector's own rule (`warden-pan`), so a number cut across two writes or the line bound is
/// seen whole.
fn safe_cut(bytes: &[u8]) -> usize {
    warden_pan::split_safe_point_bytes(bytes)
}

/// Why output could not be masked: nothing of it may be sent.
pub struct MaskRefused(pub String);

/// Mask `lines` (one stream's) under `decision`; returns the bytes to send.
pub async fn mask_lines(
    session: &Session,
    seq: u64,
    decision: &Decision,
    stderr: bool,
    lines: Vec<Vec<u8>>,
) -> Result<Vec<u8>, MaskRefused> {
    let column = if stderr { "stderr" } else { "stdout" };
    let split: Vec<(&[u8], &[u8])> = lines.iter().map(|l| split_eol(l)).collect();
    let bodies: Vec<&[u8]> = split.iter().map(|(body, _)| *body).collect();
    let edited = edit_lines(session, seq, decision, column, &bodies).await?;
    let mut out = Vec::with_capacity(lines.iter().map(Vec::len).sum());
    for ((body, eol), edit) in split.into_iter().zip(edited) {
        out.extend_from_slice(&same_length(body, edit));
        out.extend_from_slice(eol);
    }
    Ok(out)
}

/// A line as it goes out: unchanged, the policy's edit when it is as many bytes as the line,
/// or else the line with every digit starred. Output keeps its length, so a program that frames
/// its output by byte counts (`scp -f`, `tar`, `rsync`) is not left waiting for bytes a mask
/// removed.
fn same_length(body: &[u8], edit: Option<Vec<u8>>) -> std::borrow::Cow<'_, [u8]> {
    match edit {
        Some(bytes) if bytes.len() == body.len() => bytes.into(),
        Some(_) => star_digits(body).into(),
        None => body.into(),
    }
}

/// Mask a stretch of a file (an SFTP read) under `decision`, keeping its length, so offsets in
/// the file stay true for the client: lines as one-cell rows of the column `file`; an edited
/// line whose text is not as many bytes as the line (a policy that starred a three-byte digit
/// with one `*`, or bytes that are not UTF-8) becomes the line with every digit starred, byte
/// for byte.
pub async fn mask_exact(
    session: &Session,
    seq: u64,
    decision: &Decision,
    data: &[u8],
) -> Result<Vec<u8>, MaskRefused> {
    let split: Vec<(&[u8], &[u8])> = data
        .split_inclusive(|&b| b == b'\n')
        .map(split_eol)
        .collect();
    let bodies: Vec<&[u8]> = split.iter().map(|(body, _)| *body).collect();
    let masked = mask_bodies(session, seq, decision, "file", &bodies).await?;
    let mut out = Vec::with_capacity(data.len());
    for (body, (_, eol)) in masked.iter().zip(&split) {
        out.extend_from_slice(body);
        out.extend_from_slice(eol);
    }
    Ok(out)
}

/// Mask the names an SFTP NAME reply carries (file names and `ls -l` long names), each a
/// one-cell row of the column `filename`, keeping their lengths.
pub async fn mask_names(
    session: &Session,
    seq: u64,
    decision: &Decision,
    names: &[&[u8]],
) -> Result<Vec<Vec<u8>>, MaskRefused> {
    let masked = mask_bodies(session, seq, decision, "filename", names).await?;
    Ok(masked
        .into_iter()
        .map(std::borrow::Cow::into_owned)
        .collect())
}

/// Each of `bodies` masked and kept at its length ([`same_length`]), up to 32 KiB of them per
/// policy call (a longer one alone), so a call on a quarter of a megabyte stays within its
/// deadline.
async fn mask_bodies<'a>(
    session: &Session,
    seq: u64,
    decision: &Decision,
    column: &str,
    bodies: &[&'a [u8]],
) -> Result<Vec<std::borrow::Cow<'a, [u8]>>, MaskRefused> {
    let mut out = Vec::with_capacity(bodies.len());
    let mut from = 0;
    while from < bodies.len() {
        let (mut to, mut size) = (from, 0);
        while to < bodies.len() && (to == from || size + bodies[to].len() <= 32 * 1024) {
            size += bodies[to].len();
            to += 1;
        }
        let edited = edit_lines(session, seq, decision, column, &bodies[from..to]).await?;
        out.extend(
            bodies[from..to]
                .iter()
                .zip(edited)
                .map(|(body, edit)| same_length(body, edit)),
        );
        from = to;
    }
    Ok(out)
}

/// Each line's text (without its terminator) as a one-cell row of `column` through the
/// chain's `mask-rows`: the edited text of the lines a policy changed, `None` for the others.
/// A line that is not UTF-8 is shown both as UTF-8 with replacement characters and as
/// Latin-1. (UTF-16 text needs no reading of its own: the NUL bytes between its ASCII digits
/// are characters the detector reads through.)
async fn edit_lines(
    session: &Session,
    seq: u64,
    decision: &Decision,
    column: &str,
    lines: &[&[u8]],
) -> Result<Vec<Option<Vec<u8>>>, MaskRefused> {
    let columns = [Column {
        name: column.to_string(),
        type_name: "text".to_string(),
    }];
    // Each line as UTF-8 (with replacement characters for stray bytes), and in the other
    // readings that hold a card number ([`other_readings`]). `shows`: the line each row shows,
    // and how.
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
    let edited = session
        .mask(seq, decision, &columns, &mut rows)
        .await
        .map_err(|f| {
            MaskRefused(format!(
                "policy `{}` failed to mask output: {}",
                f.policy, f.error
            ))
        })?;
    // Each reading's edit is put back in that reading's bytes ([`back`]), and the edits of a
    // line are merged: every byte any of them changed is changed, so a number one reading
    // masks and another does not see stays masked. An edit that is not as long as the line
    // (the UTF-8 reading's, with replacement characters) goes out as it is, and the line
    // then with every digit starred ([`same_length`]).
    let mut edits: Vec<Option<Vec<u8>>> = vec![None; lines.len()];
    for (row, _) in edited {
        let row = row as usize;
        let (Some(&(line, reading)), Some(text)) = (
            shows.get(row),
            rows.get_mut(row)
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
    Ok(edits)
}

/// How a row shows its line's bytes to the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Utf8,
    /// ISO 8859-1 (and the printable part of Windows-1252).
    Latin1,
    /// UTF-16, little- or big-endian, from byte `skip` (a line cut at the `\n` of a
    /// little-endian newline starts with its other byte).
    Utf16 {
        le: bool,
        skip: usize,
    },
}

/// The readings of a line besides UTF-8, each only when the shared detector finds a card
/// number in it (so binary data is not masked several times over): Latin-1 for a line that is
/// not UTF-8 (a file in ISO 8859-1 or Windows-1252, whose no-break space is the one byte 0xA0);
/// UTF-16 for a line that is not UTF-8 or holds a NUL, with 13 ASCII or full-width digits in
/// that reading (a number with anything but ASCII between its digits, or full-width digits,
/// which the UTF-8 reading does not see; digits of other scripts in UTF-16 are not looked for).
fn other_readings(body: &[u8], utf8: bool) -> Vec<(Reading, String)> {
    let mut out = Vec::new();
    if !utf8 {
        let latin1: String = body.iter().copied().map(char::from).collect();
        if !warden_pan::find_pans(&latin1).is_empty() {
            out.push((Reading::Latin1, latin1));
        }
    }
    if !utf8 || body.contains(&0) {
        for (le, skip) in [(true, 0), (true, 1), (false, 0), (false, 1)] {
            // Read so only when it holds the 13 digits of the shortest card number, ASCII
            // (U+0030-0039) or full-width (U+FF10-FF19), counted on the units before anything
            // is built: a binary file's lines, or a stream of NULs, almost never do.
            let digits = utf16_units(body, le, skip)
                .filter(|u| matches!(u, 0x30..=0x39 | 0xFF10..=0xFF19))
                .count();
            if digits < 13 {
                continue;
            }
            let text: String = char::decode_utf16(utf16_units(body, le, skip))
                .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect();
            if !warden_pan::find_pans(&text).is_empty() {
                out.push((Reading::Utf16 { le, skip }, text));
            }
        }
    }
    out
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
    }
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

/// `line` with every character that is a digit in any script replaced by as many `*` as its
/// UTF-8 bytes; other bytes, valid or not, unchanged.
pub fn star_digits(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    for chunk in line.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_numeric() {
                out.resize(out.len() + c.len_utf8(), b'*');
            } else {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
        out.extend_from_slice(chunk.invalid());
    }
    out
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
    fn lines_split_hold_partial_and_cut_long() {
        let mut l = Lines::new(8);
        assert_eq!(l.push(b"ab\ncd"), vec![b"ab\n".to_vec()]);
        assert!(l.can_flush());
        assert_eq!(l.push(b"e\r\n"), vec![b"cde\r\n".to_vec()]);
        let long = "abcdefgh".repeat(MIN_LINE / 8);
        assert_eq!(
            l.push(format!("{long}{long}XY\n").as_bytes()),
            vec![
                long.clone().into_bytes(),
                long.clone().into_bytes(),
                b"XY\n".to_vec()
            ]
        );
        assert_eq!(
            l.push(format!("{long}89").as_bytes()),
            vec![long.into_bytes()]
        );
        assert_eq!(l.take_partial(true), Some(b"89".to_vec()));
        assert_eq!(l.take_partial(true), None);
    }

    #[test]
    fn a_number_is_never_split_by_a_pause_or_a_long_line() {
        let mut l = Lines::new(64);
        assert!(l.push(b"card 4111 11").is_empty());
        // A pause: only what cannot be part of the number goes out.
        assert_eq!(l.take_partial(false), Some(b"card ".to_vec()));
        assert_eq!(l.take_partial(false), None);
        assert_eq!(
            l.push(b"11 1111 1111\n"),
            vec![b"4111 1111 1111 1111\n".to_vec()]
        );
        assert!(l.push(b"Password: ").is_empty());
        assert_eq!(l.take_partial(false), Some(b"Password: ".to_vec()));
        // A long line is cut before a number that straddles the bound.
        let mut l = Lines::new(MIN_LINE);
        let head = "h".repeat(MIN_LINE - 8);
        let line = format!("{head} 4111 1111 1111 1111\n");
        let cut = l.push(line.as_bytes());
        assert_eq!(cut[0], format!("{head} ").into_bytes());
        assert_eq!(cut.concat(), line.into_bytes());
    }

    #[test]
    fn starring_digits_keeps_every_byte_in_place() {
        let line = "card \u{ff14}111 4111\u{a0}1111 \u{0664}2 x".as_bytes();
        let mut with_junk = line.to_vec();
        with_junk.extend_from_slice(b"\xff\xfe7");
        let starred = star_digits(&with_junk);
        assert_eq!(starred.len(), with_junk.len());
        assert_eq!(
            String::from_utf8_lossy(&starred),
            "card ****** ****\u{a0}**** *** x\u{fffd}\u{fffd}*"
        );
    }

    #[test]
    fn eol_is_kept_out_of_the_cell() {
        assert_eq!(split_eol(b"a\r\n"), (&b"a"[..], &b"\r\n"[..]));
        assert_eq!(split_eol(b"a\n"), (&b"a"[..], &b"\n"[..]));
        assert_eq!(split_eol(b"a"), (&b"a"[..], &b""[..]));
    }

    /// Output cut anywhere, with pauses anywhere: masking the pieces one by one gives what
    /// masking the whole output gives.
    #[test]
    fn random_cuts_and_pauses_mask_like_the_whole() {
        use rand::{Rng, SeedableRng};
        let mut body = Vec::new();
        for i in 0..200 {
            let line =
                format!("{i} card 4111 1111 1111 1111 at 12.50 \x1b[1m5500\x1b[m005555555559\n");
            body.extend_from_slice(line.as_bytes());
            if i % 20 == 0 {
                // Longer than the line bound: cut where no number is split.
                body.extend_from_slice("card 4111 1111 1111 1111; ".repeat(400).as_bytes());
                body.extend_from_slice(b"4111111111111111\n");
            }
        }
        let whole = warden_pan::scrub(&String::from_utf8_lossy(&body)).into_owned();
        for seed in 0..50u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut lines = Lines::new(rng.random_range(MIN_LINE..3 * MIN_LINE));
            let mut pieces = Vec::new();
            let mut at = 0;
            while at < body.len() {
                let n = rng.random_range(1..600).min(body.len() - at);
                pieces.extend(lines.push(&body[at..at + n]));
                at += n;
                if rng.random_bool(0.5) {
                    pieces.extend(lines.take_partial(false));
                }
            }
            pieces.extend(lines.take_partial(true));
            let masked: String = pieces
                .iter()
                .map(|p| warden_pan::scrub(&String::from_utf8_lossy(p)).into_owned())
                .collect();
            assert_eq!(masked, whole, "seed {seed}");
        }
    }
}
