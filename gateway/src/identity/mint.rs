//! Development tokens: HS256 tokens signed with `hs256_secret_file`, for local testing and
//! `warden token mint`. Production tokens come from an identity provider.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::config::load_hs256_secret;
use super::{IdentityConfig, IdentityError, MAX_ACT_DEPTH, install_crypto_provider};

/// Lifetime of a minted token unless the request says otherwise.
pub const DEFAULT_MINT_TTL: Duration = Duration::from_secs(15 * 60);

/// The longest lifetime [`mint`] will sign: development tokens are meant to be short-lived.
pub const MAX_MINT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// What a minted token asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintRequest {
    /// `sub`: on whose behalf the token acts.
    pub subject: String,
    /// `groups`.
    pub groups: Vec<String>,
    /// The agents that handed the work down, outermost first (the first received it from the
    /// subject, the last holds the token). Becomes the nested `act` claim, most recent on top.
    pub actors: Vec<String>,
    /// Lifetime: `exp - iat`. At most [`MAX_MINT_TTL`] and the config's `max_ttl`.
    pub ttl: Duration,
    /// `targets`: the only targets the token may reach (empty: no claim).
    pub targets: Vec<String>,
}

impl MintRequest {
    /// A request for `subject` alone, with [`DEFAULT_MINT_TTL`].
    pub fn new(subject: impl Into<String>) -> Self {
        MintRequest {
            subject: subject.into(),
            groups: Vec::new(),
            actors: Vec::new(),
            ttl: DEFAULT_MINT_TTL,
            targets: Vec::new(),
        }
    }
}

/// Sign an HS256 token for `request` with the config's `hs256_secret_file`, `issuer` and
/// `audience`. Refuses what [`super::Verifier`] with the same config would refuse.
pub fn mint(config: &IdentityConfig, request: &MintRequest) -> Result<String, IdentityError> {
    install_crypto_provider();
    config.validate()?;
    let refuse = |why: &str| IdentityError::Mint(why.to_owned());
    let secret_file = config
        .hs256_secret_file
        .as_ref()
        .ok_or_else(|| refuse("minting needs hs256_secret_file in [identity]"))?;
    if request.subject.is_empty() {
        return Err(refuse("empty subject"));
    }
    if request.actors.iter().any(String::is_empty) {
        return Err(refuse("empty actor name"));
    }
    if request.actors.len() > MAX_ACT_DEPTH {
        return Err(refuse(&format!(
            "more than {MAX_ACT_DEPTH} actors in the delegation chain"
        )));
    }
    let ttl = request.ttl.as_secs();
    if ttl == 0 {
        return Err(refuse("ttl must be at least one second"));
    }
    let limit = config
        .max_ttl
        .map_or(MAX_MINT_TTL, |max| max.min(MAX_MINT_TTL));
    if request.ttl > limit {
        return Err(refuse(&format!(
            "ttl {} exceeds the maximum of {}",
            humantime::format_duration(request.ttl),
            humantime::format_duration(limit)
        )));
    }
    let secret = load_hs256_secret(secret_file)?;

    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(config.issuer));
    claims.insert("aud".into(), json!(config.audience));
    claims.insert("sub".into(), json!(request.subject));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now.saturating_add(ttl)));
    if !request.groups.is_empty() {
        claims.insert("groups".into(), json!(request.groups));
    }
    if !request.targets.is_empty() {
        claims.insert("targets".into(), json!(request.targets));
    }
    if let Some(act) = act_claim(&request.actors) {
        claims.insert("act".into(), act);
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&secret),
    )
    .map_err(|_| refuse("signing failed"))
}

/// Nest `actors` (outermost first) into an RFC 8693 `act` claim: each later actor wraps the
/// earlier ones, so the most recent actor ends up at the top level.
fn act_claim(actors: &[String]) -> Option<Value> {
    actors.iter().fold(None, |earlier, actor| {
        let mut act = Map::new();
        act.insert("sub".into(), json!(actor));
        if let Some(earlier) = earlier {
            act.insert("act".into(), earlier);
        }
        Some(Value::Object(act))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::identity::Verifier;

    #[test]
    fn act_claim_puts_the_most_recent_actor_on_top() {
        assert_eq!(act_claim(&[]), None);
        let actors = ["agent-a".to_owned(), "agent-b".to_owned()];
        assert_eq!(
            act_claim(&actors),
            Some(json!({"sub": "agent-b", "act": {"sub": "agent-a"}}))
        );
    }

    fn config(dir: &std::path::Path) -> IdentityConfig {
        let secret = dir.join("secret");
        std::fs::write(&secret, "a development secret of 32+ bytes!").unwrap();
        IdentityConfig {
            issuer: "warden-dev".into(),
            audience: "warden".into(),
            leeway: Duration::from_secs(30),
            hs256_secret_file: Some(secret),
            jwks_file: None,
            max_ttl: Some(Duration::from_secs(3600)),
        }
    }

    #[test]
    fn minted_tokens_verify() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let mut request = MintRequest::new("alice");
        request.groups = vec!["dba".into()];
        request.actors = vec!["agent-a".into(), "agent-b".into()];
        let token = mint(&config, &request).unwrap();
        let principal = Verifier::from_config(&config)
            .unwrap()
            .verify(&token)
            .unwrap();
        assert_eq!(principal.actors, ["alice", "agent-a", "agent-b"]);
        assert_eq!(principal.groups, ["dba"]);
        assert_eq!(principal.issuer, "warden-dev");
        let now = jsonwebtoken::get_current_timestamp();
        assert!(principal.expires_at.abs_diff(now + 15 * 60) <= 2);
    }

    #[test]
    fn bad_requests_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let refused =
            |request: MintRequest| matches!(mint(&config, &request), Err(IdentityError::Mint(_)));
        let mut r = MintRequest::new("alice");
        r.ttl = Duration::from_secs(3601); // above max_ttl
        assert!(refused(r));
        let mut r = MintRequest::new("alice");
        r.ttl = Duration::ZERO;
        assert!(refused(r));
        assert!(refused(MintRequest::new("")));
        let mut r = MintRequest::new("alice");
        r.actors = vec![String::new()];
        assert!(refused(r));
        let mut r = MintRequest::new("alice");
        r.actors = (0..=MAX_ACT_DEPTH).map(|i| format!("a{i}")).collect();
        assert!(refused(r));

        let mut no_max = config.clone();
        no_max.max_ttl = None;
        let mut r = MintRequest::new("alice");
        r.ttl = MAX_MINT_TTL + Duration::from_secs(1);
        assert!(matches!(mint(&no_max, &r), Err(IdentityError::Mint(_))));
        r.ttl = MAX_MINT_TTL;
        assert!(mint(&no_max, &r).is_ok());

        let mut jwks_only = config;
        jwks_only.hs256_secret_file = None;
        jwks_only.jwks_file = Some(dir.path().join("jwks.json"));
        assert!(matches!(
            mint(&jwks_only, &MintRequest::new("alice")),
            Err(IdentityError::Mint(_))
        ));
    }
}
