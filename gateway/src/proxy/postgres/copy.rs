//! COPY ... TO STDOUT data under a `mask` verdict, read by its columns' types: the gateway asks
//! the server to describe the COPY's columns before the data flows (`frontend.rs`), then each
//! line (text, CSV or binary) is split into cells like a DataRow's, masked by the same rules,
//! and written back in the line's own format. A COPY whose types could not be learned is masked
//! line by line as text (`rows.rs`).

use crate::command::sql::{CopyFormat, CopyOut};

/// The binary COPY signature that starts the first CopyData (then flags and an extension).
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Cells of one line (`None`: NULL), in their text or binary form.
type Cells = Vec<Option<Vec<u8>>>;

/// One COPY line split into cells: `prefix` is sent before it (the binary header), `cells`
/// are values in their text form (text, CSV) or binary form. `None`: not a row (the binary
/// trailer, a header line).
pub fn split(spec: &CopyOut, line: &[u8], first: bool) -> Option<(Vec<u8>, Cells)> {
    match spec.format {
        CopyFormat::Binary => split_binary(line, first),
        _ if first && spec.header => None,
        CopyFormat::Text => {
            split_text(spec, std::str::from_utf8(line).ok()?).map(|c| (Vec::new(), c))
        }
        CopyFormat::Csv => {
            split_csv(spec, std::str::from_utf8(line).ok()?).map(|c| (Vec::new(), c))
        }
    }
}

/// The line for `cells` (with `prefix` before it).
pub fn join(spec: &CopyOut, prefix: &[u8], cells: &[Option<&[u8]>]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    let mut buf = [0; 4];
    let delimiter = spec.delimiter.encode_utf8(&mut buf).as_bytes();
    match spec.format {
        CopyFormat::Binary => {
            out.extend_from_slice(&(cells.len() as i16).to_be_bytes());
            for c in cells {
                match c {
                    Some(v) => {
                        out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        out.extend_from_slice(v);
                    }
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
        }
        CopyFormat::Text => {
            for (i, c) in cells.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(delimiter);
                }
                match c {
                    None => out.extend_from_slice(spec.null.as_bytes()),
                    Some(v) => escape_text(spec, &String::from_utf8_lossy(v), &mut out),
                }
            }
            out.push(b'\n');
        }
        CopyFormat::Csv => {
            for (i, c) in cells.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(delimiter);
                }
                match c {
                    None => out.extend_from_slice(spec.null.as_bytes()),
                    Some(v) => quote_csv(spec, &String::from_utf8_lossy(v), &mut out),
                }
            }
            out.push(b'\n');
        }
    }
    out
}

/// Text format: fields split at unescaped delimiters, `\` escapes decoded, the NULL marker.
fn split_text(spec: &CopyOut, line: &str) -> Option<Cells> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let mut cells = Vec::new();
    let mut raw = String::new();
    let mut value: Vec<u8> = Vec::new();
    let mut chars = line.chars().peekable();
    let end_field = |raw: &mut String, value: &mut Vec<u8>, cells: &mut Vec<_>| {
        cells.push((*raw != spec.null).then(|| std::mem::take(value)));
        raw.clear();
        value.clear();
    };
    while let Some(c) = chars.next() {
        if c == spec.delimiter {
            end_field(&mut raw, &mut value, &mut cells);
            continue;
        }
        raw.push(c);
        if c != '\\' {
            let mut b = [0; 4];
            value.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            continue;
        }
        let e = chars.next()?;
        raw.push(e);
        match e {
            'b' => value.push(8),
            'f' => value.push(12),
            'n' => value.push(b'\n'),
            'r' => value.push(b'\r'),
            't' => value.push(b'\t'),
            'v' => value.push(11),
            '0'..='7' => {
                let mut n = e.to_digit(8)?;
                for _ in 0..2 {
                    match chars.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            n = n * 8 + d;
                            raw.extend(chars.next());
                        }
                        None => break,
                    }
                }
                value.push(n as u8);
            }
            'x' => {
                let mut n = 0;
                let mut any = false;
                for _ in 0..2 {
                    match chars.peek().and_then(|d| d.to_digit(16)) {
                        Some(d) => {
                            n = n * 16 + d;
                            any = true;
                            raw.extend(chars.next());
                        }
                        None => break,
                    }
                }
                if !any {
                    value.push(b'x');
                } else {
                    value.push(n as u8);
                }
            }
            other => {
                let mut b = [0; 4];
                value.extend_from_slice(other.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    end_field(&mut raw, &mut value, &mut cells);
    Some(cells)
}

/// Text format escaping, as the server's `CopyAttributeOutText` does.
fn escape_text(spec: &CopyOut, value: &str, out: &mut Vec<u8>) {
    for c in value.chars() {
        match c {
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{b}' => out.extend_from_slice(b"\\v"),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if c == spec.delimiter => {
                out.push(b'\\');
                out.extend(c.to_string().bytes());
            }
            c => out.extend(c.to_string().bytes()),
        }
    }
}

/// CSV: quoted fields (with the escape character before a quote), the NULL marker unquoted.
fn split_csv(spec: &CopyOut, line: &str) -> Option<Cells> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut cells = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut value = String::new();
        let mut quoted = false;
        let mut in_quotes = false;
        while let Some(&c) = chars.peek() {
            if in_quotes {
                chars.next();
                if c == spec.escape
                    && chars.peek() == Some(&spec.quote)
                    && spec.escape != spec.quote
                {
                    value.extend(chars.next());
                } else if c == spec.quote {
                    if spec.escape == spec.quote && chars.peek() == Some(&spec.quote) {
                        value.extend(chars.next());
                    } else {
                        in_quotes = false;
                    }
                } else {
                    value.push(c);
                }
            } else if c == spec.delimiter {
                break;
            } else if c == spec.quote {
                chars.next();
                quoted = true;
                in_quotes = true;
            } else {
                chars.next();
                value.push(c);
            }
        }
        if in_quotes {
            return None;
        }
        let null = !quoted && value == spec.null;
        cells.push((!null).then(|| value.into_bytes()));
        if chars.next().is_none() {
            return Some(cells);
        }
    }
}

/// CSV quoting, as the server's `CopyAttributeOutCSV` does (quoted when needed).
fn quote_csv(spec: &CopyOut, value: &str, out: &mut Vec<u8>) {
    let needs = value.is_empty() && spec.null.is_empty()
        || value == spec.null
        || value.starts_with("\\.")
        || value
            .chars()
            .any(|c| c == spec.delimiter || c == spec.quote || c == '\n' || c == '\r');
    if !needs {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    out.extend(spec.quote.to_string().bytes());
    for c in value.chars() {
        if c == spec.quote || c == spec.escape {
            out.extend(spec.escape.to_string().bytes());
        }
        out.extend(c.to_string().bytes());
    }
    out.extend(spec.quote.to_string().bytes());
}

/// Binary format: the header (first line only), then a field count and length-prefixed
/// fields; the trailer (-1) is not a row.
fn split_binary(line: &[u8], first: bool) -> Option<(Vec<u8>, Cells)> {
    let mut at = 0;
    if first {
        if !line.starts_with(SIGNATURE) || line.len() < SIGNATURE.len() + 8 {
            return None;
        }
        let ext = u32::from_be_bytes(
            line[SIGNATURE.len() + 4..SIGNATURE.len() + 8]
                .try_into()
                .ok()?,
        );
        at = SIGNATURE.len() + 8 + usize::try_from(ext).ok()?;
    }
    let prefix = line.get(..at)?.to_vec();
    let n = i16::from_be_bytes(line.get(at..at + 2)?.try_into().ok()?);
    at += 2;
    if n < 0 {
        return None;
    }
    let mut cells = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let len = i32::from_be_bytes(line.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        if len < 0 {
            cells.push(None);
            continue;
        }
        let len = usize::try_from(len).ok()?;
        cells.push(Some(line.get(at..at + len)?.to_vec()));
        at += len;
    }
    (at == line.len()).then_some((prefix, cells))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(format: CopyFormat) -> CopyOut {
        let csv = format == CopyFormat::Csv;
        CopyOut {
            select: String::new(),
            format,
            delimiter: if csv { ',' } else { '\t' },
            null: if csv { String::new() } else { "\\N".into() },
            quote: '"',
            escape: '"',
            header: false,
        }
    }

    fn round_trip(spec: &CopyOut, line: &[u8], first: bool) {
        let (prefix, cells) = split(spec, line, first).unwrap();
        let refs: Vec<Option<&[u8]>> = cells.iter().map(|c| c.as_deref()).collect();
        assert_eq!(
            join(spec, &prefix, &refs),
            line,
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }

    #[test]
    fn text_lines_split_and_join_as_the_server_writes_them() {
        let s = spec(CopyFormat::Text);
        let (_, cells) = split(&s, b"1\ta\\tb\\\\c\t\\N\t\\x41\n", false).unwrap();
        assert_eq!(
            cells,
            [
                Some(b"1".to_vec()),
                Some(b"a\tb\\c".to_vec()),
                None,
                Some(b"A".to_vec())
            ]
        );
        round_trip(&s, b"1\ta\\tb\\\\c\t\\N\t{\"a\": 1}\n", false);
        let s = spec(CopyFormat::Csv);
        let (_, cells) = split(&s, b"1,\"a,\"\"b\",,\"\"\n", false).unwrap();
        assert_eq!(
            cells,
            [
                Some(b"1".to_vec()),
                Some(b"a,\"b".to_vec()),
                None,
                Some(Vec::new())
            ]
        );
        round_trip(&s, b"1,\"a,\"\"b\",,\"\"\n", false);
    }

    #[test]
    fn binary_lines_keep_their_header_and_the_trailer_is_not_a_row() {
        let s = spec(CopyFormat::Binary);
        let mut line = SIGNATURE.to_vec();
        line.extend_from_slice(&0i32.to_be_bytes());
        line.extend_from_slice(&0u32.to_be_bytes());
        line.extend_from_slice(&2i16.to_be_bytes());
        line.extend_from_slice(&8i32.to_be_bytes());
        line.extend_from_slice(&4111111111111111i64.to_be_bytes());
        line.extend_from_slice(&(-1i32).to_be_bytes());
        round_trip(&s, &line, true);
        assert!(split(&s, &(-1i16).to_be_bytes(), false).is_none());
    }
}
