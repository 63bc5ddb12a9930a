//! JWT verification against real RSA-2048 and EC P-256 keys made by the `openssl` CLI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use warden::identity::{
    IdentityConfig, IdentityError, MAX_ACT_DEPTH, MintRequest, Principal, Verifier, mint,
};

const SECRET: &str = "integration-test-secret-of-more-than-32-bytes";
const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "warden";

/// PEM text of the test keys, generated once per test binary.
struct Keys {
    rsa_private: String,
    rsa_public: String,
    ec_private: String,
    /// A P-256 key that is not in the JWKS.
    ec_stranger: String,
}

fn openssl(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // Piped, not inherited: key generation prints progress dots.
        .stderr(Stdio::piped())
        .spawn()
        .expect("these tests need the `openssl` command-line tool on PATH");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let ec = || {
            openssl(
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ],
                None,
            )
        };
        let rsa_private = openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            None,
        );
        let rsa_public = openssl(&["pkey", "-pubout"], Some(&rsa_private));
        Keys {
            rsa_private,
            rsa_public,
            ec_private: ec(),
            ec_stranger: ec(),
        }
    })
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(keys().rsa_private.as_bytes()).unwrap()
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(keys().ec_private.as_bytes()).unwrap()
}

fn hmac_key() -> EncodingKey {
    EncodingKey::from_secret(SECRET.as_bytes())
}

/// A temp dir with the HS256 secret and a JWKS (`rsa-1`, `ec-1`), and a config naming both.
struct Fixture {
    dir: tempfile::TempDir,
    config: IdentityConfig,
}

fn fixture() -> Fixture {
    warden::identity::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut rsa = Jwk::from_encoding_key(&rsa_key(), Algorithm::RS256).unwrap();
    rsa.common.key_id = Some("rsa-1".into());
    let mut ec = Jwk::from_encoding_key(&ec_key(), Algorithm::ES256).unwrap();
    ec.common.key_id = Some("ec-1".into());
    // This key has no `alg`: the verifier must derive ES256 from the key type.
    ec.common.key_algorithm = None;
    let jwks = serde_json::to_string(&JwkSet {
        keys: vec![rsa, ec],
    })
    .unwrap();
    std::fs::write(dir.path().join("jwks.json"), jwks).unwrap();
    std::fs::write(dir.path().join("secret"), format!("{SECRET}\n")).unwrap();
    let config = IdentityConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        leeway: Duration::from_secs(30),
        hs256_secret_file: Some(dir.path().join("secret")),
        jwks_file: Some(dir.path().join("jwks.json")),
        max_ttl: None,
    };
    Fixture { dir, config }
}

impl Fixture {
    fn verifier(&self) -> Verifier {
        Verifier::from_config(&self.config).unwrap()
    }

    fn accept(&self, token: &str) -> Principal {
        self.verifier().verify(token).unwrap()
    }

    /// Verify a token that must fail, and check the message gives nothing of it away.
    fn reject(&self, token: &str) -> IdentityError {
        let err = self
            .verifier()
            .verify(token)
            .expect_err("token was accepted");
        let message = err.to_string();
        for part in token.split('.').filter(|p| p.len() > 4) {
            assert!(!message.contains(part), "{message:?} echoes the token");
        }
        assert!(!message.contains(SECRET));
        err
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Valid claims for the fixture; `changes` adds or replaces members, `null` removes one.
fn claims(changes: Value) -> Value {
    let mut claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now(), "exp": now() + 300,
    });
    let map = claims.as_object_mut().unwrap();
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            map.remove(name);
        } else {
            map.insert(name.clone(), value.clone());
        }
    }
    claims
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign(Algorithm::HS256, None, &hmac_key(), claims)
}

fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, Some("rsa-1"), &rsa_key(), claims)
}

fn es256(claims: &Value) -> String {
    sign(Algorithm::ES256, Some("ec-1"), &ec_key(), claims)
}

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A token with an arbitrary header, signed with `key` under `alg`, or unsigned.
fn hand_built(header: &Value, claims: &Value, key: Option<(&EncodingKey, Algorithm)>) -> String {
    let message = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = key.map_or(String::new(), |(key, alg)| {
        jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap()
    });
    format!("{message}.{signature}")
}

#[test]
fn valid_tokens_of_each_algorithm_are_accepted() {
    let f = fixture();
    let c = claims(json!({"groups": ["dba", "oncall"]}));
    for token in [hs256(&c), rs256(&c), es256(&c)] {
        let p = f.accept(&token);
        assert_eq!(p.subject, "alice");
        assert_eq!(p.issuer, ISSUER);
        assert_eq!(p.groups, ["dba", "oncall"]);
        assert_eq!(p.actors, ["alice"]);
        assert_eq!(p.expires_at, c["exp"].as_u64().unwrap());
    }
    // `aud` may be a list that includes ours.
    f.accept(&rs256(&claims(json!({"aud": ["other", AUDIENCE]}))));
}

#[test]
fn expired_and_not_yet_valid_tokens_are_rejected() {
    let f = fixture();
    let expired = claims(json!({"iat": now() - 600, "exp": now() - 100}));
    assert!(matches!(f.reject(&hs256(&expired)), IdentityError::Expired));
    assert!(matches!(f.reject(&es256(&expired)), IdentityError::Expired));
    let early = claims(json!({"nbf": now() + 100}));
    assert!(matches!(
        f.reject(&rs256(&early)),
        IdentityError::NotYetValid
    ));
    let future_iat = claims(json!({"iat": now() + 100, "exp": now() + 400}));
    assert!(matches!(
        f.reject(&hs256(&future_iat)),
        IdentityError::NotYetValid
    ));
}

#[test]
fn leeway_is_honoured() {
    let mut f = fixture();
    let just_expired = claims(json!({"iat": now() - 600, "exp": now() - 10}));
    let almost_valid = claims(json!({"nbf": now() + 10}));
    f.accept(&hs256(&just_expired));
    f.accept(&rs256(&almost_valid));
    f.config.leeway = Duration::ZERO;
    assert!(matches!(
        f.reject(&hs256(&just_expired)),
        IdentityError::Expired
    ));
    assert!(matches!(
        f.reject(&rs256(&almost_valid)),
        IdentityError::NotYetValid
    ));
}

#[test]
fn wrong_audience_and_issuer_are_rejected() {
    let f = fixture();
    let c = claims(json!({"aud": "someone-else"}));
    assert!(matches!(f.reject(&rs256(&c)), IdentityError::WrongAudience));
    let c = claims(json!({"iss": "https://evil.test"}));
    assert!(matches!(f.reject(&es256(&c)), IdentityError::WrongIssuer));
    let c = claims(json!({"aud": null}));
    assert!(matches!(
        f.reject(&hs256(&c)),
        IdentityError::MissingClaim("aud")
    ));
}

#[test]
fn tampered_payloads_are_rejected() {
    let f = fixture();
    let forged = b64url(claims(json!({"sub": "root"})).to_string().as_bytes());
    let valid = claims(json!({}));
    for token in [hs256(&valid), rs256(&valid), es256(&valid)] {
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert!(matches!(f.reject(&tampered), IdentityError::BadSignature));
    }
    // The signature is checked before the claims: a forged expired token is a bad signature.
    let expired = claims(json!({"iat": now() - 900, "exp": now() - 600}));
    let token = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(&[7; 32]),
        &expired,
    );
    assert!(matches!(f.reject(&token), IdentityError::BadSignature));
    // A valid signature from a key outside the JWKS, under a known kid.
    let stranger = EncodingKey::from_ec_pem(keys().ec_stranger.as_bytes()).unwrap();
    let token = sign(Algorithm::ES256, Some("ec-1"), &stranger, &valid);
    assert!(matches!(f.reject(&token), IdentityError::BadSignature));
}

#[test]
fn alg_none_is_rejected() {
    let f = fixture();
    let c = claims(json!({}));
    for alg in ["none", "None", "NONE", "nOnE"] {
        for header in [
            json!({"alg": alg, "typ": "JWT"}),
            json!({"alg": alg, "kid": "rsa-1"}),
        ] {
            let token = hand_built(&header, &c, None);
            assert!(matches!(
                f.reject(&token),
                IdentityError::UnsupportedAlgorithm
            ));
        }
    }
    // Algorithms jsonwebtoken knows but this gateway does not accept.
    let token = hand_built(
        &json!({"alg": "HS512"}),
        &c,
        Some((&hmac_key(), Algorithm::HS512)),
    );
    assert!(matches!(
        f.reject(&token),
        IdentityError::UnsupportedAlgorithm
    ));
}

#[test]
fn algorithm_confusion_is_rejected() {
    let f = fixture();
    let c = claims(json!({}));
    // The classic attack: HMAC with the RSA public key's PEM as the secret, naming its kid.
    let public_pem = EncodingKey::from_secret(keys().rsa_public.as_bytes());
    let token = sign(Algorithm::HS256, Some("rsa-1"), &public_pem, &c);
    assert!(matches!(f.reject(&token), IdentityError::AlgorithmMismatch));
    // Without a kid it reaches the HMAC secret, which it does not match.
    let token = sign(Algorithm::HS256, None, &public_pem, &c);
    assert!(matches!(f.reject(&token), IdentityError::BadSignature));
    // An RS256 token must not be checked with the HMAC secret (no kid selects the secret).
    let token = sign(Algorithm::RS256, None, &rsa_key(), &c);
    assert!(matches!(f.reject(&token), IdentityError::AlgorithmMismatch));
    // Nor an RS256 token with the EC key, nor an ES256 token with the RSA key.
    let token = sign(Algorithm::RS256, Some("ec-1"), &rsa_key(), &c);
    assert!(matches!(f.reject(&token), IdentityError::AlgorithmMismatch));
    let token = sign(Algorithm::ES256, Some("rsa-1"), &ec_key(), &c);
    assert!(matches!(f.reject(&token), IdentityError::AlgorithmMismatch));
    // HMAC under the EC key's kid.
    let token = sign(Algorithm::HS256, Some("ec-1"), &public_pem, &c);
    assert!(matches!(f.reject(&token), IdentityError::AlgorithmMismatch));
}

#[test]
fn kid_selects_the_key() {
    let f = fixture();
    let c = claims(json!({}));
    let token = sign(Algorithm::RS256, Some("rsa-2"), &rsa_key(), &c);
    assert!(matches!(f.reject(&token), IdentityError::UnknownKeyId));
    // HS256 tokens carry no kid; one that does is looked up in the JWKS and not found.
    let token = sign(Algorithm::HS256, Some("dev"), &hmac_key(), &c);
    assert!(matches!(f.reject(&token), IdentityError::UnknownKeyId));
    // With no HS256 secret configured, a token without kid has no key at all.
    let mut jwks_only = fixture();
    jwks_only.config.hs256_secret_file = None;
    assert!(matches!(
        jwks_only.reject(&hs256(&c)),
        IdentityError::MissingKeyId
    ));
    jwks_only.accept(&rs256(&c));
}

#[test]
fn required_claims_and_headers() {
    let f = fixture();
    let c = claims(json!({"exp": null}));
    for token in [hs256(&c), rs256(&c)] {
        assert!(matches!(
            f.reject(&token),
            IdentityError::MissingClaim("exp")
        ));
    }
    let c = claims(json!({"sub": null}));
    assert!(matches!(
        f.reject(&es256(&c)),
        IdentityError::MissingClaim("sub")
    ));
    // jsonwebtoken reports a non-numeric `exp` as absent; either way it is refused.
    let c = claims(json!({"exp": "tomorrow"}));
    assert!(matches!(
        f.reject(&hs256(&c)),
        IdentityError::MissingClaim("exp") | IdentityError::InvalidClaim("exp")
    ));
    let header = json!({"alg": "HS256", "crit": ["exp"], "exp": 1});
    let token = hand_built(
        &header,
        &claims(json!({})),
        Some((&hmac_key(), Algorithm::HS256)),
    );
    assert!(matches!(
        f.reject(&token),
        IdentityError::UnsupportedCritical
    ));
    assert!(matches!(f.reject("not-a-token"), IdentityError::Malformed));
    assert!(matches!(
        f.reject(&"a".repeat(20_000)),
        IdentityError::Malformed
    ));
}

#[test]
fn nested_act_chain_is_read_least_recent_first() {
    let f = fixture();
    let c = claims(json!({"act": {"sub": "agent-b", "act": {"sub": "agent-a"}}}));
    let p = f.accept(&rs256(&c));
    assert_eq!(p.actors, ["alice", "agent-a", "agent-b"]);
    assert_eq!(p.acting(), "agent-b");
    assert!(p.in_chain("agent-a"));
    assert!(!p.in_chain("agent-c"));
}

#[test]
fn too_deep_act_chains_are_rejected() {
    let f = fixture();
    let nested = |depth: usize| {
        (0..depth).fold(Value::Null, |inner, i| match inner {
            Value::Null => json!({"sub": format!("agent-{i}")}),
            inner => json!({"sub": format!("agent-{i}"), "act": inner}),
        })
    };
    let p = f.accept(&es256(&claims(json!({"act": nested(MAX_ACT_DEPTH)}))));
    assert_eq!(p.actors.len(), MAX_ACT_DEPTH + 1);
    assert_eq!(p.actors[1], "agent-0");
    let deep = claims(json!({"act": nested(MAX_ACT_DEPTH + 1)}));
    assert!(matches!(
        f.reject(&es256(&deep)),
        IdentityError::ChainTooDeep
    ));
}

#[test]
fn max_ttl_limits_token_lifetime() {
    let mut f = fixture();
    f.config.max_ttl = Some(Duration::from_secs(3600));
    f.accept(&rs256(&claims(json!({"exp": now() + 3600}))));
    let long = claims(json!({"exp": now() + 7200}));
    assert!(matches!(
        f.reject(&rs256(&long)),
        IdentityError::LifetimeTooLong
    ));
    let no_iat = claims(json!({"iat": null}));
    assert!(matches!(
        f.reject(&hs256(&no_iat)),
        IdentityError::MissingClaim("iat")
    ));
}

#[test]
fn mint_round_trips() {
    let f = fixture();
    let request = MintRequest {
        subject: "alice".into(),
        groups: vec!["dba".into()],
        actors: vec!["planner".into(), "sql-agent".into()],
        ttl: Duration::from_secs(120),
        targets: vec!["payments".into(), "web-1".into()],
    };
    let token = mint(&f.config, &request).unwrap();
    let p = f.accept(&token);
    assert_eq!(p.actors, ["alice", "planner", "sql-agent"]);
    assert_eq!(
        p.targets.as_deref(),
        Some(&["payments".to_string(), "web-1".to_string()][..])
    );
    assert!(p.token_allows("web-1") && !p.token_allows("ledger"));
    assert_eq!(p.groups, ["dba"]);
    assert_eq!(p.issuer, ISSUER);
    assert!(p.expires_at.abs_diff(now() + 120) <= 2);
    let too_long = MintRequest {
        ttl: Duration::from_secs(25 * 3600),
        ..request
    };
    assert!(matches!(
        mint(&f.config, &too_long),
        Err(IdentityError::Mint(_))
    ));
}

#[test]
fn unusable_configs_are_refused() {
    let mut f = fixture();
    f.config.hs256_secret_file = None;
    f.config.jwks_file = None;
    assert!(matches!(
        Verifier::from_config(&f.config),
        Err(IdentityError::NoKeySource)
    ));
    let short = f.dir.path().join("short");
    std::fs::write(&short, "too short").unwrap();
    f.config.hs256_secret_file = Some(short);
    let err = Verifier::from_config(&f.config).unwrap_err();
    assert!(matches!(err, IdentityError::WeakSecret { len: 9 }));
    assert!(!err.to_string().contains("too short"), "{err}");
}
