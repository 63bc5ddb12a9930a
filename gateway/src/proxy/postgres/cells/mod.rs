//! One result cell, as masking policies see it and as the client gets it back.
//!
//! Policies see every cell as PostgreSQL's text form of its value, whatever format the client
//! asked for: a binary int8, numeric, jsonb, array or record is decoded here first (a card
//! number stored as a bigint, or inside a `text[]`, is then as visible as one in a `text`).
//! A policy's edit is turned back into a value of the cell's type in the client's format, so a
//! masked value is still a valid value of its type (THREATS.md invariant 5):
//!
//! - NULL is always accepted.
//! - A *digit mask* — the original text with some digits replaced by `*`, which is what card
//!   masking produces — is made valid for the type: in numbers (int2/4/8, oid, numeric,
//!   float4/8, money, and number leaves of json, arrays and records) each `*` becomes `0`, so
//!   `4111111111111111` masks to `1111` (all but the last four digits zeroed); in text it stays.
//!   On types that cannot hold a card number (bool, uuid, dates, times, intervals, network
//!   addresses) a digit mask is a look-alike match and is ignored: the value is kept.
//! - Any other edit must be a valid value of the type (checked for text, numbers, bytea,
//!   uuid, json and jsonb, and the structure of arrays and records); otherwise the whole result
//!   is refused with a message naming the column, never sent half-masked.

mod binary;
mod literal;

use std::borrow::Cow;

/// How the gateway reads and writes a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text in both formats: text, varchar, bpchar, name, "char", unknown, json, xml.
    Text,
    /// Like `Text`, but the binary form is a version byte (1) and the text.
    Jsonb,
    /// A signed integer of this many bytes (2, 4, 8).
    Int(u8),
    Oid,
    /// A float of this many bytes (4, 8).
    Float(u8),
    Numeric,
    /// Cents in an int8 (binary); the text form is locale-dependent and left as text.
    Money,
    Bytea,
    Uuid,
    /// A type that cannot hold a card number (bool, dates, times, intervals, addresses).
    Fixed,
    /// An array of the element type.
    Array(u32),
    /// A composite value (`record` or a table's row type).
    Record,
    /// A type the gateway does not know (an extension's, a domain, an enum).
    Unknown,
}

/// The kind of a type OID.
pub fn kind(oid: u32) -> Kind {
    match oid {
        18 | 19 | 25 | 114 | 142 | 705 | 1042 | 1043 => Kind::Text,
        3802 => Kind::Jsonb,
        20 => Kind::Int(8),
        21 => Kind::Int(2),
        23 => Kind::Int(4),
        26 => Kind::Oid,
        700 => Kind::Float(4),
        701 => Kind::Float(8),
        1700 => Kind::Numeric,
        790 => Kind::Money,
        17 => Kind::Bytea,
        2950 => Kind::Uuid,
        16 | 650 | 774 | 829 | 869 | 1082 | 1083 | 1114 | 1184 | 1186 | 1266 | 1560 | 1562 => {
            Kind::Fixed
        }
        2249 => Kind::Record,
        other => match element(other) {
            Some(e) => Kind::Array(e),
            None => Kind::Unknown,
        },
    }
}

/// The element type of an array type OID the gateway knows.
fn element(oid: u32) -> Option<u32> {
    Some(match oid {
        1000 => 16,
        1001 => 17,
        1002 => 18,
        1003 => 19,
        1016 => 20,
        1005 => 21,
        1007 => 23,
        1009 => 25,
        1028 => 26,
        199 => 114,
        143 => 142,
        1021 => 700,
        1022 => 701,
        791 => 790,
        1014 => 1042,
        1015 => 1043,
        1182 => 1082,
        1183 => 1083,
        1115 => 1114,
        1185 => 1184,
        1187 => 1186,
        1270 => 1266,
        1231 => 1700,
        2951 => 2950,
        3807 => 3802,
        1040 => 829,
        1041 => 869,
        651 => 650,
        775 => 774,
        2287 => 2249,
        _ => return None,
    })
}

/// The type name policies see for a type OID (`text`, `int8`, `text[]`, ...).
pub fn type_name(oid: u32) -> String {
    let name = match oid {
        16 => "bool",
        17 => "bytea",
        18 => "char",
        19 => "name",
        20 => "int8",
        21 => "int2",
        23 => "int4",
        25 => "text",
        26 => "oid",
        114 => "json",
        142 => "xml",
        650 => "cidr",
        700 => "float4",
        701 => "float8",
        705 => "unknown",
        774 => "macaddr8",
        790 => "money",
        829 => "macaddr",
        869 => "inet",
        1042 => "bpchar",
        1043 => "varchar",
        1082 => "date",
        1083 => "time",
        1114 => "timestamp",
        1184 => "timestamptz",
        1186 => "interval",
        1266 => "timetz",
        1560 => "bit",
        1562 => "varbit",
        1700 => "numeric",
        2249 => "record",
        2950 => "uuid",
        3802 => "jsonb",
        other => {
            return match element(other) {
                Some(e) => format!("{}[]", type_name(e)),
                None => format!("oid:{other}"),
            };
        }
    };
    name.to_string()
}

/// The text a policy sees for a non-NULL cell of type `oid` in `format` (0 text, 1 binary);
/// `None` when the gateway cannot read it (a binary value of a type it cannot decode that is
/// not UTF-8, or a malformed one).
pub fn show(oid: u32, format: i16, raw: &[u8]) -> Option<String> {
    if format == 0 {
        let text = String::from_utf8_lossy(raw);
        return Some(match kind(oid) {
            // Text-format bytea is `\x` and hex (or the escape format): show the bytes.
            Kind::Bytea => bytea_text(raw),
            // `4.111111111111111e+15` is a card number a scanner would not see; money is
            // written with the locale's symbol and separators (`$4,111,...`): show plain
            // digits, which are valid input for both types.
            Kind::Float(_) => match text.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => f.to_string(),
                _ => text.into_owned(),
            },
            Kind::Money => text
                .chars()
                .filter(|c| c.is_ascii_digit() || matches!(c, '.' | '-'))
                .collect(),
            _ => text.into_owned(),
        });
    }
    binary::show(oid, raw)
}

/// Whether a value of this type may be left unread: only one that cannot hold a card number.
/// Any other value the gateway cannot read (malformed, or the binary form of a type it does
/// not know that is neither text nor a composite or array) refuses the result: what cannot be
/// read cannot be masked.
pub fn may_be_unread(oid: u32) -> bool {
    kind(oid) == Kind::Fixed
}

/// Bytes shown as text when they are UTF-8 (a card number stored as bytes), else as `\x` hex.
fn bytea_text(raw: &[u8]) -> String {
    let bytes: Cow<'_, [u8]> = match raw.strip_prefix(b"\\x") {
        Some(hex) => match decode_hex(hex) {
            Some(b) => Cow::Owned(b),
            None => Cow::Borrowed(raw),
        },
        None => Cow::Owned(unescape_bytea(raw)),
    };
    match std::str::from_utf8(&bytes) {
        Ok(s) => s.to_string(),
        Err(_) => format!("\\x{}", encode_hex(&bytes)),
    }
}

/// bytea's escape output format (`bytea_output = escape`): `\\` and `\ooo` octal.
fn unescape_bytea(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match (raw[i], raw.get(i + 1..i + 4)) {
            (b'\\', Some(d)) if d.iter().all(|b| (b'0'..=b'7').contains(b)) => {
                out.push(d.iter().fold(0u8, |n, b| n.wrapping_mul(8) + (b - b'0')));
                i += 4;
            }
            (b'\\', _) if raw.get(i + 1) == Some(&b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The bytes a policy's edit of a bytea stands for: text shown as text is its UTF-8; text
/// shown as `\x` hex (bytes that are not UTF-8) is hex again, masked digits as zeros.
fn bytea_bytes(shown: Option<&str>, edited: &str) -> Result<Vec<u8>, String> {
    match (
        shown.is_some_and(|s| s.starts_with("\\x")),
        edited.strip_prefix("\\x"),
    ) {
        (true, Some(hex)) => decode_hex(hex.replace('*', "0").as_bytes())
            .ok_or_else(|| "the masked value is not valid bytea hex".to_string()),
        _ => Ok(edited.as_bytes().to_vec()),
    }
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks(2)
        .map(|p| {
            let s = std::str::from_utf8(p).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What becomes of a cell a policy edited.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Send these bytes (`None`: NULL).
    Value(Option<Vec<u8>>),
    /// Keep the original value (a digit mask on a type that cannot hold a card number, or an
    /// edit that changed nothing).
    Keep,
}

/// Turn a policy's edit of a cell into the bytes the client gets, valid for the cell's type
/// in its format. `raw` is the cell as the server sent it, `shown` what the policy saw. An
/// error says why the edit cannot stand.
pub fn apply(
    oid: u32,
    format: i16,
    raw: &[u8],
    shown: Option<&str>,
    edited: Option<&str>,
) -> Result<Applied, String> {
    let Some(edited) = edited else {
        return Ok(Applied::Value(None));
    };
    if shown == Some(edited) {
        return Ok(Applied::Keep);
    }
    let digit_mask = shown.is_some_and(|s| is_digit_mask(s, edited));
    let kind = kind(oid);
    match kind {
        // A uuid, date or address cannot be a card number: the detector's match was a
        // look-alike (a nil UUID is Luhn-valid).
        Kind::Fixed | Kind::Uuid if digit_mask => return Ok(Applied::Keep),
        Kind::Array(_) | Kind::Record if format == 0 => {
            return literal::apply_text(oid, shown.unwrap_or_default(), edited)
                .map(|t| Applied::Value(Some(t.into_bytes())));
        }
        Kind::Array(_) | Kind::Record => return binary::apply(oid, raw, shown, edited),
        // A composite or array of a type the gateway does not know by OID (a table's row
        // type, an array of them): the binary form names its fields' and elements' types.
        Kind::Unknown if format != 0 => {
            if let Some(as_oid) = binary::structured(raw) {
                return binary::apply(as_oid, raw, shown, edited);
            }
        }
        Kind::Unknown if format != 0 && shown.is_none() => {
            return Err(format!(
                "a {} value the gateway cannot read can only be set to NULL",
                type_name(oid)
            ));
        }
        _ => {}
    }
    if kind == Kind::Bytea {
        let bytes = bytea_bytes(shown, edited)?;
        return Ok(Applied::Value(Some(match format {
            0 => format!("\\x{}", encode_hex(&bytes)).into_bytes(),
            _ => bytes,
        })));
    }
    let text = literal::valid_scalar(oid, shown, edited, digit_mask)?;
    let bytes = if format == 0 {
        text.into_bytes()
    } else {
        binary::encode_scalar(oid, &text)?
    };
    Ok(Applied::Value(Some(bytes)))
}

/// Whether `edited` is `original` with some digits (of any script) replaced by `*`.
pub fn is_digit_mask(original: &str, edited: &str) -> bool {
    let mut o = original.chars();
    let mut e = edited.chars();
    loop {
        match (o.next(), e.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some('*')) if a.is_numeric() => {}
            _ => return false,
        }
    }
}

/// A digit-masked text of unknown type (a COPY line without types, a range, an enum...) made
/// valid for whatever type it has: a run of masked digits that was a whole field (`4111...` in a
/// bigint, numeric or text column) gets zeros (`0000000000001111`), and one that stands alone
/// inside a field (a json number, an array element, a record field) gets the zeroed number
/// without leading zeros (`1111`), valid in json too. Masked digits joined to other text (a
/// grouped `****-****-****-1111`, a string) stay `*`, except in a bytea's hex, where they are
/// zeros too.
pub fn zero_numbers(original: &str, masked: &str) -> String {
    if !is_digit_mask(original, masked) {
        return masked.to_string();
    }
    let o: Vec<char> = original.chars().collect();
    let m: Vec<char> = masked.chars().collect();
    let field_end = |c: Option<&char>| c.is_none_or(|c| matches!(c, '\t' | ',' | '\n' | '\r'));
    let token_end = |c: Option<&char>| {
        field_end(c)
            || c.is_some_and(|c| matches!(c, ':' | '[' | ']' | '{' | '}' | '(' | ')' | ' '))
    };
    let mut out = String::with_capacity(masked.len());
    let mut i = 0;
    while i < m.len() {
        if !(m[i] == '*' || o[i].is_ascii_digit()) {
            out.push(m[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < m.len() && (m[i] == '*' || o[i].is_ascii_digit()) {
            i += 1;
        }
        let run: String = m[start..i].iter().collect();
        let before = start.checked_sub(1).and_then(|p| o.get(p));
        let after = o.get(i);
        let digits = o[start..i].iter().all(char::is_ascii_digit);
        // The field this run is in: `\\x` hex (a bytea) takes zeros for masked hex digits.
        let field_start = o[..start]
            .iter()
            .rposition(|c| matches!(c, '\t' | ',' | '\n' | '\r' | '"'))
            .map_or(0, |p| p + 1);
        let hex = o[field_start..].starts_with(&['\\', '\\', 'x'])
            || o[field_start..].starts_with(&['\\', 'x']);
        if hex && digits {
            out.push_str(&run.replace('*', "0"));
        } else if !run.contains('*') || !digits || !token_end(before) || !token_end(after) {
            out.push_str(&run);
        } else if field_end(before) && field_end(after) {
            out.push_str(&run.replace('*', "0"));
        } else {
            let n = run.replace('*', "0");
            let n = n.trim_start_matches('0');
            out.push_str(if n.is_empty() { "0" } else { n });
        }
    }
    out
}

#[cfg(test)]
mod tests;
