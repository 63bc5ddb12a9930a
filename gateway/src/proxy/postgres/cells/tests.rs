//! Cells decoded for policies and re-encoded from their edits, valid for their types.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::literal::{self, Node};
use super::{Applied, apply, is_digit_mask, show};

const PAN: &str = "4111111111111111";
const MASKED: &str = "************1111";

fn value(a: Applied) -> Vec<u8> {
    match a {
        Applied::Value(Some(v)) => v,
        other => panic!("expected a value, got {other:?}"),
    }
}

/// Mask the way the SDK does: every digit but the last four of each PAN.
fn mask(text: &str) -> String {
    warden_pan::mask_pans(text).unwrap_or_else(|| text.to_string())
}

/// Binary array of `elem` with one dimension.
fn array(elem: u32, items: &[Option<&[u8]>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&i32::from(items.iter().any(Option::is_none)).to_be_bytes());
    out.extend_from_slice(&elem.to_be_bytes());
    out.extend_from_slice(&(items.len() as i32).to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    for i in items {
        match i {
            Some(b) => {
                out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                out.extend_from_slice(b);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    out
}

#[test]
fn binary_integers_mask_to_numbers() {
    let raw = 4111111111111111i64.to_be_bytes();
    let shown = show(20, 1, &raw).unwrap();
    assert_eq!(shown, PAN);
    let out = value(apply(20, 1, &raw, Some(&shown), Some(&mask(&shown))).unwrap());
    assert_eq!(i64::from_be_bytes(out.try_into().unwrap()), 1111);
    // Text format: the same rule, as text.
    let out = value(apply(20, 0, PAN.as_bytes(), Some(PAN), Some(MASKED)).unwrap());
    assert_eq!(out, b"1111");
    // An edit that is not a number is refused, not sent.
    assert!(apply(20, 1, &raw, Some(&shown), Some("REDACTED")).is_err());
    assert!(apply(21, 0, b"1", Some("1"), Some("99999")).is_err());
}

#[test]
fn numeric_round_trips_and_masks() {
    for text in [
        "0",
        "1",
        "-1",
        "4111111111111111",
        "12345.6789",
        "0.0001",
        "-0.5",
        "100000000",
        "3.14159265358979323846",
        "NaN",
        "Infinity",
        "10.00",
    ] {
        let raw = super::binary::encode_scalar(1700, text).unwrap();
        assert_eq!(show(1700, 1, &raw).unwrap(), text, "{text}");
    }
    let raw = super::binary::encode_scalar(1700, PAN).unwrap();
    let out = value(apply(1700, 1, &raw, Some(PAN), Some(MASKED)).unwrap());
    assert_eq!(show(1700, 1, &out).unwrap(), "1111");
}

#[test]
fn floats_show_whole_numbers_as_digits() {
    let raw = 4111111111111111f64.to_be_bytes();
    assert_eq!(show(701, 1, &raw).unwrap(), PAN);
    let out = value(apply(701, 1, &raw, Some(PAN), Some(MASKED)).unwrap());
    assert_eq!(f64::from_be_bytes(out.try_into().unwrap()), 1111.0);
}

#[test]
fn jsonb_string_and_number_leaves() {
    let doc = format!(r#"{{"pan": "{PAN}", "n": {PAN}, "x": [1, -2.5e3]}}"#);
    let raw = [&[1u8][..], doc.as_bytes()].concat();
    let shown = show(3802, 1, &raw).unwrap();
    assert_eq!(shown, doc);
    let out = value(apply(3802, 1, &raw, Some(&shown), Some(&mask(&shown))).unwrap());
    assert_eq!(out[0], 1);
    let text = std::str::from_utf8(&out[1..]).unwrap();
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(v["pan"], MASKED);
    assert_eq!(v["n"], 1111);
    assert_eq!(v["x"][1], -2500.0);
    // json in text format: same.
    let out = value(apply(114, 0, doc.as_bytes(), Some(&doc), Some(&mask(&doc))).unwrap());
    assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
    assert!(apply(3802, 1, &raw, Some(&shown), Some("{broken")).is_err());
}

#[test]
fn binary_arrays_mask_element_by_element() {
    let raw = array(25, &[Some(PAN.as_bytes()), None, Some(b"a b")]);
    let shown = show(1009, 1, &raw).unwrap();
    assert_eq!(shown, format!(r#"{{{PAN},NULL,"a b"}}"#));
    let out = value(apply(1009, 1, &raw, Some(&shown), Some(&mask(&shown))).unwrap());
    assert_eq!(
        show(1009, 1, &out).unwrap(),
        format!(r#"{{{MASKED},NULL,"a b"}}"#)
    );
    let n = 4111111111111111i64.to_be_bytes();
    let raw = array(20, &[Some(&n), Some(&7i64.to_be_bytes())]);
    let shown = show(1016, 1, &raw).unwrap();
    assert_eq!(shown, format!("{{{PAN},7}}"));
    let out = value(apply(1016, 1, &raw, Some(&shown), Some(&mask(&shown))).unwrap());
    assert_eq!(show(1016, 1, &out).unwrap(), "{1111,7}");
    // Changing the shape is refused.
    assert!(apply(1016, 1, &raw, Some(&shown), Some("{1}")).is_err());
}

#[test]
fn text_arrays_and_records() {
    let shown = format!("{{{{{PAN},x}},{{NULL,\"y z\"}}}}");
    let out = value(apply(1009, 0, shown.as_bytes(), Some(&shown), Some(&mask(&shown))).unwrap());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{{{{{MASKED},x}},{{NULL,\"y z\"}}}}")
    );
    let shown = format!("{{{PAN},5}}");
    let out = value(apply(1016, 0, shown.as_bytes(), Some(&shown), Some(&mask(&shown))).unwrap());
    assert_eq!(out, b"{1111,5}");
    // Record fields are untyped in text: an all-digit field masks to zeros (valid as text and
    // as a number), other text keeps its stars.
    let shown = format!("({PAN},\"card {PAN}\",)");
    let out = value(apply(2249, 0, shown.as_bytes(), Some(&shown), Some(&mask(&shown))).unwrap());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "(0000000000001111,\"card 1111\",)"
    );
}

#[test]
fn binary_records_use_field_types() {
    let mut raw = Vec::new();
    raw.extend_from_slice(&3i32.to_be_bytes());
    for (oid, v) in [
        (20u32, Some(4111111111111111i64.to_be_bytes().to_vec())),
        (25, Some(PAN.as_bytes().to_vec())),
        (1184, Some(vec![0u8; 8])),
    ] {
        raw.extend_from_slice(&oid.to_be_bytes());
        let v = v.unwrap();
        raw.extend_from_slice(&(v.len() as i32).to_be_bytes());
        raw.extend_from_slice(&v);
    }
    let shown = show(2249, 1, &raw).unwrap();
    assert_eq!(shown, format!("({PAN},{PAN},<timestamptz>)"));
    let out = value(apply(2249, 1, &raw, Some(&shown), Some(&mask(&shown))).unwrap());
    assert_eq!(
        show(2249, 1, &out).unwrap(),
        format!("(1111,{MASKED},<timestamptz>)")
    );
    // The timestamp kept its bytes.
    assert!(out.ends_with(&[0u8; 8]));
}

#[test]
fn look_alikes_in_types_that_cannot_hold_a_card_are_kept() {
    // A UUID that holds a Luhn-valid, scheme-shaped digit run (a nil UUID no longer does:
    // no card number starts with 0).
    let uuid = "41111111-1111-1111-0000-000000000000";
    let masked = mask(uuid);
    assert_ne!(masked, uuid, "the detector sees a card number in this UUID");
    assert_eq!(
        apply(2950, 0, uuid.as_bytes(), Some(uuid), Some(&masked)).unwrap(),
        Applied::Keep
    );
    let raw: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&uuid.replace('-', "")[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let shown = show(2950, 1, &raw).unwrap();
    assert_eq!(shown, uuid);
    assert_eq!(
        apply(2950, 1, &raw, Some(&shown), Some(&mask(&shown))).unwrap(),
        Applied::Keep
    );
    // NULL is always allowed; other edits of a date are refused.
    assert_eq!(
        apply(1082, 0, b"2026-12-05", Some("2026-12-05"), None).unwrap(),
        Applied::Value(None)
    );
    assert!(apply(1082, 0, b"2026-12-05", Some("2026-12-05"), Some("x")).is_err());
}

#[test]
fn bytea_holding_text_is_shown_as_text() {
    let hex: String = PAN.bytes().map(|b| format!("{b:02x}")).collect();
    let raw = format!("\\x{hex}");
    assert_eq!(show(17, 0, raw.as_bytes()).unwrap(), PAN);
    let out = value(apply(17, 0, raw.as_bytes(), Some(PAN), Some(MASKED)).unwrap());
    let mhex: String = MASKED.bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(String::from_utf8(out).unwrap(), format!("\\x{mhex}"));
    assert_eq!(show(17, 1, PAN.as_bytes()).unwrap(), PAN);
}

#[test]
fn literals_round_trip() {
    for text in [
        "{}",
        "{a,b}",
        r#"{"a b","",NULL,"NULL","q\"x","b\\s"}"#,
        "{{1,2},{3,4}}",
        "[0:1]={x,y}",
    ] {
        let a = literal::parse_array(text).unwrap();
        assert_eq!(literal::write_array(&a), text);
    }
    let a = literal::parse_array(r#"{ a , "b" , NULL }"#).unwrap();
    assert_eq!(
        a.root,
        vec![Node::Item("a".into()), Node::Item("b".into()), Node::Null]
    );
    for text in ["(1,x)", "(,)", r#"("a b","")"#, r#"("q""x","b\\s")"#] {
        let r = literal::parse_record(text).unwrap();
        assert_eq!(literal::write_record(&r), text);
    }
    assert!(literal::parse_array("{a").is_err());
    assert!(literal::parse_record("(\"a)").is_err());
}

#[test]
fn digit_masks() {
    assert!(is_digit_mask(PAN, MASKED));
    assert!(is_digit_mask("a 4111", "a ***1"));
    assert!(!is_digit_mask("abc", "***"));
    assert!(!is_digit_mask(PAN, "1111"));
}

#[test]
fn a_binary_value_that_does_not_decode_is_not_left_unread() {
    // Text where binary was announced: the gateway cannot read it, and the type is one that
    // can hold a card number, so the result is refused (see rows.rs), never sent unread.
    assert_eq!(show(20, 1, PAN.as_bytes()), None);
    assert!(!super::may_be_unread(20));
    assert!(!super::may_be_unread(1009));
    assert!(
        super::may_be_unread(1184),
        "a timestamp cannot hold a card number"
    );
}

/// A binary record of `(oid, value)` fields.
fn record(fields: &[(u32, Option<&[u8]>)]) -> Vec<u8> {
    let mut raw = (fields.len() as i32).to_be_bytes().to_vec();
    for (oid, v) in fields {
        raw.extend_from_slice(&oid.to_be_bytes());
        match v {
            Some(b) => {
                raw.extend_from_slice(&(b.len() as i32).to_be_bytes());
                raw.extend_from_slice(b);
            }
            None => raw.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    raw
}

#[test]
fn a_tables_row_type_is_read_as_the_record_it_is() {
    // `SELECT c FROM cards c`: the type is the table's own (an OID the gateway does not know),
    // the binary value a record whose fields name their types.
    const ROW_TYPE: u32 = 16_500;
    let n = 4111111111111111i64.to_be_bytes();
    let raw = record(&[
        (23, Some(&7i32.to_be_bytes())),
        (25, Some(PAN.as_bytes())),
        (20, Some(&n)),
    ]);
    let shown = show(ROW_TYPE, 1, &raw).unwrap();
    assert_eq!(shown, format!("(7,{PAN},{PAN})"));
    let out = value(apply(ROW_TYPE, 1, &raw, Some(&shown), Some(&mask(&shown))).unwrap());
    assert_eq!(
        show(ROW_TYPE, 1, &out).unwrap(),
        format!("(7,{MASKED},1111)")
    );
    // An array of them (its own unknown array type): the header names the element type.
    let arr = array(ROW_TYPE, &[Some(&raw)]);
    let shown = show(ROW_TYPE + 1, 1, &arr).unwrap();
    assert!(shown.contains(PAN), "{shown}");
    let out = value(apply(ROW_TYPE + 1, 1, &arr, Some(&shown), Some(&mask(&shown))).unwrap());
    assert!(!show(ROW_TYPE + 1, 1, &out).unwrap().contains(PAN));
    // Binary bytes of an unknown type that are neither text nor structured cannot be read:
    // the result is refused rather than sent unread.
    assert_eq!(show(ROW_TYPE, 1, &[0xff, 0xfe, 0x00, 0x01]), None);
    assert!(!super::may_be_unread(ROW_TYPE));
}

#[test]
fn floats_and_money_in_text_are_shown_as_plain_numbers() {
    assert_eq!(show(701, 0, b"4.111111111111111e+15").unwrap(), PAN);
    let out = value(apply(701, 0, b"4.111111111111111e+15", Some(PAN), Some(MASKED)).unwrap());
    assert_eq!(out, b"0000000000001111", "valid float8 input");
    let money = b"$4,111,111,111,111,111.00";
    let shown = show(790, 0, money).unwrap();
    assert_eq!(shown, format!("{PAN}.00"));
    let out = value(apply(790, 0, money, Some(&shown), Some(&mask(&shown))).unwrap());
    assert_eq!(out, b"0000000000001111.00");
}

#[test]
fn bytea_in_escape_format_and_bytes_that_are_not_text() {
    // bytea_output = escape: a non-UTF-8 byte then a card number.
    let shown = show(17, 0, format!("\\377{PAN}").as_bytes()).unwrap();
    assert!(shown.starts_with("\\x"), "not UTF-8: shown as hex: {shown}");
    let raw = [&[0xffu8][..], PAN.as_bytes()].concat();
    let shown = show(17, 1, &raw).unwrap();
    // The hex of ASCII digits holds no card number, but the bytes do: a masked edit of the
    // hex must still decode (masked digits as zeros), never be sent as text.
    let edited = shown.replacen("34", "**", 1);
    let out = value(apply(17, 1, &raw, Some(&shown), Some(&edited)).unwrap());
    assert_eq!(out.len(), raw.len());
}

#[test]
fn unknown_types_keep_their_numbers_valid() {
    // int8range in text: `[4111111111111111,5500005555555560)`.
    let range = format!("[{PAN},5500005555555559]");
    let out = value(apply(3926, 0, range.as_bytes(), Some(&range), Some(&mask(&range))).unwrap());
    assert_eq!(String::from_utf8(out).unwrap(), "[1111,5559]");
    // Bit strings are never card numbers.
    assert!(super::may_be_unread(1560));
}
