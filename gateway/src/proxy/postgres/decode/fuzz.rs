//! Property tests of the extended-protocol decoders: no body panics them, valid encodings
//! round-trip, and whatever decodes is exactly what pgwire would have written, so the bytes the
//! gateway forwards are the bytes it judged. `PROPTEST_CASES` sets the number of cases
//! (proptest's default: 256).

#![allow(clippy::unwrap_used)]
use super::tests::body_of;
use super::*;
use pgwire::messages::Message;
use proptest::collection::vec;
use proptest::prelude::*;

/// Decode `body` as the frontend would for `tag`; `None` for tags not decoded here. A
/// decoded message must re-encode to the same body, unless its query text was not UTF-8.
fn decode_tagged(tag: u8, body: &[u8]) -> Option<Result<(), DecodeError>> {
    fn check<M: ClientMessage + Message>(body: &[u8]) -> Result<(), DecodeError> {
        let m = M::from_body(body)?;
        assert_eq!(body_of(&m), body, "an accepted body re-encodes unchanged");
        Ok(())
    }
    Some(match tag {
        b'P' => match Parse::from_body(body) {
            Ok(p) if p.query.contains('\u{fffd}') => Ok(()),
            Ok(_) => check::<Parse>(body),
            Err(e) => Err(e),
        },
        b'B' => check::<Bind>(body),
        b'D' => check::<Describe>(body),
        b'E' => check::<Execute>(body),
        b'C' => check::<Close>(body),
        _ => return None,
    })
}

fn name() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[^\u{0}]{1,12}")
}

fn parse() -> impl Strategy<Value = Parse> {
    (name(), "[^\u{0}]{0,40}", vec(any::<u32>(), 0..6)).prop_map(|(n, q, t)| Parse::new(n, q, t))
}

fn bind() -> impl Strategy<Value = Bind> {
    (
        name(),
        name(),
        vec(any::<i16>(), 0..4),
        vec(proptest::option::of(vec(any::<u8>(), 0..12)), 0..6),
        vec(any::<i16>(), 0..4),
    )
        .prop_map(|(p, s, pf, v, rf)| {
            let v = v.into_iter().map(|v| v.map(Bytes::from)).collect();
            Bind::new(p, s, pf, v, rf)
        })
}

fn target() -> impl Strategy<Value = u8> {
    prop_oneof![Just(b'S'), Just(b'P')]
}

/// Damage to a valid body: bytes overwritten, then bytes spliced in, then the body cut short;
/// positions are taken modulo the body's length. Lengths and counts stop matching the bytes.
#[derive(Debug, Clone)]
struct Damage {
    edits: Vec<(usize, u8)>,
    splice: Option<(usize, Vec<u8>)>,
    cut: Option<usize>,
}

impl Damage {
    fn apply(&self, mut body: Vec<u8>) -> Vec<u8> {
        for &(at, b) in &self.edits {
            if !body.is_empty() {
                let i = at % body.len();
                body[i] = b;
            }
        }
        if let Some((at, bytes)) = &self.splice {
            let i = at % (body.len() + 1);
            body.splice(i..i, bytes.iter().copied());
        }
        if let Some(at) = self.cut {
            body.truncate(at % (body.len() + 1));
        }
        body
    }
}

fn damage() -> impl Strategy<Value = Damage> {
    let byte = prop_oneof![any::<u8>(), Just(0), Just(0xff)];
    (
        vec((any::<usize>(), byte), 0..4),
        proptest::option::of((any::<usize>(), vec(any::<u8>(), 1..8))),
        proptest::option::of(any::<usize>()),
    )
        .prop_map(|(edits, splice, cut)| Damage { edits, splice, cut })
}

proptest! {
    #[test]
    fn any_tag_and_body_never_panics(tag in any::<u8>(), body in vec(any::<u8>(), 0..96)) {
        let _ = decode_tagged(tag, &body);
        for t in *b"PBDEC" {
            let _ = decode_tagged(t, &body);
        }
    }

    #[test]
    fn valid_encodings_round_trip(
        p in parse(),
        b in bind(),
        (dt, dn) in (target(), name()),
        (en, rows) in (name(), any::<i32>()),
        (ct, cn) in (target(), name()),
    ) {
        prop_assert_eq!(Parse::from_body(&body_of(&p)).unwrap(), p);
        prop_assert_eq!(Bind::from_body(&body_of(&b)).unwrap(), b);
        let d = Describe::new(dt, dn);
        prop_assert_eq!(Describe::from_body(&body_of(&d)).unwrap(), d);
        let e = Execute::new(en, rows);
        prop_assert_eq!(Execute::from_body(&body_of(&e)).unwrap(), e);
        let c = Close::new(ct, cn);
        prop_assert_eq!(Close::from_body(&body_of(&c)).unwrap(), c);
    }

    #[test]
    fn corrupted_bind_and_parse_never_panic(
        b in bind(),
        p in parse(),
        damage in damage(),
    ) {
        let _ = decode_tagged(b'B', &damage.apply(body_of(&b)));
        let _ = decode_tagged(b'P', &damage.apply(body_of(&p)));
    }
}
