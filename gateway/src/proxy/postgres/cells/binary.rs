//! PostgreSQL's binary formats (the `*send` / `*recv` functions), decoded to the text form
//! policies see and encoded back from a policy's edit: integers, floats, numeric, money,
//! bytea, uuid, jsonb, arrays of any of these (any number of dimensions) and records, whose
//! fields carry their own type OIDs.

use super::literal::{self, ArrayLit, Node};
use super::{Applied, Kind, kind, type_name};

/// The text form of a binary value, or `None` when the gateway cannot read it.
pub fn show(oid: u32, raw: &[u8]) -> Option<String> {
    Some(match kind(oid) {
        Kind::Text => String::from_utf8_lossy(raw).into_owned(),
        Kind::Jsonb => String::from_utf8_lossy(raw.strip_prefix(&[1])?).into_owned(),
        Kind::Int(2) => i16::from_be_bytes(raw.try_into().ok()?).to_string(),
        Kind::Int(4) => i32::from_be_bytes(raw.try_into().ok()?).to_string(),
        Kind::Int(_) => i64::from_be_bytes(raw.try_into().ok()?).to_string(),
        Kind::Oid => u32::from_be_bytes(raw.try_into().ok()?).to_string(),
        Kind::Float(4) => float(f64::from(f32::from_be_bytes(raw.try_into().ok()?))),
        Kind::Float(_) => float(f64::from_be_bytes(raw.try_into().ok()?)),
        Kind::Numeric => numeric_text(raw)?,
        Kind::Money => {
            let cents = i64::from_be_bytes(raw.try_into().ok()?);
            let sign = if cents < 0 { "-" } else { "" };
            let c = cents.unsigned_abs();
            format!("{sign}{}.{:02}", c / 100, c % 100)
        }
        Kind::Bytea => match std::str::from_utf8(raw) {
            Ok(s) => s.to_string(),
            Err(_) => format!("\\x{}", super::encode_hex(raw)),
        },
        Kind::Uuid => {
            let hex = super::encode_hex(raw);
            (raw.len() == 16).then_some(())?;
            literal::uuid(&hex)?
        }
        Kind::Fixed if oid == 16 => if raw.first()? == &0 { "f" } else { "t" }.to_string(),
        Kind::Fixed => return None,
        Kind::Array(_) => {
            let a = Array::read(raw)?;
            // The array names its element type: read by that (a table's row type, say).
            let elem = a.flags_elem.1;
            let items: Vec<Node> = a
                .elems
                .iter()
                .map(|e| match e {
                    None => Node::Null,
                    Some(b) => Node::Item(placeholder(elem, b)),
                })
                .collect();
            literal::write_array(&a.literal(items))
        }
        Kind::Record => {
            let r = Record::read(raw)?;
            let fields: Vec<Option<String>> = r
                .fields
                .iter()
                .map(|(oid, v)| v.as_deref().map(|b| placeholder(*oid, b)))
                .collect();
            literal::write_record(&fields)
        }
        Kind::Unknown => match structured(raw) {
            Some(as_oid) => show(as_oid, raw)?,
            None => std::str::from_utf8(raw).ok()?.to_string(),
        },
    })
}

/// The OID to read a binary value of an unknown type as, when its bytes are a well-formed
/// record (a table's row type: `SELECT c FROM cards c`) or array (an array of those): both
/// name their fields' and elements' types. `None`: neither.
pub fn structured(raw: &[u8]) -> Option<u32> {
    if Record::read(raw).is_some_and(|r| !r.fields.is_empty() && r.fields.iter().all(|f| f.0 != 0))
    {
        return Some(2249);
    }
    Array::read(raw)
        .filter(|a| a.flags_elem.1 != 0 && (0..=1).contains(&a.flags_elem.0))
        .map(|_| 2287)
}

/// An element or field as text: its value, or a marker naming its type when the gateway
/// cannot read it (an edit that leaves the marker keeps the value).
fn placeholder(oid: u32, raw: &[u8]) -> String {
    show(oid, raw).unwrap_or_else(|| format!("<{}>", type_name(oid)))
}

/// Floats as PostgreSQL writes them (shortest exact form; `Infinity`, `NaN`).
fn float(f: f64) -> String {
    match f {
        f if f.is_nan() => "NaN".into(),
        f if f == f64::INFINITY => "Infinity".into(),
        f if f == f64::NEG_INFINITY => "-Infinity".into(),
        f => f.to_string(),
    }
}

/// The binary encoding of a scalar's text (already checked by `literal::valid_scalar`).
pub fn encode_scalar(oid: u32, text: &str) -> Result<Vec<u8>, String> {
    let invalid = || format!("the masked value is not a valid {}", type_name(oid));
    let t = text.trim();
    Ok(match kind(oid) {
        Kind::Text | Kind::Bytea | Kind::Unknown => text.as_bytes().to_vec(),
        Kind::Jsonb => [&[1u8][..], text.as_bytes()].concat(),
        Kind::Int(2) => t
            .parse::<i16>()
            .map_err(|_| invalid())?
            .to_be_bytes()
            .to_vec(),
        Kind::Int(4) => t
            .parse::<i32>()
            .map_err(|_| invalid())?
            .to_be_bytes()
            .to_vec(),
        Kind::Int(_) => t
            .parse::<i64>()
            .map_err(|_| invalid())?
            .to_be_bytes()
            .to_vec(),
        Kind::Oid => t
            .parse::<u32>()
            .map_err(|_| invalid())?
            .to_be_bytes()
            .to_vec(),
        Kind::Float(4) => parse_float(t)
            .map(|f| (f as f32).to_be_bytes().to_vec())
            .ok_or_else(invalid)?,
        Kind::Float(_) => parse_float(t)
            .map(|f| f.to_be_bytes().to_vec())
            .ok_or_else(invalid)?,
        Kind::Numeric => numeric_bytes(t).ok_or_else(invalid)?,
        Kind::Money => {
            let d = literal::decimal(&t.replace(['$', ','], "")).ok_or_else(invalid)?;
            let (int, frac) = d.split_once('.').unwrap_or((&d, ""));
            let frac = format!("{frac:0<2}");
            let cents: i64 = format!("{int}{}", &frac[..2])
                .parse()
                .map_err(|_| invalid())?;
            cents.to_be_bytes().to_vec()
        }
        Kind::Uuid => {
            let hex = literal::uuid(t).ok_or_else(invalid)?.replace('-', "");
            (0..16)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| invalid()))
                .collect::<Result<_, _>>()?
        }
        Kind::Fixed | Kind::Array(_) | Kind::Record => return Err(invalid()),
    })
}

fn parse_float(t: &str) -> Option<f64> {
    match t.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => t.parse().ok(),
    }
}

/// A policy's edit of a binary array or record, element by element: an element whose text did
/// not change keeps its bytes; an edited one is checked and encoded for its own type.
pub fn apply(oid: u32, raw: &[u8], shown: Option<&str>, edited: &str) -> Result<Applied, String> {
    let unreadable = || format!("the {} value could not be read", type_name(oid));
    let shown = shown.ok_or_else(unreadable)?;
    if let Kind::Array(_) = kind(oid) {
        let mut a = Array::read(raw).ok_or_else(unreadable)?;
        let elem = a.flags_elem.1;
        let (before, after) = (literal::parse_array(shown)?, literal::parse_array(edited)?);
        let (before, after) = (literal::leaves(&before.root), literal::leaves(&after.root));
        if before.len() != after.len() || before.len() != a.elems.len() {
            return Err("the edit changed the array's shape".into());
        }
        for (i, e) in a.elems.iter_mut().enumerate() {
            *e = element(elem, e.take(), before[i], after[i])?;
        }
        return Ok(Applied::Value(Some(a.write())));
    }
    let mut r = Record::read(raw).ok_or_else(unreadable)?;
    let (before, after) = (
        literal::parse_record(shown)?,
        literal::parse_record(edited)?,
    );
    if before.len() != after.len() || before.len() != r.fields.len() {
        return Err("the edit changed the record's fields".into());
    }
    for (i, (oid, v)) in r.fields.iter_mut().enumerate() {
        *v = element(*oid, v.take(), before[i].as_deref(), after[i].as_deref())?;
    }
    Ok(Applied::Value(Some(r.write())))
}

fn element(
    oid: u32,
    raw: Option<Vec<u8>>,
    before: Option<&str>,
    after: Option<&str>,
) -> Result<Option<Vec<u8>>, String> {
    if before == after {
        return Ok(raw);
    }
    let original = raw.clone().unwrap_or_default();
    // What the gateway could read of this element (the policy saw a marker when nothing).
    let seen = raw.as_ref().and_then(|b| show(oid, b));
    Ok(
        match super::apply(oid, 1, &original, seen.as_deref(), after)? {
            Applied::Keep => raw,
            Applied::Value(v) => v,
        },
    )
}

/// A binary array: header, dimensions, and elements in storage order.
struct Array {
    flags_elem: (i32, u32),
    dims: Vec<(i32, i32)>,
    elems: Vec<Option<Vec<u8>>>,
}

impl Array {
    fn read(raw: &[u8]) -> Option<Array> {
        let mut r = Reader(raw);
        let ndim = usize::try_from(r.i32()?).ok()?;
        let flags = r.i32()?;
        let elem = r.u32()?;
        if ndim > 6 {
            return None;
        }
        let mut dims = Vec::with_capacity(ndim);
        let mut count: usize = if ndim == 0 { 0 } else { 1 };
        for _ in 0..ndim {
            let (len, lbound) = (r.i32()?, r.i32()?);
            count = count.checked_mul(usize::try_from(len).ok()?)?;
            dims.push((len, lbound));
        }
        let mut elems = Vec::with_capacity(count.min(raw.len() / 4));
        for _ in 0..count {
            elems.push(r.value()?);
        }
        r.0.is_empty().then_some(Array {
            flags_elem: (flags, elem),
            dims,
            elems,
        })
    }

    /// The array literal of `items` (in storage order) with this array's dimensions.
    fn literal(&self, items: Vec<Node>) -> ArrayLit {
        let prefix = if self.dims.iter().any(|&(_, lb)| lb != 1) {
            let d: String = self
                .dims
                .iter()
                .map(|&(len, lb)| format!("[{lb}:{}]", lb + len - 1))
                .collect();
            format!("{d}=")
        } else {
            String::new()
        };
        let lens: Vec<usize> = self
            .dims
            .iter()
            .map(|&(len, _)| usize::try_from(len).unwrap_or(0))
            .collect();
        let mut items = items.into_iter();
        ArrayLit {
            prefix,
            root: nest(&lens, &mut items),
        }
    }

    fn write(&self) -> Vec<u8> {
        let has_null = self.elems.iter().any(Option::is_none);
        let mut out = Vec::new();
        out.extend_from_slice(&(self.dims.len() as i32).to_be_bytes());
        let flags = (self.flags_elem.0 & !1) | i32::from(has_null);
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&self.flags_elem.1.to_be_bytes());
        for (len, lb) in &self.dims {
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&lb.to_be_bytes());
        }
        for e in &self.elems {
            put_value(&mut out, e.as_deref());
        }
        out
    }
}

fn nest(lens: &[usize], items: &mut impl Iterator<Item = Node>) -> Vec<Node> {
    match lens {
        [] => Vec::new(),
        [n] => items.take(*n).collect(),
        [n, rest @ ..] => (0..*n).map(|_| Node::List(nest(rest, items))).collect(),
    }
}

/// A binary record: each field's type OID and value.
struct Record {
    fields: Vec<(u32, Option<Vec<u8>>)>,
}

impl Record {
    fn read(raw: &[u8]) -> Option<Record> {
        let mut r = Reader(raw);
        let n = usize::try_from(r.i32()?).ok()?;
        let mut fields = Vec::with_capacity(n.min(raw.len() / 8));
        for _ in 0..n {
            let oid = r.u32()?;
            fields.push((oid, r.value()?));
        }
        r.0.is_empty().then_some(Record { fields })
    }

    fn write(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.fields.len() as i32).to_be_bytes());
        for (oid, v) in &self.fields {
            out.extend_from_slice(&oid.to_be_bytes());
            put_value(&mut out, v.as_deref());
        }
        out
    }
}

fn put_value(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(b) => {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take::<4>().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_be_bytes)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take::<2>().map(i16::from_be_bytes)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take::<2>().map(u16::from_be_bytes)
    }
    /// A length-prefixed value (`-1`: NULL).
    fn value(&mut self) -> Option<Option<Vec<u8>>> {
        let len = self.i32()?;
        if len < 0 {
            return Some(None);
        }
        let len = usize::try_from(len).ok()?;
        if self.0.len() < len {
            return None;
        }
        let (v, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(Some(v.to_vec()))
    }
}

const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

/// A binary numeric (base-10000 digits, weight, sign, display scale) as text.
fn numeric_text(raw: &[u8]) -> Option<String> {
    let mut r = Reader(raw);
    let (ndigits, weight, sign, dscale) = (r.i16()?, r.i16()?, r.u16()?, r.u16()?);
    match sign {
        NUMERIC_NAN => return Some("NaN".into()),
        NUMERIC_PINF => return Some("Infinity".into()),
        NUMERIC_NINF => return Some("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<i16> = (0..ndigits).map(|_| r.i16()).collect::<Option<_>>()?;
    if !r.0.is_empty() || digits.iter().any(|d| !(0..10000).contains(d)) {
        return None;
    }
    let digit = |i: i32| -> i16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == NUMERIC_NEG {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=i32::from(weight) {
            if i == 0 {
                out.push_str(&digit(i).to_string());
            } else {
                out.push_str(&format!("{:04}", digit(i)));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut i = i32::from(weight) + 1;
        while frac.len() < usize::from(dscale) {
            frac.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        frac.truncate(usize::from(dscale));
        out.push('.');
        out.push_str(&frac);
    }
    Some(out)
}

/// A decimal text as a binary numeric.
fn numeric_bytes(text: &str) -> Option<Vec<u8>> {
    let d = literal::decimal(text)?;
    let mut out = Vec::new();
    let header = |out: &mut Vec<u8>, n: i16, w: i16, s: u16, scale: u16| {
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&w.to_be_bytes());
        out.extend_from_slice(&s.to_be_bytes());
        out.extend_from_slice(&scale.to_be_bytes());
    };
    match d.as_str() {
        "NaN" => header(&mut out, 0, 0, NUMERIC_NAN, 0),
        "Infinity" => header(&mut out, 0, 0, NUMERIC_PINF, 0),
        "-Infinity" => header(&mut out, 0, 0, NUMERIC_NINF, 0),
        _ => {
            let (sign, body) = match d.strip_prefix('-') {
                Some(b) => (NUMERIC_NEG, b),
                None => (0, d.as_str()),
            };
            let (int, frac) = body.split_once('.').unwrap_or((body, ""));
            let dscale = u16::try_from(frac.len()).ok()?;
            let int = int.trim_start_matches('0');
            let pad_int = format!("{}{int}", "0".repeat((4 - int.len() % 4) % 4));
            let pad_frac = format!("{frac}{}", "0".repeat((4 - frac.len() % 4) % 4));
            let mut groups: Vec<i16> = pad_int
                .as_bytes()
                .chunks(4)
                .chain(pad_frac.as_bytes().chunks(4))
                .map(|c| std::str::from_utf8(c).ok()?.parse().ok())
                .collect::<Option<_>>()?;
            let mut weight = i16::try_from(pad_int.len() / 4).ok()? - 1;
            while groups.first() == Some(&0) {
                groups.remove(0);
                weight -= 1;
            }
            while groups.last() == Some(&0) {
                groups.pop();
            }
            let (sign, weight) = if groups.is_empty() {
                (0, 0)
            } else {
                (sign, weight)
            };
            header(
                &mut out,
                i16::try_from(groups.len()).ok()?,
                weight,
                sign,
                dscale,
            );
            for g in groups {
                out.extend_from_slice(&g.to_be_bytes());
            }
        }
    }
    Some(out)
}
