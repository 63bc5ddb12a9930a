//! PostgreSQL's text forms, read and written: array literals (`{a,"b c",NULL}`), record
//! literals (`(a,"b c",)`), and checks that a policy's edit is a valid value of a scalar type,
//! with a digit mask (`*` for digits) made into a number where the type is one.

use super::{Applied, Kind, kind, type_name};

/// A parsed array literal: its optional dimension decoration (`[0:1]=`) and its elements.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayLit {
    pub prefix: String,
    pub root: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Item(String),
    List(Vec<Node>),
}

/// Read an array literal as PostgreSQL's `array_in` does (for the shapes `array_out` writes).
pub fn parse_array(text: &str) -> Result<ArrayLit, String> {
    let bad = || "not an array literal".to_string();
    let (prefix, body) = match text.find('=') {
        Some(i) if text.starts_with('[') => (text[..=i].to_string(), &text[i + 1..]),
        _ => (String::new(), text),
    };
    let chars: Vec<char> = body.chars().collect();
    let mut at = 0;
    skip_ws(&chars, &mut at);
    let root = list(&chars, &mut at).ok_or_else(bad)?;
    skip_ws(&chars, &mut at);
    if at != chars.len() {
        return Err(bad());
    }
    Ok(ArrayLit { prefix, root })
}

fn skip_ws(c: &[char], at: &mut usize) {
    while c.get(*at).is_some_and(|c| c.is_whitespace()) {
        *at += 1;
    }
}

/// `{ element, ... }` at `at`.
fn list(c: &[char], at: &mut usize) -> Option<Vec<Node>> {
    if c.get(*at) != Some(&'{') {
        return None;
    }
    *at += 1;
    let mut out = Vec::new();
    skip_ws(c, at);
    if c.get(*at) == Some(&'}') {
        *at += 1;
        return Some(out);
    }
    loop {
        skip_ws(c, at);
        let node = match c.get(*at)? {
            '{' => Node::List(list(c, at)?),
            '"' => {
                *at += 1;
                let mut s = String::new();
                loop {
                    match c.get(*at)? {
                        '"' => break,
                        '\\' => {
                            *at += 1;
                            s.push(*c.get(*at)?);
                        }
                        ch => s.push(*ch),
                    }
                    *at += 1;
                }
                *at += 1;
                Node::Item(s)
            }
            _ => {
                let mut s = String::new();
                let mut escaped_end = 0;
                while let Some(&ch) = c.get(*at) {
                    match ch {
                        ',' | '}' => break,
                        '\\' => {
                            *at += 1;
                            s.push(*c.get(*at)?);
                            escaped_end = s.len();
                        }
                        '{' | '"' => return None,
                        ch => s.push(ch),
                    }
                    *at += 1;
                }
                // Trailing blanks are not part of an unquoted element (unless escaped).
                let keep = s.trim_end().len().max(escaped_end);
                s.truncate(keep);
                if s.eq_ignore_ascii_case("NULL") && escaped_end == 0 {
                    Node::Null
                } else {
                    Node::Item(s)
                }
            }
        };
        out.push(node);
        skip_ws(c, at);
        match c.get(*at)? {
            ',' => *at += 1,
            '}' => {
                *at += 1;
                return Some(out);
            }
            _ => return None,
        }
    }
}

/// Write an array literal as `array_out` does.
pub fn write_array(a: &ArrayLit) -> String {
    let mut out = a.prefix.clone();
    write_list(&a.root, &mut out);
    out
}

fn write_list(nodes: &[Node], out: &mut String) {
    out.push('{');
    for (i, n) in nodes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match n {
            Node::Null => out.push_str("NULL"),
            Node::List(l) => write_list(l, out),
            Node::Item(s) => {
                let quote = s.is_empty()
                    || s.eq_ignore_ascii_case("NULL")
                    || s.chars()
                        .any(|c| matches!(c, '{' | '}' | '"' | ',' | '\\') || c.is_whitespace());
                if quote {
                    out.push('"');
                    for c in s.chars() {
                        if matches!(c, '"' | '\\') {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                } else {
                    out.push_str(s);
                }
            }
        }
    }
    out.push('}');
}

/// The elements of an array literal in storage order (the order of a binary array).
pub fn leaves(nodes: &[Node]) -> Vec<Option<&str>> {
    let mut out = Vec::new();
    fn walk<'a>(nodes: &'a [Node], out: &mut Vec<Option<&'a str>>) {
        for n in nodes {
            match n {
                Node::Null => out.push(None),
                Node::Item(s) => out.push(Some(s)),
                Node::List(l) => walk(l, out),
            }
        }
    }
    walk(nodes, &mut out);
    out
}

/// Read a record literal as `record_in` does: `None` fields are NULL.
pub fn parse_record(text: &str) -> Result<Vec<Option<String>>, String> {
    let bad = || "not a record literal".to_string();
    let t = text.trim();
    let inner = t
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(bad)?;
    let chars: Vec<char> = inner.chars().collect();
    let mut fields = Vec::new();
    let mut at = 0;
    loop {
        let mut s = String::new();
        let mut any = false;
        let mut quoted = false;
        while let Some(&ch) = chars.get(at) {
            match ch {
                ',' if !quoted => break,
                '"' if quoted && chars.get(at + 1) == Some(&'"') => {
                    s.push('"');
                    at += 1;
                }
                '"' => {
                    quoted = !quoted;
                    any = true;
                }
                '\\' => {
                    at += 1;
                    s.push(*chars.get(at).ok_or_else(bad)?);
                    any = true;
                }
                ch => {
                    s.push(ch);
                    any = true;
                }
            }
            at += 1;
        }
        if quoted {
            return Err(bad());
        }
        fields.push(any.then_some(s));
        if at >= chars.len() {
            return Ok(fields);
        }
        at += 1;
    }
}

/// Write a record literal as `record_out` does.
pub fn write_record(fields: &[Option<String>]) -> String {
    let mut out = String::from("(");
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let Some(s) = f else { continue };
        let quote = s.is_empty()
            || s.chars()
                .any(|c| matches!(c, '(' | ')' | '"' | ',' | '\\') || c.is_whitespace());
        if quote {
            out.push('"');
            for c in s.chars() {
                if matches!(c, '"' | '\\') {
                    out.push(c);
                }
                out.push(c);
            }
            out.push('"');
        } else {
            out.push_str(s);
        }
    }
    out.push(')');
    out
}

/// A policy's edit of a text-format array or record, element by element: each element edit is
/// checked against the element's type (a record's fields are untyped in text and checked as
/// text, with a digit mask of an all-digit field made a number).
pub fn apply_text(oid: u32, shown: &str, edited: &str) -> Result<String, String> {
    if let Kind::Array(elem) = kind(oid) {
        let before = parse_array(shown)?;
        let mut after = parse_array(edited)?;
        if !same_shape(&before.root, &after.root) || before.prefix != after.prefix {
            return Err("the edit changed the array's shape".into());
        }
        fix_nodes(elem, &before.root, &mut after.root)?;
        return Ok(write_array(&after));
    }
    let before = parse_record(shown)?;
    let mut after = parse_record(edited)?;
    if before.len() != after.len() {
        return Err("the edit changed the record's fields".into());
    }
    for (b, a) in before.iter().zip(after.iter_mut()) {
        *a = fix_leaf(0, b.as_deref(), a.take())?;
    }
    Ok(write_record(&after))
}

fn same_shape(a: &[Node], b: &[Node]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Node::List(x), Node::List(y)) => same_shape(x, y),
            (Node::List(_), _) | (_, Node::List(_)) => false,
            _ => true,
        })
}

fn fix_nodes(elem: u32, before: &[Node], after: &mut [Node]) -> Result<(), String> {
    for (b, a) in before.iter().zip(after.iter_mut()) {
        match (b, a) {
            (Node::List(b), Node::List(a)) => fix_nodes(elem, b, a)?,
            (b, a) => {
                let orig = match b {
                    Node::Item(s) => Some(s.as_str()),
                    _ => None,
                };
                let edit = match std::mem::replace(a, Node::Null) {
                    Node::Item(s) => Some(s),
                    _ => None,
                };
                *a = match fix_leaf(elem, orig, edit)? {
                    Some(s) => Node::Item(s),
                    None => Node::Null,
                };
            }
        }
    }
    Ok(())
}

/// One element of a text-format array or record (`oid` 0: a record field of unknown type).
fn fix_leaf(oid: u32, orig: Option<&str>, edit: Option<String>) -> Result<Option<String>, String> {
    let Some(edit) = edit else { return Ok(None) };
    let applied = super::apply(
        oid,
        0,
        orig.unwrap_or_default().as_bytes(),
        orig,
        Some(&edit),
    )?;
    Ok(match applied {
        Applied::Keep => orig.map(str::to_string),
        Applied::Value(v) => v.map(|b| String::from_utf8_lossy(&b).into_owned()),
    })
}

/// Check a policy's edit of a scalar against its type; a digit mask in a number becomes zeros.
pub fn valid_scalar(
    oid: u32,
    shown: Option<&str>,
    edited: &str,
    digit_mask: bool,
) -> Result<String, String> {
    let name = type_name(oid);
    let invalid = || format!("the masked value is not a valid {name}");
    let zeroed = || edited.replace('*', "0");
    match kind(oid) {
        Kind::Text if oid == 114 => json(edited).ok_or_else(invalid),
        Kind::Jsonb => json(edited).ok_or_else(invalid),
        Kind::Text | Kind::Bytea => Ok(edited.to_string()),
        Kind::Int(bytes) => {
            let n: i64 = zeroed().trim().parse().map_err(|_| invalid())?;
            let fits = match bytes {
                2 => i16::try_from(n).is_ok(),
                4 => i32::try_from(n).is_ok(),
                _ => true,
            };
            fits.then(|| n.to_string()).ok_or_else(invalid)
        }
        Kind::Oid => zeroed()
            .trim()
            .parse::<u32>()
            .map(|n| n.to_string())
            .map_err(|_| invalid()),
        Kind::Float(_) => {
            let z = zeroed();
            let t = z.trim();
            let special = ["NaN", "Infinity", "-Infinity", "inf", "-inf"];
            (special.iter().any(|s| t.eq_ignore_ascii_case(s)) || t.parse::<f64>().is_ok())
                .then(|| t.to_string())
                .ok_or_else(invalid)
        }
        Kind::Numeric => decimal(&zeroed()).ok_or_else(invalid),
        Kind::Money => Ok(zeroed()),
        Kind::Uuid => uuid(edited).ok_or_else(invalid),
        Kind::Fixed => Err(format!(
            "the gateway cannot check an edited {name} value; a policy may set it to NULL"
        )),
        Kind::Array(_) | Kind::Record => Err(invalid()),
        // A type the gateway does not know (a range, an enum, an extension's): masked
        // numbers in it become numbers (`[4111...,5500...)` masks to `[1111,5559)`).
        Kind::Unknown => Ok(match (digit_mask, shown) {
            (true, Some(s)) => super::zero_numbers(s, edited),
            _ => edited.to_string(),
        }),
    }
}

/// A decimal number in canonical form (no leading zeros), or `None`.
pub fn decimal(text: &str) -> Option<String> {
    let t = text.trim();
    for special in ["NaN", "Infinity", "-Infinity"] {
        if t.eq_ignore_ascii_case(special) {
            return Some(special.to_string());
        }
    }
    let (sign, rest) = match t.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) || (int.is_empty() && frac.is_empty()) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let negative_zero = int == "0" && frac.bytes().all(|b| b == b'0');
    let sign = if negative_zero { "" } else { sign };
    Some(match frac.is_empty() {
        true => format!("{sign}{int}"),
        false => format!("{sign}{int}.{frac}"),
    })
}

/// JSON with every masked number (`*` for digits) made a number, checked; `None` if invalid.
pub fn json(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '-' | '0'..='9' | '*' => {
                let mut token = String::from(c);
                while let Some(&n) = chars.peek() {
                    if !matches!(n, '0'..='9' | '*' | '.' | 'e' | 'E' | '+' | '-') {
                        break;
                    }
                    token.push(n);
                    chars.next();
                }
                if token.contains('*') {
                    let zeroed = token.replace('*', "0");
                    let (mantissa, exp) = match zeroed.find(['e', 'E']) {
                        Some(i) => zeroed.split_at(i),
                        None => (zeroed.as_str(), ""),
                    };
                    out.push_str(&decimal(mantissa)?);
                    out.push_str(exp);
                } else {
                    out.push_str(&token);
                }
            }
            c => out.push(c),
        }
    }
    serde_json::from_str::<serde::de::IgnoredAny>(&out).ok()?;
    Some(out)
}

/// A UUID in canonical form (lower-case, hyphenated), or `None`.
pub fn uuid(text: &str) -> Option<String> {
    let hex: String = text
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .chars()
        .filter(|&c| c != '-')
        .collect();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}
