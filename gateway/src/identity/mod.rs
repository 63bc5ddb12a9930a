//! JWT verification: a bearer token becomes a [`Principal`] with its RFC 8693 delegation chain.
//!
//! Agents authenticate with short-lived JWTs. The gateway accepts three algorithms and nothing
//! else: HS256 with a development secret (`hs256_secret_file`), and RS256 / ES256 with public
//! keys from a JWKS file (`jwks_file`).
//!
//! Key selection (see [`Verifier::verify`]): a token that names a `kid` is checked against the
//! JWKS key with that id, and only that key; a token without `kid` is checked against the HS256
//! secret. Every JWKS key must carry a unique `kid`. The algorithm is the key's, never the
//! header's: the header's `alg` must merely agree with it, so an HS256 token cannot be checked
//! against the bytes of an RSA public key, nor an RS256 token against the HMAC secret.
//!
//! The delegation chain: RFC 8693 puts the most recent actor in the top-level `act` claim and
//! earlier actors nested deeper. [`Principal::actors`] lists the chain the other way round, as
//! the WIT `principal` record does: `sub` first, then the actors least recent first, so the last
//! entry is the party that holds the connection.

mod config;
mod error;
mod keys;
mod mint;
mod verify;

use serde::{Deserialize, Serialize};

pub use config::IdentityConfig;
pub use error::IdentityError;
pub use mint::{DEFAULT_MINT_TTL, MAX_MINT_TTL, MintRequest, mint};
pub use verify::{MAX_ACT_DEPTH, MAX_TOKEN_LEN, Verifier};

/// Who is asking, as proven by a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The token's `sub`: on whose behalf the request is made.
    pub subject: String,
    /// The token's `iss`.
    pub issuer: String,
    /// The token's `groups` claim (empty when absent).
    pub groups: Vec<String>,
    /// The delegation chain, outermost first: `subject`, then every actor from the nested `act`
    /// claim, least recent first. Never empty.
    pub actors: Vec<String>,
    /// The token's `exp`, in seconds since the Unix epoch: sessions must not outlive it.
    pub expires_at: u64,
    /// The token's `targets` claim: the only targets it may reach (`None`: the claim is
    /// absent, and each target's own allow list decides alone).
    #[serde(default)]
    pub targets: Option<Vec<String>>,
}

impl Principal {
    /// The party that actually holds the connection: the last entry of the chain (the subject
    /// itself when nobody acts on its behalf).
    pub fn acting(&self) -> &str {
        self.actors
            .last()
            .map_or(self.subject.as_str(), String::as_str)
    }

    /// Whether the token's own `targets` claim lets it reach `target` (no claim: yes).
    pub fn token_allows(&self, target: &str) -> bool {
        self.targets
            .as_ref()
            .is_none_or(|ts| ts.iter().any(|t| t == target))
    }

    /// Whether `name` appears anywhere in the delegation chain, subject included.
    pub fn in_chain(&self, name: &str) -> bool {
        self.actors.iter().any(|actor| actor == name)
    }
}

/// Select the RustCrypto backend of `jsonwebtoken` for this process.
///
/// jsonwebtoken 10+ picks its crypto provider from crate features and panics at first use when
/// it cannot decide (both or neither of `rust_crypto` / `aws_lc_rs` enabled somewhere in the
/// dependency graph). Installing the provider explicitly removes that failure mode. Called by
/// [`Verifier::from_config`] and [`mint`]; harmless to call again, and a provider installed
/// earlier by someone else is left in place.
pub fn install_crypto_provider() {
    // An `Err` only says a provider is already installed, which is what we want.
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(actors: &[&str]) -> Principal {
        Principal {
            subject: "alice".into(),
            issuer: "https://issuer.test".into(),
            groups: vec![],
            actors: actors.iter().map(|s| s.to_string()).collect(),
            expires_at: 0,
            targets: None,
        }
    }

    #[test]
    fn acting_is_the_last_actor() {
        assert_eq!(
            principal(&["alice", "agent-a", "agent-b"]).acting(),
            "agent-b"
        );
        assert_eq!(principal(&["alice"]).acting(), "alice");
        // Not constructible by the verifier, but `acting` must not panic on it.
        assert_eq!(principal(&[]).acting(), "alice");
    }

    #[test]
    fn in_chain_checks_every_link() {
        let p = principal(&["alice", "agent-a", "agent-b"]);
        assert!(p.in_chain("alice"));
        assert!(p.in_chain("agent-a"));
        assert!(p.in_chain("agent-b"));
        assert!(!p.in_chain("agent-c"));
        assert!(!p.in_chain("agent"));
    }
}
