//! [`Verifier`]: check a token's signature and claims and read its delegation chain.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::config::load_hs256_secret;
use super::keys::{VerifyKey, b64url_decode, hs256_key, load_jwks};
use super::{IdentityConfig, IdentityError, Principal, install_crypto_provider};

/// The deepest nested `act` claim accepted. Real delegation chains are a handful of agents
/// deep; the bound keeps a hostile token from making every policy walk a huge chain.
pub const MAX_ACT_DEPTH: usize = 16;

/// Longer tokens are refused before any parsing or cryptography.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Verifies bearer tokens against the keys of an [`IdentityConfig`], loaded once.
pub struct Verifier {
    /// Checks tokens without `kid`.
    hs256: Option<Checked>,
    /// Checks tokens with `kid`, by `kid`.
    jwks: HashMap<String, Checked>,
    leeway: u64,
    max_ttl: Option<u64>,
}

/// A key with the validation rules for its algorithm, built once at load.
struct Checked {
    key: VerifyKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    // Hand-written so that a stray `{:?}` can never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.jwks.keys().collect();
        kids.sort();
        f.debug_struct("Verifier")
            .field("hs256", &self.hs256.is_some())
            .field("jwks_kids", &kids)
            .field("leeway", &self.leeway)
            .field("max_ttl", &self.max_ttl)
            .finish()
    }
}

/// The part of the JOSE header read before a key is chosen.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl Verifier {
    /// Validate `config` and load its key files.
    pub fn from_config(config: &IdentityConfig) -> Result<Verifier, IdentityError> {
        install_crypto_provider();
        config.validate()?;
        let leeway = config.leeway.as_secs();
        let checked = |key: VerifyKey| {
            let mut validation = Validation::new(key.alg);
            validation.set_issuer(&[&config.issuer]);
            validation.set_audience(&[&config.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.validate_aud = true;
            validation.leeway = leeway;
            Checked { key, validation }
        };
        let hs256 = match &config.hs256_secret_file {
            Some(path) => Some(checked(hs256_key(&load_hs256_secret(path)?))),
            None => None,
        };
        let jwks = match &config.jwks_file {
            Some(path) => load_jwks(path)?
                .into_iter()
                .map(|(kid, key)| (kid, checked(key)))
                .collect(),
            None => HashMap::new(),
        };
        Ok(Verifier {
            hs256,
            jwks,
            leeway,
            max_ttl: config.max_ttl.map(|ttl| ttl.as_secs()),
        })
    }

    /// Verify `token` and return who it speaks for.
    ///
    /// The key is chosen by `kid` alone (no `kid`: the HS256 secret), and the header's `alg`
    /// must be that key's algorithm. Then the signature, `exp` (required), `nbf`, `iss`, `aud`,
    /// `sub` (required), `iat` and `max_ttl` are checked, in that order of concern, and the
    /// `act` chain is read.
    pub fn verify(&self, token: &str) -> Result<Principal, IdentityError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(IdentityError::Malformed);
        }
        let header = parse_header(token)?;
        if header.crit.is_some() {
            return Err(IdentityError::UnsupportedCritical);
        }
        // Exact, case-sensitive names (RFC 7515 §4.1.1); "none" in any spelling stops here.
        let alg = match header.alg.as_str() {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            _ => return Err(IdentityError::UnsupportedAlgorithm),
        };
        let checked = match &header.kid {
            Some(kid) => self.jwks.get(kid).ok_or(IdentityError::UnknownKeyId)?,
            None => self.hs256.as_ref().ok_or(IdentityError::MissingKeyId)?,
        };
        if alg != checked.key.alg {
            return Err(IdentityError::AlgorithmMismatch);
        }
        // jsonwebtoken checks the signature before any claim, so claim errors below are
        // reported only for genuine tokens.
        let data = jsonwebtoken::decode::<Map<String, Value>>(
            token,
            &checked.key.key,
            &checked.validation,
        )?;
        principal_from_claims(
            &data.claims,
            jsonwebtoken::get_current_timestamp(),
            self.leeway,
            self.max_ttl,
        )
    }
}

fn parse_header(token: &str) -> Result<RawHeader, IdentityError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdentityError::Malformed);
    };
    let json = b64url_decode(header).ok_or(IdentityError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| IdentityError::Malformed)
}

/// A NumericDate (RFC 7519 §2): a non-negative number of seconds, fractions dropped.
fn numeric_date(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|secs| secs.is_finite() && *secs >= 0.0 && *secs < u64::MAX as f64)
            .map(|secs| secs as u64)
    })
}

fn non_empty_string(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Build the [`Principal`] from claims whose signature, `exp`, `nbf`, `iss` and `aud` have
/// been checked.
fn principal_from_claims(
    claims: &Map<String, Value>,
    now: u64,
    leeway: u64,
    max_ttl: Option<u64>,
) -> Result<Principal, IdentityError> {
    let subject = non_empty_string(claims.get("sub")).ok_or(IdentityError::InvalidClaim("sub"))?;
    // jsonwebtoken also accepts an array `iss`; RFC 7519 allows one string only.
    let issuer = non_empty_string(claims.get("iss")).ok_or(IdentityError::InvalidClaim("iss"))?;
    let expires_at = claims
        .get("exp")
        .ok_or(IdentityError::MissingClaim("exp"))
        .and_then(|exp| numeric_date(exp).ok_or(IdentityError::InvalidClaim("exp")))?;

    let issued_at = match claims.get("iat") {
        None | Some(Value::Null) => None,
        Some(iat) => Some(numeric_date(iat).ok_or(IdentityError::InvalidClaim("iat"))?),
    };
    if let Some(iat) = issued_at {
        // A future `iat` would let a token outlive `max_ttl` counted from now.
        if iat > now.saturating_add(leeway) {
            return Err(IdentityError::NotYetValid);
        }
        if iat > expires_at {
            return Err(IdentityError::InvalidClaim("iat"));
        }
    }
    if let Some(max_ttl) = max_ttl {
        let iat = issued_at.ok_or(IdentityError::MissingClaim("iat"))?;
        if expires_at - iat > max_ttl {
            return Err(IdentityError::LifetimeTooLong);
        }
    }

    let groups = match claims.get("groups") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|g| g.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or(IdentityError::InvalidClaim("groups"))?,
        Some(_) => return Err(IdentityError::InvalidClaim("groups")),
    };

    // `targets` narrows what the token reaches: a string or an array of target names. An
    // empty array reaches nothing (it is not read as "no claim").
    let targets = match claims.get("targets") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(vec![t.clone()]),
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|t| t.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(IdentityError::InvalidClaim("targets"))?,
        ),
        Some(_) => return Err(IdentityError::InvalidClaim("targets")),
    };

    let mut actors = vec![subject.to_owned()];
    actors.extend(delegation_chain(claims.get("act"))?);
    Ok(Principal {
        subject: subject.to_owned(),
        issuer: issuer.to_owned(),
        groups,
        actors,
        expires_at,
        targets,
    })
}

/// Read a nested RFC 8693 `act` claim into the actors least recent first. The top-level `act`
/// is the most recent actor and each nested `act` an earlier one, so the walk collects the
/// chain backwards and reverses it. Other members of an `act` object (its `iss`, ...) are
/// ignored.
fn delegation_chain(act: Option<&Value>) -> Result<Vec<String>, IdentityError> {
    let mut chain = Vec::new();
    let mut next = act;
    while let Some(value) = next {
        let object = match value {
            // `null` reads as absent, at any depth.
            Value::Null => break,
            Value::Object(object) => object,
            _ => return Err(IdentityError::InvalidClaim("act")),
        };
        if chain.len() == MAX_ACT_DEPTH {
            return Err(IdentityError::ChainTooDeep);
        }
        let actor =
            non_empty_string(object.get("sub")).ok_or(IdentityError::InvalidClaim("act"))?;
        chain.push(actor.to_owned());
        next = object.get("act");
    }
    chain.reverse();
    Ok(chain)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn claims(value: Value) -> Map<String, Value> {
        let mut base = json!({"sub": "alice", "iss": "iss", "aud": "aud", "exp": NOW + 600});
        if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), value) {
            base.extend(extra);
        }
        base.as_object().unwrap().clone()
    }

    fn principal(extra: Value) -> Result<Principal, IdentityError> {
        principal_from_claims(&claims(extra), NOW, 30, None)
    }

    #[test]
    fn verifier_can_be_shared_between_tasks() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<Verifier>();
    }

    #[test]
    fn no_act_gives_the_subject_alone() {
        let p = principal(json!({})).unwrap();
        assert_eq!(p.actors, ["alice"]);
        assert_eq!(p.acting(), "alice");
        assert!(p.groups.is_empty());
        assert_eq!(p.expires_at, NOW + 600);
    }

    #[test]
    fn nested_act_reads_least_recent_first() {
        let p = principal(json!({
            "act": {"sub": "agent-b", "act": {"sub": "agent-a", "iss": "ignored"}}
        }))
        .unwrap();
        assert_eq!(p.actors, ["alice", "agent-a", "agent-b"]);
        assert_eq!(p.acting(), "agent-b");
    }

    #[test]
    fn chain_depth_is_bounded() {
        let nest = |depth: usize| {
            let mut act = Value::Null;
            for i in 0..depth {
                act = if act.is_null() {
                    json!({"sub": format!("a{i}")})
                } else {
                    json!({"sub": format!("a{i}"), "act": act})
                };
            }
            json!({ "act": act })
        };
        let p = principal(nest(MAX_ACT_DEPTH)).unwrap();
        assert_eq!(p.actors.len(), MAX_ACT_DEPTH + 1);
        assert_eq!(p.acting(), format!("a{}", MAX_ACT_DEPTH - 1));
        assert!(matches!(
            principal(nest(MAX_ACT_DEPTH + 1)),
            Err(IdentityError::ChainTooDeep)
        ));
    }

    #[test]
    fn malformed_act_and_groups_are_refused() {
        for bad in [
            json!({"act": "agent"}),
            json!({"act": {"sub": ""}}),
            json!({"act": {"sub": "b", "act": {"client_id": "a"}}}),
            json!({"act": {"sub": "b", "act": 7}}),
        ] {
            assert!(
                matches!(
                    principal(bad.clone()),
                    Err(IdentityError::InvalidClaim("act"))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            principal(json!({"groups": "admins"})),
            Err(IdentityError::InvalidClaim("groups"))
        ));
        assert!(matches!(
            principal(json!({"groups": ["ok", 1]})),
            Err(IdentityError::InvalidClaim("groups"))
        ));
        let p = principal(json!({"groups": ["dba", "oncall"], "act": null})).unwrap();
        assert_eq!(p.groups, ["dba", "oncall"]);
        assert_eq!(p.actors, ["alice"]);
        let p = principal(json!({"act": {"sub": "b", "act": null}})).unwrap();
        assert_eq!(p.actors, ["alice", "b"]);
    }

    #[test]
    fn iat_and_max_ttl() {
        let with = |extra: Value, max_ttl| principal_from_claims(&claims(extra), NOW, 30, max_ttl);
        assert!(with(json!({"iat": NOW}), Some(600)).is_ok());
        assert!(matches!(
            with(json!({"iat": NOW - 1}), Some(600)),
            Err(IdentityError::LifetimeTooLong)
        ));
        assert!(matches!(
            with(json!({}), Some(600)),
            Err(IdentityError::MissingClaim("iat"))
        ));
        assert!(matches!(
            with(json!({"iat": NOW + 31}), None),
            Err(IdentityError::NotYetValid)
        ));
        assert!(with(json!({"iat": NOW + 30}), None).is_ok());
        assert!(matches!(
            with(json!({"iat": "yesterday"}), None),
            Err(IdentityError::InvalidClaim("iat"))
        ));
        assert!(with(json!({"iat": (NOW as f64) + 0.5}), Some(600)).is_ok());
    }

    #[test]
    fn issuer_must_be_one_string() {
        assert!(matches!(
            principal(json!({"iss": ["iss", "other"]})),
            Err(IdentityError::InvalidClaim("iss"))
        ));
    }

    #[test]
    fn headers_are_parsed_strictly() {
        assert!(matches!(parse_header("a.b"), Err(IdentityError::Malformed)));
        assert!(matches!(
            parse_header("a.b.c.d"),
            Err(IdentityError::Malformed)
        ));
        assert!(matches!(
            parse_header("!!.b.c"),
            Err(IdentityError::Malformed)
        ));
        // {"kid":"k"}: no alg.
        assert!(matches!(
            parse_header("eyJraWQiOiJrIn0.b.c"),
            Err(IdentityError::Malformed)
        ));
        let header = parse_header("eyJhbGciOiJub25lIn0.e30.").unwrap();
        assert_eq!(header.alg, "none");
        assert_eq!(header.kid, None);
    }
}
