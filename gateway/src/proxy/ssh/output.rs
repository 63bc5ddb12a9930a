//! Command output under a `mask` verdict: cut into lines (bounded length), each line a one-cell
//! row for `mask-rows`, sent on masked or as it came. A line is shown to the policy in each
//! reading that may hold a card number (UTF-8, Latin-1, UTF-16: `readings.rs`); a line the
//! policy does not edit goes out byte for byte, an edited one as the policy's text when that is
//! as many bytes, else with every digit starred: output keeps its length. A piece of a line
//! (cut at the bound or at a pause) is masked in the text of its line around it. Files read
//! over SFTP are masked the same way ([`mask_exact`]).

use super::readings::{self, cut_start, safe_cut};
use crate::policy::{Column, Decision};
use crate::session::Session;
use std::borrow::Cow;
use std::ops::Range;

/// The shortest line bound: longer than any tail that [`safe_cut`] holds back (25 digits and
/// the widest gaps between them, [`warden_pan::MAX_CONTEXT`]), so a cut at the bound always
/// finds a place outside a number.
pub const MIN_LINE: usize = 16 * 1024;
const _: () = assert!(MIN_LINE > warden_pan::MAX_CONTEXT + 64);

/// Text of a line on each side of a piece cut from it that the piece is masked in: whether a
/// digit belongs to a card number is decided by at most this much around it.
const CONTEXT: usize = warden_pan::MAX_CONTEXT;

/// A stretch of one stream to mask and send, `text[body]`, in the text of its line around it:
/// what was sent of the line before it (up to [`CONTEXT`] bytes), and what has arrived after it
/// (up to [`CONTEXT`], up to the end of the line). A number across a cut is then seen whole
/// from both sides: a pause or the line bound never sends half of one clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub text: Vec<u8>,
    pub body: Range<usize>,
}

/// Splits one stream (stdout or stderr) into lines.
pub struct Lines {
    buf: Vec<u8>,
    /// The end of the current line already cut off (at most [`CONTEXT`] bytes).
    sent: Vec<u8>,
    max_line: usize,
}

impl Lines {
    pub fn new(max_line: usize) -> Lines {
        Lines {
            buf: Vec::new(),
            sent: Vec::new(),
            max_line: max_line.max(MIN_LINE),
        }
    }

    /// Add output; returns the complete lines (with their `\n`), and pieces of lines longer
    /// than the bound, cut where no number is split when there is such a place.
    pub fn push(&mut self, data: &[u8]) -> Vec<Piece> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            let len = match self.buf.iter().position(|&b| b == b'\n') {
                Some(i) if i < self.max_line => i + 1,
                _ if self.buf.len() > self.max_line => match safe_cut(&self.buf[..self.max_line]) {
                    0 => self.max_line,
                    n => n,
                },
                _ => break,
            };
            out.push(self.cut(len));
        }
        out
    }

    /// The partial line held back (a prompt, or output at EOF), up to where a number might go
    /// on: a card number printed in two writes with a pause between must not be masked as two
    /// harmless halves. `at_end` (EOF) takes everything.
    pub fn take_partial(&mut self, at_end: bool) -> Option<Piece> {
        let n = if at_end {
            self.buf.len()
        } else {
            safe_cut(&self.buf)
        };
        (n > 0).then(|| self.cut(n))
    }

    /// Whether a pause would send something ([`Self::take_partial`] without `at_end`).
    pub fn can_flush(&self) -> bool {
        safe_cut(&self.buf) > 0
    }

    /// The first `len` bytes of the buffer as a piece, in the text of its line around it.
    fn cut(&mut self, len: usize) -> Piece {
        let ends_line = self.buf[..len].ends_with(b"\n");
        let after = if ends_line {
            0
        } else {
            let rest = &self.buf[len..];
            rest.iter()
                .position(|&b| b == b'\n')
                .unwrap_or(rest.len())
                .min(CONTEXT)
        };
        // Context cut out of a longer line: no `+` the cut put at its start may make a number
        // read as a phone number.
        let lead = if self.sent.len() == CONTEXT {
            cut_start(&self.sent)
        } else {
            0
        };
        let mut text = self.sent[lead..].to_vec();
        let start = text.len();
        text.extend_from_slice(&self.buf[..len + after]);
        if ends_line {
            self.sent.clear();
        } else {
            self.sent.extend_from_slice(&self.buf[..len]);
            let excess = self.sent.len().saturating_sub(CONTEXT);
            self.sent.drain(..excess);
        }
        self.buf.drain(..len);
        Piece {
            text,
            body: start..start + len,
        }
    }
}

/// Why output could not be masked: nothing of it may be sent.
pub struct MaskRefused(pub String);

/// Mask `pieces` (one stream's) under `decision`; returns the bytes to send.
pub async fn mask_lines(
    session: &Session,
    seq: u64,
    decision: &Decision,
    stderr: bool,
    pieces: Vec<Piece>,
) -> Result<Vec<u8>, MaskRefused> {
    let column = if stderr { "stderr" } else { "stdout" };
    let cells: Vec<(&[u8], usize)> = pieces.iter().map(cell_of).collect();
    let texts: Vec<&[u8]> = cells.iter().map(|(cell, _)| *cell).collect();
    let edited = edit_lines(session, seq, decision, column, &texts).await?;
    Ok(pieces_out(&pieces, &cells, edited))
}

/// The text a piece is masked in (its line end left out: only one inside its body, so a `\r`
/// sent with the piece before stays in the cell), and the length of that line end.
fn cell_of(piece: &Piece) -> (&[u8], usize) {
    let body = &piece.text[piece.body.clone()];
    let eol = split_eol(body).1.len();
    if eol > 0 {
        (&piece.text[..piece.body.end - eol], eol)
    } else {
        (&piece.text[..], 0)
    }
}

/// The bytes of `pieces` that go out, from the edits of their `cells` ([`cell_of`]).
fn pieces_out(pieces: &[Piece], cells: &[(&[u8], usize)], edits: Vec<Option<Vec<u8>>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(pieces.iter().map(|p| p.body.len()).sum());
    for ((piece, &(cell, eol)), edit) in pieces.iter().zip(cells).zip(edits) {
        let end = piece.body.end - eol;
        out.extend_from_slice(&same_length(cell, piece.body.start..end, edit));
        out.extend_from_slice(&piece.text[end..piece.body.end]);
    }
    out
}

/// `cell[body]` as it goes out: unchanged, the policy's edit when it is as many bytes as the
/// cell, or else with every digit starred. Output keeps its length, so a program that frames
/// its output by byte counts (`scp -f`, `tar`, `rsync`) is not left waiting for bytes a mask
/// removed.
fn same_length(cell: &[u8], body: Range<usize>, edit: Option<Vec<u8>>) -> Cow<'_, [u8]> {
    match edit {
        Some(bytes) if bytes.len() == cell.len() => bytes[body].to_vec().into(),
        Some(_) => star_digits(&cell[body]).into(),
        None => cell[body].into(),
    }
}

/// Mask a stretch of a file (an SFTP read) under `decision`, keeping its length, so offsets in
/// the file stay true for the client: lines as one-cell rows of the column `file`; an edited
/// line whose text is not as many bytes as the line (a policy that starred a three-byte digit
/// with one `*`, or bytes that are not UTF-8) becomes the line with every digit starred, byte
/// for byte. `mid_file`: `data` starts in the middle of the file, so its first line may be cut
/// out of a longer one.
pub async fn mask_exact(
    session: &Session,
    seq: u64,
    decision: &Decision,
    data: &[u8],
    mid_file: bool,
) -> Result<Vec<u8>, MaskRefused> {
    // Context cut out of a longer line: no `+` the cut put at its start may make a number read
    // as a phone number. Those bytes go out as they are.
    let kept = if mid_file { cut_start(data) } else { 0 };
    let split: Vec<(&[u8], &[u8])> = data[kept..]
        .split_inclusive(|&b| b == b'\n')
        .map(split_eol)
        .collect();
    let bodies: Vec<&[u8]> = split.iter().map(|(body, _)| *body).collect();
    let masked = mask_bodies(session, seq, decision, "file", &bodies).await?;
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(&data[..kept]);
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
                .map(|(body, edit)| same_length(body, 0..body.len(), edit)),
        );
        from = to;
    }
    Ok(out)
}

/// Each line's text (without its terminator) as a one-cell row of `column` through the
/// chain's `mask-rows`, in each of its readings ([`readings::show`]): the edit of each line a
/// policy changed, `None` for the others.
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
    let mut shown = readings::show(lines);
    let edited = session
        .mask(seq, decision, &columns, &mut shown.rows)
        .await
        .map_err(|f| {
            MaskRefused(format!(
                "policy `{}` failed to mask output: {}",
                f.policy, f.error
            ))
        })?;
    Ok(shown.edits(lines, edited.into_iter().map(|(row, _)| row as usize)))
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

    fn body(piece: &Piece) -> &[u8] {
        &piece.text[piece.body.clone()]
    }

    fn bodies(pieces: Vec<Piece>) -> Vec<Vec<u8>> {
        pieces.iter().map(|p| body(p).to_vec()).collect()
    }

    #[test]
    fn lines_split_hold_partial_and_cut_long() {
        let mut l = Lines::new(8);
        assert_eq!(bodies(l.push(b"ab\ncd")), vec![b"ab\n".to_vec()]);
        assert!(l.can_flush());
        assert_eq!(bodies(l.push(b"e\r\n")), vec![b"cde\r\n".to_vec()]);
        let long = "abcdefgh".repeat(MIN_LINE / 8);
        assert_eq!(
            bodies(l.push(format!("{long}{long}XY\n").as_bytes())),
            vec![
                long.clone().into_bytes(),
                long.clone().into_bytes(),
                b"XY\n".to_vec()
            ]
        );
        assert_eq!(
            bodies(l.push(format!("{long}89").as_bytes())),
            vec![long.into_bytes()]
        );
        let last = l.take_partial(true);
        assert_eq!(last.as_ref().map(body), Some(&b"89"[..]));
        // Masked after the end of its line that went before, as context.
        assert_eq!(last.map(|p| p.text.len()), Some(CONTEXT + 2));
        assert_eq!(l.take_partial(true), None);
    }

    #[test]
    fn a_number_is_never_split_by_a_pause_or_a_long_line() {
        let mut l = Lines::new(64);
        assert!(l.push(b"card 4111 11").is_empty());
        // A pause: only what cannot be part of the number goes out.
        let card = l.take_partial(false);
        assert_eq!(
            card.as_ref().map(|p| (body(p), &p.text[..])),
            Some((&b"card "[..], &b"card 4111 11"[..]))
        );
        assert_eq!(l.take_partial(false), None);
        let rest = l.push(b"11 1111 1111\n");
        assert_eq!(
            bodies(rest.clone()),
            vec![b"4111 1111 1111 1111\n".to_vec()]
        );
        assert_eq!(rest[0].text, b"card 4111 1111 1111 1111\n");
        assert!(l.push(b"Password: ").is_empty());
        assert_eq!(
            bodies(l.take_partial(false).into_iter().collect()),
            vec![b"Password: ".to_vec()]
        );
        // In every reading: Latin-1 no-break spaces, UTF-16, half a UTF-16 digit.
        for held in [
            &b"4111\xa01111\xa01111"[..],
            b"4\x001\x001\x001\x00 \x001\x00",
            b"ok\x00 4",
        ] {
            let mut l = Lines::new(64);
            assert!(l.push(held).is_empty());
            let sent = l.take_partial(false).map(|p| body(&p).to_vec());
            assert!(
                sent.as_ref()
                    .is_none_or(|s| !s.iter().any(u8::is_ascii_digit)),
                "{held:?} sent {sent:?}"
            );
        }
        // A protocol's last byte, `scp -f`'s NUL acknowledgement after the file, is no
        // number's start: it goes out at a pause (held, the transfer would wait forever).
        // A pause between the `\r` and the `\n` of a line end: the `\n` alone goes out after.
        let mut l = Lines::new(64);
        assert!(l.push(b"ok\r").is_empty());
        let first = l.take_partial(false);
        assert_eq!(first.as_ref().map(body), Some(&b"ok\r"[..]));
        let rest = l.push(b"\n");
        assert_eq!(mask_like_pci_mask(&rest), b"\n");
        let mut l = Lines::new(64);
        assert_eq!(bodies(l.push(b"C0644 3 f\nab\n\0")).len(), 2);
        assert_eq!(l.take_partial(false).as_ref().map(body), Some(&b"\0"[..]));
        // A long line is cut before a number that straddles the bound.
        let mut l = Lines::new(MIN_LINE);
        let head = "h".repeat(MIN_LINE - 8);
        let line = format!("{head} 4111 1111 1111 1111\n");
        let cut = bodies(l.push(line.as_bytes()));
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

    /// `pieces` masked as a policy that masks with the shared detector would, in every reading.
    fn mask_like_pci_mask(pieces: &[Piece]) -> Vec<u8> {
        let cells: Vec<(&[u8], usize)> = pieces.iter().map(cell_of).collect();
        let texts: Vec<&[u8]> = cells.iter().map(|(cell, _)| *cell).collect();
        let mut shown = readings::show(&texts);
        let mut edited = Vec::new();
        for (i, row) in shown.rows.iter_mut().enumerate() {
            if let Some(masked) = warden_pan::mask_pans(row[0].as_deref().unwrap_or_default()) {
                row[0] = Some(masked);
                edited.push(i);
            }
        }
        pieces_out(pieces, &cells, shown.edits(&texts, edited))
    }

    /// Output cut anywhere, with pauses anywhere: masking the pieces one by one, each in its
    /// context, gives what masking each line whole gives, in every reading.
    #[test]
    fn random_cuts_and_pauses_mask_like_the_whole() {
        use rand::{Rng, SeedableRng};
        let le = |t: &str| -> Vec<u8> { t.encode_utf16().flat_map(u16::to_le_bytes).collect() };
        let mut body = Vec::new();
        for i in 0..200 {
            let line =
                format!("{i} card 4111 1111 1111 1111 at 12.50 \x1b[1m5500\x1b[m005555555559\n");
            body.extend_from_slice(line.as_bytes());
            match i % 20 {
                0 => {
                    // Longer than the line bound: cut where no number is split.
                    body.extend_from_slice("card 4111 1111 1111 1111; ".repeat(400).as_bytes());
                    body.extend_from_slice(b"4111111111111111\n");
                }
                // A card number inside a run of digits longer than a stream holds back.
                5 => body.extend_from_slice(b"run 124111111111111111333333333333 end\n"),
                6 => body.extend_from_slice(
                    format!("run {}5500005555555559{}\n", "7".repeat(40), "0".repeat(30))
                        .as_bytes(),
                ),
                // CRLF line ends, which a pause can split.
                4 => body.extend_from_slice(b"crlf 4111 1111 1111 1111\r\nnext\r\n"),
                // Latin-1 and UTF-16 text.
                7 => body.extend_from_slice(b"latin 4111\xa01111\xa01111\xa01111 end\n"),
                8 => {
                    body.extend_from_slice(b"utf16 ");
                    body.extend_from_slice(&le("4111 1111 1111 1111 end"));
                    body.push(b'\n');
                }
                // EBCDIC: `4111 1111 1111 1111` between two letters.
                9 => {
                    body.push(0x83);
                    for group in ["4111", "1111", "1111", "1111"] {
                        body.extend(group.bytes().map(|d| 0xF0 + (d - b'0')));
                        body.push(0x40);
                    }
                    body.extend_from_slice(&[0x84, b'\n']);
                }
                _ => {}
            }
        }
        let lines: Vec<Piece> = body
            .split_inclusive(|&b| b == b'\n')
            .map(|l| Piece {
                text: l.to_vec(),
                body: 0..l.len(),
            })
            .collect();
        let whole = mask_like_pci_mask(&lines);
        assert_ne!(whole, body);
        for needle in [
            &b"4111111111111111"[..],
            b"1111\xa01111",
            b"5500005555555559",
            b"\xf4\xf1\xf1\xf1\x40",
        ] {
            assert!(!whole.windows(needle.len()).any(|w| w == needle));
        }
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
            assert_eq!(mask_like_pci_mask(&pieces), whole, "seed {seed}");
        }
    }
}
