//! Verification keys: the HS256 secret and the JWKS file, each key bound to its one algorithm.

use std::collections::HashMap;
use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::IdentityError;
use super::config::read_file;

/// RSA moduli outside this range are refused at load: below it is breakable, above it the
/// RustCrypto backend refuses the key at verification time (`RsaPublicKey::MAX_SIZE`).
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 4096;

/// A key and the single algorithm it verifies. The algorithm is decided here, at load, from
/// the key itself; a token's header can only agree with it or be refused.
#[derive(Clone)]
pub(super) struct VerifyKey {
    pub(super) alg: Algorithm,
    pub(super) key: DecodingKey,
}

pub(super) fn hs256_key(secret: &[u8]) -> VerifyKey {
    VerifyKey {
        alg: Algorithm::HS256,
        key: DecodingKey::from_secret(secret),
    }
}

/// Load a JWKS file into keys by `kid`. Strict: any signing key this gateway cannot use is a
/// configuration error rather than silently unusable, so a typo shows at start-up.
pub(super) fn load_jwks(path: &Path) -> Result<HashMap<String, VerifyKey>, IdentityError> {
    let bytes = read_file(path)?;
    let set: JwkSet = serde_json::from_slice(&bytes)
        .map_err(|e| IdentityError::InvalidJwks(format!("not a JWKS document: {e}")))?;
    let mut keys = HashMap::new();
    for (index, jwk) in set.keys.iter().enumerate() {
        // Encryption keys share JWKS documents with signing keys at many identity providers.
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            continue;
        }
        let kid = jwk.common.key_id.clone().ok_or_else(|| {
            IdentityError::InvalidJwks(format!("key #{index} has no kid; every key needs one"))
        })?;
        let bad = |why: &str| IdentityError::InvalidJwks(format!("key {kid:?}: {why}"));
        let declared = jwk.common.key_algorithm;
        let key = match &jwk.algorithm {
            AlgorithmParameters::RSA(params) => {
                if !matches!(declared, None | Some(KeyAlgorithm::RS256)) {
                    return Err(bad("RSA keys are accepted for RS256 only"));
                }
                let bits = b64url_decode(&params.n)
                    .map(|n| significant_bits(&n))
                    .ok_or_else(|| bad("modulus is not base64url"))?;
                if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                    return Err(bad(&format!(
                        "{bits}-bit modulus; {RSA_MIN_BITS} to {RSA_MAX_BITS} bits required"
                    )));
                }
                let key = DecodingKey::from_rsa_components(&params.n, &params.e)
                    .map_err(|_| bad("invalid RSA components"))?;
                VerifyKey {
                    alg: Algorithm::RS256,
                    key,
                }
            }
            AlgorithmParameters::EllipticCurve(params) => {
                if params.curve != EllipticCurve::P256
                    || !matches!(declared, None | Some(KeyAlgorithm::ES256))
                {
                    return Err(bad("EC keys are accepted on P-256 for ES256 only"));
                }
                let key = DecodingKey::from_ec_components(&params.x, &params.y)
                    .map_err(|_| bad("invalid EC coordinates"))?;
                // The backend parses the point only when it verifies; do it once now with a
                // throw-away signature so an off-curve point fails at start-up, not per token.
                if jsonwebtoken::crypto::verify("AA", b"probe", &key, Algorithm::ES256).is_err() {
                    return Err(bad("not a valid P-256 public key"));
                }
                VerifyKey {
                    alg: Algorithm::ES256,
                    key,
                }
            }
            AlgorithmParameters::OctetKey(_) => {
                return Err(bad(
                    "symmetric (oct) keys do not belong in a public key set; use hs256_secret_file",
                ));
            }
            _ => return Err(bad("unsupported key type; use RSA or EC P-256")),
        };
        if keys.insert(kid.clone(), key).is_some() {
            return Err(bad("duplicate kid"));
        }
    }
    if keys.is_empty() {
        return Err(IdentityError::InvalidJwks("no signing keys".into()));
    }
    Ok(keys)
}

fn significant_bits(big_endian: &[u8]) -> usize {
    let rest = match big_endian.iter().position(|&b| b != 0) {
        Some(first) => &big_endian[first..],
        None => return 0,
    };
    // `rest` is non-empty here, and its first byte is non-zero.
    let top = rest.first().map_or(0, |b| 8 - b.leading_zeros() as usize);
    (rest.len() - 1) * 8 + top
}

/// Decode unpadded base64url (RFC 7515 §2). Hand-written because `base64` is not a direct
/// dependency and the gateway needs it only to read a token header before picking its key.
/// Non-canonical encodings (stray low bits, impossible lengths) are refused.
pub(super) fn b64url_decode(input: &str) -> Option<Vec<u8>> {
    if input.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for byte in input.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if acc != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips() {
        assert_eq!(b64url_decode("").unwrap(), b"");
        assert_eq!(b64url_decode("Zg").unwrap(), b"f");
        assert_eq!(b64url_decode("Zm8").unwrap(), b"fo");
        assert_eq!(b64url_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(b64url_decode("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(
            b64url_decode("eyJhbGciOiJub25lIn0").unwrap(),
            br#"{"alg":"none"}"#
        );
    }

    #[test]
    fn base64url_refuses_non_canonical_input() {
        assert_eq!(b64url_decode("Zm9v="), None, "padding");
        assert_eq!(b64url_decode("Zm+v"), None, "standard alphabet");
        assert_eq!(b64url_decode("Z"), None, "impossible length");
        assert_eq!(b64url_decode("Zh"), None, "stray low bits");
    }

    #[test]
    fn bit_length() {
        assert_eq!(significant_bits(&[]), 0);
        assert_eq!(significant_bits(&[0, 0]), 0);
        assert_eq!(significant_bits(&[0, 1]), 1);
        assert_eq!(significant_bits(&[0, 0x80, 0]), 16);
    }

    fn write_jwks(json: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, json).unwrap();
        (dir, path)
    }

    fn load_err(json: &str) -> String {
        let (_dir, path) = write_jwks(json);
        match load_jwks(&path) {
            Err(IdentityError::InvalidJwks(why)) => why,
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("loaded"),
        }
    }

    #[test]
    fn unusable_keys_are_config_errors() {
        assert!(load_err("{").contains("not a JWKS"));
        assert!(load_err(r#"{"keys":[]}"#).contains("no signing keys"));
        assert!(load_err(r#"{"keys":[{"kty":"oct","kid":"k","k":"c2VjcmV0"}]}"#).contains("oct"));
        assert!(load_err(r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#).contains("no kid"));
        assert!(
            load_err(r#"{"keys":[{"kty":"RSA","kid":"small","n":"AQAB","e":"AQAB"}]}"#)
                .contains("17-bit modulus")
        );
        assert!(
            load_err(r#"{"keys":[{"kty":"RSA","kid":"k","alg":"PS256","n":"AQAB","e":"AQAB"}]}"#)
                .contains("RS256 only")
        );
        // (1, 1) is not on P-256.
        let off_curve = format!(
            r#"{{"keys":[{{"kty":"EC","kid":"e","crv":"P-256","x":"{0}","y":"{0}"}}]}}"#,
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE"
        );
        assert!(load_err(&off_curve).contains("not a valid P-256"));
    }

    #[test]
    fn encryption_keys_are_skipped() {
        let json = r#"{"keys":[{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}"#;
        assert!(load_err(json).contains("no signing keys"));
    }
}
